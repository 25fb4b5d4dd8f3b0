"""Sweep points, run names, checks and rendering (the paper's Fig. 4/5 curves and layer table), without training."""
import numpy as np
from PIL import Image

from iaa_bench.evaluation import leaderboard, sweeps

BASE = {"name": "mmlq_demo", "network": {"depth": 4, "num_visual_queries": 16, "num_text_queries": 16,
                                         "self_attn": "joint", "ffn": "shared"}}
QUERIES = {"name": "queries", "base": "b.yml", "vary": {"network.num_visual_queries,network.num_text_queries": [8, 16]}}
LAYERS = {"name": "layers", "title": "Layers", "base": "b.yml",
          "vary": {"network.self_attn": ["joint", "separate"], "network.ffn": ["shared", "separate"]}}


def test_points_labels_and_run_names():
    assert sweeps.points(QUERIES) == [{"network.num_visual_queries": 8, "network.num_text_queries": 8},
                                      {"network.num_visual_queries": 16, "network.num_text_queries": 16}]
    assert [sweeps.point_label(QUERIES, p) for p in sweeps.points(QUERIES)] == ["num_visual_queries=8",
                                                                                 "num_visual_queries=16"]
    layer_points = sweeps.points(LAYERS)
    assert len(layer_points) == 4 and sweeps.point_label(LAYERS, layer_points[1]) == "self_attn=joint, ffn=separate"
    # the base file's own point keeps its run name; others say what changed
    assert [sweeps.run_suffix(LAYERS, p, BASE) for p in layer_points] == [
        "", "__ffn-separate", "__self_attn-separate", "__self_attn-separate__ffn-separate"]
    assert sweeps.run_suffix(QUERIES, sweeps.points(QUERIES)[0], BASE) == "__num_visual_queries-8"


def test_check_names_typos_and_bad_values():
    bad = {"name": "q", "base": "b.yml", "vary": {"network.deph": [1, 1]}, "colour": 1}
    errors = sweeps.check_sweep(bad, "sweeps[0]", BASE)
    assert any("unknown option `colour`" in e for e in errors)
    assert any("`network.deph` is not an option of b.yml" in e for e in errors)
    assert any("distinct values" in e for e in errors)
    assert sweeps.check_sweep(LAYERS, "sweeps[1]", BASE) == []


def _rows(n_points, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.normal(5, 1, 60)
    rows = [leaderboard.row_from_predictions(f"p{i}", "image+text", gt + rng.normal(0, 0.3 + 0.3 * i, 60), gt, 1.0, 1, 2)
            for i in range(n_points)]
    leaderboard.add_intervals(rows, rounds=100)
    return rows


def test_render_curve_grid_and_csv(tmp_path):
    depth = {"name": "mmib_depth", "title": "MMIBs", "base": "b.yml", "vary": {"network.depth": [1, 2, 4]}}
    files = sweeps.render([(depth, sweeps.points(depth), _rows(3)),
                           (LAYERS, sweeps.points(LAYERS), _rows(4, seed=1))], note="quick (2 iterations): not a result")
    assert set(files) == {"sweeps.md", "sweeps.csv", "sweep_mmib_depth.png"}  # no curve for a non-numeric grid
    md = files["sweeps.md"].decode()
    assert md.startswith("**quick (2 iterations): not a result**") and "## MMIBs" in md and "## Layers" in md
    assert "| self_attn \\ ffn | shared | separate |" in md
    grid_row = next(line for line in md.splitlines() if line.startswith("| separate |"))
    assert grid_row.count("/") == 2  # SRCC / PLCC for ffn shared and separate
    assert files["sweeps.csv"].decode().count("\n") == 1 + 3 + 4
    (tmp_path / "curve.png").write_bytes(files["sweep_mmib_depth.png"])
    with Image.open(tmp_path / "curve.png") as image:
        assert image.format == "PNG" and min(image.size) > 200
