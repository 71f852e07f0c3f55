/* ew_driver.h — the row walk that the AVX2 and AVX-512 element-wise
 * kernels share (avx2/avx2_elementwise.c, avx512/avx512_elementwise.c).
 *
 * An element-wise op is a row function (ew_row_fn) over the rows of the
 * registry's merged iteration (nb__iter: out first, then up to two
 * inputs; a missing input has a NULL base). ew_rows splits the rows over
 * OpenMP threads; when rows are few and long it cuts each into chunks of
 * 16-element multiples so every thread gets about eight pieces. Elements
 * are independent, so no split changes a result.
 * The row functions themselves are written once too (EW_ROW below): the
 * includer defines op_NAME(x, y, par) on its vectors and, before
 * including this, its vector vocabulary: EW_VEC (the type), EW_W (lanes),
 * EW_MASK (a tail mask's type), EW_TAIL(k) (the first k lanes),
 * EW_LD / EW_ST / EW_STREAM (unaligned load, store, aligned non-temporal
 * store), EW_LDM / EW_STM (masked load and store: lanes outside the mask
 * are not touched) and EW_SET1(p) (*p in every lane). It fills ew_par's
 * vectors itself.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_EW_DRIVER_H
#define NB_X86_EW_DRIVER_H

#include "kernels/kernels.h"
#include "nb_config.h"

#include <immintrin.h>
#include <stdint.h>

typedef struct ew_par {
    EW_VEC s;      /* scalar[0] as float, in every lane (*_SCALAR, FILL, CLAMP's min, GELU's form) */
    EW_VEC s1;     /* scalar[1] as float (CLAMP's max) */
    bool stream;   /* non-temporal stores: the output is far larger than the caches */
    bool pf;       /* with stream: prefetch the contiguous inputs EW_PF_AHEAD bytes ahead (ew_pf_wanted) */
} ew_par;

/* How far ahead a streaming row prefetches its contiguous inputs (to L1),
 * and for which ops (ew_pf_wanted): those with two inputs or a
 * transcendental's work per element. Measured on 16M floats into a fresh
 * output, a 2-core AVX-512 Xeon VM (Cascade Lake), the prefetching row
 * against the plain one alternated call by call in one process (medians of
 * 15-21, two runs; 256-2048 bytes ahead tried, 1024 the best), time with /
 * without at 1 thread; at 2: exp 0.90-0.92; 0.90, tanh 0.90-0.93; 0.95-0.97,
 * sigmoid 0.90; 0.93-0.94, gelu 0.96-0.98; 0.97-0.98, add 0.95-0.97;
 * 0.94-0.95, mul 0.94-0.95; 0.94, add with a row broadcast 0.93; 0.89-0.90.
 * relu took 1.03-1.04x as long with it (0.96-0.97x the rate), so the cheap
 * one-input ops (relu, neg, scalar ops...) keep the plain row: the
 * hardware prefetcher already keeps up with them. */
#define EW_PF_AHEAD 1024
static inline bool ew_pf_wanted(int nin, int64_t grain) { return nin == 2 || grain == NB_GRAIN_TRANSCENDENTAL; }

/* A row: n elements, byte strides so/sa/sb (the iterator's). */
typedef void (*ew_row_fn)(char *o, const char *a, const char *b, int64_t n, int64_t so, int64_t sa, int64_t sb,
                          const ew_par *p);

static const float ew_zero[16];   /* stands in for a missing input (stride 0) */

typedef struct ew_job {
    nb__iter it;       /* merged operands (out, in[0], in[1]) */
    int64_t len;       /* elements per row */
    int64_t cpr;       /* chunks per row (1 unless rows are few and long) */
    int64_t chunk;     /* elements per chunk, a multiple of 16 */
    ew_row_fn f;       /* the op's row function */
    ew_par par;        /* its parameters */
} ew_job;

/* Runs tasks [t0, t1), task t being chunk t % cpr of row t / cpr. Row
 * pointers come from decomposing the first row, then an odometer. */
