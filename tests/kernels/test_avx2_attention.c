/* test_avx2_attention.c — the AVX2 attention kernels (avx2_attention.c:
 * SDPA and SDPA_WEIGHTS) against the ref kernels, which work in double.
 *
 * - Shapes with L, S, E, Ev not multiples of 8 and of one another, a key
 *   count large enough to cut the queries into many blocks (S 3000: blocks
 *   of 21 queries), one query; q/k/v in the multi-head layout (B, L, H, E)
 *   viewed as (B, H, L, E), k and v broadcast over a batch dim (stride 0),
 *   out strided; masks F32 (broadcast (L, S) and per batch) and BOOL with
 *   fully masked rows (weights 0 there); is_causal with L < S, L = S, L > S,
 *   blocks that straddle the diagonal.
 *   Error: max |got - ref| / max |ref| below AT_TOL; served by the AVX2
 *   kernel.
 * - 1, 2 and 3 threads give the same bits.
 * - Declines: F64, an F64 mask with F32 q.
 * Run at an explicit avx2 cap; skipped without AVX2.
 * - At the avx512 cap (skipped without AVX-512): the same kernels with their
 *   GEMMs on the AVX-512 GEMM (avx512_sdpa) serve, and give the AVX2
 *   kernels' bits on every case above.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

/* F32 GEMM sums (E or S terms) and F32 exp against ref's double: ~1e-6 measured. */
#define AT_TOL 2e-5

static void at_default(int threads) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx2", .num_threads = threads, .abort_on_error = -1}), 0,
                 "nb_init: %s", nb_last_error());
}
static void at_setup(void) { at_default(0); }
static void at_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}
TestSuite(avx2_attention, .init = at_setup, .fini = at_teardown);

static void at_need(void) {
    if (!nb__registry_has(NB_OP_SDPA, NB_F32, "avx2_")) cr_skip("no AVX2 attention kernel within the ISA cap");
}

typedef struct at_case {
    int64_t B, H, L, S, E, Ev;
    char layout;   /* 'c' contiguous, 'h' (B, L, H, E) permuted, 'b' k and v broadcast over H, 'o' strided out */
    char mask;     /* 0 none, 'f' F32 (L, S), 'g' F32 (B, 1, L, S), 'b' BOOL (L, S) with fully masked rows */
    bool causal;
} at_case;

/* (B, H, rows, cols) random, in the case's layout. */
static nb_tensor *at_tensor(const at_case *c, int64_t rows, int64_t cols, uint64_t seed, bool kv) {
    if (c->layout == 'h') {
        nb_tensor *t = nb_randn(NB_SHAPE(c->B, rows, c->H, cols), NB_F32, seed);
        return nb_permute(t, (int[]){0, 2, 1, 3}, 4);
    }
    if (c->layout == 'b' && kv) return nb_expand(nb_randn(NB_SHAPE(c->B, 1, rows, cols), NB_F32, seed),
                                                 NB_SHAPE(c->B, c->H, rows, cols));
    return nb_randn(NB_SHAPE(c->B, c->H, rows, cols), NB_F32, seed);
}

static nb_tensor *at_out(const at_case *c, int64_t cols) {
    if (c->layout != 'o') return nb_full(NB_SHAPE(c->B, c->H, c->L, cols), NB_F32, NAN);
    return nb_slice(nb_full(NB_SHAPE(c->B, c->H, c->L, 2 * cols), NB_F32, NAN), 3, 0, 2 * cols, 2);
}

static nb_tensor *at_mask(const at_case *c) {
    if (!c->mask) return NULL;
    if (c->mask == 'f') return nb_randn(NB_SHAPE(1, 1, c->L, c->S), NB_F32, 77);
    if (c->mask == 'g') return nb_randn(NB_SHAPE(c->B, 1, c->L, c->S), NB_F32, 78);
    /* BOOL: about a third false; rows 0 and L - 1 wholly false (weights 0) */
    nb_tensor *r = nb_rand(NB_SHAPE(1, 1, c->L, c->S), NB_F32, 79);
    nb_tensor *m = nb_contiguous(nb_gt_scalar(r, 0.33));
    cr_assert(m, "%s", nb_last_error());
    bool *p = nb_data(m);
    for (int64_t j = 0; j < c->S; j++) p[j] = p[(c->L - 1) * c->S + j] = false;
    return m;
}

