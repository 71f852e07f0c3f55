/* rows_driver.h — the ISA-neutral half of the softmax family, cross entropy
 * and NLL_LOSS_BACKWARD kernels (x86/avx2/avx2_rows.c,
 * x86/avx512/avx512_rows.c), included by each in its own library (so
 * compiled with that library's -m flags: no intrinsics here).
 *
 * This header gives the layout checks, the row walks and thread splits,
 * cross entropy's call (ce_call, ce_open) and per-row formulas (ce_row),
 * NLL_LOSS_BACKWARD's checks and per-class terms, and the entry points the
 * includer registers:
 *   rows_softmax, rows_log_softmax, rows_softmax_backward,
 *   rows_log_softmax_backward, rows_cross_entropy,
 *   rows_cross_entropy_backward, rows_nll_loss_backward.
 * The includer defines the vector pieces declared below (anywhere in the
 * file): the row max and sum of exponentials, the double dot product, the
 * softmax rows forward and backward, cross entropy's gradient scaling and
 * NLL_LOSS_BACKWARD's row. See avx2_rows.c's notes on the method.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_ROWS_DRIVER_H
#define NB_X86_ROWS_DRIVER_H

#include "kernels/kernels.h"
#include "rows_common.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the includer's vector pieces ---- */

/* Max of p[0..n) ignoring NaN (as ref's fmax): -inf when nothing else. */
static float row_max(const float *p, int64_t n);
/* sum of e^(p[i] - m) (F32 blocks); e^(p[i] - m) stored to e when e is not
 * NULL; pf[0..n) prefetched to L2 along the way when pf is not NULL. */
static double row_sumexp(const float *p, int64_t n, float m, float *e, const float *pf);
/* sum of a[i] * b[i] (b NULL: sum of a) in double. */
static double dot_span_d(const float *a, const float *b, int64_t n);
/* One softmax (logs: log_softmax) row y[0..n) of x; big: the output is
 * large enough for streaming stores (stream_ok). */
static void softmax_row(const float *x, float *y, int64_t n, bool logs, bool big);
#ifdef ROWS_LATE_FLUSH
#include <immintrin.h>   /* _mm_sfence */

/* Softmax rows written one row late (measured in avx512_rows.c): a big
 * streamed row's e^(x - m) goes to one of two per-thread scratch rows and
 * its y = e / sum is left pending, to be streamed 16 (AVX2: 8) floats at a
 * time inside the next row's exp pass (the includer's row_sumexp_late), so
 * the streaming stores drain under that compute instead of stalling a pass
 * of their own. Same values, only written later; rows_late_flush writes a
 * thread's last pending row and fences, once each thread is done. */
typedef struct late_row {
    float buf[2][NT_MAXROW];   /* scratch rows: the pending one and the next */
    const float *e;            /* the pending row's e, or NULL */
    float *y;                  /* where it goes */
    float inv;                 /* 1 / its sum */
    int64_t n;
    int cur;                   /* buf the next row computes into */
} late_row;
static _Thread_local late_row late __attribute__((aligned(64)));
/* The includer's: y[0..n) = e * inv with streaming stores (n a multiple of
 * its vector, y aligned to it); row_sumexp into e, the pending row (of the
 * same n) streamed meanwhile, late.e cleared. */
static void late_stream(const float *e, float *y, float inv, int64_t n);
static double row_sumexp_late(const float *p, int64_t n, float m, float *e, const float *pf);

static void late_write(void) {
    if (!late.e) return;
    late_stream(late.e, late.y, late.inv, late.n);
    late.e = NULL;
}

/* Writes the pending row, then orders the streamed stores. */
static void rows_late_flush(void) {
    if (!late.e) return;
    late_write();
    _mm_sfence();
}

/* A softmax row through the late path: e into a scratch row, y pending. */
static void softmax_row_late(const float *x, float *y, int64_t n, float m, const float *pf) {
    if (late.e && late.n != n) late_write();
    float *e = late.buf[late.cur];
    float inv = (float)(1.0 / row_sumexp_late(x, n, m, e, pf));
    late.e = e, late.y = y, late.inv = inv, late.n = n, late.cur ^= 1;
}
#endif
/* One backward row dx[0..n) from g and y (see rows_softmax_backward). */
static void softmax_bw_row(const float *g, const float *y, float *dx, int64_t n, bool logs, bool big);
/* dx[k] = ga * inv * dx[k], then (smooth) minus gb * (w ? w[k] : 1), in
 * F32, for k in [0, C). */
static void ce_dx_row(float *dx, const float *w, int64_t C, float ga, float inv, float gb, bool smooth);
/* o[c] = (float)(gr * dc[c]) for c in [0, C) (the product in double). */
static void nll_row(float *o, const double *dc, int64_t C, double gr);

/* ---- softmax / log_softmax: out = exp(x - lse) or x - lse; scalar[0] = dim ---- */

/* The row whose max m is not finite (+inf, or only -inf/NaN): lse = m, as
 * ref, in double. False (nothing written) when m is finite. */
static inline bool softmax_row_special(const float *x, float *y, int64_t n, float m, bool logs) {
    if (isfinite(m)) return false;
    for (int64_t i = 0; i < n; i++) {
        double v = (double)x[i] - m;
        y[i] = (float)(logs ? v : exp(v));
    }
    return true;
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
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1)
    {
#pragma omp for schedule(dynamic, row_chunk(len, rows, nt)) nowait
        for (int64_t r = 0; r < rows; r++)
            softmax_row(xb + row_off(x, dim, r, len, fx), yb + row_off(y, dim, r, len, fy), len, logs,
                        y->numel >= NT_MINTOTAL);
#ifdef ROWS_LATE_FLUSH
        rows_late_flush();
#endif
    }
    return 0;
}
static int rows_softmax(const nb_kernel_args *a) { return softmax_rows(a, false); }
static int rows_log_softmax(const nb_kernel_args *a) { return softmax_rows(a, true); }

