/* test_ops_grad.c — finite-difference checks of every core op's backward.
 *
 * nb_gradcheck (first derivatives) and nb_gradgradcheck (derivatives of the
 * backward, through create_graph) in F64 with PyTorch's tolerances, on plain
 * shapes, odd sizes, broadcasting, 0-dim tensors and non-contiguous leaves:
 * 't' leaves are the transpose of a contiguous tensor, 's' leaves take every
 * second element of the last dim (see tu_make_layout). The last tests show the
 * checkers can fail: custom functions with a wrong backward, and a backward
 * that is right once but wrong twice, must give NB_ENUMERIC.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void grad_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}

TestSuite(ops_grad, .init = grad_setup);

/* ---- leaves ---- */

enum { GK_RANDN, GK_POS, GK_NONZERO };   /* value kinds */

static uint64_t grad_seed = 4242;

/* A F64 leaf with requires_grad: logical shape `shape`, memory layout 'c',
 * 't' or 's'; values N(0,1) (GK_RANDN), in [0.5, 2.5) (GK_POS, for log, pow
 * and roots) or |x| in [0.5, 2) with alternating sign (GK_NONZERO, divisors). */
static nb_tensor *gleaf(nb_dims shape, int kind, char layout) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    nb_tensor *r = kind == GK_RANDN ? nb_randn(nb_dims_of(1, &n), NB_F64, grad_seed++)
                                    : nb_rand(nb_dims_of(1, &n), NB_F64, grad_seed++);
    cr_assert(r != NULL, "leaf: %s", nb_last_error());
    double *v = malloc(sizeof(double) * (size_t)n);
    cr_assert(v != NULL);
    cr_assert_eq(nb_copy_to(r, v, sizeof(double) * (size_t)n), 0, "%s", nb_last_error());
    for (int64_t i = 0; i < n; i++) {
        if (kind == GK_POS) v[i] = 2.0 * v[i] + 0.5;
        if (kind == GK_NONZERO) v[i] = (1.5 * v[i] + 0.5) * ((i % 3 == 1) ? -1.0 : 1.0);
    }
    nb_tensor *t = tu_make_layout(shape, NB_F64, v, layout);
    free(v);
    cr_assert(t != NULL, "leaf layout %c: %s", layout, nb_last_error());
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

/* ---- running the checks ---- */

/* gradcheck, then (when gg) gradgradcheck, of fn on x; `what` names the case. */
static void gcheck_opts(const char *what, nb_gradcheck_fn fn, const void *user, nb_tensor **x,
                        int n, bool gg, const nb_gradcheck_opts *base) {
    nb_gradcheck_opts o = {0};
    if (base) o = *base;
    o.user = (void *)user;
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    int rc = nb_gradcheck(fn, x, n, &o, &r);
    cr_expect_eq(rc, 0,
                 "%s: gradcheck returned %d: %s (input %d, out %lld, in %lld: analytic %.10g "
                 "numeric %.10g)",
                 what, rc, nb_last_error(), r.input, (long long)r.out_index,
                 (long long)r.in_index, r.analytic, r.numeric);
    if (!gg) return;
    memset(&r, 0, sizeof r);
    rc = nb_gradgradcheck(fn, x, n, &o, &r);
    cr_expect_eq(rc, 0,
                 "%s: gradgradcheck returned %d: %s (input %d, out %lld, in %lld: analytic "
                 "%.10g numeric %.10g)",
                 what, rc, nb_last_error(), r.input, (long long)r.out_index,
                 (long long)r.in_index, r.analytic, r.numeric);
}

static void gcheck(const char *what, nb_gradcheck_fn fn, const void *user, nb_tensor **x,
                   int n) {
    gcheck_opts(what, fn, user, x, n, true, NULL);
}

/* ---- the functions checked; `user` carries the op and its arguments ---- */

typedef struct gop {
    nb_tensor *(*bin)(nb_tensor *, nb_tensor *);
    nb_tensor *(*un)(nb_tensor *);
    nb_tensor *(*sc)(nb_tensor *, double);
    double s;                  /* scalar of sc */
    int dims[NB_MAX_DIMS];     /* reduction / permutation dims */
    int ndims;
    bool keepdim;
    bool mean;                 /* nb_mean rather than nb_sum */
    nb_dims shape;             /* reshape / expand target */
    int d0, d1;                /* transpose dims, or squeeze/unsqueeze/slice dim in d0 */
    int64_t start, stop, step; /* slice */
} gop;

