/* test_norm.c — batch_norm, layer_norm, group_norm, rms_norm and
 * scaled_dot_product_attention.
 *
 * norm_ref:   every case of tests/data/ref_norm.txt (gen_ref_norm.py, which
 *             lists the ops and their inputs) in F64 and F32: forward values
 *             and the gradients of sum(out * W) against PyTorch, on odd sizes
 *             (1, 7, 33, 1023 along the normalized dim), transposed and
 *             strided inputs, broadcasting masks and batch dims; running-stat
 *             updates after three training steps.
 * norm_grad:  gradcheck and gradgradcheck in F64 of every op and mode, and
 *             the plain (fused kernel) and create_graph (public ops) backward
 *             paths giving the same gradients.
 * norm_misc:  defaults (eps, momentum), eval vs training running stats,
 *             fully masked attention rows, registry entries, no leaks.
 * norm_bad:   bad inputs: NULL, message, code, nothing left alive.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void nm_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}

TestSuite(norm_ref, .init = nm_setup);
TestSuite(norm_grad, .init = nm_setup);
TestSuite(norm_misc, .init = nm_setup);

/* ---- reference cases ---- */

static double nm_argd(const tu_ref_case *c, const char *key, double dflt) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    return a && a->n == 1 ? a->v[0] : dflt;
}

/* Row r of a (2, C) tensor, as a view. */
static nb_tensor *nm_row(nb_tensor *t, int64_t r) { return nb_squeeze(nb_slice(t, 0, r, r + 1, 1), 0); }

/* Runs case c's op on its inputs x. */
static nb_tensor *nm_run(const tu_ref_case *c, nb_tensor **x) {
    bool affine = nm_argd(c, "affine", 1) != 0;
    double eps = nm_argd(c, "eps", 0);
    nb_norm_opts o = {.eps = eps};
    const nb_norm_opts *op = eps != 0 ? &o : NULL;   /* absent: the defaults, through NULL */
    if (!strcmp(c->op, "layer_norm") || !strcmp(c->op, "rms_norm")) {
        const tu_ref_arg *s = tu_ref_arg_get(c, "shape");
        cr_assert(s != NULL, "case %s: no shape", c->name);
        int64_t d[NB_MAX_DIMS];
        for (int i = 0; i < s->n; i++) d[i] = (int64_t)s->v[i];
        nb_dims ns = nb_dims_of(s->n, d);
        if (c->op[0] == 'l') return nb_layer_norm(x[0], ns, affine ? x[1] : NULL, affine ? x[2] : NULL, op);
        return nb_rms_norm(x[0], ns, affine ? x[1] : NULL, op);
    }
    if (!strcmp(c->op, "group_norm"))
        return nb_group_norm(x[0], (int64_t)nm_argd(c, "groups", 1), affine ? x[1] : NULL, affine ? x[2] : NULL, op);
    if (!strcmp(c->op, "batch_norm_train")) {
        nb_batch_norm_opts bo = {.training = true, .eps = eps};
        return nb_batch_norm(x[0], NULL, NULL, affine ? nm_row(x[1], 0) : NULL, affine ? nm_row(x[1], 1) : NULL, &bo);
    }
    if (!strcmp(c->op, "batch_norm_eval"))
        return nb_batch_norm(x[0], nm_row(x[1], 0), nm_row(x[1], 1), nm_row(x[2], 0), nm_row(x[2], 1), NULL);
    if (!strcmp(c->op, "sdpa")) {
        const tu_ref_arg *m = tu_ref_arg_get(c, "mask");
        bool has_mask = m && strcmp(m->word, "none") != 0;
        nb_sdpa_opts so = {.is_causal = nm_argd(c, "causal", 0) != 0, .scale = nm_argd(c, "scale", 0)};
        return nb_scaled_dot_product_attention(x[0], x[1], x[2], has_mask ? x[3] : NULL, &so);
    }
    cr_assert_fail("case %s: unknown op %s", c->name, c->op);
    return NULL;
}

/* Three training steps from the case's running stats; compares the final
 * (running_mean; running_var) with PyTorch's. */
static void nm_steps(const tu_ref_case *c, nb_dtype dt, double tol) {
    nb_tensor *x[4];
    for (int i = 0; i < 4; i++) x[i] = tu_ref_make(&c->in[i], dt);
    int64_t C = c->in[3].shape.d[1];
    nb_tensor *rm = nb_clone(nm_row(x[3], 0)), *rv = nb_clone(nm_row(x[3], 1));
    uint64_t v0 = nb_version(rm);
    nb_batch_norm_opts bo = {.training = true, .momentum = nm_argd(c, "momentum", 0)};
    for (int s = 0; s < 3; s++)
        cr_assert(nb_batch_norm(x[s], rm, rv, NULL, NULL, &bo) != NULL, "case %s step %d: %s", c->name, s,
                  nb_last_error());
    cr_expect_gt(nb_version(rm), v0, "case %s: running_mean's version was not bumped", c->name);
    char msg[512];
    cr_expect(tu_check_close(rm, NB_SHAPE(C), c->out.vals, tol, tol, msg, sizeof msg), "case %s %s running_mean: %s",
              c->name, nb_dtype_name(dt), msg);
    cr_expect(tu_check_close(rv, NB_SHAPE(C), c->out.vals + C, tol, tol, msg, sizeof msg),
              "case %s %s running_var: %s", c->name, nb_dtype_name(dt), msg);
}

