/* test_avx512_norm.c — the AVX-512 layer_norm and rms_norm kernels
 * (src/kernels/x86/avx512/avx512_norm.c): layer_norm forward (with and
 * without the saved (mean, rstd)), its backward (recomputing the moments,
 * from the saved ones, and fused into (R + 2, n): dx, dweight, dbias),
 * layer_norm_param_backward (layer_norm's and rms_norm's x̂), rms_norm and
 * its backward, group_norm and its backward.
 *
 * Each case runs the same operands three times through the registry: with
 * the avx512 kernels tried first (nb__isa_prefer, so they serve whatever
 * their priority; asserted by nb__last_kernel), with the avx2 ones first,
 * and capped at ref. It asserts:
 *  - bitwise equality with the AVX2 result (NaN == NaN): the port takes
 *    every sum in the AVX2 kernel's order and does the same element-wise
 *    IEEE operations, so any difference is a porting bug;
 *  - the AVX2 test's bounds against ref (rows_testutil.h's rows_tol_of):
 *    per element |avx512 - ref| <= rtol |ref| + atol * max|ref| of its row,
 *    (rtol, atol) = (1e-5, 1e-5) for the forwards and the saved stats,
 *    (1e-5, 1e-4) for the backwards and layer_norm_param_backward
 *    (group_norm: max|ref| over a group's slice), and within a number of
 *    ULPs of that max: 8 for the forwards and the stats, layer_norm_bwd
 *    256, rms_norm_bwd 8, group_norm_bwd 64, layer_norm_param_backward 16;
 *    NaN and infinities exactly where ref has them.
 * Row lengths 0, 1, 7, 15, 16, 17, 33, 1023, 4097 at 1, 5, 64 rows, and
 * row counts 0, 1, 7, 15, 16, 17, 33, 1023, 4097 at lengths 17 and 33
 * (every 16-, 8-lane and masked tail; layer_norm_param_backward's blocks of
 * 64 rows, whole and partial); normalized over 2 dims; with and without
 * weight and bias. Layouts: a narrowed batch (strided rows: served); a
 * transposed x, a broadcast dy, a strided weight, F64 (declined: the AVX2
 * kernel or ref serves, with the same bits as the avx2-first run). Special
 * values (NaN, ±inf, ±0, denormals, constant rows, 1e20 and 1e30 rows whose
 * squares overflow F32). 1 and 2 threads, bitwise equal, at sizes that
 * take the streaming stores (rows 64-byte aligned, rows 32 bytes off it,
 * rows too long to stream). The forwards' rows written one row late
 * (layer_norm with and without affine, rms_norm; rows of 1024, 1040 and
 * 2048; special rows; 1-3 threads): bitwise those written at once and
 * AVX2's, into NaN-filled outputs. Through the public op with autograd.
 * group_norm: spatial sizes 1 ((N, C) input), 7, 15, 16, 17, 33, 1023,
 * 4097, groups of 1, several and all channels, with and without affine, a
 * strided weight (served), a transposed x (declined), special values, 1
 * and 2 threads.
 * Skipped on a CPU without AVX-512 F/BW/DQ/VL.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "norm_testutil.h"
#include "rows_testutil.h"

static void nm_teardown(void) {
    nb__isa_prefer = -1;
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}

static void nm_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    const nb_cpu_features *c = nb_cpu();
    if (!(c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl && c->avx2_fma))
        cr_skip("no AVX-512 on this CPU");
    if (!nb__registry_has(NB_OP_LAYER_NORM, NB_DTYPE_F32, "avx512_")) cr_skip("avx512 kernels capped (NB_ISA)");
    nb_scope_begin();
}

TestSuite(avx512_norm, .init = nm_setup, .fini = nm_teardown);

/* ---- running one call three ways ---- */

enum { M512, M2, MREF, NMODES };
static const char *const nm_prefix[NMODES] = {"avx512_", "avx2_", "ref_"};

/* Chooses the kernels of mode m (after nb_init, which resets nb__isa_prefer);
 * threads 0: the default. */
static void nm_mode(int m, int threads) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = m == MREF ? "ref" : NULL, .num_threads = threads,
                                         .abort_on_error = -1}),
                 0, "%s", nb_last_error());
    nb__isa_prefer = m == M512 ? NB_ISA_AVX512 : m == M2 ? NB_ISA_AVX2 : -1;
}

