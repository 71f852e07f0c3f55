#!/usr/bin/env bash
# bench-scaling.sh — the parallel backward's scaling table on a many-core
# machine: benchmarks/branches at each thread count T of a list (one process
# per T; each runs serial@1, parallel@1, serial@T, parallel@T and the other
# pool at T, interleaved round by round, so each row's ratios are same-run),
# benchmarks/chain at the largest T (the no-independent-nodes guard),
# benchmarks/schedsim (the prediction each row is set against) and the
# PyTorch peer at the same thread counts; prints a Markdown section and writes
# it into benchmarks/README.md as "Scaling on a many-core machine".
#
# Usage: scripts/bench-scaling.sh [builddir (build-release)] [rounds (5)] [threads (1,2,4,8,16)]
#   Thread counts above the cores in the affinity mask are dropped.
# Env: NO_BUILD=1 runs the binaries already in builddir (built here, carried
#   to a machine without the dev packages, with LD_LIBRARY_PATH set for
#   oneDNN and hwloc); NO_README=1 prints without writing; SECTION_OUT=FILE
#   also writes the section there; NB_PEER_PYTHON picks the peer's python.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=bench_common.sh
source scripts/bench_common.sh
builddir="${1:-build-release}"
rounds="${2:-5}"
list="${3:-1,2,4,8,16}"

bench_build "$builddir" benchmarks/branches benchmarks/chain benchmarks/schedsim

