/* test_avx2_reduce.c — the AVX2 reduction kernels (src/kernels/x86/avx2/
 * avx2_reduce.c) against the ref kernels.
 *
 * Each case runs one kernel call twice through the registry on the same
 * input: as nabla chooses (the avx2 kernel, asserted to have served it when
 * the layout is one it handles, ref otherwise) and with the ISA capped to
 * ref. Errors asserted: sum, var, std within 1 ULP of ref (both accumulate in
 * double and round once; only the order differs, which moves the double
 * result by at most n * 2^-53 * sum|x|: invisible in F32 unless the sum
 * cancels catastrophically, as +3e38 - 3e38 + small, which is not asserted);
 * amax, amin, argmax, argmin exact; logsumexp (F32 exps within 1 ULP,
 * summed in F32 blocks of 16 terms a lane emptied into double: the sum's
 * relative error, <= ~1.2e-6, becomes an absolute error of the log) within
 * 2e-6 + 1 ULP of |ref|; vector_norm within 1 ULP (orders 1, 2) or exact
 * (INFINITY); the backward of max (over dims, along a dim) bitwise; NaN
 * where ref has NaN, the same infinities.
 *
 * Layouts: the reduced dim innermost (rows), outermost ([M, N] -> [1, N]),
 * in the middle, all dims (one long row, cut into blocks), merged dims,
 * transposed and sliced inputs (declined or served, always right), size 0
 * and 1; lengths 1, 7, 15, 16, 17, 33, 1023, 4097 and 300000. Special
 * values at every lane position: NaN, +-inf, +-0, denormals, +-3e38, ties.
 * Results do not depend on the thread count.
 * Skipped when the CPU lacks AVX2+FMA (or NB_ISA caps it).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"
#include "reduce_testutil.h"

/* Capped at avx2 for the whole test (each runs in its own process): on an
 * AVX-512 CPU the AVX-512 twins would serve first, and NB_ISA_PREFER (the
 * isa_avx512 setup) would put them first anyway. */
static void rd_setup(void) {
    setenv("NB_ISA", "avx2", 1);
    unsetenv("NB_ISA_PREFER");
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}
static void rd_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(avx2_reduce, .init = rd_setup, .fini = rd_teardown);

static void rd_need(void) {
    const char *k = nb_kernel_chosen(NB_OP_SUM, NB_F32);
    if (!nb_cpu()->avx2_fma || !k || strncmp(k, "avx2", 4)) cr_skip("avx2 reductions not chosen (%s)", k ? k : "none");
}

static const nb_op rd_ops[] = {NB_OP_SUM, NB_OP_AMAX,   NB_OP_AMIN, NB_OP_ARGMAX,
                               NB_OP_ARGMIN, NB_OP_VAR, NB_OP_STD,  NB_OP_LOGSUMEXP};
#define RD_NOPS (int)(sizeof rd_ops / sizeof rd_ops[0])

/* One kernel call: out (keepdim shape) = op(in) over the dims in mask. The
 * kernel that served it goes to *served. */
static nb_tensor *rd_call(nb_op op, nb_tensor *in, unsigned mask, double corr, const char **served) {
    return rdt_call(op, in, mask, corr, "test_avx2_reduce", served);
}

static nb_tensor *rd_call_ref(nb_op op, nb_tensor *in, unsigned mask, double corr) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "ref", .abort_on_error = -1}), 0);
    const char *k;
    nb_tensor *r = rd_call(op, in, mask, corr, &k);
    cr_assert(strncmp(k, "ref", 3) == 0, "capped to ref, yet %s served", k);
    cr_assert_eq(nb_init(NULL), 0);
    return r;
}

/* Compares one op on one input; expect: 1 the avx2 kernel must serve it, 0
 * ref must (declined), -1 either. */
static void rd_check(nb_op op, nb_tensor *in, unsigned mask, double corr, int expect, const char *what) {
    nb_scope_begin();
    const char *served;
    nb_tensor *got = rd_call(op, in, mask, corr, &served);
    if (expect == 1)
        cr_assert(strncmp(served, "avx2", 4) == 0, "%s %s: served by %s, expected avx2", what, nb_op_name(op), served);
    if (expect == 0)
        cr_assert(strncmp(served, "ref", 3) == 0, "%s %s: served by %s, expected a decline", what, nb_op_name(op),
                  served);
    rdt_compare(op, got, rd_call_ref(op, in, mask, corr), "ref", what);
    nb_scope_end();
}

