/* test_tensor.c — tensor creation, inspection, views and dtype conversion.
 * Expected values follow PyTorch 1.13 (torch.arange, .view, .reshape,
 * .transpose, .permute, slicing, .expand, .squeeze/.unsqueeze, .to(dtype)).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

/* Reads t's elements (C order) as doubles into out (n of them). */
static void tt_read(const nb_tensor *t, double *out, int64_t n) {
    cr_assert_not_null(t, "NULL tensor (%s)", nb_last_error());
    cr_assert_eq(nb_numel(t), n, "numel %lld, expected %lld", (long long)nb_numel(t),
                 (long long)n);
    nb_tensor *d = nb_to_dtype((nb_tensor *)t, NB_F64);
    cr_assert_not_null(d);
    cr_assert_eq(nb_copy_to(d, out, sizeof(double) * (size_t)n), 0, "%s", nb_last_error());
}

static void tt_expect(const nb_tensor *t, const double *want, int64_t n, double tol) {
    double got[128];
    cr_assert(n <= 128);
    tt_read(t, got, n);
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol, "element %lld: got %.17g, expected %.17g",
                  (long long)i, got[i], want[i]);
}

static void tt_expect_shape(const nb_tensor *t, nb_dims s) {
    cr_assert_not_null(t, "NULL tensor (%s)", nb_last_error());
    cr_assert_eq(nb_ndim(t), s.ndim, "ndim %d, expected %d", nb_ndim(t), s.ndim);
    for (int i = 0; i < s.ndim; i++)
        cr_assert_eq(nb_shape(t)[i], s.d[i], "size %d: %lld, expected %lld", i,
                     (long long)nb_shape(t)[i], (long long)s.d[i]);
}

static void tt_expect_strides(const nb_tensor *t, int n, const int64_t *st) {
    cr_assert_eq(nb_ndim(t), n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(nb_strides(t)[i], st[i], "stride %d: %lld, expected %lld", i,
                     (long long)nb_strides(t)[i], (long long)st[i]);
}

/* 0, 1, ..., n-1 as a contiguous F32 tensor of `shape`. */
static nb_tensor *tt_iota(nb_dims shape) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    nb_tensor *t = nb_reshape(nb_arange(0, (double)n, 1, NB_F32), shape);
    cr_assert_not_null(t, "%s", nb_last_error());
    return t;
}

/* ---- creation ---- */

Test(tensor, zeros_ones_full) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *z = nb_zeros(NB_SHAPE(2, 3), NB_F32);
    tt_expect_shape(z, NB_SHAPE(2, 3));
    cr_assert_eq(nb_dtype(z), NB_F32);
    cr_assert_eq(nb_numel(z), 6);
    cr_assert(nb_is_contiguous(z));
    const int64_t st[] = {3, 1};
    tt_expect_strides(z, 2, st);
    const double zv[6] = {0};
    tt_expect(z, zv, 6, 0);

    nb_tensor *o = nb_ones(NB_SHAPE(4), NB_F64);
    const double ov[] = {1, 1, 1, 1};
    cr_assert_eq(nb_dtype(o), NB_F64);
    tt_expect(o, ov, 4, 0);

    nb_tensor *f = nb_full(NB_SHAPE(1, 2, 1), NB_I64, 7);
    tt_expect_shape(f, NB_SHAPE(1, 2, 1));
    const double fv[] = {7, 7};
    tt_expect(f, fv, 2, 0);
    int64_t raw[2];
    cr_assert_eq(nb_copy_to(f, raw, sizeof raw), 0);
    cr_assert_eq(raw[0], 7);

    nb_tensor *b = nb_full(NB_SHAPE(3), NB_BOOL, 1);
    const double bv[] = {1, 1, 1};
    tt_expect(b, bv, 3, 0);

    nb_tensor *e = nb_zeros(NB_SHAPE(0, 3), NB_F32);   /* empty is allowed */
    cr_assert_not_null(e, "%s", nb_last_error());
    cr_assert_eq(nb_numel(e), 0);
    nb_scope_end();
}

