/* test_parallel.c — the parallel backward executor and the thread pool.
 *
 * The oracle is the serial executor: for random graphs (chains, wide layers,
 * diamonds, fan-out/fan-in, random mixes; f32 and f64; several shapes) the
 * parallel executor must give bitwise the same leaf gradients at 1, 2, 3, 4
 * and 8 threads. Then hooks, retain_graph, create_graph, nb_autograd_grad,
 * custom functions, errors inside a backward (reported on the caller's
 * thread, nothing leaks, the pool still works), the node observer, and a
 * stress loop of 10,000 backward calls.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "nb_config.h"
#if NB_HAVE_OPENMP
#include <omp.h>
#endif

#include "autograd/autograd.h"
#include "testutil.h"

/* Under TSan (tests/autograd/tsan) everything runs ~10x slower: smaller sweeps. */
#ifdef NB_PAR_SMALL
#define PAR_SEEDS 3
#define PAR_STRESS 1000
#else
#define PAR_SEEDS 24
#define PAR_STRESS 10000
#endif

static void par_init(void) { nb_init(NULL); }
static void par_fini(void) {
    nb__backward = NB__BACKWARD_PARALLEL;
    nb__node_observer = NULL;
    nb_shutdown();
}

/* ---- random graphs ---- */
typedef struct rng { uint64_t s; } rng;
static uint32_t rnd(rng *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(r->s >> 33);
}
static int rndn(rng *r, int n) { return (int)(rnd(r) % (uint32_t)n); }

#define PAR_LEAVES 5

typedef struct pgraph {
    nb_tensor *leaf[PAR_LEAVES];   /* [m,n] x3, W [n,n], bias [1,n] (owned) */
    int m, n;
    nb_dtype dt;
} pgraph;

static void graph_leaves(pgraph *g, uint64_t seed, nb_dtype dt) {
    static const int sizes[] = {1, 3, 7, 16, 33};
    rng r = {seed * 7919 + 17};
    g->m = sizes[rndn(&r, 5)];
    g->n = sizes[rndn(&r, 5)];
    g->dt = dt;
    for (int i = 0; i < PAR_LEAVES; i++) {
        nb_dims d = i < 3 ? NB_SHAPE(g->m, g->n) : i == 3 ? NB_SHAPE(g->n, g->n) : NB_SHAPE(1, g->n);
        g->leaf[i] = nb_keep(nb_randn(d, dt, seed * 31 + (uint64_t)i));
        cr_assert_not_null(g->leaf[i], "%s", nb_last_error());
        cr_assert_eq(nb_set_requires_grad(g->leaf[i], true), 0);
    }
}

static void graph_free(pgraph *g) {
    for (int i = 0; i < PAR_LEAVES; i++) nb_release(g->leaf[i]);
}

/* One random op on a (and maybe b), all [m,n]. */
static nb_tensor *rand_op(rng *r, pgraph *g, nb_tensor *a, nb_tensor *b) {
    switch (rndn(r, 9)) {
    case 0: return nb_add(a, b);
    case 1: return nb_sub(a, b);
    case 2: return nb_tanh(nb_mul(a, b));
    case 3: return nb_tanh(a);
    case 4: return nb_sigmoid(a);
    case 5: return nb_mul_scalar(a, 0.75);
    case 6: return nb_tanh(nb_matmul(a, g->leaf[3]));
    case 7: return nb_add(a, g->leaf[4]);   /* broadcast: its backward reduces */
    default: return nb_mul(a, g->leaf[rndn(r, 3)]);
    }
}

enum { K_CHAIN, K_WIDE, K_DIAMOND, K_FAN, K_MIX, K_COUNT };

/* The loss of a random graph of `kind` (in the open scope). */
static nb_tensor *graph_loss(pgraph *g, uint64_t seed, int kind) {
    rng r = {seed * 104729 + (uint64_t)kind};
    nb_tensor *pool[256];
    int np = 0;
    for (int i = 0; i < 3; i++) pool[np++] = g->leaf[i];
    nb_tensor *loss = NULL;
    switch (kind) {
    case K_CHAIN: {
        nb_tensor *x = g->leaf[0];
        int len = 20 + rndn(&r, 120);
        for (int i = 0; i < len; i++) x = rand_op(&r, g, x, g->leaf[1 + rndn(&r, 2)]);
        loss = nb_sum_all(x);
        break;
    }
    case K_WIDE: {
        int w = 2 + rndn(&r, 15), depth = 1 + rndn(&r, 5);
        nb_tensor *layer[16], *next[16];
        for (int j = 0; j < w; j++) layer[j] = rand_op(&r, g, g->leaf[rndn(&r, 3)], g->leaf[rndn(&r, 3)]);
        for (int d = 0; d < depth; d++) {
            for (int j = 0; j < w; j++) next[j] = rand_op(&r, g, layer[j], layer[rndn(&r, w)]);
            memcpy(layer, next, sizeof layer);
        }
        loss = nb_sum_all(layer[0]);
        for (int j = 1; j < w; j++) loss = nb_add(loss, nb_sum_all(layer[j]));
        break;
    }
    case K_DIAMOND: {
        nb_tensor *x = g->leaf[0];
        int k = 2 + rndn(&r, 20);
        for (int i = 0; i < k; i++) {
            nb_tensor *a = rand_op(&r, g, x, g->leaf[1]), *b = rand_op(&r, g, x, g->leaf[2]);
            x = rndn(&r, 2) ? nb_add(a, b) : nb_tanh(nb_mul(a, b));
        }
        loss = nb_sum_all(x);
        break;
    }
    case K_FAN: {
        nb_tensor *x = nb_tanh(nb_add(g->leaf[0], g->leaf[1]));
        int k = 3 + rndn(&r, 30);
        nb_tensor *acc = NULL;
        for (int i = 0; i < k; i++) {
            nb_tensor *y = rand_op(&r, g, x, g->leaf[2]);
            acc = acc ? nb_add(acc, y) : y;
        }
        loss = nb_sum_all(acc);
        break;
    }
    default: {
        int steps = 5 + rndn(&r, 60);
        for (int i = 0; i < steps && np < 256; i++) {
            int lo = rndn(&r, 2) ? np - 1 - rndn(&r, np < 4 ? np : 4) : rndn(&r, np);
            pool[np] = rand_op(&r, g, pool[lo], pool[rndn(&r, np)]);
            np++;
        }
        loss = nb_sum_all(pool[np - 1]);
        for (int i = 3; i < np - 1; i += 1 + rndn(&r, 3)) loss = nb_add(loss, nb_mean_all(pool[i]));
    }
    }
    cr_assert_not_null(loss, "%s", nb_last_error());
    return loss;
}

