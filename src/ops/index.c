/* index.c — ops that read or write through an I64 index tensor:
 * index_select, gather, scatter_add, index_add, embedding, one_hot.
 *
 * Each op checks every index value before its kernel runs (check_range), so
 * a bad index is an NB_ERANGE error naming the op, the value, its position and
 * the valid range, and no kernel ever sees one. The backward pairs are
 * gather <-> scatter_add and index_select <-> index_add; each is written with
 * the public op of its twin, so create_graph and double backward work. The
 * index tensor is saved (version-checked) and never takes a gradient: it sits
 * in the node as input 1 with no edge, so gin[1] stays NULL.
 */
#include "ops/ops.h"

#include <stdlib.h>
#include <string.h>

/* ---- argument checks ---- */

static int check_index_dtype(const char *who, const char *what, const nb_tensor *idx) {
    if (idx->dtype == NB_DTYPE_I64) return 0;
    return nb__err(NB_EDTYPE, "%s: %s must be an i64 tensor, got %s of shape %s", who, what,
                   nb_dtype_name(idx->dtype), nb__shape_str(idx));
}

/* Finds the first element (C order) of the I64 tensor idx outside [0, size):
 * returns true with its value and position; *max gets the largest element
 * seen (0 for an empty idx). */
static bool find_outside(const nb_tensor *idx, int64_t size, int64_t *val, int64_t *pos, int64_t *max) {
    *max = 0;
    memset(pos, 0, sizeof(int64_t) * NB_MAX_DIMS);
    if (idx->numel == 0) return false;
    const int64_t *base = nb_data(idx);
    if (nb_is_contiguous(idx)) {   /* the same C-order scan without a multi-index per element */
        int64_t mx = 0, n = idx->numel, k = 0;   /* a local: *max may alias base[] for the compiler */
        uint64_t us = (uint64_t)size;
        /* blocks of 256 with 4 independent maxima and one out-of-range flag
           (v < 0 or v >= size, as unsigned); a block with a bad value is
           scanned again one by one below */
        for (; k + 256 <= n; k += 256) {
            int64_t m[4] = {mx, mx, mx, mx};
            uint64_t bad = 0;
            for (int64_t i = k; i < k + 256; i += 4)
                for (int q = 0; q < 4; q++) {
                    int64_t v = base[i + q];
                    m[q] = v > m[q] ? v : m[q];
                    bad |= (uint64_t)v >= us;
                }
            if (bad) break;
            for (int q = 0; q < 4; q++) mx = m[q] > mx ? m[q] : mx;
        }
        for (; k < n; k++) {
            int64_t v = base[k];
            mx = v > mx ? v : mx;
            if ((uint64_t)v >= us) {   /* v < 0 or v >= size (size >= 0) */
                *max = mx;
                *val = v;
                for (int d = idx->ndim - 1; d >= 0; d--) {
                    pos[d] = k % idx->shape[d];
                    k /= idx->shape[d];
                }
                return true;
            }
        }
        *max = mx;
        return false;
    }
    for (;;) {
        int64_t off = 0;
        for (int d = 0; d < idx->ndim; d++) off += pos[d] * idx->stride[d];
        int64_t v = base[off];
        if (v > *max) *max = v;
        if (v < 0 || v >= size) {
            *val = v;
            return true;
        }
        int d = idx->ndim - 1;
        for (; d >= 0; d--) {
            if (++pos[d] < idx->shape[d]) break;
            pos[d] = 0;
        }
        if (d < 0) return false;
    }
}

/* Every element of idx (the argument named `tname`) must lie in [0, size);
 * else NB_ERANGE naming the first bad `what`, its position, what the range
 * belongs to (`range_of`) and the valid range. */
static int check_range(const char *who, const char *what, const char *tname, const nb_tensor *idx, int64_t size,
                       const char *range_of) {
    int64_t v, pos[NB_MAX_DIMS], mx;
    if (!find_outside(idx, size, &v, pos, &mx)) return 0;
    return nb__err(NB_ERANGE, "%s: %s %lld at position %s of %s (shape %s) is out of range for %s; valid range is [0, %lld)",
                   who, what, (long long)v, nb__dims_str(idx->ndim, pos), tname, nb__shape_str(idx), range_of,
                   (long long)size);
}

