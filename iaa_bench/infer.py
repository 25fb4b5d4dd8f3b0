"""Score new images (and their comments) with a trained model.

    python iaa_bench/infer.py -opt experiments/mmlq_demo --img photo.jpg [--comments "great light"] [--out scores.csv]
"""
import os
import sys

# `python iaa_bench/infer.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.evaluation.infer import infer  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(infer))
