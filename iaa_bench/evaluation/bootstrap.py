"""Bootstrap over test images: 95 % intervals of SRCC/PLCC and paired differences between models.

Every model is resampled with the *same* image indices (one seeded draw per benchmark),
so differences are paired: a gap that the interval of the paired difference excludes 0
from is significant at the 5 % level. A model trained with several seeds is scored by the
mean of its seeds' correlations on each resample. Vectorised numpy: the resamples are
ranked and correlated in blocks of rows, never one at a time.
"""
import numpy as np
from scipy import stats

LEVEL = 0.95
_BLOCK_VALUES = 2_000_000  # resamples x images per block, to bound memory on 20k-image test sets


def resample_indices(n: int, rounds: int = 2000, seed: int = 0) -> np.ndarray:
    """(rounds, n) image indices drawn with replacement, seeded."""
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n), dtype=np.int64)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / denom


def resampled_correlations(preds: np.ndarray, gt: np.ndarray, indices: np.ndarray) -> dict:
    """{'srcc', 'plcc'}: (rounds,) correlations of the (seeds, n) mean-score predictions with
    the (n,) ground truth on each resample, averaged over seeds."""
    preds = np.atleast_2d(np.asarray(preds, dtype=np.float64))
    gt = np.asarray(gt, dtype=np.float64)
    block = max(1, _BLOCK_VALUES // max(indices.shape[1], 1))
    out = {"srcc": [], "plcc": []}
    for start in range(0, len(indices), block):
        idx = indices[start:start + block]
        truth = gt[idx]
        truth_rank = stats.rankdata(truth, axis=1)
        srcc = np.mean([_pearson_rows(stats.rankdata(p[idx], axis=1), truth_rank) for p in preds], axis=0)
        plcc = np.mean([_pearson_rows(p[idx], truth) for p in preds], axis=0)
        out["srcc"].append(srcc)
        out["plcc"].append(plcc)
    return {k: np.concatenate(v) for k, v in out.items()}


def interval(values: np.ndarray, level: float = LEVEL) -> tuple:
    """Percentile interval of bootstrap values (NaN resamples, e.g. constant predictions, left out)."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
