/* conv.c — conv1d, conv2d, conv_transpose2d, and the ops their gradients
 * are made of.
 *
 * Four internal differentiable ops carry everything. Each works on batched
 * NCW / NCHW tensors with a geometry (stride, padding, dilation per (H, W),
 * groups; a 1-D op has H entries 1, 0, 1), runs its registry op, and records
 * a node whose backward is written with the same four ops, so gradients of
 * any order work (gradgradcheck of conv2d):
 *
 *   conv_fwd(x, w, b)      y  = conv(x, w) + b      CONV1D / CONV2D
 *   conv_data(gy, w, b)    dx = convᵀ(gy, w) + b    CONV_BWD_DATA / CONV_TRANSPOSE2D
 *   conv_weight(x, gy)     dw = x ⋆ gy              CONV_BWD_WEIGHT
 *   conv_bias(gy)          db = Σ_{n, space} gy     CONV_BWD_BIAS
 *
 *   d conv_fwd    = (conv_data(g, w), conv_weight(x, g), conv_bias(g))
 *   d conv_data   = (conv_fwd(g, w), conv_weight(g, gy), conv_bias(g))
 *   d conv_weight = (conv_data(gy, g), conv_fwd(x, g))
 *   d conv_bias   = g broadcast over N and space
 *
 * Output shapes are passed in explicitly (the kernels loop over the output),
 * so conv_transpose2d's output_padding and the adjoints need no special case.
 * The public functions check the arguments, add and remove the batch dim of
 * unbatched input, and call these.
 */
#include "ops/ops.h"

#include <string.h>

/* Geometry; [0] is H, [1] is W. */
typedef struct conv_geom {
    int64_t stride[2];   /* > 0 */
    int64_t pad[2];      /* >= 0 */
    int64_t dil[2];      /* > 0 */
    int64_t groups;      /* > 0 */
} conv_geom;

static void geom_put(nb__node *n, const conv_geom *g) {
    for (int i = 0; i < 2; i++) {
        n->p.i[i] = g->stride[i];
        n->p.i[2 + i] = g->pad[i];
        n->p.i[4 + i] = g->dil[i];
    }
    n->p.i[6] = g->groups;
}

static conv_geom geom_get(const nb__node *n) {
    conv_geom g;
    for (int i = 0; i < 2; i++) {
        g.stride[i] = n->p.i[i];
        g.pad[i] = n->p.i[2 + i];
        g.dil[i] = n->p.i[4 + i];
    }
    g.groups = n->p.i[6];
    return g;
}

/* The kernels' scalar[0..6]: {stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups}. */
static void geom_scalars(const conv_geom *g, double *scalar) {
    for (int i = 0; i < 2; i++) {
        scalar[i] = (double)g->stride[i];
        scalar[2 + i] = (double)g->pad[i];
        scalar[4 + i] = (double)g->dil[i];
    }
    scalar[6] = (double)g->groups;
}

/* Allocates out of `shape` and runs `op` on the given inputs (NULLs at the
 * end are left out) with g as scalars. Returns out (+1, not scoped) or NULL.
 * An image out (CONV2D's y, CONV_BWD_DATA's dx) follows its image input
 * a's layout, as PyTorch's convolutions do: channels-last when a suggests
 * it (nb__suggests_channels_last), else contiguous. So a channels-last
 * network stays channels-last through the convs and their gradients, and
 * oneDNN's NHWC kernels run on the tensors themselves (onednn_conv.c). */
static nb_tensor *conv_run(const char *who, nb_op op, nb_dims shape, const conv_geom *g, nb_tensor *a, nb_tensor *b,
                           nb_tensor *c) {
    bool image = op == NB_OP_CONV2D || op == NB_OP_CONV_BWD_DATA || op == NB_OP_CONV_TRANSPOSE2D;
    nb_tensor *out = nb__new_layout(who, a->dtype, shape.ndim, shape.d, image && nb__suggests_channels_last(a));
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b, c}, .nin = c ? 3 : b ? 2 : 1};
    geom_scalars(g, args.scalar);
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* Records the node (saving inputs per mask) and its geometry and shapes. */
static nb_tensor *conv_finish(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw,
                              nb_tensor *const *in, int nin, unsigned save, const conv_geom *g, nb_dims s0,
                              nb_dims s1) {
    nb__node *node;
    out = nb__finish(out, name, who, bw, in, nin, save, &node);
    if (node) {
        geom_put(node, g);
        node->shape[0] = s0;
        node->shape[1] = s1;
    }
    return out;
}

