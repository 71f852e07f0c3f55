/* nabla/ops.h — tensor ops: arithmetic, math, activations, comparisons,
 * reductions, matmul, shape and indexing. (Neural-network functions —
 * linear, losses, conv, pooling, norms, attention — are in functional.h.)
 *
 * Every op returns a new tensor (see Ownership in tensor.h) or NULL with the
 * error in nb_last_error(); a NULL input gives NULL. Binary ops broadcast and
 * promote dtypes as PyTorch does (nb_result_type: bool < i64 < f32 < f64,
 * 0-dim tensors and scalars weigh less than tensors with dims); gradients
 * return to each input in its own dtype. When an input requires grad and
 * grad mode is on, the op records its backward node.
 */
#ifndef NABLA_OPS_H
#define NABLA_OPS_H

#include "autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- element-wise, broadcasting ---- */
NB_API nb_tensor *nb_add(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_sub(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_mul(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_div(nb_tensor *a, nb_tensor *b);
/* a ** b; the gradient w.r.t. b is b's a**b * log(a) (NaN for a < 0, as PyTorch). */
NB_API nb_tensor *nb_pow(nb_tensor *a, nb_tensor *b);

/* ---- with a Python-style scalar ---- */
NB_API nb_tensor *nb_add_scalar(nb_tensor *a, double s);
NB_API nb_tensor *nb_mul_scalar(nb_tensor *a, double s);
NB_API nb_tensor *nb_pow_scalar(nb_tensor *a, double exponent);

/* ---- unary ---- */
NB_API nb_tensor *nb_neg(nb_tensor *a);
NB_API nb_tensor *nb_exp(nb_tensor *a);
NB_API nb_tensor *nb_log(nb_tensor *a);
NB_API nb_tensor *nb_tanh(nb_tensor *a);

/* ---- reductions ----
 * dims: which dims to reduce (negative counts from the end); ndims 0 with
 * dims NULL reduces all. keepdim keeps reduced dims as size 1. */
NB_API nb_tensor *nb_sum(nb_tensor *a, const int *dims, int ndims, bool keepdim);
NB_API nb_tensor *nb_mean(nb_tensor *a, const int *dims, int ndims, bool keepdim);
NB_API nb_tensor *nb_sum_all(nb_tensor *a);   /* 0-dim */
NB_API nb_tensor *nb_mean_all(nb_tensor *a);  /* 0-dim */
/* Sums a gradient-like tensor down to `shape` (the reverse of broadcasting). */
NB_API nb_tensor *nb_sum_to(nb_tensor *a, nb_dims shape);

/* ---- matrix product, as torch.matmul: 1-D, 2-D and batched with
 * broadcasting of batch dims ---- */
NB_API nb_tensor *nb_matmul(nb_tensor *a, nb_tensor *b);

/* ---- in place: write into `self`, bump its version; return self (not
 * retained again) or NULL. Refused on a tensor that requires grad while grad
 * mode is on. ---- */
NB_API nb_tensor *nb_add_(nb_tensor *self, nb_tensor *other);
NB_API nb_tensor *nb_mul_(nb_tensor *self, nb_tensor *other);
NB_API nb_tensor *nb_mul_scalar_(nb_tensor *self, double s);
NB_API nb_tensor *nb_fill_(nb_tensor *self, double value);
NB_API nb_tensor *nb_zero_(nb_tensor *self);
/* Copies src (broadcast to self's shape, converted to self's dtype). */
NB_API nb_tensor *nb_copy_(nb_tensor *self, nb_tensor *src);

/* ---- element-wise: math, activations, comparisons, logical (full set) ---- */
/* Type promotion (every element-wise op, as torch.result_type): dtypes rank
 * bool < i64 < f32 < f64 in categories bool < integer < floating. Tensors with
 * dims take precedence over 0-dim tensors, which take precedence over
 * scalars; a lower one only counts when its category is higher:
 * f32[3] + f64 0-dim is f32, i64[3] + f64 0-dim is f64, i64[3] + 2.5 is f32,
 * bool[3] + 2 is i64. A double scalar counts as a Python int when its value is
 * integral (and fits in i64), else as a Python float (f32, the default dtype):
 * so nb_add_scalar(i64, 2.0) is i64 where PyTorch's `t + 2.0` would be f32.
 * Gradients reach each input in its own dtype. nb_div is true division
 * (i64 / i64 is f32). NB_DTYPE_COUNT for NULL or invalid input. */
NB_API nb_dtype nb_result_type(const nb_tensor *a, const nb_tensor *b);
NB_API nb_dtype nb_promote_types(nb_dtype a, nb_dtype b);

/* Math. sqrt, rsqrt, sin, cos, erf, reciprocal give f32 for i64/bool input;
 * abs, sign, square keep i64 (square of bool is i64; abs of bool is refused).
 * sign is -1, 0 or 1 (0 for NaN); its gradient is 0; abs's gradient at 0 is 0. */
NB_API nb_tensor *nb_sqrt(nb_tensor *a);
NB_API nb_tensor *nb_rsqrt(nb_tensor *a);        /* 1/sqrt(a) */
NB_API nb_tensor *nb_abs(nb_tensor *a);
NB_API nb_tensor *nb_sign(nb_tensor *a);
NB_API nb_tensor *nb_sin(nb_tensor *a);
NB_API nb_tensor *nb_cos(nb_tensor *a);
NB_API nb_tensor *nb_erf(nb_tensor *a);
NB_API nb_tensor *nb_reciprocal(nb_tensor *a);   /* 1/a */
NB_API nb_tensor *nb_square(nb_tensor *a);       /* a*a */
/* torch.clamp with scalar bounds: min(max(a, min), max); pass NAN for a bound
 * that is absent (at least one must be given). min > max gives max
 * everywhere; NaN input stays NaN. The result promotes with the bounds
 * (clamp(i64, 0.5, NAN) is f32). Gradient passes where min <= a <= max. */
NB_API nb_tensor *nb_clamp(nb_tensor *a, double min, double max);
/* Element-wise max/min of two broadcast tensors, promoted; NaN propagates.
 * At ties each input gets half the gradient (PyTorch 1.13). */
NB_API nb_tensor *nb_maximum(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_minimum(nb_tensor *a, nb_tensor *b);

/* Activations, as torch.nn.functional; C has no default arguments, so the
 * PyTorch defaults are given here. sigmoid gives f32 for i64/bool input, relu
 * keeps i64 and refuses bool; the others need f32/f64 (PyTorch has no integer
 * kernels for them). The gradient of relu at 0 is 0. */
NB_API nb_tensor *nb_sigmoid(nb_tensor *a);
NB_API nb_tensor *nb_relu(nb_tensor *a);
/* a > 0 ? a : negative_slope * a   (PyTorch default negative_slope 0.01) */
NB_API nb_tensor *nb_leaky_relu(nb_tensor *a, double negative_slope);
/* a > 0 ? a : alpha * (exp(a) - 1)   (PyTorch default alpha 1.0) */
NB_API nb_tensor *nb_elu(nb_tensor *a, double alpha);
/* approximate false: a * Φ(a) with the exact erf form (PyTorch's default
 * approximate='none'); true: PyTorch's approximate='tanh',
 * 0.5 a (1 + tanh(sqrt(2/π) (a + 0.044715 a³))). */
NB_API nb_tensor *nb_gelu(nb_tensor *a, bool approximate);
NB_API nb_tensor *nb_silu(nb_tensor *a);         /* a * sigmoid(a) */
/* log(1 + exp(beta a)) / beta, and a itself where beta a > threshold
 * (PyTorch defaults beta 1, threshold 20). beta must be nonzero. */
NB_API nb_tensor *nb_softplus(nb_tensor *a, double beta, double threshold);

/* Comparisons: BOOL results, broadcasting; the operands are compared in
 * their promoted dtype (f32 tensor == 0.1 compares with 0.1f). NaN is unequal
 * to everything. No gradient (no graph node). */
NB_API nb_tensor *nb_eq(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_ne(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_lt(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_le(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_gt(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_ge(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_eq_scalar(nb_tensor *a, double s);
NB_API nb_tensor *nb_ne_scalar(nb_tensor *a, double s);
NB_API nb_tensor *nb_lt_scalar(nb_tensor *a, double s);
NB_API nb_tensor *nb_le_scalar(nb_tensor *a, double s);
NB_API nb_tensor *nb_gt_scalar(nb_tensor *a, double s);
NB_API nb_tensor *nb_ge_scalar(nb_tensor *a, double s);
/* Logical ops on any dtypes (nonzero, NaN included, is true); BOOL results. */
NB_API nb_tensor *nb_logical_not(nb_tensor *a);
NB_API nb_tensor *nb_logical_and(nb_tensor *a, nb_tensor *b);
NB_API nb_tensor *nb_logical_or(nb_tensor *a, nb_tensor *b);
/* cond ? a : b, all three broadcast together; cond must be BOOL; a and b
 * promote. Gradients flow to a where cond and to b where not. */
NB_API nb_tensor *nb_where(nb_tensor *cond, nb_tensor *a, nb_tensor *b);
/* t with value where mask (BOOL, broadcast with t) is true; keeps t's dtype
 * (value converted: 2.5 into i64 is 2). Differs from PyTorch 1.13, which
 * also takes integer masks: here mask must be BOOL. */
NB_API nb_tensor *nb_masked_fill(nb_tensor *t, nb_tensor *mask, double value);

/* More in place (see nb_add_ above): the op is computed in the promoted dtype
 * and must be castable to self's dtype, else NB_EDTYPE as PyTorch
 * ("result type f32 can't be cast to the desired output type i64"):
 * i64 self += f32 is refused, f32 self += f64 computes in f64 and rounds.
 * nb_div_ is true division, so it needs a floating self. */
NB_API nb_tensor *nb_sub_(nb_tensor *self, nb_tensor *other);
NB_API nb_tensor *nb_div_(nb_tensor *self, nb_tensor *other);
NB_API nb_tensor *nb_clamp_(nb_tensor *self, double min, double max);
/* @@ELEMENTWISE@@ */

/* ---- reductions (full set) ---- */
/* Same dims convention as nb_sum (ndims 0 with dims NULL reduces all; a dim
 * may appear once). Gradients as PyTorch's. */
/* Product; the empty product is 1. i64 stays i64 (wrapping on overflow).
 * Differs: PyTorch's prod takes one dim; here any set of dims. Gradient exact
 * with zeros in the input; third derivatives are not supported (NB_ENOTSUP). */
NB_API nb_tensor *nb_prod(nb_tensor *a, const int *dims, int ndims, bool keepdim);
/* torch.amax / amin: the largest / smallest value over dims (NaN if the
 * slice holds one); the gradient is split evenly among ties (NaN over a slice
 * holding a NaN, as PyTorch). An empty reduced dim is an error (no identity).
 * f32, f64, i64. */
NB_API nb_tensor *nb_max(nb_tensor *a, const int *dims, int ndims, bool keepdim);
NB_API nb_tensor *nb_min(nb_tensor *a, const int *dims, int ndims, bool keepdim);
/* torch.max(a, dim) / torch.min(a, dim): values, and in *indices (when not
 * NULL; i64, same shape, owned like a result) the index of the first extreme
 * along dim (of the first NaN if any). The gradient goes to that index only.
 * On failure returns NULL and sets *indices to NULL. */
NB_API nb_tensor *nb_max_dim(nb_tensor *a, int dim, bool keepdim, nb_tensor **indices);
NB_API nb_tensor *nb_min_dim(nb_tensor *a, int dim, bool keepdim, nb_tensor **indices);
/* Index (i64) of the first largest / smallest value along dim (a NaN counts
 * as the extreme); the _all forms give the flat C-order index as a 0-dim
 * tensor (torch.argmax(a) with dim None). No gradient. */
NB_API nb_tensor *nb_argmax(nb_tensor *a, int dim, bool keepdim);
NB_API nb_tensor *nb_argmin(nb_tensor *a, int dim, bool keepdim);
NB_API nb_tensor *nb_argmax_all(nb_tensor *a);
NB_API nb_tensor *nb_argmin_all(nb_tensor *a);
/* Variance / standard deviation: sum((a - mean)^2) / max(0, N - correction)
 * over the N reduced elements; correction 1 (PyTorch's default) is the
 * unbiased estimate, 0 the population one. f32 or f64 only. */
NB_API nb_tensor *nb_var(nb_tensor *a, const int *dims, int ndims, double correction, bool keepdim);
NB_API nb_tensor *nb_std(nb_tensor *a, const int *dims, int ndims, double correction, bool keepdim);
/* log(sum(exp(a))) over dims, computed as max + log(sum(exp(a - max))) so it
 * neither overflows nor underflows; the empty sum gives -inf. f32 or f64. */
NB_API nb_tensor *nb_logsumexp(nb_tensor *a, const int *dims, int ndims, bool keepdim);
/* torch.linalg.vector_norm: p = 1 (sum |a|), 2 (sqrt(sum a^2); its gradient
 * at 0 is 0) or INFINITY (max |a|; an empty reduced dim is an error); other p
 * are refused. f32 or f64. */
NB_API nb_tensor *nb_norm(nb_tensor *a, double p, const int *dims, int ndims, bool keepdim);
/* @@REDUCE@@ */

/* ---- shape and indexing (full set) ---- */
/* Dims are PyTorch's: negative counts from the end. Index tensors are I64
 * (PyTorch also takes int32; nabla has no int32). An index outside its valid
 * range (negative ones included) is an NB_ERANGE error that names the op, the
 * bad value, where it sits and the valid range; nothing is written. The
 * dtypes of tensors combined (cat, stack, scatter_add, index_add) must match:
 * no type promotion here. Views (flatten when possible, narrow, split, chunk)
 * share storage and run no kernel, like nb_reshape and nb_slice. */
/* torch.flatten: dims start_dim..end_dim merged into one; a view when the
 * strides allow, else a copy. A 0-dim tensor becomes shape [1]. */
NB_API nb_tensor *nb_flatten(nb_tensor *t, int start_dim, int end_dim);
/* torch.narrow: `length` elements from `start` (negative counts from the end)
 * along dim, a view; start + length must fit, as PyTorch. */
NB_API nb_tensor *nb_narrow(nb_tensor *t, int dim, int64_t start, int64_t length);
/* torch.cat: the n tensors joined along dim (sizes equal elsewhere). As
 * PyTorch, 1-D tensors of shape [0] are skipped (their gradient is empty).
 * n >= 1; tensors is borrowed. Gradient: slices of the output's gradient. */
NB_API nb_tensor *nb_cat(nb_tensor *const *tensors, int n, int dim);
/* torch.stack: n tensors of one shape joined along a new dim
 * (dim in [-(ndim+1), ndim]). */
NB_API nb_tensor *nb_stack(nb_tensor *const *tensors, int n, int dim);
/* torch.split(t, split_size, dim) and torch.chunk(t, chunks, dim): views of
 * consecutive pieces along dim (split: each split_size long, the last one
 * shorter; chunk: ceil(size / chunks) long, so there may be fewer than
 * `chunks` pieces, as PyTorch). Returns the number of pieces, or a negative
 * NB_E*. The caller owns the array `out`: with out == NULL only the count is
 * returned; otherwise cap must be >= the count (else NB_EINVAL) and out[i]
 * receives the pieces, which belong to the open scope like any op result.
 * On failure out is left unchanged and no piece stays alive. */
NB_API int nb_split(nb_tensor *t, int64_t split_size, int dim, nb_tensor **out, int cap);
NB_API int nb_chunk(nb_tensor *t, int chunks, int dim, nb_tensor **out, int cap);
/* torch.index_select: the entries index[k] of t along dim, in index's order
 * (repeats allowed); index is 1-D (or 0-dim) I64. Gradient: index_add of the
 * output's gradient into zeros. */
NB_API nb_tensor *nb_index_select(nb_tensor *t, int dim, nb_tensor *index);
/* torch.gather: out[i][j] = t[index[i][j]][j] (dim 0), out has index's shape;
 * index has t's number of dims and index.size(d) <= t.size(d) for d != dim.
 * Gradient: scatter_add of the output's gradient into zeros. */
NB_API nb_tensor *nb_gather(nb_tensor *t, int dim, nb_tensor *index);
/* Tensor.scatter_add (out of place): a copy of t with src[i][j] added at
 * [index[i][j]][j] (dim 0); index, src and t have the same number of dims,
 * index.size(d) <= src.size(d) everywhere and <= t.size(d) for d != dim.
 * Differentiable w.r.t. t and src (grad_src = gather, zero-padded where src is
 * larger than index; PyTorch raises there). */
NB_API nb_tensor *nb_scatter_add(nb_tensor *t, int dim, nb_tensor *index, nb_tensor *src);
/* Tensor.index_add (out of place, alpha 1): a copy of t with source's k-th
 * slice along dim added at index[k]; index is 1-D (or 0-dim) I64 and source
 * is t's shape with size numel(index) at dim. Differentiable w.r.t. t and
 * source (grad_source = index_select). Scale source first for PyTorch's alpha. */
NB_API nb_tensor *nb_index_add(nb_tensor *t, int dim, nb_tensor *index, nb_tensor *source);
/* F.embedding(indices, weight, padding_idx): the rows weight[indices], shape
 * indices.shape + [D] for weight (V, D); indices I64 in [0, V). Rows looked up
 * at padding_idx (negative counts from the end, in [-V, V)) get no gradient;
 * pass NB_NO_PADDING for none (PyTorch's None). max_norm,
 * scale_grad_by_freq and sparse are not supported. Argument order is
 * F.embedding's (indices first), not nn.Embedding's. Gradient w.r.t. weight:
 * index_add into zeros; indices take none. */
#define NB_NO_PADDING INT64_MIN
NB_API nb_tensor *nb_embedding(nb_tensor *indices, nb_tensor *weight, int64_t padding_idx);
/* Tensor.repeat: t tiled repeats[d] times along each dim; n >= t's dims, and
 * extra leading repeats add leading dims. repeats[d] >= 0. */
NB_API nb_tensor *nb_repeat(nb_tensor *t, const int64_t *repeats, int n);
/* torch.flip: the order of elements reversed along each of dims (a copy). */
NB_API nb_tensor *nb_flip(nb_tensor *t, const int *dims, int ndims);
/* torch.tril / torch.triu over the last two dims (t has >= 2 dims): keeps
 * the elements on and below (tril) / on and above (triu) the diagonal
 * `diagonal` (0 main, > 0 above it, < 0 below), zeros the rest. */
NB_API nb_tensor *nb_tril(nb_tensor *t, int64_t diagonal);
NB_API nb_tensor *nb_triu(nb_tensor *t, int64_t diagonal);
/* F.one_hot: I64 (...) -> I64 (..., num_classes) of 0/1; num_classes -1 means
 * max(t) + 1 (an error for an empty t). Values must be in [0, num_classes).
 * Not differentiable (integer result). */
NB_API nb_tensor *nb_one_hot(nb_tensor *t, int64_t num_classes);
/* F.pad(t, pad, mode="constant", value): pad lists (before, after) pairs from
 * the LAST dim backwards, PyTorch's order: {left, right, top, bottom, ...};
 * npad is even and npad/2 <= t's dims. Negative pads crop (the size may reach
 * 0, not below). Only constant mode. Gradient: the gradient cropped back (pad
 * with the negated list). */
NB_API nb_tensor *nb_pad(nb_tensor *t, const int64_t *pad, int npad, double value);
/* @@INDEX@@ */

#ifdef __cplusplus
}
#endif
#endif
