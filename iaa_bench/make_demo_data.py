"""Build the offline AVA-like demo dataset (raw files + prepared folder).

    python iaa_bench/make_demo_data.py --out datasets/demo [--n 800] [--seed 0]
"""
import os
import sys

# `python iaa_bench/make_demo_data.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.data.demo import main  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(main))
