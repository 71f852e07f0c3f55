/* avx512_conv_small.c — direct convolution for few input channels (a CNN's
 * first layer: 1 to 4 channels), forward and backward-weights, AVX-512: the
 * twin of ../avx2/avx2_conv_small.c, reading and writing plain NCHW (no
 * reorder to a blocked layout and back, which is most of oneDNN's time on
 * such a layer: its 6.4 MB output in LeNet's conv1).
 *
 * Serves CONV2D and CONV_BWD_WEIGHT (F32, stride 1, dilation 1, groups 1,
 * 1-4 input channels, 8+ output channels, square kernels up to 7x7, any
 * strides) when AVX-512 is in force.
 *
 * Both passes see an output plane as one flat run of P = OH * OW positions,
 * 16 to a vector, so that a 28-wide row wastes no lanes (LeNet: 784 = 49
 * whole vectors). For that, each image is packed as r shifted copies of
 * each input channel: xq[c][kw][h][ow] = x[c][h - ph][ow + kw - pw] (zero
 * outside), h < OH + r - 1, so that tap (c, kh, kw) of flat position p
 * reads xq[c][kw] at p + kh * OW: one unaligned load per 16 positions.
 * (Blocks of two output rows, or 32 columns with a masked half, would
 * waste 4 of 32 lanes on a 28-wide row.)
 *
 * Forward: blocks of FR = 4 output channels x FV = 6 vectors (24
 * accumulators, 4 broadcast weights and one load of xq per vector and tap);
 * the sums run over (c, kh, kw) in that order for every output, so the
 * bits do not depend on the thread count (threads split the images). The
 * last vector of a plane is stored masked; each block's output lines are
 * fetched for writing while it computes (the output is too big for L2).
 *
 * Backward-weights: dw[k][c][kh][kw] = sum over n and p of
 * xq[n][c][kw][p + kh OW] gy[n][k][p], one lane-wise partial sum of 16 per
 * tap, kb output channels x r taps (one kernel row) per pass over a band
 * of the plane (kb = 12 .. 3 as r = 1 .. 7: kb (r + 1) + 1 of the 32
 * registers; bands keep the xq they read in L1); the last, partial vector
 * is loaded zero-masked in both factors (an inf past the plane would
 * otherwise give 0 * inf). gy's planes are read in place when flat (the
 * next block's prefetched meanwhile), else copied per image. Images are
 * cut into the common header's fixed chunks, lanes added in lane order,
 * chunks in chunk order: the bits do not depend on the thread count
 * either. 16 or fewer output channels with more than 25 taps each are
 * left to oneDNN (cs_wserves).
 *
 * The ISA-neutral half (operand checks, weight copies, the image split and
 * the chunk sums, the entry points) is ../conv_small_common.h, shared with
 * the AVX2 twin; this file holds the packing and the vector code.
 */
