/* test_avx2_rows.c — the AVX2 row kernels (src/kernels/x86/avx2/avx2_rows.c:
 * softmax, log_softmax and their backwards, cross entropy and its backward,
 * layer_norm and its backward, with the forward's saved (mean, rstd) and
 * the fused dx + dweight/dbias backward) against the ref kernels.
 *
 * Each case runs one kernel call twice through the registry on the same
 * inputs: as nabla chooses (asserted to be the avx2 kernel when the layout is
 * one it serves, ref when it must decline) and with the ISA capped to ref.
 * Per element, |avx2 - ref| <= rtol |ref| + atol * (max |ref| of that row; a
 * row of layer_norm is a normalized slice, of group_norm a group's slice,
 * of cross entropy's loss the batch), NaN exactly where ref has NaN and the
 * same infinities, and |avx2 - ref| within a number of ULPs of that max
 * (rows_testutil.h's ROWS_*_SCALE_ULPS: 1.5x or more the worst measured).
 * (rtol, atol; ULPs):
 *   softmax 4e-6, 1e-6; 8            log_softmax 2e-6, 1e-6; 8
 *   softmax_bwd 1e-5, 1e-4; 2048     log_softmax_bwd 1e-5, 1e-5; 64
 *   cross_entropy 1e-5, 1e-6; 4      cross_entropy_bwd 1e-5, 1e-5; 512
 *   layer_norm, rms_norm, group_norm 1e-5, 1e-5; 8
 *   layer_norm_bwd 1e-5, 1e-4; 256   rms_norm_bwd 1e-5, 1e-4; 8
 *   group_norm_bwd 1e-5, 1e-4; 64
 *   layer_norm_param_backward 1e-5, 1e-4; 16 (a row: dweight or dbias)
 * (softmax_bwd's and cross_entropy_bwd's ULPs are no tighter than their
 * rtol/atol: where one class holds nearly all the mass the row's max
 * shrinks and the rounding of the sum does not.) (F32 exp/log within 2
 * ULP; row sums in F32 blocks of 16 terms a lane emptied into double,
 * relative error <= ~1.2e-6 of sum |terms|; ref is double rounded once.
 * The atol terms cover cancellation: softmax_bwd takes y (g - s) in F32 as
 * PyTorch does, so where g ~ s the rounding of s alone leaves ~6e-8 y |s|,
 * up to ~3e-5 of a small row max; likewise the layer_norm gradient's three
 * terms.)
 *
 * Sizes 0, 1, 7, 15, 16, 17, 33, 1023, 4097 on the row dim and several row
 * counts; strided rows, transposed and sliced operands (declined or served,
 * always right), broadcast gradients; special values (+-inf, NaN, +-0,
 * denormals, 1e10, +-3e38; layer_norm / rms_norm / group_norm: constant
 * rows, 1e20 and 1e30 rows whose squares overflow F32, specials in dy).
 * Skipped when the CPU lacks AVX2+FMA (or NB_ISA caps it).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "norm_testutil.h"
#include "rows_testutil.h"
#include "testutil.h"

/* Capped at avx2 for the whole test (each runs in its own process): on an
 * AVX-512 CPU the AVX-512 twins would serve first, and NB_ISA_PREFER (the
 * isa_avx512 setup) would put them first anyway. */
static void rw_setup(void) {
    setenv("NB_ISA", "avx2", 1);
    unsetenv("NB_ISA_PREFER");
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}
static void rw_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(avx2_rows, .init = rw_setup, .fini = rw_teardown);

static void rw_need(nb_op op) {
    const char *k = nb_kernel_chosen(op, NB_F32);
    if (!nb_cpu()->avx2_fma || !k || strncmp(k, "avx2", 4))
        cr_skip("%s: avx2 kernel not chosen (%s)", nb_op_name(op), k ? k : "none");
}

static const int64_t rw_lens[] = {1, 7, 15, 16, 17, 33, 1023, 4097};
#define RW_NLENS (int)(sizeof rw_lens / sizeof rw_lens[0])

/* One kernel call into a new out of `shape`; the serving kernel to *served. */
static nb_tensor *rw_call(nb_op op, nb_dims shape, const nb_tensor *const *in, int nin, const double *s, int ns,
                          const char **served) {
    nb_tensor *out = nb__new("test", NB_DTYPE_F32, shape.ndim, shape.d);
    cr_assert_not_null(out, "%s", nb_last_error());
    nb_kernel_args a = {.op = op, .out = out, .nin = nin};
    for (int i = 0; i < nin; i++) a.in[i] = in[i];
    for (int i = 0; i < ns; i++) a.scalar[i] = s[i];
    int rc = nb__dispatch(&a, "test_avx2_rows");
    cr_assert_eq(rc, 0, "%s: %s", nb_op_name(op), nb_last_error());
    if (served) *served = nb__last_kernel();
    return nb__scoped(out);
}

/* Worst error of got vs ref in units of the tolerance (<= 1 passes). */
static double rw_compare(nb_tensor *got, nb_tensor *ref, rows_tol tol, const char *what) {
    nb_tensor *g = nb_contiguous(got), *r = nb_contiguous(ref);
    const float *a = nb_data(g), *b = nb_data(r);
    int64_t n = nb_numel(r), len = nb_ndim(r) ? nb_shape(r)[nb_ndim(r) - 1] : 1;
    if (len == 0) return 0;
    double worst = 0;
    for (int64_t row = 0; row < n / len; row++) {
        double scale = 0;
        for (int64_t i = row * len; i < (row + 1) * len; i++)
            if (isfinite(b[i]) && fabs(b[i]) > scale) scale = fabs(b[i]);
        for (int64_t i = row * len; i < (row + 1) * len; i++) {
            if (isnan(b[i]) || isinf(b[i]) || isnan(a[i]) || isinf(a[i])) {
                bool same = (isnan(a[i]) && isnan(b[i])) || a[i] == b[i];
                cr_assert(same, "%s [%lld]: %.9g vs ref %.9g", what, (long long)i, a[i], b[i]);
                continue;
            }
            double e = fabs((double)a[i] - b[i]) / (tol.rtol * fabs(b[i]) + tol.atol * scale + 1e-37);
            cr_assert(e <= 1, "%s [%lld]: %.9g vs ref %.9g (%.3g x the tolerance)", what, (long long)i, a[i], b[i],
                      e);
            double u = rows_scale_ulps(tol, a[i], b[i], scale);
            cr_assert(u <= tol.scale_ulps, "%s [%lld]: %.9g vs ref %.9g: %.1f ULPs of the row's max |ref| %.9g", what,
                      (long long)i, a[i], b[i], u, scale);
            if (e > worst) worst = e;
        }
    }
    return worst;
}

