/* graph.c — autograd state on tensors, recording of backward nodes, saved
 * tensors with version checks, grad mode, and the public accessors.
 *
 * Ownership: a tensor owns its grad_fn and its .grad; a node owns its edges'
 * nodes and leaves and its saved tensors. Releasing a node frees a whole
 * dead sub-graph iteratively (a 100,000-op chain must not overflow the stack).
 */
#include "autograd/autograd.h"
#include "runtime/profile.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_disabled;     /* grad mode is on by default */
static atomic_ullong next_seq;               /* node sequence numbers */
bool nb__anomaly;                            /* anomaly mode (process-wide) */

bool nb__grad_mode(void) { return !grad_disabled; }
NB_API bool nb_is_grad_enabled(void) { return !grad_disabled; }
NB_API bool nb_set_grad_enabled(bool on) {
    bool prev = !grad_disabled;
    grad_disabled = !on;
    return prev;
}
NB_API bool nb_set_anomaly_enabled(bool on) {
    bool prev = nb__anomaly;
    nb__anomaly = on;
    return prev;
}

static void free_hooks(nb__hook *h) {
    while (h) {
        nb__hook *nx = h->next;
        free(h);
        h = nx;
    }
}

static void meta_free(nb_tensor *t) {
    nb__ag_meta *m = t->ag;
    t->ag = NULL;
    if (m->grad_fn && m->grad_fn->retain == t) m->grad_fn->retain = NULL;
    nb_release(m->grad);
    nb_release(m->pending);
    nb__node_release(m->grad_fn);
    free_hooks(m->hooks);
    nb__obj_free(m, sizeof *m);
}

nb__ag_meta *nb__meta(nb_tensor *t) {
    if (t->ag) return t->ag;
    nb__ag_meta *m = nb__obj_alloc(sizeof *m);
    if (m) memset(m, 0, sizeof *m);
    if (!m) {
        nb__err(NB_ENOMEM, "out of memory for autograd state");
        return NULL;
    }
    atomic_store_explicit(&nb__ag_free, meta_free, memory_order_relaxed);
    t->ag = m;
    return m;
}

/* ---- nodes ---- */
void nb__node_free_saved(nb__node *n) {
    for (int i = 0; i < n->nsaved; i++) {
        nb_release(n->saved[i].t);
        n->saved[i].t = NULL;
    }
    n->freed = true;
}

void nb__node_release(nb__node *n) {
    /* iterative: a released node's edges go on a work list */
    nb__node *stack_small[64], **stack = stack_small;
    size_t sp = 0, cap = 64;
    while (n || sp) {
        if (!n) n = stack[--sp];
        if (atomic_fetch_sub_explicit(&n->refcount, 1, memory_order_acq_rel) != 1) {
            n = NULL;
            continue;
        }
        for (int i = 0; i < n->nin; i++) {
            nb_release(n->edges[i].leaf);
            if (!n->edges[i].node) continue;
            if (sp == cap) {
                size_t nc = cap * 2;
                nb__node **ns = malloc(sizeof *ns * nc);
                NB_ASSERT(ns);  /* freeing must not fail; out of memory here is fatal */
                memcpy(ns, stack, sizeof *ns * sp);
                if (stack != stack_small) free(stack);
                stack = ns;
                cap = nc;
            }
            stack[sp++] = n->edges[i].node;
        }
        nb__node_free_saved(n);
        nb_release(n->buf);
        free_hooks(n->hooks);
        if (n->ctx_free) n->ctx_free(n->ctx);
        if (n->saved != n->saved_inline) free(n->saved);
        nb__obj_free(n, sizeof *n + sizeof(nb__edge) * (size_t)n->nin);
        n = NULL;
    }
    if (stack != stack_small) free(stack);
}

bool nb__should_record(nb_tensor *const *inputs, int n) {
    if (grad_disabled) return false;
    for (int i = 0; i < n; i++)
        if (nb__requires_grad(inputs[i])) return true;
    return false;
}

