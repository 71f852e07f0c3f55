/* avx2_rows.c — AVX2+FMA kernels of the F32 row-wise ops: softmax,
 * log_softmax and their backwards (variants of ref_softmax.c), the fused
 * cross entropy on class indices and its backward (ref_softmax.c), and
 * layer_norm and its backward (ref_norm.c). Arguments are the ref kernels'.
 *
 * Layouts served (anything else declines to ref):
 *   softmax family: every operand has stride 1 along the softmax dim (rows
 *     may start anywhere: other dims keep any strides);
 *   cross entropy:  logits (N, C) with stride 1 along C (and dx likewise),
 *     targets, per-sample gradients (stride 0 allowed) and the output 1-D of
 *     any stride, class weights absent or contiguous;
 *   layer_norm:     x and out contiguous over the normalized last k dims,
 *     weight and bias absent or contiguous.
 *
 * Numerics: each row's max is subtracted before exp (as ref); sums of exp,
 * of g*y, the moments of layer_norm and the dot products of cross entropy
 * are accumulated in double, so the F32 results differ from ref's
 * (double, rounded once) by a few ULP of exp/log (vmath.h: 2 ULP) plus the
 * F32 arithmetic of the final per-element formula. Rows whose max is +-inf
 * (or only NaN / -inf) take ref's formulas in double, so special values come
 * out as ref's. The errors asserted per op are in tests/kernels/test_avx2_rows.c.
 *
 * Threads: rows are split among threads and each row is computed by one
 * thread with the same code, so results do not depend on the thread count.
 */
#include <immintrin.h>
#include <math.h>

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

static inline double hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* acc += the 8 lanes of v, in double (two accumulators). */
static inline void acc8(__m256d *lo, __m256d *hi, __m256 v) {
    *lo = _mm256_add_pd(*lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    *hi = _mm256_add_pd(*hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

/* Max of p[0..n) ignoring NaN (as ref's fmax): -inf when nothing else. */
static float row_max(const float *p, int64_t n) {
    __m256 a0 = V1(-INFINITY), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {   /* max_ps(x, acc) returns acc when x is NaN */
        a0 = _mm256_max_ps(_mm256_loadu_ps(p + i), a0);
        a1 = _mm256_max_ps(_mm256_loadu_ps(p + i + 8), a1);
    }
    for (; i < n; i += 8) {
        __m256i k = nb__tail_mask((int)(n - i));
        __m256 x = _mm256_blendv_ps(V1(-INFINITY), _mm256_maskload_ps(p + i, k), _mm256_castsi256_ps(k));
        a0 = _mm256_max_ps(x, a0);
    }
    return nb__hmax(_mm256_max_ps(a0, a1));   /* no NaN lanes left */
}

/* sum of e^(p[i] - m) in double; e^(p[i] - m) stored to e when e is not NULL. */
static double row_sumexp(const float *p, int64_t n, float m, float *e) {
    __m256 mv = V1(m);
    __m256d lo = _mm256_setzero_pd(), hi = lo;
    ROWS8(n, i, {
        __m256 v = TAILZERO(nb__v_exp(_mm256_sub_ps(LD(p + i), mv)));
        if (e) ST(e + i, v);
        acc8(&lo, &hi, v);
    });
    return hsum_pd(_mm256_add_pd(lo, hi));
}

/* sum of p[0..n) in double, and sum of (p[i] - mean)^2. */
static double sum_span(const float *p, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(p + i)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(p + i + 4)));
        a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm_loadu_ps(p + i + 8)));
        a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm_loadu_ps(p + i + 12)));
    }
    for (; i + 4 <= n; i += 4) a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(p + i)));
    double s = hsum_pd(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    for (; i < n; i++) s += p[i];
    return s;
}

static double ss_span(const float *p, int64_t n, double mean) {
    __m256d m = _mm256_set1_pd(mean), a0 = _mm256_setzero_pd(), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i)), m);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i + 4)), m);
        a0 = _mm256_fmadd_pd(d0, d0, a0);
        a1 = _mm256_fmadd_pd(d1, d1, a1);
    }
    double s = hsum_pd(_mm256_add_pd(a0, a1));
    for (; i < n; i++) s += ((double)p[i] - mean) * ((double)p[i] - mean);
    return s;
}