static nb_tensor *conv_fwd(nb_tensor *x, nb_tensor *w, nb_tensor *b, nb_dims yshape, const conv_geom *g);
static nb_tensor *conv_data(nb_op op, nb_tensor *gy, nb_tensor *w, nb_tensor *b, nb_dims xshape,
                            const conv_geom *g);
static nb_tensor *conv_weight(nb_tensor *x, nb_tensor *gy, nb_dims wshape, const conv_geom *g);
static nb_tensor *conv_bias(nb_tensor *gy);

#define NEED(i) nb__needs_input_grad(n, i)

/* dw and db in one pass over gy (CONV_BWD_WEIGHT_BIAS, registry.h), when a
 * kernel other than ref serves it (nb__dispatch_fast) and no graph is being
 * recorded (the fused op has no backward of its own; create_graph runs the
 * two ops): 0 with *dw, *db views of one buffer (in the scope),
 * NB_KERNEL_DECLINE to run CONV_BWD_WEIGHT and CONV_BWD_BIAS instead, or an
 * error. */
static int conv_weight_bias(nb_tensor *x, nb_tensor *gy, nb_dims wshape, const conv_geom *g, nb_tensor **dw,
                            nb_tensor **db) {
    const char *who = "conv_bwd_weight_bias";
    if (nb__grad_mode() || !x || !gy) return NB_KERNEL_DECLINE;
    int64_t k = wshape.d[0], per = 1;
    for (int d = 1; d < wshape.ndim; d++) per *= wshape.d[d];
    nb_tensor *out = nb__new(who, gy->dtype, 2, (const int64_t[]){k, per + 1});
    if (!out) return nb_last_error_code();
    nb_kernel_args args = {.op = NB_OP_CONV_BWD_WEIGHT_BIAS, .out = out, .in = {x, gy}, .nin = 2};
    geom_scalars(g, args.scalar);
    args.scalar[7] = wshape.ndim == 4 ? (double)wshape.d[2] : 1.0;
    int rc = nb__dispatch_fast(&args, who);
    if (rc) {
        nb_release(out);
        return rc;
    }
    out = nb__scoped(out);
    *dw = nb_view(nb_slice(out, 1, 0, per, 1), wshape);
    *db = nb_squeeze(nb_slice(out, 1, per, per + 1, 1), 1);
    return *dw && *db ? 0 : nb_last_error_code();
}

/* ---- conv_fwd: y = conv(x, w) + b; node shapes: x, w ---- */
static int conv_fwd_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    conv_geom ge = geom_get(n);
    nb_tensor *x = NEED(1) ? nb__saved_get(n, 0) : NULL;
    nb_tensor *w = NEED(0) ? nb__saved_get(n, 1) : NULL;
    if (NEED(0)) gin[0] = conv_data(NB_OP_CONV_BWD_DATA, g, w, NULL, n->shape[0], &ge);
    int fused = NEED(1) && n->nin > 2 && NEED(2) ? conv_weight_bias(x, g, n->shape[1], &ge, &gin[1], &gin[2])
                                                 : NB_KERNEL_DECLINE;
    if (fused != NB_KERNEL_DECLINE) return fused ? fused : nb__grads_ok(n, gin);
    if (NEED(1)) gin[1] = conv_weight(x, g, n->shape[1], &ge);
    if (n->nin > 2 && NEED(2)) gin[2] = conv_bias(g);
    return nb__grads_ok(n, gin);
}