nb__node *nb__record(nb_tensor *out, const char *name, const char *op, nb__backward_fn bw,
                     nb_tensor *const *inputs, int n) {
    nb__ag_meta *m = nb__meta(out);
    size_t bytes = sizeof(nb__node) + sizeof(nb__edge) * (size_t)n;
    nb__node *nd = m ? nb__obj_alloc(bytes) : NULL;
    if (nd) memset(nd, 0, bytes);
    if (!nd) {
        nb__err(NB_ENOMEM, "%s: out of memory recording the backward node", op);
        return NULL;
    }
    atomic_init(&nd->refcount, 1);   /* held by out */
    nd->name = name;
    nd->op = op;
    nd->seq = atomic_fetch_add_explicit(&next_seq, 1, memory_order_relaxed) + 1;
    NB_PROF_RECORD(nd);
    nd->backward = bw;
    nd->nin = n;
    nd->edges = (nb__edge *)(nd + 1);
    for (int i = 0; i < n; i++) {
        nb_tensor *x = inputs[i];
        if (!nb__requires_grad(x)) continue;
        if (x->ag->grad_fn) {
            nd->edges[i].node = x->ag->grad_fn;
            atomic_fetch_add_explicit(&x->ag->grad_fn->refcount, 1, memory_order_relaxed);
        } else {
            nd->edges[i].leaf = nb_retain(x);
        }
    }
    m->grad_fn = nd;
    m->requires_grad = true;
    return nd;
}

static int save_entry(nb__node *n, nb_tensor *t, bool is_output) {
    nb__saved *s;
    if (n->nsaved < NB__MAX_SAVED_INLINE) {   /* most ops save at most 3: no allocation */
        s = n->saved_inline;
    } else if (n->saved == n->saved_inline) {
        s = malloc(sizeof *s * (size_t)(n->nsaved + 1));
        if (s) memcpy(s, n->saved_inline, sizeof *s * (size_t)n->nsaved);
    } else {
        s = realloc(n->saved, sizeof *s * (size_t)(n->nsaved + 1));
    }
    if (!s) return nb__err(NB_ENOMEM, "%s: out of memory saving a tensor", n->op);
    n->saved = s;
    s[n->nsaved].t = t;
    s[n->nsaved].version = nb_version(t);
    s[n->nsaved].is_output = is_output;
    n->nsaved++;
    n->had_saved = true;
    return 0;
}

int nb__save(nb__node *n, nb_tensor *t) {
    nb_retain(t);
    int rc = save_entry(n, t, false);
    if (rc) nb_release(t);
    return rc;
}

int nb__save_output(nb__node *n, nb_tensor *out) {
    nb_tensor *a = nb__alias(out, out->ndim, out->shape, out->stride, out->offset);
    if (!a) return NB_ENOMEM;
    int rc = save_entry(n, a, true);
    if (rc) nb_release(a);
    return rc;
}

nb_tensor *nb__saved_get(nb__node *n, int i) {
    if (n->freed || i >= n->nsaved || !n->saved[i].t) {
        nb__err(NB_EAUTOGRAD,
                "%s: trying to backward through the graph a second time (or to use saved tensors after "
                "they were freed); saved tensors are freed after backward: pass retain_graph=true to the "
                "first backward if you need a second one",
                n->name);
        return NULL;
    }
    nb__saved *s = &n->saved[i];
    uint64_t v = nb_version(s->t);
    if (v != s->version) {
        nb__err(NB_EAUTOGRAD,
                "one of the tensors needed for gradient computation has been modified by an in-place "
                "operation: saved tensor %d of %s (from %s, shape %s) is at version %llu; expected version "
                "%llu",
                i, n->name, n->op, nb__shape_str(s->t), (unsigned long long)v, (unsigned long long)s->version);
        return NULL;
    }
    if (!s->is_output || grad_disabled) return nb__scoped(nb_retain(s->t));
    /* create_graph: the saved output re-joins the graph as this node's output */
    nb_tensor *t = nb__alias(s->t, s->t->ndim, s->t->shape, s->t->stride, s->t->offset);
    nb__ag_meta *m = t ? nb__meta(t) : NULL;
    if (!m) {
        nb_release(t);
        return NULL;
    }
    m->grad_fn = n;
    m->requires_grad = true;
    atomic_fetch_add_explicit(&n->refcount, 1, memory_order_relaxed);
    return nb__scoped(t);
}

