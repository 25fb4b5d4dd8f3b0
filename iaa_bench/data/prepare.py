"""Prepare AVA + AVA-Comments for training: `python iaa_bench/prepare_ava.py --help`.

Reads the raw files (see `iaa_bench.data.ava_formats`), checks every image, and writes a
prepared folder:

- `meta_info.csv`: pyiqa's AVA columns `img_name,MOS,c1..c10,semantic_tag1,semantic_tag2,
  official_split` (split codes 0 train / 1 val / 2 test), so pyiqa's own `AVADataset`
  reads it with `split_index: official_split`. Missing and corrupt images are left out.
- `comments.jsonl` + `comments_index.npy`: the comments store (`CommentStore`).
- `report.json`: counts, the excluded ids, the options used, and `image_dir` (absolute;
  relative to the prepared folder only when the images live inside it, as in the demo;
  the input paths likewise).

Splits: test = ids of `--test-list`; without one, a seeded `--test-fraction` (default 0.2)
of all rows. val = a seeded `--val-fraction` (default 0.05) of the remaining rows;
train = the rest. Splits are drawn over all label rows before bad images are excluded,
so repairing an image later does not reshuffle the others.

The folder is built in a temporary directory beside OUT_DIR (named with the PID, so one
left by a killed run is removed by the next) and renamed into place at the end; an
existing non-empty OUT_DIR is replaced only with `--overwrite`, only after the new
folder is complete, and never when an input lies inside it (refused up front).
Without `--comments` the comments store is empty (an image-only dataset). Malformed
input exits with status 2 and one line `error: FILE:LINE: reason`; so does a run in
which no image is readable (a mistyped `--images`).

Scale (real AVA: 255,530 rows, ~3.6 M comments, 2 cores):
- Parsing labels and comments streams line by line (see the measured time in README);
  the comments store keeps 24 bytes per image of index in memory, one `pread` per sample.
- Image checking fully decodes every JPEG (~5-15 ms each): it dominates preparation
  (tens of minutes on 2 cores) and scales with `--workers`.
- In training, JPEG decode + resize is ~5-10 ms per image per worker, and tokenising
  one image's comments ~1 ms; use DataLoader `num_workers` ≈ cores. The frozen encoders
  cost far more (README, Performance), which is what the frozen-feature cache
  (`iaa_bench.data.feature_cache`, option `feature_cache:`) is for: encoder outputs are
  computed once, and later epochs cost only the trainable part.
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from iaa_bench.data.ava_formats import (
    NUM_BINS,
    SPLIT_CODES,
    CommentStore,
    mean_score,
    read_id_list,
    read_labels,
    write_comment_store,
)
from iaa_bench.utils.errors import FileAccessError, IAABenchError, MissingInputError, OutputExistsError

SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
META_INFO_FILE = "meta_info.csv"
REPORT_FILE = "report.json"
META_COLUMNS = ["img_name", "MOS", *[f"c{i}" for i in range(1, NUM_BINS + 1)],
                "semantic_tag1", "semantic_tag2", "official_split"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Prepare AVA + AVA-Comments into a pyiqa-readable folder.")
    p.add_argument("--ava-txt", required=True, type=Path, help="AVA.txt or the CSV label variant")
    p.add_argument("--labels-format", choices=["auto", "txt", "csv"], default="auto",
                   help="auto: CSV if the first line has a comma")
    p.add_argument("--comments", type=Path, help="AVA_Comments_Full.txt (leave out for an image-only dataset)")
    p.add_argument("--images", required=True, type=Path, help="folder of <image_id>.jpg")
    p.add_argument("--test-list", type=Path, help="official test ids (generic_test.jpgl)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="test share when no --test-list")
    p.add_argument("--val-fraction", type=float, default=0.05, help="val share of the non-test rows")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="image-check processes (1 = inline)")
    p.add_argument("--out", required=True, type=Path, help="prepared folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    for name in ("test_fraction", "val_fraction"):
        if not 0.0 <= getattr(args, name) < 1.0:
            p.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    return args


def assign_splits(ids, test_ids, val_fraction, test_fraction, seed):
    """Split code per id: listed test ids (or a seeded share), a seeded val share of the rest."""
    rng = random.Random(seed)
    if test_ids is None:
        shuffled = rng.sample(ids, len(ids))
        test_ids = set(shuffled[:round(test_fraction * len(ids))])
    rest = [i for i in ids if i not in test_ids]
    val_ids = set(rng.sample(rest, round(val_fraction * len(rest))))
    return {i: SPLIT_CODES["test"] if i in test_ids else SPLIT_CODES["val"] if i in val_ids else SPLIT_CODES["train"]
            for i in ids}


def check_image(path: str) -> str:
    """'ok', 'missing' or 'corrupt' after a full decode with truncated images refused.

    pyiqa's AVA module sets `ImageFile.LOAD_TRUNCATED_IMAGES = True` process-wide, which
    would let a truncated JPEG decode "fine"; it is forced off here for the check.
    """
    from PIL import Image, ImageFile

    if not os.path.isfile(path):
        return "missing"
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as img:
            img.load()
        return "ok"
    except Exception:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        return "corrupt"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def check_images(paths, workers: int, progress: bool):
    """Status of every image path, in order, decoded in a process pool with a progress bar."""
    from tqdm import tqdm

    bar = dict(total=len(paths), desc="checking images", unit="img", disable=not progress, file=sys.stderr)
    if workers <= 1:
        return [check_image(p) for p in tqdm(paths, **bar)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(check_image, paths, chunksize=64), **bar))


def prepare(args, dest: Path) -> dict:
    """Write the prepared files of `args` into the existing folder `dest`; return the report."""
    labels = read_labels(args.ava_txt, args.labels_format)
    test_ids = set(read_id_list(args.test_list)) if args.test_list else None
    splits = assign_splits(labels.ids, test_ids, args.val_fraction, args.test_fraction, args.seed)
    image_dir = args.images.resolve()
    comment_stats = write_comment_store(args.comments, splits, dest)
    status = check_images([str(image_dir / f"{i}.jpg") for i in labels.ids], args.workers, not args.no_progress)
    if "ok" not in status:
        raise MissingInputError(f"no usable image: none of the {len(status)} images of {args.ava_txt} is readable in "
                                f"--images {args.images} (e.g. {image_dir / f'{labels.ids[0]}.jpg'}: {status[0]})")
    _, comment_lengths = CommentStore(dest).spans(labels.ids)
    counts = {"rows": 0, "train": 0, "val": 0, "test": 0, "with_comments": 0, "without_comments": 0}
    with open(dest / META_INFO_FILE, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(META_COLUMNS) + "\n")
        for image_id, votes, tags, state, n_bytes in zip(labels.ids, labels.votes, labels.tags, status, comment_lengths):
            if state != "ok":
                continue
            split = splits[image_id]
            f.write(f"{image_id}.jpg,{mean_score(votes):.6f},{','.join(map(str, votes))},{tags[0]},{tags[1]},{split}\n")
            counts["rows"] += 1
            counts[SPLIT_NAMES[split]] += 1
            counts["with_comments" if n_bytes else "without_comments"] += 1
    bad = {s: [i for i, st in zip(labels.ids, status) if st == s] for s in ("missing", "corrupt")}
    report = {
        **counts,
        "label_rows": len(labels.ids),
        "images_missing": len(bad["missing"]),
        "images_corrupt": len(bad["corrupt"]),
        **comment_stats,
        "test_ids_listed": len(test_ids) if test_ids is not None else None,
        "test_ids_unknown": len(test_ids - set(splits)) if test_ids is not None else None,
        "missing_ids": bad["missing"],
        "corrupt_ids": bad["corrupt"],
        "image_dir": _recorded_path(image_dir, dest),
        "inputs": {"labels": _recorded_path(args.ava_txt, dest), "comments": _recorded_path(args.comments, dest) if args.comments else None,
                   "test_list": _recorded_path(args.test_list, dest) if args.test_list else None},
        "options": {"val_fraction": args.val_fraction, "seed": args.seed,
                    "test_fraction": None if args.test_list else args.test_fraction},
    }
    with open(dest / REPORT_FILE, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    return report


def _recorded_path(path: Path, dest: Path) -> str:
    """Absolute, or relative to the prepared folder when inside it (the folder stays movable)."""
    try:
        return str(path.resolve().relative_to(dest.resolve()))
    except ValueError:
        return str(path.resolve())


def refuse_existing(out: Path, overwrite: bool):
    """Refuse an `out` that is a file, or a non-empty folder without `overwrite`."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out} exists and is not empty (use --overwrite to replace it)")


