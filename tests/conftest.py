"""Shared fixtures: tiny AVA-style and demo datasets on disk, tiny MMLQ / BERT configs, option files, a socket ban."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"

# A BERT-shaped text encoder small enough to build in milliseconds (random init, MiniLM's vocabulary).
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=30522)
# MMLQ network options at test size: random-init encoders, the offline MiniLM tokenizer.
TINY_MMLQ = dict(image_encoder=dict(name="resnet10t", weights=None, img_size=64),
                 text_encoder=dict(name="offline-minilm", max_length=24, weights=None, config=TINY_BERT),
                 num_visual_queries=4, num_text_queries=3, dim=32, num_heads=4, depth=2, dropout=0.1)


def build_tiny_mmlq(seed: int = 0, **overrides):
    """A tiny MMLQ (TINY_MMLQ with `overrides`), its weights drawn from `seed`."""
    import torch
    from iaa_bench.archs.mmlq_arch import MMLQ

    torch.manual_seed(seed)
    return MMLQ(**{**TINY_MMLQ, **overrides})


@pytest.fixture
def tiny_mmlq():
    return build_tiny_mmlq


@pytest.fixture
def forbid_sockets(monkeypatch):
    """Any network connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A prepared demo dataset (40 images of 64 px, comments, raw files), built once per session; read it only."""
    from iaa_bench.data import demo

    out = tmp_path_factory.mktemp("demo") / "data"
    demo.main(["--out", str(out), "--n", "40", "--size", "64", "--workers", "1", "--no-progress"])
    return out


def write_tiny_ava(folder: Path, n: int = 24, size: int = 32, seed: int = 0) -> Path:
    """Random JPEGs + a meta_info.csv in pyiqa's AVA columns (splits 0/1/2 = 60/20/20 %)."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    rows = ["img_name,MOS," + ",".join(f"c{i}" for i in range(1, 11)) + ",semantic_tag1,semantic_tag2,official_split"]
    for i in range(n):
        brightness = rng.uniform(0.1, 0.9)
        pixels = np.clip(rng.normal(brightness, 0.15, (size, size, 3)) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / f"{1000 + i}.jpg", quality=90)
        votes = rng.multinomial(100, np.exp(-0.5 * ((np.arange(1, 11) - (2 + 6 * brightness)) / 1.5) ** 2) /
                                np.exp(-0.5 * ((np.arange(1, 11) - (2 + 6 * brightness)) / 1.5) ** 2).sum())
        mos = float((votes * np.arange(1, 11)).sum() / votes.sum())
        split = 0 if i < 0.6 * n else (1 if i < 0.8 * n else 2)
        rows.append(f"{1000 + i}.jpg,{mos:.4f}," + ",".join(map(str, votes)) + f",0,0,{split}")
    (folder / "meta_info.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def tiny_ava(tmp_path) -> Path:
    return write_tiny_ava(tmp_path / "ava")


def tiny_options(data: Path, name: str = "tiny", network=None, total_iter: int = 6, **extra) -> dict:
    """A complete pyiqa-schema option dict training TinyIAANet on `data` (pyiqa's AVADataset)."""
    dataset = {"type": "AVADataset", "dataroot_target": str(data / "images"), "meta_info_file": str(data / "meta_info.csv"),
               "split_index": "official_split", "val_num": 2, "augment": {"resize": [32, 32]}, "img_range": 1}
    opt = {
        "name": name, "model_type": "IAAModel", "num_gpu": 0, "manual_seed": 7,
        "plugins": [str(ASSETS / "tiny_iaa_arch.py")],
        "datasets": {
            "train": {**dataset, "name": "tiny_train", "use_shuffle": True, "num_worker_per_gpu": 0, "batch_size_per_gpu": 4},
            "val": {**dataset, "name": "tiny_val", "batch_size_per_gpu": 4},
        },
        "network": network or {"type": "TinyIAANet", "width": 8},
        "path": {},
        "train": {"optim": {"type": "Adam", "lr": 1e-3}, "scheduler": {"type": "MultiStepLR", "milestones": [4], "gamma": 0.5},
                  "total_iter": total_iter, "warmup_iter": -1, "mos_loss_opt": {"type": "ScoreDistEMDLoss", "r": 2}},
        "val": {"val_freq": 3, "key_metric": "srcc", "metrics": {"srcc": {"type": "aesthetic_srcc"},
                                                                 "plcc": {"type": "aesthetic_plcc"}}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 3, "save_latest_freq": 3, "use_tb_logger": True},
    }
    for key, value in extra.items():
        opt[key] = value
    return opt


def write_options(path: Path, opt: dict) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port nothing listens on now, for a test's own rendezvous (a fixed one can be taken)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_script(script: str, *args, cwd, timeout=300, env_extra=None):
    """Run an iaa_bench entry script as a user would (`python iaa_bench/<script>.py ...`)."""
    env = {**os.environ, "PYTHONHASHSEED": "0", **(env_extra or {})}
    return subprocess.run([sys.executable, str(REPO / "iaa_bench" / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)
