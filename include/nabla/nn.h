/* nabla/nn.h — modules: layers with named parameters and buffers, child
 * modules, a forward function and a train/eval flag (torch.nn.Module), the
 * built-in layers, and parameter initialization.
 *
 * A module owns its parameters, buffers and children; nb_module_free frees
 * the whole tree. Parameters are leaf tensors that require grad; they live
 * outside any scope. Names are dotted like PyTorch's: a Sequential's
 * children are "0", "1", ..., so the first layer's weight is "0.weight", and
 * a child "layers" holding a Sequential gives "layers.0.weight".
 *
 * Writing your own module (examples/custom_module.c):
 *
 *     typedef struct { double scale; } my_state;
 *     static nb_tensor *my_forward(nb_module *m, nb_tensor *x) {
 *         my_state *s = nb_module_state(m);
 *         nb_tensor *h = nb_module_forward(nb_module_child(m, "fc"), x);
 *         return nb_mul_scalar(nb_relu(h), s->scale);
 *     }
 *     nb_module *m = nb_module_new("MyBlock", my_forward, sizeof(my_state));
 *     ((my_state *)nb_module_state(m))->scale = 0.5;
 *     nb_module_add_child(m, "fc", nb_linear_module(784, 128, true, 42));
 */
#ifndef NABLA_NN_H
#define NABLA_NN_H

#include "functional.h"
#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_module nb_module;
/* Computes the module's output for x; returns a new tensor like any op. */
typedef nb_tensor *(*nb_forward_module_fn)(nb_module *self, nb_tensor *x);

/* ---- building modules ---- */
/* A new empty module of a type name ("Linear", "MyBlock") with a forward
 * function and state_bytes of zeroed user state (nb_module_state). NULL on
 * failure. Free with nb_module_free. */
NB_API nb_module *nb_module_new(const char *type_name, nb_forward_module_fn forward, size_t state_bytes);
NB_API void *nb_module_state(nb_module *m);
NB_API const char *nb_module_type(const nb_module *m);
/* Registers t under name (no dots) as a parameter: retained, set to require
 * grad. t must be a floating-point leaf. Returns 0 or NB_E*. */
NB_API int nb_module_add_parameter(nb_module *m, const char *name, nb_tensor *t);
/* A buffer: state saved with the module but not trained (running stats). */
NB_API int nb_module_add_buffer(nb_module *m, const char *name, nb_tensor *t);
/* Adds child under name; m takes ownership of child (also on failure, when
 * child is freed). Returns child, or NULL. */
NB_API nb_module *nb_module_add_child(nb_module *m, const char *name, nb_module *child);
/* Direct members by name (borrowed), or NULL. */
NB_API nb_tensor *nb_module_param(const nb_module *m, const char *name);
NB_API nb_tensor *nb_module_buffer(const nb_module *m, const char *name);
NB_API nb_module *nb_module_child(const nb_module *m, const char *name);
NB_API int nb_module_num_children(const nb_module *m);
NB_API nb_module *nb_module_child_at(const nb_module *m, int i);
NB_API void nb_module_free(nb_module *m);   /* the whole tree; NULL ok */

/* ---- using modules ---- */
/* Runs m's forward on x (NULL x gives NULL, as ops). */
NB_API nb_tensor *nb_module_forward(nb_module *m, nb_tensor *x);
/* All parameters of the tree, depth first in registration order (as
 * torch's parameters()): writes up to cap pointers (borrowed) into out and
 * returns the total count (call with cap 0 to size the array). */
NB_API int nb_module_parameters(const nb_module *m, nb_tensor **out, int cap);
/* Dotted names -> parameters ("layers.0.weight"), in the same order, added
 * to sd (retained). Returns 0 or NB_E*. */
