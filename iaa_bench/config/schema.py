"""Check an option file before any work starts.

Unknown keys (with a "did you mean"), wrong types, missing required keys, counts that are
not positive whole numbers, names that no registry knows (with the closest registered
names, answered without importing all of pyiqa), keys that the network, optimiser or
scheduler constructor does not take (checked against its signature), pyiqa options that
iaa_bench does not implement, and paths that do not exist: every problem is reported at
once, each naming its option path and the file, and no experiment folder is created.
"""
import difflib
import inspect
import logging
import math
from os import path as osp

from iaa_bench.data.feature_cache import option_problems as feature_cache_problems
from iaa_bench.evaluation.metrics import DEFAULT_VAL_METRICS
from iaa_bench.utils.errors import DependencyError, OptionError
from iaa_bench.utils.pyiqa_adapter import (
    ARCH_REGISTRY,
    LOGGER_NAME,
    is_registered,
    registered_names,
    scheduler_class,
    scheduler_names,
)
from iaa_bench.utils.registration import load_plugins

log = logging.getLogger(LOGGER_NAME)

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
DATASET_CHOICES = {"split": ("train", "val", "test"), "bad_image": ("fail", "skip")}
DATASET_PATH_KEYS = ("dataroot", "dataroot_target", "meta_info_file")
# Whole-number options and their least value (pyiqa writes large ones as `!!float 5e3`).
COUNTS = {"train.total_iter": 1, "train.total_epoch": 1, "train.warmup_iter": -1, "val.val_freq": 1,
          "logger.print_freq": 1, "logger.save_checkpoint_freq": 1, "logger.save_latest_freq": 1,
          "logger.keep_states": 0, "manual_seed": 0}
# pyiqa options iaa_bench accepts only in their do-nothing form: (allowed value, why not more).
NOT_IMPLEMENTED = {
    "val.save_img": (False, "iaa_bench saves no images: aesthetics models output scores"),
    "logger.wandb": (None, "wandb logging is not implemented; TensorBoard (`logger.use_tb_logger`) logs "
                           "the same scalars"),
    "train.metric_loss_opt": (None, "IAAModel trains with `train.mos_loss_opt` only"),
    "scale": (1, "a super-resolution scale; IQA/IAA models have none"),
}
# ---- pyiqa-only options: keys of pyiqa's own option files that iaa_bench does not use, accepted with
# one warning each (so pyiqa's files run), by section ("" = top level, "datasets.*" = every dataset).
_FINETUNE = "DBCNN's two-stage fine-tuning; IAAModel trains with one optimiser and scheduler throughout"
_PREFETCH = "pyiqa's prefetcher; the DataLoader prefetches (num_worker_per_gpu, pin_memory, persistent_workers)"
PYIQA_ONLY = {
    "": {"define": "a holder of YAML anchors, already expanded when the file was read",
         "split_num": "pyiqa's train_nsplits.py option; iaa_bench trains one split per run",
         "save_final_results_path": "pyiqa's train_nsplits.py option; final metrics go to "
                                    "experiments/<name>/final_metrics.json"},
    "logger": {"log_imgs_freq": "iaa_bench logs no images"},
    "train": {"finetune_start_iter": _FINETUNE, "optim_finetune": _FINETUNE, "scheduler_finetune": _FINETUNE,
              "use_ref": "full-reference training; aesthetics models are no-reference"},
    "datasets.*": {"dataset_enlarge_ratio": "each epoch is one pass over the split; set train.total_iter",
                   "prefetch_mode": _PREFETCH, "num_prefetch_queue": _PREFETCH},
}


# pyiqa's former names of options iaa_bench reads: (section, old key, current key, where the old name comes from).
# pyiqa's GeneralIQAModel read its score-regression loss from `train.regress_opt` until it became `mos_loss_opt`
# (pyiqa commit 19beaae, Dec 2021, pyiqa/models/general_iqa_model.py); its train_general_iqa.yml still says
# `regress_opt`, which pyiqa 0.1.16 ignores, so that file trains with no loss there.
PYIQA_RENAMED = [("train", "regress_opt", "mos_loss_opt", "pyiqa's GeneralIQAModel before 2022")]