/* One kernel call into a new (scoped) out of `shape`; the server to *served. */
static nb_tensor *nm_call(nb_op op, nb_dims shape, const nb_tensor *const *in, int nin, const double *s, int ns,
                          const char **served) {
    nb_tensor *out = nb__new("test", NB_DTYPE_F32, shape.ndim, shape.d);
    cr_assert_not_null(out, "%s", nb_last_error());
    if (nb_numel(out)) cr_assert(nb_fill_(out, NAN), "%s", nb_last_error());   /* nothing left unwritten */
    nb_kernel_args a = {.op = op, .out = out, .nin = nin};
    for (int i = 0; i < nin; i++) a.in[i] = in[i];
    for (int i = 0; i < ns; i++) a.scalar[i] = s[i];
    cr_assert_eq(nb__dispatch(&a, "test_avx512_norm"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return nb__scoped(out);
}

static bool nm_same(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0; }

/* got and want bitwise equal (NaN == NaN). */
static void nm_bitwise(nb_tensor *got, nb_tensor *want, const char *what) {
    const float *a = nb_data(got), *b = nb_data(want);
    cr_assert_eq(nb_numel(got), nb_numel(want));
    for (int64_t i = 0; i < nb_numel(got); i++)
        cr_assert(nm_same(a[i], b[i]), "%s [%lld]: avx512 %a, avx2 %a", what, (long long)i, (double)a[i],
                  (double)b[i]);
}

/* got within tol of ref (rows_testutil.h: rtol |ref| + atol max|ref of the
 * row|, and scale_ulps ULPs of that max), rows of len; NaN and infinities
 * exactly where ref has them. */
static void nm_close(nb_tensor *got, nb_tensor *ref, int64_t len, rows_tol tol, const char *what) {
    const float *a = nb_data(got), *b = nb_data(ref);
    int64_t n = nb_numel(ref);
    if (len <= 0 || n == 0) return;
    for (int64_t row = 0; row < n / len; row++) {
        double scale = 0;
        for (int64_t i = row * len; i < (row + 1) * len; i++)
            if (isfinite(b[i]) && fabs(b[i]) > scale) scale = fabs(b[i]);
        for (int64_t i = row * len; i < (row + 1) * len; i++) {
            if (!isfinite(a[i]) || !isfinite(b[i])) {
                cr_assert((isnan(a[i]) && isnan(b[i])) || a[i] == b[i], "%s [%lld]: %.9g vs ref %.9g", what,
                          (long long)i, a[i], b[i]);
                continue;
            }
            double e = fabs((double)a[i] - b[i]) / (tol.rtol * fabs(b[i]) + tol.atol * scale + 1e-37);
            cr_assert(e <= 1, "%s [%lld]: %.9g vs ref %.9g (%.3g x the tolerance)", what, (long long)i, a[i], b[i], e);
            double u = rows_scale_ulps(tol, a[i], b[i], scale);
            cr_assert(u <= tol.scale_ulps, "%s [%lld]: %.9g vs ref %.9g: %.1f ULPs of the row's max |ref| %.9g", what,
                      (long long)i, a[i], b[i], u, scale);
        }
    }
}

/* ---- the layer_norm family on one set of operands ---- */

/* The outputs compared, per mode. */
enum { O_Y, O_YS, O_ST, O_DX, O_DXS, O_FU, O_P, O_PR, O_R, O_RB, NOUT };
static const char *const nm_oname[NOUT] = {"forward", "forward with stats", "saved stats", "backward",
                                           "backward from stats", "fused backward", "param_backward",
                                           "param_backward (rms)", "rms_norm", "rms_norm_backward"};
/* The op whose tolerance (rows_tol_of) each output is held to. */
static const nb_op nm_oop[NOUT] = {NB_OP_LAYER_NORM, NB_OP_LAYER_NORM, NB_OP_LAYER_NORM,
                                   NB_OP_LAYER_NORM_BACKWARD, NB_OP_LAYER_NORM_BACKWARD, NB_OP_LAYER_NORM_BACKWARD,
                                   NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_OP_RMS_NORM,
                                   NB_OP_RMS_NORM_BACKWARD};

#define NM_ALL ((1u << NOUT) - 1)
#define NM_BIT(j) (1u << (j))
/* The outputs of the kernels that read dy. */
#define NM_DY (NM_BIT(O_DX) | NM_BIT(O_DXS) | NM_BIT(O_FU) | NM_BIT(O_P) | NM_BIT(O_PR) | NM_BIT(O_RB))
/* layer_norm_param_backward's (it reads no weight). */
#define NM_PARAM (NM_BIT(O_P) | NM_BIT(O_PR))

/* Back to the default kernels (no cap, no preference). */
static void nm_default(void) {
    cr_assert_eq(nb_init(NULL), 0);
    nb__isa_prefer = -1;
}

/* x normalized over its last k dims, weight w and bias b (or NULL), dy of
 * x's shape: every kernel of the family three ways. The outputs in `serve`
 * (bits NM_BIT(O_*)) must come from the avx512 kernel (and the avx2 one in
 * the avx2-first run), those in `decline` from another; the rest either. */
static void nm_ln(nb_tensor *x, nb_tensor *w, nb_tensor *b, nb_tensor *dy, int k, unsigned serve, unsigned decline,
                  const char *what) {
    int64_t n = 1, R = 1;
    for (int d = 0; d < nb_ndim(x); d++) *(d < nb_ndim(x) - k ? &R : &n) *= nb_shape(x)[d];
    nb_dims xs = nb_dims_get(x);
    nb_scope_begin();
    nb_tensor *o[NOUT][NMODES];
    const char *sv[NOUT][NMODES];
    for (int m = 0; m < NMODES; m++) {
        nm_mode(m, 0);
        double s[3] = {k, 1e-5, 1}, sr[3] = {k, 1e-5, 1}, srms[2] = {k, 1e-6};
        nb_tensor *st = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[2]){R, 2}));
        if (R) cr_assert(nb_fill_(st, NAN));
        const nb_tensor *inf[4] = {x, w, b, st}, *inb[4] = {dy, x, w, st}, *inp[2] = {dy, x};
        o[O_Y][m] = nm_call(NB_OP_LAYER_NORM, xs, inf, 3, s, 2, &sv[O_Y][m]);
        o[O_YS][m] = nm_call(NB_OP_LAYER_NORM, xs, inf, 4, s, 2, &sv[O_YS][m]);
        o[O_ST][m] = st;
        sv[O_ST][m] = sv[O_YS][m];
        o[O_DX][m] = nm_call(NB_OP_LAYER_NORM_BACKWARD, xs, inb, 3, s, 2, &sv[O_DX][m]);
        o[O_DXS][m] = nm_call(NB_OP_LAYER_NORM_BACKWARD, xs, inb, 4, s, 2, &sv[O_DXS][m]);
        o[O_FU][m] = nm_call(NB_OP_LAYER_NORM_BACKWARD, NB_SHAPE(R + 2, n), inb, 4, s, 3, &sv[O_FU][m]);
        sr[2] = 0;
        o[O_P][m] = nm_call(NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_SHAPE(2, n), inp, 2, sr, 3, &sv[O_P][m]);
        sr[2] = 1;
        o[O_PR][m] = nm_call(NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_SHAPE(2, n), inp, 2, sr, 3, &sv[O_PR][m]);
        const nb_tensor *inr[2] = {x, w}, *inrb[3] = {dy, x, w};
        o[O_R][m] = nm_call(NB_OP_RMS_NORM, xs, inr, 2, srms, 2, &sv[O_R][m]);
        o[O_RB][m] = nm_call(NB_OP_RMS_NORM_BACKWARD, xs, inrb, 3, srms, 2, &sv[O_RB][m]);
    }
    nm_default();
    for (int j = 0; j < NOUT; j++) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s: %s", what, nm_oname[j]);
        bool is512 = strncmp(sv[j][M512], "avx512_", 7) == 0;
        if (serve & NM_BIT(j)) {
            cr_assert(is512, "%s: served by %s, want avx512", msg, sv[j][M512]);
            cr_assert(strncmp(sv[j][M2], "avx2_", 5) == 0, "%s: avx2-first run served by %s", msg, sv[j][M2]);
        }
        if (decline & NM_BIT(j)) cr_assert(!is512, "%s: served by %s, want a decline", msg, sv[j][M512]);
        cr_assert(strncmp(sv[j][MREF], "ref_", 4) == 0, "%s: ref run served by %s", msg, sv[j][MREF]);
        nm_bitwise(o[j][M512], o[j][M2], msg);
        int64_t len = j == O_ST ? 2 : n;
        /* rms backward of rows of 1: dx ~ gw eps / x^2, all cancellation (as test_avx2_rows.c) */
        if (j == O_RB && n == 1) continue;
        nm_close(o[j][M512], o[j][MREF], len, rows_tol_of(nm_oop[j]), msg);
    }
    /* the fused dx rows are the plain backward's, bitwise */
    if (n > 0 && R > 0)
        cr_assert(memcmp(nb_data(o[O_DXS][M512]), nb_data(o[O_FU][M512]), sizeof(float) * (size_t)(R * n)) == 0,
                  "%s: fused dx differs from the plain backward's", what);
    nb_scope_end();
}