static void rd_check_all(nb_tensor *in, unsigned mask, int expect, const char *what) {
    for (int o = 0; o < RD_NOPS; o++) {
        /* sums of +-3e38 cancel: the order of summation shows (see the top) */
        if (rd_ops[o] == NB_OP_SUM && strstr(what, "special 4")) continue;
        /* logsumexp serves the inner layout only (asserted in its own test) */
        rd_check(rd_ops[o], in, mask, 1.0, rd_ops[o] == NB_OP_LOGSUMEXP && expect == 1 ? -1 : expect, what);
        if (rd_ops[o] == NB_OP_VAR) rd_check(rd_ops[o], in, mask, 0.0, expect, what);
    }
}

Test(avx2_reduce, inner_rows) {
    rd_need();
    nb_scope_begin();
    for (int l = 0; l < RDT_NLENS; l++) {
        int64_t L = rdt_lens[l];
        rd_check_all(rdt_input(NB_SHAPE(L), 10 + l), 1u, 1, "[L] all");
        rd_check_all(rdt_input(NB_SHAPE(3, L), 20 + l), 2u, 1, "[3,L] dim 1");
        rd_check_all(rdt_input(NB_SHAPE(5, 2, L), 30 + l), 4u, 1, "[5,2,L] dim 2");
        rd_check_all(rdt_input(NB_SHAPE(2, L, 1), 40 + l), 2u, 1, "[2,L,1] dim 1");
    }
    nb_scope_end();
}

Test(avx2_reduce, outer_rows) {
    rd_need();
    nb_scope_begin();
    static const int64_t ns[] = {1, 7, 33, 300};   /* 300 crosses a column block */
    for (int l = 0; l < RDT_NLENS; l++)
        for (int j = 0; j < 4; j++) {
            int64_t L = rdt_lens[l], N = ns[j];
            if (L * N > 400000) continue;
            rd_check_all(rdt_input(NB_SHAPE(L, N), 50 + l * 4 + j), 1u, N > 1 ? 1 : -1, "[L,N] dim 0");
            if (L * N < 50000)
                rd_check_all(rdt_input(NB_SHAPE(4, L, N), 90 + l * 4 + j), 2u, N > 1 ? 1 : -1, "[4,L,N] dim 1");
        }
    nb_scope_end();
}

Test(avx2_reduce, merged_and_full) {
    rd_need();
    nb_scope_begin();
    rdt_merged_cases(rd_check_all);
    /* one long row: blocks combined in order (sum over 300000 in double) */
    rd_check_all(rdt_input(NB_SHAPE(300000), 8), 1u, 1, "[300000]");
    rd_check_all(rdt_input(NB_SHAPE(300001), 9), 1u, 1, "[300001] ties");
    nb_scope_end();
}

Test(avx2_reduce, non_contiguous) {
    rd_need();
    nb_scope_begin();
    for (int l = 0; l < RDT_NLENS; l++)   /* (9, L) transposed, (6, 2 L) sliced */
        rdt_view_cases(rd_check_all, rdt_lens[l], 9, 200 + (uint64_t)l, 300 + (uint64_t)l);
    nb_scope_end();
}

Test(avx2_reduce, empty) {
    rd_need();
    nb_scope_begin();
    rdt_empty_cases(rd_check, rd_check_all);
    nb_scope_end();
}

/* NaN, infinities, signed zeros, denormals, huge values and ties at chosen
 * places (every lane position over the 20 rows) of rows of several lengths
 * (8-lane tails, 65: a 64-column block and one more, 20000: blocks), in
 * the inner, outer and full layouts, as test_avx512_reduce.c: every op of
 * rd_ops (logsumexp too, where it serves) against ref under the bounds at
 * the top. Kinds: 0 two NaN; 1 +inf and -inf; 2 a tie at +inf and a -inf;
 * 3 rows all +inf or all -inf (alternating: the outer and full layouts mix
 * them); 4 +-3e38 (sums cancel: sum not compared; var overflows F32); 5
 * only +0, -0 and denormals (1e-40, -1.4e-45: the smallest); 6 a tie at
 * 100, then NaN last; 7 only +0 and -0 (amax/amin tie at 0: equal in value,
 * as rdt_compare takes it; argmax/argmin exactly ref's index). */
