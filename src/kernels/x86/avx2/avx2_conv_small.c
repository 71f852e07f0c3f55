/* avx2_conv_small.c — direct convolution for few input channels (a CNN's
 * first layer: 1 to 4 channels), forward and backward-weights, AVX2+FMA.
 *
 * Serves CONV2D and CONV_BWD_WEIGHT (F32, stride 1, dilation 1, groups 1,
 * 1-4 input channels, 8+ output channels, kernels up to 7x7), unless
 * AVX-512 is in force (the AVX-512 twin then serves). With so few
 * input channels a GEMM (oneDNN's, or Winograd's per-position ones) has an
 * inner dimension of 1 to 4 x r^2 and runs far from peak (oneDNN: ~30-45
 * GFLOP/s on LeNet's 1 -> 32, 5x5 layer, reorders to and from its blocked
 * layout included). Measured in the CNN training step, alternated with
 * oneDNN three times (per call): 1 thread, forward 2.17-2.51 ms vs
 * 2.17-2.38, weight gradient 2.21-2.46 vs 2.30-2.60; 2 threads, forward
 * 1.13-2.01 vs 1.44-1.79, weight gradient 1.18-1.25 vs 1.40-1.68.
 *
 * Forward: per image, the input is copied into a zero-padded plane (rows
 * wide enough for whole 16-column blocks); each output row is done in
 * blocks of 6 output channels x 16 columns: 12 accumulators, two unaligned
 * loads of the shifted input row and 6 broadcast weights per tap. Sums run
 * over (c, kh, kw) in that order for every output: no split, so the bits do
 * not depend on the thread count (threads split the images).
 *
 * Backward-weights: dw[k][c][kh][kw] = sum over n, oh, ow of
 * x[n][c][oh+kh-ph][ow+kw-pw] gy[n][k][oh][ow], 8 columns per lane-wise
 * partial sum, 2 output channels x r taps per pass. The images are cut into
 * at most CS_CHUNKS chunks fixed by the batch; a chunk's lanes are added
 * in lane order at its end and the chunks in chunk order, so the bits do not
 * depend on the thread count either.
 *
 * The ISA-neutral half (operand checks, weight copies, the image split and
 * the chunk sums, the entry points) is ../conv_small_common.h, shared with
 * the AVX-512 twin (../avx512/avx512_conv_small.c); this file holds the
 * packing and the vector code.
 */
#include "kernels/kernels.h"
#include "vmath.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

int nb__avx2_conv_on_avx512 = 0;
/* Tests set it to leave every call to the kernels below. */
int nb__avx2_conv_small_off = 0;

/* oneDNN's AVX-512 conv is ~1.9x these on an AVX-512 CPU (LeNet conv1
 * fwd+bwd, 1 thread, A/B through the hook), and avx512_conv_small.c is
 * their twin there: they serve below AVX-512 only */
#define CS_SERVES() \
    (!nb__avx2_conv_small_off && (nb_isa_active() < NB_ISA_AVX512 || nb__avx2_conv_on_avx512))
#define CS_LANES 8
#include "../conv_small_common.h"

/* The packed image: per channel a zero-padded plane, rows wide enough for
 * whole 16-column blocks (and 8 spare columns). */
static void cs_layout(cs_conv *c, bool bwd) {
    (void)bwd;
    c->PW = (c->OW + 15) / 16 * 16 + c->r - 1 + 8;
    c->xn = c->C * c->PH * c->PW;
}

/* gy rows are read 8 at a time. */
static bool cs_wserves(const cs_conv *c) { return c->ys[3] == 1; }

/* xp[c][h][w] = x[n][c][h - ph][w - pw], zero outside. */
static void cs_pack(const cs_conv *c, int64_t n, float *xp) {
    int64_t plane = c->PH * c->PW;
    memset(xp, 0, (size_t)(c->C * plane) * sizeof(float));
    int64_t h1 = c->IH < c->PH - c->ph ? c->IH : c->PH - c->ph, w1 = c->IW < c->PW - c->pw ? c->IW : c->PW - c->pw;
    for (int64_t ci = 0; ci < c->C; ci++)
        for (int64_t h = 0; h < h1; h++) {
            const float *src = c->x + n * c->xs[0] + ci * c->xs[1] + h * c->xs[2];
            float *dst = xp + ci * plane + (h + c->ph) * c->PW + c->pw;
            if (c->xs[3] == 1) memcpy(dst, src, (size_t)w1 * sizeof(float));
            else
                for (int64_t w = 0; w < w1; w++) dst[w] = src[w * c->xs[3]];
        }
}

/* ---- forward ---- */

