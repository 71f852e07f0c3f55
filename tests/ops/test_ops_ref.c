/* test_ops_ref.c — the core ops against PyTorch's values.
 *
 * Every case of tests/data/reference.txt (written by gen_reference.py, which
 * documents the format) is run here: the inputs are built in the memory layout
 * the case names (contiguous, transposed or strided with NaN in the gaps), the
 * op runs, and its result is compared with PyTorch's; then backward of
 * sum(out * W) (nb_backward(out, W)) must give PyTorch's gradient for every
 * input, and leave the inputs' values as they were. Each case runs twice: in F64, where results must agree to ~1e-12,
 * and in F32 (inputs rounded), with float tolerances.
 *
 * One Criterion test per op, so a failure names the op; the messages name the
 * case, the dtype, the element and the values. A last test checks that every
 * case in the file belongs to an op tested here.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

static void ref_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}

TestSuite(ops_ref, .init = ref_setup);

/* ---- arguments ---- */

static const tu_ref_arg *ref_arg(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    cr_assert(a != NULL, "case %s: missing arg %s", c->name, key);
    return a;
}

static int ref_argi(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = ref_arg(c, key);
    cr_assert_eq(a->n, 1, "case %s: arg %s wants one number", c->name, key);
    return (int)a->v[0];
}

static double ref_argd(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = ref_arg(c, key);
    cr_assert_eq(a->n, 1, "case %s: arg %s wants one number", c->name, key);
    return a->v[0];
}

/* dims as ints into out; returns how many */
static int ref_argv(const tu_ref_case *c, const char *key, int *out) {
    const tu_ref_arg *a = ref_arg(c, key);
    for (int i = 0; i < a->n; i++) out[i] = (int)a->v[i];
    return a->n;
}

static nb_dims ref_arg_shape(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = ref_arg(c, key);
    int64_t d[NB_MAX_DIMS];
    for (int i = 0; i < a->n; i++) d[i] = (int64_t)a->v[i];
    return nb_dims_of(a->n, d);
}

/* ---- the ops, by the name the data file uses ---- */

typedef nb_tensor *(*ref_binary_fn)(nb_tensor *, nb_tensor *);
typedef nb_tensor *(*ref_unary_fn)(nb_tensor *);
typedef nb_tensor *(*ref_scalar_fn)(nb_tensor *, double);

static const struct {
    const char *op;
    ref_binary_fn fn;
} ref_binary[] = {
    {"add", nb_add}, {"sub", nb_sub}, {"mul", nb_mul},
    {"div", nb_div}, {"pow", nb_pow}, {"matmul", nb_matmul},
};
static const struct {
    const char *op;
    ref_unary_fn fn;
} ref_unary[] = {
    {"neg", nb_neg}, {"exp", nb_exp}, {"log", nb_log}, {"tanh", nb_tanh},
    {"sum_all", nb_sum_all}, {"mean_all", nb_mean_all}, {"contiguous", nb_contiguous},
};
static const struct {
    const char *op;
    ref_scalar_fn fn;
} ref_scalar[] = {
    {"add_scalar", nb_add_scalar}, {"mul_scalar", nb_mul_scalar}, {"pow_scalar", nb_pow_scalar},
};
static const char *const ref_other[] = {
    "sum", "mean", "reshape", "transpose", "permute", "slice", "expand", "squeeze",
    "unsqueeze", "to_dtype", "chain_tanh_matmul_add", "chain_log_mean_pow",
};
#define REF_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool ref_op_known(const char *op) {
    for (int i = 0; i < REF_LEN(ref_binary); i++) if (!strcmp(op, ref_binary[i].op)) return true;
    for (int i = 0; i < REF_LEN(ref_unary); i++) if (!strcmp(op, ref_unary[i].op)) return true;
    for (int i = 0; i < REF_LEN(ref_scalar); i++) if (!strcmp(op, ref_scalar[i].op)) return true;
    for (int i = 0; i < REF_LEN(ref_other); i++) if (!strcmp(op, ref_other[i])) return true;
    return false;
}

