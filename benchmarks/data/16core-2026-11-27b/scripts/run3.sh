#!/bin/bash
# device run 2: conv1 and GEMM at many threads, A/B switches
cd "$(dirname "$0")/.."
chmod +x .dev/py .dev/benchmarks/*
[ -f .dev/lib/libdnnl.so.2 ] || python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.dev/lib/libdnnl.so.2.xz'),open('.dev/lib/libdnnl.so.2','wb'))"
export LD_LIBRARY_PATH=$PWD/.dev/lib
K=.dev/benchmarks/kernels
T0=$(date +%s)
el() { echo "== $* at $(( $(date +%s) - T0 )) s"; }
{ echo "binaries from $(cat .dev/commit)"; cat /proc/loadavg; .dev/benchmarks/fma_peak | tail -1;
for T in 1 2 4 8 16; do echo "T=$T $(NB_NUM_THREADS=$T .dev/benchmarks/cs_ab)"; done
for T in 16 8; do NB_NUM_THREADS=$T .dev/benchmarks/cs_ab | sed "s/^/again T=$T /"; done; } 2>&1 | tee $OUT/cs_fwd.txt
el cs_ab
for rep in 1 2; do for S in 0 1; do echo "## NB_CS_STREAM=$S rep $rep"; NB_CS_STREAM=$S NB_NUM_THREADS=16 $K 20 conv1 2>&1 | grep -E "paired|direct|probe"; done; done > $OUT/conv1.txt 2>&1
el conv1
NB_PROFILE=table NB_NUM_THREADS=16 $K 10 conv1 > $OUT/conv1_profile.txt 2>&1
el profile
for rep in 1 2; do for G in 1 0; do for T in 16 8; do echo "## NB_GEMM_GRID=$G T=$T rep $rep"; NB_GEMM_GRID=$G NB_NUM_THREADS=$T $K 10 matmul_1024 2>&1 | grep -E "threads=$T.*(paired|direct)|probe wl=matmul_1024 threads=$T"; done; done; done > $OUT/gemm_grid.txt 2>&1
el gemm
NB_NUM_THREADS=16 $K 6 matmul_2048 2>&1 | grep -E "paired|direct|probe" >> $OUT/gemm_grid.txt
el gemm2048
cat $OUT/conv1.txt $OUT/gemm_grid.txt; grep -E "conv|Self|total" $OUT/conv1_profile.txt | head -30
