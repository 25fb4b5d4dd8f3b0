"""Frozen-feature cache: each frozen encoder's output is computed once per sample and view.

MMLQ trains only its query transformer and head; its frozen encoders cost ~5x the
trainable step on CPU. With `feature_cache: {enabled: true}` the encoders the
network declares (`frozen_encoders()`, see `iaa_bench.models.contract`) run once over each
split, and batches then carry `image_feats`, `text_feats` + `text_mask` read from
memory-mapped files: no image is decoded and no comment tokenised, so a cached
epoch costs about the trainable part only, and its memory does not grow with the split.

Options (top level): `feature_cache: {enabled, dir (default feature_cache; relative to the output root),
dtype: float16|float32, batch_size (build; default the loader's), flush_seconds: 30}`.

One cache is a folder `<dir>/<split>-<image|text>-<key>` per frozen encoder; the key hashes
everything that determines its content (the encoder's identity; deterministic
preprocessing, image-loading options, views and each image file's path, size and
mtime_ns, or tokenizer and max_length, the comments file's content and the image files and
image-loading options (whose readability it records); the split's rows
-- names and vote counts --; storage dtype), so any change builds a new folder, and every
network with the same encoder on the same data reads the same folder (MMLQ, its ablations
and the pooled baselines share one image and one text cache, whatever else differs). Its
size is counted (tokens first) and checked against the free disk space before anything is
written. Files:
    meta.json   description, shapes, `complete` (set by rank 0 once every sample is done)
    image.bin   (n, views, tokens, dim): view 0 the resized image, view 1 its hflip
                (only when the augment has hflip; a seeded per-sample coin picks one)
    text.bin    (sum of real token counts, dim): each text at its real length
    text_lengths.npy  tokens per sample (offsets are its cumulative sum)
    done.bin    one byte per sample: 1 once its features are flushed (so an interrupted
                build resumes where it stopped), 2 when its image was unreadable and
                `bad_image: skip` left it out (the cached loader skips it the same way;
                a text cache reads each image too, so text-only networks skip the same images)
Under DDP each rank fills its own shard (indices rank::world) and rank 0 finalises after
a barrier; ranks must share one file system view (one node).

Random transforms other than hflip cannot be cached and are refused, naming the option.
"""
import functools
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import time
from os import path as osp

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm import tqdm

from iaa_bench.data.loaders import ignore_stop_signals
from iaa_bench.models import contract
from iaa_bench.models.checkpoint import bare
from iaa_bench.utils.atomic import atomic_write_json
from iaa_bench.utils.errors import FeatureCacheError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME

log = logging.getLogger(LOGGER_NAME)

CACHE_VERSION = 1
OPTION_DEFAULTS = {"enabled": False, "dir": None, "dtype": "float16", "batch_size": None, "flush_seconds": 30.0}
STORE_DTYPES = {"float16": np.float16, "float32": np.float32}
# pyiqa augment keys whose output is a function of the image alone (all others draw random numbers)
DETERMINISTIC_AUGMENTS = ("resize", "center_crop", "adaptive_resize", "ada_pad", "totensor")
# what a dataset must provide: per-sample labels and tokens without its image, its identity, a re-augmented copy
DATASET_METHODS = ("labels", "tokens", "cache_identity", "with_augment")


# --------------------------------------------------------------------------- options and key
def option_problems(opt: dict) -> list:
    """What is wrong with `feature_cache:` and what it cannot reproduce, read from the options alone.

    Answered by the option check, before any folder is created or any image read.
    """
    raw = opt.get("feature_cache")
    if raw is None:
        return []
    if not isinstance(raw, dict):
        return [f"option `feature_cache` must be a mapping, got {raw!r}"]
    problems = [f"unknown option `feature_cache.{key}`" for key in sorted(set(raw) - set(OPTION_DEFAULTS))]
    cache_opt = {**OPTION_DEFAULTS, **raw}
    if not isinstance(cache_opt["enabled"], bool):
        problems.append(f"option `feature_cache.enabled` must be true or false, got {cache_opt['enabled']!r}")
    if cache_opt["dtype"] not in STORE_DTYPES:
        problems.append(f"option `feature_cache.dtype` must be one of {list(STORE_DTYPES)}, got {cache_opt['dtype']!r}")
    if cache_opt["dir"] is not None and not isinstance(cache_opt["dir"], str):
        problems.append(f"option `feature_cache.dir` must be a folder path, got {cache_opt['dir']!r}")
    size = cache_opt["batch_size"]
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        problems.append(f"option `feature_cache.batch_size` must be a positive int, got {size!r}")
    flush = cache_opt["flush_seconds"]
    if not isinstance(flush, (int, float)) or isinstance(flush, bool) or not 0 < flush < float("inf"):
        problems.append(f"option `feature_cache.flush_seconds` must be a positive number, got {flush!r}")
    if cache_opt["enabled"] is True:
        for phase, ds in (opt.get("datasets") or {}).items():
            if not isinstance(ds, dict):
                continue
            problems += [f"option `datasets.{phase}.augment.{key}`{RANDOM_AUGMENT}"
                         for key in random_augments(ds.get("augment"))]
            fraction = (ds.get("text") or {}).get("comment_fraction", 1.0)
            if phase == "train" and isinstance(fraction, (int, float)) and fraction < 1:
                problems.append(f"option `datasets.train.text.comment_fraction`{COMMENT_SUBSET}")
    return problems


