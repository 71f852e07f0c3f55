/* test_engine.c — the backward engine: accumulation, broadcasting, retain and
 * create graph, nb_autograd_grad, grad mode, detach, retain_grad, hooks,
 * version counters, anomaly mode, error cases, node names and memory.
 *
 * Every expected value is computed by hand (or checked against PyTorch 1.13:
 * the same program written with torch gives the same numbers and errors).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

/* A tensor from a few doubles, in the open scope. */
static nb_tensor *eng_t(nb_dims shape, nb_dtype dt, const double *v) {
    nb_tensor *t = tu_tensor(shape, dt, v);
    cr_assert_not_null(t, "tu_tensor: %s", nb_last_error());
    return t;
}

/* A leaf that requires grad. */
static nb_tensor *eng_leaf(nb_dims shape, nb_dtype dt, const double *v) {
    nb_tensor *t = eng_t(shape, dt, v);
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

/* Asserts that t holds exactly the n values `want` (within tol). */
static void eng_expect(const nb_tensor *t, const double *want, int64_t n, double tol) {
    cr_assert_not_null(t, "expected a tensor, got NULL (%s)", nb_last_error());
    cr_assert_eq(nb_numel(t), n, "numel %lld, expected %lld", (long long)nb_numel(t),
                 (long long)n);
    double got[64];
    cr_assert(n <= 64);
    nb_tensor *d = nb_to_dtype((nb_tensor *)t, NB_F64);
    cr_assert_not_null(d);
    cr_assert_eq(nb_copy_to(d, got, sizeof(double) * (size_t)n), 0);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol, "element %lld: got %g, expected %g",
                  (long long)i, got[i], want[i]);
}

static void eng_expect_shape(const nb_tensor *t, nb_dims s) {
    cr_assert_not_null(t);
    cr_assert_eq(nb_ndim(t), s.ndim, "ndim %d, expected %d", nb_ndim(t), s.ndim);
    for (int i = 0; i < s.ndim; i++)
        cr_assert_eq(nb_shape(t)[i], s.d[i], "dim %d: %lld, expected %lld", i,
                     (long long)nb_shape(t)[i], (long long)s.d[i]);
}

/* ---- the seed example ---- */

Test(engine, seed_example_grad_is_4) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = nb_scalar(1.0);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    nb_tensor *y = nb_add(nb_pow_scalar(x, 2), nb_mul_scalar(x, 2));
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    cr_assert_not_null(nb_grad(x));
    cr_assert_float_eq(nb_item(nb_grad(x)), 4.0, 1e-6);
    cr_assert_eq(nb_dtype(nb_grad(x)), NB_F32);
    cr_assert_eq(nb_ndim(nb_grad(x)), 0);
    nb_scope_end();
}

/* ---- accumulation ---- */

Test(engine, leaves_accumulate_and_zero_grad_resets) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    cr_assert_null(nb_grad(x), "no grad before any backward");
    for (int k = 1; k <= 2; k++) {
        nb_tensor *y = nb_sum_all(nb_mul(x, x));
        cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
        const double want[] = {2.0 * k, 4.0 * k, 6.0 * k};   /* 2x per backward */
        eng_expect(nb_grad(x), want, 3, 1e-5);
    }
    nb_zero_grad(x);
    cr_assert_null(nb_grad(x), "nb_zero_grad drops the gradient (set_to_none)");
    nb_tensor *y = nb_sum_all(nb_mul(x, x));
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    const double want[] = {2, 4, 6};
    eng_expect(nb_grad(x), want, 3, 1e-5);
    nb_scope_end();
}

Test(engine, same_leaf_used_twice_sums_paths) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {3};
    nb_tensor *x = eng_leaf(NB_SHAPE(1), NB_F64, xv);
    /* y = x*x + exp(0*x) + 5x -> dy/dx = 2x + 5 = 11 */
    nb_tensor *y = nb_add(nb_add(nb_mul(x, x), nb_exp(nb_mul_scalar(x, 0))), nb_mul_scalar(x, 5));
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    const double want[] = {11};
    eng_expect(nb_grad(x), want, 1, 1e-12);
    nb_scope_end();
}