/* Runs op both ways and compares, rows of rowlen elements (0: the last
 * dim); expect 1: avx2 serves, 0: ref, -1: either. */
static void rw_check_rows(nb_op op, nb_dims shape, const nb_tensor *const *in, int nin, const double *s, int ns,
                          int expect, int64_t rowlen, const char *what) {
    nb_scope_begin();
    const char *served;
    nb_tensor *got = rw_call(op, shape, in, nin, s, ns, &served);
    if (expect == 1)
        cr_assert(strncmp(served, "avx2", 4) == 0, "%s %s: served by %s, expected avx2", what, nb_op_name(op), served);
    if (expect == 0)
        cr_assert(strncmp(served, "ref", 3) == 0, "%s %s: served by %s, expected a decline", what, nb_op_name(op),
                  served);
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "ref", .abort_on_error = -1}), 0);
    nb_tensor *ref = rw_call(op, shape, in, nin, s, ns, &served);
    cr_assert(strncmp(served, "ref", 3) == 0, "capped to ref, yet %s served", served);
    cr_assert_eq(nb_init(NULL), 0);
    char msg[160];
    snprintf(msg, sizeof msg, "%s %s", what, nb_op_name(op));
    if (rowlen > 0 && nb_numel(ref) > 0) {
        got = nb_reshape(nb_contiguous(got), NB_SHAPE(nb_numel(ref) / rowlen, rowlen));
        ref = nb_reshape(ref, NB_SHAPE(nb_numel(ref) / rowlen, rowlen));
    }
    rw_compare(got, ref, rows_tol_of(op), msg);
    nb_scope_end();
}

static void rw_check(nb_op op, nb_dims shape, const nb_tensor *const *in, int nin, const double *s, int ns,
                     int expect, const char *what) {
    rw_check_rows(op, shape, in, nin, s, ns, expect, 0, what);
}

/* ---- softmax family ---- */

/* softmax, log_softmax of x along dim, and both backwards with gradient g
 * at y = the forward's (ref) result. */
static void rw_softmax_all(nb_tensor *x, nb_tensor *g, int dim, int expect, const char *what) {
    double s[1] = {dim};
    nb_dims shape = nb_dims_get(x);
    const nb_tensor *in1[1] = {x};
    rw_check(NB_OP_SOFTMAX, shape, in1, 1, s, 1, expect, what);
    rw_check(NB_OP_LOG_SOFTMAX, shape, in1, 1, s, 1, expect, what);
    if (!g) return;
    for (int logs = 0; logs < 2; logs++) {
        nb_tensor *y = logs ? nb_log_softmax(x, dim) : nb_softmax(x, dim);
        cr_assert_not_null(y, "%s", nb_last_error());
        const nb_tensor *in2[2] = {g, y};
        rw_check(logs ? NB_OP_LOG_SOFTMAX_BACKWARD : NB_OP_SOFTMAX_BACKWARD, shape, in2, 2, s, 1, expect, what);
    }
}

Test(avx2_rows, softmax_sizes) {
    rw_need(NB_OP_SOFTMAX);
    nb_scope_begin();
    static const int64_t nrows[] = {1, 3, 64};
    for (int l = 0; l < RW_NLENS; l++)
        for (int r = 0; r < 3; r++) {
            int64_t L = rw_lens[l], R = nrows[r];
            nb_dims sh = NB_SHAPE(R, L);
            char what[64];
            snprintf(what, sizeof what, "[%lld, %lld]", (long long)R, (long long)L);
            rw_softmax_all(rows_randn(sh, 10 + l * 3 + r, 3.0), rows_randn(sh, 100 + l * 3 + r, 1.0), 1, 1, what);
        }
    nb_tensor *z = nb_zeros(NB_SHAPE(3, 0), NB_F32);
    rw_softmax_all(z, z, 1, -1, "[3, 0]");
    rw_softmax_all(nb_zeros(NB_SHAPE(0, 5), NB_F32), NULL, 1, -1, "[0, 5]");
    nb_scope_end();
}

/* Outputs of 1M floats and more take the streaming-store path (rows of at
 * most 2048, a multiple of 8, 32-byte aligned); 1000-float rows at an odd
 * offset and 2056-float rows do not. All against ref. */
Test(avx2_rows, softmax_large_streamed) {
    rw_need(NB_OP_SOFTMAX);
    nb_scope_begin();
    static const int64_t shapes[][2] = {{1024, 1024}, {512, 2048}, {1049, 1000}, {512, 2056}};
    for (int i = 0; i < 4; i++) {
        nb_dims sh = NB_SHAPE(shapes[i][0], shapes[i][1]);
        char what[64];
        snprintf(what, sizeof what, "[%lld, %lld]", (long long)shapes[i][0], (long long)shapes[i][1]);
        rw_softmax_all(rows_randn(sh, 700 + i, 3.0), rows_randn(sh, 710 + i, 1.0), 1, 1, what);
    }
    nb_scope_end();
}

