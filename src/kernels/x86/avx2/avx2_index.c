/* avx2_index.c — contiguous fast paths of the data-movement ops of
 * ref_index.c, with its arguments: CAT, STACK, INDEX_SELECT and EMBEDDING
 * (any dtype: block copies with memcpy) and INDEX_ADD (F32: rows added with
 * AVX2), the embedding's backward; REPEAT, FLIP, TRIL/TRIU and PAD (any
 * dtype, row by row: see their section); GATHER (any dtype) and SCATTER_ADD
 * (F32, F64; ref's order of additions). ref walks every element through a
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
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
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
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
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
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
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
    if ((const void *)o != nb_data(self)) {   /* out = self, split over threads (an embedding table: MBs) */
        const float *sf = nb_data(self);
        int64_t N = out->numel;
        int ntc = nb__par_threads(N, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(ntc)) if (ntc > 1) schedule(static)
        for (int t = 0; t < ntc; t++) {
            int64_t lo = N * t / ntc, hi = N * (t + 1) / ntc;
            memcpy(o + lo, sf + lo, (size_t)(hi - lo) * sizeof(float));
        }
    }
    if (src->numel == 0) return 0;
    int64_t outer = ix_prod(out, 0, dim), inner = ix_prod(out, dim + 1, out->ndim);
    int nt = nb__par_threads(src->numel, NB_GRAIN_ELEMENTWISE);
    /* IX_COLS columns a task, or narrower where that left threads idle (an
       embedding gradient of width 512 made 2 tasks). Each element adds its
       rows in index order on one thread at any width: the same bits. */
    int64_t cw = nb__col_width(outer, inner, nt, IX_COLS, 8);
    int64_t chunks = (inner + cw - 1) / cw, tasks = outer * chunks;
    if (nt > tasks) nt = (int)tasks;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t ob = t / chunks, j0 = (t % chunks) * cw, n = inner - j0 < cw ? inner - j0 : cw;
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

/* idx[0..nd) of row r of a C-order walk over shape[0..nd) (the dims before
 * the last), and the step to the next row. */
static inline void ix_unravel(const int64_t *shape, int nd, int64_t r, int64_t *idx) {
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = r % shape[d];
        r /= shape[d];
    }
}
static inline void ix_next(const int64_t *shape, int nd, int64_t *idx) {
    for (int d = nd - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) return;
        idx[d] = 0;
    }
}

/* ---- REPEAT, FLIP, TRIL/TRIU, PAD: row by row ----
 * out and in[0] contiguous (else declined), any dtype. out's rows (its
 * last dim) are split over threads; a thread decomposes its first row's
 * index once and then steps it (ref recomputes an address per element).
 * Each op maps an output row to one input row (or none) and moves it with
 * memcpy / memset / a fill pattern: exact, bitwise ref's. */
typedef struct mv_call {
    const nb_tensor *in, *out;
    size_t es;              /* element bytes */
    int64_t k;              /* TRIL/TRIU: the diagonal */
    unsigned mask;          /* FLIP: reversed dims */
    int64_t before[NB_MAX_DIMS], after[NB_MAX_DIMS];   /* PAD */
    char fill[8];           /* PAD: the value in out's dtype */
    bool fill_zero;         /* ... all-zero bytes */
} mv_call;

typedef void (*mv_row_fn)(const mv_call *c, const int64_t *idx, char *orow);

/* Byte offset of in[0]'s row at outer index ii (in's ndim - 1 entries). */
static inline int64_t mv_in_row(const mv_call *c, const int64_t *ii) {
    int64_t off = 0;
    for (int d = 0; d < c->in->ndim - 1; d++) off += ii[d] * c->in->stride[d];
    return off * (int64_t)c->es;
}

/* n elements of the fill value at p */
static void mv_fill(const mv_call *c, char *p, int64_t n) {
    if (n <= 0) return;
    if (c->fill_zero) {
        memset(p, 0, (size_t)n * c->es);
        return;
    }
    for (int64_t i = 0; i < n; i++) memcpy(p + i * (int64_t)c->es, c->fill, c->es);
}