/* Forward and gradients of one case in dtype dt. */
static void nm_check_case(const tu_ref_case *c, nb_dtype dt) {
    double tol = dt == NB_F64 ? 1e-9 : 2e-4, gtol = dt == NB_F64 ? 1e-9 : 2e-3;
    nb_scope_begin();
    if (!strcmp(c->op, "batch_norm_steps")) {
        nm_steps(c, dt, tol);
        nb_scope_end();
        return;
    }
    const tu_ref_arg *m = tu_ref_arg_get(c, "mask");
    bool bool_mask = m && !strcmp(m->word, "bool");
    nb_tensor *x[TU_REF_MAX_IN] = {0};
    bool wants[TU_REF_MAX_IN] = {0};
    for (int i = 0; i < c->n_in; i++) {
        bool is_mask = bool_mask && i == 3, is_stats = !strcmp(c->op, "batch_norm_eval") && i == 1;
        x[i] = tu_ref_make(&c->in[i], is_mask ? NB_BOOL : dt);
        cr_assert(x[i] != NULL, "case %s input %d: %s", c->name, i, nb_last_error());
        wants[i] = !is_mask && !is_stats;
        if (wants[i]) cr_assert_eq(nb_set_requires_grad(x[i], true), 0, "%s", nb_last_error());
    }
    nb_tensor *out = nm_run(c, x);
    char msg[512];
    cr_assert(tu_check_close(out, c->out.shape, c->out.vals, tol, tol, msg, sizeof msg), "case %s %s forward: %s",
              c->name, nb_dtype_name(dt), msg);
    cr_assert_eq(nb_backward(out, tu_ref_make(&c->w, dt)), 0, "case %s: backward: %s", c->name, nb_last_error());
    for (int i = 0; i < c->n_in; i++) {
        if (!wants[i]) continue;
        cr_expect(tu_check_close(nb_grad(x[i]), c->grad[i].shape, c->grad[i].vals, gtol, gtol, msg, sizeof msg),
                  "case %s %s grad %d: %s", c->name, nb_dtype_name(dt), i, msg);
    }
    nb_scope_end();
}

/* Runs every case of `op` (prefix match when prefix) in F64 and F32. */
static void nm_check_op(const char *op, bool prefix) {
    tu_ref_set *s = tu_ref_load_all_from("ref_norm.txt");
    cr_assert(s != NULL, "cannot load ref_norm.txt");
    int n = 0;
    for (int i = 0; i < s->n; i++) {
        const tu_ref_case *c = &s->cases[i];
        if (prefix ? strncmp(c->op, op, strlen(op)) != 0 : strcmp(c->op, op) != 0) continue;
        nm_check_case(c, NB_F64);
        nm_check_case(c, NB_F32);
        n++;
    }
    tu_ref_free_set(s);
    cr_assert_gt(n, 0, "no cases for %s", op);
}

Test(norm_ref, layer_norm) { nm_check_op("layer_norm", false); }
Test(norm_ref, rms_norm) { nm_check_op("rms_norm", false); }
Test(norm_ref, group_norm) { nm_check_op("group_norm", false); }
Test(norm_ref, batch_norm) { nm_check_op("batch_norm", true); }
Test(norm_ref, sdpa) { nm_check_op("sdpa", false); }

Test(norm_ref, every_case_known) {
    static const char *known[] = {"layer_norm", "rms_norm", "group_norm", "batch_norm_train",
                                  "batch_norm_eval", "batch_norm_steps", "sdpa"};
    tu_ref_set *s = tu_ref_load_all_from("ref_norm.txt");
    cr_assert(s != NULL);
    for (int i = 0; i < s->n; i++) {
        bool found = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) found |= !strcmp(s->cases[i].op, known[k]);
        cr_expect(found, "case %s: op %s is not tested", s->cases[i].name, s->cases[i].op);
    }
    tu_ref_free_set(s);
}

/* ---- gradcheck / gradgradcheck ---- */

enum { NG_LN, NG_RMS, NG_GN, NG_BN, NG_SDPA };

typedef struct ng_op {
    int op;              /* NG_* */
    nb_dims ns;          /* layer/rms normalized_shape */
    int64_t groups;      /* group_norm */
    bool training;       /* batch_norm */
    nb_tensor *rm, *rv;  /* batch_norm running stats, or NULL */
    nb_tensor *mask;     /* sdpa: bool mask (not an input), or NULL; a float mask is input 3 */
    bool causal;         /* sdpa */
    double scale;        /* sdpa, 0: default */
} ng_op;

