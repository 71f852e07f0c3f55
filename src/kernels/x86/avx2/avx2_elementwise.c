/* avx2_elementwise.c — AVX2+FMA kernels for the F32 element-wise ops:
 * add sub mul div pow (any broadcast), add_scalar mul_scalar, pow_scalar (exponents 0, 1, 2, 3,
 * 4, -1, -2, 0.5, -0.5 by products and roots, any other as pow), mse_loss and l1_loss (element-wise), smooth_l1_loss,
 * the l1 / smooth_l1 derivatives and bce_with_logits (fwd, d/dx; see their section), neg exp log tanh
 * sigmoid relu gelu silu erf sin cos sqrt abs square, maximum minimum, fill, copy,
 * rsqrt reciprocal sign clamp leaky_relu elu softplus; and (see the section
 * near the end, ref_compare.c's arguments) the comparisons eq..ge and
 * eq_scalar..ge_scalar (F32 in, BOOL out), logical_not/and/or (BOOL),
 * masked_fill and where (F32 values, BOOL mask).
 *
 * They are variants of src/kernels/ref/ref_elementwise.c and ref_math.c
 * with the same arguments (see the top of ref_math.c): out and inputs of
 * out's shape, inputs broadcast with stride 0, scalar[0] the scalar of
 * *_SCALAR/FILL and GELU's form (0 erf, else tanh).
 *  - Exact ops (add ... square, relu, abs, neg, maximum, minimum, fill, copy,
 *    rsqrt, reciprocal, sign, clamp, leaky_relu, the comparisons, logical
 *    ops, masked_fill, where) do ref's IEEE operations per element and agree
 *    with ref bitwise (NaN payloads aside). Maximum/minimum propagate NaN
 *    like ref (x + y); sign(NaN) = +0 as ref.
 *  - elu and softplus (expm1, log1p by Kahan's forms on vmath.h's exp and
 *    log) stay within 4 ULP of the double-precision result.
 *  - pow (and pow_scalar's other exponents) works in double: within 1 ULP of
 *    the double result (all but near-ties rounded as it is); vectors with a
 *    zero, inf or NaN, or a negative base under a fractional exponent, take
 *    ref's powf lane by lane.
 *  - exp log tanh sigmoid gelu silu erf use vmath.h, within a few ULP of the
 *    double-precision result (often closer than ref's float libm path:
 *    sigmoid and gelu keep their relative accuracy in the negative tail).
 * Every operand is walked with the registry's iterator (dims merged where
 * all operands are contiguous across them). A row whose operands have
 * element stride 1 or 0 (broadcast) runs 8 lanes at a time with a masked
 * tail: this covers same-shape contiguous, scalar, row ([M,N]+[N]) and column
 * ([M,N]+[M,1]) broadcast; any other row is gathered 8 elements at a time
 * into registers, so a result never depends on the layout. A 2-D walk with
 * a transposed input goes in 16x64 tiles, the input packed by 8x8 register
 * transposes (a transposed output is gathered/scattered tile by tile). Work is split
 * over OpenMP threads (nb__par_threads) by rows, or by chunks of 16-element
 * multiples within long rows; elements are independent, so the split cannot
 * change a result. Non-F32 operands are declined (F64 stays on ref).
 */
#include "kernels/kernels.h"
#include "nb_config.h"
#include "vmath.h"
#define EW_VEC __m256
#define EW_W 8
#define EW_MASK __m256i
#define EW_TAIL(k) nb__tail_mask(k)
#define EW_LD(p) _mm256_loadu_ps(p)
#define EW_ST(p, v) _mm256_storeu_ps(p, v)
#define EW_STREAM(p, v) _mm256_stream_ps(p, v)
#define EW_LDM(p, m) _mm256_maskload_ps(p, m)
#define EW_STM(p, m, v) _mm256_maskstore_ps(p, m, v)
#define EW_SET1(p) _mm256_broadcast_ss(p)
#include "../ew_driver.h"

#include <math.h>
#include <stdint.h>
#include <string.h>


/* Outputs of at least this many elements (16 MiB, with the inputs more than
 * the L3 of a Zen 4 CCD) are written with non-temporal stores: they would
 * only evict the inputs, and skipping out's read-for-ownership made add and
 * relu 1.2-1.5x faster at 4M-16M elements here (exp: no change). Smaller
 * outputs stay in cache for the next op. */
#define EW_STREAM_MIN (4 << 20)

/* The op bodies on 8 lanes: x from in[0], y from in[1]. */
static inline __m256 op_add(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_add_ps(x, y); }
static inline __m256 op_sub(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_sub_ps(x, y); }
static inline __m256 op_mul(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_mul_ps(x, y); }
static inline __m256 op_div(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_div_ps(x, y); }
/* max_ps(x, y) is x > y ? x : y, as ref; unordered lanes take x + y (a NaN) */
static inline __m256 op_maximum(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    return _mm256_blendv_ps(_mm256_max_ps(x, y), _mm256_add_ps(x, y), _mm256_cmp_ps(x, y, _CMP_UNORD_Q));
}
static inline __m256 op_minimum(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    return _mm256_blendv_ps(_mm256_min_ps(x, y), _mm256_add_ps(x, y), _mm256_cmp_ps(x, y, _CMP_UNORD_Q));
}
static inline __m256 op_adds(__m256 x, __m256 y, const ew_par *p) { (void)y; return _mm256_add_ps(x, p->s); }
static inline __m256 op_muls(__m256 x, __m256 y, const ew_par *p) { (void)y; return _mm256_mul_ps(x, p->s); }
static inline __m256 op_fill(__m256 x, __m256 y, const ew_par *p) { (void)x, (void)y; return p->s; }
static inline __m256 op_copy(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return x; }
static inline __m256 op_neg(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm256_xor_ps(x, _mm256_set1_ps(-0.0f));
}
static inline __m256 op_abs(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_abs(x); }
static inline __m256 op_square(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return _mm256_mul_ps(x, x); }
static inline __m256 op_sqrt(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return _mm256_sqrt_ps(x); }
/* ref: x < 0 ? 0 : x, so relu(-0) = -0 and relu(NaN) = NaN */
static inline __m256 op_relu(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ), x);
}
/* activation backwards: x = g, y = the saved output, rounded op by op as ref
 * (threshold: y <= t ? 0 : g, a NaN y passes g: the ordered compare is false) */
static inline __m256 op_thrbw(__m256 x, __m256 y, const ew_par *p) {
    return _mm256_andnot_ps(_mm256_cmp_ps(y, p->s, _CMP_LE_OQ), x);
}
static inline __m256 op_tanhbw(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    return _mm256_mul_ps(x, _mm256_sub_ps(NB__V1(1.0f), _mm256_mul_ps(y, y)));
}
static inline __m256 op_sigbw(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    return _mm256_mul_ps(x, _mm256_mul_ps(y, _mm256_sub_ps(NB__V1(1.0f), y)));
}
/* gelu backward: x = g, y = the saved input; p->s nonzero: the tanh form.
 * erf form: g (Φ(y) + y φ(y)), Φ(y) = (1 + erf(y/√2)) / 2; tanh form:
 * g (0.5 (1 + t) + 0.5 y (1 - t²) c (1 + 3 0.044715 y²)), t = tanh(c (y +
 * 0.044715 y³)), c = √(2/π). F32 vmath.h functions: within a few 1e-7 of
 * ref's double result, relative to |g| (the test's bound). */
