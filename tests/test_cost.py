"""MACs per sample of the trainable part, as the leaderboard's cost column counts them."""
import torch
from conftest import ASSETS, TINY_MMLQ

import iaa_bench  # noqa: F401  (registers MMLQ)
from iaa_bench.evaluation.cost import MacCounter, trainable_macs_per_sample
from iaa_bench.evaluation.model_stats import network_stats
from iaa_bench.utils.registration import load_plugins
from iaa_bench.models.iaa_model import IAAModel


def tiny_mmlq_model() -> IAAModel:
    torch.manual_seed(0)
    return IAAModel({"is_train": True, "num_gpu": 0, "network": {"type": "MMLQ", **TINY_MMLQ}, "path": {},
                     "train": {"optim": {"type": "AdamW", "lr": 1e-3}, "mos_loss_opt": {"type": "ScoreDistEMDLoss"}}})


def batch(n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"img": torch.rand(n, 3, 64, 64, generator=g), "text_ids": torch.randint(1, 100, (n, 24), generator=g),
            "text_mask": torch.ones(n, 24, dtype=torch.long), "mos_label": torch.rand(n, generator=g) * 9 + 1}


def test_mmlq_macs_count_the_trainable_part_per_sample_and_leave_the_model_as_it_was():
    # MMLQ hands its expanded learnable queries to each block: under no_grad torch's module
    # tracker could not hook them, and the benchmark's cost column crashed on every MMLQ row
    model = tiny_mmlq_model()
    one, four = (trainable_macs_per_sample(model, [batch(n)], samples=n) for n in (1, 4))
    assert one > 0 and abs(four - one) <= 1e-6 * one  # per sample, whatever the batch
    with torch.no_grad(), MacCounter(model.net) as everything:
        model.feed_data(batch(1))
        model.net_forward(model.net)
    assert one < everything.total  # the frozen encoders' share is left out
    assert model.net.training and all(p.grad is None for p in model.net.parameters())


def test_cost_column_and_model_stats_are_one_counter():
    """The cost column on real samples equals model_stats' thop + attention MACs on the same encoder features."""
    model = tiny_mmlq_model()
    sample = batch(1)
    with torch.no_grad():
        image_feats = model.net.encode_image(sample["img"])
        text_feats, text_mask = model.net.encode_text(sample["text_ids"], sample["text_mask"])
    stats = network_stats(model.net, text_tokens=text_feats.shape[1], image_tokens=image_feats.shape[1])
    assert trainable_macs_per_sample(model, [sample], samples=1) == (stats["gmacs"] + stats["gmacs_attn"]) * 1e9


def test_cost_column_counts_image_only_convolutional_networks_whole():
    load_plugins([str(ASSETS / "tiny_iaa_arch.py")])
    model = IAAModel({"is_train": False, "num_gpu": 0, "network": {"type": "TinyIAANet", "width": 8}, "path": {}})
    conv, pool, head = 31 * 31 * 8 * 3 * 9, (31 * 31 + 1) * 8, 8 * 10  # 64 px, 3 x 3 stride 2 -> 31 x 31
    assert trainable_macs_per_sample(model, [batch(2)], samples=2) == conv + pool + head
