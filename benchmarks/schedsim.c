/* schedsim.c (benchmark driver) — predicted scaling of the parallel
 * backward at 1..64 threads, from backward graphs recorded on this machine
 * (src/autograd/schedsim.h): node costs are measured with serial backward
 * passes at 1 thread, then the graph is replayed with list scheduling on P
 * virtual threads with a per-node dispatch overhead.
 *
 * Workloads (F32):
 *   branches     benchmarks/branches.c: 8 independent branches of 4 x
 *                (matmul 64x256 @ 256x256, tanh), loss = sum of all outputs
 *   transformer  one pre-norm transformer block, B=4 T=64 C=256, 4 heads:
 *                layer norm, q/k/v linears, softmax(q kᵀ/8) v, output linear,
 *                residual, layer norm, MLP 256-1024-256 with GELU, residual,
 *                loss = mean(x²)
 *   mlp          784-512-512-10 with ReLU on a batch of 128, loss = mean(y²):
 *                a chain, for contrast
 * Then, as a check of the model against the real executor, each graph's
 * backward is timed (median of reps) serial at 1 thread, serial and
 * parallel at all threads of this machine (a rough check: on a loaded machine
 * benchmarks/branches, one process per configuration, is the measurement).
 *
 * Output (machine-readable):
 *   graph workload=branches nodes=.. deps=.. work_ms=.. serial_part_ms=.. critical_ms=.. bound=.. overhead_us=..
 *   sim workload=branches P=4 makespan_ms=.. speedup=.. speedup_cp=.. utilisation=..
 *   measured workload=branches threads=2 serial1_ms=.. serial_ms=.. parallel_ms=.. workers_seen=..
 *            speedup_vs_serial1=.. predicted=..
 * (speedup: FIFO ready queue; speedup_cp: longest-remaining-path first.)
 *   node workload=branches index=0 name=AddBackward cost_us=..   (with "nodes")
 * Usage: schedsim [overhead_us (default 2)] [reps (default 15)] [nodes]
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* setenv */
#endif
#include <nabla.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "autograd/schedsim.h"

#define NPARAM 32

static bool show_nodes;   /* print every node's measured cost */

/* Parameters of one workload: leaves that require grad (owned). */
typedef struct params {
    nb_tensor *p[NPARAM];   /* in creation order */
    int n;                  /* used */
    nb_tensor *x;           /* the input (owned) */
} params;

/* A parameter of `shape`: randn * scale, or `fill` when scale is 0. */
static nb_tensor *param(params *ps, nb_dims shape, double scale, double fill) {
    nb_tensor *t;
    if (scale != 0) {
        nb_tensor *r = nb_randn(shape, NB_F32, 1000 + (uint64_t)ps->n);
        t = nb_mul_scalar(r, scale);
        nb_release(r);
    } else {
        t = nb_full(shape, NB_F32, fill);
    }
    if (t) nb_set_requires_grad(t, true);
    if (ps->n < NPARAM) ps->p[ps->n++] = t;
    return t;
}

static nb_tensor *branches(params *ps, bool build) {
    if (build) {
        ps->x = nb_randn(NB_SHAPE(64, 256), NB_F32, 1);
        for (int i = 0; i < 32; i++)
            param(ps, NB_SHAPE(256, 256), 0.0625, 0);
        return NULL;
    }
    nb_tensor *loss = NULL;
    for (int b = 0; b < 8; b++) {
        nb_tensor *h = ps->x;
        for (int l = 0; l < 4; l++)
            h = nb_tanh(nb_matmul(h, ps->p[b * 4 + l]));
        nb_tensor *s = nb_sum_all(h);
        loss = loss ? nb_add(loss, s) : s;
    }
    return loss;
}

/* (B, T, C) -> (B, H, T, D) */
static nb_tensor *heads(nb_tensor *t) { return nb_transpose(nb_reshape(t, NB_SHAPE(4, 64, 4, 64)), 1, 2); }

