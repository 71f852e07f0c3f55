/* test_registry.c — the op registry: the chosen kernel per (op, dtype), user
 * kernels that override by priority or decline a call, and the dump.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nb_config.h"
#include "testutil.h"

/* These tests are about the registry's own order: NB_ISA_PREFER (the
 * isa_avx512 test setup's) would put another ISA's kernels before theirs. */
static void reg_setup(void) { unsetenv("NB_ISA_PREFER"); }
TestSuite(registry, .init = reg_setup);

/* ---- names and choice ---- */

Test(registry, op_names) {
    nb_init(NULL);
    cr_assert_str_eq(nb_op_name(NB_OP_ADD), "add");
    cr_assert_str_eq(nb_op_name(NB_OP_EXP), "exp");
    cr_assert_str_eq(nb_op_name(NB_OP_MATMUL), "matmul");
    for (int op = 0; op < NB_OP_COUNT; op++)
        cr_assert_not_null(nb_op_name((nb_op)op), "op %d has a name", op);
}

Test(registry, every_op_has_a_kernel_for_f32_and_f64) {
    nb_init(NULL);
    for (int op = 0; op < NB_OP_COUNT; op++) {
        if (op == NB_OP_ONE_HOT) continue;   /* its input is a class index: i64 only, as PyTorch */
        cr_assert_not_null(nb_kernel_chosen((nb_op)op, NB_F32), "%s f32", nb_op_name((nb_op)op));
        cr_assert_not_null(nb_kernel_chosen((nb_op)op, NB_F64), "%s f64", nb_op_name((nb_op)op));
    }
}

static int reg_add_calls;

/* out = a + b for contiguous same-shape F32 (declines anything else). */
static int reg_user_add(const nb_kernel_args *a) {
    reg_add_calls++;
    if (a->nin != 2 || !nb_is_contiguous(a->out) || !nb_is_contiguous(a->in[0]) ||
        !nb_is_contiguous(a->in[1]) || nb_numel(a->in[0]) != nb_numel(a->out) ||
        nb_numel(a->in[1]) != nb_numel(a->out))
        return NB_KERNEL_DECLINE;
    float *y = nb_data(a->out);
    const float *p = nb_data(a->in[0]), *q = nb_data(a->in[1]);
    for (int64_t i = 0; i < nb_numel(a->out); i++) y[i] = p[i] + q[i];
    return 0;
}

Test(registry, user_kernel_with_higher_priority_is_chosen) {
    nb_init(NULL);
    const char *before = nb_kernel_chosen(NB_OP_ADD, NB_F32);
    cr_assert_not_null(before);
    nb_kernel_desc k = {NB_OP_ADD, NB_F32, NB_ISA_REF, "test_user_add", 1000000, reg_user_add};
    cr_assert_eq(nb_register_kernel(&k), 0, "%s", nb_last_error());
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_ADD, NB_F32), "test_user_add");
    /* other dtypes keep their kernel */
    const char *f64 = nb_kernel_chosen(NB_OP_ADD, NB_F64);
    cr_assert_not_null(f64);
    cr_assert_str_neq(f64, "test_user_add");

    nb_scope_begin();
    const double av[] = {1, 2, 3}, bv[] = {10, 20, 30};
    nb_tensor *s = nb_add(tu_tensor(NB_SHAPE(3), NB_F32, av), tu_tensor(NB_SHAPE(3), NB_F32, bv));
    cr_assert_not_null(s, "%s", nb_last_error());
    cr_assert_geq(reg_add_calls, 1, "the user kernel was called");
    const double want[] = {11, 22, 33};
    cr_assert(tu_allclose(s, tu_tensor(NB_SHAPE(3), NB_F32, want), 0, 1e-6));
    nb_scope_end();
}

