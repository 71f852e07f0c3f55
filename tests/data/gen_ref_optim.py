#!/usr/bin/python3
"""gen_ref_optim.py — PyTorch reference values for nabla's optimizers,
learning-rate schedules and gradient clipping.

Writes tests/data/ref_optim.txt, read by tests/optim/test_optim.c. Run with
Debian's PyTorch (the suite itself never needs it):

    /usr/bin/python3 tests/data/gen_ref_optim.py

Format (one item per line, space-separated):
    opt NAME KIND key value key value ...   an optimizer case (KIND: sgd adam adamw rmsprop)
    param N v...                            initial parameter (float32, flattened; shape [N])
    grad K v...                             the gradient given before step K (0..9)
    after K v...                            the parameter after step K
    end
    sched NAME KIND key value ...           a schedule case on an optimizer with lr 0.1
    lrs v...                                lr after 0, 1, ..., 24 scheduler steps
    clip NAME max_norm norm_type            a clipping case on two gradients
    g0 v... / g1 v...                       gradients before, then
    total v / c0 v... / c1 v...             norm returned and gradients after
"""
import math
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref_optim.txt")
lines = []


def fmt(t):
    return " ".join(repr(float(x)) for x in t.reshape(-1).tolist())


OPTS = [
    ("sgd_plain", "sgd", dict(lr=0.1)),
    ("sgd_momentum", "sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd_damp_wd", "sgd", dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=0.01)),
    ("sgd_nesterov", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001)),
    ("sgd_maximize", "sgd", dict(lr=0.02, momentum=0.5, maximize=True)),
    ("adam_default", "adam", dict()),
    ("adam_wd", "adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adam_amsgrad", "adam", dict(lr=0.01, amsgrad=True)),
    ("adamw_default", "adamw", dict(lr=0.01)),
    ("adamw_amsgrad", "adamw", dict(lr=0.003, weight_decay=0.2, amsgrad=True, maximize=True)),
    ("rmsprop_default", "rmsprop", dict(lr=0.01)),
    ("rmsprop_full", "rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05, momentum=0.7, centered=True)),
]
KIND = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop}

for ci, (name, kind, kw) in enumerate(OPTS):
    g = torch.Generator().manual_seed(100 + ci)
    p = torch.randn(37, generator=g, dtype=torch.float32).requires_grad_(True)
    flat = []
    for k, v in kw.items():
        if k == "betas":
            flat += ["beta1", repr(v[0]), "beta2", repr(v[1])]
        else:
            flat += [k, repr(float(v)) if not isinstance(v, bool) else str(int(v))]
    lines.append(f"opt {name} {kind} " + " ".join(flat))
    lines.append(f"param {p.numel()} {fmt(p.detach())}")
    opt = KIND[kind]([p], **kw)
    for step in range(10):
        grad = torch.randn(37, generator=g, dtype=torch.float32) * (0.5 + step)
        if step == 3:
            grad[5] = 0.0
        p.grad = grad.clone()
        lines.append(f"grad {step} {fmt(grad)}")
        opt.step()
        lines.append(f"after {step} {fmt(p.detach())}")
    lines.append("end")

SCHED = [
    ("step", "step", dict(step_size=3, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5)),
    ("multistep", "multistep", dict(m0=2, m1=5, m2=11, gamma=0.3),
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5, 11], 0.3)),
    ("exponential", "exponential", dict(gamma=0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
    ("cosine", "cosine", dict(t_max=10, eta_min=0.001),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, 0.001)),
    ("linear", "linear", dict(start=0.25, end=1.0, total=5),
     lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, 1.0, 5)),
    ("onecycle", "onecycle", dict(max_lr=1.0, total=26),
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=26, cycle_momentum=False)),
]
for name, kind, kw, make in SCHED:
    p = torch.zeros(1, requires_grad=True)
    o = torch.optim.SGD([p], lr=0.1)
    s = make(o)
    lrs = [o.param_groups[0]["lr"]]
    for _ in range(24):
        o.step()
        s.step()
        lrs.append(o.param_groups[0]["lr"])
    lines.append(f"sched {name} {kind} " + " ".join(f"{k} {v!r}" for k, v in kw.items()))
    lines.append("lrs " + " ".join(repr(float(x)) for x in lrs))
    lines.append("end")

for ci, (max_norm, norm_type) in enumerate([(1.0, 2.0), (0.5, 1.0), (0.3, math.inf), (100.0, 2.0)]):
    g = torch.Generator().manual_seed(500 + ci)
    a = torch.zeros(5, requires_grad=True)
    b = torch.zeros(3, 2, requires_grad=True)
    a.grad = torch.randn(5, generator=g)
    b.grad = torch.randn(3, 2, generator=g)
    lines.append(f"clip c{ci} {max_norm!r} {norm_type!r}")
    lines.append("g0 " + fmt(a.grad))
    lines.append("g1 " + fmt(b.grad))
    total = torch.nn.utils.clip_grad_norm_([a, b], max_norm, norm_type)
    lines.append(f"total {float(total)!r}")
    lines.append("c0 " + fmt(a.grad))
    lines.append("c1 " + fmt(b.grad))
    lines.append("end")

with open(OUT, "w") as f:
    f.write("# generated by tests/data/gen_ref_optim.py with torch " + torch.__version__ + "\n")
    f.write("\n".join(lines) + "\n")
print(f"wrote {OUT}")
