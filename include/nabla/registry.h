/* nabla/registry.h — the op registry: which kernel serves each op.
 *
 * One list (NB_OP_LIST) makes the op enum, the op names and the dispatch
 * table. Each op has kernels registered for (op, dtype, ISA) with a name and a
 * priority; a call goes to the highest-priority kernel the CPU (and NB_ISA)
 * allows, and a kernel may decline a call it cannot serve (layout, size), in
 * which case the next one is tried. Every op has a portable `ref` kernel for
 * F32 and F64.
 *
 * Adding a kernel of your own for an existing op:
 *
 *     static int my_exp(const nb_kernel_args *a) {
 *         if (!nb_is_contiguous(a->out) || !nb_is_contiguous(a->in[0]))
 *             return NB_KERNEL_DECLINE;            // let the next one serve it
 *         float *y = nb_data(a->out); const float *x = nb_data(a->in[0]);
 *         for (int64_t i = 0; i < nb_numel(a->out); i++) y[i] = expf(x[i]);
 *         return 0;
 *     }
 *     nb_kernel_desc k = { NB_OP_EXP, NB_F32, NB_ISA_REF, "my_exp", 100, my_exp };
 *     nb_register_kernel(&k);
 *
 * Threads and determinism: a kernel may use OpenMP (omp_get_max_threads()
 * is its share). The parallel backward executor gives the serial one's bits
 * only if the kernels run inside a backward give the same bits whatever
 * their thread count: while nb_kernel_thread_invariant() is true, a kernel
 * whose result depends on how it splits the work over threads (a reduction
 * split by thread, say) must decline, or split by a rule that does not
 * depend on the thread count.
 */
#ifndef NABLA_REGISTRY_H
#define NABLA_REGISTRY_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM, "name", n_inputs). What each kernel receives:
 *   element-wise: out and inputs of one shape (inputs broadcast with stride 0);
 *   COPY: out (any dtype) <- in[0] of out's shape;  FILL: out <- scalar[0];
 *   *_SCALAR: out <- f(in[0], scalar[0]);
 *   SUM: in[0] (d0..dn) -> out of the same rank, size 1 on reduced dims;
 *   MATMUL: out (..., M, N) <- in[0] (..., M, K) @ in[1] (..., K, N), batch
 *           dims equal (broadcast with stride 0). */
#define NB_OP_LIST(X)                  \
    X(FILL, "fill", 0)                 \
    X(COPY, "copy", 1)                 \
    X(ADD, "add", 2)                   \
    X(SUB, "sub", 2)                   \
    X(MUL, "mul", 2)                   \
    X(DIV, "div", 2)                   \
    X(POW, "pow", 2)                   \
    X(NEG, "neg", 1)                   \
    X(EXP, "exp", 1)                   \
    X(LOG, "log", 1)                   \
    X(TANH, "tanh", 1)                 \
    X(ADD_SCALAR, "add_scalar", 1)     \
    X(MUL_SCALAR, "mul_scalar", 1)     \
    X(POW_SCALAR, "pow_scalar", 1)     \
    X(SUM, "sum", 1)                   \
    X(MATMUL, "matmul", 2)             \
    NB_OP_LIST_ELEMENTWISE(X)          \
    NB_OP_LIST_REDUCE(X)               \
    NB_OP_LIST_INDEX(X)                \
    NB_OP_LIST_LOSS(X)                 \
    NB_OP_LIST_CONV(X)                 \
    NB_OP_LIST_NORM(X)                 \
    NB_OP_LIST_OPTIM(X)

/* The op set by area, each list kept next to its own kind of ops. */
/* ELEMENTWISE kernels' arguments (in[] order, scalar[] meaning) are listed at the top of
 * src/kernels/ref/ref_math.c and ref_compare.c; inputs arrive in the computation dtype. */
