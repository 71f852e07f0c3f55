/* avx2_gemm.c — F32 GEMM for MATMUL and LINEAR, AVX2+FMA (Goto/BLIS style).
 *
 * C (M, N) = A (M, K) @ B (K, N) (+ bias (N) for LINEAR). Any strides: a
 * transposed operand is only a different packing loop. Structure:
 *   jc over N in NC columns -> pc over K in KC steps (pack B: KC x NC into
 *   16-column panels, zero-padded) -> ic over M in MC rows (pack A: MC x KC
 *   into 6-row panels, zero-padded) -> 6x16 microkernel (12 ymm accumulators,
 *   broadcast A, two loads of B, FMA; its k loop is inline assembly).
 * Packing: B with unit stride along N is copied row by row (one stream);
 * B with unit stride along K (LINEAR's w^T) and A with unit stride along K
 * are transposed 8x8 in registers; A with unit stride along M is copied 6
 * floats per k. One M block and B with unit stride along N: B's full
 * panels are read in place, not packed, unless B's row stride is a
 * multiple of 2 KiB (512 floats) and M > 18: then a panel's KC rows fall
 * into a few cache sets (L1 and L2), evict each other and every row panel
 * of A re-reads them from L3. Measured (1 thread, best of 60, B cold =
 * one of 4-32 weights, GFLOP/s in place / packed): 64x256x1024 (M x K x
 * N) 53 / 77, 128x256x2048 52 / 83, 32x1024x1024 49 / 64, 24x1024x1024
 * 51 / 57, 128x256x512 81 / 84 (B hot); M <= 18 packing loses (12x1024x1024
 * hot 51 / 40: B is used by 2 panels only); other strides read in place
 * (64x256x784 hot 98 / 86, 64x128x3136 hot 93 / 84).
 * The first KC block stores (plus the bias), later blocks add. Tiles cut by
 * M/N edges, and C without unit column stride, go through a 6x16 scratch
 * tile, with the same float operations as the direct path.
 *
 * Threads: C is cut along N into column panels shared out dynamically
 * (gemm_dynamic: each thread owns an equal range and takes the others'
 * remaining panels when its own are done; each thread packs all of A once,
 * or reads A's rows in place when they are contiguous) or, when N is narrow
 * or A is large, statically into nt pieces along N (multiples of 16
 * columns) or M (multiples of 6 rows). K is never split, and the KC blocking
 * does not depend on the split, so every element of C sees the same
 * operations in the same order: results are bitwise independent of the
 * thread count and of which thread took which panel. Pack buffers are per
 * thread (_Thread_local), grown on demand and reused across calls (they live
 * as long as the thread).
 *
 * Declines: dtype other than F32 (registered for F32 only), LINEAR whose
 * leading dims do not merge into one row dim, and - only when oneDNN is
 * built (it is registered below us, priority 10) - the shapes where oneDNN
 * 2.6 was measured as fast or faster: A not stored column-major, K > 16,
 * M <= 64 and a deep K: N < K / 2 (B row-major) or N < K / 16 (B stored
 * K-major, LINEAR's w^T). Remeasured 2026-11-26 (after the dynamic column
 * split; 2-core AMD EPYC, 8 operands used in turn, median of 150,
 * oneDNN / our time, 1 and 2 threads): matmul 64x128x3136 (M x N x K)
 * 0.82 0.85, 64x128x1024 0.83 0.94, 64x256x1024 1.00 0.89, 16x512x4096
 * 0.84 0.78, LINEAR 64x128x3136 0.95 0.99, 32x128x3136 0.93 0.97
 * (oneDNN's); matmul 64x256x256 1.02 1.00, 48x512x512 1.22 1.26, 64x512x1024
 * 1.37 1.17, LINEAR 64x256x256 0.99 1.11, 32x1024x1024 1.04 1.24,
 * 64x512x784 0.99 1.06, 64x128x1024 1.10 1.16, 64x256x1024 1.04 1.21,
 * 16x256x256 1.10 1.01 (ours). Before, the rule was N < 2 K: measured
 * earlier the same day (2-core AMD
 * EPYC, 4-32 weights used in turn so that B comes from L3 as in training,
 * median of 40, ours / oneDNN time ratio inverted, 1 and 2 threads):
 *     LINEAR 512x768x256 1.06 1.08, 512x256x256 1.14 1.14, 512x256x1024
 *     1.18 1.14, 128x512x784 1.03 1.04, 128x256x512 1.03 1.03 (ours);
 *     LINEAR 64x128x3136 0.98 0.94, matmul 64x256x256 0.95 0.95, 64x128x3136
 *     0.81 0.86 (oneDNN); matmul 128x256x512 1.07 1.08, 256x256x256 1.13
 *     1.11, 512x1024x1024 1.03 1.04 (ours). The older table below (hot
 *     weights, before the B-packing rule) had oneDNN ahead at M = 128:
 * Measured on this Zen 4 (2 shared vCPUs, other
 * jobs running: best of 40 interleaved runs, same process, thread CPU time,
 * repeated 2-3 times; GFLOP/s ours / oneDNN, 1 thread):
 *     shape (M x N x K)                      ours  oneDNN  ratio   served by
 *     LINEAR 128x512x784 (x @ w^T + b)        86     91    0.95    oneDNN
 *     LINEAR 128x256x512                      86     92    0.93    oneDNN
 *     LINEAR 128x10x256                       37     39    0.95    oneDNN
 *     LINEAR 64x128x3136                      72     81    0.88    oneDNN
 *     LINEAR 256x1024x1024                    84     79    1.07    oneDNN
 *     128x784x512 row-major                   92     95    0.97    oneDNN
 *     128x256x512, 256x256x256 row-major      ~      ~     0.93-1.06 oneDNN
 *     1024x1024x1024 row-major                91     87    1.05    oneDNN
 *     N >= 2 K, row-major:
 *       128x512x256 (dx = g @ w)              89     66    1.35    ours
 *       128x512x128, 64x512x256               89     70    1.17-1.35 ours
 *       256x512x256, 512x512x64               92     70    1.26-1.39 ours
 *       128x2048x1024                         56     45    1.25    ours
 *     A^T: 512x784x128 (dW = g^T @ x)         93     92    1.01    ours
 *     A^T: 256x512x128                        92     61    1.50    ours
 *     A^T: 10x256x128                         66     64    1.03    ours
 *     128x256x10 (K = 10)                     60     54    1.11    ours
 * (2 threads: A^T 256x512x128 1.55, 128x512x256 1.35, LINEAR 128x512x784
 * 0.95, 128x10x256 0.80.)
 * Without oneDNN every F32 call is served (the ref kernel is ~10-50x slower).
 */
