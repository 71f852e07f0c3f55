/* test_loader.c — datasets and the data loader: order and determinism
 * (seeds, epochs, reset, number of workers), drop_last, batch shapes and
 * values, errors from get-item, freeing mid-epoch, ownership of batches.
 *
 * The test dataset: sample i is (F32 [2] {i, -i}, I64 scalar i), made with
 * nabla functions inside get-item, so its label field tells which sample a
 * batch row came from.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

typedef struct range_ds {
    int64_t n;             /* samples */
    int64_t fail_at;       /* get-item of this index fails (-1: none) */
    int64_t odd_at;        /* this index returns a [3] vector (-1: none) */
    int sleep_us;          /* a slow reader */
    atomic_int gets;       /* calls, for the tests */
} range_ds;

static int64_t range_len(void *self) { return ((range_ds *)self)->n; }

static int range_get(void *self, int64_t i, nb_tensor **f) {
    range_ds *d = self;
    atomic_fetch_add(&d->gets, 1);
    if (d->sleep_us) usleep((useconds_t)d->sleep_us);
    if (i == d->fail_at) return nb_data_error(NB_EIO, "boom at %lld", (long long)i);
    float v[3] = {(float)i, (float)-i, 0};
    f[0] = nb_from_data(i == d->odd_at ? NB_SHAPE(3) : NB_SHAPE(2), NB_F32, v);
    f[1] = nb_scalar_dtype((double)i, NB_I64);
    nb_mul_scalar(f[0], 2);   /* a temporary: must die with the sample's scope */
    return 0;
}

static nb_dataset *range_new(range_ds *d, int64_t n) {
    *d = (range_ds){.n = n, .fail_at = -1, .odd_at = -1};
    nb_dataset *ds = nb_dataset_new(&(nb_dataset_def){.n_fields = 2, .len = range_len, .get = range_get, .self = d});
    cr_assert_not_null(ds, "%s", nb_last_error());
    return ds;
}

static uint64_t live(void) { return nb_memory_stats().live_tensors; }

/* Runs one epoch (begun already or not), appending sample indices to order
 * and checking every batch's shapes and values. Returns the batch count. */
static int64_t run_epoch(nb_loader *l, int64_t *order, int64_t *n_out, int64_t batch_size) {
    int64_t nb = 0, n = 0;
    for (;;) {
        nb_tensor *b[2];
        nb_scope_begin();
        int rc = nb_loader_next(l, b);
        cr_assert_geq(rc, 0, "%s", nb_last_error());
        if (rc == 1) {
            int64_t rows = nb_shape(b[1])[0];
            cr_assert_eq(nb_ndim(b[0]), 2);
            cr_assert_eq(nb_ndim(b[1]), 1);
            cr_assert_eq(nb_dtype(b[0]), NB_F32);
            cr_assert_eq(nb_dtype(b[1]), NB_I64);
            cr_assert_eq(nb_shape(b[0])[0], rows);
            cr_assert_eq(nb_shape(b[0])[1], 2);
            cr_assert_leq(rows, batch_size);
            const float *x = nb_data(b[0]);
            const int64_t *y = nb_data(b[1]);
            for (int64_t r = 0; r < rows; r++) {
                cr_assert_eq(x[2 * r], (float)y[r]);
                cr_assert_eq(x[2 * r + 1], (float)-y[r]);
                order[n++] = y[r];
            }
            nb++;
        }
        nb_scope_end();
        if (rc == 0) break;
    }
    *n_out = n;
    return nb;
}

static void assert_permutation(const int64_t *order, int64_t n) {
    char *seen = calloc((size_t)n, 1);
    for (int64_t i = 0; i < n; i++) {
        cr_assert(order[i] >= 0 && order[i] < n);
        cr_assert_not(seen[order[i]], "index %lld twice", (long long)order[i]);
        seen[order[i]] = 1;
    }
    free(seen);
}

Test(data_loader, batches_in_order_without_shuffle) {
    nb_init(NULL);
    range_ds d;
    nb_dataset *ds = range_new(&d, 10);
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 3});
    cr_assert_not_null(l, "%s", nb_last_error());
    cr_assert_eq(nb_loader_num_batches(l), 4);
    int64_t order[10], n;
    cr_assert_eq(run_epoch(l, order, &n, 3), 4);
    cr_assert_eq(n, 10);
    for (int64_t i = 0; i < 10; i++) cr_assert_eq(order[i], i);
    /* the last batch holds the one sample left */
    nb_loader_reset(l);
    nb_tensor *b[2];
    nb_scope_begin();
    for (int k = 0; k < 4; k++) cr_assert_eq(nb_loader_next(l, b), 1);
    cr_assert_eq(nb_shape(b[0])[0], 1);
    cr_assert_eq(nb_get(b[0], (int64_t[]){0, 1}), -9);
    cr_assert_eq(nb_loader_next(l, b), 0);
    nb_scope_end();
    nb_loader_free(l);
    nb_dataset_free(ds);
}

