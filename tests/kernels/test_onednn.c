/* test_onednn.c — the oneDNN kernels against the ref kernels.
 *
 * Each case is computed twice on the same random inputs: once as nabla
 * chooses (the oneDNN kernel, asserted to have served the call unless the
 * case is one it must decline) and once with the ISA capped to ref (nb_init
 * with isa "ref", then nb_init(NULL) again). The results must agree to a
 * relative error of 1e-4 in F32 (max |a-b| / max |ref|).
 *
 * conv: CONV2D / CONV1D forward with and without bias, CONV_BWD_DATA (and
 *       CONV_TRANSPOSE2D), CONV_BWD_WEIGHT through the registry directly, on
 *       odd sizes (1, 7, 33), stride 2, padding, dilation 2, groups 2, 3 and
 *       depthwise, transposed / strided / permuted operands, a cropped
 *       adjoint (output_padding), size 0 (declined); the public nb_conv2d /
 *       nb_conv1d / nb_conv_transpose2d batched and unbatched with their
 *       gradients; the primitive cache creating nothing on a repeated call.
 * matmul / linear: 2-D, batched, batch broadcast (stride 0), transposed
 *       operands, 1x1, K = 1, size 0.
 * Suites are skipped when the oneDNN kernel is not chosen (NB_ISA=ref, no
 * AVX2, or built without oneDNN).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nb_config.h"
#include "onednn_testutil.h"
#include "runtime/pool.h"
#include "testutil.h"
#if NB_HAVE_ONEDNN
#include "kernels/onednn/onednn.h"
#endif

TestSuite(onednn, .init = ot_setup, .fini = ot_teardown);

#define OD_TOL 1e-4

/* ======================= convolution ======================= */

typedef struct od_conv {
    int64_t n, ci, h, w, co, kh, kw;   /* sizes; h == 0: 1-D (3-D tensors, kh ignored) */
    int64_t s[2], p[2], d[2], g;       /* stride, padding, dilation per (H, W); groups */
    bool bias;                         /* forward with a bias */
    char layout;                       /* 'c' contiguous, 't' x with its last two dims swapped in
                                          memory, 's' x every 2nd element of W, 'w' weight permuted */
    int64_t extra;                     /* bwd data: dx larger than the formula by this along H and W */
} od_conv;

static int64_t od_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

static bool od_1d(const od_conv *c) { return c->h == 0; }

/* A random F32 tensor of `shape` laid out as `layout` says (for the image or
 * the weight), seeded. */
static nb_tensor *od_rand(nb_dims shape, char layout, bool weight, uint64_t seed) {
    int nd = shape.ndim;
    if (!weight && layout == 't') {
        nb_dims m = shape;
        m.d[nd - 1] = shape.d[nd - 2], m.d[nd - 2] = shape.d[nd - 1];
        return nb_transpose(nb_randn(m, NB_F32, seed), nd - 2, nd - 1);
    }
    if (!weight && layout == 's') {
        nb_dims m = shape;
        m.d[nd - 1] *= 2;
        return nb_slice(nb_randn(m, NB_F32, seed), nd - 1, 0, m.d[nd - 1], 2);
    }
    if (weight && layout == 'w') {   /* stored (kW, [kH,] Ci/g, Co), seen as (Co, Ci/g, [kH,] kW) */
        nb_dims m = shape;
        int perm[4];
        for (int i = 0; i < nd; i++) m.d[i] = shape.d[nd - 1 - i], perm[i] = nd - 1 - i;
        return nb_permute(nb_randn(m, NB_F32, seed), perm, nd);
    }
    return nb_randn(shape, NB_F32, seed);
}

static nb_dims od_img(const od_conv *c, int64_t n, int64_t ch, int64_t h, int64_t w) {
    return od_1d(c) ? NB_SHAPE(n, ch, w) : NB_SHAPE(n, ch, h, w);
}

/* Runs op on (a, b[, bias]) into a fresh NaN-filled out of `shape` through the
 * registry; *served names the kernel that did it. */
