#!/usr/bin/python3
"""gen_ref_models.py — PyTorch reference values for whole small models.

Writes tests/data/ref_models.txt, read by tests/ops/test_models.c (suite
`models`). The data file is committed, so the test suite never needs
PyTorch; rerun this script (PyTorch >= 1.13) only when a model changes:

    /usr/bin/python3 tests/data/gen_ref_models.py

Two models, built from the same functional pieces the C test uses:

  mlp          x (16, 20) -> linear 20->32 -> relu -> linear 32->5
               -> cross_entropy (mean) against I64 targets (16)
  transformer  one pre-norm block: tokens I64 (2, 7) -> embedding (11, 16)
               + learned positional embedding (7, 16); then
               x = x + o(attn(q(ln1 x), k(ln1 x), v(ln1 x)))  2 heads of 8,
                   causal, softmax(q kᵀ / sqrt(8) + mask) v written out by
                   hand (PyTorch 1.13 has no F.scaled_dot_product_attention)
               x = x + fc2(gelu(fc1(ln2 x)))                  16->32->16, exact gelu
               logits = head(lnf x)                           16->11
               loss = cross_entropy(logits (14, 11), targets (14))

Parameters and inputs are drawn in float32 from fixed seeds (one seed per
model). The references (loss and d loss / d parameter) are computed in
float64 from those exact float32 values, so they are the true values that a
float32 run approximates; the script also runs the model in float32 PyTorch
and prints (and writes as comments) PyTorch's own float32 error against the
float64 reference, for comparison with nabla's.

File format (one item per line, tokens separated by single spaces; '#'
starts a comment line):

    model NAME                    a model; its items follow up to `end`
    input NAME NDIM D0 .. : V ..  a tensor that takes no gradient (the MLP's x,
                                  tokens, targets); integer-valued for I64
    param NAME NDIM D0 .. : V ..  a parameter (a leaf taking a gradient), in
                                  the order the C side builds the model
    loss V                        the loss (float64 reference)
    grad NAME NDIM D0 .. : V ..   d loss / d param NAME (float64 reference),
                                  one line per param, same order (a gradient
                                  that is zero in exact arithmetic, as k.bias's,
                                  is float64 rounding noise around 0, ~1e-18)
    end

A tensor's values are in C order. Inputs and parameters are written with
9 significant digits ("%.9g"), which round-trips a float32 exactly (strtod
then a cast to float gives back the drawn value); references with Python's
repr (round-trips a double).
"""

import math
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref_models.txt")
lines = []


def shape_str(t):
    return " ".join([str(t.dim())] + [str(s) for s in t.shape])


def f32_str(t):
    return " ".join("%.9g" % v for v in t.detach().to(torch.float32).reshape(-1).tolist())


def f64_str(t):
    return " ".join(repr(float(v)) for v in t.detach().to(torch.float64).reshape(-1).tolist())


def int_str(t):
    return " ".join(str(int(v)) for v in t.reshape(-1).tolist())


def rel_err(got, exp):
    """max|got-exp| / max|exp| over the tensor (the measure the C test uses)."""
    den = exp.abs().max().item()
    num = (got.double() - exp).abs().max().item()
    return num / den if den > 0 else num


def run(name, inputs, params, forward):
    """inputs: list of (name, tensor) (float32 or int64, no gradient);
    params: list of (name, float32 tensor); forward(inputs, params) -> loss."""
    # float64 reference from the exact float32 values
    ins64 = {n: (t.double() if t.is_floating_point() else t) for n, t in inputs}
    ps64 = {n: t.double().clone().requires_grad_(True) for n, t in params}
    loss64 = forward(ins64, ps64)
    g64 = torch.autograd.grad(loss64, [ps64[n] for n, _ in params])
    # PyTorch's own float32 run, for comparison
    ins32 = dict(inputs)
    ps32 = {n: t.clone().requires_grad_(True) for n, t in params}
    loss32 = forward(ins32, ps32)
    g32 = torch.autograd.grad(loss32, [ps32[n] for n, _ in params])

    lines.append("# %s: PyTorch float32 vs this float64 reference (max|got-exp|/max|exp|):" % name)
    lines.append("#   loss %.3g" % rel_err(loss32, loss64))
    worst = 0.0
    scale = max(b.abs().max().item() for b in g64)
    for (n, _), a, b in zip(params, g32, g64):
        if b.abs().max().item() <= 1e-12 * scale:
            # zero in exact arithmetic (k.bias: softmax ignores a shift shared
            # by a row of scores); rounding error measured against the
            # model's largest gradient
            e = a.double().abs().max().item() / scale
            lines.append("#   grad %-12s %.3g (exactly 0: max|got| / largest gradient)" % (n, e))
        else:
            e = rel_err(a, b)
            lines.append("#   grad %-12s %.3g" % (n, e))
        worst = max(worst, e)
    print("%s: loss %.8f, torch f32 loss rel err %.3g, worst torch f32 grad rel err %.3g"
          % (name, loss64.item(), rel_err(loss32, loss64), worst))

    lines.append("model %s" % name)
    for n, t in inputs:
        vals = f32_str(t) if t.is_floating_point() else int_str(t)
        lines.append("input %s %s : %s" % (n, shape_str(t), vals))
    for n, t in params:
        lines.append("param %s %s : %s" % (n, shape_str(t), f32_str(t)))
    lines.append("loss %r" % loss64.item())
    for (n, _), g in zip(params, g64):
        lines.append("grad %s %s : %s" % (n, shape_str(g), f64_str(g)))
    lines.append("end")


