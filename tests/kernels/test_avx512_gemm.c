/* test_avx512_gemm.c — the AVX-512 GEMM kernels (src/kernels/x86/avx512/
 * avx512_gemm.c, MATMUL and LINEAR, F32) against the ref kernels.
 *
 * Each case runs nb_matmul / nb_linear twice on the same inputs: ISA capped
 * to ref, then to avx512 (asserting that avx512_gemm served the call).
 * Error bound asserted, per element of C (as test_avx2_gemm.c):
 *     |avx512 - ref| <= 2 (K + 2) eps_f32 * sum_k |a_ik| |b_kj|  (+ eps |bias_j|)
 * Shapes: M, N, K from {1, 7, 15, 16, 17, 31, 32, 33, 100, 257} and the
 * edges of the 6 x 32 tile (M 5, 6, 7, 11, 12, 13; N 31, 32, 33, 63, 64, 65),
 * K = 0, A and/or B transposed, strided (every other column) views,
 * batched with a broadcast batch dim, LINEAR with and without bias and with
 * 3-D input, several MC / KC / NC blocks.
 * Thread-count independence: 1, 2, 3 and 16 threads bitwise equal.
 * Same bits as the AVX2 GEMM (same K blocks, same per-element operations).
 * Serving: the "oneDNN is faster here" declines are switched off
 * (nb__avx512_gemm_serve_all = 1) except in the last tests, which check
 * that a backward's matmuls come here and the decline rule outside one.
 * Skipped without AVX-512 F/BW/DQ/VL (this file's tests only run on such a
 * CPU).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nb_config.h"
#include "testutil.h"

/* avx512_gemm.c: 1 serves every F32 call, -1 passes every call oneDNN takes */
extern int nb__avx512_gemm_serve_all;

static void g5_teardown(void) {
    nb__avx512_gemm_serve_all = 0;
    nb__avx512_gemm_vm = 1;
    nb__avx2_gemm_serve_all = 0;
    nb__thread_invariant = 0;
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}

static void g5_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    const nb_cpu_features *c = nb_cpu();
    if (!(c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl)) cr_skip("no AVX-512 on this CPU");
    nb__avx512_gemm_serve_all = 1;
}

TestSuite(avx512_gemm, .init = g5_setup, .fini = g5_teardown);

static uint64_t g5_rng = 0x2545F4914F6CDD1Dull;
static float g5_uniform(void) {
    return (float)(tu_u01(&g5_rng) * 2 - 1);
}

/* Layouts of a matrix operand in memory. */
enum { G5_ROW, G5_TRANS, G5_STRIDED };

/* A (rows x cols) matrix with values v (row-major, logical order), stored
 * row-major, transposed (viewed back by nb_transpose) or in every other
 * column of a (rows x 2 cols) buffer (viewed by nb_slice with step 2).
 * Batch: a leading dim of `batch` copies (0: none). */
static nb_tensor *g5_matrix(const float *v, int64_t batch, int64_t rows, int64_t cols, int layout) {
    int64_t nb = batch > 0 ? batch : 1, n = rows * cols, w = layout == G5_STRIDED ? 2 : 1;
    float *buf = calloc((size_t)(nb * n * w + 1), sizeof(float));
    cr_assert_not_null(buf);
    for (int64_t t = 0; t < nb; t++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t at = layout == G5_TRANS ? j * rows + i : (i * cols + j) * w;
                buf[t * n * w + at] = v[t * n + i * cols + j];
            }
    int64_t r = layout == G5_TRANS ? cols : rows, c = (layout == G5_TRANS ? rows : cols) * w;
    nb_tensor *m = batch > 0 ? nb_from_data(NB_SHAPE(batch, r, c), NB_F32, buf) : nb_from_data(NB_SHAPE(r, c), NB_F32, buf);
    free(buf);
    cr_assert_not_null(m, "%s", nb_last_error());
    if (layout == G5_TRANS) m = nb_transpose(m, -1, -2);
    if (layout == G5_STRIDED) m = nb_slice(m, batch > 0 ? 2 : 1, 0, c, 2);
    cr_assert_not_null(m, "%s", nb_last_error());
    return m;
}

static void g5_isa(const char *isa, int threads) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .num_threads = threads, .abort_on_error = -1}), 0, "%s",
                 nb_last_error());
}

static bool g5_was(const char *prefix) {
    const char *k = nb__last_kernel();
    return k && !strncmp(k, prefix, strlen(prefix));
}

static void g5_served(const char *want) {
    const char *k = nb__last_kernel();
    cr_assert(g5_was(want), "served by %s, expected %s", k ? k : "?", want);
}

/* Checks got against ref element by element with the bound above; a and b
 * are the logical values ((batch) x M x K, (batch or 1) x K x N). */