static nb_tensor *conv_fwd(nb_tensor *x, nb_tensor *w, nb_tensor *b, nb_dims yshape, const conv_geom *g) {
    const char *who = "conv_fwd";
    NB_CHECK_ARG(who, x);
    NB_CHECK_ARG(who, w);
    nb_op op = x->ndim == 3 ? NB_OP_CONV1D : NB_OP_CONV2D;
    nb_tensor *in[3] = {x, w, b};
    return conv_finish(conv_run(who, op, yshape, g, x, w, b), "ConvolutionBackward", who, conv_fwd_backward, in,
                       b ? 3 : 2, 3, g, nb_dims_get(x), nb_dims_get(w));
}

/* ---- conv_data: dx = convᵀ(gy, w) + b; node shapes: gy, w ---- */
static int conv_data_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    conv_geom ge = geom_get(n);
    nb_tensor *gy = NEED(1) ? nb__saved_get(n, 0) : NULL;
    nb_tensor *w = NEED(0) ? nb__saved_get(n, 1) : NULL;
    if (NEED(0)) gin[0] = conv_fwd(g, w, NULL, n->shape[0], &ge);
    if (NEED(1)) gin[1] = conv_weight(g, gy, n->shape[1], &ge);
    if (n->nin > 2 && NEED(2)) gin[2] = conv_bias(g);
    return nb__grads_ok(n, gin);
}

static nb_tensor *conv_data(nb_op op, nb_tensor *gy, nb_tensor *w, nb_tensor *b, nb_dims xshape,
                            const conv_geom *g) {
    const char *who = op == NB_OP_CONV_TRANSPOSE2D ? "nb_conv_transpose2d" : "conv_bwd_data";
    NB_CHECK_ARG(who, gy);
    NB_CHECK_ARG(who, w);
    nb_tensor *in[3] = {gy, w, b};
    return conv_finish(conv_run(who, op, xshape, g, gy, w, b),
                       op == NB_OP_CONV_TRANSPOSE2D ? "ConvolutionTransposeBackward" : "ConvolutionBackwardDataBackward",
                       who, conv_data_backward, in, b ? 3 : 2, 3, g, nb_dims_get(gy), nb_dims_get(w));
}

/* ---- conv_weight: dw = x ⋆ gy; node shapes: x, gy ---- */
static int conv_weight_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    conv_geom ge = geom_get(n);
    nb_tensor *x = NEED(1) ? nb__saved_get(n, 0) : NULL;
    nb_tensor *gy = NEED(0) ? nb__saved_get(n, 1) : NULL;
    if (NEED(0)) gin[0] = conv_data(NB_OP_CONV_BWD_DATA, gy, g, NULL, n->shape[0], &ge);
    if (NEED(1)) gin[1] = conv_fwd(x, g, NULL, n->shape[1], &ge);
    return nb__grads_ok(n, gin);
}

static nb_tensor *conv_weight(nb_tensor *x, nb_tensor *gy, nb_dims wshape, const conv_geom *g) {
    const char *who = "conv_bwd_weight";
    NB_CHECK_ARG(who, x);
    NB_CHECK_ARG(who, gy);
    nb_tensor *in[2] = {x, gy};
    return conv_finish(conv_run(who, NB_OP_CONV_BWD_WEIGHT, wshape, g, x, gy, NULL),
                       "ConvolutionBackwardWeightBackward", who, conv_weight_backward, in, 2, 3, g, nb_dims_get(x),
                       nb_dims_get(gy));
}

/* ---- conv_bias: db = sum of gy over N and space; node shape: gy ---- */
static int conv_bias_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_dims ys = n->shape[0], ks = ys;
    for (int d = 0; d < ks.ndim; d++) ks.d[d] = d == 1 ? ys.d[1] : 1;
    gin[0] = nb_expand(nb_reshape(g, ks), ys);
    return nb__grads_ok(n, gin);
}

static nb_tensor *conv_bias(nb_tensor *gy) {
    const char *who = "conv_bwd_bias";
    NB_CHECK_ARG(who, gy);
    conv_geom unit = {{1, 1}, {0, 0}, {1, 1}, 1};
    nb_tensor *in[1] = {gy};
    return conv_finish(conv_run(who, NB_OP_CONV_BWD_BIAS, NB_SHAPE(gy->shape[1]), &unit, gy, NULL, NULL),
                       "ConvolutionBackwardBiasBackward", who, conv_bias_backward, in, 1, 0, &unit, nb_dims_get(gy),
                       NB_SHAPE0);
}

