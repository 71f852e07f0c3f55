/* optim_common.h — the ISA-neutral half of the optimizer-step and dropout
 * kernels (x86/avx2/avx2_optim.c, x86/avx512/avx512_optim.c), included by
 * each in its own library (so compiled with that library's -m and
 * floating-point flags; nothing here uses intrinsics).
 *
 * It gives what both twins do in scalar code:
 *  - the operand checks (contiguous F32 operands of out's size, else
 *    NB_KERNEL_DECLINE) and the scalar preparation, rounded exactly as
 *    ref_optim.c / ref_loss.c's ref_dropout round them: optim_sgd_args,
 *    optim_adam_args, optim_dropout_args fill a struct of pointers, float
 *    (dropout: integer and double) parameters and the thread count; the
 *    includer broadcasts the parameters into its vectors;
 *  - the thread split: PAR_RANGES runs a statement over [0, n) cut into nt
 *    ranges whose inner boundaries are multiples of the includer's vector
 *    width (dropout: of one Philox block). Elements are independent, so no
 *    split changes a result;
 *  - Philox4x32-10's constants (those of src/runtime/philox.c) and the key
 *    schedule: the key words of each of the ten rounds.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_OPTIM_COMMON_H
#define NB_X86_OPTIM_COMMON_H

#include "kernels/kernels.h"
#include "nb_config.h"

#include <math.h>
#include <stdint.h>

/* True when t is a contiguous F32 tensor of n elements. */
static bool f32_flat(const nb_tensor *t, int64_t n) {
    return t && nb_dtype_of(t) == NB_DTYPE_F32 && nb_is_contiguous(t) && nb_numel(t) == n;
}

/* Thread t's share [*lo, *hi) of n elements split nt ways; every boundary
 * but n is a multiple of align. */
static inline void split(int64_t n, int nt, int t, int64_t align, int64_t *lo, int64_t *hi) {
    *lo = n * t / nt / align * align;
    *hi = t + 1 == nt ? n : n * (t + 1) / nt / align * align;
}

/* Runs STMT (a statement on int64_t lo, hi) over [0, n): once, on [0, n),
 * when nt <= 1, else on nt OpenMP threads over split()'s ranges. */
#if NB_HAVE_OPENMP
#define OMP_FOR_NT _Pragma("omp parallel for num_threads(nb__par_team(nt_)) if (nt_ > 1)")
#else
#define OMP_FOR_NT
#endif
#define PAR_RANGES(n, nt, align, STMT)                       \
    do {                                                     \
        const int64_t n_ = (n);                              \
        const int nt_ = (nt);                                \
        if (nt_ <= 1) {                                      \
            const int64_t lo = 0, hi = n_;                   \
            STMT;                                            \
        } else {                                             \
            OMP_FOR_NT                                       \
            for (int t_ = 0; t_ < nt_; t_++) {               \
                int64_t lo, hi;                              \
                split(n_, nt_, t_, (align), &lo, &hi);       \
                STMT;                                        \
            }                                                \
        }                                                    \
    } while (0)

/* ================= SGD ================= */

typedef struct optim_sgd {
    int64_t n;
    int nt;                          /* threads (nb__par_threads) */
    float *p, *buf;                  /* param; momentum buffer, NULL unless mom_on */
    const float *g;                  /* grad */
    float neg_lr, mom, damp1, wd;    /* -lr, momentum, 1 - dampening, weight_decay as ref rounds them */
    bool wd_on;                      /* weight_decay != 0 */
    bool mom_on;                     /* momentum != 0 and a buffer is given */
    bool nesterov, maximize, first;  /* scalar[4..6] */
} optim_sgd;

/* out = param, in[0] = grad, in[1] = momentum buffer (or NULL);
 * scalar = {lr, momentum, dampening, weight_decay, nesterov, maximize, first_step}.
 * False: declined. */
static bool optim_sgd_args(const nb_kernel_args *a, optim_sgd *s) {
    int64_t n = nb_numel(a->out);
    const nb_tensor *bt = a->nin > 1 ? a->in[1] : NULL;
    if (!f32_flat(a->out, n) || !f32_flat(a->in[0], n) || (bt && !f32_flat(bt, n))) return false;
    float *buf = bt ? nb_data(bt) : NULL;
    float lr = (float)a->scalar[0], mom = (float)a->scalar[1], damp1 = (float)(1 - a->scalar[2]);
    float wd = (float)a->scalar[3];
    *s = (optim_sgd){.n = n, .nt = nb__par_threads(n, NB_GRAIN_ELEMENTWISE), .p = nb_data(a->out),
                     .g = nb_data(a->in[0]), .neg_lr = -lr, .mom = mom, .damp1 = damp1, .wd = wd,
                     .wd_on = wd != 0, .mom_on = mom != 0 && buf, .nesterov = a->scalar[4] != 0,
                     .maximize = a->scalar[5] != 0, .first = a->scalar[6] != 0};
    s->buf = s->mom_on ? buf : NULL;
    return true;
}

/* ================= Adam / AdamW ================= */