Test(registry, lower_priority_kernel_is_not_chosen) {
    nb_init(NULL);
    const char *before = nb_kernel_chosen(NB_OP_ADD, NB_F32);
    cr_assert_not_null(before);
    nb_kernel_desc k = {NB_OP_ADD, NB_F32, NB_ISA_REF, "test_low_add", -1000, reg_user_add};
    cr_assert_eq(nb_register_kernel(&k), 0, "%s", nb_last_error());
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_ADD, NB_F32), before);
}

Test(registry, register_rejects_bad_descriptors) {
    nb_init(NULL);
    nb_kernel_desc nofn = {NB_OP_ADD, NB_F32, NB_ISA_REF, "test_nofn", 5, NULL};
    cr_assert_lt(nb_register_kernel(&nofn), 0);
    nb_kernel_desc badop = {NB_OP_COUNT, NB_F32, NB_ISA_REF, "test_badop", 5, reg_user_add};
    cr_assert_lt(nb_register_kernel(&badop), 0);
    cr_assert_lt(nb_register_kernel(NULL), 0);
}

/* ---- a kernel that declines ---- */

static int reg_exp_served;    /* calls it served */
static int reg_exp_declined;  /* calls it passed on */

static int reg_user_exp(const nb_kernel_args *a) {
    if (!nb_is_contiguous(a->out) || !nb_is_contiguous(a->in[0])) {
        reg_exp_declined++;
        return NB_KERNEL_DECLINE;
    }
    float *y = nb_data(a->out);
    const float *x = nb_data(a->in[0]);
    for (int64_t i = 0; i < nb_numel(a->out); i++) y[i] = expf(x[i]);
    reg_exp_served++;
    return 0;
}

Test(registry, declining_kernel_falls_back_to_next) {
    nb_init(NULL);
    nb_kernel_desc k = {NB_OP_EXP, NB_F32, NB_ISA_REF, "test_user_exp", 1000000, reg_user_exp};
    cr_assert_eq(nb_register_kernel(&k), 0, "%s", nb_last_error());
    cr_assert_str_eq(nb_kernel_chosen(NB_OP_EXP, NB_F32), "test_user_exp");

    nb_scope_begin();
    const double xv[] = {0, 1, 2, -1, -2, 0.5};
    nb_tensor *x = tu_tensor(NB_SHAPE(2, 3), NB_F32, xv);
    double e[6];
    for (int i = 0; i < 6; i++) e[i] = exp(xv[i]);

    /* contiguous: served by the user kernel */
    reg_exp_served = reg_exp_declined = 0;
    nb_tensor *y = nb_exp(x);
    cr_assert_not_null(y, "%s", nb_last_error());
    cr_assert_eq(reg_exp_served, 1);
    cr_assert_eq(reg_exp_declined, 0);
    cr_assert(tu_allclose(y, tu_tensor(NB_SHAPE(2, 3), NB_F32, e), 1e-6, 1e-6));

    /* transposed: declined, and the next kernel serves it */
    nb_tensor *xt = nb_transpose(x, 0, 1);
    cr_assert_not(nb_is_contiguous(xt));
    reg_exp_served = reg_exp_declined = 0;
    nb_tensor *yt = nb_exp(xt);
    cr_assert_not_null(yt, "%s", nb_last_error());
    cr_assert_eq(reg_exp_served, 0);
    cr_assert_eq(reg_exp_declined, 1);
    const double et[] = {e[0], e[3], e[1], e[4], e[2], e[5]};
    cr_assert(tu_allclose(yt, tu_tensor(NB_SHAPE(3, 2), NB_F32, et), 1e-6, 1e-6));

    /* F64 never reaches an F32 kernel */
    reg_exp_served = reg_exp_declined = 0;
    nb_tensor *y64 = nb_exp(tu_tensor(NB_SHAPE(2, 3), NB_F64, xv));
    cr_assert_not_null(y64);
    cr_assert_eq(reg_exp_served + reg_exp_declined, 0);
    cr_assert(tu_allclose(y64, tu_tensor(NB_SHAPE(2, 3), NB_F64, e), 1e-12, 1e-12));
    nb_scope_end();
}