static nb_tensor *g_bin(nb_tensor *const *x, int n, void *u) {
    (void)n;
    return ((const gop *)u)->bin(x[0], x[1]);
}
static nb_tensor *g_bin_self(nb_tensor *const *x, int n, void *u) {
    (void)n;
    return ((const gop *)u)->bin(x[0], x[0]);
}
static nb_tensor *g_un(nb_tensor *const *x, int n, void *u) {
    (void)n;
    return ((const gop *)u)->un(x[0]);
}
static nb_tensor *g_sc(nb_tensor *const *x, int n, void *u) {
    (void)n;
    const gop *g = u;
    return g->sc(x[0], g->s);
}
static nb_tensor *g_reduce(nb_tensor *const *x, int n, void *u) {
    (void)n;
    const gop *g = u;
    if (g->ndims == 0 && !g->keepdim) return g->mean ? nb_mean_all(x[0]) : nb_sum_all(x[0]);
    return g->mean ? nb_mean(x[0], g->ndims ? g->dims : NULL, g->ndims, g->keepdim)
                   : nb_sum(x[0], g->ndims ? g->dims : NULL, g->ndims, g->keepdim);
}
static nb_tensor *g_reshape(nb_tensor *const *x, int n, void *u) {
    (void)n;
    return nb_reshape(x[0], ((const gop *)u)->shape);
}
static nb_tensor *g_expand(nb_tensor *const *x, int n, void *u) {
    (void)n;
    return nb_expand(x[0], ((const gop *)u)->shape);
}
static nb_tensor *g_transpose(nb_tensor *const *x, int n, void *u) {
    (void)n;
    const gop *g = u;
    return nb_transpose(x[0], g->d0, g->d1);
}
static nb_tensor *g_permute(nb_tensor *const *x, int n, void *u) {
    (void)n;
    const gop *g = u;
    return nb_permute(x[0], g->dims, g->ndims);
}
static nb_tensor *g_slice(nb_tensor *const *x, int n, void *u) {
    (void)n;
    const gop *g = u;
    return nb_slice(x[0], g->d0, g->start, g->stop, g->step);
}
static nb_tensor *g_squeeze(nb_tensor *const *x, int n, void *u) {
    (void)n;
    return nb_squeeze(x[0], ((const gop *)u)->d0);
}
static nb_tensor *g_unsqueeze(nb_tensor *const *x, int n, void *u) {
    (void)n;
    return nb_unsqueeze(x[0], ((const gop *)u)->d0);
}
/* A view op alone is linear, so its second derivative is 0; these also run it
 * after a non-linear op, so the double backward carries real values. */
static nb_tensor *g_tanh_then_view(nb_tensor *const *x, int n, void *u) {
    (void)n;
    const gop *g = u;
    nb_tensor *t = nb_tanh(x[0]);
    return nb_mul(g->un(t), g->un(t));
}
static nb_tensor *g_to_f32_f64(nb_tensor *const *x, int n, void *u) {
    (void)n;
    (void)u;
    return nb_to_dtype(nb_to_dtype(x[0], NB_F32), NB_F64);
}
static nb_tensor *g_to_f64(nb_tensor *const *x, int n, void *u) {
    (void)n;
    (void)u;
    return nb_mul(nb_to_dtype(x[0], NB_F64), x[0]);
}

/* ---- element-wise binary ---- */

typedef struct gpair {
    nb_dims a, b;
    char la, lb;
} gpair;

