/* test_avx512.c — the AVX-512 element-wise kernels
 * (src/kernels/x86/avx512/avx512_elementwise.c, vmath512.h): add sub mul
 * div maximum minimum add_scalar mul_scalar neg abs square relu, exp log
 * tanh sigmoid silu erf gelu (both forms), and the threshold, tanh,
 * sigmoid and gelu backwards, on F32 (contiguous, broadcast, strided).
 *
 * Each case runs the same operands through the registry capped at avx512
 * (asserting an avx512_* kernel served it), at avx2 (an avx2_* kernel) and
 * at ref, and asserts:
 *  - bitwise equality with the AVX2 result (NaN == NaN): vmath512.h is a
 *    lane-for-lane port of vmath.h, so any difference is a porting bug;
 *  - the AVX2 test's bounds against ref (test_avx2_elementwise.c): exp,
 *    log, tanh within 2 ULP and sigmoid 3 of the F64 ref kernel's result
 *    rounded to float (special values: of libm in double, the stable
 *    form); the exact ops (arithmetic, relu, the threshold / tanh /
 *    sigmoid backwards) bitwise equal to the F32 ref; silu, erf, gelu and
 *    gelu_backward bitwise equal to AVX2, whose bounds against ref
 *    test_avx2_elementwise.c asserts.
 * Sizes 0, 1, 7, 15, 16, 17, 33, 1023, 4097 (every tail length, 32-, 16-
 * and masked steps) at aligned and unaligned addresses, 1<<20 (split over
 * threads) and 4M+1 with an unaligned output (the non-temporal path with a
 * masked head); special values (±0, ±inf, NaN, denormals, FLT_MAX, the exp
 * overflow/underflow edges) at every lane position; the broadcast fast
 * paths (row, column, scalar, either side) and strided rows. Transposed
 * 2-D walks and F64 must be declined and served by AVX2 (ref for F64)
 * with the same results. The registry tries some AVX-512 kernels only
 * after AVX2 (by measurement, kernels.h): these tests ask for them first
 * (nb__isa_prefer) whenever they run under the avx512 cap.
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

static void w_teardown(void) {
    nb__isa_prefer = -1;
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}

static void w_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    const nb_cpu_features *c = nb_cpu();
    if (!(c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl && c->avx2_fma))
        cr_skip("no AVX-512 on this CPU");
    nb_scope_begin();
}

TestSuite(avx512_ew, .init = w_setup, .fini = w_teardown);

/* ---- the ops under test ---- */

typedef struct w_op {
    nb_op op;          /* registry op */
    const char *name;  /* the kernel's name after "avx512_" / "avx2_" */
    int nin;           /* tensor inputs */
    int ulp;           /* -1: bitwise equal to F32 ref; -2: to AVX2 only; else the ULP bound vs F64 */
    float lo, hi;      /* random in[0] drawn in [lo, hi) */
    float lo1, hi1;    /* random in[1] (the saved output y of the backwards) */
    double s;          /* scalar[0]: the scalar ops' operand, the threshold, GELU's form */
} w_op;