/* A MUL kernel that notes whether it was asked for thread-count-invariant
 * bits, then declines (the usual kernel serves). */
static int reg_mul_calls, reg_mul_invariant;
static int reg_note_mul(const nb_kernel_args *a) {
    (void)a;
    reg_mul_calls++;
    reg_mul_invariant += nb_kernel_thread_invariant();
    return NB_KERNEL_DECLINE;
}

/* Both executors ask a backward node's kernels for bits that do not depend
 * on their thread count; the forward does not. */
Test(registry, backward_kernels_are_asked_for_thread_invariance) {
    static const char *const modes[] = {"serial", "force"};
    nb_init(NULL);
    nb_kernel_desc k = {NB_OP_MUL, NB_F32, NB_ISA_REF, "test_note_mul", 1000000, reg_note_mul};
    cr_assert_eq(nb_register_kernel(&k), 0, "%s", nb_last_error());
    for (int m = 0; m < 2; m++) {
        setenv("NB_BACKWARD", modes[m], 1);
        cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = 2, .abort_on_error = -1}), 0);
        nb_scope_begin();
        nb_tensor *x = nb_randn(NB_SHAPE(4, 5), NB_F32, 1);
        nb_set_requires_grad(x, true);
        reg_mul_calls = reg_mul_invariant = 0;
        nb_tensor *y = nb_mul(x, x);
        cr_assert_not_null(y, "%s", nb_last_error());
        cr_assert_eq(reg_mul_calls, 1, "%s: forward muls %d", modes[m], reg_mul_calls);
        cr_assert_eq(reg_mul_invariant, 0, "the forward was asked for invariance");
        cr_assert_not(nb_kernel_thread_invariant());
        cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
        cr_assert_geq(reg_mul_calls, 2, "%s: the backward ran no mul", modes[m]);
        cr_assert_eq(reg_mul_invariant, reg_mul_calls - 1, "%s: %d of %d backward muls asked for invariance", modes[m],
                     reg_mul_invariant, reg_mul_calls - 1);
        cr_assert_not(nb_kernel_thread_invariant(), "the flag outlived the backward");
        nb_scope_end();
    }
    unsetenv("NB_BACKWARD");
    nb_init(NULL);
}

static int reg_fail_calls;
static int reg_failing_exp(const nb_kernel_args *a) {
    (void)a;
    reg_fail_calls++;
    return NB_ENOTSUP;
}

Test(registry, failing_kernel_error_reaches_the_op) {
    nb_init(NULL);
    nb_kernel_desc k = {NB_OP_EXP, NB_F32, NB_ISA_REF, "test_failing_exp", 1000000,
                        reg_failing_exp};
    cr_assert_eq(nb_register_kernel(&k), 0);
    nb_scope_begin();
    nb_tensor *y = nb_exp(nb_ones(NB_SHAPE(4), NB_F32));
    cr_assert_null(y, "a kernel's error (not a decline) fails the op");
    cr_assert_eq(reg_fail_calls, 1);
    cr_assert_neq(nb_last_error_code(), 0);
    nb_scope_end();
}

/* A kernel above the ISA cap is skipped. */
static int reg_never(const nb_kernel_args *a) {
    (void)a;
    cr_assert_fail("a kernel above the ISA cap must not run");
    return NB_ENOTSUP;
}

Test(registry, kernel_above_isa_cap_is_skipped) {
    nb_init(NULL);
    if (nb_isa_active() == NB_ISA_AVX512) cr_skip_test("no ISA above the cap on this CPU");
    nb_kernel_desc k = {NB_OP_NEG, NB_F32, NB_ISA_AVX512, "test_avx512_neg", 1000000, reg_never};
    cr_assert_eq(nb_register_kernel(&k), 0, "%s", nb_last_error());
    cr_assert_str_neq(nb_kernel_chosen(NB_OP_NEG, NB_F32), "test_avx512_neg");
    nb_scope_begin();
    nb_tensor *y = nb_neg(nb_ones(NB_SHAPE(3), NB_F32));
    cr_assert_not_null(y);
    cr_assert_float_eq(nb_item(nb_sum_all(y)), -3.0, 1e-6);
    nb_scope_end();
}

