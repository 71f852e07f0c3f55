/* gemm_driver.h — the ISA-neutral half of the GEMM kernels
 * (x86/avx2/avx2_gemm.c, x86/avx512/avx512_gemm.c), included by each in
 * its own library (so compiled with that library's -m flags).
 *
 * The includer defines MR and NR (its microkernel's tile), GEMM_NAME (the
 * kernel's name prefix in errors: "avx2", "avx512"), optionally
 * GEMM_DYNAMIC (then it gives gemm_dynamic: C's columns shared out
 * dynamically among the threads), and after this header:
 *   static int gemm_serial(const gemm_op *g);    one thread's GEMM
 *   static bool gemm_declines(const gemm_op *g); calls it passes on
 * This header gives gemm_op, the thread split (gemm_run), the decline rule
 * both kernels share (gemm_onednn_takes), and the MATMUL and LINEAR entry
 * points (gemm_matmul, gemm_linear) that the includer registers.
 *
 * Threads: C is cut into nt pieces along N (multiples of NR columns) or,
 * when N is narrow, along M (multiples of MR rows), unless the includer's
 * gemm_dynamic shares N's panels out itself; from 4 threads on, into a
 * grid of blocks when that packs less (gemm_grid); K is never split, so
 * every element of C sees the same operations in the same order whatever
 * the thread count.
 */
#ifndef NB_X86_GEMM_DRIVER_H
#define NB_X86_GEMM_DRIVER_H

#include "kernels/kernels.h"
#include "nb_config.h"

#include <math.h>
#include <stdlib.h>

typedef struct gemm_op {
    int64_t M, N, K;                        /* C (M, N) = A (M, K) @ B (K, N) */
    const float *a, *b;                     /* A[0][0], B[0][0] */
    float *c;                               /* C[0][0] */
    int64_t as0, as1, bs0, bs1, cs0, cs1;   /* strides in elements (row, column) */
    const float *bias;                      /* contiguous, N (+ NR padding) floats, or NULL */
} gemm_op;

static int gemm_serial(const gemm_op *g);
static bool gemm_declines(const gemm_op *g);
#ifdef GEMM_DYNAMIC
static int gemm_dynamic(const gemm_op *g, int nt, int64_t ntile);   /* the includer's dynamic N split, or -1 */
#endif

static inline bool gemm_unit_stride(int64_t s0, int64_t s1) { return s0 == 1 || s1 == 1; }

/* True when oneDNN (registered below both GEMMs) should serve g: the
 * measured rule of avx2_gemm.c's table (A not stored column-major, K > 16,
 * M <= 64, and N < K / 2, or N < K / 16 when B is stored K-major as
 * LINEAR's w^T), and on an AVX-512 CPU (avx512) every call whose operands are
 * each row- or column-major but for the large ones (K and N >= 1024, below)
 * (BLAS layouts, which oneDNN's jit GEMM takes;
 * other strides could leave it only its reference code, and a call passed
 * on never comes back). Never inside a backward (nb__thread_invariant:
 * oneDNN declines there), never with a negative stride (oneDNN would not
 * pass it on to ref). hook: the test/benchmark switch (1 serve every call,
 * -1 pass every call oneDNN takes). Only with oneDNN built. */
static inline bool gemm_onednn_takes(const gemm_op *g, int hook, bool avx512) {
#if NB_HAVE_ONEDNN
    if (hook > 0 || nb__thread_invariant) return false;
    if (g->as0 < 0 || g->as1 < 0 || g->bs0 < 0 || g->bs1 < 0 || g->cs0 < 0 || g->cs1 < 0) return false;
    if (hook < 0) return true;
    /* AVX-512: oneDNN's jit GEMM was 1.05-1.3x ours wherever K or N is at
     * most 512 (64..2048 rows), and ours 1.05-1.7x it where both are 1024 or
     * more (1024^3 1.69, 2048^3 1.24, 512x1024x1024 1.18; 1 thread, call-by-call
     * A/B on an AVX-512 Xeon) */
    if (avx512 && gemm_unit_stride(g->as0, g->as1) && gemm_unit_stride(g->bs0, g->bs1) && g->cs1 == 1 &&
        !(g->K >= 1024 && g->N >= 1024))
        return true;
    bool a_colmajor = g->as0 == 1 && g->as1 != 1 && g->M > 1;
    /* B with unit stride along K (LINEAR's w^T): oneDNN only for a deep K */
    bool b_kmajor = g->bs0 == 1 && g->bs1 != 1 && g->N > 1;
    return !a_colmajor && g->K > 16 && g->M <= 64 && (b_kmajor ? 16 * g->N < g->K : 2 * g->N < g->K);
#else
    (void)g, (void)hook, (void)avx512;
    return false;
#endif
}

