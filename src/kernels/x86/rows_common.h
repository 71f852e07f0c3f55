/* rows_common.h — the ISA-neutral row helpers of the AVX2 and AVX-512
 * row-wise kernels: row offsets and the flat-layout test, the thread chunk,
 * the F32 sum block and the streaming-store rule. Included by
 * avx2/avx2_rows.h (so by avx2_rows.c and avx2_norm.c) and by
 * avx512/avx512_rows.c and avx512/avx512_norm.c, each in its own library (compiled with that
 * library's -m flags: no intrinsics here). The op entry points those files
 * share are in rows_driver.h.
 * Internal to the x86 kernel libraries.
 */
#ifndef NB_X86_ROWS_COMMON_H
#define NB_X86_ROWS_COMMON_H

#include "kernels/kernels.h"

#include <stdbool.h>
#include <stdint.h>

/* Row sums in F32 (ROWSUM, ROWSUM16) are emptied into a double every
 * SUMBLK elements. */
#define SUMBLK 512

/* Streaming (non-temporal) stores for whole rows of at most NT_MAXROW
 * floats starting on a 32-byte boundary with n % 8 == 0, in outputs of
 * NT_MINTOTAL floats or more (large row-major outputs: measured in /tmp
 * bench, see the report); each streamed row ends with _mm_sfence, so the
 * rows are ordered before any later read. ROWS_NT 0 turns them off. */
#ifndef ROWS_NT
#define ROWS_NT 1
#endif
#define NT_MAXROW 2048
#define NT_MINTOTAL (1 << 20)   /* outputs smaller than this stay in cache */
static inline bool stream_ok(const float *p, int64_t n, bool big) {
    return ROWS_NT && big && n <= NT_MAXROW && n % 8 == 0 && ((uintptr_t)p & 31) == 0;
}

/* Element offset of row r of t: rows are the positions of every dim except
 * `skip` (C order); a contiguous t with skip its last dim is the fast case. */
static inline int64_t row_off(const nb_tensor *t, int skip, int64_t r, int64_t len, bool flat) {
    return flat ? r * len : nb__row_offset(t, skip, r);
}

static inline bool flat_rows(const nb_tensor *t, int dim) { return dim == t->ndim - 1 && nb_is_contiguous(t); }

/* Rows handed to a thread at a time: about 16K floats, or fewer so that
 * each of nt threads can take about 4 chunks of the rows: at 16K floats, a
 * (64, 1024) softmax made 4 chunks for 8 threads (nt from the grain), so
 * half of them had none. Each row is still computed whole by one thread:
 * the bits do not depend on the chunk. */
static inline int64_t row_chunk(int64_t n, int64_t rows, int nt) {
    int64_t c = n >= 16384 ? 1 : 16384 / (n ? n : 1), even = rows / (4 * (int64_t)(nt > 1 ? nt : 1));
    return even < c ? (even < 1 ? 1 : even) : c;
}

/* Row r of a (rows, C) F32 tensor, or the (C) tensor itself (r 0), any
 * strides, as floats into dst[0..C); t NULL: dflt everywhere. False when t
 * is not F32 or not of that shape (the kernel declines). batch_norm's
 * stats, weights and biases; group_norm's weight and bias. */
static inline bool vec_row(const nb_tensor *t, int64_t r, int64_t C, float dflt, float *dst) {
    if (!t) {
        for (int64_t c = 0; c < C; c++) dst[c] = dflt;
        return true;
    }
    if (t->dtype != NB_DTYPE_F32) return false;
    const float *p = nb_data(t);
    int64_t st;
    if (t->ndim == 1 && r == 0 && t->shape[0] == C) {
        st = t->stride[0];
    } else if (t->ndim == 2 && t->shape[1] == C && r < t->shape[0]) {
        p += r * t->stride[0];
        st = t->stride[1];
    } else {
        return false;
    }
    for (int64_t c = 0; c < C; c++) dst[c] = p[c * st];
    return true;
}

#endif
