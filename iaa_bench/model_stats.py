"""Parameters and MACs per sample of a network's trainable part (see iaa_bench.evaluation.model_stats).

    python iaa_bench/model_stats.py -opt options/mmlq_ava.yml [--random-init] [--tokens L]
"""
import os
import sys

# `python iaa_bench/model_stats.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.evaluation.model_stats import model_stats  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(model_stats))
