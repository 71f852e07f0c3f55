/* print.c — PyTorch's tensor repr: nb_print, nb_fprint, nb_format.
 *
 * The output is character for character that of PyTorch 1.13's
 * torch/_tensor_str.py with default print options (precision 4, threshold
 * 1000, edgeitems 3, linewidth 80), so a test can compare against a string
 * PyTorch printed. Two deliberate differences:
 *   - dtypes are named without the module: `dtype=float64`, where PyTorch
 *     writes `dtype=torch.float64`;
 *   - a grad_fn is named as nb_grad_fn_name gives it (`MulBackward`), where
 *     PyTorch appends the node's version (`MulBackward0`).
 *
 * How PyTorch does it, and so how this file does it:
 *  1. One formatter for the whole tensor, from its elements (only the ones
 *     shown, when it is summarized): for floats, over the nonzero finite
 *     values, int mode (all are integers: `1.`), sci mode (max/min > 1000,
 *     max > 1e8, or, outside int mode, min < 1e-4: `%.4e`), else `%.4f`; the
 *     width is the widest of those values' strings. Ints and bools use their
 *     plain text. Every element is right-aligned to that width.
 *  2. The nested brackets: a row wraps at 80 columns; sub-tensors of a k-dim
 *     tensor are joined by "," and k-1 newlines, then indent+1 spaces.
 *  3. Over 1000 elements, each dim longer than 6 shows its first and last 3
 *     entries around "...".
 *  4. Suffixes (dtype, requires_grad / grad_fn) follow ", ", or go on a new
 *     line when the last line would pass 80 columns.
 * The string is built in a growable heap buffer, so any tensor prints.
 */
#include "runtime/runtime.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PR_PRECISION 4      /* digits after the point */
#define PR_THRESHOLD 1000   /* summarize above this many elements */
#define PR_EDGEITEMS 3      /* entries kept at each end when summarizing */
#define PR_LINEWIDTH 80     /* columns */
#define PR_PREFIX "tensor("
#define PR_INDENT 7         /* strlen(PR_PREFIX) */
#define PR_VALCAP 400       /* one formatted value: "%.4f" of DBL_MAX is 315 */

/* ---- a growable string ---- */

typedef struct strbuf {
    char *p;       /* heap, NUL-terminated when not failed */
    size_t len;    /* bytes used, without the NUL */
    size_t cap;    /* bytes allocated */
    bool failed;   /* an allocation failed; p holds what fitted before */
} strbuf;

static bool sb_reserve(strbuf *sb, size_t extra) {
    if (sb->failed) return false;
    if (sb->len + extra + 1 <= sb->cap) return true;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *p = realloc(sb->p, cap);
    if (!p) {
        sb->failed = true;
        return false;
    }
    sb->p = p;
    sb->cap = cap;
    return true;
}

static void sb_putn(strbuf *sb, const char *s, size_t n) {
    if (!sb_reserve(sb, n)) return;
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = 0;
}

static void sb_puts(strbuf *sb, const char *s) { sb_putn(sb, s, strlen(s)); }

static void sb_repeat(strbuf *sb, char c, int n) {
    if (n <= 0 || !sb_reserve(sb, (size_t)n)) return;
    memset(sb->p + sb->len, c, (size_t)n);
    sb->len += (size_t)n;
    sb->p[sb->len] = 0;
}

/* ---- elements ---- */

/* The address of the element at `off` elements from the storage start. */
static const void *elem_ptr(const nb_tensor *t, int64_t off) {
    return (const char *)t->storage->data + off * (int64_t)nb_dtype_size(t->dtype);
}

static bool is_floating(nb_dtype dt) { return dt == NB_F32 || dt == NB_F64; }

/* Calls visit on every element shown: all of them, or with `summarize`, the
 * first and last PR_EDGEITEMS along each dim longer than 2*PR_EDGEITEMS (the
 * elements PyTorch's get_summarized_data keeps). */
