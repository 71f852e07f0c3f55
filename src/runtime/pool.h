/* pool.h — the runtime thread pool and the machine's topology (internal).
 *
 * One pool per process, made by nb_init with nb__cfg.num_threads threads in
 * all: the thread that submits work counts as one (worker id 0) and helps
 * while it waits. With OpenMP (NB_POOL=team, the default) the other
 * threads are the caller's OpenMP team, joined in a parallel region while
 * two or more tasks are ready (pool.c); otherwise (NB_POOL=threads, or no
 * OpenMP) the pool starts num_threads - 1 worker threads (ids 1..N-1). Work is a
 * queue of intrusive tasks ordered by priority; workers spin briefly when
 * it is empty, then sleep on a condition variable.
 *
 * Threads for kernels: a task that runs kernels asks nb__pool_share_begin()
 * how many threads its kernels may use (OpenMP's thread count is per thread,
 * so the share is set for this thread only): all of them when it runs alone,
 * a fair part of what the running tasks have not taken otherwise, never so
 * many that busy threads exceed the pool.
 */
#ifndef NB_RUNTIME_POOL_H
#define NB_RUNTIME_POOL_H

#include "runtime/runtime.h"

typedef struct nb__task nb__task;
struct nb__task {
    void (*run)(nb__task *t);   /* the work; called once, on any pool thread */
    uint64_t prio;              /* higher runs first */
};

/* (Re)starts the pool with `threads` threads in all (workers: threads - 1).
 * Must not run while tasks are queued or running. 0 or NB_E*. */
int nb__pool_init(int threads);
/* Stops and joins the workers (the queue must be empty). Cannot fail. */
void nb__pool_shutdown(void);
int nb__pool_size(void);        /* threads in all, >= 1 */
int nb__pool_worker(void);      /* this thread: 1..N-1 in a worker, else 0 */
/* Queues n tasks and wakes up to n sleeping workers. */
void nb__pool_submit(nb__task *const *tasks, int n);
/* Runs queued tasks on this thread, then spins, then sleeps, until *pending
 * is 0. Whoever brings a counter to 0 must then call nb__pool_done(). */
void nb__pool_wait(atomic_int *pending);
void nb__pool_done(void);
/* Whether a task that just made `made_ready` tasks ready may keep one to
 * run next itself (rather than queueing it): always with worker threads;
 * in team mode only where that keeps the phases (pool.c) intact. */
bool nb__pool_keep(int made_ready);
/* Threads the calling task's kernels may use (>= 1; sets OpenMP's count for
 * this thread, the old count going to *saved), and the end of that use
 * (gives the threads back, restores the count). */
int nb__pool_share_begin(int *saved);
void nb__pool_share_end(int share, int saved);
void nb__pool_info(FILE *f);
/* Threads the calling thread's kernels would use now (OpenMP's count; 1
 * without OpenMP): what a node's backward was given (tests). */
int nb__pool_kernel_threads(void);

/* The backward executor (read from NB_BACKWARD by nb__pool_settings, which
 * nb_init calls; the autograd engine reads it). */
typedef enum nb__backward_mode {
    NB__BACKWARD_SERIAL,      /* NB_BACKWARD=serial: descending seq, one thread */
    NB__BACKWARD_PARALLEL,    /* default: parallel, serial when 1 thread or no fan-out */
    NB__BACKWARD_FORCE,       /* NB_BACKWARD=force (tests): parallel even on chains, 1 thread */
} nb__backward_mode;
extern nb__backward_mode nb__backward;
void nb__pool_settings(void);

/* ---- topology (topology.c; hwloc when built with it) ---- */
typedef enum nb__pin {
    NB__PIN_NONE,               /* workers float */
    NB__PIN_COMPACT,            /* worker i on core i of the affinity mask */
    NB__PIN_SCATTER,            /* spread over packages / NUMA nodes first */
} nb__pin;
void nb__topo_init(void);       /* loads the topology once (cannot fail) */
void nb__topo_free(void);
void nb__topo_print(FILE *f);
int nb__topo_cores(void);       /* cores in the process's affinity mask */
/* Binds the calling thread for `slot` of `nslots` (slot 0 is the caller's
 * and is never bound) and its memory to its NUMA node when there are
 * several. Returns the core's index, or -1 when unbound. */
int nb__topo_bind(nb__pin mode, int slot, int nslots);

#endif
