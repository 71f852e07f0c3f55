/* pool.c — max_pool2d (with argmax indices), avg_pool2d and
 * adaptive_avg_pool2d on NCHW, with their backward ops.
 *
 * Every op here is a registry op with its own node, and the nodes close
 * under differentiation, so gradients of any order work:
 *   max_pool2d(x)          -> y, idx     d: max_pool2d_bwd(g, idx)
 *   max_pool2d_bwd(gy)     scatter-add   d: max_pool2d_gather(g, idx)
 *   max_pool2d_gather(s)   gather        d: max_pool2d_bwd(g, idx)
 *   avg_pool2d(x)  <-> avg_pool2d_bwd(gy)            (each the other's adjoint)
 *   adaptive_avg_pool2d(x) <-> adaptive_avg_pool2d_bwd(gy)
 * The indices are saved by the nodes that need them (never differentiated).
 * The public functions check arguments as PyTorch does (positive kernel and
 * stride, padding at most half the kernel, a window that fits the padded
 * input), add and remove the batch dim of unbatched input, and call these.
 * Kernel scalars are listed at the top of src/kernels/ref/ref_pool.c.
 */
#include "ops/ops.h"

#include <string.h>

/* The 8 kernel scalars: max {kH, kW, sH, sW, pH, pW, dH, dW};
 * avg {kH, kW, sH, sW, pH, pW, count_include_pad, divisor_override}. */
typedef struct pool_sc {
    int64_t v[8];   /* kept in node->p.i[0..7] */
} pool_sc;

static void sc_put(nb__node *n, const pool_sc *s) { memcpy(n->p.i, s->v, sizeof s->v); }
static pool_sc sc_get(const nb__node *n) {
    pool_sc s;
    memcpy(s.v, n->p.i, sizeof s.v);
    return s;
}

/* Allocates out of `shape` and runs op on a (and b). +1, not scoped, or NULL. */
static nb_tensor *pool_run(const char *who, nb_op op, nb_dims shape, const pool_sc *s, const nb_tensor *a,
                           const nb_tensor *b) {
    nb_tensor *out = nb__new(who, a->dtype, shape.ndim, shape.d);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b}, .nin = b ? 2 : 1};
    for (int i = 0; i < 8; i++) args.scalar[i] = s ? (double)s->v[i] : 0.0;
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* Records the node of a one-input op; keeps the scalars, a shape and
 * (when given) the indices. */
static nb_tensor *pool_finish(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw, nb_tensor *a,
                              const pool_sc *s, nb_dims shape, nb_tensor *idx) {
    nb__node *node;
    nb_tensor *in[1] = {a};
    out = nb__finish(out, name, who, bw, in, 1, 0, &node);
    if (node) {
        if (s) sc_put(node, s);
        node->shape[0] = shape;
        if (idx && nb__save(node, idx)) return NULL;   /* out is the scope's: it is released with it */
    }
    return out;
}

/* ---- max: the gradient flows through the saved argmax ---- */
static nb_tensor *max_bwd(nb_tensor *gy, nb_tensor *idx, nb_dims xshape);
static nb_tensor *max_gather(nb_tensor *src, nb_tensor *idx);

static int max_fwd_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = max_bwd(g, nb__saved_get(n, 0), n->shape[0]);
    return nb__grads_ok(n, gin);
}

/* y and *idx (+1 each, y scoped with its node, idx scoped). */
static nb_tensor *max_fwd(const char *who, nb_tensor *x, const pool_sc *s, nb_dims yshape, nb_tensor **idx) {
    *idx = nb__new(who, NB_DTYPE_I64, yshape.ndim, yshape.d);
    if (!*idx) return NULL;
    nb__scoped(*idx);
    nb_tensor *y = pool_run(who, NB_OP_MAX_POOL2D, yshape, s, x, *idx);
    return pool_finish(y, "MaxPool2DWithIndicesBackward", who, max_fwd_backward, x, s, nb_dims_get(x), *idx);
}

/* max_pool2d_bwd: dx = scatter-add of gy at idx; node shape: gy */
static int max_bwd_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = max_gather(g, nb__saved_get(n, 0));
    return nb__grads_ok(n, gin);
}

static nb_tensor *max_bwd(nb_tensor *gy, nb_tensor *idx, nb_dims xshape) {
    const char *who = "max_pool2d_bwd";
    NB_CHECK_ARG(who, gy);
    NB_CHECK_ARG(who, idx);
    return pool_finish(pool_run(who, NB_OP_MAX_POOL2D_BWD, xshape, NULL, gy, idx), "MaxPool2DWithIndicesBackwardBackward",
                       who, max_bwd_backward, gy, NULL, nb_dims_get(gy), idx);
}

