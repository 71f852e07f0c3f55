/* norm_common.h — the ISA-neutral half of the layer_norm, rms_norm and
 * group_norm kernels (x86/avx2/avx2_norm.c, x86/avx512/avx512_norm.c),
 * included by each in its own library (so compiled with that library's -m
 * flags): the operand checks and layouts, the row statistics' scalar
 * frame, the thread splits and fixed row blocks, and the kernels' entry
 * points. Both twins thus read, serve, decline and split a call alike.
 *
 * The includer defines before this header:
 *   NT_MINTOTAL                        outputs this large count as big (stream)
 *   NT_MAXROW                          rows up to this long prefetch the next one
 *   row_chunk(n, rows, nt)             rows handed to a thread at a time
 *   sum_span(p, n), ss_span(p, n, mean, pf)   its F32-block row sums
 *   vec_row(t, r, C, dflt, dst)        a weight/bias as floats (avx2_rows.h's)
 * and after it the vector row code, given each row's statistics (mean,
 * rstd) by this header (prototypes below):
 *   ln_row      a layer_norm/rms_norm forward row
 *   ln_bw_row   a backward row (ln_bw)
 *   lnp_row     a row's terms of layer_norm_param_backward's sums
 *   gn_slice    a group_norm slice, forward or backward
 * It registers the entry points ln_forward, rms_forward, ln_backward,
 * rms_backward, lnp_run (layer_norm_param_backward), gn_forward and
 * gn_backward under its own names.
 *
 * ---- layer_norm over the last k dims: in {x, w, b, stats} / backward
 * {dy, x, w, stats}; scalar {k, eps[, fused]} (ref_norm.c) ----
 * The forward also writes each row's (mean, rstd) into stats when given
 * (F32 (R, 2) contiguous); the backward then reads them instead of
 * recomputing (the same F32 values ln_moments gives). Fused backward: out
 * (R + 2, n) = dx rows, then dweight and dbias, summed in fixed row blocks
 * as layer_norm_param_backward below, in the same pass that writes dx.
 * Big outputs (>= NT_MINTOTAL floats) are written with streaming stores and
 * the next rows are prefetched, as softmax. Rows (blocks) are handed out
 * dynamically, and each row is computed by the same code wherever it runs.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_NORM_COMMON_H
#define NB_X86_NORM_COMMON_H

#include "kernels/kernels.h"
#include "nb_config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Rows of layer_norm_param_backward's fixed blocks (see there), from the
 * row count alone: an eighth of the rows, at least 16 and at most 64. At 64
 * a block, an MLP batch of 64-512 rows made 1-8 blocks, the unit of work of
 * the fused backward too (dx included), so most threads of a team had none:
 * (64, 1024) at 2 threads 52-58 -> 36 us a backward; the extra blocks cost
 * 1 thread 55-59 -> 67 us there (256 rows: within noise either way). The
 * same rows give the same blocks at any thread count: the bits still do
 * not depend on it. */
static inline int64_t lnp_blk(int64_t rows) {
    int64_t b = (rows + 7) / 8;
    return b < 16 ? 16 : b > 64 ? 64 : b;
}

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

/* mean and 1/sqrt(var + eps) of a row: F32 sums (sum_span), the squared
 * deviations taken from the F32 mean in a second pass over the (L1) row
 * (ss_span, prefetching pf when not NULL). */
#ifdef LN_LATE
/* Forward rows written one row late (the includer defines LN_LATE; as
 * rows_driver.h's softmax rows): a big streamed row's y is left pending and
 * streamed a vector at a time inside the next row's squared-deviation pass
 * (the includer's ss_span_late), so the streaming stores drain under that
 * pass instead of stalling one of their own. The pending row is computed
 * from x, w, b and its moments as ln_row would: same values, written later.
 * ln_late_flush writes a thread's last pending row and fences. */
