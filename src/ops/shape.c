/* shape.c — views (reshape/view, transpose, permute, slice, expand, squeeze,
 * unsqueeze) and copies (contiguous, clone, to_dtype).
 *
 * A view is a new tensor object on the same storage with other shape,
 * strides and offset; its backward maps the gradient back to the input's
 * geometry (the inverse view, or a scatter into zeros for slice, or a sum for
 * expand). reshape is a view whenever the strides allow and a copy otherwise.
 */
#include "ops/ops.h"

#include <string.h>

/* Records the node for a view/copy `out` of `a` and keeps a's shape. */
static nb_tensor *finish1(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw, nb_tensor *a,
                          nb__node **node) {
    nb_tensor *in[1] = {a};
    nb__node *nd;
    out = nb__finish(out, name, who, bw, in, 1, 0, &nd);
    if (nd) nd->shape[0] = nb_dims_get(a);
    if (node) *node = nd;
    return out;
}

/* ---- reshape / view / squeeze / unsqueeze: backward reshapes back ---- */
static int view_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_reshape(g, n->shape[0]);
    return nb__grads_ok(n, gin);
}

/* Strides for viewing t as (nd, shape) without a copy, if possible: walks
 * t's dims from the innermost, grouping runs that are contiguous among
 * themselves ("chunks"); each chunk must be covered exactly by new dims. */
static bool view_strides(const nb_tensor *t, int nd, const int64_t *shape, int64_t *st) {
    if (t->numel == 0 || t->ndim == 0) {
        nb__contig_strides(nd, shape, st);
        return true;
    }
    int vd = nd - 1;
    int64_t base = t->stride[t->ndim - 1], tn = 1, vn = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tn *= t->shape[d];
        bool chunk_end = d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tn * base);
        if (!chunk_end) continue;
        while (vd >= 0 && (vn < tn || shape[vd] == 1)) {
            st[vd] = vn * base;
            vn *= shape[vd];
            vd--;
        }
        if (vn != tn) return false;
        if (d > 0) {
            base = t->stride[d - 1];
            tn = vn = 1;
        }
    }
    return vd == -1;
}

/* Resolves -1 and checks the element count. */
static int resolve_shape(const char *who, const nb_tensor *t, nb_dims *s) {
    if (s->ndim < 0 || s->ndim > NB_MAX_DIMS)
        return nb__err(NB_EINVAL, "%s: shape must have 0 to %d dims", who, NB_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (s->d[i] == -1) {
            if (infer >= 0) return nb__err(NB_EINVAL, "%s: only one dim can be -1 in %s", who, nb__dims_str(s->ndim, s->d));
            infer = i;
        } else if (s->d[i] < 0) {
            return nb__err(NB_EINVAL, "%s: invalid size %lld in shape %s", who, (long long)s->d[i],
                           nb__dims_str(s->ndim, s->d));
        } else {
            known *= s->d[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || t->numel % known)
            return nb__err(NB_ESHAPE, "%s: shape %s is invalid for input of shape %s (%lld elements)", who,
                           nb__dims_str(s->ndim, s->d), nb__shape_str(t), (long long)t->numel);
        s->d[infer] = t->numel / known;
        known = t->numel;
    }
    if (known != t->numel)
        return nb__err(NB_ESHAPE, "%s: shape %s is invalid for input of shape %s (%lld elements vs %lld)", who,
                       nb__dims_str(s->ndim, s->d), nb__shape_str(t), (long long)known, (long long)t->numel);
    return 0;
}

static nb_tensor *reshape_impl(const char *who, const char *name, nb_tensor *t, nb_dims shape, bool allow_copy) {
    NB_CHECK_ARG(who, t);
    if (resolve_shape(who, t, &shape)) return NULL;
    int64_t st[NB_MAX_DIMS];
    if (view_strides(t, shape.ndim, shape.d, st))
        return finish1(nb__alias(t, shape.ndim, shape.d, st, t->offset), name, who, view_backward, t, NULL);
    if (!allow_copy) {
        nb__err(NB_ESHAPE, "%s: view size %s is not compatible with input of shape %s and strides %s; use "
                           "nb_reshape",
                who, nb__dims_str(shape.ndim, shape.d), nb__shape_str(t), nb__dims_str(t->ndim, t->stride));
        return NULL;
    }
    nb_scope_begin();   /* a copy, then a view of it */
    nb_tensor *r = nb_keep(reshape_impl(who, name, nb_contiguous(t), shape, false));
    nb_scope_end();
    return r;
}

NB_API nb_tensor *nb_reshape(nb_tensor *t, nb_dims shape) {
    return reshape_impl("nb_reshape", "ViewBackward", t, shape, true);
}
NB_API nb_tensor *nb_view(nb_tensor *t, nb_dims shape) { return reshape_impl("nb_view", "ViewBackward", t, shape, false); }

NB_API nb_tensor *nb_squeeze(nb_tensor *t, int dim) {
    NB_CHECK_ARG("nb_squeeze", t);
    int d = nb__wrap_dim("nb_squeeze", dim, t->ndim);
    if (d < 0) return NULL;
    if (t->ndim == 0 || t->shape[d] != 1)   /* as PyTorch: squeezing a dim of size > 1 leaves it */
        return finish1(nb__alias(t, t->ndim, t->shape, t->stride, t->offset), "SqueezeBackward", "nb_squeeze",
                       view_backward, t, NULL);
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < t->ndim; i++)
        if (i != d) sh[k] = t->shape[i], st[k++] = t->stride[i];
    return finish1(nb__alias(t, k, sh, st, t->offset), "SqueezeBackward", "nb_squeeze", view_backward, t, NULL);
}

