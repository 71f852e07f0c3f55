/* avx2_winograd.c — stride-1 3x3 and 5x5 convolutions by Winograd's minimal
 * filtering: F(4x4, 3x3) and F(2x2, 5x5), both on 6x6 input tiles.
 *
 * Serves CONV2D, CONV_BWD_DATA, CONV_TRANSPOSE2D and CONV_BWD_WEIGHT (F32,
 * groups 1, stride 1, dilation 1, square r x r kernels, r = 3 or 5, 16+
 * channels in and out), unless AVX-512 is in force (wg_setup).
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
 * Layout and order. Per image: the padded input is copied channel-last
 * (xp[h][w][c], channels padded to 8), so every transform works on 8
 * channels per AVX2 register; tiles are done in blocks of WG_TB (input
 * transform into V[36][tb][Cp], 36 GEMMs into M[36][tb][Kp], output
 * transform into yp[h][w][Kp]), so a block's V and M stay in L2 with the
 * transformed kernel U[36][Cp][Kp]; yp is then written out in the caller's
 * layout. Threads split the images; one image is one thread's, every sum
 * has a fixed order, so the bits do not depend on the thread count (the
 * parallel backward executor's rule).
 *
 * Accuracy. The transforms scale values by up to 5x and sum them back, so
 * the rounding error is larger than direct summation's: measured against the
 * float64 ref kernel, max |error| / max |result| is 3e-6 (5x5, 32 -> 64
 * channels) to 7e-6 (3x3, 64 -> 64), against ~1e-7 for a direct float
 * convolution; the tests bound it at 2e-5 (test_winograd.c). A NaN or inf
 * input reaches every output of the tiles whose 6x6 input holds it, a few
 * more outputs than a direct convolution's window. NB_WINOGRAD=0 turns these
 * kernels off (oneDNN's direct convolutions serve).
 *
 * Backward-weights: see the comment above avx2_winograd_bwd_weight.
 */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define WG_A 6    /* tile side (m + r - 1), both variants */
#define WG_P 36   /* tile positions */
#define WG_TB 24  /* tiles per block, at most */

/* Floats between tile positions in V (c = Cp) and M (c = Kp): a block, plus
 * 64 bytes so that the 36 positions of one tile do not fall into the same
 * few L1 sets (24 * 64 floats apart, they alias every 4 KiB). */
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

/* v = B^T d for 8 lanes of 6 inputs (rows of B^T: 4 0 -5 0 1 0 / 0 -4 -4 1 1 0
 * / 0 4 -4 -1 1 0 / 0 -2 -1 2 1 0 / 0 2 -1 -2 1 0 / 0 4 0 -5 0 1). */
static inline void wg_bt(const __m256 d[6], __m256 v[6]) {
    const __m256 c2 = _mm256_set1_ps(2.0f), c4 = _mm256_set1_ps(4.0f), c5 = _mm256_set1_ps(5.0f);
    __m256 t1 = _mm256_fnmadd_ps(c4, d[2], d[4]);   /* d4 - 4 d2 */
    __m256 t2 = _mm256_fnmadd_ps(c4, d[1], d[3]);   /* d3 - 4 d1 */
    __m256 t3 = _mm256_sub_ps(d[4], d[2]);          /* d4 - d2 */
    __m256 t4 = _mm256_mul_ps(c2, _mm256_sub_ps(d[3], d[1]));   /* 2 (d3 - d1) */
    v[0] = _mm256_fmadd_ps(c4, d[0], _mm256_fnmadd_ps(c5, d[2], d[4]));
    v[1] = _mm256_add_ps(t1, t2);
    v[2] = _mm256_sub_ps(t1, t2);
    v[3] = _mm256_add_ps(t3, t4);
    v[4] = _mm256_sub_ps(t3, t4);
    v[5] = _mm256_fmadd_ps(c4, d[1], _mm256_fnmadd_ps(c5, d[3], d[5]));
}

