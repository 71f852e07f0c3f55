/* test_onednn_more.c — the oneDNN backend's pooling kernels and its caches
 * against the ref kernels.
 *
 * Each case runs twice on the same random inputs: as nabla chooses (the
 * backend's kernel, asserted to have served the call unless the case is
 * one it must decline) and with the ISA capped to ref.
 *
 * pool: MAX_POOL2D (values and I64 indices bit-identical to ref, NaN and
 *       -inf and ties included), MAX_POOL2D_BWD (identical, overlapping
 *       windows included), AVG_POOL2D / AVG_POOL2D_BWD (1e-5 relative; the
 *       divisors oneDNN cannot express declined to ref), on odd sizes, the
 *       2x2 fast path, padding, stride, dilation, transposed and sliced
 *       inputs; the public functions with their gradients.
 * conv_bwd_bias: the direct reduction on odd, 3-D, strided and transposed
 *       gradients (planes that are not one run are declined).
 * caches: a conv weight modified in place gives the new result once its
 *       version is bumped, and is reordered once per version, not per call;
 *       a freed weight's cache entry is never mistaken for a new tensor;
 *       a thread-count change gets its own primitives; an SGD step through
 *       the public API stays equal to ref.
 * threads: primitives are made with a user scratchpad (oneDNN's library
 *       mode forbids running a primitive on another thread than its
 *       creator's, which the primitive cache does); branches of oneDNN
 *       matmuls and convolutions give the parallel backward executor's
 *       gradients bitwise equal to the serial one's at 4 threads, so nodes
 *       running the same cached primitives at once on several threads do
 *       not disturb each other (on a 16-core AVX-512 Xeon, before the user
 *       scratchpad, they did), and backward-weights gives the same bits at
 *       1, 2, 3, 4 and 6 threads (oneDNN's own split does not), and so do
 *       the backward's matmuls (up to 16 threads; oneDNN's matmul, whose
 *       bits follow its thread count, declines inside a backward); a
 *       small matmul's primitive is a single-thread one at any pool size.
 * Suites are skipped when the backend's kernel is not chosen (NB_ISA=ref,
 * no AVX2, or built without oneDNN).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nb_config.h"
#include "onednn_testutil.h"
#include "testutil.h"
#if NB_HAVE_ONEDNN
#include "kernels/onednn/onednn.h"
#include "runtime/pool.h"
#endif

TestSuite(onednn_more, .init = ot_setup, .fini = ot_teardown);

/* True when two I64 tensors of one shape hold the same values. */
static bool om_same_i64(nb_tensor *a, nb_tensor *b) {
    nb_tensor *x = nb_contiguous(a), *y = nb_contiguous(b);
    if (!x || !y || nb_numel(x) != nb_numel(y)) return false;
    return !memcmp(nb_data(x), nb_data(y), sizeof(int64_t) * (size_t)nb_numel(x));
}

/* ======================= pooling through the registry ======================= */

typedef struct om_pool {
    int64_t n, c, h, w;        /* input sizes */
    int64_t k[2], s[2], p[2];  /* kernel, stride, padding per (H, W) */
    int64_t d[2];              /* max: dilation; avg: {count_include_pad, divisor_override} */
    int64_t oh, ow;            /* output size (0: floor formula) */
    char layout;               /* 'c' contiguous, 't' H and W swapped in memory, 's' every 2nd W */
} om_pool;

static int64_t om_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* A random F32 (N, C, H, W) tensor laid out as `layout`, with special values
 * sprinkled in when `specials`: NaN, -inf, +inf and runs of ties. */
static nb_tensor *om_image(int64_t n, int64_t c, int64_t h, int64_t w, char layout, bool specials, uint64_t seed) {
    nb_tensor *t;
    if (layout == 't') t = nb_transpose(nb_randn(NB_SHAPE(n, c, w, h), NB_F32, seed), 2, 3);
    else if (layout == 's') t = nb_slice(nb_randn(NB_SHAPE(n, c, h, 2 * w), NB_F32, seed), 3, 0, 2 * w, 2);
    else t = nb_randn(NB_SHAPE(n, c, h, w), NB_F32, seed);
    cr_assert(t, "%s", nb_last_error());
    if (specials) {   /* written through the view's strides */
        float *p = nb_data(t);
        const int64_t *st = nb_strides(t);
        for (int64_t i = 0; i < nb_numel(t); i++) {
            int64_t r = i, at = 0;
            for (int dd = 3; dd >= 0; dd--) {
                at += r % nb_shape(t)[dd] * st[dd];
                r /= nb_shape(t)[dd];
            }
            int64_t m = i % 23;
            if (m == 3) p[at] = NAN;
            else if (m == 7) p[at] = -INFINITY;
            else if (m == 11) p[at] = INFINITY;
            else if (m >= 15 && m <= 18) p[at] = 0.5f;   /* ties inside windows */
        }
        nb_bump_version(t);
    }
    return t;
}

/* Runs op into a fresh NaN-filled out (and idx for MAX_POOL2D, filled with
 * -7) through the registry; *served names the kernel. */
