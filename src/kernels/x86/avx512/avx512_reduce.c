/* avx512_reduce.c — AVX-512 kernels of the F32 reductions: sum (and so
 * mean, which the ops layer builds as SUM then MUL_SCALAR), amax/amin,
 * argmax/argmin, var/std, logsumexp, vector_norm and the backward of max /
 * min over dims (AMAX_BACKWARD). They are 16-lane twins of
 * ../avx2/avx2_reduce.c, with its arguments (ref_reduce.c,
 * ref_reduce_full.c: in[0] (d0..dn) -> out of the same rank, size 1 on
 * reduced dims; scalar[0] the correction of var/std, the order of
 * vector_norm).
 *
 * Layouts served: the twin's, read by the analysis both share
 * (../reduce_driver.h, with the per-op driver and the thread split; size-1
 * dims dropped, neighbouring dims of the same kind, kept or reduced, merged
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
 * Threads: the twin's split (reduce_driver.h), with its grains: rows (or
 * 256-column blocks of the outer layout) split among threads, each computed
 * whole by one thread; a full reduction of one long row is cut into blocks
 * that depend only on its length (FULL_MINBLK/FULL_MAXBLK), their
 * partials combined in block order: results never depend on the thread
 * count. No streaming stores (the outputs are small), as the twin.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "../reduce_driver.h"
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
    return ext_lanes(v, 16, mn);
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

/* Sums of the columns in double: acc[0 .. 16 nu), from 0 (first) or
 * adding to what acc holds (the rows before, in order). */
NB_AI void cols_sum(const float *p0, int64_t R, int64_t rs, int nu, __mmask16 kl, double *acc, bool first) {
    __m512d a[8];
    for (int j = 0; j < 2 * nu; j++) a[j] = first ? _mm512_setzero_pd() : _mm512_loadu_pd(acc + 8 * j);
    for (int64_t r = 0; r < R; r++)
        for (int j = 0; j < 2 * nu; j++) a[j] = _mm512_add_pd(a[j], col8(p0 + r * rs, j / 2, j % 2, nu, kl));
    for (int j = 0; j < 2 * nu; j++) _mm512_storeu_pd(acc + 8 * j, a[j]);
}

/* ... sums of the squared deviations from mean[0 .. 16 nu) (first, as cols_sum's): */
NB_AI void cols_ss(const float *p0, int64_t R, int64_t rs, int nu, __mmask16 kl, const double *mean, double *ss,
                   bool first) {
    __m512d a[8], m[8];
    for (int j = 0; j < 2 * nu; j++)
        a[j] = first ? _mm512_setzero_pd() : _mm512_loadu_pd(ss + 8 * j), m[j] = _mm512_loadu_pd(mean + 8 * j);
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
NB_AI void cols_ext(const float *p0, int64_t r0, int64_t r1, int64_t rs, int nu, __mmask16 kl, bool mn, bool arg,
                    float *best, int32_t *idx) {
    __m512 b[4];
    __m512i id[4];
    for (int u = 0; u < nu; u++) {   /* rows [r0, r1): from row 0, or on from best / idx */
        b[u] = r0 ? _mm512_loadu_ps(best + 16 * u) : _mm512_maskz_loadu_ps(u < nu - 1 ? (__mmask16)0xFFFF : kl, p0 + 16 * u);
        id[u] = r0 ? _mm512_loadu_si512(idx + 16 * u) : _mm512_setzero_si512();
    }
    for (int64_t r = r0 ? r0 : 1; r < r1; r++) {
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

/* The outer layout's w columns (reduce_driver.h's outer_block; OUT_CW, the
 * twin's 256: the same tasks) in blocks of 64. Columns past w, up to the
 * next multiple of 16, are computed on zeros (sums +0, so means +0) and
 * never stored. */
/* Sums, squared deviations and extremes go OUT_RB rows at a time across all w
 * columns (the 64-column blocks' accumulators stored and reloaded in
 * between, exactly), so each row's w columns are read in one contiguous
 * run instead of one 64-column strip per pass over all the rows. Each
 * column still adds its rows in order: the same bits. Measured on a
 * [4096, 1024] sum over dim 0 (a 2-core AVX-512 Xeon, call by call against
 * the strips over all rows, medians of 31): 6.4-7.6 -> 9.5-10.4 GB/s at 1
 * thread, 14.7-19.4 -> 19.6-27.6 at 2; 8-24 rows a block were within 10%
 * of each other, 1 and 64 slower. max / argmax over dim 0 of the same
 * (against the build before, processes alternating, medians of 41): amax
 * 4.9-6.2 -> 7.3-13.4 GB/s at 1 thread, 6.9-10.0 -> 12.6-20.3 at 2; argmax
 * 3.7-4.8 -> 6.2-11.8 and 6.2-7.5 -> 11.5-17.2. */
#define OUT_RB 16

static void outer_sums(const float *p0, int64_t R, int64_t rs, int64_t w, double *acc) {
    for (int64_t r0 = 0; r0 < R; r0 += OUT_RB) {
        int64_t rb = R - r0 < OUT_RB ? R - r0 : OUT_RB;
        for (int64_t c = 0; c < w; c += 64) {
            int64_t nc = w - c < 64 ? w - c : 64;
#define SUM_CALL(NU) cols_sum(p0 + r0 * rs + c, rb, rs, NU, kl, acc + c, r0 == 0)
            COLS_SWITCH(nc, SUM_CALL);
        }
    }
}

static void outer_ss(const float *p0, int64_t R, int64_t rs, int64_t w, const double *mean, double *ss) {
    for (int64_t r0 = 0; r0 < R; r0 += OUT_RB) {
        int64_t rb = R - r0 < OUT_RB ? R - r0 : OUT_RB;
        for (int64_t c = 0; c < w; c += 64) {
            int64_t nc = w - c < 64 ? w - c : 64;
#define SS_CALL(NU) cols_ss(p0 + r0 * rs + c, rb, rs, NU, kl, mean + c, ss + c, r0 == 0)
            COLS_SWITCH(nc, SS_CALL);
        }
    }
}

static void outer_ext(const float *p0, int64_t R, int64_t rs, int64_t w, bool mn, bool arg, float *best,
                      int32_t *idx) {
    for (int64_t r0 = 0; r0 < R; r0 += OUT_RB) {   /* as outer_sums */
        int64_t r1 = R - r0 < OUT_RB ? R : r0 + OUT_RB;
        for (int64_t c = 0; c < w; c += 64) {
            int64_t nc = w - c < 64 ? w - c : 64;
#define EXT_CALL(NU) cols_ext(p0 + c, r0, r1, rs, NU, kl, mn, arg, best + c, idx + c)
            COLS_SWITCH(nc, EXT_CALL);
        }
    }
}

/* ---- AMAX_BACKWARD's row (reduce_driver.h has the rest): ref's bits ---- */

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
