/* test_gradcheck.c — nb_gradcheck and nb_gradgradcheck: they pass on correct
 * gradients, and they catch wrong ones with a useful report.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

static nb_tensor *gc_leaf(nb_dims shape, nb_dtype dt, const double *v) {
    nb_tensor *t = tu_tensor(shape, dt, v);
    cr_assert_not_null(t, "tu_tensor: %s", nb_last_error());
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

/* ---- correct composites ---- */

/* f(x, y) = tanh(x*y) + exp(x) / (y + 2) + log(y + 3) * x^2;
 * x [3,1], y [4] broadcast to [3,4]. */
static nb_tensor *gc_composite(nb_tensor *const *in, int n, void *user) {
    (void)n;
    (void)user;
    nb_tensor *x = in[0], *y = in[1];
    nb_tensor *a = nb_tanh(nb_mul(x, y));
    nb_tensor *b = nb_div(nb_exp(x), nb_add_scalar(y, 2));
    nb_tensor *c = nb_mul(nb_log(nb_add_scalar(y, 3)), nb_pow_scalar(x, 2));
    return nb_add(nb_add(a, b), c);
}

/* g(a, w) = mean(tanh(a @ w), dim 0) - sum(w * w) / 2 */
static nb_tensor *gc_matmul_composite(nb_tensor *const *in, int n, void *user) {
    (void)n;
    (void)user;
    int dim0 = 0;
    nb_tensor *h = nb_mean(nb_tanh(nb_matmul(in[0], in[1])), &dim0, 1, false);
    return nb_sub(h, nb_mul_scalar(nb_sum_all(nb_mul(in[1], in[1])), 0.5));
}

Test(gradcheck, passes_on_correct_composite) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.3, -0.8, 1.1}, yv[] = {0.5, -1.0, 0.25, 1.5};
    nb_tensor *in[2] = {gc_leaf(NB_SHAPE(3, 1), NB_F64, xv), gc_leaf(NB_SHAPE(4), NB_F64, yv)};
    nb_gradcheck_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = nb_gradcheck(gc_composite, in, 2, NULL, &rep);
    cr_assert_eq(rc, 0, "gradcheck: %s", nb_last_error());
    cr_assert_lt(rep.max_abs_err, 1e-5, "max_abs_err %g", rep.max_abs_err);
    cr_assert_null(nb_grad(in[0]), "gradcheck leaves the inputs' .grad alone");
    cr_assert_null(nb_grad(in[1]));
    nb_scope_end();
}

Test(gradcheck, passes_on_matmul_composite) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *a = nb_randn(NB_SHAPE(4, 3), NB_F64, 11);
    nb_tensor *w = nb_randn(NB_SHAPE(3, 5), NB_F64, 12);
    cr_assert_eq(nb_set_requires_grad(a, true), 0);
    cr_assert_eq(nb_set_requires_grad(w, true), 0);
    nb_tensor *in[2] = {a, w};
    int rc = nb_gradcheck(gc_matmul_composite, in, 2, NULL, NULL);
    cr_assert_eq(rc, 0, "gradcheck: %s", nb_last_error());
    nb_scope_end();
}

/* opts.user reaches fn. */
static nb_tensor *gc_scaled_exp(nb_tensor *const *in, int n, void *user) {
    (void)n;
    const double *k = user;
    cr_assert_not_null(k, "opts.user must be passed to fn");
    return nb_exp(nb_mul_scalar(in[0], *k));
}

Test(gradcheck, user_pointer_reaches_fn) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.1, -0.4, 0.9};
    nb_tensor *x = gc_leaf(NB_SHAPE(3), NB_F64, xv);
    double k = -1.5;
    nb_gradcheck_opts o = {.user = &k};
    cr_assert_eq(nb_gradcheck(gc_scaled_exp, &x, 1, &o, NULL), 0, "%s", nb_last_error());
    nb_scope_end();
}

/* ---- wrong backwards ---- */

/* y = x^3 with the wrong backward 2x^2 (the right one is 3x^2). */
static nb_tensor *gc_cube_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)n;
    if (nb_ctx_save(ctx, in[0]) != 0) return NULL;
    return nb_pow_scalar(in[0], 3);
}
static int gc_wrong_cube_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    nb_tensor *x = nb_ctx_saved(ctx, 0);
    if (!x) return nb_last_error_code();
    grads[0] = nb_mul(nb_mul_scalar(nb_mul(x, x), 2.0), g);
    return grads[0] ? 0 : nb_last_error_code();
}
static const nb_function gc_wrong_cube = {"WrongCubeBackward", gc_cube_fwd, gc_wrong_cube_bwd};

static nb_tensor *gc_apply_wrong_cube(nb_tensor *const *in, int n, void *user) {
    (void)user;
    return nb_function_apply(&gc_wrong_cube, in, n);
}

