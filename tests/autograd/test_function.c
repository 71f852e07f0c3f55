/* test_function.c — custom functions: a user forward/backward pair with a
 * context joins the graph like a built-in op (PyTorch's autograd.Function).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

static nb_tensor *fn_t(nb_dims shape, nb_dtype dt, const double *v) {
    nb_tensor *t = tu_tensor(shape, dt, v);
    cr_assert_not_null(t, "tu_tensor: %s", nb_last_error());
    return t;
}

static nb_tensor *fn_leaf(nb_dims shape, nb_dtype dt, const double *v) {
    nb_tensor *t = fn_t(shape, dt, v);
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

static void fn_expect(const nb_tensor *t, const double *want, int64_t n, double tol) {
    cr_assert_not_null(t, "expected a tensor, got NULL (%s)", nb_last_error());
    cr_assert_eq(nb_numel(t), n);
    double got[64];
    cr_assert(n <= 64);
    nb_tensor *d = nb_to_dtype((nb_tensor *)t, NB_F64);
    cr_assert_eq(nb_copy_to(d, got, sizeof(double) * (size_t)n), 0);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol, "element %lld: got %g, expected %g",
                  (long long)i, got[i], want[i]);
}

/* ---- cube: y = x^3, dy/dx = 3x^2 ---- */

static bool fn_cube_saw_grad_mode;   /* grad mode seen inside forward */

static nb_tensor *fn_cube_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    cr_assert_eq(n, 1);
    fn_cube_saw_grad_mode = nb_is_grad_enabled();
    if (nb_ctx_save(ctx, in[0]) != 0) return NULL;
    return nb_mul(nb_mul(in[0], in[0]), in[0]);
}

static int fn_cube_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    nb_tensor *x = nb_ctx_saved(ctx, 0);
    if (!x) return nb_last_error_code();
    if (!nb_ctx_needs_grad(ctx, 0)) return 0;
    grads[0] = nb_mul(nb_mul_scalar(nb_mul(x, x), 3.0), g);
    return grads[0] ? 0 : nb_last_error_code();
}

static const nb_function fn_cube = {"CubeBackward", fn_cube_fwd, fn_cube_bwd};

/* A backward that fails: its code must come out of nb_backward. */
static int fn_bad_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    (void)ctx;
    (void)g;
    (void)grads;
    return NB_ENOTSUP;
}
static const nb_function fn_failing = {"FailingBackward", fn_cube_fwd, fn_bad_bwd};

static nb_tensor *fn_cube_apply(nb_tensor *const *in, int n, void *user) {
    (void)user;
    return nb_function_apply(&fn_cube, in, n);
}

Test(function, cube_gradient) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, -3};
    nb_tensor *x = fn_leaf(NB_SHAPE(3), NB_F64, xv);
    fn_cube_saw_grad_mode = true;
    nb_tensor *y = nb_function_apply(&fn_cube, &x, 1);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_not(fn_cube_saw_grad_mode, "forward runs with grad mode off");
    cr_assert(nb_is_grad_enabled(), "grad mode is restored after forward");
    const double yv[] = {1, 8, -27};
    fn_expect(y, yv, 3, 1e-12);
    cr_assert(nb_requires_grad(y));
    cr_assert_not(nb_is_leaf(y));
    cr_assert_str_eq(nb_grad_fn_name(y), "CubeBackward");
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    const double gx[] = {3, 12, 27};
    fn_expect(nb_grad(x), gx, 3, 1e-12);
    nb_scope_end();
}

Test(function, cube_joins_graph_on_both_sides) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, -3}, wv[] = {1, 0.5, 2};
    nb_tensor *x = fn_leaf(NB_SHAPE(3), NB_F64, xv);
    nb_tensor *w = fn_leaf(NB_SHAPE(3), NB_F64, wv);
    nb_tensor *a = nb_mul_scalar(x, 0.5);                 /* built-in before */
    nb_tensor *c = nb_function_apply(&fn_cube, &a, 1);    /* custom */
    nb_tensor *loss = nb_sum_all(nb_mul(c, w));           /* built-in after */
    cr_assert_not_null(loss, "%s", nb_last_error());
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    /* a = [0.5, 1, -1.5]; dL/dx = w * 3a^2 * 0.5; dL/dw = a^3 */
    const double gx[] = {0.375, 0.75, 6.75}, gw[] = {0.125, 1, -3.375};
    fn_expect(nb_grad(x), gx, 3, 1e-12);
    fn_expect(nb_grad(w), gw, 3, 1e-12);
    nb_scope_end();
}

