r"""MMLQ: Multi-modal Learnable Queries for Image Aesthetics Assessment.

Reference:
    Xiong, Zhang, Shen, Ren, Yu. "Multi-modal Learnable Queries for Image Aesthetics
    Assessment." ICME 2024, arXiv:2405.01326.

Frozen image and text encoders produce token features; two sets of learnable queries
(visual, textual) extract aesthetic information from them through a stack of
Multi-modal Interaction Blocks; the averaged queries give a 10-bin score distribution.
"""
import torch
import torch.nn.functional as F
from iaa_bench.archs.frozen_encoders import FrozenImageEncoder, FrozenTextEncoder
from torch import nn

from iaa_bench.utils.errors import OptionError
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, dist_to_mos

_BRANCHES = {"both": ("visual", "textual"), "image": ("visual",), "text": ("textual",)}


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention (scaled_dot_product_attention) with a key padding mask.

    context_dim: width of the keys/values' input when it differs from `dim` (a Q-Former's
    cross-attention reads encoder-width features directly).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, context_dim: int = None):
        super().__init__()
        if dim % num_heads:
            raise OptionError(f"network.dim {dim} is not divisible by network.num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor = None, key_mask: torch.Tensor = None) -> torch.Tensor:
        """x (B, Lq, D) attends to context (B, Lk, C), itself when None; key_mask (B, Lk) bool, True = attend."""
        context = x if context is None else context
        B, Lq, D = x.shape
        q = self.q(x).view(B, Lq, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(B, context.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, Lq, D))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> Dropout -> Linear."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1, self.act, self.drop, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class PostNormResidual(nn.Module):
    """LayerNorm(x + Dropout(layer(x, ...))): the post-LN residual of BERT and BLIP-2's Q-Former."""

    def __init__(self, layer: nn.Module, dim: int, dropout: float):
        super().__init__()
        self.layer, self.drop, self.norm = layer, nn.Dropout(dropout), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.norm(x + self.drop(self.layer(x, *args, **kwargs)))


class MultimodalInteractionBlock(nn.Module):
    """One MMIB: self-attention over queries, cross-attention to each modality's features, FFN.

    The self-attention and the FFN are "replaceable" (paper): 'joint' / 'shared' use one layer
    for the concatenated visual and textual queries (for self-attention this is where the
    two modalities interact), 'separate' gives each modality its own layer. Cross-attention
    is always per modality: visual queries see image tokens, textual queries text tokens.
    context_dims: branch -> width of that branch's keys/values, or None for a block without
    cross-attention (as the odd blocks of BLIP-2's Q-Former with `cross_attention_freq: 2`).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, branches, self_attn: str,
                 ffn: str, context_dims: dict = None):
        super().__init__()

        def attention(context_dim=None):
            return PostNormResidual(MultiHeadAttention(dim, num_heads, dropout, context_dim), dim, dropout)

        def feed_forward():
            return PostNormResidual(FeedForward(dim, mlp_ratio, dropout), dim, dropout)

        self.self_attn = attention() if self_attn == "joint" else nn.ModuleDict({b: attention() for b in branches})
        self.cross_attn = None if context_dims is None else nn.ModuleDict(
            {b: attention(context_dims[b]) for b in branches})
        self.ffn = feed_forward() if ffn == "shared" else nn.ModuleDict({b: feed_forward() for b in branches})

    @staticmethod
    def _per_branch(layer, queries: dict) -> dict:
        """Apply a per-branch ModuleDict, or one layer to all queries concatenated along the sequence."""
        if isinstance(layer, nn.ModuleDict):
            return {b: layer[b](q) for b, q in queries.items()}
        out = layer(torch.cat(list(queries.values()), dim=1))
        return dict(zip(queries, out.split([q.shape[1] for q in queries.values()], dim=1)))

    def forward(self, queries: dict, contexts: dict) -> dict:
        """queries: branch -> (B, Nq, D); contexts: branch -> (features (B, Lk, C), key mask (B, Lk) or None)."""
        queries = self._per_branch(self.self_attn, queries)
        if self.cross_attn is not None:
            queries = {b: self.cross_attn[b](q, *contexts[b]) for b, q in queries.items()}
        return self._per_branch(self.ffn, queries)


class DistributionHead(nn.Module):
    """Pooled query features -> linear layer(s) -> Softmax -> score distribution over `num_bins`.

    hidden: width of the hidden layer (Linear -> GELU -> Dropout -> Linear), or None for a
    single Linear.
    """

    def __init__(self, in_dim: int, hidden: int, num_bins: int, dropout: float):
        super().__init__()
        if hidden is None:
            self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_bins))
        else:
            self.layers = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, num_bins))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.layers(feat).softmax(dim=-1)


def cross_attention_layout(depth: int, freq: int, blocks) -> list:
    """Per block, whether it has cross-attention: the listed `blocks`, else every i with i % freq == 0."""
    if blocks is not None:
        if freq != 1:
            raise OptionError("give network.cross_attention_freq or network.cross_attention_blocks, not both")
        wrong = [i for i in blocks if not 0 <= i < depth]
        if wrong:
            raise OptionError(f"network.cross_attention_blocks {wrong} out of range for depth {depth}")
        return [i in blocks for i in range(depth)]
    if freq < 1:
        raise OptionError(f"network.cross_attention_freq must be >= 1, got {freq}")
    return [i % freq == 0 for i in range(depth)]


@ARCH_REGISTRY.register()
class MMLQ(nn.Module):
    """Multi-modal learnable queries over frozen image and text encoders -> aesthetic score distribution.

    Post-LN (residual, then LayerNorm), as BERT and BLIP-2's Q-Former; the paper does not say
    (assumed). At 6 blocks post-LN's depth instability does not arise.

    Missing comments (`null_text: true`): a learned null text token is always appended to the
    text keys (never masked), so textual queries always have something to attend to. A sample
    whose text has at most `empty_text_tokens` attended tokens (BERT's bare [CLS] [SEP]), an
    all-zero mask, or `text_ids=None` for the whole batch counts as having no comment: its
    text keys are masked and its textual queries see only the null token. `comment_dropout`
    (training only) drops a sample's whole text the same way, so the model learns that case.
    With `missing_text: retrieve` such a sample reads instead the comments lent by its
    `retrieve_k` nearest training images (`lent_text_feats` / `lent_text_mask`, supplied by
    iaa_bench.data.retrieval), each lent token marked by a learned `retrieved_text` vector, so
    dropout teaches the model how far to trust retrieved comments; the null token stays a key.
    With `null_text: false` there is no null token and no missing-comment rule (as a Q-Former):
    textual queries attend to every token the mask marks, so an empty comment string attends
    to its [CLS] [SEP]; a sample with no attended token at all, or no text, raises OptionError.

    modality: 'both'; 'image' (no text encoder is built or run, no textual queries, and the
    instance's `uses_text` is False); 'text' (no image encoder is built or run).

    Args:
        image_encoder, text_encoder: FrozenImageEncoder / FrozenTextEncoder keyword arguments.
        num_visual_queries, num_text_queries: learnable queries per modality.
        dim, num_heads, depth, mlp_ratio, dropout: the query transformer.
        self_attn: 'joint' (one attention over all queries: cross-modal interaction) or 'separate'.
        ffn: 'shared' or 'separate' (per modality).
        cross_attention_freq: cross-attention in blocks i with i % freq == 0 (BLIP-2 Q-Former
            semantics; 1 = every block, as the paper's Fig. 2 describes an MMIB).
        cross_attention_blocks: explicit block indices with cross-attention (instead of freq).
        context_proj: 'linear_ln' (encoder features -> Linear -> LayerNorm to `dim` once, shared
            by all blocks) or 'none' (each cross-attention reads encoder-width features
            directly, kdim = vdim = encoder width, as a Q-Former).
        null_text: the learned "no comment" key described above.
        head: 'mlp' (Linear -> GELU -> Linear, width `head_hidden`) or 'linear' (one Linear).
        comment_dropout: training-only probability of dropping a sample's whole text (needs null_text).
        empty_text_tokens: a text with at most this many attended tokens counts as missing (null_text only).
        missing_text: None (YAML null: the null token alone) or 'retrieve' (lent comments, above).
        retrieve_k: training images that lend their comments to a sample without any.
        head_hidden: hidden width of the mlp head (default: dim).
        num_bins: score bins (10 for AVA).
    """

    uses_text = True  # the architecture contract (iaa_bench/models/contract.py); `modality` narrows it
    outputs_dist = True

    def __init__(self, image_encoder: dict = None, text_encoder: dict = None, num_visual_queries: int = 32,
                 num_text_queries: int = 32, dim: int = 768, num_heads: int = 12, depth: int = 6,
                 mlp_ratio: float = 4.0, dropout: float = 0.1, self_attn: str = "joint", ffn: str = "shared",
                 cross_attention_freq: int = 1, cross_attention_blocks: list = None, context_proj: str = "linear_ln",
                 null_text: bool = True, head: str = "mlp", modality: str = "both", comment_dropout: float = 0.0,
                 empty_text_tokens: int = 2, head_hidden: int = None, num_bins: int = 10, missing_text: str = None,
                 retrieve_k: int = 4):
        super().__init__()
        choices = {"modality": (modality, _BRANCHES), "self_attn": (self_attn, ("joint", "separate")),
                   "ffn": (ffn, ("shared", "separate")), "context_proj": (context_proj, ("linear_ln", "none")),
                   "head": (head, ("mlp", "linear"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise OptionError(f"network.{key} must be one of {list(allowed)}, got {value!r}")
        if comment_dropout > 0 and not null_text:
            raise OptionError("network.comment_dropout needs network.null_text: true (a dropped text leaves no keys)")
        if missing_text not in (None, "retrieve") or missing_text and (not null_text or modality != "both"):
            raise OptionError(f"network.missing_text must be null or 'retrieve' (which needs null_text: true and "
                              f"modality: both: images find the neighbours, comments are lent), got {missing_text!r}")
        self.missing_text, self.retrieve_k = missing_text, retrieve_k
        self.branches = _BRANCHES[modality]
        self.uses_image, self.uses_text = "visual" in self.branches, "textual" in self.branches
        self.comment_dropout, self.empty_text_tokens = comment_dropout, empty_text_tokens

        # The only place the frozen encoders live; absent branches build nothing.
        self.image_encoder = FrozenImageEncoder(**(image_encoder or {})) if "visual" in self.branches else None
        self.text_encoder = FrozenTextEncoder(**(text_encoder or {})) if self.uses_text else None

        encoders = {"visual": self.image_encoder, "textual": self.text_encoder}
        encoder_dims = {b: encoders[b].out_dim for b in self.branches}
        if context_proj == "linear_ln":
            self.context_proj = nn.ModuleDict({
                b: nn.Sequential(nn.Linear(encoder_dims[b], dim), nn.LayerNorm(dim)) for b in self.branches})
            context_dims = {b: dim for b in self.branches}
        else:
            self.context_proj = None
            context_dims = {b: encoder_dims[b] for b in self.branches}
        num_queries = {"visual": num_visual_queries, "textual": num_text_queries}
        self.queries = nn.ParameterDict({b: nn.Parameter(torch.zeros(1, num_queries[b], dim)) for b in self.branches})
        self.null_text = (nn.Parameter(torch.zeros(1, 1, context_dims["textual"]))
                          if self.uses_text and null_text else None)
        self.retrieved_text = nn.Parameter(torch.zeros(1, 1, context_dims["textual"])) if missing_text else None
        layout = cross_attention_layout(depth, cross_attention_freq, cross_attention_blocks)
        self.blocks = nn.ModuleList([
            MultimodalInteractionBlock(dim, num_heads, mlp_ratio, dropout, self.branches, self_attn, ffn,
                                       context_dims if has_cross else None)
            for has_cross in layout])
        self.head = DistributionHead(dim * len(self.branches), (head_hidden or dim) if head == "mlp" else None,
                                     num_bins, dropout)
        self._init_weights()

    def _init_weights(self):
        """BERT/Q-Former initialisation (normal, std 0.02) for everything trainable."""
        for name, module in self.named_modules():
            if name.startswith(("image_encoder", "text_encoder")):
                continue
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for p in [*self.queries.values(), *(t for t in (self.null_text, self.retrieved_text) if t is not None)]:
            nn.init.trunc_normal_(p, std=0.02)

    @classmethod
    def text_settings(cls, network_opt: dict):
        """The tokenizer and length of the text encoder (None for modality 'image')."""
        if network_opt.get("modality", "both") == "image":
            return None
        return FrozenTextEncoder.tokenizer_settings(network_opt.get("text_encoder") or {})

    def frozen_encoders(self) -> dict:
        """The encoders whose outputs `forward` also takes precomputed (`image_feats`, `text_feats`)."""
        return {k: enc for k, enc in (("image", self.image_encoder), ("text", self.text_encoder)) if enc is not None}

    def no_weight_decay(self) -> set:
        """The learnable queries, null and retrieved-text tokens: embeddings, kept out of weight decay (timm)."""
        return {f"queries.{b}" for b in self.queries} | {n for n in ("null_text", "retrieved_text")
                                                          if getattr(self, n) is not None}

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Frozen image features (B, N, C) of [0, 1] images."""
        return self.image_encoder(img)

    def encode_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen text features (B, T, C) and mask (B, T) of token ids and mask, (B, L) or chunked (B, chunks, L)."""
        return self.text_encoder.encode_chunks(text_ids, text_mask)

    def _project(self, branch: str, feats: torch.Tensor) -> torch.Tensor:
        return feats if self.context_proj is None else self.context_proj[branch](feats)

    def _text_context(self, text_ids, text_mask, text_feats, batch_size: int, lent=None):
        """Text keys (+ lent comments' keys, + the null token) and their key mask (missing/dropped texts masked).

        lent: (lent_text_feats, lent_text_mask) of a retrieving network, read by samples without text.
        """
        if text_feats is None and text_ids is None and lent is None:
            if self.null_text is None:
                raise OptionError("no text given to an MMLQ with network.null_text: false (it needs comments)")
            return self.null_text.expand(batch_size, -1, -1), None
        if text_feats is None and text_ids is None:  # no comments for the whole batch: only what is lent
            text_feats = lent[0].new_zeros(batch_size, 1, lent[0].shape[-1])
            text_mask = torch.zeros(batch_size, 1, dtype=torch.bool, device=lent[0].device)
        elif text_feats is None:
            text_feats, text_mask = self.encode_text(text_ids, text_mask)
        if text_mask is None:
            text_mask = torch.ones(text_feats.shape[:2], dtype=torch.bool, device=text_feats.device)
        text_mask = text_mask.bool()
        keys = self._project("textual", text_feats)
        if self.null_text is None:
            if not text_mask.any(dim=1).all():
                raise OptionError("a sample has no text token and network.null_text is false: attention over no "
                                  "keys is undefined (set null_text: true to score images without comments)")
            return keys, text_mask
        has_text = text_mask.sum(dim=1) > self.empty_text_tokens
        if self.training and self.comment_dropout > 0:
            has_text &= torch.rand(batch_size, device=has_text.device) >= self.comment_dropout
        keys, key_mask = [keys], [text_mask & has_text[:, None]]
        if lent is not None and self.retrieved_text is not None:
            keys.append(self._project("textual", lent[0]) + self.retrieved_text)
            key_mask.append(lent[1].bool() & ~has_text[:, None])
        keys = torch.cat([*keys, self.null_text.expand(batch_size, -1, -1)], dim=1)
        key_mask = F.pad(torch.cat(key_mask, dim=1), (0, 1), value=True)
        return keys, key_mask

    def forward_features(self, img=None, text_ids=None, text_mask=None, *, image_feats=None,
                         text_feats=None, lent_text_feats=None, lent_text_mask=None) -> torch.Tensor:
        """Query tokens after the MMIBs: (B, num_visual_queries + num_text_queries, dim), visual first.

        Image-only / text-only networks return only their branch's queries.
        """
        contexts = {}
        if "visual" in self.branches:
            image_feats = self.encode_image(img) if image_feats is None else image_feats
            contexts["visual"] = (self._project("visual", image_feats), None)
        batch_size = next(x.shape[0] for x in (image_feats, text_feats, text_ids, img) if x is not None)
        if self.uses_text:
            lent = None if lent_text_feats is None else (lent_text_feats, lent_text_mask)
            contexts["textual"] = self._text_context(text_ids, text_mask, text_feats, batch_size, lent)
        queries = {b: self.queries[b].expand(batch_size, -1, -1) for b in self.branches}
        for block in self.blocks:
            queries = block(queries, contexts)
        return torch.cat(list(queries.values()), dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Query tokens -> mean per modality, concatenated (B, dim * branches) -> distribution (B, num_bins).

        pre_logits: return the pooled vector instead of the distribution.
        """
        sizes = [self.queries[b].shape[1] for b in self.branches]
        pooled = torch.cat([q.mean(dim=1) for q in x.split(sizes, dim=1)], dim=-1)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, img=None, text_ids=None, text_mask=None, return_mos=True, return_dist=False, *,
                image_feats=None, text_feats=None, lent_text_feats=None, lent_text_mask=None):
        """pyiqa DistIQAModel convention: mos (B, 1) on 1..num_bins, dist (B, num_bins), or [mos, dist].

        image_feats / text_feats: precomputed frozen-encoder outputs (feature cache) used
        instead of running the encoders; text_feats come with their text_mask.
        lent_text_feats / lent_text_mask: retrieved comments' text features (missing_text: retrieve).
        """
        dist = self.forward_head(self.forward_features(img, text_ids, text_mask, image_feats=image_feats,
                                                       text_feats=text_feats, lent_text_feats=lent_text_feats,
                                                       lent_text_mask=lent_text_mask))
        outputs = ([dist_to_mos(dist)] if return_mos else []) + ([dist] if return_dist else [])
        return outputs if len(outputs) > 1 else outputs[0]
