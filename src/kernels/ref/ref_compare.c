/* ref_compare.c — portable kernels for comparisons, logical ops, where and
 * masked_fill, for F32, F64, I64 and BOOL.
 *
 * What each kernel receives (operands of out's shape, inputs broadcast with
 * stride 0, the dtype it is registered for is in[0]'s, the computation
 * dtype):
 *   EQ NE LT LE GT GE:        out BOOL <- in[0] op in[1]
 *   EQ_SCALAR .. GE_SCALAR:   out BOOL <- in[0] op (T)scalar[0]
 *   LOGICAL_NOT:              out BOOL <- in[0] == 0
 *   LOGICAL_AND, LOGICAL_OR:  out BOOL <- (in[0] != 0) op (in[1] != 0)
 *   WHERE:                    out T <- in[2] (BOOL) ? in[0] : in[1]
 *   MASKED_FILL:              out T <- in[1] (BOOL) ? (T)scalar[0] : in[0]
 *   THRESHOLD_BACKWARD:       out T <- in[1] <= (T)scalar[0] ? 0 : in[0]   (F32, F64)
 *   TANH_BACKWARD:            out T <- in[0] * (1 - in[1] * in[1])          (F32, F64)
 *   SIGMOID_BACKWARD:         out T <- in[0] * (in[1] * (1 - in[1]))        (F32, F64)
 *   GELU_BACKWARD:            out T <- in[0] * gelu'(in[1]) in double; scalar[0] != 0:
 *                             the tanh form                                  (F32, F64)
 * (the last three: activation backwards from the saved output, kept here
 * with masked_fill, the two-op form they replace)
 * NaN compares unequal to everything and counts as true (nonzero).
 */
#include "kernels/kernels.h"

#include <math.h>

typedef int64_t i64;
typedef bool b8;

/* BROW(NAME, T, EXPR): out (bool) from x (in[0]) and y (in[1], or the
 * scalar converted to T when the op has one input). */
#define BROW(NAME, T, EXPR)                                                                          \
    static void row_##NAME##_##T(char *po, const char *pa, const char *pb, int64_t n, int64_t so,     \
                                 int64_t sa, int64_t sb, const double *sp) {                         \
        b8 *o = (b8 *)po;                                                                            \
        const T *A = (const T *)pa, *B = (const T *)pb;                                              \
        sa /= (int64_t)sizeof(T), sb /= (int64_t)sizeof(T);                                          \
        T ys = (T)sp[0];                                                                             \
        for (int64_t i = 0; i < n; i++) {                                                            \
            T x = A[i * sa], y = B ? B[i * sb] : ys;                                                 \
            (void)y;                                                                                 \
            o[i * so] = (EXPR);                                                                      \
        }                                                                                            \
    }                                                                                                \
    static int ref_##NAME##_##T(const nb_kernel_args *a) { return nb__ref_run_rows(a, row_##NAME##_##T); }

/* MROW: masked_fill, out T from x (in[0]) and the mask m (in[1], bool). */
#define MROW(T)                                                                                      \
    static void row_masked_fill_##T(char *po, const char *pa, const char *pb, int64_t n, int64_t so, \
                                    int64_t sa, int64_t sb, const double *sp) {                      \
        T *o = (T *)po;                                                                              \
        const T *A = (const T *)pa;                                                                  \
        const b8 *M = (const b8 *)pb;                                                                \
        so /= (int64_t)sizeof(T), sa /= (int64_t)sizeof(T);                                          \
        T v = (T)sp[0];                                                                              \
        for (int64_t i = 0; i < n; i++) o[i * so] = M[i * sb] ? v : A[i * sa];                       \
    }                                                                                                \
    static int ref_masked_fill_##T(const nb_kernel_args *a) {                                        \
        return nb__ref_run_rows(a, row_masked_fill_##T);                                             \
    }

/* AROW(NAME, T, EXPR): activation backward, out T from g (in[0]), y
 * (in[1]) and t = scalar[0]; each operation rounded to T in the order
 * written. */
#define AROW(NAME, T, EXPR)                                                                          \
    static void row_##NAME##_##T(char *po, const char *pa, const char *pb, int64_t n, int64_t so,     \
                                 int64_t sa, int64_t sb, const double *sp) {                         \
        T *o = (T *)po;                                                                              \
        const T *G = (const T *)pa, *Y = (const T *)pb;                                              \
        so /= (int64_t)sizeof(T), sa /= (int64_t)sizeof(T), sb /= (int64_t)sizeof(T);                \
        T t = (T)sp[0];                                                                              \
        (void)t;                                                                                     \
        for (int64_t i = 0; i < n; i++) {                                                            \
            T g = G[i * sa], y = Y[i * sb];                                                          \
            o[i * so] = EXPR;                                                                        \
        }                                                                                            \
    }                                                                                                \
    static int ref_##NAME##_##T(const nb_kernel_args *a) { return nb__ref_run_rows(a, row_##NAME##_##T); }