/* Leaves' gradients as bytes (NULL grad: all 0xA5). */
static size_t grads_bytes(pgraph *g, unsigned char *out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < PAR_LEAVES; i++) {
        nb_tensor *gr = nb_grad(g->leaf[i]);
        size_t b = (size_t)nb_numel(g->leaf[i]) * nb_dtype_size(g->dt);
        cr_assert(n + b <= cap);
        if (gr) cr_assert_eq(nb_copy_to(gr, out + n, b), 0, "%s", nb_last_error());
        else memset(out + n, 0xA5, b);
        n += b;
        nb_zero_grad(g->leaf[i]);
    }
    return n;
}

static size_t run_once(pgraph *g, uint64_t seed, int kind, nb__backward_mode mode, unsigned char *out,
                       size_t cap) {
    nb__backward = mode;
    nb_scope_begin();
    nb_tensor *loss = graph_loss(g, seed, kind);
    int rc = nb_backward(loss, NULL);
    cr_assert_eq(rc, 0, "seed %llu kind %d: %s", (unsigned long long)seed, kind, nb_last_error());
    nb_scope_end();
    return grads_bytes(g, out, cap);
}

#define PAR_CAP (1 << 16)

static void bitwise_sweep(nb_dtype dt, int seeds) {
    static const int threads[] = {1, 2, 3, 4, 8};
    unsigned char *a = malloc(PAR_CAP), *b = malloc(PAR_CAP);
    cr_assert(a && b);
    for (int ti = 0; ti < 5; ti++) {
        cr_assert_eq(nb_set_num_threads(threads[ti]), 0, "%s", nb_last_error());
        for (int s = 0; s < seeds; s++) {
            pgraph g;
            graph_leaves(&g, (uint64_t)s + 1000u * (uint64_t)dt, dt);
            for (int kind = 0; kind < K_COUNT; kind++) {
                uint64_t seed = (uint64_t)s * 13 + (uint64_t)kind;
                size_t na = run_once(&g, seed, kind, NB__BACKWARD_SERIAL, a, PAR_CAP);
                size_t nb = run_once(&g, seed, kind, NB__BACKWARD_FORCE, b, PAR_CAP);
                cr_assert_eq(na, nb);
                cr_assert(!memcmp(a, b, na), "threads %d seed %d kind %d (%s, [%d,%d]): parallel != serial",
                          threads[ti], s, kind, nb_dtype_name(dt), g.m, g.n);
                nb = run_once(&g, seed, kind, NB__BACKWARD_PARALLEL, b, PAR_CAP);
                cr_assert(!memcmp(a, b, na), "threads %d seed %d kind %d: default executor != serial",
                          threads[ti], s, kind);
            }
            graph_free(&g);
        }
    }
    free(a);
    free(b);
}

Test(parallel, random_graphs_bitwise_f64, .init = par_init, .fini = par_fini) { bitwise_sweep(NB_F64, PAR_SEEDS); }
Test(parallel, random_graphs_bitwise_f32, .init = par_init, .fini = par_fini) { bitwise_sweep(NB_F32, PAR_SEEDS); }

/* ---- engine features under the parallel executor ---- */
static atomic_int hook_calls;
static nb_tensor *double_hook(nb_tensor *grad, void *user) {
    (void)user;
    atomic_fetch_add(&hook_calls, 1);
    return nb_mul_scalar(grad, 2.0);
}

/* y = tanh(x*w); z = y + sigmoid(y) + y*w, with a hook on y and on x. */
static nb_tensor *hooked_loss(nb_tensor *x, nb_tensor *w) {
    nb_tensor *y = nb_tanh(nb_mul(x, w));
    cr_assert_geq(nb_register_hook(y, double_hook, NULL), 0, "%s", nb_last_error());
    nb_tensor *z = nb_add(nb_add(y, nb_sigmoid(y)), nb_mul(y, w));
    return nb_sum_all(z);
}

