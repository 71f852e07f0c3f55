/* avx2_rows.c — AVX2+FMA kernels of the F32 row-wise ops: softmax,
 * log_softmax and their backwards (variants of ref_softmax.c), the fused
 * cross entropy on class indices and its backward (ref_softmax.c), and
 * layer_norm, its backward and layer_norm_param_backward (ref_norm.c).
 * Arguments are the ref kernels'.
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
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "vmath.h"

#define V1 _mm256_set1_ps
#ifndef ROWS_NT
#define ROWS_NT 1
#endif

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
#define SUMBLK 512
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
static float row_max(const float *p, int64_t n) {
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
static double row_sumexp(const float *p, int64_t n, float m, float *e, const float *pf) {
    __m256 mv = V1(m);
    double s;
#define F_(o) exp_at(p, e, pf, (o), mv, full_, k_)
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

/* sum of p[0..n) (F32 blocks). */
static double sum_span(const float *p, int64_t n) {
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
static double ss_span(const float *p, int64_t n, float mean, const float *pf) {
    __m256 m = V1(mean);
    double s;
#define F_(o) sq_dev(ld_pf(p, pf, (o), full_, k_), m)
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

/* sum of a[i] * b[i] (b NULL: sum of a) in double, for cross entropy,
 * whose label-smoothing term lse W - sum(w x) cancels. */
static double dot_span_d(const float *a, const float *b, int64_t n) {
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
static double dot_span(const float *a, const float *b, int64_t n) {
    if (!b) return sum_span(a, n);
    double s;
#define F_(o) _mm256_mul_ps(LD(a + (o)), LD(b + (o)))
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

/* Element offset of row r of t: rows are the positions of every dim except
 * `skip` (C order); a contiguous t with skip its last dim is the fast case. */
static inline int64_t row_off(const nb_tensor *t, int skip, int64_t r, int64_t len, bool flat) {
    return flat ? r * len : nb__row_offset(t, skip, r);
}

static bool flat_rows(const nb_tensor *t, int dim) { return dim == t->ndim - 1 && nb_is_contiguous(t); }

/* Rows handed to a thread at a time: about 16K floats. */
static inline int64_t row_chunk(int64_t n) { return n >= 16384 ? 1 : 16384 / (n ? n : 1); }

/* ---- softmax / log_softmax: out = exp(x - lse) or x - lse; scalar[0] = dim ---- */

/* Streaming (non-temporal) stores for whole rows of at most NT_MAXROW
 * floats starting on a 32-byte boundary with n % 8 == 0 (large row-major
 * outputs: measured in /tmp bench, see the report); each streamed row ends
 * with _mm_sfence, so the rows are ordered before any later read. */
#define NT_MAXROW 2048
#define NT_MINTOTAL (1 << 20)   /* outputs smaller than this stay in cache */
static inline bool stream_ok(const float *p, int64_t n, bool big) {
    return ROWS_NT && big && n <= NT_MAXROW && n % 8 == 0 && ((uintptr_t)p & 31) == 0;
}

static void softmax_row(const float *x, float *y, int64_t n, bool logs, bool big) {
    float m = row_max(x, n);
    const float *pf = big && n <= NT_MAXROW ? x + n : NULL;   /* the next row (flat layout) to L2 meanwhile */
    int64_t i;
    if (!isfinite(m)) {   /* +inf, or only -inf/NaN: lse = m, as ref */
        for (i = 0; i < n; i++) {
            double v = (double)x[i] - m;
            y[i] = (float)(logs ? v : exp(v));
        }
        return;
    }
    __m256 mv = V1(m);
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

/* The row layout of a softmax-family call: operands ops[0..nops) (out
 * first) all F32 with stride 1 along dim. False: decline. */
static bool rows_ok(const nb_tensor *const *ops, int nops, int dim) {
    for (int o = 0; o < nops; o++) {
        const nb_tensor *t = ops[o];
        if (!t || t->dtype != NB_DTYPE_F32 || t->ndim == 0 || dim < 0 || dim >= t->ndim) return false;
        if (t->shape[dim] > 1 && t->stride[dim] != 1) return false;
    }
    return true;
}

static int softmax_rows(const nb_kernel_args *a, bool logs) {
    const nb_tensor *x = a->in[0];
    nb_tensor *y = a->out;
    int dim = (int)a->scalar[0];
    const nb_tensor *ops[2] = {y, x};
    if (!rows_ok(ops, 2, dim)) return NB_KERNEL_DECLINE;
    int64_t len = x->shape[dim], rows = len ? x->numel / len : 0;
    bool fx = flat_rows(x, dim), fy = flat_rows(y, dim);
    const float *xb = nb_data(x);
    float *yb = nb_data(y);
    int nt = nb__par_threads(x->numel, NB_GRAIN_TRANSCENDENTAL);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, row_chunk(len))
    for (int64_t r = 0; r < rows; r++)
        softmax_row(xb + row_off(x, dim, r, len, fx), yb + row_off(y, dim, r, len, fy), len, logs,
                    y->numel >= NT_MINTOTAL);
    return 0;
}
static int avx2_softmax(const nb_kernel_args *a) { return softmax_rows(a, false); }
static int avx2_log_softmax(const nb_kernel_args *a) { return softmax_rows(a, true); }

/* ---- backwards: in[0] = g, in[1] = y; scalar[0] = dim ----
 * softmax:     dx = y * (g - sum(g * y))
 * log_softmax: dx = g - exp(y) * sum(g) */
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

static int softmax_backward_rows(const nb_kernel_args *a, bool logs) {
    const nb_tensor *g = a->in[0], *y = a->in[1];
    nb_tensor *dx = a->out;
    int dim = (int)a->scalar[0];
    const nb_tensor *ops[3] = {dx, g, y};
    if (!rows_ok(ops, 3, dim)) return NB_KERNEL_DECLINE;
    int64_t len = y->shape[dim], rows = len ? y->numel / len : 0;
    bool fg = flat_rows(g, dim), fy = flat_rows(y, dim), fd = flat_rows(dx, dim);
    const float *gb = nb_data(g), *yb = nb_data(y);
    float *db = nb_data(dx);
    int nt = nb__par_threads(y->numel, logs ? NB_GRAIN_TRANSCENDENTAL : NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, row_chunk(len))
    for (int64_t r = 0; r < rows; r++)
        softmax_bw_row(gb + row_off(g, dim, r, len, fg), yb + row_off(y, dim, r, len, fy),
                       db + row_off(dx, dim, r, len, fd), len, logs, dx->numel >= NT_MINTOTAL);
    return 0;
}
static int avx2_softmax_backward(const nb_kernel_args *a) { return softmax_backward_rows(a, false); }
static int avx2_log_softmax_backward(const nb_kernel_args *a) { return softmax_backward_rows(a, true); }

/* ---- cross entropy on class indices, (N, C) logits ----
 * in[0] = x, in[1] = t (i64), in[2] = w or NULL, [in[3] = g (N)];
 * scalar[0] = ignore_index, scalar[1] = label smoothing eps (see ref_softmax.c). */

typedef struct ce_call {
    const float *x;      /* logits, row i at x + i * sxr */
    int64_t sxr;         /* row stride of x */
    const int64_t *t;    /* targets, target i at t[i * st] */
    int64_t st;          /* stride of t */
    const float *w;      /* class weights (contiguous) or NULL */
    double W;            /* sum of the weights (C without) */
    int64_t N, C, ign;   /* samples, classes, ignore_index */
    double eps;          /* label smoothing */
} ce_call;

/* Reads and checks the call; 1 = decline, < 0 an error (bad target). */
static int ce_open(ce_call *c, const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *t = a->in[1], *w = a->in[2];
    if (x->dtype != NB_DTYPE_F32 || x->ndim != 2 || t->dtype != NB_DTYPE_I64 || t->ndim != 1 ||
        a->out->dtype != NB_DTYPE_F32)
        return NB_KERNEL_DECLINE;
    if (x->shape[1] > 1 && x->stride[1] != 1) return NB_KERNEL_DECLINE;
    if (w && (w->dtype != NB_DTYPE_F32 || w->ndim != 1 || !nb_is_contiguous(w))) return NB_KERNEL_DECLINE;
    *c = (ce_call){.x = nb_data(x), .sxr = x->stride[0], .t = nb_data(t), .st = t->stride[0],
                   .w = w ? nb_data(w) : NULL, .N = x->shape[0], .C = x->shape[1],
                   .ign = (int64_t)a->scalar[0], .eps = a->scalar[1]};
    if (c->C == 0) return NB_KERNEL_DECLINE;
    c->W = c->w ? dot_span_d(c->w, NULL, c->C) : (double)c->C;
    for (int64_t i = 0; i < c->N; i++) {   /* before any thread starts: an error leaves out unwritten */
        int64_t tc = c->t[i * c->st];
        if (tc != c->ign && (tc < 0 || tc >= c->C))
            return nb__err(NB_ERANGE, "nb_cross_entropy: target %lld is out of bounds for %lld classes",
                           (long long)tc, (long long)c->C);
    }
    return 0;
}

static inline double ce_w(const ce_call *c, int64_t k) { return c->w ? (double)c->w[k] : 1.0; }

/* Row i's loss, or its gradient row (scaled by gv) when dx is set. */
static double ce_row(const ce_call *c, int64_t i, float *dx, double gv) {
    const float *x = c->x + i * c->sxr;
    int64_t C = c->C, tc = c->t[i * c->st], k;
    if (tc == c->ign) {
        if (dx)
            for (k = 0; k < C; k++) dx[k] = 0;
        return 0;
    }
    double eps = c->eps, wt = ce_w(c, tc);
    float m = row_max(x, C);
    if (!isfinite(m)) {   /* lse = m (+-inf): ref's formulas in double */
        double lse = m, loss = (1 - eps) * wt * (lse - x[tc]), sm = 0;
        for (k = 0; k < C; k++) {
            double p = exp(x[k] - lse), d = (1 - eps) * wt * (p - (k == tc ? 1.0 : 0.0));
            if (eps > 0) d += eps / (double)C * (c->W * p - ce_w(c, k));
            if (dx) dx[k] = (float)(gv * d);
            sm += ce_w(c, k) * (lse - x[k]);
        }
        return eps > 0 ? loss + eps / (double)C * sm : loss;
    }
    double lse = m + log(row_sumexp(x, C, m, dx, NULL));   /* dx holds e^(x - m) for the backward */
    if (!dx) {   /* sum_c w_c (lse - x_c) = lse W - sum_c w_c x_c */
        double loss = (1 - eps) * wt * (lse - x[tc]);
        if (eps > 0) loss += eps / (double)C * (lse * c->W - dot_span_d(x, c->w, C));
        return loss;
    }
    /* dx_k = gv * (A p_k - B w_k), then the target's element again in double */
    double A = (1 - eps) * wt + eps / (double)C * c->W, B = eps / (double)C;
    __m256 ga = V1((float)(gv * A)), gb = V1((float)(gv * B)), inv = V1((float)exp(m - lse));
    ga = _mm256_mul_ps(ga, inv);
    ROWS8(C, j, {
        __m256 d = _mm256_mul_ps(ga, LD(dx + j));
        if (eps > 0) d = _mm256_fnmadd_ps(gb, c->w ? LD(c->w + j) : V1(1.0f), d);
        ST(dx + j, d);
    });
    double p = exp(x[tc] - lse), d = (1 - eps) * wt * (p - 1.0);
    if (eps > 0) d += eps / (double)C * (c->W * p - wt);
    dx[tc] = (float)(gv * d);
    return 0;
}

static int avx2_cross_entropy(const nb_kernel_args *a) {
    ce_call c;
    nb_tensor *out = a->out;
    if (out->ndim != 1) return NB_KERNEL_DECLINE;
    int rc = ce_open(&c, a);
    if (rc) return rc;
    float *ob = nb_data(out);
    int64_t so = out->stride[0];
    int nt = nb__par_threads(c.N * c.C, NB_GRAIN_TRANSCENDENTAL);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < c.N; i++) ob[i * so] = (float)ce_row(&c, i, NULL, 0);
    return 0;
}

static int avx2_cross_entropy_backward(const nb_kernel_args *a) {
    ce_call c;
    const nb_tensor *g = a->in[3];
    nb_tensor *dx = a->out;
    if (!g || g->dtype != NB_DTYPE_F32 || g->ndim != 1 || dx->dtype != NB_DTYPE_F32 || dx->ndim != 2 ||
        (dx->shape[1] > 1 && dx->stride[1] != 1))
        return NB_KERNEL_DECLINE;
    int rc = ce_open(&c, a);
    if (rc) return rc;
    const float *gb = nb_data(g);
    float *db = nb_data(dx);
    int64_t sg = g->stride[0], sd = dx->stride[0];
    int nt = nb__par_threads(c.N * c.C, NB_GRAIN_TRANSCENDENTAL);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < c.N; i++) ce_row(&c, i, db + i * sd, gb[i * sg]);
    return 0;
}

/* ---- layer_norm over the last k dims: in {x, w, b, stats} / backward
 * {dy, x, w, stats}; scalar {k, eps[, fused]} (ref_norm.c) ----
 * The forward also writes each row's (mean, rstd) into stats when given
 * (F32 (R, 2) contiguous); the backward then reads them instead of
 * recomputing (the same F32 values ln_moments gives). Fused backward: out
 * (R + 2, n) = dx rows, then dweight and dbias, summed in fixed row blocks
 * as layer_norm_param_backward below, in the same pass that writes dx.
 * Big outputs (>= NT_MINTOTAL floats) are written with streaming stores and
 * the next rows are prefetched, as softmax. Rows (blocks) are handed out
 * dynamically, and each row is computed by the same code wherever it runs. */

/* Rows of layer_norm_param_backward's fixed blocks (see there). */
#define LNP_BLK 64

/* True when t's dims [split, ndim) are C-contiguous among themselves. */
static bool inner_contig(const nb_tensor *t, int split) {
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= split; d--) {
        if (t->shape[d] != 1 && t->stride[d] != want) return false;
        want *= t->shape[d];
    }
    return true;
}

/* Offset of row r of t (C order over dims [0, split)). */
static inline int64_t outer_off(const nb_tensor *t, int split, int64_t r, int64_t n, bool flat) {
    if (flat) return r * n;
    int64_t off = 0;
    for (int d = split - 1; d >= 0; d--) {
        off += (r % t->shape[d]) * t->stride[d];
        r /= t->shape[d];
    }
    return off;
}

/* A layer_norm operand: F32 and contiguous over the normalized dims (a
 * weight/bias wholly contiguous); NULL is fine. */
static bool ln_ok(const nb_tensor *t, int split, bool param) {
    if (!t) return true;
    if (t->dtype != NB_DTYPE_F32) return false;
    return param ? nb_is_contiguous(t) : inner_contig(t, split);
}

/* mean and 1/sqrt(var + eps) of a row: F32 sums (ROWSUM), the squared
 * deviations taken from the F32 mean in a second pass over the (L1) row. */
static void ln_moments(const float *x, int64_t n, double eps, float *mean, float *rstd, const float *pf) {
    *mean = (float)(sum_span(x, n) / (double)n);
    *rstd = (float)(1.0 / sqrt(ss_span(x, n, *mean, pf) / (double)n + eps));
}

/* y = x̂ w + b for one row; (mean, rstd) to st when not NULL. big: a big
 * flat output (stream it when aligned, prefetch the next row of x). */
static void ln_row(const float *x, float *y, const float *w, const float *b, int64_t n, double eps, float *st,
                   bool big) {
    float mean, rstd;
    ln_moments(x, n, eps, &mean, &rstd, big && n <= NT_MAXROW ? x + n : NULL);   /* the next row to L2 meanwhile */
    if (st) {
        st[0] = mean;
        st[1] = rstd;
    }
    __m256 mv = V1(mean), rv = V1(rstd);
    if (stream_ok(y, n, big)) {
        for (int64_t i = 0; i < n; i += 8) {
            __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv);
            _mm256_stream_ps(y + i, _mm256_fmadd_ps(h, w ? _mm256_loadu_ps(w + i) : V1(1.0f),
                                                    b ? _mm256_loadu_ps(b + i) : V1(0.0f)));
        }
        _mm_sfence();
        return;
    }
    ROWS8(n, i, {
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + i), mv), rv);
        ST(y + i, _mm256_fmadd_ps(h, w ? LD(w + i) : V1(1.0f), b ? LD(b + i) : V1(0.0f)));
    });
}

