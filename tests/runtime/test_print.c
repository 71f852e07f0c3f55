/* test_print.c — nb_format/nb_fprint against the repr PyTorch 1.13 prints.
 *
 * Every expected string below was printed by torch 1.13 (repr(t)) for the
 * same values, with two edits for nabla's deliberate differences (see
 * src/runtime/print.c): `dtype=torch.float64` is written `dtype=float64`, and
 * grad_fn names drop PyTorch's trailing version digit (`MulBackward0` is
 * `MulBackward`). Where a suffix wraps onto a new line, the expected string
 * was made with torch._tensor_str._add_suffixes fed nabla's suffix text, since
 * the shorter names change where PyTorch would break the line.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <nabla.h>

static void pr_setup(void) {
    nb_init(NULL);
    nb_scope_begin();
}

static void pr_teardown(void) { nb_scope_end(); }

TestSuite(print, .init = pr_setup, .fini = pr_teardown);

/* Asserts that nb_format(t) is `want`, and that its return value is the length. */
static void pr_expect(const nb_tensor *t, const char *want) {
    int n = nb_format(NULL, 0, t);
    cr_assert_geq(n, 0, "nb_format failed: %s", nb_last_error());
    char *got = malloc((size_t)n + 1);
    cr_assert_not_null(got);
    int n2 = nb_format(got, (size_t)n + 1, t);
    cr_assert_eq(n2, n);
    cr_assert_eq(strlen(got), (size_t)n);
    cr_assert_str_eq(got, want);
    free(got);
}

static nb_tensor *pr_f32(nb_dims shape, const float *v) {
    nb_tensor *t = nb_from_data(shape, NB_F32, v);
    cr_assert_not_null(t, "nb_from_data: %s", nb_last_error());
    return t;
}

static nb_tensor *pr_f64(nb_dims shape, const double *v) {
    nb_tensor *t = nb_from_data(shape, NB_F64, v);
    cr_assert_not_null(t, "nb_from_data: %s", nb_last_error());
    return t;
}

static nb_tensor *pr_i64(nb_dims shape, const int64_t *v) {
    nb_tensor *t = nb_from_data(shape, NB_I64, v);
    cr_assert_not_null(t, "nb_from_data: %s", nb_last_error());
    return t;
}

/* ---- scalars ---- */

Test(print, scalar_integer_valued) { pr_expect(nb_scalar(4.0), "tensor(4.)"); }

Test(print, scalar_fraction) { pr_expect(nb_scalar(3.14159), "tensor(3.1416)"); }

Test(print, scalar_zero_and_nan) {
    pr_expect(nb_scalar(0.0), "tensor(0.)");
    pr_expect(nb_scalar(NAN), "tensor(nan)");
}

/* ---- float formatting modes ---- */

Test(print, vector_int_mode) {
    pr_expect(pr_f32(NB_SHAPE(2), (float[]){1, 2}), "tensor([1., 2.])");
    pr_expect(pr_f32(NB_SHAPE(2), (float[]){0, 0}), "tensor([0., 0.])");
}

Test(print, matrix_fixed_point) {
    pr_expect(pr_f32(NB_SHAPE(2, 2), (float[]){1.0f, 2.5f, 3.0f, 4.0f}),
              "tensor([[1.0000, 2.5000],\n"
              "        [3.0000, 4.0000]])");
}

Test(print, three_dims) {
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i * 0.25f;
    pr_expect(pr_f32(NB_SHAPE(2, 3, 4), v),
              "tensor([[[0.0000, 0.2500, 0.5000, 0.7500],\n"
              "         [1.0000, 1.2500, 1.5000, 1.7500],\n"
              "         [2.0000, 2.2500, 2.5000, 2.7500]],\n"
              "\n"
              "        [[3.0000, 3.2500, 3.5000, 3.7500],\n"
              "         [4.0000, 4.2500, 4.5000, 4.7500],\n"
              "         [5.0000, 5.2500, 5.5000, 5.7500]]])");
}

Test(print, sci_mode_small_values) {
    pr_expect(pr_f32(NB_SHAPE(3), (float[]){1e-5f, 0.5f, 2.0f}),
              "tensor([1.0000e-05, 5.0000e-01, 2.0000e+00])");
}

Test(print, sci_mode_wide_range) {
    pr_expect(pr_f32(NB_SHAPE(3), (float[]){1e-5f, 1.0f, 1e9f}),
              "tensor([1.0000e-05, 1.0000e+00, 1.0000e+09])");
    /* integer-valued but max > 1e8: sci mode, and 0 prints in it too */
    pr_expect(pr_f32(NB_SHAPE(3), (float[]){1e9f, 1.0f, 0.0f}),
              "tensor([1.0000e+09, 1.0000e+00, 0.0000e+00])");
}

