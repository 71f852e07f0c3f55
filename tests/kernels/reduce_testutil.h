/* reduce_testutil.h — helpers shared by the x86 reduction kernels' tests
 * (test_avx2_reduce.c, test_avx512_reduce.c): one kernel call through the
 * registry (rdt_call), the inputs (rdt_input, rdt_lens), the
 * comparison of a result with ref's or the twin's under each op's
 * bound (rdt_near, rdt_compare; the bounds are argued at the top of
 * test_avx2_reduce.c), and the checks both tests make: vector_norm's
 * layouts and special rows (rdt_norm_cases, through the test's own check)
 * and the public ops (rdt_public_ops), the merged, viewed and empty
 * inputs (rdt_merged_cases, rdt_view_cases, rdt_empty_cases).
 * Include after criterion and testutil.h.
 */
#ifndef NB_TESTS_REDUCE_TESTUTIL_H
#define NB_TESTS_REDUCE_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <nabla.h>

#include "kernels/kernels.h"
#include "testutil.h"

static inline bool rdt_is_arg(nb_op op) { return op == NB_OP_ARGMAX || op == NB_OP_ARGMIN; }

/* One kernel call under the registry as it is set now: out (keepdim shape)
 * = op(in) over the dims in mask, scalar[0] corr; who names the caller in
 * errors. The kernel that served it goes to *served (when not NULL). */
static inline nb_tensor *rdt_call(nb_op op, nb_tensor *in, unsigned mask, double corr, const char *who,
                                  const char **served) {
    int64_t ks[NB_MAX_DIMS];
    for (int d = 0; d < nb_ndim(in); d++) ks[d] = mask & (1u << d) ? 1 : nb_shape(in)[d];
    nb_tensor *out = nb__new("test", rdt_is_arg(op) ? NB_DTYPE_I64 : NB_DTYPE_F32, nb_ndim(in), ks);
    cr_assert_not_null(out, "%s", nb_last_error());
    nb_kernel_args a = {.op = op, .out = out, .in = {in}, .nin = 1, .scalar = {corr}};
    cr_assert_eq(nb__dispatch(&a, who), 0, "%s: %s", nb_op_name(op), nb_last_error());
    if (served) *served = nb__last_kernel();
    return nb__scoped(out);
}

/* a and b within tol ULP (two NaNs, or equal values, are 0 apart; an
 * infinity is only near itself). */
static inline bool rdt_near(float a, float b, double tol) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (a == b) return true;
    if (isinf(a) || isinf(b)) return false;
    return tu_ulps_f32(a, b) <= tol;
}

/* got against want (vs: "ref" or the twin) under op's bound: arg forms,
 * amax and amin exact; logsumexp within 2e-6 + 1 ULP of |want| (F32 exps,
 * F32-block sums); the others within 1 ULP. */
static inline void rdt_compare(nb_op op, nb_tensor *got, nb_tensor *want, const char *vs, const char *what) {
    int64_t n = nb_numel(want);
    cr_assert_eq(nb_numel(got), n);
    if (rdt_is_arg(op)) {
        const int64_t *a = nb_data(got), *b = nb_data(want);
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(a[i], b[i], "%s %s [%lld]: %lld vs %s %lld", what, nb_op_name(op), (long long)i,
                         (long long)a[i], vs, (long long)b[i]);
        return;
    }
    const float *a = nb_data(got), *b = nb_data(want);
    for (int64_t i = 0; i < n; i++) {
        bool ok;
        if (op == NB_OP_LOGSUMEXP)
            ok = rdt_near(a[i], b[i], 0) || fabs((double)a[i] - b[i]) <= 2e-6 + 0x1p-23 * fabs(b[i]);
        else ok = rdt_near(a[i], b[i], op == NB_OP_AMAX || op == NB_OP_AMIN ? 0 : 1);
        cr_assert(ok, "%s %s [%lld]: %.9g vs %s %.9g", what, nb_op_name(op), (long long)i, a[i], vs, b[i]);
    }
}

