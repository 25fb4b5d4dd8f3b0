"""AVA images + AVA-Comments text, read from a folder written by `iaa_bench/prepare_ava.py`.

One dataset serves multimodal and image-only models with the same splits: without a
`text` option no text is loaded or returned.

Options (pyiqa dataset schema):
    name, type: AVACommentsDataset, phase: train|val|test (set by pyiqa from the key)
    dataroot: the prepared folder (meta_info.csv, report.json, comments store)
    dataroot_target: image folder; default: `image_dir` of report.json
    split: train|val|test (default: phase) -- rows with that `official_split` code
    augment: pyiqa's transform options (resize, hflip, random_crop, ...); img_range: 1.0
    exif_transpose: true (false: pyiqa-identical preprocessing, EXIF orientation ignored)
    max_image_pixels: larger images are unreadable (`bad_image` applies); default PIL's limit
    text: {tokenizer: name or path ('offline-minilm'), max_length: 512, max_chunks: 1,
           max_tokens: None, separator: ' ', comment_fraction: 1.0, seed: 0,
           withhold_comments: false (every image as if it had no comments: the photo-only
           protocol)}; `tokenizer: hashed-ngrams` (with `buckets`, `ngram`) gives hashed word
           n-grams of the whole comment set instead (iaa_bench/data/ngrams.py; no max_length, no chunks)

Sample keys: `img` (3,H,W float in [0, img_range]), `mos_dist` (10 vote shares, sum 1),
`mos_label` (shape (1,), MOS on the 1..10 scale -- pyiqa's AVADataset divides it by 10,
this one does not), `img_path`; with `text` also `text_ids` and `text_mask` (LongTensor
(max_length,), or (max_chunks, max_length) when max_chunks > 1; mask 1 = real token),
padded so default collation works.

Comments of an image are tokenised here, once per sample, into chunks of at most
max_length tokens (each with the tokenizer's special tokens) that the text encoder reads
one by one, so attention cost grows linearly with the comment set instead of
quadratically. A chunk ends between two comments when the next comment fits whole into
a fresh chunk; longer comments continue across chunks. At most `max_chunks` chunks and
`max_tokens` tokens in all (default max_chunks x max_length) are kept; `max_chunks: 1`
is one pass over the comments joined with `separator`, truncated to max_length.
With comment_fraction < 1, ceil(fraction * n) comments are kept (the
authors' reduced-comment rule: authors' inference script, third-party copy; at least one when
the image has any and fraction > 0), drawn by an RNG seeded by (seed, index, epoch) and
kept in their original order; `epoch` changes only in the train phase (`set_epoch`), so
val/test draws are fixed. An image without comments gets the tokenisation of the empty
string ([CLS] [SEP] for BERT-like tokenizers) with a valid mask.

Scale: the comments store keeps 24 bytes of index per image in memory and reads one
record per sample with `os.pread`, so DataLoader workers (forked) hold no comment text
beyond the current batch. See `iaa_bench/prepare_ava.py` for decode costs and where a
frozen-feature cache plugs in.
"""
import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iaa_bench.data.ava_formats import NUM_BINS, SPLIT_CODES, CommentStore
from iaa_bench.data.images import load_image, loading_options
from iaa_bench.data.ngrams import HASHED_NGRAMS, HashedNgrams
from iaa_bench.utils.pyiqa_adapter import DATASET_REGISTRY, BaseIQADataset

TEXT_DEFAULTS = {"max_length": 512, "max_chunks": 1, "max_tokens": None, "separator": " ", "comment_fraction": 1.0,
                 "seed": 0, "withhold_comments": False}


def token_budget(text_opt: dict) -> int:
    """Encoder tokens (special tokens included) one comment set may fill, over all its chunks."""
    return int(text_opt["max_tokens"] or text_opt["max_chunks"] * text_opt["max_length"])


