/* test_avx2_optim.c — the AVX2 optimizer-step and dropout kernels
 * (src/kernels/x86/avx2/avx2_optim.c) against the ref kernels.
 *
 * Error bound asserted: 0 ULP. The AVX2 kernels do ref's float operations in
 * ref's order (no FMA), so every parameter and state element must be
 * bitwise equal to ref's after every step (two NaNs count as equal: their
 * payloads may differ). Dropout outputs are bitwise equal (same Philox words,
 * same double-precision scaling).
 *
 * Each case runs the same inputs through the registry twice: ISA capped to
 * ref, then to avx2 (asserting that the avx2 kernel served the call). Sizes
 * 0, 1, 7, 15, 16, 17, 33, 1023, 4097 and one large enough to be split over
 * OpenMP threads; 6 steps each, every option combination; gradients hold
 * special values (±0, ±inf, NaN, denormals, large magnitudes) in a few
 * places. Non-contiguous operands must be declined. Skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "optim_testutil.h"
#include "testutil.h"

static void ao_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}

static void ao_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    if (!nb_cpu()->avx2_fma) cr_skip("no AVX2+FMA on this CPU");
}

TestSuite(avx2_optim, .init = ao_setup, .fini = ao_teardown);

static const int64_t ao_sizes[] = {0, 1, 7, 15, 16, 17, 33, 1023, 4097, 70001};
#define AO_NSIZES (int)(sizeof ao_sizes / sizeof ao_sizes[0])
#define AO_STEPS 6

/* ot_fill's generator state (xorshift64*): deterministic inputs. */
static uint64_t ao_rng = 88172645463325252ull;
/* Runs args with the ISA capped to `isa`; asserts the kernel named `want`
 * (a prefix) served the call. */
static void ao_run(nb_kernel_args *a, const char *isa, const char *want) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0, "%s", nb_last_error());
    cr_assert_eq(nb__dispatch(a, "test"), 0, "%s", nb_last_error());
    const char *k = nb__last_kernel();
    cr_assert(k && !strncmp(k, want, strlen(want)), "served by %s, expected %s", k ? k : "?", want);
}

static nb_tensor *ao_tensor(int64_t n, const float *v) {
    nb_tensor *t = nb_from_data(NB_SHAPE(n), NB_F32, v);
    cr_assert_not_null(t, "%s", nb_last_error());
    return t;
}

/* ---- SGD ---- */

/* One option set over every size and AO_STEPS steps. */
static void ao_sgd_case(double mom, double damp, double wd, bool nesterov, bool maximize, bool specials) {
    for (int si = 0; si < AO_NSIZES; si++) {
        int64_t n = ao_sizes[si];
        size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
        float *p0 = malloc(bytes), *g = malloc(bytes);
        cr_assert(p0 && g);
        ot_fill(&ao_rng, p0, n, false);
        nb_scope_begin();
        nb_tensor *pr = ao_tensor(n, p0), *pv = ao_tensor(n, p0);   /* ref's and avx2's copies */
        nb_tensor *br = mom != 0 ? ao_tensor(n, p0) : NULL, *bv = mom != 0 ? ao_tensor(n, p0) : NULL;
        for (int step = 0; step < AO_STEPS; step++) {
            ot_fill(&ao_rng, g, n, specials && step == 2);
            nb_tensor *gt = ao_tensor(n, g);
            double sc[8] = {0.05 * (step + 1), mom, damp, wd, nesterov, maximize, step == 0};
            nb_kernel_args ar = {.op = NB_OP_SGD_STEP, .out = pr, .in = {gt, br}, .nin = 2};
            nb_kernel_args av = {.op = NB_OP_SGD_STEP, .out = pv, .in = {gt, bv}, .nin = 2};
            memcpy(ar.scalar, sc, sizeof sc);
            memcpy(av.scalar, sc, sizeof sc);
            ao_run(&ar, "ref", "ref_sgd_step");
            ao_run(&av, "avx2", "avx2_sgd_step");
            ot_same(nb_data(pv), nb_data(pr), n, "avx2", "ref", "param");
            if (br) ot_same(nb_data(bv), nb_data(br), n, "avx2", "ref", "momentum_buffer");
        }
        nb_scope_end();
        free(p0);
        free(g);
    }
}

