/* binary.c — add, sub, mul, div, pow: broadcasting element-wise ops of two
 * tensors of one dtype. Each backward reduces the (broadcast) gradient back
 * to its input's shape with nb_sum_to; the input shapes are kept in the node.
 */
#include "ops/ops.h"

#define NEED(i) nb__needs_input_grad(n, i)
#define TO_A(x) nb_sum_to((x), n->shape[0])
#define TO_B(x) nb_sum_to((x), n->shape[1])

/* Shared forward: checks, kernel, node with input shapes and saved tensors. */
static nb_tensor *binary(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                         nb_tensor *a, nb_tensor *b) {
    NB_CHECK_ARG(who, a);
    NB_CHECK_ARG(who, b);
    nb_tensor *in[2] = {a, b};
    nb__node *node;
    nb_tensor *out = nb__finish(nb__ew_binary(who, op, a, b), name, who, bw, in, 2, save, &node);
    if (node) {
        node->shape[0] = nb_dims_get(a);
        node->shape[1] = nb_dims_get(b);
    }
    return out;
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
    if (a->dtype == NB_DTYPE_I64 || a->dtype == NB_DTYPE_BOOL) {
        nb__err(NB_EDTYPE, "nb_div: true division of %s tensors needs type promotion, which comes with the "
                           "full op set; convert with nb_to_dtype first",
                nb_dtype_name(a->dtype));
        return NULL;
    }
    return binary("nb_div", NB_OP_DIV, "DivBackward", div_backward, 3, a, b);
}

/* ---- pow: out = a ** b;  da = g*b*a^(b-1), db = g*out*log(a) ----
 * Differs from PyTorch at a == 0 (PyTorch masks db to 0 there; we give NaN
 * through log(0)*0) and where b == 0 (PyTorch gives da = 0). */
static int pow_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0), *b = nb__saved_get(n, 1);
    if (NEED(0)) gin[0] = TO_A(nb_mul(g, nb_mul(b, nb_pow(a, nb_add_scalar(b, -1.0)))));
    if (NEED(1)) gin[1] = TO_B(nb_mul(g, nb_mul(nb_pow(a, b), nb_log(a))));
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_pow(nb_tensor *a, nb_tensor *b) {
    return binary("nb_pow", NB_OP_POW, "PowBackward", pow_backward, 3, a, b);
}