/* ---- broadcasting ---- */

Test(engine, broadcast_add_reduces_to_input_shapes) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3}, yv[] = {10, 20, 30, 40};
    nb_tensor *x = eng_leaf(NB_SHAPE(3, 1), NB_F32, xv);
    nb_tensor *y = eng_leaf(NB_SHAPE(4), NB_F32, yv);
    nb_tensor *z = nb_add(x, y);
    eng_expect_shape(z, NB_SHAPE(3, 4));
    cr_assert_eq(nb_backward(nb_sum_all(z), NULL), 0, "%s", nb_last_error());
    eng_expect_shape(nb_grad(x), NB_SHAPE(3, 1));
    eng_expect_shape(nb_grad(y), NB_SHAPE(4));
    const double gx[] = {4, 4, 4}, gy[] = {3, 3, 3, 3};
    eng_expect(nb_grad(x), gx, 3, 1e-5);
    eng_expect(nb_grad(y), gy, 4, 1e-5);
    nb_scope_end();
}

Test(engine, broadcast_mul_reduces_to_input_shapes) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3}, yv[] = {10, 20, 30, 40};
    nb_tensor *x = eng_leaf(NB_SHAPE(3, 1), NB_F32, xv);
    nb_tensor *y = eng_leaf(NB_SHAPE(4), NB_F32, yv);
    nb_tensor *z = nb_mul(x, y);
    cr_assert_eq(nb_backward(nb_sum_all(z), NULL), 0, "%s", nb_last_error());
    eng_expect_shape(nb_grad(x), NB_SHAPE(3, 1));
    eng_expect_shape(nb_grad(y), NB_SHAPE(4));
    const double gx[] = {100, 100, 100};   /* sum of y */
    const double gy[] = {6, 6, 6, 6};      /* sum of x */
    eng_expect(nb_grad(x), gx, 3, 1e-4);
    eng_expect(nb_grad(y), gy, 4, 1e-5);
    nb_scope_end();
}

/* ---- retain_graph ---- */

Test(engine, second_backward_without_retain_graph_fails) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *y = nb_sum_all(nb_mul(x, x));
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    int rc = nb_backward(y, NULL);
    cr_assert_eq(rc, NB_EAUTOGRAD, "second backward: rc %d (%s)", rc, nb_last_error());
    cr_assert_not_null(strstr(nb_last_error(), "retain_graph"), "message: %s",
                       nb_last_error());
    const double want[] = {2, 4, 6};   /* as after the first backward */
    eng_expect(nb_grad(x), want, 3, 1e-5);
    nb_scope_end();
}

Test(engine, retain_graph_allows_second_backward) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *y = nb_sum_all(nb_mul(nb_exp(x), x));   /* d/dx = e^x (1 + x) */
    nb_backward_opts keep = {.retain_graph = true};
    cr_assert_eq(nb_backward_ex(y, NULL, &keep), 0, "%s", nb_last_error());
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    double want[3];
    for (int i = 0; i < 3; i++) want[i] = 2 * exp(xv[i]) * (1 + xv[i]);
    eng_expect(nb_grad(x), want, 3, 1e-3);
    /* the second backward did not retain: a third one fails */
    cr_assert_eq(nb_backward(y, NULL), NB_EAUTOGRAD);
    nb_scope_end();
}

/* ---- create_graph and nb_autograd_grad ---- */

Test(engine, create_graph_second_derivative_of_cube) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = nb_scalar_dtype(2.0, NB_F64);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    nb_tensor *y = nb_pow_scalar(x, 3);
    nb_tensor *g1 = NULL, *g2 = NULL;
    nb_grad_opts co = {.create_graph = true};
    cr_assert_eq(nb_autograd_grad(&y, 1, &x, 1, NULL, &co, &g1), 0, "%s", nb_last_error());
    cr_assert_not_null(g1);
    cr_assert_float_eq(nb_item(g1), 12.0, 1e-12);   /* 3x^2 */
    cr_assert(nb_requires_grad(g1), "with create_graph the gradient is in the graph");
    cr_assert_eq(nb_autograd_grad(&g1, 1, &x, 1, NULL, NULL, &g2), 0, "%s", nb_last_error());
    cr_assert_not_null(g2);
    cr_assert_float_eq(nb_item(g2), 12.0, 1e-12);   /* 6x */
    cr_assert_null(nb_grad(x), "nb_autograd_grad leaves .grad alone");
    nb_scope_end();
}

