#!/bin/bash
# device run 3: conv1's weight gradient chunks at many threads
cd "$(dirname "$0")/.."
chmod +x .dev/py .dev/benchmarks/*
[ -f .dev/lib/libdnnl.so.2 ] || python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.dev/lib/libdnnl.so.2.xz'),open('.dev/lib/libdnnl.so.2','wb'))"
export LD_LIBRARY_PATH=$PWD/.dev/lib
K=.dev/benchmarks/kernels
T0=$(date +%s)
{ echo "binaries from $(cat .dev/commit)"; cat /proc/loadavg; .dev/benchmarks/fma_peak | tail -1;
for T in 1 4 8 16 16 8; do echo "T=$T $(NB_NUM_THREADS=$T .dev/benchmarks/cs_chunks)"; done; } 2>&1 | tee $OUT/cs_chunks.txt
echo "== at $(( $(date +%s) - T0 )) s"
for rep in 1 2; do for S in 16 32; do echo "## NB_CS_CHUNKS=$S rep $rep"; NB_CS_CHUNKS=$S NB_NUM_THREADS=16 $K 20 conv1 2>&1 | grep -E "paired|direct|probe"; done; done > $OUT/conv1_chunks.txt 2>&1
echo "== at $(( $(date +%s) - T0 )) s"
cat $OUT/conv1_chunks.txt