static void g5_check(const nb_tensor *got, const nb_tensor *ref, const float *a, const float *b, const float *bias,
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
                          "%s: M=%lld N=%lld K=%lld batch %lld C[%lld][%lld]: avx512 %.9g vs ref %.9g (tol %.3g)",
                          what, (long long)M, (long long)N, (long long)K, (long long)t, (long long)i, (long long)j,
                          (double)gv[o], (double)rv[o], tol);
            }
}

/* One MATMUL case: batch (0: 2-D; else A batched, B broadcast over the batch
 * when b_bcast), la / lb: the operands' layouts. */
static void g5_matmul_case(int64_t batch, int64_t M, int64_t N, int64_t K, int la, int lb, bool b_bcast) {
    nb_scope_begin();
    int64_t nb = batch > 0 ? batch : 1, nbb = b_bcast ? 1 : nb;
    float *a = malloc((size_t)(nb * M * K + 1) * sizeof(float)), *b = malloc((size_t)(nbb * K * N + 1) * sizeof(float));
    cr_assert(a && b);
    for (int64_t i = 0; i < nb * M * K; i++) a[i] = g5_uniform();
    for (int64_t i = 0; i < nbb * K * N; i++) b[i] = g5_uniform();
    nb_tensor *A = g5_matrix(a, batch, M, K, la);
    nb_tensor *B = g5_matrix(b, batch > 0 && !b_bcast ? batch : 0, K, N, lb);
    g5_isa("ref", 0);
    nb_tensor *r = nb_matmul(A, B);
    cr_assert_not_null(r, "%s", nb_last_error());
    g5_isa("avx512", 0);
    nb_tensor *c = nb_matmul(A, B);
    cr_assert_not_null(c, "%s", nb_last_error());
    g5_served("avx512_gemm_matmul");
    static const char *const lay[] = {"", "T", "S"};
    char what[32];
    snprintf(what, sizeof what, "A%s B%s", lay[la], lay[lb]);
    g5_check(c, r, a, b, NULL, nb, M, N, K, b_bcast, what);
    free(a);
    free(b);
    nb_scope_end();
}

static const int64_t g5_sizes[] = {1, 7, 15, 16, 17, 31, 32, 33, 100, 257};
#define G5_NS (int)(sizeof g5_sizes / sizeof g5_sizes[0])

/* Every (M, N) pair of the sizes, each with two K of them (spread so that
 * every K meets every M and N class). */
Test(avx512_gemm, matmul_shapes) {
    for (int i = 0; i < G5_NS; i++)
        for (int j = 0; j < G5_NS; j++) {
            g5_matmul_case(0, g5_sizes[i], g5_sizes[j], g5_sizes[(3 * i + j) % G5_NS], G5_ROW, G5_ROW, false);
            g5_matmul_case(0, g5_sizes[i], g5_sizes[j], g5_sizes[(i + 7 * j + 5) % G5_NS], G5_ROW, G5_ROW, false);
        }
}

/* All the tile edges: M around multiples of 6, N around multiples of 32. */
Test(avx512_gemm, matmul_tile_edges) {
    static const int64_t ms[] = {1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 18, 19};
    static const int64_t ns[] = {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 95, 96, 97};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++)
            g5_matmul_case(0, ms[i], ns[j], (int64_t)(1 + (i * 5 + j * 3) % 40), G5_ROW, G5_ROW, false);
}

Test(avx512_gemm, matmul_transposed) {
    static const int64_t sz[][3] = {{1, 1, 1}, {7, 17, 33}, {33, 32, 15}, {100, 257, 17}, {257, 33, 100},
                                    {16, 100, 300}, {150, 40, 520}, {6, 31, 31}};
    for (size_t s = 0; s < sizeof sz / sizeof sz[0]; s++)
        for (int t = 1; t < 4; t++)
            g5_matmul_case(0, sz[s][0], sz[s][1], sz[s][2], t & 1 ? G5_TRANS : G5_ROW, t & 2 ? G5_TRANS : G5_ROW, false);
}

Test(avx512_gemm, matmul_strided) {
    static const int64_t sz[][3] = {{1, 1, 1}, {7, 33, 17}, {32, 31, 100}, {100, 65, 16}, {13, 257, 7}};
    for (size_t s = 0; s < sizeof sz / sizeof sz[0]; s++) {
        g5_matmul_case(0, sz[s][0], sz[s][1], sz[s][2], G5_STRIDED, G5_ROW, false);
        g5_matmul_case(0, sz[s][0], sz[s][1], sz[s][2], G5_ROW, G5_STRIDED, false);
        g5_matmul_case(0, sz[s][0], sz[s][1], sz[s][2], G5_STRIDED, G5_TRANS, false);
    }
}