static inline __m256 op_gelubw(__m256 x, __m256 y, const ew_par *p) {
    __m256 y2 = _mm256_mul_ps(y, y), d;
    if (_mm256_movemask_ps(_mm256_cmp_ps(p->s, _mm256_setzero_ps(), _CMP_NEQ_UQ))) {
        /* |y| > 10: t = ±1 exactly, the second term 0; clamped so that y^3 does
           not overflow to inf * 0 (ref's double does not), and y - y brings
           back the NaN of an infinite y (ref: inf * 0) */
        __m256 inf_nan = _mm256_sub_ps(y, y);
        y = _mm256_max_ps(NB__V1(-10.0f), _mm256_min_ps(NB__V1(10.0f), y));
        y2 = _mm256_mul_ps(y, y);
        __m256 c = NB__V1(0.79788456080286535588f), k = NB__V1(0.044715f);
        __m256 t = nb__v_tanh(_mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(k, y2), y, y)));
        __m256 du = _mm256_mul_ps(c, _mm256_fmadd_ps(NB__V1(3.0f * 0.044715f), y2, NB__V1(1.0f)));
        __m256 sech2 = _mm256_fnmadd_ps(t, t, NB__V1(1.0f));
        d = _mm256_fmadd_ps(_mm256_mul_ps(NB__V1(0.5f), y), _mm256_mul_ps(sech2, du),
                            _mm256_fmadd_ps(NB__V1(0.5f), t, NB__V1(0.5f)));
        d = _mm256_add_ps(d, inf_nan);
    } else {
        /* one exponential E = e^{-y^2/2} (y^2/2 as hi + lo, as nb__v_gelu_erf) for both terms:
           phi = E / sqrt(2 pi); for |y| >= 1, Phi from 0.5 erfc(|y|/sqrt2) = 0.5 t h(t) E;
           below, 0.5 + 0.5 erf(y/sqrt2) from erf's series. An infinite y: E = 0, y E = NaN, as ref. */
        __m256 ax = _mm256_min_ps(NB__V1(14.849242f), nb__v_abs(y));   /* NaN stays NaN */
        __m256 sq = _mm256_mul_ps(ax, ax);
        __m256 hi = _mm256_mul_ps(sq, NB__V1(0.5f)), lo = _mm256_mul_ps(_mm256_fmsub_ps(ax, ax, sq), NB__V1(0.5f));
        __m256 e = _mm256_mul_ps(nb__v_exp(_mm256_xor_ps(hi, NB__V1(-0.0f))), _mm256_sub_ps(NB__V1(1.0f), lo));
        __m256 z = _mm256_mul_ps(ax, NB__V1(0.707106781f));
        __m256 t = _mm256_div_ps(NB__V1(1.0f), _mm256_fmadd_ps(z, NB__V1(0.5f), NB__V1(1.0f)));
        __m256 c = _mm256_mul_ps(_mm256_mul_ps(t, nb__v_erfc_h(t)), _mm256_mul_ps(e, NB__V1(0.5f)));
        __m256 big = _mm256_blendv_ps(_mm256_sub_ps(NB__V1(1.0f), c), c, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ));
        __m256 zs = _mm256_mul_ps(y, NB__V1(0.70710678118654752440f));
        __m256 small = _mm256_fmadd_ps(NB__V1(0.5f), _mm256_mul_ps(zs, nb__v_erf_small(_mm256_mul_ps(zs, zs))),
                                       NB__V1(0.5f));
        __m256 cdf = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, NB__V1(1.0f), _CMP_LT_OQ));
        d = _mm256_fmadd_ps(y, _mm256_mul_ps(e, NB__V1(0.39894228040143267794f)), cdf);
    }
    return _mm256_mul_ps(x, d);
}
static inline __m256 op_exp(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_exp(x); }
static inline __m256 op_log(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_log(x); }
static inline __m256 op_tanh(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_tanh(x); }
static inline __m256 op_sigmoid(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_sigmoid(x); }
static inline __m256 op_erf(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_erf(x); }
static inline __m256 op_silu(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_silu(x); }
static inline __m256 op_gelu(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_gelu_erf(x); }
static inline __m256 op_gelu_tanh(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return nb__v_gelu_tanh(x);
}

/* rsqrt and reciprocal: ref's 1 / sqrtf(x) and 1 / x, each IEEE-rounded */
static inline __m256 op_rsqrt(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm256_div_ps(NB__V1(1.0f), _mm256_sqrt_ps(x));
}
static inline __m256 op_recip(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm256_div_ps(NB__V1(1.0f), x);
}
/* pow_scalar for the exponents that are products, quotients and square
 * roots (ref: powf(x, s)); others are declined to ref. 2 and -1 are one
 * IEEE operation (correctly rounded, as powf within its 1 ULP); 3, 4, -2
 * and -0.5 are taken in double from the exact x^2 (one double rounding,
 * then one to float); 0.5 is sqrtf. powf's special values: x^0 = 1 (NaN
 * too), and for 0.5 / -0.5 a -0 or -inf base gives +0 / +inf (resp. +inf /
 * +0), where sqrt would give -0 and NaN. */
static inline __m256 pw_d(__m256 x, int e) {   /* x^e for e in {3, 4, -2, -5 (= x^-0.5)} via double */
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    __m256d one = _mm256_set1_pd(1.0), r[2] = {lo, hi};
    for (int h = 0; h < 2; h++) {
        __m256d v = r[h], q = _mm256_mul_pd(v, v);   /* exact */
        if (e == 3) r[h] = _mm256_mul_pd(q, v);
        else if (e == 4) r[h] = _mm256_mul_pd(q, q);
        else if (e == -2) r[h] = _mm256_div_pd(one, q);
        else r[h] = _mm256_div_pd(one, _mm256_sqrt_pd(v));
    }
    return _mm256_set_m128(_mm256_cvtpd_ps(r[1]), _mm256_cvtpd_ps(r[0]));
}
static inline __m256 pw_abs_zero_inf(__m256 x) {   /* -0, -inf -> +0, +inf (powf's rule for 0.5, -0.5) */
    __m256 a = _mm256_andnot_ps(NB__V1(-0.0f), x);
    __m256 m = _mm256_or_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ),
                            _mm256_cmp_ps(x, NB__V1(-INFINITY), _CMP_EQ_OQ));
    return _mm256_blendv_ps(x, a, m);
}
static inline __m256 op_pw0(__m256 x, __m256 y, const ew_par *p) { (void)x, (void)y, (void)p; return NB__V1(1.0f); }
static inline __m256 op_pw3(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return pw_d(x, 3); }
static inline __m256 op_pw4(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return pw_d(x, 4); }
static inline __m256 op_pwm2(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return pw_d(x, -2); }
static inline __m256 op_pwh(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm256_sqrt_ps(pw_abs_zero_inf(x));
}
static inline __m256 op_pwmh(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return pw_d(pw_abs_zero_inf(x), -5);
}
/* 8 floats as two halves of 4 doubles, and back (one rounding each). */
static inline void ew_pd2(__m256 v, __m256d *lo, __m256d *hi) {
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
static inline __m256 ew_ps2(__m256d lo, __m256d hi) {
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

/* pow, any exponent (POW, and POW_SCALAR's other exponents): x^y =
 * e^(y ln x) in double, where every lane of the vector has x finite and
 * nonzero, y finite, and x > 0 or y an integer (then |x|^y, negated for an
 * odd y). ln x: x = m 2^e with m in [sqrt(1/2), sqrt(2)), s = (m-1)/(m+1),
 * ln m = 2 atanh s = 2 (s + s^3/3 + ... + s^19/19) (|s| <= 0.172:
 * truncation < 1e-17 relative), e ln2 with ln2 in two parts. t = y ln x is
 * clamped to [-200, 200] (the float result is 0 or inf well inside), then
 * e^t = 2^k e^r, k = round(t / ln2), |r| <= ln2/2, e^r by Taylor to r^12
 * (< 1e-15 relative). The double result is within ~1e-14 of x^y, so the
 * float (one rounding) is within 1 ULP of the double ref, denormal results
 * included. Any other vector (0, inf, NaN, a negative base with a
 * fractional exponent) goes lane by lane through ref's powf: ref's bits. */
#define PW_LN2_HI 0x1.62e42fefa38p-1     /* ln2's top 42 bits: times an exponent or k, exact */
#define PW_LN2_LO 0x1.ef35793c7673p-45   /* ln2 - PW_LN2_HI */
static inline __m256d pw_ln_pd(__m256d x) {   /* x > 0, finite, normal in double */
    __m256i bits = _mm256_castpd_si256(x);
    __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFll)),
                                                    _mm256_set1_epi64x(0x3FF0000000000000ll)));
    /* the biased exponent as a double: its bits under 2^52's, minus 2^52 */
    __m256d e = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(bits, 52),
                                                                  _mm256_set1_epi64x(0x4330000000000000ll))),
                              _mm256_set1_pd(0x1p52 + 1023.0));
    __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.41421356237309504880), _CMP_GT_OQ);
    m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
    e = _mm256_add_pd(e, _mm256_and_pd(big, _mm256_set1_pd(1.0)));
    __m256d f = _mm256_sub_pd(m, _mm256_set1_pd(1.0));   /* exact */
    __m256d s = _mm256_div_pd(f, _mm256_add_pd(f, _mm256_set1_pd(2.0)));
    __m256d z = _mm256_mul_pd(s, s);
    /* sum of z^i / (2i + 3), i = 0..8, by Estrin's scheme (Horner's 8-deep chain of FMAs kept too few
       vectors in flight: 5 ns an element) */
    __m256d z2 = _mm256_mul_pd(z, z), z4 = _mm256_mul_pd(z2, z2);
