#!/usr/bin/env bash
# run.sh — runs nabla's benchmarks and their PyTorch peers in the same run and
# prints the ratios PyTorch/nabla (above 1: nabla is faster).
#
# Usage: benchmarks/run.sh [builddir (default: build)] [reps (default: 2000)]
# Builds the benchmark in builddir first when it is not there. Both sides run
# on one thread (NB_NUM_THREADS=1, torch.set_num_threads(1)) unless
# NB_NUM_THREADS is set. The peer is skipped, with a message, when
# /usr/bin/python3 cannot import torch (Debian: apt-get install python3-torch).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
builddir="${1:-build}"
reps="${2:-2000}"
export NB_NUM_THREADS="${NB_NUM_THREADS:-1}"

if [ ! -f "$builddir/build.ninja" ]; then
    meson setup "$builddir"
fi
ninja -C "$builddir" benchmarks/op_overhead >/dev/null

# field LINE KEY: the value of KEY=... in a benchmark line.
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

ours="$("$builddir/benchmarks/op_overhead" "$reps")"
echo "$ours"

if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    echo "peer skipped: /usr/bin/python3 cannot import torch (apt-get install python3-torch)"
    exit 0
fi
peer="$(/usr/bin/python3 benchmarks/peer_op_overhead.py "$reps")"
echo "$peer"

for k in fwd_us_per_op fwd_bwd_us_per_op; do
    a="$(field "$peer" "$k")"
    b="$(field "$ours" "$k")"
    awk -v k="$k" -v a="$a" -v b="$b" \
        'BEGIN { printf "ratio op_overhead %s pytorch/nabla=%.2f\n", k, (b > 0 ? a / b : 0) }'
done
