/* ref_norm.c — portable kernels of the normalizations: layer_norm, rms_norm,
 * group_norm, batch_norm, and their input-gradient (backward) kernels.
 *
 * What each kernel receives (w, b may be NULL for "none"; scalar[] in order):
 *   LAYER_NORM           out y (x's shape) <- in {x, w, b, stats}; w, b have x's last k dims;
 *                        scalar {k, eps}; stats, when given (nin 4, not NULL), is an (R, 2)
 *                        tensor of x's dtype (R = rows: the product of x's other dims) that
 *                        also receives each row's (mean, rstd) (NaN for empty rows), as
 *                        MAX_POOL2D's indices
 *   RMS_NORM             out y <- in {x, w}; scalar {k, eps}
 *   LAYER_NORM_BACKWARD  out dx (x's shape) <- in {dy, x, w, stats}; scalar {k, eps, fused};
 *                        stats (optional) as LAYER_NORM wrote it: a kernel may take mean and
 *                        rstd from it instead of recomputing them (ref recomputes, in
 *                        double). fused != 0: out is a contiguous (R + 2, n) tensor, rows
 *                        [0, R) receive dx (x's shape in C order), rows R and R + 1 dweight
 *                        and dbias as LAYER_NORM_PARAM_BACKWARD's out: one pass over dy, x
 *   RMS_NORM_BACKWARD    out dx <- in {dy, x, w}; scalar {k, eps}
 *   LAYER_NORM_PARAM_BACKWARD  out (2, n) <- in {dy, x}, n = prod of x's last k dims;
 *                        scalar {k, eps[, rms]}: row 0 dweight = sum over the rows of dy * x̂, row 1
 *                        dbias = sum of dy (x̂ from each row's recomputed mean and rstd; with
 *                        scalar[2] != 0 rms_norm's x̂ = x * rstd, rstd from the mean of squares)
 *   GROUP_NORM           out y <- in {x (N, C, *), w (C), b (C)}; scalar {groups, eps}
 *   GROUP_NORM_BACKWARD  out dx <- in {dy, x, w}; scalar {groups, eps}
 *   BATCH_NORM_STATS     out (2, C) <- in {x (N, C, *)}: row 0 the mean, row 1 the biased
 *                        variance of each channel
 *   BATCH_NORM           out y <- in {x (N, C, *), stats (2, C) (mean; var), w (C), b (C)};
 *                        scalar {eps}
 *   BATCH_NORM_BACKWARD  out dx <- in {dy, x, stats, w}; scalar {eps, training}: with training
 *                        the stats are the batch's own and the gradient flows through them,
 *                        else (eval) they are constants and dx = dy * w * rstd; stats may be
 *                        (4, C), rows 2 and 3 BATCH_NORM_PARAM_BACKWARD's out for the same dy,
 *                        x and stats (ref sums again in double and does not read them)
 *   BATCH_NORM_PARAM_BACKWARD out (2, C) <- in {dy, x, stats}; scalar {eps}: row 0 dweight =
 *                        sum of dy * x̂ per channel, row 1 dbias = sum of dy
 * Every operand may have any strides (stride 0 included). The backward kernels
 * recompute each slice's mean and rstd from x (batch norm reads them from stats).
 *
 * A slice (the values normalized together) is gathered into a double buffer,
 * worked on in double (two passes: the mean, then the variance of the centred
 * values) and scattered back, so f32 and f64 share one code path and the f32
 * result is the double result rounded once.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

/* ---- operands: element offsets of an outer and an inner set of dims ---- */

typedef struct opnd {
    const nb_tensor *t;   /* the operand, NULL when absent */
    char *p;              /* element [0, ..., 0] */
    bool f32;             /* float, else double */
    int64_t *outer;       /* offset of each index of dims [0, split), C order */
    int64_t *inner;       /* offset of each index of dims [split, ndim), C order */
    int64_t n_outer;      /* entries of outer */
    int64_t n_inner;      /* entries of inner */
} opnd;

