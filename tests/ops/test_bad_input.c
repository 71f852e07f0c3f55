/* test_bad_input.c — what every op does with input it cannot serve.
 *
 * The rule (STYLE.md, "Errors"): no crash and no abort; a function that
 * returns a tensor returns NULL, a command returns a negative NB_E* code;
 * nb_last_error_code() holds that code and nb_last_error() a message that
 * names the function and the shapes or dtypes involved, so a user can fix
 * the call from the message alone. Each case also checks that the failure
 * left no tensor alive once its scope closed (the suite also runs under
 * ASan with leak detection).
 *
 * Shapes print as nb__shape_str does: "[2, 3]".
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- helpers: each test opens a scope in bi_init and closes it with
 * BI_END, which also checks that no tensor outlived it ---- */

static uint64_t bi_live_at_start;  /* live tensors before the test's scope opened */

static void bi_init(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    bi_live_at_start = nb_memory_stats().live_tensors;
    nb_clear_error();
    nb_scope_begin();
}

/* Closes scopes an assertion left open (the test failed already). */
static void bi_fini(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}

#define BI_TEST(name) Test(bad_input, name, .init = bi_init, .fini = bi_fini)

/* Closes the test's scope and checks that every tensor died with it. */
#define BI_END()                                                                         \
    do {                                                                                 \
        nb_scope_end();                                                                  \
        uint64_t live_ = nb_memory_stats().live_tensors;                                 \
        cr_assert_eq(live_, bi_live_at_start, "%llu tensors alive after the scope, %llu before", \
                     (unsigned long long)live_, (unsigned long long)bi_live_at_start);   \
    } while (0)

/* Asserts that the last error is `code` and that its message contains each
 * of the strings that follow. */
#define BI_EXPECT_ERR(code, ...)                                                          \
    do {                                                                                  \
        int got_ = nb_last_error_code();                                                  \
        const char *msg_ = nb_last_error();                                               \
        cr_assert_eq(got_, (code), "error %s, expected %s; message: \"%s\"",              \
                     nb_error_name(got_), nb_error_name(code), msg_);                     \
        const char *subs_[] = {__VA_ARGS__};                                              \
        for (size_t i_ = 0; i_ < sizeof subs_ / sizeof subs_[0]; i_++)                    \
            cr_assert(strstr(msg_, subs_[i_]) != NULL, "message \"%s\" does not mention \"%s\"", \
                      msg_, subs_[i_]);                                                   \
    } while (0)