Test(tensor, scalar) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *s = nb_scalar(3.5);
    cr_assert_not_null(s);
    cr_assert_eq(nb_ndim(s), 0);
    cr_assert_eq(nb_numel(s), 1);
    cr_assert_eq(nb_dtype(s), NB_F32);
    cr_assert_float_eq(nb_item(s), 3.5, 0);
    nb_tensor *d = nb_scalar_dtype(-2.25, NB_F64);
    cr_assert_eq(nb_dtype(d), NB_F64);
    cr_assert_eq(nb_ndim(d), 0);
    cr_assert_float_eq(nb_item(d), -2.25, 0);
    nb_tensor *i = nb_scalar_dtype(42, NB_I64);
    cr_assert_eq(nb_dtype(i), NB_I64);
    cr_assert_float_eq(nb_item(i), 42, 0);
    /* item of a one-element tensor of any rank; NaN for more elements */
    cr_assert_float_eq(nb_item(nb_full(NB_SHAPE(1, 1), NB_F32, 2)), 2, 0);
    cr_assert(isnan(nb_item(nb_ones(NB_SHAPE(2), NB_F32))));
    cr_assert(isnan(nb_item(NULL)));
    nb_scope_end();
}

Test(tensor, arange) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *a = nb_arange(0, 5, 1, NB_I64);
    tt_expect_shape(a, NB_SHAPE(5));
    cr_assert_eq(nb_dtype(a), NB_I64);
    const double av[] = {0, 1, 2, 3, 4};
    tt_expect(a, av, 5, 0);

    nb_tensor *b = nb_arange(1, 2.5, 0.5, NB_F32);   /* [1, 1.5, 2] */
    const double bv[] = {1, 1.5, 2};
    tt_expect(b, bv, 3, 0);

    nb_tensor *c = nb_arange(5, 0, -1.5, NB_F32);    /* [5, 3.5, 2, 0.5] */
    const double cv[] = {5, 3.5, 2, 0.5};
    tt_expect(c, cv, 4, 0);

    nb_tensor *d = nb_arange(-3, 3, 2, NB_I64);      /* [-3, -1, 1] */
    const double dv[] = {-3, -1, 1};
    tt_expect(d, dv, 3, 0);

    nb_tensor *e = nb_arange(0, 1, 0.1, NB_F64);     /* 10 elements, as torch */
    cr_assert_eq(nb_numel(e), 10);
    cr_assert_float_eq(nb_get(e, (int64_t[]){9}), 0.9, 1e-12);

    nb_tensor *f = nb_arange(0, 7, 3, NB_F64);       /* stop not a multiple: [0, 3, 6] */
    const double fv[] = {0, 3, 6};
    tt_expect(f, fv, 3, 0);

    /* step 0 and a step of the wrong sign are errors */
    cr_assert_null(nb_arange(0, 5, 0, NB_F32));
    cr_assert_null(nb_arange(0, 5, -1, NB_F32));
    nb_scope_end();
}

Test(tensor, from_data_copies) {
    nb_init(NULL);
    nb_scope_begin();
    float src[6] = {1, 2, 3, 4, 5, 6};
    nb_tensor *t = nb_from_data(NB_SHAPE(2, 3), NB_F32, src);
    cr_assert_not_null(t);
    cr_assert_neq(nb_data(t), (void *)src);
    src[0] = 100;   /* the tensor has its own copy */
    const double want[] = {1, 2, 3, 4, 5, 6};
    tt_expect(t, want, 6, 0);
    cr_assert_float_eq(nb_get(t, (int64_t[]){1, 2}), 6, 0);
    cr_assert_eq(nb_size(t, 0), 2);
    cr_assert_eq(nb_size(t, -1), 3);

    int64_t iv[3] = {-5, 0, 1LL << 40};
    nb_tensor *i = nb_from_data(NB_SHAPE(3), NB_I64, iv);
    int64_t back[3];
    cr_assert_eq(nb_copy_to(i, back, sizeof back), 0);
    cr_assert_eq(back[2], 1LL << 40);
    cr_assert_eq(back[0], -5);
    /* a too-small destination is refused and left unchanged */
    int64_t small[2] = {9, 9};
    cr_assert_lt(nb_copy_to(i, small, sizeof small), 0);
    cr_assert_eq(small[0], 9);
    nb_scope_end();
}

