r"""MMLQ: Multi-modal Image Aesthetic Assessment with Learnable Queries.

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

from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, dist_to_mos

_BRANCHES = {"both": ("visual", "textual"), "image": ("visual",), "text": ("textual",)}


class MultiHeadAttention(nn.Module):
    """Multi-head self- or cross-attention (scaled_dot_product_attention) with a key padding mask."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor = None, key_mask: torch.Tensor = None) -> torch.Tensor:
        """x (B, Lq, D) attends to context (B, Lk, D), itself when None; key_mask (B, Lk) bool, True = attend."""
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
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float, branches, self_attn: str,
                 ffn: str):
        super().__init__()

        def attention():
            return PostNormResidual(MultiHeadAttention(dim, num_heads, dropout), dim, dropout)

        def feed_forward():
            return PostNormResidual(FeedForward(dim, mlp_ratio, dropout), dim, dropout)

        self.self_attn = attention() if self_attn == "joint" else nn.ModuleDict({b: attention() for b in branches})
        self.cross_attn = nn.ModuleDict({b: attention() for b in branches})
        self.ffn = feed_forward() if ffn == "shared" else nn.ModuleDict({b: feed_forward() for b in branches})

    @staticmethod
    def _per_branch(layer, queries: dict) -> dict:
        """Apply a per-branch ModuleDict, or one layer to all queries concatenated along the sequence."""
        if isinstance(layer, nn.ModuleDict):
            return {b: layer[b](q) for b, q in queries.items()}
        out = layer(torch.cat(list(queries.values()), dim=1))
        return dict(zip(queries, out.split([q.shape[1] for q in queries.values()], dim=1)))

    def forward(self, queries: dict, contexts: dict) -> dict:
        """queries: branch -> (B, Nq, D); contexts: branch -> (features (B, Lk, D), key mask (B, Lk) or None)."""
        queries = self._per_branch(self.self_attn, queries)
        queries = {b: self.cross_attn[b](q, *contexts[b]) for b, q in queries.items()}
        return self._per_branch(self.ffn, queries)


class DistributionHead(nn.Module):
    """Pooled query features -> linear layers -> Softmax -> score distribution over `num_bins`."""

    def __init__(self, in_dim: int, hidden: int, num_bins: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_bins))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.mlp(feat).softmax(dim=-1)