/* A 1-D alias [numel] of a 0-dim or 1-D tensor (+1): the kernels get 1-D
 * operands where PyTorch lets 0-dim ones stand in for 1-element vectors. */
static nb_tensor *as_1d(const nb_tensor *t) {
    int64_t n = t->numel, st = t->ndim ? t->stride[0] : 1;
    return nb__alias(t, 1, &n, &st, t->offset);
}

/* A C-contiguous alias of o (contiguous, same numel) as (nd, shape) (+1). */
static nb_tensor *as_shape(const nb_tensor *o, int nd, const int64_t *shape) {
    int64_t st[NB_MAX_DIMS];
    nb__contig_strides(nd, shape, st);
    return nb__alias(o, nd, shape, st, o->offset);
}

/* "dim 1 with size 5" for messages (one of a few rotating buffers). */
static const char *dim_size_str(int dim, int64_t size) {
    static _Thread_local char buf[4][48];
    static _Thread_local int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "dim %d with size %lld", dim, (long long)size);
    return buf[k];
}

/* Runs kernel `op` into a fresh out of (nd, shape) and dtype dt: in[] and
 * the dim as scalar[0]. Returns out (+1, no scope) or NULL. */
static nb_tensor *run(const char *who, nb_op op, nb_dtype dt, int nd, const int64_t *shape, const nb_tensor *const *in,
                      int nin, double dim) {
    nb_tensor *out = nb__new(who, dt, nd, shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .nin = nin, .scalar = {dim}};
    for (int i = 0; i < nin; i++) args.in[i] = in[i];
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* Records the node of an index op: inputs (t, index[, src]), index saved;
 * the dim and t's shape go in the node. */
static nb_tensor *finish_index(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw, nb_tensor *t,
                               nb_tensor *index, nb_tensor *src, int dim) {
    nb_tensor *in[3] = {t, index, src};
    nb__node *node;
    out = nb__finish(out, name, who, bw, in, src ? 3 : 2, 2u, &node);
    if (node) {
        node->p.i[0] = dim;
        node->shape[0] = nb_dims_get(t);
        if (src) node->shape[1] = nb_dims_get(src);
    }
    return out;
}

/* Runs `op` on 1-D aliases of t, index and src (0-dim or 1-D each) along
 * dim 0, then views the result as (nd, shape). For the 0-dim cases. */
static nb_tensor *run_1d(const char *who, nb_op op, nb_tensor *t, nb_tensor *index, nb_tensor *src, int nd,
                         const int64_t *shape) {
    nb_tensor *t1 = as_1d(t), *i1 = as_1d(index), *s1 = src ? as_1d(src) : NULL, *o1 = NULL, *out = NULL;
    if (t1 && i1 && (s1 || !src)) {
        int64_t n = op == NB_OP_GATHER ? i1->numel : t1->numel;
        o1 = run(who, op, t->dtype, 1, &n, (const nb_tensor *[]){t1, i1, s1}, src ? 3 : 2, 0);
    }
    if (o1) out = as_shape(o1, nd, shape);
    nb_release(t1);
    nb_release(i1);
    nb_release(s1);
    nb_release(o1);
    return out;
}

/* ---- index_select: backward adds the gradient's slices into zeros at index ---- */
static int index_select_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *z = nb_zeros(n->shape[0], nb_dtype(g));
    gin[0] = nb_index_add(z, (int)n->p.i[0], nb__saved_get(n, 0), g);
    return nb__grads_ok(n, gin);
}

/* index: 1-D or 0-dim I64 */
static int check_vector_index(const char *who, const nb_tensor *index) {
    if (check_index_dtype(who, "index", index)) return -1;
    if (index->ndim > 1)
        return nb__err(NB_ESHAPE, "%s: index must be 1-D or 0-dim, got shape %s", who, nb__shape_str(index));
    return 0;
}

