"""pyiqa's own `AVADataset` (`type: AVADataset`), its images read by iaa_bench's one loader.

pyiqa reads `Image.open(path).convert("RGB")`: 16-bit greyscale turns white, transparent
pixels show the colour they hide, EXIF orientation is ignored. This subclass runs pyiqa's
own `__getitem__` unchanged (its labels, `img2`, `mos_label` / 10, ...) with that one read
done by `iaa_bench.data.images.load_image`, under the dataset options `exif_transpose`
(false: pyiqa's pixels) and `max_image_pixels`, as for AVACommentsDataset.
`iaa_bench.utils.pyiqa_adapter.build_dataset` builds it for `type: AVADataset`.
"""
from functools import partial

from iaa_bench.data.images import load_image, loading_options
from iaa_bench.utils.pyiqa_adapter import pyiqa_ava_images_read_by, pyiqa_ava_module


class AVADataset(pyiqa_ava_module().AVADataset):
    """pyiqa's AVADataset; images as raters saw them (see the module docstring)."""

    def init_path_mos(self, opt):
        super().init_path_mos(opt)
        self.loading = loading_options(opt)

    def __getitem__(self, index):
        with pyiqa_ava_images_read_by(partial(load_image, **self.loading)):
            return super().__getitem__(index)
