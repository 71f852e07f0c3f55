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
/* Type promotion as torch.result_type (promote.c): dimensioned tensors over
 * 0-dim ones over scalars, by category bool < integer < floating. A scalar
 * counts as a Python int when integral (and within i64), else as a float. */
nb_dtype nb__result_type(const nb_tensor *a, const nb_tensor *b);
nb_dtype nb__result_type3(const nb_tensor *a, const nb_tensor *b, const nb_tensor *c /* or NULL */);
nb_dtype nb__result_type_scalar(const nb_tensor *a, double s);
nb_dtype nb__scalar_kind(double s);       /* NB_DTYPE_I64 (integral) or NB_DTYPE_F32 */
nb_dtype nb__float_of(nb_dtype d);        /* d when floating, else f32 (true division, sqrt, ...) */
bool nb__can_cast(nb_dtype from, nb_dtype to);   /* in-place rule: no float->int, no int->bool */
int nb__check_cast(const char *who, nb_dtype result, const nb_tensor *self);   /* NB_EDTYPE naming both */
/* t converted to dt by the COPY kernel (+1, not scoped, no autograd); t itself (+1) when already dt. */
nb_tensor *nb__convert(const char *who, nb_tensor *t, nb_dtype dt);
/* Promoting drivers (dispatch.c): inputs converted to `compute` (the dtype the
 * registry is keyed by), out allocated as out_dt (+1, not scoped);
 * nb__ew_binary is the _ex form with compute = out_dt = result_type(a, b). */
nb_tensor *nb__ew_binary_ex(const char *who, nb_op op, nb_tensor *a, nb_tensor *b, nb_dtype compute,
                            nb_dtype out_dt, double s);
nb_tensor *nb__ew_unary_ex(const char *who, nb_op op, nb_tensor *a, nb_dtype compute, nb_dtype out_dt, double s0,
                           double s1);
/* A gradient summed to an input's shape and cast to its dtype (differentiable). */
nb_tensor *nb__grad_to(nb_tensor *g, nb_dims shape, nb_dtype dt);
/* g (1 - y²), tanh's backward from its output y, in one pass (activation.c). */
nb_tensor *nb__tanh_backward(nb_tensor *g, nb_tensor *y);
/* A one-input element-wise op (dispatch.c): kernel on a converted to ct (out
 * ct), node `name` with backward bw saving per `save` (as nb__finish), the
 * scalars kept in node->p.d[0..1]. NULL a gives NULL. */
nb_tensor *nb__ew_unary_op(const char *who, nb_op op, const char *name, nb__backward_fn bw, unsigned save,
                           nb_tensor *a, nb_dtype ct, double s0, double s1);
/* The dtype of clamp(a, min, max); NAN bounds take no part. */
nb_dtype nb__clamp_type(const nb_tensor *a, double min, double max);
/* @@OPS_ELEMENTWISE@@ */
/* @@OPS_REDUCE@@ */
/* @@OPS_INDEX@@ */
/* softmax.c: the backward ops of softmax / log_softmax along dim (recorded, differentiable). */
nb_tensor *nb__softmax_backward(nb_tensor *g, nb_tensor *y, int dim);
nb_tensor *nb__log_softmax_backward(nb_tensor *g, nb_tensor *y, int dim);
/* @@OPS_LOSS@@ */
/* @@OPS_CONV@@ */
/* @@OPS_NORM@@ */

/* 0 when every input that needs a gradient got one, else the error code. */
int nb__grads_ok(const nb__node *n, nb_tensor *const *gin);

#endif
