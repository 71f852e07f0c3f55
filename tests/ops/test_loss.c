/* test_loss.c — linear, softmax, log_softmax, the losses and dropout.
 *
 * loss_ref:     every case of tests/data/ref_loss.txt (gen_ref_loss.py):
 *               forward and the gradients of sum(out * W) against PyTorch,
 *               in F64 (~1e-10) and F32, inputs contiguous, transposed or
 *               strided as the case says.
 * loss_grad:    nb_gradcheck in F64 for every op and option combination,
 *               nb_gradgradcheck for softmax, log_softmax, linear, mse (and
 *               the others whose backward is differentiable).
 * loss_dropout: statistics of the mask, scaling, determinism, eval.
 * loss_bad:     bad inputs give NULL, the right NB_E* and a message naming
 *               the op, and leak nothing.
 * loss_misc:    registry entries, PyTorch edge cases (all targets ignored).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void ls_setup(void) { cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error()); }
static void ls_fini(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}

/* ==== loss_ref: PyTorch's values ==== */

static nb_reduction ls_reduction(const tu_ref_case *c) {
    const tu_ref_arg *a = tu_ref_arg_get(c, "reduction");
    if (!a || !strcmp(a->word, "mean")) return NB_REDUCTION_MEAN;
    return !strcmp(a->word, "sum") ? NB_REDUCTION_SUM : NB_REDUCTION_NONE;
}
static double ls_argd(const tu_ref_case *c, const char *key, double dflt) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    return a && a->n == 1 ? a->v[0] : dflt;
}

/* Which inputs of case c take a gradient (the others: targets, weights). */
static bool ls_takes_grad(const tu_ref_case *c, int i) {
    if (!strcmp(c->op, "cross_entropy")) return i == 0 || (i == 1 && ls_argd(c, "probs", 0) != 0);
    if (!strcmp(c->op, "nll_loss")) return i == 0;
    if (!strcmp(c->op, "bce_with_logits")) return i < 2;
    return true;
}

/* Input i of case c in dtype dt (class targets as i64). */
static nb_dtype ls_in_dtype(const tu_ref_case *c, int i, nb_dtype dt) {
    bool class_t = (!strcmp(c->op, "cross_entropy") && ls_argd(c, "probs", 0) == 0) || !strcmp(c->op, "nll_loss");
    return class_t && i == 1 ? NB_I64 : dt;
}

static nb_tensor *ls_run_op(const tu_ref_case *c, nb_tensor **x) {
    const char *op = c->op;
    nb_reduction red = ls_reduction(c);
    if (!strcmp(op, "softmax")) return nb_softmax(x[0], (int)ls_argd(c, "dim", 0));
    if (!strcmp(op, "log_softmax")) return nb_log_softmax(x[0], (int)ls_argd(c, "dim", 0));
    if (!strcmp(op, "linear")) return nb_linear(x[0], x[1], c->n_in > 2 ? x[2] : NULL);
    if (!strcmp(op, "cross_entropy")) {
        nb_cross_entropy_opts o = {.weight = c->n_in > 2 ? x[2] : NULL, .reduction = red,
                                   .label_smoothing = ls_argd(c, "smoothing", 0)};
        if (tu_ref_arg_get(c, "ignore")) {
            o.set_ignore_index = true;
            o.ignore_index = (int64_t)ls_argd(c, "ignore", 0);
        }
        return nb_cross_entropy_ex(x[0], x[1], &o);
    }
    if (!strcmp(op, "nll_loss")) {
        nb_nll_loss_opts o = {.weight = c->n_in > 2 ? x[2] : NULL, .reduction = red};
        if (tu_ref_arg_get(c, "ignore")) {
            o.set_ignore_index = true;
            o.ignore_index = (int64_t)ls_argd(c, "ignore", 0);
        }
        return nb_nll_loss_ex(x[0], x[1], &o);
    }
    if (!strcmp(op, "mse_loss")) return nb_mse_loss_ex(x[0], x[1], red);
    if (!strcmp(op, "l1_loss")) return nb_l1_loss_ex(x[0], x[1], red);
    if (!strcmp(op, "smooth_l1_loss")) return nb_smooth_l1_loss_ex(x[0], x[1], red, ls_argd(c, "beta", 1.0));
    if (!strcmp(op, "bce_with_logits")) {
        int k = 2;
        nb_bce_opts o = {.reduction = red};
        if (ls_argd(c, "hasw", 0) != 0) o.weight = x[k++];
        if (ls_argd(c, "haspw", 0) != 0) o.pos_weight = x[k];
        return nb_binary_cross_entropy_with_logits_ex(x[0], x[1], &o);
    }
    cr_assert_fail("case %s: unknown op %s", c->name, op);
    return NULL;
}

static double ls_maxabs(const tu_ref_tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < t->numel; i++)
        if (fabs(t->vals[i]) > m) m = fabs(t->vals[i]);
    return m;
}

