/* test_conv.c — convolution, pooling and interpolation: values and
 * gradients against PyTorch, finite-difference checks, bad input.
 *
 * conv_ref:   every case of tests/data/ref_conv.txt (gen_ref_conv.py, which
 *             lists the ops' arguments) in F64 (to ~1e-12) and F32: forward,
 *             then backward of sum(out * W) against PyTorch's gradients;
 *             inputs laid out contiguous, transposed or strided as the case says.
 * conv_grad:  nb_gradcheck and nb_gradgradcheck in F64 on small shapes
 *             (groups, stride, dilation, padding, unbatched, non-contiguous).
 * conv_bad:   wrong ranks, channel/group mismatches, kernels larger than the
 *             padded input, bad stride/dilation/padding, dtypes, NULL: NULL,
 *             the right NB_E* and a message naming the op and the shapes, and
 *             no tensor left alive.
 * conv_misc:  registry entries, ownership of indices, memory.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "kernels/kernels.h"   /* nb__dispatch: the fused gradient kernel on its own */

static void cv_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}

/* Closes scopes an assertion left open. */
static void cv_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}

TestSuite(conv_ref, .init = cv_setup, .fini = cv_teardown);
TestSuite(conv_grad, .init = cv_setup, .fini = cv_teardown);
TestSuite(conv_bad, .init = cv_setup, .fini = cv_teardown);
TestSuite(conv_misc, .init = cv_setup, .fini = cv_teardown);

/* ---- reference cases: arguments ---- */

/* A pair argument (1 or 2 numbers) into p[2]; absent: p = {dflt, dflt}. */
static void cv_pair(const tu_ref_case *c, const char *key, int64_t *p, int64_t dflt) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    p[0] = p[1] = dflt;
    if (!a) return;
    for (int i = 0; i < a->n && i < 2; i++) p[i] = (int64_t)a->v[i];
}

static int64_t cv_int(const tu_ref_case *c, const char *key, int64_t dflt) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    return a && a->n > 0 ? (int64_t)a->v[0] : dflt;
}

static nb_conv_opts cv_conv_opts(const tu_ref_case *c) {
    nb_conv_opts o;
    memset(&o, 0, sizeof o);
    cv_pair(c, "stride", o.stride, 0);
    cv_pair(c, "padding", o.padding, 0);
    cv_pair(c, "dilation", o.dilation, 0);
    cv_pair(c, "output_padding", o.output_padding, 0);
    o.groups = cv_int(c, "groups", 0);
    return o;
}

static nb_pool2d_opts cv_pool_opts(const tu_ref_case *c) {
    nb_pool2d_opts o;
    memset(&o, 0, sizeof o);
    cv_pair(c, "stride", o.stride, 0);
    cv_pair(c, "padding", o.padding, 0);
    cv_pair(c, "dilation", o.dilation, 0);
    o.ceil_mode = cv_int(c, "ceil_mode", 0) != 0;
    o.exclude_pad = cv_int(c, "exclude_pad", 0) != 0;
    o.divisor_override = cv_int(c, "divisor", 0);
    return o;
}

static nb_interpolate_opts cv_interp_opts(const tu_ref_case *c) {
    nb_interpolate_opts o;
    memset(&o, 0, sizeof o);
    cv_pair(c, "size", o.size, 0);
    const tu_ref_arg *s = tu_ref_arg_get(c, "scale");
    if (s)
        for (int i = 0; i < 2 && i < s->n; i++) o.scale_factor[i] = s->v[i];
    const tu_ref_arg *m = tu_ref_arg_get(c, "mode");
    cr_assert(m != NULL, "case %s: no mode", c->name);
    o.mode = !strcmp(m->word, "bilinear") ? NB_INTERP_BILINEAR
             : !strcmp(m->word, "nearest_exact") ? NB_INTERP_NEAREST_EXACT
                                                 : NB_INTERP_NEAREST;
    o.align_corners = cv_int(c, "align_corners", 0) != 0;
    o.recompute_scale_factor = cv_int(c, "recompute", 0) != 0;
    return o;
}

/* Runs c's op on x. */
static nb_tensor *cv_run_op(const tu_ref_case *c, nb_tensor **x) {
    nb_tensor *b = c->n_in > 2 ? x[2] : NULL;
    int64_t k[2];
    cv_pair(c, "kernel", k, 0);
    if (!strcmp(c->op, "conv2d") || !strcmp(c->op, "conv1d") || !strcmp(c->op, "conv_transpose2d")) {
        nb_conv_opts o = cv_conv_opts(c);
        if (!strcmp(c->op, "conv2d")) return nb_conv2d(x[0], x[1], b, &o);
        if (!strcmp(c->op, "conv1d")) return nb_conv1d(x[0], x[1], b, &o);
        return nb_conv_transpose2d(x[0], x[1], b, &o);
    }
    if (!strcmp(c->op, "max_pool2d") || !strcmp(c->op, "avg_pool2d")) {
        nb_pool2d_opts o = cv_pool_opts(c);
        return c->op[0] == 'm' ? nb_max_pool2d(x[0], k[0], k[1], &o) : nb_avg_pool2d(x[0], k[0], k[1], &o);
    }
    if (!strcmp(c->op, "max_pool2d_indices")) {
        nb_pool2d_opts o = cv_pool_opts(c);
        nb_tensor *idx = NULL;
        nb_tensor *y = nb_max_pool2d_with_indices(x[0], k[0], k[1], &o, &idx);
        cr_assert(y && idx, "case %s: %s", c->name, nb_last_error());
        cr_expect_eq(nb_dtype(idx), NB_I64, "indices are %s", nb_dtype_name(nb_dtype(idx)));
        return nb_to_dtype(idx, NB_F64);
    }
    if (!strcmp(c->op, "adaptive_avg_pool2d")) {
        int64_t s[2];
        cv_pair(c, "size", s, 0);
        return nb_adaptive_avg_pool2d(x[0], s[0], s[1]);
    }
    if (!strcmp(c->op, "interpolate")) {
        nb_interpolate_opts o = cv_interp_opts(c);
        return nb_interpolate(x[0], &o);
    }
    cr_assert_fail("case %s: unknown op %s", c->name, c->op);
    return NULL;
}

