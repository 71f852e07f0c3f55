#!/usr/bin/python3
"""gen_ref_elementwise.py — PyTorch reference values for nabla's element-wise
ops (math, activations, comparisons, logical, where, masked_fill) and for
type promotion.

Writes tests/data/ref_elementwise.txt, read by tests/ops/test_elementwise.c
through tu_ref_load_all_from(). The file format (per case the inputs, W,
out = OP(inputs, args) and the gradients of (out * W).sum()) is described in
tests/data/refdata.py. Inputs with no gradient (bool/i64 inputs, or every
input of an op with a bool result) get a grad line of zeros. Rerun (PyTorch
>= 1.13) only when cases change:

    /usr/bin/python3 tests/data/gen_ref_elementwise.py

Extra args used here:

    arg min X / max X         clamp bounds; nan = no bound
    arg s X                   negative_slope, scalar operand, fill value
    arg alpha X  arg approximate 0|1  arg beta X  arg threshold X
    arg dt0 W, dt1 W, dt2 W   input i's dtype (f32|f64|i64|bool) when fixed
    arg fixed 1               every dtype is fixed by the dt args: the case
                              runs once, in those dtypes (promotion cases);
                              otherwise it runs in f64 and f32, inputs without
                              a dt arg taking the run's dtype
    arg dout W                the dtype of out (fixed cases and bool results)
    arg f64only 1             special values that f32 cannot reproduce
    arg nograd 1              no backward check (bool results)

Values of non-fixed cases are rounded to 7 significant digits (short reprs);
fixed cases hold values exact in their dtype. W is rounded to 3 digits
(zeros where there is no backward).
Every case is computed in float64 unless its dtypes are fixed.
"""

import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import RefFile, positive, randn, short  # noqa: E402

torch.set_default_dtype(torch.float32)   # Python float scalars promote to f32, as in nabla
ref = RefFile("ref_elementwise.txt", 1000, "nabla element-wise reference data", __file__)

DT = {"f32": torch.float32, "f64": torch.float64, "i64": torch.int64, "bool": torch.bool}
DT_NAME = {v: k for k, v in DT.items()}
F = torch.nn.functional


# ---- input makers (called under a per-case seed, return float64; randn and
# positive come from refdata) ----
def wide(shape):
    return torch.randn(shape, dtype=torch.float64) * 4.0


def small_int(shape):
    """integers in [-2, 2] as floats: comparisons and maximum get ties."""
    return torch.randint(-2, 3, shape).to(torch.float64)


def mask(shape):
    return (torch.rand(shape) < 0.5).to(torch.float64)


def const(vals):
    def mk(shape):
        return torch.tensor(vals, dtype=torch.float64).reshape(shape)
    return mk


def case(name, op, makers, fn, args=None, layouts=None, dts=None):
    """makers: (maker, shape) per input; fn(*inputs) -> out, computed in
    float64 (inputs whose dts entry is 'bool' or 'i64' in that dtype)."""
    ref.seed()
    args = dict(args or {})
    dts = dts or [None] * len(makers)
    ins = [short(mk(shape), dtype=torch.float64) for mk, shape in makers]
    layouts = layouts or ["c"] * len(ins)
    leaves = []
    for x, d in zip(ins, dts):
        if d in ("bool", "i64"):
            leaves.append(x.to(DT[d]))
        else:
            leaves.append(x.clone().requires_grad_(True))
    for i, d in enumerate(dts):
        if d:
            args["dt%d" % i] = d
    out = fn(*leaves)
    w = short(torch.randn(out.shape, dtype=torch.float64), 3)
    if out.dtype == torch.bool:
        w = torch.zeros(out.shape, dtype=torch.float64)   # unused: no backward
        args["dout"] = "bool"
        args["nograd"] = True
        grads = [torch.zeros_like(x) for x in ins]
    else:
        diff = [l for l in leaves if l.requires_grad]
        gs = iter(torch.autograd.grad((out * w).sum(), diff)) if diff else iter(())
        grads = [next(gs) if l.requires_grad else torch.zeros_like(x) for x, l in zip(ins, leaves)]
    ref.emit(name, op, ins, layouts, args, w, out, grads)


