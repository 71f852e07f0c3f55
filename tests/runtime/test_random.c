/* test_random.c — the Philox4x32-10 generator and nb_rand/nb_randn.
 *
 * The generator is checked against the known-answer vectors shipped with
 * Random123 (kat_vectors, "philox4x32 10" lines); the tensors against the
 * properties the API promises: determinism per seed, the range and moments of
 * the distributions, and element i depending only on (seed, i).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

/* Defined in src/runtime/philox.c: the 4-word-counter form, which the
 * known-answer vectors need (nb__philox fixes counter words 2 and 3 to 0). */

static void rnd_setup(void) {
    nb_init(NULL);
    nb_scope_begin();
}

static void rnd_teardown(void) { nb_scope_end(); }

TestSuite(random, .init = rnd_setup, .fini = rnd_teardown);

/* ---- Philox known answers ---- */

typedef struct rnd_kat {
    uint32_t ctr[4];   /* counter words */
    uint32_t key[2];   /* key words */
    uint32_t want[4];  /* Random123's output */
} rnd_kat;

static const rnd_kat rnd_kats[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

Test(random, philox_known_answers) {
    for (size_t k = 0; k < sizeof rnd_kats / sizeof rnd_kats[0]; k++) {
        uint32_t out[4];
        nb__philox4x32_10(rnd_kats[k].ctr, rnd_kats[k].key, out);
        for (int w = 0; w < 4; w++)
            cr_expect_eq(out[w], rnd_kats[k].want[w], "vector %zu word %d: %08x, want %08x", k,
                         w, out[w], rnd_kats[k].want[w]);
    }
}

Test(random, philox_zero_vector_via_nb_philox) {
    uint32_t out[4];
    nb__philox(0, 0, out);
    for (int w = 0; w < 4; w++) cr_expect_eq(out[w], rnd_kats[0].want[w]);
}

/* nb__philox(seed, c) is the 4-word form with ctr {lo(c), hi(c), 0, 0} and
 * key {lo(seed), hi(seed)}. */
Test(random, philox_word_order) {
    const uint64_t seeds[] = {0, 1, 0xa4093822299f31d0ull, ~0ull};
    const uint64_t ctrs[] = {0, 7, 0x85a308d3243f6a88ull, ~0ull};
    for (int s = 0; s < 4; s++)
        for (int c = 0; c < 4; c++) {
            uint32_t a[4], b[4];
            const uint32_t ctr[4] = {(uint32_t)ctrs[c], (uint32_t)(ctrs[c] >> 32), 0, 0};
            const uint32_t key[2] = {(uint32_t)seeds[s], (uint32_t)(seeds[s] >> 32)};
            nb__philox(seeds[s], ctrs[c], a);
            nb__philox4x32_10(ctr, key, b);
            cr_expect_arr_eq(a, b, sizeof a, "seed %d counter %d", s, c);
        }
}

/* ---- nb_rand / nb_randn ---- */

/* The elements of t as doubles (malloc'd; the caller frees). */
static double *rnd_values(nb_tensor *t) {
    cr_assert_not_null(t, "%s", nb_last_error());
    nb_tensor *d = nb_to_dtype(t, NB_F64);
    cr_assert_not_null(d, "nb_to_dtype: %s", nb_last_error());
    size_t n = (size_t)nb_numel(t);
    double *v = malloc(sizeof(double) * (n ? n : 1));
    cr_assert_not_null(v);
    cr_assert_eq(nb_copy_to(d, v, sizeof(double) * n), 0, "%s", nb_last_error());
    return v;
}

Test(random, same_seed_same_values) {
    for (int dt = NB_F32; dt <= NB_F64; dt++) {
        double *a = rnd_values(nb_rand(NB_SHAPE(257), (nb_dtype)dt, 42));
        double *b = rnd_values(nb_rand(NB_SHAPE(257), (nb_dtype)dt, 42));
        cr_expect_arr_eq(a, b, sizeof(double) * 257, "nb_rand dtype %d", dt);
        free(a);
        free(b);
        a = rnd_values(nb_randn(NB_SHAPE(257), (nb_dtype)dt, 42));
        b = rnd_values(nb_randn(NB_SHAPE(257), (nb_dtype)dt, 42));
        cr_expect_arr_eq(a, b, sizeof(double) * 257, "nb_randn dtype %d", dt);
        free(a);
        free(b);
    }
}

Test(random, different_seeds_differ) {
    double *a = rnd_values(nb_rand(NB_SHAPE(100), NB_F32, 1));
    double *b = rnd_values(nb_rand(NB_SHAPE(100), NB_F32, 2));
    int same = 0;
    for (int i = 0; i < 100; i++) same += a[i] == b[i];
    cr_expect_lt(same, 5, "%d of 100 values equal across seeds", same);
    free(a);
    free(b);
    a = rnd_values(nb_randn(NB_SHAPE(100), NB_F64, 1));
    b = rnd_values(nb_randn(NB_SHAPE(100), NB_F64, 2));
    same = 0;
    for (int i = 0; i < 100; i++) same += a[i] == b[i];
    cr_expect_lt(same, 5, "%d of 100 randn values equal across seeds", same);
    free(a);
    free(b);
}

#define RND_N 100000

/* Uniform on [0, 1): mean 1/2 (sd of the estimate 0.0009 at n = 1e5),
 * variance 1/12 (sd 0.00024). */
Test(random, rand_range_and_moments) {
    for (int dt = NB_F32; dt <= NB_F64; dt++) {
        nb_tensor *t = nb_rand(NB_SHAPE(RND_N), (nb_dtype)dt, 12345);
        cr_assert_eq(nb_dtype(t), (nb_dtype)dt);
        double *v = rnd_values(t);
        double sum = 0, sq = 0;
        for (int i = 0; i < RND_N; i++) {
            cr_assert(v[i] >= 0.0 && v[i] < 1.0, "dtype %d: element %d = %.17g out of [0,1)",
                      dt, i, v[i]);
            sum += v[i];
        }
        double mean = sum / RND_N;
        for (int i = 0; i < RND_N; i++) sq += (v[i] - mean) * (v[i] - mean);
        double var = sq / (RND_N - 1);
        cr_expect(fabs(mean - 0.5) < 0.005, "dtype %d: mean %g", dt, mean);
        cr_expect(fabs(var - 1.0 / 12) < 0.0015, "dtype %d: variance %g", dt, var);
        free(v);
    }
}

/* Standard normal: mean 0 (sd of the estimate 0.003), sd 1 (sd 0.0022). */
Test(random, randn_moments) {
    for (int dt = NB_F32; dt <= NB_F64; dt++) {
        double *v = rnd_values(nb_randn(NB_SHAPE(RND_N), (nb_dtype)dt, 777));
        double sum = 0, sq = 0;
        int beyond3 = 0;
        for (int i = 0; i < RND_N; i++) {
            cr_assert(isfinite(v[i]), "dtype %d: element %d = %g", dt, i, v[i]);
            sum += v[i];
        }
        double mean = sum / RND_N;
        for (int i = 0; i < RND_N; i++) {
            sq += (v[i] - mean) * (v[i] - mean);
            beyond3 += fabs(v[i]) > 3;
        }
        double sd = sqrt(sq / (RND_N - 1));
        cr_expect(fabs(mean) < 0.02, "dtype %d: mean %g", dt, mean);
        cr_expect(fabs(sd - 1) < 0.02, "dtype %d: sd %g", dt, sd);
        /* P(|z| > 3) = 0.0027: 270 expected, sd about 16 */
        cr_expect(beyond3 > 170 && beyond3 < 370, "dtype %d: %d beyond 3 sd", dt, beyond3);
        free(v);
    }
}

/* Element i depends only on (seed, i): the first 10 of a 10-element tensor
 * equal the first 10 (C order) of bigger ones, whatever their shape. */
Test(random, value_independent_of_size) {
    for (int dt = NB_F32; dt <= NB_F64; dt++) {
        double *small = rnd_values(nb_rand(NB_SHAPE(10), (nb_dtype)dt, 99));
        double *big = rnd_values(nb_rand(NB_SHAPE(1000), (nb_dtype)dt, 99));
        double *mat = rnd_values(nb_rand(NB_SHAPE(25, 40), (nb_dtype)dt, 99));
        cr_expect_arr_eq(small, big, sizeof(double) * 10, "nb_rand dtype %d", dt);
        cr_expect_arr_eq(small, mat, sizeof(double) * 10, "nb_rand 2-D dtype %d", dt);
        free(small);
        free(big);
        free(mat);
        small = rnd_values(nb_randn(NB_SHAPE(10), (nb_dtype)dt, 99));
        big = rnd_values(nb_randn(NB_SHAPE(1000), (nb_dtype)dt, 99));
        mat = rnd_values(nb_randn(NB_SHAPE(25, 40), (nb_dtype)dt, 99));
        cr_expect_arr_eq(small, big, sizeof(double) * 10, "nb_randn dtype %d", dt);
        cr_expect_arr_eq(small, mat, sizeof(double) * 10, "nb_randn 2-D dtype %d", dt);
        /* an odd size: a Box-Muller pair split at the end must not shift values */
        double *odd = rnd_values(nb_randn(NB_SHAPE(7), (nb_dtype)dt, 99));
        cr_expect_arr_eq(odd, big, sizeof(double) * 7, "nb_randn odd size dtype %d", dt);
        free(small);
        free(big);
        free(mat);
        free(odd);
    }
}

Test(random, rejects_integer_dtypes) {
    cr_expect_null(nb_rand(NB_SHAPE(4), NB_I64, 1));
    cr_expect_lt(nb_last_error_code(), 0);
    cr_expect_null(nb_randn(NB_SHAPE(4), NB_BOOL, 1));
    cr_expect_lt(nb_last_error_code(), 0);
}
