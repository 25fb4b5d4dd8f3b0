"""Images as raters saw them: one loader for datasets, the feature-cache build and infer."""
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from iaa_bench.data import prepare as prepare_ava
from iaa_bench.data.images import load_image
from iaa_bench.utils.errors import BadImageError, UnreadableImageError


def grey16(path, value=20000):
    Image.fromarray(np.full((6, 8), value, np.uint16)).save(path, format="PNG")
    assert Image.open(path).mode in ("I;16", "I")
    return path


def sideways_jpeg(path):
    """8 wide x 4 high pixels, stored with EXIF orientation 6 (shown rotated: 4 wide x 8 high)."""
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[:, :4] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    return path


def test_16_bit_greyscale_keeps_its_grey(tmp_path):
    img = np.asarray(load_image(grey16(tmp_path / "g.png")))
    assert img.shape == (6, 8, 3) and np.all(img == round(20000 / 257))  # `convert("RGB")` gave 255


def test_alpha_and_palette_transparency_are_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # one opaque red pixel, the rest transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = np.asarray(load_image(tmp_path / "a.png"))
    assert img[0, 0].tolist() == [255, 0, 0] and np.all(img.reshape(-1, 3)[1:] == 255)
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.save(tmp_path / "p.png", transparency=0)
    img = np.asarray(load_image(tmp_path / "p.png"))
    assert img[1, 1].tolist() == [0, 0, 255] and img[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied_unless_turned_off(tmp_path):
    path = sideways_jpeg(tmp_path / "s.jpg")
    assert load_image(path).size == (4, 8)
    assert load_image(path, exif_transpose=False).size == (8, 4)


def _png_claiming_size(path, width, height):
    """A valid small PNG whose header claims width x height (PIL checks the size when opening)."""
    Image.new("L", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b'IHDR' + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_an_unreadable_image_naming_file_and_limit(tmp_path):
    path = _png_claiming_size(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # what escaped `bad_image` (it is not an OSError)
    with pytest.raises(UnreadableImageError, match=r"bomb.png: 30000x30000 = 900,000,000 pixels is above the limit "
                                                    r"of 178,956,970.*max_image_pixels"):
        load_image(path)
    with pytest.raises(UnreadableImageError, match="limit of 20"):
        load_image(grey16(tmp_path / "g.png"), max_pixels=20)
    assert Image.MAX_IMAGE_PIXELS is not None  # PIL's own guard is back in place


@pytest.fixture
def prepared(tmp_path):
    """A prepared dataset whose three training images are a 16-bit PNG, a sideways JPEG and a 'bomb'."""
    images = tmp_path / "images"
    images.mkdir()
    grey16(images / "1.jpg")  # the content decides the format, not the name
    sideways_jpeg(images / "2.jpg")
    _png_claiming_size(images / "3.jpg", 30000, 30000)
    (tmp_path / "AVA.txt").write_text("".join(f"{k} {k} 0 0 1 2 3 4 3 2 1 0 0 0 0\n" for k in (1, 2, 3)))
    out = tmp_path / "prepared"
    prepare_ava.main(["--ava-txt", str(tmp_path / "AVA.txt"), "--images", str(images), "--out", str(out),
                      "--test-fraction", "0", "--val-fraction", "0", "--workers", "1", "--no-progress"])
    return out


def _dataset(root, **opt):
    from iaa_bench.datasets.ava_comments_dataset import AVACommentsDataset
    from iaa_bench.data.loaders import GuardedDataset

    ds = AVACommentsDataset({"name": "t", "type": "AVACommentsDataset", "dataroot": str(root), "split": "train",
                             "phase": "train", "augment": {}, "img_range": 1, **opt})
    return GuardedDataset(ds, opt.get("bad_image", "fail"))


def test_dataset_and_infer_load_images_the_same_way(prepared):
    """The dataset (hence the cache build, which reads it) and infer: 16-bit grey kept, EXIF applied."""
    from iaa_bench.evaluation.infer import Preprocessor

    ds = _dataset(prepared, max_image_pixels=10 ** 9)
    assert ds[0]["img"].shape == (3, 6, 8) and torch.allclose(ds[0]["img"], torch.tensor(78 / 255))
    assert ds[1]["img"].shape == (3, 8, 4)  # shown upright
    infer = Preprocessor({"type": "AVACommentsDataset", "augment": {}, "img_range": 1})
    for i in (0, 1):
        assert torch.equal(infer.image(ds.dataset.labels(i)["img_path"]), ds[i]["img"])
    assert _dataset(prepared, exif_transpose=False)[1]["img"].shape == (3, 4, 8)  # pyiqa's preprocessing


def test_a_bomb_in_a_dataset_follows_bad_image(prepared):
    assert prepared.joinpath("meta_info.csv").read_text().count(".jpg") == 2  # prepare_ava left it out...
    meta = prepared / "meta_info.csv"  # ...put it back, as an image replaced after preparation
    meta.write_text(meta.read_text() + "3.jpg,5.0,0,0,1,2,3,4,3,2,1,0,0,0,0\n")
    with pytest.raises(BadImageError, match=r"3.jpg.*above the limit of 178,956,970"):
        _dataset(prepared)[2]
    assert _dataset(prepared, bad_image="skip")[2] == {"skipped_image": str(prepared.parent / "images" / "3.jpg")}


def test_pyiqa_ava_dataset_reads_images_with_the_shared_loader(tmp_path):
    """`type: AVADataset` (pyiqa's own dataset, as train.py builds it): 16-bit grey kept, EXIF applied, alpha on white."""
    from iaa_bench.utils.pyiqa_adapter import build_dataset, pyiqa_ava_module

    images = tmp_path / "images"
    images.mkdir()
    grey16(images / "1.png")
    sideways_jpeg(images / "2.jpg")
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # one opaque red pixel, the rest transparent black
    Image.fromarray(rgba, "RGBA").save(images / "3.png")
    votes = "0,0,1,2,3,4,3,2,1,0"
    rows = [f"{name},5.0,{votes},0,0,2" for name in ("1.png", "2.jpg", "3.png")]
    header = "img_name,MOS," + ",".join(f"c{i}" for i in range(1, 11)) + ",semantic_tag1,semantic_tag2,official_split"
    (tmp_path / "meta.csv").write_text("\n".join([header, *rows]) + "\n")
    opt = {"name": "ava", "type": "AVADataset", "phase": "test", "dataroot_target": str(images),
           "meta_info_file": str(tmp_path / "meta.csv"), "split_index": "official_split", "augment": {}}
    ds = build_dataset(opt)
    assert type(ds).__mro__[1] is pyiqa_ava_module().AVADataset  # pyiqa's class, only its image read replaced
    grey, upright, alpha = ds[0], ds[1], ds[2]
    assert torch.allclose(grey["img"], torch.tensor(78 / 255))  # pyiqa's `convert("RGB")`: 1.0, white
    assert upright["img"].shape == (3, 8, 4) and upright["org_size"].tolist() == [8, 4]
    assert alpha["img"][:, 0, 0].tolist() == [1, 0, 0] and torch.all(alpha["img"].reshape(3, -1)[:, 1:] == 1)
    assert grey["mos_label"].item() == pytest.approx(0.5)  # pyiqa's own labels (MOS / 10) are kept
    assert build_dataset({**opt, "exif_transpose": False})[1]["img"].shape == (3, 4, 8)  # pyiqa's preprocessing
    assert pyiqa_ava_module().Image is Image  # pyiqa's module is left as it was
