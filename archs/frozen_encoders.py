"""Frozen pre-trained encoders shared by multi-modal architectures, and checkpoint helpers.

A frozen encoder is a `FrozenEncoder` submodule: its parameters never train, it stays in
eval mode whatever `net.train()` says, and it runs without autograd. Because frozen
encoders are recognisable (`is_frozen_encoder = True`), checkpoints can leave their
weights out and store each encoder's `identity()` instead (`trainable_state_dict`,
`frozen_identity`, `load_trainable_state_dict`); the same identity keys a feature cache.

Weight sources never download unless downloads are allowed (see `iaa_bench.utils.offline`):
missing weights fail in seconds with a message naming the option that takes a local path.
"""
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from iaa_bench.utils.errors import FrozenEncoderMismatchError, OptionError
from iaa_bench.utils.offline import weights_required
from iaa_bench.utils.pretrained import (
    OFFLINE_IMAGE_ENCODER,
    OFFLINE_IMAGE_TIMM_NAME,
    OFFLINE_TEXT_ENCODER,
    efficientnet_lite0_state_dict,
    resolve_text_encoder,
)

_DTYPES = {None: None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CHECKPOINT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors",
                     "open_clip_pytorch_model.bin")


def create_timm_model(name: str, weights, option: str, **kwargs) -> nn.Module:
    """A timm model with weights from an offline-safe source.

    weights: None (random init), 'timm' (timm's cache or hub), 'offline-efficientnet-lite0'
    (ImageNet weights from a registry package; `tf_efficientnet_lite0` only), or a local
    checkpoint file or folder (timm's checkpoint filters apply, e.g. for OpenAI CLIP).
    option: the option path named in errors, e.g. `network.image_encoder.weights`.
    kwargs: passed to `timm.create_model` (e.g. `features_only=True`).
    """
    import timm

    if weights is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    if weights == "timm":
        with weights_required(option, f"timm weights for '{name}'"):
            return timm.create_model(name, pretrained=True, **kwargs)
    if weights == OFFLINE_IMAGE_ENCODER:
        if name != OFFLINE_IMAGE_TIMM_NAME:
            raise ValueError(f"`{option}`: '{OFFLINE_IMAGE_ENCODER}' only fits '{OFFLINE_IMAGE_TIMM_NAME}', not '{name}'")
        model = timm.create_model(name, pretrained=False, **kwargs)
        # The package's tensors match the full classifier's keys by position; a features_only
        # model holds a subset of those keys, so map onto the full model first, then select.
        full_keys = timm.create_model(name, pretrained=False).state_dict().keys()
        own_keys = model.state_dict().keys()
        model.load_state_dict({k: v for k, v in efficientnet_lite0_state_dict(full_keys).items() if k in own_keys})
        return model
    path = Path(weights).expanduser()
    if path.is_dir():
        found = [path / f for f in _CHECKPOINT_FILES if (path / f).is_file()]
        if not found:
            raise FileNotFoundError(f"`{option}`: folder {path} holds none of {', '.join(_CHECKPOINT_FILES)}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"`{option}`: '{weights}' is neither a local file or folder nor one of "
                                f"None, 'timm', '{OFFLINE_IMAGE_ENCODER}'")
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), source="file"), **kwargs)


def _weights_label(weights):
    """Weights source as stored in identities: keywords as-is, local paths absolute."""
    if weights in (None, "timm", OFFLINE_IMAGE_ENCODER):
        return weights
    return str(Path(weights).expanduser().resolve())


class FrozenEncoder(nn.Module):
    """A pre-trained encoder that never trains: no gradients, always eval mode, optional low precision.

    Subclasses build `self.model` and call `_freeze()`. `identity()` describes everything
    that determines the outputs (used as checkpoint and cache key). The run-time `dtype` is
    left out of it on purpose, so a head trained on bfloat16 features loads for float32 use.
    """

    is_frozen_encoder = True

    def __init__(self, dtype=None):
        super().__init__()
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        self.run_dtype = _DTYPES[dtype]

    def _freeze(self):
        if self.run_dtype is not None:
            self.model.to(self.run_dtype)
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True):
        """Ignore `mode`: dropout and batch-norm statistics of a frozen encoder stay in eval mode."""
        return super().train(False)

    def identity(self) -> dict:
        raise NotImplementedError