/* y[0..m) = A^T d for 8 lanes (p = 0, 1, -1, 2, -2, inf). */
static inline __attribute__((always_inline)) void wg_at(const __m256 d[6], __m256 *y, int m) {
    __m256 s1 = _mm256_add_ps(d[1], d[2]), a1 = _mm256_sub_ps(d[1], d[2]);
    __m256 s2 = _mm256_add_ps(d[3], d[4]), a2 = _mm256_sub_ps(d[3], d[4]);
    y[0] = _mm256_add_ps(_mm256_add_ps(d[0], s1), s2);
    if (m == 2) {
        y[1] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(2.0f), a2, a1), d[5]);
    } else {
        y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), a2, a1);
        y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s2, s1);
        y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), a2, a1), d[5]);
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
static int64_t wg_scratch(const wg_conv *c) {   /* yp: one spare row of 8 columns for wg_unpack's last block */
    return c->PH * c->PW * c->Cp + WG_P * (wg_vs(c->Cp) + wg_vs(c->Kp)) + (c->TH * c->m * c->TW * c->m + 8) * c->Kp;
}

/* U[pos][c][k] = (G g_kc G^T)[pos], g_kc = w[k][c] (flip 0) or the adjoint's
 * w[c][k] turned 180 degrees (flip 1); zero in the padding. 8 k per pass. */
static void wg_kernel(const wg_conv *c, const float *w, const int64_t ws[4], bool flip, float *U, int nt) {
    const wg_mats *mt = c->mt;
    int r = c->r;
    int64_t Cp = c->Cp, Kp = c->Kp;
    (void)nt;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t ci = 0; ci < Cp; ci++) {
        for (int64_t k0 = 0; k0 < Kp; k0 += 8) {
            __m256 g[5][5], t[WG_A][5];
            for (int kh = 0; kh < r; kh++)
                for (int kw = 0; kw < r; kw++) {
                    float v[8];
                    for (int l = 0; l < 8; l++) {
                        int64_t k = k0 + l;
                        if (ci >= c->C || k >= c->K) {
                            v[l] = 0.0f;
                        } else if (!flip) {
                            v[l] = w[k * ws[0] + ci * ws[1] + kh * ws[2] + kw * ws[3]];
                        } else {   /* the adjoint's kernel: w is (C_in_of_adjoint = our C, K, r, r) */
                            v[l] = w[ci * ws[0] + k * ws[1] + (r - 1 - kh) * ws[2] + (r - 1 - kw) * ws[3]];
                        }
                    }
                    g[kh][kw] = _mm256_loadu_ps(v);
                }
            for (int i = 0; i < WG_A; i++)   /* t = G g */
                for (int kw = 0; kw < r; kw++) {
                    __m256 s = _mm256_setzero_ps();
                    for (int kh = 0; kh < r; kh++)
                        if (mt->G[i][kh] != 0.0f) s = _mm256_fmadd_ps(_mm256_set1_ps(mt->G[i][kh]), g[kh][kw], s);
                    t[i][kw] = s;
                }
            for (int i = 0; i < WG_A; i++)   /* U = t G^T */
                for (int j = 0; j < WG_A; j++) {
                    __m256 s = _mm256_setzero_ps();
                    for (int kw = 0; kw < r; kw++)
                        if (mt->G[j][kw] != 0.0f) s = _mm256_fmadd_ps(_mm256_set1_ps(mt->G[j][kw]), t[i][kw], s);
                    _mm256_store_ps(U + ((int64_t)(i * WG_A + j) * Cp + ci) * Kp + k0, s);
                }
        }
    }
}

/* C[rows x 8*nv] = A[rows x kc] @ B[kc x 8*nv]; lda, ldb, ldc in floats.
 * Always inlined with constant rows (1..6) and nv (1, 2). */
static inline __attribute__((always_inline)) void wg_mk(int rows, int nv, const float *A, int64_t lda,
                                                          const float *B, int64_t ldb, float *C, int64_t ldc,
                                                          int64_t kc) {
    __m256 acc[6][2];
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(B + k * ldb), b1 = nv > 1 ? _mm256_load_ps(B + k * ldb + 8) : b0;
        for (int i = 0; i < rows; i++) {
            __m256 a = _mm256_broadcast_ss(A + i * lda + k);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) _mm256_store_ps(C + i * ldc + 8 * v, acc[i][v]);
}

