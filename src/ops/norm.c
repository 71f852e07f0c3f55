/* norm.c — layer_norm, rms_norm, group_norm and batch_norm.
 *
 * Each forward is one fused kernel (src/kernels/ref/ref_norm.c lists their
 * arguments); weight and bias are optional (NULL). Each backward, right above
 * its forward, has two paths that give the same gradients:
 *  - plain (grad mode off, the usual backward): dx from the op's fused
 *    backward kernel, which recomputes the statistics from the saved x
 *    (batch_norm saves its [2, C] statistics, layer_norm its (R, 2) per-row
 *    mean and rstd, as PyTorch's native_layer_norm); dweight = sum(dy * x̂)
 *    and dbias = sum(dy) over the non-weight dims, with x̂ from the forward
 *    kernel run without weight and bias (layer_norm: dx, dweight and dbias
 *    from one LAYER_NORM_BACKWARD call in fused mode, one pass over dy and
 *    x; without the saved stats, LAYER_NORM_PARAM_BACKWARD);
 *  - create_graph (grad mode on): written with public ops (mean, sub, mul,
 *    pow_scalar, sum), so the backward is recorded and can be differentiated
 *    again, to any order.
 * gradgradcheck holds the two against each other: its numeric side runs the
 * plain path, its analytic side differentiates the create_graph one.
 *
 * Node parameters: p.d[0] eps, p.i[2] k (last dims) / groups / training,
 * p.i[3] whether a weight was given, p.i[4] (layer_norm) whether the stats
 * were saved; shape[0] the weight's shape.
 */
#include "ops/ops.h"

#include <float.h>

#define NEED(i) nb__needs_input_grad(n, i)

/* ---- shared ---- */

/* Runs a norm kernel (args without out) into a new tensor of (nd, shape) and
 * in[0]'s dtype. Returns it (+1, not scoped, no autograd) or NULL. */
