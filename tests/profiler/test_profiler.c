/* test_profiler.c — the per-op profiler: call counts, FLOPs and bytes,
 * self/total time accounting (exact identities and against the wall clock of
 * a single-threaded run), ranges, the schedule, backward nodes linked to
 * their forward op, memory, the table, the Chrome trace (parsed back with
 * src/io/json.c, every slice properly nested, every flow matched), NB_PROFILE,
 * and that a profiler that is off records nothing.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/io.h"
#include "kernels/kernels.h"
#include "runtime/pool.h"
#include "runtime/profile.h"
#include "testutil.h"

static void init1(void) {   /* one thread: the serial executor, one lane */
    nb_init_opts o = {.num_threads = 1, .abort_on_error = -1};
    cr_assert_eq(nb_init(&o), 0, "%s", nb_last_error());
}

static nb_profiler_stat stat_of(const char *name) {
    nb_profiler_stat s;
    cr_assert_eq(nb_profiler_stats(name, &s), 0);
    return s;
}

static nb_tensor *randn(nb_dims shape, uint64_t seed) {
    nb_tensor *t = nb_randn(shape, NB_F32, seed);
    cr_assert_not_null(t, "%s", nb_last_error());
    return t;
}

static uint64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- off: nothing ---- */

Test(profiler, off_records_nothing) {
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(8, 8), 1);
    cr_assert_not(nb_profiler_enabled());
    cr_assert_not_null(nb_relu(nb_matmul(a, a)));
    nb_profile_range_begin("ignored");
    cr_assert_eq(nb_profile_range_end(), 0);
    cr_assert_eq(nb_profile_range_end(), NB_ESTATE, "unbalanced even while off");
    nb_profiler_summary s;
    cr_assert_eq(nb_profiler_summary_get(&s), 0);
    cr_assert_eq(s.events, 0);
    cr_assert_eq(stat_of("matmul").calls, 0);
    /* a profile that stopped records nothing more */
    cr_assert_eq(nb_profiler_start(NULL), 0);
    cr_assert(nb_profiler_enabled());
    cr_assert_not_null(nb_matmul(a, a));
    cr_assert_eq(nb_profiler_stop(), 0);
    cr_assert_not(nb_profiler_enabled());
    cr_assert_not_null(nb_matmul(a, nb_matmul(a, a)));
    cr_assert_eq(stat_of("matmul").calls, 1);
    cr_assert_eq(stat_of("relu").calls, 0);
    nb_scope_end();
    nb_shutdown();
}

/* ---- counts, FLOPs, bytes ---- */

Test(profiler, call_counts_equal_the_ops_run) {
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(16, 16), 1), *b = randn(NB_SHAPE(16, 16), 2);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    for (int i = 0; i < 5; i++) cr_assert_not_null(nb_matmul(a, b));
    for (int i = 0; i < 3; i++) cr_assert_not_null(nb_add(a, b));
    for (int i = 0; i < 2; i++) cr_assert_not_null(nb_relu(a));
    cr_assert_eq(nb_profiler_stop(), 0);
    nb_profiler_stat m = stat_of("matmul"), ad = stat_of("add"), r = stat_of("relu");
    cr_assert_eq(m.calls, 5, "matmul calls %llu", (unsigned long long)m.calls);
    cr_assert_eq(ad.calls, 3, "add calls %llu", (unsigned long long)ad.calls);
    cr_assert_eq(r.calls, 2, "relu calls %llu", (unsigned long long)r.calls);
    cr_assert_not_null(m.kernel);
    cr_assert(m.total_ns > 0 && m.self_ns == m.total_ns, "a kernel has nothing nested");
    nb_profiler_summary s;
    cr_assert_eq(nb_profiler_summary_get(&s), 0);
    cr_assert_eq(s.events, 10, "events %llu", (unsigned long long)s.events);
    cr_assert_eq(s.threads, 1);
    /* the rows: one per (op, kernel), sorted by self time */
    nb_profiler_stat rows[16];
    int n = nb_profiler_rows(rows, 16, false);
    cr_assert(n >= 3 && n <= 16, "rows %d", n);
    uint64_t calls = 0;
    for (int i = 0; i < n; i++) {
        calls += rows[i].calls;
        if (i) cr_assert(rows[i - 1].self_ns >= rows[i].self_ns);
    }
    cr_assert_eq(calls, 10);
    nb_scope_end();
    nb_shutdown();
}