/* Sets the thread count and makes the two leaves x and w (7, 5) of dtype dt. */
static void two_leaves(int threads, nb_tensor **x, nb_tensor **w, nb_dtype dt) {
    nb_set_num_threads(threads);
    *x = nb_keep(nb_randn(NB_SHAPE(7, 5), dt, 1));
    *w = nb_keep(nb_randn(NB_SHAPE(7, 5), dt, 2));
    cr_assert_eq(nb_set_requires_grad(*x, true), 0);
    cr_assert_eq(nb_set_requires_grad(*w, true), 0);
}

/* mode 0: the serial executor; mode 1: the parallel one, forced. */
static void use_mode(int mode) { nb__backward = mode ? NB__BACKWARD_FORCE : NB__BACKWARD_SERIAL; }

static void expect_same(nb_tensor *a, nb_tensor *b) {
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_eq(nb_numel(a), nb_numel(b));
    size_t n = (size_t)nb_numel(a) * nb_dtype_size(nb_dtype_of(a));
    unsigned char *pa = malloc(n), *pb = malloc(n);
    cr_assert(pa && pb);
    cr_assert_eq(nb_copy_to(a, pa, n), 0);
    cr_assert_eq(nb_copy_to(b, pb, n), 0);
    cr_assert(!memcmp(pa, pb, n), "tensors differ");
    free(pa);
    free(pb);
}

/* Serial run (mode 0): keeps references to a and b in ref[0..1]; parallel
 * run (mode 1): expects a and b bitwise equal to them. */
static void keep_or_expect(int mode, nb_tensor **ref, nb_tensor *a, nb_tensor *b) {
    if (!mode) {
        ref[0] = nb_retain(a);
        ref[1] = nb_retain(b);
    } else {
        expect_same(ref[0], a);
        expect_same(ref[1], b);
    }
}

/* Releases the kept references ref[0..1] and the two leaves. */
static void release_all(nb_tensor **ref, nb_tensor *x, nb_tensor *w) {
    nb_release(ref[0]);
    nb_release(ref[1]);
    nb_release(x);
    nb_release(w);
}

Test(parallel, hooks_run_once_and_match_serial, .init = par_init, .fini = par_fini) {
    nb_tensor *x, *w, *gs[2] = {0};
    two_leaves(4, &x, &w, NB_F64);
    cr_assert_geq(nb_register_hook(x, double_hook, NULL), 0);
    for (int mode = 0; mode < 2; mode++) {
        use_mode(mode);
        atomic_store(&hook_calls, 0);
        nb_scope_begin();
        cr_assert_eq(nb_backward(hooked_loss(x, w), NULL), 0, "%s", nb_last_error());
        nb_scope_end();
        cr_assert_eq(atomic_load(&hook_calls), 2, "hooks ran %d times", atomic_load(&hook_calls));
        if (!mode) {
            gs[0] = nb_retain(nb_grad(x));
            gs[1] = nb_retain(nb_grad(w));
            nb_zero_grad(x);
            nb_zero_grad(w);
        }
    }
    expect_same(gs[0], nb_grad(x));
    expect_same(gs[1], nb_grad(w));
    release_all(gs, x, w);
}

Test(parallel, retain_graph_then_second_backward, .init = par_init, .fini = par_fini) {
    nb_tensor *x, *w, *ref = NULL;
    two_leaves(3, &x, &w, NB_F32);
    for (int mode = 0; mode < 2; mode++) {
        use_mode(mode);
        nb_scope_begin();
        nb_tensor *l = hooked_loss(x, w);
        nb_backward_opts o = {.retain_graph = true};
        cr_assert_eq(nb_backward_ex(l, NULL, &o), 0, "%s", nb_last_error());
        cr_assert_eq(nb_backward(l, NULL), 0, "%s", nb_last_error());
        cr_assert_eq(nb_backward(l, NULL), NB_EAUTOGRAD, "a third backward must fail");
        cr_assert(strstr(nb_last_error(), "second time"), "%s", nb_last_error());
        nb_scope_end();
        if (!mode) ref = nb_retain(nb_grad(w));
        nb_zero_grad(x);
        if (mode) expect_same(ref, nb_grad(w));
        nb_zero_grad(w);
    }
    nb_release(ref);
    nb_release(x);
    nb_release(w);
}

Test(parallel, create_graph_double_backward, .init = par_init, .fini = par_fini) {
    nb_tensor *x, *w, *ref[2] = {0};
    two_leaves(4, &x, &w, NB_F64);
    for (int mode = 0; mode < 2; mode++) {
        use_mode(mode);
        nb_scope_begin();
        nb_tensor *y = nb_tanh(nb_mul(x, w));
        nb_tensor *l = nb_sum_all(nb_add(nb_mul(y, y), nb_mul(nb_sigmoid(y), x)));
        nb_tensor *gx[2];
        nb_tensor *ins[2] = {x, w};
        nb_grad_opts o = {.create_graph = true};
        cr_assert_eq(nb_autograd_grad(&l, 1, ins, 2, NULL, &o, gx), 0, "%s", nb_last_error());
        nb_tensor *gg = nb_add(nb_sum_all(nb_mul(gx[0], gx[0])), nb_sum_all(gx[1]));
        cr_assert_eq(nb_backward(gg, NULL), 0, "%s", nb_last_error());
        nb_scope_end();
        keep_or_expect(mode, ref, nb_grad(x), nb_grad(w));
        nb_zero_grad(x);
        nb_zero_grad(w);
    }
    release_all(ref, x, w);
}