/* ---- reference cases: running ---- */

static double cv_maxabs(const tu_ref_tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < t->numel; i++)
        if (fabs(t->vals[i]) > m) m = fabs(t->vals[i]);
    return m;
}

static void cv_close(const nb_tensor *got, const tu_ref_tensor *exp, nb_dtype dt, const char *what,
                     const tu_ref_case *c) {
    char msg[512];
    double rtol = dt == NB_F64 ? 1e-11 : 1e-4;
    double atol = (dt == NB_F64 ? 1e-11 : 2e-5) * (1.0 + cv_maxabs(exp));
    bool ok = tu_check_close(got, exp->shape, exp->vals, rtol, atol, msg, sizeof msg);
    cr_expect(ok, "case %s (%s, op %s): %s: %s", c->name, nb_dtype_name(dt), c->op, what, msg);
}

static void cv_run_case(const tu_ref_case *c, nb_dtype dt) {
    bool indices = !strcmp(c->op, "max_pool2d_indices");
    nb_tensor *x[TU_REF_MAX_IN] = {0};
    nb_scope_begin();
    for (int i = 0; i < c->n_in; i++) {
        x[i] = tu_ref_make(&c->in[i], dt);
        cr_assert(x[i] != NULL, "case %s: input %d: %s", c->name, i, nb_last_error());
        cr_assert(c->in[i].layout == 'c' || !nb_is_contiguous(x[i]), "case %s: input %d should be strided",
                  c->name, i);
        cr_assert_eq(nb_set_requires_grad(x[i], true), 0, "%s", nb_last_error());
    }
    nb_tensor *out = cv_run_op(c, x);
    cr_expect(out != NULL, "case %s (%s): forward failed: %s", c->name, nb_dtype_name(dt), nb_last_error());
    if (!out) goto done;
    cv_close(out, &c->out, dt, "forward", c);
    if (indices) goto done;
    cr_expect_eq(nb_dtype(out), dt);
    nb_tensor *w = tu_ref_make(&c->w, dt);
    cr_assert(w != NULL, "%s", nb_last_error());
    int rc = nb_backward(out, w);
    cr_expect_eq(rc, 0, "case %s (%s): backward: %s", c->name, nb_dtype_name(dt), nb_last_error());
    if (rc) goto done;
    for (int i = 0; i < c->n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "grad of input %d", i);
        nb_tensor *g = nb_grad(x[i]);
        cr_expect(g != NULL, "case %s: no %s", c->name, what);
        if (g) cv_close(g, &c->grad[i], dt, what, c);
    }
done:
    nb_scope_end();
}

static void cv_run_cases(const char *op) {
    tu_ref_set *s = tu_ref_load_all_from("ref_conv.txt");
    cr_assert(s != NULL, "cannot load " NB_TEST_DATA_DIR "/ref_conv.txt");
    int ran = 0;
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->cases[i].op, op)) continue;
        cv_run_case(&s->cases[i], NB_F64);
        cv_run_case(&s->cases[i], NB_F32);
        ran++;
    }
    tu_ref_free_set(s);
    cr_expect_gt(ran, 0, "no reference case for op %s", op);
}

Test(conv_ref, conv2d) { cv_run_cases("conv2d"); }
Test(conv_ref, conv1d) { cv_run_cases("conv1d"); }
Test(conv_ref, conv_transpose2d) { cv_run_cases("conv_transpose2d"); }
Test(conv_ref, max_pool2d) { cv_run_cases("max_pool2d"); }
Test(conv_ref, max_pool2d_indices) { cv_run_cases("max_pool2d_indices"); }
Test(conv_ref, avg_pool2d) { cv_run_cases("avg_pool2d"); }
Test(conv_ref, adaptive_avg_pool2d) { cv_run_cases("adaptive_avg_pool2d"); }
Test(conv_ref, interpolate) { cv_run_cases("interpolate"); }

/* Every case in the file is run by a test above. */
Test(conv_ref, every_case_is_run) {
    static const char *const known[] = {"conv2d", "conv1d", "conv_transpose2d", "max_pool2d", "max_pool2d_indices",
                                        "avg_pool2d", "adaptive_avg_pool2d", "interpolate"};
    tu_ref_set *s = tu_ref_load_all_from("ref_conv.txt");
    cr_assert(s != NULL);
    for (int i = 0; i < s->n; i++) {
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok = ok || !strcmp(s->cases[i].op, known[k]);
        cr_expect(ok, "case %s: op %s has no test", s->cases[i].name, s->cases[i].op);
    }
    tu_ref_free_set(s);
}

/* ---- gradcheck / gradgradcheck in F64 ---- */

static uint64_t cv_seed = 777;

/* An F64 leaf of `shape` (N(0,1) values) laid out as 'c', 't' or 's'. */
static nb_tensor *cv_leaf(nb_dims shape, char layout) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    nb_tensor *r = nb_randn(nb_dims_of(1, &n), NB_F64, cv_seed++);
    cr_assert(r != NULL, "%s", nb_last_error());
    double *v = malloc(sizeof(double) * (size_t)n);
    cr_assert(v != NULL);
    cr_assert_eq(nb_copy_to(r, v, sizeof(double) * (size_t)n), 0);
    nb_tensor *t = tu_make_layout(shape, NB_F64, v, layout);
    free(v);
    cr_assert(t != NULL, "%s", nb_last_error());
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

typedef struct cv_gop {
    int kind;                   /* CV_CONV2D, ... */
    nb_conv_opts conv;          /* conv geometry */
    nb_pool2d_opts pool;        /* pool geometry */
    nb_interpolate_opts interp; /* interpolate settings */
    int64_t k[2];               /* pool kernel or adaptive output size */
} cv_gop;
enum { CV_CONV2D, CV_CONV1D, CV_CONVT2D, CV_MAXPOOL, CV_AVGPOOL, CV_ADAPTIVE, CV_INTERP };

