/* reduce_full.c — the reductions beyond sum and mean: prod, max/min (values
 * over dims, and the one-dim form with indices), argmax/argmin, var/std,
 * logsumexp and the vector norm (p = 1, 2, inf).
 *
 * The shape rule is sum's: `dims` names the reduced dims (negative counts from
 * the end, each at most once; ndims 0 reduces all), the kernel writes an
 * output of the input's rank with size 1 on reduced dims, and without keepdim
 * the result is a view of it with those dims dropped. Every backward views
 * the incoming gradient with the reduced dims kept, expands it over the input
 * and multiplies by the reduction's derivative. Where that derivative is
 * piecewise constant (max/min, the 1- and inf-norm) it is a weight tensor made
 * by a backward kernel and treated as a constant; elsewhere it is written with
 * public ops so a create_graph backward can differentiate it again. prod's
 * derivative (products of the other elements) has its own kernels, which
 * stay exact when the input holds zeros.
 */
#include "ops/ops.h"

#include <math.h>

/* ---- shared: dims, raw reductions, gradient expansion ---- */

/* The reduced dims as a bit mask; ndims 0 means all. Errors name the op and
 * the shape. A 0-dim tensor accepts dim 0 and -1 (nothing to reduce). */
static int red_mask(const char *who, const nb_tensor *a, const int *dims, int ndims, unsigned *mask) {
    int nd = a->ndim, n = nd > 0 ? nd : 1;
    *mask = 0;
    if (ndims < 0 || (ndims > 0 && !dims))
        return nb__err(NB_EINVAL, "%s: %d dims given with dims %s (shape %s)", who, ndims, dims ? "set" : "NULL",
                       nb__shape_str(a));
    if (ndims == 0) {
        *mask = (1u << nd) - 1;
        return 0;
    }
    for (int i = 0; i < ndims; i++) {
        int d = dims[i];
        if (d < -n || d >= n)
            return nb__err(NB_ERANGE, "%s: dim %d out of range for shape %s (expected %d to %d)", who, d,
                           nb__shape_str(a), -n, n - 1);
        if (d < 0) d += n;
        if (nd == 0) continue;
        if (*mask & (1u << d))
            return nb__err(NB_EINVAL, "%s: dim %d appears more than once in dims (shape %s)", who, d,
                           nb__shape_str(a));
        *mask |= 1u << d;
    }
    return 0;
}

/* max, min and their arg forms have no identity: an empty reduced dim is an
 * error, as in PyTorch. */
static int red_nonempty(const char *who, const nb_tensor *a, unsigned mask) {
    for (int d = 0; d < a->ndim; d++)
        if ((mask & (1u << d)) && a->shape[d] == 0)
            return nb__err(NB_EINVAL, "%s: cannot reduce over dim %d of size 0 (shape %s): the reduction has "
                           "no identity", who, d, nb__shape_str(a));
    return 0;
}

/* prod, max, min, argmax, argmin: f32, f64 or i64. */
static int red_check_numeric(const char *who, const nb_tensor *a) {
    if (a->dtype == NB_DTYPE_F32 || a->dtype == NB_DTYPE_F64 || a->dtype == NB_DTYPE_I64) return 0;
    return nb__err(NB_EDTYPE, "%s: expected an f32, f64 or i64 tensor, got %s of shape %s", who,
                   nb_dtype_name(a->dtype), nb__shape_str(a));
}

/* The input's shape with the reduced dims set to 1. */
static nb_dims red_keep_dims(nb_dims in, unsigned mask) {
    for (int d = 0; d < in.ndim; d++)
        if (mask & (1u << d)) in.d[d] = 1;
    return in;
}

/* Runs `op`'s forward kernel: out (+1, not scoped) of dtype dt, keepdim or
 * squeezed; s0 goes to the kernel as scalar[0]. */