typedef struct ln_late_row {
    const float *x, *w, *b;   /* the pending row's x (NULL: none), the weight and bias (or NULL) */
    float *y;                 /* where its y goes */
    float mean, rstd;
    int64_t n;
} ln_late_row;
static _Thread_local ln_late_row ln_late;
/* The includer's: the pending row's y with streaming stores (n a multiple
 * of its vector, y aligned to it); ss_span with the pending row (of the
 * same n) streamed meanwhile, ln_late.x cleared. */
static void ln_late_stream(const ln_late_row *p);
static double ss_span_late(const float *x, int64_t n, float mean, const float *pf);

static void ln_late_write(void) {
    if (!ln_late.x) return;
    ln_late_stream(&ln_late);
    ln_late.x = NULL;
}

/* Writes the pending row, then orders the streamed stores. */
static void ln_late_flush(void) {
    if (!ln_late.x) return;
    ln_late_write();
    _mm_sfence();
}
#endif

/* ln_moments below; late: the pending row is streamed in the second pass. */
static void ln_moments_late(const float *x, int64_t n, double eps, bool center, float *mean, float *rstd,
                            const float *pf, bool late) {
    double sum = center ? sum_span(x, n) : 0.0, ss;
    *mean = (float)(sum / (double)n);   /* rms_norm: the root mean square, about 0 */
#ifdef LN_LATE
    ss = late ? ss_span_late(x, n, *mean, pf) : ss_span(x, n, *mean, pf);
#else
    (void)late;
    ss = ss_span(x, n, *mean, pf);
#endif
    if (!isfinite(sum) || !isfinite(ss) || !isfinite(*mean)) {
        /* an F32 block overflowed (|x| beyond ~1e19 squared), or x holds inf/NaN:
           the row again in double, as ref (which then gives inf/NaN too) */
        double m = 0, q = 0;
        for (int64_t i = 0; center && i < n; i++) m += x[i];
        m /= (double)n;
        for (int64_t i = 0; i < n; i++) q += ((double)x[i] - m) * ((double)x[i] - m);
        *mean = (float)m;
        ss = q;
    }
    *rstd = (float)(1.0 / sqrt(ss / (double)n + eps));
}

static void ln_moments(const float *x, int64_t n, double eps, bool center, float *mean, float *rstd, const float *pf) {
    ln_moments_late(x, n, eps, center, mean, rstd, pf, false);
}

/* One backward row. */
typedef struct ln_bw {
    const float *dy, *x, *w;   /* the row's dy and x, the weight (or NULL) */
    float *dx;                 /* the row's dx */
    float *acc;                /* 2n floats += (dy x̂; dy), or NULL */
    int64_t n;                 /* row length */
    float mean, rstd;          /* the row's moments (saved or ln_moments') */
    bool center;               /* layer_norm; false: rms_norm (no mean, dx without mean(gw)) */
    bool big;                  /* big flat tensors: stream dx, prefetch the next rows */
} ln_bw;

/* The includer's vector row code, x̂ = (x - mean) rstd. */
/* y = x̂ w + b for one row (w, b NULL: 1, 0). big: a big flat output
 * (stream it when stream_ok). */
static void ln_row(const float *x, float *y, const float *w, const float *b, int64_t n, float mean, float rstd,
                   bool big);
/* dx = rstd * (gw - mean(gw) - x̂ mean(gw x̂)), gw = dy * w, of one row,
 * adding (dy x̂; dy) into r->acc when not NULL. */
static void ln_bw_row(const ln_bw *r);
/* aw[i] += gr[i] x̂[i], ab[i] += gr[i] over a row of n (x̂ of xr). */
static void lnp_row(const float *xr, const float *gr, int64_t n, float mean, float rstd, float *aw, float *ab);
/* One group_norm slice of cpg channels of S values (a group of one
 * sample): y = x̂ w[c] + b[c], or dx from dy when dy is not NULL; len =
 * cpg S values, (mean, rstd) over them. */
static void gn_slice(const float *x, const float *dy, float *y, const float *w, const float *b, int64_t cpg, int64_t S,
                     float mean, float rstd);