NB_API int nb_module_named_parameters(const nb_module *m, nb_state_dict *sd);
/* Parameters and buffers, as torch's state_dict(). */
NB_API int nb_module_state_dict(const nb_module *m, nb_state_dict *sd);
/* Copies values from sd into the module's parameters and buffers. Checks
 * every name, shape and dtype first and reports each mismatch in the message
 * (missing keys, unexpected keys when strict, shape/dtype mismatches); on any
 * mismatch nothing is changed. */
NB_API int nb_module_load_state_dict(nb_module *m, const nb_state_dict *sd, bool strict);
/* Convenience: state dict to/from a safetensors file (atomic write). */
NB_API int nb_module_save(const nb_module *m, const char *path);
NB_API int nb_module_load(nb_module *m, const char *path);
NB_API void nb_module_train(nb_module *m, bool train);   /* the whole tree */
NB_API void nb_module_eval(nb_module *m);
NB_API bool nb_module_is_training(const nb_module *m);
NB_API void nb_module_zero_grad(nb_module *m);            /* drops every parameter's grad */
/* Prints the tree like torch's repr: Sequential(\n  (0): Linear(in_features=...)\n ...). */
NB_API void nb_module_print(const nb_module *m, FILE *f);

/* ---- built-in layers (PyTorch's defaults; `seed` seeds the init) ---- */
NB_API nb_module *nb_linear_module(int64_t in_features, int64_t out_features, bool bias, uint64_t seed);
NB_API nb_module *nb_conv2d_module(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                                   const nb_conv_opts *opts, bool bias, uint64_t seed);
NB_API nb_module *nb_maxpool2d_module(int64_t kernel_h, int64_t kernel_w, const nb_pool2d_opts *opts);
NB_API nb_module *nb_avgpool2d_module(int64_t kernel_h, int64_t kernel_w, const nb_pool2d_opts *opts);
/* BatchNorm2d(C): weight 1, bias 0, running_mean 0, running_var 1; momentum 0.1, eps 1e-5. */
NB_API nb_module *nb_batchnorm2d_module(int64_t num_features);
NB_API nb_module *nb_layernorm_module(nb_dims normalized_shape, bool elementwise_affine);
NB_API nb_module *nb_embedding_module(int64_t num_embeddings, int64_t dim, int64_t padding_idx, uint64_t seed);
/* Dropout(p): each forward in training mode draws a new mask from (seed, call count). */
NB_API nb_module *nb_dropout_module(double p, uint64_t seed);
NB_API nb_module *nb_flatten_module(int start_dim, int end_dim);   /* torch default: 1, -1 */
NB_API nb_module *nb_relu_module(void);
NB_API nb_module *nb_gelu_module(void);
NB_API nb_module *nb_silu_module(void);
NB_API nb_module *nb_tanh_module(void);
NB_API nb_module *nb_sigmoid_module(void);
/* Sequential of n modules (takes ownership of each, also on failure). */
NB_API nb_module *nb_sequential(int n, nb_module *const *mods);
/* Appends to a Sequential (takes ownership). Returns m or NULL. */
NB_API nb_module *nb_sequential_append(nb_module *seq, nb_module *m);

/* ---- initialization (in place, no grad; torch.nn.init; seeded) ----
 * fan_in/fan_out as torch: for a weight (out, in, k...) fan_in = in * prod(k). */
NB_API int nb_init_uniform(nb_tensor *t, double a, double b, uint64_t seed);
NB_API int nb_init_normal(nb_tensor *t, double mean, double std, uint64_t seed);
NB_API int nb_init_zeros(nb_tensor *t);
NB_API int nb_init_ones(nb_tensor *t);
NB_API int nb_init_xavier_uniform(nb_tensor *t, double gain, uint64_t seed);
NB_API int nb_init_xavier_normal(nb_tensor *t, double gain, uint64_t seed);
/* Kaiming (He) init with torch's defaults mode fan_in and nonlinearity
 * leaky_relu with slope a (a = 0 is ReLU's gain sqrt(2)). */
NB_API int nb_init_kaiming_uniform(nb_tensor *t, double a, uint64_t seed);
NB_API int nb_init_kaiming_normal(nb_tensor *t, double a, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