static nb_tensor *om_pool_run(nb_op op, const om_pool *c, nb_dims os, nb_tensor *in0, nb_tensor *in1, nb_tensor **idx,
                              const char **served) {
    nb_tensor *out = nb_full(os, NB_F32, NAN);
    cr_assert(out);
    nb_kernel_args a = {.op = op, .out = out, .in = {in0, in1}, .nin = in1 ? 2 : 1};
    if (op == NB_OP_MAX_POOL2D) {
        *idx = nb_full(os, NB_I64, -7);
        a.in[1] = *idx, a.nin = 2;
    }
    double g[8] = {(double)c->k[0], (double)c->k[1], (double)c->s[0], (double)c->s[1],
                   (double)c->p[0], (double)c->p[1], (double)c->d[0], (double)c->d[1]};
    memcpy(a.scalar, g, sizeof g);
    cr_assert_eq(nb__dispatch(&a, "test_onednn_more"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

static void om_served(nb_op op, const char *got, const char *prefix) {
    if (prefix) cr_assert(!strncmp(got, prefix, strlen(prefix)), "%s served by %s, expected %s", nb_op_name(op), got, prefix);
    else cr_assert(!strncmp(got, "ref", 3), "%s served by %s, expected a decline to ref", nb_op_name(op), got);
}

/* MAX_POOL2D then MAX_POOL2D_BWD of case c, backend against ref: identical. */
static void om_max_check(const om_pool *c, bool specials) {
    ot_need(NB_OP_MAX_POOL2D, "direct");
    nb_scope_begin();
    int64_t oh = c->oh ? c->oh : om_out(c->h, c->k[0], c->s[0], c->p[0], c->d[0]);
    int64_t ow = c->ow ? c->ow : om_out(c->w, c->k[1], c->s[1], c->p[1], c->d[1]);
    nb_dims xs = NB_SHAPE(c->n, c->c, c->h, c->w), ys = NB_SHAPE(c->n, c->c, oh, ow);
    nb_tensor *x = om_image(c->n, c->c, c->h, c->w, c->layout, specials, 1);
    nb_tensor *gy = om_image(c->n, c->c, oh, ow, c->layout, false, 2);
    nb_tensor *i1, *i2, *unused;
    const char *k1, *k2, *k3, *k4;
    nb_tensor *y1 = om_pool_run(NB_OP_MAX_POOL2D, c, ys, x, NULL, &i1, &k1);
    nb_tensor *dx1 = om_pool_run(NB_OP_MAX_POOL2D_BWD, c, xs, gy, i1, &unused, &k3);
    ot_cap_ref();
    nb_tensor *y2 = om_pool_run(NB_OP_MAX_POOL2D, c, ys, x, NULL, &i2, &k2);
    nb_tensor *dx2 = om_pool_run(NB_OP_MAX_POOL2D_BWD, c, xs, gy, i2, &unused, &k4);
    nb_init(NULL);
    om_served(NB_OP_MAX_POOL2D, k1, "direct");
    om_served(NB_OP_MAX_POOL2D_BWD, k3, "direct");
    om_served(NB_OP_MAX_POOL2D, k2, NULL);
    cr_assert(om_same_i64(i1, i2), "max_pool2d indices differ from ref (layout %c)", c->layout);
    cr_assert_eq(ot_rel_err(y1, y2, true), 0, "max_pool2d values differ from ref: %g", ot_rel_err(y1, y2, true));
    cr_assert_eq(ot_rel_err(dx1, dx2, true), 0, "max_pool2d_bwd differs from ref: %g", ot_rel_err(dx1, dx2, true));
    nb_scope_end();
}

Test(onednn_more, max_pool_2x2_fast_path) {
    om_max_check(&(om_pool){2, 3, 28, 28, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 'c'}, false);
    om_max_check(&(om_pool){64, 32, 28, 28, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 'c'}, false);   /* LeNet's pool1 */
}
Test(onednn_more, max_pool_odd_sizes) {   /* the last row and column never read */
    om_max_check(&(om_pool){1, 1, 1, 1, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 0, 0, 'c'}, false);
    om_max_check(&(om_pool){3, 5, 7, 33, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 'c'}, false);
    om_max_check(&(om_pool){2, 7, 15, 17, {3, 2}, {2, 3}, {0, 0}, {1, 1}, 0, 0, 'c'}, false);
}
Test(onednn_more, max_pool_specials_nan_inf_ties) {
    om_max_check(&(om_pool){2, 3, 14, 14, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 'c'}, true);
    om_max_check(&(om_pool){2, 3, 6, 41, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 'c'}, true);   /* rows of 20: 8+8+4 */
    om_max_check(&(om_pool){1, 2, 4, 34, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 'c'}, true);   /* rows of 17: 8+8+1 */
    om_max_check(&(om_pool){2, 3, 13, 11, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 0, 0, 'c'}, true);
}
Test(onednn_more, max_pool_padding_stride_dilation_overlap) {
    om_max_check(&(om_pool){2, 4, 9, 10, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 0, 0, 'c'}, false);   /* overlapping */
    om_max_check(&(om_pool){2, 4, 17, 16, {3, 2}, {2, 2}, {1, 1}, {2, 2}, 0, 0, 'c'}, false);   /* dilation 2 */
    om_max_check(&(om_pool){1, 3, 8, 9, {4, 3}, {3, 2}, {2, 1}, {1, 2}, 0, 0, 'c'}, false);
}
Test(onednn_more, max_pool_ceil_mode_sizes) {   /* one more output row/column than floor */
    om_max_check(&(om_pool){2, 3, 7, 9, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 4, 5, 'c'}, false);
    om_max_check(&(om_pool){2, 3, 10, 10, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 6, 6, 'c'}, true);
}
Test(onednn_more, max_pool_non_contiguous) {
    om_max_check(&(om_pool){2, 3, 12, 10, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 't'}, true);
    om_max_check(&(om_pool){2, 3, 12, 10, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0, 's'}, false);
    om_max_check(&(om_pool){2, 3, 11, 9, {3, 3}, {2, 1}, {1, 1}, {1, 1}, 0, 0, 's'}, true);
}

/* AVG_POOL2D and its backward, backend against ref; `mapped`: 1 oneDNN must
 * serve both, 0 both must be declined to ref, -1 either (layouts oneDNN
 * only has reference code for are declined; the values are checked). */
static void om_avg_check(const om_pool *c, int mapped) {
    ot_need(NB_OP_AVG_POOL2D, "onednn");
    nb_scope_begin();
    int64_t oh = c->oh ? c->oh : om_out(c->h, c->k[0], c->s[0], c->p[0], 1);
    int64_t ow = c->ow ? c->ow : om_out(c->w, c->k[1], c->s[1], c->p[1], 1);
    nb_dims xs = NB_SHAPE(c->n, c->c, c->h, c->w), ys = NB_SHAPE(c->n, c->c, oh, ow);
    nb_tensor *x = om_image(c->n, c->c, c->h, c->w, c->layout, false, 3);
    nb_tensor *gy = om_image(c->n, c->c, oh, ow, c->layout, false, 4);
    nb_tensor *unused;
    const char *k1, *k2, *k3, *k4;
    nb_tensor *y1 = om_pool_run(NB_OP_AVG_POOL2D, c, ys, x, NULL, &unused, &k1);
    nb_tensor *dx1 = om_pool_run(NB_OP_AVG_POOL2D_BWD, c, xs, gy, NULL, &unused, &k3);
    ot_cap_ref();
    nb_tensor *y2 = om_pool_run(NB_OP_AVG_POOL2D, c, ys, x, NULL, &unused, &k2);
    nb_tensor *dx2 = om_pool_run(NB_OP_AVG_POOL2D_BWD, c, xs, gy, NULL, &unused, &k4);
    nb_init(NULL);
    if (mapped >= 0) {
        om_served(NB_OP_AVG_POOL2D, k1, mapped ? "onednn" : NULL);
        om_served(NB_OP_AVG_POOL2D_BWD, k3, mapped ? "onednn" : NULL);
    }
    om_served(NB_OP_AVG_POOL2D, k2, NULL);
    double e1 = ot_rel_err(y1, y2, true), e2 = ot_rel_err(dx1, dx2, true);
    cr_assert(e1 <= 1e-5, "avg_pool2d (%s): relative error %g", k1, e1);
    cr_assert(e2 <= 1e-5, "avg_pool2d_bwd (%s): relative error %g", k3, e2);
    nb_scope_end();
}

Test(onednn_more, avg_pool_basic_and_odd) {
    om_avg_check(&(om_pool){2, 3, 28, 28, {2, 2}, {2, 2}, {0, 0}, {1, 0}, 0, 0, 'c'}, 1);
    om_avg_check(&(om_pool){3, 5, 7, 33, {2, 2}, {2, 2}, {0, 0}, {1, 0}, 0, 0, 'c'}, 1);   /* last row unread */
    om_avg_check(&(om_pool){1, 1, 1, 1, {1, 1}, {1, 1}, {0, 0}, {1, 0}, 0, 0, 'c'}, 1);
    om_avg_check(&(om_pool){2, 7, 15, 17, {3, 2}, {2, 3}, {0, 0}, {1, 0}, 0, 0, 'c'}, 1);
}
Test(onednn_more, avg_pool_padding_include_and_exclude) {
    om_avg_check(&(om_pool){2, 4, 9, 10, {3, 3}, {2, 2}, {1, 1}, {1, 0}, 0, 0, 'c'}, 1);
    om_avg_check(&(om_pool){2, 4, 9, 10, {3, 3}, {2, 2}, {1, 1}, {0, 0}, 0, 0, 'c'}, 1);
    om_avg_check(&(om_pool){2, 4, 9, 10, {3, 3}, {1, 1}, {1, 1}, {0, 0}, 0, 0, 'c'}, 1);   /* overlapping */
}
Test(onednn_more, avg_pool_declines_what_does_not_map) {
    /* ceil_mode window past input + padding, counting padding: PyTorch clips the divisor */
    om_avg_check(&(om_pool){2, 3, 10, 10, {3, 3}, {2, 2}, {1, 1}, {1, 0}, 6, 6, 'c'}, 0);
    /* divisor_override */
    om_avg_check(&(om_pool){2, 3, 8, 8, {2, 2}, {2, 2}, {0, 0}, {1, 3}, 0, 0, 'c'}, 0);
    /* the same ceil_mode window without counting padding maps */
    om_avg_check(&(om_pool){2, 3, 10, 10, {3, 3}, {2, 2}, {1, 1}, {0, 0}, 6, 6, 'c'}, 1);
}
Test(onednn_more, avg_pool_non_contiguous) {
    om_avg_check(&(om_pool){2, 3, 12, 10, {2, 2}, {2, 2}, {0, 0}, {1, 0}, 0, 0, 't'}, -1);
    om_avg_check(&(om_pool){2, 3, 11, 9, {3, 3}, {2, 1}, {1, 1}, {0, 0}, 0, 0, 's'}, -1);
}

Test(onednn_more, pool_f64_goes_to_ref) {
    ot_need(NB_OP_MAX_POOL2D, "direct");
    cr_assert(!strncmp(nb_kernel_chosen(NB_OP_MAX_POOL2D, NB_F64), "ref", 3));
    cr_assert(!strncmp(nb_kernel_chosen(NB_OP_AVG_POOL2D, NB_F64), "ref", 3));
}

/* ---- the public functions with gradients ---- */

typedef nb_tensor *(*om_pool_fn)(nb_tensor *, int64_t, int64_t, const nb_pool2d_opts *);

/* y = f(x); loss = sum(y * y * w) (w random): y and dx into r[2]. */
static void om_public_once(om_pool_fn f, nb_dims xs, int64_t k, const nb_pool2d_opts *o, nb_tensor **r) {
    nb_tensor *x = nb_randn(xs, NB_F32, 21);
    nb_set_requires_grad(x, true);
    nb_tensor *y = f(x, k, k, o);
    cr_assert(y, "%s", nb_last_error());
    nb_tensor *w = nb_randn(nb_dims_get(y), NB_F32, 22);
    cr_assert_eq(nb_backward(nb_sum_all(nb_mul(nb_mul(y, y), w)), NULL), 0, "%s", nb_last_error());
    r[0] = y, r[1] = nb_grad(x);
}

static void om_public(om_pool_fn f, nb_dims xs, int64_t k, nb_pool2d_opts o) {
    nb_scope_begin();
    nb_tensor *got[2], *ref[2];
    om_public_once(f, xs, k, &o, got);
    ot_cap_ref();
    om_public_once(f, xs, k, &o, ref);
    nb_init(NULL);
    cr_assert(ot_rel_err(got[0], ref[0], true) <= 1e-5, "y: %g", ot_rel_err(got[0], ref[0], true));
    cr_assert(ot_rel_err(got[1], ref[1], true) <= 1e-5, "dx: %g", ot_rel_err(got[1], ref[1], true));
    nb_scope_end();
}

Test(onednn_more, public_pools_with_gradients) {
    ot_need(NB_OP_MAX_POOL2D, "direct");
    om_public(nb_max_pool2d, NB_SHAPE(2, 3, 14, 15), 2, (nb_pool2d_opts){0});
    om_public(nb_max_pool2d, NB_SHAPE(3, 9, 11), 3, (nb_pool2d_opts){.stride = {2, 2}, .padding = {1, 1}});
    om_public(nb_max_pool2d, NB_SHAPE(2, 3, 13, 13), 3, (nb_pool2d_opts){.stride = {2, 2}, .ceil_mode = true});
    om_public(nb_avg_pool2d, NB_SHAPE(2, 3, 14, 15), 2, (nb_pool2d_opts){0});
    om_public(nb_avg_pool2d, NB_SHAPE(2, 3, 13, 13), 3,
              (nb_pool2d_opts){.stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true, .exclude_pad = true});
}

/* ======================= conv bias gradient ======================= */

/* CONV_BWD_BIAS of gy, backend against ref (1e-5); `direct`: must be served
 * by the backend. */
static void om_bias_check(nb_tensor *gy, bool direct) {
    ot_need(NB_OP_CONV_BWD_BIAS, "direct");
    cr_assert(gy, "%s", nb_last_error());
    const char *k[2];
    nb_tensor *db[2];
    for (int r = 0; r < 2; r++) {
        if (r) ot_cap_ref();
        db[r] = nb_full(NB_SHAPE(nb_shape(gy)[1]), NB_F32, NAN);
        nb_kernel_args a = {.op = NB_OP_CONV_BWD_BIAS, .out = db[r], .in = {gy}, .nin = 1};
        cr_assert_eq(nb__dispatch(&a, "test_onednn_more"), 0, "%s", nb_last_error());
        k[r] = nb__last_kernel();
    }
    nb_init(NULL);
    om_served(NB_OP_CONV_BWD_BIAS, k[0], direct ? "direct" : NULL);
    double e = ot_rel_err(db[0], db[1], true);
    cr_assert(e <= 1e-5, "conv_bwd_bias (%s): relative error %g", k[0], e);
}

Test(onednn_more, conv_bwd_bias) {
    nb_scope_begin();
    om_bias_check(nb_randn(NB_SHAPE(64, 32, 28, 28), NB_F32, 41), true);
    om_bias_check(nb_randn(NB_SHAPE(3, 7, 5, 33), NB_F32, 42), true);
    om_bias_check(nb_randn(NB_SHAPE(1, 1, 1, 1), NB_F32, 43), true);
    om_bias_check(nb_randn(NB_SHAPE(2, 5, 17), NB_F32, 44), true);                       /* conv1d */
    om_bias_check(nb_randn(NB_SHAPE(2, 5, 7, 1), NB_F32, 45), true);                     /* W = 1 */
    om_bias_check(nb_slice(nb_randn(NB_SHAPE(2, 5, 6, 14), NB_F32, 46), 3, 0, 14, 2), true);   /* strided W */
    om_bias_check(nb_transpose(nb_randn(NB_SHAPE(2, 5, 6, 9), NB_F32, 47), 2, 3), false);      /* planes not runs */
    om_bias_check(nb_slice(nb_randn(NB_SHAPE(2, 10, 5, 9), NB_F32, 48), 1, 0, 10, 2), true);    /* C strided */
    om_bias_check(nb_transpose(nb_randn(NB_SHAPE(2, 6, 5, 9), NB_F32, 49), 1, 2), false);      /* C and H swapped */
    nb_scope_end();
}

/* ======================= conv caches ======================= */

#if NB_HAVE_ONEDNN
/* nb_conv2d(x, w) with the backend and with ref; asserts they agree and
 * returns the backend's. */
static nb_tensor *om_conv_both(nb_tensor *x, nb_tensor *w, const nb_conv_opts *o) {
    nb_tensor *got = nb_conv2d(x, w, NULL, o);
    cr_assert(got, "%s", nb_last_error());
    ot_cap_ref();
    nb_tensor *ref = nb_conv2d(x, w, NULL, o);
    nb_init(NULL);
    double e = ot_rel_err(got, ref, true);
    cr_assert(e <= 1e-4, "conv2d: relative error %g against ref", e);
    return got;
}

Test(onednn_more, weight_cache_in_place_change_with_version_bump) {
    ot_need(NB_OP_CONV2D, "onednn");
    nb_scope_begin();
    nb_conv_opts o = {.padding = {1, 1}, .groups = 1};
    nb_tensor *x = nb_randn(NB_SHAPE(3, 16, 9, 9), NB_F32, 1), *w = nb_randn(NB_SHAPE(16, 16, 3, 3), NB_F32, 2);
    nb_tensor *y0 = nb_conv2d(x, w, NULL, &o);
    uint64_t r0 = nb__dnnl_weight_reorders();
    nb_tensor *y1 = nb_conv2d(x, w, NULL, &o);   /* same version: the cached copy */
    cr_assert_eq(nb__dnnl_weight_reorders(), r0, "a second call at one version reordered the weight again");
    cr_assert_eq(ot_rel_err(y1, y0, true), 0);
    float *p = nb_data(w);   /* in place: the contract is a version bump */
    for (int64_t i = 0; i < nb_numel(w); i++) p[i] = -2.0f * p[i] + 0.25f;
    nb_bump_version(w);
    nb_tensor *y2 = om_conv_both(x, w, &o);
    cr_assert_gt(ot_rel_err(y2, y0, true), 0.1, "the new weights did not change the result");
    nb_tensor *y3 = nb_conv2d(x, w, NULL, &o);
    cr_assert_eq(ot_rel_err(y3, y2, true), 0);
    nb_scope_end();
}

Test(onednn_more, weight_cache_in_place_op_and_view) {
    ot_need(NB_OP_CONV2D, "onednn");
    nb_scope_begin();
    nb_conv_opts o = {.padding = {2, 2}, .groups = 1};
    nb_tensor *x = nb_randn(NB_SHAPE(2, 8, 12, 12), NB_F32, 3);
    nb_tensor *big = nb_randn(NB_SHAPE(2, 8, 8, 5, 5), NB_F32, 4);
    nb_tensor *w0 = nb_squeeze(nb_slice(big, 0, 0, 1, 1), 0);   /* two weights in one storage */
    nb_tensor *w1 = nb_squeeze(nb_slice(big, 0, 1, 2, 1), 0);
    cr_assert(w0 && w1, "%s", nb_last_error());
    nb_tensor *a = om_conv_both(x, w0, &o), *b = om_conv_both(x, w1, &o);
    cr_assert_gt(ot_rel_err(a, b, true), 0.1, "two views of one storage gave one result");
    cr_assert(nb_mul_scalar_(w0, 3.0), "%s", nb_last_error());   /* bumps the shared version */
    nb_tensor *a3 = om_conv_both(x, w0, &o);
    cr_assert(ot_rel_err(a3, a, true) > 0.5);
    om_conv_both(x, w1, &o);
    nb_scope_end();
}

Test(onednn_more, weight_cache_freed_weight_is_not_reused) {
    ot_need(NB_OP_CONV2D, "onednn");
    nb_conv_opts o = {.padding = {1, 1}, .groups = 1};
    nb_scope_begin();
    nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(2, 8, 7, 7), NB_F32, 5));
    nb_scope_end();
    for (int it = 0; it < 6; it++) {   /* a fresh weight per round, same shape, version 0 each time */
        nb_scope_begin();
        nb_tensor *w = nb_randn(NB_SHAPE(8, 8, 3, 3), NB_F32, 100 + (uint64_t)it);
        om_conv_both(x, w, &o);
        nb_scope_end();
    }
    nb_release(x);
}

Test(onednn_more, conv_primitives_per_thread_count) {
    ot_need(NB_OP_CONV2D, "onednn");
    nb_scope_begin();
    nb_conv_opts o = {.padding = {1, 1}, .groups = 1};
    nb_tensor *x = nb_randn(NB_SHAPE(3, 8, 10, 10), NB_F32, 6), *w = nb_randn(NB_SHAPE(8, 8, 3, 3), NB_F32, 7);
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 1, .abort_on_error = -1}), 0);
    nb_tensor *y1 = nb_conv2d(x, w, NULL, &o);
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 2, .abort_on_error = -1}), 0);
    uint64_t m = nb__dnnl_cache_misses();
    nb_tensor *y2 = nb_conv2d(x, w, NULL, &o);
    if (nb__dnnl_threads() != 1) cr_assert_gt(nb__dnnl_cache_misses(), m, "a 2-thread call reused a 1-thread primitive");
    cr_assert(ot_rel_err(y2, y1, true) <= 1e-5);
    nb_init(NULL);
    nb_scope_end();
}