Test(function, cube_passes_gradcheck_and_gradgradcheck) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.3, -1.2, 2.0, 0.7, -0.1, 1.5};
    nb_tensor *x = fn_leaf(NB_SHAPE(2, 3), NB_F64, xv);
    nb_gradcheck_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = nb_gradcheck(fn_cube_apply, &x, 1, NULL, &rep);
    cr_assert_eq(rc, 0, "gradcheck: %s", nb_last_error());
    rc = nb_gradgradcheck(fn_cube_apply, &x, 1, NULL, &rep);
    cr_assert_eq(rc, 0, "gradgradcheck: %s", nb_last_error());
    nb_scope_end();
}

Test(function, no_input_requires_grad_records_nothing) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {2};
    nb_tensor *x = fn_t(NB_SHAPE(1), NB_F64, xv);
    nb_tensor *y = nb_function_apply(&fn_cube, &x, 1);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_float_eq(nb_item(y), 8.0, 1e-12);
    cr_assert_not(nb_requires_grad(y));
    cr_assert_null(nb_grad_fn_name(y));
    nb_scope_end();
}

Test(function, apply_with_null_input_gives_null) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = NULL;
    cr_assert_null(nb_function_apply(&fn_cube, &x, 1));
    nb_scope_end();
}

/* ---- two inputs, ctx data, needs_grad: y = k * x * c ---- */

typedef struct fn_scale_data {
    double k;        /* the factor, stored at forward */
} fn_scale_data;

static double fn_scale_next_k;       /* k for the next apply */
static int fn_scale_needs[2];        /* needs_grad seen in backward, -1 unset */
static int fn_scale_bwd_calls;

static nb_tensor *fn_scale_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    cr_assert_eq(n, 2);
    fn_scale_data *d = nb_ctx_data(ctx);
    cr_assert_not_null(d);
    d->k = fn_scale_next_k;
    if (nb_ctx_save(ctx, in[0]) != 0 || nb_ctx_save(ctx, in[1]) != 0) return NULL;
    return nb_mul_scalar(nb_mul(in[0], in[1]), d->k);
}

static int fn_scale_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    fn_scale_data *d = nb_ctx_data(ctx);
    fn_scale_bwd_calls++;
    fn_scale_needs[0] = nb_ctx_needs_grad(ctx, 0);
    fn_scale_needs[1] = nb_ctx_needs_grad(ctx, 1);
    nb_tensor *x = nb_ctx_saved(ctx, 0), *c = nb_ctx_saved(ctx, 1);
    if (!x || !c) return nb_last_error_code();
    if (fn_scale_needs[0]) grads[0] = nb_mul_scalar(nb_mul(g, c), d->k);
    if (fn_scale_needs[1]) grads[1] = nb_mul_scalar(nb_mul(g, x), d->k);
    return 0;
}

static const nb_function fn_scale = {"ScaleMulBackward", fn_scale_fwd, fn_scale_bwd};

Test(function, ctx_data_and_needs_grad) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2}, cv[] = {3, -4};
    nb_tensor *x = fn_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *c = fn_t(NB_SHAPE(2), NB_F64, cv);
    nb_tensor *in[2] = {x, c};
    fn_scale_next_k = 2.5;
    nb_tensor *y = nb_function_apply(&fn_scale, in, 2);
    fn_scale_next_k = 100;   /* must not matter: k lives in the node */
    cr_assert_not_null(y, "%s", nb_last_error());
    const double yv[] = {7.5, -20};
    fn_expect(y, yv, 2, 1e-12);
    fn_scale_needs[0] = fn_scale_needs[1] = -1;
    fn_scale_bwd_calls = 0;
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    cr_assert_eq(fn_scale_bwd_calls, 1);
    cr_assert_eq(fn_scale_needs[0], 1, "x requires grad");
    cr_assert_eq(fn_scale_needs[1], 0, "c does not");
    const double gx[] = {7.5, -10};
    fn_expect(nb_grad(x), gx, 2, 1e-12);
    cr_assert_null(nb_grad(c));
    nb_scope_end();
}

Test(function, both_inputs_need_grad) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1}, cv[] = {2};
    nb_tensor *in[2] = {fn_leaf(NB_SHAPE(1), NB_F64, xv), fn_leaf(NB_SHAPE(1), NB_F64, cv)};
    fn_scale_next_k = 1;
    nb_tensor *y = nb_function_apply(&fn_scale, in, 2);
    cr_assert_not_null(y, "%s", nb_last_error());
    fn_scale_needs[0] = fn_scale_needs[1] = -1;
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    cr_assert_eq(fn_scale_needs[0], 1);
    cr_assert_eq(fn_scale_needs[1], 1);
    cr_assert_float_eq(nb_item(nb_grad(in[0])), 2.0, 1e-12);
    cr_assert_float_eq(nb_item(nb_grad(in[1])), 1.0, 1e-12);
    nb_scope_end();
}

