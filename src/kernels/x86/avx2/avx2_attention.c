/* avx2_attention.c — AVX2+FMA kernels of scaled dot-product attention
 * (F32): SDPA (out = softmax(q @ kᵀ * scale + mask) @ v) and SDPA_WEIGHTS
 * (the softmax itself), with ref_attention.c's arguments. The ref kernels
 * work query by query in double: ~3.6 GFLOP/s, 150 ms for one (4, 8, 256,
 * 64) forward, 11x PyTorch's time.
 *
 * Work: the batch dims times blocks of up to AT_MAX_ROWS queries, so that a
 * block's scores (rows x S floats) stay within AT_BLOCK_FLOATS (L2); each
 * block is one task of one thread:
 *   scores = q_block @ kᵀ                 the AVX2 GEMM (one thread's, avx2_gemm.c)
 *   per row: * scale, + mask (F32) or -inf (BOOL false), causal keys j > i
 *            out; softmax with the row max subtracted (avx2_rows.h's exp);
 *            a row with every score -inf gets weights 0 (ref's rule)
 *   out_block = weights @ v                the same GEMM, into out's strides
 * With is_causal a block (of at most AT_CAUSAL_ROWS queries) only computes
 * the keys its last query can see (the rest are 0): about half the work. Any strides (stride 0 for broadcast batch dims); the
 * mask BOOL or F32, any strides. A task's arithmetic does not depend on the
 * thread running it, so results are bitwise the same at any thread count.
 * Differences from ref: F32 sums (the GEMM's) instead of double, ~1e-6
 * relative to the largest output; and with is_causal, an inf or NaN in a
 * row j of v reaches only the queries whose block sees key j (ref's
 * 0 * inf makes every query's output NaN; PyTorch's fused kernels skip
 * the masked keys as this one does, within a block of 64 queries).
 */
#include "avx2_rows.h"

#include <string.h>

#define AT_BLOCK_FLOATS 65536   /* a block's scores: 256 KiB */
#define AT_MAX_ROWS 256
#define AT_CAUSAL_ROWS 64       /* causal: smaller blocks skip more of the masked keys */

static bool at_ok(const nb_tensor *t, int nd) { return t && t->dtype == NB_DTYPE_F32 && t->ndim == nd; }

typedef struct at_call {
    const nb_tensor *q, *k, *v, *mask;
    nb_tensor *out;
    int nd, nbd;
    int64_t L, E, S, Ev, lb, nblk;
    float scale;
    bool causal, weights_only;
    nb__gemm_block_fn gemm;   /* one thread's GEMM: nb__avx2_gemm_block, or its AVX-512 twin */
} at_call;

/* Scores row r (query qi, keys [0, sx)) -> weights, in place; keys at or
 * past lim (causal) are 0. mrow: the mask row (F32 values) or NULL. */
static void at_softmax_row(float *s, int64_t sx, int64_t lim, const float *mrow, float scale) {
    __m256 sv = V1(scale);
    if (mrow) {
        ROWS8(lim, j, { ST(s + j, _mm256_add_ps(_mm256_mul_ps(LD(s + j), sv), LD(mrow + j))); });
    } else {
        ROWS8(lim, j, { ST(s + j, _mm256_mul_ps(LD(s + j), sv)); });
    }
    float m = row_max(s, lim);
    if (m == -INFINITY) {   /* every score masked: weights 0, not NaN */
        memset(s, 0, (size_t)sx * sizeof(float));
        return;
    }
    __m256 inv = V1((float)(1.0 / row_sumexp(s, lim, m, s, NULL)));
    ROWS8(lim, j, { ST(s + j, _mm256_mul_ps(LD(s + j), inv)); });
    if (lim < sx) memset(s + lim, 0, (size_t)(sx - lim) * sizeof(float));
}

/* Row qi of batch b's mask as F32 values (BOOL: 0 or -inf) for keys [0, n):
 * a pointer into the mask when it is F32 with unit stride, else buf. */
static const float *at_mask_row(const at_call *c, int64_t b, int64_t qi, int64_t n, float *buf) {
    const nb_tensor *m = c->mask;
    int64_t base = nb__batch_offset(m, c->nbd, b) + qi * m->stride[c->nd - 2], st = m->stride[c->nd - 1];
    if (m->dtype == NB_DTYPE_F32) {
        const float *p = (const float *)nb_data(m) + base;
        if (st == 1) return p;
        for (int64_t j = 0; j < n; j++) buf[j] = p[j * st];
    } else {
        const bool *p = (const bool *)nb_data(m) + base;
        for (int64_t j = 0; j < n; j++) buf[j] = p[j * st] ? 0.0f : -INFINITY;
    }
    return buf;
}