/* Runs c's op on x (c->n_in tensors). */
static nb_tensor *ref_run_op(const tu_ref_case *c, nb_tensor **x) {
    const char *op = c->op;
    int dims[NB_MAX_DIMS];
    for (int i = 0; i < REF_LEN(ref_binary); i++)
        if (!strcmp(op, ref_binary[i].op)) return ref_binary[i].fn(x[0], x[1]);
    for (int i = 0; i < REF_LEN(ref_unary); i++)
        if (!strcmp(op, ref_unary[i].op)) return ref_unary[i].fn(x[0]);
    for (int i = 0; i < REF_LEN(ref_scalar); i++)
        if (!strcmp(op, ref_scalar[i].op)) return ref_scalar[i].fn(x[0], ref_argd(c, "s"));
    if (!strcmp(op, "sum") || !strcmp(op, "mean")) {
        int nd = ref_argv(c, "dims", dims);
        bool keep = ref_argi(c, "keepdim") != 0;
        return op[0] == 's' ? nb_sum(x[0], dims, nd, keep) : nb_mean(x[0], dims, nd, keep);
    }
    if (!strcmp(op, "reshape")) return nb_reshape(x[0], ref_arg_shape(c, "shape"));
    if (!strcmp(op, "expand")) return nb_expand(x[0], ref_arg_shape(c, "shape"));
    if (!strcmp(op, "transpose"))
        return nb_transpose(x[0], ref_argi(c, "dim0"), ref_argi(c, "dim1"));
    if (!strcmp(op, "permute")) {
        int nd = ref_argv(c, "dims", dims);
        return nb_permute(x[0], dims, nd);
    }
    if (!strcmp(op, "slice"))
        return nb_slice(x[0], ref_argi(c, "dim"), ref_argi(c, "start"), ref_argi(c, "stop"),
                        ref_argi(c, "step"));
    if (!strcmp(op, "squeeze")) return nb_squeeze(x[0], ref_argi(c, "dim"));
    if (!strcmp(op, "unsqueeze")) return nb_unsqueeze(x[0], ref_argi(c, "dim"));
    if (!strcmp(op, "to_dtype")) {
        const char *w = ref_arg(c, "dtype")->word;
        return nb_to_dtype(x[0], !strcmp(w, "f32") ? NB_F32 : NB_F64);
    }
    if (!strcmp(op, "chain_tanh_matmul_add"))  /* tanh(a @ b + c) */
        return nb_tanh(nb_add(nb_matmul(x[0], x[1]), x[2]));
    if (!strcmp(op, "chain_log_mean_pow")) {   /* log(mean(x**2, 1)) * sum(x) */
        int d1[1] = {1};
        return nb_mul(nb_log(nb_mean(nb_pow_scalar(x[0], 2.0), d1, 1, false)),
                      nb_sum_all(x[0]));
    }
    cr_assert_fail("case %s: unknown op %s", c->name, op);
    return NULL;
}

/* ---- one case in one dtype ---- */

static double ref_maxabs(const tu_ref_tensor *t) {
    double m = 0;
    for (int64_t i = 0; i < t->numel; i++)
        if (isfinite(t->vals[i]) && fabs(t->vals[i]) > m) m = fabs(t->vals[i]);
    return m;
}

static bool ref_close(const nb_tensor *got, const tu_ref_tensor *exp, double rtol,
                      double atol_unit, const char *what, const tu_ref_case *c, nb_dtype dt) {
    char msg[512];
    double atol = atol_unit * (1.0 + ref_maxabs(exp));
    bool ok = tu_check_close(got, exp->shape, exp->vals, rtol, atol, msg, sizeof msg);
    cr_expect(ok, "case %s (%s, op %s): %s: %s", c->name, nb_dtype_name(dt), c->op, what, msg);
    return ok;
}

/* Runs case c with inputs of dtype dt: forward vs PyTorch, then backward of
 * sum(out * W) vs PyTorch's gradients. */
