"""Mistakes in an option file are answered before any work: one `error:` block naming each option."""
import logging
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO, free_port, run_script, tiny_options, write_options, write_tiny_ava

from iaa_bench.config.options import load_options, resolve_device
from iaa_bench.config.schema import validate_options
from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_ava(tmp_path_factory.mktemp("ava") / "ava", n=30)


def _load(tmp_path, opt, overrides=None, text_edit=None):
    text = yaml.safe_dump(opt, sort_keys=False)
    path = tmp_path / "opt.yml"
    path.write_text(text_edit(text) if text_edit else text)
    return load_options(str(path), is_train=True, overrides=overrides, root=str(tmp_path), validate=validate_options)


def _edit(opt, dotted, value):
    *parents, leaf = dotted.split(".")
    node = opt
    for key in parents:
        node = node[key]
    node[leaf] = value


MMLQ = {"type": "MMLQ", "image_encoder": {"name": "resnet10t", "weights": None, "img_size": 32},
        "text_encoder": {"name": "offline-minilm", "max_length": 16}, "dim": 32, "num_heads": 4, "depth": 1}

MISTAKES = [  # (option, bad value, words the error must contain)
    ("val.val_freq", 0, "`val.val_freq` must be a whole number >= 1, got 0"),
    ("logger.print_freq", 0, "`logger.print_freq` must be a whole number >= 1"),
    ("train.total_iter", 0, "`train.total_iter` must be a whole number >= 1, got 0"),
    ("train.total_iter", -5, "`train.total_iter` must be a whole number >= 1, got -5"),
    ("train.total_iter", float("nan"), "`train.total_iter` must be a whole number >= 1, got nan"),
    ("logger.save_latest_freq", float("inf"), "`logger.save_latest_freq` must be a whole number >= 1, got inf"),
    ("name", None, "`name` must be a non-empty string, got None"),
    ("network.widht", 8, "`network.widht`: not a parameter of TinyIAANet (did you mean `network.width`?)"),
    ("network.width", 1.5, "`network.width` must be int, got float 1.5"),
    ("val.key_metric", "srocc", "`val.key_metric`: `srocc` is not one of val.metrics ['srcc', 'plcc']"),
    ("train.scheduler.type", "MultiStepLRR", "no scheduler `MultiStepLRR` (did you mean `MultiStepLR`"),
    ("train.scheduler.milestone", [4], "`train.scheduler.milestone`: not a parameter of MultiStepRestartLR"),
    ("train.optim.type", "Adamw", "torch.optim has no `Adamw` (did you mean `AdamW`"),
    ("train.optim.lr", "fast", "`train.optim.lr` must be a number, got str 'fast'"),
    ("train.optim.weight_decy", 0.1, "`train.optim.weight_decy`: not a parameter of Adam (did you mean"),
    ("datasets.val.split", "trian", "`datasets.val.split` must be one of ('train', 'val', 'test'), got 'trian'"),
    ("datasets.train.bad_image", "ignore", "`datasets.train.bad_image` must be one of ('fail', 'skip')"),
    ("num_gpu", -1, "`num_gpu` must be `auto` or a whole number >= 0, got -1"),
    ("num_gpu", "all", "`num_gpu` must be `auto` or a whole number >= 0, got 'all'"),
    ("val.save_img", True, "`val.save_img: True`: iaa_bench saves no images"),
    ("logger.wandb", {"project": "iaa"}, "`logger.wandb: {'project': 'iaa'}`: wandb logging is not implemented"),
    ("train.metric_loss_opt", {"type": "MSELoss"}, "`train.metric_loss_opt: {'type': 'MSELoss'}`: IAAModel trains"),
    ("scale", 4, "`scale: 4`: a super-resolution scale"),
]


@pytest.mark.parametrize("option, value, message", MISTAKES, ids=[f"{m[0]}={m[1]!r}" for m in MISTAKES])
def test_mistake_is_named_before_any_work(tmp_path, data, option, value, message):
    opt = tiny_options(data)
    _edit(opt, option, value)
    with pytest.raises(OptionError) as err:
        _load(tmp_path, opt)
    assert message in str(err.value)
    assert not (tmp_path / "experiments").exists()