/* Offsets (in elements) of every index of t's dims [from, to), C order. */
static int64_t *dim_offsets(const nb_tensor *t, int from, int to, int64_t *count) {
    int64_t n = 1;
    for (int d = from; d < to; d++) n *= t->shape[d];
    int64_t *o = malloc(sizeof *o * (size_t)(n ? n : 1));
    if (!o) return NULL;
    int64_t idx[NB_MAX_DIMS] = {0}, off = 0;
    for (int64_t i = 0; i < n; i++) {
        o[i] = off;
        for (int d = to - 1; d >= from; d--) {
            if (++idx[d] < t->shape[d]) {
                off += t->stride[d];
                break;
            }
            off -= t->stride[d] * (t->shape[d] - 1);
            idx[d] = 0;
        }
    }
    *count = n;
    return o;
}

static int opnd_open(opnd *o, const nb_tensor *t, int split) {
    *o = (opnd){.t = t};
    if (!t) return 0;
    o->p = nb_data(t);
    o->f32 = t->dtype == NB_DTYPE_F32;
    o->outer = dim_offsets(t, 0, split, &o->n_outer);
    o->inner = dim_offsets(t, split, t->ndim, &o->n_inner);
    if (!o->outer || !o->inner) return nb__err(NB_ENOMEM, "norm kernel: out of memory for offsets");
    return 0;
}

static void opnd_close(opnd *o) {
    free(o->outer);
    free(o->inner);
}

/* dst[i] = element (outer index j, inner index from + i), i < n. */
static void gather(double *dst, const opnd *o, int64_t j, int64_t from, int64_t n) {
    const int64_t base = o->outer[j], *in = o->inner + from;
    if (o->f32)
        for (int64_t i = 0; i < n; i++) dst[i] = ((const float *)o->p)[base + in[i]];
    else
        for (int64_t i = 0; i < n; i++) dst[i] = ((const double *)o->p)[base + in[i]];
}

static void scatter(const opnd *o, int64_t j, int64_t from, int64_t n, const double *src) {
    const int64_t base = o->outer[j], *in = o->inner + from;
    if (o->f32)
        for (int64_t i = 0; i < n; i++) ((float *)o->p)[base + in[i]] = (float)src[i];
    else
        for (int64_t i = 0; i < n; i++) ((double *)o->p)[base + in[i]] = src[i];
}

/* A C-long vector operand (weight, bias) as doubles; an absent operand
 * gives `fill` everywhere. NULL on out of memory. */
static double *load_vector(const nb_tensor *t, int64_t c, double fill) {
    double *v = malloc(sizeof *v * (size_t)(c ? c : 1));
    if (!v) return NULL;
    if (!t) {
        for (int64_t i = 0; i < c; i++) v[i] = fill;
        return v;
    }
    opnd o;
    if (opnd_open(&o, t, 0) != 0) {
        opnd_close(&o);
        free(v);
        return NULL;
    }
    gather(v, &o, 0, 0, c);
    opnd_close(&o);
    return v;
}

/* ---- the math of one slice ---- */

/* Mean (0 when !center) and biased variance (mean square when !center) of
 * v[0..n), n > 0. */
static void moments(const double *v, int64_t n, bool center, double *mean, double *var) {
    double m = 0, s = 0;
    if (center) {
        for (int64_t i = 0; i < n; i++) m += v[i];
        m /= (double)n;
    }
    for (int64_t i = 0; i < n; i++) s += (v[i] - m) * (v[i] - m);
    *mean = m;
    *var = s / (double)n;
}

/* The gradient through x̂ = (x - mean) * rstd over n values (mean and var
 * taken over those values; mean 0 when !center):
 *     dx = rstd * (dx̂ - mean(dx̂) - x̂ * mean(dx̂ * x̂))
 * g holds dx̂ on entry and dx on exit; x is the slice's input. */
static void slice_backward(double *g, const double *x, int64_t n, double mean, double rstd, bool center) {
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < n; i++) {
        sg += g[i];
        sgx += g[i] * (x[i] - mean) * rstd;
    }
    sg = center ? sg / (double)n : 0.0;
    sgx /= (double)n;
    for (int64_t i = 0; i < n; i++) g[i] = rstd * (g[i] - sg - (x[i] - mean) * rstd * sgx);
}

/* ---- layer_norm and rms_norm: slices are x's last k dims ---- */

/* Forward (backward = false: in {x, w, b}) or backward (in {dy, x, w}) of
 * layer_norm (center) or rms_norm (!center). */
