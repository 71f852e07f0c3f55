/* avx512_elementwise.c — AVX-512 kernels for the F32 element-wise ops:
 * add sub mul div maximum minimum (any broadcast), add_scalar mul_scalar,
 * neg abs square relu, exp log tanh sigmoid silu erf gelu (both forms),
 * and the activation backwards threshold_backward (relu's), tanh_backward,
 * sigmoid_backward and gelu_backward.
 *
 * They are 16-lane twins of the same ops in ../avx2/avx2_elementwise.c,
 * with the same arguments (ref_math.c, ref_compare.c) and the same row
 * walk (../ew_driver.h: the registry's merged iteration, rows split over
 * OpenMP threads, few long rows cut into 16-element-multiple chunks). The
 * math is vmath512.h, a lane-for-lane port of ../avx2/vmath.h, and each op
 * body does the AVX2 body's IEEE operations in the same order, so every
 * result is bitwise the AVX2 kernel's (tests/kernels/test_avx512.c): the
 * exact ops (add ... relu, the threshold/tanh/sigmoid backwards) are
 * therefore bitwise ref's, and the transcendental ones within the AVX2
 * test's bounds of the F64 ref.
 * Layouts: a row whose operands have element stride 1 or 0 (broadcast)
 * runs 32 lanes per step, then 16, then one masked tail (masked loads and
 * stores: no element outside the row is touched); that covers same-shape,
 * scalar, row ([M,N]+[N]) and column ([M,N]+[M,1]) broadcast. Any other
 * row is gathered 16 elements at a time. A 2-D walk where an input runs
 * across rows (a transposed view) is declined: the AVX2 kernel serves it
 * with its packed tiles. Non-F32 operands are declined too.
 * Outputs of EW512_STREAM_MIN or more elements are written with
 * non-temporal stores after a masked head up to a 64-byte boundary, as the
 * AVX2 kernels do past the same size.
 * Which of these the registry tries before the AVX2 twin was measured
 * (see the table at the end): the transcendental ones and a few cheap
 * ones that gain in cache; the others serve after AVX2 (what it declines).
 */
#include "kernels/kernels.h"
#include "nb_config.h"
#include "vmath512.h"
#define EW_VEC __m512
#define EW_W 16
#define EW_MASK __mmask16
#define EW_TAIL(k) nb__tail_mask16(k)
#define EW_LD(p) _mm512_loadu_ps(p)
#define EW_ST(p, v) _mm512_storeu_ps(p, v)
#define EW_STREAM(p, v) _mm512_stream_ps(p, v)
#define EW_LDM(p, m) _mm512_maskz_loadu_ps(m, p)
#define EW_STM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define EW_SET1(p) _mm512_set1_ps(*(p))
#include "../ew_driver.h"

#include <math.h>
#include <stdint.h>

/* The AVX2 kernels' EW_STREAM_MIN (avx2_elementwise.c): outputs this large
 * would only evict the inputs from the caches. */
#define EW512_STREAM_MIN (4 << 20)

/* The op bodies on 16 lanes: x from in[0], y from in[1]. Selects use
 * masks where the AVX2 bodies blend with compare vectors: the same lanes. */
