/* avx512_rows.c — AVX-512 kernels of the F32 row-wise ops: softmax,
 * log_softmax and their backwards, the fused cross entropy on class
 * indices and its backward, and NLL_LOSS_BACKWARD. They are 16-lane twins
 * of ../avx2/avx2_rows.c (whose notes on the method this file follows);
 * arguments are the ref kernels' (ref_softmax.c, ref_loss.c). The
 * ISA-neutral half (layout checks, row walks and thread splits, cross
 * entropy's per-row formulas, NLL_LOSS_BACKWARD's per-class terms) is
 * ../rows_driver.h's, shared with the twin; this file gives its vector
 * pieces.
 *
 * Layouts served, the twin's exactly (anything else returns
 * NB_KERNEL_DECLINE and the AVX2 kernel, or ref, serves it):
 *   softmax family: every operand F32 with stride 1 along the softmax dim
 *     (rows may start anywhere: other dims keep any strides);
 *   cross entropy:  logits (N, C) with stride 1 along C (and dx likewise),
 *     targets, per-sample gradients (stride 0 allowed) and the output 1-D of
 *     any stride, class weights absent or contiguous;
 *   nll_loss_bwd:   a contiguous (N, C) dx, 1-D targets and g of any
 *     stride, class weights absent or contiguous.
 *
 * Numerics, the twin's strategy on 16 lanes: each row's max is subtracted
 * before exp; e^(x - max) is exp_le0 (nb__w_exp's reduction and polynomial,
 * 2^n put into the exponent bits in one step: per lane, bitwise the twin's
 * exp_le0); row sums (of exp, of g*y, of g) are F32 in four independent
 * 16-lane accumulators emptied into a double every 512 elements (ROWSUM16:
 * each lane adds at most 8 terms, then 2 + 4 levels to join the lanes), so
 * the relative error of a sum of like-signed terms stays below ~1e-6 at any
 * row length, as the twin's. The sums add in another order than the twin's
 * 8-lane ones, so results are not bitwise the twin's: the per-element
 * formulas are the twin's (F32, as PyTorch's), the sums differ in their
 * last bits.
 * Cross entropy keeps double for its label-smoothing sums (lse W - sum(w x)
 * cancels). Rows whose max is +-inf (or only NaN / -inf) take ref's
 * formulas in double, so special values come out as ref's.
 * NLL_LOSS_BACKWARD is ref's double expression rounded once: bitwise ref's
 * (and the twin's). The bounds asserted against ref and against the twin
 * (tests/kernels/test_avx512_rows.c) are the twin's, per element
 * |err| <= rtol |ref| + atol * max |ref| of the row (of cross entropy's
 * losses: the batch), (rtol, atol):
 *   softmax 4e-6, 1e-6        log_softmax 2e-6, 1e-6
 *   softmax_bwd 1e-5, 1e-4    log_softmax_bwd 1e-5, 1e-5
 *   cross_entropy 1e-5, 1e-6  cross_entropy_bwd 1e-5, 1e-5
 *   nll_loss_bwd bitwise
 * and the same infinities and NaNs as ref. Where one class holds nearly
 * all of a row's mass, softmax_bwd's g - s and cross entropy's p - 1
 * cancel, and the F32 sum's rounding can exceed that bound (by up to ~9x
 * on some rows of 16 and 33); the twin's result there is the same (the
 * tests saw the same bits).
 *
 * Memory: softmax and softmax_bwd outputs of >= 1M floats are written with
 * streaming stores (whole rows <= 2048 floats, 32-byte aligned, n % 8 == 0:
 * the twin's rule; an 8-float head and tail of the row stream from ymm
 * where the row is not 64-byte aligned or n % 16 == 8), and the next row
 * of each input is prefetched to L2 while this one computes, one prefetch
 * per 64-byte line, spread over the row's in-cache pass, as the twin does.
 *
 * Threads: as the twin, rows in dynamic chunks of ~16K floats for the
 * softmax family, static over samples for the losses, with the twin's
 * nb__par_threads grains; each row is computed by one thread with the same
 * code, so results do not depend on the thread count or schedule.
 */
#define ROWS_LATE_FLUSH 1
#include "../rows_driver.h"
#include "kernels/kernels.h"
#include "avx512_rows.h"
#include "vmath512.h"

#include <math.h>
#include <stdint.h>

#define V16 _mm512_set1_ps

#define TAILZERO(v) (full_ ? (v) : _mm512_maskz_mov_ps(k_, (v)))   /* masked-off lanes to 0 */

