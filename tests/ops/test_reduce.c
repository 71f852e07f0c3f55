/* test_reduce.c — the full reductions: prod, max/min (over dims and along
 * one dim with indices), argmax/argmin, var/std, logsumexp, norm.
 *
 * red_ref runs every case of tests/data/ref_reduce.txt (gen_ref_reduce.py
 * documents it) in F64 and F32: odd sizes 1, 7, 33, 1023 along the reduced
 * dim, inner and outer dims, several dims, keepdim both ways, transposed and
 * strided inputs, ties, zeros in prod, NaN; forward against PyTorch (indices
 * exactly), then backward of sum(out * W) against PyTorch's gradient.
 * red_grad runs nb_gradcheck (and nb_gradgradcheck where the op is smooth)
 * in F64; red_bad the inputs the ops must refuse; red_misc integer inputs,
 * empty reductions, the registry entries and leaks.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void red_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}

/* Closes scopes an assertion left open. */
static void red_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}

TestSuite(red_ref, .init = red_setup, .fini = red_teardown);
TestSuite(red_grad, .init = red_setup, .fini = red_teardown);
TestSuite(red_bad, .init = red_setup, .fini = red_teardown);
TestSuite(red_misc, .init = red_setup, .fini = red_teardown);

/* ---- reference cases ---- */

/* dims into out (NULL, 0 when the case has no dims line: all dims). */
static const int *red_case_dims(const tu_ref_case *c, int *out, int *n) {
    const tu_ref_arg *a = tu_ref_arg_get(c, "dims");
    *n = 0;
    if (!a) return NULL;
    for (int i = 0; i < a->n; i++) out[i] = (int)a->v[i];
    *n = a->n;
    return out;
}

static double red_case_num(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    cr_assert(a != NULL && a->n == 1, "case %s: arg %s missing", c->name, key);
    return a->v[0];
}

/* True for ops whose result is an index tensor. */
static bool red_is_index_op(const char *op) {
    return strstr(op, "arg") == op || strstr(op, "_idx") != NULL;
}

static nb_tensor *red_case_run(const tu_ref_case *c, nb_tensor *x) {
    const char *op = c->op;
    int dbuf[NB_MAX_DIMS], nd;
    const int *dims = red_case_dims(c, dbuf, &nd);
    bool keep = tu_ref_arg_get(c, "keepdim") && red_case_num(c, "keepdim") != 0;
    if (!strcmp(op, "prod")) return nb_prod(x, dims, nd, keep);
    if (!strcmp(op, "max")) return nb_max(x, dims, nd, keep);
    if (!strcmp(op, "min")) return nb_min(x, dims, nd, keep);
    if (!strcmp(op, "logsumexp")) return nb_logsumexp(x, dims, nd, keep);
    if (!strcmp(op, "var")) return nb_var(x, dims, nd, red_case_num(c, "correction"), keep);
    if (!strcmp(op, "std")) return nb_std(x, dims, nd, red_case_num(c, "correction"), keep);
    if (!strcmp(op, "norm")) return nb_norm(x, red_case_num(c, "p"), dims, nd, keep);
    if (!strcmp(op, "argmax_all")) return nb_argmax_all(x);
    if (!strcmp(op, "argmin_all")) return nb_argmin_all(x);
    int dim = (int)red_case_num(c, "dim");
    if (!strcmp(op, "argmax")) return nb_argmax(x, dim, keep);
    if (!strcmp(op, "argmin")) return nb_argmin(x, dim, keep);
    nb_tensor *idx = NULL, *v = NULL;
    if (!strncmp(op, "max_dim", 7)) v = nb_max_dim(x, dim, keep, &idx);
    else if (!strncmp(op, "min_dim", 7)) v = nb_min_dim(x, dim, keep, &idx);
    else cr_assert_fail("case %s: unknown op %s", c->name, op);
    if (v) cr_assert(idx != NULL, "case %s: values but no indices", c->name);
    return strstr(op, "_idx") ? idx : v;
}

static double red_maxabs(const tu_ref_tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < t->numel; i++)
        if (isfinite(t->vals[i]) && fabs(t->vals[i]) > m) m = fabs(t->vals[i]);
    return m;
}

static bool red_close(const nb_tensor *got, const tu_ref_tensor *exp, double rtol, double atol_unit,
                      const char *what, const tu_ref_case *c, nb_dtype dt) {
    char msg[512];
    bool ok = tu_check_close(got, exp->shape, exp->vals, rtol, atol_unit * (1.0 + red_maxabs(exp)), msg,
                             sizeof msg);
    cr_expect(ok, "case %s (%s): %s: %s", c->name, nb_dtype_name(dt), what, msg);
    return ok;
}

static bool red_all_zero(const tu_ref_tensor *t) {
    for (int64_t i = 0; i < t->numel; i++)
        if (t->vals[i] != 0) return false;
    return true;
}