def sizes_case(op, fn, mk=randn, args=None, sizes=(1, 7, 33, 1023), more=True):
    for n in sizes:
        case("%s_%d" % (op, n), op, [(mk, (n,))], fn, args=args)
    if more:
        case(op + "_0d", op, [(mk, ())], fn, args=args)
        case(op + "_2x3x4", op, [(mk, (2, 3, 4))], fn, args=args)
        case(op + "_nc_t", op, [(mk, (5, 3))], fn, args=args, layouts=["t"])
        case(op + "_nc_s", op, [(mk, (3, 7))], fn, args=args, layouts=["s"])


def special(op, vals, fn, args=None, f64only=False):
    a = dict(args or {})
    if f64only:
        a["f64only"] = True
    case(op + "_special", op, [(const(vals), (len(vals),))], fn, args=a)


# ---- unary math ----
sizes_case("sqrt", torch.sqrt, positive)
special("sqrt", [0.0, 4.0, 1e-30, 1e30, -1.0, 2.25], torch.sqrt, f64only=True)
sizes_case("rsqrt", torch.rsqrt, positive)
special("rsqrt", [0.0, 4.0, 1e-30, 1e30, -1.0], torch.rsqrt, f64only=True)
sizes_case("abs", torch.abs, randn)
special("abs", [0.0, -0.0, -2.0, 3.5, 1e30, -1e30], torch.abs)
sizes_case("sign", torch.sign, randn, sizes=(1, 7, 33))
special("sign", [0.0, -0.0, -2.0, 3.5, 1e30, -1e-30, float("nan")], torch.sign)
sizes_case("sin", torch.sin, wide)
special("sin", [0.0, -0.0, 3.141593, -1000.0, 1000.0], torch.sin)
sizes_case("cos", torch.cos, wide)
special("cos", [0.0, -0.0, 3.141593, -1000.0, 1000.0], torch.cos)
sizes_case("erf", torch.erf, randn)
special("erf", [0.0, -0.0, 6.0, -6.0, 30.0, -1e30], torch.erf)
sizes_case("reciprocal", torch.reciprocal, lambda s: randn(s).sign() * positive(s))
special("reciprocal", [0.0, -0.0, 1e-30, -1e30, 3.0], torch.reciprocal, f64only=True)
sizes_case("square", torch.square, randn)
special("square", [0.0, -0.0, -3.0, 1e30, -1e200], torch.square, f64only=True)

# ---- clamp ----
for lo, hi, tag in ((-0.5, 0.5, "both"), (-0.25, float("nan"), "min"), (float("nan"), 0.3, "max"),
                    (0.5, -0.5, "crossed")):
    def fclamp(x, lo=lo, hi=hi):
        return torch.clamp(x, min=None if math.isnan(lo) else lo, max=None if math.isnan(hi) else hi)
    sizes_case("clamp_" + tag, fclamp, randn, args={"min": lo, "max": hi}, sizes=(1, 7, 33),
               more=tag == "both")
case("clamp_1023", "clamp", [(randn, (1023,))], lambda x: torch.clamp(x, -1.0, 1.0),
     args={"min": -1.0, "max": 1.0})
case("clamp_special", "clamp", [(const([-1.0, 1.0, 0.0, float("nan"), 1e30, -1e30]), (6,))],
     lambda x: torch.clamp(x, -1.0, 1.0), args={"min": -1.0, "max": 1.0})
for i in range(len(ref.lines)):   # the sizes cases were named clamp_<tag>_<n>: their op is clamp
    if ref.lines[i].startswith("case clamp_"):
        parts = ref.lines[i].split()
        parts[2] = "clamp"
        ref.lines[i] = " ".join(parts)

# ---- activations ----
sizes_case("sigmoid", torch.sigmoid, wide)
special("sigmoid", [0.0, -20.0, 20.0, -1000.0, 1000.0, -0.0], torch.sigmoid)
sizes_case("relu", torch.relu, randn)
special("relu", [0.0, -0.0, -1.0, 2.0, 1e30, -1e30, float("nan")], torch.relu)
for slope in (0.01, 0.2):
    tag = "leaky_relu_s%s" % repr(slope).replace(".", "p")
    for n in (1, 7, 33):
        case("%s_%d" % (tag, n), "leaky_relu", [(randn, (n,))],
             lambda x, s=slope: F.leaky_relu(x, s), args={"s": slope})
