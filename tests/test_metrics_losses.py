"""Metrics and EMD loss checked against independent references.

The references are scipy's correlations, direct numpy formulas, and pyiqa's own
`EMDLoss`, so a change in iaa_bench that drifts from the published definitions (or
from pyiqa, which NIMA numbers in the pyiqa benchmark csv come from) fails here.
"""
import numpy as np
import pytest
import torch
from scipy import stats

from iaa_bench.evaluation import metrics
from iaa_bench.models.losses import ScoreDistEMDLoss, emd
from iaa_bench.utils.pyiqa_adapter import LOSS_REGISTRY, METRIC_REGISTRY, build_loss

N_IMAGES = 64
BINS = np.arange(1, 11, dtype=np.float64)


@pytest.fixture(scope="module")
def dists():
    """Seeded predicted distributions and integer ground-truth vote histograms."""
    rng = np.random.default_rng(0)
    pred = rng.dirichlet(np.full(10, 2.0), size=N_IMAGES)
    gt_votes = np.stack([rng.multinomial(rng.integers(80, 300), p) for p in rng.dirichlet(np.full(10, 2.0), N_IMAGES)])
    return pred, gt_votes


def hand_mean(dist):
    dist = np.asarray(dist, dtype=np.float64)
    return (dist * BINS).sum(1) / dist.sum(1)


def hand_emd(pred, target, r):
    """Per-sample EMD written out sample by sample, bin by bin."""
    out = []
    for p, t in zip(pred, target):
        cdf_p, cdf_t, acc = 0.0, 0.0, 0.0
        for k in range(len(p)):
            cdf_p, cdf_t = cdf_p + p[k], cdf_t + t[k]
            acc += abs(cdf_p - cdf_t) ** r
        out.append((acc / len(p)) ** (1.0 / r))
    return np.array(out)


def one_hot(score: int, n: int = 1) -> np.ndarray:
    dist = np.zeros((n, 10))
    dist[:, score - 1] = 1.0
    return dist


# --- metrics ---------------------------------------------------------------------------

def test_mean_score_normalises_vote_counts(dists):
    _, gt_votes = dists
    np.testing.assert_allclose(metrics.mean_score(gt_votes), hand_mean(gt_votes), rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric, reference", [
    (metrics.aesthetic_srcc, stats.spearmanr),
    (metrics.aesthetic_plcc, stats.pearsonr),
    (metrics.aesthetic_krcc, stats.kendalltau),
])
def test_correlations_match_scipy(dists, metric, reference):
    pred, gt_votes = dists
    expected = reference(hand_mean(pred), hand_mean(gt_votes))[0]
    assert metric(pred, gt_votes) == pytest.approx(expected, abs=1e-12)


def test_accuracy_matches_numpy(dists):
    pred, gt_votes = dists
    expected = np.mean((hand_mean(pred) > 5) == (hand_mean(gt_votes) > 5))
    assert metrics.aesthetic_acc(pred, gt_votes) == pytest.approx(expected)


def test_accuracy_tie_rules():
    at_5, low, high = np.eye(10)[[4]], np.eye(10)[[3]], np.eye(10)[[6]]  # means 5, 4, 7
    pred, gt = np.concatenate([at_5, at_5, low, high]), np.concatenate([low, high, at_5, high])
    assert metrics.aesthetic_acc(pred, gt) == 0.75  # ties low: 5 vs 7 is wrong (5 counts as low)
    assert metrics.aesthetic_acc(pred, gt, ties="correct") == 1.0  # authors: (pred-5)(gt-5) >= 0
    with pytest.raises(ValueError, match="ties"):
        metrics.aesthetic_acc(pred, gt, ties="high")


def test_rmse_matches_numpy(dists):
    pred, gt_votes = dists
    expected = np.sqrt(np.mean((hand_mean(pred) - hand_mean(gt_votes)) ** 2))
    assert metrics.aesthetic_rmse(pred, gt_votes) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("r", [1, 2])
def test_emd_metric_matches_hand_formula_on_normalised_votes(dists, r):
    pred, gt_votes = dists
    gt = gt_votes / gt_votes.sum(1, keepdims=True)
    assert metrics.aesthetic_emd(pred, gt_votes, r=r) == pytest.approx(hand_emd(pred, gt, r).mean(), abs=1e-12)


def test_accuracy_tie_mean_exactly_five_counts_as_low():
    five = one_hot(5)
    split_four_six = np.zeros((1, 10))
    split_four_six[0, [3, 5]] = 3  # three votes at 4, three at 6: mean exactly 5.0
    assert metrics.mean_score(split_four_six)[0] == 5.0
    assert metrics.aesthetic_acc(five, one_hot(4)) == 1.0  # both low
    assert metrics.aesthetic_acc(five, one_hot(6)) == 0.0  # 5.0 is low, 6 is high
    assert metrics.aesthetic_acc(split_four_six, one_hot(4)) == 1.0
    assert metrics.aesthetic_acc(one_hot(6), split_four_six) == 0.0


def test_accuracy_tie_rule_survives_float_rounding():
    votes = np.array([[1, 1, 1, 2, 4, 1, 0, 2, 1, 0]])  # 65 / 13 = 5.0 exactly, computed as 5.000000000000001
    assert (votes * BINS).sum() == 5 * votes.sum()
    assert metrics.aesthetic_acc(one_hot(4), votes) == 1.0


