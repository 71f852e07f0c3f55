/* conv_small_testutil.h — what test_conv_small.c (AVX2) and
 * test_avx512_conv_small.c share: the kernel under test (its ISA cap and
 * name), dispatching one conv through the registry, the check of one case
 * against ref, the bits of one run at a given thread count, the inf case
 * and the declines. Each file sets cs_k in its suite's init and declares
 * its own tests. Include after criterion, testutil.h and onednn_testutil.h.
 */
#ifndef NB_TESTS_CONV_SMALL_TESTUTIL_H
#define NB_TESTS_CONV_SMALL_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"

/* Error max |got - ref| / max |ref| allowed (ref sums in double). Measured
 * here: AVX2 up to 5.7e-7 forward, 2.6e-7 backward-weights; AVX-512 up to
 * 6e-7 and 4e-7 (lane-wise float sums). */
#define CS_TOL 1e-5

typedef struct cs_kind {
    const char *isa;     /* the nb_init cap the kernel runs under */
    int prefer;          /* nb__isa_prefer while it runs (-1: the registry's order) */
    const char *prefix;  /* its kernels' names start with this */
    bool gy_any_w;       /* its weight gradient serves a gy without unit W stride */
    int64_t wsmall_k;    /* its weight gradient declines up to this many outputs with > 25 taps each */
} cs_kind;

static const cs_kind *cs_k;   /* set by the suite's init */

static void cs_default(void) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = cs_k->isa, .abort_on_error = -1}), 0, "nb_init: %s",
                 nb_last_error());
    nb__isa_prefer = cs_k->prefer;
}
static void cs_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    nb_init(NULL);
}

static void cs_need(void) {
    if (!nb__registry_has(NB_OP_CONV2D, NB_F32, cs_k->prefix)) cr_skip("no %s kernel within the ISA cap", cs_k->prefix);
}

static bool cs_is_ours(const char *k) { return k && !strncmp(k, cs_k->prefix, strlen(cs_k->prefix)); }

typedef struct cs_case {
    int64_t n, ci, h, w, co, r, pad;
    bool bias;
    char layout;   /* 'c', 't' (x or gy with H, W swapped in memory), 's' (every 2nd W element),
                      'w' (weight permuted), 'o' (strided output / gy every 2nd channel) */
} cs_case;

static nb_tensor *cs_out(nb_dims shape, char layout) {
    if (layout != 'o') return nb_full(shape, NB_F32, NAN);
    nb_dims m = shape;
    m.d[1] *= 2;
    return nb_slice(nb_full(m, NB_F32, NAN), 1, 0, m.d[1], 2);
}

static nb_tensor *cs_dispatch(nb_op op, nb_tensor *out, const nb_tensor *a, const nb_tensor *b,
                              const nb_tensor *bias, int64_t pad, int64_t stride, int64_t dil, int64_t groups,
                              const char **served) {
    nb_kernel_args args = {.op = op, .out = out, .in = {a, b, bias}, .nin = bias ? 3 : 2};
    double geo[7] = {(double)stride, (double)stride, (double)pad, (double)pad, (double)dil, (double)dil, (double)groups};
    memcpy(args.scalar, geo, sizeof geo);
    cr_assert_eq(nb__dispatch(&args, "test_conv_small"), 0, "%s: %s", nb_op_name(op), nb_last_error());
    *served = nb__last_kernel();
    return out;
}

/* op of case c by the kernel under test and at the ref cap: served by it
 * (unless it declines that layout) and within CS_TOL of ref. */
