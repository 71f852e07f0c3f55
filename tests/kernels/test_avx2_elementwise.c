/* test_avx2_elementwise.c — the AVX2 element-wise kernels
 * (src/kernels/x86/avx2/avx2_elementwise.c, vmath.h) against the ref kernels;
 * the measured maxima are logged by math_ops_full_range_sweep.
 *
 * Each case runs the same operands through the registry three times: ISA
 * capped to avx2 (asserting an avx2_* kernel served it), capped to ref in
 * F32, and capped to ref in F64 (inputs converted exactly). Bounds asserted:
 *  - exact ops (add sub mul div maximum minimum add/mul_scalar mse_loss l1_loss neg abs square
 *    sqrt relu fill copy rsqrt reciprocal sign leaky_relu clamp (with and
 *    without bounds)): bitwise equal to the F32 ref (NaN == NaN);
 *  - math ops: max ULP distance from the F64 ref result rounded to float:
 *    sin, cos 1; exp, log, tanh, erf 2; sigmoid 3; silu, elu, softplus 4; pow and pow_scalar (any exponent,
 *    tensor or scalar; the two-input ops against ref's double pow of both) 1; gelu (erf) 8; gelu (tanh form)
 *    8 + 3|2u| (u its tanh argument: the rounding of u is amplified in the
 *    negative tail). Where the F64 ref itself cancels (deep tails: special
 *    values and the full-range sweep) the oracle is libm in double with the
 *    stable form (erfc for gelu, x/(1+e^{-2u}) for the tanh form). The
 *    bounds hold for denormal results too.
 * Layouts: sizes 0, 1, 7, 15, 16, 17, 33, 1023, 4097 contiguous and strided;
 * transposed and sliced 2-D operands, a permuted 3-D one, a transposed
 * output; scalar (0-dim), row [M,N]+[N] and column [M,N]+[M,1] broadcast;
 * sizes large enough to be split over OpenMP threads (by rows and inside
 * one long row). Special values: ±0, ±inf, NaN, denormals, FLT_MAX, the
 * exp overflow/underflow edges, large magnitudes.
 * Comparisons (tensor and scalar), logical ops, where and masked_fill:
 * BOOL (or F32) results bitwise against F32 ref at the same sizes and
 * layouts, each input in turn a scalar, row or column broadcast, threaded
 * sizes, every pair of special values and each special as the scalar
 * (where: its one-pass flat path and its two-pass general one). Skipped
 * without AVX2.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

static void ew_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}

static void ew_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    if (!nb_cpu()->avx2_fma) cr_skip("no AVX2+FMA on this CPU");
    nb_scope_begin();
}

TestSuite(avx2_ew, .init = ew_setup, .fini = ew_teardown);

/* ---- the ops under test ---- */

typedef struct ew_op {
    nb_op op;          /* registry op */
    const char *name;  /* for messages */
    int nin;           /* tensor inputs */
    double s0;         /* scalar[0] */
    int ulp;           /* -1: bitwise equal to F32 ref; else the ULP bound vs F64 */
    float lo, hi;      /* random inputs drawn in [lo, hi) */
    double s1;         /* scalar[1] (CLAMP's max) */
} ew_op;

#define GELU_TANH_ULP 1000   /* marker: the bound depends on x (ew_bound) */
static const ew_op ew_ops[] = {
    {NB_OP_ADD, "add", 2, 0, -1, -10, 10, 0},
    {NB_OP_SUB, "sub", 2, 0, -1, -10, 10, 0},
    {NB_OP_MUL, "mul", 2, 0, -1, -10, 10, 0},
    {NB_OP_DIV, "div", 2, 0, -1, -10, 10, 0},
    {NB_OP_MAXIMUM, "maximum", 2, 0, -1, -2, 2, 0},
    {NB_OP_MINIMUM, "minimum", 2, 0, -1, -2, 2, 0},
    {NB_OP_ADD_SCALAR, "add_scalar", 1, 1.3, -1, -10, 10, 0},
    {NB_OP_MUL_SCALAR, "mul_scalar", 1, -0.7, -1, -10, 10, 0},
    {NB_OP_NEG, "neg", 1, 0, -1, -10, 10, 0},
    {NB_OP_ABS, "abs", 1, 0, -1, -10, 10, 0},
    {NB_OP_SQUARE, "square", 1, 0, -1, -10, 10, 0},
    {NB_OP_SQRT, "sqrt", 1, 0, -1, -1, 100, 0},
    {NB_OP_RELU, "relu", 1, 0, -1, -10, 10, 0},
    {NB_OP_FILL, "fill", 0, 3.7, -1, 0, 0, 0},
    {NB_OP_COPY, "copy", 1, 0, -1, -10, 10, 0},
    {NB_OP_EXP, "exp", 1, 0, 2, -100, 95, 0},
    {NB_OP_LOG, "log", 1, 0, 2, -0.5f, 100, 0},
    {NB_OP_TANH, "tanh", 1, 0, 2, -10, 10, 0},
    {NB_OP_SIGMOID, "sigmoid", 1, 0, 3, -40, 40, 0},
    {NB_OP_SILU, "silu", 1, 0, 4, -40, 40, 0},
    {NB_OP_GELU, "gelu", 1, 0, 8, -5, 5, 0},
    {NB_OP_GELU, "gelu_tanh", 1, 1, GELU_TANH_ULP, -4, 4, 0},
    {NB_OP_ERF, "erf", 1, 0, 2, -5, 5, 0},
    {NB_OP_RSQRT, "rsqrt", 1, 0, -1, -1, 100, 0},
    {NB_OP_RECIPROCAL, "reciprocal", 1, 0, -1, -10, 10, 0},
    {NB_OP_SIGN, "sign", 1, 0, -1, -10, 10, 0},
    {NB_OP_LEAKY_RELU, "leaky_relu", 1, 0.01, -1, -10, 10, 0},
    {NB_OP_CLAMP, "clamp", 1, -2, -1, -5, 5, 3},
    {NB_OP_CLAMP, "clamp_min", 1, -2, -1, -5, 5, NAN},
    {NB_OP_CLAMP, "clamp_max", 1, NAN, -1, -5, 5, 3},
    {NB_OP_CLAMP, "clamp_min_above_max", 1, 2, -1, -5, 5, -1},
    {NB_OP_ELU, "elu", 1, 1.0, 4, -10, 5, 0},
    {NB_OP_ELU, "elu_alpha", 1, 0.3, 4, -2, 2, 0},
    {NB_OP_SOFTPLUS, "softplus", 1, 1.0, 4, -30, 30, 20},
    {NB_OP_SOFTPLUS, "softplus_beta", 1, 2.5, 4, -10, 10, 15},
    {NB_OP_SOFTPLUS, "softplus_negative_beta", 1, -0.5, 4, -60, 60, 20},
    /* pow_scalar's served exponents (others stay on ref): 1 ULP from the double pow */
    {NB_OP_POW_SCALAR, "pow_scalar_2", 1, 2, 1, -10, 10, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_3", 1, 3, 1, -10, 10, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_4", 1, 4, 1, -10, 10, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_-1", 1, -1, 1, -10, 10, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_-2", 1, -2, 1, -10, 10, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_0.5", 1, 0.5, 1, -1, 100, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_-0.5", 1, -0.5, 1, -1, 100, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_0", 1, 0, 1, -10, 10, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_1", 1, 1, 1, -10, 10, 0},
    /* any other exponent: e^(y ln x) in double (negative bases with an integer y), 1 ULP */
    {NB_OP_POW_SCALAR, "pow_scalar_1.5", 1, 1.5, 1, -1, 100, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_-2.75", 1, -2.75, 1, -5, 60, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_7", 1, 7, 1, -30, 30, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_0.3125", 1, 0.3125, 1, 0, 1000, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_-0.375", 1, -0.375, 1, 0, 10, 0},
    {NB_OP_POW_SCALAR, "pow_scalar_40", 1, 40, 1, 0, 20, 0},   /* overflows to inf past ~9.2 */
    {NB_OP_POW, "pow", 2, 0, 1, 0.01f, 6, 0},
    {NB_OP_POW, "pow_negative", 2, 0, 1, -4, 4, 0},   /* mostly NaN (powf lane by lane) */
    {NB_OP_SIN, "sin", 1, 0, 1, -10, 10, 0},
    {NB_OP_COS, "cos", 1, 0, 1, -10, 10, 0},
    {NB_OP_SIN, "sin_wide", 1, 0, 1, -70000, 70000, 0},   /* past 65536: sinf lane by lane */
    {NB_OP_COS, "cos_wide", 1, 0, 1, -70000, 70000, 0},
    {NB_OP_MSE_LOSS, "mse_loss", 2, 0, -1, -10, 10, 0},
    {NB_OP_L1_LOSS, "l1_loss", 2, 0, -1, -10, 10, 0},
};
#define EW_NOPS (int)(sizeof ew_ops / sizeof ew_ops[0])