Test(parallel, autograd_grad_prunes_and_leaves_grad_alone, .init = par_init, .fini = par_fini) {
    nb_tensor *x, *w, *ref[2] = {0};
    two_leaves(4, &x, &w, NB_F64);
    for (int mode = 0; mode < 2; mode++) {
        use_mode(mode);
        nb_scope_begin();
        nb_tensor *h = nb_tanh(nb_mul(x, x));   /* a non-leaf input */
        nb_tensor *a = nb_sigmoid(nb_add(h, w)), *b = nb_tanh(nb_mul(h, w));
        nb_tensor *outs[2] = {nb_sum_all(nb_mul(a, b)), nb_sum_all(nb_add(a, w))};
        nb_tensor *ins[2] = {h, w}, *got[2];
        cr_assert_eq(nb_autograd_grad(outs, 2, ins, 2, NULL, NULL, got), 0, "%s", nb_last_error());
        cr_assert_null(nb_grad(x));
        cr_assert_null(nb_grad(w));
        keep_or_expect(mode, ref, got[0], got[1]);
        nb_scope_end();
    }
    release_all(ref, x, w);
}

/* A custom function: y = 3x, whose backward fails when told to. */
static atomic_int fail_backward;
static nb_tensor *triple_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)ctx;
    (void)n;
    return nb_mul_scalar(in[0], 3.0);
}
static int triple_bwd(nb_ctx *ctx, nb_tensor *gout, nb_tensor **gin) {
    (void)ctx;
    if (atomic_load(&fail_backward)) return nb__err(NB_EINVAL, "TripleBackward: failing on purpose");
    gin[0] = nb_mul_scalar(gout, 3.0);
    return 0;
}
static const nb_function triple = {"TripleBackward", triple_fwd, triple_bwd};

/* 12 branches from x; those whose bit is set in `through` (bit i: branch
 * i) go through the custom function. */
static nb_tensor *branchy_loss_through(nb_tensor *x, unsigned through) {
    nb_tensor *acc = NULL;
    for (int i = 0; i < 12; i++) {
        nb_tensor *y = nb_tanh(nb_mul_scalar(x, 0.1 * (i + 1)));
        if (through & (1u << i)) y = nb_function_apply(&triple, &y, 1);
        y = nb_sigmoid(y);
        acc = acc ? nb_add(acc, y) : y;
    }
    return nb_sum_all(acc);
}

/* ... one of them (branch 7) through it. */
static nb_tensor *branchy_loss(nb_tensor *x) { return branchy_loss_through(x, 1u << 7); }

Test(parallel, custom_function_and_error_in_a_branch, .init = par_init, .fini = par_fini) {
    nb_set_num_threads(4);
    nb__backward = NB__BACKWARD_FORCE;
    nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(33, 7), NB_F32, 5));
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    uint64_t before = nb_memory_stats().live_tensors;
    for (int round = 0; round < 20; round++) {
        atomic_store(&fail_backward, round % 2 == 0);
        nb_scope_begin();
        int rc = nb_backward(branchy_loss(x), NULL);
        if (round % 2 == 0) {
            cr_assert_eq(rc, NB_EINVAL, "round %d: rc %d (%s)", round, rc, nb_last_error());
            cr_assert(strstr(nb_last_error(), "failing on purpose"), "%s", nb_last_error());
            cr_assert_null(nb_grad(x), "a failed backward must not accumulate");
        } else {
            cr_assert_eq(rc, 0, "round %d: %s", round, nb_last_error());   /* the pool still works */
            cr_assert_not_null(nb_grad(x));
        }
        nb_scope_end();
        nb_zero_grad(x);
    }
    cr_assert_eq(nb_memory_stats().live_tensors, before, "tensors leaked: %llu -> %llu",
                 (unsigned long long)before, (unsigned long long)nb_memory_stats().live_tensors);
    nb_release(x);
}

/* Several branches fail at once (5 of 12, on 2..8 threads): one error comes
 * back (the first; the others are dropped with the cancelled rest), no
 * gradient reaches x, nothing leaks, and the next backward on the same
 * pool works and matches the serial executor bitwise. */
