/* engine.c — the backward engine (serial executor).
 *
 * A run: (1) collect the nodes reachable from the roots; (2) mark which are
 * needed (all for nb_backward; for nb_autograd_grad only those on a path to a
 * wanted input); (3) refuse before touching anything if a needed node's saved
 * tensors were freed; (4) execute needed nodes in descending sequence order,
 * which is a topological order because edges always point to older nodes.
 * Gradients arriving at a node are summed in arrival order, which this order
 * fixes. Each node's backward runs in its own scope; what survives (the
 * summed buffers, leaf grads, captured results) is retained explicitly.
 *
 * The executor is a function over the prepared plan: execute_serial here,
 * nb__execute_parallel (engine_parallel.c) on the thread pool. NB_BACKWARD=
 * serial|parallel|force picks (default parallel, which itself falls back to
 * the serial loop with one thread, a graph without fan-out or too little
 * work; force: never falls back, for tests). Roots' gradients
 * are seeded into n->buf / the leaves' pending sums before either executor
 * runs: they come first in every sum, in both. The per-run state lives in
 * the nodes (epoch-stamped): one graph must not be run by two backward calls
 * at once.
 */
#include "autograd/autograd.h"
#include "kernels/kernels.h"
#include "runtime/profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef nb__plan plan;

extern bool nb__anomaly;
static atomic_uint epoch_counter;
void (*nb__node_observer)(const nb__node *n, uint64_t t0_ns, uint64_t t1_ns, int worker);

uint64_t nb__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int push_node(plan *p, nb__node *n) {
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        nb__node **nn = realloc(p->nodes, sizeof *nn * (size_t)nc);
        if (!nn) return nb__err(NB_ENOMEM, "backward: out of memory");
        p->nodes = nn;
        p->cap = nc;
    }
    p->nodes[p->n++] = n;
    n->epoch = p->epoch;
    n->buf = NULL;
    n->needed = p->accumulate;
    n->capture = 0;
    return 0;
}

static int collect(plan *p, nb__node *root) {
    if (!root || root->epoch == p->epoch) return 0;
    int start = p->n;
    if (push_node(p, root)) return NB_ENOMEM;
    for (int k = start; k < p->n; k++) {   /* breadth-first over the growing list */
        nb__node *n = p->nodes[k];
        for (int i = 0; i < n->nin; i++) {
            nb__node *c = n->edges[i].node;
            if (c && c->epoch != p->epoch && push_node(p, c)) return NB_ENOMEM;
        }
    }
    return 0;
}

static int by_seq_desc(const void *a, const void *b) {
    uint64_t x = (*(nb__node *const *)a)->seq, y = (*(nb__node *const *)b)->seq;
    return x < y ? 1 : x > y ? -1 : 0;
}

int nb__input_index(const plan *p, const nb_tensor *t) {
    for (int i = 0; i < p->n_inputs; i++)
        if (p->inputs[i] == t) return i;
    return -1;
}

/* Adds g into *slot (owned). Out of place when the graph is being built. */
int nb__add_into(nb_tensor **slot, nb_tensor *g) {
    if (!*slot) {
        *slot = nb_retain(g);
        return 0;
    }
    /* two gradients of one tensor: same shape and dtype, or a backward is wrong
       (nb_add would broadcast or promote and hide it) */
    if ((*slot)->dtype != g->dtype || !nb__same_shape(*slot, g))
        return nb__err(NB_EAUTOGRAD, "backward: gradients of one tensor disagree: %s (%s) and %s (%s)",
                       nb__shape_str(*slot), nb_dtype_name((*slot)->dtype), nb__shape_str(g), nb_dtype_name(g->dtype));
    nb_tensor *s = nb_add(*slot, g);
    if (!s) return nb_last_error_code();
    nb_retain(s);
    nb_release(*slot);
    *slot = s;
    return 0;
}

static nb_tensor *run_hooks(nb__hook *h, nb_tensor *g) {
    for (; h && g; h = h->next) {
        nb_tensor *r = h->fn(g, h->user);
        if (!r) continue;
        if (!nb__same_shape(r, g) || r->dtype != g->dtype) {
            nb__err(NB_EAUTOGRAD, "hook returned a gradient of shape %s (%s); expected %s (%s)", nb__shape_str(r),
                    nb_dtype_name(r->dtype), nb__shape_str(g), nb_dtype_name(g->dtype));
            return NULL;
        }
        g = r;
    }
    return g;
}

