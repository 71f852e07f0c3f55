/* activation.c — activation functions: sigmoid, relu, leaky_relu, elu,
 * gelu (exact and tanh approximation), silu, softplus.
 *
 * Semantics and parameters as torch.nn.functional. sigmoid gives f32 for
 * integer and bool inputs and relu keeps an integer dtype (as PyTorch); the
 * others need a floating input (PyTorch has no integer kernels for them).
 * Each backward is written with public ops (so double backward works), with
 * the masks taken from the saved input or output as PyTorch's derivative
 * formulas do; it sits directly above its forward.
 */
#include "ops/ops.h"

#include <math.h>

static nb_tensor *float_only(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                             nb_tensor *a, double s0, double s1) {
    NB_CHECK_ARG(who, a);
    if (nb__check_float(who, a)) return NULL;
    return nb__ew_unary_op(who, op, name, bw, save, a, a->dtype, s0, s1);
}

/* ---- tanh and sigmoid backwards from the saved output y, in one pass:
 *   tanh:    g (1 - y²);      d/dg = the same of gg,  d/dy = gg g (-2 y)
 *   sigmoid: g (y (1 - y));   d/dg = the same of gg,  d/dy = gg g (1 - 2 y)
 * (a node with inputs g and y, both saved, so double backward works). g and
 * y of other shapes or dtypes take the same formulas with public ops. */
static int tanh_bw_backward(nb__node *n, nb_tensor *gg, nb_tensor **gin);
static int sigmoid_bw_backward(nb__node *n, nb_tensor *gg, nb_tensor **gin);

/* Whether an activation backward of g and the saved output y can run as its
 * one-pass kernel (ref has F32 and F64; broadcasting takes the op form). */
static bool fusable(const nb_tensor *g, const nb_tensor *y) {
    return g->dtype == y->dtype && (g->dtype == NB_DTYPE_F32 || g->dtype == NB_DTYPE_F64) && nb__same_shape(g, y);
}

static nb_tensor *act_backward(bool tanh_, nb_tensor *g, nb_tensor *y) {
    const char *who = tanh_ ? "TanhBackward" : "SigmoidBackward";
    if (!g || !y) return NULL;
    if (!fusable(g, y))
        return tanh_ ? nb_mul(g, nb_add_scalar(nb_neg(nb_mul(y, y)), 1.0))
                     : nb_mul(g, nb_mul(y, nb_add_scalar(nb_neg(y), 1.0)));
    nb_tensor *in[2] = {g, y};
    nb_op op = tanh_ ? NB_OP_TANH_BACKWARD : NB_OP_SIGMOID_BACKWARD;
    return nb__finish(nb__ew_binary_ex(who, op, g, y, g->dtype, g->dtype, 0.0),
                      tanh_ ? "TanhBackwardBackward" : "SigmoidBackwardBackward", who,
                      tanh_ ? tanh_bw_backward : sigmoid_bw_backward, in, 2, 0x3u, NULL);
}
nb_tensor *nb__tanh_backward(nb_tensor *g, nb_tensor *y) { return act_backward(true, g, y); }

static int tanh_bw_backward(nb__node *n, nb_tensor *gg, nb_tensor **gin) {
    nb_tensor *g = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    if (nb__needs_input_grad(n, 0)) gin[0] = act_backward(true, gg, y);
    if (nb__needs_input_grad(n, 1)) gin[1] = nb_mul(nb_mul(gg, g), nb_mul_scalar(y, -2.0));
    return nb__grads_ok(n, gin);
}
static int sigmoid_bw_backward(nb__node *n, nb_tensor *gg, nb_tensor **gin) {
    nb_tensor *g = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    if (nb__needs_input_grad(n, 0)) gin[0] = act_backward(false, gg, y);
    if (nb__needs_input_grad(n, 1)) gin[1] = nb_mul(nb_mul(gg, g), nb_add_scalar(nb_mul_scalar(y, -2.0), 1.0));
    return nb__grads_ok(n, gin);
}