#include "kernels/kernels.h"
#include "nb_config.h"
#include "vmath.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define NR 16
#define MC 144   /* A block MC x KC = 144 KiB: stays in the 1 MiB L2 */
#define KC 256   /* B micro-panel KC x NR = 16 KiB: stays in the 32 KiB L1 */
#define NC 3072  /* B block KC x NC = 3 MiB: L3 */

#define GEMM_NAME "avx2"
#define GEMM_DYNAMIC 1   /* gemm_dynamic below */
#include "kernels/x86/gemm_driver.h"

typedef struct gemm_buf {
    float *a, *b;
    size_t na, nb;   /* floats held */
} gemm_buf;
static _Thread_local gemm_buf tls_buf;

/* A thread's pack buffers are freed when it exits (pool workers, OpenMP
 * threads of a resized team), through a pthread key whose value is the
 * thread's own tls_buf. */
static pthread_key_t buf_key;
static pthread_once_t buf_key_once = PTHREAD_ONCE_INIT;
static void buf_free(void *v) {
    gemm_buf *b = v;
    free(b->a);
    free(b->b);
    *b = (gemm_buf){0};
}
static void buf_key_make(void) { (void)pthread_key_create(&buf_key, buf_free); }

/* Grows *p to hold n floats (32-byte aligned); false when out of memory. */
static bool buf_reserve(float **p, size_t *have, size_t n) {
    if (*have >= n) return true;
    if (!tls_buf.a && !tls_buf.b) {   /* this thread's first buffer */
        pthread_once(&buf_key_once, buf_key_make);
        (void)pthread_setspecific(buf_key, &tls_buf);
    }
    free(*p);
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    *p = aligned_alloc(64, bytes);
    *have = *p ? n : 0;
    return *p != NULL;
}

/* ---- packing ---- */

/* 8 rows of src (row stride s, k8 contiguous floats each, k8 a multiple of
 * 8) -> dst[k * NR + i] = src[i * s + k]: 8x8 transposes, one block at a
 * time, so that the 8 row pointers and 8 vectors stay in registers (gcc
 * spilled both when the two halves of a panel shared a loop; no measurable
 * change in time: the pass is bound by reading B, cold from L3, ~20 us of
 * a 64x256x256 dX = dY W^T's ~115). */