/* ---- dump ---- */

Test(registry, dump_mentions_every_op) {
    nb_init(NULL);
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    nb_registry_dump(f);
    long n = ftell(f);
    cr_assert_gt(n, 0, "the dump wrote nothing");
    rewind(f);
    char *buf = calloc((size_t)n + 1, 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    for (int op = 0; op < NB_OP_COUNT; op++) {
        const char *name = nb_op_name((nb_op)op);
        if (!strstr(buf, name)) {
            free(buf);
            cr_assert_fail("dump does not mention op %s", name);
        }
    }
    /* and the chosen kernel of add/f32 */
    const char *chosen = nb_kernel_chosen(NB_OP_ADD, NB_F32);
    bool has = strstr(buf, chosen) != NULL;
    free(buf);
    cr_assert(has, "dump does not mention kernel %s", chosen);
}

Test(registry, dump_lists_user_kernel) {
    nb_init(NULL);
    nb_kernel_desc k = {NB_OP_MUL, NB_F32, NB_ISA_REF, "test_listed_mul", -5, reg_user_add};
    cr_assert_eq(nb_register_kernel(&k), 0);
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    nb_registry_dump(f);
    long n = ftell(f);
    rewind(f);
    char *buf = calloc((size_t)n + 1, 1);
    cr_assert_not_null(buf);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    bool has = got == (size_t)n && strstr(buf, "test_listed_mul") != NULL;
    free(buf);
    cr_assert(has, "a registered alternative is listed");
}

/* nb__isa_prefer (NB_ISA_PREFER): that ISA's kernels are tried first, in
 * their priority order, whatever their rank among the others; one that
 * declines passes the call on to the registry's usual order. */
static int reg_pref_calls[2];
static int reg_pref_low(const nb_kernel_args *a) {   /* an AVX2-tagged kernel that serves only 4-element calls */
    reg_pref_calls[0]++;
    if (nb_numel(a->out) != 4) return NB_KERNEL_DECLINE;
    return nb_fill_(a->out, 7.0) ? 0 : -1;
}
static int reg_pref_high(const nb_kernel_args *a) {
    reg_pref_calls[1]++;
    return nb_fill_(a->out, 9.0) ? 0 : -1;
}

Test(registry, preferred_isa_first_then_the_usual_order) {
    nb_init(NULL);
    if (nb_isa_active() < NB_ISA_AVX2) cr_skip("needs the avx2 cap for an AVX2-tagged test kernel");
    nb_kernel_desc lo = {NB_OP_SQRT, NB_F32, NB_ISA_AVX2, "test_pref_low", 999998, reg_pref_low};
    nb_kernel_desc hi = {NB_OP_SQRT, NB_F32, NB_ISA_REF, "test_pref_high", 999999, reg_pref_high};
    cr_assert_eq(nb_register_kernel(&lo), 0);
    cr_assert_eq(nb_register_kernel(&hi), 0);
    nb_scope_begin();
    nb_tensor *x4 = nb_ones(NB_SHAPE(4), NB_F32), *x5 = nb_ones(NB_SHAPE(5), NB_F32);
    nb__isa_prefer = -1;
    nb_tensor *y = nb_sqrt(x4);
    cr_assert(y && ((float *)nb_data(y))[0] == 9.0f && reg_pref_calls[0] == 0, "the higher priority serves");
    nb__isa_prefer = NB_ISA_AVX2;
    y = nb_sqrt(x4);
    cr_assert(y && ((float *)nb_data(y))[0] == 7.0f, "the preferred ISA's kernel serves first");
    cr_assert_str_eq(nb__last_kernel(), "test_pref_low");
    /* it declines: the next AVX2 kernel (the built-in avx2_sqrt) before the REF-tagged high one */
    y = nb_sqrt(x5);
    cr_assert(y && ((float *)nb_data(y))[0] == 1.0f && reg_pref_calls[0] == 2 && reg_pref_calls[1] == 1);
    cr_assert_str_eq(nb__last_kernel(), "avx2_sqrt");
    nb__isa_prefer = -1;
    nb_scope_end();
    nb_init(NULL);
}

/* ---- OpenMP teams (kernels.h, nb__par_team) ---- */

#if NB_HAVE_OPENMP
#include <dirent.h>

/* The kernels' team: the caller alone, or the whole team whatever the
 * useful count; NB_OMP_TEAM=0's per-op sizes when nb__omp_team is 0. */
Test(registry, kernels_open_the_whole_team_or_none) {
    nb_init(NULL);
    cr_assert_eq(nb_set_num_threads(4), 0);
    cr_assert_eq(nb__omp_team, 3);
    cr_assert_eq(nb__par_team(0), 1);
    cr_assert_eq(nb__par_team(1), 1);
    cr_assert_eq(nb__par_team(2), 4);
    cr_assert_eq(nb__par_team(3), 4);
    cr_assert_eq(nb__par_team(4), 4);
    nb__omp_team = 0;
    cr_assert_eq(nb__par_team(2), 2);
    nb__omp_team = 3;
}

/* The thread ids of this process into ids (up to cap); returns how many. */
static int reg_tids(long *ids, int cap) {
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && n < cap) ids[n++] = atol(e->d_name);
    closedir(d);
    return n;
}

