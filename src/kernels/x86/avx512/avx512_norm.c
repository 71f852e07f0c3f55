/* avx512_norm.c — AVX-512 kernels of layer_norm (F32): the forward (which
 * also writes each row's mean and rstd when asked), the backward (from the
 * saved statistics, and the fused form giving dx, dweight and dbias in one
 * pass) and layer_norm_param_backward; of rms_norm, the same row code
 * without the mean (x̂ = x / sqrt(mean(x^2) + eps), dx = rstd (gw - x̂
 * mean(gw x̂))); and of group_norm, whose groups are contiguous slices
 * with a per-channel weight.
 *
 * 16-lane twins of ../avx2/avx2_norm.c (with avx2_rows.h's row sums), with
 * its arguments (ref_norm.c), served and declined layouts, threading
 * (nb__par_threads with the same grains, rows and fixed row blocks handed
 * out alike: all of that is ../norm_common.h, which both include) and
 * numerics. Every sum is taken in the AVX2 kernel's order:
 * a 16-lane accumulator is exactly two of its 8-lane ones side by side
 * (lane j of the zmm holds what lane j of its first ymm held, lane 8 + j
 * what lane j of its second held), the halves are added as it adds its
 * accumulators, then the same 8-lane horizontal sum; the remainder of a
 * row too short for a full 16- or 32-element step runs its 8-lane steps
 * and masked tail on ymm registers (AVX-512VL masks); the element-wise
 * parts are the same IEEE operations (the same fmadd/fnmadd, no others:
 * the library is built with -ffp-contract=off). So every output is
 * bitwise the AVX2 kernel's, at any thread count, and the AVX2 accuracy
 * carries over: against the ref kernels (double), per element |err| <=
 * rtol |ref| + atol max|ref of the row| with (rtol, atol) = (1e-5, 1e-5)
 * for the forwards and layer_norm's stats, (1e-5, 1e-4) for the
 * backwards and layer_norm_param_backward, max|ref| taken over a
 * normalized row (group_norm: a group's slice); tests/kernels/
 * test_avx512_norm.c asserts both the bitwise equality and these bounds.
 * Served: F32 x (and dy) contiguous over the normalized dims (any strides
 * over the batch dims), weight/bias contiguous, out as avx2's; group_norm:
 * x, dy, out wholly contiguous, weight/bias any strides. Declined
 * (NB_KERNEL_DECLINE, the AVX2 kernel or ref serves it): other dtypes,
 * strided or transposed normalized dims, a strided layer_norm weight,
 * empty rows, C % G != 0.
 * Big flat outputs (>= NT_MINTOTAL floats, rows of <= NT_MAXROW floats, a
 * multiple of 8, 32-byte aligned: the AVX2 rule) are written with
 * streaming stores (a masked plain head up to the 64-byte boundary when a
 * row starts 32 bytes off it) and the next row is prefetched. The
 * layer_norm and rms_norm forwards write such rows one row late when they
 * are a multiple of 16 floats and 64-byte aligned (norm_common.h's
 * LN_LATE, as avx2_norm.c's): a row's y is streamed inside the next row's
 * squared-deviation pass, 64 bytes (one whole line) per store; the values
 * are ln_row's.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "avx512_rows.h"
#include "../rows_common.h"   /* SUMBLK, the streaming rule, row_chunk, vec_row: the AVX2 rows' */
#include "kernels/kernels.h"
#include "nb_config.h"

#define W1 _mm512_set1_ps
#define Y1 _mm256_set1_ps

/* ---- the AVX2 kernels' sums on 16 lanes ---- */

