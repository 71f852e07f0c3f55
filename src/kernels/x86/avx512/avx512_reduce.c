/* avx512_reduce.c — AVX-512 kernels of the F32 reductions: sum (and so
 * mean, which the ops layer builds as SUM then MUL_SCALAR), amax/amin,
 * argmax/argmin, var/std, logsumexp, vector_norm and the backward of max /
 * min over dims (AMAX_BACKWARD). They are 16-lane twins of
 * ../avx2/avx2_reduce.c, with its arguments (ref_reduce.c,
 * ref_reduce_full.c: in[0] (d0..dn) -> out of the same rank, size 1 on
 * reduced dims; scalar[0] the correction of var/std, the order of
 * vector_norm).
 *
 * Layouts served: the twin's, read by the same analysis (size-1 dims
 * dropped, neighbouring dims of the same kind, kept or reduced, merged
 * where contiguous in memory):
 *   inner: the reduced dims form one block of stride 1: a contiguous row
 *          per kept index (the kept dims any strides);
 *   outer: one reduced block of any stride, and the last kept block has
 *          stride 1: its rows are folded into vector accumulators, 64
 *          columns (4 x 16 lanes) at a time, the last <= 16 columns of a
 *          block under a mask ([M, N] -> [1, N], [B, M, N] -> [B, 1, N], a
 *          transposed input).
 * out must be contiguous. Declined (NB_KERNEL_DECLINE: the AVX2 kernel, or
 * ref, serves them), as by the twin: two or more reduced blocks, a reduced
 * block of stride > 1 without a stride-1 kept block, a strided out, other
 * dtypes; logsumexp and vector_norm in the outer layout; vector_norm of an
 * order other than 1, 2, INFINITY; AMAX_BACKWARD outside the inner layout.
 * MAX_DIM_BACKWARD is not ported: the twin's is a memset and one store per
 * slice, with nothing for wider vectors to do.
 *
 * Precision (the twin's): sums (sum, the mean and the squared deviations of
 * var/std, vector_norm's sum |x| and sum x^2) are accumulated in double and
 * rounded once, so the F32 result is within 1 ULP of ref's and of the
 * twin's (the order differs: error <= n * 2^-53 * sum|x| before the final
 * rounding; in the outer layout each column adds its rows in ref's order:
 * sum is then ref's bits). amax/amin (and vector_norm INFINITY) are exact
 * up to the sign of a zero result (which of +0 and -0 wins a tie depends on
 * the lane a zero lands in, as in the twin); argmax/argmin exact: the first
 * NaN, else the first extreme, as ref and PyTorch; AMAX_BACKWARD bitwise
 * ref's. logsumexp: F32 exps (vmath512.h, bitwise vmath.h's: 1 ULP) summed
 * in F32 blocks of 16 terms a lane, as the twin, emptied into double: the
 * sum within ~1.2e-6 relative, the log within 2e-6 absolute + 1 ULP of ref.
 * NaN and infinities as ref everywhere.
 *
 * Threads: the twin's split, with its grains (nb__par_threads): rows (or
 * 256-column blocks of the outer layout) split among threads, each computed
 * whole by one thread; a full reduction of one long row is cut into blocks
 * that depend only on its length (the twin's FULL_MINBLK/FULL_MAXBLK), their
 * partials combined in block order: results never depend on the thread
 * count. No streaming stores (the outputs are small), as the twin.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "vmath512.h"

/* ---- spans: one contiguous run of floats ---- */

/* Lanes i < n of 8 (n in 0..8). */
static inline __mmask8 tail8(int n) { return (__mmask8)(n >= 8 ? 0xFFu : (1u << n) - 1u); }

/* 8 floats at p (lanes off k read as 0) widened to double; |x| when ab
 * (vector_norm's orders 1 and INFINITY read |x|). */
static inline __m512d cvt8(const float *p, __mmask8 k, bool ab) {
    __m256 x = k == 0xFF ? _mm256_loadu_ps(p) : _mm256_maskz_loadu_ps(k, p);
    return _mm512_cvtps_pd(ab ? _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x) : x);
}
static inline __m512 ld16(const float *p, bool ab) {
    __m512 x = _mm512_loadu_ps(p);
    return ab ? _mm512_abs_ps(x) : x;
}

