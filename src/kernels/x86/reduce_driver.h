/* reduce_driver.h — the ISA-neutral half of the F32 reduction kernels
 * (x86/avx2/avx2_reduce.c, x86/avx512/avx512_reduce.c), included by each in
 * its own library (so compiled with that library's -m flags).
 *
 * The includer defines, after this header, its vector primitives on one
 * contiguous span of floats (declared below):
 *   sum_span     sum of p[0..n) (ab: of |p[i]|) in double;
 *   ss_span      sum of (p[i] - mean)^2 in double;
 *   sumexp_span  sum of e^(p[i] - m) (logsumexp's shifted sum);
 *   ext_span     max (mn: min) of p[0..n) (ab: of |p[i]|), NaN-sticky,
 *                -inf (inf) when n is 0;
 *   find_span    index of the first element equal to v (first NaN for NaN);
 *   amax_bw_row  AMAX_BACKWARD's row: out = (x == r) / count, NaN when none;
 * and on the outer layout's w <= OUT_CW columns, rows at stride rs:
 *   outer_sums   their sums in double, each column adding its rows in order;
 *   outer_ss     their sums of squared deviations from mean[c];
 *   outer_ext    their extremes (and the rows of the first ones, for arg);
 * and after those, its registration table of the entry points below.
 *
 * This header gives the layout analysis (rgeo: size-1 dims dropped,
 * neighbouring dims of the same kind, kept or reduced, merged where they
 * are contiguous in memory; then
 *   inner: the reduced dims form one block of stride 1: a contiguous row
 *          per kept index (the kept dims, before or after it, any strides);
 *   outer: one reduced block of any stride, and the last kept block has
 *          stride 1: its rows are folded into vector accumulators
 *          ([M, N] -> [1, N], [B, M, N] -> [B, 1, N], a transposed input);
 * anything else, or a strided out, declines), the per-op value of a slice
 * (slice_value), of one long row cut into blocks (full_value) and of a
 * block of the outer layout's columns (outer_block), the driver (run:
 * declines, empty inputs, the thread split) and the entry points k_sum,
 * k_amax, k_amin, k_argmax, k_argmin, k_var, k_std, k_logsumexp,
 * k_vector_norm and k_amax_backward.
 *
 * Threads: rows (or OUT_CW-column blocks of the outer layout) are split
 * among threads, each computed whole by one thread. A full reduction of
 * one long row is cut into blocks that depend only on its length, and the
 * blocks' partials are combined in block order: results never depend on
 * the thread count.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_REDUCE_DRIVER_H
#define NB_X86_REDUCE_DRIVER_H

#include "kernels/kernels.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ---- the includer's span primitives (see the top) ---- */

static double sum_span(const float *p, int64_t n, bool ab);
static double ss_span(const float *p, int64_t n, double mean);
static double sumexp_span(const float *p, int64_t n, float m);
static float ext_span(const float *p, int64_t n, bool mn, bool ab);
static int64_t find_span(const float *p, int64_t n, float v);
static void amax_bw_row(float *o, const float *x, int64_t n, float r);

/* The max (mn: min) of an accumulator's w lanes v[0..w), NaN-sticky: the
 * end of ext_span. */
static inline float ext_lanes(const float *v, int w, bool mn) {
    float r = v[0];
    for (int j = 1; j < w; j++) {
        if (isnan(r)) break;
        if (isnan(v[j]) || (mn ? v[j] < r : v[j] > r)) r = v[j];
    }
    return r;
}

/* argmax (mn: argmin) of p[0..n): the first NaN, else the first extreme; 0
 * when n is 0. *val gets the value there. */
static int64_t arg_span(const float *p, int64_t n, bool mn, float *val) {
    if (n == 0) {
        *val = NAN;
        return 0;
    }
    *val = ext_span(p, n, mn, false);
    return find_span(p, n, *val);
}

/* logsumexp of p[0..n) in two passes (max, then the sum of e^(x - max)):
 * NaN when any is NaN, the max itself when it is infinite (+inf: some
 * element is; -inf: all are, or n is 0), as ref. *m and *sum get the
 * max and the shifted sum (for combining blocks). */