Test(engine, create_graph_through_backward_then_grad_of_grad) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = nb_scalar_dtype(0.5, NB_F64);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    /* y = tanh(x): y' = 1 - tanh^2, y'' = -2 tanh (1 - tanh^2) */
    nb_tensor *y = nb_tanh(x);
    nb_backward_opts co = {.create_graph = true};
    cr_assert_eq(nb_backward_ex(y, NULL, &co), 0, "%s", nb_last_error());
    nb_tensor *g = nb_retain(nb_grad(x));
    double th = tanh(0.5);
    cr_assert_float_eq(nb_item(g), 1 - th * th, 1e-12);
    nb_tensor *gg = NULL;
    cr_assert_eq(nb_autograd_grad(&g, 1, &x, 1, NULL, NULL, &gg), 0, "%s", nb_last_error());
    cr_assert_float_eq(nb_item(gg), -2 * th * (1 - th * th), 1e-12);
    nb_release(g);
    nb_zero_grad(x);
    nb_scope_end();
}

Test(engine, autograd_grad_does_not_touch_grad) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, -2}, wv[] = {3, 4};
    nb_tensor *x = eng_leaf(NB_SHAPE(2), NB_F32, xv);
    nb_tensor *w = eng_leaf(NB_SHAPE(2), NB_F32, wv);
    nb_tensor *y = nb_sum_all(nb_mul(x, w));
    nb_tensor *in[2] = {x, w}, *g[2] = {NULL, NULL};
    cr_assert_eq(nb_autograd_grad(&y, 1, in, 2, NULL, NULL, g), 0, "%s", nb_last_error());
    eng_expect(g[0], wv, 2, 1e-6);
    eng_expect(g[1], xv, 2, 1e-6);
    cr_assert_null(nb_grad(x));
    cr_assert_null(nb_grad(w));
    nb_scope_end();
}

Test(engine, autograd_grad_with_grad_outputs) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3}, gov[] = {1, 10, 100};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F64, xv);
    nb_tensor *y = nb_mul(x, x);
    nb_tensor *go = eng_t(NB_SHAPE(3), NB_F64, gov);
    nb_tensor *g = NULL;
    cr_assert_eq(nb_autograd_grad(&y, 1, &x, 1, &go, NULL, &g), 0, "%s", nb_last_error());
    const double want[] = {2, 40, 600};
    eng_expect(g, want, 3, 1e-12);
    nb_scope_end();
}

Test(engine, autograd_grad_allow_unused) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {2}, zv[] = {5};
    nb_tensor *x = eng_leaf(NB_SHAPE(1), NB_F64, xv);
    nb_tensor *z = eng_leaf(NB_SHAPE(1), NB_F64, zv);
    nb_tensor *in[2] = {x, z};

    /* without allow_unused an input the output does not depend on is an error */
    nb_tensor *y = nb_sum_all(nb_mul(x, x));
    nb_tensor *g[2] = {NULL, NULL};
    int rc = nb_autograd_grad(&y, 1, in, 2, NULL, NULL, g);
    cr_assert_lt(rc, 0, "unused input without allow_unused must fail");
    cr_assert_gt(strlen(nb_last_error()), 0);

    /* with it: NULL for the unused one */
    y = nb_sum_all(nb_mul(x, x));
    nb_grad_opts au = {.allow_unused = true};
    g[0] = g[1] = NULL;
    cr_assert_eq(nb_autograd_grad(&y, 1, in, 2, NULL, &au, g), 0, "%s", nb_last_error());
    const double want[] = {4};
    eng_expect(g[0], want, 1, 1e-12);
    cr_assert_null(g[1]);
    cr_assert_null(nb_grad(x));
    cr_assert_null(nb_grad(z));
    nb_scope_end();
}