static inline void pack_tr8(const float *src, int64_t s, int64_t k8, float *dst) {
    const float *p = src, *q = src + 4 * s;
    int64_t s3 = 3 * s;
    for (int64_t k = 0; k < k8; k += 8, dst += 8 * NR) {
        __m256 r[8] = {_mm256_loadu_ps(p + k),      _mm256_loadu_ps(p + s + k), _mm256_loadu_ps(p + 2 * s + k),
                       _mm256_loadu_ps(p + s3 + k), _mm256_loadu_ps(q + k),     _mm256_loadu_ps(q + s + k),
                       _mm256_loadu_ps(q + 2 * s + k), _mm256_loadu_ps(q + s3 + k)};
        nb__tr8x8(r);
        for (int i = 0; i < 8; i++) _mm256_store_ps(dst + i * NR, r[i]);
    }
}

/* B (kc x nc at b, strides s0 along k, s1 along n) -> panels of NR columns:
 * dst[p*kc*NR + k*NR + j] = B[k][p*NR + j], zero beyond nc. */
static void pack_b(const float *b, int64_t s0, int64_t s1, int64_t kc, int64_t nc, float *dst) {
    if (s1 == 1 && nc >= NR) {   /* rows contiguous: read B row by row (one stream, not nc / NR strided ones) */
        int64_t nf = nc / NR * NR;
        for (int64_t k = 0; k < kc; k++) {
            const float *src = b + k * s0;
            float *d = dst + k * NR;
            for (int64_t j0 = 0; j0 < nf; j0 += NR, d += kc * NR) {
                _mm256_store_ps(d, _mm256_loadu_ps(src + j0));
                _mm256_store_ps(d + 8, _mm256_loadu_ps(src + j0 + 8));
            }
        }
        if (nf == nc) return;
        b += nf, dst += nf * kc, nc -= nf;
    }
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += kc * NR) {
        int64_t nn = nc - j0 < NR ? nc - j0 : NR;
        const float *src = b + j0 * s1;
        if (s1 == 1 && nn == NR) {
            for (int64_t k = 0; k < kc; k++) {
                _mm256_store_ps(dst + k * NR, _mm256_loadu_ps(src + k * s0));
                _mm256_store_ps(dst + k * NR + 8, _mm256_loadu_ps(src + k * s0 + 8));
            }
        } else if (s0 == 1 && nn == NR) {   /* columns contiguous along k: 8x8 transposes */
            int64_t k8 = kc / 8 * 8;
            for (int h = 0; h < 2; h++)   /* 8 columns at a time: 8 row streams, few live registers */
                pack_tr8(src + h * 8 * s1, s1, k8, dst + h * 8);
            for (int64_t k = k8; k < kc; k++)
                for (int j = 0; j < NR; j++) dst[k * NR + j] = src[j * s1 + k];
        } else {
            for (int64_t k = 0; k < kc; k++) {
                int64_t j = 0;
                for (; j < nn; j++) dst[k * NR + j] = src[k * s0 + j * s1];
                for (; j < NR; j++) dst[k * NR + j] = 0.0f;
            }
        }
    }
}

/* A (mc x kc at a, strides s0 along m, s1 along k) -> panels of MR rows:
 * dst[p*kc*MR + k*MR + i] = A[p*MR + i][k], zero beyond mc. */
static void pack_a(const float *a, int64_t s0, int64_t s1, int64_t mc, int64_t kc, float *dst) {
    for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += kc * MR) {
        int64_t mm = mc - i0 < MR ? mc - i0 : MR;
        const float *src = a + i0 * s0;
        if (mm == MR && s0 == 1) {   /* the 6 values of a k are adjacent */
            for (int64_t k = 0; k < kc; k++) memcpy(dst + k * MR, src + k * s1, MR * sizeof(float));
        } else if (mm == MR && s1 == 1) {   /* rows contiguous along k: 8 k at a time, 8x8 transposes */
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8) {   /* each store of 8 spills 2 floats into the next k (or the slack) */
                __m256 r[8];
                for (int i = 0; i < MR; i++) r[i] = _mm256_loadu_ps(src + i * s0 + k);
                r[6] = r[7] = _mm256_setzero_ps();
                nb__tr8x8(r);
                for (int i = 0; i < 8; i++) _mm256_storeu_ps(dst + (k + i) * MR, r[i]);
            }
            for (; k < kc; k++)
                for (int i = 0; i < MR; i++) dst[k * MR + i] = src[i * s0 + k];
        } else if (mm == MR) {
            const float *r0 = src, *r1 = src + s0, *r2 = src + 2 * s0, *r3 = src + 3 * s0, *r4 = src + 4 * s0,
                        *r5 = src + 5 * s0;
            for (int64_t k = 0; k < kc; k++) {
                int64_t o = k * s1;
                float *d = dst + k * MR;
                d[0] = r0[o], d[1] = r1[o], d[2] = r2[o], d[3] = r3[o], d[4] = r4[o], d[5] = r5[o];
            }
        } else {
            for (int64_t k = 0; k < kc; k++) {
                int64_t i = 0;
                for (; i < mm; i++) dst[k * MR + i] = src[i * s0 + k * s1];
                for (; i < MR; i++) dst[k * MR + i] = 0.0f;
            }
        }
    }
}

