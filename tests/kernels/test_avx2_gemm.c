/* test_avx2_gemm.c — the AVX2 GEMM kernels (src/kernels/x86/avx2/avx2_gemm.c,
 * MATMUL and LINEAR, F32) against the ref kernels.
 *
 * Each case runs nb_matmul / nb_linear twice on the same inputs: ISA capped
 * to ref, then to avx2 (asserting that avx2_gemm served the call).
 * Error bound asserted, per element of C:
 *     |avx2 - ref| <= 2 (K + 2) eps_f32 * sum_k |a_ik| |b_kj|  (+ eps |bias_j|)
 * (both results are float sums of K products in different orders; each is
 * within (K + 1) eps of the exact sum of products, relative to the sum of
 * their magnitudes). Shapes: M, N, K over {1, 7, 15, 16, 17, 33, 100, 257}
 * combinations, K = 0, A and/or B transposed (strided views), batched with
 * a broadcast batch dim, LINEAR with and without bias and with 3-D input.
 * Thread-count independence: 1 thread vs 2, 3, 4 must agree bitwise, with
 * the dynamic N split (ranges taken over, forced too), the static one, and
 * A packed or read in place.
 * The kernel's declines (shapes oneDNN serves faster) are switched off for
 * these cases; one test checks the decline rule itself.
 * Skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nb_config.h"
#include "testutil.h"

/* avx2_gemm.c: 1 turns its "oneDNN is faster here" declines off */
extern int nb__avx2_gemm_serve_all;
/* (kernels.h) nb__gemm_dyn, nb__gemm_adirect: the dynamic N split and in-place A switches */

static void ag_teardown(void) {
    nb__avx2_gemm_serve_all = 0;
    nb__gemm_dyn = 1, nb__gemm_adirect = 1;
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}

static void ag_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    if (!nb_cpu()->avx2_fma) cr_skip("no AVX2+FMA on this CPU");
    nb__avx2_gemm_serve_all = 1;
}

TestSuite(avx2_gemm, .init = ag_setup, .fini = ag_teardown);

static uint64_t ag_rng = 0x9E3779B97F4A7C15ull;
static float ag_uniform(void) {
    return (float)(tu_u01(&ag_rng) * 2 - 1);
}

/* A (rows x cols) matrix with values v (row-major, logical order), stored
 * either row-major or transposed in memory (then viewed back by
 * nb_transpose). Batch: a leading dim of `batch` copies (0: none). */
static nb_tensor *ag_matrix(const float *v, int64_t batch, int64_t rows, int64_t cols, bool transposed) {
    int64_t nb = batch > 0 ? batch : 1, n = rows * cols;
    float *buf = malloc((size_t)(nb * n + 1) * sizeof(float));
    cr_assert_not_null(buf);
    for (int64_t t = 0; t < nb; t++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                buf[t * n + (transposed ? j * rows + i : i * cols + j)] = v[t * n + i * cols + j];
    nb_tensor *m;
    if (batch > 0)
        m = nb_from_data(transposed ? NB_SHAPE(batch, cols, rows) : NB_SHAPE(batch, rows, cols), NB_F32, buf);
    else
        m = nb_from_data(transposed ? NB_SHAPE(cols, rows) : NB_SHAPE(rows, cols), NB_F32, buf);
    free(buf);
    cr_assert_not_null(m, "%s", nb_last_error());
    if (transposed) m = nb_transpose(m, -1, -2);
    cr_assert_not_null(m, "%s", nb_last_error());
    return m;
}

static void ag_isa(const char *isa, int threads) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .num_threads = threads, .abort_on_error = -1}), 0, "%s",
                 nb_last_error());
}

static void ag_served(const char *want) {
    const char *k = nb__last_kernel();
    cr_assert(k && !strncmp(k, want, strlen(want)), "served by %s, expected %s", k ? k : "?", want);
}

/* Checks got against ref element by element with the bound above; a and b
 * are the logical values ((batch) x M x K, (batch or 1) x K x N). */
