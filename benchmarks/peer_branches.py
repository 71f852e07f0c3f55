#!/usr/bin/env python3
"""peer_branches.py — benchmarks/branches.c's workload in PyTorch, the peer.

x (64, 256) data; 8 branches, each 4 times h = tanh(h @ W) with its own
W (256, 256) requiring grad; loss = sum over branches of h.sum(); one
forward + backward per iteration, .grad set to None between iterations
outside the timing (nabla: nb_zero_grad). PyTorch runs a CPU backward on one
thread per call: its threads only help inside kernels.

The thread counts run interleaved, round after round (torch.set_num_threads
between rounds), each round after WARMUP untimed iterations.

Output, one line per thread count:
  bench name=branches_torch threads=1 iters=60 median_ms=... min_ms=... max_ms=... bwd_median_ms=...
Usage: peer_branches.py [iters per round (12)] [rounds (5)] [threads, comma-separated (1,2)]
"""
import statistics
import sys
import time

import torch

from peer_util import branches_loss

NBRANCH, DEPTH, WARMUP = 8, 4, 3


def forward(x, w):
    return branches_loss(x, w, NBRANCH, DEPTH)


def one_round(x, w, iters):
    fb, bwd = [], []
    for it in range(-WARMUP, iters):
        for p in w:
            p.grad = None
        t0 = time.perf_counter()
        loss = forward(x, w)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if it >= 0:
            fb.append((t2 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    return fb, bwd


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = [int(t) for t in (sys.argv[3] if len(sys.argv) > 3 else "1,2").split(",")]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g)
    w = [(torch.randn(256, 256, generator=g) * 0.0625).requires_grad_() for _ in range(NBRANCH * DEPTH)]
    samples = {t: ([], []) for t in threads}
    for _ in range(rounds):
        for t in threads:
            torch.set_num_threads(t)
            fb, bwd = one_round(x, w, iters)
            samples[t][0].extend(fb)
            samples[t][1].extend(bwd)
    for t in threads:
        fb, bwd = samples[t]
        print(f"bench name=branches_torch threads={t} iters={len(fb)} median_ms={statistics.median(fb):.3f} "
              f"min_ms={min(fb):.3f} max_ms={max(fb):.3f} bwd_median_ms={statistics.median(bwd):.3f} "
              f"torch={torch.__version__}")


if __name__ == "__main__":
    main()
