#!/usr/bin/python3
"""gen_ref_reduce.py — PyTorch reference values for nabla's full reductions.

Writes tests/data/ref_reduce.txt, read by tests/ops/test_reduce.c through
tu_ref_load_all_from("ref_reduce.txt"). The file format (per case the op, its
arguments, the input with its memory layout, a weight W, the forward result
and the gradient of L = (out * W).sum()) is described in
tests/data/refdata.py. Rerun (PyTorch >= 1.13) only when cases change:

    /usr/bin/python3 tests/data/gen_ref_reduce.py

Ops (nabla names) and their arguments:
    prod, max, min, logsumexp   dims D.. keepdim 0|1   (no dims line: all dims)
    var, std                    dims D.. keepdim 0|1 correction C
    norm                        dims D.. keepdim 0|1 p 1|2|inf
    max_dim, min_dim            dim D keepdim 0|1      out: values
    max_dim_idx, min_dim_idx    dim D keepdim 0|1      out: indices (no gradient)
    argmax, argmin              dim D keepdim 0|1      out: indices (no gradient)
    argmax_all, argmin_all                             out: flat index (no gradient)
For cases without a gradient, W and the grad lines are zeros. Values are
float64, rounded to 7 significant digits before use; torch.prod takes one dim,
so several dims are reduced one after the other (the same product).
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import RefFile, randn, short  # noqa: E402

torch.set_default_dtype(torch.float64)
ref = RefFile("ref_reduce.txt", 2000, "nabla reference data", __file__)
names = set()


# ---- input makers (called under a per-case seed; randn comes from refdata) ----
def near_one(shape):
    """|x| in [0.9, 1.1) with random signs: products of 1023 stay finite."""
    m = torch.rand(shape) * 0.2 + 0.9
    return m * torch.where(torch.rand(shape) < 0.5, -1.0, 1.0)


def ties(shape):
    """Small integers: many ties for max/min/argmax."""
    return torch.randint(-2, 3, shape).to(torch.float64)


def wide(shape):
    """Large magnitudes for logsumexp: exp would overflow without the shift."""
    return torch.randn(shape) * 300.0


def with_zeros(k):
    """near_one values with k zeros in every row of the last dim."""
    def mk(shape):
        x = near_one(shape)
        flat = x.reshape(-1, shape[-1])
        for r in range(flat.shape[0]):
            for j in torch.randperm(shape[-1])[:k].tolist():
                flat[r, j] = 0.0
        return flat.reshape(shape)
    return mk


def zero_row(shape):
    """randn with the first row (dim 0 index 0) all zeros."""
    x = torch.randn(shape)
    x[0] = 0.0
    return x


def case(name, op, mk, shape, fn, args, layout="c", grad=True):
    """fn(x) -> out; args: dict written as arg lines, in order."""
    ref.seed()
    x = short(mk(shape))
    leaf = x.clone().requires_grad_(grad)
    out = fn(leaf)
    if grad:
        w = short(torch.randn(out.shape))
        (g,) = torch.autograd.grad((out * w).sum(), leaf)
    else:
        w = torch.zeros(out.shape)
        g = torch.zeros(x.shape)
    assert len(name) < 64 and name not in names, name
    names.add(name)
    ref.emit(name, op, [x], [layout], args, w, out.to(torch.float64), [g])


def tag_of(shape, dims, keep, lay="c"):
    s = "x".join(str(v) for v in shape) or "0d"
    d = "all" if dims is None else "d" + "_".join(str(v).replace("-", "m") for v in dims)
    return "%s_%s_k%d%s" % (s, d, int(keep), "" if lay == "c" else "_" + lay)


def dims_arg(dims, keep):
    a = {}
    if dims is not None:
        a["dims"] = dims
    a["keepdim"] = keep
    return a


# ---- torch forms over several dims ----
def t_prod(x, dims, keep):
    if dims is None:
        dims = list(range(x.dim()))
    if x.dim() == 0:
        return x.prod()
    dims = sorted([d % x.dim() for d in dims], reverse=True)
    for d in dims:
        x = x.prod(d, keepdim=True)
    return x if keep else x.reshape([s for i, s in enumerate(x.shape) if i not in dims])


def t_amax(x, dims, keep):
    return torch.amax(x, dim=() if dims is None else dims, keepdim=keep)


def t_amin(x, dims, keep):
    return torch.amin(x, dim=() if dims is None else dims, keepdim=keep)


def t_lse(x, dims, keep):
    return torch.logsumexp(x, dim=tuple(range(x.dim())) if dims is None else dims, keepdim=keep)


# Shapes and dims shared by the dims-taking ops: odd sizes 1, 7, 33, 1023
# along the reduced dim, inner and outer dims, several dims, all dims.
DIMCASES = [
    ((1,), (0,), False), ((7,), (0,), True), ((33,), (-1,), False),
    ((7, 33), (0,), False), ((7, 33), (1,), True), ((33, 7), (-1,), False), ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), (-1, 0), True), ((2, 3, 4), (1,), False), ((2, 3, 4), (0, 1, 2), False),
    ((2, 3, 4), None, False), ((2, 3, 4), None, True), ((7,), None, False), ((), None, False),
    ((), (0,), True), ((2, 0, 3), (2,), False),
]
# 1023 along the reduced dim: inner (contiguous) and outer (strided) reductions;
# the data file stays small by running the second only for some ops.
BIG = [((1023,), (0,), False), ((1023, 2), (0,), True)]
NC = [((5, 7), (0,), "t"), ((5, 7), (1,), "t"), ((4, 33), (-1,), "s"), ((6, 5), (0,), "s"),
      ((3, 4, 5), (0, 2), "t"), ((3, 4, 5), None, "s")]

SIMPLE = [("prod", t_prod, near_one), ("max", t_amax, randn), ("min", t_amin, randn),
          ("logsumexp", t_lse, randn)]
for op, f, mk in SIMPLE:
    for shape, dims, keep in DIMCASES + BIG:
        if op in ("max", "min") and 0 in shape:
            continue   # an error for max/min: tested in C
        case("%s_%s" % (op, tag_of(shape, dims, keep)), op, mk, shape,
             lambda x, d=dims, k=keep: f(x, d, k), dims_arg(dims, keep))
    for shape, dims, lay in NC:
        case("%s_%s" % (op, tag_of(shape, dims, False, lay)), op, mk, shape,
             lambda x, d=dims: f(x, d, False), dims_arg(dims, False), layout=lay)

# prod with zeros: one zero, several zeros per slice (the gradient needs care)
for k in (1, 2, 3):
    for shape, dims in (((4, 7), (1,)), ((3, 33), (-1,)), ((2, 1023), (1,)), ((3, 5), None)):
        case("prod_zeros%d_%s" % (k, tag_of(shape, dims, False)), "prod", with_zeros(k), shape,
             lambda x, d=dims: t_prod(x, d, False), dims_arg(dims, False))
case("prod_zeros1_5x6_d0_k1_t", "prod", with_zeros(1), (5, 6),
     lambda x: t_prod(x, (0,), True), dims_arg((0,), True), layout="t")
case("prod_zeros2_2x3x4_d0_2_k0_s", "prod", with_zeros(2), (2, 3, 4),
     lambda x: t_prod(x, (0, 2), False), dims_arg((0, 2), False), layout="s")

# max/min with ties: the gradient is split evenly
for op, f in (("max", t_amax), ("min", t_amin)):
    for shape, dims in (((6, 7), (1,)), ((33, 5), (0,)), ((3, 4, 5), (0, 2)), ((4, 5), None)):
        case("%s_ties_%s" % (op, tag_of(shape, dims, False)), op, ties, shape,
             lambda x, d=dims: f(x, d, False), dims_arg(dims, False))

# logsumexp: large magnitudes, and slices with -inf
for shape, dims in (((5, 33), (1,)), ((1023,), (0,)), ((3, 4, 5), (0, 2))):
    case("logsumexp_wide_%s" % tag_of(shape, dims, False), "logsumexp", wide, shape,
         lambda x, d=dims: t_lse(x, d, False), dims_arg(dims, False))

# var / std with correction 0, 1, 2
for op, f in (("var", torch.var), ("std", torch.std)):
    for corr in (1, 0, 2):
        for shape, dims, keep in DIMCASES + BIG[:1]:
            if 0 in shape or (shape == () and corr != 0):
                continue
            if corr != 1 and (len(shape) < 2 or 1023 in shape or dims is None and keep):
                continue   # the odd sizes once, with the default correction
            case("%s_c%d_%s" % (op, corr, tag_of(shape, dims, keep)), op, randn, shape,
                 lambda x, d=dims, k=keep, c=corr: f(x, dim=d, correction=c, keepdim=k),
                 dict(dims_arg(dims, keep), correction=float(corr)))
    for shape, dims, lay in NC:
        case("%s_%s" % (op, tag_of(shape, dims, False, lay)), op, randn, shape,
             lambda x, d=dims: f(x, dim=d, correction=1, keepdim=False),
             dict(dims_arg(dims, False), correction=1.0), layout=lay)
    # one element with correction 1 divides 0 by 0: NaN, as PyTorch
    case("%s_c1_single" % op, op, randn, (3, 1), lambda x: f(x, dim=(1,), correction=1),
         dict(dims_arg((1,), False), correction=1.0), grad=False)

# vector norm, p = 1, 2, inf
for p in (1.0, 2.0, math.inf):
    ptag = "pinf" if math.isinf(p) else "p%d" % int(p)
    for shape, dims, keep in DIMCASES + BIG[:1]:
        if math.isinf(p) and 0 in shape:
            continue
        case("norm_%s_%s" % (ptag, tag_of(shape, dims, keep)), "norm", randn, shape,
             lambda x, d=dims, k=keep, p=p: torch.linalg.vector_norm(x, ord=p, dim=d, keepdim=k),
             dict(dims_arg(dims, keep), p=p))
    for shape, dims, lay in NC:
        case("norm_%s_%s" % (ptag, tag_of(shape, dims, False, lay)), "norm", randn, shape,
             lambda x, d=dims, p=p: torch.linalg.vector_norm(x, ord=p, dim=d),
             dict(dims_arg(dims, False), p=p), layout=lay)
    # a zero slice: the 2-norm's gradient there is 0
    case("norm_%s_zero_row" % ptag, "norm", zero_row, (3, 5),
         lambda x, p=p: torch.linalg.vector_norm(x, ord=p, dim=1), dict(dims_arg((1,), False), p=p))
    case("norm_%s_ties" % ptag, "norm", ties, (6, 7),
         lambda x, p=p: torch.linalg.vector_norm(x, ord=p, dim=0), dict(dims_arg((0,), False), p=p))

# max/min along one dim with indices; argmax/argmin
ONEDIM = [((1,), 0, False), ((7,), 0, True), ((33,), -1, False), ((1023,), 0, False),
          ((7, 33), 0, False), ((7, 33), 1, True), ((1023, 2), 0, True),
          ((2, 3, 4), 1, False), ((2, 3, 4), -3, True), ((), 0, False)]
ONEDIM_NC = [((5, 7), 0, "t"), ((5, 7), 1, "t"), ((4, 33), -1, "s"), ((3, 4, 5), 1, "s")]
for op, f, fi in (("max_dim", torch.max, torch.argmax), ("min_dim", torch.min, torch.argmin)):
    for mk, mtag in ((randn, ""), (ties, "ties_")):
        for shape, dim, keep in ONEDIM + [(s, d, False) for s, d, _ in ONEDIM_NC]:
            lay = next((l for s, d, l in ONEDIM_NC if (s, d) == (shape, dim)), "c")
            if mtag and (lay != "c" or 1023 in shape):
                continue
            t = mtag + tag_of(shape, (dim,), keep, lay)
            a = {"dim": dim, "keepdim": keep}
            case("%s_%s" % (op, t), op, mk, shape, lambda x, d=dim, k=keep: f(x, d, k)[0], a, layout=lay)
            case("%s_idx_%s" % (op, t), op + "_idx", mk, shape,
                 lambda x, d=dim, k=keep: f(x, d, k)[1], a, layout=lay, grad=False)
            argop = "argmax" if op == "max_dim" else "argmin"
            case("%s_%s" % (argop, t), argop, mk, shape, lambda x, d=dim, k=keep: fi(x, d, k), a,
                 layout=lay, grad=False)
for op, fi in (("argmax_all", torch.argmax), ("argmin_all", torch.argmin)):
    for mk, shape, lay in ((randn, (1023,), "c"), (randn, (7, 33), "c"), (ties, (5, 6), "c"),
                           (randn, (4, 5), "t"), (randn, (3, 7), "s"), (randn, (), "c")):
        case("%s_%s%s" % (op, "ties_" if mk is ties else "", tag_of(shape, None, False, lay)), op, mk,
             shape, lambda x: fi(x), {}, layout=lay, grad=False)


def nan_case(name, op, fn, args):
    """A hand-made input with NaNs (max propagates them, argmax picks them)."""
    x = torch.tensor([[1.0, float("nan"), 3.0, float("nan")], [2.0, 5.0, -1.0, 0.5]])
    out = fn(x).to(torch.float64)
    ref.emit(name, op, [x], ["c"], args, torch.zeros(out.shape), out, [torch.zeros(x.shape)])


nan_case("max_nan", "max", lambda x: torch.amax(x, 1), {"dims": 1, "keepdim": False})
nan_case("min_nan", "min", lambda x: torch.amin(x, 1), {"dims": 1, "keepdim": False})
nan_case("max_dim_nan", "max_dim", lambda x: torch.max(x, 1)[0], {"dim": 1, "keepdim": False})
nan_case("max_dim_idx_nan", "max_dim_idx", lambda x: torch.max(x, 1)[1], {"dim": 1, "keepdim": False})
nan_case("min_dim_idx_nan", "min_dim_idx", lambda x: torch.min(x, 1)[1], {"dim": 1, "keepdim": False})
nan_case("argmax_nan", "argmax", lambda x: torch.argmax(x, 1), {"dim": 1, "keepdim": False})
nan_case("argmin_nan", "argmin", lambda x: torch.argmin(x, 1), {"dim": 1, "keepdim": False})
nan_case("argmax_all_nan", "argmax_all", lambda x: torch.argmax(x), {})
nan_case("norm_pinf_nan", "norm", lambda x: torch.linalg.vector_norm(x, ord=math.inf, dim=1),
         {"dims": 1, "keepdim": False, "p": "inf"})
nan_case("logsumexp_nan", "logsumexp", lambda x: torch.logsumexp(x, 1), {"dims": 1, "keepdim": False})

ref.write()
