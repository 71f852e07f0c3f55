/* avx2_rows.c — AVX2+FMA kernels of the F32 row-wise ops: softmax,
 * log_softmax and their backwards (variants of ref_softmax.c), the fused
 * cross entropy on class indices and its backward (ref_softmax.c). The
 * notes below also cover layer_norm, its backward and
 * layer_norm_param_backward (ref_norm.c), whose kernels are in avx2_norm.c;
 * what both files share is in avx2_rows.h. The ISA-neutral half (layout
 * checks, row walks and thread splits, cross entropy's per-row formulas,
 * NLL_LOSS_BACKWARD's per-class terms) is ../rows_driver.h's, shared with
 * the AVX-512 twin; this file gives its vector pieces. Arguments are the
 * ref kernels'.
 *
 * Layouts served (anything else declines to ref):
 *   softmax family: every operand has stride 1 along the softmax dim (rows
 *     may start anywhere: other dims keep any strides);
 *   cross entropy:  logits (N, C) with stride 1 along C (and dx likewise),
 *     targets, per-sample gradients (stride 0 allowed) and the output 1-D of
 *     any stride, class weights absent or contiguous;
 *   layer_norm:     x and out contiguous over the normalized last k dims,
 *     weight and bias absent or contiguous, saved stats F32 (R, 2)
 *     contiguous, a fused backward's out contiguous.
 *
 * Numerics: each row's max is subtracted before exp (as ref). Row sums (of
 * exp, of g*y, the moments and sums of layer_norm) are taken in F32 with
 * four independent 8-lane accumulators emptied into a double every 512
 * elements (ROWSUM), so each lane adds at most 16 terms: relative error
 * below ~1.2e-6 of sum |terms| at any row length, at full F32 speed. The
 * per-element formulas are F32, as PyTorch's (softmax_bwd's y (g - s)
 * cancels where y peaks). e^(x - max) is exp_le0, nb__v_exp's reduction and
 * polynomial with 2^n applied in one step: the same values where they are
 * normal floats, 0 where x - max < -86.5 (ref: denormals < 2.6e-38;
 * measured: softmax fwd 3.3 -> 2.85 ms for [4096, 1024], best of 80, 1
 * thread). Cross entropy keeps double for its label-smoothing sums
 * (lse W - sum(w x) cancels). Rows whose max is +-inf (or
 * only NaN / -inf) take ref's formulas in double, so special values come
 * out as ref's. The errors asserted per op are in tests/kernels/test_avx2_rows.c.
 *
 * Memory: softmax, softmax_bwd, layer_norm and layer_norm_bwd outputs of
 * >= 1M floats are written with streaming stores (whole rows <= 2048
 * floats, 32-byte aligned), and the next row of each input is prefetched
 * to L2 while this one computes, one prefetch per 8 floats spread over the
 * row's in-cache pass (exp, squared deviations, the output pass): a burst
 * of 64 prefetches at the row's start stalls on the miss buffers (measured
 * on [4096, 1024], 1 thread, medians of 100: softmax fwd 5.3 -> 4.7 ms,
 * softmax bwd 3.4 -> 2.7 ms, layer_norm bwd 4.9 -> 3.8 ms). The inputs are
 * read from DRAM once and the outputs are never read for ownership.
 *
 * Threads: rows are handed out in chunks of ~16K floats (dynamic: a thread
 * the OS preempts holds back its current chunk, not half the rows, which
 * matters on a shared machine) and each row is computed by one thread with
 * the same code, so results do not depend on the thread count or schedule.
 * Cross-row sums (layer_norm's dweight/dbias) go by fixed row blocks added
 * in block order.
 */
#include "avx2_rows.h"

#define ROWS_LATE_FLUSH 1
#include "../rows_driver.h"

/* ---- softmax / log_softmax: out = exp(x - lse) or x - lse ---- */

/* Streamed rows written one row late, inside the next row's exp pass, as
 * the AVX-512 twin does (avx512_rows.c, where the measurements are): big
 * outputs, rows of at most NT_MAXROW floats, n % 8 == 0, y 32-byte
 * aligned. rows_late_flush writes a thread's last pending row. */
/* rows_driver.h's late_stream. */
static void late_stream(const float *e, float *y, float inv, int64_t n) {
    __m256 v = V1(inv);
    for (int64_t o = 0; o < n; o += 8) _mm256_stream_ps(y + o, _mm256_mul_ps(_mm256_load_ps(e + o), v));
}

static inline __m256 exp_late_at(const float *x, float *e, const float *pf, int64_t o, __m256 mv, const float *pe,
                                 float *py, __m256 pinv, bool full_, __m256i k_) {
    if (py) _mm256_stream_ps(py + o, _mm256_mul_ps(_mm256_load_ps(pe + o), pinv));
    return exp_at(x, e, pf, o, mv, full_, k_);
}

/* row_sumexp into e, the pending row (if any, of the same n floats, n % 8
 * == 0: no tail) written meanwhile. */
static double row_sumexp_late(const float *p, int64_t n, float m, float *e, const float *pf) {
    __m256 mv = V1(m), pinv = V1(late.inv);
    const float *pe = late.e;
    float *py = pe ? late.y : NULL;
    double s;
#define F_(o) exp_late_at(p, e, pf, (o), mv, pe, py, pinv, full_, k_)
    ROWSUM(n, F_, s);
#undef F_
    late.e = NULL;
    return s;
}

