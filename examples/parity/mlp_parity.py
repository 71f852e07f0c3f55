#!/usr/bin/python3
"""mlp_parity.py — trains the Fashion-MNIST MLP (784-512-256-10, ReLU) in
PyTorch and in nabla from the same initial weights on the same 20 batches of
128 with SGD (lr 0.01, momentum 0.9), and compares the 20 losses.

    /usr/bin/python3 examples/parity/mlp_parity.py [build dir, default: build]

Needs Debian's python3-torch and dataset-fashion-mnist. The weights and the
batches go to nabla as safetensors files (scripts/safetensors_torch.py);
nabla's side is examples/parity/mlp_parity.c (built as build/examples/mlp_parity).
Exits 1 when a loss differs by more than a relative 1e-4.
"""
import gzip
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from safetensors_torch import save  # noqa: E402

STEPS, BATCH = 20, 128
DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    exe = os.path.join(build, "examples", "mlp_parity")
    n = STEPS * BATCH
    x = torch.from_numpy(idx(f"{DATA}/train-images-idx3-ubyte.gz")[:n].reshape(n, 784).astype(np.float32) / 255.0)
    x = (x - 0.2860) / 0.3530
    y = torch.from_numpy(idx(f"{DATA}/train-labels-idx1-ubyte.gz")[:n].astype(np.int64))
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    tmp = tempfile.mkdtemp()
    wpath, dpath = os.path.join(tmp, "w.safetensors"), os.path.join(tmp, "d.safetensors")
    save(dict(model.state_dict()), wpath)
    save({"x": x.contiguous(), "y": y}, dpath)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    theirs = []
    for s in range(STEPS):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[s * BATCH:(s + 1) * BATCH]), y[s * BATCH:(s + 1) * BATCH])
        loss.backward()
        opt.step()
        theirs.append(loss.item())
    out = subprocess.run([exe, wpath, dpath, str(STEPS), str(BATCH)], capture_output=True, text=True, check=True)
    ours = [float(line.split()[1]) for line in out.stdout.split("\n") if line.strip()]
    worst = 0.0
    print(f"{'step':>4} {'pytorch':>12} {'nabla':>12} {'rel diff':>10}")
    for s, (a, b) in enumerate(zip(theirs, ours)):
        rel = abs(a - b) / abs(a)
        worst = max(worst, rel)
        print(f"{s:4d} {a:12.7f} {b:12.7f} {rel:10.2e}")
    ok = len(ours) == STEPS and worst < 1e-4
    print(f"max relative difference {worst:.2e} over {len(ours)} steps: {'PASS' if ok else 'FAIL'} (limit 1e-4)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