static int accumulate_leaf(plan *p, nb_tensor *leaf, nb_tensor *g) {
    int k = p->accumulate ? -1 : nb__input_index(p, leaf);
    if (!p->accumulate) return k >= 0 ? nb__add_into(&p->captured[k], g) : 0;
    g = run_hooks(leaf->ag->hooks, g);
    if (!g) return nb_last_error_code();
    nb__ag_meta *m = leaf->ag;
    if (!m->grad) {
        /* g itself when nothing else holds it (as PyTorch's AccumulateGrad
         * steals a sole gradient); otherwise a fresh copy, since g may be
         * shared (e.g. by both inputs of an add) */
        /* a channels-last leaf keeps a channels-last gradient in that layout
         * (PyTorch's AccumulateGrad keeps a gradient whose strides match the
         * variable's): a contiguous copy of a conv's input gradient cost 7%
         * of a channels-last 3x3 conv's fwd+bwd */
        bool cl = nb_is_channels_last(leaf) && nb__suggests_channels_last(g);
        bool sole = atomic_load(&g->refcount) == 1 && atomic_load(&g->storage->refcount) == 1 && !g->ag &&
                    (nb_is_contiguous(g) || cl) && g->offset == 0;
        nb_tensor *c = p->create_graph || sole ? g : cl ? nb__clone_channels_last(g) : nb_clone(g);
        if (!c) return nb_last_error_code();
        m->grad = nb_retain(c);
        return 0;
    }
    if (p->create_graph || nb__grad_fn(m->grad)) return nb__add_into(&m->grad, g);
    nb_kernel_args a = {.op = NB_OP_ADD, .out = m->grad, .in = {m->grad, g}, .nin = 2};
    return nb__dispatch(&a, "backward (accumulating a leaf gradient)");
}

/* Sums a gradient for a leaf; hooks and accumulation run once per leaf at
 * the end of the run, on the total (as PyTorch's AccumulateGrad). */
int nb__leaf_add(plan *p, nb_tensor *leaf, nb_tensor *g) {
    nb__ag_meta *m = leaf->ag;
    if (m->epoch != p->epoch) {
        if (p->nleaves == p->leaves_cap) {
            int nc = p->leaves_cap ? p->leaves_cap * 2 : 16;
            nb_tensor **nl = realloc(p->leaves, sizeof *nl * (size_t)nc);
            if (!nl) return nb__err(NB_ENOMEM, "backward: out of memory");
            p->leaves = nl;
            p->leaves_cap = nc;
        }
        p->leaves[p->nleaves++] = leaf;
        m->epoch = p->epoch;
        nb_release(m->pending);
        m->pending = NULL;
    }
    return nb__add_into(&m->pending, g);
}

int nb__finish_leaves(plan *p, int rc) {
    nb_scope_begin();
    bool prev = nb_set_grad_enabled(p->create_graph);
    for (int i = 0; i < p->nleaves; i++) {
        nb__ag_meta *m = p->leaves[i]->ag;
        if (!rc && m->pending) rc = accumulate_leaf(p, p->leaves[i], m->pending);
        nb_release(m->pending);
        m->pending = NULL;
    }
    nb_set_grad_enabled(prev);
    nb_scope_end();
    return rc;
}

static int check_finite(const nb__node *n, nb_tensor *g, int input) {
    if (!g || (g->dtype != NB_DTYPE_F32 && g->dtype != NB_DTYPE_F64)) return 0;
    int64_t idx[NB_MAX_DIMS] = {0};
    for (int64_t k = 0; k < g->numel; k++) {
        double v = nb_get(g, idx);
        if (!isfinite(v))
            return nb__err(NB_ENUMERIC,
                           "anomaly: function %s (seq %llu, made by %s) returned %s values in its gradient for "
                           "input %d",
                           n->name, (unsigned long long)n->seq, n->op, isnan(v) ? "nan" : "inf", input);
        for (int d = g->ndim - 1; d >= 0; d--) {
            if (++idx[d] < g->shape[d]) break;
            idx[d] = 0;
        }
    }
    return 0;
}

/* Hooks, retain_grad and capture: *gout is the gradient after the hooks
 * (in the current scope, or borrowed n->buf-like input). */
int nb__node_prologue(plan *p, nb__node *n, nb_tensor *g, nb_tensor **gout) {
    g = run_hooks(n->hooks, g);
    *gout = g;
    if (!g) return nb_last_error_code();
    if (n->retain && p->accumulate) {
        nb_tensor *c = nb_clone(g);
        if (!c) return nb_last_error_code();
        nb_set_grad(n->retain, c);
    }
    if (n->capture) p->captured[n->capture - 1] = nb_retain(g);
    return 0;
}

/* Calls n's backward (grad mode = create_graph) and, under anomaly mode,
 * checks what it returned. gin[0..nin) must be zeroed by the caller. */
