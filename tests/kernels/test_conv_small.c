/* test_conv_small.c — the AVX2 direct convolutions for 1-4 input channels
 * (avx2_conv_small.c) against the ref kernels, which sum in double.
 *
 * - CONV2D and CONV_BWD_WEIGHT for 1, 2, 3 and 4 input channels, 8, 13 and
 *   32 output channels (blocks of 6 with a remainder), 1x1 to 7x7 kernels,
 *   paddings 0..r-1, row lengths that are and are not multiples of 8 and 16,
 *   bias and none; transposed / strided / permuted operands and a strided
 *   output. Error max |got - ref| / max |ref| below CS_TOL, served by the
 *   kernel under test.
 * - 1 to 5 threads give the same bits (batch 37: 13 chunks for the weight
 *   gradient).
 * - An inf input read only by the partial last 8 columns of a row: the
 *   weight gradient taps that never see it in a direct convolution stay
 *   finite (the lanes past the row are zeroed in both factors).
 * - Declines: 5+ input channels, fewer than 8 outputs, stride 2, dilation 2,
 *   groups 2, a non-square or 9x9 kernel, F64, a gy without unit stride
 *   along W (backward-weights).
 * Run at an explicit avx2 cap; skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

/* Measured here: up to 5.7e-7 forward, 2.6e-7 backward-weights (lane-wise float sums). */
#define CS_TOL 1e-5

static void cs_default(void) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .abort_on_error = -1}), 0, "nb_init: %s", nb_last_error());
}
static void cs_setup_suite(void) { cs_default(); }
static void cs_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(conv_small, .init = cs_setup_suite, .fini = cs_teardown);

static void cs_need(void) {
    if (!nb__registry_has(NB_OP_CONV2D, NB_F32, "avx2_conv_small"))
        cr_skip("no AVX2 kernel within the ISA cap");
}

typedef struct cs_case {
    int64_t n, ci, h, w, co, r, pad;
    bool bias;
    char layout;   /* 'c', 't' (x or gy with H, W swapped in memory), 's' (every 2nd W element),
                      'w' (weight permuted), 'o' (strided output / gy every 2nd channel) */
} cs_case;

static nb_tensor *cs_out(nb_dims shape, char layout) {
    if (layout != 'o') return nb_full(shape, NB_F32, NAN);
    nb_dims m = shape;
    m.d[1] *= 2;
    return nb_slice(nb_full(m, NB_F32, NAN), 1, 0, m.d[1], 2);
}

