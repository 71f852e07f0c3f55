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
run() { local label="$1"; shift; printf "%-44s " "$label"; env "$@" $B --child ${IT:-40} 2>/dev/null | summ; }
for rep in 1 2; do
for T in ${TS:-1 2 4 8 16}; do run "T=$T parallel" NB_NUM_THREADS=$T NB_BACKWARD=parallel; done
run "T=16 serial" NB_NUM_THREADS=16 NB_BACKWARD=serial
run "T=16 OMP_WAIT_POLICY=active" NB_NUM_THREADS=16 NB_BACKWARD=parallel OMP_WAIT_POLICY=active
run "T=16 OMP_WAIT_POLICY=passive" NB_NUM_THREADS=16 NB_BACKWARD=parallel OMP_WAIT_POLICY=passive
run "T=16 NB_PIN=none" NB_NUM_THREADS=16 NB_BACKWARD=parallel NB_PIN=none
run "T=16 NB_PIN=scatter" NB_NUM_THREADS=16 NB_BACKWARD=parallel NB_PIN=scatter
run "T=16 NB_POOL=team" NB_NUM_THREADS=16 NB_BACKWARD=parallel NB_POOL=team
run "T=4 OMP_WAIT_POLICY=active" NB_NUM_THREADS=4 NB_BACKWARD=parallel OMP_WAIT_POLICY=active
done
for T in 1 4 16; do
  echo "== profile T=$T"; NB_PROFILE=table NB_NUM_THREADS=$T NB_BACKWARD=parallel $B --child 30 2>&1 | grep -v "^sample" | head -16
done
echo "== profile T=16 active"; OMP_WAIT_POLICY=active NB_PROFILE=table NB_NUM_THREADS=16 NB_BACKWARD=parallel $B --child 30 2>&1 | grep -v "^sample" | head -12
echo "== kernels matmul_1024 / add / softmax at 16"
for w in matmul_1024 add softmax_fwd_bwd conv2_fwd_bwd; do timeout 60 .dev/benchmarks/kernels 3 $w 2>&1 | grep "^bench" | grep "threads=16\|thr=16" ; done
