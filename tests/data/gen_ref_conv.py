#!/usr/bin/python3
"""gen_ref_conv.py — PyTorch reference values for nabla's convolution,
pooling and interpolation ops.

Writes tests/data/ref_conv.txt, read by tests/ops/test_conv.c through
tu_ref_load_all_from("ref_conv.txt"). The file format (per case the op, its
arguments, the inputs with a memory layout c/t/s, a weight W of out's shape,
the forward result and the gradients of sum(out * W) with respect to every
input) is described in tests/data/refdata.py. Run it (PyTorch >= 1.13) only
when cases change:

    /usr/bin/python3 tests/data/gen_ref_conv.py

Ops and their arguments (pairs are (H, W); conv1d pairs have one entry):
    conv1d, conv2d, conv_transpose2d   inputs x, w[, b]
        stride, padding, dilation, groups, output_padding (transpose only)
    max_pool2d, avg_pool2d             input x
        kernel, stride (omitted: the kernel), padding, dilation (max),
        ceil_mode, exclude_pad (avg: count_include_pad=False), divisor (avg)
    max_pool2d_indices                 as max_pool2d; out is the argmax
        indices (as float64) and the grad line holds zeros
    adaptive_avg_pool2d                input x; size
    interpolate                        input x; size or scale, mode
        (nearest | bilinear | nearest_exact), align_corners, recompute
"""

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refdata import RefFile, short  # noqa: E402

torch.set_default_dtype(torch.float64)
ref = RefFile("ref_conv.txt", 5000, "nabla conv/pool/interpolate reference data", __file__)


def case(name, op, shapes, fn, args=None, layouts=None, indices=False):
    """shapes: the inputs' shapes (N(0,1) values); fn(*inputs) -> out."""
    ref.seed()
    ins = [short(torch.randn(s)) for s in shapes]
    layouts = layouts or ["c"] * len(ins)
    leaves = [x.clone().requires_grad_(True) for x in ins]
    out = fn(*leaves)
    if indices:
        out = out.double()
        grads = [torch.zeros_like(x) for x in ins]
    w = short(torch.randn(out.shape))
    if not indices:
        grads = torch.autograd.grad((out * w).sum(), leaves)
    ref.emit(name, op, ins, layouts, args, w, out, grads)


# ---- convolution ----
def conv_case(name, op, xs, ws, bias=True, layouts=None, **kw):
    f = {"conv1d": F.conv1d, "conv2d": F.conv2d, "conv_transpose2d": F.conv_transpose2d}[op]
    shapes = [xs, ws]
    cout = ws[1] * kw.get("groups", 1) if op == "conv_transpose2d" else ws[0]
    if bias:
        shapes.append((cout,))
    args = {k: v for k, v in kw.items()}
    case(name, op, shapes, lambda x, w, b=None: f(x, w, b, **kw), args=args, layouts=layouts)


conv_case("c2d_basic", "conv2d", (2, 3, 7, 7), (4, 3, 3, 3))
conv_case("c2d_stride2_pad1", "conv2d", (2, 3, 7, 7), (5, 3, 3, 3), stride=(2, 2), padding=(1, 1))
conv_case("c2d_dil2_pad2", "conv2d", (1, 3, 7, 7), (2, 3, 3, 3), dilation=(2, 2), padding=(2, 2), bias=False)
conv_case("c2d_groups3", "conv2d", (2, 3, 7, 7), (6, 1, 3, 3), groups=3, stride=(2, 1), padding=(1, 0))
conv_case("c2d_groups3_all", "conv2d", (2, 3, 7, 7), (3, 1, 3, 3), groups=3, stride=(2, 2),
          padding=(2, 2), dilation=(2, 2))
conv_case("c2d_groups2_c6", "conv2d", (1, 6, 5, 7), (4, 3, 2, 3), groups=2, padding=(1, 1))
conv_case("c2d_33x1", "conv2d", (2, 1, 33, 1), (3, 1, 5, 1), stride=(2, 1), padding=(2, 0))
conv_case("c2d_1ch_full", "conv2d", (1, 1, 7, 7), (1, 1, 7, 7))
conv_case("c2d_1x1", "conv2d", (2, 3, 7, 5), (4, 3, 1, 1))
conv_case("c2d_asym", "conv2d", (2, 3, 7, 9), (2, 3, 2, 3), stride=(2, 3), padding=(1, 1),
          dilation=(1, 2))
