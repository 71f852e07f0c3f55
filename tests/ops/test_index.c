/* test_index.c — the shape-and-indexing ops (flatten, narrow, cat, stack,
 * split, chunk, index_select, gather, scatter_add, index_add, embedding,
 * repeat, flip, tril, triu, one_hot, pad).
 *
 * Suites:
 *   idx_ref   every case of tests/data/ref_index.txt (gen_ref_index.py):
 *             forward and the gradients of sum(out * W) against PyTorch, in F64
 *             and F32, inputs laid out contiguous, transposed or strided;
 *   idx_grad  nb_gradcheck and nb_gradgradcheck in F64 (the op alone, and its
 *             output squared so the double backward carries real values);
 *   idx_bad   bad inputs: NULL, wrong dtypes, dims and shapes, indices out of
 *             range or negative: NULL or a negative code, the right NB_E*, a
 *             message naming the op and the values, no tensor left alive;
 *   idx_misc  integer and bool dtypes, the split/chunk array API, views
 *             sharing storage, the registry entries.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void ix_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
}

#define IX_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define IX_FILE "ref_index.txt"

/* ================= idx_ref: PyTorch's values ================= */

TestSuite(idx_ref, .init = ix_setup);

static const tu_ref_arg *ix_arg(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = tu_ref_arg_get(c, key);
    cr_assert(a != NULL, "case %s: missing arg %s", c->name, key);
    return a;
}
static int64_t ix_argi(const tu_ref_case *c, const char *key) {
    const tu_ref_arg *a = ix_arg(c, key);
    cr_assert_eq(a->n, 1, "case %s: arg %s wants one number", c->name, key);
    return (int64_t)a->v[0];
}

/* Inputs that are I64 indices, by op. */
static bool ix_is_index(const char *op, int i) {
    if (!strcmp(op, "embedding") || !strcmp(op, "one_hot")) return i == 0;
    if (!strcmp(op, "index_select") || !strcmp(op, "gather") || !strcmp(op, "scatter_add") ||
        !strcmp(op, "index_add"))
        return i == 1;
    return false;
}

static const char *const ix_ops[] = {
    "flatten", "narrow", "cat", "stack", "split", "chunk", "index_select", "gather", "scatter_add",
    "index_add", "embedding", "repeat", "flip", "tril", "triu", "one_hot", "pad",
};

/* One piece of nb_split / nb_chunk, checking the count against PyTorch's. */
static nb_tensor *ix_piece(const tu_ref_case *c, nb_tensor *x, bool chunk) {
    nb_tensor *p[64];
    int dim = (int)ix_argi(c, "dim");
    int64_t arg = ix_argi(c, chunk ? "chunks" : "size");
    int n = chunk ? nb_chunk(x, (int)arg, dim, NULL, 0) : nb_split(x, arg, dim, NULL, 0);
    cr_assert_eq(n, ix_argi(c, "count"), "case %s: %d pieces, PyTorch has %lld (%s)", c->name, n,
                 (long long)ix_argi(c, "count"), nb_last_error());
    int m = chunk ? nb_chunk(x, (int)arg, dim, p, 64) : nb_split(x, arg, dim, p, 64);
    cr_assert_eq(m, n, "case %s: %s", c->name, nb_last_error());
    return p[ix_argi(c, "piece")];
}

static nb_tensor *ix_run(const tu_ref_case *c, nb_tensor **x) {
    const char *op = c->op;
    int64_t v[NB_MAX_DIMS];
    if (!strcmp(op, "flatten")) return nb_flatten(x[0], (int)ix_argi(c, "start"), (int)ix_argi(c, "end"));
    if (!strcmp(op, "narrow"))
        return nb_narrow(x[0], (int)ix_argi(c, "dim"), ix_argi(c, "start"), ix_argi(c, "length"));
    if (!strcmp(op, "cat")) return nb_cat(x, c->n_in, (int)ix_argi(c, "dim"));
    if (!strcmp(op, "stack")) return nb_stack(x, c->n_in, (int)ix_argi(c, "dim"));
    if (!strcmp(op, "split") || !strcmp(op, "chunk")) return ix_piece(c, x[0], op[0] == 'c');
    if (!strcmp(op, "index_select")) return nb_index_select(x[0], (int)ix_argi(c, "dim"), x[1]);
    if (!strcmp(op, "gather")) return nb_gather(x[0], (int)ix_argi(c, "dim"), x[1]);
    if (!strcmp(op, "scatter_add")) return nb_scatter_add(x[0], (int)ix_argi(c, "dim"), x[1], x[2]);
    if (!strcmp(op, "index_add")) return nb_index_add(x[0], (int)ix_argi(c, "dim"), x[1], x[2]);
    if (!strcmp(op, "embedding")) {
        const tu_ref_arg *a = ix_arg(c, "padding_idx");
        return nb_embedding(x[0], x[1], a->n ? (int64_t)a->v[0] : NB_NO_PADDING);
    }
    if (!strcmp(op, "tril")) return nb_tril(x[0], ix_argi(c, "diagonal"));
    if (!strcmp(op, "triu")) return nb_triu(x[0], ix_argi(c, "diagonal"));
    if (!strcmp(op, "one_hot")) return nb_one_hot(x[0], ix_argi(c, "num_classes"));
    const tu_ref_arg *a = tu_ref_arg_get(c, !strcmp(op, "repeat") ? "repeats" : !strcmp(op, "pad") ? "pad" : "dims");
    cr_assert(a != NULL, "case %s: unknown op %s or missing list", c->name, op);
    for (int i = 0; i < a->n; i++) v[i] = (int64_t)a->v[i];
    if (!strcmp(op, "repeat")) return nb_repeat(x[0], v, a->n);
    if (!strcmp(op, "pad")) return nb_pad(x[0], v, a->n, ix_arg(c, "value")->v[0]);
    int dims[NB_MAX_DIMS];
    for (int i = 0; i < a->n; i++) dims[i] = (int)v[i];
    return nb_flip(x[0], dims, a->n);
}

static void ix_close(const nb_tensor *got, const tu_ref_tensor *exp, double tol, const char *what,
                     const tu_ref_case *c, nb_dtype dt) {
    char msg[512];
    double m = 0;
    for (int64_t i = 0; i < exp->numel; i++) m = fmax(m, fabs(exp->vals[i]));
    bool ok = tu_check_close(got, exp->shape, exp->vals, tol, tol * (1.0 + m), msg, sizeof msg);
    cr_expect(ok, "case %s (%s, op %s): %s: %s", c->name, nb_dtype_name(dt), c->op, what, msg);
}

