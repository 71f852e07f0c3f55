/* vmath.h — AVX2+FMA vector math for the x86/avx2 kernels: exp, log, tanh,
 * sigmoid, SiLU, erf, GELU (exact erf form and tanh form), and the
 * horizontal and tail-mask helpers the row kernels share.
 *
 * Only files of the avx2 library (built with -mavx2 -mfma) may include it.
 * Everything is static inline on 8 F32 lanes. Accuracy, measured against
 * double-precision results rounded to float (tests/kernels/test_avx2_elementwise.c):
 *   exp, log, tanh 1 ULP; erf, sigmoid 2; silu 3; gelu (erf form) 6 —
 *   denormal results included; gelu (tanh form) grows like |u| ULP in the
 *   negative tail (12 ULP at x = -2.5, 128 at worst), still far closer than
 *   float 1 + tanh(u), which cancels there.
 * Special values follow C99 Annex F: exp(+inf)=inf, exp(-inf)=0,
 * exp(x>88.72)=inf, exp underflows gradually through the denormals;
 * log(0)=-inf, log(x<0)=NaN, log(inf)=inf, log of a denormal is exact-ish;
 * tanh(+-0)=+-0, tanh saturates to +-1; NaN in gives NaN out everywhere.
 *
 * Method: Cody-Waite range reduction (x = n*ln2 + r, ln2 split so n*ln2_hi
 * is exact) and polynomials fitted here with mpmath's Chebyshev fit
 * (near-minimax), evaluated with FMA in Horner form. GELU's tail uses
 * erfc(z) = t*h(t)*exp(-z*z), t = 1/(1+z/2), with h fitted on z in
 * [0, 10.5] and z*z carried as hi+lo, so x*Phi(x) keeps its relative
 * accuracy where 1+erf(x/sqrt2) would cancel. Sigmoid and SiLU use
 * e^-|x| (scaled by 2^64 so x*e^x rounds once), never overflow, and keep
 * e^x's relative accuracy as x -> -inf.
 *
 * Names are stable: avx2_reduce.c and avx2_rows.c use them too.
 */
#ifndef NB_AVX2_VMATH_H
#define NB_AVX2_VMATH_H

#include <immintrin.h>

#define NB__V1(c) _mm256_set1_ps(c)

/* Lanes i < n are all-ones (n clamped to 0..8), for maskload/maskstore. */
static inline __m256i nb__tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Sum of the 8 lanes (pairwise: lanes i and i+4, then i and i+2, ...). */
static inline float nb__hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Max of the 8 lanes. A NaN lane may or may not win: callers that must
 * propagate NaN check for it themselves. */
static inline float nb__hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 nb__v_abs(__m256 x) { return _mm256_andnot_ps(NB__V1(-0.0f), x); }

