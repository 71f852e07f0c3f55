#!/usr/bin/python3
"""gen_ref_loss.py — PyTorch reference values for nabla's linear, softmax,
loss and dropout-free NN functions.

Writes tests/data/ref_loss.txt, read by tests/ops/test_loss.c through
tu_ref_load_all_from("ref_loss.txt"). The file format (per case the op, its
arguments, the inputs with a memory layout, the weight W of the scalar loss
L = (out * W).sum(), the forward result and dL/d(input) for each input) is
described in tests/data/refdata.py. Inputs that take no gradient here
(integer class targets, class weights, pos_weight) get a grad line of zeros;
class targets are written as floats and converted to i64 by the C side.
Rerun only when cases are added (PyTorch >= 1.13):

    /usr/bin/python3 tests/data/gen_ref_loss.py

Ops and their arguments (the C side maps them to nb_* calls):
    softmax / log_softmax     dim D
    linear                    2 or 3 inputs (x, w[, b])
    cross_entropy             inputs logits, targets[, weight]; reduction
                              mean|sum|none, ignore I (absent: default -100),
                              smoothing S; probs 1 when targets are class
                              probabilities (then they take a gradient)
    nll_loss                  inputs logp, targets[, weight]; reduction, ignore
    mse_loss / l1_loss        reduction
    smooth_l1_loss            reduction, beta B
    bce_with_logits           inputs x, y[, weight][, pos_weight]; reduction,
                              hasw 0|1, haspw 0|1
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import RefFile, short  # noqa: E402

torch.set_default_dtype(torch.float64)
ref = RefFile("ref_loss.txt", 5000, "nabla loss reference data", __file__)
seed = ref.seed   # called by each case before it draws its inputs


def case(name, op, ins, grad_mask, fn, args=None, layouts=None):
    """ins: the input tensors (float64); grad_mask[i]: input i takes a gradient;
    fn(*inputs) -> out."""
    ins = [short(x) for x in ins]
    layouts = layouts or ["c"] * len(ins)
    leaves = [x.clone().requires_grad_(g) for x, g in zip(ins, grad_mask)]
    out = fn(*leaves)
    w = short(torch.randn(out.shape))
    loss = (out * w).sum()
    want = [x for x, g in zip(leaves, grad_mask) if g]
    got = iter(torch.autograd.grad(loss, want))
    grads = [next(got) if g else torch.zeros_like(x) for x, g in zip(leaves, grad_mask)]
    ref.emit(name, op, ins, layouts, args, w, out, grads)


def randn(*shape):
    return torch.randn(shape)


def targets(shape, C, ignore=None, n_ignored=0):
    t = torch.randint(0, C, shape).double()
    flat = t.view(-1)
    for k in range(min(n_ignored, flat.numel())):
        flat[(3 * k + 1) % flat.numel()] = ignore
    return t


# ---- softmax / log_softmax ----
for op, f in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
    for n in (1, 7, 33, 1023):
        seed()
        case("%s_%d" % (op, n), op, [randn(2, n)], [True], lambda x: f(x, -1), {"dim": -1})
    for shape, dim, lay in (((7,), 0, "c"), ((2, 33, 3), 1, "c"), ((2, 5, 4), 0, "c"), ((4, 7), 0, "t"),
                            ((4, 7), 1, "t"), ((3, 7), 1, "s"), ((3, 7), 0, "s"), ((2, 3, 5), -2, "t")):
        seed()
        case("%s_%s_d%d_%s" % (op, "x".join(map(str, shape)), dim, lay), op, [randn(*shape)], [True],
             lambda x, dim=dim: f(x, dim), {"dim": dim}, [lay])
    seed()
    case(op + "_0d", op, [randn()], [True], lambda x: f(x, 0), {"dim": 0})
    seed()
    case(op + "_wide", op, [randn(4, 33) * 40.0], [True], lambda x: f(x, 1), {"dim": 1})

# ---- linear ----
for name, xs, ws, bias, lays in (
        ("linear_5x7_3", (5, 7), (3, 7), True, "ccc"),
        ("linear_nobias", (5, 7), (3, 7), False, "cc"),
        ("linear_1d", (7,), (4, 7), True, "ccc"),
        ("linear_3d", (2, 3, 33), (5, 33), True, "ccc"),
        ("linear_in1", (6, 1), (7, 1), True, "ccc"),
        ("linear_in1023", (2, 1023), (3, 1023), True, "ccc"),
        ("linear_out1", (4, 7), (1, 7), True, "ccc"),
        ("linear_nc_t_t_s", (5, 6), (4, 6), True, "tts"),
        ("linear_nc_s_t", (3, 4, 5), (2, 5), True, "stc")):
    seed()
    ins = [randn(*xs), randn(*ws)] + ([randn(ws[0])] if bias else [])
    case(name, "linear", ins, [True] * len(ins), lambda *a: F.linear(*a), None, list(lays))

# ---- cross_entropy with class indices: every option combination ----
RED = ("mean", "sum", "none")
for red in RED:
    for hasw in (False, True):
        for eps in (0.0, 0.1):
            for ign in (None, 2):
                seed()
                N, C = 6, 7
                ignv = -100 if ign is None else ign
                t = targets((N,), C, ignv, 2)
                ins = [randn(N, C), t] + ([torch.rand(C) + 0.5] if hasw else [])
                args = {"reduction": red, "smoothing": eps}
                if ign is not None:
                    args["ignore"] = ign

                def fn(x, tt, *w, red=red, eps=eps, ignv=ignv):
                    return F.cross_entropy(x, tt.long(), weight=w[0] if w else None, ignore_index=ignv,
                                           reduction=red, label_smoothing=eps)
                case("ce_%s_w%d_s%g_i%s" % (red, hasw, eps, ign), "cross_entropy", ins,
                     [True, False, False][:len(ins)], fn, args)

# shapes: class sizes 1, 7, 33, 1023; spatial dims; unbatched; non-contiguous logits
for name, xs, lay, hasw, red, eps in (
        ("ce_C1", (5, 1), "c", False, "mean", 0.0),
        ("ce_C33", (4, 33), "c", True, "mean", 0.2),
        ("ce_C1023", (3, 1023), "c", False, "sum", 0.1),
        ("ce_spatial_2x5x3x4", (2, 5, 3, 4), "c", True, "none", 0.1),
        ("ce_spatial_mean", (3, 4, 7), "c", True, "mean", 0.0),
        ("ce_spatial_t", (2, 4, 5), "t", False, "mean", 0.3),
        ("ce_unbatched", (7,), "c", True, "none", 0.1),
        ("ce_unbatched_mean", (33,), "s", False, "mean", 0.0),
        ("ce_nc_t", (5, 7), "t", True, "mean", 0.1),
        ("ce_nc_s", (5, 7), "s", False, "sum", 0.0),
        ("ce_wide", (4, 33), "c", False, "mean", 0.1)):
    seed()
    C = xs[1] if len(xs) > 1 else xs[0]
    tshape = (xs[0],) + xs[2:] if len(xs) > 1 else ()
    t = targets(tshape, C, -100, 1 if len(xs) > 1 else 0)
    x = randn(*xs) * (30.0 if name == "ce_wide" else 1.0)
    ins = [x, t] + ([torch.rand(C) + 0.5] if hasw else [])

    def fn(x, tt, *w, red=red, eps=eps):
        return F.cross_entropy(x, tt.long(), weight=w[0] if w else None, reduction=red, label_smoothing=eps)
    case(name, "cross_entropy", ins, [True, False, False][:len(ins)], fn, {"reduction": red, "smoothing": eps},
         [lay, "c", "c"][:len(ins)])

# probability targets
for red in RED:
    for hasw in (False, True):
        for eps in (0.0, 0.25):
            seed()
            N, C = 4, 7
            ins = [randn(N, C), torch.softmax(randn(N, C), 1)] + ([torch.rand(C) + 0.5] if hasw else [])

            def fn(x, p, *w, red=red, eps=eps):
                return F.cross_entropy(x, p, weight=w[0] if w else None, reduction=red, label_smoothing=eps)
            case("ce_probs_%s_w%d_s%g" % (red, hasw, eps), "cross_entropy", ins, [True, True, False][:len(ins)],
                 fn, {"reduction": red, "smoothing": eps, "probs": 1})
seed()
case("ce_probs_spatial", "cross_entropy", [randn(2, 5, 3), torch.softmax(randn(2, 5, 3), 1)], [True, True],
     lambda x, p: F.cross_entropy(x, p, reduction="mean"), {"reduction": "mean", "smoothing": 0.0, "probs": 1})

# ---- nll_loss ----
for red in RED:
    for hasw in (False, True):
        for ign in (None, 0):
            seed()
            N, C = 6, 5
            ignv = -100 if ign is None else ign
            t = targets((N,), C, ignv, 2)
            ins = [torch.log_softmax(randn(N, C), 1), t] + ([torch.rand(C) + 0.5] if hasw else [])
            args = {"reduction": red}
            if ign is not None:
                args["ignore"] = ign

            def fn(x, tt, *w, red=red, ignv=ignv):
                return F.nll_loss(x, tt.long(), weight=w[0] if w else None, ignore_index=ignv, reduction=red)
            case("nll_%s_w%d_i%s" % (red, hasw, ign), "nll_loss", ins, [True, False, False][:len(ins)], fn, args)
for name, xs, lay in (("nll_C1023", (2, 1023), "c"), ("nll_spatial", (2, 4, 3, 2), "c"), ("nll_unbatched", (7,), "c"),
                      ("nll_nc_t", (5, 7), "t")):
    seed()
    C = xs[1] if len(xs) > 1 else xs[0]
    tshape = (xs[0],) + xs[2:] if len(xs) > 1 else ()
    ins = [randn(*xs), targets(tshape, C)]
    case(name, "nll_loss", ins, [True, False], lambda x, tt: F.nll_loss(x, tt.long()), {"reduction": "mean"},
         [lay, "c"])

# ---- element-wise regression losses ----
REG = {"mse_loss": F.mse_loss, "l1_loss": F.l1_loss}
for op, f in REG.items():
    for red in RED:
        for n in (1, 7, 33, 1023):
            seed()
            case("%s_%s_%d" % (op, red, n), op, [randn(n), randn(n)], [True, True],
                 lambda x, y, f=f, red=red: f(x, y, reduction=red), {"reduction": red})
        seed()
        case("%s_%s_nc" % (op, red), op, [randn(4, 5), randn(4, 5)], [True, True],
             lambda x, y, f=f, red=red: f(x, y, reduction=red), {"reduction": red}, ["t", "s"])
    seed()
    case(op + "_bcast", op, [randn(3, 4), randn(4)], [True, True], lambda x, y, f=f: f(x, y), {"reduction": "mean"})
    seed()
    case(op + "_bcast2", op, [randn(3, 1), randn(2, 1, 5)], [True, True],
         lambda x, y, f=f: f(x, y, reduction="sum"), {"reduction": "sum"})
for beta in (1.0, 0.5, 0.0, 2.0):
    for red in RED:
        seed()
        case("smooth_l1_%s_b%g" % (red, beta), "smooth_l1_loss", [randn(33), randn(33)], [True, True],
             lambda x, y, red=red, beta=beta: F.smooth_l1_loss(x, y, reduction=red, beta=beta),
             {"reduction": red, "beta": beta})
seed()
case("smooth_l1_nc_bcast", "smooth_l1_loss", [randn(5, 3), randn(3)], [True, True],
     lambda x, y: F.smooth_l1_loss(x, y, beta=0.7), {"reduction": "mean", "beta": 0.7}, ["t", "c"])
seed()
case("smooth_l1_1023", "smooth_l1_loss", [randn(1023), randn(1023)], [True, True],
     lambda x, y: F.smooth_l1_loss(x, y), {"reduction": "mean", "beta": 1.0})

# ---- binary cross entropy with logits ----
for red in RED:
    for hasw in (False, True):
        for haspw in (False, True):
            seed()
            N, C = 5, 7
            ins = [randn(N, C) * 3.0, torch.rand(N, C)]
            if hasw:
                ins.append(torch.rand(N, 1) + 0.5)
            if haspw:
                ins.append(torch.rand(C) * 2.0 + 0.5)

            def fn(x, y, *rest, red=red, hasw=hasw, haspw=haspw):
                w = rest[0] if hasw else None
                pw = rest[-1] if haspw else None
                return F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=pw, reduction=red)
            case("bce_%s_w%d_pw%d" % (red, hasw, haspw), "bce_with_logits", ins,
                 [True, True] + [False] * (len(ins) - 2), fn, {"reduction": red, "hasw": hasw, "haspw": haspw})
for name, shape, scale, lay in (("bce_1", (1,), 1.0, "c"), ("bce_33", (33,), 1.0, "c"), ("bce_1023", (1023,), 2.0, "c"),
                                ("bce_wide", (3, 33), 60.0, "c"), ("bce_nc", (4, 6), 1.0, "t")):
    seed()
    ins = [randn(*shape) * scale, (torch.rand(*shape) > 0.5).double()]
    case(name, "bce_with_logits", ins, [True, True], lambda x, y: F.binary_cross_entropy_with_logits(x, y),
         {"reduction": "mean", "hasw": False, "haspw": False}, [lay, "s" if lay == "t" else "c"])

ref.write()
