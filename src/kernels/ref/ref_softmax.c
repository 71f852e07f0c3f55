/* ref_softmax.c — portable row-wise softmax kernels: softmax, log_softmax,
 * their backwards, and the fused cross entropy (log_softmax + smoothed NLL)
 * forward and backward.
 *
 * A "row" is the 1-D slice along the reduced dim (the softmax dim, or the
 * class dim 1 of cross entropy); rows are enumerated in C order of the other
 * dims, and nb__row_offset finds a row's start in any strided operand, so
 * every input may be transposed, sliced or broadcast (stride 0). Outputs are
 * whatever the op allocated (contiguous in practice). Everything is computed
 * in double and stored in the operand's dtype (F32 or F64): these kernels are
 * the oracle that SIMD variants are tested against, so clarity wins.
 *
 * Numerical stability: the row maximum is subtracted before exp, so a row of
 * large logits never overflows; log_softmax is x - (max + log(sum exp(x - max))).
 */
#include "kernels/kernels.h"

#include <math.h>

int64_t nb__row_offset(const nb_tensor *t, int skip, int64_t r) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (d == skip) continue;
        int64_t n = t->shape[d];
        off += (r % n) * t->stride[d];
        r /= n;
    }
    return off;
}

#define ld nb__ldf   /* kernels.h */
#define st nb__stf

/* The geometry of rows along `dim` of t (a 0-dim tensor is one row of 1). */
typedef struct rowgeo {
    int skip;       /* the row dim, or -1 for a 0-dim tensor */
    int64_t len;    /* elements per row */
    int64_t rows;   /* number of rows */
} rowgeo;

static rowgeo row_geo(const nb_tensor *t, int dim) {
    rowgeo g = {t->ndim ? dim : -1, t->ndim ? t->shape[dim] : 1, 0};
    g.rows = g.len ? nb_numel(t) / g.len : 0;
    return g;
}
static inline int64_t row_stride(const nb_tensor *t, int dim) { return t->ndim ? t->stride[dim] : 0; }

/* log(sum(exp(x))) of one row, stably. */
static double row_logsumexp(const nb_tensor *x, int64_t off, int64_t s, int64_t len) {
    double m = -INFINITY;
    for (int64_t c = 0; c < len; c++) m = fmax(m, ld(x, off + c * s));
    if (m == -INFINITY || m == INFINITY) return m;   /* all -inf (or a +inf): no shift possible */
    double sum = 0;
    for (int64_t c = 0; c < len; c++) sum += exp(ld(x, off + c * s) - m);
    return m + log(sum);
}

/* ---- softmax / log_softmax: out = exp(x - lse) or x - lse; scalar[0] = dim ---- */
static int softmax_rows(const nb_kernel_args *a, bool logs) {
    const nb_tensor *x = a->in[0];
    nb_tensor *y = a->out;
    int dim = (int)a->scalar[0];
    rowgeo g = row_geo(x, dim);
    int64_t sx = row_stride(x, dim), sy = row_stride(y, dim);
    for (int64_t r = 0; r < g.rows; r++) {
        int64_t ox = nb__row_offset(x, g.skip, r), oy = nb__row_offset(y, g.skip, r);
        double lse = row_logsumexp(x, ox, sx, g.len);
        for (int64_t c = 0; c < g.len; c++) {
            double v = ld(x, ox + c * sx) - lse;
            st(y, oy + c * sy, logs ? v : exp(v));
        }
    }
    return 0;
}
static int ref_softmax(const nb_kernel_args *a) { return softmax_rows(a, false); }
static int ref_log_softmax(const nb_kernel_args *a) { return softmax_rows(a, true); }

/* ---- backwards: in[0] = g (grad of y), in[1] = y; scalar[0] = dim ----
 * softmax:     dx = y * (g - sum(g * y))
 * log_softmax: dx = g - exp(y) * sum(g) */
static int softmax_backward_rows(const nb_kernel_args *a, bool logs) {
    const nb_tensor *gt = a->in[0], *y = a->in[1];
    nb_tensor *dx = a->out;
    int dim = (int)a->scalar[0];
    rowgeo g = row_geo(y, dim);
    int64_t sg = row_stride(gt, dim), sy = row_stride(y, dim), sd = row_stride(dx, dim);
    for (int64_t r = 0; r < g.rows; r++) {
        int64_t og = nb__row_offset(gt, g.skip, r), oy = nb__row_offset(y, g.skip, r);
        int64_t od = nb__row_offset(dx, g.skip, r);
        double s = 0;
        for (int64_t c = 0; c < g.len; c++)
            s += logs ? ld(gt, og + c * sg) : ld(gt, og + c * sg) * ld(y, oy + c * sy);
        for (int64_t c = 0; c < g.len; c++) {
            double gv = ld(gt, og + c * sg), yv = ld(y, oy + c * sy);
            st(dx, od + c * sd, logs ? gv - exp(yv) * s : yv * (gv - s));
        }
    }
    return 0;
}
static int ref_softmax_backward(const nb_kernel_args *a) { return softmax_backward_rows(a, false); }
static int ref_log_softmax_backward(const nb_kernel_args *a) { return softmax_backward_rows(a, true); }

/* ---- cross entropy, fused ----
 * in[0] = logits x (N, C, d...), in[1] = target t (N, d...) i64, in[2] =
 * class weights w (C) or NULL; scalar[0] = ignore_index, scalar[1] = label
 * smoothing eps. Per sample i with class t (logp = log_softmax(x_i)):
 *   loss_i = (1-eps) * w_t * -logp_t + eps/C * sum_c w_c * -logp_c,
 * and 0 where t == ignore_index. The op checked every target; the kernel
 * still refuses an out-of-range one rather than read out of bounds. */
