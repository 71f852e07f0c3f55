/* engine_parallel.c — the parallel backward executor: independent graph
 * nodes run at once on the runtime pool.
 *
 * Plan (engine.c has collected the nodes, sorted them by descending seq,
 * marked the needed ones and seeded the roots' gradients into n->buf):
 *  - every edge from a needed node whose backward is called (an "onward"
 *    node) to a needed node or a leaf gets a slot; a receiver's slots are
 *    numbered in the order the serial executor would deliver them (it runs
 *    nodes in descending seq and hands out input 0, 1, ... in turn), so
 *    summing a receiver's slots in slot order after its seed is the serial
 *    executor's sum, term for term: the gradients are bitwise identical
 *    whatever the schedule and the thread count;
 *  - a node's dependency count is its number of slots; the producer that
 *    brings it to 0 makes the node ready (its slot writes are published by
 *    that atomic decrement).
 * Run: the ready roots are queued; a thread that finishes a node keeps one
 * of the nodes it made ready (the highest seq: the one the serial order
 * would run next) and queues the others, so a chain runs on one thread and
 * never touches the queue. The queue is the pool's (one mutex, a heap on
 * seq). Why not per-worker deques with stealing: measured here (2 cores,
 * 192 nodes of ~0.3 us each, a 64-wide fan-out, best of 300), the whole
 * machinery (slots, atomics, queue, thread shares) costs ~70 ns more per
 * node than the serial loop at 1 thread and ~70-250 ns at 2 threads (lock
 * and cache-line traffic included), against nodes of 1 us to milliseconds
 * in real models; the keep-one rule takes most nodes off the queue, and
 * graphs too small to pay are run by the serial loop (worth_it). A central
 * heap also keeps the serial executor's seq order, so memory is freed in
 * about the same order; its lock shows in the profiler as NB_PROF_SYNC,
 * the place to look first if many-core runs of tiny nodes ever contend.
 * Each node asks the pool how many threads its kernels may use
 * (nb__pool_share_begin): all when it runs alone, a share otherwise. With
 * OpenMP the pool's threads are the kernels' own OpenMP team (pool.c), and
 * nb__pool_keep says when keeping a node would hide parallelism from it.
 * Leaves are summed (in slot order) and accumulated on the calling thread at
 * the end, in the order the serial executor first reached them, so leaf
 * hooks run there, in the serial order.
 *
 * Threads: node backwards, hooks on non-leaf tensors and custom backwards
 * run on any pool thread (each in its own scope, with the caller's grad
 * mode). Errors are per thread: the first failing node's code and message
 * are copied and raised again on the calling thread; no further node
 * starts, what was handed out is released, and the pool stays usable.
 */
#include "autograd/autograd.h"
#include "runtime/profile.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct par par;

typedef struct pnode {
    nb__task task;          /* the pool's queue entry (prio = seq); first member */
    par *par;               /* the run */
    nb__node *n;            /* the graph node */
    atomic_int deps;        /* hand-outs still to come (starts at nslots) */
    int slot0, nslots;      /* its incoming gradients: par->slots[slot0 ..] */
    int edge0;              /* its edges' receivers: par->edge_slot[edge0 ..] */
    bool onward;            /* needed and its backward is called */
    uint64_t ready_ns;      /* when its last gradient arrived (profiling only) */
} pnode;

typedef struct pleaf {
    nb_tensor *t;           /* the leaf (borrowed) */
    int slot0, nslots;      /* its incoming gradients */
    int first;              /* serial position of its first non-NULL gradient */
} pleaf;

struct par {
    nb__plan *p;            /* the run engine.c prepared */
    pnode *pn;              /* p->n entries, plan order */
    pleaf *lv;              /* leaves receiving gradients */
    int nleaves;
    nb_tensor **slots;      /* handed-out gradients (owned until summed) */
    int nslots;
    int *edge_slot;         /* per edge of a planned node: receiver's slot, or -1 */
    int *ord;               /* per slot: its place in the serial delivery order */
    atomic_int outstanding; /* tasks queued or running */
    atomic_bool cancel;     /* an error happened: start nothing more */
    pthread_mutex_t err_lock;   /* guards err and msg */
    int err;                /* first error's code, or 0 */
    char msg[1024];         /* and its message */
};

