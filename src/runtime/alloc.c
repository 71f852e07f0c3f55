/* alloc.c — tensor storage allocator: 64-byte aligned blocks with a
 * size-class cache.
 *
 * Workload: a training loop frees and re-allocates the same sizes every
 * step. Going back to the OS each time costs page faults (glibc returns big
 * blocks with munmap), so freed blocks are parked in per-class free lists
 * and handed out again. Classes are 64 B, then four steps per power of two
 * (waste under 25%). The cache holds at most `cache_limit` bytes; beyond that
 * blocks go back to the OS. One mutex guards the lists; stats are atomics.
 */
#include "runtime/runtime.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NB__NCLASSES 256
#define NB__ALIGN 64

typedef struct block { struct block *next; } block;   /* a parked block */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static block *free_lists[NB__NCLASSES];     /* parked blocks per class */
static size_t cache_limit = (size_t)4 << 30; /* bytes the cache may park */
static atomic_size_t cached;                 /* bytes parked now */
static atomic_size_t live;                   /* bytes handed out (asked) */
static atomic_size_t peak;                   /* max of live */
static atomic_ulong n_alloc, n_free, n_os;   /* counters */
static atomic_long n_tensors;                /* live tensor objects */

/* Class index and its byte size for a request of n bytes. */
static int size_class(size_t n, size_t *cls_bytes) {
    if (n <= NB__ALIGN) {
        *cls_bytes = NB__ALIGN;
        return 0;
    }
    int p = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^p < n <= 2^(p+1) */
    size_t base = (size_t)1 << p, step = base / 4;
    size_t k = (n - base + step - 1) / step;                  /* 1..4 */
    *cls_bytes = base + k * step;
    if (*cls_bytes % NB__ALIGN) *cls_bytes += NB__ALIGN - *cls_bytes % NB__ALIGN;
    return 1 + (p - 6) * 4 + (int)(k - 1);
}

static void note_live(size_t n) {
    size_t now = atomic_fetch_add(&live, n) + n;
    size_t pk = atomic_load(&peak);
    while (now > pk && !atomic_compare_exchange_weak(&peak, &pk, now)) {
    }
}

void *nb__alloc(size_t nbytes) {
    size_t cls;
    if (nbytes > ((size_t)1 << 50)) {
        nb__err(NB_ENOMEM, "out of memory: cannot allocate %zu bytes", nbytes);
        return NULL;
    }
    int c = size_class(nbytes, &cls);
    void *p = NULL;
    if (c < NB__NCLASSES) {
        pthread_mutex_lock(&cache_lock);
        block *b = free_lists[c];
        if (b) {
            free_lists[c] = b->next;
            atomic_fetch_sub(&cached, cls);
        }
        pthread_mutex_unlock(&cache_lock);
        p = b;
    }
    if (!p) {
        p = aligned_alloc(NB__ALIGN, cls);
        if (!p) {
            nb__err(NB_ENOMEM, "out of memory: cannot allocate %zu bytes", nbytes);
            return NULL;
        }
        atomic_fetch_add(&n_os, 1);
    }
    atomic_fetch_add(&n_alloc, 1);
    note_live(nbytes);
    return p;
}

void nb__free(void *p, size_t nbytes) {
    if (!p) return;
    size_t cls;
    int c = size_class(nbytes, &cls);
    atomic_fetch_sub(&live, nbytes);
    atomic_fetch_add(&n_free, 1);
    if (c < NB__NCLASSES && atomic_load(&cached) + cls <= cache_limit) {
        block *b = p;
        pthread_mutex_lock(&cache_lock);
        b->next = free_lists[c];
        free_lists[c] = b;
        atomic_fetch_add(&cached, cls);
        pthread_mutex_unlock(&cache_lock);
        return;
    }
    free(p);
}

void nb__alloc_trim(void) {
    pthread_mutex_lock(&cache_lock);
    for (int c = 0; c < NB__NCLASSES; c++) {
        while (free_lists[c]) {
            block *b = free_lists[c];
            free_lists[c] = b->next;
            free(b);
        }
    }
    atomic_store(&cached, 0);
    pthread_mutex_unlock(&cache_lock);
}

void nb__tensor_count(int delta) { atomic_fetch_add(&n_tensors, delta); }

NB_API nb_memory_stats_t nb_memory_stats(void) {
    nb_memory_stats_t s;
    s.live_bytes = atomic_load(&live);
    s.peak_bytes = atomic_load(&peak);
    s.cached_bytes = atomic_load(&cached);
    s.alloc_count = atomic_load(&n_alloc);
    s.free_count = atomic_load(&n_free);
    s.os_alloc_count = atomic_load(&n_os);
    s.live_tensors = (uint64_t)atomic_load(&n_tensors);
    return s;
}

NB_API void nb_memory_reset_peak(void) { atomic_store(&peak, atomic_load(&live)); }
NB_API void nb_memory_trim(void) { nb__alloc_trim(); }