static nb_tensor *cv_fn(nb_tensor *const *x, int n, void *u) {
    const cv_gop *g = u;
    nb_tensor *b = n > 2 ? x[2] : NULL;
    switch (g->kind) {
    case CV_CONV2D: return nb_conv2d(x[0], x[1], b, &g->conv);
    case CV_CONV1D: return nb_conv1d(x[0], x[1], b, &g->conv);
    case CV_CONVT2D: return nb_conv_transpose2d(x[0], x[1], b, &g->conv);
    case CV_MAXPOOL: return nb_max_pool2d(x[0], g->k[0], g->k[1], &g->pool);
    case CV_AVGPOOL: return nb_avg_pool2d(x[0], g->k[0], g->k[1], &g->pool);
    case CV_ADAPTIVE: return nb_adaptive_avg_pool2d(x[0], g->k[0], g->k[1]);
    default: return nb_interpolate(x[0], &g->interp);
    }
}

/* A non-linear function of the op, so the second derivative w.r.t. one
 * input carries values: op(x...) * op(x...) (pools and interpolate are
 * linear or piecewise linear in x). */
static nb_tensor *cv_fn_sq(nb_tensor *const *x, int n, void *u) {
    nb_tensor *y = cv_fn(x, n, u);
    return nb_mul(y, y);
}

static void cv_check(const char *what, const cv_gop *g, nb_tensor **x, int n, bool gg, bool square) {
    nb_gradcheck_opts o = {.user = (void *)g};
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    nb_gradcheck_fn fn = square ? cv_fn_sq : cv_fn;
    int rc = nb_gradcheck(fn, x, n, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradcheck %d: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)", what,
                 rc, nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
    if (!gg) return;
    memset(&r, 0, sizeof r);
    rc = nb_gradgradcheck(fn, x, n, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradgradcheck %d: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)",
                 what, rc, nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic,
                 r.numeric);
}

typedef struct cv_conv_case {
    nb_dims x, w;         /* shapes */
    bool bias;            /* with a bias of Cout */
    char lx;              /* x's layout */
    nb_conv_opts o;       /* geometry */
} cv_conv_case;

static void cv_conv_cases(int kind, const cv_conv_case *cs, int n) {
    for (int i = 0; i < n; i++) {
        nb_scope_begin();
        const cv_conv_case *c = &cs[i];
        int64_t groups = c->o.groups ? c->o.groups : 1;
        int64_t cout = kind == CV_CONVT2D ? c->w.d[1] * groups : c->w.d[0];
        nb_tensor *x[3] = {cv_leaf(c->x, c->lx), cv_leaf(c->w, 'c'), c->bias ? cv_leaf(NB_SHAPE(cout), 'c') : NULL};
        cv_gop g = {.kind = kind, .conv = c->o};
        char what[64];
        snprintf(what, sizeof what, "%s case %d", kind == CV_CONV2D ? "conv2d" : kind == CV_CONV1D ? "conv1d"
                                                                                  : "conv_transpose2d", i);
        cv_check(what, &g, x, c->bias ? 3 : 2, true, false);
        nb_scope_end();
    }
}

Test(conv_grad, conv2d) {
    const cv_conv_case cs[] = {
        {NB_SHAPE(2, 2, 4, 5), NB_SHAPE(3, 2, 2, 3), true, 'c', {.groups = 0}},
        {NB_SHAPE(1, 3, 5, 5), NB_SHAPE(3, 1, 3, 3), true, 'c', {.stride = {2, 2}, .padding = {1, 1}, .groups = 3}},
        {NB_SHAPE(1, 2, 5, 6), NB_SHAPE(2, 2, 2, 2), false, 't', {.dilation = {2, 2}, .padding = {1, 0}}},
        {NB_SHAPE(2, 3, 4), NB_SHAPE(2, 2, 2, 2), true, 's', {.stride = {1, 2}}},   /* unbatched */
        {NB_SHAPE(1, 1, 7, 1), NB_SHAPE(2, 1, 3, 1), true, 'c', {.stride = {2, 1}, .padding = {1, 0}}},
    };
    cv_conv_cases(CV_CONV2D, cs, (int)(sizeof cs / sizeof cs[0]));
}

Test(conv_grad, conv1d) {
    const cv_conv_case cs[] = {
        {NB_SHAPE(2, 2, 7), NB_SHAPE(3, 2, 3), true, 'c', {.stride = {2}, .padding = {1}}},
        {NB_SHAPE(1, 3, 7), NB_SHAPE(3, 1, 2), true, 's', {.dilation = {2}, .groups = 3}},
        {NB_SHAPE(2, 5), NB_SHAPE(2, 2, 3), false, 't', {.padding = {2}}},   /* unbatched */
    };
    cv_conv_cases(CV_CONV1D, cs, (int)(sizeof cs / sizeof cs[0]));
}

Test(conv_grad, conv_transpose2d) {
    const cv_conv_case cs[] = {
        {NB_SHAPE(1, 2, 3, 3), NB_SHAPE(2, 2, 2, 2), true, 'c', {.groups = 0}},
        {NB_SHAPE(1, 3, 3, 2), NB_SHAPE(3, 1, 3, 2), true, 't',
         {.stride = {2, 2}, .padding = {1, 0}, .output_padding = {1, 1}, .groups = 3}},
        {NB_SHAPE(2, 3, 3), NB_SHAPE(2, 1, 2, 2), false, 'c', {.dilation = {2, 2}, .output_padding = {1, 0}}},
    };
    cv_conv_cases(CV_CONVT2D, cs, (int)(sizeof cs / sizeof cs[0]));
}

/* nb_gradgradcheck keeps the grad_output fixed, so the backward ops' own
 * gradients w.r.t. that grad_output are not exercised by it. This checks them:
 * fn(x, w, gy) = |dx|² + |dw|² with (dx, dw) the create_graph gradients of
 * the conv for grad_output gy, gradchecked w.r.t. all three. */