Test(tensor, bad_shapes_are_rejected) {
    nb_init(NULL);
    nb_scope_begin();
    cr_assert_null(nb_zeros(NB_SHAPE(2, -3), NB_F32));
    cr_assert_null(nb_zeros(nb_dims_of(NB_MAX_DIMS + 1, (int64_t[9]){1}), NB_F32));
    cr_assert_null(nb_zeros(NB_SHAPE(2), NB_DTYPE_COUNT));
    nb_scope_end();
}

/* ---- views share storage ---- */

Test(tensor, writes_through_a_view_change_the_base) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(2, 3));
    nb_tensor *v = nb_slice(t, 1, 1, 3, 1);   /* t[:, 1:3] */
    tt_expect_shape(v, NB_SHAPE(2, 2));
    cr_assert_not(nb_is_contiguous(v));
    uint64_t v0 = nb_version(t);
    cr_assert_not_null(nb_fill_(v, 9));
    const double w1[] = {0, 9, 9, 3, 9, 9};
    tt_expect(t, w1, 6, 0);
    cr_assert_gt(nb_version(t), v0, "views share the version counter");

    nb_tensor *col = nb_slice(t, 1, 0, 1, 1);   /* t[:, 0:1] */
    const double src[] = {-1, -2};
    cr_assert_not_null(nb_copy_(col, tu_tensor(NB_SHAPE(2, 1), NB_F32, src)));
    const double w2[] = {-1, 9, 9, -2, 9, 9};
    tt_expect(t, w2, 6, 0);

    nb_tensor *tr = nb_transpose(t, 0, 1);   /* write through a transpose */
    cr_assert_not_null(nb_copy_(tr, nb_zeros(NB_SHAPE(3, 2), NB_F32)));
    const double w3[6] = {0};
    tt_expect(t, w3, 6, 0);
    nb_scope_end();
}

Test(tensor, reshape_view_when_contiguous) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(2, 3));
    nb_tensor *r = nb_reshape(t, NB_SHAPE(3, 2));
    tt_expect_shape(r, NB_SHAPE(3, 2));
    cr_assert_eq(nb_data(r), nb_data(t), "a contiguous reshape is a view");
    const double rv[] = {0, 1, 2, 3, 4, 5};
    tt_expect(r, rv, 6, 0);
    cr_assert_not_null(nb_fill_(r, 1));
    const double ones[] = {1, 1, 1, 1, 1, 1};
    tt_expect(t, ones, 6, 0);

    nb_tensor *v = nb_view(t, NB_SHAPE(6));
    cr_assert_not_null(v);
    cr_assert_eq(nb_data(v), nb_data(t));
    nb_scope_end();
}

Test(tensor, reshape_copies_a_transposed_input) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(2, 3));
    nb_tensor *tr = nb_transpose(t, 0, 1);        /* [[0,3],[1,4],[2,5]] */
    nb_tensor *r = nb_reshape(tr, NB_SHAPE(6));
    tt_expect_shape(r, NB_SHAPE(6));
    const double rv[] = {0, 3, 1, 4, 2, 5};
    tt_expect(r, rv, 6, 0);
    cr_assert(nb_is_contiguous(r));
    cr_assert_not_null(nb_fill_(r, -7));          /* a copy: t unchanged */
    const double tv[] = {0, 1, 2, 3, 4, 5};
    tt_expect(t, tv, 6, 0);
    /* view() cannot do it */
    cr_assert_null(nb_view(tr, NB_SHAPE(6)));
    cr_assert_gt(strlen(nb_last_error()), 0);
    nb_scope_end();
}

