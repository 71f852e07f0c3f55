/* test_elementwise.c — the element-wise ops (math, activations, comparisons,
 * logical, where, masked_fill), type promotion and the in-place variants.
 *
 *  ew_ref      every case of tests/data/ref_elementwise.txt (written by
 *              gen_ref_elementwise.py, which documents the format): forward
 *              against PyTorch, then backward of sum(out * W) against
 *              PyTorch's gradients, in F64 and F32, or once in the fixed
 *              dtypes of the promotion cases (result dtype, values and the
 *              dtype of each input's gradient);
 *  ew_grad     nb_gradcheck and nb_gradgradcheck in F64 of every
 *              differentiable op, inputs kept away from kinks;
 *  ew_promo    nb_result_type over every pair of dtypes and dimensionality,
 *              and gradients reaching mixed-dtype inputs in their own dtype;
 *  ew_inplace  clamp_, sub_, div_, add_ with promotion, the cast rule, and a
 *              saved tensor changed in place making backward fail clearly;
 *  ew_bad      bad inputs: NULL, non-bool cond/mask, shapes that do not
 *              broadcast, dtypes an op refuses; no tensor outlives its scope.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void ew_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}

#define EW_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ======================= ew_ref: against PyTorch ======================= */

TestSuite(ew_ref, .init = ew_setup);

static const tu_ref_arg *ew_arg(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    cr_assert(a != NULL && a->n == 1, "case %s: missing numeric arg %s", c->name, key);
    return a;
}
static double ew_argd(const tu_ref_case *c, const char *key) { return ew_arg(c, key)->v[0]; }
static bool ew_flag(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    return a && a->n == 1 && a->v[0] != 0;
}

static nb_dtype ew_dtype_word(const char *w) {
    if (!strcmp(w, "f32")) return NB_F32;
    if (!strcmp(w, "f64")) return NB_F64;
    if (!strcmp(w, "i64")) return NB_I64;
    if (!strcmp(w, "bool")) return NB_BOOL;
    cr_assert_fail("unknown dtype word %s", w);
    return NB_DTYPE_COUNT;
}

/* The dtype of a word arg (dt0, dout, ...), or `dflt` when absent. */
static nb_dtype ew_dtype_arg(const tu_ref_case *c, const char *key, nb_dtype dflt) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    return a ? ew_dtype_word(a->word) : dflt;
}

typedef nb_tensor *(*ew_un_fn)(nb_tensor *);
typedef nb_tensor *(*ew_bin_fn)(nb_tensor *, nb_tensor *);
typedef nb_tensor *(*ew_sc_fn)(nb_tensor *, double);

static const struct {
    const char *op;
    ew_un_fn fn;
} ew_unary[] = {
    {"sqrt", nb_sqrt}, {"rsqrt", nb_rsqrt}, {"abs", nb_abs}, {"sign", nb_sign},
    {"sin", nb_sin}, {"cos", nb_cos}, {"erf", nb_erf}, {"reciprocal", nb_reciprocal},
    {"square", nb_square}, {"sigmoid", nb_sigmoid}, {"relu", nb_relu}, {"silu", nb_silu},
    {"logical_not", nb_logical_not},
};
static const struct {
    const char *op;
    ew_bin_fn fn;
} ew_binary[] = {
    {"maximum", nb_maximum}, {"minimum", nb_minimum}, {"eq", nb_eq}, {"ne", nb_ne},
    {"lt", nb_lt}, {"le", nb_le}, {"gt", nb_gt}, {"ge", nb_ge},
    {"logical_and", nb_logical_and}, {"logical_or", nb_logical_or},
    {"add", nb_add}, {"sub", nb_sub}, {"mul", nb_mul}, {"div", nb_div},
};
static const struct {
    const char *op;
    ew_sc_fn fn;
} ew_scalar[] = {
    {"eq_scalar", nb_eq_scalar}, {"ne_scalar", nb_ne_scalar}, {"lt_scalar", nb_lt_scalar},
    {"le_scalar", nb_le_scalar}, {"gt_scalar", nb_gt_scalar}, {"ge_scalar", nb_ge_scalar},
    {"add_scalar", nb_add_scalar}, {"mul_scalar", nb_mul_scalar}, {"pow_scalar", nb_pow_scalar},
};
static const char *const ew_other[] = {
    "clamp", "leaky_relu", "elu", "gelu", "softplus", "where", "masked_fill",
};

static bool ew_op_known(const char *op) {
    for (int i = 0; i < EW_LEN(ew_unary); i++) if (!strcmp(op, ew_unary[i].op)) return true;
    for (int i = 0; i < EW_LEN(ew_binary); i++) if (!strcmp(op, ew_binary[i].op)) return true;
    for (int i = 0; i < EW_LEN(ew_scalar); i++) if (!strcmp(op, ew_scalar[i].op)) return true;
    for (int i = 0; i < EW_LEN(ew_other); i++) if (!strcmp(op, ew_other[i])) return true;
    return false;
}