static const w_op w_ops[] = {
    {NB_OP_EXP, "exp", 1, 2, -100, 95, 0, 0, 0},
    {NB_OP_LOG, "log", 1, 2, -0.5f, 100, 0, 0, 0},
    {NB_OP_TANH, "tanh", 1, 2, -10, 10, 0, 0, 0},
    {NB_OP_SIGMOID, "sigmoid", 1, 3, -40, 40, 0, 0, 0},
    {NB_OP_TANH_BACKWARD, "tanh_backward", 2, -1, -10, 10, -1.2f, 1.2f, 0},
    {NB_OP_SIGMOID_BACKWARD, "sigmoid_backward", 2, -1, -10, 10, -0.2f, 1.2f, 0},
    {NB_OP_ADD, "add", 2, -1, -10, 10, -10, 10, 0},
    {NB_OP_SUB, "sub", 2, -1, -10, 10, -10, 10, 0},
    {NB_OP_MUL, "mul", 2, -1, -10, 10, -10, 10, 0},
    {NB_OP_DIV, "div", 2, -1, -10, 10, -10, 10, 0},
    {NB_OP_MAXIMUM, "maximum", 2, -1, -10, 10, -10, 10, 0},
    {NB_OP_MINIMUM, "minimum", 2, -1, -10, 10, -10, 10, 0},
    {NB_OP_ADD_SCALAR, "add_scalar", 1, -1, -10, 10, 0, 0, 0.3},
    {NB_OP_MUL_SCALAR, "mul_scalar", 1, -1, -10, 10, 0, 0, -1.7},
    {NB_OP_NEG, "neg", 1, -1, -10, 10, 0, 0, 0},
    {NB_OP_ABS, "abs", 1, -1, -10, 10, 0, 0, 0},
    {NB_OP_SQUARE, "square", 1, -1, -10, 10, 0, 0, 0},
    {NB_OP_RELU, "relu", 1, -1, -10, 10, 0, 0, 0},
    {NB_OP_THRESHOLD_BACKWARD, "threshold_backward", 2, -1, -10, 10, -1, 1, 0.0},
    {NB_OP_SILU, "silu", 1, -2, -40, 40, 0, 0, 0},
    {NB_OP_ERF, "erf", 1, -2, -6, 6, 0, 0, 0},
    {NB_OP_GELU, "gelu", 1, -2, -12, 12, 0, 0, 0.0},
    {NB_OP_GELU, "gelu", 1, -2, -12, 12, 0, 0, 1.0},   /* the tanh form */
    {NB_OP_GELU_BACKWARD, "gelu_backward", 2, -2, -5, 5, -12, 12, 0.0},
    {NB_OP_GELU_BACKWARD, "gelu_backward", 2, -2, -5, 5, -12, 12, 1.0},
};
#define W_NOPS (int)(sizeof w_ops / sizeof w_ops[0])

/* ---- values ---- */

static uint64_t w_rng = 0xD1B54A32D192ED03ull;
static double w_u01(void) {   /* xorshift64* in [0, 1) */
    return tu_u01(&w_rng);
}
static void w_fill(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * w_u01());
}

/* 37 values (prime, so cycling them puts each at every lane position) */
static const float w_special[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f, 1.4e-45f, -1.4e-45f, FLT_MIN, -FLT_MIN,
    FLT_MAX, -FLT_MAX, 1.0f, -1.0f, 0.5f, 1e-7f, -1e-7f, 3.0f, -3.0f, 10.0f, -10.0f, 20.0f, -20.0f,
    88.72f, 88.73f, 89.0f, -87.3f, -103.9f, -104.5f, -105.0f, 100.0f, -100.0f, 1e30f, -1e30f, 0.55f, 0.54999f};
#define W_NSPECIAL (int)(sizeof w_special / sizeof w_special[0])

/* Distance in representable floats (testutil). */
static double w_ulps(float got, float want) { return tu_ulps_f32(got, want); }
static bool w_same(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0; }

/* The stable double-precision oracle of a unary op (libm). */
static double w_oracle(nb_op op, double x) {
    switch (op) {
    case NB_OP_EXP: return exp(x);
    case NB_OP_LOG: return log(x);
    case NB_OP_TANH: return tanh(x);
    case NB_OP_SIGMOID: return 1 / (1 + exp(-x));
    default: return NAN;
    }
}

/* ---- running ---- */

/* Runs o on (out, in0, in1) with the ISA capped to isa; returns the kernel's name. */
static const char *w_run(const w_op *o, nb_tensor *out, const nb_tensor *in0, const nb_tensor *in1, const char *isa) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0, "%s", nb_last_error());
    if (!strcmp(isa, "avx512")) nb__isa_prefer = NB_ISA_AVX512;   /* also the kernels ranked below AVX2 */
    nb_kernel_args a = {.op = o->op, .out = out, .in = {in0, in1}, .nin = o->nin, .scalar = {o->s}};
    cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s: %s", o->name, nb_last_error());
    const char *k = nb__last_kernel();
    cr_assert_not_null(k);
    return k;
}