static void mv_repeat_row(const mv_call *c, const int64_t *idx, char *orow) {
    int lead = c->out->ndim - c->in->ndim;
    int64_t ii[NB_MAX_DIMS];
    for (int d = 0; d < c->in->ndim - 1; d++) ii[d] = idx[lead + d] % c->in->shape[d];
    const char *src = ix_ptr(c->in) + mv_in_row(c, ii);
    int64_t lin = c->in->shape[c->in->ndim - 1], lout = c->out->shape[c->out->ndim - 1];
    size_t rb = (size_t)lin * c->es;
    for (int64_t j = 0; j < lout; j += lin, orow += rb) memcpy(orow, src, rb);
}

/* dst[i] = src[n - 1 - i] for elements of es bytes */
static void mv_reverse(char *dst, const char *src, int64_t n, size_t es) {
    int64_t i = 0;
    if (es == 4) {
        const __m256i rev = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps((float *)dst + i, _mm256_permutevar8x32_ps(
                                                   _mm256_loadu_ps((const float *)src + n - 8 - i), rev));
    } else if (es == 8) {
        for (; i + 4 <= n; i += 4)
            _mm256_storeu_pd((double *)dst + i,
                             _mm256_permute4x64_pd(_mm256_loadu_pd((const double *)src + n - 4 - i), 0x1B));
    }
    for (; i < n; i++) memcpy(dst + i * (int64_t)es, src + (n - 1 - i) * (int64_t)es, es);
}

static void mv_flip_row(const mv_call *c, const int64_t *idx, char *orow) {
    int nd = c->out->ndim;
    int64_t ii[NB_MAX_DIMS];
    for (int d = 0; d < nd - 1; d++) ii[d] = c->mask & (1u << d) ? c->in->shape[d] - 1 - idx[d] : idx[d];
    const char *src = ix_ptr(c->in) + mv_in_row(c, ii);
    int64_t L = c->out->shape[nd - 1];
    if (c->mask & (1u << (nd - 1))) mv_reverse(orow, src, L, c->es);
    else memcpy(orow, src, (size_t)L * c->es);
}

/* tril (k >= 0 side) keeps col - row <= k, triu keeps col - row >= k */
static void mv_tri_row(const mv_call *c, const int64_t *idx, char *orow, bool lower) {
    int nd = c->out->ndim;
    int64_t C = c->out->shape[nd - 1], r = idx[nd - 2];
    const char *src = ix_ptr(c->in) + mv_in_row(c, idx);
    int64_t e = lower ? r + c->k + 1 : r + c->k;   /* lower: keep [0, e); upper: keep [e, C) */
    e = e < 0 ? 0 : e > C ? C : e;
    size_t es = c->es;
    if (lower) {
        memcpy(orow, src, (size_t)e * es);
        memset(orow + e * (int64_t)es, 0, (size_t)(C - e) * es);
    } else {
        memset(orow, 0, (size_t)e * es);
        memcpy(orow + e * (int64_t)es, src + e * (int64_t)es, (size_t)(C - e) * es);
    }
}
static void mv_tril_row(const mv_call *c, const int64_t *idx, char *orow) { mv_tri_row(c, idx, orow, true); }
static void mv_triu_row(const mv_call *c, const int64_t *idx, char *orow) { mv_tri_row(c, idx, orow, false); }