/* gw = dy * w (dy without w) and gw * x̂ at o, for ln_bw_row. */
static inline __m256 ln_gw(const float *dy, const float *w, int64_t o, bool full_, __m256i k_) {
    return w ? _mm256_mul_ps(LD(dy + o), LD(w + o)) : LD(dy + o);
}

/* One backward row. */
typedef struct ln_bw {
    const float *dy, *x, *w;   /* the row's dy and x, the weight (or NULL) */
    float *dx;                 /* the row's dx */
    const float *st;           /* the row's saved (mean, rstd), or NULL: recompute */
    float *acc;                /* 2n floats += (dy x̂; dy), or NULL */
    int64_t n;                 /* row length */
    double eps;                /* added to the variance (when recomputing) */
    bool big;                  /* big flat tensors: stream dx, prefetch the next rows */
} ln_bw;

/* dx = rstd * (gw - mean(gw) - x̂ mean(gw x̂)), gw = dy * w: the moments
 * (or the saved ones), both sums in one pass (F32, emptied into double
 * every SUMBLK elements as ROWSUM), then dx and the acc sums; the row stays
 * in L1 throughout. */
static void ln_bw_row(const ln_bw *r) {
    const float *dy = r->dy, *x = r->x, *w = r->w;
    float *dx = r->dx, *aw = r->acc, *ab = r->acc ? r->acc + r->n : NULL;
    int64_t n = r->n;
    float mean, rstd;
    if (r->st) {
        mean = r->st[0];
        rstd = r->st[1];
    } else {
        ln_moments(x, n, r->eps, &mean, &rstd, NULL);
    }
    __m256 mv = V1(mean), rv = V1(rstd);
    double sa = 0, sb = 0;
    int64_t i = 0;
    {
        const bool full_ = true;
        const __m256i k_ = _mm256_set1_epi32(-1);
        while (i + 16 <= n) {
            int64_t e = i + SUMBLK < n ? i + SUMBLK : n;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
            for (; i + 16 <= e; i += 16) {
                __m256 g0 = ln_gw(dy, w, i, full_, k_), g1 = ln_gw(dy, w, i + 8, full_, k_);
                __m256 h0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv);
                __m256 h1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv), rv);
                a0 = _mm256_add_ps(a0, g0);
                a1 = _mm256_add_ps(a1, g1);
                b0 = _mm256_fmadd_ps(g0, h0, b0);
                b1 = _mm256_fmadd_ps(g1, h1, b1);
            }
            sa += nb__hsum(_mm256_add_ps(a0, a1));
            sb += nb__hsum(_mm256_add_ps(b0, b1));
        }
    }
    ROWS8(n - i, j, {   /* the last < 16: masked lanes load 0, so gw is 0 there */
        __m256 gw = ln_gw(dy + i, w ? w + i : NULL, j, full_, k_);
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + i + j), mv), rv);
        sa += nb__hsum(gw);
        sb += nb__hsum(_mm256_mul_ps(gw, h));
    });
    __m256 a = V1((float)(sa / (double)n)), bq = V1((float)(sb / (double)n));
    if (stream_ok(dx, n, r->big)) {
        for (int64_t j = 0; j < n; j += 8) {
            _mm_prefetch((const char *)(x + n + j), _MM_HINT_T1);   /* the next row, spread over this one */
            _mm_prefetch((const char *)(dy + n + j), _MM_HINT_T1);
            __m256 g = _mm256_loadu_ps(dy + j), gw = w ? _mm256_mul_ps(g, _mm256_loadu_ps(w + j)) : g;
            __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv), rv);
            _mm256_stream_ps(dx + j, _mm256_mul_ps(rv, _mm256_fnmadd_ps(h, bq, _mm256_sub_ps(gw, a))));
            if (aw) {
                _mm256_storeu_ps(aw + j, _mm256_fmadd_ps(g, h, _mm256_loadu_ps(aw + j)));
                _mm256_storeu_ps(ab + j, _mm256_add_ps(g, _mm256_loadu_ps(ab + j)));
            }
        }
        _mm_sfence();
        return;
    }
    ROWS8(n, j, {
        __m256 g = LD(dy + j), gw = w ? _mm256_mul_ps(g, LD(w + j)) : g;
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + j), mv), rv);
        ST(dx + j, _mm256_mul_ps(rv, _mm256_fnmadd_ps(h, bq, _mm256_sub_ps(gw, a))));
        if (aw) {
            ST(aw + j, _mm256_fmadd_ps(g, h, LD(aw + j)));
            ST(ab + j, _mm256_add_ps(g, LD(ab + j)));
        }
    });
}