static void ew_tasks(const ew_job *j, int64_t t0, int64_t t1) {
    const nb__iter *it = &j->it;
    int last = it->ndim - 1;
    int64_t idx[NB_MAX_DIMS] = {0};
    char *q[3];
    int64_t r = t0 / j->cpr;
    for (int o = 0; o < 3; o++) q[o] = it->base[o];
    for (int d = last - 1; d >= 0; d--) {
        idx[d] = r % it->shape[d];
        r /= it->shape[d];
        for (int o = 0; o < it->n; o++) q[o] += idx[d] * it->stride[o][d];
    }
    int64_t s0 = it->stride[0][last], s1 = it->stride[1][last], s2 = it->stride[2][last];
    for (int64_t t = t0; t < t1; t++) {
        int64_t k = t % j->cpr, c0 = k * j->chunk, c1 = c0 + j->chunk < j->len ? c0 + j->chunk : j->len;
        if (c0 < c1)
            j->f(q[0] + c0 * s0, q[1] ? q[1] + c0 * s1 : NULL, q[2] ? q[2] + c0 * s2 : NULL, c1 - c0, s0, s1, s2,
                 &j->par);
        if (k + 1 < j->cpr) continue;
        for (int d = last - 1; d >= 0; d--) {   /* next row */
            if (++idx[d] < it->shape[d]) {
                for (int o = 0; o < it->n; o++) q[o] += it->stride[o][d];
                break;
            }
            idx[d] = 0;
            for (int o = 0; o < it->n; o++) q[o] -= it->stride[o][d] * (it->shape[d] - 1);
        }
    }
    if (j->par.stream) _mm_sfence();   /* order the non-temporal stores before the caller reads out */
}

static inline bool is_f32(const nb_tensor *t) { return nb_dtype_of(t) == NB_DTYPE_F32; }

/* True when a has nin inputs and they and out are all F32 (what the
 * element-wise kernels serve), filling ops with (out, in[0], in[1]) for
 * nb__iter_init (NULL past nin). */
static inline bool ew_f32_operands(const nb_kernel_args *a, int nin, const nb_tensor *ops[3]) {
    if (a->nin < nin || !is_f32(a->out)) return false;
    for (int i = 0; i < nin; i++)
        if (!is_f32(a->in[i])) return false;
    ops[0] = a->out, ops[1] = nin > 0 ? a->in[0] : NULL, ops[2] = nin > 1 ? a->in[1] : NULL;
    return true;
}

/* True when operand o of a 2-D iteration runs across rows (a transposed
 * view: adjacent floats down a column, not along a row). */
static inline bool ew_across(const nb__iter *it, int o) {
    return it->base[o] && it->stride[o][0] == 4 && it->stride[o][1] != 4 && it->stride[o][1] != 0;
}

static inline bool ew_wants_tiles(const nb__iter *it) {
    if (it->ndim != 2) return false;
    for (int o = 0; o < it->n; o++)
        if (ew_across(it, o)) return true;
    return false;
}

/* Loads of a contiguous (V) or broadcast (S) operand at element i, whole
 * vector or the masked tail; PFV prefetches a contiguous operand's lines
 * for the two vectors EW_PF_AHEAD bytes past i (PFS: nothing to fetch). */
#define LDV(P, i) EW_LD((P) + (i))
#define LDS(P, i) EW_SET1(P)
#define PFV(P, i)                                                                              \
    do {                                                                                       \
        _mm_prefetch((const char *)((P) + (i)) + EW_PF_AHEAD, _MM_HINT_T0);                    \
        if (2 * 4 * EW_W > 64) _mm_prefetch((const char *)((P) + (i)) + EW_PF_AHEAD + 64, _MM_HINT_T0); \
    } while (0)
#define PFS(P, i) ((void)0)
#define LDVM(P, i, m) EW_LDM((P) + (i), m)
#define LDSM(P, i, m) EW_SET1(P)

/* o[i] = op(A[i], B[i]) for i < n, A and B loaded by LA / LB (LAM / LBM
 * for the masked tail): two independent vectors per step, then one, then
 * one masked tail (whose store touches no element past n). Streaming: a
 * masked head up to a vector-aligned o, then aligned non-temporal stores. */
