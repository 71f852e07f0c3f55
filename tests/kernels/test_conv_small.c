/* test_conv_small.c — the AVX2 direct convolutions for 1-4 input channels
 * (avx2_conv_small.c) against the ref kernels, which sum in double.
 *
 * - CONV2D and CONV_BWD_WEIGHT for 1, 2, 3 and 4 input channels, 8, 13 and
 *   32 output channels (blocks of 6 with a remainder), 1x1 to 7x7 kernels,
 *   paddings 0..r-1, row lengths that are and are not multiples of 8 and 16,
 *   bias and none; transposed / strided / permuted operands and a strided
 *   output. Error max |got - ref| / max |ref| below CS_TOL, served by the
 *   kernel under test.
 * - 1 to 5 threads give the same bits (batch 37: 13 chunks for the weight
 *   gradient).
 * - An inf input read only by the partial last 8 columns of a row: the
 *   weight gradient taps that never see it in a direct convolution stay
 *   finite (the lanes past the row are zeroed in both factors).
 * - Declines: 5+ input channels, fewer than 8 outputs, stride 2, dilation 2,
 *   groups 2, a non-square or 9x9 kernel, F64, a gy without unit stride
 *   along W (backward-weights).
 * Run at an explicit avx2 cap; skipped without AVX2.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

#include "conv_small_testutil.h"

static const cs_kind cs_avx2 = {"avx2", -1, "avx2_conv_small", false, 0};
static void cs_setup_suite(void) {
    cs_k = &cs_avx2;
    cs_default();
}
TestSuite(conv_small, .init = cs_setup_suite, .fini = cs_teardown);

Test(conv_small, lenet_first_layer) {
    cs_need();
    cs_both(&(cs_case){16, 1, 28, 28, 32, 5, 2, true, 'c'});
}

Test(conv_small, channels_kernels_paddings_sizes) {
    cs_need();
    for (int ci = 1; ci <= 4; ci++)
        for (int r = 1; r <= 7; r += 2)
            for (int p = 0; p < r; p += (r > 3 ? 2 : 1)) {
                cs_both(&(cs_case){3, ci, 11 + ci, 19 - ci, ci == 2 ? 13 : 8, r, p, p % 2 == 0, 'c'});
                cs_both(&(cs_case){2, ci, 9, 33, 32, r, p, true, 'c'});
            }
    cs_both(&(cs_case){2, 3, 20, 16, 12, 4, 1, true, 'c'});   /* even kernel */
}

Test(conv_small, strided_and_permuted_operands) {
    cs_need();
    static const char layouts[] = {'t', 's', 'w', 'o'};
    for (size_t i = 0; i < sizeof layouts; i++) cs_both(&(cs_case){3, 3, 15, 13, 16, 3, 1, true, layouts[i]});
}

Test(conv_small, same_bits_at_any_thread_count) {
    cs_need();
    cs_same_bits(&(cs_case){37, 1, 28, 28, 32, 5, 2, false, 'c'}, 5);
}

Test(conv_small, inf_past_the_row_stays_out_of_taps_that_never_read_it) {
    cs_need();
    cs_inf_past_the_row();
}

Test(conv_small, declines_what_it_does_not_serve) {
    cs_need();
    cs_declines_common();
    nb_scope_begin();
    nb_tensor *gyt = nb_transpose(nb_randn(NB_SHAPE(2, 16, 12, 12), NB_F32, 11), 2, 3);          /* gy: W stride 12 */
    cs_declines(NB_OP_CONV_BWD_WEIGHT, nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F32, 1), gyt, NB_SHAPE(16, 1, 3, 3), 1, 1,
                1, 1);
    nb_scope_end();
}

Test(conv_small, steps_aside_for_avx512) {
    cr_assert_eq(nb_init(NULL), 0);
    if (nb_isa_active() < NB_ISA_AVX512) cr_skip("AVX-512 is not in force here");
    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(2, 1, 12, 12), NB_F32, 1), *w = nb_randn(NB_SHAPE(16, 1, 3, 3), NB_F32, 2);
    cs_declines(NB_OP_CONV2D, x, w, NB_SHAPE(2, 16, 12, 12), 1, 1, 1, 1);
    cs_declines(NB_OP_CONV_BWD_WEIGHT, x, nb_randn(NB_SHAPE(2, 16, 12, 12), NB_F32, 3), NB_SHAPE(16, 1, 3, 3), 1, 1, 1,
                1);
    nb_scope_end();
}

Test(conv_small, fused_weight_and_bias_gradients) {
    cs_need();
    cs_fused_cases();
}
