/* compare.c — comparisons (eq, ne, lt, le, gt, ge with a tensor or a
 * scalar), logical not/and/or, where and masked_fill.
 *
 * Comparisons and logical ops broadcast, compute in the promoted dtype of
 * their operands (torch.result_type, so f32 == 0.1 compares in f32) and give
 * BOOL; they record no graph node (their result has no gradient, as in
 * PyTorch). where(cond, a, b) takes a BOOL cond, broadcasts all three and
 * promotes a with b; masked_fill(t, mask, v) takes a BOOL mask, broadcasts t
 * with mask and keeps t's dtype. Both pass gradients through to the chosen
 * elements; the backward sits directly above the forward.
 */
#include "ops/ops.h"

#include <math.h>

#define NEED(i) nb__needs_input_grad(n, i)

/* ---- comparisons and logical ops: no autograd ---- */

static nb_tensor *compare(const char *who, nb_op op, nb_tensor *a, nb_tensor *b) {
    NB_CHECK_ARG(who, a);
    NB_CHECK_ARG(who, b);
    return nb__scoped(nb__ew_binary_ex(who, op, a, b, nb__result_type(a, b), NB_DTYPE_BOOL, 0.0));
}

static nb_tensor *compare_scalar(const char *who, nb_op op, nb_tensor *a, double s) {
    NB_CHECK_ARG(who, a);
    return nb__scoped(nb__ew_unary_ex(who, op, a, nb__result_type_scalar(a, s), NB_DTYPE_BOOL, s, 0.0));
}

NB_API nb_tensor *nb_eq(nb_tensor *a, nb_tensor *b) { return compare("nb_eq", NB_OP_EQ, a, b); }
NB_API nb_tensor *nb_ne(nb_tensor *a, nb_tensor *b) { return compare("nb_ne", NB_OP_NE, a, b); }
NB_API nb_tensor *nb_lt(nb_tensor *a, nb_tensor *b) { return compare("nb_lt", NB_OP_LT, a, b); }
NB_API nb_tensor *nb_le(nb_tensor *a, nb_tensor *b) { return compare("nb_le", NB_OP_LE, a, b); }
NB_API nb_tensor *nb_gt(nb_tensor *a, nb_tensor *b) { return compare("nb_gt", NB_OP_GT, a, b); }
NB_API nb_tensor *nb_ge(nb_tensor *a, nb_tensor *b) { return compare("nb_ge", NB_OP_GE, a, b); }
NB_API nb_tensor *nb_eq_scalar(nb_tensor *a, double s) { return compare_scalar("nb_eq_scalar", NB_OP_EQ_SCALAR, a, s); }
NB_API nb_tensor *nb_ne_scalar(nb_tensor *a, double s) { return compare_scalar("nb_ne_scalar", NB_OP_NE_SCALAR, a, s); }
NB_API nb_tensor *nb_lt_scalar(nb_tensor *a, double s) { return compare_scalar("nb_lt_scalar", NB_OP_LT_SCALAR, a, s); }
NB_API nb_tensor *nb_le_scalar(nb_tensor *a, double s) { return compare_scalar("nb_le_scalar", NB_OP_LE_SCALAR, a, s); }
NB_API nb_tensor *nb_gt_scalar(nb_tensor *a, double s) { return compare_scalar("nb_gt_scalar", NB_OP_GT_SCALAR, a, s); }
NB_API nb_tensor *nb_ge_scalar(nb_tensor *a, double s) { return compare_scalar("nb_ge_scalar", NB_OP_GE_SCALAR, a, s); }

NB_API nb_tensor *nb_logical_not(nb_tensor *a) {
    NB_CHECK_ARG("nb_logical_not", a);
    return nb__scoped(nb__ew_unary_ex("nb_logical_not", NB_OP_LOGICAL_NOT, a, a->dtype, NB_DTYPE_BOOL, 0.0, 0.0));
}
NB_API nb_tensor *nb_logical_and(nb_tensor *a, nb_tensor *b) {
    return compare("nb_logical_and", NB_OP_LOGICAL_AND, a, b);
}
NB_API nb_tensor *nb_logical_or(nb_tensor *a, nb_tensor *b) {
    return compare("nb_logical_or", NB_OP_LOGICAL_OR, a, b);
}

/* ---- shared by where and masked_fill ---- */

static int check_bool(const char *who, const char *what, const nb_tensor *t) {
    if (t->dtype == NB_DTYPE_BOOL) return 0;
    return nb__err(NB_EDTYPE, "%s: expected %s to be a bool tensor, got %s of shape %s (make one with a comparison "
                              "or nb_to_dtype(t, NB_BOOL))",
                   who, what, nb_dtype_name(t->dtype), nb__shape_str(t));
}

