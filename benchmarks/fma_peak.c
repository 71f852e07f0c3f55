/* fma_peak.c — how fast each CPU of this process's affinity mask runs an
 * FMA loop right now (fma_probe.h): the machine's single-core peak, and a
 * probe for a shared machine whose cores are not all at full rate.
 *
 * Each CPU in turn, pinned there, best of 3 passes of ~50 ms. Why: on the
 * 2-vCPU VM the benchmarks run on, one vCPU at times ran this loop at
 * 107-137 GFLOP/s against ~150 normally (its core shared with another
 * tenant), and kernel timings taken then ran 1.3-1.6x slower. The bench
 * scripts run this before and after their measurements and say in their
 * tables when a CPU was slow.
 *
 * Output:
 *   probe cpu=0 isa=avx512 gflops=152.3
 *   probe_summary cpus=2 min_gflops=150.1 max_gflops=152.3 slow_cpus=0
 * (slow: under 0.9 of the fastest). Usage: fma_peak
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* sched_setaffinity, CPU_* */
#endif
#include <stdio.h>

#include "fma_probe.h"

int main(void) {
    static double gf[CPU_SETSIZE];
    static int cpu[CPU_SETSIZE];
    const char *isa = "none";
    float sink = 0;
    int n = fma_probe_cpus(20000000L, gf, cpu, CPU_SETSIZE, &isa, &sink);
    double lo, hi;
    fma_probe_range(gf, n, &lo, &hi);
    for (int i = 0; i < n; i++) printf("probe cpu=%d isa=%s gflops=%.1f\n", cpu[i], isa, gf[i]);
    int slow = 0;
    for (int i = 0; i < n; i++) slow += gf[i] < 0.9 * hi;
    printf("probe_summary cpus=%d min_gflops=%.1f max_gflops=%.1f slow_cpus=%d\n", n, lo, hi, slow);
    return sink == 12345.0f;   /* never: keeps the chains' results live */
}
