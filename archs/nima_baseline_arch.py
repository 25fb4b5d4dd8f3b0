r"""NIMA baseline that builds offline.

Reference:
    Talebi, Milanfar. "NIMA: Neural Image Assessment." IEEE TIP 27(8), 2018.

The same model as pyiqa's `NIMA` (timm backbone with `features_only=True` as `base_model`,
global average pool, `classifier` = Flatten, Dropout, Linear, Softmax; the same forward and
preprocessing), so pyiqa's published NIMA checkpoints (e.g. NIMA_VGG16_ava-dc4e8265.pth,
key 'params') load into it from a local file. pyiqa's class always asks timm for
pretrained weights, which downloads even with `pretrained: false`; here the backbone's
weight source is an option and never downloads silently.
"""
import torch
import torchvision.transforms.functional as TF
from iaa_bench.archs.frozen_encoders import create_timm_model
from torch import nn

from iaa_bench.utils.errors import WeightsUnavailableError
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, dist_to_mos


def _load_nima_checkpoint(net: nn.Module, path: str):
    """Load a pyiqa-style checkpoint (state dict under 'params', optional 'module.' prefixes) strictly."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("params", state)
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})


@ARCH_REGISTRY.register()
class NIMABaseline(nn.Module):
    """Neural IMage Assessment: ImageNet backbone + softmax over score bins.

    Args:
        base_model_name: timm backbone name.
        backbone_weights: 'timm' (timm's cache or hub; fails fast offline naming
            `network.backbone_weights`), 'offline-efficientnet-lite0' (with
            base_model_name 'tf_efficientnet_lite0'), a local file or folder, or None
            (random init). Not loaded when `pretrained_model_path` is given: the NIMA
            checkpoint holds every backbone weight.
        pretrained_model_path: local NIMA checkpoint (pyiqa format, key 'params') or None.
        num_classes: score bins.
        dropout_rate: dropout before the classifier's Linear.
        pretrained, train_dataset: pyiqa NIMA's keys, so its option files run with only
            `type: NIMABaseline` changed. `pretrained: true` asks for pyiqa's published
            `<base_model_name>-<train_dataset>` weights, a download: refused here, naming
            `pretrained_model_path` for a local copy (pyiqa's default is true, this one's false).
    """

    def __init__(self, base_model_name: str = "vgg16", backbone_weights="timm", pretrained_model_path: str = None,
                 num_classes: int = 10, dropout_rate: float = 0.0, pretrained: bool = False,
                 train_dataset: str = "ava"):
        super().__init__()
        if pretrained and not pretrained_model_path:
            raise WeightsUnavailableError(
                f"network.pretrained: true asks for pyiqa's published NIMA weights ({base_model_name}-{train_dataset}), "
                "a download: set network.pretrained_model_path to a local copy, or pretrained: false")
        weights = None if pretrained_model_path else backbone_weights
        self.base_model = create_timm_model(base_model_name, weights, "network.backbone_weights", features_only=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        layers = [nn.Flatten(), nn.Dropout(p=dropout_rate),
                  nn.Linear(self.base_model.feature_info.channels()[-1], num_classes)]
        self.classifier = nn.Sequential(*layers, *([nn.Softmax(dim=-1)] if num_classes > 1 else []))
        self.outputs_dist = num_classes > 1  # the architecture contract (iaa_bench/models/contract.py)
        cfg = self.base_model.pretrained_cfg
        self.input_size = cfg["input_size"][-1]
        self.register_buffer("default_mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("default_std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        if pretrained_model_path:
            _load_nima_checkpoint(self, pretrained_model_path)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """As pyiqa NIMA: in eval mode resize the short side to the input size and center-crop; normalise."""
        if not self.training:
            x = TF.center_crop(TF.resize(x, self.input_size), self.input_size)
        return (x - self.default_mean) / self.default_std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) in [0, 1] -> the backbone's last feature map (B, C, h, w)."""
        return self.base_model(self.preprocess(x))[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> global average pool (B, C) -> classifier distribution (B, num_classes).

        pre_logits: return the pooled vector instead.
        """
        x = self.global_pool(x)
        return x.flatten(1) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor, return_mos: bool = True, return_dist: bool = False):
        """x (B, 3, H, W) in [0, 1] -> mos (B, 1), dist (B, num_classes), or [mos, dist]."""
        dist = self.forward_head(self.forward_features(x))
        outputs = ([dist_to_mos(dist)] if return_mos else []) + ([dist] if return_dist else [])
        return outputs if len(outputs) > 1 else outputs[0]
