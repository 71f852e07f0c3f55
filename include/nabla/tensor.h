/* nabla/tensor.h — tensors, creation, views, ownership and scopes.
 *
 * A tensor is a dtype, up to NB_MAX_DIMS dims, strides in elements, an offset
 * and a shared, reference-counted, 64-byte-aligned storage. Views share the
 * storage; in-place changes through any view bump the storage's version.
 *
 * Ownership: every tensor a function returns belongs to the innermost open
 * scope of the calling thread (nb_scope_begin/nb_scope_end), which releases it
 * at nb_scope_end. With no scope open, the caller owns the returned reference
 * and gives it back with nb_release. nb_keep(t) hands t to the enclosing scope
 * (or, at the outermost scope, to the caller). Inputs are borrowed: no function
 * takes ownership of a tensor passed to it. A NULL input gives a NULL output,
 * with the error of whatever failed first still readable by nb_last_error().
 */
#ifndef NABLA_TENSOR_H
#define NABLA_TENSOR_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NB_MAX_DIMS 8

typedef enum nb_dtype {
    NB_DTYPE_F32,   /* float: the default for parameters and activations */
    NB_DTYPE_F64,   /* double: gradcheck and precision */
    NB_DTYPE_I64,   /* int64_t: indices, labels */
    NB_DTYPE_BOOL,  /* bool (1 byte): masks */
    NB_DTYPE_COUNT
} nb_dtype;
#define NB_F32 NB_DTYPE_F32
#define NB_F64 NB_DTYPE_F64
#define NB_I64 NB_DTYPE_I64
#define NB_BOOL NB_DTYPE_BOOL

NB_API const char *nb_dtype_name(nb_dtype dt);   /* "f32", ... */
NB_API size_t nb_dtype_size(nb_dtype dt);        /* bytes per element */

/* A shape by value: NB_SHAPE(2, 3) is a shape literal; NB_SHAPE0 is the shape
 * of a scalar (0 dims). */
typedef struct nb_dims {
    int ndim;                    /* 0..NB_MAX_DIMS */
    int64_t d[NB_MAX_DIMS];      /* sizes; d[ndim..] unused */
} nb_dims;
#define NB__NARGS64(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define NB_SHAPE(...) ((nb_dims){.ndim = NB__NARGS64(__VA_ARGS__), .d = {__VA_ARGS__}})
#define NB_SHAPE0 ((nb_dims){.ndim = 0, .d = {0}})
/* Builds a shape from an array; ndim outside 0..NB_MAX_DIMS gives ndim -1,
 * which every creation function rejects. */
NB_API nb_dims nb_dims_of(int ndim, const int64_t *sizes);

typedef struct nb_tensor nb_tensor;

/* ---- creation: each returns a new tensor (see Ownership) or NULL ---- */
NB_API nb_tensor *nb_empty(nb_dims shape, nb_dtype dt);
NB_API nb_tensor *nb_zeros(nb_dims shape, nb_dtype dt);
NB_API nb_tensor *nb_ones(nb_dims shape, nb_dtype dt);
NB_API nb_tensor *nb_full(nb_dims shape, nb_dtype dt, double value);
/* 1-D [start, stop) by step (PyTorch's arange); F32/F64/I64. */
NB_API nb_tensor *nb_arange(double start, double stop, double step, nb_dtype dt);
/* Uniform [0, 1) and standard normal from a counter-based generator
 * (Philox4x32-10) keyed by `seed`: element i's value depends only on
 * (seed, i), never on the number of threads. F32 or F64. */
NB_API nb_tensor *nb_rand(nb_dims shape, nb_dtype dt, uint64_t seed);
NB_API nb_tensor *nb_randn(nb_dims shape, nb_dtype dt, uint64_t seed);
/* Copies numel * dtype_size bytes from `data` (C order). */
NB_API nb_tensor *nb_from_data(nb_dims shape, nb_dtype dt, const void *data);
/* A 0-dim F32 tensor holding v (PyTorch's torch.tensor(v)). */
NB_API nb_tensor *nb_scalar(double v);
NB_API nb_tensor *nb_scalar_dtype(double v, nb_dtype dt);

