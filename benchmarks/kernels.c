/* kernels.c — the kernel table of the "Fast kernels" issue: each workload
 * through every variant nabla has, against oneDNN called directly and the
 * machine's copy bandwidth, all measured in the same run, at 1 thread and at
 * all threads (benchmarks/kernels_peer.py measures PyTorch on the same
 * workloads; scripts/bench-kernels.sh runs both and writes the table).
 *
 * Variants: nabla is re-initialised with NB_ISA capped at ref, avx2 and
 * avx512 (those the CPU has); each line names the kernel the registry chose
 * (nb_kernel_chosen), so the bench follows whatever kernels exist. Under
 * the avx512 cap a second line, impl=avx512k, times the AVX-512 kernels
 * first (nb__isa_prefer) where the registry ranks them below AVX2: what
 * the AVX-512 kernel itself does. Besides:
 *   memcpy         16M floats into a warm buffer (the copy bandwidth), timed
 *                  in alternation with the element-wise workloads' best kernel
 *                  (impl=paired) so that their ratio sees one machine load;
 *   onednn_direct  oneDNN's own primitives made once outside the loop,
 *                  executed call by call in alternation with ours (whose time
 *                  in that pairing is impl=paired_direct): dnnl_matmul;
 *                  convolution fwd, bwd data, bwd weights in oneDNN's own
 *                  (blocked, format `any`) layouts, inputs reordered once
 *                  before timing; softmax / logsoftmax fwd + bwd (from dy and
 *                  y), layer normalization (eps 1e-5, scale and shift: fwd
 *                  with mean and variance out, bwd with diff scale and shift)
 *                  and batch normalization (training: batch statistics, no
 *                  running stats; eps 1e-5, scale and shift) on plain
 *                  row-major / NCHW memory, y, mean and variance shared by
 *                  fwd and bwd; kernel= names oneDNN's implementations
 *                  (dnnl_query_impl_info_str, fwd/bwd);
 *   onednn_plain   the same conv with plain NCHW/OIHW memory;
 *   paired_direct_cl  ours with x and dy channels-last (nb_to_channels_last),
 *                  timed in alternation with oneDNN direct (its time in that
 *                  pairing: onednn_direct_cl).
 * Workloads (F32):
 *   add, relu, exp,    16M floats into a fresh output (op result released
 *   tanh, sigmoid, log, each call, so the allocator's cache serves it); log's
 *   dropout (p 0.5)    input uniform in [0.5, 1.5)
 *   sgd_step, adam_step  one optimizer step (SGD momentum 0.9; Adam) on a
 *                      4M-float parameter with its gradient
 *   softmax, log_softmax, layer_norm  fwd+bwd on [4096, 1024] through autograd
 *   gelu               fwd+bwd (erf form) on [4096, 1024] through autograd
 *   sum_rows, sum_cols sum over dim 1 / dim 0 of [4096, 1024] (inner / outer layout)
 *   mean_rows, max_rows, argmax_rows, var_rows  nb_mean / nb_max (amax) /
 *                      nb_argmax / nb_var (correction 1) over dim 1 of [4096, 1024]
 *   cross_entropy      fwd+bwd on logits [4096, 1024], class indices
 *   batch_norm         fwd+bwd, training (batch statistics, running stats
 *                      updated), with weight and bias, x (32, 64, 28, 28)
 *   sdpa               scaled_dot_product_attention fwd+bwd, q, k, v (8, 8,
 *                      256, 64), no mask; FLOPs counted 3x the forward's
 *   bmm                batched matmul (32, 128, 128) @ (32, 128, 128) (nb_matmul on 3-D)
 *   linear             nb_linear fwd+bwd, x (128, 784) (requires grad), w (512, 784),
 *                      b (512): the MLP's first layer; FLOPs of its 3 GEMMs
 *   matmul_N           (N, N) @ (N, N), N = 256, 1024, 2048
 *   conv1, conv2       fwd+bwd of the LeNet convs (examples/fashion_mnist_cnn.c,
 *                      batch 64): x (64,1,28,28) w (32,1,5,5); x (64,32,14,14)
 *                      w (64,32,5,5); pad 2, bias; conv1's x needs no grad
 *   conv3x3            fwd+bwd of a ResNet-style 3x3 conv: x (32,64,28,28),
 *                      w (64,64,3,3), pad 1, bias (the Winograd F(4x4, 3x3) case)
 *   max_pool           2x2 stride 2 max pooling fwd+bwd on x (64, 32, 28, 28)
 * Rates: GB/s of logical traffic (each operand read or written once: add 3N
 * floats, relu/exp/tanh/sigmoid/log/dropout/memcpy 2N, softmax/log_softmax/layer_norm/batch_norm/gelu
 * fwd+bwd 5N, sgd 5N, adam 7N, sum/mean/max/argmax/var N, cross entropy fwd+bwd 2N, max_pool fwd+bwd
 * 2.5N: x read, y written, dy read, dx written, N x's size) or GFLOP/s.
 * Each time is the median of reps calls after one warm-up call (ref: a fifth
 * of them; not timed where one call takes seconds: matmul_2048, conv2).
 *
 * Output (machine-readable, one line per measurement):
 *   info cpu=<brand> threads=<all> best_isa=avx2 onednn=1
 *   bench wl=add threads=1 impl=avx2 kernel=avx2_add ms=12.345 rate=16.31 unit=GB/s
 *   probe wl=add threads=1 min_gflops=150.2 max_gflops=152.0
 * (the probe: each CPU's FMA-loop rate right after the workload's
 * measurements at that thread count, fma_probe.h; a CPU that reads low
 * was shared with another tenant, and the row's ratios with it)
 * Usage: kernels [reps (default 10)] [only: run workloads whose name contains it]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* clock_gettime; sched_setaffinity for the probe */
#endif
#include <nabla.h>

#include "nb_config.h"

#include <stdlib.h>
#include <string.h>
#if NB_HAVE_OPENMP
#include <omp.h>
#endif
#if NB_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

#include "bench_util.h"
#include "fma_probe.h"

extern int nb__isa_prefer;   /* src/kernels/kernels.h: one ISA's kernels first (-1: the registry's order) */

#define BIG (16 * 1024 * 1024)    /* element-wise size */
#define ROWS 4096                 /* softmax / layer_norm */
#define COLS 1024
#define BN_N 32                   /* batch_norm: x (BN_N, BN_C, BN_HW, BN_HW), a ResNet stage's */
#define BN_C 64
#define BN_HW 28
#define BN_NUMEL ((double)BN_N * BN_C * BN_HW * BN_HW)
#define AT_B 8                    /* attention: q, k, v (AT_B, AT_H, AT_T, AT_E) */
#define AT_H 8
#define AT_T 256
#define AT_E 64
#define SDPAF (2.0 * AT_B * AT_H * AT_T * AT_T * 2 * AT_E)   /* forward: q kᵀ and P v */
#define BMM_B 32                  /* bmm: (BMM_B, BMM_N, BMM_N) @ (BMM_B, BMM_N, BMM_N) */
#define BMM_N 128
#define LIN_M 128                 /* linear: x (LIN_M, LIN_K), w (LIN_N, LIN_K), b (LIN_N) */
#define LIN_K 784
#define LIN_N 512
#define MP_N 64                   /* max_pool: x (MP_N, MP_C, MP_HW, MP_HW), 2x2 stride 2 */
#define MP_C 32
#define MP_HW 28
#define MP_NUMEL ((double)MP_N * MP_C * MP_HW * MP_HW)