@ARCH_REGISTRY.register()
class MMLQ(nn.Module):
    """Multi-modal learnable queries over frozen image and text encoders -> aesthetic score distribution.

    Post-LN (residual, then LayerNorm) as in the Q-Former-like code released by the authors:
    their hyper-parameters then transfer, and at 6 blocks post-LN's depth instability does
    not arise.

    Missing comments: a learned null text token is always appended to the text keys (never
    masked), so textual queries always have something to attend to. A sample whose text has
    at most `empty_text_tokens` attended tokens (BERT's bare [CLS] [SEP]), an all-zero mask,
    or `text_ids=None` for the whole batch counts as having no comment: its text keys are
    masked and its textual queries see only the null token. `comment_dropout` (training only)
    drops a sample's whole text the same way, so the model learns that case.

    modality: 'both'; 'image' (no text encoder is built or run, no textual queries, and the
    instance's `uses_text` is False); 'text' (no image encoder is built or run).

    Args:
        image_encoder, text_encoder: FrozenImageEncoder / FrozenTextEncoder keyword arguments.
        num_visual_queries, num_text_queries: learnable queries per modality.
        dim, num_heads, depth, mlp_ratio, dropout: the query transformer.
        self_attn: 'joint' (one attention over all queries: cross-modal interaction) or 'separate'.
        ffn: 'shared' or 'separate' (per modality).
        comment_dropout: training-only probability of dropping a sample's whole text.
        empty_text_tokens: a text with at most this many attended tokens counts as missing.
        head_hidden: hidden width of the head (default: dim).
        num_bins: score bins (10 for AVA).
    """

    uses_text = True  # the architecture contract (iaa_bench/models/contract.py); `modality` narrows it
    outputs_dist = True

    def __init__(self, image_encoder: dict = None, text_encoder: dict = None, num_visual_queries: int = 32,
                 num_text_queries: int = 32, dim: int = 768, num_heads: int = 12, depth: int = 6,
                 mlp_ratio: float = 4.0, dropout: float = 0.1, self_attn: str = "joint", ffn: str = "shared",
                 modality: str = "both", comment_dropout: float = 0.0, empty_text_tokens: int = 2,
                 head_hidden: int = None, num_bins: int = 10):
        super().__init__()
        if modality not in _BRANCHES or self_attn not in ("joint", "separate") or ffn not in ("shared", "separate"):
            raise ValueError(f"modality must be one of {list(_BRANCHES)}, self_attn 'joint'|'separate', "
                             f"ffn 'shared'|'separate'; got {modality!r}, {self_attn!r}, {ffn!r}")
        self.branches = _BRANCHES[modality]
        self.uses_image, self.uses_text = "visual" in self.branches, "textual" in self.branches
        self.comment_dropout, self.empty_text_tokens = comment_dropout, empty_text_tokens

        # The only place the frozen encoders live; absent branches build nothing.
        self.image_encoder = FrozenImageEncoder(**(image_encoder or {})) if "visual" in self.branches else None
        self.text_encoder = FrozenTextEncoder(**(text_encoder or {})) if self.uses_text else None

        encoders = {"visual": self.image_encoder, "textual": self.text_encoder}
        num_queries = {"visual": num_visual_queries, "textual": num_text_queries}
        self.context_proj = nn.ModuleDict({
            b: nn.Sequential(nn.Linear(encoders[b].out_dim, dim), nn.LayerNorm(dim)) for b in self.branches})
        self.queries = nn.ParameterDict({b: nn.Parameter(torch.zeros(1, num_queries[b], dim)) for b in self.branches})
        self.null_text = nn.Parameter(torch.zeros(1, 1, dim)) if self.uses_text else None
        self.blocks = nn.ModuleList([
            MultimodalInteractionBlock(dim, num_heads, mlp_ratio, dropout, self.branches, self_attn, ffn)
            for _ in range(depth)])
        self.head = DistributionHead(dim * len(self.branches), head_hidden or dim, num_bins, dropout)
        self._init_weights()

    def _init_weights(self):
        """BERT/Q-Former initialisation (normal, std 0.02) for everything trainable."""
        for name, module in self.named_modules():
            if name.startswith(("image_encoder", "text_encoder")):
                continue
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for p in [*self.queries.values(), *([self.null_text] if self.uses_text else [])]:
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
        """The learnable queries and the null text token: embeddings, kept out of weight decay (timm)."""
        return {f"queries.{b}" for b in self.queries} | ({"null_text"} if self.uses_text else set())

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Frozen image features (B, N, C) of [0, 1] images."""
        return self.image_encoder(img)

    def encode_text(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Frozen text features (B, L, C) of token ids and attention mask."""
        return self.text_encoder(text_ids, text_mask)

    def _text_context(self, text_ids, text_mask, text_feats, batch_size: int):
        """Projected text tokens + the null token, and the key mask (missing/dropped texts masked)."""
        null = self.null_text.expand(batch_size, -1, -1)
        if text_feats is None and text_ids is None:
            return null, None
        if text_feats is None:
            text_feats = self.encode_text(text_ids, text_mask)
        if text_mask is None:
            text_mask = torch.ones(text_feats.shape[:2], dtype=torch.bool, device=text_feats.device)
        text_mask = text_mask.bool()
        has_text = text_mask.sum(dim=1) > self.empty_text_tokens
        if self.training and self.comment_dropout > 0:
            has_text &= torch.rand(batch_size, device=has_text.device) >= self.comment_dropout
        keys = torch.cat([self.context_proj["textual"](text_feats), null], dim=1)
        key_mask = F.pad(text_mask & has_text[:, None], (0, 1), value=True)
        return keys, key_mask

    def forward_features(self, img=None, text_ids=None, text_mask=None, *, image_feats=None,
                         text_feats=None) -> torch.Tensor:
        """Mean visual queries ‖ mean textual queries (B, dim * branches) after the MMIBs."""
        contexts = {}
        if "visual" in self.branches:
            image_feats = self.encode_image(img) if image_feats is None else image_feats
            contexts["visual"] = (self.context_proj["visual"](image_feats), None)
        batch_size = next(x.shape[0] for x in (image_feats, text_feats, text_ids, img) if x is not None)
        if self.uses_text:
            contexts["textual"] = self._text_context(text_ids, text_mask, text_feats, batch_size)
        queries = {b: self.queries[b].expand(batch_size, -1, -1) for b in self.branches}
        for block in self.blocks:
            queries = block(queries, contexts)
        return torch.cat([queries[b].mean(dim=1) for b in self.branches], dim=-1)

    def forward_head(self, feat: torch.Tensor) -> torch.Tensor:
        """Pooled features -> score distribution (B, num_bins)."""
        return self.head(feat)

    def forward(self, img=None, text_ids=None, text_mask=None, return_mos=True, return_dist=False, *,
                image_feats=None, text_feats=None):
        """pyiqa DistIQAModel convention: mos (B, 1) on 1..num_bins, dist (B, num_bins), or [mos, dist].

        image_feats / text_feats: precomputed frozen-encoder outputs (feature cache) used
        instead of running the encoders; text_feats come with their text_mask.
        """
        dist = self.forward_head(self.forward_features(img, text_ids, text_mask, image_feats=image_feats,
                                                       text_feats=text_feats))
        outputs = ([dist_to_mos(dist)] if return_mos else []) + ([dist] if return_dist else [])
        return outputs if len(outputs) > 1 else outputs[0]