/* Row sums in F32 (cvtps_pd would halve the throughput): four independent
 * 16-lane accumulators over 64 elements a step, emptied into a double
 * every SUMBLK elements, so each lane adds at most SUMBLK / 64 = 8 terms
 * before the block total (6 more F32 roundings joining the accumulators
 * and lanes) joins the double.
 * ROWSUM16(n, F, res): res = sum over o = 0, 16, ... < n of the lanes of
 * F(o), an __m512 expression that may use LD/ST (masked in the tail, whose
 * unused lanes are zeroed after F). */
#define ROWSUM16(n, F, res)                                                                      \
    do {                                                                                         \
        double s_ = 0;                                                                           \
        int64_t o_ = 0;                                                                          \
        {                                                                                        \
            const bool full_ = true;                                                             \
            const __mmask16 k_ = 0xFFFF;                                                         \
            (void)k_;                                                                            \
            while (o_ + 64 <= (n)) {                                                             \
                int64_t e_ = o_ + SUMBLK < (n) ? o_ + SUMBLK : (n);                              \
                __m512 a0_ = _mm512_setzero_ps(), a1_ = a0_, a2_ = a0_, a3_ = a0_;               \
                for (; o_ + 64 <= e_; o_ += 64) {                                                \
                    a0_ = _mm512_add_ps(a0_, F(o_));                                             \
                    a1_ = _mm512_add_ps(a1_, F(o_ + 16));                                        \
                    a2_ = _mm512_add_ps(a2_, F(o_ + 32));                                        \
                    a3_ = _mm512_add_ps(a3_, F(o_ + 48));                                        \
                }                                                                                \
                s_ += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0_, a1_), _mm512_add_ps(a2_, a3_))); \
            }                                                                                    \
            __m512 t_ = _mm512_setzero_ps();                                                     \
            for (; o_ + 16 <= (n); o_ += 16) t_ = _mm512_add_ps(t_, F(o_));                      \
            s_ += _mm512_reduce_add_ps(t_);                                                      \
        }                                                                                        \
        if (o_ < (n)) {                                                                          \
            const bool full_ = false;                                                            \
            const __mmask16 k_ = nb__tail_mask16((int)((n) - o_));                               \
            s_ += _mm512_reduce_add_ps(TAILZERO(F(o_)));                                         \
        }                                                                                        \
        (res) = s_;                                                                              \
    } while (0)

/* ---- shared row pieces ---- */

/* Max of p[0..n) ignoring NaN (as ref's fmax): -inf when nothing else. */
static inline float row_max(const float *p, int64_t n) {
    __m512 a0 = V16(-INFINITY), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {   /* max_ps(x, acc) returns acc when x is NaN */
        a0 = _mm512_max_ps(_mm512_loadu_ps(p + i), a0);
        a1 = _mm512_max_ps(_mm512_loadu_ps(p + i + 16), a1);
        a2 = _mm512_max_ps(_mm512_loadu_ps(p + i + 32), a2);
        a3 = _mm512_max_ps(_mm512_loadu_ps(p + i + 48), a3);
    }
    for (; i < n; i += 16)   /* masked-off lanes load -inf */
        a0 = _mm512_max_ps(_mm512_mask_loadu_ps(V16(-INFINITY), nb__tail_mask16((int)(n - i)), p + i), a0);
    return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)));   /* no NaN lanes */
}

/* e^x for x <= 0 (x - the row max): the twin's exp_le0 on 16 lanes, the
 * same operations in the same order (bitwise the same per lane). Exact
 * where e^x is a normal float; x < -86.5 gives 0 (ref: a denormal below
 * 2.6e-38, far inside the tolerance); NaN stays NaN. */
static inline __m512 exp_le0(__m512 x) {
    __mmask16 tiny = _mm512_cmp_ps_mask(x, V16(-86.5f), _CMP_LT_OQ);
    x = _mm512_max_ps(V16(-86.5f), x);   /* NaN x: x */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, V16(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, V16(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, V16(-2.12194440055e-4f), r);
    __m512 q = V16(1.392617612e-03f);
    q = _mm512_fmadd_ps(q, r, V16(8.363173075e-03f));
    q = _mm512_fmadd_ps(q, r, V16(4.166655466e-02f));
    q = _mm512_fmadd_ps(q, r, V16(1.666657703e-01f));
    q = _mm512_fmadd_ps(q, r, V16(5.000000000e-01f));
    __m512 p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(r, r), q, r), V16(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
    return _mm512_maskz_mov_ps((__mmask16)~tiny, _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e)));
}