/* Asserts kernel k is prefix + o->name (e.g. "avx512_" "exp"). */
static void w_served_by(const w_op *o, const char *k, const char *prefix, const char *what) {
    size_t n = strlen(prefix);
    cr_assert(strncmp(k, prefix, n) == 0 && strcmp(k + n, o->name) == 0, "%s %s: served by %s, want %s%s", o->name,
              what, k, prefix, o->name);
}

/* A contiguous 1-D F32 tensor of v[0..n) whose data starts `off` floats
 * into its storage (off 1: not 16- or 64-byte aligned). */
static nb_tensor *w_vec(const float *v, int64_t n, int off) {
    nb_tensor *t = nb_slice(nb_empty(NB_SHAPE(n + off), NB_F32), 0, off, n + off, 1);
    cr_assert(t && nb_is_contiguous(t), "%s", nb_last_error());
    if (n) memcpy(nb_data(t), v, sizeof *v * (size_t)n);
    return t;
}

/* An uninitialised-looking (NaN) contiguous output of n floats at offset off. */
static nb_tensor *w_out(int64_t n, int off) {
    nb_tensor *t = nb_slice(nb_empty(NB_SHAPE(n + off), NB_F32), 0, off, n + off, 1);
    cr_assert(t && nb_fill_(t, NAN), "%s", nb_last_error());
    return t;
}

/* o on contiguous x (and y) of n elements: avx512 must serve it, bitwise
 * equal to avx2, within the bounds against ref. */
static void w_check(const w_op *o, nb_tensor *x, nb_tensor *y, int out_off, const char *what) {
    int64_t n = nb_numel(x);
    nb_tensor *o5 = w_out(n, out_off), *o2 = w_out(n, out_off), *orf = w_out(n, 0);
    w_served_by(o, w_run(o, o5, x, y, "avx512"), "avx512_", what);
    w_served_by(o, w_run(o, o2, x, y, "avx2"), "avx2_", what);
    const char *kr = w_run(o, orf, x, y, "ref");
    cr_assert(strncmp(kr, "ref_", 4) == 0, "%s %s: ref run served by %s", o->name, what, kr);
    const float *g5 = nb_data(o5), *g2 = nb_data(o2), *gr = nb_data(orf), *xv = nb_data(x);
    for (int64_t i = 0; i < n; i++)
        cr_assert(w_same(g5[i], g2[i]), "%s %s: element %lld: avx512 %a, avx2 %a", o->name, what, (long long)i,
                  (double)g5[i], (double)g2[i]);
    if (o->ulp == -2) return;   /* AVX2's bounds against ref hold by the equality */
    if (o->ulp < 0) {
        for (int64_t i = 0; i < n; i++)
            cr_assert(w_same(g5[i], gr[i]), "%s %s: element %lld: avx512 %a, ref %a", o->name, what, (long long)i,
                      (double)g5[i], (double)gr[i]);
        return;
    }
    nb_tensor *x64 = nb_to_dtype(x, NB_F64), *o64 = nb_empty(NB_SHAPE(n), NB_F64);
    cr_assert(x64 && o64, "%s", nb_last_error());
    w_run(o, o64, x64, NULL, "ref");
    const double *w = nb_data(o64);
    for (int64_t i = 0; i < n; i++) {
        double u = w_ulps(g5[i], (float)w[i]);
        cr_assert(u <= o->ulp, "%s %s: x = %a: avx512 %a, f64 ref %a (%g ULP)", o->name, what, (double)xv[i],
                  (double)g5[i], w[i], u);
    }
}

/* ---- sizes, alignment, threads ---- */

