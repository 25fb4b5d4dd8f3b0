"""Check an option file before any work starts.

Unknown keys (with a "did you mean"), wrong types, missing required keys, names that no
registry knows (with the closest registered names, answered without importing all of
pyiqa) and paths that do not exist: every problem is reported at once, each naming its
option path and the file, and no experiment folder is created.
"""
import difflib
from os import path as osp

from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import is_registered, registered_names
from iaa_bench.utils.registration import load_plugins

NUMBER = (int, float)
# Known keys per section; None = free-form (passed to a registered component).
SCHEMA = {
    "": {"name": str, "model_type": str, "num_gpu": (int, str), "manual_seed": int, "datasets": dict,
         "network": dict, "path": dict, "train": dict, "val": dict, "logger": dict, "dist_params": dict,
         "plugins": list, "find_unused_parameters": bool, "feature_cache": dict, "scale": NUMBER},
    "train": {"optim": dict, "scheduler": dict, "total_iter": NUMBER, "total_epoch": NUMBER, "warmup_iter": NUMBER,
              "mos_loss_opt": dict, "metric_loss_opt": dict, "amp": str, "nonfinite_loss": str, "compile": bool},
    "val": {"val_freq": NUMBER, "save_img": bool, "pbar": bool, "key_metric": (str, type(None)), "metrics": dict,
            "amp": str, "split": str},
    "logger": {"print_freq": NUMBER, "save_checkpoint_freq": NUMBER, "save_latest_freq": NUMBER,
               "use_tb_logger": bool, "wandb": (dict, type(None)), "pbar": bool, "keep_states": NUMBER},
    "path": {"pretrain_network": (str, type(None)), "pretrain_network_g": (str, type(None)),
             "strict_load": bool, "strict_load_g": bool, "param_key": (str, type(None)), "param_key_g": (str, type(None)),
             "resume_state": (str, type(None)), "root": (str, type(None))},
    "dist_params": {"backend": str, "port": NUMBER},
}
REQUIRED_TRAIN = ("name", "model_type", "datasets", "network", "train")
CHOICES = {"train.amp": ("none", "bf16", "fp16"), "val.amp": ("none", "bf16", "fp16"),
           "train.nonfinite_loss": ("stop", "skip", "ignore")}
DATASET_PATH_KEYS = ("dataroot", "dataroot_target", "meta_info_file")


def _did_you_mean(key, candidates, prefix=""):
    close = difflib.get_close_matches(key, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(f'`{prefix}{c}`' for c in close)}?)" if close else ""


def _check_section(opt, section, errors):
    node = opt if section == "" else opt.get(section)
    if not isinstance(node, dict):
        return
    schema = SCHEMA[section]
    prefix = f"{section}." if section else ""
    for key, value in node.items():
        if key not in schema:
            errors.append(f"unknown option `{prefix}{key}`{_did_you_mean(key, schema, prefix)}")
        elif value is not None and not isinstance(value, schema[key]) or isinstance(value, bool) and schema[key] is NUMBER:
            expected = schema[key] if isinstance(schema[key], type) else tuple(schema[key])
            names = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
            errors.append(f"option `{prefix}{key}` must be {names}, got {type(value).__name__} {value!r}")
        elif f"{prefix}{key}" in CHOICES and value not in CHOICES[f"{prefix}{key}"]:
            errors.append(f"option `{prefix}{key}` must be one of {CHOICES[f'{prefix}{key}']}, got {value!r}")


def _check_name(kind, name, option, errors):
    if not isinstance(name, str):
        errors.append(f"option `{option}` must name a registered {kind}, got {name!r}")
    elif not is_registered(kind, name):
        hint = _did_you_mean(name, registered_names(kind))
        errors.append(f"option `{option}`: no {kind} named `{name}` is registered{hint}")


def validate_options(opt: dict, is_train: bool = True, source: str = "<options>", check_data_paths: bool = True) -> None:
    """Raise OptionError listing every problem in `opt` (loaded from `source`).

    check_data_paths=False skips the dataset folders/files (inference reads no dataset).
    """
    errors = []
    try:
        load_plugins(opt.get("plugins"), source)
    except (ImportError, FileNotFoundError, SyntaxError) as err:
        errors.append(f"option `plugins`: {err}")
    for key in REQUIRED_TRAIN if is_train else ("name", "datasets", "network"):
        if key not in opt:
            errors.append(f"missing required option `{key}`")
    for section in SCHEMA:
        _check_section(opt, section, errors)

    if isinstance(opt.get("model_type"), str) and opt["model_type"] not in ("DistIQAModel", "GeneralIQAModel"):
        _check_name("model", opt["model_type"], "model_type", errors)
    if isinstance(opt.get("network"), dict):
        _check_name("arch", opt["network"].get("type"), "network.type", errors)

    for phase, ds in (opt.get("datasets") or {}).items():
        where = f"datasets.{phase}"
        if not isinstance(ds, dict):
            errors.append(f"option `{where}` must be a mapping")
            continue
        _check_name("dataset", ds.get("type"), f"{where}.type", errors)
        bs = ds.get("batch_size_per_gpu", 1)
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            errors.append(f"option `{where}.batch_size_per_gpu` must be a positive int, got {bs!r}")
        if ds.get("build_demo_if_missing") or not check_data_paths:
            continue
        for key in DATASET_PATH_KEYS:
            value = ds.get(key)
            if isinstance(value, str) and not osp.exists(value):
                errors.append(f"option `{where}.{key}`: path does not exist: {value}")
    if is_train and isinstance(opt.get("datasets"), dict) and "train" not in opt["datasets"]:
        errors.append("missing required option `datasets.train`")

    train = opt.get("train") if isinstance(opt.get("train"), dict) else {}
    if is_train and train:
        if train.get("total_iter") is None and train.get("total_epoch") is None:
            errors.append("option `train.total_iter` (or `train.total_epoch`) is required")
        optim = train.get("optim")
        if not isinstance(optim, dict) or "type" not in optim:
            errors.append("option `train.optim.type` is required (a torch.optim class, e.g. AdamW)")
        else:
            import torch

            if not hasattr(torch.optim, str(optim["type"])):
                errors.append(f"option `train.optim.type`: torch.optim has no `{optim['type']}`"
                              f"{_did_you_mean(str(optim['type']), [n for n in dir(torch.optim) if n[0].isupper()])}")
        loss = train.get("mos_loss_opt")
        if not isinstance(loss, dict):
            errors.append("option `train.mos_loss_opt` is required (e.g. {type: ScoreDistEMDLoss, r: 2})")
        else:
            _check_name("loss", loss.get("type"), "train.mos_loss_opt.type", errors)
    for name, metric in ((opt.get("val") or {}).get("metrics") or {}).items():
        _check_name("metric", (metric or {}).get("type"), f"val.metrics.{name}.type", errors)

    for key in ("pretrain_network", "pretrain_network_g", "resume_state"):
        value = (opt.get("path") or {}).get(key)
        if isinstance(value, str) and not osp.exists(osp.expanduser(value)):
            errors.append(f"option `path.{key}`: file does not exist: {value}")
    if errors:
        raise OptionError(f"{source}: {len(errors)} problem(s) in the options:\n  - " + "\n  - ".join(errors))
