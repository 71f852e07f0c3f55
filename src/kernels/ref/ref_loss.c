/* ref_loss.c — portable kernels for linear, the class losses on
 * log-probabilities (NLL, with optional label smoothing), the element-wise
 * losses (MSE, L1, smooth L1, binary cross entropy with logits) and dropout.
 *
 * Every operand may be strided or broadcast (stride 0); element-wise kernels
 * walk up to five operands of one shape in C order with `walk`. Values are
 * computed in double and stored in the operand's dtype (F32 or F64). These
 * are the oracle for later SIMD variants: clarity over speed.
 */
#include "kernels/kernels.h"

#include <math.h>

#define ld nb__ldf   /* kernels.h */
#define st nb__stf

/* ---- an element walker over up to 5 operands of one shape (C order) ---- */
#define WALK_MAX 5
typedef struct walk {
    int nd;                            /* dims of the common shape */
    const int64_t *shape;              /* the common shape */
    const nb_tensor *t[WALK_MAX];      /* operands (NULL: absent) */
    int64_t idx[NB_MAX_DIMS];          /* current multi-index */
    int64_t off[WALK_MAX];             /* current element offset per operand */
} walk;

static void walk_init(walk *w, const nb_tensor *const *t, int n) {
    w->nd = t[0]->ndim;
    w->shape = t[0]->shape;
    for (int o = 0; o < WALK_MAX; o++) {
        w->t[o] = o < n ? t[o] : NULL;
        w->off[o] = 0;
    }
    for (int d = 0; d < NB_MAX_DIMS; d++) w->idx[d] = 0;
}

static void walk_next(walk *w) {
    for (int d = w->nd - 1; d >= 0; d--) {
        bool carry = ++w->idx[d] >= w->shape[d];
        if (carry) w->idx[d] = 0;
        for (int o = 0; o < WALK_MAX; o++)
            if (w->t[o]) w->off[o] += carry ? -w->t[o]->stride[d] * (w->shape[d] - 1) : w->t[o]->stride[d];
        if (!carry) return;
    }
}

/* ---- linear: out (*, N) = in[0] x (*, K) @ in[1] wᵀ (N, K) + in[2] b (N) or NULL ---- */
static int ref_linear(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *w = a->in[1], *b = a->nin > 2 ? a->in[2] : NULL;
    nb_tensor *y = a->out;
    int xl = x->ndim - 1, yl = y->ndim - 1;
    int64_t K = x->shape[xl], N = y->shape[yl], rows = N ? nb_numel(y) / N : 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t ox = nb__row_offset(x, xl, r), oy = nb__row_offset(y, yl, r);
        for (int64_t n = 0; n < N; n++) {
            double s = b ? ld(b, n * b->stride[0]) : 0.0;
            for (int64_t k = 0; k < K; k++)
                s += ld(x, ox + k * x->stride[xl]) * ld(w, n * w->stride[0] + k * w->stride[1]);
            st(y, oy + n * y->stride[yl], s);
        }
    }
    return 0;
}

/* ---- NLL with label smoothing on log-probabilities ----
 * in[0] = x (N, C, d...) log-probabilities, in[1] = t (N, d...) i64, in[2] =
 * w (C) or NULL; scalar[0] = ignore_index, scalar[1] = eps (0 for nll_loss):
 *   out_i = (1-eps) * -w_t x_t + eps/C * sum_c -w_c x_c, 0 where t is ignored. */

static int bad_class(int64_t t, int64_t C) {
    return nb__err(NB_ERANGE, "nb_nll_loss: target %lld is out of bounds for %lld classes", (long long)t,
                   (long long)C);
}

static int ref_nll_loss(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *t = a->in[1], *w = a->in[2];
    nb_tensor *out = a->out;   /* (N, d...) */
    int64_t ign = (int64_t)a->scalar[0], C = x->shape[1], sx = x->stride[1];
    double eps = a->scalar[1];
    const int64_t *tv = nb_data(t);
    for (int64_t r = 0; r < nb_numel(t); r++) {
        int64_t tc = tv[nb__row_offset(t, -1, r)], ox = nb__row_offset(x, 1, r);
        double loss = 0;
        if (tc != ign) {
            if (tc < 0 || tc >= C) return bad_class(tc, C);
            loss = -(1 - eps) * nb__class_weight(w, tc) * ld(x, ox + tc * sx);
            if (eps > 0) {
                double sm = 0;
                for (int64_t c = 0; c < C; c++) sm -= nb__class_weight(w, c) * ld(x, ox + c * sx);
                loss += eps / (double)C * sm;
            }
        }
        st(out, nb__row_offset(out, -1, r), loss);
    }
    return 0;
}