/* Streamed rows written one row late (rows_testutil.h's case), rows of 1000
 * (32-byte aligned, a multiple of 8: the AVX2 late path). */
static const float *rw_softmax(const nb_tensor *x, int64_t R, int64_t L, int threads, const char **served) {
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads}), 0, "%s", nb_last_error());
    nb_tensor *out = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[]){R, L}));
    cr_assert_not_null(out, "%s", nb_last_error());
    float *o = nb_data(out);
    for (int64_t i = 0; i < R * L; i++) o[i] = NAN;
    nb_kernel_args a = {.op = NB_OP_SOFTMAX, .out = out, .nin = 1, .in = {x}, .scalar = {1}};
    cr_assert_eq(nb__dispatch(&a, "test_avx2_rows"), 0, "%s", nb_last_error());
    *served = nb__last_kernel();
    return o;
}
Test(avx2_rows, softmax_streamed_rows_late) {
    rw_need(NB_OP_SOFTMAX);
    rows_softmax_late_case(1000, 760, rw_softmax, "avx2_");
}

Test(avx2_rows, softmax_layouts) {
    rw_need(NB_OP_SOFTMAX);
    nb_scope_begin();
    for (int l = 0; l < RW_NLENS; l++) {
        int64_t L = rw_lens[l];
        rows_softmax_layouts(L, l, rw_softmax_all);
        /* a broadcast gradient (stride 0 along the dim): the backward declines */
        nb_tensor *gb = nb_expand(rows_randn(NB_SHAPE(3, 1), 320 + l, 1.0), NB_SHAPE(3, L));
        nb_tensor *y = nb_softmax(rows_randn(NB_SHAPE(3, L), 330 + l, 1.0), 1);
        const nb_tensor *in2[2] = {gb, y};
        double s[1] = {1};
        rw_check(NB_OP_SOFTMAX_BACKWARD, NB_SHAPE(3, L), in2, 2, s, 1, L == 1 ? -1 : 0, "broadcast g");
    }
    nb_scope_end();
}

/* Rows with infinities, NaN, signed zeros, denormals and huge values (all
 * 12 rows of rows_softmax_special_x, as test_avx512_rows.c): ref's results
 * exactly where they are special, within the tolerance elsewhere, for the
 * forwards and both backwards; lengths with an 8-lane tail (7, 17, 33) and
 * a long one. The ±0 row is a uniform row (every e^(x - max) is 1: 1/L
 * each, log_softmax -log L; the backwards then see equal y); the denormal
 * row is uniform to F32 precision as well (x - max ~1e-39, flushed or
 * not): 1/L, not NaN or skewed. (Not 1e30: ref computes x - (m +
 * log(sum)) in double, where log(sum) vanishes next to m >= 1e17, so ref
 * gives 1, not 1/n, on a row of equal huge values; avx2 and PyTorch give
 * 1/n.) */
Test(avx2_rows, softmax_special_values) {
    rw_need(NB_OP_SOFTMAX);
    nb_scope_begin();
    static const int64_t lens[] = {7, 17, 33, 1023};
    for (int l = 0; l < 4; l++) {
        int64_t L = lens[l];
        enum { K = 12 };   /* rows 10 (±0) and 11 (denormals) included */
        char what[64];
        snprintf(what, sizeof what, "special L %lld", (long long)L);
        rw_softmax_all(rows_softmax_special_x(K, L, 400 + l), rows_randn(NB_SHAPE(K, L), 410 + l, 1.0), 1, 1, what);
    }
    nb_scope_end();
}

/* ---- cross entropy ---- */

/* CE forward and backward on logits x (N, C) and targets t. */
static void rw_ce(nb_tensor *x, nb_tensor *t, nb_tensor *w, nb_tensor *g, double ign, double eps, int expect,
                  const char *what) {
    int64_t N = nb_shape(x)[0];
    double s[2] = {ign, eps};
    const nb_tensor *in[4] = {x, t, w, g};
    rw_check(NB_OP_CROSS_ENTROPY, NB_SHAPE(N), in, 3, s, 2, expect, what);
    rw_check(NB_OP_CROSS_ENTROPY_BACKWARD, nb_dims_get(x), in, 4, s, 2, expect, what);
}

Test(avx2_rows, cross_entropy) {
    rw_need(NB_OP_CROSS_ENTROPY);
    nb_scope_begin();
    static const int64_t ns[] = {1, 7, 64};
    for (int l = 0; l < RW_NLENS; l++)
        for (int j = 0; j < 3; j++) rows_ce_case(ns[j], rw_lens[l], 500 + (uint64_t)l * 3 + (uint64_t)j, rw_ce);
    nb_scope_end();
}

/* rows_ce_special's 8 rows (+inf, NaN, all -inf, one -inf, wide, a big
 * offset, ±0, denormals), with and without weights and label smoothing, as
 * test_avx512_rows.c: the per-sample losses and the gradient against ref,
 * NaN and infinities exactly where ref has them. */
Test(avx2_rows, cross_entropy_special_values) {
    rw_need(NB_OP_CROSS_ENTROPY);
    nb_scope_begin();
    static const int64_t cs[] = {7, 17, 33, 1023};
    for (int l = 0; l < 4; l++) rows_ce_special(8, cs[l], 600 + (uint64_t)l, rw_ce);
    nb_scope_end();
}

