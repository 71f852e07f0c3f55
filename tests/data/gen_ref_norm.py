#!/usr/bin/python3
"""gen_ref_norm.py — PyTorch reference values for nabla's normalizations and
attention (batch_norm, layer_norm, group_norm, rms_norm,
scaled_dot_product_attention).

Writes tests/data/ref_norm.txt, read by tests/ops/test_norm.c through
tu_ref_load_all_from("ref_norm.txt"). The file format (case / arg / in / w /
out / grad / end: out = OP(inputs, args) and the grads of L = (out * W).sum())
is described in tests/data/refdata.py. Inputs that take no gradient (a BOOL
mask, written as 0/1; running statistics) get a grad line of zeros. Rerun
(PyTorch >= 1.13) only when cases change:

    /usr/bin/python3 tests/data/gen_ref_norm.py

The ops and their inputs, as the C side reads them:
  layer_norm   x, [weight, bias]    arg shape (normalized_shape), eps (absent:
                                    default), affine 0|1
  rms_norm     x, [weight]          same args; PyTorch 1.13 has no rms_norm, so
                                    it is computed by hand as
                                    x * rsqrt(mean(x^2, last dims) + eps) * w
                                    (eps absent: finfo(float64).eps)
  group_norm   x, [weight, bias]    arg groups, eps, affine
  batch_norm_train  x, [wb]         training mode, no running stats; wb is
                                    (2, C) = (weight; bias): the C side takes
                                    its rows as views, so wb's gradient is
                                    (dweight; dbias). arg momentum, eps, affine
  batch_norm_eval   x, stats, wb    eval mode; stats (2, C) = (running_mean;
                                    running_var), no gradient
  batch_norm_steps  x1, x2, x3, stats  three training steps (F.batch_norm
                                    with training=True) updating running stats
                                    that start at `stats`; out is the final
                                    (running_mean; running_var); the grads
                                    are zeros (not checked)
  sdpa         q, k, v, [mask]      arg mask none|bool|float, causal 0|1,
                                    scale (absent: 1/sqrt(E)). PyTorch 1.13
                                    has no scaled_dot_product_attention: it is
                                    softmax(q @ k^T * scale + mask) @ v by
                                    hand, bool false / causal j > i at -inf,
                                    and a query whose scores are all -inf
                                    gets weights 0 (nabla's choice; PyTorch
                                    2.0-2.4 give NaN, 2.5+ math backend 0).
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import RefFile, randn, short  # noqa: E402

torch.set_default_dtype(torch.float64)
ref = RefFile("ref_norm.txt", 2000, "nabla norm/attention reference data", __file__)


def boolmask(shape):
    return (torch.rand(shape) < 0.7).to(torch.float64)


def case(name, op, makers, fn, args=None, layouts=None, nograd=(), fixup=None):
    """makers: list of (maker, shape); fn(*inputs) -> out; nograd: indices of
    inputs that take no gradient; fixup(ins) may edit the inputs in place."""
    ref.seed()
    ins = [short(mk(shape)) for mk, shape in makers]
    if fixup:
        fixup(ins)
    layouts = layouts or ["c"] * len(ins)
    leaves = [x.clone().requires_grad_(i not in nograd) for i, x in enumerate(ins)]
    out = fn(*leaves)
    w = short(torch.randn(out.shape, dtype=torch.float64))
    want = [x for i, x in enumerate(leaves) if i not in nograd]
    got = torch.autograd.grad((out * w).sum(), want, allow_unused=True) if want and out.requires_grad else []
    grads, j = [], 0
    for i, x in enumerate(ins):
        if i in nograd:
            grads.append(torch.zeros_like(x))
        else:
            g = got[j] if j < len(got) else None
            grads.append(g if g is not None else torch.zeros_like(x))
            j += 1
    ref.emit(name, op, ins, layouts, args, w, out, grads)


# ---- layer_norm ----
def ln_case(name, shape, k, layouts=None, eps=None, affine=True):
    ns = tuple(shape[len(shape) - k:])
    makers = [(randn, shape)] + ([(randn, ns), (randn, ns)] if affine else [])
    args = {"shape": ns, "affine": affine}
    if eps is not None:
        args["eps"] = eps
    e = 1e-5 if eps is None else eps
    case(name, "layer_norm", makers,
         lambda x, *wb: F.layer_norm(x, ns, *(wb if affine else (None, None)), eps=e), args, layouts)


for n in (1, 7, 33, 1023):
    ln_case("layer_norm_%d" % n, (3 if n < 1023 else 2, n), 1)
ln_case("layer_norm_3d_k2", (2, 3, 5), 2)
ln_case("layer_norm_k_all", (4, 6), 2)
ln_case("layer_norm_t", (5, 7), 1, ["t", "s", "c"])
ln_case("layer_norm_s", (3, 4, 6), 1, ["s", "c", "s"])
ln_case("layer_norm_t_k2", (2, 4, 3), 2, ["t", "t", "c"])
ln_case("layer_norm_noaffine", (3, 7), 1, affine=False)
ln_case("layer_norm_eps", (4, 5), 1, eps=0.1)


# ---- rms_norm (by hand) ----
def rms(x, ns, w, eps):
    dims = tuple(range(x.dim() - len(ns), x.dim()))
    y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
    return y * w if w is not None else y


def rms_case(name, shape, k, layouts=None, eps=None, affine=True):
    ns = tuple(shape[len(shape) - k:])
    makers = [(randn, shape)] + ([(randn, ns)] if affine else [])
    args = {"shape": ns, "affine": affine}
    if eps is not None:
        args["eps"] = eps
    e = torch.finfo(torch.float64).eps if eps is None else eps
    case(name, "rms_norm", makers, lambda x, *w: rms(x, ns, w[0] if affine else None, e), args, layouts)


for n in (1, 7, 33, 1023):
    rms_case("rms_norm_%d" % n, (3 if n < 1023 else 2, n), 1)
rms_case("rms_norm_3d_k2", (2, 3, 5), 2, eps=1e-6)
rms_case("rms_norm_t", (5, 7), 1, ["t", "s"], eps=1e-6)
rms_case("rms_norm_noaffine", (4, 6), 1, affine=False)
rms_case("rms_norm_eps", (3, 5), 1, eps=0.5)


# ---- group_norm ----
def gn_case(name, shape, groups, layouts=None, eps=None, affine=True):
    C = shape[1]
    makers = [(randn, shape)] + ([(randn, (C,)), (randn, (C,))] if affine else [])
    args = {"groups": groups, "affine": affine}
    if eps is not None:
        args["eps"] = eps
    e = 1e-5 if eps is None else eps
    case(name, "group_norm", makers,
         lambda x, *wb: F.group_norm(x, groups, *(wb if affine else (None, None)), eps=e), args, layouts)


gn_case("group_norm_nc", (3, 4), 2)
gn_case("group_norm_ncl", (2, 6, 5), 3)
gn_case("group_norm_nchw", (2, 6, 3, 4), 2)
gn_case("group_norm_g1", (2, 4, 7), 1)
gn_case("group_norm_gc", (2, 4, 7), 4)
gn_case("group_norm_33", (1, 7, 33), 7)
gn_case("group_norm_1023", (2, 2, 1023), 1)
gn_case("group_norm_t", (2, 6, 5), 3, ["t", "s", "c"])
gn_case("group_norm_noaffine", (2, 4, 3), 2, affine=False)
gn_case("group_norm_eps", (2, 4, 3), 2, eps=0.2)


# ---- batch_norm ----
def bn_train_case(name, shape, layouts=None, eps=None, affine=True):
    C = shape[1]
    makers = [(randn, shape)] + ([(randn, (2, C))] if affine else [])
    args = {"affine": affine}
    if eps is not None:
        args["eps"] = eps
    e = 1e-5 if eps is None else eps

    def fn(x, *wb):
        w, b = (wb[0][0], wb[0][1]) if affine else (None, None)
        return F.batch_norm(x, None, None, w, b, training=True, eps=e)

    case(name, "batch_norm_train", makers, fn, args, layouts)


bn_train_case("batch_norm_train_nc", (7, 3))
bn_train_case("batch_norm_train_ncl", (4, 3, 5))
bn_train_case("batch_norm_train_nchw", (2, 3, 4, 5))
bn_train_case("batch_norm_train_33", (33, 2))
bn_train_case("batch_norm_train_1023", (2, 1, 1023))
bn_train_case("batch_norm_train_c1", (5, 1, 3))
bn_train_case("batch_norm_train_t", (3, 4, 5), ["t", "s"])
bn_train_case("batch_norm_train_noaffine", (4, 3, 2), affine=False)
bn_train_case("batch_norm_train_eps", (5, 3), eps=0.3)


def bn_stats(C):
    """(2, C): a running mean and a positive running var."""
    return torch.stack([torch.randn(C), torch.rand(C) * 2.0 + 0.5])


def bn_eval_case(name, shape, layouts=None):
    C = shape[1]
    case(name, "batch_norm_eval", [(randn, shape), (lambda s: bn_stats(s[1]), (2, C)), (randn, (2, C))],
         lambda x, st, wb: F.batch_norm(x, st[0], st[1], wb[0], wb[1], training=False),
         {}, layouts, nograd=(1,))


bn_eval_case("batch_norm_eval_nc", (6, 4))
bn_eval_case("batch_norm_eval_nchw", (2, 3, 4, 3))
bn_eval_case("batch_norm_eval_t", (4, 3, 5), ["t", "c", "s"])


def bn_steps_case(name, shape, momentum=None):
    C = shape[1]
    m = 0.1 if momentum is None else momentum

    def fn(x1, x2, x3, st):
        rm, rv = st[0].detach().clone(), st[1].detach().clone()
        for x in (x1, x2, x3):
            F.batch_norm(x.detach(), rm, rv, None, None, training=True, momentum=m)
        return torch.stack([rm, rv])

    args = {} if momentum is None else {"momentum": momentum}
    case(name, "batch_norm_steps", [(randn, shape)] * 3 + [(lambda s: bn_stats(s[1]), (2, C))], fn, args,
         nograd=(0, 1, 2, 3))


bn_steps_case("batch_norm_steps_ncl", (4, 3, 5))
bn_steps_case("batch_norm_steps_nc_m", (6, 2), momentum=0.3)
bn_steps_case("batch_norm_steps_nchw", (2, 3, 2, 2))


# ---- scaled_dot_product_attention (by hand) ----
def sdpa(q, k, v, mask, causal, scale):
    E = q.shape[-1]
    s = q @ k.transpose(-1, -2) * (scale if scale is not None else 1.0 / math.sqrt(E))
    L, S = s.shape[-2], s.shape[-1]
    if causal:
        s = s.masked_fill(~torch.ones(L, S, dtype=torch.bool).tril(), float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            s = s.masked_fill(~mask, float("-inf"))
        else:
            s = s + mask
    full = torch.isneginf(s).all(-1, keepdim=True)   # every score -inf: weights 0
    p = torch.softmax(s.masked_fill(full, 0.0), -1).masked_fill(full, 0.0)
    return p @ v


def sdpa_case(name, qs, ks, vs, ms=None, kind="none", causal=False, scale=None, layouts=None, fixup=None):
    makers = [(randn, qs), (randn, ks), (randn, vs)]
    if ms is not None:
        makers.append((boolmask if kind == "bool" else randn, ms))
    args = {"mask": kind, "causal": causal}
    if scale is not None:
        args["scale"] = scale

    def fn(q, k, v, *m):
        mask = None
        if m:
            mask = m[0].detach().to(torch.bool) if kind == "bool" else m[0]
        return sdpa(q, k, v, mask, causal, scale)

    case(name, "sdpa", makers, fn, args, layouts, nograd=(3,) if kind == "bool" else (), fixup=fixup)


sdpa_case("sdpa_basic", (2, 3, 5, 4), (2, 3, 7, 4), (2, 3, 7, 6))
sdpa_case("sdpa_2d", (5, 4), (7, 4), (7, 3))
sdpa_case("sdpa_1", (1, 1, 1), (1, 1, 1), (1, 1, 1))
sdpa_case("sdpa_E7_S33", (2, 3, 7), (2, 33, 7), (2, 33, 5))
sdpa_case("sdpa_E33", (4, 33), (6, 33), (6, 7))
sdpa_case("sdpa_E1023", (2, 1023), (3, 1023), (3, 4))
sdpa_case("sdpa_Ev1023", (3, 4), (5, 4), (5, 1023))
sdpa_case("sdpa_bcast", (2, 1, 4, 8), (3, 6, 8), (1, 6, 5))
sdpa_case("sdpa_scale", (2, 4, 5), (2, 6, 5), (2, 6, 3), scale=0.3)
sdpa_case("sdpa_causal", (2, 5, 4), (2, 7, 4), (2, 7, 3), causal=True)
sdpa_case("sdpa_causal_long_q", (7, 4), (5, 4), (5, 3), causal=True)
sdpa_case("sdpa_t", (2, 5, 4), (2, 6, 4), (2, 6, 3), layouts=["t", "s", "t"])


def full_row(i):
    def f(ins):
        ins[3][..., i, :] = 0.0   # query i sees no key
    return f


def neg_inf_row(i):
    def f(ins):
        ins[3][..., i, :] = float("-inf")
        ins[3][..., i + 1, 0] = float("-inf")
    return f


sdpa_case("sdpa_bool", (2, 5, 4), (2, 6, 4), (2, 6, 3), (5, 6), "bool")
sdpa_case("sdpa_bool_full_row", (2, 5, 4), (2, 6, 4), (2, 6, 3), (2, 5, 6), "bool", fixup=full_row(2))
sdpa_case("sdpa_bool_bcast", (2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2), (2, 1, 4, 6), "bool")
sdpa_case("sdpa_float", (2, 5, 4), (2, 6, 4), (2, 6, 3), (5, 6), "float")
sdpa_case("sdpa_float_bcast", (3, 4, 5), (3, 6, 5), (3, 6, 2), (6,), "float")
sdpa_case("sdpa_float_batch", (4, 5), (6, 5), (6, 2), (3, 4, 6), "float")
sdpa_case("sdpa_float_inf", (2, 5, 4), (2, 6, 4), (2, 6, 3), (2, 5, 6), "float", fixup=neg_inf_row(1))
sdpa_case("sdpa_float_t", (2, 5, 4), (2, 6, 4), (2, 6, 3), (2, 5, 6), "float", layouts=["s", "t", "c", "t"])

ref.write()