static void mv_pad_row(const mv_call *c, const int64_t *idx, char *orow) {
    int nd = c->out->ndim;
    int64_t ii[NB_MAX_DIMS], L = c->out->shape[nd - 1], lin = c->in->shape[nd - 1];
    for (int d = 0; d < nd - 1; d++) {
        ii[d] = idx[d] - c->before[d];
        if (ii[d] < 0 || ii[d] >= c->in->shape[d]) {   /* a row of padding */
            mv_fill(c, orow, L);
            return;
        }
    }
    const char *src = ix_ptr(c->in) + mv_in_row(c, ii);
    int64_t b = c->before[nd - 1];   /* out[j] = in[j - b] for j - b in [0, lin) */
    int64_t j0 = b > 0 ? b : 0, j1 = b + lin < L ? b + lin : L;
    size_t es = c->es;
    if (j1 <= j0) {
        mv_fill(c, orow, L);
        return;
    }
    mv_fill(c, orow, j0);
    memcpy(orow + j0 * (int64_t)es, src + (j0 - b) * (int64_t)es, (size_t)(j1 - j0) * es);
    mv_fill(c, orow + j1 * (int64_t)es, L - j1);
}

/* Runs f over out's rows, split over threads. */
static int mv_run(const mv_call *c, mv_row_fn f) {
    const nb_tensor *out = c->out;
    int nd = out->ndim;
    int64_t L = out->shape[nd - 1], rows = L ? out->numel / L : 0;
    if (out->numel == 0) return 0;
    size_t rb = (size_t)L * c->es;
    int nt = nb__par_threads(out->numel * (int64_t)c->es / 4, NB_GRAIN_ELEMENTWISE);
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt, idx[NB_MAX_DIMS] = {0};
        ix_unravel(out->shape, nd - 1, r0, idx);
        char *orow = ix_ptr(out) + r0 * (int64_t)rb;
        for (int64_t r = r0; r < r1; r++, orow += rb) {
            f(c, idx, orow);
            ix_next(out->shape, nd - 1, idx);
        }
    }
    return 0;
}

/* The common checks: out and in[0] contiguous, of one dtype, ndim >= 1. */
static bool mv_open(mv_call *c, const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0], *out = a->out;
    if (a->nin < 1 || !in || in->dtype != out->dtype || out->ndim < 1 || in->ndim < 1 ||
        (in->numel && !nb_is_contiguous(in)) || (out->numel && !nb_is_contiguous(out)))   /* empty: nothing moves */
        return false;
    memset(c, 0, sizeof *c);
    c->in = in, c->out = out, c->es = nb_dtype_size(out->dtype);
    return true;
}

static int avx2_repeat(const nb_kernel_args *a) {
    mv_call c;
    if (!mv_open(&c, a)) return NB_KERNEL_DECLINE;
    int lead = c.out->ndim - c.in->ndim;
    if (lead < 0) return NB_KERNEL_DECLINE;
    if (c.out->numel == 0) return 0;
    for (int d = 0; d < c.in->ndim; d++)   /* out's size a multiple of in's (checked by the op) */
        if (c.in->shape[d] == 0 || c.out->shape[lead + d] % c.in->shape[d]) return NB_KERNEL_DECLINE;
    return mv_run(&c, mv_repeat_row);
}

static int avx2_flip(const nb_kernel_args *a) {
    mv_call c;
    if (!mv_open(&c, a) || c.in->ndim != c.out->ndim) return NB_KERNEL_DECLINE;
    c.mask = (unsigned)a->scalar[0];
    return mv_run(&c, mv_flip_row);
}

static int mv_tri(const nb_kernel_args *a, mv_row_fn f) {
    mv_call c;
    if (!mv_open(&c, a) || c.in->ndim != c.out->ndim || c.out->ndim < 2) return NB_KERNEL_DECLINE;
    c.k = (int64_t)a->scalar[0];
    return mv_run(&c, f);
}
static int avx2_tril(const nb_kernel_args *a) { return mv_tri(a, mv_tril_row); }
static int avx2_triu(const nb_kernel_args *a) { return mv_tri(a, mv_triu_row); }