conv_case("c2d_unbatched", "conv2d", (3, 7, 7), (2, 3, 3, 3), bias=False, padding=(1, 1))
conv_case("c2d_nc_t", "conv2d", (2, 3, 7, 5), (4, 3, 3, 3), layouts=["t", "c", "c"], stride=(2, 2))
conv_case("c2d_nc_s", "conv2d", (1, 3, 5, 7), (2, 3, 3, 2), layouts=["s", "t", "s"], padding=(1, 1))
conv_case("c1d_basic", "conv1d", (2, 3, 33), (4, 3, 5), stride=(2,), padding=(2,))
conv_case("c1d_groups3_dil2", "conv1d", (2, 3, 7), (3, 1, 3), groups=3, dilation=(2,), padding=(1,))
conv_case("c1d_unbatched", "conv1d", (3, 33), (2, 3, 3), bias=False)
conv_case("c1d_len1", "conv1d", (2, 3, 1), (4, 3, 1))
conv_case("c1d_nc_s", "conv1d", (2, 3, 7), (2, 3, 3), layouts=["s", "c", "c"], stride=(2,))
conv_case("ct_basic", "conv_transpose2d", (2, 3, 5, 5), (3, 2, 3, 3))
conv_case("ct_stride2_pad1_op1", "conv_transpose2d", (1, 3, 4, 4), (3, 4, 3, 3), stride=(2, 2),
          padding=(1, 1), output_padding=(1, 1))
conv_case("ct_groups3_dil2", "conv_transpose2d", (2, 3, 5, 4), (3, 2, 3, 3), groups=3,
          dilation=(2, 2), stride=(2, 1))
conv_case("ct_op_lt_dil", "conv_transpose2d", (1, 2, 4, 3), (2, 2, 2, 2), dilation=(2, 2),
          output_padding=(1, 1))
conv_case("ct_unbatched", "conv_transpose2d", (3, 4, 5), (3, 1, 2, 3), bias=False, stride=(2, 3))
conv_case("ct_33x1", "conv_transpose2d", (1, 1, 33, 1), (1, 3, 3, 1), stride=(2, 1), padding=(1, 0))
conv_case("ct_nc_t", "conv_transpose2d", (2, 3, 4, 5), (3, 3, 3, 3), layouts=["t", "c", "c"],
          padding=(1, 1))


# ---- pooling ----
def pool_args(kernel, stride=None, padding=(0, 0), dilation=None, ceil_mode=False):
    a = {"kernel": kernel, "padding": padding}
    if stride is not None:
        a["stride"] = stride
    if dilation is not None:
        a["dilation"] = dilation
    a["ceil_mode"] = ceil_mode
    return a


def max_case(name, xs, layouts=None, **kw):
    a = pool_args(**kw)
    fkw = dict(kernel_size=kw["kernel"], stride=kw.get("stride"), padding=kw.get("padding", 0),
               dilation=kw.get("dilation", 1), ceil_mode=kw.get("ceil_mode", False))
    case(name, "max_pool2d", [xs], lambda x: F.max_pool2d(x, **fkw), args=a, layouts=layouts)


def avg_case(name, xs, layouts=None, exclude_pad=False, divisor=None, **kw):
    a = pool_args(**kw)
    a["exclude_pad"] = exclude_pad
    if divisor:
        a["divisor"] = divisor
    fkw = dict(kernel_size=kw["kernel"], stride=kw.get("stride"), padding=kw.get("padding", 0),
               ceil_mode=kw.get("ceil_mode", False), count_include_pad=not exclude_pad,
               divisor_override=divisor)
    case(name, "avg_pool2d", [xs], lambda x: F.avg_pool2d(x, **fkw), args=a, layouts=layouts)


max_case("mp_2x2", (2, 3, 7, 7), kernel=(2, 2))
max_case("mp_3x3_s2_p1", (2, 3, 7, 7), kernel=(3, 3), stride=(2, 2), padding=(1, 1))
max_case("mp_dil2", (1, 3, 7, 7), kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(2, 2))
max_case("mp_ceil", (1, 3, 7, 7), kernel=(2, 2), stride=(2, 2), ceil_mode=True)
max_case("mp_ceil_pad_33x1", (1, 1, 33, 1), kernel=(4, 1), stride=(3, 1), padding=(1, 0),
         ceil_mode=True)
max_case("mp_asym", (2, 1, 7, 9), kernel=(3, 2), stride=(1, 3), padding=(1, 1), dilation=(1, 2))
max_case("mp_unbatched", (3, 7, 7), kernel=(3, 3), stride=(2, 2))
max_case("mp_nc_t", (2, 3, 5, 7), kernel=(2, 3), stride=(1, 2), layouts=["t"])
max_case("mp_nc_s", (1, 3, 7, 5), kernel=(3, 3), stride=(2, 1), padding=(1, 1), layouts=["s"])
case("mp_indices", "max_pool2d_indices", [(2, 3, 7, 7)],
     lambda x: F.max_pool2d(x, 3, 2, 1, dilation=1, return_indices=True)[1],
     args=pool_args((3, 3), (2, 2), (1, 1)), indices=True)
case("mp_indices_unbatched_dil", "max_pool2d_indices", [(3, 7, 5)],
     lambda x: F.max_pool2d(x, (2, 2), (1, 2), (1, 0), dilation=(3, 1), return_indices=True)[1],
     args=pool_args((2, 2), (1, 2), (1, 0), (3, 1)), indices=True)