/* 2^k for integer lanes k in [-126, 127] (built from the exponent bits). */
static inline __m256 nb__v_pow2i(__m256i k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

/* e^r for x = n ln2 + r, r in [-ln2/2, ln2/2]: returns 1 + r + r^2 Q(r),
 * *n the rounded n (as floats). The range reduction and polynomial both
 * exp paths share. */
static inline __m256 nb__v_exp_reduced(__m256 x, __m256 *n) {
    *n = _mm256_round_ps(_mm256_mul_ps(x, NB__V1(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(*n, NB__V1(0.693359375f), x);   /* exact: ln2_hi has 9 bits */
    r = _mm256_fnmadd_ps(*n, NB__V1(-2.12194440055e-4f), r);      /* ln2 - ln2_hi */
    __m256 q = NB__V1(1.392617612e-03f);
    q = _mm256_fmadd_ps(q, r, NB__V1(8.363173075e-03f));
    q = _mm256_fmadd_ps(q, r, NB__V1(4.166655466e-02f));
    q = _mm256_fmadd_ps(q, r, NB__V1(1.666657703e-01f));
    q = _mm256_fmadd_ps(q, r, NB__V1(5.000000000e-01f));
    __m256 r2 = _mm256_mul_ps(r, r);
    return _mm256_add_ps(_mm256_fmadd_ps(r2, q, r), NB__V1(1.0f));
}

/* e^x * 2^k (0 <= k <= 64, and x <= 0 when k > 0; k = 0 is plain e^x). x is
 * clamped to [-106 - k ln2, 89], where the result is 0 or inf (min/max
 * with the constant first, so NaN passes through); 2^n
 * is applied as 2^(n/2) * 2^(n-n/2+k) so that results in the denormal range
 * round once and results above FLT_MAX become inf. */
static inline __m256 nb__v_exp_scaled(__m256 x, int k) {
    x = _mm256_max_ps(NB__V1(-106.0f - 0.693147f * (float)k), _mm256_min_ps(NB__V1(89.0f), x));
    __m256 n, p = nb__v_exp_reduced(x, &n);
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_add_epi32(_mm256_sub_epi32(ni, n1), _mm256_set1_epi32(k));
    return _mm256_mul_ps(_mm256_mul_ps(p, nb__v_pow2i(n1)), nb__v_pow2i(n2));
}

/* e^x (within 1 ULP). Where every lane has |x| <= 87 (no NaN), 2^n is a
 * normal float and one multiplication by it is exact, so the short path
 * gives nb__v_exp_scaled(x, 0)'s bits with 6 fewer instructions. */
static inline __m256 nb__v_exp(__m256 x) {
    __m256 in = _mm256_cmp_ps(_mm256_andnot_ps(NB__V1(-0.0f), x), NB__V1(87.0f), _CMP_LE_OQ);
    if (_mm256_movemask_ps(in) != 0xFF) return nb__v_exp_scaled(x, 0);
    __m256 n, p = nb__v_exp_reduced(x, &n);
    return _mm256_mul_ps(p, nb__v_pow2i(_mm256_cvtps_epi32(n)));
}

/* ln x: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), f = m - 1 (exact),
 * ln x = e*ln2 + f - f^2/2 + f^3 * P(f). Denormals are scaled by 2^23 first. */
static inline __m256 nb__v_log(__m256 x) {
    __m256 den = _mm256_cmp_ps(x, NB__V1(1.17549435e-38f), _CMP_LT_OQ);
    __m256 xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, NB__V1(8388608.0f)), den);
    __m256i bits = _mm256_castps_si256(xs);
    __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126));
    e = _mm256_sub_epi32(e, _mm256_and_si256(_mm256_castps_si256(den), _mm256_set1_epi32(23)));
    __m256 m = _mm256_castsi256_ps(
        _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000)));
    __m256 lo = _mm256_cmp_ps(m, NB__V1(0.707106781f), _CMP_LT_OQ);   /* m in [0.5, sqrt(1/2)): use 2m, e-1 */
    m = _mm256_add_ps(m, _mm256_and_ps(m, lo));
    e = _mm256_add_epi32(e, _mm256_castps_si256(lo));
    __m256 f = _mm256_sub_ps(m, NB__V1(1.0f));
    __m256 ef = _mm256_cvtepi32_ps(e);
    __m256 p = NB__V1(6.971611471e-02f);
    p = _mm256_fmadd_ps(p, f, NB__V1(-1.147973385e-01f));
    p = _mm256_fmadd_ps(p, f, NB__V1(1.168541992e-01f));
    p = _mm256_fmadd_ps(p, f, NB__V1(-1.242568733e-01f));
    p = _mm256_fmadd_ps(p, f, NB__V1(1.424905765e-01f));
    p = _mm256_fmadd_ps(p, f, NB__V1(-1.666780232e-01f));
    p = _mm256_fmadd_ps(p, f, NB__V1(2.000071575e-01f));
    p = _mm256_fmadd_ps(p, f, NB__V1(-2.499999696e-01f));
    p = _mm256_fmadd_ps(p, f, NB__V1(3.333333118e-01f));
    __m256 f2 = _mm256_mul_ps(f, f);
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(f2, f), p);             /* f^3 P(f) */
    t = _mm256_fnmadd_ps(f2, NB__V1(0.5f), t);                      /* - f^2/2 */
    t = _mm256_fmadd_ps(ef, NB__V1(-2.12194440055e-4f), t);         /* + e*ln2_lo */
    __m256 y = _mm256_fmadd_ps(ef, NB__V1(0.693359375f), _mm256_add_ps(f, t));
    /* specials: 0 -> -inf, < 0 -> NaN, +inf -> +inf, NaN -> NaN */
    y = _mm256_blendv_ps(y, NB__V1(-__builtin_inff()), _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ));
    y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, NB__V1(__builtin_inff()), _CMP_EQ_OQ));
    __m256 bad = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NGE_UQ);   /* x < 0 or NaN */
    return _mm256_blendv_ps(y, NB__V1(__builtin_nanf("")), bad);
}

/* tanh x: odd polynomial x + x^3 T(x^2) for |x| < 0.55, else
 * 1 - 2/(e^{2|x|} + 1) (no cancellation there: the result is >= 0.5);
 * the sign is put back last, so tanh(-0) = -0. */