static const int64_t w_sizes[] = {0, 1, 7, 15, 16, 17, 33, 1023, 4097};

Test(avx512_ew, sizes_and_alignments) {
    for (int oi = 0; oi < W_NOPS; oi++) {
        const w_op *o = &w_ops[oi];
        for (size_t si = 0; si < sizeof w_sizes / sizeof w_sizes[0]; si++) {
            int64_t n = w_sizes[si];
            float *a = malloc(sizeof *a * (size_t)(n + 1)), *b = malloc(sizeof *b * (size_t)(n + 1));
            w_fill(a, n, o->lo, o->hi);
            w_fill(b, n, o->lo1, o->hi1);
            for (int off = 0; off < 2; off++) {
                nb_tensor *x = w_vec(a, n, off), *y = o->nin > 1 ? w_vec(b, n, 1 - off) : NULL;
                char what[64];
                snprintf(what, sizeof what, "n=%lld offset %d", (long long)n, off);
                w_check(o, x, y, off, what);
            }
            free(a);
            free(b);
        }
    }
}

/* 1<<20 elements: every thread runs (grain 8192 or 32768); 4M+1 with an
 * unaligned output: non-temporal stores after a masked head, per thread. */
Test(avx512_ew, threaded_and_streaming_sizes) {
    const int64_t sizes[] = {1 << 20, (4 << 20) + 1};
    for (int si = 0; si < 2; si++) {
        int64_t n = sizes[si];
        float *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
        for (int oi = 0; oi < W_NOPS; oi++) {
            const w_op *o = &w_ops[oi];
            nb_scope_begin();   /* frees this op's ~150 MB before the next */
            w_fill(a, n, o->lo, o->hi);
            w_fill(b, n, o->lo1, o->hi1);
            nb_tensor *x = w_vec(a, n, 0), *y = o->nin > 1 ? w_vec(b, n, 0) : NULL;
            char what[64];
            snprintf(what, sizeof what, "n=%lld", (long long)n);
            w_check(o, x, y, si, what);
            nb_scope_end();
        }
        free(a);
        free(b);
    }
}

/* ---- special values ---- */

/* Specials cycled over 4097 elements (each at every lane position and in
 * the tail): unary ops bitwise against avx2 and within the bound of the
 * libm oracle; the backwards over every (g, y) pair of specials, bitwise
 * against avx2 and ref. */