NB_API nb_tensor *nb_unsqueeze(nb_tensor *t, int dim) {
    NB_CHECK_ARG("nb_unsqueeze", t);
    if (t->ndim == NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "nb_unsqueeze: tensor already has %d dims", NB_MAX_DIMS);
        return NULL;
    }
    int d = nb__wrap_dim("nb_unsqueeze", dim, t->ndim + 1);
    if (d < 0) return NULL;
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    for (int i = 0, k = 0; i <= t->ndim; i++) {
        if (i == d) {
            sh[i] = 1;
            st[i] = d < t->ndim ? t->stride[d] * t->shape[d] : 1;
        } else {
            sh[i] = t->shape[k], st[i] = t->stride[k];
            k++;
        }
    }
    return finish1(nb__alias(t, t->ndim + 1, sh, st, t->offset), "UnsqueezeBackward", "nb_unsqueeze",
                   view_backward, t, NULL);
}

/* ---- transpose / permute: backward applies the inverse permutation ---- */
static int permute_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    int inv[NB_MAX_DIMS];
    for (int i = 0; i < n->shape[0].ndim; i++) inv[n->p.i[i]] = i;
    gin[0] = nb_permute(g, inv, n->shape[0].ndim);
    return nb__grads_ok(n, gin);
}

static nb_tensor *permute_impl(const char *who, const char *name, nb_tensor *t, const int *dims, int ndims) {
    NB_CHECK_ARG(who, t);
    if (!dims && ndims > 0) return nb__null_arg(who, "dims");
    if (ndims != t->ndim) {
        nb__err(NB_EINVAL, "%s: number of dims don't match: %d given for a tensor of shape %s", who, ndims,
                nb__shape_str(t));
        return NULL;
    }
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    int perm[NB_MAX_DIMS];
    unsigned seen = 0;
    for (int i = 0; i < ndims; i++) {
        int d = nb__wrap_dim(who, dims[i], t->ndim);
        if (d < 0) return NULL;
        if (seen & (1u << d)) {
            nb__err(NB_EINVAL, "%s: repeated dim %d in the permutation", who, d);
            return NULL;
        }
        seen |= 1u << d;
        perm[i] = d;
        sh[i] = t->shape[d], st[i] = t->stride[d];
    }
    nb__node *node;
    nb_tensor *out = finish1(nb__alias(t, ndims, sh, st, t->offset), name, who, permute_backward, t, &node);
    if (node)
        for (int i = 0; i < ndims; i++) node->p.i[i] = perm[i];
    return out;
}

NB_API nb_tensor *nb_permute(nb_tensor *t, const int *dims, int ndims) {
    return permute_impl("nb_permute", "PermuteBackward", t, dims, ndims);
}

