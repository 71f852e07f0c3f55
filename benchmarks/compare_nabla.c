/* compare_nabla.c — nabla's side of benchmarks/compare: one workload, timed
 * step by step, in a process of its own (so its peak RSS is nabla's alone).
 *
 * Workloads (shapes come from benchmarks/workloads.json through the command
 * line, so the PyTorch side, compare_torch.py, runs exactly the same):
 *   mlp_step     Linear-ReLU-Linear-ReLU-Linear (dims=784,512,256,10), batch,
 *                cross-entropy, SGD(lr, momentum): zero_grad + forward +
 *                backward + step.
 *   cnn_step     examples/fashion_mnist_cnn.c's LeNet-like CNN (conv k×k c1
 *                pad, ReLU, max-pool 2, conv c2, ReLU, max-pool 2, linear
 *                hidden, ReLU, linear classes), same step and optimizer.
 *   op_overhead  benchmarks/op_overhead.c's chain of `ops` add/mul/tanh on
 *                1-element tensors, forward + backward (time per op).
 *   branches     `branches` independent chains from one x (batch, width),
 *                each `depth` × (matmul with its own W (width, width), tanh);
 *                loss = sum of all outputs; zero_grad + forward + backward.
 *   transformer_step  a small GPT: token + position embedding (vocab, dim),
 *                `layers` pre-norm blocks (layer_norm, one qkv linear,
 *                causal scaled_dot_product_attention over `heads`, output
 *                linear; layer_norm, linear dim -> 4 dim, GELU, linear back;
 *                residuals), final layer_norm, a linear head to the vocab,
 *                cross-entropy over batch x seq tokens, SGD(lr, momentum).
 *   op           one op's forward (+ backward) on (rows, cols): kind=bce_with_logits,
 *                smooth_l1, gather, sin, max_dim, amax, nll_log_softmax (forward
 *                and backward), tril, flip, pad, repeat (forward), clip_grad_norm
 *                (mlp_step's gradients); benchmarks/ops.json.
 * Each rep runs inside its own scope; `warmup` untimed reps come first.
 * clock=cpu times reps in process CPU time instead of wall time (on a shared
 * machine, at 1 thread, that leaves out the time other processes took).
 *
 * Usage: compare_nabla WORKLOAD threads=N warmup=W reps=R [clock=wall|cpu] [scale=1] [key=value ...]
 * (scale=1: 1 thread and N threads alternating step by step; see run_scaling)
 * Output, one machine-readable line (times in `unit`):
 *   compare impl=nabla workload=mlp_step threads=1 unit=ms median=... min=...
 *           max=... rss_kb=... times=t1,t2,...
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* clock_gettime */
#endif
#include <nabla.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"

enum { MAX_KV = 32, MAX_PARAMS = 64, MAX_BRANCH_W = 256 };

typedef struct kv {
    const char *key[MAX_KV];   /* borrowed from argv */
    const char *val[MAX_KV];
    int n;
} kv;

static const char *kv_get(const kv *a, const char *key, const char *def) {
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->key[i], key)) return a->val[i];
    return def;
}
static long kv_int(const kv *a, const char *key, long def) {
    const char *v = kv_get(a, key, NULL);
    return v ? strtol(v, NULL, 10) : def;
}
static double kv_num(const kv *a, const char *key, double def) {
    const char *v = kv_get(a, key, NULL);
    return v ? strtod(v, NULL) : def;
}

static clockid_t clock_id = CLOCK_MONOTONIC;   /* clock=cpu: CLOCK_PROCESS_CPUTIME_ID */

/* ---- a workload: setup once, then step() per rep (0 or NB_E*) ---- */
typedef struct bench {
    nb_module *model;                 /* mlp_step, cnn_step */
    nb_optimizer *opt;                /* mlp_step, cnn_step */
    nb_tensor *x, *y;                 /* input, I64 targets (owned) */
    nb_tensor *c1, *c2;               /* op_overhead constants (owned) */
    nb_tensor *w[MAX_BRANCH_W];       /* branches weights (owned) */
    int ops, branches, depth;         /* op_overhead, branches */
    int64_t tB, tT, tC, tH, tL, tV;   /* transformer_step: batch, seq, dim, heads, layers, vocab */
    int np;                           /* transformer_step: parameters in w[] */
    const char *kind;                 /* op: which op (borrowed from argv) */
} bench;

