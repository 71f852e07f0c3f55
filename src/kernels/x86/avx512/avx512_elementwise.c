/* avx512_elementwise.c — AVX-512 kernels for the compute-bound F32
 * element-wise ops: exp log tanh sigmoid, and the fused activation
 * backwards tanh_backward (g * (1 - y*y)) and sigmoid_backward
 * (g * (y * (1 - y))).
 *
 * They are 16-lane twins of the same ops in ../avx2/avx2_elementwise.c,
 * with the same arguments (ref_math.c, ref_compare.c): out and in[0]
 * (in[1] for the backwards) F32 of out's shape. The math is vmath512.h, a
 * lane-for-lane port of ../avx2/vmath.h, and the backwards do the AVX2
 * kernel's (and ref's) IEEE operations in the same order, so every result
 * is bitwise the AVX2 kernel's (tests/kernels/test_avx512.c).
 * Scope: only contiguous operands of out's size (no broadcast, no strided
 * or transposed views); anything else, and any other dtype, is declined
 * (NB_KERNEL_DECLINE) and the AVX2 kernel serves it. The flat range is
 * split over OpenMP threads exactly as wide as the AVX2 kernel uses
 * (nb__par_threads with the same grains), in pieces of 16-element
 * multiples; each piece runs 32 lanes per step, then 16, then one masked
 * tail (masked loads and stores: no element outside the range is touched).
 * Outputs of EW512_STREAM_MIN or more elements are written with
 * non-temporal stores after a masked head up to a 64-byte boundary, as the
 * AVX2 kernels do past the same size.
 */
#include "kernels/kernels.h"
#include "nb_config.h"
#include "vmath512.h"

#include <stdint.h>

/* The AVX2 kernels' EW_STREAM_MIN (avx2_elementwise.c): outputs this large
 * would only evict the inputs from the caches. */
#define EW512_STREAM_MIN (4 << 20)

/* The op bodies on 16 lanes: x from in[0], y from in[1] (the unary ops
 * ignore y). */
static inline __m512 op_exp(__m512 x, __m512 y) { (void)y; return nb__w_exp(x); }
static inline __m512 op_log(__m512 x, __m512 y) { (void)y; return nb__w_log(x); }
static inline __m512 op_tanh(__m512 x, __m512 y) { (void)y; return nb__w_tanh(x); }
static inline __m512 op_sigmoid(__m512 x, __m512 y) { (void)y; return nb__w_sigmoid(x); }
/* x = g, y = the saved output, rounded op by op as ref and avx2 */
static inline __m512 op_tanhbw(__m512 x, __m512 y) {
    return _mm512_mul_ps(x, _mm512_sub_ps(NB__W1(1.0f), _mm512_mul_ps(y, y)));
}
static inline __m512 op_sigbw(__m512 x, __m512 y) {
    return _mm512_mul_ps(x, _mm512_mul_ps(y, _mm512_sub_ps(NB__W1(1.0f), y)));
}

/* row_NAME: o[i] = op(A[i], B[i]) for i < n, all contiguous (B is A for the
 * unary ops). stream: non-temporal stores (the caller fences). */