/* W_ADD..W_DROPOUT: the element-wise ones (paired with memcpy); W_SOFTMAX..W_BATCH_NORM
 * and W_MM256..W_CONV3: those oneDNN is called directly on (has_direct). */
typedef enum wl_kind {
    W_ADD, W_RELU, W_EXP, W_TANH, W_SIGMOID, W_LOG, W_DROPOUT, W_SGD, W_ADAM, W_SOFTMAX, W_LOG_SOFTMAX,
    W_LAYER_NORM, W_BATCH_NORM, W_GELU, W_SUM_ROWS, W_SUM_COLS, W_MEAN_ROWS, W_MAX_ROWS, W_ARGMAX_ROWS, W_VAR_ROWS,
    W_CE, W_SDPA, W_BMM, W_LINEAR, W_MM256, W_MM1024, W_MM2048, W_CONV1, W_CONV2, W_CONV3, W_MAX_POOL, W_COUNT
} wl_kind;

typedef struct workload {
    const char *name;   /* wl= */
    nb_op op, op_bwd;   /* ops whose chosen kernels are named (op_bwd NB_OP_COUNT: none) */
    bool gflops;        /* amount is FLOPs (else bytes) */
    double amount;      /* per call */
    int reps_div;       /* reps / reps_div calls (slow workloads); negative: reps * -reps_div (quick ones) */
    bool ref_ok;        /* the ref kernel is quick enough to time */
} workload;

#define MMF(n) (2.0 * (n) * (n) * (n))
#define CONVF(n, ci, co, hw, k) (2.0 * (n) * (co) * (hw) * (hw) * (ci) * (k) * (k))
static const workload wls[W_COUNT] = {
    [W_ADD] = {"add", NB_OP_ADD, NB_OP_COUNT, false, 3.0 * 4 * BIG, 1, true},
    [W_RELU] = {"relu", NB_OP_RELU, NB_OP_COUNT, false, 2.0 * 4 * BIG, 1, true},
    [W_EXP] = {"exp", NB_OP_EXP, NB_OP_COUNT, false, 2.0 * 4 * BIG, 1, true},
    [W_TANH] = {"tanh", NB_OP_TANH, NB_OP_COUNT, false, 2.0 * 4 * BIG, 1, true},
    [W_SIGMOID] = {"sigmoid", NB_OP_SIGMOID, NB_OP_COUNT, false, 2.0 * 4 * BIG, 1, true},
    [W_LOG] = {"log", NB_OP_LOG, NB_OP_COUNT, false, 2.0 * 4 * BIG, 1, true},
    [W_DROPOUT] = {"dropout", NB_OP_DROPOUT, NB_OP_COUNT, false, 2.0 * 4 * BIG, 1, true},
    [W_SGD] = {"sgd_step", NB_OP_SGD_STEP, NB_OP_COUNT, false, 5.0 * 4 * ROWS * COLS, 1, true},
    [W_ADAM] = {"adam_step", NB_OP_ADAM_STEP, NB_OP_COUNT, false, 7.0 * 4 * ROWS * COLS, 1, true},
    [W_SOFTMAX] = {"softmax_fwd_bwd", NB_OP_SOFTMAX, NB_OP_SOFTMAX_BACKWARD, false, 5.0 * 4 * ROWS * COLS, 1, true},
    [W_LOG_SOFTMAX] = {"log_softmax_fwd_bwd", NB_OP_LOG_SOFTMAX, NB_OP_LOG_SOFTMAX_BACKWARD, false,
                       5.0 * 4 * ROWS * COLS, 1, true},
    [W_LAYER_NORM] = {"layer_norm_fwd_bwd", NB_OP_LAYER_NORM, NB_OP_LAYER_NORM_BACKWARD, false,
                      5.0 * 4 * ROWS * COLS, 1, true},
    [W_BATCH_NORM] = {"batch_norm_fwd_bwd", NB_OP_BATCH_NORM, NB_OP_BATCH_NORM_BACKWARD, false, 5.0 * 4 * BN_NUMEL, 1,
                      true},
    [W_GELU] = {"gelu_fwd_bwd", NB_OP_GELU, NB_OP_GELU_BACKWARD, false, 5.0 * 4 * ROWS * COLS, 1, true},
    [W_SUM_ROWS] = {"sum_rows", NB_OP_SUM, NB_OP_COUNT, false, 4.0 * ROWS * COLS, -4, true},
    [W_SUM_COLS] = {"sum_cols", NB_OP_SUM, NB_OP_COUNT, false, 4.0 * ROWS * COLS, -4, true},
    [W_MEAN_ROWS] = {"mean_rows", NB_OP_SUM, NB_OP_COUNT, false, 4.0 * ROWS * COLS, -4, true},
    [W_MAX_ROWS] = {"max_rows", NB_OP_AMAX, NB_OP_COUNT, false, 4.0 * ROWS * COLS, -4, true},
    [W_ARGMAX_ROWS] = {"argmax_rows", NB_OP_ARGMAX, NB_OP_COUNT, false, 4.0 * ROWS * COLS, -4, true},
    [W_VAR_ROWS] = {"var_rows", NB_OP_VAR, NB_OP_COUNT, false, 4.0 * ROWS * COLS, -4, true},
    [W_CE] = {"cross_entropy_fwd_bwd", NB_OP_CROSS_ENTROPY, NB_OP_CROSS_ENTROPY_BACKWARD, false, 2.0 * 4 * ROWS * COLS, 1,
              true},
    [W_SDPA] = {"sdpa_fwd_bwd", NB_OP_SDPA, NB_OP_SDPA_WEIGHTS, true, 3 * SDPAF, 2, false},
    [W_BMM] = {"bmm", NB_OP_MATMUL, NB_OP_COUNT, true, BMM_B * MMF(BMM_N), -4, true},
    [W_LINEAR] = {"linear_fwd_bwd", NB_OP_LINEAR, NB_OP_MATMUL, true, 3 * 2.0 * LIN_M * LIN_K * LIN_N, -2, true},
    [W_MM256] = {"matmul_256", NB_OP_MATMUL, NB_OP_COUNT, true, MMF(256), -8, true},
    [W_MM1024] = {"matmul_1024", NB_OP_MATMUL, NB_OP_COUNT, true, MMF(1024), 1, true},
    [W_MM2048] = {"matmul_2048", NB_OP_MATMUL, NB_OP_COUNT, true, MMF(2048), 2, false},
    [W_CONV1] = {"conv1_fwd_bwd", NB_OP_CONV2D, NB_OP_CONV_BWD_WEIGHT, true, 2 * CONVF(64, 1, 32, 28, 5), 1, true},
    [W_CONV2] = {"conv2_fwd_bwd", NB_OP_CONV2D, NB_OP_CONV_BWD_WEIGHT, true, 3 * CONVF(64, 32, 64, 14, 5), 2, false},
    [W_CONV3] = {"conv3x3_fwd_bwd", NB_OP_CONV2D, NB_OP_CONV_BWD_WEIGHT, true, 3 * CONVF(32, 64, 64, 28, 3), 2, false},
    [W_MAX_POOL] = {"max_pool_fwd_bwd", NB_OP_MAX_POOL2D, NB_OP_MAX_POOL2D_BWD, false, 2.5 * 4 * MP_NUMEL, -4, true},
};

