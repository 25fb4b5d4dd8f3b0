"""infer.py: a tiny trained MMLQ scores a file and a folder, with and without comments."""
import csv

import numpy as np
import pytest
from conftest import run_script, write_options

from iaa_bench.data import demo as make_demo_data
from iaa_bench.evaluation.infer import infer
from iaa_bench.training.loop import train_pipeline
from iaa_bench.utils.cli import run

TINY_MMLQ = {"type": "MMLQ", "image_encoder": {"name": "resnet10t", "weights": None, "img_size": 64},
             "text_encoder": {"name": "offline-minilm", "max_length": 32}, "num_visual_queries": 4,
             "num_text_queries": 3, "dim": 32, "num_heads": 4, "depth": 2}


def tiny_mmlq_options(data):
    dataset = {"type": "AVACommentsDataset", "dataroot": str(data), "augment": {"resize": [64, 64]}, "img_range": 1,
               "batch_size_per_gpu": 4}
    return {
        "name": "tiny_mmlq", "model_type": "IAAModel", "num_gpu": 0, "manual_seed": 3,
        "datasets": {"train": {**dataset, "name": "t", "split": "train", "use_shuffle": True},
                     "val": {**dataset, "name": "v", "split": "val"},
                     "test": {**dataset, "name": "te", "split": "test"}},
        "network": TINY_MMLQ, "path": {},
        "train": {"optim": {"type": "AdamW", "lr": 1e-3}, "total_iter": 3, "warmup_iter": -1,
                  "mos_loss_opt": {"type": "ScoreDistEMDLoss", "r": 2}},
        "val": {"val_freq": 3, "key_metric": "srcc", "metrics": {"srcc": {"type": "aesthetic_srcc"}}},
        "logger": {"print_freq": 1, "save_latest_freq": 3, "use_tb_logger": False},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A prepared tiny AVA-Comments folder and a tiny MMLQ trained on it for 3 iterations."""
    tmp = tmp_path_factory.mktemp("infer")
    data = tmp / "demo"
    make_demo_data.main(["--out", str(data), "--n", "40", "--size", "64", "--workers", "1",
                         "--no-progress"])
    opt_file = write_options(tmp / "tiny_mmlq.yml", tiny_mmlq_options(data))
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp)])
    images = tmp / "photos"
    images.mkdir()
    for src in sorted((data / "raw" / "images").glob("*.jpg"))[:3]:
        (images / src.name).write_bytes(src.read_bytes())
    (images / "notes.txt").write_text("not an image")
    return tmp, opt_file, images


def check_scores(results, n):
    assert len(results) == n
    for _, mos, dist in results:
        assert 1.0 <= mos <= 10.0
        assert len(dist) == 10 and min(dist) >= 0 and abs(sum(dist) - 1.0) < 1e-5
        assert abs(mos - float(np.dot(dist, np.arange(1, 11)))) < 1e-4


def test_one_file_with_and_without_comments(trained, tmp_path):
    tmp, opt_file, images = trained
    image = str(sorted(images.glob("*.jpg"))[0])
    run = ["-opt", str(opt_file), "--root", str(tmp), "--img", image]
    plain = infer(run)
    text = infer([*run, "--comments", "stunning light, great composition"])
    comment_file = tmp_path / "c.txt"
    comment_file.write_text("stunning light, great composition\n\n")
    from_file = infer([*run, "--comments", str(comment_file), "--out", str(tmp_path / "one.csv")])
    for results in (plain, text, from_file):
        check_scores(results, 1)
    assert text[0][1] == pytest.approx(from_file[0][1], abs=1e-6)  # a file holds one comment per line
    assert plain[0][2] != text[0][2]  # no comment = the learned null token, not the same input
    with open(tmp_path / "one.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["mean_score"]) == pytest.approx(from_file[0][1], abs=1e-4)


def test_folder_from_run_folder_writes_csv(trained):
    """The CLI as a user runs it: a run folder, a folder of images, per-image comment files."""
    tmp, _, images = trained
    comments = tmp / "comments"
    comments.mkdir(exist_ok=True)
    first = sorted(images.glob("*.jpg"))[0]
    (comments / f"{first.stem}.txt").write_text("lovely colours\ntoo dark\n")
    result = run_script("infer.py", "-opt", tmp / "experiments" / "tiny_mmlq", "--img", images,
                        "--comments", comments, cwd=tmp, timeout=120)
    assert result.returncode == 0, result.stderr
    out = tmp / "results" / "tiny_mmlq" / "infer_photos.csv"
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["img_path"] for r in rows] == [str(p) for p in sorted(images.glob("*.jpg"))]
    for row in rows:
        dist = [float(row[f"p{i}"]) for i in range(1, 11)]
        assert 1 <= float(row["mean_score"]) <= 10 and sum(dist) == pytest.approx(1, abs=1e-4)
        assert f"{row['img_path']}\tmean {float(row['mean_score']):.3f}" in result.stdout


def test_missing_image_is_a_clean_error(trained, capsys):
    tmp, opt_file, _ = trained
    assert run(infer, ["-opt", str(opt_file), "--root", str(tmp), "--img", str(tmp / "nope.jpg")]) == 2
    assert "image not found" in capsys.readouterr().err
