/* conv_small_common.h — the ISA-neutral half of the direct convolutions for
 * few input channels (x86/avx2/avx2_conv_small.c,
 * x86/avx512/avx512_conv_small.c), included by each in its own library (so
 * compiled with that library's -m flags): the operand checks and geometry,
 * the weight and bias copies, the image split of the forward and the fixed
 * chunks of the weight gradient with their sums in chunk order, and the
 * kernels' entry points. Both twins thus serve, decline and split a call
 * alike, and their weight gradients do not depend on the thread count.
 *
 * Served: F32, stride 1, dilation 1, groups 1, 1-4 input channels, 8+
 * output channels, square kernels up to 7x7, x / w / y / gy of any strides
 * (the includer may decline a gy layout through cs_wserves).
 *
 * The includer defines before this header:
 *   CS_LANES        floats of one lane-wise partial sum (a vector)
 *   CS_SERVES()     whether its kernels serve now (ISA in force, test hooks)
 * and after it (prototypes below):
 *   cs_layout       the packed image's size (and any per-thread gy copy)
 *   cs_wserves      whether the weight gradient serves gy's layout
 *   cs_pack         image n of x into the packed scratch
 *   cs_image        the forward of one image from its packed scratch
 *   cs_wchunk       the weight gradient of a chunk of images, lane sums added;
 *                   and the bias gradient (true) where it takes it in the
 *                   same pass over gy (else cs_bchunk reads gy again)
 * It defines the entry points cs_fwd (CONV2D), cs_bwd_weight
 * (CONV_BWD_WEIGHT) and cs_bwd_weight_bias (CONV_BWD_WEIGHT_BIAS); the
 * includer registers them under its own names.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_CONV_SMALL_COMMON_H
#define NB_X86_CONV_SMALL_COMMON_H

#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

#define CS_MAXC 4
#define CS_MAXR 7
#define CS_CHUNKS 16   /* 32 within noise of 16 at 16 threads on a 16-core Xeon, 64 slower (1.1-1.25x) */

typedef struct cs_conv {
    int64_t N, C, K, IH, IW, OH, OW, r, ph, pw;
    int64_t PH, PW;      /* padded plane: OH + r - 1 rows; PW: columns of the includer's packed rows */
    int64_t xn;          /* floats of one image's packed scratch (cs_layout) */
    int64_t gn;          /* floats of a per-thread copy of one image's gy (0: read in place) */
    const float *x;
    int64_t xs[4];
    int64_t ys[4];       /* y (forward) or gy (backward-weights) */
} cs_conv;

static void cs_layout(cs_conv *c, bool bwd);
static bool cs_wserves(const cs_conv *c);
static void cs_pack(const cs_conv *c, int64_t n, float *xp);
static void cs_image(const cs_conv *c, int64_t n, const float *xp, const float *wp, const float *bias, float *y);
static bool cs_wchunk(const cs_conv *c, const float *gy, int64_t n0, int64_t n1, float *xp, float *acc,
                      float *part, float *blanes, float *bpart);

static bool cs_f32_4d(const nb_tensor *t) { return t && nb_dtype_of(t) == NB_DTYPE_F32 && nb_ndim(t) == 4; }

/* Fills c for x (N, C, IH, IW) and y (N, K, OH, OW) with an r x r kernel;
 * false where these kernels do not serve. Shapes only (never threads). */