/* Needed producers' edges to distinct needed nodes: >= 2 is a fork. */
static int fan_out(const nb__node *n) {
    int fan = 0;
    for (int i = 0; i < n->nin; i++) {
        const nb__node *c = n->edges[i].node;
        if (!c || !c->needed) continue;
        bool dup = false;
        for (int j = 0; j < i && !dup; j++) dup = n->edges[j].node == c;
        fan += !dup;
    }
    return fan;
}

/* A node's size, roughly: the most elements among what it saved, its leaf
 * inputs and the input shapes it kept (a lower bound of its work). */
static int64_t node_elems(const nb__node *n) {
    int64_t w = 1;
    for (int i = 0; i < n->nsaved; i++)
        if (n->saved[i].t && n->saved[i].t->numel > w) w = n->saved[i].t->numel;
    for (int i = 0; i < n->nin; i++)
        if (n->edges[i].leaf && n->edges[i].leaf->numel > w) w = n->edges[i].leaf->numel;
    for (int k = 0; k < 2; k++) {
        int64_t e = 1;
        for (int d = 0; d < n->shape[k].ndim && d < NB_MAX_DIMS; d++) e *= n->shape[k].d[d];
        if (e > w) w = e;
    }
    return w;
}

/* Whether running on the pool can pay: a fork somewhere (a node handing
 * gradients to two needed nodes, or several roots) and, like a kernel's
 * grain (NB_GRAIN_ELEMENTWISE), enough elements in all to keep a second
 * thread busy for longer than it takes to wake it. */
static bool worth_it(const nb__plan *p) {
    if (nb__pool_size() < 2) return false;
    bool fork = p->nroots > 1;
    int64_t elems = 0;
    for (int k = 0; k < p->n; k++) {
        const nb__node *n = p->nodes[k];
        if (!n->needed) continue;
        fork = fork || fan_out(n) >= 2;
        elems += node_elems(n);
    }
    return fork && elems >= 2 * 32768;
}

static void fail(par *r, int rc) {
    pthread_mutex_lock(&r->err_lock);
    if (!r->err) {
        r->err = rc;
        snprintf(r->msg, sizeof r->msg, "%s", nb_last_error());
    }
    pthread_mutex_unlock(&r->err_lock);
    atomic_store(&r->cancel, true);
}

/* Sums q's gradients, runs it, hands out its inputs' gradients. */
static int run_one(par *r, pnode *q, int worker) {
    nb__plan *p = r->p;
    nb__node *n = q->n;
    int rc = 0;
    uint64_t t0 = nb__node_observer ? nb__now_ns() : 0;
    if (NB__PROF_ON() && q->ready_ns) nb__prof_queued(nb__now_ns() - q->ready_ns);
    int saved, share = nb__pool_share_begin(&saved);
    nb_scope_begin();
    nb_tensor *buf = n->buf;   /* the roots' seed, first in the sum */
    n->buf = NULL;
    for (int s = q->slot0; s < q->slot0 + q->nslots; s++) {
        if (!r->slots[s]) continue;
        if (!rc) rc = nb__add_into(&buf, r->slots[s]);
        nb_release(r->slots[s]);
        r->slots[s] = NULL;
    }
    bool ran = !rc && buf;
    if (ran) {
        NB_PROF_NODE_BEGIN(n);
        nb_tensor *g;
        rc = nb__node_prologue(p, n, buf, &g);
        if (!rc && q->onward) {
            nb_tensor *gin_small[8], **gin = n->nin <= 8 ? gin_small : calloc((size_t)n->nin, sizeof *gin);
            if (!gin) rc = nb__err(NB_ENOMEM, "backward: out of memory");
            else {
                memset(gin, 0, sizeof *gin * (size_t)n->nin);
                rc = nb__node_call(p, n, g, gin);
                for (int i = 0; i < n->nin && !rc; i++) {
                    int s = r->edge_slot[q->edge0 + i];
                    if (gin[i] && s >= 0) r->slots[s] = nb_retain(gin[i]);
                }
                if (gin != gin_small) free(gin);
            }
        }
        NB_PROF_NODE_END(n);
    }
    nb_release(buf);
    nb_scope_end();
    nb__pool_share_end(share, saved);
    if (ran && !p->retain_graph && q->onward) nb__node_free_saved(n);
    if (ran && nb__node_observer) nb__node_observer(n, t0, nb__now_ns(), worker);
    return rc;
}

/* Counts down q's receivers; returns the ready one to run next here (the
 * highest seq) after queueing the others, or NULL. */
