/* avx2_norm.c — AVX2+FMA kernels of layer_norm (F32): the forward (which
 * also writes each row's mean and rstd when asked), the backward (from the
 * saved statistics, and the fused form giving dx, dweight and dbias in one
 * pass) and layer_norm_param_backward; of rms_norm, the same row code
 * without the mean (x̂ = x / sqrt(mean(x^2) + eps), dx = rstd (gw - x̂
 * mean(gw x̂))); and of group_norm, whose groups are contiguous slices
 * with a per-channel weight (see there). Variants of ref_norm.c with its
 * arguments; the row sums, threading and streaming-store rules are those of
 * avx2_rows.c (shared through avx2_rows.h). The operand checks, layouts,
 * row statistics, thread splits and entry points are ../norm_common.h's
 * (shared with avx512_norm.c); this file gives its 8-lane row code
 * (ln_row, ln_bw_row, lnp_row, gn_slice).
 */
#define LN_LATE 8   /* forward rows written one row late (norm_common.h), 8 floats a step */
#include "avx2_rows.h"
#include "kernels/x86/norm_common.h"

/* ---- the late rows (norm_common.h's LN_LATE) ----
 * This was the layer_norm forward that served on AVX-512 CPUs too (until
 * avx512_norm.c's late rows, with whole-line streaming stores, beat it by
 * 11-19%; see there), and perf put 40% of its samples on ln_row's
 * streaming-store loop. Measured on [4096, 1024] on a 2-core AVX-512 Xeon,
 * call by call against the rows written at once (nb__ln_late), medians of
 * 31: forward 7.0-7.2 -> 7.9-8.0 GB/s at 1 thread, 12.6-13.2 -> 13.1-14.2 at
 * 2; forward + backward 8.2-8.4 -> 8.7-8.8 and 14.5-15.4 -> 14.7-15.8. */

/* y = x̂ w + b at o, 8 whole floats (w, b NULL: 1, 0): ln_row's streamed step. */
static inline __m256 ln_y8(const float *x, const float *w, const float *b, int64_t o, __m256 mv, __m256 rv) {
    __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + o), mv), rv);
    return _mm256_fmadd_ps(h, w ? _mm256_loadu_ps(w + o) : V1(1.0f), b ? _mm256_loadu_ps(b + o) : V1(0.0f));
}

/* The pending row's y at o (8 floats, streamed), as ln_row. */
static inline void ln_late_at(const ln_late_row *p, int64_t o, __m256 mv, __m256 rv) {
    _mm256_stream_ps(p->y + o, ln_y8(p->x, p->w, p->b, o, mv, rv));
}

static void ln_late_stream(const ln_late_row *p) {
    __m256 mv = V1(p->mean), rv = V1(p->rstd);
    for (int64_t o = 0; o < p->n; o += 8) ln_late_at(p, o, mv, rv);
}

static inline __m256 ss_late_at(const float *x, const float *pf, int64_t o, __m256 m, const ln_late_row *p,
                                __m256 pm, __m256 pr, bool full_, __m256i k_) {
    if (p) ln_late_at(p, o, pm, pr);
    return sq_dev(ld_pf(x, pf, o, full_, k_), m);
}

/* ss_span, the pending row (if any; n % 8 == 0, so no tail) streamed meanwhile. */
static double ss_span_late(const float *x, int64_t n, float mean, const float *pf) {
    const ln_late_row *p = ln_late.x ? &ln_late : NULL;
    __m256 m = V1(mean), pm = V1(ln_late.mean), pr = V1(ln_late.rstd);
    double s;
#define F_(o) ss_late_at(x, pf, (o), m, p, pm, pr, full_, k_)
    ROWSUM(n, F_, s);
#undef F_
    ln_late.x = NULL;
    return s;
}

/* ---- layer_norm / rms_norm rows (see norm_common.h) ---- */