static nb_tensor *nm_randn(nb_dims shape, uint64_t seed, double scale, double shift) {
    nb_tensor *t = nb_randn(shape, NB_F32, seed);
    cr_assert_not_null(t);
    if (scale != 1) t = nb_mul_scalar(t, scale);
    if (shift != 0) t = nb_add_scalar(t, shift);
    return nb_contiguous(t);
}

/* (R, L) operands with weight and bias, weight only, neither. */
static void nm_rl(int64_t R, int64_t L, uint64_t sd) {
    nb_tensor *x = nm_randn(NB_SHAPE(R, L), sd, 2.0, 3.0), *dy = nm_randn(NB_SHAPE(R, L), sd + 1, 1.0, 0);
    nb_tensor *w = nm_randn(NB_SHAPE(L), sd + 2, 1.0, 0), *b = nm_randn(NB_SHAPE(L), sd + 3, 1.0, 0);
    char what[64];
    snprintf(what, sizeof what, "[%lld, %lld]", (long long)R, (long long)L);
    unsigned serve = L == 0 ? 0 : NM_ALL;   /* empty rows: the forwards decline, param_backward serves */
    nm_ln(x, w, b, dy, 1, serve, 0, what);
    nm_ln(x, w, NULL, dy, 1, serve, 0, what);
    nm_ln(x, NULL, NULL, dy, 1, serve, 0, what);
}