/* A LeNet conv: shapes and its tensors (x, w, b, dy). */
typedef struct conv_case {
    int64_t n, ci, co, hw, k, pad;   /* batch, channels in/out, H = W, kernel, padding */
    bool need_dx;                    /* x requires grad (not for the first layer) */
    nb_tensor *x, *w, *b, *g;        /* input, weight, bias, grad of the output */
    nb_tensor *xl, *gl;              /* x and g channels-last (nb_to_channels_last) */
} conv_case;

/* run_ours's convs take the channels-last x and g (impl paired_direct_cl) */
static bool conv_cl;

static struct {
    nb_tensor *a, *b;          /* BIG floats */
    nb_tensor *pos;            /* BIG floats in [0.5, 1.5) (log) */
    nb_tensor *sx, *sg;        /* [ROWS, COLS] x (requires grad) and the output grad */
    nb_tensor *tgt;            /* [ROWS] class indices (cross entropy over COLS classes) */
    nb_tensor *lw, *lb;        /* layer_norm weight, bias (COLS) */
    nb_tensor *bx, *bg, *bw, *bb, *brm, *brv;   /* batch_norm x, grad of y, weight, bias, running stats */
    nb_tensor *aq, *ak, *av, *ag;              /* attention q, k, v (requiring grad), grad of the output */
    nb_tensor *ma[3], *mb[3];  /* matmul operands per size */
    nb_tensor *ba, *bb2;       /* bmm operands */
    nb_tensor *lx, *lw2, *lb2, *lg;   /* linear x, w, b (requiring grad), grad of the output */
    nb_tensor *px, *pg;        /* max_pool x (requiring grad), grad of the output */
    conv_case conv[3];
    nb_tensor *op[2];          /* [ROWS * COLS] parameters of the SGD and Adam steps, with a grad */
    nb_optimizer *opt[2];      /* SGD (momentum 0.9), Adam */
} in;

static const int mm_n[3] = {256, 1024, 2048};

static int zero_grads(nb_tensor *const *t, int n) {
    for (int i = 0; i < n; i++)
        if (t[i]) nb_zero_grad(t[i]);
    return 0;
}

/* One call of workload k through nabla's public API: 0 or -1. */
static int run_ours(wl_kind k) {
    nb_tensor *y = NULL;
    int rc = 0;
    switch (k) {
    case W_ADD: y = nb_add(in.a, in.b); break;
    case W_RELU: y = nb_relu(in.a); break;
    case W_EXP: y = nb_exp(in.a); break;
    case W_TANH: y = nb_tanh(in.a); break;
    case W_SIGMOID: y = nb_sigmoid(in.a); break;
    case W_LOG: y = nb_log(in.pos); break;
    case W_DROPOUT: y = nb_dropout(in.a, 0.5, true, 7); break;
    case W_SGD:
    case W_ADAM: return nb_optimizer_step(in.opt[k - W_SGD]) ? -1 : 0;
    case W_SOFTMAX:
        nb_zero_grad(in.sx);
        y = nb_softmax(in.sx, 1);
        rc = y ? nb_backward(y, in.sg) : -1;
        break;
    case W_LOG_SOFTMAX:
        nb_zero_grad(in.sx);
        y = nb_log_softmax(in.sx, 1);
        rc = y ? nb_backward(y, in.sg) : -1;
        break;
    case W_LAYER_NORM:
        zero_grads((nb_tensor *[]){in.sx, in.lw, in.lb}, 3);
        y = nb_layer_norm(in.sx, NB_SHAPE(COLS), in.lw, in.lb, NULL);
        rc = y ? nb_backward(y, in.sg) : -1;
        break;
    case W_GELU:
        nb_zero_grad(in.sx);
        y = nb_gelu(in.sx, false);
        rc = y ? nb_backward(y, in.sg) : -1;
        break;
    case W_SUM_ROWS:
    case W_SUM_COLS: y = nb_sum(nb_detach(in.sx), (int[]){k == W_SUM_ROWS ? 1 : 0}, 1, false); break;
    case W_MEAN_ROWS: y = nb_mean(nb_detach(in.sx), (int[]){1}, 1, false); break;
    case W_MAX_ROWS: y = nb_max(nb_detach(in.sx), (int[]){1}, 1, false); break;
    case W_ARGMAX_ROWS: y = nb_argmax(nb_detach(in.sx), 1, false); break;
    case W_VAR_ROWS: y = nb_var(nb_detach(in.sx), (int[]){1}, 1, 1.0, false); break;
    case W_CE:
        nb_zero_grad(in.sx);
        y = nb_cross_entropy(in.sx, in.tgt);
        rc = y ? nb_backward(y, NULL) : -1;
        break;
    case W_BATCH_NORM:
        zero_grads((nb_tensor *[]){in.bx, in.bw, in.bb}, 3);
        y = nb_batch_norm(in.bx, in.brm, in.brv, in.bw, in.bb, &(nb_batch_norm_opts){.training = true});
        rc = y ? nb_backward(y, in.bg) : -1;
        break;
    case W_SDPA:
        zero_grads((nb_tensor *[]){in.aq, in.ak, in.av}, 3);
        y = nb_scaled_dot_product_attention(in.aq, in.ak, in.av, NULL, NULL);
        rc = y ? nb_backward(y, in.ag) : -1;
        break;
    case W_MM256:
    case W_MM1024:
    case W_MM2048: y = nb_matmul(in.ma[k - W_MM256], in.mb[k - W_MM256]); break;
    case W_BMM: y = nb_matmul(in.ba, in.bb2); break;
    case W_LINEAR:
        zero_grads((nb_tensor *[]){in.lx, in.lw2, in.lb2}, 3);
        y = nb_linear(in.lx, in.lw2, in.lb2);
        rc = y ? nb_backward(y, in.lg) : -1;
        break;
    case W_MAX_POOL:
        nb_zero_grad(in.px);
        y = nb_max_pool2d(in.px, 2, 2, NULL);
        rc = y ? nb_backward(y, in.pg) : -1;
        break;
    case W_CONV1:
    case W_CONV2:
    case W_CONV3: {
        conv_case *c = &in.conv[k - W_CONV1];
        nb_tensor *x = conv_cl ? c->xl : c->x;
        zero_grads((nb_tensor *[]){x, c->w, c->b}, 3);
        y = nb_conv2d(x, c->w, c->b, &(nb_conv_opts){.padding = {c->pad, c->pad}});
        rc = y ? nb_backward(y, conv_cl ? c->gl : c->g) : -1;
        break;
    }
    default: break;
    }
    return y && !rc ? 0 : -1;
}

/* Median ms of reps calls of f(k) after one warm-up, each in its own scope
 * (results released, so their memory goes back to the allocator's cache);
 * -1 on error. */
static double time_calls(int (*f)(wl_kind), wl_kind k, int reps) {
    double *t = malloc(sizeof *t * (size_t)reps);
    if (!t) return -1;
    for (int r = -1; r < reps; r++) {
        nb_scope_begin();
        double t0 = bench_now_ms();
        int rc = f(k);
        double dt = bench_now_ms() - t0;
        nb_scope_end();
        if (rc) {
            fprintf(stderr, "kernels: %s: %s\n", wls[k].name, nb_last_error());
            free(t);
            return -1;
        }
        if (r >= 0) t[r] = dt;
    }
    bench_sort(t, reps);
    double m = t[reps / 2];
    free(t);
    return m;
}