static int avx2_pad(const nb_kernel_args *a) {
    mv_call c;
    const nb_tensor *pads = a->nin > 1 ? a->in[1] : NULL;
    if (!mv_open(&c, a) || c.in->ndim != c.out->ndim || !pads || pads->dtype != NB_DTYPE_I64 || pads->ndim != 1 ||
        pads->numel != 2 * c.out->ndim || !nb_is_contiguous(pads))
        return NB_KERNEL_DECLINE;
    const int64_t *pv = nb_data(pads);
    for (int d = 0; d < c.out->ndim; d++) {
        c.before[d] = pv[2 * d], c.after[d] = pv[2 * d + 1];
        if (c.in->shape[d] + c.before[d] + c.after[d] != c.out->shape[d]) return NB_KERNEL_DECLINE;
    }
    nb__store(c.fill, c.out->dtype, a->scalar[0]);
    c.fill_zero = true;
    for (size_t b = 0; b < c.es; b++) c.fill_zero = c.fill_zero && c.fill[b] == 0;
    return mv_run(&c, mv_pad_row);
}

/* ---- GATHER (any dtype), SCATTER_ADD (F32, F64) on contiguous operands ----
 * gather: out[p] = in[0][p with p[d] := index[p]], out and index of one
 * shape, in[0] at least as large in the other dims; out's rows split over
 * threads. (scatter_add's in[2] may have any strides.) scatter_add: out = in[0], then out[p with p[d] := index[p]] +=
 * in[2][p] over index's shape, in ref's order for every element of out:
 * along the last dim (d last) a row of index only reaches its own row of
 * out, so rows go to threads; otherwise the contributions to one element
 * differ only in p[d] and come in its order, so threads take column
 * ranges and walk every row. Both check each index as they use it (one
 * pass over the index: a bad one reads or adds at element 0 instead, and
 * the call returns NB_ERANGE; its fresh output is discarded, as after
 * ref's). scatter_add's in[0] may also be one value broadcast everywhere
 * (a gather's backward adds into zeros): out is filled with it. */
/* Element offset, in t, of the outer index idx (nd - 1 entries) with entry d
 * taken as 0. */
static inline int64_t mv_outer_off(const nb_tensor *t, const int64_t *idx, int nd, int d) {
    int64_t off = 0;
    for (int k = 0; k < nd - 1; k++)
        if (k != d) off += idx[k] * t->stride[k];
    return off;
}

static bool mv_flat(const nb_tensor *t) { return t->numel == 0 || nb_is_contiguous(t); }

