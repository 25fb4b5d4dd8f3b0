"""Benchmark models on one test split and write the leaderboard.

    python iaa_bench/benchmark.py -opt options/benchmark_demo.yml [--out DIR] [--root DIR] [--quick N]

Benchmark option file (paths relative to the working directory, as for train.py):

    name: benchmark_demo        # results go to <root>/results/<name>/ unless --out is given
    dataset: ava                # label of the pyiqa-style column `<dataset>(PLCC/SRCC/KRCC)` (both CSVs)
    split: test                 # which `datasets.<split>` of each model's option file to score
    train_missing: false        # train (train.py's pipeline) a model without a finished run
    ceiling: true               # add the human split-half ceiling of the split's vote histograms
    seeds: [123, 1, 2]          # train every option-file model once per seed: mean ± std
    bootstrap: {rounds: 2000, seed: 0}   # 95 % intervals and paired tests over test images
    models:
      - {name: MMLQ, opt: options/mmlq_demo.yml, checkpoint: ~, modality: image+text}
      - {name: NIMA (pyiqa), pyiqa_metric: nima}
      - {name: NIMA (local weights), pyiqa_metric: nima, metric_kwargs: {pretrained_model_path: weights/nima.pth}}
      - {name: Q-Align aesthetics, pyiqa_metric: qalign, score_kwargs: {task_: aesthetic}}
    sweeps:                     # see iaa_bench/evaluation/sweeps.py
      - {name: mmib_depth, base: options/mmlq_demo.yml, vary: {network.depth: [1, 2, 4]}}
    references:                 # published numbers, shown apart: "published, not reproduced here"
      - {name: NIMA, modality: image, srcc: 0.713, plcc: 0.717, acc: ~, source: "..."}

A run is an option file, its overrides (seed, sweep point, --quick) and its run name: the
file's `name`, plus `__<key>-<value>` for a sweep point, `_seed<s>` for a seed other than
the file's `manual_seed` (so the file's own run, e.g. the main job's, is reused), and
`_quick<N>` under `--quick N`. A run with a `final_metrics.json` is finished and never
retrained; one with training states but no final metrics resumes (`--auto_resume`); its
predictions are stored under `<out>/runs/` keyed by the checkpoint file, so an interrupted
benchmark resumes where it stopped. `checkpoint:` pins one file (no seeds, no training).

Everything is checked before any work: option files, overrides, sweep keys, pyiqa metric
names (with their `metric_kwargs` / `score_kwargs` where the metric's signature tells),
that every run scores the same images in the same order (from the option files' split and
meta files), and (without `train_missing`) that every run has a checkpoint.

`pyiqa_metric` entries are pyiqa metrics (published models, or iaa_bench's own `mmlq`), scored
as pyiqa's own benchmark does: `create_metric(name, **metric_kwargs)`, then `metric(path,
**score_kwargs)` on each original image file of the first run's split (pyiqa reads the file
and the metric applies its own preprocessing). A metric that cannot be built or scored here
(a missing optional package, weights not available offline, an error while scoring) becomes a
skipped row with its reason; the rest of the leaderboard is written all the same. images/s
is end to end: the prediction pass from image files, frozen encoders included (no feature
cache), so models compare fairly.

`--quick N` trains every run for N iterations only, into separate run names and
`<out>_quick<N>`, and marks every output "quick (N iterations): not a result": a smoke
test of the whole benchmark in minutes.

A model that reads comments is scored a second time with every test image's comments
withheld (`srcc_no_comments`, `plcc_no_comments`): what a user with only the photo gets.
"""
import argparse
import io
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from os import path as osp
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from iaa_bench.config.options import load_options, load_yaml
from iaa_bench.config.schema import validate_options
from iaa_bench.data import loaders
from iaa_bench.evaluation import leaderboard, sweeps
from iaa_bench.evaluation.cost import train_samples_per_s, trainable_macs_per_sample
from iaa_bench.evaluation.evaluate import (
    build_eval_model,
    count_parameters,
    default_checkpoint,
    eval_checkpoint,
    evaluate,
)
from iaa_bench.evaluation.metrics import NUM_BINS, compute_metrics
from iaa_bench.models import contract
from iaa_bench.training.loop import train_pipeline
from iaa_bench.training.run_folder import setup_run_logging
from iaa_bench.utils.atomic import atomic_write, atomic_write_json
from iaa_bench.utils.errors import IAABenchError, OptionError
from iaa_bench.utils.offline import ALLOW_DOWNLOAD, WeightsUnavailableError, weights_required
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME, build_dataset, create_metric, metric_option_names, pyiqa_metric_names