static nb_tensor *ng_fn(nb_tensor *const *x, int n, void *u) {
    const ng_op *o = u;
    nb_tensor *a1 = n > 1 ? x[1] : NULL, *a2 = n > 2 ? x[2] : NULL;
    switch (o->op) {
    case NG_LN: return nb_layer_norm(x[0], o->ns, a1, a2, NULL);
    case NG_RMS: return nb_rms_norm(x[0], o->ns, a1, &(nb_norm_opts){.eps = 1e-3});
    case NG_GN: return nb_group_norm(x[0], o->groups, a1, a2, NULL);
    case NG_BN: {
        nb_batch_norm_opts bo = {.training = o->training};
        return nb_batch_norm(x[0], o->rm, o->rv, a1, a2, &bo);
    }
    default: {
        nb_sdpa_opts so = {.is_causal = o->causal, .scale = o->scale};
        return nb_scaled_dot_product_attention(x[0], x[1], x[2], n > 3 ? x[3] : o->mask, &so);
    }
    }
}

static uint64_t ng_seed = 777;

/* An F64 leaf with requires_grad: N(0,1) values laid out as 'c', 't' or 's'. */
static nb_tensor *ng_leaf(nb_dims shape, char layout) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    nb_tensor *r = nb_randn(nb_dims_of(1, &n), NB_F64, ng_seed++);
    double *v = malloc(sizeof(double) * (size_t)n);
    cr_assert(r && v);
    nb_copy_to(r, v, sizeof(double) * (size_t)n);
    nb_tensor *t = tu_make_layout(shape, NB_F64, v, layout);
    free(v);
    cr_assert(t != NULL, "%s", nb_last_error());
    cr_assert_eq(nb_set_requires_grad(t, true), 0);
    return t;
}

