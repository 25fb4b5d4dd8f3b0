"""Frozen-feature cache: equal to the uncached path, keyed, resumable, refuses random augments, DDP, no decoding."""
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_MMLQ, build_tiny_mmlq, free_port, write_options
from torch.utils.data import DataLoader

import iaa_bench  # noqa: F401  (registers MMLQ and AVACommentsDataset)
from iaa_bench.data import feature_cache as fc
from iaa_bench.data.loaders import EpochSampler

MAX_LENGTH = TINY_MMLQ["text_encoder"]["max_length"]


def dataset(root, split="train", augment=None, max_length=MAX_LENGTH, max_chunks=1):
    from iaa_bench.datasets.ava_comments_dataset import AVACommentsDataset

    return AVACommentsDataset({"name": f"demo_{split}", "type": "AVACommentsDataset", "dataroot": str(root),
                               "split": split, "phase": split, "augment": augment or {"resize": [64, 64]},
                               "img_range": 1, "text": {"tokenizer": "offline-minilm", "max_length": max_length,
                                                        "max_chunks": max_chunks}})


def tiny_mmlq(seed=0, **overrides):
    return build_tiny_mmlq(seed, **overrides).eval()


def loader_of(ds, batch_size=4):
    return DataLoader(ds, batch_size=batch_size, sampler=EpochSampler(len(ds), 0, shuffle=False),
                      generator=torch.Generator().manual_seed(0))


def cached(tmp_path, net, loader, device="cpu", **cache):
    opt = {"feature_cache": {"enabled": True, "dir": str(tmp_path / "cache"), **cache}, "manual_seed": 3}
    return fc.cached_loader(opt, SimpleNamespace(net=net, device=torch.device(device)), loader)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("modality, device, chunks", [("both", "cpu", 1), ("image", "cpu", 1), ("text", "cpu", 1),
                                                      ("text", "cpu", 3), pytest.param("both", "cuda", 1, marks=CUDA)])