Test(tensor, reshape_infers_minus_one) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(2, 3, 4));
    tt_expect_shape(nb_reshape(t, NB_SHAPE(-1, 4)), NB_SHAPE(6, 4));
    tt_expect_shape(nb_reshape(t, NB_SHAPE(2, -1)), NB_SHAPE(2, 12));
    tt_expect_shape(nb_reshape(t, NB_SHAPE(-1)), NB_SHAPE(24));
    cr_assert_null(nb_reshape(t, NB_SHAPE(-1, -1)), "only one -1");
    cr_assert_null(nb_reshape(t, NB_SHAPE(5, -1)), "24 is not a multiple of 5");
    cr_assert_null(nb_reshape(t, NB_SHAPE(4, 5)), "numel must match");
    nb_tensor *s = nb_reshape(nb_scalar(3), NB_SHAPE(1, 1));
    tt_expect_shape(s, NB_SHAPE(1, 1));
    tt_expect_shape(nb_reshape(s, NB_SHAPE0), NB_SHAPE0);
    nb_scope_end();
}

Test(tensor, transpose_shape_strides_values) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(2, 3));
    nb_tensor *tr = nb_transpose(t, 0, 1);
    tt_expect_shape(tr, NB_SHAPE(3, 2));
    const int64_t st[] = {1, 3};
    tt_expect_strides(tr, 2, st);
    cr_assert_not(nb_is_contiguous(tr));
    cr_assert_eq(nb_data(tr), nb_data(t));
    cr_assert_float_eq(nb_get(tr, (int64_t[]){2, 1}), 5, 0);
    cr_assert_float_eq(nb_get(tr, (int64_t[]){0, 1}), 3, 0);
    const double v[] = {0, 3, 1, 4, 2, 5};
    tt_expect(tr, v, 6, 0);
    /* negative dims */
    nb_tensor *tn = nb_transpose(t, -1, -2);
    tt_expect_shape(tn, NB_SHAPE(3, 2));
    cr_assert_null(nb_transpose(t, 0, 2));
    nb_scope_end();
}

Test(tensor, permute_shape_strides_values) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(2, 3, 4));
    const int64_t st0[] = {12, 4, 1};
    tt_expect_strides(t, 3, st0);
    const int perm[] = {2, 0, 1};
    nb_tensor *p = nb_permute(t, perm, 3);
    tt_expect_shape(p, NB_SHAPE(4, 2, 3));
    const int64_t st[] = {1, 12, 4};
    tt_expect_strides(p, 3, st);
    /* p[k, i, j] = t[i, j, k] = 12i + 4j + k */
    cr_assert_float_eq(nb_get(p, (int64_t[]){3, 1, 2}), 12 + 8 + 3, 0);
    cr_assert_float_eq(nb_get(p, (int64_t[]){1, 0, 2}), 8 + 1, 0);
    double got[24];
    tt_read(p, got, 24);
    cr_assert_float_eq(got[0], 0, 0);
    cr_assert_float_eq(got[1], 4, 0);    /* p[0,0,1] = t[0,1,0] */
    cr_assert_float_eq(got[3], 12, 0);   /* p[0,1,0] = t[1,0,0] */
    cr_assert_float_eq(got[6], 1, 0);    /* p[1,0,0] = t[0,0,1] */
    const int bad[] = {0, 0, 1};
    cr_assert_null(nb_permute(t, bad, 3), "repeated dim");
    cr_assert_null(nb_permute(t, perm, 2), "wrong count");
    nb_scope_end();
}