#define ROW_LOOP(NAME, LA, LAM, PA, LB, LBM, PB)                                                      \
    do {                                                                                              \
        int64_t i = 0;                                                                                \
        if (p->stream) {                                                                              \
            const uintptr_t al = 4 * EW_W;                                                            \
            int64_t h = (int64_t)(((al - ((uintptr_t)o & (al - 1))) & (al - 1)) / 4);                  \
            h = h < n ? h : n;                                                                        \
            if (h) {                                                                                  \
                EW_MASK m = EW_TAIL((int)h);                                                           \
                EW_STM(o, m, op_##NAME(LAM(A, 0, m), LBM(B, 0, m), p));                                \
            }                                                                                         \
            for (i = h; i + 2 * EW_W <= n; i += 2 * EW_W) {                                           \
                if (p->pf) {                                                                          \
                    PA(A, i);                                                                         \
                    PB(B, i);                                                                         \
                }                                                                                     \
                EW_VEC r0 = op_##NAME(LA(A, i), LB(B, i), p);                                         \
                EW_VEC r1 = op_##NAME(LA(A, i + EW_W), LB(B, i + EW_W), p);                           \
                EW_STREAM(o + i, r0);                                                                 \
                EW_STREAM(o + i + EW_W, r1);                                                          \
            }                                                                                         \
            for (; i + EW_W <= n; i += EW_W) EW_STREAM(o + i, op_##NAME(LA(A, i), LB(B, i), p));      \
        }                                                                                             \
        for (; i + 2 * EW_W <= n; i += 2 * EW_W) {                                                    \
            EW_VEC r0 = op_##NAME(LA(A, i), LB(B, i), p);                                             \
            EW_VEC r1 = op_##NAME(LA(A, i + EW_W), LB(B, i + EW_W), p);                               \
            EW_ST(o + i, r0);                                                                         \
            EW_ST(o + i + EW_W, r1);                                                                  \
        }                                                                                             \
        for (; i + EW_W <= n; i += EW_W) EW_ST(o + i, op_##NAME(LA(A, i), LB(B, i), p));              \
        if (i < n) {                                                                                  \
            EW_MASK m = EW_TAIL((int)(n - i));                                                         \
            EW_STM(o + i, m, op_##NAME(LAM(A, i, m), LBM(B, i, m), p));                                \
        }                                                                                             \
    } while (0)

/* Gathers EW_W elements of each strided operand, runs the op, scatters. */
#define ROW_STRIDED(NAME)                                                                 \
    do {                                                                                  \
        float xa[EW_W], xb[EW_W], xo[EW_W];                                               \
        for (int64_t i = 0; i < n; i += EW_W) {                                           \
            int k = n - i < EW_W ? (int)(n - i) : EW_W;                                    \
            for (int j = 0; j < k; j++) {                                                 \
                xa[j] = A[(i + j) * sa];                                                  \
                xb[j] = B[(i + j) * sb];                                                  \
            }                                                                             \
            for (int j = k; j < EW_W; j++) xa[j] = xb[j] = 0.0f;                          \
            EW_ST(xo, op_##NAME(EW_LD(xa), EW_LD(xb), p));                                \
            for (int j = 0; j < k; j++) o[(i + j) * so] = xo[j];                          \
        }                                                                                 \
    } while (0)

/* row_NAME (an ew_row_fn): the vector loops for every mix of contiguous
 * and broadcast inputs (out contiguous), else the gathering loop. */
#define EW_ROW(NAME)                                                                                 \
    static void row_##NAME(char *po, const char *pa, const char *pb, int64_t n, int64_t so, int64_t sa, \
                           int64_t sb, const ew_par *p) {                                           \
        float *o = (float *)po;                                                                      \
        const float *A = pa ? (const float *)pa : ew_zero, *B = pb ? (const float *)pb : ew_zero;    \
        so /= 4, sa = pa ? sa / 4 : 0, sb = pb ? sb / 4 : 0;                                         \
        if (so == 1 && (sa | 1) == 1 && (sb | 1) == 1) {                                             \
            if (sa && sb) ROW_LOOP(NAME, LDV, LDVM, PFV, LDV, LDVM, PFV);                            \
            else if (sa) ROW_LOOP(NAME, LDV, LDVM, PFV, LDS, LDSM, PFS);                             \
            else if (sb) ROW_LOOP(NAME, LDS, LDSM, PFS, LDV, LDVM, PFV);                             \
            else ROW_LOOP(NAME, LDS, LDSM, PFS, LDS, LDSM, PFS);                                     \
        } else {                                                                                     \
            ROW_STRIDED(NAME);                                                                       \
        }                                                                                            \
    }

/* All of j's rows (total elements in all), on up to nt threads. */
static void ew_rows(ew_job *j, int64_t total, int nt) {
    int64_t rows = total / j->len;
    j->cpr = 1;
    j->chunk = j->len;
    if (nt <= 1) {
        ew_tasks(j, 0, rows);
        return;
    }
    /* few long rows: cut them into chunks so every thread gets ~8 pieces */
    if (rows < 8 * (int64_t)nt) {
        int64_t want = (8 * (int64_t)nt + rows - 1) / rows;
        j->chunk = ((j->len + want - 1) / want + 15) / 16 * 16;
        j->cpr = (j->len + j->chunk - 1) / j->chunk;
    }
    int64_t tasks = rows * j->cpr;
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) ew_tasks(j, tasks * t / nt, tasks * (t + 1) / nt);
}

#endif
