/* vmath512.h — AVX-512 vector math for the x86/avx512 kernels: exp, log,
 * tanh, sigmoid, silu, erf and GELU (both forms) on 16 F32 lanes, and a
 * 16x16 register transpose (nb__w_tr16x16, the Winograd and GEMM kernels').
 *
 * Only files of the avx512 library (built with -mavx512f/dq/bw/vl -mfma)
 * may include it. Each function is a lane-for-lane port of its twin in
 * ../avx2/vmath.h (nb__v_exp_scaled, nb__v_log, nb__v_tanh,
 * nb__v_sigmoid_num, nb__v_erfc_h, nb__v_erf_small, nb__v_erf,
 * nb__v_gelu_erf, nb__v_gelu_tanh): the same constants, written the same way, and the
 * same arithmetic (the same FMAs, muls, adds, divs in the same order; the
 * one exception, exp's last step, is one scalef for vmath.h's two products
 * by powers of two, the same single rounding: see nb__w_exp_scaled). So
 * every lane's result is bitwise the AVX2 one, and vmath.h's accuracy
 * claims (exp, log, tanh 1 ULP, sigmoid 2; C99 Annex F special values)
 * carry over unchanged; tests/kernels/test_avx512.c asserts the bitwise
 * equality. Only the selects differ in form: where vmath.h builds an
 * all-ones compare vector and uses blendv or and, this uses an __mmask16
 * and mask_blend or maskz_mov, which pick the same lanes (all-ones or
 * all-zeros compare lanes make blendv and `and` pure selects).
 * Kept in step by hand: a change to a vmath.h polynomial must be made here.
 */
#ifndef NB_AVX512_VMATH512_H
#define NB_AVX512_VMATH512_H

#include <immintrin.h>

#define NB__W1(c) _mm512_set1_ps(c)

/* Lanes i < n are set (n in 0..16). */
static inline __mmask16 nb__tail_mask16(int n) { return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u); }

/* r[0..16) <- its transpose (16x16 floats): 2x2 blocks within 128-bit
 * lanes, then 4x4, then the lanes themselves. */
