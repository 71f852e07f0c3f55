/* join.c — ops that join, cut, tile or re-arrange whole tensors: flatten,
 * narrow, cat, stack, split, chunk, repeat, flip, tril/triu and constant pad.
 *
 * flatten, narrow, split and chunk are views (built on nb_reshape and
 * nb_slice, whose backward they inherit). The others copy through their
 * registry kernel; each backward is written with public ops (narrow, sum,
 * flip, tril/triu, pad), so create_graph and double backward work:
 *   cat -> slices, stack -> selects, repeat -> sums over the tiles,
 *   flip -> flip, tril/triu -> the same mask, pad -> pad with negated pads.
 */
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

/* Runs kernel `op` (in[0..nin), scalars s0, s1) into a fresh out of t's dtype
 * and (nd, shape). Returns out (+1, no scope) or NULL. */
static nb_tensor *run(const char *who, nb_op op, int nd, const int64_t *shape, const nb_tensor *t,
                      const nb_tensor *in1, double s0, double s1) {
    nb_tensor *out = nb__new(who, t->dtype, nd, shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {t, in1}, .nin = in1 ? 2 : 1, .scalar = {s0, s1}};
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* Records the node of a one-input op, keeping t's shape. */
static nb_tensor *finish1(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw, nb_tensor *t,
                          nb__node **node) {
    nb_tensor *in[1] = {t};
    nb__node *nd;
    out = nb__finish(out, name, who, bw, in, 1, 0, &nd);
    if (nd) nd->shape[0] = nb_dims_get(t);
    if (node) *node = nd;
    return out;
}

/* ---- flatten: a reshape (view when possible), whose backward reshapes back ---- */
NB_API nb_tensor *nb_flatten(nb_tensor *t, int start_dim, int end_dim) {
    const char *who = "nb_flatten";
    NB_CHECK_ARG(who, t);
    int s = nb__wrap_dim(who, start_dim, t->ndim), e = s < 0 ? -1 : nb__wrap_dim(who, end_dim, t->ndim);
    if (s < 0 || e < 0) return NULL;
    if (t->ndim == 0) return nb_reshape(t, NB_SHAPE(1));
    if (s > e) {
        nb__err(NB_EINVAL, "%s: start_dim %d comes after end_dim %d for a tensor of shape %s", who, start_dim, end_dim,
                nb__shape_str(t));
        return NULL;
    }
    nb_dims shape = {.ndim = 0};
    for (int d = 0; d < t->ndim; d++) {
        if (d <= s || d > e) shape.d[shape.ndim++] = t->shape[d];
        else shape.d[shape.ndim - 1] *= t->shape[d];
    }
    return nb_reshape(t, shape);
}

/* ---- narrow: a slice with PyTorch's bounds checks ---- */
NB_API nb_tensor *nb_narrow(nb_tensor *t, int dim, int64_t start, int64_t length) {
    const char *who = "nb_narrow";
    NB_CHECK_ARG(who, t);
    if (t->ndim == 0) {
        nb__err(NB_EINVAL, "%s: cannot narrow a 0-dim tensor", who);
        return NULL;
    }
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0) return NULL;
    int64_t size = t->shape[d];
    if (start < -size || start > size) {
        nb__err(NB_ERANGE, "%s: start %lld out of range for dim %d with size %lld of a tensor of shape %s "
                           "(expected %lld to %lld)",
                who, (long long)start, d, (long long)size, nb__shape_str(t), (long long)-size, (long long)size);
        return NULL;
    }
    if (start < 0) start += size;
    if (length < 0 || start + length > size) {
        nb__err(NB_ERANGE, "%s: start (%lld) + length (%lld) exceeds dim %d with size %lld of a tensor of shape %s",
                who, (long long)start, (long long)length, d, (long long)size, nb__shape_str(t));
        return NULL;
    }
    return nb_slice(t, d, start, start + length, 1);
}

/* ---- cat: backward hands each input its slice of the gradient ---- */
static int cat_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    const int64_t *sizes = n->ctx;   /* per input: its size at dim, -1 for a skipped [0] tensor */
    int dim = (int)n->p.i[0];
    int64_t off = 0;
    for (int i = 0; i < n->nin; i++) {
        if (sizes[i] < 0) {
            if (nb__needs_input_grad(n, i)) gin[i] = nb_zeros(NB_SHAPE(0), nb_dtype(g));
            continue;
        }
        if (nb__needs_input_grad(n, i)) gin[i] = nb_narrow(g, dim, off, sizes[i]);
        off += sizes[i];
    }
    return nb__grads_ok(n, gin);
}

