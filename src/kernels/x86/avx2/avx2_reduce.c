/* avx2_reduce.c — AVX2+FMA kernels of the F32 reductions: sum, amax/amin,
 * argmax/argmin, var/std, logsumexp, vector_norm, and the backward of max / min (over dims, along a
 * dim; see their section) (variants of ref_reduce.c and ref_reduce_full.c,
 * same arguments: in[0] (d0..dn) -> out of the same rank, size 1 on reduced
 * dims; scalar[0] the correction of var/std).
 *
 * Layouts served: inner (a contiguous row per kept index) and outer (the
 * rows of a stride-1 kept block folded into vector accumulators), read by
 * ../reduce_driver.h, which this file shares with its AVX-512 twin (the
 * layout analysis, the per-op driver, the thread split); this file has the
 * vector code on a span and on the outer layout's column blocks. Anything
 * else declines to ref. logsumexp serves the inner layout only (rows, or
 * one long row in blocks whose (max, sum) partials are combined in block
 * order); so does vector_norm, of order 1, 2
 * or INFINITY (scalar[0]; others decline): sum |x| and sum x^2 in double
 * (x^2 of a float is exact there: no overflow, no scaling needed; ref scales
 * by max |x| instead, so the results agree within a rounding), max |x|
 * exact; a NaN anywhere gives NaN, an inf inf.
 *
 * Precision: sums (sum, the mean and the squared deviations of var) are
 * accumulated in double, as ref does, so the F32 result is within about one
 * rounding of ref's (the order differs: error <= n * 2^-53 * sum|x| before
 * the final rounding). max/min and the arg forms are exact. NaN: amax/amin
 * give NaN when a slice holds one; argmax/argmin return the first NaN, else
 * the first extreme, as ref and PyTorch. logsumexp: F32 exps (1 ULP) summed
 * in F32 blocks of 16 terms a lane, emptied into double (sum within ~1.2e-6
 * relative, so the log within ~2e-6 absolute); NaN, +-inf as ref.
 *
 * Threads (reduce_driver.h): rows, or column blocks of the outer layout,
 * split among threads; one long row cut into blocks that depend only on its
 * length: results never depend on the thread count.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "../reduce_driver.h"
#include "vmath.h"

/* ---- a double-precision helper (vmath.h has the F32 ones) ---- */

static inline double hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* ---- spans: one contiguous run of floats ---- */

/* 4 floats at p, |x| when ab (vector_norm's p = 1 and INFINITY read |x|). */
static inline __m128 ld4(const float *p, bool ab) {
    __m128 x = _mm_loadu_ps(p);
    return ab ? _mm_andnot_ps(_mm_set1_ps(-0.0f), x) : x;
}
static inline __m256 ld8(const float *p, bool ab) { return ab ? nb__v_abs(_mm256_loadu_ps(p)) : _mm256_loadu_ps(p); }

/* sum of p[0..n) (ab: of |p[i]|) in double. */
static double sum_span(const float *p, int64_t n, bool ab) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(ld4(p + i, ab)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(ld4(p + i + 4, ab)));
        a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(ld4(p + i + 8, ab)));
        a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(ld4(p + i + 12, ab)));
    }
    for (; i + 4 <= n; i += 4) a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(ld4(p + i, ab)));
    double s = hsum_pd(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    for (; i < n; i++) s += ab ? fabsf(p[i]) : p[i];
    return s;
}

/* sum of (p[i] - mean)^2 in double. */
static double ss_span(const float *p, int64_t n, double mean) {
    __m256d m = _mm256_set1_pd(mean), a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i)), m);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i + 4)), m);
        __m256d d2 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i + 8)), m);
        __m256d d3 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i + 12)), m);
        a0 = _mm256_fmadd_pd(d0, d0, a0);
        a1 = _mm256_fmadd_pd(d1, d1, a1);
        a2 = _mm256_fmadd_pd(d2, d2, a2);
        a3 = _mm256_fmadd_pd(d3, d3, a3);
    }
    for (; i + 4 <= n; i += 4) {
        __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p + i)), m);
        a0 = _mm256_fmadd_pd(d, d, a0);
    }
    double s = hsum_pd(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    for (; i < n; i++) s += ((double)p[i] - mean) * ((double)p[i] - mean);
    return s;
}

/* sum of e^(p[i] - m) for logsumexp: F32 exps (vmath.h, 1 ULP) summed in
 * four 8-lane F32 accumulators that are emptied into a double every 512
 * elements (16 terms per lane), so the relative error of the sum stays
 * below about 1.2e-6 whatever n is. */