/* Forward-side check of zeroing, via a function that reports it. */
static int fn_zero_seen;
static nb_tensor *fn_zcheck_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)n;
    static const unsigned char zero[NB_CTX_DATA_BYTES];
    fn_zero_seen = memcmp(nb_ctx_data(ctx), zero, NB_CTX_DATA_BYTES) == 0;
    memset(nb_ctx_data(ctx), 0xAB, NB_CTX_DATA_BYTES);   /* all 256 bytes usable */
    return nb_mul_scalar(in[0], 1.0);
}
static int fn_zcheck_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    const unsigned char *p = nb_ctx_data(ctx);
    for (int i = 0; i < NB_CTX_DATA_BYTES; i++)
        if (p[i] != 0xAB) return NB_ESTATE;
    grads[0] = nb_mul_scalar(g, 1.0);
    return 0;
}
static const nb_function fn_zcheck = {"ZCheckBackward", fn_zcheck_fwd, fn_zcheck_bwd};

Test(function, ctx_data_is_zeroed_and_kept) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = fn_leaf(NB_SHAPE(2), NB_F32, xv);
    for (int i = 0; i < 4; i++) {
        fn_zero_seen = 0;
        nb_tensor *y = nb_function_apply(&fn_zcheck, &x, 1);
        cr_assert_not_null(y, "%s", nb_last_error());
        cr_assert(fn_zero_seen, "ctx data zeroed at forward (apply %d)", i);
        cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    }
    const double gx[] = {4, 4};
    fn_expect(nb_grad(x), gx, 2, 1e-6);
    nb_scope_end();
}

/* ---- saving the output itself ---- */

static nb_tensor *fn_myexp_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)n;
    nb_tensor *y = nb_exp(in[0]);
    if (!y || nb_ctx_save(ctx, y) != 0) return NULL;
    return y;
}

static int fn_myexp_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    nb_tensor *y = nb_ctx_saved(ctx, 0);
    if (!y) return nb_last_error_code();
    grads[0] = nb_mul(g, y);
    return grads[0] ? 0 : nb_last_error_code();
}

static const nb_function fn_myexp = {"MyExpBackward", fn_myexp_fwd, fn_myexp_bwd};

Test(function, saving_output_works) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0, 1, -2};
    nb_tensor *x = fn_leaf(NB_SHAPE(3), NB_F64, xv);
    nb_tensor *y = nb_function_apply(&fn_myexp, &x, 1);
    cr_assert_not_null(y, "%s", nb_last_error());
    /* loss = sum(y * 2): dL/dx = 2 e^x */
    cr_assert_eq(nb_backward(nb_sum_all(nb_mul_scalar(y, 2)), NULL), 0, "%s", nb_last_error());
    const double gx[] = {2, 2 * exp(1.0), 2 * exp(-2.0)};
    fn_expect(nb_grad(x), gx, 3, 1e-12);
    nb_scope_end();
}

static nb_tensor *fn_myexp_apply(nb_tensor *const *in, int n, void *user) {
    (void)user;
    return nb_function_apply(&fn_myexp, in, n);
}

Test(function, saved_output_supports_double_backward) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.3, -0.6, 1.2};
    nb_tensor *x = fn_leaf(NB_SHAPE(3), NB_F64, xv);
    cr_assert_eq(nb_gradcheck(fn_myexp_apply, &x, 1, NULL, NULL), 0, "%s", nb_last_error());
    cr_assert_eq(nb_gradgradcheck(fn_myexp_apply, &x, 1, NULL, NULL), 0, "%s", nb_last_error());
    /* d2/dx2 e^x = e^x, by hand through create_graph */
    nb_tensor *s = nb_scalar_dtype(0.7, NB_F64);
    cr_assert_eq(nb_set_requires_grad(s, true), 0);
    nb_tensor *y = nb_function_apply(&fn_myexp, &s, 1);
    nb_tensor *g1 = NULL, *g2 = NULL;
    nb_grad_opts co = {.create_graph = true};
    cr_assert_eq(nb_autograd_grad(&y, 1, &s, 1, NULL, &co, &g1), 0, "%s", nb_last_error());
    cr_assert_eq(nb_autograd_grad(&g1, 1, &s, 1, NULL, NULL, &g2), 0, "%s", nb_last_error());
    cr_assert_float_eq(nb_item(g2), exp(0.7), 1e-12);
    nb_scope_end();
}

