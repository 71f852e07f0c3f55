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
#include "runtime/profile.h"

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
    NB_PROF_MEM((int64_t)nbytes);
    return p;
}

void nb__free(void *p, size_t nbytes) {
    if (!p) return;
    size_t cls;
    int c = size_class(nbytes, &cls);
    atomic_fetch_sub(&live, nbytes);
    NB_PROF_MEM(-(int64_t)nbytes);
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

/* ---- small objects: tensor structs, storage headers, autograd state, nodes ----
 * An op on small tensors makes and frees a handful of these; going through
 * malloc each time was ~40% of the op-overhead benchmark. Each thread keeps
 * free lists of 64/128/256/512/1024-byte blocks (at most 4096 each); a block
 * freed on another thread simply joins that thread's list. A thread's lists
 * are returned to malloc when it exits. Under AddressSanitizer the cache is
 * off, so use-after-free stays detectable. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NB__OBJ_CACHE 0
#else
#define NB__OBJ_CACHE 1
#endif
#define NB__OBJ_CLASSES 5
#define NB__OBJ_CAP 4096

typedef struct obj_cache {
    block *head[NB__OBJ_CLASSES];   /* free blocks per class */
    int n[NB__OBJ_CLASSES];         /* how many */
    bool registered;                /* the thread-exit flush is armed */
} obj_cache;

static _Thread_local obj_cache oc;
static pthread_key_t oc_key;
static pthread_once_t oc_once = PTHREAD_ONCE_INIT;

static void oc_flush(void *unused) {
    (void)unused;
    for (int c = 0; c < NB__OBJ_CLASSES; c++) {
        while (oc.head[c]) {
            block *b = oc.head[c];
            oc.head[c] = b->next;
            free(b);
        }
        oc.n[c] = 0;
    }
}
static void oc_key_init(void) { pthread_key_create(&oc_key, oc_flush); }

static int obj_class(size_t n) {
    return n <= 64 ? 0 : n <= 128 ? 1 : n <= 256 ? 2 : n <= 512 ? 3 : n <= 1024 ? 4 : -1;
}

void *nb__obj_alloc(size_t n) {
    int c = NB__OBJ_CACHE ? obj_class(n) : -1;
    if (c < 0) return malloc(n);
    block *b = oc.head[c];
    if (b) {
        oc.head[c] = b->next;
        oc.n[c]--;
        return b;
    }
    if (!oc.registered) {   /* flush this thread's lists when it exits */
        pthread_once(&oc_once, oc_key_init);
        pthread_setspecific(oc_key, &oc);
        oc.registered = true;
    }
    return malloc((size_t)64 << c);
}

void nb__obj_free(void *p, size_t n) {
    if (!p) return;
    int c = NB__OBJ_CACHE ? obj_class(n) : -1;
    if (c < 0 || oc.n[c] >= NB__OBJ_CAP) {
        free(p);
        return;
    }
    block *b = p;
    b->next = oc.head[c];
    oc.head[c] = b;
    oc.n[c]++;
}