/* One task: batch b, queries [i0, i0 + rows). sc: rows x S + S floats. */
static int at_task(const at_call *c, int64_t b, int64_t i0, int64_t rows, float *sc) {
    const int nd = c->nd;
    const nb_tensor *q = c->q, *k = c->k;
    int64_t sx = c->causal ? (i0 + rows < c->S ? i0 + rows : c->S) : c->S;   /* keys the block can see */
    const float *qp = (const float *)nb_data(q) + nb__batch_offset(q, c->nbd, b) + i0 * q->stride[nd - 2];
    const float *kp = (const float *)nb_data(k) + nb__batch_offset(k, c->nbd, b);
    if (c->gemm(rows, sx, c->E, qp, q->stride[nd - 2], q->stride[nd - 1], kp, k->stride[nd - 1],
                            k->stride[nd - 2], sc, sx, 1))
        return NB_ENOMEM;
    float *mbuf = sc + rows * c->S;
    for (int64_t r = 0; r < rows; r++) {
        int64_t qi = i0 + r, lim = c->causal ? (qi + 1 < sx ? qi + 1 : sx) : sx;
        const float *mrow = c->mask ? at_mask_row(c, b, qi, lim, mbuf) : NULL;
        at_softmax_row(sc + r * sx, sx, lim, mrow, c->scale);
    }
    nb_tensor *o = c->out;
    float *op = (float *)nb_data(o) + nb__batch_offset(o, c->nbd, b) + i0 * o->stride[nd - 2];
    int64_t os0 = o->stride[nd - 2], os1 = o->stride[nd - 1];
    if (c->weights_only) {
        for (int64_t r = 0; r < rows; r++) {
            float *orow = op + r * os0;
            const float *srow = sc + r * sx;
            if (os1 == 1) {
                memcpy(orow, srow, (size_t)sx * sizeof(float));
                if (sx < c->S) memset(orow + sx, 0, (size_t)(c->S - sx) * sizeof(float));
            } else {
                for (int64_t j = 0; j < c->S; j++) orow[j * os1] = j < sx ? srow[j] : 0.0f;
            }
        }
        return 0;
    }
    const nb_tensor *v = c->v;
    const float *vp = (const float *)nb_data(v) + nb__batch_offset(v, c->nbd, b);
    return c->gemm(rows, c->Ev, sx, sc, sx, 1, vp, v->stride[nd - 2], v->stride[nd - 1], op, os0, os1);
}

static int at_run(const nb_kernel_args *a, bool weights_only, nb__gemm_block_fn gemm) {
    at_call c = {.q = a->in[0], .k = a->in[1], .v = weights_only ? NULL : a->in[2],
                 .mask = a->in[weights_only ? 2 : 3], .out = a->out, .weights_only = weights_only, .gemm = gemm};
    int nd = c.nd = c.q ? c.q->ndim : 0;
    if (nd < 2 || !at_ok(c.q, nd) || !at_ok(c.k, nd) || !at_ok(c.out, nd) || (!weights_only && !at_ok(c.v, nd)))
        return NB_KERNEL_DECLINE;
    if (c.mask && (c.mask->ndim != nd || (c.mask->dtype != NB_DTYPE_F32 && c.mask->dtype != NB_DTYPE_BOOL)))
        return NB_KERNEL_DECLINE;
    c.nbd = nd - 2;
    c.L = c.q->shape[nd - 2], c.E = c.q->shape[nd - 1], c.S = c.k->shape[nd - 2];
    c.Ev = weights_only ? 0 : c.v->shape[nd - 1];
    int64_t B = 1;
    for (int d = 0; d < c.nbd; d++) B *= c.q->shape[d];
    if (B == 0 || c.L == 0 || c.S == 0 || c.E == 0 || (!weights_only && c.Ev == 0))
        return NB_KERNEL_DECLINE;   /* degenerate: ref's loops handle them */
    c.scale = (float)a->scalar[0];
    c.causal = a->scalar[1] != 0;
    c.lb = AT_BLOCK_FLOATS / c.S;
    if (c.lb > (c.causal ? AT_CAUSAL_ROWS : AT_MAX_ROWS)) c.lb = c.causal ? AT_CAUSAL_ROWS : AT_MAX_ROWS;
    if (c.lb < 1) c.lb = 1;
    if (c.lb > c.L) c.lb = c.L;
    c.nblk = (c.L + c.lb - 1) / c.lb;
    int64_t tasks = B * c.nblk;
    int nt = nb__par_threads(B * c.L * c.S * (c.E + c.Ev) / 2, 1 << 19);
    if (nt > tasks) nt = (int)tasks;
    int fail = 0;
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1) reduction(max : fail)
    {
        size_t sb = (size_t)((c.lb + 1) * c.S) * sizeof(float);
        float *sc = nb__alloc(sb);
        if (!sc) fail = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tasks; t++) {
            if (!sc) continue;
            int64_t b = t / c.nblk, i0 = (t % c.nblk) * c.lb;
            if (at_task(&c, b, i0, c.L - i0 < c.lb ? c.L - i0 : c.lb, sc)) fail = 1;
        }
        if (sc) nb__free(sc, sb);
    }
    return fail ? nb__err(NB_ENOMEM, "scaled_dot_product_attention: out of memory for scratch") : 0;
}

static int avx2_sdpa(const nb_kernel_args *a) { return at_run(a, false, nb__avx2_gemm_block); }
static int avx2_sdpa_weights(const nb_kernel_args *a) { return at_run(a, true, nb__avx2_gemm_block); }
static int avx512_sdpa(const nb_kernel_args *a) { return at_run(a, false, nb__avx512_gemm_block); }
static int avx512_sdpa_weights(const nb_kernel_args *a) { return at_run(a, true, nb__avx512_gemm_block); }

void nb__avx2_attention_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SDPA, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_sdpa", 10, avx2_sdpa},
        {NB_OP_SDPA_WEIGHTS, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_sdpa_weights", 10, avx2_sdpa_weights},
    };
    NB__REGISTER_ALL(ks);
}

/* The same kernels with their GEMMs on the AVX-512 GEMM (bitwise the AVX2
 * GEMM's results, so these give the AVX2 kernels' bits): only the GEMM
 * calls differ; the softmax stays 8-lane. Registered (by the registry's
 * AVX-512 block) above the AVX2 ones, NB_ISA capping them. Measured:
 * benchmarks/kernels sdpa (see the register call's commit). */
void nb__avx2_attention_register512(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SDPA, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_sdpa", 20, avx512_sdpa},
        {NB_OP_SDPA_WEIGHTS, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_sdpa_weights", 20, avx512_sdpa_weights},
    };
    NB__REGISTER_ALL(ks);
}