RANDOM_AUGMENT = " is a random transform: cached features cannot reproduce it. Remove it, or set feature_cache.enabled: false"
COMMENT_SUBSET = (" < 1 draws new comments every epoch: cached text features cannot reproduce it. Set it to 1.0, "
                  "or feature_cache.enabled: false")


def random_augments(augment) -> list:
    """The keys of a pyiqa `augment` mapping that draw random numbers (all but resize, centre crop, hflip...)."""
    return [key for key, value in (augment or {}).items() if key not in DETERMINISTIC_AUGMENTS + ("hflip",) and value]


def cache_options(opt: dict) -> dict:
    problems = option_problems(opt)
    if problems:
        raise FeatureCacheError("; ".join(problems))
    cache_opt = {**OPTION_DEFAULTS, **(opt.get("feature_cache") or {})}
    # relative to the run's output root (like experiments/), so train.py and test.py share one cache
    cache_opt["dir"] = osp.join(opt.get("root_path", os.getcwd()), osp.expanduser(cache_opt["dir"] or "feature_cache"))
    return cache_opt


def image_views(data: dict) -> tuple:
    """Stored image views of a split (its `cache_identity()`), after refusing augments a cache cannot reproduce."""
    for key in random_augments(data["augment"]):
        raise FeatureCacheError(f"datasets.{data['phase']}.augment.{key}{RANDOM_AUGMENT}")
    return ("plain", "hflip") if data["augment"].get("hflip") else ("plain",)


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path) -> str:
    """Content hash of a file, computed once per (size, mtime) in a process."""
    st = os.stat(path)
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


def encoders_of(net) -> dict:
    """{'image': encoder, 'text': encoder} whose outputs the network takes precomputed (absent branches left out)."""
    found = contract.frozen_encoders(net)
    if not found:
        raise FeatureCacheError(f"feature_cache: network {type(net).__name__} has no frozen encoder whose output it "
                                "accepts as `image_feats` / `text_feats`; set feature_cache.enabled: false")
    return found


def describe(net, dataset, store_dtype: str, kinds=None) -> dict:
    """Everything that determines the content of a cache of the net's encoders `kinds`
    (default: all; 'image', 'text'); its hash is the folder key."""
    for method in DATASET_METHODS:
        if not hasattr(dataset, method):
            raise FeatureCacheError(f"feature_cache: dataset type {type(dataset).__name__} has no `{method}`; "
                                    "use AVACommentsDataset or set feature_cache.enabled: false")
    encoders = {k: e for k, e in encoders_of(net).items() if kinds is None or k in kinds}
    data = dataset.cache_identity()
    desc = {"version": CACHE_VERSION, "dtype": store_dtype,
            "dataset": {k: data[k] for k in ("type", "split", "rows_sha256", "image_dir")}}
    if "image" in encoders:
        augment = {k: v for k, v in data["augment"].items() if k != "hflip"}
        desc["image"] = {"encoder": encoders["image"].identity(), "augment": augment, "img_range": data["img_range"],
                         "views": image_views(data), "files_sha256": data["image_files_sha256"],
                         "loading": data["image_loading"]}
    if "text" in encoders:
        text = data["text"]
        if text is None:
            raise FeatureCacheError(f"feature_cache: dataset {data['split']} loads no text for the network's text encoder")
        if data["phase"] == "train" and text["comment_fraction"] < 1:
            raise FeatureCacheError(f"datasets.train.text.comment_fraction{COMMENT_SUBSET}")
        # the image files count too: their readability marks samples left out (`bad_image: skip`)
        desc["text"] = {"encoder": encoders["text"].identity(), **text, "image_files_sha256": data["image_files_sha256"],
                        "image_loading": data["image_loading"]}
    return desc