log = logging.getLogger(LOGGER_NAME)

BENCHMARK_KEYS = {"name", "dataset", "split", "train_missing", "ceiling", "models", "seeds", "sweeps", "references",
                  "bootstrap"}
MODEL_KEYS = {"name", "opt", "checkpoint", "modality", "pyiqa_metric", "metric_kwargs", "score_kwargs"}
METRIC_KWARGS = {"metric_kwargs": "create_metric", "score_kwargs": "scoring"}  # pyiqa_metric entries only
REFERENCE_KEYS = {"name", "modality", "srcc", "plcc", "acc", "source"}
BOOTSTRAP_DEFAULTS = {"rounds": 2000, "seed": 0}


@dataclass(frozen=True)
class Run:
    """One trained model to score: an option file with overrides, under its own run name."""

    opt_path: str
    name: str
    overrides: tuple = ()  # --force_yml entries
    checkpoint: str | None = None  # pinned file: never trained


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_models(models, errors) -> None:
    names = [m.get("name") for m in models if isinstance(m, dict)]
    known_metrics = None
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
        elif "pyiqa_metric" in entry:
            known_metrics = known_metrics or pyiqa_metric_names()
            if entry["pyiqa_metric"] not in known_metrics:
                errors.append(f"{where}: pyiqa has no metric `{entry['pyiqa_metric']}`"
                              f"{_close(str(entry['pyiqa_metric']), known_metrics)}")
            else:
                _check_metric_kwargs(entry, where, errors)
        errors += [f"{where}: `{k}` applies to `pyiqa_metric` entries only" for k in METRIC_KWARGS
                   if k in entry and "pyiqa_metric" not in entry]
        if entry.get("checkpoint") and not osp.isfile(osp.expanduser(str(entry["checkpoint"]))):
            errors.append(f"{where}: checkpoint not found: {entry['checkpoint']}")
        if entry.get("modality") not in (None, *leaderboard.MODALITIES[:-1]):
            errors.append(f"{where}: modality must be one of {leaderboard.MODALITIES[:-1]}")
        if names.count(entry["name"]) > 1:
            errors.append(f"{where}: duplicate model name")


def _check_metric_kwargs(entry: dict, where: str, errors: list) -> None:
    """`metric_kwargs` / `score_kwargs` are mappings whose keys the metric takes (where its signature tells)."""
    for key, used_by in METRIC_KWARGS.items():
        kwargs = entry.get(key)
        if kwargs is None:
            continue
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            errors.append(f"{where}: `{key}` must be a mapping of keyword arguments, got {kwargs!r}")
            continue
        accepted = metric_option_names(entry["pyiqa_metric"], call=key == "score_kwargs")
        errors += [f"{where}: {key}: pyiqa metric `{entry['pyiqa_metric']}` takes no `{k}` in {used_by}"
                   f"{_close(k, accepted)}" for k in kwargs if accepted is not None and k not in accepted]


def _close(name: str, candidates) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(f'`{c}`' for c in close)}?)" if close else ""


def _check_references(references, errors) -> None:
    for i, ref in enumerate(references):
        where = f"references[{i}]"
        if not isinstance(ref, dict):
            errors.append(f"{where} must be a mapping")
            continue
        errors += [f"{where}: unknown option `{k}` (known: {sorted(REFERENCE_KEYS)})" for k in ref if k not in REFERENCE_KEYS]
        errors += [f"{where}: `{k}` is required" for k in ("name", "modality", "srcc", "plcc", "source") if not ref.get(k)]
        errors += [f"{where}: `{k}` must be a number" for k in ("srcc", "plcc") if k in ref and not _is_number(ref[k])]
        if ref.get("acc") is not None and not _is_number(ref["acc"]):
            errors.append(f"{where}: `acc` must be a number (a fraction) or ~")
        if ref.get("modality") not in leaderboard.MODALITIES:
            errors.append(f"{where}: modality must be one of {leaderboard.MODALITIES}")


