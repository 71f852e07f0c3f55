/* ref_index.c — portable kernels for the shape-and-indexing ops: cat, stack,
 * index_select, gather, scatter_add, index_add, embedding, repeat, flip,
 * tril/triu, one_hot and constant pad.
 *
 * What each kernel receives (the op layer has checked shapes, dtypes and
 * every index value before the call; the kernels check indices again and
 * return NB_ERANGE rather than write out of bounds):
 *   CAT          out <- in[0] written at [scalar[1], scalar[1] + in[0].size(d))
 *                along d = scalar[0]; other dims equal
 *   STACK        out[..., scalar[1], ...] (dim d = scalar[0] of out) <- in[0]
 *   INDEX_SELECT out[.., k, ..] = in[0][.., in[1][k], ..] along d = scalar[0];
 *                in[1]: I64, numel == out.size(d)
 *   GATHER       out[p] = in[0][p with p[d] := in[1][p]];  in[1]: I64 of out's shape
 *   SCATTER_ADD  out = in[0];  out[p with p[d] := in[1][p]] += in[2][p] for p
 *                over in[1]'s shape (in[2] may be larger)
 *   INDEX_ADD    out = in[0];  out[p with p[d] := in[1][p[d]]] += in[2][p] for p
 *                over in[2]'s shape
 *   EMBEDDING    out[i.., j] = in[0][in[1][i..], j];  in[0] (V, D), in[1] I64
 *   REPEAT       out[p] = in[0][p[lead + k] % size(k)] (lead = out.ndim - in.ndim)
 *   FLIP         out[p] = in[0][p with dims in bitmask scalar[0] reversed]
 *   TRIL, TRIU   out = in[0] with elements above (TRIL) / below (TRIU) the
 *                diagonal scalar[0] of the last two dims set to 0
 *   ONE_HOT      I64 out (..., C)[p, c] = in[0][p] == c
 *   PAD          out[p] = in[0][p - before] where inside, else scalar[0];
 *                in[1]: I64, 1-D, 2 ndim entries: (before, after) of dim 0, 1, ...;
 *                negative ones crop
 *
 * Every kernel walks its operands with explicit multi-indices and strides,
 * so any layout is served; elements are moved with memcpy of the dtype's
 * size (cat, stack, gather, ... are exact for every dtype). Clarity over
 * speed: these are the oracle for later SIMD variants.
 */
#include "kernels/kernels.h"

#include <string.h>

/* ---- multi-index walking ---- */

/* Advances idx over shape (nd dims) in C order; false after the last. */
static bool step(int64_t *idx, const int64_t *shape, int nd) {
    for (int d = nd - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) return true;
        idx[d] = 0;
    }
    return false;
}

/* Address of t's element at multi-index idx (t->ndim entries). */
static char *at(const nb_tensor *t, const int64_t *idx) {
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) off += idx[d] * t->stride[d];
    return (char *)nb_data(t) + off * (int64_t)nb_dtype_size(t->dtype);
}

/* I64 element of an index tensor at idx. */
static int64_t idx_at(const nb_tensor *t, const int64_t *idx) { return *(const int64_t *)at(t, idx); }

/* The i-th element (C order) of a 0-d or 1-d I64 tensor. */
static int64_t idx_flat(const nb_tensor *t, int64_t i) {
    return ((const int64_t *)nb_data(t))[t->ndim ? i * t->stride[0] : 0];
}

static int bad_index(const char *kernel, int64_t v, int64_t size) {
    return nb__err(NB_ERANGE, "%s: index %lld out of range [0, %lld)", kernel, (long long)v, (long long)size);
}

/* dst += src, one element of dtype dt. */
static void add_elem(char *dst, const char *src, nb_dtype dt) {
    switch (dt) {
    case NB_DTYPE_F32: *(float *)dst += *(const float *)src; break;
    case NB_DTYPE_F64: *(double *)dst += *(const double *)src; break;
    case NB_DTYPE_I64: {   /* wraps on overflow, as PyTorch, without signed-overflow UB */
        uint64_t sum = (uint64_t)*(const int64_t *)dst + (uint64_t)*(const int64_t *)src;
        *(int64_t *)dst = (int64_t)sum;
        break;
    }
    default: *(bool *)dst = *(bool *)dst || *(const bool *)src; break;
    }
}

/* out <- in (same shape and dtype, any strides). */
static void copy_all(nb_tensor *out, const nb_tensor *in) {
    if (out->numel == 0) return;
    size_t es = nb_dtype_size(out->dtype);
    int64_t idx[NB_MAX_DIMS] = {0};
    do memcpy(at(out, idx), at(in, idx), es);
    while (step(idx, out->shape, out->ndim));
}

