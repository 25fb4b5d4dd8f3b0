"""The one image loader of datasets, the feature-cache build and `infer.py`: the picture raters saw.

`Image.open(path).convert("RGB")` gets three kinds of files wrong: 16-bit greyscale
(`I;16`, `I`) is clipped to white, transparent pixels (RGBA, LA, palette with a
transparent index) take whatever colour they hide, and a photo stored sideways with an
EXIF orientation tag stays sideways. `load_image` converts high-bit-depth greyscale by
its range, composites alpha on white, and applies `ImageOps.exif_transpose` unless asked
not to (the dataset option `exif_transpose: false` gives pyiqa-identical preprocessing).

PIL refuses images above ~179 M pixels (`DecompressionBombError`, not an OSError, so it
escaped `bad_image`): here such a file is an `UnreadableImageError` naming the file and
the limit, which the dataset option `max_image_pixels` raises.
"""
import numpy as np
from PIL import Image, ImageOps

from iaa_bench.utils.errors import UnreadableImageError

DEFAULT_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # where PIL's own guard raises (it only warns above half of it)
HIGH_BIT_DEPTH_GREY = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def loading_options(dataset_opt: dict) -> dict:
    """The image-loading keys of a dataset's options (they change the pixels, so the feature cache keys on them)."""
    return {"exif_transpose": bool(dataset_opt.get("exif_transpose", True)),
            "max_pixels": int(dataset_opt.get("max_image_pixels") or DEFAULT_MAX_PIXELS)}


def load_image(path, exif_transpose: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An 8-bit RGB image of `path`, as a viewer shows it (see the module docstring)."""
    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the size is checked below, against `max_pixels`, naming the file
    try:
        with Image.open(path) as img:
            pixels = img.width * img.height
            if pixels > max_pixels:
                raise UnreadableImageError(
                    f"{path}: {img.width}x{img.height} = {pixels:,} pixels is above the limit of {max_pixels:,} "
                    "(a decompression-bomb guard); raise it with the dataset option `max_image_pixels`")
            img.load()
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB: 16/32-bit greyscale scaled by its range, alpha (also a palette's transparency) over white."""
    if img.mode in HIGH_BIT_DEPTH_GREY:
        grey = np.asarray(img, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
        return Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("PA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, img).convert("RGB")
    return img.convert("RGB")
