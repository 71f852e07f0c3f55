/* winograd_tests.h — the tests of a Winograd convolution kernel family
 * (src/kernels/x86/winograd_common.h) against the ref kernels, which sum
 * in double; included by test_winograd.c (the AVX2 kernels) and
 * test_avx512_winograd.c (their AVX-512 twins), each defining first:
 *   WGT_SUITE   the Criterion suite's name
 *   WGT_ISA     the ISA cap its tests run under ("avx2", "avx512")
 *   WGT_PREFIX  the served kernels' name prefix ("avx2_winograd", ...)
 *
 * - CONV2D, CONV_BWD_DATA, CONV_TRANSPOSE2D and CONV_BWD_WEIGHT, 3x3 (F(4x4, 3x3)) and 5x5
 *   (F(2x2, 5x5)): channel counts that are and are not multiples of 8 and 16,
 *   odd image sizes (partial tiles), every padding 0..r-1, bias and none,
 *   transposed / strided / permuted operands, a strided output. The error
 *   max |got - ref| / max |ref| must stay below WG_TOL, and the served
 *   kernel must be the Winograd one.
 * - The same call at 1 to 5 threads gives the same bits (the parallel
 *   backward executor's rule), forward, backward-data and backward-weights
 *   (whose sum over the batch runs in chunks fixed by the batch size: 37
 *   images, 12 chunks of 3 and one of 1).
 * - The calls it must leave to the next kernel: stride 2, dilation 2,
 *   groups 2, 7x7 and 3x5 kernels, fewer than 16 channels, F64, an adjoint
 *   padding above r-1.
 * - A NaN input: the outputs whose window holds it are NaN (and, within
 *   its 2x2 tile, possibly more: see winograd_common.h), the others match ref.
 * Skipped when the CPU (or NB_ISA) lacks WGT_ISA.
 * Include after criterion, kernels.h, onednn_testutil.h and testutil.h.
 */
#ifndef NB_TESTS_WINOGRAD_TESTS_H
#define NB_TESTS_WINOGRAD_TESTS_H

#include <math.h>
#include <string.h>

/* Measured here: 5x5 at 32 -> 64 channels 2.3e-7, 3x3 at 64 -> 64 4.1e-7
 * (direct float summation in oneDNN: ~1e-7). */
#define WG_TOL 2e-5

/* The ISA cap these kernels run under (the AVX2 ones step aside for the
 * AVX-512 twins on an AVX-512 CPU unless the cap is avx2). */
static void wg_default(void) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = WGT_ISA, .abort_on_error = -1}), 0, "nb_init: %s", nb_last_error());
}
static void wg_setup(void) { wg_default(); }
static void wg_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(WGT_SUITE, .init = wg_setup, .fini = wg_teardown);

static void wg_need(void) {
    if (!nb__registry_has(NB_OP_CONV2D, NB_F32, WGT_PREFIX))
        cr_skip("no " WGT_PREFIX " kernel within the ISA cap (chosen: %s)", nb_kernel_chosen(NB_OP_CONV2D, NB_F32));
}

typedef struct wg_case {
    int64_t n, ci, h, w, co, r, pad;   /* x (n, ci, h, w), weight (co, ci, r, r) */
    bool bias;
    char layout;   /* 'c' contiguous, 't' x (or gy) with H and W swapped in memory, 's' every 2nd W element,
                      'w' weight permuted, 'o' a strided output */
} wg_case;

