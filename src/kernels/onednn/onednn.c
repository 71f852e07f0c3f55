/* onednn.c — the oneDNN engine, streams, primitive cache and weight cache.
 *
 * One CPU engine serves all calls; each thread that runs a kernel gets its
 * own in-order stream (made on first use, destroyed when the thread ends).
 * oneDNN parallelizes inside each primitive with OpenMP.
 *
 * The primitive cache is an open-addressing table of at most 1024
 * primitives guarded by a mutex; when full it stops caching (a new shape
 * then costs a primitive creation, correct but slower), which a training
 * loop never reaches.
 *
 * The weight cache is a small LRU table (WC_SLOTS copies, WC_MAX_BYTES each
 * at most) of weights already reordered into a primitive's blocked layout,
 * keyed by (storage, offset, user layout, target layout) and valid for one
 * storage version. Its workload is a training loop: a few conv weights, each
 * read by the forward and the backward-data primitive between two optimizer
 * steps, so each is reordered once per step instead of twice, and not at
 * all in inference.
 */
#include "kernels/onednn/onednn.h"
#include "nb_config.h"

#if NB_HAVE_OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS 2048
#define CACHE_MAX 1024

typedef struct slot {
    bool used;                 /* holds a primitive */
    nb__dnnl_key key;          /* what it was made for */
    dnnl_primitive_t prim;     /* owned */
} slot;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static pthread_key_t stream_key;   /* this thread's dnnl_stream_t */
static pthread_key_t scratch_key;  /* this thread's scratchpad (a scratch) */
static pthread_key_t memo_key;     /* this thread's kept memory objects (a memo) */
static dnnl_primitive_attr_t attr; /* scratchpad mode user: see nb__dnnl_attr */
static bool have_key;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot table[CACHE_SLOTS];
static int count;
static uint64_t misses;

static void stream_free(void *s) { dnnl_stream_destroy(s); }

/* A thread's scratchpad: grown on demand, kept until the thread ends. */
typedef struct scratch {
    void *p;
    size_t cap;
} scratch;

static void scratch_free(void *v) {
    scratch *s = v;
    free(s->p);
    free(s);
}

/* A thread's memory objects for the last few cached primitives it ran
 * through nb__dnnl_exec_mem (mem[nargs] is the scratchpad's, or NULL). */
#define MEMO_N 8
typedef struct memo_ent {
    dnnl_primitive_t prim;   /* NULL: free */
    int nargs;
    dnnl_memory_t mem[NB__DNNL_MAX_ARGS + 1];
} memo_ent;
typedef struct memo {
    memo_ent e[MEMO_N];
    int next;   /* the entry replaced next */
} memo;

static void memo_clear(memo_ent *e) {
    for (int i = 0; i <= NB__DNNL_MAX_ARGS; i++) dnnl_memory_destroy(e->mem[i]);   /* NULL is fine */
    memset(e, 0, sizeof *e);
}

static void memo_free(void *v) {
    memo *m = v;
    for (int i = 0; i < MEMO_N; i++) memo_clear(&m->e[i]);
    free(m);
}

static void start(void) {
    /* NB_ISA caps oneDNN's code too (it can only be set before oneDNN's
     * first primitive, so the cap at that moment holds for the process) */
    if (nb_isa_active() < NB_ISA_AVX512) dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2);
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        engine = NULL;
        return;
    }
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success) return;
    if (pthread_key_create(&scratch_key, scratch_free)) return;
    if (pthread_key_create(&memo_key, memo_free)) return;
    have_key = pthread_key_create(&stream_key, stream_free) == 0;
}

const_dnnl_primitive_attr_t nb__dnnl_attr(void) {
    return nb__dnnl_engine() ? attr : NULL;
}

dnnl_engine_t nb__dnnl_engine(void) {
    pthread_once(&once, start);
    return have_key ? engine : NULL;
}

dnnl_stream_t nb__dnnl_stream(void) {
    if (!nb__dnnl_engine()) return NULL;
    dnnl_stream_t s = pthread_getspecific(stream_key);
    if (s) return s;
    if (dnnl_stream_create(&s, engine, dnnl_stream_default_flags) != dnnl_success) return NULL;
    if (pthread_setspecific(stream_key, s)) {
        dnnl_stream_destroy(s);
        return NULL;
    }
    return s;
}