/* A checked layer_norm call: the operands' rows. */
typedef struct ln_call {
    const nb_tensor *x, *y, *dy;      /* x; out (the dx rows when fused); dy (backward) */
    const float *xb, *wb, *bb, *db;   /* data of x, weight, bias, dy (NULL when absent) */
    float *yb;                        /* out's data */
    float *st;                        /* saved (R, 2) stats or NULL */
    int split;                        /* x's dims [split, ndim) are normalized */
    int64_t n, rows;                  /* row length, rows */
    bool fx, fy, fd;                  /* x, out, dy wholly contiguous */
    double eps;                       /* added to the variance */
    bool center;                      /* layer_norm; false: rms_norm */
} ln_call;

/* Reads and checks a layer_norm call: false = decline. */
static bool ln_open(ln_call *c, const nb_kernel_args *a, bool backward, bool fused, bool center) {
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
                   .fd = dy && nb_is_contiguous(dy), .eps = a->scalar[1], .center = center};
    return true;
}

/* The backward of row r into its dx, adding to acc when not NULL: the
 * row's saved moments or ln_moments', then ln_bw_row. */
static inline void ln_bw_at(const ln_call *c, int64_t r, float *acc, bool big) {
    int64_t n = c->n;
    const float *x = c->xb + outer_off(c->x, c->split, r, n, c->fx);
    float mean, rstd;
    if (c->st) {
        mean = c->st[2 * r];
        rstd = c->st[2 * r + 1];
    } else {
        ln_moments(x, n, c->eps, c->center, &mean, &rstd, NULL);
    }
    ln_bw_row(&(ln_bw){.dy = c->db + outer_off(c->dy, c->split, r, n, c->fd), .x = x, .w = c->wb,
                       .dx = c->yb + (c->fy ? r * n : outer_off(c->y, c->split, r, n, false)), .acc = acc, .n = n,
                       .mean = mean, .rstd = rstd, .center = c->center, .big = big});
}

/* The forward of row r: its moments (prefetching the next row of x to L2
 * when big), written to the stats when asked, then ln_row. */
static inline void ln_fw_at(const ln_call *c, int64_t r, bool big) {
    int64_t n = c->n;
    const float *x = c->xb + outer_off(c->x, c->split, r, n, c->fx);
    float *y = c->yb + outer_off(c->y, c->split, r, n, c->fy);
    float mean, rstd;
#ifdef LN_LATE
    bool late = nb__ln_late && big && n <= NT_MAXROW && n % LN_LATE == 0 && ((uintptr_t)y % (4 * LN_LATE)) == 0;
    if (ln_late.x && (!late || ln_late.n != n)) ln_late_write();
#else
    const bool late = false;
#endif
    ln_moments_late(x, n, c->eps, c->center, &mean, &rstd, big && n <= NT_MAXROW ? x + n : NULL, late);
    if (c->st) {
        c->st[2 * r] = mean;
        c->st[2 * r + 1] = rstd;
    }
#ifdef LN_LATE
    if (late) {
        ln_late = (ln_late_row){.x = x, .w = c->wb, .b = c->bb, .y = y, .mean = mean, .rstd = rstd, .n = n};
        return;
    }
#endif
    ln_row(x, y, c->wb, c->bb, n, mean, rstd, big);
}

/* layer_norm (center) or rms_norm forward. */
static int norm_forward(const nb_kernel_args *a, bool center) {
    ln_call c;
    if (!ln_open(&c, a, false, false, center)) return NB_KERNEL_DECLINE;
    bool big = c.fx && c.fy && c.x->numel >= NT_MINTOTAL;
    int nt = nb__par_threads(c.x->numel * 2, NB_GRAIN_ELEMENTWISE);
    int64_t ch = row_chunk(c.n, c.rows, nt);
#if NB_HAVE_OPENMP
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1)
#endif
    {
#if NB_HAVE_OPENMP
#pragma omp for schedule(dynamic, ch) nowait
#endif
        for (int64_t r = 0; r < c.rows; r++) ln_fw_at(&c, r, big);
#ifdef LN_LATE
        ln_late_flush();
#endif
    }
    (void)ch;
    (void)nt;
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

