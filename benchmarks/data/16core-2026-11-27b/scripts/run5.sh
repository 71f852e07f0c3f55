#!/bin/bash
# device run 4: GEMM with M cut in equal blocks (NB_GEMM_MCBAL) at 1/16 threads; reductions at 16 threads
cd "$(dirname "$0")/.."
chmod +x .dev/py .dev/benchmarks/*
[ -f .dev/lib/libdnnl.so.2 ] || python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.dev/lib/libdnnl.so.2.xz'),open('.dev/lib/libdnnl.so.2','wb'))"
export LD_LIBRARY_PATH=$PWD/.dev/lib
K=.dev/benchmarks/kernels
T0=$(date +%s)
{ echo "binaries from $(cat .dev/commit)"; cat /proc/loadavg; .dev/benchmarks/fma_peak | tail -1; } | tee $OUT/mcbal.txt
for rep in 1 2 3; do for B in 0 1; do echo "## NB_GEMM_MCBAL=$B rep $rep"; NB_GEMM_MCBAL=$B NB_NUM_THREADS=16 $K 10 matmul_1024 2>&1 | grep -E "paired|onednn_direct|probe"; done; done >> $OUT/mcbal.txt 2>&1
echo "== at $(( $(date +%s) - T0 )) s"
for rep in 1 2; do for B in 0 1; do echo "## 2048 NB_GEMM_MCBAL=$B rep $rep"; NB_GEMM_MCBAL=$B NB_NUM_THREADS=16 $K 4 matmul_2048 2>&1 | grep -E "threads=16.*(paired|onednn_direct)|probe wl=matmul_2048 threads=16"; done; done >> $OUT/mcbal.txt 2>&1
echo "== at $(( $(date +%s) - T0 )) s"
{ for T in 16 1; do for P in compact none; do echo "## ours T=$T NB_PIN=$P"; NB_PIN=$P NB_NUM_THREADS=$T .dev/benchmarks/red 256; NB_PIN=$P NB_NUM_THREADS=$T .dev/benchmarks/red 4096; done; .dev/py .dev/red_torch.py $T; done; } > $OUT/reduce16.txt 2>&1
echo "== at $(( $(date +%s) - T0 )) s"
cat $OUT/mcbal.txt $OUT/reduce16.txt