/* Kernels (and oneDNN's matmul) with 2 and 4 useful threads in turn, at 4
 * threads: libgomp would end two threads of its pool at each 2-thread team
 * and create new ones for the next 4-thread team. With every team whole, no thread is created after
 * the first calls (new thread ids would show it; the check fails with
 * NB_OMP_TEAM=0, and with 1: our kernels whole, oneDNN's matmul not). */
Test(registry, kernels_of_any_size_create_no_threads) {
    nb_init(NULL);
    cr_assert_eq(nb_set_num_threads(4), 0);
    nb_scope_begin();
    int64_t small = 2 * NB_GRAIN_ELEMENTWISE, big = 8 * NB_GRAIN_ELEMENTWISE;
    nb_tensor *a = nb_full(NB_SHAPE(small), NB_F32, 1.0), *b = nb_full(NB_SHAPE(big), NB_F32, 2.0);
    cr_assert_eq(nb__par_threads(small, NB_GRAIN_ELEMENTWISE), 2);
    cr_assert_eq(nb__par_threads(big, NB_GRAIN_ELEMENTWISE), 4);
    /* a matmul of 2 useful threads (flops / 4 = 2 grains of 2^19): oneDNN's, where it serves */
    nb_tensor *x = nb_full(NB_SHAPE(32, 256), NB_F32, 0.5), *w = nb_full(NB_SHAPE(256, 256), NB_F32, 0.25);
    for (int i = 0; i < 2; i++) nb_add(b, b), nb_add(a, a), nb_matmul(x, w);   /* the team exists now */
    long before[64], after[64];
    int nb = reg_tids(before, 64);
    for (int i = 0; i < 20; i++) {
        cr_assert_not_null(nb_add(a, a), "%s", nb_last_error());
        cr_assert_not_null(nb_add(b, b), "%s", nb_last_error());
        cr_assert_not_null(nb_matmul(x, w), "%s", nb_last_error());
        cr_assert_not_null(nb_add(b, b), "%s", nb_last_error());
    }
    int na = reg_tids(after, 64);
    for (int i = 0; i < na; i++) {
        bool seen = false;
        for (int j = 0; j < nb && !seen; j++) seen = after[i] == before[j];
        cr_assert(seen, "thread %ld was created by a kernel call (%d threads before, %d after)", after[i], nb, na);
    }
    nb_scope_end();
}
#endif