Test(parallel, several_errors_at_once, .init = par_init, .fini = par_fini) {
    nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(33, 7), NB_F32, 6));
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    const unsigned failing = (1u << 1) | (1u << 4) | (1u << 6) | (1u << 9) | (1u << 11);
    uint64_t before = nb_memory_stats().live_tensors;
    for (int threads = 2; threads <= 8; threads *= 2) {
        cr_assert_eq(nb_set_num_threads(threads), 0);
        for (int round = 0; round < 6; round++) {
            nb__backward = NB__BACKWARD_FORCE;
            atomic_store(&fail_backward, 1);
            nb_scope_begin();
            int rc = nb_backward(branchy_loss_through(x, failing), NULL);
            cr_assert_eq(rc, NB_EINVAL, "%d threads, round %d: rc %d (%s)", threads, round, rc, nb_last_error());
            cr_assert(strstr(nb_last_error(), "failing on purpose"), "%s", nb_last_error());
            cr_assert_null(nb_grad(x), "a failed backward must not accumulate");
            nb_scope_end();
            atomic_store(&fail_backward, 0);   /* the same graph again, on the same pool: it works */
            nb_tensor *g[2] = {NULL, NULL};
            for (int m = 0; m < 2; m++) {
                nb__backward = m ? NB__BACKWARD_FORCE : NB__BACKWARD_SERIAL;
                nb_scope_begin();
                cr_assert_eq(nb_backward(branchy_loss_through(x, failing), NULL), 0, "%s", nb_last_error());
                nb_scope_end();
                cr_assert_not_null(nb_grad(x));
                g[m] = nb_keep(nb_clone(nb_grad(x)));
                nb_zero_grad(x);
            }
            expect_same(g[0], g[1]);
            nb_release(g[0]);
            nb_release(g[1]);
        }
    }
    cr_assert_eq(nb_memory_stats().live_tensors, before, "tensors leaked: %llu -> %llu",
                 (unsigned long long)before, (unsigned long long)nb_memory_stats().live_tensors);
    nb_release(x);
}

Test(parallel, anomaly_mode_names_the_op, .init = par_init, .fini = par_fini) {
    nb_set_num_threads(2);
    nb__backward = NB__BACKWARD_FORCE;
    bool prev = nb_set_anomaly_enabled(true);
    nb_tensor *x = nb_keep(nb_full(NB_SHAPE(4), NB_F64, 0.0));
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    nb_scope_begin();
    nb_tensor *l = nb_add(nb_sum_all(nb_sqrt(x)), nb_sum_all(nb_tanh(x)));   /* d sqrt(0) = inf */
    int rc = nb_backward(l, NULL);
    cr_assert_eq(rc, NB_ENUMERIC, "%d: %s", rc, nb_last_error());
    cr_assert(strstr(nb_last_error(), "nb_sqrt"), "%s", nb_last_error());
    nb_scope_end();
    nb_set_anomaly_enabled(prev);
    nb_release(x);
}

/* ---- the observer ---- */
static atomic_int observed, bad_worker;
static void observe(const nb__node *n, uint64_t t0, uint64_t t1, int worker) {
    (void)n;
    atomic_fetch_add(&observed, 1);
    if (t1 < t0 || worker < 0 || worker >= nb_num_threads()) atomic_fetch_add(&bad_worker, 1);
}

/* Nodes reachable from a root (walking the edges as a simulator would). */
static int count_nodes(nb__node *root) {
    nb__node *stack[512], *seen[512];
    int sp = 0, ns = 0;
    stack[sp++] = root;
    while (sp) {
        nb__node *n = stack[--sp];
        bool dup = false;
        for (int i = 0; i < ns && !dup; i++) dup = seen[i] == n;
        if (dup) continue;
        cr_assert(ns < 512);
        seen[ns++] = n;
        for (int i = 0; i < n->nin; i++)
            if (n->edges[i].node) {
                cr_assert_lt(n->edges[i].node->seq, n->seq, "edges go to older nodes");
                stack[sp++] = n->edges[i].node;
            }
    }
    return ns;
}

Test(parallel, observer_sees_every_node_once, .init = par_init, .fini = par_fini) {
    nb_set_num_threads(3);
    nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(16, 16), NB_F32, 9));
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    nb__node_observer = observe;
    for (int mode = 0; mode < 2; mode++) {
        use_mode(mode);
        atomic_store(&observed, 0);
        nb_scope_begin();
        atomic_store(&fail_backward, 0);
        nb_tensor *l = branchy_loss(x);
        int nodes = count_nodes(nb__grad_fn(l));
        cr_assert_eq(nb_backward(l, NULL), 0, "%s", nb_last_error());
        cr_assert_eq(atomic_load(&observed), nodes, "observed %d of %d nodes", atomic_load(&observed), nodes);
        nb_scope_end();
    }
    cr_assert_eq(atomic_load(&bad_worker), 0);
    nb__node_observer = NULL;
    nb_release(x);
}

/* ---- threads for kernels: a share each, never more than the pool ---- */
static atomic_int busy, max_busy, lone_share;
/* The forward of the custom functions below: y = 2x. */
static nb_tensor *double_fwd(nb_ctx *ctx, nb_tensor *const *in, int n) {
    (void)ctx;
    (void)n;
    return nb_mul_scalar(in[0], 2.0);
}

/* Keeps this thread busy for ns nanoseconds. */
static void busy_ns(long ns) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < ns);
}
/* One thread of a node's kernel: counts itself busy for ~20 us, keeping
 * the most seen at once in max_threads. */
static atomic_int threads_busy, max_threads;
static void kernel_thread_busy(void) {
    int now = atomic_fetch_add(&threads_busy, 1) + 1, m = atomic_load(&max_threads);
    while (now > m && !atomic_compare_exchange_weak(&max_threads, &m, now)) {
    }
    busy_ns(20000);
    atomic_fetch_sub(&threads_busy, 1);
}

