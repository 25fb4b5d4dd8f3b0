"""MMLQ: outputs, frozen encoders, text masking, missing comments, modalities, checkpoints, structural options."""
import pytest
import torch
from conftest import TINY_MMLQ
from conftest import build_tiny_mmlq as tiny_mmlq
from iaa_bench.archs.frozen_encoders import (
    FrozenEncoderMismatchError,
    frozen_identity,
    load_trainable_state_dict,
    trainable_state_dict,
)
from iaa_bench.archs.mmlq_arch import MMLQ

import iaa_bench  # noqa: F401  (registers MMLQ)
from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import build_network

TINY_IMAGE, TINY = TINY_MMLQ["image_encoder"], TINY_MMLQ


def batch(seed=1, size=3, length=12):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(size, 3, 64, 64, generator=g)
    ids = torch.randint(1, 100, (size, length), generator=g)
    mask = torch.ones(size, length, dtype=torch.long)
    mask[1, 7:] = 0
    return img, ids, mask


def test_registered_and_outputs_follow_pyiqa_convention():
    net = build_network(dict(type="MMLQ", **TINY)).eval()
    img, ids, mask = batch()
    mos, dist = net(img, ids, mask, return_mos=True, return_dist=True)
    assert dist.shape == (3, 10) and torch.allclose(dist.sum(1), torch.ones(3))
    assert mos.shape == (3, 1) and ((mos >= 1) & (mos <= 10)).all()
    assert net(img, ids, mask).shape == (3, 1)
    assert net(img, ids, mask, return_mos=False, return_dist=True).shape == (3, 10)
    tokens = net.forward_features(img, ids, mask)  # visual then textual queries after the MMIBs
    assert tokens.shape == (3, 4 + 3, 32) and torch.allclose(net.forward_head(tokens), dist)
    pooled = net.forward_head(tokens, pre_logits=True)
    assert torch.allclose(pooled, torch.cat([tokens[:, :4].mean(1), tokens[:, 4:].mean(1)], dim=1))


def test_gradients_reach_queries_and_head_never_encoders():
    net = tiny_mmlq().train()
    img, ids, mask = batch()
    net(img, ids, mask, return_dist=True)[1].log().sum().backward()
    for name, p in net.named_parameters():
        if name.startswith(("image_encoder.", "text_encoder.")):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad, name
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in net.queries.values())
    assert net.head.layers[0].weight.grad.abs().sum() > 0 and net.null_text.grad is not None
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in [*net.image_encoder.parameters(), *net.text_encoder.parameters()]}


def test_train_mode_keeps_encoders_in_eval():
    net = tiny_mmlq().train()
    assert net.training and net.blocks[0].self_attn.training
    assert not any(m.training for m in [*net.image_encoder.modules(), *net.text_encoder.modules()])


