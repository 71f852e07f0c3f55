/* nabla/functional.h — neural-network functions: linear, softmax, losses,
 * dropout, convolution, pooling, normalization, attention, interpolation.
 *
 * Like torch.nn.functional: plain functions of tensors, autograd-aware,
 * with PyTorch's argument meanings and defaults (where an argument struct
 * is zero-initialised, its fields take PyTorch's defaults). Every function
 * returns a new tensor (see Ownership in tensor.h) or NULL with the error in
 * nb_last_error(); a NULL input gives NULL.
 */
#ifndef NABLA_FUNCTIONAL_H
#define NABLA_FUNCTIONAL_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- linear, softmax, losses, dropout ---- */
/* How a loss reduces its per-element values (PyTorch's `reduction`): MEAN
 * (0, the default) averages, SUM adds, NONE returns them unreduced. */
typedef enum nb_reduction {
    NB_REDUCTION_MEAN,
    NB_REDUCTION_SUM,
    NB_REDUCTION_NONE,
    NB_REDUCTION_COUNT
} nb_reduction;

/* y = x wᵀ + b (torch.nn.functional.linear): x (*, in) with at least 1 dim,
 * w (out, in) as torch stores it, b (out) or NULL for no bias (so a NULL
 * from a failed op in b's place is not caught here); returns (*, out). */
NB_API nb_tensor *nb_linear(nb_tensor *x, nb_tensor *w, nb_tensor *b);

/* softmax and log_softmax along `dim` (negative counts from the end; a 0-dim
 * x accepts 0 and -1), computed stably (the maximum is subtracted before
 * exp). Backward: dx = y (g - sum(g y)) and g - exp(y) sum(g), as their own
 * kernels; second derivatives work. */
NB_API nb_tensor *nb_softmax(nb_tensor *x, int dim);
NB_API nb_tensor *nb_log_softmax(nb_tensor *x, int dim);

/* Options of nb_cross_entropy_ex; zero-initialised = PyTorch's defaults. */
typedef struct nb_cross_entropy_opts {
    nb_tensor *weight;         /* (C) class weights of the logits' dtype, or NULL (borrowed) */
    bool set_ignore_index;     /* false: ignore_index is -100, PyTorch's default */
    int64_t ignore_index;      /* class-index targets equal to it count for nothing */
    double label_smoothing;    /* in [0, 1]; 0 = none */
    nb_reduction reduction;    /* MEAN (default), SUM or NONE */
} nb_cross_entropy_opts;

/* Cross entropy between logits and targets (torch.nn.functional.cross_entropy),
 * the log_softmax over the class dim fused with the NLL.
 *   logits (N, C), (N, C, d1, ...) or unbatched (C);
 *   targets: I64 class indices (N), (N, d1, ...) or () for unbatched logits,
 *            each in [0, C) or equal to ignore_index (else NB_ERANGE, nothing
 *            read out of bounds); or class probabilities of the logits' dtype
 *            and shape (then ignore_index may not be set, as PyTorch).
 * Per sample, with weights w (1 when none) and smoothing eps:
 *   (1-eps) w_t (-log p_t) + eps/C sum_c w_c (-log p_c),  0 for ignored targets.
 * MEAN divides the sum by the sum of w_t over non-ignored targets (NaN when
 * every target is ignored), as PyTorch; for probability targets by the number
 * of samples. Returns a 0-dim tensor, or the targets' shape for NONE. The
 * gradient flows to the logits (and to probability targets), not to weight. */
NB_API nb_tensor *nb_cross_entropy(nb_tensor *logits, nb_tensor *targets);
NB_API nb_tensor *nb_cross_entropy_ex(nb_tensor *logits, nb_tensor *targets, const nb_cross_entropy_opts *opts);

/* Options of nb_nll_loss_ex; zero-initialised = PyTorch's defaults. */
typedef struct nb_nll_loss_opts {
    nb_tensor *weight;         /* (C) class weights of the input's dtype, or NULL (borrowed) */
    bool set_ignore_index;     /* false: ignore_index is -100, PyTorch's default */
    int64_t ignore_index;      /* targets equal to it count for nothing */
    nb_reduction reduction;    /* MEAN (default), SUM or NONE */
} nb_nll_loss_opts;