/* ---- cat, stack: copy the input into a window of out ---- */
static int ref_cat(const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    int64_t start = (int64_t)a->scalar[1];
    if (in->numel == 0) return 0;
    size_t es = nb_dtype_size(in->dtype);
    int64_t idx[NB_MAX_DIMS] = {0}, oidx[NB_MAX_DIMS];
    do {
        memcpy(oidx, idx, sizeof oidx);
        oidx[dim] += start;
        memcpy(at(out, oidx), at(in, idx), es);
    } while (step(idx, in->shape, in->ndim));
    return 0;
}

static int ref_stack(const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    int64_t pos = (int64_t)a->scalar[1];
    if (in->numel == 0) return 0;
    size_t es = nb_dtype_size(in->dtype);
    int64_t idx[NB_MAX_DIMS] = {0}, oidx[NB_MAX_DIMS];
    do {
        for (int d = 0, k = 0; d < out->ndim; d++) oidx[d] = d == dim ? pos : idx[k++];
        memcpy(at(out, oidx), at(in, idx), es);
    } while (step(idx, in->shape, in->ndim));
    return 0;
}

/* ---- index_select, gather, embedding: read through an index ---- */
static int ref_index_select(const nb_kernel_args *a) {
    const nb_tensor *src = a->in[0], *index = a->in[1];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(src->dtype);
    int64_t idx[NB_MAX_DIMS] = {0}, sidx[NB_MAX_DIMS];
    do {
        memcpy(sidx, idx, sizeof sidx);
        int64_t v = idx_flat(index, idx[dim]);
        if (v < 0 || v >= src->shape[dim]) return bad_index("ref_index_select", v, src->shape[dim]);
        sidx[dim] = v;
        memcpy(at(out, idx), at(src, sidx), es);
    } while (step(idx, out->shape, out->ndim));
    return 0;
}

static int ref_gather(const nb_kernel_args *a) {
    const nb_tensor *src = a->in[0], *index = a->in[1];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(src->dtype);
    int64_t idx[NB_MAX_DIMS] = {0}, sidx[NB_MAX_DIMS];
    do {
        memcpy(sidx, idx, sizeof sidx);
        int64_t v = idx_at(index, idx);
        if (v < 0 || v >= src->shape[dim]) return bad_index("ref_gather", v, src->shape[dim]);
        sidx[dim] = v;
        memcpy(at(out, idx), at(src, sidx), es);
    } while (step(idx, out->shape, out->ndim));
    return 0;
}

static int ref_embedding(const nb_kernel_args *a) {
    const nb_tensor *w = a->in[0], *index = a->in[1];
    nb_tensor *out = a->out;
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(w->dtype);
    int nd = out->ndim;
    int64_t idx[NB_MAX_DIMS] = {0}, widx[2];
    do {
        int64_t v = idx_at(index, idx);   /* index has out's leading nd-1 dims */
        if (v < 0 || v >= w->shape[0]) return bad_index("ref_embedding", v, w->shape[0]);
        widx[0] = v, widx[1] = idx[nd - 1];
        memcpy(at(out, idx), at(w, widx), es);
    } while (step(idx, out->shape, nd));
    return 0;
}

/* ---- scatter_add, index_add: out = in[0], then accumulate in[2] ---- */
static int ref_scatter_add(const nb_kernel_args *a) {
    const nb_tensor *self = a->in[0], *index = a->in[1], *src = a->in[2];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    copy_all(out, self);
    if (index->numel == 0) return 0;
    int64_t idx[NB_MAX_DIMS] = {0}, oidx[NB_MAX_DIMS];
    do {
        memcpy(oidx, idx, sizeof oidx);
        int64_t v = idx_at(index, idx);
        if (v < 0 || v >= out->shape[dim]) return bad_index("ref_scatter_add", v, out->shape[dim]);
        oidx[dim] = v;
        add_elem(at(out, oidx), at(src, idx), out->dtype);
    } while (step(idx, index->shape, index->ndim));
    return 0;
}

static int ref_index_add(const nb_kernel_args *a) {
    const nb_tensor *self = a->in[0], *index = a->in[1], *src = a->in[2];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    copy_all(out, self);
    if (src->numel == 0) return 0;
    int64_t idx[NB_MAX_DIMS] = {0}, oidx[NB_MAX_DIMS];
    do {
        memcpy(oidx, idx, sizeof oidx);
        int64_t v = idx_flat(index, idx[dim]);
        if (v < 0 || v >= out->shape[dim]) return bad_index("ref_index_add", v, out->shape[dim]);
        oidx[dim] = v;
        add_elem(at(out, oidx), at(src, idx), out->dtype);
    } while (step(idx, src->shape, src->ndim));
    return 0;
}