Test(avx512_ew, special_values) {
    const int64_t n = 4097, K = W_NSPECIAL;
    float *v = malloc(sizeof *v * (size_t)n), *g = malloc(sizeof *g * (size_t)(K * K)),
          *yy = malloc(sizeof *yy * (size_t)(K * K));
    for (int64_t i = 0; i < n; i++) v[i] = w_special[i % K];
    for (int64_t i = 0; i < K * K; i++) g[i] = w_special[i / K], yy[i] = w_special[i % K];
    for (int oi = 0; oi < W_NOPS; oi++) {
        const w_op *o = &w_ops[oi];
        if (o->nin > 1) {
            w_check(o, w_vec(g, K * K, 0), w_vec(yy, K * K, 0), 0, "special pairs");
            continue;
        }
        nb_tensor *x = w_vec(v, n, 0), *o5 = w_out(n, 0), *o2 = w_out(n, 0);
        if (o->ulp < 0) {   /* exact or AVX2-bitwise ops: w_check's comparisons */
            w_check(o, x, NULL, 0, "specials");
            continue;
        }
        w_served_by(o, w_run(o, o5, x, NULL, "avx512"), "avx512_", "specials");
        w_served_by(o, w_run(o, o2, x, NULL, "avx2"), "avx2_", "specials");
        const float *y5 = nb_data(o5), *y2 = nb_data(o2);
        for (int64_t i = 0; i < n; i++) {
            float w = (float)w_oracle(o->op, v[i]);
            double u = w_ulps(y5[i], w);
            cr_assert(w_same(y5[i], y2[i]), "%s(%a) at %lld: avx512 %a, avx2 %a", o->name, (double)v[i], (long long)i,
                      (double)y5[i], (double)y2[i]);
            cr_assert(u <= o->ulp, "%s(%a) = %a, want %a (%g ULP)", o->name, (double)v[i], (double)y5[i], (double)w, u);
        }
    }
    free(v);
    free(g);
    free(yy);
    /* the documented edges, spelled out (vmath.h's header) */
    const float xs[] = {INFINITY, -INFINITY, 89.0f, -105.0f, 0.0f, 0.0f, -1.0f, -0.0f, -50.0f};
    nb_tensor *x = w_vec(xs, 9, 0), *e = w_out(9, 0), *l = w_out(9, 0), *t = w_out(9, 0);
    w_run(&w_ops[0], e, x, NULL, "avx512");
    w_run(&w_ops[1], l, x, NULL, "avx512");
    w_run(&w_ops[2], t, x, NULL, "avx512");
    const float *ey = nb_data(e), *ly = nb_data(l), *ty = nb_data(t);
    cr_assert(isinf(ey[0]) && ey[0] > 0 && ey[1] == 0 && isinf(ey[2]) && ey[3] == 0 && ey[4] == 1);
    cr_assert(isinf(ly[0]) && ly[0] > 0 && isnan(ly[1]) && isnan(ly[3]) && ly[4] == -INFINITY && isnan(ly[6]));
    cr_assert(ty[0] == 1 && ty[1] == -1 && ty[4] == 0 && !signbit(ty[4]) && ty[7] == 0 && signbit(ty[7]) &&
              ty[8] == -1);
}

/* ---- layouts: broadcast and strided rows served, transposed walks declined ---- */

/* o on (M, N) operands x, y (views of any strides, y NULL for unary ops):
 * run at the avx512 cap (served by `want`: "avx512_" or "avx2_"), at avx2
 * and at ref; the avx512-cap result bitwise the avx2 one and, for the
 * exact ops, ref's. */
static void w_check2d(const w_op *o, const nb_tensor *x, const nb_tensor *y, const char *want, const char *what) {
    nb_tensor *o5 = nb_empty(nb_dims_get(x), NB_F32), *o2 = nb_empty(nb_dims_get(x), NB_F32);
    nb_tensor *orf = nb_empty(nb_dims_get(x), NB_F32);
    cr_assert(o5 && o2 && orf, "%s", nb_last_error());
    w_served_by(o, w_run(o, o5, x, y, "avx512"), want, what);
    w_served_by(o, w_run(o, o2, x, y, "avx2"), "avx2_", what);
    w_run(o, orf, x, y, "ref");
    const float *g5 = nb_data(o5), *g2 = nb_data(o2), *gr = nb_data(orf);
    for (int64_t i = 0; i < nb_numel(o5); i++) {
        cr_assert(w_same(g5[i], g2[i]), "%s %s: element %lld: avx512 cap %a, avx2 %a", o->name, what, (long long)i,
                  (double)g5[i], (double)g2[i]);
        if (o->ulp == -1)
            cr_assert(w_same(g5[i], gr[i]), "%s %s: element %lld: avx512 %a, ref %a", o->name, what, (long long)i,
                      (double)g5[i], (double)gr[i]);
    }
}

/* The broadcast fast paths of every op: a row [N], a column [M, 1] and a
 * scalar expanded to [M, N], on either side of the binary ops, at row
 * lengths that take every loop (32-, 16-lane steps, masked tails). */