static int probe_bwd(nb_ctx *ctx, nb_tensor *gout, nb_tensor **gin) {
    (void)ctx;
    int share = nb__pool_kernel_threads();
    int now = atomic_fetch_add(&busy, share) + share, m = atomic_load(&max_busy);
    while (now > m && !atomic_compare_exchange_weak(&max_busy, &m, now)) {
    }
    /* what a kernel of this node does: an OpenMP region with the threads it
     * is given (the count above is what the pool says; this is what runs) */
#if NB_HAVE_OPENMP
#pragma omp parallel
    kernel_thread_busy();
#else
    kernel_thread_busy();
#endif
    gin[0] = nb_mul_scalar(gout, 2.0);
    for (int i = 0; i < 20 && gin[0]; i++) (void)nb_tanh(gin[0]);   /* some work (freed by the node's scope): let nodes overlap */
    if (atomic_load(&lone_share) == 0) atomic_store(&lone_share, share);   /* the first: the root's, alone */
    atomic_fetch_sub(&busy, share);
    return gin[0] ? 0 : nb_last_error_code();
}
static const nb_function probe = {"ProbeBackward", double_fwd, probe_bwd};

Test(parallel, kernel_threads_shared_never_oversubscribed, .init = par_init, .fini = par_fini) {
    nb__backward = NB__BACKWARD_FORCE;
    for (int threads = 1; threads <= 4; threads++) {
        cr_assert_eq(nb_set_num_threads(threads), 0);
        nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(64, 64), NB_F32, 11));
        cr_assert_eq(nb_set_requires_grad(x, true), 0);
        for (int round = 0; round < 10; round++) {
            atomic_store(&max_busy, 0);
            atomic_store(&max_threads, 0);
            atomic_store(&lone_share, 0);
            nb_scope_begin();
            nb_tensor *acc = NULL;
            for (int i = 0; i < 8; i++) {   /* 8 independent branches, each through the probe */
                nb_tensor *in = nb_tanh(nb_mul_scalar(x, 0.1 * (i + 1)));
                nb_tensor *y = nb_function_apply(&probe, &in, 1);
                acc = acc ? nb_add(acc, y) : y;
            }
            nb_tensor *top = nb_function_apply(&probe, &acc, 1);   /* its backward runs first, alone */
            cr_assert_eq(nb_backward(nb_sum_all(top), NULL), 0, "%s", nb_last_error());
            nb_scope_end();
            cr_assert_leq(atomic_load(&max_busy), threads, "%d threads: kernels of concurrent nodes used %d",
                          threads, atomic_load(&max_busy));
            cr_assert_leq(atomic_load(&max_threads), threads,
                          "%d threads: %d threads ran kernel code at once", threads, atomic_load(&max_threads));

#if NB_HAVE_OPENMP   /* the OpenMP team is the pool (default NB_POOL=team) */
            const char *pool = getenv("NB_POOL");
            if (!pool || strcmp(pool, "threads"))
                cr_assert_eq(atomic_load(&lone_share), threads, "%d threads: a node alone got %d for its kernels",
                         threads, atomic_load(&lone_share));
#endif
        }
        nb_release(x);
    }
}

/* ---- idle threads sleep ---- */
/* A custom function (y = 2x) whose backward keeps its thread busy for 60 ms. */
static int spin_bwd(nb_ctx *ctx, nb_tensor *gout, nb_tensor **gin) {
    (void)ctx;
    busy_ns(60000000L);
    gin[0] = nb_mul_scalar(gout, 2.0);
    return gin[0] ? 0 : nb_last_error_code();
}
static const nb_function spin = {"SpinBackward", double_fwd, spin_bwd};

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec + 1e-6 * (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
static double wall_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Two branches, one of them a 60 ms node: while it runs, the other pool
 * threads have nothing to do and must sleep, not spin or yield in a loop
 * (which on an idle core burns it: the process would use ~2 cores for the
 * 60 ms). Asserted: the process's CPU time over the backward stays under
 * 1.5x its wall time, on 2 and 4 threads, each pool (team and threads).
 * Meaningful where the machine has 2 or more CPUs (else both are ~1x). */
Test(parallel, idle_threads_sleep_while_a_long_node_runs, .init = par_init, .fini = par_fini) {
    nb__backward = NB__BACKWARD_FORCE;
    nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(16, 16), NB_F32, 31));
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    for (int threads = 2; threads <= 4; threads += 2) {
        cr_assert_eq(nb_set_num_threads(threads), 0);
        for (int round = 0; round < 2; round++) {
            nb_scope_begin();
            nb_tensor *a = nb_tanh(nb_mul_scalar(x, 0.5));
            a = nb_function_apply(&spin, &a, 1);
            nb_tensor *b = nb_sigmoid(nb_mul_scalar(x, 2.0));
            nb_tensor *loss = nb_add(nb_sum_all(a), nb_sum_all(nb_tanh(b)));
            double c0 = cpu_s(), w0 = wall_s();
            cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
            double cpu = cpu_s() - c0, wall = wall_s() - w0;
            nb_scope_end();
            nb_zero_grad(x);
            cr_assert_geq(wall, 0.06);
            cr_assert_lt(cpu, 1.5 * wall, "%d threads: %.1f ms of CPU in %.1f ms: idle threads did not sleep",
                         threads, cpu * 1e3, wall * 1e3);
        }
    }
    nb_release(x);
}

