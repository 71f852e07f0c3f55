/* avx2_rows.h — what the AVX2 row-wise kernels share (avx2_rows.c: softmax,
 * log_softmax, cross entropy; avx2_norm.c: layer_norm): the masked-tail
 * loop macros, F32 row sums with bounded error and the vector row pieces;
 * the ISA-neutral row helpers (row offsets, thread chunk, SUMBLK, the
 * streaming-store rule) are ../rows_common.h's, shared with the AVX-512
 * twin. See the notes at the top of avx2_rows.c.
 * Internal to the AVX2 library (compiled with -mavx2 -mfma only).
 */
#ifndef NB_KERNELS_AVX2_ROWS_H
#define NB_KERNELS_AVX2_ROWS_H

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "../rows_common.h"
#include "kernels/kernels.h"
#include "vmath.h"

#define V1 _mm256_set1_ps

/* Runs the statements in ... for i = 0, 8, 16, ... < n: full vectors with
 * plain loads and stores, then one masked tail (AMD's masked store is
 * microcoded and slow, so it must not run in the body). Inside, LD(p) loads
 * 8 floats at p and ST(p, v) stores them. */
#define ROWS8(n, i, ...)                                                             \
    do {                                                                             \
        int64_t i = 0;                                                               \
        for (; i + 8 <= (n); i += 8) {                                               \
            const bool full_ = true;                                                 \
            const __m256i k_ = _mm256_set1_epi32(-1);                                \
            __VA_ARGS__                                                              \
        }                                                                            \
        if (i < (n)) {                                                               \
            const bool full_ = false;                                                \
            const __m256i k_ = nb__tail_mask((int)((n) - i));                        \
            __VA_ARGS__                                                              \
        }                                                                            \
    } while (0)
#define LD(p) (full_ ? _mm256_loadu_ps(p) : _mm256_maskload_ps((p), k_))
#define ST(p, v) (full_ ? _mm256_storeu_ps((p), (v)) : _mm256_maskstore_ps((p), k_, (v)))
#define TAILZERO(v) (full_ ? (v) : _mm256_and_ps((v), _mm256_castsi256_ps(k_)))   /* masked lanes to 0 */

/* ---- shared row pieces ---- */

/* Row sums in F32 (cvtps_pd would halve the throughput): four independent
 * accumulators of 8 lanes over 32 elements a step, emptied into a double
 * every SUMBLK elements, so each lane adds at most SUMBLK / 32 = 16 terms
 * before the block total (one F32 rounding) joins the double: the relative
 * error of a sum of like-signed terms stays below 18 * 2^-24 ~ 1.1e-6,
 * whatever the row length.
 * ROWSUM(n, F, res): res = sum over o = 0, 8, ... < n of the lanes of F(o),
 * an __m256 expression that may use LD/ST (masked in the tail, whose unused
 * lanes are zeroed after F). */
#define ROWSUM(n, F, res)                                                                  \
    do {                                                                                   \
        double s_ = 0;                                                                     \
        int64_t o_ = 0;                                                                    \
        {                                                                                  \
            const bool full_ = true;                                                       \
            const __m256i k_ = _mm256_set1_epi32(-1);                                      \
            (void)k_;                                                                      \
            while (o_ + 32 <= (n)) {                                                       \
                int64_t e_ = o_ + SUMBLK < (n) ? o_ + SUMBLK : (n);                        \
                __m256 a0_ = _mm256_setzero_ps(), a1_ = a0_, a2_ = a0_, a3_ = a0_;         \
                for (; o_ + 32 <= e_; o_ += 32) {                                          \
                    a0_ = _mm256_add_ps(a0_, F(o_));                                       \
                    a1_ = _mm256_add_ps(a1_, F(o_ + 8));                                   \
                    a2_ = _mm256_add_ps(a2_, F(o_ + 16));                                  \
                    a3_ = _mm256_add_ps(a3_, F(o_ + 24));                                  \
                }                                                                          \
                s_ += nb__hsum(_mm256_add_ps(_mm256_add_ps(a0_, a1_), _mm256_add_ps(a2_, a3_))); \
            }                                                                              \
            __m256 t_ = _mm256_setzero_ps();                                               \
            for (; o_ + 8 <= (n); o_ += 8) t_ = _mm256_add_ps(t_, F(o_));                  \
            s_ += nb__hsum(t_);                                                            \
        }                                                                                  \
        if (o_ < (n)) {                                                                    \
            const bool full_ = false;                                                      \
            const __m256i k_ = nb__tail_mask((int)((n) - o_));                             \
            s_ += nb__hsum(TAILZERO(F(o_)));                                               \
        }                                                                                  \
        (res) = s_;                                                                        \
    } while (0)

