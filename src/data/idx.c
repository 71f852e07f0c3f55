/* idx.c — the IDX reader (MNIST, Fashion-MNIST), gzipped or not.
 *
 * Format: two zero bytes, an element type byte (0x08 u8, 0x09 i8, 0x0B i16,
 * 0x0C i32, 0x0D f32, 0x0E f64), a dim count, one big-endian u32 per dim,
 * then the elements, big-endian, in C order. zlib's gzread reads plain and
 * gzipped files alike.
 *
 * Hostile headers: the promised data size is checked against the file
 * before anything is allocated (against its length when it is not
 * compressed; against the deflate limit of 1032:1 when it is), and the data
 * must end exactly where the header says.
 */
#include "data/data.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_CHUNK 65536   /* bytes converted at a time (a multiple of every element size) */

typedef struct idx_type {
    uint8_t code;       /* the type byte */
    uint8_t size;       /* bytes per element */
    bool is_int;        /* integer data */
    const char *name;   /* for messages */
} idx_type;

static const idx_type idx_types[] = {
    {0x08, 1, true, "unsigned byte"}, {0x09, 1, true, "signed byte"}, {0x0B, 2, true, "short"},
    {0x0C, 4, true, "int"},           {0x0D, 4, false, "float"},      {0x0E, 8, false, "double"},
};

/* Element i of a big-endian chunk as double. */
static double be_load(const uint8_t *p, uint8_t code) {
    switch (code) {
    case 0x08: return p[0];
    case 0x09: return (int8_t)p[0];
    case 0x0B: return (int16_t)(uint16_t)((p[0] << 8) | p[1]);
    case 0x0C: return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
    case 0x0D: {
        uint32_t u = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    default: {
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | p[i];
        double d;
        memcpy(&d, &u, 8);
        return d;
    }
    }
}

/* Converts n elements of chunk into out (dtype dt) starting at element at. */
static void convert(const uint8_t *chunk, size_t n, const idx_type *ty, nb_tensor *out, size_t at, double scale) {
    if (ty->code == 0x08 && out->dtype == NB_F32) {   /* the MNIST case, kept fast */
        float *o = (float *)nb_data(out) + at, s = (float)scale;
        for (size_t i = 0; i < n; i++) o[i] = (float)chunk[i] * s;
        return;
    }
    char *o = (char *)nb_data(out) + at * nb_dtype_size(out->dtype);
    size_t es = nb_dtype_size(out->dtype);
    for (size_t i = 0; i < n; i++) nb__store(o + i * es, out->dtype, be_load(chunk + i * ty->size, ty->code) * scale);
}

/* Reads exactly n bytes; returns how many it got (short at the end of the
 * data), or -1 when zlib reports a corrupt or truncated stream. */
static int64_t read_full(gzFile gz, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        int r = gzread(gz, (char *)buf + got, (unsigned)(n - got));
        if (r < 0) return -1;
        if (r == 0) {
            int errnum;
            gzerror(gz, &errnum);
            if (errnum != Z_OK) return -1;
            break;
        }
        got += (size_t)r;
    }
    return (int64_t)got;
}

static const char *gz_msg(gzFile gz) {
    int errnum;
    return gzerror(gz, &errnum);
}