/* PyTorch's legacy rule: a 1-D tensor of shape [0] is left out of cat. */
static bool cat_skipped(const nb_tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

/* Checks the list: non-empty, no NULL, one dtype. Returns 0 or NB_E*. */
static int check_list(const char *who, nb_tensor *const *ts, int n) {
    if (!ts) return nb__null_arg(who, "tensors"), NB_ENULLARG;
    if (n < 1) return nb__err(NB_EINVAL, "%s: expected a non-empty list of tensors, got %d", who, n);
    for (int i = 0; i < n; i++) {
        if (!ts[i]) {
            char what[32];
            snprintf(what, sizeof what, "tensors[%d]", i);
            nb__null_arg(who, what);
            return NB_ENULLARG;
        }
        if (ts[i]->dtype != ts[0]->dtype)
            return nb__err(NB_EDTYPE, "%s: tensor 0 is %s but tensor %d is %s (shapes %s and %s); convert with "
                                      "nb_to_dtype first",
                           who, nb_dtype_name(ts[0]->dtype), i, nb_dtype_name(ts[i]->dtype), nb__shape_str(ts[0]),
                           nb__shape_str(ts[i]));
    }
    return 0;
}

NB_API nb_tensor *nb_cat(nb_tensor *const *tensors, int n, int dim) {
    const char *who = "nb_cat";
    if (check_list(who, tensors, n)) return NULL;
    int r = -1;   /* the first tensor that takes part */
    for (int i = 0; i < n && r < 0; i++)
        if (!cat_skipped(tensors[i])) r = i;
    if (r < 0) return nb_zeros(NB_SHAPE(0), tensors[0]->dtype);   /* only [0] tensors: an empty result, no graph */
    const nb_tensor *ref = tensors[r];
    if (ref->ndim == 0) {
        nb__err(NB_EINVAL, "%s: zero-dimensional tensor (at position %d) cannot be concatenated", who, r);
        return NULL;
    }
    int d = nb__wrap_dim(who, dim, ref->ndim);
    if (d < 0) return NULL;
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, ref->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < n; i++) {
        const nb_tensor *t = tensors[i];
        if (cat_skipped(t)) continue;
        bool ok = t->ndim == ref->ndim;
        for (int k = 0; ok && k < t->ndim; k++) ok = k == d || t->shape[k] == ref->shape[k];
        if (!ok) {
            nb__err(NB_ESHAPE, "%s: sizes of tensors must match except in dim %d: tensor %d has shape %s and tensor %d "
                               "has shape %s",
                    who, d, r, nb__shape_str(ref), i, nb__shape_str(t));
            return NULL;
        }
        shape[d] += t->shape[d];
    }
    /* per input: its size at d, -1 when skipped; the node keeps it (ctx) */
    int64_t *sizes = malloc(sizeof *sizes * (size_t)n);
    nb_tensor *out = sizes ? nb__new(who, ref->dtype, ref->ndim, shape) : NULL;
    if (!sizes) nb__err(NB_ENOMEM, "%s: out of memory", who);
    int64_t off = 0;
    for (int i = 0; out && i < n; i++) {
        sizes[i] = cat_skipped(tensors[i]) ? -1 : tensors[i]->shape[d];
        if (sizes[i] < 0) continue;
        nb_kernel_args args = {.op = NB_OP_CAT, .out = out, .in = {tensors[i]}, .nin = 1,
                               .scalar = {d, (double)off}};
        if (nb__dispatch(&args, who)) {
            nb_release(out);
            out = NULL;
        }
        off += sizes[i];
    }
    nb__node *node;
    out = nb__finish(out, "CatBackward", who, cat_backward, tensors, n, 0, &node);
    if (node) {
        node->ctx = sizes;
        node->ctx_free = free;
        node->p.i[0] = d;
    } else {
        free(sizes);
    }
    return out;
}

