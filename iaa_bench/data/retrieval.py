"""Retrieved comments for images that have none: the K nearest training images lend theirs.

A network declaring `missing_text = 'retrieve'` (MMLQ `missing_text: retrieve`, `retrieve_k`)
gets, with every batch, `lent_text_feats` / `lent_text_mask`: the cached text features of the
K training images nearest to each image by the frozen image encoder's pooled features (mean
over its tokens, cosine similarity, exact search by one batched matmul on the model's device,
once per image: neighbours are remembered by image path). The network uses them
for an image without comments of its own (or whose comments training drops), marked as
retrieved. Each neighbour lends at most max_tokens / K of its tokens, nearest first, so all K
are heard within the text budget.

No leakage: candidates are training images only, with comments; an image never retrieves a
file with its own content hash (itself, or a duplicate under another id), nor a training image
with the same pooled features (the same picture, however it arrived: an image given as a tensor,
as pyiqa's metric interface passes it, has no file to hash).

The index (pooled training features, content hashes, names, and the training split's
text-cache folder whose features are lent) is built from the feature caches when
training starts and saved as `experiments/<name>/retrieval_index.pt`, so test.py, the
benchmark and infer.py retrieve from the same training images without reading the dataset.
"""
import logging
import os
from os import path as osp

import numpy as np
import torch
import torch.nn.functional as F

from iaa_bench.data.feature_cache import build_cache, cache_options, open_cache
from iaa_bench.data.feature_cache import file_sha256 as content_hash  # equal for byte-identical duplicates
from iaa_bench.models import contract
from iaa_bench.models.checkpoint import bare
from iaa_bench.utils.errors import MissingInputError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)

INDEX_FILE = "retrieval_index.pt"
# Cosine similarity from which a training image counts as the query's own picture. A picture's
# features, recomputed, match its index row (fp16 cache, fp16 index) to within ~2e-7; distinct
# pictures stayed below 1 - 2.5e-4 even under a random-init encoder (tests' tiny MMLQ, measured).
SAME_PICTURE = 1 - 1e-5


def pooled(image_feats: torch.Tensor) -> torch.Tensor:
    """(B, tokens, C) frozen image features -> (B, C) unit vectors (mean over tokens)."""
    return F.normalize(image_feats.float().mean(1), dim=-1)


def build_index(net, dataset, cache_opt: dict, device, empty_text_tokens: int, rank: int = 0,
                world_size: int = 1) -> dict:
    """The retrieval index of a training split, from its feature cache (built first if absent; every rank calls)."""
    caches = build_cache(net, dataset, cache_opt, device, rank, world_size, show_progress=False)
    image, text = caches["image"], caches["text"]
    feats = [pooled(torch.from_numpy(np.asarray(image.image[i:i + 256, 0], np.float32))) for i in range(0, image.n, 256)]
    paths = [dataset.image_path(i) for i in range(len(dataset))]
    return {"pooled": torch.cat(feats).half(), "sha256": [content_hash(p) for p in paths],
            "names": [osp.basename(p) for p in paths], "cache_folder": osp.abspath(text.folder),
            "has_comments": torch.from_numpy(text.text_lengths > empty_text_tokens)}