typedef void (*visit_fn)(void *ctx, const nb_tensor *t, int64_t off);
static void walk(const nb_tensor *t, int dim, int64_t off, bool summarize,
                 visit_fn visit, void *ctx) {
    if (dim == t->ndim) {
        visit(ctx, t, off);
        return;
    }
    int64_t n = t->shape[dim], st = t->stride[dim];
    bool cut = summarize && n > 2 * PR_EDGEITEMS;
    for (int64_t i = 0; i < n; i++) {
        if (cut && i == PR_EDGEITEMS) i = n - PR_EDGEITEMS;
        walk(t, dim + 1, off + i * st, summarize, visit, ctx);
    }
}

/* ---- the formatter (PyTorch's _Formatter) ---- */

typedef struct formatter {
    bool floating;      /* F32/F64 */
    bool int_mode;      /* floats that are all integers: "1." */
    bool sci_mode;      /* "%.4e" */
    int width;          /* every element is right-aligned to this */
    /* scan state */
    int64_t count;      /* nonzero finite values seen */
    double min_abs;     /* of those */
    double max_abs;
} formatter;

/* Formats one element without padding into buf (PR_VALCAP bytes); returns
 * its length. NaN is "nan" whatever its sign, as Python writes it. */
static int format_value(char *buf, const formatter *f, const nb_tensor *t, int64_t off) {
    const void *p = elem_ptr(t, off);
    if (t->dtype == NB_I64) {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return snprintf(buf, PR_VALCAP, "%" PRId64, v);
    }
    if (t->dtype == NB_BOOL)
        return snprintf(buf, PR_VALCAP, "%s", nb__load(p, t->dtype) != 0 ? "True" : "False");
    double v = nb__load(p, t->dtype);
    if (isnan(v)) return snprintf(buf, PR_VALCAP, "nan");
    if (isinf(v)) return snprintf(buf, PR_VALCAP, "%s", v < 0 ? "-inf" : "inf");
    if (f->sci_mode) return snprintf(buf, PR_VALCAP, "%.*e", PR_PRECISION, v);
    if (f->int_mode) return snprintf(buf, PR_VALCAP, "%.0f.", v);
    return snprintf(buf, PR_VALCAP, "%.*f", PR_PRECISION, v);
}

/* Pass 1 for floats: the range of the nonzero finite values, and int mode. */
static void scan_range(void *ctx, const nb_tensor *t, int64_t off) {
    formatter *f = ctx;
    double v = nb__load(elem_ptr(t, off), t->dtype);
    if (!isfinite(v) || v == 0) return;
    double a = fabs(v);
    if (f->count == 0 || a < f->min_abs) f->min_abs = a;
    if (f->count == 0 || a > f->max_abs) f->max_abs = a;
    if (v != ceil(v)) f->int_mode = false;
    f->count++;
}

/* Pass 2: the width. For floats only the nonzero finite values count, so a
 * nan or inf may be wider than the rest (then it is not padded). */
static void scan_width(void *ctx, const nb_tensor *t, int64_t off) {
    formatter *f = ctx;
    if (f->floating) {
        double v = nb__load(elem_ptr(t, off), t->dtype);
        if (!isfinite(v) || v == 0) return;
    }
    char buf[PR_VALCAP];
    int n = format_value(buf, f, t, off);
    if (n > f->width) f->width = n;
}

static formatter formatter_make(const nb_tensor *t, bool summarize) {
    formatter f = {.floating = is_floating(t->dtype), .int_mode = true, .width = 1};
    if (f.floating) {
        walk(t, 0, t->offset, summarize, scan_range, &f);
        if (f.count == 0) return f;   /* all zero or non-finite: "0.", "nan" */
        double ratio = f.max_abs / f.min_abs;
        f.sci_mode = ratio > 1000.0 || f.max_abs > 1.0e8 ||
                     (!f.int_mode && f.min_abs < 1.0e-4);
    }
    walk(t, 0, t->offset, summarize, scan_width, &f);
    return f;
}

