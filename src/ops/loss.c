/* loss.c — the losses: cross_entropy (fused log_softmax + NLL with label
 * smoothing) and nll_loss, with PyTorch's options (class weights,
 * ignore_index, label_smoothing, reduction); then the element-wise losses
 * mse, l1, smooth_l1 and binary_cross_entropy_with_logits.
 *
 * Class losses.
 *
 * Layout: logits / log-probabilities x (N, C, d...) with the class dim 1,
 * I64 targets t (N, d...); an unbatched x (C) with a 0-dim target is run as
 * (1, C). Each op computes the unreduced per-sample loss L (t's shape) with
 * one kernel and records its node on L; the reduction is then done with the
 * public sum and mul_scalar, so the node's backward sees a gradient of t's
 * shape. MEAN divides by the sum of the weights of the non-ignored targets
 * (PyTorch's rule, NaN when all are ignored).
 *
 * Backward: the per-sample loss on log-probabilities (smoothed NLL) is linear
 * in them, and its adjoint is the NLL_LOSS_BACKWARD op; the two ops are each
 * other's backward, so nll_loss differentiates any number of times. Cross
 * entropy backward is one fused kernel, or, when the backward itself is being
 * recorded (create_graph), log_softmax_backward(nll_backward(g), log_softmax(x))
 * built from differentiable ops. Targets and weights get no gradient (as
 * PyTorch); probability targets (float targets of the logits' shape) are
 * composed from public ops and get one.
 */
#include "ops/ops.h"

#include <math.h>

#define DEFAULT_IGNORE_INDEX (-100)

/* The per-sample loss reduced as asked (public ops, recorded). */
static nb_tensor *reduce_loss(nb_tensor *L, nb_reduction red, double denom) {
    if (red == NB_REDUCTION_NONE) return L;
    nb_tensor *s = nb_sum_all(L);
    return red == NB_REDUCTION_SUM ? s : nb_mul_scalar(s, 1.0 / denom);
}

static int check_reduction(const char *who, nb_reduction red) {
    if ((unsigned)red < NB_REDUCTION_COUNT) return 0;
    return nb__err(NB_EINVAL, "%s: reduction %d is not one of NB_REDUCTION_MEAN, _SUM, _NONE", who, (int)red);
}

/* ---- argument checks shared by cross_entropy and nll_loss ----
 * x (N, C, d...) float, t (N, d...) I64 with every value in [0, C) or equal
 * to ign, w (C) of x's dtype or NULL. On success *denom is the sum of w_t
 * over the targets that are not ignored. */
static int check_class_args(const char *who, const nb_tensor *x, const nb_tensor *t, const nb_tensor *w, int64_t ign,
                            double *denom) {
    if (t->dtype != NB_DTYPE_I64)
        return nb__err(NB_EDTYPE, "%s: targets must be i64 class indices, got %s of shape %s (logits %s)", who,
                       nb_dtype_name(t->dtype), nb__shape_str(t), nb__shape_str(x));
    bool fit = t->ndim == x->ndim - 1 && x->ndim >= 2 && t->shape[0] == x->shape[0];
    for (int d = 1; fit && d < t->ndim; d++) fit = t->shape[d] == x->shape[d + 1];
    if (!fit) {
        int64_t want[NB_MAX_DIMS];
        int nw = 0;
        for (int d = 0; d < x->ndim; d++)
            if (d != 1) want[nw++] = x->shape[d];
        return nb__err(NB_ESHAPE, "%s: targets of shape %s do not fit input %s: expected targets %s", who,
                       nb__shape_str(t), nb__shape_str(x), nb__dims_str(nw, want));
    }
    int64_t C = x->shape[1];
    if (w) {
        if (nb__check_same_dtype(who, x, w)) return NB_EDTYPE;
        if (w->ndim != 1 || w->shape[0] != C)
            return nb__err(NB_ESHAPE, "%s: weight of shape %s does not fit input %s: expected (%lld), one per class",
                           who, nb__shape_str(w), nb__shape_str(x), (long long)C);
    }
    /* every target is checked here, so kernels never see one out of range */
    const int64_t *tv = nb_data(t);
    const char *wb = w ? nb_data(w) : NULL;
    size_t wes = w ? nb_dtype_size(w->dtype) : 0;
    double sum = 0;
    for (int64_t r = 0; r < nb_numel(t); r++) {
        int64_t c = tv[nb__row_offset(t, -1, r)];
        if (c == ign) continue;
        if (c < 0 || c >= C)
            return nb__err(NB_ERANGE, "%s: target %lld is out of bounds for %lld classes (input %s, ignore_index %lld)",
                           who, (long long)c, (long long)C, nb__shape_str(x), (long long)ign);
        sum += w ? nb__load(wb + (size_t)(c * w->stride[0]) * wes, w->dtype) : 1.0;
    }
    *denom = sum;
    return 0;
}