Test(engine, autograd_grad_wrt_non_leaf_and_two_outputs) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = eng_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *h = nb_mul_scalar(x, 2);                 /* a non-leaf input */
    nb_tensor *y1 = nb_sum_all(nb_mul_scalar(h, 3));    /* dy1/dh = 3 */
    nb_tensor *y2 = nb_sum_all(nb_mul(h, h));           /* dy2/dh = 2h = [4, 8] */
    nb_tensor *outs[2] = {y1, y2}, *in[2] = {h, x}, *g[2] = {NULL, NULL};
    cr_assert_eq(nb_autograd_grad(outs, 2, in, 2, NULL, NULL, g), 0, "%s", nb_last_error());
    const double gh[] = {7, 11}, gx[] = {14, 22};       /* summed over outputs; dx = 2 dh */
    eng_expect(g[0], gh, 2, 1e-12);
    eng_expect(g[1], gx, 2, 1e-12);
    cr_assert_null(nb_grad(x));
    cr_assert_null(nb_grad(h));
    nb_scope_end();
}

Test(engine, backward_on_a_leaf_root) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2}, gv[] = {5, -6};
    nb_tensor *x = eng_leaf(NB_SHAPE(2), NB_F32, xv);
    cr_assert_eq(nb_backward(x, eng_t(NB_SHAPE(2), NB_F32, gv)), 0, "%s", nb_last_error());
    eng_expect(nb_grad(x), gv, 2, 0);
    nb_scope_end();
}

Test(engine, long_chain_does_not_overflow_the_stack) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = nb_scalar_dtype(0.0, NB_F64);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    nb_memory_stats_t s0 = nb_memory_stats();
    nb_scope_begin();
    nb_tensor *y = x;
    for (int i = 0; i < 100000; i++) y = nb_add_scalar(y, 1e-5);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_float_eq(nb_item(y), 1.0, 1e-9);
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    cr_assert_float_eq(nb_item(nb_grad(x)), 1.0, 0);
    nb_scope_end();
    nb_zero_grad(x);
    cr_assert_eq(nb_memory_stats().live_tensors, s0.live_tensors);
    /* and a long graph dropped without a backward */
    nb_scope_begin();
    y = x;
    for (int i = 0; i < 100000; i++) y = nb_mul_scalar(y, 1.0);
    cr_assert_not_null(y);
    nb_scope_end();
    cr_assert_eq(nb_memory_stats().live_tensors, s0.live_tensors);
    nb_scope_end();
}

/* ---- in place on tensors that require grad ---- */

Test(engine, in_place_on_leaf_requiring_grad) {
    nb_init(NULL);
    nb_scope_begin();
    const double wv[] = {1, 2}, dv[] = {0.5, 0.5};
    nb_tensor *w = eng_leaf(NB_SHAPE(2), NB_F32, wv);
    nb_tensor *d = eng_t(NB_SHAPE(2), NB_F32, dv);
    /* refused in grad mode (PyTorch: "a leaf Variable that requires grad is
     * being used in an in-place operation") */
    cr_assert_null(nb_add_(w, d));
    cr_assert_gt(strlen(nb_last_error()), 0);
    eng_expect(w, wv, 2, 0);
    /* allowed with grad mode off, as an optimizer step does */
    uint64_t v0 = nb_version(w);
    bool prev = nb_set_grad_enabled(false);
    cr_assert_eq(nb_add_(w, d), w, "%s", nb_last_error());
    nb_set_grad_enabled(prev);
    cr_assert_gt(nb_version(w), v0);
    const double want[] = {1.5, 2.5};
    eng_expect(w, want, 2, 0);
    cr_assert(nb_requires_grad(w), "still a leaf that requires grad");
    cr_assert(nb_is_leaf(w));
    nb_tensor *loss = nb_sum_all(nb_mul(w, w));
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    const double gw[] = {3, 5};
    eng_expect(nb_grad(w), gw, 2, 1e-6);
    nb_scope_end();
}