static nb_tensor *cs_dispatch(nb_op op, nb_tensor *out, const nb_tensor *a, const nb_tensor *b,
                              const nb_tensor *bias, int64_t pad, int64_t stride, int64_t dil, int64_t groups,
                              const char **served) {
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b, bias}, .nin = bias ? 3 : 2};
    double geo[7] = {(double)stride, (double)stride, (double)pad, (double)pad, (double)dil, (double)dil, (double)groups};
    memcpy(args.scalar, geo, sizeof geo);
    cr_assert_eq(nb__dispatch(&args, "test_conv_small"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

/* op of case c computed at the avx2 cap and at ref; returns the ref result (and *got). */
static void cs_check(const cs_case *c, nb_op op) {
    nb_scope_begin();
    int64_t oh = c->h + 2 * c->pad - c->r + 1, ow = c->w + 2 * c->pad - c->r + 1;
    nb_dims xs = NB_SHAPE(c->n, c->ci, c->h, c->w), ys = NB_SHAPE(c->n, c->co, oh, ow);
    nb_dims ws = NB_SHAPE(c->co, c->ci, c->r, c->r);
    nb_tensor *a = ot_conv_rand(xs, c->layout, false, 21), *b, *bias = NULL, *got, *ref;
    const char *k1, *k2;
    if (op == NB_OP_CONV2D) {
        b = ot_conv_rand(ws, c->layout, true, 22);
        if (c->bias) bias = nb_randn(NB_SHAPE(c->co), NB_F32, 23);
        got = cs_dispatch(op, cs_out(ys, c->layout), a, b, bias, c->pad, 1, 1, 1, &k1);
        ot_cap_ref();
        ref = cs_dispatch(op, cs_out(ys, c->layout), a, b, bias, c->pad, 1, 1, 1, &k2);
    } else {   /* gy: strided per channel for 'o', otherwise as x */
        char gl = c->layout == 'o' ? 'c' : c->layout;
        b = ot_conv_rand(ys, gl, false, 24);
        if (c->layout == 'o') {
            nb_dims m = ys;
            m.d[1] *= 2;
            b = nb_slice(nb_randn(m, NB_F32, 24), 1, 0, m.d[1], 2);
        }
        got = cs_dispatch(op, nb_full(ws, NB_F32, NAN), a, b, NULL, c->pad, 1, 1, 1, &k1);
        ot_cap_ref();
        ref = cs_dispatch(op, nb_full(ws, NB_F32, NAN), a, b, NULL, c->pad, 1, 1, 1, &k2);
    }
    cs_default();
    cr_assert(!strncmp(k2, "ref", 3), "capped run served by %s", k2);
    bool expect = !(op == NB_OP_CONV_BWD_WEIGHT && (c->layout == 't' || c->layout == 's'));   /* gy W stride != 1 */
    if (expect)
        cr_assert(!strncmp(k1, "avx2_conv_small", 15), "%s ci=%lld co=%lld r=%lld served by %s", nb_op_name(op),
                  (long long)c->ci, (long long)c->co, (long long)c->r, k1);
    double e = ot_rel_err(got, ref, false);
    cr_assert(e <= CS_TOL, "%s n=%lld ci=%lld co=%lld %lldx%lld r=%lld pad %lld layout %c (%s): relative error %g",
              nb_op_name(op), (long long)c->n, (long long)c->ci, (long long)c->co, (long long)c->h, (long long)c->w,
              (long long)c->r, (long long)c->pad, c->layout, k1, e);
    nb_scope_end();
}

static void cs_both(const cs_case *c) {
    cs_check(c, NB_OP_CONV2D);
    cs_check(c, NB_OP_CONV_BWD_WEIGHT);
}

Test(conv_small, lenet_first_layer) {
    cs_need();
    cs_both(&(cs_case){16, 1, 28, 28, 32, 5, 2, true, 'c'});
}

Test(conv_small, channels_kernels_paddings_sizes) {
    cs_need();
    for (int ci = 1; ci <= 4; ci++)
        for (int r = 1; r <= 7; r += 2)
            for (int p = 0; p < r; p += (r > 3 ? 2 : 1)) {
                cs_both(&(cs_case){3, ci, 11 + ci, 19 - ci, ci == 2 ? 13 : 8, r, p, p % 2 == 0, 'c'});
                cs_both(&(cs_case){2, ci, 9, 33, 32, r, p, true, 'c'});
            }
    cs_both(&(cs_case){2, 3, 20, 16, 12, 4, 1, true, 'c'});   /* even kernel */
}

Test(conv_small, strided_and_permuted_operands) {
    cs_need();
    static const char layouts[] = {'t', 's', 'w', 'o'};
    for (size_t i = 0; i < sizeof layouts; i++) cs_both(&(cs_case){3, 3, 15, 13, 16, 3, 1, true, layouts[i]});
}

static void cs_bits(const cs_case *c, nb_op op, int threads, float *out, int64_t cnt) {
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads, .isa = "avx2", .abort_on_error = -1}), 0);
    nb_scope_begin();
    int64_t oh = c->h + 2 * c->pad - c->r + 1, ow = c->w + 2 * c->pad - c->r + 1;
    nb_tensor *x = nb_randn(NB_SHAPE(c->n, c->ci, c->h, c->w), NB_F32, 31);
    nb_tensor *o, *b;
    if (op == NB_OP_CONV2D) {
        b = nb_randn(NB_SHAPE(c->co, c->ci, c->r, c->r), NB_F32, 32);
        o = nb_full(NB_SHAPE(c->n, c->co, oh, ow), NB_F32, NAN);
    } else {
        b = nb_randn(NB_SHAPE(c->n, c->co, oh, ow), NB_F32, 33);
        o = nb_full(NB_SHAPE(c->co, c->ci, c->r, c->r), NB_F32, NAN);
    }
    const char *k;
    cs_dispatch(op, o, x, b, NULL, c->pad, 1, 1, 1, &k);
    cr_assert(!strncmp(k, "avx2_conv_small", 15), "served by %s", k);
    cr_assert_eq(nb_numel(o), cnt);
    memcpy(out, nb_data(o), (size_t)cnt * sizeof(float));
    nb_scope_end();
}

