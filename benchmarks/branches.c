/* branches.c — the parallel backward's headline workload: 8 independent
 * branches from one input, where the parallel executor can run branches at
 * once and the serial one cannot.
 *
 * Workload (F32): x (64, 256), no grad (data); 8 branches, each
 *   h = x; 4 times: h = tanh(h @ W) with its own W (256, 256), requires grad;
 * loss = sum over branches of sum(h); one forward + backward per iteration,
 * .grad reset (nb_zero_grad) between iterations, outside the timing.
 * benchmarks/peer_branches.py is the same in PyTorch.
 *
 * Configurations, each in a child process of this program (the executor and
 * the thread count are read from NB_BACKWARD and NB_NUM_THREADS at start-up):
 *   serial@1, parallel@1, serial@all, parallel@all   (all: nb_num_threads()),
 *   and parallel@all on the other pool (NB_POOL=threads when the default at
 *   `all` threads is the OpenMP team)
 * They run interleaved, round after round, so a load change on a shared
 * machine hits all of them alike; each child does warm-up iterations first.
 * Each configuration also reports a hash of the weights' gradients: the
 * parallel executor must give the serial executor's bits at the same thread
 * count.
 *
 * Output (one line per configuration, then the same-run ratios):
 *   bench name=branches executor=serial threads=1 iters=60 median_ms=... min_ms=... max_ms=...
 *         bwd_median_ms=... grad_hash=... workers_seen=...
 *   ratio name=branches parallel@2/serial@1 speedup=... speedup_min=...   (medians; minima)
 *   check name=branches threads=2 parallel_vs_serial_grads=bitwise_equal
 * Usage: branches [iters per round (default 12)] [rounds (default 5)]
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

#include "autograd/schedsim.h"
#include "runtime/pool.h"

#define NBRANCH 8
#define DEPTH 4
#define WARMUP 3

/* loss = sum_b sum(branch_b(x)) (a new tensor in the scope, NULL on error). */
static nb_tensor *forward(nb_tensor *x, nb_tensor *const *w) {
    nb_tensor *loss = NULL;
    for (int b = 0; b < NBRANCH; b++) {
        nb_tensor *h = x;
        for (int l = 0; l < DEPTH; l++)
            h = nb_tanh(nb_matmul(h, w[b * DEPTH + l]));
        nb_tensor *s = nb_sum_all(h);
        loss = loss ? nb_add(loss, s) : s;
    }
    return loss;
}

typedef struct fwd_ctx {
    nb_tensor *x, *const *w;
} fwd_ctx;

static nb_tensor *forward_cb(void *ctx) {
    const fwd_ctx *c = ctx;
    return forward(c->x, c->w);
}

/* FNV-1a over the bytes of the weights' gradients. */
static uint64_t grad_hash(nb_tensor *const *w, int n) {
    uint64_t h = 1469598103934665603ULL;
    static float buf[256 * 256];
    for (int i = 0; i < n; i++) {
        nb_tensor *g = nb_grad(w[i]);
        if (!g || nb_copy_to(g, buf, sizeof buf)) return 0;
        const unsigned char *p = (const unsigned char *)buf;
        for (size_t k = 0; k < sizeof buf; k++)
            h = (h ^ p[k]) * 1099511628211ULL;
    }
    return h;
}

/* The child: warm-up, then `iters` timed iterations, one line each, then
 * the gradient hash and how many workers ran backward nodes. */
static int child(int iters) {
    nb_init(NULL);
    nb_tensor *x = nb_randn(NB_SHAPE(64, 256), NB_F32, 1);
    nb_tensor *w[NBRANCH * DEPTH];
    if (bench_weights(w, NBRANCH * DEPTH)) goto fail;
    fwd_ctx ctx = {x, w};
    for (int it = -WARMUP; it < iters; it++) {
        for (int i = 0; i < NBRANCH * DEPTH; i++)
            nb_zero_grad(w[i]);
        if (bench_fb_sample(forward_cb, &ctx, it >= 0)) goto fail;
    }
    uint64_t h = grad_hash(w, NBRANCH * DEPTH);
    int workers = 0;
    nb_scope_begin();
    nb_tensor *loss = forward(x, w);
    double span, wall;
    if (!loss || nb__sim_trace_pass(loss, &span, &wall, &workers)) workers = -1;
    nb_scope_end();
    printf("done grad_hash=%016llx threads=%d workers_seen=%d\n", (unsigned long long)h, nb_num_threads(), workers);
    for (int i = 0; i < NBRANCH * DEPTH; i++)
        nb_release(w[i]);
    nb_release(x);
    nb_shutdown();
    return 0;
fail:
    fprintf(stderr, "branches: %s\n", nb_last_error());
    return 1;
}

