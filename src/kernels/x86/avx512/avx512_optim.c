/* avx512_optim.c — AVX-512 kernels for the optimizers' update steps (SGD
 * with momentum/Nesterov/weight decay, Adam/AdamW with amsgrad) and for
 * dropout, F32.
 *
 * They are 16-lane twins of ../avx2/avx2_optim.c, with the same arguments
 * (ref_optim.c, ref_loss.c's ref_dropout), and agree bitwise (0 ULP; NaN
 * where ref has NaN, payloads aside) with ref and with the AVX2 kernels:
 *  - the updates do ref's float operations in ref's order, one IEEE
 *    mul/add/div/sqrt each, never fused (FMA would round once where ref
 *    rounds twice; this library is built with -ffp-contract=off and no FMA
 *    is written here), 16 lanes at a time, the tail through masked loads
 *    and stores (__mmask16: no element past the range is touched);
 *  - dropout draws the same Philox4x32-10 words as nb__philox, sixteen
 *    counters (64 elements) per round of vector code, keeps the same words
 *    (r >= p * 2^32, compared as unsigned integers against ceil(p * 2^32))
 *    and scales in double as ref does, then rounds to float.
 * Served: contiguous F32 operands of out's size (SGD: param, grad and the
 * optional momentum buffer; Adam: param, grad, exp_avg, exp_avg_sq and the
 * optional max_exp_avg_sq; dropout: x, out and an I64 0-dim seed).
 * Declined (NB_KERNEL_DECLINE, the AVX2 kernel then serves): any strided,
 * transposed or broadcast operand, any other dtype.
 * Threads: elements are independent, so the OpenMP split (nb__par_threads
 * with the AVX2 kernels' grains) cannot change a result; the split points
 * fall on multiples of 16 elements (dropout's on multiples of 64, one
 * Philox block). Like the twin, no non-temporal stores: the updates write
 * back what they just read, and dropout's output is read right after.
 * The scalar half (operand checks, scalar preparation, the thread split,
 * Philox's constants and key schedule) is ../optim_common.h, shared with
 * the AVX2 twin; this file holds the vector code.
 */
#include "kernels/kernels.h"
#include "nb_config.h"
#include "vmath512.h"   /* nb__tail_mask16 */

#include <immintrin.h>
#include <stdint.h>

#include "../optim_common.h"

/* Full 16-lane (full true) or masked (the lanes in m; the others load as 0
 * and are not stored) load and store. */
static inline __m512 ld16(const float *x, __mmask16 m, bool full) {
    return full ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(m, x);
}
static inline void st16(float *x, __mmask16 m, bool full, __m512 v) {
    if (full) _mm512_storeu_ps(x, v);
    else _mm512_mask_storeu_ps(x, m, v);
}

/* ================= SGD ================= */

typedef struct sgd_par {
    __m512 neg_lr, mom, damp1, wd;   /* optim_sgd's scalars, broadcast */
    bool wd_on, mom_on, nesterov, maximize, first;
} sgd_par;

/* One vector of 16 (or fewer: mask) elements; ref's DEF_SGD body. */
static inline void sgd16(float *p, const float *g, float *buf, const sgd_par *s, __mmask16 m, bool full) {
    __m512 vp = ld16(p, m, full);
    __m512 d = ld16(g, m, full);
    if (s->maximize) d = _mm512_xor_ps(d, _mm512_set1_ps(-0.0f));
    if (s->wd_on) d = _mm512_add_ps(d, _mm512_mul_ps(s->wd, vp));
    if (s->mom_on) {
        __m512 b;
        if (s->first) b = d;
        else {
            b = ld16(buf, m, full);
            b = _mm512_add_ps(_mm512_mul_ps(b, s->mom), _mm512_mul_ps(s->damp1, d));
        }
        st16(buf, m, full, b);
        d = s->nesterov ? _mm512_add_ps(d, _mm512_mul_ps(s->mom, b)) : b;
    }
    vp = _mm512_add_ps(vp, _mm512_mul_ps(s->neg_lr, d));
    st16(p, m, full, vp);
}

static void sgd_range(float *p, const float *g, float *buf, const sgd_par *s, int64_t lo, int64_t hi) {
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) sgd16(p + i, g + i, buf ? buf + i : NULL, s, 0, true);
    if (i < hi) sgd16(p + i, g + i, buf ? buf + i : NULL, s, nb__tail_mask16((int)(hi - i)), false);
}