/* ---- the smoothed NLL pair on log-probabilities ----
 * nll_none(x, t) = L (t's shape): L_i = (1-eps) -w_t x_t + eps/C sum_c -w_c x_c
 * nll_backward(g, t) (x's shape): its adjoint, dx = g (-(1-eps) w_t [c=t] - eps/C w_c)
 * Each records a node whose backward is the other. */
typedef struct nll_params {
    nb_tensor *t;   /* targets (N, d...) */
    nb_tensor *w;   /* class weights or NULL */
    int64_t ign;    /* ignore_index */
    double eps;     /* label smoothing */
} nll_params;

static void nll_params_store(nb__node *n, const nll_params *p) {
    n->p.i[0] = p->ign;
    n->p.d[1] = p->eps;
    n->p.i[2] = p->w != NULL;
}
/* Saved tensors start at `at`: t, then w when there is one. */
static nll_params nll_params_load(nb__node *n, int at) {
    nll_params p = {nb__saved_get(n, at), n->p.i[2] ? nb__saved_get(n, at + 1) : NULL, n->p.i[0], n->p.d[1]};
    return p;
}
static int nll_params_save(nb__node *n, const nll_params *p) {
    int rc = nb__save(n, p->t);
    if (!rc && p->w) rc = nb__save(n, p->w);
    return rc;
}

static nb_tensor *nll_none(nb_tensor *x, const nll_params *p);
static nb_tensor *nll_backward_op(nb_tensor *g, const nll_params *p, nb_dims xshape);

static int nll_backward_backward(nb__node *n, nb_tensor *h, nb_tensor **gin) {
    nll_params p = nll_params_load(n, 0);
    if (!p.t || (n->p.i[2] && !p.w)) return nb_last_error_code();
    gin[0] = nll_none(h, &p);
    return nb__grads_ok(n, gin);
}

static nb_tensor *nll_backward_op(nb_tensor *g, const nll_params *p, nb_dims xshape) {
    const char *who = "nb_nll_loss_backward";
    NB_CHECK_ARG(who, g);
    nb_tensor *dx = nb__new(who, g->dtype, xshape.ndim, xshape.d);
    if (!dx) return NULL;
    nb_kernel_args args = {.op = NB_OP_NLL_LOSS_BACKWARD, .out = dx, .in = {g, p->t, p->w}, .nin = 3,
                           .scalar = {(double)p->ign, p->eps}};
    if (nb__dispatch(&args, who)) {
        nb_release(dx);
        return NULL;
    }
    nb__node *node;
    dx = nb__finish(dx, "NllLossBackwardBackward", who, nll_backward_backward, &g, 1, 0, &node);
    if (node) {
        nll_params_store(node, p);
        if (nll_params_save(node, p)) return NULL;   /* dx is in the scope already */
    }
    return dx;
}

