/* profile.h — the profiler's hooks inside the runtime, the registry, the
 * autograd engine and the allocator. Each hook is one predictable branch
 * (a relaxed load of one global flag) when the profiler is off.
 *
 * The engine (serial and parallel executors) calls, per backward node run:
 *     NB_PROF_NODE_BEGIN(node);  ...run node->backward...;  NB_PROF_NODE_END(node);
 * and, in a worker of the parallel executor, around waiting for work and
 * around synchronisation:
 *     NB_PROF_WAIT_BEGIN();  ...;  NB_PROF_WAIT_END();
 *     NB_PROF_SYNC_BEGIN();  ...;  NB_PROF_SYNC_END();
 * The registry wraps each kernel call (NB_PROF_KERNEL_BEGIN/END), graph.c
 * marks the moment a forward op records its node (NB_PROF_RECORD: links the
 * op's kernel to the backward node by sequence number) and the allocator
 * reports each allocation and free (NB_PROF_MEM, signed bytes).
 *
 * Pairs must nest per thread. An END whose BEGIN was not recorded (the
 * profiler was switched on in between) is ignored. The recording side lives
 * in src/runtime/profiler.c; the public API in include/nabla/profiler.h.
 */
#ifndef NB_RUNTIME_PROFILE_H
#define NB_RUNTIME_PROFILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "nabla.h"

/* True while events are recorded (started, and inside the schedule's window). */
extern atomic_bool nb__prof_on;
#define NB__PROF_ON() __builtin_expect(atomic_load_explicit(&nb__prof_on, memory_order_relaxed), 0)

typedef enum nb__prof_kind {
    NB__PROF_KERNEL,   /* a kernel call from nb__dispatch */
    NB__PROF_NODE,     /* a backward node run by the engine */
    NB__PROF_RANGE,    /* nb_profile_range_begin/end */
    NB__PROF_STEP,     /* between two nb_profiler_step calls */
    NB__PROF_WAIT,     /* executor worker waiting for work */
    NB__PROF_SYNC,     /* executor synchronisation */
    NB__PROF_MARK,     /* a forward op that recorded a node without a kernel of its own */
    NB__PROF_MEM,      /* an allocation (+bytes) or a free (-bytes) */
    NB__PROF_KIND_COUNT
} nb__prof_kind;

void nb__prof_begin(nb__prof_kind kind, const char *name, uint64_t seq);
void nb__prof_end(nb__prof_kind kind, uint64_t seq);
void nb__prof_kernel_end(const nb_kernel_args *a, const char *kernel, const char *who);
void nb__prof_node_begin(const char *name, const char *fwd_op, uint64_t seq);
void nb__prof_record(const char *fwd_op, uint64_t seq);
void nb__prof_mem(int64_t delta);
/* A node of the parallel executor waited `ns` between ready and started. */
void nb__prof_queued(uint64_t ns);
/* NB_PROFILE from the environment (nb_init) and its report (nb_shutdown). */
void nb__profiler_env_init(void);
void nb__profiler_shutdown(void);

#ifdef NB_NO_PROFILER   /* hooks compiled out: only to measure what the off switch costs */
#define NB__PROF_IF(call) ((void)0)
#else
#define NB__PROF_IF(call)             \
    do {                              \
        if (NB__PROF_ON()) call;      \
    } while (0)
#endif

#define NB_PROF_NODE_BEGIN(node) NB__PROF_IF(nb__prof_node_begin((node)->name, (node)->op, (node)->seq))
#define NB_PROF_NODE_END(node) NB__PROF_IF(nb__prof_end(NB__PROF_NODE, (node)->seq))
#define NB_PROF_WAIT_BEGIN() NB__PROF_IF(nb__prof_begin(NB__PROF_WAIT, "executor wait", 0))
#define NB_PROF_WAIT_END() NB__PROF_IF(nb__prof_end(NB__PROF_WAIT, 0))
#define NB_PROF_SYNC_BEGIN() NB__PROF_IF(nb__prof_begin(NB__PROF_SYNC, "executor sync", 0))
#define NB_PROF_SYNC_END() NB__PROF_IF(nb__prof_end(NB__PROF_SYNC, 0))
#define NB_PROF_KERNEL_BEGIN() NB__PROF_IF(nb__prof_begin(NB__PROF_KERNEL, NULL, 0))
#define NB_PROF_KERNEL_END(args, kernel, who) NB__PROF_IF(nb__prof_kernel_end((args), (kernel), (who)))
#define NB_PROF_RECORD(node) NB__PROF_IF(nb__prof_record((node)->op, (node)->seq))
#define NB_PROF_MEM(delta) NB__PROF_IF(nb__prof_mem(delta))

#endif