#define NB_OP_LIST_ELEMENTWISE(X)                                                                   \
    X(SQRT, "sqrt", 1) X(RSQRT, "rsqrt", 1) X(ABS, "abs", 1) X(SIGN, "sign", 1) X(SIN, "sin", 1)    \
    X(COS, "cos", 1) X(ERF, "erf", 1) X(RECIPROCAL, "reciprocal", 1) X(SQUARE, "square", 1)         \
    X(CLAMP, "clamp", 1) X(MAXIMUM, "maximum", 2) X(MINIMUM, "minimum", 2) X(SIGMOID, "sigmoid", 1) \
    X(RELU, "relu", 1) X(LEAKY_RELU, "leaky_relu", 1) X(ELU, "elu", 1) X(GELU, "gelu", 1)           \
    X(SILU, "silu", 1) X(SOFTPLUS, "softplus", 1) X(EQ, "eq", 2) X(NE, "ne", 2) X(LT, "lt", 2)      \
    X(LE, "le", 2) X(GT, "gt", 2) X(GE, "ge", 2) X(EQ_SCALAR, "eq_scalar", 1)                       \
    X(NE_SCALAR, "ne_scalar", 1) X(LT_SCALAR, "lt_scalar", 1) X(LE_SCALAR, "le_scalar", 1)          \
    X(GT_SCALAR, "gt_scalar", 1) X(GE_SCALAR, "ge_scalar", 1) X(LOGICAL_NOT, "logical_not", 1)      \
    X(LOGICAL_AND, "logical_and", 2) X(LOGICAL_OR, "logical_or", 2) X(WHERE, "where", 3)            \
    X(MASKED_FILL, "masked_fill", 2) X(THRESHOLD_BACKWARD, "threshold_backward", 2)                 \
    X(TANH_BACKWARD, "tanh_backward", 2) X(SIGMOID_BACKWARD, "sigmoid_backward", 2)                 \
    X(GELU_BACKWARD, "gelu_backward", 2)
/* Activation backwards in one pass, in[0] the gradient g, in[1] the saved output y (out T):
 * THRESHOLD_BACKWARD (relu): in[1] <= scalar[0] ? 0 : g (a NaN y passes g, as PyTorch's);
 * TANH_BACKWARD: g * (1 - y*y); SIGMOID_BACKWARD: g * (y * (1 - y)), each rounded op by op;
 * GELU_BACKWARD: in[1] the saved input x: g * gelu'(x), scalar[0] 0 the erf form
 * (Φ(x) + x φ(x)), else the tanh form. */
/* REDUCE kernels: in[0] (d0..dn) -> out of the same rank, size 1 on reduced dims (scalar[0]: the
 * correction of VAR/STD, p of VECTOR_NORM); *_BACKWARD: out of in[0]'s shape, scalar[0] the mask of
 * reduced dims (see src/kernels/ref/ref_reduce_full.c). */
#define NB_OP_LIST_REDUCE(X)                                                                        \
    X(PROD, "prod", 1) X(AMAX, "amax", 1) X(AMIN, "amin", 1) X(ARGMAX, "argmax", 1)                 \
    X(ARGMIN, "argmin", 1) X(VAR, "var", 1) X(STD, "std", 1) X(LOGSUMEXP, "logsumexp", 1)           \
    X(VECTOR_NORM, "vector_norm", 1) X(PROD_BACKWARD, "prod_backward", 1)                           \
    X(PROD_DOUBLE_BACKWARD, "prod_double_backward", 2) X(AMAX_BACKWARD, "amax_backward", 2)         \
    X(MAX_DIM_BACKWARD, "max_dim_backward", 2) X(VECTOR_NORM_BACKWARD, "vector_norm_backward", 2)
/* INDEX kernels' arguments are listed at the top of src/kernels/ref/ref_index.c. */
#define NB_OP_LIST_INDEX(X)                                                                        \
    X(CAT, "cat", 1) X(STACK, "stack", 1) X(INDEX_SELECT, "index_select", 2) X(GATHER, "gather", 2) \
    X(SCATTER_ADD, "scatter_add", 3) X(INDEX_ADD, "index_add", 3) X(EMBEDDING, "embedding", 2)      \
    X(REPEAT, "repeat", 1) X(FLIP, "flip", 1) X(TRIL, "tril", 1) X(TRIU, "triu", 1)                 \
    X(ONE_HOT, "one_hot", 1) X(PAD, "pad", 2)
