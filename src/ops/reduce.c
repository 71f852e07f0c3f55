/* reduce.c — sum and mean over all or chosen dims (keepdim), and sum_to
 * (the reverse of broadcasting, used by every broadcasting backward).
 *
 * Bool and i64 sums give i64, as PyTorch. The kernel writes a keepdim-shaped
 * output; without keepdim the result is a view of it with those dims dropped.
 */
#include "ops/ops.h"

#include <string.h>

/* Which dims of an nd-dim tensor to reduce: mask bit d. ndims 0 means all. */
static int dim_mask(const char *who, const int *dims, int ndims, int nd, unsigned *mask) {
    *mask = 0;
    if (ndims < 0 || (ndims > 0 && !dims))
        return nb__err(NB_EINVAL, "%s: %d dims given with dims %s", who, ndims, dims ? "set" : "NULL");
    if (ndims == 0) {
        *mask = (1u << nd) - 1;
        return 0;
    }
    for (int i = 0; i < ndims; i++) {
        int d = nb__wrap_dim(who, dims[i], nd);
        if (d < 0) return NB_ERANGE;
        if (nd == 0) continue;
        if (*mask & (1u << d)) return nb__err(NB_EINVAL, "%s: dim %d appears more than once in the list", who, d);
        *mask |= 1u << d;
    }
    return 0;
}

/* The raw reduction (no autograd): out (+1) of keepdim or squeezed shape. */
static nb_tensor *sum_raw(const char *who, nb_tensor *a, unsigned mask, bool keepdim) {
    int64_t ks[NB_MAX_DIMS], ss[NB_MAX_DIMS];
    int sn = 0;
    for (int d = 0; d < a->ndim; d++) {
        ks[d] = mask & (1u << d) ? 1 : a->shape[d];
        if (!(mask & (1u << d))) ss[sn++] = a->shape[d];
    }
    nb_dtype odt = a->dtype == NB_DTYPE_BOOL || a->dtype == NB_DTYPE_I64 ? NB_DTYPE_I64 : a->dtype;
    nb_tensor *out = nb__new(who, odt, a->ndim, ks);
    if (!out) return NULL;
    nb_kernel_args args = {.op = NB_OP_SUM, .out = out, .in = {a}, .nin = 1};
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    if (keepdim) return out;
    int64_t st[NB_MAX_DIMS];
    nb__contig_strides(sn, ss, st);
    nb_tensor *v = nb__alias(out, sn, ss, st, 0);
    nb_release(out);
    return v;
}

/* ---- sum: backward expands the gradient back over the reduced dims ---- */
static int sum_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_dims in = n->shape[0], keep = in;
    unsigned mask = (unsigned)n->p.i[0];
    for (int d = 0; d < in.ndim; d++)
        if (mask & (1u << d)) keep.d[d] = 1;
    nb_tensor *gk = nb_reshape(g, keep);
    double scale = n->p.d[1];   /* 1 for sum, 1/count for mean */
    if (scale != 1.0) gk = nb_mul_scalar(gk, scale);
    gin[0] = nb_expand(gk, in);
    return nb__grads_ok(n, gin);
}

static nb_tensor *reduce(const char *who, const char *name, nb_tensor *a, const int *dims, int ndims, bool keepdim,
                         bool mean) {
    NB_CHECK_ARG(who, a);
    unsigned mask;
    if (dim_mask(who, dims, ndims, a->ndim, &mask)) return NULL;
    if (mean && nb__check_float(who, a)) return NULL;
    nb_tensor *out = sum_raw(who, a, mask, keepdim);
    double scale = 1.0;
    if (out && mean) {
        int64_t count = 1;
        for (int d = 0; d < a->ndim; d++)
            if (mask & (1u << d)) count *= a->shape[d];
        scale = 1.0 / (double)count;   /* count 0 gives NaN, as PyTorch */
        nb_kernel_args args = {.op = NB_OP_MUL_SCALAR, .out = out, .in = {out}, .nin = 1, .scalar = {scale}};
        if (nb__dispatch(&args, who)) {
            nb_release(out);
            return NULL;
        }
    }
    nb__node *node;
    nb_tensor *in[1] = {a};
    out = nb__finish(out, name, who, sum_backward, in, 1, 0, &node);
    if (node) {
        node->shape[0] = nb_dims_get(a);
        node->p.i[0] = mask;
        node->p.d[1] = scale;
    }
    return out;
}

NB_API nb_tensor *nb_sum(nb_tensor *a, const int *dims, int ndims, bool keepdim) {
    return reduce("nb_sum", "SumBackward", a, dims, ndims, keepdim, false);
}
NB_API nb_tensor *nb_mean(nb_tensor *a, const int *dims, int ndims, bool keepdim) {
    return reduce("nb_mean", "MeanBackward", a, dims, ndims, keepdim, true);
}
NB_API nb_tensor *nb_sum_all(nb_tensor *a) { return reduce("nb_sum_all", "SumBackward", a, NULL, 0, false, false); }
NB_API nb_tensor *nb_mean_all(nb_tensor *a) { return reduce("nb_mean_all", "MeanBackward", a, NULL, 0, false, true); }

NB_API nb_tensor *nb_sum_to(nb_tensor *a, nb_dims shape) {
    NB_CHECK_ARG("nb_sum_to", a);
    if (shape.ndim < 0 || shape.ndim > a->ndim) {
        nb__err(NB_ESHAPE, "nb_sum_to: cannot sum %s down to %s", nb__shape_str(a), nb__dims_str(shape.ndim, shape.d));
        return NULL;
    }
    int lead = a->ndim - shape.ndim, dims[NB_MAX_DIMS], nd = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (d < lead) dims[nd++] = d;
        else if (shape.d[d - lead] == 1 && a->shape[d] != 1) dims[nd++] = d;
        else if (shape.d[d - lead] != a->shape[d]) {
            nb__err(NB_ESHAPE, "nb_sum_to: cannot sum %s down to %s", nb__shape_str(a),
                    nb__dims_str(shape.ndim, shape.d));
            return NULL;
        }
    }
    if (nd == 0) return nb__scoped(nb_retain(a));
    nb_scope_begin();   /* the intermediate sum dies here */
    nb_tensor *s = nb_sum(a, dims, nd, true);
    nb_tensor *r = nb_keep(lead ? nb_reshape(s, shape) : s);
    nb_scope_end();
    return r;
}
