/* inplace.c — in-place variants: add_, mul_, mul_scalar_, fill_, zero_,
 * copy_. Each writes into `self` and bumps its storage's version, so a
 * backward that saved `self` (or a view of it) fails with a clear error
 * instead of using changed values.
 *
 * In-place ops on a tensor that requires grad, while grad mode is on, are
 * refused (PyTorch would rebase the graph; nabla does not yet): use them under
 * nb_set_grad_enabled(false), as optimizers do.
 */
#include "ops/ops.h"

static int check_self(const char *who, nb_tensor *self, nb_tensor *other) {
    if (nb__grad_mode() && (nb__requires_grad(self) || nb__requires_grad(other)))
        return nb__err(NB_EAUTOGRAD,
                       "%s: a tensor that requires grad is being used in an in-place operation; in-place ops "
                       "are not recorded in the graph: run them with grad mode off (nb_set_grad_enabled(false)) "
                       "or use the out-of-place op",
                       who);
    for (int d = 0; d < self->ndim; d++)
        if (self->stride[d] == 0 && self->shape[d] > 1)
            return nb__err(NB_EINVAL, "%s: more than one element of the written-to tensor (shape %s) refers to a "
                                      "single memory location; clone it first",
                           who, nb__shape_str(self));
    return 0;
}

/* self op= other, with other broadcast to self's shape. */
static nb_tensor *binary_(const char *who, nb_op op, nb_tensor *self, nb_tensor *other) {
    if (!self) return nb__null_arg(who, "self");
    if (!other) return nb__null_arg(who, "other");
    if (check_self(who, self, other)) return NULL;
    if (op != NB_OP_COPY && nb__check_same_dtype(who, self, other)) return NULL;
    int nd;
    int64_t shape[NB_MAX_DIMS];
    if (nb__broadcast(who, self->ndim, self->shape, other->ndim, other->shape, &nd, shape)) return NULL;
    for (int i = 0; i < nd; i++)
        if (nd != self->ndim || shape[i] != self->shape[i]) {
            nb__err(NB_ESHAPE, "%s: output with shape %s doesn't match the broadcast shape %s", who,
                    nb__shape_str(self), nb__dims_str(nd, shape));
            return NULL;
        }
    nb_tensor *e = nb__expand_alias(other, self->ndim, self->shape);
    if (!e) return NULL;
    nb_kernel_args a = {.op = op, .out = self, .in = {self, e}, .nin = 2};
    if (op == NB_OP_COPY) a.in[0] = e, a.nin = 1;
    int rc = nb__dispatch(&a, who);
    nb_release(e);
    if (rc) return NULL;
    nb_bump_version(self);
    return self;
}

NB_API nb_tensor *nb_add_(nb_tensor *self, nb_tensor *other) { return binary_("nb_add_", NB_OP_ADD, self, other); }
NB_API nb_tensor *nb_mul_(nb_tensor *self, nb_tensor *other) { return binary_("nb_mul_", NB_OP_MUL, self, other); }
NB_API nb_tensor *nb_copy_(nb_tensor *self, nb_tensor *src) { return binary_("nb_copy_", NB_OP_COPY, self, src); }

static nb_tensor *scalar_(const char *who, nb_op op, nb_tensor *self, double s) {
    if (!self) return nb__null_arg(who, "self");
    if (check_self(who, self, NULL)) return NULL;
    nb_kernel_args a = {.op = op, .out = self, .in = {self}, .nin = op == NB_OP_FILL ? 0 : 1, .scalar = {s}};
    if (nb__dispatch(&a, who)) return NULL;
    nb_bump_version(self);
    return self;
}

NB_API nb_tensor *nb_mul_scalar_(nb_tensor *self, double s) { return scalar_("nb_mul_scalar_", NB_OP_MUL_SCALAR, self, s); }
NB_API nb_tensor *nb_fill_(nb_tensor *self, double v) { return scalar_("nb_fill_", NB_OP_FILL, self, v); }
NB_API nb_tensor *nb_zero_(nb_tensor *self) { return scalar_("nb_zero_", NB_OP_FILL, self, 0.0); }