#define PW_C(c) _mm256_set1_pd(c)
    __m256d p01 = _mm256_fmadd_pd(z, PW_C(1.0 / 5), PW_C(1.0 / 3)), p23 = _mm256_fmadd_pd(z, PW_C(1.0 / 9), PW_C(1.0 / 7));
    __m256d p45 = _mm256_fmadd_pd(z, PW_C(1.0 / 13), PW_C(1.0 / 11)), p67 = _mm256_fmadd_pd(z, PW_C(1.0 / 17), PW_C(1.0 / 15));
    __m256d p03 = _mm256_fmadd_pd(z2, p23, p01), p47 = _mm256_fmadd_pd(z2, p67, p45);
    __m256d q = _mm256_fmadd_pd(z4, _mm256_fmadd_pd(z4, PW_C(1.0 / 19), p47), p03);
    __m256d s2 = _mm256_add_pd(s, s);
    __m256d lnm = _mm256_fmadd_pd(_mm256_mul_pd(s2, z), q, s2);
    return _mm256_fmadd_pd(e, _mm256_set1_pd(PW_LN2_HI), _mm256_fmadd_pd(e, _mm256_set1_pd(PW_LN2_LO), lnm));
}
static inline __m256d pw_exp_pd(__m256d t) {   /* e^t, t in [-200, 200] */
    __m256d k = _mm256_round_pd(_mm256_mul_pd(t, _mm256_set1_pd(1.44269504088896340736)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(PW_LN2_HI), t);   /* exact */
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(PW_LN2_LO), r);
    /* sum of r^i / i!, i = 0..12, by Estrin's scheme */
    __m256d r2 = _mm256_mul_pd(r, r), r4 = _mm256_mul_pd(r2, r2);
    __m256d e01 = _mm256_add_pd(r, PW_C(1.0)), e23 = _mm256_fmadd_pd(r, PW_C(1.0 / 6), PW_C(0.5));
    __m256d e45 = _mm256_fmadd_pd(r, PW_C(1.0 / 120), PW_C(1.0 / 24));
    __m256d e67 = _mm256_fmadd_pd(r, PW_C(1.0 / 5040), PW_C(1.0 / 720));
    __m256d e89 = _mm256_fmadd_pd(r, PW_C(1.0 / 362880), PW_C(1.0 / 40320));
    __m256d eab = _mm256_fmadd_pd(r, PW_C(1.0 / 39916800), PW_C(1.0 / 3628800));
    __m256d e03 = _mm256_fmadd_pd(r2, e23, e01), e47 = _mm256_fmadd_pd(r2, e67, e45);
    __m256d e8c = _mm256_fmadd_pd(r2, _mm256_fmadd_pd(r2, PW_C(1.0 / 479001600), eab), e89);
    __m256d p = _mm256_fmadd_pd(r4, _mm256_fmadd_pd(r4, e8c, e47), e03);
#undef PW_C
    __m256i ki = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));   /* |k| <= 289 */
    __m256d two_k = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52));
    return _mm256_mul_pd(p, two_k);
}
static inline __m256d pw_pd(__m256d x, __m256d y) {   /* the vector path's x^y on 4 lanes (see above) */
    __m256d ax = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x);
    __m256d t = _mm256_mul_pd(y, pw_ln_pd(ax));
    t = _mm256_max_pd(_mm256_set1_pd(-200.0), _mm256_min_pd(_mm256_set1_pd(200.0), t));
    __m256d r = pw_exp_pd(t);
    /* an odd y (integer: served only then) negates a negative base's power */
    __m256d hy = _mm256_mul_pd(y, _mm256_set1_pd(0.5));
    __m256d odd = _mm256_cmp_pd(_mm256_round_pd(hy, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC), hy, _CMP_NEQ_OQ);
    __m256d neg = _mm256_and_pd(odd, _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_LT_OQ));
    return _mm256_xor_pd(r, _mm256_and_pd(neg, _mm256_set1_pd(-0.0)));
}
static inline __m256 pw_ps(__m256 x, __m256 y) {
    __m256 ax = nb__v_abs(x), inf = NB__V1(INFINITY), zero = _mm256_setzero_ps();
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(ax, inf, _CMP_LT_OQ), _mm256_cmp_ps(ax, zero, _CMP_GT_OQ));
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(nb__v_abs(y), inf, _CMP_LT_OQ));
    __m256 whole = _mm256_cmp_ps(_mm256_round_ps(y, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC), y, _CMP_EQ_OQ);
    ok = _mm256_and_ps(ok, _mm256_or_ps(_mm256_cmp_ps(x, zero, _CMP_GT_OQ), whole));
    if (_mm256_movemask_ps(ok) != 0xFF) {
        float xv[8], yv[8];
        _mm256_storeu_ps(xv, x);
        _mm256_storeu_ps(yv, y);
        for (int j = 0; j < 8; j++) xv[j] = powf(xv[j], yv[j]);
        return _mm256_loadu_ps(xv);
    }
    __m256d xl, xh, yl, yh;
    ew_pd2(x, &xl, &xh);
    ew_pd2(y, &yl, &yh);
    return ew_ps2(pw_pd(xl, yl), pw_pd(xh, yh));
}
static inline __m256 op_pow(__m256 x, __m256 y, const ew_par *p) { (void)p; return pw_ps(x, y); }
static inline __m256 op_pwg(__m256 x, __m256 y, const ew_par *p) { (void)y; return pw_ps(x, p->s); }

/* sin and cos: x (a float, exact in double) reduced by k pi/2 in double
 * (k = round(x 2/pi); pi/2 in two parts, the first of 33 bits, so k P1 and
 * x - k P1 are exact for |k| < 2^20 and the second part's error stays
 * below 1e-16 for |x| <= 2^16), then Taylor polynomials to r^13 / r^14 on
 * |r| <= pi/4 (truncation < 4e-14) and the quadrant's sign and swap: the
 * double result is within ~1e-15 of sin x, so the float is the rounded
 * value (or its neighbour in a near tie): within 1 ULP of the double ref.
 * |x| < 2^-12 gives sin x = x (keeps -0 and denormals), cos x = 1. A
 * vector with any |x| > 2^16, inf or NaN goes lane by lane through sinf /
 * cosf: ref's bits. */
#define SC_P1 1.57079632673412561417e+00  /* pi/2: the first 33 bits */
#define SC_P2 6.07710050650619224932e-11  /* pi/2 - SC_P1 */
static inline __m256d sc_pd(__m256d x, int quad) {
    __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(0.63661977236758134308)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(SC_P2), _mm256_fnmadd_pd(k, _mm256_set1_pd(SC_P1), x));
    __m256d z = _mm256_mul_pd(r, r);
    __m256d sp = _mm256_set1_pd(1.0 / 6227020800.0);   /* 1/13! */
    sp = _mm256_fmadd_pd(sp, z, _mm256_set1_pd(-1.0 / 39916800.0));
    sp = _mm256_fmadd_pd(sp, z, _mm256_set1_pd(1.0 / 362880.0));
    sp = _mm256_fmadd_pd(sp, z, _mm256_set1_pd(-1.0 / 5040.0));
    sp = _mm256_fmadd_pd(sp, z, _mm256_set1_pd(1.0 / 120.0));
    sp = _mm256_fmadd_pd(sp, z, _mm256_set1_pd(-1.0 / 6.0));
    __m256d sn = _mm256_fmadd_pd(_mm256_mul_pd(r, z), sp, r);
    __m256d cp = _mm256_set1_pd(1.0 / 479001600.0);   /* 1/12! */
    cp = _mm256_fmadd_pd(cp, z, _mm256_set1_pd(-1.0 / 3628800.0));
    cp = _mm256_fmadd_pd(cp, z, _mm256_set1_pd(1.0 / 40320.0));
    cp = _mm256_fmadd_pd(cp, z, _mm256_set1_pd(-1.0 / 720.0));
    cp = _mm256_fmadd_pd(cp, z, _mm256_set1_pd(1.0 / 24.0));
    cp = _mm256_fmadd_pd(cp, z, _mm256_set1_pd(-0.5));
    __m256d cs = _mm256_fmadd_pd(z, cp, _mm256_set1_pd(1.0));
    /* q = k + quad (cos x = sin(x + pi/2)): bit 0 swaps sin and cos, bit 1 negates */
    __m256i q = _mm256_cvtepi32_epi64(_mm_add_epi32(_mm256_cvtpd_epi32(k), _mm_set1_epi32(quad)));
    __m256d v = _mm256_blendv_pd(sn, cs, _mm256_castsi256_pd(_mm256_slli_epi64(q, 63)));
    return _mm256_xor_pd(v, _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_srli_epi64(q, 1), 63)));
}
static inline __m256 sc_ps(__m256 x, int quad) {
    __m256 ax = nb__v_abs(x);
    if (_mm256_movemask_ps(_mm256_cmp_ps(ax, NB__V1(65536.0f), _CMP_LE_OQ)) != 0xFF) {
        float v[8];
        _mm256_storeu_ps(v, x);
        for (int j = 0; j < 8; j++) v[j] = quad ? cosf(v[j]) : sinf(v[j]);
        return _mm256_loadu_ps(v);
    }
    __m256d lo, hi;
    ew_pd2(x, &lo, &hi);
    __m256 r = ew_ps2(sc_pd(lo, quad), sc_pd(hi, quad));
    return _mm256_blendv_ps(r, quad ? NB__V1(1.0f) : x, _mm256_cmp_ps(ax, NB__V1(0x1p-12f), _CMP_LT_OQ));
}
static inline __m256 op_sin(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return sc_ps(x, 0); }
static inline __m256 op_cos(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return sc_ps(x, 1); }

/* mse_loss and l1_loss, element-wise (the op reduces): ref's (x - y)^2 in
 * double (the difference of two floats is exact there, its square rounded
 * once in double, then to float) and |x - y| (the float difference is the
 * exact one rounded once): bitwise ref's. */
