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
T0=$(date +%s)
{ nproc; lscpu | head -20; } > $OUT/machine.txt 2>&1
NO_BUILD=1 NO_README=1 SECTION_OUT=$OUT/scaling.md NB_PEER_PYTHON=$PWD/.dev/py timeout 200 scripts/bench-scaling.sh .dev ${ROUNDS:-10} 1,2,4,8,16 > $OUT/scaling_log.txt 2>&1
echo "scaling rc=$? at $(( $(date +%s) - T0 )) s"
echo "== A/B: NB_OMP_TEAM=0 (per-op teams, NB_POOL=threads above 8 as before) vs the default" | tee $OUT/ab.txt
for rep in 1 2; do for T in 4 8 16; do
  P=team; [ $T -gt 8 ] && P=threads
  run "T=$T before (team=0 pool=$P)" NB_NUM_THREADS=$T NB_OMP_TEAM=0 NB_POOL=$P NB_BACKWARD=parallel | tee -a $OUT/ab.txt
  run "T=$T now (default)" NB_NUM_THREADS=$T NB_BACKWARD=parallel | tee -a $OUT/ab.txt
done; done
echo "ab done at $(( $(date +%s) - T0 )) s"
NO_BUILD=1 NO_README=1 NB_PEER_PYTHON=$PWD/.dev/py timeout ${KERN_S:-90} scripts/bench-kernels.sh .dev 3 > $OUT/kernels_log.txt 2>&1
echo "kernels rc=$? at $(( $(date +%s) - T0 )) s"
cat $OUT/scaling.md