static int nll_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nll_params p = nll_params_load(n, 0);
    if (!p.t || (n->p.i[2] && !p.w)) return nb_last_error_code();
    gin[0] = nll_backward_op(g, &p, n->shape[0]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *nll_none(nb_tensor *x, const nll_params *p) {
    const char *who = "nb_nll_loss";
    NB_CHECK_ARG(who, x);
    nb_tensor *L = nb__new(who, x->dtype, p->t->ndim, p->t->shape);
    if (!L) return NULL;
    nb_kernel_args args = {.op = NB_OP_NLL_LOSS, .out = L, .in = {x, p->t, p->w}, .nin = 3,
                           .scalar = {(double)p->ign, p->eps}};
    if (nb__dispatch(&args, who)) {
        nb_release(L);
        return NULL;
    }
    nb__node *node;
    L = nb__finish(L, "NllLossBackward", who, nll_backward, &x, 1, 0, &node);
    if (node) {
        nll_params_store(node, p);
        node->shape[0] = nb_dims_get(x);
        if (nll_params_save(node, p)) return NULL;
    }
    return L;
}

/* ---- cross entropy (class indices): fused kernels ---- */
static int cross_entropy_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    const char *who = "nb_cross_entropy";
    nb_tensor *x = nb__saved_get(n, 0);
    nll_params p = nll_params_load(n, 1);
    if (!x || !p.t || (n->p.i[2] && !p.w)) return nb_last_error_code();
    if (nb_is_grad_enabled()) {   /* create_graph: differentiable form */
        nb_tensor *G = nll_backward_op(g, &p, nb_dims_get(x));
        gin[0] = nb__log_softmax_backward(G, nb_log_softmax(x, 1), 1);
        return nb__grads_ok(n, gin);
    }
    nb_tensor *dx = nb__new(who, x->dtype, x->ndim, x->shape);
    if (!dx) return nb_last_error_code();
    nb_kernel_args args = {.op = NB_OP_CROSS_ENTROPY_BACKWARD, .out = dx, .in = {x, p.t, p.w, g}, .nin = 4,
                           .scalar = {(double)p.ign, p.eps}};
    int rc = nb__dispatch(&args, who);
    if (rc) {
        nb_release(dx);
        return rc;
    }
    gin[0] = nb__scoped(dx);
    return 0;
}

static nb_tensor *cross_entropy_none(nb_tensor *x, const nll_params *p) {
    const char *who = "nb_cross_entropy";
    nb_tensor *L = nb__new(who, x->dtype, p->t->ndim, p->t->shape);
    if (!L) return NULL;
    nb_kernel_args args = {.op = NB_OP_CROSS_ENTROPY, .out = L, .in = {x, p->t, p->w}, .nin = 3,
                           .scalar = {(double)p->ign, p->eps}};
    if (nb__dispatch(&args, who)) {
        nb_release(L);
        return NULL;
    }
    nb__node *node;
    L = nb__finish(L, "CrossEntropyBackward", who, cross_entropy_backward, &x, 1, 1, &node);
    if (node) {
        nll_params_store(node, p);
        if (nll_params_save(node, p)) return NULL;
    }
    return L;
}

/* ---- cross entropy with class probabilities, from public ops:
 * L = -sum_c w_c t'_c log_softmax(x)_c with t' = (1-eps) t + eps/C ---- */
static nb_tensor *cross_entropy_probs(const char *who, nb_tensor *x, nb_tensor *t, const nb_cross_entropy_opts *o) {
    if (nb__check_same_dtype(who, x, t)) return NULL;
    if (x->ndim == 0 || !nb__same_shape(x, t)) {
        nb__err(NB_ESHAPE, "%s: class-probability targets of shape %s must have the input's shape %s", who,
                nb__shape_str(t), nb__shape_str(x));
        return NULL;
    }
    if (o->set_ignore_index && o->ignore_index >= 0) {
        nb__err(NB_EINVAL, "%s: ignore_index (%lld) is not supported for class-probability targets", who,
                (long long)o->ignore_index);
        return NULL;
    }
    int cdim = x->ndim == 1 ? 0 : 1;
    int64_t C = x->shape[cdim];
    nb_tensor *w = o->weight;
    if (w && (nb__check_same_dtype(who, x, w) || w->ndim != 1 || w->shape[0] != C)) {
        if (nb_last_error_code() != NB_EDTYPE)
            nb__err(NB_ESHAPE, "%s: weight of shape %s does not fit input %s: expected (%lld), one per class", who,
                    nb__shape_str(w), nb__shape_str(x), (long long)C);
        return NULL;
    }
    nb_tensor *tt = o->label_smoothing > 0
                        ? nb_add_scalar(nb_mul_scalar(t, 1 - o->label_smoothing), o->label_smoothing / (double)C)
                        : t;
    nb_tensor *prod = nb_mul(nb_log_softmax(x, cdim), tt);
    if (w) {
        nb_dims ws = {x->ndim - cdim, {0}};   /* (C, 1, ...): lines up with the class dim */
        ws.d[0] = C;
        for (int d = 1; d < ws.ndim; d++) ws.d[d] = 1;
        prod = nb_mul(prod, nb_reshape(w, ws));
    }
    nb_tensor *L = nb_neg(nb_sum(prod, &cdim, 1, false));
    if (o->reduction == NB_REDUCTION_MEAN) return nb_mean_all(L);
    return reduce_loss(L, o->reduction, 1.0);
}

