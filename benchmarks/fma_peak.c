/* fma_peak.c — how fast each CPU of this process's affinity mask runs an
 * FMA loop right now: the machine's single-core peak, and a probe for a
 * shared machine whose cores are not all at full rate.
 *
 * Each CPU in turn: the thread pins itself there (sched_setaffinity) and
 * runs 12 independent FMA chains on full vectors (AVX-512 where the CPU has
 * it, else AVX2 + FMA), best of 3 passes of ~50 ms. Why: on the 2-vCPU VM the
 * benchmarks run on, one vCPU at times ran this loop at 107-137 GFLOP/s
 * against ~150 normally (its core shared with another tenant), and kernel
 * timings taken then ran 1.3-1.6x slower. The bench scripts run this before
 * and after their measurements and say in their tables when a CPU was slow.
 *
 * Output:
 *   probe cpu=0 isa=avx512 gflops=152.3
 *   probe_summary cpus=2 min_gflops=150.1 max_gflops=152.3 slow_cpus=0
 * (slow: under 0.9 of the fastest). Usage: fma_peak
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* sched_setaffinity, CPU_* */
#endif
#include <sched.h>
#include <stdio.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define CHAINS 12
#define ITERS 20000000L

/* FLOPs per second of CHAINS FMA chains on W-lane vectors, best of 3. The
 * sum of the lanes goes to *sink so that the loop is not dropped. */
#define FMA_LOOP(name, attr, vec, set1, fma, lanes, reduce)                  \
    __attribute__((target(attr))) static double name(float *sink) {          \
        vec a[CHAINS], b = set1(1.0000001f), c = set1(1e-7f);                \
        for (int i = 0; i < CHAINS; i++) a[i] = set1((float)i);              \
        double best = 0;                                                     \
        for (int r = 0; r < 3; r++) {                                        \
            double t0 = now_s();                                             \
            for (long k = 0; k < ITERS; k++)                                 \
                for (int i = 0; i < CHAINS; i++) a[i] = fma(a[i], b, c);     \
            double t = now_s() - t0;                                         \
            double f = (double)ITERS * CHAINS * 2 * (lanes) / t;             \
            if (f > best) best = f;                                          \
        }                                                                    \
        float s = 0;                                                         \
        for (int i = 0; i < CHAINS; i++) s += reduce(a[i]);                  \
        *sink += s;                                                          \
        return best;                                                         \
    }

static float sum8(__m256 v) __attribute__((target("avx2")));
static float sum8(__m256 v) {
    float f[8];
    _mm256_storeu_ps(f, v);
    return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}
FMA_LOOP(fma512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, 16, _mm512_reduce_add_ps)
FMA_LOOP(fma256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, 8, sum8)

static double probe(const char **isa, float *sink) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *isa = "avx512";
        return fma512(sink);
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *isa = "avx2";
        return fma256(sink);
    }
    *isa = "none";
    return 0;
}
#else
static double probe(const char **isa, float *sink) {
    (void)sink;
    *isa = "none";
    return 0;
}
#endif

int main(void) {
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask)) {
        perror("fma_peak: sched_getaffinity");
        return 1;
    }
    double gf[CPU_SETSIZE];
    int n = 0;
    float sink = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &mask)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        if (sched_setaffinity(0, sizeof one, &one)) continue;
        const char *isa;
        double f = probe(&isa, &sink);
        if (f <= 0) {
            printf("probe cpu=%d isa=%s gflops=0\n", c, isa);
            break;
        }
        gf[n++] = f * 1e-9;
        printf("probe cpu=%d isa=%s gflops=%.1f\n", c, isa, f * 1e-9);
    }
    (void)sched_setaffinity(0, sizeof mask, &mask);
    double lo = 0, hi = 0;
    int slow = 0;
    for (int i = 0; i < n; i++) {
        if (!i || gf[i] < lo) lo = gf[i];
        if (!i || gf[i] > hi) hi = gf[i];
    }
    for (int i = 0; i < n; i++) slow += gf[i] < 0.9 * hi;
    printf("probe_summary cpus=%d min_gflops=%.1f max_gflops=%.1f slow_cpus=%d\n", n, lo, hi, slow);
    return sink == 12345.0f;   /* never: keeps the chains' results live */
}
