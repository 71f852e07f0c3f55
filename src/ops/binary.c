/* binary.c — add, sub, mul, div, pow: broadcasting element-wise ops of two
 * tensors, promoted to a common dtype as PyTorch does (promote.c; div is true
 * division, so integer inputs give f32). Each backward reduces the
 * (broadcast) gradient back to its input's shape with nb_sum_to and casts it
 * to the input's dtype; the input shapes and dtypes are kept in the node.
 */
#include "ops/ops.h"

#define NEED(i) nb__needs_input_grad(n, i)
#define TO_A(x) nb__grad_to((x), n->shape[0], (nb_dtype)n->p.i[0])
#define TO_B(x) nb__grad_to((x), n->shape[1], (nb_dtype)n->p.i[1])

/* Shared forward: checks, kernel in the computation dtype `ct`, node with
 * input shapes, dtypes and saved tensors. */
static nb_tensor *binary_ct(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                            nb_tensor *a, nb_tensor *b, nb_dtype ct) {
    nb_tensor *in[2] = {a, b};
    nb__node *node;
    nb_tensor *out = nb__finish(nb__ew_binary_ex(who, op, a, b, ct, ct, 0.0), name, who, bw, in, 2, save, &node);
    if (node) {
        node->shape[0] = nb_dims_get(a);
        node->shape[1] = nb_dims_get(b);
        node->p.i[0] = a->dtype;
        node->p.i[1] = b->dtype;
    }
    return out;
}

static nb_tensor *binary(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                         nb_tensor *a, nb_tensor *b) {
    NB_CHECK_ARG(who, a);
    NB_CHECK_ARG(who, b);
    return binary_ct(who, op, name, bw, save, a, b, nb__result_type(a, b));
}

/* ---- add: out = a + b ---- */
static int add_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    if (NEED(0)) gin[0] = TO_A(g);
    if (NEED(1)) gin[1] = TO_B(g);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_add(nb_tensor *a, nb_tensor *b) {
    return binary("nb_add", NB_OP_ADD, "AddBackward", add_backward, 0, a, b);
}

/* ---- sub: out = a - b ---- */
static int sub_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    if (NEED(0)) gin[0] = TO_A(g);
    if (NEED(1)) gin[1] = TO_B(nb_neg(g));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_sub(nb_tensor *a, nb_tensor *b) {
    NB_CHECK_ARG("nb_sub", a);
    NB_CHECK_ARG("nb_sub", b);
    if (a->dtype == NB_DTYPE_BOOL || b->dtype == NB_DTYPE_BOOL) {   /* as PyTorch */
        nb__err(NB_EDTYPE, "nb_sub: subtraction with a bool tensor (%s %s and %s %s) is not supported; for masks "
                           "use nb_logical_not/nb_logical_and, or convert with nb_to_dtype",
                nb_dtype_name(a->dtype), nb__shape_str(a), nb_dtype_name(b->dtype), nb__shape_str(b));
        return NULL;
    }
    return binary("nb_sub", NB_OP_SUB, "SubBackward", sub_backward, 0, a, b);
}

/* ---- mul: out = a * b;  da = g*b, db = g*a ---- */
static int mul_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = NEED(1) ? nb__saved_get(n, 0) : NULL;
    nb_tensor *b = NEED(0) ? nb__saved_get(n, 1) : NULL;
    if (NEED(0)) gin[0] = TO_A(nb_mul(g, b));
    if (NEED(1)) gin[1] = TO_B(nb_mul(g, a));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_mul(nb_tensor *a, nb_tensor *b) {
    return binary("nb_mul", NB_OP_MUL, "MulBackward", mul_backward, 3, a, b);
}

/* ---- div: out = a / b;  da = g/b, db = -g*a/b² ---- */
static int div_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = NEED(1) ? nb__saved_get(n, 0) : NULL;
    nb_tensor *b = nb__saved_get(n, 1);
    if (NEED(0)) gin[0] = TO_A(nb_div(g, b));
    if (NEED(1)) gin[1] = TO_B(nb_neg(nb_div(nb_mul(g, a), nb_mul(b, b))));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_div(nb_tensor *a, nb_tensor *b) {
    NB_CHECK_ARG("nb_div", a);
    NB_CHECK_ARG("nb_div", b);
    nb_dtype ct = nb__float_of(nb__result_type(a, b));   /* true division */
    return binary_ct("nb_div", NB_OP_DIV, "DivBackward", div_backward, 3, a, b, ct);
}

/* ---- pow: out = a ** b;  da = g*b*a^(b-1), db = g*out*log(a) ----
 * out is saved (as PyTorch saves `result`), not recomputed: a second pow
 * was most of the backward's time. Differs from PyTorch at a == 0 (PyTorch
 * masks db to 0 there; we give NaN through log(0)*0) and where b == 0
 * (PyTorch gives da = 0). */
static int pow_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0), *b = nb__saved_get(n, 1);
    if (NEED(0)) gin[0] = TO_A(nb_mul(g, nb_mul(b, nb_pow(a, nb_add_scalar(b, -1.0)))));
    if (NEED(1)) gin[1] = TO_B(nb_mul(g, nb_mul(nb__saved_get(n, 2), nb_log(a))));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_pow(nb_tensor *a, nb_tensor *b) {
    return binary("nb_pow", NB_OP_POW, "PowBackward", pow_backward, 3 | NB__SAVE_OUT, a, b);
}
