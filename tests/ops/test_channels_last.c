/* test_channels_last.c — channels-last (NHWC) tensors: nb_to_channels_last,
 * nb_is_channels_last, and convolutions that keep the layout.
 *
 * The NCHW convolution is checked against PyTorch in test_conv.c; here the
 * channels-last path is checked against it: the same values and gradients
 * (to F32 rounding: oneDNN's NHWC kernels sum in another order than its
 * blocked ones), the output, the input gradient and a leaf's accumulated
 * gradient laid out channels-last, the weight and bias gradients' bits
 * independent of the thread count, and an F64 gradcheck through a
 * channels-last input (ref kernels, any strides).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void cl_setup(void) { cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error()); }

static void cl_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}

TestSuite(channels_last, .init = cl_setup, .fini = cl_teardown);

static void expect_strides(const nb_tensor *t, const int64_t *want, const char *what) {
    for (int i = 0; i < 4; i++)
        cr_expect_eq(nb_strides(t)[i], want[i], "%s: stride %d is %lld, want %lld", what, i,
                     (long long)nb_strides(t)[i], (long long)want[i]);
}

Test(channels_last, to_channels_last_layout_values_and_gradient) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(2, 3, 4, 5), NB_F32, 1);
    nb_set_requires_grad(x, true);
    cr_expect(nb_is_contiguous(x) && !nb_is_channels_last(x), "a contiguous (2,3,4,5) is not channels-last");
    nb_tensor *y = nb_to_channels_last(x);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_expect(nb_is_channels_last(y) && !nb_is_contiguous(y));
    expect_strides(y, (const int64_t[]){60, 1, 15, 3}, "to_channels_last");
    cr_expect_eq(tu_max_abs_diff(x, y), 0.0, "values moved");
    /* already channels-last: the same tensor back */
    nb_tensor *z = nb_to_channels_last(y);
    cr_expect_eq(nb_data(z), nb_data(y), "a channels-last tensor was copied again");
    /* the gradient passes through unchanged */
    nb_tensor *w = nb_randn(NB_SHAPE(2, 3, 4, 5), NB_F32, 2);
    cr_assert_eq(nb_backward(nb_sum(nb_mul(y, w), NULL, 0, false), NULL), 0, "%s", nb_last_error());
    cr_expect_eq(tu_max_abs_diff(nb_grad(x), w), 0.0, "gradient through nb_to_channels_last");
    /* one channel: contiguous is channels-last too */
    nb_tensor *one = nb_randn(NB_SHAPE(2, 1, 3, 3), NB_F32, 3);
    cr_expect(nb_is_channels_last(one));
    cr_expect_eq(nb_data(nb_to_channels_last(one)), nb_data(one));
    /* a transposed view of NHWC memory is channels-last; other permutations are not */
    nb_tensor *nhwc = nb_randn(NB_SHAPE(2, 4, 5, 3), NB_F32, 4);
    cr_expect(nb_is_channels_last(nb_permute(nhwc, (const int[]){0, 3, 1, 2}, 4)));
    cr_expect(!nb_is_channels_last(nb_permute(nhwc, (const int[]){0, 3, 2, 1}, 4)));
    nb_scope_end();
}

Test(channels_last, bad_input) {
    nb_scope_begin();
    cr_expect_null(nb_to_channels_last(nb_randn(NB_SHAPE(2, 3, 4), NB_F32, 1)));
    cr_expect_eq(nb_last_error_code(), NB_ESHAPE);
    cr_expect(strstr(nb_last_error(), "nb_to_channels_last") && strstr(nb_last_error(), "4-D"), "message: %s",
              nb_last_error());
    nb_clear_error();   /* a NULL argument keeps an earlier error (the root cause of a chain) */
    cr_expect_null(nb_to_channels_last(NULL));
    cr_expect_eq(nb_last_error_code(), NB_ENULLARG);
    cr_expect(!nb_is_channels_last(NULL));
    nb_scope_end();
}

typedef struct cl_case {
    int64_t n, ci, co, h, w, k, stride, pad, groups;
    bool bias;
} cl_case;

static const cl_case cases[] = {
    {2, 3, 8, 9, 11, 3, 1, 1, 1, true},   /* an RGB first layer */
    {4, 16, 32, 14, 14, 5, 1, 2, 1, true}, /* LeNet-like */
    {3, 8, 16, 10, 7, 3, 2, 1, 1, false},  /* stride 2, odd sizes */
    {2, 8, 8, 6, 6, 3, 1, 1, 2, true},     /* groups */
    {2, 32, 64, 8, 8, 1, 1, 0, 1, true},   /* 1x1 */
    {5, 16, 16, 7, 9, 3, 1, 0, 1, true},   /* no padding */
};

/* Scale for the tolerance: the largest magnitude in t. */
static double amax(nb_tensor *t) { return nb_item(nb_max(nb_abs(t), NULL, 0, false)); }

static void expect_close(nb_tensor *got, nb_tensor *want, const char *what, int ci) {
    double tol = 2e-5 * (1.0 + amax(want));
    double d = tu_max_abs_diff(got, want);
    cr_expect(d <= tol, "case %d: %s differs by %g (tolerance %g)", ci, what, d, tol);
}