static inline __m512 op_add(__m512 x, __m512 y, const ew_par *p) { (void)p; return _mm512_add_ps(x, y); }
static inline __m512 op_sub(__m512 x, __m512 y, const ew_par *p) { (void)p; return _mm512_sub_ps(x, y); }
static inline __m512 op_mul(__m512 x, __m512 y, const ew_par *p) { (void)p; return _mm512_mul_ps(x, y); }
static inline __m512 op_div(__m512 x, __m512 y, const ew_par *p) { (void)p; return _mm512_div_ps(x, y); }
/* x > y ? x : y as ref; unordered lanes take x + y (a NaN) */
static inline __m512 op_maximum(__m512 x, __m512 y, const ew_par *p) {
    (void)p;
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, y, _CMP_UNORD_Q), _mm512_max_ps(x, y), _mm512_add_ps(x, y));
}
static inline __m512 op_minimum(__m512 x, __m512 y, const ew_par *p) {
    (void)p;
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, y, _CMP_UNORD_Q), _mm512_min_ps(x, y), _mm512_add_ps(x, y));
}
static inline __m512 op_adds(__m512 x, __m512 y, const ew_par *p) { (void)y; return _mm512_add_ps(x, p->s); }
static inline __m512 op_muls(__m512 x, __m512 y, const ew_par *p) { (void)y; return _mm512_mul_ps(x, p->s); }
static inline __m512 op_neg(__m512 x, __m512 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm512_xor_ps(x, NB__W1(-0.0f));
}
static inline __m512 op_abs(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_abs(x); }
static inline __m512 op_square(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return _mm512_mul_ps(x, x); }
/* ref: x < 0 ? 0 : x (relu(-0) = -0, relu(NaN) = NaN): lanes not below 0 keep x */
static inline __m512 op_relu(__m512 x, __m512 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NLT_UQ), x);
}
/* activation backwards: x = g, y = the saved output (gelu: input), rounded
 * op by op as ref. threshold: y <= t ? 0 : g (a NaN y passes g) */
static inline __m512 op_thrbw(__m512 x, __m512 y, const ew_par *p) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, p->s, _CMP_NLE_UQ), x);
}
static inline __m512 op_tanhbw(__m512 x, __m512 y, const ew_par *p) {
    (void)p;
    return _mm512_mul_ps(x, _mm512_sub_ps(NB__W1(1.0f), _mm512_mul_ps(y, y)));
}
static inline __m512 op_sigbw(__m512 x, __m512 y, const ew_par *p) {
    (void)p;
    return _mm512_mul_ps(x, _mm512_mul_ps(y, _mm512_sub_ps(NB__W1(1.0f), y)));
}
/* gelu backward, both forms: avx2_elementwise.c's op_gelubw (see there) */
static inline __m512 op_gelubw(__m512 x, __m512 y, const ew_par *p) {
    __m512 y2, d;
    if (_mm512_cmp_ps_mask(p->s, _mm512_setzero_ps(), _CMP_NEQ_UQ)) {
        __m512 inf_nan = _mm512_sub_ps(y, y);
        y = _mm512_max_ps(NB__W1(-10.0f), _mm512_min_ps(NB__W1(10.0f), y));
        y2 = _mm512_mul_ps(y, y);
        __m512 c = NB__W1(0.79788456080286535588f), k = NB__W1(0.044715f);
        __m512 t = nb__w_tanh(_mm512_mul_ps(c, _mm512_fmadd_ps(_mm512_mul_ps(k, y2), y, y)));
        __m512 du = _mm512_mul_ps(c, _mm512_fmadd_ps(NB__W1(3.0f * 0.044715f), y2, NB__W1(1.0f)));
        __m512 sech2 = _mm512_fnmadd_ps(t, t, NB__W1(1.0f));
        d = _mm512_fmadd_ps(_mm512_mul_ps(NB__W1(0.5f), y), _mm512_mul_ps(sech2, du),
                            _mm512_fmadd_ps(NB__W1(0.5f), t, NB__W1(0.5f)));
        d = _mm512_add_ps(d, inf_nan);
    } else {
        __m512 ax = _mm512_min_ps(NB__W1(14.849242f), nb__w_abs(y));
        __m512 sq = _mm512_mul_ps(ax, ax);
        __m512 hi = _mm512_mul_ps(sq, NB__W1(0.5f)), lo = _mm512_mul_ps(_mm512_fmsub_ps(ax, ax, sq), NB__W1(0.5f));
        __m512 e = _mm512_mul_ps(nb__w_exp(_mm512_xor_ps(hi, NB__W1(-0.0f))), _mm512_sub_ps(NB__W1(1.0f), lo));
        __m512 z = _mm512_mul_ps(ax, NB__W1(0.707106781f));
        __m512 t = _mm512_div_ps(NB__W1(1.0f), _mm512_fmadd_ps(z, NB__W1(0.5f), NB__W1(1.0f)));
        __m512 c = _mm512_mul_ps(_mm512_mul_ps(t, nb__w_erfc_h(t)), _mm512_mul_ps(e, NB__W1(0.5f)));
        __m512 big = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ),
                                          _mm512_sub_ps(NB__W1(1.0f), c), c);
        __m512 zs = _mm512_mul_ps(y, NB__W1(0.70710678118654752440f));
        __m512 small = _mm512_fmadd_ps(NB__W1(0.5f), _mm512_mul_ps(zs, nb__w_erf_small(_mm512_mul_ps(zs, zs))),
                                       NB__W1(0.5f));
        __m512 cdf = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, NB__W1(1.0f), _CMP_LT_OQ), big, small);
        d = _mm512_fmadd_ps(y, _mm512_mul_ps(e, NB__W1(0.39894228040143267794f)), cdf);
    }
    return _mm512_mul_ps(x, d);
}
static inline __m512 op_exp(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_exp(x); }
static inline __m512 op_log(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_log(x); }
static inline __m512 op_tanh(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_tanh(x); }
static inline __m512 op_sigmoid(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_sigmoid(x); }
static inline __m512 op_silu(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_silu(x); }
static inline __m512 op_erf(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_erf(x); }
static inline __m512 op_gelu(__m512 x, __m512 y, const ew_par *p) { (void)y, (void)p; return nb__w_gelu_erf(x); }
static inline __m512 op_gelu_tanh(__m512 x, __m512 y, const ew_par *p) {
    (void)y, (void)p;
    return nb__w_gelu_tanh(x);
}