/* gradcheck, gradgradcheck, and the two backward paths against each other. */
static void ng_check(const char *what, ng_op *o, nb_tensor **x, int n) {
    nb_gradcheck_opts opts = {.user = o};
    nb_gradcheck_report r;
    memset(&r, 0, sizeof r);
    int rc = nb_gradcheck(ng_fn, x, n, &opts, &r);
    cr_expect_eq(rc, 0, "%s: gradcheck %d: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)", what, rc,
                 nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
    memset(&r, 0, sizeof r);
    rc = nb_gradgradcheck(ng_fn, x, n, &opts, &r);
    cr_expect_eq(rc, 0, "%s: gradgradcheck %d: %s (input %d, out %lld, in %lld: analytic %.10g numeric %.10g)", what,
                 rc, nb_last_error(), r.input, (long long)r.out_index, (long long)r.in_index, r.analytic, r.numeric);
    /* fused kernels (plain backward) vs public ops (create_graph) */
    nb_scope_begin();
    nb_tensor *out = ng_fn(x, n, o);
    cr_assert(out != NULL, "%s: %s", what, nb_last_error());
    nb_tensor *go = nb_randn(nb_dims_get(out), NB_F64, 99);
    nb_tensor *g1[4] = {0}, *g2[4] = {0};
    nb_grad_opts plain = {.retain_graph = true, .allow_unused = true};
    nb_grad_opts create = {.create_graph = true, .allow_unused = true};
    cr_assert_eq(nb_autograd_grad(&out, 1, x, n, &go, &plain, g1), 0, "%s: %s", what, nb_last_error());
    cr_assert_eq(nb_autograd_grad(&out, 1, x, n, &go, &create, g2), 0, "%s: %s", what, nb_last_error());
    for (int i = 0; i < n; i++) {
        cr_expect_eq(g1[i] == NULL, g2[i] == NULL, "%s: input %d", what, i);
        if (g1[i] && g2[i])
            cr_expect(tu_allclose(g1[i], g2[i], 1e-10, 1e-10), "%s: input %d: plain and create_graph gradients differ "
                      "(max |diff| %g)", what, i, tu_max_abs_diff(g1[i], g2[i]));
    }
    nb_scope_end();
}

#define NG_TEST(name) Test(norm_grad, name)

NG_TEST(layer_norm) {
    nb_scope_begin();
    ng_op o = {.op = NG_LN, .ns = NB_SHAPE(5)};
    nb_tensor *x[3] = {ng_leaf(NB_SHAPE(3, 5), 'c'), ng_leaf(NB_SHAPE(5), 'c'), ng_leaf(NB_SHAPE(5), 'c')};
    ng_check("layer_norm [3,5]", &o, x, 3);
    ng_check("layer_norm no affine", &o, x, 1);
    ng_op o2 = {.op = NG_LN, .ns = NB_SHAPE(2, 3)};
    nb_tensor *y[3] = {ng_leaf(NB_SHAPE(2, 2, 3), 't'), ng_leaf(NB_SHAPE(2, 3), 's'), ng_leaf(NB_SHAPE(2, 3), 't')};
    ng_check("layer_norm k=2 strided", &o2, y, 3);
    ng_op o3 = {.op = NG_LN, .ns = NB_SHAPE(1)};
    nb_tensor *z[2] = {ng_leaf(NB_SHAPE(4, 1), 'c'), ng_leaf(NB_SHAPE(1), 'c')};
    ng_check("layer_norm size 1", &o3, z, 2);
    nb_scope_end();
}

NG_TEST(rms_norm) {
    nb_scope_begin();
    ng_op o = {.op = NG_RMS, .ns = NB_SHAPE(5)};
    nb_tensor *x[2] = {ng_leaf(NB_SHAPE(3, 5), 's'), ng_leaf(NB_SHAPE(5), 'c')};
    ng_check("rms_norm", &o, x, 2);
    ng_check("rms_norm no weight", &o, x, 1);
    ng_op o2 = {.op = NG_RMS, .ns = NB_SHAPE(2, 3)};
    nb_tensor *y[2] = {ng_leaf(NB_SHAPE(2, 2, 3), 't'), ng_leaf(NB_SHAPE(2, 3), 'c')};
    ng_check("rms_norm k=2", &o2, y, 2);
    nb_scope_end();
}

NG_TEST(group_norm) {
    nb_scope_begin();
    ng_op o = {.op = NG_GN, .groups = 2};
    nb_tensor *x[3] = {ng_leaf(NB_SHAPE(2, 4, 3), 'c'), ng_leaf(NB_SHAPE(4), 'c'), ng_leaf(NB_SHAPE(4), 's')};
    ng_check("group_norm (2,4,3) g2", &o, x, 3);
    ng_check("group_norm no affine", &o, x, 1);
    ng_op o1 = {.op = NG_GN, .groups = 3};
    nb_tensor *y[3] = {ng_leaf(NB_SHAPE(2, 3, 2, 2), 't'), ng_leaf(NB_SHAPE(3), 'c'), ng_leaf(NB_SHAPE(3), 'c')};
    ng_check("group_norm nchw g=C strided", &o1, y, 3);
    ng_op o2 = {.op = NG_GN, .groups = 1};
    nb_tensor *z[3] = {ng_leaf(NB_SHAPE(3, 4), 'c'), ng_leaf(NB_SHAPE(4), 'c'), ng_leaf(NB_SHAPE(4), 'c')};
    ng_check("group_norm nc g1", &o2, z, 3);
    nb_scope_end();
}

NG_TEST(batch_norm) {
    nb_scope_begin();
    ng_op o = {.op = NG_BN, .training = true};
    nb_tensor *x[3] = {ng_leaf(NB_SHAPE(4, 3), 'c'), ng_leaf(NB_SHAPE(3), 'c'), ng_leaf(NB_SHAPE(3), 'c')};
    ng_check("batch_norm train nc", &o, x, 3);
    ng_check("batch_norm train no affine", &o, x, 1);
    nb_tensor *y[3] = {ng_leaf(NB_SHAPE(2, 3, 2, 2), 't'), ng_leaf(NB_SHAPE(3), 's'), ng_leaf(NB_SHAPE(3), 'c')};
    ng_check("batch_norm train nchw strided", &o, y, 3);
    double rmv[3] = {0.5, -1, 2}, rvv[3] = {1.5, 0.7, 2.5};
    ng_op e = {.op = NG_BN, .rm = tu_tensor(NB_SHAPE(3), NB_F64, rmv), .rv = tu_tensor(NB_SHAPE(3), NB_F64, rvv)};
    ng_check("batch_norm eval", &e, y, 3);
    ng_op t2 = {.op = NG_BN, .training = true, .rm = nb_zeros(NB_SHAPE(3), NB_F64), .rv = nb_ones(NB_SHAPE(3), NB_F64)};
    nb_tensor *z[3] = {ng_leaf(NB_SHAPE(3, 3, 2), 'c'), ng_leaf(NB_SHAPE(3), 'c'), ng_leaf(NB_SHAPE(3), 'c')};
    ng_check("batch_norm train with running stats", &t2, z, 3);
    nb_scope_end();
}

NG_TEST(sdpa) {
    nb_scope_begin();
    ng_op o = {.op = NG_SDPA};
    nb_tensor *x[4] = {ng_leaf(NB_SHAPE(2, 3, 2), 'c'), ng_leaf(NB_SHAPE(2, 4, 2), 'c'), ng_leaf(NB_SHAPE(2, 4, 3), 'c'),
                       ng_leaf(NB_SHAPE(3, 4), 'c')};
    ng_check("sdpa", &o, x, 3);
    ng_check("sdpa float mask", &o, x, 4);
    ng_op c = {.op = NG_SDPA, .causal = true, .scale = 0.7};
    ng_check("sdpa causal scale", &c, x, 3);
    bool mb[12] = {1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1};   /* row 1 fully masked */
    ng_op b = {.op = NG_SDPA, .mask = nb_from_data(NB_SHAPE(3, 4), NB_BOOL, mb)};
    ng_check("sdpa bool mask", &b, x, 3);
    nb_tensor *y[3] = {ng_leaf(NB_SHAPE(1, 3, 2), 't'), ng_leaf(NB_SHAPE(2, 1, 4, 2), 's'), ng_leaf(NB_SHAPE(4, 2), 't')};
    ng_check("sdpa broadcast strided", &o, y, 3);
    nb_scope_end();
}

/* ---- defaults and behaviour ---- */

Test(norm_misc, layer_norm_default_eps) {
    nb_scope_begin();
    double v[2] = {0, 1e-3};
    nb_tensor *y = nb_layer_norm(tu_tensor(NB_SHAPE(1, 2), NB_F64, v), NB_SHAPE(2), NULL, NULL, NULL);
    double want = 5e-4 / sqrt(2.5e-7 + 1e-5);
    cr_assert(y != NULL, "%s", nb_last_error());
    cr_expect_float_eq(nb_get(y, (int64_t[]){0, 1}), want, 1e-12);
    cr_expect_float_eq(nb_get(y, (int64_t[]){0, 0}), -want, 1e-12);
    nb_scope_end();
}

/* layer_norm saves its (mean, rstd) and runs one fused backward (dx, dweight,
 * dbias): F32 [300, 1024] gradients bitwise equal at 1 and 2 threads, equal
 * on a second backward of the same graph (the saved stats reused), and
 * within F32 tolerance of the ref kernels (NB_ISA=ref). */
Test(norm_misc, layer_norm_saved_stats_threads_and_ref) {
    nb_scope_begin();
    nb_tensor *x = nb_add_scalar(nb_mul_scalar(nb_randn(NB_SHAPE(300, 1024), NB_F32, 5), 2.0), 1.0);
    nb_tensor *w = nb_randn(NB_SHAPE(1024), NB_F32, 6), *b = nb_randn(NB_SHAPE(1024), NB_F32, 7);
    nb_tensor *go = nb_randn(NB_SHAPE(300, 1024), NB_F32, 8);
    nb_tensor *in[3] = {x, w, b}, *g[4][3] = {{0}};
    const char *isa[3] = {NULL, NULL, "ref"};
    for (int run = 0; run < 3; run++) {   /* 1 thread, 2 threads, ref */
        cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = run == 1 ? 2 : 1, .isa = isa[run], .abort_on_error = -1}),
                     0);
        for (int i = 0; i < 3; i++) cr_assert_eq(nb_set_requires_grad(in[i], true), 0);
        nb_tensor *y = nb_layer_norm(x, NB_SHAPE(1024), w, b, NULL);
        cr_assert(y != NULL, "%s", nb_last_error());
        nb_grad_opts keep = {.retain_graph = true};
        cr_assert_eq(nb_autograd_grad(&y, 1, in, 3, &go, &keep, g[run]), 0, "%s", nb_last_error());
        if (run == 0) cr_assert_eq(nb_autograd_grad(&y, 1, in, 3, &go, &keep, g[3]), 0, "%s", nb_last_error());
        for (int i = 0; i < 3; i++) cr_assert_eq(nb_set_requires_grad(in[i], false), 0);
    }
    cr_assert_eq(nb_init(NULL), 0);
    for (int i = 0; i < 3; i++) {
        size_t bytes = sizeof(float) * (size_t)nb_numel(g[0][i]);
        const void *g0 = nb_data(nb_contiguous(g[0][i]));
        cr_expect(memcmp(g0, nb_data(nb_contiguous(g[1][i])), bytes) == 0, "grad %d: 1 and 2 threads differ", i);
        cr_expect(memcmp(g0, nb_data(nb_contiguous(g[3][i])), bytes) == 0, "grad %d: second backward differs", i);
        cr_expect(tu_allclose(g[0][i], g[2][i], 1e-4, 1e-3), "grad %d: vs ref max |diff| %g", i,
                  tu_max_abs_diff(g[0][i], g[2][i]));
    }
    nb_scope_end();
}

