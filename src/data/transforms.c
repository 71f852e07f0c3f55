/* transforms.c — per-sample transforms: the callback object, and the
 * provided normalize, random horizontal flip and random crop with padding.
 *
 * The provided transforms work on one field, read it in C order (a copy
 * when it is a strided view) and write a new contiguous tensor, which
 * replaces the field in the sample's scope; they never write into their
 * input, which may be a view of the dataset. Their randomness comes from
 * info->random only, so a sample's result depends on (seed, epoch, index).
 */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

NB_API nb_transform *nb_transform_new(nb_transform_fn fn, void *ctx, void (*destroy)(void *ctx)) {
    if (!fn) return nb__err(NB_ENULLARG, "nb_transform_new: fn is NULL"), NULL;
    nb_transform *t = malloc(sizeof *t);
    if (!t) return nb__err(NB_ENOMEM, "nb_transform_new: out of memory"), NULL;
    *t = (nb_transform){.fn = fn, .ctx = ctx, .destroy = destroy};
    return t;
}

NB_API void nb_transform_free(nb_transform *t) {
    if (!t) return;
    if (t->destroy) t->destroy(t->ctx);
    free(t);
}

NB_API int nb_transform_apply(nb_transform *t, nb_tensor **fields, int n_fields, const nb_sample_info *info) {
    if (!t || !fields || !info)
        return nb__err(NB_ENULLARG, "nb_transform_apply: %s is NULL", !t ? "transform" : !fields ? "fields" : "info");
    if (n_fields < 1 || n_fields > NB_DATA_MAX_FIELDS)
        return nb__err(NB_EINVAL, "nb_transform_apply: n_fields is %d (expected 1 to %d)", n_fields,
                       NB_DATA_MAX_FIELDS);
    for (int i = 0; i < n_fields; i++)
        if (!fields[i]) return nb__err(NB_ENULLARG, "nb_transform_apply: field %d is NULL", i);
    int rc = t->fn(t->ctx, fields, n_fields, info);
    if (rc) return rc < 0 ? rc : NB_EINVAL;
    for (int i = 0; i < n_fields; i++)
        if (!fields[i]) return nb__err(NB_EINVAL, "nb_transform_apply: the transform left field %d NULL", i);
    return 0;
}

/* ---- helpers ---- */

/* The field a provided transform works on, checked: at least two dims, and
 * floating point when `need_float`. NULL with an error otherwise. */
static nb_tensor *field_of(const char *who, nb_tensor **fields, int n_fields, int field, bool need_float) {
    if (field >= n_fields)
        return nb__err(NB_ERANGE, "%s: field %d asked for, but the sample has %d", who, field, n_fields), NULL;
    nb_tensor *t = fields[field];
    if (t->ndim < 2)
        return nb__err(NB_ESHAPE, "%s: field %d has shape %s; expected [..., H, W]", who, field, nb__shape_str(t)),
               NULL;
    if (need_float && t->dtype != NB_F32 && t->dtype != NB_F64)
        return nb__err(NB_EDTYPE, "%s: field %d is %s; expected f32 or f64", who, field, nb_dtype_name(t->dtype)),
               NULL;
    return t;
}

/* A new tensor (no scope) with t's dtype, `shape`, and t's elements copied in
 * C order when copy is set. */
static nb_tensor *new_like(const char *who, const nb_tensor *t, const int64_t *shape, bool copy) {
    nb_tensor *o = nb__new(who, t->dtype, t->ndim, shape);
    if (o && copy && nb_copy_to(t, nb_data(o), (size_t)o->numel * nb_dtype_size(o->dtype))) {
        nb_release(o);
        return NULL;
    }
    return o;
}

/* Puts o (+1, no scope) in the sample's scope as fields[field]. */
static int replace(nb_tensor **fields, int field, nb_tensor *o) {
    if (!o) return nb_last_error_code() < 0 ? nb_last_error_code() : NB_ENOMEM;
    o = nb__scoped(o);
    if (!o) return NB_ENOMEM;
    fields[field] = o;
    return 0;
}

/* ---- normalize ---- */

typedef struct normalize_ctx {
    int field;       /* which field */
    int n;           /* channels (1: all elements) */
    double *mean;    /* n values */
    double *std;     /* n values, > 0 */
} normalize_ctx;