/* Max of p[0..n) ignoring NaN (as ref's fmax): -inf when nothing else. */
static inline float row_max(const float *p, int64_t n) {
    __m256 a0 = V1(-INFINITY), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {   /* max_ps(x, acc) returns acc when x is NaN */
        a0 = _mm256_max_ps(_mm256_loadu_ps(p + i), a0);
        a1 = _mm256_max_ps(_mm256_loadu_ps(p + i + 8), a1);
        a2 = _mm256_max_ps(_mm256_loadu_ps(p + i + 16), a2);
        a3 = _mm256_max_ps(_mm256_loadu_ps(p + i + 24), a3);
    }
    for (; i < n; i += 8) {
        __m256i k = nb__tail_mask((int)(n - i));
        __m256 x = _mm256_blendv_ps(V1(-INFINITY), _mm256_maskload_ps(p + i, k), _mm256_castsi256_ps(k));
        a0 = _mm256_max_ps(x, a0);
    }
    return nb__hmax(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));   /* no NaN lanes left */
}

/* e^x for x <= 0 (x - the row max), cheaper than nb__v_exp: the same
 * reduction and polynomial, 2^n put into the exponent bits in one step.
 * Exact where e^x is a normal float; x < -86.5 gives 0 (ref: a denormal
 * below 2.6e-38, far inside the tolerance); NaN stays NaN. */
static inline __m256 exp_le0(__m256 x) {
    __m256 tiny = _mm256_cmp_ps(x, V1(-86.5f), _CMP_LT_OQ);
    x = _mm256_max_ps(V1(-86.5f), x);   /* NaN x: x */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, V1(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, V1(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, V1(-2.12194440055e-4f), r);
    __m256 q = V1(1.392617612e-03f);
    q = _mm256_fmadd_ps(q, r, V1(8.363173075e-03f));
    q = _mm256_fmadd_ps(q, r, V1(4.166655466e-02f));
    q = _mm256_fmadd_ps(q, r, V1(1.666657703e-01f));
    q = _mm256_fmadd_ps(q, r, V1(5.000000000e-01f));
    __m256 p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r), V1(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_andnot_ps(tiny, _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e)));
}

/* e^(x[o..o+8) - m), also stored to e[o..] when e is not NULL. */
static inline __m256 exp_at(const float *x, float *e, const float *pf, int64_t o, __m256 mv, bool full_,
                            __m256i k_) {
    if (pf) _mm_prefetch((const char *)(pf + o), _MM_HINT_T1);
    __m256 v = exp_le0(_mm256_sub_ps(LD(x + o), mv));   /* <= 0 (masked tail lanes: zeroed after) */
    if (e) ST(e + o, v);
    return v;
}

/* sum of e^(p[i] - m) (F32 blocks, see ROWSUM); e^(p[i] - m) stored to e
 * when e is not NULL; pf[0..n) prefetched to L2 along the way when pf is
 * not NULL (spread over the exp work: a burst of 64 prefetches stalls on
 * the miss buffers). */
static inline double row_sumexp(const float *p, int64_t n, float m, float *e, const float *pf) {
    __m256 mv = V1(m);
    double s;
#define F_(o) exp_at(p, e, pf, (o), mv, full_, k_)
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

/* sum of p[0..n) (F32 blocks). */
static inline double sum_span(const float *p, int64_t n) {
    double s;
#define F_(o) LD(p + (o))
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

static inline __m256 sq_dev(__m256 x, __m256 m) {
    __m256 d = _mm256_sub_ps(x, m);
    return _mm256_mul_ps(d, d);
}

/* 8 floats at p + o (LD), prefetching pf + o to L2 when pf is not NULL. */
static inline __m256 ld_pf(const float *p, const float *pf, int64_t o, bool full_, __m256i k_) {
    if (pf) _mm_prefetch((const char *)(pf + o), _MM_HINT_T1);
    return LD(p + o);
}

/* sum of (p[i] - mean)^2 (F32 blocks, deviations from the F32 mean);
 * pf[0..n) prefetched to L2 along the way when not NULL. */
static inline double ss_span(const float *p, int64_t n, float mean, const float *pf) {
    __m256 m = V1(mean);
    double s;
#define F_(o) sq_dev(ld_pf(p, pf, (o), full_, k_), m)
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

/* sum of a[i] * b[i] (b NULL: sum of a) in double, for cross entropy,
 * whose label-smoothing term lse W - sum(w x) cancels. */
static inline double dot_span_d(const float *a, const float *b, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 va = _mm256_loadu_ps(a + i), vb = b ? _mm256_loadu_ps(b + i) : V1(1.0f);
        a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(va)), _mm256_cvtps_pd(_mm256_castps256_ps128(vb)), a0);
        a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(va, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1)),
                             a1);
    }
    a0 = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a0), _mm256_extractf128_pd(a0, 1));
    double s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < n; i++) s += (double)a[i] * (b ? b[i] : 1.0f);
    return s;
}

/* sum of a[i] * b[i] (F32 blocks; b NULL: sum of a). */
static inline double dot_span(const float *a, const float *b, int64_t n) {
    if (!b) return sum_span(a, n);
    double s;
#define F_(o) _mm256_mul_ps(LD(a + (o)), LD(b + (o)))
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

void nb__avx2_norm_register(void);   /* avx2_norm.c */

#endif
