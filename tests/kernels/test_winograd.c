/* test_winograd.c — the AVX2 Winograd convolutions (avx2_winograd.c) against
 * the ref kernels: the cases of winograd_tests.h under an avx2 cap, and
 * that on an AVX-512 CPU at its default ISA they leave the calls to the
 * AVX-512 twin (test_avx512_winograd.c).
 * Skipped when the CPU (or NB_ISA) has no AVX2.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

#define WGT_SUITE winograd
#define WGT_ISA "avx2"
#define WGT_PREFIX "avx2_winograd"
#include "winograd_tests.h"

/* With AVX-512 in force (the default on such a CPU), the AVX-512 twins
 * (or oneDNN's AVX-512 convolutions) serve: the AVX2 Winograd kernels decline. */
Test(winograd, steps_aside_for_avx512) {
    cr_assert_eq(nb_init(NULL), 0);
    if (nb_isa_active() < NB_ISA_AVX512) cr_skip("AVX-512 is not in force here");
    nb_dims x = NB_SHAPE(2, 32, 14, 14), w5 = NB_SHAPE(32, 32, 5, 5);
    wg_declines(NB_OP_CONV2D, x, w5, x, NB_F32, 2, 1, 1, 1);
    wg_declines(NB_OP_CONV_BWD_DATA, x, w5, x, NB_F32, 2, 1, 1, 1);
    wg_declines(NB_OP_CONV_BWD_WEIGHT, x, x, w5, NB_F32, 2, 1, 1, 1);
}