static bool cs_setup(cs_conv *c, const nb_kernel_args *a, const nb_tensor *x, const nb_tensor *y, int64_t r,
                     bool bwd) {
    for (int i = 0; i < 2; i++)
        if (a->scalar[i] != 1.0 || a->scalar[4 + i] != 1.0) return false;
    if (a->scalar[6] != 1.0 || r < 1 || r > CS_MAXR) return false;
    const int64_t *xs = nb_shape(x), *ys = nb_shape(y);
    int64_t ph = (int64_t)a->scalar[2], pw = (int64_t)a->scalar[3];
    if (xs[0] != ys[0] || xs[0] == 0 || xs[1] < 1 || xs[1] > CS_MAXC || ys[1] < 8 || ph < 0 || pw < 0) return false;
    if (ys[2] != xs[2] + 2 * ph - r + 1 || ys[3] != xs[3] + 2 * pw - r + 1 || ys[2] < 1 || ys[3] < 1) return false;
    /* a channels-last y / gy (nb_to_channels_last): gathering its planes a
     * channel apart took the weight gradient of LeNet's conv1 from 1.3 ms to
     * 23; oneDNN's NHWC kernels serve it */
    if (nb_is_channels_last(y) && !nb_is_contiguous(y)) return false;
    memset(c, 0, sizeof *c);
    c->N = xs[0], c->C = xs[1], c->IH = xs[2], c->IW = xs[3], c->K = ys[1], c->OH = ys[2], c->OW = ys[3];
    c->r = r, c->ph = ph, c->pw = pw;
    c->PH = c->OH + r - 1;
    c->x = nb_data(x);
    for (int i = 0; i < 4; i++) c->xs[i] = nb_strides(x)[i], c->ys[i] = nb_strides(y)[i];
    cs_layout(c, bwd);
    return true;
}

/* w (K, C, r, r), any strides -> wp[k][c][kh][kw] contiguous. */
static float *cs_weights(const cs_conv *c, const nb_tensor *w, size_t *bytes) {
    int64_t r = c->r, taps = c->C * r * r;
    *bytes = (size_t)(c->K * taps) * sizeof(float);
    float *wp = nb__alloc(*bytes);
    if (!wp) return NULL;
    const float *src = nb_data(w);
    const int64_t *s = nb_strides(w);
    for (int64_t k = 0; k < c->K; k++)
        for (int64_t ci = 0; ci < c->C; ci++)
            for (int64_t kh = 0; kh < r; kh++)
                for (int64_t kw = 0; kw < r; kw++)
                    wp[k * taps + (ci * r + kh) * r + kw] = src[k * s[0] + ci * s[1] + kh * s[2] + kw * s[3]];
    return wp;
}

/* CONV2D: in {x, w[, b]}, scalar {stride, pad, dilation, groups} (ref_conv.c). */
static int cs_fwd(const nb_kernel_args *a) {
    if (!CS_SERVES()) return NB_KERNEL_DECLINE;
    const nb_tensor *x = a->in[0], *w = a->in[1], *b = a->nin > 2 ? a->in[2] : NULL, *y = a->out;
    if (!cs_f32_4d(x) || !cs_f32_4d(w) || !cs_f32_4d(y)) return NB_KERNEL_DECLINE;
    const int64_t *ws = nb_shape(w);
    cs_conv c;
    if (ws[2] != ws[3] || !cs_setup(&c, a, x, y, ws[2], false) || ws[0] != c.K || ws[1] != c.C)
        return NB_KERNEL_DECLINE;
    if (b && (nb_dtype_of(b) != NB_DTYPE_F32 || nb_ndim(b) != 1 || nb_shape(b)[0] != c.K)) return NB_KERNEL_DECLINE;
    size_t wbytes, bbytes = (size_t)c.K * sizeof(float);
    float *wp = cs_weights(&c, w, &wbytes), *bias = b ? nb__alloc(bbytes) : NULL;
    if (!wp || (b && !bias)) {
        if (wp) nb__free(wp, wbytes);
        return NB_KERNEL_DECLINE;
    }
    for (int64_t k = 0; b && k < c.K; k++) bias[k] = ((const float *)nb_data(b))[k * nb_strides(b)[0]];
    int nt = nb__par_threads(c.N * 2 * c.C * c.K * c.r * c.r * c.OH * c.OW, 2000000);
    if (nt > c.N) nt = (int)c.N;
    int fail = 0;
    float *yd = nb_data(y);
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1) reduction(max : fail)
    {
        float *xp = nb__alloc((size_t)c.xn * sizeof(float));
        if (!xp) fail = 1;
#pragma omp for schedule(dynamic, 1)   /* an image to whichever thread is free (same bits) */
        for (int64_t n = 0; n < c.N; n++)
            if (xp) {
                cs_pack(&c, n, xp);
                cs_image(&c, n, xp, wp, bias, yd);
            }
        if (xp) nb__free(xp, (size_t)c.xn * sizeof(float));
    }
    nb__free(wp, wbytes);
    if (bias) nb__free(bias, bbytes);
    return fail ? nb__err(NB_ENOMEM, "conv2d (few input channels): out of memory for scratch") : 0;
}

