"""pyiqa metrics in the benchmark, through pyiqa's own create_metric / InferenceModel: original image
files with the metric's own preprocessing, per-entry keyword arguments checked up front, and every
failure inside a metric turned into a skipped row instead of a crashed benchmark."""
import numpy as np
import pytest
import torch
from conftest import tiny_options, write_options, write_tiny_ava
from PIL import Image
from torch import nn

from iaa_bench.evaluation import benchmark
from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, DEFAULT_CONFIGS, register_metric_config

PROBE = "shape_probe_iaa"
SIZES = [(40, 56), (72, 30), (33, 33)]  # (width, height) of the probed files: none is a model's 32 x 32


@ARCH_REGISTRY.register()
class ShapeProbeIAA(nn.Module):
    """A pyiqa-style NR metric that records what it is given; its score is the image's scaled brightness."""

    seen = []

    def __init__(self, scale: float = 1.0, fail: str = ""):
        super().__init__()
        if fail == "import":  # what a metric whose optional package is missing raises when built
            raise ModuleNotFoundError("No module named 'probe_extra'")
        self.scale, self.fail = nn.Parameter(torch.tensor(float(scale))), fail

    def forward(self, x, task_: str = "quality"):
        if self.fail == "forward":
            raise RuntimeError("probe broke while scoring")
        ShapeProbeIAA.seen.append((tuple(x.shape), task_))
        return (x.mean(dim=(1, 2, 3)) * self.scale).reshape(-1, 1)


@pytest.fixture
def probe_metric(monkeypatch):
    """The probe as a pyiqa metric name (`create_metric(PROBE)`), for this test only."""
    monkeypatch.setitem(DEFAULT_CONFIGS, PROBE, {})
    register_metric_config(PROBE, {"type": "ShapeProbeIAA"}, "0, 1")
    ShapeProbeIAA.seen = []
    return PROBE


@pytest.fixture
def probe_images(tmp_path):
    paths = []
    for i, (width, height) in enumerate(SIZES):
        pixels = np.full((height, width, 3), 40 + 80 * i, dtype=np.uint8)
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    gt = np.eye(10)[[2, 5, 8]]  # ground-truth distributions, rising with brightness
    return paths, gt


def test_metric_scores_original_images_with_its_kwargs(probe_metric, probe_images):
    paths, gt = probe_images
    entry = {"name": "probe", "pyiqa_metric": probe_metric, "metric_kwargs": {"scale": 2.0},
             "score_kwargs": {"task_": "aesthetic"}}
    row, reason = benchmark.pyiqa_metric_row(entry, paths, gt, show_progress=False, status="measured")
    assert reason is None and row.status == "measured"
    assert ShapeProbeIAA.seen == [((1, 3, h, w), "aesthetic") for w, h in SIZES]  # each file as it is on disk
    expected = 2.0 * np.array([40, 120, 200]) / 255
    np.testing.assert_allclose(row.pred_mean, expected, rtol=1e-5)  # metric_kwargs reached the arch
    assert row.srcc == pytest.approx(1.0) and row.trainable_params == 1


@pytest.mark.parametrize("fail, expected", [
    ("import", "pyiqa metric 'shape_probe_iaa' needs a package that is not installed: ModuleNotFoundError: "
               "No module named 'probe_extra'"),
    ("forward", "pyiqa metric 'shape_probe_iaa' failed: RuntimeError: probe broke while scoring"),
])
def test_metric_failure_becomes_a_skipped_row(probe_metric, probe_images, fail, expected):
    paths, gt = probe_images
    entry = {"name": "probe", "pyiqa_metric": probe_metric, "metric_kwargs": {"fail": fail}}
    row, reason = benchmark.pyiqa_metric_row(entry, paths, gt, show_progress=False, status="measured")
    assert reason == expected and row.is_skipped and row.status == f"skipped: {expected}"
    assert np.isnan(row.srcc) and row.pred_mean is None


def test_metric_kwargs_checked_before_any_work(probe_metric, tmp_path):
    model = write_options(tmp_path / "m.yml", tiny_options(write_tiny_ava(tmp_path / "ava", n=10)))
    bench = write_options(tmp_path / "bench.yml", {"name": "b", "models": [
        {"name": "m", "opt": str(model), "metric_kwargs": {"scale": 2}},
        {"name": "p1", "pyiqa_metric": probe_metric, "metric_kwargs": ["scale", 2]},
        {"name": "p2", "pyiqa_metric": probe_metric, "metric_kwargs": {"scael": 2}, "score_kwargs": {"tsak_": "x"}},
        {"name": "p3", "pyiqa_metric": probe_metric, "metric_kwargs": {"scale": 2, "seed": 1},
         "score_kwargs": {"task_": "aesthetic"}}]})
    with pytest.raises(OptionError) as err:
        benchmark.load_benchmark(str(bench))
    message = str(err.value)
    assert "models[0] (m): `metric_kwargs` applies to `pyiqa_metric` entries only" in message
    assert "models[1] (p1): `metric_kwargs` must be a mapping of keyword arguments, got ['scale', 2]" in message
    assert ("models[2] (p2): metric_kwargs: pyiqa metric `shape_probe_iaa` takes no `scael` in create_metric "
            "(did you mean `scale`?)") in message
    assert "models[2] (p2): score_kwargs: pyiqa metric `shape_probe_iaa` takes no `tsak_` in scoring" in message
    assert "p3" not in message and message.count("\n  - ") == 4  # InferenceModel's own `seed` is accepted


def test_benchmark_scores_a_pyiqa_metric_on_the_files_the_models_scored(probe_metric, tmp_path, monkeypatch):
    """The whole benchmark: the tiny model reads its test images resized to 32 px, the pyiqa metric the
    same files at their 48 px on disk, and its row lands in both CSVs."""
    data = write_tiny_ava(tmp_path / "ava", n=20, size=48)
    opt = tiny_options(data, name="tiny", total_iter=2)
    opt["datasets"]["test"] = {**opt["datasets"]["val"], "name": "tiny_test"}
    bench = write_options(tmp_path / "bench.yml", {
        "name": "probe_bench", "train_missing": True, "ceiling": False, "bootstrap": {"rounds": 50, "seed": 0},
        "models": [{"name": "tiny", "opt": str(write_options(tmp_path / "tiny.yml", opt))},
                   {"name": "probe", "pyiqa_metric": probe_metric, "metric_kwargs": {"scale": 3.0},
                    "score_kwargs": {"task_": "aesthetic"}}]})
    monkeypatch.chdir(tmp_path)
    rows = benchmark.benchmark(["-opt", str(bench), "--root", str(tmp_path), "--no-progress"])
    probe = next(row for row in rows if row.name == "probe")
    assert ShapeProbeIAA.seen == [((1, 3, 48, 48), "aesthetic")] * 4  # the split's 4 test images, as on disk
    assert probe.status == "measured" and np.isfinite(probe.srcc)
    table = (tmp_path / "results" / "probe_bench" / "probe_bench_pyiqa.csv").read_text().splitlines()
    assert table[0] == "Metric name,ava(PLCC/SRCC/KRCC)" and {line.split(",")[0] for line in table[1:]} == {
        "tiny", "probe"}