/* ---- pinning follows NB_PIN / oversubscription after a resize ---- */
static atomic_int min_cpus;
static int aff_bwd(nb_ctx *ctx, nb_tensor *gout, nb_tensor **gin) {
    (void)ctx;
    cpu_set_t set;
    if (!sched_getaffinity(0, sizeof set, &set)) {
        int c = CPU_COUNT(&set), m = atomic_load(&min_cpus);
        while (c < m && !atomic_compare_exchange_weak(&min_cpus, &m, c)) {
        }
    }
    for (int i = 0; i < 10; i++) (void)nb_tanh(gout);   /* some work: let every thread take nodes */
    gin[0] = nb_mul_scalar(gout, 2.0);
    return gin[0] ? 0 : nb_last_error_code();
}
static const nb_function aff = {"AffinityBackward", double_fwd, aff_bwd};

Test(parallel, oversubscribed_pool_threads_are_not_left_pinned, .init = par_init, .fini = par_fini) {
    cpu_set_t all;
    cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
    int ncpu = CPU_COUNT(&all);
    nb__backward = NB__BACKWARD_FORCE;
    nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(32, 32), NB_F32, 21));
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    int cores = nb_topology().cores;
    int sizes[2] = {cores, 4 * ncpu};   /* pinned (compact), then more threads than cores: unpinned */
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(nb_set_num_threads(sizes[k]), 0);
        atomic_store(&min_cpus, 1 << 20);
        for (int round = 0; round < 5; round++) {
            nb_scope_begin();
            nb_tensor *acc = NULL;
            for (int i = 0; i < 16; i++) {
                nb_tensor *in = nb_tanh(nb_mul_scalar(x, 0.05 * (i + 1)));
                nb_tensor *y = nb_function_apply(&aff, &in, 1);
                acc = acc ? nb_add(acc, y) : y;
            }
            cr_assert_eq(nb_backward(nb_sum_all(acc), NULL), 0, "%s", nb_last_error());
            nb_scope_end();
        }
        const char *pin = getenv("NB_PIN");
        if (k == 0 && cores > 1 && (!pin || strcasecmp(pin, "none")))   /* compact (default) or scatter: pinned */
            cr_assert_lt(atomic_load(&min_cpus), ncpu, "%d threads on %d cores: no node ran on a pinned thread",
                         sizes[k], cores);
        if (k == 1)
            cr_assert_eq(atomic_load(&min_cpus), ncpu, "%d threads on %d CPUs: a node ran on a thread pinned to %d CPU(s)",
                         sizes[k], ncpu, atomic_load(&min_cpus));
    }
    nb_release(x);
}

/* ---- the pool ---- */
Test(parallel, set_num_threads_and_topology, .init = par_init, .fini = par_fini) {
    cr_assert_eq(nb_set_num_threads(0), NB_EINVAL);
    cr_assert_eq(nb_set_num_threads(3), 0);
    cr_assert_eq(nb_num_threads(), 3);
    nb_topology_info t = nb_topology();
    cr_assert_geq(t.cores, 1);
    cr_assert_geq(t.pus, t.cores);
    cr_assert_geq(t.packages, 1);
    cr_assert_geq(t.numa_nodes, 1);
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    cr_assert_not_null(f);
    nb_runtime_info(f);
    fclose(f);
    cr_assert(strstr(buf, "pool: 3 thread(s)"), "%s", buf);
    cr_assert(strstr(buf, "topology:"), "%s", buf);
    cr_assert_eq(nb_set_num_threads(1), 0);
    cr_assert_eq(nb_num_threads(), 1);
}

/* No NB_NUM_THREADS: the pool has one thread per physical core in the
 * affinity mask (not per hardware thread). */
Test(parallel, default_threads_are_the_cores_in_the_mask, .init = par_init, .fini = par_fini) {
    const char *e = getenv("NB_NUM_THREADS");
    char saved[32] = {0};
    if (e) snprintf(saved, sizeof saved, "%s", e);
    unsetenv("NB_NUM_THREADS");
    nb_shutdown();
    cr_assert_eq(nb_init(NULL), 0);
    int n = nb_num_threads(), cores = nb_topology().cores;
    if (saved[0]) setenv("NB_NUM_THREADS", saved, 1);
    cr_assert_eq(n, cores, "default %d threads, %d cores in the mask", n, cores);
}

/* With OpenMP the team is the default pool at every thread count (16 and
 * more too: pool.c); NB_POOL=threads starts separate workers. */
#if NB_HAVE_OPENMP
static void pool_line(char *buf, size_t size) {
    memset(buf, 0, size);
    FILE *f = fmemopen(buf, size - 1, "w");
    cr_assert_not_null(f);
    nb_runtime_info(f);
    fclose(f);
}
#endif