static int train_step(bench *b) {
    nb_optimizer_zero_grad(b->opt);
    nb_tensor *loss = nb_cross_entropy(nb_module_forward(b->model, b->x), b->y);
    if (!loss) return nb_last_error_code();
    int rc = nb_backward(loss, NULL);
    return rc ? rc : nb_optimizer_step(b->opt);
}

static int chain_step(bench *b) {
    nb_zero_grad(b->x);
    nb_tensor *y = b->x;
    for (int i = 0; i < b->ops; i++) {
        switch (i % 3) {
        case 0: y = nb_add(y, b->c1); break;
        case 1: y = nb_mul(y, b->c2); break;
        default: y = nb_tanh(y); break;
        }
    }
    return y ? nb_backward(y, NULL) : nb_last_error_code();
}

static int branches_step(bench *b) {
    for (int i = 0; i < b->branches * b->depth; i++) nb_zero_grad(b->w[i]);
    nb_tensor *loss = NULL;
    for (int k = 0; k < b->branches; k++) {
        nb_tensor *h = b->x;
        for (int d = 0; d < b->depth; d++) h = nb_tanh(nb_matmul(h, b->w[k * b->depth + d]));
        nb_tensor *s = nb_sum_all(h);
        loss = loss ? nb_add(loss, s) : s;
    }
    return loss ? nb_backward(loss, NULL) : nb_last_error_code();
}

/* op: one op's forward (+ backward where it has one) on x (rows, cols),
 * the kinds of benchmarks/ops.json; compare_torch.py's op_step mirrors it. */
static int op_step(bench *b) {
    const char *k = b->kind;
    nb_zero_grad(b->x);
    nb_tensor *r = NULL;
    int d1 = 1;
    if (!strcmp(k, "bce_with_logits")) r = nb_binary_cross_entropy_with_logits(b->x, b->c1);
    else if (!strcmp(k, "smooth_l1")) r = nb_smooth_l1_loss(b->x, b->c1);
    else if (!strcmp(k, "gather")) r = nb_sum_all(nb_gather(b->x, 1, b->y));
    else if (!strcmp(k, "sin")) r = nb_sum_all(nb_sin(b->x));
    else if (!strcmp(k, "pow")) r = nb_sum_all(nb_pow(b->c1, b->x));   /* c1 in [0, 1): base; x: exponent */
    else if (!strcmp(k, "max_dim")) r = nb_sum_all(nb_max_dim(b->x, 1, false, NULL));
    else if (!strcmp(k, "amax")) r = nb_sum_all(nb_max(b->x, &d1, 1, false));
    else if (!strcmp(k, "nll_log_softmax")) r = nb_nll_loss(nb_log_softmax(b->x, 1), b->y);
    else if (!strcmp(k, "tril")) return nb_tril(b->c1, 0) ? 0 : nb_last_error_code();
    else if (!strcmp(k, "flip")) return nb_flip(b->c1, &d1, 1) ? 0 : nb_last_error_code();
    else if (!strcmp(k, "pad")) return nb_pad(b->c1, (int64_t[]){1, 1, 1, 1}, 4, 0.0) ? 0 : nb_last_error_code();
    else if (!strcmp(k, "repeat")) return nb_repeat(b->c1, (int64_t[]){2, 1}, 2) ? 0 : nb_last_error_code();
    else if (!strcmp(k, "clip_grad_norm"))
        return isnan(nb_clip_grad_norm(b->w, b->np, 1e30, 2.0)) ? nb_last_error_code() : 0;
    else return NB_EINVAL;
    return r ? nb_backward(r, NULL) : nb_last_error_code();
}

/* Block parameters per layer, in w[] after the two embeddings. */
enum { TF_PER_LAYER = 12 };

