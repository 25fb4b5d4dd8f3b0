"""Benchmark models on one test split and write the leaderboard.

    python iaa_bench/benchmark.py -opt options/benchmark_demo.yml [--out results/demo] [--root DIR]

Benchmark option file (paths relative to the working directory, as for train.py):

    name: benchmark_demo        # results go to <root>/results/<name>/ unless --out is given
    dataset: ava                # label of the pyiqa-style CSV column `<dataset>(PLCC/SRCC/KRCC)`
    split: test                 # which `datasets.<split>` of each model's option file to score
    train_missing: false        # train (train.py's pipeline) a model whose checkpoint is absent
    ceiling: true               # add the human split-half ceiling of the split's vote histograms
    models:
      - {name: MMLQ, opt: options/mmlq_demo.yml, checkpoint: ~, modality: image+text}
      - {name: NIMA (pyiqa), pyiqa_metric: nima}

`checkpoint: ~` is the run's own net_best.pth (else net_latest.pth); `modality` defaults
to what the network reads. `pyiqa_metric` entries are pyiqa's published models, scored on
the first option-file model's split; one whose weights cannot be loaded offline is
skipped, with the reason recorded in benchmark.json and printed. Every model must see the
same images in the same order (checked), so the rows are comparable. images/s is
end to end on this machine: the whole prediction pass from image files, data loading and
frozen encoders included (the feature cache is not used here), so models compare fairly.
"""
import argparse
import os
import time
from os import path as osp
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from iaa_bench.config.options import load_options, load_yaml
from iaa_bench.config.schema import validate_options
from iaa_bench.data import loaders
from iaa_bench.evaluation import leaderboard
from iaa_bench.evaluation.evaluate import (
    build_eval_model,
    count_parameters,
    eval_checkpoint,
    evaluate,
)
from iaa_bench.evaluation.metrics import NUM_BINS, mean_score
from iaa_bench.models import contract
from iaa_bench.training.loop import train_pipeline
from iaa_bench.training.run_folder import setup_run_logging
from iaa_bench.utils.atomic import atomic_write_json
from iaa_bench.utils.errors import IAABenchError, OptionError
from iaa_bench.utils.offline import (
    ALLOW_DOWNLOAD,
    WeightsUnavailableError,
    weights_required,
)
from iaa_bench.utils.pyiqa_adapter import create_metric

BENCHMARK_KEYS = {"name", "dataset", "split", "train_missing", "ceiling", "models"}
MODEL_KEYS = {"name", "opt", "checkpoint", "modality", "pyiqa_metric"}


def load_benchmark(path: str) -> dict:
    """The benchmark options, checked up front so no model is evaluated for a broken file."""
    bench = load_yaml(path)
    errors = [f"unknown option `{k}` (known: {sorted(BENCHMARK_KEYS)})" for k in bench if k not in BENCHMARK_KEYS]
    models = bench.get("models")
    if not isinstance(models, list) or not models:
        errors.append("`models` must be a non-empty list")
        models = []
    names = [m.get("name") for m in models if isinstance(m, dict)]
    for i, entry in enumerate(models):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(f"models[{i}] must be a mapping with a `name`")
            continue
        where = f"models[{i}] ({entry['name']})"
        errors += [f"{where}: unknown option `{k}` (known: {sorted(MODEL_KEYS)})" for k in entry if k not in MODEL_KEYS]
        if ("opt" in entry) == ("pyiqa_metric" in entry):
            errors.append(f"{where}: give exactly one of `opt` (an option file) or `pyiqa_metric`")
        elif "opt" in entry and not osp.isfile(str(entry["opt"])):
            errors.append(f"{where}: option file not found: {entry['opt']}")
        if entry.get("modality") not in (None, *leaderboard.MODALITIES[:-1]):
            errors.append(f"{where}: modality must be one of {leaderboard.MODALITIES[:-1]}")
        if names.count(entry["name"]) > 1:
            errors.append(f"{where}: duplicate model name")
    if models and not any("opt" in m for m in models if isinstance(m, dict)):
        errors.append("`models` needs at least one option-file model: it defines the test split")
    if errors:
        raise OptionError(f"{path}: {len(errors)} problem(s) in the benchmark options:\n  - " + "\n  - ".join(errors))
    return {"dataset": "ava", "split": "test", "train_missing": False, "ceiling": True, **bench}


def split_loader(opt: dict, split: str):
    """The loader of the option file's `datasets.<split>`."""
    if split not in opt.get("datasets", {}):
        raise OptionError(f"{opt['opt_path']}: no `datasets.{split}` to benchmark on")
    return loaders.eval_loaders(opt, [split])[0][1]


def evaluate_option_model(entry: dict, split: str, root: str, train_missing: bool, show_progress: bool):
    """Score one trained model (training it first if asked): (row, image paths, loader, report entry)."""
    opt = load_options(entry["opt"], is_train=False, root=root, validate=validate_options)
    checkpoint = eval_checkpoint(opt, entry.get("checkpoint"))
    if checkpoint is None and train_missing:
        print(f"[benchmark] {entry['name']}: no checkpoint, training {entry['opt']}", flush=True)
        train_pipeline(["-opt", entry["opt"], "--root", root])
        checkpoint = eval_checkpoint(opt)
    model = build_eval_model(opt, checkpoint)
    loader = split_loader(opt, split)
    result = evaluate(model, loader, desc=entry["name"], show_progress=show_progress)
    trainable, total = count_parameters(model.net)
    row = leaderboard.row_from_predictions(entry["name"], entry.get("modality") or contract.modality(model.net), result.pred,
                                           result.gt, result.seconds, trainable, total)
    record = {"name": entry["name"], "status": "evaluated", "opt": opt["opt_path"],
              "checkpoint": opt["path"]["pretrain_network"]}
    return row, result.paths, loader, record


