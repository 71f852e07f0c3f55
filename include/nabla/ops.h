/* nabla/ops.h — the ops of the core: arithmetic, math, reductions, matmul.
 *
 * Every op returns a new tensor (see Ownership in tensor.h) or NULL with the
 * error in nb_last_error(); a NULL input gives NULL. Binary ops broadcast as
 * PyTorch does; both inputs must have the same dtype (type promotion comes
 * with the full op set). When an input requires grad and grad mode is on, the
 * op records its backward node.
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
/* @@ELEMENTWISE@@ */

/* ---- reductions (full set) ---- */
/* @@REDUCE@@ */

/* ---- shape and indexing (full set) ---- */
/* @@INDEX@@ */

#ifdef __cplusplus
}
#endif
#endif
