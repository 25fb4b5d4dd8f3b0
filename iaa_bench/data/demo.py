"""Build a small offline AVA-like demo dataset: `python iaa_bench/make_demo_data.py --out datasets/demo`.

Writes the real raw formats under OUT/raw (AVA.txt, AVA_Comments_Full.txt,
generic_test.jpgl, images/<id>.jpg) and prepares them with `prepare_ava` into OUT.

Each image is a random crop of a real photo bundled with scikit-image / scikit-learn,
edited with controlled defects (blur, noise, under/over-exposure, desaturation, low
contrast, tilt). Its latent quality combines the defect severities (visible in the
pixels) with a "subject appeal" plus noise, and a vote histogram (100-300 votes) is drawn
around it. The appeal belongs to the photographed subject, as on a photo site: half its
variance is the source photo's (shared by every crop of it, so only indirectly visible),
half is the image's own (not in the pixels). Comments are generated from the same
latents: sentiment about the subject's appeal, criticism of the defects actually applied,
praise of what is fine, rare noisy score hints, plus generic and misleading remarks;
~10% of images have none. So images carry the visual defects, comments carry the appeal
and explicit sentiment: text helps but does not give the score away, and comments of
similar-looking images say something about an image's appeal.

Two images are listed but missing and one JPEG is truncated (when n >= 20), so the
report shows the exclusions. Deterministic for a seed: fixed JPEG settings, no
timestamps, paths in report.json relative to OUT.
"""
import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from iaa_bench.data import prepare as prepare_ava

DEFECTS = ("blur", "noise", "dark", "bright", "desaturated", "flat", "tilt")
DEFECT_PROBABILITY = 0.3
JPEG_QUALITY = 90
NO_COMMENT_SHARE = 0.1
# Subject appeal = the source photo's appeal + this image's own (framing, moment); equal variances,
# total 1. Crops of one photo share their subject, so similar-looking images share part of their appeal.
SUBJECT_APPEAL_SD = IMAGE_APPEAL_SD = 0.5 ** 0.5
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field",
                  "immunohistochemistry", "retina", "moon", "clock", "brick", "grass", "gravel", "cell")

APPEAL_GREAT = ["a masterpiece", "absolutely stunning subject", "one of the best here", "breathtaking moment",
                "top entry for me", "I love everything about this scene"]
APPEAL_GOOD = ["love the subject", "what a moment", "such a compelling scene", "this really grabs me",
               "beautiful subject", "great eye for this", "stunning idea", "this tells a story",
               "wonderful mood", "very original take"]
APPEAL_BAD = ["boring subject", "not much of interest here", "this doesn't grab me", "the subject is dull",
              "I don't see the point", "nothing special", "uninspired idea", "seen this a thousand times",
              "no story here", "weak concept"]
APPEAL_AWFUL = ["a terrible subject", "why would anyone shoot this", "the worst idea in the challenge",
                "completely pointless", "awful choice of subject", "no redeeming subject at all"]
APPEAL_MEH = ["interesting idea", "nice try", "decent entry", "okay for the challenge", "not bad",
              "fair attempt"]
CRITICISM = {
    "blur": ["too soft", "focus is missed", "it is blurry", "needs to be sharper", "out of focus"],
    "noise": ["way too much noise", "very grainy", "noisy image", "the grain ruins it", "lots of noise"],
    "dark": ["too dark", "underexposed", "needs more light", "shadows are blocked", "murky"],
    "bright": ["overexposed", "blown highlights", "too bright", "washed out by the light", "burnt whites"],
    "desaturated": ["colours are dull", "looks washed out", "needs more colour", "lifeless colours", "drab"],
    "flat": ["very flat", "needs more contrast", "lacks punch", "muddy tones", "low contrast"],
    "tilt": ["horizon is tilted", "crooked framing", "awkward crop", "the tilt bothers me", "straighten it"],
}
PRAISE = {
    "blur": ["tack sharp", "crisp detail", "great focus"],
    "noise": ["clean image", "smooth tones", "no noise at all"],
    "dark": ["good exposure", "nice light"],
    "bright": ["well exposed", "highlights under control"],
    "desaturated": ["lovely colours", "rich colours", "vibrant"],
    "flat": ["great contrast", "punchy tones"],
    "tilt": ["nice composition", "well framed", "good crop"],
}
GENERIC = ["thanks for sharing", "good luck in the challenge", "what lens did you use?", "nice",
           "welcome to DPC", "très joli", "hmm", "see my entry too", "👍", "interesting processing"]