/* gelu'(x) in double: the erf form Φ(x) + x φ(x) (Φ through erfc, exact in
 * the negative tail), or (approx) the tanh form's derivative. */
static double gelu_d(double x, bool approx) {
    if (!approx) return 0.5 * erfc(-x * 0.70710678118654752440) + x * exp(-0.5 * x * x) * 0.39894228040143267794;
    double c = 0.79788456080286535588, u = c * (x + 0.044715 * x * x * x), th = tanh(u);
    return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x);
}
#define AROWS(T)                                                         \
    AROW(threshold_backward, T, y <= t ? (T)0 : g)                       \
    AROW(tanh_backward, T, g * (T)((T)1 - (T)(y * y)))                   \
    AROW(sigmoid_backward, T, g * (T)(y * (T)((T)1 - y)))                \
    AROW(gelu_backward, T, (T)((double)g * gelu_d((double)y, t != 0)))
AROWS(float)
AROWS(double)

/* where: out = c ? x : y in two passes over (out, x, c) and (out, y, c),
 * because the shared iterator walks at most three operands. Each element of
 * out is written by exactly one pass. */
#define WROW(T)                                                                                      \
    static void row_where_##T(char *po, const char *pa, const char *pc, int64_t n, int64_t so,       \
                              int64_t sa, int64_t sc, const double *sp) {                            \
        T *o = (T *)po;                                                                              \
        const T *A = (const T *)pa;                                                                  \
        const b8 *C = (const b8 *)pc;                                                                \
        b8 take = sp[0] != 0;   /* pass 1 takes elements where c, pass 2 where !c */                 \
        so /= (int64_t)sizeof(T), sa /= (int64_t)sizeof(T);                                          \
        for (int64_t i = 0; i < n; i++)                                                              \
            if (C[i * sc] == take) o[i * so] = A[i * sa];                                            \
    }                                                                                                \
    static int ref_where_##T(const nb_kernel_args *a) {                                              \
        nb_kernel_args p = {.op = a->op, .out = a->out, .in = {a->in[0], a->in[2]}, .nin = 2,        \
                            .scalar = {1.0}};                                                        \
        nb__ref_run_rows(&p, row_where_##T);                                                         \
        p.in[0] = a->in[1];                                                                          \
        p.scalar[0] = 0.0;                                                                           \
        return nb__ref_run_rows(&p, row_where_##T);                                                  \
    }

#define TYPED(T)                                 \
    BROW(eq, T, x == y)                          \
    BROW(ne, T, x != y)                          \
    BROW(lt, T, x < y)                           \
    BROW(le, T, x <= y)                          \
    BROW(gt, T, x > y)                           \
    BROW(ge, T, x >= y)                          \
    BROW(not, T, x == (T)0)                      \
    BROW(and, T, x != (T)0 && y != (T)0)         \
    BROW(or, T, x != (T)0 || y != (T)0)          \
    MROW(T)                                      \
    WROW(T)

TYPED(float)
TYPED(double)
TYPED(i64)
TYPED(b8)

#define REG(OP, DT, FN) {NB_OP_##OP, NB_DTYPE_##DT, NB_ISA_REF, #FN, 0, FN}
#define REG_ALL(OP, FN)                                                                            \
    REG(OP, F32, ref_##FN##_float), REG(OP, F64, ref_##FN##_double), REG(OP, I64, ref_##FN##_i64), \
        REG(OP, BOOL, ref_##FN##_b8)

void nb__ref_compare_register(void) {
    static const nb_kernel_desc ks[] = {
        REG_ALL(EQ, eq), REG_ALL(NE, ne), REG_ALL(LT, lt), REG_ALL(LE, le), REG_ALL(GT, gt), REG_ALL(GE, ge),
        REG_ALL(EQ_SCALAR, eq), REG_ALL(NE_SCALAR, ne), REG_ALL(LT_SCALAR, lt), REG_ALL(LE_SCALAR, le),
        REG_ALL(GT_SCALAR, gt), REG_ALL(GE_SCALAR, ge), REG_ALL(LOGICAL_NOT, not),
        REG_ALL(LOGICAL_AND, and), REG_ALL(LOGICAL_OR, or), REG_ALL(WHERE, where),
        REG_ALL(MASKED_FILL, masked_fill),
        REG(THRESHOLD_BACKWARD, F32, ref_threshold_backward_float),
        REG(THRESHOLD_BACKWARD, F64, ref_threshold_backward_double),
        REG(TANH_BACKWARD, F32, ref_tanh_backward_float), REG(TANH_BACKWARD, F64, ref_tanh_backward_double),
        REG(SIGMOID_BACKWARD, F32, ref_sigmoid_backward_float),
        REG(SIGMOID_BACKWARD, F64, ref_sigmoid_backward_double),
        REG(GELU_BACKWARD, F32, ref_gelu_backward_float), REG(GELU_BACKWARD, F64, ref_gelu_backward_double),
    };
    NB__REGISTER_ALL(ks);
}