def pack_chunks(pieces: list, sep: list, room: int, special: int, max_chunks: int, budget: int) -> tuple[list, int]:
    """Token lists of comments packed into at most `max_chunks` chunks of `room` tokens; (chunks, comment tokens kept).

    `special` tokens per chunk count against `budget`. A comment that does not fit the
    open chunk starts a new one when it fits whole into it (a boundary between comments);
    otherwise it is split. `sep` joins comments within a chunk and is not counted as kept.
    """
    chunks, used, kept = [[]], special, 0

    def can_open():
        return len(chunks) < max_chunks and budget - used > special

    for piece in pieces:
        tokens, lead = (sep + piece, len(sep)) if chunks[-1] else (piece, 0)
        while tokens:
            free = min(room - len(chunks[-1]), budget - used)
            if len(tokens) > free and chunks[-1] and len(piece) <= room and can_open():
                chunks.append([])
                used += special
                tokens, lead = piece, 0
                continue
            take, tokens = tokens[:free], tokens[free:]
            chunks[-1] += take
            used += len(take)
            kept += max(0, len(take) - lead)
            lead = max(0, lead - len(take))
            if tokens:
                if not can_open():
                    return chunks, kept
                chunks.append([])
                used += special
    return chunks, kept


def special_tokens(tokenizer) -> tuple[list, list]:
    """The ids a tokenizer puts before and after a single text ([CLS] / [SEP] for BERT)."""
    bare, full = tokenizer("a", add_special_tokens=False)["input_ids"], tokenizer("a")["input_ids"]
    start = next(i for i in range(len(full)) if full[i:i + len(bare)] == bare)
    return full[:start], full[start + len(bare):]


