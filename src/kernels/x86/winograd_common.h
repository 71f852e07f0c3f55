/* winograd_common.h — the ISA-neutral body of the Winograd convolutions
 * (x86/avx2/avx2_winograd.c, x86/avx512/avx512_winograd.c), included by
 * each in its own library, so compiled with that library's -m flags.
 *
 * Stride-1 3x3 and 5x5 convolutions by Winograd's minimal filtering:
 * F(4x4, 3x3) and F(2x2, 5x5), both on 6x6 input tiles, serving CONV2D,
 * CONV_BWD_DATA, CONV_TRANSPOSE2D (wg_conv_op) and CONV_BWD_WEIGHT
 * (wg_bwd_weight): F32, groups 1, stride 1, dilation 1, square r x r
 * kernels, r = 3 or 5, 16+ channels in and out. The adjoint w.r.t. the input
 * is itself a stride-1 correlation, of gy with the kernel turned 180
 * degrees and its channel axes swapped, padded r-1-p: one engine serves all
 * three.
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
 * Layout and order. Per image: the padded input is copied channel-last
 * (xp[h][w][c], channels padded to WG_L), so every transform works on WG_L
 * channels per register; tiles are done in blocks of WG_TB (input
 * transform into V[36][tb][Cp], 36 GEMMs into M[36][tb][Kp], output
 * transform into yp[h][w][Kp]), so a block's V and M stay in L2 with the
 * transformed kernel U[36][Cp][Kp]; yp is then written out in the caller's
 * layout. Threads split the images; one image is one thread's, every sum
 * has a fixed order, so the bits do not depend on the thread count (the
 * parallel backward executor's rule). Nor on WG_L or the blocking: every
 * lane runs the same transforms, and each GEMM output is one FMA chain over
 * the channels (backward-weights: the tiles) in order, whatever the
 * register shape.
 *
 * The includer defines, before including this, its vector vocabulary:
 *   WG_VEC (the type), WG_L (lanes), WG_ZERO(), WG_SET1(f), WG_LD / WG_ST
 *   (aligned load, store), WG_LDU / WG_STU (unaligned), WG_BCAST(p) (*p in
 *   every lane), WG_ADD, WG_SUB, WG_MUL, WG_FMA(a, b, c) = a b + c,
 *   WG_FNMA(a, b, c) = c - a b;
 * its blocking: WG_TB (tiles per block), WG_MR (GEMM microkernel rows,
 * at most 12), WG_NV (its vectors of output channels, at most 4);
 * and the functions wg_transpose(WG_VEC r[WG_L]) (r <- its transpose),
 * wg_ldn(p, n) (the first n < WG_L floats at p, zeros after),
 * wg_stn(p, v, n) (v's first n lanes to p) and wg_isa_ok() (false: every
 * call declines). It registers wg_conv_op and wg_bwd_weight itself.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_WINOGRAD_COMMON_H
#define NB_X86_WINOGRAD_COMMON_H

#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

#define WG_A 6    /* tile side (m + r - 1), both variants */
#define WG_P 36   /* tile positions */

/* Floats between tile positions in V (c = Cp) and M (c = Kp): a block, plus
 * 64 bytes so that the 36 positions of one tile do not fall into the same
 * few L1 sets (24 * 64 floats apart, they would alias every 4 KiB). */
static inline int64_t wg_vs(int64_t c) { return WG_TB * c + 16; }

/* G (a x r) and A^T (m x a) per variant, derived once from the points. */
typedef struct wg_mats {
    int m, r;
    float G[WG_A][5];
    float AT[4][WG_A];
} wg_mats;

static wg_mats wg_m25, wg_m43;   /* F(2x2, 5x5), F(4x4, 3x3) */

/* Cook-Toom at the finite points p[0..4] and infinity:
 *   G[j][k] = p_j^k / prod_{l != j} (p_j - p_l),  G[5][k] = [k == r-1]
 *   A^T[i][j] = p_j^i,                             A^T[i][5] = [i == m-1]
 * (B^T[j] holds the coefficients of prod_{l != j} (x - p_l), and of
 * prod_l (x - p_l) for the last row: wg_bt.) */
static void wg_matrices(wg_mats *w, int m, int r) {
    static const double p[5] = {0, 1, -1, 2, -2};
    w->m = m, w->r = r;
    memset(w->G, 0, sizeof w->G);
    memset(w->AT, 0, sizeof w->AT);
    for (int j = 0; j < 5; j++) {
        double f = 1.0, pk = 1.0;
        for (int l = 0; l < 5; l++)
            if (l != j) f *= p[j] - p[l];
        for (int k = 0; k < r; k++, pk *= p[j]) w->G[j][k] = (float)(pk / f);
        double pi = 1.0;
        for (int i = 0; i < m; i++, pi *= p[j]) w->AT[i][j] = (float)pi;
    }
    w->G[5][r - 1] = 1.0f;
    w->AT[m - 1][5] = 1.0f;
}

/* v = B^T d for WG_L lanes of 6 inputs (rows of B^T: 4 0 -5 0 1 0 / 0 -4 -4 1 1 0
 * / 0 4 -4 -1 1 0 / 0 -2 -1 2 1 0 / 0 2 -1 -2 1 0 / 0 4 0 -5 0 1). */
