/* chain.c — backward graphs with no independent nodes: the parallel
 * executor has nothing to overlap and must not be slower than the serial
 * one (target: parallel >= 0.97x serial at the same thread count).
 *
 * Workloads (F32), one forward + backward per iteration, .grad reset
 * (nb_zero_grad) between iterations outside the timing:
 *   chain_mm     x (64, 256) data; 16 times h = tanh(h @ W_i), W_i (256, 256)
 *                requires grad; loss = sum(h). 33 nodes, each waiting for the
 *                one before: big nodes, where kernels' own threads matter.
 *   chain_small  x (32, 32) requires grad; 500 times h = tanh(0.9 * h);
 *                loss = sum(h). 1001 tiny nodes: the per-node cost of the
 *                executor shows.
 * Configurations, each in a child process (NB_BACKWARD and NB_NUM_THREADS
 * read at start-up), at 1 thread and at all threads: serial; parallel (the
 * default, which runs a graph without fan-out with the serial loop); forced
 * (the parallel executor's task machinery even on a chain: nb__backward =
 * NB__BACKWARD_FORCE, what the tests use). They run interleaved, round after
 * round, so load changes hit all alike. forced vs serial on chain_small gives
 * the executor's cost per node, which scripts/bench-parallel.sh hands to the
 * schedule simulator as its dispatch overhead.
 *
 * Output:
 *   bench name=chain_mm executor=serial threads=1 iters=.. median_ms=.. min_ms=.. max_ms=.. bwd_median_ms=..
 *   ratio name=chain_mm threads=1 parallel/serial speedup=.. speedup_min=..   (fwd+bwd medians; minima)
 *   ratio name=chain_mm threads=1 parallel/serial bwd_speedup=..
 *   ratio name=chain_mm threads=1 forced/serial speedup=..
 *   overhead name=chain_small threads=1 forced_per_node_us=..
 * Usage: chain [iters per round (default 15)] [rounds (default 5)]
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* clock_gettime, posix_spawn, setenv */
#endif
#include <nabla.h>

#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "autograd/autograd.h"   /* nb__backward: the forced configuration */

extern char **environ;

#define WARMUP 3
#define MM_DEPTH 16
#define SMALL_DEPTH 500
#define NWL 2
#define NEXEC 3   /* serial, parallel, forced */

static const char *const exec_names[NEXEC] = {"serial", "parallel", "forced"};
static const int wl_nodes[NWL] = {2 * MM_DEPTH + 1, 2 * SMALL_DEPTH + 1};

static const char *const wl_names[NWL] = {"chain_mm", "chain_small"};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The loss of workload wl (a new tensor in the scope, NULL on error). */
static nb_tensor *forward(int wl, nb_tensor *x, nb_tensor *const *w) {
    nb_tensor *h = x;
    if (wl == 0) {
        for (int l = 0; l < MM_DEPTH; l++)
            h = nb_tanh(nb_matmul(h, w[l]));
    } else {
        for (int l = 0; l < SMALL_DEPTH; l++)
            h = nb_tanh(nb_mul_scalar(h, 0.9));
    }
    return nb_sum_all(h);
}

/* The child: workload wl, warm-up, then `iters` timed iterations. */
static int child(int wl, int iters) {
    nb_init(NULL);
    const char *e = getenv("NB_BACKWARD");
    if (e && !strcmp(e, "forced")) nb__backward = NB__BACKWARD_FORCE;
    nb_tensor *x = wl == 0 ? nb_randn(NB_SHAPE(64, 256), NB_F32, 1) : nb_randn(NB_SHAPE(32, 32), NB_F32, 1);
    nb_tensor *w[MM_DEPTH] = {0};
    int nw = wl == 0 ? MM_DEPTH : 0;
    if (!x || (wl == 1 && nb_set_requires_grad(x, true))) goto fail;
    for (int i = 0; i < nw; i++) {
        nb_tensor *r = nb_randn(NB_SHAPE(256, 256), NB_F32, 100 + (uint64_t)i);
        w[i] = nb_mul_scalar(r, 0.0625);   /* 1/sqrt(256): tanh stays out of saturation */
        nb_release(r);
        if (!w[i] || nb_set_requires_grad(w[i], true)) goto fail;
    }
    for (int it = -WARMUP; it < iters; it++) {
        for (int i = 0; i < nw; i++)
            nb_zero_grad(w[i]);
        nb_zero_grad(x);
        nb_scope_begin();
        double t0 = now_ms();
        nb_tensor *loss = forward(wl, x, w);
        double t1 = now_ms();
        int rc = loss ? nb_backward(loss, NULL) : -1;
        double t2 = now_ms();
        nb_scope_end();
        if (rc) goto fail;
        if (it >= 0) printf("sample fb_ms=%.4f bwd_ms=%.4f\n", t2 - t0, t2 - t1);
    }
    for (int i = 0; i < nw; i++)
        nb_release(w[i]);
    nb_release(x);
    nb_shutdown();
    return 0;
fail:
    fprintf(stderr, "chain: %s\n", nb_last_error());
    return 1;
}