static void grad_binary(const char *name, nb_tensor *(*fn)(nb_tensor *, nb_tensor *), int ka,
                        int kb) {
    const gpair cs[] = {
        {NB_SHAPE(3, 4), NB_SHAPE(3, 4), 'c', 'c'},
        {NB_SHAPE(1), NB_SHAPE(1), 'c', 'c'},
        {NB_SHAPE(7), NB_SHAPE(7), 'c', 'c'},
        {NB_SHAPE(33), NB_SHAPE(1), 'c', 'c'},
        {NB_SHAPE(3, 1, 4), NB_SHAPE(5, 1), 'c', 'c'},
        {NB_SHAPE(5, 1), NB_SHAPE(3, 1, 4), 'c', 'c'},
        {NB_SHAPE(3, 4), NB_SHAPE(4), 'c', 'c'},
        {NB_SHAPE0, NB_SHAPE(2, 3), 'c', 'c'},
        {NB_SHAPE(2, 3), NB_SHAPE0, 'c', 'c'},
        {NB_SHAPE0, NB_SHAPE0, 'c', 'c'},
        {NB_SHAPE(3, 4), NB_SHAPE(3, 4), 't', 's'},
        {NB_SHAPE(4, 3), NB_SHAPE(3), 't', 's'},
        {NB_SHAPE(2, 3, 1), NB_SHAPE(3, 4), 's', 't'},
        {NB_SHAPE(3, 1), NB_SHAPE(2, 3, 4), 't', 't'},
    };
    gop g = {.bin = fn};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char what[96];
        nb_scope_begin();
        nb_tensor *x[2] = {gleaf(cs[i].a, ka, cs[i].la), gleaf(cs[i].b, kb, cs[i].lb)};
        snprintf(what, sizeof what, "%s case %zu (layouts %c%c)", name, i, cs[i].la, cs[i].lb);
        gcheck(what, g_bin, &g, x, 2);
        nb_scope_end();
    }
    /* the same tensor on both sides: the two gradients add up */
    nb_scope_begin();
    nb_tensor *a = gleaf(NB_SHAPE(2, 3), ka == GK_RANDN && kb != GK_RANDN ? kb : ka, 't');
    char what[96];
    snprintf(what, sizeof what, "%s(x, x)", name);
    gcheck(what, g_bin_self, &g, &a, 1);
    nb_scope_end();
}

Test(ops_grad, add) { grad_binary("add", nb_add, GK_RANDN, GK_RANDN); }
Test(ops_grad, sub) { grad_binary("sub", nb_sub, GK_RANDN, GK_RANDN); }
Test(ops_grad, mul) { grad_binary("mul", nb_mul, GK_RANDN, GK_RANDN); }
Test(ops_grad, div) { grad_binary("div", nb_div, GK_RANDN, GK_NONZERO); }
Test(ops_grad, pow) { grad_binary("pow", nb_pow, GK_POS, GK_RANDN); }

/* ---- with a scalar ---- */

static void grad_scalar(const char *name, nb_tensor *(*fn)(nb_tensor *, double),
                        const double *s, int ns, int kind) {
    const struct {
        nb_dims shape;
        char layout;
    } cs[] = {
        {NB_SHAPE(2, 3), 'c'}, {NB_SHAPE0, 'c'}, {NB_SHAPE(33), 'c'},
        {NB_SHAPE(4, 3), 't'}, {NB_SHAPE(3, 5), 's'},
    };
    for (int k = 0; k < ns; k++) {
        gop g = {.sc = fn, .s = s[k]};
        /* a non-integer power needs positive inputs */
        int kd = (fn == nb_pow_scalar && s[k] != floor(s[k])) ? GK_POS : kind;
        for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
            char what[96];
            nb_scope_begin();
            nb_tensor *x = gleaf(cs[i].shape, kd, cs[i].layout);
            snprintf(what, sizeof what, "%s(s=%g) case %zu (layout %c)", name, s[k], i,
                     cs[i].layout);
            gcheck(what, g_sc, &g, &x, 1);
            nb_scope_end();
        }
    }
}

Test(ops_grad, add_scalar) {
    const double s[] = {2.5, -1.25, 0.0};
    grad_scalar("add_scalar", nb_add_scalar, s, 3, GK_RANDN);
}
Test(ops_grad, mul_scalar) {
    const double s[] = {2.5, -1.25, 0.0};
    grad_scalar("mul_scalar", nb_mul_scalar, s, 3, GK_RANDN);
}
Test(ops_grad, pow_scalar) {
    const double s[] = {2.0, 3.0, 1.0, 0.0, -1.0, -2.0, 0.5, -1.5, 2.5};
    grad_scalar("pow_scalar", nb_pow_scalar, s, 9, GK_NONZERO);
}

/* ---- unary ---- */

