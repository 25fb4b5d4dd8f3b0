"""pyiqa's command line with iaa_bench's metrics (pyiqa's own `pyiqa` command cannot see plugins).

    python iaa_bench/pyiqa_cmd.py mmlq -t photo.jpg --pretrained_model_path experiments/mmlq_demo
    python iaa_bench/pyiqa_cmd.py -ls
"""
import os
import sys

# `python iaa_bench/pyiqa_cmd.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.evaluation.pyiqa_metric import pyiqa_command  # noqa: E402
from iaa_bench.utils.cli import run  # noqa: E402

if __name__ == "__main__":
    sys.exit(run(pyiqa_command))
