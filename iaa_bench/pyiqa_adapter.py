"""The one module that touches pyiqa's internals.

Everything else in iaa_bench imports pyiqa through the names below, so a pyiqa upgrade
(tested: 0.1.16) is a one-file change. Where pyiqa is wrong (see README "pyiqa defects
fixed"), the fix lives in iaa_bench's own engine/model, built on these names.
"""
from pyiqa.archs import build_network
from pyiqa.archs.arch_util import dist_to_mos
from pyiqa.data import build_dataset
from pyiqa.data.base_iqa_dataset import BaseIQADataset
from pyiqa.data.transforms import transform_mapping
from pyiqa.losses import build_loss
from pyiqa.losses.iqa_losses import emd_loss as pyiqa_emd_loss
from pyiqa.metrics import calculate_metric
from pyiqa.models import build_model
from pyiqa.models.base_model import BaseModel
from pyiqa.utils.logger import get_env_info, get_root_logger, init_tb_logger
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
    "BaseIQADataset", "BaseModel", "build_dataset", "build_loss", "build_model", "build_network",
    "calculate_metric", "dist_to_mos", "get_env_info", "get_root_logger", "init_tb_logger",
    "pyiqa_emd_loss", "transform_mapping", "LOGGER_NAME", "PYIQA_TESTED_VERSION",
]