/* ---- sigmoid: out = 1/(1+e^-a);  da = g out (1 - out) ---- */
static int sigmoid_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = act_backward(false, g, nb__saved_get(n, 0));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_sigmoid(nb_tensor *a) {
    NB_CHECK_ARG("nb_sigmoid", a);
    return nb__ew_unary_op("nb_sigmoid", NB_OP_SIGMOID, "SigmoidBackward", sigmoid_backward, NB__SAVE_OUT, a,
                           nb__float_of(a->dtype), 0.0, 0.0);
}

/* ---- threshold_backward(g, y, t) = y <= t ? 0 : g, in one pass (no BOOL
 * mask in between). Its graph has g as its only input and y saved, so no
 * gradient reaches y (a step function: PyTorch's derivative there is 0);
 * the gradient with respect to g is the same threshold of gg. Other dtypes,
 * or g and y of different shapes or dtypes, take the two-op form. */
static nb_tensor *threshold_backward(nb_tensor *g, nb_tensor *y, double t);
static int threshold_backward_backward(nb__node *n, nb_tensor *gg, nb_tensor **gin) {
    gin[0] = threshold_backward(gg, nb__saved_get(n, 0), n->p.d[0]);
    return nb__grads_ok(n, gin);
}
static nb_tensor *threshold_backward(nb_tensor *g, nb_tensor *y, double t) {
    const char *who = "ReluBackward";
    if (!g || !y) return NULL;
    if (!fusable(g, y)) return nb_masked_fill(g, nb_le_scalar(y, t), 0.0);
    nb__node *node;
    nb_tensor *out = nb__finish(nb__ew_binary_ex(who, NB_OP_THRESHOLD_BACKWARD, g, y, g->dtype, g->dtype, t),
                                "ThresholdBackwardBackward", who, threshold_backward_backward, &g, 1, 0, &node);
    if (node) {
        node->p.d[0] = t;
        if (nb__save(node, y)) return NULL;   /* out (scoped) goes with the scope */
    }
    return out;
}

/* ---- relu: out = max(a, 0);  da = 0 where out <= 0, else g ----
 * PyTorch's threshold_backward(g, out, 0): a NaN out (from a NaN a) passes
 * g through. */
static int relu_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = threshold_backward(g, nb__saved_get(n, 0), 0.0);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_relu(nb_tensor *a) {
    NB_CHECK_ARG("nb_relu", a);
    if (a->dtype == NB_DTYPE_BOOL) {
        nb__err(NB_EDTYPE, "nb_relu: bool inputs are not supported (shape %s)", nb__shape_str(a));
        return NULL;
    }
    return nb__ew_unary_op("nb_relu", NB_OP_RELU, "ReluBackward", relu_backward, NB__SAVE_OUT, a, a->dtype, 0.0, 0.0);
}

/* ---- leaky_relu: out = a > 0 ? a : slope a;  da = g or slope g ---- */
static int leaky_relu_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0);
    gin[0] = nb_where(nb_gt_scalar(a, 0.0), g, nb_mul_scalar(g, n->p.d[0]));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_leaky_relu(nb_tensor *a, double negative_slope) {
    return float_only("nb_leaky_relu", NB_OP_LEAKY_RELU, "LeakyReluBackward", leaky_relu_backward, 1, a,
                      negative_slope, 0.0);
}

/* ---- elu: out = a > 0 ? a : alpha (e^a - 1);
 * da = g where a > 0, else g (out + alpha) (= g alpha e^a, finite for any a) ---- */
static int elu_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    gin[0] = nb_where(nb_gt_scalar(a, 0.0), g, nb_mul(g, nb_add_scalar(y, n->p.d[0])));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_elu(nb_tensor *a, double alpha) {
    return float_only("nb_elu", NB_OP_ELU, "EluBackward", elu_backward, 1 | NB__SAVE_OUT, a, alpha, 0.0);
}

