/* test_models.c — whole small models against PyTorch: the loss and the
 * gradient of every parameter.
 *
 * tests/data/ref_models.txt is written by tests/data/gen_ref_models.py (which
 * documents the format and the two models); the parameters and inputs there
 * are float32 values drawn from fixed seeds, the references are PyTorch's
 * float64 results from those same values.
 *
 * models/mlp_f32, models/mlp_f64:
 *     x (16, 20) -> nb_linear 20->32 -> nb_relu -> nb_linear 32->5
 *     -> nb_cross_entropy (mean) with I64 targets (16); checks the loss and
 *     the gradients of fc1/fc2 weight and bias.
 * models/transformer_f32, models/transformer_f64:
 *     one pre-norm block, batch 2, seq 7, vocab 11, d_model 16, 2 heads,
 *     ffn 32: nb_embedding of I64 tokens (2, 7) + a learned positional
 *     embedding (7, 16) (broadcast nb_add); nb_layer_norm; q, k, v by
 *     nb_linear, split into heads with nb_reshape + nb_transpose; causal
 *     nb_scaled_dot_product_attention; heads merged back (nb_transpose +
 *     nb_reshape); output projection; residual nb_add; nb_layer_norm,
 *     nb_linear 16->32, exact nb_gelu, nb_linear 32->16, residual; final
 *     nb_layer_norm, nb_linear 16->11 to logits; nb_cross_entropy over
 *     (14, 11) against the targets flattened to (14). Checks the loss and
 *     the gradient of all 22 parameters (embeddings, every linear's weight
 *     and bias, every layer_norm's weight and bias).
 *
 * Error measure, per tensor: rel = max|got - exp| / max|exp| (the loss: one
 * element). F32 runs must give rel < 1e-4, F64 runs rel < 1e-12. One
 * gradient is zero in exact arithmetic: k.bias (adding q·b_k to a whole row
 * of scores leaves the softmax unchanged), so its reference is ~1e-18 noise
 * and max|exp| means nothing; a reference whose max|exp| is below 1e-12 of
 * the model's largest gradient is checked as max|got - exp| / (largest
 * gradient of the model) under the same bound. The measured errors are
 * printed on stderr. Each run happens in a scope and must leave no tensor
 * alive.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#ifndef NB_TEST_DATA_DIR
#define NB_TEST_DATA_DIR "tests/data"
#endif

static void md_setup(void) { cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error()); }
static void md_fini(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
}

TestSuite(models, .init = md_setup, .fini = md_fini);

/* ---- ref_models.txt ---- */

#define MD_MAX_T 32

typedef struct md_tensor {
    char name[32];
    nb_dims shape;
    int64_t numel;
    double *vals;     /* C order */
} md_tensor;

typedef struct md_model {
    int n_in, n_param;
    md_tensor in[MD_MAX_T];       /* inputs (no gradient) */
    md_tensor param[MD_MAX_T];    /* parameters, in the order of grad */
    md_tensor grad[MD_MAX_T];     /* d loss / d param[i] */
    double loss;
    bool has_loss;
} md_model;

static char *md_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len >= 0 && fseek(f, 0, SEEK_SET) == 0) buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[len] = '\0';
    fclose(f);
    return buf;
}

/* Parses "NAME NDIM D0 .. : V V .." (p at NAME) into t, up to the end of the
 * line; returns the position after the line, or NULL when malformed. */
static const char *md_parse_tensor(const char *p, md_tensor *t) {
    int n = 0;
    while (*p == ' ') p++;
    while (*p && *p != ' ' && *p != '\n') {
        if (n + 1 >= (int)sizeof t->name) return NULL;
        t->name[n++] = *p++;
    }
    t->name[n] = '\0';
    char *end;
    long nd = strtol(p, &end, 10);
    if (end == p || nd < 0 || nd > NB_MAX_DIMS) return NULL;
    p = end;
    t->shape.ndim = (int)nd;
    t->numel = 1;
    for (int d = 0; d < nd; d++) {
        long long s = strtoll(p, &end, 10);
        if (end == p || s < 0) return NULL;
        t->shape.d[d] = s;
        t->numel *= s;
        p = end;
    }
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    t->vals = malloc(sizeof(double) * (size_t)(t->numel > 0 ? t->numel : 1));
    if (!t->vals) return NULL;
    for (int64_t i = 0; i < t->numel; i++) {
        t->vals[i] = strtod(p, &end);
        if (end == p) return NULL;
        p = end;
    }
    while (*p == ' ') p++;
    if (*p && *p != '\n') return NULL;
    return *p ? p + 1 : p;
}