/* Per output channel k, the sum of gy's planes of images n0..n1 into
 * part[k] (+=): 32 lanes (two GCC vectors of 16: zmm here, ymm pairs in the
 * AVX2 library, the same arithmetic) over the images and then the
 * positions in order, position p into lane p mod 32, the lanes then added
 * in lane order. Run right after the chunk's weight gradient, while its gy
 * is still in L2. lanes: scratch of 32 K floats. */
typedef float cs_v16 __attribute__((vector_size(64)));
static void cs_bchunk(const cs_conv *c, const float *gy, int64_t n0, int64_t n1, float *lanes, float *part) {
    int64_t P = c->OH * c->OW, P32 = P / 32 * 32;
    bool flat = c->ys[3] == 1 && c->ys[2] == c->OW;
    memset(lanes, 0, (size_t)(32 * c->K) * sizeof(float));
    for (int64_t n = n0; n < n1; n++)
        for (int64_t k = 0; k < c->K; k++) {
            const float *g = gy + n * c->ys[0] + k * c->ys[1];
            float *l = lanes + 32 * k;
            if (flat) {
                cs_v16 a0, a1, v;
                memcpy(&a0, l, sizeof a0), memcpy(&a1, l + 16, sizeof a1);
                for (int64_t p = 0; p < P32; p += 32) {
                    memcpy(&v, g + p, sizeof v), a0 += v;
                    memcpy(&v, g + p + 16, sizeof v), a1 += v;
                }
                memcpy(l, &a0, sizeof a0), memcpy(l + 16, &a1, sizeof a1);
                for (int64_t p = P32; p < P; p++) l[p - P32] += g[p];
            } else {
                for (int64_t h = 0, p = 0; h < c->OH; h++)
                    for (int64_t w = 0; w < c->OW; w++, p++) l[p % 32] += g[h * c->ys[2] + w * c->ys[3]];
            }
        }
    for (int64_t k = 0; k < c->K; k++) {
        float s = lanes[32 * k];
        for (int j = 1; j < 32; j++) s += lanes[32 * k + j];
        part[k] += s;
    }
}

/* The weight gradient into dw[k][c][kh][kw] at strides ds, and with db
 * (not NULL) the bias gradient into db[k * sdb]. The images are cut into at
 * most CS_CHUNKS chunks fixed by the batch; each chunk's sums (cs_wchunk,
 * lanes added in lane order; cs_bchunk) are added in chunk order. */
static int cs_wgrad(const nb_kernel_args *a, const nb_tensor *x, const nb_tensor *gy, int64_t r, float *dw,
                    const int64_t *ds, float *db, int64_t sdb) {
    cs_conv c;
    if (!cs_setup(&c, a, x, gy, r, true) || !cs_wserves(&c)) return NB_KERNEL_DECLINE;
    int64_t n = c.N, per = (n + CS_CHUNKS - 1) / CS_CHUNKS, chunks = (n + per - 1) / per;
    int64_t taps = c.C * c.r * c.r, pn = c.K * taps, bn = db ? c.K : 0;
    size_t pbytes = (size_t)(chunks * (pn + bn)) * sizeof(float);
    float *part = nb__alloc(pbytes), *bpart = part + chunks * pn;
    if (!part) return NB_KERNEL_DECLINE;
    if (db) memset(bpart, 0, (size_t)(chunks * bn) * sizeof(float));
    int nt = nb__par_threads(n * 2 * c.C * c.K * c.r * c.r * c.OH * c.OW, 2000000);
    if (nt > chunks) nt = (int)chunks;
    int fail = 0;
    const float *g = nb_data(gy);
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1) reduction(max : fail)
    {
        /* xp, the lane sums, gy's copy, the bias lanes (32 K floats: cs_bchunk's, or cs_wchunk's) */
        size_t sb = (size_t)(c.xn + pn * CS_LANES + c.gn + 32 * bn) * sizeof(float);
        float *xp = nb__alloc(sb);
        if (!xp) fail = 1;
#pragma omp for schedule(dynamic, 1)   /* a chunk to whichever thread is free: each has its own sums */
        for (int64_t k = 0; k < chunks; k++) {
            int64_t n0 = k * per, n1 = (k + 1) * per < n ? (k + 1) * per : n;
            float *bl = xp ? xp + c.xn + pn * CS_LANES + c.gn : NULL;
            if (xp && !cs_wchunk(&c, g, n0, n1, xp, xp + c.xn, part + k * pn, bl, db ? bpart + k * bn : NULL) && db)
                cs_bchunk(&c, g, n0, n1, bl, bpart + k * bn);
        }
        if (xp) nb__free(xp, sb);
    }
    if (!fail) {   /* chunks in chunk order, into dw's layout */
        for (int64_t k = 0; k < c.K; k++) {
            for (int64_t ci = 0; ci < c.C; ci++)
                for (int64_t kh = 0; kh < c.r; kh++)
                    for (int64_t kw = 0; kw < c.r; kw++) {
                        int64_t i = k * taps + (ci * c.r + kh) * c.r + kw;
                        float acc = part[i];
                        for (int64_t q = 1; q < chunks; q++) acc += part[q * pn + i];
                        dw[k * ds[0] + ci * ds[1] + kh * ds[2] + kw * ds[3]] = acc;
                    }
            if (db) {
                float acc = bpart[k];
                for (int64_t q = 1; q < chunks; q++) acc += bpart[q * bn + k];
                db[k * sdb] = acc;
            }
        }
    }
    nb__free(part, pbytes);
    return fail ? nb__err(NB_ENOMEM, "conv_bwd_weight (few input channels): out of memory for scratch") : 0;
}