def load_benchmark(path: str) -> dict:
    """The benchmark options, checked up front so no model is trained or scored for a broken file."""
    bench = load_yaml(path)
    errors = [f"unknown option `{k}` (known: {sorted(BENCHMARK_KEYS)})" for k in bench if k not in BENCHMARK_KEYS]
    models, sweep_list = bench.get("models") or [], bench.get("sweeps") or []
    if not isinstance(models, list) or not isinstance(sweep_list, list) or not (models or sweep_list):
        errors.append("`models` and `sweeps` must be lists, at least one of them non-empty")
        models, sweep_list = [], []
    _check_models(models, errors)
    for i, sweep in enumerate(sweep_list):
        base = sweep.get("base") if isinstance(sweep, dict) else None
        if isinstance(sweep, dict) and not (isinstance(base, str) and osp.isfile(base)):
            errors.append(f"sweeps[{i}]: base option file not found: {base}")
            base = None
        errors += sweeps.check_sweep(sweep, f"sweeps[{i}]", load_yaml(base) if base else None)
    seeds = bench.get("seeds")
    if seeds is not None and (not isinstance(seeds, list) or not seeds or not all(_is_number(s) and s == int(s) for s in seeds)
                              or len(set(seeds)) != len(seeds)):
        errors.append(f"`seeds` must be a non-empty list of distinct integers, got {seeds!r}")
    references = bench.get("references") or []
    if not isinstance(references, list):
        errors.append("`references` must be a list")
        references = []
    _check_references(references, errors)
    boot = bench.get("bootstrap") or {}
    if not isinstance(boot, dict) or set(boot) - set(BOOTSTRAP_DEFAULTS) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in boot.values()) or boot.get("rounds") == 0:
        errors.append(f"`bootstrap` must be {{rounds: int > 0, seed: int}}, got {boot!r}")
    if not any("opt" in m for m in models if isinstance(m, dict)) and not sweep_list:
        errors.append("`models` needs at least one option-file model (or a sweep): it defines the test split")
    if errors:
        raise OptionError(f"{path}: {len(errors)} problem(s) in the benchmark options:\n  - " + "\n  - ".join(errors))
    return {"dataset": "ava", "split": "test", "train_missing": False, "ceiling": True, **bench,
            "models": models, "sweeps": sweep_list, "references": references,
            "bootstrap": {**BOOTSTRAP_DEFAULTS, **boot}}


# --------------------------------------------------------------------------- planning
def make_run(opt_path: str, base: dict, point: dict, suffix: str, seed, quick: int) -> Run:
    """The run of an option file at a sweep point (`point`: dotted key -> value), seed and quick setting."""
    name = base["name"] + suffix
    overrides = dict(point)
    if seed is not None:
        overrides["manual_seed"] = int(seed)
        if seed != base.get("manual_seed"):
            name += f"_seed{seed}"
    if quick:
        overrides["train.total_iter"] = quick
        name += f"_quick{quick}"
    overrides["name"] = name
    return Run(opt_path, name, tuple(f"{k.replace('.', ':')}={json.dumps(v)}" for k, v in overrides.items()))


def plan(bench: dict, quick: int):
    """({model label: [Run per seed]}, [(sweep, points, [[Run per seed] per point])])."""
    seeds = bench.get("seeds") or [None]
    model_runs = {}
    for entry in bench["models"]:
        if "opt" not in entry:
            continue
        if entry.get("checkpoint"):  # named after the entry: the file's own run may be listed too
            model_runs[entry["name"]] = [Run(entry["opt"], "checkpoint_" + re.sub(r"[^\w.-]+", "_", entry["name"]),
                                              checkpoint=osp.abspath(osp.expanduser(entry["checkpoint"])))]
            continue
        base = load_yaml(entry["opt"])
        model_runs[entry["name"]] = [make_run(entry["opt"], base, {}, "", seed, quick) for seed in seeds]
    sweep_runs = []
    for sweep in bench["sweeps"]:
        base = load_yaml(sweep["base"])
        point_list = sweeps.points(sweep)
        runs = [[make_run(sweep["base"], base, point, sweeps.run_suffix(sweep, point, base), seed, quick)
                 for seed in seeds] for point in point_list]
        sweep_runs.append((sweep, point_list, runs))
    return model_runs, sweep_runs


def unique_runs(model_runs: dict, sweep_runs: list) -> list:
    """Every run once (a sweep point equal to a listed model is the same run), seed by seed: every
    model's first seed before any second one, so an interrupted long benchmark has whole seeds done."""
    groups = [*model_runs.values(), *(runs for _, _, point_runs in sweep_runs for runs in point_runs)]
    found = {}
    for k in range(max(map(len, groups))):
        for runs in groups:
            if k < len(runs):
                found.setdefault(runs[k].name, runs[k])
    return list(found.values())