/* rows output channels x 16 columns of output row oh: acc = bias + sum over taps. */
static inline __attribute__((always_inline)) void cs_block(const cs_conv *c, int rows, const float *xp,
                                                             const float *wp, const float *bias, int64_t oh,
                                                             int64_t ow0, float *out, int64_t ldo) {
    __m256 acc[6][2];
    for (int i = 0; i < rows; i++) acc[i][0] = acc[i][1] = _mm256_set1_ps(bias ? bias[i] : 0.0f);
    int64_t r = c->r, plane = c->PH * c->PW, taps = c->C * r * r;
    for (int64_t ci = 0; ci < c->C; ci++)
        for (int64_t kh = 0; kh < r; kh++) {
            const float *row = xp + ci * plane + (oh + kh) * c->PW + ow0;
            for (int64_t kw = 0; kw < r; kw++) {
                __m256 x0 = _mm256_loadu_ps(row + kw), x1 = _mm256_loadu_ps(row + kw + 8);
                const float *wt = wp + (ci * r + kh) * r + kw;
                for (int i = 0; i < rows; i++) {
                    __m256 w = _mm256_broadcast_ss(wt + i * taps);
                    acc[i][0] = _mm256_fmadd_ps(w, x0, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(w, x1, acc[i][1]);
                }
            }
        }
    for (int i = 0; i < rows; i++) {
        _mm256_storeu_ps(out + i * ldo, acc[i][0]);
        _mm256_storeu_ps(out + i * ldo + 8, acc[i][1]);
    }
}

/* One image: every output row, channel blocks of 6 and 5 (no short last one). */
static void cs_image(const cs_conv *c, int64_t n, const float *xp, const float *wp, const float *bias, float *y) {
    int64_t K = c->K, nrb = (K + 5) / 6, taps = c->C * c->r * c->r;
    float tile[6 * 16];
    float *yn = y + n * c->ys[0];
    for (int64_t ri = 0, k0 = 0, rows; ri < nrb; ri++, k0 += rows) {
        rows = K / nrb + (ri < K % nrb);
        const float *w = wp + k0 * taps, *b = bias ? bias + k0 : NULL;
        for (int64_t oh = 0; oh < c->OH; oh++)
            for (int64_t ow0 = 0; ow0 < c->OW; ow0 += 16) {
                switch (rows) {
                case 6: cs_block(c, 6, xp, w, b, oh, ow0, tile, 16); break;
                case 5: cs_block(c, 5, xp, w, b, oh, ow0, tile, 16); break;
                case 4: cs_block(c, 4, xp, w, b, oh, ow0, tile, 16); break;
                case 3: cs_block(c, 3, xp, w, b, oh, ow0, tile, 16); break;
                case 2: cs_block(c, 2, xp, w, b, oh, ow0, tile, 16); break;
                default: cs_block(c, 1, xp, w, b, oh, ow0, tile, 16); break;
                }
                int64_t nw = c->OW - ow0 < 16 ? c->OW - ow0 : 16;
                for (int64_t i = 0; i < rows; i++) {
                    float *dst = yn + (k0 + i) * c->ys[1] + oh * c->ys[2] + ow0 * c->ys[3];
                    if (c->ys[3] == 1 && nw == 16) {
                        _mm256_storeu_ps(dst, _mm256_loadu_ps(tile + i * 16));
                        _mm256_storeu_ps(dst + 8, _mm256_loadu_ps(tile + i * 16 + 8));
                    } else {
                        for (int64_t j = 0; j < nw; j++) dst[j * c->ys[3]] = tile[i * 16 + j];
                    }
                }
            }
    }
}

/* ---- backward-weights ---- */

/* One (output channel pair, input channel, kernel row) pass over an
 * image: the r taps of row kh, lane-wise, into a0 (channel k0) and a1
 * (k0 + 1, when nk is 2). x0: the packed plane at row kh. */
static inline __attribute__((always_inline)) void cs_wpass(const cs_conv *c, int r, int nk, const float *x0,
                                                             const float *g0, const float *g1, int64_t nfull,
                                                             __m256i tail, float *a0, float *a1) {
    __m256 s0[CS_MAXR], s1[CS_MAXR];
    for (int kw = 0; kw < r; kw++) {
        s0[kw] = _mm256_loadu_ps(a0 + kw * 8);
        s1[kw] = nk > 1 ? _mm256_loadu_ps(a1 + kw * 8) : _mm256_setzero_ps();
    }
    for (int64_t oh = 0; oh < c->OH; oh++) {
        const float *xr = x0 + oh * c->PW;
        const float *gr0 = g0 + oh * c->ys[2], *gr1 = g1 + oh * c->ys[2];
        for (int64_t ow = 0; ow < nfull; ow += 8) {
            __m256 ga = _mm256_loadu_ps(gr0 + ow), gb = _mm256_loadu_ps(gr1 + ow);
            for (int kw = 0; kw < r; kw++) {
                __m256 xv = _mm256_loadu_ps(xr + ow + kw);
                s0[kw] = _mm256_fmadd_ps(xv, ga, s0[kw]);
                s1[kw] = _mm256_fmadd_ps(xv, gb, s1[kw]);
            }
        }
        if (nfull < c->OW) {
            __m256 m = _mm256_castsi256_ps(tail);
            __m256 ga = _mm256_maskload_ps(gr0 + nfull, tail), gb = _mm256_maskload_ps(gr1 + nfull, tail);
            for (int kw = 0; kw < r; kw++) {
                __m256 xv = _mm256_and_ps(_mm256_loadu_ps(xr + nfull + kw), m);
                s0[kw] = _mm256_fmadd_ps(xv, ga, s0[kw]);
                s1[kw] = _mm256_fmadd_ps(xv, gb, s1[kw]);
            }
        }
    }
    for (int kw = 0; kw < r; kw++) {
        _mm256_storeu_ps(a0 + kw * 8, s0[kw]);
        if (nk > 1) _mm256_storeu_ps(a1 + kw * 8, s1[kw]);
    }
}

/* Images [n0, n1) into part[k][c][kh][kw] (overwritten). Lane-wise sums
 * live in acc[k][c][kh][kw][8] (K C r^2 vectors: 25 KiB for LeNet's first
 * layer, L1), updated image by image, row by row, 8 columns at a time; the
 * lanes of the last, partial 8 columns are zero in both factors (an inf
 * past the row's end would otherwise give 0 * inf). */
static bool cs_wchunk(const cs_conv *c, const float *gy, int64_t n0, int64_t n1, float *xp, float *acc, float *part,
                      float *blanes, float *bpart) {
    (void)blanes, (void)bpart;   /* the bias gradient: cs_bchunk's */
    int64_t r = c->r, plane = c->PH * c->PW, taps = c->C * r * r;
    int64_t nfull = c->OW / 8 * 8;
    __m256i tail = nb__tail_mask((int)(c->OW - nfull));
    memset(acc, 0, (size_t)(c->K * taps * 8) * sizeof(float));
    for (int64_t n = n0; n < n1; n++) {
        cs_pack(c, n, xp);
        for (int64_t k0 = 0; k0 < c->K; k0 += 2) {
            int nk = c->K - k0 >= 2 ? 2 : 1;
            const float *g0 = gy + n * c->ys[0] + k0 * c->ys[1], *g1 = nk > 1 ? g0 + c->ys[1] : g0;
            for (int64_t ci = 0; ci < c->C; ci++)
                for (int64_t kh = 0; kh < r; kh++) {
                    float *a0 = acc + (k0 * taps + (ci * r + kh) * r) * 8;
                    const float *x0 = xp + ci * plane + kh * c->PW;
                    switch (r) {   /* a constant tap count keeps the 2 r sums in registers */
                    case 1: cs_wpass(c, 1, nk, x0, g0, g1, nfull, tail, a0, a0 + taps * 8); break;
                    case 2: cs_wpass(c, 2, nk, x0, g0, g1, nfull, tail, a0, a0 + taps * 8); break;
                    case 3: cs_wpass(c, 3, nk, x0, g0, g1, nfull, tail, a0, a0 + taps * 8); break;
                    case 4: cs_wpass(c, 4, nk, x0, g0, g1, nfull, tail, a0, a0 + taps * 8); break;
                    case 5: cs_wpass(c, 5, nk, x0, g0, g1, nfull, tail, a0, a0 + taps * 8); break;
                    case 6: cs_wpass(c, 6, nk, x0, g0, g1, nfull, tail, a0, a0 + taps * 8); break;
                    default: cs_wpass(c, 7, nk, x0, g0, g1, nfull, tail, a0, a0 + taps * 8); break;
                    }
                }
        }
    }
    cs_lane_sums(acc, c->K * taps, part);
    return false;
}

void nb__avx2_conv_small_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_CONV2D, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_conv_small_c_conv2d", 20, cs_fwd},
        {NB_OP_CONV_BWD_WEIGHT, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_conv_small_c_bwd_weight", 20, cs_bwd_weight},
        {NB_OP_CONV_BWD_WEIGHT_BIAS, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_conv_small_c_bwd_weight_bias", 20,
         cs_bwd_weight_bias},
    };
    NB__REGISTER_ALL(ks);
}