static void report(wl_kind k, int threads, const char *impl, const char *kernel, double ms) {
    double rate = wls[k].amount / (ms * 1e-3) * 1e-9;
    printf("bench wl=%s threads=%d impl=%s kernel=%s ms=%.3f rate=%.2f unit=%s\n", wls[k].name, threads, impl, kernel,
           ms, rate, wls[k].gflops ? "GFLOP/s" : "GB/s");
    fflush(stdout);
}

/* ---- the copy bandwidth: memcpy of BIG floats split over nt threads ---- */
static void copy_once(float *dst, const float *src, int nt) {
#if NB_HAVE_OPENMP
#pragma omp parallel num_threads(nt)
    {
        int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        int64_t lo = BIG * t / T, hi = BIG * (t + 1) / T;
        memcpy(dst + lo, src + lo, sizeof *dst * (size_t)(hi - lo));
    }
#else
    (void)nt;
    memcpy(dst, src, sizeof *dst * BIG);
#endif
}

/* Median ms of f(k) and of g(k), called in alternation (f, g, f, g, ...)
 * after one warm-up pair, each call in its own scope: both see the same
 * machine, so their ratio is robust to load that comes and goes. */
static int time_pair(int (*f)(wl_kind), int (*g)(wl_kind), wl_kind k, int reps, double *ms_f, double *ms_g) {
    double *t = malloc(sizeof *t * 2 * (size_t)reps);
    if (!t) return -1;
    for (int r = -1; r < reps; r++) {
        double dt[2];
        for (int side = 0; side < 2; side++) {
            nb_scope_begin();
            double t0 = bench_now_ms();
            int rc = (side ? g : f)(k);
            dt[side] = bench_now_ms() - t0;
            nb_scope_end();
            if (rc) {
                fprintf(stderr, "kernels: %s: %s\n", wls[k].name, nb_last_error());
                free(t);
                return -1;
            }
        }
        if (r >= 0) t[r] = dt[0], t[reps + r] = dt[1];
    }
    bench_sort(t, reps);
    bench_sort(t + reps, reps);
    *ms_f = t[reps / 2];
    *ms_g = t[reps + reps / 2];
    free(t);
    return 0;
}

static struct {
    float *dst;
    int nt;
} copy_cur;   /* what run_copy copies into, on how many threads */

static int run_copy(wl_kind k) {
    (void)k;
    copy_once(copy_cur.dst, nb_data(in.a), copy_cur.nt);
    return 0;
}

/* ---- oneDNN called directly ---- */
#if NB_HAVE_ONEDNN
typedef struct dd_prim {
    dnnl_primitive_t p;          /* owned */
    int nargs;                   /* used entries of args */
    dnnl_exec_arg_t args[9];     /* memories (owned by dd_work) */
} dd_prim;

typedef struct dd_work {
    dd_prim prim[3];             /* run in order: fwd, [bwd data], bwd weights */
    int nprim;                   /* used entries of prim */
    dnnl_memory_t mem[16];       /* every memory made, destroyed with the work */
    int nmem;                    /* used entries of mem */
} dd_work;

static dnnl_engine_t dd_engine;
static dnnl_stream_t dd_stream;

#define DD(call)                                                            \
    do {                                                                    \
        dnnl_status_t st_ = (call);                                         \
        if (st_ != dnnl_success) {                                          \
            fprintf(stderr, "kernels: %s failed (%d)\n", #call, (int)st_);  \
            return -1;                                                      \
        }                                                                   \
    } while (0)

static void dd_free(dd_work *w) {
    for (int i = 0; i < w->nprim; i++) dnnl_primitive_destroy(w->prim[i].p);
    for (int i = 0; i < w->nmem; i++) dnnl_memory_destroy(w->mem[i]);
    memset(w, 0, sizeof *w);
}

/* A memory of md for the primitive; with t, filled from t's data (plain
 * layout `tag` of dims): wrapped when md is that layout, else reordered
 * once. 0 or -1. */
static int dd_memory(dd_work *w, const dnnl_memory_desc_t *md, const nb_tensor *t, int nd, const dnnl_dim_t *dims,
                     dnnl_format_tag_t tag, dnnl_memory_t *out) {
    dnnl_memory_desc_t user;
    if (t) DD(dnnl_memory_desc_init_by_tag(&user, nd, dims, dnnl_f32, tag));
    if (t && dnnl_memory_desc_equal(&user, md)) {
        DD(dnnl_memory_create(out, md, dd_engine, nb_data(t)));
        w->mem[w->nmem++] = *out;
        return 0;
    }
    DD(dnnl_memory_create(out, md, dd_engine, DNNL_MEMORY_ALLOCATE));
    w->mem[w->nmem++] = *out;
    if (!t) return 0;
    dnnl_memory_t um;
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t rp;
    DD(dnnl_memory_create(&um, &user, dd_engine, nb_data(t)));
    DD(dnnl_reorder_primitive_desc_create(&rpd, &user, dd_engine, md, dd_engine, NULL));
    DD(dnnl_primitive_create(&rp, rpd));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, *out}};
    DD(dnnl_primitive_execute(rp, dd_stream, 2, args));
    DD(dnnl_stream_wait(dd_stream));
    dnnl_primitive_destroy(rp);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(um);
    return 0;
}

/* Operand roles, in forward terms: their tensors (the data inputs are filled
 * from) in plain layout, sizes and plain format tags. */
enum { R_SRC, R_WEI, R_BIA, R_DST, R_COUNT };
typedef struct dd_roles {
    nb_tensor *t[R_COUNT];              /* x, w, b, dy (matmul: a, b, -, -) */
    int nd[R_COUNT];                    /* dims */
    dnnl_dim_t dims[R_COUNT][4];        /* sizes */
    dnnl_format_tag_t tag[R_COUNT];     /* plain layouts of the tensors */
} dd_roles;

/* Adds the primitive of pd with nargs arguments: arg[i] plays role[i]; the
 * inputs (SRC, WEIGHTS, BIAS, DIFF_DST) are filled from that role's tensor,
 * the outputs allocated. 0 or -1. */
static int dd_add(dd_work *w, dnnl_primitive_desc_t pd, int nargs, const int *arg, const int *role,
                  const dd_roles *r) {
    dd_prim *p = &w->prim[w->nprim];
    for (int i = 0; i < nargs; i++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg[i]);
        if (!md) return -1;
        bool input = arg[i] == DNNL_ARG_SRC || arg[i] == DNNL_ARG_WEIGHTS || arg[i] == DNNL_ARG_BIAS ||
                     arg[i] == DNNL_ARG_DIFF_DST;
        int ro = role[i];
        p->args[i].arg = arg[i];
        if (dd_memory(w, md, input ? r->t[ro] : NULL, r->nd[ro], r->dims[ro], r->tag[ro], &p->args[i].memory))
            return -1;
    }
    p->nargs = nargs;
    DD(dnnl_primitive_create(&p->p, pd));
    w->nprim++;
    return 0;
}