static nb_tensor *transformer(params *ps, bool build) {
    const int64_t C = 256;
    if (build) {
        ps->x = nb_randn(NB_SHAPE(4, 64, 256), NB_F32, 2);
        param(ps, NB_SHAPE(C), 0, 1.0);                  /* 0 ln1 weight */
        param(ps, NB_SHAPE(C), 0, 0.0);                  /* 1 ln1 bias */
        for (int i = 0; i < 4; i++) {                    /* 2..9 q, k, v, o: weight, bias */
            param(ps, NB_SHAPE(C, C), 0.0625, 0);
            param(ps, NB_SHAPE(C), 0.01, 0);
        }
        param(ps, NB_SHAPE(C), 0, 1.0);                  /* 10 ln2 weight */
        param(ps, NB_SHAPE(C), 0, 0.0);                  /* 11 ln2 bias */
        param(ps, NB_SHAPE(4 * C, C), 0.0625, 0);        /* 12, 13 mlp up */
        param(ps, NB_SHAPE(4 * C), 0.01, 0);
        param(ps, NB_SHAPE(C, 4 * C), 0.03125, 0);       /* 14, 15 mlp down */
        param(ps, NB_SHAPE(C), 0.01, 0);
        return NULL;
    }
    nb_tensor **p = ps->p;
    nb_tensor *h = nb_layer_norm(ps->x, NB_SHAPE(C), p[0], p[1], NULL);
    nb_tensor *q = heads(nb_linear(h, p[2], p[3]));
    nb_tensor *k = heads(nb_linear(h, p[4], p[5]));
    nb_tensor *v = heads(nb_linear(h, p[6], p[7]));
    nb_tensor *att = nb_softmax(nb_mul_scalar(nb_matmul(q, nb_transpose(k, 2, 3)), 0.125), -1);
    nb_tensor *y = nb_reshape(nb_transpose(nb_matmul(att, v), 1, 2), NB_SHAPE(4, 64, 256));
    nb_tensor *x1 = nb_add(ps->x, nb_linear(y, p[8], p[9]));
    nb_tensor *h2 = nb_layer_norm(x1, NB_SHAPE(C), p[10], p[11], NULL);
    nb_tensor *m = nb_linear(nb_gelu(nb_linear(h2, p[12], p[13]), true), p[14], p[15]);
    nb_tensor *x2 = nb_add(x1, m);
    return nb_mean_all(nb_mul(x2, x2));
}

