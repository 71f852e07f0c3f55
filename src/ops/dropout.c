/* dropout.c — seeded dropout (torch.nn.functional.dropout with the
 * generator made explicit).
 *
 * The mask is a pure function of (seed, element index in C order), drawn by
 * the kernel from Philox; no mask tensor is stored. Dropout with a fixed mask
 * is linear, so its backward is dropout of the gradient with the same seed
 * and p (the gradient has x's shape, so it gets the same mask), and that
 * backward is itself differentiable the same way.
 */
#include "ops/ops.h"

static nb_tensor *dropout_train(nb_tensor *x, double p, uint64_t seed);

static int dropout_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = dropout_train(g, n->p.d[0], (uint64_t)n->p.i[1]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *dropout_train(nb_tensor *x, double p, uint64_t seed) {
    const char *who = "nb_dropout";
    NB_CHECK_ARG(who, x);
    int64_t s = (int64_t)seed;
    nb_tensor *seed_t = nb__new(who, NB_DTYPE_I64, 0, NULL);   /* the kernel's seed operand */
    if (!seed_t) return NULL;
    *(int64_t *)nb_data(seed_t) = s;
    nb_tensor *y = nb__new(who, x->dtype, x->ndim, x->shape);
    int rc = NB_ENOMEM;
    if (y) {
        nb_kernel_args args = {.op = NB_OP_DROPOUT, .out = y, .in = {x, seed_t}, .nin = 2, .scalar = {p}};
        rc = nb__dispatch(&args, who);
    }
    nb_release(seed_t);
    if (rc) {
        nb_release(y);
        return NULL;
    }
    nb__node *node;
    y = nb__finish(y, "DropoutBackward", who, dropout_backward, &x, 1, 0, &node);
    if (node) {
        node->p.d[0] = p;
        node->p.i[1] = s;
    }
    return y;
}

NB_API nb_tensor *nb_dropout(nb_tensor *x, double p, bool train, uint64_t seed) {
    const char *who = "nb_dropout";
    NB_CHECK_ARG(who, x);
    if (nb__check_float(who, x)) return NULL;
    if (!(p >= 0 && p <= 1)) {
        nb__err(NB_EINVAL, "%s: dropout probability has to be between 0 and 1, but got %g", who, p);
        return NULL;
    }
    if (!train) return nb__scoped(nb_retain(x));
    return dropout_train(x, p, seed);
}
