/* onednn.c — the oneDNN engine, stream and primitive cache.
 *
 * One CPU engine and one in-order stream serve all calls (oneDNN
 * parallelizes inside each primitive with OpenMP). The cache is an
 * open-addressing table of at most 1024 primitives guarded by a mutex;
 * when full it stops caching (a new shape then costs a primitive creation,
 * correct but slower), which a training loop never reaches.
 */
#include "kernels/onednn/onednn.h"

#include <pthread.h>
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
static dnnl_stream_t stream;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot table[CACHE_SLOTS];
static int count;
static uint64_t misses;

static void start(void) {
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        engine = NULL;
        return;
    }
    if (dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(engine);
        engine = NULL;
        stream = NULL;
    }
}

dnnl_engine_t nb__dnnl_engine(void) {
    pthread_once(&once, start);
    return engine;
}
dnnl_stream_t nb__dnnl_stream(void) {
    pthread_once(&once, start);
    return stream;
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