Test(print, nan_and_inf) {
    pr_expect(pr_f32(NB_SHAPE(4), (float[]){NAN, INFINITY, -INFINITY, 1.5f}),
              "tensor([   nan,    inf,   -inf, 1.5000])");
}

Test(print, negative_values) {
    pr_expect(pr_f32(NB_SHAPE(3), (float[]){-1.5f, 2.25f, -3.0f}),
              "tensor([-1.5000,  2.2500, -3.0000])");
}

/* ---- other dtypes ---- */

Test(print, int64) {
    pr_expect(pr_i64(NB_SHAPE(3), (int64_t[]){1, -20, 300}), "tensor([  1, -20, 300])");
    pr_expect(pr_i64(NB_SHAPE(2, 2), (int64_t[]){7, -8, 9, 10}),
              "tensor([[ 7, -8],\n"
              "        [ 9, 10]])");
}

Test(print, bool) {
    nb_tensor *t = nb_from_data(NB_SHAPE(2), NB_BOOL, (bool[]){true, false});
    cr_assert_not_null(t);
    pr_expect(t, "tensor([ True, False])");
    /* the width is the widest value's, so no padding without a False */
    nb_tensor *u = nb_from_data(NB_SHAPE(2), NB_BOOL, (bool[]){true, true});
    cr_assert_not_null(u);
    pr_expect(u, "tensor([True, True])");
}

Test(print, float64_suffix) {
    /* PyTorch: dtype=torch.float64 */
    pr_expect(pr_f64(NB_SHAPE(1, 2), (double[]){1.5, 2.0}),
              "tensor([[1.5000, 2.0000]], dtype=float64)");
}

/* ---- layout: wrapping, summarizing, strides ---- */

Test(print, wraps_at_80_columns) {
    float v[30];
    for (int i = 0; i < 30; i++) v[i] = (float)i * 1.5f;
    pr_expect(pr_f32(NB_SHAPE(30), v),
              "tensor([ 0.0000,  1.5000,  3.0000,  4.5000,  6.0000,  7.5000,  9.0000, 10.5000,\n"
              "        12.0000, 13.5000, 15.0000, 16.5000, 18.0000, 19.5000, 21.0000, 22.5000,\n"
              "        24.0000, 25.5000, 27.0000, 28.5000, 30.0000, 31.5000, 33.0000, 34.5000,\n"
              "        36.0000, 37.5000, 39.0000, 40.5000, 42.0000, 43.5000])");
}

Test(print, summarized_1d) {
    nb_tensor *t = nb_arange(0, 2000, 1, NB_F32);
    cr_assert_not_null(t, "nb_arange: %s", nb_last_error());
    /* the formatter sees only 0,1,2,1997,1998,1999: ratio > 1000, sci mode */
    pr_expect(t, "tensor([0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 1.9970e+03, 1.9980e+03,\n"
                 "        1.9990e+03])");
}

Test(print, summarized_2d) {
    float *v = malloc(sizeof(float) * 1600);
    cr_assert_not_null(v);
    for (int i = 0; i < 1600; i++) v[i] = (float)i / 4.0f;
    nb_tensor *t = pr_f32(NB_SHAPE(40, 40), v);
    free(v);
    pr_expect(t, "tensor([[0.0000e+00, 2.5000e-01, 5.0000e-01,  ..., 9.2500e+00, 9.5000e+00,\n"
                 "         9.7500e+00],\n"
                 "        [1.0000e+01, 1.0250e+01, 1.0500e+01,  ..., 1.9250e+01, 1.9500e+01,\n"
                 "         1.9750e+01],\n"
                 "        [2.0000e+01, 2.0250e+01, 2.0500e+01,  ..., 2.9250e+01, 2.9500e+01,\n"
                 "         2.9750e+01],\n"
                 "        ...,\n"
                 "        [3.7000e+02, 3.7025e+02, 3.7050e+02,  ..., 3.7925e+02, 3.7950e+02,\n"
                 "         3.7975e+02],\n"
                 "        [3.8000e+02, 3.8025e+02, 3.8050e+02,  ..., 3.8925e+02, 3.8950e+02,\n"
                 "         3.8975e+02],\n"
                 "        [3.9000e+02, 3.9025e+02, 3.9050e+02,  ..., 3.9925e+02, 3.9950e+02,\n"
                 "         3.9975e+02]])");
}