sizes_case("leaky_relu", lambda x: F.leaky_relu(x, 0.1), randn, args={"s": 0.1}, sizes=(1023,))
special("leaky_relu", [0.0, -0.0, -1.0, 2.0, 1e30, -1e30], lambda x: F.leaky_relu(x, 0.1),
        args={"s": 0.1})
for alpha in (1.0, 0.5):
    tag = "elu_a%s" % repr(alpha).replace(".", "p")
    for n in (1, 7, 33):
        case("%s_%d" % (tag, n), "elu", [(wide, (n,))], lambda x, a=alpha: F.elu(x, a),
             args={"alpha": alpha})
sizes_case("elu", lambda x: F.elu(x, 1.5), wide, args={"alpha": 1.5}, sizes=(1023,))
special("elu", [0.0, -0.0, -1.0, 2.0, -1000.0, 1e30, -1e-8], lambda x: F.elu(x, 1.0),
        args={"alpha": 1.0})
for approx in ("none", "tanh"):
    tag = "gelu_" + approx
    flag = {"approximate": approx == "tanh"}
    sizes_case(tag, lambda x, a=approx: F.gelu(x, approximate=a), wide, args=flag)
    special(tag, [0.0, -0.0, -10.0, 10.0, -1000.0, 1000.0, -3.0],
            lambda x, a=approx: F.gelu(x, approximate=a), args=flag)
for i in range(len(ref.lines)):
    if ref.lines[i].startswith("case gelu_"):
        parts = ref.lines[i].split()
        parts[2] = "gelu"
        ref.lines[i] = " ".join(parts)
sizes_case("silu", F.silu, wide)
special("silu", [0.0, -0.0, -20.0, 20.0, -1000.0, 1000.0], F.silu)
for beta, thr in ((1.0, 20.0), (2.0, 5.0), (0.5, 1.0)):
    tag = "softplus_b%s_t%s" % (repr(beta).replace(".", "p"), repr(thr).replace(".", "p"))
    for n in (1, 7, 33):
        case("%s_%d" % (tag, n), "softplus", [(wide, (n,))],
             lambda x, b=beta, t=thr: F.softplus(x, b, t), args={"beta": beta, "threshold": thr})
sizes_case("softplus", F.softplus, wide, args={"beta": 1.0, "threshold": 20.0}, sizes=(1023,))
special("softplus", [0.0, 20.0, 20.5, 19.5, -1000.0, 1000.0, 2.5, 2.5000001],
        lambda x: F.softplus(x, 2.0, 5.0), args={"beta": 2.0, "threshold": 5.0})

# ---- binary: maximum, minimum, comparisons, logical ----
def binary_cases(op, fn, ma, mb, sizes=(1, 7, 33)):
    for n in sizes:
        case("%s_%d" % (op, n), op, [(ma, (n,)), (mb, (n,))], fn)
    case(op + "_bcast_3x1x4_5x1", op, [(ma, (3, 1, 4)), (mb, (5, 1))], fn)
    case(op + "_bcast_0d_2x3", op, [(ma, ()), (mb, (2, 3))], fn)
    case(op + "_bcast_1x7_33x1", op, [(ma, (1, 7)), (mb, (33, 1))], fn)
    case(op + "_nc_t_s", op, [(ma, (3, 4)), (mb, (3, 4))], fn, layouts=["t", "s"])
    case(op + "_nc_bcast_s_t", op, [(ma, (2, 3, 1)), (mb, (3, 4))], fn, layouts=["s", "t"])


binary_cases("maximum", torch.maximum, randn, randn, sizes=(1, 7, 33, 1023))
binary_cases("minimum", torch.minimum, randn, randn, sizes=(1, 7, 33, 1023))
case("maximum_ties", "maximum", [(small_int, (33,)), (small_int, (33,))], torch.maximum)
case("minimum_ties", "minimum", [(small_int, (33,)), (small_int, (33,))], torch.minimum)
case("maximum_nan", "maximum", [(const([float("nan"), 1.0, 2.0]), (3,)),
                                (const([0.0, float("nan"), 1.0]), (3,))], torch.maximum)