NB_API nb_tensor *nb_index_select(nb_tensor *t, int dim, nb_tensor *index) {
    const char *who = "nb_index_select";
    NB_CHECK_ARG(who, t);
    NB_CHECK_ARG(who, index);
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0 || check_vector_index(who, index)) return NULL;
    if (t->ndim == 0 && index->numel != 1) {   /* PyTorch gives a 0-dim result for any count; we want one */
        nb__err(NB_ESHAPE, "%s: a 0-dim input takes an index of one element, got shape %s", who,
                nb__shape_str(index));
        return NULL;
    }
    int64_t size = t->ndim ? t->shape[d] : 1;
    if (check_range(who, "index", "index", index, size, dim_size_str(d, size))) return NULL;
    nb_tensor *out;
    if (t->ndim == 0) {
        out = run(who, NB_OP_COPY, t->dtype, 0, NULL, (const nb_tensor *[]){t}, 1, 0);
    } else {
        int64_t shape[NB_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        shape[d] = index->numel;
        out = run(who, NB_OP_INDEX_SELECT, t->dtype, t->ndim, shape, (const nb_tensor *[]){t, index}, 2, d);
    }
    return finish_index(out, "IndexSelectBackward", who, index_select_backward, t, index, NULL, d);
}

/* ---- index_add: grad_t = g, grad_source = index_select(g, dim, index) ---- */
static int index_add_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    if (nb__needs_input_grad(n, 0)) gin[0] = nb__scoped(nb_retain(g));
    if (nb__needs_input_grad(n, 2))   /* a 0-dim self: every index is 0, each source entry gets g */
        gin[2] = n->shape[0].ndim == 0 ? nb_expand(g, n->shape[1])
                                       : nb_index_select(g, (int)n->p.i[0], nb__saved_get(n, 0));
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_index_add(nb_tensor *t, int dim, nb_tensor *index, nb_tensor *source) {
    const char *who = "nb_index_add";
    NB_CHECK_ARG(who, t);
    NB_CHECK_ARG(who, index);
    NB_CHECK_ARG(who, source);
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0 || check_vector_index(who, index) || nb__check_same_dtype(who, t, source)) return NULL;
    /* source is t's shape with numel(index) at d; a 0-dim t takes 0-dim or 1-D */
    bool ok = t->ndim == 0 ? source->ndim <= 1 && source->numel == index->numel : source->ndim == t->ndim;
    for (int i = 0; ok && i < t->ndim; i++) ok = source->shape[i] == (i == d ? index->numel : t->shape[i]);
    if (!ok) {
        nb__err(NB_ESHAPE,
                "%s: source of shape %s does not match self of shape %s with an index of %lld entries at dim %d "
                "(source must be self's shape with size %lld at dim %d)",
                who, nb__shape_str(source), nb__shape_str(t), (long long)index->numel, d, (long long)index->numel, d);
        return NULL;
    }
    int64_t size = t->ndim ? t->shape[d] : 1;
    if (check_range(who, "index", "index", index, size, dim_size_str(d, size))) return NULL;
    nb_tensor *out = t->ndim == 0 ? run_1d(who, NB_OP_INDEX_ADD, t, index, source, 0, NULL)
                                  : run(who, NB_OP_INDEX_ADD, t->dtype, t->ndim, t->shape,
                                        (const nb_tensor *[]){t, index, source}, 3, d);
    return finish_index(out, "IndexAddBackward", who, index_add_backward, t, index, source, d);
}

/* ---- gather: backward scatters the gradient into zeros ---- */
static int gather_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    /* zeros as one value expanded: the kernel fills its output, no zero tensor is written first */
    nb_tensor *z = nb_expand(nb_zeros(NB_SHAPE0, nb_dtype(g)), n->shape[0]);
    gin[0] = nb_scatter_add(z, (int)n->p.i[0], nb__saved_get(n, 0), g);
    return nb__grads_ok(n, gin);
}

/* index has t's number of dims (a 0-dim or 1-D index with a 0-dim or 1-D t
 * counts as the same) and index.size(i) <= t.size(i) for i != skip. */
static int check_fits(const char *who, const nb_tensor *index, const nb_tensor *t, const char *tname, int skip) {
    bool small = index->ndim <= 1 && t->ndim <= 1;
    bool ok = index->ndim == t->ndim || small;
    if (ok && small && skip < 0) ok = index->numel <= (t->ndim ? t->shape[0] : 1);
    for (int i = 0; ok && !small && i < t->ndim; i++)
        if (i != skip && index->shape[i] > t->shape[i]) ok = false;
    if (ok) return 0;
    return nb__err(NB_ESHAPE, "%s: index of shape %s does not fit %s of shape %s (it needs the same number of dims and "
                              "no larger size %s)",
                   who, nb__shape_str(index), tname, nb__shape_str(t),
                   skip >= 0 ? "except at the indexed dim" : "in any dim");
}

