/* test_avx2_index.c — the contiguous fast paths of avx2_index.c (cat,
 * stack, index_select, embedding, index_add) against the ref kernels,
 * bitwise (copies are exact; index_add adds in ref's order).
 *
 * - cat and stack along every dim of 3-D operands, F32, F64, I64 and BOOL;
 *   index_select along every dim with repeated indices and a strided index;
 *   embedding with a weight whose rows are padded (row stride > D) and a
 *   2-D index; index_add along every dim with repeated indices.
 * - Served by the AVX2 kernel; a non-contiguous operand is declined (ref
 *   serves it, same result); an out-of-range index is NB_ERANGE with
 *   nothing written past the check.
 * - index_add gives the same bits at 1, 2 and 3 threads.
 * - repeat, flip, tril/triu and pad: every dtype, 1-D to 4-D, every flip
 *   mask, diagonals and pads of every kind (see their tests).
 * Run at an explicit avx2 cap; skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

static void ix_default(int threads) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .num_threads = threads, .abort_on_error = -1}), 0,
                 "nb_init: %s", nb_last_error());
}
static void ix_setup(void) { ix_default(0); }
static void ix_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(avx2_index, .init = ix_setup, .fini = ix_teardown);

static void ix_need(void) {
    if (!nb__registry_has(NB_OP_CAT, NB_F32, "avx2_")) cr_skip("no AVX2 index kernel within the ISA cap");
}

/* A random tensor of dtype dt (values that survive every dtype). */
static nb_tensor *ix_rand(nb_dims shape, nb_dtype dt, uint64_t seed) {
    nb_tensor *f = nb_mul_scalar(nb_randn(shape, NB_F32, seed), 10.0);
    if (dt == NB_BOOL) return nb_contiguous(nb_gt_scalar(f, 0.0));
    return nb_contiguous(nb_to_dtype(f, dt));
}