#define LSE_BLK 512
static double sumexp_span(const float *p, int64_t n, float m) {
    __m256 mv = _mm256_set1_ps(m);
    double s = 0;
    int64_t i = 0;
    while (i + 32 <= n) {
        int64_t e = i + LSE_BLK < n ? i + LSE_BLK : n;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 32 <= e; i += 32) {
            a0 = _mm256_add_ps(a0, nb__v_exp(_mm256_sub_ps(_mm256_loadu_ps(p + i), mv)));
            a1 = _mm256_add_ps(a1, nb__v_exp(_mm256_sub_ps(_mm256_loadu_ps(p + i + 8), mv)));
            a2 = _mm256_add_ps(a2, nb__v_exp(_mm256_sub_ps(_mm256_loadu_ps(p + i + 16), mv)));
            a3 = _mm256_add_ps(a3, nb__v_exp(_mm256_sub_ps(_mm256_loadu_ps(p + i + 24), mv)));
        }
        s += nb__hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
    __m256 t = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) t = _mm256_add_ps(t, nb__v_exp(_mm256_sub_ps(_mm256_loadu_ps(p + i), mv)));
    if (i < n) {   /* masked-off lanes zeroed after the exp */
        __m256i k = nb__tail_mask((int)(n - i));
        __m256 v = nb__v_exp(_mm256_sub_ps(_mm256_maskload_ps(p + i, k), mv));
        t = _mm256_add_ps(t, _mm256_and_ps(v, _mm256_castsi256_ps(k)));
    }
    return s + nb__hsum(t);
}

/* One step of a NaN-sticky max (mn: min): a NaN in x or acc stays. */
static inline __m256 ext_step(__m256 acc, __m256 x, bool mn) {
    __m256 e = mn ? _mm256_min_ps(x, acc) : _mm256_max_ps(x, acc);   /* acc when either is NaN */
    return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* max (mn: min) of p[0..n) (ab: of |p[i]|); NaN when any is; -inf (inf) when n is 0. */
static float ext_span(const float *p, int64_t n, bool mn, bool ab) {
    __m256 a0 = _mm256_set1_ps(mn ? INFINITY : -INFINITY), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = ext_step(a0, ld8(p + i, ab), mn);
        a1 = ext_step(a1, ld8(p + i + 8, ab), mn);
        a2 = ext_step(a2, ld8(p + i + 16, ab), mn);
        a3 = ext_step(a3, ld8(p + i + 24, ab), mn);
    }
    for (; i + 8 <= n; i += 8) a0 = ext_step(a0, ld8(p + i, ab), mn);
    if (i < n) {   /* masked-off lanes load 0: replace them by the identity */
        __m256i k = nb__tail_mask((int)(n - i));
        __m256 t = _mm256_maskload_ps(p + i, k);
        __m256 x = _mm256_blendv_ps(_mm256_set1_ps(mn ? INFINITY : -INFINITY), ab ? nb__v_abs(t) : t,
                                    _mm256_castsi256_ps(k));
        a0 = ext_step(a0, x, mn);
    }
    a0 = ext_step(ext_step(a0, a1, mn), ext_step(a2, a3, mn), mn);
    float v[8];
    _mm256_storeu_ps(v, a0);
    return ext_lanes(v, 8, mn);
}

/* Index of the first element of p[0..n) equal to v, or of the first NaN when
 * v is NaN; n when none (cannot happen for v from ext_span). */
static int64_t find_span(const float *p, int64_t n, float v) {
    bool nan = isnan(v);
    __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(p + i);
        int m = _mm256_movemask_ps(nan ? _mm256_cmp_ps(x, x, _CMP_UNORD_Q) : _mm256_cmp_ps(x, vv, _CMP_EQ_OQ));
        if (m) return i + __builtin_ctz((unsigned)m);
    }
    for (; i < n; i++)
        if (nan ? isnan(p[i]) : p[i] == v) return i;
    return n;
}

/* ---- the outer layout (reduce_driver.h has the rest) ---- */

/* Outer layout, a block of 32 columns kept in registers while every row
 * streams by (an accumulator array would be loaded and stored once per row).
 * Sums of the columns in double: */
static void cols32_sum(const float *p0, int64_t R, int64_t rs, double *acc, bool first) {
    __m256d a[8];
    for (int j = 0; j < 8; j++) a[j] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(acc + 4 * j);
    for (int64_t r = 0; r < R; r++)
        for (int j = 0; j < 8; j++) a[j] = _mm256_add_pd(a[j], _mm256_cvtps_pd(_mm_loadu_ps(p0 + r * rs + 4 * j)));
    for (int j = 0; j < 8; j++) _mm256_storeu_pd(acc + 4 * j, a[j]);
}

