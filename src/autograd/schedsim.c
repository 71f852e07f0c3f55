/* schedsim.c — the schedule simulator (see schedsim.h): greedy list
 * scheduling of a dependency graph on P virtual workers, the critical path,
 * and the recorder that turns a real backward graph into such a graph with
 * measured node costs.
 *
 * The simulation is event driven: a min-heap of running nodes by finish time
 * and a min-heap of ready nodes by policy key. All nodes finishing at the
 * same instant are retired before idle workers pick new ones, so ties are
 * resolved by the policy and then by node index, never by heap order: the
 * result is a pure function of the graph and the options (exact for costs
 * that are exact in binary, which the tests use).
 */
#include "autograd/schedsim.h"
#include "autograd/autograd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int nb__simgraph_add_node(nb__simgraph *g, double cost, const char *name) {
    if (!g) return nb__err(NB_ENULLARG, "schedsim: graph is NULL");
    if (!(cost >= 0) || !isfinite(cost)) return nb__err(NB_EINVAL, "schedsim: node cost %g is not a finite value >= 0", cost);
    if (g->n == g->ncap) {
        int nc = g->ncap ? g->ncap * 2 : 64;
        double *c = realloc(g->cost, sizeof *c * (size_t)nc);
        if (!c) return nb__err(NB_ENOMEM, "schedsim: out of memory");
        g->cost = c;
        const char **nm = realloc((void *)g->name, sizeof *nm * (size_t)nc);
        if (!nm) return nb__err(NB_ENOMEM, "schedsim: out of memory");
        g->name = nm;
        g->ncap = nc;
    }
    g->cost[g->n] = cost;
    g->name[g->n] = name;
    return g->n++;
}

int nb__simgraph_add_dep(nb__simgraph *g, int before, int after) {
    if (!g) return nb__err(NB_ENULLARG, "schedsim: graph is NULL");
    if (before < 0 || before >= g->n || after < 0 || after >= g->n || before == after)
        return nb__err(NB_ERANGE, "schedsim: dependency %d -> %d is not between two distinct nodes of %d", before,
                       after, g->n);
    if (g->ne == g->ecap) {
        int nc = g->ecap ? g->ecap * 2 : 64;
        int(*e)[2] = realloc(g->edge, sizeof *e * (size_t)nc);
        if (!e) return nb__err(NB_ENOMEM, "schedsim: out of memory");
        g->edge = e;
        g->ecap = nc;
    }
    g->edge[g->ne][0] = before;
    g->edge[g->ne][1] = after;
    g->ne++;
    return 0;
}

void nb__simgraph_free(nb__simgraph *g) {
    if (!g) return;
    free(g->cost);
    free((void *)g->name);
    free(g->edge);
    memset(g, 0, sizeof *g);
}

/* ---- a min-heap of node indices ordered by (key[i], i) ---- */

typedef struct heap {
    int *v;              /* n node indices, heap-ordered */
    int n;               /* entries */
    const double *key;   /* per node */
} heap;

static bool heap_less(const heap *h, int a, int b) {
    return h->key[a] < h->key[b] || (h->key[a] == h->key[b] && a < b);
}

