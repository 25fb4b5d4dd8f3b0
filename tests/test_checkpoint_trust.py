"""Checkpoints and training states are data: loading one never runs code it carries."""
import os

import numpy as np
import pytest
import torch

from iaa_bench.models import checkpoint as ckpt
from iaa_bench.utils.errors import CheckpointError


class Payload:
    """A pickle that runs a shell command when unpickled (what a malicious .pth can hold)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_network_checkpoint_with_a_code_payload_is_refused(tmp_path):
    net = torch.nn.Linear(2, 1)
    path = tmp_path / "net_best.pth"
    torch.save({"params": net.state_dict(), "extra": Payload(tmp_path / "pwned")}, path)
    with pytest.raises(CheckpointError, match="Refusing to load .*net_best.pth"):
        ckpt.load_network_checkpoint(net, str(path))
    assert not (tmp_path / "pwned").exists()


def test_training_state_with_a_code_payload_is_skipped_for_the_previous_one(tmp_path):
    good = {"iter": 3, "rng": ckpt.rng_state(), "best_metric_results": {"val": {"srcc": np.float64(0.5)}}}
    torch.save(good, tmp_path / "3.state")
    torch.save({"iter": 6, "rng": Payload(tmp_path / "pwned")}, tmp_path / "6.state")
    path, state = ckpt.load_latest_state(str(tmp_path))
    assert not (tmp_path / "pwned").exists()
    assert path.endswith("3.state") and state["best_metric_results"]["val"]["srcc"] == 0.5
    assert np.array_equal(state["rng"]["numpy"][1], good["rng"]["numpy"][1])  # NumPy's RNG state: allow-listed
    with pytest.raises(CheckpointError, match="Refusing"):
        ckpt.safe_load(str(tmp_path / "6.state"), training_state=True)
