"""Leaderboard files and the human split-half ceiling, on synthetic AVA-like votes.

The synthetic votes mimic AVA (assumed: ~80-300 votes per image around a mean of ~5.4),
so the ceiling lands near the real-AVA value the README quotes (0.978, not measured here).
"""
import csv
import io
import math
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iaa_bench.evaluation import leaderboard
from iaa_bench.evaluation.leaderboard import (
    LeaderboardRow,
    ceiling_row,
    human_ceiling,
    row_from_predictions,
    sorted_rows,
    spearman_brown,
    write_results,
)
from iaa_bench.evaluation.metrics import compute_metrics
from iaa_bench.utils import atomic

N_IMAGES = 300
SCORES = np.arange(1, 11)
RESULT_FILES = {"leaderboard.csv", "leaderboard.md", "pred_vs_gt.png", "correlation_bars.png"}


def result_files(folder) -> set:
    """RESULT_FILES and pyiqa's table, named after the folder when no name is given."""
    return RESULT_FILES | {f"{folder.name}_pyiqa.csv"}
PYIQA_COLUMN = "ava(PLCC/SRCC/KRCC)"
# name, modality, prediction noise (std of the predicted mean), seconds, trainable, total
MODELS = [
    ("nima", "image", 0.9, 3.0, 12_810, 3_383_000),
    ("mmlq", "image+text", 0.3, 10.0, 60_270_000, 86_000_000),
    ("comments-only", "text", 0.6, 5.0, 1_000_000, 23_700_000),
]


def _bell(mean, width):
    dist = np.exp(-0.5 * ((SCORES - mean[:, None]) / width) ** 2)
    return dist / dist.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    true_mean = rng.normal(5.4, 0.75, N_IMAGES)
    votes = np.stack([rng.multinomial(n, p) for n, p in zip(rng.integers(80, 300, N_IMAGES), _bell(true_mean, 1.4))])
    preds = {name: _bell(true_mean + rng.normal(0, noise, N_IMAGES), 1.5) for name, _, noise, *_ in MODELS}
    return votes, preds


@pytest.fixture(scope="module")
def rows(data):
    votes, preds = data
    models = [row_from_predictions(name, modality, preds[name], votes, seconds, trainable, total)
              for name, modality, _, seconds, trainable, total in MODELS]
    return models + [ceiling_row(votes)]