static nb_tensor *cv_fn_bwd(nb_tensor *const *x, int n, void *u) {
    (void)n;
    bool prev = nb_set_grad_enabled(true);   /* the numeric pass runs in no-grad mode */
    nb_tensor *y = cv_fn(x, 2, u), *gs[2] = {NULL, NULL};
    nb_grad_opts o = {.create_graph = true};
    nb_tensor *r = NULL;
    if (y && nb_autograd_grad(&y, 1, x, 2, &x[2], &o, gs) == 0)
        r = nb_add(nb_sum_all(nb_mul(gs[0], gs[0])), nb_sum_all(nb_mul(gs[1], gs[1])));
    nb_set_grad_enabled(prev);
    return r;
}

Test(conv_grad, double_backward_wrt_grad_output) {
    const struct {
        cv_gop g;
        nb_dims x, w, y;
    } cs[] = {
        {{.kind = CV_CONV2D, .conv = {.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}, .groups = 2}},
         NB_SHAPE(1, 2, 5, 4), NB_SHAPE(4, 1, 2, 2), NB_SHAPE(1, 4, 3, 4)},
        {{.kind = CV_CONV1D, .conv = {.stride = {2}, .padding = {1}}}, NB_SHAPE(2, 2, 5), NB_SHAPE(3, 2, 3),
         NB_SHAPE(2, 3, 3)},
        {{.kind = CV_CONVT2D, .conv = {.stride = {2, 2}, .output_padding = {1, 0}}}, NB_SHAPE(1, 2, 2, 2),
         NB_SHAPE(2, 2, 2, 2), NB_SHAPE(1, 2, 5, 4)},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        nb_scope_begin();
        nb_tensor *x[3] = {cv_leaf(cs[i].x, 'c'), cv_leaf(cs[i].w, 'c'), cv_leaf(cs[i].y, 't')};
        nb_gradcheck_opts o = {.user = (void *)&cs[i].g};
        nb_gradcheck_report r;
        memset(&r, 0, sizeof r);
        int rc = nb_gradcheck(cv_fn_bwd, x, 3, &o, &r);
        cr_expect_eq(rc, 0, "case %zu: %s (input %d, in %lld: analytic %.10g numeric %.10g)", i, nb_last_error(),
                     r.input, (long long)r.in_index, r.analytic, r.numeric);
        nb_scope_end();
    }
}

Test(conv_grad, pools) {
    struct {
        cv_gop g;
        nb_dims x;
        char layout;
    } cs[] = {
        {{.kind = CV_MAXPOOL, .k = {2, 2}}, NB_SHAPE(1, 2, 4, 5), 'c'},
        {{.kind = CV_MAXPOOL, .k = {3, 2}, .pool = {.stride = {2, 1}, .padding = {1, 1}, .dilation = {1, 2}}},
         NB_SHAPE(2, 1, 5, 5), 't'},
        {{.kind = CV_MAXPOOL, .k = {2, 2}, .pool = {.ceil_mode = true}}, NB_SHAPE(2, 5, 5), 's'},
        {{.kind = CV_AVGPOOL, .k = {3, 3}, .pool = {.stride = {2, 2}, .padding = {1, 1}}}, NB_SHAPE(1, 2, 5, 5), 'c'},
        {{.kind = CV_AVGPOOL, .k = {3, 2}, .pool = {.stride = {2, 2}, .padding = {1, 1}, .ceil_mode = true,
                                                   .exclude_pad = true}},
         NB_SHAPE(1, 1, 6, 5), 't'},
        {{.kind = CV_AVGPOOL, .k = {2, 2}, .pool = {.divisor_override = 3}}, NB_SHAPE(2, 4, 4), 's'},
        {{.kind = CV_ADAPTIVE, .k = {2, 3}}, NB_SHAPE(1, 2, 5, 4), 'c'},
        {{.kind = CV_ADAPTIVE, .k = {4, 1}}, NB_SHAPE(2, 3, 2), 't'},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        nb_scope_begin();
        nb_tensor *x = cv_leaf(cs[i].x, cs[i].layout);
        char what[48];
        snprintf(what, sizeof what, "pool case %zu", i);
        cv_check(what, &cs[i].g, &x, 1, true, true);
        nb_scope_end();
    }
}

Test(conv_grad, interpolate) {
    nb_interpolate_opts os[] = {
        {.size = {5, 7}, .mode = NB_INTERP_NEAREST},
        {.scale_factor = {1.5, 0.7}, .mode = NB_INTERP_NEAREST_EXACT},
        {.size = {5, 3}, .mode = NB_INTERP_BILINEAR},
        {.size = {6, 2}, .mode = NB_INTERP_BILINEAR, .align_corners = true},
        {.scale_factor = {2.0, 1.3}, .mode = NB_INTERP_BILINEAR},
    };
    for (size_t i = 0; i < sizeof os / sizeof os[0]; i++) {
        nb_scope_begin();
        nb_tensor *x = cv_leaf(NB_SHAPE(1, 2, 3, 4), i % 2 ? 't' : 'c');
        cv_gop g = {.kind = CV_INTERP, .interp = os[i]};
        char what[48];
        snprintf(what, sizeof what, "interpolate case %zu", i);
        cv_check(what, &g, &x, 1, true, true);
        nb_scope_end();
    }
}

/* ---- bad input ---- */

static uint64_t cv_live0;

static void cv_bad_begin(void) {
    cv_live0 = nb_memory_stats().live_tensors;
    nb_clear_error();
    nb_scope_begin();
}

static void cv_bad_end(void) {
    nb_scope_end();
    cr_expect_eq(nb_memory_stats().live_tensors, cv_live0, "%llu tensors alive, %llu before",
                 (unsigned long long)nb_memory_stats().live_tensors, (unsigned long long)cv_live0);
}