static const int64_t nm_sizes[] = {0, 1, 7, 15, 16, 17, 33, 1023, 4097};
#define NM_NSIZES (int)(sizeof nm_sizes / sizeof nm_sizes[0])

Test(avx512_norm, row_lengths) {
    static const int64_t rows[] = {1, 5, 64};
    for (int l = 0; l < NM_NSIZES; l++)
        for (int r = 0; r < 3; r++) nm_rl(rows[r], nm_sizes[l], 100 + (uint64_t)(l * 3 + r) * 4);
}

Test(avx512_norm, row_counts) {
    static const int64_t lens[] = {17, 33};
    for (int r = 0; r < NM_NSIZES; r++)
        for (int l = 0; l < 2; l++) nm_rl(nm_sizes[r], lens[l], 300 + (uint64_t)(r * 2 + l) * 4);
}

Test(avx512_norm, layouts) {
    static const int64_t lens[] = {1, 7, 17, 33, 1023};
    for (int l = 0; l < 5; l++) {
        int64_t L = lens[l], R = 5;
        uint64_t sd = 500 + (uint64_t)l * 10;
        nb_tensor *dy = nm_randn(NB_SHAPE(R, L), sd, 1.0, 0), *w = nm_randn(NB_SHAPE(L), sd + 1, 1.0, 0);
        nb_tensor *b = nm_randn(NB_SHAPE(L), sd + 2, 1.0, 0);
        /* normalized over the last 2 dims (weight (3, L)) */
        nb_tensor *x3 = nm_randn(NB_SHAPE(R, 3, L), sd + 3, 1.0, 0), *dy3 = nm_randn(NB_SHAPE(R, 3, L), sd + 4, 1.0, 0);
        nb_tensor *w3 = nm_randn(NB_SHAPE(3, L), sd + 5, 1.0, 0);
        nm_ln(x3, w3, w3, dy3, 2, NM_ALL, 0, "k 2");
        /* a narrowed batch: rows at a stride: served */
        nm_ln(nb_narrow(nm_randn(NB_SHAPE(R + 2, L), sd + 6, 1.0, 1.0), 0, 1, R), w, b, dy, 1, NM_ALL, 0, "narrowed x");
        nm_ln(nb_narrow(nm_randn(NB_SHAPE(R, 3, L), sd + 7, 1.0, 1.0), 1, 1, 1), w, b,
              nm_randn(NB_SHAPE(R, 1, L), sd + 8, 1.0, 0), 1, NM_ALL, 0, "narrowed middle dim");
        /* a transposed x (declined unless a row is contiguous anyway) */
        nb_tensor *xt = nb_transpose(nm_randn(NB_SHAPE(L, R), sd + 9, 1.0, 0), 0, 1);
        nm_ln(xt, w, b, dy, 1, 0, L == 1 ? 0 : NM_ALL, "transposed x");
        /* a dy broadcast along the normalized dim (stride 0): the backwards decline */
        nb_tensor *db = nb_expand(nm_randn(NB_SHAPE(R, 1), sd + 10, 1.0, 0), NB_SHAPE(R, L));
        nm_ln(nm_randn(NB_SHAPE(R, L), sd + 11, 1.0, 0), w, b, db, 1, L == 1 ? NM_ALL : NM_ALL & ~NM_DY,
              L == 1 ? 0 : NM_DY, "broadcast dy");
        /* a strided weight (every 2nd element): declined */
        if (L > 1) {
            nb_tensor *ws = nb_slice(nm_randn(NB_SHAPE(2 * L), sd + 12, 1.0, 0), 0, 0, 2 * L, 2);
            nm_ln(nm_randn(NB_SHAPE(R, L), sd + 13, 1.0, 0), ws, b, dy, 1, NM_PARAM, NM_ALL & ~NM_PARAM, "strided weight");
        }
    }
    /* F64: declined by avx512 and avx2, ref serves */
    nb_tensor *x = nb_to_dtype(nm_randn(NB_SHAPE(4, 33), 600, 1.0, 0), NB_F64);
    nm_mode(M512, 0);
    double s[2] = {1, 1e-5};
    nb_tensor *out = nb_empty(NB_SHAPE(4, 33), NB_F64);
    nb_kernel_args a = {.op = NB_OP_LAYER_NORM, .out = out, .in = {x}, .nin = 3, .scalar = {s[0], s[1]}};
    cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s", nb_last_error());
    cr_assert(strncmp(nb__last_kernel(), "ref_", 4) == 0, "F64 served by %s", nb__last_kernel());
}