static pnode *release_receivers(par *r, pnode *q) {
    nb__node *n = q->n;
    pnode *best = NULL, *small[8], **ready = small;
    int nready = 0, made = 0;   /* queued here; made ready in all */
    if (n->nin > 8) ready = malloc(sizeof *ready * (size_t)n->nin);   /* NULL: queue one by one */
    for (int i = 0; i < n->nin; i++) {
        nb__node *c = n->edges[i].node;
        if (!c || !c->needed || r->edge_slot[q->edge0 + i] < 0) continue;
        pnode *cq = &r->pn[c->pidx];
        if (atomic_fetch_sub_explicit(&cq->deps, 1, memory_order_acq_rel) != 1) continue;
        cq->ready_ns = NB__PROF_ON() ? nb__now_ns() : 0;
        made++;
        if (!best) {
            best = cq;
            continue;
        }
        pnode *other = cq;
        if (cq->n->seq > best->n->seq) {
            other = best;
            best = cq;
        }
        if (ready) {
            ready[nready++] = other;
        } else {
            atomic_fetch_add(&r->outstanding, 1);
            nb__pool_submit((nb__task *const *)&other, 1);
        }
    }
    if (best) atomic_fetch_add(&r->outstanding, nready + 1);
    if (best && !nb__pool_keep(made)) {   /* team mode: the pool decides who runs it */
        if (ready) ready[nready++] = best;
        else nb__pool_submit((nb__task *const *)&best, 1);
        best = NULL;
    }
    if (nready) nb__pool_submit((nb__task *const *)ready, nready);
    if (ready != small) free(ready);
    return best;
}

static void task_run(nb__task *t) {
    pnode *q = (pnode *)t;
    par *r = q->par;
    int worker = nb__pool_worker();
    bool prev = nb_set_grad_enabled(r->p->grad_mode);
    while (q) {
        pnode *next = NULL;
        if (!atomic_load(&r->cancel)) {
            int rc = run_one(r, q, worker);
            if (rc) fail(r, rc);
            else next = release_receivers(r, q);
        }
        /* after the last decrement r may be freed by the waiting caller */
        if (atomic_fetch_sub_explicit(&r->outstanding, 1, memory_order_acq_rel) == 1) nb__pool_done();
        q = next;
    }
    nb_set_grad_enabled(prev);
}

static int by_first(const void *a, const void *b) {
    int x = ((const pleaf *)a)->first, y = ((const pleaf *)b)->first;
    return x < y ? -1 : x > y;
}

/* Sums the leaves' gradients into their pending sums, in serial order. */
static int finish_leaf_slots(par *r) {
    nb__plan *p = r->p;
    int rc = 0;
    for (int j = 0; j < r->nleaves; j++) {
        pleaf *l = &r->lv[j];
        l->first = INT_MAX;
        for (int s = l->slot0; s < l->slot0 + l->nslots && l->first == INT_MAX; s++)
            if (r->slots[s]) l->first = r->ord[s];
    }
    qsort(r->lv, (size_t)r->nleaves, sizeof *r->lv, by_first);
    nb_scope_begin();
    bool prev = nb_set_grad_enabled(p->grad_mode);
    for (int j = 0; j < r->nleaves && !rc; j++) {
        pleaf *l = &r->lv[j];
        for (int s = l->slot0; s < l->slot0 + l->nslots && !rc; s++)
            if (r->slots[s]) rc = nb__leaf_add(p, l->t, r->slots[s]);
    }
    nb_set_grad_enabled(prev);
    nb_scope_end();
    return rc;
}