static void ag_check(const nb_tensor *got, const nb_tensor *ref, const float *a, const float *b, const float *bias,
                     int64_t nb, int64_t M, int64_t N, int64_t K, bool b_bcast, const char *what) {
    nb_tensor *g = nb_contiguous((nb_tensor *)got), *r = nb_contiguous((nb_tensor *)ref);
    cr_assert(g && r);
    const float *gv = nb_data(g), *rv = nb_data(r);
    const double eps = 0x1.0p-24;
    for (int64_t t = 0; t < nb; t++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += fabs((double)a[(t * M + i) * K + k]) * fabs((double)b[((b_bcast ? 0 : t) * K + k) * N + j]);
                double tol = 2.0 * (double)(K + 2) * eps * s + (bias ? eps * fabs((double)bias[j]) : 0.0);
                int64_t o = (t * M + i) * N + j;
                cr_assert(fabs((double)gv[o] - (double)rv[o]) <= tol,
                          "%s: M=%lld N=%lld K=%lld batch %lld C[%lld][%lld]: avx2 %.9g vs ref %.9g (tol %.3g)", what,
                          (long long)M, (long long)N, (long long)K, (long long)t, (long long)i, (long long)j,
                          (double)gv[o], (double)rv[o], tol);
            }
}

/* One MATMUL case: batch (0: 2-D; else A batched, B broadcast over the batch
 * when b_bcast), ta/tb: operand stored transposed. */
static void ag_matmul_case(int64_t batch, int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool b_bcast) {
    nb_scope_begin();
    int64_t nb = batch > 0 ? batch : 1, nbb = b_bcast ? 1 : nb;
    float *a = malloc((size_t)(nb * M * K + 1) * sizeof(float)), *b = malloc((size_t)(nbb * K * N + 1) * sizeof(float));
    cr_assert(a && b);
    for (int64_t i = 0; i < nb * M * K; i++) a[i] = ag_uniform();
    for (int64_t i = 0; i < nbb * K * N; i++) b[i] = ag_uniform();
    nb_tensor *A = ag_matrix(a, batch, M, K, ta);
    nb_tensor *B = ag_matrix(b, batch > 0 && !b_bcast ? batch : 0, K, N, tb);
    ag_isa("ref", 0);
    nb_tensor *r = nb_matmul(A, B);
    cr_assert_not_null(r, "%s", nb_last_error());
    ag_isa("avx2", 0);
    nb_tensor *c = nb_matmul(A, B);
    cr_assert_not_null(c, "%s", nb_last_error());
    ag_served("avx2_gemm");
    ag_check(c, r, a, b, NULL, nb, M, N, K, b_bcast, ta ? (tb ? "AtBt" : "AtB") : (tb ? "ABt" : "AB"));
    free(a);
    free(b);
    nb_scope_end();
}

static const int64_t ag_sizes[] = {1, 7, 15, 16, 17, 33, 100, 257};
#define AG_N (int)(sizeof ag_sizes / sizeof ag_sizes[0])

Test(avx2_gemm, matmul_shapes) {
    for (int i = 0; i < AG_N; i++)
        for (int j = 0; j < AG_N; j++)
            for (int k = 0; k < AG_N; k += (i + j) % 2 ? 2 : 1)
                ag_matmul_case(0, ag_sizes[i], ag_sizes[j], ag_sizes[k], false, false, false);
}

Test(avx2_gemm, matmul_transposed) {
    static const int64_t sz[][3] = {{1, 1, 1}, {7, 17, 33}, {33, 16, 15}, {100, 257, 17}, {257, 33, 100},
                                    {16, 100, 300}, {150, 40, 520}};
    for (size_t s = 0; s < sizeof sz / sizeof sz[0]; s++)
        for (int t = 1; t < 4; t++) ag_matmul_case(0, sz[s][0], sz[s][1], sz[s][2], t & 1, t & 2, false);
}

Test(avx2_gemm, matmul_large_blocks) {
    /* more than one MC block, KC block and (with 2 threads) N split */
    ag_matmul_case(0, 300, 530, 600, false, false, false);
    ag_matmul_case(0, 290, 70, 513, true, false, false);
    ag_matmul_case(0, 64, 3100, 20, false, true, false);
    /* row-major B packed row by row over more than one NC block (M > MC: not read in place) */
    ag_matmul_case(0, 150, 3100, 9, false, false, false);
    /* row-major A packed by 8x8 transposes: K blocks of 175 = 21 x 8 + 7 */
    ag_matmul_case(0, 130, 40, 523, false, false, false);
    /* one M block, row-major B whose row stride is a multiple of 512 floats:
       packed row by row when M > 18 (1024, 512 + 1 panel tail), read in place
       at M <= 18 */
    ag_matmul_case(0, 24, 1024, 70, false, false, false);
    ag_matmul_case(0, 100, 512, 300, false, false, false);
    ag_matmul_case(0, 18, 1024, 33, false, false, false);
    ag_matmul_case(0, 19, 1536, 260, false, false, false);
}

