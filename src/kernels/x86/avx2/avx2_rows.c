/* avx2_rows.c — AVX2+FMA kernels of the F32 row-wise ops: softmax,
 * log_softmax and their backwards (variants of ref_softmax.c), the fused
 * cross entropy on class indices and its backward (ref_softmax.c). The
 * notes below also cover layer_norm, its backward and
 * layer_norm_param_backward (ref_norm.c), whose kernels are in avx2_norm.c;
 * what both files share is in avx2_rows.h. Arguments are the ref kernels'.
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

#include <string.h>

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

/* NLL_LOSS_BACKWARD on a contiguous (N, C) dx (1-D targets, g of any
 * stride, weights contiguous or none): ref_loss.c's double expression per
 * element, with the off-target term -(1-eps) 0 - eps/C w_c computed once
 * per class instead of per element: dx = gv d rounded once, bitwise ref's
 * (signed zeros included); rows split over threads. Targets are all
 * checked first. */
static int avx2_nll_loss_backward(const nb_kernel_args *a) {
    const nb_tensor *g = a->in[0], *t = a->in[1], *w = a->nin > 2 ? a->in[2] : NULL;
    nb_tensor *dx = a->out;
    if (dx->dtype != NB_DTYPE_F32 || dx->ndim != 2 || !nb_is_contiguous(dx) || g->dtype != NB_DTYPE_F32 ||
        g->ndim != 1 || t->dtype != NB_DTYPE_I64 || t->ndim != 1 || (w && (w->dtype != NB_DTYPE_F32 ||
        w->ndim != 1 || !nb_is_contiguous(w))))
        return NB_KERNEL_DECLINE;
    int64_t N = dx->shape[0], C = dx->shape[1], ign = (int64_t)a->scalar[0];
    double eps = a->scalar[1];
    if (N == 0 || C == 0) return NB_KERNEL_DECLINE;
    const int64_t *tv = nb_data(t);
    const float *gv = nb_data(g), *wv = w ? nb_data(w) : NULL;
    int64_t st = t->stride[0], sg = g->stride[0];
    for (int64_t r = 0; r < N; r++) {
        int64_t tc = tv[r * st];
        if (tc != ign && (tc < 0 || tc >= C))
            return nb__err(NB_ERANGE, "nb_nll_loss: target %lld is out of bounds for %lld classes", (long long)tc,
                           (long long)C);
    }
    double *dc = malloc(sizeof *dc * (size_t)(C + 4));
    if (!dc) return nb__err(NB_ENOMEM, "nb_nll_loss: out of memory");
    for (int64_t c = 0; c < C; c++) dc[c] = -(1 - eps) * 0.0 - eps / (double)C * (wv ? (double)wv[c] : 1.0);
    float *db = nb_data(dx);
    int nt = nb__par_threads(N * C, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < N; r++) {
        float *o = db + r * C;
        int64_t tc = tv[r * st];
        if (tc == ign) {
            memset(o, 0, sizeof(float) * (size_t)C);
            continue;
        }
        double gr = gv[r * sg], wt = wv ? (double)wv[tc] : 1.0;
        __m256d gd = _mm256_set1_pd(gr);
        int64_t c = 0;
        for (; c + 4 <= C; c += 4) _mm_storeu_ps(o + c, _mm256_cvtpd_ps(_mm256_mul_pd(gd, _mm256_loadu_pd(dc + c))));
        for (; c < C; c++) o[c] = (float)(gr * dc[c]);
        o[tc] = (float)(gr * (-(1 - eps) * wt - eps / (double)C * wt));
    }
    free(dc);
    return 0;
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
        {NB_OP_NLL_LOSS_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_nll_loss_bwd", 10, avx2_nll_loss_backward},
    };
    NB__REGISTER_ALL(ks);
    nb__avx2_norm_register();
}
