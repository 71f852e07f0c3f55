#!/usr/bin/env python3
"""kernels_peer.py — PyTorch on the workloads of benchmarks/kernels.c, at 1
thread and at all threads (the cores in the affinity mask), printing the same
machine-readable lines with impl=torch:

    bench wl=add threads=1 impl=torch kernel=torch-1.13.0 ms=12.345 rate=16.31 unit=GB/s

Workloads, sizes, byte/FLOP counts and timing (median of reps calls after one
warm-up) are those of kernels.c: add/relu/exp/tanh/sigmoid/log into a fresh
output on 16M floats (log's input uniform in [0.5, 1.5)); dropout (p 0.5)
likewise; one SGD (momentum 0.9) and one Adam step on a 4M-float parameter
(single-tensor code, foreach=False); softmax, log_softmax and layer_norm fwd+bwd on [4096, 1024];
sum over dim 1 / dim 0 and mean, amax, argmax, var (unbiased) over dim 1 of [4096, 1024];
batch_norm fwd+bwd in training mode (running stats updated, weight and bias) on (32, 64, 28, 28);
attention fwd+bwd on q, k, v (8, 8, 256, 64) (PyTorch 1.13 has no scaled_dot_product_attention: its math,
softmax(q @ kᵀ / sqrt(E)) @ v; FLOPs counted 3x the forward's); bmm (32, 128, 128) @ (32, 128, 128);
F.linear fwd+bwd, x (128, 784) (requires grad), w (512, 784), b (512), FLOPs of 3 GEMMs;
matmul 256/1024/2048;
conv1/conv2 fwd+bwd of the LeNet convs (batch 64, pad 2, bias; conv1's input
takes no gradient) and of a ResNet-style 3x3 conv (conv3x3: batch 32, 64 -> 64
channels, 28x28, pad 1, bias); 2x2 max pooling fwd+bwd on (64, 32, 28, 28)
(traffic 2.5N: x, y, dy, dx). Gradients are reset to None before each call, as nabla's
nb_zero_grad drops them.

Usage: kernels_peer.py [reps (default 10)] [only: workloads whose name contains it]
"""
import os
import sys
import time

import torch
import torch.nn.functional as F

BIG = 16 * 1024 * 1024
ROWS, COLS = 4096, 1024
BN_SHAPE = (32, 64, 28, 28)
BN_NUMEL = 32 * 64 * 28 * 28
AT_SHAPE = (8, 8, 256, 64)
BMM_SHAPE = (32, 128, 128)
LIN_M, LIN_K, LIN_N = 128, 784, 512
MP_SHAPE = (64, 32, 28, 28)
MP_NUMEL = 64 * 32 * 28 * 28
SDPAF = 2.0 * 8 * 8 * 256 * 256 * 2 * 64


def mmf(n):
    return 2.0 * n * n * n


def convf(n, ci, co, hw, k):
    return 2.0 * n * co * hw * hw * ci * k * k