Test(avx2_rows, cross_entropy_bad_target) {
    rw_need(NB_OP_CROSS_ENTROPY);
    nb_scope_begin();
    nb_tensor *x = rows_randn(NB_SHAPE(3, 5), 700, 1.0);
    const int64_t tv[] = {1, 5, 0};
    nb_tensor *t = nb_from_data(NB_SHAPE(3), NB_I64, tv);
    nb_tensor *out = nb_zeros(NB_SHAPE(3), NB_F32);
    nb_kernel_args a = {.op = NB_OP_CROSS_ENTROPY, .out = out, .in = {x, t, NULL}, .nin = 3, .scalar = {-100, 0}};
    cr_assert_eq(nb__dispatch(&a, "test"), NB_ERANGE);
    cr_assert_str_eq(nb__last_kernel(), "avx2_cross_entropy");
    cr_assert(strstr(nb_last_error(), "out of bounds"), "%s", nb_last_error());
    nb_scope_end();
}

/* ---- layer_norm ---- */

/* The kernel that served the last call is avx2 (expect 1) or ref (0). */
static void rw_served(int expect, const char *what, nb_op op) {
    const char *k = nb__last_kernel();
    if (expect == 1)
        cr_assert(strncmp(k, "avx2", 4) == 0, "%s %s: served by %s, expected avx2", what, nb_op_name(op), k);
    if (expect == 0)
        cr_assert(strncmp(k, "ref", 3) == 0, "%s %s: served by %s, expected a decline", what, nb_op_name(op), k);
}

/* The saved-stats path as nb_layer_norm runs it: the forward writing
 * (mean, rstd) into an (R, 2) stats tensor, the backward reading them,
 * plain and fused (out (R + 2, n): dx rows, then dweight and dbias), each
 * against the ref kernels (which write the stats in double and recompute
 * them in the backward). */
static void rw_ln_saved(nb_tensor *x, nb_tensor *w, nb_tensor *b, nb_tensor *dy, int k, int expect,
                        const char *what) {
    int64_t n = 1, R = 1;
    for (int d = 0; d < nb_ndim(x); d++) *(d < nb_ndim(x) - k ? &R : &n) *= nb_shape(x)[d];
    double s[3] = {k, 1e-5, 1};
    nb_scope_begin();
    nb_tensor *st[2], *y[2], *dx[2], *fu[2];
    for (int pass = 0; pass < 2; pass++) {   /* 0: as chosen, 1: capped to ref */
        if (pass) cr_assert_eq(nb_init(&(nb_init_opts){.isa = "ref", .abort_on_error = -1}), 0);
        st[pass] = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[2]){R, 2}));
        const nb_tensor *inf[4] = {x, w, b, st[pass]};
        y[pass] = rw_call(NB_OP_LAYER_NORM, nb_dims_get(x), inf, 4, s, 2, NULL);
        if (!pass) rw_served(expect, what, NB_OP_LAYER_NORM);
        const nb_tensor *inb[4] = {dy, x, w, st[pass]};
        dx[pass] = rw_call(NB_OP_LAYER_NORM_BACKWARD, nb_dims_get(x), inb, 4, s, 2, NULL);
        if (!pass) rw_served(expect, what, NB_OP_LAYER_NORM_BACKWARD);
        fu[pass] = rw_call(NB_OP_LAYER_NORM_BACKWARD, NB_SHAPE(R + 2, n), inb, 4, s, 3, NULL);
        if (!pass) rw_served(expect, what, NB_OP_LAYER_NORM_BACKWARD);
    }
    cr_assert_eq(nb_init(NULL), 0);
    char msg[160];
    snprintf(msg, sizeof msg, "%s saved stats", what);
    rw_compare(st[0], st[1], rows_tol_of(NB_OP_LAYER_NORM), msg);
    if (n > 0 && R > 0) {
        snprintf(msg, sizeof msg, "%s forward with stats", what);
        rw_compare(nb_reshape(nb_contiguous(y[0]), NB_SHAPE(R, n)), nb_reshape(y[1], NB_SHAPE(R, n)),
                   rows_tol_of(NB_OP_LAYER_NORM), msg);
        snprintf(msg, sizeof msg, "%s backward from stats", what);
        rw_compare(nb_reshape(nb_contiguous(dx[0]), NB_SHAPE(R, n)), nb_reshape(dx[1], NB_SHAPE(R, n)),
                   rows_tol_of(NB_OP_LAYER_NORM_BACKWARD), msg);
    }
    snprintf(msg, sizeof msg, "%s fused backward", what);
    rw_compare(fu[0], fu[1], rows_tol_of(NB_OP_LAYER_NORM_BACKWARD), msg);
    /* the fused dx rows are the plain backward's, bitwise */
    if (n > 0 && R > 0)
        cr_assert(memcmp(nb_data(nb_contiguous(dx[0])), nb_data(fu[0]), sizeof(float) * (size_t)(R * n)) == 0,
                  "%s: fused dx differs from the plain backward's", what);
    nb_scope_end();
}

static void rw_ln(nb_tensor *x, nb_tensor *w, nb_tensor *b, nb_tensor *dy, int k, int expect, const char *what) {
    double s[2] = {k, 1e-5};
    const nb_tensor *inf[3] = {x, w, b}, *inb[3] = {dy, x, w};
    int64_t n = 1;   /* rows of the comparison: the normalized slices */
    for (int d = nb_ndim(x) - k; d < nb_ndim(x); d++) n *= nb_shape(x)[d];
    rw_check_rows(NB_OP_LAYER_NORM, nb_dims_get(x), inf, 3, s, 2, expect, n, what);
    rw_check_rows(NB_OP_LAYER_NORM_BACKWARD, nb_dims_get(x), inb, 3, s, 2, expect, n, what);
    rw_ln_saved(x, w, b, dy, k, expect, what);
}

