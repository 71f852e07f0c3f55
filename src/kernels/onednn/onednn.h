/* onednn.h — shared plumbing of the oneDNN kernels: one CPU engine, a
 * stream per thread, a primitive cache keyed by a word key (shape, strides,
 * dtype, attributes, thread count), so the steady state of a training loop
 * creates no primitives, and a weight cache that keeps a parameter's copy in
 * a primitive's layout while the parameter's storage version is unchanged. */
#ifndef NB_ONEDNN_INTERNAL_H
#define NB_ONEDNN_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>

#include "kernels/kernels.h"

dnnl_engine_t nb__dnnl_engine(void);   /* NULL when oneDNN cannot start */
/* This thread's in-order stream (oneDNN streams are not shared between
 * threads, and the parallel backward executor runs kernels on several);
 * NULL when it cannot be made. */
dnnl_stream_t nb__dnnl_stream(void);
/* The OpenMP threads a primitive made now would use. oneDNN sizes its work
 * split when a primitive is created, so every cache key includes this: a
 * primitive made for 1 thread is never run by a caller that has 2. */
int nb__dnnl_threads(void);

/* The attributes every primitive here is made with: scratchpad mode user.
 * In oneDNN's default (library) mode, a primitive uses a scratchpad shared
 * by all primitives of its thread, so it may not run on another thread than
 * the one that made it (oneDNN's documentation), yet cached primitives run
 * on whichever thread runs the kernel; and that scratchpad is allocated and
 * freed around every call (measured on a 16-core Xeon: a 64x256x256 matmul
 * took ~0.9 ms at 16 threads). With user mode, nb__dnnl_exec hands each
 * call its thread's own buffer, kept across calls. NULL when oneDNN could
 * not start. */
const_dnnl_primitive_attr_t nb__dnnl_attr(void);
#define NB__DNNL_MAX_ARGS 15
/* Runs p with args (at most NB__DNNL_MAX_ARGS) plus this thread's scratchpad
 * on this thread's stream and waits for it; 0, or -1 when oneDNN fails. */
int nb__dnnl_exec(dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args);
/* nb__dnnl_exec on plain buffers: argument ids[i] is the memory mds[i] at
 * ptrs[i]. For a cached primitive (owned false: it lives as long as the
 * process) the memory objects, the scratchpad's included, are kept per
 * thread (a few primitives' worth, the least recently made replaced) and
 * re-pointed at the call's buffers, instead of made and destroyed around
 * every call (~0.55 us each on a Xeon: ~2 us a matmul call). A primitive's
 * descriptions are fixed by its cache key, so the kept objects describe
 * the same memory at every call. mds may be NULL for a cached primitive:
 * then 1 is returned, with nothing done, when this thread keeps no memory
 * objects for it (the caller describes the memories and calls again).
 * 0, or -1 when oneDNN fails. */
int nb__dnnl_exec_mem(dnnl_primitive_t p, bool owned, int nargs, const int *ids, const dnnl_memory_desc_t *mds,
                      void *const *ptrs);

#define NB__DNNL_KEY_WORDS 64
typedef struct nb__dnnl_key {
    int64_t w[NB__DNNL_KEY_WORDS];     /* op, dtype, dims, strides, ... (unused words 0) */
} nb__dnnl_key;

/* The cached primitive for key, or NULL; creating one is the caller's job,
 * then nb__dnnl_cache_put, which keeps it (or the one another thread put
 * first, destroying p) and returns the primitive to use; *caller_owns is set
 * when the cache is full and the caller must destroy it after use.
 * Thread-safe. */
dnnl_primitive_t nb__dnnl_cache_get(const nb__dnnl_key *k);
dnnl_primitive_t nb__dnnl_cache_put(const nb__dnnl_key *k, dnnl_primitive_t p, bool *caller_owns);
uint64_t nb__dnnl_cache_misses(void);

/* The weight cache. A copy of t in the layout `to` (made by `reorder` from
 * t's own layout `from`), kept across calls and remade only when t's storage
 * version has moved: weights are reordered once per optimizer step, not once
 * per call. Returns the copy's buffer, pinned until nb__dnnl_weight_unpin(*pin);
 * NULL when it cannot be cached (too large, cache full of pinned copies, no
 * memory) and the caller reorders per call. The entry holds a reference on
 * t's storage, so a storage's address cannot be reused by a new tensor while
 * its entry lives; entries whose storage nobody else holds are dropped on the
 * next lookup. Writers of a weight must bump its version (nb_bump_version;
 * the optimizers and in-place ops do). Thread-safe. */
void *nb__dnnl_weight_get(const nb_tensor *t, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                          dnnl_primitive_t reorder, int *pin);
void nb__dnnl_weight_unpin(int pin);
uint64_t nb__dnnl_weight_reorders(void);   /* copies made or remade so far (tests) */

void nb__onednn_matmul_register(void);

#endif