#include "kernels/kernels.h"
#include "vmath512.h"   /* nb__tail_mask16 */

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* Tests set it to leave every call to the kernels below (oneDNN's tests). */
int nb__avx512_conv_small_off = 0;

#define CS_SERVES() (!nb__avx512_conv_small_off)
#define CS_LANES 16
#include "../conv_small_common.h"

#define FR 4    /* forward: output channels per block */
#define FV 6    /* forward: vectors of 16 positions per block */
#define CS_AI static inline __attribute__((always_inline))

/* r shifted copies per input channel, PH x OW each, then 16 zero floats
 * (the last vector of a plane reads up to 15 past its copy); the weight
 * gradient copies gy's image when its planes are not flat. */
static void cs_layout(cs_conv *c, bool bwd) {
    c->PW = c->OW;
    c->xn = c->C * c->r * c->PH * c->OW + 16;
    c->gn = bwd && !(c->ys[3] == 1 && c->ys[2] == c->OW) ? c->K * c->OH * c->OW : 0;
}

/* The weight gradient leaves oneDNN 16 or fewer output channels with more
 * than 25 taps per channel: measured there (1 thread, N 32, 28x28), ms
 * against oneDNN's path: 1 x 6x6 0.61 vs 0.49-0.53, 1 x 7x7 0.72 vs
 * 0.53, 2 x 5x5 0.66 vs 0.59, 4 x 5x5 1.55 vs 0.97, 3 x 7x7 2.48 vs 1.31;
 * it wins with 16 channels of 1 x 5x5 (0.37 vs 0.43) or 1 x 4x4, 24
 * channels of 4 x 3x3, 32 channels of 2 x 5x5 or 1 x 7x7. */
static bool cs_wserves(const cs_conv *c) { return c->K > 16 || c->C * c->r * c->r <= 25; }

/* xq[ci][kw][h][ow] = x[n][ci][h - ph][ow + kw - pw], zero outside. Rows
 * of unit column stride are built 16 columns at a time: a load masked to
 * the lanes inside x's row (the others zero) and a store masked to the
 * row, the masks made once per copy (kw) for up to 64 vectors of a row.
 * A row is 28 floats in LeNet: three libc calls a row (memset, memcpy,
 * memset) took 0.2 ms of a 1.5 ms forward at 1 thread, and masks made per
 * vector, with branches the row pattern made hard to predict, as long;
 * this takes 0.09 (x cold, a harness). */
#define CS_PACK_VECS 64
static void cs_pack(const cs_conv *c, int64_t n, float *xq) {
    int64_t r = c->r, OW = c->OW, S = c->PH * OW, nvec = (OW + 15) / 16;
    __mmask16 min[CS_PACK_VECS], mout[CS_PACK_VECS];
    for (int64_t ci = 0; ci < c->C; ci++)
        for (int64_t kw = 0; kw < r; kw++) {
            float *d = xq + (ci * r + kw) * S;
            int64_t sh = kw - c->pw;   /* xq column w reads x column w + sh */
            int64_t lo = -sh > 0 ? -sh : 0, hi = c->IW - sh < OW ? c->IW - sh : OW;
            const float *xc = c->x + n * c->xs[0] + ci * c->xs[1];
            if (c->xs[3] != 1) {
                for (int64_t h = 0; h < c->PH; h++) {
                    int64_t ih = h - c->ph;
                    bool inside = ih >= 0 && ih < c->IH;
                    for (int64_t w = 0; w < OW; w++)
                        d[h * OW + w] = inside && w >= lo && w < hi ? xc[ih * c->xs[2] + (w + sh) * c->xs[3]] : 0.0f;
                }
                continue;
            }
            for (int64_t v0 = 0; v0 < nvec; v0 += CS_PACK_VECS) {
                int64_t nv = nvec - v0 < CS_PACK_VECS ? nvec - v0 : CS_PACK_VECS;
                for (int64_t j = 0; j < nv; j++) {
                    int64_t w0 = (v0 + j) * 16, a = lo - w0 > 0 ? lo - w0 : 0, b = hi - w0 < 16 ? hi - w0 : 16;
                    min[j] = a < b ? (__mmask16)(nb__tail_mask16((int)b) & ~nb__tail_mask16((int)a)) : 0;
                    mout[j] = nb__tail_mask16((int)(OW - w0 < 16 ? OW - w0 : 16));
                }
                for (int64_t h = 0; h < c->PH; h++) {
                    float *row = d + h * OW + v0 * 16;
                    int64_t ih = h - c->ph;
                    if (ih < 0 || ih >= c->IH) {
                        for (int64_t j = 0; j < nv; j++) _mm512_mask_storeu_ps(row + j * 16, mout[j], _mm512_setzero_ps());
                        continue;
                    }
                    /* lane 0 of a vector may lie before x's row (masked lanes are not read):
                       its address is formed as an integer */
                    uintptr_t src = (uintptr_t)(xc + ih * c->xs[2]) + (uintptr_t)((v0 * 16 + sh) * (int64_t)sizeof(float));
                    for (int64_t j = 0; j < nv; j++)
                        _mm512_mask_storeu_ps(row + j * 16, mout[j],
                                              _mm512_maskz_loadu_ps(min[j], (const float *)(src + (uintptr_t)j * 64)));
                }
            }
        }
    memset(xq + c->C * r * S, 0, 16 * sizeof(float));
}

/* ---- forward ---- */

/* FR output channels x nv vectors from flat position p0: y[i] + 16 j =
 * bias + sum over taps t of w[i][t] xq[xoff[t] + p0 + 16 j], the last
 * vector stored under mask last. While the block computes, its output
 * lines are fetched for writing (prefetchw, one per tap) when pf: else
 * its 24 stores at once to a 6.4 MB output (LeNet) stall on the line fill
 * buffers, each waiting for its line from L3 or memory (1.24-1.31 ms
 * forward against 1.03-1.10 with the prefetches, 1 thread). PREFETCHW is
 * on every AVX-512 CPU (and a no-op where it is not). Streaming
 * (non-temporal) stores instead, for outputs of 1M floats and more, took
 * 1.14-1.16x as long a forward at 1 thread (LeNet conv1, alternated call
 * by call, a Cascade Lake VM), 1.03-1.06x at 2, and 1.05-1.24x at every
 * count from 1 to 16 threads on a 16-core Xeon (family 6 model 207;
 * benchmarks/data/16core-2026-11-27b): the lines fetched for writing win. */
CS_AI void cs_fblock(int64_t taps, const int64_t *xoff, int nv, const float *xq, const float *const *w,
                     const float *bv, int64_t p0, float *const *y, __mmask16 last, bool pf) {
    __m512 acc[FR][FV];
    for (int i = 0; i < FR; i++)
        for (int j = 0; j < nv; j++) acc[i][j] = _mm512_set1_ps(bv[i]);
    int64_t npf = pf ? FR * nv : 0;
    const char *pfl[FR * FV];   /* the output lines, in the order they are fetched */
    for (int j = 0; j < nv; j++)
        for (int i = 0; i < FR; i++) pfl[j * FR + i] = (const char *)(y[i] + 16 * j);
#define CS_PREFETCHW(t) __asm__ volatile("prefetchw %0" : : "m"(*pfl[t]))
    for (int64_t t = 0; t < taps; t++) {
        const float *xr = xq + xoff[t] + p0;
        __m512 wv[FR];
        for (int i = 0; i < FR; i++) wv[i] = _mm512_set1_ps(w[i][t]);
        for (int j = 0; j < nv; j++) {
            __m512 xv = _mm512_loadu_ps(xr + 16 * j);
            for (int i = 0; i < FR; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
        if (t < npf) CS_PREFETCHW(t);
    }
    for (int64_t t = taps; t < npf; t++) CS_PREFETCHW(t);
#undef CS_PREFETCHW
    for (int i = 0; i < FR; i++) {
        for (int j = 0; j < nv - 1; j++) _mm512_storeu_ps(y[i] + 16 * j, acc[i][j]);
        _mm512_mask_storeu_ps(y[i] + 16 * (nv - 1), last, acc[i][nv - 1]);
    }
}

/* One image, channel blocks of FR (a short last one computes its last
 * channel again into scratch), vector blocks of FV. y's planes are written
 * in place when flat, else through a tile. */
static void cs_image(const cs_conv *c, int64_t n, const float *xq, const float *wp, const float *bias, float *y) {
    int64_t r = c->r, K = c->K, taps = c->C * r * r, S = c->PH * c->OW;
    /* nblk blocks of nvb or nvb + 1 vectors (the first nbig), none of them short: LeNet's 49 vectors
       are 4 blocks of 6 and 5 of 5, not 8 of 6 and one of 1 (whose taps cost almost a whole block's) */
    int64_t P = c->OH * c->OW, nvec = (P + 15) / 16, nblk = (nvec + FV - 1) / FV;
    int64_t nvb = nvec / nblk, nbig = nvec % nblk;
    __mmask16 lastm = nb__tail_mask16((int)(P - (nvec - 1) * 16));
    int64_t xoff[CS_MAXC * CS_MAXR * CS_MAXR];
    for (int64_t ci = 0; ci < c->C; ci++)
        for (int64_t kh = 0; kh < r; kh++)
            for (int64_t kw = 0; kw < r; kw++) xoff[(ci * r + kh) * r + kw] = (ci * r + kw) * S + kh * c->OW;
    bool flat = c->ys[3] == 1 && c->ys[2] == c->OW;
    float tile[FR][FV * 16];
    float *yn = y + n * c->ys[0];
    for (int64_t k0 = 0; k0 < K; k0 += FR) {
        int rows = K - k0 < FR ? (int)(K - k0) : FR;
        const float *w[FR];
        float bv[FR];
        for (int i = 0; i < FR; i++) {
            int64_t k = i < rows ? k0 + i : K - 1;
            w[i] = wp + k * taps;
            bv[i] = bias ? bias[k] : 0.0f;
        }
        for (int64_t b = 0, v0 = 0, nv; b < nblk; b++, v0 += nv) {
            nv = nvb + (b < nbig);
            __mmask16 m = v0 + nv == nvec ? lastm : (__mmask16)0xFFFF;
            float *out[FR];
            for (int i = 0; i < FR; i++) out[i] = flat && i < rows ? yn + (k0 + i) * c->ys[1] + v0 * 16 : tile[i];
            switch (nv) {   /* a constant vector count keeps the accumulators in registers */
            case 6: cs_fblock(taps, xoff, 6, xq, w, bv, v0 * 16, out, m, flat); break;
            case 5: cs_fblock(taps, xoff, 5, xq, w, bv, v0 * 16, out, m, flat); break;
            case 4: cs_fblock(taps, xoff, 4, xq, w, bv, v0 * 16, out, m, flat); break;
            case 3: cs_fblock(taps, xoff, 3, xq, w, bv, v0 * 16, out, m, flat); break;
            case 2: cs_fblock(taps, xoff, 2, xq, w, bv, v0 * 16, out, m, flat); break;
            default: cs_fblock(taps, xoff, 1, xq, w, bv, v0 * 16, out, m, flat); break;
            }
            if (flat) continue;
            int64_t p1 = (v0 + nv) * 16 < P ? (v0 + nv) * 16 : P;
            for (int i = 0; i < rows; i++)
                for (int64_t q = v0 * 16; q < p1; q++)
                    yn[(k0 + i) * c->ys[1] + q / c->OW * c->ys[2] + q % c->OW * c->ys[3]] = tile[i][q - v0 * 16];
        }
    }
}

/* ---- backward-weights ---- */

/* Output channels per pass for an r x r kernel: kb x r sums, kb gy vectors
 * and one xq vector in registers. */
#define CS_WKB(R) ((R) == 1 ? 12 : (R) == 2 ? 8 : (R) == 3 ? 6 : (R) == 4 ? 5 : (R) <= 6 ? 4 : 3)
#define CS_WKB_MAX 12

/* One pass over an image's planes for KB output channels and the R taps of
 * one (input channel, kernel row): s[i][kw] (at a[i] + 16 kw) +=
 * xq[kw][kh OW + p] g[i][p], nfull whole vectors, then the tail lanes. x0:
 * xq at channel ci, kw 0, row kh; S: the floats between kw copies. A line
 * of pf0 (and pf1 when not NULL) is prefetched per vector: gy comes from
 * L3 or memory (6.4 MB in LeNet), and waiting for it cost 1.47-1.59 ms a
 * weight gradient against 1.25-1.32 with the prefetches (1 thread). */
CS_AI void cs_wpass(int R, int KB, bool FB, const float *x0, int64_t S, const float *const *g, int64_t nfull,
                    __mmask16 tail, float *const *a, const float *pf0, const float *pf1, float *const *bl) {
    __m512 s[CS_WKB_MAX][CS_MAXR], bs[CS_WKB_MAX];
    for (int i = 0; i < KB; i++)
        for (int kw = 0; kw < R; kw++) s[i][kw] = _mm512_loadu_ps(a[i] + kw * 16);
    if (FB)
        for (int i = 0; i < KB; i++) bs[i] = _mm512_loadu_ps(bl[i]);
    for (int64_t v = 0; v < nfull; v++) {
        __m512 gv[CS_WKB_MAX];
        for (int i = 0; i < KB; i++) {
            gv[i] = _mm512_loadu_ps(g[i] + v * 16);
            /* held in a register: folded into each FMA as a memory operand (what GCC does
               for some R) it is loaded R times, and the loads bound the loop; xv alike */
            __asm__("" : "+v"(gv[i]));
        }
        _mm_prefetch((const char *)(pf0 + v * 16), _MM_HINT_T0);
        if (pf1) _mm_prefetch((const char *)(pf1 + v * 16), _MM_HINT_T0);
        for (int kw = 0; kw < R; kw++) {
            __m512 xv = _mm512_loadu_ps(x0 + kw * S + v * 16);
            __asm__("" : "+v"(xv));
            for (int i = 0; i < KB; i++) s[i][kw] = _mm512_fmadd_ps(xv, gv[i], s[i][kw]);
        }
        if (FB)
            for (int i = 0; i < KB; i++) bs[i] = _mm512_add_ps(bs[i], gv[i]);
    }
    if (tail) {
        __m512 gv[CS_WKB_MAX];
        for (int i = 0; i < KB; i++) gv[i] = _mm512_maskz_loadu_ps(tail, g[i] + nfull * 16);
        for (int kw = 0; kw < R; kw++) {
            __m512 xv = _mm512_maskz_loadu_ps(tail, x0 + kw * S + nfull * 16);
            for (int i = 0; i < KB; i++) s[i][kw] = _mm512_fmadd_ps(xv, gv[i], s[i][kw]);
        }
        if (FB)   /* only the tail's lanes: the others keep their sums (bits, and -0) */
            for (int i = 0; i < KB; i++) bs[i] = _mm512_mask_add_ps(bs[i], tail, bs[i], gv[i]);
    }
    for (int i = 0; i < KB; i++)
        for (int kw = 0; kw < R; kw++) _mm512_storeu_ps(a[i] + kw * 16, s[i][kw]);
    if (FB)
        for (int i = 0; i < KB; i++) _mm512_storeu_ps(bl[i], bs[i]);
}

/* Vectors of a band: the span of xq that a band's passes read, C r (band
 * + (r - 1) OW) floats, stays within about 20 KiB of L1 beside its gy
 * (LeNet's 5x5 plane is one band; a 7x7 one on 28 columns two: as one it
 * ran 2x slower than oneDNN), and at least 16. */
static int64_t cs_band(const cs_conv *c) {
    int64_t v = (5120 / (c->C * c->r) - (c->r - 1) * c->OW) / 16;
    return v < 16 ? 16 : v;
}

/* Whether the pass over kernel row 0 of input channel 0 also sums gy for
 * the bias gradient: where kb more registers fit beside the pass's kb (r +
 * 1) + 1 (r = 3, 4, 5, 7). That saves a second read of the chunk's gy
 * (cs_bchunk, from L2): LeNet's conv1 weight and bias gradient at 1 thread
 * took 2.12-2.15 ms with it, 1.91-1.97 without. */
#define CS_WFUSE(R) (CS_WKB(R) * ((R) + 2) + 1 <= 32)

/* Images [n0, n1) into part[k][c][kh][kw] (overwritten). Lane-wise sums
 * live in acc[k][c][kh][kw][16] (51 KiB for LeNet's first layer), updated
 * image by image and, in an image, band by band of its planes (so every
 * sum still takes the positions in order); a short last channel block
 * sums its last channel again into scratch. With bpart, where CS_WFUSE:
 * the bias gradient too, per channel 16 lane sums in blanes (position p
 * into lane p mod 16, the positions of each image in order, images in
 * order), then the lanes in lane order, added to bpart[k]; true then
 * (the same rules as cs_bchunk's, with 16 lanes for its 32: results never
 * depend on the thread count, but differ in the last bits from the AVX2
 * twin's). */
static bool cs_wchunk(const cs_conv *c, const float *gy, int64_t n0, int64_t n1, float *xq, float *acc, float *part,
                      float *blanes, float *bpart) {
    int64_t r = c->r, K = c->K, taps = c->C * r * r, S = c->PH * c->OW, P = c->OH * c->OW;
    int64_t nvec = (P + 15) / 16, kb = CS_WKB(r), bmax = cs_band(c), nband = (nvec + bmax - 1) / bmax;
    __mmask16 tail = nb__tail_mask16((int)(P - (nvec - 1) * 16));
    float *gc = acc + K * taps * 16;   /* gy's image, when copied */
    float junk[CS_MAXR * 16] = {0}, bjunk[16];
    bool fb = bpart && CS_WFUSE(r);
    memset(acc, 0, (size_t)(K * taps * 16) * sizeof(float));
    if (fb) memset(blanes, 0, (size_t)(K * 16) * sizeof(float));
    for (int64_t n = n0; n < n1; n++) {
        cs_pack(c, n, xq);
        const float *gn = gy + n * c->ys[0];
        int64_t gk = c->ys[1];
        if (c->gn) {
            for (int64_t k = 0; k < K; k++)
                for (int64_t p = 0; p < P; p++)
                    gc[k * P + p] = gn[k * c->ys[1] + p / c->OW * c->ys[2] + p % c->OW * c->ys[3]];
            gn = gc, gk = P;
        }
        for (int64_t bi = 0, v0 = 0, nv; bi < nband; bi++, v0 += nv) {
            nv = nvec / nband + (bi < nvec % nband);
            bool last = v0 + nv == nvec && tail != 0xFFFF;   /* the band ends in the partial vector */
            int64_t nfull = last ? nv - 1 : nv;
            for (int64_t k0 = 0; k0 < K; k0 += kb) {
                const float *g[CS_WKB_MAX];
                for (int64_t i = 0; i < kb; i++) g[i] = gn + (k0 + i < K ? k0 + i : K - 1) * gk + v0 * 16;
                /* the nk planes of the next block (the next band's, the next image's unless
                   copied) are prefetched into L1, one plane per pass (two when the passes are fewer) */
                const float *nx = NULL;
                int64_t nk = 0;
                if (k0 + kb < K) nx = g[0] + kb * gk, nk = K - k0 - kb < kb ? K - k0 - kb : kb;
                else if (bi + 1 < nband) nx = gn + (v0 + nv) * 16, nk = kb < K ? kb : K;
                else if (n + 1 < n1 && !c->gn) nx = gn + c->ys[0], nk = kb < K ? kb : K;
                int64_t per = c->C * r >= nk ? 1 : 2;
                for (int64_t ci = 0; ci < c->C; ci++)
                    for (int64_t kh = 0; kh < r; kh++) {
                        int64_t q = per * (ci * r + kh);
                        const float *pf0 = q < nk ? nx + q * gk : g[0];
                        const float *pf1 = per == 1 ? NULL : q + 1 < nk ? nx + (q + 1) * gk : g[0];
                        float *a[CS_WKB_MAX], *bl[CS_WKB_MAX];
                        for (int64_t i = 0; i < kb; i++) {
                            a[i] = k0 + i < K ? acc + ((k0 + i) * taps + (ci * r + kh) * r) * 16 : junk;
                            bl[i] = k0 + i < K ? blanes + (k0 + i) * 16 : bjunk;
                        }
                        bool fuse = fb && ci == 0 && kh == 0;
                        const float *x0 = xq + ci * r * S + kh * c->OW + v0 * 16;
                        __mmask16 tm = last ? tail : 0;
#define CS_WPASS(R)                                                                                    \
    (fuse && CS_WFUSE(R) ? cs_wpass(R, CS_WKB(R), true, x0, S, g, nfull, tm, a, pf0, pf1, bl)              \
                         : cs_wpass(R, CS_WKB(R), false, x0, S, g, nfull, tm, a, pf0, pf1, bl))
                        switch (r) {   /* constant tap and channel counts keep the sums in registers */
                        case 1: CS_WPASS(1); break;
                        case 2: CS_WPASS(2); break;
                        case 3: CS_WPASS(3); break;
                        case 4: CS_WPASS(4); break;
                        case 5: CS_WPASS(5); break;
                        case 6: CS_WPASS(6); break;
                        default: CS_WPASS(7); break;
                        }
#undef CS_WPASS
                    }
            }
        }
    }
    cs_lane_sums(acc, K * taps, part);
    for (int64_t k = 0; fb && k < K; k++) {
        float v = blanes[k * 16];
        for (int l = 1; l < 16; l++) v += blanes[k * 16 + l];
        bpart[k] += v;
    }
    return fb;
}

/* Above oneDNN's conv (priority 10) and level with the AVX2 twin (20, which
 * steps aside under AVX-512): NB__PRIO_AVX512_WINS. Measured on a 2-core
 * AVX-512 Xeon (Cascade Lake, 2.5 GHz) beside other work, LeNet's first
 * layer (x (64,1,28,28), w (32,1,5,5), pad 2, bias), call by call in
 * alternation, 40 rounds, min / median ms:
 *   1 thread:  forward 1.05-1.07 / 1.16-1.19 against oneDNN's path (NCHW
 *     reordered to and from its blocked layout) 2.32-2.37 / 2.46-2.65 and
 *     oneDNN alone in its blocked layout 1.06-1.09 / 1.11-1.12; weight
 *     gradient 1.32-1.36 / 1.38-1.46 against 2.03-2.06 / 2.14-2.18 and
 *     1.38-1.43 / 1.48-1.69 (oneDNN's with the bias gradient fused);
 *   2 threads: forward 0.53-0.58 against 1.22-1.27 and 0.51-0.53; weight
 *     gradient 0.64-0.71 against 1.17 and 0.71-0.73. */
void nb__avx512_conv_small_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_CONV2D, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_conv_small_c_conv2d", NB__PRIO_AVX512_WINS, cs_fwd},
        {NB_OP_CONV_BWD_WEIGHT, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_conv_small_c_bwd_weight", NB__PRIO_AVX512_WINS,
         cs_bwd_weight},
        {NB_OP_CONV_BWD_WEIGHT_BIAS, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_conv_small_c_bwd_weight_bias",
         NB__PRIO_AVX512_WINS, cs_bwd_weight_bias},
    };
    NB__REGISTER_ALL(ks);
}