Test(avx2_gemm, matmul_batched) {
    ag_matmul_case(3, 17, 33, 15, false, false, false);
    ag_matmul_case(4, 7, 16, 100, false, false, true);   /* B broadcast over the batch */
    ag_matmul_case(2, 33, 17, 7, true, true, true);
    ag_matmul_case(40, 64, 64, 64, false, true, false);   /* many small products: split over the batches */
}

/* Many small batched products (each below the threading grain, together
 * above it: the batches go to different threads) give the same bits at 1, 2
 * and 3 threads, B transposed as attention's q @ kᵀ. */
Test(avx2_gemm, batched_small_products_thread_count_independent) {
    nb_scope_begin();
    nb_tensor *A = nb_randn(NB_SHAPE(6, 8, 64, 40), NB_F32, 11);
    nb_tensor *B = nb_transpose(nb_randn(NB_SHAPE(6, 8, 72, 40), NB_F32, 12), -1, -2);
    nb_tensor *c[3];
    for (int t = 0; t < 3; t++) {
        ag_isa("avx2", t + 1);
        c[t] = nb_contiguous(nb_matmul(A, B));
        cr_assert_not_null(c[t], "%s", nb_last_error());
        ag_served("avx2_gemm");
    }
    for (int t = 1; t < 3; t++)
        cr_assert_eq(memcmp(nb_data(c[0]), nb_data(c[t]), (size_t)nb_numel(c[0]) * sizeof(float)), 0,
                     "batched products differ at %d threads", t + 1);
    nb_scope_end();
}

/* A batched product whose B is one matrix for every batch (x (B, T, K) @
 * w (K, N), as a linear layer's backward) runs as one (B T, K) @ (K, N)
 * GEMM: the same bits as each batch's 2-D product, against ref within the
 * bound; a batched A that does not continue its rows (a transposed batch)
 * is not folded and still right. */
Test(avx2_gemm, batched_broadcast_b_folds_into_rows) {
    nb_scope_begin();
    ag_isa("avx2", 0);
    nb_tensor *A = nb_randn(NB_SHAPE(2, 3, 37, 70), NB_F32, 21), *W = nb_randn(NB_SHAPE(70, 45), NB_F32, 22);
    nb_tensor *c = nb_contiguous(nb_matmul(A, W));
    cr_assert_not_null(c, "%s", nb_last_error());
    ag_served("avx2_gemm");
    for (int64_t b = 0; b < 6; b++) {
        nb_tensor *ab = nb_contiguous(nb_squeeze(nb_narrow(nb_reshape(A, NB_SHAPE(6, 37, 70)), 0, b, 1), 0));
        nb_tensor *cb = nb_contiguous(nb_matmul(ab, W));
        cr_assert_eq(memcmp((const float *)nb_data(c) + b * 37 * 45, nb_data(cb), 37 * 45 * sizeof(float)), 0,
                     "batch %lld: folded product differs from its 2-D product", (long long)b);
    }
    ag_matmul_case(5, 40, 33, 70, false, false, true);   /* folded */
    ag_matmul_case(5, 40, 33, 70, true, false, true);    /* A transposed per batch: not folded */
    nb_scope_end();
}

Test(avx2_gemm, matmul_k0) {
    nb_scope_begin();
    nb_tensor *A = nb_zeros(NB_SHAPE(5, 0), NB_F32), *B = nb_zeros(NB_SHAPE(0, 19), NB_F32);
    ag_isa("avx2", 0);
    nb_tensor *c = nb_matmul(A, B);
    cr_assert_not_null(c, "%s", nb_last_error());
    nb_tensor *z = nb_zeros(NB_SHAPE(5, 19), NB_F32);
    cr_assert_eq(tu_max_abs_diff(c, z), 0.0);
    nb_scope_end();
}

