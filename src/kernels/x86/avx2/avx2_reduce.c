/* avx2_reduce.c — AVX2+FMA kernels of the F32 reductions: sum, amax/amin,
 * argmax/argmin, var/std, logsumexp, vector_norm, and the backward of max / min (over dims, along a
 * dim; see their section) (variants of ref_reduce.c and ref_reduce_full.c,
 * same arguments: in[0] (d0..dn) -> out of the same rank, size 1 on reduced
 * dims; scalar[0] the correction of var/std).
 *
 * Layouts served (after dropping size-1 dims and merging neighbouring dims
 * of the same kind, kept or reduced, that are contiguous in memory):
 *   inner: the reduced dims form one block of stride 1: a contiguous row per
 *          kept index (the kept dims, before or after it, any strides);
 *   outer: one reduced block of any stride, and the last kept block has
 *          stride 1: each of its rows is folded into a vector accumulator
 *          ([M, N] -> [1, N], [B, M, N] -> [B, 1, N], or a transposed input).
 * out must be contiguous. Anything else declines to ref. logsumexp serves
 * the inner layout only (rows, or one long row in blocks whose (max, sum)
 * partials are combined in block order); so does vector_norm, of order 1, 2
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
 * Threads: rows (or column blocks of the outer layout) are split among
 * threads, each computed whole by one thread. A full reduction of one long
 * row is cut into blocks that depend only on its length, and the blocks'
 * partials are combined in block order: results never depend on the thread
 * count.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
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
    float r = v[0];
    for (int j = 1; j < 8; j++) {
        if (isnan(r)) break;
        if (isnan(v[j]) || (mn ? v[j] < r : v[j] > r)) r = v[j];
    }
    return r;
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

/* argmax (mn: argmin) of p[0..n): the first NaN, else the first extreme; 0
 * when n is 0. *val gets the value there. */
static int64_t arg_span(const float *p, int64_t n, bool mn, float *val) {
    if (n == 0) {
        *val = NAN;
        return 0;
    }
    *val = ext_span(p, n, mn, false);
    return find_span(p, n, *val);
}

/* logsumexp of p[0..n) in two passes (max, then the sum of e^(x - max)):
 * NaN when any is NaN, the max itself when it is infinite (+inf: some
 * element is; -inf: all are, or n is 0), as ref. *m and *sum get the
 * max and the shifted sum (for combining blocks). */
static double lse_span(const float *p, int64_t n, float *m, double *sum) {
    *m = ext_span(p, n, false, false);
    *sum = 0;
    if (isnan(*m) || isinf(*m)) return *m;
    *sum = sumexp_span(p, n, *m);
    return log(*sum) + *m;
}

/* ---- layout ---- */

enum { RG_INNER, RG_OUTER };

typedef struct rgeo {
    int kind;                        /* RG_INNER or RG_OUTER */
    int nk;                          /* kept blocks (outer: but the last) */
    int64_t kshape[NB_MAX_DIMS];     /* their sizes, in dim order */
    int64_t kstride[NB_MAX_DIMS];    /* their strides in in[0] */
    int64_t nk1;                     /* product of kshape */
    int64_t rlen, rstride;           /* the reduced block: elements, stride */
    int64_t n2;                      /* outer: size of the last kept block (stride 1); inner: 1 */
} rgeo;