static void grad_unary(const char *name, nb_tensor *(*fn)(nb_tensor *), int kind) {
    const struct {
        nb_dims shape;
        char layout;
    } cs[] = {
        {NB_SHAPE(1), 'c'},    {NB_SHAPE(7), 'c'},    {NB_SHAPE(33), 'c'},
        {NB_SHAPE0, 'c'},      {NB_SHAPE(2, 3, 4), 'c'},
        {NB_SHAPE(5, 3), 't'}, {NB_SHAPE(3, 7), 's'}, {NB_SHAPE(2, 3, 4), 't'},
    };
    gop g = {.un = fn};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char what[96];
        nb_scope_begin();
        nb_tensor *x = gleaf(cs[i].shape, kind, cs[i].layout);
        snprintf(what, sizeof what, "%s case %zu (layout %c)", name, i, cs[i].layout);
        gcheck(what, g_un, &g, &x, 1);
        nb_scope_end();
    }
}

Test(ops_grad, neg) { grad_unary("neg", nb_neg, GK_RANDN); }
Test(ops_grad, exp) { grad_unary("exp", nb_exp, GK_RANDN); }
Test(ops_grad, log) { grad_unary("log", nb_log, GK_POS); }
Test(ops_grad, tanh) { grad_unary("tanh", nb_tanh, GK_RANDN); }

/* ---- reductions ---- */

static void grad_reduce(bool mean) {
    const char *name = mean ? "mean" : "sum";
    const struct {
        nb_dims shape;
        char layout;
        int dims[3];
        int ndims;
        bool keep;
    } cs[] = {
        /* ndims 0, keep false: nb_sum_all / nb_mean_all */
        {NB_SHAPE(1), 'c', {0}, 0, false},
        {NB_SHAPE(7), 'c', {0}, 0, false},
        {NB_SHAPE(33), 'c', {0}, 0, false},
        {NB_SHAPE0, 'c', {0}, 0, false},
        {NB_SHAPE(2, 3, 4), 'c', {0}, 0, false},
        {NB_SHAPE(4, 5), 't', {0}, 0, false},
        {NB_SHAPE(3, 5), 's', {0}, 0, false},
        /* ndims 0, keep true: all dims through nb_sum/nb_mean, kept as 1s */
        {NB_SHAPE(2, 3), 'c', {0}, 0, true},
        /* chosen dims */
        {NB_SHAPE(2, 3, 4), 'c', {1}, 1, false},
        {NB_SHAPE(2, 3, 4), 'c', {1}, 1, true},
        {NB_SHAPE(2, 3, 4), 'c', {-1}, 1, false},
        {NB_SHAPE(2, 3, 4), 'c', {-1}, 1, true},
        {NB_SHAPE(2, 3, 4), 'c', {0, 2}, 2, false},
        {NB_SHAPE(2, 3, 4), 'c', {0, 2}, 2, true},
        {NB_SHAPE(2, 3, 4), 'c', {-1, 0}, 2, false},
        {NB_SHAPE(2, 3, 4), 'c', {0, 1, 2}, 3, true},
        {NB_SHAPE(1, 7), 'c', {0}, 1, false},
        {NB_SHAPE(33, 2), 'c', {0}, 1, true},
        {NB_SHAPE(2, 33), 'c', {-1}, 1, false},
        {NB_SHAPE(5), 'c', {0}, 1, false},
        {NB_SHAPE(4, 5), 't', {0}, 1, false},
        {NB_SHAPE(4, 5), 't', {-1}, 1, true},
        {NB_SHAPE(4, 5), 's', {1}, 1, false},
        {NB_SHAPE(3, 4, 5), 't', {0, 2}, 2, true},
        {NB_SHAPE(3, 4, 5), 's', {1}, 1, false},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        gop g = {.mean = mean, .ndims = cs[i].ndims, .keepdim = cs[i].keep};
        memcpy(g.dims, cs[i].dims, sizeof cs[i].dims);
        char what[96];
        nb_scope_begin();
        nb_tensor *x = gleaf(cs[i].shape, GK_RANDN, cs[i].layout);
        snprintf(what, sizeof what, "%s case %zu (layout %c)", name, i, cs[i].layout);
        gcheck(what, g_reduce, &g, &x, 1);
        nb_scope_end();
    }
}

Test(ops_grad, sum) { grad_reduce(false); }
Test(ops_grad, mean) { grad_reduce(true); }

/* ---- matmul ---- */

