#!/bin/bash
cd "$(dirname "$0")/.."
chmod +x .dev/py .dev/benchmarks/*
[ -f .dev/lib/libdnnl.so.2 ] || python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.dev/lib/libdnnl.so.2.xz'),open('.dev/lib/libdnnl.so.2','wb'))"
export LD_LIBRARY_PATH=$PWD/.dev/lib
B=.dev/benchmarks/branches
summ() { .dev/py -c '
import sys, statistics as st
fb=[];bw=[]
for l in sys.stdin:
    if l.startswith("sample"):
        kv=dict(x.split("=") for x in l.split()[1:]); fb.append(float(kv["fb_ms"])); bw.append(float(kv["bwd_ms"]))
fw=[a-b for a,b in zip(fb,bw)]
print("fb %.2f fwd %.2f bwd %.2f (min fb %.2f) n=%d" % (st.median(fb), st.median(fw), st.median(bw), min(fb), len(fb)) if fb else "no samples")'; }
run() { local label="$1"; shift; printf "%-36s " "$label"; env "$@" $B --child ${IT:-40} 2>/dev/null | summ; }
for rep in 1 2 3; do
for T in ${TS:-1 2 4 8 16}; do for M in 0 1 3; do run "T=$T team=$M" NB_NUM_THREADS=$T NB_OMP_TEAM=$M NB_BACKWARD=parallel; done; done
run "T=16 team=3 serial" NB_NUM_THREADS=16 NB_OMP_TEAM=3 NB_BACKWARD=serial
run "T=16 team=0 serial" NB_NUM_THREADS=16 NB_OMP_TEAM=0 NB_BACKWARD=serial
done
for M in 0 3; do echo "== profile T=16 team=$M"; NB_OMP_TEAM=$M NB_PROFILE=table NB_NUM_THREADS=16 NB_BACKWARD=parallel $B --child 30 2>&1 | grep -v "^sample" | head -9; done
echo "== kernels at 16, team 0 vs 3"
for w in add layer_norm_fwd_bwd matmul_256; do for M in 0 3; do echo "team=$M"; NB_OMP_TEAM=$M timeout 60 .dev/benchmarks/kernels 3 $w 2>&1 | grep "^bench" | grep "threads=16" | grep -v "impl=ref"; done; done