static void md_free(md_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_in; i++) free(m->in[i].vals);
    for (int i = 0; i < m->n_param; i++) free(m->param[i].vals);
    for (int i = 0; i < m->n_param; i++) free(m->grad[i].vals);
    free(m);
}

/* The model `name` of ref_models.txt, or NULL (message on stderr). */
static md_model *md_load(const char *name) {
    char *buf = md_read_file(NB_TEST_DATA_DIR "/ref_models.txt");
    if (!buf) {
        fprintf(stderr, "cannot read " NB_TEST_DATA_DIR "/ref_models.txt\n");
        return NULL;
    }
    md_model *m = calloc(1, sizeof *m);
    bool inside = false, done = false, bad = false;
    int n_grad = 0, lineno = 0;
    const char *p = buf;
    while (m && *p && !done && !bad) {
        lineno++;
        const char *eol = strchr(p, '\n');
        const char *next = eol ? eol + 1 : p + strlen(p);
        char word[16] = {0};
        int w = 0;
        while (p[w] && p[w] != ' ' && p[w] != '\n' && w < 15) {
            word[w] = p[w];
            w++;
        }
        const char *rest = p + w;
        if (!strcmp(word, "model")) {
            while (*rest == ' ') rest++;
            size_t len = strlen(name);
            inside = !strncmp(rest, name, len) && (rest[len] == '\n' || rest[len] == '\0');
        } else if (!inside || p[0] == '#' || p[0] == '\n') {
            /* another model's line, a comment or an empty line */
        } else if (!strcmp(word, "end")) {
            done = true;
        } else if (!strcmp(word, "loss")) {
            char *end;
            m->loss = strtod(rest, &end);
            m->has_loss = end != rest;
            bad = !m->has_loss;
        } else if (!strcmp(word, "input") || !strcmp(word, "param") || !strcmp(word, "grad")) {
            md_tensor *t = NULL;
            if (word[0] == 'i' && m->n_in < MD_MAX_T) t = &m->in[m->n_in++];
            if (word[0] == 'p' && m->n_param < MD_MAX_T) t = &m->param[m->n_param++];
            if (word[0] == 'g' && n_grad < m->n_param) t = &m->grad[n_grad++];
            bad = !t || !md_parse_tensor(rest, t);
            if (!bad && word[0] == 'g') bad = strcmp(t->name, m->param[n_grad - 1].name) != 0;
            /* inputs and parameters are float32 values written with 9 digits:
             * round back to the float32 value, which is what the float64
             * references were computed from (also for the F64 runs) */
            if (!bad && word[0] != 'g')
                for (int64_t j = 0; j < t->numel; j++) t->vals[j] = (double)(float)t->vals[j];
        } else {
            bad = true;
        }
        p = next;
    }
    free(buf);
    if (m && (bad || !done || !m->has_loss || n_grad != m->n_param)) {
        fprintf(stderr, "ref_models.txt: model %s %s (line %d)\n", name,
                bad ? "malformed" : "missing or incomplete", lineno);
        md_free(m);
        m = NULL;
    }
    return m;
}

/* ---- running a model ---- */

typedef struct md_run {
    const md_model *m;
    nb_dtype dt;
    nb_tensor *in[MD_MAX_T];
    nb_tensor *param[MD_MAX_T];
} md_run;