/* sum of a[i] * b[i] in double (b NULL: sum of a). */
static double dot_span(const float *a, const float *b, int64_t n) {
    if (!b) return sum_span(a, n);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)), a0);
        a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b + i + 4)), a1);
        a2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 8)), _mm256_cvtps_pd(_mm_loadu_ps(b + i + 8)), a2);
        a3 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 12)), _mm256_cvtps_pd(_mm_loadu_ps(b + i + 12)), a3);
    }
    for (; i + 4 <= n; i += 4)
        a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)), a0);
    double s = hsum_pd(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    for (; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Element offset of row r of t: rows are the positions of every dim except
 * `skip` (C order); a contiguous t with skip its last dim is the fast case. */
static inline int64_t row_off(const nb_tensor *t, int skip, int64_t r, int64_t len, bool flat) {
    return flat ? r * len : nb__row_offset(t, skip, r);
}

static bool flat_rows(const nb_tensor *t, int dim) { return dim == t->ndim - 1 && nb_is_contiguous(t); }

/* ---- softmax / log_softmax: out = exp(x - lse) or x - lse; scalar[0] = dim ---- */

static void softmax_row(const float *x, float *y, int64_t n, bool logs) {
    float m = row_max(x, n);
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
        __m256 inv = V1((float)(1.0 / row_sumexp(x, n, m, y)));
        for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
        for (; i < n; i++) y[i] *= _mm256_cvtss_f32(inv);
        return;
    }
    __m256 ls = V1((float)log(row_sumexp(x, n, m, NULL)));
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
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        softmax_row(xb + row_off(x, dim, r, len, fx), yb + row_off(y, dim, r, len, fy), len, logs);
    return 0;
}
static int avx2_softmax(const nb_kernel_args *a) { return softmax_rows(a, false); }
static int avx2_log_softmax(const nb_kernel_args *a) { return softmax_rows(a, true); }

/* ---- backwards: in[0] = g, in[1] = y; scalar[0] = dim ----
 * softmax:     dx = y * (g - sum(g * y))
 * log_softmax: dx = g - exp(y) * sum(g) */
static void softmax_bw_row(const float *g, const float *y, float *dx, int64_t n, bool logs) {
    int64_t i;
    double s = dot_span(g, logs ? NULL : y, n);   /* products and sum in double */
    if (logs) {
        __m256 sv = V1((float)s);
        ROWS8(n, j, ST(dx + j, _mm256_fnmadd_ps(nb__v_exp(LD(y + j)), sv, LD(g + j))););
        return;
    }
    /* y (g - s) in double: g - s cancels where y peaks, and F32 would keep
     * only eps |g| of the small difference */
    __m256d sd = _mm256_set1_pd(s);
    for (i = 0; i + 4 <= n; i += 4) {
        __m256d gv = _mm256_cvtps_pd(_mm_loadu_ps(g + i)), yv = _mm256_cvtps_pd(_mm_loadu_ps(y + i));
        _mm_storeu_ps(dx + i, _mm256_cvtpd_ps(_mm256_mul_pd(yv, _mm256_sub_pd(gv, sd))));
    }
    for (; i < n; i++) dx[i] = (float)(y[i] * ((double)g[i] - s));
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
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < rows; r++)
        softmax_bw_row(gb + row_off(g, dim, r, len, fg), yb + row_off(y, dim, r, len, fy),
                       db + row_off(dx, dim, r, len, fd), len, logs);
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
    c->W = c->w ? sum_span(c->w, c->C) : (double)c->C;
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
    double lse = m + log(row_sumexp(x, C, m, dx));   /* dx holds e^(x - m) for the backward */
    if (!dx) {   /* sum_c w_c (lse - x_c) = lse W - sum_c w_c x_c */
        double loss = (1 - eps) * wt * (lse - x[tc]);
        if (eps > 0) loss += eps / (double)C * (lse * c->W - dot_span(x, c->w, C));
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

/* ---- layer_norm over the last k dims: in {x, w, b} / backward {dy, x, w};
 * scalar {k, eps} ---- */

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

static void ln_moments(const float *x, int64_t n, double eps, double *mean, double *rstd) {
    *mean = sum_span(x, n) / (double)n;
    *rstd = 1.0 / sqrt(ss_span(x, n, *mean) / (double)n + eps);
}

static void ln_row(const float *x, float *y, const float *w, const float *b, int64_t n, double eps) {
    double mean, rstd;
    ln_moments(x, n, eps, &mean, &rstd);
    __m256 mv = V1((float)mean), rv = V1((float)rstd);
    ROWS8(n, i, {
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + i), mv), rv);
        ST(y + i, _mm256_fmadd_ps(h, w ? LD(w + i) : V1(1.0f), b ? LD(b + i) : V1(0.0f)));
    });
}