/* The public entries: checks, the unbatched case, the reduction. */
static nb_tensor *class_loss(const char *who, nb_tensor *x, nb_tensor *t, nb_tensor *w, int64_t ign, double eps,
                             nb_reduction red, bool fused_ce) {
    if (x->ndim == 0) {
        nb__err(NB_ESHAPE, "%s: input must be (C), (N, C) or (N, C, d...), got a 0-dim tensor", who);
        return NULL;
    }
    if (x->ndim == 1) {   /* unbatched: (C) with a 0-dim target runs as (1, C) */
        if (t->ndim != 0) {
            nb__err(NB_ESHAPE, "%s: targets of shape %s do not fit unbatched input %s: expected a 0-dim target", who,
                    nb__shape_str(t), nb__shape_str(x));
            return NULL;
        }
        nb_tensor *r = class_loss(who, nb_unsqueeze(x, 0), nb_reshape(t, NB_SHAPE(1)), w, ign, eps, red, fused_ce);
        return red == NB_REDUCTION_NONE ? nb_reshape(r, NB_SHAPE0) : r;
    }
    double denom = 0;
    if (check_class_args(who, x, t, w, ign, &denom)) return NULL;
    nll_params p = {t, w, ign, eps};
    nb_tensor *L = fused_ce ? cross_entropy_none(x, &p) : nll_none(x, &p);
    return reduce_loss(L, red, denom);
}

NB_API nb_tensor *nb_cross_entropy_ex(nb_tensor *logits, nb_tensor *targets, const nb_cross_entropy_opts *opts) {
    const char *who = "nb_cross_entropy";
    NB_CHECK_ARG(who, logits);
    NB_CHECK_ARG(who, targets);
    nb_cross_entropy_opts o = {0};
    if (opts) o = *opts;
    if (nb__check_float(who, logits) || check_reduction(who, o.reduction)) return NULL;
    if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1)) {
        nb__err(NB_EINVAL, "%s: label_smoothing must be in [0, 1], got %g", who, o.label_smoothing);
        return NULL;
    }
    nb_scope_begin();   /* intermediates (views, the unreduced loss) die here */
    nb_tensor *r;
    if (targets->dtype == NB_DTYPE_F32 || targets->dtype == NB_DTYPE_F64) {
        r = cross_entropy_probs(who, logits, targets, &o);
    } else {
        int64_t ign = o.set_ignore_index ? o.ignore_index : DEFAULT_IGNORE_INDEX;
        r = class_loss(who, logits, targets, o.weight, ign, o.label_smoothing, o.reduction, true);
    }
    r = nb_keep(r);
    nb_scope_end();
    return r;
}

NB_API nb_tensor *nb_cross_entropy(nb_tensor *logits, nb_tensor *targets) {
    return nb_cross_entropy_ex(logits, targets, NULL);
}

NB_API nb_tensor *nb_nll_loss_ex(nb_tensor *input, nb_tensor *targets, const nb_nll_loss_opts *opts) {
    const char *who = "nb_nll_loss";
    NB_CHECK_ARG(who, input);
    NB_CHECK_ARG(who, targets);
    nb_nll_loss_opts o = {0};
    if (opts) o = *opts;
    if (nb__check_float(who, input) || check_reduction(who, o.reduction)) return NULL;
    int64_t ign = o.set_ignore_index ? o.ignore_index : DEFAULT_IGNORE_INDEX;
    nb_scope_begin();
    nb_tensor *r = nb_keep(class_loss(who, input, targets, o.weight, ign, 0.0, o.reduction, false));
    nb_scope_end();
    return r;
}

NB_API nb_tensor *nb_nll_loss(nb_tensor *input, nb_tensor *targets) { return nb_nll_loss_ex(input, targets, NULL); }

/* ==== element-wise losses ====
 * Each kernel writes the unreduced loss of input and target broadcast to one
 * shape; its node is recorded on that, and the reduction is the public mean
 * or sum. mse's backward is public ops (2 (x - y) g); l1 and smooth_l1 use
 * the derivative op below; bce its own backward op. */

static nb_tensor *reduce_ew(nb_tensor *L, nb_reduction red) {
    return red == NB_REDUCTION_MEAN ? nb_mean_all(L) : reduce_loss(L, red, 1.0);
}

