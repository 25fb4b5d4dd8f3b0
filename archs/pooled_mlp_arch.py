r"""Pooled frozen features -> MLP -> score distribution: plain heads on MMLQ's own encoders.

Reference:
    LAION aesthetic predictor (Schuhmann et al., LAION-5B, NeurIPS 2022 Datasets and
    Benchmarks): an MLP on a frozen CLIP image embedding.

`modality: image` is that recipe on the tokens of MMLQ's frozen image encoder, mean-pooled;
`modality: both` is late fusion: pooled image ‖ pooled text features of MMLQ's frozen
image and text encoders. Built from the same `FrozenImageEncoder` / `FrozenTextEncoder`
options, the encoders have MMLQ's identity, so these models read MMLQ's feature cache
(no second encoder pass) and differ from MMLQ only in the trainable part: what the
learnable queries and interaction blocks add over a plain head on the same features.
"""
import torch
from iaa_bench.archs.frozen_encoders import FrozenImageEncoder, FrozenTextEncoder
from torch import nn

from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, dist_to_mos

_MODALITIES = {"image": ("image",), "text": ("text",), "both": ("image", "text")}


@ARCH_REGISTRY.register()
class PooledFeatureMLP(nn.Module):
    """Mean-pooled frozen tokens (LayerNorm per modality, concatenated) -> MLP -> softmax over bins.

    Args:
        image_encoder, text_encoder: FrozenImageEncoder / FrozenTextEncoder keyword arguments
            (give MMLQ's to share its cache).
        modality: 'image', 'text' or 'both' (late fusion); absent branches build nothing.
        hidden: MLP widths; default LAION's (1024, 128, 64, 16).
        dropout: dropout after each hidden layer; default LAION's (0.2, 0.2, 0.1, 0).
            GELU between layers (LAION's stack has none, which makes it one linear map).
        num_bins: score bins.
    """

    outputs_dist = True  # the architecture contract (iaa_bench/models/contract.py); `modality` sets uses_*

    def __init__(self, image_encoder: dict = None, text_encoder: dict = None, modality: str = "image",
                 hidden=(1024, 128, 64, 16), dropout=(0.2, 0.2, 0.1, 0.0), num_bins: int = 10):
        super().__init__()
        if modality not in _MODALITIES or len(hidden) != len(dropout):
            raise ValueError(f"modality must be one of {list(_MODALITIES)} and hidden / dropout of equal length; "
                             f"got {modality!r}, {list(hidden)}, {list(dropout)}")
        self.branches = _MODALITIES[modality]
        self.uses_image, self.uses_text = "image" in self.branches, "text" in self.branches
        self.image_encoder = FrozenImageEncoder(**(image_encoder or {})) if "image" in self.branches else None
        self.text_encoder = FrozenTextEncoder(**(text_encoder or {})) if self.uses_text else None
        encoders = {"image": self.image_encoder, "text": self.text_encoder}
        self.norm = nn.ModuleDict({b: nn.LayerNorm(encoders[b].out_dim) for b in self.branches})
        layers, width = [], sum(encoders[b].out_dim for b in self.branches)
        for size, p in zip(hidden, dropout):
            layers += [nn.Linear(width, size), nn.GELU(), nn.Dropout(p)]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_bins)

    @classmethod
    def text_settings(cls, network_opt: dict):
        """The text encoder's tokenizer and length (None without a text branch)."""
        if "text" not in _MODALITIES[network_opt.get("modality", "image")]:
            return None
        return FrozenTextEncoder.tokenizer_settings(network_opt.get("text_encoder") or {})

    def frozen_encoders(self) -> dict:
        """The encoders whose outputs `forward` also takes precomputed: MMLQ's, so MMLQ's caches."""
        return {k: enc for k, enc in (("image", self.image_encoder), ("text", self.text_encoder)) if enc is not None}

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(img)

    def encode_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(text_ids, text_mask)

    def forward_features(self, img=None, text_ids=None, text_mask=None, *, image_feats=None,
                         text_feats=None) -> torch.Tensor:
        """Pooled, normalised features of each branch, concatenated, through the MLP."""
        pooled = []
        if "image" in self.branches:
            image_feats = self.encode_image(img) if image_feats is None else image_feats
            pooled.append(self.norm["image"](image_feats.mean(dim=1)))
        if self.uses_text:
            text_feats = self.encode_text(text_ids, text_mask) if text_feats is None else text_feats
            mask = torch.ones(text_feats.shape[:2], device=text_feats.device) if text_mask is None else text_mask
            mask = mask[..., :text_feats.shape[1], None].float()
            pooled.append(self.norm["text"]((text_feats * mask).sum(1) / mask.sum(1).clamp(min=1)))
        return self.mlp(torch.cat(pooled, dim=-1))

    def forward_head(self, feat: torch.Tensor) -> torch.Tensor:
        return self.head(feat).softmax(dim=-1)

    def forward(self, img=None, text_ids=None, text_mask=None, return_mos=True, return_dist=False, *,
                image_feats=None, text_feats=None):
        """mos (B, 1), dist (B, num_bins), or [mos, dist]; image_feats / text_feats: cached encoder outputs."""
        dist = self.forward_head(self.forward_features(img, text_ids, text_mask, image_feats=image_feats,
                                                       text_feats=text_feats))
        outputs = ([dist_to_mos(dist)] if return_mos else []) + ([dist] if return_dist else [])
        return outputs if len(outputs) > 1 else outputs[0]