/* NaN, ±inf, ±0, denormals, constant rows, huge rows (squares past F32:
 * the row again in double), at lengths with and without tails. */
Test(avx512_norm, special_values) {
    static const int64_t lens[] = {9, 33, 1030};
    for (int l = 0; l < 3; l++) {
        int64_t L = lens[l];
        enum { K = NORM_SPECIAL_K };
        nb_tensor *x = nm_randn(NB_SHAPE(K, L), 700 + l, 1.0, 0);
        norm_special_x(nb_data(x), L);
        nb_tensor *dy = nm_randn(NB_SHAPE(K, L), 710 + l, 1.0, 0), *w = nm_randn(NB_SHAPE(L), 720 + l, 1.0, 0);
        nb_tensor *b = nm_randn(NB_SHAPE(L), 730 + l, 1.0, 0);
        nm_ln(x, w, b, dy, 1, NM_ALL, 0, "special x");
        /* and in dy */
        nb_tensor *dys = nm_randn(NB_SHAPE(K, L), 740 + l, 1.0, 0);
        norm_special_dy(nb_data(dys), L);
        nm_ln(nm_randn(NB_SHAPE(K, L), 750 + l, 1.0, 0), w, b, dys, 1, NM_ALL, 0, "special dy");
    }
}

/* The family at 1 and 2 threads: bitwise equal to each other and to avx2.
 * [1100, 1024] streams aligned rows; [1049, 1000] streams rows of which
 * every second starts 32 bytes off a 64-byte boundary (a masked head);
 * [512, 2056] is too long a row to stream. The first also against ref. */
