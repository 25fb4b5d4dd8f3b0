"""pyiqa's own option files: its extra keys, model types, schedules, NIMA keys and its AVA files."""
import json
import logging
import re
from pathlib import Path

import pytest
from conftest import run_script, tiny_options, write_options, write_tiny_ava

from iaa_bench.config import schema
from iaa_bench.training.loop import train_pipeline
from iaa_bench.utils.errors import IAABenchError, OptionError, WeightsUnavailableError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME, build_network

PYIQA_OPTIONS = Path(__file__).parent / "data" / "pyiqa_options"  # pyiqa's own files, vendored unchanged


@pytest.fixture
def data(tmp_path):
    return write_tiny_ava(tmp_path / "ava", n=20)


def test_pyiqa_only_keys_are_accepted_with_one_warning_each(data, monkeypatch):
    opt = tiny_options(data)
    opt.update(define={"anchor": 1}, split_num=10, save_final_results_path="./results.txt")
    opt["logger"]["log_imgs_freq"] = 1000
    opt["train"].update(finetune_start_iter=10, optim_finetune={"type": "Adam"}, scheduler_finetune={}, use_ref=False)
    for ds in opt["datasets"].values():
        ds.update(dataset_enlarge_ratio=1, prefetch_mode="cpu", num_prefetch_queue=8)
    warned = []
    monkeypatch.setattr(logging.getLogger(LOGGER_NAME), "warning", warned.append)
    schema.validate_options(opt)
    keys = [w.split("`")[1] for w in warned]
    assert sorted(keys) == sorted(["define", "split_num", "save_final_results_path", "logger.log_imgs_freq",
                                   "train.finetune_start_iter", "train.optim_finetune", "train.scheduler_finetune",
                                   "train.use_ref", *(f"datasets.{p}.{k}" for p in ("train", "val") for k in
                                                      ("dataset_enlarge_ratio", "prefetch_mode", "num_prefetch_queue"))])


def test_regress_opt_is_read_as_mos_loss_opt_with_one_warning(data, monkeypatch):
    opt = tiny_options(data)
    loss = opt["train"].pop("mos_loss_opt")
    opt["train"]["regress_opt"] = loss  # pyiqa's former name (its train_general_iqa.yml)
    warned = []
    monkeypatch.setattr(logging.getLogger(LOGGER_NAME), "warning", warned.append)
    schema.validate_options(opt)
    assert opt["train"]["mos_loss_opt"] == loss and "regress_opt" not in opt["train"]
    assert len(warned) == 1 and "`train.regress_opt` is the former name of `train.mos_loss_opt`" in warned[0]


@pytest.mark.parametrize("change, message", [
    (lambda o: o["train"].update(regress_opt={"type": "MSELoss"}), "`train.regress_opt` and `train.mos_loss_opt` "
                                                                    "conflict"),
    (lambda o: o["train"].update(use_ref=True), "train.use_ref: true"),
    (lambda o: o["train"].update(total_epoch=3), "conflict"),
    (lambda o: o.update(model_type="DBCNNModel"), "pyiqa's DBCNNModel is not supported"),
])
def test_what_pyiqa_files_would_mean_differently_is_refused_up_front(data, change, message):
    opt = tiny_options(data)
    change(opt)
    with pytest.raises(OptionError, match=message):
        schema.validate_options(opt)


def test_empty_training_split_names_val_num(data, tmp_path):
    opt = tiny_options(data)
    del opt["datasets"]["train"]["val_num"]  # pyiqa's AVADataset default: 2000 images moved into val
    with pytest.raises(OptionError, match="val_num: 2000"):
        train_pipeline(["-opt", str(write_options(tmp_path / "t.yml", opt)), "--root", str(tmp_path)])