/* ---- microkernel: c (6 x 16, row stride ldc, unit column stride) ----
 * first: c = acc (+ bias[0..15] when bias), else c += acc. rows (1..6):
 * the rows of A that are not zero padding; the k loop computes only
 * ceil(rows / 2) * 2 of them (the others stay 0): a cut tile does less
 * work. Each row's sums are the same whatever rows is. */
static inline void ukr(int64_t kc, const float *restrict a, int64_t lda, const float *restrict b, int64_t ldb,
                       float *restrict c, int64_t ldc, bool first, const float *bias, int rows) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    for (int i = 0; i < MR; i++) {   /* C's lines arrive while the k loop runs */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    /* The k loop is written in assembly: compilers spill accumulators or
     * shuffle registers in this loop (gcc 12 does), which cost ~8%. One
     * k step: two loads of B, six (or 4, 2) broadcasts of A, twelve (8, 4)
     * FMAs. The accumulators start at zero. */
#define NB_GEMM_ZERO(r0, r1)                                                                      \
    "vxorps %[" #r0 "], %[" #r0 "], %[" #r0 "]\n\t" "vxorps %[" #r1 "], %[" #r1 "], %[" #r1 "]\n\t"
/* one row of A: a broadcast from addr, two FMAs */
#define NB_GEMM_ROWD(addr, r0, r1)                                                                \
    "vbroadcastss " addr ", %[x]\n\t"                                                              \
    "vfmadd231ps %[b0], %[x], %[" #r0 "]\n\t"                                                     \
    "vfmadd231ps %[b1], %[x], %[" #r1 "]\n\t"
#define NB_GEMM_ROW(i, r0, r1) NB_GEMM_ROWD("(" #i ")*4(%[a])", r0, r1)   /* packed A: 6 floats a k */
#define NB_GEMM_LOADB "vmovups (%[b]), %[b0]\n\t" "vmovups 32(%[b]), %[b1]\n\t"
#define NB_GEMM_STEP2(u)                                                                          \
    NB_GEMM_LOADB NB_GEMM_ROW(u * 6 + 0, c00, c01) NB_GEMM_ROW(u * 6 + 1, c10, c11) "add %[ldb], %[b]\n\t"
#define NB_GEMM_STEP4(u)                                                                          \
    NB_GEMM_LOADB NB_GEMM_ROW(u * 6 + 0, c00, c01) NB_GEMM_ROW(u * 6 + 1, c10, c11)               \
    NB_GEMM_ROW(u * 6 + 2, c20, c21) NB_GEMM_ROW(u * 6 + 3, c30, c31) "add %[ldb], %[b]\n\t"
#define NB_GEMM_STEP6(u)                                                                          \
    NB_GEMM_LOADB NB_GEMM_ROW(u * 6 + 0, c00, c01) NB_GEMM_ROW(u * 6 + 1, c10, c11)               \
    NB_GEMM_ROW(u * 6 + 2, c20, c21) NB_GEMM_ROW(u * 6 + 3, c30, c31)                             \
    NB_GEMM_ROW(u * 6 + 4, c40, c41) NB_GEMM_ROW(u * 6 + 5, c50, c51) "add %[ldb], %[b]\n\t"
    /* A in place (lda > 0: six whole rows, unit stride along k, lda floats
       apart): row i's k-th value at a + i lda + k, addressed from a and
       a3 = a + 3 lda with the row stride as index (scales 1, 2, 4). */
#define NB_GEMM_STEPD(u)                                                                          \
    NB_GEMM_LOADB NB_GEMM_ROWD(#u "*4(%[a])", c00, c01) NB_GEMM_ROWD(#u "*4(%[a],%[la],1)", c10, c11) \
    NB_GEMM_ROWD(#u "*4(%[a],%[la],2)", c20, c21) NB_GEMM_ROWD(#u "*4(%[a3])", c30, c31)          \
    NB_GEMM_ROWD(#u "*4(%[a],%[la],4)", c40, c41) NB_GEMM_ROWD(#u "*4(%[a3],%[la],2)", c50, c51)   \
    "add %[ldb], %[b]\n\t"
/* The k loop: 4 steps a turn, then the rest one by one; PF: a prefetch a
   turn, ADV4 / ADV1: A's pointers past 4 / 1 steps (a3 and la serve the
   in-place form only). */
#define NB_GEMM_ASM(STEP, PF, ADV4, ADV1)                                                         \
    __asm__(NB_GEMM_ZERO(c00, c01) NB_GEMM_ZERO(c10, c11) NB_GEMM_ZERO(c20, c21)                  \
            NB_GEMM_ZERO(c30, c31) NB_GEMM_ZERO(c40, c41) NB_GEMM_ZERO(c50, c51)                  \
            "test %[n4], %[n4]\n\t"                                                               \
            "jz 2f\n\t"                                                                           \
            "1:\n\t"                                                                              \
            PF                                                                                    \
            STEP(0) STEP(1) STEP(2) STEP(3)                                                       \
            ADV4                                                                                  \
            "dec %[n4]\n\t"                                                                       \
            "jnz 1b\n\t"                                                                          \
            "2:\n\t"                                                                              \
            "test %[n1], %[n1]\n\t"                                                               \
            "jz 4f\n\t"                                                                           \
            "3:\n\t"                                                                              \
            STEP(0)                                                                               \
            ADV1                                                                                  \
            "dec %[n1]\n\t"                                                                       \
            "jnz 3b\n\t"                                                                          \
            "4:\n\t"                                                                              \
            : [a] "+r"(a), [a3] "+r"(a3), [b] "+r"(b), [n4] "+r"(n4), [n1] "+r"(n1), [b0] "=&x"(b0),   \
              [b1] "=&x"(b1), [x] "=&x"(x), [c00] "=&x"(c00), [c01] "=&x"(c01), [c10] "=&x"(c10),       \
              [c11] "=&x"(c11), [c20] "=&x"(c20), [c21] "=&x"(c21), [c30] "=&x"(c30), [c31] "=&x"(c31), \
              [c40] "=&x"(c40), [c41] "=&x"(c41), [c50] "=&x"(c50), [c51] "=&x"(c51)                    \
            : [ldb] "r"(ldb_bytes), [la] "r"(la)                                                  \
            : "cc", "memory")
#define NB_GEMM_PACKED(STEP) NB_GEMM_ASM(STEP, "prefetcht0 256(%[a])\n\t", "add $96, %[a]\n\t", "add $24, %[a]\n\t")
    int64_t n4 = kc / 4, n1 = kc % 4, ldb_bytes = ldb * (int64_t)sizeof(float);
    int64_t la = lda > 0 ? lda * (int64_t)sizeof(float) : 0;
    const float *a3 = lda > 0 ? a + 3 * lda : a;
    __m256 b0, b1, x;
    if (lda > 0)
        NB_GEMM_ASM(NB_GEMM_STEPD, "", "add $16, %[a]\n\t" "add $16, %[a3]\n\t", "add $4, %[a]\n\t" "add $4, %[a3]\n\t");
    else if (rows > 4) NB_GEMM_PACKED(NB_GEMM_STEP6);
    else if (rows > 2) NB_GEMM_PACKED(NB_GEMM_STEP4);
    else NB_GEMM_PACKED(NB_GEMM_STEP2);
#undef NB_GEMM_PACKED
#undef NB_GEMM_STEPD
#undef NB_GEMM_ROWD
#undef NB_GEMM_ASM
#undef NB_GEMM_STEP6
#undef NB_GEMM_STEP4
#undef NB_GEMM_STEP2
#undef NB_GEMM_LOADB
#undef NB_GEMM_ROW
#undef NB_GEMM_ZERO
    __m256 acc[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    if (first) {
        if (bias) {
            __m256 q0 = _mm256_loadu_ps(bias), q1 = _mm256_loadu_ps(bias + 8);
            for (int i = 0; i < MR; i++) {
                acc[2 * i] = _mm256_add_ps(acc[2 * i], q0);
                acc[2 * i + 1] = _mm256_add_ps(acc[2 * i + 1], q1);
            }
        }
        for (int i = 0; i < MR; i++) {
            _mm256_storeu_ps(c + i * ldc, acc[2 * i]);
            _mm256_storeu_ps(c + i * ldc + 8, acc[2 * i + 1]);
        }
    } else {
        for (int i = 0; i < MR; i++) {
            _mm256_storeu_ps(c + i * ldc, _mm256_add_ps(_mm256_loadu_ps(c + i * ldc), acc[2 * i]));
            _mm256_storeu_ps(c + i * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + i * ldc + 8), acc[2 * i + 1]));
        }
    }
}

/* Test and benchmark switches (kernels.h): gemm_adirect's in-place A (0
 * off), gemm_dynamic (0 off: the static split; 2: only thread 0 takes
 * panels, so that every other range is taken over, as a stalled thread's
 * would be). */
int nb__gemm_adirect = 1, nb__gemm_dyn = 1;

/* K in equal blocks of at most KC (784 -> 4 x 196, not 3 x 256 + 16); depends on K only. */
static inline int64_t gemm_kcb(int64_t K) { return (K + (K + KC - 1) / KC - 1) / ((K + KC - 1) / KC); }

/* With several threads (gemm_dynamic), A with unit stride along k is read
 * in place, in whole 6-row panels (the microkernel's lda form; a cut last
 * panel is packed, for its zero rows): every thread would otherwise pack all
 * of A. One thread (gemm_serial) packs, unless C has at most SERIAL_ADIRECT_N
 * columns: reading 6 rows in place measured 0-2% slower than one packed
 * stream at 128x784 @ 784x512 (1.015), 2 threads 1-5% faster; with few
 * columns the pack is a pass over A that few B panels reuse (1 thread, in
 * place against packed, alternated call by call: N 32 1.16x, N 64
 * 1.09-1.10x, N 128 1.04x, N 256 1.00-1.02x, N 512 1.00-1.02x; the AVX-512
 * GEMM's rule, ADIRECT_N there). */
#define SERIAL_ADIRECT_N 256
static inline bool gemm_adirect(const gemm_op *g) { return nb__gemm_adirect && g->as1 == 1 && g->as0 > 0; }

/* The packed A that gemm_cols reads, for all of K at once ("full"): the
 * block of K columns starting at pc at apk + pc * Mpad (Mpad = M rounded up
 * to MR), its panel p at + p * kc * MR - every panel, or with gemm_adirect
 * only each MC block's cut last one. Full packing lets any thread compute
 * any columns (gemm_dynamic) with one pass over A per thread. */
static void gemm_pack_a_full(const gemm_op *g, bool adirect, float *apk) {
    int64_t M = g->M, K = g->K, kcb = gemm_kcb(K), Mpad = (M + MR - 1) / MR * MR;
    for (int64_t pc = 0; pc < K; pc += kcb) {
        int64_t kc = K - pc < kcb ? K - pc : kcb;
        for (int64_t ic = 0; ic < M; ic += MC) {
            int64_t mc = M - ic < MC ? M - ic : MC, mp = adirect ? mc / MR * MR : 0;
            if (mp < mc)
                pack_a(g->a + (ic + mp) * g->as0 + pc * g->as1, g->as0, g->as1, mc - mp, kc,
                       apk + pc * Mpad + (ic + mp) * kc);
        }
    }
}

/* C's columns [j0, j1) (j0 a multiple of NR). apk: A packed by
 * gemm_pack_a_full, or NULL to pack each (K block, MC block) of A just
 * before its use into this thread's buffer. Every element of C sees the
 * same operations whichever columns a call gets. 0 or NB_ENOMEM. */
static int gemm_cols(const gemm_op *g, bool adirect, const float *apk, int64_t j0, int64_t j1) {
    int64_t M = g->M, K = g->K, N = j1 - j0, kcb = gemm_kcb(K), Mpad = (M + MR - 1) / MR * MR;
    int64_t ncmax = N < NC ? (N + NR - 1) / NR * NR : NC;
    int64_t mcmax = M < MC ? Mpad : MC;
    gemm_buf *bf = &tls_buf;
    if (!buf_reserve(&bf->b, &bf->nb, (size_t)(ncmax * kcb)) ||
        (!apk && !buf_reserve(&bf->a, &bf->na, (size_t)(mcmax * kcb + 8))))   /* + slack for pack_a's wide stores */
        return NB_ENOMEM;
    float *Bp = bf->b;
    bool direct = g->cs1 == 1;
    float tile[MR * NR] __attribute__((aligned(32)));
    for (int64_t jc = j0; jc < j1; jc += NC) {
        int64_t nc = j1 - jc < NC ? j1 - jc : NC;
        for (int64_t pc = 0; pc < K; pc += kcb) {
            int64_t kc = K - pc < kcb ? K - pc : kcb;
            bool first = pc == 0;
            /* one M block and rows of B contiguous: full 16-column panels are read in place
               (packing would cost a pass over B), the tail is packed; unless the row stride
               is a multiple of 2 KiB and more than 3 row panels re-read B (see the top) */
            bool bdirect = g->bs1 == 1 && M <= MC && (M <= 3 * MR || g->bs0 % 512 != 0);
            int64_t jp = bdirect ? nc / NR * NR : 0;
            if (jp < nc) pack_b(g->b + pc * g->bs0 + (jc + jp) * g->bs1, g->bs0, g->bs1, kc, nc - jp, Bp + jp * kc);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = M - ic < MC ? M - ic : MC;
                int64_t mp = adirect ? mc / MR * MR : 0;   /* panels read in place (gemm_adirect) */
                const float *Ap;
                if (apk) {
                    Ap = apk + pc * Mpad + ic * kc;
                } else {
                    if (mp < mc)
                        pack_a(g->a + (ic + mp) * g->as0 + pc * g->as1, g->as0, g->as1, mc - mp, kc, bf->a + mp * kc);
                    Ap = bf->a;
                }
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int64_t nn = nc - jr < NR ? nc - jr : NR;
                    bool bd = jr < jp;
                    const float *bp = bd ? g->b + pc * g->bs0 + jc + jr : Bp + jr * kc;
                    int64_t ldb = bd ? g->bs0 : NR;
                    const float *bias = first && g->bias ? g->bias + jc + jr : NULL;
                    /* B read in place: the next column panel's kc rows (one line each) are
                       prefetched, a share per A panel, so that they arrive while this panel
                       computes (a weight cold in L3/DRAM: 64x256x256, 1 thread 0.84-0.91 of the
                       time without, 2 threads 0.91-0.94; hot: no change) */
                    const float *bnext = NULL;
                    int64_t pf_per = 0;
                    if (bd && jc + jr + 2 * NR <= g->N && ic == 0) {
                        bnext = bp + NR;
                        pf_per = (kc + (mc + MR - 1) / MR - 1) / ((mc + MR - 1) / MR);
                    }
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int64_t mm = mc - ir < MR ? mc - ir : MR;
                        if (bnext) {
                            int64_t k0 = ir / MR * pf_per, k1 = k0 + pf_per < kc ? k0 + pf_per : kc;
                            for (int64_t k = k0; k < k1; k++)
                                _mm_prefetch((const char *)(bnext + k * g->bs0), _MM_HINT_T0);
                        }
                        float *c = g->c + (ic + ir) * g->cs0 + (jc + jr) * g->cs1;
                        bool ad = ir < mp;
                        const float *ap = ad ? g->a + (ic + ir) * g->as0 + pc : Ap + ir * kc;
                        int64_t lda = ad ? g->as0 : 0;
                        if (direct && mm == MR && nn == NR) {
                            ukr(kc, ap, lda, bp, ldb, c, g->cs0, first, bias, MR);
                        } else {
                            ukr(kc, ap, lda, bp, ldb, tile, NR, true, bias, (int)mm);
                            for (int64_t i = 0; i < mm; i++)
                                for (int64_t j = 0; j < nn; j++) {
                                    float *d = c + i * g->cs0 + j * g->cs1;
                                    *d = first ? tile[i * NR + j] : *d + tile[i * NR + j];
                                }
                        }
                    }
                }
            }
        }
    }
    return 0;
}