Test(ops_grad, matmul) {
    const gpair cs[] = {
        {NB_SHAPE(7), NB_SHAPE(7), 'c', 'c'},
        {NB_SHAPE(1), NB_SHAPE(1), 'c', 'c'},
        {NB_SHAPE(4), NB_SHAPE(4, 5), 'c', 'c'},
        {NB_SHAPE(3, 4), NB_SHAPE(4), 'c', 'c'},
        {NB_SHAPE(3, 4), NB_SHAPE(4, 5), 'c', 'c'},
        {NB_SHAPE(1, 1), NB_SHAPE(1, 1), 'c', 'c'},
        {NB_SHAPE(7, 33), NB_SHAPE(33, 1), 'c', 'c'},
        {NB_SHAPE(2, 3, 4), NB_SHAPE(2, 4, 5), 'c', 'c'},
        {NB_SHAPE(2, 1, 3, 4), NB_SHAPE(5, 4, 6), 'c', 'c'},
        {NB_SHAPE(1, 3, 4), NB_SHAPE(2, 4, 5), 'c', 'c'},
        {NB_SHAPE(3, 4), NB_SHAPE(2, 4, 5), 'c', 'c'},
        {NB_SHAPE(2, 3, 4), NB_SHAPE(4, 5), 'c', 'c'},
        {NB_SHAPE(4), NB_SHAPE(2, 4, 5), 'c', 'c'},
        {NB_SHAPE(2, 3, 4), NB_SHAPE(4), 'c', 'c'},
        {NB_SHAPE(3, 4), NB_SHAPE(4, 5), 't', 't'},
        {NB_SHAPE(3, 4), NB_SHAPE(4, 5), 's', 't'},
        {NB_SHAPE(2, 3, 4), NB_SHAPE(2, 4, 5), 't', 's'},
        {NB_SHAPE(4), NB_SHAPE(4, 5), 's', 't'},
        {NB_SHAPE(2, 1, 3, 4), NB_SHAPE(5, 4, 2), 't', 't'},
    };
    gop g = {.bin = nb_matmul};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char what[96];
        nb_scope_begin();
        nb_tensor *x[2] = {gleaf(cs[i].a, GK_RANDN, cs[i].la), gleaf(cs[i].b, GK_RANDN, cs[i].lb)};
        snprintf(what, sizeof what, "matmul case %zu (layouts %c%c)", i, cs[i].la, cs[i].lb);
        gcheck(what, g_bin, &g, x, 2);
        nb_scope_end();
    }
    /* x @ x: both gradients into one leaf */
    nb_scope_begin();
    nb_tensor *a = gleaf(NB_SHAPE(3, 3), GK_RANDN, 't');
    gcheck("matmul(x, x)", g_bin_self, &g, &a, 1);
    nb_scope_end();
}

/* ---- views and copies ---- */

/* Runs view function fn with g on a leaf of `shape` in each layout of
 * `layouts`. */
static void grad_view(const char *name, nb_gradcheck_fn fn, const gop *g, nb_dims shape,
                      const char *layouts) {
    for (const char *l = layouts; *l; l++) {
        char what[96];
        nb_scope_begin();
        nb_tensor *x = gleaf(shape, GK_RANDN, *l);
        snprintf(what, sizeof what, "%s (layout %c)", name, *l);
        gcheck(what, fn, g, &x, 1);
        nb_scope_end();
    }
}

Test(ops_grad, reshape) {
    gop g1 = {.shape = NB_SHAPE(4, 6)}, g2 = {.shape = NB_SHAPE(6, -1)},
        g3 = {.shape = NB_SHAPE(24)}, g4 = {.shape = NB_SHAPE0},
        g5 = {.shape = NB_SHAPE(1, 1, 1)};
    grad_view("reshape [2,3,4]->[4,6]", g_reshape, &g1, NB_SHAPE(2, 3, 4), "cts");
    grad_view("reshape [2,3,4]->[6,-1]", g_reshape, &g2, NB_SHAPE(2, 3, 4), "ct");
    grad_view("reshape [4,6]->[24]", g_reshape, &g3, NB_SHAPE(4, 6), "cts");
    grad_view("reshape [1,1]->[]", g_reshape, &g4, NB_SHAPE(1, 1), "c");
    grad_view("reshape []->[1,1,1]", g_reshape, &g5, NB_SHAPE0, "c");
}

