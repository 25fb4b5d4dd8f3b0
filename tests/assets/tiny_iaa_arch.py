"""A tiny aesthetics arch registered from outside the package (loaded via `plugins:`)."""
import torch
from torch import nn

from iaa_bench.pyiqa_adapter import ARCH_REGISTRY, dist_to_mos


@ARCH_REGISTRY.register()
class TinyIAANet(nn.Module):
    def __init__(self, width: int = 8, num_bins: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, num_bins)

    def forward(self, x, return_mos=True, return_dist=False):
        dist = torch.softmax(self.head(self.features(x)), dim=-1)
        out = ([dist_to_mos(dist)] if return_mos else []) + ([dist] if return_dist else [])
        return out if len(out) > 1 else out[0]
