/* dataset.c — datasets: the user-defined kind (a length and a get-item
 * callback), PyTorch's TensorDataset, and the per-sample pipeline
 * (get-item, then the transforms) that the loader runs on its workers.
 *
 * A sample is read inside a scope opened for it alone: whatever get-item and
 * the transforms make (the fields and their temporaries) dies at its end,
 * except the final fields, which are retained and handed back as +1
 * references. So user callbacks follow the ordinary rule of nabla code (no
 * retain, no release) on any thread.
 */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

/* ---- the counter-based draws ---- */

void nb__data_draw(uint64_t seed, uint64_t i, uint64_t epoch, uint32_t stream, uint32_t out[4]) {
    const uint32_t ctr[4] = {(uint32_t)i, (uint32_t)(i >> 32), (uint32_t)epoch, stream};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    nb__philox4x32_10(ctr, key, out);
}

/* ---- errors from user callbacks ---- */

NB_API int nb_data_error(int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
    va_end(ap);
    if (code >= 0) code = NB_EINVAL;
    return nb__err(code, "%s", msg);
}

/* Rewrites this thread's error as "<who>: sample <i>: <what>: <message>". A
 * callback that failed without a message gets one naming its code. */
static int sample_fail(const char *who, int64_t index, const char *what, int rc) {
    char msg[1024];
    if (rc >= 0) rc = NB_EINVAL;
    const char *last = nb_last_error();
    if (last[0])
        snprintf(msg, sizeof msg, "%s", last);
    else
        snprintf(msg, sizeof msg, "failed with %s", nb_error_name(rc));
    return nb__err(rc, "%s: sample %lld: %s: %s", who, (long long)index, what, msg);
}

/* 0 when every field is set, else the failure (a NULL field carries the
 * error of whatever made it). */
static int check_fields(const char *who, int64_t index, const char *what, nb_tensor **f, int n) {
    for (int i = 0; i < n; i++) {
        if (f[i]) continue;
        const char *last = nb_last_error();
        if (last[0]) return sample_fail(who, index, what, nb_last_error_code() < 0 ? nb_last_error_code() : NB_EINVAL);
        return nb__err(NB_EINVAL, "%s: sample %lld: %s returned 0 but left field %d NULL", who, (long long)index,
                       what, i);
    }
    return 0;
}

int nb__data_sample(const char *who, nb_dataset *ds, int64_t index, nb_transform *const *tf, int n_tf,
                    uint64_t seed, int64_t epoch, nb_tensor **out) {
    int nf = ds->def.n_fields, rc;
    nb_tensor *f[NB_DATA_MAX_FIELDS] = {0};
    for (int i = 0; i < nf; i++) out[i] = NULL;
    int depth = nb_scope_depth();
    nb_scope_begin();
    if (nb_scope_depth() != depth + 1) return nb__err(NB_ENOMEM, "%s: out of memory opening a scope", who);
    nb_clear_error();
    rc = ds->def.get(ds->def.self, index, f);
    if (rc) {
        rc = sample_fail(who, index, "get-item", rc);
        goto out_scope;
    }
    if ((rc = check_fields(who, index, "get-item", f, nf))) goto out_scope;
    for (int k = 0; k < n_tf; k++) {
        nb_sample_info info = {.index = index, .epoch = epoch, .seed = seed, .position = k};
        nb__data_draw(seed, (uint64_t)index, (uint64_t)epoch, 1u + (uint32_t)k, info.random);
        nb_clear_error();
        rc = tf[k]->fn(tf[k]->ctx, f, nf, &info);
        if (rc) {
            rc = sample_fail(who, index, "transform", rc);
            goto out_scope;
        }
        if ((rc = check_fields(who, index, "transform", f, nf))) goto out_scope;
    }
    for (int i = 0; i < nf; i++) out[i] = nb_retain(f[i]);
out_scope:
    nb_scope_end();
    return rc;
}

/* ---- datasets ---- */

NB_API nb_dataset *nb_dataset_new(const nb_dataset_def *def) {
    if (!def || !def->len || !def->get) {
        nb__err(NB_ENULLARG, "nb_dataset_new: %s is NULL", !def ? "def" : !def->len ? "def->len" : "def->get");
        return NULL;
    }
    if (def->n_fields < 1 || def->n_fields > NB_DATA_MAX_FIELDS) {
        nb__err(NB_EINVAL, "nb_dataset_new: n_fields is %d (expected 1 to %d)", def->n_fields, NB_DATA_MAX_FIELDS);
        return NULL;
    }
    nb_dataset *ds = malloc(sizeof *ds);
    if (!ds) {
        nb__err(NB_ENOMEM, "nb_dataset_new: out of memory");
        return NULL;
    }
    ds->def = *def;
    return ds;
}

