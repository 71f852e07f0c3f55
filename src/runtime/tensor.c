/* tensor.c — tensor objects and storage: creation of raw tensors, aliases
 * (views), reference counting, inspection and element access.
 *
 * A tensor object is small and always heap-allocated; its storage is shared
 * by views and freed with the last of them. Everything here is below autograd:
 * nb__ag_free (installed by the autograd layer) drops autograd state.
 */
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

_Atomic nb__ag_free_fn nb__ag_free;

static const size_t dtype_sizes[NB_DTYPE_COUNT] = {4, 8, 8, 1};
static const char *const dtype_names[NB_DTYPE_COUNT] = {"f32", "f64", "i64", "bool"};

NB_API const char *nb_dtype_name(nb_dtype dt) {
    return (unsigned)dt < NB_DTYPE_COUNT ? dtype_names[dt] : "invalid";
}
NB_API size_t nb_dtype_size(nb_dtype dt) { return (unsigned)dt < NB_DTYPE_COUNT ? dtype_sizes[dt] : 0; }

NB_API nb_dims nb_dims_of(int ndim, const int64_t *sizes) {
    nb_dims d = {.ndim = -1};
    if (ndim < 0 || ndim > NB_MAX_DIMS || (ndim > 0 && !sizes)) return d;
    d.ndim = ndim;
    for (int i = 0; i < ndim; i++) d.d[i] = sizes[i];
    return d;
}

void nb__contig_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

bool nb__same_shape(const nb_tensor *a, const nb_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

int nb__check_dims(const char *who, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > NB_MAX_DIMS)
        return nb__err(NB_EINVAL, "%s: %d dims requested; nabla supports 0 to %d", who, ndim, NB_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return nb__err(NB_EINVAL, "%s: negative size %lld in shape %s", who, (long long)shape[i],
                           nb__dims_str(ndim, shape));
    return 0;
}

int nb__wrap_dim(const char *who, int dim, int ndim) {
    int n = ndim > 0 ? ndim : 1;   /* a 0-dim tensor accepts dim 0 and -1, as PyTorch */
    if (dim < -n || dim >= n) {
        nb__err(NB_ERANGE, "%s: dim %d out of range for a tensor of %d dims (expected %d to %d)", who, dim,
                ndim, -n, n - 1);
        return -1;
    }
    return dim < 0 ? dim + n : dim;
}

static nb_tensor *tensor_obj(void) {
    nb_tensor *t = nb__obj_alloc(sizeof *t);
    if (!t) {
        nb__err(NB_ENOMEM, "out of memory allocating a tensor object");
        return NULL;
    }
    atomic_init(&t->refcount, 1);
    t->ag = NULL;
    nb__tensor_count(1);
    return t;
}

nb_tensor *nb__new(const char *who, nb_dtype dt, int ndim, const int64_t *shape) {
    nb__ensure_init();
    if ((unsigned)dt >= NB_DTYPE_COUNT) {
        nb__err(NB_EDTYPE, "%s: invalid dtype %d", who, (int)dt);
        return NULL;
    }
    if (nb__check_dims(who, ndim, shape)) return NULL;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] != 0 && numel > (UINT64_MAX >> 4) / (uint64_t)shape[i]) {
            nb__err(NB_EOVERFLOW, "%s: shape %s has too many elements", who, nb__dims_str(ndim, shape));
            return NULL;
        }
        numel *= (uint64_t)shape[i];
    }
    size_t es = dtype_sizes[dt];
    if (numel > ((uint64_t)1 << 50) / es) {
        nb__err(NB_ENOMEM, "%s: cannot allocate a tensor of shape %s (%llu elements of %s)", who,
                nb__dims_str(ndim, shape), (unsigned long long)numel, dtype_names[dt]);
        return NULL;
    }
    nb__storage *s = nb__obj_alloc(sizeof *s);
    void *data = s ? nb__alloc(numel * es) : NULL;
    if (!data) {
        nb__obj_free(s, sizeof *s);
        nb__err(NB_ENOMEM, "%s: out of memory for a tensor of shape %s (%llu bytes)", who,
                nb__dims_str(ndim, shape), (unsigned long long)(numel * es));
        return NULL;
    }
    atomic_init(&s->refcount, 1);
    atomic_init(&s->version, 0);
    s->data = data;
    s->nbytes = numel * es;
    nb_tensor *t = tensor_obj();
    if (!t) {
        nb__free(data, s->nbytes);
        nb__obj_free(s, sizeof *s);
        return NULL;
    }
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    nb__contig_strides(ndim, shape, t->stride);
    t->offset = 0;
    t->numel = (int64_t)numel;
    t->storage = s;
    return t;
}

