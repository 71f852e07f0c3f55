/* test_avx512_reduce.c — the AVX-512 reduction kernels (src/kernels/x86/
 * avx512/avx512_reduce.c) against their AVX2 twins and ref.
 *
 * Each case runs one kernel call three times through the registry on the
 * same input: with the avx512 kernels tried first (nb__isa_prefer, so they
 * serve whatever priority they are registered at; an avx512_* kernel is
 * asserted to have served the layouts it takes, and a decline is asserted
 * where the twin declines), with the ISA capped at avx2 (the twin) and at
 * ref. Errors asserted, against ref and against the twin alike (the twin's
 * own bounds, test_avx2_reduce.c): sum, var, std within 1 ULP (all three
 * accumulate in double and round once; only the order differs); amax, amin
 * equal in value (+0 and -0 compare equal: which zero wins a tie depends on
 * lanes, in the twin too); argmax, argmin exact; logsumexp within 2e-6 + 1
 * ULP of |ref| (and of the twin); vector_norm within 1 ULP (orders 1, 2),
 * equal in value (INFINITY); AMAX_BACKWARD bitwise (sign of zeros
 * included); NaN where ref has NaN, the same infinities.
 *
 * Layouts: rows (reduced dim innermost), outer ([M, N] -> [1, N] with N
 * crossing every 16-lane mask and the 64- and 256-column blocks, [B, M, N]
 * -> [B, 1, N]; sum there is bitwise ref's: each column adds its rows in
 * order), all dims (one long row, cut into blocks), merged dims, two
 * reduced blocks (declined), transposed, sliced and broadcast inputs
 * (declined or served, equal to the twin either way); lengths and row counts
 * 0, 1, 7, 15, 16, 17, 33, 1023, 4097, rows of 300000 and 1000003
 * (split over threads). Special values at every lane position: NaN, +-inf,
 * +-0, denormals, +-3e38, ties. Results do not depend on the thread count.
 * Skipped on a CPU without AVX-512 F/BW/DQ/VL.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"
#include "reduce_testutil.h"

static void r5_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
    nb__isa_prefer = -1;
}

static void r5_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    const nb_cpu_features *c = nb_cpu();
    if (!(c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl && c->avx2_fma) || nb_isa_active() < NB_ISA_AVX512)
        cr_skip("no AVX-512 on this CPU (or NB_ISA caps it)");
    nb__isa_prefer = NB_ISA_AVX512;
    nb_scope_begin();
}

TestSuite(avx512_reduce, .init = r5_setup, .fini = r5_teardown);

static const nb_op r5_ops[] = {NB_OP_SUM, NB_OP_AMAX, NB_OP_AMIN, NB_OP_ARGMAX, NB_OP_ARGMIN, NB_OP_VAR, NB_OP_STD};
#define R5_NOPS (int)(sizeof r5_ops / sizeof r5_ops[0])

/* Runs the registry with isa: "avx512" (the avx512 kernels tried first),
 * "avx2" or "ref" (the cap), at nt threads (0: all). */
static void r5_init(const char *isa, int nt) {
    bool ours = strcmp(isa, "avx512") == 0;
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = ours ? NULL : isa, .num_threads = nt, .abort_on_error = -1}), 0);
    nb__isa_prefer = ours ? NB_ISA_AVX512 : -1;
}

/* One kernel call: out (keepdim shape) = op(in) over the dims in mask, under
 * isa. The kernel that served it goes to *served. */
static nb_tensor *r5_call(nb_op op, nb_tensor *in, unsigned mask, double corr, const char *isa, int nt,
                          const char **served) {
    r5_init(isa, nt);
    nb_tensor *out = rdt_call(op, in, mask, corr, "test_avx512_reduce", served);
    r5_init("avx512", 0);
    return out;
}

/* Compares one op on one input; expect: 1 an avx512 kernel must serve it, 0
 * it must decline (and the twin's choice serve it), -1 either. cmp false
 * only runs it (sums of +-3e38 that cancel: the order of summation shows,
 * as the twin's test says). */