/* One case in dtype dt: forward, then (when W is not all zeros) backward. */
static void red_case_check(const tu_ref_case *c, nb_dtype dt) {
    bool index = red_is_index_op(c->op), grad = !index && !red_all_zero(&c->w);
    double rtol = dt == NB_F64 ? 1e-12 : 1e-4, atol = dt == NB_F64 ? 1e-12 : 1e-5;
    nb_scope_begin();
    nb_tensor *x = tu_ref_make(&c->in[0], dt);
    cr_assert(x != NULL, "case %s: input: %s", c->name, nb_last_error());
    if (grad) cr_assert_eq(nb_set_requires_grad(x, true), 0, "%s", nb_last_error());
    nb_tensor *out = red_case_run(c, x);
    cr_expect(out != NULL, "case %s (%s): forward failed: %s", c->name, nb_dtype_name(dt), nb_last_error());
    if (!out) goto done;
    nb_dtype want = index ? NB_I64 : dt;
    cr_expect_eq(nb_dtype(out), want, "case %s: dtype %s, expected %s", c->name, nb_dtype_name(nb_dtype(out)),
                 nb_dtype_name(want));
    if (!red_close(out, &c->out, index ? 0 : rtol, index ? 0 : atol, "forward", c, dt) || !grad) goto done;
    nb_tensor *w = tu_ref_make(&c->w, dt);
    int rc = nb_backward(out, w);
    cr_expect_eq(rc, 0, "case %s (%s): backward: %s", c->name, nb_dtype_name(dt), nb_last_error());
    if (rc) goto done;
    nb_tensor *g = nb_grad(x);
    cr_expect(g != NULL, "case %s (%s): no gradient", c->name, nb_dtype_name(dt));
    if (g) red_close(g, &c->grad[0], rtol, atol, "gradient", c, dt);
    red_close(x, &c->in[0], dt == NB_F64 ? 0 : 1e-7, 0, "input after backward", c, dt);
done:
    nb_scope_end();
}

static void red_run_op(const char *op) {
    tu_ref_set *red_set = tu_ref_load_all_from("ref_reduce.txt");
    cr_assert(red_set != NULL, "cannot load ref_reduce.txt");
    int ran = 0;
    uint64_t live = nb_memory_stats().live_tensors;
    for (int i = 0; i < red_set->n; i++) {
        if (strcmp(red_set->cases[i].op, op) != 0) continue;
        red_case_check(&red_set->cases[i], NB_F64);
        red_case_check(&red_set->cases[i], NB_F32);
        ran++;
    }
    tu_ref_free_set(red_set);
    cr_expect_gt(ran, 0, "no reference case for %s", op);
    cr_expect_eq(nb_memory_stats().live_tensors, live, "%s: tensors leaked", op);
}