static int transformer_step(bench *b) {
    nb_optimizer_zero_grad(b->opt);
    int64_t B = b->tB, T = b->tT, C = b->tC, H = b->tH, D = C / H;
    nb_tensor *const *p = b->w;
    nb_tensor *h = nb_add(nb_embedding(b->x, p[0], NB_NO_PADDING), p[1]);   /* (B, T, C) + (T, C) */
    for (int64_t l = 0; l < b->tL; l++) {
        nb_tensor *const *q = p + 2 + l * TF_PER_LAYER;
        nb_tensor *a = nb_layer_norm(h, NB_SHAPE(C), q[0], q[1], NULL);
        nb_tensor *qkv = nb_permute(nb_reshape(nb_linear(a, q[2], q[3]), NB_SHAPE(B, T, 3, H, D)),
                                    (int[]){2, 0, 3, 1, 4}, 5);   /* (3, B, H, T, D) */
        nb_tensor *qq = nb_squeeze(nb_narrow(qkv, 0, 0, 1), 0), *kk = nb_squeeze(nb_narrow(qkv, 0, 1, 1), 0);
        nb_tensor *vv = nb_squeeze(nb_narrow(qkv, 0, 2, 1), 0);
        nb_tensor *o = nb_scaled_dot_product_attention(qq, kk, vv, NULL, &(nb_sdpa_opts){.is_causal = true});
        o = nb_reshape(nb_contiguous(nb_permute(o, (int[]){0, 2, 1, 3}, 4)), NB_SHAPE(B, T, C));
        h = nb_add(h, nb_linear(o, q[4], q[5]));
        nb_tensor *m = nb_layer_norm(h, NB_SHAPE(C), q[6], q[7], NULL);
        h = nb_add(h, nb_linear(nb_gelu(nb_linear(m, q[8], q[9]), false), q[10], q[11]));
    }
    nb_tensor *const *f = p + 2 + b->tL * TF_PER_LAYER;
    h = nb_layer_norm(h, NB_SHAPE(C), f[0], f[1], NULL);
    nb_tensor *loss = nb_cross_entropy(nb_linear(nb_reshape(h, NB_SHAPE(B * T, C)), f[2], NULL), b->y);
    if (!loss) return nb_last_error_code();
    int rc = nb_backward(loss, NULL);
    return rc ? rc : nb_optimizer_step(b->opt);
}

static int make_targets(bench *b, int64_t n, int64_t classes) {
    int64_t *lab = malloc(sizeof *lab * (size_t)n);
    if (!lab) return NB_ENOMEM;
    for (int64_t i = 0; i < n; i++) lab[i] = (i * 7 + 3) % classes;
    b->y = nb_from_data(NB_SHAPE(n), NB_I64, lab);
    free(lab);
    return b->y ? 0 : nb_last_error_code();
}

static int make_sgd(bench *b, const kv *a) {
    if (!b->model) return nb_last_error_code();
    nb_tensor *params[MAX_PARAMS];
    int np = nb_module_parameters(b->model, params, MAX_PARAMS);
    if (np < 0 || np > MAX_PARAMS) return np < 0 ? np : NB_ERANGE;
    nb_sgd_opts so = {.lr = kv_num(a, "lr", 0.01), .momentum = kv_num(a, "momentum", 0.9)};
    b->opt = nb_sgd(params, np, &so);
    return b->opt ? 0 : nb_last_error_code();
}

static int setup_mlp(bench *b, const kv *a) {
    int64_t dims[16];
    int nd = 0;
    const char *s = kv_get(a, "dims", "784,512,256,10");
    for (char *end; *s && nd < 16; s = *end ? end + 1 : end) dims[nd++] = strtoll(s, &end, 10);
    if (nd < 2) return NB_EINVAL;
    int64_t batch = kv_int(a, "batch", 128);
    nb_module *layers[32];
    int nl = 0;
    for (int i = 0; i + 1 < nd; i++) {
        layers[nl++] = nb_linear_module(dims[i], dims[i + 1], true, (uint64_t)i + 1);
        if (i + 2 < nd) layers[nl++] = nb_relu_module();
    }
    b->model = nb_sequential(nl, layers);
    b->x = nb_randn(NB_SHAPE(batch, dims[0]), NB_F32, 11);
    if (!b->x) return nb_last_error_code();
    int rc = make_targets(b, batch, dims[nd - 1]);
    return rc ? rc : make_sgd(b, a);
}

