/* ref_pool.c — portable 2-D pooling: max (with argmax indices), average,
 * adaptive average, and their backward ops, as direct loops over NCHW.
 *
 * What each kernel receives (4-D tensors of any strides; F32 and F64):
 *   MAX_POOL2D:        out y (N, C, OH, OW) <- in[0] x (N, C, H, W); in[1] is
 *                      an I64 tensor of y's shape that receives the argmax as
 *                      h*W + w within its (n, c) plane (PyTorch's indices)
 *   MAX_POOL2D_BWD:    out dx (N, C, H, W), zeroed here, += in[0] gy at the
 *                      positions in[1] (the indices) name
 *   MAX_POOL2D_GATHER: out (N, C, OH, OW) <- in[0] (N, C, H, W) read at the
 *                      positions in[1] names (the derivative of MAX_POOL2D_BWD)
 *     scalar = {kH, kW, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w}
 *   AVG_POOL2D:        out y <- in[0] x;  AVG_POOL2D_BWD: out dx <- in[0] gy
 *     scalar = {kH, kW, stride_h, stride_w, pad_h, pad_w, count_include_pad,
 *               divisor_override (0: none)}
 *   ADAPTIVE_AVG_POOL2D: out y (N, C, OH, OW) <- in[0] x;
 *   ADAPTIVE_AVG_POOL2D_BWD: out dx (N, C, H, W) <- in[0] gy; window of
 *     output o: [floor(o*I/O), ceil((o+1)*I/O))
 *
 * Windows follow PyTorch's CPU kernels exactly: a max window skips padding
 * (and a NaN wins, as in torch); an average window counts the padding it
 * covers up to input+pad, unless count_include_pad is 0. ceil_mode only
 * changes the output size, which the kernels read from the tensors.
 */
#include "kernels/kernels.h"

#include <math.h>

_Static_assert(sizeof(((nb_kernel_args *)0)->scalar) >= 8 * sizeof(double), "pool geometry needs 8 scalars");

/* A 4-D NCHW tensor's sizes and strides. */
typedef struct rp_geo {
    int64_t n, c, h, w;       /* sizes */
    int64_t sn, sc, sh, sw;   /* strides in elements */
} rp_geo;

static rp_geo rp_geo_of(const nb_tensor *t) {
    rp_geo g = {t->shape[0], t->shape[1], t->shape[2], t->shape[3],
                t->stride[0], t->stride[1], t->stride[2], t->stride[3]};
    return g;
}

static inline int64_t rp_at(const rp_geo *g, int64_t n, int64_t c, int64_t h, int64_t w) {
    return n * g->sn + c * g->sc + h * g->sh + w * g->sw;
}

