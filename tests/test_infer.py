"""infer.py: a tiny trained MMLQ scores a file and a folder, with and without comments."""
import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY_MMLQ, run_script, write_options

from iaa_bench.evaluation import evaluate
from iaa_bench.evaluation.infer import infer, resolve_run
from iaa_bench.models import checkpoint as ckpt
from iaa_bench.utils.errors import CheckpointError, OptionError
from iaa_bench.training.loop import train_pipeline
from iaa_bench.utils.cli import run


def tiny_mmlq_options(data):
    dataset = {"type": "AVACommentsDataset", "dataroot": str(data), "augment": {"resize": [64, 64]}, "img_range": 1,
               "batch_size_per_gpu": 4}
    return {
        "name": "tiny_mmlq", "model_type": "IAAModel", "num_gpu": 0, "manual_seed": 3,
        "datasets": {"train": {**dataset, "name": "t", "split": "train", "use_shuffle": True},
                     "val": {**dataset, "name": "v", "split": "val"},
                     "test": {**dataset, "name": "te", "split": "test"}},
        "network": {"type": "MMLQ", **TINY_MMLQ}, "path": {},
        "train": {"optim": {"type": "AdamW", "lr": 1e-3}, "total_iter": 3, "warmup_iter": -1,
                  "mos_loss_opt": {"type": "ScoreDistEMDLoss", "r": 2}},
        "val": {"val_freq": 3, "key_metric": "srcc", "metrics": {"srcc": {"type": "aesthetic_srcc"}}},
        "logger": {"print_freq": 1, "save_latest_freq": 3, "use_tb_logger": False},
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_data):
    """A tiny MMLQ trained on the demo data for 3 iterations, and a folder of 3 of its photos."""
    tmp = tmp_path_factory.mktemp("infer")
    opt_file = write_options(tmp / "tiny_mmlq.yml", tiny_mmlq_options(demo_data))
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp)])
    images = tmp / "photos"
    images.mkdir()
    for src in sorted((demo_data / "raw" / "images").glob("*.jpg"))[:3]:
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