/* ---- the public functions: argument checks, then the ops above ---- */

/* Reads opts into g for nsp spatial dims (1-D: opts entry 0 goes to W) and
 * checks the values; *opad gets output_padding. */
static int conv_opts(const char *who, int nsp, bool transposed, const nb_conv_opts *o, conv_geom *g,
                     int64_t opad[2]) {
    nb_conv_opts z;
    memset(&z, 0, sizeof z);
    if (!o) o = &z;
    *g = (conv_geom){{1, 1}, {0, 0}, {1, 1}, o->groups ? o->groups : 1};
    opad[0] = opad[1] = 0;
    for (int i = 0; i < nsp; i++) {
        int k = nsp == 1 ? 1 : i;   /* 1-D: the W slot */
        g->stride[k] = o->stride[i] ? o->stride[i] : 1;
        g->dil[k] = o->dilation[i] ? o->dilation[i] : 1;
        g->pad[k] = o->padding[i];
        opad[k] = o->output_padding[i];
    }
    const int64_t *s = g->stride + 2 - nsp, *d = g->dil + 2 - nsp, *p = g->pad + 2 - nsp, *op = opad + 2 - nsp;
    if (s[0] < 0 || s[nsp - 1] < 0)
        return nb__err(NB_EINVAL, "%s: stride must be positive, got %s", who, nb__dims_str(nsp, s));
    if (d[0] < 0 || d[nsp - 1] < 0)
        return nb__err(NB_EINVAL, "%s: dilation must be positive, got %s", who, nb__dims_str(nsp, d));
    if (p[0] < 0 || p[nsp - 1] < 0)
        return nb__err(NB_EINVAL, "%s: padding must be non-negative, got %s", who, nb__dims_str(nsp, p));
    if (g->groups < 0) return nb__err(NB_EINVAL, "%s: groups must be positive, got %lld", who, (long long)g->groups);
    for (int i = 0; i < nsp; i++) {
        int k = nsp == 1 ? 1 : i;
        if (!transposed && opad[k])
            return nb__err(NB_EINVAL, "%s: output_padding %s is only for conv_transpose2d", who,
                           nb__dims_str(nsp, op));
        if (transposed && (opad[k] < 0 || (opad[k] >= g->stride[k] && opad[k] >= g->dil[k])))
            return nb__err(NB_EINVAL,
                           "%s: output_padding %s must be non-negative and smaller than either stride %s or "
                           "dilation %s",
                           who, nb__dims_str(nsp, op), nb__dims_str(nsp, s), nb__dims_str(nsp, d));
    }
    return 0;
}

