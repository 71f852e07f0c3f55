/* attention.c — scaled dot-product attention, and the attention weights it
 * is differentiated through.
 *
 * Forward: one fused kernel (SDPA, src/kernels/ref/ref_attention.c) computes
 * softmax(q @ kᵀ * scale + mask) @ v row by row with its own softmax, never
 * storing the (L, S) weights. Backward recomputes the weights P with the
 * SDPA_WEIGHTS kernel (an op with its own backward, written with public ops)
 * and then, with dO the output's gradient:
 *     dv = Pᵀ @ dO            dP = dO @ vᵀ
 *     dS = P * (dP - sum(dP * P, last dim))      (the softmax's backward)
 *     dq = dS @ k * scale     dk = dSᵀ @ q * scale     dmask = dS
 * each summed back over broadcast batch dims. Everything is made of recorded
 * ops, so create_graph works and attention is differentiable to any order.
 */
#include "ops/ops.h"

#include <math.h>

#define NEED(i) nb__needs_input_grad(n, i)

/* The checked geometry of one call. */
typedef struct sdpa_geom {
    int nd;                       /* rank of the broadcast operands */
    int64_t q[NB_MAX_DIMS];       /* (..., L, E) */
    int64_t k[NB_MAX_DIMS];       /* (..., S, E) */
    int64_t v[NB_MAX_DIMS];       /* (..., S, Ev) */
    int64_t scores[NB_MAX_DIMS];  /* (..., L, S): the mask's target */
    int64_t out[NB_MAX_DIMS];     /* (..., L, Ev) */
} sdpa_geom;

/* ---- shared by the weights op and attention: gradients of <P, dP> ----
 * Given P (the weights) and dP, fills the gradients of q, k and the mask
 * (those wanted) into gq, gk, gm, with public ops. */
static void weights_grads(nb_tensor *P, nb_tensor *dP, nb_tensor *q, nb_tensor *k, nb_tensor *mask, double scale,
                          nb_tensor **gq, nb_tensor **gk, nb_tensor **gm) {
    /* dS = P * (dP - sum(dP * P, last dim)): the softmax backward, one fused
       kernel (itself differentiable) instead of four element-wise passes */
    nb_tensor *dS = nb__softmax_backward(dP, P, -1);
    if (gq) *gq = nb_sum_to(nb_mul_scalar(nb_matmul(dS, k), scale), nb_dims_get(q));
    if (gk) *gk = nb_sum_to(nb_mul_scalar(nb_matmul(nb_transpose(dS, -1, -2), q), scale), nb_dims_get(k));
    if (gm) *gm = nb_sum_to(dS, nb_dims_get(mask));
}

static int set_geom(const char *who, sdpa_geom *g, int nb, const int64_t *b, int64_t L, int64_t E, int64_t S,
                    int64_t Ev) {
    if (nb + 2 > NB_MAX_DIMS) return nb__err(NB_EINVAL, "%s: more than %d dims", who, NB_MAX_DIMS);
    g->nd = nb + 2;
    for (int i = 0; i < nb; i++) g->q[i] = g->k[i] = g->v[i] = g->scores[i] = g->out[i] = b[i];
    g->q[nb] = L, g->q[nb + 1] = E, g->k[nb] = S, g->k[nb + 1] = E, g->v[nb] = S, g->v[nb + 1] = Ev;
    g->scores[nb] = L, g->scores[nb + 1] = S, g->out[nb] = L, g->out[nb + 1] = Ev;
    return 0;
}

/* Broadcast geometry of q, k, v (v NULL for the weights op) and the mask, or
 * an error naming them. As in PyTorch's math (scores + mask), the mask's
 * last two dims broadcast to (L, S) and its batch dims broadcast with the
 * others (and may add some). */