/* ---- stack: backward hands each input its select of the gradient ---- */
static int stack_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    int dim = (int)n->p.i[0];
    for (int i = 0; i < n->nin; i++)
        if (nb__needs_input_grad(n, i)) gin[i] = nb_squeeze(nb_narrow(g, dim, i, 1), dim);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_stack(nb_tensor *const *tensors, int n, int dim) {
    const char *who = "nb_stack";
    if (check_list(who, tensors, n)) return NULL;
    const nb_tensor *ref = tensors[0];
    for (int i = 1; i < n; i++)
        if (!nb__same_shape(tensors[i], ref)) {
            nb__err(NB_ESHAPE, "%s: expects each tensor to be equal size, but got %s at entry 0 and %s at entry %d", who,
                    nb__shape_str(ref), nb__shape_str(tensors[i]), i);
            return NULL;
        }
    if (ref->ndim == NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "%s: tensors of shape %s already have %d dims", who, nb__shape_str(ref), NB_MAX_DIMS);
        return NULL;
    }
    int d = nb__wrap_dim(who, dim, ref->ndim + 1);
    if (d < 0) return NULL;
    int64_t shape[NB_MAX_DIMS];
    for (int k = 0, j = 0; k <= ref->ndim; k++) shape[k] = k == d ? n : ref->shape[j++];
    nb_tensor *out = nb__new(who, ref->dtype, ref->ndim + 1, shape);
    for (int i = 0; out && i < n; i++) {
        nb_kernel_args args = {.op = NB_OP_STACK, .out = out, .in = {tensors[i]}, .nin = 1, .scalar = {d, i}};
        if (nb__dispatch(&args, who)) {
            nb_release(out);
            return NULL;
        }
    }
    nb__node *node;
    out = nb__finish(out, "StackBackward", who, stack_backward, tensors, n, 0, &node);
    if (node) node->p.i[0] = d;
    return out;
}

/* ---- split / chunk: views of consecutive pieces ---- */

/* Cuts t along dim into `count` pieces of `size` (the last one shorter) and
 * hands them to the caller's scope through out (see ops.h). */
static int pieces(const char *who, nb_tensor *t, int d, int64_t size, int64_t count, nb_tensor **out, int cap) {
    if (count > INT32_MAX) return nb__err(NB_EINVAL, "%s: %lld pieces are too many", who, (long long)count);
    if (!out) return (int)count;
    if (cap < count)
        return nb__err(NB_EINVAL, "%s: the output array holds %d tensors, %lld are needed (call with out NULL to count)",
                       who, cap, (long long)count);
    nb_tensor *tmp[64], **p = count <= 64 ? tmp : malloc(sizeof *p * (size_t)count);
    if (!p) return nb__err(NB_ENOMEM, "%s: out of memory", who);
    nb_scope_begin();   /* pieces live here until all exist */
    int64_t total = t->shape[d];
    bool ok = true;
    for (int64_t i = 0; i < count && ok; i++) {
        int64_t start = i * size < total ? i * size : total;
        int64_t len = start + size <= total ? size : total - start;
        p[i] = nb_narrow(t, d, start, len);
        ok = p[i] != NULL;
    }
    for (int64_t i = 0; i < count && ok; i++) nb_keep(p[i]);
    nb_scope_end();
    if (ok) memcpy(out, p, sizeof *p * (size_t)count);
    if (p != tmp) free(p);
    return ok ? (int)count : nb_last_error_code();
}

NB_API int nb_split(nb_tensor *t, int64_t split_size, int dim, nb_tensor **out, int cap) {
    const char *who = "nb_split";
    if (!t) return nb__null_arg(who, "t"), NB_ENULLARG;
    if (t->ndim == 0) return nb__err(NB_EINVAL, "%s: cannot split a 0-dim tensor", who);
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0) return NB_ERANGE;
    int64_t n = t->shape[d];
    if (split_size < 0 || (split_size == 0 && n > 0))
        return nb__err(NB_EINVAL, "%s: split_size %lld is invalid for dim %d with size %lld (must be > 0, or 0 for "
                                  "an empty dim)",
                       who, (long long)split_size, d, (long long)n);
    int64_t count = n == 0 ? 1 : (n + split_size - 1) / split_size;
    return pieces(who, t, d, split_size, count, out, cap);
}