def test_padding_tokens_do_not_change_the_output():
    net = tiny_mmlq().eval()
    img, ids, mask = batch()
    padded_ids = torch.cat([ids, torch.randint(1, 100, (3, 8))], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(3, 8, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short, long = net(img, ids, mask, return_dist=True)[1], net(img, padded_ids, padded_mask, return_dist=True)[1]
        assert torch.allclose(short, long, atol=1e-6)
        # the output does depend on the unpadded text
        assert not torch.allclose(short, net(img, ids.flip(1), mask, return_dist=True)[1], atol=1e-6)


def test_missing_comments_attend_to_the_null_token_only():
    net = tiny_mmlq().eval()
    img, ids, mask = batch()
    special_only = torch.zeros_like(mask)
    special_only[:, :2] = 1  # a tokenised empty string: [CLS] [SEP]
    with torch.no_grad():
        none = net(img, None, None, return_dist=True)[1]
        zeros = net(img, ids, torch.zeros_like(mask), return_dist=True)[1]
        bare = net(img, ids, special_only, return_dist=True)[1]
        with_text = net(img, ids, mask, return_dist=True)[1]
    assert torch.isfinite(none).all() and torch.allclose(none, zeros, atol=1e-6) and torch.allclose(none, bare, atol=1e-6)
    assert not torch.allclose(none, with_text, atol=1e-6)


def test_comment_dropout_drops_whole_texts_in_training_only():
    net = tiny_mmlq(comment_dropout=1.0, dropout=0.0)
    img, ids, mask = batch()
    with torch.no_grad():
        dropped = net.train()(img, ids, mask, return_dist=True)[1]
        assert torch.allclose(dropped, net.eval()(img, None, None, return_dist=True)[1], atol=1e-6)
        assert not torch.allclose(dropped, net(img, ids, mask, return_dist=True)[1], atol=1e-6)


def test_image_only_and_text_only_build_and_run_one_encoder():
    image_only = tiny_mmlq(modality="image").eval()
    assert image_only.text_encoder is None and not image_only.uses_text and MMLQ.uses_text
    assert not any(n.startswith("text_encoder") for n, _ in image_only.named_modules())
    assert set(image_only.queries) == {"visual"}
    img, ids, mask = batch()
    assert image_only(img).shape == (3, 1)
    assert image_only.forward_features(img).shape == (3, 4, 32)

    text_only = tiny_mmlq(modality="text").eval()
    assert text_only.image_encoder is None and text_only.uses_text
    assert text_only(None, ids, mask).shape == (3, 1)
    assert torch.isfinite(text_only(None, ids, torch.zeros_like(mask))).all()


def test_precomputed_features_match_running_the_encoders():
    net = tiny_mmlq().eval()
    img, ids, mask = batch()
    with torch.no_grad():
        direct = net(img, ids, mask, return_dist=True)[1]
        text_feats, text_mask = net.encode_text(ids, mask)
        cached = net(None, None, text_mask, return_dist=True, image_feats=net.encode_image(img), text_feats=text_feats)[1]
    assert torch.allclose(direct, cached, atol=1e-6)


def test_chunked_text_joins_each_chunks_real_tokens():
    chunked = {**TINY_MMLQ["text_encoder"], "max_length": 8, "max_chunks": 3, "max_tokens": 20}
    net = tiny_mmlq(text_encoder=chunked).eval()
    _, ids, _ = batch(size=2, length=24)
    ids, mask = ids.view(2, 3, 8), torch.zeros(2, 3, 8, dtype=torch.long)
    mask[0, 0, :5] = mask[0, 1, :8] = 1  # sample 0: chunks of 5 and 8 tokens, third chunk empty
    mask[1, 0, :8] = mask[1, 1, :8] = mask[1, 2, :6] = 1  # sample 1: 22 tokens, cut to the 20-token budget
    feats, joined = net.encode_text(ids, mask)
    assert feats.shape == (2, 20, 32) and joined.sum(1).tolist() == [13, 20]
    encoder = net.text_encoder
    first = torch.cat([encoder(ids[0, :1, :5], mask[0, :1, :5])[0], encoder(ids[0, 1:2], mask[0, 1:2])[0]])
    assert torch.allclose(feats[0, :13], first, atol=1e-5) and not joined[0, 13:].any()
    second = torch.cat([encoder(ids[1, c:c + 1], mask[1, c:c + 1])[0] for c in range(2)]
                       + [encoder(ids[1, 2:3, :6], mask[1, 2:3, :6])[0]])
    assert torch.allclose(feats[1], second[:20], atol=1e-5)
    with pytest.raises(ValueError, match="max_tokens"):
        tiny_mmlq(text_encoder={**TINY_MMLQ["text_encoder"], "max_length": 8, "max_chunks": 2, "max_tokens": 17})


@pytest.mark.parametrize("self_attn,ffn", [("separate", "separate"), ("joint", "separate"), ("separate", "shared"),
                                           ("joint", "shared")])
def test_replaceable_layers(self_attn, ffn):
    net = tiny_mmlq(self_attn=self_attn, ffn=ffn).eval()
    block = net.blocks[0]
    assert isinstance(block.self_attn, torch.nn.ModuleDict) == (self_attn == "separate")
    assert isinstance(block.ffn, torch.nn.ModuleDict) == (ffn == "separate")
    img, ids, mask = batch()
    with torch.no_grad():
        visual, other_text = (net.forward_head(net.forward_features(img, t, mask), pre_logits=True)[:, :32]
                              for t in (ids, ids.flip(1)))
    # Only a joint self-attention lets the text reach the visual queries (FFNs and norms act per token).
    assert torch.allclose(visual, other_text, atol=1e-6) == (self_attn == "separate")


def test_checkpoint_keeps_trainable_part_and_checks_encoder_identity():
    net = tiny_mmlq(seed=0).eval()
    state, identity = trainable_state_dict(net), frozen_identity(net)
    assert set(identity) == {"image_encoder", "text_encoder"}
    assert not any(k.startswith(("image_encoder.", "text_encoder.")) for k in state)
    n_state = sum(v.numel() for v in state.values())
    assert n_state == sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert n_state < sum(v.numel() for v in net.state_dict().values()) / 4

    fresh = tiny_mmlq(seed=0).eval()  # same encoders (seeded random init), then re-randomise the trainable part
    torch.manual_seed(5)
    fresh._init_weights()
    img, ids, mask = batch()
    with torch.no_grad():
        expected = net(img, ids, mask, return_dist=True)[1]
        assert not torch.allclose(fresh(img, ids, mask, return_dist=True)[1], expected, atol=1e-6)
        load_trainable_state_dict(fresh, state, identity)
        assert torch.allclose(fresh(img, ids, mask, return_dist=True)[1], expected, atol=1e-6)

    other = tiny_mmlq(image_encoder=dict(TINY_IMAGE, img_size=96))
    with pytest.raises(FrozenEncoderMismatchError, match="image_encoder.img_size"):
        load_trainable_state_dict(other, state, identity)
    with pytest.raises(RuntimeError, match="unexpected"):
        load_trainable_state_dict(fresh, {**state, "extra.weight": torch.zeros(1)}, identity)


def trainable_names(net) -> set:
    return {n for n, p in net.named_parameters() if p.requires_grad}


def test_cross_attention_freq_removes_exactly_the_odd_blocks_cross_attention():
    every, freq2 = tiny_mmlq(depth=4), tiny_mmlq(depth=4, cross_attention_freq=2)
    removed = trainable_names(every) - trainable_names(freq2)
    assert removed == {n for n in trainable_names(every) if n.startswith(("blocks.1.cross_attn.", "blocks.3.cross_attn."))}
    assert removed and not trainable_names(freq2) - trainable_names(every)
    assert trainable_names(tiny_mmlq(depth=4, cross_attention_blocks=[0, 2])) == trainable_names(freq2)
    img, ids, mask = batch()
    assert torch.isfinite(freq2.eval()(img, ids, mask)).all()
    with pytest.raises(OptionError, match="not both"):
        tiny_mmlq(cross_attention_freq=2, cross_attention_blocks=[0])


def test_context_proj_none_feeds_encoder_width_keys_to_cross_attention():
    net = tiny_mmlq(context_proj="none").eval()
    assert net.context_proj is None and not any(n.startswith("context_proj") for n in trainable_names(net))
    cross = net.blocks[0].cross_attn
    assert cross["visual"].layer.kv.in_features == net.image_encoder.out_dim == 512
    assert cross["textual"].layer.kv.in_features == net.text_encoder.out_dim == 32
    assert net.null_text.shape == (1, 1, 32)
    img, ids, mask = batch()
    with torch.no_grad():
        assert torch.isfinite(net(img, ids, mask)).all() and torch.isfinite(net(img, None, None)).all()


def test_without_null_text_every_marked_token_is_a_key_and_no_text_is_an_error():
    net = tiny_mmlq(null_text=False).eval()
    assert net.null_text is None and "null_text" not in trainable_names(net)
    img, ids, mask = batch()
    bare = torch.zeros_like(mask)
    bare[:, :2] = 1  # [CLS] [SEP] of an empty comment string: attended, as in a Q-Former
    with torch.no_grad():
        out = net(img, ids, bare, return_dist=True)[1]
        assert not torch.allclose(out, net(img, ids.flip(1), bare, return_dist=True)[1], atol=1e-6)
        with_null = tiny_mmlq().eval()  # the null-token model masks such a text: its ids do not matter
        assert torch.allclose(with_null(img, ids, bare), with_null(img, ids.flip(1), bare), atol=1e-6)
        with pytest.raises(OptionError, match="null_text"):
            net(img, ids, torch.zeros_like(mask))
        with pytest.raises(OptionError, match="null_text"):
            net(img)
    with pytest.raises(OptionError, match="null_text"):
        tiny_mmlq(null_text=False, comment_dropout=0.1)


def test_linear_head_is_one_linear_layer():
    net = tiny_mmlq(head="linear").eval()
    linears = [m for m in net.head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 10)]
    mlp = [m for m in tiny_mmlq().head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in mlp] == [(64, 32), (32, 10)]
    img, ids, mask = batch()
    assert torch.allclose(net(img, ids, mask, return_dist=True)[1].sum(1), torch.ones(3))