static int dd_matmul(dd_work *w, int n, nb_tensor *a, nb_tensor *b) {
    dd_roles r = {.t = {a, b, NULL, NULL}, .nd = {2, 2, 2, 2},
                  .dims = {{n, n}, {n, n}, {n, n}, {n, n}}, .tag = {dnnl_ab, dnnl_ab, dnnl_ab, dnnl_ab}};
    dnnl_memory_desc_t md[3];
    for (int i = 0; i < 3; i++) DD(dnnl_memory_desc_init_by_tag(&md[i], 2, r.dims[i], dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t d;
    dnnl_primitive_desc_t pd;
    DD(dnnl_matmul_desc_init(&d, &md[0], &md[1], NULL, &md[2]));
    DD(dnnl_primitive_desc_create(&pd, &d, NULL, dd_engine, NULL));
    int rc = dd_add(w, pd, 3, (const int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST},
                    (const int[]){R_SRC, R_WEI, R_DST}, &r);
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

/* fwd, bwd data (when c->need_dx) and bwd weights+bias of conv c, in
 * oneDNN's chosen layouts (blocked) or plain NCHW/OIHW. */
static int dd_conv(dd_work *w, const conv_case *c, bool blocked) {
    int64_t o = c->hw + 2 * c->pad - c->k + 1;
    dd_roles r = {.t = {c->x, c->w, c->b, c->g}, .nd = {4, 4, 1, 4},
                  .dims = {{c->n, c->ci, c->hw, c->hw}, {c->co, c->ci, c->k, c->k}, {c->co}, {c->n, c->co, o, o}},
                  .tag = {dnnl_nchw, dnnl_oihw, dnnl_x, dnnl_nchw}};
    dnnl_memory_desc_t md[R_COUNT];
    for (int i = 0; i < R_COUNT; i++)
        DD(dnnl_memory_desc_init_by_tag(&md[i], r.nd[i], r.dims[i], dnnl_f32,
                                        blocked && i != R_BIA ? dnnl_format_tag_any : r.tag[i]));
    dnnl_dims_t stride = {1, 1}, pad = {c->pad, c->pad};
    dnnl_convolution_desc_t fd, bd, wd;
    dnnl_primitive_desc_t fpd, bpd = NULL, wpd;
    DD(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &md[R_SRC],
                                          &md[R_WEI], &md[R_BIA], &md[R_DST], stride, pad, pad));
    DD(dnnl_primitive_desc_create(&fpd, &fd, NULL, dd_engine, NULL));
    if (c->need_dx) {
        DD(dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &md[R_SRC], &md[R_WEI],
                                                    &md[R_DST], stride, pad, pad));
        DD(dnnl_primitive_desc_create(&bpd, &bd, NULL, dd_engine, fpd));
    }
    DD(dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &md[R_SRC], &md[R_WEI],
                                                   &md[R_BIA], &md[R_DST], stride, pad, pad));
    DD(dnnl_primitive_desc_create(&wpd, &wd, NULL, dd_engine, fpd));
    int rc = dd_add(w, fpd, 4, (const int[]){DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST},
                    (const int[]){R_SRC, R_WEI, R_BIA, R_DST}, &r);
    if (!rc && bpd)
        rc = dd_add(w, bpd, 3, (const int[]){DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC},
                    (const int[]){R_DST, R_WEI, R_SRC}, &r);
    if (!rc)
        rc = dd_add(w, wpd, 4,
                    (const int[]){DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS},
                    (const int[]){R_SRC, R_DST, R_WEI, R_BIA}, &r);
    dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    dnnl_primitive_desc_destroy(wpd);
    return rc;
}

/* ---- softmax, log_softmax, layer_norm, batch_norm: plain memory ---- */

#define DDG(call)                                                           \
    do {                                                                    \
        dnnl_status_t st_ = (call);                                         \
        if (st_ != dnnl_success) {                                          \
            fprintf(stderr, "kernels: %s failed (%d)\n", #call, (int)st_);  \
            rc = -1;                                                        \
            goto done;                                                      \
        }                                                                   \
    } while (0)

/* A memory of md (plain): over t's data (an input), else allocated. 0 or -1. */
static int dd_plain(dd_work *w, const dnnl_memory_desc_t *md, const nb_tensor *t, dnnl_memory_t *out) {
    DD(dnnl_memory_create(out, md, dd_engine, t ? nb_data(t) : DNNL_MEMORY_ALLOCATE));
    w->mem[w->nmem++] = *out;
    return 0;
}

/* Adds the primitive of pd with arg[i] bound to m[slot[i]]: a memory made
 * before (in the layout pd asks for: so fwd and bwd share y, mean and
 * variance), or, where NULL, one allocated here in that layout and kept in
 * m. 0 or -1. */
static int dd_bind(dd_work *w, const_dnnl_primitive_desc_t pd, int nargs, const int *arg, const int *slot,
                   dnnl_memory_t *m) {
    dd_prim *p = &w->prim[w->nprim];
    for (int i = 0; i < nargs; i++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg[i]);
        const dnnl_memory_desc_t *have = NULL;
        if (!md || md->ndims == 0) {
            fprintf(stderr, "kernels: oneDNN primitive takes no argument %d\n", arg[i]);
            return -1;
        }
        if (!m[slot[i]]) {
            if (dd_plain(w, md, NULL, &m[slot[i]])) return -1;
        } else {
            DD(dnnl_memory_get_memory_desc(m[slot[i]], &have));
            if (!dnnl_memory_desc_equal(have, md)) {
                fprintf(stderr, "kernels: oneDNN wants another layout for argument %d\n", arg[i]);
                return -1;
            }
        }
        p->args[i] = (dnnl_exec_arg_t){arg[i], m[slot[i]]};
    }
    p->nargs = nargs;
    DD(dnnl_primitive_create(&p->p, pd));
    w->nprim++;
    return 0;
}

/* "prefix:fwd_impl/bwd_impl" (dnnl_query_impl_info_str) into name, spaces as '_'. */
static void dd_name(char *name, size_t cap, const char *prefix, const_dnnl_primitive_desc_t fpd,
                    const_dnnl_primitive_desc_t bpd) {
    const char *f = NULL, *b = NULL;
    if (dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &f) != dnnl_success || !f) f = "?";
    if (dnnl_primitive_desc_query(bpd, dnnl_query_impl_info_str, 0, &b) != dnnl_success || !b) b = "?";
    snprintf(name, cap, "%s:%s/%s", prefix, f, b);
    for (char *c = name; *c; c++)
        if (*c == ' ') *c = '_';
}