Test(norm_misc, rms_norm_default_eps_by_dtype) {
    nb_scope_begin();
    double v[1] = {1e-4};
    nb_tensor *y32 = nb_rms_norm(tu_tensor(NB_SHAPE(1), NB_F32, v), NB_SHAPE(1), NULL, NULL);
    nb_tensor *y64 = nb_rms_norm(tu_tensor(NB_SHAPE(1), NB_F64, v), NB_SHAPE(1), NULL, NULL);
    cr_assert(y32 && y64, "%s", nb_last_error());
    cr_expect_float_eq(nb_item(y32), 1e-4 / sqrt(1e-8 + FLT_EPSILON), 1e-6);
    cr_expect_float_eq(nb_item(y64), 1e-4 / sqrt(1e-8 + DBL_EPSILON), 1e-12);
    nb_scope_end();
}

Test(norm_misc, batch_norm_eval_leaves_running_stats) {
    nb_scope_begin();
    nb_tensor *rm = nb_zeros(NB_SHAPE(3), NB_F32), *rv = nb_ones(NB_SHAPE(3), NB_F32);
    uint64_t v0 = nb_version(rm), v1 = nb_version(rv);
    nb_tensor *x = nb_randn(NB_SHAPE(4, 3, 2), NB_F32, 5);
    nb_tensor *y = nb_batch_norm(x, rm, rv, NULL, NULL, NULL);
    cr_assert(y != NULL, "%s", nb_last_error());
    cr_expect_eq(nb_version(rm), v0);
    cr_expect_eq(nb_version(rv), v1);
    /* eval with mean 0, var 1: y = x / sqrt(1 + eps) */
    cr_expect(tu_allclose(y, nb_mul_scalar(x, 1.0 / sqrt(1.0 + 1e-5)), 1e-6, 1e-6));
    nb_batch_norm_opts tr = {.training = true};
    cr_assert(nb_batch_norm(x, rm, rv, NULL, NULL, &tr) != NULL, "%s", nb_last_error());
    cr_expect_gt(nb_version(rm), v0);
    cr_expect_gt(nb_version(rv), v1);
    nb_scope_end();
}