/* ---- grad mode and detach ---- */

Test(engine, no_grad_mode_records_nothing) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = eng_leaf(NB_SHAPE(2), NB_F32, xv);
    cr_assert(nb_is_grad_enabled());
    bool prev = nb_set_grad_enabled(false);
    cr_assert(prev, "grad mode was on");
    cr_assert_not(nb_is_grad_enabled());
    nb_tensor *y = nb_mul_scalar(x, 2);
    cr_assert_not_null(y);
    cr_assert_null(nb_grad_fn_name(y));
    cr_assert_not(nb_requires_grad(y));
    cr_assert(nb_is_leaf(y));
    const double want[] = {2, 4};
    eng_expect(y, want, 2, 1e-6);
    prev = nb_set_grad_enabled(true);
    cr_assert_not(prev, "set_grad_enabled returns the previous setting");
    cr_assert(nb_is_grad_enabled());
    nb_tensor *z = nb_mul_scalar(x, 2);
    cr_assert(nb_requires_grad(z));
    cr_assert_not_null(nb_grad_fn_name(z));
    /* backward through a no-grad result is an error */
    cr_assert_lt(nb_backward(nb_sum_all(y), NULL), 0);
    cr_assert_null(nb_grad(x));
    nb_scope_end();
}

Test(engine, detach_cuts_the_graph_and_shares_data) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *y = nb_mul_scalar(x, 3);
    nb_tensor *d = nb_detach(y);
    cr_assert_not_null(d);
    cr_assert_null(nb_grad_fn_name(d));
    cr_assert_not(nb_requires_grad(d));
    cr_assert(nb_is_leaf(d));
    cr_assert_eq(nb_data(d), nb_data(y), "detach is a view of the same data");
    const double want[] = {3, 6, 9};
    eng_expect(d, want, 3, 1e-6);
    /* the detached path contributes no gradient: loss = sum(y * d) -> dL/dx = 3 d */
    nb_tensor *loss = nb_sum_all(nb_mul(y, d));
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    const double gx[] = {9, 18, 27};
    eng_expect(nb_grad(x), gx, 3, 1e-5);
    /* a detached tensor may be marked requires_grad: it is a leaf */
    cr_assert_eq(nb_set_requires_grad(d, true), 0, "%s", nb_last_error());
    /* a non-leaf may not */
    cr_assert_eq(nb_set_requires_grad(y, false), NB_EAUTOGRAD);
    nb_scope_end();
}

/* ---- retain_grad ---- */

Test(engine, retain_grad_on_non_leaf) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *h = nb_mul(x, x);
    nb_tensor *h2 = nb_mul(x, x);
    cr_assert_not(nb_is_leaf(h));
    cr_assert_eq(nb_retain_grad(h), 0, "%s", nb_last_error());
    nb_tensor *loss = nb_sum_all(nb_add(nb_mul_scalar(h, 3), h2));
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    const double gh[] = {3, 3, 3};
    eng_expect(nb_grad(h), gh, 3, 1e-6);
    cr_assert_null(nb_grad(h2), "a non-leaf without retain_grad keeps no .grad");
    const double gx[] = {8, 16, 24};   /* (3 + 1) * 2x */
    eng_expect(nb_grad(x), gx, 3, 1e-5);
    nb_scope_end();
}

/* ---- hooks ---- */

typedef struct eng_hook_log {
    int calls;             /* times the hook ran */
    double first;          /* first element of the gradient it saw */
    int64_t numel;         /* numel of that gradient */
} eng_hook_log;

static nb_tensor *eng_hook_read(nb_tensor *grad, void *user) {
    eng_hook_log *log = user;
    log->calls++;
    log->numel = nb_numel(grad);
    int64_t zero[NB_MAX_DIMS] = {0};
    log->first = nb_get(grad, zero);
    return NULL;
}