Test(data_loader, drop_last) {
    nb_init(NULL);
    range_ds d;
    nb_dataset *ds = range_new(&d, 10);
    for (int w = 0; w <= 2; w += 2) {
        nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 3, .drop_last = true, .shuffle = true,
                                                             .seed = 5, .num_workers = w});
        cr_assert_eq(nb_loader_num_batches(l), 3);
        int64_t order[10], n;
        cr_assert_eq(run_epoch(l, order, &n, 3), 3);
        cr_assert_eq(n, 9, "one sample dropped");
        nb_loader_free(l);
    }
    /* fewer samples than a batch: no batch at all */
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 11, .drop_last = true, .num_workers = 1});
    nb_tensor *b[2];
    cr_assert_eq(nb_loader_next(l, b), 0);
    nb_loader_free(l);
    nb_dataset_free(ds);
}

/* The order of one epoch, into order (n samples). */
static void epoch_order(nb_dataset *ds, uint64_t seed, int64_t epoch, int workers, int prefetch, int64_t *order,
                        int64_t batch) {
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = batch, .shuffle = true, .seed = seed,
                                                         .num_workers = workers, .prefetch = prefetch});
    cr_assert_not_null(l, "%s", nb_last_error());
    cr_assert_eq(nb_loader_begin_epoch(l, epoch), 0);
    int64_t n;
    run_epoch(l, order, &n, batch);
    cr_assert_eq(n, nb_dataset_len(ds));
    nb_loader_free(l);
}

Test(data_loader, same_seed_same_order_other_seeds_and_epochs_differ) {
    nb_init(NULL);
    range_ds d;
    enum { N = 50 };
    nb_dataset *ds = range_new(&d, N);
    int64_t a[N], b[N], c[N], e1[N];
    epoch_order(ds, 7, 0, 0, 0, a, 4);
    epoch_order(ds, 7, 0, 0, 0, b, 4);
    epoch_order(ds, 8, 0, 0, 0, c, 4);
    epoch_order(ds, 7, 1, 0, 0, e1, 4);
    assert_permutation(a, N);
    assert_permutation(c, N);
    assert_permutation(e1, N);
    cr_assert(memcmp(a, b, sizeof a) == 0, "the same seed gives the same order");
    cr_assert(memcmp(a, c, sizeof a) != 0, "another seed, another order");
    cr_assert(memcmp(a, e1, sizeof a) != 0, "another epoch, another order");
    int in_place = 0;
    for (int i = 0; i < N; i++) in_place += a[i] == i;
    cr_assert_lt(in_place, 10, "shuffled: %d of %d in place", in_place, N);
    nb_dataset_free(ds);
}

Test(data_loader, reset_and_begin_epoch_repeat_the_order) {
    nb_init(NULL);
    range_ds d;
    enum { N = 23 };
    nb_dataset *ds = range_new(&d, N);
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 5, .shuffle = true, .seed = 3, .num_workers = 2});
    int64_t first[N], again[N], next[N], n;
    run_epoch(l, first, &n, 5);   /* begins epoch 0 by itself */
    cr_assert_eq(nb_loader_epoch(l), 0);
    cr_assert_eq(nb_loader_reset(l), 0);
    run_epoch(l, again, &n, 5);
    cr_assert(memcmp(first, again, sizeof first) == 0, "reset repeats the epoch");
    /* half an epoch, then reset: the same order from the start */
    nb_tensor *b[2];
    cr_assert_eq(nb_loader_begin_epoch(l, 0), 0);
    nb_scope_begin();
    cr_assert_eq(nb_loader_next(l, b), 1);
    cr_assert_eq(nb_loader_next(l, b), 1);
    nb_scope_end();
    cr_assert_eq(nb_loader_reset(l), 0);
    run_epoch(l, again, &n, 5);
    cr_assert(memcmp(first, again, sizeof first) == 0, "reset mid-epoch repeats the epoch");
    /* after the end, next() moves on to epoch 1 */
    run_epoch(l, next, &n, 5);
    cr_assert_eq(nb_loader_epoch(l), 1);
    cr_assert(memcmp(first, next, sizeof first) != 0);
    cr_assert_eq(nb_loader_begin_epoch(l, 0), 0);
    run_epoch(l, again, &n, 5);
    cr_assert(memcmp(first, again, sizeof first) == 0, "begin_epoch(0) gives epoch 0's order");
    cr_assert_eq(nb_loader_begin_epoch(l, -1), NB_ERANGE);
    nb_loader_free(l);
    nb_dataset_free(ds);
}

