/* linear.c — y = x wᵀ + b, torch.nn.functional.linear.
 *
 * x (*, in) with any number of leading dims (1-D x gives 1-D y), w (out, in),
 * b (out) or NULL. One kernel call computes the whole thing (the ref kernel
 * accumulates in double); the backward is written with matmul and sum, so
 * double backward works.
 */
#include "ops/ops.h"

/* ---- dx = g @ w, dw = g2ᵀ @ x2 (leading dims flattened), db = g summed to (out) ---- */
static int linear_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *x = nb__saved_get(n, 0), *w = nb__saved_get(n, 1);
    int64_t in = n->p.i[0], out = n->p.i[1], m = n->p.i[2];
    if (nb__needs_input_grad(n, 0)) gin[0] = nb_matmul(g, w);
    if (nb__needs_input_grad(n, 1))
        gin[1] = nb_matmul(nb_transpose(nb_reshape(g, NB_SHAPE(m, out)), 0, 1), nb_reshape(x, NB_SHAPE(m, in)));
    if (n->nin > 2 && nb__needs_input_grad(n, 2)) gin[2] = nb_sum_to(g, NB_SHAPE(out));
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_linear(nb_tensor *x, nb_tensor *w, nb_tensor *b) {
    const char *who = "nb_linear";
    NB_CHECK_ARG(who, x);
    NB_CHECK_ARG(who, w);
    if (nb__check_float(who, x) || nb__check_same_dtype(who, x, w) || (b && nb__check_same_dtype(who, x, b)))
        return NULL;
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1]) {
        nb__err(NB_ESHAPE, "%s: input %s and weight %s do not fit: expected input (*, in) and weight (out, in)",
                who, nb__shape_str(x), nb__shape_str(w));
        return NULL;
    }
    int64_t in = w->shape[1], out = w->shape[0];
    if (b && (b->ndim != 1 || b->shape[0] != out)) {
        nb__err(NB_ESHAPE, "%s: bias %s does not fit weight %s: expected bias (%lld)", who, nb__shape_str(b),
                nb__shape_str(w), (long long)out);
        return NULL;
    }
    int64_t shape[NB_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = out;
    nb_tensor *y = nb__new(who, x->dtype, x->ndim, shape);
    if (!y) return NULL;
    nb_kernel_args args = {.op = NB_OP_LINEAR, .out = y, .in = {x, w, b}, .nin = b ? 3 : 2};
    if (nb__dispatch(&args, who)) {
        nb_release(y);
        return NULL;
    }
    nb__node *node;
    nb_tensor *ins[3] = {x, w, b};
    y = nb__finish(y, "LinearBackward", who, linear_backward, ins, b ? 3 : 2, 3, &node);
    if (node) {
        node->p.i[0] = in;
        node->p.i[1] = out;
        node->p.i[2] = 1;   /* rows: the product of x's leading dims */
        for (int d = 0; d < x->ndim - 1; d++) node->p.i[2] *= x->shape[d];
    }
    return y;
}