Test(avx512_norm, threads_and_streaming) {
    static const int64_t shapes[][2] = {{1100, 1024}, {1049, 1000}, {512, 2056}};
    for (int i = 0; i < 3; i++) {
        int64_t R = shapes[i][0], n = shapes[i][1];
        nb_scope_begin();
        nb_tensor *x = nm_randn(NB_SHAPE(R, n), 800 + i, 2.0, 1.0), *dy = nm_randn(NB_SHAPE(R, n), 810 + i, 1.0, 0);
        nb_tensor *w = nm_randn(NB_SHAPE(n), 820 + i, 1.0, 0), *b = nm_randn(NB_SHAPE(n), 830 + i, 1.0, 0);
        nb_tensor *res[3][4];   /* [1 thread 512, 2 threads 512, avx2][y, stats, fused, param] */
        for (int t = 0; t < 3; t++) {
            nm_mode(t < 2 ? M512 : M2, t == 0 ? 1 : 2);
            double s[3] = {1, 1e-5, 1};
            const char *sv[4];
            nb_tensor *st = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[2]){R, 2}));
            const nb_tensor *inf[4] = {x, w, b, st}, *inb[4] = {dy, x, w, st}, *inp[2] = {dy, x};
            res[t][0] = nm_call(NB_OP_LAYER_NORM, NB_SHAPE(R, n), inf, 4, s, 2, &sv[0]);
            res[t][1] = st;
            res[t][2] = nm_call(NB_OP_LAYER_NORM_BACKWARD, NB_SHAPE(R + 2, n), inb, 4, s, 3, &sv[2]);
            s[2] = 0;
            res[t][3] = nm_call(NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_SHAPE(2, n), inp, 2, s, 3, &sv[3]);
            sv[1] = sv[0];
            for (int j = 0; j < 4; j++)
                cr_assert(strncmp(sv[j], nm_prefix[t < 2 ? M512 : M2], t < 2 ? 7 : 5) == 0, "%lld x %lld: served by %s",
                          (long long)R, (long long)n, sv[j]);
        }
        for (int j = 0; j < 4; j++) {
            nm_bitwise(res[1][j], res[0][j], "2 threads vs 1");
            nm_bitwise(res[0][j], res[2][j], "1 thread vs avx2");
        }
        nm_default();
        if (i == 0) nm_ln(x, w, b, dy, 1, NM_ALL, 0, "[1100, 1024]");
        nb_scope_end();
    }
}

/* The forward rows written one row late (norm_common.h's LN_LATE: big
 * flat outputs, rows a multiple of 16 floats, 64-byte aligned): a
 * [1100, L] layer_norm with its stats, with and without weight and bias,
 * and rms_norm, into NaN-filled outputs (a pending row left unwritten shows
 * as NaN), with special rows among the others (an inf, a NaN, values whose
 * squares overflow F32: the double fallback, and an inf in the last row),
 * at 1, 2 and 3 threads: bitwise the output and stats of the same calls
 * with every row written at once (nb__ln_late = 0), and of the AVX2
 * kernel's. L = 1040 is 16 past a multiple of 32, so the pending row's last
 * 16 floats go out in the sums' 8-lane steps. */
static void nm_late_run(int m, nb_op op, const nb_tensor *x, const nb_tensor *w, const nb_tensor *b, int64_t R,
                        int64_t L, nb_tensor **y, nb_tensor **st) {
    bool ln = op == NB_OP_LAYER_NORM;
    *st = nb__scoped(nb__new("test", NB_DTYPE_F32, 2, (int64_t[2]){R, 2}));
    cr_assert(*st && nb_fill_(*st, NAN), "%s", nb_last_error());
    const nb_tensor *in[4] = {x, w, b, *st};
    double s[2] = {1, 1e-5};
    const char *sv;
    *y = nm_call(op, NB_SHAPE(R, L), in, ln ? 4 : 2, s, 2, &sv);
    cr_assert(strncmp(sv, nm_prefix[m], strlen(nm_prefix[m])) == 0, "%s: served by %s", nb_op_name(op), sv);
}

Test(avx512_norm, rows_late) {
    const int64_t R = 1100, lens[] = {1024, 1040, 2048};
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
                nb_tensor *y[3], *st[3];   /* avx512 at once, avx512 late, avx2 (late) */
                for (int k = 0; k < 3; k++) {
                    nm_mode(k < 2 ? M512 : M2, threads);
                    nb__ln_late = k == 0 ? 0 : 1;
                    nm_late_run(k < 2 ? M512 : M2, op, x, wv, bv, R, L, &y[k], &st[k]);
                }
                nb__ln_late = 1;
                char msg[120];
                snprintf(msg, sizeof msg, "%s v%d L %lld, %d threads: late vs at once", nb_op_name(op), v,
                         (long long)L, threads);
                nm_bitwise(y[1], y[0], msg);
                nm_bitwise(st[1], st[0], msg);
                snprintf(msg, sizeof msg, "%s v%d L %lld, %d threads: vs avx2", nb_op_name(op), v, (long long)L,
                         threads);
                nm_bitwise(y[1], y[2], msg);
                nm_bitwise(st[1], st[2], msg);
                nb_scope_end();
            }
        }
        nm_default();
        nb_scope_end();
    }
}

/* ---- group_norm ---- */

