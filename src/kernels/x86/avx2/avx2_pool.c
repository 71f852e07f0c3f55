/* avx2_pool.c — the 2x2, stride-2 max pooling plane of onednn_pool.c's
 * direct MAX_POOL2D kernel, 8 outputs at a time; and adaptive average
 * pooling with its backward (at the end of the file).
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
#include <string.h>

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

/* ---- ADAPTIVE_AVG_POOL2D and its backward (ref_pool.c's arguments and
 * windows [floor(o I / O), ceil((o + 1) I / O))), F32, x / dx and y / gy
 * contiguous (N, C, H, W); anything else is declined to ref. ----
 * Sums run in double lanes (4 floats converted at a time), as ref sums in
 * double; the backward adds g / count into dx in double, window by window
 * in ref's order, so overlapping windows (I % O != 0) round as ref does.
 * Planes (n, c) are split over threads: one plane's elements on one
 * thread. The global pool (O = 1, ResNet's head) is one span per plane. */
static inline double ap_span(const float *p, int64_t n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(p + i);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    a0 = _mm256_add_pd(a0, a1);
    double t[4];
    _mm256_storeu_pd(t, a0);
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += p[i];
    return s;
}

static inline int64_t ap_start(int64_t o, int64_t in, int64_t out) { return o * in / out; }
static inline int64_t ap_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

static bool ap_ok(const nb_tensor *t) { return t && t->dtype == NB_DTYPE_F32 && t->ndim == 4 && nb_is_contiguous(t); }

static int avx2_adaptive_avg_pool2d(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *y = a->out;
    if (!ap_ok(x) || !ap_ok(y) || x->shape[0] != y->shape[0] || x->shape[1] != y->shape[1]) return NB_KERNEL_DECLINE;
    int64_t P = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3], OH = y->shape[2], OW = y->shape[3];
    if (P == 0 || OH == 0 || OW == 0) return 0;
    if (H == 0 || W == 0) return NB_KERNEL_DECLINE;   /* empty windows: ref's 0/0 */
    const float *xp = nb_data(x);
    float *yp = nb_data(y);
    int nt = nb__par_threads(x->numel, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < P; pl++) {
        const float *xs = xp + pl * H * W;
        float *ys = yp + pl * OH * OW;
        if (OH == 1 && OW == 1) {
            ys[0] = (float)(ap_span(xs, H * W) / (double)(H * W));
            continue;
        }
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = ap_start(oh, H, OH), h1 = ap_end(oh, H, OH);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ap_start(ow, W, OW), w1 = ap_end(ow, W, OW);
                double acc = 0;
                for (int64_t ih = h0; ih < h1; ih++) acc += ap_span(xs + ih * W + w0, w1 - w0);
                ys[oh * OW + ow] = (float)(acc / (double)((h1 - h0) * (w1 - w0)));
            }
        }
    }
    return 0;
}

static int avx2_adaptive_avg_pool2d_bwd(const nb_kernel_args *a) {
    const nb_tensor *g = a->in[0], *dx = a->out;
    if (!ap_ok(g) || !ap_ok(dx) || g->shape[0] != dx->shape[0] || g->shape[1] != dx->shape[1]) return NB_KERNEL_DECLINE;
    int64_t P = dx->shape[0] * dx->shape[1], H = dx->shape[2], W = dx->shape[3], OH = g->shape[2], OW = g->shape[3];
    if (P == 0 || H == 0 || W == 0) return 0;
    if (OH == 0 || OW == 0) return NB_KERNEL_DECLINE;
    const float *gp = nb_data(g);
    float *dp = nb_data(dx);
    bool disjoint = H % OH == 0 && W % OW == 0;   /* each dx element in one window: a plain store */
    int nt = nb__par_threads(dx->numel, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < P; pl++) {
        const float *gs = gp + pl * OH * OW;
        float *ds = dp + pl * H * W;
        if (!disjoint) memset(ds, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = ap_start(oh, H, OH), h1 = ap_end(oh, H, OH);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = ap_start(ow, W, OW), w1 = ap_end(ow, W, OW);
                double v = (double)gs[oh * OW + ow] / (double)((h1 - h0) * (w1 - w0));
                __m256d vd = _mm256_set1_pd(v);
                __m256 vf = _mm256_set1_ps((float)v);   /* 0 + v, rounded once: ref's value */
                for (int64_t ih = h0; ih < h1; ih++) {
                    float *row = ds + ih * W;
                    int64_t iw = w0;
                    if (disjoint) {
                        for (; iw + 8 <= w1; iw += 8) _mm256_storeu_ps(row + iw, vf);
                        for (; iw < w1; iw++) row[iw] = (float)v;
                        continue;
                    }
                    for (; iw + 4 <= w1; iw += 4)
                        _mm_storeu_ps(row + iw,
                                      _mm256_cvtpd_ps(_mm256_add_pd(_mm256_cvtps_pd(_mm_loadu_ps(row + iw)), vd)));
                    for (; iw < w1; iw++) row[iw] = (float)((double)row[iw] + v);
                }
            }
        }
    }
    return 0;
}

void nb__avx2_pool_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_ADAPTIVE_AVG_POOL2D, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_adaptive_avg_pool2d", 10,
         avx2_adaptive_avg_pool2d},
        {NB_OP_ADAPTIVE_AVG_POOL2D_BWD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_adaptive_avg_pool2d_bwd", 10,
         avx2_adaptive_avg_pool2d_bwd},
    };
    NB__REGISTER_ALL(ks);
}
