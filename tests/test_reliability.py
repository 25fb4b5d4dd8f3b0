"""Fault injection: every row of the README's reliability table has a test here."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, run_script, tiny_options, write_options, write_tiny_ava

from iaa_bench.config.schema import validate_options
from iaa_bench.training.loop import train_pipeline
from iaa_bench.utils.errors import BadImageError, NonFiniteLossError, OptionError


@pytest.fixture
def data(tmp_path):
    return write_tiny_ava(tmp_path / "ava", n=30)


def _fails_cleanly(tmp_path, opt, *expected):
    opt_file = write_options(tmp_path / "bad.yml", opt)
    start = time.monotonic()
    out = run_script("train.py", "-opt", opt_file, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    for text in expected:
        assert text in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "experiments").exists() and not (tmp_path / "tb_logger").exists()
    return time.monotonic() - start


def test_typo_in_key_is_named_with_a_suggestion(tmp_path, data):
    opt = tiny_options(data)
    opt["train"]["totl_iter"] = opt["train"].pop("total_iter")
    _fails_cleanly(tmp_path, opt, "bad.yml", "unknown option `train.totl_iter` (did you mean `train.total_iter`")


def test_wrong_type_is_named(tmp_path, data):
    opt = tiny_options(data)
    opt["datasets"]["train"]["batch_size_per_gpu"] = "four"
    opt["logger"]["use_tb_logger"] = "yes"
    _fails_cleanly(tmp_path, opt, "`datasets.train.batch_size_per_gpu` must be a positive int",
                   "`logger.use_tb_logger` must be bool")


def test_unknown_arch_answers_fast_with_close_names(data):
    opt = tiny_options(data, network={"type": "MMLQX"})
    start = time.monotonic()
    with pytest.raises(OptionError, match=r"no arch named `MMLQX` is registered \(did you mean `MMLQ`"):
        validate_options(opt, source="opt.yml")
    assert time.monotonic() - start < 2


def test_missing_file_is_named(tmp_path, data):
    opt = tiny_options(data)
    opt["datasets"]["val"]["meta_info_file"] = str(tmp_path / "nope.csv")
    _fails_cleanly(tmp_path, opt, "`datasets.val.meta_info_file`: path does not exist", "nope.csv")


def _weights(root, name="tiny"):
    return torch.load(root / "experiments" / name / "models" / "net_latest.pth", map_location="cpu")["params"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_corrupt_latest_state_falls_back_to_the_previous_one(tmp_path, data):
    opt_file = write_options(tmp_path / "tiny.yml", tiny_options(data, total_iter=9))
    assert run_script("train.py", "-opt", opt_file, "--root", tmp_path / "ref", cwd=tmp_path).returncode == 0
    first = run_script("train.py", "-opt", opt_file, "--root", tmp_path / "run", "--force_yml", "train:total_iter=6",
                       cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    state6 = tmp_path / "run/experiments/tiny/training_states/6.state"
    state6.write_bytes(state6.read_bytes()[: state6.stat().st_size // 2])  # a crash mid-write of an old-style save
    out = run_script("train.py", "-opt", opt_file, "--root", tmp_path / "run", "--auto_resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Skipping unreadable training state" in out.stderr and "6.state" in out.stderr
    assert "iter 3" in out.stderr  # resumed from the previous good state
    _assert_same_weights(_weights(tmp_path / "ref"), _weights(tmp_path / "run"))


def _start_slow_run(tmp_path, opt_file, root, own_group=False):
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "iaa_bench/train.py"), "-opt", str(opt_file), "--root", str(root)],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=own_group)
    return proc, tmp_path / "run.log"


def _wait_for_iter(log_path, it, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"iter {it:7,d}" in log_path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"iteration {it} never logged:\n{log_path.read_text()[-2000:]}")


def test_sigkill_then_auto_resume_equals_uninterrupted_run(tmp_path, data):
    network = {"type": "TinyIAANet", "width": 8, "delay": 0.15}
    opt = tiny_options(data, total_iter=16, network=network)
    opt["logger"].update(save_latest_freq=4, save_checkpoint_freq=1000)
    opt_file = write_options(tmp_path / "tiny.yml", opt)
    ref = run_script("train.py", "-opt", opt_file, "--root", tmp_path / "ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]

    proc, log_path = _start_slow_run(tmp_path, opt_file, tmp_path / "run")
    _wait_for_iter(log_path, 7)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    states = os.listdir(tmp_path / "run/experiments/tiny/training_states")
    assert states and "16.state" not in states
    out = run_script("train.py", "-opt", opt_file, "--root", tmp_path / "run", "--auto_resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Resumed from" in out.stderr
    _assert_same_weights(_weights(tmp_path / "ref"), _weights(tmp_path / "run"))
    ref_losses = [line.split("l_mos: ")[1].split()[0] for line in ref.stderr.splitlines() if "l_mos" in line]
    resumed_losses = [line.split("l_mos: ")[1].split()[0] for line in out.stderr.splitlines() if "l_mos" in line]
    assert resumed_losses == ref_losses[-len(resumed_losses):]  # the logged losses match too


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_saves_a_state_before_exiting(tmp_path, data, workers):
    """With DataLoader workers the whole process group is signalled, as `timeout` and Slurm's scancel do."""
    network = {"type": "TinyIAANet", "width": 8, "delay": 0.15}
    opt = tiny_options(data, total_iter=200, network=network)
    opt["datasets"]["train"]["num_worker_per_gpu"] = workers
    opt["logger"].update(save_latest_freq=1000, save_checkpoint_freq=1000)
    opt_file = write_options(tmp_path / "tiny.yml", opt)
    proc, log_path = _start_slow_run(tmp_path, opt_file, tmp_path, own_group=True)
    _wait_for_iter(log_path, 7)  # mid-epoch (5 iterations each): the worker is busy prefetching
    if workers:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the run started above, workers included
    else:
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    states = os.listdir(tmp_path / "experiments/tiny/training_states")
    assert len(states) == 1 and 5 <= int(states[0].split(".")[0]) < 200
    assert "state saved, resume with --auto_resume" in log_path.read_text()


