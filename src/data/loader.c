/* loader.c — the data loader: seeded order, batching (collate by stacking),
 * and prefetching on background threads.
 *
 * Work unit: one batch. Batch k of an epoch holds the samples at positions
 * k*B .. k*B+B-1 of the epoch's order, and is made whole by one thread
 * (read each sample, apply the transforms, copy it into row j of each
 * field's batch tensor). What a batch holds therefore depends only on
 * (seed, epoch, k), never on which thread made it.
 *
 * Workers take batch numbers in increasing order from `next_take`, but never
 * more than n_slots ahead of `next_out`, the batch the caller gets next; a
 * batch k lives in slot k % n_slots, which is free by then because batch
 * k - n_slots was consumed. The caller waits for its slot to be READY, so
 * batches come out in order whatever the number of workers, and memory is
 * bounded by n_slots batches.
 *
 * Invariants (under mu): the epoch's order, n and n_batches change only
 * while `active` is false and no worker is busy, so workers read them
 * without the lock after taking a batch; a slot is FREE, BUSY (a worker
 * fills it) or READY (made, not yet consumed).
 */
#include "data/data.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_READY } slot_state;

typedef struct slot {
    slot_state state;                         /* see the invariants */
    int64_t batch;                            /* the batch it holds or is being filled with */
    int rc;                                   /* 0, or the failure's code */
    char *msg;                                /* the failure's message (malloc'd), or NULL */
    nb_tensor *fields[NB_DATA_MAX_FIELDS];    /* +1 references when READY and rc == 0 */
} slot;

struct nb_loader {
    nb_dataset *ds;                 /* borrowed */
    nb_transform **tf;              /* copy of the borrowed list */
    int n_tf;                       /* entries of tf */
    int n_fields;                   /* tensors per sample and per batch */
    int64_t batch_size;             /* samples per batch */
    bool shuffle, drop_last;        /* options */
    uint64_t seed;                  /* shuffle and transform key */
    int64_t epoch;                  /* current epoch; -1 before the first */
    bool ended;                     /* next() returned 0 for the current epoch */
    int64_t n;                      /* samples in the current epoch */
    int64_t n_batches;              /* batches in the current epoch */
    int64_t *order;                 /* n dataset indices */
    int64_t next_out;               /* the batch next() returns next */

    pthread_mutex_t mu;             /* guards what follows */
    pthread_cond_t work_cv;         /* workers wait for work or stop */
    pthread_cond_t done_cv;         /* the caller waits for a slot or for busy == 0 */
    int64_t next_take;              /* the batch a worker takes next */
    int busy;                       /* workers making a batch now */
    bool active;                    /* an epoch is running: workers may take batches */
    bool stop;                      /* nb_loader_free: workers exit */
    slot *slots;                    /* n_slots ring */
    int n_slots;                    /* num_workers * prefetch */
    pthread_t *threads;             /* the workers */
    int n_threads;                  /* started */
};

static void release_fields(nb_tensor **f, int n) {
    for (int i = 0; i < n; i++) {
        nb_release(f[i]);
        f[i] = NULL;
    }
}

/* ---- making a batch (any thread) ---- */

