"""Score new images (and their comments) with a trained model.

    python iaa_bench/infer.py -opt options/mmlq_demo.yml --img photo.jpg [--comments "great light"]
    python iaa_bench/infer.py -opt experiments/mmlq_demo --img folder/ [--comments comments_folder/] [--out scores.csv]

`-opt` is an option file, a run folder `experiments/<name>` (its resolved option file) or a
checkpoint inside one; the weights are the run folder's net_best.pth (else net_latest.pth),
or for an option file `path.pretrain_network(_g)` or the run's best, unless `--checkpoint` is given.
Images are preprocessed by the option file's test dataset's own transform and comments
tokenised with its text settings, as in training. `--comments` is, for one image, the
text itself or a file with one comment per line; for a folder, a folder of
`<image stem>.txt` files (one comment per line; an image without one has no comments).
Without comments MMLQ uses its learned "no comment" token, or, when the run retrieves comments
(`network.missing_text: retrieve`: the run has a retrieval index), the comments of its nearest
training images, and prints which ones lent them; image-only models ignore text.
A `--comments` value without spaces that contains a path separator or ends in `.txt`
is a path and must exist. Comment files are read as UTF-8 with undecodable bytes
replaced, as prepare_ava reads AVA-Comments, so the model sees the same text as in training.
Prints each image's mean score (1..10) and 10-bin distribution; writes a CSV for a
folder (default: <root>/results/<name>/infer_<folder>.csv) or when `--out` is given.
In a folder, an unreadable image is skipped with a warning and the others are scored.
"""
import argparse
import csv
import glob
import json
import os
import sys
from os import path as osp
from typing import NamedTuple

import torch
from PIL import Image

from iaa_bench.config.options import load_options
from iaa_bench.config.schema import validate_options
from iaa_bench.data import loaders
from iaa_bench.data.images import load_image, loading_options
from iaa_bench.evaluation.evaluate import build_eval_model
from iaa_bench.evaluation.metrics import NUM_BINS
from iaa_bench.training.run_folder import RESOLVED_OPTIONS
from iaa_bench.utils.errors import BadImageError, MissingInputError, OptionError
from iaa_bench.utils.pyiqa_adapter import DATASET_REGISTRY, is_registered

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def validate_model_options(opt: dict, is_train: bool = False, source: str = "<options>") -> None:
    """validate_options, except that dataset paths need not exist: inference reads no dataset."""
    validate_options(opt, is_train=is_train, source=source, check_data_paths=False)


class RunSource(NamedTuple):
    """Where a model comes from: its option file, output root, weights and name (None: the file's own)."""

    option_file: str
    root: str | None = None
    checkpoint: str | None = None
    name: str | None = None

    def load(self, root=None) -> dict:
        """The run's options for evaluation (named as its folder, which `--debug` and `name=` set)."""
        overrides = [f"name={json.dumps(self.name)}"] if self.name else None  # quoted: YAML
        return load_options(self.option_file, is_train=False, overrides=overrides, root=root or self.root,
                            validate=validate_model_options)


def run_checkpoint(run_dir: str) -> str | None:
    """A run folder's best network, else its latest."""
    for label in ("net_best.pth", "net_latest.pth"):
        if osp.isfile(osp.join(run_dir, "models", label)):
            return osp.join(run_dir, "models", label)
    return None


def resolve_run(source: str) -> RunSource:
    """An option file, a run folder `<root>/experiments/<name>`, or a checkpoint inside one.

    A run folder is read through its resolved options and scored with its own weights,
    whatever name the options carry (a run trained with `--debug` or `--force_yml name=...`,
    or an archived one, is found by its folder).
    """
    checkpoint = None
    if osp.isfile(source) and not source.endswith((".yml", ".yaml")):
        checkpoint, source = source, osp.dirname(osp.dirname(osp.abspath(source)))
    if not osp.isdir(source):
        if checkpoint:
            raise OptionError(f"{checkpoint}: not inside a run folder (<root>/experiments/<name>/models/); "
                              "give its option file too")
        return RunSource(source)
    resolved = osp.join(source, RESOLVED_OPTIONS)
    files = [resolved] if osp.isfile(resolved) else sorted(glob.glob(osp.join(source, "*.yml")))
    if len(files) != 1:
        raise OptionError(f"{source}: expected one option file (*.yml) in the run folder, found {len(files)}")
    run_dir = osp.abspath(source)
    return RunSource(files[0], osp.dirname(osp.dirname(run_dir)), checkpoint or run_checkpoint(run_dir),
                     osp.basename(run_dir))