static int last_dims(const nb_kernel_args *a, bool center, bool backward) {
    const nb_tensor *x = a->in[backward ? 1 : 0];
    const nb_tensor *w = a->in[backward ? 2 : 1], *b = backward || !center ? NULL : a->in[2];
    int split = x->ndim - (int)a->scalar[0];
    double eps = a->scalar[1];
    const nb_tensor *st = center && !backward && a->nin > 3 ? a->in[3] : NULL;
    opnd X = {0}, Y = {0}, DY = {0}, ST = {0};
    int rc = opnd_open(&X, x, split);
    rc = rc ? rc : opnd_open(&Y, a->out, split);
    rc = rc ? rc : opnd_open(&DY, backward ? a->in[0] : NULL, split);
    if (!rc && st && (st->ndim != 2 || st->shape[0] != X.n_outer || st->shape[1] != 2 || st->dtype != x->dtype))
        rc = nb__err(NB_ESHAPE, "layer_norm: stats %s must be (%lld, 2) of the input's dtype", nb__shape_str(st),
                     (long long)X.n_outer);
    rc = rc ? rc : opnd_open(&ST, st, 1);
    int64_t n = rc ? 0 : X.n_inner;
    double *wv = rc ? NULL : load_vector(w, n, 1.0), *bv = rc ? NULL : load_vector(b, n, 0.0);
    double *xs = malloc(sizeof *xs * (size_t)(n ? n : 1)), *ys = malloc(sizeof *ys * (size_t)(n ? n : 1));
    if (!rc && (!wv || !bv || !xs || !ys)) rc = nb__err(NB_ENOMEM, "norm kernel: out of memory for a slice");
    for (int64_t j = 0; !rc && n > 0 && j < X.n_outer; j++) {
        double mean, var;
        gather(xs, &X, j, 0, n);
        moments(xs, n, center, &mean, &var);
        double rstd = 1.0 / sqrt(var + eps);
        if (backward) {
            gather(ys, &DY, j, 0, n);
            for (int64_t i = 0; i < n; i++) ys[i] *= wv[i];
            slice_backward(ys, xs, n, mean, rstd, center);
        } else {
            for (int64_t i = 0; i < n; i++) ys[i] = (xs[i] - mean) * rstd * wv[i] + bv[i];
            if (st) scatter(&ST, j, 0, 2, (const double[2]){mean, rstd});
        }
        scatter(&Y, j, 0, n, ys);
    }
    for (int64_t j = 0; !rc && st && n == 0 && j < X.n_outer; j++)   /* empty rows: NaN, as mean([]) */
        scatter(&ST, j, 0, 2, (const double[2]){NAN, NAN});
    free(xs);
    free(ys);
    free(wv);
    free(bv);
    opnd_close(&ST);
    opnd_close(&DY);
    opnd_close(&Y);
    opnd_close(&X);
    return rc;
}

/* LAYER_NORM_PARAM_BACKWARD: the sums over x's rows of dy * x̂ and of dy, in
 * double, rows in order. */
static int ref_layer_norm_param_backward(const nb_kernel_args *a) {
    const nb_tensor *dy = a->in[0], *x = a->in[1];
    int split = x->ndim - (int)a->scalar[0];
    double eps = a->scalar[1];
    bool center = a->scalar[2] == 0;   /* scalar[2] != 0: rms_norm's x̂ (no mean) */
    if (split < 0 || dy->ndim != x->ndim || a->out->ndim < 1)
        return nb__err(NB_ESHAPE, "layer_norm_param_backward: dy %s, x %s and k %d do not fit", nb__shape_str(dy),
                       nb__shape_str(x), (int)a->scalar[0]);
    opnd X = {0}, DY = {0}, O = {0};
    int rc = opnd_open(&X, x, split);
    rc = rc ? rc : opnd_open(&DY, dy, split);
    rc = rc ? rc : opnd_open(&O, a->out, 1);
    int64_t n = rc ? 0 : X.n_inner;
    if (!rc && (O.n_outer != 2 || O.n_inner != n || DY.n_inner != n || DY.n_outer != X.n_outer))
        rc = nb__err(NB_ESHAPE, "layer_norm_param_backward: out %s, dy %s and x %s do not match", nb__shape_str(a->out),
                     nb__shape_str(dy), nb__shape_str(x));
    size_t sz = sizeof(double) * (size_t)(n ? n : 1);
    double *xs = malloc(sz), *ys = malloc(sz), *sw = calloc(1, sz), *sb = calloc(1, sz);
    if (!rc && (!xs || !ys || !sw || !sb)) rc = nb__err(NB_ENOMEM, "norm kernel: out of memory for a slice");
    for (int64_t j = 0; !rc && n > 0 && j < X.n_outer; j++) {
        double mean, var;
        gather(xs, &X, j, 0, n);
        gather(ys, &DY, j, 0, n);
        moments(xs, n, center, &mean, &var);
        double rstd = 1.0 / sqrt(var + eps);
        for (int64_t i = 0; i < n; i++) {
            sw[i] += ys[i] * (xs[i] - mean) * rstd;
            sb[i] += ys[i];
        }
    }
    if (!rc && n > 0) {
        scatter(&O, 0, 0, n, sw);
        scatter(&O, 1, 0, n, sb);
    }
    free(xs);
    free(ys);
    free(sw);
    free(sb);
    opnd_close(&O);
    opnd_close(&DY);
    opnd_close(&X);
    return rc;
}