static double lse_span(const float *p, int64_t n, float *m, double *sum) {
    *m = ext_span(p, n, false, false);
    *sum = 0;
    if (isnan(*m) || isinf(*m)) return *m;
    *sum = sumexp_span(p, n, *m);
    return log(*sum) + *m;
}

/* ---- layout ---- */

enum { RG_INNER, RG_OUTER };

typedef struct rgeo {
    int kind;                        /* RG_INNER or RG_OUTER */
    int nk;                          /* kept blocks (outer: but the last) */
    int64_t kshape[NB_MAX_DIMS];     /* their sizes, in dim order */
    int64_t kstride[NB_MAX_DIMS];    /* their strides in in[0] */
    int64_t nk1;                     /* product of kshape */
    int64_t rlen, rstride;           /* the reduced block: elements, stride */
    int64_t n2;                      /* outer: size of the last kept block (stride 1); inner: 1 */
} rgeo;

/* Reads the call's layout; false when it is not one this file serves. */
static bool rgeo_init(rgeo *g, const nb_tensor *in, const nb_tensor *out) {
    if (in->dtype != NB_DTYPE_F32 || out->ndim != in->ndim || !nb_is_contiguous(out)) return false;
    int64_t sz[NB_MAX_DIMS], sd[NB_MAX_DIMS];
    bool red[NB_MAX_DIMS];
    int n = 0;
    memset(g, 0, sizeof *g);
    g->nk1 = g->rlen = g->n2 = 1;
    g->rstride = 1;
    bool empty = in->numel == 0;
    for (int d = 0; d < in->ndim; d++) {
        bool r = out->shape[d] != in->shape[d] || in->shape[d] == 1;
        if (r && out->shape[d] != 1) return false;
        if (in->shape[d] == 1) continue;
        if (empty) {   /* no data to address: only the slice count and length matter */
            if (r) g->rlen *= in->shape[d];
            else g->kshape[g->nk++] = in->shape[d], g->nk1 *= in->shape[d];
            continue;
        }
        if (n > 0 && red[n - 1] == r && sd[n - 1] == in->stride[d] * in->shape[d]) {
            sz[n - 1] *= in->shape[d];
            sd[n - 1] = in->stride[d];
            continue;
        }
        sz[n] = in->shape[d];
        sd[n] = in->stride[d];
        red[n++] = r;
    }
    if (empty) return true;
    int nred = 0, at = -1;
    for (int i = 0; i < n; i++)
        if (red[i]) nred++, at = i;
    if (nred > 1) return false;
    int lastk = -1;   /* the last kept block: the vector dim of the outer layout */
    for (int i = 0; i < n; i++)
        if (!red[i]) lastk = i;
    if (nred == 1) {
        g->rlen = sz[at];
        g->rstride = sd[at];
        if (sd[at] == 1) g->kind = RG_INNER;
        else if (lastk >= 0 && sd[lastk] == 1) g->kind = RG_OUTER, g->n2 = sz[lastk];
        else return false;
    }
    for (int i = 0; i < n; i++) {
        if (red[i] || (g->kind == RG_OUTER && i == lastk)) continue;
        g->kshape[g->nk] = sz[i];
        g->kstride[g->nk++] = sd[i];
        g->nk1 *= sz[i];
    }
    return true;
}

/* Element offset of kept index k (C order of the kept blocks in rgeo). */
static inline int64_t kept_off(const rgeo *g, int64_t k) {
    if (g->nk == 1) return k * g->kstride[0];
    int64_t off = 0;
    for (int d = g->nk - 1; d >= 0; d--) {
        off += (k % g->kshape[d]) * g->kstride[d];
        k /= g->kshape[d];
    }
    return off;
}

/* ---- what each op does with a span ---- */

typedef enum rop { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_VAR, R_STD, R_LSE, R_NORM } rop;

static double var_div(double ss, int64_t n, double corr) {
    double div = (double)n - corr;
    return ss / (div > 0 ? div : 0.0);   /* n 0: NaN, as ref */
}

/* vector_norm's value from its slice's partial: the sum of |x| (p = 1) or
 * of x^2 (p = 2, exact in double: no scaling needed), or max |x| (INFINITY). */
