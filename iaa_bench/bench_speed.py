"""Measure training and inference throughput (cached vs uncached, MMLQ vs NIMA) in one process.

    python iaa_bench/bench_speed.py [-opt options/mmlq_demo.yml] [--batches N] [--paper-size]
"""
import os
import sys

# `python iaa_bench/bench_speed.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.evaluation.speed import main  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(main))
