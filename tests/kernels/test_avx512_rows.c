/* test_avx512_rows.c — the AVX-512 row kernels (src/kernels/x86/avx512/
 * avx512_rows.c): softmax, log_softmax and their backwards, cross entropy
 * and its backward, nll_loss_backward.
 *
 * Each case runs one kernel call three times through the registry on the
 * same inputs: with the avx512 kernels tried first (nb__isa_prefer; the
 * kernel that served is asserted: avx512_* where the layout is one the
 * kernels take, ref where they and the AVX2 twins decline), capped to avx2
 * (the twin) and capped to ref. Per element, against ref and against the
 * twin, |avx512 - other| <= rtol |other| + atol * (max |other| of that row;
 * of cross entropy's loss the batch), NaN exactly where the other has NaN
 * and the same infinities, and |avx512 - other| within a number of ULPs of
 * that max. (rtol, atol; ULPs) are test_avx2_rows.c's (rows_testutil.h's
 * rows_tol_of; the ULPs 1.5x or more the worst measured, here or there):
 *   softmax 4e-6, 1e-6; 8            log_softmax 2e-6, 1e-6; 8
 *   softmax_bwd 1e-5, 1e-4; 2048     log_softmax_bwd 1e-5, 1e-5; 64
 *   cross_entropy 1e-5, 1e-6; 4      cross_entropy_bwd 1e-5, 1e-5; 512
 * (e^x within 2 ULP, bitwise the twin's per lane; row sums in F32, 8 terms
 * a lane per block of 512 emptied into double, relative error ~1e-6 of sum
 * |terms|; ref is double rounded once. The sums add in another order than
 * the twin's, so avx512 and avx2 differ in their last bits, not bitwise.)
 * An element beyond the bound against ref passes (rtol/atol and ULPs) only
 * where the twin's own error is at least half as large: the twin's bound
 * does not cover rows where one class holds nearly all the mass (g - s and
 * p - 1 cancel, the F32 sum's rounding shows; seen on some of the 4097 rows
 * of 16 and 33, up to 9x the tolerance, 2332 ULPs for softmax_bwd and 2521
 * for cross_entropy_bwd, the avx512 result bitwise the twin's there; for
 * the same reason those two ULP bounds are no tighter than rtol/atol).
 * Where a row's max is not finite both take ref's double formulas: those
 * rows are bitwise the twin's. nll_loss_backward: bitwise ref and the twin.
 * Declined layouts (strided rows, transposed, broadcast gradients): served
 * by ref, bitwise ref's.
 *
 * Sizes 0, 1, 7, 15, 16, 17, 33, 1023, 4097 as row length (at several row
 * counts) and as row count (at several lengths); special values (+-inf,
 * NaN, +-0, denormals, 1e10, +-3e38); outputs of 1M floats and more
 * (streaming stores: 64-byte aligned rows, 32-byte aligned rows with an
 * 8-float head, rows with n % 16 == 8) at 1 and 2 threads, bitwise equal.
 * Skipped when the CPU lacks AVX-512 F/BW/DQ/VL.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "rows_testutil.h"
#include "testutil.h"

static void r5_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    const nb_cpu_features *c = nb_cpu();
    if (!(c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl && c->avx2_fma))
        cr_skip("no AVX-512 on this CPU");
    nb__isa_prefer = NB_ISA_AVX512;   /* after nb_init, which resets it */
    nb_scope_begin();
}
static void r5_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb__isa_prefer = -1;
    nb_init(NULL);
}
TestSuite(avx512_rows, .init = r5_setup, .fini = r5_teardown);

static const int64_t r5_sizes[] = {0, 1, 7, 15, 16, 17, 33, 1023, 4097};
#define R5_NSIZES (int)(sizeof r5_sizes / sizeof r5_sizes[0])

/* The registry's run modes: avx512 first, capped to avx2, capped to ref. */
enum { R5_AVX512, R5_AVX2, R5_REF };

