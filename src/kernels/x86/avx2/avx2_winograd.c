/* avx2_winograd.c — stride-1 3x3 and 5x5 convolutions by Winograd's minimal
 * filtering: F(4x4, 3x3) and F(2x2, 5x5), both on 6x6 input tiles.
 *
 * Serves CONV2D, CONV_BWD_DATA, CONV_TRANSPOSE2D and CONV_BWD_WEIGHT (F32,
 * groups 1, stride 1, dilation 1, square r x r kernels, r = 3 or 5, 16+
 * channels in and out), unless AVX-512 is in force (wg_isa_ok: the twin serves).
 * The adjoint w.r.t. the input is itself a stride-1 correlation, of gy with
 * the kernel turned 180 degrees and its channel axes swapped, padded r-1-p:
 * one engine serves all three.
 *
 * Why: LeNet's second convolution (32 -> 64 channels, 5x5, 14x14 images)
 * is two thirds of the CNN's training step, forward and backward-data run at
 * oneDNN's direct speed, and F(2x2, 5x5) does the same work with 36
 * multiplications per 4 outputs and channel pair instead of 100.
 *
 * The algorithm (Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016). A 1-D F(m, r) computes m outputs of an r-tap correlation
 * from a = m + r - 1 inputs d:  y = A^T [(G g) .* (B^T d)], and the 2-D one
 * nests it: Y = A^T [(G g G^T) .* (B^T d B)] A. The matrices come from
 * polynomial interpolation at the points 0, 1, -1, 2, -2 and infinity
 * (wg_matrices derives G and A^T; B^T depends on the points alone and is
 * written out in wg_bt). Per 6x6 tile position the products summed over the
 * input channels are 36 independent GEMMs, [tiles x C] @ [C x K].
 *
 * Layout and order: see ../winograd_common.h, which holds the algorithm,
 * the drivers and the shape checks for this file and its AVX-512 twin
 * (x86/avx512/avx512_winograd.c). Here: the 8-lane vector vocabulary, the
 * 8x8 transpose, the blocking (24 tiles, 6 x 16 GEMM tiles) and the table.
 *
 * Accuracy. The transforms scale values by up to 5x and sum them back, so
 * the rounding error is larger than direct summation's: measured against the
 * float64 ref kernel, max |error| / max |result| is 3e-6 (5x5, 32 -> 64
 * channels) to 7e-6 (3x3, 64 -> 64), against ~1e-7 for a direct float
 * convolution; the tests bound it at 2e-5 (winograd_tests.h). A NaN or inf
 * input reaches every output of the tiles whose 6x6 input holds it, a few
 * more outputs than a direct convolution's window. NB_WINOGRAD=0 turns these
 * kernels off (oneDNN's direct convolutions serve).
 *
 * Backward-weights: see the comment above wg_bwd_weight.
 */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define WG_VEC __m256
#define WG_L 8
#define WG_ZERO() _mm256_setzero_ps()
#define WG_SET1(f) _mm256_set1_ps(f)
#define WG_LD(p) _mm256_load_ps(p)
#define WG_ST(p, v) _mm256_store_ps(p, v)
#define WG_LDU(p) _mm256_loadu_ps(p)
#define WG_STU(p, v) _mm256_storeu_ps(p, v)
#define WG_BCAST(p) _mm256_broadcast_ss(p)
#define WG_ADD(a, b) _mm256_add_ps(a, b)
#define WG_SUB(a, b) _mm256_sub_ps(a, b)
#define WG_MUL(a, b) _mm256_mul_ps(a, b)
#define WG_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define WG_FNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define WG_TB 24   /* tiles per block, at most */
#define WG_MR 6    /* GEMM microkernel: 6 rows x 2 vectors (12 accumulators) */
#define WG_NV 2

/* r[0..8) <- its transpose (8x8 floats). */
static inline void wg_transpose(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* The first n < 8 floats at p: scalar, as AVX2's masked loads and stores
 * cost tens of cycles on Zen 3. */
static inline __m256 wg_ldn(const float *p, int64_t n) {
    float v[8] = {0};
    for (int64_t j = 0; j < n; j++) v[j] = p[j];
    return _mm256_loadu_ps(v);
}
static inline void wg_stn(float *p, __m256 x, int64_t n) {
    float v[8];
    _mm256_storeu_ps(v, x);
    for (int64_t j = 0; j < n; j++) p[j] = v[j];
}

/* With AVX-512 in force the AVX-512 twin serves (avx512_winograd.c). Before
 * it, oneDNN's AVX-512 convolutions did: measured on an AVX-512 Xeon
 * (fwd+bwd, 1 thread, call-by-call A/B through nb__avx2_conv_on_avx512),
 * this file only tied them (LeNet conv2 0.99x, the 3x3 of
 * benchmarks/kernels 1.09x). NB_ISA=avx2 brings these back there. A CPU
 * setting, not a thread count. */
static bool wg_isa_ok(void) { return nb_isa_active() < NB_ISA_AVX512 || nb__avx2_conv_on_avx512; }

#include "../winograd_common.h"

/* 1: every call goes to the next kernel, here and in avx512_winograd.c.
 * Tests set it (oneDNN's suites); NB_WINOGRAD=0 in the environment sets it
 * at start-up, for direct convolutions' rounding (see the top of this file). */
int nb__avx2_winograd_off = 0;
size_t nb__wg_sall_max = 32u << 20;   /* see wg_bwd_weight */

void nb__avx2_winograd_register(void) {
    const char *e = getenv("NB_WINOGRAD");
    if (e && !strcmp(e, "0")) nb__avx2_winograd_off = 1;
    wg_matrices(&wg_m25, 2, 5);
    wg_matrices(&wg_m43, 4, 3);
    static const nb_kernel_desc ks[] = {
        {NB_OP_CONV2D, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv2d", 20, wg_conv_op},
        {NB_OP_CONV_BWD_DATA, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv_bwd_data", 20, wg_conv_op},
        {NB_OP_CONV_TRANSPOSE2D, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv_transpose2d", 20, wg_conv_op},
        {NB_OP_CONV_BWD_WEIGHT, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv_bwd_weight", 20, wg_bwd_weight},
    };
    NB__REGISTER_ALL(ks);
}
