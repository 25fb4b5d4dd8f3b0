"""The architecture contract: what iaa_bench reads from a network, declared by its arch.

IAAModel, the datasets' text settings, the feature cache, the optimiser and the benchmark
read a network only through the functions below. An arch takes part by declaring class or
instance attributes and methods; nothing is inferred from forward signatures or module
names. Every declaration is optional; the defaults describe a plain pyiqa arch (an image
in, the mean score out).

    uses_image = True           forward's first argument is `img` (B, 3, H, W) in [0, img_range]
    uses_text = False           forward takes keyword arguments `text_ids`, `text_mask`
                                (B, L) long, mask 1 = real token, or (B, chunks, L) when the
                                text settings have max_chunks > 1; `None` for both = no comments
    text_settings(network_opt)  classmethod: {'tokenizer', 'max_length'[, 'max_chunks', 'max_tokens']}
                                that a network built from these options reads (None: it reads no
                                text); the datasets tokenise comments with them unless they state
                                their own `text:`
    outputs_dist = False        forward(img, ..., return_mos=True, return_dist=True) returns
                                [mos (B, 1), dist (B, bins)], trained with a distribution loss;
                                otherwise forward(img, ...) returns mos (B, 1)
    frozen_encoders()           {'image' | 'text': module}: frozen encoders whose outputs forward
                                also accepts precomputed, as `image_feats` = module(img) and
                                `text_feats` = module(text_ids, text_mask) (B, T, C) with its real
                                tokens first (its `text_mask`: the first mask.sum() positions);
                                the feature cache stores exactly those outputs
    no_weight_decay()           parameter names (as in `named_parameters`) kept out of weight
                                decay, besides every parameter with fewer than two dimensions

pyiqa's own archs declare nothing: they are image-only, and those that return a score
distribution are listed in `PYIQA_DIST_ARCHS`.
"""
import torch

from iaa_bench.models.checkpoint import bare
from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, is_registered

# pyiqa archs that return a distribution, and the attribute holding their bin count (> 1: a distribution)
PYIQA_DIST_ARCHS = {"NIMA": "num_classes", "CFANet": "num_class"}
MODALITIES = {(True, False): "image", (False, True): "text", (True, True): "image+text"}


def uses_image(net: torch.nn.Module) -> bool:
    return bool(getattr(bare(net), "uses_image", True))


def uses_text(net: torch.nn.Module) -> bool:
    return bool(getattr(bare(net), "uses_text", False))


def modality(net: torch.nn.Module) -> str:
    """'image', 'text' or 'image+text': what the built network reads."""
    return MODALITIES[uses_image(net), uses_text(net)]


def outputs_dist(net: torch.nn.Module) -> bool:
    net = bare(net)
    declared = getattr(net, "outputs_dist", None)
    if declared is not None:
        return bool(declared)
    bins = PYIQA_DIST_ARCHS.get(type(net).__name__)
    return bins is not None and getattr(net, bins, 1) > 1


def frozen_encoders(net: torch.nn.Module) -> dict:
    """{'image' | 'text': encoder} of the encoders whose outputs the network accepts precomputed."""
    net = bare(net)
    return dict(net.frozen_encoders()) if hasattr(net, "frozen_encoders") else {}


def no_weight_decay(net: torch.nn.Module) -> set:
    net = bare(net)
    return set(net.no_weight_decay()) if hasattr(net, "no_weight_decay") else set()


def text_settings(network_opt: dict) -> dict | None:
    """The tokenizer settings a network built from `network_opt` reads (None: no text, or not declared)."""
    declared = getattr(_arch_class(network_opt), "text_settings", None)
    return None if declared is None else declared(network_opt)


def dataset_text(network_opt: dict, own: dict | None, where: str) -> dict | None:
    """The `text:` settings of a dataset feeding this network: its own, completed and checked by the arch's.

    own: the dataset's `text:` option (None when absent); where: its option path, for errors.
    """
    wanted = text_settings(network_opt)
    if wanted is None:
        cls = _arch_class(network_opt)
        if own is None and getattr(cls, "uses_text", False) is True and getattr(cls, "text_settings", None) is None:
            raise OptionError(f"network {network_opt['type']} reads text (`uses_text = True`) but declares no "
                              f"`text_settings`: set `{where}.text: {{tokenizer: ..., max_length: ...}}`")
        return own
    text = {**wanted, **(own or {})}
    fixed = [k for k in wanted if k != "max_length"]  # e.g. the hash buckets of n-gram text; max_length None: no limit
    if any(text[k] != wanted[k] for k in fixed) or wanted["max_length"] is not None and (
            text["max_length"] is None or text["max_length"] > wanted["max_length"]):
        raise OptionError(f"`{where}.text` (tokenizer {text['tokenizer']!r}, max_length {text['max_length']}) does "
                          f"not fit network {network_opt['type']}, which reads tokenizer {wanted['tokenizer']!r} with "
                          f"at most {wanted['max_length']} tokens")
    return text


def _arch_class(network_opt: dict):
    arch = network_opt.get("type")
    return ARCH_REGISTRY.get(arch) if arch and is_registered("arch", arch) else None