static nb_tensor *od_conv_run(const od_conv *c, nb_op op, nb_dims shape, nb_tensor *a, nb_tensor *b,
                              nb_tensor *bias, const char **served) {
    nb_tensor *out = nb_full(shape, NB_F32, NAN);
    cr_assert(out);
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b, bias}, .nin = bias ? 3 : 2};
    double geo[7] = {(double)c->s[0], (double)c->s[1], (double)c->p[0], (double)c->p[1],
                     (double)c->d[0], (double)c->d[1], (double)c->g};
    if (od_1d(c)) geo[0] = 1, geo[2] = 0, geo[4] = 1;
    memcpy(args.scalar, geo, sizeof geo);
    cr_assert_eq(nb__dispatch(&args, "test_onednn"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

/* One op of case c with oneDNN then ref; asserts who served and the error. */
static void od_conv_check(const od_conv *c, nb_op op, bool expect_onednn) {
    ot_need(op, "onednn");
    nb_scope_begin();
    int64_t kh = od_1d(c) ? 1 : c->kh, h = od_1d(c) ? 1 : c->h;
    int64_t oh = od_out(h, kh, od_1d(c) ? 1 : c->s[0], od_1d(c) ? 0 : c->p[0], od_1d(c) ? 1 : c->d[0]);
    int64_t ow = od_out(c->w, c->kw, c->s[1], c->p[1], c->d[1]);
    nb_dims xs = od_img(c, c->n, c->ci, h, c->w), ys = od_img(c, c->n, c->co, oh, ow);
    nb_dims ws = od_1d(c) ? NB_SHAPE(c->co, c->ci / c->g, c->kw) : NB_SHAPE(c->co, c->ci / c->g, c->kh, c->kw);
    nb_tensor *a, *b, *bias = NULL;
    nb_dims os;
    if (op == NB_OP_CONV2D || op == NB_OP_CONV1D) {
        a = od_rand(xs, c->layout, false, 1), b = od_rand(ws, c->layout, true, 2), os = ys;
        if (c->bias) bias = nb_randn(NB_SHAPE(c->co), NB_F32, 3);
    } else if (op == NB_OP_CONV_BWD_WEIGHT) {
        a = od_rand(xs, c->layout, false, 1), b = od_rand(ys, c->layout, false, 4), os = ws;
    } else {   /* CONV_BWD_DATA, CONV_TRANSPOSE2D: dx possibly cropped larger */
        a = od_rand(ys, c->layout, false, 4), b = od_rand(ws, c->layout, true, 2);
        os = od_img(c, c->n, c->ci, od_1d(c) ? 1 : h + c->extra, c->w + c->extra);
        if (c->bias && op == NB_OP_CONV_TRANSPOSE2D) bias = nb_randn(NB_SHAPE(c->ci), NB_F32, 3);
    }
    cr_assert(a && b, "inputs: %s", nb_last_error());
    const char *k1, *k2;
    nb_tensor *got = od_conv_run(c, op, os, a, b, bias, &k1);
    ot_cap_ref();
    nb_tensor *ref = od_conv_run(c, op, os, a, b, bias, &k2);
    nb_init(NULL);
    cr_assert(!strncmp(k2, "ref", 3), "capped run served by %s", k2);
    if (expect_onednn) cr_assert(!strncmp(k1, "onednn", 6), "%s served by %s, expected oneDNN", nb_op_name(op), k1);
    else cr_assert(!strncmp(k1, "ref", 3), "%s served by %s, expected a decline to ref", nb_op_name(op), k1);
    double e = ot_rel_err(got, ref, false);
    cr_assert(e <= OD_TOL, "%s (%s, layout %c): relative error %g", nb_op_name(op), k1, c->layout, e);
    nb_scope_end();
}

/* Forward, backward data and backward weight of one geometry. */
static void od_conv_all(const od_conv *c) {
    od_conv_check(c, od_1d(c) ? NB_OP_CONV1D : NB_OP_CONV2D, true);
    od_conv_check(c, NB_OP_CONV_BWD_DATA, true);
    od_conv_check(c, NB_OP_CONV_BWD_WEIGHT, true);
}

Test(onednn, conv2d_basic_bias) {
    od_conv_all(&(od_conv){2, 3, 7, 7, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, 'c', 0});
}
Test(onednn, conv2d_no_bias) { od_conv_all(&(od_conv){2, 3, 7, 9, 5, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1, false, 'c', 0}); }
Test(onednn, conv2d_all_ones) { od_conv_all(&(od_conv){1, 1, 1, 1, 1, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, true, 'c', 0}); }
Test(onednn, conv2d_odd_stride2_pad) {
    od_conv_all(&(od_conv){3, 7, 33, 17, 33, 3, 5, {2, 2}, {1, 2}, {1, 1}, 1, true, 'c', 0});
}
Test(onednn, conv2d_stride2_uneven) {   /* the last input row and column are never read */
    od_conv_all(&(od_conv){2, 4, 8, 10, 6, 3, 3, {2, 3}, {0, 0}, {1, 1}, 1, false, 'c', 0});
}
Test(onednn, conv2d_dilation2) {
    od_conv_all(&(od_conv){2, 4, 15, 16, 6, 3, 3, {1, 1}, {2, 2}, {2, 2}, 1, true, 'c', 0});
}
Test(onednn, conv2d_dilation2_stride2) {
    od_conv_all(&(od_conv){2, 5, 17, 13, 7, 3, 2, {2, 2}, {1, 0}, {2, 2}, 1, true, 'c', 0});
}
Test(onednn, conv2d_groups2) { od_conv_all(&(od_conv){2, 4, 9, 9, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 2, true, 'c', 0}); }
Test(onednn, conv2d_groups3) { od_conv_all(&(od_conv){2, 9, 7, 8, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 3, true, 'c', 0}); }
Test(onednn, conv2d_groups3_wide) {
    od_conv_all(&(od_conv){1, 12, 11, 11, 24, 3, 3, {1, 1}, {1, 1}, {2, 2}, 3, false, 'c', 0});
}
Test(onednn, conv2d_depthwise) {
    od_conv_all(&(od_conv){2, 8, 9, 9, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 8, true, 'c', 0});
}
Test(onednn, conv2d_unbatched_like) {   /* what conv.c passes for (C, H, W) input */
    od_conv_all(&(od_conv){1, 3, 7, 7, 4, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, 'c', 0});
}
Test(onednn, conv2d_transposed_input) {
    od_conv_all(&(od_conv){2, 3, 7, 9, 5, 3, 3, {2, 1}, {1, 1}, {1, 1}, 1, true, 't', 0});
}
Test(onednn, conv2d_strided_input) {
    od_conv_all(&(od_conv){2, 3, 7, 9, 5, 3, 3, {1, 1}, {1, 0}, {1, 1}, 1, true, 's', 0});
}
Test(onednn, conv2d_permuted_weight) {
    od_conv_all(&(od_conv){2, 4, 7, 9, 6, 3, 3, {1, 1}, {1, 1}, {1, 1}, 2, true, 'w', 0});
}
Test(onednn, conv2d_lenet_small_batch) {
    od_conv_all(&(od_conv){4, 1, 28, 28, 32, 5, 5, {1, 1}, {2, 2}, {1, 1}, 1, true, 'c', 0});
    od_conv_all(&(od_conv){4, 32, 14, 14, 64, 5, 5, {1, 1}, {2, 2}, {1, 1}, 1, true, 'c', 0});
}
Test(onednn, conv2d_size0_declines) {
    od_conv c = {0, 3, 7, 7, 5, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, 'c', 0};
    od_conv_check(&c, NB_OP_CONV2D, false);
    od_conv_check(&c, NB_OP_CONV_BWD_DATA, false);
    od_conv_check(&c, NB_OP_CONV_BWD_WEIGHT, false);   /* dw of an empty batch: zeros */
}

Test(onednn, conv_bwd_data_cropped) {   /* conv_transpose2d's output_padding: dx one larger */
    od_conv c = {2, 4, 7, 7, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 1, false, 'c', 1};
    od_conv_check(&c, NB_OP_CONV_BWD_DATA, true);
    od_conv_check(&c, NB_OP_CONV_TRANSPOSE2D, true);
    c.p[0] = c.p[1] = 0;   /* right padding -1 */
    od_conv_check(&c, NB_OP_CONV_BWD_DATA, true);
}
/* output_padding 1 with stride 1, dilation 2: right padding -1 is past what oneDNN takes */
Test(onednn, conv_bwd_data_cropped_past_stride_declines) {
    od_conv c = {2, 4, 7, 8, 6, 3, 3, {1, 1}, {0, 0}, {2, 2}, 1, false, 'c', 1};
    od_conv_check(&c, NB_OP_CONV_BWD_DATA, false);
}
Test(onednn, conv_transpose2d) {
    od_conv c = {2, 6, 9, 7, 4, 3, 3, {2, 2}, {1, 1}, {1, 1}, 2, false, 'c', 0};
    od_conv_check(&c, NB_OP_CONV_TRANSPOSE2D, true);
    c.bias = true;   /* backward data has no bias: ref serves it */
    od_conv_check(&c, NB_OP_CONV_TRANSPOSE2D, false);
}

Test(onednn, conv1d) {
    od_conv_all(&(od_conv){2, 3, 0, 33, 7, 0, 5, {1, 2}, {0, 2}, {1, 2}, 1, true, 'c', 0});
    od_conv_all(&(od_conv){1, 1, 0, 1, 1, 0, 1, {1, 1}, {0, 0}, {1, 1}, 1, false, 'c', 0});
    od_conv_all(&(od_conv){3, 6, 0, 17, 9, 0, 3, {1, 1}, {0, 1}, {1, 1}, 3, true, 'c', 0});
    od_conv_all(&(od_conv){2, 4, 0, 16, 6, 0, 3, {1, 2}, {0, 1}, {1, 1}, 2, true, 't', 0});
    od_conv_all(&(od_conv){2, 4, 0, 16, 6, 0, 3, {1, 1}, {0, 1}, {1, 2}, 1, false, 'w', 0});
}

Test(onednn, conv_f64_declines) {
    ot_need(NB_OP_CONV2D, "onednn");
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(1, 2, 5, 5), NB_F64, 1), *w = nb_randn(NB_SHAPE(3, 2, 3, 3), NB_F64, 2);
    nb_tensor *y = nb_conv2d(x, w, NULL, NULL);
    cr_assert(y, "%s", nb_last_error());
    cr_assert(!strncmp(nb_kernel_chosen(NB_OP_CONV2D, NB_F64), "ref", 3));
    nb_scope_end();
}

/* ---- the public functions, forward and gradients ---- */

typedef nb_tensor *(*od_conv_fn)(nb_tensor *, nb_tensor *, nb_tensor *, const nb_conv_opts *);

/* y = f(x, w, b); loss = sum(y * y): y and the three gradients, into r[4]. */
static void od_public_once(od_conv_fn f, nb_dims xs, nb_dims ws, int64_t nb, const nb_conv_opts *o, nb_tensor **r) {
    nb_tensor *x = nb_randn(xs, NB_F32, 11), *w = nb_randn(ws, NB_F32, 12), *b = nb_randn(NB_SHAPE(nb), NB_F32, 13);
    nb_set_requires_grad(x, true), nb_set_requires_grad(w, true), nb_set_requires_grad(b, true);
    nb_tensor *y = f(x, w, b, o);
    cr_assert(y, "%s", nb_last_error());
    cr_assert_eq(nb_backward(nb_sum_all(nb_mul(y, y)), NULL), 0, "%s", nb_last_error());
    r[0] = y, r[1] = nb_grad(x), r[2] = nb_grad(w), r[3] = nb_grad(b);
}

static void od_public(od_conv_fn f, nb_dims xs, nb_dims ws, int64_t nb, nb_conv_opts o) {
    ot_need(NB_OP_CONV2D, "onednn");
    nb_scope_begin();
    nb_tensor *got[4], *ref[4];
    od_public_once(f, xs, ws, nb, &o, got);
    ot_cap_ref();
    od_public_once(f, xs, ws, nb, &o, ref);
    nb_init(NULL);
    static const char *what[4] = {"y", "dx", "dw", "db"};
    for (int i = 0; i < 4; i++) {
        double e = ot_rel_err(got[i], ref[i], false);
        cr_assert(e <= OD_TOL, "%s: relative error %g", what[i], e);
    }
    nb_scope_end();
}

Test(onednn, public_conv2d_batched_and_unbatched) {
    nb_conv_opts o = {.stride = {2, 1}, .padding = {1, 2}, .dilation = {1, 2}, .groups = 1};
    od_public(nb_conv2d, NB_SHAPE(3, 4, 11, 10), NB_SHAPE(6, 4, 3, 3), 6, o);
    od_public(nb_conv2d, NB_SHAPE(4, 11, 10), NB_SHAPE(6, 4, 3, 3), 6, o);
    o.groups = 2;
    od_public(nb_conv2d, NB_SHAPE(4, 11, 10), NB_SHAPE(6, 2, 3, 3), 6, o);
}
Test(onednn, public_conv1d_batched_and_unbatched) {
    nb_conv_opts o = {.stride = {2}, .padding = {1}, .dilation = {1}, .groups = 3};
    od_public(nb_conv1d, NB_SHAPE(2, 6, 33), NB_SHAPE(9, 2, 4), 9, o);
    od_public(nb_conv1d, NB_SHAPE(6, 33), NB_SHAPE(9, 2, 4), 9, o);
}
Test(onednn, public_conv_transpose2d) {
    nb_conv_opts o = {.stride = {2, 2}, .padding = {1, 0}, .output_padding = {1, 1}, .groups = 1};
    od_public(nb_conv_transpose2d, NB_SHAPE(2, 4, 5, 6), NB_SHAPE(4, 3, 3, 3), 3, o);
}

/* ---- the primitive cache ---- */

#if NB_HAVE_ONEDNN
Test(onednn, conv_cache_second_call_creates_nothing) {
    ot_need(NB_OP_CONV2D, "onednn");
    ot_need(NB_OP_CONV_BWD_WEIGHT, "onednn");
    nb_scope_begin();
    od_conv c = {5, 6, 11, 13, 7, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true, 'c', 0};   /* a shape no other test uses */
    nb_tensor *x = nb_randn(NB_SHAPE(5, 6, 11, 13), NB_F32, 1), *w = nb_randn(NB_SHAPE(7, 6, 3, 3), NB_F32, 2);
    nb_tensor *b = nb_randn(NB_SHAPE(7), NB_F32, 3), *gy = nb_randn(NB_SHAPE(5, 7, 11, 13), NB_F32, 4);
    const char *k;
    uint64_t m[3];
    for (int it = 0; it < 3; it++) {   /* one training step: forward, bwd data, bwd weight */
        m[it] = nb__dnnl_cache_misses();
        od_conv_run(&c, NB_OP_CONV2D, NB_SHAPE(5, 7, 11, 13), x, w, b, &k);
        cr_assert_str_eq(k, "onednn_conv2d");
        od_conv_run(&c, NB_OP_CONV_BWD_DATA, NB_SHAPE(5, 6, 11, 13), gy, w, NULL, &k);
        cr_assert_str_eq(k, "onednn_conv_bwd_data");
        od_conv_run(&c, NB_OP_CONV_BWD_WEIGHT, NB_SHAPE(7, 6, 3, 3), x, gy, NULL, &k);
        cr_assert_str_eq(k, "onednn_conv_bwd_weight");
    }
    cr_assert_gt(m[1], m[0], "the first step creates primitives");
    cr_assert_eq(nb__dnnl_cache_misses(), m[1], "steps 2 and 3 created %llu primitives",
                 (unsigned long long)(nb__dnnl_cache_misses() - m[1]));
    nb_scope_end();
}

Test(onednn, conv_cache_training_loop_public) {
    ot_need(NB_OP_CONV2D, "onednn");
    /* A primitive is keyed by its thread count too; the parallel executor
     * may run a node on a worker (1 thread) in one step and on the caller
     * (a share) in the next, which adds one primitive per thread count seen.
     * The steady state this checks is the serial executor's. */
    nb__backward_mode mode = nb__backward;
    nb__backward = NB__BACKWARD_SERIAL;
    nb_scope_begin();
    nb_conv_opts o = {.stride = {1, 1}, .padding = {2, 2}, .groups = 1};
    nb_tensor *r[4];
    uint64_t m0 = 0;
    for (int it = 0; it < 3; it++) {
        if (it == 1) m0 = nb__dnnl_cache_misses();
        nb_scope_begin();
        od_public_once(nb_conv2d, NB_SHAPE(3, 5, 13, 11), NB_SHAPE(7, 5, 5, 5), 7, &o, r);
        nb_scope_end();
    }
    nb__backward = mode;
    cr_assert_eq(nb__dnnl_cache_misses(), m0, "steps 2 and 3 created %llu primitives",
                 (unsigned long long)(nb__dnnl_cache_misses() - m0));
    nb_scope_end();
}
#endif

/* ======================= matmul and linear ======================= */

typedef nb_tensor *(*od_mm_fn)(nb_tensor *, nb_tensor *, nb_tensor *);
static nb_tensor *od_matmul2(nb_tensor *a, nb_tensor *b, nb_tensor *unused) {
    (void)unused;
    return nb_matmul(a, b);
}

/* f(a, b, c) with oneDNN then ref; `served` says whether oneDNN must have
 * served the oneDNN run (it may decline odd shapes, which is checked by value). */
static void od_mm_check(nb_op op, od_mm_fn f, nb_tensor *a, nb_tensor *b, nb_tensor *c, bool served) {
    nb_tensor *got = f(a, b, c);
    cr_assert(got, "%s", nb_last_error());
    const char *k = nb__last_kernel();
    if (served) cr_assert(k && !strncmp(k, "onednn", 6), "%s served by %s", nb_op_name(op), k ? k : "none");
    ot_cap_ref();
    nb_tensor *ref = f(a, b, c);
    nb_init(NULL);
    double e = ot_rel_err(got, ref, false);
    cr_assert(e <= OD_TOL, "%s: relative error %g", nb_op_name(op), e);
}

static nb_tensor *od_r(nb_dims s, uint64_t seed) { return nb_randn(s, NB_F32, seed); }
static nb_tensor *od_rt(nb_dims s, uint64_t seed) {   /* (..., m, n) stored as (..., n, m) */
    nb_dims m = s;
    m.d[s.ndim - 1] = s.d[s.ndim - 2], m.d[s.ndim - 2] = s.d[s.ndim - 1];
    return nb_transpose(nb_randn(m, NB_F32, seed), s.ndim - 2, s.ndim - 1);
}

Test(onednn, matmul_2d) {
    ot_need(NB_OP_MATMUL, "onednn");
    nb_scope_begin();
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(7, 33), 1), od_r(NB_SHAPE(33, 5), 2), NULL, true);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(33, 7), 1), od_r(NB_SHAPE(7, 33), 2), NULL, true);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(64, 128), 1), od_r(NB_SHAPE(128, 96), 2), NULL, true);
    nb_scope_end();
}
Test(onednn, matmul_1x1_and_k1) {
    ot_need(NB_OP_MATMUL, "onednn");
    nb_scope_begin();
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(1, 1), 1), od_r(NB_SHAPE(1, 1), 2), NULL, false);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(7, 1), 1), od_r(NB_SHAPE(1, 33), 2), NULL, false);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(1, 33), 1), od_r(NB_SHAPE(33, 1), 2), NULL, false);
    nb_scope_end();
}
Test(onednn, matmul_batched_and_broadcast) {
    ot_need(NB_OP_MATMUL, "onednn");
    nb_scope_begin();
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(3, 7, 33), 1), od_r(NB_SHAPE(3, 33, 5), 2), NULL, true);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(7, 33), 1), od_r(NB_SHAPE(3, 33, 5), 2), NULL, true);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(2, 3, 7, 33), 1), od_r(NB_SHAPE(33, 5), 2), NULL, true);
    nb_tensor *a = nb_expand(od_r(NB_SHAPE(1, 7, 33), 3), NB_SHAPE(4, 7, 33));   /* stride-0 batch */
    od_mm_check(NB_OP_MATMUL, od_matmul2, a, od_r(NB_SHAPE(4, 33, 5), 4), NULL, true);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(2, 1, 7, 33), 5), od_r(NB_SHAPE(1, 3, 33, 5), 6), NULL, true);
    nb_scope_end();
}
Test(onednn, matmul_transposed) {
    ot_need(NB_OP_MATMUL, "onednn");
    nb_scope_begin();
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_rt(NB_SHAPE(7, 33), 1), od_r(NB_SHAPE(33, 5), 2), NULL, true);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(7, 33), 1), od_rt(NB_SHAPE(33, 5), 2), NULL, true);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_rt(NB_SHAPE(3, 7, 33), 1), od_rt(NB_SHAPE(3, 33, 5), 2), NULL, true);
    nb_scope_end();
}
Test(onednn, matmul_size0) {
    ot_need(NB_OP_MATMUL, "onednn");
    nb_scope_begin();
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(0, 5), 1), od_r(NB_SHAPE(5, 3), 2), NULL, false);
    od_mm_check(NB_OP_MATMUL, od_matmul2, od_r(NB_SHAPE(4, 0), 1), od_r(NB_SHAPE(0, 3), 2), NULL, false);
    nb_scope_end();
}