static void cs_check(const cs_case *c, nb_op op) {
    nb_scope_begin();
    int64_t oh = c->h + 2 * c->pad - c->r + 1, ow = c->w + 2 * c->pad - c->r + 1;
    nb_dims xs = NB_SHAPE(c->n, c->ci, c->h, c->w), ys = NB_SHAPE(c->n, c->co, oh, ow);
    nb_dims ws = NB_SHAPE(c->co, c->ci, c->r, c->r);
    nb_tensor *a = ot_conv_rand(xs, c->layout, false, 21), *b, *bias = NULL, *got, *ref;
    const char *k1, *k2;
    if (op == NB_OP_CONV2D) {
        b = ot_conv_rand(ws, c->layout, true, 22);
        if (c->bias) bias = nb_randn(NB_SHAPE(c->co), NB_F32, 23);
        got = cs_dispatch(op, cs_out(ys, c->layout), a, b, bias, c->pad, 1, 1, 1, &k1);
        ot_cap_ref();
        ref = cs_dispatch(op, cs_out(ys, c->layout), a, b, bias, c->pad, 1, 1, 1, &k2);
    } else {   /* gy: strided per channel for 'o', otherwise as x */
        char gl = c->layout == 'o' ? 'c' : c->layout;
        b = ot_conv_rand(ys, gl, false, 24);
        if (c->layout == 'o') {
            nb_dims m = ys;
            m.d[1] *= 2;
            b = nb_slice(nb_randn(m, NB_F32, 24), 1, 0, m.d[1], 2);
        }
        got = cs_dispatch(op, nb_full(ws, NB_F32, NAN), a, b, NULL, c->pad, 1, 1, 1, &k1);
        ot_cap_ref();
        ref = cs_dispatch(op, nb_full(ws, NB_F32, NAN), a, b, NULL, c->pad, 1, 1, 1, &k2);
    }
    cs_default();
    cr_assert(!strncmp(k2, "ref", 3), "capped run served by %s", k2);
    bool gy_w = c->layout == 't' || c->layout == 's';   /* gy W stride != 1 */
    bool wsmall = c->co <= cs_k->wsmall_k && c->ci * c->r * c->r > 25;
    if (op == NB_OP_CONV2D || ((!gy_w || cs_k->gy_any_w) && !wsmall))
        cr_assert(cs_is_ours(k1), "%s ci=%lld co=%lld r=%lld served by %s", nb_op_name(op), (long long)c->ci,
                  (long long)c->co, (long long)c->r, k1);
    double e = ot_rel_err(got, ref, false);
    cr_assert(e <= CS_TOL, "%s n=%lld ci=%lld co=%lld %lldx%lld r=%lld pad %lld layout %c (%s): relative error %g",
              nb_op_name(op), (long long)c->n, (long long)c->ci, (long long)c->co, (long long)c->h, (long long)c->w,
              (long long)c->r, (long long)c->pad, c->layout, k1, e);
    nb_scope_end();
}

static void cs_both(const cs_case *c) {
    cs_check(c, NB_OP_CONV2D);
    cs_check(c, NB_OP_CONV_BWD_WEIGHT);
}

/* op of case c (contiguous, no bias) at the given thread count into out
 * (cnt floats), served by the kernel under test. */
static void cs_bits(const cs_case *c, nb_op op, int threads, float *out, int64_t cnt) {
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads, .isa = cs_k->isa, .abort_on_error = -1}), 0);
    nb__isa_prefer = cs_k->prefer;
    nb_scope_begin();
    int64_t oh = c->h + 2 * c->pad - c->r + 1, ow = c->w + 2 * c->pad - c->r + 1;
    nb_tensor *x = nb_randn(NB_SHAPE(c->n, c->ci, c->h, c->w), NB_F32, 31);
    nb_tensor *o, *b;
    if (op == NB_OP_CONV2D) {
        b = nb_randn(NB_SHAPE(c->co, c->ci, c->r, c->r), NB_F32, 32);
        o = nb_full(NB_SHAPE(c->n, c->co, oh, ow), NB_F32, NAN);
    } else {
        b = nb_randn(NB_SHAPE(c->n, c->co, oh, ow), NB_F32, 33);
        o = nb_full(NB_SHAPE(c->co, c->ci, c->r, c->r), NB_F32, NAN);
    }
    const char *k;
    cs_dispatch(op, o, x, b, NULL, c->pad, 1, 1, 1, &k);
    cr_assert(cs_is_ours(k), "served by %s", k);
    cr_assert_eq(nb_numel(o), cnt);
    memcpy(out, nb_data(o), (size_t)cnt * sizeof(float));
    nb_scope_end();
}

