/* ref_math.c — portable kernels for the element-wise math and activation
 * ops: sqrt, rsqrt, abs, sign, sin, cos, erf, reciprocal, square, clamp,
 * maximum, minimum, sigmoid, relu, leaky_relu, elu, gelu, silu, softplus.
 *
 * What each kernel receives (all operands of out's shape, inputs broadcast
 * with stride 0, in[] already in the computation dtype = out's dtype):
 *   unary ops:           out <- f(in[0])
 *   CLAMP:               scalar[0] = min, scalar[1] = max; NAN = no bound
 *   LEAKY_RELU:          scalar[0] = negative_slope
 *   ELU:                 scalar[0] = alpha
 *   GELU:                scalar[0] = 0 exact (erf), 1 tanh approximation
 *   SOFTPLUS:            scalar[0] = beta, scalar[1] = threshold
 *   MAXIMUM, MINIMUM:    out <- f(in[0], in[1]); NaN propagates
 * F32 computes in float with the float libm functions, as PyTorch does.
 * I64 serves abs, sign, square, clamp, relu, maximum, minimum; BOOL serves
 * sign, maximum and minimum. Clarity over speed: these are the oracle for SIMD.
 */
#include "kernels/kernels.h"

#include <math.h>

typedef int64_t i64;
typedef bool b8;

/* UROW(NAME, T, EXPR): out[i] = EXPR over x (in[0]), y (in[1] when given)
 * and s0, s1 (the scalars). */
#define UROW(NAME, T, EXPR)                                                                          \
    static void row_##NAME##_##T(char *po, const char *pa, const char *pb, int64_t n, int64_t so,     \
                                 int64_t sa, int64_t sb, const double *sp) {                         \
        T *o = (T *)po;                                                                              \
        const T *A = (const T *)pa, *B = (const T *)pb;                                              \
        so /= (int64_t)sizeof(T), sa /= (int64_t)sizeof(T), sb /= (int64_t)sizeof(T);                \
        double s0 = sp[0], s1 = sp[1];                                                               \
        (void)B, (void)s0, (void)s1;                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                            \
            T x = A[i * sa], y = B ? B[i * sb] : (T)0;                                               \
            (void)y;                                                                                 \
            o[i * so] = (T)(EXPR);                                                                   \
        }                                                                                            \
    }                                                                                                \
    static int ref_##NAME##_##T(const nb_kernel_args *a) { return nb__ref_run_rows(a, row_##NAME##_##T); }

/* clamp with optional bounds: x < min gives min, then > max gives max (so
 * min > max gives max everywhere, as PyTorch); NaN x stays NaN. */
#define CLAMP_EXPR(T) clamp_##T(x, s0, s1)
#define CLAMP_FN(T)                                             \
    static inline T clamp_##T(T x, double lo, double hi) {      \
        if (!isnan(lo) && x < (T)lo) x = (T)lo;                 \
        if (!isnan(hi) && x > (T)hi) x = (T)hi;                 \
        return x;                                               \
    }
CLAMP_FN(float)
CLAMP_FN(double)
CLAMP_FN(i64)

#define SQRT_2_OVER_PI 0.79788456080286535588   /* sqrt(2/pi), GELU's tanh form */
#define GELU_C 0.044715
#define SQRT_HALF 0.70710678118654752440     /* 1/sqrt(2), GELU's erf form */

