/* nabla/autograd.h — define-by-run automatic differentiation.
 *
 * Semantics are PyTorch's. A leaf tensor with requires_grad set records, as
 * ops run on it, a graph of backward nodes (plain C loops and ifs build it).
 * nb_backward(root, grad) runs the graph from root and accumulates gradients
 * into the .grad of the leaves. Unless retain_graph is asked, the tensors the
 * graph saved are freed as it runs, and a second backward through it is an
 * error. With create_graph the backward itself is recorded, so gradients can
 * be differentiated again.
 */
#ifndef NABLA_AUTOGRAD_H
#define NABLA_AUTOGRAD_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Marks a leaf as needing a gradient (only F32/F64). Returns 0 or NB_E*
 * (NB_EAUTOGRAD for a non-leaf: use nb_detach first). */
NB_API int nb_set_requires_grad(nb_tensor *t, bool requires_grad);
NB_API bool nb_requires_grad(const nb_tensor *t);
NB_API bool nb_is_leaf(const nb_tensor *t);
/* The accumulated gradient (borrowed: valid until the next backward or
 * nb_zero_grad on t), or NULL when none was computed. */
NB_API nb_tensor *nb_grad(const nb_tensor *t);
/* Drops t's gradient (PyTorch's set_to_none). */
NB_API void nb_zero_grad(nb_tensor *t);
/* Replaces t's gradient with g (retained); NULL clears it. */
NB_API int nb_set_grad(nb_tensor *t, nb_tensor *g);
/* Keeps the gradient of a non-leaf in its .grad at the next backward. */
NB_API int nb_retain_grad(nb_tensor *t);
/* The name of the backward node that made t ("MulBackward"), or NULL. */
NB_API const char *nb_grad_fn_name(const nb_tensor *t);

/* A view of t's data that is out of the graph (no grad_fn, no requires_grad). */
NB_API nb_tensor *nb_detach(nb_tensor *t);

/* Grad mode, per thread. Each returns the previous setting. */
NB_API bool nb_set_grad_enabled(bool enabled);
NB_API bool nb_is_grad_enabled(void);
/* Anomaly mode (per process): each backward node's outputs are checked for
 * NaN/Inf; the error names the forward op that made the node. */
NB_API bool nb_set_anomaly_enabled(bool enabled);

typedef struct nb_backward_opts {
    bool retain_graph;   /* keep saved tensors for another backward */
    bool create_graph;   /* record the backward so it can be differentiated */
} nb_backward_opts;

/* Backward from `root`. `grad` may be NULL only for a 1-element root (it is
 * then 1). Returns 0 or NB_E*. On error no leaf's .grad has been touched
 * unless the failure came from inside a backward node. */
NB_API int nb_backward(nb_tensor *root, nb_tensor *grad);
NB_API int nb_backward_ex(nb_tensor *root, nb_tensor *grad, const nb_backward_opts *opts);

/* Gradients of `outputs` with respect to `inputs`, returned in grads_out[i]
 * (new tensors, see Ownership in tensor.h; NULL for an input the outputs do
 * not depend on when allow_unused is set, else that is an error). No .grad is
 * touched. grad_outputs may be NULL (each output must then have 1 element). */
typedef struct nb_grad_opts {
    bool retain_graph;
    bool create_graph;
    bool allow_unused;
} nb_grad_opts;
NB_API int nb_autograd_grad(nb_tensor *const *outputs, int n_outputs,
                            nb_tensor *const *inputs, int n_inputs,
                            nb_tensor *const *grad_outputs,
                            const nb_grad_opts *opts, nb_tensor **grads_out);

/* Tensor hooks: called with the gradient of t when it is computed, before
 * it is used or accumulated (grad is borrowed). Return NULL to keep it, or a
 * tensor of the same shape and dtype made in the hook to replace it (it
 * belongs to the scope nabla opens around the hook, like any op result).
 * Hooks run in registration order. Returns a hook id (>= 0) or NB_E*.
 * Threads: a hook on a non-leaf tensor may run on any thread of nabla's
 * pool while the parallel executor runs (see "Threads" below); a hook on a
 * leaf runs on the thread that called nb_backward. */
typedef nb_tensor *(*nb_hook_fn)(nb_tensor *grad, void *user);
NB_API int nb_register_hook(nb_tensor *t, nb_hook_fn fn, void *user);