Test(avx512_gemm, matmul_large_blocks) {
    /* several MC (192), KC (256) and NC (1024) blocks */
    g5_matmul_case(0, 400, 1100, 600, G5_ROW, G5_ROW, false);
    /* one M block, B read in place (row stride 1030 is not a multiple of 32), tail packed */
    g5_matmul_case(0, 150, 1030, 513, G5_ROW, G5_ROW, false);
    /* one M block, row stride 1024: B packed */
    g5_matmul_case(0, 100, 1024, 300, G5_ROW, G5_ROW, false);
    g5_matmul_case(0, 290, 70, 513, G5_TRANS, G5_ROW, false);
    g5_matmul_case(0, 64, 2100, 20, G5_ROW, G5_TRANS, false);
    /* row-major A packed by 8x8 transposes: K blocks of 175 = 21 x 8 + 7 */
    g5_matmul_case(0, 130, 40, 523, G5_ROW, G5_ROW, false);
}

Test(avx512_gemm, matmul_batched) {
    g5_matmul_case(3, 17, 33, 15, G5_ROW, G5_ROW, false);
    g5_matmul_case(4, 7, 32, 100, G5_ROW, G5_ROW, true);   /* B broadcast over the batch */
    g5_matmul_case(2, 33, 17, 7, G5_TRANS, G5_TRANS, true);
    g5_matmul_case(2, 13, 65, 31, G5_STRIDED, G5_ROW, true);
}

Test(avx512_gemm, matmul_k0) {
    nb_scope_begin();
    nb_tensor *A = nb_zeros(NB_SHAPE(5, 0), NB_F32), *B = nb_zeros(NB_SHAPE(0, 33), NB_F32);
    g5_isa("avx512", 0);
    nb_tensor *c = nb_matmul(A, B);
    cr_assert_not_null(c, "%s", nb_last_error());
    g5_served("avx512_gemm_matmul");
    nb_tensor *z = nb_zeros(NB_SHAPE(5, 33), NB_F32);
    cr_assert_eq(tu_max_abs_diff(c, z), 0.0);
    nb_scope_end();
}

