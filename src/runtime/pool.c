/* pool.c — the runtime thread pool: N threads in all (the caller of nabla is
 * one of them and helps while it waits), a priority queue of intrusive
 * tasks, workers that spin briefly and then sleep, and the share of threads
 * each running task may give its kernels.
 *
 * Workload: the parallel backward executor queues graph nodes whose cost
 * goes from about a microsecond (an add of 100 floats) to milliseconds (a
 * big matmul). One queue with one mutex is enough at that grain: a push or a
 * pop holds the lock for tens of nanoseconds, and the executor runs one of
 * the nodes a finished node makes ready itself, without the queue (so a
 * chain never touches it). The queue is a binary max-heap on the task's
 * priority (the executor uses the node's sequence number, so it follows the
 * serial order where it can and frees memory in the same order).
 *
 * Sleeping: an idle worker polls the queue's size for SPIN_NS, then waits
 * on `work_cv`; a submit signals as many sleepers as it queued tasks. A
 * thread waiting for its own tasks to finish (nb__pool_wait) runs queued
 * tasks meanwhile, then sleeps on `done_cv`, which nb__pool_done and
 * submits (when no worker sleeps) signal.
 *
 * Threads for kernels (no oversubscription): `running` tasks each hold one
 * thread and `extras` threads are lent out to their OpenMP teams; a task
 * starting asks for size / (running + queued) threads and gets at most
 * what is left (size - running - extras), at least its own. A task alone
 * gets them all. OpenMP's thread count is a per-thread setting; oneDNN
 * follows it. Only the caller's thread is lent extra threads: workers run
 * their kernels on themselves alone (see nb__pool_share_begin), so no
 * worker ever starts an OpenMP team of its own.
 *
 * With OpenMP (the default build), the pool's threads ARE the OpenMP team
 * (NB_POOL=team, the default; NB_POOL=threads keeps the worker threads
 * above, for comparison). Why: kernels run on the caller's OpenMP team, and
 * libgomp keeps an idle team spinning for a while after each parallel
 * region; separate pool workers then fight that spinning team for the
 * cores (measured on benchmarks/branches at 2 threads: the parallel
 * executor barely beat the serial one, and setting GOMP_SPINCOUNT low
 * closed most of the gap). So no worker threads are started; nb__pool_wait
 * runs the queue in phases on the caller:
 *   - one task queued, none running: the caller runs it alone, and its
 *     kernels get the whole team (a big node alone gets all threads);
 *   - two or more queued: an OpenMP parallel region of `size` threads
 *     (the same, already-spinning team the kernels use: nothing else
 *     competes for the cores), each thread taking tasks from the heap and
 *     running their kernels on itself alone; the region ends when the
 *     queue is empty and nothing runs, or when one task is left with
 *     nothing running (back to the first phase).
 * Team threads are bound with hwloc (NB_PIN) the first time they join, so
 * the threads kernels use are pinned too. The team is the default at
 * every thread count. (It once was only up to 8 threads: on a 16-core Xeon
 * VM the team's backward took 8-10 ms at 16 threads against 3 ms with
 * workers. The cause was libgomp re-creating threads whenever a kernel's
 * team was smaller than the last one (kernels.h, nb__par_team); with every
 * kernel region at the full team, benchmarks/branches at 16 threads there
 * took 1.9-2.4 ms a step with the team against 2.8-3.2 ms with workers,
 * and 1.8-2.3 against 2.5-2.6 at 8, 2.0-2.3 against 2.7-2.9 at 12, each
 * pair in one run; the team is 1.4-1.6x faster on a 2-core machine.)
 * nb__pool_keep tells the executor when a thread may keep a node it made
 * ready for itself without breaking these phases.
 */
#include "runtime/pool.h"
#include "runtime/profile.h"
#include "nb_config.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#if NB_HAVE_OPENMP
#include <omp.h>
#endif