NB_API nb_tensor *nb_transpose(nb_tensor *t, int dim0, int dim1) {
    const char *who = "nb_transpose";
    NB_CHECK_ARG(who, t);
    int d0 = nb__wrap_dim(who, dim0, t->ndim), d1 = d0 < 0 ? -1 : nb__wrap_dim(who, dim1, t->ndim);
    if (d0 < 0 || d1 < 0) return NULL;
    if (t->ndim == 0) return finish1(nb__alias(t, 0, NULL, NULL, t->offset), "TransposeBackward", who, view_backward, t, NULL);
    int p[NB_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) p[i] = i;
    p[d0] = d1, p[d1] = d0;
    return permute_impl(who, "TransposeBackward", t, p, t->ndim);
}

/* ---- slice: backward scatters the gradient into zeros of the input's shape ---- */
static nb_tensor *slice_scatter(nb_tensor *g, nb_dims shape, int dim, int64_t start, int64_t step);

static int slice_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = slice_scatter(g, n->shape[0], (int)n->p.i[0], n->p.i[1], n->p.i[2]);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_slice(nb_tensor *t, int dim, int64_t start, int64_t stop, int64_t step) {
    const char *who = "nb_slice";
    NB_CHECK_ARG(who, t);
    if (t->ndim == 0) {
        nb__err(NB_ERANGE, "%s: cannot slice a 0-dim tensor", who);
        return NULL;
    }
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0) return NULL;
    if (step < 1) {
        nb__err(NB_EINVAL, "%s: step must be positive, got %lld", who, (long long)step);
        return NULL;
    }
    int64_t n = t->shape[d];
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    start = start < 0 ? 0 : start > n ? n : start;
    stop = stop < start ? start : stop > n ? n : stop;
    int64_t sh[NB_MAX_DIMS], st[NB_MAX_DIMS];
    memcpy(sh, t->shape, sizeof sh);
    memcpy(st, t->stride, sizeof st);
    sh[d] = (stop - start + step - 1) / step;
    st[d] = t->stride[d] * step;
    nb__node *node;
    nb_tensor *out = finish1(nb__alias(t, t->ndim, sh, st, t->offset + start * t->stride[d]), "SliceBackward", who,
                             slice_backward, t, &node);
    if (node) node->p.i[0] = d, node->p.i[1] = start, node->p.i[2] = step;
    return out;
}

/* slice_scatter's own backward slices the incoming gradient again */
static int slice_scatter_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    int64_t start = n->p.i[1], step = n->p.i[2];
    gin[0] = nb_slice(g, (int)n->p.i[0], start, start + step * n->p.i[3], step);
    return nb__grads_ok(n, gin);
}

static nb_tensor *slice_scatter(nb_tensor *g, nb_dims shape, int dim, int64_t start, int64_t step) {
    const char *who = "slice_backward";
    NB_CHECK_ARG(who, g);
    nb_tensor *out = nb__new(who, g->dtype, shape.ndim, shape.d);
    if (!out) return NULL;
    nb_kernel_args fill = {.op = NB_OP_FILL, .out = out, .scalar = {0}};
    int64_t st[NB_MAX_DIMS];
    memcpy(st, out->stride, sizeof st);
    st[dim] *= step;
    nb_tensor *win = nb__alias(out, g->ndim, g->shape, st, start * out->stride[dim]);
    int rc = win ? nb__dispatch(&fill, who) : NB_ENOMEM;
    if (!rc) {
        nb_kernel_args cp = {.op = NB_OP_COPY, .out = win, .in = {g}, .nin = 1};
        rc = nb__dispatch(&cp, who);
    }
    nb_release(win);
    if (rc) {
        nb_release(out);
        return NULL;
    }
    nb__node *node;
    nb_tensor *in[1] = {g};
    out = nb__finish(out, "SliceBackwardBackward", who, slice_scatter_backward, in, 1, 0, &node);
    if (node) node->p.i[0] = dim, node->p.i[1] = start, node->p.i[2] = step, node->p.i[3] = g->shape[dim];
    return out;
}

