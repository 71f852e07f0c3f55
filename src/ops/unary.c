/* unary.c — neg, exp, log, tanh and the ops with a Python-style scalar
 * (add_scalar, mul_scalar, pow_scalar). Same shape out as in; the dtype
 * follows PyTorch: exp/log/tanh of an integer tensor give f32, a scalar op
 * promotes as torch.result_type(tensor, scalar) (i64 + 2.5 is f32, bool * 2
 * is i64), neg keeps the dtype and refuses bool.
 */
#include "ops/ops.h"

#define NEED0 nb__needs_input_grad(n, 0)

enum { U_SAME, U_FLOAT, U_SCALAR };   /* how the result dtype is chosen */

static nb_tensor *unary(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                        nb_tensor *a, double s, int kind, nb__node **node) {
    if (node) *node = NULL;
    NB_CHECK_ARG(who, a);
    nb_dtype ct = a->dtype;
    if (kind == U_FLOAT) ct = nb__float_of(a->dtype);
    if (kind == U_SCALAR) ct = nb__result_type_scalar(a, s);
    if (kind == U_SAME && a->dtype == NB_DTYPE_BOOL) {
        nb__err(NB_EDTYPE, "%s: not supported on a bool tensor (shape %s); for a mask use nb_logical_not", who,
                nb__shape_str(a));
        return NULL;
    }
    nb_tensor *in[1] = {a};
    return nb__finish(nb__ew_unary_ex(who, op, a, ct, ct, s, 0.0), name, who, bw, in, 1, save, node);
}

/* ---- neg: out = -a ---- */
static int neg_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_neg(g);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_neg(nb_tensor *a) {
    return unary("nb_neg", NB_OP_NEG, "NegBackward", neg_backward, 0, a, 0, U_SAME, NULL);
}

/* ---- exp: out = e^a;  da = g * out ---- */
static int exp_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul(g, nb__saved_get(n, 0));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_exp(nb_tensor *a) {
    return unary("nb_exp", NB_OP_EXP, "ExpBackward", exp_backward, NB__SAVE_OUT, a, 0, U_FLOAT, NULL);
}

/* ---- log: out = ln a;  da = g / a ---- */
static int log_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_div(g, nb__saved_get(n, 0));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_log(nb_tensor *a) {
    return unary("nb_log", NB_OP_LOG, "LogBackward", log_backward, 1, a, 0, U_FLOAT, NULL);
}

/* ---- tanh: out = tanh a;  da = g * (1 - out²) ---- */
static int tanh_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb__tanh_backward(g, nb__saved_get(n, 0));   /* activation.c: one pass */
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_tanh(nb_tensor *a) {
    return unary("nb_tanh", NB_OP_TANH, "TanhBackward", tanh_backward, NB__SAVE_OUT, a, 0, U_FLOAT, NULL);
}

/* ---- add_scalar: out = a + s ---- */
static int adds_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb__scoped(nb_retain(g));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_add_scalar(nb_tensor *a, double s) {
    return unary("nb_add_scalar", NB_OP_ADD_SCALAR, "AddBackward", adds_backward, 0, a, s, U_SCALAR, NULL);
}

/* ---- mul_scalar: out = a * s;  da = g * s ---- */
static int muls_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_mul_scalar(g, n->p.d[0]);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_mul_scalar(nb_tensor *a, double s) {
    nb__node *node;
    nb_tensor *out = unary("nb_mul_scalar", NB_OP_MUL_SCALAR, "MulBackward", muls_backward, 0, a, s, U_SCALAR, &node);
    if (node) node->p.d[0] = s;
    return out;
}

/* ---- pow_scalar: out = a ** s;  da = g * s * a^(s-1) (0 when s == 0) ---- */
static int pows_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    double s = n->p.d[0];
    nb_tensor *a = nb__saved_get(n, 0);
    if (s == 0.0) gin[0] = nb_mul_scalar(g, 0.0);
    else gin[0] = nb_mul(g, nb_mul_scalar(nb_pow_scalar(a, s - 1.0), s));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_pow_scalar(nb_tensor *a, double s) {
    nb__node *node;
    nb_tensor *out = unary("nb_pow_scalar", NB_OP_POW_SCALAR, "PowBackward", pows_backward, 1, a, s, U_SCALAR, &node);
    if (node) node->p.d[0] = s;
    return out;
}
