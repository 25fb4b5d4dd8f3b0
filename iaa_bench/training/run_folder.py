"""A run's folder under the output root: pyiqa's `experiments/<name>/` bookkeeping.

Archiving a previous run (never deleting it), the lock that keeps two runs of one name
apart, the run's log file, the resolved option file that later evaluation reads, the
training state to resume from (and its options, compared before resuming), and the list
of images skipped as unreadable.
"""
import logging
import os
import sys
import time
from os import path as osp

from iaa_bench.models import checkpoint as ckpt
from iaa_bench.utils.errors import OptionError, RunInProgressError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME, get_root_logger

log = logging.getLogger(LOGGER_NAME)


class SkippedImages:
    """Unreadable images skipped by `bad_image: skip`: each logged and written to skipped_images.txt once."""

    def __init__(self, opt):
        self.opt, self.seen = opt, set()

    def record(self, paths) -> None:
        new = [p for p in dict.fromkeys(paths) if p not in self.seen]
        if not new:
            return
        self.seen.update(new)
        log.warning(f"Skipped {len(new)} unreadable image(s): {', '.join(new)}")
        if self.opt["rank"] == 0:
            with open(osp.join(self.opt["path"]["experiments_root"], "skipped_images.txt"), "a", encoding="utf-8") as f:
                f.writelines(p + "\n" for p in new)


class RunLock:
    """An exclusive lock on `experiments/<name>` for the life of the process (rank 0 only).

    `experiments/<name>.lock` is locked with flock, which the kernel releases when the
    process ends in any way (even SIGKILL), so a lock left by a dead run is never in the
    way; the file holds the PID of the run that holds it, for the message.
    """

    def __init__(self, experiments_root: str):
        self.path = experiments_root.rstrip(os.sep) + ".lock"
        self.file = None

    def acquire(self) -> "RunLock":
        import fcntl

        os.makedirs(osp.dirname(self.path), exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunInProgressError(
                f"another run named `{osp.basename(self.path)[:-5]}` is writing {self.path[:-5]} (PID {holder}); "
                "wait for it to finish, stop it, or choose another `name`") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self.file = f
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.close()  # closing the descriptor releases the flock
            self.file = None


RESUME_CHECKED_SECTIONS = ("network", "datasets", "train.optim", "train.scheduler", "train.mos_loss_opt",
                           "train.regress_opt", "model_type", "feature_cache")
SPEED_ONLY_KEYS = {"num_worker_per_gpu", "pin_memory", "persistent_workers", "prefetch_mode"}  # results unchanged


def option_differences(old: dict, new: dict, sections=RESUME_CHECKED_SECTIONS) -> list:
    """`key: old -> new` for every leaf that differs between two option dicts, within `sections`."""
    def leaves(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, f"{prefix}.{key}")
        else:
            yield prefix, node

    diffs = []
    for section in sections:
        a, b = old, new
        for key in section.split("."):
            a = a.get(key) if isinstance(a, dict) else None
            b = b.get(key) if isinstance(b, dict) else None
        flat_a, flat_b = dict(leaves(a, section)), dict(leaves(b, section))
        for key in sorted(set(flat_a) | set(flat_b)):
            if key.rsplit(".", 1)[-1] in SPEED_ONLY_KEYS:
                continue
            if flat_a.get(key, "<absent>") != flat_b.get(key, "<absent>"):
                diffs.append(f"{key}: {flat_a.get(key, '<absent>')!r} -> {flat_b.get(key, '<absent>')!r}")
    return diffs


def check_resume_options(args, resume_path: str, force: bool) -> None:
    """Refuse to resume with options that differ from the run's own, before any file is touched.

    The run's options are its `resolved_options.yml` (beside `training_states/`). Only what
    changes the trained model counts (RESUME_CHECKED_SECTIONS); `train.total_iter`, logger
    and val settings may change. `--force_resume` accepts the differences (logged).
    """
    import yaml

    recorded = osp.join(osp.dirname(osp.dirname(osp.abspath(resume_path))), RESOLVED_OPTIONS)
    if not osp.isfile(recorded):
        log.warning(f"Resuming from {resume_path} without {recorded}: the options cannot be compared")
        return
    with open(recorded, encoding="utf-8") as f:
        old = yaml.safe_load(f) or {}
    diffs = option_differences(old, resolved_options(args))
    if not diffs:
        return
    listing = "\n  - " + "\n  - ".join(diffs)
    if force:
        log.warning(f"--force_resume: resuming {resume_path} with changed options:{listing}")
        return
    raise OptionError(f"{args.opt}: the options differ from those of the run being resumed ({recorded}):{listing}\n"
                      "Restore them, train under another `name`, or pass --force_resume to continue with the new ones")


def archive_if_exists(path: str, into: str = None) -> None:
    """Rename an existing folder to `<path>_archived_<time>` (pyiqa's convention), never delete.

    into: the folder to move it to (pyiqa moves TensorBoard runs to `tb_logger_archived/`); default: beside it.
    """
    if osp.exists(path):
        stamp = time.strftime("%Y%m%d_%H%M%S")
        if into:
            os.makedirs(into, exist_ok=True)
        base = osp.join(into or osp.dirname(path), osp.basename(path))
        target = f"{base}_archived_{stamp}"
        n = 1
        while osp.exists(target):
            target = f"{base}_archived_{stamp}_{n}"
            n += 1
        os.rename(path, target)
        log.info(f"Archived existing {path} -> {target}")


def setup_run_logging(log_file: str, rank: int) -> logging.Logger:
    """pyiqa's console logger plus this run's own log file (safe to call once per run)."""
    logger = get_root_logger(logger_name=LOGGER_NAME)
    logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    for h in [h for h in logger.handlers if getattr(h, "iaa_bench_run", False)]:
        logger.removeHandler(h)
        h.close()
    if rank == 0:
        os.makedirs(osp.dirname(log_file), exist_ok=True)
        fh = logging.FileHandler(log_file)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
        fh.iaa_bench_run = True
        logger.addHandler(fh)
    return logger


def find_resume_state(opt):
    """The state to resume from: `path.resume_state`, or with --auto_resume the newest good one."""
    if opt["auto_resume"]:
        return ckpt.load_latest_state(opt["path"]["training_states"])
    path = opt["path"].get("resume_state")
    if path:
        return path, ckpt.safe_load(path, training_state=True)
    return None, None


RESOLVED_OPTIONS = "resolved_options.yml"


def resolved_options(args) -> dict:
    """The option file as this run uses it: --force_yml applied, plugin files made absolute."""
    from iaa_bench.config.options import apply_overrides, load_yaml

    resolved = load_yaml(args.opt)
    apply_overrides(resolved, args.force_yml)
    base = osp.dirname(osp.abspath(args.opt))
    resolved["plugins"] = [osp.join(base, p) if str(p).endswith(".py") and not osp.isabs(p) else p
                           for p in resolved.get("plugins") or []] or None
    if resolved["plugins"] is None:
        del resolved["plugins"]
    return resolved


def write_resolved_options(args, path: str) -> None:
    """`resolved_options(args)` as YAML: `infer.py -opt experiments/<name>` and later evaluation read it."""
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(resolved_options(args), f, sort_keys=False)


def use_progress_bar(opt) -> bool:
    return opt["rank"] == 0 and opt["logger"].get("pbar", True) and sys.stderr.isatty()