#define W_ROW(NAME)                                                                                  \
    static void row_##NAME(float *o, const float *A, const float *B, int64_t n, bool stream) {      \
        int64_t i = 0;                                                                               \
        if (stream) {                                                                                \
            /* masked head up to a 64-byte boundary of o, then aligned streams */                    \
            int64_t h = (int64_t)(((64 - ((uintptr_t)o & 63)) & 63) / 4);                             \
            h = h < n ? h : n;                                                                       \
            if (h) {                                                                                 \
                __mmask16 m = nb__tail_mask16((int)h);                                                \
                _mm512_mask_storeu_ps(o, m, op_##NAME(_mm512_maskz_loadu_ps(m, A), _mm512_maskz_loadu_ps(m, B))); \
            }                                                                                        \
            for (i = h; i + 16 <= n; i += 16)                                                        \
                _mm512_stream_ps(o + i, op_##NAME(_mm512_loadu_ps(A + i), _mm512_loadu_ps(B + i)));  \
        }                                                                                            \
        for (; i + 32 <= n; i += 32) {                                                               \
            __m512 r0 = op_##NAME(_mm512_loadu_ps(A + i), _mm512_loadu_ps(B + i));                   \
            __m512 r1 = op_##NAME(_mm512_loadu_ps(A + i + 16), _mm512_loadu_ps(B + i + 16));         \
            _mm512_storeu_ps(o + i, r0);                                                             \
            _mm512_storeu_ps(o + i + 16, r1);                                                        \
        }                                                                                            \
        for (; i + 16 <= n; i += 16)                                                                 \
            _mm512_storeu_ps(o + i, op_##NAME(_mm512_loadu_ps(A + i), _mm512_loadu_ps(B + i)));      \
        if (i < n) {                                                                                 \
            __mmask16 m = nb__tail_mask16((int)(n - i));                                              \
            _mm512_mask_storeu_ps(o + i, m,                                                          \
                                  op_##NAME(_mm512_maskz_loadu_ps(m, A + i), _mm512_maskz_loadu_ps(m, B + i))); \
        }                                                                                            \
    }

W_ROW(exp) W_ROW(log) W_ROW(tanh) W_ROW(sigmoid) W_ROW(tanhbw) W_ROW(sigbw)

typedef void (*w_row_fn)(float *o, const float *A, const float *B, int64_t n, bool stream);

static bool w_flat_f32(const nb_tensor *t, int64_t n) {
    return nb_dtype_of(t) == NB_DTYPE_F32 && nb_is_contiguous(t) && nb_numel(t) == n;
}

/* out = op(in[0] [, in[1]]) over n contiguous F32 elements, split over
 * threads; declines any other dtype or layout. */
static int w_run(const nb_kernel_args *a, int nin, w_row_fn f, int64_t grain) {
    if (a->nin < nin || nb_dtype_of(a->out) != NB_DTYPE_F32 || !nb_is_contiguous(a->out)) return NB_KERNEL_DECLINE;
    int64_t n = nb_numel(a->out);
    for (int i = 0; i < nin; i++)
        if (!w_flat_f32(a->in[i], n)) return NB_KERNEL_DECLINE;
    if (n <= 0) return 0;
    float *o = nb_data(a->out);
    const float *x = nb_data(a->in[0]), *y = nin > 1 ? (const float *)nb_data(a->in[1]) : x;
    bool stream = n >= EW512_STREAM_MIN;
    int nt = nb__par_threads(n, grain);
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) {
        int64_t lo = n * t / nt / 16 * 16, hi = t + 1 == nt ? n : n * (t + 1) / nt / 16 * 16;
        if (lo < hi) f(o + lo, x + lo, y + lo, hi - lo, stream);
        if (stream) _mm_sfence();   /* order this thread's non-temporal stores before the caller reads out */
    }
    return 0;
}

#define GE NB_GRAIN_ELEMENTWISE
#define GT NB_GRAIN_TRANSCENDENTAL
#define W_KERNEL(NAME, NIN, GRAIN) \
    static int k_##NAME(const nb_kernel_args *a) { return w_run(a, NIN, row_##NAME, GRAIN); }

/* the grains of the AVX2 twins */
W_KERNEL(exp, 1, GT) W_KERNEL(log, 1, GT) W_KERNEL(tanh, 1, GT) W_KERNEL(sigmoid, 1, GT)
W_KERNEL(tanhbw, 2, GE) W_KERNEL(sigbw, 2, GE)

/* Priority 20, above the AVX2 kernels' 10: on an AVX-512 CPU these are
 * tried first; NB_ISA=avx2 (or ref) skips them by their isa, and a decline
 * passes the call on to the AVX2 kernel. */
#define REG(OP, FN, NAME) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_" NAME, 20, k_##FN}

void nb__avx512_elementwise_register(void) {
    static const nb_kernel_desc ks[] = {
        REG(EXP, exp, "exp"),
        REG(LOG, log, "log"),
        REG(TANH, tanh, "tanh"),
        REG(SIGMOID, sigmoid, "sigmoid"),
        REG(TANH_BACKWARD, tanhbw, "tanh_backward"),
        REG(SIGMOID_BACKWARD, sigbw, "sigmoid_backward"),
    };
    NB__REGISTER_ALL(ks);
}