static int avx2_gather(const nb_kernel_args *a) {
    const nb_tensor *src = a->in[0], *ix = a->nin > 1 ? a->in[1] : NULL;
    nb_tensor *out = a->out;
    int d = (int)a->scalar[0], nd = out->ndim;
    if (!src || !ix || ix->dtype != NB_DTYPE_I64 || src->dtype != out->dtype || nd < 1 || src->ndim != nd ||
        ix->ndim != nd || d < 0 || d >= nd || !mv_flat(src) || !mv_flat(ix) || !mv_flat(out))
        return NB_KERNEL_DECLINE;
    for (int k = 0; k < nd; k++)   /* shapes the op guarantees: ref's walk too relies on them */
        if (ix->shape[k] != out->shape[k] || (k != d && src->shape[k] < out->shape[k])) return NB_KERNEL_DECLINE;
    if (out->numel == 0) return 0;
    size_t es = nb_dtype_size(out->dtype);
    int64_t dn = src->shape[d], bad = 0;
    bool any_bad = false;
    int64_t L = out->shape[nd - 1], rows = out->numel / L, sd = src->stride[d];
    const int64_t *iv = nb_data(ix);
    const char *sb = ix_ptr(src);
    int nt = nb__par_threads(out->numel, NB_GRAIN_ELEMENTWISE);
    if (nt > rows) nt = (int)rows;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt, idx[NB_MAX_DIMS] = {0};
        ix_unravel(out->shape, nd - 1, r0, idx);
        for (int64_t r = r0; r < r1; r++) {
            char *o = ix_ptr(out) + r * L * (int64_t)es;
            const int64_t *ir = iv + r * L;
            int64_t base = mv_outer_off(src, idx, nd, d);
            /* src element base + ir[j] sdd + j step; an index outside [0, dn) (a negative one is huge
               unsigned) reads element 0 instead and marks the row bad */
            int64_t step = d == nd - 1 ? 0 : 1, sdd = d == nd - 1 ? 1 : sd;
            uint64_t un = (uint64_t)dn, badrow = 0;
#define GATHER_ROW(T)                                                                           \
    if (!step) { /* along the last dim: one source row */                                       \
        const T *srow = (const T *)sb + base;                                                   \
        for (int64_t j = 0; j < L; j++) {                                                       \
            uint64_t q = (uint64_t)ir[j];                                                       \
            badrow |= q >= un;                                                                  \
            ((T *)o)[j] = srow[q < un ? q : 0];                                                 \
        }                                                                                       \
    } else {                                                                                    \
        for (int64_t j = 0; j < L; j++) {                                                       \
            uint64_t q = (uint64_t)ir[j];                                                       \
            badrow |= q >= un;                                                                  \
            ((T *)o)[j] = ((const T *)sb)[base + (int64_t)(q < un ? q : 0) * sdd + j];          \
        }                                                                                       \
    }
            if (es == 4) GATHER_ROW(uint32_t)
            else if (es == 8) GATHER_ROW(uint64_t)
            else GATHER_ROW(uint8_t)
#undef GATHER_ROW
            if (badrow) {
                int64_t v = 0;
                for (int64_t j = 0; j < L && !v; j++) v = (uint64_t)ir[j] >= un ? ir[j] : 0;
#pragma omp critical(nb_avx2_gather_bad)
                if (!any_bad) any_bad = true, bad = v;
                break;
            }
            ix_next(out->shape, nd - 1, idx);
        }
    }
    return any_bad ? nb__err(NB_ERANGE, "avx2_gather: index %lld out of range [0, %lld)", (long long)bad,
                             (long long)dn)
                   : 0;
}