static int setup_cnn(bench *b, const kv *a) {
    int64_t batch = kv_int(a, "batch", 64), c1 = kv_int(a, "c1", 32), c2 = kv_int(a, "c2", 64);
    int64_t k = kv_int(a, "k", 5), pad = kv_int(a, "pad", 2), hidden = kv_int(a, "hidden", 128);
    int64_t classes = kv_int(a, "classes", 10), img = kv_int(a, "image", 28);
    int64_t side = ((img + 2 * pad - k + 1) / 2 + 2 * pad - k + 1) / 2;
    nb_conv_opts po = {.padding = {pad, pad}};
    nb_module *layers[10] = {
        nb_conv2d_module(1, c1, k, k, &po, true, 1), nb_relu_module(), nb_maxpool2d_module(2, 2, NULL),
        nb_conv2d_module(c1, c2, k, k, &po, true, 2), nb_relu_module(), nb_maxpool2d_module(2, 2, NULL),
        nb_flatten_module(1, -1),
        nb_linear_module(c2 * side * side, hidden, true, 3), nb_relu_module(),
        nb_linear_module(hidden, classes, true, 4)};
    b->model = nb_sequential(10, layers);
    b->x = nb_randn(NB_SHAPE(batch, 1, img, img), NB_F32, 11);
    if (!b->x) return nb_last_error_code();
    int rc = make_targets(b, batch, classes);
    return rc ? rc : make_sgd(b, a);
}

static int setup_op(bench *b, const kv *a) {
    b->kind = kv_get(a, "kind", "");
    int64_t R = kv_int(a, "rows", 1024), C = kv_int(a, "cols", 1024);
    if (!strcmp(b->kind, "clip_grad_norm")) {   /* the gradients of mlp_step's 784-512-256-10 MLP */
        static const int64_t sh[6][2] = {{512, 784}, {512, 1}, {256, 512}, {256, 1}, {10, 256}, {10, 1}};
        for (int i = 0; i < 6; i++) {
            b->w[i] = nb_zeros(NB_SHAPE(sh[i][0], sh[i][1]), NB_F32);
            if (!b->w[i] || nb_set_requires_grad(b->w[i], true) ||
                nb_set_grad(b->w[i], nb_randn(NB_SHAPE(sh[i][0], sh[i][1]), NB_F32, 20 + (uint64_t)i)))
                return nb_last_error_code();
        }
        b->np = 6;
        b->x = nb_zeros(NB_SHAPE(1), NB_F32);
        return b->x ? 0 : nb_last_error_code();
    }
    b->x = nb_randn(NB_SHAPE(R, C), NB_F32, 11);
    b->c1 = !strcmp(b->kind, "bce_with_logits") || !strcmp(b->kind, "pow") ? nb_rand(NB_SHAPE(R, C), NB_F32, 12) : nb_randn(NB_SHAPE(R, C), NB_F32, 12);
    if (!b->x || !b->c1 || nb_set_requires_grad(b->x, true)) return nb_last_error_code();
    if (!strcmp(b->kind, "gather")) {
        int64_t *ix = malloc(sizeof *ix * (size_t)(R * C));
        if (!ix) return NB_ENOMEM;
        for (int64_t i = 0; i < R * C; i++) ix[i] = i * 7919 % C;
        b->y = nb_from_data(NB_SHAPE(R, C), NB_I64, ix);
        free(ix);
        return b->y ? 0 : nb_last_error_code();
    }
    return !strcmp(b->kind, "nll_log_softmax") ? make_targets(b, R, C) : 0;
}