#define SPIN_NS 30000   /* idle polling before sleeping: ~a few small nodes */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   /* the heap and the sleeper counts */
static pthread_cond_t work_cv;      /* workers wait for tasks (cv_init: CLOCK_MONOTONIC timeouts) */
static pthread_cond_t done_cv;      /* waiters wait for their counter */
static pthread_once_t cv_once = PTHREAD_ONCE_INIT;
static clockid_t nap_clock = CLOCK_REALTIME;   /* the clock work_cv and done_cv time out on */
static nb__task **heap;            /* max-heap on prio */
static int heap_n, heap_cap;       /* used, allocated */
static atomic_int queued;          /* heap_n, readable without the lock */
static int sleeping_workers;       /* waiting on work_cv */
static int sleeping_waiters;       /* waiting on done_cv */
static bool stopping;              /* workers exit when the queue is empty */
static pthread_t *threads;         /* nworkers worker threads */
static int nworkers;
static atomic_int size = 1;        /* threads in all */
static atomic_int running;         /* tasks running now */
static atomic_int extras;          /* threads lent to running tasks' kernels */
static nb__pin pin_mode;           /* NB_PIN */
static bool atfork_armed;          /* the child handler is installed */

static _Thread_local int my_id;        /* 1..N-1 in a worker */
static bool team_mode;                  /* NB_POOL=team: the OpenMP team runs tasks (see the top) */
#if NB_HAVE_OPENMP
static unsigned pin_gen;                /* bumped by nb__pool_init: team threads bind again */
static _Thread_local unsigned bound_gen;   /* pin_gen this thread was bound for */
static _Thread_local int bound_slot;       /* and the slot */
static _Thread_local bool in_team;         /* inside the pool's parallel region */
#endif

/* The two condition variables, timed on CLOCK_MONOTONIC (nap's timeout
 * must not stretch when the wall clock is set back). */
static void cv_init(void) {
    pthread_condattr_t a;
    bool mono = pthread_condattr_init(&a) == 0 && pthread_condattr_setclock(&a, CLOCK_MONOTONIC) == 0;
    pthread_cond_init(&work_cv, mono ? &a : NULL);
    pthread_cond_init(&done_cv, mono ? &a : NULL);
    nap_clock = mono ? CLOCK_MONOTONIC : CLOCK_REALTIME;
    if (mono) pthread_condattr_destroy(&a);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* ---- the heap (lock held) ---- */
static bool heap_push(nb__task *t) {
    if (heap_n == heap_cap) {
        int nc = heap_cap ? heap_cap * 2 : 256;
        nb__task **h = realloc(heap, sizeof *h * (size_t)nc);
        if (!h) return false;
        heap = h;
        heap_cap = nc;
    }
    int i = heap_n++;
    while (i > 0 && heap[(i - 1) / 2]->prio < t->prio) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = t;
    atomic_store_explicit(&queued, heap_n, memory_order_relaxed);
    return true;
}

static nb__task *heap_pop(void) {
    if (!heap_n) return NULL;
    nb__task *top = heap[0], *last = heap[--heap_n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= heap_n) break;
        if (c + 1 < heap_n && heap[c + 1]->prio > heap[c]->prio) c++;
        if (heap[c]->prio <= last->prio) break;
        heap[i] = heap[c];
        i = c;
    }
    if (heap_n) heap[i] = last;
    atomic_store_explicit(&queued, heap_n, memory_order_relaxed);
    return top;
}

static nb__task *try_pop(void) {
    if (atomic_load_explicit(&queued, memory_order_relaxed) == 0) return NULL;
    NB_PROF_SYNC_BEGIN();
    pthread_mutex_lock(&lock);
    nb__task *t = heap_pop();
    pthread_mutex_unlock(&lock);
    NB_PROF_SYNC_END();
    return t;
}

/* The last running task ended (team mode): wake the region threads asleep
 * in team_sleep, to leave their region or take what is queued. */