/* ---- backwards: in[0] = g, in[1] = y; scalar[0] = dim ----
 * softmax:     dx = y * (g - sum(g * y))
 * log_softmax: dx = g - exp(y) * sum(g) */
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
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(dynamic, row_chunk(len, rows, nt))
    for (int64_t r = 0; r < rows; r++)
        softmax_bw_row(gb + row_off(g, dim, r, len, fg), yb + row_off(y, dim, r, len, fy),
                       db + row_off(dx, dim, r, len, fd), len, logs, dx->numel >= NT_MINTOTAL);
    return 0;
}
static int rows_softmax_backward(const nb_kernel_args *a) { return softmax_backward_rows(a, false); }
static int rows_log_softmax_backward(const nb_kernel_args *a) { return softmax_backward_rows(a, true); }

/* ---- cross entropy on class indices, (N, C) logits ----
 * in[0] = x, in[1] = t (i64), in[2] = w or NULL, [in[3] = g (N)];
 * scalar[0] = ignore_index, scalar[1] = label smoothing eps (see ref_softmax.c). */

/* 0 when every target t[i * st] (i < N) is ign or a class in [0, C), else
 * NB_ERANGE's error for op (the public op's name, "nb_" before it). */
static int targets_check(const int64_t *t, int64_t st, int64_t N, int64_t C, int64_t ign, const char *op) {
    for (int64_t i = 0; i < N; i++) {
        int64_t tc = t[i * st];
        if (tc != ign && (tc < 0 || tc >= C))
            return nb__err(NB_ERANGE, "nb_%s: target %lld is out of bounds for %lld classes", op, (long long)tc,
                           (long long)C);
    }
    return 0;
}

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
    /* before any thread starts: an error leaves out unwritten */
    return targets_check(c->t, c->st, c->N, c->C, c->ign, "cross_entropy");
}

static inline double ce_w(const ce_call *c, int64_t k) { return c->w ? (double)c->w[k] : 1.0; }

/* Row i's loss, or its gradient row (scaled by gv) when dx is set. */
static double ce_row(const ce_call *c, int64_t i, float *dx, double gv) {
    const float *x = c->x + i * c->sxr;
    int64_t C = c->C, tc = c->t[i * c->st], k;
    if (tc == c->ign) {
        if (dx) memset(dx, 0, sizeof(float) * (size_t)C);
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
    ce_dx_row(dx, c->w, C, (float)(gv * A), (float)exp(m - lse), (float)(gv * B), eps > 0);
    double p = exp(x[tc] - lse), d = (1 - eps) * wt * (p - 1.0);
    if (eps > 0) d += eps / (double)C * (c->W * p - wt);
    dx[tc] = (float)(gv * d);
    return 0;
}

static int rows_cross_entropy(const nb_kernel_args *a) {
    ce_call c;
    nb_tensor *out = a->out;
    if (out->ndim != 1) return NB_KERNEL_DECLINE;
    int rc = ce_open(&c, a);
    if (rc) return rc;
    float *ob = nb_data(out);
    int64_t so = out->stride[0];
    int nt = nb__par_threads(c.N * c.C, NB_GRAIN_TRANSCENDENTAL);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < c.N; i++) ob[i * so] = (float)ce_row(&c, i, NULL, 0);
    return 0;
}

static int rows_cross_entropy_backward(const nb_kernel_args *a) {
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
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < c.N; i++) ce_row(&c, i, db + i * sd, gb[i * sg]);
    return 0;
}

/* ---- NLL_LOSS_BACKWARD on a contiguous (N, C) dx ----
 * 1-D targets, g of any stride, weights contiguous or none: ref_loss.c's
 * double expression per element, with the off-target term
 * -(1-eps) 0 - eps/C w_c computed once per class instead of per element:
 * dx = gv d rounded once (nll_row), bitwise ref's (signed zeros included);
 * rows split over threads. Targets are all checked first. */
static int rows_nll_loss_backward(const nb_kernel_args *a) {
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
    int rc = targets_check(tv, st, N, C, ign, "nll_loss");
    if (rc) return rc;
    /* 64-byte aligned: a zmm load of dc must not straddle two lines */
    double *dc = aligned_alloc(64, (sizeof *dc * (size_t)C + 63) / 64 * 64);
    if (!dc) return nb__err(NB_ENOMEM, "nb_nll_loss: out of memory");
    for (int64_t c = 0; c < C; c++) dc[c] = -(1 - eps) * 0.0 - eps / (double)C * (wv ? (double)wv[c] : 1.0);
    float *db = nb_data(dx);
    int nt = nb__par_threads(N * C, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < N; r++) {
        float *o = db + r * C;
        int64_t tc = tv[r * st];
        if (tc == ign) {
            memset(o, 0, sizeof(float) * (size_t)C);
            continue;
        }
        double gr = gv[r * sg], wt = wv ? (double)wv[tc] : 1.0;
        nll_row(o, dc, C, gr);
        o[tc] = (float)(gr * (-(1 - eps) * wt - eps / (double)C * wt));
    }
    free(dc);
    return 0;
}

#endif