/* Asserts r is NULL, the last error is `code` and its message holds each string. */
#define CV_EXPECT_FAIL(r, code, ...)                                                                     \
    do {                                                                                                 \
        nb_tensor *r_ = (r);                                                                             \
        cr_expect(r_ == NULL, "expected a failure at line %d", __LINE__);                               \
        const char *m_ = nb_last_error();                                                                \
        cr_expect_eq(nb_last_error_code(), (code), "line %d: error %s, expected %s: \"%s\"", __LINE__,   \
                     nb_error_name(nb_last_error_code()), nb_error_name(code), m_);                      \
        const char *s_[] = {__VA_ARGS__};                                                                \
        for (size_t i_ = 0; i_ < sizeof s_ / sizeof s_[0]; i_++)                                         \
            cr_expect(strstr(m_, s_[i_]) != NULL, "line %d: \"%s\" does not mention \"%s\"", __LINE__, m_, \
                      s_[i_]);                                                                           \
        nb_clear_error();                                                                                \
    } while (0)

Test(conv_bad, conv2d) {
    cv_bad_begin();
    nb_tensor *x = nb_zeros(NB_SHAPE(1, 4, 5, 5), NB_F32), *w = nb_zeros(NB_SHAPE(8, 3, 3, 3), NB_F32);
    nb_tensor *w4 = nb_zeros(NB_SHAPE(8, 4, 3, 3), NB_F32);
    CV_EXPECT_FAIL(nb_conv2d(nb_zeros(NB_SHAPE(4, 5), NB_F32), w4, NULL, NULL), NB_ESHAPE, "nb_conv2d", "[4, 5]",
                   "3D (unbatched) or 4D");
    CV_EXPECT_FAIL(nb_conv2d(nb_zeros(NB_SHAPE(1, 1, 4, 5, 5), NB_F32), w4, NULL, NULL), NB_ESHAPE, "nb_conv2d",
                   "[1, 1, 4, 5, 5]");
    CV_EXPECT_FAIL(nb_conv2d(x, nb_zeros(NB_SHAPE(8, 4, 3), NB_F32), NULL, NULL), NB_ESHAPE, "nb_conv2d",
                   "weight", "[8, 4, 3]");
    CV_EXPECT_FAIL(nb_conv2d(x, w, NULL, NULL), NB_ESHAPE, "nb_conv2d", "[1, 4, 5, 5]", "[8, 3, 3, 3]",
                   "4 channels");
    nb_conv_opts g2 = {.groups = 2};
    CV_EXPECT_FAIL(nb_conv2d(nb_zeros(NB_SHAPE(1, 5, 5, 5), NB_F32), nb_zeros(NB_SHAPE(8, 2, 3, 3), NB_F32), NULL, &g2),
                   NB_ESHAPE, "nb_conv2d", "[1, 5, 5, 5]", "groups=2");
    CV_EXPECT_FAIL(nb_conv2d(x, nb_zeros(NB_SHAPE(7, 2, 3, 3), NB_F32), NULL, &g2), NB_ESHAPE, "nb_conv2d",
                   "[7, 2, 3, 3]", "groups=2");
    CV_EXPECT_FAIL(nb_conv2d(x, w4, nb_zeros(NB_SHAPE(7), NB_F32), NULL), NB_ESHAPE, "nb_conv2d", "bias", "[7]");
    CV_EXPECT_FAIL(nb_conv2d(x, nb_zeros(NB_SHAPE(8, 4, 7, 3), NB_F32), NULL, NULL), NB_ESHAPE, "nb_conv2d",
                   "larger than the padded input", "[1, 4, 5, 5]", "[8, 4, 7, 3]");
    nb_conv_opts dil = {.dilation = {3, 1}};
    CV_EXPECT_FAIL(nb_conv2d(x, w4, NULL, &dil), NB_ESHAPE, "nb_conv2d", "dilated 7", "larger than the padded input");
    nb_conv_opts pad = {.padding = {1, 1}};   /* 3 + 2 >= 5: fits */
    cr_expect(nb_conv2d(nb_zeros(NB_SHAPE(1, 4, 3, 3), NB_F32), nb_zeros(NB_SHAPE(2, 4, 5, 5), NB_F32), NULL, &pad),
              "%s", nb_last_error());
    nb_conv_opts bs = {.stride = {-1, 1}}, bd = {.dilation = {1, -2}}, bp = {.padding = {-1, 0}},
                 bg = {.groups = -1}, bo = {.output_padding = {1, 1}};
    CV_EXPECT_FAIL(nb_conv2d(x, w4, NULL, &bs), NB_EINVAL, "nb_conv2d", "stride", "[-1, 1]");
    CV_EXPECT_FAIL(nb_conv2d(x, w4, NULL, &bd), NB_EINVAL, "nb_conv2d", "dilation", "[1, -2]");
    CV_EXPECT_FAIL(nb_conv2d(x, w4, NULL, &bp), NB_EINVAL, "nb_conv2d", "padding", "[-1, 0]");
    CV_EXPECT_FAIL(nb_conv2d(x, w4, NULL, &bg), NB_EINVAL, "nb_conv2d", "groups");
    CV_EXPECT_FAIL(nb_conv2d(x, w4, NULL, &bo), NB_EINVAL, "nb_conv2d", "output_padding");
    CV_EXPECT_FAIL(nb_conv2d(x, nb_zeros(NB_SHAPE(8, 4, 3, 3), NB_F64), NULL, NULL), NB_EDTYPE, "nb_conv2d", "f32",
                   "f64");
    CV_EXPECT_FAIL(nb_conv2d(nb_zeros(NB_SHAPE(1, 4, 5, 5), NB_I64), w4, NULL, NULL), NB_EDTYPE, "nb_conv2d");
    CV_EXPECT_FAIL(nb_conv2d(NULL, w4, NULL, NULL), NB_ENULLARG, "nb_conv2d");
    CV_EXPECT_FAIL(nb_conv2d(x, NULL, NULL, NULL), NB_ENULLARG, "nb_conv2d");
    cv_bad_end();
}