static void r5_check_ex(nb_op op, nb_tensor *in, unsigned mask, double corr, int expect, bool cmp,
                        const char *what) {
    nb_scope_begin();
    const char *s5, *s2, *sr;
    nb_tensor *got = r5_call(op, in, mask, corr, "avx512", 0, &s5);
    nb_tensor *twin = r5_call(op, in, mask, corr, "avx2", 0, &s2);
    nb_tensor *ref = r5_call(op, in, mask, corr, "ref", 0, &sr);
    cr_assert(strncmp(sr, "ref", 3) == 0, "%s: capped to ref, yet %s served", what, sr);
    if (expect == 1)
        cr_assert(strncmp(s5, "avx512_", 7) == 0, "%s %s: served by %s, expected avx512", what, nb_op_name(op), s5);
    if (expect == 0)
        cr_assert(strcmp(s5, s2) == 0, "%s %s: served by %s, expected a decline to %s", what, nb_op_name(op), s5, s2);
    if (expect == 1)   /* the same layout analysis: the twin serves what we serve */
        cr_assert(strncmp(s2, "avx2_", 5) == 0, "%s %s: the twin declined (%s) what avx512 served", what,
                  nb_op_name(op), s2);
    if (cmp) rdt_compare(op, got, twin, "avx2", what);
    if (cmp) rdt_compare(op, got, ref, "ref", what);
    nb_scope_end();
}
static void r5_check(nb_op op, nb_tensor *in, unsigned mask, double corr, int expect, const char *what) {
    r5_check_ex(op, in, mask, corr, expect, true, what);
}

/* The core ops (var with corrections 1 and 0). */
static void r5_check_all(nb_tensor *in, unsigned mask, int expect, const char *what) {
    for (int o = 0; o < R5_NOPS; o++) {
        r5_check_ex(r5_ops[o], in, mask, 1.0, expect, !(r5_ops[o] == NB_OP_SUM && strstr(what, "cancel")), what);
        if (r5_ops[o] == NB_OP_VAR) r5_check(r5_ops[o], in, mask, 0.0, expect, what);
    }
}

/* Rows: every row length with every row count (up to ~300000 elements). */
Test(avx512_reduce, inner_rows) {
    for (int l = 0; l < RDT_NLENS; l++)
        for (int r = 0; r < RDT_NLENS; r++) {
            int64_t L = rdt_lens[l], R = rdt_lens[r];
            if (L * R > 300000 || (L > 1 && R > 1 && (l + r) % 2)) continue;   /* half the pairs, all lengths */
            char what[64];
            snprintf(what, sizeof what, "[%lld,%lld] dim 1", (long long)R, (long long)L);
            r5_check_all(rdt_input(NB_SHAPE(R, L), 10 + (uint64_t)l * 9 + (uint64_t)r), 2u, L > 1 ? 1 : -1, what);
        }
    for (int l = 0; l < RDT_NLENS; l++) {
        int64_t L = rdt_lens[l];
        r5_check_all(rdt_input(NB_SHAPE(5, 2, L), 100 + (uint64_t)l), 4u, L > 1 ? 1 : -1, "[5,2,L] dim 2");
        r5_check_all(rdt_input(NB_SHAPE(2, L, 1), 110 + (uint64_t)l), 2u, 1, "[2,L,1] dim 1");
    }
}

/* SUM in the outer layout adds each column's rows in order in double, as
 * ref: its bits. */
static void r5_sum_bitwise(nb_tensor *in, unsigned mask, const char *what) {
    nb_scope_begin();
    const char *s5, *sr;
    nb_tensor *got = r5_call(NB_OP_SUM, in, mask, 0, "avx512", 0, &s5);
    nb_tensor *ref = r5_call(NB_OP_SUM, in, mask, 0, "ref", 0, &sr);
    cr_assert(strcmp(s5, "avx512_sum") == 0, "%s: served by %s", what, s5);
    cr_assert_eq(memcmp(nb_data(got), nb_data(ref), (size_t)nb_numel(ref) * 4), 0, "%s: sum not ref's bits", what);
    nb_scope_end();
}