/* ---- expand: backward sums over the broadcast dims ---- */
static int expand_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_sum_to(g, n->shape[0]);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_expand(nb_tensor *t, nb_dims shape) {
    const char *who = "nb_expand";
    NB_CHECK_ARG(who, t);
    if (shape.ndim < t->ndim || shape.ndim > NB_MAX_DIMS) {
        nb__err(NB_ESHAPE, "%s: cannot expand %s to %s (the number of sizes must be >= the tensor's dims)", who,
                nb__shape_str(t), nb__dims_str(shape.ndim < 0 ? 0 : shape.ndim, shape.d));
        return NULL;
    }
    int lead = shape.ndim - t->ndim;
    for (int i = 0; i < shape.ndim; i++) {
        int64_t have = i < lead ? 1 : t->shape[i - lead];
        if (shape.d[i] == -1 && i >= lead) shape.d[i] = have;
        if (shape.d[i] < 0 || (have != 1 && have != shape.d[i])) {
            nb__err(NB_ESHAPE, "%s: cannot expand %s to %s (size %lld at dim %d must match or be 1)", who,
                    nb__shape_str(t), nb__dims_str(shape.ndim, shape.d), (long long)have, i);
            return NULL;
        }
    }
    return finish1(nb__expand_alias(t, shape.ndim, shape.d), "ExpandBackward", who, expand_backward, t, NULL);
}

/* ---- copies: clone (and contiguous), to_dtype ---- */
static int clone_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb__scoped(nb_retain(g));
    return nb__grads_ok(n, gin);
}

/* A copy of t as dt, contiguous or (4-D) channels-last. */
static nb_tensor *copy_as(const char *who, nb_tensor *t, nb_dtype dt, bool channels_last) {
    nb_tensor *out = nb__new_layout(who, dt, t->ndim, t->shape, channels_last);
    if (!out) return NULL;
    nb_kernel_args a = {.op = NB_OP_COPY, .out = out, .in = {t}, .nin = 1};
    if (nb__dispatch(&a, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

static nb_tensor *copy_raw(const char *who, nb_tensor *t, nb_dtype dt) { return copy_as(who, t, dt, false); }

NB_API nb_tensor *nb_clone(nb_tensor *t) {
    NB_CHECK_ARG("nb_clone", t);
    return finish1(copy_raw("nb_clone", t, t->dtype), "CloneBackward", "nb_clone", clone_backward, t, NULL);
}

NB_API nb_tensor *nb_contiguous(nb_tensor *t) {
    NB_CHECK_ARG("nb_contiguous", t);
    if (nb_is_contiguous(t)) return nb__scoped(nb_retain(t));
    return finish1(copy_raw("nb_contiguous", t, t->dtype), "CloneBackward", "nb_contiguous", clone_backward, t, NULL);
}

/* A differentiable channels-last copy of the 4-D t; who names the caller. */
static nb_tensor *clone_cl(const char *who, nb_tensor *t) {
    NB_CHECK_ARG(who, t);
    if (t->ndim != 4) {
        nb__err(NB_ESHAPE, "%s: expected a 4-D (N, C, H, W) tensor, got shape %s", who, nb__shape_str(t));
        return NULL;
    }
    return finish1(copy_as(who, t, t->dtype, true), "CloneBackward", who, clone_backward, t, NULL);
}

nb_tensor *nb__clone_channels_last(nb_tensor *t) { return clone_cl("nb_clone (channels-last)", t); }

NB_API nb_tensor *nb_to_channels_last(nb_tensor *t) {
    if (t && nb_is_channels_last(t) && (t->shape[1] == 1 || !nb_is_contiguous(t))) return nb__scoped(nb_retain(t));
    return clone_cl("nb_to_channels_last", t);
}

static int to_dtype_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_to_dtype(g, (nb_dtype)n->p.i[0]);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_to_dtype(nb_tensor *t, nb_dtype dt) {
    const char *who = "nb_to_dtype";
    NB_CHECK_ARG(who, t);
    if ((unsigned)dt >= NB_DTYPE_COUNT) {
        nb__err(NB_EDTYPE, "%s: invalid dtype %d", who, (int)dt);
        return NULL;
    }
    if (dt == t->dtype) return nb__scoped(nb_retain(t));
    nb_tensor *out = copy_raw(who, t, dt);
    if (dt != NB_DTYPE_F32 && dt != NB_DTYPE_F64)   /* integer results are off the graph, as PyTorch */
        return nb__scoped(out);
    nb__node *node;
    out = finish1(out, "ToCopyBackward", who, to_dtype_backward, t, &node);
    if (node) node->p.i[0] = t->dtype;
    return out;
}