class Retriever:
    """Nearest training images of a batch and the text features they lend (see module docstring)."""

    def __init__(self, index: dict, k: int, max_tokens: int, device="cpu"):
        self.index, self.k, self.per_neighbour = index, k, max(1, max_tokens // k)
        self.files = open_cache(index["cache_folder"])
        self.pooled = index["pooled"].float().to(device)
        self.norms = self.pooled.norm(dim=1)  # not exactly 1 once stored in fp16
        # images without comments have nothing to lend: never candidates
        self.no_comments = torch.where(index["has_comments"], 0.0, -torch.inf).to(device)
        self.hash_rows = {}
        for row, digest in enumerate(index["sha256"]):
            self.hash_rows.setdefault(digest, []).append(row)
        self._rows = {}  # image path -> its neighbours, searched once per image

    def neighbours(self, query: torch.Tensor, paths: list | None = None) -> torch.Tensor:
        """(B, k) training rows nearest to unit vectors `query` (B, C), never the same picture: not the
        same pooled features (`SAME_PICTURE`) nor, where `paths` names the image files, the same content.

        Neighbours of a path are searched once; images without a path (None) every time.
        """
        paths = list(paths) if paths is not None else [None] * len(query)
        todo = [b for b, path in enumerate(paths) if path is None or path not in self._rows]
        found = {}
        if todo:
            sims = query[todo].float().to(self.pooled.device) @ self.pooled.T
            sims[sims / self.norms >= SAME_PICTURE] = -torch.inf
            sims += self.no_comments
            for row, b in enumerate(todo):
                if paths[b] is not None:
                    sims[row, self.hash_rows.get(content_hash(paths[b]), [])] = -torch.inf
            for b, rows in zip(todo, sims.topk(self.k, dim=1).indices.cpu()):
                found[b] = rows
                if paths[b] is not None:
                    self._rows[paths[b]] = rows
        return torch.stack([found[b] if b in found else self._rows[path] for b, path in enumerate(paths)])

    def lend(self, rows: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Text features (B, T, C) and mask (B, T) lent by `rows`: each one's first tokens, nearest first."""
        offsets, lengths = self.files.text_offsets, np.minimum(self.files.text_lengths, self.per_neighbour)
        spans = [[(int(offsets[r]), int(lengths[r])) for r in sample] for sample in rows.tolist()]
        width = max(sum(n for _, n in sample) for sample in spans)
        feats = torch.zeros(len(spans), width, self.files.text.shape[1])
        mask = torch.zeros(len(spans), width, dtype=torch.bool)
        for b, sample in enumerate(spans):
            parts = [torch.from_numpy(np.asarray(self.files.text[start:start + n], np.float32)) for start, n in sample]
            joined = torch.cat(parts)
            feats[b, :len(joined)], mask[b, :len(joined)] = joined, True
        return feats.to(device), mask.to(device)

    def inputs(self, net, batch: dict, paths: list | None) -> dict:
        """The retrieval inputs of a batch: `lent_text_feats`, `lent_text_mask` (and `image_feats`, computed once).

        paths: the images' files (None: tensors without one); `last_lenders` then names each image's lenders.
        """
        image_feats = batch.get("image_feats")
        if image_feats is None:
            with torch.no_grad():
                image_feats = contract.frozen_encoders(net)["image"](batch["img"])
        rows = self.neighbours(pooled(image_feats), paths)
        self.last_lenders = [[self.index["names"][r] for r in sample] for sample in rows.tolist()]
        feats, mask = self.lend(rows, image_feats.device)
        return {"image_feats": image_feats, "lent_text_feats": feats, "lent_text_mask": mask}


def index_path(opt: dict) -> str:
    """experiments/<name>/retrieval_index.pt of the run whose network `opt` describes."""
    return osp.join(opt["root_path"], "experiments", opt["name"], INDEX_FILE)


def attach_retriever(opt: dict, model, train_dataset=None) -> None:
    """Give `model` (an IAAModel) a Retriever when its network retrieves comments; no-op otherwise.

    train_dataset: the training split, to build and save the index (training); without it the
    run's saved index is loaded (evaluation, inference).
    """
    net = bare(model.net)
    if getattr(net, "missing_text", None) != "retrieve":
        return
    path = index_path(opt)
    if train_dataset is not None:
        index = build_index(net, train_dataset, cache_options(opt), model.device, net.empty_text_tokens,
                            opt.get("rank", 0), opt.get("world_size", 1))
        if opt.get("rank", 0) == 0:
            os.makedirs(osp.dirname(path), exist_ok=True)
            torch.save(index, path)
        log.info(f"Retrieval index: {int(index['has_comments'].sum())} training images with comments lend theirs "
                 f"(k={net.retrieve_k}) to images without; saved to {path}")
        model.retriever = Retriever(index, net.retrieve_k, net.text_encoder.max_tokens, model.device)
    else:
        model.retriever = run_retriever(opt, net, model.device)


def run_retriever(opt: dict, net, device="cpu") -> Retriever | None:
    """The Retriever of a trained run (its saved index) when its network retrieves comments, else None."""
    if getattr(net, "missing_text", None) != "retrieve":
        return None
    path = index_path(opt)
    if not osp.isfile(path):
        raise MissingInputError(f"{opt['name']} retrieves comments (network.missing_text: retrieve) but its run has no "
                                f"{path}: train it first (training writes the index)")
    return Retriever(torch.load(path, weights_only=True), net.retrieve_k, net.text_encoder.max_tokens, device)
