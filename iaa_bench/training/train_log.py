"""A run's training log lines: written in pyiqa's shape, read back in every shape iaa_bench has written.

Written (pyiqa's, i.e. BasicSR's `MessageLogger` in pyiqa/utils/logger.py; iaa_bench's throughput after
pyiqa's fields):
    [mmlq_..][epoch:  0, iter:     100, lr:(1.000e-04,)] [eta: 0:02:10, time (data): 0.532 (0.004)] l_mos: 9.8765e-02 samples/s: 5.9300e+01
Runs trained before that wrote, and are still read:
    [mmlq_demo][epoch   0, iter     100, lr (1.000e-04)] l_mos: 9.8765e-02 | 59.3 samples/s, eta 0:02:10
"""
import glob
import os
import re
from os import path as osp

SAMPLES_PER_S = "samples/s"  # the log field of training throughput (samples of all ranks per second)

_NUMBER = r"[-+]?(?:\d[\d,]*\.?\d*(?:e[-+]?\d+)?|nan|inf)"
_PYIQA_LINE = re.compile(
    r"\[[^\]]*\]\[epoch:\s*(?P<epoch>\d+), iter:\s*(?P<iter>[\d,]+), lr:\((?P<lrs>[^)]*)\)\] "
    r"(?:\[eta: [^,]*, time \(data\): [\d.]+ \([\d.]+\)\] )?(?P<fields>.*)$")
_EARLIER_LINE = re.compile(
    r"\[[^\]]*\]\[epoch\s+(?P<epoch>\d+), iter\s+(?P<iter>[\d,]+), lr \((?P<lrs>[^)]*)\)\] "
    r"(?P<fields>.*?) \| (?P<rate>[\d.]+) samples/s, eta \S+\s*$")
_FIELD = re.compile(rf"(\S+): ({_NUMBER})(?=\s|$)")


def parse_train_line(line: str):
    """{'epoch', 'iter', 'lrs', 'losses', 'samples_per_s'} of a training log line (either shape), else None."""
    match = _PYIQA_LINE.search(line) or _EARLIER_LINE.search(line)
    if match is None:
        return None
    fields = {k: float(v.replace(",", "")) for k, v in _FIELD.findall(match["fields"])}
    rate = fields.pop(SAMPLES_PER_S, None)
    if "rate" in match.groupdict():
        rate = float(match["rate"])
    return {"epoch": int(match["epoch"]), "iter": int(match["iter"].replace(",", "")),
            "lrs": [float(v) for v in match["lrs"].split(",") if v.strip()], "losses": fields, "samples_per_s": rate}


def last_logged_samples_per_s(experiments_root: str):
    """The last training throughput a run's `train_*.log` files logged (newest file first), or None."""
    for log_file in sorted(glob.glob(osp.join(experiments_root, "train_*.log")), key=os.path.getmtime, reverse=True):
        with open(log_file, encoding="utf-8", errors="replace") as f:
            rates = [r["samples_per_s"] for r in map(parse_train_line, f) if r and r["samples_per_s"] is not None]
        if rates:
            return rates[-1]
    return None