Test(norm_misc, sdpa_fully_masked_row_is_zero) {
    nb_scope_begin();
    nb_tensor *q = nb_randn(NB_SHAPE(3, 4), NB_F64, 1), *k = nb_randn(NB_SHAPE(5, 4), NB_F64, 2);
    nb_tensor *v = nb_randn(NB_SHAPE(5, 2), NB_F64, 3);
    nb_set_requires_grad(q, true);
    nb_set_requires_grad(k, true);
    nb_set_requires_grad(v, true);
    bool mb[15] = {1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
    nb_tensor *out = nb_scaled_dot_product_attention(q, k, v, nb_from_data(NB_SHAPE(3, 5), NB_BOOL, mb), NULL);
    cr_assert(out != NULL, "%s", nb_last_error());
    for (int64_t e = 0; e < 2; e++) cr_expect_eq(nb_get(out, (int64_t[]){1, e}), 0.0);
    cr_assert_eq(nb_backward(out, nb_ones(NB_SHAPE(3, 2), NB_F64)), 0, "%s", nb_last_error());
    for (int64_t e = 0; e < 4; e++) cr_expect_eq(nb_get(nb_grad(q), (int64_t[]){1, e}), 0.0);
    for (int64_t i = 0; i < 20; i++) cr_expect(!isnan(nb_get(nb_grad(k), (int64_t[]){i / 4, i % 4})));
    nb_scope_end();
}

Test(norm_misc, registry_lists_every_op) {
    const nb_op ops[] = {NB_OP_BATCH_NORM_STATS, NB_OP_BATCH_NORM, NB_OP_BATCH_NORM_BACKWARD, NB_OP_LAYER_NORM,
                         NB_OP_LAYER_NORM_BACKWARD, NB_OP_GROUP_NORM, NB_OP_GROUP_NORM_BACKWARD, NB_OP_RMS_NORM,
                         NB_OP_RMS_NORM_BACKWARD, NB_OP_SDPA, NB_OP_SDPA_WEIGHTS};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        cr_expect(nb_kernel_chosen(ops[i], NB_F32) != NULL, "%s f32", nb_op_name(ops[i]));
        cr_expect(nb_kernel_chosen(ops[i], NB_F64) != NULL, "%s f64", nb_op_name(ops[i]));
    }
}

Test(norm_misc, no_leaks_after_training_step) {
    uint64_t live0 = nb_memory_stats().live_tensors;
    nb_tensor *w = nb_ones(NB_SHAPE(6), NB_F32), *rm = nb_zeros(NB_SHAPE(3), NB_F32), *rv = nb_ones(NB_SHAPE(3), NB_F32);
    nb_set_requires_grad(w, true);
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(2, 3, 6), NB_F32, 11);
    nb_batch_norm_opts tr = {.training = true};
    nb_tensor *h = nb_batch_norm(nb_layer_norm(x, NB_SHAPE(6), w, NULL, NULL), rm, rv, NULL, NULL, &tr);
    h = nb_group_norm(nb_rms_norm(h, NB_SHAPE(6), w, NULL), 3, NULL, NULL, NULL);
    h = nb_scaled_dot_product_attention(h, h, h, NULL, &(nb_sdpa_opts){.is_causal = true});
    cr_assert_eq(nb_backward(nb_sum_all(h), NULL), 0, "%s", nb_last_error());
    cr_expect(nb_grad(w) != NULL);
    nb_scope_end();
    nb_release(w);
    nb_release(rm);
    nb_release(rv);
    cr_expect_eq(nb_memory_stats().live_tensors, live0);
}

/* ---- bad inputs: NULL, the code, a message naming the op and shapes,
 * nothing left alive ---- */

static uint64_t nb_live0;

static void nbad_init(void) {
    nm_setup();
    nb_live0 = nb_memory_stats().live_tensors;
    nb_clear_error();
    nb_scope_begin();
}
static void nbad_fini(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}
TestSuite(norm_bad, .init = nbad_init, .fini = nbad_fini);

