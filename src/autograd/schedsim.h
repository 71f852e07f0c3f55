/* schedsim.h — the schedule simulator: predicts how a backward graph would
 * scale on P threads, so many-core behaviour can be reasoned about on a
 * machine with few cores.
 *
 * The core takes a plain graph (nb__simgraph: nodes with costs, and
 * dependency edges "before -> after") and replays it with greedy list
 * scheduling on P virtual workers: whenever a worker is idle and a node is
 * ready (all its dependencies finished), the node starts; each node occupies
 * its worker for cost + overhead (the per-node dispatch cost of an executor).
 * Nothing here touches autograd, so tests can build graphs by hand.
 *
 * The recorder (nb__simgraph_record) builds such a graph from a real backward
 * graph: one sim node per backward node reachable from the root, indexed in
 * the serial executor's order (descending seq), one dependency per edge
 * (a consumer's backward runs before its producer's), and costs measured by
 * running serial backward passes with nb__node_observer set.
 *
 * Model limits (say them when quoting numbers): nodes run at their measured
 * single-worker cost (no intra-op threads, no memory-bandwidth contention,
 * no cache effects between workers); time the engine spends outside nodes
 * (planning, leaf accumulation) is a serial part added once.
 */
#ifndef NB_AUTOGRAD_SCHEDSIM_H
#define NB_AUTOGRAD_SCHEDSIM_H

#include <nabla.h>

#include <stdint.h>

/* A dependency graph with node costs. Zero-initialise, then add nodes and
 * deps; nb__simgraph_free releases it (and accepts a zeroed graph). */
typedef struct nb__simgraph {
    int n;                 /* nodes: indices 0 .. n-1 */
    int ncap;              /* capacity of cost and name */
    double *cost;          /* n entries: run time of each node alone (any unit) */
    const char **name;     /* n entries: labels (borrowed strings), may be NULL each */
    int ne;                /* dependency edges */
    int ecap;              /* capacity of edge */
    int (*edge)[2];        /* ne pairs {before, after}: after starts once before finished */
    double serial;         /* time outside the nodes (planning, leaf sums), run once */
} nb__simgraph;

/* Appends a node; returns its index (>= 0) or NB_ENOMEM / NB_EINVAL (cost < 0
 * or not finite). The graph is unchanged on failure. */
int nb__simgraph_add_node(nb__simgraph *g, double cost, const char *name);
/* Records that `after` may start only when `before` has finished. Returns 0,
 * NB_ERANGE for an index out of range or before == after, NB_ENOMEM. */
int nb__simgraph_add_dep(nb__simgraph *g, int before, int after);
void nb__simgraph_free(nb__simgraph *g);

/* Which ready node an idle worker takes. */
typedef enum nb__sim_policy {
    NB__SIM_POLICY_FIFO,      /* earliest ready first, ties by index (serial order) */
    NB__SIM_POLICY_CRITICAL,  /* longest remaining path first (HLFET), ties by index */
    NB__SIM_POLICY_COUNT
} nb__sim_policy;

typedef struct nb__sim_opts {
    int workers;              /* P >= 1 virtual threads */
    double overhead;          /* added to every node's time on a worker (dispatch) */
    nb__sim_policy policy;    /* ready-queue order */
} nb__sim_opts;

typedef struct nb__sim_result {
    double makespan;          /* serial part + finish time of the last node */
    double work;              /* serial part + sum of costs: the 1-thread serial time */
    double critical;          /* serial part + longest path (costs + overhead) */
    double speedup;           /* work / makespan */
    double bound;             /* work / critical: no P does better */
    double utilisation;       /* node time / (P * node makespan), 0..1 */
} nb__sim_result;

/* Simulates g under opts. Returns 0 and fills *r; NB_EINVAL for workers < 1,
 * overhead < 0, an unknown policy or a dependency cycle; NB_ENOMEM. */
int nb__sim_run(const nb__simgraph *g, const nb__sim_opts *opts, nb__sim_result *r);

/* ---- recording a real backward graph (autograd) ---- */

/* Builds g (zeroed by the caller) from the backward graph below root: one
 * node per backward node reachable from root's grad_fn, costs 0, deps along
 * the edges. Then runs `reps` backward passes of root (retain_graph, with
 * whatever executor is selected: run it with the serial one to measure costs)
 * with nb__node_observer set, and stores per node the median of its measured
 * times in seconds, and in g->serial the median of (wall time of the pass -
 * sum of its node times). root must be a scalar made by ops that require
 * grad. Before each pass the leaves' .grad is reset (nb_zero_grad), as in a
 * training step; after it they hold one pass's gradients. The observer is
 * process-wide: one recording at a time, and no other backward meanwhile.
 * Returns 0 or NB_E* (g is freed on failure). */
int nb__simgraph_record(nb__simgraph *g, nb_tensor *root, int reps);

/* One traced pass: runs nb_backward_ex(root, retain_graph) with the observer
 * set and returns the spread of the observed nodes (last end - first start),
 * the pass's wall time and how many distinct workers ran nodes. Used to
 * compare a prediction with what the executor did. Returns 0 or NB_E*. */
int nb__sim_trace_pass(nb_tensor *root, double *nodes_span_s, double *wall_s, int *workers_seen);

#endif