static inline __m256 nb__v_tanh(__m256 x) {
    __m256 sign = _mm256_and_ps(x, NB__V1(-0.0f));
    __m256 ax = _mm256_xor_ps(x, sign);
    __m256 y = _mm256_mul_ps(ax, ax);
    __m256 p = NB__V1(-6.610227831e-03f);
    p = _mm256_fmadd_ps(p, y, NB__V1(2.130938866e-02f));
    p = _mm256_fmadd_ps(p, y, NB__V1(-5.390942883e-02f));
    p = _mm256_fmadd_ps(p, y, NB__V1(1.333311373e-01f));
    p = _mm256_fmadd_ps(p, y, NB__V1(-3.333333201e-01f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(ax, y), p, ax);
    __m256 e = nb__v_exp(_mm256_add_ps(ax, ax));
    __m256 big = _mm256_sub_ps(NB__V1(1.0f), _mm256_div_ps(NB__V1(2.0f), _mm256_add_ps(e, NB__V1(1.0f))));
    __m256 r = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, NB__V1(0.55f), _CMP_LT_OQ));
    return _mm256_or_ps(r, sign);
}

/* num / (1 + e^-|x|) with num chosen per sign: the shared core of sigmoid
 * and SiLU, which never overflows and keeps the relative accuracy of
 * e^x for x -> -inf (where 1/(1+e^-x) would give 0 past -88.7). */
static inline __m256 nb__v_sigmoid_num(__m256 x, __m256 num_pos, __m256 num_neg_times) {
    /* e^-|x| * 2^64 stays normal: num_neg_times * e^-|x| rounds once, at the
     * final 2^-64, even where e^-|x| alone would be a denormal */
    __m256 eb = nb__v_exp_scaled(_mm256_or_ps(x, NB__V1(-0.0f)), 64);
    __m256 e = _mm256_mul_ps(eb, NB__V1(0x1p-64f));
    __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    __m256 num = _mm256_blendv_ps(_mm256_mul_ps(_mm256_mul_ps(num_neg_times, eb), NB__V1(0x1p-64f)), num_pos, pos);
    return _mm256_div_ps(num, _mm256_add_ps(NB__V1(1.0f), e));
}

/* 1 / (1 + e^-x): 1/(1+e^-x) for x >= 0, e^x/(1+e^x) below. */
static inline __m256 nb__v_sigmoid(__m256 x) { return nb__v_sigmoid_num(x, NB__V1(1.0f), NB__V1(1.0f)); }

/* x * sigmoid(x) as x/(1+e^-x) (x >= 0) or x*e^x/(1+e^x): silu(-inf) is
 * NaN like the ref kernel's -inf/inf. */
static inline __m256 nb__v_silu(__m256 x) { return nb__v_sigmoid_num(x, x, x); }

/* erfc(z) * e^{z^2} / t with t = 1/(1+z/2): smooth on z in [0, 10.5],
 * fitted in u = t - 0.58 (relative error < 1e-8). */
static inline __m256 nb__v_erfc_h(__m256 t) {
    __m256 u = _mm256_sub_ps(t, NB__V1(0.58f));
    __m256 h = NB__V1(3.348503954e-02f);
    h = _mm256_fmadd_ps(h, u, NB__V1(1.605681010e-02f));
    h = _mm256_fmadd_ps(h, u, NB__V1(-7.331409554e-02f));
    h = _mm256_fmadd_ps(h, u, NB__V1(4.273740971e-03f));
    h = _mm256_fmadd_ps(h, u, NB__V1(1.138740465e-01f));
    h = _mm256_fmadd_ps(h, u, NB__V1(-5.164144660e-02f));
    h = _mm256_fmadd_ps(h, u, NB__V1(-2.033398428e-01f));
    h = _mm256_fmadd_ps(h, u, NB__V1(8.514786992e-02f));
    h = _mm256_fmadd_ps(h, u, NB__V1(5.868536970e-01f));
    h = _mm256_fmadd_ps(h, u, NB__V1(7.790188233e-01f));
    return _mm256_fmadd_ps(h, u, NB__V1(5.694087224e-01f));
}

/* erf(z)/z as a polynomial in y = z^2 for |z| <= sqrt(1/2) (relative error < 1e-9). */
static inline __m256 nb__v_erf_small(__m256 y) {
    __m256 p = NB__V1(-6.933527665e-04f);
    p = _mm256_fmadd_ps(p, y, NB__V1(5.136527572e-03f));
    p = _mm256_fmadd_ps(p, y, NB__V1(-2.684390014e-02f));
    p = _mm256_fmadd_ps(p, y, NB__V1(1.128353312e-01f));
    p = _mm256_fmadd_ps(p, y, NB__V1(-3.761262787e-01f));
    return _mm256_fmadd_ps(p, y, NB__V1(1.128379166e+00f));
}

/* erf x: x * E(x^2) for |x| < sqrt(1/2), else sign(x) * (1 - erfc|x|) with
 * erfc z = t*h(t)*e^{-z^2} (no cancellation: erf >= 0.68 there). */
