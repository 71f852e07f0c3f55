/* softmax.c — softmax and log_softmax along a dim, and their backward ops.
 *
 * Forward and backward are kernels of their own (row-wise, see
 * kernels/ref/ref_softmax.c): the backward of y = softmax(x) is
 * softmax_backward(g, y) = y (g - sum(g y)), of y = log_softmax(x) it is
 * log_softmax_backward(g, y) = g - exp(y) sum(g). Those backward ops record
 * nodes too, whose backward is written with public ops, so second (and
 * higher) derivatives work. Every function keeps x's shape; sums run along
 * the dim with keepdim.
 */
#include "ops/ops.h"

/* One row-wise kernel call: out (+1, x's shape) = op(in...) along dim. */
static nb_tensor *rows_raw(const char *who, nb_op op, nb_tensor *a, nb_tensor *b, int dim) {
    nb_tensor *out = nb__new(who, a->dtype, a->ndim, a->shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b}, .nin = b ? 2 : 1, .scalar = {dim}};
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

static nb_tensor *sum_dim(nb_tensor *t, int dim) { return nb_sum(t, &dim, t && t->ndim ? 1 : 0, true); }

/* ---- softmax_backward(g, y) = y (g - sum(g y)); its own derivatives, with
 * h the incoming gradient:  d/dg = softmax_backward(h, y),
 * d/dy = h (g - sum(g y)) - g sum(h y) ---- */
static int softmax_backward_backward(nb__node *n, nb_tensor *h, nb_tensor **gin) {
    nb_tensor *g = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    int dim = (int)n->p.i[0];
    if (nb__needs_input_grad(n, 0)) gin[0] = nb__softmax_backward(h, y, dim);
    if (nb__needs_input_grad(n, 1))
        gin[1] = nb_sub(nb_mul(h, nb_sub(g, sum_dim(nb_mul(g, y), dim))), nb_mul(g, sum_dim(nb_mul(h, y), dim)));
    return nb__grads_ok(n, gin);
}

nb_tensor *nb__softmax_backward(nb_tensor *g, nb_tensor *y, int dim) {
    const char *who = "nb_softmax_backward";
    NB_CHECK_ARG(who, g);
    NB_CHECK_ARG(who, y);
    if (dim < 0) dim += g->ndim;   /* the kernels take a dim in [0, ndim) */
    if (dim < 0 || dim >= (g->ndim ? g->ndim : 1)) {
        nb__err(NB_EINVAL, "%s: dim out of range for %s", who, nb__shape_str(g));
        return NULL;
    }
    nb_tensor *out = rows_raw(who, NB_OP_SOFTMAX_BACKWARD, g, y, dim);
    nb__node *node;
    nb_tensor *in[2] = {g, y};
    out = nb__finish(out, "SoftmaxBackwardBackward", who, softmax_backward_backward, in, 2, 3, &node);
    if (node) node->p.i[0] = dim;
    return out;
}

/* ---- log_softmax_backward(g, y) = g - exp(y) sum(g); with h incoming:
 * d/dg = h - sum(h exp(y)),  d/dy = -h exp(y) sum(g) ---- */
static int log_softmax_backward_backward(nb__node *n, nb_tensor *h, nb_tensor **gin) {
    nb_tensor *g = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    int dim = (int)n->p.i[0];
    nb_tensor *ey = nb_exp(y);
    if (nb__needs_input_grad(n, 0)) gin[0] = nb_sub(h, sum_dim(nb_mul(h, ey), dim));
    if (nb__needs_input_grad(n, 1)) gin[1] = nb_neg(nb_mul(nb_mul(h, ey), sum_dim(g, dim)));
    return nb__grads_ok(n, gin);
}

nb_tensor *nb__log_softmax_backward(nb_tensor *g, nb_tensor *y, int dim) {
    const char *who = "nb_log_softmax_backward";
    NB_CHECK_ARG(who, g);
    NB_CHECK_ARG(who, y);
    if (dim < 0) dim += g->ndim;   /* the kernels take a dim in [0, ndim) */
    if (dim < 0 || dim >= (g->ndim ? g->ndim : 1)) {
        nb__err(NB_EINVAL, "%s: dim out of range for %s", who, nb__shape_str(g));
        return NULL;
    }
    nb_tensor *out = rows_raw(who, NB_OP_LOG_SOFTMAX_BACKWARD, g, y, dim);
    nb__node *node;
    nb_tensor *in[2] = {g, y};
    out = nb__finish(out, "LogSoftmaxBackwardBackward", who, log_softmax_backward_backward, in, 2, 3, &node);
    if (node) node->p.i[0] = dim;
    return out;
}

/* ---- softmax and log_softmax: backward from the saved output ---- */
static int softmax_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb__softmax_backward(g, nb__saved_get(n, 0), (int)n->p.i[0]);
    return nb__grads_ok(n, gin);
}
static int log_softmax_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb__log_softmax_backward(g, nb__saved_get(n, 0), (int)n->p.i[0]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *softmax_op(const char *who, const char *name, nb_op op, nb__backward_fn bw, nb_tensor *x,
                             int dim) {
    NB_CHECK_ARG(who, x);
    if (nb__check_float(who, x)) return NULL;
    int d = nb__wrap_dim(who, dim, x->ndim);
    if (d < 0) return NULL;
    nb_tensor *y = rows_raw(who, op, x, NULL, d);
    nb__node *node;
    y = nb__finish(y, name, who, bw, &x, 1, NB__SAVE_OUT, &node);
    if (node) node->p.i[0] = d;
    return y;
}

NB_API nb_tensor *nb_softmax(nb_tensor *x, int dim) {
    return softmax_op("nb_softmax", "SoftmaxBackward", NB_OP_SOFTMAX, softmax_backward, x, dim);
}
NB_API nb_tensor *nb_log_softmax(nb_tensor *x, int dim) {
    return softmax_op("nb_log_softmax", "LogSoftmaxBackward", NB_OP_LOG_SOFTMAX, log_softmax_backward, x, dim);
}
