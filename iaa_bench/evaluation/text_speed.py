"""Cost of reading a comment set in chunks vs in one long pass, at equal coverage.

    python iaa_bench/bench_text.py [--encoder offline-minilm] [--tokens 512] [--chunk-lengths 512 256 128 64]

Every layout reads the same comment sets (real comment phrases, packed to fill the
budget) with the frozen text encoder through the same `encode_chunks` path the models
use: one pass of `tokens`, or tokens/length passes of `length`. Self-attention costs
length² per pass, so chunks cost less the longer the comment set; the feed-forward part
is the same for every layout. Prints ms per comment set for each layout (the best of
alternating rounds, for shared machines) and a `SUMMARY` line.
"""
import argparse
import time

import numpy as np
import torch

from iaa_bench.archs.frozen_encoders import FrozenTextEncoder
from iaa_bench.data.demo import APPEAL_BAD, APPEAL_GOOD, CRITICISM, GENERIC, PRAISE
from iaa_bench.datasets.ava_comments_dataset import TEXT_DEFAULTS, comment_tokens
from iaa_bench.utils.pretrained import load_tokenizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", default="offline-minilm", help="text encoder (name or local folder)")
    p.add_argument("--tokens", type=int, default=512, help="tokens read per comment set (the budget)")
    p.add_argument("--chunk-lengths", type=int, nargs="+", default=[512, 256, 128, 64])
    p.add_argument("--batch", type=int, default=8, help="comment sets per batch")
    p.add_argument("--batches", type=int, default=3, help="timed batches per layout and round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each layout is kept")
    return p.parse_args(argv)


def comment_sets(count: int, seed: int = 0) -> list:
    """Comment sets long enough to fill any budget: real-sounding phrases in a seeded order."""
    phrases = APPEAL_GOOD + APPEAL_BAD + GENERIC + [c for pool in (CRITICISM, PRAISE) for v in pool.values() for c in v]
    rng = np.random.default_rng(seed)
    return [[str(p) for p in rng.choice(phrases, 200)] for _ in range(count)]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_grad_enabled(False)
    tokenizer = load_tokenizer(args.encoder, "--encoder")
    sets = comment_sets(args.batch)
    layouts, encoders = {}, {}
    for length in args.chunk_lengths:
        opt = {**TEXT_DEFAULTS, "max_length": length, "max_chunks": args.tokens // length, "max_tokens": args.tokens}
        tokens = [comment_tokens(tokenizer, comments, opt)[0] for comments in sets]
        batch = {k: torch.stack([t[k] for t in tokens]) for k in ("text_ids", "text_mask")}
        layouts[length] = batch
        encoders[length] = FrozenTextEncoder(args.encoder, max_length=length, max_chunks=opt["max_chunks"],
                                             max_tokens=args.tokens)
        encoders[length].encode_chunks(batch["text_ids"], batch["text_mask"])  # warm-up
    best = {length: float("inf") for length in layouts}
    for _ in range(args.rounds):
        for length, batch in layouts.items():
            start = time.perf_counter()
            for _ in range(args.batches):
                encoders[length].encode_chunks(batch["text_ids"], batch["text_mask"])
            best[length] = min(best[length], (time.perf_counter() - start) / (args.batches * args.batch))
    print(f"{args.encoder}, {args.tokens} tokens per comment set, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, best of {args.rounds} rounds")
    print("| layout | tokens read | ms per comment set |\n|---|---:|---:|")
    for length, batch in layouts.items():
        read = int(batch["text_mask"].sum()) // args.batch
        print(f"| {args.tokens // length} x {length} | {read} | {1000 * best[length]:.1f} |")
    print("SUMMARY " + " ".join(f"ms_{args.tokens // n}x{n}={1000 * best[n]:.2f}" for n in layouts))
    return 0
