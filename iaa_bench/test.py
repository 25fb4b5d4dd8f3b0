"""Evaluate a trained model on an option file's val/test datasets; writes results/<name>/.

    python iaa_bench/test.py -opt options/mmlq_demo.yml [--force_yml path:pretrain_network=...]
"""
import os
import sys

# `python iaa_bench/test.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.evaluation.evaluate import test_pipeline  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(test_pipeline))