/* C = 0 (+ bias) for K = 0. */
static void gemm_k0(const gemm_op *g) {
    for (int64_t i = 0; i < g->M; i++)
        for (int64_t j = 0; j < g->N; j++) g->c[i * g->cs0 + j * g->cs1] = g->bias ? g->bias[j] : 0.0f;
}

/* One thread's serial GEMM on the sub-problem g. Returns 0 or NB_ENOMEM. */
static int gemm_serial(const gemm_op *g) {
    if (g->M <= 0 || g->N <= 0) return 0;
    if (g->K == 0) {
        gemm_k0(g);
        return 0;
    }
    return gemm_cols(g, gemm_adirect(g) && g->N <= SERIAL_ADIRECT_N, NULL, 0, g->N);
}

/* Full packing of A while it is at most this many floats (2 MiB: within a
 * core's L2 plus a share of L3); a larger A takes the static split. */
#define GEMM_AFULL_MAX (512 * 1024)

/* Dynamic column split (gemm_driver.h's gemm_run, C cut along N): each
 * thread owns an equal range of C's column panels, as in the static split,
 * and takes its panels one at a time from the front of its range; a thread
 * whose range is done takes the next panels of the others' ranges (from
 * their fronts, through the same counters), so a thread on a slower or busier
 * core ends up with fewer panels. Each thread packs all of A once (as in the
 * static split, where every thread needs all of A), so a panel can go to
 * any thread at no cost, and every element of C sees the same operations
 * whoever computes it. Measured on mlp_step (2 threads, this VM): with the
 * static split the two threads finished each GEMM on average 8-17% of its
 * time apart, in both directions (the vCPUs' speed varies); with this,
 * 3-4%. Returns -1 where it does not apply (A over GEMM_AFULL_MAX, more
 * than GEMM_DYN_MAXT threads), else 0 or NB_ENOMEM. */