@pytest.fixture(scope="module")
def out_dir(rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    written = write_results(rows, out)
    assert {p.name for p in written} == result_files(out)
    assert all(p.parent == out for p in written)
    return out


@pytest.fixture
def stub_plots(monkeypatch):
    """For tests of the write mechanism, not the plots: skip rendering them."""
    monkeypatch.setattr(leaderboard, "_pred_vs_gt_png", lambda rows, *_: b"scatter " + str(len(rows)).encode())
    monkeypatch.setattr(leaderboard, "_correlation_bars_png", lambda rows, *_: b"bars " + str(len(rows)).encode())


# --- rows -----------------------------------------------------------------------------------

def test_row_from_predictions_uses_compute_metrics(data, rows):
    votes, preds = data
    expected = compute_metrics(preds["nima"], votes)
    row = rows[0]
    assert (row.srcc, row.plcc, row.krcc, row.acc, row.emd, row.rmse) == (
        expected["srcc"], expected["plcc"], expected["krcc"], expected["acc"], expected["emd2"], expected["rmse"])
    assert row.images_per_s == N_IMAGES / 3.0
    assert row.pred_mean.shape == row.gt_mean.shape == (N_IMAGES,)


def test_row_validation(data):
    votes, preds = data
    with pytest.raises(ValueError, match="modality"):
        row_from_predictions("m", "video", preds["nima"], votes, 1.0, 1, 1)
    with pytest.raises(ValueError, match="seconds"):
        row_from_predictions("m", "image", preds["nima"], votes, 0.0, 1, 1)
    with pytest.raises(ValueError, match="pred_mean"):
        LeaderboardRow("m", "image", 1, 1, 0.5, 0.5, pred_mean=np.zeros(3))


def test_sorted_rows_by_srcc_with_nan_models_then_ceiling_last():
    def row(name, srcc, modality="image"):
        return LeaderboardRow(name, modality, 0, 0, srcc, srcc)
    ordered = sorted_rows([row("ceiling", 0.98, "votes"), row("low", 0.2), row("broken", math.nan), row("high", 0.9)])
    assert [r.name for r in ordered] == ["high", "low", "broken", "ceiling"]


# --- CSV --------------------------------------------------------------------------------------

def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_rows_columns_and_values(out_dir, rows):
    table = _read_csv(out_dir / "leaderboard.csv")
    assert [r["name"] for r in table] == ["mmlq", "comments-only", "nima", leaderboard.CEILING_NAME]
    assert list(table[0]) == [*leaderboard.ROW_FIELDS, PYIQA_COLUMN]
    by_name = {row.name: row for row in rows}
    for record in table:
        row = by_name[record["name"]]
        assert record["modality"] == row.modality
        assert int(record["trainable_params"]) == row.trainable_params
        assert int(record["total_params"]) == row.total_params
        for metric in ("srcc", "plcc", "krcc", "acc", "emd", "rmse", "images_per_s"):
            value = float(record[metric])
            assert value == getattr(row, metric) or (math.isnan(value) and math.isnan(getattr(row, metric)))


def test_csv_numeric_ranges(out_dir):
    for record in _read_csv(out_dir / "leaderboard.csv"):
        assert 0.0 < float(record["srcc"]) <= 1.0 and 0.0 < float(record["plcc"]) <= 1.0
        if record["modality"] != "votes":
            assert 0.0 < float(record["krcc"]) <= 1.0
            assert 0.0 <= float(record["acc"]) <= 1.0
            assert 0.0 <= float(record["emd"]) < 1.0
            assert 0.0 <= float(record["rmse"]) < 9.0
            assert float(record["images_per_s"]) > 0


def test_csv_pyiqa_benchmark_column(out_dir):
    """Same cell format as pyiqa's tests/IAA_benchmark_results.csv: round(x, 4) joined by '/'."""
    for record in _read_csv(out_dir / "leaderboard.csv"):
        plcc, srcc, krcc = (float(record[m]) for m in ("plcc", "srcc", "krcc"))
        assert record[PYIQA_COLUMN] == f"{round(plcc, 4)}/{round(srcc, 4)}/{round(krcc, 4)}"
        parts = [float(part) for part in record[PYIQA_COLUMN].split("/")]
        assert parts[0] == pytest.approx(plcc, abs=5e-5) and parts[1] == pytest.approx(srcc, abs=5e-5)


# The header and `nima` row of pyiqa's tests/IAA_benchmark_results.csv (chaofengc/IQA-PyTorch, last changed in
# commit f64fb4fb1a52b0536acf87e2b0cdb5423ca77805), written there by benchmark_results.py --update_benchmark.
PYIQA_IAA_CSV = "Metric name,ava(PLCC/SRCC/KRCC)\nnima,0.7172/0.7126/0.5213\n"


def test_pyiqa_shaped_csv_merges_with_pyiqas_own(data, rows, tmp_path, stub_plots):
    votes, preds = data
    backwards = row_from_predictions("backwards", "image", preds["nima"][:, ::-1], votes, 1.0, 1, 1)
    skipped = leaderboard.skipped_row("qalign", "image", "needs a package that is not installed")
    reference = leaderboard.reference_row({"name": "Published", "modality": "image", "srcc": 0.9, "plcc": 0.91,
                                           "source": "a paper"})
    write_results([*rows, backwards, skipped, reference], tmp_path, dataset="ava", name="bench")
    text = (tmp_path / "bench_pyiqa.csv").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == PYIQA_IAA_CSV.splitlines()[0] and text.endswith("\n") and "\r" not in text
    assert [line.split(",")[0] for line in lines[1:]] == ["mmlq", "comments-only", "nima", "backwards"]
    for line, row in zip(lines[1:], sorted_rows([*rows[:-1], backwards])):
        assert line.split(",")[1] == "/".join(str(abs(round(v, 4))) for v in (row.plcc, row.srcc, row.krcc))
    assert backwards.srcc < 0 and lines[-1].split(",")[1] == lines[-2].split(",")[1]  # pyiqa writes abs(): as nima

    ours = pd.read_csv(tmp_path / "bench_pyiqa.csv", index_col="Metric name")
    theirs = pd.read_csv(io.StringIO(PYIQA_IAA_CSV), index_col="Metric name")
    both = pd.concat([theirs, ours])
    assert list(both.columns) == [PYIQA_COLUMN] and both.index.name == "Metric name" and len(both) == 5
    merged = theirs.merge(ours, left_index=True, right_index=True, how="outer", suffixes=(" pyiqa", " ours"))
    assert merged.loc["nima", f"{PYIQA_COLUMN} pyiqa"] == "0.7172/0.7126/0.5213" and len(merged) == 4
    plcc = both[PYIQA_COLUMN].str.split("/").str[0].astype(float)  # pyiqa's own sort key for this file
    assert plcc.between(0, 1).all()


def test_skipped_model_listed_with_its_reason_never_plotted(rows, tmp_path, stub_plots):
    skipped = leaderboard.skipped_row("Q-Align", "image", "pyiqa metric 'qalign' needs a package")
    write_results([skipped, *rows], tmp_path)
    record = next(r for r in _read_csv(tmp_path / "leaderboard.csv") if r["name"] == "Q-Align")
    assert record["status"] == "skipped: pyiqa metric 'qalign' needs a package" and record["srcc"] == "nan"
    assert record[PYIQA_COLUMN] == ""
    text = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    assert "| Q-Align |" not in text and "- Q-Align: pyiqa metric 'qalign' needs a package" in text
    assert (tmp_path / "correlation_bars.png").read_bytes() == b"bars 3"  # the three scored models only
    assert "Q-Align" not in (tmp_path / f"{tmp_path.name}_pyiqa.csv").read_text()


def test_csv_column_named_after_dataset(rows, tmp_path, stub_plots):
    write_results(rows, tmp_path, dataset="ava_test")
    assert "ava_test(PLCC/SRCC/KRCC)" in _read_csv(tmp_path / "leaderboard.csv")[0]


# --- Markdown --------------------------------------------------------------------------------

def test_markdown_table_order_ceiling_last_and_note(out_dir, rows):
    text = (out_dir / "leaderboard.md").read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("|")]
    header, body = table[0], table[2:]
    for column in ("model", "input", "trainable / total", "SRCC", "PLCC", "KRCC", "Acc %", "EMD", "images/s"):
        assert column in header
    names = [line.split("|")[1].strip() for line in body]
    assert names[:3] == ["mmlq", "comments-only", "nima"]
    assert leaderboard.CEILING_NAME in names[3] and "†" in names[3]
    mmlq = next(row for row in rows if row.name == "mmlq")
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in body[0].split("|")]))
    assert (cells["SRCC"], cells["PLCC"], cells["Acc %"]) == (f"{mmlq.srcc:.4f}", f"{mmlq.plcc:.4f}", f"{100 * mmlq.acc:.2f}")
    assert cells["params (M) trainable / total"] == "60.27 / 86.00" and cells["seeds"] == "1"
    assert "not directly comparable" in text
    # no comments withheld for text models here; an image-only model's photo-only score is its score
    nima = next(row for row in rows if row.name == "nima")
    assert "SRCC no comments" in header and "PLCC no comments" in header and "comments withheld" in text
    assert body[2].endswith(f"| {nima.srcc:.4f} | {nima.plcc:.4f} |") and body[0].endswith("| – | – |")


