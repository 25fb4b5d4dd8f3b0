"""MMLQ with a slow frozen image encoder (loaded via `plugins:`): a feature-cache build a test can interrupt."""
import time

from iaa_bench.archs.mmlq_arch import MMLQ
from iaa_bench.utils.pyiqa_adapter import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class SlowEncoderMMLQ(MMLQ):
    def __init__(self, encode_delay: float = 0.0, **kwargs):
        """encode_delay: seconds of sleep per call of the frozen image encoder (the cache build's batches)."""
        super().__init__(**kwargs)
        self.image_encoder.register_forward_pre_hook(lambda module, args: time.sleep(encode_delay))