def run_options(run: Run, root: str, is_train: bool = False) -> dict:
    return load_options(run.opt_path, is_train=is_train, overrides=list(run.overrides), root=root,
                        validate=validate_options)


def finished(opt: dict) -> bool:
    return osp.isfile(osp.join(opt["root_path"], "experiments", opt["name"], "final_metrics.json"))


def preflight(runs: list, root: str, train_missing: bool, split: str) -> None:
    """Check every run's options (overrides applied), that all score the same images and, without
    train_missing, every run's checkpoint: before any work."""
    errors, image_lists, known = [], {}, {}
    for run in runs:
        try:
            opt = run_options(run, root, is_train=train_missing and run.checkpoint is None)
        except OptionError as err:
            errors.append(f"run {run.name}: {err}")
            continue
        if not train_missing and eval_checkpoint(opt, run.checkpoint) is None:
            errors.append(f"run {run.name}: no checkpoint in {osp.join(root, 'experiments', run.name, 'models')} "
                          "and train_missing is false (train it, set `checkpoint:`, or set train_missing: true)")
        try:
            image_lists[run] = split_image_paths(opt, split, known)
        except IAABenchError as err:
            errors.append(f"run {run.name}: {err}")
    errors += different_image_lists(image_lists, split)
    if errors:
        raise OptionError(f"{len(errors)} run(s) cannot be benchmarked; nothing was trained or scored:\n  - "
                          + "\n  - ".join(errors))


# --------------------------------------------------------------------------- training and scoring
def ensure_trained(run: Run, root: str, train_missing: bool, progress: str) -> str:
    """The run's checkpoint, training (or resuming) it first when allowed and unfinished."""
    if run.checkpoint:
        return run.checkpoint
    opt = run_options(run, root)
    given = opt["path"].get("pretrain_network") or opt["path"].get("pretrain_network_g")
    if given:  # the option file names the weights to score
        return given
    if finished(opt) or not train_missing:
        print(f"[benchmark] {progress} {run.name}: {'finished run, not retrained' if finished(opt) else 'its checkpoint'}",
              flush=True)
        return default_checkpoint(opt)
    states = osp.join(root, "experiments", run.name, "training_states")
    resume = osp.isdir(states) and any(name.endswith(".state") for name in os.listdir(states))
    print(f"[benchmark] {progress} {run.name}: {'resuming' if resume else 'training'} {run.opt_path}", flush=True)
    train_pipeline(["-opt", run.opt_path, "--root", root, "--force_yml", *run.overrides]
                   + (["--auto_resume"] if resume else []))
    return default_checkpoint(opt)


@dataclass
class Scores:
    """A run's predictions on the split and what it cost."""

    pred: np.ndarray
    gt: np.ndarray
    paths: list
    seconds: float
    trainable: int
    total: int
    macs: float
    train_rate: float
    modality: str  # what the network reads (the architecture contract)
    pred_no_comments: np.ndarray | None = None  # the same images, comments withheld (models that read comments)


def _stored_key(checkpoint: str, split: str) -> dict:
    st = os.stat(checkpoint)
    return {"checkpoint": osp.abspath(checkpoint), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "split": split}


def score_run(run: Run, checkpoint: str, split: str, root: str, store: str, show: bool) -> Scores:
    """Score a trained run on the split; stored predictions of the same checkpoint file are reused."""
    key = _stored_key(checkpoint, split)
    stored = osp.join(store, f"{run.name}.npz")
    if osp.isfile(stored):
        with np.load(stored, allow_pickle=False) as data:
            if json.loads(str(data["key"])) == key and "pred_no_comments" in data.files:
                meta = json.loads(str(data["meta"]))
                blind = data["pred_no_comments"] if data["pred_no_comments"].size else None
                return Scores(data["pred"], data["gt"], data["paths"].tolist(), **meta, pred_no_comments=blind)
    opt = run_options(run, root)
    model = build_eval_model(opt, checkpoint)
    loader = split_loader(opt, split)
    result = evaluate(model, loader, desc=run.name, show_progress=show)
    blind = None
    if contract.uses_text(model.net):  # the photo-only protocol: the same images, their comments withheld
        blind = evaluate(model, split_loader(opt, split, withhold_comments=True), desc=f"{run.name} (no comments)",
                         show_progress=show).pred
    trainable, total = count_parameters(model.net)
    meta = {"seconds": result.seconds, "trainable": trainable, "total": total, "modality": contract.modality(model.net),
            "macs": trainable_macs_per_sample(model, loader),
            "train_rate": train_samples_per_s(osp.join(root, "experiments", run.name))}
    buffer = io.BytesIO()
    np.savez(buffer, pred=result.pred, gt=result.gt, paths=np.array(result.paths), key=json.dumps(key),
             meta=json.dumps(meta), pred_no_comments=np.zeros(0) if blind is None else blind)
    os.makedirs(store, exist_ok=True)
    atomic_write(Path(stored), lambda f: f.write(buffer.getvalue()))
    return Scores(result.pred, result.gt, list(result.paths), **meta, pred_no_comments=blind)