static int sdpa_shapes(const char *who, const nb_tensor *q, const nb_tensor *k, const nb_tensor *v,
                       const nb_tensor *mask, sdpa_geom *g) {
    if (q->ndim < 2 || k->ndim < 2 || (v && v->ndim < 2))
        return nb__err(NB_ESHAPE, "%s: q, k and v need at least 2 dims (..., L, E), got %s, %s and %s", who,
                       nb__shape_str(q), nb__shape_str(k), v ? nb__shape_str(v) : "-");
    int64_t L = q->shape[q->ndim - 2], E = q->shape[q->ndim - 1];
    int64_t S = k->shape[k->ndim - 2], Ek = k->shape[k->ndim - 1];
    int64_t Sv = v ? v->shape[v->ndim - 2] : S, Ev = v ? v->shape[v->ndim - 1] : 0;
    if (E != Ek || S != Sv)
        return nb__err(NB_ESHAPE,
                       "%s: q %s, k %s and v %s do not fit: need q (..., L, E), k (..., S, E), v (..., S, Ev)", who,
                       nb__shape_str(q), nb__shape_str(k), v ? nb__shape_str(v) : "-");
    int nb, nb2;
    int64_t b[NB_MAX_DIMS], b2[NB_MAX_DIMS];
    if (nb__broadcast(who, q->ndim - 2, q->shape, k->ndim - 2, k->shape, &nb, b) ||
        (v && nb__broadcast(who, nb, b, v->ndim - 2, v->shape, &nb2, b2)))
        return nb__err(NB_ESHAPE, "%s: batch dims of q %s, k %s and v %s cannot be broadcast", who, nb__shape_str(q),
                       nb__shape_str(k), v ? nb__shape_str(v) : "-");
    if (set_geom(who, g, v ? nb2 : nb, v ? b2 : b, L, E, S, Ev)) return NB_EINVAL;
    if (!mask) return 0;
    if (mask->dtype != NB_DTYPE_BOOL && mask->dtype != q->dtype)
        return nb__err(NB_EDTYPE, "%s: attn_mask must be bool or of q's dtype %s, got %s", who,
                       nb_dtype_name(q->dtype), nb_dtype_name(mask->dtype));
    int nm;
    int64_t m[NB_MAX_DIMS];
    bool fits = nb__broadcast(who, mask->ndim, mask->shape, g->nd, g->scores, &nm, m) == 0 && m[nm - 2] == L &&
                m[nm - 1] == S;
    if (!fits)
        return nb__err(NB_ESHAPE, "%s: attn_mask of shape %s cannot be broadcast with the scores' shape %s (q %s, k %s)",
                       who, nb__shape_str(mask), nb__dims_str(g->nd, g->scores), nb__shape_str(q), nb__shape_str(k));
    return set_geom(who, g, nm - 2, m, L, E, S, Ev);
}

/* Runs SDPA (v given) or SDPA_WEIGHTS on operands expanded to the geometry.
 * Returns the result (+1, not scoped, no autograd) or NULL. */
static nb_tensor *sdpa_raw(const char *who, const sdpa_geom *g, nb_tensor *q, nb_tensor *k, nb_tensor *v,
                           nb_tensor *mask, double scale, bool causal) {
    nb_tensor *out = nb__new(who, q->dtype, g->nd, v ? g->out : g->scores);
    nb_tensor *eq = nb__expand_alias(q, g->nd, g->q), *ek = nb__expand_alias(k, g->nd, g->k);
    nb_tensor *ev = v ? nb__expand_alias(v, g->nd, g->v) : NULL;
    nb_tensor *em = mask ? nb__expand_alias(mask, g->nd, g->scores) : NULL;
    int rc = NB_ENOMEM;
    if (out && eq && ek && (!v || ev) && (!mask || em)) {
        nb_kernel_args a = {.op = v ? NB_OP_SDPA : NB_OP_SDPA_WEIGHTS, .out = out, .nin = v ? 4 : 3,
                            .in = {eq, ek, v ? ev : em, v ? em : NULL}, .scalar = {scale, causal}};
        rc = nb__dispatch(&a, who);
    } else {
        nb__err(NB_ENOMEM, "%s: out of memory", who);
    }
    nb_release(eq);
    nb_release(ek);
    nb_release(ev);
    nb_release(em);
    if (rc) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* ---- the attention weights P = softmax(q @ kᵀ * scale + mask) ----
 * Node inputs {q, k, mask}; saved q, k, the mask if given, and P. */
static int weights_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    bool has_mask = n->nin > 2;
    nb_tensor *q = nb__saved_get(n, 0), *k = nb__saved_get(n, 1);
    nb_tensor *mask = has_mask ? nb__saved_get(n, 2) : NULL, *P = nb__saved_get(n, has_mask ? 3 : 2);
    if (!q || !k || (has_mask && !mask) || !P) return nb_last_error_code();
    weights_grads(P, g, q, k, mask, n->p.d[0], NEED(0) ? &gin[0] : NULL, NEED(1) ? &gin[1] : NULL,
                  has_mask && NEED(2) ? &gin[2] : NULL);
    return nb__grads_ok(n, gin);
}

