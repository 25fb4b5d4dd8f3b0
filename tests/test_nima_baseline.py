"""NIMABaseline: builds offline, forward shapes, pyiqa NIMA checkpoint compatibility."""

import pytest
import torch

import iaa_bench  # noqa: F401  (registers NIMABaseline)
from iaa_bench.utils.errors import WeightsUnavailableError
from iaa_bench.utils.pyiqa_adapter import build_network


def test_random_init_builds_offline_and_follows_pyiqa_outputs(forbid_sockets):
    torch.manual_seed(0)
    net = build_network(dict(type="NIMABaseline", base_model_name="resnet10t", backbone_weights=None)).eval()
    mos, dist = net(torch.rand(2, 3, 180, 240), return_mos=True, return_dist=True)
    assert mos.shape == (2, 1) and dist.shape == (2, 10) and torch.allclose(dist.sum(1), torch.ones(2))
    assert net(torch.rand(2, 3, 224, 224)).shape == (2, 1)
    x = torch.rand(2, 3, 224, 224)
    feature_map = net.forward_features(x)  # timm convention: features, then pool + classify
    dist = net(x, return_mos=False, return_dist=True)
    assert feature_map.ndim == 4 and torch.allclose(net.forward_head(feature_map), dist)
    assert torch.allclose(net.forward_head(feature_map, pre_logits=True), feature_map.mean(dim=(2, 3)), atol=1e-6)


def test_offline_efficientnet_lite0_backbone_matches_the_image_encoder(forbid_sockets):
    from iaa_bench.archs.frozen_encoders import create_timm_model

    net = build_network(dict(type="NIMABaseline", base_model_name="tf_efficientnet_lite0",
                             backbone_weights="offline-efficientnet-lite0")).eval()
    full = create_timm_model("tf_efficientnet_lite0", "offline-efficientnet-lite0", "test").eval()
    features_only = net.base_model.state_dict()
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in features_only.items())
    x = torch.rand(1, 3, 224, 224)
    assert net(x).shape == (1, 1)
    with pytest.raises(ValueError, match="network.backbone_weights"):
        build_network(dict(type="NIMABaseline", base_model_name="resnet10t",
                           backbone_weights="offline-efficientnet-lite0"))


def test_hub_backbone_fails_fast_naming_the_option():
    with pytest.raises(WeightsUnavailableError, match="network.backbone_weights"):
        build_network(dict(type="NIMABaseline", base_model_name="resnet10t", backbone_weights="timm"))


def test_pyiqa_nima_checkpoint_loads(tmp_path, monkeypatch):
    """A checkpoint of pyiqa's own NIMA (key 'params') loads and gives the same predictions."""
    import timm

    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: create(*a, **{**k, "pretrained": False}))
    torch.manual_seed(0)
    pyiqa_nima = build_network(dict(type="NIMA", base_model_name="resnet10t", pretrained=False)).eval()
    monkeypatch.setattr(timm, "create_model", create)
    torch.save({"params": pyiqa_nima.state_dict()}, tmp_path / "NIMA_resnet10t_ava.pth")

    net = build_network(dict(type="NIMABaseline", base_model_name="resnet10t", backbone_weights="timm",
                             pretrained_model_path=str(tmp_path / "NIMA_resnet10t_ava.pth"))).eval()
    x = torch.rand(2, 3, 200, 260)
    with torch.no_grad():
        assert torch.allclose(net(x, return_dist=True)[1], pyiqa_nima(x, return_dist=True)[1], atol=1e-6)