static int normalize_fn(void *ctx, nb_tensor **fields, int n_fields, const nb_sample_info *info) {
    const char *who = "nb_transform_normalize";
    normalize_ctx *c = ctx;
    (void)info;
    nb_tensor *t = field_of(who, fields, n_fields, c->field, true);
    if (!t) return nb_last_error_code();
    int64_t chans = 1, plane = t->numel;
    if (c->n > 1) {
        if (t->ndim < 3 || t->shape[t->ndim - 3] != c->n)
            return nb__err(NB_ESHAPE, "%s: field %d has shape %s; expected %d channels at dim -3", who, c->field,
                           nb__shape_str(t), c->n);
        chans = c->n;
        plane = t->shape[t->ndim - 2] * t->shape[t->ndim - 1];
    }
    nb_tensor *o = new_like(who, t, t->shape, true);
    if (!o) return nb_last_error_code();
    int64_t planes = plane ? o->numel / plane : 0;
    for (int64_t p = 0; p < planes; p++) {
        int64_t ch = p % chans;
        double m = c->mean[ch], inv = 1.0 / c->std[ch];
        if (o->dtype == NB_F32) {
            float *x = (float *)nb_data(o) + p * plane;
            for (int64_t e = 0; e < plane; e++) x[e] = (float)((x[e] - m) * inv);
        } else {
            double *x = (double *)nb_data(o) + p * plane;
            for (int64_t e = 0; e < plane; e++) x[e] = (x[e] - m) * inv;
        }
    }
    return replace(fields, c->field, o);
}

static void normalize_free(void *ctx) {
    normalize_ctx *c = ctx;
    free(c->mean);
    free(c->std);
    free(c);
}

NB_API nb_transform *nb_transform_normalize(int field, int n, const double *mean, const double *std) {
    const char *who = "nb_transform_normalize";
    if (!mean || !std) return nb__err(NB_ENULLARG, "%s: %s is NULL", who, mean ? "std" : "mean"), NULL;
    if (field < 0 || field >= NB_DATA_MAX_FIELDS || n < 1 || n > (1 << 20))
        return nb__err(NB_EINVAL, "%s: field %d or channel count %d out of range", who, field, n), NULL;
    for (int i = 0; i < n; i++)
        if (!(std[i] > 0) || mean[i] != mean[i])
            return nb__err(NB_EINVAL, "%s: channel %d has mean %g and std %g (std must be > 0)", who, i, mean[i],
                           std[i]),
                   NULL;
    normalize_ctx *c = calloc(1, sizeof *c);
    if (!c) goto fail_nomem;
    c->field = field;
    c->n = n;
    c->mean = malloc(sizeof(double) * (size_t)n);
    c->std = malloc(sizeof(double) * (size_t)n);
    if (!c->mean || !c->std) goto fail_ctx;
    memcpy(c->mean, mean, sizeof(double) * (size_t)n);
    memcpy(c->std, std, sizeof(double) * (size_t)n);
    nb_transform *t = nb_transform_new(normalize_fn, c, normalize_free);
    if (!t) normalize_free(c);
    return t;
fail_ctx:
    normalize_free(c);
fail_nomem:
    nb__err(NB_ENOMEM, "%s: out of memory", who);
    return NULL;
}

/* ---- random horizontal flip ---- */

typedef struct flip_ctx {
    int field;   /* which field */
    double p;    /* probability of a flip */
} flip_ctx;

static int hflip_fn(void *ctx, nb_tensor **fields, int n_fields, const nb_sample_info *info) {
    const char *who = "nb_transform_random_hflip";
    flip_ctx *c = ctx;
    nb_tensor *t = field_of(who, fields, n_fields, c->field, false);
    if (!t) return nb_last_error_code();
    if (!((double)info->random[0] < c->p * 4294967296.0)) return 0;   /* not this time */
    nb_tensor *o = new_like(who, t, t->shape, true);
    if (!o) return nb_last_error_code();
    int64_t w = o->shape[o->ndim - 1], rows = w ? o->numel / w : 0;
    size_t es = nb_dtype_size(o->dtype);
    char *d = nb_data(o), tmp[8];
    for (int64_t r = 0; r < rows; r++) {
        char *row = d + (size_t)(r * w) * es;
        for (int64_t a = 0, b = w - 1; a < b; a++, b--) {
            memcpy(tmp, row + (size_t)a * es, es);
            memcpy(row + (size_t)a * es, row + (size_t)b * es, es);
            memcpy(row + (size_t)b * es, tmp, es);
        }
    }
    return replace(fields, c->field, o);
}

