"""bench_speed.py --vs-pyiqa: the same option file trained by pyiqa's own trainer and by iaa_bench's, rates read alike."""
import re

import pytest
from conftest import REPO, run_script, write_tiny_ava

from iaa_bench.evaluation.speed_vs_pyiqa import NEVER, bench_options, read_log_rate
from iaa_bench.utils.errors import OptionError

# pyiqa 0.1.16's MessageLogger line and iaa_bench's, as each writes them to its run's log file
PYIQA_LINE = ("{t} INFO: [pyiqa..][epoch:  0, iter:{it:8,d}, lr:(5.000e-05,5.000e-04,)] "
              "[eta: 0:00:03, time (data): 0.421 (0.010)] l_mos: 1.2e-01 train_metrics/srcc: 1.0e-01 \n")
IAA_BENCH_LINE = ("{t} INFO: [nima..][epoch:  0, iter:{it:8,d}, lr:(5.000e-05,5.000e-04,)] "
                  "[eta: 0:00:03, time (data): 0.410 (0.002)] l_mos: 1.2e-01 samples/s: 9.1000e+00\n")
EARLIER_IAA_BENCH_LINE = "{t} INFO: [nima][epoch   0, iter {it:7,d}, lr (5.000e-05,5.000e-04)] l_mos: 1.2e-01 | 9.1 samples/s, eta 0:00:03\n"


@pytest.mark.parametrize("line", [PYIQA_LINE, IAA_BENCH_LINE, EARLIER_IAA_BENCH_LINE],
                         ids=["pyiqa", "iaa_bench", "iaa_bench_earlier"])
def test_rate_is_read_between_the_first_and_last_logged_iteration(tmp_path, line):
    log = tmp_path / "train.log"
    log.write_text("2026-01-01 10:00:00,000 INFO: start-up, not counted\n"
                   + line.format(t="2026-01-01 10:00:05,000", it=10)
                   + "2026-01-01 10:00:06,000 INFO: Saving latest models and training states.\n"
                   + line.format(t="2026-01-01 10:00:45,000", it=1010)
                   + "2026-01-01 10:01:45,000 INFO: validation, not counted\n")
    assert read_log_rate(str(log), batch_size=4) == (4 * 1000 / 40, 4 * 1010)


def test_a_log_without_two_iteration_lines_is_an_error_naming_it(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(PYIQA_LINE.format(t="2026-01-01 10:00:05,000", it=10))
    with pytest.raises(OptionError, match="train.log: fewer than two training log lines"):
        read_log_rate(str(log), batch_size=4)


def test_both_sides_get_the_same_loop_and_the_demo_is_built_beside_pyiqa_s_meta_info_file(tmp_path):
    demo = tmp_path / "demo"
    where = [f"datasets:{phase}:{key}={value}" for phase in ("train", "val") for key, value in (
        ("meta_info_file", demo / "meta_info.csv"), ("dataroot_target", demo / "raw/images"),
        ("build_demo_if_missing", "{seed: 0, n: 20, size: 48, workers: 1}"))]
    opt = bench_options(str(REPO / "options/pyiqa/train_NIMA_demo.yml"), iters=20, print_freq=5, overrides=where)
    assert (demo / "meta_info.csv").is_file() and any((demo / "raw/images").iterdir())  # pyiqa's AVADataset reads it
    assert (opt["train"]["total_iter"], opt["logger"]["print_freq"], opt["logger"]["use_tb_logger"]) == (20, 5, False)
    assert opt["val"]["val_freq"] == opt["logger"]["save_latest_freq"] == opt["logger"]["save_checkpoint_freq"] == NEVER
    with pytest.raises(OptionError, match="--iters 25 must be a multiple of --print-freq 10"):
        bench_options(str(REPO / "options/pyiqa/train_NIMA_demo.yml"), iters=25, print_freq=10, overrides=where)
    with pytest.raises(OptionError, match="network.type"):  # named before either side trains
        bench_options(str(REPO / "options/pyiqa/train_NIMA_demo.yml"), 20, 5, [*where, "network:type=NIMABaselin"])


def test_vs_pyiqa_trains_the_vendored_pyiqa_nima_file_with_both_trainers(tmp_path):
    """The shipped pyiqa-schema NIMA file, pointed at tiny data and a tiny backbone, through both trainers."""
    data = write_tiny_ava(tmp_path / "ava", n=30)
    tiny = [f"datasets:{phase}:{key}={value}" for phase in ("train", "val") for key, value in (
        ("dataroot_target", data / "images"), ("meta_info_file", data / "meta_info.csv"), ("val_num", 4),
        ("batch_size_per_gpu", 4), ("augment", "{resize: [32, 32]}"))]
    out = run_script("bench_speed.py", "--vs-pyiqa", "-opt", REPO / "options/pyiqa/train_NIMA_demo.yml",
                     "--iters", 4, "--print-freq", 2, "--rounds", 1, "--force_yml", *tiny,
                     "network:base_model_name=resnet10t", "network:backbone_weights=~", cwd=tmp_path, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    rounds = re.findall(r"^round 1 (\w+): [\d.]+ samples/s \((\d+) samples trained\)$", out.stdout, re.M)
    assert rounds == [("pyiqa", "16"), ("iaa_bench", "16")]  # pyiqa first; 4 iterations of 4 each
    summary = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"SUMMARY vs_pyiqa_train_ratio=\d+\.\d{3} iaa_bench_samples_per_s=[\d.]+ "
                        r"pyiqa_samples_per_s=[\d.]+ iaa_bench_samples=16 pyiqa_samples=16 rounds=1 iters=4 batch=4",
                        summary), summary
    assert list(tmp_path.iterdir()) == [tmp_path / "ava"]  # nothing written where it ran