/* Negative log likelihood of log-probabilities (torch.nn.functional.nll_loss):
 * input (N, C), (N, C, d1, ...) or (C), I64 targets as nb_cross_entropy's;
 * per sample -w_t input[t]; MEAN divides by the sum of w_t of non-ignored
 * targets. */
NB_API nb_tensor *nb_nll_loss(nb_tensor *input, nb_tensor *targets);
NB_API nb_tensor *nb_nll_loss_ex(nb_tensor *input, nb_tensor *targets, const nb_nll_loss_opts *opts);

/* Element-wise regression losses of d = input - target, reduced (nb_mse_loss
 * and the others without _ex take the mean). input and target have one float
 * dtype and broadcast as PyTorch's (which warns when their shapes differ).
 * Gradients flow to both.
 *   mse: d²   l1: |d|   smooth_l1: d²/(2 beta) where |d| < beta, else
 *   |d| - beta/2 (PyTorch's default beta is 1.0; beta 0 is l1; beta < 0 is
 *   NB_EINVAL). */
NB_API nb_tensor *nb_mse_loss(nb_tensor *input, nb_tensor *target);
NB_API nb_tensor *nb_mse_loss_ex(nb_tensor *input, nb_tensor *target, nb_reduction reduction);
NB_API nb_tensor *nb_l1_loss(nb_tensor *input, nb_tensor *target);
NB_API nb_tensor *nb_l1_loss_ex(nb_tensor *input, nb_tensor *target, nb_reduction reduction);
NB_API nb_tensor *nb_smooth_l1_loss(nb_tensor *input, nb_tensor *target);
NB_API nb_tensor *nb_smooth_l1_loss_ex(nb_tensor *input, nb_tensor *target, nb_reduction reduction, double beta);

/* Options of nb_binary_cross_entropy_with_logits_ex; zero = PyTorch's defaults. */
typedef struct nb_bce_opts {
    nb_tensor *weight;         /* broadcast to the input's shape, or NULL (borrowed) */
    nb_tensor *pos_weight;     /* weight of positive targets, broadcast to the input (e.g. (C)), or NULL */
    nb_reduction reduction;    /* MEAN (default), SUM or NONE */
} nb_bce_opts;

/* Binary cross entropy of logits x against targets y in [0, 1] of x's shape
 * (torch.nn.functional.binary_cross_entropy_with_logits), in the stable form
 *   w ((1 - y) x + (1 + (p - 1) y) softplus(-x)),  softplus(z) = log(1 + e^z)
 * that never overflows. Gradients flow to x and y, not to weight or
 * pos_weight (as PyTorch). Second derivatives are not supported (a backward
 * through the gradient w.r.t. x or y is NB_EAUTOGRAD). */
NB_API nb_tensor *nb_binary_cross_entropy_with_logits(nb_tensor *input, nb_tensor *target);
NB_API nb_tensor *nb_binary_cross_entropy_with_logits_ex(nb_tensor *input, nb_tensor *target,
                                                         const nb_bce_opts *opts);

/* Dropout (torch.nn.functional.dropout): in training, zeroes each element with
 * probability p and scales the rest by 1/(1-p) (p = 1 gives zeros); in eval
 * (train false) returns x itself (retained, in the scope). The mask comes
 * from a counter-based generator keyed by `seed`: element i (C order) is kept
 * or dropped by (seed, i) alone, so the same seed gives the same mask on any
 * number of threads and any memory layout of x. PyTorch draws from a global
 * generator instead; here the caller passes the seed. p outside [0, 1] is
 * NB_EINVAL. */
NB_API nb_tensor *nb_dropout(nb_tensor *x, double p, bool train, uint64_t seed);
/* @@LOSS@@ */

/* ---- convolution, pooling, interpolation ---- */
/* Convolution geometry. Pairs are (H, W) for the 2-D ops; conv1d reads entry
 * 0 only. A zero field takes PyTorch's default: stride 1, padding 0, dilation
 * 1, groups 1, output_padding 0. Write both entries of a 2-D pair:
 * .stride = {2, 2} is PyTorch's stride=2 ({2} alone means (2, 1)). There is
 * no padding="same"/"valid" string form: for an odd kernel "same" is
 * padding = dilation*(k-1)/2 with stride 1; "valid" is padding 0. */