Test(gradcheck, fails_on_wrong_backward_with_report) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = gc_leaf(NB_SHAPE(3), NB_F64, xv);
    nb_gradcheck_report rep;
    memset(&rep, 0xff, sizeof rep);
    nb_clear_error();
    int rc = nb_gradcheck(gc_apply_wrong_cube, &x, 1, NULL, &rep);
    cr_assert_eq(rc, NB_ENUMERIC, "rc %d (%s)", rc, nb_last_error());
    cr_assert_gt(strlen(nb_last_error()), 0, "the message names the worst element");
    /* the Jacobian is diagonal: worst at x = 3, analytic 18, numeric 27 */
    cr_assert_eq(rep.input, 0);
    cr_assert_eq(rep.out_index, 2, "out_index %lld", (long long)rep.out_index);
    cr_assert_eq(rep.in_index, 2, "in_index %lld", (long long)rep.in_index);
    cr_assert_float_eq(rep.analytic, 18.0, 1e-9, "analytic %g", rep.analytic);
    cr_assert_float_eq(rep.numeric, 27.0, 1e-4, "numeric %g", rep.numeric);
    cr_assert_float_eq(rep.max_abs_err, 9.0, 1e-4, "max_abs_err %g", rep.max_abs_err);
    nb_scope_end();
}

Test(gradcheck, fails_without_report_too) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.5, -0.5};
    nb_tensor *x = gc_leaf(NB_SHAPE(2), NB_F64, xv);
    cr_assert_eq(nb_gradcheck(gc_apply_wrong_cube, &x, 1, NULL, NULL), NB_ENUMERIC);
    nb_scope_end();
}

Test(gradcheck, loose_tolerance_accepts_wrong_backward) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = gc_leaf(NB_SHAPE(3), NB_F64, xv);
    nb_gradcheck_opts loose = {.atol = 10.0};   /* worst error is 9 */
    cr_assert_eq(nb_gradcheck(gc_apply_wrong_cube, &x, 1, &loose, NULL), 0, "%s",
                 nb_last_error());
    nb_gradcheck_opts tight = {.atol = 8.0};
    cr_assert_eq(nb_gradcheck(gc_apply_wrong_cube, &x, 1, &tight, NULL), NB_ENUMERIC);
    nb_scope_end();
}

/* y = x * c with a right gradient for x and a wrong one (2x) for c. */
static nb_tensor *gc_mul_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)n;
    if (nb_ctx_save(ctx, in[0]) != 0 || nb_ctx_save(ctx, in[1]) != 0) return NULL;
    return nb_mul(in[0], in[1]);
}
static int gc_mul_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    nb_tensor *x = nb_ctx_saved(ctx, 0), *c = nb_ctx_saved(ctx, 1);
    if (!x || !c) return nb_last_error_code();
    if (nb_ctx_needs_grad(ctx, 0)) grads[0] = nb_mul(g, c);
    if (nb_ctx_needs_grad(ctx, 1)) grads[1] = nb_mul_scalar(nb_mul(g, x), 2.0);
    return 0;
}
static const nb_function gc_half_wrong_mul = {"HalfWrongMulBackward", gc_mul_fwd, gc_mul_bwd};
static nb_tensor *gc_apply_mul(nb_tensor *const *in, int n, void *user) {
    (void)user;
    return nb_function_apply(&gc_half_wrong_mul, in, n);
}

Test(gradcheck, reports_which_input_is_wrong) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2}, cv[] = {3, 4};
    nb_tensor *in[2] = {gc_leaf(NB_SHAPE(2), NB_F64, xv), gc_leaf(NB_SHAPE(2), NB_F64, cv)};
    nb_gradcheck_report rep;
    memset(&rep, 0, sizeof rep);
    cr_assert_eq(nb_gradcheck(gc_apply_mul, in, 2, NULL, &rep), NB_ENUMERIC);
    /* d/dc = x = [1, 2], analytic 2x = [2, 4]: worst is element 1 of input 1 */
    cr_assert_eq(rep.input, 1);
    cr_assert_eq(rep.out_index, 1);
    cr_assert_eq(rep.in_index, 1);
    cr_assert_float_eq(rep.analytic, 4.0, 1e-9);
    cr_assert_float_eq(rep.numeric, 2.0, 1e-5);
    nb_scope_end();
}

Test(gradcheck, only_inputs_requiring_grad_are_checked) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2}, cv[] = {3, 4};
    nb_tensor *x = gc_leaf(NB_SHAPE(2), NB_F64, xv);
    nb_tensor *c = tu_tensor(NB_SHAPE(2), NB_F64, cv);   /* no grad: not checked */
    nb_tensor *in[2] = {x, c};
    cr_assert_eq(nb_gradcheck(gc_apply_mul, in, 2, NULL, NULL), 0, "%s", nb_last_error());
    nb_scope_end();
}