static int setup_chain(bench *b, const kv *a) {
    b->ops = (int)kv_int(a, "ops", 200);
    b->x = nb_full(NB_SHAPE(1), NB_F32, 0.5);
    b->c1 = nb_full(NB_SHAPE(1), NB_F32, 0.1);
    b->c2 = nb_full(NB_SHAPE(1), NB_F32, 0.9);
    if (!b->x || !b->c1 || !b->c2) return nb_last_error_code();
    return nb_set_requires_grad(b->x, true);
}

static int setup_branches(bench *b, const kv *a) {
    int64_t batch = kv_int(a, "batch", 64), width = kv_int(a, "width", 256);
    b->branches = (int)kv_int(a, "branches", 8);
    b->depth = (int)kv_int(a, "depth", 4);
    if (b->branches < 1 || b->depth < 1 || b->branches * b->depth > MAX_BRANCH_W) return NB_ERANGE;
    b->x = nb_randn(NB_SHAPE(batch, width), NB_F32, 11);
    if (!b->x) return nb_last_error_code();
    double scale = 1.0 / sqrt((double)width);
    for (int i = 0; i < b->branches * b->depth; i++) {
        nb_tensor *w = nb_empty(NB_SHAPE(width, width), NB_F32);
        if (!w || nb_init_uniform(w, -scale, scale, 100 + (uint64_t)i)) {
            nb_release(w);
            return nb_last_error_code();
        }
        b->w[i] = w;
        int rc = nb_set_requires_grad(w, true);
        if (rc) return rc;
    }
    return 0;
}

/* A parameter: randn * scale, or filled with `fill` when scale is 0. */
static int tf_param(bench *b, nb_dims shape, double scale, double fill) {
    if (b->np >= MAX_BRANCH_W) return NB_ERANGE;
    nb_tensor *t = scale != 0 ? nb_mul_scalar(nb_randn(shape, NB_F32, 200 + (uint64_t)b->np), scale)
                              : nb_full(shape, NB_F32, fill);
    if (!t) return nb_last_error_code();
    b->w[b->np++] = t;
    return nb_set_requires_grad(t, true);
}

static int setup_transformer(bench *b, const kv *a) {
    b->tB = kv_int(a, "batch", 8), b->tT = kv_int(a, "seq", 64), b->tC = kv_int(a, "dim", 256);
    b->tH = kv_int(a, "heads", 4), b->tL = kv_int(a, "layers", 2), b->tV = kv_int(a, "vocab", 2048);
    int64_t C = b->tC, V = b->tV;
    if (b->tH < 1 || C % b->tH || 3 + b->tL * TF_PER_LAYER + 2 > MAX_PARAMS) return NB_EINVAL;
    double s = 1.0 / sqrt((double)C);
    int rc = tf_param(b, NB_SHAPE(V, C), 0.02, 0);
    rc = rc ? rc : tf_param(b, NB_SHAPE(b->tT, C), 0.02, 0);
    for (int64_t l = 0; !rc && l < b->tL; l++) {
        rc = tf_param(b, NB_SHAPE(C), 0, 1);
        rc = rc ? rc : tf_param(b, NB_SHAPE(C), 0, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(3 * C, C), s, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(3 * C), 0, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(C, C), s, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(C), 0, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(C), 0, 1);
        rc = rc ? rc : tf_param(b, NB_SHAPE(C), 0, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(4 * C, C), s, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(4 * C), 0, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(C, 4 * C), s / 2, 0);
        rc = rc ? rc : tf_param(b, NB_SHAPE(C), 0, 0);
    }
    rc = rc ? rc : tf_param(b, NB_SHAPE(C), 0, 1);
    rc = rc ? rc : tf_param(b, NB_SHAPE(C), 0, 0);
    rc = rc ? rc : tf_param(b, NB_SHAPE(V, C), s, 0);
    if (rc) return rc;
    int64_t n = b->tB * b->tT;
    int64_t *tok = malloc(sizeof *tok * (size_t)n);
    if (!tok) return NB_ENOMEM;
    for (int64_t i = 0; i < n; i++) tok[i] = (i * 37 + 11) % V;
    b->x = nb_from_data(NB_SHAPE(b->tB, b->tT), NB_I64, tok);
    free(tok);
    if (!b->x) return nb_last_error_code();
    rc = make_targets(b, n, V);
    if (rc) return rc;
    nb_sgd_opts so = {.lr = kv_num(a, "lr", 0.01), .momentum = kv_num(a, "momentum", 0.9)};
    b->opt = nb_sgd(b->w, b->np, &so);
    return b->opt ? 0 : nb_last_error_code();
}

