/* ref_elementwise.c — portable kernels for fill, copy (with dtype
 * conversion), the binary ops, the unary ops and the scalar ops.
 *
 * All operands share one shape (inputs arrive broadcast with stride 0); the
 * iterator merges dims so a contiguous call is one flat loop. These are the
 * oracle every SIMD variant is tested against: clarity over speed.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

void nb__iter_init(nb__iter *it, int n, const nb_tensor *const *ops) {
    const nb_tensor *t0 = ops[0];
    it->n = n;
    int nd = 0;
    for (int d = 0; d < t0->ndim; d++) {
        if (t0->shape[d] == 1) continue;   /* size-1 dims carry no stride */
        it->shape[nd] = t0->shape[d];
        for (int o = 0; o < n; o++) it->stride[o][nd] = ops[o]->stride[d];
        nd++;
    }
    if (nd == 0) {
        it->shape[0] = 1;
        for (int o = 0; o < n; o++) it->stride[o][0] = 0;
        nd = 1;
    }
    /* dims in the output's memory order (outermost first; stable, so a
     * contiguous output keeps its order), as PyTorch's TensorIterator: a
     * channels-last output (and channels-last inputs) then merge into one
     * contiguous run instead of rows of W elements C apart */
    for (int d = 1; d < nd; d++)
        for (int e = d; e > 0 && it->stride[0][e - 1] < it->stride[0][e]; e--) {
            int64_t sz = it->shape[e];
            it->shape[e] = it->shape[e - 1], it->shape[e - 1] = sz;
            for (int o = 0; o < n; o++) {
                int64_t st = it->stride[o][e];
                it->stride[o][e] = it->stride[o][e - 1], it->stride[o][e - 1] = st;
            }
        }
    /* merge dim d into the previous one when every operand is contiguous across them */
    int w = 0;
    for (int d = 1; d < nd; d++) {
        bool ok = true;
        for (int o = 0; o < n; o++)
            if (it->stride[o][w] != it->stride[o][d] * it->shape[d]) ok = false;
        if (ok) {
            it->shape[w] *= it->shape[d];
            for (int o = 0; o < n; o++) it->stride[o][w] = it->stride[o][d];
        } else {
            w++;
            it->shape[w] = it->shape[d];
            for (int o = 0; o < n; o++) it->stride[o][w] = it->stride[o][d];
        }
    }
    it->ndim = w + 1;
    for (int o = 0; o < 3; o++) {
        if (o < n) {
            it->base[o] = nb_data(ops[o]);
            int64_t es = (int64_t)nb_dtype_size(ops[o]->dtype);
            for (int d = 0; d < it->ndim; d++) it->stride[o][d] *= es;   /* bytes */
        } else {
            it->base[o] = NULL;
            for (int d = 0; d < it->ndim; d++) it->stride[o][d] = 0;
        }
    }
}

int nb__ref_run_rows(const nb_kernel_args *a, nb__row_fn f) {
    const nb_tensor *ops[3] = {a->out, a->nin > 0 ? a->in[0] : NULL, a->nin > 1 ? a->in[1] : NULL};
    nb__iter it;
    nb__iter_init(&it, a->nin + 1, ops);
    const double *s = a->scalar;
#define NB__CALL_ROW(p0, p1, p2, len, s0, s1, s2) f(p0, p1, p2, len, s0, s1, s2, s)
    NB_ITER_ROWS(it, NB__CALL_ROW);
#undef NB__CALL_ROW
    return 0;
}

/* ROW(NAME, T, EXPR): EXPR over x (element of in[0]), y (of in[1]) and s. */
#define ROW(NAME, T, EXPR)                                                                       \
    static void row_##NAME##_##T(char *po, const char *pa, const char *pb, int64_t n, int64_t so, \
                                 int64_t sa, int64_t sb, const double *sp) {                     \
        T *o = (T *)po;                                                                          \
        const T *A = (const T *)pa, *B = (const T *)pb;                                          \
        so /= (int64_t)sizeof(T), sa /= (int64_t)sizeof(T), sb /= (int64_t)sizeof(T);            \
        double s = sp[0];                                                                        \
        (void)A, (void)B, (void)s;                                                               \
        for (int64_t i = 0; i < n; i++) {                                                        \
            T x = A ? A[i * sa] : (T)0, y = B ? B[i * sb] : (T)0;                                \
            (void)x, (void)y;                                                                    \
            o[i * so] = (T)(EXPR);                                                               \
        }                                                                                        \
    }                                                                                            \
    static int ref_##NAME##_##T(const nb_kernel_args *a) { return nb__ref_run_rows(a, row_##NAME##_##T); }

typedef int64_t i64;

/* Integer division and power follow PyTorch: div is true division (float
 * only here); pow on i64 is repeated multiplication. */
