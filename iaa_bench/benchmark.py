"""Score every model of a benchmark file on one test split and write the leaderboard.

    python iaa_bench/benchmark.py -opt options/benchmark_demo.yml [--out DIR] [--root DIR]
"""
import os
import sys

# `python iaa_bench/benchmark.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.evaluation.benchmark import benchmark  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(benchmark))