/* The grid for nt threads (from 4): pm x pn blocks of C, each thread
 * packing its block's rows of A and columns of B, so A is packed pn times
 * and B pm times in all: pm N + pn M (times K) floats, against nt N + M for
 * the cut along M (every thread packs all of B) and N + nt M along N. On a
 * 16-core Xeon VM the 1024^3 product, cut along M, ran at 0.71 of oneDNN's
 * matmul at 16 threads, with B (4 MiB) packed 16 times. The grid is taken
 * when it packs at most 0.9 of the better cut, with at least 2 whole tiles
 * a block each way; else *pm = 0. Measured there (ours / oneDNN's matmul,
 * the two alternating call by call in one process; two runs each, the grid
 * off -> on): 1024^3 at 16 threads 0.79, 0.74 -> 0.94, 0.95; 2048^3 at 16
 * 0.90, 0.89 -> 0.98, 0.94; 1024^3 at 8 0.84, 0.84 -> 0.96, 0.96; 2048^3 at
 * 8 0.97, 0.98 -> 0.95, 0.94; 256^3 at 16 0.89, 0.90 -> 0.87, 0.93.
 * nb__gemm_grid = 0 (NB_GEMM_GRID=0) turns it off. */
static void gemm_grid(const gemm_op *g, int nt, int64_t mtile, int64_t ntile, int *pm, int *pn) {
    *pm = *pn = 0;
    if (nt < 4 || !nb__gemm_grid) return;
    double best = 0.9 * fmin((double)nt * g->N + g->M, g->N + (double)nt * g->M);   /* the better 1-D cut */
    for (int a = 2; a <= nt / 2; a++) {
        int b = nt / a;
        if (a * b != nt || mtile < 2 * a || ntile < 2 * b) continue;
        double cost = (double)a * g->N + (double)b * g->M;
        if (cost <= best) best = cost, *pm = a, *pn = b;
    }
}

/* The whole GEMM, C cut over threads in whole tiles (see the top): a
 * pm x pn grid of blocks, the 1-D cuts being nt x 1 (along M) and 1 x nt
 * (along N); block t covers tile rows [mtile bi / pm, mtile (bi + 1) / pm)
 * and tile columns likewise, bi = t / pn, bj = t % pn. */
static int gemm_run(const gemm_op *g) {
    int64_t flops = 2 * g->M * g->N * (g->K > 0 ? g->K : 1);
    int nt = nb__par_threads(flops / 4, 1 << 19);
    int64_t ntile = (g->N + NR - 1) / NR, mtile = (g->M + MR - 1) / MR;
    int pm, pn;
    gemm_grid(g, nt, mtile, ntile, &pm, &pn);
    if (pm) {
        __atomic_fetch_add(&nb__gemm_grid_calls, 1, __ATOMIC_RELAXED);
    } else {
        bool split_n = ntile >= mtile || ntile >= 4 * nt;
        int64_t units = split_n ? ntile : mtile;
        if (nt > units) nt = (int)units;
        if (nt <= 1) return gemm_serial(g);
#ifdef GEMM_DYNAMIC
        if (split_n) {
            int rd = gemm_dynamic(g, nt, ntile);
            if (rd != -1) return rd;
        }
#endif
        pm = split_n ? 1 : nt;
        pn = split_n ? nt : 1;
    }
    int rc = 0;
#pragma omp parallel for num_threads(nb__par_team(nt)) schedule(static) reduction(min : rc)
    for (int t = 0; t < nt; t++) {
        int64_t bi = t / pn, bj = t % pn;
        int64_t i0 = mtile * bi / pm * MR, i1 = mtile * (bi + 1) / pm * MR;
        int64_t j0 = ntile * bj / pn * NR, j1 = ntile * (bj + 1) / pn * NR;
        gemm_op s = *g;
        s.M = (i1 < g->M ? i1 : g->M) - i0;
        s.N = (j1 < g->N ? j1 : g->N) - j0;
        s.a += i0 * g->as0;
        s.b += j0 * g->bs1;
        s.c += i0 * g->cs0 + j0 * g->cs1;
        if (s.bias) s.bias += j0;
        int r = gemm_serial(&s);
        if (r < rc) rc = r;
    }
    return rc;
}