/* A checked layer_norm call: the operands' rows. */
typedef struct ln_call {
    const nb_tensor *x, *y, *dy;   /* x; out (the dx rows when fused); dy (backward) */
    const float *xb, *wb, *bb, *db;   /* data of x, weight, bias, dy (NULL when absent) */
    float *yb;                     /* out's data */
    float *st;                     /* saved (R, 2) stats or NULL */
    int split;                     /* x's dims [split, ndim) are normalized */
    int64_t n, rows;               /* row length, rows */
    bool fx, fy, fd;               /* x, out, dy wholly contiguous */
    double eps;                    /* added to the variance */
} ln_call;

/* Reads and checks a layer_norm call: false = decline. */
static bool ln_open(ln_call *c, const nb_kernel_args *a, bool backward, bool fused) {
    const nb_tensor *x = a->in[backward ? 1 : 0], *w = a->in[backward ? 2 : 1];
    const nb_tensor *b = backward ? NULL : a->in[2], *dy = backward ? a->in[0] : NULL;
    const nb_tensor *st = a->nin > 3 ? a->in[3] : NULL, *y = a->out;
    int k = (int)a->scalar[0], split = x->ndim - k;
    if (k < 1 || split < 0 || x->dtype != NB_DTYPE_F32 || y->dtype != NB_DTYPE_F32 || (backward && !dy))
        return false;
    if (!ln_ok(x, split, false) || !ln_ok(dy, split, false) || !ln_ok(w, split, true) || !ln_ok(b, split, true))
        return false;
    int64_t n = 1;
    for (int d = split; d < x->ndim; d++) n *= x->shape[d];
    int64_t rows = n ? x->numel / n : 0;
    if (n == 0 || (w && w->numel != n) || (b && b->numel != n)) return false;   /* empty rows: ref */
    if (dy) {
        if (dy->ndim != x->ndim) return false;
        for (int d = 0; d < x->ndim; d++)
            if (dy->shape[d] != x->shape[d]) return false;
    }
    if (fused) {
        if (y->ndim != 2 || y->shape[0] != rows + 2 || y->shape[1] != n || !nb_is_contiguous(y)) return false;
    } else if (y->ndim != x->ndim || !ln_ok(y, split, false)) {
        return false;
    }
    if (st && (st->dtype != NB_DTYPE_F32 || st->ndim != 2 || st->shape[0] != rows || st->shape[1] != 2 ||
               !nb_is_contiguous(st)))
        return false;
    *c = (ln_call){.x = x, .y = y, .dy = dy, .xb = nb_data(x), .wb = w ? nb_data(w) : NULL,
                   .bb = b ? nb_data(b) : NULL, .db = dy ? nb_data(dy) : NULL, .yb = nb_data(y),
                   .st = st ? nb_data(st) : NULL, .split = split, .n = n, .rows = rows,
                   .fx = nb_is_contiguous(x), .fy = fused || nb_is_contiguous(y),
                   .fd = dy && nb_is_contiguous(dy), .eps = a->scalar[1]};
    return true;
}