Test(profiler, flops_and_bytes) {
    init1();
    nb_scope_begin();
    const int64_t M = 7, N = 33, K = 5;
    nb_tensor *a = randn(NB_SHAPE(M, K), 1), *b = randn(NB_SHAPE(K, N), 2);
    nb_tensor *ab = randn(NB_SHAPE(3, M, K), 3);
    nb_tensor *x = randn(NB_SHAPE(4, 6), 4), *w = randn(NB_SHAPE(9, 6), 5), *bias = randn(NB_SHAPE(9), 6);
    nb_tensor *img = randn(NB_SHAPE(2, 3, 8, 8), 7), *cw = randn(NB_SHAPE(4, 3, 3, 3), 8), *cb = randn(NB_SHAPE(4), 9);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    cr_assert_not_null(nb_matmul(a, b));
    nb_profiler_stop();
    nb_profiler_stat m = stat_of("matmul");
    cr_assert_eq(m.calls, 1);
    cr_assert_eq(m.flops, 2.0 * M * N * K, "matmul flops %g, expected 2*M*N*K = %g", m.flops, 2.0 * M * N * K);
    cr_assert_eq(m.bytes, 4.0 * (M * K + K * N + M * N), "matmul bytes %g", m.bytes);

    cr_assert_eq(nb_profiler_start(NULL), 0);   /* batched, b broadcast (stride 0: read once) */
    cr_assert_not_null(nb_matmul(ab, b));
    nb_profiler_stop();
    m = stat_of("matmul");
    cr_assert_eq(m.flops, 3 * 2.0 * M * N * K, "batched matmul flops %g", m.flops);
    cr_assert_eq(m.bytes, 4.0 * (3 * M * K + K * N + 3 * M * N), "batched matmul bytes %g", m.bytes);

    cr_assert_eq(nb_profiler_start(NULL), 0);
    cr_assert_not_null(nb_linear(x, w, bias), "%s", nb_last_error());
    nb_profiler_stop();
    nb_profiler_stat l = stat_of("linear");
    cr_assert_eq(l.calls, 1);
    cr_assert_eq(l.flops, 2.0 * 4 * 9 * 6 + 4 * 9, "linear flops %g", l.flops);

    cr_assert_eq(nb_profiler_start(NULL), 0);
    cr_assert_not_null(nb_conv2d(img, cw, cb, NULL), "%s", nb_last_error());
    nb_profiler_stop();
    nb_profiler_stat c = stat_of("conv2d");
    cr_assert_eq(c.calls, 1);
    double outs = 2.0 * 4 * 6 * 6;   /* (2, 4, 6, 6) */
    cr_assert_eq(c.flops, 2 * outs * 3 * 3 * 3 + outs, "conv2d flops %g", c.flops);

    cr_assert_eq(nb_profiler_start(NULL), 0);   /* element-wise: one per output; reduction: one per input */
    cr_assert_not_null(nb_sum_all(nb_mul(a, a)));
    nb_profiler_stop();
    cr_assert_eq(stat_of("mul").flops, (double)(M * K));
    cr_assert_eq(stat_of("mul").bytes, 4.0 * 3 * M * K);
    cr_assert_eq(stat_of("sum").flops, (double)(M * K));
    nb_scope_end();
    nb_shutdown();
}

/* ---- time accounting ---- */

/* Single thread, steps around each iteration: every moment of the loop is
 * some event's self time, so the self times sum to the wall time. */
