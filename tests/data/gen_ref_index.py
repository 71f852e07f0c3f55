#!/usr/bin/python3
"""gen_ref_index.py — PyTorch reference values for nabla's shape-and-indexing
ops (flatten, narrow, cat, stack, split, chunk, index_select, gather,
scatter_add, index_add, embedding, repeat, flip, tril, triu, one_hot, pad).

Writes tests/data/ref_index.txt, read by tests/ops/test_index.c through
tu_ref_load_all_from("ref_index.txt"). The file format (case / arg / in / w /
out / grad / end) is described in tests/data/refdata.py; integer tensors are
written as integers here. Rerun (PyTorch >= 1.13) only when cases change:

    /usr/bin/python3 tests/data/gen_ref_index.py

Additions to the format, all expressed with ordinary lines:
  - index inputs (I64) are written like any input, with integer values; the C
    side knows per op which inputs are indices (index_select/gather/
    scatter_add/index_add: input 1; embedding/one_hot: input 0) and builds
    them as I64. Their `grad` line is zeros.
  - one_hot has an I64 output and no gradient: out and W hold integers and the
    grad line is zeros.
  - split/chunk: `arg piece K` selects which piece is `out`; `arg count N`
    is the number of pieces PyTorch returned.
  - embedding: `arg padding_idx none` or a number.
  - cat/stack take their NIN inputs as the list.
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import RefFile, short  # noqa: E402

torch.set_default_dtype(torch.float64)
ref = RefFile("ref_index.txt", 5000, "nabla reference data for the INDEX ops", __file__)


def randn(shape):
    return short(torch.randn(shape, dtype=torch.float64))


def ints(hi, lo=0):
    """maker of I64 tensors with values in [lo, hi)"""
    return lambda shape: torch.randint(lo, hi, shape, dtype=torch.int64)


def const(values):
    """maker of an I64 tensor with fixed values"""
    return lambda shape: torch.tensor(values, dtype=torch.int64).reshape(shape)


def case(name, op, makers, fn, args=None, layouts=None):
    """makers: list of (maker, shape); fn(*inputs) -> out (float inputs are
    leaves that require grad, integer ones are passed as they are)."""
    ref.seed()
    ins = [mk(shape) for mk, shape in makers]
    layouts = layouts or ["c"] * len(ins)
    assert len(name) < 64 and len(ins) <= 4, name
    assert all(len(v) <= 8 for v in (args or {}).values() if isinstance(v, (list, tuple))), name
    leaves = [x.clone().requires_grad_(True) if x.is_floating_point() else x for x in ins]
    out = fn(*leaves)
    w = short(torch.randn(out.shape, dtype=torch.float64))
    if not out.is_floating_point():
        w = torch.randint(-3, 4, out.shape, dtype=out.dtype)
    float_leaves = [x for x in leaves if x.is_floating_point()]
    grads = {}
    if out.is_floating_point() and float_leaves:
        loss = (out * w).sum()
        gs = torch.autograd.grad(loss, float_leaves, allow_unused=True)
        for x, g in zip(float_leaves, gs):
            grads[id(x)] = g if g is not None else torch.zeros_like(x)
    grads = [grads.get(id(x), torch.zeros(x.shape, dtype=torch.float64)) for x in leaves]
    ref.emit(name, op, ins, layouts, args, w, out, grads, ints=True)


# ---- flatten ----
for shape, s, e, lay in [((2, 3, 4), 0, -1, "c"), ((2, 3, 4), 1, 2, "c"), ((2, 3, 4, 5), 1, 2, "c"),
                         ((2, 3, 4), 0, 1, "t"), ((3, 4), 0, -1, "t"), ((3, 7), 0, 1, "s"),
                         ((1023,), 0, 0, "c"), ((), 0, -1, "c"), ((2, 1, 33), -2, -1, "c")]:
    tag = "x".join(str(v) for v in shape) or "0d"
    case("flatten_%s_%d_%d_%s" % (tag, s, e, lay), "flatten", [(randn, shape)],
         lambda x, s=s, e=e: torch.flatten(x, s, e), args={"start": s, "end": e}, layouts=[lay])

# ---- narrow ----
for shape, dim, start, length, lay in [((5, 7), 1, 2, 3, "c"), ((5, 7), 0, -3, 2, "c"),
                                       ((6, 5), 1, 0, 5, "t"), ((4, 33), -1, 10, 20, "s"),
                                       ((1023,), 0, 100, 900, "c"), ((3, 4), 0, 1, 0, "c"),
                                       ((1,), 0, 0, 1, "c")]:
    tag = "x".join(str(v) for v in shape)
    case("narrow_%s_d%d_%d_%d_%s" % (tag, dim, start, length, lay), "narrow", [(randn, shape)],
         lambda x, d=dim, s=start, n=length: torch.narrow(x, d, s, n),
         args={"dim": dim, "start": start, "length": length}, layouts=[lay])

# ---- cat ----
CAT = [
    ("2x3_2x5_d1", [(2, 3), (2, 5)], 1, None),
    ("2x3_4x3_d0", [(2, 3), (4, 3)], 0, None),
    ("3_lists_dm1", [(2, 1), (2, 7), (2, 33)], -1, None),
    ("4_lists_d0", [(1, 3), (7, 3), (1, 3), (2, 3)], 0, None),
    ("1023_1", [(1023,), (1,)], 0, None),
    ("3d_d1", [(2, 3, 4), (2, 1, 4), (2, 2, 4)], 1, None),
    ("nc_t_s_d0", [(3, 4), (2, 4)], 0, ["t", "s"]),
    ("nc_s_t_d1", [(3, 4), (3, 5)], 1, ["s", "t"]),
    ("one", [(3, 4)], 0, None),
    ("with_zero_size", [(2, 3), (0, 3), (1, 3)], 0, None),
    ("legacy_empty", [(2, 3), (0,), (1, 3)], 0, None),
]
for tag, shapes, dim, lay in CAT:
    case("cat_" + tag, "cat", [(randn, s) for s in shapes], lambda *xs, d=dim: torch.cat(xs, d),
         args={"dim": dim}, layouts=lay)

# ---- stack ----
STACK = [
    ("2x3_d0", [(2, 3)] * 2, 0, None),
    ("2x3_d1", [(2, 3)] * 3, 1, None),
    ("2x3_d2", [(2, 3)] * 2, 2, None),
    ("2x3_dm1", [(2, 3)] * 4, -1, None),
    ("1023_d0", [(1023,)] * 2, 0, None),
    ("33_d1", [(33,)] * 3, 1, None),
    ("0d", [()] * 3, 0, None),
    ("nc_t_s", [(3, 4)] * 2, 1, ["t", "s"]),
    ("one_7", [(7,)], 0, None),
]
for tag, shapes, dim, lay in STACK:
    case("stack_" + tag, "stack", [(randn, s) for s in shapes], lambda *xs, d=dim: torch.stack(xs, d),
         args={"dim": dim}, layouts=lay)

# ---- split / chunk: one piece per case ----
for shape, size, dim, lay in [((7, 3), 3, 0, "c"), ((4, 33), 10, 1, "c"), ((1023,), 100, 0, "c"),
                              ((5, 6), 4, -1, "t"), ((3, 7), 7, 1, "s"), ((2, 5), 1, 1, "c")]:
    n = len(torch.split(torch.zeros(shape), size, dim))
    for piece in sorted({0, n - 1}):
        tag = "x".join(str(v) for v in shape)
        case("split_%s_s%d_d%d_p%d_%s" % (tag, size, dim, piece, lay), "split", [(randn, shape)],
             lambda x, s=size, d=dim, p=piece: torch.split(x, s, d)[p],
             args={"size": size, "dim": dim, "piece": piece, "count": n}, layouts=[lay])
for shape, chunks, dim, lay in [((7, 3), 3, 0, "c"), ((6, 4), 4, 0, "c"), ((4, 33), 5, 1, "c"),
                                ((1023,), 7, 0, "c"), ((5, 6), 2, -1, "t"), ((3, 1), 3, 1, "c")]:
    n = len(torch.chunk(torch.zeros(shape), chunks, dim))
    for piece in sorted({0, n - 1}):
        tag = "x".join(str(v) for v in shape)
        case("chunk_%s_c%d_d%d_p%d_%s" % (tag, chunks, dim, piece, lay), "chunk", [(randn, shape)],
             lambda x, c=chunks, d=dim, p=piece: torch.chunk(x, c, d)[p],
             args={"chunks": chunks, "dim": dim, "piece": piece, "count": n}, layouts=[lay])

# ---- index_select ----
IS = [
    ("5x7_d0", (5, 7), 0, const([4, 0, 0, 2]), (4,), "c", "c"),
    ("5x33_d1", (5, 33), 1, ints(33), (33,), "c", "c"),
    ("1023", (1023,), 0, ints(1023), (7,), "c", "c"),
    ("7_to_1023", (7,), 0, ints(7), (1023,), "c", "c"),
    ("1x1", (1, 1), 0, const([0]), (1,), "c", "c"),
    ("3d_dm1", (2, 3, 4), -1, const([3, 1, 3]), (3,), "c", "c"),
    ("0d_index", (3, 4), 1, const(2), (), "c", "c"),
    ("nc_t", (4, 6), 0, const([3, 1, 1, 0, 2]), (5,), "t", "c"),
    ("nc_s_index", (4, 6), 1, ints(6), (7,), "t", "s"),
    ("empty_index", (3, 4), 0, const([]), (0,), "c", "c"),
]
for tag, shape, dim, imk, ishape, lay, ilay in IS:
    case("index_select_" + tag, "index_select", [(randn, shape), (imk, ishape)],
         lambda x, i, d=dim: torch.index_select(x, d, i), args={"dim": dim}, layouts=[lay, ilay])

# ---- gather ----
GA = [
    ("3x4_d0", (3, 4), 0, (2, 4), "c", "c"),
    ("3x4_d1", (3, 4), 1, (3, 7), "c", "c"),
    ("3x4_small", (3, 4), 1, (2, 2), "c", "c"),
    ("2x3x33_dm1", (2, 3, 33), -1, (2, 3, 33), "c", "c"),
    ("2x5x3_d1", (2, 5, 3), 1, (2, 7, 3), "c", "c"),
    ("1023", (1023,), 0, (1023,), "c", "c"),
    ("1", (1,), 0, (1,), "c", "c"),
    ("nc_t", (5, 4), 0, (3, 4), "t", "c"),
    ("nc_t_index", (5, 4), 1, (5, 6), "c", "t"),
    ("nc_s_both", (4, 6), 1, (4, 3), "s", "s"),
]
for tag, shape, dim, ishape, lay, ilay in GA:
    case("gather_" + tag, "gather", [(randn, shape), (ints(shape[dim]), ishape)],
         lambda x, i, d=dim: torch.gather(x, d, i), args={"dim": dim}, layouts=[lay, ilay])


# ---- scatter_add (src may be larger than index: only its leading part is used) ----
def scatter_add_ref(s, i, src, d):
    part = src[tuple(slice(0, k) for k in i.shape)]
    return s.scatter_add(d, i, part)


SA = [
    ("3x5_d0", (3, 5), 0, (2, 5), (2, 5), "c", "c", "c"),
    ("3x5_d1", (3, 5), 1, (3, 7), (3, 7), "c", "c", "c"),
    ("src_larger", (3, 5), 0, (2, 3), (4, 6), "c", "c", "c"),
    ("2x4x33_dm1", (2, 4, 33), -1, (2, 4, 33), (2, 4, 33), "c", "c", "c"),
    ("7_from_1023", (7,), 0, (1023,), (1023,), "c", "c", "c"),
    ("1", (1,), 0, (1,), (1,), "c", "c", "c"),
    ("nc_t_self", (4, 5), 1, (4, 3), (4, 3), "t", "c", "c"),
    ("nc_s_src_t_index", (4, 5), 0, (3, 5), (3, 5), "c", "t", "s"),
]
for tag, shape, dim, ishape, sshape, l0, l1, l2 in SA:
    case("scatter_add_" + tag, "scatter_add",
         [(randn, shape), (ints(shape[dim]), ishape), (randn, sshape)],
         lambda s, i, src, d=dim: scatter_add_ref(s, i, src, d), args={"dim": dim}, layouts=[l0, l1, l2])

# ---- index_add ----
IA = [
    ("5x3_d0", (5, 3), 0, const([0, 4, 0]), (3,), "c", "c", "c"),
    ("4x7_d1", (4, 7), 1, ints(7), (33,), "c", "c", "c"),
    ("1023", (1023,), 0, ints(1023), (1023,), "c", "c", "c"),
    ("1", (1,), 0, const([0]), (1,), "c", "c", "c"),
    ("3d_dm2", (2, 5, 3), -2, ints(5), (7,), "c", "c", "c"),
    ("nc_t_self_s_src", (4, 6), 0, const([3, 3, 1]), (3,), "t", "c", "s"),
    ("nc_t_src", (6, 4), 1, ints(4), (5,), "c", "c", "t"),
    ("empty_index", (3, 4), 0, const([]), (0,), "c", "c", "c"),
]
for tag, shape, dim, imk, ishape, l0, l1, l2 in IA:
    sshape = list(shape)
    sshape[dim] = ishape[0]
    case("index_add_" + tag, "index_add", [(randn, shape), (imk, ishape), (randn, tuple(sshape))],
         lambda s, i, src, d=dim: s.index_add(d, i, src), args={"dim": dim}, layouts=[l0, l1, l2])

# ---- embedding (inputs: indices, weight) ----
EM = [
    ("10x7_2x3", (2, 3), (10, 7), None, "c", "c"),
    ("pad2", (2, 5), (6, 4), 2, "c", "c"),
    ("pad_neg", (3, 4), (6, 4), -1, "c", "c"),
    ("d33", (33,), (50, 33), None, "c", "c"),
    ("d1", (7,), (5, 1), 0, "c", "c"),
    ("v1023", (4, 1), (1023, 3), None, "c", "c"),
    ("0d_index", (), (5, 3), None, "c", "c"),
    ("nc_t_weight", (2, 3), (4, 6), None, "c", "t"),
    ("nc_s_index_s_weight", (3, 4), (5, 7), 1, "s", "s"),
]
for tag, ishape, wshape, pad, il, wl in EM:
    mk = ints(wshape[0])
    if pad is not None:   # make sure the padding row is hit
        mk = (lambda m, p, v: lambda s: torch.where(torch.rand(s) < 0.3, torch.tensor(p % v), m(s)))(mk, pad, wshape[0])
    case("embedding_" + tag, "embedding", [(mk, ishape), (randn, wshape)],
         lambda i, w, p=pad: F.embedding(i, w, padding_idx=p),
         args={"padding_idx": "none" if pad is None else pad}, layouts=[il, wl])

# ---- repeat ----
RP = [
    ("2x3_r2_1", (2, 3), (2, 1), "c"),
    ("3_r2_2_3", (3,), (2, 2, 3), "c"),
    ("1x7_r33_1", (1, 7), (33, 1), "c"),
    ("1023_r2", (1023,), (2,), "c"),
    ("2x3_r0_2", (2, 3), (0, 2), "c"),
    ("0d_r2_3", (), (2, 3), "c"),
    ("nc_t", (3, 4), (2, 3), "t"),
    ("nc_s_lead", (2, 3), (2, 1, 2), "s"),
    ("4d", (2, 1, 3, 2), (1, 2, 2, 1), "c"),
]
for tag, shape, reps, lay in RP:
    case("repeat_" + tag, "repeat", [(randn, shape)], lambda x, r=reps: x.repeat(*r),
         args={"repeats": reps}, layouts=[lay])

# ---- flip ----
FL = [
    ("2x3x4_d0", (2, 3, 4), (0,), "c"),
    ("2x3x4_d0_2", (2, 3, 4), (0, 2), "c"),
    ("2x3x4_dm1", (2, 3, 4), (-1,), "c"),
    ("2x3x4_all", (2, 3, 4), (0, 1, 2), "c"),
    ("1023", (1023,), (0,), "c"),
    ("1", (1,), (0,), "c"),
    ("33x7_d1", (33, 7), (1,), "c"),
    ("none", (3, 4), (), "c"),
    ("0d", (), (0,), "c"),
    ("nc_t", (4, 5), (0,), "t"),
    ("nc_s", (3, 6), (0, 1), "s"),
]
for tag, shape, dims, lay in FL:
    case("flip_" + tag, "flip", [(randn, shape)], lambda x, d=dims: torch.flip(x, d),
         args={"dims": dims}, layouts=[lay])

# ---- tril / triu ----
TR = [
    ("4x5_k0", (4, 5), 0, "c"),
    ("4x5_k1", (4, 5), 1, "c"),
    ("4x5_km2", (4, 5), -2, "c"),
    ("2x3x7_k0", (2, 3, 7), 0, "c"),
    ("33x1_k0", (33, 1), 0, "c"),
    ("1x1023_k3", (1, 1023), 3, "c"),
    ("1x1_k0", (1, 1), 0, "c"),
    ("5x5_k100", (5, 5), 100, "c"),
    ("5x5_km100", (5, 5), -100, "c"),
    ("nc_t", (4, 6), 1, "t"),
    ("nc_s", (2, 5, 4), -1, "s"),
]
for op, f in (("tril", torch.tril), ("triu", torch.triu)):
    for tag, shape, k, lay in TR:
        case("%s_%s" % (op, tag), op, [(randn, shape)], lambda x, k=k, f=f: f(x, k),
             args={"diagonal": k}, layouts=[lay])

# ---- one_hot ----
OH = [
    ("7_c10", (7,), 10, ints(10), "c"),
    ("2x3_auto", (2, 3), -1, ints(5), "c"),
    ("1_c1", (1,), 1, ints(1), "c"),
    ("33_c7", (33,), 7, ints(7), "c"),
    ("0d_c4", (), 4, ints(4), "c"),
    ("nc_s", (3, 4), 6, ints(6), "s"),
    ("nc_t", (3, 4), -1, ints(9), "t"),
]
for tag, shape, nc, mk, lay in OH:
    case("one_hot_" + tag, "one_hot", [(mk, shape)], lambda i, c=nc: F.one_hot(i, c),
         args={"num_classes": nc}, layouts=[lay])

# ---- pad (constant) ----
PD = [
    ("3x4_1_2", (3, 4), (1, 2), 0.0, "c"),
    ("2x3x4_3dims", (2, 3, 4), (1, 1, 2, 0, 0, 3), 0.0, "c"),
    ("crop_left", (3, 5), (-1, 2), 0.0, "c"),
    ("crop_both_dims", (4, 6), (-2, -1, 1, -3), 0.0, "c"),
    ("value", (2, 3), (2, 2, 1, 1), 2.5, "c"),
    ("1023", (1023,), (0, 5), -1.0, "c"),
    ("1", (1,), (3, 3), 0.0, "c"),
    ("to_zero", (3, 4), (-2, -2), 0.0, "c"),
    ("33x7_last_only", (33, 7), (1, 1), 0.0, "c"),
    ("empty_list", (2, 3), (), 0.0, "c"),
    ("nc_t", (4, 5), (1, 0, 0, 2), 0.0, "t"),
    ("nc_s", (3, 6), (2, -1), 1.5, "s"),
]
for tag, shape, pads, value, lay in PD:
    case("pad_" + tag, "pad", [(randn, shape)], lambda x, p=pads, v=value: F.pad(x, p, "constant", v),
         args={"pad": pads, "value": value}, layouts=[lay])

ref.write()
