"""What a model costs, read beside its accuracy: MACs per sample of the trainable part, training throughput.

The one MAC counter of iaa_bench (`MacCounter`): the leaderboard's cost column and
`model_stats.py`'s STATS line both count with it. Its convention is thop's
(`thop/profile.py`, `thop/vision/basic_hooks.py`), the one the third-party figure of the
authors' code (6.19 G) was measured in, counted per module call with forward hooks:
- nn.Linear: in_features x output elements (in x out per token); bias free;
- convolutions: output elements x in_channels / groups x kernel size; bias free;
- batch / instance / layer norms: 2 per input element, 4 when affine;
- average pools: 1 per output element; adaptive average pools: (window + 1) per output element;
- everything else (activations, softmax, max pools, dropout, embedding lookups) 0.
thop matches exact module classes; here subclasses count too (timm's `BatchNormAct2d`,
`Conv2dSame`). What thop leaves out is counted apart as `attention`: the matmuls outside those
modules, i.e. `F.scaled_dot_product_attention` (QK^T and AV, B x heads x Lq x Lk x (E + Ev),
dense: masked keys included) and tensor-tensor `matmul` / `bmm` calls.
"""
import json
import math
from os import path as osp

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from iaa_bench.archs.frozen_encoders import frozen_submodules
from iaa_bench.models.checkpoint import bare
from iaa_bench.training.train_log import last_logged_samples_per_s

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm)
_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_AVG_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_COUNTED = (nn.Linear, nn.modules.conv._ConvNd, *_NORMS, *_AVG_POOLS, *_ADAPTIVE_AVG_POOLS)
_MATMULS = {torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm}


def thop_macs(module: nn.Module, inputs, output) -> int:
    """MACs of one call of `module` (one of `_COUNTED`) in thop's convention."""
    if isinstance(module, nn.Linear):
        return module.in_features * output.numel()
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, _NORMS):
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        return inputs[0].numel() * (4 if affine else 2)
    if isinstance(module, _AVG_POOLS):
        return output.numel()
    window = math.prod(i / o for i, o in zip(inputs[0].shape[2:], output.shape[2:]))  # adaptive average pool
    return int((window + 1) * output.numel())


def attention_macs(func, args, kwargs, output) -> int:
    """MACs of a matmul thop leaves out: scaled_dot_product_attention or a tensor-tensor matmul / bmm."""
    if func is F.scaled_dot_product_attention:
        query, key, value = (kwargs[n] if n in kwargs else args[i] for i, n in enumerate(("query", "key", "value")))
        return query.shape[:-1].numel() * key.shape[-2] * (query.shape[-1] + value.shape[-1])
    if func in _MATMULS and output.dim() >= 2:
        return output.numel() * args[0].shape[-1]
    return 0


class MacCounter(TorchFunctionMode):
    """Count the MACs of the forward calls made inside `with MacCounter(net, skip) as macs:`.

    `macs.thop` (thop's convention, see the module docstring) and `macs.attention` (the matmuls
    thop leaves out), both leaving out whatever runs inside the `skip` submodules (frozen
    encoders). Works under no_grad and with modules on the meta device.
    """

    def __init__(self, net: nn.Module, skip=()):
        super().__init__()
        self.net, self.skip = net, list(skip)
        self.thop = self.attention = 0
        self._skipping = 0
        self._handles = []

    def __enter__(self):
        skipped = {m for s in self.skip for m in s.modules()}
        for module in self.net.modules():
            if isinstance(module, _COUNTED) and module not in skipped:
                self._handles.append(module.register_forward_hook(self._count_module))
        for module in skipped:  # every submodule: a skipped encoder may be entered through a method, not forward
            self._handles.append(module.register_forward_pre_hook(self._enter_skipped))
            self._handles.append(module.register_forward_hook(self._leave_skipped))
        return super().__enter__()

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return super().__exit__(*exc)

    def _count_module(self, module, inputs, output):
        self.thop += thop_macs(module, inputs, output)

    def _enter_skipped(self, module, inputs):
        self._skipping += 1

    def _leave_skipped(self, module, inputs, output):
        self._skipping -= 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if not self._skipping:
            self.attention += attention_macs(func, args, kwargs, output)
        return output

    @property
    def total(self) -> int:
        return self.thop + self.attention


def trainable_macs_per_sample(model, loader, samples: int = 4) -> float:
    """MACs per sample of everything but the frozen encoders, on the loader's first `samples` samples.

    The model's own test forward on real samples, counted by `MacCounter` (thop's convention plus
    the attention matmuls) without what runs inside its frozen-encoder submodules: the cost a
    cached-feature step pays, for any arch.
    """
    batch = next(iter(loader))
    n = min(samples, len(batch["mos_label"]))
    model.feed_data({k: v[:n] for k, v in batch.items()})
    net = bare(model.net)
    with MacCounter(net, skip=frozen_submodules(net).values()) as macs:
        model.test()
    return macs.total / n


def train_samples_per_s(experiments_root: str) -> float:
    """Training throughput the finished run recorded in its final_metrics.json (NaN if unfinished).

    A run resumed with nothing left to train records none there; its log then gives the last
    throughput logged while it trained (log lines of either shape, see `training.train_log`).
    """
    try:
        with open(osp.join(experiments_root, "final_metrics.json"), encoding="utf-8") as f:
            rate = json.load(f).get("train_samples_per_s")
    except FileNotFoundError:
        return math.nan
    if rate is None:
        rate = last_logged_samples_per_s(experiments_root)
    return math.nan if rate is None else float(rate)