Test(profiler, self_times_sum_to_wall_time) {
    init1();
    nb_scope_begin();
    nb_tensor *x = randn(NB_SHAPE(64, 128), 1), *w1 = randn(NB_SHAPE(128, 128), 2), *w2 = randn(NB_SHAPE(128, 10), 3);
    nb_set_requires_grad(w1, true);
    nb_set_requires_grad(w2, true);
    cr_assert_eq(nb_profiler_start(&(nb_profiler_opts){.record_steps = 8}), 0);
    uint64_t t0 = wall_ns();
    for (int i = 0; i < 8; i++) {
        nb_scope_begin();
        nb_tensor *y = nb_mean_all(nb_relu(nb_matmul(nb_tanh(nb_matmul(x, w1)), w2)));
        cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
        nb_scope_end();
        nb_profiler_step();
    }
    uint64_t wall = wall_ns() - t0;
    cr_assert_not(nb_profiler_enabled(), "the schedule ended recording after 8 steps");
    nb_profiler_summary s;
    cr_assert_eq(nb_profiler_summary_get(&s), 0);
    cr_assert_eq(s.steps, 8);
    cr_assert(fabs((double)s.self_ns - (double)wall) <= 0.05 * (double)wall,
              "self times sum to %llu ns, wall time %llu ns", (unsigned long long)s.self_ns,
              (unsigned long long)wall);
    /* exactly: the steps' total time is everyone's self time */
    nb_profiler_stat st = stat_of("step");
    cr_assert_eq(st.calls, 8);
    cr_assert_eq(st.total_ns, s.self_ns, "steps' total %llu != sum of self %llu", (unsigned long long)st.total_ns,
                 (unsigned long long)s.self_ns);
    nb_scope_end();
    nb_shutdown();
}

/* No frames: kernels back to back. Their self times are their totals and
 * never add up to more than the wall time (the gaps between them are the ops'
 * own bookkeeping, which a loaded machine can stretch: the 5% bound is
 * checked with steps above, where every gap belongs to an event). */
Test(profiler, kernel_self_times_fit_in_the_wall_time) {
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(128, 128), 1);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    uint64_t t0 = wall_ns();
    nb_tensor *y = a;
    for (int i = 0; i < 12; i++) y = nb_tanh(nb_matmul(y, a));
    uint64_t wall = wall_ns() - t0;
    nb_profiler_stop();
    cr_assert_not_null(y);
    nb_profiler_summary s;
    nb_profiler_summary_get(&s);
    cr_assert_eq(s.events, 24);
    nb_profiler_stat m = stat_of("matmul"), t = stat_of("tanh");
    cr_assert_eq(s.self_ns, m.total_ns + t.total_ns);
    cr_assert(s.self_ns > 0 && s.self_ns <= wall, "self %llu, wall %llu", (unsigned long long)s.self_ns,
              (unsigned long long)wall);
    cr_assert(s.wall_ns >= wall, "the recording window holds the loop");
    nb_scope_end();
    nb_shutdown();
}

Test(profiler, ranges_nest) {
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(32, 32), 1);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    nb_profile_range_begin("outer");
    nb_profile_range_begin("inner");
    cr_assert_not_null(nb_matmul(a, a));
    cr_assert_eq(nb_profile_range_end(), 0);
    cr_assert_not_null(nb_add(a, a));
    cr_assert_eq(nb_profile_range_end(), 0);
    cr_assert_eq(nb_profile_range_end(), NB_ESTATE, "no range is open");
    nb_profiler_stop();
    nb_profiler_stat o = stat_of("outer"), in = stat_of("inner"), m = stat_of("matmul"), ad = stat_of("add");
    cr_assert_eq(o.calls, 1);
    cr_assert_eq(in.calls, 1);
    cr_assert_str_eq(o.kernel, "range");
    /* self = total minus what nested inside, to the nanosecond */
    cr_assert_eq(in.total_ns, in.self_ns + m.total_ns);
    cr_assert_eq(o.total_ns, o.self_ns + in.total_ns + ad.total_ns);
    cr_assert(o.total_ns > in.total_ns && in.total_ns > m.total_ns);
    nb_scope_end();
    nb_shutdown();
}