def test_cached_outputs_equal_uncached(demo_data, tmp_path, modality, device, chunks):
    length = MAX_LENGTH // chunks  # chunked: the same comments read in 3 passes of 8 tokens
    net = tiny_mmlq(modality=modality, text_encoder={**TINY_MMLQ["text_encoder"], "max_length": length,
                                                     "max_chunks": chunks}).to(device)
    ds = dataset(demo_data, max_length=length, max_chunks=chunks)
    plain, from_cache = next(iter(loader_of(ds))), next(iter(cached(tmp_path, net, loader_of(ds), device)))
    plain, from_cache = ({k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in (plain, from_cache))
    assert from_cache["img_path"] == plain["img_path"] and "img" not in from_cache and "text_ids" not in from_cache
    assert ("image_feats" in from_cache) == (modality != "text") and ("text_feats" in from_cache) == (modality != "image")
    assert torch.equal(from_cache["mos_dist"], plain["mos_dist"]) and torch.equal(from_cache["mos_label"], plain["mos_label"])
    if modality != "image":  # stored at real length: the batch is padded to its longest text only
        assert torch.equal(from_cache["text_mask"].sum(1), plain["text_mask"].flatten(1).sum(1))
        assert from_cache["text_mask"].sum(1).max() == from_cache["text_mask"].shape[1]
    with torch.no_grad():
        ref = net(plain["img"], plain["text_ids"], plain["text_mask"], return_dist=True, return_mos=False)
        out = net(image_feats=from_cache.get("image_feats"), text_feats=from_cache.get("text_feats"),
                  text_mask=from_cache.get("text_mask"), return_dist=True, return_mos=False)
    assert torch.allclose(out, ref, atol=1e-2) and (out - ref).abs().max() < 1e-3


def test_key_changes_with_encoder_image_size_max_length_and_data(demo_data, tmp_path):
    def folder(net, ds):
        return fc.cache_folder(str(tmp_path), fc.describe(net, ds, "float16"))

    def image_folder(net, ds):
        return fc.cache_folder(str(tmp_path), fc.describe(net, ds, "float16", kinds=("image",)))

    base = folder(tiny_mmlq(), dataset(demo_data))
    assert folder(tiny_mmlq(seed=1), dataset(demo_data)) == base  # trainable weights do not matter
    image_64 = dict(TINY_MMLQ["image_encoder"], name="resnet14t")
    changed = [
        folder(tiny_mmlq(image_encoder=image_64), dataset(demo_data)),
        folder(tiny_mmlq(image_encoder=dict(TINY_MMLQ["image_encoder"], img_size=96)), dataset(demo_data)),
        folder(tiny_mmlq(), dataset(demo_data, augment={"resize": [48, 48]})),
        folder(tiny_mmlq(text_encoder=dict(TINY_MMLQ["text_encoder"], max_length=32)), dataset(demo_data, max_length=32)),
        folder(tiny_mmlq(), dataset(demo_data, max_length=16)),
        folder(tiny_mmlq(), dataset(demo_data, split="val")),
        fc.cache_folder(str(tmp_path), fc.describe(tiny_mmlq(), dataset(demo_data), "float32")),
    ]
    assert len({base, *changed}) == len(changed) + 1
    # one cache per encoder: what else differs (text settings, the other branch) does not matter
    image_base = image_folder(tiny_mmlq(), dataset(demo_data))
    assert image_folder(tiny_mmlq(modality="image"), dataset(demo_data, max_length=16)) == image_base
    assert image_folder(tiny_mmlq(image_encoder=image_64), dataset(demo_data)) != image_base


def test_random_augments_and_comment_subsets_are_refused(demo_data):
    with pytest.raises(fc.FeatureCacheError, match="datasets.train.augment.random_crop"):
        fc.describe(tiny_mmlq(), dataset(demo_data, augment={"resize": [72, 72], "random_crop": 64}), "float16")
    ds = dataset(demo_data)
    ds.text_opt = {**ds.text_opt, "comment_fraction": 0.5}
    with pytest.raises(fc.FeatureCacheError, match="comment_fraction"):
        fc.describe(tiny_mmlq(), ds, "float16")


def test_hflip_is_a_second_view_drawn_per_sample(demo_data, tmp_path):
    net = tiny_mmlq(modality="image")
    ds = dataset(demo_data, augment={"resize": [64, 64], "hflip": True})
    loader = cached(tmp_path, net, loader_of(ds, batch_size=len(ds)))
    assert loader.dataset.files["image"].image.shape[1] == 2
    img = next(iter(loader_of(fc.deterministic_view(ds), batch_size=len(ds))))["img"]
    views = [net.encode_image(img), net.encode_image(img.flip(-1))]
    draws = []
    for epoch in range(2):
        loader.dataset.set_epoch(epoch)
        feats = next(iter(loader))["image_feats"]
        flipped = (feats - views[1]).abs().amax((1, 2)) < (feats - views[0]).abs().amax((1, 2))
        assert torch.allclose(feats, torch.where(flipped[:, None, None], views[1], views[0]), atol=1e-2)
        draws.append(flipped)
    assert 0 < draws[0].sum() < len(ds) and not torch.equal(draws[0], draws[1])


def test_interrupted_build_resumes_to_identical_content(demo_data, tmp_path):
    ds = dataset(demo_data)
    net = tiny_mmlq()
    opt = {**fc.OPTION_DEFAULTS, "batch_size": 4}
    reference = fc.build_cache(net, ds, {**opt, "dir": str(tmp_path / "a")}, "cpu", show_progress=False)

    encode_text, calls = net.text_encoder.forward, []

    def crash_after_two_batches(ids, mask):
        calls.append(len(ids))
        if len(calls) > 2:
            raise KeyboardInterrupt("simulated crash")
        return encode_text(ids, mask)

    net.text_encoder.forward = crash_after_two_batches
    with pytest.raises(SystemExit) as stop:  # Ctrl-C: the clean stop, samples done so far kept
        fc.build_cache(net, ds, {**opt, "dir": str(tmp_path / "b")}, "cpu", show_progress=False)
    assert stop.value.code == 128 + signal.SIGINT
    folder = fc.cache_folder(str(tmp_path / "b"), fc.describe(net, ds, "float16", kinds=("text",)))
    assert np.fromfile(Path(folder) / "done.bin", np.uint8).sum() == 8  # the image cache was built first
    assert not fc._read_meta(folder)["complete"]

    calls.clear()
    net.text_encoder.forward = lambda ids, mask: calls.append(len(ids)) or encode_text(ids, mask)
    resumed = fc.build_cache(net, ds, {**opt, "dir": str(tmp_path / "b")}, "cpu", show_progress=False)
    assert sum(calls) == len(ds) - 8  # only the rest was encoded
    assert fc._read_meta(folder)["complete"]
    assert np.array_equal(resumed["image"].image, reference["image"].image)
    assert np.array_equal(resumed["text"].text, reference["text"].text)


def test_cached_epoch_decodes_no_image_and_tokenises_nothing(demo_data, tmp_path, monkeypatch):
    from PIL import Image

    net = tiny_mmlq().train()
    ds = dataset(demo_data)
    loader = cached(tmp_path, net, loader_of(ds))

    def refuse(*args, **kwargs):
        raise AssertionError("the cached epoch decoded an image or tokenised text")

    monkeypatch.setattr(Image, "open", refuse)
    monkeypatch.setattr(type(ds), "tokens", refuse)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    seen = 0
    for batch in loader:
        dist = net(image_feats=batch["image_feats"], text_feats=batch["text_feats"], text_mask=batch["text_mask"],
                   return_mos=False, return_dist=True)
        loss = (dist - batch["mos_dist"]).square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(dist)
    assert seen == len(ds)


def test_cached_training_under_two_process_torchrun(demo_data, tmp_path):
    data = {"type": "AVACommentsDataset", "dataroot": str(demo_data), "augment": {"resize": [64, 64]}, "img_range": 1}
    opt = {
        "name": "cached_ddp", "model_type": "IAAModel", "num_gpu": 0, "manual_seed": 5,
        "datasets": {"train": {**data, "name": "t", "split": "train", "batch_size_per_gpu": 4, "num_worker_per_gpu": 0},
                     "val": {**data, "name": "v", "split": "val", "batch_size_per_gpu": 4}},
        "network": {"type": "MMLQ", **TINY_MMLQ},
        "feature_cache": {"enabled": True, "dir": str(tmp_path / "cache")},
        "path": {},
        "train": {"optim": {"type": "AdamW", "lr": 1e-3}, "total_iter": 3, "warmup_iter": -1,
                  "mos_loss_opt": {"type": "ScoreDistEMDLoss", "r": 2}},
        "val": {"val_freq": 3, "metrics": {"srcc": {"type": "aesthetic_srcc"}}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 100, "save_latest_freq": 100, "use_tb_logger": False},
    }
    opt_file = write_options(tmp_path / "cached.yml", opt)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                          str(REPO / "iaa_bench/train.py"), "-opt", str(opt_file), "--launcher", "pytorch"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FINAL cached_ddp iter=3" in out.stdout
    folders = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert [f.split("-")[:2] for f in folders] == [["train", "image"], ["train", "text"], ["val", "image"],
                                                   ["val", "text"]]
    for folder in folders:
        assert fc._read_meta(tmp_path / "cache" / folder)["complete"]
        assert np.fromfile(tmp_path / "cache" / folder / "done.bin", np.uint8).all()


def test_key_covers_every_image_file_the_labels_and_the_comments(demo_data, tmp_path):
    """Overwriting images (same names), editing a label or a comment each build a new cache."""
    import json
    import os
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)

    def folder():
        return fc.cache_folder(str(tmp_path), fc.describe(tiny_mmlq(), dataset(data), "float16"))

    keys = [folder()]
    images = data / json.loads((data / "report.json").read_text())["image_dir"]
    for image in images.iterdir():  # same names, same sizes: only the modification times tell
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1_000_000))
    keys.append(folder())
    meta = data / "meta_info.csv"
    lines = meta.read_text().splitlines(keepends=True)
    k = next(k for k, line in enumerate(lines) if line.rstrip().endswith(",0"))  # a train row
    row = lines[k].split(",")
    row[2] = str(int(row[2]) + 1)  # one more vote
    meta.write_text("".join([*lines[:k], ",".join(row), *lines[k + 1:]]))
    keys.append(folder())
    store = data / "comments.jsonl"
    store.write_bytes(store.read_bytes().replace(b"a", b"o", 1))
    keys.append(folder())
    assert len(set(keys)) == len(keys)
