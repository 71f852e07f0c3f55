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

#include "runtime/pool.h"
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
    int pidx;                 /* parallel executor: the leaf's index in its plan */
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
    int pidx;                     /* parallel executor: index in its plan */
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

/* ---- observing the executors (schedule simulator, tests) ----
 * Walking a graph: start at nb__grad_fn(root); a node's inputs are
 * n->edges[0..n->nin): edges[i].node is the producer's node (run after n),
 * edges[i].leaf a leaf that requires grad, both NULL when input i takes no
 * gradient. n->seq orders nodes (every edge goes to a smaller seq).
 *
 * When nb__node_observer is non-NULL, both executors call it after each node
 * they run (hooks, backward and hand-out of its gradients; the parallel
 * executor also sums the node's incoming gradients there), with the
 * monotonic clock (ns) at the node's start and end and the pool worker that
 * ran it (0: the thread that called backward, 1..N-1: pool workers). It may be
 * called from several threads at once; set it while no backward runs. */
extern void (*nb__node_observer)(const nb__node *n, uint64_t t0_ns, uint64_t t1_ns, int worker);
uint64_t nb__now_ns(void);   /* CLOCK_MONOTONIC in ns */

/* ---- executors (engine.c, engine_parallel.c) ----
 * Which one runs: nb__backward (runtime/pool.h), from NB_BACKWARD. */

/* One backward run (engine.c builds it; executors run it). */
typedef struct nb__plan {
    nb__node **nodes;            /* reachable nodes, then sorted by seq descending */
    int n, cap;
    unsigned epoch;              /* stamp of this run */
    bool accumulate;             /* nb_backward: into leaves' .grad */
    bool create_graph, retain_graph;
    bool grad_mode;              /* the caller's grad mode (hooks run under it) */
    nb_tensor *const *inputs;    /* nb_autograd_grad: wanted inputs */
    int n_inputs;
    nb_tensor **captured;        /* their gradients (owned) */
    nb_tensor **leaves;          /* leaves reached, in first-reached order (borrowed) */
    int nleaves, leaves_cap;
    nb_tensor *const *roots;     /* the outputs backward starts from (borrowed) */
    nb_tensor *const *root_grads;/* their gradients, or NULL (borrowed) */
    int nroots;
} nb__plan;

/* Shared steps of both executors (engine.c). */
int nb__add_into(nb_tensor **slot, nb_tensor *g);
int nb__input_index(const nb__plan *p, const nb_tensor *t);
/* Whether n's backward must be called (some input's gradient is wanted). */
bool nb__node_onward(const nb__plan *p, const nb__node *n);
/* Hooks, retain_grad and capture on n given its summed gradient g, then the
 * backward (when onward), filling gin[0..nin) (new references). Runs in the
 * caller's scope; returns 0 or NB_E*. */
int nb__node_prologue(nb__plan *p, nb__node *n, nb_tensor *g, nb_tensor **gout);
int nb__node_call(nb__plan *p, nb__node *n, nb_tensor *g, nb_tensor **gin);
/* Adds g to a leaf's sum for this run (registers the leaf in p->leaves). */
int nb__leaf_add(nb__plan *p, nb_tensor *leaf, nb_tensor *g);
/* Runs leaf hooks and accumulation for the leaves in p->leaves (pending set). */
int nb__finish_leaves(nb__plan *p, int rc);
/* The parallel executor: 0, NB_E*, or 1 when it declines (serial is used). */
int nb__execute_parallel(nb__plan *p);

#endif