Test(parallel, default_pool_by_thread_count, .init = par_init, .fini = par_fini) {
#if NB_HAVE_OPENMP
    char buf[4096];
    unsetenv("NB_POOL");
    cr_assert_eq(nb_set_num_threads(8), 0);
    pool_line(buf, sizeof buf);
    cr_assert(strstr(buf, "OpenMP team, NB_POOL=team"), "8 threads: %s", buf);
    cr_assert_eq(nb_set_num_threads(17), 0);
    pool_line(buf, sizeof buf);
    cr_assert(strstr(buf, "OpenMP team, NB_POOL=team"), "17 threads: %s", buf);
    setenv("NB_POOL", "threads", 1);
    cr_assert_eq(nb_set_num_threads(17), 0);
    pool_line(buf, sizeof buf);
    cr_assert(strstr(buf, "worker(s) + the caller"), "NB_POOL=threads at 17: %s", buf);
    setenv("NB_POOL", "team", 1);
    cr_assert_eq(nb_set_num_threads(17), 0);
    pool_line(buf, sizeof buf);
    cr_assert(strstr(buf, "OpenMP team"), "NB_POOL=team: %s", buf);
    setenv("NB_POOL", "threads", 1);
    cr_assert_eq(nb_set_num_threads(2), 0);
    pool_line(buf, sizeof buf);
    cr_assert(strstr(buf, "worker(s) + the caller"), "NB_POOL=threads: %s", buf);
    unsetenv("NB_POOL");
#endif
    cr_assert_eq(nb_set_num_threads(1), 0);
}

/* ---- two callers at once ---- */
/* Each user thread runs backward on its own graphs (12 branches from its own
 * x) 60 times; the pool is shared, so one caller's tasks can run in the
 * other's region (pool.c, team_wait). Every gradient must equal the
 * serial executor's, computed first on the main thread. */
typedef struct caller_arg {
    nb_tensor *x;          /* this caller's leaf */
    const unsigned char *want;   /* serial gradient bytes */
    size_t bytes;
    int bad;               /* calls that failed or differed */
} caller_arg;

static void *caller_main(void *p) {
    caller_arg *c = p;
    unsigned char *got = malloc(c->bytes);
    for (int i = 0; got && i < 60; i++) {
        nb_scope_begin();
        int rc = nb_backward(branchy_loss_through(c->x, 0), NULL);
        nb_scope_end();
        nb_tensor *g = nb_grad(c->x);
        if (rc || !g || nb_copy_to(g, got, c->bytes) || memcmp(got, c->want, c->bytes)) c->bad++;
        nb_zero_grad(c->x);
    }
    free(got);
    return NULL;
}

Test(parallel, two_callers_at_once, .init = par_init, .fini = par_fini) {
    atomic_store(&fail_backward, 0);
    cr_assert_eq(nb_set_num_threads(2), 0);
    caller_arg c[2];
    unsigned char *want[2];
    for (int k = 0; k < 2; k++) {
        c[k].x = nb_keep(nb_randn(NB_SHAPE(48, 9), NB_F32, 70 + (uint64_t)k));
        cr_assert_eq(nb_set_requires_grad(c[k].x, true), 0);
        nb__backward = NB__BACKWARD_SERIAL;
        nb_scope_begin();
        cr_assert_eq(nb_backward(branchy_loss_through(c[k].x, 0), NULL), 0, "%s", nb_last_error());
        nb_scope_end();
        c[k].bytes = (size_t)nb_numel(c[k].x) * sizeof(float);
        want[k] = malloc(c[k].bytes);
        cr_assert_not_null(want[k]);
        cr_assert_eq(nb_copy_to(nb_grad(c[k].x), want[k], c[k].bytes), 0);
        nb_zero_grad(c[k].x);
        c[k].want = want[k];
        c[k].bad = 0;
    }
    nb__backward = NB__BACKWARD_FORCE;
    pthread_t th[2];
    for (int k = 0; k < 2; k++) cr_assert_eq(pthread_create(&th[k], NULL, caller_main, &c[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(c[k].bad, 0, "caller %d: %d of 60 backward calls failed or differed from serial", k, c[k].bad);
        free(want[k]);
        nb_release(c[k].x);
    }
}

/* ---- stress ---- */
Test(parallel, stress_10000_backward_calls, .init = par_init, .fini = par_fini) {
    nb_set_num_threads(4);
    nb_tensor *x = nb_keep(nb_randn(NB_SHAPE(3, 4), NB_F32, 3));
    nb_tensor *w = nb_keep(nb_randn(NB_SHAPE(3, 4), NB_F32, 4));
    cr_assert_eq(nb_set_requires_grad(x, true), 0);
    cr_assert_eq(nb_set_requires_grad(w, true), 0);
    uint64_t before = nb_memory_stats().live_tensors;
    rng r = {42};
    for (int it = 0; it < PAR_STRESS; it++) {
        nb__backward = it % 3 ? NB__BACKWARD_FORCE : NB__BACKWARD_PARALLEL;
        nb_scope_begin();
        nb_tensor *pool[16] = {x, w};
        int np = 2, steps = 2 + rndn(&r, 10);
        for (int i = 0; i < steps; i++) {
            nb_tensor *a = pool[rndn(&r, np)], *b = pool[rndn(&r, np)];
            pool[np++] = rndn(&r, 2) ? nb_tanh(nb_mul(a, b)) : nb_add(a, nb_sigmoid(b));
        }
        nb_tensor *l = nb_sum_all(pool[np - 1]);
        for (int i = 2; i < np - 1; i += 2) l = nb_add(l, nb_sum_all(pool[i]));
        cr_assert_eq(nb_backward(l, NULL), 0, "iteration %d: %s", it, nb_last_error());
        nb_scope_end();
    }
    nb_zero_grad(x);
    nb_zero_grad(w);
    cr_assert_eq(nb_memory_stats().live_tensors, before, "tensors leaked");
    nb_release(x);
    nb_release(w);
}