Test(profiler, schedule_skips_then_records) {
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(16, 16), 1);
    cr_assert_eq(nb_profiler_start(&(nb_profiler_opts){.skip_steps = 2, .record_steps = 3}), 0);
    cr_assert_not(nb_profiler_enabled(), "skipping");
    nb_profile_range_begin("across the start");
    for (int i = 0; i < 10; i++) {
        if (i == 3) cr_assert_eq(nb_profile_range_end(), 0);
        cr_assert_not_null(nb_matmul(a, a));
        cr_assert_eq(nb_profiler_enabled(), i >= 2 && i < 5, "step %d", i);
        nb_profiler_step();
    }
    nb_profiler_stop();
    cr_assert_eq(stat_of("matmul").calls, 3, "matmul calls %llu", (unsigned long long)stat_of("matmul").calls);
    cr_assert_eq(stat_of("step").calls, 3);
    cr_assert_eq(stat_of("across the start").calls, 0);
    nb_profiler_summary s;
    nb_profiler_summary_get(&s);
    cr_assert_eq(s.steps, 3);
    cr_assert_eq(s.events, 3 + 3);
    nb_scope_end();
    nb_shutdown();
}

Test(profiler, backward_nodes_nest_their_kernels) {
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(8, 5), 1), *b = randn(NB_SHAPE(5, 3), 2);
    nb_set_requires_grad(a, true);
    nb_set_requires_grad(b, true);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    nb_tensor *y = nb_sum_all(nb_matmul(a, b));
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    nb_profiler_stop();
    nb_profiler_stat mm = stat_of("MmBackward"), m = stat_of("matmul");
    cr_assert_eq(mm.calls, 1);
    cr_assert_str_eq(mm.kernel, "backward");
    cr_assert_eq(m.calls, 3, "one forward and two backward matmuls, got %llu", (unsigned long long)m.calls);
    cr_assert(mm.total_ns > mm.self_ns, "the node's kernels are its children");
    cr_assert_eq(m.flops, 3 * 2.0 * 8 * 5 * 3);
    nb_scope_end();
    nb_shutdown();
}

Test(profiler, executor_hooks) {
    init1();
    cr_assert_eq(nb_profiler_start(NULL), 0);
    NB_PROF_WAIT_BEGIN();
    usleep(1000);
    NB_PROF_WAIT_END();
    NB_PROF_SYNC_BEGIN();
    NB_PROF_SYNC_END();
    NB_PROF_SYNC_END();   /* unmatched: ignored */
    nb_profiler_stop();
    nb_profiler_stat w = stat_of("executor wait");
    cr_assert_eq(w.calls, 1);
    cr_assert(w.total_ns >= 1000000, "waited %llu ns", (unsigned long long)w.total_ns);
    cr_assert_eq(stat_of("executor sync").calls, 1);
    nb_shutdown();
}

Test(profiler, memory_live_and_peak) {
    init1();
    nb_scope_begin();
    cr_assert_eq(nb_profiler_start(NULL), 0);
    nb_tensor *t = nb_zeros(NB_SHAPE(1000, 1000), NB_F32);
    cr_assert_not_null(t);
    nb_scope_end();   /* frees it */
    nb_profiler_stop();
    nb_profiler_summary s;
    nb_profiler_summary_get(&s);
    cr_assert(s.allocs >= 1 && s.frees >= 1);
    cr_assert(s.alloc_bytes >= 4000000);
    cr_assert(s.peak_bytes >= s.start_bytes + 4000000, "peak %lld, start %lld", (long long)s.peak_bytes,
              (long long)s.start_bytes);
    nb_shutdown();
}