def _adopt_renamed_options(opt, errors):
    """Read pyiqa's former option names under their current ones (one warning each); both at once is refused."""
    for section, old, new, origin in PYIQA_RENAMED:
        node = opt.get(section)
        if not isinstance(node, dict) or old not in node:
            continue
        if node.get(new) is not None:
            errors.append(f"options `{section}.{old}` and `{section}.{new}` conflict: `{old}` is the former name of "
                          f"`{new}` ({origin}); give one")
            continue
        node[new] = node.pop(old)
        log.warning(f"option `{section}.{old}` is the former name of `{section}.{new}` "
                                               f"({origin}): read as `{section}.{new}`")


def pyiqa_only_options(opt: dict) -> list:
    """(option path, why unused) of every pyiqa-only key present in `opt`."""
    found = []
    for section, keys in PYIQA_ONLY.items():
        if section == "datasets.*":
            nodes = {f"datasets.{p}": d for p, d in (opt.get("datasets") or {}).items() if isinstance(d, dict)}
        else:
            nodes = {section: opt if section == "" else opt.get(section)}
        for where, node in nodes.items():
            found += [(f"{where}.{k}" if where else k, why) for k, why in keys.items() if isinstance(node, dict)
                      and k in node]
    return found


def _check_pyiqa_only(opt, errors):
    """Warn once per pyiqa-only key; refuse the values that would change what a run means."""
    for option, why in pyiqa_only_options(opt):
        log.warning(f"option `{option}` is pyiqa's and not used here: {why}")
    model_type = opt.get("model_type")
    if isinstance(model_type, str) and is_registered("model", model_type):
        from iaa_bench.models.iaa_model import FIXED_PYIQA_MODEL_TYPES
        from iaa_bench.utils.pyiqa_adapter import MODEL_REGISTRY

        if model_type not in FIXED_PYIQA_MODEL_TYPES and MODEL_REGISTRY.get(model_type).__module__.startswith("pyiqa."):
            errors.append(f"option `model_type: {model_type}`: pyiqa's {model_type} is not supported (its own "
                          f"training steps and checkpoints are not iaa_bench's); use IAAModel, or DistIQAModel / "
                          f"GeneralIQAModel, which run on it")
    if (opt.get("train") or {}).get("use_ref"):
        errors.append("option `train.use_ref: true`: full-reference training is not supported; IAAModel is no-reference")


# Width / head-count pairs of attention archs (timm's embed_dim, MMLQ's dim): width % heads must be 0.
ATTENTION_WIDTHS = ("dim", "embed_dim", "d_model", "hidden_dim")


def _did_you_mean(key, candidates, prefix=""):
    by_lower = {str(c).lower(): c for c in candidates}  # `Adamw` -> `AdamW` first
    close = [by_lower[c] for c in difflib.get_close_matches(str(key).lower(), list(by_lower), n=3, cutoff=0.6)]
    return f" (did you mean {' or '.join(f'`{prefix}{c}`' for c in close)}?)" if close else ""


def _check_section(opt, section, errors):
    node = opt if section == "" else opt.get(section)
    if not isinstance(node, dict):
        return
    schema = SCHEMA[section]
    prefix = f"{section}." if section else ""
    for key, value in node.items():
        if key in PYIQA_ONLY.get(section, ()):
            continue  # see _check_pyiqa_only
        if key not in schema:
            errors.append(f"unknown option `{prefix}{key}`{_did_you_mean(key, schema, prefix)}")
        elif value is not None and not isinstance(value, schema[key]) or isinstance(value, bool) and schema[key] is NUMBER:
            expected = schema[key] if isinstance(schema[key], type) else tuple(schema[key])
            names = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
            errors.append(f"option `{prefix}{key}` must be {names}, got {type(value).__name__} {value!r}")
        elif f"{prefix}{key}" in CHOICES and value not in CHOICES[f"{prefix}{key}"]:
            errors.append(f"option `{prefix}{key}` must be one of {CHOICES[f'{prefix}{key}']}, got {value!r}")


def _check_name(kind, name, option, errors) -> bool:
    """Whether `name` is a registered `kind`; if not, the reason is appended to `errors`."""
    if not isinstance(name, str):
        errors.append(f"option `{option}` must name a registered {kind}, got {name!r}")
        return False
    try:
        registered = is_registered(kind, name)
    except DependencyError as err:
        errors.append(f"option `{option}: {name}`: {err} (install what it names, or choose another {kind})")
        return False
    if not registered:
        hint = _did_you_mean(name, registered_names(kind))
        errors.append(f"option `{option}`: no {kind} named `{name}` is registered{hint}")
    return registered


