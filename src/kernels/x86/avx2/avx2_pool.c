/* avx2_pool.c — the 2x2, stride-2 max pooling plane of onednn_pool.c's
 * direct MAX_POOL2D kernel, 8 outputs at a time.
 *
 * Same contract as pl_max_plane_2x2 (onednn_pool.c), which stays the
 * reference and the fallback: tap 0 (r0[2w]) starts the max, then taps 1
 * (r0[2w+1]), 2 (r1[2w]) and 3 (r1[2w+1]) are taken, in that order, when
 * v > m or v is NaN (ref_max_pool2d's test); the index is the taken tap's
 * offset in the plane, 2*oh*W + 2*ow + {0, 1, W, W+1}. The comparisons are
 * the same per output, so values and indices are bitwise the scalar loop's.
 * A row of OW outputs is done in blocks of 8: the 16 inputs of a block are
 * split into even and odd taps with a shuffle and a cross-lane permute; the
 * last block of a row is masked (loads of the 2*r inputs it owns, stores of
 * its r outputs), so no element outside the row is read or written. LeNet's
 * pools have rows of 14 and 7 outputs.
 */
#include "kernels/kernels.h"

#include <immintrin.h>

/* Lanes [0, n) on, for n in 0..8 (int32 lanes). */
static inline __m256i first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* m, j: take v (tap code `code`) where v > m or v is NaN. */
static inline void take(__m256 v, __m256i code, __m256 *m, __m256i *j) {
    __m256 t = _mm256_or_ps(_mm256_cmp_ps(v, *m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    *m = _mm256_blendv_ps(*m, v, t);
    *j = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(*j), _mm256_castsi256_ps(code), t));
}

/* The even and odd elements of the 16 floats at p (only the first 2*n
 * loaded when n < 8): out even = p[0], p[2], ..., odd = p[1], p[3], .... */
static inline void split(const float *p, int n, __m256 *even, __m256 *odd) {
    __m256 lo, hi;
    if (n == 8) {
        lo = _mm256_loadu_ps(p);
        hi = _mm256_loadu_ps(p + 8);
    } else {
        int k = 2 * n;   /* floats owned: lanes [0, k) of p[0..15] */
        lo = _mm256_maskload_ps(p, first_lanes(k < 8 ? k : 8));
        hi = _mm256_maskload_ps(p + 8, first_lanes(k > 8 ? k - 8 : 0));
    }
    /* per 128-bit lane: (lo0 lo2 hi0 hi2 | lo4 lo6 hi4 hi6), then lanes 64-bit reordered */
    __m256 e = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
    __m256 o = _mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

void nb__avx2_max_pool_2x2_plane(const float *x, float *y, int64_t *idx, int64_t W, int64_t xsh, int64_t OH,
                                 int64_t OW, int64_t ysh, int64_t ish) {
    const __m256i c1 = _mm256_set1_epi32(1), cw = _mm256_set1_epi32((int)W), cw1 = _mm256_set1_epi32((int)W + 1);
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = x + 2 * oh * xsh, *r1 = r0 + xsh;
        float *yo = y + oh * ysh;
        int64_t *io = idx + oh * ish, base = 2 * oh * W;
        for (int64_t ow = 0; ow < OW; ow += 8) {
            int n = OW - ow < 8 ? (int)(OW - ow) : 8;
            __m256 a0, a1, b0, b1;
            split(r0 + 2 * ow, n, &a0, &a1);
            split(r1 + 2 * ow, n, &b0, &b1);
            __m256 m = a0;
            __m256i j = _mm256_setzero_si256();
            take(a1, c1, &m, &j);
            take(b0, cw, &m, &j);
            take(b1, cw1, &m, &j);
            /* indices: base + 2 (ow + i) + j, in int64 */
            __m256i at = _mm256_set1_epi64x(base + 2 * ow);
            __m256i jl = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(j));
            __m256i jh = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(j, 1));
            __m256i il = _mm256_add_epi64(_mm256_add_epi64(at, _mm256_setr_epi64x(0, 2, 4, 6)), jl);
            __m256i ih = _mm256_add_epi64(_mm256_add_epi64(at, _mm256_setr_epi64x(8, 10, 12, 14)), jh);
            if (n == 8) {
                _mm256_storeu_ps(yo + ow, m);
                _mm256_storeu_si256((__m256i *)(io + ow), il);
                _mm256_storeu_si256((__m256i *)(io + ow + 4), ih);
            } else {
                _mm256_maskstore_ps(yo + ow, first_lanes(n), m);
                /* int64 lanes [0, n): 64-bit masks from the int32 lane masks, two at a time */
                __m256i ml = _mm256_cvtepi32_epi64(_mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3)));
                __m256i mh = _mm256_cvtepi32_epi64(_mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(4, 5, 6, 7)));
                _mm256_maskstore_epi64((long long *)(io + ow), ml, il);
                _mm256_maskstore_epi64((long long *)(io + ow + 4), mh, ih);
            }
        }
    }
}