#define GEMM_DYN_MAXT 64
static int gemm_dynamic(const gemm_op *g, int nt, int64_t ntile) {
    int64_t Mpad = (g->M + MR - 1) / MR * MR;
    if (!nb__gemm_dyn || g->K <= 0 || Mpad * g->K > GEMM_AFULL_MAX || nt > GEMM_DYN_MAXT) return -1;
    struct {
        int64_t next;   /* the range's next panel, taken by fetch-and-add */
        char pad[56];   /* one counter a cache line */
    } ctr[GEMM_DYN_MAXT] __attribute__((aligned(64)));
    for (int t = 0; t < nt; t++) ctr[t].next = ntile * t / nt;
    int rc = 0;
    /* one iteration a thread (nt of them, static schedule); without OpenMP the
       first iteration takes every range, the others find none left */
#pragma omp parallel for num_threads(nb__par_team(nt)) schedule(static, 1) reduction(min : rc)
    for (int me = 0; me < nt; me++) {
        gemm_buf *bf = &tls_buf;
        if (!buf_reserve(&bf->a, &bf->na, (size_t)(Mpad * g->K + 8))) {
            rc = NB_ENOMEM;
            continue;
        }
        bool ad = gemm_adirect(g);
        gemm_pack_a_full(g, ad, bf->a);
        for (int k = nb__gemm_dyn == 2 && me != 0 ? nt : 0; k < nt; k++) {   /* own range, then the others' */
            int t = (me + k) % nt;
            int64_t hi = ntile * (t + 1) / nt;
            for (;;) {
                int64_t p = __atomic_fetch_add(&ctr[t].next, 1, __ATOMIC_RELAXED);
                if (p >= hi) break;
                int64_t j0 = p * NR, j1 = j0 + NR < g->N ? j0 + NR : g->N;
                int r = gemm_cols(g, ad, bf->a, j0, j1);
                if (r < rc) rc = r;
            }
        }
    }
    return rc;
}