static nb_tensor *red_raw(const char *who, nb_op op, nb_tensor *a, unsigned mask, nb_dtype dt, double s0,
                          bool keepdim) {
    nb_dims keep = red_keep_dims(nb_dims_get(a), mask);
    nb_tensor *out = nb__new(who, dt, keep.ndim, keep.d);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {a}, .nin = 1, .scalar = {s0}};
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    if (keepdim) return out;
    int64_t ss[NB_MAX_DIMS], st[NB_MAX_DIMS];
    int sn = 0;
    for (int d = 0; d < a->ndim; d++)
        if (!(mask & (1u << d))) ss[sn++] = a->shape[d];
    nb__contig_strides(sn, ss, st);
    nb_tensor *v = nb__alias(out, sn, ss, st, 0);
    nb_release(out);
    return v;
}

/* Runs a backward kernel: a scoped tensor of a's shape and dtype from a and
 * b (NULL, a's shape, or the keepdim shape, as the op wants); the mask goes
 * to the kernel as scalar[0], s1 as scalar[1]. No autograd. */
static nb_tensor *red_bw_raw(const char *who, nb_op op, nb_tensor *a, nb_tensor *b, unsigned mask, double s1) {
    if (!a || (op != NB_OP_PROD_BACKWARD && !b)) return NULL;
    nb_tensor *out = nb__new(who, a->dtype, a->ndim, a->shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b}, .nin = b ? 2 : 1, .scalar = {(double)mask, s1}};
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return nb__scoped(out);
}

/* t (a reduced result or its gradient) viewed with the reduced dims kept. */
static nb_tensor *red_keep_view(nb_tensor *t, const nb__node *n) {
    return nb_reshape(t, red_keep_dims(n->shape[0], (unsigned)n->p.i[0]));
}

/* The gradient g of a reduced result, expanded back over the input. */
static nb_tensor *red_expand_grad(nb_tensor *g, const nb__node *n) {
    return nb_expand(red_keep_view(g, n), n->shape[0]);
}

/* Records the node (when an input requires grad) and hands out to the scope;
 * the node keeps the input's shape and the mask; param goes to p.d[1]. */
static nb_tensor *red_finish(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw, nb_tensor *a,
                             unsigned mask, unsigned save, double param, nb__node **node_out) {
    nb__node *node;
    nb_tensor *in[1] = {a};
    out = nb__finish(out, name, who, bw, in, 1, save, &node);
    if (node) {
        node->shape[0] = nb_dims_get(a);
        node->p.i[0] = mask;   /* p.i[0] and p.d[0] share memory: parameters go from p.d[1] */
        node->p.d[1] = param;
    }
    if (node_out) *node_out = node;
    return out;
}

/* ---- prod ----
 * d prod / d a_j = the product of the slice's other elements (PROD_BACKWARD:
 * prefix times suffix products, exact with one or several zeros). That
 * "others" product is itself differentiable once more: its vector-Jacobian
 * product is PROD_DOUBLE_BACKWARD. Third derivatives are not supported. */
static nb_tensor *prod_deriv(nb_tensor *a, nb_tensor *h, unsigned mask);

static int prod_deriv_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    if (n->nin == 1) {   /* node of others(a): vjp = M(a) g */
        gin[0] = prod_deriv(nb__saved_get(n, 0), g, (unsigned)n->p.i[0]);
        return nb__grads_ok(n, gin);
    }
    /* node of M(a) h: linear in h with M symmetric, so its vjp in h is M(a) g */
    if (nb__needs_input_grad(n, 0))
        return nb__err(NB_ENOTSUP, "nb_prod: derivatives of third order and higher are not supported");
    gin[1] = prod_deriv(nb__saved_get(n, 0), g, (unsigned)n->p.i[0]);
    return nb__grads_ok(n, gin);
}

/* h NULL: others(a) (a's shape); else M(a) h with M_ij = prod_{k != i,j} a_k. */
static nb_tensor *prod_deriv(nb_tensor *a, nb_tensor *h, unsigned mask) {
    const char *who = "nb_prod";
    if (!a) return NULL;
    nb_op op = h ? NB_OP_PROD_DOUBLE_BACKWARD : NB_OP_PROD_BACKWARD;
    nb_tensor *out = red_bw_raw(who, op, a, h, mask, 0);
    if (!out) return NULL;
    nb_tensor *in[2] = {a, h};
    nb__node *node = NULL;
    if (nb__should_record(in, h ? 2 : 1)) {
        nb_retain(out);   /* nb__finish hands out to the scope once more */
        out = nb__finish(out, h ? "ProdDoubleBackwardBackward" : "ProdBackwardBackward", who, prod_deriv_backward,
                         in, h ? 2 : 1, 1u, &node);
        if (node) node->p.i[0] = mask;
    }
    return out;
}