Test(conv_bad, conv1d_and_transpose) {
    cv_bad_begin();
    nb_tensor *x = nb_zeros(NB_SHAPE(2, 3, 5), NB_F64), *w = nb_zeros(NB_SHAPE(4, 3, 3), NB_F64);
    CV_EXPECT_FAIL(nb_conv1d(nb_zeros(NB_SHAPE(5), NB_F64), w, NULL, NULL), NB_ESHAPE, "nb_conv1d", "[5]",
                   "2D (unbatched) or 3D");
    CV_EXPECT_FAIL(nb_conv1d(x, nb_zeros(NB_SHAPE(4, 3, 3, 3), NB_F64), NULL, NULL), NB_ESHAPE, "nb_conv1d",
                   "weight");
    CV_EXPECT_FAIL(nb_conv1d(x, nb_zeros(NB_SHAPE(4, 3, 7), NB_F64), NULL, NULL), NB_ESHAPE, "nb_conv1d",
                   "larger than the padded input", "[2, 3, 5]");
    nb_conv_opts s0 = {.stride = {-2}};
    CV_EXPECT_FAIL(nb_conv1d(x, w, NULL, &s0), NB_EINVAL, "nb_conv1d", "stride", "[-2]");
    /* conv_transpose2d: weight (Cin, Cout/groups, kH, kW) */
    nb_tensor *xt = nb_zeros(NB_SHAPE(1, 4, 3, 3), NB_F64);
    CV_EXPECT_FAIL(nb_conv_transpose2d(xt, nb_zeros(NB_SHAPE(3, 2, 3, 3), NB_F64), NULL, NULL), NB_ESHAPE,
                   "nb_conv_transpose2d", "[1, 4, 3, 3]", "[3, 2, 3, 3]");
    nb_conv_opts op = {.stride = {2, 2}, .output_padding = {2, 0}};
    CV_EXPECT_FAIL(nb_conv_transpose2d(xt, nb_zeros(NB_SHAPE(4, 2, 3, 3), NB_F64), NULL, &op), NB_EINVAL,
                   "nb_conv_transpose2d", "output_padding", "stride");
    nb_conv_opts big = {.padding = {3, 3}};
    CV_EXPECT_FAIL(nb_conv_transpose2d(xt, nb_zeros(NB_SHAPE(4, 2, 2, 2), NB_F64), NULL, &big), NB_ESHAPE,
                   "nb_conv_transpose2d", "output size", "too small");
    cv_bad_end();
}

Test(conv_bad, pools) {
    cv_bad_begin();
    nb_tensor *x = nb_zeros(NB_SHAPE(1, 2, 5, 5), NB_F32);
    CV_EXPECT_FAIL(nb_max_pool2d(nb_zeros(NB_SHAPE(5, 5), NB_F32), 2, 2, NULL), NB_ESHAPE, "nb_max_pool2d", "[5, 5]");
    CV_EXPECT_FAIL(nb_avg_pool2d(nb_zeros(NB_SHAPE(1, 1, 1, 5, 5), NB_F32), 2, 2, NULL), NB_ESHAPE, "nb_avg_pool2d",
                   "[1, 1, 1, 5, 5]");
    CV_EXPECT_FAIL(nb_max_pool2d(x, 6, 2, NULL), NB_ESHAPE, "nb_max_pool2d", "larger than the padded input",
                   "[1, 2, 5, 5]");
    nb_pool2d_opts d3 = {.dilation = {3, 1}};
    CV_EXPECT_FAIL(nb_max_pool2d(x, 3, 2, &d3), NB_ESHAPE, "nb_max_pool2d", "larger than the padded input");
    CV_EXPECT_FAIL(nb_max_pool2d(x, 0, 2, NULL), NB_EINVAL, "nb_max_pool2d", "kernel size", "[0, 2]");
    nb_pool2d_opts ns = {.stride = {-1, 1}}, np = {.padding = {0, -1}}, hp = {.padding = {2, 0}},
                   nd = {.dilation = {0, -1}};
    CV_EXPECT_FAIL(nb_max_pool2d(x, 2, 2, &ns), NB_EINVAL, "nb_max_pool2d", "stride", "[-1, 1]");
    CV_EXPECT_FAIL(nb_avg_pool2d(x, 2, 2, &np), NB_EINVAL, "nb_avg_pool2d", "padding", "[0, -1]");
    CV_EXPECT_FAIL(nb_max_pool2d(x, 3, 3, &hp), NB_EINVAL, "nb_max_pool2d", "half", "[2, 0]", "[3, 3]");
    CV_EXPECT_FAIL(nb_max_pool2d(x, 3, 3, &nd), NB_EINVAL, "nb_max_pool2d", "dilation");
    nb_pool2d_opts ad = {.dilation = {2, 2}};
    CV_EXPECT_FAIL(nb_avg_pool2d(x, 2, 2, &ad), NB_EINVAL, "nb_avg_pool2d", "dilation");
    CV_EXPECT_FAIL(nb_max_pool2d(nb_zeros(NB_SHAPE(1, 2, 5, 5), NB_I64), 2, 2, NULL), NB_EDTYPE, "nb_max_pool2d");
    CV_EXPECT_FAIL(nb_max_pool2d(nb_zeros(NB_SHAPE(1, 0, 5, 5), NB_F32), 2, 2, NULL), NB_ESHAPE, "nb_max_pool2d",
                   "[1, 0, 5, 5]");
    nb_tensor *idx = x;   /* must come back NULL */
    CV_EXPECT_FAIL(nb_max_pool2d_with_indices(NULL, 2, 2, NULL, &idx), NB_ENULLARG, "nb_max_pool2d");
    cr_expect(idx == NULL);
    CV_EXPECT_FAIL(nb_adaptive_avg_pool2d(x, 0, 2), NB_EINVAL, "nb_adaptive_avg_pool2d", "[0, 2]", "[1, 2, 5, 5]");
    CV_EXPECT_FAIL(nb_adaptive_avg_pool2d(nb_zeros(NB_SHAPE(5), NB_F32), 1, 1), NB_ESHAPE, "nb_adaptive_avg_pool2d",
                   "[5]");
    cv_bad_end();
}