OPENERS = ["", "", "", "IMO ", "Honestly, ", "Well, ", "I think ", "For me ", "Hmm, "]
ENDINGS = ["", "", ".", "!", " :)", "...", "!!"]


def load_photos():
    """RGB uint8 arrays of the real photos that load offline."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_PHOTOS:
        arr = getattr(skimage.data, name)()
        photos.append(np.stack([arr] * 3, axis=-1) if arr.ndim == 2 else arr[..., :3])
    photos += list(load_sample_images().images)
    return photos


def random_view(photo, rng, size):
    """A random crop resized to size x 3/4 size (landscape or portrait)."""
    h, w = photo.shape[:2]
    ch, cw = int(h * rng.uniform(0.45, 1.0)), int(w * rng.uniform(0.45, 1.0))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    short = round(size * 0.75)
    shape = (size, short) if rng.random() < 0.7 else (short, size)
    return Image.fromarray(photo[top:top + ch, left:left + cw]).resize(shape, Image.BICUBIC)


def draw_defects(rng):
    """Severity in (0, 1] per applied defect; dark and bright exclude each other."""
    defects = {d: float(rng.uniform(0.3, 1.0)) for d in DEFECTS if rng.random() < DEFECT_PROBABILITY}
    if "dark" in defects and "bright" in defects:
        del defects[rng.choice(["dark", "bright"])]
    return defects


def apply_defects(img, defects, rng):
    if "tilt" in defects:
        img = img.rotate(float(rng.choice([-1, 1])) * (4 + 14 * defects["tilt"]), Image.BICUBIC)
    if "blur" in defects:
        img = img.filter(ImageFilter.GaussianBlur(0.8 + 3.2 * defects["blur"]))
    if "flat" in defects:
        img = ImageEnhance.Contrast(img).enhance(1 - 0.7 * defects["flat"])
    if "desaturated" in defects:
        img = ImageEnhance.Color(img).enhance(1 - 0.9 * defects["desaturated"])
    pixels = np.asarray(img, dtype=np.float32)
    if "dark" in defects:
        pixels = pixels * (1 - 0.65 * defects["dark"])
    if "bright" in defects:
        pixels = pixels + (255 - pixels) * 0.65 * defects["bright"]
    if "noise" in defects:
        pixels = pixels + rng.normal(0, 6 + 30 * defects["noise"], pixels.shape)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def latent_quality(appeal, defects, rng):
    """Mean score: visible defects and hidden appeal contribute comparably, plus noise."""
    penalty = sum(defects.values())
    return float(np.clip(6.4 + 0.9 * appeal - 0.9 * penalty + rng.normal(0, 0.3), 1.8, 8.7))


def vote_histogram(mean, rng):
    scores = np.arange(1, 11)
    probs = np.exp(-0.5 * ((scores - mean) / rng.uniform(1.2, 1.7)) ** 2)
    return rng.multinomial(int(rng.integers(100, 301)), probs / probs.sum())


def _phrase(options, rng):
    text = options[rng.integers(len(options))]
    text = OPENERS[rng.integers(len(OPENERS))] + text
    return text[0].upper() + text[1:] + ENDINGS[rng.integers(len(ENDINGS))]


def appeal_pool(felt):
    """Phrases graded by how strongly a commenter felt about the subject."""
    for threshold, pool in ((1.1, APPEAL_GREAT), (0.25, APPEAL_GOOD), (-0.25, APPEAL_MEH), (-1.1, APPEAL_BAD)):
        if felt > threshold:
            return pool
    return APPEAL_AWFUL


def make_comments(appeal, defects, mean, rng):
    """Comments keyed to the latents, with generic, misleading and hint noise mixed in."""
    if rng.random() < NO_COMMENT_SHARE:
        return []
    comments = []
    for _ in range(int(rng.integers(3, 10))):
        kind = rng.random()
        felt = appeal + rng.normal(0, 0.35)
        if kind < 0.45:
            pool = appeal_pool(felt)
        elif kind < 0.72 and defects:
            defect = list(defects)[rng.integers(len(defects))]
            pool = CRITICISM[defect]
        elif kind < 0.8:
            fine = [d for d in DEFECTS if d not in defects] or list(DEFECTS)
            pool = PRAISE[fine[rng.integers(len(fine))]]
        elif kind < 0.85:
            pool = [f"I'd give it a {int(np.clip(round(mean + rng.normal(0, 1.2)), 1, 10))}"]
        elif kind < 0.94:
            pool = GENERIC
        else:  # misleading: the opposite sentiment
            pool = APPEAL_BAD if felt > 0 else APPEAL_GOOD
        comments.append(_phrase(pool, rng))
    return comments


def write_raw(raw: Path, n: int, size: int, seed: int):
    """The raw AVA-format files of n demo images under `raw`."""
    images = raw / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    photos = load_photos()
    # appeal belongs to the photographed subject: shared by every crop of a source photo
    photo_appeal = np.random.default_rng([seed, 0]).normal(0, SUBJECT_APPEAL_SD, len(photos))
    ids = (rng.choice(900_000, size=n, replace=False) + 100_000).tolist()
    test_ids = set(rng.choice(ids, size=round(0.2 * n), replace=False).tolist())
    rest = [i for i in ids if i not in test_ids]
    broken = rng.choice(rest, size=3, replace=False).tolist() if n >= 20 else []
    label_lines, comment_lines = [], ["0#image_id#comments\n"]  # a header-like line, skipped like in the wild
    for k, image_id in enumerate(ids, 1):
        item_rng = np.random.default_rng([seed, k])
        photo_index = int(item_rng.integers(len(photos)))
        appeal = float(photo_appeal[photo_index] + item_rng.normal(0, IMAGE_APPEAL_SD))
        defects = draw_defects(item_rng)
        mean = latent_quality(appeal, defects, item_rng)
        votes = vote_histogram(mean, item_rng)
        label_lines.append(f"{k} {image_id} {' '.join(map(str, votes))} {photo_index + 1} 0 {1000 + photo_index}\n")
        comments = make_comments(appeal, defects, mean, item_rng)
        if comments:
            comment_lines.append(f"{k}#{image_id}#{'#'.join(comments)}\n")
        if image_id in broken[:2]:
            continue  # listed, but the file is missing
        path = images / f"{image_id}.jpg"
        apply_defects(random_view(photos[photo_index], item_rng, size), defects, item_rng).save(
            path, quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)
        if broken and image_id == broken[2]:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (raw / "AVA.txt").write_text("".join(label_lines), encoding="utf-8")
    (raw / "AVA_Comments_Full.txt").write_text("".join(comment_lines), encoding="utf-8")
    (raw / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in ids if i in test_ids), encoding="utf-8")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Build the offline AVA-like demo dataset (raw files + prepared folder).")
    p.add_argument("--out", type=Path, default=Path("datasets/demo"), help="prepared folder; raw files go to OUT/raw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=800, help="number of images")
    p.add_argument("--size", type=int, default=256, help="long side of the images in pixels")
    p.add_argument("--workers", type=int, default=None, help="image-check processes for prepare_ava")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.n < 1 or args.size < 16:
        p.error("--n must be >= 1 and --size >= 16")
    return args


def build_demo(out, n: int = 800, size: int = 256, seed: int = 0, workers=None, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Write the raw demo files and prepare them into `out` (atomically); returns prepare's report."""
    out = Path(out).absolute()
    prepare_ava.refuse_existing(out, overwrite)
    staging = prepare_ava.make_staging(out)
    try:
        raw = staging / "raw"
        write_raw(raw, n, size, seed)
        prepare_argv = ["--ava-txt", str(raw / "AVA.txt"), "--comments", str(raw / "AVA_Comments_Full.txt"),
                        "--images", str(raw / "images"), "--test-list", str(raw / "generic_test.jpgl"),
                        "--out", str(out), "--seed", str(seed), "--val-fraction", "0.1"]
        if workers is not None:
            prepare_argv += ["--workers", str(workers)]
        if not progress:
            prepare_argv.append("--no-progress")
        report = prepare_ava.prepare(prepare_ava.parse_args(prepare_argv), staging)
        prepare_ava.publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def main(argv=None) -> dict:
    """`make_demo_data.py`: build the demo into `--out`; returns prepare's report."""
    args = parse_args(argv)
    report = build_demo(args.out, args.n, args.size, args.seed, args.workers, args.overwrite, not args.no_progress)
    print(f"demo dataset in {args.out.absolute()}: rows={report['rows']} train={report['train']} val={report['val']} "
          f"test={report['test']} missing={report['images_missing']} corrupt={report['images_corrupt']}")
    return report
