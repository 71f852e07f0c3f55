/* norm_testutil.h — what test_avx2_rows.c and test_avx512_norm.c share for
 * the layer_norm / rms_norm forwards' late rows (norm_common.h's LN_LATE).
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

#endif