def eval_dataset_options(opt: dict) -> dict:
    """The options of the dataset that defines evaluation preprocessing: datasets.test, else the first val*."""
    phases = [p for p in opt.get("datasets", {}) if p == "test"] or [p for p in opt.get("datasets", {})
                                                                      if p.startswith("val")]
    if not phases:
        raise OptionError(f"{opt['opt_path']}: no datasets.test or datasets.val* whose preprocessing to reuse")
    return loaders.dataset_options(opt, opt["datasets"][phases[0]], phases[0])


class Preprocessor:
    """The evaluation dataset's image transform and tokenisation, without reading its data."""

    def __init__(self, dataset_opt: dict):
        if not is_registered("dataset", dataset_opt["type"]):
            raise OptionError(f"no dataset named `{dataset_opt['type']}` is registered")
        cls = DATASET_REGISTRY.get(dataset_opt["type"])
        self.dataset = cls.__new__(cls)  # only its get_transforms: the data folder need not exist
        self.dataset.opt, self.dataset.phase = dataset_opt, "test"
        cls.get_transforms(self.dataset, dataset_opt)
        self.text_opt, self.tokenizer = None, None
        if dataset_opt.get("text"):
            from iaa_bench.datasets.ava_comments_dataset import TEXT_DEFAULTS, build_tokenizer

            self.text_opt = {**TEXT_DEFAULTS, **dataset_opt["text"]}
            self.tokenizer = build_tokenizer(self.text_opt)

    def image(self, path: str) -> torch.Tensor:
        return self.pil_image(load_image(path, **loading_options(self.dataset.opt)))

    def pil_image(self, img: Image.Image) -> torch.Tensor:
        return self.dataset.trans(img) * self.dataset.img_range

    def tensor_image(self, x: torch.Tensor) -> torch.Tensor:
        """An RGB tensor (3, H, W) in [0, 1], as pyiqa passes it, through the same transform as a file.

        Rounded to 8 bits (pyiqa's `imread2tensor` divides 8-bit pixels by 255), so a file
        scores the same whether given as a path or as pyiqa's tensor of it.
        """
        pixels = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        return self.pil_image(Image.fromarray(pixels.permute(1, 2, 0).numpy()))

    def text(self, comments: list) -> dict:
        """Token ids and mask of the joined comments, as AVACommentsDataset makes them."""
        from iaa_bench.datasets.ava_comments_dataset import tokenize_comments

        return {k: v[None] for k, v in tokenize_comments(self.tokenizer, comments, self.text_opt).items()}


def list_images(img_arg: str) -> list:
    if osp.isdir(img_arg):
        images = sorted(p for p in glob.glob(osp.join(img_arg, "*"))
                        if p.lower().endswith(IMAGE_EXTENSIONS) and osp.isfile(p))
        if not images:
            raise MissingInputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {img_arg}")
        return images
    if not osp.isfile(img_arg):
        raise MissingInputError(f"image not found: {img_arg}")
    return [img_arg]


def read_comment_lines(path: str) -> list:
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]


def looks_like_path(text: str) -> bool:
    """A `--comments` value meant as a file: no spaces, and a path separator or a `.txt` ending."""
    return not any(c.isspace() for c in text) and (os.sep in text or "/" in text or text.lower().endswith(".txt"))


def check_arguments(args, images: list) -> None:
    """Mistakes answered before the model is built: a missing comments path, an unusable `--out`."""
    if args.comments and not osp.exists(args.comments) and looks_like_path(args.comments):
        raise MissingInputError(f"--comments {args.comments}: no such file or folder (comment text with "
                                "no spaces that looks like a path is taken as one)")
    if args.out is None:
        return
    if osp.isdir(args.out):
        raise OptionError(f"--out {args.out} is a folder; give the CSV file to write")
    if osp.exists(args.out) and any(osp.samefile(args.out, image) for image in images):
        raise OptionError(f"--out {args.out} is one of the input images; give another file name")


