#!/usr/bin/python3
"""peer_op_overhead.py — PyTorch's side of benchmarks/op_overhead.c.

The same chain of 200 ops (add, mul, tanh in turn) on 1-element float32
tensors from a leaf that requires grad, timed forward only and forward plus
backward, median of `reps` reps after warm-up, one thread. Each rep's time
includes freeing its graph (`del y`), as nabla's includes nb_scope_end.

Prints, in op_overhead's format:
  op_overhead impl=pytorch fwd_us_per_op=... fwd_bwd_us_per_op=... ops=200 reps=2000
Usage: /usr/bin/python3 benchmarks/peer_op_overhead.py [reps]
Exits 2 (with a message on stderr) when torch cannot be imported.
"""
import statistics
import sys
import time

from peer_util import import_torch, op_chain

OPS, WARMUP, DEFAULT_REPS = 200, 200, 2000

torch = import_torch("peer_op_overhead")  # the caller (run.sh) reports the skip


def one_rep(x, c1, c2, backward):
    t0 = time.perf_counter()
    y = op_chain(x, c1, c2, OPS)
    if backward:
        y.backward()
    del y
    t1 = time.perf_counter()
    x.grad = None
    return (t1 - t0) * 1e6


def median_rep(x, c1, c2, backward, reps):
    for _ in range(WARMUP):
        one_rep(x, c1, c2, backward)
    return statistics.median(one_rep(x, c1, c2, backward) for _ in range(reps))


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_REPS
    if reps < 1:
        reps = DEFAULT_REPS
    torch.set_num_threads(1)
    x = torch.full((1,), 0.5, dtype=torch.float32, requires_grad=True)
    c1 = torch.full((1,), 0.1, dtype=torch.float32)
    c2 = torch.full((1,), 0.9, dtype=torch.float32)
    fwd = median_rep(x, c1, c2, False, reps)
    fwd_bwd = median_rep(x, c1, c2, True, reps)
    print(f"op_overhead impl=pytorch fwd_us_per_op={fwd / OPS:.4f} "
          f"fwd_bwd_us_per_op={fwd_bwd / OPS:.4f} ops={OPS} reps={reps}")


if __name__ == "__main__":
    main()