static inline __m256 op_mse(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)),
                               _mm256_cvtps_pd(_mm256_castps256_ps128(y)));
    __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)),
                               _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)));
    return _mm256_set_m128(_mm256_cvtpd_ps(_mm256_mul_pd(d1, d1)), _mm256_cvtpd_ps(_mm256_mul_pd(d0, d0)));
}
static inline __m256 op_l1(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    return _mm256_andnot_ps(NB__V1(-0.0f), _mm256_sub_ps(x, y));
}
/* ref: (x > 0) - (x < 0), so sign(±0) = +0 and sign(NaN) = +0 */
static inline __m256 op_sign(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    __m256 z = _mm256_setzero_ps(), one = NB__V1(1.0f);
    return _mm256_sub_ps(_mm256_and_ps(_mm256_cmp_ps(x, z, _CMP_GT_OQ), one),
                         _mm256_and_ps(_mm256_cmp_ps(x, z, _CMP_LT_OQ), one));
}
/* ref: x > 0 ? x : x * slope (NaN: x * slope, a NaN) */
static inline __m256 op_leaky(__m256 x, __m256 y, const ew_par *p) {
    (void)y;
    return _mm256_blendv_ps(_mm256_mul_ps(x, p->s), x, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
}
/* ref: x < min gives min, then x > max gives max (k_clamp turns a missing
 * bound into -inf/+inf, which no x passes); NaN x stays */
static inline __m256 op_clamp(__m256 x, __m256 y, const ew_par *p) {
    (void)y;
    x = _mm256_blendv_ps(x, p->s, _mm256_cmp_ps(x, p->s, _CMP_LT_OQ));
    return _mm256_blendv_ps(x, p->s1, _mm256_cmp_ps(x, p->s1, _CMP_GT_OQ));
}

/* e^x - 1 for x <= 0 (any x: NaN stays NaN). Above -0.5, Kahan's form
 * (u - 1) x / ln u with u = e^x rounded: u - 1 is exact there and the ratio
 * cancels u's rounding, so the result keeps its relative accuracy near 0
 * (u = 1: x itself). Below, u - 1 has no cancellation. */
static inline __m256 ew_expm1_neg(__m256 x) {
    __m256 u = nb__v_exp(x), one = NB__V1(1.0f), um1 = _mm256_sub_ps(u, one);
    __m256 k = _mm256_div_ps(_mm256_mul_ps(um1, x), nb__v_log(u));
    k = _mm256_blendv_ps(k, x, _mm256_cmp_ps(u, one, _CMP_EQ_OQ));
    return _mm256_blendv_ps(um1, k, _mm256_cmp_ps(x, NB__V1(-0.5f), _CMP_GE_OQ));
}
/* ref: x > 0 ? x : alpha expm1(x) */
static inline __m256 op_elu(__m256 x, __m256 y, const ew_par *p) {
    (void)y;
    return _mm256_blendv_ps(_mm256_mul_ps(p->s, ew_expm1_neg(_mm256_min_ps(_mm256_setzero_ps(), x))), x,
                            _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
}
/* ref: z = x beta; z > threshold ? x : log1p(e^z) / beta, computed as
 * (max(z, 0) + log1p(e^-|z|)) / beta. z's rounding error zl (exact by FMA)
 * is put back, else it would be amplified |z| times in the tail:
 * e^-|z| gets the factor (1 -+ zl), max(z, 0) the term zl. log1p(w) is
 * Kahan's w ln(v) / (v - 1), v = 1 + w (w itself when v rounds to 1).
 * min_ps(z, -z) is -|z|, NaN included; an infinite z has no zl. */
static inline __m256 op_softplus(__m256 x, __m256 y, const ew_par *p) {
    (void)y;
    __m256 zero = _mm256_setzero_ps(), one = NB__V1(1.0f);
    __m256 z = _mm256_mul_ps(x, p->s), zl = _mm256_fmsub_ps(x, p->s, z);
    zl = _mm256_and_ps(zl, _mm256_cmp_ps(nb__v_abs(z), NB__V1(INFINITY), _CMP_LT_OQ));   /* 0 for inf z */
    __m256 neg = _mm256_cmp_ps(z, zero, _CMP_LT_OQ);
    __m256 w = nb__v_exp(_mm256_min_ps(z, _mm256_sub_ps(zero, z)));
    w = _mm256_fmadd_ps(w, _mm256_blendv_ps(_mm256_sub_ps(zero, zl), zl, neg), w);
    __m256 v = _mm256_add_ps(one, w);
    __m256 l = _mm256_div_ps(_mm256_mul_ps(w, nb__v_log(v)), _mm256_sub_ps(v, one));
    l = _mm256_blendv_ps(l, w, _mm256_cmp_ps(v, one, _CMP_EQ_OQ));
    __m256 pos = _mm256_and_ps(_mm256_cmp_ps(z, zero, _CMP_GT_OQ), z);
    __m256 r = _mm256_div_ps(_mm256_add_ps(pos, _mm256_add_ps(_mm256_andnot_ps(neg, zl), l)), p->s);
    return _mm256_blendv_ps(r, x, _mm256_cmp_ps(z, p->s1, _CMP_GT_OQ));
}

EW_ROW(add) EW_ROW(sub) EW_ROW(mul) EW_ROW(div) EW_ROW(maximum) EW_ROW(minimum)
EW_ROW(adds) EW_ROW(muls) EW_ROW(fill) EW_ROW(copy) EW_ROW(neg) EW_ROW(abs) EW_ROW(square)
EW_ROW(sqrt) EW_ROW(relu) EW_ROW(exp) EW_ROW(log) EW_ROW(tanh) EW_ROW(sigmoid) EW_ROW(silu)
EW_ROW(gelu) EW_ROW(gelu_tanh) EW_ROW(erf) EW_ROW(rsqrt) EW_ROW(recip) EW_ROW(sign) EW_ROW(leaky)
EW_ROW(clamp) EW_ROW(elu) EW_ROW(softplus) EW_ROW(thrbw) EW_ROW(tanhbw) EW_ROW(sigbw)
EW_ROW(sin) EW_ROW(cos) EW_ROW(mse) EW_ROW(l1) EW_ROW(gelubw) EW_ROW(pw0) EW_ROW(pw3) EW_ROW(pw4) EW_ROW(pwm2) EW_ROW(pwh) EW_ROW(pwmh)
EW_ROW(pow) EW_ROW(pwg)

/* ---- the driver: rows of the merged iteration, split over threads ---- */

/* 2-D iterations where some operand runs across rows (a transposed view):
 * walking whole rows would touch a new cache line per element of it (and
 * with a power-of-two leading dimension, all in one L1 set). Rows go in
 * blocks of EW_TILE_R, columns in pieces of EW_TILE_C; an input that runs across
 * rows is packed per block with 8x8 register transposes into a small
 * row-major buffer, which the row function then reads contiguously. */
#define EW_TILE_R 16   /* rows per block: 64 bytes, a whole cache line of a transposed input */
#define EW_TILE_C 64   /* columns per tile */

/* buf[rr][c] = element (rr, c) of an 8-row block whose rows are adjacent
 * floats and whose columns are ld bytes apart, c < n <= EW_TILE_C. */
static void ew_pack(float *buf, const char *p, int64_t ld, int64_t n) {
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 v[8];
        for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps((const float *)(p + (c + k) * ld));
        nb__tr8x8(v);
        for (int k = 0; k < 8; k++) _mm256_store_ps(buf + k * EW_TILE_C + c, v[k]);
    }
    for (; c < n; c++)
        for (int k = 0; k < 8; k++) buf[k * EW_TILE_C + c] = ((const float *)(p + c * ld))[k];
}

/* Row blocks [b0, b1) (EW_TILE_R rows each) of a 2-D iteration, tile by
 * tile; the block's full groups of 8 rows read packed copies of the inputs
 * that run across rows, the rest of its rows read them in place. */
static void ew_tiles(const ew_job *j, int64_t b0, int64_t b1) {
    const nb__iter *it = &j->it;
    int64_t rows = it->shape[0], len = it->shape[1];
    _Alignas(32) float buf[2][EW_TILE_R * EW_TILE_C];
    /* groups of 8 blocks share each column tile, so the pages of a tile's
     * columns (one per column of a transposed operand) stay in the TLB */
    for (int64_t g0 = b0; g0 < b1; g0 += 8) {
        int64_t g1 = g0 + 8 < b1 ? g0 + 8 : b1;
        for (int64_t c0 = 0; c0 < len; c0 += EW_TILE_C) {
            int64_t n = len - c0 < EW_TILE_C ? len - c0 : EW_TILE_C;
            for (int64_t b = g0; b < g1; b++) {
                int64_t r0 = b * EW_TILE_R, r1 = r0 + EW_TILE_R < rows ? r0 + EW_TILE_R : rows;
                int64_t rp = (r1 - r0) / 8 * 8;   /* rows served from the packed copies */
                bool packed[3] = {false, false, false};
                for (int o = 1; o < 3 && rp > 0; o++)
                    if (ew_across(it, o)) {
                        for (int64_t g = 0; g < rp; g += 8)
                            ew_pack(buf[o - 1] + g * EW_TILE_C, it->base[o] + (r0 + g) * 4 + c0 * it->stride[o][1],
                                    it->stride[o][1], n);
                        packed[o] = true;
                    }
                for (int64_t r = r0; r < r1; r++) {
                    char *q[3];
                    int64_t st[3];
                    for (int o = 0; o < 3; o++) {
                        bool pk = packed[o] && r - r0 < rp;
                        st[o] = pk ? 4 : it->stride[o][1];
                        q[o] = pk ? (char *)(buf[o - 1] + (r - r0) * EW_TILE_C)
                               : it->base[o] ? it->base[o] + r * it->stride[o][0] + c0 * it->stride[o][1]
                                             : NULL;
                    }
                    j->f(q[0], q[1], q[2], n, st[0], st[1], st[2], &j->par);
                }
            }
        }
    }
}


/* Runs f over the merged iteration of ops[0..nops) (out first), split
 * over threads; `tiles`: F32 operands that may use the transposed-tile walk. */
static int ew_drive(const nb_kernel_args *a, int nops, const nb_tensor *const *ops, ew_row_fn f, int64_t grain,
                    bool tiles) {
    int64_t total = nb_numel(a->out);
    if (total <= 0) return 0;
    ew_job j;
    nb__iter_init(&j.it, nops, ops);
    j.f = f;
    j.par.s = _mm256_set1_ps((float)a->scalar[0]);
    j.par.s1 = _mm256_set1_ps((float)a->scalar[1]);
    j.par.stream = tiles && total >= EW_STREAM_MIN;
    j.par.pf = j.par.stream && ew_pf_wanted(nops - 1, grain);
    j.len = j.it.shape[j.it.ndim - 1];
    int64_t rows = total / j.len;
    int nt = nb__par_threads(total, grain);
    if (tiles && ew_wants_tiles(&j.it)) {
        j.par.stream = false;   /* rows are revisited piecewise: keep out in cache */
        int64_t blocks = (rows + EW_TILE_R - 1) / EW_TILE_R;
        if (nt > blocks) nt = (int)blocks;
        if (nt <= 1) {
            ew_tiles(&j, 0, blocks);
            return 0;
        }
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1)
#endif
        for (int t = 0; t < nt; t++) ew_tiles(&j, blocks * t / nt, blocks * (t + 1) / nt);
        return 0;
    }
    ew_rows(&j, total, nt);
    return 0;
}