/* ... sums of squared deviations from mean[32]: */
static void cols32_ss(const float *p0, int64_t R, int64_t rs, const double *mean, double *ss, bool first) {
    __m256d a[8];
    for (int j = 0; j < 8; j++) a[j] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(ss + 4 * j);
    for (int64_t r = 0; r < R; r++)
        for (int j = 0; j < 8; j++) {
            __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(p0 + r * rs + 4 * j)), _mm256_loadu_pd(mean + 4 * j));
            a[j] = _mm256_fmadd_pd(d, d, a[j]);
        }
    for (int j = 0; j < 8; j++) _mm256_storeu_pd(ss + 4 * j, a[j]);
}

/* One row step of argmax (mn: argmin) on 8 columns: take x where it beats b,
 * or is the first NaN (as ref's scalar loop). */
static inline void arg_step(__m256 *b, __m256i *id, __m256 x, __m256i rv, bool mn) {
    __m256 beat = mn ? _mm256_cmp_ps(x, *b, _CMP_LT_OQ) : _mm256_cmp_ps(x, *b, _CMP_GT_OQ);
    __m256 xnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q), bnan = _mm256_cmp_ps(*b, *b, _CMP_UNORD_Q);
    __m256 take = _mm256_or_ps(beat, _mm256_andnot_ps(bnan, xnan));
    *b = _mm256_blendv_ps(*b, x, take);
    *id = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(*id), _mm256_castsi256_ps(rv), take));
}

/* ... extremes (and their row indices when arg) of the columns, R >= 1: */
static void cols32_ext(const float *p0, int64_t r0, int64_t r1, int64_t rs, bool mn, bool arg, float *best,
                       int32_t *idx) {
    __m256 b[4];
    __m256i id[4];
    for (int j = 0; j < 4; j++) {   /* rows [r0, r1): from row 0, or on from best / idx */
        b[j] = _mm256_loadu_ps(r0 ? best + 8 * j : p0 + 8 * j);
        id[j] = r0 ? _mm256_loadu_si256((const __m256i *)(idx + 8 * j)) : _mm256_setzero_si256();
    }
    for (int64_t r = r0 ? r0 : 1; r < r1; r++) {
        __m256i rv = _mm256_set1_epi32((int32_t)r);
        for (int j = 0; j < 4; j++) {
            __m256 x = _mm256_loadu_ps(p0 + r * rs + 8 * j);
            if (arg) arg_step(&b[j], &id[j], x, rv, mn);
            else b[j] = ext_step(b[j], x, mn);
        }
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(best + 8 * j, b[j]);
        _mm256_storeu_si256((__m256i *)(idx + 8 * j), id[j]);
    }
}

/* The outer layout's w columns (reduce_driver.h's outer_block): blocks of
 * 32 in registers, the last w % 32 one by one. */
/* The 32-column blocks go OUT_RB rows at a time across all of them (their
 * accumulators stored and reloaded in between, exactly), so each row's
 * columns are read in one contiguous run: the same bits, as the AVX-512
 * twin (avx512_reduce.c, where the measurements are). */
#define OUT_RB 16

static void outer_sums(const float *p0, int64_t R, int64_t rs, int64_t w, double *acc) {
    int64_t c, c32 = w / 32 * 32;
    for (int64_t r0 = 0; r0 < R; r0 += OUT_RB)
        for (c = 0; c < c32; c += 32) cols32_sum(p0 + r0 * rs + c, R - r0 < OUT_RB ? R - r0 : OUT_RB, rs, acc + c, r0 == 0);
    for (c = c32; c < w; c++) acc[c] = 0;
    for (int64_t r = 0; r < R && c32 < w; r++)
        for (c = c32; c < w; c++) acc[c] += p0[r * rs + c];
}

static void outer_ss(const float *p0, int64_t R, int64_t rs, int64_t w, const double *mean, double *ss) {
    int64_t c, c32 = w / 32 * 32;
    for (int64_t r0 = 0; r0 < R; r0 += OUT_RB)
        for (c = 0; c < c32; c += 32)
            cols32_ss(p0 + r0 * rs + c, R - r0 < OUT_RB ? R - r0 : OUT_RB, rs, mean + c, ss + c, r0 == 0);
    for (c = c32; c < w; c++) ss[c] = 0;
    for (int64_t r = 0; r < R && c32 < w; r++)
        for (c = c32; c < w; c++) ss[c] += ((double)p0[r * rs + c] - mean[c]) * ((double)p0[r * rs + c] - mean[c]);
}