Test(ops_grad, transpose) {
    gop g1 = {.d0 = 0, .d1 = 2}, g2 = {.d0 = -1, .d1 = -2}, g3 = {.d0 = 1, .d1 = 1};
    grad_view("transpose(0,2)", g_transpose, &g1, NB_SHAPE(2, 3, 4), "cts");
    grad_view("transpose(-1,-2)", g_transpose, &g2, NB_SHAPE(2, 3, 4), "cts");
    grad_view("transpose(1,1)", g_transpose, &g3, NB_SHAPE(3, 4), "c");
}

Test(ops_grad, permute) {
    gop g1 = {.dims = {2, 0, 1}, .ndims = 3}, g2 = {.dims = {3, 1, 0, 2}, .ndims = 4},
        g3 = {.dims = {1, 0}, .ndims = 2};
    grad_view("permute(2,0,1)", g_permute, &g1, NB_SHAPE(2, 3, 4), "cts");
    grad_view("permute(3,1,0,2)", g_permute, &g2, NB_SHAPE(2, 3, 1, 5), "ct");
    grad_view("permute(1,0)", g_permute, &g3, NB_SHAPE(3, 4), "cts");
}

Test(ops_grad, slice) {
    gop g1 = {.d0 = 0, .start = 1, .stop = 8, .step = 2},
        g2 = {.d0 = -1, .start = -7, .stop = 10, .step = 3},
        g3 = {.d0 = 0, .start = -3, .stop = 100, .step = 1},
        g4 = {.d0 = 1, .start = 0, .stop = -1, .step = 2},
        g5 = {.d0 = 1, .start = 1, .stop = 5, .step = 1};
    grad_view("slice [1:8:2]", g_slice, &g1, NB_SHAPE(10), "cs");
    grad_view("slice [:, -7:10:3]", g_slice, &g2, NB_SHAPE(4, 10), "cts");
    grad_view("slice [-3:100]", g_slice, &g3, NB_SHAPE(5, 4), "cts");
    grad_view("slice [:, 0:-1:2]", g_slice, &g4, NB_SHAPE(3, 9), "cts");
    grad_view("slice [:, 1:5]", g_slice, &g5, NB_SHAPE(2, 6, 3), "cts");
}

Test(ops_grad, expand) {
    gop g1 = {.shape = NB_SHAPE(3, 4)}, g2 = {.shape = NB_SHAPE(2, 3, 4)},
        g3 = {.shape = NB_SHAPE(-1, 5)}, g4 = {.shape = NB_SHAPE(2, 3)},
        g5 = {.shape = NB_SHAPE(2, 4, 3)};
    grad_view("expand [3,1]->[3,4]", g_expand, &g1, NB_SHAPE(3, 1), "ct");
    grad_view("expand [4]->[2,3,4]", g_expand, &g2, NB_SHAPE(4), "cs");
    grad_view("expand [3,1]->[-1,5]", g_expand, &g3, NB_SHAPE(3, 1), "cs");
    grad_view("expand []->[2,3]", g_expand, &g4, NB_SHAPE0, "c");
    grad_view("expand [1,4,1]->[2,4,3]", g_expand, &g5, NB_SHAPE(1, 4, 1), "ct");
}

Test(ops_grad, squeeze_unsqueeze) {
    gop s1 = {.d0 = 1}, s2 = {.d0 = -2}, s3 = {.d0 = 0};
    grad_view("squeeze(1)", g_squeeze, &s1, NB_SHAPE(3, 1, 4), "cs");
    grad_view("squeeze(-2)", g_squeeze, &s2, NB_SHAPE(3, 1, 4), "cts");
    grad_view("squeeze(0) to 0-dim", g_squeeze, &s3, NB_SHAPE(1), "c");
    gop u1 = {.d0 = 0}, u2 = {.d0 = 2}, u3 = {.d0 = -2}, u4 = {.d0 = 0};
    grad_view("unsqueeze(0)", g_unsqueeze, &u1, NB_SHAPE(3, 4), "cts");
    grad_view("unsqueeze(2)", g_unsqueeze, &u2, NB_SHAPE(3, 4), "cts");
    grad_view("unsqueeze(-2)", g_unsqueeze, &u3, NB_SHAPE(3, 4), "cts");
    grad_view("unsqueeze(0) of 0-dim", g_unsqueeze, &u4, NB_SHAPE0, "c");
}

