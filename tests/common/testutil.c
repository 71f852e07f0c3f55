/* testutil.c — helpers shared by the test executables. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double tu_u01(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}

/* A float's place on the line of representable floats (-0 and +0 both 0). */
static int64_t f32_ord(float f) {
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? (int64_t)INT32_MIN - i : i;
}

double tu_ulps_f32(float got, float want) {
    if (isnan(got) || isnan(want)) return isnan(got) && isnan(want) ? 0 : 1e30;
    int64_t d = f32_ord(got) - f32_ord(want);
    return (double)(d < 0 ? -d : d);
}

static bool same_shape(const nb_tensor *a, const nb_tensor *b) {
    if (nb_ndim(a) != nb_ndim(b)) return false;
    for (int i = 0; i < nb_ndim(a); i++)
        if (nb_shape(a)[i] != nb_shape(b)[i]) return false;
    return true;
}

static double *as_doubles(const nb_tensor *t) {
    nb_tensor *d = nb_to_dtype((nb_tensor *)t, NB_F64);
    int64_t n = nb_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (d && v) nb_copy_to(d, v, sizeof(double) * (size_t)n);
    if (nb_scope_depth() == 0) nb_release(d);
    return v;
}

double tu_max_abs_diff(const nb_tensor *a, const nb_tensor *b) {
    if (!a || !b || !same_shape(a, b)) return INFINITY;
    double *x = as_doubles(a), *y = as_doubles(b), m = 0;
    for (int64_t i = 0; i < nb_numel(a); i++) {
        double d = fabs(x[i] - y[i]);
        if (isnan(x[i]) != isnan(y[i])) d = INFINITY;
        if (d > m) m = d;
    }
    free(x);
    free(y);
    return m;
}

bool tu_allclose(const nb_tensor *a, const nb_tensor *b, double rtol, double atol) {
    if (!a || !b || !same_shape(a, b)) return false;
    double *x = as_doubles(a), *y = as_doubles(b);
    bool ok = true;
    for (int64_t i = 0; i < nb_numel(a) && ok; i++) {
        if (isnan(x[i]) || isnan(y[i])) ok = isnan(x[i]) && isnan(y[i]);
        else if (isinf(x[i]) || isinf(y[i])) ok = x[i] == y[i];
        else ok = fabs(x[i] - y[i]) <= atol + rtol * fabs(y[i]);
    }
    free(x);
    free(y);
    return ok;
}

nb_tensor *tu_tensor(nb_dims shape, nb_dtype dt, const double *vals) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.d[i];
    nb_tensor *d = nb_from_data(shape, NB_F64, vals);
    if (dt == NB_F64) return d;
    nb_tensor *r = nb_to_dtype(d, dt);
    if (nb_scope_depth() == 0) {
        nb_retain(r);
        nb_release(d);
        nb_release(r);
    }
    (void)n;
    return r;
}

/* ---- PyTorch reference cases ---------------------------------------------
 * reference.txt is read whole and parsed line by line; the format is
 * documented at the top of tests/data/gen_reference.py. */

#ifndef NB_TEST_DATA_DIR
#define NB_TEST_DATA_DIR "tests/data"
#endif

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        char *nb = realloc(buf, 2 * cap + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    return buf;
}

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* Reads a word into out (cap bytes); returns the position after it. */
static const char *read_word(const char *p, char *out, size_t cap) {
    size_t n = 0;
    p = skip_ws(p);
    while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
        if (n + 1 < cap) out[n++] = *p;
        p++;
    }
    out[n] = '\0';
    return p;
}

/* Parses "NDIM D0 .. : V V .." into t; returns 0 or -1. */
static int parse_tensor(const char *p, tu_ref_tensor *t) {
    char *end;
    long nd = strtol(p, &end, 10);
    if (end == p || nd < 0 || nd > NB_MAX_DIMS) return -1;
    p = end;
    t->shape.ndim = (int)nd;
    t->numel = 1;
    for (int i = 0; i < nd; i++) {
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 0) return -1;
        p = end;
        t->shape.d[i] = d;
        t->numel *= d;
    }
    p = skip_ws(p);
    if (*p != ':') return -1;
    p++;
    t->vals = malloc(sizeof(double) * (size_t)(t->numel ? t->numel : 1));
    if (!t->vals) return -1;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = strtod(p, &end);
        if (end == p) return -1;
        t->vals[i] = v;
        p = end;
    }
    p = skip_ws(p);
    return (*p == '\n' || *p == '\0') ? 0 : -1;
}

