/* test_scope.c — scopes (autorelease pools): what a scope owns dies at its
 * end; nb_keep hands a tensor outward; nb_retain/nb_release for manual
 * control; nesting.
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "testutil.h"

static uint64_t scp_live(void) { return nb_memory_stats().live_tensors; }
static size_t scp_bytes(void) { return nb_memory_stats().live_bytes; }

Test(scope, tensors_made_in_a_scope_die_at_its_end) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    size_t b0 = scp_bytes();
    nb_scope_begin();
    cr_assert_eq(nb_scope_depth(), 1);
    nb_tensor *a = nb_ones(NB_SHAPE(10, 10), NB_F32);
    nb_tensor *b = nb_exp(nb_mul(a, a));
    nb_tensor *v = nb_transpose(b, 0, 1);
    cr_assert_not_null(v);
    cr_assert_geq(scp_live(), t0 + 4);
    cr_assert_gt(scp_bytes(), b0);
    nb_scope_end();
    cr_assert_eq(nb_scope_depth(), 0);
    cr_assert_eq(scp_live(), t0, "live tensors %llu, expected %llu",
                 (unsigned long long)scp_live(), (unsigned long long)t0);
    cr_assert_eq(scp_bytes(), b0);
}

Test(scope, nested_scopes) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    nb_scope_begin();
    nb_tensor *outer = nb_zeros(NB_SHAPE(4), NB_F32);
    uint64_t t1 = scp_live();
    nb_scope_begin();
    cr_assert_eq(nb_scope_depth(), 2);
    nb_tensor *inner = nb_add_scalar(outer, 1);
    nb_ones(NB_SHAPE(3), NB_F64);
    cr_assert_not_null(inner);
    cr_assert_eq(scp_live(), t1 + 2);
    nb_scope_end();
    cr_assert_eq(nb_scope_depth(), 1);
    cr_assert_eq(scp_live(), t1, "the inner scope's tensors are gone");
    cr_assert_float_eq(nb_item(nb_sum_all(outer)), 0, 0, "the outer one is alive");
    nb_scope_end();
    cr_assert_eq(scp_live(), t0);
}

Test(scope, keep_moves_to_enclosing_scope) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    nb_scope_begin();
    uint64_t t1 = scp_live();
    nb_tensor *kept;
    nb_scope_begin();
    nb_tensor *tmp = nb_ones(NB_SHAPE(5), NB_F32);
    kept = nb_mul_scalar(tmp, 3);
    cr_assert_eq(nb_keep(kept), kept);
    nb_scope_end();
    cr_assert_eq(scp_live(), t1 + 1, "only the kept tensor survives the inner end");
    const double want[] = {3, 3, 3, 3, 3};
    cr_assert(tu_allclose(kept, tu_tensor(NB_SHAPE(5), NB_F32, want), 0, 0));
    nb_scope_end();
    cr_assert_eq(scp_live(), t0, "the outer end frees it");
}

Test(scope, keep_through_two_levels) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    nb_scope_begin();
    nb_scope_begin();
    nb_scope_begin();
    nb_tensor *t = nb_full(NB_SHAPE(2), NB_F32, 7);
    nb_keep(t);
    nb_scope_end();
    nb_keep(t);   /* and again, out of the middle scope */
    nb_scope_end();
    cr_assert_eq(scp_live(), t0 + 1);
    cr_assert_float_eq(nb_item(nb_sum_all(t)), 14, 0);
    nb_scope_end();
    cr_assert_eq(scp_live(), t0);
}

Test(scope, keep_at_outermost_hands_to_caller) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    nb_scope_begin();
    nb_tensor *t = nb_ones(NB_SHAPE(3), NB_F32);
    nb_keep(t);
    nb_scope_end();
    cr_assert_eq(scp_live(), t0 + 1, "the caller owns it now");
    nb_tensor *s = nb_sum_all(t);   /* no scope: the sum is ours too */
    cr_assert_float_eq(nb_item(s), 3, 0);
    nb_release(s);
    nb_release(t);
    cr_assert_eq(scp_live(), t0);
}