/* y = x̂ w + b for one row. big: a big flat output (stream it when aligned). */
static void ln_row(const float *x, float *y, const float *w, const float *b, int64_t n, float mean, float rstd,
                   bool big) {
    __m256 mv = V1(mean), rv = V1(rstd);
    if (stream_ok(y, n, big)) {
        for (int64_t i = 0; i < n; i += 8) _mm256_stream_ps(y + i, ln_y8(x, w, b, i, mv, rv));
        _mm_sfence();
        return;
    }
    ROWS8(n, i, {
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + i), mv), rv);
        ST(y + i, _mm256_fmadd_ps(h, w ? LD(w + i) : V1(1.0f), b ? LD(b + i) : V1(0.0f)));
    });
}

/* gw = dy * w (dy without w) and gw * x̂ at o, for ln_bw_row. */
static inline __m256 ln_gw(const float *dy, const float *w, int64_t o, bool full_, __m256i k_) {
    return w ? _mm256_mul_ps(LD(dy + o), LD(w + o)) : LD(dy + o);
}

/* One 8-lane step of dx (see ln_bw_row), adding into the dweight/dbias sums. */
static inline __m256 ln_dx_at(const float *dy, const float *x, const float *w, float *aw, float *ab, int64_t j,
                              __m256 mv, __m256 rv, __m256 a, __m256 bq, bool full_, __m256i k_) {
    __m256 g = LD(dy + j), gw = w ? _mm256_mul_ps(g, LD(w + j)) : g;
    __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + j), mv), rv);
    if (aw) {
        ST(aw + j, _mm256_fmadd_ps(g, h, LD(aw + j)));
        ST(ab + j, _mm256_add_ps(g, LD(ab + j)));
    }
    return _mm256_mul_ps(rv, _mm256_fnmadd_ps(h, bq, _mm256_sub_ps(gw, a)));
}

/* dx = rstd * (gw - mean(gw) - x̂ mean(gw x̂)), gw = dy * w, from the row's
 * moments (r->mean, r->rstd): both sums in one pass (F32, emptied into double
 * every SUMBLK elements as ROWSUM), then dx and the acc sums; the row stays
 * in L1 throughout. */
static void ln_bw_row(const ln_bw *r) {
    const float *dy = r->dy, *x = r->x, *w = r->w;
    float *dx = r->dx, *aw = r->acc, *ab = r->acc ? r->acc + r->n : NULL;
    int64_t n = r->n;
    float mean = r->mean, rstd = r->rstd;
    __m256 mv = V1(mean), rv = V1(rstd);
    double sa = 0, sb = 0;
    int64_t i = 0;
    {
        const bool full_ = true;
        const __m256i k_ = _mm256_set1_epi32(-1);
        while (i + 16 <= n) {
            int64_t e = i + SUMBLK < n ? i + SUMBLK : n;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
            for (; i + 16 <= e; i += 16) {
                __m256 g0 = ln_gw(dy, w, i, full_, k_), g1 = ln_gw(dy, w, i + 8, full_, k_);
                __m256 h0 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), rv);
                __m256 h1 = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mv), rv);
                a0 = _mm256_add_ps(a0, g0);
                a1 = _mm256_add_ps(a1, g1);
                b0 = _mm256_fmadd_ps(g0, h0, b0);
                b1 = _mm256_fmadd_ps(g1, h1, b1);
            }
            sa += nb__hsum(_mm256_add_ps(a0, a1));
            sb += nb__hsum(_mm256_add_ps(b0, b1));
        }
    }
    ROWS8(n - i, j, {   /* the last < 16: masked lanes load 0, so gw is 0 there */
        __m256 gw = ln_gw(dy + i, w ? w + i : NULL, j, full_, k_);
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(x + i + j), mv), rv);
        sa += nb__hsum(gw);
        sb += nb__hsum(_mm256_mul_ps(gw, h));
    });
    __m256 a = V1(r->center ? (float)(sa / (double)n) : 0.0f), bq = V1((float)(sb / (double)n));
    /* dx at j (8 lanes, LD/ST masked in the tail), and the dweight/dbias
     * partial sums updated in the same pass */
