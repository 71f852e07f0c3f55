/* onednn_pool.c — 2-D pooling for the oneDNN backend: AVG_POOL2D and
 * AVG_POOL2D_BWD through oneDNN's pooling primitives, MAX_POOL2D and
 * MAX_POOL2D_BWD as direct loops over the planes.
 *
 * Arguments are ref_pool.c's (4-D NCHW tensors of any strides, F32 here;
 * F64 goes to ref):
 *   MAX_POOL2D: y <- x, in[1] (I64, y's shape) <- argmax as h*W + w in its
 *               plane; scalar = {kH, kW, sH, sW, pH, pW, dH, dW}
 *   MAX_POOL2D_BWD: dx = 0, dx[plane + idx] += gy
 *   AVG_POOL2D(_BWD): scalar = {kH, kW, sH, sW, pH, pW, count_include_pad,
 *               divisor_override}
 *
 * Why max pooling is not a oneDNN primitive: the op's contract is
 * PyTorch's, indices as I64 plane offsets and a NaN in a window winning
 * (the last NaN, exactly as ref_max_pool2d compares). oneDNN's max pooling
 * keeps its argmax in an opaque per-implementation workspace (u8 offsets
 * within the window) and drops NaNs in its max, so it would need a second
 * pass to convert indices and could not match ref on NaN. The direct loop
 * does one pass, in float, with ref's comparisons, parallel over planes;
 * the backward is a scatter that needs the I64 indices anyway. The
 * LeNet step's pool1 (64x32x28x28) goes from ~12 ms (ref) to well under 1.
 *
 * Average pooling maps onto oneDNN when the divisor is one it knows: no
 * divisor_override; count_include_pad with windows that stay within
 * input + padding (PyTorch then divides by kH*kW, as oneDNN's
 * include-padding does; with ceil_mode windows it clips the divisor, which
 * oneDNN does not); pad < kernel (no empty window). Everything else is
 * declined to ref. Primitives are cached by (op, dims, strides, geometry,
 * threads) in onednn.c's cache.
 */
#include "kernels/onednn/onednn.h"

#include <math.h>
#include <string.h>

/* A 4-D tensor's sizes and strides. */
typedef struct pl_geo {
    int64_t n, c, h, w;       /* sizes */
    int64_t sn, sc, sh, sw;   /* strides in elements */
} pl_geo;

static pl_geo pl_geo_of(const nb_tensor *t) {
    const int64_t *d = nb_shape(t), *s = nb_strides(t);
    return (pl_geo){d[0], d[1], d[2], d[3], s[0], s[1], s[2], s[3]};
}

/* True when t is 4-D of dtype dt with no negative strides. */
static bool pl_ok(const nb_tensor *t, nb_dtype dt) {
    if (!t || nb_ndim(t) != 4 || nb_dtype_of(t) != dt) return false;
    for (int i = 0; i < 4; i++)
        if (nb_strides(t)[i] < 0) return false;
    return true;
}

/* ---- max: direct ---- */

/* Branch-free "take v when v > m or v is NaN" (ref's test) on the bits:
 * random data makes each comparison a coin flip for a branch predictor, and
 * the branchy loop ran ~4x slower. */
static inline void pl_take(float v, int64_t at, float *m, int64_t *best) {
    uint32_t vb, mb;
    memcpy(&vb, &v, 4);
    memcpy(&mb, m, 4);
    uint32_t t = (uint32_t)((v > *m) | (v != v));
    uint32_t mask = 0u - t;
    mb = (mb & ~mask) | (vb & mask);
    memcpy(m, &mb, 4);
    *best = (*best & ~(int64_t)(int32_t)mask) | (at & (int64_t)(int32_t)mask);
}

/* One (n, c) plane of MAX_POOL2D: ref_max_pool2d's window walk and
 * comparisons, in float. */