/* nb__hsum of vmath.h: the 8 lanes pairwise (i and i+4, then i and i+2, ...). */
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The two 8-lane accumulators a zmm holds, added (AVX2's a0 + a1). */
static inline __m256 fold(__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

static inline __mmask8 mask8(int64_t n) { return (__mmask8)(n >= 8 ? 0xFFu : (1u << n) - 1u); }


/* avx2_rows.h's ROWSUM: res = the sum of F16(o)'s lanes over 32-element
 * steps (two zmm accumulators = AVX2's four ymm ones), emptied into a
 * double every SUMBLK elements; then the rest as AVX2 takes it: 8-element
 * steps into one ymm, its sum, and a masked tail of < 8 (lanes zeroed
 * after F8). F8(o, k) is the 8-lane form at o, loading lanes of mask k. */
#define ROWSUM16(n, F16, F8, res)                                                       \
    do {                                                                                \
        double s_ = 0;                                                                  \
        int64_t o_ = 0;                                                                 \
        while (o_ + 32 <= (n)) {                                                        \
            int64_t e_ = o_ + SUMBLK < (n) ? o_ + SUMBLK : (n);                         \
            __m512 a0_ = _mm512_setzero_ps(), a1_ = a0_;                                \
            for (; o_ + 32 <= e_; o_ += 32) {                                           \
                a0_ = _mm512_add_ps(a0_, F16(o_));                                      \
                a1_ = _mm512_add_ps(a1_, F16(o_ + 16));                                 \
            }                                                                           \
            s_ += hsum8(_mm256_add_ps(fold(a0_), fold(a1_)));                           \
        }                                                                               \
        __m256 t_ = _mm256_setzero_ps();                                                \
        for (; o_ + 8 <= (n); o_ += 8) t_ = _mm256_add_ps(t_, F8(o_, (__mmask8)0xFF));  \
        s_ += hsum8(t_);                                                                \
        if (o_ < (n)) {                                                                 \
            __mmask8 k8_ = mask8((n) - o_);                                             \
            s_ += hsum8(_mm256_maskz_mov_ps(k8_, F8(o_, k8_)));                         \
        }                                                                               \
        (res) = s_;                                                                     \
    } while (0)

/* sum of p[0..n) (avx2_rows.h's sum_span). */
static inline double sum_span(const float *p, int64_t n) {
    double s;
#define F16_(o) _mm512_loadu_ps(p + (o))
#define F8_(o, k) _mm256_maskz_loadu_ps((k), p + (o))
    ROWSUM16(n, F16_, F8_, s);
#undef F16_
#undef F8_
    return s;
}

static inline __m512 sq_dev16(const float *p, const float *pf, int64_t o, __m512 m) {
    if (pf) _mm_prefetch((const char *)(pf + o), _MM_HINT_T1);   /* a 64-byte line per step */
    __m512 d = _mm512_sub_ps(_mm512_loadu_ps(p + o), m);
    return _mm512_mul_ps(d, d);
}
static inline __m256 sq_dev8(const float *p, const float *pf, int64_t o, __mmask8 k, __m256 m) {
    if (pf) _mm_prefetch((const char *)(pf + o), _MM_HINT_T1);
    __m256 d = _mm256_sub_ps(_mm256_maskz_loadu_ps(k, p + o), m);
    return _mm256_mul_ps(d, d);
}

/* sum of (p[i] - mean)^2 (avx2_rows.h's ss_span); pf[0..n) prefetched to
 * L2 along the way when not NULL. */
static inline double ss_span(const float *p, int64_t n, float mean, const float *pf) {
    __m512 m = W1(mean);
    __m256 m8 = Y1(mean);
    double s;
#define F16_(o) sq_dev16(p, pf, (o), m)
#define F8_(o, k) sq_dev8(p, pf, (o), (k), m8)
    ROWSUM16(n, F16_, F8_, s);
#undef F16_
#undef F8_
    return s;
}

#define LN_LATE 16   /* forward rows written one row late (norm_common.h), 16 floats a step */
#include "kernels/x86/norm_common.h"

/* The pending row's y at o (16 floats, streamed). */
static inline void ln_late_at(const ln_late_row *p, int64_t o, __m512 mv, __m512 rv) {
    __m512 h = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(p->x + o), mv), rv);
    _mm512_stream_ps(p->y + o, _mm512_fmadd_ps(h, p->w ? _mm512_loadu_ps(p->w + o) : W1(1.0f),
                                                p->b ? _mm512_loadu_ps(p->b + o) : W1(0.0f)));
}