/* SGD step; operands and scalars: optim_sgd_args (../optim_common.h). */
static int avx512_sgd_step_f32(const nb_kernel_args *a) {
    optim_sgd o;
    if (!optim_sgd_args(a, &o)) return NB_KERNEL_DECLINE;
    sgd_par s = {.neg_lr = _mm512_set1_ps(o.neg_lr), .mom = _mm512_set1_ps(o.mom), .damp1 = _mm512_set1_ps(o.damp1),
                 .wd = _mm512_set1_ps(o.wd), .wd_on = o.wd_on, .mom_on = o.mom_on, .nesterov = o.nesterov,
                 .maximize = o.maximize, .first = o.first};
    PAR_RANGES(o.n, o.nt, 16, sgd_range(o.p, o.g, o.buf, &s, lo, hi));
    return 0;
}

/* ================= Adam / AdamW ================= */

typedef struct adam_par {
    __m512 neg_step, bc2_sqrt, decay, c1, c2, b1, b2, eps, wd;   /* optim_adam's scalars, broadcast */
    bool decoupled, wd_on, maximize;
} adam_par;

/* One vector of ref's DEF_ADAM body; mx NULL without amsgrad. */
static inline void adam16(float *p, const float *gp, float *m1, float *m2, float *mx, const adam_par *s, __mmask16 m,
                          bool full) {
    __m512 vp = ld16(p, m, full), g = ld16(gp, m, full);
    if (s->maximize) g = _mm512_xor_ps(g, _mm512_set1_ps(-0.0f));
    if (s->decoupled) vp = _mm512_mul_ps(vp, s->decay);
    else if (s->wd_on) g = _mm512_add_ps(g, _mm512_mul_ps(s->wd, vp));
    __m512 a1 = _mm512_add_ps(_mm512_mul_ps(ld16(m1, m, full), s->b1), _mm512_mul_ps(s->c1, g));
    __m512 a2 = _mm512_add_ps(_mm512_mul_ps(ld16(m2, m, full), s->b2), _mm512_mul_ps(s->c2, _mm512_mul_ps(g, g)));
    st16(m1, m, full, a1);
    st16(m2, m, full, a2);
    __m512 v = a2;
    if (mx) {
        /* ref: if (v > mx || v != v) mx = v — NaN in v wins, NaN in mx stays
         * (one unordered compare would also replace a NaN mx) */
        __m512 old = ld16(mx, m, full);
        __mmask16 take = _mm512_cmp_ps_mask(v, old, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        v = _mm512_mask_blend_ps(take, old, v);
        st16(mx, m, full, v);
    }
    __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v), s->bc2_sqrt), s->eps);
    vp = _mm512_add_ps(vp, _mm512_mul_ps(s->neg_step, _mm512_div_ps(a1, denom)));
    st16(p, m, full, vp);
}

static void adam_range(float *p, const float *g, float *m1, float *m2, float *mx, const adam_par *s, int64_t lo,
                       int64_t hi) {
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) adam16(p + i, g + i, m1 + i, m2 + i, mx ? mx + i : NULL, s, 0, true);
    if (i < hi) adam16(p + i, g + i, m1 + i, m2 + i, mx ? mx + i : NULL, s, nb__tail_mask16((int)(hi - i)), false);
}

/* Adam/AdamW step; operands and scalars: optim_adam_args. */
static int avx512_adam_step_f32(const nb_kernel_args *a) {
    optim_adam o;
    if (!optim_adam_args(a, &o)) return NB_KERNEL_DECLINE;
    adam_par s = {.neg_step = _mm512_set1_ps(o.neg_step), .bc2_sqrt = _mm512_set1_ps(o.bc2_sqrt),
                  .decay = _mm512_set1_ps(o.decay), .c1 = _mm512_set1_ps(o.c1), .c2 = _mm512_set1_ps(o.c2),
                  .b1 = _mm512_set1_ps(o.b1), .b2 = _mm512_set1_ps(o.b2), .eps = _mm512_set1_ps(o.eps),
                  .wd = _mm512_set1_ps(o.wd), .decoupled = o.decoupled, .wd_on = o.wd_on, .maximize = o.maximize};
    PAR_RANGES(o.n, o.nt, 16, adam_range(o.p, o.g, o.m1, o.m2, o.mx, &s, lo, hi));
    return 0;
}