Test(data_loader, order_does_not_depend_on_workers_or_prefetch) {
    nb_init(NULL);
    range_ds d;
    enum { N = 97 };
    nb_dataset *ds = range_new(&d, N);
    int64_t ref[N], got[N];
    for (int64_t epoch = 0; epoch < 3; epoch++) {
        epoch_order(ds, 11, epoch, 0, 0, ref, 8);
        static const int cfg[][2] = {{1, 1}, {1, 2}, {3, 1}, {3, 4}, {8, 2}};
        for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
            epoch_order(ds, 11, epoch, cfg[k][0], cfg[k][1], got, 8);
            cr_assert(memcmp(ref, got, sizeof ref) == 0, "epoch %lld, %d workers, prefetch %d", (long long)epoch,
                      cfg[k][0], cfg[k][1]);
        }
    }
    nb_dataset_free(ds);
}

Test(data_loader, batches_belong_to_the_callers_scope) {
    nb_init(NULL);
    range_ds d;
    nb_dataset *ds = range_new(&d, 20);
    for (int w = 0; w <= 2; w += 2) {
        uint64_t t0 = live();
        nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 4, .num_workers = w});
        nb_loader_begin_epoch(l, 0);
        usleep(20000);   /* let the workers fill their slots */
        nb_scope_begin();
        nb_tensor *b[2];
        cr_assert_eq(nb_loader_next(l, b), 1);
        cr_assert_geq(live(), t0 + 2);
        nb_scope_end();
        /* at the end of the epoch no batch is in flight: every tensor made is gone */
        int64_t order[20], n;
        run_epoch(l, order, &n, 4);
        cr_assert_eq(n, 16);
        cr_assert_eq(live(), t0, "live tensors %llu, before %llu", (unsigned long long)live(), (unsigned long long)t0);
        nb_loader_free(l);
    }
    /* with no scope open the caller owns the batch */
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 4, .num_workers = 1});
    uint64_t t0 = live();
    nb_tensor *b[2];
    cr_assert_eq(nb_loader_next(l, b), 1);
    nb_loader_free(l);
    cr_assert_eq(live(), t0 + 2);
    nb_release(b[0]);
    nb_release(b[1]);
    cr_assert_eq(live(), t0);
    nb_dataset_free(ds);
}

Test(data_loader, get_item_error_surfaces_with_its_message) {
    nb_init(NULL);
    range_ds d;
    nb_dataset *ds = range_new(&d, 12);
    d.fail_at = 7;
    for (int w = 0; w <= 3; w += 3) {
        uint64_t t0 = live();
        nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 3, .num_workers = w});
        nb_tensor *b[2];
        int ok = 0, failed = 0;
        for (int rc; (rc = nb_loader_next(l, b)) != 0;) {
            if (rc == 1) {
                ok++;
                nb_release(b[0]);
                nb_release(b[1]);
                continue;
            }
            failed++;
            cr_assert_eq(rc, NB_EIO);
            cr_assert_null(b[0]);
            cr_assert_null(b[1]);
            cr_assert(strstr(nb_last_error(), "boom at 7"), "message: %s", nb_last_error());
            cr_assert(strstr(nb_last_error(), "sample 7"), "message: %s", nb_last_error());
        }
        cr_assert_eq(ok, 3, "the batches without sample 7 still come");
        cr_assert_eq(failed, 1);
        nb_loader_free(l);
        cr_assert_eq(live(), t0, "the failed batch's samples were released");
    }
    /* a sample whose shape differs from the batch's first */
    d.fail_at = -1;
    d.odd_at = 4;
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 3, .num_workers = 2});
    nb_tensor *b[2];
    nb_scope_begin();
    cr_assert_eq(nb_loader_next(l, b), 1);
    cr_assert_eq(nb_loader_next(l, b), NB_ESHAPE);
    cr_assert(strstr(nb_last_error(), "sample 4 field 0"), "%s", nb_last_error());
    cr_assert_eq(nb_loader_next(l, b), 1);
    nb_scope_end();
    nb_loader_free(l);
    nb_dataset_free(ds);
}