NB_API nb_tensor *nb_gather(nb_tensor *t, int dim, nb_tensor *index) {
    const char *who = "nb_gather";
    NB_CHECK_ARG(who, t);
    NB_CHECK_ARG(who, index);
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0 || check_index_dtype(who, "index", index) || check_fits(who, index, t, "input", d)) return NULL;
    int64_t size = t->ndim ? t->shape[d] : 1;
    if (check_range(who, "index", "index", index, size, dim_size_str(d, size))) return NULL;
    nb_tensor *out = t->ndim <= 1 && index->ndim <= 1
                         ? run_1d(who, NB_OP_GATHER, t, index, NULL, index->ndim, index->shape)
                         : run(who, NB_OP_GATHER, t->dtype, index->ndim, index->shape, (const nb_tensor *[]){t, index},
                               2, d);
    return finish_index(out, "GatherBackward", who, gather_backward, t, index, NULL, d);
}

/* ---- scatter_add: grad_t = g, grad_src = gather(g), zero-padded where src
 * is larger than index ---- */
static int scatter_add_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    if (nb__needs_input_grad(n, 0)) gin[0] = nb__scoped(nb_retain(g));
    if (nb__needs_input_grad(n, 2)) {
        nb_dims src = n->shape[1];
        nb_tensor *gs = nb_gather(g, (int)n->p.i[0], nb__saved_get(n, 0));
        if (gs && src.ndim <= 1) gs = nb_reshape(gs, NB_SHAPE(-1));   /* 0-dim and 1-D: as vectors */
        int64_t pad[2 * NB_MAX_DIMS];
        int npad = 0;
        for (int i = nb_ndim(gs) - 1; i >= 0; i--) {   /* F.pad's order: last dim first */
            pad[npad++] = 0;
            pad[npad++] = (src.ndim ? src.d[i] : 1) - nb_shape(gs)[i];
        }
        gin[2] = nb_reshape(nb_pad(gs, pad, npad, 0.0), src);
    }
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_scatter_add(nb_tensor *t, int dim, nb_tensor *index, nb_tensor *src) {
    const char *who = "nb_scatter_add";
    NB_CHECK_ARG(who, t);
    NB_CHECK_ARG(who, index);
    NB_CHECK_ARG(who, src);
    int d = nb__wrap_dim(who, dim, t->ndim);
    if (d < 0 || check_index_dtype(who, "index", index) || nb__check_same_dtype(who, t, src) ||
        check_fits(who, index, t, "self", d) || check_fits(who, index, src, "src", -1))
        return NULL;
    int64_t size = t->ndim ? t->shape[d] : 1;
    if (check_range(who, "index", "index", index, size, dim_size_str(d, size))) return NULL;
    nb_tensor *out = t->ndim <= 1 && index->ndim <= 1
                         ? run_1d(who, NB_OP_SCATTER_ADD, t, index, src, t->ndim, t->shape)
                         : run(who, NB_OP_SCATTER_ADD, t->dtype, t->ndim, t->shape,
                               (const nb_tensor *[]){t, index, src}, 3, d);
    return finish_index(out, "ScatterAddBackward", who, scatter_add_backward, t, index, src, d);
}

/* ---- embedding: backward is an index_add of the gradient's rows into
 * zeros, rows looked up at padding_idx masked out first ---- */