static void outer_ext(const float *p0, int64_t R, int64_t rs, int64_t w, bool mn, bool arg, float *best,
                      int32_t *idx) {
    int64_t c, c32 = w / 32 * 32;
    for (int64_t r0 = 0; r0 < R; r0 += OUT_RB)   /* as outer_sums */
        for (c = 0; c < c32; c += 32) cols32_ext(p0 + c, r0, R - r0 < OUT_RB ? R : r0 + OUT_RB, rs, mn, arg, best + c, idx + c);
    for (c = c32; c < w; c++) {
        best[c] = p0[c];
        idx[c] = 0;
    }
    for (int64_t r = 1; r < R && c32 < w; r++)
        for (c = c32; c < w; c++) {
            float x = p0[r * rs + c];
            bool take = !isnan(best[c]) && (isnan(x) || (mn ? x < best[c] : x > best[c]));
            if (take) best[c] = x, idx[c] = (int32_t)r;
        }
}

/* ---- the backward of max / min (AMAX_BACKWARD: reduce_driver.h, with
 * the row below) and of max / min along a dim (MAX_DIM_BACKWARD), reduced
 * dims contiguous (the inner layout of rgeo, with out laid out as x) ----
 * MAX_DIM_BACKWARD: in[0] v (reduced shape, any strides: the op may pass g
 * itself), in[1] the I64 index (reduced, contiguous): out's slice is 0 but
 * v at the index; an index outside the slice is NB_ERANGE before anything
 * is written. Slices are split over threads. */

static void amax_bw_row(float *o, const float *x, int64_t n, float r) {
    __m256 rv = _mm256_set1_ps(r);
    int64_t c = 0, i = 0;
    for (; i + 8 <= n; i += 8)
        c += __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), rv, _CMP_EQ_OQ)));
    for (; i < n; i++) c += x[i] == r;
    if (c == 0) {
        for (i = 0; i < n; i++) o[i] = NAN;
        return;
    }
    __m256 w = _mm256_set1_ps((float)(1.0 / (double)c));
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i, _mm256_and_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), rv, _CMP_EQ_OQ), w));
    for (; i < n; i++) o[i] = x[i] == r ? (float)(1.0 / (double)c) : 0.0f;
}

static int k_max_dim_backward(const nb_kernel_args *a) {
    const nb_tensor *v = a->in[0], *ix = a->nin > 1 ? a->in[1] : NULL;
    nb_tensor *out = a->out;
    rgeo g;
    if (!ix || ix->dtype != NB_DTYPE_I64 || v->dtype != NB_DTYPE_F32 || !nb_is_contiguous(out) ||
        !nb__same_shape(v, ix) || !rgeo_init(&g, out, ix) || g.kind != RG_INNER || out->numel == 0)
        return NB_KERNEL_DECLINE;
    const int64_t *ib = nb_data(ix);
    for (int64_t k = 0; k < g.nk1; k++)
        if (ib[k] < 0 || ib[k] >= g.rlen)
            return nb__err(NB_ERANGE, "%s: index %lld out of range for a slice of %lld", nb_op_name(a->op),
                           (long long)ib[k], (long long)g.rlen);
    const float *vb = nb_data(v);
    float *ob = nb_data(out);
    bool vflat = nb_is_contiguous(v);
    int nt = nb__par_threads(out->numel, NB_GRAIN_ELEMENTWISE);
    if (nt > g.nk1) nt = (int)g.nk1;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t k = 0; k < g.nk1; k++) {
        float *o = ob + kept_off(&g, k);
        memset(o, 0, (size_t)g.rlen * sizeof(float));
        o[ib[k]] = vb[vflat ? k : nb__row_offset(v, -1, k)];
    }
    return 0;
}

void nb__avx2_reduce_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SUM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_sum", 10, k_sum},
        {NB_OP_AMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_amax", 10, k_amax},
        {NB_OP_AMIN, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_amin", 10, k_amin},
        {NB_OP_ARGMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_argmax", 10, k_argmax},
        {NB_OP_ARGMIN, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_argmin", 10, k_argmin},
        {NB_OP_VAR, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_var", 10, k_var},
        {NB_OP_STD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_std", 10, k_std},
        {NB_OP_LOGSUMEXP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_logsumexp", 10, k_logsumexp},
        {NB_OP_VECTOR_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_vector_norm", 10, k_vector_norm},
        {NB_OP_AMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_amax_backward", 10, k_amax_backward},
        {NB_OP_MAX_DIM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_max_dim_backward", 10, k_max_dim_backward},
    };
    NB__REGISTER_ALL(ks);
}
