/* test_avx512_optim.c — the AVX-512 optimizer-step and dropout kernels
 * (src/kernels/x86/avx512/avx512_optim.c) against the ref and AVX2 ones.
 *
 * Error bound asserted: 0 ULP, for every op. The kernels do ref's float
 * operations in ref's order (no FMA), so every parameter and state element
 * must be bitwise equal to ref's and to the AVX2 kernel's after every step
 * (two NaNs count as equal: their payloads may differ); dropout outputs
 * are bitwise equal (the same Philox words, the same double-precision
 * scaling).
 *
 * Each case runs the same inputs through the registry three times: capped
 * at ref, at avx2, and at avx512 with nb__isa_prefer asking for the AVX-512
 * kernels first (so they serve whatever their priority), asserting which
 * kernel served each run. Sizes 0, 1, 7, 15, 16, 17, 33, 1023, 4097 (every
 * tail length and mask), at aligned and unaligned (4-byte offset) data, and
 * 70001 split over 3 OpenMP threads (split points off the even ones); 6
 * steps each, every option combination; gradients hold special values (±0,
 * ±inf, NaN, denormals, large magnitudes) in a few places. Non-contiguous
 * and F64 operands must be declined (then ref serves: the AVX2 kernels
 * decline them too) with the results the contiguous AVX-512 run gives.
 * Skipped on a CPU without AVX-512 F/BW/DQ/VL.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "optim_testutil.h"
#include "testutil.h"

static void o_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
    nb__isa_prefer = -1;
}

static void o_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    const nb_cpu_features *c = nb_cpu();
    if (!(c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl && c->avx2_fma))
        cr_skip("no AVX-512 on this CPU");
}

TestSuite(avx512_optim, .init = o_setup, .fini = o_teardown);

static const int64_t o_sizes[] = {0, 1, 7, 15, 16, 17, 33, 1023, 4097, 70001};
#define O_NSIZES (int)(sizeof o_sizes / sizeof o_sizes[0])
#define O_STEPS 6
#define O_BIG 70001   /* split over o_threads(): 2+ threads at both grains */

/* ot_fill's generator state (xorshift64*): deterministic inputs. */
static uint64_t o_rng = 0x9E3779B97F4A7C15ull;
/* The thread count for a run on n elements: 3 for the big size (uneven
 * split points), else the default. */
static int o_threads(int64_t n) { return n >= O_BIG ? 3 : 0; }

/* The three variants under test: the ISA cap, the preference, the prefix
 * of the kernel that must serve. */
enum { O_REF, O_AVX2, O_AVX512, O_NV };
static const char *const o_isa[O_NV] = {"ref", "avx2", "avx512"};
static const char *const o_prefix[O_NV] = {"ref_", "avx2_", "avx512_"};

/* Sets the ISA cap to isa (and nb__isa_prefer to AVX-512 under the avx512
 * cap: nb_init resets it), nt threads (0: default). */
static void o_init(int v, int nt) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = o_isa[v], .num_threads = nt, .abort_on_error = -1}), 0, "%s",
                 nb_last_error());
    nb__isa_prefer = v == O_AVX512 ? NB_ISA_AVX512 : -1;
}

/* Runs args as variant v on nt threads; asserts that a kernel named
 * want (a prefix) served the call. */
static void o_run(nb_kernel_args *a, int v, int nt, const char *want) {
    o_init(v, nt);
    cr_assert_eq(nb__dispatch(a, "test"), 0, "%s", nb_last_error());
    const char *k = nb__last_kernel();
    cr_assert(k && !strncmp(k, want, strlen(want)), "%s run: served by %s, expected %s", o_isa[v], k ? k : "?", want);
}

/* A contiguous 1-D F32 tensor holding v[0..n) whose data starts `off`
 * floats into its storage (off 1: not 16- or 64-byte aligned). */
static nb_tensor *o_vec(const float *v, int64_t n, int off) {
    nb_tensor *t = nb_slice(nb_empty(NB_SHAPE(n + off), NB_F32), 0, off, n + off, 1);
    cr_assert(t && nb_is_contiguous(t), "%s", nb_last_error());
    if (n) memcpy(nb_data(t), v, sizeof *v * (size_t)n);
    return t;
}