def split_options(opt: dict, split: str) -> dict:
    if split not in opt.get("datasets", {}):
        raise OptionError(f"{opt['opt_path']}: no `datasets.{split}` to benchmark on")
    return opt["datasets"][split]


def split_dataset(opt: dict, split: str):
    """The dataset of the option file's `datasets.<split>` without its text: its rows, no image decoded."""
    raw = split_options(opt, split)
    loaders.ensure_demo_data(raw, rank=0)
    dataset_opt = {**{k: v for k, v in raw.items() if k != "text"}, "phase": split.split("_")[0]}
    try:
        return loaders.GuardedDataset(build_dataset(dataset_opt))
    except (OSError, KeyError, ValueError) as err:  # a missing meta file or folder, a malformed one
        raise OptionError(f"{opt['opt_path']}: datasets.{split} cannot be read: {type(err).__name__}: {err}") from err


def split_image_paths(opt: dict, split: str, known: dict) -> list:
    """The image files `datasets.<split>` scores, in order (real paths), read from its meta file;
    `known` (dataset options -> paths) spares re-reading the split that seeds and sweep points share."""
    key = json.dumps(opt.get("datasets", {}).get(split), sort_keys=True, default=str)
    if key not in known:
        dataset = split_dataset(opt, split)
        known[key] = [osp.realpath(dataset.image_path(i)) for i in range(len(dataset))]
    return known[key]


def different_image_lists(image_lists: dict, split: str) -> list:
    """An error per run whose split lists other images (or another order) than the first run's."""
    if not image_lists:
        return []
    (first, reference), *others = image_lists.items()
    errors = []
    for run, paths in others:
        if paths == reference:
            continue
        at = next((i for i, (a, b) in enumerate(zip(reference, paths)) if a != b), min(len(reference), len(paths)))
        first_diff = (f"image {at + 1} is {reference[at] if at < len(reference) else '(none)'} for {first.name} "
                      f"but {paths[at] if at < len(paths) else '(none)'} for {run.name}")
        errors.append(f"runs {first.name} ({first.opt_path}) and {run.name} ({run.opt_path}) would score different "
                      f"datasets.{split} images ({len(reference)} vs {len(paths)}; {first_diff}): point every option "
                      "file's split at the same data")
    return errors


def split_loader(opt: dict, split: str, withhold_comments: bool = False):
    """The loader of the option file's `datasets.<split>` (its images' comments withheld if asked)."""
    split_options(opt, split)
    return loaders.eval_loaders(opt, [split], withhold_comments)[0][1]


def score_pyiqa_metric(entry: dict, paths: list, gt, show_progress: bool, status: str):
    """Score a pyiqa metric (image only) as pyiqa's own benchmark does: each original image file read
    by pyiqa and preprocessed by the metric itself (not another model's resized tensors)."""
    name = entry["pyiqa_metric"]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with weights_required(f"models[{entry['name']}].metric_kwargs.pretrained_model_path", f"pyiqa metric '{name}'"):
        metric = create_metric(name, as_loss=False, device=device, **entry.get("metric_kwargs") or {})
    preds = []
    start = time.perf_counter()
    with torch.no_grad():
        for path in tqdm(paths, desc=entry["name"], unit="image", disable=not show_progress, leave=False):
            score = torch.as_tensor(metric(path, **entry.get("score_kwargs") or {})).reshape(-1)
            if score.numel() != 1:
                raise ValueError(f"gave {score.numel()} values for one image ({path}), not one score")
            preds.append(float(score))
    seconds = time.perf_counter() - start
    pred = -np.array(preds) if metric.lower_better else np.array(preds)  # pyiqa's benchmark flips them too
    trainable, total = count_parameters(metric.net)
    return leaderboard.row_from_predictions(entry["name"], entry.get("modality") or "image", pred, gt, seconds,
                                            trainable, total, status=status)


