/* optim_testutil.h — helpers shared by the optimizer-step and dropout
 * kernel tests (test_avx2_optim.c, test_avx512_optim.c): deterministic
 * inputs with special values, and bitwise comparison of float arrays.
 */
#ifndef NB_TESTS_OPTIM_TESTUTIL_H
#define NB_TESTS_OPTIM_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "testutil.h"

/* x[0..n) = values in [-1, 1) drawn from *rng (xorshift64*, tu_u01); with
 * specials and n >= 64, ±0, ±inf, NaN, denormals and large magnitudes in
 * nine places. */
static void ot_fill(uint64_t *rng, float *x, int64_t n, bool specials) {
    static const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -3e-39f, 3e38f, -1e30f};
    for (int64_t i = 0; i < n; i++) x[i] = (float)(tu_u01(rng) * 2 - 1);
    if (specials && n >= 64)
        for (int k = 0; k < 9; k++) x[(int64_t)(k * 7 + 3) % n] = sp[k];
}

/* Bitwise equality of n floats (both NaN counts as equal); fails with the
 * first difference, naming the two sides (who_got, who_want) and what. */
static void ot_same(const float *got, const float *want, int64_t n, const char *who_got, const char *who_want,
                    const char *what) {
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) && isnan(want[i])) continue;
        uint32_t u, v;
        memcpy(&u, &got[i], 4);
        memcpy(&v, &want[i], 4);
        cr_assert_eq(u, v, "%s[%lld] of %lld: %s %.9g (0x%08x) vs %s %.9g (0x%08x)", what, (long long)i,
                     (long long)n, who_got, (double)got[i], u, who_want, (double)want[i], v);
    }
}

#endif
