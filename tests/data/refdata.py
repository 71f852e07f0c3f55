"""refdata.py — what the PyTorch reference-data generators share: the file
format, the formatting of tensors and arguments, the per-case seed, the case
writer and the header of the data file.

The generators (tests/data/gen_reference.py and gen_ref_*.py) import it; each
writes one committed data file (reference.txt, ref_*.txt) read by the C tests
through tu_ref_load() / tu_ref_load_all_from() in tests/common/testutil.c, so
the test suite never needs PyTorch. Rerun a generator (PyTorch >= 1.13) only
when its cases change, from the repository root:

    /usr/bin/python3 tests/data/gen_X.py

Every case is computed from deterministic inputs: RefFile.seed() calls
torch.manual_seed(base + case number) per case, so adding a case at the end
moves no other case's values. Inputs and W are rounded with short() to a few
significant digits (exact doubles with short reprs, which keeps the files
small; the references are computed from the rounded values).

What each case checks: out = OP(inputs..., args), and the gradient of the
scalar loss

    L = (out * W).sum()

with respect to every input, where W is a fixed random tensor of out's shape
(stored, so the C side simply runs nb_backward(out, W)). An input that takes
no gradient gets a grad line of zeros; a case with no backward at all has a
W of zeros.

File format (one item per line, tokens separated by single spaces; '#' starts
a comment line; the file opens with two comment lines, the generator and
PyTorch version, then the number of cases):

    case NAME OP NIN          a case; OP is the nabla op (without nb_ prefix),
                              NIN the number of tensor inputs
    arg KEY V1 V2 ...         op arguments (integers, floats, or words; a
                              boolean is 1|0, a list its items in order), e.g.
                                dims D...  keepdim 0|1  shape D...  s X
                                dim0 D  dim1 D  dim D  start S stop S step S
                                dtype f32|f64
                              (each generator's docstring lists its own)
    in LAYOUT NDIM D0 .. : V  an input, values in logical C order; LAYOUT says
                              how the C side lays it out in memory:
                                c  contiguous
                                t  transposed storage: allocate the shape with
                                   the last two dims swapped, fill it with the
                                   transposed values, nb_transpose(-1,-2) back
                                   (needs NDIM >= 2)
                                s  strided: allocate [..., 2*D_last], put the
                                   values at even positions of the last dim,
                                   nb_slice(last, 0, 2*D_last, 2)
                                   (needs NDIM >= 1)
                              the C side then detaches it so it is a leaf
    w NDIM D0 .. : V          the weight W (out's shape)
    out NDIM D0 .. : V        the forward result
    grad NDIM D0 .. : V       dL/d(input i), one line per input, in order
    end

A 0-dim tensor is written with NDIM 0 and no sizes ("out 0 : 1.5"). Values are
Python's repr of the value as a double (shortest string that round-trips,
strtod-readable); integer and bool tensors are written the same way ("1.0")
unless the generator asks for integers (ints=True: "1").
"""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
LAYOUTS = ("c", "t", "s")


# ---- formatting ----
def fmt_vals(t, ints=False):
    """t's values in logical C order; integer/bool tensors as integers if ints."""
    vals = t.detach().reshape(-1).tolist()
    if ints and t.dtype in (torch.int64, torch.bool):
        return " ".join(str(int(v)) for v in vals)
    return " ".join(repr(float(v)) for v in vals)


def fmt_shape(t):
    """'NDIM D0 D1 ..'"""
    return " ".join([str(t.dim())] + [str(s) for s in t.shape])


def fmt_arg(v):
    """An arg value: bool as 1|0, float as repr, list/tuple item by item."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (list, tuple)):
        return " ".join(fmt_arg(e) for e in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def short(t, digits=7, dtype=None):
    """t rounded to `digits` significant digits: exact doubles with short
    reprs, which keeps the data file small; the references are computed from
    these values. The result has t's dtype unless dtype is given."""
    vals = [float("%.*g" % (digits, v)) for v in t.reshape(-1).tolist()]
    return torch.tensor(vals, dtype=t.dtype if dtype is None else dtype).reshape(t.shape)


# ---- input makers (called under a per-case seed) ----
def randn(shape):
    return torch.randn(shape, dtype=torch.float64)


def positive(shape):
    """Away from 0, for log, division and non-integer powers: [0.5, 2.5)."""
    return torch.rand(shape, dtype=torch.float64) * 2.0 + 0.5


def check_layouts(name, ins, layouts):
    for x, lay in zip(ins, layouts):
        assert lay in LAYOUTS, name
        assert lay != "t" or x.dim() >= 2, name
        assert lay != "s" or x.dim() >= 1, name


# ---- the data file ----
class RefFile:
    """The lines of one data file: RefFile("ref_x.txt", 1000, "nabla x
    reference data", __file__); seed() before each case's random draws,
    emit() per case, write() at the end."""

    def __init__(self, filename, seed_base, title, script):
        self.path = os.path.join(HERE, filename)
        self.seed_base = seed_base
        self.title = title
        self.script = os.path.basename(script)
        self.lines = []
        self.seeds = 0

    def seed(self):
        """torch.manual_seed(seed_base + number of this case)."""
        self.seeds += 1
        torch.manual_seed(self.seed_base + self.seeds)

    def emit(self, name, op, ins, layouts, args, w, out, grads, ints=False):
        """Append one case: ins with their layouts, args (a dict, written in
        order), W, out and one grad per input."""
        check_layouts(name, ins, layouts)
        lines = self.lines
        lines.append("case %s %s %d" % (name, op, len(ins)))
        for k, v in (args or {}).items():
            lines.append("arg %s %s" % (k, fmt_arg(v)))
        for x, lay in zip(ins, layouts):
            lines.append("in %s %s : %s" % (lay, fmt_shape(x), fmt_vals(x, ints)))
        lines.append("w %s : %s" % (fmt_shape(w), fmt_vals(w, ints)))
        lines.append("out %s : %s" % (fmt_shape(out), fmt_vals(out, ints)))
        for g in grads:
            lines.append("grad %s : %s" % (fmt_shape(g), fmt_vals(g, ints)))
        lines.append("end")

    def count(self):
        return sum(1 for ln in self.lines if ln.startswith("case "))

    def write(self):
        with open(self.path, "w") as f:
            f.write("# %s: generated by tests/data/%s with PyTorch %s; do not edit.\n"
                    % (self.title, self.script, torch.__version__))
            f.write("# %d cases\n" % self.count())
            f.write("\n".join(self.lines))
            f.write("\n")
        print("wrote %s: %d cases, %d bytes" % (self.path, self.count(), os.path.getsize(self.path)),
              file=sys.stderr)