/* Checks the operands (all F32, as many inputs as the op has) and runs f
 * over them; declines anything else. */
static int ew_run(const nb_kernel_args *a, int nin, ew_row_fn f, int64_t grain) {
    const nb_tensor *ops[3];
    if (!ew_f32_operands(a, nin, ops)) return NB_KERNEL_DECLINE;
    return ew_drive(a, nin + 1, ops, f, grain, true);
}

#define GE NB_GRAIN_ELEMENTWISE
#define GT NB_GRAIN_TRANSCENDENTAL
#define EW_KERNEL(NAME, NIN, GRAIN) \
    static int k_##NAME(const nb_kernel_args *a) { return ew_run(a, NIN, row_##NAME, GRAIN); }

EW_KERNEL(add, 2, GE) EW_KERNEL(sub, 2, GE) EW_KERNEL(mul, 2, GE) EW_KERNEL(div, 2, GE)
EW_KERNEL(maximum, 2, GE) EW_KERNEL(minimum, 2, GE) EW_KERNEL(adds, 1, GE) EW_KERNEL(muls, 1, GE)
EW_KERNEL(neg, 1, GE) EW_KERNEL(abs, 1, GE) EW_KERNEL(square, 1, GE) EW_KERNEL(sqrt, 1, GE)
EW_KERNEL(sin, 1, GT) EW_KERNEL(cos, 1, GT) EW_KERNEL(relu, 1, GE) EW_KERNEL(exp, 1, GT) EW_KERNEL(log, 1, GT) EW_KERNEL(tanh, 1, GT)
EW_KERNEL(sigmoid, 1, GT) EW_KERNEL(silu, 1, GT) EW_KERNEL(erf, 1, GT) EW_KERNEL(fill, 0, GE)
EW_KERNEL(rsqrt, 1, GE) EW_KERNEL(recip, 1, GE) EW_KERNEL(sign, 1, GE) EW_KERNEL(leaky, 1, GE)
EW_KERNEL(elu, 1, GT) EW_KERNEL(softplus, 1, GT) EW_KERNEL(thrbw, 2, GE) EW_KERNEL(tanhbw, 2, GE)
EW_KERNEL(sigbw, 2, GE) EW_KERNEL(mse, 2, GE) EW_KERNEL(l1, 2, GE) EW_KERNEL(gelubw, 2, GT)
EW_KERNEL(pow, 2, GT)

/* POW_SCALAR: the exponents above (scalar[0], compared after rounding to
 * float, as ref's powf sees it); any other is declined. */
static int k_pows(const nb_kernel_args *a) {
    float e = (float)a->scalar[0];
    /* 1, 2 and -1 are copy, square and reciprocal */
    ew_row_fn f = e == 0.0f ? row_pw0 : e == 1.0f ? row_copy : e == 2.0f ? row_square : e == 3.0f ? row_pw3
                : e == 4.0f ? row_pw4 : e == -1.0f ? row_recip : e == -2.0f ? row_pwm2 : e == 0.5f ? row_pwh
                : e == -0.5f ? row_pwmh : NULL;
    return f ? ew_run(a, 1, f, GE) : ew_run(a, 1, row_pwg, GT);
}

/* CLAMP: scalar[0] = min, scalar[1] = max, NaN = no bound (-inf/+inf here). */
static int k_clamp(const nb_kernel_args *a) {
    nb_kernel_args b = *a;
    if (isnan(b.scalar[0])) b.scalar[0] = -INFINITY;
    if (isnan(b.scalar[1])) b.scalar[1] = INFINITY;
    return ew_run(&b, 1, row_clamp, GE);
}

/* GELU: scalar[0] = 0 the exact erf form, else the tanh approximation. */
static int k_gelu(const nb_kernel_args *a) {
    return ew_run(a, 1, a->scalar[0] != 0 ? row_gelu_tanh : row_gelu, GT);
}

/* COPY F32 -> F32 (other out dtypes convert on ref). Contiguous both sides
 * is a (threaded) memcpy; otherwise the rows run through row_copy. */
static int k_copy(const nb_kernel_args *a) {
    if (a->nin < 1 || !is_f32(a->out) || !is_f32(a->in[0])) return NB_KERNEL_DECLINE;
    int64_t n = nb_numel(a->out);
    if (n > 0 && nb_is_contiguous(a->out) && nb_is_contiguous(a->in[0]) && nb_numel(a->in[0]) == n) {
        char *o = nb_data(a->out);
        const char *x = nb_data(a->in[0]);
        if (o == x) return 0;
        /* overlapping ranges (an in-place copy between views): one memmove */
        bool overlap = o < x + n * 4 && x < o + n * 4;
        int nt = overlap ? 1 : nb__par_threads(n, 4 * NB_GRAIN_ELEMENTWISE);
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1)
#endif
        for (int t = 0; t < nt; t++) {
            int64_t lo = n * t / nt / 16 * 16, hi = t + 1 == nt ? n : n * (t + 1) / nt / 16 * 16;
            memmove(o + lo * 4, x + lo * 4, (size_t)(hi - lo) * 4);
        }
        return 0;
    }
    return ew_run(a, 1, row_copy, GE);
}

/* ---- comparisons, logical ops, masked_fill, where (ref_compare.c's
 * arguments). BOOL operands are bytes 0/1; results agree with ref exactly.
 * Rows with element stride 1 or 0 run 16 lanes at a time, any other row
 * runs ref's scalar expression. ---- */

/* 8 floats at element i of a contiguous (s = 1) or broadcast (s = 0)
 * operand, of which only k (clamped to 0..8) are read. */
static inline __m256 ew_ld8(const float *P, int64_t s, int64_t i, int64_t k) {
    if (!s) return _mm256_broadcast_ss(P);
    return k >= 8 ? _mm256_loadu_ps(P + i) : _mm256_maskload_ps(P + i, nb__tail_mask((int)(k < 0 ? 0 : k)));
}

/* Two 8-lane compare masks (elements 0-7, 8-15) as 16 bytes 0/1, in order:
 * the signed packs keep -1 and 0, the and makes -1 a 1. */
static inline __m128i ew_mask_bytes(__m256 c0, __m256 c1) {
    __m256i a = _mm256_castps_si256(c0), b = _mm256_castps_si256(c1);
    __m128i w0 = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    __m128i w1 = _mm_packs_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    return _mm_and_si128(_mm_packs_epi16(w0, w1), _mm_set1_epi8(1));
}

/* Stores the first k (<= 16) bytes of r at o. */
static inline void ew_st16(uint8_t *o, __m128i r, int64_t k) {
    if (k >= 16) {
        _mm_storeu_si128((__m128i *)o, r);
        return;
    }
    uint8_t t[16];
    _mm_storeu_si128((__m128i *)t, r);
    memcpy(o, t, (size_t)k);
}

