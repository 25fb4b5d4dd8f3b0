"""Throughput of MMLQ training (uncached vs feature cache) and inference (vs NIMA), in one process.

    python iaa_bench/bench_speed.py [-opt options/mmlq_demo.yml] [--batches N] [--paper-size] [--force_yml ...]
    python iaa_bench/bench_speed.py --vs-pyiqa [-opt FILE] [--iters N] [--print-freq N] [--rounds N]

`--vs-pyiqa`: training samples/s through iaa_bench's train.py over pyiqa's own trainer on one
option file (see iaa_bench.evaluation.speed_vs_pyiqa). Otherwise:

Same data (the option file's train split; the demo dataset is built if missing) and batch
size throughout, on CUDA when present, else CPU. Measures:
- training samples/s uncached (loader + frozen encoders + trainable step) and cached
  (feature-cache loader + trainable step), their ratio, and the ideal ratio from this
  run's own timings: (frozen-encoder time + trainable-step time) / trainable-step time;
  the one-off cache build is timed separately (a fresh cache folder unless --cache-dir);
- inference images/s of MMLQ (images + comments through the frozen encoders: real
  inference, data already loaded) and of NIMABaseline on tf_efficientnet_lite0 at the
  same resolution;
- FLOPs per sample of the cached training step (forward + backward, FlopCounterMode) and
  the achieved FLOP/s as a fraction of a float32 2048^3 matmul peak measured here;
- peak resident memory (ru_maxrss).
`--paper-size` swaps in random-init ViT-L/14 (224 px) + BERT-base-shaped (512 tokens)
encoders and options/mmlq_ava.yml's head (d=768, 32+32 queries, 6 blocks: assumed, the paper
does not state them); on CUDA the encoders run in bfloat16 and the trainable part under bf16
autocast. Ends with one `SUMMARY` line.
"""
import argparse
import os
import resource
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from iaa_bench.utils.pretrained import BERT_BASE_CONFIG


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-opt", default=None, help="option file (default: options/mmlq_demo.yml; with --vs-pyiqa "
                                               "options/pyiqa/train_NIMA_demo.yml)")
    p.add_argument("--batches", type=int, default=5, help="timed batches per measurement (after one warm-up)")
    p.add_argument("--rounds", type=int, default=None,
                   help="alternating rounds; the best of each is kept (shared machines); default 2, with --vs-pyiqa 3")
    p.add_argument("--vs-pyiqa", action="store_true",
                   help="train the option file through pyiqa's train_pipeline and iaa_bench's train.py, alternating")
    p.add_argument("--iters", type=int, default=60, help="--vs-pyiqa: training iterations per run")
    p.add_argument("--print-freq", type=int, default=10, help="--vs-pyiqa: iterations between the log lines read")
    p.add_argument("--paper-size", action="store_true", help="random-init ViT-L/14 + BERT-base encoders, paper head")
    p.add_argument("--cache-dir", default=None, help="feature-cache folder (default: a fresh temporary one)")
    p.add_argument("--force_yml", nargs="+", default=None, metavar="KEY:SUB=VALUE", help="option overrides")
    return p.parse_args(argv)


def paper_size(opt: dict, cuda: bool) -> None:
    """options/mmlq_ava.yml's shapes with random weights (no CLIP/BERT checkpoints needed)."""
    dtype = "bfloat16" if cuda else None
    opt["network"].update(
        image_encoder=dict(name="vit_large_patch14_clip_224", weights=None, img_size=224, dtype=dtype),
        text_encoder=dict(name="offline-minilm", max_length=512, weights=None, config=BERT_BASE_CONFIG, dtype=dtype),
        num_visual_queries=32, num_text_queries=32, dim=768, num_heads=12, depth=6)
    if cuda:
        opt["train"]["amp"] = "bf16"
        opt.setdefault("val", {})["amp"] = "bf16"


