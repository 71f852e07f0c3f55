/* runtime.h — the runtime layer's internal interface: storage, tensor
 * objects, the allocator, errors, scopes, CPU features and settings.
 *
 * Invariants:
 *  - a tensor's elements live at storage->data + offset*elsize, addressed by
 *    shape/stride (strides in elements, may be 0 for broadcast views);
 *  - storage and tensor objects are reference counted with atomics, so they
 *    may be released from any thread;
 *  - autograd state hangs off `ag` and is owned by the autograd layer, which
 *    installs nb__ag_free to drop it when the tensor dies.
 */
#ifndef NB_RUNTIME_INTERNAL_H
#define NB_RUNTIME_INTERNAL_H

#include <stdatomic.h>
#include <stdarg.h>

#include "nabla.h"

typedef struct nb__storage {
    atomic_long refcount;   /* tensors (views) sharing it */
    atomic_ulong version;   /* bumped by every in-place write */
    void *data;             /* 64-byte aligned, from nb__alloc */
    size_t nbytes;          /* bytes asked for */
} nb__storage;

typedef struct nb__ag_meta nb__ag_meta;   /* defined in autograd.h */

struct nb_tensor {
    atomic_int refcount;        /* owners: scopes, the graph, the user */
    nb_dtype dtype;             /* element type */
    int ndim;                   /* 0..NB_MAX_DIMS */
    int64_t shape[NB_MAX_DIMS]; /* sizes */
    int64_t stride[NB_MAX_DIMS];/* in elements */
    int64_t offset;             /* in elements from storage->data */
    int64_t numel;              /* product of shape */
    nb__storage *storage;       /* shared, refcounted */
    nb__ag_meta *ag;            /* autograd state, NULL when none */
};

/* ---- errors ---- */
/* Records the message (printf-style) for this thread; returns code. */
int nb__err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "[2, 3]" in one of a few rotating per-thread buffers. */
const char *nb__shape_str(const nb_tensor *t);
const char *nb__dims_str(int ndim, const int64_t *d);
#define NB_ASSERT(c)                                                            \
    do {                                                                        \
        if (!(c)) nb__assert_fail(__FILE__, __LINE__, #c);                      \
    } while (0)
_Noreturn void nb__assert_fail(const char *file, int line, const char *cond);

/* ---- allocator: 64-byte aligned, size-class cache ---- */
void *nb__alloc(size_t nbytes);   /* NULL (and an error) when out of memory */
void nb__free(void *p, size_t nbytes);
void nb__alloc_trim(void);
/* Small fixed-size objects (tensor structs, nodes...) from a per-thread
 * cache; free with the same size. */
void *nb__obj_alloc(size_t nbytes);
void nb__obj_free(void *p, size_t nbytes);
void nb__tensor_count(int delta);

/* ---- tensors ---- */
/* A new contiguous tensor with fresh storage (+1 ref, in no scope); NULL with
 * an error for bad shapes, overflow or no memory. `who` names the public
 * function for the message. */
nb_tensor *nb__new(const char *who, nb_dtype dt, int ndim, const int64_t *shape);
/* nb__new, laid out channels-last when channels_last and ndim is 4: shape
 * (N, C, H, W) with strides (H*W*C, 1, W*C, C), as PyTorch's
 * torch.channels_last. */
nb_tensor *nb__new_layout(const char *who, nb_dtype dt, int ndim, const int64_t *shape, bool channels_last);
/* t is channels-last and not also contiguous (PyTorch's
 * suggest_memory_format): the layout an op's output should follow. A
 * contiguous (N, 1, H, W) is both, and counts as contiguous. */
bool nb__suggests_channels_last(const nb_tensor *t);
/* A copy of the 4-D t laid out channels-last (differentiable, as nb_clone). */
nb_tensor *nb__clone_channels_last(nb_tensor *t);
/* A new tensor object sharing t's storage with the given geometry (+1). */
nb_tensor *nb__alias(const nb_tensor *t, int ndim, const int64_t *shape,
                     const int64_t *stride, int64_t offset);
void nb__contig_strides(int ndim, const int64_t *shape, int64_t *stride);
bool nb__same_shape(const nb_tensor *a, const nb_tensor *b);
int nb__check_dims(const char *who, int ndim, const int64_t *shape);
/* Normalises a possibly negative dim; -1 with an error when out of range. */
int nb__wrap_dim(const char *who, int dim, int ndim);
/* Hands a +1 reference to the innermost scope (or the caller); returns t. */
nb_tensor *nb__scoped(nb_tensor *t);
double nb__load(const void *p, nb_dtype dt);      /* one element as double */
void nb__store(void *p, nb_dtype dt, double v);

/* Set by the autograd layer: frees a tensor's autograd state. Atomic because
 * backward nodes record graph (create_graph) on pool threads too. */
typedef void (*nb__ag_free_fn)(nb_tensor *t);
extern _Atomic nb__ag_free_fn nb__ag_free;

/* ---- settings, CPU ---- */
typedef struct nb__settings {
    bool initialised;       /* nb_init ran */
    int num_threads;        /* kernel threads */
    nb_isa isa_cap;         /* min(CPU best, NB_ISA) */
    bool abort_on_error;    /* NB_ABORT_ON_ERROR */
    unsigned generation;    /* bumped by each nb_init: the registry re-chooses */
} nb__settings;
extern nb__settings nb__cfg;
void nb__cpu_detect(nb_cpu_features *f);
static inline void nb__ensure_init(void) {
    if (__builtin_expect(!nb__cfg.initialised, 0)) nb_init(NULL);
}

/* ---- Philox4x32-10 counter-based generator ---- */
void nb__philox(uint64_t seed, uint64_t counter, uint32_t out[4]);
/* The full-width form: four counter words, two key words (test vectors). */
void nb__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

#endif