static void pl_max_plane(const float *x, float *y, int64_t *idx, const pl_geo *X, const pl_geo *Y, const pl_geo *I,
                         const int64_t *k, const int64_t *s, const int64_t *p, const int64_t *d) {
    for (int64_t oh = 0; oh < Y->h; oh++)
        for (int64_t ow = 0; ow < Y->w; ow++) {
            int64_t h0 = oh * s[0] - p[0], w0 = ow * s[1] - p[1];
            int64_t h1 = h0 + (k[0] - 1) * d[0] + 1, w1 = w0 + (k[1] - 1) * d[1] + 1;
            if (h1 > X->h) h1 = X->h;
            if (w1 > X->w) w1 = X->w;
            if (h0 < 0) h0 += (-h0 + d[0] - 1) / d[0] * d[0];
            if (w0 < 0) w0 += (-w0 + d[1] - 1) / d[1] * d[1];
            int64_t best = h0 * X->w + w0;
            float m = -INFINITY;
            for (int64_t ih = h0; ih < h1; ih += d[0]) {
                const float *row = x + ih * X->sh;
                for (int64_t iw = w0; iw < w1; iw += d[1]) pl_take(row[iw * X->sw], ih * X->w + iw, &m, &best);
            }
            y[oh * Y->sh + ow * Y->sw] = m;
            idx[oh * I->sh + ow * I->sw] = best;
        }
}

/* The common 2x2, stride 2, no padding, no dilation case with unit inner
 * strides goes to nb__avx2_max_pool_2x2_plane (x86/avx2/avx2_pool.c): the
 * same comparisons, 8 outputs at a time. */

static int direct_max_pool2d(const nb_kernel_args *a) {
    const nb_tensor *xt = a->in[0], *it = a->in[1];
    nb_tensor *yt = a->out;
    if (!pl_ok(xt, NB_DTYPE_F32) || !pl_ok(yt, NB_DTYPE_F32) || !pl_ok(it, NB_DTYPE_I64)) return NB_KERNEL_DECLINE;
    pl_geo X = pl_geo_of(xt), Y = pl_geo_of(yt), I = pl_geo_of(it);
    int64_t k[2], s[2], p[2], d[2];
    for (int i = 0; i < 2; i++) {
        k[i] = (int64_t)a->scalar[i], s[i] = (int64_t)a->scalar[2 + i];
        p[i] = (int64_t)a->scalar[4 + i], d[i] = (int64_t)a->scalar[6 + i];
        if (k[i] < 1 || s[i] < 1 || p[i] < 0 || d[i] < 1) return NB_KERNEL_DECLINE;
    }
    bool fast = k[0] == 2 && k[1] == 2 && s[0] == 2 && s[1] == 2 && !p[0] && !p[1] && d[0] == 1 && d[1] == 1 &&
                X.sw == 1 && Y.sw == 1 && I.sw == 1 && 2 * Y.h <= X.h && 2 * Y.w <= X.w;
    const float *x = nb_data(xt);
    float *y = nb_data(yt);
    int64_t *idx = nb_data(it), planes = Y.n * Y.c;
    int nt = nb__par_threads(nb_numel(xt), NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1)
    for (int64_t q = 0; q < planes; q++) {
        int64_t n = q / Y.c, c = q % Y.c;
        const float *xp = x + n * X.sn + c * X.sc;
        float *yp = y + n * Y.sn + c * Y.sc;
        int64_t *ip = idx + n * I.sn + c * I.sc;
        if (fast) nb__avx2_max_pool_2x2_plane(xp, yp, ip, X.w, X.sh, Y.h, Y.w, Y.sh, I.sh);
        else pl_max_plane(xp, yp, ip, &X, &Y, &I, k, s, p, d);
    }
    return 0;
}

/* dx = 0; dx[n, c, idx] += gy[n, c, oh, ow], plane by plane (planes do not
 * overlap, so they run in parallel). */
