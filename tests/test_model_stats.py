"""The MAC counter (thop's convention + attention matmuls) on hand-counted layers; both paper-size configurations pinned."""
import re

import pytest
import torch
from conftest import REPO
from torch import nn

from iaa_bench.archs.mmlq_arch import MultiHeadAttention
from iaa_bench.evaluation.cost import MacCounter
from iaa_bench.evaluation.model_stats import model_stats, network_stats
from iaa_bench.utils.errors import OptionError

# (option file, trainable, frozen, GMACs thop / attention at 512 text tokens): the README's figures.
PAPER_CONFIGS = [("mmlq_ava.yml", 73_512_970, 413_449_216, 9.1321, 0.2648),
                 ("mmlq_ava_authors.yml", 59_328_778, 400_063_744, 6.1765, 0.1511)]
THIRD_PARTY = {"trainable": 60.27e6, "gmacs": 6.19}  # the authors' code, measured with thop by a third party


def count_macs(net, *inputs, **kw_inputs) -> tuple[int, int]:
    with torch.no_grad(), MacCounter(net) as macs:
        net(*inputs, **kw_inputs)
    return macs.thop, macs.attention


def test_thop_convention_and_attention_matmuls_by_hand():
    seq = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.GELU())
    assert count_macs(seq, torch.randn(1, 5, 4)) == (4 * 3 * 5 + 4 * 3 * 5, 0)  # Linear in*out*tokens, LN 4/elem
    attn = MultiHeadAttention(dim=8, num_heads=2, context_dim=6)
    macs, attn_macs = count_macs(attn, torch.randn(1, 3, 8), torch.randn(1, 7, 6))
    assert macs == 3 * 8 * 8 + 7 * 6 * 16 + 3 * 8 * 8  # q, kv (context width 6 -> 2 x 8), proj
    assert attn_macs == 2 * 3 * 7 * 8  # QK^T and AV


def test_thop_convention_for_convolutional_networks_by_hand():
    """Convolutions, batch norms and average pools count as thop counts them (image-only baselines)."""
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, groups=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1, groups=2),
                        nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    macs, attn_macs = count_macs(cnn.eval(), torch.randn(2, 3, 6, 6))
    conv1 = 2 * 4 * 4 * 4 * 3 * 9  # output elements (2 x 4 x 4 x 4) x in/groups x kernel
    norm = 2 * 4 * 4 * 4 * 4  # 4 per element (affine)
    conv2 = 2 * 4 * 4 * 4 * 2  # in 4 / 2 groups, 1 x 1 kernel
    pools = 2 * 4 * 2 * 2 + 2 * 4 * (4 + 1)  # AvgPool: 1 per output; adaptive: window 2 x 2 + 1 per output
    assert (macs, attn_macs) == (conv1 + norm + conv2 + pools + 2 * 4 * 2, 0)


def test_explicit_attention_matmuls_count_and_skipped_submodules_do_not():
    class HandAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.proj = nn.Linear(6, 8), nn.Linear(8, 8)

        def forward(self, x, context):
            keys = self.encoder(context)
            weights = torch.softmax(self.proj(x) @ keys.transpose(1, 2), dim=-1)
            return torch.bmm(weights, keys)

    net = HandAttention()
    with torch.no_grad(), MacCounter(net, skip=[net.encoder]) as macs:
        net(torch.randn(2, 3, 8), torch.randn(2, 7, 6))
    assert (macs.thop, macs.attention) == (2 * 3 * 8 * 8, 2 * (2 * 3 * 7 * 8))  # proj; QK^T and AV, not the encoder


def test_networks_without_frozen_encoders_are_refused():
    with pytest.raises(OptionError, match="declares no frozen encoder"):
        network_stats(nn.Linear(2, 2))


@pytest.mark.parametrize("name,trainable,frozen,gmacs,gmacs_attn", PAPER_CONFIGS, ids=lambda v: str(v))
def test_paper_size_configurations(name, trainable, frozen, gmacs, gmacs_attn, capsys, monkeypatch, forbid_sockets):
    """Weightless encoders (no checkpoint read), the CLI's STATS line: exact parameters, MACs within 0.5 %."""
    monkeypatch.chdir(REPO)
    stats = model_stats(["-opt", f"options/{name}", "--random-init", "--tokens", "512"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"STATS trainable=\d+ frozen=\d+ gmacs=[\d.]+ gmacs_attn=[\d.]+ tokens=512", line), line
    assert (stats["trainable"], stats["frozen"]) == (trainable, frozen)
    assert stats["gmacs"] == pytest.approx(gmacs, rel=0.005) and stats["gmacs_attn"] == pytest.approx(gmacs_attn, rel=0.005)
    if name == "mmlq_ava_authors.yml":
        assert stats["trainable"] == pytest.approx(THIRD_PARTY["trainable"], rel=0.02)
        assert stats["gmacs"] == pytest.approx(THIRD_PARTY["gmacs"], rel=0.02)