static void heap_push(heap *h, int x) {
    int i = h->n++;
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!heap_less(h, x, h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = x;
}

static int heap_pop(heap *h) {
    int top = h->v[0], x = h->v[--h->n];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && heap_less(h, h->v[c + 1], h->v[c])) c++;
        if (!heap_less(h, h->v[c], x)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = x;
    return top;
}

/* ---- the simulation ---- */

typedef struct simstate {
    int *succ_off;        /* n+1: successors of i are succ[succ_off[i] .. succ_off[i+1]) */
    int *succ;            /* ne */
    int *indeg;           /* n: unfinished dependencies */
    int *order;           /* n: a topological order */
    double *blevel;       /* n: longest path from i to a sink, i included */
    double *ready_key;    /* n: the ready heap's key */
    double *finish;       /* n: the running heap's key */
    int *ready_v, *run_v; /* heap storage, n each */
} simstate;

static void simstate_free(simstate *s) {
    free(s->succ_off);
    free(s->succ);
    free(s->indeg);
    free(s->order);
    free(s->blevel);
    free(s->ready_key);
    free(s->finish);
    free(s->ready_v);
    free(s->run_v);
}

/* Successor lists, a topological order and bottom levels. NB_EINVAL on a cycle. */
static int simstate_init(simstate *s, const nb__simgraph *g, double overhead) {
    size_t n = (size_t)g->n + 1;
    s->succ_off = calloc(n + 1, sizeof *s->succ_off);
    s->succ = malloc(sizeof *s->succ * ((size_t)g->ne + 1));
    s->indeg = calloc(n, sizeof *s->indeg);
    s->order = malloc(sizeof *s->order * n);
    s->blevel = calloc(n, sizeof *s->blevel);
    s->ready_key = calloc(n, sizeof *s->ready_key);
    s->finish = calloc(n, sizeof *s->finish);
    s->ready_v = malloc(sizeof *s->ready_v * n);
    s->run_v = malloc(sizeof *s->run_v * n);
    if (!s->succ_off || !s->succ || !s->indeg || !s->order || !s->blevel || !s->ready_key || !s->finish ||
        !s->ready_v || !s->run_v)
        return nb__err(NB_ENOMEM, "schedsim: out of memory");
    for (int e = 0; e < g->ne; e++)
        s->succ_off[g->edge[e][0] + 1]++;
    for (int i = 0; i < g->n; i++)
        s->succ_off[i + 1] += s->succ_off[i];
    int *fill = s->order;   /* borrowed as a cursor array before the order is built */
    memcpy(fill, s->succ_off, sizeof *fill * (size_t)g->n);
    for (int e = 0; e < g->ne; e++) {
        s->succ[fill[g->edge[e][0]]++] = g->edge[e][1];
        s->indeg[g->edge[e][1]]++;
    }
    /* Kahn's algorithm on a copy of the in-degrees (kept in ready_v) */
    int *deg = s->ready_v, head = 0, tail = 0;
    for (int i = 0; i < g->n; i++) {
        deg[i] = s->indeg[i];
        if (!deg[i]) s->order[tail++] = i;
    }
    while (head < tail) {
        int i = s->order[head++];
        for (int k = s->succ_off[i]; k < s->succ_off[i + 1]; k++)
            if (--deg[s->succ[k]] == 0) s->order[tail++] = s->succ[k];
    }
    if (tail < g->n) return nb__err(NB_EINVAL, "schedsim: the dependency graph has a cycle");
    for (int k = g->n - 1; k >= 0; k--) {
        int i = s->order[k];
        double best = 0;
        for (int j = s->succ_off[i]; j < s->succ_off[i + 1]; j++)
            if (s->blevel[s->succ[j]] > best) best = s->blevel[s->succ[j]];
        s->blevel[i] = g->cost[i] + overhead + best;
    }
    return 0;
}

int nb__sim_run(const nb__simgraph *g, const nb__sim_opts *o, nb__sim_result *r) {
    if (!g || !o || !r) return nb__err(NB_ENULLARG, "schedsim: graph, options and result must be non-NULL");
    if (o->workers < 1 || !(o->overhead >= 0) || !isfinite(o->overhead) || (unsigned)o->policy >= NB__SIM_POLICY_COUNT)
        return nb__err(NB_EINVAL, "schedsim: workers %d (need >= 1), overhead %g (need >= 0), policy %d", o->workers,
                       o->overhead, (int)o->policy);
    simstate s = {0};
    int rc = simstate_init(&s, g, o->overhead);
    if (rc) goto out;
    double work = 0, critical = 0, busy = 0;
    for (int i = 0; i < g->n; i++) {
        work += g->cost[i];
        if (s.blevel[i] > critical) critical = s.blevel[i];
    }
    heap ready = {.v = s.ready_v, .key = s.ready_key}, running = {.v = s.run_v, .key = s.finish};
    for (int i = 0; i < g->n; i++) {
        if (s.indeg[i]) continue;
        s.ready_key[i] = o->policy == NB__SIM_POLICY_CRITICAL ? -s.blevel[i] : 0.0;
        heap_push(&ready, i);
    }
    double t = 0;
    int idle = o->workers;
    for (;;) {
        while (idle > 0 && ready.n > 0) {
            int i = heap_pop(&ready);
            s.finish[i] = t + g->cost[i] + o->overhead;
            busy += g->cost[i] + o->overhead;
            heap_push(&running, i);
            idle--;
        }
        if (!running.n) break;
        t = s.finish[running.v[0]];
        while (running.n && s.finish[running.v[0]] == t) {
            int i = heap_pop(&running);
            idle++;
            for (int k = s.succ_off[i]; k < s.succ_off[i + 1]; k++) {
                int j = s.succ[k];
                if (--s.indeg[j]) continue;
                s.ready_key[j] = o->policy == NB__SIM_POLICY_CRITICAL ? -s.blevel[j] : t;
                heap_push(&ready, j);
            }
        }
    }
    r->makespan = g->serial + t;
    r->work = g->serial + work;
    r->critical = g->serial + critical;
    r->speedup = r->makespan > 0 ? r->work / r->makespan : 1.0;
    r->bound = r->critical > 0 ? r->work / r->critical : 1.0;
    r->utilisation = t > 0 ? busy / (t * o->workers) : 1.0;
out:
    simstate_free(&s);
    return rc;
}

/* ---- recording a real backward graph ---- */

/* What the observer saw of one node run. */
typedef struct obs_rec {
    const nb__node *n;    /* the node (alive: the root's graph holds it) */
    uint64_t t0, t1;      /* start and end, ns */
    int worker;           /* pool worker that ran it */
} obs_rec;

/* The observer's buffer: one recording at a time per process. */
static obs_rec *obs_buf;      /* obs_cap entries */
static int obs_cap;
static atomic_int obs_len;    /* entries claimed (may exceed obs_cap: then dropped) */

static void observe(const nb__node *n, uint64_t t0, uint64_t t1, int worker) {
    int i = atomic_fetch_add_explicit(&obs_len, 1, memory_order_relaxed);
    if (i < obs_cap) obs_buf[i] = (obs_rec){.n = n, .t0 = t0, .t1 = t1, .worker = worker};
}

/* The nodes reachable from root, sorted by seq descending (the serial
 * executor's order). *out is malloc'ed. Returns the count or NB_E*. */
static int by_seq_desc(const void *a, const void *b) {
    uint64_t x = (*(nb__node *const *)a)->seq, y = (*(nb__node *const *)b)->seq;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int walk(nb__node *root, nb__node ***out) {
    int n = 0, cap = 64, hcap = 256;
    nb__node **v = malloc(sizeof *v * (size_t)cap);
    nb__node **set = calloc((size_t)hcap, sizeof *set);   /* open addressing on the pointer */
    if (!v || !set) goto nomem;
    if (root) {
        v[n++] = root;
        set[((uintptr_t)root >> 4) & (uintptr_t)(hcap - 1)] = root;
    }
    for (int k = 0; k < n; k++) {   /* breadth-first over the growing list */
        for (int i = 0; i < v[k]->nin; i++) {
            nb__node *c = v[k]->edges[i].node;
            if (!c) continue;
            size_t h = ((uintptr_t)c >> 4) & (uintptr_t)(hcap - 1);
            while (set[h] && set[h] != c)
                h = (h + 1) & (size_t)(hcap - 1);
            if (set[h]) continue;
            set[h] = c;
            if (n == cap) {
                nb__node **nv = realloc(v, sizeof *nv * (size_t)cap * 2);
                if (!nv) goto nomem;
                v = nv;
                cap *= 2;
            }
            v[n++] = c;
            if (2 * n > hcap) {   /* keep the set at most half full: rebuild it twice as big */
                nb__node **ns = calloc((size_t)hcap * 2, sizeof *ns);
                if (!ns) goto nomem;
                hcap *= 2;
                for (int j = 0; j < n; j++) {
                    size_t hj = ((uintptr_t)v[j] >> 4) & (uintptr_t)(hcap - 1);
                    while (ns[hj])
                        hj = (hj + 1) & (size_t)(hcap - 1);
                    ns[hj] = v[j];
                }
                free(set);
                set = ns;
            }
        }
    }
    free(set);
    if (n > 1) qsort(v, (size_t)n, sizeof *v, by_seq_desc);
    *out = v;
    return n;
nomem:
    free(v);
    free(set);
    return nb__err(NB_ENOMEM, "schedsim: out of memory");
}

/* Index of node x in v (sorted by seq descending), or -1. */
static int find_node(nb__node *const *v, int n, const nb__node *x) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (v[mid]->seq == x->seq) return v[mid] == x ? mid : -1;
        if (v[mid]->seq > x->seq) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* One backward pass of root (retain_graph) with the observer on: fills the
 * buffer, returns the wall time in *wall_ns. 0 or NB_E*. */
static int observed_pass(nb_tensor *root, uint64_t *wall_ns) {
    void (*prev)(const nb__node *, uint64_t, uint64_t, int) = nb__node_observer;
    atomic_store(&obs_len, 0);
    nb__node_observer = observe;
    uint64_t t0 = nb__now_ns();
    int rc = nb_backward_ex(root, NULL, &(nb_backward_opts){.retain_graph = true});
    *wall_ns = nb__now_ns() - t0;
    nb__node_observer = prev;
    return rc;
}

static int obs_open(int nodes) {
    obs_buf = malloc(sizeof *obs_buf * ((size_t)nodes + 1));
    if (!obs_buf) return nb__err(NB_ENOMEM, "schedsim: out of memory");
    obs_cap = nodes + 1;
    return 0;
}

static void obs_close(void) {
    free(obs_buf);
    obs_buf = NULL;
    obs_cap = 0;
}

static int check_root(nb_tensor *root) {
    if (!root) return nb__err(NB_ENULLARG, "schedsim: root is NULL");
    if (!nb__grad_fn(root) || nb_numel(root) != 1)
        return nb__err(NB_EINVAL, "schedsim: root must be a scalar made by ops that require grad (has shape %s, %s)",
                       nb__shape_str(root), nb__grad_fn(root) ? "a grad_fn" : "no grad_fn");
    return 0;
}

int nb__simgraph_record(nb__simgraph *g, nb_tensor *root, int reps) {
    if (!g) return nb__err(NB_ENULLARG, "schedsim: graph is NULL");
    int rc = check_root(root);
    if (rc) return rc;
    if (reps < 1) return nb__err(NB_EINVAL, "schedsim: reps %d (need >= 1)", reps);
    nb__node **v = NULL;
    double *samples = NULL, *serial = NULL;
    int n = rc = walk(nb__grad_fn(root), &v);
    if (rc < 0) goto fail;
    rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = nb__simgraph_add_node(g, 0, v[i]->name) < 0;
    for (int i = 0; i < n && !rc; i++)
        for (int e = 0; e < v[i]->nin && !rc; e++)
            if (v[i]->edges[e].node) rc = nb__simgraph_add_dep(g, i, find_node(v, n, v[i]->edges[e].node));
    if (rc) goto fail_code;
    samples = calloc((size_t)n * (size_t)reps + 1, sizeof *samples);
    serial = calloc((size_t)reps, sizeof *serial);
    if (!samples || !serial) {
        rc = nb__err(NB_ENOMEM, "schedsim: out of memory");
        goto fail;
    }
    if ((rc = obs_open(n))) goto fail;
    for (int r = 0; r < reps; r++) {
        uint64_t wall;
        for (int i = 0; i < n; i++)   /* as a training step's zero_grad: leaves get fresh .grad */
            for (int e = 0; e < v[i]->nin; e++)
                nb_zero_grad(v[i]->edges[e].leaf);
        if ((rc = observed_pass(root, &wall))) goto fail;
        double in_nodes = 0;
        int len = atomic_load(&obs_len) < obs_cap ? atomic_load(&obs_len) : obs_cap;
        for (int k = 0; k < len; k++) {
            int i = find_node(v, n, obs_buf[k].n);
            double dt = (double)(obs_buf[k].t1 - obs_buf[k].t0) * 1e-9;
            if (i >= 0) samples[(size_t)i * (size_t)reps + (size_t)r] += dt;
            in_nodes += dt;
        }
        serial[r] = fmax(0.0, (double)wall * 1e-9 - in_nodes);
    }
    for (int i = 0; i < n; i++) {   /* the median of each node's reps */
        double *s = samples + (size_t)i * (size_t)reps;
        qsort(s, (size_t)reps, sizeof *s, cmp_double);
        g->cost[i] = reps % 2 ? s[reps / 2] : 0.5 * (s[reps / 2 - 1] + s[reps / 2]);
    }
    qsort(serial, (size_t)reps, sizeof *serial, cmp_double);
    g->serial = reps % 2 ? serial[reps / 2] : 0.5 * (serial[reps / 2 - 1] + serial[reps / 2]);
    obs_close();
    free(samples);
    free(serial);
    free(v);
    return 0;
fail_code:
    rc = nb_last_error_code() ? nb_last_error_code() : NB_EINVAL;
fail:
    obs_close();
    free(samples);
    free(serial);
    free(v);
    nb__simgraph_free(g);
    return rc;
}

int nb__sim_trace_pass(nb_tensor *root, double *nodes_span_s, double *wall_s, int *workers_seen) {
    if (!nodes_span_s || !wall_s || !workers_seen) return nb__err(NB_ENULLARG, "schedsim: NULL result pointer");
    int rc = check_root(root);
    if (rc) return rc;
    nb__node **v = NULL;
    int n = walk(nb__grad_fn(root), &v);
    if (n < 0) return n;
    free(v);
    if ((rc = obs_open(n))) return rc;
    uint64_t wall;
    if ((rc = observed_pass(root, &wall))) {
        obs_close();
        return rc;
    }
    int len = atomic_load(&obs_len) < obs_cap ? atomic_load(&obs_len) : obs_cap;
    uint64_t first = UINT64_MAX, last = 0;
    uint64_t seen[4] = {0};   /* workers 0..255 */
    int distinct = 0;
    for (int k = 0; k < len; k++) {
        if (obs_buf[k].t0 < first) first = obs_buf[k].t0;
        if (obs_buf[k].t1 > last) last = obs_buf[k].t1;
        unsigned w = (unsigned)obs_buf[k].worker & 255u;
        if (!(seen[w / 64] >> (w % 64) & 1)) {
            seen[w / 64] |= 1ull << (w % 64);
            distinct++;
        }
    }
    *nodes_span_s = len ? (double)(last - first) * 1e-9 : 0;
    *wall_s = (double)wall * 1e-9;
    *workers_seen = distinct;
    obs_close();
    return 0;
}