static nb_tensor *at_dispatch(nb_op op, nb_tensor *out, const nb_tensor *q, const nb_tensor *k, const nb_tensor *v,
                              const nb_tensor *mask, double scale, bool causal, const char **served) {
    nb_kernel_args a = {.op = op, .out = out, .nin = op == NB_OP_SDPA ? 4 : 3, .scalar = {scale, causal}};
    a.in[0] = q, a.in[1] = k;
    if (op == NB_OP_SDPA) a.in[2] = v, a.in[3] = mask;
    else a.in[2] = mask;
    cr_assert_eq(nb__dispatch(&a, "test_avx2_attention"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

static void at_check(const at_case *c) {
    nb_scope_begin();
    nb_tensor *q = at_tensor(c, c->L, c->E, 1, false), *k = at_tensor(c, c->S, c->E, 2, true);
    nb_tensor *v = at_tensor(c, c->S, c->Ev, 3, true), *mask = at_mask(c);
    cr_assert(q && k && v, "%s", nb_last_error());
    double scale = 1.0 / sqrt((double)c->E);
    for (int w = 0; w < 2; w++) {
        nb_op op = w ? NB_OP_SDPA_WEIGHTS : NB_OP_SDPA;
        int64_t cols = w ? c->S : c->Ev;
        const char *k1, *k2;
        nb_tensor *got = at_dispatch(op, at_out(c, cols), q, k, v, mask, scale, c->causal, &k1);
        ot_cap_ref();
        nb_tensor *ref = at_dispatch(op, at_out(c, cols), q, k, v, mask, scale, c->causal, &k2);
        at_default(0);
        cr_assert(!strncmp(k2, "ref", 3), "capped run served by %s", k2);
        cr_assert(!strncmp(k1, "avx2_sdpa", 9), "%s served by %s", nb_op_name(op), k1);
        double e = ot_rel_err(got, ref, false);
        cr_assert(e <= AT_TOL,
                  "%s B%lld H%lld L%lld S%lld E%lld Ev%lld layout %c mask %c causal %d: relative error %g",
                  nb_op_name(op), (long long)c->B, (long long)c->H, (long long)c->L, (long long)c->S,
                  (long long)c->E, (long long)c->Ev, c->layout, c->mask ? c->mask : '-', c->causal, e);
        if (c->mask == 'b') {   /* the fully masked first query: exact zeros */
            nb_tensor *g = nb_contiguous(got);
            const float *p = nb_data(g);
            for (int64_t j = 0; j < cols; j++) cr_assert_eq(p[j], 0.0f, "masked row: %g at %lld", p[j], (long long)j);
        }
    }
    nb_scope_end();
}

Test(avx2_attention, shapes_and_tails) {
    at_need();
    static const at_case cs[] = {
        {2, 3, 5, 7, 9, 11, 'c', 0, false},   {1, 2, 64, 64, 64, 64, 'c', 0, false},
        {2, 1, 33, 17, 16, 8, 'c', 0, false}, {1, 1, 1, 300, 32, 40, 'c', 0, false},
        {1, 2, 50, 3000, 8, 24, 'c', 0, false},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) at_check(&cs[i]);
}

Test(avx2_attention, layouts) {
    at_need();
    at_check(&(at_case){2, 4, 20, 20, 16, 16, 'h', 0, false});
    at_check(&(at_case){2, 3, 9, 13, 8, 5, 'b', 0, false});
    at_check(&(at_case){2, 2, 12, 10, 8, 8, 'o', 0, false});
}

Test(avx2_attention, masks) {
    at_need();
    at_check(&(at_case){2, 2, 19, 23, 16, 9, 'c', 'f', false});
    at_check(&(at_case){2, 3, 8, 40, 8, 8, 'h', 'g', false});
    at_check(&(at_case){1, 2, 17, 29, 12, 12, 'c', 'b', false});
}

Test(avx2_attention, causal) {
    at_need();
    at_check(&(at_case){2, 2, 100, 100, 16, 16, 'c', 0, true});   /* blocks of 64 straddle the diagonal */
    at_check(&(at_case){1, 2, 30, 70, 8, 8, 'c', 0, true});     /* L < S */
    at_check(&(at_case){1, 2, 70, 30, 8, 8, 'h', 0, true});     /* L > S: later queries see every key */
    at_check(&(at_case){1, 1, 130, 130, 8, 8, 'c', 'f', true});
}

Test(avx2_attention, thread_count_independent) {
    at_need();
    nb_scope_begin();
    at_case c = {4, 4, 70, 90, 24, 16, 'c', 'f', false};
    nb_tensor *q = at_tensor(&c, c.L, c.E, 1, false), *k = at_tensor(&c, c.S, c.E, 2, true);
    nb_tensor *v = at_tensor(&c, c.S, c.Ev, 3, true), *mask = at_mask(&c);
    nb_tensor *r[3][2];
    const char *kn;
    for (int th = 1; th <= 3; th++) {
        at_default(th);
        r[th - 1][0] = at_dispatch(NB_OP_SDPA, at_out(&c, c.Ev), q, k, v, mask, 0.2, th == 2, &kn);
        r[th - 1][1] = at_dispatch(NB_OP_SDPA_WEIGHTS, at_out(&c, c.S), q, k, v, mask, 0.2, false, &kn);
    }
    at_default(0);
    for (int th = 1; th < 3; th++) {
        cr_assert(!memcmp(nb_data(r[0][1]), nb_data(r[th][1]), (size_t)nb_numel(r[0][1]) * sizeof(float)),
                  "weights differ at %d threads", th + 1);
        if (th != 1)   /* run 2 was causal */
            cr_assert(!memcmp(nb_data(r[0][0]), nb_data(r[th][0]), (size_t)nb_numel(r[0][0]) * sizeof(float)),
                      "outputs differ at %d threads", th + 1);
    }
    nb_scope_end();
}

Test(avx2_attention, declines_what_it_does_not_serve) {
    at_need();
    nb_scope_begin();
    const char *k;
    nb_tensor *q = nb_randn(NB_SHAPE(1, 4, 8), NB_F64, 1), *kk = nb_randn(NB_SHAPE(1, 6, 8), NB_F64, 2);
    at_dispatch(NB_OP_SDPA_WEIGHTS, nb_empty(NB_SHAPE(1, 4, 6), NB_F64), q, kk, NULL, NULL, 0.3, false, &k);
    cr_assert(!strncmp(k, "ref", 3), "F64 served by %s", k);
    nb_tensor *q32 = nb_randn(NB_SHAPE(1, 4, 8), NB_F32, 1), *k32 = nb_randn(NB_SHAPE(1, 6, 8), NB_F32, 2);
    nb_tensor *m64 = nb_randn(NB_SHAPE(1, 4, 6), NB_F64, 3);
    at_dispatch(NB_OP_SDPA_WEIGHTS, nb_empty(NB_SHAPE(1, 4, 6), NB_F32), q32, k32, NULL, m64, 0.3, false, &k);
    cr_assert(!strncmp(k, "ref", 3), "an F64 mask served by %s", k);
    nb_scope_end();
}

/* avx512_sdpa / avx512_sdpa_weights: the AVX2 kernels with the AVX-512 GEMM
 * (bitwise the AVX2 GEMM's), so the same bits as avx2_sdpa on each case
 * (layouts, masks, causal blocks, many blocks of queries), at 1 and 2
 * threads. */
Test(avx2_attention, avx512_gemm_twin_gives_the_avx2_bits) {
    at_need();
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx512", .abort_on_error = -1}), 0, "nb_init: %s", nb_last_error());
    bool have = nb__registry_has(NB_OP_SDPA, NB_F32, "avx512_");
    at_default(0);
    if (!have) cr_skip("no AVX-512 attention kernel on this CPU");
    static const at_case cs[] = {
        {2, 3, 5, 7, 9, 11, 'c', 0, false},      {1, 2, 50, 3000, 8, 24, 'c', 0, false},
        {2, 4, 20, 20, 16, 16, 'h', 0, false},   {2, 3, 9, 13, 8, 5, 'b', 0, false},
        {2, 2, 12, 10, 8, 8, 'o', 0, false},     {2, 3, 8, 40, 8, 8, 'h', 'g', false},
        {1, 2, 17, 29, 12, 12, 'c', 'b', false}, {2, 2, 100, 100, 16, 16, 'c', 0, true},
        {1, 2, 70, 30, 8, 8, 'h', 0, true},      {1, 1, 130, 130, 64, 64, 'c', 'f', true},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        const at_case *c = &cs[i];
        nb_scope_begin();
        nb_tensor *q = at_tensor(c, c->L, c->E, 1, false), *k = at_tensor(c, c->S, c->E, 2, true);
        nb_tensor *v = at_tensor(c, c->S, c->Ev, 3, true), *mask = at_mask(c);
        for (int w = 0; w < 2; w++) {
            nb_op op = w ? NB_OP_SDPA_WEIGHTS : NB_OP_SDPA;
            int64_t cols = w ? c->S : c->Ev;
            const char *k1, *k2;
            cr_assert_eq(nb_init(&(nb_init_opts){.isa = "avx512", .num_threads = 1 + (int)(i % 2), .abort_on_error = -1}),
                         0);
            nb_tensor *got = nb_contiguous(at_dispatch(op, at_out(c, cols), q, k, v, mask, 0.3, c->causal, &k1));
            at_default(0);
            nb_tensor *ref = nb_contiguous(at_dispatch(op, at_out(c, cols), q, k, v, mask, 0.3, c->causal, &k2));
            cr_assert(!strncmp(k1, "avx512_sdpa", 11), "%s at the avx512 cap served by %s", nb_op_name(op), k1);
            cr_assert(!strncmp(k2, "avx2_sdpa", 9), "%s at the avx2 cap served by %s", nb_op_name(op), k2);
            cr_assert(!memcmp(nb_data(got), nb_data(ref), (size_t)nb_numel(got) * sizeof(float)),
                      "%s case %zu: the AVX-512 GEMM twin's bits differ from avx2_sdpa's", nb_op_name(op), i);
        }
        nb_scope_end();
    }
}