# --- PNG ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("file_name", ["pred_vs_gt.png", "correlation_bars.png"])
def test_png_decodes_with_sensible_size(out_dir, file_name):
    with Image.open(out_dir / file_name) as image:
        image.load()
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert 600 <= width <= 4000 and 400 <= height <= 4000
    assert pixels.std() > 5  # something was drawn


def test_scatter_png_skipped_without_mean_scores_and_stale_one_removed(rows, tmp_path, stub_plots):
    write_results(rows, tmp_path)
    without_scores = [LeaderboardRow("a", "image", 1, 1, 0.5, 0.6), LeaderboardRow("c", "votes", 0, 0, 0.97, 0.98)]
    expected = {"leaderboard.csv", "leaderboard.md", "correlation_bars.png", f"{tmp_path.name}_pyiqa.csv"}
    assert {p.name for p in write_results(without_scores, tmp_path)} == expected
    assert set(os.listdir(tmp_path)) == expected


# --- atomic writes ------------------------------------------------------------------------------


def test_rewrite_replaces_files_and_leaves_no_temp_files(rows, tmp_path, stub_plots):
    write_results(rows, tmp_path)
    before = (tmp_path / "leaderboard.csv").read_bytes()
    write_results(rows[1:], tmp_path)
    after = (tmp_path / "leaderboard.csv").read_bytes()
    assert after != before and b"nima" in before and b"nima" not in after
    assert set(os.listdir(tmp_path)) == result_files(tmp_path)