/* ---- values ---- */

static uint64_t ew_rng = 0x9E3779B97F4A7C15ull;
static double ew_u01(void) {   /* xorshift64* in [0, 1) */
    return tu_u01(&ew_rng);
}
static void ew_fill(float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * ew_u01());
}

static const float ew_special[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f, 1.4e-45f, -1.4e-45f, FLT_MIN, -FLT_MIN,
    FLT_MAX, -FLT_MAX, 1.0f, -1.0f, 0.5f, 1e-7f, -1e-7f, 3.0f, -3.0f, 10.0f, -10.0f, 20.0f, -20.0f,
    88.72f, 88.73f, -87.3f, -103.9f, -104.5f, 100.0f, -100.0f, 1e30f, -1e30f, 0.55f, -0.55f, 0.54999f};
#define EW_NSPECIAL (int)(sizeof ew_special / sizeof ew_special[0])

/* Distance in representable floats (testutil). */
static double ew_ulps(float got, float want) { return tu_ulps_f32(got, want); }
static bool ew_same(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0; }

/* The ULP bound of op at input x (oracle result w). */
static double ew_bound(const ew_op *o, float x, float w) {
    double b = o->ulp;
    if (o->ulp == GELU_TANH_ULP) {
        double u2 = 2 * 0.7978845608 * ((double)x + 0.044715 * (double)x * x * x);
        b = isnan(u2) ? 8 : 8 + 3 * fabs(u2);
    }
    (void)w;
    return b;
}

/* The stable double-precision oracle of a math op (libm); y: the second
 * input of a two-input op. */
static double ew_oracle2(const ew_op *o, double x, double y) {
    switch (o->op) {
    case NB_OP_POW: return pow(x, y);
    case NB_OP_EXP: return exp(x);
    case NB_OP_LOG: return log(x);
    case NB_OP_TANH: return tanh(x);
    case NB_OP_SIGMOID: return 1 / (1 + exp(-x));
    case NB_OP_SILU: return x / (1 + exp(-x));
    case NB_OP_ERF: return erf(x);
    case NB_OP_GELU:
        if (o->s0 == 0) return 0.5 * x * erfc(-x * 0.70710678118654752440);
        return x / (1 + exp(-2 * 0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    case NB_OP_ELU: return x > 0 ? x : o->s0 * expm1(x);
    case NB_OP_POW_SCALAR: return pow(x, o->s0);
    case NB_OP_SIN: return sin(x);
    case NB_OP_COS: return cos(x);
    case NB_OP_SOFTPLUS: {
        double z = x * o->s0;
        return z > o->s1 ? x : (fmax(z, 0) + log1p(exp(-fabs(z)))) / o->s0;
    }
    default: return NAN;
    }
}
static double ew_oracle(const ew_op *o, double x) { return ew_oracle2(o, x, NAN); }

/* ---- operands ---- */

/* A [M,N] F32 tensor with logical values v (C order) in layout:
 * 'c' contiguous, 't' transposed in memory, 's' every 2nd column of a wider
 * tensor (the gaps hold NaN). Belongs to the open scope. */
static nb_tensor *ew_make(const float *v, int64_t M, int64_t N, char layout) {
    if (layout == 'c') return nb_from_data(NB_SHAPE(M, N), NB_F32, v);
    if (layout == 't') {
        float *w = malloc(sizeof *w * (size_t)(M * N + 1));
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) w[j * M + i] = v[i * N + j];
        nb_tensor *t = nb_transpose(nb_from_data(NB_SHAPE(N, M), NB_F32, w), 0, 1);
        free(w);
        return t;
    }
    float *w = malloc(sizeof *w * (size_t)(2 * M * N + 1));
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) w[i * 2 * N + 2 * j] = v[i * N + j], w[i * 2 * N + 2 * j + 1] = NAN;
    nb_tensor *t = nb_slice(nb_from_data(NB_SHAPE(M, 2 * N), NB_F32, w), 1, 0, 2 * N, 2);
    free(w);
    return t;
}