/* e^(x[o..o+16) - m), also stored to e[o..] when e is not NULL; pf + o
 * prefetched to L2 when pf is not NULL (one 64-byte line a call). */
static inline __m512 exp_at(const float *x, float *e, const float *pf, int64_t o, __m512 mv, bool full_,
                            __mmask16 k_) {
    if (pf) _mm_prefetch((const char *)(pf + o), _MM_HINT_T1);
    __m512 v = exp_le0(_mm512_sub_ps(LD(x + o), mv));   /* <= 0 (masked tail lanes: zeroed after) */
    if (e) ST(e + o, v);
    return v;
}

/* sum of e^(p[i] - m) (F32 blocks, see ROWSUM16); e^(p[i] - m) stored to
 * e when e is not NULL; pf[0..n) prefetched to L2 along the way when pf is
 * not NULL (spread over the exp work: a burst at the row's start stalls on
 * the miss buffers). */
static inline double row_sumexp(const float *p, int64_t n, float m, float *e, const float *pf) {
    __m512 mv = V16(m);
    double s;
#define F_(o) exp_at(p, e, pf, (o), mv, full_, k_)
    ROWSUM16(n, F_, s);
#undef F_
    return s;
}

/* sum of a[i] * b[i] (F32 blocks; b NULL: sum of a). */
static inline double dot_span(const float *a, const float *b, int64_t n) {
    double s;
    if (!b) {
#define F_(o) LD(a + (o))
        ROWSUM16(n, F_, s);
#undef F_
        return s;
    }
#define F_(o) _mm512_mul_ps(LD(a + (o)), LD(b + (o)))
    ROWSUM16(n, F_, s);
#undef F_
    return s;
}

/* sum of a[i] * b[i] (b NULL: sum of a) in double, for cross entropy,
 * whose label-smoothing term lse W - sum(w x) cancels. */
static inline double dot_span_d(const float *a, const float *b, int64_t n) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = nb__tail_mask16((int)(n - i < 16 ? n - i : 16));
        __m512 va = _mm512_maskz_loadu_ps(k, a + i), vb = b ? _mm512_maskz_loadu_ps(k, b + i) : V16(1.0f);
        a0 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(va)), _mm512_cvtps_pd(_mm512_castps512_ps256(vb)), a0);
        a1 = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(va, 1)), _mm512_cvtps_pd(_mm512_extractf32x8_ps(vb, 1)),
                             a1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

/* ---- softmax / log_softmax: out = exp(x - lse) or x - lse; scalar[0] = dim ---- */

/* Streaming stores: rows_common.h's stream_ok (the twin's rule). */

/* Streams y[0..n) (y as stream_ok allows): 8 floats V8(i) from ymm up to
 * y's first 64-byte boundary, 16 floats V(i) from zmm from there, 8 from
 * ymm at the end; then the fence. V(i) (__m512) and V8(i) (__m256) are
 * expressions of the floats at i; nothing past the row is read. */
#define STREAM_ROW(y, n, V, V8)                                                              \
    do {                                                                                     \
        int64_t i_ = 0;                                                                      \
        if ((uintptr_t)(y) & 63) {                                                           \
            _mm256_stream_ps((y), V8(0));                                                    \
            i_ = 8;                                                                          \
        }                                                                                    \
        for (; i_ + 16 <= (n); i_ += 16) _mm512_stream_ps((y) + i_, V(i_));                  \
        if (i_ < (n)) _mm256_stream_ps((y) + i_, V8(i_));                                    \
        _mm_sfence();                                                                        \
    } while (0)

/* Softmax rows written one row late. A row's e^(x - m) is computed in an
 * L1 scratch row (its exp pass is compute-bound, ~20 cycles a vector), and
 * y = e / sum is streamed out afterwards; written right after, those
 * streaming stores only drain while the core waits (perf: a third of the
 * kernel's samples on the store loop), so the forward ran at 0.7 of the
 * copy bandwidth. Here the row's y is left pending in one of two
 * per-thread scratch rows and streamed 16 floats at a time inside the next
 * row's exp pass, so the stores drain under that compute. Same values
 * (the same e, the same 1 / sum, the same product), only written later:
 * rows_late_flush (called by each thread after its rows, rows_driver.h)
 * writes the last pending row and fences. Big outputs, rows of at most
 * NT_MAXROW floats, n % 16 == 0 and y 64-byte aligned; other rows take
 * softmax_row's direct path. The bookkeeping is rows_driver.h's; this
 * file's part: */