#define WG_MK_ROWS(NV)                                                           \
    switch (rows) {                                                              \
    case 6: wg_mk(6, NV, a, Cp, b, Kp, o, Kp, Cp); break;                        \
    case 5: wg_mk(5, NV, a, Cp, b, Kp, o, Kp, Cp); break;                        \
    case 4: wg_mk(4, NV, a, Cp, b, Kp, o, Kp, Cp); break;                        \
    case 3: wg_mk(3, NV, a, Cp, b, Kp, o, Kp, Cp); break;                        \
    case 2: wg_mk(2, NV, a, Cp, b, Kp, o, Kp, Cp); break;                        \
    default: wg_mk(1, NV, a, Cp, b, Kp, o, Kp, Cp); break;                       \
    }

/* M[pos] = V[pos] @ U[pos] for the tb tiles of a block. */
static void wg_gemms(const wg_conv *c, const float *V, float *M, int64_t tb) {
    int64_t Cp = c->Cp, Kp = c->Kp;
    for (int pos = 0; pos < WG_P; pos++) {
        const float *Vp = V + pos * wg_vs(Cp), *Up = c->U + (int64_t)pos * Cp * Kp;
        float *Mp = M + pos * wg_vs(Kp);
        for (int64_t k0 = 0; k0 < Kp; k0 += 16) {
            const float *b = Up + k0;
            int64_t nrb = (tb + 5) / 6;   /* row blocks of 6 and 5 rather than a last short one */
            for (int64_t ri = 0, t0 = 0, rows; ri < nrb; ri++, t0 += rows) {
                rows = tb / nrb + (ri < tb % nrb);
                const float *a = Vp + t0 * Cp;
                float *o = Mp + t0 * Kp + k0;
                if (Kp - k0 >= 16) {
                    WG_MK_ROWS(2)
                } else {
                    WG_MK_ROWS(1)
                }
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
        for (int64_t c0 = 0; c0 < Cp; c0 += 8) {
            __m256 tmp[WG_A][WG_A];
            for (int j = 0; j < WG_A; j++) {   /* columns: tmp[.][j] = B^T d[.][j] */
                __m256 d[6], v[6];
                for (int i = 0; i < WG_A; i++) d[i] = _mm256_load_ps(base + (i * PW + j) * Cp + c0);
                wg_bt(d, v);
                for (int i = 0; i < WG_A; i++) tmp[i][j] = v[i];
            }
            for (int i = 0; i < WG_A; i++) {   /* rows: V[i][.] = tmp[i][.] B */
                __m256 v[6];
                wg_bt(tmp[i], v);
                for (int j = 0; j < WG_A; j++) _mm256_store_ps(V + (i * WG_A + j) * wg_vs(Cp) + t * Cp + c0, v[j]);
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
        for (int64_t k0 = 0; k0 < Kp; k0 += 8) {
            __m256 tmp[4][WG_A];
            for (int j = 0; j < WG_A; j++) {
                __m256 d[6], o[4];
                for (int i = 0; i < WG_A; i++) d[i] = _mm256_load_ps(M + (i * WG_A + j) * wg_vs(Kp) + t * Kp + k0);
                wg_at(d, o, m);
                for (int i = 0; i < m; i++) tmp[i][j] = o[i];
            }
            __m256 bv = _mm256_setzero_ps();
            if (c->bias) {
                float b[8];
                for (int l = 0; l < 8; l++) b[l] = k0 + l < c->K ? c->bias[(k0 + l) * c->bs] : 0.0f;
                bv = _mm256_loadu_ps(b);
            }
            for (int i = 0; i < m; i++) {
                __m256 o[4];
                wg_at(tmp[i], o, m);
                for (int j = 0; j < m; j++) _mm256_store_ps(base + (i * YW + j) * Kp + k0, _mm256_add_ps(o[j], bv));
            }
        }
    }
}

static void wg_output(const wg_conv *c, const float *M, float *yp, int64_t t0, int64_t tb) {
    if (c->m == 2) wg_output_m(c, M, yp, t0, tb, 2);
    else wg_output_m(c, M, yp, t0, tb, 4);
}

/* r[0..8) <- its transpose (8x8 floats). */
static inline void wg_transpose8(__m256 r[8]) {
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

/* xp[h][w][ci] = x[n][ci][h - ph][w - pw]: zero outside the image and in the
 * channel padding; 8 channels x 8 columns per transpose where W is unit-stride. */
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
    for (int64_t c0 = 0; c0 < Cp; c0 += 8)
        for (int64_t h = 0; h < h1; h++) {
            float *dst = xp + (h + c->ph) * rowf + c->pw * Cp + c0;
            const float *src = xn + c0 * c->xs[1] + h * c->xs[2];
            for (int64_t w0 = 0; w0 < w1; w0 += 8) {
                int64_t nw = w1 - w0 < 8 ? w1 - w0 : 8;
                __m256 r[8];
                for (int l = 0; l < 8; l++) {
                    const float *sl = src + l * c->xs[1] + w0 * c->xs[3];
                    if (c0 + l >= c->C) {
                        r[l] = _mm256_setzero_ps();
                    } else if (c->xs[3] == 1 && nw == 8) {
                        r[l] = _mm256_loadu_ps(sl);
                    } else {   /* scalar: AVX2's masked loads and stores cost tens of cycles on Zen 3 */
                        float v[8] = {0};
                        for (int64_t j = 0; j < nw; j++) v[j] = sl[j * c->xs[3]];
                        r[l] = _mm256_loadu_ps(v);
                    }
                }
                wg_transpose8(r);
                for (int64_t j = 0; j < nw; j++) _mm256_store_ps(dst + (w0 + j) * Cp, r[j]);
            }
        }
}

/* y[n][k][oh][ow] = yp[oh][ow][k], 8 columns x 8 channels per transpose. */
static void wg_unpack(const wg_conv *c, int64_t n, const float *yp) {
    int64_t Kp = c->Kp, YW = c->TW * c->m;
    float *yn = c->y + n * c->ys[0];
    for (int64_t k0 = 0; k0 < c->K; k0 += 8) {
        int64_t nk = c->K - k0 < 8 ? c->K - k0 : 8;
        for (int64_t oh = 0; oh < c->OH; oh++) {
            const float *src = yp + oh * YW * Kp + k0;
            float *dst = yn + k0 * c->ys[1] + oh * c->ys[2];
            for (int64_t w0 = 0; w0 < c->OW; w0 += 8) {
                int64_t nw = c->OW - w0 < 8 ? c->OW - w0 : 8;
                __m256 r[8];
                for (int j = 0; j < 8; j++) r[j] = _mm256_load_ps(src + (w0 + j) * Kp);   /* yp is TW*m >= OW wide, */
                wg_transpose8(r);                                                          /* plus a spare tile */
                for (int64_t l = 0; l < nk; l++) {
                    float *dl = dst + l * c->ys[1] + w0 * c->ys[3];
                    if (c->ys[3] == 1 && nw == 8) {
                        _mm256_storeu_ps(dl, r[l]);
                    } else {
                        float v[8];
                        _mm256_storeu_ps(v, r[l]);
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

static int64_t wg_round8(int64_t v) { return (v + 7) / 8 * 8; }

static bool wg_f32_4d(const nb_tensor *t) { return t && nb_dtype_of(t) == NB_DTYPE_F32 && nb_ndim(t) == 4; }

/* 1: every call goes to the kernels below. Tests set it (oneDNN's suites);
 * NB_WINOGRAD=0 in the environment sets it at start-up, for direct
 * convolutions' rounding (see the top of this file). */
int nb__avx2_winograd_off = 0;

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
    /* With AVX-512 in force, oneDNN's AVX-512 convolutions serve: measured on
     * an AVX-512 Xeon (fwd+bwd, 1 thread, call-by-call A/B through
     * nb__avx2_conv_on_avx512), Winograd only ties them (LeNet conv2 0.99x,
     * the 3x3 of benchmarks/kernels 1.09x) at a larger rounding error.
     * NB_ISA=avx2 brings these back there. A CPU setting, not a thread count. */
    if (nb_isa_active() >= NB_ISA_AVX512 && !nb__avx2_conv_on_avx512) return false;
    const int64_t *xsh = nb_shape(x), *ysh = nb_shape(y);
    int64_t C = xsh[1], K = ysh[1], Cp = wg_round8(C), Kp = wg_round8(K);
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

static int avx2_winograd_conv(const nb_kernel_args *a) {
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
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(max : fail)
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
/* Bytes for every chunk's S at once (avx2_winograd_bwd_weight); tests set 0
 * to take the one-S-per-thread ordered path at any thread count. */
size_t nb__wg_sall_max = 32u << 20;

/* Y[0..6) = A y for 8 lanes of the m values y: Y_j = sum_i p_j^i y_i, Y_5 = y_{m-1}. */
static inline __attribute__((always_inline)) void wg_a(const __m256 *y, __m256 v[6], int m) {
    const __m256 c2 = _mm256_set1_ps(2.0f);
    __m256 e, o;   /* even and odd parts at p = 1 and p = 2 */
    v[0] = y[0];
    if (m == 2) {
        v[1] = _mm256_add_ps(y[0], y[1]);
        v[2] = _mm256_sub_ps(y[0], y[1]);
        o = _mm256_mul_ps(c2, y[1]);
        v[3] = _mm256_add_ps(y[0], o);
        v[4] = _mm256_sub_ps(y[0], o);
        v[5] = y[1];
    } else {
        e = _mm256_add_ps(y[0], y[2]), o = _mm256_add_ps(y[1], y[3]);
        v[1] = _mm256_add_ps(e, o);
        v[2] = _mm256_sub_ps(e, o);
        e = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), y[2], y[0]);
        o = _mm256_mul_ps(c2, _mm256_fmadd_ps(_mm256_set1_ps(4.0f), y[3], y[1]));
        v[3] = _mm256_add_ps(e, o);
        v[4] = _mm256_sub_ps(e, o);
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
        for (int64_t k0 = 0; k0 < Kp; k0 += 8) {
            __m256 tmp[WG_A][4];
            for (int j = 0; j < m; j++) {   /* columns: tmp[.][j] = A dy[.][j] */
                __m256 d[4], v[6];
                for (int i = 0; i < m; i++) d[i] = _mm256_load_ps(base + (i * YW + j) * Kp + k0);
                wg_a(d, v, m);
                for (int i = 0; i < WG_A; i++) tmp[i][j] = v[i];
            }
            for (int i = 0; i < WG_A; i++) {   /* rows: Y[i][.] = tmp[i][.] A^T */
                __m256 v[6];
                wg_a(tmp[i], v, m);
                for (int j = 0; j < WG_A; j++) _mm256_store_ps(Y + (i * WG_A + j) * wg_vs(Kp) + t * Kp + k0, v[j]);
            }
        }
    }
}

/* S[rows x 8*nv] += A^T B over kc tiles: A[t][i] (t-stride lda), B[t][v] (t-stride ldb). */
static inline __attribute__((always_inline)) void wg_mk_t(int rows, int nv, const float *A, int64_t lda,
                                                            const float *B, int64_t ldb, float *S, int64_t lds,
                                                            int64_t kc) {
    __m256 acc[6][2];
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm256_load_ps(S + i * lds + 8 * v);
    for (int64_t t = 0; t < kc; t++) {
        __m256 b0 = _mm256_load_ps(B + t * ldb), b1 = nv > 1 ? _mm256_load_ps(B + t * ldb + 8) : b0;
        for (int i = 0; i < rows; i++) {
            __m256 a = _mm256_broadcast_ss(A + t * lda + i);
            acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
            if (nv > 1) acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) _mm256_store_ps(S + i * lds + 8 * v, acc[i][v]);
}

#define WG_MKT_ROWS(NV)                                                          \
    switch (rows) {                                                              \
    case 6: wg_mk_t(6, NV, a, Cp, b, Kp, o, Kp, tb); break;                      \
    case 5: wg_mk_t(5, NV, a, Cp, b, Kp, o, Kp, tb); break;                      \
    case 4: wg_mk_t(4, NV, a, Cp, b, Kp, o, Kp, tb); break;                      \
    case 3: wg_mk_t(3, NV, a, Cp, b, Kp, o, Kp, tb); break;                      \
    case 2: wg_mk_t(2, NV, a, Cp, b, Kp, o, Kp, tb); break;                      \
    default: wg_mk_t(1, NV, a, Cp, b, Kp, o, Kp, tb); break;                     \
    }

/* S[pos] += V[pos]^T @ Y[pos] over the block's tb tiles. */
static void wg_gemms_t(const wg_conv *c, const float *V, const float *Y, float *S, int64_t tb) {
    int64_t Cp = c->Cp, Kp = c->Kp, nrb = (Cp + 5) / 6;
    for (int pos = 0; pos < WG_P; pos++) {
        const float *Vp = V + pos * wg_vs(Cp), *Yp = Y + pos * wg_vs(Kp);
        float *Sp = S + (int64_t)pos * Cp * Kp;
        for (int64_t k0 = 0; k0 < Kp; k0 += 16) {
            const float *b = Yp + k0;
            for (int64_t ri = 0, c0 = 0, rows; ri < nrb; ri++, c0 += rows) {
                rows = Cp / nrb + (ri < Cp % nrb);
                const float *a = Vp + c0;
                float *o = Sp + c0 * Kp + k0;
                if (Kp - k0 >= 16) {
                    WG_MKT_ROWS(2)
                } else {
                    WG_MKT_ROWS(1)
                }
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

/* dw[k][c] = G^T S[.][c][k] G, 8 k per pass. */
static void wg_weight_out(const wg_conv *c, const float *S, float *dw, const int64_t ds[4]) {
    const wg_mats *mt = c->mt;
    int r = c->r;
    int64_t Cp = c->Cp, Kp = c->Kp;
    for (int64_t ci = 0; ci < c->C; ci++)
        for (int64_t k0 = 0; k0 < c->K; k0 += 8) {
            __m256 t[WG_A][5];
            for (int i = 0; i < WG_A; i++)   /* t = S G */
                for (int kw = 0; kw < r; kw++) {
                    __m256 acc = _mm256_setzero_ps();
                    for (int j = 0; j < WG_A; j++)
                        if (mt->G[j][kw] != 0.0f)
                            acc = _mm256_fmadd_ps(_mm256_set1_ps(mt->G[j][kw]),
                                                  _mm256_load_ps(S + ((int64_t)(i * WG_A + j) * Cp + ci) * Kp + k0), acc);
                    t[i][kw] = acc;
                }
            for (int kh = 0; kh < r; kh++)   /* dw = G^T t */
                for (int kw = 0; kw < r; kw++) {
                    __m256 acc = _mm256_setzero_ps();
                    for (int i = 0; i < WG_A; i++)
                        if (mt->G[i][kh] != 0.0f) acc = _mm256_fmadd_ps(_mm256_set1_ps(mt->G[i][kh]), t[i][kw], acc);
                    float v[8];
                    _mm256_storeu_ps(v, acc);
                    for (int64_t l = 0; l < 8 && k0 + l < c->K; l++)
                        dw[(k0 + l) * ds[0] + ci * ds[1] + kh * ds[2] + kw * ds[3]] = v[l];
                }
        }
}

/* CONV_BWD_WEIGHT: out dw (K, C, r, r) <- in[0] x (N, C, IH, IW), in[1] gy (N, K, OH, OW). */
static int avx2_winograd_bwd_weight(const nb_kernel_args *a) {
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
#pragma omp parallel num_threads(nt) reduction(max : fail)
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
#pragma omp parallel num_threads(nt) if (nt > 1) reduction(max : fail)
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

void nb__avx2_winograd_register(void) {
    const char *e = getenv("NB_WINOGRAD");
    if (e && !strcmp(e, "0")) nb__avx2_winograd_off = 1;
    wg_matrices(&wg_m25, 2, 5);
    wg_matrices(&wg_m43, 4, 3);
    static const nb_kernel_desc ks[] = {
        {NB_OP_CONV2D, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv2d", 20, avx2_winograd_conv},
        {NB_OP_CONV_BWD_DATA, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv_bwd_data", 20, avx2_winograd_conv},
        {NB_OP_CONV_TRANSPOSE2D, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv_transpose2d", 20, avx2_winograd_conv},
        {NB_OP_CONV_BWD_WEIGHT, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_winograd_conv_bwd_weight", 20,
         avx2_winograd_bwd_weight},
    };
    NB__REGISTER_ALL(ks);
}