def image_files_sha256(paths) -> str:
    """Hash of image files' identities (path, size, mtime_ns): an image overwritten in place builds a new cache."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


def cache_folder(cache_dir: str, desc: dict) -> str:
    key = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]
    kinds = "+".join(k for k in ("image", "text") if k in desc)
    return osp.join(cache_dir, f"{desc['dataset']['split']}-{kinds}-{key}")


# --------------------------------------------------------------------------- storage
def _read_meta(folder: str):
    try:
        with open(osp.join(folder, "meta.json"), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _write_meta(folder: str, meta: dict) -> None:
    atomic_write_json(osp.join(folder, "meta.json"), meta)


class CacheFiles:
    """The memory maps of one cache folder (opened lazily, so forked or spawned workers open their own)."""

    def __init__(self, folder: str, meta: dict, mode: str = "r"):
        self.folder, self.meta, self.mode = folder, meta, mode
        self.n = meta["n"]
        if meta.get("text"):
            self.text_lengths = np.load(osp.join(folder, "text_lengths.npy"))
            self.text_offsets = np.concatenate([[0], np.cumsum(self.text_lengths)])
        self._maps = None

    def _open(self):
        meta, dtype = self.meta, STORE_DTYPES[self.meta["dtype"]]
        maps = {"done": np.memmap(osp.join(self.folder, "done.bin"), np.uint8, self.mode, shape=(self.n,))}
        if meta.get("image"):
            shape = (self.n, len(meta["image"]["views"]), meta["image"]["tokens"], meta["image"]["dim"])
            maps["image"] = np.memmap(osp.join(self.folder, "image.bin"), dtype, self.mode, shape=shape)
        if meta.get("text"):
            shape = (int(self.text_offsets[-1]), meta["text"]["dim"])
            maps["text"] = np.memmap(osp.join(self.folder, "text.bin"), dtype, self.mode, shape=shape)
        return maps

    def __getattr__(self, name):
        if name in ("done", "image", "text"):
            if self.__dict__.get("_maps") is None:
                self._maps = self._open()
            return self._maps[name]
        raise AttributeError(name)

    def __getstate__(self):
        return {**self.__dict__, "_maps": None}

    def flush(self):
        for name in ("image", "text"):
            if name in (self._maps or {}):
                self._maps[name].flush()


def planned_size(encoders: dict, dataset, views: int, store_dtype: str, show_progress: bool):
    """(bytes, text tokens per sample or None) of a cache, counted before anything is written."""
    itemsize = np.dtype(STORE_DTYPES[store_dtype]).itemsize
    n, size, lengths = len(dataset), 0, None
    if "image" in encoders:
        size += n * views * encoders["image"].num_tokens * encoders["image"].out_dim * itemsize
    if "text" in encoders:
        lengths = np.array([int(dataset.tokens(i)["text_mask"].sum()) for i in
                            tqdm(range(n), desc="feature cache: counting tokens", disable=not show_progress)], np.int64)
        size += int(lengths.sum()) * encoders["text"].out_dim * itemsize
    return size, lengths


def check_free_space(folder: str, size: int) -> None:
    """Refuse a cache larger than the free space of the disk it would be written to."""
    existing = folder
    while not osp.isdir(existing) and osp.dirname(existing) != existing:
        existing = osp.dirname(existing)
    free = shutil.disk_usage(existing).free
    if size > free:
        raise FeatureCacheError(
            f"feature cache {folder} needs {size / 2 ** 30:.2f} GiB ({size} bytes) but its disk has only "
            f"{free / 2 ** 30:.2f} GiB ({free} bytes) free: set feature_cache.dir to a larger disk, "
            "feature_cache.dtype: float16 (half of float32), or feature_cache.enabled: false")


def _allocate(folder: str, desc: dict, encoders: dict, dataset, store_dtype: str, show_progress: bool) -> dict:
    """Create a cache folder once its size is known and fits: zero-filled maps, meta.json last."""
    n = len(dataset)
    views = len(desc["image"]["views"]) if "image" in encoders else 0
    size, lengths = planned_size(encoders, dataset, views, store_dtype, show_progress)
    log.info(f"Feature cache {folder}: {n} samples, planned size {size / 2 ** 30:.2f} GiB ({store_dtype})")
    check_free_space(folder, size)
    os.makedirs(folder, exist_ok=True)
    meta = {"description": desc, "n": n, "dtype": store_dtype, "complete": False}
    if "image" in encoders:
        meta["image"] = {"views": desc["image"]["views"], "tokens": encoders["image"].num_tokens,
                         "dim": encoders["image"].out_dim}
    if "text" in encoders:
        np.save(osp.join(folder, "text_lengths.npy"), lengths)
        meta["text"] = {"dim": encoders["text"].out_dim, "tokens": int(lengths.sum())}
    files = CacheFiles(folder, meta, mode="w+")
    files.done  # noqa: B018  (creates every file at full size)
    files.flush()
    _write_meta(folder, meta)
    return meta


UNREADABLE = 2  # done.bin value of a sample whose image could not be read (`bad_image: skip`)


class _EncoderInputs(Dataset):
    """What the encoders need of a sample (its deterministic image view and tokens), and its index.

    The image is loaded for a text cache too (and dropped): an unreadable one is then marked,
    so a text-only network skips the images an image network skips (`bad_image`).
    """

    def __init__(self, dataset, indices, with_image: bool):
        self.dataset, self.indices, self.with_image = dataset, indices, with_image

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        sample = self.dataset[index]
        if not self.with_image:
            sample.pop("img", None)
        return {**sample, "index": index}


def _collate_encoder_inputs(samples) -> dict:
    """Readable samples collated; indices of unreadable ones (`bad_image: skip`) under `unreadable`."""
    good = [s for s in samples if "skipped_image" not in s]
    batch = default_collate(good) if good else {"index": torch.zeros(0, dtype=torch.long)}
    batch["unreadable"] = [s["index"] for s in samples if "skipped_image" in s]
    return batch


def deterministic_view(dataset):
    """`dataset` without hflip in its transform (the cache stores both views)."""
    return dataset.with_augment({k: v for k, v in dataset.cache_identity()["augment"].items() if k != "hflip"})


def _fill(files: CacheFiles, encoders: dict, dataset, indices, device, batch_size: int, num_workers: int,
          flush_seconds: float, show_progress: bool) -> None:
    """Encode `indices` not yet done; data is flushed before their done bytes, periodically and on exit.

    Every flush logs the samples done so far (a progress line for logs without a progress bar).
    """
    todo = [int(i) for i in indices if not files.done[i]]
    if not todo:
        return
    name = osp.basename(files.folder)
    if len(todo) < len(indices):
        log.info(f"Feature cache {name}: resuming an interrupted build, {len(indices) - len(todo)} of {len(indices)} "
                 "samples already encoded")
    source = _EncoderInputs(deterministic_view(dataset), todo, with_image="image" in encoders)
    # a private generator: the build must not draw from the global RNG (a reused cache would change the run)
    # workers ignore Ctrl-C (sent to the whole process group): the main process stops cleanly
    loader = DataLoader(source, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate_encoder_inputs,
                        generator=torch.Generator().manual_seed(0), worker_init_fn=ignore_stop_signals)
    dtype = STORE_DTYPES[files.meta["dtype"]]
    pending, unreadable, last_flush = [], [], time.monotonic()

    def commit():
        files.flush()
        files.done[pending] = 1
        files.done[unreadable] = UNREADABLE
        files.done.flush()
        pending.clear()
        unreadable.clear()

    bar = tqdm(total=len(todo), desc=f"feature cache {name}", unit="img", disable=not show_progress)
    try:
        for batch in loader:
            idx = batch["index"].numpy()
            unreadable.extend(batch["unreadable"])
            if len(idx):
                with torch.no_grad():
                    _encode_batch(files, encoders, batch, idx, device, dtype)
            pending.extend(idx.tolist())
            bar.update(len(idx) + len(batch["unreadable"]))
            if time.monotonic() - last_flush > flush_seconds:
                commit()
                last_flush = time.monotonic()
                log.info(f"Feature cache {name}: {np.count_nonzero(files.done)} of {files.n} samples encoded")
    finally:
        commit()
        bar.close()


def _encode_batch(files: CacheFiles, encoders: dict, batch: dict, idx, device, dtype) -> None:
    """Write the encoder outputs of one batch of samples `idx` into the maps."""
    if "image" in encoders:
        img = batch["img"].to(device)
        views = [img, img.flip(-1)][:files.image.shape[1]]
        feats = encoders["image"](torch.cat(views)).unflatten(0, (len(views), len(idx))).transpose(0, 1)
        files.image[idx] = feats.cpu().numpy().astype(dtype)
    if "text" in encoders:
        lengths = batch["text_mask"].flatten(1).sum(1)  # chunked texts: joined, real tokens first
        if not np.array_equal(files.text_lengths[idx], lengths.numpy()):
            raise RuntimeError(f"{files.folder}: token counts changed since the cache was allocated")
        feats = encoders["text"](batch["text_ids"].to(device), batch["text_mask"].to(device))
        feats = feats.cpu().numpy().astype(dtype)
        for row, index in enumerate(idx):
            files.text[files.text_offsets[index]:files.text_offsets[index + 1]] = feats[row, :lengths[row]]


def open_cache(folder: str) -> CacheFiles:
    """A complete cache folder, read-only (e.g. a training split's, to lend its text features)."""
    meta = _read_meta(folder)
    if meta is None or not meta["complete"]:
        raise FeatureCacheError(f"{folder}: no complete feature cache here (train the run again to rebuild it)")
    return CacheFiles(folder, meta, mode="r")


def _barrier():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class global_rng_untouched:
    """Restores the Python, NumPy and torch (CPU + CUDA) global RNG states on exit.

    Building a cache runs encoders and a DataLoader; whatever they draw must not shift the
    training run's random stream, or a run reusing a cache would differ from one building it.
    """

    def __enter__(self):
        self.state = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                      torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def __exit__(self, *exc):
        python, numpy, cpu, cuda = self.state
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        return False


def build_cache(net, dataset, cache_opt: dict, device, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                show_progress: bool = True) -> dict:
    """{'image'|'text': CacheFiles} of a dataset, one cache per frozen encoder, each built (or resumed)
    first; every rank of a DDP run calls this together.

    The global RNG states are the same after this call as before it, built or reused. Ctrl-C
    (SIGINT) keeps the samples encoded so far and exits with 128 + SIGINT; a rerun resumes.
    """
    with global_rng_untouched():
        net = bare(net)
        return {kind: _build_one(net, {kind: encoder}, dataset, cache_opt, device, rank, world_size, num_workers,
                                 show_progress) for kind, encoder in encoders_of(net).items()}


def _build_one(net, encoders: dict, dataset, cache_opt: dict, device, rank: int, world_size: int, num_workers: int,
               show_progress: bool) -> CacheFiles:
    desc = describe(net, dataset, cache_opt["dtype"], kinds=tuple(encoders))
    folder = cache_folder(cache_opt["dir"], desc)
    meta = _read_meta(folder)
    if meta is None or not meta["complete"]:
        try:
            meta = _build(encoders, dataset, cache_opt, desc, folder, device, rank, world_size, num_workers,
                          show_progress)
        except KeyboardInterrupt:
            done_file = osp.join(folder, "done.bin")
            done = np.count_nonzero(np.fromfile(done_file, np.uint8)) if osp.isfile(done_file) else 0
            log.warning(f"Feature cache build interrupted (SIGINT): {done} of {len(dataset)} samples of {folder} "
                        "are kept; run the same command again to continue the build")
            raise SystemExit(128 + signal.SIGINT) from None
    return CacheFiles(folder, meta, mode="r")


def _build(encoders, dataset, cache_opt, desc, folder, device, rank, world_size, num_workers, show_progress) -> dict:
    """Allocate (rank 0), fill every rank's shard, mark complete (rank 0); returns the final meta."""
    if rank == 0 and _read_meta(folder) is None:
        _allocate(folder, desc, encoders, dataset, cache_opt["dtype"], show_progress)
    _barrier()
    files = CacheFiles(folder, _read_meta(folder), mode="r+")
    batch_size = int(cache_opt["batch_size"] or 32)
    _fill(files, encoders, dataset, range(rank, len(dataset), world_size), device, batch_size, num_workers,
          float(cache_opt["flush_seconds"]), show_progress and rank == 0)
    del files
    _barrier()
    if rank == 0:
        meta = _read_meta(folder)
        missing = len(dataset) - int(np.count_nonzero(np.fromfile(osp.join(folder, "done.bin"), np.uint8)))
        if missing:
            raise RuntimeError(f"{folder}: {missing} samples were not encoded by any rank")
        _write_meta(folder, {**meta, "complete": True})
    _barrier()
    return _read_meta(folder)


# --------------------------------------------------------------------------- reading
def _coin(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """A fair, reproducible coin per (seed, epoch, sample): splitmix64 of the three, vectorised."""
    with np.errstate(over="ignore"):
        x = indices.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x += np.uint64((seed * 1_000_003 + epoch) % 2 ** 63)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(63)).astype(np.int64)


class CachedFeatureDataset(Dataset):
    """A split as cached features + labels; `__getitems__` reads a whole batch at once (no image, no tokenizer).

    Batches: `image_feats` (B, tokens, dim) and/or `text_feats` (B, L, dim) + `text_mask` (B, L)
    padded to the batch's longest text, float32 (converted once per batch), `mos_dist`,
    `mos_label`, `img_path`. With two image views a per-sample coin (seed, epoch) picks one.
    Samples whose image was unreadable when a cache was built (`bad_image: skip`; the image and
    the text build both read it) are left out of their batch and named under `skipped_images`,
    as the uncached loader does.
    """

    def __init__(self, dataset, files: dict, seed: int):
        """files: {'image'|'text': CacheFiles} (build_cache)."""
        self.opt, self.phase, self.files, self.seed, self.epoch = dataset.opt, dataset.phase, files, seed, 0
        labels = [dataset.labels(i) for i in range(len(dataset))]
        self.mos_dist = torch.stack([s["mos_dist"] for s in labels])
        self.mos_label = torch.stack([s["mos_label"] for s in labels])
        self.img_paths = [s["img_path"] for s in labels]
        self.unreadable = np.zeros(len(labels), bool)
        for cache in files.values():
            self.unreadable |= np.fromfile(osp.join(cache.folder, "done.bin"), np.uint8) == UNREADABLE

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.mos_dist)

    def __getitems__(self, indices) -> dict:
        idx = np.asarray(indices, dtype=np.int64)
        skipped = [self.img_paths[i] for i in idx[self.unreadable[idx]]]
        idx = idx[~self.unreadable[idx]]
        if not len(idx):
            return {"skipped_images": skipped}
        batch = {"mos_dist": self.mos_dist[idx], "mos_label": self.mos_label[idx],
                 "img_path": [self.img_paths[i] for i in idx]}
        if skipped:
            batch["skipped_images"] = skipped
        if "image" in self.files:
            files = self.files["image"]
            views = _coin(self.seed, self.epoch, idx) if len(files.meta["image"]["views"]) > 1 else 0
            batch["image_feats"] = torch.from_numpy(files.image[idx, views]).float()
        if "text" in self.files:
            files = self.files["text"]
            lengths = files.text_lengths[idx]
            mask = np.arange(lengths.max()) < lengths[:, None]
            rows = (files.text_offsets[idx][:, None] + np.arange(mask.shape[1]))[mask]
            feats = np.zeros((*mask.shape, files.meta["text"]["dim"]), files.text.dtype)
            feats[mask] = files.text[rows]
            batch["text_feats"] = torch.from_numpy(feats).float()
            batch["text_mask"] = torch.from_numpy(mask).long()
        return batch

    def __getitem__(self, index):
        batch = self.__getitems__([index])
        return {k: v[0] for k, v in batch.items()}


def whole_batch(batch):
    """collate_fn for CachedFeatureDataset: `__getitems__` already returns the collated batch."""
    return batch


def cached_loader(opt: dict, model, loader: DataLoader) -> DataLoader:
    """The same loader (sampler, batch size, workers) over the cached features of its dataset."""
    cache_opt = cache_options(opt)
    files = build_cache(model.net, loader.dataset, {**cache_opt, "batch_size": cache_opt["batch_size"] or loader.batch_size},
                        model.device, opt.get("rank", 0), opt.get("world_size", 1), loader.num_workers,
                        show_progress=opt.get("rank", 0) == 0)
    dataset = CachedFeatureDataset(loader.dataset, files, opt.get("manual_seed", 0))
    return DataLoader(dataset, batch_size=loader.batch_size, sampler=loader.sampler, drop_last=loader.drop_last,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                      persistent_workers=loader.persistent_workers, generator=loader.generator, collate_fn=whole_batch,
                      worker_init_fn=loader.worker_init_fn)


def apply_feature_cache(opt: dict, model, train_loader: DataLoader, val_loaders: list):
    """The engine's hook: train and val loaders reading cached frozen features."""
    return cached_loader(opt, model, train_loader), [cached_loader(opt, model, v) for v in val_loaders]