def uniform_init(gen, shape, fan_in):
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    b = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * b


# ---- two-layer MLP ----
def mlp():
    g = torch.Generator().manual_seed(20240601)
    x = torch.randn((16, 20), generator=g, dtype=torch.float32)
    y = torch.randint(0, 5, (16,), generator=g, dtype=torch.int64)
    params = [
        ("fc1.weight", uniform_init(g, (32, 20), 20)),
        ("fc1.bias", uniform_init(g, (32,), 20)),
        ("fc2.weight", uniform_init(g, (5, 32), 32)),
        ("fc2.bias", uniform_init(g, (5,), 32)),
    ]

    def forward(i, p):
        pre = F.linear(i["x"], p["fc1.weight"], p["fc1.bias"])
        # keep relu away from its kink so float32 and float64 take one branch
        assert pre.abs().min().item() > 1e-4
        h = torch.relu(pre)
        logits = F.linear(h, p["fc2.weight"], p["fc2.bias"])
        return F.cross_entropy(logits, i["y"])

    run("mlp", [("x", x), ("y", y)], params, forward)


# ---- one transformer block ----
B, T, V, D, H, FF = 2, 7, 11, 16, 2, 32
HD = D // H


def transformer():
    g = torch.Generator().manual_seed(20240602)
    tokens = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)

    def lin(name, n_out, n_in):
        return [(name + ".weight", uniform_init(g, (n_out, n_in), n_in)),
                (name + ".bias", uniform_init(g, (n_out,), n_in))]

    def ln(name):
        # not ones/zeros, so every term of the layer_norm gradient shows
        return [(name + ".weight", 1.0 + 0.2 * torch.randn((D,), generator=g, dtype=torch.float32)),
                (name + ".bias", 0.2 * torch.randn((D,), generator=g, dtype=torch.float32))]

    params = [("tok_emb", torch.randn((V, D), generator=g, dtype=torch.float32)),
              ("pos_emb", 0.5 * torch.randn((T, D), generator=g, dtype=torch.float32))]
    params += ln("ln1") + lin("q", D, D) + lin("k", D, D) + lin("v", D, D) + lin("o", D, D)
    params += ln("ln2") + lin("fc1", FF, D) + lin("fc2", D, FF)
    params += ln("lnf") + lin("head", V, D)

    def forward(i, p):
        def L(name, t):
            return F.linear(t, p[name + ".weight"], p[name + ".bias"])

        def LN(name, t):
            return F.layer_norm(t, (D,), p[name + ".weight"], p[name + ".bias"], eps=1e-5)

        def heads(t):   # (B, T, D) -> (B, H, T, HD)
            return t.reshape(B, T, H, HD).transpose(1, 2)

        x = F.embedding(i["tokens"], p["tok_emb"]) + p["pos_emb"]
        h = LN("ln1", x)
        q, k, v = heads(L("q", h)), heads(L("k", h)), heads(L("v", h))
        scores = q @ k.transpose(-2, -1) / math.sqrt(HD)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v                  # (B, H, T, HD)
        x = x + L("o", att.transpose(1, 2).reshape(B, T, D))
        x = x + L("fc2", F.gelu(L("fc1", LN("ln2", x))))          # exact gelu
        logits = L("head", LN("lnf", x))
        return F.cross_entropy(logits.reshape(B * T, V), i["targets"].reshape(B * T))

    run("transformer", [("tokens", tokens), ("targets", targets)], params, forward)


lines.append("# ref_models.txt — written by gen_ref_models.py (PyTorch %s); do not edit."
             % torch.__version__)
lines.append("# Format: see the docstring of gen_ref_models.py.")
mlp()
transformer()
with open(OUT, "w") as f:
    f.write("\n".join(lines) + "\n")
print("wrote %s (%d lines, %d bytes)" % (OUT, len(lines), os.path.getsize(OUT)))