Test(tensor, slice_with_step) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = nb_arange(0, 10, 1, NB_F32);
    nb_tensor *s = nb_slice(t, 0, 1, 8, 3);   /* [1, 4, 7] */
    tt_expect_shape(s, NB_SHAPE(3));
    const int64_t st[] = {3};
    tt_expect_strides(s, 1, st);
    const double sv[] = {1, 4, 7};
    tt_expect(s, sv, 3, 0);
    cr_assert_eq((char *)nb_data(s), (char *)nb_data(t) + sizeof(float), "offset 1");

    const double tail[] = {7, 8, 9};
    tt_expect(nb_slice(t, 0, -3, 10, 1), tail, 3, 0);      /* negative start */
    tt_expect(nb_slice(t, 0, 7, 100, 1), tail, 3, 0);      /* stop clamped */
    const double head[] = {0, 1};
    tt_expect(nb_slice(t, 0, -100, -8, 1), head, 2, 0);    /* start clamped, negative stop */
    nb_tensor *e = nb_slice(t, 0, 5, 5, 1);
    cr_assert_not_null(e);
    cr_assert_eq(nb_numel(e), 0);
    cr_assert_null(nb_slice(t, 0, 0, 5, 0), "step 0");
    cr_assert_null(nb_slice(t, 1, 0, 5, 1), "dim out of range");

    /* a slice of a slice, on a 2-D tensor: t2[1:, ::2] */
    nb_tensor *t2 = tt_iota(NB_SHAPE(3, 5));
    nb_tensor *a = nb_slice(nb_slice(t2, 0, 1, 3, 1), 1, 0, 5, 2);
    tt_expect_shape(a, NB_SHAPE(2, 3));
    const int64_t ast[] = {5, 2};
    tt_expect_strides(a, 2, ast);
    const double av[] = {5, 7, 9, 10, 12, 14};
    tt_expect(a, av, 6, 0);
    nb_scope_end();
}

Test(tensor, expand) {
    nb_init(NULL);
    nb_scope_begin();
    const double xv[] = {1, 2, 3};
    nb_tensor *x = tu_tensor(NB_SHAPE(3, 1), NB_F32, xv);
    nb_tensor *e = nb_expand(x, NB_SHAPE(3, 4));
    tt_expect_shape(e, NB_SHAPE(3, 4));
    const int64_t st[] = {1, 0};
    tt_expect_strides(e, 2, st);
    cr_assert_eq(nb_data(e), nb_data(x));
    const double ev[] = {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    tt_expect(e, ev, 12, 0);

    nb_tensor *y = tu_tensor(NB_SHAPE(3), NB_F32, xv);
    nb_tensor *f = nb_expand(y, NB_SHAPE(2, 3));   /* new leading dim */
    tt_expect_shape(f, NB_SHAPE(2, 3));
    const int64_t fst[] = {0, 1};
    tt_expect_strides(f, 2, fst);
    const double fv[] = {1, 2, 3, 1, 2, 3};
    tt_expect(f, fv, 6, 0);

    tt_expect_shape(nb_expand(x, NB_SHAPE(2, -1, 5)), NB_SHAPE(2, 3, 5));   /* -1 keeps */
    cr_assert_null(nb_expand(x, NB_SHAPE(4, 4)), "size 3 cannot expand to 4");
    cr_assert_null(nb_expand(x, NB_SHAPE(3)), "fewer dims");
    nb_scope_end();
}

Test(tensor, squeeze_unsqueeze) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(1, 3, 1));
    nb_tensor *a = nb_squeeze(t, 0);
    tt_expect_shape(a, NB_SHAPE(3, 1));
    nb_tensor *b = nb_squeeze(t, -1);
    tt_expect_shape(b, NB_SHAPE(1, 3));
    cr_assert_eq(nb_data(a), nb_data(t));
    const double v[] = {0, 1, 2};
    tt_expect(b, v, 3, 0);
    cr_assert_eq(nb_strides(b)[1], 1);

    nb_tensor *u = tt_iota(NB_SHAPE(2, 3));
    nb_tensor *u1 = nb_unsqueeze(u, 1);
    tt_expect_shape(u1, NB_SHAPE(2, 1, 3));
    cr_assert_eq(nb_strides(u1)[0], 3);
    cr_assert_eq(nb_strides(u1)[2], 1);
    tt_expect_shape(nb_unsqueeze(u, 0), NB_SHAPE(1, 2, 3));
    tt_expect_shape(nb_unsqueeze(u, 2), NB_SHAPE(2, 3, 1));
    tt_expect_shape(nb_unsqueeze(u, -1), NB_SHAPE(2, 3, 1));   /* as torch */
    tt_expect_shape(nb_unsqueeze(u, -3), NB_SHAPE(1, 2, 3));
    cr_assert_null(nb_unsqueeze(u, 3));
    tt_expect_shape(nb_unsqueeze(nb_scalar(1), 0), NB_SHAPE(1));
    /* unsqueeze of a transposed view keeps its strides */
    nb_tensor *tr = nb_unsqueeze(nb_transpose(u, 0, 1), 0);   /* [1, 3, 2] */
    tt_expect_shape(tr, NB_SHAPE(1, 3, 2));
    cr_assert_eq(nb_strides(tr)[1], 1);
    cr_assert_eq(nb_strides(tr)[2], 3);
    nb_scope_end();
}