int nb__node_call(plan *p, nb__node *n, nb_tensor *g, nb_tensor **gin) {
    bool prev = nb_set_grad_enabled(p->create_graph);
    int prev_inv = nb__thread_invariant;
    nb__thread_invariant = 1;   /* the same bits at any thread count (kernels.h) */
    int rc = n->backward(n, g, gin);
    nb__thread_invariant = prev_inv;
    nb_set_grad_enabled(prev);
    if (rc && nb_last_error_code() != rc) nb__err(rc, "%s: backward failed", n->name);
    for (int i = 0; i < n->nin && !rc && nb__anomaly; i++)
        if (gin[i]) rc = check_finite(n, gin[i], i);
    return rc;
}

bool nb__node_onward(const plan *p, const nb__node *n) {
    bool onward = p->accumulate;
    for (int i = 0; i < n->nin && !onward; i++) {
        const nb__edge *e = &n->edges[i];
        onward = (e->node && e->node->needed) || (e->leaf && nb__input_index(p, e->leaf) >= 0);
    }
    return onward;
}

/* Runs one node: hooks, retain_grad, capture, backward, hand-out of gradients. */
static int run_node(plan *p, nb__node *n, bool call_backward) {
    int rc = 0;
    nb_scope_begin();
    nb_tensor *g;
    if ((rc = nb__node_prologue(p, n, n->buf, &g)) || !call_backward) goto out;
    nb_tensor *gin_small[8], **gin = n->nin <= 8 ? gin_small : calloc((size_t)n->nin, sizeof *gin);
    if (!gin) {
        rc = nb__err(NB_ENOMEM, "backward: out of memory");
        goto out;
    }
    memset(gin, 0, sizeof *gin * (size_t)n->nin);
    rc = nb__node_call(p, n, g, gin);
    for (int i = 0; i < n->nin && !rc; i++) {
        if (!gin[i]) continue;
        nb__edge *e = &n->edges[i];
        if (e->node && e->node->epoch == p->epoch && e->node->needed) rc = nb__add_into(&e->node->buf, gin[i]);
        else if (e->leaf) rc = nb__leaf_add(p, e->leaf, gin[i]);
    }
    if (gin != gin_small) free(gin);
out:
    nb_scope_end();
    nb_release(n->buf);
    n->buf = NULL;
    return rc;
}

static int execute_serial(plan *p) {
    for (int k = 0; k < p->n; k++) {
        nb__node *n = p->nodes[k];
        if (!n->needed || !n->buf) continue;
        bool onward = nb__node_onward(p, n);
        uint64_t t0 = nb__node_observer ? nb__now_ns() : 0;
        NB_PROF_NODE_BEGIN(n);
        int rc = run_node(p, n, onward);
        NB_PROF_NODE_END(n);
        if (!p->retain_graph && onward) nb__node_free_saved(n);
        if (nb__node_observer) nb__node_observer(n, t0, nb__now_ns(), nb__pool_worker());
        if (rc) return rc;
    }
    return 0;
}

