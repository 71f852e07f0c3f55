/* elementwise.c — element-wise math: sqrt, rsqrt, abs, sign, sin, cos, erf,
 * reciprocal, square, clamp, maximum, minimum.
 *
 * Dtypes as PyTorch: the transcendental ops (sqrt, rsqrt, sin, cos, erf,
 * reciprocal) give f32 for integer and bool inputs; abs, sign, square and
 * clamp keep an integer dtype (square of bool is i64, abs of bool is
 * refused); clamp and maximum/minimum promote with their other operands.
 * Each backward is written with public ops, so double backward works; it
 * sits directly above its forward.
 */
#include "ops/ops.h"

#include <math.h>

#define NEED(i) nb__needs_input_grad(n, i)

static nb_tensor *float_op(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                           nb_tensor *a) {
    NB_CHECK_ARG(who, a);
    return nb__ew_unary_op(who, op, name, bw, save, a, nb__float_of(a->dtype), 0.0, 0.0);
}

static int refuse_bool(const char *who, const nb_tensor *a) {
    if (a->dtype != NB_DTYPE_BOOL) return 0;
    return nb__err(NB_EDTYPE, "%s: not supported on a bool tensor (shape %s); convert with nb_to_dtype first", who,
                   nb__shape_str(a));
}

/* ---- sqrt: out = √a;  da = g / (2 out) ---- */
static int sqrt_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_div(g, nb_mul_scalar(nb__saved_get(n, 0), 2.0));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_sqrt(nb_tensor *a) {
    return float_op("nb_sqrt", NB_OP_SQRT, "SqrtBackward", sqrt_backward, NB__SAVE_OUT, a);
}

/* ---- rsqrt: out = 1/√a;  da = -g out³ / 2 ---- */
static int rsqrt_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul(g, nb_mul_scalar(nb_pow_scalar(nb__saved_get(n, 0), 3.0), -0.5));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_rsqrt(nb_tensor *a) {
    return float_op("nb_rsqrt", NB_OP_RSQRT, "RsqrtBackward", rsqrt_backward, NB__SAVE_OUT, a);
}

/* ---- abs: out = |a|;  da = g sign(a) (0 at a == 0, as PyTorch) ---- */
static int abs_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul(g, nb_sign(nb__saved_get(n, 0)));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_abs(nb_tensor *a) {
    NB_CHECK_ARG("nb_abs", a);
    if (refuse_bool("nb_abs", a)) return NULL;
    return nb__ew_unary_op("nb_abs", NB_OP_ABS, "AbsBackward", abs_backward, 1, a, a->dtype, 0.0, 0.0);
}

/* ---- sign: out = -1, 0 or 1 (0 for NaN);  da = 0 ---- */
static int sign_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_zeros(nb_dims_get(g), g->dtype);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_sign(nb_tensor *a) {
    NB_CHECK_ARG("nb_sign", a);
    return nb__ew_unary_op("nb_sign", NB_OP_SIGN, "SignBackward", sign_backward, 0, a, a->dtype, 0.0, 0.0);
}

/* ---- sin: da = g cos(a);  cos: da = -g sin(a) ---- */
static int sin_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul(g, nb_cos(nb__saved_get(n, 0)));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_sin(nb_tensor *a) { return float_op("nb_sin", NB_OP_SIN, "SinBackward", sin_backward, 1, a); }

static int cos_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul(g, nb_neg(nb_sin(nb__saved_get(n, 0))));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_cos(nb_tensor *a) { return float_op("nb_cos", NB_OP_COS, "CosBackward", cos_backward, 1, a); }

/* ---- erf: da = g 2/√π exp(-a²) ---- */
static int erf_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0);
    gin[0] = nb_mul(g, nb_mul_scalar(nb_exp(nb_neg(nb_mul(a, a))), 1.1283791670955126 /* 2/√π */));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_erf(nb_tensor *a) { return float_op("nb_erf", NB_OP_ERF, "ErfBackward", erf_backward, 1, a); }

/* ---- reciprocal: out = 1/a;  da = -g out² ---- */
static int reciprocal_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *y = nb__saved_get(n, 0);
    gin[0] = nb_mul(g, nb_neg(nb_mul(y, y)));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_reciprocal(nb_tensor *a) {
    return float_op("nb_reciprocal", NB_OP_RECIPROCAL, "ReciprocalBackward", reciprocal_backward, NB__SAVE_OUT, a);
}

