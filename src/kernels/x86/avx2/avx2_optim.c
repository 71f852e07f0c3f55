/* avx2_optim.c — AVX2 kernels for the optimizers' update steps (SGD with
 * momentum/Nesterov, Adam/AdamW with amsgrad) and for dropout, F32.
 *
 * They are variants of src/kernels/ref/ref_optim.c and ref_loss.c's
 * ref_dropout, and agree with them bitwise (0 ULP; NaN where ref has NaN):
 *  - the updates do the ref's float operations in the ref's order, one IEEE
 *    mul/add/div/sqrt each (never fused: FMA would round once where ref
 *    rounds twice; the library is built with -std=c11, so GCC contracts
 *    nothing), 8 lanes at a time, the tail through masked loads and stores;
 *  - dropout draws the same Philox4x32-10 words as nb__philox, eight
 *    counters (32 elements) per round of vector code, keeps the same words
 *    (r >= p * 2^32, compared as integers against ceil(p * 2^32)) and scales
 *    in double as ref does, then rounds to float.
 * Contiguous F32 operands only; anything else is declined to ref.
 * Elements are independent, so the OpenMP split (nb__par_threads) cannot
 * change a result; dropout's split falls on multiples of 32 elements.
 * The scalar half (operand checks, scalar preparation, the thread split,
 * Philox's constants and key schedule) is ../optim_common.h, shared with
 * the AVX-512 twin; this file holds the vector code.
 */
#include "kernels/kernels.h"
#include "nb_config.h"

#include <immintrin.h>
#include <stdint.h>

#include "../optim_common.h"

/* Lane mask for the first k (0..8) lanes, for maskload/maskstore. */
static inline __m256i tail_mask(int64_t k) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)k), lane);
}

/* Masked (full false: the lanes in m) or full 8-lane load and store. */
static inline __m256 ld8(const float *x, __m256i m, bool full) {
    return full ? _mm256_loadu_ps(x) : _mm256_maskload_ps(x, m);
}
static inline void st8(float *x, __m256i m, bool full, __m256 v) {
    if (full) _mm256_storeu_ps(x, v);
    else _mm256_maskstore_ps(x, m, v);
}

/* ================= SGD ================= */

typedef struct sgd_par {
    __m256 neg_lr, mom, damp1, wd;   /* optim_sgd's scalars, broadcast */
    bool wd_on, mom_on, nesterov, maximize, first;
} sgd_par;

/* One vector of 8 (or fewer: mask) elements; ref's DEF_SGD body. */
static inline void sgd8(float *p, const float *g, float *buf, const sgd_par *s, __m256i m, bool full) {
    __m256 vp = ld8(p, m, full);
    __m256 d = ld8(g, m, full);
    if (s->maximize) d = _mm256_xor_ps(d, _mm256_set1_ps(-0.0f));
    if (s->wd_on) d = _mm256_add_ps(d, _mm256_mul_ps(s->wd, vp));
    if (s->mom_on) {
        __m256 b;
        if (s->first) b = d;
        else {
            b = ld8(buf, m, full);
            b = _mm256_add_ps(_mm256_mul_ps(b, s->mom), _mm256_mul_ps(s->damp1, d));
        }
        st8(buf, m, full, b);
        d = s->nesterov ? _mm256_add_ps(d, _mm256_mul_ps(s->mom, b)) : b;
    }
    vp = _mm256_add_ps(vp, _mm256_mul_ps(s->neg_lr, d));
    st8(p, m, full, vp);
}

static void sgd_range(float *p, const float *g, float *buf, const sgd_par *s, int64_t lo, int64_t hi) {
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) sgd8(p + i, g + i, buf ? buf + i : NULL, s, _mm256_setzero_si256(), true);
    if (i < hi) sgd8(p + i, g + i, buf ? buf + i : NULL, s, tail_mask(hi - i), false);
}

/* SGD step; operands and scalars: optim_sgd_args (../optim_common.h). */
static int avx2_sgd_step_f32(const nb_kernel_args *a) {
    optim_sgd o;
    if (!optim_sgd_args(a, &o)) return NB_KERNEL_DECLINE;
    sgd_par s = {.neg_lr = _mm256_set1_ps(o.neg_lr), .mom = _mm256_set1_ps(o.mom), .damp1 = _mm256_set1_ps(o.damp1),
                 .wd = _mm256_set1_ps(o.wd), .wd_on = o.wd_on, .mom_on = o.mom_on, .nesterov = o.nesterov,
                 .maximize = o.maximize, .first = o.first};
    PAR_RANGES(o.n, o.nt, 8, sgd_range(o.p, o.g, o.buf, &s, lo, hi));
    return 0;
}