static int run(plan *p, nb_tensor *const *roots, nb_tensor *const *grads, int nroots, const char *who) {
    int rc = 0;
    p->grad_mode = nb__grad_mode();
    p->roots = roots;
    p->root_grads = grads;
    p->nroots = nroots;
    p->epoch = atomic_fetch_add(&epoch_counter, 1) + 1;
    for (int r = 0; r < nroots; r++) {
        nb_tensor *t = roots[r], *g = grads ? grads[r] : NULL;
        if (!t) return nb__err(NB_ENULLARG, "%s: output %d is NULL", who, r);
        if (!nb__requires_grad(t))
            return nb__err(NB_EAUTOGRAD, "%s: element %d of tensors does not require grad and does not have a "
                                         "grad_fn (call nb_set_requires_grad on a leaf it depends on)",
                           who, r);
        if (g) {
            if (!nb__same_shape(g, t) || g->dtype != t->dtype)
                return nb__err(nb__same_shape(g, t) ? NB_EDTYPE : NB_ESHAPE, "%s: gradient of shape %s (%s) given for an output of shape %s (%s)",
                               who, nb__shape_str(g), nb_dtype_name(g->dtype), nb__shape_str(t),
                               nb_dtype_name(t->dtype));
        } else if (t->numel != 1) {
            return nb__err(NB_EAUTOGRAD, "%s: grad can be implicitly created only for scalar outputs (this "
                                         "output has shape %s); pass a gradient",
                           who, nb__shape_str(t));
        }
        if ((rc = collect(p, nb__grad_fn(t)))) return rc;
    }
    if (p->n > 1) qsort(p->nodes, (size_t)p->n, sizeof *p->nodes, by_seq_desc);
    if (!p->accumulate) {
        for (int i = 0; i < p->n_inputs; i++) {
            nb__node *gf = nb__grad_fn(p->inputs[i]);
            if (gf && gf->epoch == p->epoch) gf->capture = i + 1;
        }
        for (int k = p->n - 1; k >= 0; k--) {   /* oldest first: inputs' needs are known */
            nb__node *n = p->nodes[k];
            n->needed = n->capture != 0;
            for (int i = 0; i < n->nin && !n->needed; i++) {
                nb__edge *e = &n->edges[i];
                n->needed = (e->node && e->node->needed) || (e->leaf && nb__input_index(p, e->leaf) >= 0);
            }
        }
    }
    for (int k = 0; k < p->n; k++)
        if (p->nodes[k]->needed && p->nodes[k]->freed && p->nodes[k]->had_saved)
            return nb__err(NB_EAUTOGRAD,
                           "%s: trying to backward through the graph a second time (or directly access saved "
                           "tensors after they have already been freed): %s's saved tensors were freed after "
                           "the last backward; pass retain_graph=true to it if you need to backward twice",
                           who, p->nodes[k]->name);
    /* seed the roots' gradients */
    nb_scope_begin();
    bool prev = nb_set_grad_enabled(p->create_graph);
    for (int r = 0; r < nroots && !rc; r++) {
        nb_tensor *t = roots[r];
        nb_tensor *g = grads && grads[r] ? grads[r] : nb_ones(nb_dims_get(t), t->dtype);
        if (!g) rc = nb_last_error_code();
        else if (nb__grad_fn(t)) rc = nb__grad_fn(t)->needed || p->accumulate ? nb__add_into(&nb__grad_fn(t)->buf, g) : 0;
        else rc = nb__leaf_add(p, t, g);
    }
    nb_set_grad_enabled(prev);
    nb_scope_end();
    if (!rc) {
        rc = nb__backward != NB__BACKWARD_SERIAL ? nb__execute_parallel(p) : 1;
        if (rc == 1) rc = execute_serial(p);
    }
    rc = nb__finish_leaves(p, rc);
    for (int k = 0; k < p->n; k++) {   /* on error, drop what was left in flight */
        nb_release(p->nodes[k]->buf);
        p->nodes[k]->buf = NULL;
    }
    return rc;
}

NB_API int nb_backward_ex(nb_tensor *root, nb_tensor *grad, const nb_backward_opts *opts) {
    if (!root) return nb__err(NB_ENULLARG, "nb_backward: tensor is NULL");
    plan p = {.accumulate = true};
    if (opts) {
        p.create_graph = opts->create_graph;
        p.retain_graph = opts->retain_graph || opts->create_graph;
    }
    int rc = run(&p, &root, grad ? &grad : NULL, 1, "nb_backward");
    free(p.nodes);
    free(p.leaves);
    return rc;
}

NB_API int nb_backward(nb_tensor *root, nb_tensor *grad) { return nb_backward_ex(root, grad, NULL); }

NB_API int nb_autograd_grad(nb_tensor *const *outputs, int n_outputs, nb_tensor *const *inputs, int n_inputs,
                            nb_tensor *const *grad_outputs, const nb_grad_opts *opts, nb_tensor **grads_out) {
    const char *who = "nb_autograd_grad";
    if (!outputs || !inputs || !grads_out || n_outputs <= 0 || n_inputs <= 0)
        return nb__err(NB_ENULLARG, "%s: outputs, inputs and grads_out must be non-NULL and non-empty", who);
    for (int i = 0; i < n_inputs; i++) {
        grads_out[i] = NULL;
        if (!inputs[i]) return nb__err(NB_ENULLARG, "%s: input %d is NULL", who, i);
        if (!nb__requires_grad(inputs[i]))
            return nb__err(NB_EAUTOGRAD, "%s: input %d does not require grad", who, i);
    }
    nb_tensor **cap = calloc((size_t)n_inputs, sizeof *cap);
    if (!cap) return nb__err(NB_ENOMEM, "%s: out of memory", who);
    plan p = {.inputs = inputs, .n_inputs = n_inputs, .captured = cap};
    if (opts) {
        p.create_graph = opts->create_graph;
        p.retain_graph = opts->retain_graph || opts->create_graph;
    }
    int rc = run(&p, outputs, grad_outputs, n_outputs, who);
    for (int i = 0; i < n_inputs && !rc; i++)
        if (!cap[i] && !(opts && opts->allow_unused))
            rc = nb__err(NB_EAUTOGRAD, "%s: one of the differentiated tensors (input %d) appears to not have "
                                       "been used in the graph; set allow_unused if this is desired",
                         who, i);
    for (int i = 0; i < n_inputs; i++) {
        if (!rc) grads_out[i] = nb__scoped(cap[i]);
        else nb_release(cap[i]);
    }
    free(cap);
    free(p.nodes);
    free(p.leaves);
    return rc;
}