static const int64_t rdt_lens[] = {1, 7, 15, 16, 17, 33, 1023, 4097};
#define RDT_NLENS (int)(sizeof rdt_lens / sizeof rdt_lens[0])

/* Random normal values; with ties (multiples of 0.25 in [-4, 4)) in every 3rd case. */
static inline nb_tensor *rdt_input(nb_dims shape, uint64_t seed) {
    nb_tensor *t = nb_randn(shape, NB_F32, seed);
    cr_assert_not_null(t);
    if (seed % 3 == 0) {
        float *p = nb_data(t);
        for (int64_t i = 0; i < nb_numel(t); i++) p[i] = floorf(p[i] * 4.0f) / 4.0f;
    }
    return t;
}

/* A test's check of one call: op over the dims in mask, scalar[0] corr;
 * expect 1 the kernel under test serves it, 0 it declines, -1 either. */
typedef void (*rdt_check_fn)(nb_op op, nb_tensor *in, unsigned mask, double corr, int expect, const char *what);
/* ... and of the test's core ops on one input (the same expect). */
typedef void (*rdt_check_all_fn)(nb_tensor *in, unsigned mask, int expect, const char *what);

/* Runs op over the dims in mask of in at nt threads; the kernel that served
 * it to *served. */
typedef nb_tensor *(*rdt_call_nt_fn)(nb_op op, nb_tensor *in, unsigned mask, int nt, const char **served);

/* Outer layouts with fewer OUT_CW-column blocks than threads, which
 * reduce_driver.h cuts (nb__col_width) into narrower column blocks: over dim
 * 0 of (R, C) and over dim 1 of (3, R/3, C), C from 1 to 300 columns, R
 * ~140K / C rows (work for 4 threads at the elementwise grain: 1 to 4
 * tasks at OUT_CW). Each of ops at 2, 3 and 4 threads is bitwise its result
 * at 1 thread, served by a kernel named prefix... each time. */
static inline void rdt_outer_narrow_cases(const nb_op *ops, int nops, rdt_call_nt_fn call, const char *prefix) {
    static const int64_t cols[] = {1, 17, 40, 200, 256, 300};
    static const int nts[] = {2, 3, 4};
    for (int i = 0; i < (int)(sizeof cols / sizeof cols[0]); i++) {
        nb_scope_begin();
        int64_t C = cols[i], R = 140000 / C + 7;
        nb_tensor *in2 = rdt_input(NB_SHAPE(R, C), 300 + (uint64_t)i);
        nb_tensor *in3 = rdt_input(NB_SHAPE(3, R / 3 + 1, C), 310 + (uint64_t)i);
        for (int o = 0; o < nops; o++)
            for (int v = 0; v < 2; v++) {
                nb_scope_begin();
                nb_tensor *in = v ? in3 : in2;
                unsigned mask = v ? 2u : 1u;
                size_t bytes = (size_t)(v ? 3 * C : C) * (rdt_is_arg(ops[o]) ? 8 : 4);
                const char *s;
                nb_tensor *one = call(ops[o], in, mask, 1, &s);
                cr_assert(!strncmp(s, prefix, strlen(prefix)), "%s: served by %s", nb_op_name(ops[o]), s);
                for (int t = 0; t < (int)(sizeof nts / sizeof nts[0]); t++) {
                    nb_tensor *other = call(ops[o], in, mask, nts[t], &s);
                    cr_assert(!strncmp(s, prefix, strlen(prefix)), "%s: served by %s", nb_op_name(ops[o]), s);
                    cr_assert_eq(memcmp(nb_data(one), nb_data(other), bytes), 0,
                                 "%s over dim %d of %lld columns: 1 and %d threads differ", nb_op_name(ops[o]), v,
                                 (long long)C, nts[t]);
                }
                nb_scope_end();
            }
        nb_scope_end();
    }
}

/* Merged dims: (3, 4, 5) over each set of dims (two reduced blocks, dims
 * 0 and 2, declined), and a 0-dim tensor. */
