/* test_avx2_bnorm.c — the AVX2 batch_norm kernels (avx2_bnorm.c) against
 * the ref kernels, which gather each channel and work in double.
 *
 * - BATCH_NORM_STATS, BATCH_NORM (with and without weight and bias),
 *   BATCH_NORM_PARAM_BACKWARD, and BATCH_NORM_BACKWARD in training (stats
 *   (2, C), and (4, C) carrying the param-backward sums) and eval mode, on
 *   (N, C) (the across-channel loop: C a multiple of 8 and not), (N, C, L)
 *   with L below and above 8, (N, C, H, W) with rows that are and are not
 *   multiples of 8, a row longer than a sum block (1100), an output big
 *   enough for streaming stores, and data far from zero with a small spread
 *   (1000 + 0.01 randn: the variance and x - mean must not cancel).
 *   Error: max |got - ref| / max |ref| below BK_TOL (the stats: each
 *   channel's mean and variance relative to itself); served by the AVX2
 *   kernel.
 * - 1, 2 and 3 threads give the same bits.
 * - Declines: F64, a non-contiguous x.
 * Run at an explicit avx2 cap; skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

/* F32 sums in blocks into doubles against ref's double: ~1e-6 measured. */
#define BK_TOL 1e-5

static void bk_default(int threads) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .num_threads = threads, .abort_on_error = -1}), 0,
                 "nb_init: %s", nb_last_error());
}
static void bk_setup(void) { bk_default(0); }
static void bk_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(avx2_bnorm, .init = bk_setup, .fini = bk_teardown);

static void bk_need(void) {
    if (!nb__registry_has(NB_OP_BATCH_NORM_STATS, NB_F32, "avx2_"))
        cr_skip("no AVX2 batch_norm kernel within the ISA cap");
}