static void team_wake(void) {
    pthread_mutex_lock(&lock);
    if (sleeping_workers) pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&lock);
}

/* A task counted in `running` ended: the last one to end wakes the team's
 * sleepers (its own region's, or another caller's waiting on it). */
static void task_ended(void) {
    if (atomic_fetch_sub(&running, 1) == 1 && team_mode) team_wake();
}

static void run_task(nb__task *t) {
    atomic_fetch_add(&running, 1);
    t->run(t);
    task_ended();
}

/* ---- workers ---- */
static void *worker_main(void *arg) {
    my_id = (int)(intptr_t)arg;
    (void)nb__topo_bind(pin_mode, my_id, atomic_load(&size));
#if NB_HAVE_OPENMP
    omp_set_num_threads(1);   /* a worker's kernels run on it alone: see nb__pool_share_begin */
#endif
    nb_scope_begin();   /* the worker's outermost scope: tasks' scopes nest in it */
    for (;;) {
        nb__task *t = try_pop();
        if (!t) {
            NB_PROF_WAIT_BEGIN();
            uint64_t until = now_ns() + SPIN_NS;
            while (!atomic_load_explicit(&queued, memory_order_relaxed) && now_ns() < until) cpu_relax();
            pthread_mutex_lock(&lock);
            while (!heap_n && !stopping) {
                sleeping_workers++;
                pthread_cond_wait(&work_cv, &lock);
                sleeping_workers--;
            }
            t = heap_pop();
            pthread_mutex_unlock(&lock);
            NB_PROF_WAIT_END();
            if (!t) break;   /* stopping and nothing left */
        }
        run_task(t);
    }
    nb_scope_end();
    return NULL;
}

void nb__pool_submit(nb__task *const *tasks, int n) {
    if (n <= 0) return;
    NB_PROF_SYNC_BEGIN();
    pthread_mutex_lock(&lock);
    int pushed = 0;
    for (; pushed < n && heap_push(tasks[pushed]); pushed++) {
    }
    int wake = pushed < sleeping_workers ? pushed : sleeping_workers;
    for (int i = 0; i < wake; i++) pthread_cond_signal(&work_cv);
    /* team mode: the work_cv sleepers may be another caller's region, about
     * to leave it, so a waiter on done_cv is told too */
    if (sleeping_waiters && (pushed > wake || (team_mode && pushed > 0))) pthread_cond_broadcast(&done_cv);
    pthread_mutex_unlock(&lock);
    NB_PROF_SYNC_END();
    for (int i = pushed; i < n; i++) run_task(tasks[i]);   /* no memory for the queue: run here */
}

#if NB_HAVE_OPENMP
/* Lock held: waits on cv, counted in *sleepers, until signalled or 2 ms
 * have passed (the timeout is a safety net: every waiter re-checks its
 * condition under the lock its wakers take before it sleeps). */
static void nap(pthread_cond_t *cv, int *sleepers) {
    struct timespec until;
    clock_gettime(nap_clock, &until);
    until.tv_nsec += 2000000;
    if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
    (*sleepers)++;
    (void)pthread_cond_timedwait(cv, &lock, &until);
    (*sleepers)--;
}

/* An idle thread of the pool's region, past SPIN_NS: sleeps on work_cv
 * until a submit queues a task (nb__pool_submit signals sleeping_workers),
 * the last running task ends (team_wake) or the wait is done, checked
 * under the lock that both wakers take, so no wake-up is lost. Before:
 * sched_yield in a loop, which on an idle core returns at once, so a
 * thread waiting out a long node on another burned its core (the issue's
 * "workers spin briefly, then sleep"). */
static void team_sleep(atomic_int *pending) {
    pthread_mutex_lock(&lock);
    if (atomic_load_explicit(pending, memory_order_acquire) > 0 && heap_n == 0 && atomic_load(&running) > 0) {
        nap(&work_cv, &sleeping_workers);
    }
    pthread_mutex_unlock(&lock);
}