/* ---- custom functions ----
 * A user op with its own forward and backward. forward runs with grad mode
 * off and returns a new tensor (owned by the caller: nb_function_apply takes
 * it); it saves what backward needs with nb_ctx_save and may stash plain data
 * in ctx's user area. backward gets the gradient of the output and fills
 * grads[i] for each input i (NULL where an input needs none), of the
 * input's shape and dtype, made with nabla ops (they belong to the scope
 * nabla opens around the call); it returns 0 or NB_E*. The backward runs on whatever
 * thread runs the backward pass, in grad mode when create_graph is set. */
/* Threads: with the parallel backward executor (NB_BACKWARD=parallel, the
 * default when the pool has more than one thread) a custom backward, like a
 * hook on a non-leaf tensor, may run on any thread of nabla's pool (with
 * OpenMP: a thread of the calling thread's OpenMP team, NB_POOL=team, the
 * default; with NB_POOL=threads or without OpenMP, a pool worker), at the
 * same time as other nodes' backwards; while other nodes run, the nabla ops it
 * calls run their kernels on its thread alone. It gets the caller's grad mode and a
 * scope of its own, but not the caller's other thread-local state (its
 * nb_last_error, its open scopes); data it shares with other callbacks needs
 * its own locking. A failing backward's code and message are passed to the
 * thread that called nb_backward. Hooks on leaves run on that thread.
 * Gradients are bitwise the same with either executor at any thread count
 * because the nabla ops a backward calls run thread-count-invariant kernels
 * there (nb_kernel_thread_invariant, registry.h); a custom backward that
 * splits its own loops over threads keeps that only if its split does not
 * depend on the thread count. */
typedef struct nb_ctx nb_ctx;
typedef nb_tensor *(*nb_forward_fn)(nb_ctx *ctx, nb_tensor *const *inputs, int n);
typedef int (*nb_backward_fn)(nb_ctx *ctx, nb_tensor *grad_output, nb_tensor **grads);
typedef struct nb_function {
    const char *name;          /* node name, e.g. "CubeBackward" */
    nb_forward_fn forward;
    nb_backward_fn backward;
} nb_function;
NB_API nb_tensor *nb_function_apply(const nb_function *fn, nb_tensor *const *inputs, int n);
NB_API int nb_ctx_save(nb_ctx *ctx, nb_tensor *t);   /* retained by the graph */
/* The i-th saved tensor (borrowed), or NULL with an error when it was freed
 * (second backward) or changed in place since it was saved. */
NB_API nb_tensor *nb_ctx_saved(nb_ctx *ctx, int i);
NB_API bool nb_ctx_needs_grad(const nb_ctx *ctx, int input);
/* 256 bytes of user storage, zeroed, living as long as the node. */
NB_API void *nb_ctx_data(nb_ctx *ctx);
#define NB_CTX_DATA_BYTES 256

/* ---- gradient checks ----
 * fn maps inputs to one output tensor (any shape); the check compares the
 * analytic Jacobian from backward with central differences. Inputs must be
 * F64 leaves; those with requires_grad are checked. Defaults (opts NULL or
 * zero fields): PyTorch's eps 1e-6, atol 1e-5, rtol 1e-3. Returns 0 when every
 * element agrees, NB_ENUMERIC with the worst element in the message (and in
 * report, when given) otherwise. */
typedef nb_tensor *(*nb_gradcheck_fn)(nb_tensor *const *inputs, int n, void *user);
typedef struct nb_gradcheck_opts {
    double eps, atol, rtol;
    void *user;          /* passed to fn */
} nb_gradcheck_opts;
typedef struct nb_gradcheck_report {
    int input;           /* which input held the worst element */
    int64_t out_index;   /* flat output index */
    int64_t in_index;    /* flat input index */
    double analytic, numeric;
    double max_abs_err;
} nb_gradcheck_report;
NB_API int nb_gradcheck(nb_gradcheck_fn fn, nb_tensor *const *inputs, int n,
                        const nb_gradcheck_opts *opts, nb_gradcheck_report *report);
/* Checks the gradient of the gradient: the first derivative is computed with
 * create_graph, contracted with a fixed random grad_output, and gradchecked. */
NB_API int nb_gradgradcheck(nb_gradcheck_fn fn, nb_tensor *const *inputs, int n,
                            const nb_gradcheck_opts *opts, nb_gradcheck_report *report);

#ifdef __cplusplus
}
#endif
#endif