Test(ops_grad, contiguous) {
    gop g = {.un = nb_contiguous};
    grad_view("contiguous", g_un, &g, NB_SHAPE(4, 3), "cts");
    grad_view("contiguous 3-D", g_un, &g, NB_SHAPE(2, 3, 4), "ts");
    grad_view("tanh then contiguous", g_tanh_then_view, &g, NB_SHAPE(4, 3), "ts");
}

static nb_tensor *g_view_t01(nb_tensor *t) { return nb_transpose(t, 0, 1); }
static nb_tensor *g_view_slice(nb_tensor *t) { return nb_slice(t, -1, 1, 5, 2); }
static nb_tensor *g_view_expand(nb_tensor *t) { return nb_expand(nb_unsqueeze(t, 0), NB_SHAPE(2, -1, -1)); }
static nb_tensor *g_view_sum(nb_tensor *t) {
    int d[1] = {0};
    return nb_sum(t, d, 1, false);
}

/* A view after a non-linear op: the double backward of the view has to carry
 * the grad-of-grad through to tanh's. */
Test(ops_grad, views_after_tanh) {
    gop g1 = {.un = g_view_t01}, g2 = {.un = g_view_slice}, g3 = {.un = g_view_expand},
        g4 = {.un = g_view_sum};
    grad_view("tanh then transpose", g_tanh_then_view, &g1, NB_SHAPE(4, 5), "cts");
    grad_view("tanh then slice", g_tanh_then_view, &g2, NB_SHAPE(4, 5), "cts");
    grad_view("tanh then expand", g_tanh_then_view, &g3, NB_SHAPE(4, 5), "cts");
    grad_view("tanh then sum", g_tanh_then_view, &g4, NB_SHAPE(4, 5), "cts");
}

Test(ops_grad, to_dtype) {
    grad_view("to_dtype f64->f64", g_to_f64, NULL, NB_SHAPE(3, 4), "cts");
    /* through F32 and back: finite differences need a step F32 resolves */
    nb_gradcheck_opts o = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-3};
    const char layouts[] = "cts";
    for (int i = 0; layouts[i]; i++) {
        char what[64];
        nb_scope_begin();
        nb_tensor *x = gleaf(NB_SHAPE(3, 4), GK_RANDN, layouts[i]);
        snprintf(what, sizeof what, "to_dtype f64->f32->f64 (layout %c)", layouts[i]);
        gcheck_opts(what, g_to_f32_f64, NULL, &x, 1, true, &o);
        nb_scope_end();
    }
}

/* ---- the checkers can fail ---- */

/* y = 3x, with a backward that returns 2 * grad (wrong) or 3 * grad. */
static nb_tensor *bad_triple_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)ctx;
    (void)n;
    return nb_mul_scalar(in[0], 3.0);
}
static int bad_triple_bwd(nb_ctx *ctx, nb_tensor *gout, nb_tensor **grads) {
    (void)ctx;
    grads[0] = nb_mul_scalar(gout, 2.0);
    return grads[0] ? 0 : nb_last_error_code();
}
static int good_triple_bwd(nb_ctx *ctx, nb_tensor *gout, nb_tensor **grads) {
    (void)ctx;
    grads[0] = nb_mul_scalar(gout, 3.0);
    return grads[0] ? 0 : nb_last_error_code();
}
static const nb_function bad_triple = {"BadTripleBackward", bad_triple_fwd, bad_triple_bwd};
static const nb_function good_triple = {"TripleBackward", bad_triple_fwd, good_triple_bwd};

static nb_tensor *g_apply(nb_tensor *const *x, int n, void *u) {
    return nb_function_apply(u, x, n);
}

