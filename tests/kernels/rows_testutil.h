/* rows_testutil.h — what test_avx2_rows.c and test_avx512_rows.c share:
 * the per-op tolerances (test_avx512_norm.c's too), random inputs and class
 * targets, and the inputs of the softmax layout, special-value and cross
 * entropy cases (each file runs them through its own check, given as a
 * callback). All static inline: a file may use a part.
 */
#ifndef NB_TESTS_ROWS_TESTUTIL_H
#define NB_TESTS_ROWS_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

typedef struct rows_tol {
    double rtol, atol;   /* per element: rtol |ref| + atol * max |ref| of the row; {0, 0}: bitwise */
    double scale_ulps;   /* and, where > 0, |got - ref| <= scale_ulps ULPs of the row's largest
                            |ref| (a normal float; rows of zeros or denormals are left to rtol/atol) */
} rows_tol;

/* The forwards' bound in ULPs of the row's largest |output|, asserted by
 * both files' compares and test_avx512_norm.c's (measured against ref,
 * which is double rounded once: 1-3 on random rows of 7..4097 at scale 3;
 * up to 6 in these tests: softmax on a uniform 7-row and on 2056-rows,
 * layer_norm on 7-rows with weight and bias; 7 in test_avx512_norm.c,
 * layer_norm on (4097, 17); group_norm 2-3 per group slice). Counted per
 * element it would be meaningless where the output cancels: log_softmax's
 * x - max - log(sum) near the max, layer_norm's x̂ w + b near 0 (up to 125
 * and 8435 ULPs of the element itself there; 7 for softmax and 2 for
 * rms_norm, which do not cancel). */
#define ROWS_FWD_SCALE_ULPS 8

/* Cross entropy's and the backwards' bounds, in the same ULPs of the row's
 * largest |ref|, where a row is: of cross entropy's forward the batch (the
 * N per-sample losses, one row), of its backward a sample's C gradients, of
 * layer_norm_param_backward dweight or dbias (the fused layer_norm
 * backward's last two rows too), of group_norm_backward a group's slice.
 * Each is the next power of two at least 1.5x the worst measured over
 * test_avx2_rows.c, test_avx512_rows.c (against ref and against the twin;
 * the elements it excuses excepted) and test_avx512_norm.c (the AVX-512
 * norm kernels, bitwise AVX2's on other inputs): the headroom is for the
 * sums' rounding, which moves with the inputs and the summation order.
 * For comparison, rtol |ref| + atol max|ref| is, in ULPs of the max, from
 * atol 2^23 (an element far below a max low in its binade) to (rtol + atol)
 * 2^24 (the max, high in its binade): 839-1846 for (1e-5, 1e-4), 84-336 for
 * (1e-5, 1e-5), 8-185 for (1e-5, 1e-6). */
/* measured 1 (avx2), 2 (avx512): each loss a log-sum-exp less a logit,
 * the smoothing sums in double; 2-46x below rtol/atol's 8-185. */
#define ROWS_CE_SCALE_ULPS 4
/* measured 16 (avx2), 267 (avx512 against ref, (4097, 16) rows; 142
 * against the twin; 2521 where test_avx512_rows.c excuses an element whose
 * twin is as far off): g w (p - onehot) cancels at the target where p is
 * near 1 (the row's max shrinks as 1 - p, the rounding of p does not), so
 * this measure has no ceiling of its own; the bound states the suite's
 * worst and is above rtol/atol's 84-336, which stay the binding check. */
#define ROWS_CE_BWD_SCALE_ULPS 512
/* measured 207 (avx2, (64, 7)), 1284 (avx512 against ref, (4097, 16); 509
 * against the twin; 2332 where excused as above): y (g - s) cancels where one class holds nearly all
 * the mass, as cross entropy's backward; at the level of rtol/atol
 * (839-1846), which stay the binding check. */
#define ROWS_SOFTMAX_BWD_SCALE_ULPS 2048
/* measured 24.5 (avx2, rows of 4097), 23 (avx512 against ref; 39.5 against
 * the twin, rows of 1024): g - e^y sum(g), the F32 sum's rounding; 1.3-5x
 * below rtol/atol's 84-336. */