/* CONV_BWD_WEIGHT: out dw (K, C, r, r), in {x, gy}. */
static int cs_bwd_weight(const nb_kernel_args *a) {
    if (!CS_SERVES()) return NB_KERNEL_DECLINE;
    const nb_tensor *x = a->in[0], *gy = a->in[1], *dw = a->out;
    if (!cs_f32_4d(x) || !cs_f32_4d(gy) || !cs_f32_4d(dw)) return NB_KERNEL_DECLINE;
    const int64_t *ws = nb_shape(dw);
    if (ws[2] != ws[3] || ws[0] != nb_shape(gy)[1] || ws[1] != nb_shape(x)[1]) return NB_KERNEL_DECLINE;
    return cs_wgrad(a, x, gy, ws[2], nb_data(dw), nb_strides(dw), NULL, 0);
}

/* CONV_BWD_WEIGHT_BIAS: out (K, C r r + 1) (registry.h), in {x, gy},
 * scalar[7] = r: the weight gradient and, from the same chunks of gy while
 * they are in L2, the bias gradient (a separate CONV_BWD_BIAS read LeNet's
 * 6.4 MB conv1 gradient again from memory: 0.6-0.8 ms, a quarter of that
 * conv's fwd+bwd). */
static int cs_bwd_weight_bias(const nb_kernel_args *a) {
    if (!CS_SERVES()) return NB_KERNEL_DECLINE;
    const nb_tensor *x = a->in[0], *gy = a->in[1], *o = a->out;
    if (!cs_f32_4d(x) || !cs_f32_4d(gy) || nb_dtype_of(o) != NB_DTYPE_F32 || nb_ndim(o) != 2) return NB_KERNEL_DECLINE;
    int64_t r = (int64_t)a->scalar[7], C = nb_shape(x)[1], s0 = nb_strides(o)[0], s1 = nb_strides(o)[1];
    if (r < 1 || nb_shape(o)[0] != nb_shape(gy)[1] || nb_shape(o)[1] != C * r * r + 1) return NB_KERNEL_DECLINE;
    float *d = nb_data(o);
    const int64_t ds[4] = {s0, r * r * s1, r * s1, s1};
    return cs_wgrad(a, x, gy, r, d, ds, d + C * r * r * s1, s0);
}

/* The lanes of each of cnt lane-wise sums (acc[i][CS_LANES]) added in lane order into part[i]. */
static void cs_lane_sums(const float *acc, int64_t cnt, float *part) {
    for (int64_t i = 0; i < cnt; i++) {
        float v = acc[i * CS_LANES];
        for (int l = 1; l < CS_LANES; l++) v += acc[i * CS_LANES + l];
        part[i] = v;
    }
}

#endif