/* Runs c with float inputs of dtype dt: forward vs PyTorch, then backward of
 * sum(out * W) vs PyTorch's gradients; inputs must be left as they were. */
static void ix_run_case(const tu_ref_case *c, nb_dtype dt) {
    double tol = dt == NB_F64 ? 1e-12 : 1e-5;
    nb_tensor *x[TU_REF_MAX_IN] = {0};
    nb_scope_begin();
    for (int i = 0; i < c->n_in; i++) {
        bool idx = ix_is_index(c->op, i);
        x[i] = tu_ref_make(&c->in[i], idx ? NB_I64 : dt);
        cr_assert(x[i] != NULL, "case %s: input %d: %s", c->name, i, nb_last_error());
        if (!idx) cr_assert_eq(nb_set_requires_grad(x[i], true), 0, "%s", nb_last_error());
    }
    nb_tensor *out = ix_run(c, x);
    cr_expect(out != NULL, "case %s (%s): forward failed: %s", c->name, nb_dtype_name(dt), nb_last_error());
    if (!out) goto done;
    bool int_out = !strcmp(c->op, "one_hot");
    cr_expect_eq(nb_dtype(out), int_out ? NB_I64 : dt, "case %s: output dtype %s", c->name,
                 nb_dtype_name(nb_dtype(out)));
    ix_close(out, &c->out, tol, "forward", c, dt);
    if (int_out) goto done;
    cr_assert_eq(nb_backward(out, tu_ref_make(&c->w, dt)), 0, "case %s: backward: %s", c->name, nb_last_error());
    for (int i = 0; i < c->n_in; i++) {
        if (ix_is_index(c->op, i)) continue;
        char what[32];
        snprintf(what, sizeof what, "grad of input %d", i);
        nb_tensor *g = nb_grad(x[i]);
        cr_expect(g != NULL, "case %s (%s): no %s", c->name, nb_dtype_name(dt), what);
        if (g) ix_close(g, &c->grad[i], tol, what, c, dt);
    }
    for (int i = 0; i < c->n_in; i++)   /* f32 inputs hold the rounded values */
        ix_close(x[i], &c->in[i], dt == NB_F64 || ix_is_index(c->op, i) ? 0.0 : 1e-7, "input after backward", c, dt);
done:
    nb_scope_end();
}

static void ix_run_op_cases(const char *op) {
    tu_ref_set *s = tu_ref_load_all_from(IX_FILE);
    cr_assert(s != NULL, "cannot load " IX_FILE);
    int ran = 0;
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->cases[i].op, op) != 0) continue;
        ix_run_case(&s->cases[i], NB_F64);
        ix_run_case(&s->cases[i], NB_F32);
        ran++;
    }
    tu_ref_free_set(s);
    cr_expect_gt(ran, 0, "no reference case for op %s", op);
}