static int ref_layer_norm(const nb_kernel_args *a) { return last_dims(a, true, false); }

/* LAYER_NORM_BACKWARD in fused mode: dx into rows [0, R) of out (R + 2, n),
 * (dweight; dbias) into rows R, R + 1, by the two kernels above on views. */
static int ref_layer_norm_backward_fused(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[1], *out = a->out;
    int split = x->ndim - (int)a->scalar[0];
    int64_t R = 1, n = 1;
    for (int d = 0; d < x->ndim; d++) *(d < split ? &R : &n) *= x->shape[d];
    if (split < 0 || out->ndim != 2 || out->shape[0] != R + 2 || out->shape[1] != n ||
        (out->numel > 0 && !nb_is_contiguous(out)))
        return nb__err(NB_ESHAPE, "layer_norm_backward: fused out %s must be contiguous (%lld, %lld) for x %s",
                       nb__shape_str(out), (long long)(R + 2), (long long)n, nb__shape_str(x));
    int64_t cs[NB_MAX_DIMS], ps[2] = {2, n}, pst[2] = {n, 1};
    nb__contig_strides(x->ndim, x->shape, cs);
    nb_tensor *dx = nb__alias(out, x->ndim, x->shape, cs, out->offset);
    nb_tensor *p = nb__alias(out, 2, ps, pst, out->offset + R * n);
    int rc = dx && p ? 0 : nb__err(NB_ENOMEM, "layer_norm_backward: out of memory for views");
    if (!rc) {
        nb_kernel_args b = *a;
        b.out = dx;
        b.scalar[2] = 0;
        rc = last_dims(&b, true, true);
    }
    if (!rc) {
        nb_kernel_args b = {.op = NB_OP_LAYER_NORM_PARAM_BACKWARD, .out = p, .in = {a->in[0], x}, .nin = 2,
                            .scalar = {a->scalar[0], a->scalar[1]}};
        rc = ref_layer_norm_param_backward(&b);
    }
    nb_release(p);
    nb_release(dx);
    return rc;
}
static int ref_layer_norm_backward(const nb_kernel_args *a) {
    return a->scalar[2] != 0 ? ref_layer_norm_backward_fused(a) : last_dims(a, true, true);
}
static int ref_rms_norm(const nb_kernel_args *a) { return last_dims(a, false, false); }
static int ref_rms_norm_backward(const nb_kernel_args *a) { return last_dims(a, false, true); }

/* ---- group_norm: slices are (sample, group of C/G channels with all of *) ---- */

/* Forward (in {x, w, b}) or backward (in {dy, x, w}). x (N, C, *) is split
 * after dim 0: inner index i belongs to channel i / S, S = prod(*). */