#define LN_DX_AT(j) ln_dx_at(dy, x, w, aw, ab, (j), mv, rv, a, bq, full_, k_)
    if (stream_ok(dx, n, r->big)) {
        for (int64_t j = 0; j < n; j += 8) {
            _mm_prefetch((const char *)(x + n + j), _MM_HINT_T1);   /* the next row, spread over this one */
            _mm_prefetch((const char *)(dy + n + j), _MM_HINT_T1);
            const bool full_ = true;
            const __m256i k_ = _mm256_set1_epi32(-1);
            _mm256_stream_ps(dx + j, LN_DX_AT(j));
        }
        _mm_sfence();
        return;
    }
    ROWS8(n, j, { ST(dx + j, LN_DX_AT(j)); });
#undef LN_DX_AT
}

/* ---- layer_norm_param_backward (norm_common.h's lnp_run) ---- */
static void lnp_row(const float *xr, const float *gr, int64_t n, float mean, float rstd, float *aw, float *ab) {
    __m256 mv = V1(mean), rv = V1(rstd);
    ROWS8(n, i, {
        __m256 g = LD(gr + i);
        __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(xr + i), mv), rv);
        ST(aw + i, _mm256_fmadd_ps(g, h, LD(aw + i)));
        ST(ab + i, _mm256_add_ps(g, LD(ab + i)));
    });
}

/* ---- group_norm (norm_common.h's gn_run) ---- */
static void gn_slice(const float *x, const float *dy, float *y, const float *w, const float *b, int64_t cpg, int64_t S,
                     float mean, float rstd) {
    int64_t len = cpg * S;
    __m256 mv = V1(mean), rv = V1(rstd);
    if (!dy) {
        for (int64_t c = 0; c < cpg; c++) {
            __m256 wv = V1(w[c]), bv = V1(b[c]);
            const float *xc = x + c * S;
            float *yc = y + c * S;
            ROWS8(S, i, { ST(yc + i, _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(LD(xc + i), mv), rv), wv, bv)); });
        }
        return;
    }
    double sa = 0, sb = 0;
    for (int64_t c = 0; c < cpg; c++) {   /* sum gw and gw x̂, per channel in F32 blocks, into double */
        const float *xc = x + c * S, *gc = dy + c * S;
        __m256 wv = V1(w[c]);
        double ta, tb;
#define GN_GW(o) _mm256_mul_ps(LD(gc + (o)), wv)
#define GN_GWH(o) _mm256_mul_ps(GN_GW(o), _mm256_mul_ps(_mm256_sub_ps(LD(xc + (o)), mv), rv))
        ROWSUM(S, GN_GW, ta);
        ROWSUM(S, GN_GWH, tb);
#undef GN_GW
#undef GN_GWH
        sa += ta;
        sb += tb;
    }
    __m256 av = V1((float)(sa / (double)len)), bq = V1((float)(sb / (double)len));
    for (int64_t c = 0; c < cpg; c++) {
        const float *xc = x + c * S, *gc = dy + c * S;
        float *yc = y + c * S;
        __m256 wv = V1(w[c]);
        ROWS8(S, i, {
            __m256 gw = _mm256_mul_ps(LD(gc + i), wv);
            __m256 h = _mm256_mul_ps(_mm256_sub_ps(LD(xc + i), mv), rv);
            ST(yc + i, _mm256_mul_ps(rv, _mm256_fnmadd_ps(h, bq, _mm256_sub_ps(gw, av))));
        });
    }
}


void nb__avx2_norm_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_LAYER_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_layer_norm", 10, ln_forward},
        {NB_OP_LAYER_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_layer_norm_backward", 10,
         ln_backward},
        {NB_OP_LAYER_NORM_PARAM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_layer_norm_param_backward", 10,
         lnp_run},
        {NB_OP_RMS_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_rms_norm", 10, rms_forward},
        {NB_OP_GROUP_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_group_norm", 10, gn_forward},
        {NB_OP_GROUP_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_group_norm_backward", 10,
         gn_backward},
        {NB_OP_RMS_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_rms_norm_backward", 10, rms_backward},
    };
    NB__REGISTER_ALL(ks);
}