/* softmax or log_softmax over dim 1 of [ROWS, COLS]: fwd x -> y, bwd (dy, y) -> dx. */
static int dd_softmax(dd_work *w, bool log, char *name, size_t cap) {
    enum { X, Y, DY, DX, NM };
    dnnl_memory_t m[NM] = {NULL};
    dnnl_memory_desc_t md;
    dnnl_softmax_desc_t fd, bd;   /* dnnl_logsoftmax_desc_t is the same type */
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    int rc = 0;
    DDG(dnnl_memory_desc_init_by_tag(&md, 2, (dnnl_dims_t){ROWS, COLS}, dnnl_f32, dnnl_ab));
    if (log) {
        DDG(dnnl_logsoftmax_forward_desc_init(&fd, dnnl_forward_training, &md, 1));
        DDG(dnnl_logsoftmax_backward_desc_init(&bd, &md, &md, 1));
    } else {
        DDG(dnnl_softmax_forward_desc_init(&fd, dnnl_forward_training, &md, 1));
        DDG(dnnl_softmax_backward_desc_init(&bd, &md, &md, 1));
    }
    DDG(dnnl_primitive_desc_create(&fpd, &fd, NULL, dd_engine, NULL));
    DDG(dnnl_primitive_desc_create(&bpd, &bd, NULL, dd_engine, fpd));
    rc = dd_plain(w, &md, in.sx, &m[X]) || dd_plain(w, &md, in.sg, &m[DY]) ||
         dd_bind(w, fpd, 2, (const int[]){DNNL_ARG_SRC, DNNL_ARG_DST}, (const int[]){X, Y}, m) ||
         dd_bind(w, bpd, 3, (const int[]){DNNL_ARG_DIFF_DST, DNNL_ARG_DST, DNNL_ARG_DIFF_SRC},
                 (const int[]){DY, Y, DX}, m) ? -1 : 0;
    dd_name(name, cap, log ? "dnnl_logsoftmax" : "dnnl_softmax", fpd, bpd);
done:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return rc;
}

/* Layer normalization over the last dim of [ROWS, COLS] (ln true) or batch
 * normalization, training, of (BN_N, BN_C, BN_HW, BN_HW) NCHW (ln false),
 * eps 1e-5 (nabla's default), with scale and shift: fwd x -> y, mean,
 * variance; bwd (x, dy, mean, variance, scale) -> dx, dscale, dshift (shift
 * bound too: oneDNN 2.6's layer norm bwd fails to execute without it). */
static int dd_norm(dd_work *w, bool ln, char *name, size_t cap) {
    enum { X, DY, SC, SH, Y, MEAN, VAR, DX, DSC, DSH, NM };
    const float eps = 1e-5f;
    const unsigned flags = dnnl_use_scale | dnnl_use_shift;
    dnnl_memory_t m[NM] = {NULL};
    dnnl_memory_desc_t md, cmd;
    dnnl_layer_normalization_desc_t lfd, lbd;
    dnnl_batch_normalization_desc_t bfd, bbd;
    dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
    int rc = 0;
    if (ln) {
        DDG(dnnl_memory_desc_init_by_tag(&md, 2, (dnnl_dims_t){ROWS, COLS}, dnnl_f32, dnnl_ab));
        DDG(dnnl_memory_desc_init_by_tag(&cmd, 1, (dnnl_dims_t){COLS}, dnnl_f32, dnnl_a));
        DDG(dnnl_layer_normalization_forward_desc_init(&lfd, dnnl_forward_training, &md, NULL, eps, flags));
        DDG(dnnl_layer_normalization_backward_desc_init(&lbd, dnnl_backward, &md, &md, NULL, eps, flags));
        DDG(dnnl_primitive_desc_create(&fpd, &lfd, NULL, dd_engine, NULL));
        DDG(dnnl_primitive_desc_create(&bpd, &lbd, NULL, dd_engine, fpd));
    } else {
        DDG(dnnl_memory_desc_init_by_tag(&md, 4, (dnnl_dims_t){BN_N, BN_C, BN_HW, BN_HW}, dnnl_f32, dnnl_nchw));
        DDG(dnnl_memory_desc_init_by_tag(&cmd, 1, (dnnl_dims_t){BN_C}, dnnl_f32, dnnl_a));
        DDG(dnnl_batch_normalization_forward_desc_init(&bfd, dnnl_forward_training, &md, eps, flags));
        DDG(dnnl_batch_normalization_backward_desc_init(&bbd, dnnl_backward, &md, &md, eps, flags));
        DDG(dnnl_primitive_desc_create(&fpd, &bfd, NULL, dd_engine, NULL));
        DDG(dnnl_primitive_desc_create(&bpd, &bbd, NULL, dd_engine, fpd));
    }
    rc = dd_plain(w, &md, ln ? in.sx : in.bx, &m[X]) || dd_plain(w, &md, ln ? in.sg : in.bg, &m[DY]) ||
         dd_plain(w, &cmd, ln ? in.lw : in.bw, &m[SC]) || dd_plain(w, &cmd, ln ? in.lb : in.bb, &m[SH]) ||
         dd_bind(w, fpd, 6,
                 (const int[]){DNNL_ARG_SRC, DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_DST, DNNL_ARG_MEAN,
                               DNNL_ARG_VARIANCE},
                 (const int[]){X, SC, SH, Y, MEAN, VAR}, m) ||
         dd_bind(w, bpd, 9,
                 (const int[]){DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE, DNNL_ARG_SCALE,
                               DNNL_ARG_SHIFT, DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT},
                 (const int[]){X, DY, MEAN, VAR, SC, SH, DX, DSC, DSH}, m) ? -1 : 0;
    dd_name(name, cap, ln ? "dnnl_lnorm" : "dnnl_bnorm", fpd, bpd);
done:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (bpd) dnnl_primitive_desc_destroy(bpd);
    return rc;
}

static dd_work dd_cur;   /* the work time_calls runs through run_direct */

static int run_direct(wl_kind k) {
    (void)k;
    for (int i = 0; i < dd_cur.nprim; i++)
        DD(dnnl_primitive_execute(dd_cur.prim[i].p, dd_stream, dd_cur.prim[i].nargs, dd_cur.prim[i].args));
    DD(dnnl_stream_wait(dd_stream));
    return 0;
}

/* Makes dd_cur for workload k (conv: in oneDNN's layouts or plain) and names
 * it in name. 0 or -1. */
static int dd_build(wl_kind k, bool blocked, char *name, size_t cap) {
    switch (k) {
    case W_SOFTMAX:
    case W_LOG_SOFTMAX: return dd_softmax(&dd_cur, k == W_LOG_SOFTMAX, name, cap);
    case W_LAYER_NORM:
    case W_BATCH_NORM: return dd_norm(&dd_cur, k == W_LAYER_NORM, name, cap);
    case W_CONV1:
    case W_CONV2:
    case W_CONV3:
        snprintf(name, cap, "%s", blocked ? "dnnl_conv_any" : "dnnl_conv_nchw");
        return dd_conv(&dd_cur, &in.conv[k - W_CONV1], blocked);
    default:
        snprintf(name, cap, "dnnl_matmul");
        return dd_matmul(&dd_cur, mm_n[k - W_MM256], in.ma[k - W_MM256], in.mb[k - W_MM256]);
    }
}

/* Times oneDNN directly on workload k (has_direct); prints its lines. A
 * primitive oneDNN cannot make skips its line (said on stderr). */