static float norm_of(double part, double pn) { return (float)(pn == 2 ? sqrt(part) : part); }
/* The slice's partial for vector_norm of order pn (0 for an empty slice). */
static double norm_part(const float *p, int64_t n, double pn) {
    if (pn == 2) return ss_span(p, n, 0.0);
    return pn == 1 ? sum_span(p, n, true) : n ? ext_span(p, n, false, true) : 0.0;
}

/* The value of one contiguous slice (inner layout, one thread). corr: var
 * and std's correction, vector_norm's order (1, 2 or INFINITY). */
static void slice_value(rop op, const float *p, int64_t n, double corr, float *of, int64_t *oi) {
    float v;
    switch (op) {
    case R_SUM: *of = (float)sum_span(p, n, false); break;
    case R_MAX: *of = ext_span(p, n, false, false); break;
    case R_MIN: *of = ext_span(p, n, true, false); break;
    case R_NORM: *of = norm_of(norm_part(p, n, corr), corr); break;
    case R_ARGMAX: *oi = arg_span(p, n, false, &v); break;
    case R_ARGMIN: *oi = arg_span(p, n, true, &v); break;
    case R_LSE: {
        double sum;
        *of = (float)lse_span(p, n, &v, &sum);
        break;
    }
    default: {
        double mean = sum_span(p, n, false) / (double)n, var = var_div(ss_span(p, n, mean), n, corr);
        *of = (float)(op == R_STD ? sqrt(var) : var);
    }
    }
}

/* A full reduction of one long contiguous row: fixed blocks (a function of
 * n only), any thread per block, partials combined in block order. */
#define FULL_MAXBLK 256
#define FULL_MINBLK 8192

/* Combines the blocks' logsumexp partials (max pv[b], shifted sum part[b]):
 * M = the max of the maxima, sum_b part_b e^(m_b - M). */
static float lse_combine(const float *pv, const double *part, int64_t nb) {
    float M = pv[0];
    for (int64_t b = 1; b < nb && !isnan(M); b++)
        if (isnan(pv[b]) || pv[b] > M) M = pv[b];
    if (isnan(M) || isinf(M)) return M;
    double tot = 0;
    for (int64_t b = 0; b < nb; b++)
        if (pv[b] != -INFINITY) tot += part[b] * exp((double)pv[b] - M);
    return (float)(log(tot) + M);
}

static void full_value(rop op, const float *p, int64_t n, double corr, float *of, int64_t *oi) {
    int64_t nb = (n + FULL_MINBLK - 1) / FULL_MINBLK;
    if (nb > FULL_MAXBLK) nb = FULL_MAXBLK;
    if (nb <= 1) {
        slice_value(op, p, n, corr, of, oi);
        return;
    }
    int64_t bs = ((n + nb - 1) / nb + 63) / 64 * 64;
    nb = (n + bs - 1) / bs;
    double part[FULL_MAXBLK];
    float pv[FULL_MAXBLK];
    int64_t pi[FULL_MAXBLK];
    int nt = nb__par_threads(n, NB_GRAIN_ELEMENTWISE);
    bool var = op == R_VAR || op == R_STD;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        int64_t s = b * bs, e = s + bs < n ? s + bs : n;
        if (op == R_LSE) lse_span(p + s, e - s, &pv[b], &part[b]);
        else if (op == R_SUM || var) part[b] = sum_span(p + s, e - s, false);
        else if (op == R_NORM) part[b] = norm_part(p + s, e - s, corr);
        else if (op == R_MAX || op == R_MIN) pv[b] = ext_span(p + s, e - s, op == R_MIN, false);
        else pi[b] = s + arg_span(p + s, e - s, op == R_ARGMIN, &pv[b]);
    }
    if (op == R_LSE) {
        *of = lse_combine(pv, part, nb);
        return;
    }
    if (op == R_NORM) {   /* sums added in block order; maxima: NaN sticks */
        double acc = 0;
        for (int64_t b = 0; b < nb && !isnan(acc); b++)
            acc = isinf(corr) ? (isnan(part[b]) || part[b] > acc ? part[b] : acc) : acc + part[b];
        *of = norm_of(acc, corr);
        return;
    }
    double acc = 0;
    if (op == R_SUM || var)
        for (int64_t b = 0; b < nb; b++) acc += part[b];
    if (op == R_SUM) {
        *of = (float)acc;
        return;
    }
    if (var) {
        double mean = acc / (double)n;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            int64_t s = b * bs, e = s + bs < n ? s + bs : n;
            part[b] = ss_span(p + s, e - s, mean);
        }
        double ss = 0;
        for (int64_t b = 0; b < nb; b++) ss += part[b];
        double v = var_div(ss, n, corr);
        *of = (float)(op == R_STD ? sqrt(v) : v);
        return;
    }
    bool mn = op == R_MIN || op == R_ARGMIN;
    int64_t best = 0;   /* the block holding the result: first NaN, else first extreme */
    for (int64_t b = 1; b < nb && !isnan(pv[best]); b++)
        if (isnan(pv[b]) || (mn ? pv[b] < pv[best] : pv[b] > pv[best])) best = b;
    if (op == R_MAX || op == R_MIN) *of = pv[best];
    else *oi = pi[best];
}

