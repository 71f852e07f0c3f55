/* op_overhead.c — what one tiny op costs: dispatch, tensor bookkeeping and
 * graph recording, with the arithmetic itself negligible.
 *
 * Workload: a chain of OPS = 200 ops on 1-element F32 tensors, starting from
 * a leaf that requires grad and cycling add, mul, tanh:
 *     y = x;  y = add(y, c1);  y = mul(y, c2);  y = tanh(y);  ...
 * Timed two ways, each rep inside its own scope so nothing accumulates:
 *     fwd      the 200 ops (with graph recording, as PyTorch does);
 *     fwd_bwd  the 200 ops, then backward from the end of the chain.
 * After warm-up, REPS reps of each; the median is reported as µs per op
 * (the rep's time / OPS). benchmarks/peer_op_overhead.py runs the same chain
 * in PyTorch and benchmarks/run.sh prints the ratio of the two.
 *
 * Output, one machine-readable line:
 *   op_overhead impl=nabla fwd_us_per_op=... fwd_bwd_us_per_op=... ops=200 reps=2000
 * Usage: op_overhead [reps]
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* clock_gettime */
#endif
#include <nabla.h>

#include <stdlib.h>

#include "bench_util.h"

enum { OPS = 200, WARMUP = 200, DEFAULT_REPS = 2000 };

/* The chain of OPS ops from x; NULL (with nb_last_error) on failure. */
static nb_tensor *chain(nb_tensor *x, nb_tensor *c1, nb_tensor *c2) {
    nb_tensor *y = x;
    for (int i = 0; i < OPS; i++) {
        switch (i % 3) {
        case 0: y = nb_add(y, c1); break;
        case 1: y = nb_mul(y, c2); break;
        default: y = nb_tanh(y); break;
        }
    }
    return y;
}

/* One rep in its own scope; returns its time in µs, or -1 on error. */
static double one_rep(nb_tensor *x, nb_tensor *c1, nb_tensor *c2, int backward) {
    double t0 = bench_now_us();
    nb_scope_begin();
    nb_tensor *y = chain(x, c1, c2);
    int rc = y ? 0 : -1;
    if (y && backward) rc = nb_backward(y, NULL);
    nb_scope_end();
    double t1 = bench_now_us();
    nb_zero_grad(x);
    return rc == 0 ? t1 - t0 : -1.0;
}

/* Median µs of `reps` reps, after WARMUP untimed ones; -1 on error. */
static double median_rep(nb_tensor *x, nb_tensor *c1, nb_tensor *c2, int backward,
                         double *times, int reps) {
    for (int i = 0; i < WARMUP; i++)
        if (one_rep(x, c1, c2, backward) < 0) return -1.0;
    for (int i = 0; i < reps; i++)
        if ((times[i] = one_rep(x, c1, c2, backward)) < 0) return -1.0;
    return bench_median(times, reps);
}

int main(int argc, char **argv) {
    int reps = bench_arg_pos(argc, argv, 1, DEFAULT_REPS);
    if (nb_init(NULL) != 0) {
        fprintf(stderr, "op_overhead: nb_init: %s\n", nb_last_error());
        return 1;
    }
    int status = 1;
    double *times = malloc(sizeof(double) * (size_t)reps);
    /* Outside any scope: x, c1 and c2 are ours to release. */
    nb_tensor *x = nb_full(NB_SHAPE(1), NB_F32, 0.5);
    nb_tensor *c1 = nb_full(NB_SHAPE(1), NB_F32, 0.1);
    nb_tensor *c2 = nb_full(NB_SHAPE(1), NB_F32, 0.9);
    if (!times || !x || !c1 || !c2 || nb_set_requires_grad(x, true) != 0) goto fail_setup;

    double fwd = median_rep(x, c1, c2, 0, times, reps);
    double fwd_bwd = fwd < 0 ? -1.0 : median_rep(x, c1, c2, 1, times, reps);
    if (fwd < 0 || fwd_bwd < 0) goto fail_setup;
    printf("op_overhead impl=nabla fwd_us_per_op=%.4f fwd_bwd_us_per_op=%.4f ops=%d reps=%d\n",
           fwd / OPS, fwd_bwd / OPS, OPS, reps);
    status = 0;
    goto release;

fail_setup:
    fprintf(stderr, "op_overhead: %s\n", times ? nb_last_error() : "out of memory");
release:
    nb_release(c2);
    nb_release(c1);
    nb_release(x);
    free(times);
    nb_shutdown();
    return status;
}