EW_ROW(add) EW_ROW(sub) EW_ROW(mul) EW_ROW(div) EW_ROW(maximum) EW_ROW(minimum) EW_ROW(adds) EW_ROW(muls)
EW_ROW(neg) EW_ROW(abs) EW_ROW(square) EW_ROW(relu) EW_ROW(thrbw) EW_ROW(tanhbw) EW_ROW(sigbw) EW_ROW(gelubw)
EW_ROW(exp) EW_ROW(log) EW_ROW(tanh) EW_ROW(sigmoid) EW_ROW(silu) EW_ROW(erf) EW_ROW(gelu) EW_ROW(gelu_tanh)

/* out = op(in[0] [, in[1]]) over the merged iteration, split over threads;
 * declines other dtypes and the transposed 2-D walks (see the top). */
static int ew_run(const nb_kernel_args *a, int nin, ew_row_fn f, int64_t grain) {
    const nb_tensor *ops[3];
    if (!ew_f32_operands(a, nin, ops)) return NB_KERNEL_DECLINE;
    int64_t total = nb_numel(a->out);
    ew_job j;
    nb__iter_init(&j.it, nin + 1, ops);
    if (ew_wants_tiles(&j.it)) return NB_KERNEL_DECLINE;
    if (total <= 0) return 0;
    j.f = f;
    j.par.s = _mm512_set1_ps((float)a->scalar[0]);
    j.par.s1 = _mm512_set1_ps((float)a->scalar[1]);
    j.par.stream = total >= EW512_STREAM_MIN;
    j.par.pf = j.par.stream && ew_pf_wanted(nin, grain);
    j.len = j.it.shape[j.it.ndim - 1];
    ew_rows(&j, total, nb__par_threads(total, grain));
    return 0;
}

#define GE NB_GRAIN_ELEMENTWISE
#define GT NB_GRAIN_TRANSCENDENTAL
#define EW_KERNEL(NAME, NIN, GRAIN) \
    static int k_##NAME(const nb_kernel_args *a) { return ew_run(a, NIN, row_##NAME, GRAIN); }
/* the grains of the AVX2 twins */
EW_KERNEL(add, 2, GE) EW_KERNEL(sub, 2, GE) EW_KERNEL(mul, 2, GE) EW_KERNEL(div, 2, GE)
EW_KERNEL(maximum, 2, GE) EW_KERNEL(minimum, 2, GE) EW_KERNEL(adds, 1, GE) EW_KERNEL(muls, 1, GE)
EW_KERNEL(neg, 1, GE) EW_KERNEL(abs, 1, GE) EW_KERNEL(square, 1, GE) EW_KERNEL(relu, 1, GE)
EW_KERNEL(thrbw, 2, GE) EW_KERNEL(tanhbw, 2, GE) EW_KERNEL(sigbw, 2, GE) EW_KERNEL(gelubw, 2, GT)
EW_KERNEL(exp, 1, GT) EW_KERNEL(log, 1, GT) EW_KERNEL(tanh, 1, GT) EW_KERNEL(sigmoid, 1, GT)
EW_KERNEL(silu, 1, GT) EW_KERNEL(erf, 1, GT)

