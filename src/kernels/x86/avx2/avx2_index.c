/* avx2_index.c — contiguous fast paths of the data-movement ops of
 * ref_index.c, with its arguments: CAT, STACK, INDEX_SELECT and EMBEDDING
 * (any dtype: block copies with memcpy) and INDEX_ADD (F32: rows added with
 * AVX2), the embedding's backward. ref walks every element through a
 * multi-index (~0.5 GB/s: a 32 MB cat took 75 ms); here whole contiguous
 * blocks move at once.
 *
 * Served when every tensor operand is contiguous (the index of
 * INDEX_SELECT/INDEX_ADD 0-d or 1-d with any stride, of EMBEDDING
 * contiguous; EMBEDDING's weight needs unit stride along D only); anything
 * else is declined to ref. Indices are all checked before anything is
 * written (NB_ERANGE, as ref's message). Copies are exact; INDEX_ADD adds
 * each output element's contributions in index order, as ref, so its
 * results are ref's bitwise, at any thread count (threads take disjoint
 * column ranges).
 */
#include "kernels/kernels.h"
#include "vmath.h"

#include <string.h>

/* prod of t's dims [d0, d1) */
static int64_t ix_prod(const nb_tensor *t, int d0, int d1) {
    int64_t p = 1;
    for (int d = d0; d < d1; d++) p *= t->shape[d];
    return p;
}

static char *ix_ptr(const nb_tensor *t) { return (char *)nb_data(t); }

/* index element k of a 0-d or 1-d I64 tensor */
static inline int64_t ix_at(const nb_tensor *ix, int64_t k) {
    return ((const int64_t *)nb_data(ix))[ix->ndim ? k * ix->stride[0] : 0];
}

/* Checks n indices against [0, size): 0 or NB_ERANGE. */
static int ix_check(const nb_tensor *ix, int64_t n, int64_t size, bool flat, const char *kernel) {
    const int64_t *p = nb_data(ix);
    for (int64_t k = 0; k < n; k++) {
        int64_t v = flat ? p[k] : ix_at(ix, k);
        if (v < 0 || v >= size)
            return nb__err(NB_ERANGE, "%s: index %lld out of range [0, %lld)", kernel, (long long)v,
                           (long long)size);
    }
    return 0;
}

static bool ix_index_ok(const nb_tensor *ix) { return ix && ix->dtype == NB_DTYPE_I64 && ix->ndim <= 1; }

/* out's blocks [o * oblk + start, + n) <- in's blocks [o * n, + n), o < outer (bytes). */
static void ix_blocks(char *out, const char *in, int64_t outer, int64_t n, int64_t oblk, int64_t start,
                      int64_t total) {
    int nt = nb__par_threads(total / 4, NB_GRAIN_ELEMENTWISE);
    if (nt > outer) nt = (int)outer;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t o = 0; o < outer; o++) memcpy(out + o * oblk + start, in + o * n, (size_t)n);
}

/* CAT: in[0] into out's window [scalar[1], +size) along dim scalar[0];
 * STACK: in[0] at position scalar[1] of out's dim scalar[0]. */
static int ix_window(const nb_kernel_args *a, bool stack) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    int64_t start = (int64_t)a->scalar[1];
    if (!in || in->dtype != out->dtype || !nb_is_contiguous(in) || !nb_is_contiguous(out) || dim < 0 ||
        dim >= out->ndim || out->ndim != in->ndim + (stack ? 1 : 0))
        return NB_KERNEL_DECLINE;
    if (in->numel == 0) return 0;
    size_t es = nb_dtype_size(in->dtype);
    int64_t outer = ix_prod(out, 0, dim), inner = ix_prod(out, dim + 1, out->ndim);
    int64_t n = in->numel / outer;   /* bytes of a block: in's dims from dim on */
    ix_blocks(ix_ptr(out), ix_ptr(in), outer, n * (int64_t)es, out->shape[dim] * inner * (int64_t)es,
              start * inner * (int64_t)es, in->numel * (int64_t)es);
    return 0;
}
static int avx2_cat(const nb_kernel_args *a) { return ix_window(a, false); }
static int avx2_stack(const nb_kernel_args *a) { return ix_window(a, true); }

/* INDEX_SELECT: out[.., k, ..] = src[.., index[k], ..] along dim scalar[0]. */
static int avx2_index_select(const nb_kernel_args *a) {
    const nb_tensor *src = a->in[0], *ix = a->in[1];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    if (!src || src->dtype != out->dtype || !ix_index_ok(ix) || !nb_is_contiguous(src) || !nb_is_contiguous(out) ||
        dim < 0 || dim >= src->ndim || out->ndim != src->ndim)
        return NB_KERNEL_DECLINE;
    if (out->numel == 0) return 0;
    int64_t K = out->shape[dim], Sd = src->shape[dim];
    int rc = ix_check(ix, K, Sd, false, "avx2_index_select");
    if (rc) return rc;
    size_t es = nb_dtype_size(src->dtype);
    int64_t outer = ix_prod(out, 0, dim), inner = ix_prod(out, dim + 1, out->ndim) * (int64_t)es;
    const char *s = ix_ptr(src);
    char *o = ix_ptr(out);
    int nt = nb__par_threads(out->numel, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < outer * K; r++) {
        int64_t ob = r / K, k = r % K;
        memcpy(o + r * inner, s + (ob * Sd + ix_at(ix, k)) * inner, (size_t)inner);
    }
    return 0;
}