/* One thread of the pool's parallel region: takes tasks while there are
 * two or more, or one and something else runs; leaves when nothing runs
 * and at most one task is queued (then the state cannot change: every
 * thread sees the same and leaves too). */
static void team_loop(atomic_int *pending) {
    uint64_t idle_since = 0;
    while (atomic_load_explicit(pending, memory_order_acquire) > 0) {
        nb__task *t = NULL;
        bool leave = false;
        if (atomic_load_explicit(&queued, memory_order_relaxed)) {
            NB_PROF_SYNC_BEGIN();
            pthread_mutex_lock(&lock);
            if (heap_n >= 2 || (heap_n == 1 && atomic_load(&running) > 0)) {
                t = heap_pop();
                atomic_fetch_add(&running, 1);
            } else if (atomic_load(&running) == 0) {
                leave = true;
            }
            pthread_mutex_unlock(&lock);
            NB_PROF_SYNC_END();
        } else if (atomic_load(&running) == 0 && !atomic_load_explicit(&queued, memory_order_relaxed)) {
            leave = true;   /* running read first: a task's pushes precede its decrement */
        }
        if (t) {
            if (idle_since) NB_PROF_WAIT_END();
            idle_since = 0;
            t->run(t);
            task_ended();   /* the last one: sleepers may leave now */
            continue;
        }
        if (leave) break;
        if (!idle_since) {
            NB_PROF_WAIT_BEGIN();
            idle_since = now_ns();
        }
        if (now_ns() - idle_since < SPIN_NS) cpu_relax();
        else team_sleep(pending);   /* a long node elsewhere: sleep while it runs */
    }
    if (idle_since) NB_PROF_WAIT_END();
}

static void team_join(atomic_int *pending) {
    int id = omp_get_thread_num(), n = omp_get_num_threads();
    int prev_id = my_id;
    my_id = id;
    if (id > 0 && (bound_gen != pin_gen || bound_slot != id)) {
        (void)nb__topo_bind(pin_mode, id, n);
        bound_gen = pin_gen;
        bound_slot = id;
    }
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);   /* kernels of a node run on this thread alone */
    in_team = true;
    nb_scope_begin();
    team_loop(pending);
    nb_scope_end();
    in_team = false;
    omp_set_num_threads(saved);
    my_id = prev_id;
}

/* nb__pool_wait in team mode (see the top of the file). */
static void team_wait(atomic_int *pending) {
    uint64_t idle_since = 0;
    while (atomic_load_explicit(pending, memory_order_acquire) > 0) {
        int q = atomic_load_explicit(&queued, memory_order_relaxed);
        if (q >= 2 && !omp_in_parallel()) {
            int n = atomic_load(&size);
#pragma omp parallel num_threads(n)
            team_join(pending);
        } else if (q >= 1) {
            nb__task *t = try_pop();
            if (t) run_task(t);
        } else {   /* our tasks run elsewhere (another caller's region): spin a while, then sleep */
            if (!idle_since) idle_since = now_ns();
            if (now_ns() - idle_since < SPIN_NS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&lock);   /* woken by nb__pool_done (pending 0) or a submit */
            if (atomic_load_explicit(pending, memory_order_acquire) > 0 && heap_n == 0) nap(&done_cv, &sleeping_waiters);
            pthread_mutex_unlock(&lock);
            continue;
        }
        idle_since = 0;
    }
}
#endif

bool nb__pool_keep(int made_ready) {
#if NB_HAVE_OPENMP
    if (team_mode && !omp_in_parallel()) return made_ready == 1;   /* >= 2: let a region run them */
    if (team_mode && in_team)   /* alone with one node: leave it to the caller's whole team */
        return made_ready >= 2 || atomic_load(&running) > 1 || atomic_load_explicit(&queued, memory_order_relaxed) > 0;
#endif
    (void)made_ready;
    return true;
}