/* Outer: [M, N] -> [1, N] over every column tail of the 16-lane units, the
 * 64-column register blocks and the 256-column tasks; [B, M, N] -> [B, 1, N]. */
Test(avx512_reduce, outer_rows) {
    static const int64_t ns[] = {2, 7, 15, 16, 17, 33, 63, 64, 65, 100, 255, 256, 257, 300, 1023};
    for (int l = 0; l < RDT_NLENS; l++)
        for (int j = 0; j < (int)(sizeof ns / sizeof ns[0]); j++) {
            int64_t M = rdt_lens[l], N = ns[j];
            if (M * N > 400000 || (M > 33 && j % 3 != l % 3)) continue;
            char what[64];
            snprintf(what, sizeof what, "[%lld,%lld] dim 0", (long long)M, (long long)N);
            nb_tensor *x = rdt_input(NB_SHAPE(M, N), 200 + (uint64_t)l * 16 + (uint64_t)j);
            r5_check_all(x, 1u, M > 1 ? 1 : -1, what);
            if (M > 1) r5_sum_bitwise(x, 1u, what);
            if (M * N < 50000 && j % 2) {
                snprintf(what, sizeof what, "[3,%lld,%lld] dim 1", (long long)M, (long long)N);
                r5_check_all(rdt_input(NB_SHAPE(3, M, N), 500 + (uint64_t)l * 16 + (uint64_t)j), 2u, M > 1 ? 1 : -1,
                             what);
            }
        }
}

Test(avx512_reduce, merged_and_full) {
    rdt_merged_cases(r5_check_all);
    for (int l = 0; l < RDT_NLENS; l++) r5_check_all(rdt_input(NB_SHAPE(rdt_lens[l]), 700 + (uint64_t)l), 1u, 1, "[L]");
    /* one long row: blocks combined in order (split over threads) */
    r5_check_all(rdt_input(NB_SHAPE(300000), 8), 1u, 1, "[300000]");
    r5_check_all(rdt_input(NB_SHAPE(1000003), 9), 1u, 1, "[1000003] ties");
}

/* Transposed, sliced and broadcast views: served where the layout is one
 * the kernels take, declined otherwise, equal to the twin either way. */
Test(avx512_reduce, non_contiguous) {
    for (int l = 0; l < RDT_NLENS; l++) {
        int64_t L = rdt_lens[l];
        rdt_view_cases(r5_check_all, L, 19, 800 + (uint64_t)l, 820 + (uint64_t)l);
        nb_tensor *b = nb_expand(rdt_input(NB_SHAPE(1, L), 840 + (uint64_t)l), NB_SHAPE(9, L));   /* stride 0 rows */
        r5_check_all(b, 1u, -1, "broadcast dim 0");
        r5_check_all(b, 2u, -1, "broadcast dim 1");
        r5_check_all(b, 3u, -1, "broadcast all");
    }
    /* a strided out: declined */
    nb_tensor *x = rdt_input(NB_SHAPE(4, 33), 5);
    nb_tensor *out = nb_slice(nb_empty(NB_SHAPE(8, 1), NB_F32), 0, 0, 8, 2);
    nb_kernel_args a = {.op = NB_OP_SUM, .out = out, .in = {x}, .nin = 1};
    cr_assert_eq(nb__dispatch(&a, "t"), 0);
    cr_assert(strncmp(nb__last_kernel(), "avx512_", 7) != 0, "strided out served by %s", nb__last_kernel());
}

Test(avx512_reduce, empty) {
    rdt_empty_cases(r5_check, r5_check_all);
    r5_check(NB_OP_SUM, nb_zeros(NB_SHAPE(0, 5), NB_F32), 1u, 1, -1, "[0,5] dim 0");
    r5_check_all(nb_zeros(NB_SHAPE(0, 5), NB_F32), 2u, -1, "[0,5] dim 1");   /* no rows */
    r5_check_all(nb_zeros(NB_SHAPE(0, 5), NB_F32), 3u, -1, "[0,5] all");
}