/* sum of p[0..n) (ab: of |p[i]|) in double. */
static double sum_span(const float *p, int64_t n, bool ab) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_add_pd(a0, cvt8(p + i, 0xFF, ab));
        a1 = _mm512_add_pd(a1, cvt8(p + i + 8, 0xFF, ab));
        a2 = _mm512_add_pd(a2, cvt8(p + i + 16, 0xFF, ab));
        a3 = _mm512_add_pd(a3, cvt8(p + i + 24, 0xFF, ab));
    }
    for (; i + 8 <= n; i += 8) a0 = _mm512_add_pd(a0, cvt8(p + i, 0xFF, ab));
    if (i < n) a1 = _mm512_add_pd(a1, cvt8(p + i, tail8((int)(n - i)), ab));   /* off lanes add +0 */
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
}

/* sum of (p[i] - mean)^2 in double. */
static double ss_span(const float *p, int64_t n, double mean) {
    __m512d m = _mm512_set1_pd(mean), a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d d0 = _mm512_sub_pd(cvt8(p + i, 0xFF, false), m);
        __m512d d1 = _mm512_sub_pd(cvt8(p + i + 8, 0xFF, false), m);
        __m512d d2 = _mm512_sub_pd(cvt8(p + i + 16, 0xFF, false), m);
        __m512d d3 = _mm512_sub_pd(cvt8(p + i + 24, 0xFF, false), m);
        a0 = _mm512_fmadd_pd(d0, d0, a0);
        a1 = _mm512_fmadd_pd(d1, d1, a1);
        a2 = _mm512_fmadd_pd(d2, d2, a2);
        a3 = _mm512_fmadd_pd(d3, d3, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m512d d = _mm512_sub_pd(cvt8(p + i, 0xFF, false), m);
        a0 = _mm512_fmadd_pd(d, d, a0);
    }
    if (i < n) {   /* off lanes: d 0, not 0 - mean */
        __mmask8 k = tail8((int)(n - i));
        __m512d d = _mm512_maskz_sub_pd(k, cvt8(p + i, k, false), m);
        a1 = _mm512_fmadd_pd(d, d, a1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
}

/* sum of e^(p[i] - m) for logsumexp: F32 exps (vmath512.h) summed in four
 * 16-lane F32 accumulators emptied into a double every LSE_BLK elements:
 * 16 terms per lane, as the twin's 512 over 4 x 8 lanes, so the relative
 * error of the sum stays below about 1.2e-6 whatever n is. */
#define LSE_BLK 1024
static double sumexp_span(const float *p, int64_t n, float m) {
    __m512 mv = _mm512_set1_ps(m);
    double s = 0;
    int64_t i = 0;
    while (i + 64 <= n) {
        int64_t e = i + LSE_BLK < n ? i + LSE_BLK : n;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (; i + 64 <= e; i += 64) {
            a0 = _mm512_add_ps(a0, nb__w_exp(_mm512_sub_ps(_mm512_loadu_ps(p + i), mv)));
            a1 = _mm512_add_ps(a1, nb__w_exp(_mm512_sub_ps(_mm512_loadu_ps(p + i + 16), mv)));
            a2 = _mm512_add_ps(a2, nb__w_exp(_mm512_sub_ps(_mm512_loadu_ps(p + i + 32), mv)));
            a3 = _mm512_add_ps(a3, nb__w_exp(_mm512_sub_ps(_mm512_loadu_ps(p + i + 48), mv)));
        }
        s += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
    __m512 t = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16) t = _mm512_add_ps(t, nb__w_exp(_mm512_sub_ps(_mm512_loadu_ps(p + i), mv)));
    if (i < n) {   /* off lanes are not added (their exp is e^-m) */
        __mmask16 k = nb__tail_mask16((int)(n - i));
        t = _mm512_mask_add_ps(t, k, t, nb__w_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p + i), mv)));
    }
    return s + _mm512_reduce_add_ps(t);
}

/* One step of a NaN-sticky max (mn: min): a NaN in x or acc stays. */
static inline __m512 ext_step(__m512 acc, __m512 x, bool mn) {
    __m512 e = mn ? _mm512_min_ps(x, acc) : _mm512_max_ps(x, acc);   /* acc when either is NaN */
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), e, x);
}

