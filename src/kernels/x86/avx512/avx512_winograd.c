/* avx512_winograd.c — the AVX-512 twin of avx2/avx2_winograd.c: stride-1
 * 3x3 and 5x5 convolutions by Winograd's minimal filtering, F(4x4, 3x3) and
 * F(2x2, 5x5) on 6x6 input tiles, for CONV2D, CONV_BWD_DATA,
 * CONV_TRANSPOSE2D and CONV_BWD_WEIGHT (F32, groups 1, stride 1, dilation
 * 1, 16+ channels in and out).
 *
 * The algorithm, the drivers and the shape checks are ../winograd_common.h,
 * shared with the AVX2 file; here are the 16-lane vocabulary (channels
 * padded to 16, one zmm per 16 channels in every transform), the 16x16
 * transpose of the channel-last packing, masked loads and stores for the
 * row tails, and the blocking for an AVX-512 core with 32 zmm registers.
 * Every sum keeps the AVX2 file's order (one FMA chain per output over the
 * channels, or the tiles, in order), so the bits do not depend on the
 * thread count, and in practice match the AVX2 kernels' bits too.
 *
 * Accuracy as the AVX2 file's: max |error| / max |result| against the
 * float64 ref kernel a few 1e-7 on LeNet's conv2 and a 64 -> 64 3x3
 * (test_avx512_winograd.c bounds it at 2e-5). NB_WINOGRAD=0 (or
 * nb__avx2_winograd_off) turns these off too.
 */
#include "kernels/kernels.h"
#include "vmath512.h"   /* nb__w_tr16x16 */

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define WG_VEC __m512
#define WG_L 16
#define WG_ZERO() _mm512_setzero_ps()
#define WG_SET1(f) _mm512_set1_ps(f)
#define WG_LD(p) _mm512_load_ps(p)
#define WG_ST(p, v) _mm512_store_ps(p, v)
#define WG_LDU(p) _mm512_loadu_ps(p)
#define WG_STU(p, v) _mm512_storeu_ps(p, v)
#define WG_BCAST(p) _mm512_set1_ps(*(p))   /* folds into the FMA's {1to16} operand */
#define WG_ADD(a, b) _mm512_add_ps(a, b)
#define WG_SUB(a, b) _mm512_sub_ps(a, b)
#define WG_MUL(a, b) _mm512_mul_ps(a, b)
#define WG_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define WG_FNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define WG_TB 24   /* tiles per block, at most */
#define WG_MR 6    /* GEMM microkernel: 6 rows x 4 vectors (24 of the 32 zmm accumulate; 64 channels a pass) */
#define WG_NV 4

/* The first n < 16 floats at p, zeros after; v's first n lanes to p. */
static inline __m512 wg_ldn(const float *p, int64_t n) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
static inline void wg_stn(float *p, __m512 v, int64_t n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v); }

/* The registry only calls this library within the AVX-512 cap. */
static bool wg_isa_ok(void) { return true; }

/* r[0..16) <- its transpose (vmath512.h) */
static inline void wg_transpose(__m512 r[16]) { nb__w_tr16x16(r); }

#include "../winograd_common.h"

/* Ranked above oneDNN's convolutions (10) and the AVX2 twin (20, which
 * steps aside under AVX-512 anyway), every op: measured on a 2-core AVX-512
 * Xeon (Cascade Lake, 32 KiB L1d and 1 MiB L2 a core), shared and noisy.
 * benchmarks/kernels, fwd+bwd, ours on plain NCHW vs oneDNN called directly
 * in its blocked layouts (paired, ms):
 *   LeNet conv2 (64,32,14,14) 5x5 pad 2: 1 thread 20.8-21.5 vs 27.3-27.8
 *     (0.76-0.77x the time), 2 threads 11.5-11.7 vs 13.8-15.2 (0.77-0.83x);
 *   3x3 (32,64,28,28) -> 64 pad 1: 1 thread 28.2-31.6 vs 45.1-46.8
 *     (0.63-0.67x), 2 threads 15.1-16.0 vs 23.0-25.8 (0.62-0.66x).
 * (Runs with the 2 cores taken by other work, load > 2, left out: both
 * sides then take 44-60 ms at 2 threads.)
 * Per op at 1 thread (the per-op profiler, ms per call, vs our oneDNN path
 * with its reorders): conv2 fwd 6.3-6.8 vs 10.0, bwd_data 6.7-7.5 vs 10.1,
 * bwd_weight 7.7-8.1 vs 12.2; the 3x3 fwd 8.8-9.4 vs 17.9, bwd_data
 * 8.4-9.0 vs 18.2, bwd_weight 11.5-11.9 vs 18.3. 6 x 64 GEMM tiles beat
 * 12 x 32 by ~8% on the 3x3; WG_TB 16..48 within the noise. */
void nb__avx512_winograd_register(void) {
    wg_matrices(&wg_m25, 2, 5);
    wg_matrices(&wg_m43, 4, 3);
    static const nb_kernel_desc ks[] = {
        {NB_OP_CONV2D, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_winograd_conv2d", 21, wg_conv_op},
        {NB_OP_CONV_BWD_DATA, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_winograd_conv_bwd_data", 21, wg_conv_op},
        {NB_OP_CONV_TRANSPOSE2D, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_winograd_conv_transpose2d", 21, wg_conv_op},
        {NB_OP_CONV_BWD_WEIGHT, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_winograd_conv_bwd_weight", 21, wg_bwd_weight},
    };
    NB__REGISTER_ALL(ks);
}