/* op on (a, b[, bias]) into a fresh NaN-filled output of `shape`; *served names the kernel. */
static nb_tensor *wg_run(nb_op op, nb_dims shape, char layout, const nb_tensor *a, const nb_tensor *b,
                         const nb_tensor *bias, int64_t pad, int64_t stride, int64_t dil, int64_t groups,
                         const char **served) {
    nb_tensor *out;
    if (layout == 'o') {   /* every other channel of a twice-as-wide buffer */
        nb_dims m = shape;
        m.d[1] *= 2;
        out = nb_slice(nb_full(m, NB_F32, NAN), 1, 0, m.d[1], 2);
    } else {
        out = nb_full(shape, NB_F32, NAN);
    }
    cr_assert(out);
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b, bias}, .nin = bias ? 3 : 2};
    double geo[7] = {(double)stride, (double)stride, (double)pad, (double)pad, (double)dil, (double)dil, (double)groups};
    memcpy(args.scalar, geo, sizeof geo);
    cr_assert_eq(nb__dispatch(&args, "test_winograd"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

/* The inputs and output shape of op for case c. */
static void wg_operands(const wg_case *c, nb_op op, nb_tensor **a, nb_tensor **b, nb_tensor **bias, nb_dims *os) {
    int64_t oh = c->h + 2 * c->pad - c->r + 1, ow = c->w + 2 * c->pad - c->r + 1;
    nb_dims xs = NB_SHAPE(c->n, c->ci, c->h, c->w), ys = NB_SHAPE(c->n, c->co, oh, ow);
    nb_dims ws = NB_SHAPE(c->co, c->ci, c->r, c->r);
    *bias = NULL;
    if (op == NB_OP_CONV2D) {
        *a = ot_conv_rand(xs, c->layout, false, 11), *os = ys;
        if (c->bias) *bias = nb_randn(NB_SHAPE(c->co), NB_F32, 13);
    } else if (op == NB_OP_CONV_BWD_WEIGHT) {   /* dw <- x, gy */
        *a = ot_conv_rand(xs, c->layout, false, 11), *b = ot_conv_rand(ys, c->layout, false, 12), *os = ws;
        cr_assert(*a && *b, "inputs: %s", nb_last_error());
        return;
    } else {
        *a = ot_conv_rand(ys, c->layout, false, 12), *os = xs;
        if (c->bias && op == NB_OP_CONV_TRANSPOSE2D) *bias = nb_randn(NB_SHAPE(c->ci), NB_F32, 13);
    }
    *b = ot_conv_rand(ws, c->layout, true, 14);
    cr_assert(*a && *b, "inputs: %s", nb_last_error());
}

/* Winograd against ref on one op of case c; returns the relative error. */
static double wg_check(const wg_case *c, nb_op op) {
    nb_scope_begin();
    nb_tensor *a, *b, *bias;
    nb_dims os;
    wg_operands(c, op, &a, &b, &bias, &os);
    const char *k1, *k2;
    nb_tensor *got = wg_run(op, os, c->layout, a, b, bias, c->pad, 1, 1, 1, &k1);
    ot_cap_ref();
    nb_tensor *ref = wg_run(op, os, c->layout, a, b, bias, c->pad, 1, 1, 1, &k2);
    wg_default();
    cr_assert(!strncmp(k2, "ref", 3), "capped run served by %s", k2);
    cr_assert(!strncmp(k1, WGT_PREFIX, strlen(WGT_PREFIX)), "%s r=%lld ci=%lld co=%lld served by %s", nb_op_name(op),
              (long long)c->r, (long long)c->ci, (long long)c->co, k1);
    double e = ot_rel_err(got, ref, false);
    cr_assert(e <= WG_TOL, "%s r=%lld n=%lld ci=%lld co=%lld %lldx%lld pad %lld layout %c: relative error %g",
              nb_op_name(op), (long long)c->r, (long long)c->n, (long long)c->ci, (long long)c->co, (long long)c->h,
              (long long)c->w, (long long)c->pad, c->layout, e);
    nb_scope_end();
    return e;
}

static void wg_all(const wg_case *c) {
    wg_check(c, NB_OP_CONV2D);
    wg_check(c, NB_OP_CONV_BWD_DATA);
    wg_check(c, NB_OP_CONV_TRANSPOSE2D);
    wg_check(c, NB_OP_CONV_BWD_WEIGHT);
}

Test(WGT_SUITE, lenet_conv2_5x5) {
    wg_need();
    wg_all(&(wg_case){8, 32, 14, 14, 64, 5, 2, true, 'c'});
}

Test(WGT_SUITE, conv_3x3) {
    wg_need();
    wg_all(&(wg_case){4, 64, 14, 14, 64, 3, 1, true, 'c'});
    wg_all(&(wg_case){3, 16, 8, 8, 16, 3, 1, false, 'c'});
}

Test(WGT_SUITE, every_padding_and_odd_sizes) {
    wg_need();
    for (int r = 3; r <= 5; r += 2)
        for (int p = 0; p < r; p++) {
            wg_all(&(wg_case){2, 17, 13, 11, 19, r, p, p % 2 == 0, 'c'});   /* partial tiles, channel tails */
            wg_all(&(wg_case){1, 24, 9 + p, 9, 40, r, p, true, 'c'});
        }
}

Test(WGT_SUITE, strided_and_permuted_operands) {
    wg_need();
    static const char layouts[] = {'t', 's', 'w', 'o'};
    for (size_t i = 0; i < sizeof layouts; i++) {
        wg_all(&(wg_case){2, 16, 10, 12, 24, 5, 2, true, layouts[i]});
        wg_all(&(wg_case){2, 20, 9, 9, 16, 3, 1, true, layouts[i]});
    }
}

/* The raw bits of a result, for comparison. */
static nb_tensor *wg_at_threads(const wg_case *c, nb_op op, int threads) {
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads, .isa = WGT_ISA, .abort_on_error = -1}), 0);
    nb_tensor *a, *b, *bias;
    nb_dims os;
    wg_operands(c, op, &a, &b, &bias, &os);
    const char *k;
    nb_tensor *y = wg_run(op, os, 'c', a, b, bias, c->pad, 1, 1, 1, &k);
    cr_assert(!strncmp(k, WGT_PREFIX, strlen(WGT_PREFIX)), "served by %s", k);
    return y;
}

