"""Fault injection: every row of the README's reliability table has a test here."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from conftest import ASSETS, REPO, run_script, tiny_options, write_options, write_tiny_ava

from iaa_bench.config.schema import validate_options
from iaa_bench.training.loop import train_pipeline
from iaa_bench.utils.errors import BadImageError, NonFiniteLossError, OptionError


@pytest.fixture
def data(tmp_path):
    return write_tiny_ava(tmp_path / "ava", n=30)


def _fails_cleanly(tmp_path, opt, *expected):
    opt_file = write_options(tmp_path / "bad.yml", opt)
    out = run_script("train.py", "-opt", opt_file, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    for text in expected:
        assert text in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "experiments").exists() and not (tmp_path / "tb_logger").exists()


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


def test_unknown_arch_is_named_with_close_names(data):
    opt = tiny_options(data, network={"type": "MMLQX"})
    with pytest.raises(OptionError, match=r"no arch named `MMLQX` is registered \(did you mean `MMLQ`"):
        validate_options(opt, source="opt.yml")


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


def _wait_for_log(log_path, pattern, timeout=120):
    """The first match of regular expression `pattern` in the log, once it appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log_path.read_text())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never logged:\n{log_path.read_text()[-2000:]}")


def _wait_for_iter(log_path, it):
    """Until the training line of iteration `it` is logged (pyiqa's `iter:      7, lr:(` shape)."""
    _wait_for_log(log_path, rf"\biter:\s+{it:,d}, lr:\(")


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


# ---------------------------------------------------------------- same options, same numbers; nothing lost
TINY_MMLQ = {"type": "MMLQ", "image_encoder": {"name": "resnet10t", "weights": None, "img_size": 64},
             "text_encoder": {"name": "offline-minilm", "max_length": 24, "weights": None,
                              "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                         "intermediate_size": 64, "vocab_size": 30522}},
             "num_visual_queries": 4, "num_text_queries": 3, "dim": 32, "num_heads": 4, "depth": 2, "dropout": 0.1}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from iaa_bench.data.demo import build_demo

    out = tmp_path_factory.mktemp("demo") / "data"
    build_demo(out, n=40, size=64, workers=1, progress=False)
    return out


def mmlq_options(data, name="mmlq", total_iter=4, cache=True, **network):
    ds = {"type": "AVACommentsDataset", "dataroot": str(data), "augment": {"resize": [64, 64], "hflip": True},
          "img_range": 1}
    opt = tiny_options(data, name=name, network={**TINY_MMLQ, **network}, total_iter=total_iter)
    opt.pop("plugins")
    opt["datasets"] = {"train": {**ds, "name": "t", "split": "train", "batch_size_per_gpu": 4, "num_worker_per_gpu": 0},
                       "val": {**ds, "name": "v", "split": "val", "batch_size_per_gpu": 4}}
    opt["train"]["optim"]["type"] = "AdamW"
    opt["feature_cache"] = {"enabled": cache}
    return opt


def test_reused_feature_cache_gives_the_same_weights_as_a_fresh_one(tmp_path, demo):
    opt_file = write_options(tmp_path / "m.yml", mmlq_options(demo))
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])  # builds the caches
    cache_mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "feature_cache").rglob("*.bin")}
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path), "--force_yml", "name=mmlq_again"])
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "feature_cache").rglob("*.bin")} == cache_mtimes  # reused
    _assert_same_weights(_weights(tmp_path, "mmlq"), _weights(tmp_path, "mmlq_again"))


def _tiny_run(tmp_path, data, **changes):
    opt = tiny_options(data, total_iter=6)
    for key, value in changes.items():
        section, leaf = key.split(".")
        opt[section][leaf] = value
    return write_options(tmp_path / "tiny.yml", opt)


