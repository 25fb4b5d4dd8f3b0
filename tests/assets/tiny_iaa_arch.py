"""A tiny aesthetics arch registered from outside the package (loaded via `plugins:`)."""
import time

import torch
from torch import nn

from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, dist_to_mos


@ARCH_REGISTRY.register()
class TinyIAANet(nn.Module):
    outputs_dist = True  # iaa_bench's architecture contract: forward returns [mos, dist] on request

    def __init__(self, width: int = 8, num_bins: int = 10, delay: float = 0.0, nan_at_step: int = 0):
        """Fault injection for tests: `delay` seconds of sleep per training forward (so a run
        can be interrupted mid-way); `nan_at_step` > 0 makes that training forward return NaN."""
        super().__init__()
        self.delay, self.nan_at_step, self.steps = delay, nan_at_step, 0
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_bins)

    def forward(self, x, return_mos=True, return_dist=False):
        if self.training:
            self.steps += 1
            time.sleep(self.delay)
        dist = torch.softmax(self.head(self.features(x)), dim=-1)
        if self.training and self.steps == self.nan_at_step:
            dist = dist * float("nan")
        out = ([dist_to_mos(dist)] if return_mos else []) + ([dist] if return_dist else [])
        return out if len(out) > 1 else out[0]
