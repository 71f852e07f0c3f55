/* fma_probe.h — how fast one CPU runs an FMA loop right now (GFLOP/s):
 * 12 independent FMA chains on full vectors (AVX-512 where the CPU has
 * it, else AVX2 + FMA), best of 3 passes of `iters` steps. A shared
 * machine's core that another tenant also runs reads low. Used by
 * benchmarks/fma_peak.c (each CPU, before and after the bench scripts) and
 * benchmarks/kernels.c (each CPU after every workload, so that the table
 * can mark rows measured while a core was slow).
 */
#ifndef NB_BENCH_FMA_PROBE_H
#define NB_BENCH_FMA_PROBE_H

#include <sched.h>
#include <time.h>

static inline double fma_probe_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define FMA_PROBE_CHAINS 12

/* FLOP/s of the chains on `lanes`-float vectors, best of 3 passes; the
 * lanes' sum goes to *sink so that the loop is kept. */
#define FMA_PROBE_LOOP(name, attr, vec, set1, fma, lanes, reduce)                   \
    __attribute__((target(attr))) static double name(long iters, float *sink) {     \
        vec a[FMA_PROBE_CHAINS], b = set1(1.0000001f), c = set1(1e-7f);             \
        for (int i = 0; i < FMA_PROBE_CHAINS; i++) a[i] = set1((float)i);           \
        double best = 0;                                                            \
        for (int r = 0; r < 3; r++) {                                               \
            double t0 = fma_probe_now_s();                                          \
            for (long k = 0; k < iters; k++)                                        \
                for (int i = 0; i < FMA_PROBE_CHAINS; i++) a[i] = fma(a[i], b, c);  \
            double t = fma_probe_now_s() - t0;                                      \
            double f = (double)iters * FMA_PROBE_CHAINS * 2 * (lanes) / t;          \
            if (f > best) best = f;                                                 \
        }                                                                           \
        float s = 0;                                                                \
        for (int i = 0; i < FMA_PROBE_CHAINS; i++) s += reduce(a[i]);               \
        *sink += s;                                                                 \
        return best;                                                                \
    }

__attribute__((target("avx2"))) static inline float fma_probe_sum8(__m256 v) {
    float f[8];
    _mm256_storeu_ps(f, v);
    return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}
FMA_PROBE_LOOP(fma_probe_512, "avx512f", __m512, _mm512_set1_ps, _mm512_fmadd_ps, 16, _mm512_reduce_add_ps)
FMA_PROBE_LOOP(fma_probe_256, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, 8, fma_probe_sum8)

/* This thread's CPU's rate in GFLOP/s (0 without AVX2 + FMA); *isa names
 * the loop. */
static inline double fma_probe(long iters, const char **isa, float *sink) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *isa = "avx512";
        return fma_probe_512(iters, sink) * 1e-9;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *isa = "avx2";
        return fma_probe_256(iters, sink) * 1e-9;
    }
    *isa = "none";
    return 0;
}
#else
static inline double fma_probe(long iters, const char **isa, float *sink) {
    (void)iters, (void)sink;
    *isa = "none";
    return 0;
}
#endif

/* Runs fma_probe pinned on each CPU of this thread's affinity mask in turn
 * (the mask restored after): the rates into gf[] (CPU numbers into cpu[],
 * at most max of them); returns how many, 0 when the mask cannot be read
 * or the CPU has no FMA loop to time. */
static inline int fma_probe_cpus(long iters, double *gf, int *cpu, int max, const char **isa, float *sink) {
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask)) return 0;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++) {
        if (!CPU_ISSET(c, &mask)) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        if (sched_setaffinity(0, sizeof one, &one)) continue;
        double f = fma_probe(iters, isa, sink);
        if (f <= 0) break;
        cpu[n] = c;
        gf[n++] = f;
    }
    (void)sched_setaffinity(0, sizeof mask, &mask);
    return n;
}

/* The slowest and fastest of n rates (both 0 when n is 0). */
static inline void fma_probe_range(const double *gf, int n, double *lo, double *hi) {
    *lo = *hi = 0;
    for (int i = 0; i < n; i++) {
        if (!i || gf[i] < *lo) *lo = gf[i];
        if (!i || gf[i] > *hi) *hi = gf[i];
    }
}

#endif
