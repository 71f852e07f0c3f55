/* test_schedsim.c — the schedule simulator on hand-built graphs whose
 * makespans are known exactly (chain, independent branches, diamond, a case
 * where the policy matters, dispatch overhead, the serial part), bounds that
 * every greedy schedule meets on random graphs, bad input, and the recorder
 * on a small real backward graph (structure only: its costs are timings).
 *
 * Costs are small integers, exact in binary, so makespans compare with ==.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/schedsim.h"
#include "testutil.h"

static int sim_node(nb__simgraph *g, double cost) {
    int i = nb__simgraph_add_node(g, cost, NULL);
    cr_assert_geq(i, 0, "add_node: %s", nb_last_error());
    return i;
}

static void sim_dep(nb__simgraph *g, int before, int after) {
    cr_assert_eq(nb__simgraph_add_dep(g, before, after), 0, "add_dep: %s", nb_last_error());
}

static nb__sim_result sim(const nb__simgraph *g, int workers, double overhead, nb__sim_policy pol) {
    nb__sim_result r;
    nb__sim_opts o = {.workers = workers, .overhead = overhead, .policy = pol};
    cr_assert_eq(nb__sim_run(g, &o, &r), 0, "sim_run: %s", nb_last_error());
    return r;
}

/* k branches of len nodes each (cost c), hanging off a root of cost root_cost
 * (no root when root_cost < 0): the shape of a backward through parallel
 * branches, where the loss's node runs first. */
static void build_branches(nb__simgraph *g, int k, int len, double c, double root_cost) {
    int root = root_cost >= 0 ? sim_node(g, root_cost) : -1;
    for (int b = 0; b < k; b++) {
        int prev = root;
        for (int j = 0; j < len; j++) {
            int i = sim_node(g, c);
            if (prev >= 0) sim_dep(g, prev, i);
            prev = i;
        }
    }
}

Test(schedsim, chain_has_speedup_one) {
    nb__simgraph g = {0};
    int prev = -1;
    for (int i = 0; i < 10; i++) {
        int n = sim_node(&g, 3);
        if (prev >= 0) sim_dep(&g, prev, n);
        prev = n;
    }
    int ps[] = {1, 2, 4, 64};
    for (int pol = 0; pol < NB__SIM_POLICY_COUNT; pol++)
        for (int k = 0; k < 4; k++) {
            nb__sim_result r = sim(&g, ps[k], 0, (nb__sim_policy)pol);
            cr_expect_eq(r.makespan, 30.0, "P=%d: makespan %g", ps[k], r.makespan);
            cr_expect_eq(r.work, 30.0);
            cr_expect_eq(r.critical, 30.0);
            cr_expect_eq(r.speedup, 1.0);
            cr_expect_eq(r.bound, 1.0);
        }
    nb__simgraph_free(&g);
}

Test(schedsim, independent_branches_scale_to_min_p_k) {
    for (int with_root = 0; with_root < 2; with_root++) {
        nb__simgraph g = {0};
        build_branches(&g, 8, 4, 2, with_root ? 0 : -1);
        int ps[] = {1, 2, 3, 4, 8, 16, 64};
        for (int pol = 0; pol < NB__SIM_POLICY_COUNT; pol++)
            for (int k = 0; k < 7; k++) {
                int p = ps[k];
                nb__sim_result r = sim(&g, p, 0, (nb__sim_policy)pol);
                /* 32 equal nodes, always enough ready work: ceil(32/P) rounds of 2 */
                double want = p >= 8 ? 8.0 : 2.0 * ((32 + p - 1) / p);
                cr_expect_eq(r.makespan, want, "root %d policy %d P=%d: makespan %g, expected %g", with_root, pol, p,
                             r.makespan, want);
                if (8 % p == 0 || p >= 8)
                    cr_expect_eq(r.speedup, (double)(p < 8 ? p : 8), "P=%d: speedup %g", p, r.speedup);
                cr_expect_eq(r.critical, 8.0);
                cr_expect_eq(r.bound, 8.0);
            }
        nb__simgraph_free(&g);
    }
}