/* Runs op on (out, in0, in1) with the ISA capped to isa; returns the kernel's name. */
static const char *ew_run(const ew_op *o, nb_tensor *out, const nb_tensor *in0, const nb_tensor *in1,
                          const char *isa) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0, "%s", nb_last_error());
    nb_kernel_args a = {.op = o->op, .out = out, .in = {in0, in1}, .nin = o->nin, .scalar = {o->s0, o->s1}};
    cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s: %s", o->name, nb_last_error());
    return nb__last_kernel();
}

/* Logical values of t as floats (malloc'ed). */
static float *ew_values(nb_tensor *t) {
    int64_t n = nb_numel(t);
    float *v = malloc(sizeof *v * (size_t)(n + 1));
    nb_tensor *c = nb_contiguous(nb_to_dtype(t, NB_F32));
    cr_assert_not_null(c, "%s", nb_last_error());
    if (n) memcpy(v, nb_data(c), sizeof *v * (size_t)n);
    return v;
}

/* An output of like's shape: mode 0 a fresh tensor, 1 transposed in memory,
 * 2 columns 1..N of a wider [M, N+1] tensor (rows start off 32-byte
 * alignment); modes 1 and 2 are 2-D only. */
static nb_tensor *ew_out(const nb_tensor *like, nb_dtype dt, int mode) {
    if (!mode) return nb_empty(nb_dims_get(like), dt);
    const int64_t *s = nb_shape(like);
    if (mode == 1) return nb_transpose(nb_empty(NB_SHAPE(s[1], s[0]), dt), 0, 1);
    return nb_slice(nb_empty(NB_SHAPE(s[0], s[1] + 1), dt), 1, 1, s[1] + 1, 1);
}

/* Checks op on in0/in1 (views of out's shape): avx2 against F32 ref
 * (bitwise) or F64 ref (ULP bound). Returns the max ULP seen. */
static double ew_check(const ew_op *o, nb_tensor *in0, nb_tensor *in1, nb_tensor *shape_of, int out_mode,
                       const char *what) {
    int64_t n = nb_numel(shape_of);
    nb_tensor *oa = ew_out(shape_of, NB_F32, out_mode), *orf = ew_out(shape_of, NB_F32, out_mode);
    /* outputs start as NaN so that an element the kernel skips shows */
    cr_assert(nb_fill_(oa, NAN) && nb_fill_(orf, NAN), "%s", nb_last_error());
    const char *k = ew_run(o, oa, in0, in1, "avx2");
    cr_assert(k && strncmp(k, "avx2_", 5) == 0, "%s %s: served by %s, not avx2", o->name, what, k ? k : "?");
    ew_run(o, orf, in0, in1, "ref");
    float *ga = ew_values(oa), *gr = ew_values(orf);
    double worst = 0;
    if (o->ulp < 0) {
        for (int64_t i = 0; i < n; i++)
            cr_assert(ew_same(ga[i], gr[i]), "%s %s: element %lld: avx2 %a, ref %a", o->name, what, (long long)i,
                      (double)ga[i], (double)gr[i]);
    } else {
        nb_tensor *i64 = nb_to_dtype(in0, NB_F64), *j64 = in1 ? nb_to_dtype(in1, NB_F64) : NULL;
        nb_tensor *o64 = nb_empty(nb_dims_get(shape_of), NB_F64);
        ew_run(o, o64, i64, j64, "ref");
        nb_tensor *oc = nb_contiguous(o64);
        const double *w = nb_data(oc);
        float *x = ew_values(in0);
        for (int64_t i = 0; i < n; i++) {
            double u = ew_ulps(ga[i], (float)w[i]);
            cr_assert(u <= ew_bound(o, x[i], (float)w[i]), "%s %s: x = %a: avx2 %a, f64 ref %a (%g ULP)", o->name,
                      what, (double)x[i], (double)ga[i], w[i], u);
            if (u > worst) worst = u;
        }
        free(x);
    }
    free(ga);
    free(gr);
    return worst;
}

/* ---- sizes and layouts ---- */

static const int64_t ew_sizes[] = {0, 1, 7, 15, 16, 17, 33, 1023, 4097};

Test(avx2_ew, sizes_contiguous_and_strided) {
    for (int oi = 0; oi < EW_NOPS; oi++) {
        const ew_op *o = &ew_ops[oi];
        for (size_t si = 0; si < sizeof ew_sizes / sizeof ew_sizes[0]; si++) {
            int64_t n = ew_sizes[si];
            float *a = malloc(sizeof *a * (size_t)(n + 1)), *b = malloc(sizeof *b * (size_t)(n + 1));
            ew_fill(a, n, o->lo, o->hi);
            ew_fill(b, n, o->lo, o->hi);
            for (const char *l = "cs"; *l; l++) {
                nb_tensor *x = ew_make(a, 1, n, *l), *y = ew_make(b, 1, n, *l);
                char what[64];
                snprintf(what, sizeof what, "n=%lld layout %c", (long long)n, *l);
                ew_check(o, x, o->nin > 1 ? y : NULL, x, 0, what);
            }
            free(a);
            free(b);
        }
    }
}

Test(avx2_ew, transposed_sliced_permuted_and_transposed_out) {
    const int64_t M = 37, N = 29;
    float *a = malloc(sizeof *a * M * N), *b = malloc(sizeof *b * M * N);
    for (int oi = 0; oi < EW_NOPS; oi++) {
        const ew_op *o = &ew_ops[oi];
        ew_fill(a, M * N, o->lo, o->hi);
        ew_fill(b, M * N, o->lo, o->hi);
        static const char lay[][2] = {{'t', 'c'}, {'c', 't'}, {'t', 't'}, {'s', 't'}, {'s', 'c'}};
        for (int li = 0; li < 5; li++) {
            nb_tensor *x = ew_make(a, M, N, lay[li][0]), *y = ew_make(b, M, N, lay[li][1]);
            char what[64];
            snprintf(what, sizeof what, "[%lld,%lld] layouts %c%c", (long long)M, (long long)N, lay[li][0],
                     lay[li][1]);
            ew_check(o, x, o->nin > 1 ? y : NULL, x, 0, what);
            ew_check(o, x, o->nin > 1 ? y : NULL, x, 1, "transposed out");
            ew_check(o, x, o->nin > 1 ? y : NULL, x, 2, "misaligned out rows");
        }
        /* 3-D permuted: [5,6,7] seen as [7,5,6] */
        nb_tensor *x3 = nb_permute(nb_reshape(ew_make(a, 1, 210, 'c'), NB_SHAPE(5, 6, 7)), (int[]){2, 0, 1}, 3);
        nb_tensor *y3 = nb_contiguous(nb_permute(nb_reshape(ew_make(b, 1, 210, 'c'), NB_SHAPE(5, 6, 7)), (int[]){2, 0, 1}, 3));
        cr_assert_not_null(x3);
        cr_assert_not_null(y3);
        ew_check(o, x3, o->nin > 1 ? y3 : NULL, x3, 0, "3-D permuted");
    }
    free(a);
    free(b);
}