def test_compute_metrics_runs_every_default_metric(dists):
    pred, gt_votes = dists
    results = metrics.compute_metrics(pred, gt_votes)
    assert set(results) == set(metrics.DEFAULT_VAL_METRICS)
    assert results["srcc"] == metrics.aesthetic_srcc(pred, gt_votes)
    assert results["emd1"] == metrics.aesthetic_emd(pred, gt_votes, r=1)
    assert results["emd2"] == metrics.aesthetic_emd(pred, gt_votes, r=2)


def test_compute_metrics_feeds_pyiqa_scalar_metrics_mean_scores(dists):
    pred, gt_votes = dists
    results = metrics.compute_metrics(pred, gt_votes, {"pyiqa_srcc": {"type": "calculate_srcc"}})
    assert results["pyiqa_srcc"] == pytest.approx(stats.spearmanr(hand_mean(pred), hand_mean(gt_votes))[0])


# --- EMD loss ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tensors():
    torch.manual_seed(0)
    pred = torch.softmax(torch.randn(N_IMAGES, 10, dtype=torch.float64), -1)
    target = torch.softmax(torch.randn(N_IMAGES, 10, dtype=torch.float64), -1)
    return pred, target


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("r", [1, 2])
def test_loss_equals_pyiqa_emdloss(tensors, r, reduction):
    pred, target = tensors
    ours = ScoreDistEMDLoss(r=r, reduction=reduction)(pred, target)
    pyiqa = build_loss({"type": "EMDLoss", "r": r, "reduction": reduction})(pred, target)
    torch.testing.assert_close(ours, pyiqa, rtol=0, atol=1e-12)


@pytest.mark.parametrize("r", [1, 2])
def test_loss_equals_hand_formula(tensors, r):
    pred, target = tensors
    expected = hand_emd(pred.numpy(), target.numpy(), r)
    np.testing.assert_allclose(emd(pred, target, r).numpy(), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ScoreDistEMDLoss(r=r)(pred, target).item(), expected.mean(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("weight_shape", [(N_IMAGES,), (N_IMAGES, 1)])
def test_weighted_reductions(tensors, weight_shape):
    pred, target = tensors
    weight = torch.rand(weight_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    per_sample, w = emd(pred, target, 2), weight.reshape(-1)
    torch.testing.assert_close(ScoreDistEMDLoss()(pred, target, weight), (w * per_sample).sum() / w.sum())
    torch.testing.assert_close(ScoreDistEMDLoss(reduction="sum")(pred, target, weight), (w * per_sample).sum())
    torch.testing.assert_close(ScoreDistEMDLoss(reduction="none")(pred, target, weight), w * per_sample)


def test_uniform_weights_equal_unweighted_mean(tensors):
    pred, target = tensors
    weight = torch.full((N_IMAGES,), 3.0, dtype=torch.float64)
    torch.testing.assert_close(ScoreDistEMDLoss()(pred, target, weight), ScoreDistEMDLoss()(pred, target))


def test_loss_weight_scales(tensors):
    pred, target = tensors
    torch.testing.assert_close(ScoreDistEMDLoss(loss_weight=2.5)(pred, target), 2.5 * ScoreDistEMDLoss()(pred, target))


@pytest.mark.parametrize("kwargs", [{"r": 0}, {"r": 3}, {"r": "2"}, {"reduction": "avg"}, {"reduction": None}])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        ScoreDistEMDLoss(**kwargs)


@pytest.mark.parametrize("target_shape", [(N_IMAGES, 9), (N_IMAGES - 1, 10), (N_IMAGES * 10,)])
def test_shape_mismatch_raises(tensors, target_shape):
    pred, _ = tensors
    with pytest.raises(ValueError):
        ScoreDistEMDLoss()(pred, torch.zeros(target_shape, dtype=pred.dtype))


@pytest.mark.parametrize("weight_shape", [(N_IMAGES - 1,), (2, N_IMAGES // 2)])  # wrong count; right count, wrong shape
def test_bad_weight_shape_raises_value_error(tensors, weight_shape):
    pred, target = tensors
    with pytest.raises(ValueError):
        ScoreDistEMDLoss()(pred, target, torch.ones(weight_shape, dtype=pred.dtype))


# --- registration in pyiqa ------------------------------------------------------------------

def test_loss_registered_beside_pyiqa_emdloss():
    assert LOSS_REGISTRY.get("ScoreDistEMDLoss") is ScoreDistEMDLoss
    assert LOSS_REGISTRY.get("EMDLoss").__module__.startswith("pyiqa.")
    assert isinstance(build_loss({"type": "ScoreDistEMDLoss", "r": 1}), ScoreDistEMDLoss)


@pytest.mark.parametrize("name", ["srcc", "plcc", "krcc", "acc", "rmse", "emd"])
def test_metrics_registered(name):
    assert METRIC_REGISTRY.get(f"aesthetic_{name}") is getattr(metrics, f"aesthetic_{name}")



def test_emd_gradient_is_finite_when_prediction_equals_target():
    target = torch.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(0)), -1)
    pred = target.clone().requires_grad_(True)
    ScoreDistEMDLoss(r=2)(pred, target).backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("r", [True, 2.0, 3])
def test_emd_rejects_r_that_is_not_the_int_1_or_2(r):
    with pytest.raises(ValueError):
        ScoreDistEMDLoss(r=r)
