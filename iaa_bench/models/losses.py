"""Losses registered in pyiqa's LOSS_REGISTRY.

pyiqa already registers `EMDLoss`; ours is `ScoreDistEMDLoss` so both can coexist.
It is numerically the same as pyiqa's (tested) and adds per-sample weights that sum
correctly under every reduction.
"""
import torch
from torch import nn

from iaa_bench.utils.pyiqa_adapter import LOSS_REGISTRY


def emd(pred: torch.Tensor, target: torch.Tensor, r: int = 2) -> torch.Tensor:
    """Per-sample Earth Mover's Distance between (N, C) distributions over ordered bins.

    EMD_r = (mean_k |CDF_pred(k) - CDF_target(k)|^r)^(1/r), as in NIMA (Talebi & Milanfar).
    """
    if pred.shape != target.shape:
        raise ValueError(f"EMD needs equal shapes, got pred {tuple(pred.shape)} and target {tuple(target.shape)}")
    cdf_diff = torch.cumsum(pred, dim=-1) - torch.cumsum(target, dim=-1)
    # clamped so the root has a finite gradient when pred == target (pyiqa's gives NaN there)
    return cdf_diff.abs().pow(r).mean(dim=-1).clamp_min(1e-12).pow(1.0 / r)


@LOSS_REGISTRY.register()
class ScoreDistEMDLoss(nn.Module):
    """EMD loss between predicted and ground-truth score distributions (MMLQ, NIMA).

    Args:
        r: 1 or 2 (NIMA and MMLQ train with r=2).
        reduction: 'mean' | 'sum' | 'none'. With `weight`, 'mean' is the weighted mean.
        loss_weight: multiplier, as in pyiqa's losses.
    """

    def __init__(self, r: int = 2, reduction: str = "mean", loss_weight: float = 1.0):
        super().__init__()
        if isinstance(r, bool) or r not in (1, 2) or not isinstance(r, int):
            raise ValueError(f"ScoreDistEMDLoss: r must be 1 or 2, got {r!r}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"ScoreDistEMDLoss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.r, self.reduction, self.loss_weight = r, reduction, loss_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        per_sample = emd(pred, target, self.r)
        if weight is not None:
            if weight.shape not in ((len(per_sample),), (len(per_sample), 1)):
                raise ValueError(f"ScoreDistEMDLoss: weight must have shape ({len(per_sample)},) or "
                                 f"({len(per_sample)}, 1), got {tuple(weight.shape)}")
            weight = weight.reshape(per_sample.shape).to(per_sample)
            per_sample = per_sample * weight
        if self.reduction == "none":
            loss = per_sample
        elif self.reduction == "sum":
            loss = per_sample.sum()
        elif weight is not None:
            loss = per_sample.sum() / weight.sum().clamp_min(1e-12)
        else:
            loss = per_sample.mean()
        return self.loss_weight * loss
