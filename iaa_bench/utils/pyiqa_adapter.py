"""The one module that touches pyiqa's internals.

Everything else in iaa_bench imports pyiqa through the names below, so a pyiqa upgrade
(tested: 0.1.16) is a one-file change. Where pyiqa is wrong (see README "pyiqa defects
fixed"), the fix lives in iaa_bench's own engine/model, built on these names.
"""
import contextlib

from pyiqa import list_models as pyiqa_metric_names
from pyiqa.api_helpers import create_metric
from pyiqa.archs import build_network
from pyiqa.archs.arch_util import dist_to_mos
from pyiqa.data import build_dataset as pyiqa_build_dataset
from pyiqa.data.base_iqa_dataset import BaseIQADataset
from pyiqa.data.transforms import transform_mapping
from pyiqa.default_model_configs import DEFAULT_CONFIGS
from pyiqa.losses import build_loss
from pyiqa.losses.iqa_losses import emd_loss as pyiqa_emd_loss
from pyiqa.metrics import calculate_metric
from pyiqa.models import build_model
from pyiqa.models import lr_scheduler as pyiqa_lr_scheduler
from pyiqa.models.base_model import BaseModel
from pyiqa.models.general_iqa_model import GeneralIQAModel
from pyiqa.pyiqa_cmd import main as pyiqa_cmd_main
from pyiqa.utils.logger import (
    AvgTimer,
    MessageLogger,
    get_env_info,
    get_root_logger,
    init_tb_logger,
)
from pyiqa.utils.registry import (
    ARCH_REGISTRY,
    DATASET_REGISTRY,
    LOSS_REGISTRY,
    METRIC_REGISTRY,
    MODEL_REGISTRY,
)

PYIQA_TESTED_VERSION = "0.1.16"
LOGGER_NAME = "pyiqa"  # pyiqa's own components log to this logger; ours join it

__all__ = [
    "ARCH_REGISTRY", "DATASET_REGISTRY", "LOSS_REGISTRY", "METRIC_REGISTRY", "MODEL_REGISTRY",
    "AvgTimer", "BaseIQADataset", "BaseModel", "MessageLogger", "build_dataset", "build_loss", "build_model",
    "build_network", "log_validation_metric_values",
    "calculate_metric", "create_metric", "dist_to_mos", "get_env_info", "get_root_logger", "init_tb_logger",
    "pyiqa_cmd_main", "pyiqa_emd_loss", "pyiqa_metric_names", "transform_mapping", "LOGGER_NAME",
    "PYIQA_TESTED_VERSION", "is_registered", "metric_option_names", "pyiqa_ava_module", "pyiqa_ava_images_read_by",
    "registered_names", "register_metric_config", "scheduler_class",
    "scheduler_names",
]

def pyiqa_ava_module():
    """pyiqa's `pyiqa.data.ava_dataset`, imported on first use: importing it sets PIL's
    LOAD_TRUNCATED_IMAGES process-wide, which `import iaa_bench` must not do."""
    import importlib

    return importlib.import_module("pyiqa.data.ava_dataset")


@contextlib.contextmanager
def pyiqa_ava_images_read_by(loader):
    """Within the block, pyiqa's `AVADataset.__getitem__` opens its image with `loader(path)` (an RGB PIL image).

    pyiqa reads `Image.open(path).convert('RGB')`, its module's only use of PIL's `Image`;
    that name is swapped for the block and restored after (DataLoader workers are processes:
    one block at a time per process).
    """
    from types import SimpleNamespace

    module = pyiqa_ava_module()
    pil_image = module.Image
    module.Image = SimpleNamespace(open=loader)  # `.convert('RGB')` of the loader's RGB image is a copy
    try:
        yield
    finally:
        module.Image = pil_image


def build_dataset(dataset_opt: dict):
    """pyiqa's `build_dataset`, except that `type: AVADataset` builds iaa_bench's subclass of pyiqa's
    AVADataset, whose images go through iaa_bench's one loader (`iaa_bench/data/pyiqa_ava.py`)."""
    if dataset_opt.get("type") != "AVADataset":
        return pyiqa_build_dataset(dataset_opt)
    import copy

    from iaa_bench.data.pyiqa_ava import AVADataset

    dataset = AVADataset(copy.deepcopy(dataset_opt))
    get_root_logger().info(f"Dataset [AVADataset, images read by iaa_bench's loader] - {dataset_opt['name']} is built.")
    return dataset


# pyiqa's validation log block (`Validation <dataset>`, then per metric `\t # <metric>: <value>\tBest: <value> @ <iter>
# iter`) and its TensorBoard scalars `val_metrics/<dataset>/<metric>`: a plain function of any model that has
# pyiqa's `metric_results` and `best_metric_results[dataset][metric]['val' | 'iter']`.
log_validation_metric_values = GeneralIQAModel._log_validation_metric_values