/* Broadcast second (and first) operands: scalar, row and column. */
Test(avx2_ew, broadcast_scalar_row_column) {
    const int64_t M = 19, N = 45;
    float *a = malloc(sizeof *a * M * N), *b = malloc(sizeof *b * M * N);
    for (int oi = 0; oi < EW_NOPS; oi++) {
        const ew_op *o = &ew_ops[oi];
        ew_fill(a, M * N, o->lo, o->hi);
        ew_fill(b, M * N, o->lo, o->hi);
        nb_tensor *x = ew_make(a, M, N, 'c'), *xt = ew_make(a, M, N, 't');
        nb_tensor *s = nb_expand(nb_from_data(NB_SHAPE0, NB_F32, b), NB_SHAPE(M, N));
        nb_tensor *row = nb_expand(nb_from_data(NB_SHAPE(N), NB_F32, b), NB_SHAPE(M, N));
        nb_tensor *col = nb_expand(nb_from_data(NB_SHAPE(M, 1), NB_F32, b), NB_SHAPE(M, N));
        cr_assert(s && row && col, "%s", nb_last_error());
        if (o->nin == 2) {
            nb_tensor *bs[] = {s, row, col};
            const char *names[] = {"scalar", "row [N]", "column [M,1]"};
            for (int k = 0; k < 3; k++) {
                char what[64];
                snprintf(what, sizeof what, "x op %s", names[k]);
                ew_check(o, x, bs[k], x, 0, what);
                snprintf(what, sizeof what, "%s op x", names[k]);
                ew_check(o, bs[k], x, x, 0, what);
                snprintf(what, sizeof what, "x^T op %s", names[k]);
                ew_check(o, xt, bs[k], x, 0, what);
            }
        } else {
            ew_check(o, s, NULL, x, 0, "0-dim broadcast input");
            ew_check(o, row, NULL, x, 0, "row broadcast input");
            ew_check(o, col, NULL, x, 0, "column broadcast input");
        }
    }
    free(a);
    free(b);
}

/* Large enough for nb__par_threads to use every thread: many rows, one long
 * row (split into chunks), transposed. */
Test(avx2_ew, threaded_sizes) {
    cr_assert_eq(nb_init(NULL), 0);
    const int64_t shapes[][2] = {{300, 301}, {1, 200003}, {3, 70001}};
    for (int si = 0; si < 3; si++) {
        int64_t M = shapes[si][0], N = shapes[si][1];
        float *a = malloc(sizeof *a * (size_t)(M * N)), *b = malloc(sizeof *b * (size_t)(M * N));
        for (int oi = 0; oi < EW_NOPS; oi++) {
            const ew_op *o = &ew_ops[oi];
            ew_fill(a, M * N, o->lo, o->hi);
            ew_fill(b, M * N, o->lo, o->hi);
            nb_tensor *x = ew_make(a, M, N, 'c'), *y = ew_make(b, M, N, si == 0 ? 't' : 'c');
            nb_tensor *row = nb_expand(nb_from_data(NB_SHAPE(N), NB_F32, b), NB_SHAPE(M, N));
            char what[64];
            snprintf(what, sizeof what, "[%lld,%lld]", (long long)M, (long long)N);
            ew_check(o, x, o->nin > 1 ? y : NULL, x, 0, what);
            if (o->nin > 1) ew_check(o, x, row, x, 0, "row broadcast, threaded");
        }
        free(a);
        free(b);
    }
}

/* Outputs of 4M+ elements take the non-temporal store path (aligned
 * streams after a masked head): one long row with a misaligned start, and
 * 2-D rows of every alignment. */
Test(avx2_ew, streaming_stores_for_large_outputs) {
    cr_assert_eq(nb_init(NULL), 0);
    static const int pick[] = {0, 12, 14, 13, 15, 20};   /* add relu copy fill exp gelu */
    const int64_t M = 1031, N = 4099;
    float *a = malloc(sizeof *a * (size_t)(M * N)), *b = malloc(sizeof *b * (size_t)(M * N));
    for (int pi = 0; pi < 6; pi++) {
        const ew_op *o = &ew_ops[pick[pi]];
        ew_fill(a, M * N, o->lo, o->hi);
        ew_fill(b, M * N, o->lo, o->hi);
        nb_tensor *x = ew_make(a, M, N, 'c'), *y = ew_make(b, M, N, 'c');
        ew_check(o, x, o->nin > 1 ? y : NULL, x, 2, "4M, misaligned out rows");
        if (o->nin > 1) {
            nb_tensor *row = nb_expand(nb_from_data(NB_SHAPE(N), NB_F32, b), NB_SHAPE(M, N));
            ew_check(o, x, row, x, 0, "4M, row broadcast");
        }
        nb_tensor *x1 = nb_reshape(x, NB_SHAPE(1, M * N)), *y1 = nb_reshape(y, NB_SHAPE(1, M * N));
        ew_check(o, x1, o->nin > 1 ? y1 : NULL, x1, 2, "4M, one long row");
    }
    free(a);
    free(b);
}

/* ---- special values ---- */

/* Every pair of special values for the binary ops (a column [K,1] against a
 * row [K]), every special for the unary ones; exact ops bitwise against F32
 * ref, math ops against the stable libm oracle. */
