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
#define NB_OP_LIST_ELEMENTWISE(X)
#define NB_OP_LIST_REDUCE(X)
#define NB_OP_LIST_INDEX(X)
#define NB_OP_LIST_LOSS(X)
#define NB_OP_LIST_CONV(X)
#define NB_OP_LIST_NORM(X)
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
NB_API const char *nb_op_name(nb_op op);

#ifdef __cplusplus
}
#endif
#endif