#define RED_REF(op) \
    Test(red_ref, op) { red_run_op(#op); }
RED_REF(prod)
RED_REF(max)
RED_REF(min)
RED_REF(max_dim)
RED_REF(min_dim)
RED_REF(max_dim_idx)
RED_REF(min_dim_idx)
RED_REF(argmax)
RED_REF(argmin)
RED_REF(argmax_all)
RED_REF(argmin_all)
RED_REF(var)
RED_REF(std)
RED_REF(logsumexp)
RED_REF(norm)

/* Every case in the file is run by a test above, and the odd sizes are there. */
Test(red_ref, every_case_is_run) {
    static const char *const ops[] = {"prod", "max", "min", "max_dim", "min_dim", "max_dim_idx", "min_dim_idx",
                                      "argmax", "argmin", "argmax_all", "argmin_all", "var", "std",
                                      "logsumexp", "norm"};
    tu_ref_set *s = tu_ref_load_all_from("ref_reduce.txt");
    cr_assert(s != NULL);
    bool sizes[4] = {false, false, false, false};
    const int64_t want[4] = {1, 7, 33, 1023};
    for (int i = 0; i < s->n; i++) {
        bool known = false;
        for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) known |= !strcmp(s->cases[i].op, ops[k]);
        cr_expect(known, "case %s: op %s has no test", s->cases[i].name, s->cases[i].op);
        const nb_dims *sh = &s->cases[i].in[0].shape;
        for (int d = 0; d < sh->ndim; d++)
            for (int k = 0; k < 4; k++) sizes[k] |= sh->d[d] == want[k];
    }
    for (int k = 0; k < 4; k++) cr_expect(sizes[k], "no case with a dim of size %lld", (long long)want[k]);
    tu_ref_free_set(s);
}

/* ---- gradient checks in F64 ---- */

typedef struct red_gop {
    const char *op;        /* as in the data file */
    int dims[NB_MAX_DIMS]; /* reduced dims (dims[0] is the dim of max_dim) */
    int ndims;             /* 0: all */
    bool keepdim;
    double param;          /* correction or p */
} red_gop;

static nb_tensor *red_g_fn(nb_tensor *const *x, int n, void *u) {
    (void)n;
    const red_gop *g = u;
    const int *d = g->ndims ? g->dims : NULL;
    if (!strcmp(g->op, "prod")) return nb_prod(x[0], d, g->ndims, g->keepdim);
    if (!strcmp(g->op, "max")) return nb_max(x[0], d, g->ndims, g->keepdim);
    if (!strcmp(g->op, "min")) return nb_min(x[0], d, g->ndims, g->keepdim);
    if (!strcmp(g->op, "var")) return nb_var(x[0], d, g->ndims, g->param, g->keepdim);
    if (!strcmp(g->op, "std")) return nb_std(x[0], d, g->ndims, g->param, g->keepdim);
    if (!strcmp(g->op, "logsumexp")) return nb_logsumexp(x[0], d, g->ndims, g->keepdim);
    if (!strcmp(g->op, "norm")) return nb_norm(x[0], g->param, d, g->ndims, g->keepdim);
    if (!strcmp(g->op, "max_dim")) return nb_max_dim(x[0], g->dims[0], g->keepdim, NULL);
    if (!strcmp(g->op, "min_dim")) return nb_min_dim(x[0], g->dims[0], g->keepdim, NULL);
    /* a smooth function after the reduction, so second derivatives are not trivially 0 */
    if (!strcmp(g->op, "norm_sq")) {
        nb_tensor *r = nb_norm(x[0], g->param, d, g->ndims, g->keepdim);
        return nb_mul(r, r);
    }
    return NULL;
}

static uint64_t red_seed = 777;

/* An F64 leaf of `shape` laid out as `layout`; kind 0: N(0,1), 1: |x| in
 * [0.5, 1.5) with random signs, 2: as 1 with zeros at the flat indices z[]
 * (nz of them). */
static nb_tensor *red_leaf(nb_dims shape, char layout, int kind, const int64_t *z, int nz) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    nb_tensor *r = nb_randn(nb_dims_of(1, &n), NB_F64, red_seed++);
    cr_assert(r != NULL);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert(v != NULL);
    cr_assert_eq(nb_copy_to(r, v, sizeof(double) * (size_t)n), 0);
    if (kind >= 1)
        for (int64_t i = 0; i < n; i++) v[i] = (v[i] < 0 ? -1 : 1) * (0.5 + fmod(fabs(v[i]), 1.0));
    for (int i = 0; i < nz; i++) v[z[i]] = 0;
    nb_tensor *t = tu_make_layout(shape, NB_F64, v, layout);
    free(v);
    cr_assert(t != NULL, "%s", nb_last_error());
    cr_assert_eq(nb_set_requires_grad(t, true), 0);
    return t;
}