Test(avx2_ew, special_values) {
    const int64_t K = EW_NSPECIAL;
    nb_tensor *col = nb_expand(nb_from_data(NB_SHAPE(K, 1), NB_F32, ew_special), NB_SHAPE(K, K));
    nb_tensor *row = nb_expand(nb_from_data(NB_SHAPE(K), NB_F32, ew_special), NB_SHAPE(K, K));
    nb_tensor *v = nb_from_data(NB_SHAPE(1, K), NB_F32, ew_special);
    for (int oi = 0; oi < EW_NOPS; oi++) {
        const ew_op *o = &ew_ops[oi];
        if (o->ulp < 0) {
            if (o->nin == 2) ew_check(o, col, row, col, 0, "special pairs");
            else ew_check(o, v, NULL, v, 0, "specials");
            continue;
        }
        if (o->nin == 2) {   /* every pair, against libm's double result */
            nb_tensor *op = nb_empty(NB_SHAPE(K, K), NB_F32);
            ew_run(o, op, col, row, "avx2");
            const float *yp = nb_data(op);
            for (int i = 0; i < K; i++)
                for (int j = 0; j < K; j++) {
                    float w = (float)ew_oracle2(o, ew_special[i], ew_special[j]);
                    double u = ew_ulps(yp[i * K + j], w);
                    cr_assert(u <= o->ulp, "%s(%a, %a) = %a, want %a (%g ULP)", o->name, (double)ew_special[i],
                              (double)ew_special[j], (double)yp[i * K + j], (double)w, u);
                }
            continue;
        }
        nb_tensor *out = nb_empty(NB_SHAPE(1, K), NB_F32);
        ew_run(o, out, v, NULL, "avx2");
        const float *y = nb_data(out);
        for (int i = 0; i < K; i++) {
            float x = ew_special[i], w = (float)ew_oracle(o, x);
            double u = ew_ulps(y[i], w);
            cr_assert(u <= ew_bound(o, x, w), "%s(%a) = %a, want %a (%g ULP)", o->name, (double)x, (double)y[i],
                      (double)w, u);
        }
    }
    /* the documented edges, spelled out */
    const ew_op *ex = &ew_ops[15], *lg = &ew_ops[16], *th = &ew_ops[17];
    cr_assert_eq(ex->op, NB_OP_EXP);
    const float xs[] = {INFINITY, -INFINITY, 89.0f, -105.0f, 0.0f};
    nb_tensor *e = nb_empty(NB_SHAPE(5), NB_F32);
    ew_run(ex, e, nb_from_data(NB_SHAPE(5), NB_F32, xs), NULL, "avx2");
    const float *ey = nb_data(e);
    cr_assert(isinf(ey[0]) && ey[0] > 0 && ey[1] == 0 && isinf(ey[2]) && ey[3] == 0 && ey[4] == 1);
    const float ls[] = {0.0f, -1.0f, INFINITY, 1.4e-45f, 1.0f};
    nb_tensor *l = nb_empty(NB_SHAPE(5), NB_F32);
    ew_run(lg, l, nb_from_data(NB_SHAPE(5), NB_F32, ls), NULL, "avx2");
    const float *ly = nb_data(l);
    cr_assert(isinf(ly[0]) && ly[0] < 0 && isnan(ly[1]) && isinf(ly[2]) && ly[2] > 0);
    cr_assert(ew_ulps(ly[3], (float)log((double)ls[3])) <= 1 && ly[4] == 0);
    const float ts[] = {0.0f, -0.0f, 50.0f, -50.0f, INFINITY};
    nb_tensor *tt = nb_empty(NB_SHAPE(5), NB_F32);
    ew_run(th, tt, nb_from_data(NB_SHAPE(5), NB_F32, ts), NULL, "avx2");
    const float *ty = nb_data(tt);
    cr_assert(ty[0] == 0 && !signbit(ty[0]) && ty[1] == 0 && signbit(ty[1]));
    cr_assert(ty[2] == 1 && ty[3] == -1 && ty[4] == 1);
}

/* The math ops over the whole float line (every 4099th bit pattern of each
 * sign), against the libm oracle: the accuracy claims of vmath.h. */
Test(avx2_ew, math_ops_full_range_sweep) {
    const int64_t n = 2 * (0x7f800000ll / 4099 + 1);
    float *x = malloc(sizeof *x * (size_t)n);
    int64_t k = 0;
    for (uint32_t b = 0; b < 0x7f800000u && k + 1 < n; b += 4099) {
        uint32_t nb = b | 0x80000000u;
        memcpy(&x[k++], &b, 4);
        memcpy(&x[k++], &nb, 4);
    }
    nb_tensor *in = nb_from_data(NB_SHAPE(k), NB_F32, x);
    nb_tensor *out = nb_empty(NB_SHAPE(k), NB_F32);
    /* pow: positive bases (a negative one with a fractional exponent sends its
       whole vector to powf lane by lane; those are covered above) */
    float *xp = malloc(sizeof *xp * (size_t)n);
    for (int64_t i = 0; i < k; i++) xp[i] = fabsf(x[i]);
    nb_tensor *inp = nb_from_data(NB_SHAPE(k), NB_F32, xp);
    for (int oi = 0; oi < EW_NOPS; oi++) {
        const ew_op *o = &ew_ops[oi];
        if (o->ulp < 0) continue;
        /* two-input ops: x over the line against a few exponents (scalar, broadcast) */
        static const float ys[] = {0.5f, -1.5f, 3.0f, 0.33333334f, -7.0f, 2.5f};
        int ny = o->nin == 2 ? (int)(sizeof ys / sizeof ys[0]) : 1;
        for (int yi = 0; yi < ny; yi++) {
            nb_tensor *yt = o->nin == 2 ? nb_expand(nb_from_data(NB_SHAPE0, NB_F32, &ys[yi]), NB_SHAPE(k)) : NULL;
            bool pw = o->op == NB_OP_POW || o->op == NB_OP_POW_SCALAR;
            const float *xs = pw ? xp : x;
            ew_run(o, out, pw ? inp : in, yt, "avx2");
            const float *y = nb_data(out);
            double worst = 0;
            int64_t inexact = 0;
            for (int64_t i = 0; i < k; i++) {
                float w = (float)(o->nin == 2 ? ew_oracle2(o, xs[i], ys[yi]) : ew_oracle(o, xs[i]));
                double u = ew_ulps(y[i], w);
                cr_assert(u <= ew_bound(o, xs[i], w), "%s(%a) = %a, want %a (%g ULP)", o->name, (double)xs[i],
                          (double)y[i], (double)w, u);
                if (u > worst && fabsf(w) >= FLT_MIN) worst = u;
                inexact += u > 0;
            }
            cr_log_info("%s: max %g ULP (normal results) over %lld inputs, %lld not the rounded double", o->name, worst,
                        (long long)k, (long long)inexact);
            /* pow works in double to ~1e-14: all but near-ties round as the double result does */
            if (pw)
                cr_assert(inexact * 10000 <= k, "%s: %lld of %lld results off the rounded double", o->name,
                          (long long)inexact, (long long)k);
        }
    }
    free(x);
    free(xp);
}