Test(conv_bad, interpolate) {
    cv_bad_begin();
    nb_tensor *x = nb_zeros(NB_SHAPE(1, 2, 5, 5), NB_F32);
    nb_interpolate_opts none = {0}, both = {.size = {3, 3}, .scale_factor = {2, 2}};
    nb_interpolate_opts ac = {.size = {3, 3}, .align_corners = true};
    nb_interpolate_opts neg = {.scale_factor = {-1, 2}}, tiny = {.scale_factor = {0.1, 1}};
    nb_interpolate_opts ok = {.size = {3, 3}, .mode = NB_INTERP_BILINEAR};
    CV_EXPECT_FAIL(nb_interpolate(x, NULL), NB_ENULLARG, "nb_interpolate");
    CV_EXPECT_FAIL(nb_interpolate(x, &none), NB_EINVAL, "nb_interpolate", "neither");
    CV_EXPECT_FAIL(nb_interpolate(x, &both), NB_EINVAL, "nb_interpolate", "both");
    CV_EXPECT_FAIL(nb_interpolate(x, &ac), NB_EINVAL, "nb_interpolate", "align_corners");
    CV_EXPECT_FAIL(nb_interpolate(x, &neg), NB_EINVAL, "nb_interpolate", "scale_factor");
    CV_EXPECT_FAIL(nb_interpolate(x, &tiny), NB_ESHAPE, "nb_interpolate", "[1, 2, 5, 5]", "[0, 5]");
    CV_EXPECT_FAIL(nb_interpolate(nb_zeros(NB_SHAPE(2, 5, 5), NB_F32), &ok), NB_ESHAPE, "nb_interpolate",
                   "[2, 5, 5]", "4D");
    cv_bad_end();
}

/* ---- registry, ownership, memory ---- */

Test(conv_misc, registry_lists_every_op) {
    const nb_op ops[] = {NB_OP_CONV1D, NB_OP_CONV2D, NB_OP_CONV_TRANSPOSE2D, NB_OP_CONV_BWD_DATA,
                         NB_OP_CONV_BWD_WEIGHT, NB_OP_CONV_BWD_BIAS, NB_OP_MAX_POOL2D, NB_OP_MAX_POOL2D_BWD,
                         NB_OP_MAX_POOL2D_GATHER, NB_OP_AVG_POOL2D, NB_OP_AVG_POOL2D_BWD, NB_OP_ADAPTIVE_AVG_POOL2D,
                         NB_OP_ADAPTIVE_AVG_POOL2D_BWD, NB_OP_INTERPOLATE, NB_OP_INTERPOLATE_BWD};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const char *k32 = nb_kernel_chosen(ops[i], NB_F32), *k64 = nb_kernel_chosen(ops[i], NB_F64);
        cr_expect(k32 && k64, "op %s has no F32/F64 kernel", nb_op_name(ops[i]));
    }
    cr_expect_str_eq(nb_op_name(NB_OP_CONV2D), "conv2d");
    /* the ref kernels are always in the dump, chosen or not */
    FILE *f = tmpfile();
    cr_assert(f != NULL);
    nb_registry_dump(f);
    long n = ftell(f);
    cr_assert_gt(n, 0);
    char *buf = calloc(1, (size_t)n + 1);
    cr_assert(buf != NULL);
    rewind(f);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    const char *names[] = {"ref_conv2d_f32", "ref_conv_bwd_data_f64", "ref_max_pool2d_gather_f32",
                           "ref_adaptive_avg_pool2d_bwd_f64", "ref_interpolate_bwd_f32", "conv_transpose2d"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect(strstr(buf, names[i]) != NULL, "nb_registry_dump does not list %s", names[i]);
    free(buf);
}

/* Conv and pool outputs, their nodes and the saved indices all die with the
 * scope after backward; the indices of with_indices belong to the scope. */
Test(conv_misc, no_leaks) {
    uint64_t live0 = nb_memory_stats().live_tensors;
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(2, 3, 9, 9), NB_F32, 1), *w = nb_randn(NB_SHAPE(4, 3, 3, 3), NB_F32, 2);
    nb_tensor *b = nb_randn(NB_SHAPE(4), NB_F32, 3);
    nb_set_requires_grad(x, true);
    nb_set_requires_grad(w, true);
    nb_set_requires_grad(b, true);
    nb_tensor *idx = NULL;
    nb_conv_opts co = {.padding = {1, 1}};
    nb_tensor *y = nb_max_pool2d_with_indices(nb_conv2d(x, w, b, &co), 2, 2, NULL, &idx);
    nb_interpolate_opts io = {.scale_factor = {2, 2}, .mode = NB_INTERP_BILINEAR};
    nb_tensor *z = nb_sum_all(nb_adaptive_avg_pool2d(nb_interpolate(nb_avg_pool2d(y, 2, 2, NULL), &io), 3, 3));
    cr_assert(z && idx, "%s", nb_last_error());
    cr_expect_eq(nb_dtype(idx), NB_I64);
    cr_expect_eq(nb_backward(z, NULL), 0, "%s", nb_last_error());
    cr_expect(nb_grad(x) && nb_grad(w) && nb_grad(b));
    nb_scope_end();
    cr_expect_eq(nb_memory_stats().live_tensors, live0, "%llu tensors alive, %llu before",
                 (unsigned long long)nb_memory_stats().live_tensors, (unsigned long long)live0);
}

/* conv2d of a 1-row image equals conv1d; the batch of one equals unbatched. */
Test(conv_misc, conv1d_is_conv2d_with_h1) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(2, 3, 11), NB_F64, 5), *w = nb_randn(NB_SHAPE(6, 1, 3), NB_F64, 6);
    nb_conv_opts o1 = {.stride = {2}, .padding = {1}, .dilation = {2}, .groups = 3};
    nb_conv_opts o2 = {.stride = {1, 2}, .padding = {0, 1}, .dilation = {1, 2}, .groups = 3};
    nb_tensor *a = nb_conv1d(x, w, NULL, &o1);
    nb_tensor *b = nb_squeeze(nb_conv2d(nb_unsqueeze(x, 2), nb_unsqueeze(w, 2), NULL, &o2), 2);
    cr_assert(a && b, "%s", nb_last_error());
    cr_expect_lt(tu_max_abs_diff(a, b), 1e-12);
    nb_scope_end();
}

/* Max pooling picks the first of equal maxima and lets a NaN win, as
 * PyTorch; the gradient goes to that one element only. */
