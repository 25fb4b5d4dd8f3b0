"""pyiqa's own option files: its extra keys, model types, schedules, NIMA keys, its AVA files and its log lines."""
import json
import logging
import re
from pathlib import Path

import pytest
from conftest import run_script, tiny_options, write_options, write_tiny_ava

from iaa_bench.config import schema
from iaa_bench.evaluation.cost import train_samples_per_s
from iaa_bench.training.loop import message_logger, train_pipeline
from iaa_bench.training.train_log import parse_train_line
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
    (lambda o: o["train"].update(regress_opt={"type": "MSELoss"}), "`train.regress_opt` and `train.mos_loss_opt` conflict"),
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
    lrs = {line["iter"]: line["lrs"][0] for line in map(parse_train_line, log.splitlines()) if line}
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
    out = run_script("train.py", "-opt", opt_file, "--force_yml", *tiny_run(val), *overrides, cwd=tmp_path,
                     timeout=1200)  # ~20 s on an idle 2-core machine, minutes when it is shared
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

    refused = r"downloaded from https://\S+/ViT-B-32\.pt \(downloads are off"
    with pytest.raises(WeightsUnavailableError, match=refused), weights_required("network.clip_path", "CLIP ViT-B/32"):
        load("ViT-B/32", "cpu", download_root=str(tmp_path))
    assert not list(tmp_path.iterdir())  # nothing half-written


# pyiqa's (BasicSR's) MessageLogger line, from its format string in pyiqa/utils/logger.py:
# f'[{exp_name[:5]}..][epoch:{epoch:3d}, iter:{current_iter:8,d}, lr:(' + f'{v:.3e},' per lr + ')] '
# + f'[eta: {eta_str}, ' + f'time (data): {iter_time:.3f} ({data_time:.3f})] ' + f'{k}: {v:.4e} ' per item
PYIQA_TRAIN_LINE = re.compile(r"INFO: \[(?P<name>.{1,5})\.\.\]\[epoch:[ \d]{3}, iter:[ \d,]{8}, "
                              r"lr:\((?:\d\.\d{3}e[-+]\d\d,)+\)\] \[eta: \d+:\d\d:\d\d, time \(data\): \d+\.\d{3} \(\d+\.\d{3}\)\] "
                              r"(?P<items>(?:\S+: -?\d\.\d{4}e[-+]\d\d )+)$", re.MULTILINE)
# pyiqa's validation block (GeneralIQAModel._log_validation_metric_values): a header, then one line per metric
PYIQA_VALIDATION = re.compile(r"INFO: Validation (?P<dataset>\S+)\n(?P<metrics>(?:\t # \w+: -?\d\.\d{4}"
                              r"\tBest: -?\d\.\d{4} @ \d+ iter\n)+)")


def test_training_and_validation_lines_have_pyiqa_s_shape_with_samples_per_s_last(data, tmp_path):
    train_pipeline(["-opt", str(write_options(tmp_path / "t.yml", tiny_options(data, total_iter=4))),
                    "--root", str(tmp_path)])
    log = next((tmp_path / "experiments" / "tiny").glob("train_tiny_*.log")).read_text()
    lines = list(PYIQA_TRAIN_LINE.finditer(log))
    assert len(lines) == 4 and all(m["name"] == "tiny" for m in lines)
    assert all(re.fullmatch(r"l_mos: \S+ samples/s: \S+ ", m["items"]) for m in lines)  # pyiqa's fields first
    blocks = list(PYIQA_VALIDATION.finditer(log))
    assert [b["dataset"] for b in blocks] == ["tiny_val"] * 2  # val_freq 3, and once more at the end (iter 4)
    assert re.findall(r"# (\w+): ", blocks[0]["metrics"]) == ["srcc", "plcc"]
    assert "Best: " in blocks[1]["metrics"] and "tiny_val @ iter 4: metrics on 2 images" in log