Test(tensor, contiguous) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(2, 3));
    cr_assert(nb_is_contiguous(t));
    cr_assert_eq(nb_contiguous(t), t, "contiguous returns the same object");
    nb_tensor *tr = nb_transpose(t, 0, 1);
    nb_tensor *c = nb_contiguous(tr);
    cr_assert_neq(c, tr);
    cr_assert(nb_is_contiguous(c));
    tt_expect_shape(c, NB_SHAPE(3, 2));
    const int64_t st[] = {2, 1};
    tt_expect_strides(c, 2, st);
    const double v[] = {0, 3, 1, 4, 2, 5};
    tt_expect(c, v, 6, 0);
    cr_assert_neq(nb_data(c), nb_data(t));
    /* an expanded view is not contiguous */
    nb_tensor *e = nb_expand(nb_ones(NB_SHAPE(1, 3), NB_F32), NB_SHAPE(2, 3));
    cr_assert_not(nb_is_contiguous(e));
    nb_scope_end();
}

Test(tensor, clone_is_independent) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = tt_iota(NB_SHAPE(4));
    nb_tensor *c = nb_clone(t);
    cr_assert_neq(nb_data(c), nb_data(t));
    cr_assert_not_null(nb_fill_(c, 5));
    const double v[] = {0, 1, 2, 3};
    tt_expect(t, v, 4, 0);
    nb_scope_end();
}

/* ---- dtype conversion ---- */

Test(tensor, float_to_int_truncates_toward_zero) {
    nb_init(NULL);
    nb_scope_begin();
    const double v[] = {1.5, -1.5, 2.7, -2.7, 0, 3};
    nb_tensor *f = tu_tensor(NB_SHAPE(6), NB_F32, v);
    nb_tensor *i = nb_to_dtype(f, NB_I64);
    cr_assert_eq(nb_dtype(i), NB_I64);
    int64_t got[6];
    cr_assert_eq(nb_copy_to(i, got, sizeof got), 0);
    const int64_t want[] = {1, -1, 2, -2, 0, 3};
    for (int k = 0; k < 6; k++) cr_assert_eq(got[k], want[k], "%d: %lld", k, (long long)got[k]);
    nb_tensor *i2 = nb_to_dtype(tu_tensor(NB_SHAPE(6), NB_F64, v), NB_I64);
    cr_assert_eq(nb_copy_to(i2, got, sizeof got), 0);
    for (int k = 0; k < 6; k++) cr_assert_eq(got[k], want[k]);
    nb_scope_end();
}