static int bench_direct(wl_kind k, int threads, int reps) {
    bool conv = k >= W_CONV1 && k <= W_CONV3;
    for (int blocked = 1; blocked >= (conv ? 0 : 1); blocked--) {
        char name[192];
        if (dd_build(k, blocked, name, sizeof name)) {
            fprintf(stderr, "kernels: %s: oneDNN %s skipped (its primitives could not be made)\n", wls[k].name,
                    blocked ? "direct" : "plain");
            dd_free(&dd_cur);
            continue;
        }
        double ms = -1, mo = -1;
        if (blocked) {   /* ours and oneDNN in alternation: the ratio the table shows */
            if (!time_pair(run_ours, run_direct, k, reps, &mo, &ms))
                report(k, threads, "paired_direct", "ours", mo);
            /* and again with ours on channels-last x and dy (conv only; not conv1, whose
               one-channel x is NCHW and channels-last at once, so its y is NCHW) */
            double mlo = -1, mld = -1;
            conv_cl = true;
            if (conv && in.conv[k - W_CONV1].ci > 1 && ms >= 0 &&
                !time_pair(run_ours, run_direct, k, reps, &mlo, &mld)) {
                report(k, threads, "paired_direct_cl", "ours_channels_last", mlo);
                report(k, threads, "onednn_direct_cl", "dnnl_conv_any", mld);
            }
            conv_cl = false;
        } else {
            ms = time_calls(run_direct, k, reps);
        }
        dd_free(&dd_cur);
        if (ms < 0) return -1;
        report(k, threads, blocked ? "onednn_direct" : "onednn_plain", name, ms);
    }
    return 0;
}

/* Workloads oneDNN is called directly on (bench_direct). */
static bool has_direct(wl_kind k) {
    return (k >= W_SOFTMAX && k <= W_BATCH_NORM) || (k >= W_MM256 && k <= W_CONV3);
}
#endif

/* ---- inputs ---- */

static nb_tensor *grad_leaf(nb_tensor *t) {
    nb_set_requires_grad(t, true);
    return t;
}

static int make_inputs(void) {
    in.a = nb_randn(NB_SHAPE(BIG), NB_F32, 1);
    in.b = nb_randn(NB_SHAPE(BIG), NB_F32, 2);
    in.sx = grad_leaf(nb_randn(NB_SHAPE(ROWS, COLS), NB_F32, 3));
    in.sg = nb_randn(NB_SHAPE(ROWS, COLS), NB_F32, 4);
    in.lw = grad_leaf(nb_randn(NB_SHAPE(COLS), NB_F32, 5));
    in.lb = grad_leaf(nb_randn(NB_SHAPE(COLS), NB_F32, 6));
    int64_t *t = malloc(sizeof *t * ROWS);
    for (int64_t i = 0; t && i < ROWS; i++) t[i] = i * 7919 % COLS;
    in.tgt = t ? nb_from_data(NB_SHAPE(ROWS), NB_I64, t) : NULL;
    free(t);
    in.pos = nb_add_scalar(nb_rand(NB_SHAPE(BIG), NB_F32, 15), 0.5);
    bool ok = in.a && in.b && in.pos && in.sx && in.sg && in.lw && in.lb && in.tgt;
    in.bx = grad_leaf(nb_randn(NB_SHAPE(BN_N, BN_C, BN_HW, BN_HW), NB_F32, 7));
    in.bg = nb_randn(NB_SHAPE(BN_N, BN_C, BN_HW, BN_HW), NB_F32, 8);
    in.bw = grad_leaf(nb_randn(NB_SHAPE(BN_C), NB_F32, 9));
    in.bb = grad_leaf(nb_zeros(NB_SHAPE(BN_C), NB_F32));
    in.brm = nb_zeros(NB_SHAPE(BN_C), NB_F32);
    in.brv = nb_ones(NB_SHAPE(BN_C), NB_F32);
    ok = ok && in.bx && in.bg && in.bw && in.bb && in.brm && in.brv;
    in.aq = grad_leaf(nb_randn(NB_SHAPE(AT_B, AT_H, AT_T, AT_E), NB_F32, 11));
    in.ak = grad_leaf(nb_randn(NB_SHAPE(AT_B, AT_H, AT_T, AT_E), NB_F32, 12));
    in.av = grad_leaf(nb_randn(NB_SHAPE(AT_B, AT_H, AT_T, AT_E), NB_F32, 13));
    in.ag = nb_randn(NB_SHAPE(AT_B, AT_H, AT_T, AT_E), NB_F32, 14);
    ok = ok && in.aq && in.ak && in.av && in.ag;
    for (int i = 0; i < 3; i++) {
        in.ma[i] = nb_randn(NB_SHAPE(mm_n[i], mm_n[i]), NB_F32, 10 + (uint64_t)i);
        in.mb[i] = nb_randn(NB_SHAPE(mm_n[i], mm_n[i]), NB_F32, 20 + (uint64_t)i);
        ok = ok && in.ma[i] && in.mb[i];
    }
    in.ba = nb_randn(NB_SHAPE(BMM_B, BMM_N, BMM_N), NB_F32, 16);
    in.bb2 = nb_randn(NB_SHAPE(BMM_B, BMM_N, BMM_N), NB_F32, 17);
    in.lx = grad_leaf(nb_randn(NB_SHAPE(LIN_M, LIN_K), NB_F32, 18));
    in.lw2 = grad_leaf(nb_mul_scalar(nb_randn(NB_SHAPE(LIN_N, LIN_K), NB_F32, 19), 0.05));
    in.lb2 = grad_leaf(nb_randn(NB_SHAPE(LIN_N), NB_F32, 24));
    in.lg = nb_randn(NB_SHAPE(LIN_M, LIN_N), NB_F32, 25);
    in.px = grad_leaf(nb_randn(NB_SHAPE(MP_N, MP_C, MP_HW, MP_HW), NB_F32, 26));
    in.pg = nb_randn(NB_SHAPE(MP_N, MP_C, MP_HW / 2, MP_HW / 2), NB_F32, 27);
    ok = ok && in.ba && in.bb2 && in.lx && in.lw2 && in.lb2 && in.lg && in.px && in.pg;
    const conv_case shapes[3] = {{64, 1, 32, 28, 5, 2, false, NULL, NULL, NULL, NULL, NULL, NULL},
                                 {64, 32, 64, 14, 5, 2, true, NULL, NULL, NULL, NULL, NULL, NULL},
                                 {32, 64, 64, 28, 3, 1, true, NULL, NULL, NULL, NULL, NULL, NULL}};
    for (int i = 0; i < 3; i++) {
        conv_case *c = &in.conv[i];
        *c = shapes[i];
        c->x = nb_randn(NB_SHAPE(c->n, c->ci, c->hw, c->hw), NB_F32, 30 + (uint64_t)i);
        if (c->x && c->need_dx) grad_leaf(c->x);
        c->w = grad_leaf(nb_mul_scalar(nb_randn(NB_SHAPE(c->co, c->ci, c->k, c->k), NB_F32, 40 + (uint64_t)i), 0.1));
        c->b = grad_leaf(nb_randn(NB_SHAPE(c->co), NB_F32, 50 + (uint64_t)i));
        c->g = nb_randn(NB_SHAPE(c->n, c->co, c->hw + 2 * c->pad - c->k + 1, c->hw + 2 * c->pad - c->k + 1), NB_F32,
                        60 + (uint64_t)i);
        c->xl = c->x ? nb_detach(nb_to_channels_last(c->x)) : NULL;
        if (c->xl && c->need_dx) grad_leaf(c->xl);
        c->gl = c->g ? nb_to_channels_last(c->g) : NULL;
        ok = ok && c->x && c->w && c->b && c->g && c->xl && c->gl;
    }
    nb_tensor *pg = nb_randn(NB_SHAPE(ROWS * COLS), NB_F32, 70);
    for (int i = 0; ok && i < 2; i++) {
        in.op[i] = grad_leaf(nb_randn(NB_SHAPE(ROWS * COLS), NB_F32, 71 + (uint64_t)i));
        nb_tensor *y = nb_mul_scalar(in.op[i], 1.0);   /* op[i].grad = pg */
        ok = y && pg && !nb_backward(y, pg);
        in.opt[i] = !ok ? NULL : i ? nb_adam(&in.op[i], 1, &(nb_adam_opts){.lr = 1e-3})
                                   : nb_sgd(&in.op[i], 1, &(nb_sgd_opts){.lr = 1e-3, .momentum = 0.9});
        ok = ok && in.opt[i];
    }
    if (!ok) fprintf(stderr, "kernels: inputs: %s\n", nb_last_error());
    return ok ? 0 : -1;
}