void nb__pool_wait(atomic_int *pending) {
#if NB_HAVE_OPENMP
    if (team_mode) {
        team_wait(pending);
        return;
    }
#endif
    while (atomic_load_explicit(pending, memory_order_acquire) > 0) {
        nb__task *t = try_pop();
        if (t) {
            run_task(t);
            continue;
        }
        NB_PROF_WAIT_BEGIN();
        uint64_t until = now_ns() + SPIN_NS;
        while (atomic_load_explicit(pending, memory_order_acquire) > 0 &&
               !atomic_load_explicit(&queued, memory_order_relaxed) && now_ns() < until)
            cpu_relax();
        pthread_mutex_lock(&lock);
        while (atomic_load_explicit(pending, memory_order_acquire) > 0 && !heap_n) {
            sleeping_waiters++;
            pthread_cond_wait(&done_cv, &lock);
            sleeping_waiters--;
        }
        pthread_mutex_unlock(&lock);
        NB_PROF_WAIT_END();
    }
}

void nb__pool_done(void) {
    pthread_mutex_lock(&lock);
    if (sleeping_waiters) pthread_cond_broadcast(&done_cv);
    if (team_mode && sleeping_workers) pthread_cond_broadcast(&work_cv);   /* a region waiting on this wait */
    pthread_mutex_unlock(&lock);
}

/* ---- threads for kernels ---- */
int nb__pool_share_begin(int *saved) {
    int n = atomic_load(&size);
#if NB_HAVE_OPENMP
    *saved = omp_get_max_threads();
#else
    *saved = 1;
#endif
    /* Only the caller's thread gives its kernels more than one thread. A
     * worker that started an OpenMP team of its own would make libgomp
     * manage more threads than there are cores, and libgomp then puts every
     * team to sleep (futex) between parallel regions instead of spinning:
     * measured on benchmarks/branches at 2 threads, the forward pass after a
     * parallel backward ran 3.5x slower than after a serial one. Workers run
     * their nodes' kernels on one thread each; the caller's team serves a
     * node that runs alone on it. */
    if (my_id > 0) return 1;   /* its OpenMP setting is 1 from the start (team mode: set by team_join) */
#if NB_HAVE_OPENMP
    if (omp_in_parallel()) return 1;   /* inside a parallel region: its kernels cannot fork */
#endif
    if (n <= 1) return 1;
    int r = atomic_load(&running), q = atomic_load_explicit(&queued, memory_order_relaxed);
    int contenders = r + q > 0 ? r + q : 1;
    int want = n / contenders > 1 ? n / contenders : 1, take, e = atomic_load(&extras);
    do {
        int avail = n - (r > 0 ? r : 1) - e;
        take = want - 1 < avail ? want - 1 : avail;
        if (take < 0) take = 0;
    } while (!atomic_compare_exchange_weak(&extras, &e, e + take));
    int share = 1 + take;
#if NB_HAVE_OPENMP
    omp_set_num_threads(share);
#endif
    return share;
}

void nb__pool_share_end(int share, int saved) {
    if (share > 1) atomic_fetch_sub(&extras, share - 1);
#if NB_HAVE_OPENMP
    omp_set_num_threads(saved);
#else
    (void)saved;
#endif
}

/* ---- life cycle ---- */
static void stop_workers(void) {
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nworkers; i++) pthread_join(threads[i], NULL);
    free(threads);
    threads = NULL;
    nworkers = 0;
    stopping = false;
}

/* A forked child has none of the parent's workers: start again on demand. */
static void after_fork_child(void) {
    pthread_mutex_init(&lock, NULL);
    cv_init();
    threads = NULL;   /* the parent's array: not ours to free */
    nworkers = 0;
    heap_n = 0;
    atomic_store(&queued, 0);
    sleeping_workers = sleeping_waiters = 0;
    atomic_store(&running, 0);
    atomic_store(&extras, 0);
}