/* ---- comparisons, logical ops, where, masked_fill ----
 * BOOL results (and where/masked_fill's F32 ones) bitwise against F32 ref. */

typedef struct cb_op {
    nb_op op;          /* registry op */
    const char *name;  /* for messages */
    int nin;           /* tensor inputs */
    double s0;         /* scalar[0] */
    int kind;          /* 0 compare (F32 in, BOOL out), 1 logical (BOOL), 2 where, 3 masked_fill,
                          4 threshold_backward (F32 in and out) */
} cb_op;

static const cb_op cb_ops[] = {
    {NB_OP_EQ, "eq", 2, 0, 0},
    {NB_OP_NE, "ne", 2, 0, 0},
    {NB_OP_LT, "lt", 2, 0, 0},
    {NB_OP_LE, "le", 2, 0, 0},
    {NB_OP_GT, "gt", 2, 0, 0},
    {NB_OP_GE, "ge", 2, 0, 0},
    {NB_OP_EQ_SCALAR, "eq_scalar", 1, 1, 0},
    {NB_OP_NE_SCALAR, "ne_scalar", 1, 1, 0},
    {NB_OP_LT_SCALAR, "lt_scalar", 1, 0, 0},
    {NB_OP_LE_SCALAR, "le_scalar", 1, 0, 0},
    {NB_OP_GT_SCALAR, "gt_scalar", 1, -1, 0},
    {NB_OP_GE_SCALAR, "ge_scalar", 1, 0.5, 0},
    {NB_OP_LOGICAL_NOT, "logical_not", 1, 0, 1},
    {NB_OP_LOGICAL_AND, "logical_and", 2, 0, 1},
    {NB_OP_LOGICAL_OR, "logical_or", 2, 0, 1},
    {NB_OP_WHERE, "where", 3, 0, 2},
    {NB_OP_MASKED_FILL, "masked_fill", 2, -7.5, 3},
    {NB_OP_THRESHOLD_BACKWARD, "threshold_backward", 2, 0, 4},   /* ties at 0, NaN and inf in y */
    {NB_OP_THRESHOLD_BACKWARD, "threshold_backward", 2, 1, 4},
    {NB_OP_TANH_BACKWARD, "tanh_backward", 2, 0, 4},
    {NB_OP_SIGMOID_BACKWARD, "sigmoid_backward", 2, 0, 4},
};
#define CB_NOPS (int)(sizeof cb_ops / sizeof cb_ops[0])

/* dtype of input i of o */
static nb_dtype cb_in_dtype(const cb_op *o, int i) {
    if (o->kind == 1) return NB_BOOL;
    if (o->kind == 2) return i == 2 ? NB_BOOL : NB_F32;
    if (o->kind == 3) return i == 1 ? NB_BOOL : NB_F32;
    return NB_F32;
}

/* Like ew_make for any dtype: logical values v (as floats, converted) in
 * layout 'c', 't' or 's' (every 2nd column of a wider tensor). */
static nb_tensor *cb_make(const float *v, int64_t M, int64_t N, char layout, nb_dtype dt) {
    nb_tensor *t = ew_make(v, M, N, layout);
    if (dt == NB_F32) return t;
    /* same layout in dt: build the F32 storage's twin, then copy values in */
    nb_tensor *w = layout == 'c'   ? nb_empty(NB_SHAPE(M, N), dt)
                   : layout == 't' ? nb_transpose(nb_empty(NB_SHAPE(N, M), dt), 0, 1)
                                   : nb_slice(nb_empty(NB_SHAPE(M, 2 * N), dt), 1, 0, 2 * N, 2);
    cr_assert(w && nb_copy_(w, t), "%s", nb_last_error());
    return w;
}

/* Random values of input i of o: small integers (so that ties happen),
 * with a NaN and infinities mixed into F32 inputs. */
static void cb_fill(const cb_op *o, int i, float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        double u = ew_u01();
        x[k] = cb_in_dtype(o, i) == NB_BOOL ? (u < 0.5 ? 0.0f : 1.0f) : (float)floor(u * 5) - 2.0f;
        if (cb_in_dtype(o, i) == NB_F32 && u > 0.97) x[k] = u > 0.99 ? NAN : u > 0.98 ? INFINITY : -INFINITY;
    }
}

static const char *cb_run(const cb_op *o, nb_tensor *out, nb_tensor *const *in, const char *isa) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0, "%s", nb_last_error());
    nb_kernel_args a = {.op = o->op, .out = out, .in = {in[0], in[1], in[2]}, .nin = o->nin, .scalar = {o->s0}};
    cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s: %s", o->name, nb_last_error());
    return nb__last_kernel();
}

/* o on in[] (views of shape_of's shape) under avx2 (an avx2 kernel must
 * serve it) against ref, bitwise. */
static void cb_check(const cb_op *o, nb_tensor *const *in, nb_tensor *shape_of, const char *what) {
    nb_dtype dt = o->kind >= 2 ? NB_F32 : NB_BOOL;
    nb_tensor *oa = nb_empty(nb_dims_get(shape_of), dt), *orf = nb_empty(nb_dims_get(shape_of), dt);
    cr_assert(nb_fill_(oa, 1) && nb_fill_(orf, 0), "%s", nb_last_error());   /* differ unless written */
    const char *k = cb_run(o, oa, in, "avx2");
    cr_assert(k && strncmp(k, "avx2_", 5) == 0, "%s %s: served by %s, not avx2", o->name, what, k ? k : "?");
    cb_run(o, orf, in, "ref");
    int64_t n = nb_numel(shape_of);
    float *ga = ew_values(oa), *gr = ew_values(orf);
    for (int64_t i = 0; i < n; i++)
        cr_assert(ew_same(ga[i], gr[i]), "%s %s: element %lld: avx2 %a, ref %a", o->name, what, (long long)i,
                  (double)ga[i], (double)gr[i]);
    free(ga);
    if (nb_ndim(shape_of) == 2) {   /* again into an output transposed in memory */
        nb_tensor *ot = ew_out(shape_of, dt, 1);
        cr_assert(nb_fill_(ot, 1), "%s", nb_last_error());
        cb_run(o, ot, in, "avx2");
        ga = ew_values(ot);
        for (int64_t i = 0; i < n; i++)
            cr_assert(ew_same(ga[i], gr[i]), "%s %s, transposed out: element %lld: avx2 %a, ref %a", o->name, what,
                      (long long)i, (double)ga[i], (double)gr[i]);
        free(ga);
    }
    free(gr);
}