Test(conv_small, same_bits_at_any_thread_count) {
    cs_need();
    cs_case c = {37, 1, 28, 28, 32, 5, 2, false, 'c'};
    static const nb_op ops[] = {NB_OP_CONV2D, NB_OP_CONV_BWD_WEIGHT};
    for (size_t o = 0; o < 2; o++) {
        int64_t cnt = o ? 32 * 25 : 37 * 32 * 28 * 28;
        float *one = malloc((size_t)cnt * sizeof(float)), *now = malloc((size_t)cnt * sizeof(float));
        cr_assert(one && now);
        cs_bits(&c, ops[o], 1, one, cnt);
        for (int t = 2; t <= 5; t++) {
            cs_bits(&c, ops[o], t, now, cnt);
            cr_assert(!memcmp(one, now, (size_t)cnt * sizeof(float)), "%s: %d threads differ from 1",
                      nb_op_name(ops[o]), t);
        }
        free(one);
        free(now);
    }
    cs_default();
}

Test(conv_small, inf_past_the_row_stays_out_of_taps_that_never_read_it) {
    cs_need();
    nb_scope_begin();
    /* valid 3x3 conv of 11 columns: 9 outputs, the last 8-column block has 1 lane; x column 9 is read by
       taps kw = 1 (output 8) and kw = 2 (output 7) but never by kw = 0 */
    nb_tensor *x = nb_randn(NB_SHAPE(2, 1, 6, 11), NB_F32, 41), *gy = nb_randn(NB_SHAPE(2, 8, 4, 9), NB_F32, 42);
    float *px = nb_data(x);
    for (int64_t h = 0; h < 6; h++) px[h * 11 + 9] = INFINITY;
    const char *k1, *k2;
    nb_tensor *got = cs_dispatch(NB_OP_CONV_BWD_WEIGHT, nb_full(NB_SHAPE(8, 1, 3, 3), NB_F32, NAN), x, gy, NULL, 0, 1,
                                 1, 1, &k1);
    ot_cap_ref();
    nb_tensor *ref = cs_dispatch(NB_OP_CONV_BWD_WEIGHT, nb_full(NB_SHAPE(8, 1, 3, 3), NB_F32, NAN), x, gy, NULL, 0, 1,
                                 1, 1, &k2);
    cs_default();
    cr_assert(!strncmp(k1, "avx2_conv_small", 15), "served by %s", k1);
    const float *g = nb_data(got), *r = nb_data(ref);
    for (int64_t i = 0; i < 8 * 9; i++) {
        int64_t kw = i % 3;
        if (kw == 0) {
            cr_assert(isfinite(g[i]) && isfinite(r[i]), "tap %lld: %g (ref %g)", (long long)i, g[i], r[i]);
            cr_assert(fabs(g[i] - r[i]) <= 1e-5 * (1 + fabs(r[i])), "tap %lld: %g vs %g", (long long)i, g[i], r[i]);
        } else {
            cr_assert(!isfinite(g[i]) && !isfinite(r[i]), "tap %lld: %g (ref %g)", (long long)i, g[i], r[i]);
        }
    }
    nb_scope_end();
}