static nb__pin read_pin(int threads_wanted) {
    const char *e = getenv("NB_PIN");
    nb__pin m = NB__PIN_COMPACT;
    if (e && !strcasecmp(e, "none")) m = NB__PIN_NONE;
    else if (e && !strcasecmp(e, "scatter")) m = NB__PIN_SCATTER;
    if (threads_wanted > nb__topo_cores()) m = NB__PIN_NONE;   /* oversubscribed: let the OS place them */
    return m;
}

int nb__pool_init(int n) {
    pthread_once(&cv_once, cv_init);
    if (n < 1) n = 1;
    nb__topo_init();
    nb__pin pin = read_pin(n);
    bool team = false;
#if NB_HAVE_OPENMP
    const char *pe = getenv("NB_POOL");
    team = !(pe && !strcasecmp(pe, "threads"));   /* NB_POOL=threads: separate workers; else the team */
#endif
    int want_workers = team ? 0 : n - 1;
    if (n == atomic_load(&size) && nworkers == want_workers && pin == pin_mode && team == team_mode) return 0;
    if (!atfork_armed) {
        pthread_atfork(NULL, NULL, after_fork_child);
        atfork_armed = true;
    }
    stop_workers();
    pin_mode = pin;
    team_mode = team;
#if NB_HAVE_OPENMP
    pin_gen++;
#endif
    atomic_store(&size, n);
    int rc = 0;
    if (want_workers > 0) {
        threads = calloc((size_t)n - 1, sizeof *threads);
        if (!threads) rc = nb__err(NB_ENOMEM, "nb_init: out of memory for the thread pool");
        for (int i = 1; threads && i < n; i++) {
            if (pthread_create(&threads[nworkers], NULL, worker_main, (void *)(intptr_t)i)) {
                rc = nb__err(NB_ENOMEM, "nb_init: could not start thread %d of the pool", i);
                break;
            }
            nworkers++;
        }
    }
    return rc;
}

void nb__pool_shutdown(void) {
    pthread_once(&cv_once, cv_init);
    stop_workers();
    pthread_mutex_lock(&lock);
    free(heap);
    heap = NULL;
    heap_n = heap_cap = 0;
    atomic_store(&queued, 0);
    pthread_mutex_unlock(&lock);
    atomic_store(&size, 1);
    nb__topo_free();
}

nb__backward_mode nb__backward = NB__BACKWARD_PARALLEL;

void nb__pool_settings(void) {
    const char *e = getenv("NB_BACKWARD");
    nb__backward = NB__BACKWARD_PARALLEL;
    if (e && !strcasecmp(e, "serial")) nb__backward = NB__BACKWARD_SERIAL;
    if (e && !strcasecmp(e, "force")) nb__backward = NB__BACKWARD_FORCE;   /* tests */
}

int nb__pool_size(void) { return atomic_load(&size); }
int nb__pool_kernel_threads(void) {
#if NB_HAVE_OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}
int nb__pool_worker(void) { return my_id; }

void nb__pool_info(FILE *f) {
    static const char *const pins[] = {"none", "compact", "scatter"};
    if (team_mode)
        fprintf(f, "pool: %d thread(s) (the caller's OpenMP team, NB_POOL=team), NB_PIN=%s\n", atomic_load(&size),
                pins[pin_mode]);
    else
        fprintf(f, "pool: %d thread(s) (%d worker(s) + the caller), NB_PIN=%s\n", atomic_load(&size), nworkers,
                pins[pin_mode]);
    nb__topo_print(f);
}

NB_API int nb_set_num_threads(int n) {
    nb__ensure_init();
    if (n < 1) return nb__err(NB_EINVAL, "nb_set_num_threads: %d threads requested; expected at least 1", n);
    int rc = nb__pool_init(n);
    nb__cfg.num_threads = atomic_load(&size);
#if NB_HAVE_OPENMP
    omp_set_num_threads(nb__cfg.num_threads);
#endif
    return rc;
}
