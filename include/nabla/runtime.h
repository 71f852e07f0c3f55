/* nabla/runtime.h — start-up, errors, memory statistics.
 *
 * Every public nabla function is declared with NB_API. Errors follow one rule:
 * a function that returns an object returns NULL on failure, a command returns
 * 0 or a negative NB_E* code, and the message of the last failure is kept per
 * thread (nb_last_error()). The library never exits or aborts on user input;
 * NB_ABORT_ON_ERROR=1 turns the first error into an abort, for debugging.
 */
#ifndef NABLA_RUNTIME_H
#define NABLA_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(_WIN32)
#define NB_API __declspec(dllexport)
#else
#define NB_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define NB_VERSION_MAJOR 0
#define NB_VERSION_MINOR 1
#define NB_VERSION_PATCH 0
#define NB_VERSION_STRING "0.1.0"

/* The error codes: one list makes the enum and the messages. */
#define NB_ERRNO_MAP(X)                                                    \
    X(INVAL, 1, "invalid argument")                                        \
    X(NULLARG, 2, "NULL argument")                                         \
    X(SHAPE, 3, "shape mismatch")                                          \
    X(DTYPE, 4, "dtype mismatch")                                          \
    X(RANGE, 5, "index or dim out of range")                               \
    X(NOMEM, 6, "out of memory")                                           \
    X(OVERFLOW, 7, "size overflow")                                        \
    X(AUTOGRAD, 8, "autograd error")                                       \
    X(NOKERNEL, 9, "no kernel for this op and dtype")                      \
    X(STATE, 10, "invalid state")                                          \
    X(NUMERIC, 11, "non-finite value")                                     \
    X(IO, 12, "input/output error")                                        \
    X(NOTSUP, 13, "not supported")

typedef enum nb_status {
    NB_OK = 0,
#define NB__ERR_ENUM(name, num, msg) NB_E##name = -(num),
    NB_ERRNO_MAP(NB__ERR_ENUM)
#undef NB__ERR_ENUM
} nb_status;

/* Settings for nb_init; NULL means "from the environment":
 *   NB_NUM_THREADS  threads for kernels (default: the physical cores in the
 *                   affinity mask, one per core whatever its hardware threads)
 *   NB_ISA          ref|avx2|avx512: the highest ISA kernels may use
 *   NB_ABORT_ON_ERROR=1  abort with the message at the first error
 *   NB_PIN          compact|scatter|none: how the thread pool's workers are
 *                   bound to cores (default compact: worker i on the i-th
 *                   core of the affinity mask; scatter spreads them over
 *                   packages and NUMA nodes first; none lets them float; with
 *                   more threads than cores nothing is bound). The thread
 *                   that calls nabla is never bound.
 *   NB_BACKWARD     serial|parallel: the backward executor (default parallel:
 *                   independent graph nodes run at once on the pool; with one
 *                   thread, or a graph without independent nodes, it runs the
 *                   serial loop). Both give bitwise identical gradients.
 *                   force: the parallel executor for every graph (testing).
 * The pool: NB_NUM_THREADS threads in all, the calling thread included; idle
 * threads spin for ~30 microseconds, then sleep (between backward calls the
 * OpenMP team idles as libgomp's OMP_WAIT_POLICY / GOMP_SPINCOUNT say).
 * Memory on a machine with several NUMA nodes: a pinned pool thread binds
 * its memory to its own node, so what it allocates first-touch comes from
 * there; blocks the allocator recycles stay where they were first placed,
 * so a gradient made on one socket and summed on another is read across
 * the interconnect once (see README, "Threads and NUMA"). */
typedef struct nb_init_opts {
    int num_threads;     /* 0: from NB_NUM_THREADS or the affinity mask */
    const char *isa;     /* NULL: from NB_ISA, else the best the CPU has */
    int abort_on_error;  /* -1: from NB_ABORT_ON_ERROR; 0 or 1 otherwise */
} nb_init_opts;

/* Starts the runtime: reads CPU features, chooses kernels. Returns 0 or a
 * negative NB_E* code (an unknown NB_ISA value is NB_EINVAL). Calling it twice
 * is harmless. Ops called before nb_init start the runtime with defaults. */
