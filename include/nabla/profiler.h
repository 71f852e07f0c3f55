/* nabla/profiler.h — where every microsecond of a training step goes.
 *
 * The profiler records every kernel call (op, kernel variant, input shapes
 * and dtype, FLOPs and bytes where known), every backward node the autograd
 * engine runs (linked to the forward op that recorded it), the parallel
 * executor's waits and synchronisation, user ranges, training steps and the
 * allocator's allocations and frees. Events are kept per thread (no lock per
 * event) and merged when a report is asked for. Off, each hook costs one
 * predictable branch.
 *
 *     nb_profiler_opts po = {.record_shapes = true, .profile_memory = true,
 *                            .skip_steps = 5, .record_steps = 10};
 *     nb_profiler_start(&po);
 *     for (int step = 0; step < 100; step++) {
 *         train_one_step();
 *         nb_profiler_step();                     // steps 6..15 are recorded
 *     }
 *     nb_profiler_stop();
 *     nb_profiler_table(stdout, NB_PROFILER_SORT_SELF_TIME, 20);
 *     nb_profiler_export_chrome_trace("trace.json");   // chrome://tracing, ui.perfetto.dev
 *
 * Without a code change: NB_PROFILE=table prints the table (to stderr) at
 * nb_shutdown; NB_PROFILE=trace:path.json writes the trace there. Items
 * combine with commas: NB_PROFILE=table,trace:t.json,shapes,skip=5,steps=10
 * ("shapes" groups the table by input shape; skip/steps need a program that
 * calls nb_profiler_step).
 *
 * Self time is an event's time minus the time of the events nested in it on
 * the same thread: ops' kernels nest in backward nodes, everything nests in
 * user ranges and steps. Summed over all events, self time is the busy time
 * of every thread. Results stay readable after nb_profiler_stop until the
 * next nb_profiler_start or nb_shutdown.
 */
#ifndef NABLA_PROFILER_H
#define NABLA_PROFILER_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_profiler_opts {
    bool record_shapes;    /* keep each kernel call's input shapes (table grouping, trace args) */
    bool profile_memory;   /* record allocations and frees: live and peak bytes over time */
    int skip_steps;        /* schedule: nb_profiler_step() calls to let pass before recording */
    int record_steps;      /* then record this many steps and stop recording (0: until stop) */
} nb_profiler_opts;

typedef enum nb_profiler_sort {
    NB_PROFILER_SORT_SELF_TIME,    /* the default, like key_averages().table(sort_by="self_cpu_time_total") */
    NB_PROFILER_SORT_TOTAL_TIME,
    NB_PROFILER_SORT_CALLS,
    NB_PROFILER_SORT_FLOPS,
    NB_PROFILER_SORT_NAME,
    NB_PROFILER_SORT_COUNT
} nb_profiler_sort;

/* One row of the table: the events of one name (and kernel, and shapes when
 * grouped). Strings are owned by the profiler, valid until the next start. */
typedef struct nb_profiler_stat {
    const char *name;      /* op ("matmul"), backward node ("MmBackward"), range, "step", "executor wait" */
    const char *kernel;    /* kernel that ran ("onednn_matmul"); else "backward", "range", "step", "executor" */
    const char *shapes;    /* input shapes when grouped by shape, else NULL */
    uint64_t calls;        /* events */
    uint64_t self_ns;      /* total minus the events nested inside */
    uint64_t total_ns;     /* from begin to end, summed over calls */
    double flops;          /* floating-point operations (0 where unknown) */
    double bytes;          /* bytes read and written by kernels (distinct elements) */
} nb_profiler_stat;

typedef struct nb_profiler_summary {
    uint64_t events;        /* timed events (kernels, nodes, ranges, steps, executor) */
    uint64_t wall_ns;       /* recording window: start (or first recorded step) to stop (or now) */
    uint64_t self_ns;       /* sum of self times: the busy time of all threads */
    int threads;            /* threads that recorded timed events */
    int steps;              /* steps recorded */
    uint64_t allocs, frees; /* allocator calls while recording (profile_memory) */
    uint64_t alloc_bytes;   /* bytes allocated while recording */
    int64_t start_bytes;    /* live bytes when recording began */
    int64_t peak_bytes;     /* highest live bytes while recording */
    uint64_t dropped;       /* events lost to the memory cap */
    /* The parallel backward executor's ready queue: nodes run, and the time
     * between a node becoming ready (its last input gradient arrived) and
     * starting on a thread, in all and the longest. */
    uint64_t queued_nodes, queue_ns, queue_max_ns;
} nb_profiler_summary;

/* Starts a new profile (the previous one's results are discarded). NULL opts:
 * shapes and memory on, no schedule. Returns 0, NB_ESTATE when already
 * running, NB_EINVAL for negative step counts, or NB_ENOMEM. */
NB_API int nb_profiler_start(const nb_profiler_opts *opts);
/* Stops recording; results stay readable. Call it when no op is running on
 * another thread. Returns 0 or NB_ESTATE when not started. */
NB_API int nb_profiler_stop(void);
/* True while events are being recorded. */
NB_API bool nb_profiler_enabled(void);
/* Marks the end of a training step: drives the schedule and records each
 * recorded step as an event named "step". No-op when not started. */
NB_API void nb_profiler_step(void);

/* A named range on the calling thread (the name is copied). Ranges nest with
 * each other and with ops; they show in the table (kernel column "range")
 * and in the trace; a range that began while not recording is not recorded.
 * range_end returns 0, or NB_ESTATE when no range of this thread is open
 * (counted whether recording or not). */
NB_API void nb_profile_range_begin(const char *name);
NB_API int nb_profile_range_end(void);

/* Prints a table like PyTorch's key_averages(): name, kernel, calls, self ms,
 * self %, total ms, avg µs, GFLOP/s, GB/s, sorted by sort_key, at most
 * `limit` rows (0: all), then totals and memory. stream NULL: stdout.
 * Returns 0 or a negative NB_E* code (NB_EINVAL for a bad sort key). */
NB_API int nb_profiler_table(FILE *stream, nb_profiler_sort sort_key, int limit);
/* The same, one row per (name, kernel, input shapes). */
NB_API int nb_profiler_table_by_shape(FILE *stream, nb_profiler_sort sort_key, int limit);
/* Writes Chrome / Perfetto trace JSON: one lane per thread, an "X" event per
 * timed event, flow arrows ("s" -> "f") from each forward op to the backward
 * node it recorded, and a "live bytes" counter. Returns 0, NB_ENULLARG or
 * NB_EIO (the path is named in the message). */
NB_API int nb_profiler_export_chrome_trace(const char *path);

/* The sum over every row of this name (all kernels, all shapes) into *out;
 * a name never seen gives calls 0. Returns 0 or NB_ENULLARG. */
NB_API int nb_profiler_stats(const char *name, nb_profiler_stat *out);
/* Fills up to cap rows (sorted by self time), returns the number of rows
 * there are (call with cap 0 to size), or a negative NB_E* code. */
NB_API int nb_profiler_rows(nb_profiler_stat *rows, int cap, bool by_shape);
/* Totals of the current (or last) profile. Returns 0 or NB_ENULLARG. */
NB_API int nb_profiler_summary_get(nb_profiler_summary *out);

#ifdef __cplusplus
}
#endif
#endif