/* ---- reports ---- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_not_null(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return s;
}

Test(profiler, table_has_the_rows) {
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(7, 5), 1), *b = randn(NB_SHAPE(5, 33), 2);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    for (int i = 0; i < 4; i++) cr_assert_not_null(nb_matmul(a, b));
    nb_profiler_stop();
    /* the kernel that served (the first-ranked one may decline: on an
     * AVX-512 CPU our AVX2 GEMM passes this call on to oneDNN) */
    char served[64];
    snprintf(served, sizeof served, "%s", nb__last_kernel());
    char path[] = "/tmp/nb_prof_tableXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_eq(nb_profiler_table(f, NB_PROFILER_SORT_SELF_TIME, 10), 0);
    cr_assert_eq(nb_profiler_table_by_shape(f, NB_PROFILER_SORT_CALLS, 0), 0);
    cr_assert_eq(nb_profiler_table(f, NB_PROFILER_SORT_COUNT, 10), NB_EINVAL);
    fclose(f);
    size_t n;
    char *s = slurp(path, &n);
    unlink(path);
    cr_assert(strstr(s, "Self ms") && strstr(s, "GFLOP/s"), "%s", s);
    char want[128];
    snprintf(want, sizeof want, "%-28s %-22s %7d", "matmul", served, 4);
    cr_assert(strstr(s, want), "no row '%s' in\n%s", want, s);
    cr_assert(strstr(s, "f32 [7,5], [5,33]"), "no input shapes in\n%s", s);
    free(s);
    nb_scope_end();
    nb_shutdown();
}

/* Every X slice of a lane nests in or follows the one before (a stack of
 * ends); every flow start has its finish. Returns the number of slices. */
static int check_trace(const char *path, int *nodes, int *flows) {
    size_t len;
    char *text = slurp(path, &len);
    nb__json j;
    cr_assert_eq(nb__json_parse(text, len, &j, path), 0, "trace is not valid JSON: %s", nb_last_error());
    free(text);
    const nb__json *ev = nb__json_get(&j, "traceEvents");
    cr_assert(ev && ev->kind == NB__J_ARR);
    enum { LANES = 16, DEPTH = 64 };
    double stack[LANES][DEPTH];
    int depth[LANES] = {0}, slices = 0, starts = 0, finishes = 0;
    *nodes = 0;
    for (int i = 0; i < ev->n; i++) {
        const nb__json *e = &ev->items[i], *ph = nb__json_get(e, "ph");
        cr_assert(ph && ph->kind == NB__J_STR);
        if (!strcmp(ph->str, "s")) starts++;
        if (!strcmp(ph->str, "f")) finishes++;
        if (strcmp(ph->str, "X")) continue;
        const nb__json *tid = nb__json_get(e, "tid"), *ts = nb__json_get(e, "ts"), *dur = nb__json_get(e, "dur");
        const nb__json *cat = nb__json_get(e, "cat");
        cr_assert(tid && ts && dur && cat && nb__json_get(e, "name"));
        int l = (int)tid->num;
        cr_assert(l >= 0 && l < LANES);
        cr_assert(ts->num >= 0 && dur->num >= 0);
        slices++;
        *nodes += !strcmp(cat->str, "backward");
    }
    /* nesting: slices of one lane, sorted by start, must form a bracket sequence */
    for (int l = 0; l < LANES; l++) {
        int n = 0;
        double (*iv)[2] = malloc(sizeof *iv * (size_t)(ev->n + 1));
        for (int i = 0; i < ev->n; i++) {
            const nb__json *e = &ev->items[i];
            if (strcmp(nb__json_get(e, "ph")->str, "X") || (int)nb__json_get(e, "tid")->num != l) continue;
            iv[n][0] = nb__json_get(e, "ts")->num;
            iv[n][1] = iv[n][0] + nb__json_get(e, "dur")->num;
            n++;
        }
        for (int a = 1; a < n; a++)   /* insertion sort by start, longer first */
            for (int b = a; b > 0 && (iv[b][0] < iv[b - 1][0] ||
                                      (iv[b][0] == iv[b - 1][0] && iv[b][1] > iv[b - 1][1])); b--) {
                double t0 = iv[b][0], t1 = iv[b][1];
                iv[b][0] = iv[b - 1][0], iv[b][1] = iv[b - 1][1];
                iv[b - 1][0] = t0, iv[b - 1][1] = t1;
            }
        for (int a = 0; a < n; a++) {
            while (depth[l] && stack[l][depth[l] - 1] <= iv[a][0] + 1e-9) depth[l]--;   /* ended before */
            if (depth[l]) cr_assert(iv[a][1] <= stack[l][depth[l] - 1] + 1e-6, "lane %d: slice [%f, %f] crosses "
                                    "the end of its parent at %f", l, iv[a][0], iv[a][1], stack[l][depth[l] - 1]);
            cr_assert(depth[l] < DEPTH);
            stack[l][depth[l]++] = iv[a][1];
        }
        free(iv);
    }
    cr_assert_eq(starts, finishes, "flow starts %d, finishes %d", starts, finishes);
    *flows = starts;
    nb__json_free(&j);
    return slices;
}

