"""Scoring a trained network: one `evaluate()` for end-of-training test, test.py and the benchmark."""
import csv
import logging
import os
import time
from dataclasses import dataclass
from os import path as osp

import numpy as np
import torch

from iaa_bench.config.options import parse_options
from iaa_bench.data.loaders import eval_loaders, with_feature_cache
from iaa_bench.data.retrieval import attach_retriever
from iaa_bench.evaluation.metrics import (
    DEFAULT_VAL_METRICS,
    compute_metrics,
    mean_score,
)
from iaa_bench.models import checkpoint as ckpt
from iaa_bench.models.iaa_model import build_iaa_model
from iaa_bench.training.run_folder import setup_run_logging, use_progress_bar
from iaa_bench.utils.atomic import atomic_write_json
from iaa_bench.utils.errors import MissingInputError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)


@dataclass
class Evaluation:
    """Predictions of one model on one split, gathered from every rank, and their metrics."""

    pred: np.ndarray  # (N, 10) distributions, or (N,) mean scores for scalar archs
    gt: np.ndarray
    paths: list
    metrics: dict
    seconds: float
    unreadable: list  # images skipped by `bad_image: skip`, not counted in the metrics

    def summary(self) -> dict:
        """The metrics with the number of images they were computed on and the images left out."""
        return {**self.metrics, "images": len(self.pred), "unreadable_images": self.unreadable}

    @property
    def images_per_s(self) -> float:
        return len(self.pred) / max(self.seconds, 1e-9)


def evaluate(model, loader, metric_opts=None, desc: str = "Test", show_progress: bool = False) -> Evaluation:
    """Run `model` (an IAAModel) over `loader` and compute `metric_opts` (default: the standard set)."""
    start = time.perf_counter()
    pred, gt, paths, unreadable = model.predict(loader, desc=desc, show_progress=show_progress)
    seconds = time.perf_counter() - start
    return Evaluation(pred, gt, paths, compute_metrics(pred, gt, metric_opts or DEFAULT_VAL_METRICS), seconds,
                      unreadable)


def metric_options(opt) -> dict:
    return (opt.get("val") or {}).get("metrics") or DEFAULT_VAL_METRICS


def evaluate_best_on_test(opt, model) -> dict:
    """Metrics of the best-on-val network on each `test*` dataset (none: {})."""
    phases = [p for p in opt.get("datasets", {}) if p.split("_")[0] == "test"]
    if not phases:
        return {}
    if opt["dist"]:
        torch.distributed.barrier()  # rank 0 has written net_best
    best = osp.join(opt["path"]["models"], "net_best.pth")
    if osp.isfile(best):
        ckpt.load_network_checkpoint(model.net, best)
    results = {}
    for phase, loader in eval_loaders(opt, phases):
        loader = with_feature_cache(opt, model, loader)
        results[phase] = evaluate(model, loader, metric_options(opt), f"Test {phase}", opt["show_progress"]).summary()
    return results


def count_parameters(net) -> tuple[int, int]:
    net = ckpt.bare(net)
    params = list(net.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def default_checkpoint(opt) -> str | None:
    """The run's own best (else latest) network, for evaluating without `path.pretrain_network`."""
    models = osp.join(opt["root_path"], "experiments", opt["name"], "models")
    for label in ("net_best.pth", "net_latest.pth"):
        if osp.isfile(osp.join(models, label)):
            return osp.join(models, label)
    return None


def eval_checkpoint(opt, checkpoint=None) -> str | None:
    """The weights to score: `checkpoint`, else `path.pretrain_network` or pyiqa's `pretrain_network_g`,
    else the run's own best (else latest) network."""
    paths = opt["path"]
    return checkpoint or paths.get("pretrain_network") or paths.get("pretrain_network_g") or default_checkpoint(opt)


def build_eval_model(opt, checkpoint=None):
    """An `IAAModel` in evaluation mode with `eval_checkpoint(opt, checkpoint)` loaded."""
    checkpoint = eval_checkpoint(opt, checkpoint)
    if not checkpoint:
        raise MissingInputError(f"No checkpoint for `{opt['name']}`: set path.pretrain_network or train it first "
                                f"(looked in {osp.join(opt['root_path'], 'experiments', opt['name'], 'models')})")
    opt["path"]["pretrain_network"] = checkpoint
    log.info(f"Scoring `{opt['name']}` with the weights of {checkpoint}")
    model = build_iaa_model(opt)
    attach_retriever(opt, model)
    return model


def write_predictions(path: str, result: Evaluation) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["img_path", "pred_mean", "gt_mean"])
        writer.writerows(zip(result.paths, mean_score(result.pred).round(5), mean_score(result.gt).round(5)))


def test_pipeline(argv=None):
    """Evaluate from an option file; writes results/<name>/metrics.json and predictions CSVs."""
    from iaa_bench.config.schema import validate_options

    opt, args = parse_options(is_train=False, argv=argv, validate=validate_options)
    opt["show_progress"] = use_progress_bar(opt)
    setup_run_logging(osp.join(opt["path"]["log"], f"test_{opt['name']}_{time.strftime('%Y%m%d_%H%M%S')}.log"),
                      opt["rank"])
    model = build_eval_model(opt)
    # --no-comments: every image scored as if it had none (files get a _no_comments suffix)
    suffix, label = ("_no_comments", ", comments withheld") if args.no_comments else ("", "")
    results = {}
    for phase, loader in eval_loaders(opt, withhold_comments=args.no_comments):
        name = loader.dataset.opt.get("name", phase)
        result = evaluate(model, with_feature_cache(opt, model, loader), metric_options(opt), f"Test {name}",
                          opt["show_progress"])
        results[phase] = {"dataset": name, "images_per_s": result.images_per_s, "comments_withheld": args.no_comments,
                          **result.summary()}
        if opt["rank"] == 0:
            write_predictions(osp.join(opt["path"]["results_root"], f"predictions_{phase}{suffix}.csv"), result)
            print(f"TEST {opt['name']} {phase} ({name}, {len(result.pred)} images, {len(result.unreadable)} unreadable"
                  f"{label}) "
                  + " ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()), flush=True)
    if opt["rank"] == 0:
        atomic_write_json(osp.join(opt["path"]["results_root"], f"metrics{suffix}.json"), results)
    return results