/* NaN, infinities, signed zeros, denormals, huge values and ties at chosen
 * places (every lane position over the rows) of rows of several lengths, in
 * the inner, outer and full layouts. */
Test(avx512_reduce, special_values) {
    static const int64_t lens[] = {7, 17, 33, 65, 1023, 20000};
    for (int l = 0; l < 6; l++) {
        int64_t L = lens[l];
        for (int kind = 0; kind < 8; kind++) {
            nb_tensor *t = rdt_input(NB_SHAPE(20, L), 900 + (uint64_t)l * 8 + (uint64_t)kind);
            rdt_special_rows(nb_data(t), L, kind);
            char what[80];
            const char *tag = kind == 4 ? " cancel" : "";
            snprintf(what, sizeof what, "special %d%s, L %lld, inner", kind, tag, (long long)L);
            r5_check_all(t, 2u, 1, what);
            snprintf(what, sizeof what, "special %d%s, L %lld, outer", kind, tag, (long long)L);
            r5_check_all(t, 1u, 1, what);
            snprintf(what, sizeof what, "special %d%s, L %lld, all", kind, tag, (long long)L);
            r5_check_all(t, 3u, 1, what);
        }
    }
}

/* The same call at 1 and 2 threads: bit-identical (rows, outer column
 * blocks, one long row in blocks). */
Test(avx512_reduce, thread_count_independent) {
    nb_tensor *big = rdt_input(NB_SHAPE(1000003), 77), *mat = rdt_input(NB_SHAPE(512, 700), 78);
    for (int o = 0; o < R5_NOPS + 2; o++) {
        nb_op op = o < R5_NOPS ? r5_ops[o] : o == R5_NOPS ? NB_OP_LOGSUMEXP : NB_OP_VECTOR_NORM;
        for (unsigned mask = 1; mask <= 4; mask++) {
            nb_tensor *in = mask == 4 ? big : mat;
            unsigned m = mask == 4 ? 1u : mask;
            if ((op == NB_OP_LOGSUMEXP || op == NB_OP_VECTOR_NORM) && m == 1 && in == mat)
                continue;   /* inner layouts only */
            const char *s1, *s2;
            nb_tensor *one = r5_call(op, in, m, 2.0, "avx512", 1, &s1);
            nb_tensor *two = r5_call(op, in, m, 2.0, "avx512", 2, &s2);
            cr_assert(strncmp(s1, "avx512_", 7) == 0 && strncmp(s2, "avx512_", 7) == 0, "%s: served by %s, %s",
                      nb_op_name(op), s1, s2);
            cr_assert_eq(memcmp(nb_data(one), nb_data(two), (size_t)nb_numel(one) * (rdt_is_arg(op) ? 8 : 4)), 0,
                         "%s mask %u: results differ between 1 and 2 threads", nb_op_name(op), mask);
        }
    }
}

static nb_tensor *r5_call_nt(nb_op op, nb_tensor *in, unsigned mask, int nt, const char **served) {
    return r5_call(op, in, mask, 2.0, "avx512", nt, served);
}

/* Outer layouts cut into narrower column blocks when the OUT_CW ones are
 * fewer than the threads (reduce_driver.h, nb__col_width): bit-identical at
 * 1, 2, 3 and 4 threads. */
Test(avx512_reduce, outer_narrow_blocks_thread_independent) {
    rdt_outer_narrow_cases(r5_ops, R5_NOPS, r5_call_nt, "avx512_");
}

/* Through the public ops, with the avx512 kernels first: nb_sum, nb_mean
 * (SUM, then MUL_SCALAR), nb_max, nb_argmax, nb_var, nb_std. */