def test_nima_baseline_takes_pyiqa_nima_keys():
    keys = {"type": "NIMABaseline", "base_model_name": "resnet10t", "backbone_weights": None, "train_dataset": "ava"}
    assert build_network({**keys, "pretrained": False}).classifier[-2].out_features == 10
    with pytest.raises(WeightsUnavailableError, match="pretrained_model_path"):
        build_network({**keys, "pretrained": True})


@pytest.mark.parametrize("model_type, unit, lr_iter2, lr_iter3, logged", [
    ("DistIQAModel", None, 1e-3, 5e-4, "epoch"),  # pyiqa's model type: pyiqa's per-epoch stepping (2 iters/epoch)
    ("DistIQAModel", "iter", 5e-4, 5e-4, "iteration"),
    ("IAAModel", None, 5e-4, 5e-4, "iteration"),  # iaa_bench's own: per iteration
])
def test_scheduler_unit_keeps_pyiqa_epochs_unless_told(data, tmp_path, model_type, unit, lr_iter2, lr_iter3, logged):
    opt = tiny_options(data, total_iter=3, model_type=model_type)
    opt["train"]["scheduler"] = {"type": "MultiStepLR", "milestones": [1], "gamma": 0.5, **({"unit": unit} if unit else {})}
    opt["val"]["val_freq"] = 100
    train_pipeline(["-opt", str(write_options(tmp_path / "t.yml", opt)), "--root", str(tmp_path)])
    log = next((tmp_path / "experiments" / "tiny").glob("train_tiny_*.log")).read_text()
    lrs = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r"iter +(\d+), lr \(([0-9.e+-]+)", log)}
    assert (lrs[1], lrs[2], lrs[3]) == (1e-3, lr_iter2, lr_iter3)
    assert f"LR scheduler MultiStepLR steps once per {logged}" in log


def test_debug_is_pyiqa_s_eight_iterations_without_tensorboard(data, tmp_path):
    opt_file = write_options(tmp_path / "t.yml", tiny_options(data, total_iter=50))
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path), "--debug"])
    assert sorted(p.name for p in (tmp_path / "experiments" / "debug_tiny" / "training_states").iterdir())[-1] == "8.state"
    assert not (tmp_path / "tb_logger").exists()


def pyiqa_file(name: str, demo: Path, out: Path, substitute=()) -> Path:
    """pyiqa's vendored option file `name` with its data paths pointed at the demo and the `substitute`
    (pattern, replacement) edits applied, written to `out`. pyiqa's AVADataset never opens `split_file`
    (with one set it reads the `official_split` column), so that path is left as pyiqa wrote it."""
    text = (PYIQA_OPTIONS / name).read_text(encoding="utf-8")
    edits = [(r"(?m)^(\s*dataroot_target:).*$", rf"\1 {demo / 'raw' / 'images'}"),
             (r"(?m)^(\s*meta_info_file:).*$", rf"\1 {demo / 'meta_info.csv'}"), *substitute]
    for pattern, replacement in edits:
        text, count = re.subn(pattern, replacement, text)
        assert count, f"{name}: {pattern} not found"
    out.write_text(text, encoding="utf-8")
    return out


def tiny_run(val: str) -> list:
    """--force_yml entries that make a pyiqa AVA file a smoke run on the 40-image demo (26 train, 3 val images):
    1 iteration of batch 1, no worker processes, and `val_num` = the demo's 3 val images (pyiqa's default 2000
    assumes AVA and would move every demo training image into val)."""
    return ["train:total_iter=1", "datasets:train:batch_size_per_gpu=1", "datasets:train:num_worker_per_gpu=0",
            "datasets:train:val_num=3", f"datasets:{val}:val_num=3", f"datasets:{val}:num_worker_per_gpu=0"]


NIMA_OFFLINE = (r"(?m)^  type: NIMA\s*$", "  type: NIMABaseline")