/* LINEAR: x (lead..., K), w (N, K), bias or not; lead = {R} or {2, R/2}. */
static void ag_linear_case(int64_t R, int64_t N, int64_t K, bool with_bias, bool x3d) {
    nb_scope_begin();
    float *x = malloc((size_t)(R * K + 1) * sizeof(float)), *w = malloc((size_t)(N * K + 1) * sizeof(float));
    float *bias = malloc((size_t)(N + 1) * sizeof(float)), *wt = malloc((size_t)(N * K + 1) * sizeof(float));
    cr_assert(x && w && bias && wt);
    for (int64_t i = 0; i < R * K; i++) x[i] = ag_uniform();
    for (int64_t i = 0; i < N * K; i++) w[i] = ag_uniform();
    for (int64_t i = 0; i < N; i++) bias[i] = ag_uniform();
    for (int64_t n = 0; n < N; n++)   /* w^T, (K, N), for the error bound */
        for (int64_t k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
    nb_tensor *X = x3d ? nb_from_data(NB_SHAPE(2, R / 2, K), NB_F32, x) : nb_from_data(NB_SHAPE(R, K), NB_F32, x);
    nb_tensor *W = nb_from_data(NB_SHAPE(N, K), NB_F32, w);
    nb_tensor *Bi = with_bias ? nb_from_data(NB_SHAPE(N), NB_F32, bias) : NULL;
    cr_assert(X && W && (!with_bias || Bi));
    ag_isa("ref", 0);
    nb_tensor *r = nb_linear(X, W, Bi);
    cr_assert_not_null(r, "%s", nb_last_error());
    ag_isa("avx2", 0);
    nb_tensor *c = nb_linear(X, W, Bi);
    cr_assert_not_null(c, "%s", nb_last_error());
    ag_served("avx2_gemm");
    ag_check(c, r, x, wt, with_bias ? bias : NULL, 1, R, N, K, false, with_bias ? "linear+bias" : "linear");
    free(x);
    free(w);
    free(bias);
    free(wt);
    nb_scope_end();
}

Test(avx2_gemm, linear) {
    static const int64_t sz[][3] = {{1, 1, 1}, {2, 7, 17}, {16, 33, 15}, {100, 10, 257}, {128, 257, 100},
                                    {34, 16, 7}, {128, 512, 300}};
    for (size_t s = 0; s < sizeof sz / sizeof sz[0]; s++)
        for (int v = 0; v < 3; v++) ag_linear_case(sz[s][0], sz[s][1], sz[s][2], v != 1, v == 2 && sz[s][0] % 2 == 0);
}

/* 1 vs 2 threads: bitwise equal results (the K order never depends on the
 * split). Shapes big enough for nb__par_threads to use 2 threads. */
static void ag_threads_case(int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool lin) {
    nb_scope_begin();
    float *a = malloc((size_t)(M * K) * sizeof(float)), *b = malloc((size_t)(K * N) * sizeof(float));
    float *bias = malloc((size_t)N * sizeof(float));
    cr_assert(a && b && bias);
    for (int64_t i = 0; i < M * K; i++) a[i] = ag_uniform();
    for (int64_t i = 0; i < K * N; i++) b[i] = ag_uniform();
    for (int64_t i = 0; i < N; i++) bias[i] = ag_uniform();
    nb_tensor *A = ag_matrix(a, 0, M, K, ta), *B = lin ? ag_matrix(b, 0, N, K, false) : ag_matrix(b, 0, K, N, tb);
    nb_tensor *Bi = lin ? nb_from_data(NB_SHAPE(N), NB_F32, bias) : NULL;
    /* 1 thread; 2, 3, 4 threads sharing N's panels out dynamically (more threads than
       cores: ranges get taken over); 2 threads with the static split; 3 threads where only
       thread 0 takes panels (every other range taken over); 2 threads packing A instead
       of reading its rows in place */
    static const struct { int threads, dyn, adirect; } cfg[] = {{1, 1, 1}, {2, 1, 1}, {3, 1, 1}, {4, 1, 1},
                                                                {2, 0, 1}, {3, 2, 1}, {2, 1, 0}};
    nb_tensor *c[7];
    for (int t = 0; t < 7; t++) {
        ag_isa("avx2", cfg[t].threads);
        nb__gemm_dyn = cfg[t].dyn, nb__gemm_adirect = cfg[t].adirect;
        c[t] = lin ? nb_linear(A, B, Bi) : nb_matmul(A, B);
        nb__gemm_dyn = 1, nb__gemm_adirect = 1;
        cr_assert_not_null(c[t], "%s", nb_last_error());
        ag_served("avx2_gemm");
        if (t == 0) continue;
        cr_assert_eq(memcmp(nb_data(c[0]), nb_data(c[t]), (size_t)(M * N) * sizeof(float)), 0,
                     "M=%lld N=%lld K=%lld: 1 thread and %d (dynamic %d, A in place %d) differ", (long long)M,
                     (long long)N, (long long)K, cfg[t].threads, cfg[t].dyn, cfg[t].adirect);
    }
    free(a);
    free(b);
    free(bias);
    nb_scope_end();
}

Test(avx2_gemm, thread_count_independent) {
    ag_threads_case(128, 512, 784, false, false, false);
    ag_threads_case(512, 784, 128, true, false, false);
    ag_threads_case(128, 10, 3000, false, true, false);   /* split over M */
    ag_threads_case(130, 257, 600, false, false, true);   /* LINEAR with bias */
    ag_threads_case(127, 300, 301, true, true, false);
    /* row-major A read in place with a cut last panel (131 = 21 x 6 + 5), two MC blocks,
       a cut last column panel (500 = 31 x 16 + 4), several K blocks */
    ag_threads_case(131, 500, 600, false, false, false);
    ag_threads_case(300, 100, 70, false, true, true);
}

/* The 1-thread results above are checked against ref (matmul_shapes and the
 * others run at the default thread count); this checks a dynamic split's
 * result, where every range but thread 0's is taken over, against ref. */
Test(avx2_gemm, dynamic_split_taken_over_ranges_match_ref) {
    nb__gemm_dyn = 2;
    ag_matmul_case(0, 131, 500, 600, false, false, false);
    ag_matmul_case(0, 64, 333, 257, true, false, false);
    nb__gemm_dyn = 1;
}

/* With oneDNN built, row-major A with K > 16, M <= 64 and N < K / 2 (N < K / 16
 * for LINEAR's K-major w^T) goes to oneDNN;
 * A stored transposed, K <= 16, M > 64 or a shallower K stays here. */
Test(avx2_gemm, declines_to_onednn) {
    nb__avx2_gemm_serve_all = 0;
    nb_scope_begin();
    ag_isa("avx2", 0);
    nb_tensor *a = nb_randn(NB_SHAPE(64, 40), NB_F32, 1), *b = nb_randn(NB_SHAPE(40, 19), NB_F32, 2);
    nb_tensor *at = nb_transpose(nb_randn(NB_SHAPE(40, 64), NB_F32, 3), 0, 1);
    nb_tensor *a8 = nb_randn(NB_SHAPE(64, 8), NB_F32, 4), *b8 = nb_randn(NB_SHAPE(8, 24), NB_F32, 5);
    nb_tensor *bw = nb_randn(NB_SHAPE(40, 20), NB_F32, 6);   /* N = K / 2 */
    /* LINEAR's w^T (K-major B): oneDNN only for N < K / 16 */
    nb_tensor *xl = nb_randn(NB_SHAPE(64, 400), NB_F32, 8), *wl = nb_randn(NB_SHAPE(24, 400), NB_F32, 9);
    nb_tensor *wd = nb_randn(NB_SHAPE(26, 400), NB_F32, 10);   /* N = 26 > 400 / 16 */
    cr_assert(xl && wl && wd);
    cr_assert_not_null(nb_linear(xl, wd, NULL), "%s", nb_last_error());
    ag_served("avx2_gemm");
    cr_assert_not_null(nb_linear(xl, wl, NULL), "%s", nb_last_error());
#if NB_HAVE_ONEDNN
    ag_served("onednn");
#else
    ag_served("avx2_gemm");
#endif
    cr_assert(a && b && at && a8 && b8 && bw);
    cr_assert_not_null(nb_matmul(at, b), "%s", nb_last_error());
    ag_served("avx2_gemm");
    cr_assert_not_null(nb_matmul(a, bw), "%s", nb_last_error());
    ag_served("avx2_gemm");
    cr_assert_not_null(nb_matmul(a8, b8), "%s", nb_last_error());
    ag_served("avx2_gemm");
    cr_assert_not_null(nb_matmul(a, b), "%s", nb_last_error());
#if NB_HAVE_ONEDNN
    ag_served("onednn");
#else
    ag_served("avx2_gemm");
#endif
    nb_tensor *a65 = nb_randn(NB_SHAPE(65, 40), NB_F32, 7);   /* M > 64: ours */
    cr_assert_not_null(nb_matmul(a65, b), "%s", nb_last_error());
    ag_served("avx2_gemm");
    nb_scope_end();
}
