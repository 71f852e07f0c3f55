/* test_avx2_loss.c — the AVX2 element-wise loss kernels of
 * src/kernels/x86/avx2/avx2_elementwise.c (smooth_l1_loss, the l1 and
 * smooth_l1 derivatives, bce_with_logits and its d/dx) against the ref
 * kernels (src/kernels/ref/ref_loss.c) and, for bce's forward, a stable
 * double-precision oracle.
 *
 * Each case runs one kernel call through the registry with the ISA capped
 * to avx2 (asserting an avx2 kernel served it) and to ref. Bounds asserted:
 *  - smooth_l1 forward, l1 / smooth_l1 derivatives of order 1, 2, 3:
 *    bitwise ref's (both do the same double operations);
 *  - bce forward: within 6 ULP of max(x, 0) - x y + log1p(e^-|x|) computed
 *    in double and rounded (ref's (1 - y) x + softplus(-x) cancels for
 *    large |x|, so ref is not the oracle there); non-finite x: ref's bits;
 *  - bce d/dx: within 2 ULP of ref plus 2^-22 |g| (sigmoid in F32).
 * Sizes 0, 1, 7, 15, 16, 17, 33, 1023, 4097 and 100003 (split over
 * threads); g contiguous or one value broadcast; special values (+-0,
 * +-inf, NaN, |x - y| equal to and just below beta, large magnitudes).
 * NLL_LOSS_BACKWARD (class weights, label smoothing, ignored rows): bitwise.
 * Declined to ref: bce with a weight or pos_weight, bce's d/dy, a
 * transposed operand. Skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

/* Capped at avx2 for the whole test (each runs in its own process): on an
 * AVX-512 CPU the AVX-512 twins would serve first, and NB_ISA_PREFER (the
 * isa_avx512 setup) would put them first anyway. */
static void ls_setup(void) {
    setenv("NB_ISA", "avx2", 1);
    unsetenv("NB_ISA_PREFER");
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}
static void ls_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(avx2_loss, .init = ls_setup, .fini = ls_teardown);

static void ls_need(void) {
    const char *k = nb_kernel_chosen(NB_OP_BCE_WITH_LOGITS, NB_F32);
    if (!nb_cpu()->avx2_fma || !k || strncmp(k, "avx2", 4)) cr_skip("avx2 losses not chosen (%s)", k ? k : "none");
}

static uint64_t ls_rng = 0x2545F4914F6CDD1Dull;
static double ls_u01(void) {
    return tu_u01(&ls_rng);
}

/* Distance in representable floats (testutil), an infinity against any other value 1e30. */
static double ls_ulps(float a, float b) {
    if (!isnan(a) && !isnan(b) && a != b && (isinf(a) || isinf(b))) return 1e30;
    return tu_ulps_f32(a, b);
}
static bool ls_same(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0; }

/* One call of op into a fresh [n] output (in the open scope) with the ISA
 * capped to isa; the kernel's name to *served. */
