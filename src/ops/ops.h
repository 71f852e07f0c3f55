/* ops.h — the ops layer's internal interface: argument checks, broadcasting,
 * output allocation and the shared drivers for element-wise ops.
 *
 * An op file holds, per op, the backward formula directly above the public
 * forward. Backward formulas are written with public ops, so a create_graph
 * backward records them and second derivatives work.
 */
#ifndef NB_OPS_INTERNAL_H
#define NB_OPS_INTERNAL_H

#include "autograd/autograd.h"
#include "kernels/kernels.h"

/* NULL input: keeps the first failure's message if one is pending, else
 * records that `who`'s argument `what` is NULL. Returns NULL. */
nb_tensor *nb__null_arg(const char *who, const char *what);
#define NB_CHECK_ARG(who, t)                               \
    do {                                                   \
        if (!(t)) return nb__null_arg(who, #t);            \
    } while (0)
int nb__check_float(const char *who, const nb_tensor *t);
int nb__check_same_dtype(const char *who, const nb_tensor *a, const nb_tensor *b);
/* The broadcast of two shapes (PyTorch rules), or NB_ESHAPE naming both. */
int nb__broadcast(const char *who, int na, const int64_t *sa, int nb, const int64_t *sb, int *nd, int64_t *out);
/* A stride-0 alias of t broadcast to (nd, shape) (+1, no autograd). */
nb_tensor *nb__expand_alias(const nb_tensor *t, int nd, const int64_t *shape);

/* Element-wise drivers: allocate out (+1, not scoped), dispatch, return out. */
nb_tensor *nb__ew_binary(const char *who, nb_op op, nb_tensor *a, nb_tensor *b);
nb_tensor *nb__ew_unary(const char *who, nb_op op, nb_tensor *a, double s);

/* Records a node on out when inputs require grad (saving per mask: bit i
 * saves input i, NB__SAVE_OUT saves the output) and hands out to the scope.
 * On failure releases out and returns NULL. */
#define NB__SAVE_OUT 0x100u
nb_tensor *nb__finish(nb_tensor *out, const char *name, const char *who, nb__backward_fn bw,
                      nb_tensor *const *inputs, int n, unsigned save_mask, nb__node **node_out);

/* Internal helpers shared across op files, by area. */
/* @@OPS_ELEMENTWISE@@ */
/* @@OPS_REDUCE@@ */
/* @@OPS_INDEX@@ */
/* @@OPS_LOSS@@ */
/* @@OPS_CONV@@ */
/* @@OPS_NORM@@ */

/* 0 when every input that needs a gradient got one, else the error code. */
int nb__grads_ok(const nb__node *n, nb_tensor *const *gin);

#endif