Test(channels_last, conv2d_matches_nchw_and_keeps_the_layout) {
    for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
        const cl_case *c = &cases[ci];
        nb_scope_begin();
        int64_t oh = (c->h + 2 * c->pad - c->k) / c->stride + 1, ow = (c->w + 2 * c->pad - c->k) / c->stride + 1;
        nb_tensor *x = nb_randn(NB_SHAPE(c->n, c->ci, c->h, c->w), NB_F32, 10 + (uint64_t)ci);
        nb_tensor *w = nb_randn(NB_SHAPE(c->co, c->ci / c->groups, c->k, c->k), NB_F32, 20 + (uint64_t)ci);
        nb_tensor *b = c->bias ? nb_randn(NB_SHAPE(c->co), NB_F32, 30 + (uint64_t)ci) : NULL;
        nb_tensor *g = nb_randn(NB_SHAPE(c->n, c->co, oh, ow), NB_F32, 40 + (uint64_t)ci);
        nb_conv_opts o = {.stride = {c->stride, c->stride}, .padding = {c->pad, c->pad}, .groups = c->groups};
        nb_tensor *xs[2] = {nb_detach(x), nb_detach(nb_to_channels_last(x))};
        nb_tensor *ws[2] = {nb_detach(w), nb_detach(w)}, *bs[2] = {b ? nb_detach(b) : NULL, b ? nb_detach(b) : NULL};
        nb_tensor *ys[2];
        for (int v = 0; v < 2; v++) {
            nb_set_requires_grad(xs[v], true);
            nb_set_requires_grad(ws[v], true);
            if (bs[v]) nb_set_requires_grad(bs[v], true);
            ys[v] = nb_conv2d(xs[v], ws[v], bs[v], &o);
            cr_assert_not_null(ys[v], "case %d: %s", ci, nb_last_error());
            cr_assert_eq(nb_backward(ys[v], v ? nb_to_channels_last(g) : g), 0, "case %d: %s", ci, nb_last_error());
        }
        cr_expect(nb_is_channels_last(ys[1]) && !nb_is_contiguous(ys[1]), "case %d: y not channels-last", ci);
        cr_expect(nb_is_contiguous(ys[0]), "case %d: an NCHW conv's y is not contiguous", ci);
        cr_expect(nb_is_channels_last(nb_grad(xs[1])) && !nb_is_contiguous(nb_grad(xs[1])),
                  "case %d: the channels-last leaf's gradient lost its layout", ci);
        expect_close(ys[1], ys[0], "y", ci);
        expect_close(nb_grad(xs[1]), nb_grad(xs[0]), "dx", ci);
        expect_close(nb_grad(ws[1]), nb_grad(ws[0]), "dw", ci);
        if (b) expect_close(nb_grad(bs[1]), nb_grad(bs[0]), "db", ci);
        /* a second backward accumulates into the channels-last gradient */
        nb_tensor *y2 = nb_conv2d(xs[1], ws[1], bs[1], &o);
        cr_assert_eq(nb_backward(y2, nb_to_channels_last(g)), 0, "case %d: %s", ci, nb_last_error());
        expect_close(nb_grad(xs[1]), nb_mul_scalar(nb_grad(xs[0]), 2.0), "dx accumulated twice", ci);
        nb_scope_end();
    }
}

/* The weight and bias gradients of a channels-last conv, at nt threads. */
static void grads_at(int nt, float *dw, float *db, int64_t nw, int64_t nb) {
    cr_assert_eq(nb_set_num_threads(nt), 0, "%s", nb_last_error());
    nb_scope_begin();
    nb_tensor *x = nb_to_channels_last(nb_randn(NB_SHAPE(10, 16, 12, 12), NB_F32, 5));
    nb_tensor *w = nb_randn(NB_SHAPE(32, 16, 3, 3), NB_F32, 6), *b = nb_randn(NB_SHAPE(32), NB_F32, 7);
    nb_set_requires_grad(w, true);
    nb_set_requires_grad(b, true);
    nb_tensor *y = nb_conv2d(x, w, b, &(nb_conv_opts){.padding = {1, 1}});
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_eq(nb_backward(y, nb_to_channels_last(nb_randn(NB_SHAPE(10, 32, 12, 12), NB_F32, 8))), 0, "%s",
                 nb_last_error());
    cr_assert_eq(nb_copy_to(nb_contiguous(nb_grad(w)), dw, sizeof(float) * (size_t)nw), 0);
    cr_assert_eq(nb_copy_to(nb_grad(b), db, sizeof(float) * (size_t)nb), 0);
    nb_scope_end();
}

Test(channels_last, weight_and_bias_gradient_bits_do_not_depend_on_threads) {
    enum { NW = 32 * 16 * 9, NBIAS = 32 };
    static float dw[4][NW], db[4][NBIAS];
    for (int nt = 1; nt <= 3; nt++) {
        grads_at(nt, dw[nt], db[nt], NW, NBIAS);
        if (nt == 1) continue;
        cr_expect(!memcmp(dw[nt], dw[1], sizeof dw[1]), "dw at %d threads differs from 1 thread", nt);
        cr_expect(!memcmp(db[nt], db[1], sizeof db[1]), "db at %d threads differs from 1 thread", nt);
    }
}

