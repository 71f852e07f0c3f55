/* ew_driver.h — the row walk that the AVX2 and AVX-512 element-wise
 * kernels share (avx2/avx2_elementwise.c, avx512/avx512_elementwise.c).
 *
 * An element-wise op is a row function (ew_row_fn) over the rows of the
 * registry's merged iteration (nb__iter: out first, then up to two
 * inputs; a missing input has a NULL base). ew_rows splits the rows over
 * OpenMP threads; when rows are few and long it cuts each into chunks of
 * 16-element multiples so every thread gets about eight pieces. Elements
 * are independent, so no split changes a result. The includer defines
 * EW_VEC (its vector type: __m256 or __m512) before including this, and
 * fills ew_par's vectors itself.
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
} ew_par;

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
#pragma omp parallel for num_threads(nt) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) ew_tasks(j, tasks * t / nt, tasks * (t + 1) / nt);
}

#endif
