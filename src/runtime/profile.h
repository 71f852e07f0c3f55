/* profile.h — the profiler's hooks inside the runtime, the registry, the
 * autograd engine and the allocator. Each hook is one predictable branch
 * when the profiler is off.
 *
 * The engine (serial and parallel executors) calls, per backward node run:
 *     NB_PROF_NODE_BEGIN(node);  ...run node->backward...;  NB_PROF_NODE_END(node);
 * and, in a worker of the parallel executor, around waiting for work and
 * around synchronisation:
 *     NB_PROF_WAIT_BEGIN();  ...;  NB_PROF_WAIT_END();
 *     NB_PROF_SYNC_BEGIN();  ...;  NB_PROF_SYNC_END();
 * (The profiler (src/runtime/profiler.c) fills these in; until then they are
 * empty.)
 */
#ifndef NB_RUNTIME_PROFILE_H
#define NB_RUNTIME_PROFILE_H

#define NB_PROF_NODE_BEGIN(node) ((void)(node))
#define NB_PROF_NODE_END(node) ((void)(node))
#define NB_PROF_WAIT_BEGIN() ((void)0)
#define NB_PROF_WAIT_END() ((void)0)
#define NB_PROF_SYNC_BEGIN() ((void)0)
#define NB_PROF_SYNC_END() ((void)0)

#endif