static nb_tensor *run(const char *who, nb_kernel_args *a, int nd, const int64_t *shape) {
    nb_tensor *out = nb__new(who, a->in[0]->dtype, nd, shape);
    if (!out) return NULL;
    a->out = out;
    if (nb__dispatch(a, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* An optional parameter (weight, bias, running stat): NULL, or x's dtype
 * with exactly the shape (nd, shape). */
static int check_param(const char *who, const char *what, const nb_tensor *p, const nb_tensor *x, int nd,
                       const int64_t *shape) {
    if (!p) return 0;
    if (p->dtype != x->dtype)
        return nb__err(NB_EDTYPE, "%s: %s is %s, input %s is %s (they must match)", who, what, nb_dtype_name(p->dtype),
                       nb__shape_str(x), nb_dtype_name(x->dtype));
    bool same = p->ndim == nd;
    for (int d = 0; same && d < nd; d++) same = p->shape[d] == shape[d];
    if (!same)
        return nb__err(NB_ESHAPE, "%s: %s has shape %s, expected %s (input %s)", who, what, nb__shape_str(p),
                       nb__dims_str(nd, shape), nb__shape_str(x));
    return 0;
}

/* x̂ = (x - mean) * rstd (x * rstd when !center) over dims, with public ops;
 * *rstd = (var + eps)^(-1/2), keepdim-shaped. */
static nb_tensor *xhat_ops(nb_tensor *x, const int *dims, int nd, double eps, bool center, nb_tensor **rstd) {
    nb_tensor *xc = center ? nb_sub(x, nb_mean(x, dims, nd, true)) : x;
    *rstd = nb_pow_scalar(nb_add_scalar(nb_mean(nb_mul(xc, xc), dims, nd, true), eps), -0.5);
    return nb_mul(xc, *rstd);
}

/* dx = rstd * (dx̂ - mean(dx̂) - x̂ * mean(dx̂ * x̂)) over dims (no mean(dx̂)
 * term when !center), with public ops: ref_norm.c's slice_backward. */
static nb_tensor *dx_ops(nb_tensor *dxh, nb_tensor *xh, nb_tensor *rstd, const int *dims, int nd, bool center) {
    nb_tensor *t = nb_sub(dxh, nb_mul(xh, nb_mean(nb_mul(dxh, xh), dims, nd, true)));
    if (center) t = nb_sub(t, nb_mean(dxh, dims, nd, true));
    return nb_mul(t, rstd);
}

/* x (N, C, ...): the dims other than 1 (returns their count), and the shape
 * (C, 1, ..., 1) that broadcasts a per-channel vector against x. */
static int non_channel_dims(const nb_tensor *x, int *dims, nb_dims *chan) {
    int nd = 0;
    chan->ndim = x->ndim - 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d != 1) dims[nd++] = d;
        if (d >= 1) chan->d[d - 1] = d == 1 ? x->shape[1] : 1;
    }
    return nd;
}

static bool float_input(const char *who, const nb_tensor *x, int min_ndim, const char *expect) {
    if (nb__check_float(who, x)) return false;
    if (x->ndim >= min_ndim) return true;
    nb__err(NB_ESHAPE, "%s: expected input %s, got shape %s", who, expect, nb__shape_str(x));
    return false;
}

/* ---- layer_norm and rms_norm: over the last k dims ----
 * Node inputs {x, w, b} (rms_norm: {x, w}); saved x, then w if given, then
 * (layer_norm) the forward's (R, 2) stats, R the rows (x's leading dims). */

/* Rows of x normalized over its last k dims: the product of the others. */
static int64_t outer_rows(const nb_tensor *x, int k) {
    int64_t r = 1;
    for (int d = 0; d < x->ndim - k; d++) r *= x->shape[d];
    return r;
}

/* layer_norm's dx, dweight and dbias from one fused LAYER_NORM_BACKWARD
 * call: its out (R + 2, n) holds dx in rows [0, R), then (dweight; dbias).
 * The two parameter rows are copied out (2n floats) and dx becomes the sole
 * owner of out's storage (offset 0, contiguous), so the engine can take it
 * as x's gradient without a copy. Sets gin[0..2]; 0 or NB_E*. */
static int ln_fused_backward(nb__node *n, nb_tensor *g, nb_tensor *x, nb_tensor *w, nb_tensor *st, nb_tensor **gin) {
    int k = (int)n->p.i[2];
    int64_t R = outer_rows(x, k), wn = 1;
    for (int i = 0; i < k; i++) wn *= n->shape[0].d[i];
    nb_kernel_args a = {.op = NB_OP_LAYER_NORM_BACKWARD, .in = {g, x, w, st}, .nin = 4, .scalar = {k, n->p.d[0], 1}};
    int64_t shape[2] = {R + 2, wn}, pst[2] = {wn, 1}, cs[NB_MAX_DIMS];
    nb_tensor *o = run(n->op, &a, 2, shape);
    if (!o) return nb_last_error_code();
    nb_tensor *pv = nb__alias(o, 2, (int64_t[2]){2, wn}, pst, R * wn);
    nb_tensor *p = nb_clone(pv);
    nb_release(pv);
    nb__contig_strides(x->ndim, x->shape, cs);
    gin[0] = nb__scoped(nb__alias(o, x->ndim, x->shape, cs, 0));
    nb_release(o);
    gin[1] = nb_reshape(nb_narrow(p, 0, 0, 1), n->shape[0]);
    if (n->nin > 2 && NEED(2)) gin[2] = nb_reshape(nb_narrow(p, 0, 1, 1), n->shape[0]);
    return gin[0] && gin[1] ? 0 : nb_last_error_code();
}

static int last_dims_backward(nb__node *n, nb_tensor *g, nb_tensor **gin, bool center) {
    double eps = n->p.d[0];
    int k = (int)n->p.i[2];
    bool has_w = n->p.i[3] != 0, has_st = n->p.i[4] != 0;
    nb_tensor *x = nb__saved_get(n, 0), *w = has_w ? nb__saved_get(n, 1) : NULL;
    nb_tensor *st = has_st ? nb__saved_get(n, has_w ? 2 : 1) : NULL;
    if (!x || (has_w && !w) || (has_st && !st)) return nb_last_error_code();
    int dims[NB_MAX_DIMS];
    for (int i = 0; i < k; i++) dims[i] = x->ndim - k + i;
    nb_op bwd = center ? NB_OP_LAYER_NORM_BACKWARD : NB_OP_RMS_NORM_BACKWARD;
    if (nb_is_grad_enabled()) {   /* create_graph: public ops */
        nb_tensor *rstd, *xh = xhat_ops(x, dims, k, eps, center, &rstd);
        if (NEED(0)) gin[0] = dx_ops(w ? nb_mul(g, w) : g, xh, rstd, dims, k, center);
        if (NEED(1)) gin[1] = nb_sum_to(nb_mul(g, xh), n->shape[0]);
    } else if (st && NEED(0) && NEED(1)) {   /* layer_norm: one pass over g and x */
        int rc = ln_fused_backward(n, g, x, w, st, gin);
        if (rc) return rc;
    } else {
        if (NEED(0)) {
            nb_kernel_args a = {.op = bwd, .in = {g, x, w, st}, .nin = st ? 4 : 3, .scalar = {k, eps}};
            gin[0] = nb__scoped(run(n->op, &a, x->ndim, x->shape));
        }
        if (NEED(1)) {   /* (dweight; dbias) in one pass over g and x (rms_norm: its x̂, dbias unused) */
            nb_kernel_args a = {.op = NB_OP_LAYER_NORM_PARAM_BACKWARD, .in = {g, x}, .nin = 2,
                                .scalar = {k, eps, center ? 0 : 1}};
            int64_t wn = 1;
            for (int i = 0; i < k; i++) wn *= n->shape[0].d[i];
            int64_t shape[2] = {2, wn};
            nb_tensor *p = nb__scoped(run(n->op, &a, 2, shape));
            gin[1] = nb_reshape(nb_slice(p, 0, 0, 1, 1), n->shape[0]);
            if (n->nin > 2 && NEED(2)) gin[2] = nb_reshape(nb_slice(p, 0, 1, 2, 1), n->shape[0]);
        }
    }
    if (n->nin > 2 && NEED(2) && !gin[2]) gin[2] = nb_sum_to(g, n->shape[0]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *last_dims_norm(const char *who, const char *name, nb__backward_fn bw, nb_tensor *x, nb_dims ns,
                                 nb_tensor *w, nb_tensor *b, double eps, bool center) {
    NB_CHECK_ARG(who, x);
    if (nb__check_float(who, x)) return NULL;
    int k = ns.ndim;
    bool match = k >= 1 && k <= x->ndim;
    for (int i = 0; match && i < k; i++) match = ns.d[i] == x->shape[x->ndim - k + i];
    if (!match) {
        nb__err(NB_ESHAPE, "%s: normalized_shape %s does not match the last dims of input %s", who,
                k >= 0 && k <= NB_MAX_DIMS ? nb__dims_str(k, ns.d) : "(invalid)", nb__shape_str(x));
        return NULL;
    }
    if (check_param(who, "weight", w, x, k, ns.d) || check_param(who, "bias", b, x, k, ns.d)) return NULL;
    nb_op op = center ? NB_OP_LAYER_NORM : NB_OP_RMS_NORM;
    nb_kernel_args a = {.op = op, .in = {x, w, b}, .nin = center ? 3 : 2, .scalar = {k, eps}};
    nb_tensor *in[3] = {x, w, b}, *st = NULL;
    if (center && nb__should_record(in, 3)) {   /* layer_norm saves its (R, 2) (mean, rstd) for the backward */
        int64_t shape[2] = {outer_rows(x, k), 2};
        if (!(st = nb__new(who, x->dtype, 2, shape))) return NULL;
        a.in[3] = st;
        a.nin = 4;
    }
    nb__node *node;
    nb_tensor *out = nb__finish(run(who, &a, x->ndim, x->shape), name, who, bw, in, center ? 3 : 2, w ? 3u : 1u, &node);
    if (node) {
        node->p.d[0] = eps;
        node->p.i[2] = k;
        node->p.i[3] = w != NULL;
        node->p.i[4] = st != NULL;
        node->shape[0] = ns;
        if (st && nb__save(node, st)) out = NULL;   /* out stays in the scope, which releases it */
    }
    nb_release(st);
    return out;
}

static int layer_norm_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    return last_dims_backward(n, g, gin, true);
}
NB_API nb_tensor *nb_layer_norm(nb_tensor *x, nb_dims normalized_shape, nb_tensor *weight, nb_tensor *bias,
                                const nb_norm_opts *opts) {
    double eps = opts && opts->eps != 0 ? opts->eps : 1e-5;
    return last_dims_norm("nb_layer_norm", "NativeLayerNormBackward", layer_norm_backward, x, normalized_shape, weight,
                          bias, eps, true);
}

static int rms_norm_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    return last_dims_backward(n, g, gin, false);
}
NB_API nb_tensor *nb_rms_norm(nb_tensor *x, nb_dims normalized_shape, nb_tensor *weight, const nb_norm_opts *opts) {
    double eps = opts && opts->eps != 0 ? opts->eps : x && x->dtype == NB_DTYPE_F32 ? FLT_EPSILON : DBL_EPSILON;
    return last_dims_norm("nb_rms_norm", "RmsNormBackward", rms_norm_backward, x, normalized_shape, weight, NULL, eps,
                          false);
}

/* ---- group_norm: x (N, C, *) over (sample, group) ----
 * Node inputs {x, w, b}; saved x, then w if given. */
static int group_norm_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    double eps = n->p.d[0];
    int64_t G = n->p.i[2];
    bool has_w = n->p.i[3] != 0;
    nb_tensor *x = nb__saved_get(n, 0), *w = has_w ? nb__saved_get(n, 1) : NULL;
    if (!x || (has_w && !w)) return nb_last_error_code();
    int dims[NB_MAX_DIMS];
    nb_dims chan;
    int nd = non_channel_dims(x, dims, &chan);
    if (nb_is_grad_enabled()) {   /* create_graph: public ops on x viewed as (N, G, C/G * prod(*)) */
        int64_t N = x->shape[0];
        nb_dims grouped = NB_SHAPE(N, G, N * G != 0 ? x->numel / (N * G) : 0);
        int last = 2;
        nb_tensor *rstd, *xhg = xhat_ops(nb_reshape(x, grouped), &last, 1, eps, true, &rstd);
        nb_tensor *xh = nb_reshape(xhg, nb_dims_get(x));
        if (NEED(0)) {
            nb_tensor *dxh = nb_reshape(w ? nb_mul(g, nb_reshape(w, chan)) : g, grouped);
            gin[0] = nb_reshape(dx_ops(dxh, xhg, rstd, &last, 1, true), nb_dims_get(x));
        }
        if (NEED(1)) gin[1] = nb_sum(nb_mul(g, xh), dims, nd, false);
    } else {
        if (NEED(0)) {
            nb_kernel_args a = {.op = NB_OP_GROUP_NORM_BACKWARD, .in = {g, x, w}, .nin = 3, .scalar = {(double)G, eps}};
            gin[0] = nb__scoped(run(n->op, &a, x->ndim, x->shape));
        }
        if (NEED(1)) {
            nb_kernel_args a = {.op = NB_OP_GROUP_NORM, .in = {x}, .nin = 3, .scalar = {(double)G, eps}};
            gin[1] = nb_sum(nb_mul(g, nb__scoped(run(n->op, &a, x->ndim, x->shape))), dims, nd, false);
        }
    }
    if (NEED(2)) gin[2] = nb_sum(g, dims, nd, false);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_group_norm(nb_tensor *x, int64_t num_groups, nb_tensor *weight, nb_tensor *bias,
                                const nb_norm_opts *opts) {
    const char *who = "nb_group_norm";
    NB_CHECK_ARG(who, x);
    if (!float_input(who, x, 2, "(N, C, *) with at least 2 dims")) return NULL;
    int64_t C = x->shape[1];
    if (num_groups < 1 || C % num_groups != 0) {
        nb__err(NB_EINVAL, "%s: %lld channels of input %s cannot be split into %lld groups", who, (long long)C,
                nb__shape_str(x), (long long)num_groups);
        return NULL;
    }
    if (check_param(who, "weight", weight, x, 1, &C) || check_param(who, "bias", bias, x, 1, &C)) return NULL;
    double eps = opts && opts->eps != 0 ? opts->eps : 1e-5;
    nb_kernel_args a = {.op = NB_OP_GROUP_NORM, .in = {x, weight, bias}, .nin = 3, .scalar = {(double)num_groups, eps}};
    nb_tensor *in[3] = {x, weight, bias};
    nb__node *node;
    nb_tensor *out = nb__finish(run(who, &a, x->ndim, x->shape), "NativeGroupNormBackward", who, group_norm_backward,
                                in, 3, weight ? 3u : 1u, &node);
    if (node) {
        node->p.d[0] = eps;
        node->p.i[2] = num_groups;
        node->p.i[3] = weight != NULL;
    }
    return out;
}

/* ---- batch_norm: x (N, C, *) per channel ----
 * Node inputs {x, w, b}; saved x, then w if given, then the (2, C) stats
 * (mean; var) the forward used: the batch's (training) or the running ones
 * (eval, a copy, so a later running-stat update does not change them). */
static int batch_norm_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    double eps = n->p.d[0];
    bool training = n->p.i[2] != 0, has_w = n->p.i[3] != 0;
    nb_tensor *x = nb__saved_get(n, 0), *w = has_w ? nb__saved_get(n, 1) : NULL;
    nb_tensor *stats = nb__saved_get(n, has_w ? 2 : 1);
    if (!x || (has_w && !w) || !stats) return nb_last_error_code();
    int dims[NB_MAX_DIMS];
    nb_dims chan;
    int nd = non_channel_dims(x, dims, &chan);
    if (nb_is_grad_enabled()) {   /* create_graph: public ops */
        nb_tensor *rstd, *xh;
        if (training) {
            xh = xhat_ops(x, dims, nd, eps, true, &rstd);
        } else {   /* constants: the running stats */
            nb_tensor *mean = nb_reshape(nb_slice(stats, 0, 0, 1, 1), chan);
            rstd = nb_pow_scalar(nb_add_scalar(nb_reshape(nb_slice(stats, 0, 1, 2, 1), chan), eps), -0.5);
            xh = nb_mul(nb_sub(x, mean), rstd);
        }
        if (NEED(0)) {
            nb_tensor *dxh = w ? nb_mul(g, nb_reshape(w, chan)) : g;
            gin[0] = training ? dx_ops(dxh, xh, rstd, dims, nd, true) : nb_mul(dxh, rstd);
        }
        if (NEED(1)) gin[1] = nb_sum(nb_mul(g, xh), dims, nd, false);
    } else {
        /* (dweight; dbias) per channel in one pass over g and x; a training dx
           needs the same two sums, and its kernel is handed them */
        nb_tensor *p = NULL;
        if (NEED(1) || NEED(2) || (NEED(0) && training)) {
            nb_kernel_args a = {.op = NB_OP_BATCH_NORM_PARAM_BACKWARD, .in = {g, x, stats}, .nin = 3,
                                .scalar = {eps}};
            int64_t shape[2] = {2, x->shape[1]};
            p = nb__scoped(run(n->op, &a, 2, shape));
            if (!p) return nb_last_error_code();
        }
        if (NEED(0)) {   /* stats, with the sums as rows 2 and 3 when there are any */
            nb_tensor *parts[2] = {stats, p}, *sp = p ? nb_cat(parts, 2, 0) : stats;
            if (!sp) return nb_last_error_code();
            nb_kernel_args a = {.op = NB_OP_BATCH_NORM_BACKWARD, .in = {g, x, sp, w}, .nin = 4,
                                .scalar = {eps, training}};
            gin[0] = nb__scoped(run(n->op, &a, x->ndim, x->shape));
        }
        if (NEED(1)) gin[1] = nb_squeeze(nb_slice(p, 0, 0, 1, 1), 0);
        if (NEED(2)) gin[2] = nb_squeeze(nb_slice(p, 0, 1, 2, 1), 0);
    }
    if (NEED(2) && !gin[2]) gin[2] = nb_sum(g, dims, nd, false);
    return nb__grads_ok(n, gin);
}