Test(schedsim, three_branches_on_two_workers) {
    nb__simgraph g = {0};
    build_branches(&g, 3, 2, 1, -1);   /* 6 unit nodes: greedy packs them into 3 rounds */
    nb__sim_result r = sim(&g, 2, 0, NB__SIM_POLICY_FIFO);
    cr_expect_eq(r.makespan, 3.0);
    cr_expect_eq(r.utilisation, 1.0);
    nb__simgraph_free(&g);
}

Test(schedsim, diamond) {
    nb__simgraph g = {0};
    int a = sim_node(&g, 1), b = sim_node(&g, 2), c = sim_node(&g, 3), d = sim_node(&g, 1);
    sim_dep(&g, a, b);
    sim_dep(&g, a, c);
    sim_dep(&g, b, d);
    sim_dep(&g, c, d);
    nb__sim_result r1 = sim(&g, 1, 0, NB__SIM_POLICY_FIFO);
    cr_expect_eq(r1.makespan, 7.0);
    cr_expect_eq(r1.speedup, 1.0);
    for (int p = 2; p <= 8; p *= 2) {
        nb__sim_result r = sim(&g, p, 0, NB__SIM_POLICY_FIFO);
        cr_expect_eq(r.makespan, 5.0, "P=%d: makespan %g", p, r.makespan);
        cr_expect_eq(r.speedup, 7.0 / 5.0);
        cr_expect_eq(r.critical, 5.0);
        cr_expect_eq(r.bound, 7.0 / 5.0);
    }
    /* with a dispatch overhead of 1 per node: P=1 runs 4 more, the critical path 3 more */
    cr_expect_eq(sim(&g, 1, 1, NB__SIM_POLICY_FIFO).makespan, 11.0);
    nb__sim_result r = sim(&g, 2, 1, NB__SIM_POLICY_FIFO);
    cr_expect_eq(r.makespan, 8.0);
    cr_expect_eq(r.critical, 8.0);
    cr_expect_eq(r.speedup, 7.0 / 8.0);
    nb__simgraph_free(&g);
}

Test(schedsim, critical_path_policy_beats_fifo_where_it_should) {
    /* three unit nodes ready at once; only the third leads on, to a node of 3 */
    nb__simgraph g = {0};
    sim_node(&g, 1);
    sim_node(&g, 1);
    int c = sim_node(&g, 1), d = sim_node(&g, 3);
    sim_dep(&g, c, d);
    cr_expect_eq(sim(&g, 2, 0, NB__SIM_POLICY_FIFO).makespan, 5.0);      /* c waits a round */
    cr_expect_eq(sim(&g, 2, 0, NB__SIM_POLICY_CRITICAL).makespan, 4.0);  /* c first */
    cr_expect_eq(sim(&g, 3, 0, NB__SIM_POLICY_FIFO).makespan, 4.0);
    nb__simgraph_free(&g);
}

Test(schedsim, serial_part_is_added_once) {
    nb__simgraph g = {0};
    build_branches(&g, 4, 1, 5, -1);
    g.serial = 10;
    nb__sim_result r = sim(&g, 4, 0, NB__SIM_POLICY_FIFO);
    cr_expect_eq(r.makespan, 15.0);
    cr_expect_eq(r.work, 30.0);
    cr_expect_eq(r.speedup, 2.0);
    cr_expect_eq(r.critical, 15.0);
    cr_expect_eq(r.utilisation, 1.0);
    nb__simgraph_free(&g);
}

Test(schedsim, empty_graph) {
    nb__simgraph g = {0};
    nb__sim_result r = sim(&g, 4, 1, NB__SIM_POLICY_FIFO);
    cr_expect_eq(r.makespan, 0.0);
    cr_expect_eq(r.speedup, 1.0);
    nb__simgraph_free(&g);
}