/* Allocates out (out_dt, shape), expands each of the n inputs to shape and
 * runs op. Returns out (+1, not scoped) or NULL. */
static nb_tensor *run_expanded(const char *who, nb_op op, nb_dtype out_dt, int nd, const int64_t *shape,
                               nb_tensor *const *ins, int n, double s) {
    nb_tensor *out = nb__new(who, out_dt, nd, shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .nin = n, .scalar = {s}};
    int rc = 0;
    for (int i = 0; i < n; i++) {
        args.in[i] = nb__expand_alias(ins[i], nd, shape);
        if (!args.in[i]) rc = NB_ENOMEM;
    }
    if (!rc) rc = nb__dispatch(&args, who);
    for (int i = 0; i < n; i++) nb_release((nb_tensor *)args.in[i]);
    if (rc) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* ---- where: out = cond ? a : b;  da = g where cond, db = g where !cond,
 * each summed to its input's shape and cast to its dtype ---- */
static int where_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *cond = nb__saved_get(n, 0);
    if (NEED(1))
        gin[1] = nb__grad_to(nb_masked_fill(g, nb_logical_not(cond), 0.0), n->shape[0], (nb_dtype)n->p.i[0]);
    if (NEED(2)) gin[2] = nb__grad_to(nb_masked_fill(g, cond, 0.0), n->shape[1], (nb_dtype)n->p.i[1]);
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_where(nb_tensor *cond, nb_tensor *a, nb_tensor *b) {
    const char *who = "nb_where";
    NB_CHECK_ARG(who, cond);
    NB_CHECK_ARG(who, a);
    NB_CHECK_ARG(who, b);
    if (check_bool(who, "cond", cond)) return NULL;
    int nd, nd1;
    int64_t shape[NB_MAX_DIMS], s1[NB_MAX_DIMS];
    if (nb__broadcast(who, a->ndim, a->shape, b->ndim, b->shape, &nd1, s1) ||
        nb__broadcast(who, cond->ndim, cond->shape, nd1, s1, &nd, shape)) {
        nb__err(NB_ESHAPE, "%s: shapes cond %s, a %s and b %s cannot be broadcast together", who,
                nb__shape_str(cond), nb__shape_str(a), nb__shape_str(b));
        return NULL;
    }
    nb_dtype ct = nb__result_type(a, b);
    nb_tensor *ca = nb__convert(who, a, ct), *cb = ca ? nb__convert(who, b, ct) : NULL;
    nb_tensor *ins[3] = {ca, cb, cond};
    nb_tensor *out = cb ? run_expanded(who, NB_OP_WHERE, ct, nd, shape, ins, 3, 0.0) : NULL;
    nb_release(ca);
    nb_release(cb);
    nb_tensor *in[3] = {cond, a, b};
    nb__node *node;
    out = nb__finish(out, "WhereBackward", who, where_backward, in, 3, 1, &node);
    if (node) {
        node->shape[0] = nb_dims_get(a), node->shape[1] = nb_dims_get(b);
        node->p.i[0] = a->dtype, node->p.i[1] = b->dtype;
    }
    return out;
}

/* ---- masked_fill: out = mask ? value : t;  dt = g where !mask ---- */
static int masked_fill_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    gin[0] = nb_sum_to(nb_masked_fill(g, nb__saved_get(n, 0), 0.0), n->shape[0]);   /* saved 0: the mask */
    return nb__grads_ok(n, gin);
}
NB_API nb_tensor *nb_masked_fill(nb_tensor *t, nb_tensor *mask, double value) {
    const char *who = "nb_masked_fill";
    NB_CHECK_ARG(who, t);
    NB_CHECK_ARG(who, mask);
    if (check_bool(who, "mask", mask)) return NULL;
    if (t->dtype == NB_DTYPE_I64 && !(fabs(value) < 9223372036854775808.0)) {
        nb__err(NB_EINVAL, "%s: value %g cannot be converted to i64 (tensor of shape %s)", who, value,
                nb__shape_str(t));
        return NULL;
    }
    int nd;
    int64_t shape[NB_MAX_DIMS];
    if (nb__broadcast(who, t->ndim, t->shape, mask->ndim, mask->shape, &nd, shape)) return NULL;
    nb_tensor *ins[2] = {t, mask};
    nb_tensor *out = run_expanded(who, NB_OP_MASKED_FILL, t->dtype, nd, shape, ins, 2, value);
    nb__node *node;
    out = nb__finish(out, "MaskedFillBackward", who, masked_fill_backward, ins, 2, 2, &node);
    if (node) node->shape[0] = nb_dims_get(t);
    return out;
}
