/* npy.c — NumPy .npy files, read and written.
 *
 * Format: "\x93NUMPY", major and minor version bytes, the header length
 * (u16 little-endian in 1.0, u32 in 2.0 and 3.0), then the header: a Python
 * dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ending in '\n', then the raw data in C order.
 *
 * The reader trusts nothing: the header length must fit the file (and 1 MiB),
 * the dict must have exactly the three keys with values of the right kinds,
 * and the data size the shape implies must equal what follows the header.
 * The writer emits format 1.0 with the header padded so the data start at a
 * multiple of 64 bytes, as numpy does, through an atomic write.
 */
#include "data/data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAX_HEADER ((uint32_t)1 << 20)

static const struct {
    const char *descr;   /* numpy's type string */
    nb_dtype dt;         /* nabla's dtype */
} npy_types[] = {{"<f4", NB_F32}, {"<f8", NB_F64}, {"<i8", NB_I64}, {"|b1", NB_BOOL}};

typedef struct npy_header {
    char descr[32];                  /* the type string */
    int fortran;                     /* -1 missing, 0 False, 1 True */
    int ndim;                        /* -1 missing */
    int64_t shape[NB_MAX_DIMS];      /* sizes */
} npy_header;

/* ---- a small parser for the header's dict literal ---- */

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* A quoted string into out (cap bytes); NULL when malformed. */
static const char *parse_str(const char *p, char *out, size_t cap) {
    char q = *p;
    if (q != '\'' && q != '"') return NULL;
    const char *e = strchr(p + 1, q);
    if (!e || (size_t)(e - p - 1) >= cap) return NULL;
    memcpy(out, p + 1, (size_t)(e - p - 1));
    out[e - p - 1] = 0;
    return e + 1;
}

/* A tuple of non-negative integers; NULL when malformed or too long. */
static const char *parse_shape(const char *p, npy_header *h) {
    if (*p != '(') return NULL;
    p = skip_ws(p + 1);
    h->ndim = 0;
    while (*p != ')') {
        if (*p < '0' || *p > '9' || h->ndim == NB_MAX_DIMS) return NULL;
        int64_t v = 0;
        while (*p >= '0' && *p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return NULL;
            v = v * 10 + (*p++ - '0');
        }
        if (*p == 'L') p++;   /* written by Python 2 */
        h->shape[h->ndim++] = v;
        p = skip_ws(p);
        if (*p == ',') p = skip_ws(p + 1);
        else if (*p != ')') return NULL;
    }
    return p + 1;
}

/* 0, or an error message's reason in *why. */
static int parse_header(const char *p, npy_header *h, const char **why) {
    *h = (npy_header){.fortran = -1, .ndim = -1};
    p = skip_ws(p);
    if (*p++ != '{') return *why = "it does not start with '{'", -1;
    for (;;) {
        p = skip_ws(p);
        if (*p == '}') break;
        char key[32];
        p = parse_str(p, key, sizeof key);
        if (!p) return *why = "a key is not a quoted string", -1;
        p = skip_ws(p);
        if (*p++ != ':') return *why = "a key is not followed by ':'", -1;
        p = skip_ws(p);
        if (!strcmp(key, "descr") && !h->descr[0]) {
            p = parse_str(p, h->descr, sizeof h->descr);
            if (!p || !h->descr[0])
                return *why = "'descr' is not a simple type string (structured dtypes are not supported)", -1;
        } else if (!strcmp(key, "fortran_order") && h->fortran < 0) {
            if (!strncmp(p, "True", 4)) h->fortran = 1, p += 4;
            else if (!strncmp(p, "False", 5)) h->fortran = 0, p += 5;
            else return *why = "'fortran_order' is not True or False", -1;
        } else if (!strcmp(key, "shape") && h->ndim < 0) {
            p = parse_shape(p, h);
            if (!p) return *why = "'shape' is not a tuple of at most 8 non-negative integers", -1;
        } else {
            return *why = "it has an unknown or repeated key", -1;
        }
        p = skip_ws(p);
        if (*p == ',') p++;
        else if (*p != '}') return *why = "entries are not separated by ','", -1;
    }
    p = skip_ws(p + 1);
    if (*p) return *why = "text follows the closing '}'", -1;
    if (!h->descr[0] || h->fortran < 0 || h->ndim < 0)
        return *why = "'descr', 'fortran_order' or 'shape' is missing", -1;
    return 0;
}

/* ---- reading ---- */