Test(ops_grad, gradcheck_catches_wrong_backward) {
    nb_scope_begin();
    nb_tensor *x = gleaf(NB_SHAPE(2, 3), GK_RANDN, 'c');
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    cr_expect_eq(nb_gradcheck(g_apply, &x, 1, &(nb_gradcheck_opts){.user = (void *)&good_triple},
                              &r),
                 0, "correct custom backward: %s", nb_last_error());
    memset(&r, 0, sizeof r);
    int rc = nb_gradcheck(g_apply, &x, 1, &(nb_gradcheck_opts){.user = (void *)&bad_triple}, &r);
    cr_expect_eq(rc, NB_ENUMERIC, "a wrong backward must fail gradcheck, got %d (%s)", rc,
                 nb_last_error());
    cr_expect(strlen(nb_last_error()) > 0, "gradcheck failure without a message");
    cr_expect_eq(r.input, 0);
    cr_expect(fabs(r.analytic - 2.0) < 1e-9, "report.analytic %.17g, expected 2", r.analytic);
    cr_expect(fabs(r.numeric - 3.0) < 1e-6, "report.numeric %.17g, expected 3", r.numeric);
    cr_expect(fabs(r.max_abs_err - 1.0) < 1e-6, "report.max_abs_err %.17g, expected 1",
              r.max_abs_err);
    cr_expect_eq(r.out_index, r.in_index, "the worst element should be on the diagonal");
    nb_scope_end();
}

/* y = x * x, whose backward 2 * x * grad is right, but computed from a
 * detached x (wrong_twice) it has no path back to x: gradcheck passes and
 * gradgradcheck must not. */
static nb_tensor *sq_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)n;
    if (nb_ctx_save(ctx, in[0]) != 0) return NULL;
    return nb_mul(in[0], in[0]);
}
static int sq_bwd_common(nb_ctx *ctx, nb_tensor *gout, nb_tensor **grads, bool detach) {
    nb_tensor *x = nb_ctx_saved(ctx, 0);
    if (!x) return nb_last_error_code();
    grads[0] = nb_mul_scalar(nb_mul(gout, detach ? nb_detach(x) : x), 2.0);
    return grads[0] ? 0 : nb_last_error_code();
}
static int sq_bwd_good(nb_ctx *ctx, nb_tensor *gout, nb_tensor **grads) {
    return sq_bwd_common(ctx, gout, grads, false);
}
static int sq_bwd_wrong_twice(nb_ctx *ctx, nb_tensor *gout, nb_tensor **grads) {
    return sq_bwd_common(ctx, gout, grads, true);
}
static const nb_function sq_good = {"SquareBackward", sq_fwd, sq_bwd_good};
static const nb_function sq_wrong_twice = {"SquareDetachedBackward", sq_fwd, sq_bwd_wrong_twice};

Test(ops_grad, gradgradcheck_catches_wrong_double_backward) {
    nb_scope_begin();
    nb_tensor *x = gleaf(NB_SHAPE(5), GK_RANDN, 'c');
    nb_gradcheck_opts good = {.user = (void *)&sq_good}, bad = {.user = (void *)&sq_wrong_twice};
    cr_expect_eq(nb_gradcheck(g_apply, &x, 1, &good, NULL), 0, "square: %s", nb_last_error());
    cr_expect_eq(nb_gradgradcheck(g_apply, &x, 1, &good, NULL), 0, "square, twice: %s",
                 nb_last_error());
    cr_expect_eq(nb_gradcheck(g_apply, &x, 1, &bad, NULL), 0,
                 "detached square is right once: %s", nb_last_error());
    int rc = nb_gradgradcheck(g_apply, &x, 1, &bad, NULL);
    cr_expect_eq(rc, NB_ENUMERIC, "a wrong double backward must fail gradgradcheck, got %d (%s)",
                 rc, nb_last_error());
    nb_scope_end();
}

/* A tiny tolerance makes even a right backward fail: the options reach the
 * comparison. */
Test(ops_grad, gradcheck_uses_tolerances) {
    nb_scope_begin();
    nb_tensor *x = gleaf(NB_SHAPE(4), GK_RANDN, 'c');
    gop g = {.un = nb_tanh};
    nb_gradcheck_opts o = {.eps = 1e-1, .atol = 1e-12, .rtol = 1e-12, .user = &g};
    cr_expect_eq(nb_gradcheck(g_un, &x, 1, &o, NULL), NB_ENUMERIC,
                 "eps 0.1 with atol/rtol 1e-12 should fail on tanh: %s", nb_last_error());
    o.atol = 1e-5;
    o.rtol = 1e-3;
    o.eps = 1e-6;
    cr_expect_eq(nb_gradcheck(g_un, &x, 1, &o, NULL), 0, "%s", nb_last_error());
    nb_scope_end();
}