/* The adjoint: in[0] = g (N, d...) (may be broadcast), in[1] = t, in[2] = w;
 * out (N, C, d...): dx_c = g * (-(1-eps) w_t [c == t] - eps/C w_c), 0 rows
 * where t is ignored. */
static int ref_nll_loss_backward(const nb_kernel_args *a) {
    const nb_tensor *g = a->in[0], *t = a->in[1], *w = a->in[2];
    nb_tensor *dx = a->out;
    int64_t ign = (int64_t)a->scalar[0], C = dx->shape[1], sd = dx->stride[1];
    double eps = a->scalar[1];
    const int64_t *tv = nb_data(t);
    for (int64_t r = 0; r < nb_numel(t); r++) {
        int64_t tc = tv[nb__row_offset(t, -1, r)], od = nb__row_offset(dx, 1, r);
        bool keep = tc != ign;
        if (keep && (tc < 0 || tc >= C)) return bad_class(tc, C);
        double gv = keep ? ld(g, nb__row_offset(g, -1, r)) : 0.0;
        for (int64_t c = 0; c < C; c++) {
            double d = keep ? -(1 - eps) * (c == tc ? nb__class_weight(w, tc) : 0.0) - eps / (double)C * nb__class_weight(w, c) : 0.0;
            st(dx, od + c * sd, keep ? gv * d : 0.0);
        }
    }
    return 0;
}

/* ---- element-wise regression losses of d = x - y ----
 * forward: in[0] = x, in[1] = y (broadcast to out's shape); scalar[0] = beta.
 *   mse: d²   l1: |d|   smooth_l1: d²/(2 beta) where |d| < beta, else |d| - beta/2
 * backward: in[2] = g as well; out = g * f⁽ᵏ⁾(d), k = scalar[1] (1 or 2),
 * the k-th derivative of the l1 / smooth_l1 loss (0 from k = 3 on). */
typedef enum reg_kind { REG_MSE, REG_L1, REG_SMOOTH_L1 } reg_kind;

static double reg_loss(reg_kind k, double d, double beta) {
    double ad = fabs(d);
    switch (k) {
    case REG_MSE: return d * d;
    case REG_L1: return ad;
    default: return ad < beta ? 0.5 * d * d / beta : ad - 0.5 * beta;
    }
}

static double reg_deriv(reg_kind k, double d, double beta, int order) {
    double sg = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;   /* sign(0) = 0, as PyTorch */
    bool inner = k == REG_SMOOTH_L1 && fabs(d) < beta;
    if (order == 1) return inner ? d / beta : sg;
    if (order == 2) return inner ? 1.0 / beta : 0.0;
    return 0.0;
}

static int reg_forward(const nb_kernel_args *a, reg_kind k) {
    const nb_tensor *ops[3] = {a->out, a->in[0], a->in[1]};
    walk w;
    walk_init(&w, ops, 3);
    for (int64_t i = 0; i < nb_numel(a->out); i++, walk_next(&w))
        st(a->out, w.off[0], reg_loss(k, ld(ops[1], w.off[1]) - ld(ops[2], w.off[2]), a->scalar[0]));
    return 0;
}
static int ref_mse_loss(const nb_kernel_args *a) { return reg_forward(a, REG_MSE); }
static int ref_l1_loss(const nb_kernel_args *a) { return reg_forward(a, REG_L1); }
static int ref_smooth_l1_loss(const nb_kernel_args *a) { return reg_forward(a, REG_SMOOTH_L1); }

static int reg_backward(const nb_kernel_args *a, reg_kind k) {
    const nb_tensor *ops[4] = {a->out, a->in[0], a->in[1], a->in[2]};
    int order = (int)a->scalar[1];
    walk w;
    walk_init(&w, ops, 4);
    for (int64_t i = 0; i < nb_numel(a->out); i++, walk_next(&w)) {
        double d = ld(ops[1], w.off[1]) - ld(ops[2], w.off[2]);
        st(a->out, w.off[0], ld(ops[3], w.off[3]) * reg_deriv(k, d, a->scalar[0], order));
    }
    return 0;
}
static int ref_l1_loss_backward(const nb_kernel_args *a) { return reg_backward(a, REG_L1); }
static int ref_smooth_l1_loss_backward(const nb_kernel_args *a) { return reg_backward(a, REG_SMOOTH_L1); }

/* ---- binary cross entropy with logits ----
 * in[0] = x logits, in[1] = y targets, in[2] = weight or NULL, in[3] =
 * pos_weight p or NULL, all of out's shape (broadcast). With
 * softplus(z) = max(z, 0) + log1p(exp(-|z|)) (never overflows):
 *   loss = w * ((1 - y) x + (1 + (p-1) y) softplus(-x))
 * which is -w (p y log σ(x) + (1-y) log(1 - σ(x))). */