static int direct_max_pool2d_bwd(const nb_kernel_args *a) {
    const nb_tensor *gt = a->in[0], *it = a->in[1];
    nb_tensor *dxt = a->out;
    if (!pl_ok(gt, NB_DTYPE_F32) || !pl_ok(dxt, NB_DTYPE_F32) || !pl_ok(it, NB_DTYPE_I64)) return NB_KERNEL_DECLINE;
    pl_geo G = pl_geo_of(gt), I = pl_geo_of(it), X = pl_geo_of(dxt);
    const float *gy = nb_data(gt);
    const int64_t *idx = nb_data(it);
    float *dx = nb_data(dxt);
    int64_t planes = X.n * X.c, hw = X.h * X.w;
    bool dense = X.sw == 1 && X.sh == X.w;   /* a plane is one run of h*w floats */
    int nt = nb__par_threads(nb_numel(dxt), NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1)
    for (int64_t q = 0; q < planes; q++) {
        int64_t n = q / X.c, c = q % X.c;
        float *dp = dx + n * X.sn + c * X.sc;
        const float *gp = gy + n * G.sn + c * G.sc;
        const int64_t *ip = idx + n * I.sn + c * I.sc;
        if (dense) memset(dp, 0, sizeof *dp * (size_t)hw);
        else
            for (int64_t h = 0; h < X.h; h++)
                for (int64_t w = 0; w < X.w; w++) dp[h * X.sh + w * X.sw] = 0.0f;
        for (int64_t oh = 0; oh < G.h; oh++)
            for (int64_t ow = 0; ow < G.w; ow++) {
                int64_t j = ip[oh * I.sh + ow * I.sw];
                if (j < 0 || j >= hw) continue;   /* never from MAX_POOL2D */
                dp[dense ? j : j / X.w * X.sh + j % X.w * X.sw] += gp[oh * G.sh + ow * G.sw];
            }
    }
    return 0;
}

/* ---- average: oneDNN ---- */

/* The pooling algorithm for a's average-pool geometry (sizes from the
 * tensors x, y: NCHW dims), and the right padding that makes them exact;
 * dnnl_alg_kind_undef when oneDNN would not divide as PyTorch does. */
static dnnl_alg_kind_t pl_avg_alg(const nb_kernel_args *a, const int64_t *xd, const int64_t *yd, dnnl_dims_t pad_r) {
    if (a->scalar[7] != 0) return dnnl_alg_kind_undef;   /* divisor_override */
    bool include = a->scalar[6] != 0;
    for (int i = 0; i < 2; i++) {
        int64_t k = (int64_t)a->scalar[i], s = (int64_t)a->scalar[2 + i], p = (int64_t)a->scalar[4 + i];
        if (k < 1 || s < 1 || p < 0 || p >= k) return dnnl_alg_kind_undef;
        pad_r[i] = (yd[2 + i] - 1) * s + k - xd[2 + i] - p;
        if (pad_r[i] < 0 && pad_r[i] > -s) pad_r[i] = 0;   /* floor mode leaves rows unread: the same windows */
        if (pad_r[i] < 0 || pad_r[i] >= k) return dnnl_alg_kind_undef;
        if (include && pad_r[i] > p) return dnnl_alg_kind_undef;   /* a window past input + pad */
    }
    return include ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding;
}