/* max (mn: min) of p[0..n) (ab: of |p[i]|); NaN when any is; -inf (inf) when n is 0. */
static float ext_span(const float *p, int64_t n, bool mn, bool ab) {
    __m512 id = _mm512_set1_ps(mn ? INFINITY : -INFINITY), a0 = id, a1 = id, a2 = id, a3 = id;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = ext_step(a0, ld16(p + i, ab), mn);
        a1 = ext_step(a1, ld16(p + i + 16, ab), mn);
        a2 = ext_step(a2, ld16(p + i + 32, ab), mn);
        a3 = ext_step(a3, ld16(p + i + 48, ab), mn);
    }
    for (; i + 16 <= n; i += 16) a0 = ext_step(a0, ld16(p + i, ab), mn);
    if (i < n) {   /* off lanes take the identity (after the abs: |-inf| would win a max) */
        __mmask16 k = nb__tail_mask16((int)(n - i));
        __m512 t = _mm512_maskz_loadu_ps(k, p + i);
        a1 = ext_step(a1, _mm512_mask_blend_ps(k, id, ab ? _mm512_abs_ps(t) : t), mn);
    }
    a0 = ext_step(ext_step(a0, a1, mn), ext_step(a2, a3, mn), mn);
    float v[16];
    _mm512_storeu_ps(v, a0);
    float r = v[0];
    for (int j = 1; j < 16; j++) {
        if (isnan(r)) break;
        if (isnan(v[j]) || (mn ? v[j] < r : v[j] > r)) r = v[j];
    }
    return r;
}

/* Index of the first element of p[0..n) equal to v, or of the first NaN when
 * v is NaN; n when none (cannot happen for v from ext_span). */
static int64_t find_span(const float *p, int64_t n, float v) {
    bool nan = isnan(v);
    __m512 vv = _mm512_set1_ps(v);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(p + i);
        __mmask16 m = nan ? _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q) : _mm512_cmp_ps_mask(x, vv, _CMP_EQ_OQ);
        if (m) return i + __builtin_ctz((unsigned)m);
    }
    if (i < n) {   /* off lanes load 0 but are masked out of the compare */
        __mmask16 k = nb__tail_mask16((int)(n - i));
        __m512 x = _mm512_maskz_loadu_ps(k, p + i);
        __mmask16 m =
            nan ? _mm512_mask_cmp_ps_mask(k, x, x, _CMP_UNORD_Q) : _mm512_mask_cmp_ps_mask(k, x, vv, _CMP_EQ_OQ);
        if (m) return i + __builtin_ctz((unsigned)m);
    }
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

/* ---- layout (the twin's analysis) ---- */

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

/* ---- what each op does with a span ---- */

typedef enum rop { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN, R_VAR, R_STD, R_LSE, R_NORM } rop;

static double var_div(double ss, int64_t n, double corr) {
    double div = (double)n - corr;
    return ss / (div > 0 ? div : 0.0);   /* n 0: NaN, as ref */
}

/* vector_norm's value from its slice's partial: the sum of |x| (p = 1) or
 * of x^2 (p = 2, exact in double: no scaling needed), or max |x| (INFINITY). */
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

/* A full reduction of one long contiguous row: the twin's fixed blocks (a
 * function of n only), any thread per block, partials combined in block
 * order. */
#define FULL_MAXBLK 256
#define FULL_MINBLK 8192

/* Combines the blocks' logsumexp partials (max pv[b], shifted sum part[b]):
 * M = the max of the maxima, sum_b part_b e^(m_b - M). */