Test(function, saving_output_does_not_leak) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.5, 1, 1.5, 2};
    nb_tensor *x = fn_leaf(NB_SHAPE(4), NB_F64, xv);
    nb_memory_stats_t s0 = nb_memory_stats();
    for (int i = 0; i < 100; i++) {
        nb_scope_begin();
        nb_tensor *y = nb_function_apply(&fn_myexp, &x, 1);
        cr_assert_not_null(y, "%s", nb_last_error());
        if (i % 2 == 0)   /* half with a backward, half dropped unused */
            cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
        nb_scope_end();
        nb_zero_grad(x);
    }
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_tensors, s0.live_tensors, "live_tensors %llu -> %llu",
                 (unsigned long long)s0.live_tensors, (unsigned long long)s1.live_tensors);
    cr_assert_eq(s1.live_bytes, s0.live_bytes, "live_bytes %zu -> %zu", s0.live_bytes,
                 s1.live_bytes);
    nb_scope_end();
}

Test(function, custom_function_graph_does_not_leak) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2}, cv[] = {3, 4};
    nb_tensor *x = fn_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *c = fn_t(NB_SHAPE(2), NB_F64, cv);
    nb_memory_stats_t s0 = nb_memory_stats();
    for (int i = 0; i < 100; i++) {
        nb_scope_begin();
        nb_tensor *a = nb_function_apply(&fn_cube, &x, 1);
        nb_tensor *in[2] = {a, c};
        fn_scale_next_k = 0.5;
        nb_tensor *y = nb_function_apply(&fn_scale, in, 2);
        cr_assert_not_null(y, "%s", nb_last_error());
        cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
        nb_scope_end();
        nb_zero_grad(x);
    }
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_tensors, s0.live_tensors);
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    nb_scope_end();
}

/* ---- errors ---- */

Test(function, backward_error_propagates) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = fn_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *y = nb_function_apply(&fn_failing, &x, 1);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_str_eq(nb_grad_fn_name(y), "FailingBackward");
    int rc = nb_backward(nb_sum_all(nb_mul_scalar(y, 2)), NULL);
    cr_assert_eq(rc, NB_ENOTSUP, "the backward's code comes out of nb_backward: got %d (%s)",
                 rc, nb_last_error());
    nb_scope_end();
}

static nb_tensor *fn_nullfwd_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)ctx;
    (void)n;
    /* an op that fails: shapes [2] and [3] do not broadcast */
    return nb_add(in[0], nb_ones(NB_SHAPE(3), nb_dtype(in[0])));
}
static const nb_function fn_nullfwd = {"NullFwdBackward", fn_nullfwd_fwd, fn_cube_bwd};

Test(function, forward_error_gives_null) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = fn_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *y = nb_function_apply(&fn_nullfwd, &x, 1);
    cr_assert_null(y);
    cr_assert_gt(strlen(nb_last_error()), 0);
    cr_assert_neq(nb_last_error_code(), 0);
    nb_scope_end();
}

Test(function, second_backward_without_retain_fails) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = fn_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *y = nb_sum_all(nb_function_apply(&fn_cube, &x, 1));
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    cr_assert_lt(nb_backward(y, NULL), 0, "saved tensors were freed");
    const double gx[] = {3, 12};
    fn_expect(nb_grad(x), gx, 2, 1e-12);
    nb_scope_end();
}

Test(function, retain_graph_keeps_saved_tensors) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2};
    nb_tensor *x = fn_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *y = nb_sum_all(nb_function_apply(&fn_cube, &x, 1));
    nb_backward_opts keep = {.retain_graph = true};
    cr_assert_eq(nb_backward_ex(y, NULL, &keep), 0, "%s", nb_last_error());
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    const double gx[] = {6, 24};
    fn_expect(nb_grad(x), gx, 2, 1e-12);
    nb_scope_end();
}

Test(function, in_place_change_of_saved_input_is_caught) {
    nb_init(NULL);
    nb_scope_begin();
    const double wv[] = {1, 2}, cv[] = {3, 4};
    nb_tensor *w = fn_leaf(NB_SHAPE(2), NB_F64, wv);
    nb_tensor *c = fn_t(NB_SHAPE(2), NB_F64, cv);   /* no grad: in place allowed */
    nb_tensor *in[2] = {w, c};
    fn_scale_next_k = 1;
    nb_tensor *y = nb_function_apply(&fn_scale, in, 2);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_not_null(nb_mul_scalar_(c, 2.0), "%s", nb_last_error());
    int rc = nb_backward(nb_sum_all(y), NULL);
    cr_assert_lt(rc, 0, "c was changed in place after it was saved");
    cr_assert_gt(strlen(nb_last_error()), 0);
    nb_scope_end();
}
