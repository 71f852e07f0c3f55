/* norm_testutil.h — what test_avx2_rows.c and test_avx512_norm.c share: the
 * layer_norm / rms_norm forwards' late rows (norm_common.h's LN_LATE) and
 * the special-value rows of their special_values tests.
 */
#ifndef NB_TESTS_NORM_TESTUTIL_H
#define NB_TESTS_NORM_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>

#include <nabla.h>

/* The late-row cases' operands: x (R, L) (randn x 2, seed 900 + l) with
 * special rows among the others — an inf (row 5), values whose squares
 * overflow F32 (row 6: the double fallback), a NaN (row 700) and an inf in
 * the last row (R >= 1100) — and w, b (L) (randn, seeds 910 + l, 920 + l).
 * All three contiguous and scoped. */
static inline void norm_late_operands(int64_t R, int64_t L, int l, nb_tensor **x, nb_tensor **w, nb_tensor **b) {
    *x = nb_randn(NB_SHAPE(R, L), NB_F32, 900 + (uint64_t)l);
    *w = nb_randn(NB_SHAPE(L), NB_F32, 910 + (uint64_t)l);
    *b = nb_randn(NB_SHAPE(L), NB_F32, 920 + (uint64_t)l);
    cr_assert(*x && *w && *b, "%s", nb_last_error());
    *x = nb_contiguous(nb_mul_scalar(*x, 2.0));
    cr_assert_not_null(*x, "%s", nb_last_error());
    float *xv = nb_data(*x);
    xv[5 * L + 17] = INFINITY;
    xv[700 * L + 3] = NAN;
    for (int64_t i = 0; i < L; i++) xv[6 * L + i] = (i % 2 ? 3e20f : -3e20f);
    xv[(R - 1) * L + L - 1] = INFINITY;
}

/* The late-row cases' NORM_LATE_VARIANTS variants v: layer_norm with w and
 * b (0), without them (1), with w only (2); rms_norm with w (3). */
enum { NORM_LATE_VARIANTS = 4 };
static inline nb_op norm_late_variant(int v, nb_tensor *w, nb_tensor *b, const nb_tensor **wv, const nb_tensor **bv) {
    *wv = v == 1 ? NULL : w;
    *bv = v == 0 ? b : NULL;
    return v < 3 ? NB_OP_LAYER_NORM : NB_OP_RMS_NORM;
}

/* Special values in x (NORM_SPECIAL_K = 11 rows of L, the others left as
 * they are): row 1 constant (var 0, rstd 1/sqrt(eps)), 2 a NaN, 3 ±0, 4
 * denormals (and +0), 5 and 6 scaled by 1e20 / 1e30 (squares and the sum's
 * square past F32), 7 +inf, 8 +inf and -inf, 9 denormals among normals, 10
 * one value near FLT_MAX. */
enum { NORM_SPECIAL_K = 11 };
static inline void norm_special_x(float *p, int64_t L) {
    for (int64_t i = 0; i < L; i++) {
        p[1 * L + i] = 2.5f;
        p[3 * L + i] = i % 2 ? 0.0f : -0.0f;
        p[4 * L + i] = (float)(i % 5) * 1e-40f;
        p[5 * L + i] *= 1e20f;
        p[6 * L + i] *= 1e30f;
        p[9 * L + i] = i % 3 ? 1e-39f : -3.0f;
    }
    p[2 * L + L / 2] = NAN;
    p[7 * L + L - 1] = INFINITY;
    p[8 * L + 0] = INFINITY;
    p[8 * L + L / 3 + 1] = -INFINITY;
    p[10 * L + L - 2] = 3e38f;
}

/* Special values in dy (rows 0-4 of L): a NaN, +inf, -0, a denormal. */
static inline void norm_special_dy(float *q, int64_t L) {
    q[L / 2] = NAN;
    q[2 * L] = INFINITY;
    q[3 * L + 1] = -0.0f;
    q[4 * L + L - 1] = 1e-41f;
}

#endif