Test(avx512_ew, broadcast_fast_paths) {
    const int64_t M = 5, Ns[] = {1, 7, 16, 17, 33, 100};
    float *a = malloc(sizeof *a * M * 100), *b = malloc(sizeof *b * M * 100);
    for (int oi = 0; oi < W_NOPS; oi++) {
        const w_op *o = &w_ops[oi];
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
            int64_t N = Ns[ni];
            nb_scope_begin();
            w_fill(a, M * N, o->lo, o->hi);
            w_fill(b, M * N, o->lo1, o->hi1);
            nb_tensor *xf = nb_from_data(NB_SHAPE(M, N), NB_F32, a), *yf = nb_from_data(NB_SHAPE(M, N), NB_F32, b);
            nb_tensor *xr = nb_expand(nb_from_data(NB_SHAPE(N), NB_F32, a), NB_SHAPE(M, N));
            nb_tensor *yr = nb_expand(nb_from_data(NB_SHAPE(N), NB_F32, b), NB_SHAPE(M, N));
            nb_tensor *yc = nb_expand(nb_from_data(NB_SHAPE(M, 1), NB_F32, b), NB_SHAPE(M, N));
            nb_tensor *xs = nb_expand(nb_from_data(NB_SHAPE(1, 1), NB_F32, a), NB_SHAPE(M, N));
            nb_tensor *ys = nb_expand(nb_from_data(NB_SHAPE(1, 1), NB_F32, b), NB_SHAPE(M, N));
            cr_assert(xf && yf && xr && yr && yc && xs && ys, "%s", nb_last_error());
            char what[64];
#define W_CASE(X, Y, NAME)                                                               \
    do {                                                                                 \
        snprintf(what, sizeof what, "%s, N %lld", NAME, (long long)N);                    \
        w_check2d(o, X, o->nin > 1 ? Y : NULL, "avx512_", what);                         \
    } while (0)
            W_CASE(xf, yf, "same shape");
            W_CASE(xr, yf, "x a row");
            W_CASE(xs, yf, "x a scalar");
            if (o->nin > 1) {
                W_CASE(xf, yr, "y a row");
                W_CASE(xf, yc, "y a column");
                W_CASE(xf, ys, "y a scalar");
                W_CASE(xr, yc, "x a row, y a column");
            }
#undef W_CASE
            nb_scope_end();
        }
    }
    free(a);
    free(b);
}

/* Strided rows are served (gathered 16 at a time); a transposed input or
 * output (a 2-D walk across rows) is declined to AVX2's packed tiles, and
 * F64 to ref: the same results either way. */
Test(avx512_ew, strided_served_transposed_declined) {
    const int64_t M = 37, N = 29;
    float *a = malloc(sizeof *a * M * N * 2), *b = malloc(sizeof *b * M * N * 2);
    for (int oi = 0; oi < W_NOPS; oi++) {
        const w_op *o = &w_ops[oi];
        w_fill(a, 2 * M * N, o->lo, o->hi);
        w_fill(b, 2 * M * N, o->lo1, o->hi1);
        /* xt: [M,N] transposed in memory; xc: the same values contiguous */
        nb_tensor *xt = nb_transpose(nb_from_data(NB_SHAPE(N, M), NB_F32, a), 0, 1);
        nb_tensor *xc = nb_contiguous(xt);
        nb_tensor *yc = nb_from_data(NB_SHAPE(M, N), NB_F32, b);
        cr_assert(xt && xc && yc && !nb_is_contiguous(xt), "%s", nb_last_error());
        w_check2d(o, xt, yc, "avx2_", "transposed input");
        w_check2d(o, xc, yc, "avx512_", "the same values contiguous");
        /* every 2nd element of a wider row: strided rows */
        nb_tensor *xs = nb_slice(nb_from_data(NB_SHAPE(M, 2 * N), NB_F32, a), 1, 0, 2 * N, 2);
        nb_tensor *ys = nb_slice(nb_from_data(NB_SHAPE(M, 2 * N), NB_F32, b), 1, 1, 2 * N, 2);
        cr_assert(xs && ys, "%s", nb_last_error());
        w_check2d(o, xs, ys, "avx512_", "strided rows");
        w_check2d(o, xc, ys, "avx512_", "strided y");
        /* a transposed (non-contiguous) output */
        nb_tensor *otr = nb_transpose(nb_empty(NB_SHAPE(N, M), NB_F32), 0, 1), *oc = nb_empty(NB_SHAPE(M, N), NB_F32);
        w_served_by(o, w_run(o, otr, xc, o->nin > 1 ? yc : NULL, "avx512"), "avx2_", "transposed out");
        w_run(o, oc, xc, o->nin > 1 ? yc : NULL, "avx512");
        nb_tensor *otc = nb_contiguous(otr);
        const float *g2 = nb_data(otc), *gc = nb_data(oc);
        for (int64_t i = 0; i < M * N; i++)
            cr_assert(w_same(g2[i], gc[i]), "%s: element %lld: transposed out %a, contiguous %a", o->name,
                      (long long)i, (double)g2[i], (double)gc[i]);
        /* F64 never reaches these F32 kernels */
        nb_tensor *x64 = nb_to_dtype(xc, NB_F64), *y64 = nb_to_dtype(yc, NB_F64);
        nb_tensor *o64 = nb_empty(NB_SHAPE(M, N), NB_F64);
        const char *k = w_run(o, o64, x64, o->nin > 1 ? y64 : NULL, "avx512");
        cr_assert(strncmp(k, "ref_", 4) == 0, "%s F64: served by %s", o->name, k);
    }
    free(a);
    free(b);
}

