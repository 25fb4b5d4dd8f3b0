"""A run's folder under the output root: pyiqa's `experiments/<name>/` bookkeeping.

Archiving a previous run (never deleting it), the run's log file, the resolved option
file that later evaluation reads, the training state to resume from, and the list of
images skipped as unreadable.
"""
import logging
import os
import sys
import time
from os import path as osp

from iaa_bench.models import checkpoint as ckpt
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME, get_root_logger

log = logging.getLogger(LOGGER_NAME)


def record_skipped_images(opt, paths) -> None:
    """Log skipped unreadable images and append them to experiments/<name>/skipped_images.txt."""
    log.warning(f"Skipped {len(paths)} unreadable image(s): {', '.join(paths)}")
    if opt["rank"] == 0:
        with open(osp.join(opt["path"]["experiments_root"], "skipped_images.txt"), "a", encoding="utf-8") as f:
            f.writelines(p + "\n" for p in paths)


def archive_if_exists(path: str) -> None:
    """Rename an existing folder to `<path>_archived_<time>` (pyiqa's convention), never delete."""
    if osp.exists(path):
        stamp = time.strftime("%Y%m%d_%H%M%S")
        target = f"{path}_archived_{stamp}"
        n = 1
        while osp.exists(target):
            target = f"{path}_archived_{stamp}_{n}"
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


def write_resolved_options(args, path: str) -> None:
    """The option file as this run used it: --force_yml applied, plugin files made absolute.

    `infer.py -opt experiments/<name>` and later evaluation read it, from any directory.
    """
    import yaml

    from iaa_bench.config.options import apply_overrides, load_yaml

    resolved = load_yaml(args.opt)
    apply_overrides(resolved, args.force_yml)
    base = osp.dirname(osp.abspath(args.opt))
    resolved["plugins"] = [osp.join(base, p) if str(p).endswith(".py") and not osp.isabs(p) else p
                           for p in resolved.get("plugins") or []] or None
    if resolved["plugins"] is None:
        del resolved["plugins"]
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(resolved, f, sort_keys=False)


def use_progress_bar(opt) -> bool:
    return opt["rank"] == 0 and opt["logger"].get("pbar", True) and sys.stderr.isatty()
