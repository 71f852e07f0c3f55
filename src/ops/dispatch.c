/* dispatch.c — the ops layer's shared plumbing: argument checks,
 * broadcasting, element-wise drivers and node recording.
 */
#include "ops/ops.h"

#include <string.h>

nb_tensor *nb__null_arg(const char *who, const char *what) {
    if (nb_last_error_code() == 0) nb__err(NB_ENULLARG, "%s: argument '%s' is NULL", who, what);
    return NULL;
}

int nb__check_float(const char *who, const nb_tensor *t) {
    if (t->dtype == NB_DTYPE_F32 || t->dtype == NB_DTYPE_F64) return 0;
    return nb__err(NB_EDTYPE, "%s: expected a floating point tensor (f32 or f64), got %s of shape %s", who,
                   nb_dtype_name(t->dtype), nb__shape_str(t));
}

int nb__check_same_dtype(const char *who, const nb_tensor *a, const nb_tensor *b) {
    if (a->dtype == b->dtype) return 0;
    return nb__err(NB_EDTYPE, "%s: dtypes differ: %s %s and %s %s (convert one with nb_to_dtype)", who,
                   nb_dtype_name(a->dtype), nb__shape_str(a), nb_dtype_name(b->dtype), nb__shape_str(b));
}

int nb__broadcast(const char *who, int na, const int64_t *sa, int nb, const int64_t *sb, int *nd, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t x = i < n - na ? 1 : sa[i - (n - na)];
        int64_t y = i < n - nb ? 1 : sb[i - (n - nb)];
        if (x != y && x != 1 && y != 1)
            return nb__err(NB_ESHAPE,
                           "%s: shapes %s and %s cannot be broadcast (size %lld vs %lld at dim %d of the result)",
                           who, nb__dims_str(na, sa), nb__dims_str(nb, sb), (long long)x, (long long)y, i);
        out[i] = x == 1 ? y : x;
    }
    *nd = n;
    return 0;
}

nb_tensor *nb__expand_alias(const nb_tensor *t, int nd, const int64_t *shape) {
    int64_t st[NB_MAX_DIMS];
    int lead = nd - t->ndim;
    for (int i = 0; i < nd; i++) {
        if (i < lead) st[i] = 0;
        else st[i] = t->shape[i - lead] == 1 && shape[i] != 1 ? 0 : t->stride[i - lead];
    }
    return nb__alias(t, nd, shape, st, t->offset);
}

nb_tensor *nb__ew_binary(const char *who, nb_op op, nb_tensor *a, nb_tensor *b) {
    int nd;
    int64_t shape[NB_MAX_DIMS];
    if (nb__check_same_dtype(who, a, b) || nb__broadcast(who, a->ndim, a->shape, b->ndim, b->shape, &nd, shape))
        return NULL;
    nb_tensor *out = nb__new(who, a->dtype, nd, shape);
    if (!out) return NULL;
    bool ea_same = nb__same_shape(a, out), eb_same = nb__same_shape(b, out);
    nb_tensor *ea = ea_same ? a : nb__expand_alias(a, nd, shape);
    nb_tensor *eb = eb_same ? b : nb__expand_alias(b, nd, shape);
    int rc = NB_ENOMEM;
    if (ea && eb) {
        nb_kernel_args args = {.op = op, .out = out, .in = {ea, eb}, .nin = 2};
        rc = nb__dispatch(&args, who);
    }
    if (!ea_same) nb_release(ea);
    if (!eb_same) nb_release(eb);
    if (rc) {
        nb_release(out);
        return NULL;
    }
    return out;
}

nb_tensor *nb__ew_unary(const char *who, nb_op op, nb_tensor *a, double s) {
    nb_tensor *out = nb__new(who, a->dtype, a->ndim, a->shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {a}, .nin = 1, .scalar = {s}};
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

nb_tensor *nb__finish(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw,
                      nb_tensor *const *inputs, int n, unsigned save_mask, nb__node **node_out) {
    if (node_out) *node_out = NULL;
    if (!out) return NULL;
    if (nb__should_record(inputs, n)) {
        nb__node *node = nb__record(out, name, who, bw, inputs, n);
        int rc = node ? 0 : NB_ENOMEM;
        for (int i = 0; i < n && !rc; i++)
            if (save_mask & (1u << i)) rc = nb__save(node, inputs[i]);
        if (!rc && (save_mask & NB__SAVE_OUT)) rc = nb__save_output(node, out);
        if (rc) {
            nb_release(out);
            return NULL;
        }
        if (node_out) *node_out = node;
    }
    return nb__scoped(out);
}

int nb__grads_ok(const nb__node *n, nb_tensor *const *gin) {
    for (int i = 0; i < n->nin; i++)
        if (nb__needs_input_grad(n, i) && !gin[i]) {
            int rc = nb_last_error_code();
            return rc ? rc : nb__err(NB_EAUTOGRAD, "%s: no gradient computed for input %d", n->name, i);
        }
    return 0;
}