static void ls_close(const nb_tensor *got, const tu_ref_tensor *exp, nb_dtype dt, const char *what,
                     const tu_ref_case *c) {
    char msg[512];
    double rtol = dt == NB_F64 ? 1e-10 : 2e-4, atol = (dt == NB_F64 ? 1e-11 : 2e-5) * (1.0 + ls_maxabs(exp));
    bool ok = tu_check_close(got, exp->shape, exp->vals, rtol, atol, msg, sizeof msg);
    cr_expect(ok, "case %s (%s, op %s): %s: %s", c->name, nb_dtype_name(dt), c->op, what, msg);
}

static void ls_run_case(const tu_ref_case *c, nb_dtype dt) {
    nb_tensor *x[TU_REF_MAX_IN] = {0};
    nb_scope_begin();
    for (int i = 0; i < c->n_in; i++) {
        x[i] = tu_ref_make(&c->in[i], ls_in_dtype(c, i, dt));
        cr_assert(x[i] != NULL, "case %s: input %d: %s", c->name, i, nb_last_error());
        if (ls_takes_grad(c, i)) cr_assert_eq(nb_set_requires_grad(x[i], true), 0, "%s", nb_last_error());
    }
    nb_tensor *out = ls_run_op(c, x);
    cr_expect(out != NULL, "case %s (%s): forward failed: %s", c->name, nb_dtype_name(dt), nb_last_error());
    if (!out) goto done;
    cr_expect_eq(nb_dtype(out), dt, "case %s: output dtype %s", c->name, nb_dtype_name(nb_dtype(out)));
    ls_close(out, &c->out, dt, "forward", c);
    int rc = nb_backward(out, tu_ref_make(&c->w, dt));
    cr_expect_eq(rc, 0, "case %s (%s): backward: %s", c->name, nb_dtype_name(dt), nb_last_error());
    if (rc) goto done;
    for (int i = 0; i < c->n_in; i++) {
        if (!ls_takes_grad(c, i)) continue;
        char what[32];
        snprintf(what, sizeof what, "grad of input %d", i);
        nb_tensor *g = nb_grad(x[i]);
        cr_expect(g != NULL, "case %s: no %s", c->name, what);
        if (g) ls_close(g, &c->grad[i], dt, what, c);
    }
done:
    nb_scope_end();
}

/* Runs every case whose op is `op`; returns how many. */
static int ls_run_op_cases(const char *op) {
    tu_ref_set *s = tu_ref_load_all_from("ref_loss.txt");
    cr_assert(s != NULL, "cannot load ref_loss.txt");
    int ran = 0;
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->cases[i].op, op) != 0) continue;
        ls_run_case(&s->cases[i], NB_F64);
        ls_run_case(&s->cases[i], NB_F32);
        ran++;
    }
    tu_ref_free_set(s);
    cr_expect_gt(ran, 0, "no reference case for %s", op);
    return ran;
}

TestSuite(loss_ref, .init = ls_setup, .fini = ls_fini);
Test(loss_ref, softmax) { ls_run_op_cases("softmax"); }
Test(loss_ref, log_softmax) { ls_run_op_cases("log_softmax"); }
Test(loss_ref, linear) { ls_run_op_cases("linear"); }
Test(loss_ref, cross_entropy) { cr_expect_geq(ls_run_op_cases("cross_entropy"), 45); }
Test(loss_ref, nll_loss) { ls_run_op_cases("nll_loss"); }
Test(loss_ref, mse_loss) { ls_run_op_cases("mse_loss"); }
Test(loss_ref, l1_loss) { ls_run_op_cases("l1_loss"); }
Test(loss_ref, smooth_l1_loss) { ls_run_op_cases("smooth_l1_loss"); }
Test(loss_ref, bce_with_logits) { ls_run_op_cases("bce_with_logits"); }

Test(loss_ref, every_case_is_run) {
    static const char *const known[] = {"softmax", "log_softmax", "linear", "cross_entropy", "nll_loss",
                                        "mse_loss", "l1_loss", "smooth_l1_loss", "bce_with_logits"};
    tu_ref_set *s = tu_ref_load_all_from("ref_loss.txt");
    cr_assert(s != NULL);
    for (int i = 0; i < s->n; i++) {
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok |= !strcmp(s->cases[i].op, known[k]);
        cr_expect(ok, "case %s: op %s has no test", s->cases[i].name, s->cases[i].op);
    }
    tu_ref_free_set(s);
}

/* ==== loss_grad: finite differences in F64 ==== */

static uint64_t ls_seed = 777;

/* An F64 leaf of `shape` in memory layout 'c', 't' or 's', N(0,1) * scale, requiring grad. */
static nb_tensor *ls_leaf(nb_dims shape, double scale, char layout, bool grad) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert(v != NULL);
    nb_tensor *r = nb_randn(nb_dims_of(1, &n), NB_F64, ls_seed++);
    cr_assert_eq(nb_copy_to(r, v, sizeof(double) * (size_t)n), 0, "%s", nb_last_error());
    for (int64_t i = 0; i < n; i++) v[i] *= scale;
    nb_tensor *t = tu_make_layout(shape, NB_F64, v, layout);
    free(v);
    cr_assert(t != NULL, "%s", nb_last_error());
    if (grad) cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

