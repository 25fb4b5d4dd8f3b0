"""Aesthetics metrics, registered in pyiqa's METRIC_REGISTRY.

All metrics work on score distributions over the 10 AVA bins (scores 1..10), from
which the mean score is sum_i i * p_i on the 1..10 scale:
- srcc / plcc / krcc: scipy correlations of predicted vs ground-truth mean scores;
- acc: binary accuracy at threshold 5. `ties: low` (default): "high aesthetic" means mean
  score > 5, so a mean of exactly 5.0 counts as low, for prediction and ground truth alike;
  `ties: correct`: the authors' rule (authors' inference script, third-party copy),
  (pred - 5) * (gt - 5) >= 0 is correct, so a prediction or ground truth of exactly 5 is
  right whatever the other side. The default stays `low`, a plain two-class rule (5.0 is
  in one class, not both); `correct` never scores lower;
- rmse: root-mean-square error of the mean score (1..10 scale);
- emd1 / emd2: mean EMD between the distributions with r=1 / r=2.

pyiqa's metric convention is `fn(pred, gt, **opt)`; each function here takes the two
(N, 10) distribution arrays and is marked `input_distributions = True`, so the model
passes distributions rather than scalar scores.
"""
import numpy as np
from scipy import stats

from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import METRIC_REGISTRY

NUM_BINS = 10
ACC_THRESHOLD = 5.0


def mean_score(dist) -> np.ndarray:
    """Mean score on the 1..10 scale of (N, 10) distributions (normalised first).

    (N,) arrays are already scores (archs that predict a scalar) and pass through.
    """
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim == 1:
        return dist
    dist = dist / dist.sum(axis=-1, keepdims=True)
    return dist @ np.arange(1, dist.shape[-1] + 1, dtype=np.float64)


def _dist_metric(fn):
    fn.input_distributions = True
    return METRIC_REGISTRY.register()(fn)


@_dist_metric
def aesthetic_srcc(pred_dist, gt_dist):
    return float(stats.spearmanr(mean_score(pred_dist), mean_score(gt_dist))[0])


@_dist_metric
def aesthetic_plcc(pred_dist, gt_dist):
    return float(stats.pearsonr(mean_score(pred_dist), mean_score(gt_dist))[0])


@_dist_metric
def aesthetic_krcc(pred_dist, gt_dist):
    return float(stats.kendalltau(mean_score(pred_dist), mean_score(gt_dist))[0])


@_dist_metric
def aesthetic_acc(pred_dist, gt_dist, threshold: float = ACC_THRESHOLD, ties: str = "low"):
    if ties not in ("low", "correct"):
        raise OptionError(f"aesthetic_acc: ties must be 'low' or 'correct', got {ties!r}")
    # Rounded first: a histogram whose mean is exactly 5 can compute as 5.000000000000001.
    pred, gt = (np.round(mean_score(d), 9) - threshold for d in (pred_dist, gt_dist))
    correct = pred * gt >= 0 if ties == "correct" else (pred > 0) == (gt > 0)
    return float(np.mean(correct))


@_dist_metric
def aesthetic_rmse(pred_dist, gt_dist):
    return float(np.sqrt(np.mean((mean_score(pred_dist) - mean_score(gt_dist)) ** 2)))


@_dist_metric
def aesthetic_emd(pred_dist, gt_dist, r: int = 2):
    pred = np.asarray(pred_dist, dtype=np.float64)
    gt = np.asarray(gt_dist, dtype=np.float64)
    if pred.ndim == 1:
        return float("nan")  # a scalar prediction has no distribution
    pred, gt = pred / pred.sum(-1, keepdims=True), gt / gt.sum(-1, keepdims=True)
    cdf_diff = np.cumsum(pred, -1) - np.cumsum(gt, -1)
    return float(np.mean(np.mean(np.abs(cdf_diff) ** r, -1) ** (1.0 / r)))


# The full set every iaa_bench option file validates with (pyiqa `val.metrics` schema).
DEFAULT_VAL_METRICS = {
    "srcc": {"type": "aesthetic_srcc"},
    "plcc": {"type": "aesthetic_plcc"},
    "krcc": {"type": "aesthetic_krcc"},
    "acc": {"type": "aesthetic_acc"},
    "rmse": {"type": "aesthetic_rmse", "better": "lower"},
    "emd1": {"type": "aesthetic_emd", "r": 1, "better": "lower"},
    "emd2": {"type": "aesthetic_emd", "r": 2, "better": "lower"},
}


def compute_metrics(pred_dist, gt_dist, metric_opts: dict | None = None) -> dict:
    """Evaluate `metric_opts` (pyiqa `val.metrics` schema) on (N, 10) distributions.

    pyiqa's own scalar metrics (e.g. `calculate_srcc`) receive mean scores instead.
    """
    metric_opts = DEFAULT_VAL_METRICS if metric_opts is None else metric_opts
    pred_dist, gt_dist = np.asarray(pred_dist), np.asarray(gt_dist)
    results = {}
    for name, opt in metric_opts.items():
        opt = {k: v for k, v in opt.items() if k not in ("type", "better")}
        fn = METRIC_REGISTRY.get(metric_opts[name]["type"])
        if getattr(fn, "input_distributions", False):
            results[name] = fn(pred_dist, gt_dist, **opt)
        else:
            results[name] = float(fn(mean_score(pred_dist), mean_score(gt_dist), **opt))
    return results
