/* ref_conv.c — portable convolution: forward, its two adjoints (gradient
 * w.r.t. the input, which is also the transposed convolution, and w.r.t. the
 * weight) and the bias gradient, as direct loops.
 *
 * What each kernel receives (any strides; F32 and F64; sums in double):
 *   CONV1D, CONV2D:  out y (N, Co, [OH,] OW) <- in[0] x (N, Ci, [H,] W),
 *                    in[1] w (Co, Ci/groups, [kH,] kW), in[2] b (Co) when nin 3
 *   CONV_TRANSPOSE2D, CONV_BWD_DATA:  out dx (N, Ci, [H,] W) <- in[0] gy
 *                    (N, Co, [OH,] OW), in[1] w (Co, Ci/groups, [kH,] kW),
 *                    in[2] b (Ci) when nin 3 (transpose only): the adjoint of
 *                    the forward w.r.t. x, plus b
 *   CONV_BWD_WEIGHT: out dw (Co, Ci/groups, [kH,] kW) <- in[0] x, in[1] gy
 *   CONV_BWD_BIAS:   out db (Co) <- in[0] gy, summed over N and space
 *   CONV_BWD_WEIGHT_BIAS: out (Co, Ci/groups * kH * kW + 1): both of the
 *                    above per output channel (registry.h), scalar[7] = kH
 *   scalar = {stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups}; a
 *   3-D tensor is NCHW with H = 1, and its H entries are then 1, 0, 1.
 *
 * Sizes come from the tensors: the loops run over the output's shape, which
 * need not be the formula's (conv_transpose2d's output_padding, a cropped
 * adjoint). Every kernel is a gather: each output element sums its own
 * terms, so nothing is written twice. These are the oracle the oneDNN
 * kernels are tested against: clarity first.
 */
#include "kernels/kernels.h"

_Static_assert(sizeof(((nb_kernel_args *)0)->scalar) >= 7 * sizeof(double), "conv geometry needs 7 scalars");

/* A 3-D or 4-D tensor seen as NCHW. */
typedef struct rc_geo {
    int64_t n, c, h, w;       /* sizes (h = 1 for 3-D) */
    int64_t sn, sc, sh, sw;   /* strides in elements (sh = 0 for 3-D) */
} rc_geo;

static rc_geo rc_geo_of(const nb_tensor *t) {
    rc_geo g;
    bool four = t->ndim == 4;
    g.n = t->shape[0], g.sn = t->stride[0];
    g.c = t->shape[1], g.sc = t->stride[1];
    g.h = four ? t->shape[2] : 1, g.sh = four ? t->stride[2] : 0;
    g.w = t->shape[t->ndim - 1], g.sw = t->stride[t->ndim - 1];
    return g;
}

static inline int64_t rc_at(const rc_geo *g, int64_t n, int64_t c, int64_t h, int64_t w) {
    return n * g->sn + c * g->sc + h * g->sh + w * g->sw;
}