NB_API int nb_chunk(nb_tensor *t, int chunks, int dim, nb_tensor **out, int cap) {
    const char *who = "nb_chunk";
    if (!t) return nb__null_arg(who, "t"), NB_ENULLARG;
    if (t->ndim == 0) return nb__err(NB_EINVAL, "%s: cannot chunk a 0-dim tensor", who);
    if (chunks <= 0) return nb__err(NB_EINVAL, "%s: chunks must be > 0, got %d", who, chunks);
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0) return NB_ERANGE;
    int64_t n = t->shape[d];
    if (n == 0) return pieces(who, t, d, 0, chunks, out, cap);   /* as PyTorch: `chunks` empty pieces */
    int64_t size = (n + chunks - 1) / chunks;
    return pieces(who, t, d, size, (n + size - 1) / size, out, cap);
}

/* ---- repeat: backward sums the gradient over the tiles, one dim at a time ---- */
static int repeat_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    int nr = (int)n->p.i[8];
    const int64_t *reps = n->p.i;
    nb_dims in = n->shape[0];
    int lead = nr - in.ndim;
    nb_tensor *cur = g;
    for (int d = 0; d < nr && cur; d++) {
        int64_t s = d < lead ? 1 : in.d[d - lead];
        if (reps[d] == 1) continue;
        /* view as (before, reps, s, after), sum the reps dim, restore nr dims with s at d */
        nb_dims sh = nb_dims_get(cur);
        int64_t before = 1, after = 1;
        for (int k = 0; k < d; k++) before *= sh.d[k];
        for (int k = d + 1; k < nr; k++) after *= sh.d[k];
        int one[1] = {1};
        cur = nb_sum(nb_reshape(cur, NB_SHAPE(before, reps[d], s, after)), one, 1, false);
        sh.d[d] = s;
        cur = nb_reshape(cur, sh);
    }
    gin[0] = nb_reshape(cur, in);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_repeat(nb_tensor *t, const int64_t *repeats, int n) {
    const char *who = "nb_repeat";
    NB_CHECK_ARG(who, t);
    if (!repeats && n > 0) return nb__null_arg(who, "repeats");
    if (n < t->ndim || n > NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "%s: %d repeats given for a tensor of shape %s (need %d to %d)", who, n, nb__shape_str(t),
                t->ndim, NB_MAX_DIMS);
        return NULL;
    }
    int lead = n - t->ndim;
    int64_t shape[NB_MAX_DIMS];
    for (int d = 0; d < n; d++) {
        if (repeats[d] < 0) {
            nb__err(NB_EINVAL, "%s: repeats must be >= 0, got %lld at position %d", who, (long long)repeats[d], d);
            return NULL;
        }
        shape[d] = repeats[d] * (d < lead ? 1 : t->shape[d - lead]);
    }
    nb__node *node;
    nb_tensor *out = finish1(run(who, NB_OP_REPEAT, n, shape, t, NULL, 0, 0), "RepeatBackward", who, repeat_backward, t,
                             &node);
    if (node) {
        for (int d = 0; d < n; d++) node->p.i[d] = repeats[d];
        node->p.i[8] = n;
    }
    return out;
}

/* ---- flip: its own backward ---- */
static int flip_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    int dims[NB_MAX_DIMS], k = 0;
    for (int d = 0; d < NB_MAX_DIMS; d++)
        if (n->p.i[0] & (1 << d)) dims[k++] = d;
    gin[0] = nb_flip(g, dims, k);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_flip(nb_tensor *t, const int *dims, int ndims) {
    const char *who = "nb_flip";
    NB_CHECK_ARG(who, t);
    if (!dims && ndims > 0) return nb__null_arg(who, "dims");
    if (ndims < 0) {
        nb__err(NB_EINVAL, "%s: ndims must be >= 0, got %d", who, ndims);
        return NULL;
    }
    unsigned mask = 0;
    for (int i = 0; i < ndims; i++) {
        int d = nb__wrap_dim(who, dims[i], t->ndim);
        if (d < 0) return NULL;
        if (mask & (1u << d)) {
            nb__err(NB_EINVAL, "%s: dim %d appears multiple times in the list of dims", who, d);
            return NULL;
        }
        mask |= 1u << d;
    }
    if (t->ndim == 0) mask = 0;
    nb__node *node;
    nb_tensor *out = finish1(run(who, NB_OP_FLIP, t->ndim, t->shape, t, NULL, mask, 0), "FlipBackward", who,
                             flip_backward, t, &node);
    if (node) node->p.i[0] = mask;
    return out;
}

