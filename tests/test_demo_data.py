"""make_demo_data: offline, deterministic for a seed, and prepared with the exclusions reported."""
import hashlib
import json

from iaa_bench.data import demo as make_demo_data
from iaa_bench.utils.cli import run


def file_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build(out, seed=0):
    make_demo_data.main(["--out", str(out), "--n", "40", "--size", "64", "--seed", str(seed),
                         "--workers", "1", "--no-progress"])
    return file_hashes(out)


def test_same_seed_same_bytes_and_offline(tmp_path, forbid_sockets):
    first = build(tmp_path / "a")
    assert first == build(tmp_path / "b")
    assert first != build(tmp_path / "c", seed=1)
    assert {"meta_info.csv", "report.json", "comments.jsonl", "comments_index.npy", "raw/AVA.txt",
            "raw/AVA_Comments_Full.txt", "raw/generic_test.jpgl"} <= set(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no staging left behind


def test_report_shows_exclusions_and_splits(demo_data):
    report = json.loads((demo_data / "report.json").read_text())
    assert (report["label_rows"], report["images_missing"], report["images_corrupt"]) == (40, 2, 1)
    assert report["rows"] == 37 == report["train"] + report["val"] + report["test"]
    assert report["test"] == 8 and report["test_ids_listed"] == 8  # 20% of ids; broken ones are never test
    assert report["comment_lines_skipped"] == 1 and report["image_dir"] == "raw/images"
    assert report["with_comments"] + report["without_comments"] == 37


def test_refuses_non_empty_out(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "keep").write_text("x")
    assert run(make_demo_data.main, ["--out", str(tmp_path / "demo"), "--n", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err