static nb_tensor *ew_run_op(const tu_ref_case *c, nb_tensor **x) {
    const char *op = c->op;
    for (int i = 0; i < EW_LEN(ew_unary); i++)
        if (!strcmp(op, ew_unary[i].op)) return ew_unary[i].fn(x[0]);
    for (int i = 0; i < EW_LEN(ew_binary); i++)
        if (!strcmp(op, ew_binary[i].op)) return ew_binary[i].fn(x[0], x[1]);
    for (int i = 0; i < EW_LEN(ew_scalar); i++)
        if (!strcmp(op, ew_scalar[i].op)) return ew_scalar[i].fn(x[0], ew_argd(c, "s"));
    if (!strcmp(op, "clamp")) return nb_clamp(x[0], ew_argd(c, "min"), ew_argd(c, "max"));
    if (!strcmp(op, "leaky_relu")) return nb_leaky_relu(x[0], ew_argd(c, "s"));
    if (!strcmp(op, "elu")) return nb_elu(x[0], ew_argd(c, "alpha"));
    if (!strcmp(op, "gelu")) return nb_gelu(x[0], ew_argd(c, "approximate") != 0);
    if (!strcmp(op, "softplus")) return nb_softplus(x[0], ew_argd(c, "beta"), ew_argd(c, "threshold"));
    if (!strcmp(op, "where")) return nb_where(x[0], x[1], x[2]);
    if (!strcmp(op, "masked_fill")) return nb_masked_fill(x[0], x[1], ew_argd(c, "s"));
    cr_assert_fail("case %s: unknown op %s", c->name, op);
    return NULL;
}

static bool ew_close(const nb_tensor *got, const tu_ref_tensor *exp, nb_dtype dt, const char *what,
                     const tu_ref_case *c, const char *run) {
    double rtol = dt == NB_F32 ? 1e-4 : 1e-12, atol = dt == NB_F32 ? 1e-5 : 1e-12;
    char msg[512];
    bool ok = tu_check_close(got, exp->shape, exp->vals, rtol, atol, msg, sizeof msg);
    cr_expect(ok, "case %s (%s, op %s): %s: %s", c->name, run, c->op, what, msg);
    return ok;
}

/* Runs case c; `run` is F64 or F32 for the inputs without a dt arg (ignored
 * for fixed cases). */
static void ew_run_case(const tu_ref_case *c, nb_dtype run) {
    bool fixed = ew_flag(c, "fixed"), grad = !ew_flag(c, "nograd");
    const char *rn = fixed ? "fixed dtypes" : nb_dtype_name(run);
    nb_tensor *x[TU_REF_MAX_IN] = {0};
    nb_dtype dts[TU_REF_MAX_IN];
    nb_scope_begin();
    for (int i = 0; i < c->n_in; i++) {
        char key[16];
        snprintf(key, sizeof key, "dt%d", i);
        dts[i] = ew_dtype_arg(c, key, run);
        x[i] = tu_ref_make(&c->in[i], dts[i]);
        cr_assert(x[i] != NULL, "case %s: input %d: %s", c->name, i, nb_last_error());
        if (grad && (dts[i] == NB_F32 || dts[i] == NB_F64))
            cr_assert_eq(nb_set_requires_grad(x[i], true), 0, "%s", nb_last_error());
    }
    nb_tensor *out = ew_run_op(c, x);
    cr_expect(out != NULL, "case %s (%s, op %s): forward failed: %s", c->name, rn, c->op, nb_last_error());
    if (!out) goto done;
    nb_dtype want = ew_dtype_arg(c, "dout", run);
    cr_expect_eq(nb_dtype(out), want, "case %s (%s): out dtype %s, expected %s", c->name, rn,
                 nb_dtype_name(nb_dtype(out)), nb_dtype_name(want));
    if (!ew_close(out, &c->out, nb_dtype(out), "forward", c, rn) || !grad || !nb_requires_grad(out)) goto done;

    nb_tensor *w = tu_ref_make(&c->w, nb_dtype(out));
    cr_assert(w != NULL, "case %s: W: %s", c->name, nb_last_error());
    int rc = nb_backward(out, w);
    cr_expect_eq(rc, 0, "case %s (%s, op %s): nb_backward: %s", c->name, rn, c->op, nb_last_error());
    if (rc) goto done;
    for (int i = 0; i < c->n_in; i++) {
        if (!nb_requires_grad(x[i])) continue;
        char what[32];
        snprintf(what, sizeof what, "grad of input %d", i);
        nb_tensor *g = nb_grad(x[i]);
        cr_expect(g != NULL, "case %s (%s): no %s", c->name, rn, what);
        if (!g) continue;
        cr_expect_eq(nb_dtype(g), dts[i], "case %s (%s): %s has dtype %s, the input %s", c->name, rn, what,
                     nb_dtype_name(nb_dtype(g)), nb_dtype_name(dts[i]));
        /* a gradient computed in f32 and cast to f64 has f32's precision */
        ew_close(g, &c->grad[i], nb_dtype(out) == NB_F32 ? NB_F32 : dts[i], what, c, rn);
    }
done:
    nb_scope_end();
}

static void ew_run_op_cases(const char *op, bool promo) {
    tu_ref_set *s = tu_ref_load_all_from("ref_elementwise.txt");
    cr_assert(s != NULL, "cannot load " NB_TEST_DATA_DIR "/ref_elementwise.txt");
    int ran = 0;
    for (int i = 0; i < s->n; i++) {
        const tu_ref_case *c = &s->cases[i];
        if (strcmp(c->op, op) != 0 || ew_flag(c, "fixed") != promo) continue;
        if (promo) {
            ew_run_case(c, NB_F64);
        } else {
            ew_run_case(c, NB_F64);
            if (!ew_flag(c, "f64only")) ew_run_case(c, NB_F32);
        }
        ran++;
    }
    tu_ref_free_set(s);
    if (!promo) cr_expect_gt(ran, 0, "no reference case for op %s", op);
}