/* Inputs of o as [M,N] tensors in layout l (malloc'ed values freed here). */
static void cb_inputs(const cb_op *o, int64_t M, int64_t N, char l, nb_tensor **in) {
    float *v = malloc(sizeof *v * (size_t)(M * N + 1));
    for (int i = 0; i < 3; i++) {
        in[i] = NULL;
        if (i >= o->nin) continue;
        cb_fill(o, i, v, M * N);
        in[i] = cb_make(v, M, N, l, cb_in_dtype(o, i));
    }
    free(v);
}

Test(avx2_ew, compare_where_sizes_contiguous_and_strided) {
    for (int oi = 0; oi < CB_NOPS; oi++) {
        const cb_op *o = &cb_ops[oi];
        for (size_t si = 0; si < sizeof ew_sizes / sizeof ew_sizes[0]; si++) {
            int64_t n = ew_sizes[si];
            for (const char *l = "cs"; *l; l++) {
                nb_tensor *in[3];
                cb_inputs(o, 1, n, *l, in);
                char what[64];
                snprintf(what, sizeof what, "n=%lld layout %c", (long long)n, *l);
                cb_check(o, in, in[0], what);
            }
        }
    }
}

Test(avx2_ew, compare_where_broadcast_transposed_threaded) {
    const int64_t shapes[][2] = {{19, 45}, {300, 301}};
    for (int si = 0; si < 2; si++) {
        int64_t M = shapes[si][0], N = shapes[si][1];
        float *b = malloc(sizeof *b * (size_t)(M * N));
        for (int oi = 0; oi < CB_NOPS; oi++) {
            const cb_op *o = &cb_ops[oi];
            nb_tensor *in[3], *tr[3];
            cb_inputs(o, M, N, 'c', in);
            cb_inputs(o, M, N, 't', tr);
            cb_check(o, in, in[0], "contiguous [M,N]");
            cb_check(o, tr, in[0], "transposed");
            /* each input in turn replaced by a scalar, a row and a column */
            for (int i = 0; i < o->nin; i++) {
                nb_dtype dt = cb_in_dtype(o, i);
                cb_fill(o, i, b, M * N);
                nb_tensor *s = nb_expand(cb_make(b, 1, 1, 'c', dt), NB_SHAPE(M, N));
                nb_tensor *row = nb_expand(cb_make(b, 1, N, 'c', dt), NB_SHAPE(M, N));
                nb_tensor *col = nb_expand(cb_make(b, M, 1, 'c', dt), NB_SHAPE(M, N));
                nb_tensor *bs[] = {s, row, col};
                const char *names[] = {"scalar", "row", "column"};
                for (int k = 0; k < 3; k++) {
                    nb_tensor *v[3] = {in[0], in[1], in[2]};
                    v[i] = bs[k];
                    char what[64];
                    snprintf(what, sizeof what, "input %d as %s [%lld,%lld]", i, names[k], (long long)M, (long long)N);
                    cb_check(o, v, in[0], what);
                }
            }
        }
        free(b);
    }
}

/* Every pair of special values (±0, ±inf, NaN, denormals ...) for the
 * tensor comparisons, and each special as the scalar of the *_SCALAR ones. */
Test(avx2_ew, compare_special_values) {
    const int64_t K = EW_NSPECIAL;
    nb_tensor *col = nb_expand(nb_from_data(NB_SHAPE(K, 1), NB_F32, ew_special), NB_SHAPE(K, K));
    nb_tensor *row = nb_expand(nb_from_data(NB_SHAPE(K), NB_F32, ew_special), NB_SHAPE(K, K));
    nb_tensor *v = nb_from_data(NB_SHAPE(1, K), NB_F32, ew_special);
    for (int oi = 0; oi < 12; oi++) {
        cb_op o = cb_ops[oi];
        if (o.nin == 2) {
            nb_tensor *in[3] = {col, row, NULL};
            cb_check(&o, in, col, "special pairs");
            continue;
        }
        for (int i = 0; i < K; i++) {
            o.s0 = ew_special[i];
            nb_tensor *in[3] = {v, NULL, NULL};
            char what[64];
            snprintf(what, sizeof what, "specials vs scalar %a", o.s0);
            cb_check(&o, in, v, what);
        }
    }
    /* NaN: unequal to everything, itself included */
    const float x[] = {NAN, 1.0f};
    nb_tensor *a = nb_from_data(NB_SHAPE(2), NB_F32, x);
    nb_tensor *eq = nb_empty(NB_SHAPE(2), NB_BOOL), *ne = nb_empty(NB_SHAPE(2), NB_BOOL);
    nb_tensor *in[3] = {a, a, NULL};
    cb_run(&cb_ops[0], eq, in, "avx2");
    cb_run(&cb_ops[1], ne, in, "avx2");
    const bool *e = nb_data(eq), *ne_ = nb_data(ne);
    cr_assert(!e[0] && e[1] && ne_[0] && !ne_[1]);
}

/* ---- declines and the registry's choice ---- */

Test(avx2_ew, other_dtypes_are_declined_to_ref) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .abort_on_error = -1}), 0);
    const double v[] = {1, -2, 3.5};
    nb_tensor *d = tu_tensor(NB_SHAPE(3), NB_F64, v);
    nb_tensor *y = nb_exp(d);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_str_eq(nb__last_kernel(), "ref_exp_double");
    /* F32 -> F64 copy converts on ref */
    nb_tensor *f = tu_tensor(NB_SHAPE(3), NB_F32, v);
    nb_tensor *o = nb_empty(NB_SHAPE(3), NB_F64);
    nb_kernel_args a = {.op = NB_OP_COPY, .out = o, .in = {f}, .nin = 1};
    cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s", nb_last_error());
    cr_assert_str_eq(nb__last_kernel(), "ref_copy");
    cr_assert_eq(((double *)nb_data(o))[1], -2.0);
    /* pow_scalar in F64 */
    nb_tensor *p = nb_pow_scalar(d, 1.5);
    cr_assert_not_null(p, "%s", nb_last_error());
    cr_assert_str_eq(nb__last_kernel(), "ref_pows_double");
    nb_tensor *p2 = nb_pow_scalar(f, 2.0);
    cr_assert_not_null(p2, "%s", nb_last_error());
    cr_assert_str_eq(nb__last_kernel(), "avx2_pow_scalar");
}