/* ================= dropout ================= */

/* hi and lo 32 bits of a * M in each of 16 lanes. mul_epu32 multiplies the
 * even lanes into 64-bit products; the odd lanes are shifted down for a
 * second multiply (a shift, not a shuffle: the shuffle port is the busy
 * one). Swapping each pair of 32-bit words (shuffle CDAB) under a mask
 * then gathers the halves: lo takes the even product's low words in place
 * and the odd product's low words swapped up; hi the even product's high
 * words swapped down and the odd product's in place. */
static inline void mulhilo16(__m512i a, __m512i M, __m512i *hi, __m512i *lo) {
    __m512i even = _mm512_mul_epu32(a, M);
    __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), M);
    *lo = _mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CDAB);
    *hi = _mm512_mask_shuffle_epi32(odd, 0x5555, even, _MM_PERM_CDAB);
}

/* Philox4x32-10 of counters ctr .. ctr+15 (ctr a multiple of 16; counter
 * = {lo32, hi32, 0, 0}; k0/k1 the key words of each round, broadcast: see
 * drop_par), returned in element order:
 * r[j] holds the words of elements 4*ctr + 16*j .. +15, element 4*ctr + e
 * being word e%4 of nb__philox(seed, ctr + e/4). */
static inline void philox16(const __m512i *k0, const __m512i *k1, uint64_t ctr, __m512i r[4]) {
    /* ctr is a multiple of 16, so lo + lane never carries into the high word */
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)ctr),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i c1 = _mm512_set1_epi32((int)(uint32_t)(ctr >> 32));
    __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
    const __m512i M0 = _mm512_set1_epi32((int)PHILOX_M0), M1 = _mm512_set1_epi32((int)PHILOX_M1);
    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        __m512i hi0, lo0, hi1, lo1;
        mulhilo16(c0, M0, &hi0, &lo0);
        mulhilo16(c2, M1, &hi1, &lo1);
        /* three-way xors in one instruction each (truth table 0x96: a ^ b ^ c) */
        c0 = _mm512_ternarylogic_epi32(hi1, c1, k0[round], 0x96);
        c2 = _mm512_ternarylogic_epi32(hi0, c3, k1[round], 0x96);
        c1 = lo1;
        c3 = lo0;
    }
    /* 4x16 transpose. Within each 128-bit lane k, the unpacks leave
     * u_m = the 4 words of counter 4k + m ... */
    __m512i t0 = _mm512_unpacklo_epi32(c0, c1), t1 = _mm512_unpackhi_epi32(c0, c1);
    __m512i t2 = _mm512_unpacklo_epi32(c2, c3), t3 = _mm512_unpackhi_epi32(c2, c3);
    __m512i u0 = _mm512_unpacklo_epi64(t0, t2);   /* counters 0 | 4 | 8 | 12 */
    __m512i u1 = _mm512_unpackhi_epi64(t0, t2);   /* counters 1 | 5 | 9 | 13 */
    __m512i u2 = _mm512_unpacklo_epi64(t1, t3);   /* counters 2 | 6 | 10 | 14 */
    __m512i u3 = _mm512_unpackhi_epi64(t1, t3);   /* counters 3 | 7 | 11 | 15 */
    /* ... and r[j] wants 128-bit lane j of u0..u3: a 4x4 transpose of
     * 128-bit lanes in two rounds of shuffle_i32x4 */
    __m512i v0 = _mm512_shuffle_i32x4(u0, u1, 0x44);   /* u0.0 u0.1 u1.0 u1.1 */
    __m512i v1 = _mm512_shuffle_i32x4(u2, u3, 0x44);   /* u2.0 u2.1 u3.0 u3.1 */
    __m512i v2 = _mm512_shuffle_i32x4(u0, u1, 0xEE);   /* u0.2 u0.3 u1.2 u1.3 */
    __m512i v3 = _mm512_shuffle_i32x4(u2, u3, 0xEE);   /* u2.2 u2.3 u3.2 u3.3 */
    r[0] = _mm512_shuffle_i32x4(v0, v1, 0x88);         /* u0.0 u1.0 u2.0 u3.0: counters 0-3 */
    r[1] = _mm512_shuffle_i32x4(v0, v1, 0xDD);         /* counters 4-7 */
    r[2] = _mm512_shuffle_i32x4(v2, v3, 0x88);         /* counters 8-11 */
    r[3] = _mm512_shuffle_i32x4(v2, v3, 0xDD);         /* counters 12-15 */
}