static nb_tensor *ls_call(nb_op op, const nb_tensor *const *in, int nin, double s0, double s1, int64_t n,
                          const char *isa, const char **served) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0);
    nb_tensor *out = nb_full(NB_SHAPE(n), NB_F32, NAN);   /* an element a kernel skips shows */
    nb_kernel_args a = {.op = op, .out = out, .nin = nin, .scalar = {s0, s1}};
    for (int k = 0; k < nin; k++) a.in[k] = in[k];
    cr_assert_eq(nb__dispatch(&a, "test_avx2_loss"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    cr_assert_eq(nb_init(NULL), 0);
    return out;
}

/* avx2 and ref on the same operands: bitwise (tol < 0), or within tol ULP
 * of ref plus abs_g * |g[i]| (gv: g's values, NULL when not used). */
static void ls_vs_ref(nb_op op, const nb_tensor *const *in, int nin, double s0, double s1, int64_t n, double tol,
                      const float *gv, double abs_g, const char *what) {
    const char *k1, *k2;
    nb_tensor *a = ls_call(op, in, nin, s0, s1, n, "avx2", &k1), *r = ls_call(op, in, nin, s0, s1, n, "ref", &k2);
    cr_assert(strncmp(k1, "avx2", 4) == 0, "%s %s: served by %s", nb_op_name(op), what, k1);
    cr_assert(strncmp(k2, "ref", 3) == 0, "%s %s: ref run served by %s", nb_op_name(op), what, k2);
    const float *x = nb_data(a), *y = nb_data(r);
    for (int64_t i = 0; i < n; i++) {
        if (tol < 0) {
            cr_assert(ls_same(x[i], y[i]), "%s %s [%lld]: avx2 %a, ref %a", nb_op_name(op), what, (long long)i,
                      (double)x[i], (double)y[i]);
        } else {
            double slack = gv ? abs_g * fabs(gv[i]) : 0;
            bool ok = ls_ulps(x[i], y[i]) <= tol || fabs((double)x[i] - y[i]) <= slack;
            cr_assert(ok, "%s %s [%lld]: avx2 %a, ref %a", nb_op_name(op), what, (long long)i, (double)x[i],
                      (double)y[i]);
        }
    }
}

static const float ls_special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, 1.0f, -1.0f, 0.5f, -0.5f,
                                   0.49999997f, 1.0000001f, 20.0f, -20.0f, 30.0f, -30.0f, 88.0f, -88.0f,
                                   100.0f, -100.0f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX};
#define LS_NSPECIAL (int)(sizeof ls_special / sizeof ls_special[0])
static const int64_t ls_sizes[] = {0, 1, 7, 15, 16, 17, 33, 1023, 4097, 100003};
#define LS_NSIZES (int)(sizeof ls_sizes / sizeof ls_sizes[0])

/* x, y (y in [ylo, yhi)) and g of n elements; the first LS_NSPECIAL^2
 * positions (as many as fit) pair every special x with every special y. */
static void ls_fill(float *x, float *y, float *g, int64_t n, double ylo, double yhi) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)(-12 + 24 * ls_u01());
        y[i] = (float)(ylo + (yhi - ylo) * ls_u01());
        g[i] = (float)(-2 + 4 * ls_u01());
    }
    for (int64_t i = 0; i < n && i < LS_NSPECIAL * LS_NSPECIAL; i++)
        x[i] = ls_special[i / LS_NSPECIAL], y[i] = ls_special[i % LS_NSPECIAL];
}

/* smooth_l1 forward, the l1 / smooth_l1 derivatives: bitwise ref's, for
 * beta 1 and 0.5 (and 0: smooth_l1 is l1), g contiguous or broadcast. */
Test(avx2_loss, smooth_l1_and_derivatives_bitwise) {
    ls_need();
    static const double betas[] = {1.0, 0.5, 0.0};
    for (int s = 0; s < LS_NSIZES; s++) {
        int64_t n = ls_sizes[s];
        nb_scope_begin();
        float *x = malloc(sizeof(float) * (size_t)(n + 1)), *y = malloc(sizeof(float) * (size_t)(n + 1));
        float *g = malloc(sizeof(float) * (size_t)(n + 1));
        ls_fill(x, y, g, n, -12, 12);
        if (n > 700) y[650] = x[650] - 1.0f, y[651] = x[651] + 0.5f, y[652] = nextafterf(x[652], 0) - 0.0f;
        nb_tensor *X = nb_from_data(NB_SHAPE(n), NB_F32, x), *Y = nb_from_data(NB_SHAPE(n), NB_F32, y);
        nb_tensor *G = nb_from_data(NB_SHAPE(n), NB_F32, g);
        nb_tensor *Gb = nb_expand(nb_scalar(0.37), NB_SHAPE(n));   /* a mean's gradient: one value */
        char what[64];
        for (int b = 0; b < 3; b++) {
            snprintf(what, sizeof what, "n %lld beta %g", (long long)n, betas[b]);
            const nb_tensor *fw[2] = {X, Y};
            ls_vs_ref(NB_OP_SMOOTH_L1_LOSS, fw, 2, betas[b], 0, n, -1, NULL, 0, what);
            for (int order = 1; order <= 3; order++) {
                const nb_tensor *bw[3] = {X, Y, order == 2 ? Gb : G};
                snprintf(what, sizeof what, "n %lld beta %g order %d", (long long)n, betas[b], order);
                ls_vs_ref(NB_OP_SMOOTH_L1_LOSS_BACKWARD, bw, 3, betas[b], order, n, -1, NULL, 0, what);
                if (b == 0) ls_vs_ref(NB_OP_L1_LOSS_BACKWARD, bw, 3, 0, order, n, -1, NULL, 0, what);
            }
        }
        free(x), free(y), free(g);
        nb_scope_end();
    }
}