/* ---- gelu: exact out = a Φ(a), Φ(a) = (1 + erf(a/√2))/2;
 *   da = g (Φ(a) + a φ(a)), φ(a) = e^(-a²/2)/√(2π).
 * tanh approximation: out = a (1 + tanh u)/2, u = √(2/π) (a + 0.044715 a³);
 *   da = g ((1 + t)/2 + a (1 - t²) √(2/π) (1 + 3·0.044715 a²)/2), t = tanh u. ---- */
#define SQRT_2_OVER_PI 0.79788456080286535588
#define GELU_C 0.044715
static int gelu_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0);
    if (!nb_is_grad_enabled() && a && g && fusable(g, a)) {   /* one pass: GELU_BACKWARD */
        gin[0] = nb__scoped(
            nb__ew_binary_ex("GeluBackward", NB_OP_GELU_BACKWARD, g, a, g->dtype, g->dtype, n->p.d[0]));
        return nb__grads_ok(n, gin);
    }
    /* create_graph (or a broadcast g): public ops, differentiable again */
    nb_tensor *a2 = nb_mul(a, a), *d;
    if (n->p.d[0] != 0) {
        nb_tensor *t = nb_tanh(nb_mul_scalar(nb_add(a, nb_mul_scalar(nb_mul(a2, a), GELU_C)), SQRT_2_OVER_PI));
        nb_tensor *left = nb_mul_scalar(nb_add_scalar(t, 1.0), 0.5);
        nb_tensor *du = nb_mul_scalar(nb_add_scalar(nb_mul_scalar(a2, 3.0 * GELU_C), 1.0), 0.5 * SQRT_2_OVER_PI);
        d = nb_add(left, nb_mul(nb_mul(a, nb_add_scalar(nb_neg(nb_mul(t, t)), 1.0)), du));
    } else {
        nb_tensor *e = nb_erf(nb_mul_scalar(a, 0.70710678118654752440 /* 1/√2 */));
        nb_tensor *cdf = nb_mul_scalar(nb_add_scalar(e, 1.0), 0.5);
        nb_tensor *pdf = nb_mul_scalar(nb_exp(nb_mul_scalar(a2, -0.5)), 0.3989422804014327 /* 1/√(2π) */);
        d = nb_add(cdf, nb_mul(a, pdf));
    }
    gin[0] = nb_mul(g, d);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_gelu(nb_tensor *a, bool approximate) {
    return float_only("nb_gelu", NB_OP_GELU, "GeluBackward", gelu_backward, 1, a, approximate ? 1.0 : 0.0, 0.0);
}

/* ---- silu: out = a σ(a);  da = g σ(a) (1 + a (1 - σ(a))) ---- */
static int silu_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0), *s = nb_sigmoid(a);
    gin[0] = nb_mul(g, nb_mul(s, nb_add_scalar(nb_mul(a, nb_add_scalar(nb_neg(s), 1.0)), 1.0)));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_silu(nb_tensor *a) {
    return float_only("nb_silu", NB_OP_SILU, "SiluBackward", silu_backward, 1, a, 0.0, 0.0);
}

/* ---- softplus: out = log(1 + e^(beta a))/beta, or a where beta a > threshold;
 * da = g σ(beta a), or g where beta a > threshold ---- */
static int softplus_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *ba = nb_mul_scalar(nb__saved_get(n, 0), n->p.d[0]);
    gin[0] = nb_where(nb_gt_scalar(ba, n->p.d[1]), g, nb_mul(g, nb_sigmoid(ba)));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_softplus(nb_tensor *a, double beta, double threshold) {
    NB_CHECK_ARG("nb_softplus", a);
    if (!(beta != 0) || isnan(threshold)) {
        nb__err(NB_EINVAL, "nb_softplus: beta must be nonzero and threshold a number (got beta %g, threshold %g)",
                beta, threshold);
        return NULL;
    }
    return float_only("nb_softplus", NB_OP_SOFTPLUS, "SoftplusBackward", softplus_backward, 1, a, beta, threshold);
}