static int bad_target(const char *who, int64_t t, int64_t C) {
    return nb__err(NB_ERANGE, "%s: target %lld is out of bounds for %lld classes", who, (long long)t, (long long)C);
}


static int ref_cross_entropy(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *t = a->in[1], *w = a->in[2];
    nb_tensor *out = a->out;   /* (N, d...) */
    int64_t ign = (int64_t)a->scalar[0], C = x->shape[1], sx = x->stride[1];
    double eps = a->scalar[1];
    const int64_t *tv = nb_data(t);
    for (int64_t r = 0; r < nb_numel(t); r++) {
        int64_t tc = tv[nb__row_offset(t, -1, r)], ox = nb__row_offset(x, 1, r);
        double loss = 0;
        if (tc != ign) {
            if (tc < 0 || tc >= C) return bad_target("nb_cross_entropy", tc, C);
            double lse = row_logsumexp(x, ox, sx, C);
            loss = (1 - eps) * nb__class_weight(w, tc) * (lse - ld(x, ox + tc * sx));
            if (eps > 0) {
                double sm = 0;
                for (int64_t c = 0; c < C; c++) sm += nb__class_weight(w, c) * (lse - ld(x, ox + c * sx));
                loss += eps / (double)C * sm;
            }
        }
        st(out, nb__row_offset(out, -1, r), loss);
    }
    return 0;
}

/* in[0..2] as the forward, in[3] = g (N, d...): the gradient of each sample's
 * loss (the reduction's scale already in it; may be broadcast). With p the
 * softmax of the row and W = sum_c w_c:
 *   dx_c = g * ((1-eps) * w_t * (p_c - [c == t]) + eps/C * (W * p_c - w_c)). */
static int ref_cross_entropy_backward(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *t = a->in[1], *w = a->in[2], *gt = a->in[3];
    nb_tensor *dx = a->out;
    int64_t ign = (int64_t)a->scalar[0], C = x->shape[1], sx = x->stride[1], sd = dx->stride[1];
    double eps = a->scalar[1], W = 0;
    for (int64_t c = 0; c < C; c++) W += nb__class_weight(w, c);
    const int64_t *tv = nb_data(t);
    for (int64_t r = 0; r < nb_numel(t); r++) {
        int64_t tc = tv[nb__row_offset(t, -1, r)];
        int64_t ox = nb__row_offset(x, 1, r), od = nb__row_offset(dx, 1, r);
        if (tc == ign) {
            for (int64_t c = 0; c < C; c++) st(dx, od + c * sd, 0.0);
            continue;
        }
        if (tc < 0 || tc >= C) return bad_target("nb_cross_entropy", tc, C);
        double gv = ld(gt, nb__row_offset(gt, -1, r)), lse = row_logsumexp(x, ox, sx, C);
        double wt = nb__class_weight(w, tc);
        for (int64_t c = 0; c < C; c++) {
            double p = exp(ld(x, ox + c * sx) - lse);
            double d = (1 - eps) * wt * (p - (c == tc ? 1.0 : 0.0));
            if (eps > 0) d += eps / (double)C * (W * p - nb__class_weight(w, c));
            st(dx, od + c * sd, gv * d);
        }
    }
    return 0;
}

void nb__ref_softmax_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SOFTMAX, NB_DTYPE_F32, NB_ISA_REF, "ref_softmax", 0, ref_softmax},
        {NB_OP_SOFTMAX, NB_DTYPE_F64, NB_ISA_REF, "ref_softmax", 0, ref_softmax},
        {NB_OP_LOG_SOFTMAX, NB_DTYPE_F32, NB_ISA_REF, "ref_log_softmax", 0, ref_log_softmax},
        {NB_OP_LOG_SOFTMAX, NB_DTYPE_F64, NB_ISA_REF, "ref_log_softmax", 0, ref_log_softmax},
        {NB_OP_SOFTMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_REF, "ref_softmax_bwd", 0, ref_softmax_backward},
        {NB_OP_SOFTMAX_BACKWARD, NB_DTYPE_F64, NB_ISA_REF, "ref_softmax_bwd", 0, ref_softmax_backward},
        {NB_OP_LOG_SOFTMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_REF, "ref_log_softmax_bwd", 0, ref_log_softmax_backward},
        {NB_OP_LOG_SOFTMAX_BACKWARD, NB_DTYPE_F64, NB_ISA_REF, "ref_log_softmax_bwd", 0, ref_log_softmax_backward},
        {NB_OP_CROSS_ENTROPY, NB_DTYPE_F32, NB_ISA_REF, "ref_cross_entropy", 0, ref_cross_entropy},
        {NB_OP_CROSS_ENTROPY, NB_DTYPE_F64, NB_ISA_REF, "ref_cross_entropy", 0, ref_cross_entropy},
        {NB_OP_CROSS_ENTROPY_BACKWARD, NB_DTYPE_F32, NB_ISA_REF, "ref_cross_entropy_bwd", 0,
         ref_cross_entropy_backward},
        {NB_OP_CROSS_ENTROPY_BACKWARD, NB_DTYPE_F64, NB_ISA_REF, "ref_cross_entropy_bwd", 0,
         ref_cross_entropy_backward},
    };
    NB__REGISTER_ALL(ks);
}