static void put_value(strbuf *sb, const formatter *f, const nb_tensor *t, int64_t off) {
    char buf[PR_VALCAP];
    int n = format_value(buf, f, t, off);
    sb_repeat(sb, ' ', f->width - n);
    sb_putn(sb, buf, (size_t)n);
}

/* ---- the nested brackets (_vector_str, _tensor_str_with_formatter) ---- */

/* A 1-D row: wraps every elements_per_line entries (" ..." counts as one). */
static void vector_str(strbuf *sb, const formatter *f, const nb_tensor *t, int dim,
                       int64_t off, int indent, bool summarize) {
    int64_t n = t->shape[dim], st = t->stride[dim];
    int per_line = (PR_LINEWIDTH - indent) / (f->width + 2);
    if (per_line < 1) per_line = 1;
    bool cut = summarize && n > 2 * PR_EDGEITEMS;
    int64_t shown = cut ? 2 * PR_EDGEITEMS + 1 : n;
    sb_puts(sb, "[");
    for (int64_t k = 0; k < shown; k++) {
        if (k > 0 && k % per_line == 0) {
            sb_puts(sb, ",\n");
            sb_repeat(sb, ' ', indent + 1);
        } else if (k > 0) {
            sb_puts(sb, ", ");
        }
        if (cut && k == PR_EDGEITEMS) {
            sb_puts(sb, " ...");
            continue;
        }
        int64_t i = (cut && k > PR_EDGEITEMS) ? n - (shown - k) : k;
        put_value(sb, f, t, off + i * st);
    }
    sb_puts(sb, "]");
}

static void tensor_str(strbuf *sb, const formatter *f, const nb_tensor *t, int dim,
                       int64_t off, int indent, bool summarize) {
    int rest = t->ndim - dim;   /* dims of the sub-tensor printed here */
    if (rest == 0) {
        put_value(sb, f, t, off);
        return;
    }
    if (rest == 1) {
        vector_str(sb, f, t, dim, off, indent, summarize);
        return;
    }
    int64_t n = t->shape[dim], st = t->stride[dim];
    bool cut = summarize && n > 2 * PR_EDGEITEMS;
    sb_puts(sb, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i > 0) {
            sb_puts(sb, ",");
            sb_repeat(sb, '\n', rest - 1);
            sb_repeat(sb, ' ', indent + 1);
        }
        if (cut && i == PR_EDGEITEMS) {
            sb_puts(sb, "...,");
            sb_repeat(sb, '\n', rest - 1);
            sb_repeat(sb, ' ', indent + 1);
            i = n - PR_EDGEITEMS;
        }
        tensor_str(sb, f, t, dim + 1, off + i * st, indent + 1, summarize);
    }
    sb_puts(sb, "]");
}

/* ---- suffixes (_add_suffixes) ---- */

/* PyTorch names these torch.float64 etc.; we drop the "torch." */
static const char *torch_dtype_name(nb_dtype dt) {
    switch (dt) {
    case NB_DTYPE_F32: return "float32";
    case NB_DTYPE_F64: return "float64";
    case NB_DTYPE_I64: return "int64";
    case NB_DTYPE_BOOL: return "bool";
    default: return "unknown";
    }
}

/* Appends ", suffix", or ",\n" + indent + suffix when the line would pass the
 * line width; *last_len tracks the last line's length as PyTorch counts it. */
static void add_suffix(strbuf *sb, const char *suffix, size_t *last_len) {
    size_t n = strlen(suffix);
    if (*last_len + n + 2 > PR_LINEWIDTH) {
        sb_puts(sb, ",\n");
        sb_repeat(sb, ' ', PR_INDENT);
        *last_len = PR_INDENT + n;
    } else {
        sb_puts(sb, ", ");
        *last_len += n + 2;
    }
    sb_puts(sb, suffix);
}

