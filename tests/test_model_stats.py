"""model_stats: the two MAC conventions on hand-counted layers, and both paper-size configurations pinned."""
import re

import pytest
import torch
from conftest import REPO
from torch import nn

from iaa_bench.archs.mmlq_arch import MultiHeadAttention
from iaa_bench.evaluation.model_stats import count_macs, model_stats, network_stats
from iaa_bench.utils.errors import OptionError

# (option file, trainable, frozen, GMACs thop / attention at 512 text tokens): the README's figures.
PAPER_CONFIGS = [("mmlq_ava.yml", 73_512_970, 413_449_216, 9.1321, 0.2648),
                 ("mmlq_ava_authors.yml", 59_328_778, 400_063_744, 6.1765, 0.1511)]
THIRD_PARTY = {"trainable": 60.27e6, "gmacs": 6.19}  # the authors' code, measured with thop by a third party


def test_thop_convention_and_attention_matmuls_by_hand():
    seq = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.GELU())
    assert count_macs(seq, torch.randn(1, 5, 4)) == (4 * 3 * 5 + 4 * 3 * 5, 0)  # Linear in*out*tokens, LN 4/elem
    attn = MultiHeadAttention(dim=8, num_heads=2, context_dim=6)
    macs, attn_macs = count_macs(attn, torch.randn(1, 3, 8), torch.randn(1, 7, 6))
    assert macs == 3 * 8 * 8 + 7 * 6 * 16 + 3 * 8 * 8  # q, kv (context width 6 -> 2 x 8), proj
    assert attn_macs == 2 * 3 * 7 * 8  # QK^T and AV


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