typedef struct nb_conv_opts {
    int64_t stride[2];          /* step between output positions (> 0); 0: 1 */
    int64_t padding[2];         /* implicit zeros on both sides (>= 0) */
    int64_t dilation[2];        /* spacing between kernel taps (> 0); 0: 1 */
    int64_t groups;             /* channel groups (> 0); 0: 1 */
    int64_t output_padding[2];  /* conv_transpose2d only: extra size at the end, < stride or dilation */
} nb_conv_opts;

/* 2-D convolution (cross-correlation), as torch.nn.functional.conv2d.
 * x (N, Cin, H, W), or unbatched (Cin, H, W); w (Cout, Cin/groups, kH, kW);
 * b (Cout) or NULL for none; opts NULL for the defaults. Returns
 * (N, Cout, OH, OW) (unbatched in, unbatched out) with
 * OH = (H + 2*padding - dilation*(kH-1) - 1) / stride + 1 (floor), same for W.
 * x, w and b share one float dtype. Cin and Cout must be divisible by groups
 * and the dilated kernel must fit the padded input. Differentiable to any
 * order: the backward is made of conv_bwd_data (a transposed convolution),
 * conv_bwd_weight and conv_bwd_bias ops, each with its own backward. */
NB_API nb_tensor *nb_conv2d(nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv_opts *opts);
/* 1-D convolution, as torch.nn.functional.conv1d: x (N, Cin, L) or (Cin, L);
 * w (Cout, Cin/groups, k); b (Cout) or NULL; entry 0 of each opts pair. */
NB_API nb_tensor *nb_conv1d(nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv_opts *opts);
/* Transposed 2-D convolution (the gradient of conv2d w.r.t. its input), as
 * torch.nn.functional.conv_transpose2d: x (N, Cin, H, W) or (Cin, H, W);
 * w (Cin, Cout/groups, kH, kW); b (Cout) or NULL. Output size
 * OH = (H-1)*stride - 2*padding + dilation*(kH-1) + output_padding + 1.
 * Differentiable to any order, like nb_conv2d. */
NB_API nb_tensor *nb_conv_transpose2d(nb_tensor *x, nb_tensor *w, nb_tensor *b, const nb_conv_opts *opts);

/* Pooling geometry (pairs are (H, W)); a zero field takes PyTorch's default. */
typedef struct nb_pool2d_opts {
    int64_t stride[2];          /* 0: the kernel size (PyTorch's stride=None) */
    int64_t padding[2];         /* at most half the kernel; max pads with -inf, avg with zeros */
    int64_t dilation[2];        /* max_pool2d only; 0: 1 */
    bool ceil_mode;             /* round the output size up (a window must start inside the input or left padding) */
    bool exclude_pad;           /* avg_pool2d: PyTorch's count_include_pad=False (default: padding counts) */
    int64_t divisor_override;   /* avg_pool2d: divide every sum by this; 0: none */
} nb_pool2d_opts;

/* Max pooling, as torch.nn.functional.max_pool2d: x (N, C, H, W) or
 * (C, H, W); kernel kernel_h x kernel_w; opts NULL for the defaults. Output
 * OH = (H + 2*padding - dilation*(kH-1) - 1) / stride + 1 (ceil with
 * ceil_mode). A NaN in a window wins, as in PyTorch. The gradient goes to the
 * first maximum of each window (through saved argmax indices); twice
 * differentiable. */
NB_API nb_tensor *nb_max_pool2d(nb_tensor *x, int64_t kernel_h, int64_t kernel_w, const nb_pool2d_opts *opts);
/* The same, also giving the argmax of each window in *indices (a new I64
 * tensor of the output's shape, see Ownership in tensor.h; h*W + w within
 * each (n, c) plane, PyTorch's return_indices=True). *indices is NULL on
 * failure. */
NB_API nb_tensor *nb_max_pool2d_with_indices(nb_tensor *x, int64_t kernel_h, int64_t kernel_w,
                                             const nb_pool2d_opts *opts, nb_tensor **indices);