/* Batch k of the current epoch into out[0..n_fields) (+1, no scope). */
static int make_batch(nb_loader *l, int64_t k, nb_tensor **out) {
    const char *who = "nb_loader_next";
    int nf = l->n_fields, rc = 0;
    int64_t start = k * l->batch_size, end = start + l->batch_size;
    if (end > l->n) end = l->n;
    int64_t count = end - start;
    size_t row_bytes[NB_DATA_MAX_FIELDS] = {0};
    for (int i = 0; i < nf; i++) out[i] = NULL;
    nb_tensor *s[NB_DATA_MAX_FIELDS];
    for (int64_t j = 0; j < count; j++) {
        int64_t index = l->order[start + j];
        rc = nb__data_sample(who, l->ds, index, l->tf, l->n_tf, l->seed, l->epoch, s);
        if (rc) goto fail;
        for (int i = 0; i < nf; i++) {
            if (j == 0) {   /* the first sample fixes each field's shape and dtype */
                if (s[i]->ndim + 1 > NB_MAX_DIMS) {
                    rc = nb__err(NB_EINVAL, "%s: sample %lld field %d has %d dims; a batch adds one (max %d)",
                                 who, (long long)index, i, s[i]->ndim, NB_MAX_DIMS);
                    goto fail_sample;
                }
                int64_t shape[NB_MAX_DIMS];
                shape[0] = count;
                memcpy(shape + 1, s[i]->shape, sizeof(int64_t) * (size_t)s[i]->ndim);
                out[i] = nb__new(who, s[i]->dtype, s[i]->ndim + 1, shape);
                if (!out[i]) {
                    rc = nb_last_error_code();
                    goto fail_sample;
                }
                row_bytes[i] = (size_t)s[i]->numel * nb_dtype_size(s[i]->dtype);
            } else if (s[i]->dtype != out[i]->dtype || s[i]->ndim + 1 != out[i]->ndim ||
                       memcmp(s[i]->shape, out[i]->shape + 1, sizeof(int64_t) * (size_t)s[i]->ndim)) {
                rc = nb__err(NB_ESHAPE,
                             "%s: sample %lld field %d is %s %s but the batch's first sample (%lld) has %s %s; "
                             "samples must agree to be stacked",
                             who, (long long)index, i, nb_dtype_name(s[i]->dtype), nb__shape_str(s[i]),
                             (long long)l->order[start], nb_dtype_name(out[i]->dtype),
                             nb__dims_str(out[i]->ndim - 1, out[i]->shape + 1));
                goto fail_sample;
            }
            rc = nb_copy_to(s[i], (char *)nb_data(out[i]) + (size_t)j * row_bytes[i], row_bytes[i]);
            if (rc) goto fail_sample;
        }
        release_fields(s, nf);
    }
    return 0;
fail_sample:
    release_fields(s, nf);
fail:
    release_fields(out, nf);
    return rc;
}

/* ---- workers ---- */

static bool can_take(const nb_loader *l) {
    return l->active && l->next_take < l->n_batches && l->next_take < l->next_out + l->n_slots;
}

static void *worker_main(void *arg) {
    nb_loader *l = arg;
    nb_scope_begin();   /* keeps this thread's scope stack allocated between samples */
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !can_take(l)) pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->stop) break;
        int64_t k = l->next_take++;
        slot *s = &l->slots[k % l->n_slots];
        s->state = SLOT_BUSY;
        s->batch = k;
        l->busy++;
        pthread_mutex_unlock(&l->mu);

        nb_tensor *f[NB_DATA_MAX_FIELDS];
        int rc = make_batch(l, k, f);
        char *msg = rc ? strdup(nb_last_error()) : NULL;

        pthread_mutex_lock(&l->mu);
        s->rc = rc;
        s->msg = msg;
        memcpy(s->fields, f, sizeof(nb_tensor *) * (size_t)l->n_fields);
        s->state = SLOT_READY;
        l->busy--;
        pthread_cond_broadcast(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    nb_scope_end();
    return NULL;
}

static void slot_clear(slot *s, int nf) {
    if (s->state == SLOT_READY && s->rc == 0) release_fields(s->fields, nf);
    free(s->msg);
    s->msg = NULL;
    s->rc = 0;
    s->state = SLOT_FREE;
}

/* Stops the workers from taking batches and waits for the busy ones; drops
 * what was prefetched. Afterwards the epoch's state may change. */
static void quiesce(nb_loader *l) {
    if (!l->n_threads) return;
    pthread_mutex_lock(&l->mu);
    l->active = false;
    while (l->busy > 0) pthread_cond_wait(&l->done_cv, &l->mu);
    for (int i = 0; i < l->n_slots; i++) slot_clear(&l->slots[i], l->n_fields);
    pthread_mutex_unlock(&l->mu);
}

/* ---- the public API ---- */

