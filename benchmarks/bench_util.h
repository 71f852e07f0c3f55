/* bench_util.h — timing, statistics, argument and child-process helpers
 * shared by the C benchmarks (static inline: each benchmark is one file).
 * Needs _POSIX_C_SOURCE >= 200809L defined before the first system header;
 * the child-process helpers need BENCH_UTIL_SPAWN defined before including. */
#ifndef NB_BENCH_UTIL_H
#define NB_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef BENCH_UTIL_SPAWN
#include <nabla.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

/* Seconds on clock c. */
static inline double bench_now_s(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Milliseconds / microseconds on the monotonic clock. */
static inline double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static inline double bench_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) ascending. */
static inline void bench_sort(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
}

/* Sorts v[0..n) and returns its median (mean of the middle two for even n;
 * 0 for n = 0); afterwards v[0] is the minimum and v[n - 1] the maximum. */
static inline double bench_median(double *v, int n) {
    bench_sort(v, n);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

/* atoi(argv[i]) if argv has it and it is > 0, else def. */
static inline int bench_arg_pos(int argc, char **argv, int i, int def) {
    int v = argc > i ? atoi(argv[i]) : 0;
    return v > 0 ? v : def;
}

#ifdef BENCH_UTIL_SPAWN
extern char **environ;

/* This program's path into exe (size bytes); 0 or -1. */
static inline int bench_self_exe(char *exe, size_t size) {
    ssize_t len = readlink("/proc/self/exe", exe, size - 1);
    if (len <= 0) return -1;
    exe[len] = 0;
    return 0;
}

/* Spawns argv[0] with argv and the environment, its stdout into a pipe:
 * *f is the pipe's read end as a stream (NULL if fdopen failed), *pid the
 * child. 0, or -1 if nothing runs. */
static inline int bench_spawn_reader(char *const *argv, FILE **f, pid_t *pid) {
    int fd[2];
    if (pipe(fd)) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    int rc = posix_spawn(pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc) {
        close(fd[0]);
        return -1;
    }
    *f = fdopen(fd[0], "r");
    if (!*f) close(fd[0]);
    return 0;
}

/* Closes f (if any) and waits for pid; 0 if it exited with status 0, else -1. */
static inline int bench_reap(FILE *f, pid_t pid) {
    if (f) fclose(f);
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    return 0;
}

/* One configuration of a benchmark that runs each configuration in a child
 * process (branches, chain). */
typedef struct bench_config {
    const char *executor;   /* NB_BACKWARD */
    int threads;            /* NB_NUM_THREADS */
    double *fb, *bwd;       /* samples (ms) */
    int n;                  /* samples so far */
    char hash[17];          /* gradient hash of the last round (branches) */
    int workers_seen;       /* distinct workers that ran nodes (branches) */
} bench_config;

/* Runs argv (argv[0]: the program) with NB_BACKWARD and NB_NUM_THREADS set
 * for c (an executor "parallel+threads" also sets NB_POOL=threads); appends
 * its "sample fb_ms=.. bwd_ms=.." lines to c and hands every other line to
 * other (if not NULL). 0, or -1 if it failed. */
static inline int bench_run_child(bench_config *c, char *const *argv, void (*other)(bench_config *, const char *)) {
    char thr[16], ex[32];
    snprintf(thr, sizeof thr, "%d", c->threads);
    snprintf(ex, sizeof ex, "%s", c->executor);
    char *plus = strchr(ex, '+');
    if (plus) *plus++ = 0;
    setenv("NB_BACKWARD", ex, 1);
    if (plus) setenv("NB_POOL", plus, 1);
    else unsetenv("NB_POOL");
    setenv("NB_NUM_THREADS", thr, 1);
    pid_t pid;
    FILE *f = NULL;
    if (bench_spawn_reader(argv, &f, &pid)) return -1;
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        double a, b;
        if (sscanf(line, "sample fb_ms=%lf bwd_ms=%lf", &a, &b) == 2) {
            c->fb[c->n] = a;
            c->bwd[c->n++] = b;
        } else if (other) {
            other(c, line);
        }
    }
    return bench_reap(f, pid);
}
/* n weights (256, 256), randn (seeds 100, 101, ...) times 1/16 so that tanh
 * stays out of saturation, requiring grad, into w; 0 or -1 (nb_last_error). */
static inline int bench_weights(nb_tensor **w, int n) {
    for (int i = 0; i < n; i++) {
        nb_tensor *r = nb_randn(NB_SHAPE(256, 256), NB_F32, 100 + (uint64_t)i);
        w[i] = nb_mul_scalar(r, 0.0625);   /* 1/sqrt(256) */
        nb_release(r);
        if (!w[i] || nb_set_requires_grad(w[i], true)) return -1;
    }
    return 0;
}

/* One forward (loss(ctx), a new tensor in the scope or NULL) + backward in
 * its own scope, timed: forward + backward into *fb_ms, backward into
 * *bwd_ms. 0 or -1 (nb_last_error). */
static inline int bench_fb_time(nb_tensor *(*loss)(void *), void *ctx, double *fb_ms, double *bwd_ms) {
    nb_scope_begin();
    double t0 = bench_now_ms();
    nb_tensor *l = loss(ctx);
    double t1 = bench_now_ms();
    int rc = l ? nb_backward(l, NULL) : -1;
    double t2 = bench_now_ms();
    nb_scope_end();
    *fb_ms = t2 - t0;
    *bwd_ms = t2 - t1;
    return rc ? -1 : 0;
}

/* bench_fb_time, and "sample fb_ms=.. bwd_ms=.." printed when print. */
static inline int bench_fb_sample(nb_tensor *(*loss)(void *), void *ctx, bool print) {
    double fb, bwd;
    if (bench_fb_time(loss, ctx, &fb, &bwd)) return -1;
    if (print) printf("sample fb_ms=%.4f bwd_ms=%.4f\n", fb, bwd);
    return 0;
}
#endif

#endif