static nb_tensor *eng_hook_double(nb_tensor *grad, void *user) {
    eng_hook_log *log = user;
    log->calls++;
    return nb_mul_scalar(grad, 2.0);
}

Test(engine, hook_reads_gradient) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    eng_hook_log log = {0};
    cr_assert_geq(nb_register_hook(x, eng_hook_read, &log), 0, "%s", nb_last_error());
    nb_tensor *loss = nb_sum_all(nb_mul_scalar(x, 5));
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    cr_assert_eq(log.calls, 1);
    cr_assert_eq(log.numel, 3);
    cr_assert_float_eq(log.first, 5.0, 1e-6);
    const double gx[] = {5, 5, 5};
    eng_expect(nb_grad(x), gx, 3, 1e-6);
    nb_scope_end();
}

Test(engine, hook_replaces_gradient_on_leaf) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = eng_leaf(NB_SHAPE(2), NB_F32, xv);
    eng_hook_log log = {0};
    cr_assert_geq(nb_register_hook(x, eng_hook_double, &log), 0, "%s", nb_last_error());
    nb_tensor *loss = nb_sum_all(nb_mul_scalar(x, 3));
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    cr_assert_eq(log.calls, 1);
    const double gx[] = {6, 6};
    eng_expect(nb_grad(x), gx, 2, 1e-6);
    nb_scope_end();
}

Test(engine, hook_replaces_gradient_on_non_leaf) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *h = nb_mul(x, x);
    eng_hook_log dbl = {0}, rd = {0};
    cr_assert_geq(nb_register_hook(h, eng_hook_double, &dbl), 0, "%s", nb_last_error());
    cr_assert_geq(nb_register_hook(x, eng_hook_read, &rd), 0, "%s", nb_last_error());
    nb_tensor *loss = nb_sum_all(h);
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    cr_assert_eq(dbl.calls, 1);
    cr_assert_eq(rd.calls, 1);
    cr_assert_float_eq(rd.first, 4.0, 1e-6);   /* 2 * 2x at x = 1 */
    const double gx[] = {4, 8, 12};
    eng_expect(nb_grad(x), gx, 3, 1e-5);
    nb_scope_end();
}

/* ---- version counter ---- */

Test(engine, in_place_change_of_saved_tensor_is_caught) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3}, wv[] = {4, 5, 6}, ov[] = {1, 1, 1};
    nb_tensor *x = eng_t(NB_SHAPE(3), NB_F32, xv);   /* no grad: in place allowed */
    nb_tensor *w = eng_leaf(NB_SHAPE(3), NB_F32, wv);
    nb_tensor *y = nb_mul(x, w);                     /* saves x for dL/dw */
    uint64_t v0 = nb_version(x);
    cr_assert_not_null(nb_add_(x, eng_t(NB_SHAPE(3), NB_F32, ov)), "%s", nb_last_error());
    cr_assert_gt(nb_version(x), v0, "in-place op bumps the version");
    int rc = nb_backward(nb_sum_all(y), NULL);
    cr_assert_eq(rc, NB_EAUTOGRAD, "rc %d (%s)", rc, nb_last_error());
    const char *msg = nb_last_error();
    cr_assert_not_null(strstr(msg, "MulBackward"), "message should name the node: %s", msg);
    cr_assert(strstr(msg, "in-place") || strstr(msg, "inplace") || strstr(msg, "version"),
              "message should say why: %s", msg);
    cr_assert_null(nb_grad(w));
    nb_scope_end();
}

Test(engine, in_place_change_of_unsaved_tensor_is_fine) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3}, wv[] = {4, 5, 6}, ov[] = {1, 1, 1};
    nb_tensor *x = eng_t(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *w = eng_leaf(NB_SHAPE(3), NB_F32, wv);
    nb_tensor *y = nb_add(x, w);                     /* add saves nothing */
    cr_assert_not_null(nb_add_(x, eng_t(NB_SHAPE(3), NB_F32, ov)));
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    const double gw[] = {1, 1, 1};
    eng_expect(nb_grad(w), gw, 3, 1e-6);
    nb_scope_end();
}

