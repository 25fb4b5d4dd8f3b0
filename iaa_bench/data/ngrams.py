"""Hashed word n-grams: the text input of encoder-free bag-of-n-grams models.

fastText-style: lower-cased word unigrams and bigrams of an image's whole comment set
(no truncation to an encoder's length), each hashed (CRC-32, stable across processes,
unlike Python's `hash`) into one of `buckets` ids. A sample's `text_ids` are its n-gram
ids in text order and `text_mask` marks them, so they travel like a tokenizer's output;
lengths differ per sample and the loaders pad each batch to its longest.
"""
import re
import zlib

import torch

HASHED_NGRAMS = "hashed-ngrams"
_WORD = re.compile(r"\w+")


class HashedNgrams:
    """Text -> hashed word n-gram ids (1..ngram words each)."""

    def __init__(self, buckets: int = 2 ** 18, ngram: int = 2):
        if buckets < 2 or ngram < 1:
            raise ValueError(f"hashed n-grams need buckets >= 2 and ngram >= 1, got {buckets}, {ngram}")
        self.buckets, self.ngram = int(buckets), int(ngram)

    def ids(self, text: str) -> list:
        words = _WORD.findall(text.lower())
        grams = [" ".join(words[i:i + n]) for n in range(1, self.ngram + 1) for i in range(len(words) - n + 1)]
        return [zlib.crc32(g.encode("utf-8")) % self.buckets for g in grams]

    def __call__(self, text: str) -> dict:
        ids = torch.tensor(self.ids(text), dtype=torch.long)
        return {"text_ids": ids, "text_mask": torch.ones_like(ids)}
