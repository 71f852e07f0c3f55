/* test_transforms.c — per-sample transforms: normalize, random horizontal
 * flip and random crop with padding, by hand-computed values; their
 * randomness depends on (seed, epoch, index) only, so a loader gives the same
 * batches with any number of workers; user transforms; bad parameters.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "testutil.h"

/* Internal (src/data/data.h): the loader's counter-based draws. */
void nb__data_draw(uint64_t seed, uint64_t i, uint64_t epoch, uint32_t stream, uint32_t out[4]);

#define CHECK(t, shape, ...)                                                                      \
    do {                                                                                          \
        char msg_[256];                                                                           \
        cr_assert_not_null((t), "%s", nb_last_error());                                           \
        cr_assert(tu_check_close((t), shape, (double[]){__VA_ARGS__}, 1e-6, 1e-6, msg_, sizeof msg_), \
                  "%s", msg_);                                                                    \
    } while (0)

static nb_sample_info info_with(uint32_t r0, uint32_t r1, uint32_t r2) {
    return (nb_sample_info){.random = {r0, r1, r2, 0}};
}

Test(data_transforms, normalize_per_channel) {
    nb_init(NULL);
    nb_scope_begin();
    nb_transform *one = nb_transform_normalize(0, 1, (double[]){1}, (double[]){2});
    nb_transform *three = nb_transform_normalize(0, 3, (double[]){0, 1, 2}, (double[]){1, 2, 4});
    nb_tensor *x = nb_reshape(nb_arange(0, 6, 1, NB_F32), NB_SHAPE(2, 3));
    nb_tensor *f[1] = {x};
    nb_sample_info info = {0};
    cr_assert_eq(nb_transform_apply(one, f, 1, &info), 0, "%s", nb_last_error());
    CHECK(f[0], NB_SHAPE(2, 3), -0.5, 0, 0.5, 1, 1.5, 2);
    CHECK(x, NB_SHAPE(2, 3), 0, 1, 2, 3, 4, 5);   /* the input is not written */
    nb_tensor *img = nb_reshape(nb_arange(0, 12, 1, NB_F64), NB_SHAPE(3, 2, 2));   /* [C,H,W] */
    f[0] = img;
    cr_assert_eq(nb_transform_apply(three, f, 1, &info), 0, "%s", nb_last_error());
    cr_assert_eq(nb_dtype(f[0]), NB_F64);
    CHECK(f[0], NB_SHAPE(3, 2, 2), 0, 1, 2, 3, 1.5, 2, 2.5, 3, 1.5, 1.75, 2, 2.25);
    /* a batch of images [N,C,H,W]: the channel is dim -3 */
    f[0] = nb_reshape(nb_arange(0, 24, 1, NB_F32), NB_SHAPE(2, 3, 2, 2));
    cr_assert_eq(nb_transform_apply(three, f, 1, &info), 0);
    cr_assert_float_eq(nb_get(f[0], (int64_t[]){1, 2, 1, 1}), (23 - 2) / 4.0, 1e-6);
    /* errors at sample time: wrong channel count, integer data */
    f[0] = nb_zeros(NB_SHAPE(2, 2, 2), NB_F32);
    cr_assert_eq(nb_transform_apply(three, f, 1, &info), NB_ESHAPE);
    cr_assert(strstr(nb_last_error(), "3 channels"), "%s", nb_last_error());
    f[0] = nb_zeros(NB_SHAPE(2, 2), NB_I64);
    cr_assert_eq(nb_transform_apply(one, f, 1, &info), NB_EDTYPE);
    nb_transform_free(one);
    nb_transform_free(three);
    nb_scope_end();
}

