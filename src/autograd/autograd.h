/* autograd.h — the autograd layer's internal interface: per-tensor autograd
 * state, backward nodes and their edges, saved tensors, and the engine.
 *
 * The graph: a non-leaf tensor points (strongly) to the node that made it;
 * a node points (strongly) to the nodes of its inputs and to the leaf tensors
 * among its inputs that require grad. Nodes never hold their own output
 * strongly: a saved output is kept as a detached alias and re-attached to the
 * node only while a create_graph backward unpacks it. Every node has exactly
 * one output. Node sequence numbers grow with creation, so every edge goes
 * from a higher to a lower number: descending order is a topological order.
 */
#ifndef NB_AUTOGRAD_INTERNAL_H
#define NB_AUTOGRAD_INTERNAL_H

#include "runtime/runtime.h"

typedef struct nb__node nb__node;

typedef struct nb__hook {
    nb_hook_fn fn;            /* user callback */
    void *user;               /* its argument */
    struct nb__hook *next;    /* registration order */
} nb__hook;

struct nb__ag_meta {
    bool requires_grad;       /* leaf flag, or set because an input required grad */
    bool retains_grad;        /* non-leaf keeps .grad */
    nb_tensor *grad;          /* accumulated gradient (owned) */
    nb__node *grad_fn;        /* the node that made this tensor (owned), NULL for leaves */
    nb__hook *hooks;          /* leaf hooks (non-leaf hooks live on the node) */
    unsigned epoch;           /* backward run that `pending` belongs to */
    nb_tensor *pending;       /* leaf: gradient summed during that run (owned) */
};

typedef struct nb__edge {
    nb__node *node;           /* producer's node (owned), or NULL */
    nb_tensor *leaf;          /* a leaf that requires grad (owned), or NULL */
} nb__edge;

typedef struct nb__saved {
    nb_tensor *t;             /* owned; for an output: a detached alias */
    uint64_t version;         /* storage version when saved */
    bool is_output;           /* re-attach to the node when unpacked with grad mode on */
} nb__saved;

/* Fills gin[i] (new references, or NULL) for each input i given the gradient
 * of the output; returns 0 or NB_E*. Runs inside a scope the engine owns. */
typedef int (*nb__backward_fn)(nb__node *n, nb_tensor *gout, nb_tensor **gin);

#define NB__MAX_SAVED_INLINE 3

struct nb__node {
    atomic_int refcount;          /* owners: output tensors, consumer nodes, the engine */
    const char *name;             /* "MulBackward" */
    const char *op;               /* forward op: "nb_mul" */
    uint64_t seq;                 /* creation order */
    nb__backward_fn backward;     /* the formula */
    int nin;                      /* forward inputs = gradients produced */
    nb__edge *edges;              /* nin edges (points into inline storage or heap) */
    int nsaved;                   /* saved tensors */
    nb__saved *saved;             /* nsaved entries: saved_inline or the heap */
    nb__saved saved_inline[NB__MAX_SAVED_INLINE]; /* room for the usual few */
    bool had_saved;               /* saved tensors existed (for the second-backward error) */
    bool freed;                   /* saved tensors released after a backward */
    nb__hook *hooks;              /* hooks on the output's gradient */
    nb_tensor *retain;            /* weak: output tensor that asked retain_grad */
    union {                       /* op parameters */
        double d[4];
        int64_t i[2 * NB_MAX_DIMS + 2];
    } p;
    nb_dims shape[2];             /* input shapes where the backward needs them */
    void *ctx;                    /* custom function context (owned) */
    void (*ctx_free)(void *ctx);  /* frees ctx */
    /* per-backward scratch, valid only while the engine runs */
    unsigned epoch;               /* which run the fields below belong to */
    nb_tensor *buf;               /* gradient of the output, summed (owned) */
    bool needed;                  /* on a path to a wanted gradient */
    int capture;                  /* index+1 into the captured inputs, or 0 */
};

/* ---- tensors ---- */
nb__ag_meta *nb__meta(nb_tensor *t);          /* creates on demand; NULL on OOM */
static inline bool nb__requires_grad(const nb_tensor *t) { return t && t->ag && t->ag->requires_grad; }
static inline nb__node *nb__grad_fn(const nb_tensor *t) { return t && t->ag ? t->ag->grad_fn : NULL; }
bool nb__grad_mode(void);

/* ---- recording ---- */
/* True when the op must record: grad mode on and an input requires grad. */
bool nb__should_record(nb_tensor *const *inputs, int n);
/* Creates a node for `out` made from inputs; sets out's grad_fn and
 * requires_grad. Returns the node (borrowed: out owns it) or NULL on OOM. */
nb__node *nb__record(nb_tensor *out, const char *name, const char *op, nb__backward_fn bw,
                     nb_tensor *const *inputs, int n);
/* Saves t (an input, retained) or out (the op's output, as an alias). */
int nb__save(nb__node *n, nb_tensor *t);
int nb__save_output(nb__node *n, nb_tensor *out);
/* The i-th saved tensor for use in backward (a new reference in the scope),
 * or NULL with an error when freed or modified in place since saved. */
nb_tensor *nb__saved_get(nb__node *n, int i);
static inline bool nb__needs_input_grad(const nb__node *n, int i) {
    return n->edges[i].node || n->edges[i].leaf;
}
void nb__node_release(nb__node *n);
void nb__node_free_saved(nb__node *n);

#endif