/* row_NAME: out (bool) = x PRED y with y from in[1] or the scalar (no
 * in[1]); EXPR is ref's C expression, for the strided rows. The predicates
 * are the ordered ones except NE (unordered: NaN != anything is true). */
#define CMP_ROW(NAME, PRED, EXPR)                                                                      \
    static void row_##NAME(char *po, const char *pa, const char *pb, int64_t n, int64_t so, int64_t sa,  \
                           int64_t sb, const ew_par *p) {                                              \
        uint8_t *o = (uint8_t *)po;                                                                    \
        const float *A = (const float *)pa, *B = (const float *)pb;                                    \
        float ys = _mm256_cvtss_f32(p->s);                                                             \
        sa /= 4, sb = B ? sb / 4 : 0;                                                                  \
        if (so == 1 && (sa | 1) == 1 && (sb | 1) == 1) {                                               \
            for (int64_t i = 0; i < n; i += 16) {                                                      \
                int64_t k = n - i;                                                                     \
                __m256 y0 = B ? ew_ld8(B, sb, i, k) : p->s, y1 = B ? ew_ld8(B, sb, i + 8, k - 8) : p->s; \
                __m256 c0 = _mm256_cmp_ps(ew_ld8(A, sa, i, k), y0, PRED);                              \
                __m256 c1 = _mm256_cmp_ps(ew_ld8(A, sa, i + 8, k - 8), y1, PRED);                      \
                ew_st16(o + i, ew_mask_bytes(c0, c1), k);                                              \
            }                                                                                          \
        } else {                                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                          \
                float x = A[i * sa], y = B ? B[i * sb] : ys;                                           \
                o[i * so] = (EXPR);                                                                    \
            }                                                                                          \
        }                                                                                              \
    }

CMP_ROW(eq, _CMP_EQ_OQ, x == y) CMP_ROW(ne, _CMP_NEQ_UQ, x != y) CMP_ROW(lt, _CMP_LT_OQ, x < y)
CMP_ROW(le, _CMP_LE_OQ, x <= y) CMP_ROW(gt, _CMP_GT_OQ, x > y) CMP_ROW(ge, _CMP_GE_OQ, x >= y)

static bool is_bool(const nb_tensor *t) { return nb_dtype_of(t) == NB_DTYPE_BOOL; }

/* Tensor-tensor (nin 2) or tensor-scalar (nin 1) comparison of F32 inputs. */
static int cmp_run(const nb_kernel_args *a, int nin, ew_row_fn f) {
    if (a->nin < nin || !is_bool(a->out)) return NB_KERNEL_DECLINE;
    for (int i = 0; i < nin; i++)
        if (!is_f32(a->in[i])) return NB_KERNEL_DECLINE;
    const nb_tensor *ops[3] = {a->out, a->in[0], nin > 1 ? a->in[1] : NULL};
    return ew_drive(a, nin + 1, ops, f, GE, false);
}
#define CMP_KERNELS(NAME)                                                             \
    static int k_##NAME(const nb_kernel_args *a) { return cmp_run(a, 2, row_##NAME); } \
    static int k_##NAME##_scalar(const nb_kernel_args *a) { return cmp_run(a, 1, row_##NAME); }
CMP_KERNELS(eq) CMP_KERNELS(ne) CMP_KERNELS(lt) CMP_KERNELS(le) CMP_KERNELS(gt) CMP_KERNELS(ge)

/* 32 bytes at byte i of a contiguous (s = 1) or broadcast (s = 0) BOOL
 * operand, k of them read (the rest 0). */
static inline __m256i ew_ldb32(const uint8_t *P, int64_t s, int64_t i, int64_t k) {
    if (!s) return _mm256_set1_epi8((char)*P);
    if (k >= 32) return _mm256_loadu_si256((const __m256i *)(P + i));
    uint8_t t[32] = {0};
    memcpy(t, P + i, (size_t)k);
    return _mm256_loadu_si256((const __m256i *)t);
}

/* row_NAME on BOOL: za, zb are 0xFF where x, y are 0; VEXPR gives 0xFF
 * where the result is true; EXPR is ref's, for the strided rows. */
#define LOGIC_ROW(NAME, VEXPR, EXPR)                                                                   \
    static void row_##NAME(char *po, const char *pa, const char *pb, int64_t n, int64_t so, int64_t sa,  \
                           int64_t sb, const ew_par *p) {                                              \
        (void)p;                                                                                       \
        uint8_t *o = (uint8_t *)po;                                                                    \
        const uint8_t *A = (const uint8_t *)pa, *B = pb ? (const uint8_t *)pb : A;                     \
        sb = pb ? sb : sa;                                                                             \
        if (so == 1 && (sa | 1) == 1 && (sb | 1) == 1) {                                               \
            __m256i z = _mm256_setzero_si256(), all = _mm256_set1_epi8(-1), one = _mm256_set1_epi8(1);  \
            for (int64_t i = 0; i < n; i += 32) {                                                      \
                int64_t k = n - i < 32 ? n - i : 32;                                                   \
                __m256i za = _mm256_cmpeq_epi8(ew_ldb32(A, sa, i, k), z);                              \
                __m256i zb = _mm256_cmpeq_epi8(ew_ldb32(B, sb, i, k), z);                              \
                (void)zb, (void)all;                                                                   \
                __m256i r = _mm256_and_si256(VEXPR, one);                                              \
                if (k == 32) {                                                                         \
                    _mm256_storeu_si256((__m256i *)(o + i), r);                                        \
                } else {                                                                               \
                    uint8_t t[32];                                                                     \
                    _mm256_storeu_si256((__m256i *)t, r);                                              \
                    memcpy(o + i, t, (size_t)k);                                                       \
                }                                                                                      \
            }                                                                                          \
        } else {                                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                          \
                bool x = A[i * sa] != 0, y = B[i * sb] != 0;                                           \
                (void)y;                                                                               \
                o[i * so] = (EXPR);                                                                    \
            }                                                                                          \
        }                                                                                              \
    }

LOGIC_ROW(lnot, za, !x)
LOGIC_ROW(land, _mm256_andnot_si256(_mm256_or_si256(za, zb), all), x && y)
LOGIC_ROW(lor, _mm256_andnot_si256(_mm256_and_si256(za, zb), all), x || y)

/* LOGICAL_NOT/AND/OR with BOOL inputs (other dtypes stay on ref). */
static int logic_run(const nb_kernel_args *a, int nin, ew_row_fn f) {
    if (a->nin < nin || !is_bool(a->out)) return NB_KERNEL_DECLINE;
    for (int i = 0; i < nin; i++)
        if (!is_bool(a->in[i])) return NB_KERNEL_DECLINE;
    const nb_tensor *ops[3] = {a->out, a->in[0], nin > 1 ? a->in[1] : NULL};
    return ew_drive(a, nin + 1, ops, f, 4 * GE, false);
}
static int k_lnot(const nb_kernel_args *a) { return logic_run(a, 1, row_lnot); }
static int k_land(const nb_kernel_args *a) { return logic_run(a, 2, row_land); }
static int k_lor(const nb_kernel_args *a) { return logic_run(a, 2, row_lor); }

/* 8 bool bytes at element i (contiguous s = 1 or broadcast s = 0, k read)
 * as an 8-lane float mask: all-ones where the byte is nonzero. */
static inline __m256 ew_ldmask8(const uint8_t *M, int64_t s, int64_t i, int64_t k) {
    __m128i b;
    if (!s) {
        b = _mm_set1_epi8((char)*M);
    } else if (k >= 8) {
        b = _mm_loadl_epi64((const __m128i *)(M + i));
    } else {
        uint8_t t[16] = {0};
        if (k > 0) memcpy(t, M + i, (size_t)k);
        b = _mm_loadu_si128((const __m128i *)t);
    }
    __m256i w = _mm256_cvtepu8_epi32(b);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()));
}

/* masked_fill: out = m ? v : x, x from in[0] (F32), m from in[1] (BOOL). */
static void row_mfill(char *po, const char *pa, const char *pm, int64_t n, int64_t so, int64_t sa, int64_t sm,
                      const ew_par *p) {
    float *o = (float *)po;
    const float *A = (const float *)pa;
    const uint8_t *M = (const uint8_t *)pm;
    so /= 4, sa /= 4;
    if (so == 1 && (sa | 1) == 1 && (sm | 1) == 1) {
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(o + i, _mm256_blendv_ps(ew_ld8(A, sa, i, 8), p->s, ew_ldmask8(M, sm, i, 8)));
        if (i < n) {
            __m256i t = nb__tail_mask((int)(n - i));
            _mm256_maskstore_ps(o + i, t, _mm256_blendv_ps(ew_ld8(A, sa, i, n - i), p->s, ew_ldmask8(M, sm, i, n - i)));
        }
    } else {
        float v = _mm256_cvtss_f32(p->s);
        for (int64_t i = 0; i < n; i++) o[i * so] = M[i * sm] ? v : A[i * sa];
    }
}
static int k_mfill(const nb_kernel_args *a) {
    if (a->nin < 2 || !is_f32(a->out) || !is_f32(a->in[0]) || !is_bool(a->in[1])) return NB_KERNEL_DECLINE;
    const nb_tensor *ops[3] = {a->out, a->in[0], a->in[1]};
    return ew_drive(a, 3, ops, row_mfill, GE, false);
}