/* The backward of row r into its dx, adding to acc when not NULL. */
static inline void ln_bw_at(const ln_call *c, int64_t r, float *acc, bool big) {
    int64_t n = c->n;
    ln_bw_row(&(ln_bw){.dy = c->db + outer_off(c->dy, c->split, r, n, c->fd),
                       .x = c->xb + outer_off(c->x, c->split, r, n, c->fx), .w = c->wb,
                       .dx = c->yb + (c->fy ? r * n : outer_off(c->y, c->split, r, n, false)),
                       .st = c->st ? c->st + 2 * r : NULL, .acc = acc, .n = n, .eps = c->eps, .big = big});
}

static int avx2_layer_norm(const nb_kernel_args *a) {
    ln_call c;
    if (!ln_open(&c, a, false, false)) return NB_KERNEL_DECLINE;
    int64_t n = c.n, ch = row_chunk(n);
    bool big = c.fx && c.fy && c.x->numel >= NT_MINTOTAL;
    int nt = nb__par_threads(c.x->numel * 2, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, ch)
    for (int64_t r = 0; r < c.rows; r++)
        ln_row(c.xb + outer_off(c.x, c.split, r, n, c.fx), c.yb + outer_off(c.y, c.split, r, n, c.fy), c.wb, c.bb, n,
               c.eps, c.st ? c.st + 2 * r : NULL, big);
    return 0;
}