NB_API int nb_init(const nb_init_opts *opts);
/* Releases the allocator's cache and the registry. Tensors still alive stay
 * valid memory-wise but nabla must be re-initialised before more ops. */
NB_API void nb_shutdown(void);
/* Prints version, CPU features, threads and the ISA chosen to `stream`
 * (stdout when NULL). */
NB_API void nb_runtime_info(FILE *stream);

/* CPU features, read with cpuid and xgetbv (the OS must enable the state). */
typedef struct nb_cpu_features {
    bool avx2_fma;       /* AVX2 and FMA, with YMM state enabled */
    bool avx512f;        /* AVX-512 Foundation, with ZMM/opmask state enabled */
    bool avx512bw;       /* byte/word */
    bool avx512dq;       /* doubleword/quadword */
    bool avx512vl;       /* vector length */
    bool avx512_bf16;    /* AVX512_BF16 */
    bool avx512_vnni;    /* AVX512_VNNI */
    char vendor[13];     /* "GenuineIntel", "AuthenticAMD", ... */
    char brand[49];      /* processor brand string */
} nb_cpu_features;
NB_API const nb_cpu_features *nb_cpu(void);

/* The kernel ISA levels, from portable C up. */
typedef enum nb_isa {
    NB_ISA_REF,      /* portable C: always present */
    NB_ISA_AVX2,     /* AVX2 + FMA */
    NB_ISA_AVX512,   /* AVX-512 F/BW/DQ/VL */
    NB_ISA_COUNT
} nb_isa;
NB_API nb_isa nb_isa_active(void);   /* the cap in force (CPU and NB_ISA) */
NB_API const char *nb_isa_name(nb_isa isa);
NB_API int nb_num_threads(void);
/* Resizes the thread pool and the kernels' thread count to n (>= 1) threads
 * in all. Call it from the thread that uses nabla, not while a backward runs
 * on another thread. Returns 0 or NB_EINVAL (n < 1) / NB_ENOMEM; on failure
 * the old setting stays. */
NB_API int nb_set_num_threads(int n);

/* The machine inside the process's affinity mask (hwloc; without it only
 * the core count is known and the rest is 1 or 0). */
typedef struct nb_topology_info {
    int packages;        /* sockets */
    int numa_nodes;      /* memory nodes */
    int cores;           /* physical cores */
    int pus;             /* hardware threads */
    size_t l1d_bytes;    /* one L1 data cache, 0 when unknown */
    size_t l2_bytes;     /* one L2 cache */
    size_t l3_bytes;     /* one L3 cache */
    int l3_count;        /* L3 caches */
} nb_topology_info;
NB_API nb_topology_info nb_topology(void);

/* Errors. nb_last_error() is the last message on this thread ("" if none);
 * the string is owned by nabla and valid until the next error on the thread. */
NB_API const char *nb_last_error(void);
NB_API int nb_last_error_code(void);       /* 0 or a negative NB_E* code */
NB_API void nb_clear_error(void);
NB_API const char *nb_strerror(int code);  /* "shape mismatch", ... */
NB_API const char *nb_error_name(int code); /* "NB_ESHAPE", ... */

/* Memory statistics of tensor storage. live/peak count the bytes tensors
 * asked for; cached is what the size-class cache holds for reuse. */
typedef struct nb_memory_stats_t {
    size_t live_bytes;     /* bytes in storages now alive */
    size_t peak_bytes;     /* highest live_bytes since start (or reset) */
    size_t cached_bytes;   /* bytes parked in the cache, not handed out */
    uint64_t alloc_count;  /* storages handed out since start */
    uint64_t free_count;   /* storages given back since start */
    uint64_t os_alloc_count; /* of those, how many went to the OS */
    uint64_t live_tensors; /* tensor objects alive (views included) */
} nb_memory_stats_t;
NB_API nb_memory_stats_t nb_memory_stats(void);
NB_API void nb_memory_reset_peak(void);
/* Returns the cached blocks to the OS. */
NB_API void nb_memory_trim(void);

#ifdef __cplusplus
}
#endif
#endif
