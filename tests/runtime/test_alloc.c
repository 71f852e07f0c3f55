/* test_alloc.c — the storage allocator as seen through nb_memory_stats:
 * live/peak/alloc counters, reuse of freed blocks, 64-byte alignment.
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "testutil.h"

Test(alloc, live_bytes_and_counts_follow_a_tensor) {
    nb_init(NULL);
    nb_memory_stats_t s0 = nb_memory_stats();
    nb_tensor *t = nb_empty(NB_SHAPE(1000), NB_F32);   /* no scope: ours */
    cr_assert_not_null(t);
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_bytes, s0.live_bytes + 4000, "live %zu -> %zu", s0.live_bytes,
                 s1.live_bytes);
    cr_assert_eq(s1.live_tensors, s0.live_tensors + 1);
    cr_assert_eq(s1.alloc_count, s0.alloc_count + 1);
    cr_assert_eq(s1.free_count, s0.free_count);
    cr_assert_geq(s1.peak_bytes, s1.live_bytes);

    /* a view adds a tensor object but no storage */
    nb_tensor *v = nb_reshape(t, NB_SHAPE(10, 100));
    nb_memory_stats_t s2 = nb_memory_stats();
    cr_assert_eq(s2.live_bytes, s1.live_bytes);
    cr_assert_eq(s2.live_tensors, s1.live_tensors + 1);
    cr_assert_eq(s2.alloc_count, s1.alloc_count);

    nb_release(t);   /* the view keeps the storage alive */
    nb_memory_stats_t s3 = nb_memory_stats();
    cr_assert_eq(s3.live_bytes, s1.live_bytes);
    cr_assert_eq(s3.live_tensors, s0.live_tensors + 1);
    nb_release(v);
    nb_memory_stats_t s4 = nb_memory_stats();
    cr_assert_eq(s4.live_bytes, s0.live_bytes);
    cr_assert_eq(s4.live_tensors, s0.live_tensors);
    cr_assert_eq(s4.free_count, s0.free_count + 1);
}

Test(alloc, dtype_sizes_count) {
    nb_init(NULL);
    nb_memory_stats_t s0 = nb_memory_stats();
    nb_tensor *a = nb_zeros(NB_SHAPE(3, 7), NB_F64);
    nb_tensor *b = nb_zeros(NB_SHAPE(5), NB_BOOL);
    nb_tensor *c = nb_zeros(NB_SHAPE(2), NB_I64);
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_bytes - s0.live_bytes, 21 * 8 + 5 + 2 * 8);
    cr_assert_eq(s1.live_tensors - s0.live_tensors, 3);
    nb_release(a);
    nb_release(b);
    nb_release(c);
    cr_assert_eq(nb_memory_stats().live_bytes, s0.live_bytes);
}

Test(alloc, peak_tracks_the_high_water_mark) {
    nb_init(NULL);
    nb_memory_reset_peak();
    nb_memory_stats_t s0 = nb_memory_stats();
    cr_assert_eq(s0.peak_bytes, s0.live_bytes, "reset sets peak to live");
    nb_tensor *big = nb_empty(NB_SHAPE(1 << 18), NB_F32);   /* 1 MiB */
    nb_tensor *small = nb_empty(NB_SHAPE(16), NB_F32);
    cr_assert_not_null(big);
    nb_release(big);
    nb_release(small);
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    cr_assert_eq(s1.peak_bytes, s0.live_bytes + (1 << 20) + 64, "peak %zu", s1.peak_bytes);
    nb_tensor *mid = nb_empty(NB_SHAPE(1000), NB_F32);
    nb_release(mid);
    cr_assert_eq(nb_memory_stats().peak_bytes, s1.peak_bytes, "peak only grows");
    nb_memory_reset_peak();
    cr_assert_eq(nb_memory_stats().peak_bytes, s0.live_bytes);
}