/* ---- repeat, flip, tril/triu, pad: out element from one input element ---- */
static int ref_repeat(const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(in->dtype);
    int lead = out->ndim - in->ndim;
    int64_t idx[NB_MAX_DIMS] = {0}, iidx[NB_MAX_DIMS];
    do {
        for (int d = 0; d < in->ndim; d++) iidx[d] = idx[lead + d] % in->shape[d];
        memcpy(at(out, idx), at(in, iidx), es);
    } while (step(idx, out->shape, out->ndim));
    return 0;
}

static int ref_flip(const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    unsigned mask = (unsigned)a->scalar[0];
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(in->dtype);
    int64_t idx[NB_MAX_DIMS] = {0}, iidx[NB_MAX_DIMS];
    do {
        for (int d = 0; d < in->ndim; d++) iidx[d] = mask & (1u << d) ? in->shape[d] - 1 - idx[d] : idx[d];
        memcpy(at(out, idx), at(in, iidx), es);
    } while (step(idx, out->shape, out->ndim));
    return 0;
}

/* keep_lower: tril keeps col - row <= k; triu keeps col - row >= k. */
static int tri(const nb_kernel_args *a, bool keep_lower) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    int64_t k = (int64_t)a->scalar[0];
    int nd = out->ndim;
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(in->dtype);
    int64_t idx[NB_MAX_DIMS] = {0};
    do {
        int64_t diff = idx[nd - 1] - idx[nd - 2];
        bool keep = keep_lower ? diff <= k : diff >= k;
        if (keep) memcpy(at(out, idx), at(in, idx), es);
        else memset(at(out, idx), 0, es);   /* all-zero bytes: 0.0, 0, false */
    } while (step(idx, out->shape, nd));
    return 0;
}
static int ref_tril(const nb_kernel_args *a) { return tri(a, true); }
static int ref_triu(const nb_kernel_args *a) { return tri(a, false); }

static int ref_pad(const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0], *pads = a->in[1];
    nb_tensor *out = a->out;
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(in->dtype);
    int nd = out->ndim;
    int64_t before[NB_MAX_DIMS];
    for (int d = 0; d < nd; d++) before[d] = idx_flat(pads, 2 * d);
    char fill[8];
    nb__store(fill, out->dtype, a->scalar[0]);
    int64_t idx[NB_MAX_DIMS] = {0}, iidx[NB_MAX_DIMS];
    do {
        bool inside = true;
        for (int d = 0; d < nd; d++) {
            iidx[d] = idx[d] - before[d];
            if (iidx[d] < 0 || iidx[d] >= in->shape[d]) inside = false;
        }
        memcpy(at(out, idx), inside ? at(in, iidx) : fill, es);
    } while (step(idx, out->shape, nd));
    return 0;
}

/* ---- one_hot: I64 (...) -> I64 (..., C) ---- */
static int ref_one_hot(const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    int nd = out->ndim;
    int64_t C = out->shape[nd - 1];
    if (out->numel == 0) return 0;
    int64_t idx[NB_MAX_DIMS] = {0};
    do {
        int64_t v = idx_at(in, idx);   /* in has out's leading nd-1 dims */
        if (v < 0 || v >= C) return bad_index("ref_one_hot", v, C);
        *(int64_t *)at(out, idx) = v == idx[nd - 1];
    } while (step(idx, out->shape, nd));
    return 0;
}

#define REG(OP, DT, FN) {NB_OP_##OP, NB_DTYPE_##DT, NB_ISA_REF, #FN, 0, FN}
#define REG_FLOAT(OP, FN) REG(OP, F32, FN), REG(OP, F64, FN)
#define REG_ALL(OP, FN) REG(OP, F32, FN), REG(OP, F64, FN), REG(OP, I64, FN), REG(OP, BOOL, FN)

void nb__ref_index_register(void) {
    static const nb_kernel_desc ks[] = {
        REG_ALL(CAT, ref_cat),
        REG_ALL(STACK, ref_stack),
        REG_ALL(INDEX_SELECT, ref_index_select),
        REG_ALL(GATHER, ref_gather),
        REG_FLOAT(SCATTER_ADD, ref_scatter_add), REG(SCATTER_ADD, I64, ref_scatter_add),
        REG_FLOAT(INDEX_ADD, ref_index_add), REG(INDEX_ADD, I64, ref_index_add),
        REG_FLOAT(EMBEDDING, ref_embedding),
        REG_ALL(REPEAT, ref_repeat),
        REG_ALL(FLIP, ref_flip),
        REG_ALL(TRIL, ref_tril),
        REG_ALL(TRIU, ref_triu),
        REG(ONE_HOT, I64, ref_one_hot),
        REG_ALL(PAD, ref_pad),
    };
    NB__REGISTER_ALL(ks);
}