nb_tensor *nb__alias(const nb_tensor *src, int ndim, const int64_t *shape, const int64_t *stride,
                     int64_t offset) {
    nb_tensor *t = tensor_obj();
    if (!t) return NULL;
    t->dtype = src->dtype;
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
        t->numel *= shape[i];
    }
    t->offset = offset;
    t->storage = src->storage;
    atomic_fetch_add_explicit(&src->storage->refcount, 1, memory_order_relaxed);
    return t;
}

NB_API nb_tensor *nb_retain(nb_tensor *t) {
    if (t) atomic_fetch_add_explicit(&t->refcount, 1, memory_order_relaxed);
    return t;
}

NB_API void nb_release(nb_tensor *t) {
    if (!t || atomic_fetch_sub_explicit(&t->refcount, 1, memory_order_acq_rel) != 1) return;
    if (t->ag) {
        nb__ag_free_fn f = atomic_load_explicit(&nb__ag_free, memory_order_relaxed);
        if (f) f(t);
    }
    nb__storage *s = t->storage;
    if (atomic_fetch_sub_explicit(&s->refcount, 1, memory_order_acq_rel) == 1) {
        nb__free(s->data, s->nbytes);
        nb__obj_free(s, sizeof *s);
    }
    nb__tensor_count(-1);
    nb__obj_free(t, sizeof *t);
}

/* ---- inspection ---- */
NB_API int64_t nb_numel(const nb_tensor *t) { return t ? t->numel : -1; }
NB_API int nb_ndim(const nb_tensor *t) { return t ? t->ndim : -1; }
NB_API const int64_t *nb_shape(const nb_tensor *t) { return t ? t->shape : NULL; }
NB_API const int64_t *nb_strides(const nb_tensor *t) { return t ? t->stride : NULL; }
NB_API nb_dtype nb_dtype_of(const nb_tensor *t) { return t ? t->dtype : NB_DTYPE_COUNT; }
NB_API nb_dims nb_dims_get(const nb_tensor *t) {
    return t ? nb_dims_of(t->ndim, t->shape) : nb_dims_of(-1, NULL);
}
NB_API int64_t nb_size(const nb_tensor *t, int dim) {
    if (!t) return nb__err(NB_ENULLARG, "nb_size: tensor is NULL");
    int d = nb__wrap_dim("nb_size", dim, t->ndim);
    if (d < 0) return -1;
    return t->ndim ? t->shape[d] : 1;
}

