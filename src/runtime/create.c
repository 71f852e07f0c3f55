/* create.c — creation functions: empty, zeros, ones, full, arange, rand,
 * randn, from_data, scalar.
 *
 * Random values come from Philox4x32-10 keyed by the seed with the element
 * index as counter, so element i depends only on (seed, i): the same values
 * whatever the number of threads or the tensor's size.
 */
#include "runtime/runtime.h"

#include <math.h>
#include <string.h>

static nb_tensor *make(const char *who, nb_dims shape, nb_dtype dt) {
    if (shape.ndim < 0 || shape.ndim > NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "%s: shape must have 0 to %d dims", who, NB_MAX_DIMS);
        return NULL;
    }
    return nb__new(who, dt, shape.ndim, shape.d);
}

static void fill_value(nb_tensor *t, double v) {
    char *p = nb_data(t);
    size_t es = nb_dtype_size(t->dtype);
    switch (t->dtype) {
    case NB_DTYPE_F32: { float x = (float)v; float *q = (float *)p; for (int64_t i = 0; i < t->numel; i++) q[i] = x; break; }
    case NB_DTYPE_F64: { double *q = (double *)p; for (int64_t i = 0; i < t->numel; i++) q[i] = v; break; }
    default:
        for (int64_t i = 0; i < t->numel; i++) nb__store(p + i * (int64_t)es, t->dtype, v);
    }
}

NB_API nb_tensor *nb_empty(nb_dims shape, nb_dtype dt) { return nb__scoped(make("nb_empty", shape, dt)); }

NB_API nb_tensor *nb_zeros(nb_dims shape, nb_dtype dt) {
    nb_tensor *t = make("nb_zeros", shape, dt);
    if (t) memset(nb_data(t), 0, t->storage->nbytes);
    return nb__scoped(t);
}

NB_API nb_tensor *nb_ones(nb_dims shape, nb_dtype dt) {
    nb_tensor *t = make("nb_ones", shape, dt);
    if (t) fill_value(t, 1.0);
    return nb__scoped(t);
}

NB_API nb_tensor *nb_full(nb_dims shape, nb_dtype dt, double value) {
    nb_tensor *t = make("nb_full", shape, dt);
    if (t) fill_value(t, value);
    return nb__scoped(t);
}

NB_API nb_tensor *nb_scalar_dtype(double v, nb_dtype dt) {
    nb_tensor *t = nb__new("nb_scalar", dt, 0, NULL);
    if (t) nb__store(nb_data(t), dt, v);
    return nb__scoped(t);
}

NB_API nb_tensor *nb_scalar(double v) { return nb_scalar_dtype(v, NB_DTYPE_F32); }

NB_API nb_tensor *nb_from_data(nb_dims shape, nb_dtype dt, const void *data) {
    if (!data) {
        nb__err(NB_ENULLARG, "nb_from_data: data is NULL");
        return NULL;
    }
    nb_tensor *t = make("nb_from_data", shape, dt);
    if (t && t->storage->nbytes) memcpy(nb_data(t), data, t->storage->nbytes);
    return nb__scoped(t);
}

NB_API nb_tensor *nb_arange(double start, double stop, double step, nb_dtype dt) {
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
        nb__err(NB_EINVAL, "nb_arange: need finite start/stop and a non-zero step (got %g, %g, %g)", start,
                stop, step);
        return NULL;
    }
    if ((step > 0 && stop < start) || (step < 0 && stop > start)) {
        nb__err(NB_EINVAL, "nb_arange: upper bound and larger bound inconsistent with step sign (%g, %g, %g)",
                start, stop, step);
        return NULL;
    }
    if (dt == NB_DTYPE_BOOL) {
        nb__err(NB_EDTYPE, "nb_arange: dtype bool is not supported");
        return NULL;
    }
    double n = ceil((stop - start) / step);
    if (n > 9e15) {
        nb__err(NB_EOVERFLOW, "nb_arange: %g elements is too many", n);
        return NULL;
    }
    int64_t len = (int64_t)n;
    nb_tensor *t = nb__new("nb_arange", dt, 1, &len);
    if (!t) return NULL;
    char *p = nb_data(t);
    size_t es = nb_dtype_size(dt);
    for (int64_t i = 0; i < len; i++) nb__store(p + i * (int64_t)es, dt, start + (double)i * step);
    return nb__scoped(t);
}

/* uniform [0,1) from 24 (f32) or 53 (f64) random bits */
static double u01_f32(uint32_t a) { return (double)(a >> 8) * (1.0 / 16777216.0); }
static double u01_f64(uint32_t a, uint32_t b) {
    return (double)(((uint64_t)(a >> 5) << 26) | (b >> 6)) * (1.0 / 9007199254740992.0);
}

static nb_tensor *random_tensor(const char *who, nb_dims shape, nb_dtype dt, uint64_t seed, bool normal) {
    if (dt != NB_DTYPE_F32 && dt != NB_DTYPE_F64) {
        nb__err(NB_EDTYPE, "%s: dtype %s is not supported (f32 or f64)", who, nb_dtype_name(dt));
        return NULL;
    }
    nb_tensor *t = make(who, shape, dt);
    if (!t) return NULL;
    float *pf = nb_data(t);
    double *pd = nb_data(t);
    /* Each Philox call yields 4 words; element i uses call i/2 (normal: one
     * Box-Muller pair per element pair; uniform f64: two words per element). */
    for (int64_t i = 0; i < t->numel; i++) {
        uint32_t r[4];
        double v;
        if (normal) {
            nb__philox(seed, (uint64_t)(i / 2), r);
            double u1 = dt == NB_DTYPE_F32 ? u01_f32(r[0]) : u01_f64(r[0], r[1]);
            double u2 = dt == NB_DTYPE_F32 ? u01_f32(r[2]) : u01_f64(r[2], r[3]);
            double rad = sqrt(-2.0 * log(1.0 - u1)), th = 6.283185307179586 * u2;
            v = (i & 1) ? rad * sin(th) : rad * cos(th);
        } else {
            nb__philox(seed, (uint64_t)(i / 2), r);
            int k = (int)(i & 1) * 2;
            v = dt == NB_DTYPE_F32 ? u01_f32(r[k]) : u01_f64(r[k], r[k + 1]);
        }
        if (dt == NB_DTYPE_F32) pf[i] = (float)v;
        else pd[i] = v;
    }
    return t;
}

NB_API nb_tensor *nb_rand(nb_dims shape, nb_dtype dt, uint64_t seed) {
    return nb__scoped(random_tensor("nb_rand", shape, dt, seed, false));
}
NB_API nb_tensor *nb_randn(nb_dims shape, nb_dtype dt, uint64_t seed) {
    return nb__scoped(random_tensor("nb_randn", shape, dt, seed, true));
}