def skip_reason(metric_name: str, err: Exception) -> str:
    """One line saying why a pyiqa metric could not be scored here."""
    text = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, WeightsUnavailableError):
        hint = "" if ALLOW_DOWNLOAD else "; run once with IAA_BENCH_ALLOW_DOWNLOAD=1 on a connected machine"
        cause = type(err.__cause__).__name__ if err.__cause__ else "not given"
        return (f"pyiqa metric '{metric_name}': its weights are not in the local caches and cannot be downloaded "
                f"here{hint}, or set metric_kwargs.pretrained_model_path to a local file ({cause})")
    if isinstance(err, ImportError):
        return f"pyiqa metric '{metric_name}' needs a package that is not installed: {type(err).__name__}: {text}"
    return f"pyiqa metric '{metric_name}' failed: {type(err).__name__}: {text}"


def pyiqa_metric_row(entry: dict, paths: list, gt, show_progress: bool, status: str):
    """(row, None) for a scored pyiqa metric, or (skipped row, reason): a metric that cannot be built or
    scored here (missing package, weights, an error inside it) must not cost the whole leaderboard."""
    try:
        return score_pyiqa_metric(entry, paths, gt, show_progress, status), None
    except Exception as err:  # noqa: BLE001 - any failure inside third-party metric code is recorded, not fatal
        reason = skip_reason(entry["pyiqa_metric"], err)
        expected = isinstance(err, (WeightsUnavailableError, ImportError))  # else its traceback helps
        log.warning(f"{entry['name']}: skipped: {reason}", exc_info=None if expected else err)
        return leaderboard.skipped_row(entry["name"], entry.get("modality") or "image", reason), reason


def check_same_images(name: str, paths: list, reference: list, reference_name: str) -> None:
    """Rows are only comparable on the same images in the same order."""
    same = len(paths) == len(reference) and all(osp.realpath(a) == osp.realpath(b) for a, b in zip(paths, reference))
    if not same:
        raise OptionError(f"{name} was scored on {len(paths)} images, {reference_name} on {len(reference)} "
                          "(or in another order): point every option file's test split at the same data")


def vote_counts(dataset) -> np.ndarray:
    """(N, 10) vote histograms of a split: columns c1..c10 of the dataset's rows (pyiqa's AVA layout)."""
    return np.array([row[2:2 + NUM_BINS] for row in dataset.paths_mos], dtype=np.float64)


def seed_row(label: str, runs: list, scores: dict, modality: str | None, status: str):
    """One leaderboard row from the scores of a model's runs (one per seed); modality None: the network's."""
    got = [scores[run.name] for run in runs]
    row = leaderboard.row_from_seeds(
        label, modality or got[0].modality, [s.pred for s in got], got[0].gt, sum(s.seconds for s in got), got[0].trainable,
        got[0].total, macs_per_sample=got[0].macs, train_samples_per_s=float(np.nanmean([s.train_rate for s in got]))
        if any(np.isfinite(s.train_rate) for s in got) else float("nan"), status=status)
    if got[0].pred_no_comments is not None:  # mean over seeds, as the row's own SRCC / PLCC
        blind = [compute_metrics(s.pred_no_comments, s.gt) for s in got]
        row.srcc_no_comments, row.plcc_no_comments = (float(np.mean([m[k] for m in blind])) for k in ("srcc", "plcc"))
    return row