/* dx = rstd * (gw - mean(gw) - x̂ mean(gw x̂)), gw = dy * w. */
static void ln_bw_row(const float *dy, const float *x, float *dx, const float *w, int64_t n, double eps) {
    double mean, rstd;
    ln_moments(x, n, eps, &mean, &rstd);
    __m256 mv = V1((float)mean), rv = V1((float)rstd);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, t0 = s0, t1 = s0;
    ROWS8(n, i, {   /* masked lanes load 0: gw is 0 there */
        __m256 gw = w ? _mm256_mul_ps(LD(dy + i), LD(w + i)) : LD(dy + i);
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + i), mv), rv);
        acc8(&s0, &s1, gw);
        acc8(&t0, &t1, _mm256_mul_ps(gw, h));
    });
    __m256 a = V1((float)(hsum_pd(_mm256_add_pd(s0, s1)) / (double)n));
    __m256 bq = V1((float)(hsum_pd(_mm256_add_pd(t0, t1)) / (double)n));
    ROWS8(n, i, {
        __m256 gw = w ? _mm256_mul_ps(LD(dy + i), LD(w + i)) : LD(dy + i);
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + i), mv), rv);
        ST(dx + i, _mm256_mul_ps(rv, _mm256_fnmadd_ps(h, bq, _mm256_sub_ps(gw, a))));
    });
}

static int layer_norm(const nb_kernel_args *a, bool backward) {
    const nb_tensor *x = a->in[backward ? 1 : 0], *w = a->in[backward ? 2 : 1];
    const nb_tensor *b = backward ? NULL : a->in[2], *dy = backward ? a->in[0] : NULL;
    nb_tensor *y = a->out;
    int k = (int)a->scalar[0], split = x->ndim - k;
    double eps = a->scalar[1];
    if (k < 1 || split < 0 || y->ndim != x->ndim || !ln_ok(x, split, false) || !ln_ok(y, split, false) ||
        !ln_ok(dy, split, false) || !ln_ok(w, split, true) || !ln_ok(b, split, true))
        return NB_KERNEL_DECLINE;
    if (x->dtype != NB_DTYPE_F32 || y->dtype != NB_DTYPE_F32 || (backward && !dy)) return NB_KERNEL_DECLINE;
    int64_t n = 1;
    for (int d = split; d < x->ndim; d++) n *= x->shape[d];
    if ((w && w->numel != n) || (b && b->numel != n)) return NB_KERNEL_DECLINE;
    if (n == 0) return 0;
    int64_t rows = x->numel / n;
    bool fx = nb_is_contiguous(x), fy = nb_is_contiguous(y), fd = dy && nb_is_contiguous(dy);
    const float *xb = nb_data(x), *wb = w ? nb_data(w) : NULL, *bb = b ? nb_data(b) : NULL;
    const float *db = dy ? nb_data(dy) : NULL;
    float *yb = nb_data(y);
    int nt = nb__par_threads(x->numel * (backward ? 3 : 2), NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xb + outer_off(x, split, r, n, fx);
        float *yr = yb + outer_off(y, split, r, n, fy);
        if (backward) ln_bw_row(db + outer_off(dy, split, r, n, fd), xr, yr, wb, n, eps);
        else ln_row(xr, yr, wb, bb, n, eps);
    }
    return 0;
}
static int avx2_layer_norm(const nb_kernel_args *a) { return layer_norm(a, false); }
static int avx2_layer_norm_backward(const nb_kernel_args *a) { return layer_norm(a, true); }

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
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) nb__registry_add(&ks[i]);
}
