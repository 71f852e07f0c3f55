/* test_avx2_pool.c — adaptive average pooling in AVX2 (avx2_pool.c) and
 * interpolate by planes (avx2_interpolate.c) against the ref kernels.
 *
 * Interpolate: nearest (the x2 shortcut and the float map), nearest-exact,
 * bilinear with and without align_corners, by scale and by size, up and
 * down, forward and backward bitwise equal to ref (same double sums in the
 * same order); -0, NaN and inf in x; a transposed x declined.
 *
 * - Forward and backward for output sizes that divide the input (disjoint
 *   windows), that do not (overlapping windows: the backward adds in ref's
 *   order), larger than the input (windows of one element repeated), and
 *   the global 1x1 pool; planes with tails (W not a multiple of 8).
 *   Forward within 1e-6 of ref relative to the largest |ref|; the backward
 *   bitwise equal (one double addition per window, in ref's order).
 * - A transposed input is declined (ref serves it).
 * Run at an explicit avx2 cap; skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

static void ap_default(void) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .abort_on_error = -1}), 0, "nb_init: %s", nb_last_error());
}
static void ap_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(avx2_pool, .init = ap_default, .fini = ap_teardown);

static nb_tensor *ap_run(nb_op op, nb_dims shape, const nb_tensor *in, const char **served) {
    nb_tensor *out = nb_full(shape, NB_F32, NAN);
    nb_kernel_args a = {.op = op, .out = out, .in = {in}, .nin = 1};
    cr_assert_eq(nb__dispatch(&a, "test_avx2_pool"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

/* x (n, c, h, w) -> (n, c, oh, ow) and back, avx2 against ref. */
static void ap_check(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oh, int64_t ow, bool transposed) {
    nb_scope_begin();
    nb_tensor *x = transposed ? nb_transpose(nb_randn(NB_SHAPE(n, c, w, h), NB_F32, 5), 2, 3)
                              : nb_randn(NB_SHAPE(n, c, h, w), NB_F32, 5);
    nb_tensor *g = nb_randn(NB_SHAPE(n, c, oh, ow), NB_F32, 6);
    const char *k1, *k2, *k3, *k4;
    nb_tensor *y = ap_run(NB_OP_ADAPTIVE_AVG_POOL2D, NB_SHAPE(n, c, oh, ow), x, &k1);
    nb_tensor *dx = ap_run(NB_OP_ADAPTIVE_AVG_POOL2D_BWD, NB_SHAPE(n, c, h, w), g, &k2);
    ot_cap_ref();
    nb_tensor *yr = ap_run(NB_OP_ADAPTIVE_AVG_POOL2D, NB_SHAPE(n, c, oh, ow), x, &k3);
    nb_tensor *dxr = ap_run(NB_OP_ADAPTIVE_AVG_POOL2D_BWD, NB_SHAPE(n, c, h, w), g, &k4);
    ap_default();
    cr_assert(!strncmp(k3, "ref", 3) && !strncmp(k4, "ref", 3), "capped runs served by %s, %s", k3, k4);
    const char *want = transposed ? "ref" : "avx2_adaptive";
    cr_assert(!strncmp(k1, want, strlen(want)), "forward %lldx%lld -> %lldx%lld served by %s", (long long)h,
              (long long)w, (long long)oh, (long long)ow, k1);
    cr_assert(!strncmp(k2, "avx2_adaptive", 13), "backward served by %s", k2);
    double e = ot_rel_err(y, yr, false);
    cr_assert(e <= 1e-6, "forward %lldx%lld -> %lldx%lld: relative error %g", (long long)h, (long long)w,
              (long long)oh, (long long)ow, e);
    cr_assert(!memcmp(nb_data(dx), nb_data(dxr), (size_t)nb_numel(dx) * sizeof(float)),
              "backward %lldx%lld <- %lldx%lld differs from ref", (long long)h, (long long)w, (long long)oh,
              (long long)ow);
    nb_scope_end();
}

Test(avx2_pool, adaptive_avg_pool2d_windows) {
    if (!nb__registry_has(NB_OP_ADAPTIVE_AVG_POOL2D, NB_F32, "avx2_")) cr_skip("no AVX2 kernel within the ISA cap");
    ap_check(2, 3, 14, 14, 1, 1, false);    /* global */
    ap_check(2, 3, 14, 14, 7, 7, false);    /* disjoint 2x2 */
    ap_check(2, 3, 10, 13, 3, 4, false);    /* overlapping */
    ap_check(1, 2, 5, 6, 7, 9, false);      /* output larger than the input */
    ap_check(3, 4, 17, 33, 1, 1, false);    /* global, a tail */
    ap_check(2, 3, 9, 11, 2, 5, true);      /* transposed x: forward declined */
}