/* Input or parameter `name` (asserts it exists). */
static nb_tensor *md_in(const md_run *r, const char *name) {
    for (int i = 0; i < r->m->n_in; i++)
        if (!strcmp(r->m->in[i].name, name)) return r->in[i];
    cr_assert_fail("ref_models.txt: no input %s", name);
    return NULL;
}
static nb_tensor *md_p(const md_run *r, const char *name) {
    for (int i = 0; i < r->m->n_param; i++)
        if (!strcmp(r->m->param[i].name, name)) return r->param[i];
    cr_assert_fail("ref_models.txt: no parameter %s", name);
    return NULL;
}

/* nb_linear with the parameters `name`.weight and `name`.bias. */
static nb_tensor *md_linear(const md_run *r, nb_tensor *x, const char *name) {
    char w[40], b[40];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    return nb_linear(x, md_p(r, w), md_p(r, b));
}
static nb_tensor *md_layer_norm(const md_run *r, nb_tensor *x, const char *name) {
    char w[40], b[40];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    return nb_layer_norm(x, NB_SHAPE(nb_size(x, -1)), md_p(r, w), md_p(r, b), NULL);
}

static nb_tensor *mlp_forward(const md_run *r) {
    nb_tensor *h = nb_relu(md_linear(r, md_in(r, "x"), "fc1"));
    nb_tensor *logits = md_linear(r, h, "fc2");
    return nb_cross_entropy(logits, md_in(r, "y"));
}

enum { TF_B = 2, TF_T = 7, TF_V = 11, TF_D = 16, TF_H = 2, TF_HD = TF_D / TF_H };

/* (B, T, D) -> (B, H, T, HD) and back. */
static nb_tensor *tf_split_heads(nb_tensor *x) {
    return nb_transpose(nb_reshape(x, NB_SHAPE(TF_B, TF_T, TF_H, TF_HD)), 1, 2);
}
static nb_tensor *tf_merge_heads(nb_tensor *x) {
    return nb_reshape(nb_transpose(x, 1, 2), NB_SHAPE(TF_B, TF_T, TF_D));
}

static nb_tensor *transformer_forward(const md_run *r) {
    nb_tensor *x = nb_add(nb_embedding(md_in(r, "tokens"), md_p(r, "tok_emb"), NB_NO_PADDING), md_p(r, "pos_emb"));
    /* attention */
    nb_tensor *h = md_layer_norm(r, x, "ln1");
    nb_tensor *q = tf_split_heads(md_linear(r, h, "q"));
    nb_tensor *k = tf_split_heads(md_linear(r, h, "k"));
    nb_tensor *v = tf_split_heads(md_linear(r, h, "v"));
    nb_sdpa_opts so = {.is_causal = true};
    nb_tensor *att = nb_scaled_dot_product_attention(q, k, v, NULL, &so);
    x = nb_add(x, md_linear(r, tf_merge_heads(att), "o"));
    /* feed-forward */
    h = md_layer_norm(r, x, "ln2");
    x = nb_add(x, md_linear(r, nb_gelu(md_linear(r, h, "fc1"), false), "fc2"));
    /* head and loss */
    nb_tensor *logits = md_linear(r, md_layer_norm(r, x, "lnf"), "head");
    return nb_cross_entropy(nb_reshape(logits, NB_SHAPE(TF_B * TF_T, TF_V)),
                            nb_reshape(md_in(r, "targets"), NB_SHAPE(TF_B * TF_T)));
}