/* group_norm and its backward of x (N, C, S) in G groups, weight w and
 * bias b (or NULL, any strides), three ways; compared per group slice.
 * expect 1: avx512 serves, 0: it declines. */
static void nm_gn(nb_tensor *x, nb_tensor *w, nb_tensor *b, nb_tensor *dy, int64_t G, int expect, const char *what) {
    nb_dims xs = nb_dims_get(x);
    int64_t slice = nb_shape(x)[0] * G != 0 ? nb_numel(x) / (nb_shape(x)[0] * G) : 0;
    nb_scope_begin();
    nb_tensor *o[2][NMODES];
    const char *sv[2][NMODES];
    for (int m = 0; m < NMODES; m++) {
        nm_mode(m, 0);
        double s[2] = {(double)G, 1e-5};
        const nb_tensor *inf[3] = {x, w, b}, *inb[3] = {dy, x, w};
        o[0][m] = nm_call(NB_OP_GROUP_NORM, xs, inf, 3, s, 2, &sv[0][m]);
        o[1][m] = nm_call(NB_OP_GROUP_NORM_BACKWARD, xs, inb, 3, s, 2, &sv[1][m]);
    }
    nm_default();
    for (int j = 0; j < 2; j++) {
        char msg[200];
        snprintf(msg, sizeof msg, "%s: group_norm%s", what, j ? "_backward" : "");
        bool is512 = strncmp(sv[j][M512], "avx512_", 7) == 0;
        if (expect == 1) {
            cr_assert(is512, "%s: served by %s, want avx512", msg, sv[j][M512]);
            cr_assert(strncmp(sv[j][M2], "avx2_", 5) == 0, "%s: avx2-first run served by %s", msg, sv[j][M2]);
        }
        if (expect == 0) cr_assert(!is512, "%s: served by %s, want a decline", msg, sv[j][M512]);
        nm_bitwise(o[j][M512], o[j][M2], msg);
        nm_close(o[j][M512], o[j][MREF], slice, rows_tol_of(j ? NB_OP_GROUP_NORM_BACKWARD : NB_OP_GROUP_NORM), msg);
    }
    nb_scope_end();
}

/* Spatial sizes of every tail (an (N, C) input for 1), groups of 1,
 * several and all channels, with and without weight/bias; a strided
 * weight (served: read into a vector), a transposed x (declined), special
 * values; 2 threads (the default) against 1, bitwise. */