/* Where thread t of nt starts in a flat range of n elements: a multiple of
 * 16 (whole vectors, aligned tails), n for t = nt. */
static inline int64_t ew_cut(int64_t n, int t, int nt) { return t == nt ? n : n * t / nt / 16 * 16; }

/* How an operand of out's shape lines up with a contiguous out of n
 * elements: 1 contiguous, 0 one value broadcast everywhere, -1 otherwise. */
static int ew_flat(const nb_tensor *t, int64_t n) {
    if (nb_is_contiguous(t) && nb_numel(t) == n) return 1;
    for (int d = 0; d < nb_ndim(t); d++)
        if (nb_shape(t)[d] > 1 && nb_strides(t)[d] != 0) return -1;
    return 0;
}

/* where's second pass on other layouts: out = m ? x : out, x from in[0]
 * (F32), m from in[1] (BOOL); out already holds y. */
static void row_wsel(char *po, const char *pa, const char *pm, int64_t n, int64_t so, int64_t sa, int64_t sm,
                     const ew_par *p) {
    (void)p;
    float *o = (float *)po;
    const float *A = (const float *)pa;
    const uint8_t *M = (const uint8_t *)pm;
    so /= 4, sa /= 4;
    if (so == 1 && (sa | 1) == 1 && (sm | 1) == 1) {
        for (int64_t i = 0; i < n; i += 8) {
            int64_t k = n - i;
            __m256 r = _mm256_blendv_ps(ew_ld8(o, 1, i, k), ew_ld8(A, sa, i, k), ew_ldmask8(M, sm, i, k));
            if (k >= 8) _mm256_storeu_ps(o + i, r);
            else _mm256_maskstore_ps(o + i, nb__tail_mask((int)k), r);
        }
    } else {
        for (int64_t i = 0; i < n; i++)
            if (M[i * sm]) o[i * so] = A[i * sa];
    }
}

/* WHERE: out = c ? x : y with x = in[0], y = in[1] (F32), c = in[2]
 * (BOOL). Four operands are one more than the iterator walks: a contiguous
 * out whose inputs are each contiguous or a single broadcast value goes in
 * one flat pass; any other layout in two passes of the iterator (out = y,
 * then out = c ? x : out), as ref does but without its branches. */
static int k_where(const nb_kernel_args *a) {
    if (a->nin < 3 || !is_f32(a->out) || !is_f32(a->in[0]) || !is_f32(a->in[1]) || !is_bool(a->in[2]))
        return NB_KERNEL_DECLINE;
    int64_t n = nb_numel(a->out);
    if (n <= 0) return 0;
    int sx = ew_flat(a->in[0], n), sy = ew_flat(a->in[1], n), sc = ew_flat(a->in[2], n);
    if (!nb_is_contiguous(a->out) || sx < 0 || sy < 0 || sc < 0) {
        const nb_tensor *cp[3] = {a->out, a->in[1], NULL}, *sel[3] = {a->out, a->in[0], a->in[2]};
        ew_drive(a, 2, cp, row_copy, GE, false);
        return ew_drive(a, 3, sel, row_wsel, GE, false);
    }
    float *o = nb_data(a->out);
    const float *X = nb_data(a->in[0]), *Y = nb_data(a->in[1]);
    const uint8_t *C = nb_data(a->in[2]);
    int nt = nb__par_threads(n, GE);
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) {
        int64_t lo = ew_cut(n, t, nt), hi = ew_cut(n, t + 1, nt);
        for (int64_t i = lo; i < hi; i += 8) {
            int64_t k = hi - i;
            __m256 r = _mm256_blendv_ps(ew_ld8(Y, sy, i, k), ew_ld8(X, sx, i, k), ew_ldmask8(C, sc, i, k));
            if (k >= 8) _mm256_storeu_ps(o + i, r);
            else _mm256_maskstore_ps(o + i, nb__tail_mask((int)k), r);
        }
    }
    return 0;
}

/* ---- element-wise losses on flat operands: smooth_l1 (forward), the
 * derivatives of l1 and smooth_l1, binary cross entropy with logits
 * (forward, d/dx) ----
 * out contiguous, each input contiguous or one value broadcast everywhere
 * (ew_flat: the op layer's expand of a mean's gradient is the latter);
 * other layouts, weight / pos_weight and d/dy of bce decline to ref.
 *  - smooth_l1 and the l1 / smooth_l1 derivatives do ref's double
 *    operations (d = x - y exact in double; 0.5 d d / beta, |d| - beta / 2,
 *    g * d / beta, g * sign(d), g / beta): bitwise ref's.
 *  - bce with logits: max(x, 0) - x y + log1p(e^-|x|) in double, the log1p
 *    term (<= ln 2) in F32 (op_softplus of -|x|, within 4 ULP), so the loss,
 *    at least that term for y in [0, 1], is within ~5 ULP of exact. ref's
 *    (1 - y) x + softplus(-x) is the same value but cancels for large |x|
 *    (x = -30, y = 0: e^-30 from -30 + 30.0000000000001). A vector with an
 *    infinite or NaN x takes ref's formula (libm, double) lane by lane.
 *  - bce d/dx: gw (sigmoid(x) - y), sigmoid in F32 (nb__v_sigmoid, relative
 *    error ~1 ULP), the rest in double: within ~2^-23 |gw| of ref's double
 *    sigmoid. */
typedef void (*ew_flat_fn)(float *o, const float *const *in, const int64_t *st, int64_t i0, int64_t i1,
                           const double *s);

/* Runs f over [0, numel) of a contiguous out, chunks of 16-element
 * multiples over threads; nin inputs, each flat (else a decline). */
static int ew_flat_drive(const nb_kernel_args *a, int nin, ew_flat_fn f, int64_t grain) {
    nb_tensor *out = a->out;
    int64_t n = nb_numel(out);
    if (!is_f32(out) || !nb_is_contiguous(out) || a->nin < nin) return NB_KERNEL_DECLINE;
    const float *in[3];
    int64_t st[3];
    for (int k = 0; k < nin; k++) {
        if (!a->in[k] || !is_f32(a->in[k])) return NB_KERNEL_DECLINE;
        int fl = ew_flat(a->in[k], n);
        if (fl < 0) return NB_KERNEL_DECLINE;
        st[k] = fl;
        in[k] = n ? nb_data(a->in[k]) : NULL;
    }
    if (n == 0) return 0;
    float *o = nb_data(out);
    int nt = nb__par_threads(n, grain);
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) f(o, in, st, ew_cut(n, t, nt), ew_cut(n, t + 1, nt), a->scalar);
    return 0;
}

static inline void ew_st8(float *o, int64_t i, int64_t k, __m256 v) {
    if (k >= 8) _mm256_storeu_ps(o + i, v);
    else _mm256_maskstore_ps(o + i, nb__tail_mask((int)k), v);
}
static inline __m256d ew_abs_pd(__m256d d) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), d); }

/* ref's reg_loss (smooth_l1) of d, and reg_deriv of order k (1, 2; else 0) */
static inline __m256d sl1_pd(__m256d d, __m256d beta) {
    __m256d ad = ew_abs_pd(d), h = _mm256_set1_pd(0.5);
    __m256d q = _mm256_div_pd(_mm256_mul_pd(_mm256_mul_pd(h, d), d), beta);
    return _mm256_blendv_pd(_mm256_sub_pd(ad, _mm256_mul_pd(h, beta)), q, _mm256_cmp_pd(ad, beta, _CMP_LT_OQ));
}
static inline __m256d regd_pd(__m256d d, __m256d beta, int order, bool smooth) {
    __m256d z = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    __m256d in = smooth ? _mm256_cmp_pd(ew_abs_pd(d), beta, _CMP_LT_OQ) : z;
    if (order == 1) {
        __m256d sg = _mm256_sub_pd(_mm256_and_pd(_mm256_cmp_pd(d, z, _CMP_GT_OQ), one),
                                   _mm256_and_pd(_mm256_cmp_pd(d, z, _CMP_LT_OQ), one));
        return _mm256_blendv_pd(sg, _mm256_div_pd(d, beta), in);
    }
    if (order == 2) return _mm256_blendv_pd(z, _mm256_div_pd(one, beta), in);
    return z;
}

static void flat_sl1(float *o, const float *const *in, const int64_t *st, int64_t i0, int64_t i1, const double *s) {
    __m256d beta = _mm256_set1_pd(s[0]);
    for (int64_t i = i0; i < i1; i += 8) {
        __m256d x0, x1, y0, y1;
        ew_pd2(ew_ld8(in[0], st[0], i, i1 - i), &x0, &x1);
        ew_pd2(ew_ld8(in[1], st[1], i, i1 - i), &y0, &y1);
        ew_st8(o, i, i1 - i, ew_ps2(sl1_pd(_mm256_sub_pd(x0, y0), beta), sl1_pd(_mm256_sub_pd(x1, y1), beta)));
    }
}

