#!/bin/bash
# device run (session 13): scaling table, kernel table at 16 threads, GEMM rows at 10 reps
cd "$(dirname "$0")/.."
chmod +x .dev/py .dev/benchmarks/* scripts/bench-*.sh
[ -f .dev/lib/libdnnl.so.2 ] || python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.dev/lib/libdnnl.so.2.xz'),open('.dev/lib/libdnnl.so.2','wb'))"
export LD_LIBRARY_PATH=$PWD/.dev/lib
T0=$(date +%s)
{ echo "binaries from $(cat .dev/commit)"; nproc; lscpu; cat /proc/loadavg; .dev/py -c "import torch;print('torch', torch.__version__, torch.get_num_threads())"; } > $OUT/machine.txt 2>&1
head -20 $OUT/machine.txt
.dev/benchmarks/fma_peak | tail -2
NO_BUILD=1 NO_README=1 NB_PEER_PYTHON=$PWD/.dev/py timeout ${KERN_S:-200} scripts/bench-kernels.sh .dev ${KREPS:-5} > $OUT/kernels_log.txt 2>&1
echo "kernels rc=$? at $(( $(date +%s) - T0 )) s"
NO_BUILD=1 NO_README=1 SECTION_OUT=$OUT/scaling.md NB_PEER_PYTHON=$PWD/.dev/py timeout ${SCALE_S:-180} scripts/bench-scaling.sh .dev ${ROUNDS:-6} ${THREADS:-1,2,4,8,16} > $OUT/scaling_log.txt 2>&1
echo "scaling rc=$? at $(( $(date +%s) - T0 )) s"
left=$(( ${BUDGET:-470} - ($(date +%s) - T0) ))
if [ $left -gt 30 ]; then timeout $left .dev/benchmarks/kernels 10 matmul_ > $OUT/gemm.txt 2>&1; echo "gemm rc=$? at $(( $(date +%s) - T0 )) s"; fi
cat /proc/loadavg
grep -E "^\| (add|exp|softmax|layer_norm|matmul|conv)" $OUT/kernels_log.txt | cut -c1-400
cat $OUT/scaling.md 2>/dev/null | head -40
grep -E "matmul" $OUT/gemm.txt | grep -E "paired|direct|probe"