/* rows_driver.h's late_stream. */
static void late_stream(const float *e, float *y, float inv, int64_t n) {
    __m512 v = V16(inv);
    for (int64_t o = 0; o < n; o += 16) _mm512_stream_ps(y + o, _mm512_mul_ps(_mm512_load_ps(e + o), v));
}

static inline __m512 exp_late_at(const float *x, float *e, const float *pf, int64_t o, __m512 mv, const float *pe,
                                 float *py, __m512 pinv, bool full_, __mmask16 k_) {
    if (py) _mm512_stream_ps(py + o, _mm512_mul_ps(_mm512_load_ps(pe + o), pinv));
    return exp_at(x, e, pf, o, mv, full_, k_);
}

/* row_sumexp into e, the pending row (if any, of the same n floats, n %
 * 16 == 0: no tail) written meanwhile. */
static double row_sumexp_late(const float *p, int64_t n, float m, float *e, const float *pf) {
    __m512 mv = V16(m), pinv = V16(late.inv);
    const float *pe = late.e;
    float *py = pe ? late.y : NULL;
    double s;
#define F_(o) exp_late_at(p, e, pf, (o), mv, pe, py, pinv, full_, k_)
    ROWSUM16(n, F_, s);
#undef F_
    late.e = NULL;
    return s;
}

static void softmax_row(const float *x, float *y, int64_t n, bool logs, bool big) {
    float m = row_max(x, n);
    const float *pf = big && n <= NT_MAXROW ? x + n : NULL;   /* the next row (flat layout) to L2 meanwhile */
    if (softmax_row_special(x, y, n, m, logs)) return;
    __m512 mv = V16(m);
    if (!logs && big && n <= NT_MAXROW && n % 16 == 0 && ((uintptr_t)y & 63) == 0) {
        softmax_row_late(x, y, n, m, pf);
        return;
    }
    if (!logs) {
        /* e^(x - m) into an L1 scratch row, then y written once with
         * streaming stores (no read of y's lines for ownership) */
        float buf[NT_MAXROW] __attribute__((aligned(64)));
        bool nt = stream_ok(y, n, big);
        float *e = nt ? buf : y;
        __m512 inv = V16((float)(1.0 / row_sumexp(x, n, m, e, pf)));
        if (nt) {
#define V_(i) _mm512_mul_ps(_mm512_loadu_ps(e + (i)), inv)
#define V8_(i) _mm256_mul_ps(_mm256_loadu_ps(e + (i)), _mm512_castps512_ps256(inv))
            STREAM_ROW(y, n, V_, V8_);
#undef V_
#undef V8_
            return;
        }
        ROWS16(n, j, ST(y + j, _mm512_mul_ps(LD(y + j), inv)););
        return;
    }
    __m512 ls = V16((float)log(row_sumexp(x, n, m, NULL, pf)));
    ROWS16(n, j, ST(y + j, _mm512_sub_ps(_mm512_sub_ps(LD(x + j), mv), ls)););
}

/* ---- backwards (rows_driver.h) ---- */
static void softmax_bw_row(const float *g, const float *y, float *dx, int64_t n, bool logs, bool big) {
    double s = dot_span(g, logs ? NULL : y, n);
    __m512 sv = V16((float)s);
    if (logs) {
        ROWS16(n, j, ST(dx + j, _mm512_fnmadd_ps(nb__w_exp(LD(y + j)), sv, LD(g + j))););
        return;
    }
    /* y (g - s) in F32, as PyTorch: g - s cancels where y peaks, leaving an
     * error of about eps (|g| + |s|) y there */
    if (stream_ok(dx, n, big)) {
        /* the next row of g and y to L2, one line each per 16 floats of this one */
#define V_(i) (_mm_prefetch((const char *)(g + n + (i)), _MM_HINT_T1),                              \
               _mm_prefetch((const char *)(y + n + (i)), _MM_HINT_T1),                              \
               _mm512_mul_ps(_mm512_loadu_ps(y + (i)), _mm512_sub_ps(_mm512_loadu_ps(g + (i)), sv)))
#define V8_(i) _mm256_mul_ps(_mm256_loadu_ps(y + (i)), _mm256_sub_ps(_mm256_loadu_ps(g + (i)), s8))
        __m256 s8 = _mm512_castps512_ps256(sv);
        STREAM_ROW(dx, n, V_, V8_);
#undef V_
#undef V8_
        return;
    }
    ROWS16(n, j, ST(dx + j, _mm512_mul_ps(LD(y + j), _mm512_sub_ps(LD(g + j), sv))););
}