static void build_repr(strbuf *sb, const nb_tensor *t) {
    char suffixes[3][96];
    int ns = 0;
    sb_puts(sb, PR_PREFIX);
    if (!t) {
        sb_puts(sb, "NULL)");
        return;
    }
    if (t->numel == 0) {
        /* the shape, unless 1-D, and the dtype, unless the default float */
        sb_puts(sb, "[]");
        if (t->ndim != 1) {
            size_t k = (size_t)snprintf(suffixes[ns], sizeof suffixes[ns], "size=(");
            for (int i = 0; i < t->ndim && k < sizeof suffixes[ns]; i++)
                k += (size_t)snprintf(suffixes[ns] + k, sizeof suffixes[ns] - k,
                                      i ? ", %" PRId64 : "%" PRId64, t->shape[i]);
            if (k < sizeof suffixes[ns])
                snprintf(suffixes[ns] + k, sizeof suffixes[ns] - k, ")");
            ns++;
        }
        if (t->dtype != NB_F32)
            snprintf(suffixes[ns++], sizeof suffixes[0], "dtype=%s", torch_dtype_name(t->dtype));
    } else {
        bool summarize = t->numel > PR_THRESHOLD;
        formatter f = formatter_make(t, summarize);
        tensor_str(sb, &f, t, 0, t->offset, PR_INDENT, summarize);
        if (t->dtype == NB_F64)   /* F32, I64, BOOL are PyTorch's defaults */
            snprintf(suffixes[ns++], sizeof suffixes[0], "dtype=%s", torch_dtype_name(t->dtype));
    }
    const char *fn = nb_is_leaf(t) ? NULL : nb_grad_fn_name(t);
    if (fn)
        snprintf(suffixes[ns++], sizeof suffixes[0], "grad_fn=<%s>", fn);
    else if (nb_requires_grad(t))
        snprintf(suffixes[ns++], sizeof suffixes[0], "requires_grad=True");

    if (sb->failed) return;
    /* PyTorch's count: len - rfind("\n") + 1, which is len + 2 on one line */
    const char *nl = strrchr(sb->p, '\n');
    size_t last_len = nl ? sb->len - (size_t)(nl - sb->p) + 1 : sb->len + 2;
    for (int i = 0; i < ns; i++) add_suffix(sb, suffixes[i], &last_len);
    sb_puts(sb, ")");
}

/* ---- public ---- */

/* Formats t into buf as snprintf does: writes at most cap bytes (always
 * NUL-terminated when cap > 0) and returns the length the full string needs.
 * Returns NB_ENOMEM (buf "" when cap > 0) when the string cannot be built.
 * t is borrowed; NULL prints "tensor(NULL)". */
NB_API int nb_format(char *buf, size_t cap, const nb_tensor *t) {
    strbuf sb = {0};
    build_repr(&sb, t);
    int ret;
    if (sb.failed) {
        if (buf && cap > 0) buf[0] = 0;
        ret = nb__err(NB_ENOMEM, "nb_format: out of memory formatting a %s tensor",
                      nb__shape_str(t));
    } else if (sb.len > INT_MAX) {
        if (buf && cap > 0) buf[0] = 0;
        ret = nb__err(NB_EOVERFLOW, "nb_format: the repr of %s needs over INT_MAX bytes",
                      nb__shape_str(t));
    } else {
        if (buf && cap > 0) {
            size_t n = sb.len < cap - 1 ? sb.len : cap - 1;
            memcpy(buf, sb.p, n);
            buf[n] = 0;
        }
        ret = (int)sb.len;
    }
    free(sb.p);
    return ret;
}

/* Writes the repr of t and a newline to f (stdout when NULL), as Python's
 * print(t, file=f). t is borrowed. */
NB_API void nb_fprint(FILE *f, const nb_tensor *t) {
    if (!f) f = stdout;
    strbuf sb = {0};
    build_repr(&sb, t);
    if (sb.failed)
        fputs(PR_PREFIX "<out of memory>)\n", f);
    else {
        fwrite(sb.p, 1, sb.len, f);
        fputc('\n', f);
    }
    free(sb.p);
}

NB_API void nb_print(const nb_tensor *t) { nb_fprint(stdout, t); }