NB_API nb_loader *nb_loader_new(nb_dataset *ds, const nb_loader_opts *opts) {
    const char *who = "nb_loader_new";
    nb_loader_opts o = opts ? *opts : (nb_loader_opts){0};
    if (!ds) return nb__err(NB_ENULLARG, "%s: dataset is NULL", who), NULL;
    if (o.batch_size < 0 || o.num_workers < 0 || o.prefetch < 0 || o.n_transforms < 0)
        return nb__err(NB_EINVAL,
                       "%s: negative batch_size (%lld), num_workers (%d), prefetch (%d) or n_transforms (%d)", who,
                       (long long)o.batch_size, o.num_workers, o.prefetch, o.n_transforms),
               NULL;
    if (o.num_workers > 1024 || o.prefetch > 1024)
        return nb__err(NB_EINVAL, "%s: num_workers %d or prefetch %d is over 1024", who, o.num_workers, o.prefetch),
               NULL;
    if (o.n_transforms && !o.transforms) return nb__err(NB_ENULLARG, "%s: transforms is NULL", who), NULL;
    for (int k = 0; k < o.n_transforms; k++)
        if (!o.transforms[k]) return nb__err(NB_ENULLARG, "%s: transform %d is NULL", who, k), NULL;
    nb__ensure_init();   /* here, so the workers never race to start the runtime */

    nb_loader *l = calloc(1, sizeof *l);
    if (!l) goto fail_nomem;
    l->ds = ds;
    l->n_fields = ds->def.n_fields;
    l->batch_size = o.batch_size ? o.batch_size : 1;
    l->shuffle = o.shuffle;
    l->drop_last = o.drop_last;
    l->seed = o.seed;
    l->epoch = -1;
    l->n_tf = o.n_transforms;
    if (l->n_tf) {
        l->tf = malloc(sizeof *l->tf * (size_t)l->n_tf);
        if (!l->tf) goto fail_loader;
        memcpy(l->tf, o.transforms, sizeof *l->tf * (size_t)l->n_tf);
    }
    if (pthread_mutex_init(&l->mu, NULL)) goto fail_tf;
    if (pthread_cond_init(&l->work_cv, NULL)) goto fail_mutex;
    if (pthread_cond_init(&l->done_cv, NULL)) goto fail_work_cv;
    if (o.num_workers) {
        l->n_slots = o.num_workers * (o.prefetch ? o.prefetch : 2);
        l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
        l->threads = calloc((size_t)o.num_workers, sizeof *l->threads);
        if (!l->slots || !l->threads) goto fail_threads;
        for (int i = 0; i < o.num_workers; i++) {
            if (pthread_create(&l->threads[i], NULL, worker_main, l)) {
                nb__err(NB_ESTATE, "%s: cannot start worker thread %d of %d", who, i + 1, o.num_workers);
                nb_loader_free(l);
                return NULL;
            }
            l->n_threads++;
        }
    }
    return l;

fail_threads:
    free(l->slots);
    free(l->threads);
    pthread_cond_destroy(&l->done_cv);
fail_work_cv:
    pthread_cond_destroy(&l->work_cv);
fail_mutex:
    pthread_mutex_destroy(&l->mu);
fail_tf:
    free(l->tf);
fail_loader:
    free(l);
fail_nomem:
    nb__err(NB_ENOMEM, "%s: out of memory", who);
    return NULL;
}

NB_API void nb_loader_free(nb_loader *l) {
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    for (int i = 0; i < l->n_slots; i++) slot_clear(&l->slots[i], l->n_fields);
    free(l->slots);
    free(l->threads);
    pthread_cond_destroy(&l->done_cv);
    pthread_cond_destroy(&l->work_cv);
    pthread_mutex_destroy(&l->mu);
    free(l->order);
    free(l->tf);
    free(l);
}

/* Fisher-Yates: step i (n-1 down to 1) swaps position i with a position
 * j <= i drawn from Philox at counter (i, epoch, 0). The modulo's bias is
 * under n / 2^64. */