/* ---- cross entropy's gradient row: dx_k = ga inv dx_k - gb w_k ---- */
static void ce_dx_row(float *dx, const float *w, int64_t C, float ga_, float inv_, float gb_, bool smooth) {
    __m512 ga = V16(ga_), gb = V16(gb_), inv = V16(inv_);
    ga = _mm512_mul_ps(ga, inv);
    ROWS16(C, j, {
        __m512 d = _mm512_mul_ps(ga, LD(dx + j));
        if (smooth) d = _mm512_fnmadd_ps(gb, w ? LD(w + j) : V16(1.0f), d);
        ST(dx + j, d);
    });
}

/* ---- NLL_LOSS_BACKWARD's row: o = gr dc, 8 doubles a vector, a masked
 * tail (no double read past dc's end; rows_driver.h aligns dc to 64 bytes,
 * so a zmm load of dc does not straddle two lines) ---- */
static void nll_row(float *o, const double *dc, int64_t C, double gr) {
    __m512d gd = _mm512_set1_pd(gr);
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
        _mm256_storeu_ps(o + c, _mm512_cvtpd_ps(_mm512_mul_pd(gd, _mm512_loadu_pd(dc + c))));
        _mm256_storeu_ps(o + c + 8, _mm512_cvtpd_ps(_mm512_mul_pd(gd, _mm512_loadu_pd(dc + c + 8))));
    }
    for (; c < C; c += 8) {
        __mmask8 k = (__mmask8)nb__tail_mask16((int)(C - c < 8 ? C - c : 8));
        _mm256_mask_storeu_ps(o + c, k, _mm512_cvtpd_ps(_mm512_mul_pd(gd, _mm512_maskz_loadu_pd(k, dc + c))));
    }
}

/* Priorities by measurement: /tmp scratch bench, one process, the avx512
 * and avx2 kernels alternated call by call (nb__isa_prefer), medians of 41
 * calls (nll_loss_bwd also 101 and 401), runs repeated 4-20 times, on this
 * 2-core AVX-512 Xeon (2.5 GHz) shared with other builds (load 4-9: the
 * spread is wide). avx512 / avx2 time, the range of the runs' medians
 * (their median):
 *   op (shape)                         1 thread            2 threads
 *   softmax [4096, 1024]               0.63-0.98 (~0.75)   0.75-0.99
 *   log_softmax [4096, 1024]           0.46-0.88 (~0.78)   0.89-1.00
 *   softmax_bwd [4096, 1024]           0.69-1.04 (~0.96)   0.95-1.02
 *   log_softmax_bwd [4096, 1024]       0.75-1.11 (~0.96)   0.85-1.14
 *   cross_entropy (4096, 1000)         0.50-0.90 (~0.86)   0.86-1.13
 *   cross_entropy_bwd (4096, 1000)     0.67-0.92 (~0.83)   0.83-0.98
 *   nll_loss_bwd (4096, 1000)          0.36-2.9 (~0.96)    (noise: 0.2-6.6)
 * WINS (>= 3% faster at 1 thread, run after run) for all but
 * nll_loss_bwd: its 16 MB of stores bound it, the quieter runs (0.73-1.37)
 * show no steady gain: LOSES. At 2 threads both cores are shared with
 * other work; the softmax family is memory bound there. */
#define REG(OP, NAME, PRIO, FN) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_" NAME, PRIO, FN}
#define WINS NB__PRIO_AVX512_WINS
#define LOSES NB__PRIO_AVX512_LOSES

void nb__avx512_rows_register(void) {
    static const nb_kernel_desc ks[] = {
        REG(SOFTMAX, "softmax", WINS, rows_softmax),
        REG(LOG_SOFTMAX, "log_softmax", WINS, rows_log_softmax),
        REG(SOFTMAX_BACKWARD, "softmax_bwd", WINS, rows_softmax_backward),
        REG(LOG_SOFTMAX_BACKWARD, "log_softmax_bwd", WINS, rows_log_softmax_backward),
        REG(CROSS_ENTROPY, "cross_entropy", WINS, rows_cross_entropy),
        REG(CROSS_ENTROPY_BACKWARD, "cross_entropy_bwd", WINS, rows_cross_entropy_backward),
        REG(NLL_LOSS_BACKWARD, "nll_loss_bwd", LOSES, rows_nll_loss_backward),
    };
    NB__REGISTER_ALL(ks);
}
