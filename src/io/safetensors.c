/* safetensors.c — checkpoints in the safetensors format.
 *
 * Layout: u64 little-endian header size N, N bytes of JSON (an object: name
 * -> {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional
 * "__metadata__" object of strings), then the data buffer; offsets are
 * relative to the buffer's start. Writers pad the header with spaces to a
 * multiple of 8 so tensors stay aligned.
 *
 * Saving writes a temporary file next to the target, flushes and fsyncs it,
 * renames it over the target and fsyncs the directory: a crash at any point
 * leaves either the old or the new checkpoint, never a torn one.
 * Loading trusts nothing: sizes are checked before every read, offsets must
 * be in range, match dtype and shape, and tile the buffer without overlaps
 * or holes (as the format's reference implementation requires).
 */
#include "io/io.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NB__ST_MAX_HEADER ((uint64_t)100 << 20)   /* as the reference implementation */

static const char *st_dtype(nb_dtype dt) {
    static const char *const names[NB_DTYPE_COUNT] = {"F32", "F64", "I64", "BOOL"};
    return names[dt];
}

/* ---- save ---- */
typedef struct sbuf { char *p; size_t n, cap; bool oom; } sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 1024) + n;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }
static void put_json_str(sbuf *b, const char *s) {
    puts_(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
        else if (c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", c);
        else esc[0] = (char)c, esc[1] = 0;
        puts_(b, esc);
    }
    puts_(b, "\"");
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

NB_API int nb_save_safetensors(const char *path, const nb_state_dict *sd, const char *const *metadata) {
    const char *who = "nb_save_safetensors";
    if (!path || !sd) return nb__err(NB_ENULLARG, "%s: %s is NULL", who, path ? "state dict" : "path");
    sbuf h = {0};
    char num[64];
    puts_(&h, "{");
    bool first = true;
    if (metadata && metadata[0]) {
        puts_(&h, "\"__metadata__\":{");
        for (int i = 0; metadata[i] && metadata[i + 1]; i += 2) {
            if (i) puts_(&h, ",");
            put_json_str(&h, metadata[i]);
            puts_(&h, ":");
            put_json_str(&h, metadata[i + 1]);
        }
        puts_(&h, "}");
        first = false;
    }
    uint64_t off = 0;
    int n = nb_state_dict_size(sd);
    for (int i = 0; i < n; i++) {
        nb_tensor *t = nb_state_dict_tensor(sd, i);
        if (!strcmp(nb_state_dict_name(sd, i), "__metadata__")) {
            free(h.p);
            return nb__err(NB_EINVAL, "%s: '__metadata__' is reserved and cannot name a tensor", who);
        }
        if (!first) puts_(&h, ",");
        first = false;
        put_json_str(&h, nb_state_dict_name(sd, i));
        puts_(&h, ":{\"dtype\":\"");
        puts_(&h, st_dtype(t->dtype));
        puts_(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, d ? ",%lld" : "%lld", (long long)t->shape[d]);
            puts_(&h, num);
        }
        uint64_t bytes = (uint64_t)t->numel * nb_dtype_size(t->dtype);
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                 (unsigned long long)(off + bytes));
        puts_(&h, num);
        off += bytes;
    }
    puts_(&h, "}");
    while (!h.oom && h.n % 8) puts_(&h, " ");
    if (h.oom) {
        free(h.p);
        return nb__err(NB_ENOMEM, "%s: out of memory building the header", who);
    }
    /* temporary file in the target's directory, so rename is atomic */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16), *dircopy = strdup(path);
    if (!tmp || !dircopy) {
        free(tmp);
        free(dircopy);
        free(h.p);
        return nb__err(NB_ENOMEM, "%s: out of memory", who);
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int rc = 0, fd = mkstemp(tmp);
    if (fd < 0) {
        rc = nb__err(NB_EIO, "%s: cannot create a temporary file next to %s", who, path);
        goto out;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    bool ok = write_all(fd, len8, 8) == 0 && write_all(fd, h.p, h.n) == 0;
    for (int i = 0; i < n && ok; i++) {
        nb_tensor *t = nb_state_dict_tensor(sd, i);
        size_t bytes = (size_t)t->numel * nb_dtype_size(t->dtype);
        if (!bytes) continue;
        if (nb_is_contiguous(t)) {
            ok = write_all(fd, nb_data(t), bytes) == 0;
        } else {
            void *c = malloc(bytes);
            ok = c && nb_copy_to(t, c, bytes) == 0 && write_all(fd, c, bytes) == 0;
            free(c);
        }
    }
    ok = ok && fsync(fd) == 0;
    if (close(fd) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        rc = nb__err(NB_EIO, "%s: writing %s failed (the previous file, if any, is unchanged)", who, path);
        goto out;
    }
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {   /* make the rename itself durable */
        fsync(dfd);
        close(dfd);
    }
out:
    free(tmp);
    free(dircopy);
    free(h.p);
    return rc;
}

/* ---- load ---- */
typedef struct span { uint64_t b, e; int idx; } span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : (x->e > y->e) - (x->e < y->e);
}