typedef struct config {
    const char *executor;   /* NB_BACKWARD */
    int threads;            /* NB_NUM_THREADS */
    double *fb, *bwd;       /* samples (ms) */
    int n;                  /* samples so far */
} config;

/* Runs one child (workload wl) for c and appends its samples. 0 or -1. */
static int run_child(const char *exe, config *c, int wl, int iters) {
    char thr[16], its[16], w[8];
    snprintf(thr, sizeof thr, "%d", c->threads);
    snprintf(its, sizeof its, "%d", iters);
    snprintf(w, sizeof w, "%d", wl);
    setenv("NB_BACKWARD", c->executor, 1);
    setenv("NB_NUM_THREADS", thr, 1);
    int fd[2];
    if (pipe(fd)) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    char *argv[] = {(char *)exe, "--child", w, its, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc) {
        close(fd[0]);
        return -1;
    }
    FILE *f = fdopen(fd[0], "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        double a, b;
        if (sscanf(line, "sample fb_ms=%lf bwd_ms=%lf", &a, &b) == 2) {
            c->fb[c->n] = a;
            c->bwd[c->n++] = b;
        }
    }
    if (f) fclose(f);
    else close(fd[0]);
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) return -1;
    return 0;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

int main(int argc, char **argv) {
    if (argc > 3 && !strcmp(argv[1], "--child"))
        return child(atoi(argv[2]) == 1, atoi(argv[3]) > 0 ? atoi(argv[3]) : 1);
    int iters = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 15;
    int rounds = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 5;
    nb_init(NULL);
    int all = nb_num_threads();
    nb_shutdown();
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return 1;
    exe[len] = 0;
    int ncf = (all > 1 ? 2 : 1) * NEXEC;   /* k: thread index k / NEXEC, executor k % NEXEC */
    config cf[NWL][2 * NEXEC];
    for (int wl = 0; wl < NWL; wl++)
        for (int k = 0; k < ncf; k++) {
            cf[wl][k] = (config){.executor = exec_names[k % NEXEC], .threads = k < NEXEC ? 1 : all};
            cf[wl][k].fb = malloc(sizeof(double) * (size_t)(iters * rounds));
            cf[wl][k].bwd = malloc(sizeof(double) * (size_t)(iters * rounds));
            if (!cf[wl][k].fb || !cf[wl][k].bwd) return 1;
        }
    for (int r = 0; r < rounds; r++)
        for (int wl = 0; wl < NWL; wl++)
            for (int k = 0; k < ncf; k++)
                if (run_child(exe, &cf[wl][k], wl, iters)) {
                    fprintf(stderr, "chain: the %s %s@%d child failed\n", wl_names[wl], cf[wl][k].executor,
                            cf[wl][k].threads);
                    return 1;
                }
    for (int wl = 0; wl < NWL; wl++) {
        double med[2 * NEXEC] = {0}, bmed[2 * NEXEC] = {0}, mn[2 * NEXEC] = {0};
        for (int k = 0; k < ncf; k++) {
            config *c = &cf[wl][k];
            bmed[k] = median(c->bwd, c->n);
            med[k] = median(c->fb, c->n);
            mn[k] = c->fb[0];
            printf("bench name=%s executor=%s threads=%d iters=%d median_ms=%.3f min_ms=%.3f max_ms=%.3f "
                   "bwd_median_ms=%.3f\n",
                   wl_names[wl], c->executor, c->threads, c->n, med[k], c->fb[0], c->fb[c->n - 1], bmed[k]);
        }
        for (int k = 0; k < ncf; k += NEXEC) {
            int t = cf[wl][k].threads;
            printf("ratio name=%s threads=%d parallel/serial speedup=%.3f speedup_min=%.3f\n", wl_names[wl], t,
                   med[k] / med[k + 1], mn[k] / mn[k + 1]);
            printf("ratio name=%s threads=%d parallel/serial bwd_speedup=%.3f\n", wl_names[wl], t,
                   bmed[k] / bmed[k + 1]);
            printf("ratio name=%s threads=%d forced/serial speedup=%.3f\n", wl_names[wl], t, med[k] / med[k + 2]);
            printf("overhead name=%s threads=%d forced_per_node_us=%.2f\n", wl_names[wl], t,
                   (bmed[k + 2] - bmed[k]) * 1e3 / wl_nodes[wl]);
        }
        for (int k = 0; k < ncf; k++) {
            free(cf[wl][k].fb);
            free(cf[wl][k].bwd);
        }
    }
    return 0;
}
