"""Prepare raw AVA + AVA-Comments files into a folder the datasets read.

    python iaa_bench/prepare_ava.py --ava-txt AVA.txt --comments AVA_Comments_Full.txt --images DIR --out DIR
"""
import os
import sys

# `python iaa_bench/prepare_ava.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.data.prepare import main  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(main))