def _truncate_one_image(data):
    victim = sorted((data / "images").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:200])
    return victim


def test_corrupt_training_image_fails_naming_the_file(tmp_path, data):
    victim = _truncate_one_image(data)
    opt_file = write_options(tmp_path / "tiny.yml", tiny_options(data, total_iter=12))
    with pytest.raises(BadImageError, match=victim.name):
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])


def test_corrupt_training_image_skipped_and_recorded(tmp_path, data):
    victim = _truncate_one_image(data)
    opt = tiny_options(data, total_iter=12)
    opt["datasets"]["train"]["bad_image"] = "skip"
    opt_file = write_options(tmp_path / "tiny.yml", opt)
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])
    recorded = (tmp_path / "experiments/tiny/skipped_images.txt").read_text().split()
    assert recorded and set(recorded) == {str(victim)}


def test_nan_loss_stops_naming_iteration_and_images_and_saves_nothing_bad(tmp_path, data):
    opt = tiny_options(data, total_iter=12, network={"type": "TinyIAANet", "width": 8, "nan_at_step": 5})
    opt_file = write_options(tmp_path / "tiny.yml", opt)
    with pytest.raises(NonFiniteLossError, match=r"at iter 5; batch images: \d+\.jpg"):
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])
    states = os.listdir(tmp_path / "experiments/tiny/training_states")
    assert states == ["3.state"]  # the last good state; nothing from the bad step
    for value in torch.load(tmp_path / "experiments/tiny/models/net_latest.pth")["params"].values():
        assert torch.isfinite(value).all()


def test_nan_loss_skip_policy_continues(tmp_path, data):
    opt = tiny_options(data, total_iter=8, network={"type": "TinyIAANet", "width": 8, "nan_at_step": 5})
    opt["train"]["nonfinite_loss"] = "skip"
    metrics = train_pipeline(["-opt", str(write_options(tmp_path / "tiny.yml", opt)), "--root", str(tmp_path)])
    assert all(v == v for v in metrics.values())  # finite, not NaN


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """A full disk mid-write: clear error, the previous checkpoint intact, no temporary file left."""
    from iaa_bench.models import checkpoint

    target = tmp_path / "net_latest.pth"
    checkpoint.atomic_torch_save({"w": torch.ones(3)}, str(target))

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(checkpoint.CheckpointError, match="No space left.*previous file is intact"):
        checkpoint.atomic_torch_save({"w": torch.zeros(3)}, str(target))
    monkeypatch.undo()
    assert torch.equal(torch.load(target)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["net_latest.pth"]


def test_only_the_newest_states_are_kept(tmp_path):
    from iaa_bench.models import checkpoint

    for it in (2, 4, 6, 8):
        checkpoint.atomic_torch_save({"iter": it}, str(tmp_path / f"{it}.state"))
    checkpoint.prune_states(str(tmp_path), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["6.state", "8.state"]
    assert checkpoint.load_latest_state(str(tmp_path))[1]["iter"] == 8