Test(conv_misc, max_pool_ties_and_nan) {
    nb_scope_begin();
    const double v[8] = {1, 3, 3, 0, 2, NAN, 5, 1};
    nb_tensor *x = tu_tensor(NB_SHAPE(1, 1, 2, 4), NB_F64, v);
    nb_set_requires_grad(x, true);
    nb_tensor *idx = NULL;
    nb_tensor *y = nb_max_pool2d_with_indices(x, 1, 2, NULL, &idx);   /* windows {1,3} {3,0} {2,NaN} {5,1} */
    cr_assert(y && idx, "%s", nb_last_error());
    int64_t got[4];
    cr_assert_eq(nb_copy_to(idx, got, sizeof got), 0);
    cr_expect(got[0] == 1 && got[1] == 2 && got[2] == 5 && got[3] == 6, "indices %lld %lld %lld %lld",
              (long long)got[0], (long long)got[1], (long long)got[2], (long long)got[3]);
    int64_t at[4] = {0, 0, 1, 0};
    cr_expect(isnan(nb_get(y, at)), "the NaN window should give NaN");
    cr_expect_str_eq(nb_grad_fn_name(y), "MaxPool2DWithIndicesBackward");
    cr_assert_eq(nb_backward(y, nb_ones(NB_SHAPE(1, 1, 2, 4 / 2), NB_F64)), 0, "%s", nb_last_error());
    double g[8];
    cr_assert_eq(nb_copy_to(nb_grad(x), g, sizeof g), 0);
    const double want[8] = {0, 1, 1, 0, 0, 1, 1, 0};
    for (int i = 0; i < 8; i++) cr_expect_eq(g[i], want[i], "grad[%d] = %g, expected %g", i, g[i], want[i]);
    nb_scope_end();
}

/* CONV_BWD_WEIGHT_BIAS's ref kernel: bitwise ref's CONV_BWD_WEIGHT and
 * CONV_BWD_BIAS written into its rows (F32 and F64; groups, stride,
 * dilation, a 1-D conv). The conv op uses it at the ref cap; the fast
 * kernels are checked against it (test_conv_small.c, test_avx512_conv_small.c). */
Test(conv_misc, fused_weight_and_bias_gradient_ref_matches_the_two_ops) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "ref", .abort_on_error = -1}), 0);
    static const struct {
        int64_t n, ci, co, h, w, kh, kw, s, p, d, g;
    } cs[] = {{2, 3, 8, 9, 7, 3, 2, 1, 1, 1, 1}, {3, 4, 6, 8, 8, 3, 3, 2, 1, 2, 2}, {2, 2, 4, 0, 11, 1, 3, 1, 1, 1, 1}};
    for (int dt = 0; dt < 2; dt++)
        for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
            nb_scope_begin();
            nb_dtype t = dt ? NB_F64 : NB_F32;
            bool one_d = cs[i].h == 0;
            int64_t oh = one_d ? 1 : (cs[i].h + 2 * cs[i].p - cs[i].d * (cs[i].kh - 1) - 1) / cs[i].s + 1;
            int64_t ow = (cs[i].w + 2 * cs[i].p - cs[i].d * (cs[i].kw - 1) - 1) / cs[i].s + 1;
            int64_t cig = cs[i].ci / cs[i].g, per = cig * cs[i].kh * cs[i].kw;
            nb_tensor *x = one_d ? nb_randn(NB_SHAPE(cs[i].n, cs[i].ci, cs[i].w), t, 1)
                                 : nb_randn(NB_SHAPE(cs[i].n, cs[i].ci, cs[i].h, cs[i].w), t, 1);
            nb_tensor *gy = one_d ? nb_randn(NB_SHAPE(cs[i].n, cs[i].co, ow), t, 2)
                                  : nb_randn(NB_SHAPE(cs[i].n, cs[i].co, oh, ow), t, 2);
            nb_tensor *dw = one_d ? nb_zeros(NB_SHAPE(cs[i].co, cig, cs[i].kw), t)
                                  : nb_zeros(NB_SHAPE(cs[i].co, cig, cs[i].kh, cs[i].kw), t);
            nb_tensor *db = nb_zeros(NB_SHAPE(cs[i].co), t), *fu = nb_zeros(NB_SHAPE(cs[i].co, per + 1), t);
            double geo[8] = {(double)(one_d ? 1 : cs[i].s), (double)cs[i].s, (double)(one_d ? 0 : cs[i].p),
                             (double)cs[i].p, (double)(one_d ? 1 : cs[i].d), (double)cs[i].d, (double)cs[i].g,
                             (double)cs[i].kh};
            nb_kernel_args a = {.op = NB_OP_CONV_BWD_WEIGHT, .out = dw, .in = {x, gy}, .nin = 2};
            memcpy(a.scalar, geo, sizeof geo);
            cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s", nb_last_error());
            a.op = NB_OP_CONV_BWD_BIAS, a.out = db, a.in[0] = gy, a.nin = 1;
            cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s", nb_last_error());
            a.op = NB_OP_CONV_BWD_WEIGHT_BIAS, a.out = fu, a.in[0] = x, a.in[1] = gy, a.nin = 2;
            cr_assert_eq(nb__dispatch(&a, "test"), 0, "%s", nb_last_error());
            cr_expect(!strncmp(nb__last_kernel(), "ref_conv_bwd_weight_bias", 24), "served by %s", nb__last_kernel());
            nb_tensor *fw = nb_reshape(nb_slice(fu, 1, 0, per, 1), nb_dims_get(dw));
            nb_tensor *fb = nb_reshape(nb_slice(fu, 1, per, per + 1, 1), NB_SHAPE(cs[i].co));
            cr_expect_eq(tu_max_abs_diff(fw, dw), 0.0, "case %zu %s: weight part differs", i, dt ? "f64" : "f32");
            cr_expect_eq(tu_max_abs_diff(fb, db), 0.0, "case %zu %s: bias part differs", i, dt ? "f64" : "f32");
            nb_scope_end();
        }
    nb_init(NULL);
}