/* Element i of an F32 or F64 buffer, as double, and back. */
static inline double rc_ld(const void *p, bool f32, int64_t i) {
    return f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void rc_st(void *p, bool f32, int64_t i, double v) {
    if (f32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

typedef struct rc_param {
    int64_t s[2], p[2], d[2];   /* stride, padding, dilation per (H, W) */
    int64_t groups;             /* channel groups */
} rc_param;

static rc_param rc_param_of(const nb_kernel_args *a) {
    rc_param p;
    for (int i = 0; i < 2; i++) {
        p.s[i] = (int64_t)a->scalar[i];
        p.p[i] = (int64_t)a->scalar[2 + i];
        p.d[i] = (int64_t)a->scalar[4 + i];
    }
    p.groups = (int64_t)a->scalar[6];
    return p;
}

/* y[n,co,oh,ow] = b[co] + sum_{ci in co's group, kh, kw} x[n,ci,oh*s-p+kh*d,..] * w[co,ci',kh,kw] */
static int ref_conv_fwd(const nb_kernel_args *a) {
    rc_geo X = rc_geo_of(a->in[0]), K = rc_geo_of(a->in[1]), Y = rc_geo_of(a->out);
    rc_param p = rc_param_of(a);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *x = nb_data(a->in[0]), *w = nb_data(a->in[1]);
    const void *b = a->nin > 2 && a->in[2] ? nb_data(a->in[2]) : NULL;
    int64_t bs = b ? a->in[2]->stride[0] : 0;
    void *y = nb_data(a->out);
    int64_t cig = K.c, cog = Y.c / p.groups;
    for (int64_t n = 0; n < Y.n; n++)
        for (int64_t co = 0; co < Y.c; co++) {
            int64_t ci0 = co / cog * cig;   /* first input channel of co's group */
            for (int64_t oh = 0; oh < Y.h; oh++)
                for (int64_t ow = 0; ow < Y.w; ow++) {
                    double acc = b ? rc_ld(b, f32, co * bs) : 0.0;
                    for (int64_t ci = 0; ci < cig; ci++)
                        for (int64_t kh = 0; kh < K.h; kh++) {
                            int64_t ih = oh * p.s[0] - p.p[0] + kh * p.d[0];
                            if (ih < 0 || ih >= X.h) continue;
                            for (int64_t kw = 0; kw < K.w; kw++) {
                                int64_t iw = ow * p.s[1] - p.p[1] + kw * p.d[1];
                                if (iw < 0 || iw >= X.w) continue;
                                acc += rc_ld(x, f32, rc_at(&X, n, ci0 + ci, ih, iw)) *
                                       rc_ld(w, f32, rc_at(&K, co, ci, kh, kw));
                            }
                        }
                    rc_st(y, f32, rc_at(&Y, n, co, oh, ow), acc);
                }
        }
    return 0;
}

/* One input coordinate's output position for tap k: o with o*s - p + k*d == i,
 * or -1 when there is none inside [0, size). */
static inline int64_t rc_out_pos(int64_t i, int64_t k, int64_t s, int64_t p, int64_t d, int64_t size) {
    int64_t t = i + p - k * d;
    if (t < 0 || t % s) return -1;
    return t / s < size ? t / s : -1;
}

/* dx[n,ci,ih,iw] = b[ci] + sum_{co in ci's group, kh, kw: ih = oh*s-p+kh*d} gy[n,co,oh,ow] * w[co,ci',kh,kw] */
static int ref_conv_bwd_data(const nb_kernel_args *a) {
    rc_geo G = rc_geo_of(a->in[0]), K = rc_geo_of(a->in[1]), X = rc_geo_of(a->out);
    rc_param p = rc_param_of(a);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *gy = nb_data(a->in[0]), *w = nb_data(a->in[1]);
    const void *b = a->nin > 2 && a->in[2] ? nb_data(a->in[2]) : NULL;
    int64_t bs = b ? a->in[2]->stride[0] : 0;
    void *dx = nb_data(a->out);
    int64_t cig = K.c, cog = K.n / p.groups;
    for (int64_t n = 0; n < X.n; n++)
        for (int64_t ci = 0; ci < X.c; ci++) {
            int64_t co0 = ci / cig * cog, cl = ci % cig;   /* ci's group's outputs; ci within the group */
            for (int64_t ih = 0; ih < X.h; ih++)
                for (int64_t iw = 0; iw < X.w; iw++) {
                    double acc = b ? rc_ld(b, f32, ci * bs) : 0.0;
                    for (int64_t co = co0; co < co0 + cog; co++)
                        for (int64_t kh = 0; kh < K.h; kh++) {
                            int64_t oh = rc_out_pos(ih, kh, p.s[0], p.p[0], p.d[0], G.h);
                            if (oh < 0) continue;
                            for (int64_t kw = 0; kw < K.w; kw++) {
                                int64_t ow = rc_out_pos(iw, kw, p.s[1], p.p[1], p.d[1], G.w);
                                if (ow < 0) continue;
                                acc += rc_ld(gy, f32, rc_at(&G, n, co, oh, ow)) *
                                       rc_ld(w, f32, rc_at(&K, co, cl, kh, kw));
                            }
                        }
                    rc_st(dx, f32, rc_at(&X, n, ci, ih, iw), acc);
                }
        }
    return 0;
}

/* dw[co,ci',kh,kw] = sum_{n,oh,ow} x[n,ci,oh*s-p+kh*d,..] * gy[n,co,oh,ow],
 * dw laid out as K says. */
static void rc_wgrad(const nb_kernel_args *a, rc_geo K, void *dw) {
    rc_geo X = rc_geo_of(a->in[0]), G = rc_geo_of(a->in[1]);
    rc_param p = rc_param_of(a);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *x = nb_data(a->in[0]), *gy = nb_data(a->in[1]);
    int64_t cig = K.c, cog = K.n / p.groups;
    for (int64_t co = 0; co < K.n; co++)
        for (int64_t cl = 0; cl < cig; cl++) {
            int64_t ci = co / cog * cig + cl;
            for (int64_t kh = 0; kh < K.h; kh++)
                for (int64_t kw = 0; kw < K.w; kw++) {
                    double acc = 0.0;
                    for (int64_t n = 0; n < G.n; n++)
                        for (int64_t oh = 0; oh < G.h; oh++) {
                            int64_t ih = oh * p.s[0] - p.p[0] + kh * p.d[0];
                            if (ih < 0 || ih >= X.h) continue;
                            for (int64_t ow = 0; ow < G.w; ow++) {
                                int64_t iw = ow * p.s[1] - p.p[1] + kw * p.d[1];
                                if (iw < 0 || iw >= X.w) continue;
                                acc += rc_ld(x, f32, rc_at(&X, n, ci, ih, iw)) *
                                       rc_ld(gy, f32, rc_at(&G, n, co, oh, ow));
                            }
                        }
                    rc_st(dw, f32, rc_at(&K, co, cl, kh, kw), acc);
                }
        }
}

static int ref_conv_bwd_weight(const nb_kernel_args *a) {
    rc_wgrad(a, rc_geo_of(a->out), nb_data(a->out));
    return 0;
}

/* db[co] = sum_{n,oh,ow} gy[n,co,oh,ow], db[co] at co * sdb */
static void rc_bgrad(const nb_tensor *gt, bool f32, void *db, int64_t sdb) {
    rc_geo G = rc_geo_of(gt);
    const void *gy = nb_data(gt);
    for (int64_t co = 0; co < G.c; co++) {
        double acc = 0.0;
        for (int64_t n = 0; n < G.n; n++)
            for (int64_t oh = 0; oh < G.h; oh++)
                for (int64_t ow = 0; ow < G.w; ow++) acc += rc_ld(gy, f32, rc_at(&G, n, co, oh, ow));
        rc_st(db, f32, co * sdb, acc);
    }
}

static int ref_conv_bwd_bias(const nb_kernel_args *a) {
    rc_bgrad(a->in[0], a->out->dtype == NB_DTYPE_F32, nb_data(a->out), a->out->stride[0]);
    return 0;
}

/* CONV_BWD_WEIGHT_BIAS: out (Co, Ci/groups * kH * kW + 1), see registry.h:
 * the two kernels above, into its rows. */
static int ref_conv_bwd_weight_bias(const nb_kernel_args *a) {
    rc_geo X = rc_geo_of(a->in[0]);
    int64_t kh = (int64_t)a->scalar[7], g = (int64_t)a->scalar[6], cols = a->out->shape[1];
    if (a->out->ndim != 2 || kh < 1 || g < 1 || X.c % g || (cols - 1) % (X.c / g * kh)) return NB_KERNEL_DECLINE;
    int64_t kw = (cols - 1) / (X.c / g * kh);
    bool four = a->in[0]->ndim == 4;
    rc_geo K = {a->out->shape[0], X.c / g, four ? kh : 1, kw, a->out->stride[0], kh * kw, four ? kw : 0, 1};
    rc_wgrad(a, K, nb_data(a->out));
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    char *db = (char *)nb_data(a->out) + (cols - 1) * (int64_t)nb_dtype_size(a->out->dtype);
    rc_bgrad(a->in[1], f32, db, a->out->stride[0]);
    return 0;
}

void nb__ref_conv_register(void) {
    static const struct {
        nb_op op;
        const char *name[2];   /* F32, F64 */
        nb_kernel_fn fn;
    } ks[] = {
        {NB_OP_CONV1D, {"ref_conv1d_f32", "ref_conv1d_f64"}, ref_conv_fwd},
        {NB_OP_CONV2D, {"ref_conv2d_f32", "ref_conv2d_f64"}, ref_conv_fwd},
        {NB_OP_CONV_TRANSPOSE2D, {"ref_conv_transpose2d_f32", "ref_conv_transpose2d_f64"}, ref_conv_bwd_data},
        {NB_OP_CONV_BWD_DATA, {"ref_conv_bwd_data_f32", "ref_conv_bwd_data_f64"}, ref_conv_bwd_data},
        {NB_OP_CONV_BWD_WEIGHT, {"ref_conv_bwd_weight_f32", "ref_conv_bwd_weight_f64"}, ref_conv_bwd_weight},
        {NB_OP_CONV_BWD_BIAS, {"ref_conv_bwd_bias_f32", "ref_conv_bwd_bias_f64"}, ref_conv_bwd_bias},
        {NB_OP_CONV_BWD_WEIGHT_BIAS, {"ref_conv_bwd_weight_bias_f32", "ref_conv_bwd_weight_bias_f64"},
         ref_conv_bwd_weight_bias},
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        for (int d = 0; d < 2; d++) {
            nb_kernel_desc k = {ks[i].op, d ? NB_DTYPE_F64 : NB_DTYPE_F32, NB_ISA_REF, ks[i].name[d], 0, ks[i].fn};
            nb__registry_add(&k);
        }
}