static void make_order(int64_t *order, int64_t n, bool shuffle, uint64_t seed, int64_t epoch) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t r[4];
        nb__data_draw(seed, (uint64_t)i, (uint64_t)epoch, NB__DATA_STREAM_SHUFFLE, r);
        uint64_t j = (((uint64_t)r[1] << 32) | r[0]) % (uint64_t)(i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static int64_t batches_for(const nb_loader *l, int64_t n) {
    return l->drop_last ? n / l->batch_size : (n + l->batch_size - 1) / l->batch_size;
}

NB_API int nb_loader_begin_epoch(nb_loader *l, int64_t epoch) {
    if (!l) return nb__err(NB_ENULLARG, "nb_loader_begin_epoch: loader is NULL");
    if (epoch < 0) return nb__err(NB_ERANGE, "nb_loader_begin_epoch: epoch %lld is negative", (long long)epoch);
    int64_t n = nb_dataset_len(l->ds);
    if (n < 0) return nb_last_error_code();
    quiesce(l);
    /* no worker runs now: the epoch's state is ours */
    l->epoch = epoch;
    l->ended = false;
    l->next_out = 0;
    l->n = 0;
    l->n_batches = 0;
    if ((uint64_t)n > SIZE_MAX / sizeof(int64_t))
        return nb__err(NB_EOVERFLOW, "nb_loader_begin_epoch: %lld samples", (long long)n);
    int64_t *order = realloc(l->order, sizeof *order * (size_t)(n ? n : 1));
    if (!order) return nb__err(NB_ENOMEM, "nb_loader_begin_epoch: out of memory for the order of %lld samples",
                               (long long)n);
    l->order = order;
    make_order(order, n, l->shuffle, l->seed, epoch);
    l->n = n;
    l->n_batches = batches_for(l, n);
    /* The kernel registry settles its choice lazily, at the first dispatch
     * after nb_init, without a lock: settle it here, on the calling thread,
     * so workers running ops in get-item only read it. */
    nb_kernel_chosen((nb_op)0, NB_F32);
    if (l->n_threads) {
        pthread_mutex_lock(&l->mu);
        l->next_take = 0;
        l->active = true;
        pthread_cond_broadcast(&l->work_cv);
        pthread_mutex_unlock(&l->mu);
    }
    return 0;
}

NB_API int nb_loader_reset(nb_loader *l) {
    if (!l) return nb__err(NB_ENULLARG, "nb_loader_reset: loader is NULL");
    return nb_loader_begin_epoch(l, l->epoch < 0 ? 0 : l->epoch);
}

NB_API int64_t nb_loader_epoch(const nb_loader *l) { return l ? l->epoch : -1; }

NB_API int64_t nb_loader_num_batches(const nb_loader *l) {
    if (!l) return nb__err(NB_ENULLARG, "nb_loader_num_batches: loader is NULL"), -1;
    if (l->epoch >= 0) return l->n_batches;
    int64_t n = nb_dataset_len(l->ds);
    return n < 0 ? -1 : batches_for(l, n);
}

/* Waits for batch next_out from the workers and takes it. */
static int take_ready(nb_loader *l, nb_tensor **f) {
    pthread_mutex_lock(&l->mu);
    slot *s = &l->slots[l->next_out % l->n_slots];
    while (!(s->state == SLOT_READY && s->batch == l->next_out)) pthread_cond_wait(&l->done_cv, &l->mu);
    int rc = s->rc;
    char *msg = s->msg;
    memcpy(f, s->fields, sizeof(nb_tensor *) * (size_t)l->n_fields);
    s->msg = NULL;
    s->state = SLOT_FREE;
    l->next_out++;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    if (rc) nb__err(rc, "%s", msg ? msg : "nb_loader_next: a worker failed (no message: out of memory)");
    free(msg);
    return rc;
}

NB_API int nb_loader_next(nb_loader *l, nb_tensor **batch) {
    if (!l || !batch) return nb__err(NB_ENULLARG, "nb_loader_next: %s is NULL", l ? "batch" : "loader");
    int nf = l->n_fields, rc = 0;
    if (l->epoch < 0 || l->ended) {
        rc = nb_loader_begin_epoch(l, l->epoch < 0 ? 0 : l->epoch + 1);
        if (rc) goto fail;
    }
    if (l->next_out >= l->n_batches) {
        l->ended = true;
        return 0;
    }
    nb_tensor *f[NB_DATA_MAX_FIELDS];
    if (l->n_threads) {
        rc = take_ready(l, f);
    } else {
        rc = make_batch(l, l->next_out, f);
        l->next_out++;
    }
    if (rc) goto fail;
    for (int i = 0; i < nf; i++) {
        batch[i] = nb__scoped(f[i]);
        if (!batch[i]) {   /* out of memory recording it (and f[i] released): drop the rest */
            release_fields(f + i + 1, nf - i - 1);
            rc = NB_ENOMEM;
            goto fail;
        }
    }
    return 1;
fail:
    for (int i = 0; i < nf; i++) batch[i] = NULL;
    return rc;
}
