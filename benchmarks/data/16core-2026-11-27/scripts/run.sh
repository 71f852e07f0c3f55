#!/bin/bash
# device run: the scaling table and the kernel table on the lent 16-core machine
cd "$(dirname "$0")/.."
chmod +x .dev/py .dev/benchmarks/* scripts/bench-*.sh
[ -f .dev/lib/libdnnl.so.2 ] || python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.dev/lib/libdnnl.so.2.xz'),open('.dev/lib/libdnnl.so.2','wb'))"
export LD_LIBRARY_PATH=$PWD/.dev/lib
T0=$(date +%s)
{ nproc; lscpu; grep -m1 flags /proc/cpuinfo; ldd .dev/benchmarks/branches; .dev/py -c "import torch;print('torch', torch.__version__, torch.get_num_threads())"; } > $OUT/machine.txt 2>&1
head -30 $OUT/machine.txt
NO_BUILD=1 NO_README=1 SECTION_OUT=$OUT/scaling.md NB_PEER_PYTHON=$PWD/.dev/py timeout ${SCALE_S:-300} scripts/bench-scaling.sh .dev ${ROUNDS:-10} ${THREADS:-1,2,4,8,16} > $OUT/scaling_log.txt 2>&1
echo "scaling rc=$? at $(( $(date +%s) - T0 )) s"
NO_BUILD=1 NO_README=1 NB_PEER_PYTHON=$PWD/.dev/py timeout ${KERN_S:-150} scripts/bench-kernels.sh .dev ${KREPS:-5} > $OUT/kernels_log.txt 2>&1
echo "kernels rc=$? at $(( $(date +%s) - T0 )) s"
cat $OUT/scaling.md 2>/dev/null || tail -40 $OUT/scaling_log.txt
grep -A40 "^| " $OUT/kernels_log.txt | tail -45