def _get(opt, dotted):
    """(found, value) of a dotted option path such as `train.total_iter`."""
    node = opt
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _check_values(opt, errors):
    """Counts are whole numbers (not nan, inf or 0.5) above their least value; num_gpu and name are usable."""
    for option, least in COUNTS.items():
        found, value = _get(opt, option)
        if not found or value is None:
            continue
        whole = isinstance(value, int) or isinstance(value, float) and math.isfinite(value) and value.is_integer()
        if isinstance(value, bool) or not whole or value < least:
            errors.append(f"option `{option}` must be a whole number >= {least}, got {value!r}")
    num_gpu = opt.get("num_gpu", 0)
    if num_gpu != "auto" and (not isinstance(num_gpu, int) or isinstance(num_gpu, bool) or num_gpu < 0):
        errors.append(f"option `num_gpu` must be `auto` or a whole number >= 0, got {num_gpu!r}")
    name = opt.get("name")
    if "name" in opt and (not isinstance(name, str) or not name):
        errors.append(f"option `name` must be a non-empty string, got {name!r}")
    elif isinstance(name, str) and (name in (".", "..") or any(c in name for c in "/\\\0")):
        errors.append(f"option `name` must be a single folder name (no `/`, not `.` or `..`): it names "
                      f"experiments/<name>, got {name!r}")


def _check_not_implemented(opt, errors):
    for option, (allowed, why) in NOT_IMPLEMENTED.items():
        found, value = _get(opt, option)
        unset = value is None or isinstance(value, dict) and not any(value.values())  # pyiqa's `{project: ~}`
        if found and not unset and value != allowed:
            errors.append(f"option `{option}: {value!r}`: {why}; remove it")


def _check_call_options(where, func, options, errors, skip=(), first=1):
    """Keys of `options` against `func`'s signature: unknown names (did you mean) and values of the wrong type.

    A parameter's type is its annotation, else its default's type; `first` parameters
    (self, params, optimizer) are filled by iaa_bench. Functions taking **kwargs accept any key.
    """
    try:
        params = list(inspect.signature(func).parameters.values())[first:]
    except (TypeError, ValueError):  # builtins without a signature
        return
    named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    for key, value in options.items():
        if key == "type" or key.startswith(skip):
            continue
        param = named.get(key)
        if param is None:
            if not takes_any:
                errors.append(f"option `{where}.{key}`: not a parameter of {func.__qualname__.split('.')[0]}"
                              f"{_did_you_mean(key, named, where + '.')}")
            continue
        # An annotated int must be whole (`depth: 1.5`); a type known only from the default is looser:
        # any number for a numeric default, and None (pyiqa's "none of it", e.g. `pretrained: ~`).
        annotated = param.annotation in (int, float, str, bool, dict, list)
        expected = param.annotation if annotated else (
            float if type(param.default) in (int, float) else
            type(param.default) if isinstance(param.default, (str, bool, dict, list)) else None)
        if expected is None or value is None and (param.default is None or not annotated):
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        # an unannotated numeric default may be a size that also takes [h, w] (pyiqa's CFANet crop_size: 256)
        numbers = isinstance(value, list) and bool(value) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ok = (number or numbers and not annotated if expected is float else
              number and isinstance(value, int) if expected is int else isinstance(value, expected))
        if not ok:
            kind = "a number" if expected is float else expected.__name__
            errors.append(f"option `{where}.{key}` must be {kind}, got {type(value).__name__} {value!r}")


def _check_network(network, errors):
    arch = ARCH_REGISTRY.get(network["type"])
    _check_call_options("network", arch.__init__, network, errors)
    heads = network.get("num_heads", _default(arch.__init__, "num_heads"))
    for width_key in ATTENTION_WIDTHS:
        width = network.get(width_key, _default(arch.__init__, width_key))
        if isinstance(width, int) and isinstance(heads, int) and heads > 0 and width % heads:
            errors.append(f"option `network.{width_key}` ({width}) must be divisible by `network.num_heads` ({heads})")