ncores="$(nproc)"
threads=()
for t in ${list//,/ }; do
    if [ "$t" -ge 1 ] && [ "$t" -le "$ncores" ]; then threads+=("$t"); fi
done
[ "${#threads[@]}" -gt 0 ] || { echo "no thread count of '$list' fits $ncores cores" >&2; exit 1; }
tmax="${threads[-1]}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
for t in "${threads[@]}"; do
    # T = 1 comes from every run's serial@1 / parallel@1 rows
    if [ "$t" -gt 1 ]; then
        echo "== branches at NB_NUM_THREADS=$t"
        NB_NUM_THREADS="$t" "$builddir/benchmarks/branches" 12 "$rounds" | tee "$tmp/branches_$t.txt"
    fi
done
if [ "$tmax" -eq 1 ]; then
    NB_NUM_THREADS=1 "$builddir/benchmarks/branches" 12 "$rounds" | tee "$tmp/branches_1.txt"
fi
echo "== chain at NB_NUM_THREADS=$tmax"
NB_NUM_THREADS="$tmax" "$builddir/benchmarks/chain" 15 "$rounds" | tee "$tmp/chain.txt"
overhead="$(sed -n 's/^overhead name=chain_small threads=[0-9]* forced_per_node_us=\(-\?[0-9.]*\)$/\1/p' "$tmp/chain.txt" | tail -1)"
overhead="$(awk -v o="${overhead:-2}" 'BEGIN { printf "%.2f", (o > 0 ? o : 0) }')"
NB_NUM_THREADS=1 "$builddir/benchmarks/schedsim" "$overhead" 15 | tee "$tmp/schedsim.txt"
bench_peer "$tmp/peer.txt" benchmarks/peer_branches.py 12 "$rounds" "$(IFS=,; echo "${threads[*]}")"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

write=1
if [ -n "${NO_README:-}" ]; then write=0; fi
python3 - "$tmp" "$rounds" "$load_before" "$load_after" "$tmax" "${threads[@]}" >"$tmp/section.md" <<'EOF'
import datetime, glob, os, platform, re, statistics, sys

tmp, rounds, load0, load1, tmax = sys.argv[1:6]
threads = [int(t) for t in sys.argv[6:]]

def parse(path):
    rows = []
    for line in open(path) if os.path.exists(path) else []:
        words = line.split()
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        kv["_kind"] = words[0] if words else ""
        kv["_label"] = next((w for w in words[1:] if "=" not in w), "")
        rows.append(kv)
    return rows

runs = {}   # T -> {(executor, threads): row}, checks
checks = []
for path in glob.glob(os.path.join(tmp, "branches_*.txt")):
    t = int(re.search(r"branches_(\d+)\.txt", path).group(1))
    rows = parse(path)
    runs[t] = {(r["executor"], r["threads"]): r for r in rows if r["_kind"] == "bench"}
    checks += [r for r in rows if r["_kind"] == "check"]
peer = {int(r["threads"]): r for r in parse(os.path.join(tmp, "peer.txt")) if r["_kind"] == "bench"}
sim = parse(os.path.join(tmp, "schedsim.txt"))
pred = {int(r["P"]): r for r in sim if r["_kind"] == "sim" and r["workload"] == "branches"}
graph = next((r for r in sim if r["_kind"] == "graph" and r["workload"] == "branches"), {})
chain = parse(os.path.join(tmp, "chain.txt"))

cpu = "?"
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
date = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")

def f(x, fmt="%.2f"):
    return fmt % x if isinstance(x, float) else (fmt % float(x) if x not in (None, "") else "–")

def val(r, k):
    return float(r[k]) if r and r.get(k) not in (None, "") else None

def ratio(a, b):
    return a / b if a and b else None

lines = ["| threads | nabla parallel@T fwd+bwd ms, median (min) | bwd ms | workers seen | "
         "parallel@T / serial@1, fwd+bwd (min) | bwd only | schedsim bwd prediction | "
         "parallel@T / serial@T | PyTorch@T ms | PyTorch@T / nabla parallel@T |",
         "|---|---|---|---|---|---|---|---|---|---|"]
for t in threads:
    if t == 1:
        # every run has serial@1 and parallel@1: the median over runs
        ps = [r[("parallel", "1")] for r in runs.values() if ("parallel", "1") in r]
        ss = [r[("serial", "1")] for r in runs.values() if ("serial", "1") in r]
        med = lambda rows, k: statistics.median(float(r[k]) for r in rows) if rows else None
        pa = {"median_ms": med(ps, "median_ms"), "min_ms": med(ps, "min_ms"),
              "bwd_median_ms": med(ps, "bwd_median_ms"), "workers_seen": "1"} if ps else None
        s1 = {"median_ms": med(ss, "median_ms"), "min_ms": med(ss, "min_ms"),
              "bwd_median_ms": med(ss, "bwd_median_ms")} if ss else None
        st = s1
    else:
        run = runs.get(t, {})
        pa, s1, st = run.get(("parallel", str(t))), run.get(("serial", "1")), run.get(("serial", str(t)))
    pt = peer.get(t)
    p = pred.get(t)
    sp, spm = ratio(val(s1, "median_ms"), val(pa, "median_ms")), ratio(val(s1, "min_ms"), val(pa, "min_ms"))
    lines.append(
        f"| {t} | {f(val(pa, 'median_ms'))} ({f(val(pa, 'min_ms'))}) | {f(val(pa, 'bwd_median_ms'))} | "
        f"{pa.get('workers_seen', '–') if pa else '–'} | {f(sp)} ({f(spm)}) | "
        f"{f(ratio(val(s1, 'bwd_median_ms'), val(pa, 'bwd_median_ms')))} | "
        f"{f(p['speedup']) if p else '–'} | {f(ratio(val(st, 'median_ms'), val(pa, 'median_ms')))} | "
        f"{f(val(pt, 'median_ms'))} | {f(ratio(val(pt, 'median_ms'), val(pa, 'median_ms')))} |")
table = "\n".join(lines)
torch_v = next((r.get("torch", "") for r in peer.values()), "")
bitwise = checks and all(r.get("parallel_vs_serial_grads") == "bitwise_equal" for r in checks)

cl = ["| workload | threads | serial ms | parallel ms | parallel/serial (median) | (min) |", "|---|---|---|---|---|---|"]
cb = {(r["name"], r["executor"], r["threads"]): r for r in chain if r["_kind"] == "bench"}
cr = {(r["name"], r["threads"], k): v for r in chain if r["_kind"] == "ratio" and r["_label"] == "parallel/serial"
      for k, v in r.items() if k in ("speedup", "speedup_min")}
for name in ("chain_mm", "chain_small"):
    for t in sorted({k[2] for k in cb if k[0] == name}, key=int):
        cl.append(f"| {name} | {t} | {f(cb.get((name, 'serial', t), {}).get('median_ms'))} | "
                  f"{f(cb.get((name, 'parallel', t), {}).get('median_ms'))} | "
                  f"{f(cr.get((name, t, 'speedup')), '%.3f')} | {f(cr.get((name, t, 'speedup_min')), '%.3f')} |")
chain_table = "\n".join(cl)

print(f"""## Scaling on a many-core machine

Regenerate with `scripts/bench-scaling.sh [builddir] [rounds] [threads]` on the machine to measure
(with `NO_BUILD=1` it runs binaries built elsewhere). Last run: {date} on {cpu}
({os.cpu_count()} CPUs visible, Linux {platform.release()}), {rounds} interleaved rounds per
configuration; load average {load0} before, {load1} after. Workload: `branches` (8 independent
branches of 4 × (matmul 64×256·256×256, tanh), forward + backward), as in the section above.
Each row T is one `branches` process at `NB_NUM_THREADS=T` (row 1: the median of every run's
serial@1 / parallel@1), so its ratios are same-run; the schedsim column is the simulator's
backward prediction at P = T from node costs measured at 1 thread ({graph.get('work_ms', '?')} ms of
work, critical path {graph.get('critical_ms', '?')} ms: no thread count beats {graph.get('bound', '?')}×).
The peer is PyTorch {torch_v or '(not run)'}, same workload, `torch.set_num_threads(T)`.
Gradients, parallel vs serial at each T: {"bitwise equal" if bitwise else "**DIFFER**" if checks else "not checked"}.

{table}

`chain` at {tmax} threads (no independent nodes; target parallel ≥ 0.97 × serial):

{chain_table}
""")
EOF
if [ -n "${SECTION_OUT:-}" ]; then cp "$tmp/section.md" "$SECTION_OUT"; fi
bench_write_section "Scaling on a many-core machine" "$tmp/section.md" benchmarks/README.md "$write"