avg_case("ap_2x2", (2, 3, 7, 7), kernel=(2, 2))
avg_case("ap_3x3_s2_p1", (2, 3, 7, 7), kernel=(3, 3), stride=(2, 2), padding=(1, 1))
avg_case("ap_3x3_s2_p1_excl", (2, 3, 7, 7), kernel=(3, 3), stride=(2, 2), padding=(1, 1),
         exclude_pad=True)
avg_case("ap_ceil_pad", (1, 3, 7, 7), kernel=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True)
avg_case("ap_ceil_pad_excl", (1, 3, 8, 6), kernel=(3, 2), stride=(2, 2), padding=(1, 1),
         ceil_mode=True, exclude_pad=True)
avg_case("ap_divisor", (1, 2, 7, 7), kernel=(3, 3), stride=(2, 2), padding=(1, 1), divisor=5)
avg_case("ap_33x1", (2, 1, 33, 1), kernel=(5, 1), stride=(2, 1), padding=(2, 0))
avg_case("ap_unbatched", (3, 7, 7), kernel=(2, 3), stride=(2, 1))
avg_case("ap_nc_s", (2, 3, 7, 5), kernel=(3, 3), stride=(1, 1), padding=(1, 1), layouts=["s"])


def aap_case(name, xs, size, layouts=None):
    case(name, "adaptive_avg_pool2d", [xs], lambda x: F.adaptive_avg_pool2d(x, size),
         args={"size": size}, layouts=layouts)


aap_case("aap_7x7_3x3", (2, 3, 7, 7), (3, 3))
aap_case("aap_7x5_2x4", (1, 3, 7, 5), (2, 4))
aap_case("aap_1x1", (2, 3, 7, 7), (1, 1))
aap_case("aap_up_3x3_5x7", (1, 2, 3, 3), (5, 7))
aap_case("aap_33x1_5x1", (2, 1, 33, 1), (5, 1))
aap_case("aap_unbatched", (3, 7, 7), (4, 2))
aap_case("aap_nc_t", (2, 3, 5, 7), (3, 3), layouts=["t"])


# ---- interpolate ----
def interp_case(name, xs, mode, size=None, scale=None, align=None, recompute=None, layouts=None):
    args = {}
    if size is not None:
        args["size"] = size
    if scale is not None:
        args["scale"] = [float(s) for s in scale]
    args["mode"] = mode
    if align is not None:
        args["align_corners"] = align
    if recompute is not None:
        args["recompute"] = recompute
    tmode = mode.replace("_", "-")
    case(name, "interpolate", [xs],
         lambda x: F.interpolate(x, size=size, scale_factor=scale, mode=tmode, align_corners=align,
                                 recompute_scale_factor=recompute),
         args=args, layouts=layouts)


interp_case("in_nearest_size", (2, 3, 7, 7), "nearest", size=(11, 5))
interp_case("in_nearest_x2", (1, 3, 7, 5), "nearest", scale=(2.0, 2.0))
interp_case("in_nearest_scale", (1, 2, 7, 7), "nearest", scale=(1.7, 0.6))
interp_case("in_nearest_scale_same", (1, 1, 5, 7), "nearest", scale=(1.1, 1.0))
interp_case("in_nearest_recompute", (1, 2, 7, 7), "nearest", scale=(1.7, 0.6), recompute=True)
interp_case("in_nearest_exact_size", (2, 2, 7, 7), "nearest_exact", size=(10, 4))
interp_case("in_nearest_exact_scale", (1, 2, 7, 5), "nearest_exact", scale=(2.5, 1.5))
interp_case("in_bilinear_size", (2, 3, 7, 7), "bilinear", size=(11, 5))
interp_case("in_bilinear_size_ac", (2, 3, 7, 7), "bilinear", size=(11, 5), align=True)
interp_case("in_bilinear_x2", (1, 3, 7, 5), "bilinear", scale=(2.0, 2.0))
interp_case("in_bilinear_x2_ac", (1, 3, 7, 5), "bilinear", scale=(2.0, 2.0), align=True)
interp_case("in_bilinear_down", (1, 2, 7, 7), "bilinear", scale=(0.6, 0.45))
interp_case("in_bilinear_scale_rec", (1, 2, 7, 7), "bilinear", scale=(1.7, 2.3), recompute=True)
interp_case("in_bilinear_scale", (1, 2, 7, 7), "bilinear", scale=(1.7, 2.3))
interp_case("in_bilinear_to1_ac", (1, 2, 7, 5), "bilinear", size=(1, 3), align=True)
interp_case("in_bilinear_33x1", (2, 1, 33, 1), "bilinear", size=(66, 3))
interp_case("in_bilinear_nc_t", (2, 3, 5, 7), "bilinear", size=(9, 4), layouts=["t"])
interp_case("in_nearest_nc_s", (1, 3, 7, 5), "nearest", size=(3, 8), layouts=["s"])

ref.write()
