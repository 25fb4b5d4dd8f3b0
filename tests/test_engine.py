"""The foundation: registration, entry scripts, experiment layout, resume, DDP, offline failures."""
import subprocess
import sys

import pytest
import torch
from conftest import REPO, free_port, run_script, tiny_options, write_options, write_tiny_ava

from iaa_bench.config.options import apply_overrides
from iaa_bench.training.loop import train_pipeline
from iaa_bench.utils.errors import OptionError, WeightsUnavailableError


def _python(code, cwd=REPO):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_registers_components_and_keeps_hf_datasets():
    """From the repository root (on sys.path), `datasets` is still Hugging Face's."""
    out = _python(
        "import datasets, iaa_bench\n"
        "from pyiqa.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY\n"
        "print(datasets.__file__)\n"
        "print(all(n in r._obj_map for r, n in [(ARCH_REGISTRY, 'MMLQ'), (ARCH_REGISTRY, 'NIMABaseline'),\n"
        "      (DATASET_REGISTRY, 'AVACommentsDataset'), (LOSS_REGISTRY, 'ScoreDistEMDLoss'),\n"
        "      (METRIC_REGISTRY, 'aesthetic_srcc'), (MODEL_REGISTRY, 'IAAModel')]))\n"
        "import iaa_bench.datasets.ava_comments_dataset as m; print(m.__name__)")
    assert out.returncode == 0, out.stderr
    hf_path, registered, module = out.stdout.split()
    assert "site-packages" in hf_path and str(REPO) not in hf_path
    assert registered == "True" and module == "iaa_bench.datasets.ava_comments_dataset"