/* (2, C) = (mean; var): copies of the running stats (+1, no autograd). */
static nb_tensor *stack_stats(const char *who, nb_tensor *mean, nb_tensor *var) {
    int64_t C = mean->shape[0], shape[2] = {2, C};
    nb_tensor *s = nb__new(who, mean->dtype, 2, shape);
    for (int r = 0; s && r < 2; r++) {
        nb_tensor *row = nb__alias(s, 1, &C, &s->stride[1], s->offset + r * s->stride[0]);
        nb_kernel_args a = {.op = NB_OP_COPY, .out = row, .in = {r ? var : mean}, .nin = 1};
        int rc = row ? nb__dispatch(&a, who) : NB_ENOMEM;
        nb_release(row);
        if (rc) {
            nb_release(s);
            s = NULL;
        }
    }
    return s;
}

/* running = (1-m)*running + m*batch, in place (running_var with the unbiased
 * variance, var * count/(count-1)); not recorded. Returns 0 or NB_E*. */
static int update_running(nb_tensor *rm, nb_tensor *rv, nb_tensor *stats, double m, int64_t count) {
    bool prev = nb_set_grad_enabled(false);
    nb_scope_begin();
    nb_tensor *mean = nb_squeeze(nb_slice(stats, 0, 0, 1, 1), 0);
    nb_tensor *var = nb_mul_scalar(nb_squeeze(nb_slice(stats, 0, 1, 2, 1), 0), (double)count / (double)(count - 1));
    bool ok = nb_mul_scalar_(rm, 1.0 - m) && nb_add_(rm, nb_mul_scalar(mean, m)) && nb_mul_scalar_(rv, 1.0 - m) &&
              nb_add_(rv, nb_mul_scalar(var, m));
    nb_scope_end();
    nb_set_grad_enabled(prev);
    return ok ? 0 : nb_last_error_code();
}

