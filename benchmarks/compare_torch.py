#!/usr/bin/python3
"""compare_torch.py — PyTorch's side of benchmarks/compare, one workload per
process (so ru_maxrss is PyTorch's own), the same workloads and arguments as
benchmarks/compare_nabla.c (see that file for what each one does):

  mlp_step, cnn_step   zero_grad + forward + cross_entropy + backward +
                       SGD(lr, momentum).step()
  op_overhead          the chain of `ops` add/mul/tanh on 1-element tensors,
                       forward + backward, time per op
  branches             `branches` chains of `depth` × (matmul, tanh) from one
                       x; loss = sum of all outputs; zero_grad + fwd + bwd
  transformer_step     a small GPT (embeddings, pre-norm blocks of causal
                       attention and a GELU MLP, a vocab head), cross_entropy,
                       SGD; attention as PyTorch 1.13 users write it (it has no
                       scaled_dot_product_attention): softmax of the masked
                       scores, @ v

Usage: /usr/bin/python3 compare_torch.py WORKLOAD threads=N warmup=W reps=R [clock=wall|cpu] [key=value ...]
Prints compare_nabla's line with impl=pytorch. Exits 2 (message on stderr)
when torch cannot be imported.
"""
import resource
import statistics
import sys
import time

from peer_util import branches_loss, import_torch, op_chain

torch = import_torch("compare_torch")  # benchmarks/compare reports the skip
import torch.nn.functional as F  # noqa: E402


def targets(n, classes):
    return torch.tensor([(i * 7 + 3) % classes for i in range(n)], dtype=torch.int64)


def train_setup(model, a, x, classes):
    opt = torch.optim.SGD(model.parameters(), lr=float(a.get("lr", 0.01)),
                          momentum=float(a.get("momentum", 0.9)))
    y = targets(x.shape[0], classes)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return step


def setup_mlp(a):
    dims = [int(d) for d in a.get("dims", "784,512,256,10").split(",")]
    layers = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i + 2 < len(dims):
            layers.append(torch.nn.ReLU())
    x = torch.randn(int(a.get("batch", 128)), dims[0])
    return train_setup(torch.nn.Sequential(*layers), a, x, dims[-1])


def setup_cnn(a):
    g = {k: int(a.get(k, d)) for k, d in
         dict(batch=64, c1=32, c2=64, k=5, pad=2, hidden=128, classes=10, image=28).items()}
    side = ((g["image"] + 2 * g["pad"] - g["k"] + 1) // 2 + 2 * g["pad"] - g["k"] + 1) // 2
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, g["c1"], g["k"], padding=g["pad"]), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(g["c1"], g["c2"], g["k"], padding=g["pad"]), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(g["c2"] * side * side, g["hidden"]), torch.nn.ReLU(),
        torch.nn.Linear(g["hidden"], g["classes"]))
    x = torch.randn(g["batch"], 1, g["image"], g["image"])
    return train_setup(model, a, x, g["classes"])


def setup_chain(a):
    ops = int(a.get("ops", 200))
    x = torch.full((1,), 0.5, requires_grad=True)
    c1 = torch.full((1,), 0.1)
    c2 = torch.full((1,), 0.9)

    def step():
        x.grad = None
        op_chain(x, c1, c2, ops).backward()
    return step, ops


def setup_branches(a):
    batch, width = int(a.get("batch", 64)), int(a.get("width", 256))
    nbr, depth = int(a.get("branches", 8)), int(a.get("depth", 4))
    x = torch.randn(batch, width)
    bound = 1.0 / width ** 0.5
    ws = [torch.empty(width, width).uniform_(-bound, bound).requires_grad_() for _ in range(nbr * depth)]

    def step():
        for w in ws:
            w.grad = None
        branches_loss(x, ws, nbr, depth).backward()
    return step


def setup_transformer(a):
    B, T, C = int(a.get("batch", 8)), int(a.get("seq", 64)), int(a.get("dim", 256))
    H, L, V = int(a.get("heads", 4)), int(a.get("layers", 2)), int(a.get("vocab", 2048))
    D, s = C // H, C ** -0.5

    def param(*shape, scale=0.0, fill=0.0):
        t = torch.randn(*shape) * scale if scale else torch.full(shape, float(fill))
        return t.requires_grad_()
    tok, pos = param(V, C, scale=0.02), param(T, C, scale=0.02)
    layers = []
    for _ in range(L):
        layers.append([param(C, fill=1), param(C), param(3 * C, C, scale=s), param(3 * C), param(C, C, scale=s),
                       param(C), param(C, fill=1), param(C), param(4 * C, C, scale=s), param(4 * C),
                       param(C, 4 * C, scale=s / 2), param(C)])
    lnf_w, lnf_b, head = param(C, fill=1), param(C), param(V, C, scale=s)
    params = [tok, pos] + [t for q in layers for t in q] + [lnf_w, lnf_b, head]
    opt = torch.optim.SGD(params, lr=float(a.get("lr", 0.01)), momentum=float(a.get("momentum", 0.9)))
    x = torch.tensor([(i * 37 + 11) % V for i in range(B * T)], dtype=torch.int64).reshape(B, T)
    y = targets(B * T, V)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)

    def step():
        opt.zero_grad(set_to_none=True)
        h = F.embedding(x, tok) + pos
        for q in layers:
            a_ = F.layer_norm(h, (C,), q[0], q[1])
            qkv = F.linear(a_, q[2], q[3]).reshape(B, T, 3, H, D).permute(2, 0, 3, 1, 4)
            sc = (qkv[0] @ qkv[1].transpose(-1, -2)) * D ** -0.5
            o = torch.softmax(sc.masked_fill(mask, float("-inf")), -1) @ qkv[2]
            h = h + F.linear(o.permute(0, 2, 1, 3).reshape(B, T, C), q[4], q[5])
            m = F.layer_norm(h, (C,), q[6], q[7])
            h = h + F.linear(F.gelu(F.linear(m, q[8], q[9])), q[10], q[11])
        h = F.layer_norm(h, (C,), lnf_w, lnf_b)
        F.cross_entropy(F.linear(h.reshape(B * T, C), head), y).backward()
        opt.step()
    return step