/* Reads the call's layout; false when it is not one this file serves. */
static bool rgeo_init(rgeo *g, const nb_tensor *in, const nb_tensor *out) {
    if (in->dtype != NB_DTYPE_F32 || out->ndim != in->ndim || !nb_is_contiguous(out)) return false;
    int64_t sz[NB_MAX_DIMS], sd[NB_MAX_DIMS];
    bool red[NB_MAX_DIMS];
    int n = 0;
    memset(g, 0, sizeof *g);
    g->nk1 = g->rlen = g->n2 = 1;
    g->rstride = 1;
    bool empty = in->numel == 0;
    for (int d = 0; d < in->ndim; d++) {
        bool r = out->shape[d] != in->shape[d] || in->shape[d] == 1;
        if (r && out->shape[d] != 1) return false;
        if (in->shape[d] == 1) continue;
        if (empty) {   /* no data to address: only the slice count and length matter */
            if (r) g->rlen *= in->shape[d];
            else g->kshape[g->nk++] = in->shape[d], g->nk1 *= in->shape[d];
            continue;
        }
        if (n > 0 && red[n - 1] == r && sd[n - 1] == in->stride[d] * in->shape[d]) {
            sz[n - 1] *= in->shape[d];
            sd[n - 1] = in->stride[d];
            continue;
        }
        sz[n] = in->shape[d];
        sd[n] = in->stride[d];
        red[n++] = r;
    }
    if (empty) return true;
    int nred = 0, at = -1;
    for (int i = 0; i < n; i++)
        if (red[i]) nred++, at = i;
    if (nred > 1) return false;
    int lastk = -1;   /* the last kept block: the vector dim of the outer layout */
    for (int i = 0; i < n; i++)
        if (!red[i]) lastk = i;
    if (nred == 1) {
        g->rlen = sz[at];
        g->rstride = sd[at];
        if (sd[at] == 1) g->kind = RG_INNER;
        else if (lastk >= 0 && sd[lastk] == 1) g->kind = RG_OUTER, g->n2 = sz[lastk];
        else return false;
    }
    for (int i = 0; i < n; i++) {
        if (red[i] || (g->kind == RG_OUTER && i == lastk)) continue;
        g->kshape[g->nk] = sz[i];
        g->kstride[g->nk++] = sd[i];
        g->nk1 *= sz[i];
    }
    return true;
}

/* Element offset of kept index k (C order of the kept blocks in rgeo). */
static inline int64_t kept_off(const rgeo *g, int64_t k) {
    if (g->nk == 1) return k * g->kstride[0];
    int64_t off = 0;
    for (int d = g->nk - 1; d >= 0; d--) {
        off += (k % g->kshape[d]) * g->kstride[d];
        k /= g->kshape[d];
    }
    return off;
}

/* ---- what each op does with a span and with the outer layout ---- */

typedef enum rop { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_VAR, R_STD, R_LSE, R_NORM } rop;

static double var_div(double ss, int64_t n, double corr) {
    double div = (double)n - corr;
    return ss / (div > 0 ? div : 0.0);   /* n 0: NaN, as ref */
}

/* vector_norm's value from its slice's partial: the sum of |x| (p = 1) or
 * of x^2 (p = 2), or max |x| (INFINITY). */
static float norm_of(double part, double pn) { return (float)(pn == 2 ? sqrt(part) : part); }
/* The slice's partial for vector_norm of order pn (0 for an empty slice). */
static double norm_part(const float *p, int64_t n, double pn) {
    if (pn == 2) return ss_span(p, n, 0.0);
    return pn == 1 ? sum_span(p, n, true) : n ? ext_span(p, n, false, true) : 0.0;
}

/* The value of one contiguous slice (inner layout, one thread). corr: var
 * and std's correction, vector_norm's order (1, 2 or INFINITY). */
static void slice_value(rop op, const float *p, int64_t n, double corr, float *of, int64_t *oi) {
    float v;
    switch (op) {
    case R_SUM: *of = (float)sum_span(p, n, false); break;
    case R_MAX: *of = ext_span(p, n, false, false); break;
    case R_MIN: *of = ext_span(p, n, true, false); break;
    case R_NORM: *of = norm_of(norm_part(p, n, corr), corr); break;
    case R_ARGMAX: *oi = arg_span(p, n, false, &v); break;
    case R_ARGMIN: *oi = arg_span(p, n, true, &v); break;
    case R_LSE: {
        double sum;
        *of = (float)lse_span(p, n, &v, &sum);
        break;
    }
    default: {
        double mean = sum_span(p, n, false) / (double)n, var = var_div(ss_span(p, n, mean), n, corr);
        *of = (float)(op == R_STD ? sqrt(var) : var);
    }
    }
}

/* A full reduction of one long contiguous row: fixed blocks (a function of
 * n only), any thread per block, partials combined in block order. */
#define FULL_MAXBLK 256
#define FULL_MINBLK 8192