static int onednn_avg_pool2d(const nb_kernel_args *a) {
    bool bwd = a->op == NB_OP_AVG_POOL2D_BWD;
    const nb_tensor *xt = bwd ? a->out : a->in[0], *yt = bwd ? a->in[0] : a->out;
    if (!pl_ok(xt, NB_DTYPE_F32) || !pl_ok(yt, NB_DTYPE_F32) || !nb_numel(xt) || !nb_numel(yt))
        return NB_KERNEL_DECLINE;
    dnnl_engine_t eng = nb__dnnl_engine();
    dnnl_stream_t st = nb__dnnl_stream();
    if (!eng || !st) return NB_KERNEL_DECLINE;
    dnnl_dims_t xd, xs, yd, ys, kern, strides, pad_l, pad_r;
    for (int i = 0; i < 4; i++) {
        xd[i] = nb_shape(xt)[i], xs[i] = nb_strides(xt)[i];
        yd[i] = nb_shape(yt)[i], ys[i] = nb_strides(yt)[i];
    }
    if (xd[0] != yd[0] || xd[1] != yd[1]) return NB_KERNEL_DECLINE;
    for (int i = 3; i >= 0; i--) {   /* size-1 dims: the dense stride, which oneDNN accepts */
        if (xd[i] == 1 || !xs[i]) xs[i] = i < 3 ? xs[i + 1] * xd[i + 1] : 1;
        if (yd[i] == 1 || !ys[i]) ys[i] = i < 3 ? ys[i + 1] * yd[i + 1] : 1;
    }
    dnnl_alg_kind_t alg = pl_avg_alg(a, xd, yd, pad_r);
    if (alg == dnnl_alg_kind_undef) return NB_KERNEL_DECLINE;
    for (int i = 0; i < 2; i++)
        kern[i] = (int64_t)a->scalar[i], strides[i] = (int64_t)a->scalar[2 + i], pad_l[i] = (int64_t)a->scalar[4 + i];
    nb__dnnl_key key;
    memset(&key, 0, sizeof key);
    int n = 0;
    key.w[n++] = a->op;
    key.w[n++] = alg;
    for (int i = 0; i < 4; i++) key.w[n++] = xd[i], key.w[n++] = xs[i], key.w[n++] = yd[i], key.w[n++] = ys[i];
    for (int i = 0; i < 2; i++) key.w[n++] = kern[i], key.w[n++] = strides[i], key.w[n++] = pad_l[i], key.w[n++] = pad_r[i];
    key.w[n++] = nb__dnnl_threads();
    dnnl_memory_desc_t xmd, ymd;
    if (dnnl_memory_desc_init_by_strides(&xmd, 4, xd, dnnl_f32, xs) ||
        dnnl_memory_desc_init_by_strides(&ymd, 4, yd, dnnl_f32, ys))
        return NB_KERNEL_DECLINE;
    bool owns = false;
    dnnl_primitive_t prim = nb__dnnl_cache_get(&key);
    if (!prim) {
        dnnl_pooling_desc_t fd, bd;
        dnnl_primitive_desc_t fpd = NULL, pd = NULL;
        if (dnnl_pooling_forward_desc_init(&fd, bwd ? dnnl_forward_training : dnnl_forward_inference, alg, &xmd, &ymd,
                                           strides, kern, pad_l, pad_r) ||
            dnnl_primitive_desc_create(&fpd, &fd, nb__dnnl_attr(), eng, NULL))
            return NB_KERNEL_DECLINE;
        if (!bwd) pd = fpd;
        else {
            dnnl_status_t s = dnnl_pooling_backward_desc_init(&bd, alg, &xmd, &ymd, strides, kern, pad_l, pad_r);
            if (!s) s = dnnl_primitive_desc_create(&pd, &bd, nb__dnnl_attr(), eng, fpd);
            dnnl_primitive_desc_destroy(fpd);
            if (s) return NB_KERNEL_DECLINE;
        }
        const char *impl = NULL;
        dnnl_status_t s = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (s || !impl || !strncmp(impl, "ref", 3)) {   /* oneDNN's reference code: ours is no slower */
            dnnl_primitive_desc_destroy(pd);
            return NB_KERNEL_DECLINE;
        }
        s = dnnl_primitive_create(&prim, pd);
        dnnl_primitive_desc_destroy(pd);
        if (s) return NB_KERNEL_DECLINE;
        prim = nb__dnnl_cache_put(&key, prim, &owns);
    }
    dnnl_memory_t xm = NULL, ym = NULL;
    int rc = 0;
    if (dnnl_memory_create(&xm, &xmd, eng, nb_data(xt)) || dnnl_memory_create(&ym, &ymd, eng, nb_data(yt))) {
        rc = NB_KERNEL_DECLINE;
    } else {
        dnnl_exec_arg_t args[2] = {{bwd ? DNNL_ARG_DIFF_SRC : DNNL_ARG_SRC, xm},
                                   {bwd ? DNNL_ARG_DIFF_DST : DNNL_ARG_DST, ym}};
        if (nb__dnnl_exec(prim, 2, args))
            rc = nb__err(NB_EINVAL, "oneDNN %s failed to execute", nb_op_name(a->op));
    }
    dnnl_memory_destroy(ym);
    dnnl_memory_destroy(xm);
    if (owns) dnnl_primitive_destroy(prim);
    return rc;
}

void nb__onednn_pool_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_MAX_POOL2D, NB_DTYPE_F32, NB_ISA_AVX2, "direct_max_pool2d", 10, direct_max_pool2d},
        {NB_OP_MAX_POOL2D_BWD, NB_DTYPE_F32, NB_ISA_AVX2, "direct_max_pool2d_bwd", 10, direct_max_pool2d_bwd},
        {NB_OP_AVG_POOL2D, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_avg_pool2d", 10, onednn_avg_pool2d},
        {NB_OP_AVG_POOL2D_BWD, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_avg_pool2d_bwd", 10, onednn_avg_pool2d},
    };
    NB__REGISTER_ALL(ks);
}