/* Both ops of case c give the same bits at 2..max_threads threads as at 1. */
static void cs_same_bits(const cs_case *c, int max_threads) {
    static const nb_op ops[] = {NB_OP_CONV2D, NB_OP_CONV_BWD_WEIGHT};
    int64_t oh = c->h + 2 * c->pad - c->r + 1, ow = c->w + 2 * c->pad - c->r + 1;
    for (size_t o = 0; o < 2; o++) {
        int64_t cnt = o ? c->co * c->ci * c->r * c->r : c->n * c->co * oh * ow;
        float *one = malloc((size_t)cnt * sizeof(float)), *now = malloc((size_t)cnt * sizeof(float));
        cr_assert(one && now);
        cs_bits(c, ops[o], 1, one, cnt);
        for (int t = 2; t <= max_threads; t++) {
            cs_bits(c, ops[o], t, now, cnt);
            cr_assert(!memcmp(one, now, (size_t)cnt * sizeof(float)), "%s: %d threads differ from 1",
                      nb_op_name(ops[o]), t);
        }
        free(one);
        free(now);
    }
    cs_default();
}

/* CONV_BWD_WEIGHT_BIAS (the conv op's fused parameter gradients) of case c
 * (contiguous, no bias) at `threads` threads into out ((co, ci r r + 1)
 * floats); *served: the kernel. */
static void cs_fused_run(const cs_case *c, int threads, const char *isa, float *out, float *w, const char **served) {
    cr_assert_eq(nb_init(&(nb_init_opts){.num_threads = threads, .isa = isa, .abort_on_error = -1}), 0);
    nb__isa_prefer = strcmp(isa, "ref") ? cs_k->prefer : -1;
    nb_scope_begin();
    int64_t oh = c->h + 2 * c->pad - c->r + 1, ow = c->w + 2 * c->pad - c->r + 1, per = c->ci * c->r * c->r;
    nb_tensor *x = nb_randn(NB_SHAPE(c->n, c->ci, c->h, c->w), NB_F32, 51);
    nb_tensor *gy = nb_randn(NB_SHAPE(c->n, c->co, oh, ow), NB_F32, 52);
    nb_tensor *o = nb_full(NB_SHAPE(c->co, per + 1), NB_F32, NAN);
    nb_kernel_args args = {.op = NB_OP_CONV_BWD_WEIGHT_BIAS, .out = o, .in = {x, gy}, .nin = 2,
                           .scalar = {1, 1, (double)c->pad, (double)c->pad, 1, 1, 1, (double)c->r}};
    cr_assert_eq(nb__dispatch(&args, "test_conv_small"), 0, "%s", nb_last_error());
    *served = nb__last_kernel();
    memcpy(out, nb_data(o), (size_t)(c->co * (per + 1)) * sizeof(float));
    if (w) {   /* and CONV_BWD_WEIGHT on the same x and gy */
        const char *kw;
        nb_tensor *dw = cs_dispatch(NB_OP_CONV_BWD_WEIGHT, nb_full(NB_SHAPE(c->co, c->ci, c->r, c->r), NB_F32, NAN), x,
                                    gy, NULL, c->pad, 1, 1, 1, &kw);
        cr_assert(cs_is_ours(kw), "CONV_BWD_WEIGHT served by %s", kw);
        memcpy(w, nb_data(dw), (size_t)(c->co * per) * sizeof(float));
    }
    nb_scope_end();
}

/* The fused weight and bias gradients of case c: served by the kernel under
 * test, within CS_TOL of ref's (which is bitwise ref's two separate
 * kernels: checked in test_conv.c), the same bits at 1 to 3 threads, and
 * the weight part bitwise the kernel's own CONV_BWD_WEIGHT. */