Test(avx512_reduce, public_ops) {
    nb_tensor *x = rdt_public_ops();
    int d1 = 1, d0 = 0;
    nb_tensor *mc = nb_contiguous(nb_mean(x, &d0, 1, false));
    cr_assert_float_eq(((float *)nb_data(mc))[0], 3.0, 1e-6);
    cr_assert_float_eq(((float *)nb_data(mc))[2], 1.0, 1e-6);
    nb_tensor *sd = nb_std(x, &d1, 1, 0.0, false);
    cr_assert_float_eq(((float *)nb_data(nb_contiguous(sd)))[0], sqrt(26.0 / 9.0), 1e-6);   /* 1, 5, 2 */
    /* the kernel behind nb_mean is SUM's: avx512 serves it */
    nb_tensor *big = rdt_input(NB_SHAPE(64, 100), 4);
    nb_kernel_args a = {.op = NB_OP_SUM, .out = nb_empty(NB_SHAPE(64, 1), NB_F32), .in = {big}, .nin = 1};
    cr_assert_eq(nb__dispatch(&a, "t"), 0);
    cr_assert_str_eq(nb__last_kernel(), "avx512_sum");
}

/* logsumexp: rows and one long row (blocks) served, the outer layout
 * declined; wide ranges far from 0, e^88 terms that overflow F32 unless
 * shifted, NaN, +-inf, empty rows. */
Test(avx512_reduce, logsumexp) {
    for (int l = 0; l < RDT_NLENS; l++)
        for (int r = 0; r < 3; r++) {
            int64_t L = rdt_lens[l], R = r == 0 ? 1 : r == 1 ? 5 : 17;
            nb_tensor *t = rdt_input(NB_SHAPE(R, L), 1000 + (uint64_t)l * 3 + (uint64_t)r);
            float *p = nb_data(t);
            for (int64_t i = 0; i < L; i++) p[i] = p[i] * 30.0f - 50.0f;   /* row 0: wide range, far from 0 */
            if (R > 4) p[2 * L + L / 2] = NAN, p[3 * L] = INFINITY, p[4 * L + L - 1] = -INFINITY;
            char what[64];
            snprintf(what, sizeof what, "lse [%lld,%lld] dim 1", (long long)R, (long long)L);
            r5_check(NB_OP_LOGSUMEXP, t, 2u, 0, 1, what);
            snprintf(what, sizeof what, "lse [%lld,%lld] all", (long long)R, (long long)L);
            r5_check(NB_OP_LOGSUMEXP, t, 3u, 0, 1, what);
            snprintf(what, sizeof what, "lse [%lld,%lld] dim 0", (long long)R, (long long)L);
            r5_check(NB_OP_LOGSUMEXP, t, 1u, 0, R > 1 && L > 1 ? 0 : -1, what);
        }
    r5_check(NB_OP_LOGSUMEXP, rdt_input(NB_SHAPE(1000003), 9), 1u, 0, 1, "lse [1000003]");
    r5_check(NB_OP_LOGSUMEXP, nb_zeros(NB_SHAPE(3, 0), NB_F32), 2u, 0, -1, "lse [3,0] dim 1");
    nb_tensor *big = nb_full(NB_SHAPE(40000), NB_F32, 88.0);   /* e^88 * 40000 overflows F32 unless shifted */
    r5_check(NB_OP_LOGSUMEXP, big, 1u, 0, 1, "lse [40000] of 88");
    ((float *)nb_data(big))[39999] = INFINITY;
    r5_check(NB_OP_LOGSUMEXP, big, 1u, 0, 1, "lse [40000] +inf last");
    nb_tensor *ninf = nb_full(NB_SHAPE(3, 70), NB_F32, -INFINITY);
    r5_check(NB_OP_LOGSUMEXP, ninf, 2u, 0, 1, "lse all -inf");
}

/* vector_norm (orders 1, 2, INFINITY in scalar[0]): rows and whole tensors
 * served; the outer layout and other orders declined; NaN, +-inf, zeros,
 * squares that overflow F32 (3e38: the sums are in double). */