static void r5_mode(int mode, int threads) {
    static const char *isa[] = {"avx512", "avx2", "ref"};   /* explicit: NB_ISA in the environment may cap lower */
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads, .isa = isa[mode], .abort_on_error = -1}), 0, "%s",
                 nb_last_error());
    nb__isa_prefer = mode == R5_AVX512 ? NB_ISA_AVX512 : -1;
}

/* One kernel call into a new NaN-filled out of `shape` in run mode `mode`;
 * the serving kernel to *served. */
static nb_tensor *r5_call(int mode, int threads, nb_op op, nb_dims shape, const nb_tensor *const *in, int nin,
                          const double *s, int ns, const char **served) {
    r5_mode(mode, threads);
    nb_tensor *out = nb__new("test", NB_DTYPE_F32, shape.ndim, shape.d);
    cr_assert_not_null(out, "%s", nb_last_error());
    nb_kernel_args a = {.op = op, .out = out, .nin = nin};
    float *o = nb_data(out);
    for (int64_t i = 0; i < nb_numel(out); i++) o[i] = NAN;
    for (int i = 0; i < nin; i++) a.in[i] = in[i];
    for (int i = 0; i < ns; i++) a.scalar[i] = s[i];
    int rc = nb__dispatch(&a, "test_avx512_rows");
    cr_assert_eq(rc, 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    r5_mode(R5_AVX512, 0);
    return nb__scoped(out);
}

/* got vs want (same shape) within tol, per row of the last dim (rowlen
 * elements; 0: the last dim; -1: the whole tensor is one row); tol {0, 0}:
 * bitwise. twin (not NULL: the AVX2 kernel's result, want being ref's): an
 * element beyond tol passes where the twin is off by at least half as much
 * (the bound is the twin's and the twin itself exceeds it there). */
static void r5_compare(nb_tensor *got, nb_tensor *want, nb_tensor *twin, rows_tol tol, int64_t rowlen,
                       const char *what) {
    const float *a = nb_data(got), *b = nb_data(want), *t = twin ? nb_data(twin) : NULL;
    int64_t n = nb_numel(want), len = rowlen > 0 ? rowlen : rowlen < 0 ? n : nb_shape(want)[nb_ndim(want) - 1];
    if (len == 0 || n == 0) return;
    for (int64_t row = 0; row < n / len; row++) {
        double scale = 0;
        for (int64_t i = row * len; i < (row + 1) * len; i++)
            if (isfinite(b[i]) && fabs(b[i]) > scale) scale = fabs(b[i]);
        for (int64_t i = row * len; i < (row + 1) * len; i++) {
            if (tol.rtol == 0 || isnan(b[i]) || isinf(b[i]) || isnan(a[i]) || isinf(a[i])) {
                bool same = (isnan(a[i]) && isnan(b[i])) || (tol.rtol == 0 ? memcmp(&a[i], &b[i], 4) == 0 : a[i] == b[i]);
                cr_assert(same, "%s [%lld]: %a vs %a", what, (long long)i, (double)a[i], (double)b[i]);
                continue;
            }
            double d = fabs((double)a[i] - b[i]), e = d / (tol.rtol * fabs(b[i]) + tol.atol * scale + 1e-37);
            if (e > 1 && t && d <= 2 * fabs((double)t[i] - b[i])) continue;
            cr_assert(e <= 1, "%s [%lld]: %.9g vs %.9g (%.3g x the tolerance%s)", what, (long long)i, a[i], b[i], e,
                      t ? ", over twice the twin's error" : "");
            double u = rows_scale_ulps(tol, a[i], b[i], scale);
            cr_assert(u <= tol.scale_ulps, "%s [%lld]: %.9g vs %.9g: %.1f ULPs of the row's max |ref| %.9g", what,
                      (long long)i, a[i], b[i], u, scale);
        }
    }
}

/* Asserts kernel k is prefix + name (name NULL: just the prefix). */
static void r5_served(const char *k, const char *prefix, const char *name, const char *what) {
    size_t n = strlen(prefix);
    bool ok = strncmp(k, prefix, n) == 0 && (!name || strcmp(k + n, name) == 0);
    cr_assert(ok, "%s: served by %s, want %s%s", what, k, prefix, name ? name : "*");
}

/* The kernel name after "avx512_" / "avx2_". */
static const char *r5_name(nb_op op) {
    switch (op) {
    case NB_OP_SOFTMAX: return "softmax";
    case NB_OP_LOG_SOFTMAX: return "log_softmax";
    case NB_OP_SOFTMAX_BACKWARD: return "softmax_bwd";
    case NB_OP_LOG_SOFTMAX_BACKWARD: return "log_softmax_bwd";
    case NB_OP_CROSS_ENTROPY: return "cross_entropy";
    case NB_OP_CROSS_ENTROPY_BACKWARD: return "cross_entropy_bwd";
    default: return "nll_loss_bwd";
    }
}

/* Runs op in the three modes and compares; expect 1: avx512 serves (and
 * avx2 in the avx2 run), 0: every mode declines to ref (results bitwise
 * ref's), -1: either. rowlen as r5_compare. */
static void r5_check_rows(nb_op op, nb_dims shape, const nb_tensor *const *in, int nin, const double *s, int ns,
                          int expect, int64_t rowlen, const char *what) {
    nb_scope_begin();
    const char *k5, *k2, *kr;
    nb_tensor *o5 = r5_call(R5_AVX512, 0, op, shape, in, nin, s, ns, &k5);
    nb_tensor *o2 = r5_call(R5_AVX2, 0, op, shape, in, nin, s, ns, &k2);
    nb_tensor *orf = r5_call(R5_REF, 0, op, shape, in, nin, s, ns, &kr);
    char msg[200];
    snprintf(msg, sizeof msg, "%s %s", what, nb_op_name(op));
    r5_served(kr, "ref_", NULL, msg);
    if (expect == 1) {
        r5_served(k5, "avx512_", r5_name(op), msg);
        r5_served(k2, "avx2_", r5_name(op), msg);
    }
    if (expect == 0) {
        r5_served(k5, "ref_", NULL, msg);
        r5_served(k2, "ref_", NULL, msg);
    }
    rows_tol tol = expect == 0 ? (rows_tol){0, 0, 0} : rows_tol_of(op);
    snprintf(msg, sizeof msg, "%s %s vs ref", what, nb_op_name(op));
    r5_compare(o5, orf, o2, tol, rowlen, msg);
    snprintf(msg, sizeof msg, "%s %s vs avx2", what, nb_op_name(op));
    r5_compare(o5, o2, NULL, tol, rowlen, msg);
    nb_scope_end();
}

/* ---- softmax family ---- */

/* softmax, log_softmax of x along dim, and both backwards with gradient g
 * at y = the forward's (ref) result. */
static void r5_softmax_all(nb_tensor *x, nb_tensor *g, int dim, int expect, const char *what) {
    double s[1] = {dim};
    nb_dims shape = nb_dims_get(x);
    const nb_tensor *in1[1] = {x};
    int64_t rowlen = dim == nb_ndim(x) - 1 ? 0 : -1;   /* the softmax dim is a row only when last */
    r5_check_rows(NB_OP_SOFTMAX, shape, in1, 1, s, 1, expect, rowlen, what);
    r5_check_rows(NB_OP_LOG_SOFTMAX, shape, in1, 1, s, 1, expect, rowlen, what);
    if (!g) return;
    for (int logs = 0; logs < 2; logs++) {
        r5_mode(R5_REF, 0);
        nb_tensor *y = logs ? nb_log_softmax(x, dim) : nb_softmax(x, dim);
        r5_mode(R5_AVX512, 0);
        cr_assert_not_null(y, "%s", nb_last_error());
        const nb_tensor *in2[2] = {g, y};
        r5_check_rows(logs ? NB_OP_LOG_SOFTMAX_BACKWARD : NB_OP_SOFTMAX_BACKWARD, shape, in2, 2, s, 1, expect, rowlen,
                      what);
    }
}

/* Every size as the row length (1, 3 and 17 rows) and as the row count
 * (rows of 16 and 33). */
Test(avx512_rows, softmax_sizes) {
    static const int64_t nrows[] = {1, 3, 17}, lens[] = {16, 33};
    for (int l = 0; l < R5_NSIZES; l++) {
        for (int r = 0; r < 3; r++) {
            int64_t L = r5_sizes[l], R = nrows[r];
            nb_dims sh = NB_SHAPE(R, L);
            char what[64];
            snprintf(what, sizeof what, "[%lld, %lld]", (long long)R, (long long)L);
            r5_softmax_all(rows_randn(sh, 10 + l * 3 + r, 3.0), rows_randn(sh, 100 + l * 3 + r, 1.0), 1, L ? 1 : -1,
                           what);
        }
        for (int c = 0; c < 2; c++) {
            int64_t R = r5_sizes[l], L = lens[c];
            nb_dims sh = NB_SHAPE(R, L);
            char what[64];
            snprintf(what, sizeof what, "[%lld, %lld]", (long long)R, (long long)L);
            r5_softmax_all(rows_randn(sh, 50 + l * 2 + c, 3.0), rows_randn(sh, 150 + l * 2 + c, 1.0), 1, R ? 1 : -1, what);
        }
    }
}

/* Outputs of 1M floats and more take the streaming-store path: [1024,
 * 1024] and [512, 2048] (64-byte aligned rows), [1024, 1032] (every other
 * row 32-byte aligned only: an 8-float head; n % 16 == 8: an 8-float tail),
 * [1049, 1000] (the same, rows 32-byte aligned); [512, 2056] (rows over
 * 2048) does not. Against ref and avx2, then 1 vs 2 threads bitwise. */
Test(avx512_rows, softmax_large_streamed_threads) {
    static const int64_t shapes[][2] = {{1024, 1024}, {512, 2048}, {1024, 1032}, {1049, 1000}, {512, 2056}};
    static const nb_op ops[] = {NB_OP_SOFTMAX, NB_OP_LOG_SOFTMAX, NB_OP_SOFTMAX_BACKWARD, NB_OP_LOG_SOFTMAX_BACKWARD};
    for (int i = 0; i < 5; i++) {
        nb_dims sh = NB_SHAPE(shapes[i][0], shapes[i][1]);
        char what[64];
        snprintf(what, sizeof what, "[%lld, %lld]", (long long)shapes[i][0], (long long)shapes[i][1]);
        nb_tensor *x = rows_randn(sh, 700 + i, 3.0), *g = rows_randn(sh, 710 + i, 1.0);
        r5_softmax_all(x, g, 1, 1, what);
        nb_scope_begin();
        nb_tensor *y = nb_softmax(x, 1);
        for (int o = 0; o < 4; o++) {
            const nb_tensor *in[2] = {o < 2 ? x : g, y};
            double s[1] = {1};
            const char *k1, *k2;
            nb_tensor *a = r5_call(R5_AVX512, 1, ops[o], sh, in, o < 2 ? 1 : 2, s, 1, &k1);
            nb_tensor *b = r5_call(R5_AVX512, 2, ops[o], sh, in, o < 2 ? 1 : 2, s, 1, &k2);
            r5_served(k1, "avx512_", r5_name(ops[o]), what);
            r5_served(k2, "avx512_", r5_name(ops[o]), what);
            cr_assert(memcmp(nb_data(a), nb_data(b), sizeof(float) * (size_t)nb_numel(a)) == 0,
                      "%s %s: 1 and 2 threads differ", what, nb_op_name(ops[o]));
        }
        nb_scope_end();
    }
}

/* Streamed rows written one row late (rows_testutil.h's case), rows of 1024
 * (64-byte aligned, a multiple of 16: the AVX-512 late path). */
static const float *r5_softmax(const nb_tensor *x, int64_t R, int64_t L, int threads, const char **served) {
    const nb_tensor *in[1] = {x};
    double s[1] = {1};
    return nb_data(r5_call(R5_AVX512, threads, NB_OP_SOFTMAX, NB_SHAPE(R, L), in, 1, s, 1, served));
}
Test(avx512_rows, softmax_streamed_rows_late) { rows_softmax_late_case(1024, 760, r5_softmax, "avx512_"); }

Test(avx512_rows, softmax_layouts) {
    for (int l = 1; l < R5_NSIZES; l++) {
        int64_t L = r5_sizes[l];
        rows_softmax_layouts(L, l, r5_softmax_all);
        /* a broadcast gradient (stride 0 along the dim): the backward declines */
        nb_tensor *gb = nb_expand(rows_randn(NB_SHAPE(3, 1), 320 + l, 1.0), NB_SHAPE(3, L));
        nb_tensor *y = nb_softmax(rows_randn(NB_SHAPE(3, L), 330 + l, 1.0), 1);
        const nb_tensor *in2[2] = {gb, y};
        double s[1] = {1};
        r5_check_rows(NB_OP_SOFTMAX_BACKWARD, NB_SHAPE(3, L), in2, 2, s, 1, L == 1 ? -1 : 0, 0, "broadcast g");
        r5_check_rows(NB_OP_LOG_SOFTMAX_BACKWARD, NB_SHAPE(3, L), in2, 2, s, 1, L == 1 ? -1 : 0, 0, "broadcast g");
    }
}

/* Rows with infinities, NaN, signed zeros, denormals and huge values: the
 * reference's results exactly where they are special, within the tolerance
 * elsewhere; rows with a non-finite max bitwise the twin's. */
Test(avx512_rows, softmax_special_values) {
    static const int64_t lens[] = {7, 17, 33, 1023};
    for (int l = 0; l < 4; l++) {
        int64_t L = lens[l];
        enum { K = 12 };
        nb_tensor *x = rows_softmax_special_x(K, L, 400 + l);
        r5_softmax_all(x, rows_randn(NB_SHAPE(K, L), 410 + l, 1.0), 1, 1, "special");
        /* the non-finite rows (0, 1, 3, 5) bitwise the twin's */
        nb_scope_begin();
        double s[1] = {1};
        const nb_tensor *in[1] = {x};
        const char *k;
        for (int logs = 0; logs < 2; logs++) {
            nb_op op = logs ? NB_OP_LOG_SOFTMAX : NB_OP_SOFTMAX;
            const float *a = nb_data(r5_call(R5_AVX512, 0, op, NB_SHAPE(K, L), in, 1, s, 1, &k));
            const float *b = nb_data(r5_call(R5_AVX2, 0, op, NB_SHAPE(K, L), in, 1, s, 1, &k));
            static const int rows[] = {0, 1, 3, 5};
            for (int r = 0; r < 4; r++)
                for (int64_t i = rows[r] * L; i < (rows[r] + 1) * L; i++)
                    cr_assert(memcmp(&a[i], &b[i], 4) == 0 || (isnan(a[i]) && isnan(b[i])),
                              "special %s row %d [%lld]: %a vs avx2 %a", nb_op_name(op), rows[r], (long long)(i % L),
                              (double)a[i], (double)b[i]);
        }
        nb_scope_end();
    }
}

/* ---- cross entropy ---- */

/* CE forward and backward on logits x (N, C) and targets t. */
static void r5_ce(nb_tensor *x, nb_tensor *t, nb_tensor *w, nb_tensor *g, double ign, double eps, int expect,
                  const char *what) {
    int64_t N = nb_shape(x)[0];
    double s[2] = {ign, eps};
    const nb_tensor *in[4] = {x, t, w, g};
    r5_check_rows(NB_OP_CROSS_ENTROPY, NB_SHAPE(N), in, 3, s, 2, expect, -1, what);
    r5_check_rows(NB_OP_CROSS_ENTROPY_BACKWARD, nb_dims_get(x), in, 4, s, 2, expect, 0, what);
}

/* Every size as the class count (1, 7 and 17 samples) and as the sample
 * count (16 and 33 classes): rows_ce_case. */
Test(avx512_rows, cross_entropy) {
    static const int64_t ns[] = {1, 7, 17}, cs[] = {16, 33};
    for (int l = 1; l < R5_NSIZES; l++) {   /* C 0 declines (ref: an empty row) */
        for (int j = 0; j < 3; j++) rows_ce_case(ns[j], r5_sizes[l], 500 + (uint64_t)l * 3 + (uint64_t)j, r5_ce);
        for (int j = 0; j < 2; j++) rows_ce_case(r5_sizes[l], cs[j], 550 + (uint64_t)l * 2 + (uint64_t)j, r5_ce);
    }
    nb_tensor *x = rows_randn(NB_SHAPE(0, 16), 590, 1.0);   /* no samples */
    r5_ce(x, rows_targets(0, 16, 591, -100), NULL, rows_randn(NB_SHAPE(0), 592, 1.0), -100, 0, 1, "ce (0, 16)");
}

/* Big enough to split over 2 threads: bitwise equal at 1 and 2. */
Test(avx512_rows, cross_entropy_threads) {
    const int64_t N = 512, C = 1000;
    nb_tensor *x = rows_randn(NB_SHAPE(N, C), 950, 3.0), *g = rows_randn(NB_SHAPE(N), 951, 1.0);
    nb_tensor *w = nb_contiguous(nb_add_scalar(nb_rand(NB_SHAPE(C), NB_F32, 952), 0.5));
    nb_tensor *t = rows_targets(N, C, 953, 2);
    r5_ce(x, t, w, g, 2, 0.1, 1, "ce (512, 1000)");
    const nb_tensor *in[4] = {x, t, w, g};
    double s[2] = {2, 0.1};
    for (int bw = 0; bw < 2; bw++) {
        nb_op op = bw ? NB_OP_CROSS_ENTROPY_BACKWARD : NB_OP_CROSS_ENTROPY;
        nb_dims sh = bw ? NB_SHAPE(N, C) : NB_SHAPE(N);
        const char *k1, *k2;
        nb_tensor *a = r5_call(R5_AVX512, 1, op, sh, in, 3 + bw, s, 2, &k1);
        nb_tensor *b = r5_call(R5_AVX512, 2, op, sh, in, 3 + bw, s, 2, &k2);
        r5_served(k1, "avx512_", r5_name(op), "ce threads");
        r5_served(k2, "avx512_", r5_name(op), "ce threads");
        cr_assert(memcmp(nb_data(a), nb_data(b), sizeof(float) * (size_t)nb_numel(a)) == 0,
                  "%s: 1 and 2 threads differ", nb_op_name(op));
    }
}

Test(avx512_rows, cross_entropy_special_values) {
    static const int64_t cs[] = {7, 17, 33, 1023};
    for (int l = 0; l < 4; l++) rows_ce_special(8, cs[l], 600 + (uint64_t)l, r5_ce);
}

/* A target out of range: NB_ERANGE from the avx512 kernel, nothing written. */
Test(avx512_rows, cross_entropy_bad_target) {
    r5_mode(R5_AVX512, 0);
    nb_tensor *x = rows_randn(NB_SHAPE(3, 5), 700, 1.0);
    const int64_t tv[] = {1, 5, 0};
    nb_tensor *t = nb_from_data(NB_SHAPE(3), NB_I64, tv);
    nb_tensor *out = nb_full(NB_SHAPE(3), NB_F32, NAN);
    nb_kernel_args a = {.op = NB_OP_CROSS_ENTROPY, .out = out, .in = {x, t, NULL}, .nin = 3, .scalar = {-100, 0}};
    cr_assert_eq(nb__dispatch(&a, "test"), NB_ERANGE);
    cr_assert_str_eq(nb__last_kernel(), "avx512_cross_entropy");
    cr_assert(strstr(nb_last_error(), "out of bounds"), "%s", nb_last_error());
    cr_assert(isnan(((const float *)nb_data(out))[0]), "nothing written before the error");
}

/* ---- nll_loss_backward: bitwise ref's ---- */

/* (N, C) for every size as N and C (with 7 / 33 of the other), g of both
 * signs or broadcast, with and without weights and smoothing, ignored rows. */
static void r5_nll(int64_t N, int64_t C, uint64_t sd) {
    int64_t *tv = malloc(sizeof *tv * (size_t)(N ? N : 1));
    cr_assert_not_null(tv);
    for (int64_t r = 0; r < N; r++) tv[r] = r % 5 == 4 || !C ? -100 : (r * 7) % C;   /* -100: ignored */
    nb_tensor *T = nb_from_data(NB_SHAPE(N), NB_I64, tv);
    free(tv);
    nb_tensor *G = nb_randn(NB_SHAPE(N), NB_F32, sd), *Gb = nb_expand(nb_scalar(-0.5), NB_SHAPE(N));
    nb_tensor *W = nb_rand(NB_SHAPE(C), NB_F32, sd + 1);
    for (int v = 0; v < 8; v++) {
        const nb_tensor *in[3] = {v & 1 ? Gb : G, T, v & 2 ? W : NULL};
        double s[2] = {-100, v & 4 ? 0.1 : 0.0};
        char what[96];
        snprintf(what, sizeof what, "nll bwd (%lld, %lld) case %d", (long long)N, (long long)C, v);
        r5_check_rows(NB_OP_NLL_LOSS_BACKWARD, NB_SHAPE(N, C), in, 3, s, 2, N && C ? 1 : -1, 0, what);
    }
}

Test(avx512_rows, nll_loss_backward_bitwise) {
    for (int l = 0; l < R5_NSIZES; l++) {
        r5_nll(r5_sizes[l], 7, 60 + (uint64_t)l);
        r5_nll(r5_sizes[l] > 64 ? 65 : r5_sizes[l], 33, 80 + (uint64_t)l);
        r5_nll(17, r5_sizes[l], 100 + (uint64_t)l);
    }
    r5_nll(2048, 1000, 120);   /* split over threads */
    /* a target out of range: NB_ERANGE, nothing written */
    const int64_t tv[] = {1, 7, 0};
    nb_tensor *t = nb_from_data(NB_SHAPE(3), NB_I64, tv);
    nb_tensor *out = nb_full(NB_SHAPE(3, 7), NB_F32, NAN);
    nb_kernel_args a = {.op = NB_OP_NLL_LOSS_BACKWARD, .out = out, .in = {nb_randn(NB_SHAPE(3), NB_F32, 1), t, NULL},
                        .nin = 3, .scalar = {-100, 0}};
    cr_assert_eq(nb__dispatch(&a, "test"), NB_ERANGE);
    cr_assert_str_eq(nb__last_kernel(), "avx512_nll_loss_bwd");
    cr_assert(isnan(((const float *)nb_data(out))[0]), "nothing written before the error");
}

/* Through the public ops with autograd (avx512 first): softmax and cross
 * entropy forward and backward agree with the ref-capped run. */
static nb_tensor *r5_log_softmax_1(nb_tensor *x) { return nb_log_softmax(x, 1); }
Test(avx512_rows, public_ops) {
    double res[2][4];
    for (int pass = 0; pass < 2; pass++) {
        r5_mode(pass ? R5_REF : R5_AVX512, 0);
        nb_scope_begin();
        rows_public_ops(r5_log_softmax_1, res[pass]);
        nb_scope_end();
    }
    r5_mode(R5_AVX512, 0);
    rows_public_ops_agree(res);
}
