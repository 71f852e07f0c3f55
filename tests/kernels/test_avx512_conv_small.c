/* test_avx512_conv_small.c — the AVX-512 direct convolutions for 1-4 input
 * channels (src/kernels/x86/avx512/avx512_conv_small.c) against the ref
 * kernels, which sum in double.
 *
 * - CONV2D and CONV_BWD_WEIGHT for 1, 2, 3 and 4 input channels; 1x1, 3x3,
 *   5x5 and 7x7 kernels with paddings 0..r/2 (and r - 1), row widths 7,
 *   17, 28 and 33 (planes of whole and partial 16-lane vectors, vector
 *   blocks of 6 and shorter); 8, 13, 16, 24 and 32 output channels (whole
 *   and short blocks of 4 forward, of kb backward); even kernels; batches
 *   of 1, 3 and 37 (not a multiple of the 16 weight-gradient chunks); bias
 *   and none; planes the weight gradient cuts into bands. Transposed / strided / permuted operands and a strided
 *   output, all served (a gy that is not flat is copied per image). Error
 *   max |got - ref| / max |ref| below CS_TOL, served by the kernel under
 *   test (nb__last_kernel).
 * - 1, 2 and 3 threads give the same bits, forward and weight gradient.
 * - An inf input past the plane's last partial vector stays out of the
 *   taps that never read it.
 * - Declines: what the AVX2 twin declines (conv_small_testutil.h), the
 *   weight gradient of 16 or fewer outputs with more than 25 taps each
 *   (oneDNN's is faster there), and every call under the
 *   nb__avx512_conv_small_off hook.
 * - The registry picks it for LeNet's first layer at the default cap.
 * The avx512 kernels are tried first (nb__isa_prefer), so they are tested
 * wherever the registry ranks them. Skipped on a CPU without AVX-512
 * F/BW/DQ/VL, or when NB_ISA caps below it.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

#include "conv_small_testutil.h"

static const cs_kind cs_avx512 = {"avx512", NB_ISA_AVX512, "avx512_conv_small", true, 16};

static void c5_setup(void) {
    cs_k = &cs_avx512;
    cr_assert_eq(nb_init(NULL), 0, "nb_init: %s", nb_last_error());
    const nb_cpu_features *c = nb_cpu();
    if (!(c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl && c->avx2_fma)) cr_skip("no AVX-512 on this CPU");
    if (nb_isa_active() < NB_ISA_AVX512) cr_skip("avx512 kernels capped (NB_ISA)");
    cs_default();
}
TestSuite(avx512_conv_small, .init = c5_setup, .fini = cs_teardown);

Test(avx512_conv_small, lenet_first_layer) {
    cs_need();
    cs_both(&(cs_case){16, 1, 28, 28, 32, 5, 2, true, 'c'});
}

Test(avx512_conv_small, channels_kernels_paddings_widths) {
    cs_need();
    static const int64_t widths[] = {7, 17, 28, 33}, outs[] = {8, 13, 16, 24, 32};
    int i = 0;
    for (int ci = 1; ci <= 4; ci++)
        for (int r = 1; r <= 7; r += 2)
            for (size_t wi = 0; wi < 4; wi++)
                for (int p = 0; p <= r / 2; p++, i++)
                    cs_both(&(cs_case){1 + i % 3, ci, 7 + (i % 5), widths[wi], outs[i % 5], r, p, i % 2 == 0, 'c'});
    for (int r = 2; r <= 6; r += 2) cs_both(&(cs_case){2, 3, 20, 16, 12, r, r - 1, true, 'c'});   /* even, pad r-1 */
    /* rows of more than 64 vectors: the pack makes its masks 64 vectors at a time (CS_PACK_VECS) */
    cs_both(&(cs_case){1, 2, 3, 1100, 8, 3, 1, true, 'c'});
    cs_both(&(cs_case){1, 1, 2, 1025, 8, 5, 2, false, 't'});
}

Test(avx512_conv_small, batches_and_chunks) {
    cs_need();
    cs_both(&(cs_case){1, 2, 9, 28, 16, 3, 1, true, 'c'});
    cs_both(&(cs_case){37, 1, 12, 28, 32, 5, 2, false, 'c'});
}

