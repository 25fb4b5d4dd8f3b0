"""Parameters and MACs per sample of a network's trainable part, counted on cached-feature inputs.

    python iaa_bench/model_stats.py -opt options/mmlq_ava.yml [--random-init] [--tokens L]

The network of the option file is built (`--random-init`: with random-init encoders as timm's
`pretrained=False` and a BERT config give them, built on PyTorch's meta device so they hold
shapes but no memory, and never run) and its trainable part runs once on random encoder
features of one sample (image tokens x width, `L` text tokens all attended), as the
frozen-feature cache feeds it. MACs are counted by iaa_bench's one counter
(`iaa_bench.evaluation.cost.MacCounter`, which also fills the leaderboard's cost column):
- `gmacs`, in thop's convention (nn.Linear in x out per token, affine LayerNorm 4 per element;
  activations and softmax nothing). The third-party 6.19 G of the authors' code is a thop
  figure, so it compares with this one;
- `gmacs_attn`, the attention matmuls thop leaves out: QK^T and AV, Lq x Lk x dim each
  (dense: masked keys included).
Ends with one line `STATS trainable=<int> frozen=<int> gmacs=<float> gmacs_attn=<float> tokens=<int>`.
"""
import argparse
import copy

import torch
from torch import nn

from iaa_bench.config.options import load_yaml
from iaa_bench.evaluation.cost import MacCounter
from iaa_bench.models import contract
from iaa_bench.models.iaa_model import build_net
from iaa_bench.utils.errors import OptionError, WeightsUnavailableError
from iaa_bench.utils.pretrained import BERT_BASE_CONFIG


def random_init_options(network_opt: dict) -> dict:
    """`network` options with random-init frozen encoders of the same shapes (no weights read)."""
    opt = copy.deepcopy(network_opt)
    for key in ("image_encoder", "text_encoder"):
        if opt.get(key) is not None:
            opt[key]["weights"] = None
    return opt


def _build_shapes_only(network_opt: dict) -> nn.Module:
    """Build on the meta device (shapes, no memory, no init cost), then give the trainable part real tensors.

    The frozen encoders stay on meta: counting feeds the trainable part cached-feature inputs,
    so no encoder ever runs on data (their token count is shape inference).
    """
    with torch.device("meta"):
        net = build_net(network_opt)
    frozen = {id(m) for encoder in contract.frozen_encoders(net).values() for m in encoder.modules()}
    for module in net.modules():
        if id(module) not in frozen:
            module.to_empty(device="cpu", recurse=False)
    for p in net.parameters():
        if p.requires_grad:
            nn.init.normal_(p, std=0.02)
    return net


def build_random_init(network_opt: dict) -> nn.Module:
    """The network with weightless frozen encoders of the option file's shapes (see `_build_shapes_only`).

    A BERT-base hub id whose config is not available offline gets BERT-base's shape.
    """
    opt = random_init_options(network_opt)
    try:
        return _build_shapes_only(opt)
    except WeightsUnavailableError:
        text = opt.get("text_encoder") or {}
        if text.get("config") is not None or "bert-base" not in str(text.get("name", "")):
            raise
        print(f"text encoder: config of '{text['name']}' not available here; using BERT-base's shape")
        opt["text_encoder"]["config"] = BERT_BASE_CONFIG
        return _build_shapes_only(opt)


def network_stats(net: nn.Module, text_tokens: int = None, image_tokens: int = None) -> dict:
    """Parameter counts and per-sample MACs of the trainable part on random cached features.

    text_tokens: text length (default: the text encoder's token budget, max_tokens); image_tokens: default
    the image encoder's token count (measured once with a blank image).
    """
    encoders = contract.frozen_encoders(net)
    if not encoders:
        raise OptionError(f"{type(net).__name__} declares no frozen encoder: model_stats counts the trainable part "
                          "of networks fed cached encoder features (such as MMLQ)")
    net = net.eval()
    inputs = {}
    image, text = encoders.get("image"), encoders.get("text")
    if image is not None:
        inputs["image_feats"] = torch.randn(1, image_tokens or image.num_tokens, image.out_dim)
    if text is not None:
        text_tokens = text_tokens or text.max_tokens
        inputs["text_feats"] = torch.randn(1, text_tokens, text.out_dim)
        inputs["text_mask"] = torch.ones(1, text_tokens, dtype=torch.long)
    with torch.no_grad(), MacCounter(net) as macs:
        net(**inputs)
    params = list(net.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad),
            "frozen": sum(p.numel() for p in params if not p.requires_grad),
            "gmacs": macs.thop / 1e9, "gmacs_attn": macs.attention / 1e9, "tokens": text_tokens or 0}


def stats_line(stats: dict) -> str:
    return (f"STATS trainable={stats['trainable']} frozen={stats['frozen']} gmacs={stats['gmacs']:.4f} "
            f"gmacs_attn={stats['gmacs_attn']:.4f} tokens={stats['tokens']}")


def model_stats(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Parameters and MACs per sample of a network's trainable part.")
    parser.add_argument("-opt", required=True, help="option file")
    parser.add_argument("--random-init", action="store_true",
                        help="frozen encoders of the same shapes without weights (no checkpoint needed)")
    parser.add_argument("--tokens", type=int, default=None, help="text tokens (default: text_encoder.max_tokens)")
    args = parser.parse_args(argv)
    network_opt = load_yaml(args.opt)["network"]
    net = build_random_init(network_opt) if args.random_init else build_net(network_opt)
    stats = network_stats(net, text_tokens=args.tokens)
    print(f"{network_opt['type']} of {args.opt}{' (random-init encoders)' if args.random_init else ''}")
    print(f"parameters: {stats['trainable']:,} trainable, {stats['frozen']:,} frozen")
    print(f"MACs per sample of the trainable part, text tokens {stats['tokens']}: {stats['gmacs']:.4f} G "
          f"(thop convention) + {stats['gmacs_attn']:.4f} G attention matmuls")
    print(stats_line(stats))
    return stats