#define ROWS_LOG_SOFTMAX_BWD_SCALE_ULPS 64
/* measured 106.5 (avx2, rows of 3: x (64, 3, 1) over its last 2 dims, where
 * gw - mean(gw) - x̂ mean(gw x̂) cancels), 8 (avx512); 3.3-7x below
 * rtol/atol's 839-1846. */
#define ROWS_LN_BWD_SCALE_ULPS 256
/* measured 5 (avx2), 3 (avx512); no cancellation in rms_norm's x̂ (rows of 1,
 * which are all cancellation, are not compared); 105-230x below rtol/atol. */
#define ROWS_RMS_BWD_SCALE_ULPS 8
/* measured 7.9 (avx2), 24.25 (avx512: groups of 4 channels of an (N, C)
 * input, layer_norm's cancellation over 4 elements); 13-29x below
 * rtol/atol. */
#define ROWS_GN_BWD_SCALE_ULPS 64
/* measured 10 (avx2, dbias of x (64, 3, 1): 192 rows of 1), 6 (avx512):
 * the sums over rows; 52-115x below rtol/atol. */
#define ROWS_LNP_SCALE_ULPS 16

static inline rows_tol rows_tol_of(nb_op op) {
    switch (op) {
    case NB_OP_SOFTMAX: return (rows_tol){4e-6, 1e-6, ROWS_FWD_SCALE_ULPS};
    case NB_OP_LOG_SOFTMAX: return (rows_tol){2e-6, 1e-6, ROWS_FWD_SCALE_ULPS};
    case NB_OP_LAYER_NORM:
    case NB_OP_RMS_NORM:
    case NB_OP_GROUP_NORM: return (rows_tol){1e-5, 1e-5, ROWS_FWD_SCALE_ULPS};
    case NB_OP_CROSS_ENTROPY: return (rows_tol){1e-5, 1e-6, ROWS_CE_SCALE_ULPS};
    case NB_OP_CROSS_ENTROPY_BACKWARD: return (rows_tol){1e-5, 1e-5, ROWS_CE_BWD_SCALE_ULPS};
    case NB_OP_NLL_LOSS_BACKWARD: return (rows_tol){0, 0, 0};
    case NB_OP_SOFTMAX_BACKWARD: return (rows_tol){1e-5, 1e-4, ROWS_SOFTMAX_BWD_SCALE_ULPS};
    case NB_OP_LOG_SOFTMAX_BACKWARD: return (rows_tol){1e-5, 1e-5, ROWS_LOG_SOFTMAX_BWD_SCALE_ULPS};
    case NB_OP_LAYER_NORM_BACKWARD: return (rows_tol){1e-5, 1e-4, ROWS_LN_BWD_SCALE_ULPS};
    case NB_OP_RMS_NORM_BACKWARD: return (rows_tol){1e-5, 1e-4, ROWS_RMS_BWD_SCALE_ULPS};
    case NB_OP_GROUP_NORM_BACKWARD: return (rows_tol){1e-5, 1e-4, ROWS_GN_BWD_SCALE_ULPS};
    case NB_OP_LAYER_NORM_PARAM_BACKWARD: return (rows_tol){1e-5, 1e-4, ROWS_LNP_SCALE_ULPS};
    default: return (rows_tol){1e-5, 1e-5, 0};
    }
}

/* |got - ref| in ULPs of the row's largest |ref| (scale), or 0 when the
 * tolerance has no such bound or scale is not a normal float. */
static inline double rows_scale_ulps(rows_tol tol, double got, double ref, double scale) {
    if (tol.scale_ulps <= 0 || !(scale >= 1.17549435e-38) || !isfinite(scale)) return 0;
    float s = (float)scale;
    return fabs(got - ref) / ((double)nextafterf(s, INFINITY) - (double)s);
}

static inline nb_tensor *rows_randn(nb_dims shape, uint64_t seed, double scale) {
    nb_tensor *t = nb_randn(shape, NB_F32, seed);
    cr_assert_not_null(t);
    return scale != 1 ? nb_contiguous(nb_mul_scalar(t, scale)) : t;
}

/* N targets in [0, C) from seed (0 when C is 0); ign other than -100:
 * every 5th from the 3rd is ign. */