/* The stable oracle of bce with logits (no weights). */
static double ls_bce(double x, double y) { return fmax(x, 0) - x * y + log1p(exp(-fabs(x))); }

Test(avx2_loss, bce_with_logits_forward_and_dx) {
    ls_need();
    for (int s = 0; s < LS_NSIZES; s++) {
        int64_t n = ls_sizes[s];
        nb_scope_begin();
        float *x = malloc(sizeof(float) * (size_t)(n + 1)), *y = malloc(sizeof(float) * (size_t)(n + 1));
        float *g = malloc(sizeof(float) * (size_t)(n + 1));
        ls_fill(x, y, g, n, 0, 1);
        for (int64_t i = 0; i < n && i < LS_NSPECIAL * LS_NSPECIAL; i++)   /* targets: 0, 1 or a probability */
            y[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? 1.0f : 0.25f;
        if (n > 700)
            for (int64_t i = 600; i < 700; i++) x[i] = (float)(i % 2 ? 40 : -40) * (float)ls_u01();   /* tails */
        nb_tensor *X = nb_from_data(NB_SHAPE(n), NB_F32, x), *Y = nb_from_data(NB_SHAPE(n), NB_F32, y);
        nb_tensor *G = nb_from_data(NB_SHAPE(n), NB_F32, g);
        const nb_tensor *fw[4] = {X, Y, NULL, NULL};
        const char *k;
        nb_tensor *a = ls_call(NB_OP_BCE_WITH_LOGITS, fw, 4, 0, 0, n, "avx2", &k);
        cr_assert(strncmp(k, "avx2", 4) == 0, "bce served by %s", k);
        nb_tensor *r = ls_call(NB_OP_BCE_WITH_LOGITS, fw, 4, 0, 0, n, "ref", &k);
        const float *av = nb_data(a), *rv = nb_data(r);
        for (int64_t i = 0; i < n; i++) {
            if (!isfinite(x[i])) {
                cr_assert(ls_same(av[i], rv[i]), "bce x %a y %a: avx2 %a, ref %a", (double)x[i], (double)y[i],
                          (double)av[i], (double)rv[i]);
                continue;
            }
            float w = (float)ls_bce(x[i], y[i]);
            cr_assert(ls_ulps(av[i], w) <= 6, "bce x %a y %a: avx2 %a, oracle %a (%g ULP)", (double)x[i],
                      (double)y[i], (double)av[i], (double)w, ls_ulps(av[i], w));
        }
        char what[64];
        snprintf(what, sizeof what, "d/dx n %lld", (long long)n);
        const nb_tensor *bw[4] = {X, Y, G, NULL};
        ls_vs_ref(NB_OP_BCE_WITH_LOGITS_BACKWARD, bw, 4, 0, 0, n, 2, g, 0x1p-22, what);
        float one = 0.37f;
        const nb_tensor *bwb[4] = {X, Y, nb_expand(nb_scalar(one), NB_SHAPE(n)), NULL};
        float *gb = malloc(sizeof(float) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) gb[i] = one;
        snprintf(what, sizeof what, "d/dx, g broadcast, n %lld", (long long)n);
        ls_vs_ref(NB_OP_BCE_WITH_LOGITS_BACKWARD, bwb, 4, 0, 0, n, 2, gb, 0x1p-22, what);
        free(x), free(y), free(g), free(gb);
        nb_scope_end();
    }
}

/* What the kernels leave to ref: weights, pos_weight, d/dy, non-flat operands. */
Test(avx2_loss, declines) {
    ls_need();
    nb_scope_begin();
    nb_tensor *X = nb_randn(NB_SHAPE(6, 5), NB_F32, 1), *Y = nb_rand(NB_SHAPE(6, 5), NB_F32, 2);
    nb_tensor *W = nb_rand(NB_SHAPE(6, 5), NB_F32, 3), *G = nb_randn(NB_SHAPE(6, 5), NB_F32, 4);
    nb_tensor *Xt = nb_transpose(nb_randn(NB_SHAPE(5, 6), NB_F32, 5), 0, 1);
    const char *k;
    nb_tensor *out = nb_empty(NB_SHAPE(6, 5), NB_F32);
    struct {
        nb_op op;
        const nb_tensor *in[4];
        int nin;
        double s0;
        const char *what;
    } cs[] = {
        {NB_OP_BCE_WITH_LOGITS, {X, Y, W, NULL}, 4, 0, "bce with weight"},
        {NB_OP_BCE_WITH_LOGITS, {X, Y, NULL, W}, 4, 0, "bce with pos_weight"},
        {NB_OP_BCE_WITH_LOGITS_BACKWARD, {X, Y, G, NULL}, 4, 1, "bce d/dy"},
        {NB_OP_BCE_WITH_LOGITS, {Xt, Y, NULL, NULL}, 4, 0, "bce, transposed x"},
        {NB_OP_SMOOTH_L1_LOSS, {Xt, Y}, 2, 1, "smooth_l1, transposed x"},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        nb_kernel_args a = {.op = cs[c].op, .out = out, .nin = cs[c].nin, .scalar = {cs[c].s0, 1}};
        for (int i = 0; i < 4; i++) a.in[i] = cs[c].in[i];
        cr_assert_eq(nb__dispatch(&a, "test_avx2_loss"), 0, "%s: %s", cs[c].what, nb_last_error());
        k = nb__last_kernel();
        cr_assert(strncmp(k, "ref", 3) == 0, "%s: served by %s, expected ref", cs[c].what, k);
    }
    nb_scope_end();
}

/* Through the public ops: the losses and their gradients agree with the
 * ref kernels' (mean reduction: the gradient is a broadcast value). */
Test(avx2_loss, public_ops_match_ref) {
    ls_need();
    nb_scope_begin();
    float got[2][3];
    for (int pass = 0; pass < 2; pass++) {
        cr_assert_eq(nb_init(&(nb_init_opts){.isa = pass ? "ref" : NULL, .abort_on_error = -1}), 0);
        nb_tensor *x = nb_randn(NB_SHAPE(64, 33), NB_F32, 7), *y = nb_rand(NB_SHAPE(64, 33), NB_F32, 8);
        nb_set_requires_grad(x, true);
        nb_tensor *l1 = nb_binary_cross_entropy_with_logits(x, y), *l2 = nb_smooth_l1_loss(x, y);
        cr_assert_eq(nb_backward(nb_add(l1, l2), NULL), 0, "%s", nb_last_error());
        got[pass][0] = (float)nb_item(l1);
        got[pass][1] = (float)nb_item(l2);
        got[pass][2] = (float)nb_item(nb_sum_all(nb_grad(x)));
    }
    cr_assert_eq(nb_init(NULL), 0);
    for (int i = 0; i < 3; i++)
        cr_assert(fabsf(got[0][i] - got[1][i]) <= 1e-6f * (1 + fabsf(got[1][i])), "value %d: %.9g vs ref %.9g", i,
                  got[0][i], got[1][i]);
    nb_scope_end();
}

/* NLL_LOSS_BACKWARD into a fresh (N, C) output with the ISA capped to isa. */
static nb_tensor *ls_nll_bw(const nb_tensor *const *in, int64_t N, int64_t C, double eps, const char *isa,
                            const char **served, int *rc) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0);
    nb_tensor *out = nb_full(NB_SHAPE(N, C), NB_F32, NAN);
    nb_kernel_args a = {.op = NB_OP_NLL_LOSS_BACKWARD, .out = out, .in = {in[0], in[1], in[2]}, .nin = 3,
                        .scalar = {-100, eps}};
    *rc = nb__dispatch(&a, "test_avx2_loss");
    *served = nb__last_kernel();
    cr_assert_eq(nb_init(NULL), 0);
    return out;
}