def refuse_inputs_inside(args, out: Path):
    """Refuse, before any work, to replace an `out` folder that holds one of the inputs (--overwrite would delete it)."""
    if not out.exists():
        return
    for option in ("ava_txt", "comments", "images", "test_list"):
        path = getattr(args, option)
        if path is not None and path.resolve().is_relative_to(out.resolve()):
            raise OutputExistsError(f"--{option.replace('_', '-')} {path} lies inside --out {out}, which --overwrite "
                                    "would replace, deleting it: move the inputs out of that folder, or choose "
                                    "another --out")


def publish(staging: Path, out: Path):
    """Move the complete `staging` folder to `out`, replacing an old one only once the new is in place."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / out.name)
    try:
        os.rename(staging, out)
    except BaseException:
        if old is not None:
            os.rename(old / out.name, out)
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old)


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def remove_stale_staging(out: Path) -> list:
    """Delete staging folders beside `out` left by killed runs (their PID, in the name, is gone)."""
    removed = []
    for folder in out.parent.glob(_staging_prefix(out) + "*"):
        pid = folder.name[len(_staging_prefix(out)):].split("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def make_staging(out: Path) -> Path:
    """A fresh temporary folder beside `out` (same file system, so renaming is atomic), stale ones removed first.

    Its name carries this process's PID, so a later run can tell a killed run's folder from a live one.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    for folder in remove_stale_staging(out):
        print(f"removed {folder}, left by an interrupted run", file=sys.stderr)
    staging = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out)}{os.getpid()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would otherwise become the published folder's mode
    return staging


def main(argv=None) -> dict:
    """`prepare_ava.py`: prepare into `--out` atomically; returns the report."""
    args = parse_args(argv)
    out = args.out.absolute()
    refuse_existing(out, args.overwrite)
    refuse_inputs_inside(args, out)
    staging = make_staging(out)
    try:
        report = prepare(args, staging)
        publish(staging, out)
    except OSError as err:  # an unreadable input or a full disk: the user's to fix, not a bug
        if isinstance(err, IAABenchError):
            raise
        raise FileAccessError(str(err)) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary = ", ".join(f"{k}={report[k]}" for k in ("rows", "train", "val", "test", "images_missing",
                                                      "images_corrupt", "with_comments", "without_comments"))
    print(f"prepared {out}: {summary}")
    return report