/* GELU: scalar[0] = 0 the exact erf form, else the tanh approximation. */
static int k_gelu(const nb_kernel_args *a) {
    return ew_run(a, 1, a->scalar[0] != 0 ? row_gelu_tanh : row_gelu, GT);
}

/* Ranks by measurement (kernels.h): avx2 time / avx512 time on this
 * AVX-512 Xeon, 1 thread, the two kernels alternated call by call in one
 * process (medians of 21-31 calls, two runs), at (64, 1024) (in cache) and
 * (16384, 1024) (16M floats, memory-bound):
 *   exp 1.39 / 0.99-1.01, log 2.0-2.2 / 1.36-1.48, tanh 1.43-1.50 / 1.54-1.89,
 *   sigmoid 1.43-1.75 / 1.34-1.54, silu 1.54-1.74 / 1.33-1.56, erf 1.64-1.66 /
 *   1.95-2.11, gelu 1.50-1.55 / 1.77-1.94, gelu tanh 1.63-1.65 / 1.51-1.74,
 *   gelu_backward 1.49-1.56 / 1.90-1.91, maximum 1.22-1.32 / 1.02-1.04,
 *   relu 1.06-1.31 / 0.98-1.05, threshold_backward 1.12-1.39 / 0.99-1.03,
 *   sigmoid_backward 1.30-1.43 / 0.99-1.00, square 1.53-1.88 / 0.97:
 *   first (W: the in-cache gain, no loss in memory);
 *   add 1.02-1.05 / 0.88-1.00 (a row broadcast 1.12-1.27 / 0.97-1.00), mul
 *   0.92-1.06 / 0.92, div 0.91-0.94 / 0.98-0.99, neg 0.99-1.04 / 0.96-0.97,
 *   add_scalar 1.00-1.11 / 0.94-1.00, mul_scalar 1.07-1.08 / 0.93-1.01,
 *   tanh_backward 1.01-1.29 / 0.98-1.01: after AVX2 (L: no steady 3%).
 *   sub, minimum and abs are ranked as add, maximum and neg. */
#define W NB__PRIO_AVX512_WINS
#define L NB__PRIO_AVX512_LOSES
#define REG(OP, FN, NAME, PRIO) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_" NAME, PRIO, k_##FN}
void nb__avx512_elementwise_register(void) {
    static const nb_kernel_desc ks[] = {
        REG(ADD, add, "add", L), REG(SUB, sub, "sub", L), REG(MUL, mul, "mul", L), REG(DIV, div, "div", L),
        REG(MAXIMUM, maximum, "maximum", W), REG(MINIMUM, minimum, "minimum", W),
        REG(ADD_SCALAR, adds, "add_scalar", L), REG(MUL_SCALAR, muls, "mul_scalar", L),
        REG(NEG, neg, "neg", L), REG(ABS, abs, "abs", L), REG(SQUARE, square, "square", W), REG(RELU, relu, "relu", W),
        REG(THRESHOLD_BACKWARD, thrbw, "threshold_backward", W), REG(TANH_BACKWARD, tanhbw, "tanh_backward", L),
        REG(SIGMOID_BACKWARD, sigbw, "sigmoid_backward", W), REG(GELU_BACKWARD, gelubw, "gelu_backward", W),
        REG(EXP, exp, "exp", W), REG(LOG, log, "log", W), REG(TANH, tanh, "tanh", W),
        REG(SIGMOID, sigmoid, "sigmoid", W), REG(SILU, silu, "silu", W), REG(ERF, erf, "erf", W),
        REG(GELU, gelu, "gelu", W),
    };
    NB__REGISTER_ALL(ks);
}
