r"""Bag of hashed word n-grams -> score distribution: the encoder-free text baseline.

Reference:
    Joulin, Grave, Bojanowski, Mikolov. "Bag of Tricks for Efficient Text Classification."
    EACL 2017 (fastText).

The mean of the embeddings of an image's hashed word uni+bigrams (its whole comment set,
no length limit; `iaa_bench/data/ngrams.py`) goes through one linear layer to a softmax
over the score bins: a linear model of the n-gram counts with a rank-`dim` weight, as
fastText. It shows how much of a multimodal model's accuracy plain words already give.
"""
import torch
from torch import nn

from iaa_bench.data.ngrams import HASHED_NGRAMS
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY, dist_to_mos


@ARCH_REGISTRY.register()
class BagOfNgrams(nn.Module):
    """fastText-style bag of hashed n-grams -> linear -> softmax over `num_bins`.

    Args:
        text_encoder: {name: 'hashed-ngrams', buckets, ngram}: the dataset hashes word
            1..ngram-grams into `buckets` ids (this dict tells it to, as a pre-trained
            encoder's options tell it which tokenizer to use).
        dim: embedding width (fastText's hidden size).
        num_bins: score bins.
    """

    uses_image, uses_text, outputs_dist = False, True, True  # the architecture contract

    def __init__(self, text_encoder: dict = None, dim: int = 64, num_bins: int = 10):
        super().__init__()
        text_encoder = self.text_settings({"text_encoder": text_encoder})
        if text_encoder["tokenizer"] != HASHED_NGRAMS:
            raise ValueError(f"BagOfNgrams reads `{HASHED_NGRAMS}` text, got text_encoder.name {text_encoder['tokenizer']!r}")
        self.embed = nn.EmbeddingBag(int(text_encoder["buckets"]), dim, mode="sum")
        self.head = nn.Linear(dim, num_bins)
        nn.init.uniform_(self.embed.weight, -1.0 / dim, 1.0 / dim)  # fastText's initialisation
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def text_settings(cls, network_opt: dict) -> dict:
        """Hashed n-grams of the whole comment set (no max_length), as `text_encoder` asks."""
        own = {"name": HASHED_NGRAMS, "buckets": 2 ** 18, "ngram": 2, **(network_opt.get("text_encoder") or {})}
        return {"tokenizer": own["name"], "max_length": None, "buckets": own["buckets"], "ngram": own["ngram"]}

    def no_weight_decay(self) -> set:
        """The n-gram embeddings: rows absent from a batch would decay toward 0 at every step."""
        return {"embed.weight"}

    def forward_features(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Mean n-gram embedding (B, dim); a text without n-grams gives zeros."""
        if text_ids.shape[1] == 0:  # a batch whose texts are all empty
            return self.embed.weight.new_zeros(len(text_ids), self.embed.embedding_dim)
        weights = text_mask.float() / text_mask.sum(1, keepdim=True).clamp(min=1)
        return self.embed(text_ids, per_sample_weights=weights)

    def forward_head(self, feat: torch.Tensor) -> torch.Tensor:
        return self.head(feat).softmax(dim=-1)

    def forward(self, img=None, text_ids=None, text_mask=None, return_mos=True, return_dist=False):
        """mos (B, 1), dist (B, num_bins), or [mos, dist]; no comments (text_ids None) -> the prior."""
        if text_ids is None:
            feat = self.head.weight.new_zeros(img.shape[0], self.embed.embedding_dim)
        else:
            feat = self.forward_features(text_ids, torch.ones_like(text_ids) if text_mask is None else text_mask)
        dist = self.forward_head(feat)
        outputs = ([dist_to_mos(dist)] if return_mos else []) + ([dist] if return_dist else [])
        return outputs if len(outputs) > 1 else outputs[0]