static void cs_fused(const cs_case *c) {
    int64_t per = c->ci * c->r * c->r, cnt = c->co * (per + 1);
    float *got = malloc((size_t)cnt * sizeof(float)), *ref = malloc((size_t)cnt * sizeof(float));
    float *now = malloc((size_t)cnt * sizeof(float)), *w = malloc((size_t)(c->co * per) * sizeof(float));
    cr_assert(got && ref && now && w);
    const char *k, *kr;
    cs_fused_run(c, 1, "ref", ref, NULL, &kr);
    cr_assert(!strncmp(kr, "ref", 3), "capped run served by %s", kr);
    cs_fused_run(c, 1, cs_k->isa, got, w, &k);
    cr_assert(cs_is_ours(k), "fused gradients served by %s", k);
    for (int part = 0; part < 2; part++) {   /* weights, then biases: each relative to its own scale */
        double e = 0, m = 0;
        for (int64_t i = 0; i < c->co; i++)
            for (int64_t j = part ? per : 0; j < (part ? per + 1 : per); j++) {
                double d = fabs((double)got[i * (per + 1) + j] - ref[i * (per + 1) + j]);
                e = d > e ? d : e;
                m = fabs(ref[i * (per + 1) + j]) > m ? fabs(ref[i * (per + 1) + j]) : m;
            }
        cr_assert(e <= CS_TOL * m, "%s: error %g of max %g (ci=%lld co=%lld r=%lld)", part ? "db" : "dw", e, m,
                  (long long)c->ci, (long long)c->co, (long long)c->r);
    }
    for (int t = 2; t <= 3; t++) {
        cs_fused_run(c, t, cs_k->isa, now, NULL, &k);
        cr_assert(!memcmp(got, now, (size_t)cnt * sizeof(float)), "fused: %d threads differ from 1", t);
    }
    for (int64_t i = 0; i < c->co; i++)
        cr_assert(!memcmp(w + i * per, got + i * (per + 1), (size_t)per * sizeof(float)),
                  "fused dw row %lld differs from CONV_BWD_WEIGHT's", (long long)i);
    free(got), free(ref), free(now), free(w);
    cs_default();
}

/* cs_fused on LeNet's conv1 and shapes with tails and short chunks. */
static void cs_fused_cases(void) {
    static const cs_case cases[] = {
        {64, 1, 28, 28, 32, 5, 2, false, 'c'},   /* LeNet's conv1 */
        {5, 3, 17, 13, 32, 3, 1, false, 'c'},    /* RGB, odd sizes, a tail of every plane */
        {3, 2, 9, 33, 24, 1, 0, false, 'c'},
        {37, 4, 7, 7, 24, 3, 1, false, 'c'},     /* chunks of 3 images, the last one short */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) cs_fused(&cases[i]);
}

/* A valid 3x3 weight gradient over 11 columns (9 outputs, a partial last
 * vector) with x column 9 inf: read by taps kw = 1 (output 8) and kw = 2
 * (output 7) but never by kw = 0, whose taps stay finite and match ref. */