/* g pointed at batch bt (C order over the nbd batch dims of sizes cs;
 * operand strides ast, bst, cst, stride 0 where broadcast). */
static inline gemm_op gemm_batch(const gemm_op *g, int64_t bt, int nbd, const int64_t *cs, const int64_t *ast,
                                 const int64_t *bst, const int64_t *cst, const float *a0, const float *b0, float *c0) {
    gemm_op s = *g;
    int64_t ao = 0, bo = 0, co = 0;
    for (int d = nbd - 1; d >= 0; d--) {
        int64_t i = bt % cs[d];
        bt /= cs[d];
        ao += i * ast[d], bo += i * bst[d], co += i * cst[d];
    }
    s.a = a0 + ao, s.b = b0 + bo, s.c = c0 + co;
    return s;
}

/* True when the batched product is one GEMM of (batches x M) rows: B the
 * same matrix for every batch (stride 0 on each batch dim of size > 1: a
 * linear layer's weight in x (B, T, K) @ w (K, N) and in its backward), and
 * A's and C's batch dims continuing their row dim (batch stride = rows x row
 * stride, outward). PyTorch folds these the same way. One GEMM packs B once
 * instead of once a batch; each element of C sees the same operations (the
 * K blocking depends on K only), so the bits do not change. */
static bool gemm_fold(int nbd, const int64_t *cs, const int64_t *ast, const int64_t *bst, const int64_t *cst,
                      const gemm_op *g) {
    int64_t ea = g->M * g->as0, ec = g->M * g->cs0;
    for (int d = nbd - 1; d >= 0; d--) {
        if (cs[d] == 1) continue;
        if (bst[d] != 0 || ast[d] != ea || cst[d] != ec) return false;
        ea *= cs[d], ec *= cs[d];
    }
    return true;
}

/* MATMUL: C (batch..., M, N) = A (batch..., M, K) @ B (batch..., K, N), the
 * batch dims of A and B already broadcast to C's by their strides. */
static int gemm_matmul(const nb_kernel_args *args) {
    const nb_tensor *A = args->in[0], *B = args->in[1];
    nb_tensor *C = args->out;
    int nd = nb_ndim(C), nbd = nd - 2;
    if (nb_dtype_of(C) != NB_DTYPE_F32 || nb_dtype_of(A) != NB_DTYPE_F32 || nb_dtype_of(B) != NB_DTYPE_F32 || nd < 2)
        return NB_KERNEL_DECLINE;
    const int64_t *cs = nb_shape(C), *ast = nb_strides(A), *bst = nb_strides(B), *cst = nb_strides(C);
    gemm_op g = {.M = cs[nd - 2], .N = cs[nd - 1], .K = nb_shape(A)[nd - 1],
                 .as0 = ast[nd - 2], .as1 = ast[nd - 1], .bs0 = bst[nd - 2], .bs1 = bst[nd - 1],
                 .cs0 = cst[nd - 2], .cs1 = cst[nd - 1]};
    int64_t batches = 1;
    for (int d = 0; d < nbd; d++) batches *= cs[d];
    const float *a0 = nb_numel(C) ? nb_data(A) : NULL, *b0 = nb_numel(C) ? nb_data(B) : NULL;
    float *c0 = nb_numel(C) ? nb_data(C) : NULL;
    if (batches > 1 && gemm_fold(nbd, cs, ast, bst, cst, &g)) {   /* one (batches x M, K) @ (K, N) */
        g.M *= batches;
        g.a = a0, g.b = b0, g.c = c0;
        if (gemm_declines(&g)) return NB_KERNEL_DECLINE;
        if (nb_numel(C) == 0) return 0;
        int rc = gemm_run(&g);
        return rc ? nb__err(rc, GEMM_NAME "_gemm: out of memory for pack buffers") : 0;
    }
    if (gemm_declines(&g)) return NB_KERNEL_DECLINE;
    if (nb_numel(C) == 0) return 0;
    /* Many small products (attention's (batch x heads) of T x T x D): one
       thread would take them all when each alone is below the grain, so
       the batches are split over the threads instead, each product on one
       thread (gemm_serial: the same operations as gemm_run at any split,
       so the bits do not change). */
    int64_t flops = 2 * g.M * g.N * (g.K > 0 ? g.K : 1);
    int nt_all = nb__par_threads(flops / 4 * batches, 1 << 19), nt_one = nb__par_threads(flops / 4, 1 << 19);
    if (batches > 1 && nt_all > nt_one && batches >= nt_all) {
        int fail = 0;
#pragma omp parallel for num_threads(nb__par_team(nt_all)) schedule(static) reduction(max : fail)
        for (int64_t bt = 0; bt < batches; bt++) {
            gemm_op s = gemm_batch(&g, bt, nbd, cs, ast, bst, cst, a0, b0, c0);
            if (gemm_serial(&s)) fail = 1;
        }
        return fail ? nb__err(NB_ENOMEM, GEMM_NAME "_gemm: out of memory for pack buffers") : 0;
    }
    for (int64_t bt = 0; bt < batches; bt++) {
        gemm_op s = gemm_batch(&g, bt, nbd, cs, ast, bst, cst, a0, b0, c0);
        int rc = gemm_run(&s);
        if (rc) return nb__err(rc, GEMM_NAME "_gemm: out of memory for pack buffers");
    }
    return 0;
}