NB_API nb_tensor *nb_batch_norm(nb_tensor *x, nb_tensor *running_mean, nb_tensor *running_var, nb_tensor *weight,
                                nb_tensor *bias, const nb_batch_norm_opts *opts) {
    const char *who = "nb_batch_norm";
    NB_CHECK_ARG(who, x);
    if (!float_input(who, x, 2, "(N, C), (N, C, L) or (N, C, H, W)")) return NULL;
    bool training = opts && opts->training;
    double momentum = opts && opts->momentum != 0 ? opts->momentum : 0.1;
    double eps = opts && opts->eps != 0 ? opts->eps : 1e-5;
    int64_t C = x->shape[1], count = C ? x->numel / C : 0;   /* values per channel */
    if (!running_mean != !running_var || (!training && !running_mean)) {
        nb__err(NB_EINVAL, "%s: running_mean and running_var must both be given%s (got %s and %s)", who,
                training ? " or both be NULL" : " in eval mode (training false)", running_mean ? "a tensor" : "NULL",
                running_var ? "a tensor" : "NULL");
        return NULL;
    }
    if (check_param(who, "running_mean", running_mean, x, 1, &C) ||
        check_param(who, "running_var", running_var, x, 1, &C) || check_param(who, "weight", weight, x, 1, &C) ||
        check_param(who, "bias", bias, x, 1, &C))
        return NULL;
    if (training && count == 1) {
        nb__err(NB_EINVAL, "%s: expected more than 1 value per channel when training, got input of shape %s", who,
                nb__shape_str(x));
        return NULL;
    }
    nb_tensor *stats;
    if (training) {
        nb_kernel_args a = {.op = NB_OP_BATCH_NORM_STATS, .in = {x}, .nin = 1};
        int64_t shape[2] = {2, C};
        stats = run(who, &a, 2, shape);
    } else {
        stats = stack_stats(who, running_mean, running_var);
    }
    if (!stats) return NULL;
    nb_kernel_args a = {.op = NB_OP_BATCH_NORM, .in = {x, stats, weight, bias}, .nin = 4, .scalar = {eps}};
    nb_tensor *out = run(who, &a, x->ndim, x->shape);
    if (out && training && running_mean && update_running(running_mean, running_var, stats, momentum, count)) {
        nb_release(out);
        out = NULL;
    }
    nb_tensor *in[3] = {x, weight, bias};
    nb__node *node;
    out = nb__finish(out, "NativeBatchNormBackward", who, batch_norm_backward, in, 3, weight ? 3u : 1u, &node);
    if (node) {
        node->p.d[0] = eps;
        node->p.i[2] = training;
        node->p.i[3] = weight != NULL;
        if (nb__save(node, stats)) out = NULL;   /* out stays in the scope, which releases it */
    }
    nb_release(stats);
    return out;
}
