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
/* @@LOSS@@ */

/* ---- convolution, pooling, interpolation ---- */
/* @@CONV@@ */

/* ---- normalization, attention ---- */
/* @@NORM@@ */

#ifdef __cplusplus
}
#endif
#endif