/* o[0..m) = the nblk block partials part[bk m + i], added in block order
 * in double column by column (one thread: m x nblk floats, in cache);
 * frees part. 0 or NB_ENOMEM. */
static int sum_blocks(float *part, int64_t nblk, int64_t m, float *o, const char *who) {
    double *sum = calloc((size_t)m, sizeof *sum);
    if (!sum) {
        free(part);
        return nb__err(NB_ENOMEM, "%s: out of memory for %lld sums", who, (long long)m);
    }
    for (int64_t bk = 0; bk < nblk; bk++)
        for (int64_t i = 0; i < m; i++) sum[i] += part[bk * m + i];
    for (int64_t i = 0; i < m; i++) o[i] = (float)sum[i];
    free(sum);
    free(part);
    return 0;
}

/* Fused: dx rows, and the (dweight; dbias) sums in fixed blocks of LNP_BLK
 * rows (F32 within a block, the block partials added in block order in
 * double), as layer_norm_param_backward: bitwise the same at any thread
 * count. */
static int ln_backward_fused(const ln_call *c) {
    int64_t n = c->n, nblk = (c->rows + LNP_BLK - 1) / LNP_BLK;
    float *o = c->yb + c->rows * n;
    if (nblk == 0) {
        for (int64_t i = 0; i < 2 * n; i++) o[i] = 0.0f;
        return 0;
    }
    float *part = malloc(sizeof *part * (size_t)(nblk * 2 * n));
    if (!part)
        return nb__err(NB_ENOMEM, "layer_norm_backward: out of memory for %lld block sums", (long long)nblk);
    bool big = c->fx && c->fd && c->rows * n >= NT_MINTOTAL;
    int nt = nb__par_threads(c->rows * n * 3, NB_GRAIN_ELEMENTWISE);
    if (nt > nblk) nt = (int)nblk;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t bk = 0; bk < nblk; bk++) {
        float *acc = part + bk * 2 * n;
        int64_t r1 = (bk + 1) * LNP_BLK < c->rows ? (bk + 1) * LNP_BLK : c->rows;
        for (int64_t i = 0; i < 2 * n; i++) acc[i] = 0.0f;
        for (int64_t r = bk * LNP_BLK; r < r1; r++) ln_bw_at(c, r, acc, big);
    }
    return sum_blocks(part, nblk, 2 * n, o, "layer_norm_backward");
}