def median_ms(fn, reps):
    fn()  # warm-up
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    t.sort()
    return t[len(t) // 2]


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    reps = reps if reps > 0 else 10
    allt = len(os.sched_getaffinity(0))
    torch.manual_seed(0)
    a, b = torch.randn(BIG), torch.randn(BIG)
    pos = torch.rand(BIG) + 0.5
    sx = torch.randn(ROWS, COLS, requires_grad=True)
    sg = torch.randn(ROWS, COLS)
    tgt = torch.arange(ROWS, dtype=torch.int64) * 7919 % COLS
    lw = torch.randn(COLS, requires_grad=True)
    lb = torch.randn(COLS, requires_grad=True)
    mm = {n: (torch.randn(n, n), torch.randn(n, n)) for n in (256, 1024, 2048)}
    params = []
    for i in range(2):
        p = torch.randn(ROWS * COLS, requires_grad=True)
        p.grad = torch.randn(ROWS * COLS)
        params.append(p)
    sgd = torch.optim.SGD([params[0]], lr=1e-3, momentum=0.9, foreach=False)
    adam = torch.optim.Adam([params[1]], lr=1e-3, foreach=False)
    bx = torch.randn(*BN_SHAPE, requires_grad=True)
    bg = torch.randn(*BN_SHAPE)
    bw = torch.randn(BN_SHAPE[1], requires_grad=True)
    bb = torch.zeros(BN_SHAPE[1], requires_grad=True)
    brm, brv = torch.zeros(BN_SHAPE[1]), torch.ones(BN_SHAPE[1])
    aq, ak, av = (torch.randn(*AT_SHAPE, requires_grad=True) for _ in range(3))
    ag = torch.randn(*AT_SHAPE)
    ba, bb2 = torch.randn(*BMM_SHAPE), torch.randn(*BMM_SHAPE)
    lin_x = torch.randn(LIN_M, LIN_K, requires_grad=True)
    lin_w = (torch.randn(LIN_N, LIN_K) * 0.05).requires_grad_()
    lin_b = torch.randn(LIN_N, requires_grad=True)
    lin_g = torch.randn(LIN_M, LIN_N)
    px = torch.randn(*MP_SHAPE, requires_grad=True)
    pg = torch.randn(MP_SHAPE[0], MP_SHAPE[1], MP_SHAPE[2] // 2, MP_SHAPE[3] // 2)

    def sdpa():
        return torch.softmax((aq @ ak.transpose(-1, -2)) * AT_SHAPE[3] ** -0.5, -1) @ av

    convs = {}
    for name, (n, ci, co, hw, k, need_dx) in {"conv1_fwd_bwd": (64, 1, 32, 28, 5, False),
                                              "conv2_fwd_bwd": (64, 32, 64, 14, 5, True),
                                              "conv3x3_fwd_bwd": (32, 64, 64, 28, 3, True)}.items():
        x = torch.randn(n, ci, hw, hw, requires_grad=need_dx)
        w = (torch.randn(co, ci, k, k) * 0.1).requires_grad_()
        bias = torch.randn(co, requires_grad=True)
        g = torch.randn(n, co, hw, hw)
        convs[name] = (x, w, bias, g, (3 if need_dx else 2) * convf(n, ci, co, hw, k), k // 2)

    def fwd_bwd(leaves, f, g):
        def call():
            for t in leaves:
                t.grad = None
            f().backward(g)
        return call

    # name -> (call, amount, unit, reps divisor)
    wl = {
        "add": (lambda: torch.add(a, b), 3.0 * 4 * BIG, "GB/s", 1),
        "relu": (lambda: torch.relu(a), 2.0 * 4 * BIG, "GB/s", 1),
        "exp": (lambda: torch.exp(a), 2.0 * 4 * BIG, "GB/s", 1),
        "tanh": (lambda: torch.tanh(a), 2.0 * 4 * BIG, "GB/s", 1),
        "sigmoid": (lambda: torch.sigmoid(a), 2.0 * 4 * BIG, "GB/s", 1),
        "log": (lambda: torch.log(pos), 2.0 * 4 * BIG, "GB/s", 1),
        "dropout": (lambda: F.dropout(a, 0.5, True), 2.0 * 4 * BIG, "GB/s", 1),
        "sgd_step": (sgd.step, 5.0 * 4 * ROWS * COLS, "GB/s", 1),
        "adam_step": (adam.step, 7.0 * 4 * ROWS * COLS, "GB/s", 1),
        "softmax_fwd_bwd": (fwd_bwd([sx], lambda: torch.softmax(sx, 1), sg), 5.0 * 4 * ROWS * COLS, "GB/s", 1),
        "log_softmax_fwd_bwd": (fwd_bwd([sx], lambda: torch.log_softmax(sx, 1), sg), 5.0 * 4 * ROWS * COLS,
                                "GB/s", 1),
        "layer_norm_fwd_bwd": (fwd_bwd([sx, lw, lb], lambda: F.layer_norm(sx, (COLS,), lw, lb), sg),
                               5.0 * 4 * ROWS * COLS, "GB/s", 1),
        "gelu_fwd_bwd": (fwd_bwd([sx], lambda: F.gelu(sx), sg), 5.0 * 4 * ROWS * COLS, "GB/s", 1),
        "sum_rows": (lambda: sx.detach().sum(1), 4.0 * ROWS * COLS, "GB/s", 1),
        "sum_cols": (lambda: sx.detach().sum(0), 4.0 * ROWS * COLS, "GB/s", 1),
        "mean_rows": (lambda: sx.detach().mean(1), 4.0 * ROWS * COLS, "GB/s", 1),
        "max_rows": (lambda: torch.amax(sx.detach(), 1), 4.0 * ROWS * COLS, "GB/s", 1),
        "argmax_rows": (lambda: torch.argmax(sx.detach(), 1), 4.0 * ROWS * COLS, "GB/s", 1),
        "var_rows": (lambda: torch.var(sx.detach(), 1), 4.0 * ROWS * COLS, "GB/s", 1),
        "cross_entropy_fwd_bwd": (fwd_bwd([sx], lambda: F.cross_entropy(sx, tgt), None), 2.0 * 4 * ROWS * COLS,
                                  "GB/s", 1),
        "batch_norm_fwd_bwd": (fwd_bwd([bx, bw, bb], lambda: F.batch_norm(bx, brm, brv, bw, bb, training=True), bg),
                               5.0 * 4 * BN_NUMEL, "GB/s", 1),
        "sdpa_fwd_bwd": (fwd_bwd([aq, ak, av], sdpa, ag), 3 * SDPAF, "GFLOP/s", 2),
        "bmm": (lambda: torch.bmm(ba, bb2), BMM_SHAPE[0] * mmf(BMM_SHAPE[1]), "GFLOP/s", 1),
        "linear_fwd_bwd": (fwd_bwd([lin_x, lin_w, lin_b], lambda: F.linear(lin_x, lin_w, lin_b), lin_g),
                           3 * 2.0 * LIN_M * LIN_K * LIN_N, "GFLOP/s", 1),
    }
    for n, div in ((256, 1), (1024, 2), (2048, 4)):
        x, y = mm[n]
        wl["matmul_%d" % n] = ((lambda x=x, y=y: x @ y), mmf(n), "GFLOP/s", div)
    for name, (x, w, bias, g, flops, pad) in convs.items():
        leaves = [t for t in (x, w, bias) if t.requires_grad]
        call = fwd_bwd(leaves, (lambda x=x, w=w, bias=bias, pad=pad: F.conv2d(x, w, bias, padding=pad)), g)
        wl[name] = (call, flops, "GFLOP/s", 1 if name == "conv1_fwd_bwd" else 2)
    wl["max_pool_fwd_bwd"] = (fwd_bwd([px], lambda: F.max_pool2d(px, 2), pg), 2.5 * 4 * MP_NUMEL, "GB/s", 1)

    for nt in ([1, allt] if allt > 1 else [1]):
        torch.set_num_threads(nt)
        for name, (call, amount, unit, div) in wl.items():
            if only and only not in name:
                continue
            ms = median_ms(call, max(1, reps // div))
            print("bench wl=%s threads=%d impl=torch kernel=torch-%s ms=%.3f rate=%.2f unit=%s"
                  % (name, nt, torch.__version__, ms, amount / (ms * 1e-3) * 1e-9, unit), flush=True)


if __name__ == "__main__":
    main()