/* Merges all but the last dim of t into one row dim: *rows rows *rs apart;
 * -1 when they do not merge. */
static int gemm_merge_rows(const nb_tensor *t, int64_t *rows, int64_t *rs) {
    int nd = nb_ndim(t);
    const int64_t *sh = nb_shape(t), *st = nb_strides(t);
    *rows = 1;
    *rs = 0;
    int64_t inner = -1;   /* stride the next outer non-1 dim must have */
    for (int d = nd - 2; d >= 0; d--) {
        if (sh[d] == 1) continue;
        if (inner < 0) *rs = st[d];
        else if (st[d] != inner) return -1;
        inner = st[d] * sh[d];
        *rows *= sh[d];
    }
    return 0;
}

/* LINEAR: y (lead..., N) = x (lead..., K) @ w (N, K)^T (+ b (N)). */
static int gemm_linear(const nb_kernel_args *args) {
    const nb_tensor *x = args->in[0], *w = args->in[1], *b = args->nin > 2 ? args->in[2] : NULL;
    nb_tensor *y = args->out;
    if (nb_dtype_of(y) != NB_DTYPE_F32 || nb_dtype_of(x) != NB_DTYPE_F32 || nb_dtype_of(w) != NB_DTYPE_F32 ||
        (b && nb_dtype_of(b) != NB_DTYPE_F32) || nb_ndim(x) < 1 || nb_ndim(w) != 2)
        return NB_KERNEL_DECLINE;
    int64_t R, xr, R2, yr;
    if (gemm_merge_rows(x, &R, &xr) || gemm_merge_rows(y, &R2, &yr) || R != R2) return NB_KERNEL_DECLINE;
    if (nb_numel(y) == 0) return 0;
    int64_t K = nb_shape(x)[nb_ndim(x) - 1], N = nb_shape(y)[nb_ndim(y) - 1];
    const int64_t *wst = nb_strides(w);
    gemm_op g = {.M = R, .N = N, .K = K, .a = nb_data(x), .b = nb_data(w), .c = nb_data(y),
                 .as0 = xr, .as1 = nb_strides(x)[nb_ndim(x) - 1], .bs0 = wst[1], .bs1 = wst[0],
                 .cs0 = yr, .cs1 = nb_strides(y)[nb_ndim(y) - 1]};
    if (gemm_declines(&g)) return NB_KERNEL_DECLINE;
    float *bias = NULL;
    if (b) {   /* a dense copy, padded to whole NR-column panels */
        size_t n = (size_t)((N + NR - 1) / NR * NR);
        bias = calloc(n, sizeof(float));
        if (!bias) return nb__err(NB_ENOMEM, GEMM_NAME "_linear: out of memory");
        const float *bd = nb_data(b);
        int64_t bs = nb_strides(b)[0];
        for (int64_t j = 0; j < N; j++) bias[j] = bd[j * bs];
        g.bias = bias;
    }
    int rc = gemm_run(&g);
    free(bias);
    return rc ? nb__err(rc, GEMM_NAME "_linear: out of memory for pack buffers") : 0;
}

#endif