/* ---- the outer layout: tasks of OUT_CW columns ---- */

#define OUT_CW 256

/* The includer's column blocks (see the top): p0 the first column of the
 * first row, w <= OUT_CW columns; they may fill their arrays past w (up to
 * OUT_CW), never read back. R >= 1. */
static void outer_sums(const float *p0, int64_t R, int64_t rs, int64_t w, double *acc);
static void outer_ss(const float *p0, int64_t R, int64_t rs, int64_t w, const double *mean, double *ss);
static void outer_ext(const float *p0, int64_t R, int64_t rs, int64_t w, bool mn, bool arg, float *best,
                      int32_t *idx);

/* Outer layout: columns [c0, c0+w) of the last kept block, for kept index
 * k1: out[k1*n2 + c] folds the rlen rows at stride rstride. w <= OUT_CW. */
static void outer_block(rop op, const rgeo *g, const float *base, double corr, float *of, int64_t *oi, int64_t k1,
                        int64_t c0, int64_t w) {
    const float *p0 = base + kept_off(g, k1) + c0;
    int64_t R = g->rlen, rs = g->rstride, o = k1 * g->n2 + c0, c;
    if (op == R_SUM || op == R_VAR || op == R_STD) {
        double acc[OUT_CW], ss[OUT_CW];
        outer_sums(p0, R, rs, w, acc);
        if (op == R_SUM) {
            for (c = 0; c < w; c++) of[o + c] = (float)acc[c];
            return;
        }
        for (c = 0; c < w; c++) acc[c] /= (double)R;   /* the mean */
        outer_ss(p0, R, rs, w, acc, ss);
        for (c = 0; c < w; c++) {
            double v = var_div(ss[c], R, corr);
            of[o + c] = (float)(op == R_STD ? sqrt(v) : v);
        }
        return;
    }
    bool mn = op == R_MIN || op == R_ARGMIN, arg = op == R_ARGMAX || op == R_ARGMIN;
    float best[OUT_CW];   /* R >= 1: empty inputs never get here */
    int32_t idx[OUT_CW];
    outer_ext(p0, R, rs, w, mn, arg, best, idx);
    for (c = 0; c < w; c++) {
        if (arg) oi[o + c] = idx[c];
        else of[o + c] = best[c];
    }
}

/* ---- the driver ---- */