/* ---- SGD ---- */

/* One option set over every size, both alignments and O_STEPS steps. */
static void o_sgd_case(double mom, double damp, double wd, bool nesterov, bool maximize, bool specials) {
    for (int si = 0; si < O_NSIZES; si++)
        for (int off = 0; off < 2; off++) {
            int64_t n = o_sizes[si];
            size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
            float *p0 = malloc(bytes), *g = malloc(bytes);
            cr_assert(p0 && g);
            ot_fill(&o_rng, p0, n, false);
            nb_scope_begin();
            nb_tensor *p[O_NV], *b[O_NV];   /* each variant's parameter and momentum buffer */
            for (int v = 0; v < O_NV; v++) {
                p[v] = o_vec(p0, n, off);
                b[v] = mom != 0 ? o_vec(p0, n, 1 - off) : NULL;
            }
            for (int step = 0; step < O_STEPS; step++) {
                ot_fill(&o_rng, g, n, specials && step == 2);
                nb_tensor *gt = o_vec(g, n, off);
                for (int v = 0; v < O_NV; v++) {
                    nb_kernel_args a = {.op = NB_OP_SGD_STEP, .out = p[v], .in = {gt, b[v]}, .nin = 2,
                                        .scalar = {0.05 * (step + 1), mom, damp, wd, nesterov, maximize, step == 0}};
                    char want[32];
                    snprintf(want, sizeof want, "%ssgd_step", o_prefix[v]);
                    o_run(&a, v, o_threads(n), want);
                }
                for (int v = O_REF; v < O_AVX512; v++) {
                    ot_same(nb_data(p[O_AVX512]), nb_data(p[v]), n, "avx512", o_isa[v], "param");
                    if (mom != 0)
                        ot_same(nb_data(b[O_AVX512]), nb_data(b[v]), n, "avx512", o_isa[v], "momentum_buffer");
                }
            }
            nb_scope_end();
            free(p0);
            free(g);
        }
}

Test(avx512_optim, sgd_every_option) {
    for (int m = 0; m < 2; m++)
        for (int d = 0; d < 2; d++)
            for (int w = 0; w < 2; w++)
                for (int ne = 0; ne < 2; ne++)
                    for (int mx = 0; mx < 2; mx++)
                        o_sgd_case(m ? 0.9 : 0, d ? 0.1 : 0, w ? 1e-2 : 0, ne, mx, false);
}

Test(avx512_optim, sgd_special_values) {
    o_sgd_case(0.9, 0, 1e-2, true, false, true);
    o_sgd_case(0.9, 0.5, 0, false, false, true);
    o_sgd_case(0, 0, 0, false, true, true);
}

/* A momentum buffer passed with momentum 0 is left alone (ref's `mom != 0 && buf`). */
Test(avx512_optim, sgd_buffer_without_momentum_untouched) {
    float pv[33], bv[33], gv[33];
    ot_fill(&o_rng, pv, 33, false);
    ot_fill(&o_rng, bv, 33, false);
    ot_fill(&o_rng, gv, 33, false);
    nb_scope_begin();
    nb_tensor *p = o_vec(pv, 33, 0), *b = o_vec(bv, 33, 0), *g = o_vec(gv, 33, 0);
    nb_kernel_args a = {.op = NB_OP_SGD_STEP, .out = p, .in = {g, b}, .nin = 2, .scalar = {0.1, 0, 0, 0, 0, 0, 0}};
    o_run(&a, O_AVX512, 0, "avx512_sgd_step");
    ot_same(nb_data(b), bv, 33, "avx512", "the buffer before", "momentum_buffer");
}

/* ---- Adam / AdamW ---- */