static void ln_late_stream(const ln_late_row *p) {
    __m512 mv = W1(p->mean), rv = W1(p->rstd);
    for (int64_t o = 0; o < p->n; o += 16) ln_late_at(p, o, mv, rv);
}

static inline __m512 ss_late16(const float *x, const float *pf, int64_t o, __m512 m, const ln_late_row *p, __m512 pm,
                               __m512 pr) {
    if (p) ln_late_at(p, o, pm, pr);
    return sq_dev16(x, pf, o, m);
}

/* ss_span, the pending row (if any; n % 16 == 0) streamed meanwhile. */
static double ss_span_late(const float *x, int64_t n, float mean, const float *pf) {
    const ln_late_row *p = ln_late.x ? &ln_late : NULL;
    __m512 m = W1(mean), pm = W1(ln_late.mean), pr = W1(ln_late.rstd);
    __m256 m8 = Y1(mean);
    double s;
#define F16_(o) ss_late16(x, pf, (o), m, p, pm, pr)
#define F8_(o, k) (p && (o) % 16 == 0 ? ln_late_at(p, (o), pm, pr) : (void)0, sq_dev8(x, pf, (o), (k), m8))
    ROWSUM16(n, F16_, F8_, s);
#undef F16_
#undef F8_
    ln_late.x = NULL;
    return s;
}

/* ---- layer_norm / rms_norm rows (see norm_common.h) ---- */

/* Writes a row of n floats of y, VAL (a 16-lane expression of j, full_ and
 * k_, as in ROWS16) at each y + j, with streaming stores (stream_ok holds):
 * a masked plain head of 8 when y is 32 bytes off a 64-byte boundary,
 * aligned streams, a masked plain tail; then the fence that orders them. */
#define STREAM_ROW(y, n, j, VAL)                                                        \
    do {                                                                                \
        int64_t j = 0;                                                                  \
        if ((uintptr_t)(y) & 63) {                                                      \
            const bool full_ = false;                                                   \
            const __mmask16 k_ = nb__tail_mask16((n) < 8 ? (int)(n) : 8);                \
            _mm512_mask_storeu_ps((y), k_, (VAL));                                      \
            j = 8;                                                                      \
        }                                                                               \
        for (; j + 16 <= (n); j += 16) {                                                \
            const bool full_ = true;                                                    \
            const __mmask16 k_ = 0xFFFF;                                                \
            _mm512_stream_ps((y) + j, (VAL));                                           \
        }                                                                               \
        if (j < (n)) {                                                                  \
            const bool full_ = false;                                                   \
            const __mmask16 k_ = nb__tail_mask16((int)((n) - j));                         \
            _mm512_mask_storeu_ps((y) + j, k_, (VAL));                                  \
        }                                                                               \
        _mm_sfence();                                                                   \
    } while (0)

/* y = x̂ w + b for 16 lanes at i. */
static inline __m512 ln_y_at(const float *x, const float *w, const float *b, int64_t i, __m512 mv, __m512 rv,
                             bool full_, __mmask16 k_) {
    __m512 h = _mm512_mul_ps(_mm512_sub_ps(LD(x + i), mv), rv);
    return _mm512_fmadd_ps(h, w ? LD(w + i) : W1(1.0f), b ? LD(b + i) : W1(0.0f));
}

/* y = x̂ w + b for one row. big: a big flat output (stream it when stream_ok). */
static void ln_row(const float *x, float *y, const float *w, const float *b, int64_t n, float mean, float rstd,
                   bool big) {
    __m512 mv = W1(mean), rv = W1(rstd);
    if (stream_ok(y, n, big)) {
        STREAM_ROW(y, n, i, ln_y_at(x, w, b, i, mv, rv, full_, k_));
        return;
    }
    ROWS16(n, i, { ST(y + i, ln_y_at(x, w, b, i, mv, rv, full_, k_)); });
}