/* Fused: dx rows, and the (dweight; dbias) sums in fixed blocks of lnp_blk
 * rows (F32 within a block, the block partials added in block order in
 * double), as layer_norm_param_backward: bitwise the same at any thread
 * count. */
static int ln_backward_fused(const ln_call *c) {
    int64_t n = c->n, blk = lnp_blk(c->rows), nblk = (c->rows + blk - 1) / blk;
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
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(dynamic, 1)
#endif
    for (int64_t bk = 0; bk < nblk; bk++) {
        float *acc = part + bk * 2 * n;
        int64_t r1 = (bk + 1) * blk < c->rows ? (bk + 1) * blk : c->rows;
        for (int64_t i = 0; i < 2 * n; i++) acc[i] = 0.0f;
        for (int64_t r = bk * blk; r < r1; r++) ln_bw_at(c, r, acc, big);
    }
    return sum_blocks(part, nblk, 2 * n, o, "layer_norm_backward");
}

/* layer_norm (center; fused when scalar[2] != 0) or rms_norm backward. */
static int norm_backward(const nb_kernel_args *a, bool center) {
    ln_call c;
    bool fused = center && a->scalar[2] != 0;
    if (!ln_open(&c, a, true, fused, center)) return NB_KERNEL_DECLINE;
    if (fused) return ln_backward_fused(&c);
    bool big = c.fx && c.fy && c.fd && c.x->numel >= NT_MINTOTAL;
    int nt = nb__par_threads(c.x->numel * 3, NB_GRAIN_ELEMENTWISE);
    int64_t ch = row_chunk(c.n, c.rows, nt);
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(dynamic, ch)
#endif
    for (int64_t r = 0; r < c.rows; r++) ln_bw_at(&c, r, NULL, big);
    (void)ch;
    (void)nt;
    return 0;
}
static int ln_forward(const nb_kernel_args *a) { return norm_forward(a, true); }
static int rms_forward(const nb_kernel_args *a) { return norm_forward(a, false); }
static int ln_backward(const nb_kernel_args *a) { return norm_backward(a, true); }
static int rms_backward(const nb_kernel_args *a) { return norm_backward(a, false); }

/* ---- layer_norm_param_backward: out (2, n) = (sum dy x̂; sum dy) over the
 * rows; in {dy, x}, scalar {k, eps, rms} ----
 * Rows are taken in fixed blocks of lnp_blk(rows): each block sums its rows into
 * F32 column accumulators (lnp_row; a row's mean and rstd as ln_row's),
 * the block partials are then added in block order in double. Which thread
 * runs a block does not matter, so the result is bitwise the same at any
 * thread count. Error: F32 over at most 64 terms a column, then
 * double. */
/* Adds rows [r0, r1) into acc (2n floats: sum dy x̂, then sum dy). */
static void lnp_block(const nb_tensor *dy, const nb_tensor *x, int split, int64_t n, int64_t r0, int64_t r1,
                      double eps, bool center, float *acc) {
    bool fx = nb_is_contiguous(x), fd = nb_is_contiguous(dy);
    const float *xb = nb_data(x), *db = nb_data(dy);
    for (int64_t i = 0; i < 2 * n; i++) acc[i] = 0.0f;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = xb + outer_off(x, split, r, n, fx), *gr = db + outer_off(dy, split, r, n, fd);
        float mean, rstd;
        ln_moments(xr, n, eps, center, &mean, &rstd, NULL);
        lnp_row(xr, gr, n, mean, rstd, acc, acc + n);
    }
}