Test(avx512_reduce, vector_norm) {
    static const double ords[] = {1, 2, INFINITY};
    for (int o = 0; o < 3; o++) {
        double pn = ords[o];
        rdt_norm_cases(r5_check, pn, 1100 + (uint64_t)o);
        r5_check(NB_OP_VECTOR_NORM, rdt_input(NB_SHAPE(1000003), 90 + (uint64_t)o), 1u, pn, 1, "norm [1000003]");
        if (pn != INFINITY) r5_check(NB_OP_VECTOR_NORM, nb_zeros(NB_SHAPE(3, 0), NB_F32), 2u, pn, -1, "norm [3,0]");
    }
    r5_check(NB_OP_VECTOR_NORM, rdt_input(NB_SHAPE(4, 33), 7), 2u, 3.0, 0, "norm p 3");   /* not ours */
}

/* An AMAX_BACKWARD call: out (x's shape) from x and r, under isa. */
static nb_tensor *r5_bw(const nb_tensor *x, const nb_tensor *r, unsigned mask, const char *isa, const char **served) {
    r5_init(isa, 0);
    nb_tensor *out = nb__new("test", NB_DTYPE_F32, nb_ndim(x), nb_shape(x));
    cr_assert_not_null(out);
    nb_kernel_args a = {.op = NB_OP_AMAX_BACKWARD, .out = out, .in = {x, r}, .nin = 2, .scalar = {(double)mask}};
    cr_assert_eq(nb__dispatch(&a, "test_avx512_reduce"), 0, "%s", nb_last_error());
    *served = nb__last_kernel();
    r5_init("avx512", 0);
    return nb__scoped(out);
}

/* AMAX_BACKWARD: rows and whole tensors served, bitwise ref's and the
 * twin's: ties (values in quarters), a NaN row (NaN everywhere), a row with
 * no element equal to r; the outer layout declined. */
Test(avx512_reduce, amax_backward) {
    for (int l = 0; l < RDT_NLENS; l++)
        for (int rr = 0; rr < 2; rr++) {
            int64_t L = rdt_lens[l], R = rr ? 6 : 17;
            nb_tensor *x = rdt_input(NB_SHAPE(R, L), 3 * (uint64_t)l + 3);   /* seed % 3 == 0: ties */
            ((float *)nb_data(x))[2 * L + L / 2] = NAN;
            for (unsigned mask = 1; mask <= 3; mask++) {
                int64_t ks[2] = {mask & 1 ? 1 : R, mask & 2 ? 1 : L};
                nb_tensor *r = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, ks));
                nb_kernel_args am = {.op = NB_OP_AMAX, .out = r, .in = {x}, .nin = 1};
                cr_assert_eq(nb__dispatch(&am, "t"), 0);
                if (mask == 2) ((float *)nb_data(r))[1] = 1e30f;   /* row 1: nothing equals r */
                const char *s5, *s2, *sr;
                nb_tensor *got = r5_bw(x, r, mask, "avx512", &s5), *twin = r5_bw(x, r, mask, "avx2", &s2),
                          *ref = r5_bw(x, r, mask, "ref", &sr);
                int expect = mask == 1 && L > 1 ? 0 : 1;   /* dim 0 of (R, L): the outer layout */
                if (expect) cr_assert(strcmp(s5, "avx512_amax_backward") == 0, "L %lld mask %u: served by %s",
                                      (long long)L, mask, s5);
                else cr_assert(strcmp(s5, s2) == 0, "L %lld mask %u: served by %s, not %s", (long long)L, mask, s5, s2);
                cr_assert(strncmp(sr, "ref", 3) == 0);
                cr_assert_eq(memcmp(nb_data(got), nb_data(ref), (size_t)nb_numel(x) * 4), 0,
                             "amax_backward L %lld R %lld mask %u: differs from ref", (long long)L, (long long)R, mask);
                cr_assert_eq(memcmp(nb_data(got), nb_data(twin), (size_t)nb_numel(x) * 4), 0,
                             "amax_backward L %lld R %lld mask %u: differs from avx2", (long long)L, (long long)R, mask);
            }
        }
}