static float lse_combine(const float *pv, const double *part, int64_t nb) {
    float M = pv[0];
    for (int64_t b = 1; b < nb && !isnan(M); b++)
        if (isnan(pv[b]) || pv[b] > M) M = pv[b];
    if (isnan(M) || isinf(M)) return M;
    double tot = 0;
    for (int64_t b = 0; b < nb; b++)
        if (pv[b] != -INFINITY) tot += part[b] * exp((double)pv[b] - M);
    return (float)(log(tot) + M);
}

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
    if (op == R_LSE) {
        *of = lse_combine(pv, part, nb);
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

/* ---- the outer layout: up to 64 columns (nu units of 16, the last unit
 * under the mask kl) kept in registers while every row streams by. The
 * unit count is a constant after inlining (cols_* are called through a
 * switch), so the accumulator arrays live in zmm registers. Each column
 * adds its rows in order, as ref. ---- */

#define NB_AI static inline __attribute__((always_inline))

/* 8 floats of unit u, half h of row q (lanes past the block's columns read 0). */
NB_AI __m512d col8(const float *q, int u, int h, int nu, __mmask16 kl) {
    __mmask8 k = u < nu - 1 ? (__mmask8)0xFF : (__mmask8)(kl >> (8 * h));
    return cvt8(q + 16 * u + 8 * h, k, false);
}

/* Sums of the columns in double: acc[0 .. 16 nu). */
NB_AI void cols_sum(const float *p0, int64_t R, int64_t rs, int nu, __mmask16 kl, double *acc) {
    __m512d a[8];
    for (int j = 0; j < 2 * nu; j++) a[j] = _mm512_setzero_pd();
    for (int64_t r = 0; r < R; r++)
        for (int j = 0; j < 2 * nu; j++) a[j] = _mm512_add_pd(a[j], col8(p0 + r * rs, j / 2, j % 2, nu, kl));
    for (int j = 0; j < 2 * nu; j++) _mm512_storeu_pd(acc + 8 * j, a[j]);
}

/* ... sums of the squared deviations from mean[0 .. 16 nu): */
NB_AI void cols_ss(const float *p0, int64_t R, int64_t rs, int nu, __mmask16 kl, const double *mean, double *ss) {
    __m512d a[8], m[8];
    for (int j = 0; j < 2 * nu; j++) a[j] = _mm512_setzero_pd(), m[j] = _mm512_loadu_pd(mean + 8 * j);
    for (int64_t r = 0; r < R; r++)
        for (int j = 0; j < 2 * nu; j++) {
            __m512d d = _mm512_sub_pd(col8(p0 + r * rs, j / 2, j % 2, nu, kl), m[j]);
            a[j] = _mm512_fmadd_pd(d, d, a[j]);
        }
    for (int j = 0; j < 2 * nu; j++) _mm512_storeu_pd(ss + 8 * j, a[j]);
}

/* One row step of argmax (mn: argmin) on 16 columns: take x where it beats
 * b, or is the first NaN (as ref's scalar loop). */
NB_AI void arg_step(__m512 *b, __m512i *id, __m512 x, __m512i rv, bool mn) {
    __mmask16 beat = mn ? _mm512_cmp_ps_mask(x, *b, _CMP_LT_OQ) : _mm512_cmp_ps_mask(x, *b, _CMP_GT_OQ);
    __mmask16 take = beat | _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(*b, *b, _CMP_ORD_Q), x, x, _CMP_UNORD_Q);
    *b = _mm512_mask_mov_ps(*b, take, x);
    *id = _mm512_mask_mov_epi32(*id, take, rv);
}

/* ... extremes (and their row indices when arg) of the columns, R >= 1: */
NB_AI void cols_ext(const float *p0, int64_t R, int64_t rs, int nu, __mmask16 kl, bool mn, bool arg, float *best,
                    int32_t *idx) {
    __m512 b[4];
    __m512i id[4];
    for (int u = 0; u < nu; u++) {
        b[u] = _mm512_maskz_loadu_ps(u < nu - 1 ? (__mmask16)0xFFFF : kl, p0 + 16 * u);
        id[u] = _mm512_setzero_si512();
    }
    for (int64_t r = 1; r < R; r++) {
        __m512i rv = _mm512_set1_epi32((int32_t)r);
        for (int u = 0; u < nu; u++) {
            __m512 x = _mm512_maskz_loadu_ps(u < nu - 1 ? (__mmask16)0xFFFF : kl, p0 + r * rs + 16 * u);
            if (arg) arg_step(&b[u], &id[u], x, rv, mn);
            else b[u] = ext_step(b[u], x, mn);
        }
    }
    for (int u = 0; u < nu; u++) {
        _mm512_storeu_ps(best + 16 * u, b[u]);
        _mm512_storeu_si512(idx + 16 * u, id[u]);
    }
}

/* The cols_* body for nc (1..64) columns, nu = ceil(nc / 16) a constant. */
#define COLS_SWITCH(nc, CALL)                                                          \
    do {                                                                               \
        __mmask16 kl = nb__tail_mask16((int)((nc) - ((nc) - 1) / 16 * 16));            \
        switch (((nc) + 15) / 16) {                                                    \
        case 1: CALL(1); break;                                                        \
        case 2: CALL(2); break;                                                        \
        case 3: CALL(3); break;                                                        \
        default: CALL(4); break;                                                       \
        }                                                                              \
    } while (0)

