"""Measure training and inference throughput (cached vs uncached, MMLQ vs NIMA) in one process,
or (`--vs-pyiqa`) iaa_bench's training beside pyiqa's own trainer on one option file.

    python iaa_bench/bench_speed.py [-opt options/mmlq_demo.yml] [--batches N] [--paper-size]
    python iaa_bench/bench_speed.py --vs-pyiqa [-opt options/pyiqa/train_NIMA_demo.yml] [--iters N] [--rounds N]
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