/* One 16-lane step of dx (see ln_bw_row), adding into the dweight/dbias sums. */
static inline __m512 ln_dx_at(const float *dy, const float *x, const float *w, float *aw, float *ab, int64_t j,
                              __m512 mv, __m512 rv, __m512 a, __m512 bq, bool full_, __mmask16 k_) {
    __m512 g = LD(dy + j), gw = w ? _mm512_mul_ps(g, LD(w + j)) : g;
    __m512 h = _mm512_mul_ps(_mm512_sub_ps(LD(x + j), mv), rv);
    if (aw) {
        ST(aw + j, _mm512_fmadd_ps(g, h, LD(aw + j)));
        ST(ab + j, _mm512_add_ps(g, LD(ab + j)));
    }
    return _mm512_mul_ps(rv, _mm512_fnmadd_ps(h, bq, _mm512_sub_ps(gw, a)));
}

/* gw = dy w and x̂ on 8 lanes of mask k at o (the rest 0 in dy and x). */
static inline __m256 ln_gw8(const float *dy, const float *w, int64_t o, __mmask8 k) {
    __m256 g = _mm256_maskz_loadu_ps(k, dy + o);
    return w ? _mm256_mul_ps(g, _mm256_maskz_loadu_ps(k, w + o)) : g;
}

/* dx = rstd * (gw - mean(gw) - x̂ mean(gw x̂)), gw = dy * w, from the row's
 * moments (r->mean, r->rstd): both sums in one pass (F32, emptied into double
 * every SUMBLK elements; AVX2's two ymm accumulators per sum are one zmm
 * here, the last < 16 elements in its 8-lane steps), then dx and the acc
 * sums; the row stays in L1 throughout. */
static void ln_bw_row(const ln_bw *r) {
    const float *dy = r->dy, *x = r->x, *w = r->w;
    float *dx = r->dx, *aw = r->acc, *ab = r->acc ? r->acc + r->n : NULL;
    int64_t n = r->n;
    float mean = r->mean, rstd = r->rstd;
    __m512 mv = W1(mean), rv = W1(rstd);
    double sa = 0, sb = 0;
    int64_t i = 0;
    while (i + 16 <= n) {
        int64_t e = i + SUMBLK < n ? i + SUMBLK : n;
        __m512 av = _mm512_setzero_ps(), bv = av;
        for (; i + 16 <= e; i += 16) {
            __m512 g = _mm512_loadu_ps(dy + i);
            if (w) g = _mm512_mul_ps(g, _mm512_loadu_ps(w + i));
            __m512 h = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv), rv);
            av = _mm512_add_ps(av, g);
            bv = _mm512_fmadd_ps(g, h, bv);
        }
        sa += hsum8(fold(av));
        sb += hsum8(fold(bv));
    }
    __m256 m8 = Y1(mean), r8 = Y1(rstd);
    for (; i < n; i += 8) {   /* the last < 16 as AVX2's 8-lane steps: masked lanes load 0, so gw is 0 there */
        __mmask8 k = mask8(n - i);
        __m256 gw = ln_gw8(dy, w, i, k);
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskz_loadu_ps(k, x + i), m8), r8);
        sa += hsum8(gw);
        sb += hsum8(_mm256_mul_ps(gw, h));
    }
    __m512 a = W1(r->center ? (float)(sa / (double)n) : 0.0f), bq = W1((float)(sb / (double)n));
    if (stream_ok(dx, n, r->big)) {
        /* the next row to L2, a line of x and of dy per 16 floats of this one */
#define LN_DX_PF(j) (_mm_prefetch((const char *)(x + n + (j)), _MM_HINT_T1),    \
                     _mm_prefetch((const char *)(dy + n + (j)), _MM_HINT_T1),   \
                     ln_dx_at(dy, x, w, aw, ab, (j), mv, rv, a, bq, full_, k_))
        STREAM_ROW(dx, n, j, LN_DX_PF(j));