/* One thread's C (M, N) = A (M, K) @ B (K, N), any strides in elements:
 * the blocks of avx2_attention.c (which splits its work over threads
 * itself). 0 or NB_ENOMEM. */
int nb__avx2_gemm_block(int64_t M, int64_t N, int64_t K, const float *a, int64_t as0, int64_t as1, const float *b,
                        int64_t bs0, int64_t bs1, float *c, int64_t cs0, int64_t cs1) {
    gemm_op g = {.M = M, .N = N, .K = K, .a = a, .b = b, .c = c, .as0 = as0, .as1 = as1, .bs0 = bs0, .bs1 = bs1,
                 .cs0 = cs0, .cs1 = cs1};
    return gemm_serial(&g);
}

/* Tests set this to 1 to serve every F32 call (the declines off);
 * benchmarks set it to -1 to pass every call oneDNN takes on to oneDNN. */
int nb__avx2_gemm_serve_all = 0;

/* The calls oneDNN serves faster (gemm_onednn_takes: the table at the top
 * of the file; on an AVX-512 CPU, oneDNN's 16-lane code takes every BLAS
 * layout). */
static bool gemm_declines(const gemm_op *g) {
    return gemm_onednn_takes(g, nb__avx2_gemm_serve_all, nb_isa_active() >= NB_ISA_AVX512);
}

void nb__avx2_gemm_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_MATMUL, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_gemm_matmul", 20, gemm_matmul},
        {NB_OP_LINEAR, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_gemm_linear", 20, gemm_linear},
    };
    NB__REGISTER_ALL(ks);
}
