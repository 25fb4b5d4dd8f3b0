"""Datasets and loaders for training and evaluation, from a run's options.

Seeded, resumable sampling (`EpochSampler`), each dataset's `bad_image` policy
(`GuardedDataset`), the demo dataset built on first use, the text settings of the
network's arch passed to the datasets, and the frozen-feature cache when the options enable it.
"""
import logging
import signal
from os import path as osp

import torch
from PIL import Image, ImageFile
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from iaa_bench.models import contract
from iaa_bench.utils.errors import BadImageError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME, BaseIQADataset, build_dataset

log = logging.getLogger(LOGGER_NAME)


class EpochSampler(Sampler):
    """Seeded per-epoch order, sharded across ranks without padding, resumable mid-epoch.

    The order of epoch e depends only on (seed, e), so a resumed run sees exactly the
    batches the uninterrupted run would have; `skip` drops the ones already consumed.
    """

    def __init__(self, size, seed, shuffle=True, rank=0, world_size=1, drop_last=False):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch, skip=0):
        self.epoch, self.skip = epoch, skip

    def _indices(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.drop_last:  # equal shard sizes so every rank runs the same number of steps
            order = order[: self.size - self.size % self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self):
        return iter(self._indices()[self.skip :])

    def __len__(self):
        return len(self._indices()) - self.skip


class GuardedDataset(Dataset):
    """Applies a dataset's `bad_image` policy to unreadable images met while loading.

    `fail` (default): stop with the image's path in the error. `skip`: drop the sample from
    its batch; the batch carries the path under `skipped_images` so the run can count and
    record it. pyiqa sets PIL's LOAD_TRUNCATED_IMAGES process-wide on import, which makes
    truncated JPEGs decode silently as grey: it is switched back off here so they are caught.
    """

    def __init__(self, dataset, policy: str = "fail"):
        if policy not in ("fail", "skip"):
            raise ValueError(f"bad_image must be 'fail' or 'skip', got {policy!r}")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        self.dataset, self.policy = dataset, policy

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # opt, set_epoch, paths_mos, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def with_augment(self, augment: dict) -> "GuardedDataset":
        """The wrapped dataset's re-augmented copy, under the same policy (the feature cache's build view)."""
        return GuardedDataset(self.dataset.with_augment(augment), self.policy)

    def image_path(self, index) -> str:
        """The dataset's own `image_path(index)`; pyiqa's datasets keep `dataroot` + `paths_mos[index][0]`."""
        if hasattr(self.dataset, "image_path"):
            return self.dataset.image_path(index)
        if isinstance(self.dataset, BaseIQADataset):
            return osp.join(str(getattr(self.dataset, "dataroot", "")), str(self.dataset.paths_mos[index][0]))
        return f"sample {index} of {type(self.dataset).__name__}"

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except (OSError, SyntaxError, Image.DecompressionBombError) as err:  # PIL's decode errors, missing files
            path = self.image_path(index)
            if self.policy == "fail":
                raise BadImageError(f"Unreadable image {path}: {err} "
                                    "(set the dataset's `bad_image: skip` to skip and record such images)") from err
            return {"skipped_image": path}


# Per-sample 1-D tensors whose length may differ (hashed n-grams of a whole comment set): padded with 0.
RAGGED_KEYS = ("text_ids", "text_mask")


def _pad_ragged(samples):
    for key in RAGGED_KEYS:
        width = max((len(s[key]) for s in samples if key in s), default=0)
        for s in samples:
            if key in s and len(s[key]) < width:
                s[key] = torch.nn.functional.pad(s[key], (0, width - len(s[key])))
    return samples


def collate_skipping_bad_images(samples):
    """default_collate over the good samples (ragged text padded); paths of skipped ones under `skipped_images`."""
    good = _pad_ragged([s for s in samples if "skipped_image" not in s])
    skipped = [s["skipped_image"] for s in samples if "skipped_image" in s]
    batch = default_collate(good) if good else {}
    if skipped:
        batch["skipped_images"] = skipped
    return batch


def dataset_options(opt: dict, dataset_opt: dict, phase: str = "*") -> dict:
    """A dataset's options with the text settings of the network's arch (`text_settings`, see the contract).

    A dataset's own `text:` keys win (they must fit the network's tokenizer and length);
    missing ones come from the arch, so a network that reads text always gets it.
    """
    text = contract.dataset_text(opt.get("network", {}), dataset_opt.get("text"), f"datasets.{phase}")
    return {**dataset_opt, "text": text} if text is not None else dict(dataset_opt)


def log_token_coverage(phase: str, dataset) -> None:
    """Log the share of comment tokens a text dataset's chunks keep (the rest is cut by the token budget)."""
    if getattr(dataset, "text_opt", None) is None or not hasattr(dataset, "token_coverage"):
        return
    text, cover = dataset.text_opt, dataset.token_coverage()
    if cover is None:
        return
    sample = "" if cover["images"] == cover["of"] else f" (a seeded sample of {cover['images']:,d} of {cover['of']:,d})"
    log.info(f"datasets.{phase}: comments read as up to {text['max_chunks']} x {text['max_length']} tokens "
             f"(budget {cover['budget']}): {cover['share_kept']:.1%} of "
             f"comment tokens kept, {cover['images_cut']:,d} of {cover['images']:,d} images cut{sample}")


def ensure_demo_data(dataset_opt: dict, rank: int) -> None:
    """Build the bundled demo dataset when an option file asks for it and it is absent."""
    demo = dataset_opt.get("build_demo_if_missing")
    root = dataset_opt.get("dataroot") or osp.dirname(dataset_opt.get("meta_info_file") or "")  # pyiqa's AVADataset
    if not demo or not root or osp.isfile(osp.join(root, "meta_info.csv")):
        return
    if rank == 0:
        from iaa_bench.data.demo import build_demo

        settings = demo if isinstance(demo, dict) else {}
        log.info(f"Demo dataset not found at {root}; building it ({settings or 'defaults'})")
        build_demo(root, **settings)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM / SIGINT to the main process, which saves a state and exits.

    `timeout`, Slurm's scancel and Ctrl-C signal the whole process group; a worker killed by
    it would make the main process raise ("DataLoader worker ... killed by signal") before
    it could save. The main process shuts its workers down as usual.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_loader(opt, dataset, dataset_opt, sampler, drop_last=False):
    workers = dataset_opt.get("num_worker_per_gpu", 0)
    return DataLoader(
        GuardedDataset(dataset, dataset_opt.get("bad_image", "fail")), collate_fn=collate_skipping_bad_images,
        batch_size=dataset_opt.get("batch_size_per_gpu", 1), sampler=sampler, drop_last=drop_last,
        num_workers=workers, pin_memory=dataset_opt.get("pin_memory", False),
        persistent_workers=bool(workers) and dataset_opt.get("persistent_workers", False),
        # a private generator: creating a loader iterator must not consume the global RNG
        generator=torch.Generator().manual_seed(opt["manual_seed"]), worker_init_fn=ignore_stop_signals,
    )


def create_dataloaders(opt):
    """The train loader (its sampler an `EpochSampler`) and the `val*` loaders.

    `test*` datasets are not touched while training (model selection uses val only);
    the best network is evaluated on them once training ends.
    """
    rank, world = opt["rank"], opt["world_size"]
    train = None
    vals = []
    for phase, raw_opt in opt.get("datasets", {}).items():
        if phase.split("_")[0] == "test":
            continue
        ensure_demo_data(raw_opt, rank)
        dataset_opt = dataset_options(opt, raw_opt, phase)
        dataset = build_dataset(dataset_opt)
        if rank == 0:
            log_token_coverage(phase, dataset)
        if phase == "train":
            sampler = EpochSampler(len(dataset), opt["manual_seed"], dataset_opt.get("use_shuffle", True), rank, world,
                                   drop_last=True)
            train = build_loader(opt, dataset, dataset_opt, sampler, drop_last=True)
        elif phase.split("_")[0] == "val":
            sampler = EpochSampler(len(dataset), 0, False, rank, world)
            vals.append(build_loader(opt, dataset, dataset_opt, sampler))
        else:
            raise ValueError(f"datasets.{phase}: unknown phase (use train, val, val_*, test, test_*)")
    return train, vals


def with_feature_cache(opt, model, loader):
    """`loader` reading cached frozen features when the option file enables the cache."""
    if not (opt.get("feature_cache") or {}).get("enabled"):
        return loader
    from iaa_bench.data.feature_cache import cached_loader

    return cached_loader(opt, model, loader)


def eval_loaders(opt, phases=None, withhold_comments: bool = False):
    """(phase, loader) for the option file's val/test datasets (or just `phases`).

    withhold_comments: text datasets give every image no comments (what a user with only the photo has).
    """
    loaders = []
    for phase, raw_opt in opt.get("datasets", {}).items():
        if phase == "train" or (phases and phase not in phases):
            continue
        ensure_demo_data(raw_opt, opt["rank"])
        dataset_opt = {**dataset_options(opt, raw_opt, phase), "phase": phase.split("_")[0]}
        if withhold_comments and dataset_opt.get("text") is not None:
            dataset_opt["text"] = {**dataset_opt["text"], "withhold_comments": True}
        dataset = build_dataset(dataset_opt)
        if opt["rank"] == 0:
            log_token_coverage(phase, dataset)
        loaders.append((phase, build_loader(opt, dataset, dataset_opt, EpochSampler(len(dataset), 0, False, opt["rank"],
                                                                                     opt["world_size"]))))
    if not loaders:
        raise ValueError(f"{opt.get('opt_path')}: no datasets.val*/test* to evaluate on")
    return loaders
