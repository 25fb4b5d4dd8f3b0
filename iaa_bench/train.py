"""Train a model from a pyiqa-style option file.

    python iaa_bench/train.py -opt options/mmlq_demo.yml [--auto_resume] [--force_yml train:total_iter=100]
    torchrun --nproc_per_node=2 iaa_bench/train.py -opt ... --launcher pytorch
"""
import os
import sys

# `python iaa_bench/train.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.training.loop import train_pipeline  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(train_pipeline))