def test_eta_is_the_mean_iteration_time_times_the_iterations_left(monkeypatch):
    """pyiqa's MessageLogger is one iteration short at both ends (a negative eta on the last line)."""
    import types

    import pyiqa.utils.logger

    clock = iter([100.0, 130.0, 160.0])  # created at 100 s; iterations 11 and 12 (of 10 + 3) end 30 s apart
    monkeypatch.setattr(pyiqa.utils.logger, "time", types.SimpleNamespace(time=lambda: next(clock)))
    logger = message_logger("run", print_freq=1, start_iter=10, total_iters=13)
    lines = []
    monkeypatch.setattr(logger.logger, "info", lines.append)
    for it in (11, 12):
        logger({"epoch": 0, "iter": it, "lrs": [1e-3], "time": 30.0, "data_time": 0.0, "l_mos": 0.5})
    assert [re.search(r"eta: ([^,]+),", line).group(1) for line in lines] == ["0:01:00", "0:00:30"]


# Training lines as iaa_bench wrote them before they took pyiqa's shape (runs trained then are re-scored later).
EARLIER_LINES = """\
2026-11-28 09:12:01,100 INFO: [mmlq_demo][epoch   0, iter      20, lr (1.000e-04,1.000e-04)] l_mos: 9.8765e-02 | 58.1 samples/s, eta 0:01:40
2026-11-28 09:12:40,200 INFO: [mmlq_demo][epoch   3, iter   1,200, lr (5.000e-05,5.000e-05)] l_mos: 8.1234e-02 | 59.3 samples/s, eta 0:00:00
"""
PYIQA_SHAPED_LINES = """\
2026-11-28 12:00:01,100 INFO: [mmlq_..][epoch:  0, iter:      20, lr:(1.000e-04,1.000e-04,)] [eta: 0:01:40, time (data): 0.551 (0.004)] l_mos: 9.8765e-02 samples/s: 5.8100e+01 
2026-11-28 12:00:40,200 INFO: [mmlq_..][epoch:  3, iter:   1,200, lr:(5.000e-05,5.000e-05,)] [eta: 0:00:00, time (data): 0.540 (0.003)] l_mos: 8.1234e-02 samples/s: 5.9300e+01 
"""


@pytest.mark.parametrize("lines", [EARLIER_LINES, PYIQA_SHAPED_LINES], ids=["earlier", "pyiqa"])
def test_training_lines_of_both_shapes_parse(lines):
    first, last = (parse_train_line(line) for line in lines.splitlines())
    assert first == {"epoch": 0, "iter": 20, "lrs": [1e-4, 1e-4], "losses": {"l_mos": 9.8765e-02}, "samples_per_s": 58.1}
    assert (last["epoch"], last["iter"], last["lrs"], last["samples_per_s"]) == (3, 1200, [5e-5, 5e-5], 59.3)
    assert parse_train_line("2026-11-28 12:00:41,000 INFO: Validation ava") is None


@pytest.mark.parametrize("lines", [EARLIER_LINES, PYIQA_SHAPED_LINES], ids=["earlier", "pyiqa"])
def test_train_samples_per_s_reads_final_metrics_then_the_log_of_either_shape(tmp_path, lines):
    run = tmp_path / "experiments" / "mmlq_demo"
    run.mkdir(parents=True)
    assert train_samples_per_s(str(run)) != train_samples_per_s(str(run))  # NaN: not finished
    (run / "train_mmlq_demo_20261128_091200.log").write_text(lines)
    (run / "final_metrics.json").write_text(json.dumps({"iter": 1200, "train_samples_per_s": 61.5}))
    assert train_samples_per_s(str(run)) == 61.5
    # resumed with nothing left to train: no rate recorded, the last one logged while it trained
    (run / "final_metrics.json").write_text(json.dumps({"iter": 1200, "train_samples_per_s": None}))
    assert train_samples_per_s(str(run)) == 59.3
