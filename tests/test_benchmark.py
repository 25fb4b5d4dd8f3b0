"""Benchmark CLI: two tiny models (trained on demand) + the human ceiling on one tiny test split."""
import csv

import numpy as np
import pytest
import yaml
from conftest import run_script, tiny_options, write_options, write_tiny_ava
from PIL import Image

MODEL_COLUMNS = ("srcc", "plcc", "krcc", "acc", "emd", "rmse", "images_per_s")


def tiny_model_options(tmp_path, data, name, width):
    opt = tiny_options(data, name=name, network={"type": "TinyIAANet", "width": width}, total_iter=4)
    opt["datasets"]["test"] = {**opt["datasets"]["val"], "name": "tiny_test"}
    return write_options(tmp_path / f"{name}.yml", opt)


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory):
    """One benchmark run shared by the checks below (training included: the costly part)."""
    tmp_path = tmp_path_factory.mktemp("bench")
    data = write_tiny_ava(tmp_path / "ava", n=40)
    bench = {"name": "tiny_bench", "dataset": "ava", "split": "test", "train_missing": True, "models": [
        {"name": "tiny wide", "opt": str(tiny_model_options(tmp_path, data, "tiny_wide", 8)), "checkpoint": None},
        {"name": "tiny narrow", "opt": str(tiny_model_options(tmp_path, data, "tiny_narrow", 4)),
         "modality": "image"},
        {"name": "pyiqa nima", "pyiqa_metric": "nima"},  # published weights: skipped offline, with the reason
    ]}
    bench_file = tmp_path / "bench.yml"
    bench_file.write_text(yaml.safe_dump(bench, sort_keys=False))
    result = run_script("benchmark.py", "-opt", bench_file, "--no-progress", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path, data, result


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trains_missing_models_and_writes_leaderboard(benchmark_run):
    tmp_path, data, result = benchmark_run
    out = tmp_path / "results" / "tiny_bench"
    for name in ("tiny_wide", "tiny_narrow"):
        assert (tmp_path / "experiments" / name / "models" / "net_best.pth").is_file()

    rows = read_rows(out / "leaderboard.csv")
    assert [r["name"] for r in rows][-1] == "human split-half ceiling"
    assert {"tiny narrow", "tiny wide"} <= {r["name"] for r in rows[:-1]}
    assert "ava(PLCC/SRCC/KRCC)" in rows[0]
    for row in [r for r in rows if r["name"].startswith("tiny")]:
        assert row["modality"] == "image"
        for column in MODEL_COLUMNS:
            assert np.isfinite(float(row[column])), (row["name"], column)
        assert -1 <= float(row["srcc"]) <= 1 and -1 <= float(row["plcc"]) <= 1
        assert 0 <= float(row["acc"]) <= 1 and float(row["emd"]) >= 0 and float(row["images_per_s"]) > 0
        assert 0 < int(row["trainable_params"]) == int(row["total_params"])
        plcc, srcc, krcc = map(float, row["ava(PLCC/SRCC/KRCC)"].split("/"))
        assert (plcc, srcc) == (round(float(row["plcc"]), 4), round(float(row["srcc"]), 4))
    wide, narrow = (next(r for r in rows if r["name"] == n) for n in ("tiny wide", "tiny narrow"))
    assert int(wide["total_params"]) > int(narrow["total_params"])  # each row counts its own network
    ceiling = rows[-1]
    assert ceiling["modality"] == "votes" and 0.5 < float(ceiling["srcc"]) <= 1.0

    report = yaml.safe_load((out / "benchmark.json").read_text())
    test_images = sum(1 for line in (data / "meta_info.csv").read_text().splitlines()[1:] if line.endswith(",2"))
    assert report["images"] == test_images == 8
    assert [m["status"] for m in report["models"][:2]] == ["evaluated", "evaluated"]
    published = report["models"][2]
    if published["status"] == "skipped":  # the usual case: no pyiqa weights cached on this machine
        assert "pyiqa metric 'nima'" in published["reason"] and "IAA_BENCH_ALLOW_DOWNLOAD=1" in published["reason"]
        assert f"Skipped pyiqa nima: {published['reason']}" in result.stdout
        assert "pyiqa nima" not in (tmp_path / "results" / "tiny_bench" / "leaderboard.csv").read_text()


def test_markdown_and_plots(benchmark_run):
    tmp_path, _, result = benchmark_run
    out = tmp_path / "results" / "tiny_bench"
    md = (out / "leaderboard.md").read_text()
    assert md in result.stdout  # the table is printed at the end
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) >= 1 + 3 and "tiny wide" in md and "human split-half ceiling" in md
    for name in ("pred_vs_gt.png", "correlation_bars.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) > 200


def test_different_test_splits_are_refused(tmp_path):
    """Rows are only comparable on the same images: a model on other data stops the run."""
    opts = [tiny_model_options(tmp_path, write_tiny_ava(tmp_path / f"ava{n}", n=n), f"tiny{n}", 4) for n in (30, 40)]
    bench = {"name": "mixed", "train_missing": True,
             "models": [{"name": f"m{i}", "opt": str(p)} for i, p in enumerate(opts)]}
    bench_file = write_options(tmp_path / "bench.yml", bench)
    result = run_script("benchmark.py", "-opt", bench_file, "--no-progress", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "m1 was scored on 8 images, m0 on 6" in result.stderr
    assert not (tmp_path / "results" / "mixed" / "leaderboard.csv").exists()


def test_bad_benchmark_file_fails_before_any_work(tmp_path):
    bench_file = write_options(tmp_path / "bench.yml", {"name": "bad", "modles": [], "models": [
        {"name": "a", "opt": "missing.yml"}, {"name": "b", "pyiqa_metric": "nima", "opt": "x.yml"}]})
    result = run_script("benchmark.py", "-opt", bench_file, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    for text in ("unknown option `modles`", "option file not found: missing.yml", "exactly one of `opt`"):
        assert text in result.stderr
    assert not (tmp_path / "results").exists()