static int prod_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul(red_expand_grad(g, n), prod_deriv(nb__saved_get(n, 0), NULL, (unsigned)n->p.i[0]));
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_prod(nb_tensor *a, const int *dims, int ndims, bool keepdim) {
    const char *who = "nb_prod";
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (red_check_numeric(who, a) || red_mask(who, a, dims, ndims, &mask)) return NULL;
    nb_tensor *out = red_raw(who, NB_OP_PROD, a, mask, a->dtype, 0, keepdim);
    return red_finish(out, "ProdBackward", who, prod_backward, a, mask, 1u, 0, NULL);
}

/* ---- max / min over dims: the gradient is split evenly among the
 * elements equal to the result (AMAX_BACKWARD), as torch.amax ---- */
static int amax_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0), *r = nb__saved_get(n, 1);
    nb_tensor *w = red_bw_raw(n->op, NB_OP_AMAX_BACKWARD, a, r ? red_keep_view(r, n) : NULL, (unsigned)n->p.i[0], 0);
    gin[0] = nb_mul(red_expand_grad(g, n), w);
    return nb__grads_ok(n, gin);
}

static nb_tensor *amax_amin(const char *who, nb_op op, nb_tensor *a, const int *dims, int ndims, bool keepdim) {
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (red_check_numeric(who, a) || red_mask(who, a, dims, ndims, &mask) || red_nonempty(who, a, mask))
        return NULL;
    nb_tensor *out = red_raw(who, op, a, mask, a->dtype, 0, keepdim);
    return red_finish(out, op == NB_OP_AMAX ? "AmaxBackward" : "AminBackward", who, amax_backward, a, mask,
                      1u | NB__SAVE_OUT, 0, NULL);
}

NB_API nb_tensor *nb_max(nb_tensor *a, const int *dims, int ndims, bool keepdim) {
    return amax_amin("nb_max", NB_OP_AMAX, a, dims, ndims, keepdim);
}
NB_API nb_tensor *nb_min(nb_tensor *a, const int *dims, int ndims, bool keepdim) {
    return amax_amin("nb_min", NB_OP_AMIN, a, dims, ndims, keepdim);
}

/* ---- max / min along one dim, with indices: the gradient goes to the
 * index position only (MAX_DIM_BACKWARD puts a one there), as torch.max(dim).
 * The values come from the amax/amin kernel and the indices from argmax/argmin,
 * which agree: both pick the first NaN when there is one. ---- */
static int max_dim_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *idx = nb__saved_get(n, 0);
    idx = idx ? red_keep_view(idx, n) : NULL;
    /* Without create_graph the kernel puts g itself at the indices (one pass);
       with it, a one-hot times g keeps the result differentiable in g. */
    bool fused = !nb_is_grad_enabled();
    nb_tensor *vals = !idx ? NULL : fused ? red_keep_view(g, n) : nb_ones(nb_dims_get(idx), g->dtype);
    nb_tensor *onehot = vals ? nb_empty(n->shape[0], g->dtype) : NULL;
    if (onehot) {
        nb_kernel_args args = {.op = NB_OP_MAX_DIM_BACKWARD, .out = onehot, .in = {vals, idx}, .nin = 2,
                               .scalar = {(double)n->p.i[0]}};
        if (nb__dispatch(&args, n->op)) onehot = NULL;
    }
    gin[0] = !onehot ? NULL : fused ? onehot : nb_mul(red_expand_grad(g, n), onehot);
    return nb__grads_ok(n, gin);
}