static inline void nb__w_tr16x16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {   /* u[4i + j], lane l: rows 4i..4i+3 at column 4l + j */
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {   /* column 4l + j: lane l of u[j], u[4 + j], u[8 + j], u[12 + j] */
        __m512 a = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), b = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 c = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88), d = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(a, c, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(a, c, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(b, d, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
}

/* e^x * 2^k: nb__v_exp_scaled on 16 lanes (see vmath.h for the method and
 * range). roundscale with scale 0 is round_ps: nearest-even to an integer. */
static inline __m512 nb__w_exp_scaled(__m512 x, int k) {
    x = _mm512_max_ps(NB__W1(-106.0f - 0.693147f * (float)k), _mm512_min_ps(NB__W1(89.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, NB__W1(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, NB__W1(0.693359375f), x);   /* exact: ln2_hi has 9 bits */
    r = _mm512_fnmadd_ps(n, NB__W1(-2.12194440055e-4f), r);      /* ln2 - ln2_hi */
    /* e^r = 1 + r + r^2 * Q(r), r in [-ln2/2, ln2/2] */
    __m512 q = NB__W1(1.392617612e-03f);
    q = _mm512_fmadd_ps(q, r, NB__W1(8.363173075e-03f));
    q = _mm512_fmadd_ps(q, r, NB__W1(4.166655466e-02f));
    q = _mm512_fmadd_ps(q, r, NB__W1(1.666657703e-01f));
    q = _mm512_fmadd_ps(q, r, NB__W1(5.000000000e-01f));
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 p = _mm512_add_ps(_mm512_fmadd_ps(r2, q, r), NB__W1(1.0f));
    /* p 2^(n + k) rounded once: vmath.h's p 2^n1 2^n2 (n1 = n >> 1, the
     * first product exact and normal, so only the second rounds) in one
     * instruction. The same bits over every 97th float bit pattern (1.4e9
     * inputs, k = 0 and -3); the exponent built in integers took 7 of the
     * function's ~25 operations, most on the one port that shifts, and exp
     * alone in L1 went from 23.6 to 16.8 cycles a vector (1 thread, a
     * Cascade Lake VM). */
    return _mm512_scalef_ps(p, k ? _mm512_add_ps(n, NB__W1((float)k)) : n);
}

/* e^x (within 1 ULP). */
static inline __m512 nb__w_exp(__m512 x) { return nb__w_exp_scaled(x, 0); }

/* ln x: nb__v_log on 16 lanes. vmath.h's `e - (den & 23)`, `m + (m & lo)`
 * and `e + lo` (lo all-ones = -1) are written with maskz_mov, which gives
 * the same 0 / value operands, so the adds are the same adds. */
static inline __m512 nb__w_log(__m512 x) {
    __mmask16 den = _mm512_cmp_ps_mask(x, NB__W1(1.17549435e-38f), _CMP_LT_OQ);
    __m512 xs = _mm512_mask_blend_ps(den, x, _mm512_mul_ps(x, NB__W1(8388608.0f)));
    __m512i bits = _mm512_castps_si512(xs);
    __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(126));
    e = _mm512_sub_epi32(e, _mm512_maskz_mov_epi32(den, _mm512_set1_epi32(23)));
    __m512 m = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x3f000000)));
    __mmask16 lo = _mm512_cmp_ps_mask(m, NB__W1(0.707106781f), _CMP_LT_OQ);   /* m in [0.5, sqrt(1/2)): use 2m, e-1 */
    m = _mm512_add_ps(m, _mm512_maskz_mov_ps(lo, m));
    e = _mm512_add_epi32(e, _mm512_maskz_mov_epi32(lo, _mm512_set1_epi32(-1)));
    __m512 f = _mm512_sub_ps(m, NB__W1(1.0f));
    __m512 ef = _mm512_cvtepi32_ps(e);
    __m512 p = NB__W1(6.971611471e-02f);
    p = _mm512_fmadd_ps(p, f, NB__W1(-1.147973385e-01f));
    p = _mm512_fmadd_ps(p, f, NB__W1(1.168541992e-01f));
    p = _mm512_fmadd_ps(p, f, NB__W1(-1.242568733e-01f));
    p = _mm512_fmadd_ps(p, f, NB__W1(1.424905765e-01f));
    p = _mm512_fmadd_ps(p, f, NB__W1(-1.666780232e-01f));
    p = _mm512_fmadd_ps(p, f, NB__W1(2.000071575e-01f));
    p = _mm512_fmadd_ps(p, f, NB__W1(-2.499999696e-01f));
    p = _mm512_fmadd_ps(p, f, NB__W1(3.333333118e-01f));
    __m512 f2 = _mm512_mul_ps(f, f);
    __m512 t = _mm512_mul_ps(_mm512_mul_ps(f2, f), p);             /* f^3 P(f) */
    t = _mm512_fnmadd_ps(f2, NB__W1(0.5f), t);                      /* - f^2/2 */
    t = _mm512_fmadd_ps(ef, NB__W1(-2.12194440055e-4f), t);         /* + e*ln2_lo */
    __m512 y = _mm512_fmadd_ps(ef, NB__W1(0.693359375f), _mm512_add_ps(f, t));
    /* specials: 0 -> -inf, < 0 -> NaN, +inf -> +inf, NaN -> NaN */
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ), y, NB__W1(-__builtin_inff()));
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, NB__W1(__builtin_inff()), _CMP_EQ_OQ), y, x);
    __mmask16 bad = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NGE_UQ);   /* x < 0 or NaN */
    return _mm512_mask_blend_ps(bad, y, NB__W1(__builtin_nanf("")));
}

/* tanh x: nb__v_tanh on 16 lanes (odd polynomial below 0.55, else
 * 1 - 2/(e^{2|x|} + 1); the sign put back last). */