# pyiqa imports its archs, datasets and models lazily; when its guess of the module name
# fails it imports every module of the package (seconds, and a wrong name still fails).
# `is_registered` imports only the module that defines the name, found by a text search,
# so a typo is answered at once.
_LAZY_MODULES = {
    "arch": (ARCH_REGISTRY, "pyiqa.archs", "_arch"),
    "dataset": (DATASET_REGISTRY, "pyiqa.data", "_dataset"),
    "model": (MODEL_REGISTRY, "pyiqa.models", "_model"),
    "loss": (LOSS_REGISTRY, None, None),
    "metric": (METRIC_REGISTRY, None, None),
}


def is_registered(kind: str, name: str) -> bool:
    """Whether `name` is in pyiqa's `kind` registry, importing only the module defining it.

    Raises DependencyError when that module exists but cannot be imported in this environment.
    """
    import importlib
    import re
    from pathlib import Path

    from iaa_bench.utils.errors import DependencyError

    registry, package, suffix = _LAZY_MODULES[kind]
    if name in registry or package is None:
        return name in registry
    folder = Path(importlib.import_module(package).__file__).parent
    defines = re.compile(rf"^(class|def) {re.escape(name)}\b", re.M)
    for file in sorted(folder.glob(f"*{suffix}.py")):
        if defines.search(file.read_text(encoding="utf-8", errors="replace")):
            try:
                importlib.import_module(f"{package}.{file.stem}")
            except ImportError as err:  # e.g. LAIONAes: OpenAI's `clip` package needs setuptools' pkg_resources
                raise DependencyError(f"{package}.{file.stem}, which defines {name}, cannot be imported here: "
                                      f"{type(err).__name__}: {err}") from err
            if name in registry:
                return True
    return False


def registered_names(kind: str) -> list[str]:
    """Names registered so far (pyiqa's lazily imported ones appear once imported)."""
    return sorted(_LAZY_MODULES[kind][0].keys())


def register_metric_config(name: str, metric_opts: dict, score_range: str, metric_mode: str = "NR") -> None:
    """Make `name` known to `pyiqa.create_metric` and `pyiqa.list_models`.

    pyiqa 0.1.16 has no metric registry: both read the plain dict `DEFAULT_CONFIGS`, and
    `create_metric` builds `metric_opts` (plus the caller's keyword arguments) with
    `build_network`. An entry added here is the whole registration.
    """
    DEFAULT_CONFIGS[name] = {"metric_opts": dict(metric_opts), "metric_mode": metric_mode, "score_range": score_range}


def metric_option_names(metric_name: str, call: bool = False) -> set[str] | None:
    """The keyword arguments `create_metric(metric_name, **kwargs)` accepts (its arch's constructor
    options plus pyiqa's InferenceModel's own: `seed`, `check_input_range`, ...), or with `call`
    those of scoring, `metric(img, **kwargs)` (the arch's forward after the image: Q-Align's
    `task_`). None when that cannot be told without running the metric: an arch taking
    **kwargs, or one whose module does not import (a missing optional dependency, reported
    when the metric is built)."""
    import inspect

    from pyiqa.models.inference_model import InferenceModel

    arch = DEFAULT_CONFIGS[metric_name]["metric_opts"]["type"]
    try:
        if not is_registered("arch", arch):
            return None
    except Exception:  # noqa: BLE001 - whatever the arch module raises on import; building it reports it
        return None
    cls = ARCH_REGISTRY.get(arch)
    params = list(inspect.signature(cls.forward if call else cls.__init__).parameters.values())[1:]  # no self
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    if call:
        return {p.name for p in params[1:]}  # after the image
    extra = list(inspect.signature(InferenceModel.__init__).parameters.values())
    return {p.name for p in params + extra if p.kind is not inspect.Parameter.VAR_KEYWORD} - {
        "self", "metric_name", "as_loss", "device"}


# pyiqa's BaseModel.setup_schedulers: its own restart schedulers (MultiStepLR means its
# MultiStepRestartLR), else any class of torch.optim.lr_scheduler.
_PYIQA_SCHEDULERS = {"MultiStepLR": pyiqa_lr_scheduler.MultiStepRestartLR,
                     "MultiStepRestartLR": pyiqa_lr_scheduler.MultiStepRestartLR,
                     "CosineAnnealingRestartLR": pyiqa_lr_scheduler.CosineAnnealingRestartLR}


def scheduler_class(name: str):
    """The class pyiqa builds for `train.scheduler.type: name`, or None."""
    import torch

    base = torch.optim.lr_scheduler.LRScheduler
    cls = _PYIQA_SCHEDULERS.get(name) or getattr(torch.optim.lr_scheduler, name, None)
    concrete = isinstance(cls, type) and issubclass(cls, base) and cls is not base and not name.startswith("_")
    return cls if concrete else None


def scheduler_names() -> list[str]:
    import torch

    return sorted({*_PYIQA_SCHEDULERS, *(n for n in dir(torch.optim.lr_scheduler) if scheduler_class(n))})