/* Greedy list scheduling on any DAG meets max(work/P, critical) <= T <=
 * work/P + critical (Graham), and T = work + n*overhead at P = 1. */
Test(schedsim, random_dags_meet_the_greedy_bounds) {
    uint64_t s = 12345;
    for (int trial = 0; trial < 200; trial++) {
        nb__simgraph g = {0};
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        int n = 1 + (int)((s >> 33) % 60);
        double work = 0;
        for (int i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            double c = (double)((s >> 40) % 16);
            work += c;
            sim_node(&g, c);
            for (int j = 0; j < i; j++) {   /* edges only forward: acyclic */
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                if ((s >> 35) % 100 < 8) sim_dep(&g, j, i);
            }
        }
        for (int pol = 0; pol < NB__SIM_POLICY_COUNT; pol++) {
            nb__sim_result r1 = sim(&g, 1, 0.5, (nb__sim_policy)pol);
            cr_expect_eq(r1.makespan, work + 0.5 * n, "trial %d", trial);
            int ps[] = {2, 3, 4, 8, 64};
            for (int k = 0; k < 5; k++) {
                nb__sim_result r = sim(&g, ps[k], 0, (nb__sim_policy)pol);
                double lo = fmax(work / ps[k], r.critical), hi = work / ps[k] + r.critical;
                cr_expect(r.makespan >= lo - 1e-9 && r.makespan <= hi + 1e-9,
                          "trial %d P=%d: makespan %g outside [%g, %g]", trial, ps[k], r.makespan, lo, hi);
                cr_expect(r.speedup <= r.bound + 1e-12 && r.speedup <= ps[k] + 1e-12);
            }
        }
        nb__simgraph_free(&g);
    }
}

Test(schedsim, bad_input_is_an_error) {
    nb__simgraph g = {0};
    cr_expect_eq(nb__simgraph_add_node(&g, -1, NULL), NB_EINVAL);
    cr_expect_eq(nb__simgraph_add_node(&g, NAN, NULL), NB_EINVAL);
    cr_expect_eq(nb__simgraph_add_node(NULL, 1, NULL), NB_ENULLARG);
    int a = sim_node(&g, 1), b = sim_node(&g, 1);
    cr_expect_eq(nb__simgraph_add_dep(&g, a, 7), NB_ERANGE);
    cr_expect_eq(nb__simgraph_add_dep(&g, a, a), NB_ERANGE);
    cr_expect_eq(nb__simgraph_add_dep(&g, -1, a), NB_ERANGE);
    nb__sim_result r;
    nb__sim_opts o = {.workers = 0};
    cr_expect_eq(nb__sim_run(&g, &o, &r), NB_EINVAL);
    o = (nb__sim_opts){.workers = 2, .overhead = -1};
    cr_expect_eq(nb__sim_run(&g, &o, &r), NB_EINVAL);
    o = (nb__sim_opts){.workers = 2, .policy = NB__SIM_POLICY_COUNT};
    cr_expect_eq(nb__sim_run(&g, &o, &r), NB_EINVAL);
    cr_expect_eq(nb__sim_run(NULL, &o, &r), NB_ENULLARG);
    sim_dep(&g, a, b);
    sim_dep(&g, b, a);
    o = (nb__sim_opts){.workers = 2};
    cr_expect_eq(nb__sim_run(&g, &o, &r), NB_EINVAL);
    cr_expect(strstr(nb_last_error(), "cycle") != NULL, "%s", nb_last_error());
    nb__simgraph_free(&g);
    nb__simgraph_free(&g);   /* a freed graph is a zeroed one */
    nb__simgraph_free(NULL);
}

/* ---- the recorder on a real backward graph ---- */

/* loss = sum(exp(tanh(x)) + 2 tanh(x)): five nodes, one fan-out (tanh's
 * output feeds exp and the scaling) and one fan-in (the add). */
static nb_tensor *sim_loss(nb_tensor *x) {
    nb_tensor *y = nb_tanh(x);
    return nb_sum_all(nb_add(nb_exp(y), nb_mul_scalar(y, 2.0)));
}

