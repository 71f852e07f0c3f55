#!/usr/bin/env bash
# bench-kernels.sh — the kernel table in one command: builds nabla (release),
# runs benchmarks/kernels (every kernel variant, oneDNN called directly, the
# memcpy bandwidth) and benchmarks/kernels_peer.py (PyTorch) at 1 thread and
# all threads, prints a Markdown table of the rates and the same-run ratios,
# and writes it into the "Kernels" section of benchmarks/README.md with the
# date and the machine.
#
# Usage: scripts/bench-kernels.sh [builddir (default: build-release)] [reps (default: 10)]
# Env: ONLY=<substring> runs only the workloads whose name contains it (the
# README is then left alone); NO_README=1 prints without writing.
# The peer is skipped, with a note in the table, when /usr/bin/python3 cannot
# import torch (Debian: apt-get install python3-torch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=bench_common.sh
source scripts/bench_common.sh
builddir="${1:-build-release}"
reps="${2:-10}"
only="${ONLY:-}"

bench_build "$builddir" benchmarks/kernels benchmarks/fma_peak

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bench_probe "$builddir" "$tmp/probe0.txt"
"$builddir/benchmarks/kernels" "$reps" "$only" | tee "$tmp/ours.txt"
bench_peer "$tmp/peer.txt" benchmarks/kernels_peer.py "$reps" "$only"
bench_probe "$builddir" "$tmp/probe1.txt"
probe_text="$(bench_probe_text "$tmp/probe0.txt" "$tmp/probe1.txt")"
peak="$(bench_probe_peak "$tmp/probe0.txt" "$tmp/probe1.txt")"

write=1
if [ -n "$only" ] || [ -n "${NO_README:-}" ]; then write=0; fi
python3 - "$tmp/ours.txt" "$tmp/peer.txt" benchmarks/README.md "$write" "$reps" "$probe_text" "$peak" <<'EOF'
import datetime, os, platform, re, sys

ours_f, peer_f, readme, write, reps, probe_text, peak = sys.argv[1:8]
peak = float(peak)

probes = {}   # (wl, threads) -> the slowest CPU's FMA rate right after that row
def parse(path):
    rows, info = [], {}
    for line in open(path):
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        if line.startswith("bench "):
            rows.append(kv)
        elif line.startswith("info "):
            info = kv
        elif line.startswith("probe wl="):
            probes[(kv["wl"], kv["threads"])] = float(kv["min_gflops"])
    return rows, info

ours, info = parse(ours_f)
peer, _ = parse(peer_f)
best = info.get("best_isa", "avx2")
isas = [i for i in ("ref", "avx2", "avx512", "avx512k") if any(r["impl"] == i for r in ours)]
rate = {}    # (wl, threads, impl) -> (rate, kernel)
for r in ours + peer:
    rate[(r["wl"], r["threads"], r["impl"])] = (float(r["rate"]), r["kernel"])
order = []
for r in ours:
    if (r["wl"], r["threads"]) not in order:
        order.append((r["wl"], r["threads"]))
units = {r["wl"]: r["unit"] for r in ours}

def cell(key):
    v = rate.get(key)
    return "%.3g" % v[0] if v else "–"

def ratio(a, b):
    x, y = rate.get(a), rate.get(b)
    return "%.2f" % (x[0] / y[0]) if x and y and y[0] > 0 else "–"

k512 = "avx512k" in isas
head = ["workload", "thr", "unit"] + isas + (["avx512k/avx2"] if k512 else []) + ["oneDNN direct", "oneDNN plain", "memcpy", "PyTorch",
        "ours/PyTorch", "ours/oneDNN", "ours NHWC/oneDNN", "ours/copy", "ours/FMA peak", "ours = kernel"]
lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
# a row is flagged when a CPU read under 0.9 of the run's fastest probe right after it
ref_gf = max([peak] + list(probes.values()))
slow_rows = {key for key, v in probes.items() if ref_gf > 0 and v < 0.9 * ref_gf}
for wl, th in order:
    ours_k = (wl, th, best)
    elem = wl in ("add", "relu", "exp", "tanh", "sigmoid", "log", "dropout")
    mc = (wl, th, "memcpy")
    row = [wl + (" ‡" if (wl, th) in slow_rows else ""), th, units[wl]] + [cell((wl, th, i)) for i in isas]
    if k512:
        row.append(ratio((wl, th, "avx512k"), (wl, th, "avx2")))
    row += [cell((wl, th, "onednn_direct")), cell((wl, th, "onednn_plain")),
            cell(mc) if elem else "", cell((wl, th, "torch")),
            ratio(ours_k, (wl, th, "torch")),
            ratio((wl, th, "paired_direct") if (wl, th, "paired_direct") in rate else ours_k, (wl, th, "onednn_direct")),
            ratio((wl, th, "paired_direct_cl"), (wl, th, "onednn_direct_cl")),
            ratio((wl, th, "paired"), mc) if elem else "",
            "%.2f" % (rate[ours_k][0] / (peak * int(th))) if units[wl] == "GFLOP/s" and ours_k in rate and peak > 0 else "",
            rate.get(ours_k, (0, "?"))[1]]
    lines.append("| " + " | ".join(row) + " |")
table = "\n".join(lines)

probe_rows = (f"Each row is followed by a shorter probe of every CPU: {len(slow_rows)} of {len(probes)} rows "
              f"are marked ‡, a CPU having read under 0.9 of the run's fastest probe ({ref_gf:.0f} GFLOP/s) right "
              f"after them; their ratios are no check of the targets." if probes else "")
cpu = info.get("cpu", "?").replace("_", " ")
date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
torch_v = peer[0]["kernel"] if peer else "not installed"
section = f"""## Kernels

Regenerate with `scripts/bench-kernels.sh` (builds release, runs `benchmarks/kernels` and
`benchmarks/kernels_peer.py`, rewrites this section). Last run: {date} on {cpu}
({info.get('threads', '?')} threads, best ISA {best}, {platform.machine()}, Linux {platform.release()}),
PyTorch {torch_v.replace('torch-', '')}, {reps} reps (median); load average {os.getloadavg()[0]:.1f} when the run ended.
{probe_text} {probe_rows}

Rates: GB/s of logical traffic (add 3N floats, relu/exp/tanh/sigmoid/log/dropout/memcpy 2N,
softmax/log_softmax/layer_norm/batch_norm/gelu fwd+bwd 5N, sum/mean/max/argmax/var over a dim N,
cross_entropy fwd+bwd 2N, sgd_step 5N, adam_step 7N, max_pool (2x2, stride 2) fwd+bwd 2.5N (x, y, dy, dx);
N = 16M for element-wise, 1.6M for batch_norm (training, on (32, 64, 28, 28), no target in the issue)
and max_pool (64, 32, 28, 28), 4M otherwise) or GFLOP/s (bmm (32, 128, 128) @ (32, 128, 128);
linear_fwd_bwd: x (128, 784), w (512, 784), b (512), the 3 GEMMs of forward and backward). Columns `ref`/`avx2`/`avx512`: nabla with `NB_ISA` capped there (the kernel the registry
chose is named in the last column for the best cap, "ours"); `avx512k`: the AVX-512 kernels tried
first even where the registry ranks them below AVX2 (it does so where this column lost to `avx2`
when the ranks were set), and `avx512k/avx2` their rate ratio. `oneDNN direct`: the dnnl primitives
called directly in the same run (conv in oneDNN's blocked layouts, reorders outside the loop),
timed in alternation with ours (call by call) for `ours/oneDNN`;
`oneDNN plain`: the same conv on plain NCHW memory. `ours NHWC/oneDNN`: ours with the image and its
gradient channels-last (`nb_to_channels_last`, PyTorch's `torch.channels_last`), timed in alternation
with oneDNN direct. `memcpy`: the copy bandwidth (16M floats into a
warm buffer), timed in alternation with ours for `ours/copy`. `ours/FMA peak`: ours against the
fastest CPU's FMA-loop rate in the probes times the threads (1 = every FMA unit busy every cycle;
conv rates count a direct convolution's FLOPs, so a Winograd kernel, which does fewer, can pass 1).
Ratios are rate ratios measured in the same run (above 1: ours is faster). The machine is shared
and noisy: read ratios, repeat before trusting a single figure.

Targets (issue "Fast kernels"): add/relu/exp ≥ 0.85 of copy; softmax, layer_norm ≥ 1.5× PyTorch;
matmul ≥ 0.95 of oneDNN; conv fwd+bwd ≥ 0.90 of oneDNN direct.

{table}
"""
open(os.path.join(os.path.dirname(ours_f), "section.md"), "w").write(section)
EOF
bench_write_section "Kernels" "$tmp/section.md" benchmarks/README.md "$write"
