/* onednn.h — shared plumbing of the oneDNN kernels: one CPU engine and
 * stream, status checks, and a primitive cache keyed by a byte key (shape,
 * strides, dtype, attributes), so the steady state of a training loop
 * creates no primitives. */
#ifndef NB_ONEDNN_INTERNAL_H
#define NB_ONEDNN_INTERNAL_H

#include <oneapi/dnnl/dnnl.h>

#include "kernels/kernels.h"

dnnl_engine_t nb__dnnl_engine(void);   /* NULL when oneDNN cannot start */
dnnl_stream_t nb__dnnl_stream(void);

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

void nb__onednn_matmul_register(void);

#endif