/* r must be NULL with error `code` and a message containing each string. */
#define NBAD_EXPECT(r, code, ...)                                                                          \
    do {                                                                                                   \
        cr_assert((r) == NULL, "expected NULL");                                                           \
        const char *msg_ = nb_last_error();                                                                \
        cr_assert_eq(nb_last_error_code(), (code), "error %s, expected %s: \"%s\"",                        \
                     nb_error_name(nb_last_error_code()), nb_error_name(code), msg_);                      \
        const char *subs_[] = {__VA_ARGS__};                                                               \
        for (size_t i_ = 0; i_ < sizeof subs_ / sizeof subs_[0]; i_++)                                     \
            cr_assert(strstr(msg_, subs_[i_]) != NULL, "\"%s\" does not mention \"%s\"", msg_, subs_[i_]); \
        nb_clear_error();                                                                                  \
    } while (0)

#define NBAD_END()                                                                                      \
    do {                                                                                                \
        nb_scope_end();                                                                                 \
        cr_assert_eq(nb_memory_stats().live_tensors, nb_live0, "tensors left alive after the scope"); \
    } while (0)

Test(norm_bad, null_inputs) {
    nb_tensor *x = nb_randn(NB_SHAPE(2, 3), NB_F32, 1);
    NBAD_EXPECT(nb_layer_norm(NULL, NB_SHAPE(3), NULL, NULL, NULL), NB_ENULLARG, "nb_layer_norm");
    NBAD_EXPECT(nb_rms_norm(NULL, NB_SHAPE(3), NULL, NULL), NB_ENULLARG, "nb_rms_norm");
    NBAD_EXPECT(nb_group_norm(NULL, 1, NULL, NULL, NULL), NB_ENULLARG, "nb_group_norm");
    NBAD_EXPECT(nb_batch_norm(NULL, NULL, NULL, NULL, NULL, NULL), NB_ENULLARG, "nb_batch_norm");
    NBAD_EXPECT(nb_scaled_dot_product_attention(x, NULL, x, NULL, NULL), NB_ENULLARG,
                "nb_scaled_dot_product_attention", "'k'");
    /* a failure earlier in a chain keeps its message */
    nb_tensor *bad = nb_matmul(x, x);
    NBAD_EXPECT(nb_layer_norm(bad, NB_SHAPE(3), NULL, NULL, NULL), NB_ESHAPE, "nb_matmul");
    NBAD_END();
}

Test(norm_bad, layer_norm_shapes) {
    nb_tensor *x = nb_randn(NB_SHAPE(3, 7), NB_F32, 1);
    NBAD_EXPECT(nb_layer_norm(x, NB_SHAPE(6), NULL, NULL, NULL), NB_ESHAPE, "nb_layer_norm", "[6]", "[3, 7]");
    NBAD_EXPECT(nb_layer_norm(x, NB_SHAPE0, NULL, NULL, NULL), NB_ESHAPE, "nb_layer_norm", "[3, 7]");
    NBAD_EXPECT(nb_layer_norm(x, NB_SHAPE(1, 3, 7), NULL, NULL, NULL), NB_ESHAPE, "[1, 3, 7]", "[3, 7]");
    NBAD_EXPECT(nb_layer_norm(x, NB_SHAPE(3, 1), NULL, NULL, NULL), NB_ESHAPE, "[3, 1]");
    nb_tensor *w5 = nb_ones(NB_SHAPE(5), NB_F32);
    NBAD_EXPECT(nb_layer_norm(x, NB_SHAPE(7), w5, NULL, NULL), NB_ESHAPE, "nb_layer_norm", "weight", "[5]", "[7]");
    NBAD_EXPECT(nb_layer_norm(x, NB_SHAPE(7), NULL, w5, NULL), NB_ESHAPE, "bias", "[5]");
    NBAD_EXPECT(nb_layer_norm(x, NB_SHAPE(7), nb_ones(NB_SHAPE(7), NB_F64), NULL, NULL), NB_EDTYPE, "weight",
                "f64", "f32");
    NBAD_EXPECT(nb_layer_norm(nb_zeros(NB_SHAPE(3, 7), NB_I64), NB_SHAPE(7), NULL, NULL, NULL), NB_EDTYPE,
                "nb_layer_norm", "i64");
    NBAD_EXPECT(nb_rms_norm(x, NB_SHAPE(3), NULL, NULL), NB_ESHAPE, "nb_rms_norm", "[3]", "[3, 7]");
    NBAD_EXPECT(nb_rms_norm(x, NB_SHAPE(7), w5, NULL), NB_ESHAPE, "nb_rms_norm", "weight", "[5]");
    NBAD_END();
}