class FrozenImageEncoder(FrozenEncoder):
    """Any timm model as a frozen image tokeniser: images in [0, 1] -> tokens (B, N, C).

    ViTs give their `forward_features` tokens (prefix tokens such as CLS, then patches);
    CNNs give the last feature map flattened to H*W tokens. Inputs are resized straight to
    `img_size` (no crop) and normalised with the model's mean/std unless `mean` / `std` are given.

    feature_layer: take the tokens after block (ViT) or stage (CNN) k instead of the last one;
        negative counts from the end. The model is truncated there (timm's
        `prune_intermediate_layers`), so the dropped blocks are neither built into the
        identity nor run: -2 on a 24-block CLIP ViT-L/14 gives the 23-block tower of LAVIS's
        `create_clip_vit_L` (`lavis/models/clip_vit.py`).
    final_norm: False drops the model's final norm (LAVIS's CLIP tower has none: `ln_final`
        is commented out there). Only for models with a `norm` layer (ViTs).
    mean, std: per-channel normalisation overriding the timm config, e.g. ImageNet
        statistics for a CLIP tower.
    """

    def __init__(self, name: str = OFFLINE_IMAGE_TIMM_NAME, weights=OFFLINE_IMAGE_ENCODER, img_size: int = 224,
                 feature_layer: int = None, final_norm: bool = True, mean: list = None, std: list = None,
                 dtype=None):
        super().__init__(dtype)
        self.name, self.weights, self.img_size = name, _weights_label(weights), img_size
        self.feature_layer, self.final_norm = feature_layer, final_norm
        self.model = create_timm_model(name, weights, "network.image_encoder.weights")
        if hasattr(self.model, "set_input_size") and self.model.pretrained_cfg["input_size"][-1] != img_size:
            self.model.set_input_size(img_size=img_size)  # ViT: position embeddings resampled
        self._truncate()
        cfg = self.model.pretrained_cfg
        for key, value in (("mean", mean), ("std", std)):
            value = cfg[key] if value is None else value
            if len(value) != 3:
                raise OptionError(f"`network.image_encoder.{key}` needs 3 values (RGB), got {value!r}")
            self.register_buffer(key, torch.tensor(value, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self._num_tokens = None
        self._freeze()

    def _truncate(self):
        """Apply feature_layer / final_norm by pruning the timm model (nothing after the taken layer is kept)."""
        if self.feature_layer is None and self.final_norm:
            return
        if not hasattr(self.model, "prune_intermediate_layers"):
            raise OptionError(f"`network.image_encoder.feature_layer` / `final_norm`: timm model '{self.name}' "
                              "cannot be truncated (no prune_intermediate_layers)")
        if not self.final_norm and isinstance(getattr(self.model, "norm", nn.Identity()), nn.Identity):
            raise OptionError(f"`network.image_encoder.final_norm: false`: timm model '{self.name}' has no final norm")
        layer = -1 if self.feature_layer is None else self.feature_layer
        self.model.prune_intermediate_layers([layer], prune_norm=not self.final_norm, prune_head=True)

    @property
    def out_dim(self) -> int:
        return self.model.num_features

    @property
    def num_tokens(self) -> int:
        """Tokens per image; measured once with a blank image because it depends on the architecture."""
        if self._num_tokens is None:
            self._num_tokens = self(self.mean.new_zeros(1, 3, self.img_size, self.img_size)).shape[1]
        return self._num_tokens

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the model's input: resized to img_size, normalised."""
        if img.shape[-2:] != (self.img_size, self.img_size):
            img = F.interpolate(img, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False,
                                antialias=True)
        return (img - self.mean) / self.std

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.preprocess(img.float())
            x = self.model.forward_features(x.to(self.run_dtype or x.dtype))
            if x.ndim == 4:  # CNN feature map (B, C, H, W) -> (B, H*W, C)
                x = x.flatten(2).transpose(1, 2)
            return x.float()

    def identity(self) -> dict:
        identity = {"encoder": "image", "name": self.name, "weights": self.weights, "out_dim": self.out_dim,
                    "img_size": self.img_size, "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}
        # Truncation is recorded only when set, so identities stored without these keys still match.
        if self.feature_layer is not None:
            identity["feature_layer"] = self.feature_layer
        if not self.final_norm:
            identity["final_norm"] = False
        return identity


class FrozenTextEncoder(FrozenEncoder):
    """A Hugging Face text encoder (`AutoModel`) as a frozen tokeniser: ids, mask -> (B, L, C).

    name: 'offline-minilm', a local Hugging Face folder, or a hub id (downloads allowed only).
    max_length: tokens per encoder pass (one chunk). max_chunks, max_tokens: a comment set is
    read as up to `max_chunks` chunks, `max_tokens` tokens in all (default max_chunks x
    max_length); the datasets tokenise with these settings and `encode_chunks` joins the
    chunks' tokens, so a long set costs chunks x max_length² of attention, not its length².
    weights: 'pretrained' loads the weights in `name`; None builds a random-init model from
    `config` (a dict of config fields with optional `model_type`, default BERT; no files
    needed) or, without `config`, from the config stored in `name`.
    """

    def __init__(self, name: str = OFFLINE_TEXT_ENCODER, max_length: int = 128, weights="pretrained",
                 config: dict = None, dtype=None, max_chunks: int = 1, max_tokens: int = None):
        super().__init__(dtype)
        from transformers import AutoConfig, AutoModel

        if weights not in ("pretrained", None):
            raise ValueError(f"`network.text_encoder.weights` must be 'pretrained' or None, got {weights!r}")
        if max_chunks < 1 or max_tokens is not None and not 0 < max_tokens <= max_chunks * max_length:
            raise ValueError(f"`network.text_encoder`: need max_chunks >= 1 and 0 < max_tokens <= max_chunks x "
                             f"max_length, got max_chunks={max_chunks}, max_tokens={max_tokens}, max_length={max_length}")
        self.name, self.weights, self.max_length, self.config_overrides = name, weights, max_length, dict(config or {})
        self.max_chunks, self.max_tokens = max_chunks, max_tokens or max_chunks * max_length
        with weights_required("network.text_encoder.name", f"text encoder '{name}'"):
            if weights == "pretrained":
                self.model = AutoModel.from_pretrained(resolve_text_encoder(name))
            else:
                if config is not None:
                    overrides = dict(config)
                    hf_config = AutoConfig.for_model(overrides.pop("model_type", "bert"), **overrides)
                else:
                    hf_config = AutoConfig.from_pretrained(resolve_text_encoder(name))
                self.model = AutoModel.from_config(hf_config)
        if max_length > self.model.config.max_position_embeddings:
            raise ValueError(f"max_length {max_length} exceeds the encoder's {self.model.config.max_position_embeddings} positions")
        self._freeze()

    @staticmethod
    def tokenizer_settings(options: dict) -> dict:
        """{'tokenizer', 'max_length'} the encoder built from `options` (its kwargs) reads, + chunking when set."""
        settings = {"tokenizer": options.get("name", OFFLINE_TEXT_ENCODER), "max_length": options.get("max_length", 128)}
        return {**settings, **{k: options[k] for k in ("max_chunks", "max_tokens") if options.get(k) is not None}}

    @property
    def out_dim(self) -> int:
        return self.model.config.hidden_size

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One encoder pass over (N, L) ids and mask."""
        if input_ids.shape[1] > self.max_length:
            raise ValueError(f"text has {input_ids.shape[1]} tokens, the encoder takes at most max_length={self.max_length}; "
                             "tokenise with the same max_length")
        with torch.no_grad():
            out = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return out.float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Features (B, T, C) of texts (B, L) or chunked texts (B, chunks, L); see `encode_chunks`."""
        return self.encode_chunks(input_ids, attention_mask)[0]

    def encode_chunks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, T, C) and mask (B, T) of texts (B, L) or chunked texts (B, chunks, L).

        Each chunk is one encoder pass (empty chunks are skipped, passes are cut to the longest
        chunk); a sample's real tokens are then joined chunk after chunk, so they come first:
        its mask is its first min(real tokens, max_tokens) positions. T is the longest sample.
        """
        if input_ids.ndim == 2:
            input_ids, attention_mask = input_ids[:, None], attention_mask[:, None]
        batch, chunks, _ = input_ids.shape
        ids, mask = input_ids.flatten(0, 1), attention_mask.flatten(0, 1).bool()
        width = max(int(mask.sum(1).max()), 1)
        ids, mask, used = ids[:, :width], mask[:, :width], mask.any(1)
        feats = torch.zeros(*ids.shape, self.out_dim, device=ids.device)
        if used.any():
            feats[used] = self._encode(ids[used], mask[used].long())
        feats, mask = feats.view(batch, chunks * width, -1), mask.reshape(batch, chunks * width)
        order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices  # real tokens first, in order
        order = order[:, :min(max(int(mask.sum(1).max()), 1), self.max_tokens)]
        return feats.gather(1, order[..., None].expand(-1, -1, feats.shape[-1])), mask.gather(1, order)

    def identity(self) -> dict:
        return {"encoder": "text", "name": self.name, "weights": self.weights, "model_type": self.model.config.model_type,
                "config": self.config_overrides, "out_dim": self.out_dim, "max_length": self.max_length}


def frozen_submodules(net: nn.Module) -> dict:
    """Outermost frozen-encoder submodules of `net`, by state-dict prefix (what checkpoints leave out).

    Not the arch contract's `frozen_encoders()` ({'image' | 'text': encoder}, what the feature cache stores).
    """
    found = {}
    for prefix, module in net.named_modules():
        if getattr(module, "is_frozen_encoder", False) and not any(prefix.startswith(p + ".") for p in found):
            found[prefix] = module
    return found


def _is_frozen_key(key: str, prefixes) -> bool:
    return any(p == "" or key.startswith(p + ".") for p in prefixes)


def trainable_state_dict(net: nn.Module) -> dict:
    """`net.state_dict()` without the entries of frozen encoders (they are stored as identities)."""
    prefixes = list(frozen_submodules(net))
    return {k: v for k, v in net.state_dict().items() if not _is_frozen_key(k, prefixes)}


def frozen_identity(net: nn.Module) -> dict:
    """{prefix: identity()} of every frozen encoder in `net`, JSON-able."""
    return {prefix: module.identity() for prefix, module in frozen_submodules(net).items()}


def load_trainable_state_dict(net: nn.Module, state: dict, identity: dict, strict: bool = True):
    """Load a `trainable_state_dict` into `net` after checking the frozen encoders are the same.

    identity: the `frozen_identity` stored with the checkpoint. Raises
    FrozenEncoderMismatchError naming each differing field; with `strict`, missing or
    unexpected trainable keys raise as in `load_state_dict`.
    """
    stored, current = json.loads(json.dumps(identity)), json.loads(json.dumps(frozen_identity(net)))
    if stored != current:
        diffs = []
        for prefix in sorted(set(stored) | set(current)):
            a, b = stored.get(prefix, {}), current.get(prefix, {})
            diffs += [f"{prefix or '<root>'}.{k}: checkpoint {a.get(k)!r} vs network {b.get(k)!r}"
                      for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        raise FrozenEncoderMismatchError("checkpoint was trained with different frozen encoders: " + "; ".join(diffs))
    prefixes = list(current)
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not _is_frozen_key(k, prefixes)]
    if strict and (missing or result.unexpected_keys):
        raise RuntimeError(f"trainable state does not fit the network: missing {missing}, unexpected {result.unexpected_keys}")
    return result