class ModelSkipped(IAABenchError):
    """A model that cannot be scored on this machine; the benchmark records why and goes on."""


def evaluate_pyiqa_metric(entry: dict, loader, show_progress: bool):
    """Score a published pyiqa model (image only) on the reference loader's images."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        with weights_required(f"models[{entry['name']}].pyiqa_metric", "pyiqa's weights"):
            metric = create_metric(entry["pyiqa_metric"], as_loss=False, device=device)
    except WeightsUnavailableError as err:
        hint = "" if ALLOW_DOWNLOAD else "; run once with IAA_BENCH_ALLOW_DOWNLOAD=1 on a connected machine"
        cause = err.__cause__
        raise ModelSkipped(f"pyiqa metric '{entry['pyiqa_metric']}': its published weights are not in the local "
                           f"caches and cannot be downloaded here{hint} ({type(cause).__name__})") from err
    preds, gts, paths = [], [], []
    start = time.perf_counter()
    with torch.no_grad():
        for batch in tqdm(loader, desc=entry["name"], unit="batch", disable=not show_progress, leave=False):
            preds.append(metric(batch["img"].to(device)).reshape(-1).float().cpu())
            gts.append(batch["mos_dist"])
            paths.extend(batch["img_path"])
    seconds = time.perf_counter() - start
    trainable, total = count_parameters(metric.net)
    row = leaderboard.row_from_predictions(entry["name"], entry.get("modality") or "image", torch.cat(preds).numpy(),
                                           mean_score(torch.cat(gts).numpy()), seconds, trainable, total)
    return row, paths


def check_same_images(name: str, paths: list, reference: list, reference_name: str) -> None:
    """Rows are only comparable on the same images in the same order."""
    same = len(paths) == len(reference) and all(osp.realpath(a) == osp.realpath(b) for a, b in zip(paths, reference))
    if not same:
        raise OptionError(f"{name} was scored on {len(paths)} images, {reference_name} on {len(reference)} "
                          "(or in another order): point every option file's test split at the same data")


def vote_counts(dataset) -> np.ndarray:
    """(N, 10) vote histograms of a split: columns c1..c10 of the dataset's rows (pyiqa's AVA layout)."""
    return np.array([row[2:2 + NUM_BINS] for row in dataset.paths_mos], dtype=np.float64)


def benchmark(argv=None) -> list:
    """Evaluate every model of a benchmark file and write results/<name>/; returns the rows."""
    parser = argparse.ArgumentParser(description="Benchmark trained models on one test split.")
    parser.add_argument("-opt", required=True, help="Benchmark option file (see iaa_bench/benchmark.py).")
    parser.add_argument("--out", default=None, help="Output folder (default: <root>/results/<name>).")
    parser.add_argument("--root", default=os.getcwd(), help="Root of experiments/ and results/ (default: cwd).")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    args = parser.parse_args(argv)
    bench = load_benchmark(args.opt)
    root = osp.abspath(args.root)
    name = bench.get("name") or osp.splitext(osp.basename(args.opt))[0]
    out = args.out or osp.join(root, "results", name)
    show = not args.no_progress
    log_file = osp.join(out, f"benchmark_{time.strftime('%Y%m%d_%H%M%S')}.log")

    rows, report, reference = [], [], None
    for entry in [m for m in bench["models"] if "opt" in m]:
        setup_run_logging(log_file, rank=0)  # again after each training run, which logs to its own file
        row, paths, loader, record = evaluate_option_model(entry, bench["split"], root, bench["train_missing"], show)
        if reference is None:
            reference = (entry["name"], paths, loader)
        check_same_images(entry["name"], paths, reference[1], reference[0])
        rows.append(row)
        report.append(record)
        print(f"[benchmark] {row.name}: SRCC {row.srcc:.4f} PLCC {row.plcc:.4f} ({row.images_per_s:.1f} images/s)",
              flush=True)
    setup_run_logging(log_file, rank=0)
    for entry in [m for m in bench["models"] if "pyiqa_metric" in m]:
        try:
            row, paths = evaluate_pyiqa_metric(entry, reference[2], show)
        except ModelSkipped as err:
            report.append({"name": entry["name"], "status": "skipped", "pyiqa_metric": entry["pyiqa_metric"],
                           "reason": str(err)})
            print(f"[benchmark] {entry['name']}: skipped: {err}", flush=True)
            continue
        check_same_images(entry["name"], paths, reference[1], reference[0])
        rows.append(row)
        report.append({"name": entry["name"], "status": "evaluated", "pyiqa_metric": entry["pyiqa_metric"]})
    if bench["ceiling"]:
        rows.append(leaderboard.ceiling_row(vote_counts(reference[2].dataset)))

    leaderboard.write_results(rows, out, dataset=bench["dataset"])
    atomic_write_json(osp.join(out, "benchmark.json"), {"benchmark": osp.abspath(args.opt), "split": bench["split"],
                                                         "images": len(reference[1]), "models": report})
    print(Path(out, "leaderboard.md").read_text(encoding="utf-8"), flush=True)
    for item in report:
        if item["status"] == "skipped":
            print(f"Skipped {item['name']}: {item['reason']}")
    print(f"Results written to {out}", flush=True)
    return rows

