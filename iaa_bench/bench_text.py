"""Encoder cost of chunked vs one-pass comment reading at equal coverage.

    python iaa_bench/bench_text.py [--encoder offline-minilm] [--tokens 512] [--chunk-lengths 512 256 128 64]
"""
import os
import sys

# `python iaa_bench/bench_text.py` puts iaa_bench/ first on sys.path, where its sub-packages
# (data, utils, ...) would shadow installed packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

from iaa_bench.evaluation.text_speed import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