/* The op returned NULL and the error is as expected. */
#define BI_EXPECT_NULL(expr, code, ...)                                                   \
    do {                                                                                  \
        nb_clear_error();                                                                 \
        nb_tensor *r_ = (expr);                                                           \
        cr_assert_null(r_, "%s: expected NULL, got a tensor", #expr);                     \
        BI_EXPECT_ERR(code, __VA_ARGS__);                                                 \
    } while (0)

/* The command returned `code` and the error is as expected. */
#define BI_EXPECT_RC(expr, code, ...)                                                     \
    do {                                                                                  \
        nb_clear_error();                                                                 \
        int rc_ = (expr);                                                                 \
        cr_assert_eq(rc_, (code), "%s returned %s (%d), expected %s; message: \"%s\"",    \
                     #expr, nb_error_name(rc_), rc_, nb_error_name(code), nb_last_error()); \
        BI_EXPECT_ERR(code, __VA_ARGS__);                                                 \
    } while (0)

static nb_tensor *bi_ones(nb_dims shape, nb_dtype dt) {
    nb_tensor *t = nb_ones(shape, dt);
    cr_assert_not_null(t, "nb_ones: %s", nb_last_error());
    return t;
}

static nb_tensor *bi_leaf(nb_dims shape, nb_dtype dt) {
    nb_tensor *t = bi_ones(shape, dt);
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

/* ---- creation ---- */

BI_TEST(negative_dims) {
    BI_EXPECT_NULL(nb_zeros(NB_SHAPE(2, -1), NB_F32), NB_EINVAL, "nb_zeros", "-1", "[2, -1]");
    BI_EXPECT_NULL(nb_ones(NB_SHAPE(-3), NB_F64), NB_EINVAL, "nb_ones", "-3");
    BI_EXPECT_NULL(nb_empty(NB_SHAPE(4, 5, -2), NB_F32), NB_EINVAL, "nb_empty", "[4, 5, -2]");
    BI_EXPECT_NULL(nb_full(NB_SHAPE(-1, 2), NB_F32, 1.0), NB_EINVAL, "nb_full", "[-1, 2]");
    BI_EXPECT_NULL(nb_randn(NB_SHAPE(2, -5), NB_F32, 1), NB_EINVAL, "nb_randn", "[2, -5]");
    BI_END();
}

BI_TEST(bad_ndim) {
    int64_t sizes[NB_MAX_DIMS + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    nb_dims d = nb_dims_of(NB_MAX_DIMS + 1, sizes);
    cr_assert_eq(d.ndim, -1, "nb_dims_of(9 dims): ndim %d, expected -1", d.ndim);
    BI_EXPECT_NULL(nb_zeros(d, NB_F32), NB_EINVAL, "nb_zeros");
    BI_END();
}

BI_TEST(overflowing_dims) {
    /* 2^80 elements: the product overflows 64 bits. */
    BI_EXPECT_NULL(nb_zeros(NB_SHAPE(1LL << 40, 1LL << 40), NB_F32), NB_EOVERFLOW, "nb_zeros",
                   "[1099511627776, 1099511627776]");
    BI_EXPECT_NULL(nb_ones(NB_SHAPE(3, 1LL << 31, 1LL << 31, 1LL << 31), NB_F64), NB_EOVERFLOW,
                   "nb_ones");
    /* INT64_MAX in one dim, 2 in another. */
    BI_EXPECT_NULL(nb_empty(NB_SHAPE(2, INT64_MAX), NB_F32), NB_EOVERFLOW, "nb_empty");
    BI_END();
}

/* True when this process runs under AddressSanitizer without
 * allocator_may_return_null=1: then a failed huge malloc aborts the process
 * (ASan's report) instead of returning NULL, which is not nabla's doing. */
static bool bi_asan_aborts_on_huge_malloc(void) {
#if defined(__SANITIZE_ADDRESS__)
    const char *o = getenv("ASAN_OPTIONS");
    return !o || !strstr(o, "allocator_may_return_null=1");
#else
    return false;
#endif
}

BI_TEST(huge_tensor_is_an_error_not_a_crash) {
    /* 2^62 F32 elements = 2^64 bytes: cannot even be counted in a size_t. */
    nb_clear_error();
    cr_assert_null(nb_zeros(NB_SHAPE(1LL << 62), NB_F32));
    int code = nb_last_error_code();
    cr_assert(code == NB_ENOMEM || code == NB_EOVERFLOW, "error %s (%s), expected NB_ENOMEM or NB_EOVERFLOW",
              nb_error_name(code), nb_last_error());
    cr_assert(strstr(nb_last_error(), "nb_zeros"), "message \"%s\" does not name nb_zeros", nb_last_error());

    /* 2^62 one-byte elements: countable, but no machine has 4 EiB. */
    nb_clear_error();
    cr_assert_null(nb_empty(NB_SHAPE(1LL << 31, 1LL << 31), NB_BOOL));
    code = nb_last_error_code();
    cr_assert(code == NB_ENOMEM || code == NB_EOVERFLOW, "error %s (%s), expected NB_ENOMEM or NB_EOVERFLOW",
              nb_error_name(code), nb_last_error());
    cr_assert(strstr(nb_last_error(), "[2147483648, 2147483648]"), "message \"%s\" does not name the shape",
              nb_last_error());

    /* 2^49 bytes (512 TiB): plausible to count, so this one reaches the
     * allocator, and the OS (or ASan's allocator) must say no. */
    if (!bi_asan_aborts_on_huge_malloc()) {
        BI_EXPECT_NULL(nb_empty(NB_SHAPE(1LL << 47), NB_F32), NB_ENOMEM, "nb_empty");
    } else {
        cr_log_warn("huge_tensor: 512 TiB case skipped: set ASAN_OPTIONS=allocator_may_return_null=1");
    }
    BI_END();
}

BI_TEST(from_data_null) {
    BI_EXPECT_NULL(nb_from_data(NB_SHAPE(2, 3), NB_F32, NULL), NB_ENULLARG, "nb_from_data", "NULL");
    BI_END();
}

/* ---- views ---- */

BI_TEST(reshape_to_another_numel) {
    nb_tensor *x = bi_ones(NB_SHAPE(2, 3), NB_F32);
    BI_EXPECT_NULL(nb_reshape(x, NB_SHAPE(4, 5)), NB_ESHAPE, "nb_reshape", "[2, 3]", "[4, 5]");
    BI_EXPECT_NULL(nb_reshape(x, NB_SHAPE(4, -1)), NB_ESHAPE, "nb_reshape", "[2, 3]", "[4, -1]");
    BI_EXPECT_NULL(nb_view(x, NB_SHAPE(7)), NB_ESHAPE, "nb_view", "[2, 3]", "[7]");
    /* two inferred sizes */
    BI_EXPECT_NULL(nb_reshape(x, NB_SHAPE(-1, -1)), NB_EINVAL, "nb_reshape", "-1");
    BI_END();
}

BI_TEST(dim_out_of_range) {
    nb_tensor *x = bi_ones(NB_SHAPE(2, 3), NB_F32);
    BI_EXPECT_NULL(nb_transpose(x, 0, 2), NB_ERANGE, "nb_transpose", "2");
    BI_EXPECT_NULL(nb_transpose(x, -3, 1), NB_ERANGE, "nb_transpose", "-3");
    int p[2] = {0, 5};
    BI_EXPECT_NULL(nb_permute(x, p, 2), NB_ERANGE, "nb_permute", "5");
    BI_EXPECT_NULL(nb_slice(x, 2, 0, 1, 1), NB_ERANGE, "nb_slice", "2");
    BI_EXPECT_NULL(nb_slice(x, -3, 0, 1, 1), NB_ERANGE, "nb_slice", "-3");
    int d[1] = {2};
    BI_EXPECT_NULL(nb_sum(x, d, 1, false), NB_ERANGE, "nb_sum", "2");
    int dm[1] = {-4};
    BI_EXPECT_NULL(nb_mean(x, dm, 1, true), NB_ERANGE, "nb_mean", "-4");
    BI_EXPECT_NULL(nb_squeeze(x, 3), NB_ERANGE, "nb_squeeze", "3");
    BI_END();
}

BI_TEST(permute_repeated_or_missing_dims) {
    nb_tensor *x = bi_ones(NB_SHAPE(2, 3, 4), NB_F32);
    int rep[3] = {0, 1, 1};
    BI_EXPECT_NULL(nb_permute(x, rep, 3), NB_EINVAL, "nb_permute", "1");
    int neg_rep[3] = {2, -1, 0};  /* -1 is 2 again */
    BI_EXPECT_NULL(nb_permute(x, neg_rep, 3), NB_EINVAL, "nb_permute");
    int short_list[2] = {1, 0};   /* 2 dims for a 3-dim tensor */
    BI_EXPECT_NULL(nb_permute(x, short_list, 2), NB_EINVAL, "nb_permute", "[2, 3, 4]");
    BI_EXPECT_NULL(nb_permute(x, NULL, 3), NB_ENULLARG, "nb_permute");
    BI_END();
}

BI_TEST(slice_bad_step) {
    nb_tensor *x = bi_ones(NB_SHAPE(5), NB_F32);
    BI_EXPECT_NULL(nb_slice(x, 0, 0, 5, 0), NB_EINVAL, "nb_slice", "step");
    BI_EXPECT_NULL(nb_slice(x, 0, 0, 5, -1), NB_EINVAL, "nb_slice", "step");
    BI_END();
}

/* ---- shapes and dtypes of binary ops ---- */

BI_TEST(matmul_incompatible) {
    nb_tensor *a = bi_ones(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *b = bi_ones(NB_SHAPE(4, 5), NB_F32);
    BI_EXPECT_NULL(nb_matmul(a, b), NB_ESHAPE, "nb_matmul", "[2, 3]", "[4, 5]");
    nb_tensor *v = bi_ones(NB_SHAPE(4), NB_F32);
    BI_EXPECT_NULL(nb_matmul(a, v), NB_ESHAPE, "nb_matmul", "[2, 3]", "[4]");
    /* batch dims that do not broadcast */
    nb_tensor *p = bi_ones(NB_SHAPE(2, 2, 3), NB_F32);
    nb_tensor *q = bi_ones(NB_SHAPE(3, 3, 4), NB_F32);
    BI_EXPECT_NULL(nb_matmul(p, q), NB_ESHAPE, "nb_matmul", "[2, 2, 3]", "[3, 3, 4]");
    /* 0-dim operands are refused, as torch.matmul does */
    BI_EXPECT_NULL(nb_matmul(nb_scalar(2.0), a), NB_ESHAPE, "nb_matmul");
    BI_END();
}

BI_TEST(broadcast_incompatible) {
    nb_tensor *a = bi_ones(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *b = bi_ones(NB_SHAPE(4, 5), NB_F32);
    BI_EXPECT_NULL(nb_add(a, b), NB_ESHAPE, "nb_add", "[2, 3]", "[4, 5]");
    nb_tensor *c = bi_ones(NB_SHAPE(2), NB_F32);
    BI_EXPECT_NULL(nb_mul(a, c), NB_ESHAPE, "nb_mul", "[2, 3]", "[2]");
    BI_EXPECT_NULL(nb_sub(c, a), NB_ESHAPE, "nb_sub", "[2]", "[2, 3]");
    BI_EXPECT_NULL(nb_div(a, c), NB_ESHAPE, "nb_div", "[2, 3]", "[2]");
    BI_EXPECT_NULL(nb_pow(a, c), NB_ESHAPE, "nb_pow", "[2, 3]", "[2]");
    /* in place: the result must keep self's shape */
    nb_tensor *r = bi_ones(NB_SHAPE(3), NB_F32);
    BI_EXPECT_NULL(nb_add_(r, a), NB_ESHAPE, "nb_add_", "[3]", "[2, 3]");
    BI_EXPECT_NULL(nb_expand(a, NB_SHAPE(4, 3)), NB_ESHAPE, "nb_expand", "[2, 3]", "[4, 3]");
    BI_END();
}

BI_TEST(dtype_mismatch) {
    /* Element-wise ops promote as torch.result_type does (f32 + f64 is f64),
     * so dtype errors come from the ops that do not promote and from casts
     * that would lose the result's category. */
    nb_tensor *f = bi_ones(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *d = bi_ones(NB_SHAPE(2, 3), NB_F64);
    nb_clear_error();
    nb_tensor *sum = nb_add(f, d);
    cr_assert_not_null(sum, "f32 + f64 promotes: %s", nb_last_error());
    cr_assert_eq(nb_dtype(sum), NB_F64, "f32 + f64 is %s, expected f64", nb_dtype_name(nb_dtype(sum)));

    nb_tensor *m = bi_ones(NB_SHAPE(3, 2), NB_F64);
    BI_EXPECT_NULL(nb_matmul(f, m), NB_EDTYPE, "nb_matmul", "f32", "f64");
    BI_EXPECT_NULL(nb_matmul(m, f), NB_EDTYPE, "nb_matmul", "f64", "f32");
    /* in place: an f32 result cannot be stored in an i64 self */
    nb_tensor *i = bi_ones(NB_SHAPE(2, 3), NB_I64);
    BI_EXPECT_NULL(nb_add_(i, f), NB_EDTYPE, "nb_add_", "f32", "i64");
    nb_tensor *b = bi_ones(NB_SHAPE(2, 3), NB_BOOL);
    BI_EXPECT_NULL(nb_sub(b, b), NB_EDTYPE, "nb_sub", "bool");
    BI_END();
}

BI_TEST(invalid_dtype_value) {
    BI_EXPECT_NULL(nb_zeros(NB_SHAPE(2), NB_DTYPE_COUNT), NB_EDTYPE, "nb_zeros");
    BI_EXPECT_NULL(nb_zeros(NB_SHAPE(2), (nb_dtype)-1), NB_EDTYPE, "nb_zeros");
    BI_END();
}

/* ---- NULL arguments ---- */

BI_TEST(null_inputs_to_ops) {
    nb_tensor *a = bi_ones(NB_SHAPE(2, 3), NB_F32);
    BI_EXPECT_NULL(nb_add(NULL, a), NB_ENULLARG, "nb_add");
    BI_EXPECT_NULL(nb_add(a, NULL), NB_ENULLARG, "nb_add");
    BI_EXPECT_NULL(nb_matmul(NULL, NULL), NB_ENULLARG, "nb_matmul");
    BI_EXPECT_NULL(nb_tanh(NULL), NB_ENULLARG, "nb_tanh");
    BI_EXPECT_NULL(nb_mul_scalar(NULL, 2.0), NB_ENULLARG, "nb_mul_scalar");
    BI_EXPECT_NULL(nb_sum_all(NULL), NB_ENULLARG, "nb_sum_all");
    BI_EXPECT_NULL(nb_reshape(NULL, NB_SHAPE(6)), NB_ENULLARG, "nb_reshape");
    BI_EXPECT_NULL(nb_transpose(NULL, 0, 1), NB_ENULLARG, "nb_transpose");
    BI_END();
}

BI_TEST(null_propagates_first_error) {
    /* A chain checked once at the end: the first failure's message survives
     * the NULLs it causes further down. */
    nb_tensor *a = bi_ones(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *b = bi_ones(NB_SHAPE(4, 5), NB_F32);
    nb_clear_error();
    nb_tensor *y = nb_sum_all(nb_tanh(nb_mul_scalar(nb_matmul(a, b), 2.0)));
    cr_assert_null(y);
    BI_EXPECT_ERR(NB_ESHAPE, "nb_matmul", "[2, 3]", "[4, 5]");
    BI_END();
}

BI_TEST(null_to_commands) {
    BI_EXPECT_RC(nb_backward(NULL, NULL), NB_ENULLARG, "nb_backward");
    BI_EXPECT_RC(nb_set_requires_grad(NULL, true), NB_ENULLARG, "nb_set_requires_grad");
    nb_tensor *x = bi_ones(NB_SHAPE(2), NB_F32);
    BI_EXPECT_RC(nb_copy_to(x, NULL, 8), NB_ENULLARG, "nb_copy_to");
    BI_EXPECT_RC(nb_copy_to(NULL, &(float[2]){0}, 8), NB_ENULLARG, "nb_copy_to");
    /* the safe-for-NULL functions stay quiet */
    nb_clear_error();
    nb_release(NULL);
    nb_zero_grad(NULL);
    cr_assert_null(nb_grad(NULL));
    cr_assert_eq(nb_numel(NULL), -1);
    cr_assert_eq(nb_ndim(NULL), -1);
    cr_assert_null(nb_shape(NULL));
    cr_assert_eq(nb_dtype(NULL), NB_DTYPE_COUNT);
    BI_END();
}

/* ---- autograd ---- */

BI_TEST(backward_non_scalar_without_grad) {
    nb_tensor *x = bi_leaf(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *y = nb_mul_scalar(x, 2.0);
    cr_assert_not_null(y, "%s", nb_last_error());
    nb_clear_error();
    int rc = nb_backward(y, NULL);
    cr_assert_lt(rc, 0, "nb_backward on a [2, 3] output without a gradient returned %d", rc);
    cr_assert_eq(nb_last_error_code(), rc, "returned %s but recorded %s", nb_error_name(rc),
                 nb_error_name(nb_last_error_code()));
    cr_assert(rc == NB_EAUTOGRAD || rc == NB_ESHAPE, "error %s, expected NB_EAUTOGRAD or NB_ESHAPE",
              nb_error_name(rc));
    cr_assert(strstr(nb_last_error(), "nb_backward") && strstr(nb_last_error(), "[2, 3]"),
              "message \"%s\" should name nb_backward and the shape [2, 3]", nb_last_error());
    cr_assert_null(nb_grad(x), "a failed backward must not touch .grad");
    BI_END();
}

BI_TEST(backward_grad_of_wrong_shape) {
    nb_tensor *x = bi_leaf(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *y = nb_mul_scalar(x, 2.0);
    nb_tensor *g = bi_ones(NB_SHAPE(3, 2), NB_F32);
    BI_EXPECT_RC(nb_backward(y, g), NB_ESHAPE, "nb_backward", "[2, 3]", "[3, 2]");
    nb_tensor *gd = bi_ones(NB_SHAPE(2, 3), NB_F64);
    BI_EXPECT_RC(nb_backward(y, gd), NB_EDTYPE, "nb_backward", "f32", "f64");
    cr_assert_null(nb_grad(x), "a failed backward must not touch .grad");
    BI_END();
}

BI_TEST(backward_without_requires_grad) {
    nb_tensor *x = bi_ones(NB_SHAPE(2), NB_F32);
    nb_tensor *y = nb_sum_all(nb_mul(x, x));
    cr_assert_not_null(y, "%s", nb_last_error());
    BI_EXPECT_RC(nb_backward(y, NULL), NB_EAUTOGRAD, "nb_backward", "require");
    BI_END();
}

BI_TEST(second_backward_through_freed_graph) {
    nb_tensor *x = bi_leaf(NB_SHAPE(3), NB_F32);
    nb_tensor *y = nb_sum_all(nb_mul(x, x));   /* mul saves both inputs */
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_eq(nb_backward(y, NULL), 0, "first backward: %s", nb_last_error());
    BI_EXPECT_RC(nb_backward(y, NULL), NB_EAUTOGRAD, "retain_graph");
    /* the first backward's gradient is intact: d/dx sum(x*x) = 2x = 2 */
    nb_tensor *g = nb_grad(x);
    cr_assert_not_null(g);
    float got[3];
    cr_assert_eq(nb_copy_to(g, got, sizeof got), 0);
    for (int i = 0; i < 3; i++) cr_assert_float_eq(got[i], 2.0f, 1e-6f, "grad[%d] = %g", i, got[i]);
    BI_END();
}

BI_TEST(requires_grad_on_integer_tensor) {
    nb_tensor *i = nb_arange(0, 4, 1, NB_I64);
    cr_assert_not_null(i, "%s", nb_last_error());
    BI_EXPECT_RC(nb_set_requires_grad(i, true), NB_EDTYPE, "nb_set_requires_grad", "i64");
    cr_assert(!nb_requires_grad(i));
    nb_tensor *m = bi_ones(NB_SHAPE(2), NB_BOOL);
    BI_EXPECT_RC(nb_set_requires_grad(m, true), NB_EDTYPE, "nb_set_requires_grad", "bool");
    /* switching it off is always allowed */
    nb_clear_error();
    cr_assert_eq(nb_set_requires_grad(i, false), 0, "%s", nb_last_error());
    BI_END();
}

BI_TEST(requires_grad_on_non_leaf) {
    nb_tensor *x = bi_leaf(NB_SHAPE(2), NB_F32);
    nb_tensor *y = nb_mul_scalar(x, 3.0);
    cr_assert_not_null(y, "%s", nb_last_error());
    BI_EXPECT_RC(nb_set_requires_grad(y, false), NB_EAUTOGRAD, "nb_set_requires_grad", "leaf");
    BI_END();
}

BI_TEST(in_place_on_leaf_requiring_grad) {
    nb_tensor *x = bi_leaf(NB_SHAPE(2), NB_F32);
    BI_EXPECT_NULL(nb_mul_scalar_(x, 2.0), NB_EAUTOGRAD, "nb_mul_scalar_");
    BI_END();
}

BI_TEST(item_of_many_elements) {
    nb_tensor *x = bi_ones(NB_SHAPE(2, 3), NB_F32);
    nb_clear_error();
    double v = nb_item(x);
    cr_assert(isnan(v), "nb_item of 6 elements returned %g, expected NaN", v);
    BI_EXPECT_ERR(NB_EINVAL, "nb_item", "[2, 3]");
    BI_END();
}