def test_pyiqa_create_metric_scores_a_trained_run_in_a_fresh_interpreter(trained):
    """`import iaa_bench` makes `mmlq` a pyiqa metric; its scores are infer.py's for the same file."""
    tmp, opt_file, images = trained
    image = str(sorted(images.glob("*.jpg"))[0])
    run_dir = tmp / "experiments" / "tiny_mmlq"
    comment = "stunning light, great composition"
    script = f"""
import json, iaa_bench, pyiqa
from iaa_bench.utils.errors import OptionError, WeightsUnavailableError
names = [m for m in pyiqa.list_models() if m in ("mmlq", "nima_baseline")]
m = pyiqa.create_metric("mmlq", pretrained_model_path={str(run_dir / "models" / "net_best.pth")!r}, device="cpu")
folder = pyiqa.create_metric("mmlq", pretrained_model_path={str(run_dir)!r}, device="cpu")
refusals = []
for name, kwargs in (("mmlq", {{}}), ("nima_baseline", {{"pretrained_model_path": {str(run_dir)!r}}})):
    try:
        pyiqa.create_metric(name, device="cpu", **kwargs)
    except (OptionError, WeightsUnavailableError) as err:
        refusals.append(type(err).__name__)
print(json.dumps({{"names": names, "range": m.score_range, "plain": m({image!r}).item(),
                  "text": m({image!r}, comments=[{comment!r}]).item(), "folder": folder({image!r}).item(),
                  "refusals": refusals}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["names"] == ["mmlq", "nima_baseline"] and got["range"] == "1, 10"
    assert got["refusals"] == ["WeightsUnavailableError", "OptionError"]
    plain = infer(["-opt", str(run_dir), "--img", image])[0][1]
    text = infer(["-opt", str(run_dir), "--img", image, "--comments", comment])[0][1]
    assert 1 <= got["plain"] <= 10 and got["plain"] == pytest.approx(plain, abs=1e-5)
    assert got["text"] == pytest.approx(text, abs=1e-5) and got["text"] != pytest.approx(plain, abs=1e-6)
    assert got["folder"] == pytest.approx(plain, abs=1e-5)


def test_pyiqa_command_line_through_iaa_bench(trained):
    tmp, _, images = trained
    image = str(sorted(images.glob("*.jpg"))[0])
    run_dir = tmp / "experiments" / "tiny_mmlq"
    result = run_script("pyiqa_cmd.py", "mmlq", "-t", image, "--pretrained_model_path", run_dir, cwd=tmp)
    assert result.returncode == 0, result.stderr
    score = float(re.search(r"'mean': (?:np\.float\d+\()?([0-9.]+)", result.stdout).group(1))
    assert score == pytest.approx(infer(["-opt", str(run_dir), "--img", image])[0][1], abs=1e-4)
    refused = run_script("pyiqa_cmd.py", "mmlq", "-t", image, cwd=tmp)
    assert refused.returncode == 2 and "pretrained_model_path" in refused.stderr


def perturbed_checkpoint(source, target, seed=0):
    """A copy of an iaa_bench checkpoint whose trainable weights are moved by seeded noise."""
    state = torch.load(source, map_location="cpu", weights_only=False)
    gen = torch.Generator().manual_seed(seed)
    state["params"] = {k: v + 0.5 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
                       for k, v in state["params"].items()}
    torch.save(state, target)
    return target


def test_pretrain_network_g_is_what_test_py_scores(trained, tmp_path):
    """pyiqa's key for the weights to test is honoured, not silently replaced by the run's net_best."""
    tmp, opt_file, _ = trained
    other = perturbed_checkpoint(tmp / "experiments" / "tiny_mmlq" / "models" / "net_best.pth", tmp_path / "other.pth")

    def predictions(*force):
        evaluate.test_pipeline(["-opt", str(opt_file), "--root", str(tmp), *(["--force_yml", *force] if force else [])])
        with open(tmp / "results" / "tiny_mmlq" / "predictions_test.csv", newline="") as f:
            return [float(row["pred_mean"]) for row in csv.DictReader(f)]

    own, with_g = predictions(), predictions(f"path:pretrain_network_g={other}")
    assert with_g == predictions(f"path:pretrain_network={other}") and with_g != own


def test_run_folder_is_scored_with_its_own_weights_whatever_its_name(trained, tmp_path):
    """A run folder renamed (as `--debug`, `name=` overrides or archiving do) is found by its folder."""
    tmp, _, images = trained
    image = str(sorted(images.glob("*.jpg"))[0])
    renamed = tmp / "experiments" / "tiny_mmlq_renamed"
    shutil.copytree(tmp / "experiments" / "tiny_mmlq", renamed)
    perturbed_checkpoint(tmp / "experiments" / "tiny_mmlq" / "models" / "net_best.pth",
                         renamed / "models" / "net_best.pth")
    original = infer(["-opt", str(tmp / "experiments" / "tiny_mmlq"), "--img", image])[0][1]
    assert infer(["-opt", str(renamed), "--img", str(images)])[0][1] != pytest.approx(original, abs=1e-6)
    assert (tmp / "results" / "tiny_mmlq_renamed" / "infer_photos.csv").is_file()


def test_pyiqa_format_full_checkpoint_loads_with_a_warning(trained, tmp_path, monkeypatch):
    """{'params': full state dict} (pyiqa's published checkpoints' shape): frozen encoders checked by shape."""
    tmp, opt_file, images = trained
    image = str(sorted(images.glob("*.jpg"))[0])
    run_dir = tmp / "experiments" / "tiny_mmlq"
    opt = resolve_run(str(run_dir)).load()
    model = evaluate.build_eval_model(opt, str(run_dir / "models" / "net_best.pth"))
    full = model.net.state_dict()
    torch.save({"params": full}, tmp_path / "full.pth")
    warnings = []
    monkeypatch.setattr(ckpt.log, "warning", warnings.append)
    scores = infer(["-opt", str(run_dir), "--img", image, "--checkpoint", str(tmp_path / "full.pth")])
    assert scores[0][1] == pytest.approx(infer(["-opt", str(run_dir), "--img", image])[0][1], abs=1e-6)
    assert any("frozen_identity" in w and "unknown" in w for w in warnings)
    key = next(k for k in full if k.startswith("image_encoder.") and full[k].dim() > 1)
    torch.save({"params": {**full, key: full[key][:1]}}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=re.escape(key)):
        ckpt.load_network_checkpoint(model.net, str(tmp_path / "wrong.pth"))


def test_mistyped_comments_path_is_an_error_not_the_comment(trained, tmp_path, capsys):
    tmp, opt_file, images = trained
    image = str(sorted(images.glob("*.jpg"))[0])
    argv = ["-opt", str(opt_file), "--root", str(tmp), "--img", image, "--comments", str(tmp_path / "commnets.txt")]
    assert run(infer, argv) == 2
    err = capsys.readouterr()
    assert "commnets.txt: no such file" in err.err and "mean" not in err.out


def test_folder_with_an_unreadable_file_and_a_jpg_folder_scores_the_rest(trained, tmp_path, capsys):
    tmp, opt_file, images = trained
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted(images.glob("*.jpg"))
    for src in good:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "0_broken.jpg").write_bytes(b"not a jpeg")
    (folder / "album.jpg").mkdir()
    out = tmp_path / "scores.csv"
    results = infer(["-opt", str(opt_file), "--root", str(tmp), "--img", str(folder), "--out", str(out)])
    check_scores(results, len(good))
    assert "warning: skipped" in capsys.readouterr().err and "0_broken.jpg" not in out.read_text()
    with open(out, newline="") as f:
        assert [r["img_path"] for r in csv.DictReader(f)] == [str(folder / p.name) for p in good]


@pytest.mark.parametrize("target", ["folder", "input image"])
def test_out_that_would_destroy_something_is_refused_before_scoring(trained, tmp_path, capsys, target):
    tmp, opt_file, images = trained
    image = tmp_path / "photo.jpg"
    image.write_bytes(sorted(images.glob("*.jpg"))[0].read_bytes())
    before = image.read_bytes()
    out = tmp_path if target == "folder" else image
    assert run(infer, ["-opt", str(opt_file), "--root", str(tmp), "--img", str(image), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert f"--out {out}" in captured.err and "mean" not in captured.out
    assert image.read_bytes() == before


def test_latin1_comment_file_is_decoded_as_prepare_ava_does(trained, tmp_path):
    tmp, opt_file, images = trained
    argv = ["-opt", str(opt_file), "--root", str(tmp), "--img", str(sorted(images.glob("*.jpg"))[0])]
    comment_file = tmp_path / "latin1.txt"
    comment_file.write_bytes("café très beau\n".encode("latin-1"))
    from_file = infer([*argv, "--comments", str(comment_file)])
    as_prepared = infer([*argv, "--comments", "caf\ufffd tr\ufffds beau"])  # UTF-8 with replacement
    assert from_file[0][1] == pytest.approx(as_prepared[0][1], abs=1e-6)


def test_text_model_fed_no_text_refuses_instead_of_reading_images_only(trained):
    """A dataset built without text settings (e.g. by another trainer) is refused, not silently image-only."""
    tmp, _, images = trained
    opt = resolve_run(str(tmp / "experiments" / "tiny_mmlq")).load()
    model = evaluate.build_eval_model(opt, str(tmp / "experiments" / "tiny_mmlq" / "models" / "net_best.pth"))
    model.feed_data({"img": torch.rand(2, 3, 64, 64)})
    with pytest.raises(OptionError, match="text_ids"):
        model.test()


def test_no_comments_run_scores_what_infer_gives_for_the_photo_alone(trained, tmp_path):
    """test.py --no-comments: the same images, comments withheld = infer.py without --comments."""
    tmp, opt_file, _ = trained
    args = ["-opt", str(opt_file), "--root", str(tmp)]
    with_comments = evaluate.test_pipeline(args)["test"]
    blind = evaluate.test_pipeline([*args, "--no-comments"])["test"]
    results = tmp / "results" / "tiny_mmlq"
    assert blind["comments_withheld"] and not with_comments["comments_withheld"]
    assert json.loads((results / "metrics_no_comments.json").read_text())["test"]["srcc"] == blind["srcc"]
    seen, withheld = ([*csv.DictReader((results / name).read_text().splitlines())]
                      for name in ("predictions_test.csv", "predictions_test_no_comments.csv"))
    assert [r["img_path"] for r in seen] == [r["img_path"] for r in withheld]
    assert any(a["pred_mean"] != b["pred_mean"] for a, b in zip(seen, withheld))
    photos = tmp_path / "photos"
    photos.mkdir()
    for row in withheld:
        shutil.copy(row["img_path"], photos)
    alone = {p.split("/")[-1]: mos for p, mos, _ in infer([*args, "--img", str(photos)])}
    for row in withheld:
        assert float(row["pred_mean"]) == pytest.approx(alone[row["img_path"].split("/")[-1]], abs=1e-4)