static inline void rdt_merged_cases(rdt_check_all_fn check_all) {
    nb_tensor *x = rdt_input(NB_SHAPE(3, 4, 5), 7);
    check_all(x, 7u, 1, "[3,4,5] all");
    check_all(x, 6u, 1, "[3,4,5] dims 1,2");
    check_all(x, 3u, 1, "[3,4,5] dims 0,1");
    check_all(x, 5u, 0, "[3,4,5] dims 0,2");   /* two reduced blocks: declined */
    check_all(x, 0u, 1, "[3,4,5] no dim");
    check_all(nb_randn(NB_SHAPE0, NB_F32, 3), 0u, 1, "0-dim");
}

/* Views of length L: a transposed (L, C) input (seed st) and a (6, 2 L)
 * one sliced with stride 2 (seed ss): served where the layout is one the
 * kernels take, declined otherwise. */
static inline void rdt_view_cases(rdt_check_all_fn check_all, int64_t L, int64_t C, uint64_t st, uint64_t ss) {
    nb_tensor *t = nb_transpose(rdt_input(NB_SHAPE(L, C), st), 0, 1);   /* (C, L), strides (1, C) */
    check_all(t, 1u, L > 1 ? 1 : -1, "transposed dim 0");   /* reduced dim has stride 1: rows */
    check_all(t, 2u, L > 1 ? 1 : -1, "transposed dim 1");   /* rows of C folded: outer */
    nb_tensor *s = nb_slice(rdt_input(NB_SHAPE(6, 2 * L), ss), 1, 0, 2 * L, 2);   /* stride 2 */
    check_all(s, 2u, L > 1 ? 0 : -1, "sliced dim 1");
    check_all(s, 1u, -1, "sliced dim 0");
    check_all(s, 3u, L > 1 ? 0 : -1, "sliced all");
}

/* Empty inputs: (3, 0) over dim 1 (empty slices: ref's values) and dim 0
 * (no slices), (0) whole. */
static inline void rdt_empty_cases(rdt_check_fn check, rdt_check_all_fn check_all) {
    nb_tensor *z = nb_zeros(NB_SHAPE(3, 0), NB_F32);
    check(NB_OP_SUM, z, 2u, 1, -1, "[3,0] dim 1");
    check(NB_OP_VAR, z, 2u, 1, -1, "[3,0] dim 1");
    check(NB_OP_AMAX, z, 2u, 1, -1, "[3,0] dim 1");
    check(NB_OP_ARGMAX, z, 2u, 1, -1, "[3,0] dim 1");
    check_all(z, 1u, -1, "[3,0] dim 0");
    check(NB_OP_SUM, nb_zeros(NB_SHAPE(0), NB_F32), 1u, 1, -1, "[0]");
}

/* vector_norm of order pn on (6, L) for every length (inputs from seed +
 * 3 l): rows and the whole tensor served, with a NaN in row 1 (then
 * without), +-inf in row 2, zeros in row 3, +-3e38 (squares overflow F32)
 * in row 4; dim 0 (the outer layout) declined. */
static inline void rdt_norm_cases(rdt_check_fn check, double pn, uint64_t seed) {
    for (int l = 0; l < RDT_NLENS; l++) {
        int64_t L = rdt_lens[l];
        nb_tensor *t = rdt_input(NB_SHAPE(6, L), seed + (uint64_t)l * 3);
        float *p = nb_data(t);
        p[L + (L / 2)] = NAN;                                  /* row 1 */
        p[2 * L] = INFINITY, p[2 * L + L - 1] = -INFINITY;      /* row 2 */
        for (int64_t i = 0; i < L; i++) p[3 * L + i] = 0.0f;   /* row 3 */
        p[4 * L + L / 3] = 3e38f, p[4 * L] = -3e38f;            /* row 4: squares overflow F32 */
        char what[64];
        snprintf(what, sizeof what, "norm p %g, [6,%lld] rows", pn, (long long)L);
        check(NB_OP_VECTOR_NORM, t, 2u, pn, 1, what);
        snprintf(what, sizeof what, "norm p %g, [6,%lld] all", pn, (long long)L);
        check(NB_OP_VECTOR_NORM, t, 3u, pn, 1, what);
        p[L + (L / 2)] = 1.0f;
        snprintf(what, sizeof what, "norm p %g, [6,%lld] all, no NaN", pn, (long long)L);
        check(NB_OP_VECTOR_NORM, t, 3u, pn, 1, what);
        snprintf(what, sizeof what, "norm p %g, [6,%lld] dim 0 (outer)", pn, (long long)L);
        check(NB_OP_VECTOR_NORM, t, 1u, pn, L > 1 ? 0 : -1, what);
    }
}