static double md_max_abs(const double *v, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

/* Loads model `name`, builds its parameters in dt, runs forward + backward
 * and checks the loss and every gradient: max|got-exp| / max|exp| < tol per
 * tensor (see the top of the file for gradients that are exactly zero). */
static void md_check(const char *name, nb_tensor *(*forward)(const md_run *), nb_dtype dt, double tol) {
    md_model *m = md_load(name);
    cr_assert_not_null(m, "model %s not found in ref_models.txt", name);
    uint64_t live0 = nb_memory_stats().live_tensors;
    char fail[1024] = "";
    nb_scope_begin();
    md_run r = {.m = m, .dt = dt};
    for (int i = 0; i < m->n_in; i++) {
        /* integer-valued inputs (tokens, targets) are class indices */
        bool is_int = true;
        for (int64_t j = 0; j < m->in[i].numel; j++)
            if (m->in[i].vals[j] != floor(m->in[i].vals[j])) is_int = false;
        bool index = is_int && strcmp(m->in[i].name, "x") != 0;
        r.in[i] = tu_tensor(m->in[i].shape, index ? NB_I64 : dt, m->in[i].vals);
        cr_assert_not_null(r.in[i], "input %s: %s", m->in[i].name, nb_last_error());
    }
    for (int i = 0; i < m->n_param; i++) {
        r.param[i] = tu_tensor(m->param[i].shape, dt, m->param[i].vals);
        cr_assert_not_null(r.param[i], "param %s: %s", m->param[i].name, nb_last_error());
        cr_assert_eq(nb_set_requires_grad(r.param[i], true), 0);
    }
    nb_tensor *loss = forward(&r);
    cr_assert_not_null(loss, "%s forward: %s", name, nb_last_error());
    cr_assert_eq(nb_ndim(loss), 0);
    cr_assert_eq(nb_dtype(loss), dt);
    cr_assert_eq(nb_backward(loss, NULL), 0, "%s backward: %s", name, nb_last_error());

    double got_loss = nb_item(loss);
    double rel_loss = fabs(got_loss - m->loss) / fabs(m->loss);
    fprintf(stderr, "[models] %s %s: loss %.9g (PyTorch %.9g) rel %.3g\n", name, nb_dtype_name(dt), got_loss,
            m->loss, rel_loss);
    if (!(rel_loss < tol))
        snprintf(fail, sizeof fail, "%s %s: loss %.9g, PyTorch %.9g, rel %.3g", name, nb_dtype_name(dt), got_loss,
                 m->loss, rel_loss);

    double scale = 0;   /* the model's largest gradient */
    for (int i = 0; i < m->n_param; i++) scale = fmax(scale, md_max_abs(m->grad[i].vals, m->grad[i].numel));
    double worst = 0;
    for (int i = 0; i < m->n_param && !fail[0]; i++) {
        const md_tensor *g = &m->grad[i];
        nb_tensor *got = nb_grad(r.param[i]);
        if (!got) {
            snprintf(fail, sizeof fail, "%s: no gradient for %s", name, g->name);
            break;
        }
        double den = md_max_abs(g->vals, g->numel);
        bool zero = den <= 1e-12 * scale;
        if (zero) den = scale;
        double err = tu_max_abs_diff(got, tu_tensor(g->shape, NB_F64, g->vals));
        double rel = err / den;
        worst = fmax(worst, rel);
        fprintf(stderr, "[models] %s %s: grad %-11s rel %.3g%s\n", name, nb_dtype_name(dt), g->name, rel,
                zero ? " (exactly 0; vs largest gradient)" : "");
        char msg[512] = "";
        if (!tu_check_close(got, g->shape, g->vals, 0, tol * den, msg, sizeof msg) || !(rel < tol))
            snprintf(fail, sizeof fail, "%s %s: grad %s: rel %.3g >= %g: %s", name, nb_dtype_name(dt), g->name, rel,
                     tol, msg);
    }
    if (!fail[0])
        fprintf(stderr, "[models] %s %s: worst gradient rel %.3g over %d parameters\n", name, nb_dtype_name(dt),
                worst, m->n_param);
    nb_scope_end();
    uint64_t live1 = nb_memory_stats().live_tensors;
    md_free(m);
    cr_assert(!fail[0], "%s", fail);
    cr_assert_eq(live1, live0, "%s: %llu tensors left alive", name, (unsigned long long)(live1 - live0));
}

Test(models, mlp_f32) { md_check("mlp", mlp_forward, NB_F32, 1e-4); }
Test(models, mlp_f64) { md_check("mlp", mlp_forward, NB_F64, 1e-12); }
Test(models, transformer_f32) { md_check("transformer", transformer_forward, NB_F32, 1e-4); }
Test(models, transformer_f64) { md_check("transformer", transformer_forward, NB_F64, 1e-12); }