#define IX_REF_TEST(op) \
    Test(idx_ref, op) { ix_run_op_cases(#op); }
IX_REF_TEST(flatten)
IX_REF_TEST(narrow)
IX_REF_TEST(cat)
IX_REF_TEST(stack)
IX_REF_TEST(split)
IX_REF_TEST(chunk)
IX_REF_TEST(index_select)
IX_REF_TEST(gather)
IX_REF_TEST(scatter_add)
IX_REF_TEST(index_add)
IX_REF_TEST(embedding)
IX_REF_TEST(repeat)
IX_REF_TEST(flip)
IX_REF_TEST(tril)
IX_REF_TEST(triu)
IX_REF_TEST(one_hot)
IX_REF_TEST(pad)

/* Every case belongs to an op tested above; the odd sizes are covered. */
Test(idx_ref, every_case_is_run) {
    tu_ref_set *s = tu_ref_load_all_from(IX_FILE);
    cr_assert(s != NULL, "cannot load " IX_FILE);
    bool sizes[4] = {false, false, false, false};
    const int64_t want[4] = {1, 7, 33, 1023};
    for (int i = 0; i < s->n; i++) {
        const tu_ref_case *c = &s->cases[i];
        bool known = false;
        for (int k = 0; k < IX_LEN(ix_ops); k++) known |= !strcmp(c->op, ix_ops[k]);
        cr_expect(known, "case %s: op %s has no test", c->name, c->op);
        for (int j = 0; j < c->n_in; j++)
            for (int k = 0; k < 4; k++)
                if (c->in[j].shape.ndim > 0 && c->in[j].shape.d[c->in[j].shape.ndim - 1] == want[k]) sizes[k] = true;
    }
    for (int k = 0; k < 4; k++) cr_expect(sizes[k], "no case with innermost size %lld", (long long)want[k]);
    tu_ref_free_set(s);
}

/* ================= idx_grad: finite differences in F64 ================= */

TestSuite(idx_grad, .init = ix_setup);

static uint64_t ix_seed = 777;

static nb_tensor *ix_leaf(nb_dims shape, char layout) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    cr_assert(v != NULL);
    nb_tensor *r = nb_randn(nb_dims_of(1, &n), NB_F64, ix_seed++);
    cr_assert_eq(nb_copy_to(r, v, sizeof(double) * (size_t)n), 0, "%s", nb_last_error());
    nb_tensor *t = tu_make_layout(shape, NB_F64, v, layout);
    free(v);
    cr_assert(t != NULL, "leaf: %s", nb_last_error());
    cr_assert_eq(nb_set_requires_grad(t, true), 0, "%s", nb_last_error());
    return t;
}

static nb_tensor *ix_index(nb_dims shape, const int64_t *vals) {
    return nb_from_data(shape, NB_I64, vals);
}

enum { GI_CAT, GI_STACK, GI_SPLIT_CAT, GI_CHUNK, GI_FLATTEN, GI_NARROW, GI_INDEX_SELECT, GI_GATHER,
       GI_SCATTER_ADD, GI_INDEX_ADD, GI_EMBEDDING, GI_REPEAT, GI_FLIP, GI_TRIL, GI_TRIU, GI_PAD };

typedef struct ix_gop {
    int op;             /* GI_* */
    int dim;            /* dim argument */
    int64_t a, b;       /* size/start/length/diagonal/padding_idx */
    int64_t list[8];    /* repeats, pads or flip dims */
    int nlist;
    nb_tensor *index;   /* I64 index, not an input of the check */
    bool square;        /* return out * out */
} ix_gop;

static nb_tensor *ix_apply(nb_tensor *const *x, int n, const ix_gop *g) {
    int dims[8];
    nb_tensor *p[8];
    switch (g->op) {
    case GI_CAT: return nb_cat(x, n, g->dim);
    case GI_STACK: return nb_stack(x, n, g->dim);
    case GI_SPLIT_CAT: {   /* split, then cat the pieces in reverse order */
        int k = nb_split(x[0], g->a, g->dim, p, 8);
        if (k < 0) return NULL;
        for (int i = 0; i < k / 2; i++) {
            nb_tensor *t = p[i];
            p[i] = p[k - 1 - i], p[k - 1 - i] = t;
        }
        return nb_cat(p, k, g->dim);
    }
    case GI_CHUNK: {   /* chunk, then piece 0 * last piece (same sizes) */
        int k = nb_chunk(x[0], (int)g->a, g->dim, p, 8);
        return k < 0 ? NULL : nb_mul(p[0], p[k - 1]);
    }
    case GI_FLATTEN: return nb_flatten(x[0], g->dim, (int)g->a);
    case GI_NARROW: return nb_narrow(x[0], g->dim, g->a, g->b);
    case GI_INDEX_SELECT: return nb_index_select(x[0], g->dim, g->index);
    case GI_GATHER: return nb_gather(x[0], g->dim, g->index);
    case GI_SCATTER_ADD: return nb_scatter_add(x[0], g->dim, g->index, x[1]);
    case GI_INDEX_ADD: return nb_index_add(x[0], g->dim, g->index, x[1]);
    case GI_EMBEDDING: return nb_embedding(g->index, x[0], g->a);
    case GI_REPEAT: return nb_repeat(x[0], g->list, g->nlist);
    case GI_FLIP:
        for (int i = 0; i < g->nlist; i++) dims[i] = (int)g->list[i];
        return nb_flip(x[0], dims, g->nlist);
    case GI_TRIL: return nb_tril(x[0], g->a);
    case GI_TRIU: return nb_triu(x[0], g->a);
    case GI_PAD: return nb_pad(x[0], g->list, g->nlist, 0.5);
    default: return NULL;
    }
}

static nb_tensor *ix_gfn(nb_tensor *const *x, int n, void *u) {
    const ix_gop *g = u;
    nb_tensor *y = ix_apply(x, n, g);
    return g->square ? nb_mul(y, y) : y;
}

/* gradcheck and gradgradcheck of the op alone and squared. */
static void ix_gcheck(const char *what, ix_gop g, nb_tensor **x, int n) {
    for (int sq = 0; sq < 2; sq++) {
        g.square = sq;
        nb_gradcheck_opts o = {.user = &g};
        nb_gradcheck_report r;
        memset(&r, 0, sizeof r);
        int rc = nb_gradcheck(ix_gfn, x, n, &o, &r);
        cr_expect_eq(rc, 0, "%s%s: gradcheck %d: %s (input %d, out %lld, in %lld: %.10g vs %.10g)", what,
                     sq ? " squared" : "", rc, nb_last_error(), r.input, (long long)r.out_index,
                     (long long)r.in_index, r.analytic, r.numeric);
        memset(&r, 0, sizeof r);
        rc = nb_gradgradcheck(ix_gfn, x, n, &o, &r);
        cr_expect_eq(rc, 0, "%s%s: gradgradcheck %d: %s (input %d, out %lld, in %lld: %.10g vs %.10g)", what,
                     sq ? " squared" : "", rc, nb_last_error(), r.input, (long long)r.out_index,
                     (long long)r.in_index, r.analytic, r.numeric);
    }
}

Test(idx_grad, cat_stack) {
    nb_scope_begin();
    nb_tensor *x[3] = {ix_leaf(NB_SHAPE(2, 3), 't'), ix_leaf(NB_SHAPE(2, 1), 'c'), ix_leaf(NB_SHAPE(2, 2), 's')};
    ix_gcheck("cat dim 1", (ix_gop){.op = GI_CAT, .dim = 1}, x, 3);
    nb_tensor *e[3] = {ix_leaf(NB_SHAPE(1, 3), 'c'), ix_leaf(NB_SHAPE(0), 'c'), ix_leaf(NB_SHAPE(2, 3), 't')};
    ix_gcheck("cat with a legacy [0]", (ix_gop){.op = GI_CAT, .dim = 0}, e, 3);
    nb_tensor *s[3] = {ix_leaf(NB_SHAPE(2, 3), 't'), ix_leaf(NB_SHAPE(2, 3), 'c'), ix_leaf(NB_SHAPE(2, 3), 's')};
    ix_gcheck("stack dim 1", (ix_gop){.op = GI_STACK, .dim = 1}, s, 3);
    ix_gcheck("stack dim -1", (ix_gop){.op = GI_STACK, .dim = -1}, s, 2);
    nb_scope_end();
}

Test(idx_grad, views) {
    nb_scope_begin();
    nb_tensor *x = ix_leaf(NB_SHAPE(7, 3), 't');
    ix_gcheck("split 3 + cat", (ix_gop){.op = GI_SPLIT_CAT, .dim = 0, .a = 3}, &x, 1);
    ix_gcheck("chunk", (ix_gop){.op = GI_CHUNK, .dim = 1, .a = 3}, &x, 1);
    ix_gcheck("narrow", (ix_gop){.op = GI_NARROW, .dim = 0, .a = -4, .b = 3}, &x, 1);
    ix_gcheck("flatten (copy)", (ix_gop){.op = GI_FLATTEN, .dim = 0, .a = -1}, &x, 1);
    nb_scope_end();
}

Test(idx_grad, index_select_gather) {
    nb_scope_begin();
    nb_tensor *x = ix_leaf(NB_SHAPE(4, 3), 't');
    const int64_t iv[5] = {3, 0, 3, 1, 3};
    ix_gcheck("index_select dim 0", (ix_gop){.op = GI_INDEX_SELECT, .dim = 0, .index = ix_index(NB_SHAPE(5), iv)},
              &x, 1);
    const int64_t jv[2] = {2, 0};
    ix_gcheck("index_select dim 1", (ix_gop){.op = GI_INDEX_SELECT, .dim = 1, .index = ix_index(NB_SHAPE(2), jv)},
              &x, 1);
    const int64_t gv[6] = {2, 0, 0, 1, 1, 2};
    ix_gcheck("gather dim 1", (ix_gop){.op = GI_GATHER, .dim = 1, .index = ix_index(NB_SHAPE(3, 2), gv)}, &x, 1);
    ix_gcheck("gather dim 0", (ix_gop){.op = GI_GATHER, .dim = 0, .index = ix_index(NB_SHAPE(2, 3), gv)}, &x, 1);
    nb_scope_end();
}

Test(idx_grad, scatter_add_index_add) {
    nb_scope_begin();
    nb_tensor *x[2] = {ix_leaf(NB_SHAPE(3, 4), 't'), ix_leaf(NB_SHAPE(2, 5), 's')};
    const int64_t sv[6] = {2, 0, 2, 1, 0, 0};
    ix_gcheck("scatter_add dim 0, src larger",
              (ix_gop){.op = GI_SCATTER_ADD, .dim = 0, .index = ix_index(NB_SHAPE(2, 3), sv)}, x, 2);
    nb_tensor *y[2] = {ix_leaf(NB_SHAPE(3, 4), 'c'), ix_leaf(NB_SHAPE(3, 3), 't')};
    ix_gcheck("scatter_add dim 1", (ix_gop){.op = GI_SCATTER_ADD, .dim = 1, .index = ix_index(NB_SHAPE(3, 2), sv)},
              y, 2);
    const int64_t av[3] = {1, 3, 1};
    nb_tensor *z[2] = {ix_leaf(NB_SHAPE(4, 2), 't'), ix_leaf(NB_SHAPE(3, 2), 's')};
    ix_gcheck("index_add dim 0", (ix_gop){.op = GI_INDEX_ADD, .dim = 0, .index = ix_index(NB_SHAPE(3), av)}, z, 2);
    nb_scope_end();
}

Test(idx_grad, embedding) {
    nb_scope_begin();
    nb_tensor *w = ix_leaf(NB_SHAPE(5, 3), 't');
    const int64_t ev[6] = {4, 0, 2, 2, 4, 1};
    nb_tensor *idx = ix_index(NB_SHAPE(2, 3), ev);
    ix_gcheck("embedding", (ix_gop){.op = GI_EMBEDDING, .a = NB_NO_PADDING, .index = idx}, &w, 1);
    /* a padding row that is looked up gets no gradient though the output
     * depends on it (PyTorch's rule, so finite differences disagree there):
     * check the other rows with a padding_idx that is not looked up */
    ix_gcheck("embedding padding 3", (ix_gop){.op = GI_EMBEDDING, .a = 3, .index = idx}, &w, 1);
    ix_gcheck("embedding padding -2", (ix_gop){.op = GI_EMBEDDING, .a = -2, .index = idx}, &w, 1);
    nb_scope_end();
}

Test(idx_grad, repeat_flip_tri_pad) {
    nb_scope_begin();
    nb_tensor *x = ix_leaf(NB_SHAPE(2, 3), 't');
    ix_gcheck("repeat (2, 1, 2)", (ix_gop){.op = GI_REPEAT, .list = {2, 1, 2}, .nlist = 3}, &x, 1);
    ix_gcheck("repeat (1, 3)", (ix_gop){.op = GI_REPEAT, .list = {1, 3}, .nlist = 2}, &x, 1);
    ix_gcheck("flip (0, 1)", (ix_gop){.op = GI_FLIP, .list = {0, -1}, .nlist = 2}, &x, 1);
    nb_tensor *m = ix_leaf(NB_SHAPE(2, 3, 4), 's');
    ix_gcheck("tril 0", (ix_gop){.op = GI_TRIL, .a = 0}, &m, 1);
    ix_gcheck("tril -1", (ix_gop){.op = GI_TRIL, .a = -1}, &m, 1);
    ix_gcheck("triu 1", (ix_gop){.op = GI_TRIU, .a = 1}, &m, 1);
    ix_gcheck("pad (1, 2)", (ix_gop){.op = GI_PAD, .list = {1, 2}, .nlist = 2}, &x, 1);
    ix_gcheck("pad crop (-1, 1, 1, -1)", (ix_gop){.op = GI_PAD, .list = {-1, 1, 1, -1}, .nlist = 4}, &x, 1);
    nb_scope_end();
}

/* ================= idx_bad: what the ops refuse ================= */

static uint64_t ix_live_at_start;

static void ix_bad_init(void) {
    ix_setup();
    ix_live_at_start = nb_memory_stats().live_tensors;
    nb_clear_error();
    nb_scope_begin();
}
static void ix_bad_fini(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}
TestSuite(idx_bad, .init = ix_bad_init, .fini = ix_bad_fini);

#define IX_END()                                                                                          \
    do {                                                                                                  \
        nb_scope_end();                                                                                   \
        cr_assert_eq(nb_memory_stats().live_tensors, ix_live_at_start, "tensors left alive after the scope"); \
    } while (0)

/* The last error is `code` and its message holds every string that follows. */
#define IX_ERR(code, ...)                                                                                  \
    do {                                                                                                   \
        const char *m_ = nb_last_error();                                                                  \
        cr_assert_eq(nb_last_error_code(), (code), "error %s, expected %s: \"%s\"",                       \
                     nb_error_name(nb_last_error_code()), nb_error_name(code), m_);                       \
        const char *s_[] = {__VA_ARGS__};                                                                  \
        for (size_t i_ = 0; i_ < sizeof s_ / sizeof s_[0]; i_++)                                           \
            cr_assert(strstr(m_, s_[i_]) != NULL, "message \"%s\" does not mention \"%s\"", m_, s_[i_]);   \
    } while (0)
#define IX_NULL(expr, code, ...)                                             \
    do {                                                                     \
        nb_clear_error();                                                    \
        cr_assert_null((expr), "%s: expected NULL", #expr);                  \
        IX_ERR(code, __VA_ARGS__);                                           \
    } while (0)
#define IX_RC(expr, code, ...)                                               \
    do {                                                                     \
        nb_clear_error();                                                    \
        int r_ = (expr);                                                     \
        cr_assert_eq(r_, (code), "%s returned %d", #expr, r_);               \
        IX_ERR(code, __VA_ARGS__);                                           \
    } while (0)

static nb_tensor *ix_i64(nb_dims shape, const int64_t *v) { return nb_from_data(shape, NB_I64, v); }

Test(idx_bad, index_out_of_range) {
    nb_tensor *x = nb_zeros(NB_SHAPE(3, 4), NB_F32);
    const int64_t big[2] = {1, 5}, neg[2] = {0, -1};
    nb_tensor *ib = ix_i64(NB_SHAPE(2), big), *in = ix_i64(NB_SHAPE(2), neg);
    IX_NULL(nb_index_select(x, 0, ib), NB_ERANGE, "nb_index_select", "index 5", "[1]", "[0, 3)", "dim 0");
    IX_NULL(nb_index_select(x, 1, in), NB_ERANGE, "nb_index_select", "index -1", "[0, 4)");
    nb_tensor *gb = ix_i64(NB_SHAPE(1, 2), big), *gn = ix_i64(NB_SHAPE(1, 2), neg);
    IX_NULL(nb_gather(x, 1, gb), NB_ERANGE, "nb_gather", "index 5", "[0, 1]", "[0, 4)");
    IX_NULL(nb_gather(x, 0, gn), NB_ERANGE, "nb_gather", "index -1", "[0, 3)");
    nb_tensor *src = nb_ones(NB_SHAPE(1, 2), NB_F32);
    IX_NULL(nb_scatter_add(x, 0, gb, src), NB_ERANGE, "nb_scatter_add", "index 5", "[0, 3)");
    IX_NULL(nb_scatter_add(x, 1, gn, src), NB_ERANGE, "nb_scatter_add", "index -1", "[0, 4)");
    nb_tensor *s2 = nb_ones(NB_SHAPE(2, 4), NB_F32);
    IX_NULL(nb_index_add(x, 0, ib, s2), NB_ERANGE, "nb_index_add", "index 5", "[0, 3)");
    IX_NULL(nb_index_add(x, 0, in, s2), NB_ERANGE, "nb_index_add", "index -1");
    nb_tensor *w = nb_zeros(NB_SHAPE(5, 2), NB_F32);
    IX_NULL(nb_embedding(ib, w, NB_NO_PADDING), NB_ERANGE, "nb_embedding", "index 5", "[0, 5)", "[5, 2]");
    IX_NULL(nb_embedding(in, w, NB_NO_PADDING), NB_ERANGE, "nb_embedding", "index -1");
    IX_NULL(nb_embedding(ib, w, 5), NB_ERANGE, "nb_embedding", "padding_idx 5", "[-5, 5)");
    IX_NULL(nb_one_hot(ib, 3), NB_ERANGE, "nb_one_hot", "class value 5", "num_classes 3");
    IX_NULL(nb_one_hot(in, 3), NB_ERANGE, "nb_one_hot", "class value -1");
    IX_NULL(nb_one_hot(in, -1), NB_ERANGE, "nb_one_hot", "class value -1");
    /* a large index (the range check's blocked scan): the first bad value and its position */
    int64_t *many = malloc(sizeof *many * 3 * 700);
    for (int i = 0; i < 3 * 700; i++) many[i] = i % 4;
    many[2 * 700 + 613] = -3, many[2 * 700 + 650] = 9;
    nb_tensor *im = ix_i64(NB_SHAPE(3, 700), many);
    nb_tensor *xm = nb_zeros(NB_SHAPE(3, 4), NB_F32);
    IX_NULL(nb_gather(xm, 1, im), NB_ERANGE, "nb_gather", "index -3", "[2, 613]", "[0, 4)");
    many[2 * 700 + 613] = 1;
    nb_tensor *im2 = ix_i64(NB_SHAPE(3, 700), many);
    IX_NULL(nb_gather(xm, 1, im2), NB_ERANGE, "nb_gather", "index 9", "[2, 650]", "[0, 4)");
    free(many);
    IX_END();
}

Test(idx_bad, index_dtype_and_shape) {
    nb_tensor *x = nb_zeros(NB_SHAPE(3, 4), NB_F64);
    nb_tensor *fi = nb_zeros(NB_SHAPE(2), NB_F32), *i2 = nb_zeros(NB_SHAPE(2, 2), NB_I64);
    IX_NULL(nb_index_select(x, 0, fi), NB_EDTYPE, "nb_index_select", "i64", "f32");
    IX_NULL(nb_index_select(x, 0, i2), NB_ESHAPE, "nb_index_select", "[2, 2]");
    IX_NULL(nb_gather(x, 0, fi), NB_EDTYPE, "nb_gather", "i64");
    IX_NULL(nb_gather(x, 0, nb_zeros(NB_SHAPE(4), NB_I64)), NB_ESHAPE, "nb_gather", "[4]", "[3, 4]");
    IX_NULL(nb_gather(x, 0, nb_zeros(NB_SHAPE(2, 5), NB_I64)), NB_ESHAPE, "nb_gather", "[2, 5]");
    IX_NULL(nb_scatter_add(x, 0, i2, nb_ones(NB_SHAPE(2, 2), NB_F32)), NB_EDTYPE, "nb_scatter_add", "f64", "f32");
    IX_NULL(nb_scatter_add(x, 0, nb_zeros(NB_SHAPE(2, 3), NB_I64), nb_ones(NB_SHAPE(2, 2), NB_F64)), NB_ESHAPE,
            "nb_scatter_add", "[2, 3]", "src", "[2, 2]");
    IX_NULL(nb_index_add(x, 1, nb_zeros(NB_SHAPE(2), NB_I64), nb_ones(NB_SHAPE(3, 3), NB_F64)), NB_ESHAPE,
            "nb_index_add", "[3, 3]", "[3, 4]");
    nb_tensor *w = nb_zeros(NB_SHAPE(5, 2), NB_F32);
    IX_NULL(nb_embedding(fi, w, NB_NO_PADDING), NB_EDTYPE, "nb_embedding", "i64", "f32");
    IX_NULL(nb_embedding(w, i2, NB_NO_PADDING), NB_EDTYPE, "nb_embedding", "indices");
    IX_NULL(nb_embedding(i2, nb_zeros(NB_SHAPE(5), NB_F32), NB_NO_PADDING), NB_ESHAPE, "nb_embedding", "[5]");
    IX_NULL(nb_one_hot(fi, 3), NB_EDTYPE, "nb_one_hot", "f32");
    IX_NULL(nb_one_hot(nb_zeros(NB_SHAPE(0), NB_I64), -1), NB_EINVAL, "nb_one_hot", "empty");
    IX_NULL(nb_one_hot(i2, -2), NB_EINVAL, "nb_one_hot", "-2");
    IX_END();
}

Test(idx_bad, dims_out_of_range) {
    nb_tensor *x = nb_zeros(NB_SHAPE(3, 4), NB_F32), *i = nb_zeros(NB_SHAPE(1), NB_I64);
    nb_tensor *l[2] = {x, x};
    IX_NULL(nb_cat(l, 2, 2), NB_ERANGE, "nb_cat", "dim 2");
    IX_NULL(nb_stack(l, 2, 3), NB_ERANGE, "nb_stack", "dim 3");
    IX_NULL(nb_index_select(x, -3, i), NB_ERANGE, "nb_index_select", "dim -3");
    IX_NULL(nb_gather(x, 2, nb_zeros(NB_SHAPE(1, 1), NB_I64)), NB_ERANGE, "nb_gather");
    IX_NULL(nb_flatten(x, 0, 2), NB_ERANGE, "nb_flatten");
    IX_NULL(nb_flatten(x, 1, 0), NB_EINVAL, "nb_flatten", "start_dim");
    IX_NULL(nb_narrow(x, 0, 2, 2), NB_ERANGE, "nb_narrow", "start (2) + length (2)", "size 3");
    IX_NULL(nb_narrow(x, 1, -5, 1), NB_ERANGE, "nb_narrow", "start -5");
    IX_NULL(nb_flip(x, (int[]){0, -2}, 2), NB_EINVAL, "nb_flip", "multiple");
    IX_NULL(nb_flip(x, (int[]){2}, 1), NB_ERANGE, "nb_flip", "dim 2");
    IX_NULL(nb_tril(nb_zeros(NB_SHAPE(3), NB_F32), 0), NB_ESHAPE, "nb_tril", "[3]");
    IX_NULL(nb_triu(nb_scalar(1), 0), NB_ESHAPE, "nb_triu");
    IX_RC(nb_split(x, 2, 2, NULL, 0), NB_ERANGE, "nb_split", "dim 2");
    IX_RC(nb_chunk(x, 2, -3, NULL, 0), NB_ERANGE, "nb_chunk");
    IX_END();
}

Test(idx_bad, mismatched_lists_and_sizes) {
    nb_tensor *a = nb_zeros(NB_SHAPE(2, 3), NB_F32), *b = nb_zeros(NB_SHAPE(3, 4), NB_F32);
    nb_tensor *c = nb_zeros(NB_SHAPE(2, 3), NB_F64), *s = nb_scalar(1);
    IX_NULL(nb_cat((nb_tensor *[]){a, b}, 2, 0), NB_ESHAPE, "nb_cat", "[2, 3]", "[3, 4]", "dim 0");
    IX_NULL(nb_cat((nb_tensor *[]){a, c}, 2, 0), NB_EDTYPE, "nb_cat", "f32", "f64");
    IX_NULL(nb_cat((nb_tensor *[]){a}, 0, 0), NB_EINVAL, "nb_cat", "non-empty");
    IX_NULL(nb_cat((nb_tensor *[]){s, s}, 2, 0), NB_EINVAL, "nb_cat", "zero-dimensional");
    IX_NULL(nb_cat((nb_tensor *[]){a, nb_zeros(NB_SHAPE(2), NB_F32)}, 2, 0), NB_ESHAPE, "nb_cat", "[2]");
    IX_NULL(nb_stack((nb_tensor *[]){a, b}, 2, 0), NB_ESHAPE, "nb_stack", "[2, 3]", "[3, 4]");
    IX_NULL(nb_stack((nb_tensor *[]){a, c}, 2, 0), NB_EDTYPE, "nb_stack");
    IX_NULL(nb_stack((nb_tensor *[]){a}, 0, 0), NB_EINVAL, "nb_stack");
    nb_tensor *p[2];
    IX_RC(nb_split(a, 0, 1, p, 2), NB_EINVAL, "nb_split", "split_size 0");
    IX_RC(nb_split(a, 1, 1, p, 2), NB_EINVAL, "nb_split", "holds 2", "3 are needed");
    IX_RC(nb_chunk(a, 0, 1, p, 2), NB_EINVAL, "nb_chunk", "chunks");
    IX_RC(nb_split(s, 1, 0, p, 2), NB_EINVAL, "nb_split", "0-dim");
    IX_NULL(nb_repeat(a, (int64_t[]){2}, 1), NB_EINVAL, "nb_repeat", "[2, 3]");
    IX_NULL(nb_repeat(a, (int64_t[]){2, -1}, 2), NB_EINVAL, "nb_repeat", "-1");
    IX_NULL(nb_pad(a, (int64_t[]){1, 1, 1}, 3, 0), NB_EINVAL, "nb_pad", "3 entries");
    IX_NULL(nb_pad(a, (int64_t[]){1, 1, 1, 1, 1, 1}, 6, 0), NB_EINVAL, "nb_pad", "[2, 3]");
    IX_NULL(nb_pad(a, (int64_t[]){-2, -2}, 2, 0), NB_ESHAPE, "nb_pad", "negative size -1");
    IX_END();
}

Test(idx_bad, null_arguments) {
    nb_tensor *x = nb_zeros(NB_SHAPE(3, 4), NB_F32), *i = nb_zeros(NB_SHAPE(1), NB_I64), *p[4];
    IX_NULL(nb_flatten(NULL, 0, -1), NB_ENULLARG, "nb_flatten");
    IX_NULL(nb_narrow(NULL, 0, 0, 1), NB_ENULLARG, "nb_narrow");
    IX_NULL(nb_cat(NULL, 2, 0), NB_ENULLARG, "nb_cat", "tensors");
    IX_NULL(nb_cat((nb_tensor *[]){x, NULL}, 2, 0), NB_ENULLARG, "nb_cat", "tensors[1]");
    IX_NULL(nb_stack((nb_tensor *[]){NULL, x}, 2, 0), NB_ENULLARG, "nb_stack", "tensors[0]");
    IX_RC(nb_split(NULL, 1, 0, p, 4), NB_ENULLARG, "nb_split");
    IX_RC(nb_chunk(NULL, 1, 0, p, 4), NB_ENULLARG, "nb_chunk");
    IX_NULL(nb_index_select(x, 0, NULL), NB_ENULLARG, "nb_index_select", "index");
    IX_NULL(nb_gather(NULL, 0, i), NB_ENULLARG, "nb_gather");
    IX_NULL(nb_scatter_add(x, 0, i, NULL), NB_ENULLARG, "nb_scatter_add", "src");
    IX_NULL(nb_index_add(x, 0, NULL, x), NB_ENULLARG, "nb_index_add");
    IX_NULL(nb_embedding(NULL, x, NB_NO_PADDING), NB_ENULLARG, "nb_embedding");
    IX_NULL(nb_repeat(x, NULL, 2), NB_ENULLARG, "nb_repeat", "repeats");
    IX_NULL(nb_flip(NULL, NULL, 0), NB_ENULLARG, "nb_flip");
    IX_NULL(nb_tril(NULL, 0), NB_ENULLARG, "nb_tril");
    IX_NULL(nb_triu(NULL, 0), NB_ENULLARG, "nb_triu");
    IX_NULL(nb_one_hot(NULL, 3), NB_ENULLARG, "nb_one_hot");
    IX_NULL(nb_pad(x, NULL, 2, 0), NB_ENULLARG, "nb_pad", "pad");
    /* a chain keeps the first failure's message */
    nb_clear_error();
    cr_assert_null(nb_flip(nb_gather(x, 0, nb_zeros(NB_SHAPE(1, 1), NB_F32)), (int[]){0}, 1));
    IX_ERR(NB_EDTYPE, "nb_gather");
    IX_END();
}

/* ================= idx_misc ================= */

TestSuite(idx_misc, .init = ix_setup);

/* The I64 / BOOL kernels move values exactly. */
Test(idx_misc, integer_and_bool_dtypes) {
    nb_scope_begin();
    const int64_t big = (int64_t)1 << 60;
    const int64_t av[6] = {big + 1, -2, 3, big + 4, 5, -6};
    for (int k = 0; k < 2; k++) {
        nb_dtype dt = k ? NB_BOOL : NB_I64;
        nb_tensor *a = nb_from_data(NB_SHAPE(2, 3), NB_I64, av);
        if (dt == NB_BOOL) a = nb_to_dtype(nb_add_scalar(a, -3), NB_BOOL);   /* 1 1 0 1 1 1 */
        const int64_t iv[2] = {2, 0};
        nb_tensor *idx = nb_from_data(NB_SHAPE(2), NB_I64, iv);
        nb_tensor *r[] = {
            nb_cat((nb_tensor *[]){a, a}, 2, 1), nb_stack((nb_tensor *[]){a, a}, 2, 0),
            nb_index_select(a, 1, idx), nb_gather(a, 1, nb_from_data(NB_SHAPE(2, 1), NB_I64, iv)),
            nb_flip(a, (int[]){1}, 1), nb_repeat(a, (int64_t[]){1, 2}, 2), nb_tril(a, 0),
            nb_pad(a, (int64_t[]){1, 0}, 2, 1.0),
        };
        for (int i = 0; i < IX_LEN(r); i++) {
            cr_assert(r[i] != NULL, "%s op %d: %s", nb_dtype_name(dt), i, nb_last_error());
            cr_expect_eq(nb_dtype(r[i]), dt, "op %d gave %s", i, nb_dtype_name(nb_dtype(r[i])));
        }
        if (dt == NB_I64) {   /* values beyond 2^53 survive */
            int64_t got[12];
            cr_assert_eq(nb_copy_to(r[0], got, sizeof got), 0);
            cr_expect_eq(got[0], big + 1);
            cr_expect_eq(got[3], big + 1);
            cr_assert_eq(nb_copy_to(r[2], got, sizeof(int64_t) * 4), 0);
            cr_expect(got[0] == 3 && got[1] == big + 1 && got[2] == -6 && got[3] == big + 4);
            cr_assert_eq(nb_copy_to(r[4], got, sizeof(int64_t) * 6), 0);
            cr_expect(got[0] == 3 && got[2] == big + 1);
        } else {
            bool got[8];   /* pad (1, 0) with true: 1 | 1 1 0 / 1 | 1 1 1 */
            cr_assert_eq(nb_copy_to(r[7], got, sizeof(bool) * 8), 0);
            cr_expect(got[0] && got[1] && got[2] && !got[3] && got[4] && got[5] && got[6] && got[7]);
        }
    }
    nb_tensor *oh = nb_one_hot(nb_from_data(NB_SHAPE(3), NB_I64, (int64_t[]){2, 0, 2}), -1);
    cr_assert(oh != NULL, "%s", nb_last_error());
    int64_t ov[9];
    cr_assert_eq(nb_copy_to(oh, ov, sizeof ov), 0);
    const int64_t want[9] = {0, 0, 1, 1, 0, 0, 0, 0, 1};
    cr_expect(nb_ndim(oh) == 2 && nb_shape(oh)[1] == 3 && !memcmp(ov, want, sizeof ov), "one_hot");
    nb_scope_end();
}

/* split/chunk: count mode, pieces are views, fewer chunks than asked, empty dims. */
Test(idx_misc, split_chunk_api) {
    nb_scope_begin();
    nb_tensor *a = nb_arange(0, 12, 1, NB_F64);
    nb_tensor *p[8] = {0};
    cr_assert_eq(nb_split(a, 5, 0, NULL, 0), 3);
    cr_assert_eq(nb_split(a, 5, 0, p, 8), 3, "%s", nb_last_error());
    cr_expect(nb_numel(p[0]) == 5 && nb_numel(p[1]) == 5 && nb_numel(p[2]) == 2);
    cr_expect_eq(nb_data(p[1]), (double *)nb_data(a) + 5, "split pieces should be views");
    cr_expect_eq(nb_chunk(nb_ones(NB_SHAPE(6), NB_F32), 4, 0, NULL, 0), 3, "6 in 4 chunks: 3 pieces of 2");
    cr_expect_eq(nb_chunk(nb_ones(NB_SHAPE(0, 2), NB_F32), 3, 0, p, 8), 3, "an empty dim gives `chunks` pieces");
    cr_expect_eq(nb_split(nb_ones(NB_SHAPE(0), NB_F32), 0, 0, p, 8), 1);
    nb_tensor *before = p[0];
    cr_expect_lt(nb_split(a, 1, 0, p, 8), 0);
    cr_expect_eq(p[0], before, "a failing split must leave the array unchanged");
    nb_scope_end();
    /* no scope open: the caller owns each piece */
    uint64_t live = nb_memory_stats().live_tensors;
    nb_tensor *t = nb_ones(NB_SHAPE(4), NB_F32);
    cr_assert_eq(nb_chunk(t, 2, 0, p, 8), 2);
    nb_release(p[0]);
    nb_release(p[1]);
    nb_release(t);
    cr_expect_eq(nb_memory_stats().live_tensors, live);
}

/* Embedding: the padding row gets exactly zero gradient; gradients of repeated
 * indices add up. */
Test(idx_misc, embedding_padding_grad) {
    nb_scope_begin();
    nb_tensor *w = nb_ones(NB_SHAPE(4, 2), NB_F32);
    nb_set_requires_grad(w, true);
    nb_tensor *idx = nb_from_data(NB_SHAPE(5), NB_I64, (int64_t[]){1, 3, 1, 1, 0});
    nb_tensor *y = nb_embedding(idx, w, 1);
    cr_assert(y != NULL, "%s", nb_last_error());
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    float g[8];
    cr_assert_eq(nb_copy_to(nb_grad(w), g, sizeof g), 0);
    const float want[8] = {1, 1, 0, 0, 0, 0, 1, 1};
    for (int i = 0; i < 8; i++) cr_expect_eq(g[i], want[i], "grad[%d] = %g", i, g[i]);
    nb_scope_end();
}

/* Every public op is a registry op with F32 and F64 ref kernels. */
Test(idx_misc, registry_entries) {
    const nb_op ops[] = {NB_OP_CAT, NB_OP_STACK, NB_OP_INDEX_SELECT, NB_OP_GATHER, NB_OP_SCATTER_ADD,
                         NB_OP_INDEX_ADD, NB_OP_EMBEDDING, NB_OP_REPEAT, NB_OP_FLIP, NB_OP_TRIL,
                         NB_OP_TRIU, NB_OP_PAD};
    for (int i = 0; i < IX_LEN(ops); i++)
        for (int d = 0; d < 2; d++)
            cr_expect(nb_kernel_chosen(ops[i], d ? NB_F64 : NB_F32) != NULL, "no kernel for %s %s",
                      nb_op_name(ops[i]), d ? "f64" : "f32");
    cr_expect(nb_kernel_chosen(NB_OP_ONE_HOT, NB_I64) != NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f != NULL);
    nb_registry_dump(f);
    fclose(f);
    const char *names[] = {"cat", "stack", "index_select", "gather", "scatter_add", "index_add", "embedding",
                           "repeat", "flip", "tril", "triu", "one_hot", "pad"};
    for (int i = 0; i < IX_LEN(names); i++) cr_expect(strstr(buf, names[i]) != NULL, "dump lacks %s", names[i]);
    free(buf);
}

/* A forward + backward through every op inside a scope leaves no tensor behind. */
Test(idx_misc, no_leaks) {
    uint64_t live = nb_memory_stats().live_tensors;
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(4, 3), NB_F32, 3);
    nb_set_requires_grad(x, true);
    nb_tensor *i = nb_from_data(NB_SHAPE(2), NB_I64, (int64_t[]){3, 1});
    nb_tensor *y = nb_cat((nb_tensor *[]){x, nb_flip(x, (int[]){0}, 1)}, 2, 0);
    y = nb_add(nb_index_select(y, 0, i), nb_narrow(nb_tril(x, 0), 0, 1, 2));
    y = nb_pad(nb_repeat(y, (int64_t[]){2, 1}, 2), (int64_t[]){1, -1}, 2, 0);
    y = nb_add(nb_sum_all(y), nb_sum_all(nb_embedding(i, x, 1)));
    cr_assert(y != NULL, "%s", nb_last_error());
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    nb_scope_end();
    cr_expect_eq(nb_memory_stats().live_tensors, live, "tensors left alive after the scope");
}

/* 0-dim tensors stand in for 1-element vectors where PyTorch allows it. */
static nb_tensor *ix_f64(nb_dims shape, const double *v) {
    nb_tensor *t = nb_from_data(shape, NB_F64, v);
    cr_assert(t != NULL, "%s", nb_last_error());
    nb_set_requires_grad(t, true);
    return t;
}

Test(idx_misc, zero_dim) {
    nb_scope_begin();
    const int64_t zz[2] = {0, 0}, two = 2;
    nb_tensor *s = ix_f64(NB_SHAPE0, (double[]){3.0});
    nb_tensor *g = nb_gather(s, 0, nb_from_data(NB_SHAPE(2), NB_I64, zz));   /* [3, 3] */
    cr_assert(g != NULL, "%s", nb_last_error());
    cr_expect(nb_ndim(g) == 1 && nb_numel(g) == 2 && nb_get(g, (int64_t[]){1}) == 3.0);
    nb_tensor *t = ix_f64(NB_SHAPE(5), (double[]){1, 1, 1, 1, 1});
    nb_tensor *src = ix_f64(NB_SHAPE0, (double[]){4.0});
    nb_tensor *sa = nb_scatter_add(t, 0, nb_from_data(NB_SHAPE0, NB_I64, &two), src);   /* [1, 1, 5, 1, 1] */
    cr_assert(sa != NULL, "%s", nb_last_error());
    cr_expect(nb_ndim(sa) == 1 && nb_get(sa, (int64_t[]){2}) == 5.0 && nb_get(sa, (int64_t[]){3}) == 1.0);
    nb_tensor *one = ix_f64(NB_SHAPE0, (double[]){1.0});
    nb_tensor *ia = nb_index_add(one, 0, nb_from_data(NB_SHAPE(2), NB_I64, zz), ix_f64(NB_SHAPE(2), (double[]){4, 5}));
    cr_assert(ia != NULL, "%s", nb_last_error());
    cr_expect(nb_ndim(ia) == 0 && nb_item(ia) == 10.0, "index_add 0-dim: %g", nb_item(ia));
    nb_tensor *is = nb_index_select(s, 0, nb_from_data(NB_SHAPE(1), NB_I64, zz));
    cr_assert(is != NULL, "%s", nb_last_error());
    cr_expect(nb_ndim(is) == 0 && nb_item(is) == 3.0);
    nb_tensor *loss = nb_add(nb_add(nb_sum_all(g), nb_sum_all(nb_mul(sa, sa))), nb_add(ia, is));
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
    cr_expect_eq(nb_item(nb_grad(s)), 3.0, "d/ds: 2 from gather + 1 from index_select");
    cr_expect_eq(nb_item(nb_grad(src)), 10.0, "d/dsrc of sum(sa^2) = 2 * 5");
    cr_expect_eq(nb_item(nb_grad(one)), 1.0);
    nb_scope_end();
}
