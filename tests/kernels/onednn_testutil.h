/* onednn_testutil.h — helpers shared by the oneDNN backend's tests
 * (test_onednn.c, test_onednn_more.c): suite set-up, skipping when the
 * backend's kernel is not chosen, capping the ISA to ref, and the relative
 * error of a result against ref. Include after criterion and testutil.h. */
#ifndef NB_TESTS_ONEDNN_TESTUTIL_H
#define NB_TESTS_ONEDNN_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include <nabla.h>

#include "kernels/kernels.h"

/* The AVX2 (and AVX-512) GEMMs are registered above oneDNN: the suites switch them off
 * (every call oneDNN takes goes to oneDNN) so that oneDNN's matmul and
 * linear are what they test. */
static inline void ot_fast_avx2_off(bool off) {
    nb__avx2_gemm_serve_all = nb__avx512_gemm_serve_all = off ? -1 : 0;
    nb__avx2_winograd_off = off;   /* and the Winograd convolutions (test_winograd.c) */
    nb__avx2_conv_small_off = off; /* and the few-input-channel ones (test_conv_small.c) */
    nb__avx512_conv_small_off = off;
    nb__avx2_bnorm_fwd_off = off;  /* and the batch_norm forward (test_avx2_bnorm.c) */
}

static inline void ot_setup(void) {
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    ot_fast_avx2_off(true);
}

/* Closes scopes an assertion left open and restores the default ISA. */
static inline void ot_teardown(void) {
    while (nb_scope_depth() > 0) nb_scope_end();
    ot_fast_avx2_off(false);
    nb_init(NULL);
}

/* Skips the test unless a kernel whose name starts with `prefix` is registered for
 * (op, F32) within the ISA cap (chosen or not: ot_setup switched off the
 * AVX2 GEMM registered above oneDNN). */
static inline void ot_need(nb_op op, const char *prefix) {
    const char *k = nb_kernel_chosen(op, NB_F32);
    if (!nb__registry_has(op, NB_F32, prefix))
        cr_skip("%s: no %s kernel within the ISA cap (chosen: %s)", nb_op_name(op), prefix, k ? k : "none");
}

static inline void ot_cap_ref(void) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = "ref", .abort_on_error = -1}), 0);
    cr_assert_eq(nb_isa_active(), NB_ISA_REF);
}

/* max |got - ref| / max |ref| (0 for empty tensors); F32 tensors of one shape.
 * nan_equal false: any NaN makes the error infinite. nan_equal true: NaN
 * against NaN (and equal infinities) count as equal, NaN against a number as
 * infinite, and only finite ref values set the magnitude. */
static inline double ot_rel_err(nb_tensor *got, nb_tensor *ref, bool nan_equal) {
    cr_assert(got && ref, "result is NULL: %s", nb_last_error());
    cr_assert_eq(nb_ndim(got), nb_ndim(ref));
    for (int d = 0; d < nb_ndim(got); d++) cr_assert_eq(nb_shape(got)[d], nb_shape(ref)[d], "dim %d", d);
    nb_tensor *g = nb_contiguous(got), *r = nb_contiguous(ref);
    const float *a = nb_data(g), *b = nb_data(r);
    double diff = 0, mag = 0;
    for (int64_t i = 0; i < nb_numel(g); i++) {
        double d;
        if (nan_equal) {
            if (isnan(a[i]) && isnan(b[i])) continue;
            d = a[i] == b[i] ? 0 : fabs((double)a[i] - (double)b[i]);
            if (isnan(d)) d = INFINITY;
        } else {
            d = fabs((double)a[i] - (double)b[i]);
            if (isnan(a[i]) || isnan(b[i])) d = INFINITY;
        }
        diff = d > diff ? d : diff;
        if (!nan_equal || isfinite(b[i])) mag = fabs((double)b[i]) > mag ? fabs((double)b[i]) : mag;
    }
    return diff == 0 ? 0 : diff / (mag > 0 ? mag : 1e-30);
}

/* A random F32 4-D conv operand of `shape` in the memory layout `layout`
 * says: 't' image with H and W swapped in memory, 's' image every 2nd W
 * element, 'w' weight stored in reverse dim order (permuted back), anything
 * else contiguous. Seeded. */
static inline nb_tensor *ot_conv_rand(nb_dims shape, char layout, bool weight, uint64_t seed) {
    if (!weight && layout == 't') {
        nb_dims m = shape;
        m.d[2] = shape.d[3], m.d[3] = shape.d[2];
        return nb_transpose(nb_randn(m, NB_F32, seed), 2, 3);
    }
    if (!weight && layout == 's') {
        nb_dims m = shape;
        m.d[3] *= 2;
        return nb_slice(nb_randn(m, NB_F32, seed), 3, 0, m.d[3], 2);
    }
    if (weight && layout == 'w') {
        nb_dims m = NB_SHAPE(shape.d[3], shape.d[2], shape.d[1], shape.d[0]);
        return nb_permute(nb_randn(m, NB_F32, seed), (int[]){3, 2, 1, 0}, 4);
    }
    return nb_randn(shape, NB_F32, seed);
}

#endif