/* A few SGD steps of a conv + pool net: the backend's weights stay equal
 * (to rounding) to ref's, each step reading weights the optimizer changed. */
static void om_train(nb_tensor **out_w) {
    nb_tensor *w = nb_randn(NB_SHAPE(8, 3, 3, 3), NB_F32, 31);
    nb_set_requires_grad(w, true);
    nb_tensor *x = nb_randn(NB_SHAPE(4, 3, 12, 12), NB_F32, 32);
    nb_optimizer *opt = nb_sgd(&w, 1, &(nb_sgd_opts){.lr = 0.05, .momentum = 0.9});
    cr_assert(opt, "%s", nb_last_error());
    nb_conv_opts o = {.padding = {1, 1}, .groups = 1};
    for (int step = 0; step < 4; step++) {
        nb_scope_begin();
        nb_optimizer_zero_grad(opt);
        nb_tensor *y = nb_max_pool2d(nb_relu(nb_conv2d(x, w, NULL, &o)), 2, 2, NULL);
        cr_assert_eq(nb_backward(nb_mean_all(nb_mul(y, y)), NULL), 0, "%s", nb_last_error());
        cr_assert_eq(nb_optimizer_step(opt), 0, "%s", nb_last_error());
        nb_scope_end();
    }
    nb_optimizer_free(opt);
    *out_w = w;
}