Test(data_loader, free_mid_epoch_with_workers_running) {
    nb_init(NULL);
    range_ds d;
    nb_dataset *ds = range_new(&d, 400);
    d.sleep_us = 500;
    uint64_t t0 = live();
    for (int round = 0; round < 3; round++) {
        nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 4, .num_workers = 4, .prefetch = 3,
                                                             .shuffle = true, .seed = (uint64_t)round});
        nb_tensor *b[2];
        nb_scope_begin();
        if (round > 0) cr_assert_eq(nb_loader_next(l, b), 1);
        if (round > 1) cr_assert_eq(nb_loader_next(l, b), 1);
        nb_scope_end();
        nb_loader_free(l);   /* workers are reading samples now */
        cr_assert_eq(live(), t0, "round %d: nothing left behind", round);
    }
    /* freed before any epoch, and after begin_epoch with no next() */
    nb_loader_free(nb_loader_new(ds, &(nb_loader_opts){.num_workers = 2}));
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.num_workers = 2});
    nb_loader_begin_epoch(l, 0);
    nb_loader_free(l);
    cr_assert_eq(live(), t0);
    nb_dataset_free(ds);
}

Test(data_loader, tensor_dataset_rows) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = nb_reshape(nb_arange(0, 30, 1, NB_F32), NB_SHAPE(5, 2, 3));
    nb_tensor *xt = nb_transpose(nb_reshape(nb_arange(0, 10, 1, NB_F64), NB_SHAPE(2, 5)), 0, 1);  /* [5,2] strided */
    nb_tensor *y = nb_arange(100, 105, 1, NB_I64);
    nb_dataset *ds = nb_tensor_dataset((nb_tensor *[]){x, xt, y}, 3);
    cr_assert_not_null(ds, "%s", nb_last_error());
    cr_assert_eq(nb_dataset_len(ds), 5);
    cr_assert_eq(nb_dataset_n_fields(ds), 3);
    nb_tensor *f[3];
    cr_assert_eq(nb_dataset_get(ds, -1, f), 0);
    cr_assert_eq(nb_item(f[2]), 104);
    cr_assert_eq(nb_get(f[1], (int64_t[]){1}), 9);
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 2, .num_workers = 2});
    nb_tensor *b[3];
    cr_assert_eq(nb_loader_next(l, b), 1);
    cr_assert_eq(nb_loader_next(l, b), 1);   /* rows 2 and 3 */
    char msg[256];
    double ex[12], ext[4] = {2, 7, 3, 8};
    for (int i = 0; i < 12; i++) ex[i] = 12 + i;
    cr_assert(tu_check_close(b[0], NB_SHAPE(2, 2, 3), ex, 0, 0, msg, sizeof msg), "%s", msg);
    cr_assert(tu_check_close(b[1], NB_SHAPE(2, 2), ext, 0, 0, msg, sizeof msg), "%s", msg);
    cr_assert(tu_check_close(b[2], NB_SHAPE(2), (double[]){102, 103}, 0, 0, msg, sizeof msg), "%s", msg);
    cr_assert_eq(nb_dtype(b[1]), NB_F64);
    nb_loader_free(l);
    nb_dataset_free(ds);   /* releases x, xt, y: the scope still holds them */
    nb_scope_end();
}

static int64_t bad_len(void *self) {
    (void)self;
    return -3;
}

static int silent_get(void *self, int64_t i, nb_tensor **f) {
    (void)self;
    (void)i;
    (void)f;
    return NB_EIO;   /* fails without a message */
}

