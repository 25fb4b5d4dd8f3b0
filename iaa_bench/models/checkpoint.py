"""Crash-safe checkpoints and training states.

Every file is written to a temporary name in the same folder, fsynced, then renamed,
so a crash or a full disk never leaves a half-written checkpoint where a good one was.
Network checkpoints hold only trainable weights plus the identity of each frozen
encoder (frozen weights are reloaded from their source, and the identity is checked).
Training states hold everything needed to continue bit-for-bit: network, optimizers,
schedulers, grad scaler, counters, best metrics and every RNG state. Both are loaded with
`weights_only=True` (see `safe_load`): a checkpoint file is data, never code.
"""
import logging
import os
import pickle
import random
import re
from os import path as osp

import numpy as np
import torch

from iaa_bench.utils.atomic import atomic_write
from iaa_bench.utils.errors import CheckpointError
from iaa_bench.utils.pyiqa_adapter import LOGGER_NAME

STATE_SUFFIX = ".state"
log = logging.getLogger(LOGGER_NAME)


def atomic_torch_save(obj, path: str) -> None:
    """torch.save to `path` atomically; on failure the previous file is untouched."""
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except OSError as err:
        raise CheckpointError(f"Could not write {path}: {err}; the previous file is intact") from err


def bare(net: torch.nn.Module) -> torch.nn.Module:
    return net.module if isinstance(net, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else net


def network_checkpoint(net: torch.nn.Module) -> dict:
    """{'params': trainable weights, 'frozen_identity': {...}} (pyiqa's `params` key)."""
    from iaa_bench.archs.frozen_encoders import frozen_identity, trainable_state_dict

    net = bare(net)
    return {"params": {k: v.detach().cpu() for k, v in trainable_state_dict(net).items()},
            "frozen_identity": frozen_identity(net)}


def _state_globals() -> list:
    """What a training state holds beyond tensors and containers: NumPy's RNG state (an
    array) and NumPy scalars (metric values). Nothing here can run code when unpickled."""
    import numpy as np

    return [np.ndarray, np.dtype, np.empty(0).__reduce__()[0], np.float64(0).__reduce__()[0],
            *(type(np.dtype(t)) for t in ("uint32", "float32", "float64"))]


def safe_load(path: str, training_state: bool = False):
    """torch.load with `weights_only=True`: tensors, containers and plain values only (plus
    `_state_globals` for a training state), so a checkpoint cannot run code when loaded."""
    try:
        with torch.serialization.safe_globals(_state_globals() if training_state else []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"Refusing to load {path}: it holds Python objects that loading would run, not "
                              f"only weights ({str(err).splitlines()[-1] if str(err) else err})") from err


def load_network_checkpoint(net: torch.nn.Module, ckpt, strict: bool = True, param_key: str = "params") -> None:
    """Load a network checkpoint (ours, or a pyiqa-style full state dict under `param_key`)."""
    from iaa_bench.archs.frozen_encoders import load_trainable_state_dict

    net = bare(net)
    if isinstance(ckpt, str):
        ckpt = safe_load(ckpt)
    params = ckpt.get(param_key, ckpt.get("params", ckpt)) if isinstance(ckpt, dict) else ckpt
    params = {k[7:] if k.startswith("module.") else k: v for k, v in params.items()}
    identity = ckpt.get("frozen_identity") if isinstance(ckpt, dict) else None
    if identity is None:
        load_full_state_dict(net, params, strict)
    else:
        load_trainable_state_dict(net, params, identity, strict=strict)


def load_full_state_dict(net: torch.nn.Module, params: dict, strict: bool) -> None:
    """A pyiqa-format checkpoint (a full state dict, no `frozen_identity`): every key checked by shape.

    Frozen-encoder weights it holds are loaded; ones it lacks keep the encoder's own source.
    Nothing says which encoders it was trained on, so that is warned about, not checked.
    """
    from iaa_bench.archs.frozen_encoders import frozen_submodules, trainable_state_dict

    own = net.state_dict()
    problems = [f"{k}: checkpoint {tuple(v.shape)} vs network {tuple(own[k].shape)}"
                for k, v in params.items() if k in own and own[k].shape != v.shape]
    if strict:
        problems += [f"{k}: missing" for k in trainable_state_dict(net) if k not in params]
        problems += [f"{k}: not in the network" for k in params if k not in own]
    if problems:
        raise CheckpointError("checkpoint does not fit the network: " + "; ".join(problems[:10])
                              + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""))
    frozen = list(frozen_submodules(net))
    if frozen:
        log.warning(f"Checkpoint without frozen_identity (pyiqa format): frozen encoders {frozen} checked by shape "
                    "only; which weights they were trained on is unknown")
    net.load_state_dict(params, strict=False)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def state_iters(folder: str) -> list[int]:
    """Iterations of the training states in `folder`, newest first."""
    if not osp.isdir(folder):
        return []
    iters = [int(m.group(1)) for f in os.listdir(folder) if (m := re.fullmatch(r"(\d+)\.state", f))]
    return sorted(iters, reverse=True)


def load_latest_state(folder: str):
    """Newest training state in `folder` that loads; corrupt ones are skipped with a warning."""
    for it in state_iters(folder):
        path = osp.join(folder, f"{it}{STATE_SUFFIX}")
        try:
            state = safe_load(path, training_state=True)
            if not isinstance(state, dict) or state.get("iter") != it:
                raise CheckpointError("content does not match its file name")
        except Exception as err:  # truncated or corrupt file: fall back to the previous one
            log.warning(f"Skipping unreadable training state {path}: {type(err).__name__}: {err}")
            continue
        return path, state
    return None, None


def prune_states(folder: str, keep: int) -> None:
    """Keep the newest `keep` training states (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    for it in state_iters(folder)[keep:]:
        os.remove(osp.join(folder, f"{it}{STATE_SUFFIX}"))