/* Kernel call on operands broadcast to (nd, shape): out (+1). ins may hold NULLs. */
static nb_tensor *ew_raw(const char *who, nb_op op, int nd, const int64_t *shape, nb_tensor *const *ins, int nin,
                         double s0, double s1) {
    nb_tensor *out = nb__new(who, ins[0]->dtype, nd, shape);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .nin = nin, .scalar = {s0, s1}};
    int rc = 0;
    for (int i = 0; i < nin; i++) {
        if (!ins[i]) continue;
        args.in[i] = nb__same_shape(ins[i], out) ? nb_retain(ins[i]) : nb__expand_alias(ins[i], nd, shape);
        if (!args.in[i]) rc = NB_ENOMEM;
    }
    if (!rc) rc = nb__dispatch(&args, who);
    for (int i = 0; i < nin; i++) nb_release((nb_tensor *)args.in[i]);
    if (rc) {
        nb_release(out);
        return NULL;
    }
    return out;
}

/* Float operands of one dtype that broadcast; the shape in (nd, shape). */
static int ew_check(const char *who, nb_tensor *x, nb_tensor *y, nb_reduction red, int *nd, int64_t *shape) {
    if (nb__check_float(who, x) || nb__check_same_dtype(who, x, y) || check_reduction(who, red)) return -1;
    return nb__broadcast(who, x->ndim, x->shape, y->ndim, y->shape, nd, shape);
}

/* ---- the k-th derivative of l1 / smooth_l1 times g: out = g f⁽ᵏ⁾(x - y),
 * a recorded op whose backward is itself: d/dg = op_k(h), d/dx = op_k+1(h g),
 * d/dy = -d/dx ---- */
static nb_tensor *reg_deriv(nb_op op, nb_tensor *x, nb_tensor *y, nb_tensor *g, double beta, int order);

static int reg_deriv_backward(nb__node *n, nb_tensor *h, nb_tensor **gin) {
    nb_tensor *x = nb__saved_get(n, 0), *y = nb__saved_get(n, 1), *g = nb__saved_get(n, 2);
    nb_op op = (nb_op)n->p.i[2];
    double beta = n->p.d[0];
    int order = (int)n->p.i[1];
    if (nb__needs_input_grad(n, 2)) gin[2] = reg_deriv(op, x, y, h, beta, order);
    if (nb__needs_input_grad(n, 0) || nb__needs_input_grad(n, 1)) {
        nb_tensor *d = reg_deriv(op, x, y, nb_mul(h, g), beta, order + 1);
        if (nb__needs_input_grad(n, 0)) gin[0] = nb_sum_to(d, n->shape[0]);
        if (nb__needs_input_grad(n, 1)) gin[1] = nb_sum_to(nb_neg(d), n->shape[1]);
    }
    return nb__grads_ok(n, gin);
}

static nb_tensor *reg_deriv(nb_op op, nb_tensor *x, nb_tensor *y, nb_tensor *g, double beta, int order) {
    const char *who = op == NB_OP_L1_LOSS_BACKWARD ? "nb_l1_loss_backward" : "nb_smooth_l1_loss_backward";
    NB_CHECK_ARG(who, x);
    NB_CHECK_ARG(who, y);
    NB_CHECK_ARG(who, g);
    nb_tensor *ins[3] = {x, y, g};
    nb_tensor *out = ew_raw(who, op, g->ndim, g->shape, ins, 3, beta, order);
    nb__node *node;
    out = nb__finish(out, "RegLossDerivBackward", who, reg_deriv_backward, ins, 3, 7, &node);
    if (node) {
        node->p.d[0] = beta;
        node->p.i[1] = order;
        node->p.i[2] = op;
        node->shape[0] = nb_dims_get(x);
        node->shape[1] = nb_dims_get(y);
    }
    return out;
}

/* ---- mse, l1, smooth_l1 ---- */
static int mse_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *x = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    nb_tensor *gd = nb_mul(nb_mul_scalar(nb_sub(x, y), 2.0), g);
    if (nb__needs_input_grad(n, 0)) gin[0] = nb_sum_to(gd, n->shape[0]);
    if (nb__needs_input_grad(n, 1)) gin[1] = nb_sum_to(nb_neg(gd), n->shape[1]);
    return nb__grads_ok(n, gin);
}