/* max_pool2d_gather: out = src at idx (idx's shape); node shape: src */
static int max_gather_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = max_bwd(g, nb__saved_get(n, 0), n->shape[0]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *max_gather(nb_tensor *src, nb_tensor *idx) {
    const char *who = "max_pool2d_gather";
    NB_CHECK_ARG(who, src);
    NB_CHECK_ARG(who, idx);
    return pool_finish(pool_run(who, NB_OP_MAX_POOL2D_GATHER, nb_dims_get(idx), NULL, src, idx),
                       "MaxPool2DGatherBackward", who, max_gather_backward, src, NULL, nb_dims_get(src), idx);
}

/* ---- average (fixed and adaptive): forward and backward are adjoints ----
 * node shape: the other op's output shape (x's for forward, gy's for bwd) */
static nb_tensor *avg_op(nb_op op, nb_tensor *a, const pool_sc *s, nb_dims shape);

static nb_op avg_adjoint(nb_op op) {
    switch (op) {
    case NB_OP_AVG_POOL2D: return NB_OP_AVG_POOL2D_BWD;
    case NB_OP_AVG_POOL2D_BWD: return NB_OP_AVG_POOL2D;
    case NB_OP_ADAPTIVE_AVG_POOL2D: return NB_OP_ADAPTIVE_AVG_POOL2D_BWD;
    default: return NB_OP_ADAPTIVE_AVG_POOL2D;
    }
}

static int avg_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    pool_sc s = sc_get(n);
    gin[0] = avg_op(avg_adjoint((nb_op)n->p.i[8]), g, &s, n->shape[0]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *avg_op(nb_op op, nb_tensor *a, const pool_sc *s, nb_dims shape) {
    static const char *const names[4][2] = {
        {"nb_avg_pool2d", "AvgPool2DBackward"},
        {"avg_pool2d_bwd", "AvgPool2DBackwardBackward"},
        {"nb_adaptive_avg_pool2d", "AdaptiveAvgPool2DBackward"},
        {"adaptive_avg_pool2d_bwd", "AdaptiveAvgPool2DBackwardBackward"},
    };
    int k = op == NB_OP_AVG_POOL2D ? 0 : op == NB_OP_AVG_POOL2D_BWD ? 1 : op == NB_OP_ADAPTIVE_AVG_POOL2D ? 2 : 3;
    NB_CHECK_ARG(names[k][0], a);
    nb__node *node;
    nb_tensor *in[1] = {a};
    nb_tensor *out = nb__finish(pool_run(names[k][0], op, shape, s, a, NULL), names[k][1], names[k][0], avg_backward,
                                in, 1, 0, &node);
    if (node) {
        sc_put(node, s);
        node->p.i[8] = op;
        node->shape[0] = nb_dims_get(a);
    }
    return out;
}

/* ---- the public functions ---- */

/* Input rank: 3-D (unbatched) or 4-D, non-empty C, H, W; float. */
static int pool_check_input(const char *who, const nb_tensor *x) {
    if (nb__check_float(who, x)) return nb_last_error_code();
    if ((x->ndim != 3 && x->ndim != 4) || x->shape[x->ndim - 1] == 0 || x->shape[x->ndim - 2] == 0 ||
        x->shape[x->ndim - 3] == 0)
        return nb__err(NB_ESHAPE,
                       "%s: expected a 3D (unbatched) or 4D (batched) input with non-zero C, H, W, got input of "
                       "shape %s",
                       who, nb__shape_str(x));
    return 0;
}

/* Output size along one dim, as PyTorch's pooling_output_shape. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t p, int64_t s, int64_t d, bool ceil) {
    int64_t num = in + 2 * p - d * (k - 1) - 1 + (ceil ? s - 1 : 0);
    int64_t o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;   /* floor division */
    if (ceil && (o - 1) * s >= in + p) o--;
    return o;
}

/* Checks kernel/stride/padding/dilation, fills the scalars (avg: dilation
 * slots hold count_include_pad and divisor_override) and the batched output shape. */
static int pool_geom(const char *who, const nb_tensor *x, int64_t kh, int64_t kw, const nb_pool2d_opts *o, bool avg,
                     pool_sc *s, nb_dims *yshape) {
    nb_pool2d_opts z;
    memset(&z, 0, sizeof z);
    if (!o) o = &z;
    int64_t k[2] = {kh, kw}, st[2], p[2] = {o->padding[0], o->padding[1]}, d[2];
    for (int i = 0; i < 2; i++) {
        st[i] = o->stride[i] ? o->stride[i] : k[i];
        d[i] = o->dilation[i] ? o->dilation[i] : 1;
    }
    if (k[0] <= 0 || k[1] <= 0)
        return nb__err(NB_EINVAL, "%s: kernel size must be positive, got %s", who, nb__dims_str(2, k));
    if (st[0] <= 0 || st[1] <= 0)
        return nb__err(NB_EINVAL, "%s: stride must be positive, got %s", who, nb__dims_str(2, st));
    if (d[0] <= 0 || d[1] <= 0)
        return nb__err(NB_EINVAL, "%s: dilation must be positive, got %s", who, nb__dims_str(2, d));
    if (avg && (d[0] != 1 || d[1] != 1))
        return nb__err(NB_EINVAL, "%s: average pooling has no dilation (got %s)", who, nb__dims_str(2, d));
    if (p[0] < 0 || p[1] < 0)
        return nb__err(NB_EINVAL, "%s: padding must be non-negative, got %s", who, nb__dims_str(2, p));
    if (p[0] > k[0] / 2 || p[1] > k[1] / 2)
        return nb__err(NB_EINVAL, "%s: padding %s should be at most half of the kernel size %s", who,
                       nb__dims_str(2, p), nb__dims_str(2, k));
    if (avg && o->divisor_override < 0)
        return nb__err(NB_EINVAL, "%s: divisor_override must be positive (or 0 for none), got %lld", who,
                       (long long)o->divisor_override);
    int lead = x->ndim - 3;
    int64_t ys[4] = {lead ? x->shape[0] : 1, x->shape[lead], 0, 0};
    for (int i = 0; i < 2; i++) {
        int64_t in = x->shape[lead + 1 + i];
        ys[2 + i] = pool_out_size(in, k[i], p[i], st[i], d[i], o->ceil_mode);
        if (ys[2 + i] < 1)
            return nb__err(NB_ESHAPE,
                           "%s: kernel size %s (dilation %s) is larger than the padded input (input %s, padding "
                           "%s): output size along dim %d would be %lld",
                           who, nb__dims_str(2, k), nb__dims_str(2, d), nb__shape_str(x), nb__dims_str(2, p),
                           lead + 1 + i, (long long)ys[2 + i]);
    }
    *s = (pool_sc){{k[0], k[1], st[0], st[1], p[0], p[1], avg ? !o->exclude_pad : d[0], avg ? o->divisor_override : d[1]}};
    *yshape = nb_dims_of(4, ys);
    return 0;
}

/* Drops the batch dim that was added to unbatched input. */
static nb_tensor *unbatch(nb_tensor *y, bool unbatched) { return y && unbatched ? nb_squeeze(y, 0) : y; }

NB_API nb_tensor *nb_max_pool2d_with_indices(nb_tensor *x, int64_t kernel_h, int64_t kernel_w,
                                             const nb_pool2d_opts *opts, nb_tensor **indices) {
    const char *who = indices ? "nb_max_pool2d_with_indices" : "nb_max_pool2d";
    if (indices) *indices = NULL;
    NB_CHECK_ARG(who, x);
    pool_sc s;
    nb_dims ys;
    if (pool_check_input(who, x) || pool_geom(who, x, kernel_h, kernel_w, opts, false, &s, &ys)) return NULL;
    bool unb = x->ndim == 3;
    nb_scope_begin();   /* the batch-dim views die here */
    nb_tensor *idx = NULL, *xb = unb ? nb_unsqueeze(x, 0) : x;
    nb_tensor *y = xb ? unbatch(max_fwd(who, xb, &s, ys, &idx), unb) : NULL;
    nb_tensor *ix = y && indices ? unbatch(idx, unb) : NULL;
    if (indices && !ix) y = NULL;
    y = nb_keep(y);
    if (indices) *indices = y ? nb_keep(ix) : NULL;
    nb_scope_end();
    return y;
}

NB_API nb_tensor *nb_max_pool2d(nb_tensor *x, int64_t kernel_h, int64_t kernel_w, const nb_pool2d_opts *opts) {
    return nb_max_pool2d_with_indices(x, kernel_h, kernel_w, opts, NULL);
}

NB_API nb_tensor *nb_avg_pool2d(nb_tensor *x, int64_t kernel_h, int64_t kernel_w, const nb_pool2d_opts *opts) {
    const char *who = "nb_avg_pool2d";
    NB_CHECK_ARG(who, x);
    pool_sc s;
    nb_dims ys;
    if (pool_check_input(who, x) || pool_geom(who, x, kernel_h, kernel_w, opts, true, &s, &ys)) return NULL;
    bool unb = x->ndim == 3;
    nb_scope_begin();
    nb_tensor *xb = unb ? nb_unsqueeze(x, 0) : x;
    nb_tensor *y = nb_keep(unbatch(xb ? avg_op(NB_OP_AVG_POOL2D, xb, &s, ys) : NULL, unb));
    nb_scope_end();
    return y;
}

NB_API nb_tensor *nb_adaptive_avg_pool2d(nb_tensor *x, int64_t out_h, int64_t out_w) {
    const char *who = "nb_adaptive_avg_pool2d";
    NB_CHECK_ARG(who, x);
    if (pool_check_input(who, x)) return NULL;
    if (out_h < 1 || out_w < 1) {
        int64_t os[2] = {out_h, out_w};
        nb__err(NB_EINVAL, "%s: output size %s must be positive (input %s)", who, nb__dims_str(2, os),
                nb__shape_str(x));
        return NULL;
    }
    bool unb = x->ndim == 3;
    pool_sc s = {{0}};
    nb_scope_begin();
    nb_tensor *xb = unb ? nb_unsqueeze(x, 0) : x;
    nb_tensor *y = xb ? avg_op(NB_OP_ADAPTIVE_AVG_POOL2D, xb, &s, NB_SHAPE(xb->shape[0], xb->shape[1], out_h, out_w))
                      : NULL;
    y = nb_keep(unbatch(y, unb));
    nb_scope_end();
    return y;
}