static void o_adam_case(double wd, bool decoupled, bool amsgrad, bool maximize, double eps, bool specials) {
    static const char *const names[4] = {"param", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    for (int si = 0; si < O_NSIZES; si++)
        for (int off = 0; off < 2; off++) {
            int64_t n = o_sizes[si];
            size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
            float *p0 = malloc(bytes), *z = calloc((size_t)(n ? n : 1), sizeof(float)), *g = malloc(bytes);
            cr_assert(p0 && z && g);
            ot_fill(&o_rng, p0, n, false);
            nb_scope_begin();
            nb_tensor *t[O_NV][4];   /* [variant][param, exp_avg, exp_avg_sq, max_exp_avg_sq] */
            for (int v = 0; v < O_NV; v++) {
                t[v][0] = o_vec(p0, n, off);
                t[v][1] = o_vec(z, n, 1 - off);
                t[v][2] = o_vec(z, n, off);
                t[v][3] = amsgrad ? o_vec(z, n, 1 - off) : NULL;
            }
            for (int step = 1; step <= O_STEPS; step++) {
                ot_fill(&o_rng, g, n, specials && step == 3);
                nb_tensor *gt = o_vec(g, n, 1 - off);
                for (int v = 0; v < O_NV; v++) {
                    nb_kernel_args a = {.op = NB_OP_ADAM_STEP, .out = t[v][0],
                                        .in = {gt, t[v][1], t[v][2], t[v][3]}, .nin = 4,
                                        .scalar = {1e-3 * step, 0.9, 0.999, eps, wd, step, decoupled, maximize}};
                    char want[32];
                    snprintf(want, sizeof want, "%sadam_step", o_prefix[v]);
                    o_run(&a, v, o_threads(n), want);
                }
                for (int v = O_REF; v < O_AVX512; v++)
                    for (int k = 0; k < (amsgrad ? 4 : 3); k++)
                        ot_same(nb_data(t[O_AVX512][k]), nb_data(t[v][k]), n, "avx512", o_isa[v], names[k]);
            }
            nb_scope_end();
            free(p0);
            free(z);
            free(g);
        }
}

Test(avx512_optim, adam_every_option) {
    for (int w = 0; w < 2; w++)
        for (int dec = 0; dec < 2; dec++)
            for (int am = 0; am < 2; am++)
                for (int mx = 0; mx < 2; mx++) o_adam_case(w ? 1e-2 : 0, dec, am, mx, 1e-8, false);
}

Test(avx512_optim, adam_special_values_and_zero_eps) {
    o_adam_case(1e-2, false, true, false, 1e-8, true);   /* NaN reaches max_exp_avg_sq */
    o_adam_case(1e-2, true, true, true, 1e-8, true);
    o_adam_case(0, true, false, true, 1e-8, true);
    o_adam_case(0, false, false, false, 0, false);        /* eps 0: 0/0 in masked-off lanes is harmless */
}

/* amsgrad's max: a NaN in v replaces the max, a NaN already in the max
 * stays, a larger v replaces it, a smaller one does not (ref's
 * `v > mx || v != v`), at every lane position and in the tail. */
Test(avx512_optim, adam_amsgrad_max_rule) {
    enum { N = 37 };
    float p0[N], g[N], m2[N], mx[N];
    for (int i = 0; i < N; i++) {
        p0[i] = 0.5f;
        g[i] = i % 4 == 0 ? NAN : 0.25f;                 /* NaN g -> NaN v */
        m2[i] = 0.0f;
        mx[i] = i % 4 == 1 ? NAN : i % 4 == 2 ? 1.0f : 0.0f;   /* NaN max stays; 1 > v stays; 0 < v replaced */
    }
    nb_scope_begin();
    nb_tensor *t[O_NV][4];
    for (int v = 0; v < O_NV; v++) {
        t[v][0] = o_vec(p0, N, 0);
        t[v][1] = o_vec(m2, N, 0);
        t[v][2] = o_vec(m2, N, 0);
        t[v][3] = o_vec(mx, N, 0);
    }
    nb_tensor *gt = o_vec(g, N, 0);
    for (int v = 0; v < O_NV; v++) {
        nb_kernel_args a = {.op = NB_OP_ADAM_STEP, .out = t[v][0], .in = {gt, t[v][1], t[v][2], t[v][3]}, .nin = 4,
                            .scalar = {1e-3, 0.9, 0.999, 1e-8, 0, 1, 0, 0}};
        char want[32];
        snprintf(want, sizeof want, "%sadam_step", o_prefix[v]);
        o_run(&a, v, 0, want);
    }
    const float *got = nb_data(t[O_AVX512][3]);
    for (int i = 0; i < N; i++) {
        if (i % 4 <= 1) cr_assert(isnan(got[i]), "max[%d] = %g, want NaN", i, (double)got[i]);
        else if (i % 4 == 2) cr_assert_eq(got[i], 1.0f, "max[%d] = %g, want 1 kept", i, (double)got[i]);
        else cr_assert(got[i] > 0 && got[i] < 1, "max[%d] = %g, want v", i, (double)got[i]);
    }
    for (int v = O_REF; v < O_AVX512; v++)
        for (int k = 0; k < 4; k++)
            ot_same(nb_data(t[O_AVX512][k]), nb_data(t[v][k]), N, "avx512", o_isa[v], "amsgrad state");
}

/* ---- dropout ---- */

/* dropout(x, p, seed) of n elements at data offset off, on nt threads:
 * the avx512 output bitwise equal to ref's and avx2's. */
static void o_dropout_case(int64_t n, double p, int64_t seed, int off, int nt) {
    size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
    float *x = malloc(bytes), *sev = malloc(bytes);
    cr_assert(x && sev);
    ot_fill(&o_rng, x, n, true);
    for (int64_t i = 0; i < n; i++) sev[i] = 7.0f;   /* every element must be written */
    nb_scope_begin();
    nb_tensor *xt = o_vec(x, n, off), *st = nb_zeros(NB_SHAPE0, NB_I64);
    *(int64_t *)nb_data(st) = seed;
    nb_tensor *y[O_NV];
    for (int v = 0; v < O_NV; v++) {
        y[v] = o_vec(sev, n, 1 - off);
        nb_kernel_args a = {.op = NB_OP_DROPOUT, .out = y[v], .in = {xt, st}, .nin = 2, .scalar = {p}};
        char want[32];
        snprintf(want, sizeof want, "%sdropout", o_prefix[v]);
        o_run(&a, v, nt, want);
    }
    char what[96];
    snprintf(what, sizeof what, "dropout(n=%lld, p=%g, seed=%lld)", (long long)n, p, (long long)seed);
    for (int v = O_REF; v < O_AVX512; v++) ot_same(nb_data(y[O_AVX512]), nb_data(y[v]), n, "avx512", o_isa[v], what);
    nb_scope_end();
    free(x);
    free(sev);
}

Test(avx512_optim, dropout_masks_bitwise) {
    static const double ps[] = {0, 1e-12, 0.1, 0.5, 0.9, 1 - 1e-12, 1, -0.5, NAN};
    static const int64_t seeds[] = {0, 1, 12345, -1, (int64_t)0x123456789abcdefull};
    for (int si = 0; si < O_NSIZES; si++)
        for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
            for (size_t ki = 0; ki < sizeof seeds / sizeof seeds[0]; ki++)
                o_dropout_case(o_sizes[si], ps[pi], seeds[ki], (int)((si + ki) & 1), o_threads(o_sizes[si]));
}

/* p on an exact 2^-32 grid point: the boundary word r == p * 2^32 is kept. */
Test(avx512_optim, dropout_threshold_boundary) {
    o_dropout_case(4097, 0x80000000 / 4294967296.0, 7, 0, 0);
    o_dropout_case(4097, 3.0 / 4294967296.0, 7, 1, 0);
    o_dropout_case(4097, 4294967295.0 / 4294967296.0, 7, 0, 0);
    /* p = r / 2^32 for a word r that is drawn: the element drawing exactly
     * r is kept (ref's `(double)r >= p * 2^32`), the one just below is not */
    uint32_t w[4];
    nb__philox(7, 5, w);   /* elements 20..23 of seed 7 */
    double p = w[1] / 4294967296.0;
    o_dropout_case(4097, p, 7, 1, 0);
    float x[33];
    for (int i = 0; i < 33; i++) x[i] = 1.0f;
    nb_scope_begin();
    nb_tensor *xt = o_vec(x, 33, 0), *y = o_vec(x, 33, 1), *st = nb_zeros(NB_SHAPE0, NB_I64);
    *(int64_t *)nb_data(st) = 7;
    nb_kernel_args a = {.op = NB_OP_DROPOUT, .out = y, .in = {xt, st}, .nin = 2, .scalar = {p}};
    o_run(&a, O_AVX512, 0, "avx512_dropout");
    cr_assert_eq(((const float *)nb_data(y))[21], (float)(1.0 / (1.0 - p)), "the word equal to p * 2^32 is dropped");
    a.scalar[0] = (w[1] + 1.0) / 4294967296.0;
    o_run(&a, O_AVX512, 0, "avx512_dropout");
    cr_assert_eq(((const float *)nb_data(y))[21], 0.0f, "the word just below p * 2^32 is kept");
    nb_scope_end();
}

/* 1M + 37 elements, split over 1, 2 and 3 threads: the split falls on
 * Philox blocks, so each thread count gives the same bits (and ref's). */
Test(avx512_optim, dropout_threads) {
    for (int nt = 1; nt <= 3; nt++) o_dropout_case((1 << 20) + 37, 0.3, 42 + nt, nt & 1, nt);
}

/* The public op and its backward: under the avx512 preference the forward
 * is served by avx512_dropout; out and grad bitwise equal to ref's. */
Test(avx512_optim, dropout_op_and_backward) {
    enum { N = 33 * 31 };
    static float out[O_NV][N], grad[O_NV][N];
    for (int v = 0; v < O_NV; v++) {
        o_init(v, 0);
        nb_scope_begin();
        nb_tensor *x = nb_randn(NB_SHAPE(33, 31), NB_F32, 5);
        nb_set_requires_grad(x, true);
        nb_tensor *y = nb_dropout(x, 0.3, true, 99);
        cr_assert_not_null(y, "%s", nb_last_error());
        const char *k = nb__last_kernel();
        cr_assert(k && !strncmp(k, o_prefix[v], strlen(o_prefix[v])), "%s: forward served by %s", o_isa[v],
                  k ? k : "?");
        cr_assert_eq(nb_backward(nb_sum_all(nb_mul(y, y)), NULL), 0, "%s", nb_last_error());
        cr_assert_eq(nb_copy_to(y, out[v], sizeof out[v]), 0, "%s", nb_last_error());
        cr_assert_eq(nb_copy_to(nb_grad(x), grad[v], sizeof grad[v]), 0, "%s", nb_last_error());
        nb_scope_end();
    }
    for (int v = O_REF; v < O_AVX512; v++) {
        ot_same(out[O_AVX512], out[v], N, "avx512", o_isa[v], "nb_dropout");
        ot_same(grad[O_AVX512], grad[v], N, "avx512", o_isa[v], "grad");
    }
}

/* ---- what the kernels decline ---- */

/* Non-contiguous and F64 operands are declined (the AVX2 kernels decline
 * them too, so ref serves under the avx512 cap and preference), with the
 * result of the contiguous AVX-512 run on the same memory. The update
 * kernels index their operands' storage flat (the optimizer keeps them
 * contiguous), so their contiguous twin holds the same storage. */
Test(avx512_optim, declines_non_contiguous_and_f64) {
    nb_scope_begin();
    /* SGD, a transposed parameter */
    nb_tensor *ps = nb_randn(NB_SHAPE(9, 8), NB_F32, 1), *pc = nb_contiguous(nb_clone(ps));
    nb_tensor *g = nb_randn(NB_SHAPE(9, 8), NB_F32, 2), *bs = nb_randn(NB_SHAPE(9, 8), NB_F32, 3);
    nb_tensor *bc = nb_clone(bs);
    cr_assert(ps && pc && g && bs && bc, "%s", nb_last_error());
    nb_tensor *pt = nb_transpose(ps, 0, 1);
    double sc[8] = {0.1, 0.9, 0, 1e-2, 1, 0, 0};
    nb_kernel_args a = {.op = NB_OP_SGD_STEP, .out = pt, .in = {g, bs}, .nin = 2};
    nb_kernel_args ac = {.op = NB_OP_SGD_STEP, .out = pc, .in = {g, bc}, .nin = 2};
    memcpy(a.scalar, sc, sizeof sc);
    memcpy(ac.scalar, sc, sizeof sc);
    o_run(&a, O_AVX512, 0, "ref_sgd_step");
    o_run(&ac, O_AVX512, 0, "avx512_sgd_step");
    ot_same(nb_data(pc), nb_data(ps), 72, "avx512", "ref (transposed)", "param");
    ot_same(nb_data(bc), nb_data(bs), 72, "avx512", "ref (transposed)", "momentum_buffer");
    /* SGD, a strided gradient and a strided buffer */
    nb_tensor *gs = nb_slice(nb_randn(NB_SHAPE(144), NB_F32, 4), 0, 0, 144, 2);
    nb_tensor *p1 = nb_randn(NB_SHAPE(72), NB_F32, 5);
    nb_tensor *bstr = nb_slice(nb_zeros(NB_SHAPE(144), NB_F32), 0, 0, 144, 2);
    nb_kernel_args a2 = {.op = NB_OP_SGD_STEP, .out = p1, .in = {gs, NULL}, .nin = 2, .scalar = {0.1}};
    o_run(&a2, O_AVX512, 0, "ref_sgd_step");
    nb_kernel_args a3 = {.op = NB_OP_SGD_STEP, .out = p1, .in = {nb_contiguous(gs), bstr}, .nin = 2,
                         .scalar = {0.1, 0.9}};
    o_run(&a3, O_AVX512, 0, "ref_sgd_step");
    /* Adam, a transposed parameter; then a strided exp_avg_sq */
    nb_tensor *as = nb_randn(NB_SHAPE(9, 8), NB_F32, 6), *ac2 = nb_clone(as);
    nb_tensor *m1 = nb_zeros(NB_SHAPE(9, 8), NB_F32), *m2 = nb_zeros(NB_SHAPE(9, 8), NB_F32);
    nb_tensor *n1 = nb_zeros(NB_SHAPE(9, 8), NB_F32), *n2 = nb_zeros(NB_SHAPE(9, 8), NB_F32);
    double asc[8] = {1e-3, 0.9, 0.999, 1e-8, 1e-2, 1, 1, 0};
    nb_kernel_args b = {.op = NB_OP_ADAM_STEP, .out = nb_transpose(as, 0, 1), .in = {g, m1, m2, NULL}, .nin = 4};
    nb_kernel_args bc2 = {.op = NB_OP_ADAM_STEP, .out = ac2, .in = {g, n1, n2, NULL}, .nin = 4};
    memcpy(b.scalar, asc, sizeof asc);
    memcpy(bc2.scalar, asc, sizeof asc);
    o_run(&b, O_AVX512, 0, "ref_adam_step");
    o_run(&bc2, O_AVX512, 0, "avx512_adam_step");
    ot_same(nb_data(ac2), nb_data(as), 72, "avx512", "ref (transposed)", "param");
    ot_same(nb_data(n1), nb_data(m1), 72, "avx512", "ref (transposed)", "exp_avg");
    ot_same(nb_data(n2), nb_data(m2), 72, "avx512", "ref (transposed)", "exp_avg_sq");
    nb_tensor *m2s = nb_slice(nb_zeros(NB_SHAPE(144), NB_F32), 0, 0, 144, 2);
    nb_kernel_args b2 = {.op = NB_OP_ADAM_STEP, .out = p1, .in = {nb_contiguous(gs), nb_zeros(NB_SHAPE(72), NB_F32),
                         m2s, NULL}, .nin = 4};
    memcpy(b2.scalar, asc, sizeof asc);
    o_run(&b2, O_AVX512, 0, "ref_adam_step");
    /* dropout: strided x, transposed out, broadcast x */
    nb_tensor *seed = nb_zeros(NB_SHAPE0, NB_I64);
    *(int64_t *)nb_data(seed) = 77;
    nb_tensor *xs = nb_slice(nb_randn(NB_SHAPE(2 * 1023), NB_F32, 7), 0, 0, 2 * 1023, 2);
    nb_tensor *ys = nb_empty(NB_SHAPE(1023), NB_F32), *yc = nb_empty(NB_SHAPE(1023), NB_F32);
    nb_kernel_args c = {.op = NB_OP_DROPOUT, .out = ys, .in = {xs, seed}, .nin = 2, .scalar = {0.4}};
    nb_kernel_args cc = {.op = NB_OP_DROPOUT, .out = yc, .in = {nb_contiguous(xs), seed}, .nin = 2, .scalar = {0.4}};
    o_run(&c, O_AVX512, 0, "ref_dropout");
    o_run(&cc, O_AVX512, 0, "avx512_dropout");
    ot_same(nb_data(yc), nb_data(ys), 1023, "avx512", "ref (strided x)", "dropout");
    nb_tensor *x2 = nb_randn(NB_SHAPE(37, 29), NB_F32, 8);
    nb_tensor *yt = nb_transpose(nb_empty(NB_SHAPE(29, 37), NB_F32), 0, 1), *y2 = nb_empty(NB_SHAPE(37, 29), NB_F32);
    nb_kernel_args d = {.op = NB_OP_DROPOUT, .out = yt, .in = {x2, seed}, .nin = 2, .scalar = {0.4}};
    nb_kernel_args dc = {.op = NB_OP_DROPOUT, .out = y2, .in = {x2, seed}, .nin = 2, .scalar = {0.4}};
    o_run(&d, O_AVX512, 0, "ref_dropout");
    o_run(&dc, O_AVX512, 0, "avx512_dropout");
    ot_same(nb_data(y2), nb_data(nb_contiguous(yt)), 37 * 29, "avx512", "ref (transposed out)", "dropout");
    nb_tensor *xb = nb_expand(nb_randn(NB_SHAPE(29), NB_F32, 9), NB_SHAPE(37, 29));
    nb_kernel_args e = {.op = NB_OP_DROPOUT, .out = y2, .in = {xb, seed}, .nin = 2, .scalar = {0.4}};
    o_run(&e, O_AVX512, 0, "ref_dropout");
    /* F64 never reaches the F32 kernels */
    nb_tensor *p64 = nb_randn(NB_SHAPE(33), NB_F64, 10), *g64 = nb_randn(NB_SHAPE(33), NB_F64, 11);
    nb_kernel_args f = {.op = NB_OP_SGD_STEP, .out = p64, .in = {g64, NULL}, .nin = 2, .scalar = {0.1}};
    o_run(&f, O_AVX512, 0, "ref_sgd_step_f64");
    nb_tensor *y64 = nb_empty(NB_SHAPE(33), NB_F64);
    nb_kernel_args h = {.op = NB_OP_DROPOUT, .out = y64, .in = {g64, seed}, .nin = 2, .scalar = {0.4}};
    o_run(&h, O_AVX512, 0, "ref_dropout");
    nb_scope_end();
}

/* The kernels are registered for F32 under the avx512 cap only, and the
 * registry (no preference) chooses them where they measured faster:
 * sgd_step and dropout; adam_step stays with avx2. */
Test(avx512_optim, registered_per_cap) {
    static const nb_op ops[] = {NB_OP_SGD_STEP, NB_OP_ADAM_STEP, NB_OP_DROPOUT};
    static const char *const chosen[] = {"avx512_sgd_step_f32", "avx2_adam_step_f32", "avx512_dropout_f32"};
    for (int i = 0; i < 3; i++) {
        o_init(O_AVX512, 0);
        cr_assert(nb__registry_has(ops[i], NB_F32, "avx512_"), "%s: no avx512 kernel", nb_op_name(ops[i]));
        cr_assert(!nb__registry_has(ops[i], NB_F64, "avx512_"), "%s: an F64 avx512 kernel", nb_op_name(ops[i]));
        const char *k = nb_kernel_chosen(ops[i], NB_F32);
        cr_assert(k && !strcmp(k, chosen[i]), "%s: chosen %s, want %s", nb_op_name(ops[i]), k ? k : "(none)",
                  chosen[i]);
        o_init(O_AVX2, 0);
        cr_assert(!nb__registry_has(ops[i], NB_F32, "avx512_"), "%s: avx512 under the avx2 cap", nb_op_name(ops[i]));
    }
}