/* LOSS kernels' arguments are described above each kernel in src/kernels/ref/ref_loss.c and ref_softmax.c. */
#define NB_OP_LIST_LOSS(X)                                                                            \
    X(LINEAR, "linear", 3) X(SOFTMAX, "softmax", 1) X(LOG_SOFTMAX, "log_softmax", 1)                   \
    X(SOFTMAX_BACKWARD, "softmax_backward", 2) X(LOG_SOFTMAX_BACKWARD, "log_softmax_backward", 2)     \
    X(CROSS_ENTROPY, "cross_entropy", 3) X(CROSS_ENTROPY_BACKWARD, "cross_entropy_backward", 4)       \
    X(NLL_LOSS, "nll_loss", 3) X(NLL_LOSS_BACKWARD, "nll_loss_backward", 3)                            \
    X(MSE_LOSS, "mse_loss", 2) X(L1_LOSS, "l1_loss", 2) X(L1_LOSS_BACKWARD, "l1_loss_backward", 3)     \
    X(SMOOTH_L1_LOSS, "smooth_l1_loss", 2) X(SMOOTH_L1_LOSS_BACKWARD, "smooth_l1_loss_backward", 3)   \
    X(BCE_WITH_LOGITS, "bce_with_logits", 4) X(BCE_WITH_LOGITS_BACKWARD, "bce_with_logits_backward", 4) \
    X(DROPOUT, "dropout", 2)
/* CONV kernels' arguments (scalar[] geometry, 3-D/4-D layouts) are listed at the top of
 * src/kernels/ref/ref_conv.c, ref_pool.c and ref_interpolate.c.
 * CONV_BWD_WEIGHT_BIAS: both parameter gradients from one pass over gy: out (Co, Ci/groups *
 * kH * kW + 1) holds per output channel its weight gradient (row-major) then its bias gradient
 * <- in {x, gy}; scalar = the geometry, then scalar[7] = kH (1 for a 1-D conv). Only kernels
 * that read gy once serve it; the conv op otherwise runs CONV_BWD_WEIGHT and CONV_BWD_BIAS. */
#define NB_OP_LIST_CONV(X)                                                                          \
    X(CONV1D, "conv1d", 3) X(CONV2D, "conv2d", 3) X(CONV_TRANSPOSE2D, "conv_transpose2d", 3)          \
    X(CONV_BWD_DATA, "conv_bwd_data", 2) X(CONV_BWD_WEIGHT, "conv_bwd_weight", 2)                    \
    X(CONV_BWD_BIAS, "conv_bwd_bias", 1) X(CONV_BWD_WEIGHT_BIAS, "conv_bwd_weight_bias", 2)           \
    X(MAX_POOL2D, "max_pool2d", 2)                                                                  \
    X(MAX_POOL2D_BWD, "max_pool2d_bwd", 2) X(MAX_POOL2D_GATHER, "max_pool2d_gather", 2)              \
    X(AVG_POOL2D, "avg_pool2d", 1) X(AVG_POOL2D_BWD, "avg_pool2d_bwd", 1)                            \
    X(ADAPTIVE_AVG_POOL2D, "adaptive_avg_pool2d", 1) X(ADAPTIVE_AVG_POOL2D_BWD, "adaptive_avg_pool2d_bwd", 1) \
    X(INTERPOLATE, "interpolate", 1) X(INTERPOLATE_BWD, "interpolate_bwd", 1)
/* NORM kernels' arguments are listed at the top of src/kernels/ref/ref_norm.c and ref_attention.c. */
/* LAYER_NORM_PARAM_BACKWARD: out (2, n) = (dweight; dbias) of layer_norm <- in {dy, x}, n = prod of
 * x's last k dims; scalar {k, eps[, rms]}: dweight = sum over rows of dy * x̂, dbias = sum of dy;
 * scalar[2] != 0: rms_norm's x̂ (no mean subtracted).
 * BATCH_NORM_PARAM_BACKWARD: out (2, C) = (dweight; dbias) of batch_norm <- in {dy, x (N, C, *),
 * stats (2, C) (mean; var)}; scalar {eps}: per channel, dweight = sum of dy * x̂, dbias = sum of dy
 * (x̂ = (x - mean) / sqrt(var + eps)). BATCH_NORM_BACKWARD's stats may be (4, C): rows 2 and 3
 * then hold this op's out for the same dy, x and stats, which a kernel may use instead of summing
 * again. */