/* The kernel(s) that serve workload k at the current cap, "fwd/bwd": one
 * call under the profiler, which names the kernel that ran (a kernel can
 * decline a shape, so the registry's first choice need not be it); the
 * registry's first choice where the profiler has no row (ref: one kernel). */
static int run_ours(wl_kind k);
static const char *served(wl_kind k, bool profile, char *buf, size_t cap) {
    const char *f = nb_kernel_chosen(wls[k].op, NB_F32);
    const char *b = wls[k].op_bwd != NB_OP_COUNT ? nb_kernel_chosen(wls[k].op_bwd, NB_F32) : NULL;
    nb_profiler_stat sf = {0}, sb = {0};
    if (profile && !nb_profiler_start(&(nb_profiler_opts){0})) {
        nb_scope_begin();
        int rc = run_ours(k);
        nb_scope_end();
        nb_profiler_stop();
        if (!rc && !nb_profiler_stats(nb_op_name(wls[k].op), &sf) && sf.kernel) f = sf.kernel;
        if (!rc && b && !nb_profiler_stats(nb_op_name(wls[k].op_bwd), &sb) && sb.kernel) b = sb.kernel;
        /* a conv's weight and bias gradients fused into one kernel (conv_bwd_weight_bias) */
        else if (!rc && b && wls[k].op_bwd == NB_OP_CONV_BWD_WEIGHT &&
                 !nb_profiler_stats(nb_op_name(NB_OP_CONV_BWD_WEIGHT_BIAS), &sb) && sb.kernel)
            b = sb.kernel;
    }
    snprintf(buf, cap, "%s%s%s", f ? f : "none", b ? "/" : "", b ? b : "");
    return buf;
}

static int set_runtime(int threads, const char *isa) {
    if (nb_init(&(nb_init_opts){.num_threads = threads, .isa = isa, .abort_on_error = -1})) {
        fprintf(stderr, "kernels: nb_init: %s\n", nb_last_error());
        return -1;
    }
    return 0;
}

static float probe_sink;   /* the probe loops' results, kept live */

int main(int argc, char **argv) {
    int reps = bench_arg_pos(argc, argv, 1, 10);
    const char *only = argc > 2 ? argv[2] : "";
    if (nb_init(NULL)) return 1;
    int all = nb_num_threads();
    nb_isa best = nb_isa_active();
    char brand[64];
    snprintf(brand, sizeof brand, "%s", nb_cpu()->brand);
    for (char *p = brand; *p; p++)
        if (*p == ' ') *p = '_';
    printf("info cpu=%s threads=%d best_isa=%s onednn=%d\n", brand, all, nb_isa_name(best), NB_HAVE_ONEDNN);
#if NB_HAVE_ONEDNN
    if (dnnl_engine_create(&dd_engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&dd_stream, dd_engine, dnnl_stream_default_flags) != dnnl_success)
        return 1;
#endif
    nb_scope_begin();
    int rc = make_inputs();
    float *dst = malloc(sizeof *dst * BIG);
    if (dst) memset(dst, 0, sizeof *dst * BIG);
    if (!dst) rc = -1;
    const int threads[2] = {1, all};
    for (int ti = 0; !rc && ti < (all > 1 ? 2 : 1); ti++) {
        int nt = threads[ti];
        for (int k = 0; !rc && k < W_COUNT; k++) {
            if (*only && !strstr(wls[k].name, only)) continue;
            int d = wls[k].reps_div, r = d < 0 ? reps * -d : reps / d > 0 ? reps / d : 1;
            for (int isa = NB_ISA_REF; !rc && isa <= (int)best; isa++) {
                if (isa == NB_ISA_REF && !wls[k].ref_ok) continue;
                if ((rc = set_runtime(nt, nb_isa_name((nb_isa)isa)))) break;
                char name[96];
                served((wl_kind)k, isa != NB_ISA_REF, name, sizeof name);
                double ms = time_calls(run_ours, (wl_kind)k, isa == NB_ISA_REF ? (r + 4) / 5 : r);
                if (ms < 0) rc = -1;
                else report((wl_kind)k, nt, nb_isa_name((nb_isa)isa), name, ms);
                /* avx512k: the AVX-512 kernels first even where the registry
                 * ranks them below AVX2 (timed only when that changes the kernel) */
                if (!rc && isa == NB_ISA_AVX512) {
                    char forced[96];
                    nb__isa_prefer = NB_ISA_AVX512;
                    served((wl_kind)k, true, forced, sizeof forced);
                    double mf = strcmp(forced, name) ? time_calls(run_ours, (wl_kind)k, r) : ms;
                    nb__isa_prefer = -1;
                    if (mf < 0) rc = -1;
                    else report((wl_kind)k, nt, "avx512k", forced, mf);
                }
                double mo, mc;   /* the best cap's kernel paired with memcpy */
                if (!rc && k <= W_DROPOUT && isa == (int)best) {
                    copy_cur.dst = dst, copy_cur.nt = nt;
                    if ((rc = time_pair(run_ours, run_copy, (wl_kind)k, r, &mo, &mc))) break;
                    report((wl_kind)k, nt, "paired", name, mo);
                    printf("bench wl=%s threads=%d impl=memcpy kernel=memcpy ms=%.3f rate=%.2f unit=GB/s\n",
                           wls[k].name, nt, mc, 2.0 * 4 * BIG / (mc * 1e-3) * 1e-9);
                }
            }
#if NB_HAVE_ONEDNN
            if (!rc && has_direct((wl_kind)k) && !set_runtime(nt, NULL)) rc = bench_direct((wl_kind)k, nt, r);
#endif
            if (!rc) {   /* each CPU's FMA rate now (~40 ms a CPU) */
                double gf[64];
                int cpu[64];
                const char *isa;
                int n = fma_probe_cpus(5000000L, gf, cpu, 64, &isa, &probe_sink);
                double lo, hi;
                fma_probe_range(gf, n, &lo, &hi);
                if (n) printf("probe wl=%s threads=%d min_gflops=%.1f max_gflops=%.1f\n", wls[k].name, nt, lo, hi);
            }
        }
    }
    free(dst);
    for (int i = 0; i < 2; i++) nb_optimizer_free(in.opt[i]);
    nb_scope_end();
#if NB_HAVE_ONEDNN
    dnnl_stream_destroy(dd_stream);
    dnnl_engine_destroy(dd_engine);
#endif
    nb_init(NULL);
    nb_shutdown();
    return rc ? 1 : probe_sink == 12345.0f;   /* never 1: the sink only keeps the probe's loops */
}