static int embedding_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_dims wshape = n->shape[0];
    int64_t pad = n->p.i[0];
    nb_tensor *flat = nb_contiguous(nb_reshape(nb__saved_get(n, 0), NB_SHAPE(-1)));
    nb_tensor *g2 = nb_reshape(g, NB_SHAPE(-1, wshape.d[1]));
    if (flat && g2 && pad != NB_NO_PADDING) {   /* g2 * mask, mask (N, 1): 0 where the index is padding_idx */
        nb_tensor *mask = nb_empty(NB_SHAPE(flat->numel, 1), nb_dtype(g));
        if (mask) {
            const int64_t *iv = nb_data(flat);
            char *mv = nb_data(mask);
            size_t es = nb_dtype_size(nb_dtype(mask));
            for (int64_t i = 0; i < flat->numel; i++) nb__store(mv + (size_t)i * es, nb_dtype(mask), iv[i] != pad);
        }
        g2 = nb_mul(g2, mask);
    }
    gin[1] = nb_index_add(nb_zeros(wshape, nb_dtype(g)), 0, flat, g2);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_embedding(nb_tensor *indices, nb_tensor *weight, int64_t padding_idx) {
    const char *who = "nb_embedding";
    NB_CHECK_ARG(who, indices);
    NB_CHECK_ARG(who, weight);
    if (indices->dtype != NB_DTYPE_I64) {
        nb__err(NB_EDTYPE, "%s: indices must be an i64 tensor, got %s of shape %s (the order is (indices, weight), as "
                           "F.embedding)",
                who, nb_dtype_name(indices->dtype), nb__shape_str(indices));
        return NULL;
    }
    if (nb__check_float(who, weight)) return NULL;
    if (weight->ndim != 2) {
        nb__err(NB_ESHAPE, "%s: weight must be 2-D (num_embeddings, embedding_dim), got shape %s", who,
                nb__shape_str(weight));
        return NULL;
    }
    if (indices->ndim + 1 > NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "%s: indices of shape %s would give more than %d dims", who, nb__shape_str(indices),
                NB_MAX_DIMS);
        return NULL;
    }
    int64_t V = weight->shape[0];
    if (padding_idx != NB_NO_PADDING) {
        if (padding_idx < -V || padding_idx >= V) {
            nb__err(NB_ERANGE, "%s: padding_idx %lld is out of range for weight of shape %s; valid range is [%lld, %lld)",
                    who, (long long)padding_idx, nb__shape_str(weight), (long long)-V, (long long)V);
            return NULL;
        }
        if (padding_idx < 0) padding_idx += V;
    }
    char range_of[96];
    snprintf(range_of, sizeof range_of, "the %lld rows of weight %s", (long long)V, nb__shape_str(weight));
    if (check_range(who, "index", "indices", indices, V, range_of)) return NULL;
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, indices->shape, sizeof(int64_t) * (size_t)indices->ndim);
    shape[indices->ndim] = weight->shape[1];
    nb_tensor *out = run(who, NB_OP_EMBEDDING, weight->dtype, indices->ndim + 1, shape,
                         (const nb_tensor *[]){weight, indices}, 2, 0);
    nb_tensor *in[2] = {indices, weight};
    nb__node *node;
    out = nb__finish(out, "EmbeddingBackward", who, embedding_backward, in, 2, 1u, &node);
    if (node) {
        node->p.i[0] = padding_idx;
        node->shape[0] = nb_dims_get(weight);
    }
    return out;
}

/* ---- one_hot: integer result, no gradient ---- */
NB_API nb_tensor *nb_one_hot(nb_tensor *t, int64_t num_classes) {
    const char *who = "nb_one_hot";
    NB_CHECK_ARG(who, t);
    if (check_index_dtype(who, "input", t)) return NULL;
    if (t->ndim + 1 > NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "%s: input of shape %s would give more than %d dims", who, nb__shape_str(t), NB_MAX_DIMS);
        return NULL;
    }
    if (num_classes < -1) {
        nb__err(NB_EINVAL, "%s: num_classes must be -1 or >= 0, got %lld", who, (long long)num_classes);
        return NULL;
    }
    if (num_classes == -1) {   /* max + 1; negatives are reported below */
        if (t->numel == 0) {
            nb__err(NB_EINVAL, "%s: cannot infer num_classes (-1) from an empty tensor of shape %s", who,
                    nb__shape_str(t));
            return NULL;
        }
        int64_t v, pos[NB_MAX_DIMS], mx;
        find_outside(t, INT64_MAX, &v, pos, &mx);
        num_classes = mx + 1;
    }
    char range_of[64];
    snprintf(range_of, sizeof range_of, "num_classes %lld", (long long)num_classes);
    if (check_range(who, "class value", "input", t, num_classes, range_of)) return NULL;
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    shape[t->ndim] = num_classes;
    return nb__scoped(run(who, NB_OP_ONE_HOT, NB_DTYPE_I64, t->ndim + 1, shape, (const nb_tensor *[]){t}, 1, 0));
}
