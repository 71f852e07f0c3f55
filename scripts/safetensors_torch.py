#!/usr/bin/python3
"""safetensors_torch.py — read and write safetensors files with PyTorch alone
(Debian's python3-torch; the `safetensors` package is not needed).

Used to show that checkpoints cross between nabla and PyTorch both ways:

    /usr/bin/python3 scripts/safetensors_torch.py show FILE
        loads FILE (e.g. written by nabla) into torch tensors and prints them
    /usr/bin/python3 scripts/safetensors_torch.py fixture OUT
        writes the fixture tests/io/test_safetensors.c reads (made by torch)

The format: u64 little-endian header size, JSON header {name: {dtype, shape,
data_offsets}}, data buffer. Only the dtypes nabla uses are mapped here.
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    buf = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(buf[b:e]), dtype=DTYPES[info["dtype"]]) if e > b else \
            torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out, header.get("__metadata__", {})


def save(tensors, path, metadata=None):
    header, chunks, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        raw = t.detach().contiguous().numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "show":
        tensors, meta = load(sys.argv[2])
        print("metadata:", meta)
        for k, v in tensors.items():
            print(k, tuple(v.shape), v.dtype)
            print(v)
    elif len(sys.argv) == 3 and sys.argv[1] == "fixture":
        torch.manual_seed(0)
        lin = torch.nn.Linear(3, 2)
        with torch.no_grad():
            lin.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4 - 0.5)
            lin.bias.copy_(torch.tensor([0.25, -1.5]))
        save({"fc.weight": lin.weight, "fc.bias": lin.bias,
              "steps": torch.tensor(7, dtype=torch.int64),
              "mask": torch.tensor([True, False, True]),
              "table": torch.arange(12, dtype=torch.float64).reshape(3, 4).t() * 0.5},
             sys.argv[2], metadata={"framework": "pytorch", "torch": torch.__version__})
        print("wrote", sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