static void full_value(rop op, const float *p, int64_t n, double corr, float *of, int64_t *oi) {
    int64_t nb = (n + FULL_MINBLK - 1) / FULL_MINBLK;
    if (nb > FULL_MAXBLK) nb = FULL_MAXBLK;
    if (nb <= 1) {
        slice_value(op, p, n, corr, of, oi);
        return;
    }
    int64_t bs = ((n + nb - 1) / nb + 63) / 64 * 64;
    nb = (n + bs - 1) / bs;
    double part[FULL_MAXBLK];
    float pv[FULL_MAXBLK];
    int64_t pi[FULL_MAXBLK];
    int nt = nb__par_threads(n, NB_GRAIN_ELEMENTWISE);
    bool var = op == R_VAR || op == R_STD;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        int64_t s = b * bs, e = s + bs < n ? s + bs : n;
        if (op == R_LSE) lse_span(p + s, e - s, &pv[b], &part[b]);
        else if (op == R_SUM || var) part[b] = sum_span(p + s, e - s, false);
        else if (op == R_NORM) part[b] = norm_part(p + s, e - s, corr);
        else if (op == R_MAX || op == R_MIN) pv[b] = ext_span(p + s, e - s, op == R_MIN, false);
        else pi[b] = s + arg_span(p + s, e - s, op == R_ARGMIN, &pv[b]);
    }
    if (op == R_LSE) {   /* M = the max of the block maxima; sum_b part_b e^(m_b - M) */
        float M = pv[0];
        for (int64_t b = 1; b < nb && !isnan(M); b++)
            if (isnan(pv[b]) || pv[b] > M) M = pv[b];
        if (isnan(M) || isinf(M)) {
            *of = M;
            return;
        }
        double tot = 0;
        for (int64_t b = 0; b < nb; b++)
            if (pv[b] != -INFINITY) tot += part[b] * exp((double)pv[b] - M);
        *of = (float)(log(tot) + M);
        return;
    }
    if (op == R_NORM) {   /* sums added in block order; maxima: NaN sticks */
        double acc = 0;
        for (int64_t b = 0; b < nb && !isnan(acc); b++)
            acc = isinf(corr) ? (isnan(part[b]) || part[b] > acc ? part[b] : acc) : acc + part[b];
        *of = norm_of(acc, corr);
        return;
    }
    double acc = 0;
    if (op == R_SUM || var)
        for (int64_t b = 0; b < nb; b++) acc += part[b];
    if (op == R_SUM) {
        *of = (float)acc;
        return;
    }
    if (var) {
        double mean = acc / (double)n;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            int64_t s = b * bs, e = s + bs < n ? s + bs : n;
            part[b] = ss_span(p + s, e - s, mean);
        }
        double ss = 0;
        for (int64_t b = 0; b < nb; b++) ss += part[b];
        double v = var_div(ss, n, corr);
        *of = (float)(op == R_STD ? sqrt(v) : v);
        return;
    }
    bool mn = op == R_MIN || op == R_ARGMIN;
    int64_t best = 0;   /* the block holding the result: first NaN, else first extreme */
    for (int64_t b = 1; b < nb && !isnan(pv[best]); b++)
        if (isnan(pv[b]) || (mn ? pv[b] < pv[best] : pv[b] > pv[best])) best = b;
    if (op == R_MAX || op == R_MIN) *of = pv[best];
    else *oi = pi[best];
}

/* Outer layout, a block of 32 columns kept in registers while every row
 * streams by (an accumulator array would be loaded and stored once per row).
 * Sums of the columns in double: */
static void cols32_sum(const float *p0, int64_t R, int64_t rs, double *acc) {
    __m256d a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_pd();
    for (int64_t r = 0; r < R; r++)
        for (int j = 0; j < 8; j++) a[j] = _mm256_add_pd(a[j], _mm256_cvtps_pd(_mm_loadu_ps(p0 + r * rs + 4 * j)));
    for (int j = 0; j < 8; j++) _mm256_storeu_pd(acc + 4 * j, a[j]);
}