Test(onednn_more, sgd_steps_match_ref) {
    ot_need(NB_OP_CONV2D, "onednn");
    nb_scope_begin();
    nb_tensor *w1, *w2;
    om_train(&w1);
    ot_cap_ref();
    om_train(&w2);
    nb_init(NULL);
    double e = ot_rel_err(w1, w2, true);
    cr_assert(e <= 1e-4, "weights after 4 steps: relative error %g", e);
    nb_scope_end();
}
Test(onednn_more, primitives_use_a_user_scratchpad) {
    const_dnnl_primitive_attr_t a = nb__dnnl_attr();
    cr_assert(a, "oneDNN did not start");
    dnnl_scratchpad_mode_t mode = dnnl_scratchpad_mode_library;
    cr_assert_eq(dnnl_primitive_attr_get_scratchpad_mode(a, &mode), dnnl_success);
    cr_assert_eq(mode, dnnl_scratchpad_mode_user);
}

/* loss = sum over 6 matmul branches (3 x tanh(h @ W)) and 4 conv branches
 * (relu(conv(img, w)) then conv with a shared second weight): many nodes
 * running the same cached primitives. The weights' gradients, flattened. */
#define OM_NW 22
static void om_branch_grads(nb_tensor *const *w, float *out) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(64, 128), NB_F32, 71), *img = nb_randn(NB_SHAPE(4, 8, 12, 12), NB_F32, 72);
    nb_conv_opts o = {.padding = {1, 1}, .groups = 1};
    nb_tensor *loss = NULL;
    for (int b = 0; b < 6; b++) {
        nb_tensor *h = x;
        for (int l = 0; l < 3; l++) h = nb_tanh(nb_matmul(h, w[b * 3 + l]));
        nb_tensor *s = nb_sum_all(h);
        loss = loss ? nb_add(loss, s) : s;
    }
    for (int b = 0; b < 4; b++) {
        nb_tensor *y = nb_conv2d(nb_relu(nb_conv2d(img, w[18 + b], NULL, &o)), w[18], NULL, &o);
        loss = nb_add(loss, nb_mean_all(nb_mul(y, y)));
    }
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    for (int i = 0; i < OM_NW; i++) {
        nb_tensor *g = nb_grad(w[i]);
        cr_assert(g, "weight %d has no gradient", i);
        cr_assert_eq(nb_copy_to(g, out, (size_t)nb_numel(g) * sizeof *out), 0);
        out += nb_numel(g);
    }
    nb_scope_end();
}