NB_API nb_tensor *nb_load_npy(const char *path) {
    const char *who = "nb_load_npy";
    if (!path) return nb__err(NB_ENULLARG, "%s: path is NULL", who), NULL;
    int64_t fsize = nb__data_file_size(path);
    FILE *f = fsize >= 0 ? fopen(path, "rb") : NULL;
    if (!f) return nb__err(NB_EIO, "%s: cannot open %s: %s", who, path, strerror(errno)), NULL;
    char *hdr = NULL;
    nb_tensor *out = NULL;
    uint8_t pre[12];
    if (fsize < 10 || fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        nb__err(NB_EIO, "%s: %s is not a .npy file (no \\x93NUMPY magic)", who, path);
        goto fail;
    }
    int major = pre[6], minor = pre[7];
    uint64_t hlen, start;
    if (major == 1) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (fsize < 12 || fread(pre + 10, 1, 2, f) != 2) {
            nb__err(NB_EIO, "%s: %s is truncated in its preamble", who, path);
            goto fail;
        }
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        start = 12;
    } else {
        nb__err(NB_EIO, "%s: %s has .npy format version %d.%d (nabla reads 1.0, 2.0 and 3.0)", who, path, major,
                minor);
        goto fail;
    }
    if (hlen > NPY_MAX_HEADER || start + hlen > (uint64_t)fsize) {
        nb__err(NB_EIO, "%s: %s: header length %llu runs past the end of the file (%lld bytes) or over 1 MiB", who,
                path, (unsigned long long)hlen, (long long)fsize);
        goto fail;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) {
        nb__err(NB_ENOMEM, "%s: out of memory", who);
        goto fail;
    }
    if (fread(hdr, 1, hlen, f) != hlen) {
        nb__err(NB_EIO, "%s: cannot read the header of %s", who, path);
        goto fail;
    }
    hdr[hlen] = 0;
    if (strlen(hdr) != hlen) {
        nb__err(NB_EIO, "%s: %s: the header holds a NUL byte", who, path);
        goto fail;
    }
    npy_header h;
    const char *why;
    if (parse_header(hdr, &h, &why)) {
        nb__err(NB_EIO, "%s: %s: malformed header: %s", who, path, why);
        goto fail;
    }
    if (h.fortran) {
        nb__err(NB_EIO, "%s: %s is in Fortran order; nabla reads C order (save np.ascontiguousarray(a))", who, path);
        goto fail;
    }
    nb_dtype dt = NB_DTYPE_COUNT;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (!strcmp(h.descr, npy_types[i].descr)) dt = npy_types[i].dt;
    if (dt == NB_DTYPE_COUNT && !strcmp(h.descr, "<b1")) dt = NB_BOOL;
    if (dt == NB_DTYPE_COUNT) {
        nb__err(NB_EDTYPE, "%s: %s has dtype '%s'%s; nabla reads '<f4', '<f8', '<i8' and '|b1'", who, path, h.descr,
                h.descr[0] == '>' ? " (big-endian)" : "");
        goto fail;
    }
    uint64_t numel = 1, es = nb_dtype_size(dt);
    for (int i = 0; i < h.ndim; i++) {
        if (h.shape[i] && numel > ((uint64_t)1 << 56) / (uint64_t)h.shape[i]) numel = (uint64_t)1 << 56;
        else numel *= (uint64_t)h.shape[i];
    }
    uint64_t have = (uint64_t)fsize - start - hlen;
    if (numel * es != have) {
        nb__err(NB_EIO, "%s: %s is %s: shape %s of %s needs %llu data bytes, the file has %llu", who, path,
                numel * es > have ? "truncated" : "oversized", nb__dims_str(h.ndim, h.shape), h.descr,
                (unsigned long long)(numel * es), (unsigned long long)have);
        goto fail;
    }
    out = nb__new(who, dt, h.ndim, h.shape);
    if (!out) goto fail;
    if (have && fread(nb_data(out), 1, have, f) != have) {
        nb__err(NB_EIO, "%s: cannot read the data of %s", who, path);
        goto fail;
    }
    if (dt == NB_BOOL)   /* anything but 0 is True, as numpy reads it */
        for (uint64_t i = 0; i < numel; i++) ((uint8_t *)nb_data(out))[i] = ((uint8_t *)nb_data(out))[i] != 0;
    free(hdr);
    fclose(f);
    return nb__scoped(out);

fail:
    nb_release(out);
    free(hdr);
    fclose(f);
    return NULL;
}

/* ---- writing ---- */

NB_API int nb_save_npy(const char *path, const nb_tensor *t) {
    const char *who = "nb_save_npy";
    if (!path || !t) return nb__err(NB_ENULLARG, "%s: %s is NULL", who, path ? "tensor" : "path");
    const char *descr = NULL;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dt == t->dtype) descr = npy_types[i].descr;
    if (!descr) return nb__err(NB_EDTYPE, "%s: dtype %d has no .npy type", who, (int)t->dtype);

    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->ndim; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld, ", (long long)t->shape[i]);
    if (t->ndim) n -= t->ndim == 1 ? 1 : 2;   /* "(3,)" for one dim, "(2, 3)" for more */
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    if (t->ndim) {   /* numpy leaves room for dim 0 to grow to 21 digits */
        char d0[24];
        int w = snprintf(d0, sizeof d0, "%lld", (long long)t->shape[0]);
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%*s", 21 - w, "");
    }
    /* then spaces and '\n' so the data start at a multiple of 64 (a full 64
     * more when already aligned, as numpy's _wrap_header does) */
    int total = 10 + n + 1 + (64 - (10 + n + 1) % 64);
    int hlen = total - 10;
    char head[600];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (char)(hlen & 0xff);
    head[9] = (char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)n);
    memset(head + 10 + n, ' ', (size_t)(hlen - n - 1));
    head[total - 1] = '\n';

    size_t bytes = (size_t)t->numel * nb_dtype_size(t->dtype);
    void *copy = NULL;
    const void *data = nb_data(t);
    if (!nb_is_contiguous(t)) {
        copy = malloc(bytes ? bytes : 1);
        if (!copy) return nb__err(NB_ENOMEM, "%s: out of memory", who);
        nb_copy_to(t, copy, bytes);
        data = copy;
    }
    FILE *f;
    char *tmp;
    int rc = nb__data_tmp_open(who, path, &f, &tmp);
    if (rc) goto out;
    bool ok = fwrite(head, 1, (size_t)total, f) == (size_t)total && (!bytes || fwrite(data, 1, bytes, f) == bytes);
    if (!ok) nb__err(NB_EIO, "%s: cannot write %s: %s", who, path, strerror(errno));
    rc = nb__data_tmp_commit(who, path, f, &tmp, ok);
    if (!ok) rc = NB_EIO;
out:
    free(copy);
    return rc;
}