Test(data_transforms, random_hflip) {
    nb_init(NULL);
    nb_scope_begin();
    nb_transform *always = nb_transform_random_hflip(1, 1.0), *half = nb_transform_random_hflip(1, 0.5);
    nb_tensor *label = nb_scalar_dtype(3, NB_I64);
    nb_tensor *x = nb_reshape(nb_arange(0, 6, 1, NB_F32), NB_SHAPE(2, 3));
    nb_tensor *f[2] = {label, x};
    nb_sample_info info = info_with(0xffffffffu, 0, 0);
    cr_assert_eq(nb_transform_apply(always, f, 2, &info), 0, "%s", nb_last_error());
    CHECK(f[1], NB_SHAPE(2, 3), 2, 1, 0, 5, 4, 3);
    cr_assert_eq(f[0], label, "other fields are left alone");
    f[1] = x;
    info = info_with(0x7fffffffu, 0, 0);   /* just under 0.5: flipped */
    cr_assert_eq(nb_transform_apply(half, f, 2, &info), 0);
    CHECK(f[1], NB_SHAPE(2, 3), 2, 1, 0, 5, 4, 3);
    f[1] = x;
    info = info_with(0x80000000u, 0, 0);   /* 0.5: kept */
    cr_assert_eq(nb_transform_apply(half, f, 2, &info), 0);
    cr_assert_eq(f[1], x);
    /* works on a strided view; any dtype */
    f[1] = nb_transpose(nb_reshape(nb_arange(0, 6, 1, NB_I64), NB_SHAPE(3, 2)), 0, 1);   /* [[0,2,4],[1,3,5]] */
    info = info_with(0, 0, 0);
    cr_assert_eq(nb_transform_apply(always, f, 2, &info), 0);
    CHECK(f[1], NB_SHAPE(2, 3), 4, 2, 0, 5, 3, 1);
    /* field 1 of a one-field sample */
    cr_assert_eq(nb_transform_apply(always, (nb_tensor *[]){x}, 1, &info), NB_ERANGE);
    nb_transform_free(always);
    nb_transform_free(half);
    nb_scope_end();
}

Test(data_transforms, random_crop_with_padding) {
    nb_init(NULL);
    nb_scope_begin();
    nb_transform *crop = nb_transform_random_crop(0, 3, 3, 1);
    nb_tensor *x = nb_reshape(nb_arange(1, 10, 1, NB_F32), NB_SHAPE(3, 3));   /* 1..9 */
    nb_tensor *f[1] = {x};
    /* offsets are random % 3 (= 3 + 2*1 - 3 + 1): top 0, left 0 shifts the image down-right */
    nb_sample_info info = info_with(0, 0, 0);
    cr_assert_eq(nb_transform_apply(crop, f, 1, &info), 0, "%s", nb_last_error());
    CHECK(f[0], NB_SHAPE(3, 3), 0, 0, 0, 0, 1, 2, 0, 4, 5);
    f[0] = x;
    info = info_with(0, 1, 1);   /* the centre: the image itself */
    cr_assert_eq(nb_transform_apply(crop, f, 1, &info), 0);
    CHECK(f[0], NB_SHAPE(3, 3), 1, 2, 3, 4, 5, 6, 7, 8, 9);
    f[0] = x;
    info = info_with(0, 5, 3);   /* top 5 % 3 = 2, left 3 % 3 = 0 */
    cr_assert_eq(nb_transform_apply(crop, f, 1, &info), 0);
    CHECK(f[0], NB_SHAPE(3, 3), 0, 4, 5, 0, 7, 8, 0, 0, 0);
    /* a smaller window of a [C,H,W] image, every channel cut alike */
    nb_transform *small = nb_transform_random_crop(0, 2, 1, 0);
    f[0] = nb_reshape(nb_arange(0, 18, 1, NB_F64), NB_SHAPE(2, 3, 3));
    info = info_with(0, 1, 2);   /* top 1, left 2 */
    cr_assert_eq(nb_transform_apply(small, f, 1, &info), 0);
    CHECK(f[0], NB_SHAPE(2, 2, 1), 5, 8, 14, 17);
    /* too large a window */
    nb_transform *big = nb_transform_random_crop(0, 6, 6, 1);
    f[0] = x;
    cr_assert_eq(nb_transform_apply(big, f, 1, &info), NB_ESHAPE);
    cr_assert(strstr(nb_last_error(), "does not fit"), "%s", nb_last_error());
    nb_transform_free(crop);
    nb_transform_free(small);
    nb_transform_free(big);
    nb_scope_end();
}