Test(profiler, chrome_trace_is_valid_and_linked) {
    init1();
    nb_scope_begin();
    nb_tensor *x = randn(NB_SHAPE(16, 12), 1), *w = randn(NB_SHAPE(12, 6), 2);
    nb_set_requires_grad(w, true);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    nb_profile_range_begin("train \"step\"");   /* a name that needs escaping */
    nb_tensor *y = nb_mean_all(nb_relu(nb_matmul(x, nb_transpose(nb_transpose(w, 0, 1), 0, 1))));
    cr_assert_eq(nb_backward(y, NULL), 0, "%s", nb_last_error());
    nb_profile_range_end();
    nb_profiler_stop();
    char path[] = "/tmp/nb_prof_traceXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(nb_profiler_export_chrome_trace(path), 0, "%s", nb_last_error());
    nb_profiler_summary s;
    nb_profiler_summary_get(&s);
    int nodes, flows;
    int slices = check_trace(path, &nodes, &flows);
    unlink(path);
    /* every timed event is a slice, plus the marks of the two transposes */
    cr_assert_eq((uint64_t)slices, s.events + 2, "slices %d, events %llu", slices, (unsigned long long)s.events);
    cr_assert(nodes >= 5, "backward nodes in the trace: %d", nodes);   /* mean, relu, mm, 2 transposes */
    cr_assert_eq(flows, nodes, "each backward node has an arrow from its forward op");
    cr_assert_eq(nb_profiler_export_chrome_trace(NULL), NB_ENULLARG);
    cr_assert_eq(nb_profiler_export_chrome_trace("/nonexistent/dir/t.json"), NB_EIO);
    nb_scope_end();
    nb_shutdown();
}

Test(profiler, nb_profile_env_writes_trace_and_table) {
    char path[] = "/tmp/nb_prof_envXXXXXX", tpath[] = "/tmp/nb_prof_envtXXXXXX";
    int fd = mkstemp(path), tfd = mkstemp(tpath);
    cr_assert(fd >= 0 && tfd >= 0);
    close(fd);
    char env[128];
    snprintf(env, sizeof env, "table,trace:%s", path);
    setenv("NB_PROFILE", env, 1);
    int saved = dup(2);
    dup2(tfd, 2);   /* the table goes to stderr */
    init1();
    nb_scope_begin();
    nb_tensor *a = randn(NB_SHAPE(4, 4), 1);
    cr_assert(nb_profiler_enabled());
    for (int i = 0; i < 3; i++) cr_assert_not_null(nb_exp(a));
    nb_scope_end();
    nb_shutdown();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(tfd);
    unsetenv("NB_PROFILE");
    size_t n;
    char *table = slurp(tpath, &n);
    unlink(tpath);
    cr_assert(strstr(table, "exp "), "no exp row in\n%s", table);
    cr_assert(strstr(table, "trace written to"), "%s", table);
    free(table);
    int nodes, flows;
    cr_assert(check_trace(path, &nodes, &flows) >= 3);
    unlink(path);
}