static int run(const nb_kernel_args *a, rop op) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    bool arg = op == R_ARGMAX || op == R_ARGMIN;
    if (out->dtype != (arg ? NB_DTYPE_I64 : NB_DTYPE_F32)) return NB_KERNEL_DECLINE;
    rgeo g;
    if (!rgeo_init(&g, in, out)) return NB_KERNEL_DECLINE;
    if (g.kind == RG_OUTER && g.rlen > INT32_MAX) return NB_KERNEL_DECLINE;   /* int32 lane indices */
    if (g.kind == RG_OUTER && (op == R_LSE || op == R_NORM)) return NB_KERNEL_DECLINE;   /* inner dims only */
    if (op == R_NORM && a->scalar[0] != 1 && a->scalar[0] != 2 && !isinf(a->scalar[0])) return NB_KERNEL_DECLINE;
    float *of = arg ? NULL : nb_data(out);
    int64_t *oi = arg ? nb_data(out) : NULL;
    const float *base = in->numel ? nb_data(in) : NULL;
    double corr = a->scalar[0];
    int64_t cnt = g.nk1 * g.n2;
    if (cnt == 0) return 0;
    if (in->numel == 0) {   /* empty slices: ref's values (sum 0, amax -inf, argmax 0, var NaN) */
        for (int64_t k = 0; k < cnt; k++) slice_value(op, NULL, 0, corr, arg ? NULL : of + k, arg ? oi + k : NULL);
        return 0;
    }
    int64_t work = g.nk1 * g.n2 * g.rlen * (op == R_VAR || op == R_STD ? 2 : 1);
    int grain = op == R_LSE ? NB_GRAIN_TRANSCENDENTAL : NB_GRAIN_ELEMENTWISE;
    if (g.kind == RG_INNER) {
        if (g.nk1 == 1) {
            full_value(op, base, g.rlen, corr, of, oi);
            return 0;
        }
        int nt = nb__par_threads(work, grain);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int64_t k = 0; k < g.nk1; k++)
            slice_value(op, base + kept_off(&g, k), g.rlen, corr, arg ? NULL : of + k, arg ? oi + k : NULL);
        return 0;
    }
    int nt = nb__par_threads(work, NB_GRAIN_ELEMENTWISE);
    /* OUT_CW columns a task, or narrower where that left threads idle: a
       [4096, 1024] sum over dim 0 made 4 tasks, so at 16 threads 12 sat idle
       (0.60 of PyTorch 2.11's rate on a 16-core Xeon VM). Each column adds
       its rows in order at any width: the bits do not change with it. */
    int64_t cw = nb__col_width(g.nk1, g.n2, nt, OUT_CW, 16), nbk = (g.n2 + cw - 1) / cw, tasks = g.nk1 * nbk;
    if (nt > tasks) nt = (int)tasks;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t k1 = t / nbk, c0 = (t % nbk) * cw;
        int64_t w = g.n2 - c0 < cw ? g.n2 - c0 : cw;
        outer_block(op, &g, base, corr, of, oi, k1, c0, w);
    }
    return 0;
}

/* ---- the backward of max / min over dims (AMAX_BACKWARD), reduced dims
 * contiguous (the inner layout of rgeo, with out laid out as x) ----
 * in[0] x, in[1] r (the slice's extreme, reduced shape): out = (x == r) /
 * count, NaN over a slice where nothing equals r (a NaN r), 1 / count
 * rounded once from double: ref's bits. Slices are split over threads. */

static int k_amax_backward(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *r = a->nin > 1 ? a->in[1] : NULL;
    nb_tensor *out = a->out;
    rgeo g;
    if (!r || r->dtype != NB_DTYPE_F32 || out->dtype != NB_DTYPE_F32 || !nb_is_contiguous(x) ||
        !nb_is_contiguous(out) || !nb__same_shape(x, out) || !rgeo_init(&g, x, r) || g.kind != RG_INNER ||
        x->numel == 0)
        return NB_KERNEL_DECLINE;
    const float *xb = nb_data(x), *rb = nb_data(r);
    float *ob = nb_data(out);
    int nt = nb__par_threads(x->numel, NB_GRAIN_ELEMENTWISE);
    if (nt > g.nk1) nt = (int)g.nk1;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t k = 0; k < g.nk1; k++) {
        int64_t off = kept_off(&g, k);
        amax_bw_row(ob + off, xb + off, g.rlen, rb[k]);
    }
    return 0;
}

static int k_sum(const nb_kernel_args *a) { return run(a, R_SUM); }
static int k_amax(const nb_kernel_args *a) { return run(a, R_MAX); }
static int k_amin(const nb_kernel_args *a) { return run(a, R_MIN); }
static int k_argmax(const nb_kernel_args *a) { return run(a, R_ARGMAX); }
static int k_argmin(const nb_kernel_args *a) { return run(a, R_ARGMIN); }
static int k_var(const nb_kernel_args *a) { return run(a, R_VAR); }
static int k_std(const nb_kernel_args *a) { return run(a, R_STD); }
static int k_logsumexp(const nb_kernel_args *a) { return run(a, R_LSE); }
static int k_vector_norm(const nb_kernel_args *a) { return run(a, R_NORM); }

#endif /* NB_X86_REDUCE_DRIVER_H */