static inline nb_tensor *rows_targets(int64_t N, int64_t C, uint64_t seed, int64_t ign) {
    int64_t *t = malloc(sizeof *t * (size_t)(N ? N : 1));
    cr_assert_not_null(t);
    uint64_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = C ? (int64_t)((s >> 33) % (uint64_t)C) : 0;
        if (ign != -100 && i % 5 == 2) t[i] = ign;
    }
    nb_tensor *r = nb_from_data(NB_SHAPE(N), NB_I64, t);
    free(t);
    cr_assert_not_null(r);
    return r;
}

/* ---- softmax family ---- */

/* A file's check of softmax, log_softmax and both backwards (gradient g,
 * NULL: forwards only) of x along dim; expect 1: served, 0: declined,
 * -1: either. */
typedef void (*rows_softmax_all_fn)(nb_tensor *x, nb_tensor *g, int dim, int expect, const char *what);

/* The layouts at row length L (seeds from l): 3-D along the last dim and
 * along dim 1, transposed, every 2nd element, a narrowed batch. */
static inline void rows_softmax_layouts(int64_t L, int l, rows_softmax_all_fn all) {
    char what[64];
    /* 3-D along the last dim, and along dim 1 (stride L: declined unless L is 1) */
    nb_tensor *x3 = rows_randn(NB_SHAPE(2, 3, L), 200 + l, 2.0), *g3 = rows_randn(NB_SHAPE(2, 3, L), 220 + l, 1.0);
    snprintf(what, sizeof what, "[2,3,%lld] dim 2", (long long)L);
    all(x3, g3, 2, 1, what);
    snprintf(what, sizeof what, "[2,3,%lld] dim 1", (long long)L);
    all(x3, g3, 1, L == 1 ? -1 : 0, what);
    /* transposed: (5, L) with strides (1, 5): the contiguous out has not
     * stride 1 along dim 0, x not along dim 1: both declined (unless L is 1) */
    nb_tensor *xt = nb_transpose(rows_randn(NB_SHAPE(L, 5), 240 + l, 2.0), 0, 1);
    nb_tensor *gt = nb_transpose(rows_randn(NB_SHAPE(L, 5), 260 + l, 1.0), 0, 1);
    snprintf(what, sizeof what, "transposed (5,%lld) dim 0", (long long)L);
    all(xt, gt, 0, L == 1 ? -1 : 0, what);
    snprintf(what, sizeof what, "transposed (5,%lld) dim 1", (long long)L);
    all(xt, gt, 1, L == 1 ? -1 : 0, what);
    /* every 2nd element (declined), and a narrowed batch (rows at an offset: served) */
    nb_tensor *xs = nb_slice(rows_randn(NB_SHAPE(4, 2 * L), 280 + l, 2.0), 1, 0, 2 * L, 2);
    nb_tensor *gs = nb_slice(rows_randn(NB_SHAPE(4, 2 * L), 290 + l, 1.0), 1, 1, 2 * L, 2);
    snprintf(what, sizeof what, "sliced (4,%lld)", (long long)L);
    all(xs, gs, 1, L == 1 ? -1 : 0, what);
    nb_tensor *xn = nb_narrow(rows_randn(NB_SHAPE(6, L + 3), 300 + l, 2.0), 1, 2, L);
    snprintf(what, sizeof what, "narrowed (6,%lld)", (long long)L);
    all(xn, rows_randn(NB_SHAPE(6, L), 310 + l, 1.0), 1, 1, what);
}

/* A softmax kernel call: x (R, L) -> a new output (NaN-filled before the
 * call, so a row left unwritten shows), the serving kernel to *served. */
typedef const float *(*rows_softmax_fn)(const nb_tensor *x, int64_t R, int64_t L, int threads, const char **served);

/* Streamed softmax rows are written one row late (rows_driver.h's
 * late_row): a big (1100, L) softmax with special rows among its rows
 * (inf, all -inf, NaN, the last row inf, so a special row comes after the
 * pending one) at 1, 2 and 3 threads is bitwise, row for row, the same
 * rows computed alone (a (1, L) output: not streamed, written at once).
 * The kernel asserted to be prefix's. */