static inline double softplus(double z) { return fmax(z, 0.0) + log1p(exp(-fabs(z))); }
static inline double sigmoid(double z) {
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

static int ref_bce_with_logits(const nb_kernel_args *a) {
    const nb_tensor *ops[5] = {a->out, a->in[0], a->in[1], a->in[2], a->in[3]};
    walk w;
    walk_init(&w, ops, 5);
    for (int64_t i = 0; i < nb_numel(a->out); i++, walk_next(&w)) {
        double x = ld(ops[1], w.off[1]), y = ld(ops[2], w.off[2]);
        double wv = ops[3] ? ld(ops[3], w.off[3]) : 1.0, p = ops[4] ? ld(ops[4], w.off[4]) : 1.0;
        st(a->out, w.off[0], wv * ((1 - y) * x + (1 + (p - 1) * y) * softplus(-x)));
    }
    return 0;
}

/* in[0] = x, in[1] = y, in[2] = gw (the loss's gradient times the weight),
 * in[3] = p or NULL; scalar[0] = 0 for d/dx, 1 for d/dy:
 *   d/dx = gw * (σ(x) (1 + (p-1) y) - p y)
 *   d/dy = gw * (p softplus(-x) - softplus(x)) */
static int ref_bce_with_logits_backward(const nb_kernel_args *a) {
    const nb_tensor *ops[5] = {a->out, a->in[0], a->in[1], a->in[2], a->in[3]};
    bool wrt_y = a->scalar[0] != 0;
    walk w;
    walk_init(&w, ops, 5);
    for (int64_t i = 0; i < nb_numel(a->out); i++, walk_next(&w)) {
        double x = ld(ops[1], w.off[1]), y = ld(ops[2], w.off[2]), gw = ld(ops[3], w.off[3]);
        double p = ops[4] ? ld(ops[4], w.off[4]) : 1.0;
        double d = wrt_y ? p * softplus(-x) - softplus(x) : sigmoid(x) * (1 + (p - 1) * y) - p * y;
        st(a->out, w.off[0], gw * d);
    }
    return 0;
}

/* ---- dropout: in[0] = x, in[1] = the seed (0-dim i64), scalar[0] = p ----
 * Element i (C order of the logical shape) is kept when the i%4-th word of
 * Philox(seed, i/4) is >= p * 2^32; kept values are scaled by 1/(1-p). The
 * mask depends only on (seed, i), so it is the same on any thread count, and
 * the backward is this same kernel applied to the gradient. p = 1 drops all. */
static int ref_dropout(const nb_kernel_args *a) {
    const nb_tensor *ops[2] = {a->out, a->in[0]};
    uint64_t seed = (uint64_t) * (const int64_t *)nb_data(a->in[1]);
    double p = a->scalar[0], cut = p * 4294967296.0, scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
    uint32_t r[4] = {0, 0, 0, 0};
    walk w;
    walk_init(&w, ops, 2);
    for (int64_t i = 0; i < nb_numel(a->out); i++, walk_next(&w)) {
        if ((i & 3) == 0) nb__philox(seed, (uint64_t)i >> 2, r);
        bool keep = p < 1 && (double)r[i & 3] >= cut;
        st(a->out, w.off[0], keep ? ld(ops[1], w.off[1]) * scale : 0.0);
    }
    return 0;
}

void nb__ref_loss_register(void) {
#define BOTH(OP, NAME, FN) \
    {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_REF, NAME, 0, FN}, {NB_OP_##OP, NB_DTYPE_F64, NB_ISA_REF, NAME, 0, FN}
    static const nb_kernel_desc ks[] = {
        BOTH(LINEAR, "ref_linear", ref_linear),
        BOTH(NLL_LOSS, "ref_nll_loss", ref_nll_loss),
        BOTH(NLL_LOSS_BACKWARD, "ref_nll_loss_bwd", ref_nll_loss_backward),
        BOTH(MSE_LOSS, "ref_mse_loss", ref_mse_loss),
        BOTH(L1_LOSS, "ref_l1_loss", ref_l1_loss),
        BOTH(L1_LOSS_BACKWARD, "ref_l1_loss_bwd", ref_l1_loss_backward),
        BOTH(SMOOTH_L1_LOSS, "ref_smooth_l1_loss", ref_smooth_l1_loss),
        BOTH(SMOOTH_L1_LOSS_BACKWARD, "ref_smooth_l1_loss_bwd", ref_smooth_l1_loss_backward),
        BOTH(BCE_WITH_LOGITS, "ref_bce_with_logits", ref_bce_with_logits),
        BOTH(BCE_WITH_LOGITS_BACKWARD, "ref_bce_with_logits_bwd", ref_bce_with_logits_backward),
        BOTH(DROPOUT, "ref_dropout", ref_dropout),
    };
#undef BOTH
    NB__REGISTER_ALL(ks);
    nb__ref_softmax_register();
}