/* Outer layout: columns [c0, c0+w) of the last kept block, for kept index
 * k1: out[k1*n2 + c] folds the rlen rows at stride rstride. w <= OUT_CW
 * (the twin's 256: the same tasks), in blocks of 64 columns. */
#define OUT_CW 256

static void outer_block(rop op, const rgeo *g, const float *base, double corr, float *of, int64_t *oi, int64_t k1,
                        int64_t c0, int64_t w) {
    const float *p0 = base + kept_off(g, k1) + c0;
    int64_t R = g->rlen, rs = g->rstride, o = k1 * g->n2 + c0, c;
    if (op == R_SUM || op == R_VAR || op == R_STD) {
        double acc[OUT_CW], ss[OUT_CW];   /* columns past w are computed on zeros, never stored */
        for (c = 0; c < w; c += 64) {
            int64_t nc = w - c < 64 ? w - c : 64;
#define SUM_CALL(NU) cols_sum(p0 + c, R, rs, NU, kl, acc + c)
            COLS_SWITCH(nc, SUM_CALL);
        }
        if (op == R_SUM) {
            for (c = 0; c < w; c++) of[o + c] = (float)acc[c];
            return;
        }
        for (c = 0; c < (w + 15) / 16 * 16; c++) acc[c] /= (double)R;   /* the mean */
        for (c = 0; c < w; c += 64) {
            int64_t nc = w - c < 64 ? w - c : 64;
#define SS_CALL(NU) cols_ss(p0 + c, R, rs, NU, kl, acc + c, ss + c)
            COLS_SWITCH(nc, SS_CALL);
        }
        for (c = 0; c < w; c++) {
            double v = var_div(ss[c], R, corr);
            of[o + c] = (float)(op == R_STD ? sqrt(v) : v);
        }
        return;
    }
    bool mn = op == R_MIN || op == R_ARGMIN, arg = op == R_ARGMAX || op == R_ARGMIN;
    float best[OUT_CW];   /* R >= 1: empty inputs never get here */
    int32_t idx[OUT_CW];
    for (c = 0; c < w; c += 64) {
        int64_t nc = w - c < 64 ? w - c : 64;
#define EXT_CALL(NU) cols_ext(p0 + c, R, rs, NU, kl, mn, arg, best + c, idx + c)
        COLS_SWITCH(nc, EXT_CALL);
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

/* ---- the backward of max / min over dims (AMAX_BACKWARD), reduced dims
 * contiguous (the inner layout, out laid out as x) ----
 * in[0] x, in[1] r (the slice's extreme, reduced shape): out = (x == r) /
 * count, NaN over a slice where nothing equals r (a NaN r), 1 / count
 * rounded once from double: ref's bits. Slices are split over threads. */

static void amax_bw_row(float *o, const float *x, int64_t n, float r) {
    __m512 rv = _mm512_set1_ps(r);
    __mmask16 kt = nb__tail_mask16((int)(n % 16));
    int64_t c = 0, i = 0, n16 = n / 16 * 16;
    for (; i < n16; i += 16) c += __builtin_popcount(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), rv, _CMP_EQ_OQ));
    if (kt) c += __builtin_popcount(_mm512_mask_cmp_ps_mask(kt, _mm512_maskz_loadu_ps(kt, x + n16), rv, _CMP_EQ_OQ));
    if (c == 0) {
        for (i = 0; i < n16; i += 16) _mm512_storeu_ps(o + i, _mm512_set1_ps(NAN));
        _mm512_mask_storeu_ps(o + n16, kt, _mm512_set1_ps(NAN));
        return;
    }
    __m512 w = _mm512_set1_ps((float)(1.0 / (double)c));   /* zeros elsewhere: +0, as ref */
    for (i = 0; i < n16; i += 16)
        _mm512_storeu_ps(o + i, _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), rv, _CMP_EQ_OQ), w));
    __m512 t = _mm512_maskz_loadu_ps(kt, x + n16);
    _mm512_mask_storeu_ps(o + n16, kt, _mm512_maskz_mov_ps(_mm512_mask_cmp_ps_mask(kt, t, rv, _CMP_EQ_OQ), w));
}

