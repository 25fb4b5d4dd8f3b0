"""Benchmark CLI: tiny models trained on demand (two seeds each), a sweep, published references and the
human ceiling on one tiny test split; quick mode, resume, and the checks made before any work."""
import csv
import os

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
    narrow = str(tiny_model_options(tmp_path, data, "tiny_narrow", 4))
    bench = {"name": "tiny_bench", "dataset": "ava", "split": "test", "train_missing": True, "seeds": [7, 8],
             "bootstrap": {"rounds": 200, "seed": 0}, "models": [
                 {"name": "tiny wide", "opt": str(tiny_model_options(tmp_path, data, "tiny_wide", 8)), "checkpoint": None},
                 {"name": "tiny narrow", "opt": narrow, "modality": "image"},
                 {"name": "pyiqa nima", "pyiqa_metric": "nima"},  # published weights: skipped offline, with the reason
                 # an optional package pyiqa does not install (icecream here): a skipped row, not a crash
                 {"name": "pyiqa qalign", "pyiqa_metric": "qalign", "score_kwargs": {"task_": "aesthetic"}},
             ],
             "sweeps": [{"name": "width", "title": "Width", "base": narrow, "vary": {"network.width": [4, 6]}}],
             "references": [{"name": "Paper X", "modality": "image", "srcc": 0.713, "plcc": 0.717, "acc": 0.8,
                             "source": "the paper"}]}
    bench_file = tmp_path / "bench.yml"
    bench_file.write_text(yaml.safe_dump(bench, sort_keys=False))
    result = run_script("benchmark.py", "-opt", bench_file, "--no-progress", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path, data, result


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trains_missing_models_and_writes_leaderboard(benchmark_run):
    tmp_path, data, result = benchmark_run
    out = tmp_path / "results" / "tiny_bench"
    # seed 7 is the files' own manual_seed: their own run names; seed 8 and the sweep point get their own
    for name in ("tiny_wide", "tiny_narrow", "tiny_wide_seed8", "tiny_narrow_seed8", "tiny_narrow__width-6",
                 "tiny_narrow__width-6_seed8"):
        assert (tmp_path / "experiments" / name / "final_metrics.json").is_file(), name
    assert result.stdout.count(": training ") == 6  # the sweep's width-4 point is the tiny narrow model's run

    rows = read_rows(out / "leaderboard.csv")
    assert [r["name"] for r in rows][-2:] == ["human split-half ceiling", "Paper X"]
    assert rows[-1]["status"] == "published, not reproduced here" and rows[-1]["source"] == "the paper"
    assert {"tiny narrow", "tiny wide"} <= {r["name"] for r in rows[:-2]}
    assert "ava(PLCC/SRCC/KRCC)" in rows[0]
    for row in [r for r in rows if r["name"].startswith("tiny")]:
        assert row["modality"] == "image"
        for column in MODEL_COLUMNS:
            assert np.isfinite(float(row[column])), (row["name"], column)
        assert -1 <= float(row["srcc"]) <= 1 and -1 <= float(row["plcc"]) <= 1
        assert (row["srcc_no_comments"], row["plcc_no_comments"]) == (row["srcc"], row["plcc"])  # reads no comments
        assert 0 <= float(row["acc"]) <= 1 and float(row["emd"]) >= 0 and float(row["images_per_s"]) > 0
        assert 0 < int(row["trainable_params"]) == int(row["total_params"])
        plcc, srcc, krcc = map(float, row["ava(PLCC/SRCC/KRCC)"].split("/"))
        assert (plcc, srcc) == (round(float(row["plcc"]), 4), round(float(row["srcc"]), 4))
    wide, narrow = (next(r for r in rows if r["name"] == n) for n in ("tiny wide", "tiny narrow"))
    assert int(wide["total_params"]) > int(narrow["total_params"])  # each row counts its own network
    for row in (wide, narrow):
        assert row["seeds"] == "2" and float(row["srcc_std"]) >= 0 and row["status"] == "measured"
        assert float(row["srcc_low"]) <= float(row["srcc"]) <= float(row["srcc_high"])
        assert float(row["macs_per_sample"]) > 0 and float(row["train_samples_per_s"]) > 0
    assert {wide["significance"], narrow["significance"]} <= {"best", "lower (significant)", "not significant"}
    assert "best" in {wide["significance"], narrow["significance"]}
    ceiling = rows[-2]
    assert ceiling["modality"] == "votes" and 0.5 < float(ceiling["srcc"]) <= 1.0

    report = yaml.safe_load((out / "benchmark.json").read_text())
    test_images = sum(1 for line in (data / "meta_info.csv").read_text().splitlines()[1:] if line.endswith(",2"))
    assert report["images"] == test_images == 8
    assert [m["status"] for m in report["models"][:2]] == ["evaluated", "evaluated"]
    assert report["models"][0]["runs"] == ["tiny_wide", "tiny_wide_seed8"]
    published = report["models"][2]
    if published["status"] == "skipped":  # the usual case: no pyiqa weights cached on this machine
        assert "pyiqa metric 'nima'" in published["reason"] and "IAA_BENCH_ALLOW_DOWNLOAD=1" in published["reason"]
    for item in report["models"][2:]:
        (row,) = [r for r in rows if r["name"] == item["name"]]
        if item["status"] == "skipped":  # listed with its reason, the rest of the leaderboard written all the same
            assert f"Skipped {item['name']}: {item['reason']}" in result.stdout
            assert row["status"] == f"skipped: {item['reason']}" and row["srcc"] == "nan"
            assert f"- {item['name']}: {item['reason']}" in (out / "leaderboard.md").read_text()

    pyiqa_table = (out / "tiny_bench_pyiqa.csv").read_text().splitlines()  # pyiqa's benchmark table shape
    assert pyiqa_table[0] == "Metric name,ava(PLCC/SRCC/KRCC)"
    assert {line.split(",")[0] for line in pyiqa_table[1:]} == {"tiny wide", "tiny narrow"} | {
        m["name"] for m in report["models"][2:] if m["status"] == "evaluated"}


def test_markdown_and_plots(benchmark_run):
    tmp_path, _, result = benchmark_run
    out = tmp_path / "results" / "tiny_bench"
    md = (out / "leaderboard.md").read_text()
    assert md in result.stdout  # the table is printed at the end
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) >= 1 + 3 and "tiny wide" in md and "human split-half ceiling" in md
    assert "Published results" in md and "| Paper X | image | 0.713 | 0.717 | 80.00 | the paper |" in md
    for name in ("pred_vs_gt.png", "correlation_bars.png", "sweep_width.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) > 200
    sweep_md = (out / "sweeps.md").read_text()
    assert "## Width" in sweep_md and "| width=4 | 2 |" in sweep_md and "| width=6 | 2 |" in sweep_md
    assert [r["point"] for r in read_rows(out / "sweeps.csv")] == ["width=4", "width=6"]


def test_rerun_trains_nothing_and_resumes_an_interrupted_run(benchmark_run):
    tmp_path, _, _ = benchmark_run
    (tmp_path / "experiments" / "tiny_wide_seed8" / "final_metrics.json").unlink()  # as if killed before the end
    def scores():  # everything but the timing columns
        return [{k: v for k, v in row.items() if k not in ("images_per_s", "train_samples_per_s")}
                for row in read_rows(tmp_path / "results" / "tiny_bench" / "leaderboard.csv")]

    before = scores()
    result = run_script("benchmark.py", "-opt", tmp_path / "bench.yml", "--no-progress", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ": training " not in result.stdout and "tiny_wide_seed8: resuming" in result.stdout
    assert result.stdout.count("finished run, not retrained") == 5
    assert scores() == before  # same weights, same rows


def test_pinned_checkpoint_is_scored_as_is(benchmark_run):
    tmp_path, _, _ = benchmark_run
    weights = tmp_path / "experiments" / "tiny_wide" / "models" / "net_best.pth"
    bench_file = write_options(tmp_path / "pinned.yml", {"name": "pinned", "train_missing": False, "seeds": [1, 2],
                                                         "ceiling": False, "models": [
        {"name": "wide as trained", "opt": str(tmp_path / "tiny_wide.yml"), "checkpoint": str(weights)}]})
    experiments = sorted(p.name for p in (tmp_path / "experiments").iterdir())
    result = run_script("benchmark.py", "-opt", bench_file, "--no-progress", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = read_rows(tmp_path / "results" / "pinned" / "leaderboard.csv")
    assert row["name"] == "wide as trained" and row["seeds"] == "1"  # one file: seeds do not apply
    assert sorted(p.name for p in (tmp_path / "experiments").iterdir()) == experiments  # nothing trained


def test_quick_mode_marks_every_output(benchmark_run):
    tmp_path, _, _ = benchmark_run
    result = run_script("benchmark.py", "-opt", tmp_path / "bench.yml", "--no-progress", "--quick", "2",
                        cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "experiments" / "tiny_wide_quick2" / "final_metrics.json").is_file()
    assert '"iter": 2' in (tmp_path / "experiments" / "tiny_narrow__width-6_seed8_quick2" / "final_metrics.json").read_text()
    out = tmp_path / "results" / "tiny_bench_quick2"
    note = "quick (2 iterations): not a result"
    for name in ("leaderboard.md", "sweeps.md"):
        assert (out / name).read_text().startswith(f"**{note}**")
    assert all(r["status"] == note for r in read_rows(out / "leaderboard.csv") if r["name"].startswith("tiny"))
    assert yaml.safe_load((out / "benchmark.json").read_text())["status"] == note


def test_different_test_splits_are_refused_before_any_work(tmp_path):
    """Rows are only comparable on the same images: a model on other data stops the run before training."""
    opts = [tiny_model_options(tmp_path, write_tiny_ava(tmp_path / f"ava{n}", n=n), f"tiny{n}", 4) for n in (30, 40)]
    bench = {"name": "mixed", "train_missing": True,
             "models": [{"name": f"m{i}", "opt": str(p)} for i, p in enumerate(opts)]}
    bench_file = write_options(tmp_path / "bench.yml", bench)
    result = run_script("benchmark.py", "-opt", bench_file, "--no-progress", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    first, other = (os.path.realpath(tmp_path / f"ava{n}" / "images" / f"{i}.jpg") for n, i in ((30, 1024), (40, 1032)))
    assert (f"runs tiny30 ({opts[0]}) and tiny40 ({opts[1]}) would score different datasets.test images (6 vs 8; "
            f"image 1 is {first} for tiny30 but {other} for tiny40)") in result.stderr
    assert "nothing was trained or scored" in result.stderr and "[benchmark]" not in result.stdout
    assert not (tmp_path / "experiments").exists() and not (tmp_path / "results").exists()


def test_bad_benchmark_file_fails_before_any_work(tmp_path):
    good = tiny_model_options(tmp_path, write_tiny_ava(tmp_path / "ava", n=20), "tiny", 4)
    bench_file = write_options(tmp_path / "bench.yml", {"name": "bad", "modles": [], "seeds": [1, 1], "models": [
        {"name": "a", "opt": "missing.yml"}, {"name": "b", "pyiqa_metric": "nima", "opt": "x.yml"},
        {"name": "c", "opt": str(good)}, {"name": "d", "pyiqa_metric": "nmia"}],
        "sweeps": [{"name": "w", "base": str(good), "vary": {"network.widht": [1, 2]}}],
        "references": [{"name": "r", "modality": "image", "srcc": "high", "plcc": 0.7}]})
    result = run_script("benchmark.py", "-opt", bench_file, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    for text in ("unknown option `modles`", "option file not found: missing.yml", "exactly one of `opt`",
                 "pyiqa has no metric `nmia` (did you mean `nima`", "`network.widht` is not an option",
                 "`seeds` must be a non-empty list of distinct integers", "references[0]: `source` is required",
                 "references[0]: `srcc` must be a number"):
        assert text in result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "experiments").exists()


def test_missing_checkpoint_without_train_missing_fails_before_scoring_any(tmp_path):
    data = write_tiny_ava(tmp_path / "ava", n=20)
    trained, untrained = (tiny_model_options(tmp_path, data, name, 4) for name in ("trained", "untrained"))
    assert run_script("train.py", "-opt", trained, cwd=tmp_path, timeout=300).returncode == 0
    bench_file = write_options(tmp_path / "bench.yml", {"name": "nockpt", "train_missing": False, "models": [
        {"name": "t", "opt": str(trained)}, {"name": "u", "opt": str(untrained)}]})
    result = run_script("benchmark.py", "-opt", bench_file, "--no-progress", cwd=tmp_path, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "run untrained: no checkpoint in" in result.stderr and "nothing was trained or scored" in result.stderr
    assert "[benchmark]" not in result.stdout and not (tmp_path / "results").exists()
    assert not (tmp_path / "experiments" / "untrained").exists()
