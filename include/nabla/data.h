/* nabla/data.h — datasets, the data loader, transforms, and readers for IDX
 * (MNIST / Fashion-MNIST), CSV and NumPy .npy files.
 *
 * A dataset is any source with a length and a get-item callback: a sample is
 * a fixed number of tensors ("fields", e.g. an image and an I64 label). A
 * loader draws samples in a seeded order, applies per-sample transforms,
 * stacks them into batches (a new dim 0: [C,H,W] images become [B,C,H,W], an
 * I64 scalar label becomes an [B] I64 tensor), and prefetches batches on
 * background threads so the training loop does not wait on decoding.
 *
 *     nb_tensor *x = nb_load_idx(".../train-images-idx3-ubyte.gz", NULL);  // F32 [N,28,28] in [0,1]
 *     nb_tensor *y = nb_load_idx(".../train-labels-idx1-ubyte.gz", NULL);  // I64 [N]
 *     nb_dataset *ds = nb_tensor_dataset((nb_tensor *[]){x, y}, 2);
 *     nb_loader_opts o = {.batch_size = 64, .shuffle = true, .seed = 42, .num_workers = 2};
 *     nb_loader *ld = nb_loader_new(ds, &o);
 *     for (int epoch = 0; epoch < 5; epoch++) {
 *         nb_loader_begin_epoch(ld, epoch);             // epoch e's order: see nb_loader_opts
 *         for (;;) {
 *             nb_tensor *b[2];
 *             nb_scope_begin();
 *             int rc = nb_loader_next(ld, b);          // 1: a batch, 0: epoch over, < 0: error
 *             if (rc == 1) train_step(b[0], b[1]);     // F32 [64,28,28], I64 [64]
 *             nb_scope_end();                          // the batch dies here
 *             if (rc < 0) fprintf(stderr, "%s\n", nb_last_error());
 *             if (rc != 1) break;
 *         }
 *     }
 *     nb_loader_free(ld);
 *     nb_dataset_free(ds);
 *
 * Threads. With num_workers > 0 the dataset's get-item callback and the
 * transforms run on the loader's worker threads, several at once: they must
 * be safe to call concurrently (reading shared state is fine; writing needs
 * the user's own locking). The len callback, and everything else, runs on
 * the thread that calls the loader. With num_workers == 0 everything runs on
 * the calling thread, inside nb_loader_next. A loader is used by one thread.
 *
 * Determinism. The order of samples and batches, and the randomness the
 * provided transforms use, depend only on (seed, epoch, sample index): never
 * on num_workers, the prefetch depth or how the threads are scheduled.
 */
#ifndef NABLA_DATA_H
#define NABLA_DATA_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NB_DATA_MAX_FIELDS 16   /* tensors per sample, at most */

/* ---- datasets ---- */

/* A user dataset: a length and a get-item callback over user state `self`.
 *
 * get(self, index, fields) is called with 0 <= index < len(self) and fills
 * fields[0 .. n_fields) with the sample's tensors, made by nabla functions as
 * usual: they belong to a scope the loader opens around the call, so get
 * neither retains nor releases them, and temporaries it makes die too. The
 * tensors may be views of the dataset's own storage (the loader only reads
 * them). get returns 0, or a negative NB_E* code after recording a message
 * with nb_data_error (or after a nabla call failed): the loader's
 * nb_loader_next then returns that code with the message. get runs on worker
 * threads (see "Threads" above). Every field of every sample must have the
 * same shape and dtype, so samples stack into a batch. */
typedef struct nb_dataset_def {
    int n_fields;                                              /* tensors per sample, 1..NB_DATA_MAX_FIELDS */
    int64_t (*len)(void *self);                                /* samples (>= 0); calling thread */
    int (*get)(void *self, int64_t index, nb_tensor **fields); /* one sample; worker threads */
    void (*destroy)(void *self);                               /* frees self at nb_dataset_free; may be NULL */
    void *self;                                                /* the user's state, passed to the callbacks */
} nb_dataset_def;

typedef struct nb_dataset nb_dataset;

/* A dataset from a definition (copied). Returns NULL (NB_ENULLARG/NB_EINVAL)
 * when def, len or get is NULL or n_fields is out of range; self is then not
 * destroyed. Free with nb_dataset_free, which calls def->destroy(self). */
NB_API nb_dataset *nb_dataset_new(const nb_dataset_def *def);
/* Calls destroy(self) and frees ds; NULL ok. Free loaders using ds first. */
NB_API void nb_dataset_free(nb_dataset *ds);
NB_API int64_t nb_dataset_len(const nb_dataset *ds);     /* -1 (and an error) for NULL */
NB_API int nb_dataset_n_fields(const nb_dataset *ds);    /* -1 for NULL */
/* Sample `index` (0 <= index < len; negative counts from the end) on the
 * calling thread: fields[i] belong to the caller's scope. 0 or NB_E*;
 * fields are all NULL on failure. */