static inline __m512 nb__w_tanh(__m512 x) {
    __m512 sign = _mm512_and_ps(x, NB__W1(-0.0f));
    __m512 ax = _mm512_xor_ps(x, sign);
    __m512 y = _mm512_mul_ps(ax, ax);
    __m512 p = NB__W1(-6.610227831e-03f);
    p = _mm512_fmadd_ps(p, y, NB__W1(2.130938866e-02f));
    p = _mm512_fmadd_ps(p, y, NB__W1(-5.390942883e-02f));
    p = _mm512_fmadd_ps(p, y, NB__W1(1.333311373e-01f));
    p = _mm512_fmadd_ps(p, y, NB__W1(-3.333333201e-01f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(ax, y), p, ax);
    __m512 e = nb__w_exp(_mm512_add_ps(ax, ax));
    __m512 big = _mm512_sub_ps(NB__W1(1.0f), _mm512_div_ps(NB__W1(2.0f), _mm512_add_ps(e, NB__W1(1.0f))));
    __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, NB__W1(0.55f), _CMP_LT_OQ), big, small);
    return _mm512_or_ps(r, sign);
}

/* |x| */
static inline __m512 nb__w_abs(__m512 x) { return _mm512_andnot_ps(NB__W1(-0.0f), x); }

/* num / (1 + e^-|x|), num chosen per sign: nb__v_sigmoid_num on 16 lanes
 * (e^-|x| scaled by 2^64 so that the numerator rounds once even in the
 * denormals). */
static inline __m512 nb__w_sigmoid_num(__m512 x, __m512 num_pos, __m512 num_neg_times) {
    __m512 eb = nb__w_exp_scaled(_mm512_or_ps(x, NB__W1(-0.0f)), 64);
    __m512 e = _mm512_mul_ps(eb, NB__W1(0x1p-64f));
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 num = _mm512_mask_blend_ps(pos, _mm512_mul_ps(_mm512_mul_ps(num_neg_times, eb), NB__W1(0x1p-64f)), num_pos);
    return _mm512_div_ps(num, _mm512_add_ps(NB__W1(1.0f), e));
}

/* 1 / (1 + e^-x): 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below. */
static inline __m512 nb__w_sigmoid(__m512 x) { return nb__w_sigmoid_num(x, NB__W1(1.0f), NB__W1(1.0f)); }

/* x * sigmoid(x) (nb__v_silu). */
static inline __m512 nb__w_silu(__m512 x) { return nb__w_sigmoid_num(x, x, x); }

/* erfc(z) e^{z^2} / t, t = 1/(1+z/2) (nb__v_erfc_h's fit in u = t - 0.58). */
static inline __m512 nb__w_erfc_h(__m512 t) {
    __m512 u = _mm512_sub_ps(t, NB__W1(0.58f));
    __m512 h = NB__W1(3.348503954e-02f);
    h = _mm512_fmadd_ps(h, u, NB__W1(1.605681010e-02f));
    h = _mm512_fmadd_ps(h, u, NB__W1(-7.331409554e-02f));
    h = _mm512_fmadd_ps(h, u, NB__W1(4.273740971e-03f));
    h = _mm512_fmadd_ps(h, u, NB__W1(1.138740465e-01f));
    h = _mm512_fmadd_ps(h, u, NB__W1(-5.164144660e-02f));
    h = _mm512_fmadd_ps(h, u, NB__W1(-2.033398428e-01f));
    h = _mm512_fmadd_ps(h, u, NB__W1(8.514786992e-02f));
    h = _mm512_fmadd_ps(h, u, NB__W1(5.868536970e-01f));
    h = _mm512_fmadd_ps(h, u, NB__W1(7.790188233e-01f));
    return _mm512_fmadd_ps(h, u, NB__W1(5.694087224e-01f));
}

/* erf(z)/z in y = z^2 for |z| <= sqrt(1/2) (nb__v_erf_small). */
static inline __m512 nb__w_erf_small(__m512 y) {
    __m512 p = NB__W1(-6.933527665e-04f);
    p = _mm512_fmadd_ps(p, y, NB__W1(5.136527572e-03f));
    p = _mm512_fmadd_ps(p, y, NB__W1(-2.684390014e-02f));
    p = _mm512_fmadd_ps(p, y, NB__W1(1.128353312e-01f));
    p = _mm512_fmadd_ps(p, y, NB__W1(-3.761262787e-01f));
    return _mm512_fmadd_ps(p, y, NB__W1(1.128379166e+00f));
}