static nb_tensor *max_min_dim(const char *who, bool max, nb_tensor *a, int dim, bool keepdim, nb_tensor **indices) {
    if (indices) *indices = NULL;
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (red_check_numeric(who, a) || red_mask(who, a, &dim, 1, &mask) || red_nonempty(who, a, mask)) return NULL;
    nb_tensor *idx = red_raw(who, max ? NB_OP_ARGMAX : NB_OP_ARGMIN, a, mask, NB_DTYPE_I64, 0, keepdim);
    nb_tensor *out = idx ? red_raw(who, max ? NB_OP_AMAX : NB_OP_AMIN, a, mask, a->dtype, 0, keepdim) : NULL;
    nb__node *node;
    out = red_finish(out, max ? "MaxBackward" : "MinBackward", who, max_dim_backward, a, mask, 0, 0, &node);
    if (node && nb__save(node, idx)) out = NULL;   /* out belongs to the scope already */
    if (!out) {
        nb_release(idx);
        return NULL;
    }
    idx = nb__scoped(idx);
    if (indices) *indices = idx;
    return out;
}

NB_API nb_tensor *nb_max_dim(nb_tensor *a, int dim, bool keepdim, nb_tensor **indices) {
    return max_min_dim("nb_max_dim", true, a, dim, keepdim, indices);
}
NB_API nb_tensor *nb_min_dim(nb_tensor *a, int dim, bool keepdim, nb_tensor **indices) {
    return max_min_dim("nb_min_dim", false, a, dim, keepdim, indices);
}

/* ---- argmax / argmin: I64, first occurrence, off the graph ---- */
static nb_tensor *arg_extreme(const char *who, nb_op op, nb_tensor *a, const int *dim, bool keepdim) {
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (red_check_numeric(who, a) || red_mask(who, a, dim, dim ? 1 : 0, &mask) || red_nonempty(who, a, mask))
        return NULL;
    return nb__scoped(red_raw(who, op, a, mask, NB_DTYPE_I64, 0, keepdim));
}

NB_API nb_tensor *nb_argmax(nb_tensor *a, int dim, bool keepdim) {
    return arg_extreme("nb_argmax", NB_OP_ARGMAX, a, &dim, keepdim);
}
NB_API nb_tensor *nb_argmin(nb_tensor *a, int dim, bool keepdim) {
    return arg_extreme("nb_argmin", NB_OP_ARGMIN, a, &dim, keepdim);
}
NB_API nb_tensor *nb_argmax_all(nb_tensor *a) { return arg_extreme("nb_argmax_all", NB_OP_ARGMAX, a, NULL, false); }
NB_API nb_tensor *nb_argmin_all(nb_tensor *a) { return arg_extreme("nb_argmin_all", NB_OP_ARGMIN, a, NULL, false); }

/* ---- var / std with correction ----
 * d var / d a = 2 (a - mean) / (N - correction), as PyTorch (its divisor,
 * not the forward's max(0, N - correction)); d std = d var / (2 std). Written
 * with public ops, the mean's own dependence on a included, so second
 * derivatives work. */
static nb_tensor *var_dev(nb__node *n, nb_tensor *a, double *scale) {
    unsigned mask = (unsigned)n->p.i[0];
    int dims[NB_MAX_DIMS], nd = 0;
    int64_t count = 1;
    for (int d = 0; d < n->shape[0].ndim; d++)
        if (mask & (1u << d)) {
            dims[nd++] = d;
            count *= n->shape[0].d[d];
        }
    *scale = 1.0 / ((double)count - n->p.d[1]);
    return nb_sub(a, nb_mean(a, nd ? dims : NULL, nd, true));
}

static int var_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    double s;
    nb_tensor *dev = var_dev(n, nb__saved_get(n, 0), &s);
    gin[0] = nb_mul(red_expand_grad(g, n), nb_mul_scalar(dev, 2.0 * s));
    return nb__grads_ok(n, gin);
}

static int std_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    double s;
    nb_tensor *dev = var_dev(n, nb__saved_get(n, 0), &s), *r = nb__saved_get(n, 1);
    gin[0] = nb_mul(red_expand_grad(nb_div(g, r), n), nb_mul_scalar(dev, s));
    return nb__grads_ok(n, gin);
}

