"""prepare_ava: exact report counts on a hand-made raw AVA, pyiqa compatibility, refusals."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageFile

from iaa_bench.data import prepare as prepare_ava
from iaa_bench.data.ava_formats import CommentStore, read_labels
from iaa_bench.utils.cli import run
from iaa_bench.utils.pyiqa_adapter import build_dataset

VOTES = {101: "0 1 2 5 9 7 3 1 0 0", 102: "1 0 0 2 4 8 8 4 1 1", 103: "0 0 1 3 10 10 3 1 0 0",
         104: "2 2 2 2 2 2 2 2 2 2", 105: "0 0 0 1 2 3 4 5 6 7", 106: "5 4 3 2 1 0 0 0 0 0",
         107: "0 0 0 0 10 0 0 0 0 0", 108: "0 1 1 1 1 1 1 1 1 0"}


def write_jpeg(path, seed, size=(40, 30)):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def ava_lines(votes=VOTES):
    return "".join(f"{k} {i} {v} {k % 3} 0 {1000 + k}\n" for k, (i, v) in enumerate(votes.items(), 1))


@pytest.fixture
def raw(tmp_path):
    """Raw AVA files with every quirk the tool must count; 106 missing, 107 truncated."""
    root = tmp_path / "raw"
    images = root / "images"
    images.mkdir(parents=True)
    (root / "AVA.txt").write_text(ava_lines())
    comment_lines = [
        "1#101#Great shot#Nice colours\n".encode(),
        "2#102#Très belle photo 👍#日本語のコメント\n".encode(),
        "3#103#a##b###c#\n".encode(),
        "4#notanid#should be skipped\n".encode(),
        b"5#104#caf\xe9 is not utf-8#second\n",
        "6#999999#id without a label\n".encode(),
        "7#108#Sharp\n".encode(),
    ]
    (root / "comments.txt").write_bytes(b"".join(comment_lines))
    (root / "test.jpgl").write_text("101\n102.jpg\n\n")
    for image_id in VOTES:
        if image_id != 106:
            write_jpeg(images / f"{image_id}.jpg", image_id)
    whole = (images / "107.jpg").read_bytes()
    (images / "107.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def run_tool(raw, out, *extra):
    """prepare_ava.py's exit status (through the scripts' one exit path)."""
    return run(prepare_ava.main, ["--ava-txt", str(raw / "AVA.txt"), "--comments", str(raw / "comments.txt"),
                                  "--images", str(raw / "images"), "--test-list", str(raw / "test.jpgl"),
                                  "--out", str(out), "--val-fraction", "0", "--no-progress", *extra])


def test_report_counts_and_pyiqa_reads_meta_info(raw, tmp_path):
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what importing pyiqa's AVA module does
    out = tmp_path / "prepared"
    assert run_tool(raw, out, "--workers", "2") == 0
    report = json.loads((out / "report.json").read_text())
    expected = {"rows": 6, "train": 4, "val": 0, "test": 2, "label_rows": 8, "images_missing": 1,
                "images_corrupt": 1, "with_comments": 5, "without_comments": 1, "comment_lines": 7,
                "comment_lines_skipped": 1, "undecodable_bytes_lines": 1, "comment_lines_unknown_id": 1,
                "comment_ids_repeated": 0, "comments_empty_dropped": 4, "comments_stored": 10,
                "test_ids_listed": 2, "test_ids_unknown": 0, "missing_ids": [106], "corrupt_ids": [107],
                "image_dir": str((raw / "images").resolve())}
    assert {k: report[k] for k in expected} == expected
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the check leaves the process setting alone

    meta = pd.read_csv(out / "meta_info.csv")
    assert list(meta.columns) == prepare_ava.META_COLUMNS
    assert meta["img_name"].tolist() == ["101.jpg", "102.jpg", "103.jpg", "104.jpg", "105.jpg", "108.jpg"]
    votes = np.array([int(x) for x in VOTES[101].split()])
    assert meta["MOS"][0] == pytest.approx((votes * np.arange(1, 11)).sum() / votes.sum(), abs=1e-6)
    assert meta["official_split"].tolist() == [2, 2, 0, 0, 0, 0]

    store = CommentStore(out)
    assert store.get(102) == ["Très belle photo 👍", "日本語のコメント"]
    assert store.get(103) == ["a", "b", "c"]
    assert store.get(104) == ["caf\ufffd is not utf-8", "second"]
    assert store.get(105) == [] and store.get(999999) == []

    opt = {"name": "ava", "type": "AVADataset", "phase": "test", "dataroot_target": report["image_dir"],
           "meta_info_file": str(out / "meta_info.csv"), "split_index": "official_split"}
    test_set = build_dataset(opt)
    assert len(test_set) == 2
    sample = test_set[0]
    assert sample["img"].shape == (3, 30, 40)
    assert float(sample["mos_label"]) == pytest.approx(meta["MOS"][0] / 10, abs=1e-5)


def test_repeated_comment_ids_are_merged(raw, tmp_path):
    with open(raw / "comments.txt", "ab") as f:
        f.write("8#101#Third comment\n".encode())
    assert run_tool(raw, tmp_path / "out") == 0
    assert CommentStore(tmp_path / "out").get(101) == ["Great shot", "Nice colours", "Third comment"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["comment_ids_repeated"] == 1


def test_csv_labels_give_the_same_meta_info(raw, tmp_path):
    assert run_tool(raw, tmp_path / "from_txt") == 0
    rows = [f"{i},{v.replace(' ', ',')},{k % 3},0,{1000 + k}" for k, (i, v) in enumerate(VOTES.items(), 1)]
    (raw / "AVA.txt").write_text("image_id," + ",".join(f"score{s}" for s in range(2, 12))
                                 + ",tag1,tag2,tag3\n" + "\n".join(rows) + "\n")
    assert run_tool(raw, tmp_path / "from_csv") == 0
    assert (tmp_path / "from_csv" / "meta_info.csv").read_bytes() == (tmp_path / "from_txt" / "meta_info.csv").read_bytes()


def test_split_without_test_list_is_seeded():
    ids = list(range(1000))
    first = prepare_ava.assign_splits(ids, None, 0.1, 0.2, seed=5)
    assert first == prepare_ava.assign_splits(ids, None, 0.1, 0.2, seed=5)
    codes = list(first.values())
    assert (codes.count(2), codes.count(1), codes.count(0)) == (200, 80, 720)


@pytest.mark.parametrize("line3, reason", [
    ("3 103 0 0 1 3 10 10 3 1 0 0 0\n", "expected 15 columns"),
    ("3 103 0 0 x 3 10 10 3 1 0 0 0 0 1\n", "non-integer value 'x'"),
    ("3 103 0 0 0 0 0 0 0 0 0 0 0 0 1\n", "all vote counts are zero"),
    ("3 101 0 0 1 3 10 10 3 1 0 0 0 0 1\n", "duplicate image id 101 (first on line 1)"),
])
def test_malformed_labels_fail_naming_file_and_line(raw, tmp_path, capsys, line3, reason):
    lines = ava_lines().splitlines(keepends=True)
    lines[2] = line3
    (raw / "AVA.txt").write_text("".join(lines))
    out = tmp_path / "out"
    assert run_tool(raw, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{raw / 'AVA.txt'}:3:" in err[0] and reason in err[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no staging folder left behind


def test_bad_test_list_id_fails_and_keeps_previous_output(raw, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    (raw / "test.jpgl").write_text("101\nabc.jpg\n")
    assert run_tool(raw, out, "--overwrite") == 2
    assert f"{raw / 'test.jpgl'}:2:" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_non_empty_out_needs_overwrite(raw, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    assert run_tool(raw, out) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "old"
    assert run_tool(raw, out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["comments.jsonl", "comments_index.npy", "meta_info.csv", "report.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def test_labels_parser_reads_ids_in_file_order(raw):
    labels = read_labels(raw / "AVA.txt")
    assert labels.ids == list(VOTES) and labels.tags[0] == (1, 0)


# ---------------------------------------------------------------- nothing lost, every mistake answered
def _tool(*argv):
    return run(prepare_ava.main, [*map(str, argv), "--val-fraction", "0", "--no-progress"])


def test_overwrite_refuses_an_out_folder_holding_an_input(raw, tmp_path, capsys):
    """The demo's own layout (raw files under the prepared folder): --overwrite must not delete them."""
    demo = tmp_path / "demo"
    (demo / "raw").parent.mkdir()
    raw = Path(shutil.move(raw, demo / "raw"))
    before = sorted(p.relative_to(demo) for p in demo.rglob("*"))
    assert _tool("--ava-txt", raw / "AVA.txt", "--comments", raw / "comments.txt", "--images", raw / "images",
                 "--out", demo, "--overwrite") == 2
    err = capsys.readouterr().err
    assert f"--ava-txt {raw / 'AVA.txt'} lies inside --out {demo}" in err and "deleting it" in err
    assert sorted(p.relative_to(demo) for p in demo.rglob("*")) == before