/* Runs op into a fresh out of `shape` (zeroed) at the current cap. */
static nb_tensor *ix_run(nb_op op, nb_dims shape, nb_dtype dt, const nb_tensor *i0, const nb_tensor *i1,
                         const nb_tensor *i2, int nin, double s0, double s1, const char **served, int *rc) {
    nb_tensor *out = nb_zeros(shape, dt);
    cr_assert(out, "%s", nb_last_error());
    nb_kernel_args a = {.op = op, .out = out, .in = {i0, i1, i2}, .nin = nin, .scalar = {s0, s1}};
    int r = nb__dispatch(&a, "test_avx2_index");
    if (rc) *rc = r;
    else cr_assert_eq(r, 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

static void ix_same(nb_tensor *got, nb_tensor *ref, const char *what) {
    cr_assert_eq(nb_numel(got), nb_numel(ref));
    size_t n = (size_t)nb_numel(got) * nb_dtype_size(nb_dtype(got));
    cr_assert(!memcmp(nb_data(got), nb_data(ref), n), "%s: differs from ref", what);
}

/* op at the avx2 cap (served by want, or ref when want is NULL) and capped to ref: bitwise equal. */
static void ix_check(nb_op op, nb_dims shape, nb_dtype dt, const nb_tensor *i0, const nb_tensor *i1,
                     const nb_tensor *i2, int nin, double s0, double s1, const char *want, const char *what) {
    const char *k1, *k2;
    nb_tensor *got = ix_run(op, shape, dt, i0, i1, i2, nin, s0, s1, &k1, NULL);
    ot_cap_ref();
    nb_tensor *ref = ix_run(op, shape, dt, i0, i1, i2, nin, s0, s1, &k2, NULL);
    ix_default(0);
    cr_assert(!strncmp(k2, "ref", 3), "%s: capped run served by %s", what, k2);
    if (want) cr_assert(!strcmp(k1, want), "%s: served by %s, expected %s", what, k1, want);
    else cr_assert(!strncmp(k1, "ref", 3), "%s: served by %s, expected ref (declined)", what, k1);
    ix_same(got, ref, what);
}

Test(avx2_index, cat_and_stack_every_dim_and_dtype) {
    ix_need();
    nb_scope_begin();
    static const nb_dtype dts[4] = {NB_F32, NB_F64, NB_I64, NB_BOOL};
    for (int t = 0; t < 4; t++)
        for (int d = 0; d < 3; d++) {
            nb_dims s = NB_SHAPE(3, 5, 7), os = s, ss = NB_SHAPE(3, 5, 7);
            os.d[d] = 11;   /* the window [4, 4 + s[d]) of 11 */
            nb_tensor *x = ix_rand(s, dts[t], 10 + (uint64_t)d);
            ix_check(NB_OP_CAT, os, dts[t], x, NULL, NULL, 1, d, 4, "avx2_cat", "cat");
            nb_dims st = {.ndim = 4};
            for (int i = 0, k = 0; i < 4; i++) st.d[i] = i == d ? 4 : ss.d[k++];
            ix_check(NB_OP_STACK, st, dts[t], x, NULL, NULL, 1, d, 2, "avx2_stack", "stack");
        }
    /* a transposed input: declined, ref's result */
    nb_tensor *xt = nb_transpose(ix_rand(NB_SHAPE(5, 3, 7), NB_F32, 20), 0, 1);
    ix_check(NB_OP_CAT, NB_SHAPE(3, 9, 7), NB_F32, xt, NULL, NULL, 1, 1, 2, NULL, "cat transposed");
    nb_scope_end();
}

Test(avx2_index, index_select_every_dim) {
    ix_need();
    nb_scope_begin();
    const int64_t iv[6] = {2, 0, 2, 1, 4, 4}, wide[12] = {2, -1, 0, -1, 2, -1, 1, -1, 3, -1, 0, -1};
    nb_tensor *ix = nb_from_data(NB_SHAPE(6), NB_I64, iv);
    nb_tensor *ixs = nb_slice(nb_from_data(NB_SHAPE(12), NB_I64, wide), 0, 0, 12, 2);   /* stride 2 */
    for (int d = 0; d < 3; d++) {
        nb_tensor *x = ix_rand(NB_SHAPE(5, 5, 6), NB_F32, 30 + (uint64_t)d);
        nb_dims os = NB_SHAPE(5, 5, 6);
        os.d[d] = 6;
        ix_check(NB_OP_INDEX_SELECT, os, NB_F32, x, ix, NULL, 2, d, 0, "avx2_index_select", "index_select");
        ix_check(NB_OP_INDEX_SELECT, os, NB_F32, x, ixs, NULL, 2, d, 0, "avx2_index_select", "index_select strided");
        nb_tensor *xi = ix_rand(NB_SHAPE(5, 5, 6), NB_I64, 40 + (uint64_t)d);
        ix_check(NB_OP_INDEX_SELECT, os, NB_I64, xi, ix, NULL, 2, d, 0, "avx2_index_select", "index_select i64");
    }
    nb_scope_end();
}

Test(avx2_index, embedding_padded_rows) {
    ix_need();
    nb_scope_begin();
    nb_tensor *w = nb_slice(ix_rand(NB_SHAPE(9, 21), NB_F32, 50), 1, 0, 17, 1);   /* (9, 17), row stride 21 */
    const int64_t iv[8] = {0, 8, 3, 3, 5, 1, 8, 0};
    nb_tensor *ix = nb_from_data(NB_SHAPE(2, 4), NB_I64, iv);
    ix_check(NB_OP_EMBEDDING, NB_SHAPE(2, 4, 17), NB_F32, w, ix, NULL, 2, 0, 0, "avx2_embedding", "embedding");
    nb_tensor *w64 = ix_rand(NB_SHAPE(9, 5), NB_F64, 51);
    ix_check(NB_OP_EMBEDDING, NB_SHAPE(2, 4, 5), NB_F64, w64, ix, NULL, 2, 0, 0, "avx2_embedding", "embedding f64");
    nb_tensor *wt = nb_transpose(ix_rand(NB_SHAPE(5, 9), NB_F32, 52), 0, 1);   /* unit stride along V: declined */
    ix_check(NB_OP_EMBEDDING, NB_SHAPE(2, 4, 5), NB_F32, wt, ix, NULL, 2, 0, 0, NULL, "embedding transposed w");
    nb_scope_end();
}

Test(avx2_index, index_add_every_dim_repeated_indices) {
    ix_need();
    nb_scope_begin();
    const int64_t iv[7] = {1, 3, 1, 0, 3, 3, 2};
    nb_tensor *ix = nb_from_data(NB_SHAPE(7), NB_I64, iv);
    for (int d = 0; d < 3; d++) {
        nb_dims s = NB_SHAPE(4, 4, 300), ss = s;   /* 300 columns: two column ranges and a tail */
        ss.d[d] = 7;
        nb_tensor *self = ix_rand(s, NB_F32, 60), *src = ix_rand(ss, NB_F32, 61 + (uint64_t)d);
        ix_check(NB_OP_INDEX_ADD, s, NB_F32, self, ix, src, 3, d, 0, "avx2_index_add", "index_add");
    }
    nb_scope_end();
}

/* The same bits at 1-5 and 8 threads, on 700 columns (3 column ranges) and
 * on 200 (one range at IX_COLS, cut narrower when threads would have no
 * task), onto zeros and onto a random self (copied first). */
Test(avx2_index, index_add_thread_count_independent) {
    ix_need();
    static const int64_t widths[2] = {700, 200};
    static const int threads[6] = {1, 2, 3, 4, 5, 8};
    for (int wi = 0; wi < 2; wi++) {
        nb_scope_begin();
        int64_t W = widths[wi];
        nb_tensor *self = wi ? ix_rand(NB_SHAPE(500, W), NB_F32, 72) : nb_zeros(NB_SHAPE(500, W), NB_F32);
        nb_tensor *src = ix_rand(NB_SHAPE(3000, W), NB_F32, 70);
        nb_tensor *ix = nb_contiguous(nb_to_dtype(nb_mul_scalar(nb_rand(NB_SHAPE(3000), NB_F32, 71), 499.0), NB_I64));
        nb_tensor *r[6];
        const char *k;
        for (int t = 0; t < 6; t++) {
            ix_default(threads[t]);
            r[t] = ix_run(NB_OP_INDEX_ADD, NB_SHAPE(500, W), NB_F32, self, ix, src, 3, 0, 0, &k, NULL);
            cr_assert_str_eq(k, "avx2_index_add");
        }
        ix_default(0);
        for (int t = 1; t < 6; t++) {
            char what[64];
            snprintf(what, sizeof what, "index_add of %lld columns at %d threads", (long long)W, threads[t]);
            ix_same(r[0], r[t], what);
        }
        nb_scope_end();
    }
}

Test(avx2_index, out_of_range_index_is_an_error) {
    ix_need();
    nb_scope_begin();
    const int64_t bad[3] = {0, 5, 1};
    nb_tensor *ix = nb_from_data(NB_SHAPE(3), NB_I64, bad);
    nb_tensor *x = ix_rand(NB_SHAPE(5, 4), NB_F32, 80);
    const char *k;
    int rc;
    ix_run(NB_OP_INDEX_SELECT, NB_SHAPE(3, 4), NB_F32, x, ix, NULL, 2, 0, 0, &k, &rc);
    cr_assert_eq(rc, NB_ERANGE, "index_select: rc %d", rc);
    cr_assert(strstr(nb_last_error(), "out of range"), "%s", nb_last_error());
    ix_run(NB_OP_EMBEDDING, NB_SHAPE(3, 4), NB_F32, x, ix, NULL, 2, 0, 0, &k, &rc);
    cr_assert_eq(rc, NB_ERANGE, "embedding: rc %d", rc);
    nb_tensor *src = ix_rand(NB_SHAPE(3, 4), NB_F32, 81);
    nb_tensor *out = ix_run(NB_OP_INDEX_ADD, NB_SHAPE(5, 4), NB_F32, x, ix, src, 3, 0, 0, &k, &rc);
    cr_assert_eq(rc, NB_ERANGE, "index_add: rc %d", rc);
    const float *o = nb_data(out);
    for (int i = 0; i < 20; i++) cr_assert_eq(o[i], 0.0f, "index_add wrote element %d before failing", i);
    nb_scope_end();
}

/* repeat, flip, tril/triu and pad, row by row: bitwise ref's for every
 * dtype on 1-D to 4-D operands (a size-0 dim, rows of 1, 7, 17 and 33
 * elements, odd sizes for the 8- and 4-lane reversals); every flip mask,
 * diagonals below, on and past the matrix, pads that grow, crop and both,
 * zero and non-zero fill values. */
static const int64_t mv_shapes[][5] = {{1, 7}, {2, 3, 5}, {3, 2, 3, 17}, {4, 2, 1, 4, 33}, {2, 0, 5}, {2, 9, 1}};

static nb_dims mv_dims(const int64_t *s) { return nb_dims_of((int)s[0], s + 1); }

Test(avx2_index, repeat_flip_tri_pad_every_dtype) {
    ix_need();
    nb_scope_begin();
    static const nb_dtype dts[4] = {NB_F32, NB_F64, NB_I64, NB_BOOL};
    static const int64_t diag[] = {-3, -1, 0, 1, 2, 40};
    static const int64_t pads[][2] = {{1, 2}, {0, 0}, {-1, 1}, {2, -1}, {3, 0}};
    for (int t = 0; t < 4; t++)
        for (size_t si = 0; si < sizeof mv_shapes / sizeof mv_shapes[0]; si++) {
            nb_dims in_d = mv_dims(mv_shapes[si]);
            int nd = in_d.ndim;
            nb_tensor *x = ix_rand(in_d, dts[t], 300 + (uint64_t)si * 4 + (uint64_t)t);
            char what[96];
            /* repeat: one leading dim of 2, then 1, 2, 3, 1, ... times each dim */
            nb_dims rd = {nd + 1, {2}};
            for (int d = 0; d < nd; d++) rd.d[d + 1] = in_d.d[d] * (1 + d % 3);
            snprintf(what, sizeof what, "repeat %s shape %zu", nb_dtype_name(dts[t]), si);
            ix_check(NB_OP_REPEAT, rd, dts[t], x, NULL, NULL, 1, 0, 0, "avx2_repeat", what);
            for (unsigned m = 1; m < (1u << nd); m++) {
                snprintf(what, sizeof what, "flip %s shape %zu mask %u", nb_dtype_name(dts[t]), si, m);
                ix_check(NB_OP_FLIP, in_d, dts[t], x, NULL, NULL, 1, m, 0, "avx2_flip", what);
            }
            for (size_t k = 0; nd >= 2 && k < sizeof diag / sizeof diag[0]; k++) {
                snprintf(what, sizeof what, "tril %s shape %zu k %lld", nb_dtype_name(dts[t]), si, (long long)diag[k]);
                ix_check(NB_OP_TRIL, in_d, dts[t], x, NULL, NULL, 1, (double)diag[k], 0, "avx2_tril", what);
                what[1] = 'r', what[2] = 'i', what[3] = 'u';
                ix_check(NB_OP_TRIU, in_d, dts[t], x, NULL, NULL, 1, (double)diag[k], 0, "avx2_triu", what);
            }
            for (int pc = 0; pc < 5; pc++) {
                int64_t pv[2 * NB_MAX_DIMS];
                nb_dims od = in_d;
                bool ok = true;
                for (int d = 0; d < nd; d++) {
                    const int64_t *p = pads[(pc + d) % 5];
                    pv[2 * d] = p[0], pv[2 * d + 1] = p[1];
                    od.d[d] = in_d.d[d] + p[0] + p[1];
                    ok = ok && od.d[d] >= 0;
                }
                if (!ok) continue;
                nb_tensor *pt = nb_from_data(NB_SHAPE(2 * nd), NB_I64, pv);
                for (int f = 0; f < 2; f++) {
                    snprintf(what, sizeof what, "pad %s shape %zu pads %d fill %d", nb_dtype_name(dts[t]), si, pc, f);
                    ix_check(NB_OP_PAD, od, dts[t], x, pt, NULL, 2, f ? 2.5 : 0.0, 0, "avx2_pad", what);
                }
            }
        }
    /* a transposed input: declined, ref's result */
    nb_tensor *xt = nb_transpose(ix_rand(NB_SHAPE(5, 4), NB_F32, 99), 0, 1);
    ix_check(NB_OP_FLIP, NB_SHAPE(4, 5), NB_F32, xt, NULL, NULL, 1, 1, 0, NULL, "flip of a transposed input");
    ix_check(NB_OP_TRIL, NB_SHAPE(4, 5), NB_F32, xt, NULL, NULL, 1, 0, 0, NULL, "tril of a transposed input");
    nb_scope_end();
}

/* Large enough to be split over threads: the same bits at 1 and 3 threads. */
Test(avx2_index, movement_ops_split_over_threads) {
    ix_need();
    nb_scope_begin();
    nb_tensor *x = ix_rand(NB_SHAPE(300, 1001), NB_F32, 77);
    const int64_t pv[4] = {2, 3, -1, 5};
    nb_tensor *pt = nb_from_data(NB_SHAPE(4), NB_I64, pv);
    ix_check(NB_OP_FLIP, NB_SHAPE(300, 1001), NB_F32, x, NULL, NULL, 1, 3, 0, "avx2_flip", "flip 300x1001");
    ix_check(NB_OP_TRIU, NB_SHAPE(300, 1001), NB_F32, x, NULL, NULL, 1, 7, 0, "avx2_triu", "triu 300x1001");
    ix_check(NB_OP_PAD, NB_SHAPE(305, 1005), NB_F32, x, pt, NULL, 2, -1.5, 0, "avx2_pad", "pad 300x1001");
    ix_check(NB_OP_REPEAT, NB_SHAPE(600, 2002), NB_F32, x, NULL, NULL, 1, 0, 0, "avx2_repeat", "repeat 300x1001");
    const char *k;
    ix_default(1);
    nb_tensor *one = ix_run(NB_OP_PAD, NB_SHAPE(305, 1005), NB_F32, x, pt, NULL, 2, -1.5, 0, &k, NULL);
    ix_default(3);
    nb_tensor *three = ix_run(NB_OP_PAD, NB_SHAPE(305, 1005), NB_F32, x, pt, NULL, 2, -1.5, 0, &k, NULL);
    ix_default(0);
    ix_same(one, three, "pad at 1 and 3 threads");
    nb_scope_end();
}

/* An I64 tensor of `shape` with values in [0, hi) (many repeats). */
static nb_tensor *ix_idx(nb_dims shape, int64_t hi, uint64_t seed) {
    nb_tensor *u = nb_mul_scalar(nb_rand(shape, NB_F32, seed), (double)hi - 0.01);
    return nb_contiguous(nb_to_dtype(u, NB_I64));   /* truncation: u >= 0 */
}

/* gather along every dim (every dtype; in[0] larger than out in the other
 * dims), scatter_add along every dim (F32, F64; repeated indices, src
 * larger than index): bitwise ref's; an out-of-range index: NB_ERANGE. */
Test(avx2_index, gather_scatter_add_every_dim) {
    ix_need();
    nb_scope_begin();
    static const nb_dtype dts[4] = {NB_F32, NB_F64, NB_I64, NB_BOOL};
    for (int t = 0; t < 4; t++)
        for (int d = 0; d < 3; d++) {
            nb_tensor *src = ix_rand(NB_SHAPE(5, 6, 19), dts[t], 500 + (uint64_t)(t * 3 + d));
            int64_t full[3] = {5, 6, 19}, sh[3] = {4, 5, 17};
            sh[d] = 9;   /* along d the index may be longer than src */
            nb_dims od = nb_dims_of(3, sh);
            nb_tensor *ix = ix_idx(od, full[d], 600 + (uint64_t)(t * 3 + d));
            char what[64];
            snprintf(what, sizeof what, "gather %s dim %d", nb_dtype_name(dts[t]), d);
            ix_check(NB_OP_GATHER, od, dts[t], src, ix, NULL, 2, d, 0, "avx2_gather", what);
            if (dts[t] != NB_F32 && dts[t] != NB_F64) continue;
            nb_tensor *self = ix_rand(NB_SHAPE(5, 6, 19), dts[t], 700 + (uint64_t)d);
            int64_t ssh[3] = {4, 5, 17};
            ssh[d] = 11;   /* index along d; src larger than index everywhere */
            nb_tensor *six = ix_idx(nb_dims_of(3, ssh), full[d], 800 + (uint64_t)d);
            int64_t big[3] = {ssh[0] + 1, ssh[1] + 2, ssh[2] + 3};
            nb_tensor *ssrc = ix_rand(nb_dims_of(3, big), dts[t], 900 + (uint64_t)d);
            snprintf(what, sizeof what, "scatter_add %s dim %d", nb_dtype_name(dts[t]), d);
            ix_check(NB_OP_SCATTER_ADD, NB_SHAPE(5, 6, 19), dts[t], self, six, ssrc, 3, d, 0, "avx2_scatter_add",
                     what);
            /* into one value broadcast everywhere (a gather's backward adds into expanded zeros) */
            nb_tensor *bself = nb_expand(nb_to_dtype(nb_scalar(1.5), dts[t]), NB_SHAPE(5, 6, 19));
            snprintf(what, sizeof what, "scatter_add into a broadcast %s, dim %d", nb_dtype_name(dts[t]), d);
            ix_check(NB_OP_SCATTER_ADD, NB_SHAPE(5, 6, 19), dts[t], bself, six, ssrc, 3, d, 0, "avx2_scatter_add",
                     what);
        }
    /* large, split over threads, many additions per element: the same bits at 1 and 3 threads, and ref's */
    nb_tensor *self = ix_rand(NB_SHAPE(64, 500), NB_F32, 11), *src = ix_rand(NB_SHAPE(300, 500), NB_F32, 12);
    for (int d = 0; d < 2; d++) {
        /* index.size(k) <= self.size(k) for k != d (the op checks it) */
        nb_tensor *ix = d ? ix_idx(NB_SHAPE(64, 500), 500, 14) : ix_idx(NB_SHAPE(300, 500), 64, 13);
        ix_check(NB_OP_SCATTER_ADD, NB_SHAPE(64, 500), NB_F32, self, ix, src, 3, d, 0, "avx2_scatter_add",
                 "scatter_add into 64x500");
        const char *k;
        ix_default(1);
        nb_tensor *one = ix_run(NB_OP_SCATTER_ADD, NB_SHAPE(64, 500), NB_F32, self, ix, src, 3, d, 0, &k, NULL);
        ix_default(3);
        nb_tensor *three = ix_run(NB_OP_SCATTER_ADD, NB_SHAPE(64, 500), NB_F32, self, ix, src, 3, d, 0, &k, NULL);
        ix_default(0);
        ix_same(one, three, "scatter_add at 1 and 3 threads");
    }
    /* an index out of range: NB_ERANGE, nothing written */
    const int64_t bad[6] = {0, 1, 2, 3, 7, 1};
    nb_tensor *bix = nb_from_data(NB_SHAPE(2, 3), NB_I64, bad), *x = ix_rand(NB_SHAPE(2, 5), NB_F32, 14);
    const char *k;
    int rc;
    ix_run(NB_OP_GATHER, NB_SHAPE(2, 3), NB_F32, x, bix, NULL, 2, 1, 0, &k, &rc);
    cr_assert_eq(rc, NB_ERANGE, "gather: rc %d", rc);
    cr_assert(strstr(nb_last_error(), "index 7 out of range [0, 5)"), "%s", nb_last_error());
    ix_run(NB_OP_SCATTER_ADD, NB_SHAPE(2, 5), NB_F32, x, bix, ix_rand(NB_SHAPE(2, 3), NB_F32, 15), 3, 1, 0, &k, &rc);
    cr_assert_eq(rc, NB_ERANGE, "scatter_add: rc %d", rc);
    cr_assert(strstr(nb_last_error(), "index 7 out of range [0, 5)"), "%s", nb_last_error());
    nb_scope_end();
}