NB_API int nb_dataset_get(nb_dataset *ds, int64_t index, nb_tensor **fields);

/* PyTorch's TensorDataset: sample i is (t[0][i], t[1][i], ...), each a view
 * of row i. The n tensors (1..NB_DATA_MAX_FIELDS, at least 1 dim each, the
 * same size of dim 0) are retained until nb_dataset_free, and must not be
 * written while a loader reads them. NULL with an error on bad input. */
NB_API nb_dataset *nb_tensor_dataset(nb_tensor *const *tensors, int n);

/* Records `fmt` as this thread's last error (as nabla's own failures do) and
 * returns code: for get-item callbacks and transforms,
 * `return nb_data_error(NB_EIO, "sample %lld: bad file", (long long)i);`. */
NB_API int nb_data_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- transforms: callbacks applied to each sample, in order ---- */

/* What a transform knows about the sample it works on. */
typedef struct nb_sample_info {
    int64_t index;        /* the sample's index in the dataset */
    int64_t epoch;        /* the loader's epoch */
    uint64_t seed;        /* the loader's seed */
    int position;         /* this transform's position in the loader's list */
    uint32_t random[4];   /* Philox4x32-10, key seed, counter (index, epoch, 1 + position) */
} nb_sample_info;

/* fn(ctx, fields, n_fields, info) rewrites a sample: it replaces fields[i] by
 * new tensors made with nabla functions (inside the loader's scope for the
 * sample, like get-item's: it never releases the old ones), and must not
 * write into the tensors it is given (they may be views of the dataset). It
 * returns 0 or NB_E* (after nb_data_error). Runs on worker threads: any
 * randomness should come from info->random (or info's other fields), so
 * results do not depend on the number of workers. */
typedef int (*nb_transform_fn)(void *ctx, nb_tensor **fields, int n_fields, const nb_sample_info *info);

typedef struct nb_transform nb_transform;

/* A transform from a callback; destroy(ctx) runs at nb_transform_free (may be
 * NULL). NULL (NB_ENULLARG) when fn is NULL. */
NB_API nb_transform *nb_transform_new(nb_transform_fn fn, void *ctx, void (*destroy)(void *ctx));
NB_API void nb_transform_free(nb_transform *t);    /* NULL ok */
/* Applies t to a sample on the calling thread (new fields in the caller's
 * scope). For testing transforms and for use outside a loader. */
NB_API int nb_transform_apply(nb_transform *t, nb_tensor **fields, int n_fields, const nb_sample_info *info);

/* The provided transforms work on field `field` (an F32 or F64 tensor) and
 * treat its last two dims as height and width: [H,W] or [C,H,W] (any leading
 * dims). Each returns NULL (NB_EINVAL) on bad parameters; the sample-time
 * errors (wrong dtype, too few dims, channel count) come from nb_loader_next.
 *
 * normalize: (x - mean[c]) / std[c] per channel c of dim -3 (n == 1: one
 * mean/std for every element); the n values are copied; std must be > 0. */
NB_API nb_transform *nb_transform_normalize(int field, int n, const double *mean, const double *std);
/* Mirrors the last dim with probability p (torchvision's RandomHorizontalFlip;
 * p = 0.5 there): flipped when random[0] / 2^32 < p. */
NB_API nb_transform *nb_transform_random_hflip(int field, double p);
/* Pads the last two dims by `padding` zeros on each side, then cuts a
 * height x width window at a random place (torchvision's RandomCrop with
 * padding): top = random[1] % (H + 2p - height + 1), left likewise from
 * random[2]. */
NB_API nb_transform *nb_transform_random_crop(int field, int64_t height, int64_t width, int64_t padding);

/* ---- the loader ---- */

/* Loader settings. A zeroed struct is valid (batch 1, in order, no workers);
 * NULL options mean the same.
 *
 * Order: with shuffle, epoch e visits the samples in a Fisher-Yates
 * permutation whose step i draws Philox4x32-10 with key `seed` and counter
 * (i, e, 0): it depends only on (seed, e, N). Without shuffle, in index
 * order. Batch k holds positions k*batch_size .. of that order. */
typedef struct nb_loader_opts {
    int64_t batch_size;        /* samples per batch; 0 means 1 */
    bool shuffle;              /* visit in a seeded random order */
    bool drop_last;            /* drop a last batch smaller than batch_size */
    uint64_t seed;             /* key of the shuffle and of the transforms' randomness */
    int num_workers;           /* background threads; 0: load on the calling thread */
    int prefetch;              /* batches in flight per worker; 0 means 2 */
    nb_transform *const *transforms; /* applied to each sample in order; borrowed: must outlive the loader */
    int n_transforms;          /* entries of transforms */
} nb_loader_opts;

typedef struct nb_loader nb_loader;

/* A loader over ds (borrowed: ds and the transforms must outlive the loader).
 * Starts num_workers threads, which idle until the first epoch begins.
 * NULL with an error for NULL ds, negative sizes or counts, or when threads
 * cannot be started. Free with nb_loader_free. */