static inline void wg_bt(const WG_VEC d[6], WG_VEC v[6]) {
    const WG_VEC c2 = WG_SET1(2.0f), c4 = WG_SET1(4.0f), c5 = WG_SET1(5.0f);
    WG_VEC t1 = WG_FNMA(c4, d[2], d[4]);   /* d4 - 4 d2 */
    WG_VEC t2 = WG_FNMA(c4, d[1], d[3]);   /* d3 - 4 d1 */
    WG_VEC t3 = WG_SUB(d[4], d[2]);          /* d4 - d2 */
    WG_VEC t4 = WG_MUL(c2, WG_SUB(d[3], d[1]));   /* 2 (d3 - d1) */
    v[0] = WG_FMA(c4, d[0], WG_FNMA(c5, d[2], d[4]));
    v[1] = WG_ADD(t1, t2);
    v[2] = WG_SUB(t1, t2);
    v[3] = WG_ADD(t3, t4);
    v[4] = WG_SUB(t3, t4);
    v[5] = WG_FMA(c4, d[1], WG_FNMA(c5, d[3], d[5]));
}

/* y[0..m) = A^T d for WG_L lanes (p = 0, 1, -1, 2, -2, inf). */
static inline __attribute__((always_inline)) void wg_at(const WG_VEC d[6], WG_VEC *y, int m) {
    WG_VEC s1 = WG_ADD(d[1], d[2]), a1 = WG_SUB(d[1], d[2]);
    WG_VEC s2 = WG_ADD(d[3], d[4]), a2 = WG_SUB(d[3], d[4]);
    y[0] = WG_ADD(WG_ADD(d[0], s1), s2);
    if (m == 2) {
        y[1] = WG_ADD(WG_FMA(WG_SET1(2.0f), a2, a1), d[5]);
    } else {
        y[1] = WG_FMA(WG_SET1(2.0f), a2, a1);
        y[2] = WG_FMA(WG_SET1(4.0f), s2, s1);
        y[3] = WG_ADD(WG_FMA(WG_SET1(8.0f), a2, a1), d[5]);
    }
}

/* One convolution's geometry, in the engine's terms: y (N, K, OH, OW) =
 * correlation of x (N, C, IH, IW), zero outside, with g (K, C, r, r) read
 * from row -ph, column -pw; strides in elements. */
typedef struct wg_conv {
    const wg_mats *mt;
    int m, r;
    int64_t N, C, K, Cp, Kp, IH, IW, OH, OW, ph, pw;
    int64_t TH, TW, T, PH, PW;   /* tiles; the packed input plane */
    const float *x;
    int64_t xs[4];
    float *y;
    int64_t ys[4];
    const float *bias;           /* K, or NULL */
    int64_t bs;
    const float *U;              /* transformed kernel [36][Cp][Kp] */
} wg_conv;

/* Scratch floats per thread: xp, V, M, yp. */
static int64_t wg_scratch(const wg_conv *c) {   /* yp: WG_L spare columns for wg_unpack's last block */
    return c->PH * c->PW * c->Cp + WG_P * (wg_vs(c->Cp) + wg_vs(c->Kp)) + (c->TH * c->m * c->TW * c->m + WG_L) * c->Kp;
}

/* U[pos][c][k] = (G g_kc G^T)[pos], g_kc = w[k][c] (flip 0) or the adjoint's
 * w[c][k] turned 180 degrees (flip 1); zero in the padding. WG_L k per pass. */
static void wg_kernel(const wg_conv *c, const float *w, const int64_t ws[4], bool flip, float *U, int nt) {
    const wg_mats *mt = c->mt;
    int r = c->r;
    int64_t Cp = c->Cp, Kp = c->Kp;
    (void)nt;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t ci = 0; ci < Cp; ci++) {
        for (int64_t k0 = 0; k0 < Kp; k0 += WG_L) {
            WG_VEC g[5][5], t[WG_A][5];
            for (int kh = 0; kh < r; kh++)
                for (int kw = 0; kw < r; kw++) {
                    float v[WG_L];
                    for (int l = 0; l < WG_L; l++) {
                        int64_t k = k0 + l;
                        if (ci >= c->C || k >= c->K) {
                            v[l] = 0.0f;
                        } else if (!flip) {
                            v[l] = w[k * ws[0] + ci * ws[1] + kh * ws[2] + kw * ws[3]];
                        } else {   /* the adjoint's kernel: w is (C_in_of_adjoint = our C, K, r, r) */
                            v[l] = w[ci * ws[0] + k * ws[1] + (r - 1 - kh) * ws[2] + (r - 1 - kw) * ws[3]];
                        }
                    }
                    g[kh][kw] = WG_LDU(v);
                }
            for (int i = 0; i < WG_A; i++)   /* t = G g */
                for (int kw = 0; kw < r; kw++) {
                    WG_VEC s = WG_ZERO();
                    for (int kh = 0; kh < r; kh++)
                        if (mt->G[i][kh] != 0.0f) s = WG_FMA(WG_SET1(mt->G[i][kh]), g[kh][kw], s);
                    t[i][kw] = s;
                }
            for (int i = 0; i < WG_A; i++)   /* U = t G^T */
                for (int j = 0; j < WG_A; j++) {
                    WG_VEC s = WG_ZERO();
                    for (int kw = 0; kw < r; kw++)
                        if (mt->G[j][kw] != 0.0f) s = WG_FMA(WG_SET1(mt->G[j][kw]), t[i][kw], s);
                    WG_ST(U + ((int64_t)(i * WG_A + j) * Cp + ci) * Kp + k0, s);
                }
        }
    }
}

