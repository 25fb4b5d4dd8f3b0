"""iaa_bench's training beside pyiqa's own on one option file: `bench_speed.py --vs-pyiqa`.

    python iaa_bench/bench_speed.py --vs-pyiqa [-opt options/pyiqa/train_NIMA_demo.yml] [--iters 60]
        [--print-freq 10] [--rounds 3] [--force_yml ...]

The option file (pyiqa's schema; by default pyiqa 0.1.16's NIMA recipe on the demo data, the
offline NIMABaseline in place of pyiqa's downloading NIMA, so the network is the same class
and weights on both sides) is written once, with the same changes for both: `--force_yml`,
`train.total_iter` = --iters, `logger.print_freq` = --print-freq, dataset paths made absolute,
and validation, checkpoints and TensorBoard moved out of the training loop (their frequencies
beyond the last iteration, `use_tb_logger: false`; each side still validates and saves once at
the end). Then rounds alternate, pyiqa first: pyiqa's `pyiqa.train.train_pipeline` (its
trainer, and for pyiqa's model types its own model, e.g. DistIQAModel) and iaa_bench's
`train.py`, each in a subprocess with a fresh output root and working directory in a temporary
folder, so nothing of the user's is touched.

Both sides log `<asctime> INFO: [...][epoch ..., iter N, lr ...` every print_freq iterations to
their run's log file. A run's samples/s is read from that file the same way for both: batch x
(last logged iteration - first logged one) / (time between those two lines). Start-up, the first
print_freq iterations (warm-up) and the end-of-training validation and saving fall outside that
window. Each side's best round is kept (other load on a shared machine hits both alike). Ends
with `SUMMARY vs_pyiqa_train_ratio=<iaa_bench samples/s / pyiqa's> ...`.
"""
import copy
import datetime
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from os import path as osp

import yaml

from iaa_bench.training.train_log import parse_train_line
from iaa_bench.utils.errors import OptionError

DEFAULT_OPTIONS = "options/pyiqa/train_NIMA_demo.yml"
NEVER = 10 ** 9  # an iteration count no run reaches: validation / checkpoints only at the end
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")  # logging's asctime, both trainers
# pyiqa's process at times aborts in interpreter teardown once training is over and logged
# ("terminate called without an active exception", exit -6; seen here on the demo): it leaves
# without the teardown once train_pipeline has returned.
_PYIQA_TRAIN = ("import os, sys, iaa_bench; from pyiqa.train import train_pipeline; train_pipeline(sys.argv.pop(1)); "
                "sys.stdout.flush(); sys.stderr.flush(); os._exit(0)")
_IAA_BENCH_TRAIN = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "train.py")
_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def bench_options(opt_path: str, iters: int, print_freq: int, overrides=None) -> dict:
    """The option file as both sides train it (see the module docstring); the demo is built if asked for."""
    from iaa_bench.config.options import apply_overrides, load_yaml
    from iaa_bench.config.schema import DATASET_PATH_KEYS, validate_options
    from iaa_bench.data.loaders import ensure_demo_data

    if iters % print_freq or iters < 2 * print_freq:
        raise OptionError(f"--iters {iters} must be a multiple of --print-freq {print_freq}, at least twice it "
                          "(samples/s is read between the first and the last logged iteration)")
    opt = load_yaml(opt_path)
    apply_overrides(opt, overrides)
    validate_options(copy.deepcopy(opt), source=opt_path)  # every problem named before any training starts
    opt["train"]["total_iter"] = iters
    opt["train"].pop("total_epoch", None)
    opt["logger"].update(print_freq=print_freq, save_checkpoint_freq=NEVER, save_latest_freq=NEVER, use_tb_logger=False)
    if opt.get("val"):
        opt["val"]["val_freq"] = NEVER
    for dataset in opt["datasets"].values():
        for key in DATASET_PATH_KEYS:
            if isinstance(dataset.get(key), str):
                dataset[key] = osp.abspath(dataset[key])
        ensure_demo_data(dataset, 0)
    return opt


def read_log_rate(log_file: str, batch_size: int) -> tuple[float, int]:
    """(samples/s between the first and last logged iteration, samples trained by the last one) of a run's log."""
    points = []
    with open(log_file, encoding="utf-8") as f:
        for line in f:
            stamp, entry = _TIMESTAMP.match(line), parse_train_line(line)
            if stamp and entry:
                points.append((datetime.datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f"), entry["iter"]))
    if len(points) < 2:
        raise OptionError(f"{log_file}: fewer than two training log lines (`[...][epoch ..., iter N, lr ...`)")
    (t0, it0), (t1, it1) = points[0], points[-1]
    return batch_size * (it1 - it0) / max((t1 - t0).total_seconds(), 1e-3), batch_size * it1


def train_once(side: str, opt_file: str, root: str, source: str) -> str:
    """Train `opt_file` with `side`'s pipeline under `root` (also the working directory); returns its log file."""
    os.makedirs(root)
    command = ([sys.executable, "-c", _PYIQA_TRAIN, root, "-opt", opt_file] if side == "pyiqa" else
               [sys.executable, _IAA_BENCH_TRAIN, "-opt", opt_file, "--root", root])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (_REPO, os.environ.get("PYTHONPATH"))))}
    out = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise OptionError(f"{source}: {side}'s trainer could not train it (exit {out.returncode}); the end of its "
                          f"output:\n{out.stderr[-3000:]}")
    logs = glob.glob(osp.join(root, "experiments", "*", "train_*.log"))
    if len(logs) != 1:
        raise RuntimeError(f"{side} training under {root}: expected one training log, found {logs}")
    return logs[0]


def vs_pyiqa(args) -> dict:
    """Alternate pyiqa / iaa_bench training rounds on one option file; print per-round and best rates."""
    source = args.opt or DEFAULT_OPTIONS
    opt = bench_options(source, args.iters, args.print_freq, args.force_yml)
    batch_size = opt["datasets"]["train"]["batch_size_per_gpu"]
    print(f"{opt['name']} ({source}): {args.iters} iterations of {batch_size}, rates over iterations "
          f"{args.print_freq}..{args.iters}; {args.rounds} rounds each side, alternating", flush=True)
    workdir = tempfile.mkdtemp(prefix="bench_vs_pyiqa_")
    try:
        opt_file = osp.join(workdir, "options.yml")
        with open(opt_file, "w", encoding="utf-8") as f:
            yaml.safe_dump(opt, f, sort_keys=False)
        rates, samples = {"pyiqa": [], "iaa_bench": []}, {}
        for round_ in range(1, args.rounds + 1):
            for side in rates:
                log_file = train_once(side, opt_file, osp.join(workdir, f"{side}_{round_}"), source)
                rate, samples[side] = read_log_rate(log_file, batch_size)
                rates[side].append(rate)
                print(f"round {round_} {side}: {rate:.2f} samples/s ({samples[side]} samples trained)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    best = {side: max(r) for side, r in rates.items()}
    ratio = best["iaa_bench"] / best["pyiqa"]
    print(f"SUMMARY vs_pyiqa_train_ratio={ratio:.3f} iaa_bench_samples_per_s={best['iaa_bench']:.3f} "
          f"pyiqa_samples_per_s={best['pyiqa']:.3f} iaa_bench_samples={samples['iaa_bench']} "
          f"pyiqa_samples={samples['pyiqa']} rounds={args.rounds} iters={args.iters} batch={batch_size}", flush=True)
    return {"ratio": ratio, "rates": rates, "samples": samples}