/* Through the public ops, with the kernels under test chosen: nb_sum_all,
 * nb_mean_all, nb_max, nb_argmax, nb_var on a (2, 3) matrix, which it
 * returns for the caller's own checks. */
static inline nb_tensor *rdt_public_ops(void) {
    const double v[] = {1, 5, 2, 5, -1, 0};
    nb_tensor *x = tu_tensor(NB_SHAPE(2, 3), NB_F32, v);
    int d1 = 1, d0 = 0;
    cr_assert_float_eq(nb_item(nb_sum_all(x)), 12.0, 1e-6);
    cr_assert_float_eq(nb_item(nb_mean_all(x)), 2.0, 1e-6);
    nb_tensor *m = nb_max(x, &d1, 1, false);
    cr_assert_float_eq(((float *)nb_data(nb_contiguous(m)))[0], 5.0, 0);
    nb_tensor *am = nb_argmax(x, 0, false);
    cr_assert_eq(((int64_t *)nb_data(nb_contiguous(am)))[1], 0);   /* column 1: 5 vs 0 */
    nb_tensor *var = nb_var(x, &d0, 1, 1.0, false);
    cr_assert_float_eq(((float *)nb_data(nb_contiguous(var)))[0], 8.0, 1e-6);   /* column 0: 1, 5 */
    return x;
}

/* Special values of `kind` (0..7) in the 20 rows of L at p, at places that
 * move with the row (every lane position over the rows): 0 two NaNs; 1 +inf
 * and -inf; 2 a tie at +inf beside a -inf; 3 whole rows of +inf / -inf in
 * turn; 4 +-3e38 (sums cancel, var overflows F32); 5 only +0, -0 and
 * denormals (1e-40, -1.4e-45: the smallest); 6 a tie at 100, then NaN
 * last; 7 only +0 and -0 (amax/amin tie at 0). */
static inline void rdt_special_rows(float *p, int64_t L, int kind) {
    for (int r = 0; r < 20; r++) {
        float *row = p + r * L;
        int64_t a = (r * 5 + 3) % L, b = (r * 11 + L / 2) % L, c = (r * 17 + 1) % L;
        switch (kind) {
        case 0: row[a] = NAN; row[b] = NAN; break;
        case 1: row[a] = INFINITY; row[b] = -INFINITY; break;
        case 2: row[a] = INFINITY; row[b] = INFINITY; row[c] = -INFINITY; break;
        case 3: for (int64_t i = 0; i < L; i++) row[i] = r % 2 ? -INFINITY : INFINITY; break;
        case 4: row[a] = 3e38f; row[b] = -3e38f; break;
        case 5:
            for (int64_t i = 0; i < L; i++)
                row[i] = (i + r) % 4 == 0 ? 0.0f : (i + r) % 4 == 1 ? -0.0f : (i + r) % 4 == 2 ? 1e-40f : -1.4e-45f;
            break;
        case 6: row[b] = 100.0f; row[a] = 100.0f; row[L - 1] = NAN; break;
        default:
            for (int64_t i = 0; i < L; i++) row[i] = (i * 7 + r) % 3 ? -0.0f : 0.0f;
            break;
        }
    }
}

#endif /* NB_TESTS_REDUCE_TESTUTIL_H */