Test(data_transforms, bad_parameters) {
    nb_init(NULL);
    cr_assert_null(nb_transform_normalize(0, 1, NULL, (double[]){1}));
    cr_assert_eq(nb_last_error_code(), NB_ENULLARG);
    cr_assert_null(nb_transform_normalize(0, 1, (double[]){0}, (double[]){0}));
    cr_assert_eq(nb_last_error_code(), NB_EINVAL);
    cr_assert_null(nb_transform_normalize(-1, 1, (double[]){0}, (double[]){1}));
    cr_assert_null(nb_transform_random_hflip(0, 1.5));
    cr_assert_null(nb_transform_random_hflip(0, 0.0 / 0.0));
    cr_assert_null(nb_transform_random_crop(0, 0, 3, 1));
    cr_assert_null(nb_transform_random_crop(0, 3, 3, -1));
    cr_assert_null(nb_transform_new(NULL, NULL, NULL));
    cr_assert_eq(nb_transform_apply(NULL, NULL, 0, NULL), NB_ENULLARG);
    nb_transform_free(NULL);
}

/* A user transform: adds the sample index to field 0, and counts frees. */
static int add_index(void *ctx, nb_tensor **f, int n, const nb_sample_info *info) {
    (void)ctx;
    (void)n;
    f[0] = nb_add_scalar(f[0], (double)info->index);
    return f[0] ? 0 : nb_last_error_code();
}

static int freed;
static void count_free(void *ctx) {
    (void)ctx;
    freed++;
}

/* A user transform that fails on sample 2. */
static int fail_two(void *ctx, nb_tensor **f, int n, const nb_sample_info *info) {
    (void)ctx;
    (void)f;
    (void)n;
    return info->index == 2 ? nb_data_error(NB_EINVAL, "no sample two") : 0;
}

/* Every batch of an epoch (N samples of [1,6,5] F32 and an I64 label),
 * stacked into one tensor per field (caller's scope). */
static void epoch_batches(nb_dataset *ds, nb_transform **tf, int ntf, int workers, int64_t epoch, nb_tensor **out) {
    nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 3, .shuffle = true, .seed = 17,
                                                         .num_workers = workers, .transforms = tf, .n_transforms = ntf});
    cr_assert_not_null(l, "%s", nb_last_error());
    int64_t n = nb_dataset_len(ds), rows = 0;
    out[0] = nb_empty(NB_SHAPE(n, 1, 6, 5), NB_F32);
    out[1] = nb_empty(NB_SHAPE(n), NB_I64);
    nb_loader_begin_epoch(l, epoch);
    nb_tensor *b[2];
    for (int rc; (rc = nb_loader_next(l, b)) == 1;) {
        int64_t k = nb_shape(b[1])[0];
        cr_assert_leq(rows + k, n);
        cr_assert_eq(nb_copy_to(b[0], (float *)nb_data(out[0]) + rows * 30, (size_t)k * 30 * sizeof(float)), 0);
        cr_assert_eq(nb_copy_to(b[1], (int64_t *)nb_data(out[1]) + rows, (size_t)k * sizeof(int64_t)), 0);
        rows += k;
    }
    cr_assert_eq(rows, n, "%s", nb_last_error());
    nb_loader_free(l);
}