/* ---- anomaly mode ---- */

/* y = log(x) * 0 at x = 0: forward is NaN (-inf * 0), and LogBackward computes
 * 0 / 0 = NaN. PyTorch: "Function 'LogBackward0' returned nan values". */
static nb_tensor *eng_log_times_zero(nb_tensor **x_out) {
    nb_tensor *x = nb_scalar(0.0);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    *x_out = x;
    return nb_mul(nb_log(x), nb_scalar(0.0));
}

Test(engine, anomaly_mode_names_forward_op) {
    nb_init(NULL);
    nb_scope_begin();
    bool prev = nb_set_anomaly_enabled(true);
    cr_assert_not(prev, "anomaly mode is off by default");
    nb_tensor *x;
    nb_tensor *y = eng_log_times_zero(&x);
    cr_assert_not_null(y, "%s", nb_last_error());
    int rc = nb_backward(y, NULL);
    const char *msg = nb_last_error();
    cr_assert_lt(rc, 0, "anomaly mode must fail on a NaN gradient");
    cr_assert(strstr(msg, "LogBackward") || strstr(msg, "nb_log"),
              "message should name the forward op: %s", msg);
    cr_assert(nb_set_anomaly_enabled(false), "returns the previous setting");
    nb_scope_end();
}

Test(engine, anomaly_off_lets_nan_through) {
    nb_init(NULL);
    nb_scope_begin();
    nb_set_anomaly_enabled(false);
    nb_tensor *x;
    nb_tensor *y = eng_log_times_zero(&x);
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    cr_assert_not_null(nb_grad(x));
    cr_assert(isnan(nb_item(nb_grad(x))), "grad is NaN (0/0)");
    nb_scope_end();
}

Test(engine, anomaly_mode_quiet_on_finite_graph) {
    nb_init(NULL);
    nb_scope_begin();
    nb_set_anomaly_enabled(true);
    nb_tensor *x = nb_scalar(2.0);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    nb_tensor *y = nb_mul(nb_log(x), nb_exp(x));
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    cr_assert_float_eq(nb_item(nb_grad(x)), exp(2.0) * (0.5 + log(2.0)), 1e-4);
    nb_set_anomaly_enabled(false);
    nb_scope_end();
}

/* ---- errors of backward ---- */

Test(engine, backward_non_scalar_without_grad_fails) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *y = nb_mul_scalar(x, 2);
    int rc = nb_backward(y, NULL);
    cr_assert_lt(rc, 0);
    cr_assert_not_null(strstr(nb_last_error(), "scalar"), "message: %s", nb_last_error());
    cr_assert_null(nb_grad(x), "a failed backward leaves .grad untouched");
    nb_scope_end();
}

Test(engine, backward_on_tensor_without_grad_fails) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *a = nb_ones(NB_SHAPE(2), NB_F32);
    nb_tensor *y = nb_sum_all(nb_mul_scalar(a, 2));
    cr_assert_not_null(y);
    cr_assert_lt(nb_backward(y, NULL), 0);
    cr_assert_gt(strlen(nb_last_error()), 0);
    cr_assert_lt(nb_backward(NULL, NULL), 0, "NULL root is an error, not a crash");
    nb_scope_end();
}

Test(engine, backward_non_scalar_with_explicit_grad) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3}, gv[] = {1, 2, 3};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *y = nb_mul_scalar(x, 2);
    cr_assert_eq(nb_backward(y, eng_t(NB_SHAPE(3), NB_F32, gv)), 0, "%s", nb_last_error());
    const double want[] = {2, 4, 6};
    eng_expect(nb_grad(x), want, 3, 1e-6);
    nb_scope_end();
}

Test(engine, backward_with_wrong_grad_shape_fails) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3}, gv[] = {1, 2};
    nb_tensor *x = eng_leaf(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *y = nb_mul_scalar(x, 2);
    cr_assert_lt(nb_backward(y, eng_t(NB_SHAPE(2), NB_F32, gv)), 0);
    cr_assert_null(nb_grad(x));
    nb_scope_end();
}