Test(print, summarized_int64) {
    int64_t *v = malloc(sizeof(int64_t) * 5000);
    cr_assert_not_null(v);
    for (int i = 0; i < 5000; i++) v[i] = i;
    nb_tensor *t = pr_i64(NB_SHAPE(10, 500), v);
    free(v);
    pr_expect(t, "tensor([[   0,    1,    2,  ...,  497,  498,  499],\n"
                 "        [ 500,  501,  502,  ...,  997,  998,  999],\n"
                 "        [1000, 1001, 1002,  ..., 1497, 1498, 1499],\n"
                 "        ...,\n"
                 "        [3500, 3501, 3502,  ..., 3997, 3998, 3999],\n"
                 "        [4000, 4001, 4002,  ..., 4497, 4498, 4499],\n"
                 "        [4500, 4501, 4502,  ..., 4997, 4998, 4999]])");
}

Test(print, non_contiguous_view) {
    nb_tensor *t = pr_f32(NB_SHAPE(2, 3), (float[]){1, 2, 3, 4, 5, 6.5f});
    nb_tensor *tt = nb_transpose(t, 0, 1);
    cr_assert_not_null(tt, "nb_transpose: %s", nb_last_error());
    pr_expect(tt, "tensor([[1.0000, 4.0000],\n"
                  "        [2.0000, 5.0000],\n"
                  "        [3.0000, 6.5000]])");
}

Test(print, empty) {
    pr_expect(nb_zeros(NB_SHAPE(0), NB_F32), "tensor([])");
    pr_expect(nb_zeros(NB_SHAPE(0, 3), NB_F32), "tensor([], size=(0, 3))");
    /* PyTorch: dtype=torch.int64 (an empty tensor always names a non-default dtype) */
    pr_expect(nb_zeros(NB_SHAPE(0), NB_I64), "tensor([], dtype=int64)");
}

/* ---- autograd suffixes ---- */

Test(print, requires_grad_leaf) {
    nb_tensor *t = pr_f32(NB_SHAPE(2), (float[]){1, 2});
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    pr_expect(t, "tensor([1., 2.], requires_grad=True)");
}

Test(print, grad_fn_non_leaf) {
    nb_tensor *a = pr_f32(NB_SHAPE(3), (float[]){1, 2, 3});
    nb_tensor *b = pr_f32(NB_SHAPE(3), (float[]){0.5f, 0.5f, 2});
    cr_assert_eq(nb_set_requires_grad(a, true), 0, "%s", nb_last_error());
    nb_tensor *y = nb_mul(a, b);
    cr_assert_not_null(y, "nb_mul: %s", nb_last_error());
    /* PyTorch: grad_fn=<MulBackward0> */
    pr_expect(y, "tensor([0.5000, 1.0000, 6.0000], grad_fn=<MulBackward>)");
}

Test(print, suffixes_wrap_to_new_line) {
    double v[30];
    for (int i = 0; i < 30; i++) v[i] = i * 1.5;
    nb_tensor *t = pr_f64(NB_SHAPE(30), v);
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    pr_expect(t, "tensor([ 0.0000,  1.5000,  3.0000,  4.5000,  6.0000,  7.5000,  9.0000, 10.5000,\n"
                 "        12.0000, 13.5000, 15.0000, 16.5000, 18.0000, 19.5000, 21.0000, 22.5000,\n"
                 "        24.0000, 25.5000, 27.0000, 28.5000, 30.0000, 31.5000, 33.0000, 34.5000,\n"
                 "        36.0000, 37.5000, 39.0000, 40.5000, 42.0000, 43.5000], dtype=float64,\n"
                 "       requires_grad=True)");
}

/* ---- the snprintf contract, NULL, streams ---- */

Test(print, format_truncates_like_snprintf) {
    nb_tensor *t = pr_f32(NB_SHAPE(2), (float[]){1, 2});
    const char *full = "tensor([1., 2.])";
    cr_assert_eq(nb_format(NULL, 0, t), (int)strlen(full));
    char buf[32];
    memset(buf, 'X', sizeof buf);
    cr_assert_eq(nb_format(buf, 8, t), (int)strlen(full));
    cr_assert_str_eq(buf, "tensor(");
    cr_assert_eq(buf[8], 'X', "wrote past cap");
    memset(buf, 'X', sizeof buf);
    cr_assert_eq(nb_format(buf, 1, t), (int)strlen(full));
    cr_assert_eq(buf[0], 0);
    cr_assert_eq(buf[1], 'X');
}

Test(print, null_tensor) {
    pr_expect(NULL, "tensor(NULL)");
}

Test(print, fprint_adds_newline) {
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    nb_fprint(f, nb_scalar(4.0));
    rewind(f);
    char buf[64] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    cr_assert_eq(n, strlen("tensor(4.)\n"));
    cr_assert_str_eq(buf, "tensor(4.)\n");
}