Test(norm_bad, group_norm_groups) {
    nb_tensor *x = nb_randn(NB_SHAPE(2, 6, 5), NB_F32, 1);
    NBAD_EXPECT(nb_group_norm(x, 4, NULL, NULL, NULL), NB_EINVAL, "nb_group_norm", "6 channels", "[2, 6, 5]",
                "4 groups");
    NBAD_EXPECT(nb_group_norm(x, 0, NULL, NULL, NULL), NB_EINVAL, "nb_group_norm", "0 groups");
    NBAD_EXPECT(nb_group_norm(nb_randn(NB_SHAPE(6), NB_F32, 2), 3, NULL, NULL, NULL), NB_ESHAPE, "nb_group_norm",
                "[6]");
    NBAD_EXPECT(nb_group_norm(x, 3, nb_ones(NB_SHAPE(5), NB_F32), NULL, NULL), NB_ESHAPE, "weight", "[5]", "[6]");
    NBAD_END();
}

Test(norm_bad, batch_norm_stats) {
    nb_tensor *x = nb_randn(NB_SHAPE(4, 3, 2), NB_F32, 1);
    nb_tensor *r3 = nb_zeros(NB_SHAPE(3), NB_F32), *r4 = nb_zeros(NB_SHAPE(4), NB_F32);
    nb_batch_norm_opts tr = {.training = true};
    NBAD_EXPECT(nb_batch_norm(x, r4, r3, NULL, NULL, &tr), NB_ESHAPE, "nb_batch_norm", "running_mean", "[4]", "[3]",
                "[4, 3, 2]");
    NBAD_EXPECT(nb_batch_norm(x, r3, r4, NULL, NULL, NULL), NB_ESHAPE, "running_var", "[4]");
    NBAD_EXPECT(nb_batch_norm(x, NULL, NULL, NULL, NULL, NULL), NB_EINVAL, "nb_batch_norm", "eval");
    NBAD_EXPECT(nb_batch_norm(x, r3, NULL, NULL, NULL, &tr), NB_EINVAL, "running_mean and running_var");
    NBAD_EXPECT(nb_batch_norm(nb_randn(NB_SHAPE(1, 3), NB_F32, 2), NULL, NULL, NULL, NULL, &tr), NB_EINVAL,
                "more than 1 value per channel", "[1, 3]");
    NBAD_EXPECT(nb_batch_norm(nb_randn(NB_SHAPE(3), NB_F32, 2), NULL, NULL, NULL, NULL, &tr), NB_ESHAPE,
                "nb_batch_norm", "[3]");
    NBAD_EXPECT(nb_batch_norm(x, NULL, NULL, r4, NULL, &tr), NB_ESHAPE, "weight", "[4]");
    NBAD_EXPECT(nb_batch_norm(x, r3, nb_zeros(NB_SHAPE(3), NB_F64), NULL, NULL, NULL), NB_EDTYPE, "running_var");
    NBAD_END();
}

Test(norm_bad, attention_shapes) {
    const char *who = "nb_scaled_dot_product_attention";
    nb_tensor *q = nb_randn(NB_SHAPE(2, 3, 4), NB_F32, 1), *k = nb_randn(NB_SHAPE(2, 5, 4), NB_F32, 2);
    nb_tensor *v = nb_randn(NB_SHAPE(2, 5, 6), NB_F32, 3);
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, nb_randn(NB_SHAPE(2, 5, 3), NB_F32, 4), v, NULL, NULL),
                NB_ESHAPE, who, "[2, 3, 4]", "[2, 5, 3]");
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, k, nb_randn(NB_SHAPE(2, 6, 6), NB_F32, 4), NULL, NULL),
                NB_ESHAPE, who, "[2, 5, 4]", "[2, 6, 6]");
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, nb_randn(NB_SHAPE(3, 5, 4), NB_F32, 4), v, NULL, NULL),
                NB_ESHAPE, who, "batch dims", "[3, 5, 4]");
    NBAD_EXPECT(nb_scaled_dot_product_attention(nb_randn(NB_SHAPE(4), NB_F32, 4), k, v, NULL, NULL), NB_ESHAPE,
                who, "[4]");
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, k, nb_randn(NB_SHAPE(2, 5, 6), NB_F64, 4), NULL, NULL),
                NB_EDTYPE, who, "f64");
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, k, v, nb_zeros(NB_SHAPE(4, 5), NB_BOOL), NULL), NB_ESHAPE, who,
                "attn_mask", "[4, 5]", "[2, 3, 5]");
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, k, v, nb_zeros(NB_SHAPE(3, 3, 5), NB_F32), NULL), NB_ESHAPE,
                who, "attn_mask", "[3, 3, 5]");
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, k, v, nb_zeros(NB_SHAPE(3, 5), NB_I64), NULL), NB_EDTYPE, who,
                "attn_mask", "i64");
    nb_sdpa_opts causal = {.is_causal = true};
    NBAD_EXPECT(nb_scaled_dot_product_attention(q, k, v, nb_zeros(NB_SHAPE(3, 5), NB_BOOL), &causal), NB_EINVAL,
                who, "is_causal");
    NBAD_END();
}