Test(avx2_rows, layer_norm) {
    rw_need(NB_OP_LAYER_NORM);
    nb_scope_begin();
    static const int64_t nrows[] = {1, 5, 64};
    for (int l = 0; l < RW_NLENS; l++)
        for (int r = 0; r < 3; r++) {
            int64_t L = rw_lens[l], R = nrows[r];
            uint64_t sd = 800 + (uint64_t)l * 3 + (uint64_t)r;
            nb_tensor *x = nb_contiguous(nb_add_scalar(rows_randn(NB_SHAPE(R, L), sd, 2.0), 3.0));
            nb_tensor *dy = rows_randn(NB_SHAPE(R, L), sd + 100, 1.0);
            nb_tensor *w = rows_randn(NB_SHAPE(L), sd + 200, 1.0), *b = rows_randn(NB_SHAPE(L), sd + 300, 1.0);
            char what[64];
            snprintf(what, sizeof what, "ln [%lld, %lld]", (long long)R, (long long)L);
            rw_ln(x, w, b, dy, 1, 1, what);
            rw_ln(x, NULL, NULL, dy, 1, 1, what);
            rw_ln(x, w, NULL, dy, 1, 1, what);
            /* normalized over the last 2 dims */
            nb_tensor *x3 = rows_randn(NB_SHAPE(R, 3, L), sd + 400, 1.0), *dy3 = rows_randn(NB_SHAPE(R, 3, L), sd + 500, 1.0);
            nb_tensor *w3 = rows_randn(NB_SHAPE(3, L), sd + 600, 1.0);
            rw_ln(x3, w3, w3, dy3, 2, 1, "ln k 2");
            /* a transposed x (declined unless L is 1), a narrowed batch (served) */
            nb_tensor *xt = nb_transpose(rows_randn(NB_SHAPE(L, R), sd + 700, 1.0), 0, 1);
            rw_ln(xt, w, b, dy, 1, L == 1 || R == 1 ? -1 : 0, "ln transposed x");
            nb_tensor *xn = nb_narrow(rows_randn(NB_SHAPE(R + 2, L), sd + 800, 1.0), 0, 1, R);
            rw_ln(xn, w, b, dy, 1, 1, "ln narrowed x");
        }
    nb_tensor *z = nb_zeros(NB_SHAPE(4, 0), NB_F32);
    rw_ln(z, NULL, NULL, z, 1, -1, "ln [4, 0]");
    nb_tensor *s = rows_randn(NB_SHAPE(3, 9), 900, 1.0);
    float *p = nb_data(s);
    for (int i = 0; i < 9; i++) p[9 + i] = 2.5f;   /* row 1 constant: var 0, rstd = 1/sqrt(eps) */
    p[2 * 9 + 4] = NAN;
    rw_ln(s, NULL, NULL, rows_randn(NB_SHAPE(3, 9), 901, 1.0), 1, 1, "ln special");
    nb_scope_end();
}

/* Forward rows written one row late (norm_common.h's LN_LATE: big flat
 * outputs, rows a multiple of 8 floats): a [1100, L] layer_norm with its
 * stats, with and without weight and bias, and rms_norm, into NaN-filled
 * outputs, with special rows among the others (an inf, a NaN, values whose
 * squares overflow F32: the double fallback, and an inf in the last row),
 * at 1, 2 and 3 threads: bitwise the output and stats of the same calls
 * with every row written at once (nb__ln_late = 0). A pending row left
 * unwritten shows as NaN. */
static void rw_ln_late_run(nb_op op, const nb_tensor *x, const nb_tensor *w, const nb_tensor *b, int64_t R,
                           int64_t L, float **y, float **st) {
    nb_tensor *out = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[]){R, L}));
    nb_tensor *stats = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[]){R, 2}));
    cr_assert(out && stats, "%s", nb_last_error());
    *y = nb_data(out), *st = nb_data(stats);
    for (int64_t i = 0; i < R * L; i++) (*y)[i] = NAN;
    for (int64_t i = 0; i < 2 * R; i++) (*st)[i] = NAN;
    bool ln = op == NB_OP_LAYER_NORM;
    nb_kernel_args a = {.op = op, .out = out, .nin = ln ? 4 : 2, .in = {x, w}, .scalar = {1, 1e-5}};
    if (ln) a.in[2] = b, a.in[3] = stats;   /* rms_norm: no stats (they stay NaN) */
    cr_assert_eq(nb__dispatch(&a, "test_avx2_rows"), 0, "%s", nb_last_error());
    const char *k = nb__last_kernel();
    cr_assert(!strncmp(k, "avx2_", 5), "%s: served by %s", nb_op_name(op), k);
}

Test(avx2_rows, layer_norm_rows_late) {
    rw_need(NB_OP_LAYER_NORM);
    const int64_t R = 1100, lens[] = {1024, 1032, 2048};
    for (int l = 0; l < 3; l++) {
        int64_t L = lens[l];
        nb_scope_begin();
        nb_tensor *x, *w, *b;
        norm_late_operands(R, L, l, &x, &w, &b);
        for (int v = 0; v < NORM_LATE_VARIANTS; v++) {
            const nb_tensor *wv, *bv;
            nb_op op = norm_late_variant(v, w, b, &wv, &bv);
            for (int threads = 1; threads <= 3; threads++) {
                nb_scope_begin();
                cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads}), 0, "%s", nb_last_error());
                float *y[2], *st[2];
                for (int late = 0; late < 2; late++) {
                    nb__ln_late = late;
                    rw_ln_late_run(op, x, wv, bv, R, L, &y[late], &st[late]);
                }
                nb__ln_late = 1;
                for (int64_t i = 0; i < R * L; i++)
                    cr_assert(memcmp(&y[0][i], &y[1][i], 4) == 0,
                              "%s v%d L %lld, %d threads, row %lld [%lld]: late %a, at once %a", nb_op_name(op), v,
                              (long long)L, threads, (long long)(i / L), (long long)(i % L), (double)y[1][i],
                              (double)y[0][i]);
                cr_assert(memcmp(st[0], st[1], sizeof(float) * 2 * (size_t)R) == 0, "%s v%d: stats differ",
                          nb_op_name(op), v);
                nb_scope_end();
            }
        }
        nb_scope_end();
    }
}