NB_API nb_transform *nb_transform_random_hflip(int field, double p) {
    if (field < 0 || field >= NB_DATA_MAX_FIELDS || !(p >= 0 && p <= 1))
        return nb__err(NB_EINVAL, "nb_transform_random_hflip: field %d or probability %g out of range", field, p),
               NULL;
    flip_ctx *c = malloc(sizeof *c);
    if (!c) return nb__err(NB_ENOMEM, "nb_transform_random_hflip: out of memory"), NULL;
    *c = (flip_ctx){.field = field, .p = p};
    nb_transform *t = nb_transform_new(hflip_fn, c, free);
    if (!t) free(c);
    return t;
}

/* ---- random crop with padding ---- */

typedef struct crop_ctx {
    int field;              /* which field */
    int64_t h, w, pad;      /* output height, width; zeros added on each side */
} crop_ctx;

static int crop_fn(void *ctx, nb_tensor **fields, int n_fields, const nb_sample_info *info) {
    const char *who = "nb_transform_random_crop";
    crop_ctx *c = ctx;
    nb_tensor *t = field_of(who, fields, n_fields, c->field, false);
    if (!t) return nb_last_error_code();
    int nd = t->ndim;
    int64_t H = t->shape[nd - 2], W = t->shape[nd - 1];
    int64_t span_y = H + 2 * c->pad - c->h + 1, span_x = W + 2 * c->pad - c->w + 1;
    if (span_y < 1 || span_x < 1)
        return nb__err(NB_ESHAPE, "%s: a %lldx%lld crop does not fit field %d of shape %s padded by %lld", who,
                       (long long)c->h, (long long)c->w, c->field, nb__shape_str(t), (long long)c->pad);
    int64_t top = (int64_t)(info->random[1] % (uint64_t)span_y) - c->pad;   /* in input coordinates */
    int64_t left = (int64_t)(info->random[2] % (uint64_t)span_x) - c->pad;
    int64_t shape[NB_MAX_DIMS];
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)nd);
    shape[nd - 2] = c->h;
    shape[nd - 1] = c->w;
    nb_tensor *o = new_like(who, t, shape, false);
    if (!o) return nb_last_error_code();
    size_t es = nb_dtype_size(t->dtype), in_bytes = (size_t)t->numel * es;
    const char *src = nb_is_contiguous(t) ? nb_data(t) : NULL;
    char *copy = NULL;
    if (!src) {   /* a strided view: read it in C order first */
        copy = malloc(in_bytes ? in_bytes : 1);
        if (!copy || nb_copy_to(t, copy, in_bytes)) {
            free(copy);
            nb_release(o);
            return copy ? nb_last_error_code() : nb__err(NB_ENOMEM, "%s: out of memory", who);
        }
        src = copy;
    }
    char *dst = nb_data(o);
    memset(dst, 0, (size_t)o->numel * es);
    int64_t planes = H * W > 0 ? t->numel / (H * W) : 0;
    int64_t x0 = left < 0 ? -left : 0, x1 = W - left < c->w ? W - left : c->w;   /* output columns with input */
    for (int64_t p = 0; p < planes && x1 > x0; p++)
        for (int64_t y = 0; y < c->h; y++) {
            int64_t iy = top + y;
            if (iy < 0 || iy >= H) continue;
            memcpy(dst + (size_t)((p * c->h + y) * c->w + x0) * es,
                   src + (size_t)((p * H + iy) * W + left + x0) * es, (size_t)(x1 - x0) * es);
        }
    free(copy);
    return replace(fields, c->field, o);
}

NB_API nb_transform *nb_transform_random_crop(int field, int64_t height, int64_t width, int64_t padding) {
    if (field < 0 || field >= NB_DATA_MAX_FIELDS || height < 1 || width < 1 || padding < 0 ||
        padding > ((int64_t)1 << 30))
        return nb__err(NB_EINVAL, "nb_transform_random_crop: field %d, size %lldx%lld or padding %lld out of range",
                       field, (long long)height, (long long)width, (long long)padding),
               NULL;
    crop_ctx *c = malloc(sizeof *c);
    if (!c) return nb__err(NB_ENOMEM, "nb_transform_random_crop: out of memory"), NULL;
    *c = (crop_ctx){.field = field, .h = height, .w = width, .pad = padding};
    nb_transform *t = nb_transform_new(crop_fn, c, free);
    if (!t) free(c);
    return t;
}