/* This thread's zeroed block of `size` bytes under key (made on first
 * use, freed by the key's destructor when the thread ends), or NULL. */
static void *thread_block(pthread_key_t key, size_t size) {
    void *v = pthread_getspecific(key);
    if (v) return v;
    if (!(v = calloc(1, size))) return NULL;
    if (pthread_setspecific(key, v)) {
        free(v);
        return NULL;
    }
    return v;
}

/* This thread's scratchpad of at least `bytes` (64-byte aligned), or NULL. */
static void *scratch_get(size_t bytes) {
    scratch *s = thread_block(scratch_key, sizeof *s);
    if (!s) return NULL;
    if (s->cap < bytes) {
        size_t cap = bytes + bytes / 4 + 4096;
        void *p = NULL;
        if (posix_memalign(&p, 64, cap)) return NULL;
        free(s->p);
        s->p = p;
        s->cap = cap;
    }
    return s->p;
}

/* p's scratchpad: its description in *smd (NULL when it needs none) and
 * this thread's buffer for it in *buf. 0, or -1 when the primitive cannot
 * be queried or the buffer not had. */
static int scratch_of(dnnl_primitive_t p, const dnnl_memory_desc_t **smd, void **buf) {
    const_dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_get_primitive_desc(p, &pd) != dnnl_success) return -1;
    *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (*smd && !dnnl_memory_desc_get_size(*smd)) *smd = NULL;
    *buf = *smd ? scratch_get(dnnl_memory_desc_get_size(*smd)) : NULL;
    return *smd && !*buf ? -1 : 0;
}

int nb__dnnl_exec(dnnl_primitive_t p, int nargs, const dnnl_exec_arg_t *args) {
    dnnl_stream_t st = nb__dnnl_stream();
    const dnnl_memory_desc_t *smd;
    void *buf;
    if (!st || nargs < 0 || nargs > NB__DNNL_MAX_ARGS || scratch_of(p, &smd, &buf)) return -1;
    dnnl_exec_arg_t all[NB__DNNL_MAX_ARGS + 1];
    memcpy(all, args, (size_t)nargs * sizeof *args);
    dnnl_memory_t sm = NULL;
    if (smd) {
        if (dnnl_memory_create(&sm, smd, engine, buf) != dnnl_success) return -1;
        all[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, sm};
    }
    int rc = dnnl_primitive_execute(p, st, nargs, all) == dnnl_success && dnnl_stream_wait(st) == dnnl_success ? 0 : -1;
    dnnl_memory_destroy(sm);
    return rc;
}

/* This thread's entry for p (made on first use, with memory objects for
 * mds and the scratchpad smd), or NULL when it cannot be made. */
static memo_ent *memo_get(dnnl_primitive_t p, int nargs, const dnnl_memory_desc_t *mds,
                          const dnnl_memory_desc_t *smd) {
    memo *m = thread_block(memo_key, sizeof *m);
    if (!m) return NULL;
    for (int i = 0; i < MEMO_N; i++)
        if (m->e[i].prim == p && m->e[i].nargs == nargs) return &m->e[i];
    if (!mds) return NULL;
    memo_ent *e = &m->e[m->next];
    m->next = (m->next + 1) % MEMO_N;
    memo_clear(e);
    for (int i = 0; i < nargs; i++)   /* buffers are set per call: none yet */
        if (dnnl_memory_create(&e->mem[i], &mds[i], engine, DNNL_MEMORY_NONE) != dnnl_success) {
            memo_clear(e);
            return NULL;
        }
    if (smd && dnnl_memory_create(&e->mem[nargs], smd, engine, DNNL_MEMORY_NONE) != dnnl_success) {
        memo_clear(e);
        return NULL;
    }
    e->prim = p;
    e->nargs = nargs;
    return e;
}