NB_API nb_loader *nb_loader_new(nb_dataset *ds, const nb_loader_opts *opts);
/* Stops and joins the workers (waiting for the samples they are reading to
 * finish), releases prefetched batches and frees the loader: valid at any
 * point, mid-epoch included. NULL ok. */
NB_API void nb_loader_free(nb_loader *l);

/* Starts epoch `epoch` (>= 0) from its first batch: reads len(ds), computes
 * the order and lets the workers prefetch. Prefetched batches of the epoch
 * left are dropped. 0 or NB_E* (NB_ERANGE for a negative epoch, the len
 * callback's failure). */
NB_API int nb_loader_begin_epoch(nb_loader *l, int64_t epoch);
/* Restarts the current epoch from its first batch (the same order). */
NB_API int nb_loader_reset(nb_loader *l);
NB_API int64_t nb_loader_epoch(const nb_loader *l);     /* the current epoch; -1 for NULL */
/* Batches per epoch for the current dataset length (after drop_last); -1 on
 * error. */
NB_API int64_t nb_loader_num_batches(const nb_loader *l);

/* The next batch of the epoch: fills batch[0 .. n_fields) with tensors of the
 * caller's current scope (with no scope open, the caller owns and releases
 * them) and returns 1; returns 0 at the end of the epoch (batch untouched),
 * or a negative NB_E* code with the message of the get-item callback or
 * transform that failed (batch all NULL; that batch is skipped and the next
 * call goes on with the one after). Called before any epoch began, it begins
 * epoch 0; called after it returned 0, it begins the next epoch. */
NB_API int nb_loader_next(nb_loader *l, nb_tensor **batch);

/* ---- readers and writers ----
 * Each reader returns new tensors in the caller's scope; on failure NULL (or
 * a negative code), with a message naming the file and the problem, and
 * nothing is allocated. */

/* IDX options (NULL: the defaults). */
typedef struct nb_idx_opts {
    bool raw;   /* false: unsigned-byte data with 2+ dims becomes F32 scaled to [0, 1]
                   (x / 255); true: F32 holding 0..255 */
} nb_idx_opts;

/* Reads an IDX file (the MNIST format: magic 00 00 type ndim, big-endian
 * sizes, then the data), gzipped or not. 1-dim integer data (labels, magic
 * 0x0801) becomes I64 [N]; unsigned-byte images (0x0803) F32 [N,H,W] (see
 * nb_idx_opts); other integer data F32, float F32, double F64. A wrong magic,
 * sizes that do not match the file's length (truncated or trailing data) or
 * a corrupt gzip stream give NULL with NB_EIO. */
NB_API nb_tensor *nb_load_idx(const char *path, const nb_idx_opts *opts);

#define NB_CSV_NO_LABEL (-1000000)   /* label_column: every column is a feature */

/* CSV options. Use NB_CSV_OPTS_DEFAULT or NULL for the defaults. */
typedef struct nb_csv_opts {
    int header;          /* 1: the first row is a header; 0: no header; -1: a header when
                            the first row has a cell that is not a number */
    int label_column;    /* 0-based; negative counts from the end (-1: the last);
                            NB_CSV_NO_LABEL: none */
    char delimiter;      /* ',' */
    nb_dtype dtype;      /* features: NB_F32 or NB_F64 */
} nb_csv_opts;
#define NB_CSV_OPTS_DEFAULT ((nb_csv_opts){.header = -1, .label_column = -1, .delimiter = ',', .dtype = NB_F32})

/* Reads a CSV file of numbers (gzipped or not; blank lines skipped; cells may
 * have surrounding spaces): the features become [N, F] of opts->dtype, the
 * label column I64 [N] (its values must be integers). labels may be NULL
 * when there is no label column or it is not wanted. Returns 0 or NB_E*: a
 * cell that is not a number, a non-integer label or a row with the wrong
 * number of cells give NB_EIO naming the line and column (1-based). */
NB_API int nb_load_csv(const char *path, const nb_csv_opts *opts, nb_tensor **features, nb_tensor **labels);

/* Reads a NumPy .npy file (format 1.0, 2.0 or 3.0; C order; little-endian
 * '<f4' F32, '<f8' F64, '<i8' I64, '|b1' BOOL). Fortran order, a truncated or
 * oversized file, or a header that is malformed or longer than the file give
 * NB_EIO; big-endian or another dtype NB_EDTYPE. */
NB_API nb_tensor *nb_load_npy(const char *path);
/* Writes t (any layout) as a format-1.0 .npy file that numpy.load reads.
 * The data go to a temporary file in the same directory, are flushed and
 * fsync'ed, then renamed over path: a crash mid-write leaves the previous
 * file intact. 0 or NB_E* (path untouched). */
NB_API int nb_save_npy(const char *path, const nb_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