NB_API nb_tensor *nb_load_idx(const char *path, const nb_idx_opts *opts) {
    const char *who = "nb_load_idx";
    nb_idx_opts o = opts ? *opts : (nb_idx_opts){0};
    if (!path) return nb__err(NB_ENULLARG, "%s: path is NULL", who), NULL;
    int64_t fsize = nb__data_file_size(path);
    if (fsize < 0) return nb__err(NB_EIO, "%s: cannot open %s: %s", who, path, strerror(errno)), NULL;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return nb__err(NB_EIO, "%s: cannot open %s: %s", who, path, strerror(errno ? errno : ENOMEM)), NULL;
    nb_tensor *out = NULL;
    uint8_t *chunk = NULL;

    uint8_t head[4], dimbuf[4 * 255];
    int64_t got = read_full(gz, head, 4);
    if (got != 4) {
        if (got < 0)
            nb__err(NB_EIO, "%s: %s is corrupt or truncated (%s)", who, path, gz_msg(gz));
        else
            nb__err(NB_EIO, "%s: %s is too short for the 4-byte IDX magic", who, path);
        goto fail;
    }
    const idx_type *ty = NULL;
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if (idx_types[i].code == head[2]) ty = &idx_types[i];
    if (head[0] || head[1] || !ty || head[3] < 1 || head[3] > NB_MAX_DIMS) {
        nb__err(NB_EIO,
                "%s: %s is not an IDX file nabla reads: magic 0x%02x%02x%02x%02x (expected 0x0000TTNN: TT an "
                "element type 08 09 0B 0C 0D 0E, NN 1 to %d dims)",
                who, path, head[0], head[1], head[2], head[3], NB_MAX_DIMS);
        goto fail;
    }
    int nd = head[3];
    got = read_full(gz, dimbuf, 4 * (size_t)nd);
    if (got != 4 * nd) {
        nb__err(NB_EIO, "%s: %s is truncated in its header (%d dims announced)%s%s", who, path, nd,
                got < 0 ? ": " : "", got < 0 ? gz_msg(gz) : "");
        goto fail;
    }
    int64_t shape[NB_MAX_DIMS];
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        const uint8_t *p = dimbuf + 4 * i;
        shape[i] = (int64_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
        numel *= (uint64_t)shape[i];   /* at most 8 factors below 2^32: checked against the file below */
        if (numel > ((uint64_t)1 << 48)) numel = (uint64_t)1 << 48;
    }
    uint64_t data_bytes = numel * ty->size, head_bytes = 4 + 4 * (uint64_t)nd;
    /* gzdirect is reliable once something was read */
    uint64_t limit = gzdirect(gz) ? (uint64_t)fsize - head_bytes : (uint64_t)fsize * 1032 + 1024;
    if (data_bytes > limit) {
        nb__err(NB_EIO, "%s: %s is truncated or its header is corrupt: the header promises %s %s elements (%llu "
                "bytes), more than the file (%lld bytes%s) holds",
                who, path, nb__dims_str(nd, shape), ty->name, (unsigned long long)data_bytes, (long long)fsize,
                gzdirect(gz) ? "" : ", gzipped");
        goto fail;
    }
    nb_dtype dt = ty->is_int ? (nd == 1 ? NB_I64 : NB_F32) : (ty->code == 0x0E ? NB_F64 : NB_F32);
    double scale = (ty->code == 0x08 && nd >= 2 && !o.raw) ? 1.0 / 255.0 : 1.0;
    out = nb__new(who, dt, nd, shape);
    chunk = malloc(IDX_CHUNK);
    if (!out || !chunk) {
        if (!out) goto fail;
        nb__err(NB_ENOMEM, "%s: out of memory", who);
        goto fail;
    }
    for (uint64_t done = 0; done < data_bytes;) {
        size_t want = data_bytes - done < IDX_CHUNK ? (size_t)(data_bytes - done) : IDX_CHUNK;
        got = read_full(gz, chunk, want);
        if (got < 0) {
            nb__err(NB_EIO, "%s: %s is corrupt or truncated (%s) after %llu of %llu data bytes", who, path, gz_msg(gz),
                    (unsigned long long)done, (unsigned long long)data_bytes);
            goto fail;
        }
        if ((size_t)got < want) {
            nb__err(NB_EIO, "%s: %s is truncated: the header promises %s %s elements (%llu bytes) but only %llu follow",
                    who, path, nb__dims_str(nd, shape), ty->name, (unsigned long long)data_bytes,
                    (unsigned long long)(done + (uint64_t)got));
            goto fail;
        }
        convert(chunk, want / ty->size, ty, out, (size_t)(done / ty->size), scale);
        done += want;
    }
    uint8_t extra;
    got = read_full(gz, &extra, 1);
    if (got != 0) {
        nb__err(NB_EIO, "%s: %s %s after the %llu data bytes its header promises", who, path,
                got < 0 ? "is corrupt" : "has trailing bytes", (unsigned long long)data_bytes);
        goto fail;
    }
    free(chunk);
    gzclose_r(gz);
    return nb__scoped(out);

fail:
    free(chunk);
    nb_release(out);
    gzclose_r(gz);
    return NULL;
}