static bool has_dep(const nb__simgraph *g, int a, int b) {
    for (int e = 0; e < g->ne; e++)
        if (g->edge[e][0] == a && g->edge[e][1] == b) return true;
    return false;
}

Test(schedsim, records_a_backward_graph) {
    nb_scope_begin();
    const double xv[4] = {0.5, -1.0, 2.0, 0.25};
    nb_tensor *x = tu_tensor(NB_SHAPE(4), NB_F32, xv);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    nb_tensor *loss = sim_loss(x);
    cr_assert_not_null(loss, "%s", nb_last_error());
    nb__simgraph g = {0};
    cr_assert_eq(nb__simgraph_record(&g, loss, 3), 0, "%s", nb_last_error());
    /* serial order: sum 0, add 1, mul 2, exp 3, tanh 4 (descending seq) */
    cr_assert_eq(g.n, 5);
    cr_expect_eq(g.ne, 5);
    cr_expect(has_dep(&g, 0, 1) && has_dep(&g, 1, 2) && has_dep(&g, 1, 3) && has_dep(&g, 2, 4) && has_dep(&g, 3, 4));
    cr_expect_str_eq(g.name[4], nb_grad_fn_name(nb_tanh(x)));
    cr_expect_str_eq(g.name[0], nb_grad_fn_name(loss));
    for (int i = 0; i < g.n; i++)
        cr_expect(g.cost[i] > 0 && g.cost[i] < 1.0, "node %d cost %g s", i, g.cost[i]);
    cr_expect(g.serial >= 0);
    /* .grad holds one pass's gradient, as from a fresh graph */
    nb_tensor *x2 = tu_tensor(NB_SHAPE(4), NB_F32, xv);
    cr_assert_eq(nb_set_requires_grad(x2, true), 0);
    cr_assert_eq(nb_backward(sim_loss(x2), NULL), 0);
    cr_expect(tu_max_abs_diff(nb_grad(x), nb_grad(x2)) == 0.0);
    /* the recorded graph simulates: two workers never lose, the exp/mul pair overlaps */
    nb__sim_result r1 = sim(&g, 1, 0, NB__SIM_POLICY_FIFO), r2 = sim(&g, 2, 0, NB__SIM_POLICY_FIFO);
    cr_expect(r2.makespan <= r1.makespan);
    cr_expect(fabs(r2.makespan - r2.critical) <= 1e-12 * r2.critical, "%g vs %g", r2.makespan, r2.critical);
    /* one traced pass */
    double span, wall;
    int workers;
    cr_assert_eq(nb__sim_trace_pass(loss, &span, &wall, &workers), 0, "%s", nb_last_error());
    cr_expect(workers >= 1 && span > 0 && span <= wall, "workers %d span %g wall %g", workers, span, wall);
    nb__simgraph_free(&g);
    nb_scope_end();
}

Test(schedsim, recorder_rejects_bad_roots) {
    nb_scope_begin();
    nb__simgraph g = {0};
    nb_tensor *x = nb_ones(NB_SHAPE(3), NB_F32);
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    double a, b;
    int w;
    cr_expect_eq(nb__simgraph_record(&g, NULL, 3), NB_ENULLARG);
    cr_expect_eq(nb__simgraph_record(&g, x, 3), NB_EINVAL);            /* a leaf: no graph */
    cr_expect_eq(nb__simgraph_record(&g, nb_tanh(x), 3), NB_EINVAL);   /* not a scalar */
    cr_expect_eq(nb__simgraph_record(&g, nb_sum_all(x), 0), NB_EINVAL);
    cr_expect_eq(nb__sim_trace_pass(nb_tanh(x), &a, &b, &w), NB_EINVAL);
    cr_expect_eq(nb__sim_trace_pass(nb_sum_all(x), NULL, &b, &w), NB_ENULLARG);
    cr_expect_eq(g.n, 0);
    nb_scope_end();
}