static nb_tensor *var_std(const char *who, bool std, nb_tensor *a, const int *dims, int ndims, double correction,
                          bool keepdim) {
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (nb__check_float(who, a) || red_mask(who, a, dims, ndims, &mask)) return NULL;
    if (!isfinite(correction))
        return nb__err(NB_EINVAL, "%s: correction %g is not finite (shape %s)", who, correction, nb__shape_str(a)),
               NULL;
    nb_tensor *out = red_raw(who, std ? NB_OP_STD : NB_OP_VAR, a, mask, a->dtype, correction, keepdim);
    return red_finish(out, std ? "StdBackward" : "VarBackward", who, std ? std_backward : var_backward, a, mask,
                      std ? 1u | NB__SAVE_OUT : 1u, correction, NULL);
}

NB_API nb_tensor *nb_var(nb_tensor *a, const int *dims, int ndims, double correction, bool keepdim) {
    return var_std("nb_var", false, a, dims, ndims, correction, keepdim);
}
NB_API nb_tensor *nb_std(nb_tensor *a, const int *dims, int ndims, double correction, bool keepdim) {
    return var_std("nb_std", true, a, dims, ndims, correction, keepdim);
}

/* ---- logsumexp: d/da = exp(a - result), the softmax over the slice ---- */
static int logsumexp_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0), *r = nb__saved_get(n, 1);
    nb_tensor *p = nb_exp(nb_sub(a, red_expand_grad(r, n)));
    gin[0] = nb_mul(red_expand_grad(g, n), p);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_logsumexp(nb_tensor *a, const int *dims, int ndims, bool keepdim) {
    const char *who = "nb_logsumexp";
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (nb__check_float(who, a) || red_mask(who, a, dims, ndims, &mask)) return NULL;
    nb_tensor *out = red_raw(who, NB_OP_LOGSUMEXP, a, mask, a->dtype, 0, keepdim);
    return red_finish(out, "LogsumexpBackward", who, logsumexp_backward, a, mask, 1u | NB__SAVE_OUT, 0, NULL);
}

/* ---- vector norm, p = 1, 2 or inf ----
 * p = 2: d/da = a / norm, 0 where the norm is 0 (as PyTorch), written with
 * public ops: norm + [norm == 0] is a safe divisor, exact where norm != 0.
 * p = 1, inf: sgn(a), split evenly among the ties for inf: constants from
 * VECTOR_NORM_BACKWARD. */
static int norm_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    double p = n->p.d[1];
    nb_tensor *a = nb__saved_get(n, 0), *r = nb__saved_get(n, 1);
    nb_tensor *rk = r ? red_keep_view(r, n) : NULL;
    if (p == 2) {
        nb_dtype dt = rk ? nb_dtype_of(rk) : NB_DTYPE_F64;
        nb_tensor *nonzero = nb_to_dtype(nb_to_dtype(nb_detach(rk), NB_DTYPE_BOOL), dt);
        nb_tensor *safe = nb_add(rk, nb_add_scalar(nb_neg(nonzero), 1.0));
        gin[0] = nb_mul(a, nb_expand(nb_div(red_keep_view(g, n), safe), n->shape[0]));
    } else {
        nb_tensor *w = red_bw_raw(n->op, NB_OP_VECTOR_NORM_BACKWARD, a, rk, (unsigned)n->p.i[0], p);
        gin[0] = nb_mul(red_expand_grad(g, n), w);
    }
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_norm(nb_tensor *a, double p, const int *dims, int ndims, bool keepdim) {
    const char *who = "nb_norm";
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (nb__check_float(who, a) || red_mask(who, a, dims, ndims, &mask)) return NULL;
    if (p != 1 && p != 2 && !(isinf(p) && p > 0))
        return nb__err(NB_EINVAL, "%s: p = %g is not supported (1, 2 or INFINITY; shape %s)", who, p,
                       nb__shape_str(a)),
               NULL;
    if (isinf(p) && red_nonempty(who, a, mask)) return NULL;
    nb_tensor *out = red_raw(who, NB_OP_VECTOR_NORM, a, mask, a->dtype, p, keepdim);
    return red_finish(out, "NormBackward", who, norm_backward, a, mask, 1u | NB__SAVE_OUT, p, NULL);
}