Test(avx2_optim, sgd_every_option) {
    for (int m = 0; m < 2; m++)
        for (int d = 0; d < 2; d++)
            for (int w = 0; w < 2; w++)
                for (int ne = 0; ne < 2; ne++)
                    for (int mx = 0; mx < 2; mx++)
                        ao_sgd_case(m ? 0.9 : 0, d ? 0.1 : 0, w ? 1e-2 : 0, ne, mx, false);
}

Test(avx2_optim, sgd_special_values) {
    ao_sgd_case(0.9, 0, 1e-2, true, false, true);
    ao_sgd_case(0, 0, 0, false, true, true);
}

/* ---- Adam / AdamW ---- */

static void ao_adam_case(double wd, bool decoupled, bool amsgrad, bool maximize, double eps, bool specials) {
    for (int si = 0; si < AO_NSIZES; si++) {
        int64_t n = ao_sizes[si];
        size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
        float *p0 = malloc(bytes), *z = calloc((size_t)(n ? n : 1), sizeof(float)), *g = malloc(bytes);
        cr_assert(p0 && z && g);
        ot_fill(&ao_rng, p0, n, false);
        nb_scope_begin();
        nb_tensor *t[2][4];   /* [ref, avx2][param, exp_avg, exp_avg_sq, max_exp_avg_sq] */
        for (int v = 0; v < 2; v++) {
            t[v][0] = ao_tensor(n, p0);
            t[v][1] = ao_tensor(n, z);
            t[v][2] = ao_tensor(n, z);
            t[v][3] = amsgrad ? ao_tensor(n, z) : NULL;
        }
        for (int step = 1; step <= AO_STEPS; step++) {
            ot_fill(&ao_rng, g, n, specials && step == 3);
            nb_tensor *gt = ao_tensor(n, g);
            double sc[8] = {1e-3 * step, 0.9, 0.999, eps, wd, step, decoupled, maximize};
            for (int v = 0; v < 2; v++) {
                nb_kernel_args a = {.op = NB_OP_ADAM_STEP, .out = t[v][0], .in = {gt, t[v][1], t[v][2], t[v][3]},
                                    .nin = 4};
                memcpy(a.scalar, sc, sizeof sc);
                ao_run(&a, v ? "avx2" : "ref", v ? "avx2_adam_step" : "ref_adam_step");
            }
            static const char *const names[4] = {"param", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
            for (int k = 0; k < (amsgrad ? 4 : 3); k++)
                ot_same(nb_data(t[1][k]), nb_data(t[0][k]), n, "avx2", "ref", names[k]);
        }
        nb_scope_end();
        free(p0);
        free(z);
        free(g);
    }
}

Test(avx2_optim, adam_every_option) {
    for (int w = 0; w < 2; w++)
        for (int dec = 0; dec < 2; dec++)
            for (int am = 0; am < 2; am++)
                for (int mx = 0; mx < 2; mx++) ao_adam_case(w ? 1e-2 : 0, dec, am, mx, 1e-8, false);
}

Test(avx2_optim, adam_special_values_and_zero_eps) {
    ao_adam_case(1e-2, false, true, false, 1e-8, true);   /* NaN reaches max_exp_avg_sq */
    ao_adam_case(0, true, false, true, 1e-8, true);
    ao_adam_case(0, false, false, false, 0, false);        /* eps 0: 0/0 in masked-off lanes is harmless */
}

/* Non-contiguous or non-F32 operands go to ref. */
Test(avx2_optim, declines_strided) {
    nb_scope_begin();
    nb_tensor *p = nb_transpose(nb_randn(NB_SHAPE(8, 9), NB_F32, 1), 0, 1);
    nb_tensor *g = nb_randn(NB_SHAPE(9, 8), NB_F32, 2);
    nb_kernel_args a = {.op = NB_OP_SGD_STEP, .out = p, .in = {g, NULL}, .nin = 2, .scalar = {0.1}};
    ao_run(&a, "avx2", "ref_sgd_step");
    nb_tensor *m1 = nb_zeros(NB_SHAPE(9, 8), NB_F32), *m2 = nb_zeros(NB_SHAPE(9, 8), NB_F32);
    nb_kernel_args b = {.op = NB_OP_ADAM_STEP, .out = p, .in = {g, m1, m2, NULL}, .nin = 4,
                        .scalar = {1e-3, 0.9, 0.999, 1e-8, 0, 1, 0, 0}};
    ao_run(&b, "avx2", "ref_adam_step");
    nb_tensor *x = nb_slice(nb_randn(NB_SHAPE(40), NB_F32, 3), 0, 0, 40, 2);
    nb_tensor *y = nb_zeros(NB_SHAPE(20), NB_F32), *seed = nb_zeros(NB_SHAPE0, NB_I64);
    nb_kernel_args c = {.op = NB_OP_DROPOUT, .out = y, .in = {x, seed}, .nin = 2, .scalar = {0.5}};
    ao_run(&c, "avx2", "ref_dropout");
    nb_scope_end();
}

/* ---- dropout ---- */

static void ao_dropout_case(int64_t n, double p, int64_t seed) {
    size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
    float *x = malloc(bytes);
    cr_assert(x);
    ot_fill(&ao_rng, x, n, true);
    nb_scope_begin();
    nb_tensor *xt = ao_tensor(n, x), *st = nb_zeros(NB_SHAPE0, NB_I64);
    *(int64_t *)nb_data(st) = seed;
    nb_tensor *y[2];
    for (int v = 0; v < 2; v++) {
        y[v] = nb_full(NB_SHAPE(n), NB_F32, 7.0);   /* every element must be written */
        nb_kernel_args a = {.op = NB_OP_DROPOUT, .out = y[v], .in = {xt, st}, .nin = 2, .scalar = {p}};
        ao_run(&a, v ? "avx2" : "ref", v ? "avx2_dropout" : "ref_dropout");
    }
    char what[96];
    snprintf(what, sizeof what, "dropout(p=%g, seed=%lld)", p, (long long)seed);
    ot_same(nb_data(y[1]), nb_data(y[0]), n, "avx2", "ref", what);
    nb_scope_end();
    free(x);
}

Test(avx2_optim, dropout_masks_bitwise) {
    static const double ps[] = {0, 1e-12, 0.1, 0.5, 0.9, 1 - 1e-12, 1};
    static const int64_t seeds[] = {0, 1, 12345, -1, (int64_t)0x123456789abcdefull};
    for (int si = 0; si < AO_NSIZES; si++)
        for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
            for (size_t ki = 0; ki < sizeof seeds / sizeof seeds[0]; ki++)
                ao_dropout_case(ao_sizes[si], ps[pi], seeds[ki]);
}

/* p on an exact 2^-32 grid point: the boundary word r == p * 2^32 is kept. */
Test(avx2_optim, dropout_threshold_boundary) {
    ao_dropout_case(4097, 0x80000000 / 4294967296.0, 7);
    ao_dropout_case(4097, 3.0 / 4294967296.0, 7);
    ao_dropout_case(4097, 4294967295.0 / 4294967296.0, 7);
}

/* The public op and its backward under both ISAs. */
Test(avx2_optim, dropout_op_and_backward) {
    enum { N = 33 * 31 };
    static float out[2][N], grad[2][N];
    for (int v = 0; v < 2; v++) {
        cr_assert_eq(nb_init(&(nb_init_opts){.isa = v ? "avx2" : "ref", .abort_on_error = -1}), 0);
        nb_scope_begin();
        nb_tensor *x = nb_randn(NB_SHAPE(33, 31), NB_F32, 5);
        nb_set_requires_grad(x, true);
        nb_tensor *y = nb_dropout(x, 0.3, true, 99);
        cr_assert_not_null(y, "%s", nb_last_error());
        cr_assert_eq(nb_backward(nb_sum_all(nb_mul(y, y)), NULL), 0, "%s", nb_last_error());
        cr_assert_eq(nb_copy_to(y, out[v], sizeof out[v]), 0, "%s", nb_last_error());
        cr_assert_eq(nb_copy_to(nb_grad(x), grad[v], sizeof grad[v]), 0, "%s", nb_last_error());
        nb_scope_end();
    }
    ot_same(out[1], out[0], N, "avx2", "ref", "nb_dropout");
    ot_same(grad[1], grad[0], N, "avx2", "ref", "grad");
}