/* ---- square: out = a²;  da = 2 g a ---- */
static int square_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul(g, nb_mul_scalar(nb__saved_get(n, 0), 2.0));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_square(nb_tensor *a) {
    NB_CHECK_ARG("nb_square", a);
    nb_dtype ct = a->dtype == NB_DTYPE_BOOL ? NB_DTYPE_I64 : a->dtype;
    return nb__ew_unary_op("nb_square", NB_OP_SQUARE, "SquareBackward", square_backward, 1, a, ct, 0.0, 0.0);
}

/* ---- clamp: out = min(max(a, lo), hi), either bound NAN for none;
 * da = g where lo <= a <= hi (bounds included, as PyTorch), else 0 ---- */
static int clamp_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0);
    double lo = n->p.d[0], hi = n->p.d[1];
    nb_tensor *in = NULL;
    if (!isnan(lo)) in = nb_ge_scalar(a, lo);
    if (!isnan(hi)) in = in ? nb_logical_and(in, nb_le_scalar(a, hi)) : nb_le_scalar(a, hi);
    gin[0] = nb_masked_fill(g, nb_logical_not(in), 0.0);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_clamp(nb_tensor *a, double min, double max) {
    const char *who = "nb_clamp";
    NB_CHECK_ARG(who, a);
    if (refuse_bool(who, a)) return NULL;
    if (isnan(min) && isnan(max)) {
        nb__err(NB_EINVAL, "%s: at least one of min and max must be given (not NAN); input of shape %s", who,
                nb__shape_str(a));
        return NULL;
    }
    return nb__ew_unary_op(who, NB_OP_CLAMP, "ClampBackward", clamp_backward, 1, a, nb__clamp_type(a, min, max),
                           min, max);
}

/* ---- maximum / minimum: broadcasting, NaN propagates. At ties the gradient
 * is split in half between the inputs (PyTorch 1.13). For maximum:
 * da = g where a > b, g/2 where a == b; db likewise where b > a. ---- */
static int extremum_backward(nb__node *n, nb_tensor *g, nb_tensor **gin, bool is_max) {
    nb_tensor *a = nb__saved_get(n, 0), *b = nb__saved_get(n, 1);
    nb_tensor *h = nb_where(nb_eq(a, b), nb_mul_scalar(g, 0.5), g);
    nb_tensor *a_loses = is_max ? nb_lt(a, b) : nb_gt(a, b);
    nb_tensor *b_loses = is_max ? nb_gt(a, b) : nb_lt(a, b);
    if (NEED(0)) gin[0] = nb__grad_to(nb_masked_fill(h, a_loses, 0.0), n->shape[0], (nb_dtype)n->p.i[0]);
    if (NEED(1)) gin[1] = nb__grad_to(nb_masked_fill(h, b_loses, 0.0), n->shape[1], (nb_dtype)n->p.i[1]);
    return nb__grads_ok(n, gin);
}
static int maximum_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) { return extremum_backward(n, g, gin, true); }
static int minimum_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) { return extremum_backward(n, g, gin, false); }

static nb_tensor *extremum(const char *who, nb_op op, const char *name, nb__backward_fn bw, nb_tensor *a,
                           nb_tensor *b) {
    NB_CHECK_ARG(who, a);
    NB_CHECK_ARG(who, b);
    nb_tensor *in[2] = {a, b};
    nb__node *node;
    nb_tensor *out = nb__finish(nb__ew_binary(who, op, a, b), name, who, bw, in, 2, 3, &node);
    if (node) {
        node->shape[0] = nb_dims_get(a), node->shape[1] = nb_dims_get(b);
        node->p.i[0] = a->dtype, node->p.i[1] = b->dtype;
    }
    return out;
}
NB_API nb_tensor *nb_maximum(nb_tensor *a, nb_tensor *b) {
    return extremum("nb_maximum", NB_OP_MAXIMUM, "MaximumBackward", maximum_backward, a, b);
}
NB_API nb_tensor *nb_minimum(nb_tensor *a, nb_tensor *b) {
    return extremum("nb_minimum", NB_OP_MINIMUM, "MinimumBackward", minimum_backward, a, b);
}