static void ref_run_case(const tu_ref_case *c, nb_dtype dt) {
    double rtol = dt == NB_F64 ? 1e-12 : 1e-4;
    double atol = dt == NB_F64 ? 1e-12 : 1e-5;
    nb_tensor *x[TU_REF_MAX_IN] = {0};
    nb_scope_begin();
    for (int i = 0; i < c->n_in; i++) {
        x[i] = tu_ref_make(&c->in[i], dt);
        cr_assert(x[i] != NULL, "case %s: input %d: %s", c->name, i, nb_last_error());
        cr_assert(c->in[i].layout == 'c' || !nb_is_contiguous(x[i]) || c->in[i].numel <= 1 ||
                      c->in[i].shape.d[c->in[i].shape.ndim - 1] == 1,
                  "case %s: input %d should be non-contiguous", c->name, i);
        cr_assert_eq(nb_set_requires_grad(x[i], true), 0, "case %s: %s", c->name,
                     nb_last_error());
    }
    nb_tensor *out = ref_run_op(c, x);
    cr_expect(out != NULL, "case %s (%s, op %s): forward failed: %s", c->name,
              nb_dtype_name(dt), c->op, nb_last_error());
    if (!out) goto done;

    nb_dtype want = dt;
    if (!strcmp(c->op, "to_dtype"))
        want = !strcmp(ref_arg(c, "dtype")->word, "f32") ? NB_F32 : NB_F64;
    cr_expect_eq(nb_dtype(out), want, "case %s (%s): output dtype %s, expected %s", c->name,
                 nb_dtype_name(dt), nb_dtype_name(nb_dtype(out)), nb_dtype_name(want));
    if (!strcmp(c->op, "contiguous"))
        cr_expect(nb_is_contiguous(out), "case %s: nb_contiguous gave a non-contiguous tensor",
                  c->name);
    if (!ref_close(out, &c->out, rtol, atol, "forward", c, dt)) goto done;

    nb_tensor *w = tu_ref_make(&c->w, nb_dtype(out));
    cr_assert(w != NULL, "case %s: W: %s", c->name, nb_last_error());
    int rc = nb_backward(out, w);
    cr_expect_eq(rc, 0, "case %s (%s, op %s): nb_backward: %s", c->name, nb_dtype_name(dt),
                 c->op, nb_last_error());
    if (rc != 0) goto done;
    for (int i = 0; i < c->n_in; i++) {
        char what[32];
        nb_tensor *g = nb_grad(x[i]);
        snprintf(what, sizeof what, "grad of input %d", i);
        cr_expect(g != NULL, "case %s (%s, op %s): no %s", c->name, nb_dtype_name(dt), c->op,
                  what);
        if (!g) continue;
        cr_expect_eq(nb_dtype(g), dt, "case %s (%s): %s has dtype %s", c->name,
                     nb_dtype_name(dt), what, nb_dtype_name(nb_dtype(g)));
        ref_close(g, &c->grad[i], rtol, atol, what, c, dt);
    }
    /* neither the op nor its backward may write into an input */
    for (int i = 0; i < c->n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "input %d after backward", i);
        ref_close(x[i], &c->in[i], dt == NB_F64 ? 0.0 : 1e-7, 0.0, what, c, dt);
    }
done:
    nb_scope_end();
}

/* Runs every case of `op` (F64 and F32); fails when there is none. */
static void ref_run_op_cases(const char *op) {
    tu_ref_set *s = tu_ref_load_all();
    cr_assert(s != NULL, "cannot load " NB_TEST_DATA_DIR "/reference.txt");
    int ran = 0;
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->cases[i].op, op) != 0) continue;
        ref_run_case(&s->cases[i], NB_F64);
        ref_run_case(&s->cases[i], NB_F32);
        ran++;
    }
    tu_ref_free_set(s);
    cr_expect_gt(ran, 0, "no reference case for op %s", op);
}