/* INTERPOLATE / INTERPOLATE_BWD: scalar {mode, align, scale_h, scale_w}. */
static void ip_check(int64_t h, int64_t w, int64_t oh, int64_t ow, int mode, bool align, double sh, double sw,
                     bool specials, bool transposed) {
    nb_scope_begin();
    nb_tensor *x = transposed ? nb_transpose(nb_randn(NB_SHAPE(2, 3, w, h), NB_F32, 7), 2, 3)
                              : nb_contiguous(nb_randn(NB_SHAPE(2, 3, h, w), NB_F32, 7));
    if (specials) {
        float *p = nb_data(x);
        p[0] = -0.0f, p[1] = NAN, p[w + 1] = INFINITY, p[2 * w] = -INFINITY;
    }
    nb_tensor *g = nb_randn(NB_SHAPE(2, 3, oh, ow), NB_F32, 8);
    nb_tensor *r[2][2];
    const char *k[2][2];
    for (int cap = 0; cap < 2; cap++) {
        if (cap) ot_cap_ref();
        nb_tensor *y = nb_full(NB_SHAPE(2, 3, oh, ow), NB_F32, 7.0f), *dx = nb_full(NB_SHAPE(2, 3, h, w), NB_F32, 7.0f);
        nb_kernel_args f = {.op = NB_OP_INTERPOLATE, .out = y, .in = {x}, .nin = 1, .scalar = {mode, align, sh, sw}};
        nb_kernel_args b = {.op = NB_OP_INTERPOLATE_BWD, .out = dx, .in = {g}, .nin = 1, .scalar = {mode, align, sh, sw}};
        cr_assert_eq(nb__dispatch(&f, "test"), 0, "%s", nb_last_error());
        k[cap][0] = nb__last_kernel();
        cr_assert_eq(nb__dispatch(&b, "test"), 0, "%s", nb_last_error());
        k[cap][1] = nb__last_kernel();
        r[cap][0] = y, r[cap][1] = dx;
    }
    ap_default();
    cr_assert(!strncmp(k[1][0], "ref", 3) && !strncmp(k[1][1], "ref", 3), "capped runs served by %s, %s", k[1][0],
              k[1][1]);
    const char *want = transposed ? "ref" : "avx2_interpolate";
    cr_assert(!strncmp(k[0][0], want, strlen(want)), "forward served by %s", k[0][0]);
    cr_assert(!strncmp(k[0][1], "avx2_interpolate", 16), "backward served by %s", k[0][1]);
    for (int d = 0; d < 2; d++)
        cr_assert(!memcmp(nb_data(r[0][d]), nb_data(r[1][d]), (size_t)nb_numel(r[0][d]) * sizeof(float)),
                  "%s differs from ref: %lldx%lld -> %lldx%lld mode %d align %d scale %g,%g", d ? "backward" : "forward",
                  (long long)h, (long long)w, (long long)oh, (long long)ow, mode, align, sh, sw);
    nb_scope_end();
}

Test(avx2_pool, interpolate_modes_bitwise) {
    if (!nb__registry_has(NB_OP_INTERPOLATE, NB_F32, "avx2_")) cr_skip("no AVX2 kernel within the ISA cap");
    ip_check(7, 9, 14, 18, NB_INTERP_NEAREST, false, 2, 2, true, false);        /* the x2 shortcut */
    ip_check(7, 9, 10, 13, NB_INTERP_NEAREST, false, 1.5, 1.5, true, false);    /* the float map */
    ip_check(12, 10, 5, 4, NB_INTERP_NEAREST, false, 0, 0, false, false);       /* down, by size */
    ip_check(7, 9, 10, 13, NB_INTERP_NEAREST_EXACT, false, 1.5, 1.5, true, false);
    ip_check(7, 9, 14, 18, NB_INTERP_BILINEAR, false, 2, 2, false, false);
    ip_check(7, 9, 11, 20, NB_INTERP_BILINEAR, true, 0, 0, false, false);       /* align_corners, by size */
    ip_check(12, 10, 5, 7, NB_INTERP_BILINEAR, false, 0, 0, false, false);      /* down */
    ip_check(7, 9, 14, 18, NB_INTERP_BILINEAR, false, 2, 2, false, true);       /* transposed x: declined */
}