/* ... sums of squared deviations from mean[32]: */
static void cols32_ss(const float *p0, int64_t R, int64_t rs, const double *mean, double *ss) {
    __m256d a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm256_setzero_pd();
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
static void cols32_ext(const float *p0, int64_t R, int64_t rs, bool mn, bool arg, float *best, int32_t *idx) {
    __m256 b[4];
    __m256i id[4];
    for (int j = 0; j < 4; j++) {
        b[j] = _mm256_loadu_ps(p0 + 8 * j);
        id[j] = _mm256_setzero_si256();
    }
    for (int64_t r = 1; r < R; r++) {
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

/* Outer layout: columns [c0, c0+w) of the last kept block, for kept index
 * k1: out[k1*n2 + c] folds the rlen rows at stride rstride. w <= OUT_CW.
 * Blocks of 32 columns run in registers, the last w % 32 one by one. */
#define OUT_CW 256

static void outer_block(rop op, const rgeo *g, const float *base, double corr, float *of, int64_t *oi, int64_t k1,
                        int64_t c0, int64_t w) {
    const float *p0 = base + kept_off(g, k1) + c0;
    int64_t R = g->rlen, rs = g->rstride, o = k1 * g->n2 + c0, c, c32 = w / 32 * 32;
    if (op == R_SUM || op == R_VAR || op == R_STD) {
        double acc[OUT_CW], ss[OUT_CW];
        for (c = 0; c < c32; c += 32) cols32_sum(p0 + c, R, rs, acc + c);
        for (c = c32; c < w; c++) acc[c] = 0;
        for (int64_t r = 0; r < R && c32 < w; r++)
            for (c = c32; c < w; c++) acc[c] += p0[r * rs + c];
        if (op == R_SUM) {
            for (c = 0; c < w; c++) of[o + c] = (float)acc[c];
            return;
        }
        for (c = 0; c < w; c++) acc[c] /= (double)R;   /* the mean */
        for (c = 0; c < c32; c += 32) cols32_ss(p0 + c, R, rs, acc + c, ss + c);
        for (c = c32; c < w; c++) ss[c] = 0;
        for (int64_t r = 0; r < R && c32 < w; r++)
            for (c = c32; c < w; c++) ss[c] += ((double)p0[r * rs + c] - acc[c]) * ((double)p0[r * rs + c] - acc[c]);
        for (c = 0; c < w; c++) {
            double v = var_div(ss[c], R, corr);
            of[o + c] = (float)(op == R_STD ? sqrt(v) : v);
        }
        return;
    }
    bool mn = op == R_MIN || op == R_ARGMIN, arg = op == R_ARGMAX || op == R_ARGMIN;
    float best[OUT_CW];   /* R >= 1: empty inputs never get here */
    int32_t idx[OUT_CW];
    for (c = 0; c < c32; c += 32) cols32_ext(p0 + c, R, rs, mn, arg, best + c, idx + c);
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
    for (c = 0; c < w; c++) {
        if (arg) oi[o + c] = idx[c];
        else of[o + c] = best[c];
    }
}

/* ---- the driver ---- */

static int run(const nb_kernel_args *a, rop op) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    bool arg = op == R_ARGMAX || op == R_ARGMIN;
    if (out->dtype != (arg ? NB_DTYPE_I64 : NB_DTYPE_F32)) return NB_KERNEL_DECLINE;
    rgeo g;
    if (!rgeo_init(&g, in, out)) return NB_KERNEL_DECLINE;
    if (g.kind == RG_OUTER && g.rlen > INT32_MAX) return NB_KERNEL_DECLINE;   /* int32 lane indices */
    if (g.kind == RG_OUTER && (op == R_LSE || op == R_NORM)) return NB_KERNEL_DECLINE;   /* inner dims only */
    if (op == R_NORM && a->scalar[0] != 1 && a->scalar[0] != 2 && !isinf(a->scalar[0])) return NB_KERNEL_DECLINE;
    float *of = arg ? NULL : nb_data(out);
    int64_t *oi = arg ? nb_data(out) : NULL;
    const float *base = in->numel ? nb_data(in) : NULL;
    double corr = a->scalar[0];
    int64_t cnt = g.nk1 * g.n2;
    if (cnt == 0) return 0;
    if (in->numel == 0) {   /* empty slices: ref's values (sum 0, amax -inf, argmax 0, var NaN) */
        for (int64_t k = 0; k < cnt; k++) slice_value(op, NULL, 0, corr, arg ? NULL : of + k, arg ? oi + k : NULL);
        return 0;
    }
    int64_t work = g.nk1 * g.n2 * g.rlen * (op == R_VAR || op == R_STD ? 2 : 1);
    int grain = op == R_LSE ? NB_GRAIN_TRANSCENDENTAL : NB_GRAIN_ELEMENTWISE;
    if (g.kind == RG_INNER) {
        if (g.nk1 == 1) {
            full_value(op, base, g.rlen, corr, of, oi);
            return 0;
        }
        int nt = nb__par_threads(work, grain);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t k = 0; k < g.nk1; k++)
            slice_value(op, base + kept_off(&g, k), g.rlen, corr, arg ? NULL : of + k, arg ? oi + k : NULL);
        return 0;
    }
    int64_t nbk = (g.n2 + OUT_CW - 1) / OUT_CW, tasks = g.nk1 * nbk;
    int nt = nb__par_threads(work, NB_GRAIN_ELEMENTWISE);
    if (nt > tasks) nt = (int)tasks;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t t = 0; t < tasks; t++) {
        int64_t k1 = t / nbk, c0 = (t % nbk) * OUT_CW;
        int64_t w = g.n2 - c0 < OUT_CW ? g.n2 - c0 : OUT_CW;
        outer_block(op, &g, base, corr, of, oi, k1, c0, w);
    }
    return 0;
}