/* one row of index (outer index idx) added into out, columns [j0, j1) */
#define SC_ROW(T)                                                                                 \
    do {                                                                                          \
        T *ob = (T *)nb_data(out);                                                                \
        const T *srow = (const T *)nb_data(src) + mv_outer_off(src, idx, nd, -1);                 \
        int64_t base = mv_outer_off(out, idx, nd, d);                                             \
        if (d == nd - 1) { /* along the last dim: one row of out */                               \
            T *orow = ob + base;                                                                  \
            for (int64_t j = j0; j < j1; j++) {                                                   \
                uint64_t q = (uint64_t)ir[j];                                                     \
                badrow |= q >= un;                                                                \
                orow[q < un ? q : 0] += srow[j * ss];                                             \
            }                                                                                     \
        } else {                                                                                  \
            int64_t sd_ = out->stride[d];                                                         \
            for (int64_t j = j0; j < j1; j++) {                                                   \
                uint64_t q = (uint64_t)ir[j];                                                     \
                badrow |= q >= un;                                                                \
                ob[base + (int64_t)(q < un ? q : 0) * sd_ + j] += srow[j * ss];                   \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static int avx2_scatter_add(const nb_kernel_args *a) {
    const nb_tensor *self = a->in[0], *ix = a->nin > 2 ? a->in[1] : NULL, *src = a->nin > 2 ? a->in[2] : NULL;
    nb_tensor *out = a->out;
    int d = (int)a->scalar[0], nd = out->ndim;
    if (!self || !ix || !src || ix->dtype != NB_DTYPE_I64 || self->dtype != out->dtype ||
        src->dtype != out->dtype || (out->dtype != NB_DTYPE_F32 && out->dtype != NB_DTYPE_F64) || nd < 1 ||
        self->ndim != nd || ix->ndim != nd || src->ndim != nd || d < 0 || d >= nd || !mv_flat(ix) ||
        !mv_flat(out))   /* src: any strides (a gather's gradient is often expanded) */
        return NB_KERNEL_DECLINE;
    bool sbc = true;   /* self one value everywhere (the zeros a gather's backward adds into) */
    for (int k = 0; k < nd; k++) sbc = sbc && (self->shape[k] == 1 || self->stride[k] == 0);
    if (!sbc && !mv_flat(self)) return NB_KERNEL_DECLINE;
    for (int k = 0; k < nd; k++)
        if (self->shape[k] != out->shape[k] || (k != d && ix->shape[k] > out->shape[k]) ||
            src->shape[k] < ix->shape[k])
            return NB_KERNEL_DECLINE;
    size_t es = nb_dtype_size(out->dtype);
    int64_t n = out->numel;
    int ntc = nb__par_threads(n, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(ntc)) if (ntc > 1) schedule(static)
    for (int t = 0; t < ntc; t++) {   /* out = self, split over threads */
        int64_t e0 = n * t / ntc, e1 = n * (t + 1) / ntc;
        char *o = ix_ptr(out) + e0 * (int64_t)es;
        if (!sbc) {
            memcpy(o, ix_ptr(self) + e0 * (int64_t)es, (size_t)(e1 - e0) * es);
        } else if (out->dtype == NB_DTYPE_F32) {
            float v = *(const float *)nb_data(self);
            for (int64_t e = 0; e < e1 - e0; e++) ((float *)o)[e] = v;
        } else {
            double v = *(const double *)nb_data(self);
            for (int64_t e = 0; e < e1 - e0; e++) ((double *)o)[e] = v;
        }
    }
    if (ix->numel == 0) return 0;
    int64_t L = ix->shape[nd - 1], rows = ix->numel / L, ss = src->stride[nd - 1];
    const int64_t *iv = nb_data(ix);
    uint64_t un = (uint64_t)out->shape[d];
    bool by_rows = d == nd - 1, any_bad = false;
    int64_t units = by_rows ? rows : L;
    int nt = nb__par_threads(ix->numel, NB_GRAIN_ELEMENTWISE);
    if (nt > units) nt = (int)units;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static) reduction(|| : any_bad)
    for (int t = 0; t < nt; t++) {
        int64_t u0 = units * t / nt, u1 = units * (t + 1) / nt;
        int64_t r0 = by_rows ? u0 : 0, r1 = by_rows ? u1 : rows, j0 = by_rows ? 0 : u0, j1 = by_rows ? L : u1;
        int64_t idx[NB_MAX_DIMS] = {0};
        ix_unravel(ix->shape, nd - 1, r0, idx);
        uint64_t badrow = 0;
        for (int64_t r = r0; r < r1; r++) {
            const int64_t *ir = iv + r * L;
            if (out->dtype == NB_DTYPE_F32) SC_ROW(float);
            else SC_ROW(double);
            ix_next(ix->shape, nd - 1, idx);
        }
        any_bad = any_bad || badrow;
    }
    if (any_bad) {   /* out is discarded; name the first bad index */
        for (int64_t k = 0;; k++)
            if ((uint64_t)iv[k] >= un)
                return nb__err(NB_ERANGE, "avx2_scatter_add: index %lld out of range [0, %lld)", (long long)iv[k],
                               (long long)un);
    }
    return 0;
}
#undef SC_ROW

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
        IX_REG_ALL(REPEAT, avx2_repeat, "avx2_repeat"),
        IX_REG_ALL(FLIP, avx2_flip, "avx2_flip"),
        IX_REG_ALL(TRIL, avx2_tril, "avx2_tril"),
        IX_REG_ALL(TRIU, avx2_triu, "avx2_triu"),
        IX_REG_ALL(PAD, avx2_pad, "avx2_pad"),
        IX_REG_ALL(GATHER, avx2_gather, "avx2_gather"),
        IX_REG(SCATTER_ADD, F32, avx2_scatter_add, "avx2_scatter_add"),
        IX_REG(SCATTER_ADD, F64, avx2_scatter_add, "avx2_scatter_add"),
    };
    NB__REGISTER_ALL(ks);
}
