/* json.c — a small, strict JSON reader for safetensors headers.
 *
 * Hostile input is expected: every read is bounds-checked against len,
 * nesting is limited to 16 levels, strings are limited to the header and
 * must be valid (escapes decoded; \u escapes outside ASCII become UTF-8).
 * Numbers are kept as double and, when written as plain integers, exactly
 * as int64 (offsets beyond 2^53 must not be rounded).
 */
#include "io/io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const char *s;      /* text */
    size_t len, pos;    /* size and cursor */
    const char *what;   /* for messages */
    int depth;          /* nesting */
} reader;

static int fail(reader *r, const char *why) {
    return nb__err(NB_EIO, "%s: bad JSON header at byte %zu: %s", r->what, r->pos, why);
}

static void skip_ws(reader *r) {
    while (r->pos < r->len && strchr(" \t\r\n", r->s[r->pos]) && r->s[r->pos]) r->pos++;
}

static int parse_value(reader *r, nb__json *out);

static int parse_string(reader *r, char **out) {
    if (r->pos >= r->len || r->s[r->pos] != '"') return fail(r, "expected a string");
    r->pos++;
    size_t cap = 16, n = 0;
    char *b = malloc(cap);
    if (!b) return nb__err(NB_ENOMEM, "%s: out of memory", r->what);
    for (;;) {
        if (r->pos >= r->len) {
            free(b);
            return fail(r, "unterminated string");
        }
        unsigned char c = (unsigned char)r->s[r->pos++];
        if (c == '"') break;
        if (c < 0x20) {
            free(b);
            return fail(r, "control character in string");
        }
        char tmp[4];
        int tn = 1;
        tmp[0] = (char)c;
        if (c == '\\') {
            if (r->pos >= r->len) {
                free(b);
                return fail(r, "unterminated escape");
            }
            char e = r->s[r->pos++];
            const char *map = strchr("\"\\/bfnrt", e);
            if (map && e) {
                tmp[0] = "\"\\/\b\f\n\r\t"[map - "\"\\/bfnrt"];
            } else if (e == 'u') {
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    char h = r->pos < r->len ? r->s[r->pos++] : 0;
                    int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (d < 0) {
                        free(b);
                        return fail(r, "bad \\u escape");
                    }
                    v = v * 16 + (unsigned)d;
                }
                if (v < 0x80) tmp[0] = (char)v;
                else if (v < 0x800) tmp[0] = (char)(0xC0 | (v >> 6)), tmp[1] = (char)(0x80 | (v & 0x3F)), tn = 2;
                else tmp[0] = (char)(0xE0 | (v >> 12)), tmp[1] = (char)(0x80 | ((v >> 6) & 0x3F)),
                     tmp[2] = (char)(0x80 | (v & 0x3F)), tn = 3;
            } else {
                free(b);
                return fail(r, "bad escape");
            }
        }
        if (n + (size_t)tn + 1 > cap) {
            cap *= 2;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                return nb__err(NB_ENOMEM, "%s: out of memory", r->what);
            }
            b = nb;
        }
        memcpy(b + n, tmp, (size_t)tn);
        n += (size_t)tn;
    }
    b[n] = 0;
    *out = b;
    return 0;
}

static int parse_number(reader *r, nb__json *out) {
    size_t start = r->pos;
    bool is_int = true;
    if (r->pos < r->len && r->s[r->pos] == '-') r->pos++;
    while (r->pos < r->len && strchr("0123456789.eE+-", r->s[r->pos]) && r->s[r->pos]) {
        if (strchr(".eE", r->s[r->pos])) is_int = false;
        r->pos++;
    }
    size_t n = r->pos - start;
    if (n == 0 || n > 63) return fail(r, "bad number");
    char buf[64];
    memcpy(buf, r->s + start, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    out->kind = NB__J_NUM;
    out->num = strtod(buf, &end);
    if (*end) return fail(r, "bad number");
    out->num_is_int = false;
    if (is_int) {
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (!*end && errno == 0) {
            out->num_is_int = true;
            out->inum = v;
        }
    }
    return 0;
}

static int parse_container(reader *r, nb__json *out, bool obj) {
    if (++r->depth > 16) return fail(r, "nested too deeply");
    r->pos++;   /* '[' or '{' */
    out->kind = obj ? NB__J_OBJ : NB__J_ARR;
    int cap = 0;
    skip_ws(r);
    if (r->pos < r->len && r->s[r->pos] == (obj ? '}' : ']')) {
        r->pos++;
        r->depth--;
        return 0;
    }
    for (;;) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 8;
            nb__json *ni = realloc(out->items, sizeof *ni * (size_t)cap);
            if (!ni) return nb__err(NB_ENOMEM, "%s: out of memory", r->what);
            out->items = ni;
            if (obj) {
                char **nk = realloc(out->keys, sizeof *nk * (size_t)cap);
                if (!nk) return nb__err(NB_ENOMEM, "%s: out of memory", r->what);
                out->keys = nk;
            }
        }
        memset(&out->items[out->n], 0, sizeof out->items[0]);
        skip_ws(r);
        if (obj) {
            char *k = NULL;
            int rc = parse_string(r, &k);
            if (rc) return rc;
            out->keys[out->n] = k;
            skip_ws(r);
            if (r->pos >= r->len || r->s[r->pos] != ':') {
                out->items[out->n++].kind = NB__J_NULL;
                return fail(r, "expected ':'");
            }
            r->pos++;
        }
        int rc = parse_value(r, &out->items[out->n]);
        out->n++;
        if (rc) return rc;
        skip_ws(r);
        if (r->pos >= r->len) return fail(r, "unterminated array or object");
        char c = r->s[r->pos++];
        if (c == ',') continue;
        if (c == (obj ? '}' : ']')) break;
        return fail(r, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    r->depth--;
    return 0;
}

static int parse_value(reader *r, nb__json *out) {
    skip_ws(r);
    if (r->pos >= r->len) return fail(r, "unexpected end");
    char c = r->s[r->pos];
    if (c == '{' || c == '[') return parse_container(r, out, c == '{');
    if (c == '"') {
        out->kind = NB__J_STR;
        return parse_string(r, &out->str);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(r, out);
    static const struct { const char *w; nb__json_kind k; double v; } lits[] = {
        {"true", NB__J_BOOL, 1}, {"false", NB__J_BOOL, 0}, {"null", NB__J_NULL, 0}};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i].w);
        if (r->len - r->pos >= n && !memcmp(r->s + r->pos, lits[i].w, n)) {
            r->pos += n;
            out->kind = lits[i].k;
            out->num = lits[i].v;
            return 0;
        }
    }
    return fail(r, "unexpected character");
}

int nb__json_parse(const char *text, size_t len, nb__json *out, const char *what) {
    memset(out, 0, sizeof *out);
    reader r = {text, len, 0, what, 0};
    int rc = parse_value(&r, out);
    if (!rc) {
        skip_ws(&r);
        /* safetensors pads the header with spaces; anything else after the value is an error */
        if (r.pos != r.len) rc = fail(&r, "trailing characters after the header");
    }
    if (rc) nb__json_free(out);
    return rc;
}

void nb__json_free(nb__json *j) {
    if (!j) return;
    for (int i = 0; i < j->n; i++) {
        nb__json_free(&j->items[i]);
        if (j->kind == NB__J_OBJ && j->keys) free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    memset(j, 0, sizeof *j);
}

const nb__json *nb__json_get(const nb__json *obj, const char *key) {
    if (!obj || obj->kind != NB__J_OBJ) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}