int nb__dnnl_exec_mem(dnnl_primitive_t p, bool owned, int nargs, const int *ids, const dnnl_memory_desc_t *mds,
                      void *const *ptrs) {
    dnnl_stream_t st = nb__dnnl_stream();
    const dnnl_memory_desc_t *smd;
    void *sbuf;
    if (!st || nargs < 0 || nargs > NB__DNNL_MAX_ARGS || scratch_of(p, &smd, &sbuf)) return -1;
    memo_ent *e = owned ? NULL : memo_get(p, nargs, mds, smd);
    if (!e && !mds) return 1;   /* nothing kept: the caller describes the memories */
    dnnl_memory_t own[NB__DNNL_MAX_ARGS + 1] = {NULL};
    dnnl_memory_t *mem = e ? e->mem : own;
    dnnl_exec_arg_t args[NB__DNNL_MAX_ARGS + 1];
    int rc = 0, n = nargs;
    for (int i = 0; i < nargs && !rc; i++) {
        dnnl_status_t ok = e ? dnnl_memory_set_data_handle(mem[i], ptrs[i])
                             : dnnl_memory_create(&mem[i], &mds[i], engine, ptrs[i]);
        if (ok != dnnl_success) rc = -1;
        args[i] = (dnnl_exec_arg_t){ids[i], mem[i]};
    }
    if (!rc && smd) {
        dnnl_status_t ok = e ? dnnl_memory_set_data_handle(mem[nargs], sbuf)
                             : dnnl_memory_create(&mem[nargs], smd, engine, sbuf);
        if (ok != dnnl_success) rc = -1;
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, mem[nargs]};
    }
    if (!rc && (dnnl_primitive_execute(p, st, n, args) != dnnl_success || dnnl_stream_wait(st) != dnnl_success))
        rc = -1;
    if (!e)
        for (int i = 0; i <= nargs; i++) dnnl_memory_destroy(own[i]);
    return rc;
}

int nb__dnnl_threads(void) {
#if NB_HAVE_OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

static uint64_t hash(const nb__dnnl_key *k) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < NB__DNNL_KEY_WORDS; i++) h = (h ^ (uint64_t)k->w[i]) * 1099511628211ULL;
    return h;
}

dnnl_primitive_t nb__dnnl_cache_get(const nb__dnnl_key *k) {
    uint64_t h = hash(k);
    dnnl_primitive_t p = NULL;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        slot *s = &table[(h + (uint64_t)i) % CACHE_SLOTS];
        if (!s->used) break;
        if (!memcmp(&s->key, k, sizeof *k)) {
            p = s->prim;
            break;
        }
    }
    if (!p) misses++;
    pthread_mutex_unlock(&lock);
    return p;
}

dnnl_primitive_t nb__dnnl_cache_put(const nb__dnnl_key *k, dnnl_primitive_t p, bool *caller_owns) {
    *caller_owns = false;
    uint64_t h = hash(k);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        slot *s = &table[(h + (uint64_t)i) % CACHE_SLOTS];
        if (s->used && !memcmp(&s->key, k, sizeof *k)) {   /* another thread got there first */
            pthread_mutex_unlock(&lock);
            dnnl_primitive_destroy(p);
            return s->prim;
        }
        if (!s->used) {
            if (count >= CACHE_MAX) break;
            s->used = true;
            s->key = *k;
            s->prim = p;
            count++;
            pthread_mutex_unlock(&lock);
            return p;
        }
    }
    pthread_mutex_unlock(&lock);
    *caller_owns = true;   /* not cached: the caller destroys it after use */
    return p;
}

uint64_t nb__dnnl_cache_misses(void) { return misses; }

/* ---- the weight cache ---- */

#define WC_SLOTS 32
#define WC_MAX_BYTES ((size_t)32 << 20)

typedef struct wc_entry {
    nb__storage *storage;          /* +1 reference while the entry lives; NULL: free slot */
    int64_t offset;                /* the tensor's offset in elements */
    dnnl_memory_desc_t from, to;   /* the tensor's layout, the copy's layout */
    uint64_t version;              /* storage version the copy was made from */
    void *buf;                     /* the copy (nb__alloc) */
    size_t bytes;                  /* its size */
    int pins;                      /* callers reading buf now */
    uint64_t used;                 /* LRU clock of the last lookup */
} wc_entry;