/* I64 class targets of `shape` in [0, C), every `every`-th one set to ign (0: none). */
static nb_tensor *ls_targets(nb_dims shape, int64_t C, int every, int64_t ign) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert(v != NULL);
    for (int64_t i = 0; i < n; i++) v[i] = every && i % every == 1 ? (double)ign : (double)((i * 5 + 3) % C);
    nb_tensor *t = tu_tensor(shape, NB_I64, v);
    free(v);
    cr_assert(t != NULL, "%s", nb_last_error());
    return t;
}

/* Positive class weights (C), F64, no grad. */
static nb_tensor *ls_weights(int64_t C) {
    double v[64];
    cr_assert(C <= 64);
    for (int64_t c = 0; c < C; c++) v[c] = 0.5 + 0.37 * (double)((c * 7) % 5);
    return tu_tensor(NB_SHAPE(C), NB_F64, v);
}

typedef struct ls_gop {
    int op;                       /* which function, LS_* */
    int dim;                      /* softmax dim */
    nb_reduction red;             /* loss reduction */
    nb_cross_entropy_opts ce;     /* cross entropy / nll options */
    nb_bce_opts bce;              /* bce options */
    double beta, p;               /* smooth_l1 beta, dropout p */
    nb_tensor *t;                 /* class targets (borrowed) */
} ls_gop;
enum { LS_SOFTMAX, LS_LOG_SOFTMAX, LS_LINEAR, LS_LINEAR_NOBIAS, LS_CE, LS_CE_PROBS, LS_NLL, LS_MSE, LS_L1,
       LS_SMOOTH_L1, LS_BCE, LS_DROPOUT };

static nb_tensor *ls_gfn(nb_tensor *const *x, int n, void *user) {
    (void)n;
    const ls_gop *g = user;
    switch (g->op) {
    case LS_SOFTMAX: return nb_softmax(x[0], g->dim);
    case LS_LOG_SOFTMAX: return nb_log_softmax(x[0], g->dim);
    case LS_LINEAR: return nb_linear(x[0], x[1], x[2]);
    case LS_LINEAR_NOBIAS: return nb_linear(x[0], x[1], NULL);
    case LS_CE: return nb_cross_entropy_ex(x[0], g->t, &g->ce);
    case LS_CE_PROBS: return nb_cross_entropy_ex(x[0], nb_softmax(x[1], g->ce.weight ? 1 : -1), &g->ce);
    case LS_NLL: {
        nb_nll_loss_opts o = {g->ce.weight, g->ce.set_ignore_index, g->ce.ignore_index, g->ce.reduction};
        return nb_nll_loss_ex(x[0], g->t, &o);
    }
    case LS_MSE: return nb_mse_loss_ex(x[0], x[1], g->red);
    case LS_L1: return nb_l1_loss_ex(x[0], x[1], g->red);
    case LS_SMOOTH_L1: return nb_smooth_l1_loss_ex(x[0], x[1], g->red, g->beta);
    case LS_BCE: return nb_binary_cross_entropy_with_logits_ex(x[0], nb_softmax(x[1], -1), &g->bce);
    default: return nb_dropout(x[0], g->p, true, 99);
    }
}

static void ls_check(const char *what, const ls_gop *g, nb_tensor **x, int n, bool gg) {
    nb_gradcheck_opts o = {.user = (void *)g};
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    int rc = nb_gradcheck(ls_gfn, x, n, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradcheck %d: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)", what,
                 rc, nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
    if (!gg) return;
    memset(&r, 0, sizeof r);
    rc = nb_gradgradcheck(ls_gfn, x, n, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradgradcheck %d: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)",
                 what, rc, nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic,
                 r.numeric);
}

TestSuite(loss_grad, .init = ls_setup, .fini = ls_fini);

Test(loss_grad, softmax_log_softmax) {
    static const struct {
        nb_dims shape;
        int dim;
        char layout;
    } cs[] = {{{1, {1}}, 0, 'c'},     {{1, {7}}, -1, 'c'},    {{2, {3, 33}}, 1, 'c'}, {{2, {4, 5}}, 0, 't'},
              {{2, {4, 5}}, 1, 's'},  {{3, {2, 3, 4}}, 1, 't'}, {{0, {0}}, 0, 'c'}};
    for (int op = LS_SOFTMAX; op <= LS_LOG_SOFTMAX; op++)
        for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
            nb_scope_begin();
            nb_tensor *x = ls_leaf(cs[i].shape, 1.0, cs[i].layout, true);
            ls_gop g = {.op = op, .dim = cs[i].dim};
            char what[64];
            snprintf(what, sizeof what, "%s case %zu", op == LS_SOFTMAX ? "softmax" : "log_softmax", i);
            ls_check(what, &g, &x, 1, true);
            nb_scope_end();
        }
}