static inline void rows_softmax_late_case(int64_t L, uint64_t seed, rows_softmax_fn call, const char *prefix) {
    const int64_t R = 1100;
    nb_scope_begin();
    nb_tensor *x = rows_randn(NB_SHAPE(R, L), seed, 3.0);
    float *xv = nb_data(x);
    xv[5 * L + 17] = INFINITY;
    for (int64_t i = 0; i < L; i++) xv[6 * L + i] = -INFINITY;
    xv[700 * L + 3] = NAN;
    xv[1099 * L + L - 1] = INFINITY;
    static const int rows[] = {0, 4, 5, 6, 7, 549, 550, 699, 701, 1098, 1099};   /* (700 is NaN either way) */
    for (int threads = 1; threads <= 3; threads++) {
        nb_scope_begin();
        const char *k;
        const float *big = call(x, R, L, threads, &k);
        cr_assert(k && !strncmp(k, prefix, strlen(prefix)), "served by %s, not %s", k ? k : "?", prefix);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
            const float *one = call(nb_slice(x, 0, rows[i], rows[i] + 1, 1), 1, L, threads, &k);
            for (int64_t j = 0; j < L; j++) {
                const float a = big[rows[i] * L + j], b = one[j];
                cr_assert(memcmp(&a, &b, 4) == 0, "%d threads, row %d [%lld]: streamed %a, alone %a", threads, rows[i],
                          (long long)j, (double)a, (double)b);
            }
        }
        nb_scope_end();
    }
    nb_scope_end();
}

/* K (10 or 12) rows of L with special values: one +inf (row 0), two +inf
 * and a -inf (1), a NaN (2), all -inf (3), one -inf (4), NaN and +inf (5),
 * all equal and large (6), a wide spread (7), +-1e10 (8), x - max
 * overflowing to -inf (9); K 12: signed zeros (10), denormals (11). */
static inline nb_tensor *rows_softmax_special_x(int64_t K, int64_t L, uint64_t seed) {
    nb_tensor *x = rows_randn(NB_SHAPE(K, L), seed, 1.0);
    float *p = nb_data(x);
    for (int64_t i = 0; i < L; i++) {
        p[3 * L + i] = -INFINITY;
        p[6 * L + i] = 1e10f;
        p[7 * L + i] *= 1e4f;
        p[8 * L + i] = (i % 2 ? 1e10f : -1e10f);
        if (K >= 12) {
            p[10 * L + i] = (i % 3 ? 0.0f : -0.0f);
            p[11 * L + i] = (i % 2 ? 1e-40f : -1e-39f);
        }
    }
    p[0 * L + L / 2] = INFINITY;
    p[1 * L + 0] = INFINITY;
    p[1 * L + L - 1] = INFINITY;
    p[1 * L + L / 3] = -INFINITY;
    p[2 * L + L / 2] = NAN;
    p[4 * L + L - 1] = -INFINITY;
    p[5 * L + 0] = NAN;
    p[5 * L + L - 1] = INFINITY;
    p[9 * L + 0] = -3e38f;
    p[9 * L + 1] = 3e38f;
    return x;
}

/* ---- cross entropy ---- */

/* A file's check of CE forward and backward on logits x (N, C) and
 * targets t (w, g: weights or NULL, per-sample gradients). */
typedef void (*rows_ce_fn)(nb_tensor *x, nb_tensor *t, nb_tensor *w, nb_tensor *g, double ign, double eps, int expect,
                           const char *what);

/* (N, C) logits from seed sd: weights, label smoothing, an ignore_index,
 * a broadcast gradient, strided targets (served), transposed logits
 * (declined unless C or N is 1). */