static int l1_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *x = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    nb_op op = n->p.i[2] ? NB_OP_SMOOTH_L1_LOSS_BACKWARD : NB_OP_L1_LOSS_BACKWARD;
    nb_tensor *gd = reg_deriv(op, x, y, g, n->p.d[0], 1);
    if (nb__needs_input_grad(n, 0)) gin[0] = nb_sum_to(gd, n->shape[0]);
    if (nb__needs_input_grad(n, 1)) gin[1] = nb_sum_to(nb_neg(gd), n->shape[1]);
    return nb__grads_ok(n, gin);
}

static nb_tensor *reg_loss(const char *who, const char *name, nb_op op, nb__backward_fn bw, nb_tensor *x,
                           nb_tensor *y, nb_reduction red, double beta) {
    NB_CHECK_ARG(who, x);
    NB_CHECK_ARG(who, y);
    int nd;
    int64_t shape[NB_MAX_DIMS];
    if (ew_check(who, x, y, red, &nd, shape)) return NULL;
    if (!(beta >= 0)) {
        nb__err(NB_EINVAL, "%s: beta must be >= 0, got %g", who, beta);
        return NULL;
    }
    nb_tensor *ins[2] = {x, y};
    nb_tensor *L = ew_raw(who, op, nd, shape, ins, 2, beta, 0);
    nb__node *node;
    nb_scope_begin();
    L = nb__finish(L, name, who, bw, ins, 2, 3, &node);
    if (node) {
        node->p.d[0] = beta;
        node->p.i[2] = op == NB_OP_SMOOTH_L1_LOSS;
        node->shape[0] = nb_dims_get(x);
        node->shape[1] = nb_dims_get(y);
    }
    nb_tensor *r = nb_keep(reduce_ew(L, red));
    nb_scope_end();
    return r;
}

NB_API nb_tensor *nb_mse_loss_ex(nb_tensor *input, nb_tensor *target, nb_reduction reduction) {
    return reg_loss("nb_mse_loss", "MseLossBackward", NB_OP_MSE_LOSS, mse_backward, input, target, reduction, 0);
}
NB_API nb_tensor *nb_mse_loss(nb_tensor *input, nb_tensor *target) {
    return nb_mse_loss_ex(input, target, NB_REDUCTION_MEAN);
}
NB_API nb_tensor *nb_l1_loss_ex(nb_tensor *input, nb_tensor *target, nb_reduction reduction) {
    return reg_loss("nb_l1_loss", "L1LossBackward", NB_OP_L1_LOSS, l1_backward, input, target, reduction, 0);
}
NB_API nb_tensor *nb_l1_loss(nb_tensor *input, nb_tensor *target) {
    return nb_l1_loss_ex(input, target, NB_REDUCTION_MEAN);
}
NB_API nb_tensor *nb_smooth_l1_loss_ex(nb_tensor *input, nb_tensor *target, nb_reduction reduction, double beta) {
    return reg_loss("nb_smooth_l1_loss", "SmoothL1LossBackward", NB_OP_SMOOTH_L1_LOSS, l1_backward, input, target,
                    reduction, beta);
}
NB_API nb_tensor *nb_smooth_l1_loss(nb_tensor *input, nb_tensor *target) {
    return nb_smooth_l1_loss_ex(input, target, NB_REDUCTION_MEAN, 1.0);
}

/* ---- binary cross entropy with logits ----
 * The derivative op: out = gw d(x, y) with gw = g * weight, d/dx or d/dy
 * (`wrt`); differentiable w.r.t. gw only (it is linear in it). */
static int bce_deriv_backward(nb__node *n, nb_tensor *h, nb_tensor **gin);

static nb_tensor *bce_deriv(nb_tensor *x, nb_tensor *y, nb_tensor *gw, nb_tensor *pw, int wrt) {
    const char *who = "nb_binary_cross_entropy_with_logits_backward";
    NB_CHECK_ARG(who, gw);
    nb_tensor *ins[4] = {x, y, gw, pw};
    nb_tensor *out = ew_raw(who, NB_OP_BCE_WITH_LOGITS_BACKWARD, x->ndim, x->shape, ins, 4, wrt, 0);
    nb__node *node;
    out = nb__finish(out, "BceWithLogitsBackwardBackward", who, bce_deriv_backward, ins, 3, 7, &node);
    if (node) {
        node->p.i[0] = wrt;
        node->p.i[1] = pw != NULL;
        if (pw && nb__save(node, pw)) return NULL;
    }
    return out;
}