Test(avx512_norm, group_norm) {
    static const int64_t S[] = {1, 7, 15, 16, 17, 33, 1023, 4097};
    static const int64_t grp[][2] = {{12, 3}, {12, 1}, {8, 8}};   /* (C, G) */
    for (int si = 0; si < 8; si++)
        for (int g = 0; g < 3; g++) {
            int64_t C = grp[g][0], G = grp[g][1], N = S[si] > 1000 ? 2 : 3;
            uint64_t sd = 1000 + (uint64_t)(si * 3 + g) * 4;
            nb_dims sh = S[si] == 1 ? NB_SHAPE(N, C) : NB_SHAPE(N, C, S[si]);
            nb_tensor *x = nm_randn(sh, sd, 2.0, 1.5), *dy = nm_randn(sh, sd + 1, 1.0, 0);
            nb_tensor *w = nm_randn(NB_SHAPE(C), sd + 2, 1.0, 0), *b = nm_randn(NB_SHAPE(C), sd + 3, 1.0, 0);
            char what[80];
            snprintf(what, sizeof what, "gn [%lld, %lld, %lld] G %lld", (long long)N, (long long)C, (long long)S[si],
                     (long long)G);
            nm_gn(x, w, b, dy, G, 1, what);
            nm_gn(x, NULL, NULL, dy, G, 1, what);
        }
    nb_tensor *x = nm_randn(NB_SHAPE(5, 32, 196), 1100, 2.0, 1.5), *dy = nm_randn(NB_SHAPE(5, 32, 196), 1101, 1.0, 0);
    nb_tensor *ws = nb_slice(nm_randn(NB_SHAPE(64), 1102, 1.0, 0), 0, 0, 64, 2);
    nm_gn(x, ws, ws, dy, 8, 1, "gn 14x14, strided weight");
    nb_tensor *xt = nb_transpose(nm_randn(NB_SHAPE(12, 3, 7), 1103, 1.0, 0), 0, 1);
    nm_gn(xt, NULL, NULL, nm_randn(NB_SHAPE(3, 12, 7), 1104, 1.0, 0), 4, 0, "gn transposed x");
    nb_tensor *xsp = nm_randn(NB_SHAPE(4, 6, 9), 1105, 1.0, 0);
    float *p = nb_data(xsp);
    for (int i = 0; i < 27; i++) p[i] = 2.5f;   /* sample 0, group 0: constant */
    p[27 + 3] = NAN;                            /* group 1: a NaN */
    p[54 + 5] = INFINITY;                       /* sample 1, group 0: +inf */
    for (int i = 0; i < 27; i++) p[81 + i] *= 1e20f;   /* squares past F32 */
    nm_gn(xsp, NULL, NULL, nm_randn(NB_SHAPE(4, 6, 9), 1106, 1.0, 0), 2, 1, "gn special");
    /* 1 vs 2 threads */
    nb_tensor *xb = nm_randn(NB_SHAPE(8, 32, 1000), 1107, 1.0, 0), *db = nm_randn(NB_SHAPE(8, 32, 1000), 1108, 1.0, 0);
    nb_tensor *wb = nm_randn(NB_SHAPE(32), 1109, 1.0, 0);
    nb_tensor *res[2][2];
    for (int t = 0; t < 2; t++) {
        nm_mode(M512, t + 1);
        double s[2] = {4, 1e-5};
        const nb_tensor *inf[3] = {xb, wb, wb}, *inb[3] = {db, xb, wb};
        const char *sv;
        res[t][0] = nm_call(NB_OP_GROUP_NORM, NB_SHAPE(8, 32, 1000), inf, 3, s, 2, &sv);
        cr_assert_str_eq(sv, "avx512_group_norm");
        res[t][1] = nm_call(NB_OP_GROUP_NORM_BACKWARD, NB_SHAPE(8, 32, 1000), inb, 3, s, 2, &sv);
        cr_assert_str_eq(sv, "avx512_group_norm_backward");
    }
    nm_bitwise(res[0][0], res[1][0], "gn 1 vs 2 threads");
    nm_bitwise(res[0][1], res[1][1], "gn backward 1 vs 2 threads");
    nm_default();
    nm_gn(xb, wb, wb, db, 4, 1, "gn [8, 32, 1000]");
}

/* Through the public op with autograd (forward saving the stats, the fused
 * backward): x, weight and bias gradients bitwise avx2's, close to ref's. */
Test(avx512_norm, public_op_autograd) {
    float res[NMODES][4][3];
    for (int m = 0; m < NMODES; m++) {
        nm_mode(m, 0);
        nb_scope_begin();
        nb_tensor *x = nm_randn(NB_SHAPE(70, 100), 900, 2.0, 1.0), *w = nm_randn(NB_SHAPE(100), 901, 1.0, 1.0);
        nb_tensor *b = nm_randn(NB_SHAPE(100), 902, 1.0, 0), *r = nm_randn(NB_SHAPE(70, 100), 903, 1.0, 0);
        nb_set_requires_grad(x, true);
        nb_set_requires_grad(w, true);
        nb_set_requires_grad(b, true);
        nb_tensor *y = nb_layer_norm(x, NB_SHAPE(100), w, b, NULL);
        cr_assert_not_null(y, "%s", nb_last_error());
        if (m == M512) cr_assert_str_eq(nb__last_kernel(), "avx512_layer_norm");
        nb_tensor *loss = nb_sum_all(nb_mul(y, r));
        cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
        nb_tensor *g[4] = {y, nb_contiguous(nb_grad(x)), nb_contiguous(nb_grad(w)), nb_contiguous(nb_grad(b))};
        for (int j = 0; j < 4; j++) {
            const float *p = nb_data(g[j]);
            int64_t cnt = nb_numel(g[j]);
            res[m][j][0] = p[0];
            res[m][j][1] = p[cnt / 2 + 3];
            res[m][j][2] = p[cnt - 1];
        }
        nb_scope_end();
    }
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 3; i++) {
            cr_assert(nm_same(res[M512][j][i], res[M2][j][i]), "output %d value %d: avx512 %a, avx2 %a", j, i,
                      (double)res[M512][j][i], (double)res[M2][j][i]);
            cr_assert(fabs(res[M512][j][i] - res[MREF][j][i]) <= 1e-4 * (1 + fabs(res[MREF][j][i])),
                      "output %d value %d: %.9g vs ref %.9g", j, i, res[M512][j][i], res[MREF][j][i]);
        }
}