/* The weights as a recorded op (used by attention's backward). */
static nb_tensor *sdpa_weights(const char *who, nb_tensor *q, nb_tensor *k, nb_tensor *mask, double scale,
                               bool causal) {
    sdpa_geom geom;
    if (!q || !k || sdpa_shapes(who, q, k, NULL, mask, &geom)) return NULL;
    nb_tensor *in[3] = {q, k, mask};
    nb__node *node;
    nb_tensor *P = nb__finish(sdpa_raw(who, &geom, q, k, NULL, mask, scale, causal), "SdpaWeightsBackward", who,
                              weights_backward, in, mask ? 3 : 2, NB__SAVE_OUT | (mask ? 7u : 3u), &node);
    if (node) node->p.d[0] = scale;
    return P;
}

/* ---- attention ----
 * Node inputs {q, k, v, mask}; saved q, k, v and the mask if given. */
static int sdpa_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    bool has_mask = n->nin > 3, causal = n->p.i[2] != 0;
    double scale = n->p.d[0];
    nb_tensor *q = nb__saved_get(n, 0), *k = nb__saved_get(n, 1), *v = nb__saved_get(n, 2);
    nb_tensor *mask = has_mask ? nb__saved_get(n, 3) : NULL;
    if (!q || !k || !v || (has_mask && !mask)) return nb_last_error_code();
    nb_tensor *P = sdpa_weights(n->op, q, k, mask, scale, causal);
    if (NEED(2)) gin[2] = nb_sum_to(nb_matmul(nb_transpose(P, -1, -2), g), nb_dims_get(v));
    bool need_m = has_mask && NEED(3);
    if (NEED(0) || NEED(1) || need_m)
        weights_grads(P, nb_matmul(g, nb_transpose(v, -1, -2)), q, k, mask, scale, NEED(0) ? &gin[0] : NULL,
                      NEED(1) ? &gin[1] : NULL, need_m ? &gin[3] : NULL);
    return nb__grads_ok(n, gin);
}

NB_API nb_tensor *nb_scaled_dot_product_attention(nb_tensor *q, nb_tensor *k, nb_tensor *v, nb_tensor *attn_mask,
                                                  const nb_sdpa_opts *opts) {
    const char *who = "nb_scaled_dot_product_attention";
    NB_CHECK_ARG(who, q);
    NB_CHECK_ARG(who, k);
    NB_CHECK_ARG(who, v);
    if (nb__check_float(who, q) || nb__check_same_dtype(who, q, k) || nb__check_same_dtype(who, q, v)) return NULL;
    bool causal = opts && opts->is_causal;
    if (causal && attn_mask) {
        nb__err(NB_EINVAL, "%s: give either attn_mask (%s) or is_causal, not both (as PyTorch)", who,
                nb__shape_str(attn_mask));
        return NULL;
    }
    sdpa_geom geom;
    if (sdpa_shapes(who, q, k, v, attn_mask, &geom)) return NULL;
    double scale = opts && opts->scale != 0 ? opts->scale : 1.0 / sqrt((double)q->shape[q->ndim - 1]);
    nb_tensor *in[4] = {q, k, v, attn_mask};
    nb__node *node;
    nb_tensor *out = nb__finish(sdpa_raw(who, &geom, q, k, v, attn_mask, scale, causal), "SdpaBackward", who,
                                sdpa_backward, in, attn_mask ? 4 : 3, attn_mask ? 15u : 7u, &node);
    if (node) {
        node->p.d[0] = scale;
        node->p.i[2] = causal;
    }
    return out;
}