static int k_amax_backward(const nb_kernel_args *a) {
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

static int k_sum(const nb_kernel_args *a) { return run(a, R_SUM); }
static int k_amax(const nb_kernel_args *a) { return run(a, R_MAX); }
static int k_amin(const nb_kernel_args *a) { return run(a, R_MIN); }
static int k_argmax(const nb_kernel_args *a) { return run(a, R_ARGMAX); }
static int k_argmin(const nb_kernel_args *a) { return run(a, R_ARGMIN); }
static int k_var(const nb_kernel_args *a) { return run(a, R_VAR); }
static int k_std(const nb_kernel_args *a) { return run(a, R_STD); }
static int k_logsumexp(const nb_kernel_args *a) { return run(a, R_LSE); }
static int k_vector_norm(const nb_kernel_args *a) { return run(a, R_NORM); }

/* Priorities by measurement: time of avx512 / time of the avx2 twin, one
 * process, the two alternated, medians of 31 calls, two runs (Xeon @ 2.5
 * GHz with AVX-512, 2 cores shared with other jobs; L3 35.8 MB holds the
 * 16 MB matrix, not the 64 MB row). Shapes: [4096, 1024] over dim 1
 * (inner) and dim 0 (outer), and all of [16M] (full).
 *                  1 thread: inner      outer      full     | 2 threads (noisy): inner  outer  full
 *   sum                     0.86 0.91  0.65 0.63  0.95 0.90  |   0.98 (2.08)  0.88 0.95  0.81 0.94
 *   amax                    0.97 0.93  0.49 0.51  0.91 0.89  |   0.94 1.00    0.70 0.89  1.16 0.79
 *   amin                    0.90 0.97  0.51 0.50  0.85 0.88  |   0.97 1.01    0.64 0.75  0.77 0.87
 *   argmax                  0.89 0.94  0.41 0.34  0.83 0.87  |   1.52 1.03    0.50 0.55  0.83 0.88
 *   argmin                  0.87 0.92  0.36 0.36  0.87 0.88  |   0.94 0.98    0.57 0.50  0.85 0.80
 *   var                     0.84 0.88  0.63 0.64  0.91 0.92  |   0.93 0.80    0.65 0.68  0.88 0.83
 *   std                     0.85 0.87  0.63 0.63  0.90 0.90  |   1.28 1.00    0.59 0.66  0.91 0.90
 *   logsumexp               0.84 0.82   (declined) 0.81 0.79  |   0.86 1.00      -        0.91 0.79
 *   vector_norm p=2         0.86 0.92   (declined) 0.86 0.86  |   (1.84) 0.59    -        0.75 0.88
 *               p=1         0.87 0.89              0.85 0.86  |   0.96 0.85      -        0.96 0.67
 *               p=inf       0.92 0.94              0.87 0.89  |   (0.15) 0.91    -        0.94 0.75
 *   amax_backward (inner)   1.03 0.99                         |   0.88 0.83
 * The forward kernels are >= 3% faster at 1 thread on every shape: WINS.
 * The outer layout gains most (64 columns of 16 lanes in registers, masked
 * column tails instead of the twin's scalar ones); inner rows and the
 * long row are bound by memory, the margin there is the cheaper loop.
 * amax_backward (a compare and a store per element, twice over memory)
 * does not beat its twin: LOSES. */
#define WINS NB__PRIO_AVX512_WINS
#define LOSES NB__PRIO_AVX512_LOSES
#define REG(OP, FN, PRIO) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_" #FN, PRIO, k_##FN}

void nb__avx512_reduce_register(void) {
    static const nb_kernel_desc ks[] = {
        REG(SUM, sum, WINS),
        REG(AMAX, amax, WINS),
        REG(AMIN, amin, WINS),
        REG(ARGMAX, argmax, WINS),
        REG(ARGMIN, argmin, WINS),
        REG(VAR, var, WINS),
        REG(STD, std, WINS),
        REG(LOGSUMEXP, logsumexp, WINS),
        REG(VECTOR_NORM, vector_norm, WINS),
        REG(AMAX_BACKWARD, amax_backward, LOSES),
    };
    NB__REGISTER_ALL(ks);
}