def test_entry_points_register_without_importing_iaa_bench():
    out = _python(
        "import sys\n"
        "from pyiqa.archs import build_network\n"
        "from pyiqa.utils.registry import LOSS_REGISTRY\n"
        "assert 'iaa_bench' not in sys.modules\n"
        "net = build_network({'type': 'NIMABaseline', 'base_model_name': 'resnet10t', 'backbone_weights': None})\n"
        "print(type(net).__module__, 'iaa_bench' in sys.modules, LOSS_REGISTRY.get('ScoreDistEMDLoss').__name__)",
        cwd=REPO.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["iaa_bench.archs.nima_baseline_arch", "True", "ScoreDistEMDLoss"]


def test_force_yml_parses_yaml_values_and_names_missing_sections():
    opt = {"train": {"optim": {"lr": 1.0}}, "name": "a"}
    apply_overrides(opt, ["train:optim:lr=1e-4", "train:total_iter=10", "name=b", "train:milestones=[1, 2]"])
    assert opt["train"]["optim"]["lr"] == 1e-4 and opt["train"]["total_iter"] == 10
    assert opt["name"] == "b" and opt["train"]["milestones"] == [1, 2]
    with pytest.raises(OptionError, match="no option section `trian`"):
        apply_overrides(opt, ["trian:total_iter=3"])
    with pytest.raises(OptionError, match="KEY:SUB=VALUE"):
        apply_overrides(opt, ["train:total_iter"])


def test_train_script_writes_experiment_tb_and_archives_previous(tmp_path):
    data = write_tiny_ava(tmp_path / "ava", n=30)
    opt_file = write_options(tmp_path / "tiny.yml", tiny_options(data))
    for attempt in range(2):
        out = run_script("train.py", "-opt", opt_file, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
    assert "FINAL tiny iter=6 val: srcc=" in out.stdout
    exp = tmp_path / "experiments" / "tiny"
    assert (exp / "tiny.yml").is_file() and list(exp.glob("train_tiny_*.log"))
    assert {p.name for p in (exp / "models").iterdir()} >= {"net_3.pth", "net_6.pth", "net_latest.pth", "net_best.pth"}
    assert {p.name for p in (exp / "training_states").iterdir()} == {"3.state", "6.state"}
    assert list((tmp_path / "tb_logger" / "tiny").glob("events.out.tfevents.*"))
    assert len(list((tmp_path / "experiments").glob("tiny_archived_*"))) == 1  # the first run, kept
    assert len(list((tmp_path / "tb_logger_archived").glob("tiny_archived_*"))) == 1  # pyiqa's archive folder
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb_logger" / "tiny")).Reload()
    assert {"losses/l_mos", "val_metrics/tiny_val/srcc", "val_metrics/tiny_val/plcc"} <= set(events.Tags()["scalars"])
    log_text = next(exp.glob("train_tiny_*.log")).read_text()
    assert "samples/s" in log_text and "Validation tiny_val\n\t # srcc: " in log_text


def _weights(folder):
    return torch.load(folder / "models" / "net_latest.pth", map_location="cpu")["params"]


def test_auto_resume_restores_weights_counters_and_continues_identically(tmp_path):
    data = write_tiny_ava(tmp_path / "ava", n=30)
    opt_file = write_options(tmp_path / "tiny.yml", tiny_options(data, total_iter=10))
    # the reference: 10 uninterrupted iterations
    assert run_script("train.py", "-opt", opt_file, "--root", tmp_path / "ref", cwd=tmp_path).returncode == 0
    # 5 iterations (a state is saved at 3 and at the end, 5), then resume to 10
    first = run_script("train.py", "-opt", opt_file, "--root", tmp_path / "run", "--force_yml", "train:total_iter=5",
                       cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    saved = torch.load(tmp_path / "run/experiments/tiny/training_states/5.state", map_location="cpu", weights_only=False)
    second = run_script("train.py", "-opt", opt_file, "--root", tmp_path / "run", "--auto_resume", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resumed from" in second.stderr and "iter 5" in second.stderr
    # 22 training images (18 + 4 moved from val by pyiqa's val_num) / batch 4 = 5 iters per epoch
    assert saved["iter"] == 5 and saved["epoch"] == 0 and len(saved["optimizers"]) == 1
    assert not list((tmp_path / "run/experiments").glob("tiny_archived_*"))  # resuming never archives
    ref, resumed = _weights(tmp_path / "ref/experiments/tiny"), _weights(tmp_path / "run/experiments/tiny")
    assert ref.keys() == resumed.keys()
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key


def test_ddp_two_cpu_processes(tmp_path):
    data = write_tiny_ava(tmp_path / "ava", n=30)
    opt_file = write_options(tmp_path / "tiny.yml", tiny_options(data, name="ddp"))
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                          str(REPO / "iaa_bench/train.py"), "-opt", str(opt_file), "--launcher", "pytorch"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FINAL ddp iter=6" in out.stdout and out.stdout.count("FINAL") == 1  # rank 0 only
    assert "batch 8" in out.stderr  # 2 ranks x 4
    assert (tmp_path / "experiments/ddp/training_states/6.state").is_file()


def test_pyiqa_nima_download_fails_offline_naming_the_option(tmp_path):
    """pyiqa's NIMA always downloads its backbone: offline that must fail (no retries), with advice."""
    data = write_tiny_ava(tmp_path / "ava", n=30)
    opt_file = write_options(tmp_path / "nima.yml", tiny_options(
        data, name="nima", network={"type": "NIMA", "base_model_name": "vgg11", "pretrained": False}))
    with pytest.raises(WeightsUnavailableError, match="network") as err:
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])
    assert "network.type: NIMABaseline with network.backbone_weights" in str(err.value)


def test_nima_baseline_trains_offline_without_sockets(tmp_path, forbid_sockets):
    data = write_tiny_ava(tmp_path / "ava", n=30)
    network = {"type": "NIMABaseline", "base_model_name": "tf_efficientnet_lite0",
               "backbone_weights": "offline-efficientnet-lite0"}
    opt_file = write_options(tmp_path / "nima.yml", tiny_options(data, name="nima", network=network, total_iter=2))
    metrics = train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])
    assert set(metrics) == {"srcc", "plcc"}
    assert (tmp_path / "experiments/nima/models/net_latest.pth").is_file()