case("minimum_nan", "minimum", [(const([float("nan"), 1.0, 2.0]), (3,)),
                                (const([0.0, float("nan"), 1.0]), (3,))], torch.minimum)

CMP = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt,
       "ge": torch.ge}
for op, f in CMP.items():
    binary_cases(op, f, small_int, small_int, sizes=(1, 7, 1023) if op in ("eq", "lt") else (1, 7))
    case(op + "_nan", op, [(const([float("nan"), 1.0, float("nan")]), (3,)),
                           (const([float("nan"), float("nan"), 0.0]), (3,))], f)
    for s in (1.0, 0.5, -2.0):
        tag = repr(s).replace("-", "m").replace(".", "p")
        case("%s_scalar_%s" % (op, tag), op + "_scalar", [(small_int, (2, 7))],
             lambda x, s=s, f=f: f(x, s), args={"s": s})
    case(op + "_scalar_nc_t", op + "_scalar", [(small_int, (4, 3))], lambda x, f=f: f(x, 1.0),
         args={"s": 1.0}, layouts=["t"])
    case(op + "_scalar_33", op + "_scalar", [(small_int, (33,))], lambda x, f=f: f(x, 0.0),
         args={"s": 0.0})

LOGIC = {"logical_and": torch.logical_and, "logical_or": torch.logical_or}
for op, f in LOGIC.items():
    binary_cases(op, f, small_int, small_int, sizes=(1, 7, 33))
    case(op + "_bool", op, [(mask, (3, 4)), (mask, (4,))], f, dts=["bool", "bool"])
for n in (1, 7, 33):
    case("logical_not_%d" % n, "logical_not", [(small_int, (n,))], torch.logical_not)
case("logical_not_nc_s", "logical_not", [(small_int, (3, 5))], torch.logical_not, layouts=["s"])
case("logical_not_special", "logical_not", [(const([0.0, -0.0, float("nan"), 1e-30]), (4,))],
     torch.logical_not)
case("logical_not_bool", "logical_not", [(mask, (2, 5))], torch.logical_not, dts=["bool"])

# ---- where, masked_fill ----
for n in (1, 7, 33, 1023):
    case("where_%d" % n, "where", [(mask, (n,)), (randn, (n,)), (randn, (n,))], torch.where,
         dts=["bool", None, None])
case("where_bcast_3", "where", [(mask, (3, 1)), (randn, (1, 4)), (randn, (4,))], torch.where,
     dts=["bool", None, None])
case("where_bcast_cond", "where", [(mask, (2, 3, 4)), (randn, (3, 1)), (randn, ())], torch.where,
     dts=["bool", None, None])
case("where_nc", "where", [(mask, (3, 4)), (randn, (3, 4)), (randn, (3, 4))], torch.where,
     dts=["bool", None, None], layouts=["t", "s", "t"])
for n in (1, 7, 33, 1023):
    case("masked_fill_%d" % n, "masked_fill", [(randn, (n,)), (mask, (n,))],
         lambda t, m: t.masked_fill(m, -1.5), dts=[None, "bool"], args={"s": -1.5})
case("masked_fill_bcast_mask", "masked_fill", [(randn, (3, 4)), (mask, (4,))],
     lambda t, m: t.masked_fill(m, 2.0), dts=[None, "bool"], args={"s": 2.0})
case("masked_fill_bcast_both", "masked_fill", [(randn, (4,)), (mask, (3, 1))],
     lambda t, m: torch.masked_fill(t, m, 0.25), dts=[None, "bool"], args={"s": 0.25})
case("masked_fill_nc", "masked_fill", [(randn, (3, 4)), (mask, (3, 4))],
     lambda t, m: t.masked_fill(m, float("inf")), dts=[None, "bool"], args={"s": float("inf")},
     layouts=["t", "s"])


