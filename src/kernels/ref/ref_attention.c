/* ref_attention.c — portable kernels of scaled dot-product attention.
 *
 * What each kernel receives (scalar[] in order):
 *   SDPA          out (..., L, Ev) <- in {q (..., L, E), k (..., S, E), v (..., S, Ev),
 *                 mask (..., L, S) or NULL}; scalar {scale, is_causal}:
 *                 out = softmax(q @ kᵀ * scale + mask) @ v
 *   SDPA_WEIGHTS  out (..., L, S) <- in {q, k, mask or NULL}; scalar {scale, is_causal}:
 *                 the attention weights softmax(q @ kᵀ * scale + mask)
 * The batch dims "..." are the same in every operand (broadcast ones have
 * stride 0); any strides. mask is BOOL (false: the score is -inf) or of q's
 * dtype (added to the score). is_causal masks key j > query i. A query whose
 * scores are all -inf gets weights 0, so its output row is 0.
 *
 * Per batch, K and V are gathered into double buffers; per query the scores
 * are computed in double and the softmax subtracts the row's maximum before
 * exponentiating (no overflow). Costs O(L*S*(E+Ev)) per batch, and O(S*(E+Ev))
 * memory.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>

/* Offset of batch index b (C order over dims [0, nb)) in t (kernels.h). */
int64_t nb__batch_offset(const nb_tensor *t, int nb, int64_t b) {
    int64_t off = 0;
    for (int d = nb - 1; d >= 0; d--) {
        off += (b % t->shape[d]) * t->stride[d];
        b /= t->shape[d];
    }
    return off;
}

/* dst[r*cols + c] = the (r, c) element of the matrix at `base` of t, whose
 * last two dims are (rows, cols); BOOL reads as 0/1. */
static void load_mat(double *dst, const nb_tensor *t, int64_t base, int64_t rows, int64_t cols) {
    const char *p = nb_data(t);
    size_t es = nb_dtype_size(t->dtype);
    int64_t s0 = t->stride[t->ndim - 2], s1 = t->stride[t->ndim - 1];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[r * cols + c] = nb__load(p + (base + r * s0 + c * s1) * (int64_t)es, t->dtype);
}

/* The attention weights of one query: p[j] = softmax_j(q·K[j] * scale + m[j]),
 * with m the float mask row (or NULL) and keys j > causal_i masked when
 * causal_i >= 0. All -inf gives p = 0. */
static void weights_row(double *p, const double *qr, const double *K, int64_t S, int64_t E, double scale,
                        const double *m, int64_t causal_i) {
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < S; j++) {
        double s = 0;
        for (int64_t e = 0; e < E; e++) s += qr[e] * K[j * E + e];
        s *= scale;
        if (m) s += m[j];
        if (causal_i >= 0 && j > causal_i) s = -INFINITY;
        p[j] = s;
        if (s > mx) mx = s;
    }
    if (mx == -INFINITY) {   /* fully masked: zeros, not NaN */
        for (int64_t j = 0; j < S; j++) p[j] = 0;
        return;
    }
    for (int64_t j = 0; j < S; j++) {
        p[j] = exp(p[j] - mx);
        sum += p[j];
    }
    for (int64_t j = 0; j < S; j++) p[j] /= sum;
}

static int attention(const nb_kernel_args *a, bool weights_only) {
    const nb_tensor *q = a->in[0], *k = a->in[1], *v = weights_only ? NULL : a->in[2];
    const nb_tensor *mask = a->in[weights_only ? 2 : 3];
    nb_tensor *out = a->out;
    int nd = q->ndim, nbd = nd - 2;
    int64_t L = q->shape[nd - 2], E = q->shape[nd - 1], S = k->shape[nd - 2], Ev = v ? v->shape[nd - 1] : 0;
    int64_t W = weights_only ? S : Ev, B = 1;   /* out row width, batches */
    for (int d = 0; d < nbd; d++) B *= q->shape[d];
    double scale = a->scalar[0];
    bool causal = a->scalar[1] != 0;
#define NB__ALLOC(n) malloc(sizeof(double) * (size_t)((n) > 0 ? (n) : 1))
    double *qr = NB__ALLOC(E), *K = NB__ALLOC(S * E), *V = NB__ALLOC(S * Ev), *p = NB__ALLOC(S);
    double *o = NB__ALLOC(W), *m = NB__ALLOC(S);
#undef NB__ALLOC
    int rc = qr && K && V && p && o && m ? 0 : nb__err(NB_ENOMEM, "attention kernel: out of memory");
    char *ob = nb_data(out);
    size_t oes = nb_dtype_size(out->dtype);
    for (int64_t b = 0; !rc && b < B; b++) {
        int64_t qb = nb__batch_offset(q, nbd, b), ob0 = nb__batch_offset(out, nbd, b);
        load_mat(K, k, nb__batch_offset(k, nbd, b), S, E);
        if (v) load_mat(V, v, nb__batch_offset(v, nbd, b), S, Ev);
        for (int64_t i = 0; i < L; i++) {
            load_mat(qr, q, qb + i * q->stride[nd - 2], 1, E);
            if (mask) {
                load_mat(m, mask, nb__batch_offset(mask, nbd, b) + i * mask->stride[nd - 2], 1, S);
                if (mask->dtype == NB_DTYPE_BOOL)
                    for (int64_t j = 0; j < S; j++) m[j] = m[j] != 0 ? 0.0 : -INFINITY;
            }
            weights_row(p, qr, K, S, E, scale, mask ? m : NULL, causal ? i : -1);
            if (weights_only) {
                for (int64_t j = 0; j < S; j++) o[j] = p[j];
            } else {
                for (int64_t e = 0; e < Ev; e++) o[e] = 0;
                for (int64_t j = 0; j < S; j++)
                    for (int64_t e = 0; e < Ev; e++) o[e] += p[j] * V[j * Ev + e];
            }
            int64_t row = ob0 + i * out->stride[nd - 2];
            for (int64_t c = 0; c < W; c++)
                nb__store(ob + (row + c * out->stride[nd - 1]) * (int64_t)oes, out->dtype, o[c]);
        }
    }
    free(qr);
    free(K);
    free(V);
    free(p);
    free(o);
    free(m);
    return rc;
}

static int ref_sdpa(const nb_kernel_args *a) { return attention(a, false); }
static int ref_sdpa_weights(const nb_kernel_args *a) { return attention(a, true); }

void nb__ref_attention_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SDPA, NB_DTYPE_F32, NB_ISA_REF, "ref_sdpa", 0, ref_sdpa},
        {NB_OP_SDPA, NB_DTYPE_F64, NB_ISA_REF, "ref_sdpa", 0, ref_sdpa},
        {NB_OP_SDPA_WEIGHTS, NB_DTYPE_F32, NB_ISA_REF, "ref_sdpa_weights", 0, ref_sdpa_weights},
        {NB_OP_SDPA_WEIGHTS, NB_DTYPE_F64, NB_ISA_REF, "ref_sdpa_weights", 0, ref_sdpa_weights},
    };
    NB__REGISTER_ALL(ks);
}