def test_resume_with_changed_options_is_refused_before_any_file_is_touched(tmp_path, data):
    opt_file = _tiny_run(tmp_path, data)
    assert run_script("train.py", "-opt", opt_file, "--force_yml", "train:total_iter=3", cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "experiments/tiny"
    before = {p: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    _tiny_run(tmp_path, data, **{"network.width": 16})
    out = run_script("train.py", "-opt", opt_file, "--auto_resume", cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "network.width: 8 -> 16" in out.stderr and "--force_resume" in out.stderr
    assert "Traceback" not in out.stderr
    assert {p: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before

    _tiny_run(tmp_path, data, **{"train.scheduler": {"type": "MultiStepLR", "milestones": [4], "gamma": 0.1}})
    out = run_script("train.py", "-opt", opt_file, "--auto_resume", cwd=tmp_path)
    assert out.returncode == 2 and "train.scheduler.gamma: 0.5 -> 0.1" in out.stderr, out.stderr[-2000:]
    out = run_script("train.py", "-opt", opt_file, "--auto_resume", "--force_resume", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--force_resume: resuming" in out.stderr and "Resumed from" in out.stderr
    assert "gamma: 0.1" in (run_dir / "resolved_options.yml").read_text()


def test_a_second_run_of_the_same_name_stops_while_the_first_runs(tmp_path, data):
    opt = tiny_options(data, total_iter=200, network={"type": "TinyIAANet", "width": 8, "delay": 0.15})
    opt_file = write_options(tmp_path / "tiny.yml", opt)
    proc, log_path = _start_slow_run(tmp_path, opt_file, tmp_path)
    try:
        _wait_for_iter(log_path, 2)
        second = run_script("train.py", "-opt", opt_file, cwd=tmp_path)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"another run named `tiny` is writing {tmp_path / 'experiments/tiny'} (PID {proc.pid})" in second.stderr
        assert not list((tmp_path / "experiments").glob("tiny_archived_*"))  # the live folder was left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # the killed run's lock is stale: the kernel released it with the process
    third = run_script("train.py", "-opt", opt_file, "--auto_resume", "--force_resume", "--force_yml",
                       "train:total_iter=3", "network:delay=0", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-2000:]


def _answered_up_front(tmp_path, capsys, opt, *expected):
    """In-process twin of `_fails_cleanly` (the same exit path, without a Python start-up per case)."""
    from iaa_bench.utils.cli import run

    assert run(train_pipeline, ["-opt", str(write_options(tmp_path / "bad.yml", opt)), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err[-2000:]
    assert not (tmp_path / "experiments").exists() and not (tmp_path / "tb_logger").exists()


@pytest.mark.parametrize("name", ["../outside", "/tmp/abs_dir", "..", ".", "a/b"])
def test_name_must_be_a_single_folder_name(tmp_path, capsys, data, name):
    _answered_up_front(tmp_path, capsys, tiny_options(data, name=name), "option `name` must be a single folder name")


@pytest.mark.parametrize("cache, message", [
    ({"enabled": "yes"}, "`feature_cache.enabled` must be true or false"),
    ({"enabled": True, "dtype": "int8"}, "`feature_cache.dtype` must be one of"),
    ({"enabled": True, "batch_size": 0}, "`feature_cache.batch_size` must be a positive int"),
    ({"enabled": True, "flush_seconds": -1}, "`feature_cache.flush_seconds` must be a positive number"),
    ({"enabled": True, "dirr": "x"}, "unknown option `feature_cache.dirr`"),
])
def test_bad_feature_cache_values_are_answered_before_any_work(tmp_path, capsys, demo, cache, message):
    opt = mmlq_options(demo)
    opt["feature_cache"] = cache
    _answered_up_front(tmp_path, capsys, opt, message)


def test_random_crop_with_the_cache_and_a_batch_larger_than_the_split_are_answered_up_front(tmp_path, capsys, demo):
    opt = mmlq_options(demo)
    opt["datasets"]["train"]["augment"]["random_crop"] = 56
    _answered_up_front(tmp_path, capsys, opt, "`datasets.train.augment.random_crop` is a random transform")
    opt = mmlq_options(demo, cache=False)
    opt["datasets"]["train"]["batch_size_per_gpu"] = 1000
    _answered_up_front(tmp_path, capsys, opt, "`datasets.train.batch_size_per_gpu` (1000) is larger than the")


def test_feature_cache_refuses_a_build_larger_than_the_free_space(tmp_path, demo, monkeypatch):
    from iaa_bench.data import feature_cache

    monkeypatch.setattr(feature_cache.shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    opt_file = write_options(tmp_path / "m.yml", mmlq_options(demo))
    with pytest.raises(feature_cache.FeatureCacheError) as err:
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])
    message = str(err.value)
    assert "(1000 bytes) free" in message and "GiB (" in message
    assert "feature_cache.dir" in message and "feature_cache.enabled: false" in message
    assert not (tmp_path / "feature_cache").exists()  # nothing written
    assert "planned size" in next((tmp_path / "experiments/mmlq").glob("train_*.log")).read_text()


def test_sigint_during_the_cache_build_is_the_clean_stop(tmp_path, demo, monkeypatch):
    from iaa_bench.data import feature_cache

    encode_batch = feature_cache._encode_batch
    calls = []

    def interrupted_on_the_second_batch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what SIGINT raises in the main thread
        return encode_batch(*args)

    monkeypatch.setattr(feature_cache, "_encode_batch", interrupted_on_the_second_batch)
    opt_file = write_options(tmp_path / "m.yml", mmlq_options(demo))
    with pytest.raises(SystemExit) as stop:
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])
    assert stop.value.code == 128 + signal.SIGINT
    log_text = next((tmp_path / "experiments/mmlq").glob("train_*.log")).read_text()
    assert "Feature cache build interrupted (SIGINT): 4 of" in log_text and "run the same command again" in log_text


def test_a_real_sigint_during_the_cache_build_stops_cleanly_and_the_next_run_resumes(tmp_path, demo):
    """Ctrl-C as the kernel delivers it, to a train.py building its image cache (2 s per batch of 4)."""
    opt = mmlq_options(demo, total_iter=2, type="SlowEncoderMMLQ", encode_delay=2.0)
    opt["plugins"] = [str(ASSETS / "slow_encoder_arch.py")]
    opt["feature_cache"]["flush_seconds"] = 0.01  # a progress line after every batch
    opt_file = write_options(tmp_path / "m.yml", opt)
    proc, log_path = _start_slow_run(tmp_path, opt_file, tmp_path)
    _wait_for_log(log_path, r"Feature cache train-image-\w+: \d+ of \d+ samples encoded")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 128 + signal.SIGINT
    output = log_path.read_text()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    stop = re.search(r"interrupted \(SIGINT\): (\d+) of (\d+) samples of \S+/(train-image-\w+) are kept; run the "
                     r"same command again to continue", output)
    assert stop and 0 < int(stop[1]) < int(stop[2]), output[-2000:]
    train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path), "--force_yml", "network:encode_delay=0"])
    resumed = next((tmp_path / "experiments/mmlq").glob("train_*.log")).read_text()
    assert f"Feature cache {stop[3]}: resuming an interrupted build, {stop[1]} of {stop[2]} samples already" in resumed
    assert json.loads((tmp_path / "feature_cache" / stop[3] / "meta.json").read_text())["complete"]


def _copy_with_a_truncated_training_image(demo, tmp_path):
    import json
    import shutil

    data = tmp_path / "demo_copy"
    shutil.copytree(demo, data)
    report = json.loads((data / "report.json").read_text())
    train_rows = [line.split(",") for line in (data / "meta_info.csv").read_text().splitlines()[1:]]
    victim = data / report["image_dir"] / next(row[0] for row in train_rows if row[-1] == "0")
    victim.write_bytes(victim.read_bytes()[:300])
    return data, victim


def test_bad_image_skip_works_with_the_feature_cache_and_skips_the_same_images(tmp_path, demo):
    data, victim = _copy_with_a_truncated_training_image(demo, tmp_path)
    recorded = {}
    for cache in (True, False):
        opt = mmlq_options(data, name=f"cache_{cache}", total_iter=7, cache=cache)
        opt["datasets"]["train"]["bad_image"] = "skip"
        opt["val"]["val_freq"] = 100
        opt_file = write_options(tmp_path / f"{cache}.yml", opt)
        train_pipeline(["-opt", str(opt_file), "--root", str(tmp_path)])  # 7 iterations of 4: more than one epoch
        recorded[cache] = (tmp_path / f"experiments/cache_{cache}/skipped_images.txt").read_text().splitlines()
    assert recorded[True] == recorded[False] == [str(victim)]  # once, not once per epoch


def test_unreadable_val_and_test_images_are_logged_listed_and_counted(tmp_path, data):
    victims = [data / "images/1022.jpg", data / "images/1025.jpg"]  # a val and a test image (pyiqa's split)
    for victim in victims:
        victim.write_bytes(victim.read_bytes()[:200])
    opt = tiny_options(data, total_iter=3)
    opt["datasets"]["val"].update(bad_image="skip", val_num=3)
    opt["datasets"]["test"] = {**opt["datasets"]["val"], "name": "tiny_test"}
    train_pipeline(["-opt", str(write_options(tmp_path / "tiny.yml", opt)), "--root", str(tmp_path)])
    final = json.loads((tmp_path / "experiments/tiny/final_metrics.json").read_text())
    assert final["test"]["test"]["unreadable_images"] == [str(victims[1])]
    assert final["test"]["test"]["images"] == 6 - 1
    log_text = next((tmp_path / "experiments/tiny").glob("train_*.log")).read_text()
    assert "unreadable image(s) left out of the metrics: " + str(victims[0]) in log_text
    assert "metrics on 2 images, 1 unreadable left out" in log_text


def test_text_only_networks_skip_the_same_unreadable_images_cached_or_not(tmp_path, demo):
    """A text-only network reads no image, yet it must leave out what image networks leave out."""
    data, victim = _copy_with_a_truncated_training_image(demo, tmp_path)
    for cache in (True, False):
        opt = mmlq_options(data, name=f"text_{cache}", total_iter=7, cache=cache, modality="text")
        opt["datasets"]["train"]["bad_image"] = "skip"
        opt["val"]["val_freq"] = 100
        train_pipeline(["-opt", str(write_options(tmp_path / f"{cache}.yml", opt)), "--root", str(tmp_path)])
        skipped = tmp_path / f"experiments/text_{cache}/skipped_images.txt"
        assert skipped.is_file() and skipped.read_text().splitlines() == [str(victim)], cache
