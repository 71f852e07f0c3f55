#!/usr/bin/python3
"""gen_reference.py — PyTorch reference values for nabla's core ops
(element-wise binary, with-a-scalar and unary math, reductions, matmul, views
and copies, dtype conversion, a few compositions).

Writes tests/data/reference.txt, read by tests/ops/test_ops_ref.c through
tu_ref_load(). The file format, the seeding and the loss L = (out * W).sum()
whose gradients are stored are described once, in tests/data/refdata.py.
Every case is float64, except to_dtype (f32), where out and W are float32.
Rerun (PyTorch >= 1.13) only when cases change:

    /usr/bin/python3 tests/data/gen_reference.py
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import RefFile, positive, randn, short  # noqa: E402

torch.set_default_dtype(torch.float64)
ref = RefFile("reference.txt", 1000, "nabla reference data", __file__)


def nonzero(shape):
    """|x| in [0.5, 2.0) with a random sign, for divisors."""
    m = torch.rand(shape, dtype=torch.float64) * 1.5 + 0.5
    s = torch.where(torch.rand(shape) < 0.5, -1.0, 1.0)
    return m * s


def case(name, op, makers, fn, args=None, layouts=None):
    """makers: list of (maker, shape) for the inputs; fn(*inputs) -> out."""
    ref.seed()
    ins = [short(mk(shape)) for mk, shape in makers]
    layouts = layouts or ["c"] * len(ins)
    leaves = [x.clone().requires_grad_(True) for x in ins]
    out = fn(*leaves)
    w = short(torch.randn(out.shape, dtype=torch.float64)).to(out.dtype)
    loss = (out * w).sum()
    grads = torch.autograd.grad(loss, leaves)
    ref.emit(name, op, ins, layouts, args, w, out, grads)


# ---- element-wise binary ----
BINARY = {
    "add": (torch.add, randn, randn),
    "sub": (torch.sub, randn, randn),
    "mul": (torch.mul, randn, randn),
    "div": (torch.div, randn, nonzero),
    "pow": (torch.pow, positive, randn),
}
for op, (f, ma, mb) in BINARY.items():
    for n in (1, 7, 33, 1023):
        case("%s_%d" % (op, n), op, [(ma, (n,)), (mb, (n,))], f)
    case(op + "_2x3", op, [(ma, (2, 3)), (mb, (2, 3))], f)
    case(op + "_bcast_3x1x4_5x1", op, [(ma, (3, 1, 4)), (mb, (5, 1))], f)
    case(op + "_bcast_5x1_3x1x4", op, [(ma, (5, 1)), (mb, (3, 1, 4))], f)
    case(op + "_bcast_row_3x4_4", op, [(ma, (3, 4)), (mb, (4,))], f)
    case(op + "_bcast_scalar_0d_2x3", op, [(ma, ()), (mb, (2, 3))], f)
    case(op + "_bcast_2x3_0d", op, [(ma, (2, 3)), (mb, ())], f)
    case(op + "_bcast_1x7_33x1", op, [(ma, (1, 7)), (mb, (33, 1))], f)
    case(op + "_nc_t_s", op, [(ma, (3, 4)), (mb, (3, 4))], f, layouts=["t", "s"])
    case(op + "_nc_bcast_t_s", op, [(ma, (4, 3)), (mb, (3,))], f, layouts=["t", "s"])
    case(op + "_nc_bcast_s_t", op, [(ma, (2, 3, 1)), (mb, (3, 4))], f,
         layouts=["s", "t"])

# ---- with a scalar ----
for s in (2.5, -1.25, 0.0):
    tag = repr(s).replace("-", "m").replace(".", "p")
    case("add_scalar_%s" % tag, "add_scalar", [(randn, (2, 3))],
         lambda x, s=s: x + s, args={"s": s})
    case("mul_scalar_%s" % tag, "mul_scalar", [(randn, (2, 3))],
         lambda x, s=s: x * s, args={"s": s})
for n in (1, 7, 33, 1023):
    case("add_scalar_%d" % n, "add_scalar", [(randn, (n,))], lambda x: x + 0.75,
         args={"s": 0.75})
    case("mul_scalar_%d" % n, "mul_scalar", [(randn, (n,))], lambda x: x * -3.5,
         args={"s": -3.5})
    case("pow_scalar_%d" % n, "pow_scalar", [(positive, (n,))],
         lambda x: torch.pow(x, 1.7), args={"s": 1.7})
case("add_scalar_nc_t", "add_scalar", [(randn, (4, 3))], lambda x: x + 1.5,
     args={"s": 1.5}, layouts=["t"])
case("mul_scalar_nc_s", "mul_scalar", [(randn, (3, 5))], lambda x: x * 0.5,
     args={"s": 0.5}, layouts=["s"])
for e in (2.0, 3.0, 1.0, 0.0, -1.0, 0.5, -1.5, 2.5):
    tag = repr(e).replace("-", "m").replace(".", "p")
    mk = randn if e == int(e) else positive
    case("pow_scalar_e%s" % tag, "pow_scalar", [(mk, (3, 4))],
         lambda x, e=e: torch.pow(x, e), args={"s": e})
case("pow_scalar_nc_t", "pow_scalar", [(positive, (5, 3))],
     lambda x: torch.pow(x, -0.5), args={"s": -0.5}, layouts=["t"])
case("pow_scalar_0d", "pow_scalar", [(positive, ())], lambda x: torch.pow(x, 3.0),
     args={"s": 3.0})

# ---- unary ----
UNARY = {
    "neg": (torch.neg, randn),
    "exp": (torch.exp, randn),
    "log": (torch.log, positive),
    "tanh": (torch.tanh, randn),
}
for op, (f, mk) in UNARY.items():
    for n in (1, 7, 33, 1023):
        case("%s_%d" % (op, n), op, [(mk, (n,))], f)
    case(op + "_0d", op, [(mk, ())], f)
    case(op + "_2x3x4", op, [(mk, (2, 3, 4))], f)
    case(op + "_nc_t", op, [(mk, (5, 3))], f, layouts=["t"])
    case(op + "_nc_s", op, [(mk, (3, 7))], f, layouts=["s"])
case("exp_wide", "exp", [(lambda s: randn(s) * 8.0, (33,))], torch.exp)
case("tanh_wide", "tanh", [(lambda s: randn(s) * 6.0, (33,))], torch.tanh)
case("log_wide", "log", [(lambda s: torch.exp(randn(s) * 6.0), (33,))], torch.log)

# ---- reductions ----
for op, f_all, f_dims in (("sum", torch.sum, torch.sum), ("mean", torch.mean, torch.mean)):
    # all dims (nb_sum_all / nb_mean_all)
    for shape in ((1,), (7,), (33,), (1023,), (2, 3, 4), ()):
        tag = "x".join(str(s) for s in shape) or "0d"
        case("%s_all_%s" % (op, tag), op + "_all", [(randn, shape)], f_all)
    case("%s_all_nc_t" % op, op + "_all", [(randn, (4, 5))], f_all, layouts=["t"])
    case("%s_all_nc_s" % op, op + "_all", [(randn, (3, 33))], f_all, layouts=["s"])
    # chosen dims
    dimcases = [
        ((2, 3, 4), (1,), False), ((2, 3, 4), (1,), True),
        ((2, 3, 4), (-1,), False), ((2, 3, 4), (-1,), True),
        ((2, 3, 4), (0, 2), False), ((2, 3, 4), (0, 2), True),
        ((2, 3, 4), (-1, 0), False), ((2, 3, 4), (0, 1, 2), False),
        ((2, 3, 4), (-3, -2, -1), True),
        ((1, 7), (0,), False), ((7, 1), (-1,), True),
        ((33, 2), (0,), False), ((2, 33), (-1,), True),
        ((2, 1023), (-1,), False), ((1023, 1), (0,), True),
        ((5,), (0,), False), ((5,), (-1,), True),
        ((33, 31), (0,), False), ((7, 33, 5), (1,), False),
    ]
    for shape, dims, keep in dimcases:
        tag = "x".join(str(s) for s in shape)
        dtag = "_".join(str(d).replace("-", "m") for d in dims)
        case("%s_%s_d%s_k%d" % (op, tag, dtag, int(keep)), op, [(randn, shape)],
             lambda x, d=dims, k=keep: f_dims(x, dim=d, keepdim=k),
             args={"dims": dims, "keepdim": keep})
    for lay, shape in (("t", (4, 5)), ("s", (4, 5))):
        for dims in ((0,), (1,), (-1,)):
            dtag = "_".join(str(d).replace("-", "m") for d in dims)
            case("%s_nc_%s_d%s" % (op, lay, dtag), op, [(randn, shape)],
                 lambda x, d=dims: f_dims(x, dim=d),
                 args={"dims": dims, "keepdim": False}, layouts=[lay])
    case("%s_nc_t_3d_d0_2" % op, op, [(randn, (3, 4, 5))],
         lambda x: f_dims(x, dim=(0, 2), keepdim=True),
         args={"dims": (0, 2), "keepdim": True}, layouts=["t"])

# ---- matmul ----
MM = [
    ("dot_7", (7,), (7,)),
    ("dot_1", (1,), (1,)),
    ("dot_1023", (1023,), (1023,)),
    ("vecmat_4_4x5", (4,), (4, 5)),
    ("matvec_3x4_4", (3, 4), (4,)),
    ("mm_3x4_4x5", (3, 4), (4, 5)),
    ("mm_1x1_1x1", (1, 1), (1, 1)),
    ("mm_7x33_33x1", (7, 33), (33, 1)),
    ("mm_1x7_7x33", (1, 7), (7, 33)),
    ("mm_1x1023_1023x2", (1, 1023), (1023, 2)),
    ("mm_33x65_65x17", (33, 65), (65, 17)),
    ("bmm_2x3x4_2x4x5", (2, 3, 4), (2, 4, 5)),
    ("bmm_bcast_2x1x3x4_5x4x6", (2, 1, 3, 4), (5, 4, 6)),
    ("bmm_bcast_1x3x4_2x4x5", (1, 3, 4), (2, 4, 5)),
    ("bmm_3x4_2x4x5", (3, 4), (2, 4, 5)),
    ("bmm_2x3x4_4x5", (2, 3, 4), (4, 5)),
    ("bmm_4_2x4x5", (4,), (2, 4, 5)),
    ("bmm_2x3x4_4", (2, 3, 4), (4,)),
]
for name, sa, sb in MM:
    case("matmul_" + name, "matmul", [(randn, sa), (randn, sb)], torch.matmul)
case("matmul_nc_t_t", "matmul", [(randn, (3, 4)), (randn, (4, 5))], torch.matmul,
     layouts=["t", "t"])
case("matmul_nc_s_t", "matmul", [(randn, (3, 4)), (randn, (4, 5))], torch.matmul,
     layouts=["s", "t"])
case("matmul_nc_batched_t_s", "matmul", [(randn, (2, 3, 4)), (randn, (2, 4, 5))],
     torch.matmul, layouts=["t", "s"])
case("matmul_nc_vec_s_t", "matmul", [(randn, (4,)), (randn, (4, 5))], torch.matmul,
     layouts=["s", "t"])

# ---- views and copies ----
def view_case(name, op, shape, fn, args, layout="c"):
    case(name, op, [(randn, shape)], fn, args=args, layouts=[layout])


view_case("reshape_2x3x4_4x6", "reshape", (2, 3, 4), lambda x: x.reshape(4, 6),
          {"shape": (4, 6)})
view_case("reshape_infer", "reshape", (2, 3, 4), lambda x: x.reshape(6, -1),
          {"shape": (6, -1)})
view_case("reshape_flat_nc_t", "reshape", (4, 6), lambda x: x.reshape(24),
          {"shape": (24,)}, "t")
view_case("reshape_nc_s", "reshape", (3, 4), lambda x: x.reshape(2, 6),
          {"shape": (2, 6)}, "s")
view_case("reshape_to_0d", "reshape", (1, 1), lambda x: x.reshape(()), {"shape": ()})
view_case("reshape_from_0d", "reshape", (), lambda x: x.reshape(1, 1, 1),
          {"shape": (1, 1, 1)})
view_case("transpose_0_2", "transpose", (2, 3, 4), lambda x: x.transpose(0, 2),
          {"dim0": 0, "dim1": 2})
view_case("transpose_neg", "transpose", (2, 3, 4), lambda x: x.transpose(-1, -2),
          {"dim0": -1, "dim1": -2})
view_case("transpose_nc_t", "transpose", (3, 5), lambda x: x.transpose(0, 1),
          {"dim0": 0, "dim1": 1}, "t")
view_case("permute_2_0_1", "permute", (2, 3, 4), lambda x: x.permute(2, 0, 1),
          {"dims": (2, 0, 1)})
view_case("permute_4d", "permute", (2, 3, 1, 5), lambda x: x.permute(3, 1, 0, 2),
          {"dims": (3, 1, 0, 2)})
view_case("permute_nc_s", "permute", (3, 4), lambda x: x.permute(1, 0),
          {"dims": (1, 0)}, "s")
view_case("slice_step2", "slice", (10,), lambda x: x[1:8:2],
          {"dim": 0, "start": 1, "stop": 8, "step": 2})
view_case("slice_negstart_step3", "slice", (4, 10), lambda x: x[:, -7:10:3],
          {"dim": -1, "start": -7, "stop": 10, "step": 3})
view_case("slice_clamped", "slice", (5, 4), lambda x: x[-3:100],
          {"dim": 0, "start": -3, "stop": 100, "step": 1})
view_case("slice_negstop", "slice", (3, 9), lambda x: x[:, 0:-1:2],
          {"dim": 1, "start": 0, "stop": -1, "step": 2})
view_case("slice_mid_3d", "slice", (2, 6, 3), lambda x: x[:, 1:5],
          {"dim": 1, "start": 1, "stop": 5, "step": 1})
view_case("slice_nc_t", "slice", (6, 5), lambda x: x[:, 1:6:2],
          {"dim": 1, "start": 1, "stop": 6, "step": 2}, "t")
view_case("slice_nc_s", "slice", (4, 6), lambda x: x[::3],
          {"dim": 0, "start": 0, "stop": 4, "step": 3}, "s")
view_case("expand_3x1_3x4", "expand", (3, 1), lambda x: x.expand(3, 4),
          {"shape": (3, 4)})
view_case("expand_new_dims", "expand", (4,), lambda x: x.expand(2, 3, 4),
          {"shape": (2, 3, 4)})
view_case("expand_keep", "expand", (3, 1), lambda x: x.expand(-1, 5),
          {"shape": (-1, 5)})
view_case("expand_0d", "expand", (), lambda x: x.expand(2, 3), {"shape": (2, 3)})
view_case("expand_nc_t", "expand", (1, 4, 1), lambda x: x.expand(2, 4, 3),
          {"shape": (2, 4, 3)}, "t")
view_case("squeeze_1", "squeeze", (3, 1, 4), lambda x: x.squeeze(1), {"dim": 1})
view_case("squeeze_neg", "squeeze", (3, 1, 4), lambda x: x.squeeze(-2), {"dim": -2})
view_case("squeeze_to_0d", "squeeze", (1,), lambda x: x.squeeze(0), {"dim": 0})
view_case("squeeze_nc_t", "squeeze", (3, 1), lambda x: x.squeeze(1), {"dim": 1}, "t")
view_case("unsqueeze_0", "unsqueeze", (3, 4), lambda x: x.unsqueeze(0), {"dim": 0})
view_case("unsqueeze_2", "unsqueeze", (3, 4), lambda x: x.unsqueeze(2), {"dim": 2})
view_case("unsqueeze_neg", "unsqueeze", (3, 4), lambda x: x.unsqueeze(-2), {"dim": -2})
view_case("unsqueeze_0d", "unsqueeze", (), lambda x: x.unsqueeze(0), {"dim": 0})
view_case("unsqueeze_nc_s", "unsqueeze", (3, 4), lambda x: x.unsqueeze(1),
          {"dim": 1}, "s")
view_case("contiguous_c", "contiguous", (3, 4), lambda x: x.contiguous(), {})
view_case("contiguous_nc_t", "contiguous", (4, 3), lambda x: x.contiguous(), {}, "t")
view_case("contiguous_nc_s", "contiguous", (2, 3, 4), lambda x: x.contiguous(), {}, "s")
view_case("to_dtype_f32", "to_dtype", (3, 4), lambda x: x.to(torch.float32),
          {"dtype": "f32"})
view_case("to_dtype_f64", "to_dtype", (3, 4), lambda x: x.to(torch.float64),
          {"dtype": "f64"})
view_case("to_dtype_f32_nc_t", "to_dtype", (4, 3), lambda x: x.to(torch.float32),
          {"dtype": "f32"}, "t")

# ---- a few compositions through several ops ----
case("chain_tanh_matmul_add", "chain_tanh_matmul_add",
     [(randn, (3, 4)), (randn, (4, 5)), (randn, (5,))],
     lambda a, b, c: torch.tanh(torch.matmul(a, b) + c))
case("chain_log_mean_pow", "chain_log_mean_pow", [(positive, (4, 6))],
     lambda x: torch.log(torch.pow(x, 2.0).mean(dim=1)) * x.sum())

ref.write()