NB_API bool nb_is_contiguous(const nb_tensor *t) {
    if (!t) return false;
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

/* Channels-last (NHWC) is checked as nb_is_contiguous checks NCHW: C
 * innermost, then W, H, N, each stride the extent inside it; a size-1 dim
 * may have any stride (so a contiguous (N, 1, H, W) is both). */
NB_API bool nb_is_channels_last(const nb_tensor *t) {
    if (!t || t->ndim != 4) return false;
    static const int order[4] = {1, 3, 2, 0};
    int64_t e = 1;
    for (int i = 0; i < 4; i++) {
        int k = order[i];
        if (t->shape[k] != 1 && t->stride[k] != e) return false;
        e *= t->shape[k];
    }
    return true;
}

bool nb__suggests_channels_last(const nb_tensor *t) { return nb_is_channels_last(t) && !nb_is_contiguous(t); }

nb_tensor *nb__new_layout(const char *who, nb_dtype dt, int ndim, const int64_t *shape, bool channels_last) {
    if (!channels_last || ndim != 4) return nb__new(who, dt, ndim, shape);
    const int64_t nhwc[4] = {shape[0], shape[2], shape[3], shape[1]};
    nb_tensor *t = nb__new(who, dt, 4, nhwc);
    if (!t) return NULL;
    for (int i = 0; i < 4; i++) t->shape[i] = shape[i];
    t->stride[1] = 1, t->stride[3] = shape[1], t->stride[2] = shape[3] * shape[1], t->stride[0] = shape[2] * shape[3] * shape[1];
    return t;
}

NB_API void *nb_data(const nb_tensor *t) {
    if (!t) return NULL;
    return (char *)t->storage->data + t->offset * (int64_t)dtype_sizes[t->dtype];
}
NB_API void nb_bump_version(nb_tensor *t) {
    if (t) atomic_fetch_add_explicit(&t->storage->version, 1, memory_order_relaxed);
}
NB_API uint64_t nb_version(const nb_tensor *t) { return t ? atomic_load(&t->storage->version) : 0; }

double nb__load(const void *p, nb_dtype dt) {
    switch (dt) {
    case NB_DTYPE_F32: return *(const float *)p;
    case NB_DTYPE_F64: return *(const double *)p;
    case NB_DTYPE_I64: return (double)*(const int64_t *)p;
    case NB_DTYPE_BOOL: return *(const bool *)p;
    default: return NAN;
    }
}

void nb__store(void *p, nb_dtype dt, double v) {
    switch (dt) {
    case NB_DTYPE_F32: *(float *)p = (float)v; break;
    case NB_DTYPE_F64: *(double *)p = v; break;
    case NB_DTYPE_I64: *(int64_t *)p = isfinite(v) ? (int64_t)v : 0; break;
    case NB_DTYPE_BOOL: *(bool *)p = v != 0; break;
    default: break;
    }
}

NB_API double nb_get(const nb_tensor *t, const int64_t *index) {
    if (!t) return nb__err(NB_ENULLARG, "nb_get: tensor is NULL"), NAN;
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (!index || index[i] < 0 || index[i] >= t->shape[i]) {
            nb__err(NB_ERANGE, "nb_get: index out of range for shape %s", nb__shape_str(t));
            return NAN;
        }
        off += index[i] * t->stride[i];
    }
    return nb__load((const char *)nb_data(t) + off * (int64_t)dtype_sizes[t->dtype], t->dtype);
}

NB_API double nb_item(const nb_tensor *t) {
    if (!t) return nb__err(NB_ENULLARG, "nb_item: tensor is NULL"), NAN;
    if (t->numel != 1) {
        nb__err(NB_EINVAL, "nb_item: a tensor with %lld elements (shape %s) cannot be converted to a scalar",
                (long long)t->numel, nb__shape_str(t));
        return NAN;
    }
    return nb__load(nb_data(t), t->dtype);
}

NB_API int nb_copy_to(const nb_tensor *t, void *dst, size_t bytes) {
    if (!t || !dst) return nb__err(NB_ENULLARG, "nb_copy_to: %s is NULL", t ? "dst" : "tensor");
    size_t es = dtype_sizes[t->dtype], need = (size_t)t->numel * es;
    if (bytes < need)
        return nb__err(NB_EINVAL, "nb_copy_to: %zu bytes given, tensor of shape %s (%s) needs %zu", bytes,
                       nb__shape_str(t), dtype_names[t->dtype], need);
    if (nb_is_contiguous(t)) {
        if (need) memcpy(dst, nb_data(t), need);
        return 0;
    }
    int64_t idx[NB_MAX_DIMS] = {0};
    const char *base = nb_data(t);
    for (int64_t n = 0; n < t->numel; n++) {
        int64_t off = 0;
        for (int i = 0; i < t->ndim; i++) off += idx[i] * t->stride[i];
        memcpy((char *)dst + (size_t)n * es, base + off * (int64_t)es, es);
        for (int i = t->ndim - 1; i >= 0; i--) {
            if (++idx[i] < t->shape[i]) break;
            idx[i] = 0;
        }
    }
    return 0;
}