Test(onednn_more, parallel_backward_on_shared_primitives_matches_serial) {
    ot_need(NB_OP_MATMUL, "onednn");
    ot_need(NB_OP_CONV2D, "onednn");
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 4, .abort_on_error = -1}), 0);
    ot_fast_avx2_off(true);
    nb_scope_begin();
    nb_tensor *w[OM_NW];
    int64_t n = 0;
    for (int i = 0; i < OM_NW; i++) {
        w[i] = i < 18 ? nb_mul_scalar(nb_randn(NB_SHAPE(128, 128), NB_F32, 200 + (uint64_t)i), 0.09)
                      : nb_mul_scalar(nb_randn(NB_SHAPE(8, 8, 3, 3), NB_F32, 200 + (uint64_t)i), 0.1);
        nb_set_requires_grad(w[i], true);
        n += nb_numel(w[i]);
    }
    float *serial = malloc((size_t)n * sizeof *serial), *par = malloc((size_t)n * sizeof *par);
    cr_assert(serial && par);
    nb__backward_mode was = nb__backward;
    nb__backward = NB__BACKWARD_SERIAL;
    om_branch_grads(w, serial);
    for (int rep = 0; rep < 5; rep++) {
        for (int i = 0; i < OM_NW; i++) nb_zero_grad(w[i]);
        nb__backward = NB__BACKWARD_FORCE;
        om_branch_grads(w, par);
        int64_t bad = -1;
        for (int64_t i = 0; i < n && bad < 0; i++)
            if (memcmp(&serial[i], &par[i], sizeof *par)) bad = i;
        cr_assert_eq(bad, -1, "rep %d: gradient element %lld: serial %.9g, parallel %.9g", rep, (long long)bad,
                     bad >= 0 ? serial[bad] : 0.0, bad >= 0 ? par[bad] : 0.0);
    }
    nb__backward = was;
    free(serial);
    free(par);
    nb_scope_end();
}
Test(onednn_more, conv_bwd_weight_same_bits_at_any_thread_count) {
    ot_need(NB_OP_CONV_BWD_WEIGHT, "onednn");
    static const int threads[] = {1, 2, 3, 4, 6};
    float *first = NULL;
    int64_t wn = 0;
    for (int batch = 1; batch <= 37; batch += 12) {   /* 1, 13, 25, 37: one chunk, uneven chunks */
        for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
            cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads[t], .abort_on_error = -1}), 0);
            nb_scope_begin();
            nb_tensor *x = nb_randn(NB_SHAPE(batch, 16, 9, 9), NB_F32, 81);
            nb_tensor *w = nb_randn(NB_SHAPE(8, 16, 3, 3), NB_F32, 82);
            nb_set_requires_grad(w, true);
            nb_conv_opts o = {.padding = {1, 1}, .groups = 1};
            nb_tensor *y = nb_conv2d(x, w, NULL, &o);
            cr_assert_eq(nb_backward(nb_sum_all(nb_mul(y, y)), NULL), 0, "%s", nb_last_error());
            const char *ck = nb_kernel_chosen(NB_OP_CONV_BWD_WEIGHT, NB_F32);   /* Winograd's declines (suite set-up) */
            cr_assert(!strcmp(ck, "onednn_conv_bwd_weight") || (nb__avx2_winograd_off && strstr(ck, "_winograd")),
                      "chosen: %s", ck);
            nb_tensor *g = nb_grad(w);
            if (t == 0) {
                wn = nb_numel(g);
                first = realloc(first, (size_t)wn * sizeof *first);
                cr_assert(first);
                cr_assert_eq(nb_copy_to(g, first, (size_t)wn * sizeof *first), 0);
            } else {
                float *now = malloc((size_t)wn * sizeof *now);
                cr_assert(now);
                cr_assert_eq(nb_copy_to(g, now, (size_t)wn * sizeof *now), 0);
                int64_t bad = -1;
                for (int64_t i = 0; i < wn && bad < 0; i++)
                    if (memcmp(&now[i], &first[i], sizeof *now)) bad = i;
                free(now);
                cr_assert_eq(bad, -1, "batch %d, %d threads: element %lld differs from 1 thread's", batch,
                             threads[t], (long long)bad);
            }
            nb_scope_end();
        }
    }
    free(first);
    nb_init(NULL);
}
/* The gradients of y = a @ b (the backward's matmuls) at `threads`, into ga, gb. */
static void om_mm_grads(int64_t M, int64_t K, int64_t N, int threads, float *ga, float *gb) {
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads, .abort_on_error = -1}), 0);
    ot_fast_avx2_off(true);   /* outside a backward, oneDNN would take every one of these */
    nb_scope_begin();
    nb_tensor *a = nb_randn(NB_SHAPE(M, K), NB_F32, 91), *b = nb_randn(NB_SHAPE(K, N), NB_F32, 92);
    nb_set_requires_grad(a, true);
    nb_set_requires_grad(b, true);
    nb_tensor *y = nb_matmul(a, b), *seed = nb_randn(NB_SHAPE(M, N), NB_F32, 93);
    /* d loss / dy = seed: the same whatever bits y has (the forward's matmul is oneDNN's) */
    cr_assert_eq(nb_backward(nb_sum_all(nb_mul(y, seed)), NULL), 0, "%s", nb_last_error());
    cr_assert_eq(nb_copy_to(nb_grad(a), ga, (size_t)(M * K) * sizeof *ga), 0);
    cr_assert_eq(nb_copy_to(nb_grad(b), gb, (size_t)(K * N) * sizeof *gb), 0);
    nb_scope_end();
}

