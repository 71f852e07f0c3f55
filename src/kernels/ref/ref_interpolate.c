/* ref_interpolate.c — portable 2-D resampling (nearest, nearest-exact,
 * bilinear) of NCHW tensors and its backward.
 *
 * What each kernel receives (4-D tensors of any strides; F32 and F64):
 *   INTERPOLATE:     out y (N, C, OH, OW) <- in[0] x (N, C, H, W)
 *   INTERPOLATE_BWD: out dx (N, C, H, W) <- in[0] gy (N, C, OH, OW): the
 *                    adjoint (each gy element spread back with its weights)
 *   scalar = {mode (nb_interp), align_corners (0/1), scale_h, scale_w}: the
 *   scales are the user's scale factors, or 0 when the size was given (the
 *   coordinate map then uses in/out), as PyTorch's upsample kernels.
 *
 * Source coordinates follow PyTorch's UpSample.h: nearest maps o to
 * floor(o * scale) in float arithmetic (with the exact shortcuts for out ==
 * in and out == 2*in), nearest-exact to floor((o + 0.5) * scale), bilinear to
 * scale * (o + 0.5) - 0.5 clamped at 0 (align_corners: o * (in-1)/(out-1)),
 * blending the two neighbours.
 */
#include "kernels/kernels.h"

#include <math.h>

_Static_assert(sizeof(((nb_kernel_args *)0)->scalar) >= 4 * sizeof(double), "interpolate needs 4 scalars");

typedef nb__interp_tap ri_tap;

/* The taps of output coordinate o (kernels.h; the AVX2 kernel shares it). */
nb__interp_tap nb__interp_tap_of(int mode, bool align, double user_scale, int64_t o, int64_t in, int64_t out) {
    ri_tap t = {o, o, 1.0, 0.0};
    if (mode == NB_INTERP_NEAREST || mode == NB_INTERP_NEAREST_EXACT) {
        bool exact = mode == NB_INTERP_NEAREST_EXACT;
        if (!exact && out == in) return t;
        if (!exact && out == 2 * in) {
            t.i0 = t.i1 = o >> 1;
            return t;
        }
        float scale = user_scale > 0 ? (float)(1.0 / user_scale) : (float)in / (float)out;
        int64_t s = exact ? (int64_t)floorf((float)(((double)o + 0.5) * scale)) : (int64_t)floorf((float)o * scale);
        t.i0 = t.i1 = s < in - 1 ? s : in - 1;
        return t;
    }
    if (out == in) return t;   /* bilinear at scale 1: a copy */
    double scale = align ? (out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0)
                         : user_scale > 0 ? 1.0 / user_scale : (double)in / (double)out;
    double src = align ? scale * (double)o : scale * ((double)o + 0.5) - 0.5;
    if (src < 0) src = 0;
    t.i0 = (int64_t)src;
    t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
    t.l1 = src - (double)t.i0;
    if (t.l1 > 1) t.l1 = 1;
    t.l0 = 1.0 - t.l1;
    return t;
}

typedef struct ri_geo {
    int64_t n, c, h, w;       /* sizes */
    int64_t sn, sc, sh, sw;   /* strides in elements */
} ri_geo;

static ri_geo ri_geo_of(const nb_tensor *t) {
    ri_geo g = {t->shape[0], t->shape[1], t->shape[2], t->shape[3],
                t->stride[0], t->stride[1], t->stride[2], t->stride[3]};
    return g;
}

static inline int64_t ri_at(const ri_geo *g, int64_t n, int64_t c, int64_t h, int64_t w) {
    return n * g->sn + c * g->sc + h * g->sh + w * g->sw;
}
static inline double ri_ld(const void *p, bool f32, int64_t i) {
    return f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void ri_st(void *p, bool f32, int64_t i, double v) {
    if (f32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

/* Runs the (oh, ow) loop for forward (adjoint false: y = sum of taps) or
 * backward (adjoint true: dx[taps] += w * gy). `small` is x / dx, `big` y / gy. */
static int ri_run(const nb_kernel_args *a, const nb_tensor *small_t, const nb_tensor *big_t, bool adjoint) {
    ri_geo S = ri_geo_of(small_t), B = ri_geo_of(big_t);
    int mode = (int)a->scalar[0];
    bool align = a->scalar[1] != 0, f32 = small_t->dtype == NB_DTYPE_F32;
    void *s = nb_data(small_t), *b = nb_data(big_t);
    if (adjoint)
        for (int64_t n = 0; n < S.n; n++)
            for (int64_t c = 0; c < S.c; c++)
                for (int64_t h = 0; h < S.h; h++)
                    for (int64_t w = 0; w < S.w; w++) ri_st(s, f32, ri_at(&S, n, c, h, w), 0.0);
    for (int64_t oh = 0; oh < B.h; oh++) {
        ri_tap th = nb__interp_tap_of(mode, align, a->scalar[2], oh, S.h, B.h);
        for (int64_t ow = 0; ow < B.w; ow++) {
            ri_tap tw = nb__interp_tap_of(mode, align, a->scalar[3], ow, S.w, B.w);
            int64_t hh[2] = {th.i0, th.i1}, ww[2] = {tw.i0, tw.i1};
            double lh[2] = {th.l0, th.l1}, lw[2] = {tw.l0, tw.l1};
            for (int64_t n = 0; n < B.n; n++)
                for (int64_t c = 0; c < B.c; c++) {
                    int64_t bat = ri_at(&B, n, c, oh, ow);
                    double acc = 0.0, g = adjoint ? ri_ld(b, f32, bat) : 0.0;
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) {
                            double wt = lh[i] * lw[j];
                            if (wt == 0.0) continue;
                            int64_t sat = ri_at(&S, n, c, hh[i], ww[j]);
                            if (adjoint) ri_st(s, f32, sat, ri_ld(s, f32, sat) + wt * g);
                            else acc += wt * ri_ld(s, f32, sat);
                        }
                    if (!adjoint) ri_st(b, f32, bat, acc);
                }
        }
    }
    return 0;
}

static int ref_interpolate(const nb_kernel_args *a) { return ri_run(a, a->in[0], a->out, false); }
static int ref_interpolate_bwd(const nb_kernel_args *a) { return ri_run(a, a->out, a->in[0], true); }

void nb__ref_interpolate_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_INTERPOLATE, NB_DTYPE_F32, NB_ISA_REF, "ref_interpolate_f32", 0, ref_interpolate},
        {NB_OP_INTERPOLATE, NB_DTYPE_F64, NB_ISA_REF, "ref_interpolate_f64", 0, ref_interpolate},
        {NB_OP_INTERPOLATE_BWD, NB_DTYPE_F32, NB_ISA_REF, "ref_interpolate_bwd_f32", 0, ref_interpolate_bwd},
        {NB_OP_INTERPOLATE_BWD, NB_DTYPE_F64, NB_ISA_REF, "ref_interpolate_bwd_f64", 0, ref_interpolate_bwd},
    };
    NB__REGISTER_ALL(ks);
}