def test_image_only_dataset_prepares_and_trains(raw, tmp_path):
    """No --comments (and an empty comments file): prepared, and an image-only model trains on it."""
    from conftest import ASSETS

    from iaa_bench.training.loop import train_pipeline

    (raw / "empty.txt").write_text("")
    for comments in ([], ["--comments", raw / "empty.txt"]):
        out = tmp_path / f"out{len(comments)}"
        assert _tool("--ava-txt", raw / "AVA.txt", *comments, "--images", raw / "images", "--out", out) == 0
        report = json.loads((out / "report.json").read_text())
        assert (report["rows"], report["with_comments"], report["without_comments"]) == (6, 0, 6)
    dataset = {"type": "AVACommentsDataset", "dataroot": str(tmp_path / "out0"), "augment": {"resize": [32, 32]},
               "img_range": 1}
    opt = {"name": "image_only", "model_type": "IAAModel", "num_gpu": 0, "manual_seed": 1,
           "plugins": [str(ASSETS / "tiny_iaa_arch.py")],
           "datasets": {"train": {**dataset, "name": "t", "split": "train", "batch_size_per_gpu": 2},
                        "val": {**dataset, "name": "v", "split": "test", "batch_size_per_gpu": 2}},
           "network": {"type": "TinyIAANet", "width": 4}, "path": {},
           "train": {"optim": {"type": "Adam", "lr": 1e-3}, "total_iter": 2,
                     "mos_loss_opt": {"type": "ScoreDistEMDLoss", "r": 2}},
           "val": {"val_freq": 2, "metrics": {"plcc": {"type": "aesthetic_plcc"}}},
           "logger": {"print_freq": 1, "use_tb_logger": False}}
    (tmp_path / "io.yml").write_text(yaml.safe_dump(opt))
    metrics = train_pipeline(["-opt", str(tmp_path / "io.yml"), "--root", str(tmp_path)])
    assert set(metrics) == {"plcc"}


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(raw, tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.tmp-{int(dead.stdout)}-abcd1234"
    (stale / "raw").mkdir(parents=True)
    live = tmp_path / f".out.tmp-{os.getpid()}-efgh5678"  # a run still in progress: kept
    live.mkdir()
    assert run_tool(raw, tmp_path / "out") == 0
    assert not stale.exists() and live.exists()


def test_a_mistyped_images_folder_is_an_error_not_an_empty_dataset(raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert _tool("--ava-txt", raw / "AVA.txt", "--images", raw / "imagse", "--out", out) == 2
    err = capsys.readouterr().err
    assert "no usable image" in err and str(raw / "imagse") in err
    assert not out.exists()


@pytest.mark.parametrize("csv", [False, True])
def test_a_byte_order_mark_does_not_drop_or_break_the_first_row(raw, tmp_path, csv):
    if csv:  # the CSV variant without a header: the BOM used to make its first row look like a header
        rows = [f"{i},{v.replace(' ', ',')},{k % 3},0,{1000 + k}" for k, (i, v) in enumerate(VOTES.items(), 1)]
        text = "\n".join(rows) + "\n"
    else:
        text = ava_lines()
    (raw / "AVA.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (raw / "comments.txt").write_bytes(b"\xef\xbb\xbf" + (raw / "comments.txt").read_bytes())
    assert read_labels(raw / "AVA.txt").ids == list(VOTES)
    assert run_tool(raw, tmp_path / "out") == 0
    assert CommentStore(tmp_path / "out").get(101) == ["Great shot", "Nice colours"]


def test_html_entities_in_comments_are_not_split(raw, tmp_path):
    (raw / "comments.txt").write_text("1#101#it&#39;s sharp#&quot;wow&quot; &amp; more#issue &#35;2#ok\n")
    assert run_tool(raw, tmp_path / "out") == 0
    assert CommentStore(tmp_path / "out").get(101) == ["it's sharp", '"wow" & more', "issue #2", "ok"]
