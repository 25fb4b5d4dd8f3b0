"""Frozen encoders: real offline weights, offline fail-fast, freezing, low precision."""
import subprocess
import sys

import pytest
import torch
from conftest import TINY_BERT
from iaa_bench.archs.frozen_encoders import FrozenImageEncoder, FrozenTextEncoder

import iaa_bench  # noqa: F401  (maps archs/ to iaa_bench.archs)
from iaa_bench.utils.errors import OptionError, WeightsUnavailableError
from iaa_bench.utils.pretrained import load_tokenizer


def test_offline_efficientnet_lite0_classifies_coffee_as_espresso(forbid_sockets):
    from skimage import data

    encoder = FrozenImageEncoder()  # defaults: tf_efficientnet_lite0, offline weights
    img = torch.from_numpy(data.coffee()).permute(2, 0, 1)[None].float() / 255
    tokens = encoder(img)
    assert tokens.shape == (1, 49, 1280) and encoder.out_dim == 1280 and encoder.num_tokens == 49
    # the tokens are the full model's feature map: its classifier on them sees an espresso (967)
    feature_map = tokens.transpose(1, 2).reshape(1, 1280, 7, 7)
    assert encoder.model.forward_head(feature_map).argmax().item() == 967
    assert encoder.identity()["mean"] == [0.5, 0.5, 0.5]


def test_offline_minilm_embeds_paraphrases_closer(forbid_sockets):
    encoder = FrozenTextEncoder("offline-minilm", max_length=32)
    tokenizer = load_tokenizer("offline-minilm")
    texts = ["A beautiful sunset over the sea.", "A lovely sundown above the ocean.",
             "The quarterly tax report is due on Monday."]
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    tokens = encoder(batch["input_ids"], batch["attention_mask"])
    width = int(batch["attention_mask"].sum(1).max())  # padded to the longest text only
    assert tokens.shape == (3, width, 384)
    mask = batch["attention_mask"][:, :width, None].float()
    emb = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_timm_hub_weights_fail_offline_naming_the_option():
    code = ("import iaa_bench; from iaa_bench.archs.frozen_encoders import FrozenImageEncoder\n"
            "try:\n    FrozenImageEncoder('resnet10t', weights='timm', img_size=64)\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "WeightsUnavailableError" in out and "network.image_encoder.weights" in out, out


def test_missing_local_weights_name_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="network.image_encoder.weights"):
        FrozenImageEncoder("resnet10t", weights=str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsUnavailableError, match="network.text_encoder.name"):
        FrozenTextEncoder("some-org/not-cached-model")


def test_local_checkpoint_file_loads(tmp_path):
    torch.manual_seed(0)
    source = FrozenImageEncoder("resnet10t", weights=None, img_size=64)
    torch.save(source.model.state_dict(), tmp_path / "resnet10t.pth")
    loaded = FrozenImageEncoder("resnet10t", weights=str(tmp_path / "resnet10t.pth"), img_size=64)
    img = torch.rand(2, 3, 64, 64)
    assert torch.allclose(source(img), loaded(img))
    assert loaded.identity()["weights"] == str((tmp_path / "resnet10t.pth").resolve())


def test_frozen_means_no_grad_eval_mode_and_low_precision():
    torch.manual_seed(0)
    vit = FrozenImageEncoder("vit_tiny_patch16_224", weights=None, img_size=64)
    text = FrozenTextEncoder("tiny-bert", max_length=16, weights=None,
                             config=dict(TINY_BERT, hidden_dropout_prob=0.5))
    for encoder in (vit, text):
        encoder.train()
        assert not any(m.training for m in encoder.modules())
        assert not any(p.requires_grad for p in encoder.parameters())
    img = torch.rand(2, 3, 80, 80)  # resized to 64 inside
    tokens = vit(img)
    assert tokens.shape == (2, 17, 192) and vit.num_tokens == 17 and not tokens.requires_grad
    ids, mask = torch.randint(1, 100, (2, 16)), torch.ones(2, 16, dtype=torch.long)
    assert torch.equal(text(ids, mask), text(ids, mask))  # dropout inactive
    with pytest.raises(ValueError, match="max_length"):
        text(torch.randint(1, 100, (2, 17)), torch.ones(2, 17, dtype=torch.long))

    half = FrozenImageEncoder("vit_tiny_patch16_224", weights=None, img_size=64, dtype="bfloat16")
    half.model.load_state_dict(vit.model.state_dict())
    out = half(img)
    assert out.dtype == torch.float32 and torch.allclose(out, tokens, atol=0.1)


def test_feature_layer_final_norm_and_statistics_change_what_they_say():
    torch.manual_seed(0)
    full = FrozenImageEncoder("vit_tiny_patch16_224", weights=None, img_size=64)
    imagenet = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    cut = FrozenImageEncoder("vit_tiny_patch16_224", weights=None, img_size=64, feature_layer=-2, final_norm=False,
                             **imagenet)
    assert len(cut.model.blocks) == len(full.model.blocks) - 1 and isinstance(cut.model.norm, torch.nn.Identity)
    cut.model.load_state_dict({k: v for k, v in full.model.state_dict().items() if k in cut.model.state_dict()})
    img = torch.rand(2, 3, 64, 64)
    m = full.model  # by hand: ImageNet normalisation, blocks 0..10 of 12, no final norm
    x = m.norm_pre(m._pos_embed(m.patch_embed((img - torch.tensor(imagenet["mean"]).view(1, 3, 1, 1))
                                              / torch.tensor(imagenet["std"]).view(1, 3, 1, 1))))
    for block in m.blocks[:-1]:
        x = block(x)
    assert torch.allclose(cut(img), x, atol=1e-5) and not torch.allclose(full(img), x, atol=1e-3)
    assert cut.identity()["feature_layer"] == -2 and cut.identity()["final_norm"] is False
    assert cut.identity()["mean"] == pytest.approx(imagenet["mean"]) and full.identity()["mean"] == [0.5, 0.5, 0.5]
    assert "feature_layer" not in full.identity() and "final_norm" not in full.identity()
    with pytest.raises(OptionError, match="final_norm"):
        FrozenImageEncoder("resnet10t", weights=None, img_size=64, final_norm=False)