Test(loss_grad, linear) {
    nb_scope_begin();
    nb_tensor *x[3] = {ls_leaf(NB_SHAPE(4, 5), 1, 't', true), ls_leaf(NB_SHAPE(3, 5), 1, 'c', true),
                       ls_leaf(NB_SHAPE(3), 1, 's', true)};
    ls_gop g = {.op = LS_LINEAR};
    ls_check("linear 2-D", &g, x, 3, true);
    nb_tensor *y[3] = {ls_leaf(NB_SHAPE(2, 3, 4), 1, 'c', true), ls_leaf(NB_SHAPE(2, 4), 1, 't', true),
                       ls_leaf(NB_SHAPE(2), 1, 'c', true)};
    ls_check("linear 3-D", &g, y, 3, true);
    nb_tensor *z[2] = {ls_leaf(NB_SHAPE(7), 1, 'c', true), ls_leaf(NB_SHAPE(2, 7), 1, 'c', true)};
    g.op = LS_LINEAR_NOBIAS;
    ls_check("linear 1-D no bias", &g, z, 2, true);
    nb_scope_end();
}

/* Every option combination of cross entropy (class targets), and nll_loss;
 * gradgradcheck runs the create_graph form of the backward. */
Test(loss_grad, cross_entropy_and_nll) {
    for (int red = 0; red < NB_REDUCTION_COUNT; red++)
        for (int hw = 0; hw < 2; hw++)
            for (int sm = 0; sm < 2; sm++)
                for (int ig = 0; ig < 2; ig++) {
                    nb_scope_begin();
                    nb_tensor *x = ls_leaf(NB_SHAPE(5, 4), 1, 'c', true);
                    ls_gop g = {.op = LS_CE};
                    g.ce.reduction = (nb_reduction)red;
                    g.ce.weight = hw ? ls_weights(4) : NULL;
                    g.ce.label_smoothing = sm ? 0.15 : 0.0;
                    g.ce.set_ignore_index = ig;
                    g.ce.ignore_index = ig ? 2 : 0;
                    g.t = ls_targets(NB_SHAPE(5), 4, 3, ig ? 2 : -100);
                    char what[64];
                    snprintf(what, sizeof what, "cross_entropy red %d w %d s %d i %d", red, hw, sm, ig);
                    ls_check(what, &g, &x, 1, true);
                    if (!sm) {
                        g.op = LS_NLL;
                        snprintf(what, sizeof what, "nll_loss red %d w %d i %d", red, hw, ig);
                        ls_check(what, &g, &x, 1, true);
                    }
                    nb_scope_end();
                }
    /* spatial, unbatched and non-contiguous logits */
    nb_scope_begin();
    ls_gop g = {.op = LS_CE};
    g.ce.label_smoothing = 0.2;
    g.ce.weight = ls_weights(3);
    nb_tensor *x = ls_leaf(NB_SHAPE(2, 3, 2, 2), 1, 't', true);
    g.t = ls_targets(NB_SHAPE(2, 2, 2), 3, 3, -100);
    ls_check("cross_entropy spatial", &g, &x, 1, true);
    g.op = LS_NLL;
    ls_check("nll_loss spatial", &g, &x, 1, true);
    x = ls_leaf(NB_SHAPE(5), 1, 'c', true);
    g.ce.weight = NULL;
    g.op = LS_CE;
    int64_t tv = 3;
    g.t = nb_from_data(NB_SHAPE0, NB_I64, &tv);
    ls_check("cross_entropy unbatched", &g, &x, 1, true);
    nb_scope_end();
}

Test(loss_grad, cross_entropy_probs) {
    for (int red = 0; red < NB_REDUCTION_COUNT; red++)
        for (int hw = 0; hw < 2; hw++) {
            nb_scope_begin();
            nb_tensor *x[2] = {ls_leaf(NB_SHAPE(3, 4), 1, 's', true), ls_leaf(NB_SHAPE(3, 4), 1, 'c', true)};
            ls_gop g = {.op = LS_CE_PROBS};
            g.ce.reduction = (nb_reduction)red;
            g.ce.weight = hw ? ls_weights(4) : NULL;
            g.ce.label_smoothing = 0.1 * hw;
            char what[64];
            snprintf(what, sizeof what, "cross_entropy probs red %d w %d", red, hw);
            ls_check(what, &g, x, 2, true);
            nb_scope_end();
        }
}

Test(loss_grad, regression_losses) {
    for (int red = 0; red < NB_REDUCTION_COUNT; red++) {
        nb_scope_begin();
        nb_tensor *x[2] = {ls_leaf(NB_SHAPE(3, 4), 1, 't', true), ls_leaf(NB_SHAPE(4), 1, 'c', true)};
        ls_gop g = {.op = LS_MSE, .red = (nb_reduction)red};
        ls_check("mse_loss", &g, x, 2, true);
        g.op = LS_L1;
        ls_check("l1_loss", &g, x, 2, true);
        g.op = LS_SMOOTH_L1;
        g.beta = 1.0;
        ls_check("smooth_l1_loss beta 1", &g, x, 2, true);
        g.beta = 0.3;
        ls_check("smooth_l1_loss beta 0.3", &g, x, 2, true);
        nb_scope_end();
    }
}