/* Average pooling, as torch.nn.functional.avg_pool2d (count_include_pad
 * true unless opts->exclude_pad; dilation must be 0 or 1). Shapes as
 * nb_max_pool2d. Differentiable to any order (it is linear). */
NB_API nb_tensor *nb_avg_pool2d(nb_tensor *x, int64_t kernel_h, int64_t kernel_w, const nb_pool2d_opts *opts);
/* Adaptive average pooling to (out_h, out_w) (both >= 1), as
 * torch.nn.functional.adaptive_avg_pool2d: output cell o averages input
 * [floor(o*H/out_h), ceil((o+1)*H/out_h)). x (N, C, H, W) or (C, H, W).
 * PyTorch's None for "keep this size" is written as the input's size. */
NB_API nb_tensor *nb_adaptive_avg_pool2d(nb_tensor *x, int64_t out_h, int64_t out_w);

/* Resampling modes of nb_interpolate (PyTorch's mode strings). */
typedef enum nb_interp {
    NB_INTERP_NEAREST,         /* "nearest" (the default): source floor(o * in/out) */
    NB_INTERP_BILINEAR,        /* "bilinear" */
    NB_INTERP_NEAREST_EXACT,   /* "nearest-exact": source floor((o + 0.5) * in/out) */
    NB_INTERP_COUNT
} nb_interp;

typedef struct nb_interpolate_opts {
    int64_t size[2];              /* output (H, W); {0, 0}: from scale_factor */
    double scale_factor[2];       /* used when size is {0, 0}: out = floor(in * scale) */
    nb_interp mode;               /* default NB_INTERP_NEAREST, as PyTorch */
    bool align_corners;           /* bilinear only (an error with nearest, as PyTorch) */
    bool recompute_scale_factor;  /* map coordinates by in/out instead of 1/scale_factor */
} nb_interpolate_opts;

/* Resamples a 4-D (N, C, H, W) tensor, as torch.nn.functional.interpolate:
 * give exactly one of size or scale_factor (both entries, > 0). Only 4-D
 * input (PyTorch also takes 3-D and 5-D for other modes). Differentiable to
 * any order (it is linear in x). */
NB_API nb_tensor *nb_interpolate(nb_tensor *x, const nb_interpolate_opts *opts);
/* @@CONV@@ */

/* ---- normalization, attention ---- */
/* Normalizations. Optional tensors (weight, bias, running stats, attn_mask)
 * are NULL for "none", as PyTorch's None; all tensors share x's float dtype.
 * Each normalization runs a fused forward kernel and, for the input's
 * gradient, a fused backward kernel that recomputes the statistics from the
 * saved input (nothing but the input, weight and, for batch_norm, the [2, C]
 * statistics are saved). A backward run with create_graph computes the same
 * gradients with public ops instead, so every normalization is
 * differentiable twice (and further). */

/* Options of nb_batch_norm; NULL or zero fields take the defaults of
 * torch.nn.functional.batch_norm. */
typedef struct nb_batch_norm_opts {
    bool training;     /* normalize with the batch statistics and update the running ones (default false, as F.batch_norm) */
    double momentum;   /* running = (1-momentum)*running + momentum*batch; 0: 0.1 */
    double eps;        /* added to the variance; 0: 1e-5 */
} nb_batch_norm_opts;

/* Batch normalization, as torch.nn.functional.batch_norm. x (N, C), (N, C, L)
 * or (N, C, H, W) (any rank >= 2: the statistics are per channel C over all
 * other dims); running_mean, running_var, weight, bias (C) or NULL.
 * y = (x - mean) / sqrt(var + eps) * weight + bias, per channel.
 * Training: mean and the biased var come from the batch (more than one value
 * per channel needed); when running stats are given they are updated in
 * place (version bumped), with the UNBIASED batch variance for running_var,
 * exactly as PyTorch; give both or neither. Eval: running stats (both
 * required) are the mean and var, and are left unchanged. The running-stat
 * update is not differentiated and the running stats get no gradient; the
 * gradient w.r.t. x flows through the batch statistics in training mode.
 * PyTorch's momentum=None (cumulative average) is not offered. */
