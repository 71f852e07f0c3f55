/* inplace.c — in-place variants: add_, sub_, mul_, div_, mul_scalar_,
 * clamp_, fill_, zero_, copy_. Each writes into `self` and bumps its
 * storage's version, so a backward that saved `self` (or a view of it) fails
 * with a clear error instead of using changed values.
 *
 * In-place ops on a tensor that requires grad, while grad mode is on, are
 * refused (PyTorch would rebase the graph; nabla does not yet): use them under
 * nb_set_grad_enabled(false), as optimizers do.
 */
#include "ops/ops.h"

#include <math.h>

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

/* Runs a->op with out = self and bumps self's version. */
static nb_tensor *run_into(const char *who, nb_kernel_args *a, nb_tensor *self) {
    if (nb__dispatch(a, who)) return NULL;
    nb_bump_version(self);
    return self;
}

/* self op= other, with other broadcast to self's shape. The op is computed in
 * the promoted dtype (true division for div) and must be castable to self's
 * dtype, as PyTorch: f32 += f64 computes in f64 and rounds; i64 += 1.5 is an
 * error. COPY converts to self's dtype whatever src's. */
static nb_tensor *binary_(const char *who, nb_op op, nb_tensor *self, nb_tensor *other) {
    if (!self) return nb__null_arg(who, "self");
    if (!other) return nb__null_arg(who, "other");
    if (check_self(who, self, other)) return NULL;
    int nd;
    int64_t shape[NB_MAX_DIMS];
    if (nb__broadcast(who, self->ndim, self->shape, other->ndim, other->shape, &nd, shape)) return NULL;
    for (int i = 0; i < nd; i++)
        if (nd != self->ndim || shape[i] != self->shape[i]) {
            nb__err(NB_ESHAPE, "%s: output with shape %s doesn't match the broadcast shape %s", who,
                    nb__shape_str(self), nb__dims_str(nd, shape));
            return NULL;
        }
    if (op == NB_OP_SUB && (self->dtype == NB_DTYPE_BOOL || other->dtype == NB_DTYPE_BOOL)) {
        nb__err(NB_EDTYPE, "%s: subtraction with a bool tensor (%s %s and %s %s) is not supported", who,
                nb_dtype_name(self->dtype), nb__shape_str(self), nb_dtype_name(other->dtype), nb__shape_str(other));
        return NULL;
    }
    nb_dtype ct = op == NB_OP_COPY ? other->dtype : nb__result_type(self, other);
    if (op == NB_OP_DIV) ct = nb__float_of(ct);
    if (op != NB_OP_COPY && nb__check_cast(who, ct, self)) return NULL;
    nb_tensor *src = NULL;
    if (op == NB_OP_COPY || ct == self->dtype) {
        src = nb__convert(who, other, ct);   /* computed in self's dtype, in place */
    } else {
        src = nb__ew_binary_ex(who, op, self, other, ct, ct, 0.0);   /* wider: compute, then convert */
        op = NB_OP_COPY;
    }
    nb_tensor *e = src ? nb__expand_alias(src, self->ndim, self->shape) : NULL;
    nb_release(src);
    if (!e) return NULL;
    nb_kernel_args a = {.op = op, .out = self, .in = {self, e}, .nin = 2};
    if (op == NB_OP_COPY) a.in[0] = e, a.nin = 1;
    nb_tensor *r = run_into(who, &a, self);
    nb_release(e);
    return r;
}

NB_API nb_tensor *nb_add_(nb_tensor *self, nb_tensor *other) { return binary_("nb_add_", NB_OP_ADD, self, other); }
NB_API nb_tensor *nb_sub_(nb_tensor *self, nb_tensor *other) { return binary_("nb_sub_", NB_OP_SUB, self, other); }
NB_API nb_tensor *nb_mul_(nb_tensor *self, nb_tensor *other) { return binary_("nb_mul_", NB_OP_MUL, self, other); }
NB_API nb_tensor *nb_div_(nb_tensor *self, nb_tensor *other) { return binary_("nb_div_", NB_OP_DIV, self, other); }
NB_API nb_tensor *nb_copy_(nb_tensor *self, nb_tensor *src) { return binary_("nb_copy_", NB_OP_COPY, self, src); }

/* self = op(self, s0, s1); `ct` is the dtype the out-of-place op would give,
 * which must be castable to self's (checked unless FILL, which casts). */
static nb_tensor *scalar_(const char *who, nb_op op, nb_tensor *self, nb_dtype ct, double s0, double s1) {
    if (!self) return nb__null_arg(who, "self");
    if (check_self(who, self, NULL)) return NULL;
    if (op != NB_OP_FILL && nb__check_cast(who, ct, self)) return NULL;
    nb_kernel_args a = {.op = op, .out = self, .in = {self}, .nin = op == NB_OP_FILL ? 0 : 1, .scalar = {s0, s1}};
    return run_into(who, &a, self);
}

NB_API nb_tensor *nb_mul_scalar_(nb_tensor *self, double s) {
    nb_dtype ct = self ? nb__result_type_scalar(self, s) : NB_DTYPE_F32;
    return scalar_("nb_mul_scalar_", NB_OP_MUL_SCALAR, self, ct, s, 0.0);
}
NB_API nb_tensor *nb_fill_(nb_tensor *self, double v) {
    if (self && self->dtype == NB_DTYPE_I64 && !(fabs(v) < 9223372036854775808.0)) {
        nb__err(NB_EINVAL, "nb_fill_: value %g cannot be converted to i64 (self of shape %s)", v, nb__shape_str(self));
        return NULL;
    }
    return scalar_("nb_fill_", NB_OP_FILL, self, NB_DTYPE_BOOL, v, 0.0);
}
NB_API nb_tensor *nb_zero_(nb_tensor *self) { return scalar_("nb_zero_", NB_OP_FILL, self, NB_DTYPE_BOOL, 0.0, 0.0); }

NB_API nb_tensor *nb_clamp_(nb_tensor *self, double min, double max) {
    const char *who = "nb_clamp_";
    if (!self) return nb__null_arg(who, "self");
    if (isnan(min) && isnan(max)) {
        nb__err(NB_EINVAL, "nb_clamp_: at least one of min and max must be given (not NAN); self of shape %s",
                nb__shape_str(self));
        return NULL;
    }
    if (self->dtype == NB_DTYPE_BOOL) {
        nb__err(NB_EDTYPE, "nb_clamp_: not supported on a bool tensor (shape %s)", nb__shape_str(self));
        return NULL;
    }
    return scalar_(who, NB_OP_CLAMP, self, nb__clamp_type(self, min, max), min, max);
}