static int avx2_layer_norm_backward(const nb_kernel_args *a) {
    ln_call c;
    bool fused = a->scalar[2] != 0;
    if (!ln_open(&c, a, true, fused)) return NB_KERNEL_DECLINE;
    if (fused) return ln_backward_fused(&c);
    bool big = c.fx && c.fy && c.fd && c.x->numel >= NT_MINTOTAL;
    int nt = nb__par_threads(c.x->numel * 3, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, row_chunk(c.n))
    for (int64_t r = 0; r < c.rows; r++) ln_bw_at(&c, r, NULL, big);
    return 0;
}

/* ---- layer_norm_param_backward: out (2, n) = (sum dy x̂; sum dy) over the
 * rows; in {dy, x}, scalar {k, eps} ----
 * Rows are taken in fixed blocks of LNP_BLK: each block sums its rows into
 * F32 column accumulators (a row's mean and rstd as ln_row's), the block
 * partials are then added in block order in double. Which thread runs a
 * block does not matter, so the result is bitwise the same at any thread
 * count. Error: F32 over at most LNP_BLK terms a column, then double. */
/* Adds rows [r0, r1) into acc (2n floats: sum dy x̂, then sum dy). */
static void lnp_block(const nb_tensor *dy, const nb_tensor *x, int split, int64_t n, int64_t r0, int64_t r1,
                      double eps, float *acc) {
    bool fx = nb_is_contiguous(x), fd = nb_is_contiguous(dy);
    const float *xb = nb_data(x), *db = nb_data(dy);
    float *aw = acc, *ab = acc + n;
    for (int64_t i = 0; i < 2 * n; i++) acc[i] = 0.0f;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = xb + outer_off(x, split, r, n, fx), *gr = db + outer_off(dy, split, r, n, fd);
        float mean, rstd;
        ln_moments(xr, n, eps, &mean, &rstd, NULL);
        __m256 mv = V1(mean), rv = V1(rstd);
        ROWS8(n, i, {
            __m256 g = LD(gr + i);
            __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(xr + i), mv), rv);
            ST(aw + i, _mm256_fmadd_ps(g, h, LD(aw + i)));
            ST(ab + i, _mm256_add_ps(g, LD(ab + i)));
        });
    }
}