Test(profiler, bad_calls) {
    init1();
    cr_assert_eq(nb_profiler_stop(), NB_ESTATE);
    cr_assert_eq(nb_profiler_start(&(nb_profiler_opts){.skip_steps = -1}), NB_EINVAL);
    cr_assert_eq(nb_profiler_start(NULL), 0);
    cr_assert_eq(nb_profiler_start(NULL), NB_ESTATE);
    cr_assert(strstr(nb_last_error(), "already running"));
    cr_assert_eq(nb_profiler_stats(NULL, &(nb_profiler_stat){0}), NB_ENULLARG);
    cr_assert_eq(nb_profiler_stats("x", NULL), NB_ENULLARG);
    cr_assert_eq(nb_profiler_summary_get(NULL), NB_ENULLARG);
    cr_assert_eq(nb_profiler_rows(NULL, 3, false), NB_ENULLARG);
    cr_assert_eq(nb_profiler_rows(NULL, 0, false), 0);
    nb_profile_range_begin(NULL);   /* named "(null)", not a crash */
    cr_assert_eq(nb_profile_range_end(), 0);
    cr_assert_eq(nb_profiler_stop(), 0);
    cr_assert_eq(stat_of("(null)").calls, 1);
    nb_shutdown();
}

/* Two threads and a graph with fan-out: the parallel executor may run nodes
 * on a pool worker; counts stay exact and every lane's slices nest. */
Test(profiler, parallel_backward_counts_and_lanes) {
    nb_init_opts o = {.num_threads = 2, .abort_on_error = -1};
    cr_assert_eq(nb_init(&o), 0, "%s", nb_last_error());
    nb__backward = NB__BACKWARD_FORCE;   /* the parallel executor even on this small graph */
    nb_scope_begin();
    nb_tensor *x = randn(NB_SHAPE(32, 64), 1), *w[4];
    for (int b = 0; b < 4; b++) {
        w[b] = randn(NB_SHAPE(64, 64), 2 + (uint64_t)b);
        nb_set_requires_grad(w[b], true);
    }
    cr_assert_eq(nb_profiler_start(NULL), 0);
    for (int it = 0; it < 3; it++) {
        nb_scope_begin();
        nb_tensor *loss = NULL;
        for (int b = 0; b < 4; b++) {
            nb_tensor *h = nb_sum_all(nb_tanh(nb_matmul(nb_tanh(nb_matmul(x, w[b])), w[b])));
            loss = loss ? nb_add(loss, h) : h;
        }
        cr_assert_eq(nb_backward(loss, NULL), 0, "%s", nb_last_error());
        nb_scope_end();
    }
    nb_profiler_stop();
    cr_assert_eq(stat_of("MmBackward").calls, 3 * 8);
    cr_assert_eq(stat_of("TanhBackward").calls, 3 * 8);
    /* per branch: 2 forward; backward 1 for x @ w (x needs none) and 2 for h @ w */
    cr_assert_eq(stat_of("matmul").calls, 3 * 4 * (2 + 3), "matmul calls %llu",
                 (unsigned long long)stat_of("matmul").calls);
    nb_profiler_summary s;
    nb_profiler_summary_get(&s);
    cr_assert(s.threads >= 1 && s.threads <= 2, "threads %d", s.threads);
    {
        /* every node the parallel executor ran passed through the ready state once */
        cr_assert_eq(s.queued_nodes, 3 * (8 + 8 + 4 + 3), "queued nodes %llu", (unsigned long long)s.queued_nodes);
        cr_assert(s.queue_max_ns <= s.queue_ns && s.queue_ns <= 2 * s.wall_ns, "queue %llu ns, max %llu, wall %llu",
                  (unsigned long long)s.queue_ns, (unsigned long long)s.queue_max_ns, (unsigned long long)s.wall_ns);
    }
    char path[] = "/tmp/nb_prof_parXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(nb_profiler_export_chrome_trace(path), 0, "%s", nb_last_error());
    int nodes, flows;
    check_trace(path, &nodes, &flows);
    unlink(path);
    cr_assert_eq(flows, nodes);
    cr_assert(nodes >= 3 * (8 + 8 + 4 + 3), "nodes %d", nodes);
    nb_scope_end();
    nb_shutdown();
}