def test_dim_not_divisible_by_num_heads_is_named(tmp_path, data):
    opt = tiny_options(data, network={**MMLQ, "num_heads": 5})
    with pytest.raises(OptionError, match=r"`network.dim` \(32\) must be divisible by `network.num_heads` \(5\)"):
        validate_options(opt, source="opt.yml")


def test_pyiqa_do_nothing_forms_are_accepted(tmp_path, data):
    """pyiqa's own option files carry these; in their do-nothing form they are fine."""
    opt = tiny_options(data, scale=1, dist_params={"backend": "nccl", "port": 29500})
    opt["val"]["save_img"] = False
    opt["logger"]["wandb"] = {"project": None, "resume_id": None}
    opt["logger"]["save_checkpoint_freq"] = 5e9  # pyiqa writes large counts as `!!float 5e9`
    assert _load(tmp_path, opt)["logger"]["wandb"]["project"] is None


def test_yaml_1_1_exponent_is_read_as_a_number(tmp_path, data):
    """`lr: 1e-4` is a string to YAML 1.1 (PyYAML); option files read it as the number it means."""
    opt = tiny_options(data)
    opt["train"]["optim"]["lr"] = 0.125
    loaded = _load(tmp_path, opt, text_edit=lambda text: text.replace("lr: 0.125", "lr: 1e-4"))
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4" and loaded["train"]["optim"]["lr"] == 1e-4


def test_yaml_error_in_force_yml_value_names_the_entry(tmp_path, data):
    with pytest.raises(OptionError, match=r"--force_yml 'train:total_iter=\[1, 2': invalid YAML"):
        _load(tmp_path, tiny_options(data), overrides=["train:total_iter=[1, 2"])


def test_gpu_request_on_a_cpu_only_machine_warns(monkeypatch):
    warnings = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(logging.getLogger(LOGGER_NAME), "warning", warnings.append)
    assert resolve_device({"num_gpu": 1}) == torch.device("cpu")
    assert warnings == ["num_gpu: 1 asks for a GPU but none is available: running on the CPU"]


def test_many_mistakes_one_error_block_exit_2_no_folder(tmp_path, data):
    """Through the script: every mistake listed at once, no traceback, nothing created."""
    opt = tiny_options(data)
    opt["val"]["val_freq"] = 0
    opt["network"]["widht"] = 8
    opt["datasets"]["val"]["split"] = "trian"
    out = run_script("train.py", "-opt", write_options(tmp_path / "bad.yml", opt), "--force_yml",
                     "train:total_iter=0", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.startswith("error: ") and "4 problem(s)" in out.stderr
    for text in ("`val.val_freq`", "`network.widht`", "`datasets.val.split`", "`train.total_iter`"):
        assert text in out.stderr
    assert not (tmp_path / "experiments").exists() and not (tmp_path / "tb_logger").exists()


def test_slurm_launcher_sets_the_rendezvous_as_pyiqa_does(tmp_path):
    """One srun task on this machine: MASTER_ADDR from `scontrol show hostnames`, MASTER_PORT from dist_params."""
    scontrol = tmp_path / "bin" / "scontrol"
    scontrol.parent.mkdir()
    scontrol.write_text("#!/bin/sh\n[ \"$1 $2 $3\" = 'show hostnames node[1-2]' ] && printf '127.0.0.1\\nnode2\\n'\n")
    scontrol.chmod(0o755)
    port = free_port()
    code = ("import os; from iaa_bench.config.options import init_distributed\n"
            f"print('RANKS', init_distributed('slurm', use_cuda=False, dist_params={{'port': {port}}}),"
            " os.environ['MASTER_ADDR'], os.environ['MASTER_PORT'], os.environ['LOCAL_RANK'])\n")
    env = {**os.environ, "PATH": f"{scontrol.parent}:{os.environ['PATH']}",
           "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0", "SLURM_NODELIST": "node[1-2]"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert f"RANKS (0, 1) 127.0.0.1 {port} 0" in out.stdout, out.stderr[-2000:]