/* rms_norm (the layer_norm rows without the mean) and its backward, with
 * and without weight, over 1 and 2 dims, rows of every test length; a
 * row of zeros (rstd = 1/sqrt(eps)) and a NaN. */
static void rw_rms(nb_tensor *x, nb_tensor *w, nb_tensor *dy, int k, int expect, const char *what) {
    double s[2] = {k, 1e-6};
    const nb_tensor *inf[2] = {x, w}, *inb[3] = {dy, x, w};
    int64_t n = 1;
    for (int d = nb_ndim(x) - k; d < nb_ndim(x); d++) n *= nb_shape(x)[d];
    rw_check_rows(NB_OP_RMS_NORM, nb_dims_get(x), inf, 2, s, 2, expect, n, what);
    /* n == 1: dx = rstd gw (1 - x̂^2) ~ gw eps / x^2, all cancellation (F32 1 - x̂^2 against ref's double) */
    if (n > 1) rw_check_rows(NB_OP_RMS_NORM_BACKWARD, nb_dims_get(x), inb, 3, s, 2, expect, n, what);
}

Test(avx2_rows, rms_norm) {
    rw_need(NB_OP_RMS_NORM);
    nb_scope_begin();
    static const int64_t nrows[] = {1, 5, 64};
    for (int l = 0; l < RW_NLENS; l++)
        for (int r = 0; r < 3; r++) {
            int64_t L = rw_lens[l], R = nrows[r];
            uint64_t sd = 1800 + (uint64_t)l * 3 + (uint64_t)r;
            nb_tensor *x = nb_contiguous(nb_add_scalar(rows_randn(NB_SHAPE(R, L), sd, 2.0), 0.5));
            nb_tensor *dy = rows_randn(NB_SHAPE(R, L), sd + 100, 1.0), *w = rows_randn(NB_SHAPE(L), sd + 200, 1.0);
            rw_rms(x, w, dy, 1, 1, "rms");
            rw_rms(x, NULL, dy, 1, 1, "rms without weight");
            nb_tensor *x3 = rows_randn(NB_SHAPE(R, 3, L), sd + 400, 1.0), *dy3 = rows_randn(NB_SHAPE(R, 3, L), sd + 500, 1.0);
            rw_rms(x3, rows_randn(NB_SHAPE(3, L), sd + 600, 1.0), dy3, 2, 1, "rms k 2");
            nb_tensor *xt = nb_transpose(rows_randn(NB_SHAPE(L, R), sd + 700, 1.0), 0, 1);
            rw_rms(xt, w, dy, 1, L == 1 || R == 1 ? -1 : 0, "rms transposed x");
        }
    nb_tensor *s = rows_randn(NB_SHAPE(3, 9), 1900, 1.0);
    float *p = nb_data(s);
    for (int i = 0; i < 9; i++) p[9 + i] = 0.0f;   /* row 1 zeros: rstd = 1/sqrt(eps) */
    p[2 * 9 + 4] = NAN;
    rw_rms(s, NULL, rows_randn(NB_SHAPE(3, 9), 1901, 1.0), 1, 1, "rms special");
    /* squares beyond F32 (|x| ~ 1e20): the row again in double, not rstd 0 */
    nb_tensor *big = nb_contiguous(nb_mul_scalar(rows_randn(NB_SHAPE(4, 40), 1902, 1.0), 1e20));
    rw_rms(big, NULL, rows_randn(NB_SHAPE(4, 40), 1903, 1.0), 1, 1, "rms 1e20");
    rw_ln(big, NULL, NULL, rows_randn(NB_SHAPE(4, 40), 1904, 1.0), 1, 1, "ln 1e20");
    nb_scope_end();
}

/* group_norm and its backward: groups of 1, several and all channels,
 * spatial sizes 1 (an (N, C) input), 7 (masked tails) and 14x14, with and
 * without weight/bias; compared per group slice. A transposed x is
 * declined. */
static void rw_gn(nb_dims shape, int64_t G, bool affine, int expect, const char *what, uint64_t sd, bool transposed) {
    int64_t C = shape.d[1];
    nb_tensor *x = rows_randn(shape, sd, 2.0), *dy = rows_randn(shape, sd + 1, 1.0);
    if (transposed) x = nb_transpose(rows_randn(NB_SHAPE(shape.d[1], shape.d[0], shape.d[2]), sd, 2.0), 0, 1);
    x = nb_add_scalar(x, 1.5);
    if (transposed) x = nb_transpose(nb_contiguous(nb_transpose(x, 0, 1)), 0, 1);
    nb_tensor *w = affine ? rows_randn(NB_SHAPE(C), sd + 2, 1.0) : NULL, *b = affine ? rows_randn(NB_SHAPE(C), sd + 3, 1.0) : NULL;
    double s[2] = {(double)G, 1e-5};
    const nb_tensor *inf[3] = {x, w, b}, *inb[3] = {dy, x, w};
    int64_t slice = nb_numel(dy) / (shape.d[0] * G);
    rw_check_rows(NB_OP_GROUP_NORM, shape, inf, 3, s, 2, expect, slice, what);
    rw_check_rows(NB_OP_GROUP_NORM_BACKWARD, shape, inb, 3, s, 2, expect, slice, what);
}