static int parse_arg(const char *p, tu_ref_arg *a) {
    p = read_word(p, a->key, sizeof a->key);
    a->n = 0;
    a->word[0] = '\0';
    for (;;) {
        p = skip_ws(p);
        if (*p == '\n' || *p == '\0') return 0;
        char *end;
        double v = strtod(p, &end);
        if (end == p) { /* a word value */
            read_word(p, a->word, sizeof a->word);
            return 0;
        }
        if (a->n >= NB_MAX_DIMS) return -1;
        a->v[a->n++] = v;
        p = end;
    }
}

static void free_case_data(tu_ref_case *c) {
    for (int i = 0; i < TU_REF_MAX_IN; i++) {
        free(c->in[i].vals);
        free(c->grad[i].vals);
    }
    free(c->w.vals);
    free(c->out.vals);
    memset(c, 0, sizeof *c);
}

void tu_ref_free_set(tu_ref_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free_case_data(&s->cases[i]);
    free(s->cases);
    free(s);
}

tu_ref_set *tu_ref_load_all(void) { return tu_ref_load_all_from("reference.txt"); }

tu_ref_set *tu_ref_load_all_from(const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NB_TEST_DATA_DIR, file);
    char *text = read_file(path);
    if (!text) {
        fprintf(stderr, "tu_ref_load_all: cannot read %s\n", path);
        return NULL;
    }
    tu_ref_set *s = calloc(1, sizeof *s);
    int cap = 0, lineno = 0, n_in = 0, n_grad = 0;
    tu_ref_case *c = NULL;
    const char *p = text;
    if (!s) goto fail;
    while (*p) {
        const char *nl = strchr(p, '\n');
        const char *next = nl ? nl + 1 : p + strlen(p);
        char kw[16];
        lineno++;
        const char *q = read_word(p, kw, sizeof kw);
        if (kw[0] == '\0' || kw[0] == '#') {
            p = next;
            continue;
        }
        if (!strcmp(kw, "case")) {
            if (s->n == cap) {
                cap = cap ? 2 * cap : 64;
                tu_ref_case *nc = realloc(s->cases, sizeof *nc * (size_t)cap);
                if (!nc) goto fail;
                s->cases = nc;
            }
            c = &s->cases[s->n++];
            memset(c, 0, sizeof *c);
            char num[16];
            q = read_word(q, c->name, sizeof c->name);
            q = read_word(q, c->op, sizeof c->op);
            read_word(q, num, sizeof num);
            c->n_in = atoi(num);
            if (c->n_in < 0 || c->n_in > TU_REF_MAX_IN) goto bad;
            n_in = n_grad = 0;
        } else if (!c) {
            goto bad;
        } else if (!strcmp(kw, "arg")) {
            if (c->n_args >= TU_REF_MAX_ARGS || parse_arg(q, &c->args[c->n_args]) != 0) goto bad;
            c->n_args++;
        } else if (!strcmp(kw, "in")) {
            char lay[4];
            q = read_word(q, lay, sizeof lay);
            if (n_in >= c->n_in) goto bad;
            c->in[n_in].layout = lay[0];
            if (parse_tensor(q, &c->in[n_in++]) != 0) goto bad;
        } else if (!strcmp(kw, "w")) {
            if (parse_tensor(q, &c->w) != 0) goto bad;
        } else if (!strcmp(kw, "out")) {
            if (parse_tensor(q, &c->out) != 0) goto bad;
        } else if (!strcmp(kw, "grad")) {
            if (n_grad >= c->n_in || parse_tensor(q, &c->grad[n_grad++]) != 0) goto bad;
        } else if (!strcmp(kw, "end")) {
            if (n_in != c->n_in || n_grad != c->n_in || !c->out.vals || !c->w.vals) goto bad;
            c = NULL;
        } else {
            goto bad;
        }
        p = next;
    }
    free(text);
    return s;
bad:
    fprintf(stderr, "tu_ref_load_all: %s:%d: malformed line\n", path, lineno);
fail:
    tu_ref_free_set(s);
    free(text);
    return NULL;
}

void tu_ref_free(tu_ref_case *c) {
    if (!c) return;
    free_case_data(c);
    free(c);
}

tu_ref_case *tu_ref_load(const char *name) { return tu_ref_load_from("reference.txt", name); }

tu_ref_case *tu_ref_load_from(const char *file, const char *name) {
    tu_ref_set *s = tu_ref_load_all_from(file);
    tu_ref_case *r = NULL;
    for (int i = 0; s && i < s->n; i++) {
        if (strcmp(s->cases[i].name, name) != 0) continue;
        r = malloc(sizeof *r);
        if (r) { /* move the case out of the set */
            *r = s->cases[i];
            memset(&s->cases[i], 0, sizeof s->cases[i]);
        }
        break;
    }
    tu_ref_free_set(s);
    return r;
}

