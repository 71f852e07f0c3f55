/* matmul.c — matrix product with torch.matmul's rules: 1-D·1-D is a dot
 * product, a 1-D operand gets a size-1 dim added (and removed from the
 * result), and batch dims broadcast.
 *
 * (..., M, K) @ (..., K, N) -> (..., M, N). The kernel sees the batch dims
 * already broadcast (stride 0), so no batch copies are made.
 */
#include "ops/ops.h"

/* ---- da = g @ bᵀ, db = aᵀ @ g, each summed back over broadcast batch dims ---- */
static int matmul_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *a = nb__saved_get(n, 0), *b = nb__saved_get(n, 1);
    if (nb__needs_input_grad(n, 0)) gin[0] = nb_sum_to(nb_matmul(g, nb_transpose(b, -1, -2)), n->shape[0]);
    if (nb__needs_input_grad(n, 1)) gin[1] = nb_sum_to(nb_matmul(nb_transpose(a, -1, -2), g), n->shape[1]);
    return nb__grads_ok(n, gin);
}

/* Both operands have >= 2 dims. */
static nb_tensor *matmul_nd(nb_tensor *a, nb_tensor *b) {
    const char *who = "nb_matmul";
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    int64_t K2 = b->shape[b->ndim - 2], N = b->shape[b->ndim - 1];
    if (K != K2) {
        nb__err(NB_ESHAPE, "%s: shapes %s and %s cannot be multiplied (%lld != %lld)", who, nb__shape_str(a),
                nb__shape_str(b), (long long)K, (long long)K2);
        return NULL;
    }
    int nd;
    int64_t shape[NB_MAX_DIMS];
    if (nb__broadcast(who, a->ndim - 2, a->shape, b->ndim - 2, b->shape, &nd, shape)) {
        nb__err(NB_ESHAPE, "%s: batch dims of %s and %s cannot be broadcast", who, nb__shape_str(a),
                nb__shape_str(b));
        return NULL;
    }
    if (nd + 2 > NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "%s: result would have more than %d dims", who, NB_MAX_DIMS);
        return NULL;
    }
    int64_t sa[NB_MAX_DIMS], sb[NB_MAX_DIMS];
    for (int i = 0; i < nd; i++) sa[i] = sb[i] = shape[i];
    sa[nd] = M, sa[nd + 1] = K, sb[nd] = K, sb[nd + 1] = N;
    shape[nd] = M, shape[nd + 1] = N;
    nb_tensor *out = nb__new(who, a->dtype, nd + 2, shape);
    nb_tensor *ea = out ? nb__expand_alias(a, nd + 2, sa) : NULL;
    nb_tensor *eb = ea ? nb__expand_alias(b, nd + 2, sb) : NULL;
    int rc = NB_ENOMEM;
    if (eb) {
        nb_kernel_args args = {.op = NB_OP_MATMUL, .out = out, .in = {ea, eb}, .nin = 2};
        rc = nb__dispatch(&args, who);
    }
    nb_release(ea);
    nb_release(eb);
    if (rc) {
        nb_release(out);
        return NULL;
    }
    nb__node *node;
    nb_tensor *in[2] = {a, b};
    out = nb__finish(out, nd == 0 ? "MmBackward" : "BmmBackward", who, matmul_backward, in, 2, 3, &node);
    if (node) {
        node->shape[0] = nb_dims_get(a);
        node->shape[1] = nb_dims_get(b);
    }
    return out;
}

NB_API nb_tensor *nb_matmul(nb_tensor *a, nb_tensor *b) {
    const char *who = "nb_matmul";
    NB_CHECK_ARG(who, a);
    NB_CHECK_ARG(who, b);
    if (nb__check_same_dtype(who, a, b) || nb__check_float(who, a)) return NULL;
    if (a->ndim == 0 || b->ndim == 0) {
        nb__err(NB_ESHAPE, "%s: both arguments need at least 1 dim, got shapes %s and %s", who, nb__shape_str(a),
                nb__shape_str(b));
        return NULL;
    }
    if (a->ndim >= 2 && b->ndim >= 2) return matmul_nd(a, b);
    if (a->shape[a->ndim - 1] != b->shape[b->ndim >= 2 ? b->ndim - 2 : 0]) {
        nb__err(NB_ESHAPE, "%s: shapes %s and %s cannot be multiplied (%lld != %lld)", who, nb__shape_str(a),
                nb__shape_str(b), (long long)a->shape[a->ndim - 1], (long long)b->shape[b->ndim >= 2 ? b->ndim - 2 : 0]);
        return NULL;
    }
    /* a 1-D operand becomes a row (a) or a column (b); the extra dim is dropped after */
    nb_scope_begin();
    nb_tensor *a2 = a->ndim == 1 ? nb_unsqueeze(a, 0) : a;
    nb_tensor *b2 = b->ndim == 1 ? nb_unsqueeze(b, 1) : b;
    nb_tensor *r = a2 && b2 ? matmul_nd(a2, b2) : NULL;
    if (r && b->ndim == 1) r = nb_squeeze(r, -1);
    if (r && a->ndim == 1) r = nb_squeeze(r, r->ndim >= 2 ? -2 : 0);
    r = nb_keep(r);
    nb_scope_end();
    return r;
}