/* C[rows x WG_L*nv] = A[rows x kc] @ B[kc x WG_L*nv]; lda, ldb, ldc in floats.
 * Always inlined with constant rows (1..WG_MR) and nv (1..WG_NV). */
static inline __attribute__((always_inline)) void wg_mk(int rows, int nv, const float *A, int64_t lda,
                                                          const float *B, int64_t ldb, float *C, int64_t ldc,
                                                          int64_t kc) {
    WG_VEC acc[WG_MR][WG_NV];
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = WG_ZERO();
    for (int64_t k = 0; k < kc; k++) {
        WG_VEC b[WG_NV];
        for (int v = 0; v < nv; v++) b[v] = WG_LD(B + k * ldb + WG_L * v);
        for (int i = 0; i < rows; i++) {
            WG_VEC a = WG_BCAST(A + i * lda + k);
            for (int v = 0; v < nv; v++) acc[i][v] = WG_FMA(a, b[v], acc[i][v]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) WG_ST(C + i * ldc + WG_L * v, acc[i][v]);
}

/* F(R, NV) with the row count rows (1..WG_MR) and NV made constants: a
 * switch whose cases above WG_MR are compiled out. */
#define WG_C(n, F, NV) case n: if (n <= WG_MR) F((n <= WG_MR ? n : 1), NV); break;
#define WG_ROWS(F, NV)                                                                                       \
    switch (rows) {                                                                                          \
        WG_C(12, F, NV) WG_C(11, F, NV) WG_C(10, F, NV) WG_C(9, F, NV) WG_C(8, F, NV) WG_C(7, F, NV)         \
        WG_C(6, F, NV) WG_C(5, F, NV) WG_C(4, F, NV) WG_C(3, F, NV) WG_C(2, F, NV) default: F(1, NV); break; \
    }
/* ... and nv (1..WG_NV) too */
#define WG_NVC(n, F) case n: if (n <= WG_NV) WG_ROWS(F, (n <= WG_NV ? n : 1)) break;
#define WG_RNV(F)                                     \
    switch (nv) {                                     \
        WG_NVC(4, F) WG_NVC(3, F) WG_NVC(2, F) default: WG_ROWS(F, 1) break; \
    }
#define WG_MK(R, NV) wg_mk(R, NV, a, Cp, b, Kp, o, Kp, Cp)

/* M[pos] = V[pos] @ U[pos] for the tb tiles of a block. */
static void wg_gemms(const wg_conv *c, const float *V, float *M, int64_t tb) {
    int64_t Cp = c->Cp, Kp = c->Kp;
    for (int pos = 0; pos < WG_P; pos++) {
        const float *Vp = V + pos * wg_vs(Cp), *Up = c->U + (int64_t)pos * Cp * Kp;
        float *Mp = M + pos * wg_vs(Kp);
        for (int64_t k0 = 0; k0 < Kp; k0 += WG_NV * WG_L) {
            const float *b = Up + k0;
            int64_t nrb = (tb + WG_MR - 1) / WG_MR;   /* row blocks of near-equal size rather than a last short one */
            int nv = Kp - k0 >= WG_NV * WG_L ? WG_NV : (int)((Kp - k0) / WG_L);
            for (int64_t ri = 0, t0 = 0, rows; ri < nrb; ri++, t0 += rows) {
                rows = tb / nrb + (ri < tb % nrb);
                const float *a = Vp + t0 * Cp;
                float *o = Mp + t0 * Kp + k0;
                WG_RNV(WG_MK)
            }
        }
    }
}

/* Input transform of tiles [t0, t0 + tb) of the packed plane xp into V. */
static void wg_input(const wg_conv *c, const float *xp, float *V, int64_t t0, int64_t tb) {
    int64_t Cp = c->Cp, PW = c->PW;
    for (int64_t t = 0; t < tb; t++) {
        int64_t th = (t0 + t) / c->TW, tw = (t0 + t) % c->TW;
        const float *base = xp + (th * c->m * PW + tw * c->m) * Cp;
        for (int64_t c0 = 0; c0 < Cp; c0 += WG_L) {
            WG_VEC tmp[WG_A][WG_A];
            for (int j = 0; j < WG_A; j++) {   /* columns: tmp[.][j] = B^T d[.][j] */
                WG_VEC d[6], v[6];
                for (int i = 0; i < WG_A; i++) d[i] = WG_LD(base + (i * PW + j) * Cp + c0);
                wg_bt(d, v);
                for (int i = 0; i < WG_A; i++) tmp[i][j] = v[i];
            }
            for (int i = 0; i < WG_A; i++) {   /* rows: V[i][.] = tmp[i][.] B */
                WG_VEC v[6];
                wg_bt(tmp[i], v);
                for (int j = 0; j < WG_A; j++) WG_ST(V + (i * WG_A + j) * wg_vs(Cp) + t * Cp + c0, v[j]);
            }
        }
    }
}

/* Output transform of the block's tiles from M into yp[h][w][Kp], bias added. */
static inline __attribute__((always_inline)) void wg_output_m(const wg_conv *c, const float *M, float *yp,
                                                                int64_t t0, int64_t tb, int m) {
    int64_t Kp = c->Kp, YW = c->TW * m;
    for (int64_t t = 0; t < tb; t++) {
        int64_t th = (t0 + t) / c->TW, tw = (t0 + t) % c->TW;
        float *base = yp + (th * m * YW + tw * m) * Kp;
        for (int64_t k0 = 0; k0 < Kp; k0 += WG_L) {
            WG_VEC tmp[4][WG_A];
            for (int j = 0; j < WG_A; j++) {
                WG_VEC d[6], o[4];
                for (int i = 0; i < WG_A; i++) d[i] = WG_LD(M + (i * WG_A + j) * wg_vs(Kp) + t * Kp + k0);
                wg_at(d, o, m);
                for (int i = 0; i < m; i++) tmp[i][j] = o[i];
            }
            WG_VEC bv = WG_ZERO();
            if (c->bias) {
                float b[WG_L];
                for (int l = 0; l < WG_L; l++) b[l] = k0 + l < c->K ? c->bias[(k0 + l) * c->bs] : 0.0f;
                bv = WG_LDU(b);
            }
            for (int i = 0; i < m; i++) {
                WG_VEC o[4];
                wg_at(tmp[i], o, m);
                for (int j = 0; j < m; j++) WG_ST(base + (i * YW + j) * Kp + k0, WG_ADD(o[j], bv));
            }
        }
    }
}

static void wg_output(const wg_conv *c, const float *M, float *yp, int64_t t0, int64_t tb) {
    if (c->m == 2) wg_output_m(c, M, yp, t0, tb, 2);
    else wg_output_m(c, M, yp, t0, tb, 4);
}

/* xp[h][w][ci] = x[n][ci][h - ph][w - pw]: zero outside the image and in the
 * channel padding; WG_L channels x WG_L columns per transpose (wg_transpose). */
static void wg_pack(const wg_conv *c, int64_t n, float *xp) {
    int64_t Cp = c->Cp, PW = c->PW, rowf = PW * Cp;
    int64_t h1 = c->IH < c->PH - c->ph ? c->IH : c->PH - c->ph, w1 = c->IW < PW - c->pw ? c->IW : PW - c->pw;
    const float *xn = c->x + n * c->xs[0];
    for (int64_t p = 0; p < c->PH; p++) {   /* the border: rows and columns outside the image */
        float *row = xp + p * rowf;
        int64_t h = p - c->ph;
        if (h < 0 || h >= h1) {
            memset(row, 0, (size_t)rowf * sizeof(float));
        } else {
            memset(row, 0, (size_t)(c->pw * Cp) * sizeof(float));
            memset(row + (c->pw + w1) * Cp, 0, (size_t)((PW - c->pw - w1) * Cp) * sizeof(float));
        }
    }
    for (int64_t c0 = 0; c0 < Cp; c0 += WG_L)
        for (int64_t h = 0; h < h1; h++) {
            float *dst = xp + (h + c->ph) * rowf + c->pw * Cp + c0;
            const float *src = xn + c0 * c->xs[1] + h * c->xs[2];
            for (int64_t w0 = 0; w0 < w1; w0 += WG_L) {
                int64_t nw = w1 - w0 < WG_L ? w1 - w0 : WG_L;
                WG_VEC r[WG_L];
                for (int l = 0; l < WG_L; l++) {
                    const float *sl = src + l * c->xs[1] + w0 * c->xs[3];
                    if (c0 + l >= c->C) {
                        r[l] = WG_ZERO();
                    } else if (c->xs[3] == 1 && nw == WG_L) {
                        r[l] = WG_LDU(sl);
                    } else if (c->xs[3] == 1) {
                        r[l] = wg_ldn(sl, nw);
                    } else {
                        float v[WG_L] = {0};
                        for (int64_t j = 0; j < nw; j++) v[j] = sl[j * c->xs[3]];
                        r[l] = WG_LDU(v);
                    }
                }
                wg_transpose(r);
                for (int64_t j = 0; j < nw; j++) WG_ST(dst + (w0 + j) * Cp, r[j]);
            }
        }
}

/* y[n][k][oh][ow] = yp[oh][ow][k], WG_L columns x WG_L channels per transpose. */
static void wg_unpack(const wg_conv *c, int64_t n, const float *yp) {
    int64_t Kp = c->Kp, YW = c->TW * c->m;
    float *yn = c->y + n * c->ys[0];
    for (int64_t k0 = 0; k0 < c->K; k0 += WG_L) {
        int64_t nk = c->K - k0 < WG_L ? c->K - k0 : WG_L;
        for (int64_t oh = 0; oh < c->OH; oh++) {
            const float *src = yp + oh * YW * Kp + k0;
            float *dst = yn + k0 * c->ys[1] + oh * c->ys[2];
            for (int64_t w0 = 0; w0 < c->OW; w0 += WG_L) {
                int64_t nw = c->OW - w0 < WG_L ? c->OW - w0 : WG_L;
                WG_VEC r[WG_L];
                for (int j = 0; j < WG_L; j++) r[j] = WG_LD(src + (w0 + j) * Kp);   /* yp is TW*m >= OW wide, */
                wg_transpose(r);                                                      /* plus WG_L spare columns */
                for (int64_t l = 0; l < nk; l++) {
                    float *dl = dst + l * c->ys[1] + w0 * c->ys[3];
                    if (c->ys[3] == 1 && nw == WG_L) {
                        WG_STU(dl, r[l]);
                    } else if (c->ys[3] == 1) {
                        wg_stn(dl, r[l], nw);
                    } else {
                        float v[WG_L];
                        WG_STU(v, r[l]);
                        for (int64_t j = 0; j < nw; j++) dl[j * c->ys[3]] = v[j];
                    }
                }
            }
        }
    }
}

/* One image, start to end, in the thread's scratch s. */
static void wg_image(const wg_conv *c, int64_t n, float *s) {
    int64_t Cp = c->Cp, Kp = c->Kp, PW = c->PW;
    float *xp = s, *V = xp + c->PH * PW * Cp, *M = V + WG_P * wg_vs(Cp), *yp = M + WG_P * wg_vs(Kp);
    wg_pack(c, n, xp);
    int64_t nb = (c->T + WG_TB - 1) / WG_TB;   /* blocks of near-equal size: no block of 1 tile */
    for (int64_t bi = 0, t0 = 0; bi < nb; bi++) {
        int64_t tb = c->T / nb + (bi < c->T % nb);
        wg_input(c, xp, V, t0, tb);
        wg_gemms(c, V, M, tb);
        wg_output(c, M, yp, t0, tb);
        t0 += tb;
    }
    wg_unpack(c, n, yp);
}

static int64_t wg_round(int64_t v) { return (v + WG_L - 1) / WG_L * WG_L; }

static bool wg_f32_4d(const nb_tensor *t) { return t && nb_dtype_of(t) == NB_DTYPE_F32 && nb_ndim(t) == 4; }

/* Stride 1, dilation 1, groups 1, an r x r kernel with r = 3 or 5 (the
 * shape of w, or of dw for the backward-weights). */
static int64_t wg_kernel_size(const nb_kernel_args *a, const nb_tensor *w) {
    for (int i = 0; i < 2; i++)
        if (a->scalar[i] != 1.0 || a->scalar[4 + i] != 1.0) return 0;
    if (a->scalar[6] != 1.0) return 0;
    int64_t r = nb_shape(w)[2];
    return nb_shape(w)[3] == r && (r == 3 || r == 5) ? r : 0;
}

/* c <- the correlation of x (N, C, IH, IW) with an r x r kernel into y (N,
 * K, OH, OW), x read from row -ph, column -pw. False where the kernels do
 * not pay: fewer than 16 channels on a side (small GEMMs), a transformed
 * kernel above 2 MiB (out of L2's reach), outputs under 4x4 (mostly
 * padding tiles), an empty batch. Depends on the shapes alone, never on the
 * thread count. */
static bool wg_setup(wg_conv *c, const nb_tensor *x, const nb_tensor *y, int64_t r, int64_t ph, int64_t pw) {
    if (!wg_isa_ok()) return false;
    const int64_t *xsh = nb_shape(x), *ysh = nb_shape(y);
    int64_t C = xsh[1], K = ysh[1], Cp = wg_round(C), Kp = wg_round(K);
    if (xsh[0] != ysh[0] || xsh[0] == 0 || ph < 0 || pw < 0) return false;
    if (C < 16 || K < 16 || Cp * Kp * WG_P * (int64_t)sizeof(float) > (2 << 20)) return false;
    if (ysh[2] < 4 || ysh[3] < 4) return false;
    memset(c, 0, sizeof *c);
    c->mt = r == 5 ? &wg_m25 : &wg_m43;
    c->m = c->mt->m, c->r = (int)r;
    c->N = xsh[0], c->C = C, c->K = K, c->Cp = Cp, c->Kp = Kp;
    c->IH = xsh[2], c->IW = xsh[3], c->OH = ysh[2], c->OW = ysh[3], c->ph = ph, c->pw = pw;
    c->TH = (c->OH + c->m - 1) / c->m, c->TW = (c->OW + c->m - 1) / c->m, c->T = c->TH * c->TW;
    c->PH = c->TH * c->m + r - 1, c->PW = c->TW * c->m + r - 1;
    c->x = nb_data(x), c->y = nb_data(y);
    for (int i = 0; i < 4; i++) c->xs[i] = nb_strides(x)[i], c->ys[i] = nb_strides(y)[i];
    return true;
}

/* CONV2D: out y <- x, w[, bias]; CONV_BWD_DATA, CONV_TRANSPOSE2D: out dx <- gy, w[, bias]. */
static int wg_conv_op(const nb_kernel_args *a) {
    if (nb__avx2_winograd_off) return NB_KERNEL_DECLINE;
    bool adjoint = a->op != NB_OP_CONV2D;   /* CONV_BWD_DATA, CONV_TRANSPOSE2D */
    const nb_tensor *x = a->in[0], *w = a->in[1], *b = a->nin > 2 ? a->in[2] : NULL, *y = a->out;
    if (!wg_f32_4d(x) || !wg_f32_4d(w) || !wg_f32_4d(y)) return NB_KERNEL_DECLINE;
    if (b && (nb_dtype_of(b) != NB_DTYPE_F32 || nb_ndim(b) != 1 || nb_shape(b)[0] != nb_shape(y)[1]))
        return NB_KERNEL_DECLINE;
    int64_t r = wg_kernel_size(a, w);
    if (!r) return NB_KERNEL_DECLINE;
    /* forward: w (K, C, r, r); adjoint: w (C, K, r, r) with C = gy's channels, padding r-1-p */
    const int64_t *ws = nb_shape(w);
    int64_t C = nb_shape(x)[1], K = nb_shape(y)[1];
    if (adjoint ? ws[0] != C || ws[1] != K : ws[0] != K || ws[1] != C) return NB_KERNEL_DECLINE;
    int64_t p0 = (int64_t)a->scalar[2], p1 = (int64_t)a->scalar[3];
    wg_conv c;
    if (!wg_setup(&c, x, y, r, adjoint ? r - 1 - p0 : p0, adjoint ? r - 1 - p1 : p1)) return NB_KERNEL_DECLINE;
    c.bias = b ? nb_data(b) : NULL, c.bs = b ? nb_strides(b)[0] : 0;

    size_t ubytes = (size_t)(WG_P * c.Cp * c.Kp) * sizeof(float);
    float *U = nb__alloc(ubytes);
    if (!U) return NB_KERNEL_DECLINE;
    int nt_w = nb__par_threads(c.Cp * c.Kp * 64, NB_GRAIN_ELEMENTWISE);
    wg_kernel(&c, nb_data(w), nb_strides(w), adjoint, U, nt_w);
    c.U = U;

    /* images over threads: about 2 r^2 C K OH OW flops each, GEMM-like grain */
    int64_t per = wg_scratch(&c);
    int nt = nb__par_threads(c.N * 2 * r * r * C * K * c.OH * c.OW, 2000000);
    if (nt > c.N) nt = (int)c.N;
    int fail = 0;
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1) reduction(max : fail)
    {
        float *s = nb__alloc((size_t)per * sizeof(float));
        if (!s) fail = 1;
        /* one image at a time to whichever thread is free: a thread on a slower
           core takes fewer (each image's bits are the same whoever computes it) */
#pragma omp for schedule(dynamic, 1)
        for (int64_t n = 0; n < c.N; n++)
            if (s) wg_image(&c, n, s);
        if (s) nb__free(s, (size_t)per * sizeof(float));
    }
    nb__free(U, ubytes);
    return fail ? nb__err(NB_ENOMEM, "winograd conv: out of memory for scratch") : 0;
}

/* ---- backward-weights: dL/dg = G^T [(A dY A^T) .* (B^T d B)] G ----
 * summed over tiles and images. Per position that sum is a GEMM whose
 * inner dimension is the tiles: S[pos][c][k] = sum_t V[pos][t][c] Y[pos][t][k],
 * with V the forward's input transform and Y = A dY A^T the transformed
 * gradient tile (zero beyond the output). The images are cut into at most
 * WG_CHUNKS chunks whose size depends on the batch alone, each summed by one
 * thread into its own S, and the chunks' S are added in chunk order: the
 * same bits at any thread count. dW = G^T S G ends it. */
#define WG_CHUNKS 16
/* nb__wg_sall_max (avx2_winograd.c, kernels.h): bytes for every chunk's S
 * at once (wg_bwd_weight); tests set 0 to take the one-S-per-thread ordered
 * path at any thread count. */

/* Y[0..6) = A y for WG_L lanes of the m values y: Y_j = sum_i p_j^i y_i, Y_5 = y_{m-1}. */
static inline __attribute__((always_inline)) void wg_a(const WG_VEC *y, WG_VEC v[6], int m) {
    const WG_VEC c2 = WG_SET1(2.0f);
    WG_VEC e, o;   /* even and odd parts at p = 1 and p = 2 */
    v[0] = y[0];
    if (m == 2) {
        v[1] = WG_ADD(y[0], y[1]);
        v[2] = WG_SUB(y[0], y[1]);
        o = WG_MUL(c2, y[1]);
        v[3] = WG_ADD(y[0], o);
        v[4] = WG_SUB(y[0], o);
        v[5] = y[1];
    } else {
        e = WG_ADD(y[0], y[2]), o = WG_ADD(y[1], y[3]);
        v[1] = WG_ADD(e, o);
        v[2] = WG_SUB(e, o);
        e = WG_FMA(WG_SET1(4.0f), y[2], y[0]);
        o = WG_MUL(c2, WG_FMA(WG_SET1(4.0f), y[3], y[1]));
        v[3] = WG_ADD(e, o);
        v[4] = WG_SUB(e, o);
        v[5] = y[3];
    }
}

/* Transformed gradient tiles [t0, t0 + tb) of the packed gy plane yq (TW*m
 * wide, Kp channels) into Y[pos][t][Kp]. */
static inline __attribute__((always_inline)) void wg_grad_m(const wg_conv *c, const float *yq, float *Y, int64_t t0,
                                                              int64_t tb, int m) {
    int64_t Kp = c->Kp, YW = c->TW * m;
    for (int64_t t = 0; t < tb; t++) {
        int64_t th = (t0 + t) / c->TW, tw = (t0 + t) % c->TW;
        const float *base = yq + (th * m * YW + tw * m) * Kp;
        for (int64_t k0 = 0; k0 < Kp; k0 += WG_L) {
            WG_VEC tmp[WG_A][4];
            for (int j = 0; j < m; j++) {   /* columns: tmp[.][j] = A dy[.][j] */
                WG_VEC d[4], v[6];
                for (int i = 0; i < m; i++) d[i] = WG_LD(base + (i * YW + j) * Kp + k0);
                wg_a(d, v, m);
                for (int i = 0; i < WG_A; i++) tmp[i][j] = v[i];
            }
            for (int i = 0; i < WG_A; i++) {   /* rows: Y[i][.] = tmp[i][.] A^T */
                WG_VEC v[6];
                wg_a(tmp[i], v, m);
                for (int j = 0; j < WG_A; j++) WG_ST(Y + (i * WG_A + j) * wg_vs(Kp) + t * Kp + k0, v[j]);
            }
        }
    }
}

/* S[rows x WG_L*nv] += A^T B over kc tiles: A[t][i] (t-stride lda), B[t][v] (t-stride ldb). */
static inline __attribute__((always_inline)) void wg_mk_t(int rows, int nv, const float *A, int64_t lda,
                                                            const float *B, int64_t ldb, float *S, int64_t lds,
                                                            int64_t kc) {
    WG_VEC acc[WG_MR][WG_NV];
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = WG_LD(S + i * lds + WG_L * v);
    for (int64_t t = 0; t < kc; t++) {
        WG_VEC b[WG_NV];
        for (int v = 0; v < nv; v++) b[v] = WG_LD(B + t * ldb + WG_L * v);
        for (int i = 0; i < rows; i++) {
            WG_VEC a = WG_BCAST(A + t * lda + i);
            for (int v = 0; v < nv; v++) acc[i][v] = WG_FMA(a, b[v], acc[i][v]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) WG_ST(S + i * lds + WG_L * v, acc[i][v]);
}
#define WG_MKT(R, NV) wg_mk_t(R, NV, a, Cp, b, Kp, o, Kp, tb)

/* S[pos] += V[pos]^T @ Y[pos] over the block's tb tiles. */
static void wg_gemms_t(const wg_conv *c, const float *V, const float *Y, float *S, int64_t tb) {
    int64_t Cp = c->Cp, Kp = c->Kp, nrb = (Cp + WG_MR - 1) / WG_MR;
    for (int pos = 0; pos < WG_P; pos++) {
        const float *Vp = V + pos * wg_vs(Cp), *Yp = Y + pos * wg_vs(Kp);
        float *Sp = S + (int64_t)pos * Cp * Kp;
        for (int64_t k0 = 0; k0 < Kp; k0 += WG_NV * WG_L) {
            const float *b = Yp + k0;
            int nv = Kp - k0 >= WG_NV * WG_L ? WG_NV : (int)((Kp - k0) / WG_L);
            for (int64_t ri = 0, c0 = 0, rows; ri < nrb; ri++, c0 += rows) {
                rows = Cp / nrb + (ri < Cp % nrb);
                const float *a = Vp + c0;
                float *o = Sp + c0 * Kp + k0;
                WG_RNV(WG_MKT)
            }
        }
    }
}

/* One chunk's images [n0, n1) summed into S (zeroed here); s: scratch. */
static void wg_wchunk(const wg_conv *c, const wg_conv *gv, int64_t n0, int64_t n1, float *S, float *s) {
    int64_t Cp = c->Cp, Kp = c->Kp;
    float *xp = s, *V = xp + c->PH * c->PW * Cp, *Y = V + WG_P * wg_vs(Cp), *yq = Y + WG_P * wg_vs(Kp);
    memset(S, 0, (size_t)(WG_P * Cp * Kp) * sizeof(float));
    int64_t nb = (c->T + WG_TB - 1) / WG_TB;
    for (int64_t n = n0; n < n1; n++) {
        wg_pack(c, n, xp);
        wg_pack(gv, n, yq);   /* gy channel-last, zero beyond OH x OW */
        for (int64_t bi = 0, t0 = 0; bi < nb; bi++) {
            int64_t tb = c->T / nb + (bi < c->T % nb);
            wg_input(c, xp, V, t0, tb);
            if (c->m == 2) wg_grad_m(c, yq, Y, t0, tb, 2);
            else wg_grad_m(c, yq, Y, t0, tb, 4);
            wg_gemms_t(c, V, Y, S, tb);
            t0 += tb;
        }
    }
}

/* dw[k][c] = G^T S[.][c][k] G, WG_L k per pass. */
static void wg_weight_out(const wg_conv *c, const float *S, float *dw, const int64_t ds[4]) {
    const wg_mats *mt = c->mt;
    int r = c->r;
    int64_t Cp = c->Cp, Kp = c->Kp;
    for (int64_t ci = 0; ci < c->C; ci++)
        for (int64_t k0 = 0; k0 < c->K; k0 += WG_L) {
            WG_VEC t[WG_A][5];
            for (int i = 0; i < WG_A; i++)   /* t = S G */
                for (int kw = 0; kw < r; kw++) {
                    WG_VEC acc = WG_ZERO();
                    for (int j = 0; j < WG_A; j++)
                        if (mt->G[j][kw] != 0.0f)
                            acc = WG_FMA(WG_SET1(mt->G[j][kw]),
                                                  WG_LD(S + ((int64_t)(i * WG_A + j) * Cp + ci) * Kp + k0), acc);
                    t[i][kw] = acc;
                }
            for (int kh = 0; kh < r; kh++)   /* dw = G^T t */
                for (int kw = 0; kw < r; kw++) {
                    WG_VEC acc = WG_ZERO();
                    for (int i = 0; i < WG_A; i++)
                        if (mt->G[i][kh] != 0.0f) acc = WG_FMA(WG_SET1(mt->G[i][kh]), t[i][kw], acc);
                    float v[WG_L];
                    WG_STU(v, acc);
                    for (int64_t l = 0; l < WG_L && k0 + l < c->K; l++)
                        dw[(k0 + l) * ds[0] + ci * ds[1] + kh * ds[2] + kw * ds[3]] = v[l];
                }
        }
}

/* CONV_BWD_WEIGHT: out dw (K, C, r, r) <- in[0] x (N, C, IH, IW), in[1] gy (N, K, OH, OW). */
static int wg_bwd_weight(const nb_kernel_args *a) {
    if (nb__avx2_winograd_off) return NB_KERNEL_DECLINE;
    const nb_tensor *x = a->in[0], *gy = a->in[1], *dw = a->out;
    if (!wg_f32_4d(x) || !wg_f32_4d(gy) || !wg_f32_4d(dw)) return NB_KERNEL_DECLINE;
    int64_t r = wg_kernel_size(a, dw);
    if (!r || nb_shape(dw)[0] != nb_shape(gy)[1] || nb_shape(dw)[1] != nb_shape(x)[1]) return NB_KERNEL_DECLINE;
    wg_conv c, gv;
    if (!wg_setup(&c, x, gy, r, (int64_t)a->scalar[2], (int64_t)a->scalar[3])) return NB_KERNEL_DECLINE;
    gv = c;   /* gy seen as the image to pack: K channels, OH x OW, tiled area, no padding */
    gv.x = c.y, gv.C = c.K, gv.Cp = c.Kp, gv.IH = c.OH, gv.IW = c.OW, gv.ph = gv.pw = 0;
    gv.PH = c.TH * c.m, gv.PW = c.TW * c.m;
    for (int i = 0; i < 4; i++) gv.xs[i] = c.ys[i];

    int64_t n = c.N, per = (n + WG_CHUNKS - 1) / WG_CHUNKS, chunks = (n + per - 1) / per;
    int64_t sn = WG_P * c.Cp * c.Kp, scr = wg_scratch(&c);
    int nt = nb__par_threads(n * 2 * r * r * c.C * c.K * c.OH * c.OW, 2000000);
    if (nt > chunks) nt = (int)chunks;
    /* The chunks' S are added into the total in chunk order, S_0 + S_1 + ...
     * whatever the thread count. With nt > 1 and all chunks' S within
     * nb__wg_sall_max bytes, each chunk has its own S, the chunks go to whichever
     * thread is free, and the sums run after, element by element in chunk
     * order (a thread on a slower core no longer holds the others up at each
     * chunk: 5x5, 32 -> 64 channels, 64 images at 2 threads, ~0.6 of one
     * thread's time before); otherwise each thread holds one chunk's S at a
     * time and adds it in an ordered region (nt + 1 buffers that stay in L2). */
    size_t sbytes = (size_t)sn * sizeof(float);
    if (nt > 1 && (size_t)chunks * sbytes <= nb__wg_sall_max) {
        float *all = nb__alloc((size_t)chunks * sbytes);
        if (!all) return NB_KERNEL_DECLINE;
        int fail = 0;
#pragma omp parallel num_threads(nb__par_team(nt)) reduction(max : fail)
        {
            float *s = nb__alloc((size_t)scr * sizeof(float));
            if (!s) fail = 1;
#pragma omp for schedule(dynamic, 1)
            for (int64_t k = 0; k < chunks; k++)
                if (s) wg_wchunk(&c, &gv, k * per, (k + 1) * per < n ? (k + 1) * per : n, all + k * sn, s);
            if (s) nb__free(s, (size_t)scr * sizeof(float));
#pragma omp for schedule(static)
            for (int64_t i0 = 0; i0 < sn; i0 += 1024) {   /* into chunk 0's S, in chunk order */
                int64_t i1 = i0 + 1024 < sn ? i0 + 1024 : sn;
                for (int64_t k = 1; k < chunks; k++)
                    for (int64_t i = i0; i < i1; i++) all[i] += all[k * sn + i];
            }
        }
        if (!fail) wg_weight_out(&c, all, nb_data(dw), nb_strides(dw));
        nb__free(all, (size_t)chunks * sbytes);
        return fail ? nb__err(NB_ENOMEM, "winograd conv_bwd_weight: out of memory for scratch") : 0;
    }
    float *S = nb__alloc(sbytes);
    if (!S) return NB_KERNEL_DECLINE;
    int fail = 0;
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1) reduction(max : fail)
    {
        size_t own = (size_t)(scr + sn) * sizeof(float);   /* scratch, then this thread's chunk S */
        float *s = nb__alloc(own);
        if (!s) fail = 1;
#pragma omp for ordered schedule(static, 1)
        for (int64_t k = 0; k < chunks; k++) {
            float *Sk = s ? s + scr : NULL;
            if (s) wg_wchunk(&c, &gv, k * per, (k + 1) * per < n ? (k + 1) * per : n, Sk, s);
#pragma omp ordered
            if (s) {
                if (k == 0) memcpy(S, Sk, sbytes);
                else
                    for (int64_t i = 0; i < sn; i++) S[i] += Sk[i];
            }
        }
        if (s) nb__free(s, own);
    }
    if (!fail) wg_weight_out(&c, S, nb_data(dw), nb_strides(dw));
    nb__free(S, sbytes);
    return fail ? nb__err(NB_ENOMEM, "winograd conv_bwd_weight: out of memory for scratch") : 0;
}

#endif /* NB_X86_WINOGRAD_COMMON_H */