static i64 ipow(i64 b, i64 e) {
    if (e < 0) return b == 1 ? 1 : (b == -1 ? ((e & 1) ? -1 : 1) : 0);
    i64 r = 1;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return r;
}

#define FLOAT_OPS(T, EXPF, LOGF, TANHF, POWF)          \
    ROW(add, T, x + y)                                 \
    ROW(sub, T, x - y)                                 \
    ROW(mul, T, x * y)                                 \
    ROW(div, T, x / y)                                 \
    ROW(pow, T, POWF(x, y))                            \
    ROW(neg, T, -x)                                    \
    ROW(exp, T, EXPF(x))                               \
    ROW(log, T, LOGF(x))                               \
    ROW(tanh, T, TANHF(x))                             \
    ROW(adds, T, x + (T)s)                             \
    ROW(muls, T, x * (T)s)                             \
    ROW(pows, T, POWF(x, (T)s))                        \
    ROW(fill, T, (T)s)

FLOAT_OPS(float, expf, logf, tanhf, powf)
FLOAT_OPS(double, exp, log, tanh, pow)
ROW(add, i64, (i64)((uint64_t)x + (uint64_t)y))
ROW(sub, i64, (i64)((uint64_t)x - (uint64_t)y))
ROW(mul, i64, (i64)((uint64_t)x * (uint64_t)y))
ROW(pow, i64, ipow(x, y))
ROW(neg, i64, (i64)(0 - (uint64_t)x))
ROW(adds, i64, x + (i64)s)
ROW(muls, i64, x * (i64)s)
ROW(pows, i64, ipow(x, (i64)s))
ROW(fill, i64, (i64)s)
typedef bool b8;
ROW(fill, b8, s != 0)
ROW(add, b8, x || y)   /* bool + bool is logical or, bool * bool logical and (PyTorch) */
ROW(mul, b8, x && y)

/* copy: same dtype moves bytes; otherwise converts through double (i64
 * beyond 2^53 loses precision, as a cast through float would). */
static int ref_copy(const nb_kernel_args *a) {
    const nb_tensor *ops[2] = {a->out, a->in[0]};
    nb__iter it;
    nb__iter_init(&it, 2, ops);
    nb_dtype od = a->out->dtype, id = a->in[0]->dtype;
    size_t es = nb_dtype_size(od);
#define NB__COPY_ROW(p0, p1, p2, len, s0, s1, s2)                                        \
    do {                                                                                 \
        (void)p2, (void)s2;                                                              \
        if (od == id)                                                                    \
            for (int64_t i = 0; i < len; i++) memcpy(p0 + i * s0, p1 + i * s1, es);      \
        else                                                                             \
            for (int64_t i = 0; i < len; i++) nb__store(p0 + i * s0, od, nb__load(p1 + i * s1, id)); \
    } while (0)
    NB_ITER_ROWS(it, NB__COPY_ROW);
#undef NB__COPY_ROW
    return 0;
}

#define REG(OP, DT, FN) {NB_OP_##OP, NB_DTYPE_##DT, NB_ISA_REF, #FN, 0, FN}
#define REG_FLOAT(OP, FN) REG(OP, F32, ref_##FN##_float), REG(OP, F64, ref_##FN##_double)

void nb__ref_elementwise_register(void) {
    static const nb_kernel_desc ks[] = {
        REG_FLOAT(ADD, add), REG_FLOAT(SUB, sub), REG_FLOAT(MUL, mul), REG_FLOAT(DIV, div),
        REG_FLOAT(POW, pow), REG_FLOAT(NEG, neg), REG_FLOAT(EXP, exp), REG_FLOAT(LOG, log),
        REG_FLOAT(TANH, tanh), REG_FLOAT(ADD_SCALAR, adds), REG_FLOAT(MUL_SCALAR, muls),
        REG_FLOAT(POW_SCALAR, pows), REG_FLOAT(FILL, fill),
        REG(ADD, I64, ref_add_i64), REG(SUB, I64, ref_sub_i64), REG(MUL, I64, ref_mul_i64),
        REG(POW, I64, ref_pow_i64), REG(NEG, I64, ref_neg_i64), REG(ADD_SCALAR, I64, ref_adds_i64),
        REG(MUL_SCALAR, I64, ref_muls_i64), REG(POW_SCALAR, I64, ref_pows_i64),
        REG(FILL, I64, ref_fill_i64), REG(FILL, BOOL, ref_fill_b8), REG(ADD, BOOL, ref_add_b8),
        REG(MUL, BOOL, ref_mul_b8),
        REG(COPY, F32, ref_copy), REG(COPY, F64, ref_copy), REG(COPY, I64, ref_copy),
        REG(COPY, BOOL, ref_copy),
    };
    NB__REGISTER_ALL(ks);
}
