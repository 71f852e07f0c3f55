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
 * Configurations, at 1 thread and at all threads (a child process per
 * thread count and round, NB_NUM_THREADS read at start-up): serial; parallel
 * (the default, which runs a graph without fan-out with the serial loop);
 * forced (the parallel executor's task machinery even on a chain, what the
 * tests use). The three executors take turns iteration by iteration inside
 * each child (nb__backward switched before each backward, the first of the
 * three rotating), so they share the process's memory layout and every
 * slow period of a shared machine. Why: with one child per executor (the
 * earlier form) the parallel/serial medians of chain_small, where both run
 * the same serial loop, came out anywhere in 0.95-1.06 between runs: a
 * process's own layout and the moment it ran, not the executor. forced vs
 * serial on chain_small gives the executor's cost per node, which
 * scripts/bench-parallel.sh hands to the schedule simulator as its
 * dispatch overhead.
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

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_UTIL_SPAWN
#include "bench_util.h"

#include "autograd/autograd.h"   /* nb__backward: the forced configuration */

#define WARMUP 3
#define MM_DEPTH 16
#define SMALL_DEPTH 500
#define NWL 2
#define NEXEC 3   /* serial, parallel, forced */

static const char *const exec_names[NEXEC] = {"serial", "parallel", "forced"};
static const int wl_nodes[NWL] = {2 * MM_DEPTH + 1, 2 * SMALL_DEPTH + 1};

static const char *const wl_names[NWL] = {"chain_mm", "chain_small"};

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

typedef struct fwd_ctx {
    int wl;
    nb_tensor *x, *const *w;
} fwd_ctx;

static nb_tensor *forward_cb(void *ctx) {
    const fwd_ctx *c = ctx;
    return forward(c->wl, c->x, c->w);
}

static const nb__backward_mode exec_modes[NEXEC] = {NB__BACKWARD_SERIAL, NB__BACKWARD_PARALLEL,
                                                    NB__BACKWARD_FORCE};

/* The child: workload wl; warm-up, then `iters` timed iterations of each
 * executor, taking turns; prints "xsample ex=<k> fb_ms=.. bwd_ms=..". */
static int child(int wl, int iters) {
    nb_init(NULL);
    nb_tensor *x = wl == 0 ? nb_randn(NB_SHAPE(64, 256), NB_F32, 1) : nb_randn(NB_SHAPE(32, 32), NB_F32, 1);
    nb_tensor *w[MM_DEPTH] = {0};
    int nw = wl == 0 ? MM_DEPTH : 0;
    if (!x || (wl == 1 && nb_set_requires_grad(x, true))) goto fail;
    if (bench_weights(w, nw)) goto fail;
    fwd_ctx ctx = {wl, x, w};
    for (int it = -WARMUP; it < iters; it++)
        for (int j = 0; j < NEXEC; j++) {
            int k = (it + WARMUP + j) % NEXEC;   /* who goes first rotates */
            nb__backward = exec_modes[k];
            for (int i = 0; i < nw; i++)
                nb_zero_grad(w[i]);
            nb_zero_grad(x);
            double fb, bwd;
            if (bench_fb_time(forward_cb, &ctx, &fb, &bwd)) goto fail;
            if (it >= 0) printf("xsample ex=%d fb_ms=%.4f bwd_ms=%.4f\n", k, fb, bwd);
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

typedef bench_config config;

/* A child's sample of executor k: into the k-th config after c (the
 * child is run with the first of the thread count's NEXEC configs). */
static void parse_xsample(config *c, const char *line) {
    int k;
    double a, b;
    if (sscanf(line, "xsample ex=%d fb_ms=%lf bwd_ms=%lf", &k, &a, &b) == 3 && k >= 0 && k < NEXEC) {
        c[k].fb[c[k].n] = a;
        c[k].bwd[c[k].n++] = b;
    }
}

/* Runs one child (workload wl, all executors) for the NEXEC configs from c
 * and appends their samples. 0 or -1. */
static int run_child(const char *exe, config *c, int wl, int iters) {
    char its[16], w[8];
    snprintf(its, sizeof its, "%d", iters);
    snprintf(w, sizeof w, "%d", wl);
    char *argv[] = {(char *)exe, "--child", w, its, NULL};
    return bench_run_child(c, argv, parse_xsample);
}

int main(int argc, char **argv) {
    if (argc > 3 && !strcmp(argv[1], "--child"))
        return child(atoi(argv[2]) == 1, bench_arg_pos(argc, argv, 3, 1));
    int iters = bench_arg_pos(argc, argv, 1, 15);
    int rounds = bench_arg_pos(argc, argv, 2, 5);
    nb_init(NULL);
    int all = nb_num_threads();
    nb_shutdown();
    char exe[4096];
    if (bench_self_exe(exe, sizeof exe)) return 1;
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
            for (int k = 0; k < ncf; k += NEXEC)
                if (run_child(exe, &cf[wl][k], wl, iters)) {
                    fprintf(stderr, "chain: the %s child at %d threads failed\n", wl_names[wl], cf[wl][k].threads);
                    return 1;
                }
    for (int wl = 0; wl < NWL; wl++) {
        double med[2 * NEXEC] = {0}, bmed[2 * NEXEC] = {0}, mn[2 * NEXEC] = {0};
        for (int k = 0; k < ncf; k++) {
            config *c = &cf[wl][k];
            bmed[k] = bench_median(c->bwd, c->n);
            med[k] = bench_median(c->fb, c->n);
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
