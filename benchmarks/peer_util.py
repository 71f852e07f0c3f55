"""peer_util.py — helpers shared by the PyTorch peer benchmarks
(compare_torch.py, peer_op_overhead.py, peer_branches.py): importing torch
with the peers' exit code, and the workloads two of them time.
Importing this module does not import torch.
"""
import sys


def import_torch(prog):
    """torch, or exit 2 with a message on stderr (the caller reports the skip)."""
    try:
        import torch
    except ImportError as e:
        print(f"{prog}: torch not available ({e})", file=sys.stderr)
        sys.exit(2)
    return torch


def op_chain(x, c1, c2, ops):
    """The op_overhead chain: `ops` ops from x, add c1, mul c2, tanh in turn."""
    import torch
    y = x
    for i in range(ops):
        k = i % 3
        if k == 0:
            y = torch.add(y, c1)
        elif k == 1:
            y = torch.mul(y, c2)
        else:
            y = torch.tanh(y)
    return y


def branches_loss(x, w, nbranch, depth):
    """The branches workload's forward: nbranch chains of depth
    h = tanh(h @ w[b * depth + l]) from x; the sum of all chains' sums."""
    import torch
    loss = None
    for b in range(nbranch):
        h = x
        for l in range(depth):
            h = torch.tanh(h @ w[b * depth + l])
        s = h.sum()
        loss = s if loss is None else loss + s
    return loss