Test(data_transforms, in_a_loader_results_do_not_depend_on_workers) {
    nb_init(NULL);
    nb_scope_begin();
    enum { N = 20 };
    nb_tensor *x = nb_rand(NB_SHAPE(N, 1, 6, 5), NB_F32, 123);
    nb_tensor *y = nb_arange(0, N, 1, NB_I64);
    nb_dataset *ds = nb_tensor_dataset((nb_tensor *[]){x, y}, 2);
    nb_transform *tf[4] = {nb_transform_random_crop(0, 6, 5, 2), nb_transform_random_hflip(0, 0.5),
                           nb_transform_normalize(0, 1, (double[]){0.5}, (double[]){0.25}),
                           nb_transform_new(add_index, NULL, count_free)};
    nb_tensor *ref[2], *got[2];
    epoch_batches(ds, tf, 4, 0, 0, ref);
    for (int w = 1; w <= 4; w += 3) {
        epoch_batches(ds, tf, 4, w, 0, got);
        cr_assert_eq(tu_max_abs_diff(ref[0], got[0]), 0, "%d workers", w);
        cr_assert_eq(tu_max_abs_diff(ref[1], got[1]), 0, "%d workers", w);
    }
    /* each row is the sample's pipeline run by hand with the documented
     * draws: Philox(seed; index, epoch, 1 + position) */
    for (int64_t epoch = 0; epoch < 2; epoch++) {
        if (epoch == 1) epoch_batches(ds, tf, 4, 2, 1, ref);
        const int64_t *lab = nb_data(ref[1]);
        for (int64_t r = 0; r < N; r++) {
            nb_tensor *f[2];
            cr_assert_eq(nb_dataset_get(ds, lab[r], f), 0);
            for (int k = 0; k < 4; k++) {
                nb_sample_info info = {.index = lab[r], .epoch = epoch, .seed = 17, .position = k};
                nb__data_draw(17, (uint64_t)lab[r], (uint64_t)epoch, 1u + (uint32_t)k, info.random);
                cr_assert_eq(nb_transform_apply(tf[k], f, 2, &info), 0, "%s", nb_last_error());
            }
            nb_tensor *row = nb_squeeze(nb_slice(ref[0], 0, r, r + 1, 1), 0);
            cr_assert_eq(tu_max_abs_diff(row, f[0]), 0, "epoch %lld sample %lld", (long long)epoch,
                         (long long)lab[r]);
        }
    }
    nb_dataset_free(ds);
    for (int i = 0; i < 4; i++) nb_transform_free(tf[i]);
    cr_assert_eq(freed, 1, "the user transform's destroy ran");
    nb_scope_end();
}

Test(data_transforms, a_failing_transform_surfaces_from_next) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = nb_zeros(NB_SHAPE(4, 2, 2), NB_F32), *y = nb_arange(0, 4, 1, NB_I64);
    nb_dataset *ds = nb_tensor_dataset((nb_tensor *[]){x, y}, 2);
    nb_transform *tf[1] = {nb_transform_new(fail_two, NULL, NULL)};
    nb_transform *crop[1] = {nb_transform_random_crop(0, 5, 5, 1)};   /* does not fit 2x2 + 2 */
    for (int w = 0; w <= 2; w += 2) {
        nb_loader *l = nb_loader_new(ds, &(nb_loader_opts){.batch_size = 2, .num_workers = w, .transforms = tf,
                                                             .n_transforms = 1});
        nb_tensor *b[2];
        cr_assert_eq(nb_loader_next(l, b), 1);
        cr_assert_eq(nb_loader_next(l, b), NB_EINVAL);
        cr_assert(strstr(nb_last_error(), "sample 2: transform: no sample two"), "%s", nb_last_error());
        cr_assert_eq(nb_loader_next(l, b), 0);
        nb_loader_free(l);
        l = nb_loader_new(ds, &(nb_loader_opts){.num_workers = w, .transforms = crop, .n_transforms = 1});
        cr_assert_eq(nb_loader_next(l, b), NB_ESHAPE);
        cr_assert(strstr(nb_last_error(), "does not fit"), "%s", nb_last_error());
        nb_loader_free(l);
    }
    nb_transform_free(tf[0]);
    nb_transform_free(crop[0]);
    nb_dataset_free(ds);
    nb_scope_end();
}