/* Numbers the slots (see the top of the file). 0 or NB_ENOMEM. */
static int plan_slots(par *r) {
    nb__plan *p = r->p;
    int nedges = 0, nleaves = 0;
    for (int k = 0; k < p->n; k++) {
        nb__node *n = p->nodes[k];
        pnode *q = &r->pn[k];
        n->pidx = k;
        q->task.run = task_run;
        q->task.prio = n->seq;
        q->par = r;
        q->n = n;
        q->edge0 = nedges;
        q->onward = n->needed && nb__node_onward(p, n);
        nedges += n->nin;
        for (int i = 0; q->onward && i < n->nin; i++)
            if (n->edges[i].leaf) n->edges[i].leaf->ag->pidx = -1;
    }
    r->edge_slot = malloc(sizeof *r->edge_slot * (size_t)(nedges > 0 ? nedges : 1));
    r->lv = malloc(sizeof *r->lv * (size_t)(nedges > 0 ? nedges : 1));
    if (!r->edge_slot || !r->lv) return nb__err(NB_ENOMEM, "backward: out of memory");
    /* count each receiver's slots */
    for (int k = 0; k < p->n; k++) {
        pnode *q = &r->pn[k];
        nb__node *n = q->n;
        for (int i = 0; i < n->nin; i++) {
            nb__edge *e = &n->edges[i];
            r->edge_slot[q->edge0 + i] = -1;
            if (!q->onward) continue;
            if (e->node && e->node->needed) {
                r->pn[e->node->pidx].nslots++;
            } else if (e->leaf && !e->node) {
                nb__ag_meta *m = e->leaf->ag;
                if (m->pidx < 0) {
                    m->pidx = nleaves;
                    r->lv[nleaves++] = (pleaf){.t = e->leaf};
                }
                r->lv[m->pidx].nslots++;
            }
        }
    }
    r->nleaves = nleaves;
    int total = 0;
    for (int k = 0; k < p->n; k++) {
        r->pn[k].slot0 = total;
        total += r->pn[k].nslots;
        atomic_init(&r->pn[k].deps, r->pn[k].nslots);
        r->pn[k].nslots = 0;   /* refilled below */
    }
    for (int j = 0; j < nleaves; j++) {
        r->lv[j].slot0 = total;
        total += r->lv[j].nslots;
        r->lv[j].nslots = 0;
    }
    r->nslots = total;
    r->slots = calloc((size_t)(total > 0 ? total : 1), sizeof *r->slots);
    r->ord = malloc(sizeof *r->ord * (size_t)(total > 0 ? total : 1));
    if (!r->slots || !r->ord) return nb__err(NB_ENOMEM, "backward: out of memory");
    /* number them in serial delivery order */
    int order = 0;
    for (int k = 0; k < p->n; k++) {
        pnode *q = &r->pn[k];
        nb__node *n = q->n;
        for (int i = 0; q->onward && i < n->nin; i++) {
            nb__edge *e = &n->edges[i];
            int s = -1;
            if (e->node && e->node->needed) {
                pnode *c = &r->pn[e->node->pidx];
                s = c->slot0 + c->nslots++;
            } else if (e->leaf && !e->node) {
                pleaf *l = &r->lv[e->leaf->ag->pidx];
                s = l->slot0 + l->nslots++;
            }
            if (s >= 0) r->ord[s] = order++;
            r->edge_slot[q->edge0 + i] = s;
        }
    }
    return 0;
}

int nb__execute_parallel(nb__plan *p) {
    if (nb__backward != NB__BACKWARD_FORCE && !worth_it(p)) return 1;   /* the serial loop is cheaper */
    par r = {.p = p};
    atomic_init(&r.outstanding, 0);
    atomic_init(&r.cancel, false);
    pthread_mutex_init(&r.err_lock, NULL);
    int rc = 0;
    r.pn = calloc((size_t)(p->n > 0 ? p->n : 1), sizeof *r.pn);
    if (!r.pn) rc = nb__err(NB_ENOMEM, "backward: out of memory");
    if (!rc) rc = plan_slots(&r);
    if (!rc) {
        int nready = 0;
        for (int k = 0; k < p->n; k++) nready += p->nodes[k]->needed && r.pn[k].nslots == 0;
        nb__task **ready = malloc(sizeof *ready * (size_t)(nready > 0 ? nready : 1));
        if (!ready) rc = nb__err(NB_ENOMEM, "backward: out of memory");
        if (ready && nready) {
            nready = 0;
            for (int k = 0; k < p->n; k++)
                if (p->nodes[k]->needed && r.pn[k].nslots == 0) {
                    r.pn[k].ready_ns = NB__PROF_ON() ? nb__now_ns() : 0;
                    ready[nready++] = &r.pn[k].task;
                }
            atomic_store(&r.outstanding, nready);
            nb__pool_submit(ready, nready);
            nb__pool_wait(&r.outstanding);
        }
        free(ready);
        if (r.err) rc = nb__err(r.err, "%s", r.msg);
    }
    if (!rc) rc = finish_leaf_slots(&r);
    for (int s = 0; r.slots && s < r.nslots; s++) nb_release(r.slots[s]);
    pthread_mutex_destroy(&r.err_lock);
    free(r.slots);
    free(r.ord);
    free(r.edge_slot);
    free(r.lv);
    free(r.pn);
    return rc;
}