/* ================= Adam / AdamW ================= */

typedef struct adam_par {
    __m256 neg_step, bc2_sqrt, decay, c1, c2, b1, b2, eps, wd;   /* optim_adam's scalars, broadcast */
    bool decoupled, wd_on, maximize;
} adam_par;

/* One vector of ref's DEF_ADAM body; mx NULL without amsgrad. */
static inline void adam8(float *p, const float *gp, float *m1, float *m2, float *mx, const adam_par *s, __m256i m,
                         bool full) {
    __m256 vp = ld8(p, m, full), g = ld8(gp, m, full);
    if (s->maximize) g = _mm256_xor_ps(g, _mm256_set1_ps(-0.0f));
    if (s->decoupled) vp = _mm256_mul_ps(vp, s->decay);
    else if (s->wd_on) g = _mm256_add_ps(g, _mm256_mul_ps(s->wd, vp));
    __m256 a1 = _mm256_add_ps(_mm256_mul_ps(ld8(m1, m, full), s->b1), _mm256_mul_ps(s->c1, g));
    __m256 a2 = _mm256_add_ps(_mm256_mul_ps(ld8(m2, m, full), s->b2), _mm256_mul_ps(s->c2, _mm256_mul_ps(g, g)));
    st8(m1, m, full, a1);
    st8(m2, m, full, a2);
    __m256 v = a2;
    if (mx) {
        /* ref: if (v > mx || v != v) mx = v — NaN in v wins, NaN in mx stays */
        __m256 old = ld8(mx, m, full);
        __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, old, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        v = _mm256_blendv_ps(old, v, take);
        st8(mx, m, full, v);
    }
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), s->bc2_sqrt), s->eps);
    vp = _mm256_add_ps(vp, _mm256_mul_ps(s->neg_step, _mm256_div_ps(a1, denom)));
    st8(p, m, full, vp);
}

static void adam_range(float *p, const float *g, float *m1, float *m2, float *mx, const adam_par *s, int64_t lo,
                       int64_t hi) {
    int64_t i = lo;
    const __m256i none = _mm256_setzero_si256();
    for (; i + 8 <= hi; i += 8) adam8(p + i, g + i, m1 + i, m2 + i, mx ? mx + i : NULL, s, none, true);
    if (i < hi) adam8(p + i, g + i, m1 + i, m2 + i, mx ? mx + i : NULL, s, tail_mask(hi - i), false);
}

/* Adam/AdamW step; operands and scalars: optim_adam_args. */
static int avx2_adam_step_f32(const nb_kernel_args *a) {
    optim_adam o;
    if (!optim_adam_args(a, &o)) return NB_KERNEL_DECLINE;
    adam_par s = {.neg_step = _mm256_set1_ps(o.neg_step), .bc2_sqrt = _mm256_set1_ps(o.bc2_sqrt),
                  .decay = _mm256_set1_ps(o.decay), .c1 = _mm256_set1_ps(o.c1), .c2 = _mm256_set1_ps(o.c2),
                  .b1 = _mm256_set1_ps(o.b1), .b2 = _mm256_set1_ps(o.b2), .eps = _mm256_set1_ps(o.eps),
                  .wd = _mm256_set1_ps(o.wd), .decoupled = o.decoupled, .wd_on = o.wd_on, .maximize = o.maximize};
    PAR_RANGES(o.n, o.nt, 8, adam_range(o.p, o.g, o.m1, o.m2, o.mx, &s, lo, hi));
    return 0;
}

/* ================= dropout ================= */

/* hi and lo 32 bits of a * M in each of 8 lanes (mul_epu32 multiplies the
 * even lanes; the odd ones are shifted down for a second multiply). */
static inline void mulhilo8(__m256i a, __m256i M, __m256i *hi, __m256i *lo) {
    __m256i even = _mm256_mul_epu32(a, M);
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), M);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* Philox4x32-10 of counters ctr .. ctr+7 (ctr a multiple of 8; counter =
 * {lo32, hi32, 0, 0}; k0/k1 the key words of each round, broadcast: see
 * drop_par), returned in element order:
 * r[j] holds the words of elements 4*ctr + 8*j .. +7, element 4*ctr + e
 * being word e%4 of nb__philox(seed, ctr + e/4). */
