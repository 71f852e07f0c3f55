/* csv.c — the CSV reader: numeric columns, an optional header row, one
 * chosen label column, gzipped or not.
 *
 * The whole file is read (decompressed) into memory, then parsed line by
 * line into growable arrays of features (double) and labels (int64), which
 * become the tensors at the end. Every problem names its line and column
 * (1-based, as an editor shows them).
 */
#include "data/data.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct csv_state {
    const char *who, *path;    /* for messages */
    nb_csv_opts o;             /* options, label_column resolved */
    int ncols;                 /* cells per row (from the first row) */
    int label;                 /* 0-based label column, or -1 */
    double *x;                 /* features, row-major */
    int64_t *y;                /* labels */
    int64_t rows, cap;         /* rows stored and allocated */
} csv_state;

/* Trims spaces and one pair of double quotes around [*b, *e). */
static void trim(const char **b, const char **e) {
    while (*b < *e && isspace((unsigned char)**b)) (*b)++;
    while (*e > *b && isspace((unsigned char)(*e)[-1])) (*e)--;
    if (*e - *b >= 2 && **b == '"' && (*e)[-1] == '"') {
        (*b)++;
        (*e)--;
    }
}

/* Parses [b, e) as a whole number; false when it is not one. */
static bool parse_num(const char *b, const char *e, double *v) {
    char tmp[128];
    trim(&b, &e);
    size_t n = (size_t)(e - b);
    if (n == 0 || n >= sizeof tmp) return false;
    memcpy(tmp, b, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    *v = strtod(tmp, &end);
    return end == tmp + n && !(errno == ERANGE && isinf(*v));
}

/* Splits line [b, e) at the delimiter into at most max cells. */
static int split(const char *b, const char *e, char delim, const char **cb, const char **ce, int max) {
    int n = 0;
    for (const char *p = b;; p++) {
        if (p == e || *p == delim) {
            if (n < max) {
                cb[n] = b;
                ce[n] = p;
            }
            n++;
            b = p + 1;
            if (p == e) break;
        }
    }
    return n;
}

static int grow(csv_state *s) {
    if (s->rows < s->cap) return 0;
    int64_t nc = s->cap ? s->cap * 2 : 1024;
    if ((uint64_t)nc * (uint64_t)s->ncols > ((uint64_t)1 << 40))
        return nb__err(NB_EIO, "%s: %s has too many cells", s->who, s->path);
    double *x = realloc(s->x, sizeof *x * (size_t)nc * (size_t)s->ncols);
    if (x) s->x = x;
    int64_t *y = realloc(s->y, sizeof *y * (size_t)nc);
    if (y) s->y = y;
    if (!x || !y) return nb__err(NB_ENOMEM, "%s: out of memory reading %s", s->who, s->path);
    s->cap = nc;
    return 0;
}

/* Stores one data row (its cells already split). */
static int add_row(csv_state *s, int64_t line, const char **cb, const char **ce) {
    int rc = grow(s);
    if (rc) return rc;
    double *x = s->x + s->rows * (s->ncols - (s->label >= 0));
    for (int c = 0; c < s->ncols; c++) {
        double v;
        if (!parse_num(cb[c], ce[c], &v)) {
            const char *b = cb[c], *e = ce[c];
            trim(&b, &e);
            return nb__err(NB_EIO, "%s: %s line %lld column %d: '%.*s' is not a number", s->who, s->path,
                           (long long)line, c + 1, (int)(e - b > 40 ? 40 : e - b), b);
        }
        if (c == s->label) {
            if (!(v == floor(v)) || fabs(v) > 9.0e15)
                return nb__err(NB_EIO, "%s: %s line %lld column %d: label %g is not an integer", s->who, s->path,
                               (long long)line, c + 1, v);
            s->y[s->rows] = (int64_t)v;
        } else {
            *x++ = v;
        }
    }
    s->rows++;
    return 0;
}

/* Parses the text; fills s. */
static int parse(csv_state *s, const char *text, size_t len) {
    const char *p = text, *end = text + len;
    const char **cb = NULL, **ce = NULL;
    int rc = 0, maxc = 0;
    bool first = true;
    for (int64_t line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        const char *b = p, *e = le;
        p = nl ? nl + 1 : end;
        trim(&b, &e);
        if (b == e) continue;   /* blank line */
        int n = split(b, e, s->o.delimiter, cb, ce, maxc);
        if (first) {   /* the first row fixes the column count */
            s->ncols = n;
            maxc = n;
            cb = malloc(sizeof *cb * (size_t)n);
            ce = malloc(sizeof *ce * (size_t)n);
            if (!cb || !ce) {
                rc = nb__err(NB_ENOMEM, "%s: out of memory", s->who);
                break;
            }
            split(b, e, s->o.delimiter, cb, ce, maxc);
            int lc = s->o.label_column;
            if (lc != NB_CSV_NO_LABEL) {
                if (lc < -n || lc >= n) {
                    rc = nb__err(NB_EINVAL, "%s: label column %d out of range for %s's %d columns", s->who, lc,
                                 s->path, n);
                    break;
                }
                s->label = lc < 0 ? lc + n : lc;
            }
            if (n - (s->label >= 0) < 1) {
                rc = nb__err(NB_EIO, "%s: %s has no feature columns (%d column%s)", s->who, s->path, n,
                             n == 1 ? "" : "s");
                break;
            }
            first = false;
            bool header = s->o.header == 1;
            if (s->o.header < 0)   /* a header when some cell is not a number */
                for (int c = 0; c < n && !header; c++) {
                    double v;
                    header = !parse_num(cb[c], ce[c], &v);
                }
            if (header) continue;
        } else if (n != s->ncols) {
            rc = nb__err(NB_EIO, "%s: %s line %lld has %d cells; expected %d as in the first row", s->who, s->path,
                         (long long)line, n, s->ncols);
            break;
        }
        if ((rc = add_row(s, line, cb, ce))) break;
    }
    free(cb);
    free(ce);
    if (!rc && s->rows == 0) rc = nb__err(NB_EIO, "%s: %s has no data rows", s->who, s->path);
    return rc;
}

NB_API int nb_load_csv(const char *path, const nb_csv_opts *opts, nb_tensor **features, nb_tensor **labels) {
    const char *who = "nb_load_csv";
    if (features) *features = NULL;
    if (labels) *labels = NULL;
    if (!path || !features)
        return nb__err(NB_ENULLARG, "%s: %s is NULL", who, path ? "features" : "path");
    csv_state s = {.who = who, .path = path, .o = opts ? *opts : NB_CSV_OPTS_DEFAULT, .label = -1};
    if (s.o.dtype != NB_F32 && s.o.dtype != NB_F64)
        return nb__err(NB_EDTYPE, "%s: features dtype must be f32 or f64", who);
    if (s.o.header < -1 || s.o.header > 1)
        return nb__err(NB_EINVAL, "%s: header is %d (expected -1, 0 or 1)", who, s.o.header);
    if (s.o.delimiter == 0 || s.o.delimiter == '\n' || s.o.delimiter == '"')
        return nb__err(NB_EINVAL, "%s: bad delimiter", who);
    char *text;
    size_t len;
    int rc = nb__data_slurp(who, path, &text, &len);
    if (rc) return rc;
    rc = parse(&s, text, len);
    free(text);
    if (rc) goto out;
    int nf = s.ncols - (s.label >= 0);
    nb_tensor *x = nb__new(who, s.o.dtype, 2, (int64_t[]){s.rows, nf});
    nb_tensor *y = s.label >= 0 && labels ? nb__new(who, NB_I64, 1, (int64_t[]){s.rows}) : NULL;
    if (!x || (s.label >= 0 && labels && !y)) {
        nb_release(x);
        rc = nb_last_error_code();
        goto out;
    }
    int64_t n = s.rows * nf;
    if (s.o.dtype == NB_F64)
        memcpy(nb_data(x), s.x, sizeof(double) * (size_t)n);
    else
        for (int64_t i = 0; i < n; i++) ((float *)nb_data(x))[i] = (float)s.x[i];
    if (y) memcpy(nb_data(y), s.y, sizeof(int64_t) * (size_t)s.rows);
    *features = nb__scoped(x);
    if (labels) *labels = nb__scoped(y);
    if (!*features || (y && !*labels)) {
        *features = NULL;
        if (labels) *labels = NULL;
        rc = NB_ENOMEM;
    }
out:
    free(s.x);
    free(s.y);
    return rc;
}