static int parse_entry(const char *path, const char *name, const nb__json *v, nb_dtype *dt, nb_dims *shape,
                       uint64_t *b, uint64_t *e) {
    const char *who = "nb_load_safetensors";
    const nb__json *jd = nb__json_get(v, "dtype"), *js = nb__json_get(v, "shape"), *jo = nb__json_get(v, "data_offsets");
    if (v->kind != NB__J_OBJ || !jd || jd->kind != NB__J_STR || !js || js->kind != NB__J_ARR || !jo ||
        jo->kind != NB__J_ARR || jo->n != 2)
        return nb__err(NB_EIO, "%s: %s: entry '%s' needs dtype, shape and data_offsets [begin, end]", who, path, name);
    int found = -1;
    for (int d = 0; d < NB_DTYPE_COUNT; d++)
        if (!strcmp(jd->str, st_dtype((nb_dtype)d))) found = d;
    if (found < 0) {
        static const char *const known[] = {"F16", "BF16", "F8_E4M3", "F8_E5M2", "I8", "I16", "I32", "U8", "U16", "U32", "U64"};
        bool is_known = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) is_known |= !strcmp(jd->str, known[k]);
        return nb__err(NB_EDTYPE, "%s: %s: tensor '%s' has %s dtype '%s' (nabla reads F32, F64, I64, BOOL)", who, path,
                       name, is_known ? "unsupported" : "unknown", jd->str);
    }
    *dt = (nb_dtype)found;
    if (js->n > NB_MAX_DIMS) return nb__err(NB_EIO, "%s: %s: tensor '%s' has %d dims (at most %d)", who, path, name, js->n, NB_MAX_DIMS);
    shape->ndim = js->n;
    uint64_t numel = 1;
    for (int d = 0; d < js->n; d++) {
        const nb__json *x = &js->items[d];
        if (x->kind != NB__J_NUM || !x->num_is_int || x->inum < 0 || x->inum > ((int64_t)1 << 48))
            return nb__err(NB_EIO, "%s: %s: tensor '%s' has an invalid size in its shape", who, path, name);
        shape->d[d] = x->inum;
        if (x->inum && numel > ((uint64_t)1 << 48) / (uint64_t)x->inum)
            return nb__err(NB_EIO, "%s: %s: tensor '%s' is too large", who, path, name);
        numel *= (uint64_t)x->inum;
    }
    for (int k = 0; k < 2; k++) {
        const nb__json *x = &jo->items[k];
        if (x->kind != NB__J_NUM || !x->num_is_int || x->inum < 0)
            return nb__err(NB_EIO, "%s: %s: tensor '%s' has an invalid data offset", who, path, name);
    }
    *b = (uint64_t)jo->items[0].inum;
    *e = (uint64_t)jo->items[1].inum;
    if (*e < *b || *e - *b != numel * nb_dtype_size(*dt))
        return nb__err(NB_EIO, "%s: %s: tensor '%s' of shape %s (%s) needs %llu bytes but its data_offsets [%llu, %llu] span %lld",
                       who, path, name, nb__dims_str(shape->ndim, shape->d), jd->str,
                       (unsigned long long)(numel * nb_dtype_size(*dt)), (unsigned long long)*b, (unsigned long long)*e,
                       (long long)(*e - *b));
    return 0;
}