static inline void philox8(const __m256i *k0, const __m256i *k1, uint64_t ctr, __m256i r[4]) {
    /* ctr is a multiple of 8, so lo + lane never carries into the high word */
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)ctr), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256i c1 = _mm256_set1_epi32((int)(uint32_t)(ctr >> 32));
    __m256i c2 = _mm256_setzero_si256(), c3 = _mm256_setzero_si256();
    const __m256i M0 = _mm256_set1_epi32((int)PHILOX_M0), M1 = _mm256_set1_epi32((int)PHILOX_M1);
    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        __m256i hi0, lo0, hi1, lo1;
        mulhilo8(c0, M0, &hi0, &lo0);
        mulhilo8(c2, M1, &hi1, &lo1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), k0[round]);
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), k1[round]);
        c1 = lo1;
        c3 = lo0;
    }
    /* 4x8 transpose: lane l of c_w is word w of counter ctr+l */
    __m256i t0 = _mm256_unpacklo_epi32(c0, c1), t1 = _mm256_unpackhi_epi32(c0, c1);
    __m256i t2 = _mm256_unpacklo_epi32(c2, c3), t3 = _mm256_unpackhi_epi32(c2, c3);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2);   /* counters 0 | 4 */
    __m256i u1 = _mm256_unpackhi_epi64(t0, t2);   /* counters 1 | 5 */
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3);   /* counters 2 | 6 */
    __m256i u3 = _mm256_unpackhi_epi64(t1, t3);   /* counters 3 | 7 */
    r[0] = _mm256_permute2x128_si256(u0, u1, 0x20);
    r[1] = _mm256_permute2x128_si256(u2, u3, 0x20);
    r[2] = _mm256_permute2x128_si256(u0, u1, 0x31);
    r[3] = _mm256_permute2x128_si256(u2, u3, 0x31);
}

typedef struct drop_par {
    __m256i k0[PHILOX_ROUNDS], k1[PHILOX_ROUNDS];   /* per round: the seed's halves plus r Weyl steps */
    __m256i thr;     /* keep when the word >= thr (unsigned) */
    __m256d scale;   /* 1 / (1 - p), applied in double as ref does */
} drop_par;

/* Elements [lo, hi) with lo a multiple of 32. */
static void drop_range(float *y, const float *x, const drop_par *s, int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; b += 32) {
        __m256i r[4];
        philox8(s->k0, s->k1, (uint64_t)b >> 2, r);
        for (int j = 0; j < 4; j++) {
            int64_t i = b + 8 * j, k = hi - i;
            if (k <= 0) break;
            bool full = k >= 8;
            __m256i m = full ? _mm256_setzero_si256() : tail_mask(k);
            __m256 keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_max_epu32(r[j], s->thr), r[j]));
            __m256 vx = ld8(x + i, m, full);
            __m128 ylo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(vx)), s->scale));
            __m128 yhi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(vx, 1)), s->scale));
            __m256 vy = _mm256_and_ps(_mm256_insertf128_ps(_mm256_castps128_ps256(ylo), yhi, 1), keep);
            st8(y + i, m, full, vy);
        }
    }
}

/* Zeroes y[lo, hi): the p = 1 case. */
static void zero_range(float *y, int64_t lo, int64_t hi) {
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) _mm256_storeu_ps(y + i, _mm256_setzero_ps());
    if (i < hi) _mm256_maskstore_ps(y + i, tail_mask(hi - i), _mm256_setzero_ps());
}

/* dropout; operands, threshold, scale and Philox keys: optim_dropout_args. */
static int avx2_dropout_f32(const nb_kernel_args *a) {
    optim_dropout o;
    if (!optim_dropout_args(a, &o)) return NB_KERNEL_DECLINE;
    drop_par s = {.thr = _mm256_set1_epi32((int)o.thr), .scale = _mm256_set1_pd(o.scale)};
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        s.k0[r] = _mm256_set1_epi32((int)o.k0[r]);
        s.k1[r] = _mm256_set1_epi32((int)o.k1[r]);
    }
    if (o.none) PAR_RANGES(o.n, o.nt, 32, zero_range(o.y, lo, hi));
    else PAR_RANGES(o.n, o.nt, 32, drop_range(o.y, o.x, &s, lo, hi));
    return 0;
}

void nb__avx2_optim_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SGD_STEP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_sgd_step_f32", 10, avx2_sgd_step_f32},
        {NB_OP_ADAM_STEP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_adam_step_f32", 10, avx2_adam_step_f32},
        {NB_OP_DROPOUT, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_dropout_f32", 10, avx2_dropout_f32},
    };
    NB__REGISTER_ALL(ks);
}