static int64_t om_first_diff(const float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&x[i], &y[i], sizeof *x)) return i;
    return -1;
}

Test(onednn_more, backward_matmul_same_bits_at_any_thread_count) {
    ot_need(NB_OP_MATMUL, "onednn");
    static const int64_t shapes[][3] = {{64, 256, 256}, {8, 4096, 64}, {128, 784, 512}, {2, 3000, 3}, {16, 16, 3000}};
    static const int threads[] = {2, 3, 4, 6, 16};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *ga1 = malloc((size_t)(M * K) * sizeof(float)), *gb1 = malloc((size_t)(K * N) * sizeof(float));
        float *ga = malloc((size_t)(M * K) * sizeof(float)), *gb = malloc((size_t)(K * N) * sizeof(float));
        cr_assert(ga1 && gb1 && ga && gb);
        om_mm_grads(M, K, N, 1, ga1, gb1);
        for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
            om_mm_grads(M, K, N, threads[t], ga, gb);
            int64_t da = om_first_diff(ga, ga1, M * K), db = om_first_diff(gb, gb1, K * N);
            cr_assert(da < 0 && db < 0, "%lldx%lldx%lld at %d threads: grad a element %lld, grad b element %lld "
                      "differ from 1 thread's", (long long)M, (long long)K, (long long)N, threads[t], (long long)da,
                      (long long)db);
        }
        free(ga1), free(gb1), free(ga), free(gb);
    }
    nb_init(NULL);
}
/* A matmul's threads come from its FLOPs: a small one runs the same
 * single-thread primitive whatever the pool size (no new primitive at 4
 * threads), a large one gets a primitive per thread count. */