/* ---- bad inputs ---- */

Test(gradcheck, rejects_f32_inputs) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.3, -0.8, 1.1}, yv[] = {0.5, -1.0, 0.25, 1.5};
    nb_tensor *in[2] = {gc_leaf(NB_SHAPE(3, 1), NB_F32, xv), gc_leaf(NB_SHAPE(4), NB_F32, yv)};
    nb_clear_error();
    int rc = nb_gradcheck(gc_composite, in, 2, NULL, NULL);
    cr_assert_lt(rc, 0, "F32 inputs must be rejected");
    cr_assert_neq(rc, NB_ENUMERIC, "a dtype error, not a numeric failure");
    cr_assert_gt(strlen(nb_last_error()), 0);
    rc = nb_gradgradcheck(gc_composite, in, 2, NULL, NULL);
    cr_assert_lt(rc, 0);
    nb_scope_end();
}

Test(gradcheck, rejects_null_fn_or_inputs) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1};
    nb_tensor *x = gc_leaf(NB_SHAPE(1), NB_F64, xv);
    cr_assert_lt(nb_gradcheck(NULL, &x, 1, NULL, NULL), 0);
    nb_tensor *none = NULL;
    cr_assert_lt(nb_gradcheck(gc_composite, &none, 1, NULL, NULL), 0);
    nb_scope_end();
}

/* ---- second order ---- */

/* h(x, w) = tanh(exp(x) * w) + exp(tanh(x) * x) */
static nb_tensor *gc_tanh_exp(nb_tensor *const *in, int n, void *user) {
    (void)n;
    (void)user;
    nb_tensor *x = in[0], *w = in[1];
    return nb_add(nb_tanh(nb_mul(nb_exp(x), w)), nb_exp(nb_mul(nb_tanh(x), x)));
}

/* k(x) = sum(tanh(x)^2) * exp(mean(x)) — a scalar output */
static nb_tensor *gc_tanh_exp_scalar(nb_tensor *const *in, int n, void *user) {
    (void)n;
    (void)user;
    nb_tensor *t = nb_tanh(in[0]);
    return nb_mul(nb_sum_all(nb_mul(t, t)), nb_exp(nb_mean_all(in[0])));
}

Test(gradcheck, gradgradcheck_passes_on_tanh_exp) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.2, -0.7, 1.3, 0.05}, wv[] = {0.9, -0.3, 0.4, 1.1};
    nb_tensor *in[2] = {gc_leaf(NB_SHAPE(2, 2), NB_F64, xv), gc_leaf(NB_SHAPE(2, 2), NB_F64, wv)};
    cr_assert_eq(nb_gradcheck(gc_tanh_exp, in, 2, NULL, NULL), 0, "%s", nb_last_error());
    cr_assert_eq(nb_gradgradcheck(gc_tanh_exp, in, 2, NULL, NULL), 0, "%s", nb_last_error());
    cr_assert_eq(nb_gradgradcheck(gc_tanh_exp_scalar, in, 1, NULL, NULL), 0, "%s",
                 nb_last_error());
    cr_assert_null(nb_grad(in[0]));
    nb_scope_end();
}

/* A backward that is right to first order but built from a detached x, so its
 * own derivative with respect to x is missing: gradgradcheck must fail. */
static int gc_detached_cube_bwd(nb_ctx *ctx, nb_tensor *g, nb_tensor **grads) {
    nb_tensor *x = nb_detach(nb_ctx_saved(ctx, 0));
    if (!x) return nb_last_error_code();
    grads[0] = nb_mul(nb_mul_scalar(nb_mul(x, x), 3.0), g);
    return grads[0] ? 0 : nb_last_error_code();
}
static const nb_function gc_detached_cube = {"DetachedCubeBackward", gc_cube_fwd,
                                             gc_detached_cube_bwd};
static nb_tensor *gc_apply_detached_cube(nb_tensor *const *in, int n, void *user) {
    (void)user;
    return nb_function_apply(&gc_detached_cube, in, n);
}

Test(gradcheck, gradgradcheck_catches_wrong_double_backward) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {0.5, 1.0, -1.5};
    nb_tensor *x = gc_leaf(NB_SHAPE(3), NB_F64, xv);
    cr_assert_eq(nb_gradcheck(gc_apply_detached_cube, &x, 1, NULL, NULL), 0,
                 "first order is right: %s", nb_last_error());
    int rc = nb_gradgradcheck(gc_apply_detached_cube, &x, 1, NULL, NULL);
    cr_assert_eq(rc, NB_ENUMERIC, "rc %d (%s)", rc, nb_last_error());
    nb_scope_end();
}