Test(WGT_SUITE, same_bits_at_any_thread_count) {
    wg_need();
    static const wg_case cs[] = {{37, 32, 14, 14, 64, 5, 2, true, 'c'}, {5, 16, 9, 9, 24, 3, 1, false, 'c'}};
    static const nb_op ops[] = {NB_OP_CONV2D, NB_OP_CONV_BWD_DATA, NB_OP_CONV_BWD_WEIGHT};
    nb_scope_begin();
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
            nb_tensor *one = wg_at_threads(&cs[i], ops[o], 1);
            for (int t = 2; t <= 5; t++)
                for (int ordered = 0; ordered < (ops[o] == NB_OP_CONV_BWD_WEIGHT ? 2 : 1); ordered++) {
                    /* bwd_weight: every chunk's own S summed after, and (ordered) one S per
                       thread added in an ordered region, as for a large kernel */
                    size_t keep = nb__wg_sall_max;
                    if (ordered) nb__wg_sall_max = 0;
                    nb_tensor *y = wg_at_threads(&cs[i], ops[o], t);
                    nb__wg_sall_max = keep;
                    cr_assert(!memcmp(nb_data(one), nb_data(y), (size_t)nb_numel(y) * sizeof(float)),
                              "%s case %zu: %d threads (ordered sums %d) differ from 1", nb_op_name(ops[o]), i, t,
                              ordered);
                }
        }
    nb_scope_end();
}

/* op with these settings is not the Winograd kernel's. */
static void wg_declines(nb_op op, nb_dims xs, nb_dims ws, nb_dims os, nb_dtype dt, int64_t pad, int64_t stride,
                        int64_t dil, int64_t groups) {
    nb_scope_begin();
    nb_tensor *a = nb_randn(xs, dt, 1), *b = nb_randn(ws, dt, 2), *out = nb_zeros(os, dt);
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b}, .nin = 2};
    double geo[7] = {(double)stride, (double)stride, (double)pad, (double)pad, (double)dil, (double)dil, (double)groups};
    memcpy(args.scalar, geo, sizeof geo);
    cr_assert_eq(nb__dispatch(&args, "test_winograd"), 0, "%s", nb_last_error());
    const char *k = nb__last_kernel();
    cr_assert(strncmp(k, WGT_PREFIX, strlen(WGT_PREFIX)), "%s served by %s, expected a decline", nb_op_name(op), k);
    nb_scope_end();
}