SCALE_BLOCK = 8


def setup_op(a):
    """compare_nabla.c's op_step: one op's forward (+ backward) on (rows, cols)."""
    k = a.get("kind", "")
    R, C = int(a.get("rows", 1024)), int(a.get("cols", 1024))
    if k == "clip_grad_norm":
        ps = [torch.zeros(s, requires_grad=True) for s in [(512, 784), (512, 1), (256, 512), (256, 1), (10, 256), (10, 1)]]
        for p in ps:
            p.grad = torch.randn(p.shape)
        return lambda: torch.nn.utils.clip_grad_norm_(ps, 1e30, 2.0)
    x = torch.randn(R, C, requires_grad=True)
    c1 = torch.rand(R, C) if k in ("bce_with_logits", "pow") else torch.randn(R, C)
    xd = c1
    idx = (torch.arange(R * C) * 7919 % C).reshape(R, C)
    y = (torch.arange(R) * 7 + 3) % C
    fw = {
        "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(x, c1),
        "smooth_l1": lambda: F.smooth_l1_loss(x, c1),
        "gather": lambda: torch.gather(x, 1, idx).sum(),
        "sin": lambda: torch.sin(x).sum(),
        "pow": lambda: torch.pow(c1, x).sum(),
        "max_dim": lambda: x.max(1)[0].sum(),
        "amax": lambda: x.amax(1).sum(),
        "nll_log_softmax": lambda: F.nll_loss(F.log_softmax(x, 1), y),
    }
    fo = {
        "tril": lambda: torch.tril(xd),
        "flip": lambda: torch.flip(xd, [1]),
        "pad": lambda: F.pad(xd, (1, 1, 1, 1)),
        "repeat": lambda: xd.repeat(2, 1),
    }
    if k in fo:
        return fo[k]
    f = fw[k]

    def step():
        x.grad = None
        f().backward()
    return step


def run_scaling(step, name, unit, per, clock, threads, warmup, reps):
    """scale=1: blocks of SCALE_BLOCK steps at 1 thread and at `threads`,
    alternating (the order flips every rep), in this one process; a block's
    time is the median of its second half (PyTorch needs a few steps after
    set_num_threads to reach its speed again). The line compare_nabla.c's
    run_scaling prints."""
    if threads < 2:
        print("compare_torch: scale=1 needs threads=N with N >= 2", file=sys.stderr)
        return 2
    t1, tn = [], []
    for i in range(warmup + reps):
        for k in range(2):
            nt = 1 if (k == 0) == (i % 2 == 0) else threads
            torch.set_num_threads(nt)
            bt = []
            for q in range(SCALE_BLOCK):
                t0 = clock()
                step()
                bt.append((clock() - t0) * per)
            if i >= warmup:
                (t1 if nt == 1 else tn).append(statistics.median(bt[SCALE_BLOCK // 2:]))
    m1, mn = statistics.median(t1), statistics.median(tn)
    pr = statistics.median(b / a for a, b in zip(t1, tn))
    print(f"scaling impl=pytorch workload={name} threads={threads} unit={unit} median1={m1:.4f} "
          f"medianN={mn:.4f} ratio={mn / m1:.4f} pair_ratio={pr:.4f} "
          f"times1={','.join(f'{t:.4f}' for t in t1)} timesN={','.join(f'{t:.4f}' for t in tn)}")
    return 0


def main():
    if len(sys.argv) < 2:
        print("usage: compare_torch.py WORKLOAD threads=N warmup=W reps=R [key=value ...]", file=sys.stderr)
        return 2
    name = sys.argv[1]
    a = dict(arg.split("=", 1) for arg in sys.argv[2:] if "=" in arg)
    threads, warmup, reps = int(a.get("threads", 1)), int(a.get("warmup", 5)), max(1, int(a.get("reps", 20)))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    unit, per = "ms", 1e3
    if name == "mlp_step":
        step = setup_mlp(a)
    elif name == "cnn_step":
        step = setup_cnn(a)
    elif name == "branches":
        step = setup_branches(a)
    elif name == "transformer_step":
        step = setup_transformer(a)
    elif name == "op":
        step = setup_op(a)
    elif name == "op_overhead":
        step, ops = setup_chain(a)
        unit, per = "us_per_op", 1e6 / max(ops, 1)
    else:
        print(f"compare_torch: unknown workload '{name}'", file=sys.stderr)
        return 2
    clock = time.process_time if a.get("clock", "wall") == "cpu" else time.perf_counter
    if int(a.get("scale", 0)):
        return run_scaling(step, name, unit, per, clock, threads, warmup, reps)
    times = []
    for i in range(warmup + reps):
        t0 = clock()
        step()
        t1 = clock()
        if i >= warmup:
            times.append((t1 - t0) * per)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"compare impl=pytorch workload={name} threads={torch.get_num_threads()} unit={unit} "
          f"median={statistics.median(times):.4f} min={min(times):.4f} max={max(times):.4f} rss_kb={rss} "
          f"times={','.join(f'{t:.4f}' for t in times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