/* Planes the weight gradient cuts into bands (cs_band): 4 bands ending in
 * a partial vector, 3 ending in a whole one, 2 (LeNet's size at 7x7), 2
 * of a gy copied per image. */
Test(avx512_conv_small, weight_gradient_bands) {
    cs_need();
    cs_both(&(cs_case){3, 2, 30, 29, 24, 7, 3, true, 'c'});
    cs_both(&(cs_case){2, 4, 24, 24, 32, 5, 2, false, 'c'});
    cs_both(&(cs_case){5, 1, 28, 28, 24, 7, 3, true, 'c'});
    cs_both(&(cs_case){2, 3, 30, 29, 24, 3, 1, true, 't'});
}

Test(avx512_conv_small, strided_and_permuted_operands) {
    cs_need();
    static const char layouts[] = {'t', 's', 'w', 'o'};
    for (size_t i = 0; i < sizeof layouts; i++) {
        cs_both(&(cs_case){3, 3, 15, 13, 16, 3, 1, true, layouts[i]});
        cs_both(&(cs_case){2, 1, 28, 28, 24, 5, 2, true, layouts[i]});
    }
}

Test(avx512_conv_small, same_bits_at_1_2_3_threads) {
    cs_need();
    cs_same_bits(&(cs_case){37, 1, 28, 28, 32, 5, 2, false, 'c'}, 3);
    cs_same_bits(&(cs_case){19, 3, 17, 33, 24, 3, 1, false, 'c'}, 3);
}

Test(avx512_conv_small, inf_past_the_plane_stays_out_of_taps_that_never_read_it) {
    cs_need();
    cs_inf_past_the_row();
}

Test(avx512_conv_small, declines_what_it_does_not_serve) {
    cs_need();
    cs_declines_common();
    nb_scope_begin();
    cs_declines(NB_OP_CONV_BWD_WEIGHT, nb_randn(NB_SHAPE(2, 2, 12, 12), NB_F32, 4),
                nb_randn(NB_SHAPE(2, 16, 12, 12), NB_F32, 5), NB_SHAPE(16, 2, 5, 5), 2, 1, 1, 1);   /* 16 x 50 taps */
    nb_tensor *x = nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F32, 1), *w = nb_randn(NB_SHAPE(16, 1, 3, 3), NB_F32, 2);
    nb__avx512_conv_small_off = 1;
    cs_declines(NB_OP_CONV2D, x, w, NB_SHAPE(2, 16, 12, 12), 1, 1, 1, 1);
    cs_declines(NB_OP_CONV_BWD_WEIGHT, x, nb_randn(NB_SHAPE(2, 16, 12, 12), NB_F32, 3), NB_SHAPE(16, 1, 3, 3), 1, 1, 1,
                1);
    nb__avx512_conv_small_off = 0;
    nb_scope_end();
}

/* The registry's own order (no preference) at the default cap gives
 * LeNet's first layer to these kernels (registered NB__PRIO_AVX512_WINS,
 * above oneDNN). */
Test(avx512_conv_small, chosen_for_lenet_at_the_default_cap) {
    cs_need();
    nb__isa_prefer = -1;
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(4, 1, 28, 28), NB_F32, 1), *w = nb_randn(NB_SHAPE(32, 1, 5, 5), NB_F32, 2);
    const char *k;
    cs_dispatch(NB_OP_CONV2D, nb_zeros(NB_SHAPE(4, 32, 28, 28), NB_F32), x, w, NULL, 2, 1, 1, 1, &k);
    cr_assert(cs_is_ours(k), "conv2d served by %s", k);
    cs_dispatch(NB_OP_CONV_BWD_WEIGHT, nb_zeros(NB_SHAPE(32, 1, 5, 5), NB_F32), x,
                nb_randn(NB_SHAPE(4, 32, 28, 28), NB_F32, 3), NULL, 2, 1, 1, 1, &k);
    cr_assert(cs_is_ours(k), "conv_bwd_weight served by %s", k);
    nb_scope_end();
}

Test(avx512_conv_small, fused_weight_and_bias_gradients) {
    cs_need();
    cs_fused_cases();
}