/* ---- public accessors ---- */
NB_API int nb_set_requires_grad(nb_tensor *t, bool on) {
    if (!t) return nb__err(NB_ENULLARG, "nb_set_requires_grad: tensor is NULL");
    if (nb__grad_fn(t)) {
        if (on) return 0;
        return nb__err(NB_EAUTOGRAD,
                       "nb_set_requires_grad: you can only change requires_grad of leaf tensors (this one "
                       "comes from %s); use nb_detach",
                       t->ag->grad_fn->name);
    }
    if (on && t->dtype != NB_DTYPE_F32 && t->dtype != NB_DTYPE_F64)
        return nb__err(NB_EDTYPE, "nb_set_requires_grad: only floating point tensors (f32, f64) can require "
                                  "gradients; this one is %s",
                       nb_dtype_name(t->dtype));
    if (!on && !t->ag) return 0;
    nb__ag_meta *m = nb__meta(t);
    if (!m) return NB_ENOMEM;
    m->requires_grad = on;
    return 0;
}

NB_API bool nb_requires_grad(const nb_tensor *t) { return nb__requires_grad(t); }
NB_API bool nb_is_leaf(const nb_tensor *t) { return t && !nb__grad_fn(t); }
NB_API nb_tensor *nb_grad(const nb_tensor *t) { return t && t->ag ? t->ag->grad : NULL; }
NB_API const char *nb_grad_fn_name(const nb_tensor *t) {
    nb__node *n = nb__grad_fn(t);
    return n ? n->name : NULL;
}

NB_API void nb_zero_grad(nb_tensor *t) {
    if (!t || !t->ag) return;
    nb_release(t->ag->grad);
    t->ag->grad = NULL;
}

NB_API int nb_set_grad(nb_tensor *t, nb_tensor *g) {
    if (!t) return nb__err(NB_ENULLARG, "nb_set_grad: tensor is NULL");
    if (g && (!nb__same_shape(t, g) || g->dtype != t->dtype))
        return nb__err(NB_ESHAPE, "nb_set_grad: gradient %s (%s) does not match tensor %s (%s)",
                       nb__shape_str(g), nb_dtype_name(g->dtype), nb__shape_str(t), nb_dtype_name(t->dtype));
    nb__ag_meta *m = nb__meta(t);
    if (!m) return NB_ENOMEM;
    nb_retain(g);
    nb_release(m->grad);
    m->grad = g;
    return 0;
}

NB_API int nb_retain_grad(nb_tensor *t) {
    if (!t) return nb__err(NB_ENULLARG, "nb_retain_grad: tensor is NULL");
    if (!nb__requires_grad(t))
        return nb__err(NB_EAUTOGRAD, "nb_retain_grad: can't retain_grad on a tensor that has requires_grad=false");
    if (!t->ag->grad_fn) return 0;   /* leaves keep their grad anyway */
    t->ag->retains_grad = true;
    t->ag->grad_fn->retain = t;
    return 0;
}

NB_API int nb_register_hook(nb_tensor *t, nb_hook_fn fn, void *user) {
    if (!t || !fn) return nb__err(NB_ENULLARG, "nb_register_hook: %s is NULL", t ? "fn" : "tensor");
    if (!nb__requires_grad(t))
        return nb__err(NB_EAUTOGRAD, "nb_register_hook: cannot register a hook on a tensor that doesn't "
                                     "require gradient");
    nb__hook *h = calloc(1, sizeof *h);
    if (!h) return nb__err(NB_ENOMEM, "nb_register_hook: out of memory");
    h->fn = fn;
    h->user = user;
    nb__hook **list = t->ag->grad_fn ? &t->ag->grad_fn->hooks : &t->ag->hooks;
    int id = 0;
    while (*list) {
        list = &(*list)->next;
        id++;
    }
    *list = h;
    return id;
}

NB_API nb_tensor *nb_detach(nb_tensor *t) {
    if (!t) return NULL;
    return nb__scoped(nb__alias(t, t->ndim, t->shape, t->stride, t->offset));
}