static void softmax_row(const float *x, float *y, int64_t n, bool logs, bool big) {
    float m = row_max(x, n);
    const float *pf = big && n <= NT_MAXROW ? x + n : NULL;   /* the next row (flat layout) to L2 meanwhile */
    int64_t i;
    if (softmax_row_special(x, y, n, m, logs)) return;
    __m256 mv = V1(m);
    if (!logs && big && n <= NT_MAXROW && n % 8 == 0 && ((uintptr_t)y & 31) == 0) {
        softmax_row_late(x, y, n, m, pf);
        return;
    }
    if (!logs) {
        /* e^(x - m) into an L1 scratch row, then y written once with
         * streaming stores (no read of y's lines for ownership) */
        float buf[NT_MAXROW] __attribute__((aligned(32)));
        bool nt = stream_ok(y, n, big);
        float *e = nt ? buf : y;
        __m256 inv = V1((float)(1.0 / row_sumexp(x, n, m, e, pf)));
        if (nt) {
            for (i = 0; i < n; i += 8) _mm256_stream_ps(y + i, _mm256_mul_ps(_mm256_load_ps(e + i), inv));
            _mm_sfence();
            return;
        }
        for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
        for (; i < n; i++) y[i] *= _mm256_cvtss_f32(inv);
        return;
    }
    __m256 ls = V1((float)log(row_sumexp(x, n, m, NULL, pf)));
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), ls));
    for (; i < n; i++) y[i] = (x[i] - m) - _mm256_cvtss_f32(ls);
}

/* ---- backwards (rows_driver.h) ---- */
static void softmax_bw_row(const float *g, const float *y, float *dx, int64_t n, bool logs, bool big) {
    int64_t i;
    double s = dot_span(g, logs ? NULL : y, n);
    __m256 sv = V1((float)s);
    if (logs) {
        ROWS8(n, j, ST(dx + j, _mm256_fnmadd_ps(nb__v_exp(LD(y + j)), sv, LD(g + j))););
        return;
    }
    /* y (g - s) in F32, as PyTorch: g - s cancels where y peaks, leaving an
     * error of about eps (|g| + |s|) y there */
    if (stream_ok(dx, n, big)) {
        for (i = 0; i < n; i += 8) {
            _mm_prefetch((const char *)(g + n + i), _MM_HINT_T1);   /* the next row, spread over this one */
            _mm_prefetch((const char *)(y + n + i), _MM_HINT_T1);
            _mm256_stream_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), _mm256_sub_ps(_mm256_loadu_ps(g + i), sv)));
        }
        _mm_sfence();
        return;
    }
    for (i = 0; i + 16 <= n; i += 16) {
        __m256 y0 = _mm256_loadu_ps(y + i), y1 = _mm256_loadu_ps(y + i + 8);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(y0, _mm256_sub_ps(_mm256_loadu_ps(g + i), sv)));
        _mm256_storeu_ps(dx + i + 8, _mm256_mul_ps(y1, _mm256_sub_ps(_mm256_loadu_ps(g + i + 8), sv)));
    }
    for (; i < n; i++) dx[i] = y[i] * (g[i] - (float)s);
}

/* ---- cross entropy's gradient row: dx_k = ga inv dx_k - gb w_k ---- */
static void ce_dx_row(float *dx, const float *w, int64_t C, float ga_, float inv_, float gb_, bool smooth) {
    __m256 ga = V1(ga_), gb = V1(gb_), inv = V1(inv_);
    ga = _mm256_mul_ps(ga, inv);
    ROWS8(C, j, {
        __m256 d = _mm256_mul_ps(ga, LD(dx + j));
        if (smooth) d = _mm256_fnmadd_ps(gb, w ? LD(w + j) : V1(1.0f), d);
        ST(dx + j, d);
    });
}

/* ---- NLL_LOSS_BACKWARD's row: o = gr dc, 4 doubles a step ---- */
static void nll_row(float *o, const double *dc, int64_t C, double gr) {
    __m256d gd = _mm256_set1_pd(gr);
    int64_t c = 0;
    for (; c + 4 <= C; c += 4) _mm_storeu_ps(o + c, _mm256_cvtpd_ps(_mm256_mul_pd(gd, _mm256_loadu_pd(dc + c))));
    for (; c < C; c++) o[c] = (float)(gr * dc[c]);
}

void nb__avx2_rows_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SOFTMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_softmax", 10, rows_softmax},
        {NB_OP_LOG_SOFTMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_log_softmax", 10, rows_log_softmax},
        {NB_OP_SOFTMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_softmax_bwd", 10, rows_softmax_backward},
        {NB_OP_LOG_SOFTMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_log_softmax_bwd", 10,
         rows_log_softmax_backward},
        {NB_OP_CROSS_ENTROPY, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_cross_entropy", 10, rows_cross_entropy},
        {NB_OP_CROSS_ENTROPY_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_cross_entropy_bwd", 10,
         rows_cross_entropy_backward},
        {NB_OP_NLL_LOSS_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_nll_loss_bwd", 10, rows_nll_loss_backward},
    };
    NB__REGISTER_ALL(ks);
    nb__avx2_norm_register();
}