/* Checks ranks, dtypes, channels and sizes; fills the batched output shape. */
static int conv_check(const char *who, int nsp, bool transposed, const nb_tensor *x, const nb_tensor *w,
                      const nb_tensor *b, const conv_geom *g, const int64_t opad[2], nb_dims *yshape) {
    if (nb__check_float(who, x) || nb__check_same_dtype(who, x, w) || (b && nb__check_same_dtype(who, x, b)))
        return nb_last_error_code();
    if (x->ndim != nsp + 1 && x->ndim != nsp + 2)
        return nb__err(NB_ESHAPE, "%s: expected a %dD (unbatched) or %dD (batched) input, got input of shape %s", who,
                       nsp + 1, nsp + 2, nb__shape_str(x));
    if (w->ndim != nsp + 2)
        return nb__err(NB_ESHAPE, "%s: expected a %dD weight (%s), got weight of shape %s", who, nsp + 2,
                       transposed ? "Cin, Cout/groups, kH, kW" : nsp == 1 ? "Cout, Cin/groups, k" : "Cout, Cin/groups, kH, kW",
                       nb__shape_str(w));
    int lead = x->ndim - nsp - 1;   /* 1 when batched */
    int64_t cin = x->shape[lead], G = g->groups;
    int64_t wcin = transposed ? w->shape[0] : w->shape[1] * G;   /* input channels the weight takes */
    int64_t cout = transposed ? w->shape[1] * G : w->shape[0];
    if (cin % G)
        return nb__err(NB_ESHAPE, "%s: input %s has %lld channels, not divisible by groups=%lld", who,
                       nb__shape_str(x), (long long)cin, (long long)G);
    if (w->shape[0] % G)
        return nb__err(NB_ESHAPE, "%s: weight %s: dim 0 (%lld) is not divisible by groups=%lld", who,
                       nb__shape_str(w), (long long)w->shape[0], (long long)G);
    if (cin != wcin)
        return nb__err(NB_ESHAPE, "%s: input %s has %lld channels, but weight %s with groups=%lld expects %lld", who,
                       nb__shape_str(x), (long long)cin, nb__shape_str(w), (long long)G, (long long)wcin);
    if (b && (b->ndim != 1 || b->shape[0] != cout))
        return nb__err(NB_ESHAPE, "%s: bias %s must be 1-D with %lld elements (Cout of weight %s)", who,
                       nb__shape_str(b), (long long)cout, nb__shape_str(w));
    int64_t ys[NB_MAX_DIMS];
    ys[0] = lead ? x->shape[0] : 1;
    ys[1] = cout;
    for (int i = 0; i < nsp; i++) {
        int k = nsp == 1 ? 1 : i;
        int64_t in = x->shape[lead + 1 + i], kk = w->shape[2 + i];
        int64_t ext = g->dil[k] * (kk - 1) + 1;   /* dilated kernel extent */
        int64_t o = transposed ? (in - 1) * g->stride[k] - 2 * g->pad[k] + ext + opad[k]
                               : (in + 2 * g->pad[k] - ext) / g->stride[k] + 1;
        if (!transposed && in + 2 * g->pad[k] < ext)
            return nb__err(NB_ESHAPE,
                           "%s: kernel size %lld (dilated %lld) along dim %d is larger than the padded input "
                           "%lld (input %s, weight %s, padding %lld)",
                           who, (long long)kk, (long long)ext, lead + 1 + i, (long long)(in + 2 * g->pad[k]),
                           nb__shape_str(x), nb__shape_str(w), (long long)g->pad[k]);
        if (o < 1)
            return nb__err(NB_ESHAPE, "%s: output size %lld along dim %d is too small (input %s, weight %s)", who,
                           (long long)o, lead + 1 + i, nb__shape_str(x), nb__shape_str(w));
        ys[2 + i] = o;
    }
    *yshape = nb_dims_of(nsp + 2, ys);
    return 0;
}

static nb_tensor *conv_public(const char *who, int nsp, bool transposed, nb_tensor *x, nb_tensor *w, nb_tensor *b,
                              const nb_conv_opts *opts) {
    NB_CHECK_ARG(who, x);
    NB_CHECK_ARG(who, w);
    conv_geom g;
    int64_t opad[2];
    nb_dims ys;
    if (conv_opts(who, nsp, transposed, opts, &g, opad) || conv_check(who, nsp, transposed, x, w, b, &g, opad, &ys))
        return NULL;
    bool unbatched = x->ndim == nsp + 1;
    nb_scope_begin();   /* the batch-dim views die here */
    nb_tensor *xb = unbatched ? nb_unsqueeze(x, 0) : x;
    nb_tensor *y = !xb ? NULL
                 : transposed ? conv_data(NB_OP_CONV_TRANSPOSE2D, xb, w, b, ys, &g)
                              : conv_fwd(xb, w, b, ys, &g);
    if (y && unbatched) y = nb_squeeze(y, 0);
    y = nb_keep(y);
    nb_scope_end();
    return y;
}

NB_API nb_tensor *nb_conv2d(nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv_opts *opts) {
    return conv_public("nb_conv2d", 2, false, x, w, b, opts);
}

NB_API nb_tensor *nb_conv1d(nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv_opts *opts) {
    return conv_public("nb_conv1d", 1, false, x, w, b, opts);
}

NB_API nb_tensor *nb_conv_transpose2d(nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv_opts *opts) {
    return conv_public("nb_conv_transpose2d", 2, true, x, w, b, opts);
}