Test(loss_grad, bce_with_logits) {
    for (int red = 0; red < NB_REDUCTION_COUNT; red++)
        for (int k = 0; k < 4; k++) {
            nb_scope_begin();
            nb_tensor *x[2] = {ls_leaf(NB_SHAPE(3, 5), 2, 's', true), ls_leaf(NB_SHAPE(3, 5), 1, 'c', true)};
            ls_gop g = {.op = LS_BCE};
            g.bce.reduction = (nb_reduction)red;
            g.bce.weight = k & 1 ? tu_tensor(NB_SHAPE(3, 1), NB_F64, (const double[]){0.5, 1.5, 2.0}) : NULL;
            g.bce.pos_weight = k & 2 ? ls_weights(5) : NULL;
            char what[64];
            snprintf(what, sizeof what, "bce red %d w %d pw %d", red, k & 1, k >> 1);
            ls_check(what, &g, x, 2, false);
            nb_scope_end();
        }
}

Test(loss_grad, dropout) {
    nb_scope_begin();
    nb_tensor *x = ls_leaf(NB_SHAPE(5, 7), 1, 't', true);
    ls_gop g = {.op = LS_DROPOUT, .p = 0.4};
    ls_check("dropout", &g, &x, 1, true);
    nb_scope_end();
}

/* ==== loss_dropout ==== */

TestSuite(loss_dropout, .init = ls_setup, .fini = ls_fini);

/* Over 1e5 elements the zeroed fraction is p (within 7 standard deviations),
 * kept values are x / (1 - p), and the backward is the same mask times the
 * same scale. */
Test(loss_dropout, statistics_and_scale) {
    nb_scope_begin();
    const int64_t n = 100000;
    static const double ps[] = {0.1, 0.3, 0.5, 0.9};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        double p = ps[k];
        nb_tensor *x = nb_add_scalar(nb_rand(NB_SHAPE(n), NB_F32, 5), 1.0);   /* never 0 */
        cr_assert_eq(nb_set_requires_grad(x, true), 0);
        nb_tensor *y = nb_dropout(x, p, true, 1234 + k);
        cr_assert(y != NULL, "%s", nb_last_error());
        cr_assert_eq(nb_backward(y, nb_ones(NB_SHAPE(n), NB_F32)), 0, "%s", nb_last_error());
        const float *xv = nb_data(x), *yv = nb_data(y), *gv = nb_data(nb_grad(x));
        int64_t zeros = 0;
        bool scaled = true, grad_ok = true;
        for (int64_t i = 0; i < n; i++) {
            if (yv[i] == 0) zeros++;
            else scaled &= fabsf(yv[i] - xv[i] / (float)(1 - p)) <= 1e-5f * fabsf(yv[i]);
            grad_ok &= yv[i] == 0 ? gv[i] == 0 : fabsf(gv[i] - 1.0f / (float)(1 - p)) <= 1e-5f;
        }
        double frac = (double)zeros / (double)n, sd = sqrt(p * (1 - p) / (double)n);
        cr_expect(fabs(frac - p) < 7 * sd, "p %g: zeroed fraction %g", p, frac);
        cr_expect(scaled, "p %g: kept values are not x / (1 - p)", p);
        cr_expect(grad_ok, "p %g: the gradient is not mask / (1 - p)", p);
    }
    nb_scope_end();
}

Test(loss_dropout, deterministic_and_layout_free) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(33, 17), NB_F64, 3);
    nb_tensor *a = nb_dropout(x, 0.5, true, 42), *b = nb_dropout(x, 0.5, true, 42);
    nb_tensor *c = nb_dropout(x, 0.5, true, 43);
    cr_assert(a && b && c, "%s", nb_last_error());
    cr_expect_eq(tu_max_abs_diff(a, b), 0.0, "same seed, different masks");
    cr_expect_gt(tu_max_abs_diff(a, c), 0.0, "different seeds, same mask");
    /* the mask follows the logical index: a transposed copy gets the same one */
    nb_tensor *xt = nb_transpose(nb_contiguous(nb_transpose(x, 0, 1)), 0, 1);
    cr_assert(!nb_is_contiguous(xt));
    cr_expect_eq(tu_max_abs_diff(nb_dropout(xt, 0.5, true, 42), a), 0.0, "the mask depends on the layout");
    /* and F32 gets the same mask as F64 */
    nb_tensor *a32 = nb_dropout(nb_to_dtype(x, NB_F32), 0.5, true, 42);
    cr_expect_lt(tu_max_abs_diff(a32, a), 1e-5);
    nb_scope_end();
}

Test(loss_dropout, eval_and_extremes) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(4, 5), NB_F32, 8);
    nb_tensor *e = nb_dropout(x, 0.7, false, 1);
    cr_expect_eq(e, x, "eval must return x itself");
    nb_tensor *z = nb_dropout(x, 0.0, true, 1);
    cr_expect_eq(tu_max_abs_diff(z, x), 0.0, "p = 0 must keep everything");
    nb_tensor *one = nb_dropout(x, 1.0, true, 1);
    cr_expect_eq(tu_max_abs_diff(one, nb_zeros(NB_SHAPE(4, 5), NB_F32)), 0.0, "p = 1 must give zeros");
    nb_tensor *s = nb_dropout(nb_scalar(3.0), 0.5, true, 7);
    cr_assert(s != NULL && nb_ndim(s) == 0, "%s", nb_last_error());
    cr_expect(nb_item(s) == 0.0 || nb_item(s) == 6.0);
    nb_scope_end();
}