#define EW_REF_TEST(op) \
    Test(ew_ref, op) { ew_run_op_cases(#op, false); }

EW_REF_TEST(sqrt)
EW_REF_TEST(rsqrt)
EW_REF_TEST(abs)
EW_REF_TEST(sign)
EW_REF_TEST(sin)
EW_REF_TEST(cos)
EW_REF_TEST(erf)
EW_REF_TEST(reciprocal)
EW_REF_TEST(square)
EW_REF_TEST(clamp)
EW_REF_TEST(sigmoid)
EW_REF_TEST(relu)
EW_REF_TEST(leaky_relu)
EW_REF_TEST(elu)
EW_REF_TEST(gelu)
EW_REF_TEST(silu)
EW_REF_TEST(softplus)
EW_REF_TEST(maximum)
EW_REF_TEST(minimum)
EW_REF_TEST(eq)
EW_REF_TEST(ne)
EW_REF_TEST(lt)
EW_REF_TEST(le)
EW_REF_TEST(gt)
EW_REF_TEST(ge)
EW_REF_TEST(eq_scalar)
EW_REF_TEST(ne_scalar)
EW_REF_TEST(lt_scalar)
EW_REF_TEST(le_scalar)
EW_REF_TEST(gt_scalar)
EW_REF_TEST(ge_scalar)
EW_REF_TEST(logical_not)
EW_REF_TEST(logical_and)
EW_REF_TEST(logical_or)
EW_REF_TEST(where)
EW_REF_TEST(masked_fill)

/* The promotion cases: every op in the file with fixed dtypes. */
Test(ew_ref, promotion_cases) {
    tu_ref_set *s = tu_ref_load_all_from("ref_elementwise.txt");
    cr_assert(s != NULL);
    int ran = 0;
    for (int i = 0; i < s->n; i++)
        if (ew_flag(&s->cases[i], "fixed")) {
            ew_run_case(&s->cases[i], NB_F64);
            ran++;
        }
    tu_ref_free_set(s);
    cr_expect_gt(ran, 400, "only %d promotion cases", ran);
}

Test(ew_ref, every_case_is_run) {
    tu_ref_set *s = tu_ref_load_all_from("ref_elementwise.txt");
    cr_assert(s != NULL);
    bool sizes[4] = {false, false, false, false};
    const int64_t want[4] = {1, 7, 33, 1023};
    for (int i = 0; i < s->n; i++) {
        const tu_ref_case *c = &s->cases[i];
        cr_expect(ew_op_known(c->op), "case %s: op %s has no test", c->name, c->op);
        for (int k = 0; k < 4; k++)
            if (c->in[0].shape.ndim > 0 && c->in[0].shape.d[c->in[0].shape.ndim - 1] == want[k]) sizes[k] = true;
    }
    for (int k = 0; k < 4; k++) cr_expect(sizes[k], "no case with innermost size %lld", (long long)want[k]);
    tu_ref_free_set(s);
}

/* Every op has a ref kernel for F32 and F64; comparisons and logical ops
 * also for I64 and BOOL. */
Test(ew_ref, registry_lists_every_op) {
    const nb_op ops[] = {NB_OP_SQRT, NB_OP_RSQRT, NB_OP_ABS, NB_OP_SIGN, NB_OP_SIN, NB_OP_COS, NB_OP_ERF,
                         NB_OP_RECIPROCAL, NB_OP_SQUARE, NB_OP_CLAMP, NB_OP_MAXIMUM, NB_OP_MINIMUM,
                         NB_OP_SIGMOID, NB_OP_RELU, NB_OP_LEAKY_RELU, NB_OP_ELU, NB_OP_GELU, NB_OP_SILU,
                         NB_OP_SOFTPLUS, NB_OP_EQ, NB_OP_NE, NB_OP_LT, NB_OP_LE, NB_OP_GT, NB_OP_GE,
                         NB_OP_EQ_SCALAR, NB_OP_NE_SCALAR, NB_OP_LT_SCALAR, NB_OP_LE_SCALAR, NB_OP_GT_SCALAR,
                         NB_OP_GE_SCALAR, NB_OP_LOGICAL_NOT, NB_OP_LOGICAL_AND, NB_OP_LOGICAL_OR, NB_OP_WHERE,
                         NB_OP_MASKED_FILL};
    for (int i = 0; i < EW_LEN(ops); i++) {
        bool all = ops[i] >= NB_OP_EQ;
        for (int d = 0; d < (all ? 4 : 2); d++)
            cr_expect(nb_kernel_chosen(ops[i], (nb_dtype)d) != NULL, "no kernel for %s %s", nb_op_name(ops[i]),
                      nb_dtype_name((nb_dtype)d));
    }
}

/* ======================= ew_grad: finite differences ======================= */

TestSuite(ew_grad, .init = ew_setup);

enum { EK_RANDN, EK_POS, EK_AWAY };   /* N(0,1); [0.5, 2.5); |x| in [0.2, 2) with random sign */

static uint64_t ew_seed = 9100;

/* An F64 leaf requiring grad, of logical shape `shape` in layout 'c', 't' or 's'. */
static nb_tensor *ew_leaf(nb_dims shape, int kind, char layout) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    nb_tensor *r = nb_rand(nb_dims_of(1, &n), NB_F64, ew_seed++);
    nb_tensor *z = nb_randn(nb_dims_of(1, &n), NB_F64, ew_seed++);
    cr_assert(r && z, "%s", nb_last_error());
    double *u = malloc(sizeof(double) * (size_t)n), *v = malloc(sizeof(double) * (size_t)n);
    cr_assert(u && v);
    nb_copy_to(r, u, sizeof(double) * (size_t)n);
    nb_copy_to(z, v, sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        if (kind == EK_POS) v[i] = 2.0 * u[i] + 0.5;
        if (kind == EK_AWAY) v[i] = (1.8 * u[i] + 0.2) * (v[i] < 0 ? -1.0 : 1.0);
    }
    nb_tensor *t = tu_make_layout(shape, NB_F64, v, layout);
    free(u);
    free(v);
    cr_assert(t != NULL, "%s", nb_last_error());
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

typedef struct ew_gop {
    ew_un_fn un;        /* one-input op, or */
    ew_bin_fn bin;      /* two-input op, or */
    int other;          /* 1 clamp, 2 leaky_relu, 3 elu, 4 gelu, 5 softplus, 6 where, 7 masked_fill */
    double s0, s1;      /* op arguments */
    nb_tensor *mask;    /* cond / mask for where and masked_fill */
} ew_gop;

static nb_tensor *ew_gfn(nb_tensor *const *x, int n, void *user) {
    const ew_gop *g = user;
    (void)n;
    if (g->un) return g->un(x[0]);
    if (g->bin) return g->bin(x[0], x[1]);
    switch (g->other) {
    case 1: return nb_clamp(x[0], g->s0, g->s1);
    case 2: return nb_leaky_relu(x[0], g->s0);
    case 3: return nb_elu(x[0], g->s0);
    case 4: return nb_gelu(x[0], g->s0 != 0);
    case 5: return nb_softplus(x[0], g->s0, g->s1);
    case 6: return nb_where(g->mask, x[0], x[1]);
    default: return nb_masked_fill(x[0], g->mask, g->s0);
    }
}

static void ew_check(const char *what, ew_gop *g, nb_tensor **x, int n) {
    nb_gradcheck_opts o = {.user = g};
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    int rc = nb_gradcheck(ew_gfn, x, n, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradcheck: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)", what,
                 nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
    memset(&r, 0, sizeof r);
    rc = nb_gradgradcheck(ew_gfn, x, n, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradgradcheck: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)", what,
                 nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
}

/* A one-input op on a (3, 4) leaf in each layout and a 0-dim leaf. */
static void ew_check_unary(const char *what, ew_gop g, int kind) {
    const char layouts[] = {'c', 't', 's'};
    nb_scope_begin();
    for (int l = 0; l < 3; l++) {
        nb_tensor *x = ew_leaf(NB_SHAPE(3, 4), kind, layouts[l]);
        char w[64];
        snprintf(w, sizeof w, "%s (3x4 %c)", what, layouts[l]);
        ew_check(w, &g, &x, 1);
    }
    nb_tensor *x0 = ew_leaf(NB_SHAPE0, kind, 'c');
    ew_check(what, &g, &x0, 1);
    nb_tensor *x7 = ew_leaf(NB_SHAPE(7), kind, 'c');
    ew_check(what, &g, &x7, 1);
    nb_scope_end();
}

#define EW_GRAD_UN(name, fn, kind) \
    Test(ew_grad, name) { ew_check_unary(#name, (ew_gop){.un = fn}, kind); }

EW_GRAD_UN(sqrt, nb_sqrt, EK_POS)
EW_GRAD_UN(rsqrt, nb_rsqrt, EK_POS)
EW_GRAD_UN(abs, nb_abs, EK_AWAY)
EW_GRAD_UN(sign, nb_sign, EK_AWAY)
EW_GRAD_UN(sin, nb_sin, EK_RANDN)
EW_GRAD_UN(cos, nb_cos, EK_RANDN)
EW_GRAD_UN(erf, nb_erf, EK_RANDN)
EW_GRAD_UN(reciprocal, nb_reciprocal, EK_AWAY)
EW_GRAD_UN(square, nb_square, EK_RANDN)
EW_GRAD_UN(sigmoid, nb_sigmoid, EK_RANDN)
EW_GRAD_UN(tanh, nb_tanh, EK_RANDN)
EW_GRAD_UN(relu, nb_relu, EK_AWAY)
EW_GRAD_UN(silu, nb_silu, EK_RANDN)

Test(ew_grad, clamp) {
    /* |x| in [0.2, 2): bounds at ±0.1 and ±2.5 or 1.0 stay away from every input */
    ew_check_unary("clamp both", (ew_gop){.other = 1, .s0 = -0.1, .s1 = 0.1}, EK_AWAY);
    ew_check_unary("clamp min", (ew_gop){.other = 1, .s0 = 0.1, .s1 = NAN}, EK_AWAY);
    ew_check_unary("clamp max", (ew_gop){.other = 1, .s0 = NAN, .s1 = -0.1}, EK_AWAY);
    ew_check_unary("clamp crossed", (ew_gop){.other = 1, .s0 = 0.1, .s1 = -0.1}, EK_AWAY);
}
Test(ew_grad, leaky_relu) {
    ew_check_unary("leaky_relu 0.01", (ew_gop){.other = 2, .s0 = 0.01}, EK_AWAY);
    ew_check_unary("leaky_relu 0.3", (ew_gop){.other = 2, .s0 = 0.3}, EK_AWAY);
}
Test(ew_grad, elu) {
    ew_check_unary("elu 1", (ew_gop){.other = 3, .s0 = 1.0}, EK_AWAY);
    ew_check_unary("elu 0.5", (ew_gop){.other = 3, .s0 = 0.5}, EK_AWAY);
}
Test(ew_grad, gelu) {
    ew_check_unary("gelu exact", (ew_gop){.other = 4, .s0 = 0}, EK_RANDN);
    ew_check_unary("gelu tanh", (ew_gop){.other = 4, .s0 = 1}, EK_RANDN);
}
Test(ew_grad, softplus) {
    ew_check_unary("softplus 1 20", (ew_gop){.other = 5, .s0 = 1.0, .s1 = 20.0}, EK_RANDN);
    ew_check_unary("softplus 2 0.1", (ew_gop){.other = 5, .s0 = 2.0, .s1 = 0.1}, EK_AWAY);   /* both branches */
}

/* Two-input ops: same shapes, broadcasting, 0-dim and non-contiguous. */
static void ew_check_binary(const char *what, ew_gop g) {
    nb_scope_begin();
    const struct { nb_dims sa, sb; char la, lb; } cases[] = {
        {NB_SHAPE(3, 4), NB_SHAPE(3, 4), 'c', 'c'}, {NB_SHAPE(3, 1, 4), NB_SHAPE(5, 1), 'c', 'c'},
        {NB_SHAPE0, NB_SHAPE(2, 3), 'c', 'c'},      {NB_SHAPE(3, 4), NB_SHAPE(3, 4), 't', 's'},
        {NB_SHAPE(7), NB_SHAPE(1), 'c', 'c'},
    };
    for (int i = 0; i < EW_LEN(cases); i++) {
        nb_tensor *x[2] = {ew_leaf(cases[i].sa, EK_RANDN, cases[i].la), ew_leaf(cases[i].sb, EK_RANDN, cases[i].lb)};
        char w[64];
        snprintf(w, sizeof w, "%s case %d", what, i);
        ew_check(w, &g, x, 2);
    }
    nb_scope_end();
}

Test(ew_grad, maximum) { ew_check_binary("maximum", (ew_gop){.bin = nb_maximum}); }
Test(ew_grad, minimum) { ew_check_binary("minimum", (ew_gop){.bin = nb_minimum}); }

Test(ew_grad, where) {
    nb_scope_begin();
    ew_gop g = {.other = 6};
    g.mask = nb_lt_scalar(nb_rand(NB_SHAPE(3, 4), NB_F64, 77), 0.5);
    nb_tensor *x[2] = {ew_leaf(NB_SHAPE(3, 4), EK_RANDN, 'c'), ew_leaf(NB_SHAPE(3, 4), EK_RANDN, 'c')};
    ew_check("where", &g, x, 2);
    nb_tensor *y[2] = {ew_leaf(NB_SHAPE(3, 4), EK_RANDN, 't'), ew_leaf(NB_SHAPE(4), EK_RANDN, 's')};
    ew_check("where nc bcast", &g, y, 2);
    g.mask = nb_gt_scalar(nb_randn(NB_SHAPE(3, 1), NB_F64, 78), 0.0);   /* cond broadcast too */
    nb_tensor *z[2] = {ew_leaf(NB_SHAPE(1, 4), EK_RANDN, 'c'), ew_leaf(NB_SHAPE0, EK_RANDN, 'c')};
    ew_check("where bcast cond", &g, z, 2);
    nb_scope_end();
}

Test(ew_grad, masked_fill) {
    nb_scope_begin();
    ew_gop g = {.other = 7, .s0 = 1.5};
    g.mask = nb_lt_scalar(nb_rand(NB_SHAPE(3, 4), NB_F64, 79), 0.5);
    nb_tensor *x = ew_leaf(NB_SHAPE(3, 4), EK_RANDN, 't');
    ew_check("masked_fill", &g, &x, 1);
    nb_tensor *y = ew_leaf(NB_SHAPE(4), EK_RANDN, 'c');   /* t broadcast by the mask */
    ew_check("masked_fill bcast", &g, &y, 1);
    nb_scope_end();
}

/* Mixed dtypes in a gradcheck: an F64 leaf with an i64 tensor or bool mask
 * (off the graph) through promoting ops. */
static nb_tensor *ew_mixed_fn(nb_tensor *const *x, int n, void *user) {
    (void)n;
    nb_tensor *i = user;   /* i64 [3, 4] */
    return nb_add(nb_mul(x[0], i), nb_div(nb_maximum(x[0], i), nb_add_scalar(i, 10.0)));
}
Test(ew_grad, promoted_inputs) {
    nb_scope_begin();
    double iv[12] = {-3, -2, -1, 0, 1, 2, 3, 4, -4, 5, 1, 2};
    nb_tensor *i = nb_to_dtype(tu_tensor(NB_SHAPE(3, 4), NB_F64, iv), NB_I64);
    nb_tensor *x = ew_leaf(NB_SHAPE(3, 4), EK_RANDN, 'c');
    nb_gradcheck_opts o = {.user = i};
    cr_expect_eq(nb_gradcheck(ew_mixed_fn, &x, 1, &o, NULL), 0, "%s", nb_last_error());
    cr_expect_eq(nb_gradgradcheck(ew_mixed_fn, &x, 1, &o, NULL), 0, "%s", nb_last_error());
    nb_scope_end();
}

/* ======================= ew_promo: result types ======================= */

TestSuite(ew_promo, .init = ew_setup);

/* torch.result_type for (a, b) with a, b each dimensioned (d) or 0-dim (z);
 * dtype order f32, f64, i64, bool. */
Test(ew_promo, result_type_table) {
    const nb_dtype F = NB_F32, D = NB_F64, I = NB_I64, B = NB_BOOL;
    const nb_dtype dts[4] = {F, D, I, B};
    /* [a][b] for dim-dim (also zero-zero) */
    const nb_dtype dd[4][4] = {{F, D, F, F}, {D, D, D, D}, {F, D, I, I}, {F, D, I, B}};
    /* a dimensioned, b 0-dim */
    const nb_dtype dz[4][4] = {{F, F, F, F}, {D, D, D, D}, {F, D, I, I}, {F, D, I, B}};
    nb_scope_begin();
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            nb_tensor *ad = nb_zeros(NB_SHAPE(2), dts[a]), *bd = nb_zeros(NB_SHAPE(2), dts[b]);
            nb_tensor *az = nb_zeros(NB_SHAPE0, dts[a]), *bz = nb_zeros(NB_SHAPE0, dts[b]);
            cr_expect_eq(nb_result_type(ad, bd), dd[a][b], "%s[2] with %s[2]", nb_dtype_name(dts[a]),
                         nb_dtype_name(dts[b]));
            cr_expect_eq(nb_result_type(az, bz), dd[a][b], "0-dim %s with 0-dim %s", nb_dtype_name(dts[a]),
                         nb_dtype_name(dts[b]));
            cr_expect_eq(nb_result_type(ad, bz), dz[a][b], "%s[2] with 0-dim %s", nb_dtype_name(dts[a]),
                         nb_dtype_name(dts[b]));
            cr_expect_eq(nb_result_type(bz, ad), dz[a][b], "0-dim %s with %s[2]", nb_dtype_name(dts[b]),
                         nb_dtype_name(dts[a]));
            cr_expect_eq(nb_promote_types(dts[a], dts[b]), dd[a][b]);
            nb_tensor *sum = nb_add(ad, bz);   /* the op follows the same rule */
            cr_expect(sum != NULL, "%s", nb_last_error());
            cr_expect_eq(nb_dtype(sum), dz[a][b]);
        }
    cr_expect_eq(nb_result_type(NULL, NULL), NB_DTYPE_COUNT);
    nb_scope_end();
}

/* Scalars: an integral double is a Python int, anything else a Python float. */
Test(ew_promo, scalars) {
    nb_scope_begin();
    const struct { nb_dtype t; double s; nb_dtype want; } cases[] = {
        {NB_F32, 2.0, NB_F32}, {NB_F32, 2.5, NB_F32}, {NB_F64, 2.5, NB_F64}, {NB_I64, 2.0, NB_I64},
        {NB_I64, 2.5, NB_F32}, {NB_I64, NAN, NB_F32}, {NB_I64, 1e300, NB_F32}, {NB_BOOL, 1.0, NB_I64},
        {NB_BOOL, 0.5, NB_F32},
    };
    for (int i = 0; i < EW_LEN(cases); i++) {
        nb_tensor *t = nb_ones(NB_SHAPE(3), cases[i].t);
        nb_tensor *r = nb_mul_scalar(t, cases[i].s);
        cr_assert(r != NULL, "%s", nb_last_error());
        cr_expect_eq(nb_dtype(r), cases[i].want, "%s * %g gave %s", nb_dtype_name(cases[i].t), cases[i].s,
                     nb_dtype_name(nb_dtype(r)));
    }
    /* integer true division and transcendental ops of integers give f32 */
    nb_tensor *i = nb_arange(1, 4, 1, NB_I64);
    cr_expect_eq(nb_dtype(nb_div(i, i)), NB_F32);
    cr_expect_eq(nb_dtype(nb_exp(i)), NB_F32);
    cr_expect_eq(nb_dtype(nb_sqrt(i)), NB_F32);
    cr_expect_eq(nb_dtype(nb_abs(i)), NB_I64);
    cr_expect_eq(nb_dtype(nb_clamp(i, 0.5, NAN)), NB_F32);
    cr_expect_eq(nb_dtype(nb_clamp(i, 2.0, NAN)), NB_I64);
    nb_scope_end();
}

/* Each input gets its gradient in its own dtype: f32[3] + f64 0-dim is f32,
 * and the 0-dim f64 input's gradient is an f64 sum. */
Test(ew_promo, gradients_in_input_dtypes) {
    nb_scope_begin();
    nb_tensor *x = nb_detach(nb_from_data(NB_SHAPE(3), NB_F32, (float[]){1, 2, 3}));
    nb_tensor *s = nb_scalar_dtype(0.5, NB_F64);
    nb_set_requires_grad(x, true);
    nb_set_requires_grad(s, true);
    nb_tensor *y = nb_mul(x, s);
    cr_assert(y != NULL, "%s", nb_last_error());
    cr_expect_eq(nb_dtype(y), NB_F32);
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    cr_expect_eq(nb_dtype(nb_grad(x)), NB_F32);
    cr_expect_eq(nb_dtype(nb_grad(s)), NB_F64);
    cr_expect_float_eq(nb_item(nb_grad(s)), 6.0, 1e-12);
    int64_t k = 1;
    cr_expect_float_eq(nb_get(nb_grad(x), &k), 0.5, 1e-7);
    /* f32[3] + f64[3] is f64; the f32 input's gradient comes back as f32 */
    nb_tensor *d = nb_detach(nb_from_data(NB_SHAPE(3), NB_F64, (double[]){1, 2, 3}));
    nb_set_requires_grad(d, true);
    nb_tensor *z = nb_where(nb_gt_scalar(d, 1.5), x, d);
    cr_expect_eq(nb_dtype(z), NB_F64);
    cr_assert_eq(nb_backward(nb_sum_all(z), NULL), 0, "%s", nb_last_error());
    cr_expect_eq(nb_dtype(nb_grad(x)), NB_F32);
    cr_expect_eq(nb_dtype(nb_grad(d)), NB_F64);
    nb_scope_end();
}

/* ======================= ew_inplace ======================= */

TestSuite(ew_inplace, .init = ew_setup);

static void ew_expect_vals(nb_tensor *t, const double *want, int n, const char *what) {
    char msg[256];
    cr_expect(tu_check_close(t, nb_dims_of(1, (int64_t[]){n}), want, 1e-6, 1e-6, msg, sizeof msg), "%s: %s", what,
              msg);
}

Test(ew_inplace, clamp_sub_div) {
    nb_scope_begin();
    nb_tensor *x = nb_from_data(NB_SHAPE(4), NB_F32, (float[]){-2, -0.5f, 0.5f, 3});
    uint64_t v0 = nb_version(x);
    cr_assert_eq(nb_clamp_(x, -1, 1), x, "%s", nb_last_error());
    cr_expect_gt(nb_version(x), v0);
    ew_expect_vals(x, (double[]){-1, -0.5, 0.5, 1}, 4, "clamp_");
    cr_assert_eq(nb_sub_(x, nb_scalar(1.0)), x, "%s", nb_last_error());
    ew_expect_vals(x, (double[]){-2, -1.5, -0.5, 0}, 4, "sub_");
    cr_assert_eq(nb_div_(x, nb_full(NB_SHAPE(4), NB_F64, 2.0)), x, "%s", nb_last_error());
    cr_expect_eq(nb_dtype(x), NB_F32);
    ew_expect_vals(x, (double[]){-1, -0.75, -0.25, 0}, 4, "div_ by f64");
    nb_tensor *i = nb_arange(0, 4, 1, NB_I64);
    cr_assert_eq(nb_clamp_(i, 1, 2), i, "%s", nb_last_error());
    ew_expect_vals(i, (double[]){1, 1, 2, 2}, 4, "clamp_ i64");
    cr_assert_eq(nb_add_(i, nb_ones(NB_SHAPE(4), NB_BOOL)), i, "%s", nb_last_error());
    ew_expect_vals(i, (double[]){2, 2, 3, 3}, 4, "i64 += bool");
    nb_scope_end();
}

/* PyTorch's in-place cast rule: the promoted result must fit self's dtype. */
Test(ew_inplace, cast_rule) {
    nb_scope_begin();
    nb_tensor *i = nb_arange(0, 4, 1, NB_I64);
    nb_tensor *f = nb_ones(NB_SHAPE(4), NB_F32);
    uint64_t v0 = nb_version(i);
    const struct { nb_tensor *r; const char *who; } bad[] = {
        {nb_add_(i, f), "nb_add_"},          {nb_div_(i, nb_arange(1, 5, 1, NB_I64)), "nb_div_"},
        {nb_mul_scalar_(i, 1.5), "nb_mul_scalar_"}, {nb_clamp_(i, 0.5, NAN), "nb_clamp_"},
    };
    for (int k = 0; k < EW_LEN(bad); k++) {
        cr_expect_null(bad[k].r, "%s should refuse an i64 self", bad[k].who);
    }
    cr_expect_eq(nb_last_error_code(), NB_EDTYPE);
    cr_expect(strstr(nb_last_error(), "can't be cast") != NULL, "%s", nb_last_error());
    cr_expect_eq(nb_version(i), v0, "a refused in-place op must not bump the version");
    nb_tensor *b = nb_ones(NB_SHAPE(4), NB_BOOL);
    cr_expect_null(nb_add_(b, i));
    cr_expect_eq(nb_last_error_code(), NB_EDTYPE);
    nb_scope_end();
}

/* y = sigmoid(x) saves its output; changing y in place (under no-grad) makes
 * backward fail naming SigmoidBackward. */
Test(ew_inplace, saved_tensor_changed) {
    nb_scope_begin();
    nb_tensor *x = nb_detach(nb_randn(NB_SHAPE(3), NB_F64, 5));
    nb_set_requires_grad(x, true);
    nb_tensor *y = nb_sigmoid(x);
    nb_tensor *l = nb_sum_all(y);
    bool prev = nb_set_grad_enabled(false);
    cr_assert_eq(nb_mul_scalar_(y, 2.0), y, "%s", nb_last_error());
    nb_set_grad_enabled(prev);
    cr_expect_eq(nb_backward(l, NULL), NB_EAUTOGRAD);
    cr_expect(strstr(nb_last_error(), "SigmoidBackward") != NULL, "%s", nb_last_error());
    cr_expect(strstr(nb_last_error(), "in-place") != NULL, "%s", nb_last_error());
    /* the same with clamp_ of relu's saved output; an untouched graph still works */
    nb_tensor *x2 = nb_detach(nb_randn(NB_SHAPE(3), NB_F64, 6));
    nb_set_requires_grad(x2, true);
    nb_tensor *a = nb_abs(x2);
    nb_tensor *r = nb_relu(nb_mul_scalar(x2, 1.0));
    nb_set_grad_enabled(false);
    cr_assert_eq(nb_clamp_(r, 0.0, 0.5), r, "%s", nb_last_error());
    nb_set_grad_enabled(true);
    cr_expect_eq(nb_backward(nb_sum_all(r), NULL), NB_EAUTOGRAD);
    cr_expect(strstr(nb_last_error(), "ReluBackward") != NULL, "%s", nb_last_error());
    cr_expect_eq(nb_backward(nb_sum_all(a), NULL), 0, "%s", nb_last_error());
    /* in place on a tensor that requires grad is refused while grad mode is on */
    cr_expect_null(nb_clamp_(x2, 0.0, 1.0));
    cr_expect_eq(nb_last_error_code(), NB_EAUTOGRAD);
    nb_scope_end();
}

/* ======================= ew_bad: bad inputs ======================= */

static uint64_t ew_live_at_start;

static void ew_bad_init(void) {
    ew_setup();
    ew_live_at_start = nb_memory_stats().live_tensors;
    nb_clear_error();
    nb_scope_begin();
}
static void ew_bad_fini(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}
TestSuite(ew_bad, .init = ew_bad_init, .fini = ew_bad_fini);

#define EW_BAD(expr, code, ...)                                                                            \
    do {                                                                                                   \
        nb_clear_error();                                                                                  \
        nb_tensor *r_ = (expr);                                                                            \
        cr_expect_null(r_, "%s: expected NULL", #expr);                                                    \
        cr_expect_eq(nb_last_error_code(), (code), "%s: error %s, expected %s: %s", #expr,                 \
                     nb_error_name(nb_last_error_code()), nb_error_name(code), nb_last_error());           \
        const char *subs_[] = {__VA_ARGS__};                                                               \
        for (int i_ = 0; i_ < EW_LEN(subs_); i_++)                                                         \
            cr_expect(strstr(nb_last_error(), subs_[i_]) != NULL, "%s: message \"%s\" lacks \"%s\"", #expr, \
                      nb_last_error(), subs_[i_]);                                                         \
    } while (0)

static void ew_bad_end(void) {
    nb_scope_end();
    cr_expect_eq(nb_memory_stats().live_tensors, ew_live_at_start, "tensors outlived the scope");
}

Test(ew_bad, null_inputs) {
    nb_tensor *a = nb_ones(NB_SHAPE(2), NB_F32);
    EW_BAD(nb_sqrt(NULL), NB_ENULLARG, "nb_sqrt");
    EW_BAD(nb_gelu(NULL, false), NB_ENULLARG, "nb_gelu");
    EW_BAD(nb_clamp(NULL, 0, 1), NB_ENULLARG, "nb_clamp");
    EW_BAD(nb_maximum(a, NULL), NB_ENULLARG, "nb_maximum");
    EW_BAD(nb_eq(NULL, a), NB_ENULLARG, "nb_eq");
    EW_BAD(nb_lt_scalar(NULL, 1), NB_ENULLARG, "nb_lt_scalar");
    EW_BAD(nb_where(NULL, a, a), NB_ENULLARG, "nb_where");
    EW_BAD(nb_masked_fill(a, NULL, 0), NB_ENULLARG, "nb_masked_fill");
    EW_BAD(nb_logical_and(a, NULL), NB_ENULLARG, "nb_logical_and");
    EW_BAD(nb_clamp_(NULL, 0, 1), NB_ENULLARG, "nb_clamp_");
    EW_BAD(nb_fill_(nb_ones(NB_SHAPE(2), NB_I64), NAN), NB_EINVAL, "nb_fill_", "i64");
    EW_BAD(nb_sub_(a, NULL), NB_ENULLARG, "nb_sub_");
    /* a chain keeps the first failure */
    nb_clear_error();
    cr_expect_null(nb_relu(nb_sigmoid(nb_where(a, a, a))));
    cr_expect_eq(nb_last_error_code(), NB_EDTYPE, "%s", nb_last_error());
    ew_bad_end();
}

Test(ew_bad, non_bool_cond_and_mask) {
    nb_tensor *a = nb_ones(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *i = nb_ones(NB_SHAPE(2, 3), NB_I64);
    EW_BAD(nb_where(a, a, a), NB_EDTYPE, "nb_where", "cond", "f32", "[2, 3]");
    EW_BAD(nb_where(i, a, a), NB_EDTYPE, "nb_where", "i64");
    EW_BAD(nb_masked_fill(a, i, 1.0), NB_EDTYPE, "nb_masked_fill", "mask", "i64", "[2, 3]");
    EW_BAD(nb_masked_fill(i, nb_ones(NB_SHAPE(3), NB_BOOL), NAN), NB_EINVAL, "nb_masked_fill", "i64");
    ew_bad_end();
}

Test(ew_bad, shapes_do_not_broadcast) {
    nb_tensor *a = nb_ones(NB_SHAPE(2, 3), NB_F32), *b = nb_ones(NB_SHAPE(4), NB_F64);
    nb_tensor *m = nb_ones(NB_SHAPE(5, 1), NB_BOOL);
    EW_BAD(nb_maximum(a, b), NB_ESHAPE, "nb_maximum", "[2, 3]", "[4]");
    EW_BAD(nb_eq(a, b), NB_ESHAPE, "nb_eq", "[2, 3]", "[4]");
    EW_BAD(nb_logical_or(b, a), NB_ESHAPE, "nb_logical_or", "[4]", "[2, 3]");
    EW_BAD(nb_where(m, a, a), NB_ESHAPE, "nb_where", "[5, 1]", "[2, 3]");
    EW_BAD(nb_where(nb_ones(NB_SHAPE(3), NB_BOOL), a, b), NB_ESHAPE, "nb_where", "[2, 3]", "[4]");
    EW_BAD(nb_masked_fill(a, m, 0.0), NB_ESHAPE, "nb_masked_fill", "[2, 3]", "[5, 1]");
    EW_BAD(nb_sub_(nb_ones(NB_SHAPE(3), NB_F32), a), NB_ESHAPE, "nb_sub_", "[3]", "[2, 3]");
    ew_bad_end();
}

Test(ew_bad, dtypes_refused) {
    nb_tensor *i = nb_ones(NB_SHAPE(2), NB_I64), *b = nb_ones(NB_SHAPE(2), NB_BOOL);
    EW_BAD(nb_gelu(i, false), NB_EDTYPE, "nb_gelu", "i64");
    EW_BAD(nb_silu(i), NB_EDTYPE, "nb_silu", "i64");
    EW_BAD(nb_elu(i, 1.0), NB_EDTYPE, "nb_elu");
    EW_BAD(nb_softplus(i, 1.0, 20.0), NB_EDTYPE, "nb_softplus");
    EW_BAD(nb_leaky_relu(b, 0.01), NB_EDTYPE, "nb_leaky_relu", "bool");
    EW_BAD(nb_abs(b), NB_EDTYPE, "nb_abs", "bool");
    EW_BAD(nb_relu(b), NB_EDTYPE, "nb_relu", "bool");
    EW_BAD(nb_neg(b), NB_EDTYPE, "nb_neg", "bool");
    EW_BAD(nb_sub(b, i), NB_EDTYPE, "nb_sub", "bool");
    EW_BAD(nb_sub_(i, b), NB_EDTYPE, "nb_sub_", "bool");
    EW_BAD(nb_clamp(nb_ones(NB_SHAPE(2), NB_F32), NAN, NAN), NB_EINVAL, "nb_clamp", "min");
    EW_BAD(nb_softplus(nb_ones(NB_SHAPE(2), NB_F32), 0.0, 20.0), NB_EINVAL, "nb_softplus", "beta");
    ew_bad_end();
}