/* erf x (nb__v_erf): x E(x^2) below sqrt(1/2), else sign(x) (1 - erfc|x|). */
static inline __m512 nb__w_erf(__m512 x) {
    __m512 sign = _mm512_and_ps(x, NB__W1(-0.0f));
    __m512 z = _mm512_min_ps(NB__W1(10.5f), _mm512_xor_ps(x, sign));
    __m512 hi = _mm512_mul_ps(z, z);
    __m512 lo = _mm512_fmsub_ps(z, z, hi);
    __m512 small = _mm512_mul_ps(x, nb__w_erf_small(_mm512_mul_ps(x, x)));
    __m512 t = _mm512_div_ps(NB__W1(1.0f), _mm512_fmadd_ps(z, NB__W1(0.5f), NB__W1(1.0f)));
    __m512 c = _mm512_mul_ps(_mm512_mul_ps(t, nb__w_erfc_h(t)), _mm512_fnmadd_ps(lo, NB__W1(1.0f), NB__W1(1.0f)));
    __m512 big = _mm512_or_ps(_mm512_fnmadd_ps(c, nb__w_exp(_mm512_xor_ps(hi, NB__W1(-0.0f))), NB__W1(1.0f)), sign);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, NB__W1(0.707106781f), _CMP_LT_OQ), big, small);
}

/* GELU, exact form x Phi(x) (nb__v_gelu_erf: the polynomial near 0, the
 * erfc form further out, z^2 as hi + lo). */
static inline __m512 nb__w_gelu_erf(__m512 x) {
    __m512 ax = _mm512_min_ps(NB__W1(14.849242f), nb__w_abs(x));   /* NaN stays NaN */
    __m512 hx = _mm512_mul_ps(x, NB__W1(0.5f));
    __m512 zs = _mm512_mul_ps(x, NB__W1(0.707106781f));
    __m512 rsmall = _mm512_fmadd_ps(hx, _mm512_mul_ps(zs, nb__w_erf_small(_mm512_mul_ps(zs, zs))), hx);
    __m512 z = _mm512_mul_ps(ax, NB__W1(0.707106781f));
    __m512 t = _mm512_div_ps(NB__W1(1.0f), _mm512_fmadd_ps(z, NB__W1(0.5f), NB__W1(1.0f)));
    __m512 sq = _mm512_mul_ps(ax, ax);
    __m512 hi = _mm512_mul_ps(sq, NB__W1(0.5f));
    __m512 lo = _mm512_mul_ps(_mm512_fmsub_ps(ax, ax, sq), NB__W1(0.5f));
    __m512 c = _mm512_mul_ps(_mm512_mul_ps(t, nb__w_erfc_h(t)), _mm512_fnmadd_ps(lo, NB__W1(0.5f), NB__W1(0.5f)));
    __m512 eh = nb__w_exp(_mm512_xor_ps(hi, NB__W1(-0.0f)));
    __m512 rneg = _mm512_mul_ps(_mm512_mul_ps(x, c), eh);
    __m512 rpos = _mm512_mul_ps(x, _mm512_fnmadd_ps(c, eh, NB__W1(1.0f)));
    __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), rpos, rneg);
    r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, NB__W1(1.0f), _CMP_LT_OQ), r, rsmall);
    return _mm512_or_ps(r, _mm512_and_ps(x, NB__W1(-0.0f)));   /* gelu(-0) = -0 */
}

/* GELU, tanh form: x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3). */
static inline __m512 nb__w_gelu_tanh(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u2 = _mm512_mul_ps(x, _mm512_fmadd_ps(x2, NB__W1(0.0713548162726f), NB__W1(1.59576912161f)));
    return _mm512_mul_ps(x, nb__w_sigmoid(u2));
}

#endif