NB_API nb_state_dict *nb_load_safetensors(const char *path) {
    const char *who = "nb_load_safetensors";
    if (!path) {
        nb__err(NB_ENULLARG, "%s: path is NULL", who);
        return NULL;
    }
    nb_state_dict *sd = NULL;
    nb__json hdr = {0};
    span *sp = NULL;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        nb__err(NB_EIO, "%s: cannot open %s", who, path);
        return NULL;
    }
    struct stat st;
    uint8_t len8[8];
    if (fstat(fileno(f), &st) != 0 || st.st_size < 8 || fread(len8, 1, 8, f) != 8) {
        nb__err(NB_EIO, "%s: %s is not a safetensors file (shorter than its 8-byte header size)", who, path);
        goto fail;
    }
    uint64_t hn = 0, fsize = (uint64_t)st.st_size;
    for (int i = 0; i < 8; i++) hn |= (uint64_t)len8[i] << (8 * i);
    if (hn < 2 || hn > NB__ST_MAX_HEADER || hn > fsize - 8) {
        nb__err(NB_EIO, "%s: %s: header size %llu is past the end of the %llu-byte file (or over the 100 MB limit)", who,
                path, (unsigned long long)hn, (unsigned long long)fsize);
        goto fail;
    }
    buf = malloc(hn);
    if (!buf || fread(buf, 1, hn, f) != hn) {
        nb__err(buf ? NB_EIO : NB_ENOMEM, "%s: %s: cannot read the header", who, path);
        goto fail;
    }
    if (nb__json_parse(buf, hn, &hdr, path)) goto fail;
    if (hdr.kind != NB__J_OBJ) {
        nb__err(NB_EIO, "%s: %s: the header is not a JSON object", who, path);
        goto fail;
    }
    uint64_t dsize = fsize - 8 - hn;
    sp = calloc((size_t)hdr.n + 1, sizeof *sp);
    nb_dtype *dts = sp ? calloc((size_t)hdr.n + 1, sizeof *dts) : NULL;
    nb_dims *shapes = dts ? calloc((size_t)hdr.n + 1, sizeof *shapes) : NULL;
    if (!shapes) {
        free(dts);
        nb__err(NB_ENOMEM, "%s: out of memory", who);
        goto fail;
    }
    int nt = 0, bad = 0;
    for (int i = 0; i < hdr.n && !bad; i++) {
        if (!strcmp(hdr.keys[i], "__metadata__")) continue;
        for (int j = 0; j < i && !bad; j++)
            if (!strcmp(hdr.keys[i], hdr.keys[j])) bad = nb__err(NB_EIO, "%s: %s: tensor '%s' appears twice", who, path, hdr.keys[i]);
        if (bad || (bad = parse_entry(path, hdr.keys[i], &hdr.items[i], &dts[i], &shapes[i], &sp[nt].b, &sp[nt].e))) break;
        if (sp[nt].e > dsize)
            bad = nb__err(NB_EIO, "%s: %s: tensor '%s' ends at byte %llu of a %llu-byte data buffer (truncated file?)", who,
                          path, hdr.keys[i], (unsigned long long)sp[nt].e, (unsigned long long)dsize);
        sp[nt++].idx = i;
    }
    if (!bad) {
        qsort(sp, (size_t)nt, sizeof *sp, cmp_span);
        uint64_t at = 0;
        for (int k = 0; k < nt && !bad; k++) {
            if (sp[k].b != at)
                bad = nb__err(NB_EIO, "%s: %s: tensor '%s' at bytes [%llu, %llu) %s", who, path, hdr.keys[sp[k].idx],
                              (unsigned long long)sp[k].b, (unsigned long long)sp[k].e,
                              sp[k].b < at ? "overlaps the previous tensor" : "leaves a hole in the data buffer");
            at = sp[k].e;
        }
        if (!bad && at != dsize)
            bad = nb__err(NB_EIO, "%s: %s: %llu bytes of data after the last tensor", who, path,
                          (unsigned long long)(dsize - at));
    }
    if (!bad && !(sd = nb_state_dict_new())) bad = NB_ENOMEM;
    /* tensors in header order (the order the writer chose) */
    for (int i = 0; i < hdr.n && !bad; i++) {
        if (!strcmp(hdr.keys[i], "__metadata__")) continue;
        uint64_t b = 0;
        for (int k = 0; k < nt; k++)
            if (sp[k].idx == i) b = sp[k].b;
        nb_tensor *t = nb__new(who, dts[i], shapes[i].ndim, shapes[i].d);
        if (!t) {
            bad = nb_last_error_code();
            break;
        }
        size_t bytes = (size_t)t->numel * nb_dtype_size(t->dtype);
        if (bytes && (fseeko(f, (off_t)(8 + hn + b), SEEK_SET) != 0 || fread(nb_data(t), 1, bytes, f) != bytes))
            bad = nb__err(NB_EIO, "%s: %s: cannot read tensor '%s'", who, path, hdr.keys[i]);
        if (!bad && t->dtype == NB_DTYPE_BOOL) {
            uint8_t *p = nb_data(t);
            for (size_t k = 0; k < bytes && !bad; k++)
                if (p[k] > 1) bad = nb__err(NB_EIO, "%s: %s: bool tensor '%s' holds a byte other than 0 or 1", who, path, hdr.keys[i]);
        }
        if (!bad) bad = nb_state_dict_set(sd, hdr.keys[i], t);
        nb_release(t);
    }
    free(dts);
    free(shapes);
    if (bad) goto fail;
    nb__json_free(&hdr);
    free(sp);
    free(buf);
    fclose(f);
    return sd;
fail:
    nb_state_dict_free(sd);
    nb__json_free(&hdr);
    free(sp);
    free(buf);
    fclose(f);
    return NULL;
}