/* ---- tril / triu: the gradient takes the same mask ---- */
static int tril_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_tril(g, n->p.i[0]);
    return nb__grads_ok(n, gin);
}
static int triu_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_triu(g, n->p.i[0]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *tri(const char *who, nb_op op, const char *name, nb__backward_fn bw, nb_tensor *t, int64_t k) {
    NB_CHECK_ARG(who, t);
    if (t->ndim < 2) {
        nb__err(NB_ESHAPE, "%s: input must have at least 2 dims, got shape %s", who, nb__shape_str(t));
        return NULL;
    }
    /* the kernel takes the diagonal as a double: clamp to what can matter */
    int64_t lim = t->shape[t->ndim - 1] + t->shape[t->ndim - 2] + 1;
    double kd = (double)(k > lim ? lim : k < -lim ? -lim : k);
    nb__node *node;
    nb_tensor *out = finish1(run(who, op, t->ndim, t->shape, t, NULL, kd, 0), name, who, bw, t, &node);
    if (node) node->p.i[0] = k;
    return out;
}

NB_API nb_tensor *nb_tril(nb_tensor *t, int64_t diagonal) {
    return tri("nb_tril", NB_OP_TRIL, "TrilBackward", tril_backward, t, diagonal);
}
NB_API nb_tensor *nb_triu(nb_tensor *t, int64_t diagonal) {
    return tri("nb_triu", NB_OP_TRIU, "TriuBackward", triu_backward, t, diagonal);
}

/* ---- pad (constant): backward pads the gradient with the negated list ---- */
static int pad_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    int npad = (int)n->p.i[0];
    int64_t neg[2 * NB_MAX_DIMS];
    for (int i = 0; i < npad; i++) neg[i] = -n->p.i[1 + i];
    gin[0] = nb_pad(g, neg, npad, 0.0);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_pad(nb_tensor *t, const int64_t *pad, int npad, double value) {
    const char *who = "nb_pad";
    NB_CHECK_ARG(who, t);
    if (!pad && npad > 0) return nb__null_arg(who, "pad");
    if (npad < 0 || npad % 2 || npad / 2 > t->ndim) {
        nb__err(NB_EINVAL, "%s: the pad list has %d entries; it needs an even number, at most 2 per dim of the input "
                           "of shape %s",
                who, npad, nb__shape_str(t));
        return NULL;
    }
    int nd = t->ndim;
    int64_t bounds[2 * NB_MAX_DIMS] = {0}, shape[NB_MAX_DIMS];   /* (before, after) per dim, in dim order */
    for (int k = 0; k < npad / 2; k++) {
        int d = nd - 1 - k;
        bounds[2 * d] = pad[2 * k];
        bounds[2 * d + 1] = pad[2 * k + 1];
    }
    for (int d = 0; d < nd; d++) {
        shape[d] = t->shape[d] + bounds[2 * d] + bounds[2 * d + 1];
        if (shape[d] < 0) {
            nb__err(NB_ESHAPE, "%s: padding (%lld, %lld) of dim %d with size %lld of input %s gives a negative size %lld",
                    who, (long long)bounds[2 * d], (long long)bounds[2 * d + 1], d, (long long)t->shape[d],
                    nb__shape_str(t), (long long)shape[d]);
            return NULL;
        }
    }
    int64_t bn = 2 * nd;
    nb_tensor *b = nb__new(who, NB_DTYPE_I64, 1, &bn);
    if (!b) return NULL;
    memcpy(nb_data(b), bounds, sizeof(int64_t) * (size_t)bn);
    nb_tensor *out = run(who, NB_OP_PAD, nd, shape, t, b, value, 0);
    nb_release(b);
    nb__node *node;
    out = finish1(out, "ConstantPadBackward", who, pad_backward, t, &node);
    if (node) {
        node->p.i[0] = npad;
        for (int i = 0; i < npad; i++) node->p.i[1 + i] = pad[i];
    }
    return out;
}