Test(avx2_reduce, special_values) {
    rd_need();
    nb_scope_begin();
    static const int64_t lens[] = {7, 17, 33, 65, 1023, 20000};
    for (int l = 0; l < 6; l++) {
        int64_t L = lens[l];
        for (int kind = 0; kind < 8; kind++) {
            nb_tensor *t = rdt_input(NB_SHAPE(20, L), 400 + (uint64_t)l * 8 + (uint64_t)kind);
            rdt_special_rows(nb_data(t), L, kind);
            char what[64];   /* "special 4" is the cancelling kind: rd_check_all skips its sum */
            snprintf(what, sizeof what, "special %d, L %lld, inner", kind, (long long)L);
            rd_check_all(t, 2u, 1, what);
            snprintf(what, sizeof what, "special %d, L %lld, outer", kind, (long long)L);
            rd_check_all(t, 1u, 1, what);
            snprintf(what, sizeof what, "special %d, L %lld, all", kind, (long long)L);
            rd_check_all(t, 3u, 1, what);
        }
    }
    nb_scope_end();
}

/* logsumexp: the avx2 kernel serves rows (reduced dims of stride 1, one
 * long row cut in blocks) and declines the outer layout. */
Test(avx2_reduce, logsumexp_layouts) {
    rd_need();
    nb_scope_begin();
    for (int l = 0; l < RDT_NLENS; l++) {
        int64_t L = rdt_lens[l];
        nb_tensor *t = rdt_input(NB_SHAPE(5, L), 500 + l);
        float *p = nb_data(t);
        for (int64_t i = 0; i < L; i++) p[i] = p[i] * 30.0f - 50.0f;   /* row 0: wide range, far from 0 */
        rd_check(NB_OP_LOGSUMEXP, t, 2u, 0, 1, "[5,L] dim 1");
        rd_check(NB_OP_LOGSUMEXP, t, 3u, 0, 1, "[5,L] all");
        rd_check(NB_OP_LOGSUMEXP, t, 1u, 0, L > 1 ? 0 : -1, "[5,L] dim 0 (outer)");
    }
    rd_check(NB_OP_LOGSUMEXP, rdt_input(NB_SHAPE(1000003), 9), 1u, 0, 1, "[1000003]");
    rd_check(NB_OP_LOGSUMEXP, nb_zeros(NB_SHAPE(3, 0), NB_F32), 2u, 0, -1, "[3,0] dim 1");
    nb_tensor *big = nb_full(NB_SHAPE(40000), NB_F32, 88.0);   /* e^88 * 40000 overflows F32 unless shifted */
    rd_check(NB_OP_LOGSUMEXP, big, 1u, 0, 1, "[40000] of 88");
    ((float *)nb_data(big))[39999] = INFINITY;
    rd_check(NB_OP_LOGSUMEXP, big, 1u, 0, 1, "[40000] +inf last");
    nb_scope_end();
}

/* vector_norm (orders 1, 2, INFINITY in scalar[0]): rows and whole tensors
 * served, within 1 ULP of ref (exact for INFINITY: a max); the outer layout
 * and other orders declined; NaN, +-inf, zeros, values whose squares
 * overflow F32 (3e38: the sums are in double), empty rows; the same bits at
 * 1 thread and at all threads. */
Test(avx2_reduce, vector_norm) {
    rd_need();
    nb_scope_begin();
    static const double ords[] = {1, 2, INFINITY};
    for (int o = 0; o < 3; o++) {
        double pn = ords[o];
        rdt_norm_cases(rd_check, pn, 600 + (uint64_t)o);
        nb_tensor *big = rdt_input(NB_SHAPE(1000003), 90 + (uint64_t)o);
        rd_check(NB_OP_VECTOR_NORM, big, 1u, pn, 1, "norm [1000003]");
        cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 1, .abort_on_error = -1}), 0);
        nb_tensor *one = rd_call(NB_OP_VECTOR_NORM, big, 1u, pn, NULL);
        cr_assert_eq(nb_init(NULL), 0);
        nb_tensor *all = rd_call(NB_OP_VECTOR_NORM, big, 1u, pn, NULL);
        cr_assert(((float *)nb_data(one))[0] == ((float *)nb_data(all))[0], "norm p %g: 1 thread %.9g, all %.9g", pn,
                  ((float *)nb_data(one))[0], ((float *)nb_data(all))[0]);
        if (pn != INFINITY) rd_check(NB_OP_VECTOR_NORM, nb_zeros(NB_SHAPE(3, 0), NB_F32), 2u, pn, -1, "norm [3,0]");
    }
    const char *served;
    rd_call(NB_OP_VECTOR_NORM, rdt_input(NB_SHAPE(4, 33), 7), 2u, 3.0, &served);   /* order 3: not ours */
    cr_assert(strncmp(served, "ref", 3) == 0, "vector_norm p 3 served by %s, expected a decline", served);
    nb_scope_end();
}