static void cs_declines(nb_op op, nb_tensor *a, nb_tensor *b, nb_dims os, int64_t pad, int64_t stride, int64_t dil,
                        int64_t groups) {
    nb_tensor *out = nb_zeros(os, nb_dtype_of(a));
    const char *k;
    cs_dispatch(op, out, a, b, NULL, pad, stride, dil, groups, &k);
    cr_assert(strncmp(k, "avx2_conv_small", 15), "%s served by %s, expected a decline", nb_op_name(op), k);
}

Test(conv_small, declines_what_it_does_not_serve) {
    cs_need();
    nb_scope_begin();
    nb_tensor *x1 = nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F32, 1), *w1 = nb_randn(NB_SHAPE(16, 1, 3, 3), NB_F32, 2);
    nb_dims y1 = NB_SHAPE(2, 16, 12, 12);
    cs_declines(NB_OP_CONV2D, nb_randn(NB_SHAPE(2, 5, 12, 12), NB_F32, 3), nb_randn(NB_SHAPE(16, 5, 3, 3), NB_F32, 4),
                y1, 1, 1, 1, 1);                                                                   /* 5 channels */
    cs_declines(NB_OP_CONV2D, x1, nb_randn(NB_SHAPE(4, 1, 3, 3), NB_F32, 5), NB_SHAPE(2, 4, 12, 12), 1, 1, 1, 1);
    cs_declines(NB_OP_CONV2D, x1, w1, NB_SHAPE(2, 16, 6, 6), 1, 2, 1, 1);                        /* stride 2 */
    cs_declines(NB_OP_CONV2D, x1, w1, NB_SHAPE(2, 16, 10, 10), 1, 1, 2, 1);                      /* dilation 2 */
    cs_declines(NB_OP_CONV2D, nb_randn(NB_SHAPE(2, 2, 12, 12), NB_F32, 6), w1, y1, 1, 1, 1, 2);  /* groups 2 */
    cs_declines(NB_OP_CONV2D, x1, nb_randn(NB_SHAPE(16, 1, 3, 5), NB_F32, 7), NB_SHAPE(2, 16, 12, 10), 1, 1, 1, 1);
    cs_declines(NB_OP_CONV2D, x1, nb_randn(NB_SHAPE(16, 1, 9, 9), NB_F32, 8), NB_SHAPE(2, 16, 8, 8), 2, 1, 1, 1);
    cs_declines(NB_OP_CONV2D, nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F64, 9), nb_randn(NB_SHAPE(16, 1, 3, 3), NB_F64, 10),
                y1, 1, 1, 1, 1);                                                                   /* F64 */
    nb_tensor *gyt = nb_transpose(nb_randn(NB_SHAPE(2, 16, 12, 12), NB_F32, 11), 2, 3);          /* gy: W stride 12 */
    cs_declines(NB_OP_CONV_BWD_WEIGHT, x1, gyt, NB_SHAPE(16, 1, 3, 3), 1, 1, 1, 1);
    nb_scope_end();
}

Test(conv_small, steps_aside_for_avx512) {
    cr_assert_eq(nb_init(NULL), 0);
    if (nb_isa_active() < NB_ISA_AVX512) cr_skip("AVX-512 is not in force here");
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F32, 1), *w = nb_randn(NB_SHAPE(16, 1, 3, 3), NB_F32, 2);
    cs_declines(NB_OP_CONV2D, x, w, NB_SHAPE(2, 16, 12, 12), 1, 1, 1, 1);
    cs_declines(NB_OP_CONV_BWD_WEIGHT, x, nb_randn(NB_SHAPE(2, 16, 12, 12), NB_F32, 3), NB_SHAPE(16, 1, 3, 3), 1, 1, 1,
                1);
    nb_scope_end();
}
