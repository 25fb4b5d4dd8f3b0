"""Evaluate a trained model on an option file's val/test datasets.

    python iaa_bench/test.py -opt options/mmlq_demo.yml [--force_yml path:pretrain_network=...]

Without `path.pretrain_network`, the run's own `experiments/<name>/models/net_best.pth`
(else `net_latest.pth`) is used. Metrics and per-image predictions go to `results/<name>/`.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.cli import run  # noqa: E402
from iaa_bench.engine import test_pipeline  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(test_pipeline))