static int group_norm(const nb_kernel_args *a, bool backward) {
    const nb_tensor *x = a->in[backward ? 1 : 0];
    const nb_tensor *w = a->in[backward ? 2 : 1], *b = backward ? NULL : a->in[2];
    int64_t G = (int64_t)a->scalar[0], C = x->shape[1];
    double eps = a->scalar[1];
    opnd X = {0}, Y = {0}, DY = {0};
    int rc = opnd_open(&X, x, 1);
    rc = rc ? rc : opnd_open(&Y, a->out, 1);
    rc = rc ? rc : opnd_open(&DY, backward ? a->in[0] : NULL, 1);
    int64_t S = C ? (rc ? 0 : X.n_inner / C) : 0, n = C / G * S;   /* values per group */
    double *wv = rc ? NULL : load_vector(w, C, 1.0), *bv = rc ? NULL : load_vector(b, C, 0.0);
    double *xs = malloc(sizeof *xs * (size_t)(n ? n : 1)), *ys = malloc(sizeof *ys * (size_t)(n ? n : 1));
    if (!rc && (!wv || !bv || !xs || !ys)) rc = nb__err(NB_ENOMEM, "group_norm kernel: out of memory");
    for (int64_t j = 0; !rc && n > 0 && j < X.n_outer; j++)
        for (int64_t g = 0; g < G; g++) {
            int64_t from = g * n, c0 = g * (C / G);   /* first inner index, first channel */
            double mean, var;
            gather(xs, &X, j, from, n);
            moments(xs, n, true, &mean, &var);
            double rstd = 1.0 / sqrt(var + eps);
            if (backward) {
                gather(ys, &DY, j, from, n);
                for (int64_t i = 0; i < n; i++) ys[i] *= wv[c0 + i / S];
                slice_backward(ys, xs, n, mean, rstd, true);
            } else {
                for (int64_t i = 0; i < n; i++) ys[i] = (xs[i] - mean) * rstd * wv[c0 + i / S] + bv[c0 + i / S];
            }
            scatter(&Y, j, from, n, ys);
        }
    free(xs);
    free(ys);
    free(wv);
    free(bv);
    opnd_close(&DY);
    opnd_close(&Y);
    opnd_close(&X);
    return rc;
}

static int ref_group_norm(const nb_kernel_args *a) { return group_norm(a, false); }
static int ref_group_norm_backward(const nb_kernel_args *a) { return group_norm(a, true); }

/* ---- batch_norm: slices are channels, over all samples and all of * ---- */

/* Gathers channel c of x (N, C, *) (split after dim 0) into dst: N*S values. */
static void gather_channel(double *dst, const opnd *o, int64_t c, int64_t S) {
    for (int64_t j = 0; j < o->n_outer; j++) gather(dst + j * S, o, j, c * S, S);
}
static void scatter_channel(const opnd *o, int64_t c, int64_t S, const double *src) {
    for (int64_t j = 0; j < o->n_outer; j++) scatter(o, j, c * S, S, src + j * S);
}

/* Which batch_norm kernel runs. */
typedef enum bn_mode { BN_STATS, BN_FORWARD, BN_BACKWARD, BN_PARAM } bn_mode;