/* A backward call: out (in[0]'s full shape) from in[0], in[1]; served by. */
static nb_tensor *rd_bw(nb_op op, const nb_tensor *full, const nb_tensor *i0, const nb_tensor *i1, unsigned mask,
                        const char *isa, const char **served) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0);
    nb_tensor *out = nb__new("test", NB_DTYPE_F32, nb_ndim(full), nb_shape(full));
    cr_assert_not_null(out);
    nb_kernel_args a = {.op = op, .out = out, .in = {i0, i1}, .nin = 2, .scalar = {(double)mask}};
    cr_assert_eq(nb__dispatch(&a, "test_avx2_reduce"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    cr_assert_eq(nb_init(NULL), 0);
    return nb__scoped(out);
}

static void rd_bw_check(nb_op op, const nb_tensor *full, const nb_tensor *i0, const nb_tensor *i1, unsigned mask,
                        int expect, const char *what) {
    const char *k1, *k2;
    nb_tensor *got = rd_bw(op, full, i0, i1, mask, NULL, &k1), *ref = rd_bw(op, full, i0, i1, mask, "ref", &k2);
    cr_assert(strncmp(k2, "ref", 3) == 0, "%s: capped run served by %s", what, k2);
    if (expect == 1) cr_assert(strncmp(k1, "avx2", 4) == 0, "%s: served by %s, expected avx2", what, k1);
    if (expect == 0) cr_assert(strncmp(k1, "ref", 3) == 0, "%s: served by %s, expected a decline", what, k1);
    const float *a = nb_data(got), *b = nb_data(ref);
    for (int64_t i = 0; i < nb_numel(ref); i++)
        cr_assert(rdt_near(a[i], b[i], 0) && signbit(a[i]) == signbit(b[i]), "%s [%lld]: %a vs ref %a", what,
                  (long long)i, (double)a[i], (double)b[i]);
}

/* AMAX_BACKWARD and MAX_DIM_BACKWARD: rows (and whole tensors) served,
 * bitwise ref's: ties (values in quarters), a NaN row (NaN everywhere for
 * amax), g broadcast (stride 0) or strided as max_dim's values; the outer layout
 * declined; an index outside the slice is NB_ERANGE. */
Test(avx2_reduce, max_backward_kernels) {
    rd_need();
    nb_scope_begin();
    for (int l = 0; l < RDT_NLENS; l++) {
        int64_t L = rdt_lens[l];
        nb_tensor *x = rdt_input(NB_SHAPE(6, L), 3 * (uint64_t)l + 3);   /* seed % 3 == 0: ties */
        ((float *)nb_data(x))[2 * L + L / 2] = NAN;
        for (unsigned mask = 1; mask <= 3; mask++) {
            int64_t ks[2] = {mask & 1 ? 1 : 6, mask & 2 ? 1 : L};
            nb_tensor *r = nb__new("test", NB_DTYPE_F32, 2, ks), *ix = nb__new("test", NB_DTYPE_I64, 2, ks);
            nb_kernel_args am = {.op = NB_OP_AMAX, .out = r, .in = {x}, .nin = 1};
            nb_kernel_args ag = {.op = NB_OP_ARGMAX, .out = ix, .in = {x}, .nin = 1};
            cr_assert_eq(nb__dispatch(&am, "t"), 0);
            cr_assert_eq(nb__dispatch(&ag, "t"), 0);
            r = nb__scoped(r), ix = nb__scoped(ix);
            nb_tensor *v = nb_randn(nb_dims_of(2, ks), NB_F32, 40 + mask);
            nb_tensor *vb = nb_expand(nb_scalar(0.75), nb_dims_of(2, ks));
            nb_tensor *vs = nb_slice(nb_randn(NB_SHAPE(ks[0], 2 * ks[1]), NB_F32, 50 + mask), 1, 0, 2 * ks[1], 2);
            int expect = mask == 1 && L > 1 ? 0 : 1;   /* dim 0 of (6, L): the outer layout */
            char what[64];
            snprintf(what, sizeof what, "amax_backward L %lld mask %u", (long long)L, mask);
            rd_bw_check(NB_OP_AMAX_BACKWARD, x, x, r, mask, expect, what);
            snprintf(what, sizeof what, "max_dim_backward L %lld mask %u", (long long)L, mask);
            rd_bw_check(NB_OP_MAX_DIM_BACKWARD, x, v, ix, mask, expect, what);
            snprintf(what, sizeof what, "max_dim_backward, broadcast g, L %lld mask %u", (long long)L, mask);
            rd_bw_check(NB_OP_MAX_DIM_BACKWARD, x, vb, ix, mask, expect, what);
            snprintf(what, sizeof what, "max_dim_backward, strided g, L %lld mask %u", (long long)L, mask);
            rd_bw_check(NB_OP_MAX_DIM_BACKWARD, x, vs, ix, mask, expect, what);
        }
    }
    /* an index outside the slice */
    nb_tensor *x = rdt_input(NB_SHAPE(3, 9), 5), *v = nb_ones(NB_SHAPE(3, 1), NB_F32);
    const int64_t bad[3] = {0, 9, 2};
    nb_tensor *ix = nb_from_data(NB_SHAPE(3, 1), NB_I64, bad);
    nb_tensor *out = nb_full(NB_SHAPE(3, 9), NB_F32, 7.0);
    nb_kernel_args a = {.op = NB_OP_MAX_DIM_BACKWARD, .out = out, .in = {v, ix}, .nin = 2, .scalar = {2.0}};
    cr_assert_eq(nb__dispatch(&a, "t"), NB_ERANGE, "an index of 9 in a slice of 9");
    cr_assert_eq(((float *)nb_data(out))[0], 7.0f, "nothing written before the error");
    (void)x;
    nb_scope_end();
}

/* The same call with 1 thread and with all threads: bit-identical. */
Test(avx2_reduce, thread_count_independent) {
    rd_need();
    nb_scope_begin();
    nb_tensor *big = rdt_input(NB_SHAPE(1000003), 77), *mat = rdt_input(NB_SHAPE(512, 700), 78);
    for (int o = 0; o < RD_NOPS; o++)
        for (unsigned mask = 1; mask <= 3; mask++) {
            nb_tensor *in = mask == 1 && o % 2 ? big : mat;
            cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 1, .abort_on_error = -1}), 0);
            nb_tensor *one = rd_call(rd_ops[o], in, in == big ? 1u : mask, 1.0, NULL);
            cr_assert_eq(nb_init(NULL), 0);
            nb_tensor *all = rd_call(rd_ops[o], in, in == big ? 1u : mask, 1.0, NULL);
            cr_assert_eq(memcmp(nb_data(one), nb_data(all), (size_t)nb_numel(one) * (rdt_is_arg(rd_ops[o]) ? 8 : 4)),
                         0, "%s mask %u: results differ between 1 and all threads", nb_op_name(rd_ops[o]), mask);
        }
    nb_scope_end();
}