/* EMBEDDING: out[i.., :] = w[index[i..], :]. */
static int avx2_embedding(const nb_kernel_args *a) {
    const nb_tensor *w = a->in[0], *ix = a->in[1];
    nb_tensor *out = a->out;
    if (!w || w->ndim != 2 || w->dtype != out->dtype || w->stride[1] != 1 || !ix || ix->dtype != NB_DTYPE_I64 ||
        !nb_is_contiguous(ix) || !nb_is_contiguous(out) || out->ndim < 1 || ix->numel * w->shape[1] != out->numel)
        return NB_KERNEL_DECLINE;
    if (out->numel == 0) return 0;
    int rc = ix_check(ix, ix->numel, w->shape[0], true, "avx2_embedding");
    if (rc) return rc;
    size_t es = nb_dtype_size(w->dtype);
    int64_t D = w->shape[1], rb = D * (int64_t)es, ws = w->stride[0] * (int64_t)es;
    const int64_t *iv = nb_data(ix);
    const char *wp = ix_ptr(w);
    char *o = ix_ptr(out);
    int nt = nb__par_threads(out->numel, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < ix->numel; i++) memcpy(o + i * rb, wp + iv[i] * ws, (size_t)rb);
    return 0;
}

/* INDEX_ADD (F32): out = self; out[.., index[k], ..] += src[.., k, ..] along
 * dim scalar[0], k in order. Threads take column ranges of the inner
 * extent (whole rows when it is short), so each element's sum runs on one
 * thread in index order. */
#define IX_COLS 256   /* floats per task along the inner extent */
static int avx2_index_add(const nb_kernel_args *a) {
    const nb_tensor *self = a->in[0], *ix = a->in[1], *src = a->in[2];
    nb_tensor *out = a->out;
    int dim = (int)a->scalar[0];
    if (!self || !src || out->dtype != NB_DTYPE_F32 || self->dtype != NB_DTYPE_F32 || src->dtype != NB_DTYPE_F32 ||
        !ix_index_ok(ix) || !nb_is_contiguous(self) || !nb_is_contiguous(src) || !nb_is_contiguous(out) || dim < 0 ||
        dim >= out->ndim || src->ndim != out->ndim || self->numel != out->numel)
        return NB_KERNEL_DECLINE;
    int64_t K = src->shape[dim], Sd = out->shape[dim];
    int rc = ix_check(ix, K, Sd, false, "avx2_index_add");
    if (rc) return rc;
    float *o = nb_data(out);
    const float *s = nb_data(src);
    if ((const void *)o != nb_data(self)) memcpy(o, nb_data(self), (size_t)out->numel * sizeof(float));
    if (src->numel == 0) return 0;
    int64_t outer = ix_prod(out, 0, dim), inner = ix_prod(out, dim + 1, out->ndim);
    int64_t chunks = (inner + IX_COLS - 1) / IX_COLS, tasks = outer * chunks;
    int nt = nb__par_threads(src->numel, NB_GRAIN_ELEMENTWISE);
    if (nt > tasks) nt = (int)tasks;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t ob = t / chunks, j0 = (t % chunks) * IX_COLS, n = inner - j0 < IX_COLS ? inner - j0 : IX_COLS;
        for (int64_t k = 0; k < K; k++) {
            float *dst = o + (ob * Sd + ix_at(ix, k)) * inner + j0;
            const float *add = s + (ob * K + k) * inner + j0;
            int64_t j = 0;
            for (; j + 8 <= n; j += 8)
                _mm256_storeu_ps(dst + j, _mm256_add_ps(_mm256_loadu_ps(dst + j), _mm256_loadu_ps(add + j)));
            for (; j < n; j++) dst[j] += add[j];
        }
    }
    return 0;
}

#define IX_REG(OP, DT, FN, NAME) {NB_OP_##OP, NB_DTYPE_##DT, NB_ISA_AVX2, NAME, 10, FN}
#define IX_REG_ALL(OP, FN, NAME)                                                                             \
    IX_REG(OP, F32, FN, NAME), IX_REG(OP, F64, FN, NAME), IX_REG(OP, I64, FN, NAME), IX_REG(OP, BOOL, FN, NAME)

void nb__avx2_index_register(void) {
    static const nb_kernel_desc ks[] = {
        IX_REG_ALL(CAT, avx2_cat, "avx2_cat"),
        IX_REG_ALL(STACK, avx2_stack, "avx2_stack"),
        IX_REG_ALL(INDEX_SELECT, avx2_index_select, "avx2_index_select"),
        IX_REG(EMBEDDING, F32, avx2_embedding, "avx2_embedding"),
        IX_REG(EMBEDDING, F64, avx2_embedding, "avx2_embedding"),
        IX_REG(INDEX_ADD, F32, avx2_index_add, "avx2_index_add"),
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) nb__registry_add(&ks[i]);
}