NB_API nb_tensor *nb_batch_norm(nb_tensor *x, nb_tensor *running_mean, nb_tensor *running_var, nb_tensor *weight,
                                nb_tensor *bias, const nb_batch_norm_opts *opts);

/* eps of layer_norm, group_norm and rms_norm; NULL or zero takes the default. */
typedef struct nb_norm_opts {
    double eps;   /* added to the variance (mean square for rms_norm); 0: 1e-5, rms_norm: see there */
} nb_norm_opts;

/* Layer normalization, as torch.nn.functional.layer_norm: x (..., *S) where
 * S = normalized_shape (its last k >= 1 dims must equal x's last k dims);
 * weight and bias of shape S or NULL. Each slice over the last k dims is
 * normalized with its own mean and biased variance:
 * y = (x - mean) / sqrt(var + eps) * weight + bias (eps default 1e-5). */
NB_API nb_tensor *nb_layer_norm(nb_tensor *x, nb_dims normalized_shape, nb_tensor *weight, nb_tensor *bias,
                                const nb_norm_opts *opts);
/* Group normalization, as torch.nn.functional.group_norm: x (N, C, *) with
 * C divisible by num_groups (>= 1); weight, bias (C) or NULL. The channels
 * are split into num_groups consecutive groups, each (sample, group) is
 * normalized over its C/num_groups channels and all of *, then scaled and
 * shifted per channel (eps default 1e-5). */
NB_API nb_tensor *nb_group_norm(nb_tensor *x, int64_t num_groups, nb_tensor *weight, nb_tensor *bias,
                                const nb_norm_opts *opts);
/* RMS normalization over the last k dims (normalized_shape as in
 * nb_layer_norm), weight of that shape or NULL:
 *     y = x * rsqrt(mean(x², last k dims) + eps) * weight
 * eps default (opts NULL or eps 0): the machine epsilon of x's dtype,
 * FLT_EPSILON (1.19e-7) for f32 and DBL_EPSILON (2.22e-16) for f64, as
 * torch.nn.functional.rms_norm (PyTorch >= 2.4) with eps=None. */
NB_API nb_tensor *nb_rms_norm(nb_tensor *x, nb_dims normalized_shape, nb_tensor *weight, const nb_norm_opts *opts);

/* Options of nb_scaled_dot_product_attention; NULL or zero fields take
 * PyTorch's defaults. */
typedef struct nb_sdpa_opts {
    bool is_causal;   /* query i attends keys j <= i only (top-left aligned, as PyTorch); no attn_mask with it */
    double scale;     /* multiplies q·k; 0: 1/sqrt(E) */
} nb_sdpa_opts;

/* Attention, as torch.nn.functional.scaled_dot_product_attention (PyTorch
 * >= 2.0) with dropout_p 0 (there is no dropout here):
 *     out = softmax(q @ kᵀ * scale + mask) @ v
 * q (..., L, E), k (..., S, E), v (..., S, Ev) -> out (..., L, Ev); the
 * batch dims "..." broadcast among q, k and v (each needs >= 2 dims).
 * attn_mask (NULL for none) broadcasts with the scores (..., L, S) as in
 * PyTorch's math (its last two dims to (L, S); its batch dims with q's, k's
 * and v's, and it may add some): BOOL, where true means "takes part" and
 * false "masked out" (score -inf), or of q's float dtype, added to the
 * scores (and then differentiable). A query whose scores are all
 * masked (-inf) gets an output row of zeros and zero gradients, as PyTorch's
 * math backend since 2.5; PyTorch 2.0-2.4 give NaN there. The forward and
 * the attention weights are computed by fused kernels (with their own
 * softmax); the backward recomputes the weights and uses matmuls, and is
 * itself differentiable (gradgrad works). */
NB_API nb_tensor *nb_scaled_dot_product_attention(nb_tensor *q, nb_tensor *k, nb_tensor *v, nb_tensor *attn_mask,
                                                  const nb_sdpa_opts *opts);
/* @@NORM@@ */

#ifdef __cplusplus
}
#endif
#endif