static int avx2_layer_norm_param_backward(const nb_kernel_args *a) {
    const nb_tensor *dy = a->in[0], *x = a->in[1];
    nb_tensor *out = a->out;
    int k = (int)a->scalar[0], split = x->ndim - k;
    double eps = a->scalar[1];
    if (k < 1 || split < 0 || !dy || dy->ndim != x->ndim || !ln_ok(x, split, false) || !ln_ok(dy, split, false) ||
        out->dtype != NB_DTYPE_F32 || !nb_is_contiguous(out) || out->ndim != 2 || out->shape[0] != 2)
        return NB_KERNEL_DECLINE;
    for (int d = 0; d < x->ndim; d++)
        if (dy->shape[d] != x->shape[d]) return NB_KERNEL_DECLINE;
    int64_t n = 1;
    for (int d = split; d < x->ndim; d++) n *= x->shape[d];
    if (out->shape[1] != n) return NB_KERNEL_DECLINE;
    if (n == 0) return 0;
    int64_t rows = x->numel / n, nblk = (rows + LNP_BLK - 1) / LNP_BLK;
    float *o = nb_data(out);
    if (nblk == 0) {
        for (int64_t i = 0; i < 2 * n; i++) o[i] = 0.0f;
        return 0;
    }
    float *part = malloc(sizeof *part * (size_t)(nblk * 2 * n));
    if (!part) return nb__err(NB_ENOMEM, "layer_norm_param_backward: out of memory for %lld block sums",
                              (long long)nblk);
    int nt = nb__par_threads(x->numel * 2, NB_GRAIN_ELEMENTWISE);
    if (nt > nblk) nt = (int)nblk;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t bk = 0; bk < nblk; bk++) {
        int64_t r0 = bk * LNP_BLK, r1 = r0 + LNP_BLK < rows ? r0 + LNP_BLK : rows;
        lnp_block(dy, x, split, n, r0, r1, eps, part + bk * 2 * n);
    }
    return sum_blocks(part, nblk, 2 * n, o, "layer_norm_param_backward");
}

void nb__avx2_rows_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SOFTMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_softmax", 10, avx2_softmax},
        {NB_OP_LOG_SOFTMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_log_softmax", 10, avx2_log_softmax},
        {NB_OP_SOFTMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_softmax_bwd", 10, avx2_softmax_backward},
        {NB_OP_LOG_SOFTMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_log_softmax_bwd", 10,
         avx2_log_softmax_backward},
        {NB_OP_CROSS_ENTROPY, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_cross_entropy", 10, avx2_cross_entropy},
        {NB_OP_CROSS_ENTROPY_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_cross_entropy_bwd", 10,
         avx2_cross_entropy_backward},
        {NB_OP_LAYER_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_layer_norm", 10, avx2_layer_norm},
        {NB_OP_LAYER_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_layer_norm_backward", 10,
         avx2_layer_norm_backward},
        {NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_layer_norm_param_backward", 10,
         avx2_layer_norm_param_backward},
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) nb__registry_add(&ks[i]);
}