Test(scope, retain_outlives_the_scope_until_release) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    size_t b0 = scp_bytes();
    nb_tensor *t;
    nb_scope_begin();
    t = nb_full(NB_SHAPE(8), NB_F32, 2);
    cr_assert_eq(nb_retain(t), t);
    nb_scope_end();
    cr_assert_eq(scp_live(), t0 + 1);
    cr_assert_eq(scp_bytes(), b0 + 32);
    float v[8];
    cr_assert_eq(nb_copy_to(t, v, sizeof v), 0);
    cr_assert_float_eq(v[7], 2.f, 0);
    nb_release(t);
    cr_assert_eq(scp_live(), t0);
    cr_assert_eq(scp_bytes(), b0);
}

Test(scope, retained_view_keeps_storage) {
    nb_init(NULL);
    size_t b0 = scp_bytes();
    uint64_t t0 = scp_live();
    nb_tensor *v;
    nb_scope_begin();
    nb_tensor *base = nb_arange(0, 12, 1, NB_F32);
    v = nb_retain(nb_slice(base, 0, 2, 12, 5));   /* [2, 7] */
    nb_scope_end();
    cr_assert_eq(scp_live(), t0 + 1, "the base object is gone");
    cr_assert_eq(scp_bytes(), b0 + 48, "its storage is not");
    cr_assert_float_eq(nb_get(v, (int64_t[]){1}), 7, 0);
    nb_release(v);
    cr_assert_eq(scp_bytes(), b0);
}

Test(scope, no_scope_means_caller_owns) {
    nb_init(NULL);
    cr_assert_eq(nb_scope_depth(), 0);
    uint64_t t0 = scp_live();
    nb_tensor *t = nb_ones(NB_SHAPE(2), NB_F32);
    nb_scope_end();   /* no scope open: a no-op */
    cr_assert_eq(nb_scope_depth(), 0);
    cr_assert_eq(scp_live(), t0 + 1);
    nb_tensor *u = nb_mul_scalar(t, 2);
    cr_assert_eq(scp_live(), t0 + 2);
    nb_release(u);
    nb_release(t);
    cr_assert_eq(scp_live(), t0);
    nb_release(NULL);   /* accepted */
}

Test(scope, many_tensors_in_one_scope) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    nb_scope_begin();
    nb_tensor *acc = nb_zeros(NB_SHAPE(4), NB_F32);
    for (int i = 0; i < 5000; i++) acc = nb_add_scalar(acc, 1);
    cr_assert_float_eq(nb_item(nb_sum_all(acc)), 20000, 0);
    nb_scope_end();
    cr_assert_eq(scp_live(), t0);
}

Test(scope, depth_counts_and_unbalanced_end_is_harmless) {
    nb_init(NULL);
    for (int i = 1; i <= 40; i++) {
        nb_scope_begin();
        cr_assert_eq(nb_scope_depth(), i);
    }
    for (int i = 39; i >= 0; i--) {
        nb_scope_end();
        cr_assert_eq(nb_scope_depth(), i);
    }
    nb_scope_end();
    nb_scope_end();
    cr_assert_eq(nb_scope_depth(), 0);
}

/* Scopes are per thread: a thread's scope does not see the main one. */
typedef struct scp_thread_arg {
    int depth_seen;    /* nb_scope_depth() on entry */
} scp_thread_arg;

static void *scp_thread_main(void *p) {
    scp_thread_arg *a = p;
    a->depth_seen = nb_scope_depth();
    nb_scope_begin();
    nb_ones(NB_SHAPE(16), NB_F32);
    nb_ones(NB_SHAPE(16), NB_F32);
    nb_scope_end();
    return NULL;
}

Test(scope, scopes_are_per_thread) {
    nb_init(NULL);
    uint64_t t0 = scp_live();
    nb_scope_begin();
    nb_scope_begin();
    nb_tensor *mine = nb_ones(NB_SHAPE(3), NB_F32);
    scp_thread_arg a = {-1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, scp_thread_main, &a), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_eq(a.depth_seen, 0);
    cr_assert_eq(nb_scope_depth(), 2);
    cr_assert_eq(scp_live(), t0 + 1, "the thread freed its own tensors");
    cr_assert_float_eq(nb_item(nb_sum_all(mine)), 3, 0);
    nb_scope_end();
    nb_scope_end();
    cr_assert_eq(scp_live(), t0);
}