/* ---- node names ---- */

Test(engine, grad_fn_names) {
    nb_init(NULL);
    nb_scope_begin();
    const double av[] = {1, 2}, bv[] = {3, 4};
    nb_tensor *a = eng_leaf(NB_SHAPE(2), NB_F32, av);
    nb_tensor *b = eng_leaf(NB_SHAPE(2), NB_F32, bv);
    cr_assert_null(nb_grad_fn_name(a), "a leaf has no grad_fn");
    cr_assert_str_eq(nb_grad_fn_name(nb_add(a, b)), "AddBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_mul(a, b)), "MulBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_sub(a, b)), "SubBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_div(a, b)), "DivBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_neg(a)), "NegBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_exp(a)), "ExpBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_log(a)), "LogBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_tanh(a)), "TanhBackward");
    cr_assert_str_eq(nb_grad_fn_name(nb_sum_all(a)), "SumBackward");
    cr_assert_null(nb_grad_fn_name(NULL));
    nb_scope_end();
}

/* ---- memory: a training-like loop in a scope leaks nothing ---- */

Test(engine, scoped_loop_returns_memory) {
    nb_init(NULL);
    nb_scope_begin();
    const double wv[] = {0.5, -1, 2, 0.25, 1.5, -0.75}, bv[] = {0.1, -0.2};
    nb_tensor *w = eng_leaf(NB_SHAPE(3, 2), NB_F32, wv);
    nb_tensor *b = eng_leaf(NB_SHAPE(2), NB_F32, bv);
    nb_memory_stats_t s0 = nb_memory_stats();
    for (int it = 0; it < 10000; it++) {
        nb_scope_begin();
        nb_tensor *x = nb_full(NB_SHAPE(4, 3), NB_F32, 0.001 * (it % 17));
        nb_tensor *h = nb_tanh(nb_add(nb_matmul(x, w), b));
        nb_tensor *loss = nb_mean_all(nb_mul(h, nb_exp(h)));
        int rc = nb_backward(loss, NULL);
        if (rc != 0) cr_assert_fail("iteration %d: %s", it, nb_last_error());
        nb_scope_end();
        nb_zero_grad(w);
        nb_zero_grad(b);
    }
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_bytes, s0.live_bytes, "live_bytes %zu -> %zu", s0.live_bytes,
                 s1.live_bytes);
    cr_assert_eq(s1.live_tensors, s0.live_tensors, "live_tensors %llu -> %llu",
                 (unsigned long long)s0.live_tensors, (unsigned long long)s1.live_tensors);
    nb_scope_end();
}

Test(engine, graph_without_backward_is_freed_at_scope_end) {
    nb_init(NULL);
    nb_scope_begin();
    const double wv[] = {1, 2, 3};
    nb_tensor *w = eng_leaf(NB_SHAPE(3), NB_F32, wv);
    nb_memory_stats_t s0 = nb_memory_stats();
    nb_scope_begin();
    nb_tensor *y = nb_sum_all(nb_mul(nb_exp(w), w));
    cr_assert_not_null(y);
    nb_scope_end();
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    cr_assert_eq(s1.live_tensors, s0.live_tensors);
    nb_scope_end();
}

Test(engine, retained_graph_is_freed_at_scope_end) {
    nb_init(NULL);
    nb_scope_begin();
    const double wv[] = {1, 2, 3};
    nb_tensor *w = eng_leaf(NB_SHAPE(3), NB_F32, wv);
    nb_memory_stats_t s0 = nb_memory_stats();
    nb_scope_begin();
    nb_tensor *y = nb_sum_all(nb_mul(nb_exp(w), w));
    nb_backward_opts keep = {.retain_graph = true, .create_graph = true};
    cr_assert_eq(nb_backward_ex(y, NULL, &keep), 0, "%s", nb_last_error());
    nb_scope_end();
    nb_zero_grad(w);
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    cr_assert_eq(s1.live_tensors, s0.live_tensors);
    nb_scope_end();
}