static int batch_norm(const nb_kernel_args *a, bn_mode mode) {
    bool grad = mode == BN_BACKWARD || mode == BN_PARAM;   /* in {dy, x, stats, ...} */
    const nb_tensor *x = a->in[grad ? 1 : 0];
    const nb_tensor *stats = mode == BN_STATS ? NULL : a->in[grad ? 2 : 1];
    const nb_tensor *w = mode == BN_STATS || mode == BN_PARAM ? NULL : a->in[grad ? 3 : 2];
    const nb_tensor *b = mode == BN_FORWARD ? a->in[3] : NULL;
    int64_t C = x->shape[1];
    double eps = a->scalar[0];
    bool training = a->scalar[1] != 0;
    if (mode == BN_PARAM && (a->in[0]->ndim != x->ndim || a->in[0]->numel != x->numel || a->out->numel != 2 * C))
        return nb__err(NB_ESHAPE, "batch_norm_param_backward: dy %s, x %s and out %s do not match",
                       nb__shape_str(a->in[0]), nb__shape_str(x), nb__shape_str(a->out));
    opnd X = {0}, Y = {0}, DY = {0}, ST = {0}, P = {0};
    int rc = opnd_open(&X, x, 1);
    rc = rc ? rc : opnd_open(&Y, mode == BN_STATS || mode == BN_PARAM ? NULL : a->out, 1);
    rc = rc ? rc : opnd_open(&DY, grad ? a->in[0] : NULL, 1);
    rc = rc ? rc : opnd_open(&ST, mode == BN_STATS ? a->out : stats, 1);   /* outer: row, inner: channel */
    rc = rc ? rc : opnd_open(&P, mode == BN_PARAM ? a->out : NULL, 1);
    int64_t S = C && !rc ? X.n_inner / C : 0, n = rc ? 0 : X.n_outer * S;   /* values per channel */
    double *wv = rc ? NULL : load_vector(w, C, 1.0), *bv = rc ? NULL : load_vector(b, C, 0.0);
    double *xs = malloc(sizeof *xs * (size_t)(n ? n : 1)), *ys = malloc(sizeof *ys * (size_t)(n ? n : 1));
    if (!rc && (!wv || !bv || !xs || !ys)) rc = nb__err(NB_ENOMEM, "batch_norm kernel: out of memory");
    for (int64_t c = 0; !rc && c < C; c++) {
        double mean, rstd, var;
        if (mode == BN_STATS) {
            gather_channel(xs, &X, c, S);
            moments(xs, n, true, &mean, &var);   /* n == 0 gives NaN, as PyTorch */
            scatter(&ST, 0, c, 1, &mean);
            scatter(&ST, 1, c, 1, &var);
            continue;
        }
        gather(&mean, &ST, 0, c, 1);
        gather(&var, &ST, 1, c, 1);
        rstd = 1.0 / sqrt(var + eps);
        if (mode == BN_PARAM) {
            double sw = 0, sb = 0;
            if (n > 0) {
                gather_channel(xs, &X, c, S);
                gather_channel(ys, &DY, c, S);
            }
            for (int64_t i = 0; i < n; i++) {
                sw += ys[i] * (xs[i] - mean) * rstd;
                sb += ys[i];
            }
            scatter(&P, 0, c, 1, &sw);
            scatter(&P, 1, c, 1, &sb);
            continue;
        }
        if (n == 0) continue;
        gather_channel(xs, &X, c, S);
        if (mode == BN_FORWARD) {
            for (int64_t i = 0; i < n; i++) ys[i] = (xs[i] - mean) * rstd * wv[c] + bv[c];
        } else {
            gather_channel(ys, &DY, c, S);
            for (int64_t i = 0; i < n; i++) ys[i] *= wv[c];
            if (training) slice_backward(ys, xs, n, mean, rstd, true);
            else
                for (int64_t i = 0; i < n; i++) ys[i] *= rstd;
        }
        scatter_channel(&Y, c, S, ys);
    }
    free(xs);
    free(ys);
    free(wv);
    free(bv);
    opnd_close(&P);
    opnd_close(&ST);
    opnd_close(&DY);
    opnd_close(&Y);
    opnd_close(&X);
    return rc;
}

static int ref_batch_norm_stats(const nb_kernel_args *a) { return batch_norm(a, BN_STATS); }
static int ref_batch_norm(const nb_kernel_args *a) { return batch_norm(a, BN_FORWARD); }
static int ref_batch_norm_backward(const nb_kernel_args *a) { return batch_norm(a, BN_BACKWARD); }
static int ref_batch_norm_param_backward(const nb_kernel_args *a) { return batch_norm(a, BN_PARAM); }

void nb__ref_norm_register(void) {
    static const struct {
        nb_op op;
        const char *name;
        nb_kernel_fn fn;
    } ks[] = {
        {NB_OP_LAYER_NORM, "ref_layer_norm", ref_layer_norm},
        {NB_OP_LAYER_NORM_BACKWARD, "ref_layer_norm_backward", ref_layer_norm_backward},
        {NB_OP_LAYER_NORM_PARAM_BACKWARD, "ref_layer_norm_param_backward", ref_layer_norm_param_backward},
        {NB_OP_RMS_NORM, "ref_rms_norm", ref_rms_norm},
        {NB_OP_RMS_NORM_BACKWARD, "ref_rms_norm_backward", ref_rms_norm_backward},
        {NB_OP_GROUP_NORM, "ref_group_norm", ref_group_norm},
        {NB_OP_GROUP_NORM_BACKWARD, "ref_group_norm_backward", ref_group_norm_backward},
        {NB_OP_BATCH_NORM_STATS, "ref_batch_norm_stats", ref_batch_norm_stats},
        {NB_OP_BATCH_NORM, "ref_batch_norm", ref_batch_norm},
        {NB_OP_BATCH_NORM_BACKWARD, "ref_batch_norm_backward", ref_batch_norm_backward},
        {NB_OP_BATCH_NORM_PARAM_BACKWARD, "ref_batch_norm_param_backward", ref_batch_norm_param_backward},
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        for (int d = 0; d < 2; d++) {
            nb_kernel_desc k = {ks[i].op, d ? NB_DTYPE_F64 : NB_DTYPE_F32, NB_ISA_REF, ks[i].name, 0, ks[i].fn};
            nb__registry_add(&k);
        }
}