/* The registry: under the avx512 cap (the default on this CPU) avx512_*
 * where it was measured faster, else avx2_* (kernels.h); avx2_* under
 * NB_ISA=avx2, ref under ref. */
Test(avx512_ew, registry_choice_per_cap) {
    static const char *const isas[] = {"avx512", "avx2", "ref"};
    static const char *const prefixes[] = {"avx512_", "avx2_", "ref_"};
    for (int c = 0; c < 3; c++) {
        cr_assert_eq(nb_init(&(nb_init_opts){.isa = isas[c], .abort_on_error = -1}), 0, "%s", nb_last_error());
        for (int oi = 0; oi < W_NOPS; oi++) {
            const char *k = nb_kernel_chosen(w_ops[oi].op, NB_F32);
            const char *pre = c == 0 && k && !strncmp(k, "avx2_", 5) ? "avx2_" : prefixes[c];
            cr_assert(k && strncmp(k, pre, strlen(pre)) == 0, "%s under %s: chosen %s", w_ops[oi].name, isas[c],
                      k ? k : "(none)");
            if (c < 2) w_served_by(&w_ops[oi], k, pre, "chosen");
        }
    }
    /* with no cap asked for (opts nor NB_ISA), the CPU's best: avx512 */
    const char *env = getenv("NB_ISA");
    if (!env || !*env) {
        cr_assert_eq(nb_init(NULL), 0, "%s", nb_last_error());
        cr_assert_eq(nb_isa_active(), NB_ISA_AVX512);
        cr_assert_str_eq(nb_kernel_chosen(NB_OP_EXP, NB_F32), "avx512_exp");
    }
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx512", .abort_on_error = -1}), 0);
    /* and a public op goes through it */
    nb_tensor *x = nb_full(NB_SHAPE(33), NB_F32, 2.0f);
    cr_assert_not_null(nb_exp(x), "%s", nb_last_error());
    cr_assert_str_eq(nb__last_kernel(), "avx512_exp");
    /* nb__isa_prefer puts every AVX-512 kernel first, whatever its rank */
    nb__isa_prefer = NB_ISA_AVX512;
    cr_assert_not_null(nb_add(x, x), "%s", nb_last_error());
    cr_assert_str_eq(nb__last_kernel(), "avx512_add");
    nb__isa_prefer = NB_ISA_AVX2;
    cr_assert_not_null(nb_exp(x), "%s", nb_last_error());
    cr_assert_str_eq(nb__last_kernel(), "avx2_exp");
}
