/* kernels.c — the registry's kernel variants side by side: for each
 * workload, the kernel nabla chooses (oneDNN where it serves) against the
 * portable ref kernel, measured in the same run, at 1 thread and at all
 * threads.
 *
 * Workloads (F32, the shapes of the training examples):
 *   matmul  (512, 512) @ (512, 512)
 *   linear  x (128, 784), w (512, 784), b (512)           (the MLP's first layer)
 *   conv2d  x (64, 32, 14, 14), w (64, 32, 5, 5), pad 2   (the CNN's second conv)
 * The ref variant comes from re-initialising with NB_ISA=ref. Each timing is
 * the median of REPS calls after a warm-up call.
 *
 * Output, one line per (workload, threads, variant) and one ratio line:
 *   kernel op=matmul threads=1 variant=onednn_matmul ms=... gflops=...
 *   ratio op=matmul threads=1 chosen/ref speedup=...
 * Usage: kernels [reps (default 5)]
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* clock_gettime */
#endif
#include <nabla.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct workload {
    const char *name;     /* as printed */
    nb_op op;             /* whose chosen kernel is reported */
    double flops;         /* per call */
} workload;

/* One call of workload w on the given inputs (a new tensor in the scope). */
static nb_tensor *run(int w, nb_tensor *const *in) {
    switch (w) {
    case 0: return nb_matmul(in[0], in[1]);
    case 1: return nb_linear(in[0], in[1], in[2]);
    default: return nb_conv2d(in[0], in[1], in[2], &(nb_conv_opts){.padding = {2, 2}});
    }
}

/* Median ms of reps calls (after one warm-up), or -1 on error. */
static double time_it(int w, nb_tensor *const *in, int reps) {
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!t) return -1;
    for (int r = -1; r < reps; r++) {
        nb_scope_begin();
        double t0 = now_ms();
        nb_tensor *y = run(w, in);
        double dt = now_ms() - t0;
        nb_scope_end();
        if (!y) {
            fprintf(stderr, "kernels: %s\n", nb_last_error());
            free(t);
            return -1;
        }
        if (r >= 0) t[r] = dt;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double m = t[reps / 2];
    free(t);
    return m;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 5;
    if (reps < 1) reps = 5;
    const workload wl[3] = {{"matmul", NB_OP_MATMUL, 2.0 * 512 * 512 * 512},
                            {"linear", NB_OP_LINEAR, 2.0 * 128 * 784 * 512},
                            {"conv2d", NB_OP_CONV2D, 2.0 * 64 * 64 * 14 * 14 * 32 * 25}};
    nb_init(NULL);
    int all = nb_num_threads();
    nb_scope_begin();
    nb_tensor *ins[3][3] = {
        {nb_randn(NB_SHAPE(512, 512), NB_F32, 1), nb_randn(NB_SHAPE(512, 512), NB_F32, 2), NULL},
        {nb_randn(NB_SHAPE(128, 784), NB_F32, 3), nb_randn(NB_SHAPE(512, 784), NB_F32, 4),
         nb_randn(NB_SHAPE(512), NB_F32, 5)},
        {nb_randn(NB_SHAPE(64, 32, 14, 14), NB_F32, 6), nb_randn(NB_SHAPE(64, 32, 5, 5), NB_F32, 7),
         nb_randn(NB_SHAPE(64), NB_F32, 8)}};
    int threads[2] = {1, all};
    for (int ti = 0; ti < (all > 1 ? 2 : 1); ti++) {
        for (int w = 0; w < 3; w++) {
            double ms[2];
            const char *names[2];
            for (int v = 0; v < 2; v++) {   /* 0: what nabla chooses, 1: ref */
                nb_init(&(nb_init_opts){.num_threads = threads[ti], .isa = v ? "ref" : NULL, .abort_on_error = -1});
                names[v] = nb_kernel_chosen(wl[w].op, NB_F32);
                ms[v] = time_it(w, ins[w], v ? 1 + reps / 5 : reps);   /* ref is slow: fewer reps */
                if (ms[v] < 0) return 1;
                printf("kernel op=%s threads=%d variant=%s ms=%.3f gflops=%.2f\n", wl[w].name, threads[ti], names[v],
                       ms[v], wl[w].flops / ms[v] * 1e-6);
            }
            printf("ratio op=%s threads=%d chosen/ref speedup=%.1f\n", wl[w].name, threads[ti], ms[1] / ms[0]);
        }
    }
    nb_scope_end();
    nb_init(NULL);
    nb_shutdown();
    return 0;
}