def comment_tokens(tokenizer, comments: list, text_opt: dict) -> tuple[dict, int, int]:
    """(`text_ids`/`text_mask`, comment tokens kept, comment tokens in all) of one comment set."""
    length, max_chunks = text_opt["max_length"], text_opt["max_chunks"]
    prefix, suffix = special_tokens(tokenizer)
    special = len(prefix) + len(suffix)
    pieces = tokenizer(list(comments), add_special_tokens=False)["input_ids"] if comments else []
    separator = text_opt["separator"]
    sep = tokenizer(separator, add_special_tokens=False)["input_ids"] if separator.strip() else []
    chunks, kept = pack_chunks(pieces, sep, length - special, special, max_chunks, token_budget(text_opt))
    ids = torch.full((max_chunks, length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((max_chunks, length), dtype=torch.long)
    for row, chunk in enumerate(chunks):
        with_special = prefix + chunk + suffix
        ids[row, :len(with_special)] = torch.tensor(with_special)
        mask[row, :len(with_special)] = 1
    if max_chunks == 1:
        ids, mask = ids[0], mask[0]
    return {"text_ids": ids, "text_mask": mask}, kept, sum(map(len, pieces))


def build_tokenizer(text_opt: dict):
    """The dataset's text tokenizer (shared with infer): a pre-trained encoder's, or hashed n-grams."""
    if text_opt["tokenizer"] == HASHED_NGRAMS:
        return HashedNgrams(text_opt.get("buckets", 2 ** 18), text_opt.get("ngram", 2))
    from iaa_bench.utils.pretrained import load_tokenizer

    return load_tokenizer(text_opt["tokenizer"], "datasets.*.text.tokenizer")


def tokenize_comments(tokenizer, comments: list, text_opt: dict) -> dict:
    """`text_ids`, `text_mask` of one comment set (shared with infer and metrics): chunked as `text_opt`
    says for an encoder's tokenizer, every hashed n-gram of the whole text for `HashedNgrams`."""
    if isinstance(tokenizer, HashedNgrams):
        return tokenizer(text_opt["separator"].join(comments))
    return comment_tokens(tokenizer, comments, {**TEXT_DEFAULTS, **text_opt})[0]


@DATASET_REGISTRY.register()
class AVACommentsDataset(BaseIQADataset):
    """AVA images, vote distributions and (optionally) tokenised comments of one split."""

    def init_path_mos(self, opt):
        root = Path(opt["dataroot"]).expanduser()
        with open(root / "report.json", encoding="utf-8") as f:
            recorded = Path(json.load(f)["image_dir"])
        self.image_dir = Path(opt["dataroot_target"]).expanduser() if opt.get("dataroot_target") else root / recorded
        self.meta_info = pd.read_csv(root / "meta_info.csv")
        self.paths_mos = self.meta_info.values.tolist()
        self.text_opt = {**TEXT_DEFAULTS, **opt["text"]} if opt.get("text") else None
        self.loading = loading_options(opt)
        self.store = CommentStore(root)
        self.epoch = 0
        if self.text_opt is not None:
            self.tokenizer = build_tokenizer(self.text_opt)

    def get_split(self, opt):
        split = opt.get("split", self.phase)
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
        codes = self.meta_info["official_split"].tolist()
        self.paths_mos = [row for row, code in zip(self.paths_mos, codes) if code == SPLIT_CODES[split]]
        ids = [int(Path(row[0]).stem) for row in self.paths_mos]
        self._comment_offsets, self._comment_lengths = self.store.spans(ids)

    def set_epoch(self, epoch: int):
        """Draw a new comment subset per training epoch (no effect outside phase 'train')."""
        self.epoch = epoch

    def comments(self, index: int) -> list:
        """All stored comments of sample `index`, in file order."""
        return self.store.read(self._comment_offsets[index], self._comment_lengths[index])

    def selected_comments(self, index: int) -> list:
        """The comments fed to the tokenizer: all, a seeded `comment_fraction` of them, or none when withheld."""
        if self.text_opt["withhold_comments"]:
            return []
        comments = self.comments(index)
        fraction = self.text_opt["comment_fraction"]
        if fraction >= 1.0 or not comments:
            return comments
        keep = math.ceil(round(fraction * len(comments), 9))  # rounded first: 0.3 * 10 is 3.0000000000000004
        epoch = self.epoch if self.phase == "train" else 0
        rng = np.random.default_rng([self.text_opt["seed"], index, epoch])
        return [comments[i] for i in sorted(rng.choice(len(comments), size=keep, replace=False))]

    def image_path(self, index: int) -> str:
        return str(self.image_dir / self.paths_mos[index][0])

    def labels(self, index: int) -> dict:
        """`mos_dist`, `mos_label`, `img_path` of a sample without decoding its image (feature cache)."""
        row = self.paths_mos[index]
        votes = torch.tensor(row[2:2 + NUM_BINS], dtype=torch.float32)
        return {"mos_dist": votes / votes.sum(), "mos_label": torch.tensor([row[1]], dtype=torch.float32),
                "img_path": self.image_path(index)}

    def cache_identity(self) -> dict:
        """Everything that determines what the frozen encoders see of this split (the feature cache's key).

        Image files count by path, size and mtime_ns: an image overwritten under the same name changes the key.
        """
        from iaa_bench.data.feature_cache import file_sha256, image_files_sha256

        rows = json.dumps(self.paths_mos, default=str).encode()
        identity = {"type": type(self).__name__, "phase": self.phase, "split": self.opt.get("split", self.phase),
                    "rows_sha256": hashlib.sha256(rows).hexdigest(), "image_dir": str(self.image_dir),
                    "augment": dict(self.opt.get("augment") or {}), "img_range": self.img_range, "text": None,
                    "image_loading": self.loading,
                    "image_files_sha256": image_files_sha256(self.image_path(i) for i in range(len(self)))}
        if self.text_opt is not None:
            identity["text"] = {**{k: self.text_opt[k] for k in ("tokenizer", *TEXT_DEFAULTS)},
                                "tokenizer_class": type(self.tokenizer).__name__,
                                "vocab_size": self.tokenizer.vocab_size, "comments_sha256": file_sha256(self.store.path)}
        return identity

    def with_augment(self, augment: dict) -> "AVACommentsDataset":
        """A shallow copy of this split whose images go through `augment` instead (same rows and text)."""
        view = copy.copy(self)
        view.get_transforms({**self.opt, "augment": augment})
        return view

    def tokens(self, index: int) -> dict:
        """`text_ids`, `text_mask` of a sample's selected comments, without its image."""
        return tokenize_comments(self.tokenizer, self.selected_comments(index), self.text_opt)

    def token_coverage(self, max_images: int = 2000) -> dict | None:
        """Share of comment tokens the chunks keep, over the split or a seeded sample of `max_images`
        (None for hashed n-grams, which read the whole comment set)."""
        if isinstance(self.tokenizer, HashedNgrams):
            return None
        n = len(self)
        sample = range(n) if n <= max_images else np.random.default_rng(0).choice(n, max_images, replace=False)
        kept = total = cut = 0
        for index in sample:
            _, k, t = comment_tokens(self.tokenizer, self.selected_comments(int(index)), self.text_opt)
            kept, total, cut = kept + k, total + t, cut + (k < t)
        return {"images": len(sample), "of": n, "images_cut": cut, "tokens_kept": kept, "tokens": total,
                "share_kept": kept / total if total else 1.0, "budget": token_budget(self.text_opt)}

    def __getitem__(self, index):
        sample = self.labels(index)
        sample["img"] = self.trans(load_image(sample["img_path"], **self.loading)) * self.img_range
        if self.text_opt is not None:
            sample.update(self.tokens(index))
        return sample