static void bench_free(bench *b) {
    nb_optimizer_free(b->opt);
    nb_module_free(b->model);
    nb_release(b->x);
    nb_release(b->y);
    nb_release(b->c1);
    nb_release(b->c2);
    for (int i = 0; i < MAX_BRANCH_W; i++) nb_release(b->w[i]);
}

/* scale=1: the thread scaling of one workload, measured in one process: each
 * rep runs a block of SCALE_BLOCK steps at 1 thread and one at `threads` (the
 * order flips every rep), so that a slower or busier stretch of the machine
 * weighs on both counts alike (two processes run minutes apart do not). A
 * rep's time at a count is the median of its block's second half: PyTorch
 * (compare_torch.py does the same) needs a few steps after
 * torch.set_num_threads to reach its speed again (2-3x slower steps when
 * the count alternated step by step); nabla measured the same with blocks of
 * 1 and 4. times[] holds the 1-thread times, tn the others. Prints one line:
 *   scaling impl=nabla workload=... threads=N unit=... median1=... medianN=...
 *           ratio=medianN/median1 pair_ratio=median of the reps' own ratios
 *           times1=... timesN=... */
enum { SCALE_BLOCK = 8 };
static int run_scaling(bench *b, int (*step)(bench *), const char *name, const char *unit, double per,
                       int threads, int warmup, int reps, double *times) {
    double *tn = malloc(sizeof *tn * (size_t)reps), *pr = malloc(sizeof *pr * (size_t)reps);
    double *s1 = malloc(sizeof *s1 * (size_t)reps), *sn = malloc(sizeof *sn * (size_t)reps);
    int rc = NB_ENOMEM;
    if (!tn || !pr || !s1 || !sn) goto out;

    for (int i = 0; i < warmup + reps; i++) {
        for (int k = 0; k < 2; k++) {
            int nt = (k == 0) == (i % 2 == 0) ? 1 : threads;
            rc = nb_set_num_threads(nt);
            if (rc) goto out;
            double bt[SCALE_BLOCK];
            for (int q = 0; q < SCALE_BLOCK; q++) {
                double t0 = bench_now_s(clock_id);
                nb_scope_begin();
                rc = step(b);
                nb_scope_end();
                double t1 = bench_now_s(clock_id);
                if (rc) goto out;
                bt[q] = (t1 - t0) * per;
            }
            if (i >= warmup)
                (nt == 1 ? times : tn)[i - warmup] = bench_median(bt + SCALE_BLOCK / 2, SCALE_BLOCK - SCALE_BLOCK / 2);
        }
    }
    for (int i = 0; i < reps; i++) pr[i] = tn[i] / times[i];
    memcpy(s1, times, sizeof *s1 * (size_t)reps);
    memcpy(sn, tn, sizeof *sn * (size_t)reps);
    double m1 = bench_median(s1, reps), mn = bench_median(sn, reps), mp = bench_median(pr, reps);
    printf("scaling impl=nabla workload=%s threads=%d unit=%s median1=%.4f medianN=%.4f ratio=%.4f pair_ratio=%.4f",
           name, threads, unit, m1, mn, mn / m1, mp);
    printf(" times1=");
    for (int i = 0; i < reps; i++) printf("%s%.4f", i ? "," : "", times[i]);
    printf(" timesN=");
    for (int i = 0; i < reps; i++) printf("%s%.4f", i ? "," : "", tn[i]);
    printf("\n");
    rc = 0;
out:
    free(tn), free(pr), free(s1), free(sn);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: compare_nabla mlp_step|cnn_step|op_overhead|branches|transformer_step threads=N "
                        "warmup=W reps=R "
                        "[key=value ...]\n");
        return 2;
    }
    const char *name = argv[1];
    kv a = {.n = 0};
    for (int i = 2; i < argc && a.n < MAX_KV; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) continue;
        *eq = '\0';
        a.key[a.n] = argv[i];
        a.val[a.n++] = eq + 1;
    }
    int threads = (int)kv_int(&a, "threads", 1), warmup = (int)kv_int(&a, "warmup", 5);
    int reps = (int)kv_int(&a, "reps", 20);
    if (reps < 1) reps = 1;
    if (!strcmp(kv_get(&a, "clock", "wall"), "cpu")) clock_id = CLOCK_PROCESS_CPUTIME_ID;
    nb_init_opts io = {.num_threads = threads, .isa = NULL, .abort_on_error = -1};
    if (nb_init(&io) != 0) {
        fprintf(stderr, "compare_nabla: nb_init: %s\n", nb_last_error());
        return 1;
    }
    bench b;
    memset(&b, 0, sizeof b);
    int (*step)(bench *) = NULL;
    int rc = NB_EINVAL;
    double per = 1e3;   /* seconds -> unit */
    const char *unit = "ms";
    if (!strcmp(name, "mlp_step")) rc = setup_mlp(&b, &a), step = train_step;
    else if (!strcmp(name, "cnn_step")) rc = setup_cnn(&b, &a), step = train_step;
    else if (!strcmp(name, "branches")) rc = setup_branches(&b, &a), step = branches_step;
    else if (!strcmp(name, "transformer_step")) rc = setup_transformer(&b, &a), step = transformer_step;
    else if (!strcmp(name, "op")) rc = setup_op(&b, &a), step = op_step;
    else if (!strcmp(name, "op_overhead")) {
        rc = setup_chain(&b, &a), step = chain_step, unit = "us_per_op";
        per = 1e6 / (b.ops > 0 ? b.ops : 1);
    } else {
        fprintf(stderr, "compare_nabla: unknown workload '%s'\n", name);
        nb_shutdown();
        return 2;
    }
    double *times = malloc(sizeof *times * (size_t)reps);
    if (rc || !times) goto fail;
    if (kv_int(&a, "scale", 0)) {
        if (nb_num_threads() < 2) {
            fprintf(stderr, "compare_nabla: scale=1 needs threads=N with N >= 2 (this process has %d)\n",
                    nb_num_threads());
            free(times);
            bench_free(&b);
            nb_shutdown();
            return 2;
        }
        rc = run_scaling(&b, step, name, unit, per, nb_num_threads(), warmup, reps, times);
        if (rc) goto fail;
        free(times);
        bench_free(&b);
        nb_shutdown();
        return 0;
    }
    for (int i = 0; i < warmup + reps; i++) {
        double t0 = bench_now_s(clock_id);
        nb_scope_begin();
        rc = step(&b);
        nb_scope_end();
        double t1 = bench_now_s(clock_id);
        if (rc) goto fail;
        if (i >= warmup) times[i - warmup] = (t1 - t0) * per;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("compare impl=nabla workload=%s threads=%d unit=%s", name, nb_num_threads(), unit);
    double *sorted = malloc(sizeof *sorted * (size_t)reps);
    if (!sorted) goto fail;
    memcpy(sorted, times, sizeof *times * (size_t)reps);
    double med = bench_median(sorted, reps);
    printf(" median=%.4f min=%.4f max=%.4f rss_kb=%ld times=", med, sorted[0], sorted[reps - 1], ru.ru_maxrss);
    for (int i = 0; i < reps; i++) printf("%s%.4f", i ? "," : "", times[i]);
    printf("\n");
    free(sorted);
    free(times);
    bench_free(&b);
    nb_shutdown();
    return 0;

fail:
    fprintf(stderr, "compare_nabla: %s: %s\n", name, rc ? nb_last_error() : "out of memory");
    free(times);
    bench_free(&b);
    nb_shutdown();
    return 1;
}