/* ---- inspection: borrowed pointers valid while t lives ---- */
NB_API int64_t nb_numel(const nb_tensor *t);        /* -1 for NULL */
NB_API int nb_ndim(const nb_tensor *t);             /* -1 for NULL */
NB_API const int64_t *nb_shape(const nb_tensor *t); /* ndim sizes; NULL for NULL */
NB_API const int64_t *nb_strides(const nb_tensor *t); /* in elements */
NB_API int64_t nb_size(const nb_tensor *t, int dim); /* negative dim counts from the end; -1 on error */
NB_API nb_dims nb_dims_get(const nb_tensor *t);
NB_API nb_dtype nb_dtype_of(const nb_tensor *t);    /* NB_DTYPE_COUNT for NULL */
#define nb_dtype(t) nb_dtype_of(t)
NB_API bool nb_is_contiguous(const nb_tensor *t);
/* A 4-D (N, C, H, W) tensor stored channels-last (NHWC): strides
 * (H*W*C, 1, W*C, C), size-1 dims aside (PyTorch's
 * t.is_contiguous(memory_format=torch.channels_last)). */
NB_API bool nb_is_channels_last(const nb_tensor *t);
/* Address of element [0,...,0] (offset applied). For kernels and I/O; writing
 * through it does not bump the version counter (use nb_bump_version). */
NB_API void *nb_data(const nb_tensor *t);
NB_API void nb_bump_version(nb_tensor *t);
NB_API uint64_t nb_version(const nb_tensor *t);
/* The single element of a 1-element tensor as double; NaN and an error if
 * t is NULL or has more than one element. */
NB_API double nb_item(const nb_tensor *t);
/* Copies the elements in C order into dst (bytes >= numel * dtype size).
 * Returns 0 or NB_E*; dst is unchanged on failure. */
NB_API int nb_copy_to(const nb_tensor *t, void *dst, size_t bytes);
/* Element at a multi-index, as double (tests and debugging). */
NB_API double nb_get(const nb_tensor *t, const int64_t *index);

/* PyTorch-style repr: tensor([[1.0000, 2.0000]], requires_grad=True). Large
 * tensors (over 1000 elements) are summarized with "...". nb_print writes to
 * stdout with a newline; nb_fprint to a stream; nb_format into buf (returns
 * the length it needed, like snprintf). */
NB_API void nb_print(const nb_tensor *t);
NB_API void nb_fprint(FILE *f, const nb_tensor *t);
NB_API int nb_format(char *buf, size_t cap, const nb_tensor *t);

/* ---- ownership ---- */
NB_API nb_tensor *nb_retain(nb_tensor *t);   /* +1; returns t; NULL ok */
NB_API void nb_release(nb_tensor *t);        /* -1; frees at 0; NULL ok */
NB_API nb_tensor *nb_keep(nb_tensor *t);     /* hand t to the enclosing scope */
NB_API void nb_scope_begin(void);
NB_API void nb_scope_end(void);              /* no-op when no scope is open */
NB_API int nb_scope_depth(void);

/* ---- views: share storage with the input ---- */
/* reshape: a view when the strides allow, else a copy; one size may be -1. */
NB_API nb_tensor *nb_reshape(nb_tensor *t, nb_dims shape);
NB_API nb_tensor *nb_view(nb_tensor *t, nb_dims shape);  /* view or error */
NB_API nb_tensor *nb_transpose(nb_tensor *t, int dim0, int dim1);
NB_API nb_tensor *nb_permute(nb_tensor *t, const int *dims, int ndims);
/* Elements start, start+step, ... < stop along dim (negative start/stop count
 * from the end and are clamped, as Python slicing; step >= 1). */
NB_API nb_tensor *nb_slice(nb_tensor *t, int dim, int64_t start, int64_t stop, int64_t step);
/* Broadcast size-1 dims to `shape` (-1 keeps a size); new leading dims allowed. */
NB_API nb_tensor *nb_expand(nb_tensor *t, nb_dims shape);
NB_API nb_tensor *nb_squeeze(nb_tensor *t, int dim);   /* dim must have size 1 */
NB_API nb_tensor *nb_unsqueeze(nb_tensor *t, int dim);
/* Returns t itself (retained, in the scope) when already contiguous. */
NB_API nb_tensor *nb_contiguous(nb_tensor *t);
/* The same 4-D (N, C, H, W) values stored channels-last (a copy; t itself,
 * retained, when it is already), as PyTorch's
 * t.to(memory_format=torch.channels_last). Convolutions given a
 * channels-last input write a channels-last output (and their input
 * gradient follows the output gradient's layout), so oneDNN runs on the
 * tensors' own memory with no reorders; see README "Channels-last". */
NB_API nb_tensor *nb_to_channels_last(nb_tensor *t);
NB_API nb_tensor *nb_clone(nb_tensor *t);
/* Converts to dt (a copy; t itself, retained, when dt is already t's). */
NB_API nb_tensor *nb_to_dtype(nb_tensor *t, nb_dtype dt);

#ifdef __cplusplus
}
#endif
#endif
