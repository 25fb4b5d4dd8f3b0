"""What a model costs, read beside its accuracy: MACs per sample of the trainable part, training throughput."""
import json
import math
from os import path as osp

from torch.utils.flop_counter import FlopCounterMode

from iaa_bench.archs.frozen_encoders import frozen_submodules
from iaa_bench.models.checkpoint import bare


def trainable_macs_per_sample(model, loader, samples: int = 4) -> float:
    """MACs per sample of everything but the frozen encoders, on the loader's first `samples` samples.

    Counted by torch.utils.flop_counter (matmuls, convolutions, attention; lookups such as
    EmbeddingBag count 0) over the model's own test forward, minus what ran inside its
    frozen-encoder submodules: the cost a cached-feature step pays. Unlike model_stats (thop's
    convention, random features of archs with frozen encoders), this counts any arch, on real samples.
    """
    batch = next(iter(loader))
    n = min(samples, len(batch["mos_label"]))
    model.feed_data({k: v[:n] for k, v in batch.items()})
    # model.test()'s forward, but with grad enabled: torch's ModuleTracker (inside FlopCounterMode)
    # asserts on views of parameters taken under no_grad, e.g. MMLQ's expanded learnable queries
    model.net.eval()
    with FlopCounterMode(display=False) as counter:
        model.net_forward(model.net)
    model.net.train(model.is_train)
    counts = counter.get_flop_counts()
    net = bare(model.net)
    frozen = sum(sum(counts.get(f"{type(net).__name__}.{prefix}", {}).values()) for prefix in frozen_submodules(net))
    return (sum(counts.get("Global", {}).values()) - frozen) / 2 / n


def train_samples_per_s(experiments_root: str) -> float:
    """Training throughput the run recorded in its final_metrics.json (NaN if it did not)."""
    try:
        with open(osp.join(experiments_root, "final_metrics.json"), encoding="utf-8") as f:
            rate = json.load(f).get("train_samples_per_s")  # None: resumed with nothing left to train
    except FileNotFoundError:
        return math.nan
    return math.nan if rate is None else float(rate)