Test(onednn, linear) {
    ot_need(NB_OP_LINEAR, "onednn");
    nb_scope_begin();
    od_mm_check(NB_OP_LINEAR, nb_linear, od_r(NB_SHAPE(7, 33), 1), od_r(NB_SHAPE(5, 33), 2), od_r(NB_SHAPE(5), 3),
                true);
    od_mm_check(NB_OP_LINEAR, nb_linear, od_r(NB_SHAPE(7, 33), 1), od_r(NB_SHAPE(5, 33), 2), NULL, true);
    od_mm_check(NB_OP_LINEAR, nb_linear, od_r(NB_SHAPE(2, 3, 33), 1), od_r(NB_SHAPE(5, 33), 2), od_r(NB_SHAPE(5), 3),
                true);
    od_mm_check(NB_OP_LINEAR, nb_linear, od_r(NB_SHAPE(33), 1), od_r(NB_SHAPE(7, 33), 2), od_r(NB_SHAPE(7), 3),
                false);
    od_mm_check(NB_OP_LINEAR, nb_linear, od_r(NB_SHAPE(7, 1), 1), od_r(NB_SHAPE(5, 1), 2), od_r(NB_SHAPE(5), 3), false);
    od_mm_check(NB_OP_LINEAR, nb_linear, od_rt(NB_SHAPE(7, 33), 1), od_rt(NB_SHAPE(5, 33), 2), od_r(NB_SHAPE(5), 3),
                true);
    od_mm_check(NB_OP_LINEAR, nb_linear, od_r(NB_SHAPE(0, 33), 1), od_r(NB_SHAPE(5, 33), 2), od_r(NB_SHAPE(5), 3),
                false);
    nb_scope_end();
}