/* The float ops for T with libm suffix F (f for float, empty for double). */
#define FLOAT_MATH(T, F)                                                                        \
    UROW(sqrt, T, sqrt##F(x))                                                                   \
    UROW(rsqrt, T, (T)1 / sqrt##F(x))                                                           \
    UROW(abs, T, fabs##F(x))                                                                    \
    UROW(sign, T, (x > 0) - (x < 0))                                                            \
    UROW(sin, T, sin##F(x))                                                                     \
    UROW(cos, T, cos##F(x))                                                                     \
    UROW(erf, T, erf##F(x))                                                                     \
    UROW(reciprocal, T, (T)1 / x)                                                               \
    UROW(square, T, x * x)                                                                      \
    UROW(clamp, T, CLAMP_EXPR(T))                                                               \
    UROW(maximum, T, isnan(x) || isnan(y) ? x + y : (x > y ? x : y))                            \
    UROW(minimum, T, isnan(x) || isnan(y) ? x + y : (x < y ? x : y))                            \
    UROW(sigmoid, T, (T)1 / ((T)1 + exp##F(-x)))                                                \
    UROW(relu, T, x < 0 ? (T)0 : x)                                                             \
    UROW(leaky_relu, T, x > 0 ? x : x * (T)s0)                                                  \
    UROW(elu, T, x > 0 ? x : (T)s0 * expm1##F(x))                                               \
    UROW(gelu, T,                                                                               \
         s0 != 0 ? (T)0.5 * x * ((T)1 + tanh##F((T)SQRT_2_OVER_PI * (x + (T)GELU_C * x * x * x))) \
                 : (T)0.5 * x * ((T)1 + erf##F(x * (T)SQRT_HALF)))                              \
    UROW(silu, T, x / ((T)1 + exp##F(-x)))                                                      \
    UROW(softplus, T, x * (T)s0 > (T)s1 ? x : log1p##F(exp##F(x * (T)s0)) / (T)s0)

FLOAT_MATH(float, f)
FLOAT_MATH(double, )

/* i64: wrap-around arithmetic through uint64_t, as two's complement would. */
UROW(abs, i64, x < 0 ? (i64)(0 - (uint64_t)x) : x)
UROW(sign, i64, (x > 0) - (x < 0))
UROW(square, i64, (i64)((uint64_t)x * (uint64_t)x))
UROW(clamp, i64, CLAMP_EXPR(i64))
UROW(relu, i64, x < 0 ? 0 : x)
UROW(maximum, i64, x > y ? x : y)
UROW(minimum, i64, x < y ? x : y)
UROW(sign, b8, x)
UROW(maximum, b8, x || y)
UROW(minimum, b8, x && y)

#define REG(OP, DT, FN) {NB_OP_##OP, NB_DTYPE_##DT, NB_ISA_REF, #FN, 0, FN}
#define REG_FLOAT(OP, FN) REG(OP, F32, ref_##FN##_float), REG(OP, F64, ref_##FN##_double)

void nb__ref_math_register(void) {
    static const nb_kernel_desc ks[] = {
        REG_FLOAT(SQRT, sqrt), REG_FLOAT(RSQRT, rsqrt), REG_FLOAT(ABS, abs), REG_FLOAT(SIGN, sign),
        REG_FLOAT(SIN, sin), REG_FLOAT(COS, cos), REG_FLOAT(ERF, erf), REG_FLOAT(RECIPROCAL, reciprocal),
        REG_FLOAT(SQUARE, square), REG_FLOAT(CLAMP, clamp), REG_FLOAT(MAXIMUM, maximum),
        REG_FLOAT(MINIMUM, minimum), REG_FLOAT(SIGMOID, sigmoid), REG_FLOAT(RELU, relu),
        REG_FLOAT(LEAKY_RELU, leaky_relu), REG_FLOAT(ELU, elu), REG_FLOAT(GELU, gelu), REG_FLOAT(SILU, silu),
        REG_FLOAT(SOFTPLUS, softplus),
        REG(ABS, I64, ref_abs_i64), REG(SIGN, I64, ref_sign_i64), REG(SQUARE, I64, ref_square_i64),
        REG(CLAMP, I64, ref_clamp_i64), REG(RELU, I64, ref_relu_i64), REG(MAXIMUM, I64, ref_maximum_i64),
        REG(MINIMUM, I64, ref_minimum_i64), REG(SIGN, BOOL, ref_sign_b8), REG(MAXIMUM, BOOL, ref_maximum_b8),
        REG(MINIMUM, BOOL, ref_minimum_b8),
    };
    NB__REGISTER_ALL(ks);
}