static nb_tensor *rd_call_nt(nb_op op, nb_tensor *in, unsigned mask, int nt, const char **served) {
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = nt, .abort_on_error = -1}), 0);
    nb_tensor *r = rd_call(op, in, mask, 2.0, served);
    cr_assert_eq(nb_init(NULL), 0);
    return r;
}

/* Outer layouts cut into narrower column blocks when the OUT_CW ones are
 * fewer than the threads (reduce_driver.h, nb__col_width): bit-identical at
 * 1, 2, 3 and 4 threads (LOGSUMEXP, inner layouts only, left out). */
Test(avx2_reduce, outer_narrow_blocks_thread_independent) {
    rd_need();
    rdt_outer_narrow_cases(rd_ops, RD_NOPS - 1, rd_call_nt, "avx2_");
}

/* Through the public ops: nb_sum / nb_mean / nb_max / nb_argmax / nb_var
 * keep working with the avx2 kernels chosen. */
Test(avx2_reduce, public_ops) {
    rd_need();
    nb_scope_begin();
    nb_tensor *x = rdt_public_ops();
    int d1 = 1;
    nb_tensor *lse = nb_contiguous(nb_logsumexp(x, &d1, 1, false));
    cr_assert_float_eq(((float *)nb_data(lse))[0], log(exp(1.0) + exp(5.0) + exp(2.0)), 2e-6);
    cr_assert_float_eq(((float *)nb_data(lse))[1], log(exp(5.0) + exp(-1.0) + exp(0.0)), 2e-6);
    nb_scope_end();
}