Test(tensor, nonzero_to_bool_is_true) {
    nb_init(NULL);
    nb_scope_begin();
    const double v[] = {1.5, -0.5, 0, 1e-30};
    nb_tensor *b = nb_to_dtype(tu_tensor(NB_SHAPE(4), NB_F64, v), NB_BOOL);
    cr_assert_eq(nb_dtype(b), NB_BOOL);
    cr_assert_eq(nb_dtype_size(NB_BOOL), 1);
    unsigned char raw[4];
    cr_assert_eq(nb_copy_to(b, raw, sizeof raw), 0);
    cr_assert_eq(raw[0], 1);
    cr_assert_eq(raw[1], 1);
    cr_assert_eq(raw[2], 0);
    cr_assert_eq(raw[3], 1);
    int64_t iv[] = {0, -3, 7};
    nb_tensor *bi = nb_to_dtype(nb_from_data(NB_SHAPE(3), NB_I64, iv), NB_BOOL);
    const double bw[] = {0, 1, 1};
    tt_expect(bi, bw, 3, 0);
    /* bool back to float: 0/1 */
    nb_tensor *bf = nb_to_dtype(bi, NB_F32);
    cr_assert_eq(nb_dtype(bf), NB_F32);
    float fr[3];
    cr_assert_eq(nb_copy_to(bf, fr, sizeof fr), 0);
    cr_assert_float_eq(fr[0], 0.f, 0);
    cr_assert_float_eq(fr[1], 1.f, 0);
    cr_assert_float_eq(fr[2], 1.f, 0);
    nb_scope_end();
}

Test(tensor, f32_f64_i64_round_trips) {
    nb_init(NULL);
    nb_scope_begin();
    const double v[] = {0.1, -2.5, 1e10, 3};
    nb_tensor *d = tu_tensor(NB_SHAPE(4), NB_F64, v);
    nb_tensor *f = nb_to_dtype(d, NB_F32);
    float fr[4];
    cr_assert_eq(nb_copy_to(f, fr, sizeof fr), 0);
    cr_assert_eq(fr[0], 0.1f, "rounded to nearest float");
    cr_assert_eq(fr[2], 1e10f);
    nb_tensor *back = nb_to_dtype(f, NB_F64);
    double dr[4];
    cr_assert_eq(nb_copy_to(back, dr, sizeof dr), 0);
    cr_assert_eq(dr[0], (double)0.1f);
    cr_assert_eq(dr[1], -2.5);

    int64_t iv[] = {-7, 0, 123456789};
    nb_tensor *i = nb_from_data(NB_SHAPE(3), NB_I64, iv);
    nb_tensor *id = nb_to_dtype(i, NB_F64);
    const double idw[] = {-7, 0, 123456789};
    tt_expect(id, idw, 3, 0);

    /* same dtype: t itself */
    cr_assert_eq(nb_to_dtype(d, NB_F64), d);
    /* a non-contiguous input converts in logical order */
    nb_tensor *tr = nb_transpose(tt_iota(NB_SHAPE(2, 3)), 0, 1);
    nb_tensor *ti = nb_to_dtype(tr, NB_I64);
    const double tiw[] = {0, 3, 1, 4, 2, 5};
    tt_expect(ti, tiw, 6, 0);
    nb_scope_end();
}

Test(tensor, dtype_names_and_sizes) {
    nb_init(NULL);
    cr_assert_str_eq(nb_dtype_name(NB_F32), "f32");
    cr_assert_eq(nb_dtype_size(NB_F32), 4);
    cr_assert_eq(nb_dtype_size(NB_F64), 8);
    cr_assert_eq(nb_dtype_size(NB_I64), 8);
    cr_assert_eq(nb_dtype_size(NB_BOOL), 1);
}

Test(tensor, null_inputs) {
    nb_init(NULL);
    nb_scope_begin();
    cr_assert_eq(nb_numel(NULL), -1);
    cr_assert_eq(nb_ndim(NULL), -1);
    cr_assert_null(nb_shape(NULL));
    cr_assert_eq(nb_dtype(NULL), NB_DTYPE_COUNT);
    cr_assert_null(nb_reshape(NULL, NB_SHAPE(2)));
    cr_assert_null(nb_transpose(NULL, 0, 1));
    cr_assert_null(nb_contiguous(NULL));
    cr_assert_null(nb_to_dtype(NULL, NB_F32));
    nb_release(NULL);
    cr_assert_null(nb_retain(NULL));
    nb_scope_end();
}