#undef LN_DX_PF
        return;
    }
    ROWS16(n, j, { ST(dx + j, ln_dx_at(dy, x, w, aw, ab, j, mv, rv, a, bq, full_, k_)); });
}

/* ---- layer_norm_param_backward (norm_common.h's lnp_run) ---- */
static void lnp_row(const float *xr, const float *gr, int64_t n, float mean, float rstd, float *aw, float *ab) {
    __m512 mv = W1(mean), rv = W1(rstd);
    ROWS16(n, i, {
        __m512 g = LD(gr + i);
        __m512 h = _mm512_mul_ps(_mm512_sub_ps(LD(xr + i), mv), rv);
        ST(aw + i, _mm512_fmadd_ps(g, h, LD(aw + i)));
        ST(ab + i, _mm512_add_ps(g, LD(ab + i)));
    });
}

/* ---- group_norm (norm_common.h's gn_run): per channel, the sums in
 * ROWSUM16's order into double ---- */

/* gw = dy w and gw x̂ of a channel, 16 and 8 lanes (ROWSUM16's F16, F8). */
static inline __m512 gn_gw16(const float *g, int64_t o, __m512 wv) { return _mm512_mul_ps(_mm512_loadu_ps(g + o), wv); }
static inline __m256 gn_gw8(const float *g, int64_t o, __mmask8 k, __m256 wv) {
    return _mm256_mul_ps(_mm256_maskz_loadu_ps(k, g + o), wv);
}
static inline __m512 gn_gwh16(const float *g, const float *x, int64_t o, __m512 wv, __m512 mv, __m512 rv) {
    return _mm512_mul_ps(gn_gw16(g, o, wv), _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + o), mv), rv));
}
static inline __m256 gn_gwh8(const float *g, const float *x, int64_t o, __mmask8 k, __m256 wv, __m256 mv, __m256 rv) {
    return _mm256_mul_ps(gn_gw8(g, o, k, wv), _mm256_mul_ps(_mm256_sub_ps(_mm256_maskz_loadu_ps(k, x + o), mv), rv));
}

/* One slice (a group of one sample): y, or dx from dy. */
static void gn_slice(const float *x, const float *dy, float *y, const float *w, const float *b, int64_t cpg, int64_t S,
                     float mean, float rstd) {
    int64_t len = cpg * S;
    __m512 mv = W1(mean), rv = W1(rstd);
    if (!dy) {
        for (int64_t c = 0; c < cpg; c++) {
            __m512 wv = W1(w[c]), bv = W1(b[c]);
            const float *xc = x + c * S;
            float *yc = y + c * S;
            ROWS16(S, i, { ST(yc + i, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(LD(xc + i), mv), rv), wv, bv)); });
        }
        return;
    }
    __m256 m8 = Y1(mean), r8 = Y1(rstd);
    double sa = 0, sb = 0;
    for (int64_t c = 0; c < cpg; c++) {   /* sum gw and gw x̂, per channel in F32 blocks, into double */
        const float *xc = x + c * S, *gc = dy + c * S;
        __m512 wv = W1(w[c]);
        __m256 w8 = Y1(w[c]);
        double ta, tb;
#define GA16(o) gn_gw16(gc, (o), wv)
#define GA8(o, k) gn_gw8(gc, (o), (k), w8)
#define GB16(o) gn_gwh16(gc, xc, (o), wv, mv, rv)
#define GB8(o, k) gn_gwh8(gc, xc, (o), (k), w8, m8, r8)
        ROWSUM16(S, GA16, GA8, ta);
        ROWSUM16(S, GB16, GB8, tb);
#undef GA16
#undef GA8
#undef GB16
#undef GB8
        sa += ta;
        sb += tb;
    }
    __m512 av = W1((float)(sa / (double)len)), bq = W1((float)(sb / (double)len));
    for (int64_t c = 0; c < cpg; c++) {
        const float *xc = x + c * S, *gc = dy + c * S;
        float *yc = y + c * S;
        __m512 wv = W1(w[c]);
        ROWS16(S, i, {
            __m512 gw = _mm512_mul_ps(LD(gc + i), wv);
            __m512 h = _mm512_mul_ps(_mm512_sub_ps(LD(xc + i), mv), rv);
            ST(yc + i, _mm512_mul_ps(rv, _mm512_fnmadd_ps(h, bq, _mm512_sub_ps(gw, av))));
        });
    }
}