#define REF_TEST(op) \
    Test(ops_ref, op) { ref_run_op_cases(#op); }

REF_TEST(add)
REF_TEST(sub)
REF_TEST(mul)
REF_TEST(div)
REF_TEST(pow)
REF_TEST(add_scalar)
REF_TEST(mul_scalar)
REF_TEST(pow_scalar)
REF_TEST(neg)
REF_TEST(exp)
REF_TEST(log)
REF_TEST(tanh)
REF_TEST(sum_all)
REF_TEST(mean_all)
REF_TEST(sum)
REF_TEST(mean)
REF_TEST(matmul)
REF_TEST(reshape)
REF_TEST(transpose)
REF_TEST(permute)
REF_TEST(slice)
REF_TEST(expand)
REF_TEST(squeeze)
REF_TEST(unsqueeze)
REF_TEST(contiguous)
REF_TEST(to_dtype)
REF_TEST(chain_tanh_matmul_add)
REF_TEST(chain_log_mean_pow)

/* Every case in the file belongs to an op with a test above, and the file
 * covers the odd sizes the house style asks for. */
Test(ops_ref, every_case_is_run) {
    tu_ref_set *s = tu_ref_load_all();
    cr_assert(s != NULL, "cannot load " NB_TEST_DATA_DIR "/reference.txt");
    cr_expect_gt(s->n, 200, "only %d cases", s->n);
    bool sizes[4] = {false, false, false, false};
    const int64_t want[4] = {1, 7, 33, 1023};
    for (int i = 0; i < s->n; i++) {
        const tu_ref_case *c = &s->cases[i];
        cr_expect(ref_op_known(c->op), "case %s: op %s has no test", c->name, c->op);
        for (int k = 0; k < 4; k++)
            if (c->in[0].shape.ndim > 0 && c->in[0].shape.d[c->in[0].shape.ndim - 1] == want[k])
                sizes[k] = true;
    }
    for (int k = 0; k < 4; k++)
        cr_expect(sizes[k], "no case with innermost size %lld", (long long)want[k]);
    tu_ref_free_set(s);
}

/* Views share the input's storage (writing through the input shows in the
 * view), and contiguous/to_dtype return the input itself when nothing is to
 * be done. */
Test(ops_ref, views_share_storage) {
    nb_scope_begin();
    nb_tensor *a = nb_arange(0, 24, 1, NB_F64);
    nb_tensor *b = nb_reshape(a, NB_SHAPE(2, 3, 4));
    cr_assert(b != NULL, "%s", nb_last_error());
    int perm[3] = {2, 0, 1};
    nb_tensor *v[] = {
        b,
        nb_transpose(b, 0, 2),
        nb_permute(b, perm, 3),
        nb_slice(b, 2, 1, 4, 2),
        nb_expand(nb_slice(b, 1, 0, 1, 1), NB_SHAPE(2, 5, 4)),
        nb_squeeze(nb_slice(b, 1, 2, 3, 1), 1),
        nb_unsqueeze(b, 1),
    };
    for (int i = 0; i < REF_LEN(v); i++) cr_assert(v[i] != NULL, "view %d: %s", i, nb_last_error());
    double before[REF_LEN(v)];
    int64_t zero[NB_MAX_DIMS] = {0};
    for (int i = 0; i < REF_LEN(v); i++) before[i] = nb_get(v[i], zero);
    nb_tensor *ones = nb_ones(NB_SHAPE(24), NB_F64);
    cr_assert(nb_add_(a, ones) != NULL, "%s", nb_last_error());
    for (int i = 0; i < REF_LEN(v); i++)
        cr_expect_eq(nb_get(v[i], zero), before[i] + 1.0, "view %d does not share storage", i);
    cr_expect_eq(nb_contiguous(a), a, "nb_contiguous of a contiguous tensor should be itself");
    cr_expect_eq(nb_to_dtype(a, NB_F64), a, "nb_to_dtype to its own dtype should be itself");
    nb_scope_end();
}