Test(onednn_more, matmul_threads_follow_the_flops) {
    ot_need(NB_OP_MATMUL, "onednn");
    nb_scope_begin();
    nb_tensor *a = nb_randn(NB_SHAPE(16, 32), NB_F32, 1), *b = nb_randn(NB_SHAPE(32, 24), NB_F32, 2);
    nb_tensor *A = nb_randn(NB_SHAPE(256, 512), NB_F32, 3), *B = nb_randn(NB_SHAPE(512, 384), NB_F32, 4);
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 1, .abort_on_error = -1}), 0);
    ot_fast_avx2_off(true);
    cr_assert_not_null(nb_matmul(a, b), "%s", nb_last_error());
    cr_assert_not_null(nb_matmul(A, B), "%s", nb_last_error());
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 4, .abort_on_error = -1}), 0);
    ot_fast_avx2_off(true);
    uint64_t m = nb__dnnl_cache_misses();
    cr_assert_not_null(nb_matmul(a, b), "%s", nb_last_error());
    cr_assert_eq(nb__dnnl_cache_misses(), m, "a 24 kFLOP matmul made a new primitive for 4 threads");
    cr_assert_not_null(nb_matmul(A, B), "%s", nb_last_error());
    if (nb__dnnl_threads() > 1)
        cr_assert_gt(nb__dnnl_cache_misses(), m, "a 100 MFLOP matmul reused its 1-thread primitive at 4 threads");
    nb_init(NULL);
    nb_scope_end();
}
/* NB_ISA below avx512 caps oneDNN's own code at AVX2 (on a CPU without
 * AVX-512 it is there anyway; on one with it, this is the cap at work). */
Test(onednn_more, isa_cap_reaches_onednn) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .abort_on_error = -1}), 0);
    ot_need(NB_OP_MATMUL, "onednn");
    cr_assert_not_null(nb__dnnl_engine());   /* oneDNN starts here, under the cap */
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    cr_assert_eq((unsigned)isa & ~(unsigned)dnnl_cpu_isa_avx2, 0u, "oneDNN runs ISA 0x%x above AVX2", (unsigned)isa);
    nb_init(NULL);
}
#endif
