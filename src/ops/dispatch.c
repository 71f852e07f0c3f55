/* dispatch.c — the ops layer's shared plumbing: argument checks,
 * broadcasting, element-wise drivers (with type promotion: inputs are
 * converted to the computation dtype before the kernel runs) and node
 * recording.
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

nb_tensor *nb__convert(const char *who, nb_tensor *t, nb_dtype dt) {
    if (t->dtype == dt) return nb_retain(t);
    nb_tensor *out = nb__new(who, dt, t->ndim, t->shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = NB_OP_COPY, .out = out, .in = {t}, .nin = 1};
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* t is channels-last (nb__suggests_channels_last) with shape (nd, shape). */
static bool cl_like(const nb_tensor *t, int nd, const int64_t *shape) {
    if (t->ndim != 4 || nd != 4 || !nb__suggests_channels_last(t)) return false;
    for (int i = 0; i < 4; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

/* Promotion happens here: each input is converted (at its own, unbroadcast
 * size) to the computation dtype, so the kernels see one input dtype. */
nb_tensor *nb__ew_binary_ex(const char *who, nb_op op, nb_tensor *a, nb_tensor *b, nb_dtype compute,
                            nb_dtype out_dt, double s) {
    int nd;
    int64_t shape[NB_MAX_DIMS];
    if (nb__broadcast(who, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    nb_tensor *ca = nb__convert(who, a, compute), *cb = ca ? nb__convert(who, b, compute) : NULL;
    /* the output follows a channels-last input of its own shape (as PyTorch's) */
    bool cl = cl_like(a, nd, shape) || cl_like(b, nd, shape);
    nb_tensor *out = cb ? nb__new_layout(who, out_dt, nd, shape, cl) : NULL;
    nb_tensor *ea = NULL, *eb = NULL;
    int rc = NB_ENOMEM;   /* stays when an alias cannot be made */
    if (!out) goto release_inputs;
    ea = nb__same_shape(ca, out) ? nb_retain(ca) : nb__expand_alias(ca, nd, shape);
    eb = nb__same_shape(cb, out) ? nb_retain(cb) : nb__expand_alias(cb, nd, shape);
    if (ea && eb) {
        nb_kernel_args args = {.op = op, .out = out, .in = {ea, eb}, .nin = 2, .scalar = {s}};
        rc = nb__dispatch(&args, who);
    }
    nb_release(ea);
    nb_release(eb);
    if (rc) {
        nb_release(out);
        out = NULL;
    }
release_inputs:
    nb_release(ca);
    nb_release(cb);
    return out;
}

nb_tensor *nb__ew_binary(const char *who, nb_op op, nb_tensor *a, nb_tensor *b) {
    nb_dtype dt = nb__result_type(a, b);
    return nb__ew_binary_ex(who, op, a, b, dt, dt, 0.0);
}

nb_tensor *nb__ew_unary(const char *who, nb_op op, nb_tensor *a, double s) {
    return nb__ew_unary_ex(who, op, a, a->dtype, a->dtype, s, 0.0);
}

nb_tensor *nb__ew_unary_ex(const char *who, nb_op op, nb_tensor *a, nb_dtype compute, nb_dtype out_dt, double s0,
                           double s1) {
    nb_tensor *ca = nb__convert(who, a, compute);
    nb_tensor *out = ca ? nb__new_layout(who, out_dt, a->ndim, a->shape, cl_like(a, a->ndim, a->shape)) : NULL;
    if (out) {
        nb_kernel_args args = {.op = op, .out = out, .in = {ca}, .nin = 1, .scalar = {s0, s1}};
        if (nb__dispatch(&args, who)) {
            nb_release(out);
            out = NULL;
        }
    }
    nb_release(ca);
    return out;
}

nb_tensor *nb__ew_unary_op(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                           nb_tensor *a, nb_dtype ct, double s0, double s1) {
    NB_CHECK_ARG(who, a);
    nb_tensor *in[1] = {a};
    nb__node *node;
    nb_tensor *out = nb__finish(nb__ew_unary_ex(who, op, a, ct, ct, s0, s1), name, who, bw, in, 1, save, &node);
    if (node) node->p.d[0] = s0, node->p.d[1] = s1;
    return out;
}

nb_tensor *nb__grad_to(nb_tensor *g, nb_dims shape, nb_dtype dt) { return nb_to_dtype(nb_sum_to(g, shape), dt); }

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