Test(avx2_rows, group_norm) {
    rw_need(NB_OP_GROUP_NORM);
    nb_scope_begin();
    rw_gn(NB_SHAPE(4, 12, 1), 3, true, 1, "gn (N, C)", 2000, false);
    rw_gn(NB_SHAPE(3, 12, 7), 1, true, 1, "gn one group", 2010, false);
    rw_gn(NB_SHAPE(3, 12, 7), 4, false, 1, "gn no affine", 2020, false);
    rw_gn(NB_SHAPE(2, 8, 7), 8, true, 1, "gn a group per channel", 2030, false);
    rw_gn(NB_SHAPE(5, 32, 196), 8, true, 1, "gn 14x14", 2040, false);
    rw_gn(NB_SHAPE(3, 12, 7), 4, true, 0, "gn transposed x", 2050, true);
    /* special groups, as test_avx512_norm.c: (4, 6, 9) in 2 groups of 27:
     * a constant group, a NaN, a +inf, a sample of 1e20 (squares past F32) */
    nb_tensor *x = rows_randn(NB_SHAPE(4, 6, 9), 2060, 1.0), *dy = rows_randn(NB_SHAPE(4, 6, 9), 2061, 1.0);
    float *p = nb_data(x);
    for (int i = 0; i < 27; i++) p[i] = 2.5f;          /* sample 0, group 0: constant */
    p[27 + 3] = NAN;                                   /* sample 0, group 1: a NaN */
    p[54 + 5] = INFINITY;                              /* sample 1, group 0: +inf */
    for (int i = 0; i < 27; i++) p[81 + i] *= 1e20f;   /* sample 1, group 1: squares past F32 */
    double s[2] = {2, 1e-5};
    const nb_tensor *inf[3] = {x, NULL, NULL}, *inb[3] = {dy, x, NULL};
    rw_check_rows(NB_OP_GROUP_NORM, NB_SHAPE(4, 6, 9), inf, 3, s, 2, 1, 27, "gn special");
    rw_check_rows(NB_OP_GROUP_NORM_BACKWARD, NB_SHAPE(4, 6, 9), inb, 3, s, 2, 1, 27, "gn special");
    nb_scope_end();
}

/* Through the public ops with autograd: softmax, cross entropy and
 * layer_norm forward and backward agree with the ref-capped run. */
static nb_tensor *rw_layer_norm_37(nb_tensor *x) { return nb_layer_norm(x, NB_SHAPE(37), NULL, NULL, NULL); }
Test(avx2_rows, public_ops) {
    rw_need(NB_OP_SOFTMAX);
    nb_scope_begin();
    double res[2][4];
    for (int pass = 0; pass < 2; pass++) {
        if (pass) cr_assert_eq(nb_init(&(nb_init_opts){.isa = "ref", .abort_on_error = -1}), 0);
        rows_public_ops(rw_layer_norm_37, res[pass]);
        nb_init(NULL);
    }
    rows_public_ops_agree(res);
    nb_scope_end();
}

/* ---- layer_norm_param_backward: (2, n) = (sum dy x̂; sum dy) over rows ---- */

static void rw_lnp(nb_tensor *x, nb_tensor *dy, int k, int expect, const char *what) {
    const nb_tensor *in[2] = {dy, x};
    int64_t n = 1;
    for (int d = nb_ndim(x) - k; d < nb_ndim(x); d++) n *= nb_shape(x)[d];
    for (int rms = 0; rms < 2; rms++) {   /* scalar[2]: rms_norm's x̂ (no mean) */
        double s[3] = {k, 1e-5, rms};
        char w2[96];
        snprintf(w2, sizeof w2, "%s%s", what, rms ? " (rms)" : "");
        rw_check_rows(NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_SHAPE(2, n), in, 2, s, 3, expect, n, w2);
    }
}

Test(avx2_rows, layer_norm_param_backward) {
    rw_need(NB_OP_LAYER_NORM_PARAM_BACKWARD);
    nb_scope_begin();
    static const int64_t nrows[] = {1, 5, 64, 65, 200};   /* one block, a block and a tail, several */
    for (int l = 0; l < RW_NLENS; l++)
        for (int r = 0; r < 5; r++) {
            int64_t L = rw_lens[l], R = nrows[r];
            uint64_t sd = 1800 + (uint64_t)l * 5 + (uint64_t)r;
            nb_tensor *x = nb_contiguous(nb_add_scalar(rows_randn(NB_SHAPE(R, L), sd, 2.0), 3.0));
            nb_tensor *dy = rows_randn(NB_SHAPE(R, L), sd + 100, 1.0);
            char what[64];
            snprintf(what, sizeof what, "lnp [%lld, %lld]", (long long)R, (long long)L);
            rw_lnp(x, dy, 1, 1, what);
            nb_tensor *x3 = rows_randn(NB_SHAPE(R, 3, L), sd + 400, 1.0), *dy3 = rows_randn(NB_SHAPE(R, 3, L), sd + 500, 1.0);
            rw_lnp(x3, dy3, 2, 1, "lnp k 2");
            rw_lnp(x3, dy3, 1, 1, "lnp 3-D k 1");
            nb_tensor *xt = nb_transpose(rows_randn(NB_SHAPE(L, R), sd + 700, 1.0), 0, 1);
            rw_lnp(xt, dy, 1, L == 1 || R == 1 ? -1 : 0, "lnp transposed x");
            nb_tensor *xn = nb_narrow(rows_randn(NB_SHAPE(R + 2, L), sd + 800, 1.0), 0, 1, R);
            rw_lnp(xn, dy, 1, 1, "lnp narrowed x");
        }
    rw_lnp(nb_zeros(NB_SHAPE(0, 5), NB_F32), nb_zeros(NB_SHAPE(0, 5), NB_F32), 1, -1, "lnp [0, 5]");
    nb_scope_end();
}

/* The layer_norm family on special rows, as test_avx512_norm.c's
 * special_values: x (11, L) with a constant row (var 0: rstd 1/sqrt(eps)),
 * a NaN, ±0, denormals, rows whose squares (1e20) and whose sum's square
 * (1e30) overflow F32 (the row again in double), +inf, +inf and -inf,
 * denormals among normals, one value near FLT_MAX; then special values in
 * dy (NaN, +inf, -0, a denormal) with an ordinary x. Lengths 9 (an 8-lane
 * tail of 1), 33, 1030 (tail of 6). Every kernel against ref with its
 * tolerance, NaN and infinities exactly where ref has them: layer_norm
 * forward, with the saved stats (and the stats), backward recomputing the
 * moments and from the stats, fused; layer_norm_param_backward with
 * layer_norm's and rms_norm's x̂; rms_norm and its backward. */