static void red_gcheck(const char *what, red_gop *g, nb_tensor *x, bool gg) {
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    nb_gradcheck_opts o = {.user = g};
    int rc = nb_gradcheck(red_g_fn, &x, 1, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradcheck: %s (out %lld, in %lld: analytic %.10g numeric %.10g)", what,
                 nb_last_error(), (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
    if (!gg) return;
    memset(&r, 0, sizeof r);
    rc = nb_gradgradcheck(red_g_fn, &x, 1, &o, &r);
    cr_expect_eq(rc, 0, "%s: gradgradcheck: %s (out %lld, in %lld: analytic %.10g numeric %.10g)", what,
                 nb_last_error(), (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
}

typedef struct red_gcase {
    nb_dims shape;
    char layout;
    int dims[3];
    int ndims;
    bool keepdim;
} red_gcase;

/* The shapes checked (NB_SHAPE is a compound literal, so the list is a macro
 * for a local array). */
#define RED_GCASES                                                                                  \
    {                                                                                               \
        {NB_SHAPE(7), 'c', {0}, 1, false}, {NB_SHAPE(1), 'c', {0}, 1, true},                        \
        {NB_SHAPE(3, 5), 'c', {1}, 1, true}, {NB_SHAPE(3, 5), 'c', {-2}, 1, false},                 \
        {NB_SHAPE(2, 3, 4), 'c', {0, 2}, 2, false}, {NB_SHAPE(2, 3, 4), 'c', {0}, 0, false},        \
        {NB_SHAPE(4, 5), 't', {0}, 1, false}, {NB_SHAPE(3, 7), 's', {-1}, 1, true},                 \
        {NB_SHAPE(3, 4, 2), 't', {1, 2}, 2, false}, {NB_SHAPE0, 'c', {0}, 0, false},                \
    }
#define RED_NG 10

/* gradcheck (and gradgradcheck when gg) of op on every case above. */
static void red_grad_all(const char *op, int kind, double param, bool gg) {
    const red_gcase red_gcases[RED_NG] = RED_GCASES;
    for (int i = 0; i < RED_NG; i++) {
        const red_gcase *c = &red_gcases[i];
        int64_t count = 1;   /* elements per slice */
        for (int d = 0; d < c->shape.ndim; d++) {
            bool red = c->ndims == 0;
            for (int k = 0; k < c->ndims; k++) red |= (c->dims[k] + c->shape.ndim) % c->shape.ndim == d;
            if (red) count *= c->shape.d[d];
        }
        if (count == 1 && (!strcmp(op, "var") || !strcmp(op, "std")))
            continue;   /* NaN or a zero std: not differentiable (checked against PyTorch in red_ref) */
        red_gop g = {.op = op, .ndims = c->ndims, .keepdim = c->keepdim, .param = param};
        memcpy(g.dims, c->dims, sizeof c->dims);
        char what[96];
        snprintf(what, sizeof what, "%s(p %g) case %d (layout %c)", op, param, i, c->layout);
        nb_scope_begin();
        red_gcheck(what, &g, red_leaf(c->shape, c->layout, kind, NULL, 0), gg);
        nb_scope_end();
    }
}

Test(red_grad, prod) { red_grad_all("prod", 1, 0, true); }
Test(red_grad, max) { red_grad_all("max", 0, 0, false); }
Test(red_grad, min) { red_grad_all("min", 0, 0, false); }
Test(red_grad, var) {
    red_grad_all("var", 0, 1, true);
    red_grad_all("var", 0, 0, true);
}
Test(red_grad, std) {
    red_grad_all("std", 0, 1, true);
    red_grad_all("std", 0, 0, true);
}
Test(red_grad, logsumexp) { red_grad_all("logsumexp", 0, 0, true); }
Test(red_grad, norm) {
    red_grad_all("norm", 1, 1, true);
    red_grad_all("norm", 0, 2, true);
    red_grad_all("norm", 0, INFINITY, true);
    red_grad_all("norm_sq", 1, 1, true);
    red_grad_all("norm_sq", 0, INFINITY, true);
}

/* max_dim / min_dim along each dim (0-dim included). */
Test(red_grad, max_min_dim) {
    const char *ops[2] = {"max_dim", "min_dim"};
    const red_gcase red_gcases[RED_NG] = RED_GCASES;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < RED_NG; i++) {
            const red_gcase *c = &red_gcases[i];
            if (c->ndims > 1) continue;
            red_gop g = {.op = ops[k], .dims = {c->dims[0]}, .keepdim = c->keepdim};
            char what[64];
            snprintf(what, sizeof what, "%s case %d", ops[k], i);
            nb_scope_begin();
            red_gcheck(what, &g, red_leaf(c->shape, c->layout, 0, NULL, 0), false);
            nb_scope_end();
        }
}

/* prod with one zero, and with several zeros in a slice: the gradient is the
 * product of the others (non-zero only at a lone zero), second derivative
 * too. */
Test(red_grad, prod_zeros) {
    const int64_t one[1] = {3}, two[2] = {1, 5}, three[3] = {0, 4, 9}, mixed[3] = {2, 7, 8};
    struct {
        nb_dims shape;
        char layout;
        const int64_t *z;
        int nz;
        int dim;   /* -9: all */
    } cs[] = {
        {NB_SHAPE(7), 'c', one, 1, 0},       {NB_SHAPE(7), 'c', two, 2, 0},
        {NB_SHAPE(2, 5), 'c', two, 2, 1},    {NB_SHAPE(2, 5), 'c', three, 3, -9},
        {NB_SHAPE(3, 4), 't', mixed, 3, 0},  {NB_SHAPE(3, 4), 's', mixed, 3, 1},
        {NB_SHAPE(2, 5), 'c', one, 1, -9},   {NB_SHAPE(2, 3, 2), 'c', two, 2, -9},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        red_gop g = {.op = "prod", .dims = {cs[i].dim}, .ndims = cs[i].dim == -9 ? 0 : 1};
        char what[64];
        snprintf(what, sizeof what, "prod with zeros, case %zu", i);
        nb_scope_begin();
        red_gcheck(what, &g, red_leaf(cs[i].shape, cs[i].layout, 2, cs[i].z, cs[i].nz), true);
        nb_scope_end();
    }
}

/* A third derivative through prod is refused with a clear error. */
Test(red_grad, prod_third_order_refused) {
    nb_scope_begin();
    nb_tensor *x = red_leaf(NB_SHAPE(4), 'c', 1, NULL, 0);
    nb_tensor *y = nb_prod(x, NULL, 0, false), *g1 = NULL, *g2 = NULL, *g3 = NULL;
    nb_grad_opts cg = {.create_graph = true, .retain_graph = true};
    cr_assert_eq(nb_autograd_grad(&y, 1, &x, 1, NULL, &cg, &g1), 0, "%s", nb_last_error());
    nb_tensor *s1 = nb_sum_all(g1);
    cr_assert_eq(nb_autograd_grad(&s1, 1, &x, 1, NULL, &cg, &g2), 0, "%s", nb_last_error());
    nb_tensor *s2 = nb_sum_all(nb_mul(g2, g2));
    int rc = nb_autograd_grad(&s2, 1, &x, 1, NULL, &cg, &g3);
    cr_expect_eq(rc, NB_ENOTSUP, "third derivative: %s", nb_last_error());
    cr_expect(strstr(nb_last_error(), "nb_prod") != NULL, "%s", nb_last_error());
    nb_scope_end();
}

/* ---- bad inputs: NULL and an error naming the op and the shape ---- */

static uint64_t red_live;

#define RED_BAD_BEGIN()                                  \
    do {                                                 \
        red_live = nb_memory_stats().live_tensors;       \
        nb_clear_error();                                \
        nb_scope_begin();                                \
    } while (0)
#define RED_BAD_END()                                                                         \
    do {                                                                                      \
        nb_scope_end();                                                                       \
        cr_expect_eq(nb_memory_stats().live_tensors, red_live, "tensors leaked by a failure"); \
    } while (0)

/* r must be NULL, the error `code`, the message containing each string. */
static void red_expect_err(const nb_tensor *r, int code, const char *s1, const char *s2, const char *s3) {
    const char *m = nb_last_error();
    cr_expect(r == NULL, "expected a failure (%s %s)", s1, s2);
    cr_expect_eq(nb_last_error_code(), code, "error %s, expected %s: \"%s\"", nb_error_name(nb_last_error_code()),
                 nb_error_name(code), m);
    const char *want[3] = {s1, s2, s3};
    for (int i = 0; i < 3; i++)
        if (want[i]) cr_expect(strstr(m, want[i]) != NULL, "message \"%s\" lacks \"%s\"", m, want[i]);
    nb_clear_error();
}

Test(red_bad, dim_out_of_range) {
    RED_BAD_BEGIN();
    nb_tensor *a = nb_zeros(NB_SHAPE(2, 3), NB_F32), *idx = a;
    int d2[1] = {2}, dm3[1] = {-3};
    red_expect_err(nb_prod(a, d2, 1, false), NB_ERANGE, "nb_prod", "[2, 3]", "dim 2");
    red_expect_err(nb_max(a, dm3, 1, true), NB_ERANGE, "nb_max", "[2, 3]", "dim -3");
    red_expect_err(nb_min(a, d2, 1, false), NB_ERANGE, "nb_min", "[2, 3]", NULL);
    red_expect_err(nb_var(a, d2, 1, 1, false), NB_ERANGE, "nb_var", "[2, 3]", NULL);
    red_expect_err(nb_std(a, dm3, 1, 1, false), NB_ERANGE, "nb_std", "[2, 3]", NULL);
    red_expect_err(nb_logsumexp(a, d2, 1, false), NB_ERANGE, "nb_logsumexp", "[2, 3]", NULL);
    red_expect_err(nb_norm(a, 2, d2, 1, false), NB_ERANGE, "nb_norm", "[2, 3]", NULL);
    red_expect_err(nb_argmax(a, 5, false), NB_ERANGE, "nb_argmax", "[2, 3]", "dim 5");
    red_expect_err(nb_argmin(a, -4, false), NB_ERANGE, "nb_argmin", "[2, 3]", NULL);
    red_expect_err(nb_max_dim(a, 2, false, &idx), NB_ERANGE, "nb_max_dim", "[2, 3]", NULL);
    cr_expect(idx == NULL, "indices must be NULL on failure");
    red_expect_err(nb_min_dim(nb_scalar(1.0), 1, false, NULL), NB_ERANGE, "nb_min_dim", "[]", NULL);
    RED_BAD_END();
}

Test(red_bad, repeated_dim) {
    RED_BAD_BEGIN();
    nb_tensor *a = nb_ones(NB_SHAPE(2, 3, 4), NB_F64);
    int rep[2] = {1, -2}, rep2[3] = {0, 2, 0};
    red_expect_err(nb_prod(a, rep, 2, false), NB_EINVAL, "nb_prod", "[2, 3, 4]", "more than once");
    red_expect_err(nb_max(a, rep2, 3, false), NB_EINVAL, "nb_max", "[2, 3, 4]", "more than once");
    red_expect_err(nb_var(a, rep, 2, 0, false), NB_EINVAL, "nb_var", "[2, 3, 4]", NULL);
    red_expect_err(nb_logsumexp(a, rep, 2, true), NB_EINVAL, "nb_logsumexp", "[2, 3, 4]", NULL);
    red_expect_err(nb_norm(a, 1, rep2, 3, true), NB_EINVAL, "nb_norm", "[2, 3, 4]", NULL);
    /* dims NULL with ndims > 0 */
    red_expect_err(nb_min(a, NULL, 2, false), NB_EINVAL, "nb_min", "[2, 3, 4]", NULL);
    RED_BAD_END();
}

Test(red_bad, null_input) {
    RED_BAD_BEGIN();
    nb_tensor *idx = (nb_tensor *)1;
    red_expect_err(nb_prod(NULL, NULL, 0, false), NB_ENULLARG, "nb_prod", NULL, NULL);
    red_expect_err(nb_max(NULL, NULL, 0, false), NB_ENULLARG, "nb_max", NULL, NULL);
    red_expect_err(nb_min(NULL, NULL, 0, false), NB_ENULLARG, "nb_min", NULL, NULL);
    red_expect_err(nb_max_dim(NULL, 0, false, &idx), NB_ENULLARG, "nb_max_dim", NULL, NULL);
    cr_expect(idx == NULL);
    red_expect_err(nb_min_dim(NULL, 0, false, NULL), NB_ENULLARG, "nb_min_dim", NULL, NULL);
    red_expect_err(nb_argmax(NULL, 0, false), NB_ENULLARG, "nb_argmax", NULL, NULL);
    red_expect_err(nb_argmin_all(NULL), NB_ENULLARG, "nb_argmin_all", NULL, NULL);
    red_expect_err(nb_var(NULL, NULL, 0, 1, false), NB_ENULLARG, "nb_var", NULL, NULL);
    red_expect_err(nb_std(NULL, NULL, 0, 1, false), NB_ENULLARG, "nb_std", NULL, NULL);
    red_expect_err(nb_logsumexp(NULL, NULL, 0, false), NB_ENULLARG, "nb_logsumexp", NULL, NULL);
    red_expect_err(nb_norm(NULL, 2, NULL, 0, false), NB_ENULLARG, "nb_norm", NULL, NULL);
    /* a failure earlier in a chain keeps its own message */
    int bad[1] = {7};
    red_expect_err(nb_norm(nb_var(nb_ones(NB_SHAPE(3), NB_F32), bad, 1, 1, false), 2, NULL, 0, false), NB_ERANGE,
                   "nb_var", "[3]", NULL);
    RED_BAD_END();
}

Test(red_bad, wrong_dtype) {
    RED_BAD_BEGIN();
    nb_tensor *i = nb_ones(NB_SHAPE(2, 3), NB_I64), *b = nb_ones(NB_SHAPE(4), NB_BOOL);
    red_expect_err(nb_var(i, NULL, 0, 1, false), NB_EDTYPE, "nb_var", "i64", "[2, 3]");
    red_expect_err(nb_std(i, NULL, 0, 1, false), NB_EDTYPE, "nb_std", "i64", "[2, 3]");
    red_expect_err(nb_logsumexp(i, NULL, 0, false), NB_EDTYPE, "nb_logsumexp", "i64", "[2, 3]");
    red_expect_err(nb_norm(i, 2, NULL, 0, false), NB_EDTYPE, "nb_norm", "i64", "[2, 3]");
    red_expect_err(nb_prod(b, NULL, 0, false), NB_EDTYPE, "nb_prod", "bool", "[4]");
    red_expect_err(nb_max(b, NULL, 0, false), NB_EDTYPE, "nb_max", "bool", "[4]");
    red_expect_err(nb_argmax_all(b), NB_EDTYPE, "nb_argmax_all", "bool", "[4]");
    RED_BAD_END();
}

Test(red_bad, empty_and_bad_params) {
    RED_BAD_BEGIN();
    nb_tensor *e = nb_zeros(NB_SHAPE(0, 3), NB_F32), *x = nb_ones(NB_SHAPE(2, 3), NB_F32);
    int d0[1] = {0};
    red_expect_err(nb_max(e, d0, 1, false), NB_EINVAL, "nb_max", "[0, 3]", "size 0");
    red_expect_err(nb_min(e, NULL, 0, false), NB_EINVAL, "nb_min", "[0, 3]", NULL);
    red_expect_err(nb_max_dim(e, 0, true, NULL), NB_EINVAL, "nb_max_dim", "[0, 3]", NULL);
    red_expect_err(nb_argmax(e, 0, false), NB_EINVAL, "nb_argmax", "[0, 3]", NULL);
    red_expect_err(nb_argmin_all(e), NB_EINVAL, "nb_argmin_all", "[0, 3]", NULL);
    red_expect_err(nb_norm(e, INFINITY, d0, 1, false), NB_EINVAL, "nb_norm", "[0, 3]", NULL);
    red_expect_err(nb_norm(x, 3, NULL, 0, false), NB_EINVAL, "nb_norm", "p = 3", "[2, 3]");
    red_expect_err(nb_norm(x, -INFINITY, NULL, 0, false), NB_EINVAL, "nb_norm", NULL, NULL);
    red_expect_err(nb_var(x, NULL, 0, NAN, false), NB_EINVAL, "nb_var", "[2, 3]", NULL);
    RED_BAD_END();
}

/* ---- misc ---- */

static void red_expect_vals(nb_tensor *t, const double *want, int64_t n, const char *what) {
    cr_assert(t != NULL, "%s: %s", what, nb_last_error());
    cr_assert_eq(nb_numel(t), n, "%s: %lld elements", what, (long long)nb_numel(t));
    nb_tensor *c = nb_contiguous(nb_to_dtype(t, NB_F64));
    const double *v = nb_data(c);
    for (int64_t i = 0; i < n; i++)
        cr_expect(v[i] == want[i] || (isnan(v[i]) && isnan(want[i])), "%s[%lld]: %g, expected %g", what,
                  (long long)i, v[i], want[i]);
}

/* Empty reductions give PyTorch's identities; over a kept empty dim the
 * result is empty. */
Test(red_misc, empty) {
    nb_scope_begin();
    nb_tensor *e = nb_zeros(NB_SHAPE(0, 3), NB_F64);
    int d0[1] = {0}, d1[1] = {1};
    const double one3[3] = {1, 1, 1}, zero3[3] = {0, 0, 0}, ninf3[3] = {-INFINITY, -INFINITY, -INFINITY},
                 nan3[3] = {NAN, NAN, NAN};
    red_expect_vals(nb_prod(e, d0, 1, false), one3, 3, "prod");
    red_expect_vals(nb_logsumexp(e, d0, 1, false), ninf3, 3, "logsumexp");
    red_expect_vals(nb_norm(e, 2, d0, 1, false), zero3, 3, "norm 2");
    red_expect_vals(nb_norm(e, 1, d0, 1, false), zero3, 3, "norm 1");
    red_expect_vals(nb_var(e, d0, 1, 1, false), nan3, 3, "var");
    nb_tensor *m = nb_max(e, d1, 1, false), *idx = NULL;
    cr_expect(m != NULL && nb_numel(m) == 0 && nb_ndim(m) == 1, "max over a non-empty dim of [0, 3]");
    m = nb_max_dim(e, 1, true, &idx);
    cr_expect(m && idx && nb_numel(idx) == 0 && nb_shape(idx)[1] == 1);
    red_expect_vals(nb_norm(e, INFINITY, d1, 1, false), NULL, 0, "norm inf over a non-empty dim");
    const double one[1] = {1};
    red_expect_vals(nb_prod(e, NULL, 0, false), one, 1, "prod of all");
    nb_scope_end();
}

/* i64: exact beyond 2^53 (a double would see ties), prod wraps, indices i64. */
Test(red_misc, int64_exact) {
    nb_scope_begin();
    const int64_t big = (int64_t)1 << 62;
    int64_t v[6] = {big + 1, big + 3, big + 2, -big - 5, -big - 7, -big - 6};
    nb_tensor *a = nb_from_data(NB_SHAPE(2, 3), NB_I64, v);
    int d1[1] = {1};
    nb_tensor *mx = nb_max(a, d1, 1, false), *mn = nb_min(a, d1, 1, false), *idx = NULL;
    cr_assert(mx && mn, "%s", nb_last_error());
    cr_expect_eq(nb_dtype(mx), NB_I64);
    const int64_t *pm = nb_data(nb_contiguous(mx)), *pn = nb_data(nb_contiguous(mn));
    cr_expect(pm[0] == big + 3 && pm[1] == -big - 5, "max %lld %lld", (long long)pm[0], (long long)pm[1]);
    cr_expect(pn[0] == big + 1 && pn[1] == -big - 7, "min %lld %lld", (long long)pn[0], (long long)pn[1]);
    nb_tensor *am = nb_argmax(a, 1, false);
    const int64_t *pa = nb_data(nb_contiguous(am));
    cr_expect(pa[0] == 1 && pa[1] == 0, "argmax %lld %lld", (long long)pa[0], (long long)pa[1]);
    nb_tensor *vals = nb_min_dim(a, 1, true, &idx);
    cr_assert(vals && idx);
    const int64_t *pi = nb_data(nb_contiguous(idx));
    cr_expect(pi[0] == 0 && pi[1] == 1 && nb_ndim(idx) == 2, "min_dim indices %lld %lld", (long long)pi[0],
              (long long)pi[1]);
    cr_expect_eq(*(const int64_t *)nb_data(nb_argmin_all(a)), 4);
    int64_t pv[4] = {2, 3, 4, -5};
    nb_tensor *p = nb_prod(nb_from_data(NB_SHAPE(4), NB_I64, pv), NULL, 0, false);
    cr_assert(p != NULL, "%s", nb_last_error());
    cr_expect_eq(nb_dtype(p), NB_I64);
    cr_expect_eq(*(const int64_t *)nb_data(p), -120);
    int64_t ov[2] = {big, 4};   /* 2^64 wraps to 0 */
    cr_expect_eq(*(const int64_t *)nb_data(nb_prod(nb_from_data(NB_SHAPE(2), NB_I64, ov), NULL, 0, false)), 0);
    nb_scope_end();
}

/* Ties: amax splits the gradient evenly, max_dim gives it to the first. */
Test(red_misc, ties_gradient) {
    nb_scope_begin();
    const double v[4] = {3, 1, 3, 3};
    nb_tensor *x = tu_tensor(NB_SHAPE(4), NB_F64, v);
    nb_set_requires_grad(x, true);
    cr_assert_eq(nb_backward(nb_max(x, NULL, 0, false), NULL), 0, "%s", nb_last_error());
    const double third[4] = {1.0 / 3, 0, 1.0 / 3, 1.0 / 3}, first[4] = {1, 0, 0, 0};
    red_expect_vals(nb_grad(x), third, 4, "amax gradient");
    nb_zero_grad(x);
    nb_tensor *idx;
    cr_assert_eq(nb_backward(nb_max_dim(x, 0, false, &idx), NULL), 0, "%s", nb_last_error());
    red_expect_vals(nb_grad(x), first, 4, "max_dim gradient");
    /* with a NaN: amax's gradient is NaN over the slice, max_dim's goes to the NaN (PyTorch's) */
    const double vn[4] = {1, NAN, 3, NAN}, nan4[4] = {NAN, NAN, NAN, NAN}, at1[4] = {0, 1, 0, 0};
    nb_tensor *xn = tu_tensor(NB_SHAPE(4), NB_F64, vn);
    nb_set_requires_grad(xn, true);
    cr_assert_eq(nb_backward(nb_max(xn, NULL, 0, false), NULL), 0, "%s", nb_last_error());
    red_expect_vals(nb_grad(xn), nan4, 4, "amax gradient with NaN");
    nb_zero_grad(xn);
    cr_assert_eq(nb_backward(nb_max_dim(xn, 0, false, &idx), NULL), 0, "%s", nb_last_error());
    red_expect_vals(nb_grad(xn), at1, 4, "max_dim gradient with NaN");
    nb_scope_end();
}

/* The ops are in the registry with ref kernels for f32 and f64 (and i64
 * where integers make sense), and named by the dump. */
Test(red_misc, registry_entries) {
    const nb_op ops[] = {NB_OP_PROD, NB_OP_AMAX, NB_OP_AMIN, NB_OP_ARGMAX, NB_OP_ARGMIN, NB_OP_VAR, NB_OP_STD,
                         NB_OP_LOGSUMEXP, NB_OP_VECTOR_NORM, NB_OP_PROD_BACKWARD, NB_OP_PROD_DOUBLE_BACKWARD,
                         NB_OP_AMAX_BACKWARD, NB_OP_MAX_DIM_BACKWARD, NB_OP_VECTOR_NORM_BACKWARD};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        cr_expect(nb_kernel_chosen(ops[i], NB_F32) != NULL, "%s f32", nb_op_name(ops[i]));
        cr_expect(nb_kernel_chosen(ops[i], NB_F64) != NULL, "%s f64", nb_op_name(ops[i]));
    }
    for (size_t i = 0; i < 5; i++) cr_expect(nb_kernel_chosen(ops[i], NB_I64) != NULL, "%s i64", nb_op_name(ops[i]));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f != NULL);
    nb_registry_dump(f);
    fclose(f);
    const char *names[] = {"prod", "amax", "argmin", "var", "std", "logsumexp", "vector_norm", "max_dim_backward"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect(strstr(buf, names[i]) != NULL, "dump lacks %s", names[i]);
    free(buf);
}

/* A forward and backward through every op inside a scope leaves nothing
 * behind, also with create_graph. */
Test(red_misc, no_leaks) {
    uint64_t live = nb_memory_stats().live_tensors;
    for (int cg = 0; cg < 2; cg++) {
        nb_scope_begin();
        nb_tensor *x = red_leaf(NB_SHAPE(3, 5), 't', 1, NULL, 0);
        int d1[1] = {1};
        nb_tensor *idx;
        nb_tensor *y = nb_add(nb_sum_all(nb_prod(x, d1, 1, false)), nb_sum_all(nb_max(x, NULL, 0, true)));
        y = nb_add(y, nb_sum_all(nb_std(x, d1, 1, 1, false)));
        y = nb_add(y, nb_sum_all(nb_logsumexp(x, NULL, 0, false)));
        y = nb_add(y, nb_sum_all(nb_norm(x, 2, d1, 1, true)));
        y = nb_add(y, nb_sum_all(nb_norm(x, INFINITY, d1, 1, true)));
        y = nb_add(y, nb_sum_all(nb_min_dim(x, 0, false, &idx)));
        nb_backward_opts o = {.create_graph = cg != 0};
        cr_assert_eq(nb_backward_ex(y, NULL, &o), 0, "%s", nb_last_error());
        nb_zero_grad(x);
        nb_scope_end();
    }
    cr_expect_eq(nb_memory_stats().live_tensors, live, "tensors leaked");
}