/* in: x, y, g; s[0] beta, s[1] the order */
static inline void flat_regd(float *o, const float *const *in, const int64_t *st, int64_t i0, int64_t i1,
                             const double *s, bool smooth) {
    __m256d beta = _mm256_set1_pd(s[0]);
    int order = (int)s[1];
    for (int64_t i = i0; i < i1; i += 8) {
        __m256d x0, x1, y0, y1, g0, g1;
        ew_pd2(ew_ld8(in[0], st[0], i, i1 - i), &x0, &x1);
        ew_pd2(ew_ld8(in[1], st[1], i, i1 - i), &y0, &y1);
        ew_pd2(ew_ld8(in[2], st[2], i, i1 - i), &g0, &g1);
        __m256d r0 = _mm256_mul_pd(g0, regd_pd(_mm256_sub_pd(x0, y0), beta, order, smooth));
        __m256d r1 = _mm256_mul_pd(g1, regd_pd(_mm256_sub_pd(x1, y1), beta, order, smooth));
        ew_st8(o, i, i1 - i, ew_ps2(r0, r1));
    }
}
static void flat_l1d(float *o, const float *const *in, const int64_t *st, int64_t i0, int64_t i1, const double *s) {
    flat_regd(o, in, st, i0, i1, s, false);
}
static void flat_sl1d(float *o, const float *const *in, const int64_t *st, int64_t i0, int64_t i1, const double *s) {
    flat_regd(o, in, st, i0, i1, s, true);
}

/* ref's formula for one element (non-finite x) */
static float bce_ref1(double x, double y) {
    double sp = fmax(-x, 0.0) + log1p(exp(-fabs(x)));
    return (float)((1 - y) * x + sp);
}

static void flat_bce(float *o, const float *const *in, const int64_t *st, int64_t i0, int64_t i1, const double *s) {
    (void)s;
    ew_par sp1 = {.s = NB__V1(1.0f), .s1 = NB__V1(INFINITY)};   /* softplus, beta 1, no threshold */
    for (int64_t i = i0; i < i1; i += 8) {
        int64_t k = i1 - i;
        __m256 x = ew_ld8(in[0], st[0], i, k), y = ew_ld8(in[1], st[1], i, k);
        if (_mm256_movemask_ps(_mm256_cmp_ps(nb__v_abs(x), NB__V1(INFINITY), _CMP_LT_OQ)) != 0xFF) {
            float xs[8], ys[8], r[8];
            _mm256_storeu_ps(xs, x);
            _mm256_storeu_ps(ys, y);
            for (int j = 0; j < 8; j++) r[j] = bce_ref1(xs[j], ys[j]);
            ew_st8(o, i, k, _mm256_loadu_ps(r));
            continue;
        }
        __m256 l = op_softplus(_mm256_sub_ps(_mm256_setzero_ps(), nb__v_abs(x)), x, &sp1);   /* log1p(e^-|x|) */
        __m256d x0, x1, y0, y1, l0, l1;
        ew_pd2(x, &x0, &x1);
        ew_pd2(y, &y0, &y1);
        ew_pd2(l, &l0, &l1);
        __m256d z = _mm256_setzero_pd();
        __m256d r0 = _mm256_add_pd(_mm256_sub_pd(_mm256_max_pd(x0, z), _mm256_mul_pd(x0, y0)), l0);
        __m256d r1 = _mm256_add_pd(_mm256_sub_pd(_mm256_max_pd(x1, z), _mm256_mul_pd(x1, y1)), l1);
        ew_st8(o, i, k, ew_ps2(r0, r1));
    }
}

/* in: x, y, gw; d/dx = gw (sigmoid(x) - y) */
static void flat_bced(float *o, const float *const *in, const int64_t *st, int64_t i0, int64_t i1, const double *s) {
    (void)s;
    for (int64_t i = i0; i < i1; i += 8) {
        int64_t k = i1 - i;
        __m256d q0, q1, y0, y1, g0, g1;
        ew_pd2(nb__v_sigmoid(ew_ld8(in[0], st[0], i, k)), &q0, &q1);
        ew_pd2(ew_ld8(in[1], st[1], i, k), &y0, &y1);
        ew_pd2(ew_ld8(in[2], st[2], i, k), &g0, &g1);
        ew_st8(o, i, k, ew_ps2(_mm256_mul_pd(g0, _mm256_sub_pd(q0, y0)), _mm256_mul_pd(g1, _mm256_sub_pd(q1, y1))));
    }
}

static int k_sl1(const nb_kernel_args *a) { return ew_flat_drive(a, 2, flat_sl1, GE); }
static int k_l1d(const nb_kernel_args *a) { return ew_flat_drive(a, 3, flat_l1d, GE); }
static int k_sl1d(const nb_kernel_args *a) { return ew_flat_drive(a, 3, flat_sl1d, GE); }
static int k_bce(const nb_kernel_args *a) {
    if ((a->nin > 2 && a->in[2]) || (a->nin > 3 && a->in[3])) return NB_KERNEL_DECLINE;   /* weight, pos_weight */
    return ew_flat_drive(a, 2, flat_bce, GT);
}
static int k_bced(const nb_kernel_args *a) {
    if (a->scalar[0] != 0 || (a->nin > 3 && a->in[3])) return NB_KERNEL_DECLINE;   /* d/dy, pos_weight */
    return ew_flat_drive(a, 3, flat_bced, GT);
}

#define REG(OP, FN) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_" #FN, 10, k_##FN}
#define REG_AS(OP, FN, NAME) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_" NAME, 10, k_##FN}
#define REG_BOOL(OP, FN, NAME) {NB_OP_##OP, NB_DTYPE_BOOL, NB_ISA_AVX2, "avx2_" NAME, 10, k_##FN}

void nb__avx2_elementwise_register(void) {
    static const nb_kernel_desc ks[] = {
        REG(ADD, add),         REG(SUB, sub),         REG(MUL, mul),         REG(DIV, div),         REG(POW, pow),
        REG(MAXIMUM, maximum), REG(MINIMUM, minimum), REG_AS(ADD_SCALAR, adds, "add_scalar"),
        REG_AS(MUL_SCALAR, muls, "mul_scalar"), REG_AS(POW_SCALAR, pows, "pow_scalar"),
        REG_AS(MSE_LOSS, mse, "mse_loss"), REG_AS(L1_LOSS, l1, "l1_loss"),
        REG(NEG, neg),         REG(ABS, abs),         REG(SQUARE, square),   REG(SQRT, sqrt),
        REG(RELU, relu),       REG(EXP, exp),         REG(LOG, log),         REG(TANH, tanh),
        REG(SIGMOID, sigmoid), REG(SILU, silu),       REG(GELU, gelu),       REG(FILL, fill),
        REG(COPY, copy),       REG(ERF, erf),         REG(SIN, sin),         REG(COS, cos),
        REG(RSQRT, rsqrt),     REG_AS(RECIPROCAL, recip, "reciprocal"), REG(SIGN, sign),
        REG_AS(LEAKY_RELU, leaky, "leaky_relu"), REG(CLAMP, clamp), REG(ELU, elu), REG(SOFTPLUS, softplus),
        REG(EQ, eq), REG(NE, ne), REG(LT, lt), REG(LE, le), REG(GT, gt), REG(GE, ge),
        REG(EQ_SCALAR, eq_scalar), REG(NE_SCALAR, ne_scalar), REG(LT_SCALAR, lt_scalar),
        REG(LE_SCALAR, le_scalar), REG(GT_SCALAR, gt_scalar), REG(GE_SCALAR, ge_scalar),
        REG_AS(MASKED_FILL, mfill, "masked_fill"), REG(WHERE, where),
        REG_AS(THRESHOLD_BACKWARD, thrbw, "threshold_backward"),
        REG_AS(TANH_BACKWARD, tanhbw, "tanh_backward"), REG_AS(SIGMOID_BACKWARD, sigbw, "sigmoid_backward"),
        REG_AS(GELU_BACKWARD, gelubw, "gelu_backward"),
        REG_AS(SMOOTH_L1_LOSS, sl1, "smooth_l1_loss"), REG_AS(L1_LOSS_BACKWARD, l1d, "l1_loss_backward"),
        REG_AS(SMOOTH_L1_LOSS_BACKWARD, sl1d, "smooth_l1_loss_backward"),
        REG_AS(BCE_WITH_LOGITS, bce, "bce_with_logits"), REG_AS(BCE_WITH_LOGITS_BACKWARD, bced, "bce_with_logits_bwd"),
        REG_BOOL(LOGICAL_NOT, lnot, "logical_not"), REG_BOOL(LOGICAL_AND, land, "logical_and"),
        REG_BOOL(LOGICAL_OR, lor, "logical_or"),
    };
    NB__REGISTER_ALL(ks);
}