/* ---- the backward of max / min (AMAX_BACKWARD) and of max / min along a
 * dim (MAX_DIM_BACKWARD), reduced dims contiguous (the inner layout of
 * rgeo, with out laid out as x) ----
 * AMAX_BACKWARD: in[0] x, in[1] r (the slice's extreme, reduced shape):
 * out = (x == r) / count, NaN over a slice where nothing equals r (a NaN r),
 * 1 / count rounded once from double: ref's bits. MAX_DIM_BACKWARD: in[0]
 * v (reduced shape, any strides: the op may pass g itself), in[1] the I64
 * index (reduced, contiguous): out's slice is 0 but v at the index; an
 * index outside the slice is NB_ERANGE before anything is written. Slices
 * are split over threads. */

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

static int avx2_amax_backward(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *r = a->nin > 1 ? a->in[1] : NULL;
    nb_tensor *out = a->out;
    rgeo g;
    if (!r || r->dtype != NB_DTYPE_F32 || out->dtype != NB_DTYPE_F32 || !nb_is_contiguous(x) ||
        !nb_is_contiguous(out) || !nb__same_shape(x, out) || !rgeo_init(&g, x, r) || g.kind != RG_INNER ||
        x->numel == 0)
        return NB_KERNEL_DECLINE;
    const float *xb = nb_data(x), *rb = nb_data(r);
    float *ob = nb_data(out);
    int nt = nb__par_threads(x->numel, NB_GRAIN_ELEMENTWISE);
    if (nt > g.nk1) nt = (int)g.nk1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t k = 0; k < g.nk1; k++) {
        int64_t off = kept_off(&g, k);
        amax_bw_row(ob + off, xb + off, g.rlen, rb[k]);
    }
    return 0;
}

static int avx2_max_dim_backward(const nb_kernel_args *a) {
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
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t k = 0; k < g.nk1; k++) {
        float *o = ob + kept_off(&g, k);
        memset(o, 0, (size_t)g.rlen * sizeof(float));
        o[ib[k]] = vb[vflat ? k : nb__row_offset(v, -1, k)];
    }
    return 0;
}

static int avx2_sum(const nb_kernel_args *a) { return run(a, R_SUM); }
static int avx2_amax(const nb_kernel_args *a) { return run(a, R_MAX); }
static int avx2_amin(const nb_kernel_args *a) { return run(a, R_MIN); }
static int avx2_argmax(const nb_kernel_args *a) { return run(a, R_ARGMAX); }
static int avx2_argmin(const nb_kernel_args *a) { return run(a, R_ARGMIN); }
static int avx2_var(const nb_kernel_args *a) { return run(a, R_VAR); }
static int avx2_std(const nb_kernel_args *a) { return run(a, R_STD); }
static int avx2_logsumexp(const nb_kernel_args *a) { return run(a, R_LSE); }
static int avx2_vector_norm(const nb_kernel_args *a) { return run(a, R_NORM); }

void nb__avx2_reduce_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SUM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_sum", 10, avx2_sum},
        {NB_OP_AMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_amax", 10, avx2_amax},
        {NB_OP_AMIN, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_amin", 10, avx2_amin},
        {NB_OP_ARGMAX, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_argmax", 10, avx2_argmax},
        {NB_OP_ARGMIN, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_argmin", 10, avx2_argmin},
        {NB_OP_VAR, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_var", 10, avx2_var},
        {NB_OP_STD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_std", 10, avx2_std},
        {NB_OP_LOGSUMEXP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_logsumexp", 10, avx2_logsumexp},
        {NB_OP_VECTOR_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_vector_norm", 10, avx2_vector_norm},
        {NB_OP_AMAX_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_amax_backward", 10, avx2_amax_backward},
        {NB_OP_MAX_DIM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_max_dim_backward", 10, avx2_max_dim_backward},
    };
    NB__REGISTER_ALL(ks);
}