static nb_tensor *conv_fn(nb_tensor *const *in, int n, void *user) {
    (void)n, (void)user;
    return nb_conv2d(in[0], in[1], in[2], &(nb_conv_opts){.stride = {2, 1}, .padding = {1, 1}});
}

Test(channels_last, f64_gradcheck_through_a_channels_last_input) {
    nb_scope_begin();
    nb_tensor *in[3] = {nb_detach(nb_to_channels_last(nb_randn(NB_SHAPE(2, 3, 5, 4), NB_F64, 1))),
                        nb_randn(NB_SHAPE(4, 3, 3, 3), NB_F64, 2), nb_randn(NB_SHAPE(4), NB_F64, 3)};
    cr_assert(nb_is_channels_last(in[0]));
    for (int i = 0; i < 3; i++) nb_set_requires_grad(in[i], true);
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    int rc = nb_gradcheck(conv_fn, in, 3, &(nb_gradcheck_opts){.eps = 1e-6, .atol = 1e-5, .rtol = 1e-3}, &r);
    cr_expect_eq(rc, 0, "gradcheck %d: %s (input %d: analytic %.10g numeric %.10g)", rc, nb_last_error(), r.input,
                 r.analytic, r.numeric);
    nb_scope_end();
}

Test(channels_last, elementwise_outputs_follow_a_channels_last_input) {
    nb_scope_begin();
    nb_tensor *a = nb_randn(NB_SHAPE(3, 5, 4, 6), NB_F32, 1), *b = nb_randn(NB_SHAPE(3, 5, 4, 6), NB_F32, 2);
    nb_tensor *al = nb_to_channels_last(a), *bl = nb_to_channels_last(b);
    nb_tensor *bias = nb_randn(NB_SHAPE(1, 5, 1, 1), NB_F32, 3);
    struct {
        const char *what;
        nb_tensor *got, *want;
    } r[] = {
        {"relu", nb_relu(al), nb_relu(a)},
        {"tanh", nb_tanh(al), nb_tanh(a)},
        {"add both channels-last", nb_add(al, bl), nb_add(a, b)},
        {"mul one channels-last", nb_mul(a, bl), nb_mul(a, b)},
        {"add a broadcast bias", nb_add(al, bias), nb_add(a, bias)},
        {"mul_scalar", nb_mul_scalar(al, 0.5), nb_mul_scalar(a, 0.5)},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
        cr_assert_not_null(r[i].got, "%s: %s", r[i].what, nb_last_error());
        cr_expect(nb_is_channels_last(r[i].got) && !nb_is_contiguous(r[i].got), "%s: output not channels-last",
                  r[i].what);
        cr_expect_eq(tu_max_abs_diff(r[i].got, r[i].want), 0.0, "%s: values differ from the NCHW op", r[i].what);
    }
    /* contiguous inputs keep contiguous outputs; a transposed (non-channels-last) input too */
    cr_expect(nb_is_contiguous(nb_add(a, b)));
    cr_expect(nb_is_contiguous(nb_relu(nb_transpose(a, 2, 3))));
    nb_scope_end();
}

/* conv -> relu -> conv -> sum, channels-last or not: the same gradients. */
Test(channels_last, a_small_network_stays_channels_last_and_matches) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(4, 8, 10, 10), NB_F32, 1);
    nb_tensor *w1 = nb_mul_scalar(nb_randn(NB_SHAPE(16, 8, 3, 3), NB_F32, 2), 0.2);
    nb_tensor *w2 = nb_mul_scalar(nb_randn(NB_SHAPE(8, 16, 3, 3), NB_F32, 3), 0.2);
    nb_tensor *ws[2][2], *h[2];
    for (int v = 0; v < 2; v++) {
        ws[v][0] = nb_detach(w1), ws[v][1] = nb_detach(w2);
        nb_set_requires_grad(ws[v][0], true);
        nb_set_requires_grad(ws[v][1], true);
        nb_tensor *in = v ? nb_to_channels_last(x) : x;
        nb_tensor *a = nb_relu(nb_conv2d(in, ws[v][0], NULL, &(nb_conv_opts){.padding = {1, 1}}));
        h[v] = nb_conv2d(a, ws[v][1], NULL, &(nb_conv_opts){.padding = {1, 1}});
        cr_assert_not_null(h[v], "%s", nb_last_error());
        cr_expect(v == 0 || (nb_is_channels_last(a) && nb_is_channels_last(h[v])), "the layout was lost");
        cr_assert_eq(nb_backward(nb_sum(nb_mul(h[v], h[v]), NULL, 0, false), NULL), 0, "%s", nb_last_error());
    }
    expect_close(h[1], h[0], "h", 0);
    expect_close(nb_grad(ws[1][0]), nb_grad(ws[0][0]), "dw1", 0);
    expect_close(nb_grad(ws[1][1]), nb_grad(ws[0][1]), "dw2", 0);
    nb_scope_end();
}
