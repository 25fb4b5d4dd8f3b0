"""pyiqa's own option files: its extra keys, model types, schedules and NIMA keys."""
import logging
import re

import pytest
from conftest import tiny_options, write_options, write_tiny_ava

from iaa_bench.config import schema
from iaa_bench.training.loop import train_pipeline
from iaa_bench.utils.errors import OptionError, WeightsUnavailableError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME, build_network


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


@pytest.mark.parametrize("change, message", [
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