# ---- type promotion: every pair of dtypes, with dims and 0-dim ----
def exact_vals(d, shape):
    if d == "bool":
        return mask(shape)
    if d == "i64":
        return torch.randint(-3, 4, shape).to(torch.float64)
    return short(randn(shape), 3)   # then .to(dtype): the file holds the f32 value exactly


def fixed_case(name, op, dts, shapes, fn, args=None):
    ref.seed()
    args = dict(args or {})
    leaves, ins = [], []
    for i, (d, shape) in enumerate(zip(dts, shapes)):
        x = exact_vals(d, shape)
        if d == "i64" and op == "div" and i == 1:
            x = torch.where(x == 0, torch.ones_like(x), x)   # no integer division by zero
        t = x.to(DT[d])
        if t.is_floating_point():
            t.requires_grad_(True)
        leaves.append(t)
        ins.append(t.detach().to(torch.float64))
        args["dt%d" % i] = d
    out = fn(*leaves)
    args["fixed"] = True
    args["dout"] = DT_NAME[out.dtype]
    w = short(torch.randn(out.shape, dtype=torch.float64), 3)
    if out.dtype == torch.bool or not out.is_floating_point():
        w = torch.zeros(out.shape, dtype=torch.float64)   # unused: no backward
        args["nograd"] = True
        grads = [torch.zeros(x.shape, dtype=torch.float64) for x in ins]
    else:
        diff = [l for l in leaves if l.requires_grad]
        gs = iter(torch.autograd.grad((out * w.to(out.dtype)).sum(), diff)) if diff else iter(())
        grads = [next(gs) if l.requires_grad else torch.zeros(x.shape, dtype=torch.float64)
                 for x, l in zip(ins, leaves)]
        for l, g in zip(leaves, grads):
            assert not l.requires_grad or g.dtype == l.dtype
    ref.emit(name, op, ins, ["c"] * len(ins), args, w, out, grads)


PROMO_OPS = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
             "maximum": torch.maximum, "lt": torch.lt, "eq": torch.eq, "logical_and": torch.logical_and}
DIMS = {"dd": ((3,), (3,)), "zd": ((), (3,)), "dz": ((2, 3), ()), "zz": ((), ())}
for da in DT:
    for db in DT:
        for op, f in PROMO_OPS.items():
            if op == "sub" and "bool" in (da, db):   # PyTorch refuses bool in subtraction
                continue
            for tag, shapes in DIMS.items():
                fixed_case("promo_%s_%s_%s_%s" % (op, da, db, tag), op, [da, db], shapes, f)
        fixed_case("promo_where_%s_%s" % (da, db), "where", ["bool", da, db], [(3,), (3,), ()],
                   torch.where)
for da in DT:
    for s in (2, -3, 2.5, 0.5):
        tag = repr(s).replace("-", "m").replace(".", "p")
        ops = {"add_scalar": lambda x, s=s: x + s, "mul_scalar": lambda x, s=s: x * s,
               "lt_scalar": lambda x, s=s: x < s, "eq_scalar": lambda x, s=s: x == s}
        if s > 0:
            ops["pow_scalar"] = lambda x, s=s: x ** s
        for op, f in ops.items():
            for dtag, shape in (("d", (4,)), ("z", ())):
                fixed_case("promo_%s_%s_%s_%s" % (op, da, tag, dtag), op, [da], [shape], f,
                           args={"s": float(s)})
for da in ("f32", "f64", "i64"):
    fixed_case("promo_clamp_%s_int" % da, "clamp", [da], [(5,)],
               lambda x: torch.clamp(x, min=-1, max=1), args={"min": -1.0, "max": 1.0})
    fixed_case("promo_clamp_%s_float" % da, "clamp", [da], [(5,)],
               lambda x: torch.clamp(x, min=-0.5), args={"min": -0.5, "max": float("nan")})
for da in DT:
    for op, f in (("sqrt", torch.sqrt), ("sigmoid", torch.sigmoid), ("square", torch.square),
                  ("sign", torch.sign)):
        if op == "square" and da == "bool":
            f = lambda x: x ** 2   # torch.square(bool) is i64 too, but has no autograd formula
        fixed_case("promo_%s_%s" % (op, da), op, [da], [(4,)], f)

ref.write()
