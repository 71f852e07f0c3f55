/* avx512_rows.h — the masked row loop the AVX-512 row-wise kernels share
 * (avx512_rows.c: softmax, log_softmax, cross entropy; avx512_norm.c:
 * layer/rms/group norm): ROWS16 and its LD / ST, the 16-lane form of
 * ../avx2/avx2_rows.h's ROWS8. Internal to the AVX-512 library.
 */
#ifndef NB_AVX512_ROWS_H
#define NB_AVX512_ROWS_H

#include <immintrin.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmath512.h"

/* Runs the statements in ... for i = 0, 16, 32, ... < n: full vectors with
 * plain loads and stores, then one masked tail. Inside, LD(p) loads 16
 * floats at p (0 in the masked-off lanes) and ST(p, v) stores them. */
#define ROWS16(n, i, ...)                                                    \
    do {                                                                     \
        int64_t i = 0;                                                       \
        for (; i + 16 <= (n); i += 16) {                                     \
            const bool full_ = true;                                         \
            const __mmask16 k_ = 0xFFFF;                                     \
            __VA_ARGS__                                                      \
        }                                                                    \
        if (i < (n)) {                                                       \
            const bool full_ = false;                                        \
            const __mmask16 k_ = nb__tail_mask16((int)((n) - i));            \
            __VA_ARGS__                                                      \
        }                                                                    \
    } while (0)
#define LD(p) (full_ ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(k_, (p)))
#define ST(p, v) (full_ ? _mm512_storeu_ps((p), (v)) : _mm512_mask_storeu_ps((p), k_, (v)))

#endif