/* Runs op into a fresh out of `shape` (filled with NaN); *served: the kernel. */
static nb_tensor *bk_run(nb_op op, nb_dims shape, const nb_tensor *i0, const nb_tensor *i1, const nb_tensor *i2,
                         const nb_tensor *i3, int nin, double eps, double training, const char **served) {
    nb_tensor *out = nb_full(shape, NB_F32, NAN);
    cr_assert(out, "%s", nb_last_error());
    nb_kernel_args a = {.op = op, .out = out, .in = {i0, i1, i2, i3}, .nin = nin, .scalar = {eps, training}};
    cr_assert_eq(nb__dispatch(&a, "test_avx2_bnorm"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

/* The case's tensors: x (shape), dy, stats (2, C) from ref, w, b. */
typedef struct bk_in {
    nb_tensor *x, *dy, *stats, *w, *b;
    int64_t C;
} bk_in;

static bk_in bk_make(nb_dims shape, double offset, double scale) {
    bk_in t = {.C = shape.d[1]};
    t.x = nb_add_scalar(nb_mul_scalar(nb_randn(shape, NB_F32, 41), scale), offset);
    t.dy = nb_randn(shape, NB_F32, 42);
    t.w = nb_add_scalar(nb_randn(NB_SHAPE(t.C), NB_F32, 43), 0.5);
    t.b = nb_randn(NB_SHAPE(t.C), NB_F32, 44);
    cr_assert(t.x && t.dy && t.w && t.b, "%s", nb_last_error());
    return t;
}

static void bk_close(const char *what, nb_dims shape, nb_tensor *got, nb_tensor *ref, const char *served,
                     const char *want) {
    cr_assert(served && !strncmp(served, want, strlen(want)), "%s: served by %s, expected %s", what,
              served ? served : "?", want);
    double e = ot_rel_err(got, ref, false);
    cr_assert(e <= BK_TOL, "%s on %s: relative error %g (%s)", what, nb__shape_str(nb_empty(shape, NB_F32)), e,
              served);
}

/* Stats per channel: the variance within BK_TOL of itself (a variance 1e-4
 * next to a mean 1000 is checked on its own scale), the mean within BK_TOL
 * of |mean| + std (a mean near 0 is as exact as the data's spread allows). */
static void bk_stats_close(nb_tensor *got, nb_tensor *ref, int64_t C) {
    nb_tensor *g = nb_contiguous(got), *r = nb_contiguous(ref);
    const float *a = nb_data(g), *b = nb_data(r);
    for (int64_t i = 0; i < 2 * C; i++) {
        double scale = i < C ? fabs((double)b[i]) + sqrt((double)b[C + i]) : fabs((double)b[i]);
        double tol = BK_TOL * scale + 1e-30;
        cr_assert(fabs((double)a[i] - (double)b[i]) <= tol, "stats[%s][%lld]: avx2 %.9g ref %.9g",
                  i < C ? "mean" : "var", (long long)(i % C), (double)a[i], (double)b[i]);
    }
}

/* Every kernel on one shape, avx2 against ref. */
static void bk_check(nb_dims shape, double offset, double scale) {
    nb_scope_begin();
    bk_in t = bk_make(shape, offset, scale);
    nb_dims st2 = NB_SHAPE(2, t.C);
    const char *k, *kr;
    double eps = 1e-5;
    /* stats */
    nb_tensor *s_got = bk_run(NB_OP_BATCH_NORM_STATS, st2, t.x, NULL, NULL, NULL, 1, 0, 0, &k);
    ot_cap_ref();
    nb_tensor *s_ref = bk_run(NB_OP_BATCH_NORM_STATS, st2, t.x, NULL, NULL, NULL, 1, 0, 0, &kr);
    bk_default(0);
    cr_assert(!strncmp(k, "avx2_", 5), "stats served by %s", k);
    bk_stats_close(s_got, s_ref, t.C);
    t.stats = s_ref;
    /* forward, with and without weight and bias; param backward; backward */
    for (int v = 0; v < 6; v++) {
        nb_tensor *got = NULL, *ref = NULL;
        const char *what, *want;
        nb_tensor *st4 = NULL;
        if (v == 5) {   /* stats carrying ref's param-backward sums as rows 2 and 3 */
            nb_tensor *p = bk_run(NB_OP_BATCH_NORM_PARAM_BACKWARD, st2, t.dy, t.x, t.stats, NULL, 3, eps, 0, &k);
            st4 = nb_cat((nb_tensor *[]){t.stats, p}, 2, 0);
        }
        for (int cap = 0; cap < 2; cap++) {
            if (cap) ot_cap_ref();
            const char **ks = cap ? &kr : &k;
            nb_tensor *r;
            switch (v) {
            case 0: r = bk_run(NB_OP_BATCH_NORM, shape, t.x, t.stats, t.w, t.b, 4, eps, 0, ks); break;
            case 1: r = bk_run(NB_OP_BATCH_NORM, shape, t.x, t.stats, NULL, NULL, 4, eps, 0, ks); break;
            case 2: r = bk_run(NB_OP_BATCH_NORM_PARAM_BACKWARD, st2, t.dy, t.x, t.stats, NULL, 3, eps, 0, ks); break;
            case 3: r = bk_run(NB_OP_BATCH_NORM_BACKWARD, shape, t.dy, t.x, t.stats, t.w, 4, eps, 1, ks); break;
            case 4: r = bk_run(NB_OP_BATCH_NORM_BACKWARD, shape, t.dy, t.x, t.stats, NULL, 4, eps, 0, ks); break;
            default: r = bk_run(NB_OP_BATCH_NORM_BACKWARD, shape, t.dy, t.x, st4, t.w, 4, eps, 1, ks); break;
            }
            if (cap) ref = r;
            else got = r;
        }
        bk_default(0);
        static const char *names[6] = {"batch_norm (w, b)", "batch_norm (no w, b)", "batch_norm_param_backward",
                                       "batch_norm_backward training", "batch_norm_backward eval",
                                       "batch_norm_backward training, (4, C) stats"};
        what = names[v];
        want = v < 2 ? "avx2_batch_norm" : v == 2 ? "avx2_batch_norm_param" : "avx2_batch_norm_backward";
        cr_assert(!strncmp(kr, "ref", 3), "%s: capped run served by %s", what, kr);
        bk_close(what, shape, got, ref, k, want);
    }
    nb_scope_end();
}

Test(avx2_bnorm, two_dim_across_channels) {
    bk_need();
    bk_check(NB_SHAPE(7, 3), 0, 1);
    bk_check(NB_SHAPE(64, 37), 0.5, 2);
    bk_check(NB_SHAPE(130, 16), -1, 1);
}

Test(avx2_bnorm, rows_per_channel) {
    bk_need();
    bk_check(NB_SHAPE(4, 3, 5), 0, 1);
    bk_check(NB_SHAPE(2, 3, 4, 5), 1, 3);
    bk_check(NB_SHAPE(8, 16, 14, 14), 0, 1);
    bk_check(NB_SHAPE(3, 2, 1100), 0.25, 1);
    bk_check(NB_SHAPE(5, 7, 3, 3), 0, 1);
}

Test(avx2_bnorm, big_output_streams) {
    bk_need();
    bk_check(NB_SHAPE(4, 8, 192, 192), 0, 1);   /* 1.18M floats, rows of 36864 */
}

Test(avx2_bnorm, far_from_zero_small_spread) {
    bk_need();
    bk_check(NB_SHAPE(16, 4, 10, 10), 1000, 0.01);
    bk_check(NB_SHAPE(200, 9), -1000, 0.01);
}

/* The bits at 1, 2 and 3 threads (sizes above the grain, so the work splits). */
Test(avx2_bnorm, thread_count_independent) {
    bk_need();
    const nb_dims shapes[2] = {NB_SHAPE(32, 16, 20, 20), NB_SHAPE(4096, 40)};
    for (int s = 0; s < 2; s++) {
        nb_scope_begin();
        nb_dims shape = shapes[s];
        bk_in t = bk_make(shape, 0.5, 1);
        nb_tensor *res[3][4];
        const char *k;
        for (int th = 1; th <= 3; th++) {
            bk_default(th);
            nb_tensor *st = bk_run(NB_OP_BATCH_NORM_STATS, NB_SHAPE(2, t.C), t.x, NULL, NULL, NULL, 1, 0, 0, &k);
            res[th - 1][0] = st;
            res[th - 1][1] = bk_run(NB_OP_BATCH_NORM, shape, t.x, st, t.w, t.b, 4, 1e-5, 0, &k);
            res[th - 1][2] =
                bk_run(NB_OP_BATCH_NORM_PARAM_BACKWARD, NB_SHAPE(2, t.C), t.dy, t.x, st, NULL, 3, 1e-5, 0, &k);
            res[th - 1][3] = bk_run(NB_OP_BATCH_NORM_BACKWARD, shape, t.dy, t.x, st, t.w, 4, 1e-5, 1, &k);
        }
        for (int th = 1; th < 3; th++)
            for (int r = 0; r < 4; r++) {
                nb_tensor *a = res[0][r], *b = res[th][r];
                cr_assert(!memcmp(nb_data(a), nb_data(b), (size_t)nb_numel(a) * sizeof(float)),
                          "result %d differs at %d threads (shape %d)", r, th + 1, s);
            }
        bk_default(0);
        nb_scope_end();
    }
}

/* A NaN or inf in a channel gives ref's statistics (NaN variance, inf
 * mean), in both loops; an empty batch is left to ref (NaN statistics). */
Test(avx2_bnorm, non_finite_values_and_empty_batch) {
    bk_need();
    nb_scope_begin();
    const nb_dims shapes[2] = {NB_SHAPE(4, 3, 5), NB_SHAPE(6, 3)};
    for (int s = 0; s < 2; s++) {
        nb_tensor *x = nb_contiguous(nb_randn(shapes[s], NB_F32, 90));
        float *p = nb_data(x);
        int64_t S = s == 0 ? 5 : 1;
        p[1 * S + (S > 1 ? 2 : 0)] = NAN;                  /* channel 1 */
        p[(3 + 2) * S] = INFINITY;                         /* channel 2, sample 1: not the first value */
        const char *k, *kr;
        nb_tensor *got = bk_run(NB_OP_BATCH_NORM_STATS, NB_SHAPE(2, 3), x, NULL, NULL, NULL, 1, 0, 0, &k);
        ot_cap_ref();
        nb_tensor *ref = bk_run(NB_OP_BATCH_NORM_STATS, NB_SHAPE(2, 3), x, NULL, NULL, NULL, 1, 0, 0, &kr);
        bk_default(0);
        cr_assert(!strncmp(k, "avx2_", 5), "served by %s", k);
        const float *a = nb_data(got), *b = nb_data(ref);
        for (int i = 0; i < 6; i++) {
            if (isnan(b[i])) cr_assert(isnan(a[i]), "stats[%d]: avx2 %g, ref NaN (shape %d)", i, a[i], s);
            else if (isinf(b[i])) cr_assert_eq(a[i], b[i], "stats[%d]: avx2 %g, ref %g (shape %d)", i, a[i], b[i], s);
        }
        cr_assert(isnan(a[4]) && isnan(a[5]) && isnan(a[1]), "variances of channels 1 and 2 must be NaN (shape %d)", s);
    }
    const char *k;
    nb_tensor *e = nb_zeros(NB_SHAPE(0, 3, 5), NB_F32);
    nb_tensor *st = bk_run(NB_OP_BATCH_NORM_STATS, NB_SHAPE(2, 3), e, NULL, NULL, NULL, 1, 0, 0, &k);
    cr_assert(!strncmp(k, "ref", 3), "an empty batch served by %s", k);
    cr_assert(isnan(((float *)nb_data(st))[0]), "empty batch: mean %g", ((float *)nb_data(st))[0]);
    nb_scope_end();
}

Test(avx2_bnorm, declines_what_it_does_not_serve) {
    bk_need();
    nb_scope_begin();
    const char *k;
    nb_tensor *x64 = nb_randn(NB_SHAPE(4, 3, 5), NB_F64, 1);
    nb_tensor *s64 = nb_full(NB_SHAPE(2, 3), NB_F64, NAN);
    nb_kernel_args a = {.op = NB_OP_BATCH_NORM_STATS, .out = s64, .in = {x64}, .nin = 1};
    cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s", nb_last_error());
    cr_assert(!strncmp(nb__last_kernel(), "ref", 3), "F64 served by %s", nb__last_kernel());
    nb_tensor *xt = nb_transpose(nb_randn(NB_SHAPE(4, 5, 3), NB_F32, 2), 1, 2);   /* (4, 3, 5), not contiguous */
    bk_run(NB_OP_BATCH_NORM_STATS, NB_SHAPE(2, 3), xt, NULL, NULL, NULL, 1, 0, 0, &k);
    cr_assert(!strncmp(k, "ref", 3), "non-contiguous x served by %s", k);
    nb_scope_end();
}