static int lnp_run(const nb_kernel_args *a) {
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
    int64_t rows = x->numel / n, blk = lnp_blk(rows), nblk = (rows + blk - 1) / blk;
    float *o = nb_data(out);
    if (nblk == 0) {
        for (int64_t i = 0; i < 2 * n; i++) o[i] = 0.0f;
        return 0;
    }
    float *part = malloc(sizeof *part * (size_t)(nblk * 2 * n));
    if (!part)
        return nb__err(NB_ENOMEM, "layer_norm_param_backward: out of memory for %lld block sums", (long long)nblk);
    int nt = nb__par_threads(x->numel * 2, NB_GRAIN_ELEMENTWISE);
    if (nt > nblk) nt = (int)nblk;
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(dynamic, 1)
#endif
    for (int64_t bk = 0; bk < nblk; bk++) {
        int64_t r0 = bk * blk, r1 = r0 + blk < rows ? r0 + blk : rows;
        lnp_block(dy, x, split, n, r0, r1, eps, a->scalar[2] == 0, part + bk * 2 * n);
    }
    return sum_blocks(part, nblk, 2 * n, o, "layer_norm_param_backward");
}

/* ---- group_norm: in {x (N, C, *), w, b} / backward {dy, x, w}; scalar
 * {groups, eps} (ref_norm.c) ----
 * x contiguous: a group's values are one contiguous slice of C/G channels
 * of S values each; its moments are ln_moments' (F32 blocks into double),
 * then per channel y = x̂ w[c] + b[c], or
 * dx = rstd (gw - mean(gw) - x̂ mean(gw x̂)), gw = dy w[c], the sums over the
 * slice (gn_slice, given the slice's moments). One slice per task, so the bits do not depend on the
 * thread count. w and b any strides (read into float vectors). */
static bool gn_open(const nb_kernel_args *a, bool backward, int64_t *N, int64_t *C, int64_t *G, int64_t *S) {
    const nb_tensor *x = a->in[backward ? 1 : 0], *dy = backward ? a->in[0] : NULL, *y = a->out;
    if (!x || x->dtype != NB_DTYPE_F32 || y->dtype != NB_DTYPE_F32 || x->ndim < 2 || !nb_is_contiguous(x) ||
        !nb_is_contiguous(y) || y->numel != x->numel ||
        (backward && (!dy || dy->dtype != NB_DTYPE_F32 || !nb_is_contiguous(dy) || dy->numel != x->numel)))
        return false;
    *N = x->shape[0], *C = x->shape[1], *G = (int64_t)a->scalar[0];
    if (*G < 1 || *C % *G || *N * *C == 0) return false;
    *S = x->numel / (*N * *C);
    return *S > 0;
}

static int gn_run(const nb_kernel_args *a, bool backward) {
    int64_t N, C, G, S;
    if (!gn_open(a, backward, &N, &C, &G, &S)) return NB_KERNEL_DECLINE;
    float *wb = malloc(sizeof(float) * (size_t)(2 * C));
    if (!wb) return nb__err(NB_ENOMEM, "group_norm: out of memory");
    float *w = wb, *b = wb + C;
    if (!vec_row(a->in[backward ? 2 : 1], 0, C, 1.0f, w) || !vec_row(backward ? NULL : a->in[2], 0, C, 0.0f, b)) {
        free(wb);
        return NB_KERNEL_DECLINE;
    }
    const float *xb = nb_data(a->in[backward ? 1 : 0]), *db = backward ? nb_data(a->in[0]) : NULL;
    float *yb = nb_data(a->out);
    int64_t cpg = C / G, len = cpg * S;
    double eps = a->scalar[1];
    int nt = nb__par_threads(N * C * S * (backward ? 3 : 2), NB_GRAIN_ELEMENTWISE);
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(dynamic, 1)
#endif
    for (int64_t sl = 0; sl < N * G; sl++) {
        int64_t c0 = (sl % G) * cpg;
        const float *x = xb + sl * len;
        float mean, rstd;
        ln_moments(x, len, eps, true, &mean, &rstd, NULL);
        gn_slice(x, db ? db + sl * len : NULL, yb + sl * len, w + c0, b + c0, cpg, S, mean, rstd);
    }
    (void)nt;
    free(wb);
    return 0;
}
static int gn_forward(const nb_kernel_args *a) { return gn_run(a, false); }
static int gn_backward(const nb_kernel_args *a) { return gn_run(a, true); }

#endif