static inline __m256 nb__v_erf(__m256 x) {
    __m256 sign = _mm256_and_ps(x, NB__V1(-0.0f));
    __m256 z = _mm256_min_ps(NB__V1(10.5f), _mm256_xor_ps(x, sign));
    __m256 hi = _mm256_mul_ps(z, z);
    __m256 lo = _mm256_fmsub_ps(z, z, hi);
    __m256 small = _mm256_mul_ps(x, nb__v_erf_small(_mm256_mul_ps(x, x)));
    __m256 t = _mm256_div_ps(NB__V1(1.0f), _mm256_fmadd_ps(z, NB__V1(0.5f), NB__V1(1.0f)));
    __m256 c = _mm256_mul_ps(_mm256_mul_ps(t, nb__v_erfc_h(t)), _mm256_fnmadd_ps(lo, NB__V1(1.0f), NB__V1(1.0f)));
    __m256 big = _mm256_or_ps(_mm256_fnmadd_ps(c, nb__v_exp(_mm256_xor_ps(hi, NB__V1(-0.0f))), NB__V1(1.0f)), sign);
    return _mm256_blendv_ps(big, small, _mm256_cmp_ps(z, NB__V1(0.707106781f), _CMP_LT_OQ));
}

/* GELU, exact form: x * Phi(x) = x * 0.5 * (1 + erf(x/sqrt2)). Near 0
 * (|x| < 1) it is 0.5x + 0.5x*erf(x/sqrt2) with erf's polynomial; further
 * out x * 0.5*erfc(|x|/sqrt2) for x < 0 and x * (1 - 0.5*erfc(x/sqrt2)) for
 * x > 0, so the negative tail keeps its relative accuracy where
 * 1 + erf(x/sqrt2) would cancel. z^2 = x^2/2 is kept as hi + lo because
 * e^{-z^2} amplifies its rounding by z^2. */
static inline __m256 nb__v_gelu_erf(__m256 x) {
    __m256 ax = _mm256_min_ps(NB__V1(14.849242f), nb__v_abs(x));   /* z <= 10.5; NaN stays NaN */
    __m256 hx = _mm256_mul_ps(x, NB__V1(0.5f));
    __m256 zs = _mm256_mul_ps(x, NB__V1(0.707106781f));
    __m256 rsmall = _mm256_fmadd_ps(hx, _mm256_mul_ps(zs, nb__v_erf_small(_mm256_mul_ps(zs, zs))), hx);
    __m256 z = _mm256_mul_ps(ax, NB__V1(0.707106781f));
    __m256 t = _mm256_div_ps(NB__V1(1.0f), _mm256_fmadd_ps(z, NB__V1(0.5f), NB__V1(1.0f)));
    __m256 sq = _mm256_mul_ps(ax, ax);
    __m256 hi = _mm256_mul_ps(sq, NB__V1(0.5f));
    __m256 lo = _mm256_mul_ps(_mm256_fmsub_ps(ax, ax, sq), NB__V1(0.5f));
    /* 0.5*erfc(z) = 0.5 * t * h(t) * e^{-hi} * (1 - lo) */
    __m256 c = _mm256_mul_ps(_mm256_mul_ps(t, nb__v_erfc_h(t)), _mm256_fnmadd_ps(lo, NB__V1(0.5f), NB__V1(0.5f)));
    __m256 eh = nb__v_exp(_mm256_xor_ps(hi, NB__V1(-0.0f)));
    /* x < 0: (x*c) * e^{-hi}, the product that may underflow last */
    __m256 rneg = _mm256_mul_ps(_mm256_mul_ps(x, c), eh);
    __m256 rpos = _mm256_mul_ps(x, _mm256_fnmadd_ps(c, eh, NB__V1(1.0f)));
    __m256 r = _mm256_blendv_ps(rpos, rneg, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    r = _mm256_blendv_ps(r, rsmall, _mm256_cmp_ps(ax, NB__V1(1.0f), _CMP_LT_OQ));
    return _mm256_or_ps(r, _mm256_and_ps(x, NB__V1(-0.0f)));   /* x*Phi(x) has x's sign: gelu(-0) = -0 */
}

/* GELU, tanh form: 0.5*x*(1 + tanh(u)) = x * sigmoid(2u) with
 * u = sqrt(2/pi) * (x + 0.044715 x^3). */
static inline __m256 nb__v_gelu_tanh(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u2 = _mm256_mul_ps(x, _mm256_fmadd_ps(x2, NB__V1(0.0713548162726f), NB__V1(1.59576912161f)));
    return _mm256_mul_ps(x, nb__v_sigmoid(u2));
}

/* v[k] (8 lanes) becomes column k of the 8x8 matrix whose rows were v[0..7]. */
static inline void nb__tr8x8(__m256 v[8]) {
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    /* s_k: column k (low 128 bits) and k+4 (high), of rows 0-3 or 4-7 */
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20), v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20), v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20), v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20), v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

#endif