static pthread_mutex_t wc_lock = PTHREAD_MUTEX_INITIALIZER;
static wc_entry wc[WC_SLOTS];
static uint64_t wc_clock, wc_reorders;

/* Frees e's copy and drops its storage reference (the last one frees the
 * storage, as nb_release would). Under wc_lock, e unpinned. */
static void wc_drop(wc_entry *e) {
    nb__free(e->buf, e->bytes);
    nb__storage *s = e->storage;
    if (atomic_fetch_sub_explicit(&s->refcount, 1, memory_order_acq_rel) == 1) {
        nb__free(s->data, s->nbytes);
        nb__obj_free(s, sizeof *s);
    }
    memset(e, 0, sizeof *e);
}

/* Runs reorder from t's data into buf; 0 or -1. */
static int wc_fill(const nb_tensor *t, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                   dnnl_primitive_t reorder, void *buf) {
    dnnl_memory_t src = NULL, dst = NULL;
    int rc = -1;
    if (!dnnl_memory_create(&src, from, engine, nb_data(t)) && !dnnl_memory_create(&dst, to, engine, buf)) {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        rc = nb__dnnl_exec(reorder, 2, ra);
    }
    dnnl_memory_destroy(dst);
    dnnl_memory_destroy(src);
    if (!rc) wc_reorders++;
    return rc;
}

void *nb__dnnl_weight_get(const nb_tensor *t, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                          dnnl_primitive_t reorder, int *pin) {
    size_t bytes = dnnl_memory_desc_get_size(to);
    if (!bytes || bytes > WC_MAX_BYTES) return NULL;
    uint64_t version = nb_version(t);   /* read before the data, so a racing write is seen next time */
    void *out = NULL;
    pthread_mutex_lock(&wc_lock);
    wc_clock++;
    wc_entry *hit = NULL, *spare = NULL;
    for (int i = 0; i < WC_SLOTS; i++) {
        wc_entry *e = &wc[i];
        if (e->storage && !e->pins && atomic_load(&e->storage->refcount) == 1) wc_drop(e);   /* its tensor died */
        if (!e->storage) {
            if (!spare || spare->storage) spare = e;
            continue;
        }
        if (e->storage == t->storage && e->offset == t->offset && dnnl_memory_desc_equal(&e->from, from) &&
            dnnl_memory_desc_equal(&e->to, to))
            hit = e;
        else if (!e->pins && (!spare || (spare->storage && e->used < spare->used)))
            spare = e;   /* a free slot, else the least recently used unpinned one */
    }
    if (hit) {
        if (hit->version != version) {
            if (hit->pins || wc_fill(t, from, to, reorder, hit->buf)) goto done;   /* stale and in use: per call */
            hit->version = version;
        }
        hit->pins++;
        hit->used = wc_clock;
        *pin = (int)(hit - wc);
        out = hit->buf;
        goto done;
    }
    if (!spare) goto done;
    if (spare->storage) wc_drop(spare);
    void *buf = nb__alloc(bytes);
    if (!buf) {
        nb_clear_error();   /* not fatal: the caller reorders per call */
        goto done;
    }
    if (wc_fill(t, from, to, reorder, buf)) {
        nb__free(buf, bytes);
        goto done;
    }
    atomic_fetch_add_explicit(&t->storage->refcount, 1, memory_order_relaxed);
    *spare = (wc_entry){.storage = t->storage, .offset = t->offset, .from = *from, .to = *to, .version = version,
                        .buf = buf, .bytes = bytes, .pins = 1, .used = wc_clock};
    *pin = (int)(spare - wc);
    out = buf;
done:
    pthread_mutex_unlock(&wc_lock);
    return out;
}

void nb__dnnl_weight_unpin(int pin) {
    pthread_mutex_lock(&wc_lock);
    NB_ASSERT(pin >= 0 && pin < WC_SLOTS && wc[pin].pins > 0);
    wc[pin].pins--;
    pthread_mutex_unlock(&wc_lock);
}

uint64_t nb__dnnl_weight_reorders(void) {
    pthread_mutex_lock(&wc_lock);
    uint64_t n = wc_reorders;
    pthread_mutex_unlock(&wc_lock);
    return n;
}