def benchmark(argv=None) -> list:
    """Train what is missing, score every model of a benchmark file and write results/<name>/; returns the rows."""
    parser = argparse.ArgumentParser(description="Benchmark trained models on one test split.")
    parser.add_argument("-opt", required=True, help="Benchmark option file (see iaa_bench/evaluation/benchmark.py).")
    parser.add_argument("--out", default=None, help="Output folder (default: <root>/results/<name>[_quick<N>]).")
    parser.add_argument("--root", default=os.getcwd(), help="Root of experiments/ and results/ (default: cwd).")
    parser.add_argument("--quick", type=int, default=0, metavar="N",
                        help="Smoke mode: train every run for N iterations into separate run names; "
                             "every output says it is not a result.")
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    args = parser.parse_args(argv)
    if args.quick < 0:
        raise OptionError(f"--quick must be a positive number of iterations, got {args.quick}")
    bench = load_benchmark(args.opt)
    root = osp.abspath(args.root)
    name = (bench.get("name") or osp.splitext(osp.basename(args.opt))[0]) + (f"_quick{args.quick}" if args.quick else "")
    out = args.out or osp.join(root, "results", name)
    status = leaderboard.quick_status(args.quick) if args.quick else leaderboard.MEASURED
    note = status if args.quick else ""
    show = not args.no_progress
    log_file = osp.join(out, f"benchmark_{time.strftime('%Y%m%d_%H%M%S')}.log")
    started = time.time()

    model_runs, sweep_runs = plan(bench, args.quick)
    runs = unique_runs(model_runs, sweep_runs)
    preflight(runs, root, bench["train_missing"], bench["split"])
    scores, report = {}, {"runs": [], "models": []}
    reference = None
    for i, run in enumerate(runs, 1):
        setup_run_logging(log_file, rank=0)  # again after each training run, which logs to its own file
        checkpoint = ensure_trained(run, root, bench["train_missing"], f"run {i}/{len(runs)}")
        setup_run_logging(log_file, rank=0)
        scores[run.name] = score_run(run, checkpoint, bench["split"], root, osp.join(out, "runs"), show)
        reference = reference or (run.name, scores[run.name].paths, run)
        check_same_images(run.name, scores[run.name].paths, reference[1], reference[0])
        report["runs"].append({"name": run.name, "opt": osp.abspath(run.opt_path), "overrides": list(run.overrides),
                               "checkpoint": checkpoint})
        s = scores[run.name]
        print(f"[benchmark] run {i}/{len(runs)} {run.name}: SRCC {compute_metrics(s.pred, s.gt)['srcc']:.4f}", flush=True)

    rows = []
    for entry in bench["models"]:
        if "opt" in entry:
            rows.append(seed_row(entry["name"], model_runs[entry["name"]], scores, entry.get("modality"), status))
            report["models"].append({"name": entry["name"], "status": "evaluated",
                                     "runs": [r.name for r in model_runs[entry["name"]]]})
    for entry in [m for m in bench["models"] if "pyiqa_metric" in m]:
        print(f"[benchmark] pyiqa metric {entry['pyiqa_metric']} ({entry['name']}) on the original images", flush=True)
        row, reason = pyiqa_metric_row(entry, reference[1], scores[reference[0]].gt, show, status)
        rows.append(row)
        report["models"].append({"name": entry["name"], "pyiqa_metric": entry["pyiqa_metric"],
                                 **({"status": "skipped", "reason": reason} if reason else {"status": "evaluated"})})
    leaderboard.add_intervals(rows, **bench["bootstrap"])
    if bench["ceiling"]:
        rows.append(leaderboard.ceiling_row(vote_counts(split_dataset(run_options(reference[2], root), bench["split"]))))
    rows += [leaderboard.reference_row(ref) for ref in bench["references"]]

    sweep_results = []
    for sweep, point_list, point_runs in sweep_runs:
        point_rows = [seed_row(sweeps.point_label(sweep, point), runs_, scores, None, status)
                      for point, runs_ in zip(point_list, point_runs)]
        leaderboard.add_intervals(point_rows, **bench["bootstrap"])
        sweep_results.append((sweep, point_list, point_rows))

    if bench["models"]:
        leaderboard.write_results(rows, out, dataset=bench["dataset"], note=note, name=name)
    if sweep_results:
        leaderboard.write_files(sweeps.render(sweep_results, note), out)
    atomic_write_json(osp.join(out, "benchmark.json"), {
        "benchmark": osp.abspath(args.opt), "split": bench["split"], "images": len(reference[1]),
        "status": status, "seeds": bench.get("seeds"), "bootstrap": bench["bootstrap"],
        "wall_seconds": round(time.time() - started, 1), **report})
    for file_name, wrote in (("leaderboard.md", bench["models"]), ("sweeps.md", sweep_results)):
        if wrote:
            print(Path(out, file_name).read_text(encoding="utf-8"), flush=True)
    for item in report["models"]:
        if item["status"] == "skipped":
            print(f"Skipped {item['name']}: {item['reason']}")
    print(f"Results written to {out} ({time.time() - started:.0f} s)", flush=True)
    return rows