typedef struct optim_adam {
    int64_t n;
    int nt;                          /* threads (nb__par_threads) */
    float *p, *m1, *m2, *mx;         /* param, exp_avg, exp_avg_sq, max_exp_avg_sq (NULL without amsgrad) */
    const float *g;                  /* grad */
    float neg_step;                  /* -(lr / (1 - beta1^step)) */
    float bc2_sqrt;                  /* sqrt(1 - beta2^step) */
    float decay;                     /* 1 - lr * weight_decay (AdamW) */
    float c1, c2;                    /* 1 - beta1, 1 - beta2 */
    float b1, b2, eps, wd;
    bool decoupled;                  /* AdamW: decay the parameter instead of the gradient */
    bool wd_on;                      /* weight_decay != 0 */
    bool maximize;                   /* ascend: negate the gradient */
} optim_adam;

/* out = param, in[0] = grad, in[1] = exp_avg, in[2] = exp_avg_sq, in[3] = max_exp_avg_sq or NULL;
 * scalar = {lr, beta1, beta2, eps, weight_decay, step, decoupled (AdamW), maximize}.
 * False: declined. */
static bool optim_adam_args(const nb_kernel_args *a, optim_adam *s) {
    int64_t n = nb_numel(a->out);
    const nb_tensor *mt = a->nin > 3 ? a->in[3] : NULL;
    if (a->nin < 3 || !f32_flat(a->out, n) || !f32_flat(a->in[0], n) || !f32_flat(a->in[1], n) ||
        !f32_flat(a->in[2], n) || (mt && !f32_flat(mt, n)))
        return false;
    double lr = a->scalar[0], b1 = a->scalar[1], b2 = a->scalar[2], step = a->scalar[5];
    /* the same scalar preparation as ref (torch computes these in double) */
    double bc1 = 1 - pow(b1, step), bc2s = sqrt(1 - pow(b2, step));
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)bc2s, decay = (float)(1 - lr * a->scalar[4]);
    float wd = (float)a->scalar[4];
    *s = (optim_adam){.n = n, .nt = nb__par_threads(n, NB_GRAIN_ELEMENTWISE / 2),   /* 4-5 streams per element */
                      .p = nb_data(a->out), .m1 = nb_data(a->in[1]), .m2 = nb_data(a->in[2]),
                      .mx = mt ? nb_data(mt) : NULL, .g = nb_data(a->in[0]), .neg_step = -step_size,
                      .bc2_sqrt = bc2_sqrt, .decay = decay, .c1 = (float)(1 - b1), .c2 = (float)(1 - b2),
                      .b1 = (float)b1, .b2 = (float)b2, .eps = (float)a->scalar[3], .wd = wd,
                      .decoupled = a->scalar[6] != 0, .wd_on = wd != 0, .maximize = a->scalar[7] != 0};
    return true;
}

/* ================= dropout ================= */

#define PHILOX_M0 0xD2511F53u   /* the constants of src/runtime/philox.c */
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

typedef struct optim_dropout {
    int64_t n;
    int nt;                          /* threads (nb__par_threads) */
    float *y;                        /* out */
    const float *x;
    bool none;                       /* p >= 1 (or NaN): every element drops, y = 0 */
    uint32_t thr;                    /* keep word r when r >= thr (unsigned); 0 when none */
    double scale;                    /* 1 / (1 - p), applied in double as ref does */
    uint32_t k0[PHILOX_ROUNDS], k1[PHILOX_ROUNDS];   /* per round: the seed's halves plus r Weyl steps */
} optim_dropout;

/* in[0] = x, in[1] = the seed (0-dim i64), scalar[0] = p; out = dropout(x).
 * False: declined. */
static bool optim_dropout_args(const nb_kernel_args *a, optim_dropout *s) {
    int64_t n = nb_numel(a->out);
    if (a->nin < 2 || !f32_flat(a->out, n) || !f32_flat(a->in[0], n) || !a->in[1] ||
        nb_dtype_of(a->in[1]) != NB_DTYPE_I64 || nb_numel(a->in[1]) != 1)
        return false;
    double p = a->scalar[0], cut = p * 4294967296.0;
    bool none = !(p < 1);   /* ref: keep needs p < 1 (NaN drops all too) */
    /* ref keeps word r when (double)r >= cut, i.e. r >= ceil(cut) */
    double thr = cut <= 0 ? 0 : ceil(cut);
    if (thr > 4294967295.0) none = true;
    s->n = n;
    s->nt = nb__par_threads(n, NB_GRAIN_TRANSCENDENTAL);
    s->y = nb_data(a->out);
    s->x = nb_data(a->in[0]);
    s->none = none;
    s->thr = none ? 0 : (uint32_t)thr;
    s->scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
    uint64_t seed = (uint64_t) * (const int64_t *)nb_data(a->in[1]);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < PHILOX_ROUNDS; r++, k0 += PHILOX_W0, k1 += PHILOX_W1) {
        s->k0[r] = k0;
        s->k1[r] = k1;
    }
    return true;
}

#endif