static inline double rp_ld(const void *p, bool f32, int64_t i) {
    return f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void rp_st(void *p, bool f32, int64_t i, double v) {
    if (f32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

/* Zeroes a 4-D F32/F64 tensor of any strides. */
static void rp_zero(nb_tensor *t) {
    rp_geo G = rp_geo_of(t);
    bool f32 = t->dtype == NB_DTYPE_F32;
    void *p = nb_data(t);
    for (int64_t n = 0; n < G.n; n++)
        for (int64_t c = 0; c < G.c; c++)
            for (int64_t h = 0; h < G.h; h++)
                for (int64_t w = 0; w < G.w; w++) rp_st(p, f32, rp_at(&G, n, c, h, w), 0.0);
}

typedef struct rp_param {
    int64_t k[2], s[2], p[2];   /* kernel, stride, padding per (H, W) */
    int64_t d[2];               /* max: dilation; avg: {count_include_pad, divisor_override} */
} rp_param;

static rp_param rp_param_of(const nb_kernel_args *a) {
    rp_param p;
    for (int i = 0; i < 2; i++) {
        p.k[i] = (int64_t)a->scalar[i];
        p.s[i] = (int64_t)a->scalar[2 + i];
        p.p[i] = (int64_t)a->scalar[4 + i];
        p.d[i] = (int64_t)a->scalar[6 + i];
    }
    return p;
}

/* ---- max ---- */

/* y = max over the window's taps inside the input; idx = the first argmax
 * (a NaN wins and stays), as PyTorch's cpu_max_pool. */
static int ref_max_pool2d(const nb_kernel_args *a) {
    rp_geo X = rp_geo_of(a->in[0]), Y = rp_geo_of(a->out), I = rp_geo_of(a->in[1]);
    rp_param p = rp_param_of(a);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *x = nb_data(a->in[0]);
    void *y = nb_data(a->out);
    int64_t *idx = nb_data(a->in[1]);
    for (int64_t n = 0; n < Y.n; n++)
        for (int64_t c = 0; c < Y.c; c++)
            for (int64_t oh = 0; oh < Y.h; oh++)
                for (int64_t ow = 0; ow < Y.w; ow++) {
                    int64_t h0 = oh * p.s[0] - p.p[0], w0 = ow * p.s[1] - p.p[1];
                    int64_t h1 = h0 + (p.k[0] - 1) * p.d[0] + 1, w1 = w0 + (p.k[1] - 1) * p.d[1] + 1;
                    if (h1 > X.h) h1 = X.h;
                    if (w1 > X.w) w1 = X.w;
                    while (h0 < 0) h0 += p.d[0];
                    while (w0 < 0) w0 += p.d[1];
                    int64_t best = h0 * X.w + w0;
                    double m = -INFINITY;
                    for (int64_t ih = h0; ih < h1; ih += p.d[0])
                        for (int64_t iw = w0; iw < w1; iw += p.d[1]) {
                            double v = rp_ld(x, f32, rp_at(&X, n, c, ih, iw));
                            if (v > m || isnan(v)) {
                                m = v;
                                best = ih * X.w + iw;
                            }
                        }
                    rp_st(y, f32, rp_at(&Y, n, c, oh, ow), m);
                    idx[rp_at(&I, n, c, oh, ow)] = best;
                }
    return 0;
}

/* dx = 0; dx[n, c, idx] += gy[n, c, oh, ow] */
static int ref_max_pool2d_bwd(const nb_kernel_args *a) {
    rp_geo G = rp_geo_of(a->in[0]), I = rp_geo_of(a->in[1]), X = rp_geo_of(a->out);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *gy = nb_data(a->in[0]);
    const int64_t *idx = nb_data(a->in[1]);
    void *dx = nb_data(a->out);
    rp_zero(a->out);
    for (int64_t n = 0; n < G.n; n++)
        for (int64_t c = 0; c < G.c; c++)
            for (int64_t oh = 0; oh < G.h; oh++)
                for (int64_t ow = 0; ow < G.w; ow++) {
                    int64_t k = idx[rp_at(&I, n, c, oh, ow)];
                    if (k < 0 || k >= X.h * X.w) continue;   /* never from MAX_POOL2D */
                    int64_t at = rp_at(&X, n, c, k / X.w, k % X.w);
                    rp_st(dx, f32, at, rp_ld(dx, f32, at) + rp_ld(gy, f32, rp_at(&G, n, c, oh, ow)));
                }
    return 0;
}

/* out[n, c, oh, ow] = g[n, c, idx] */
static int ref_max_pool2d_gather(const nb_kernel_args *a) {
    rp_geo S = rp_geo_of(a->in[0]), I = rp_geo_of(a->in[1]), Y = rp_geo_of(a->out);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *src = nb_data(a->in[0]);
    const int64_t *idx = nb_data(a->in[1]);
    void *y = nb_data(a->out);
    for (int64_t n = 0; n < Y.n; n++)
        for (int64_t c = 0; c < Y.c; c++)
            for (int64_t oh = 0; oh < Y.h; oh++)
                for (int64_t ow = 0; ow < Y.w; ow++) {
                    int64_t k = idx[rp_at(&I, n, c, oh, ow)];
                    double v = k < 0 || k >= S.h * S.w ? 0.0 : rp_ld(src, f32, rp_at(&S, n, c, k / S.w, k % S.w));
                    rp_st(y, f32, rp_at(&Y, n, c, oh, ow), v);
                }
    return 0;
}

/* ---- average ---- */

/* The window of output (oh, ow) clipped to the input, and its divisor. */
typedef struct rp_win {
    int64_t h0, h1, w0, w1;   /* [h0, h1) x [w0, w1) inside the input */
    double div;               /* what the sum is divided by */
} rp_win;

static rp_win rp_avg_window(const rp_param *p, int64_t H, int64_t W, int64_t oh, int64_t ow) {
    rp_win r;
    r.h0 = oh * p->s[0] - p->p[0], r.w0 = ow * p->s[1] - p->p[1];
    r.h1 = r.h0 + p->k[0], r.w1 = r.w0 + p->k[1];
    if (r.h1 > H + p->p[0]) r.h1 = H + p->p[0];
    if (r.w1 > W + p->p[1]) r.w1 = W + p->p[1];
    int64_t pool_size = (r.h1 - r.h0) * (r.w1 - r.w0);   /* counts padding */
    if (r.h0 < 0) r.h0 = 0;
    if (r.w0 < 0) r.w0 = 0;
    if (r.h1 > H) r.h1 = H;
    if (r.w1 > W) r.w1 = W;
    int64_t include_pad = p->d[0], divisor = p->d[1];
    r.div = (double)(divisor ? divisor : include_pad ? pool_size : (r.h1 - r.h0) * (r.w1 - r.w0));
    return r;
}

static int ref_avg_pool2d(const nb_kernel_args *a) {
    rp_geo X = rp_geo_of(a->in[0]), Y = rp_geo_of(a->out);
    rp_param p = rp_param_of(a);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *x = nb_data(a->in[0]);
    void *y = nb_data(a->out);
    for (int64_t n = 0; n < Y.n; n++)
        for (int64_t c = 0; c < Y.c; c++)
            for (int64_t oh = 0; oh < Y.h; oh++)
                for (int64_t ow = 0; ow < Y.w; ow++) {
                    rp_win r = rp_avg_window(&p, X.h, X.w, oh, ow);
                    double acc = 0.0;
                    for (int64_t ih = r.h0; ih < r.h1; ih++)
                        for (int64_t iw = r.w0; iw < r.w1; iw++) acc += rp_ld(x, f32, rp_at(&X, n, c, ih, iw));
                    bool empty = r.h0 >= r.h1 || r.w0 >= r.w1;
                    rp_st(y, f32, rp_at(&Y, n, c, oh, ow), empty ? 0.0 : acc / r.div);
                }
    return 0;
}

static int ref_avg_pool2d_bwd(const nb_kernel_args *a) {
    rp_geo G = rp_geo_of(a->in[0]), X = rp_geo_of(a->out);
    rp_param p = rp_param_of(a);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *gy = nb_data(a->in[0]);
    void *dx = nb_data(a->out);
    rp_zero(a->out);
    for (int64_t n = 0; n < G.n; n++)
        for (int64_t c = 0; c < G.c; c++)
            for (int64_t oh = 0; oh < G.h; oh++)
                for (int64_t ow = 0; ow < G.w; ow++) {
                    rp_win r = rp_avg_window(&p, X.h, X.w, oh, ow);
                    if (r.h0 >= r.h1 || r.w0 >= r.w1) continue;
                    double v = rp_ld(gy, f32, rp_at(&G, n, c, oh, ow)) / r.div;
                    for (int64_t ih = r.h0; ih < r.h1; ih++)
                        for (int64_t iw = r.w0; iw < r.w1; iw++) {
                            int64_t at = rp_at(&X, n, c, ih, iw);
                            rp_st(dx, f32, at, rp_ld(dx, f32, at) + v);
                        }
                }
    return 0;
}

/* ---- adaptive average ---- */

static inline int64_t rp_start(int64_t o, int64_t in, int64_t out) { return o * in / out; }
static inline int64_t rp_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

static int ref_adaptive_avg_pool2d(const nb_kernel_args *a) {
    rp_geo X = rp_geo_of(a->in[0]), Y = rp_geo_of(a->out);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *x = nb_data(a->in[0]);
    void *y = nb_data(a->out);
    for (int64_t n = 0; n < Y.n; n++)
        for (int64_t c = 0; c < Y.c; c++)
            for (int64_t oh = 0; oh < Y.h; oh++)
                for (int64_t ow = 0; ow < Y.w; ow++) {
                    int64_t h0 = rp_start(oh, X.h, Y.h), h1 = rp_end(oh, X.h, Y.h);
                    int64_t w0 = rp_start(ow, X.w, Y.w), w1 = rp_end(ow, X.w, Y.w);
                    double acc = 0.0;
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++) acc += rp_ld(x, f32, rp_at(&X, n, c, ih, iw));
                    rp_st(y, f32, rp_at(&Y, n, c, oh, ow), acc / (double)((h1 - h0) * (w1 - w0)));
                }
    return 0;
}

static int ref_adaptive_avg_pool2d_bwd(const nb_kernel_args *a) {
    rp_geo G = rp_geo_of(a->in[0]), X = rp_geo_of(a->out);
    bool f32 = a->out->dtype == NB_DTYPE_F32;
    const void *gy = nb_data(a->in[0]);
    void *dx = nb_data(a->out);
    rp_zero(a->out);
    for (int64_t n = 0; n < G.n; n++)
        for (int64_t c = 0; c < G.c; c++)
            for (int64_t oh = 0; oh < G.h; oh++)
                for (int64_t ow = 0; ow < G.w; ow++) {
                    int64_t h0 = rp_start(oh, X.h, G.h), h1 = rp_end(oh, X.h, G.h);
                    int64_t w0 = rp_start(ow, X.w, G.w), w1 = rp_end(ow, X.w, G.w);
                    double v = rp_ld(gy, f32, rp_at(&G, n, c, oh, ow)) / (double)((h1 - h0) * (w1 - w0));
                    for (int64_t ih = h0; ih < h1; ih++)
                        for (int64_t iw = w0; iw < w1; iw++) {
                            int64_t at = rp_at(&X, n, c, ih, iw);
                            rp_st(dx, f32, at, rp_ld(dx, f32, at) + v);
                        }
                }
    return 0;
}

void nb__ref_pool_register(void) {
    static const struct {
        nb_op op;
        const char *name[2];   /* F32, F64 */
        nb_kernel_fn fn;
    } ks[] = {
        {NB_OP_MAX_POOL2D, {"ref_max_pool2d_f32", "ref_max_pool2d_f64"}, ref_max_pool2d},
        {NB_OP_MAX_POOL2D_BWD, {"ref_max_pool2d_bwd_f32", "ref_max_pool2d_bwd_f64"}, ref_max_pool2d_bwd},
        {NB_OP_MAX_POOL2D_GATHER, {"ref_max_pool2d_gather_f32", "ref_max_pool2d_gather_f64"}, ref_max_pool2d_gather},
        {NB_OP_AVG_POOL2D, {"ref_avg_pool2d_f32", "ref_avg_pool2d_f64"}, ref_avg_pool2d},
        {NB_OP_AVG_POOL2D_BWD, {"ref_avg_pool2d_bwd_f32", "ref_avg_pool2d_bwd_f64"}, ref_avg_pool2d_bwd},
        {NB_OP_ADAPTIVE_AVG_POOL2D, {"ref_adaptive_avg_pool2d_f32", "ref_adaptive_avg_pool2d_f64"},
         ref_adaptive_avg_pool2d},
        {NB_OP_ADAPTIVE_AVG_POOL2D_BWD, {"ref_adaptive_avg_pool2d_bwd_f32", "ref_adaptive_avg_pool2d_bwd_f64"},
         ref_adaptive_avg_pool2d_bwd},
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
        for (int d = 0; d < 2; d++) {
            nb_kernel_desc k = {ks[i].op, d ? NB_DTYPE_F64 : NB_DTYPE_F32, NB_ISA_REF, ks[i].name[d], 0, ks[i].fn};
            nb__registry_add(&k);
        }
}
