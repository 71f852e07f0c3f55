/* data.h — the data layer's internal interface: the dataset and transform
 * objects, the per-sample pipeline the loader runs on its workers, the
 * counter-based draws of the shuffle and the transforms, and file helpers
 * shared by the readers and writers.
 *
 * Invariants:
 *  - a dataset's and a transform's callbacks are fixed at creation; the
 *    objects are read-only afterwards, so workers share them without locks;
 *  - nb__data_sample runs inside a scope it opens itself, so everything the
 *    callbacks make dies there, and it hands back +1 references (no scope).
 */
#ifndef NB_DATA_INTERNAL_H
#define NB_DATA_INTERNAL_H

#include <stdio.h>

#include "runtime/runtime.h"

struct nb_dataset {
    nb_dataset_def def;   /* the user's callbacks and state */
};

struct nb_transform {
    nb_transform_fn fn;          /* the callback */
    void *ctx;                   /* its state */
    void (*destroy)(void *ctx);  /* frees ctx; may be NULL */
};

/* Draw streams of the loader's Philox counter (i, epoch, stream). */
#define NB__DATA_STREAM_SHUFFLE 0u   /* transforms use 1 + position */

/* Philox4x32-10 with key `seed` and the 128-bit counter
 * (i low, i high, epoch low 32 bits, stream). */
void nb__data_draw(uint64_t seed, uint64_t i, uint64_t epoch, uint32_t stream, uint32_t out[4]);

/* Reads sample `index` of ds and applies the transforms (their info from
 * seed and epoch). On success out[0..n_fields) hold +1 references (in no
 * scope) and 0 is returned; on failure out is all NULL and the code is
 * returned with this thread's message: "<who>: sample <index>: <why>". */
int nb__data_sample(const char *who, nb_dataset *ds, int64_t index, nb_transform *const *tf, int n_tf,
                    uint64_t seed, int64_t epoch, nb_tensor **out);

/* ---- files ---- */
/* Size in bytes of the file at path, or -1 (errno set). */
int64_t nb__data_file_size(const char *path);
/* Reads a whole file, decompressing gzip when it is gzipped, into a new
 * malloc'd buffer (NUL-terminated; *len excludes the NUL). 0 or NB_EIO /
 * NB_ENOMEM with a message starting with `who`. */
int nb__data_slurp(const char *who, const char *path, char **buf, size_t *len);

/* Atomic write: nb__data_tmp_open creates a temporary file next to path
 * (*tmp receives its malloc'd name); nb__data_tmp_commit flushes, fsyncs and
 * closes f, then renames it over path when ok is true, and otherwise (or when
 * a step fails) removes it. Both return 0 or NB_EIO with a message; commit
 * always frees *tmp and closes f. */
int nb__data_tmp_open(const char *who, const char *path, FILE **f, char **tmp);
int nb__data_tmp_commit(const char *who, const char *path, FILE *f, char **tmp, bool ok);

#endif