static int bce_deriv_backward(nb__node *n, nb_tensor *h, nb_tensor **gin) {
    if (nb__needs_input_grad(n, 0) || nb__needs_input_grad(n, 1))
        return nb__err(NB_EAUTOGRAD, "nb_binary_cross_entropy_with_logits: second derivatives with respect to the "
                                     "input or the target are not supported");
    nb_tensor *x = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    nb_tensor *pw = n->p.i[1] ? nb__saved_get(n, 3) : NULL;
    if (!x || !y || (n->p.i[1] && !pw)) return nb_last_error_code();
    gin[2] = bce_deriv(x, y, h, pw, (int)n->p.i[0]);
    return nb__grads_ok(n, gin);
}

static int bce_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_tensor *x = nb__saved_get(n, 0), *y = nb__saved_get(n, 1);
    int at = 2;
    nb_tensor *w = n->p.i[0] ? nb__saved_get(n, at++) : NULL;
    nb_tensor *pw = n->p.i[1] ? nb__saved_get(n, at) : NULL;
    if (!x || !y || (n->p.i[0] && !w) || (n->p.i[1] && !pw)) return nb_last_error_code();
    nb_tensor *gw = w ? nb_mul(g, w) : g;
    if (nb__needs_input_grad(n, 0)) gin[0] = bce_deriv(x, y, gw, pw, 0);
    if (nb__needs_input_grad(n, 1)) gin[1] = bce_deriv(x, y, gw, pw, 1);
    return nb__grads_ok(n, gin);
}

/* weight / pos_weight: of x's dtype and broadcastable to x's shape. */
static int bce_check_weight(const char *who, const char *what, const nb_tensor *x, const nb_tensor *w) {
    if (!w) return 0;
    if (nb__check_same_dtype(who, x, w)) return NB_EDTYPE;
    int nd;
    int64_t shape[NB_MAX_DIMS];
    bool fits = !nb__broadcast(who, w->ndim, w->shape, x->ndim, x->shape, &nd, shape) && nd == x->ndim;
    for (int d = 0; fits && d < nd; d++) fits = shape[d] == x->shape[d];
    if (!fits)
        return nb__err(NB_ESHAPE, "%s: %s of shape %s cannot be broadcast to the input's shape %s", who, what,
                       nb__shape_str(w), nb__shape_str(x));
    return 0;
}

NB_API nb_tensor *nb_binary_cross_entropy_with_logits_ex(nb_tensor *input, nb_tensor *target,
                                                         const nb_bce_opts *opts) {
    const char *who = "nb_binary_cross_entropy_with_logits";
    NB_CHECK_ARG(who, input);
    NB_CHECK_ARG(who, target);
    nb_bce_opts o = {0};
    if (opts) o = *opts;
    if (nb__check_float(who, input) || nb__check_same_dtype(who, input, target) || check_reduction(who, o.reduction))
        return NULL;
    if (!nb__same_shape(input, target)) {
        nb__err(NB_ESHAPE, "%s: target of shape %s must have the input's shape %s", who, nb__shape_str(target),
                nb__shape_str(input));
        return NULL;
    }
    nb_scope_begin();
    nb_tensor *r = NULL;
    if (bce_check_weight(who, "weight", input, o.weight) || bce_check_weight(who, "pos_weight", input, o.pos_weight))
        goto done;
    nb_tensor *ins[4] = {input, target, o.weight, o.pos_weight};
    nb_tensor *L = ew_raw(who, NB_OP_BCE_WITH_LOGITS, input->ndim, input->shape, ins, 4, 0, 0);
    nb__node *node;
    L = nb__finish(L, "BceWithLogitsBackward", who, bce_backward, ins, 2, 3, &node);
    if (node) {
        node->p.i[0] = o.weight != NULL;
        node->p.i[1] = o.pos_weight != NULL;
        if ((o.weight && nb__save(node, o.weight)) || (o.pos_weight && nb__save(node, o.pos_weight))) goto done;
    }
    r = nb_keep(reduce_ew(L, o.reduction));
done:
    nb_scope_end();
    return r;
}

NB_API nb_tensor *nb_binary_cross_entropy_with_logits(nb_tensor *input, nb_tensor *target) {
    return nb_binary_cross_entropy_with_logits_ex(input, target, NULL);
}