/* LINEAR: x (lead..., K), w (N, K), bias or not; lead = {R} or {2, R/2}. */
static void g5_linear_case(int64_t R, int64_t N, int64_t K, bool with_bias, bool x3d) {
    nb_scope_begin();
    float *x = malloc((size_t)(R * K + 1) * sizeof(float)), *w = malloc((size_t)(N * K + 1) * sizeof(float));
    float *bias = malloc((size_t)(N + 1) * sizeof(float)), *wt = malloc((size_t)(N * K + 1) * sizeof(float));
    cr_assert(x && w && bias && wt);
    for (int64_t i = 0; i < R * K; i++) x[i] = g5_uniform();
    for (int64_t i = 0; i < N * K; i++) w[i] = g5_uniform();
    for (int64_t i = 0; i < N; i++) bias[i] = g5_uniform();
    for (int64_t n = 0; n < N; n++)   /* w^T, (K, N), for the error bound */
        for (int64_t k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
    nb_tensor *X = x3d ? nb_from_data(NB_SHAPE(2, R / 2, K), NB_F32, x) : nb_from_data(NB_SHAPE(R, K), NB_F32, x);
    nb_tensor *W = nb_from_data(NB_SHAPE(N, K), NB_F32, w);
    nb_tensor *Bi = with_bias ? nb_from_data(NB_SHAPE(N), NB_F32, bias) : NULL;
    cr_assert(X && W && (!with_bias || Bi));
    g5_isa("ref", 0);
    nb_tensor *r = nb_linear(X, W, Bi);
    cr_assert_not_null(r, "%s", nb_last_error());
    g5_isa("avx512", 0);
    nb_tensor *c = nb_linear(X, W, Bi);
    cr_assert_not_null(c, "%s", nb_last_error());
    g5_served("avx512_gemm_linear");
    g5_check(c, r, x, wt, with_bias ? bias : NULL, 1, R, N, K, false, with_bias ? "linear+bias" : "linear");
    free(x);
    free(w);
    free(bias);
    free(wt);
    nb_scope_end();
}

Test(avx512_gemm, linear) {
    static const int64_t sz[][3] = {{1, 1, 1},     {2, 7, 17},     {16, 33, 15},  {100, 10, 257}, {128, 257, 100},
                                    {34, 32, 7},   {128, 512, 300}, {12, 31, 32}, {6, 65, 33},    {200, 1030, 40}};
    for (size_t s = 0; s < sizeof sz / sizeof sz[0]; s++)
        for (int v = 0; v < 3; v++) g5_linear_case(sz[s][0], sz[s][1], sz[s][2], v != 1, v == 2 && sz[s][0] % 2 == 0);
}

/* 1, 2, 3 and 16 threads: bitwise equal results (whole tiles per thread, the
 * K order never depends on the split). Shapes big enough for
 * nb__par_threads to use several threads. */
/* Random operands of an M x K @ K x N product (LINEAR: B stored N x K, and
 * a bias) in layouts la, lb; the host arrays are freed by g5_ops_free. */
typedef struct g5_ops {
    float *a, *b, *bias;
    nb_tensor *A, *B, *Bi;
} g5_ops;
static g5_ops g5_ops_new(int64_t M, int64_t N, int64_t K, int la, int lb, bool lin) {
    g5_ops o = {malloc((size_t)(M * K) * sizeof(float)), malloc((size_t)(K * N) * sizeof(float)),
                malloc((size_t)N * sizeof(float)), NULL, NULL, NULL};
    cr_assert(o.a && o.b && o.bias);
    for (int64_t i = 0; i < M * K; i++) o.a[i] = g5_uniform();
    for (int64_t i = 0; i < K * N; i++) o.b[i] = g5_uniform();
    for (int64_t i = 0; i < N; i++) o.bias[i] = g5_uniform();
    o.A = g5_matrix(o.a, 0, M, K, la);
    o.B = lin ? g5_matrix(o.b, 0, N, K, lb) : g5_matrix(o.b, 0, K, N, lb);
    o.Bi = lin ? nb_from_data(NB_SHAPE(N), NB_F32, o.bias) : NULL;
    return o;
}
static void g5_ops_free(g5_ops *o) {
    free(o->a);
    free(o->b);
    free(o->bias);
}

static void g5_threads_case(int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool lin) {
    nb_scope_begin();
    g5_ops o = g5_ops_new(M, N, K, ta ? G5_TRANS : G5_ROW, lin ? G5_ROW : tb ? G5_TRANS : G5_ROW, lin);
    nb_tensor *A = o.A, *B = o.B, *Bi = o.Bi;
    static const int threads[] = {1, 2, 3, 16};
    nb_tensor *c[4];
    for (int t = 0; t < 4; t++) {
        g5_isa("avx512", threads[t]);
        c[t] = lin ? nb_linear(A, B, Bi) : nb_matmul(A, B);
        cr_assert_not_null(c[t], "%s", nb_last_error());
        g5_served("avx512_gemm");
        if (t > 0)
            cr_assert_eq(memcmp(nb_data(c[0]), nb_data(c[t]), (size_t)(M * N) * sizeof(float)), 0,
                         "M=%lld N=%lld K=%lld: 1 and %d threads differ", (long long)M, (long long)N, (long long)K,
                         threads[t]);
    }
    g5_ops_free(&o);
    nb_scope_end();
}

Test(avx512_gemm, thread_count_independent) {
    g5_threads_case(64, 256, 256, false, false, false);
    g5_threads_case(128, 784, 512, true, false, false);   /* A transposed (dW = g^T @ x) */
    g5_threads_case(128, 512, 784, false, false, false);
    g5_threads_case(512, 1100, 300, false, true, false);  /* N over two NC blocks */
    g5_threads_case(128, 10, 3000, false, true, false);   /* split over M */
    g5_threads_case(130, 257, 600, false, false, true);   /* LINEAR with bias */
    g5_threads_case(127, 300, 301, true, true, false);
}

/* The 2-D thread grid (gemm_driver.h's gemm_grid, from 4 threads on): at
 * 4, 6, 8, 12 and 16 threads the products it serves are bitwise those of
 * 1 thread and of the grid turned off, in several layouts and LINEAR with
 * bias; at 16 threads the grid serves them, and not a product with N too
 * narrow for it. */
static void g5_grid_case(int64_t M, int64_t N, int64_t K, int la, int lb, bool lin, bool expect_grid) {
    nb_scope_begin();
    g5_ops o = g5_ops_new(M, N, K, la, lb, lin);
    nb_tensor *A = o.A, *B = o.B, *Bi = o.Bi;
    g5_isa("avx512", 1);
    nb_tensor *c1 = nb_contiguous(lin ? nb_linear(A, B, Bi) : nb_matmul(A, B));
    cr_assert_not_null(c1, "%s", nb_last_error());
    static const int threads[] = {4, 6, 8, 12, 16};
    for (int t = 0; t < 5; t++)
        for (int grid = 0; grid < 2; grid++) {
            g5_isa("avx512", threads[t]);
            nb__gemm_grid = grid;
            long before = nb__gemm_grid_calls;
            nb_tensor *c = nb_contiguous(lin ? nb_linear(A, B, Bi) : nb_matmul(A, B));
            nb__gemm_grid = 1;
            cr_assert_not_null(c, "%s", nb_last_error());
            g5_served("avx512_gemm");
            if (grid && threads[t] == 16)   /* at fewer threads the 1-D cut can pack less */
                cr_assert_eq(nb__gemm_grid_calls - before, expect_grid ? 1 : 0,
                             "M=%lld N=%lld K=%lld at %d threads: grid calls %ld, expected %d", (long long)M,
                             (long long)N, (long long)K, threads[t], nb__gemm_grid_calls - before, (int)expect_grid);
            cr_assert_eq(memcmp(nb_data(c1), nb_data(c), (size_t)(M * N) * sizeof(float)), 0,
                         "M=%lld N=%lld K=%lld (layouts %d %d, linear %d), %d threads, grid %d: differs from 1 "
                         "thread", (long long)M, (long long)N, (long long)K, la, lb, (int)lin, threads[t], grid);
        }
    g5_ops_free(&o);
    nb_scope_end();
}

Test(avx512_gemm, thread_grid_same_bits) {
    nb__avx512_gemm_serve_all = 1;
    g5_grid_case(1024, 1024, 64, G5_ROW, G5_ROW, false, true);
    g5_grid_case(700, 900, 150, G5_TRANS, G5_ROW, false, true);   /* edges inside the blocks' last tiles */
    g5_grid_case(500, 1100, 130, G5_ROW, G5_TRANS, false, true);
    g5_grid_case(600, 520, 70, G5_ROW, G5_ROW, true, true);        /* LINEAR with bias */
    g5_grid_case(2000, 40, 300, G5_ROW, G5_ROW, false, false);     /* narrow N: the cut along M */
    nb__avx512_gemm_serve_all = 0;
}

/* The AVX2 GEMM (ISA capped to avx2, its declines off) gives the same bits:
 * both cut K into the same blocks and do the same FMA chain per element. */
static void g5_avx2_bits_case(int64_t M, int64_t N, int64_t K, int la, int lb, bool lin) {
    nb_scope_begin();
    float *a = malloc((size_t)(M * K + 1) * sizeof(float)), *b = malloc((size_t)(K * N + 1) * sizeof(float));
    float *bias = malloc((size_t)(N + 1) * sizeof(float));
    cr_assert(a && b && bias);
    for (int64_t i = 0; i < M * K; i++) a[i] = g5_uniform();
    for (int64_t i = 0; i < K * N; i++) b[i] = g5_uniform();
    for (int64_t i = 0; i < N; i++) bias[i] = g5_uniform();
    nb_tensor *A = g5_matrix(a, 0, M, K, la);
    nb_tensor *B = lin ? g5_matrix(b, 0, N, K, lb) : g5_matrix(b, 0, K, N, lb);
    nb_tensor *Bi = lin ? nb_from_data(NB_SHAPE(N), NB_F32, bias) : NULL;
    nb__avx2_gemm_serve_all = 1;
    static const char *const isas[] = {"avx2", "avx512"};
    nb_tensor *c[2];
    for (int s = 0; s < 2; s++) {
        g5_isa(isas[s], 0);
        c[s] = lin ? nb_linear(A, B, Bi) : nb_matmul(A, B);
        cr_assert_not_null(c[s], "%s", nb_last_error());
        g5_served(s ? "avx512_gemm" : "avx2_gemm");
    }
    nb_tensor *c0 = nb_contiguous(c[0]), *c1 = nb_contiguous(c[1]);
    cr_assert(c0 && c1);
    cr_assert_eq(memcmp(nb_data(c0), nb_data(c1), (size_t)(M * N) * sizeof(float)), 0,
                 "M=%lld N=%lld K=%lld (layouts %d %d, linear %d): avx512 and avx2 bits differ", (long long)M,
                 (long long)N, (long long)K, la, lb, (int)lin);
    free(a);
    free(b);
    free(bias);
    nb_scope_end();
}

Test(avx512_gemm, same_bits_as_avx2_gemm) {
    g5_avx2_bits_case(7, 33, 15, G5_ROW, G5_ROW, false);
    g5_avx2_bits_case(100, 257, 600, G5_ROW, G5_ROW, false);   /* 3 K blocks of 200 */
    g5_avx2_bits_case(128, 784, 512, G5_TRANS, G5_ROW, false);
    g5_avx2_bits_case(64, 100, 300, G5_ROW, G5_TRANS, false);
    g5_avx2_bits_case(31, 65, 40, G5_STRIDED, G5_STRIDED, false);
    g5_avx2_bits_case(130, 257, 600, G5_ROW, G5_ROW, true);    /* LINEAR with bias */
    g5_avx2_bits_case(13, 1030, 1, G5_ROW, G5_ROW, true);
    /* A read in place (C of at most ADIRECT_N = 256 columns): 3 M blocks ending in a 4-row
       panel (packed), 3 K blocks; N = 256 exactly; LINEAR with bias */
    g5_avx2_bits_case(400, 64, 600, G5_ROW, G5_ROW, false);
    g5_avx2_bits_case(257, 256, 257, G5_ROW, G5_ROW, false);
    g5_avx2_bits_case(200, 250, 300, G5_ROW, G5_ROW, true);
    /* the transposed tile (forced: at any thread count, whatever pieces the
       split leaves), B = W^T and LINEAR's w^T, two K blocks */
    nb__avx512_gemm_vm = 2;
    long vm0 = nb__avx512_gemm_vm_calls;
    g5_avx2_bits_case(64, 256, 300, G5_ROW, G5_TRANS, false);
    g5_avx2_bits_case(60, 200, 600, G5_ROW, G5_ROW, true);
    nb__avx512_gemm_vm = 1;
    cr_assert_geq(nb__avx512_gemm_vm_calls - vm0, 2, "the transposed tile did not serve");
}

/* The transposed tile (vectors along M, nb__avx512_gemm_vm 2: every call
 * with C rows contiguous) against the 6x32 path (0): bitwise equal, across
 * the 32 x 12 tile's edges (M around 32, N around 12), K blocks (K > 256),
 * every operand layout, LINEAR with bias, batched, 1-3 threads. */
static nb_tensor *g5_vm_run(nb_tensor *A, nb_tensor *B, nb_tensor *Bi, bool lin, int vm, int threads) {
    nb__avx512_gemm_vm = vm;
    g5_isa("avx512", threads);
    long before = nb__avx512_gemm_vm_calls;
    nb_tensor *c = lin ? nb_linear(A, B, Bi) : nb_matmul(A, B);
    cr_assert_not_null(c, "%s", nb_last_error());
    g5_served("avx512_gemm");
    cr_assert(vm == 2 ? nb__avx512_gemm_vm_calls > before : nb__avx512_gemm_vm_calls == before,
              "transposed tile %s", vm == 2 ? "not used when forced" : "used when off");
    nb__avx512_gemm_vm = 1;
    return nb_contiguous(c);
}

static void g5_vm_case(int64_t batch, int64_t M, int64_t N, int64_t K, int la, int lb, bool lin, int threads) {
    nb_scope_begin();
    int64_t nb = batch > 0 ? batch : 1;
    float *a = malloc((size_t)(nb * M * K + 1) * sizeof(float)), *b = malloc((size_t)(K * N + 1) * sizeof(float));
    float *bias = malloc((size_t)(N + 1) * sizeof(float));
    cr_assert(a && b && bias);
    for (int64_t i = 0; i < nb * M * K; i++) a[i] = g5_uniform();
    for (int64_t i = 0; i < K * N; i++) b[i] = g5_uniform();
    for (int64_t i = 0; i < N; i++) bias[i] = g5_uniform();
    nb_tensor *A = g5_matrix(a, batch, M, K, la);
    nb_tensor *B = lin ? g5_matrix(b, 0, N, K, lb) : g5_matrix(b, 0, K, N, lb);
    nb_tensor *Bi = lin ? nb_from_data(NB_SHAPE(N), NB_F32, bias) : NULL;
    nb_tensor *c0 = g5_vm_run(A, B, Bi, lin, 0, threads), *c1 = g5_vm_run(A, B, Bi, lin, 2, threads);
    cr_assert(c0 && c1);
    cr_assert_eq(memcmp(nb_data(c0), nb_data(c1), (size_t)(nb * M * N) * sizeof(float)), 0,
                 "batch %lld M=%lld N=%lld K=%lld (layouts %d %d, linear %d, %d threads): transposed tile and 6x32 "
                 "bits differ",
                 (long long)batch, (long long)M, (long long)N, (long long)K, la, lb, (int)lin, threads);
    free(a);
    free(b);
    free(bias);
    nb_scope_end();
}

Test(avx512_gemm, transposed_tile_same_bits) {
    static const int64_t ms[] = {1, 15, 16, 17, 31, 32, 33, 64, 65, 100};
    static const int64_t ns[] = {1, 11, 12, 13, 24, 25, 37, 256};
    static const int64_t ks[] = {1, 7, 8, 9, 40, 256, 257, 600};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        for (size_t j = 0; j < sizeof ns / sizeof ns[0]; j++) {
            int64_t K = ks[(i * 3 + j) % (sizeof ks / sizeof ks[0])];
            g5_vm_case(0, ms[i], ns[j], K, G5_ROW, G5_TRANS, false, 1);   /* the rule's layout, any size */
            g5_vm_case(0, ms[i], ns[j], K, (int)((i + j) % 3), (int)((i + 2 * j) % 3), false, 1);
        }
    g5_vm_case(0, 64, 300, 600, G5_ROW, G5_ROW, true, 1);   /* LINEAR (w^T) with bias, two K blocks */
    g5_vm_case(0, 33, 25, 300, G5_TRANS, G5_ROW, true, 1);
    g5_vm_case(3, 20, 40, 50, G5_ROW, G5_TRANS, false, 1);  /* batched (B shared: one folded GEMM) */
    g5_vm_case(0, 64, 256, 256, G5_ROW, G5_TRANS, false, 2);
    g5_vm_case(0, 96, 1000, 300, G5_STRIDED, G5_TRANS, false, 3);
}

/* The rule: B^T with 64 rows takes the transposed tile, the same call with
 * B row-major or 200 rows does not. */
Test(avx512_gemm, transposed_tile_rule) {
    nb_scope_begin();
    float *v = calloc(256 * 256, sizeof(float));
    cr_assert_not_null(v);
    for (int i = 0; i < 256 * 256; i++) v[i] = g5_uniform();
    nb_tensor *x64 = g5_matrix(v, 0, 64, 256, G5_ROW), *x200 = g5_matrix(v, 0, 200, 256, G5_ROW);
    nb_tensor *wt = g5_matrix(v, 0, 256, 256, G5_TRANS), *w = g5_matrix(v, 0, 256, 256, G5_ROW);
    g5_isa("avx512", 1);
    struct { nb_tensor *a, *b; bool takes; } cs[] = {{x64, wt, true}, {x64, w, false}, {x200, wt, false}};
    for (int t = 0; t < 3; t++) {
        long before = nb__avx512_gemm_vm_calls;
        cr_assert_not_null(nb_matmul(cs[t].a, cs[t].b), "%s", nb_last_error());
        g5_served("avx512_gemm_matmul");
        cr_assert_eq(nb__avx512_gemm_vm_calls > before, cs[t].takes, "case %d: transposed tile %s", t,
                     cs[t].takes ? "not taken" : "taken");
    }
    free(v);
    nb_scope_end();
}

/* Inside a backward (nb__thread_invariant set by the executor) oneDNN
 * declines, and every matmul of it must come here even with the declines
 * on: the backward of a linear layer, its kernels read from the profiler;
 * its gradients match ref's within the bound of a K-term sum. */
Test(avx512_gemm, serves_backward_matmuls) {
    nb__avx512_gemm_serve_all = 0;
    static const char *const isas[] = {"ref", "avx512"};
    float *gx[2], *gw[2];
    const int64_t R = 64, N = 96, K = 200;
    for (int s = 0; s < 2; s++) {
        g5_isa(isas[s], 0);
        nb_scope_begin();
        nb_tensor *x = nb_randn(NB_SHAPE(R, K), NB_F32, 11), *w = nb_randn(NB_SHAPE(N, K), NB_F32, 12);
        nb_tensor *b = nb_randn(NB_SHAPE(N), NB_F32, 13), *seed = nb_randn(NB_SHAPE(R, N), NB_F32, 14);
        cr_assert(x && w && b && seed);
        nb_set_requires_grad(x, true);
        nb_set_requires_grad(w, true);
        nb_tensor *loss = nb_sum_all(nb_mul(nb_linear(x, w, b), seed));
        cr_assert_not_null(loss, "%s", nb_last_error());
        if (s == 1) cr_assert_eq(nb_profiler_start(&(nb_profiler_opts){0}), 0, "%s", nb_last_error());
        cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
        if (s == 1) {
            cr_assert_eq(nb_profiler_stop(), 0);
            int n = nb_profiler_rows(NULL, 0, false);
            cr_assert(n > 0, "profiler rows: %d", n);
            nb_profiler_stat *rows = calloc((size_t)n, sizeof *rows);
            cr_assert_not_null(rows);
            cr_assert_eq(nb_profiler_rows(rows, n, false), n);
            uint64_t ours = 0;
            for (int i = 0; i < n; i++) {
                const char *k = rows[i].kernel ? rows[i].kernel : "";
                bool gemm = strstr(k, "gemm") || strstr(k, "matmul") || strstr(k, "linear");
                if (!gemm) continue;
                cr_assert(!strncmp(k, "avx512_gemm_", 12), "%s in the backward ran on %s", rows[i].name, k);
                ours += rows[i].calls;
            }
            cr_assert(ours >= 2, "the backward's two products (dx, dw) ran %llu times on avx512_gemm",
                      (unsigned long long)ours);
            free(rows);
        }
        gx[s] = malloc((size_t)(R * K) * sizeof(float));
        gw[s] = malloc((size_t)(N * K) * sizeof(float));
        cr_assert(gx[s] && gw[s]);
        cr_assert_eq(nb_copy_to(nb_grad(x), gx[s], (size_t)(R * K) * sizeof(float)), 0);
        cr_assert_eq(nb_copy_to(nb_grad(w), gw[s], (size_t)(N * K) * sizeof(float)), 0);
        nb_scope_end();
    }
    /* dx = seed @ w (sums of N terms), dw = seed^T @ x (R terms); |terms| < ~25 for randn inputs */
    for (int64_t i = 0; i < R * K; i++)
        cr_assert(fabs((double)gx[0][i] - gx[1][i]) <= 2.0 * (N + 2) * 0x1.0p-24 * 25.0 * N, "dx[%lld]: %g vs %g",
                  (long long)i, (double)gx[1][i], (double)gx[0][i]);
    for (int64_t i = 0; i < N * K; i++)
        cr_assert(fabs((double)gw[0][i] - gw[1][i]) <= 2.0 * (R + 2) * 0x1.0p-24 * 25.0 * R, "dw[%lld]: %g vs %g",
                  (long long)i, (double)gw[1][i], (double)gw[0][i]);
    for (int s = 0; s < 2; s++) free(gx[s]), free(gw[s]);
}

/* The decline rule: outside a backward, with oneDNN built, exactly the calls
 * the AVX2 GEMM gives oneDNN on an AVX-512 CPU are passed on (BLAS layouts,
 * and other strides with A not column-major, K > 16, N < 2 K); inside one
 * (nb__thread_invariant) all are served. Without oneDNN every call is
 * served. */
Test(avx512_gemm, declines_outside_backward) {
    nb__avx512_gemm_serve_all = 0;
    nb_scope_begin();
    g5_isa("avx512", 0);
    nb_tensor *a = nb_randn(NB_SHAPE(64, 40), NB_F32, 1), *b = nb_randn(NB_SHAPE(40, 24), NB_F32, 2);
    nb_tensor *at = nb_transpose(nb_randn(NB_SHAPE(40, 64), NB_F32, 3), 0, 1);
    nb_tensor *bw = nb_randn(NB_SHAPE(40, 80), NB_F32, 4);   /* N = 2 K */
    /* A strided (every other column): not a BLAS layout */
    nb_tensor *as = nb_slice(nb_randn(NB_SHAPE(64, 80), NB_F32, 5), 1, 0, 80, 2);
    nb_tensor *as8 = nb_slice(nb_randn(NB_SHAPE(64, 16), NB_F32, 6), 1, 0, 16, 2);
    /* strided A with K 80 (N 24 < K / 2): the deep-K rule passes it on */
    nb_tensor *ask = nb_slice(nb_randn(NB_SHAPE(64, 160), NB_F32, 8), 1, 0, 160, 2);
    nb_tensor *bk = nb_randn(NB_SHAPE(80, 24), NB_F32, 9);
    nb_tensor *b8 = nb_randn(NB_SHAPE(8, 24), NB_F32, 7);
    cr_assert(a && b && at && bw && as && as8 && b8 && ask && bk);
    struct {
        nb_tensor *x, *y;
        bool passed;   /* with oneDNN built: passed on outside a backward */
        const char *what;
    } cs[] = {
        {a, b, true, "row-major"},          {at, b, true, "A^T"},
        {a, bw, true, "row-major, N = 2K"}, {as, b, false, "strided A, K 40, N 24 (N >= K / 2)"},
        {ask, bk, true, "strided A, K 80, N 24"},
        {as, bw, false, "strided A, N = 2K"}, {as8, b8, false, "strided A, K 8"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        cr_assert_not_null(nb_matmul(cs[i].x, cs[i].y), "%s", nb_last_error());
        bool here = g5_was("avx512_gemm_matmul");
#if NB_HAVE_ONEDNN
        cr_assert(here == !cs[i].passed, "%s: served by %s", cs[i].what, nb__last_kernel());
#else
        cr_assert(here, "%s: served by %s", cs[i].what, nb__last_kernel());
#endif
        nb__thread_invariant = 1;   /* as inside a backward node */
        nb_tensor *r = nb_matmul(cs[i].x, cs[i].y);
        nb__thread_invariant = 0;
        cr_assert_not_null(r, "%s", nb_last_error());
        cr_assert(g5_was("avx512_gemm_matmul"), "%s inside a backward: served by %s", cs[i].what,
                  nb__last_kernel());
    }
    /* the test hooks: 1 serves everything, -1 passes every call oneDNN takes */
    nb__avx512_gemm_serve_all = 1;
    cr_assert_not_null(nb_matmul(a, b));
    g5_served("avx512_gemm_matmul");
    nb__avx512_gemm_serve_all = -1;
    cr_assert_not_null(nb_matmul(as8, b8));
#if NB_HAVE_ONEDNN
    cr_assert(!g5_was("avx512_gemm"), "serve_all -1: served by %s", nb__last_kernel());
#else
    g5_served("avx512_gemm_matmul");
#endif
    nb_scope_end();
}