typedef struct drop_par {
    __m512i k0[PHILOX_ROUNDS], k1[PHILOX_ROUNDS];   /* per round: the seed's halves plus r Weyl steps */
    __m512i thr;     /* keep when the word >= thr (unsigned) */
    __m512d scale;   /* 1 / (1 - p), applied in double as ref does */
} drop_par;

/* Elements [lo, hi) with lo a multiple of 64. */
static void drop_range(float *y, const float *x, const drop_par *s, int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; b += 64) {
        __m512i r[4];
        philox16(s->k0, s->k1, (uint64_t)b >> 2, r);
        for (int j = 0; j < 4; j++) {
            int64_t i = b + 16 * j, k = hi - i;
            if (k <= 0) break;
            bool full = k >= 16;
            __mmask16 m = nb__tail_mask16((int)(k));
            __mmask16 keep = _mm512_cmpge_epu32_mask(r[j], s->thr);
            __m512 vx = ld16(x + i, m, full);
            /* (float)((double)x * scale), as ref; dropped lanes are +0 */
            __m256 ylo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(vx)), s->scale));
            __m256 yhi = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(vx, 1)), s->scale));
            __m512 vy = _mm512_maskz_mov_ps(keep, _mm512_insertf32x8(_mm512_castps256_ps512(ylo), yhi, 1));
            st16(y + i, m, full, vy);
        }
    }
}

/* Zeroes y[lo, hi): the p = 1 case. */
static void zero_range(float *y, int64_t lo, int64_t hi) {
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) _mm512_storeu_ps(y + i, _mm512_setzero_ps());
    if (i < hi) _mm512_mask_storeu_ps(y + i, nb__tail_mask16((int)(hi - i)), _mm512_setzero_ps());
}

/* dropout; operands, threshold, scale and Philox keys: optim_dropout_args. */
static int avx512_dropout_f32(const nb_kernel_args *a) {
    optim_dropout o;
    if (!optim_dropout_args(a, &o)) return NB_KERNEL_DECLINE;
    drop_par s = {.thr = _mm512_set1_epi32((int)o.thr), .scale = _mm512_set1_pd(o.scale)};
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        s.k0[r] = _mm512_set1_epi32((int)o.k0[r]);
        s.k1[r] = _mm512_set1_epi32((int)o.k1[r]);
    }
    if (o.none) PAR_RANGES(o.n, o.nt, 64, zero_range(o.y, lo, hi));
    else PAR_RANGES(o.n, o.nt, 64, drop_range(o.y, o.x, &s, lo, hi));
    return 0;
}

/* Priorities by measurement (a scratch program timing these against the
 * AVX2 twins in one process, alternating them by nb__isa_prefer, medians
 * of 25 calls; this 2-core AVX-512 Xeon shared with other builds, load 5-10,
 * so the 1-thread decision uses the calling thread's CPU time, wall medians
 * being mostly preemption; ratio avx512/avx2):
 *   sgd_step (4M floats, momentum 0.9): 1 thread CPU 0.936-0.973 (8 runs),
 *     wall 0.69-1.06; 2 threads wall 0.97-1.05 — WINS (memory-bound: the
 *     4% is fewer instructions between the streams);
 *   adam_step (4M floats, lr 1e-3): 1 thread CPU 0.988-1.010 (8 runs), wall
 *     0.86-1.27; 2 threads wall 0.82-1.00 — LOSES (memory-bound, a tie);
 *   dropout (p 0.5, 16M floats into a fresh output): 1 thread CPU
 *     0.629-0.672, wall 0.615-0.671; 2 threads wall 0.671-0.709 — WINS
 *     (Philox on 16 lanes; 0.47-0.52 on 64K floats in cache). */
#define REG(OP, NAME, PRIO) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_" #NAME "_f32", PRIO, avx512_##NAME##_f32}

void nb__avx512_optim_register(void) {
    static const nb_kernel_desc ks[] = {
        REG(SGD_STEP, sgd_step, NB__PRIO_AVX512_WINS),
        REG(ADAM_STEP, adam_step, NB__PRIO_AVX512_LOSES),
        REG(DROPOUT, dropout, NB__PRIO_AVX512_WINS),
    };
    NB__REGISTER_ALL(ks);
}