@pytest.mark.parametrize("name, substitute, val, overrides", [
    # no ImageNet VGG16 / Inception-ResNet-v2 weights on this machine (a timm cache would serve them): random init
    ("train_NIMA.yml", [NIMA_OFFLINE], "val", ["network:backbone_weights=~"]),
    ("train_NIMA_inception_ava.yml", [NIMA_OFFLINE], "val", ["network:backbone_weights=~"]),
    # pyiqa's TOPIQ file gives total_iter and total_epoch (pyiqa lets the epochs win): the smoke run counts iterations
    ("train_TOPIQ_res50_ava.yml", [(r"(?m)^(  type: CFANet\s*)$", r"\1\n  backbone_pretrain: false")], "val_0",
     ["train:total_epoch=~"]),
])
def test_pyiqa_ava_option_files_train_and_score(demo_data, tmp_path, name, substitute, val, overrides):
    """pyiqa's own AVA training files run through train.py with only their data paths changed and the
    README's offline substitution; only the run's length and size change, through --force_yml."""
    opt_file = pyiqa_file(name, demo_data, tmp_path / name, substitute)
    out = run_script("train.py", "-opt", opt_file, "--force_yml", *tiny_run(val), *overrides, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_name = re.search(r"(?m)^name: (\S+)", opt_file.read_text()).group(1)
    final = json.loads((tmp_path / "experiments" / run_name / "final_metrics.json").read_text())
    assert final["iter"] == 1 and {"srcc", "plcc"} <= set(final["val"])
    assert f"FINAL {run_name} iter=1 val: srcc=" in out.stdout


def test_pyiqa_topiq_swin_fails_at_once_naming_the_file_and_connects_nowhere(demo_data, tmp_path, monkeypatch,
                                                                              forbid_sockets):
    """pyiqa's CFANet always loads a Swin backbone's weights through torch.hub: offline that must stop before any
    connection, naming the file, where it goes and the alternative."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch.hub cache
    opt_file = pyiqa_file("train_TOPIQ_swin_ava.yml", demo_data, tmp_path / "swin.yml")
    with pytest.raises(WeightsUnavailableError) as err:
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path), "--force_yml", *tiny_run("val_0"),
                        "train:total_epoch=~"])
    message = str(err.value)
    assert "swin_base_patch4_window12_384_22kto1k.pth" in message and "no connection was attempted" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message and "backbone_pretrain: false" in message


def test_pyiqa_laion_aesthetic_fails_naming_the_reason(demo_data, tmp_path, forbid_sockets):
    """pyiqa's LAIONAes imports OpenAI's `clip` package and always loads CLIP ViT-L/14: whichever stops it here
    (the package's import, or the download offline) is named, as a user error, before any connection."""
    try:
        import clip  # noqa: F401
        expected = "ViT-L-14.pt"
    except ImportError as missing:  # e.g. clip needs setuptools' pkg_resources
        expected = str(missing)
    opt_file = pyiqa_file("train_laion_aes_ava.yml", demo_data, tmp_path / "laion.yml")
    with pytest.raises(IAABenchError) as err:
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path), "--force_yml", *tiny_run("val_0"),
                        "train:total_epoch=~"])
    assert "LAIONAes" in str(err.value) and expected in str(err.value)


def test_urllib_downloads_are_refused_before_any_connection(tmp_path, forbid_sockets):
    """Loaders outside the Hugging Face hub (here pyiqa's CLIP loader, urllib like torch.hub's and OpenAI CLIP's)
    are stopped inside weights_required, naming the URL; the message never claims an offline mode that was not on."""
    from pyiqa.archs.clip_model import load

    from iaa_bench.utils.offline import weights_required

    with pytest.raises(WeightsUnavailableError, match=r"downloaded from https://\S+/ViT-B-32\.pt \(downloads are off"):
        with weights_required("network.clip_path", "CLIP ViT-B/32"):
            load("ViT-B/32", "cpu", download_root=str(tmp_path))
    assert not list(tmp_path.iterdir())  # nothing half-written