def _default(func, name):
    param = inspect.signature(func).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def _check_optimisation(train, errors):
    import torch

    optim = train.get("optim")
    if not isinstance(optim, dict) or "type" not in optim:
        errors.append("option `train.optim.type` is required (a torch.optim class, e.g. AdamW)")
    elif not hasattr(torch.optim, str(optim["type"])):
        errors.append(f"option `train.optim.type`: torch.optim has no `{optim['type']}`"
                      f"{_did_you_mean(str(optim['type']), [n for n in dir(torch.optim) if n[0].isupper()])}")
    else:  # lr_<module> / weight_decay_<module>: pyiqa-style per-module groups
        _check_call_options("train.optim", getattr(torch.optim, optim["type"]).__init__, optim, errors,
                            skip=("lr_", "weight_decay_"), first=2)
    scheduler = train.get("scheduler")
    if isinstance(scheduler, dict):
        cls = scheduler_class(str(scheduler.get("type")))
        if cls is None:
            errors.append(f"option `train.scheduler.type`: no scheduler `{scheduler.get('type')}`"
                          f"{_did_you_mean(str(scheduler.get('type')), scheduler_names())}")
        else:
            _check_call_options("train.scheduler", cls.__init__, {k: v for k, v in scheduler.items() if k != "unit"},
                                errors, first=2)
        if scheduler.get("unit", "iter") not in ("iter", "epoch"):
            errors.append(f"option `train.scheduler.unit` must be `iter` or `epoch`, got {scheduler['unit']!r}")


def validate_options(opt: dict, is_train: bool = True, source: str = "<options>", check_data_paths: bool = True) -> None:
    """Raise OptionError listing every problem in `opt` (loaded from `source`).

    check_data_paths=False skips the dataset folders/files (inference reads no dataset).
    """
    errors = []
    try:
        load_plugins(opt.get("plugins"), source)
    except (ImportError, FileNotFoundError, SyntaxError) as err:
        errors.append(f"option `plugins`: {err}")
    _adopt_renamed_options(opt, errors)
    for key in REQUIRED_TRAIN if is_train else ("name", "datasets", "network"):
        if key not in opt:
            errors.append(f"missing required option `{key}`")
    for section in SCHEMA:
        _check_section(opt, section, errors)

    errors += feature_cache_problems(opt)
    if isinstance(opt.get("model_type"), str) and opt["model_type"] not in ("DistIQAModel", "GeneralIQAModel"):
        _check_name("model", opt["model_type"], "model_type", errors)
    if isinstance(opt.get("network"), dict) and _check_name("arch", opt["network"].get("type"), "network.type", errors):
        _check_network(opt["network"], errors)
    _check_values(opt, errors)
    _check_not_implemented(opt, errors)
    _check_pyiqa_only(opt, errors)

    for phase, ds in (opt.get("datasets") or {}).items():
        where = f"datasets.{phase}"
        if not isinstance(ds, dict):
            errors.append(f"option `{where}` must be a mapping")
            continue
        _check_name("dataset", ds.get("type"), f"{where}.type", errors)
        bs = ds.get("batch_size_per_gpu", 1)
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            errors.append(f"option `{where}.batch_size_per_gpu` must be a positive int, got {bs!r}")
        for key, choices in DATASET_CHOICES.items():
            if key in ds and ds[key] not in choices:
                errors.append(f"option `{where}.{key}` must be one of {choices}, got {ds[key]!r}"
                              f"{_did_you_mean(str(ds[key]), choices)}")
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
        elif train.get("total_iter") is not None and train.get("total_epoch") is not None:
            errors.append(f"options `train.total_iter: {train['total_iter']}` and `train.total_epoch: "
                          f"{train['total_epoch']}` conflict: give one (set the other to ~)")
        _check_optimisation(train, errors)
        loss = train.get("mos_loss_opt")
        if not isinstance(loss, dict):
            errors.append("option `train.mos_loss_opt` is required (e.g. {type: ScoreDistEMDLoss, r: 2})")
        else:
            _check_name("loss", loss.get("type"), "train.mos_loss_opt.type", errors)
    val = opt.get("val") if isinstance(opt.get("val"), dict) else {}
    metrics = val.get("metrics") if isinstance(val.get("metrics"), dict) else DEFAULT_VAL_METRICS
    for name, metric in (val.get("metrics") or {}).items():
        _check_name("metric", (metric or {}).get("type"), f"val.metrics.{name}.type", errors)
    key_metric = val.get("key_metric")
    if isinstance(key_metric, str) and key_metric not in metrics:
        errors.append(f"option `val.key_metric`: `{key_metric}` is not one of val.metrics {list(metrics)}"
                      f"{_did_you_mean(key_metric, metrics)}")

    for key in ("pretrain_network", "pretrain_network_g", "resume_state"):
        value = (opt.get("path") or {}).get(key)
        if isinstance(value, str) and not osp.exists(osp.expanduser(value)):
            errors.append(f"option `path.{key}`: file does not exist: {value}")
    if errors:
        raise OptionError(f"{source}: {len(errors)} problem(s) in the options:\n  - " + "\n  - ".join(errors))