static void cs_inf_past_the_row(void) {
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(2, 1, 6, 11), NB_F32, 41), *gy = nb_randn(NB_SHAPE(2, 8, 4, 9), NB_F32, 42);
    float *px = nb_data(x);
    for (int64_t h = 0; h < 6; h++) px[h * 11 + 9] = INFINITY;
    const char *k1, *k2;
    nb_tensor *got = cs_dispatch(NB_OP_CONV_BWD_WEIGHT, nb_full(NB_SHAPE(8, 1, 3, 3), NB_F32, NAN), x, gy, NULL, 0, 1,
                                 1, 1, &k1);
    ot_cap_ref();
    nb_tensor *ref = cs_dispatch(NB_OP_CONV_BWD_WEIGHT, nb_full(NB_SHAPE(8, 1, 3, 3), NB_F32, NAN), x, gy, NULL, 0, 1,
                                 1, 1, &k2);
    cs_default();
    cr_assert(cs_is_ours(k1), "served by %s", k1);
    const float *g = nb_data(got), *r = nb_data(ref);
    for (int64_t i = 0; i < 8 * 9; i++) {
        int64_t kw = i % 3;
        if (kw == 0) {
            cr_assert(isfinite(g[i]) && isfinite(r[i]), "tap %lld: %g (ref %g)", (long long)i, g[i], r[i]);
            cr_assert(fabs(g[i] - r[i]) <= 1e-5 * (1 + fabs(r[i])), "tap %lld: %g vs %g", (long long)i, g[i], r[i]);
        } else {
            cr_assert(!isfinite(g[i]) && !isfinite(r[i]), "tap %lld: %g (ref %g)", (long long)i, g[i], r[i]);
        }
    }
    nb_scope_end();
}

static void cs_declines(nb_op op, nb_tensor *a, nb_tensor *b, nb_dims os, int64_t pad, int64_t stride, int64_t dil,
                        int64_t groups) {
    nb_tensor *out = nb_zeros(os, nb_dtype_of(a));
    const char *k;
    cs_dispatch(op, out, a, b, NULL, pad, stride, dil, groups, &k);
    cr_assert(!cs_is_ours(k), "%s served by %s, expected a decline", nb_op_name(op), k);
}

/* 5+ input channels, fewer than 8 outputs, stride 2, dilation 2, groups 2,
 * a non-square or 9x9 kernel, F64: declined by either twin. */
static void cs_declines_common(void) {
    nb_scope_begin();
    nb_tensor *x1 = nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F32, 1), *w1 = nb_randn(NB_SHAPE(16, 1, 3, 3), NB_F32, 2);
    nb_dims y1 = NB_SHAPE(2, 16, 12, 12);
    cs_declines(NB_OP_CONV2D, nb_randn(NB_SHAPE(2, 5, 12, 12), NB_F32, 3), nb_randn(NB_SHAPE(16, 5, 3, 3), NB_F32, 4),
                y1, 1, 1, 1, 1);                                                                   /* 5 channels */
    cs_declines(NB_OP_CONV2D, x1, nb_randn(NB_SHAPE(4, 1, 3, 3), NB_F32, 5), NB_SHAPE(2, 4, 12, 12), 1, 1, 1, 1);
    cs_declines(NB_OP_CONV2D, x1, w1, NB_SHAPE(2, 16, 6, 6), 1, 2, 1, 1);                        /* stride 2 */
    cs_declines(NB_OP_CONV2D, x1, w1, NB_SHAPE(2, 16, 10, 10), 1, 1, 2, 1);                      /* dilation 2 */
    cs_declines(NB_OP_CONV2D, nb_randn(NB_SHAPE(2, 2, 12, 12), NB_F32, 6), w1, y1, 1, 1, 1, 2);  /* groups 2 */
    cs_declines(NB_OP_CONV2D, x1, nb_randn(NB_SHAPE(16, 1, 3, 5), NB_F32, 7), NB_SHAPE(2, 16, 12, 10), 1, 1, 1, 1);
    cs_declines(NB_OP_CONV2D, x1, nb_randn(NB_SHAPE(16, 1, 9, 9), NB_F32, 8), NB_SHAPE(2, 16, 8, 8), 2, 1, 1, 1);
    cs_declines(NB_OP_CONV2D, nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F64, 9), nb_randn(NB_SHAPE(16, 1, 3, 3), NB_F64, 10),
                y1, 1, 1, 1, 1);                                                                   /* F64 */
    cs_declines(NB_OP_CONV_BWD_WEIGHT, nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F32, 11),
                nb_randn(NB_SHAPE(2, 4, 12, 12), NB_F32, 12), NB_SHAPE(4, 1, 3, 3), 1, 1, 1, 1);  /* 4 outputs */
    nb_scope_end();
}

#endif