Test(avx2_rows, norm_special_values) {
    rw_need(NB_OP_LAYER_NORM);
    nb_scope_begin();
    static const int64_t lens[] = {9, 33, 1030};
    for (int l = 0; l < 3; l++) {
        int64_t L = lens[l];
        enum { K = NORM_SPECIAL_K };
        nb_tensor *x = rows_randn(NB_SHAPE(K, L), 2100 + (uint64_t)l, 1.0);
        norm_special_x(nb_data(x), L);
        nb_tensor *dy = rows_randn(NB_SHAPE(K, L), 2110 + (uint64_t)l, 1.0);
        nb_tensor *w = rows_randn(NB_SHAPE(L), 2120 + (uint64_t)l, 1.0), *b = rows_randn(NB_SHAPE(L), 2130 + (uint64_t)l, 1.0);
        char what[64];
        snprintf(what, sizeof what, "special x, L %lld", (long long)L);
        rw_ln(x, w, b, dy, 1, 1, what);
        rw_lnp(x, dy, 1, 1, what);
        rw_rms(x, w, dy, 1, 1, what);
        /* and in dy */
        nb_tensor *dys = rows_randn(NB_SHAPE(K, L), 2140 + (uint64_t)l, 1.0);
        norm_special_dy(nb_data(dys), L);
        nb_tensor *xo = rows_randn(NB_SHAPE(K, L), 2150 + (uint64_t)l, 1.0);
        snprintf(what, sizeof what, "special dy, L %lld", (long long)L);
        rw_ln(xo, w, b, dys, 1, 1, what);
        rw_lnp(xo, dys, 1, 1, what);
        rw_rms(xo, w, dys, 1, 1, what);
    }
    nb_scope_end();
}

/* The saved-stats forward and the fused backward at 1 and 2 threads:
 * bitwise equal (rows computed alike wherever they run; fixed row blocks
 * added in block order), and against ref; big enough for the streaming
 * stores (>= 1M floats). */
Test(avx2_rows, layer_norm_fused_threads) {
    rw_need(NB_OP_LAYER_NORM_BACKWARD);
    nb_scope_begin();
    const int64_t R = 1100, n = 1024;
    nb_tensor *x = rows_randn(NB_SHAPE(R, n), 1950, 2.0), *dy = rows_randn(NB_SHAPE(R, n), 1951, 1.0);
    nb_tensor *w = rows_randn(NB_SHAPE(n), 1952, 1.0), *b = rows_randn(NB_SHAPE(n), 1953, 1.0);
    nb_tensor *y[2], *st[2], *fu[2];
    for (int t = 0; t < 2; t++) {
        cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = t + 1, .abort_on_error = -1}), 0, "%s", nb_last_error());
        double s[3] = {1, 1e-5, 1};
        st[t] = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[2]){R, 2}));
        const nb_tensor *inf[4] = {x, w, b, st[t]};
        const char *served;
        y[t] = rw_call(NB_OP_LAYER_NORM, NB_SHAPE(R, n), inf, 4, s, 2, &served);
        cr_assert(strncmp(served, "avx2", 4) == 0, "served by %s", served);
        const nb_tensor *inb[4] = {dy, x, w, st[t]};
        fu[t] = rw_call(NB_OP_LAYER_NORM_BACKWARD, NB_SHAPE(R + 2, n), inb, 4, s, 3, &served);
        cr_assert(strncmp(served, "avx2", 4) == 0, "served by %s", served);
    }
    cr_assert_eq(nb_init(NULL), 0);
    cr_assert(memcmp(nb_data(y[0]), nb_data(y[1]), sizeof(float) * (size_t)(R * n)) == 0, "y: 1 and 2 threads differ");
    cr_assert(memcmp(nb_data(st[0]), nb_data(st[1]), sizeof(float) * (size_t)(R * 2)) == 0,
              "stats: 1 and 2 threads differ");
    cr_assert(memcmp(nb_data(fu[0]), nb_data(fu[1]), sizeof(float) * (size_t)((R + 2) * n)) == 0,
              "fused backward: 1 and 2 threads differ");
    /* and against ref: this size takes the streaming-store paths */
    rw_ln_saved(x, w, b, dy, 1, 1, "ln [1100, 1024]");
    nb_scope_end();
}

/* 1 vs 2 threads: bitwise equal (fixed row blocks added in block order). */
Test(avx2_rows, layer_norm_param_backward_threads) {
    rw_need(NB_OP_LAYER_NORM_PARAM_BACKWARD);
    nb_scope_begin();
    nb_tensor *x = rows_randn(NB_SHAPE(1000, 1023), 1900, 1.0), *dy = rows_randn(NB_SHAPE(1000, 1023), 1901, 1.0);
    float res[2][2 * 1023];
    for (int t = 0; t < 2; t++) {
        cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = t + 1, .abort_on_error = -1}), 0, "%s", nb_last_error());
        double s[2] = {1, 1e-5};
        const nb_tensor *in[2] = {dy, x};
        const char *served;
        nb_tensor *o = rw_call(NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_SHAPE(2, 1023), in, 2, s, 2, &served);
        cr_assert(strncmp(served, "avx2", 4) == 0, "served by %s", served);
        memcpy(res[t], nb_data(o), sizeof res[t]);
    }
    cr_assert_eq(nb_init(NULL), 0);
    cr_assert(memcmp(res[0], res[1], sizeof res[0]) == 0, "1 and 2 threads differ");
    nb_scope_end();
}