static char *ew_dump(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    nb_registry_dump(f);
    fclose(f);
    return buf;
}

Test(avx2_ew, registry_chooses_avx2_by_default_and_ref_when_capped) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .abort_on_error = -1}), 0);
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_ADD, NB_F32), "avx2_add");
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_EXP, NB_F32), "avx2_exp");
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_ADD, NB_F64), "ref_add_double");
    char *d = ew_dump();
    cr_assert_not_null(strstr(d, "avx2_add"), "%s", d);
    cr_assert_not_null(strstr(d, "avx2_exp"), "%s", d);
    free(d);
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "ref", .abort_on_error = -1}), 0);
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_ADD, NB_F32), "ref_add_float");
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_EXP, NB_F32), "ref_exp_float");
    d = ew_dump();
    cr_assert_not_null(strstr(d, "isa cap: ref"), "%s", d);
    cr_assert_not_null(strstr(d, "avx2_add:avx2:p10(over cap)"), "%s", d);
    free(d);
    /* and a public op served under each cap */
    nb_tensor *x = nb_full(NB_SHAPE(9), NB_F32, 2.0f);
    cr_assert_not_null(nb_exp(x));
    cr_assert_str_eq(nb__last_kernel(), "ref_exp_float");
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .abort_on_error = -1}), 0);
    cr_assert_not_null(nb_exp(x));
    cr_assert_str_eq(nb__last_kernel(), "avx2_exp");
}

/* vmath.h's exp takes a short path (one multiplication by 2^n) when all 8
 * lanes of a vector have |x| <= 87, and claims it gives the long path's bits:
 * the same values computed once with every 8th lane pushed out of range
 * (100, so each vector takes the long path) must match bit for bit. */
/* GELU_BACKWARD (g * gelu'(x), both forms) against the F64 ref kernel over
 * x in [-10, 10], the special values and sizes with tails, contiguous and
 * with a broadcast g: |avx2 - ref| <= GBW_TOL |g| (gelu' is within
 * [-0.17, 1.13]; F32 erf, exp and tanh from vmath.h). */
#define GBW_TOL 1e-6
static void gbw_check(const float *g, const float *x, int64_t n, double approx, bool bcast_g) {
    nb_tensor *gt = bcast_g ? nb_expand(nb_from_data(NB_SHAPE(1), NB_F32, g), NB_SHAPE(n))
                            : nb_from_data(NB_SHAPE(n), NB_F32, g);
    nb_tensor *xt = nb_from_data(NB_SHAPE(n), NB_F32, x);
    ew_op o = {NB_OP_GELU_BACKWARD, "gelu_backward", 2, approx, 0, 0, 0, 0};
    nb_tensor *out = nb_full(NB_SHAPE(n), NB_F32, NAN);
    const char *k = ew_run(&o, out, gt, xt, "avx2");
    cr_assert_str_eq(k, "avx2_gelu_backward");
    nb_tensor *o64 = nb_empty(NB_SHAPE(n), NB_F64);
    ew_run(&o, o64, nb_to_dtype(gt, NB_F64), nb_to_dtype(xt, NB_F64), "ref");
    const float *y = nb_data(out);
    const double *w = nb_data(o64);
    for (int64_t i = 0; i < n; i++) {
        double gi = bcast_g ? g[0] : g[i];
        if (isnan(w[i]) || isinf(w[i])) {
            cr_assert(isnan(w[i]) ? isnan(y[i]) : y[i] == (float)w[i], "gelu_backward(%g, x=%a) = %a, ref %a", gi,
                      (double)x[i], (double)y[i], w[i]);
            continue;
        }
        cr_assert(fabs((double)y[i] - w[i]) <= GBW_TOL * fabs(gi) + 1e-37,
                  "gelu_backward %s (g=%g, x=%a) = %.9g, ref %.9g", approx ? "tanh" : "erf", gi, (double)x[i],
                  (double)y[i], w[i]);
    }
}

Test(avx2_ew, gelu_backward_both_forms) {
    for (int form = 0; form < 2; form++) {
        for (size_t s = 0; s < sizeof ew_sizes / sizeof ew_sizes[0]; s++) {
            int64_t n = ew_sizes[s];
            float *g = malloc(sizeof *g * (size_t)(n + 1)), *x = malloc(sizeof *x * (size_t)(n + 1));
            ew_fill(g, n, -2, 2);
            ew_fill(x, n, -10, 10);
            gbw_check(g, x, n, form, false);
            gbw_check(g, x, n, form, true);
            free(g);
            free(x);
        }
        float ones[EW_NSPECIAL];
        for (int i = 0; i < EW_NSPECIAL; i++) ones[i] = 1.0f;
        gbw_check(ones, ew_special, EW_NSPECIAL, form, false);
    }
}

Test(avx2_ew, exp_short_path_gives_the_long_paths_bits) {
    enum { N = 8 * 4096 };
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .abort_on_error = -1}), 0);   /* also under NB_ISA=ref */
    nb_tensor *a = nb_empty(NB_SHAPE(N), NB_F32), *b = nb_empty(NB_SHAPE(N), NB_F32);
    cr_assert(a && b);
    float *pa = nb_data(a), *pb = nb_data(b);
    uint64_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((double)(s >> 11) / 9007199254740992.0);   /* [0, 1) */
        pa[i] = i % 97 == 0 ? (i % 2 ? 87.0f : -87.0f) : -87.0f + 174.0f * u;
        if (i % 5 == 0) pa[i] *= 1e-3f;   /* small arguments too */
        pb[i] = i % 8 == 7 ? 100.0f : pa[i];
    }
    nb_tensor *ya = nb_exp(a), *yb = nb_exp(b);
    cr_assert(ya && yb, "%s", nb_last_error());
    cr_assert(!strncmp(nb_kernel_chosen(NB_OP_EXP, NB_F32), "avx2", 4) ||
                  !strncmp(nb_kernel_chosen(NB_OP_EXP, NB_F32), "avx512", 6),
              "exp served by %s", nb_kernel_chosen(NB_OP_EXP, NB_F32));
    const uint32_t *ra = nb_data(ya), *rb = nb_data(yb);
    for (int i = 0; i < N; i++)
        if (i % 8 != 7)
            cr_assert_eq(ra[i], rb[i], "exp(%.9g): short path %08x, long path %08x", (double)pa[i], ra[i], rb[i]);
}