class Timer:
    """Wall time of a block, synchronising the device so queued kernels are counted."""

    def __init__(self, device):
        self.device = device

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self):
        self.sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.sync()
        self.seconds = time.perf_counter() - self.start


def matmul_peak(device, n=2048, reps=10) -> float:
    """float32 FLOP/s of n x n matmuls on `device`."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    with Timer(device) as t:
        for _ in range(reps):
            a @ b
    return 2 * n ** 3 * reps / t.seconds


def train_rate(model, loader, batches: int, timer_device) -> float:
    """Training samples/s over `batches` batches after one warm-up, loading included."""
    it = iter(loader)
    model.feed_data(next(it))
    model.optimize_parameters(0)
    samples = 0
    with Timer(timer_device) as t:
        for _, batch in zip(range(batches), it):
            model.feed_data(batch)
            model.optimize_parameters(1)
            samples += len(batch["mos_label"])
    return samples / t.seconds


def step_seconds(model, batch, reps: int) -> float:
    """Seconds of the fastest of `reps` trainable steps on one resident batch (no loading)."""
    model.feed_data(batch)
    model.optimize_parameters(0)
    times = []
    for _ in range(reps):
        with Timer(model.device) as t:
            model.optimize_parameters(1)
        times.append(t.seconds)
    return min(times)


def encoder_seconds(net, batches, device) -> float:
    """Seconds the frozen encoders take over loaded batches (the first one is a warm-up)."""
    with torch.no_grad():
        net.encode_image(batches[0]["img"]), net.encode_text(batches[0]["text_ids"], batches[0]["text_mask"])
        with Timer(device) as t:
            for b in batches[1:]:
                net.encode_image(b["img"]), net.encode_text(b["text_ids"], b["text_mask"])
    return t.seconds


def infer_rate(forward, batches, device) -> float:
    """Images/s of `forward(batch)` without gradients over loaded batches (first one is a warm-up)."""
    with torch.no_grad():
        forward(batches[0])
        with Timer(device) as t:
            for batch in batches[1:]:
                forward(batch)
    return sum(len(b["img"]) for b in batches[1:]) / t.seconds


def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS counter (Linux), so a phase's own peak can be read."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak since the last reset (VmHWM), from /proc (NaN elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024
    except (OSError, StopIteration):
        return float("nan")


def main(argv=None) -> None:
    from iaa_bench.archs.nima_baseline_arch import NIMABaseline
    from iaa_bench.config.options import load_options
    from iaa_bench.config.schema import validate_options
    from iaa_bench.data import loaders
    from iaa_bench.data.feature_cache import cached_loader
    from iaa_bench.models.iaa_model import build_iaa_model

    args = parse_args(argv)
    if args.vs_pyiqa:
        from iaa_bench.evaluation.speed_vs_pyiqa import vs_pyiqa

        args.rounds = args.rounds or 3
        return vs_pyiqa(args)
    args.rounds = args.rounds or 2
    torch.backends.cuda.matmul.allow_tf32 = False  # the peak below is true float32
    workdir = tempfile.mkdtemp(prefix="bench_speed_")
    opt = load_options(args.opt or "options/mmlq_demo.yml", is_train=True, overrides=args.force_yml, root=workdir, validate=validate_options)
    cuda = torch.cuda.is_available()
    if args.paper_size:
        paper_size(opt, cuda)
    opt["num_gpu"] = "auto"
    opt["feature_cache"] = {**(opt.get("feature_cache") or {}), "enabled": True,
                            "dir": args.cache_dir or os.path.join(workdir, "feature_cache")}
    opt["show_progress"] = False
    opt["datasets"] = {"train": opt["datasets"]["train"]}
    loaders.ensure_demo_data(opt["datasets"]["train"], 0)
    loader, _ = loaders.create_dataloaders(opt)
    model = build_iaa_model(opt)
    net, device, n = model.net, model.device, args.batches
    batch_size = loader.batch_size
    print(f"device: {torch.cuda.get_device_name(device) if cuda else f'CPU, {torch.get_num_threads()} threads'}; "
          f"batch {batch_size}; {len(loader.dataset)} training images; {n} timed batches", flush=True)

    load_before = os.getloadavg()[0]
    with Timer(device) as t_build:
        cached = cached_loader(opt, model, loader)
    raw = [b for _, b in zip(range(n + 1), loader)]
    to_dev = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in raw]
    cached_batch = next(iter(cached))
    rates, results = {"uncached": [], "cached": []}, {"peak": [], "encoders": [], "step": []}
    for _ in range(args.rounds):  # alternate, keep the best: other load on a shared machine hits both alike
        results["peak"].append(matmul_peak(device))
        rates["uncached"].append(train_rate(model, loader, n, device))
        rss_before, rss_reset = rss_mb(), reset_peak_rss()
        rates["cached"].append(train_rate(model, cached, n, device))
        rss_cached = rss_mb("VmHWM") if rss_reset else float("nan")
        results["encoders"].append(encoder_seconds(net, to_dev, device) / (n * batch_size))
        results["step"].append(step_seconds(model, cached_batch, n) / batch_size)
    peak, encoder_s, step_s = max(results["peak"]), min(results["encoders"]), min(results["step"])
    uncached, cached_rate = max(rates["uncached"]), max(rates["cached"])
    model.feed_data(cached_batch)
    with FlopCounterMode(display=False) as counter:
        model.optimize_parameters(1)
    flops = counter.get_total_flops() / batch_size

    model.net.eval()
    mmlq_rate = infer_rate(lambda b: (model.feed_data(b), model.test()), raw, device)
    nima = NIMABaseline("tf_efficientnet_lite0", backbone_weights="offline-efficientnet-lite0").to(device).eval()
    nima_rate = infer_rate(lambda b: nima(b["img"].to(device)), raw, device)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    speedup, ideal = cached_rate / uncached, (encoder_s + step_s) / step_s
    utilisation = flops / step_s / peak
    rows = [
        ("load average (start; end) / CPUs", f"{load_before:.1f}; {os.getloadavg()[0]:.1f} / {os.cpu_count()}"),
        ("float32 matmul peak (2048^3)", f"{peak / 1e9:.1f} GFLOP/s"),
        ("train uncached", f"{uncached:.1f} samples/s"),
        ("train cached", f"{cached_rate:.1f} samples/s"),
        ("cache build (train split, once)", f"{t_build.seconds:.1f} s ({len(loader.dataset)} images)"),
        ("frozen encoders", f"{encoder_s * 1e3:.1f} ms/sample"),
        ("trainable step (resident batch)", f"{step_s * 1e3:.1f} ms/sample"),
        ("cache speedup (measured)", f"{speedup:.2f}x"),
        ("cache speedup (ideal)", f"{ideal:.2f}x  -> {speedup / ideal:.0%} of ideal"),
        ("trainable FLOPs (fwd+bwd)", f"{flops / 1e9:.2f} GFLOP/sample"),
        ("trainable step achieved", f"{flops / step_s / 1e9:.1f} GFLOP/s = {utilisation:.0%} of matmul peak"),
        ("inference MMLQ (image + comments)", f"{mmlq_rate:.1f} images/s"),
        ("inference NIMA (tf_efficientnet_lite0)", f"{nima_rate:.1f} images/s  (MMLQ/NIMA {mmlq_rate / nima_rate:.2f})"),
        ("peak RSS (whole run)", f"{peak_rss:.0f} MB"),
        ("RSS in cached training (start -> peak)", f"{rss_before:.0f} -> {rss_cached:.0f} MB"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"SUMMARY cache_speedup={speedup:.3f} cache_ideal={ideal:.3f} train_samples_per_s={cached_rate:.3f} "
          f"infer_images_per_s={mmlq_rate:.3f} nima_infer_images_per_s={nima_rate:.3f} "
          f"flops_utilisation={utilisation:.3f} peak_rss_mb={peak_rss:.1f}", flush=True)