/* NLL_LOSS_BACKWARD on (N, C): bitwise ref's (signed zeros included: g of
 * both signs) with and without class weights and label smoothing, ignored
 * rows, g contiguous or broadcast; a target out of range is NB_ERANGE. */
Test(avx2_loss, nll_loss_backward_bitwise) {
    ls_need();
    nb_scope_begin();
    static const int64_t Cs[] = {1, 7, 10, 33, 100};
    for (int ci = 0; ci < 5; ci++) {
        int64_t C = Cs[ci], N = 37;
        int64_t tv[37];
        for (int64_t r = 0; r < N; r++) tv[r] = r % 5 == 4 ? -100 : (r * 7) % C;   /* -100: ignored */
        nb_tensor *T = nb_from_data(NB_SHAPE(N), NB_I64, tv);
        nb_tensor *G = nb_randn(NB_SHAPE(N), NB_F32, 60 + (uint64_t)ci);   /* both signs */
        nb_tensor *Gb = nb_expand(nb_scalar(-0.5), NB_SHAPE(N));
        nb_tensor *W = nb_rand(NB_SHAPE(C), NB_F32, 70 + (uint64_t)ci);
        for (int v = 0; v < 8; v++) {
            const nb_tensor *in[3] = {v & 1 ? Gb : G, T, v & 2 ? W : NULL};
            double eps = v & 4 ? 0.1 : 0.0;
            const char *k1, *k2;
            int rc1, rc2;
            nb_tensor *a = ls_nll_bw(in, N, C, eps, "avx2", &k1, &rc1), *r = ls_nll_bw(in, N, C, eps, "ref", &k2, &rc2);
            cr_assert(rc1 == 0 && rc2 == 0, "C %lld case %d: rc %d / %d", (long long)C, v, rc1, rc2);
            cr_assert(strncmp(k1, "avx2", 4) == 0 && strncmp(k2, "ref", 3) == 0, "served by %s / %s", k1, k2);
            const float *x = nb_data(a), *y = nb_data(r);
            for (int64_t i = 0; i < N * C; i++)
                cr_assert(memcmp(&x[i], &y[i], 4) == 0, "C %lld case %d [%lld]: avx2 %a, ref %a", (long long)C, v,
                          (long long)i, (double)x[i], (double)y[i]);
        }
        tv[3] = C;   /* out of range */
        nb_tensor *Tb = nb_from_data(NB_SHAPE(N), NB_I64, tv);
        const nb_tensor *in[3] = {G, Tb, NULL};
        const char *k;
        int rc;
        nb_tensor *a = ls_nll_bw(in, N, C, 0, "avx2", &k, &rc);
        cr_assert_eq(rc, NB_ERANGE, "C %lld: target %lld gives rc %d", (long long)C, (long long)C, rc);
        cr_assert(isnan(((const float *)nb_data(a))[0]), "nothing written before the error");
    }
    nb_scope_end();
}