/* Priorities by measurement (a scratch program timing each kernel against
 * its AVX2 twin in one process, alternating them through nb__isa_prefer,
 * medians of 31 calls, run twice; Xeon with AVX-512, 2 cores shared with
 * other builds): avx512 / avx2 time at 1 thread, [4096, 1024] F32 with
 * weight and bias (group_norm: [32, 64, 784], 8 groups):
 *   layer_norm forward with stats 0.984, 0.980    -> loses (< 3%: memory-bound)
 *   layer_norm_backward fused     0.840, 0.916    -> wins
 *     from saved stats 0.856, 0.938 (paired); recomputing 0.951, 0.905
 *   layer_norm_param_backward     0.890, 0.897    -> wins
 *   rms_norm forward              0.987, 1.052    -> loses
 *   rms_norm_backward             0.903, 0.863    -> wins
 *   group_norm forward            0.998, 1.065    -> loses
 *   group_norm_backward           0.945, 1.007    -> loses
 *   layer_norm fwd+bwd through autograd 0.936, 1.045 (paired 0.923, 1.015)
 * At 2 threads the shared cores make the times steps of ~4 ms (a thread
 * waiting for its time slice): forwards 1.00, 1.00; layer_norm_backward
 * fused 0.91, 0.90; param_backward 0.99, 0.89; rms_norm_backward 1.00,
 * 0.78.
 * The forwards were then written one row late here too (LN_LATE above:
 * 64-byte streaming stores, a whole line each, where AVX2's late rows
 * store 32-byte halves) and measured again the same way (medians of 31,
 * two runs, a 2-core Cascade Lake Xeon VM, 32 KiB L1d): avx512 / avx2 time
 *   layer_norm forward            1 thread 0.849, 0.854; 2 threads 0.891, 0.869
 *     with stats (autograd's)     0.842, 0.858;           0.887, 0.866
 *   rms_norm forward              0.814, 0.835;           0.829, 0.838
 *   layer_norm fwd+bwd, autograd  0.881, 0.883;           0.898, 0.881
 * so both forwards now rank above AVX2. Streaming the pending row inside
 * the next row's first (sum) pass instead, the one that reads from
 * memory, lost (one run): 1.01x AVX2's time at 1 thread and 0.93x at 2,
 * against 0.89x and 0.87x streamed in the second pass; AVX2's own late
 * rows moved the same way took 1.12-1.14x and 1.07x its time. */
#define PRIO_LN NB__PRIO_AVX512_WINS
#define PRIO_LN_BWD NB__PRIO_AVX512_WINS
#define PRIO_LNP NB__PRIO_AVX512_WINS
#define PRIO_RMS NB__PRIO_AVX512_WINS
#define PRIO_RMS_BWD NB__PRIO_AVX512_WINS
#define PRIO_GN NB__PRIO_AVX512_LOSES
#define PRIO_GN_BWD NB__PRIO_AVX512_LOSES

void nb__avx512_norm_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_LAYER_NORM, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_layer_norm", PRIO_LN, ln_forward},
        {NB_OP_LAYER_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_layer_norm_backward", PRIO_LN_BWD,
         ln_backward},
        {NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_layer_norm_param_backward", PRIO_LNP,
         lnp_run},
        {NB_OP_RMS_NORM, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_rms_norm", PRIO_RMS, rms_forward},
        {NB_OP_RMS_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_rms_norm_backward", PRIO_RMS_BWD,
         rms_backward},
        {NB_OP_GROUP_NORM, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_group_norm", PRIO_GN, gn_forward},
        {NB_OP_GROUP_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_group_norm_backward", PRIO_GN_BWD,
         gn_backward},
    };
    NB__REGISTER_ALL(ks);
}