static nb_tensor *mlp(params *ps, bool build) {
    if (build) {
        ps->x = nb_randn(NB_SHAPE(128, 784), NB_F32, 3);
        param(ps, NB_SHAPE(512, 784), 0.0357, 0);
        param(ps, NB_SHAPE(512), 0.01, 0);
        param(ps, NB_SHAPE(512, 512), 0.0442, 0);
        param(ps, NB_SHAPE(512), 0.01, 0);
        param(ps, NB_SHAPE(10, 512), 0.0442, 0);
        param(ps, NB_SHAPE(10), 0.01, 0);
        return NULL;
    }
    nb_tensor **p = ps->p;
    nb_tensor *h = nb_relu(nb_linear(ps->x, p[0], p[1]));
    h = nb_relu(nb_linear(h, p[2], p[3]));
    nb_tensor *y = nb_linear(h, p[4], p[5]);
    return nb_mean_all(nb_mul(y, y));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The real executors: median wall time (ms) of `reps` backward passes of
 * loss (retain_graph) in serial@1, serial@all and parallel@all, one block
 * each after two warm-up passes (switching the thread count pass by pass
 * would measure the switch: idle OpenMP threads spinning after a region).
 * Fills ms[3]; 0 or -1. */
static int time_backward(nb_tensor *loss, int reps, int all, double ms[3]) {
    static double t[64];
    if (reps > 64) reps = 64;
    for (int c = 0; c < 3; c++) {
        nb_set_num_threads(c ? all : 1);
        nb__backward = c == 2 ? NB__BACKWARD_PARALLEL : NB__BACKWARD_SERIAL;
        for (int r = -2; r < reps; r++) {
            uint64_t t0 = nb__now_ns();
            if (nb_backward_ex(loss, NULL, &(nb_backward_opts){.retain_graph = true})) return -1;
            if (r >= 0) t[r] = (double)(nb__now_ns() - t0) * 1e-6;
        }
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        ms[c] = t[reps / 2];
    }
    return 0;
}

static const int sim_ps[] = {1, 2, 4, 8, 16, 32, 64};
#define NSIM_PS ((int)(sizeof sim_ps / sizeof sim_ps[0]))

/* Records, simulates and checks one workload. 0 or -1. */
static int one(const char *name, nb_tensor *(*wl)(params *, bool), double overhead_s, int reps, int all) {
    params ps = {0};
    nb__simgraph g = {0};
    int rc = -1;
    nb_set_num_threads(1);
    nb__backward = NB__BACKWARD_SERIAL;
    wl(&ps, true);
    nb_scope_begin();
    nb_tensor *loss = wl(&ps, false);
    if (!loss || !ps.x) goto out;
    for (int i = 0; i < 2; i++)   /* warm-up: caches, oneDNN primitives, the allocator */
        if (nb_backward_ex(loss, NULL, &(nb_backward_opts){.retain_graph = true})) goto out;
    if (nb__simgraph_record(&g, loss, reps)) goto out;
    double work = g.serial, predicted_all = 1;
    for (int i = 0; i < g.n; i++)
        work += g.cost[i];
    nb__sim_result r, rcp;
    nb__sim_opts o = {.workers = 1, .overhead = overhead_s};
    if (nb__sim_run(&g, &o, &r)) goto out;
    printf("graph workload=%s nodes=%d deps=%d work_ms=%.3f serial_part_ms=%.3f critical_ms=%.3f bound=%.2f "
           "overhead_us=%.1f\n",
           name, g.n, g.ne, work * 1e3, g.serial * 1e3, r.critical * 1e3, r.bound, overhead_s * 1e6);
    for (int i = 0; i < g.n && show_nodes; i++)
        printf("node workload=%s index=%d name=%s cost_us=%.1f\n", name, i, g.name[i] ? g.name[i] : "?",
               g.cost[i] * 1e6);
    for (int k = 0; k < NSIM_PS; k++) {
        o.workers = sim_ps[k];
        o.policy = NB__SIM_POLICY_FIFO;
        if (nb__sim_run(&g, &o, &r)) goto out;
        o.policy = NB__SIM_POLICY_CRITICAL;
        if (nb__sim_run(&g, &o, &rcp)) goto out;
        if (sim_ps[k] == all) predicted_all = r.speedup;
        printf("sim workload=%s P=%d makespan_ms=%.3f speedup=%.2f speedup_cp=%.2f utilisation=%.2f\n", name,
               sim_ps[k], r.makespan * 1e3, r.speedup, rcp.speedup, r.utilisation);
    }
    /* the real executors on this machine */
    double ms[3];
    if (time_backward(loss, reps, all, ms)) goto out;
    double s1 = ms[0], sa = ms[1], pa = ms[2];
    double span, wall;
    int workers = 0;
    if (nb__sim_trace_pass(loss, &span, &wall, &workers)) workers = -1;
    printf("measured workload=%s threads=%d serial1_ms=%.3f serial_ms=%.3f parallel_ms=%.3f workers_seen=%d "
           "speedup_vs_serial1=%.2f predicted=%.2f\n",
           name, all, s1, sa, pa, workers, s1 / pa, predicted_all);
    rc = 0;
out:
    if (rc) fprintf(stderr, "schedsim: %s: %s\n", name, nb_last_error());
    nb_scope_end();
    nb__simgraph_free(&g);
    for (int i = 0; i < ps.n; i++)
        nb_release(ps.p[i]);
    nb_release(ps.x);
    return rc;
}

int main(int argc, char **argv) {
    double overhead_us = argc > 1 ? atof(argv[1]) : 2.0;
    int reps = argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 15;
    if (!(overhead_us >= 0)) overhead_us = 2.0;
    show_nodes = argc > 3 && !strcmp(argv[3], "nodes");
    nb_init(NULL);
    int all = nb_num_threads();
    int rc = one("branches", branches, overhead_us * 1e-6, reps, all) ||
             one("transformer", transformer, overhead_us * 1e-6, reps, all) ||
             one("mlp", mlp, overhead_us * 1e-6, reps, all);
    nb_shutdown();
    return rc ? 1 : 0;
}