typedef bench_config config;

/* A child's last line: the gradient hash and the workers seen. */
static void parse_done(config *c, const char *line) {
    unsigned long long h;
    int t, ws;
    if (sscanf(line, "done grad_hash=%llx threads=%d workers_seen=%d", &h, &t, &ws) == 3) {
        snprintf(c->hash, sizeof c->hash, "%016llx", h);
        c->workers_seen = ws;
    }
}

/* Runs one child for c and appends its samples. Returns 0 or -1. */
static int run_child(const char *exe, config *c, int iters) {
    char its[16];
    snprintf(its, sizeof its, "%d", iters);
    char *argv[] = {(char *)exe, "--child", its, NULL};
    return bench_run_child(c, argv, parse_done);
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "--child")) return child(bench_arg_pos(argc, argv, 2, 1));
    int iters = bench_arg_pos(argc, argv, 1, 12);
    int rounds = bench_arg_pos(argc, argv, 2, 5);
    nb_init(NULL);
    int all = nb_num_threads();
    nb_shutdown();
    char exe[4096];
    if (bench_self_exe(exe, sizeof exe)) return 1;
    /* the fifth: the pool the default does not use at `all` threads */
    config cf[5] = {{.executor = "serial", .threads = 1},
                    {.executor = "parallel", .threads = 1},
                    {.executor = "serial", .threads = all},
                    {.executor = "parallel", .threads = all},
                    {.executor = "parallel+threads", .threads = all}};   /* the team is the default (runtime/pool.c) */
    int ncf = all > 1 ? 5 : 2;
    for (int k = 0; k < ncf; k++) {
        cf[k].fb = malloc(sizeof(double) * (size_t)(iters * rounds));
        cf[k].bwd = malloc(sizeof(double) * (size_t)(iters * rounds));
        if (!cf[k].fb || !cf[k].bwd) return 1;
    }
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < ncf; k++)
            if (run_child(exe, &cf[k], iters)) {
                fprintf(stderr, "branches: the %s@%d child failed\n", cf[k].executor, cf[k].threads);
                return 1;
            }
    double med[5] = {0}, mn[5] = {0};
    for (int k = 0; k < ncf; k++) {
        config *c = &cf[k];
        double bm = bench_median(c->bwd, c->n);
        med[k] = bench_median(c->fb, c->n);
        mn[k] = c->fb[0];
        printf("bench name=branches executor=%s threads=%d iters=%d median_ms=%.3f min_ms=%.3f max_ms=%.3f "
               "bwd_median_ms=%.3f grad_hash=%s workers_seen=%d\n",
               c->executor, c->threads, c->n, med[k], c->fb[0], c->fb[c->n - 1], bm, c->hash, c->workers_seen);
    }
    printf("ratio name=branches parallel@1/serial@1 speedup=%.2f speedup_min=%.2f\n", med[0] / med[1], mn[0] / mn[1]);
    if (ncf == 5) {
        printf("ratio name=branches parallel@%d/serial@1 speedup=%.2f speedup_min=%.2f\n", all, med[0] / med[3],
               mn[0] / mn[3]);
        printf("ratio name=branches parallel@%d/serial@%d speedup=%.2f speedup_min=%.2f\n", all, all,
               med[2] / med[3], mn[2] / mn[3]);
        int team = 3, thr = 4;   /* team/threads: above 1 the team is faster */
        printf("ratio name=branches team/threads@%d speedup=%.2f speedup_min=%.2f\n", all, med[thr] / med[team],
               mn[thr] / mn[team]);
    }
    for (int k = 0; k + 1 < ncf && k < 4; k += 2)
        printf("check name=branches threads=%d parallel_vs_serial_grads=%s\n", cf[k].threads,
               strcmp(cf[k].hash, cf[k + 1].hash) || (k == 2 && ncf == 5 && strcmp(cf[k].hash, cf[4].hash))
                   ? "DIFFER"
                   : "bitwise_equal");
    for (int k = 0; k < ncf; k++) {
        free(cf[k].fb);
        free(cf[k].bwd);
    }
    return 0;
}