Test(data_loader, null_and_bad_arguments) {
    nb_init(NULL);
    range_ds d;
    nb_dataset *ds = range_new(&d, 4);
    nb_tensor *b[2];
    cr_assert_null(nb_loader_new(NULL, NULL));
    cr_assert_eq(nb_last_error_code(), NB_ENULLARG);
    cr_assert_null(nb_loader_new(ds, &(nb_loader_opts){.batch_size = -1}));
    cr_assert_eq(nb_last_error_code(), NB_EINVAL);
    cr_assert_null(nb_loader_new(ds, &(nb_loader_opts){.num_workers = -2}));
    cr_assert_null(nb_loader_new(ds, &(nb_loader_opts){.n_transforms = 1}));
    cr_assert_eq(nb_last_error_code(), NB_ENULLARG);
    cr_assert_null(nb_loader_new(ds, &(nb_loader_opts){.n_transforms = 1, .transforms = (nb_transform *[]){NULL}}));
    cr_assert_eq(nb_loader_next(NULL, b), NB_ENULLARG);
    nb_loader *l = nb_loader_new(ds, NULL);
    cr_assert_eq(nb_loader_next(l, NULL), NB_ENULLARG);
    cr_assert_eq(nb_loader_num_batches(l), 4, "defaults: batch 1");
    cr_assert_eq(nb_loader_begin_epoch(NULL, 0), NB_ENULLARG);
    cr_assert_eq(nb_loader_reset(NULL), NB_ENULLARG);
    cr_assert_eq(nb_loader_epoch(NULL), -1);
    cr_assert_eq(nb_loader_num_batches(NULL), -1);
    nb_loader_free(l);
    nb_loader_free(NULL);
    nb_dataset_free(NULL);
    cr_assert_null(nb_dataset_new(NULL));
    cr_assert_null(nb_dataset_new(&(nb_dataset_def){.n_fields = 1, .len = range_len}));
    cr_assert_null(nb_dataset_new(&(nb_dataset_def){.n_fields = 0, .len = range_len, .get = range_get}));
    cr_assert_null(nb_dataset_new(&(nb_dataset_def){.n_fields = 17, .len = range_len, .get = range_get}));
    cr_assert_eq(nb_dataset_len(NULL), -1);
    cr_assert_eq(nb_dataset_get(ds, 4, b), NB_ERANGE);
    cr_assert_eq(nb_dataset_get(NULL, 0, b), NB_ENULLARG);
    cr_assert_null(nb_tensor_dataset(NULL, 1));
    nb_scope_begin();
    nb_tensor *x = nb_zeros(NB_SHAPE(3, 2), NB_F32), *y = nb_zeros(NB_SHAPE(4), NB_I64);
    cr_assert_null(nb_tensor_dataset((nb_tensor *[]){x, y}, 2));
    cr_assert_eq(nb_last_error_code(), NB_ESHAPE);
    cr_assert_null(nb_tensor_dataset((nb_tensor *[]){x, NULL}, 2));
    cr_assert_null(nb_tensor_dataset((nb_tensor *[]){nb_scalar(1)}, 1));
    cr_assert_null(nb_tensor_dataset((nb_tensor *[]){x}, 0));
    nb_scope_end();
    /* a len callback that fails, a get that fails silently */
    nb_dataset *bad = nb_dataset_new(&(nb_dataset_def){.n_fields = 1, .len = bad_len, .get = silent_get});
    l = nb_loader_new(bad, NULL);
    cr_assert_eq(nb_loader_next(l, b), NB_EINVAL);
    cr_assert(strstr(nb_last_error(), "len callback returned -3"), "%s", nb_last_error());
    nb_loader_free(l);
    nb_dataset_free(bad);
    bad = nb_dataset_new(&(nb_dataset_def){.n_fields = 1, .len = range_len, .get = silent_get, .self = &d});
    l = nb_loader_new(bad, &(nb_loader_opts){.num_workers = 1});
    cr_assert_eq(nb_loader_next(l, b), NB_EIO);
    cr_assert(strstr(nb_last_error(), "sample 0: get-item: failed with NB_EIO"), "%s", nb_last_error());
    nb_loader_free(l);
    nb_dataset_free(bad);
    nb_dataset_free(ds);
}

Test(data_loader, many_epochs_with_workers_match_serial) {
    nb_init(NULL);
    range_ds d;
    enum { N = 61 };
    nb_dataset *ds = range_new(&d, N);
    nb_loader *a = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 7, .shuffle = true, .seed = 99});
    nb_loader *b = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 7, .shuffle = true, .seed = 99,
                                                         .num_workers = 3, .prefetch = 1});
    for (int e = 0; e < 12; e++) {
        int64_t oa[N], ob[N], na, nb;
        run_epoch(a, oa, &na, 7);   /* each moves on to the next epoch by itself */
        run_epoch(b, ob, &nb, 7);
        cr_assert_eq(na, N);
        cr_assert_eq(nb, N);
        cr_assert(memcmp(oa, ob, sizeof oa) == 0, "epoch %d", e);
        cr_assert_eq(nb_loader_epoch(a), e);
    }
    nb_loader_free(a);
    nb_loader_free(b);
    nb_dataset_free(ds);
}