/* ==== loss_bad: bad inputs ==== */

static uint64_t ls_live_at_start;
static void ls_bad_init(void) {
    ls_setup();
    ls_live_at_start = nb_memory_stats().live_tensors;
    nb_scope_begin();
}
TestSuite(loss_bad, .init = ls_bad_init, .fini = ls_fini);

#define LS_END()                                                                                         \
    do {                                                                                                 \
        nb_scope_end();                                                                                  \
        cr_expect_eq(nb_memory_stats().live_tensors, ls_live_at_start, "tensors outlived the scope");    \
    } while (0)

/* expr is NULL, the error is `code`, and the message holds each string given. */
#define LS_FAILS(expr, code, ...)                                                                        \
    do {                                                                                                 \
        nb_clear_error();                                                                                \
        nb_tensor *r_ = (expr);                                                                          \
        cr_expect_null(r_, "%s: expected NULL", #expr);                                                  \
        const char *m_ = nb_last_error();                                                                \
        cr_expect_eq(nb_last_error_code(), (code), "%s: %s, expected %s (\"%s\")", #expr,                \
                     nb_error_name(nb_last_error_code()), nb_error_name(code), m_);                      \
        const char *s_[] = {__VA_ARGS__};                                                                \
        for (size_t i_ = 0; i_ < sizeof s_ / sizeof s_[0]; i_++)                                         \
            cr_expect(strstr(m_, s_[i_]) != NULL, "%s: message \"%s\" lacks \"%s\"", #expr, m_, s_[i_]); \
    } while (0)

Test(loss_bad, cross_entropy_and_nll) {
    nb_tensor *x = nb_randn(NB_SHAPE(4, 5), NB_F32, 1);
    nb_tensor *t = ls_targets(NB_SHAPE(4), 5, 0, 0);
    LS_FAILS(nb_cross_entropy(x, ls_targets(NB_SHAPE(3), 5, 0, 0)), NB_ESHAPE, "nb_cross_entropy", "[3]", "[4, 5]");
    LS_FAILS(nb_cross_entropy(x, ls_targets(NB_SHAPE(4, 2), 5, 0, 0)), NB_ESHAPE, "nb_cross_entropy", "[4, 2]");
    LS_FAILS(nb_cross_entropy(nb_randn(NB_SHAPE(4, 5, 3), NB_F32, 1), t), NB_ESHAPE, "[4, 3]");
    LS_FAILS(nb_cross_entropy(x, nb_zeros(NB_SHAPE(4), NB_BOOL)), NB_EDTYPE, "nb_cross_entropy", "i64");
    LS_FAILS(nb_cross_entropy(x, nb_zeros(NB_SHAPE(4), NB_F32)), NB_ESHAPE, "nb_cross_entropy", "[4]");
    LS_FAILS(nb_cross_entropy(x, nb_zeros(NB_SHAPE(4, 5), NB_F64)), NB_EDTYPE, "nb_cross_entropy");
    LS_FAILS(nb_cross_entropy(nb_zeros(NB_SHAPE(4, 5), NB_I64), t), NB_EDTYPE, "nb_cross_entropy");
    LS_FAILS(nb_cross_entropy(nb_scalar(1.0), nb_zeros(NB_SHAPE0, NB_I64)), NB_ESHAPE, "nb_cross_entropy");
    int64_t bad[4] = {0, 5, 1, 2}, neg[4] = {0, 1, -3, 2}, ok[4] = {0, 1, 4, -100};
    LS_FAILS(nb_cross_entropy(x, nb_from_data(NB_SHAPE(4), NB_I64, bad)), NB_ERANGE, "nb_cross_entropy", "5",
             "5 classes");
    LS_FAILS(nb_cross_entropy(x, nb_from_data(NB_SHAPE(4), NB_I64, neg)), NB_ERANGE, "-3");
    LS_FAILS(nb_nll_loss(x, nb_from_data(NB_SHAPE(4), NB_I64, bad)), NB_ERANGE, "nb_nll_loss", "5");
    nb_cross_entropy_opts o = {.set_ignore_index = true, .ignore_index = 0};
    LS_FAILS(nb_cross_entropy_ex(x, nb_from_data(NB_SHAPE(4), NB_I64, ok), &o), NB_ERANGE, "-100");
    o = (nb_cross_entropy_opts){.weight = nb_ones(NB_SHAPE(4), NB_F32)};
    LS_FAILS(nb_cross_entropy_ex(x, t, &o), NB_ESHAPE, "nb_cross_entropy", "weight", "[4]");
    o.weight = nb_ones(NB_SHAPE(5), NB_F64);
    LS_FAILS(nb_cross_entropy_ex(x, t, &o), NB_EDTYPE, "nb_cross_entropy");
    nb_nll_loss_opts no = {.weight = nb_ones(NB_SHAPE(1, 5), NB_F32)};
    LS_FAILS(nb_nll_loss_ex(x, t, &no), NB_ESHAPE, "nb_nll_loss", "weight");
    o = (nb_cross_entropy_opts){.label_smoothing = 1.5};
    LS_FAILS(nb_cross_entropy_ex(x, t, &o), NB_EINVAL, "label_smoothing");
    o = (nb_cross_entropy_opts){.reduction = (nb_reduction)7};
    LS_FAILS(nb_cross_entropy_ex(x, t, &o), NB_EINVAL, "reduction");
    o = (nb_cross_entropy_opts){.set_ignore_index = true, .ignore_index = 1};
    LS_FAILS(nb_cross_entropy_ex(x, nb_softmax(x, 1), &o), NB_EINVAL, "ignore_index");
    LS_FAILS(nb_cross_entropy(nb_randn(NB_SHAPE(5), NB_F32, 1), t), NB_ESHAPE, "0-dim");
    LS_FAILS(nb_cross_entropy(NULL, t), NB_ENULLARG, "nb_cross_entropy");
    LS_FAILS(nb_cross_entropy(x, NULL), NB_ENULLARG, "nb_cross_entropy");
    LS_FAILS(nb_nll_loss(NULL, t), NB_ENULLARG, "nb_nll_loss");
    LS_END();
}

Test(loss_bad, others) {
    nb_tensor *x = nb_randn(NB_SHAPE(4, 5), NB_F32, 1);
    LS_FAILS(nb_linear(x, nb_randn(NB_SHAPE(3, 4), NB_F32, 2), NULL), NB_ESHAPE, "nb_linear", "[4, 5]", "[3, 4]");
    LS_FAILS(nb_linear(x, nb_randn(NB_SHAPE(5), NB_F32, 2), NULL), NB_ESHAPE, "nb_linear");
    LS_FAILS(nb_linear(x, nb_randn(NB_SHAPE(3, 5), NB_F32, 2), nb_zeros(NB_SHAPE(4), NB_F32)), NB_ESHAPE, "bias");
    LS_FAILS(nb_linear(x, nb_randn(NB_SHAPE(3, 5), NB_F64, 2), NULL), NB_EDTYPE, "nb_linear");
    LS_FAILS(nb_linear(NULL, x, NULL), NB_ENULLARG, "nb_linear");
    LS_FAILS(nb_softmax(x, 2), NB_ERANGE, "nb_softmax", "dim 2");
    LS_FAILS(nb_log_softmax(x, -3), NB_ERANGE, "nb_log_softmax");
    LS_FAILS(nb_softmax(nb_zeros(NB_SHAPE(3), NB_I64), 0), NB_EDTYPE, "nb_softmax");
    LS_FAILS(nb_softmax(NULL, 0), NB_ENULLARG, "nb_softmax");
    LS_FAILS(nb_mse_loss(x, nb_randn(NB_SHAPE(3), NB_F32, 2)), NB_ESHAPE, "nb_mse_loss", "[4, 5]", "[3]");
    LS_FAILS(nb_l1_loss(x, nb_randn(NB_SHAPE(4, 5), NB_F64, 2)), NB_EDTYPE, "nb_l1_loss");
    LS_FAILS(nb_smooth_l1_loss_ex(x, x, NB_REDUCTION_MEAN, -1.0), NB_EINVAL, "nb_smooth_l1_loss", "beta");
    LS_FAILS(nb_mse_loss_ex(x, x, (nb_reduction)-1), NB_EINVAL, "reduction");
    LS_FAILS(nb_mse_loss(x, NULL), NB_ENULLARG, "nb_mse_loss");
    LS_FAILS(nb_binary_cross_entropy_with_logits(x, nb_rand(NB_SHAPE(5), NB_F32, 1)), NB_ESHAPE,
             "nb_binary_cross_entropy_with_logits", "[5]", "[4, 5]");
    nb_bce_opts bo = {.pos_weight = nb_ones(NB_SHAPE(4), NB_F32)};
    LS_FAILS(nb_binary_cross_entropy_with_logits_ex(x, x, &bo), NB_ESHAPE, "pos_weight", "[4]");
    bo = (nb_bce_opts){.weight = nb_ones(NB_SHAPE(2, 4, 5), NB_F32)};
    LS_FAILS(nb_binary_cross_entropy_with_logits_ex(x, x, &bo), NB_ESHAPE, "weight", "[2, 4, 5]");
    LS_FAILS(nb_dropout(x, 1.5, true, 1), NB_EINVAL, "nb_dropout", "1.5");
    LS_FAILS(nb_dropout(x, -0.1, false, 1), NB_EINVAL, "nb_dropout");
    LS_FAILS(nb_dropout(nb_zeros(NB_SHAPE(3), NB_I64), 0.5, true, 1), NB_EDTYPE, "nb_dropout");
    LS_FAILS(nb_dropout(NULL, 0.5, true, 1), NB_ENULLARG, "nb_dropout");
    LS_END();
}

/* ==== loss_misc ==== */

TestSuite(loss_misc, .init = ls_setup, .fini = ls_fini);

Test(loss_misc, registry_lists_every_op) {
    static const nb_op ops[] = {NB_OP_LINEAR, NB_OP_SOFTMAX, NB_OP_LOG_SOFTMAX, NB_OP_SOFTMAX_BACKWARD,
                                NB_OP_LOG_SOFTMAX_BACKWARD, NB_OP_CROSS_ENTROPY, NB_OP_CROSS_ENTROPY_BACKWARD,
                                NB_OP_NLL_LOSS, NB_OP_NLL_LOSS_BACKWARD, NB_OP_MSE_LOSS, NB_OP_L1_LOSS,
                                NB_OP_L1_LOSS_BACKWARD, NB_OP_SMOOTH_L1_LOSS, NB_OP_SMOOTH_L1_LOSS_BACKWARD,
                                NB_OP_BCE_WITH_LOGITS, NB_OP_BCE_WITH_LOGITS_BACKWARD, NB_OP_DROPOUT};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        for (nb_dtype dt = NB_F32; dt <= NB_F64; dt++)
            cr_expect(nb_kernel_chosen(ops[i], dt) != NULL, "no kernel for %s %s", nb_op_name(ops[i]),
                      nb_dtype_name(dt));
}

/* PyTorch: mean over targets that are all ignored is 0/0 = NaN, with zero
 * gradients; sum is 0. */
Test(loss_misc, all_targets_ignored) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(3, 4), NB_F64, 2);
    nb_set_requires_grad(x, true);
    int64_t all[3] = {-100, -100, -100};
    nb_tensor *t = nb_from_data(NB_SHAPE(3), NB_I64, all);
    nb_tensor *m = nb_cross_entropy(x, t);
    cr_assert(m != NULL, "%s", nb_last_error());
    cr_expect(isnan(nb_item(m)));
    nb_cross_entropy_opts o = {.reduction = NB_REDUCTION_SUM, .label_smoothing = 0.1};
    nb_tensor *s = nb_cross_entropy_ex(x, t, &o);
    cr_expect_eq(nb_item(s), 0.0);
    cr_assert_eq(nb_backward(s, NULL), 0, "%s", nb_last_error());
    cr_expect_eq(tu_max_abs_diff(nb_grad(x), nb_zeros(NB_SHAPE(3, 4), NB_F64)), 0.0);
    nb_scope_end();
}