def test_failed_replace_keeps_previous_file_and_removes_temp(rows, tmp_path, monkeypatch, stub_plots):
    write_results(rows, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in RESULT_FILES}

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)  # the shared atomic writer's rename
    with pytest.raises(OSError, match="disk full"):
        write_results(rows[1:], tmp_path)
    assert set(os.listdir(tmp_path)) == result_files(tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in RESULT_FILES} == before


def test_failed_rendering_writes_nothing(rows, tmp_path, monkeypatch, stub_plots):
    write_results(rows, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in RESULT_FILES}

    def failing_plot(*args):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(leaderboard, "_correlation_bars_png", failing_plot)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_results(rows[1:], tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in RESULT_FILES} == before


# --- human ceiling --------------------------------------------------------------------------------

def test_ceiling_corrected_exceeds_split_half(data):
    votes, _ = data
    ceiling = human_ceiling(votes)
    for metric in ("srcc", "plcc"):
        raw = ceiling[f"split_half_{metric}"]
        assert 0.0 < raw < ceiling[metric] < 1.0
        assert ceiling[metric] == pytest.approx(spearman_brown(raw))
    assert ceiling["srcc"] > 0.9  # AVA-like vote counts give an AVA-like ceiling (README: 0.978 on AVA)


def test_ceiling_deterministic_per_seed(data):
    votes, _ = data
    assert human_ceiling(votes, seed=3) == human_ceiling(votes, seed=3)
    assert human_ceiling(votes, seed=3) != human_ceiling(votes, seed=4)