#define NB_OP_LIST_NORM(X)                                                                          \
    X(BATCH_NORM_STATS, "batch_norm_stats", 1) X(BATCH_NORM, "batch_norm", 4)                        \
    X(BATCH_NORM_BACKWARD, "batch_norm_backward", 4) X(LAYER_NORM, "layer_norm", 3)                  \
    X(LAYER_NORM_BACKWARD, "layer_norm_backward", 3) X(GROUP_NORM, "group_norm", 3)                  \
    X(GROUP_NORM_BACKWARD, "group_norm_backward", 3) X(RMS_NORM, "rms_norm", 2)                      \
    X(RMS_NORM_BACKWARD, "rms_norm_backward", 3) X(SDPA, "scaled_dot_product_attention", 4)          \
    X(SDPA_WEIGHTS, "sdpa_weights", 3) X(LAYER_NORM_PARAM_BACKWARD, "layer_norm_param_backward", 2)   \
    X(BATCH_NORM_PARAM_BACKWARD, "batch_norm_param_backward", 3)
/* Optimizer updates, in place on the parameter and its state:
 *   SGD_STEP:  out = param, in[0] = grad, in[1] = momentum buffer (or none);
 *              scalar = {lr, momentum, dampening, weight_decay, nesterov, maximize, first_step}
 *   ADAM_STEP: out = param, in[0] = grad, in[1] = exp_avg, in[2] = exp_avg_sq,
 *              in[3] = max_exp_avg_sq (amsgrad) or none;
 *              scalar = {lr, beta1, beta2, eps, weight_decay, step, decoupled (AdamW), maximize} */
#define NB_OP_LIST_OPTIM(X) X(SGD_STEP, "sgd_step", 2) X(ADAM_STEP, "adam_step", 4)

typedef enum nb_op {
#define NB__OP_ENUM(e, name, nin) NB_OP_##e,
    NB_OP_LIST(NB__OP_ENUM)
#undef NB__OP_ENUM
    NB_OP_COUNT
} nb_op;

#define NB_KERNEL_MAX_INPUTS 4
/* A kernel's return value to pass the call to the next kernel in line. */
#define NB_KERNEL_DECLINE 1

typedef struct nb_kernel_args {
    nb_op op;                                   /* the op being served */
    nb_tensor *out;                             /* preallocated output */
    const nb_tensor *in[NB_KERNEL_MAX_INPUTS];  /* inputs (borrowed) */
    int nin;                                    /* number of inputs */
    double scalar[8];                           /* scalar parameters */
} nb_kernel_args;

/* Returns 0, NB_KERNEL_DECLINE, or a negative NB_E* code. */
typedef int (*nb_kernel_fn)(const nb_kernel_args *args);

typedef struct nb_kernel_desc {
    nb_op op;            /* which op it serves */
    nb_dtype dtype;      /* dtype of in[0] (of out for FILL) */
    nb_isa isa;          /* the ISA it needs; above the cap it is skipped */
    const char *name;    /* shown by nb_registry_dump and the profiler */
    int priority;        /* higher wins; ref kernels are 0 */
    nb_kernel_fn fn;
} nb_kernel_desc;

/* Adds a kernel (the descriptor is copied, name must outlive nabla).
 * Register from one thread, before ops run on others. Returns 0 or NB_E*. */
NB_API int nb_register_kernel(const nb_kernel_desc *k);
/* Prints op -> chosen kernel and the alternatives, per dtype. */
NB_API void nb_registry_dump(FILE *stream);
/* The name of the kernel that would serve (op, dt) first, or NULL. */
NB_API const char *nb_kernel_chosen(nb_op op, nb_dtype dt);
/* True on a thread while it runs a backward node: kernels must then give
 * the same bits at any thread count (see the top of this file). */
NB_API bool nb_kernel_thread_invariant(void);
NB_API const char *nb_op_name(nb_op op);

#ifdef __cplusplus
}
#endif
#endif