NB_API void nb_dataset_free(nb_dataset *ds) {
    if (!ds) return;
    if (ds->def.destroy) ds->def.destroy(ds->def.self);
    free(ds);
}

NB_API int64_t nb_dataset_len(const nb_dataset *ds) {
    if (!ds) return nb__err(NB_ENULLARG, "nb_dataset_len: dataset is NULL"), -1;
    int64_t n = ds->def.len(ds->def.self);
    if (n < 0) nb__err(NB_EINVAL, "nb_dataset_len: the len callback returned %lld", (long long)n);
    return n < 0 ? -1 : n;
}

NB_API int nb_dataset_n_fields(const nb_dataset *ds) { return ds ? ds->def.n_fields : -1; }

NB_API int nb_dataset_get(nb_dataset *ds, int64_t index, nb_tensor **fields) {
    if (!ds || !fields) return nb__err(NB_ENULLARG, "nb_dataset_get: %s is NULL", ds ? "fields" : "dataset");
    int nf = ds->def.n_fields;
    for (int i = 0; i < nf; i++) fields[i] = NULL;
    int64_t n = nb_dataset_len(ds);
    if (n < 0) return nb_last_error_code();
    if (index < -n || index >= n)
        return nb__err(NB_ERANGE, "nb_dataset_get: index %lld out of range for a dataset of %lld samples",
                       (long long)index, (long long)n);
    if (index < 0) index += n;
    nb_tensor *f[NB_DATA_MAX_FIELDS];
    int rc = nb__data_sample("nb_dataset_get", ds, index, NULL, 0, 0, 0, f);
    if (rc) return rc;
    for (int i = 0; i < nf; i++) {
        fields[i] = nb__scoped(f[i]);
        if (!fields[i]) {   /* nb__scoped released it and said why; drop the rest */
            for (int j = i + 1; j < nf; j++) nb_release(f[j]);
            for (int j = 0; j < nf; j++) fields[j] = NULL;
            return NB_ENOMEM;
        }
    }
    return 0;
}

/* ---- TensorDataset ---- */

typedef struct tensor_ds {
    int n;                                   /* tensors */
    int64_t rows;                            /* their common size of dim 0 */
    nb_tensor *t[NB_DATA_MAX_FIELDS];        /* retained */
} tensor_ds;

static int64_t tensor_ds_len(void *self) { return ((tensor_ds *)self)->rows; }

/* Row `index` of each tensor, as a view (+1, handed to the sample's scope). */
static int tensor_ds_get(void *self, int64_t index, nb_tensor **fields) {
    tensor_ds *d = self;
    for (int k = 0; k < d->n; k++) {
        const nb_tensor *t = d->t[k];
        fields[k] = nb__scoped(nb__alias(t, t->ndim - 1, t->shape + 1, t->stride + 1,
                                         t->offset + index * t->stride[0]));
        if (!fields[k]) return nb_last_error_code() < 0 ? nb_last_error_code() : NB_ENOMEM;
    }
    return 0;
}

static void tensor_ds_free(void *self) {
    tensor_ds *d = self;
    for (int k = 0; k < d->n; k++) nb_release(d->t[k]);
    free(d);
}

NB_API nb_dataset *nb_tensor_dataset(nb_tensor *const *tensors, int n) {
    const char *who = "nb_tensor_dataset";
    if (!tensors) return nb__err(NB_ENULLARG, "%s: tensors is NULL", who), NULL;
    if (n < 1 || n > NB_DATA_MAX_FIELDS)
        return nb__err(NB_EINVAL, "%s: %d tensors given (expected 1 to %d)", who, n, NB_DATA_MAX_FIELDS), NULL;
    for (int k = 0; k < n; k++) {
        const nb_tensor *t = tensors[k];
        if (!t) return nb__err(NB_ENULLARG, "%s: tensor %d is NULL", who, k), NULL;
        if (t->ndim < 1)
            return nb__err(NB_EINVAL, "%s: tensor %d is a scalar; each needs a dim 0 of samples", who, k), NULL;
        if (t->shape[0] != tensors[0]->shape[0])
            return nb__err(NB_ESHAPE, "%s: tensor %d has shape %s but tensor 0 has %s (dim 0 must agree)", who, k,
                           nb__shape_str(t), nb__shape_str(tensors[0])),
                   NULL;
    }
    tensor_ds *d = calloc(1, sizeof *d);
    if (!d) return nb__err(NB_ENOMEM, "%s: out of memory", who), NULL;
    d->n = n;
    d->rows = tensors[0]->shape[0];
    for (int k = 0; k < n; k++) d->t[k] = nb_retain(tensors[k]);
    nb_dataset *ds = nb_dataset_new(&(nb_dataset_def){
        .n_fields = n, .len = tensor_ds_len, .get = tensor_ds_get, .destroy = tensor_ds_free, .self = d});
    if (!ds) tensor_ds_free(d);
    return ds;
}