def comments_for(image: str, comments_arg, folder_mode: bool) -> list:
    """The comments of one image from `--comments` (see the module docstring)."""
    if not comments_arg:
        return []
    if folder_mode:
        if not osp.isdir(comments_arg):
            raise OptionError(f"--comments {comments_arg}: with a folder of images, give a folder of <stem>.txt files")
        path = osp.join(comments_arg, osp.splitext(osp.basename(image))[0] + ".txt")
        return read_comment_lines(path) if osp.isfile(path) else []
    return read_comment_lines(comments_arg) if osp.isfile(comments_arg) else [comments_arg]


def predict_image(model, prep: Preprocessor, image: str, comments: list) -> tuple[float, list | None]:
    """(mean score, 10-bin distribution or None for a scalar model) of one image."""
    batch = {"img": prep.image(image)[None], "img_path": [image]}  # the path: no retrieval of its own file
    if model.uses_text:
        batch.update(prep.text(comments))
    model.feed_data(batch)
    model.test()
    dist = None if model.output_dist is None else model.output_dist[0].tolist()
    return float(model.output_mos.reshape(-1)[0]), dist


def infer(argv=None) -> list:
    """Score images; returns [(image, mean score, distribution or None)]."""
    parser = argparse.ArgumentParser(description="Score images (and comments) with a trained model.")
    parser.add_argument("-opt", required=True, help="Option file, or a run folder experiments/<name>.")
    parser.add_argument("--img", required=True, help="An image file or a folder of images.")
    parser.add_argument("--comments", default=None, help="Text or a file (one image); a folder of <stem>.txt (folder).")
    parser.add_argument("--checkpoint", default=None, help="Network weights (default: the run's net_best.pth).")
    parser.add_argument("--out", default=None, help="CSV to write (default for a folder: results/<name>/infer_*.csv).")
    parser.add_argument("--root", default=None, help="Root of experiments/ and results/ (default: the run "
                                                     "folder's, else path.root, else the working directory).")
    args = parser.parse_args(argv)

    images = list_images(args.img)
    check_arguments(args, images)
    folder_mode = osp.isdir(args.img)
    source = resolve_run(args.opt)
    opt = source.load(args.root)
    model = build_eval_model(opt, args.checkpoint or source.checkpoint)
    if args.comments and not model.uses_text:
        print(f"note: {opt['name']} reads images only; --comments is ignored", file=sys.stderr)
    prep = Preprocessor(eval_dataset_options(opt))

    results = []
    for image in images:
        comments = comments_for(image, args.comments, folder_mode)
        try:
            mos, dist = predict_image(model, prep, image, comments)
        except (OSError, Image.DecompressionBombError) as err:  # undecodable, truncated, unreadable
            if not folder_mode:
                raise BadImageError(f"{image}: cannot read the image: {err}") from err
            print(f"warning: skipped {image}: {type(err).__name__}: {err}", file=sys.stderr)
            continue
        results.append((image, mos, dist))
        shown = "–" if dist is None else "[" + " ".join(f"{p:.3f}" for p in dist) + "]"
        print(f"{image}\tmean {mos:.3f}\tdistribution {shown}", flush=True)
        if model.retriever is not None and not comments:
            print(f"  no comments: read the comments of training images "
                  f"{', '.join(model.retriever.last_lenders[0])} (retrieved)", flush=True)

    if not results:
        raise BadImageError(f"none of the {len(images)} images in {args.img} could be read")
    out = args.out or (osp.join(opt["path"]["results_root"], f"infer_{osp.basename(osp.normpath(args.img))}.csv")
                       if folder_mode else None)
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["img_path", "mean_score", *(f"p{i}" for i in range(1, NUM_BINS + 1))])
            for image, mos, dist in results:
                writer.writerow([image, round(mos, 5), *([round(p, 6) for p in dist] if dist else [""] * NUM_BINS)])
        print(f"Scores of {len(results)} of {len(images)} images written to {out}")
    return results