/* The fused backward and the create_graph (differentiable) one agree. */
Test(loss_misc, cross_entropy_fused_matches_create_graph) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(6, 33), NB_F64, 4);
    nb_set_requires_grad(x, true);
    nb_cross_entropy_opts o = {.weight = nb_rand(NB_SHAPE(33), NB_F64, 5), .label_smoothing = 0.3,
                               .set_ignore_index = true, .ignore_index = 3};
    nb_tensor *t = ls_targets(NB_SHAPE(6), 33, 4, 3);
    nb_tensor *l = nb_cross_entropy_ex(x, t, &o);
    nb_tensor *g1 = NULL, *g2 = NULL;
    nb_grad_opts plain = {.retain_graph = true}, cg = {.create_graph = true};
    cr_assert_eq(nb_autograd_grad(&l, 1, &x, 1, NULL, &plain, &g1), 0, "%s", nb_last_error());
    cr_assert_eq(nb_autograd_grad(&l, 1, &x, 1, NULL, &cg, &g2), 0, "%s", nb_last_error());
    cr_expect(nb_requires_grad(g2), "create_graph gradient is not differentiable");
    cr_expect_lt(tu_max_abs_diff(g1, g2), 1e-13);
    nb_scope_end();
}

/* Large logits: no overflow in softmax, cross entropy or bce. */
Test(loss_misc, stable_for_large_logits) {
    nb_scope_begin();
    double v[4] = {1000.0, -1000.0, 0.0, 999.0};
    nb_tensor *x = nb_from_data(NB_SHAPE(1, 4), NB_F32, (float[]){1000.0f, -1000.0f, 0.0f, 999.0f});
    nb_tensor *sm = nb_softmax(x, 1);
    cr_expect_lt(fabs(nb_get(sm, (int64_t[]){0, 0}) - 1.0 / (1.0 + exp(-1.0))), 1e-6);
    int64_t tv = 1;
    nb_tensor *ce = nb_cross_entropy(x, nb_from_data(NB_SHAPE(1), NB_I64, &tv));
    cr_expect_lt(fabs(nb_item(ce) - (2000.0 + log1p(exp(-1.0)))), 1e-2);
    nb_tensor *xl = tu_tensor(NB_SHAPE(4), NB_F64, v);
    nb_tensor *b = nb_binary_cross_entropy_with_logits_ex(
        xl, tu_tensor(NB_SHAPE(4), NB_F64, (const double[]){0, 1, 1, 0}), &(nb_bce_opts){.reduction = NB_REDUCTION_SUM});
    cr_expect(isfinite(nb_item(b)));
    cr_expect_lt(fabs(nb_item(b) - (1000.0 + 1000.0 + log(2.0) + 999.0)), 1e-9);
    nb_scope_end();
}