Test(alloc, freed_block_is_reused) {
    nb_init(NULL);
    nb_tensor *warm = nb_empty(NB_SHAPE(333), NB_F32);
    nb_release(warm);
    nb_memory_stats_t s0 = nb_memory_stats();
    cr_assert_geq(s0.cached_bytes, 333 * 4, "a freed block is parked in the cache");
    for (int i = 0; i < 1000; i++) {
        nb_tensor *t = nb_empty(NB_SHAPE(333), NB_F32);
        cr_assert_not_null(t);
        nb_release(t);
    }
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.os_alloc_count, s0.os_alloc_count, "os allocs %llu -> %llu",
                 (unsigned long long)s0.os_alloc_count, (unsigned long long)s1.os_alloc_count);
    cr_assert_eq(s1.alloc_count, s0.alloc_count + 1000);
    cr_assert_eq(s1.free_count, s0.free_count + 1000);
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
}

Test(alloc, loop_of_ops_does_not_go_to_the_os) {
    nb_init(NULL);
    nb_tensor *x = nb_ones(NB_SHAPE(64, 64), NB_F32);
    /* one warm-up round fills the cache with every size the loop uses */
    nb_scope_begin();
    nb_sum_all(nb_exp(nb_mul(x, x)));
    nb_scope_end();
    nb_memory_stats_t s0 = nb_memory_stats();
    for (int i = 0; i < 200; i++) {
        nb_scope_begin();
        nb_sum_all(nb_exp(nb_mul(x, x)));
        nb_scope_end();
    }
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.os_alloc_count, s0.os_alloc_count);
    cr_assert_gt(s1.alloc_count, s0.alloc_count);
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    nb_release(x);
}

Test(alloc, trim_empties_the_cache) {
    nb_init(NULL);
    nb_tensor *t = nb_empty(NB_SHAPE(4096), NB_F32);
    nb_release(t);
    cr_assert_gt(nb_memory_stats().cached_bytes, 0);
    nb_memory_trim();
    nb_memory_stats_t s = nb_memory_stats();
    cr_assert_eq(s.cached_bytes, 0);
    /* after a trim the next allocation goes to the OS again */
    nb_tensor *u = nb_empty(NB_SHAPE(4096), NB_F32);
    cr_assert_eq(nb_memory_stats().os_alloc_count, s.os_alloc_count + 1);
    nb_release(u);
}

Test(alloc, data_is_64_byte_aligned) {
    nb_init(NULL);
    nb_scope_begin();
    const int64_t sizes[] = {1, 3, 7, 16, 33, 1023, 4097, 100000};
    const nb_dtype dts[] = {NB_F32, NB_F64, NB_I64, NB_BOOL};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t j = 0; j < 4; j++) {
            nb_tensor *t = nb_empty(NB_SHAPE(sizes[i]), dts[j]);
            cr_assert_not_null(t);
            cr_assert_eq((uintptr_t)nb_data(t) % 64, 0, "size %lld dtype %s: %p",
                         (long long)sizes[i], nb_dtype_name(dts[j]), nb_data(t));
        }
    /* results of ops too */
    nb_tensor *a = nb_ones(NB_SHAPE(7, 5), NB_F32);
    cr_assert_eq((uintptr_t)nb_data(nb_exp(a)) % 64, 0);
    cr_assert_eq((uintptr_t)nb_data(nb_matmul(a, nb_transpose(a, 0, 1))) % 64, 0);
    cr_assert_eq((uintptr_t)nb_data(nb_contiguous(nb_transpose(a, 0, 1))) % 64, 0);
    nb_scope_end();
}

Test(alloc, scalar_and_empty_tensors_count) {
    nb_init(NULL);
    nb_memory_stats_t s0 = nb_memory_stats();
    nb_tensor *s = nb_scalar(1);
    nb_tensor *e = nb_zeros(NB_SHAPE(0), NB_F32);
    cr_assert_not_null(s);
    cr_assert_not_null(e);
    cr_assert_eq(nb_memory_stats().live_bytes, s0.live_bytes + 4);
    cr_assert_eq(nb_memory_stats().live_tensors, s0.live_tensors + 2);
    nb_release(s);
    nb_release(e);
    nb_memory_stats_t s1 = nb_memory_stats();
    cr_assert_eq(s1.live_bytes, s0.live_bytes);
    cr_assert_eq(s1.live_tensors, s0.live_tensors);
}