static inline void rows_ce_case(int64_t N, int64_t C, uint64_t sd, rows_ce_fn ce) {
    nb_tensor *x = rows_randn(NB_SHAPE(N, C), sd, 3.0), *g = rows_randn(NB_SHAPE(N), sd + 1000, 1.0);
    nb_tensor *w = nb_contiguous(nb_add_scalar(nb_rand(NB_SHAPE(C), NB_F32, sd + 2000), 0.5));
    nb_tensor *t = rows_targets(N, C, sd, -100);
    char what[96];
    for (int v = 0; v < 4; v++) {
        bool wt = v & 1, smooth = v & 2;
        int64_t ign = C > 2 && v == 3 ? 2 : -100;
        snprintf(what, sizeof what, "ce (%lld, %lld)%s%s%s", (long long)N, (long long)C, wt ? " weight" : "",
                 smooth ? " smoothing" : "", ign == 2 ? " ignore 2" : "");
        ce(x, ign == 2 ? rows_targets(N, C, sd, 2) : t, wt ? w : NULL, g, (double)ign, smooth ? 0.1 : 0, 1, what);
    }
    /* the mean reduction's gradient: one value broadcast (stride 0) */
    nb_tensor *gb = nb_expand(rows_randn(NB_SHAPE(1), sd + 3000, 1.0), NB_SHAPE(N));
    ce(x, t, NULL, gb, -100, 0, 1, "ce broadcast g");
    nb_tensor *t2 = nb_slice(rows_targets(2 * N, C, sd + 7, -100), 0, 0, 2 * N, 2);
    ce(x, t2, NULL, g, -100, 0, 1, "ce strided targets");
    nb_tensor *xt = nb_transpose(rows_randn(NB_SHAPE(C, N), sd + 4000, 3.0), 0, 1);
    ce(xt, t, w, g, -100, 0.1, C == 1 || N <= 1 ? -1 : 0, "ce transposed logits");
}

/* N (6 or 8) rows of C logits with special values, and seed's per-sample
 * gradients and weights, each checked with and without weights and label
 * smoothing: +inf (row 0), a NaN (1), all -inf (2), one -inf (3), wide
 * (4), a big offset (5); N 8: signed zeros (6), denormals (7). */
static inline void rows_ce_special(int64_t N, int64_t C, uint64_t seed, rows_ce_fn ce) {
    nb_tensor *x = rows_randn(NB_SHAPE(N, C), seed, 1.0);
    float *p = nb_data(x);
    for (int64_t c = 0; c < C; c++) {
        p[2 * C + c] = -INFINITY;
        p[4 * C + c] *= 1e4f;
        p[5 * C + c] += 1e6f;
        if (N >= 8) {
            p[6 * C + c] = (c % 2 ? 0.0f : -0.0f);
            p[7 * C + c] = (c % 2 ? 1e-40f : -1e-39f);
        }
    }
    p[0 * C + 1] = INFINITY;
    p[1 * C + C / 2] = NAN;
    p[3 * C + 0] = -INFINITY;
    nb_tensor *g = rows_randn(NB_SHAPE(N), seed + 10, 1.0);
    nb_tensor *w = nb_contiguous(nb_add_scalar(nb_rand(NB_SHAPE(C), NB_F32, seed + 20), 0.5));
    for (int v = 0; v < 4; v++)
        ce(x, rows_targets(N, C, seed + 30, -100), v & 1 ? w : NULL, g, -100, v & 2 ? 0.2 : 0, 1, "ce special");
}

/* ---- the public ops ---- */

/* With autograd, on a (16, 37) x and targets: loss = cross_entropy(head(x),
 * t) + sum(softmax(x) x); res: the loss and three elements of x's
 * gradient. */
static inline void rows_public_ops(nb_tensor *(*head)(nb_tensor *x), double res[4]) {
    nb_tensor *x = nb_randn(NB_SHAPE(16, 37), NB_F32, 42);
    nb_set_requires_grad(x, true);
    nb_tensor *t = rows_targets(16, 37, 43, -100);
    nb_tensor *h = head(x);
    nb_tensor *loss = nb_add(nb_cross_entropy(h, t), nb_sum_all(nb_mul(nb_softmax(x, 1), x)));
    cr_assert_not_null(loss, "%s", nb_last_error());
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    const float *gx = nb_data(nb_contiguous(nb_grad(x)));
    res[0] = nb_item(loss);
    res[1] = gx[0];
    res[2] = gx[100];
    res[3] = gx[16 * 37 - 1];
}

/* res[0] (the kernels') within 1e-5 of res[1] (ref's). */
static inline void rows_public_ops_agree(double res[2][4]) {
    for (int i = 0; i < 4; i++)
        cr_assert(fabs(res[0][i] - res[1][i]) <= 1e-5 * (1 + fabs(res[1][i])), "value %d: %.9g vs ref %.9g", i,
                  res[0][i], res[1][i]);
}

#endif