const tu_ref_arg *tu_ref_arg_get(const tu_ref_case *c, const char *key) {
    for (int i = 0; i < c->n_args; i++)
        if (!strcmp(c->args[i].key, key)) return &c->args[i];
    return NULL;
}

nb_tensor *tu_make_layout(nb_dims shape, nb_dtype dt, const double *vals, char layout) {
    int nd = shape.ndim;
    int64_t numel = 1;
    for (int i = 0; i < nd; i++) numel *= shape.d[i];
    if (layout == 'c') return nb_detach(tu_tensor(shape, dt, vals));
    if ((layout == 't' && nd < 2) || (layout == 's' && nd < 1)) return NULL;
    if (layout != 't' && layout != 's') return NULL;

    nb_dims mem = shape;
    int64_t cols = shape.d[nd - 1];
    int64_t rows = layout == 't' ? shape.d[nd - 2] : 1;
    int64_t n_mem = layout == 't' ? numel : 2 * numel;
    double *buf = malloc(sizeof(double) * (size_t)(n_mem ? n_mem : 1));
    if (!buf) return NULL;
    nb_tensor *view = NULL;
    if (layout == 't') { /* memory holds [..., cols, rows] */
        mem.d[nd - 2] = cols;
        mem.d[nd - 1] = rows;
        int64_t blk = rows * cols;
        for (int64_t b = 0; blk && b < numel / blk; b++)
            for (int64_t i = 0; i < rows; i++)
                for (int64_t j = 0; j < cols; j++)
                    buf[b * blk + j * rows + i] = vals[b * blk + i * cols + j];
        view = nb_transpose(tu_tensor(mem, dt, buf), nd - 2, nd - 1);
    } else { /* memory holds [..., 2*cols], the values at even positions */
        mem.d[nd - 1] = 2 * cols;
        for (int64_t k = 0; k < n_mem; k++) buf[k] = NAN;
        for (int64_t k = 0; cols && k < numel / cols; k++)
            for (int64_t j = 0; j < cols; j++) buf[k * 2 * cols + 2 * j] = vals[k * cols + j];
        view = nb_slice(tu_tensor(mem, dt, buf), nd - 1, 0, 2 * cols, 2);
    }
    free(buf);
    return nb_detach(view);
}

nb_tensor *tu_ref_make(const tu_ref_tensor *t, nb_dtype dt) {
    return tu_make_layout(t->shape, dt, t->vals, t->layout ? t->layout : 'c');
}

static void format_dims(char *buf, size_t cap, int nd, const int64_t *d) {
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < nd && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ",%lld" : "%lld", (long long)d[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

bool tu_check_close(const nb_tensor *got, nb_dims shape, const double *exp,
                    double rtol, double atol, char *msg, size_t cap) {
    char s1[128], s2[128];
    if (!got) {
        snprintf(msg, cap, "got NULL (%s)", nb_last_error());
        return false;
    }
    bool same = nb_ndim(got) == shape.ndim;
    for (int i = 0; same && i < shape.ndim; i++) same = nb_shape(got)[i] == shape.d[i];
    if (!same) {
        format_dims(s1, sizeof s1, nb_ndim(got), nb_shape(got));
        format_dims(s2, sizeof s2, shape.ndim, shape.d);
        snprintf(msg, cap, "shape %s, expected %s", s1, s2);
        return false;
    }
    double *x = as_doubles(got);
    if (!x) {
        snprintf(msg, cap, "out of memory");
        return false;
    }
    int64_t worst = -1;
    double worst_ratio = 1.0;
    for (int64_t i = 0; i < nb_numel(got); i++) {
        double e = exp[i], g = x[i], ratio;
        if (isnan(e) || isnan(g)) ratio = (isnan(e) && isnan(g)) ? 0 : INFINITY;
        else if (isinf(e) || isinf(g)) ratio = e == g ? 0 : INFINITY;
        else ratio = fabs(g - e) / (atol + rtol * fabs(e));
        if (ratio > worst_ratio || (isinf(ratio) && worst < 0)) {
            worst_ratio = ratio;
            worst = i;
        }
    }
    if (worst >= 0)
        snprintf(msg, cap, "element %lld (flat) of %lld: got %.17g, expected %.17g "
                 "(|diff| %.3g > atol %.3g + rtol %.3g * |expected|)",
                 (long long)worst, (long long)nb_numel(got), x[worst], exp[worst],
                 fabs(x[worst] - exp[worst]), atol, rtol);
    free(x);
    return worst < 0;
}