Test(WGT_SUITE, declines_what_it_does_not_serve) {
    wg_need();
    nb_dims x = NB_SHAPE(2, 32, 14, 14), w5 = NB_SHAPE(32, 32, 5, 5);
    wg_declines(NB_OP_CONV2D, x, w5, NB_SHAPE(2, 32, 7, 7), NB_F32, 2, 2, 1, 1);      /* stride 2 */
    wg_declines(NB_OP_CONV2D, x, w5, NB_SHAPE(2, 32, 10, 10), NB_F32, 2, 1, 2, 1);    /* dilation 2 */
    wg_declines(NB_OP_CONV2D, x, NB_SHAPE(32, 16, 5, 5), NB_SHAPE(2, 32, 14, 14), NB_F32, 2, 1, 1, 2);   /* groups */
    wg_declines(NB_OP_CONV2D, x, NB_SHAPE(32, 32, 7, 7), NB_SHAPE(2, 32, 14, 14), NB_F32, 3, 1, 1, 1);   /* 7x7 */
    wg_declines(NB_OP_CONV2D, x, NB_SHAPE(32, 32, 3, 5), NB_SHAPE(2, 32, 14, 14), NB_F32, 1, 1, 1, 1);   /* 3x5 */
    wg_declines(NB_OP_CONV2D, NB_SHAPE(2, 8, 14, 14), NB_SHAPE(32, 8, 5, 5), NB_SHAPE(2, 32, 14, 14), NB_F32, 2, 1,
                1, 1);   /* 8 input channels */
    wg_declines(NB_OP_CONV2D, x, NB_SHAPE(8, 32, 5, 5), NB_SHAPE(2, 8, 14, 14), NB_F32, 2, 1, 1, 1);   /* 8 out */
    wg_declines(NB_OP_CONV2D, x, w5, NB_SHAPE(2, 32, 14, 14), NB_F64, 2, 1, 1, 1);                      /* F64 */
    /* backward-weights: stride 2; 8 input channels */
    wg_declines(NB_OP_CONV_BWD_WEIGHT, x, NB_SHAPE(2, 32, 7, 7), w5, NB_F32, 2, 2, 1, 1);
    wg_declines(NB_OP_CONV_BWD_WEIGHT, NB_SHAPE(2, 8, 14, 14), NB_SHAPE(2, 32, 14, 14), NB_SHAPE(32, 8, 5, 5), NB_F32,
                2, 1, 1, 1);
    /* the adjoint of a padding above r-1: dx (2, 32, 4, 4) of gy (2, 32, 10, 10), pad 5 */
    wg_declines(NB_OP_CONV_BWD_DATA, NB_SHAPE(2, 32, 10, 10), w5, NB_SHAPE(2, 32, 14, 14), NB_F32, 5, 1, 1, 1);
}

Test(WGT_SUITE, nan_stays_where_it_was_read) {
    wg_need();
    nb_scope_begin();
    wg_case c = {1, 16, 12, 12, 16, 5, 2, false, 'c'};
    nb_tensor *x = nb_randn(NB_SHAPE(1, 16, 12, 12), NB_F32, 3), *w = nb_randn(NB_SHAPE(16, 16, 5, 5), NB_F32, 4);
    ((float *)nb_data(x))[3 * 144 + 5 * 12 + 6] = NAN;   /* channel 3, row 5, column 6 */
    const char *k1, *k2;
    nb_tensor *got = wg_run(NB_OP_CONV2D, NB_SHAPE(1, 16, 12, 12), 'c', x, w, NULL, c.pad, 1, 1, 1, &k1);
    ot_cap_ref();
    nb_tensor *ref = wg_run(NB_OP_CONV2D, NB_SHAPE(1, 16, 12, 12), 'c', x, w, NULL, c.pad, 1, 1, 1, &k2);
    wg_default();
    cr_assert(!strncmp(k1, WGT_PREFIX, strlen(WGT_PREFIX)), "served by %s", k1);
    const float *g = nb_data(got), *r = nb_data(ref);
    double mag = 0;
    for (int64_t i = 0; i < nb_numel(ref); i++)
        if (isfinite(r[i])) mag = fmax(mag, fabs(r[i]));
    for (int64_t k = 0; k < 16; k++)
        for (int64_t oh = 0; oh < 12; oh++)
            for (int64_t ow = 0; ow < 12; ow++) {
                int64_t i = (k * 12 + oh) * 12 + ow;
                /* rows/columns 3..7 read input row 5 / column 6; a 2x2 tile spreads it over [2, 8) */
                bool reads = oh >= 3 && oh <= 7 && ow >= 4 && ow <= 8, tile = oh >= 2 && oh < 8 && ow >= 4 && ow < 10;
                if (reads) cr_assert(isnan(r[i]) && isnan(g[i]), "(%lld, %lld, %lld) should be NaN", (long long)k,
                                     (long long)oh, (long long)ow);
                else if (!tile) cr_assert(fabs(g[i] - r[i]) <= WG_TOL * mag, "(%lld, %lld, %lld): %g vs %g",
                                          (long long)k, (long long)oh, (long long)ow, g[i], r[i]);
            }
    nb_scope_end();
}

#endif /* NB_TESTS_WINOGRAD_TESTS_H */