def test_half_split_draws_without_replacement(data):
    votes, _ = data
    half = leaderboard._draw_half(votes, np.random.default_rng(0))
    assert np.all((half >= 0) & (half <= votes))
    np.testing.assert_array_equal(half.sum(1), votes.sum(1) // 2)


def test_ceiling_row_marks_votes(data):
    votes, _ = data
    row = ceiling_row(votes, seed=1)
    assert row.is_ceiling and row.modality == "votes"
    assert row.srcc == human_ceiling(votes, seed=1)["srcc"]
    assert math.isnan(row.krcc) and row.pred_mean is None


@pytest.mark.parametrize("bad", [
    np.ones((5, 9), dtype=int),              # wrong bin count
    np.ones((2, 10), dtype=int),             # too few images to correlate
    -np.ones((5, 10), dtype=int),            # negative counts
    np.full((5, 10), 1.5),                   # not counts
    np.eye(10, dtype=int)[:5],               # one vote per image cannot be split
])
def test_ceiling_rejects_bad_vote_counts(bad):
    with pytest.raises(ValueError):
        human_ceiling(bad)


# --- seeds, bootstrap intervals, significance, references ------------------------------------------------------------

def test_resampled_correlations_match_scipy_and_are_seeded(data):
    from scipy import stats

    from iaa_bench.evaluation.bootstrap import resample_indices, resampled_correlations

    votes, preds = data
    gt, pred = leaderboard.mean_score(votes), leaderboard.mean_score(preds["nima"])
    identity = np.arange(N_IMAGES)[None]
    got = resampled_correlations(pred, gt, identity)
    assert got["srcc"][0] == pytest.approx(stats.spearmanr(pred, gt)[0])
    assert got["plcc"][0] == pytest.approx(stats.pearsonr(pred, gt)[0])
    np.testing.assert_array_equal(resample_indices(50, 7, seed=3), resample_indices(50, 7, seed=3))
    # two seeds: the mean of their correlations on each resample
    idx = resample_indices(N_IMAGES, 5, seed=1)
    both = resampled_correlations(np.stack([pred, gt]), gt, idx)["srcc"]
    np.testing.assert_allclose(both, (resampled_correlations(pred, gt, idx)["srcc"] + 1.0) / 2)


def test_intervals_and_paired_significance_to_the_best_row(data):
    votes, preds = data
    rows = [row_from_predictions(name, modality, preds[name], votes, 1.0, 1, 1) for name, modality, *_ in MODELS]
    near = preds["mmlq"] + np.random.default_rng(5).normal(0, 1e-4, preds["mmlq"].shape)
    rows.append(row_from_predictions("mmlq twin", "image+text", near / near.sum(1, keepdims=True), votes, 1.0, 1, 1))
    leaderboard.add_intervals(rows, rounds=300, seed=0)
    by_name = {row.name: row for row in rows}
    best = max(rows, key=lambda r: r.srcc)
    assert best.significance == leaderboard.BEST and best.srcc_vs_best == 0
    assert by_name["nima"].significance == leaderboard.SIGNIFICANT  # far noisier predictions
    assert by_name["nima"].srcc_vs_best_high < 0 and by_name["nima"].srcc_vs_best < 0
    twin = next(r for r in rows if r.name in ("mmlq", "mmlq twin") and r is not best)
    assert twin.significance == leaderboard.NOT_SIGNIFICANT  # the same predictions up to noise
    for row in rows:
        assert row.srcc_low <= row.srcc <= row.srcc_high and row.plcc_low <= row.plcc <= row.plcc_high


def test_seed_rows_average_and_spread(data):
    votes, preds = data
    row = leaderboard.row_from_seeds("m", "image", [preds["nima"], preds["mmlq"]], votes, 2.0, 1, 1)
    one, two = (row_from_predictions("x", "image", preds[n], votes, 1.0, 1, 1) for n in ("nima", "mmlq"))
    assert row.seeds == 2 and row.srcc == pytest.approx((one.srcc + two.srcc) / 2)
    assert row.srcc_std == pytest.approx(np.std([one.srcc, two.srcc], ddof=1))
    assert row.pred_seeds.shape == (2, N_IMAGES) and row.images_per_s == 2 * N_IMAGES / 2.0


def test_references_and_quick_note_in_their_own_block(rows, tmp_path, stub_plots):
    reference = leaderboard.reference_row({"name": "Published", "modality": "image+text", "srcc": 0.9, "plcc": 0.91,
                                           "acc": None, "source": "a paper"})
    note = leaderboard.quick_status(3)
    write_results([reference, *rows], tmp_path, note=note)
    text = (tmp_path / "leaderboard.md").read_text(encoding="utf-8")
    main, published = text.split("Published results")
    assert text.startswith(f"**{note}**") and "Published" not in main
    assert "| Published | image+text | 0.900 | 0.910 | – | a paper |" in published
    table = _read_csv(tmp_path / "leaderboard.csv")
    assert table[-1]["name"] == "Published" and table[-1]["status"] == leaderboard.PUBLISHED
    assert table[-2]["name"] == leaderboard.CEILING_NAME
