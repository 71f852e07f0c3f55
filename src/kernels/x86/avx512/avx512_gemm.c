/* avx512_gemm.c — F32 GEMM for MATMUL and LINEAR, AVX-512 (Goto/BLIS style).
 *
 * The 16-lane twin of ../avx2/avx2_gemm.c: the same algorithm, read that
 * file's header first. C (M, N) = A (M, K) @ B (K, N) (+ bias (N) for
 * LINEAR), any strides. Loops: jc over N in NC columns -> pc over K in
 * blocks of at most KC (pack B: KC x NC into 32-column panels, zero-padded)
 * -> ic over M in MC rows (pack A: MC x KC into 6-row panels, zero-padded)
 * -> jr over 32-column panels -> ir over 6-row panels -> 6x32 microkernel
 * (12 zmm accumulators; per k step two 16-float loads of B, six broadcasts
 * of A, twelve FMAs; 4- and 2-row variants for tiles cut by M).
 * Calls with B of unit stride along K and few rows (gY W^T in a backward)
 * take a transposed 32x12 tile instead ("vm", above gemm_serial: B read
 * in place, the same bits). A thread's C of at most ADIRECT_N columns
 * reads A's full 6-row panels in place (kloop's lda form) instead of packing
 * them, when A's rows are contiguous along K: the same bits.
 * Differences from the AVX2 file: NR = 32; tiles cut by N are read and
 * written with masked loads and stores (__mmask16) straight into C (no
 * scratch tile; the scratch tile remains only for C without unit column
 * stride); B is read in place (one M block, rows of B contiguous) only
 * when its row stride is not a multiple of 32 floats, since with 48 KiB
 * 12-way L1d a stride of a multiple of 128 bytes maps the 2 x KC lines of
 * a micro-panel onto a few sets and they evict each other.
 *
 * The k loop is inline assembly, the AVX2 file's template with zmm
 * operands. Written with intrinsics first: gcc 12 kept it free of stack
 * spills (32 zmm registers, 15 live) but re-assigned accumulators through
 * the 132-form FMAs and added 3-12 register moves per 32-48 FMAs in the
 * inner loops (objdump -d); the assembly has none, and is the form the
 * AVX2 kernel was measured with. (The rest of the file is intrinsics.)
 *
 * Blocking for a Xeon core with 48 KiB L1d and 2 MiB L2 (Ice Lake /
 * Sapphire Rapids server):
 *   KC = 256: a B micro-panel KC x NR = 32 KiB stays in L1d (two thirds of
 *        it) while the ir loop reuses it MC / 6 times; the 6 KiB A
 *        micro-panel streams from L2 beside it.
 *   MC = 192: the packed A block MC x KC = 192 KiB stays in L2.
 *   NC = 1024: the packed B block KC x NC = 1 MiB also stays in L2 (with
 *        the A block 1.2 MiB of 2 MiB), so the ic loop re-reads B from L2,
 *        not L3; A is repacked once per NC columns, 1 / (2 NC) of the work.
 * On a core with 32 KiB L1d and 1 MiB L2 (Cascade Lake, a 2-core VM) none
 * of that fits: the micro-panel fills L1d and the B block fills L2. The
 * blockings (KC, MC, NC) = (128, 192, 1024), (128, 384, 1024),
 * (128, 192, 2048), (256, 192, 512), (256, 96, 512), (256, 144, 640) and
 * (256, 384, 384), switched call by call in one process (runtime copies of
 * the constants, 1024^3 and 2048^3 at 1 and 2 threads, 64x256x256 with 32
 * cold W), were no better than these (within +-3%, the sign changing
 * between runs), so they stay: the L2 streamer keeps B coming. This VM's
 * 1024^3 sits at 65-75% of its FMA loop's peak, oneDNN's matmul and
 * OpenBLAS (PyTorch) alike.
 * Where the rest goes (1 thread, this loop copied into a harness with the
 * microkernel unchanged, best of 5; in % of benchmarks/fma_peak's rate):
 * the 6x32 kernel on one B micro-panel and 1-32 A micro-panels alone
 * reaches 84-93% (KC 64..256); the whole loop on 1024^3 / 2048^3 reaches
 * 60-71%; with C's tiles written to one scratch tile instead 66-82%; with
 * packing also skipped (the packed blocks reused) 74-88%. So C's K-block
 * round trips cost 5-15 points and packing A and B another 5-10.
 * Not kept, same harness: B packed panel by panel just before the first
 * ic block uses it (no gain); the next tile's C lines prefetched to L2
 * (prefetcht1) before each tile (no gain); A, B and C on 2 MiB pages
 * (madvise MADV_HUGEPAGE: +3-4 points at 2048^3, within noise at 1024^3).
 * K is cut into equal blocks of at most KC, as in the AVX2 file. KC is
 * also the AVX2 file's on purpose: with the same K blocks, and each
 * element's sum the same chain (acc = fma(a_ik, b_kj, acc) over k from
 * zero, + bias, then C + acc per later block), every result is bitwise the
 * AVX2 GEMM's, so a backward gives the same bits on either ISA
 * (tests/kernels/test_avx512_gemm.c asserts it). Changing KC here (or
 * there) alone breaks that.
 *
 * Threads: exactly as the AVX2 file. C is cut into nt pieces along N
 * (multiples of 32 columns) or, when N is narrow, along M (multiples of 6
 * rows); K is never split, and the K blocking depends on K only (not on
 * the split, M, N, MC or NC), so every element of C sees the same float
 * operations in the same order (first K block: acc (+ bias) stored; later
 * blocks: C + acc; acc a chain of FMAs over k in order): results are
 * bitwise independent of the thread count. Masked and scratch-tile paths
 * do the same operations as the full-tile path. Pack buffers are per
 * thread (_Thread_local), grown on demand, freed at thread exit.
 *
 * Serving (registered above the AVX2 GEMM and oneDNN, see the register
 * function): inside a backward node (nb__thread_invariant) every F32 call,
 * since oneDNN declines there; outside, it declines exactly the calls the
 * AVX2 GEMM passes on to oneDNN on an AVX-512 CPU (gemm_declines below), so
 * forward calls keep going where they went before this kernel existed.
 * Whether forward calls should come here is decided by benchmarks.
 */
#include "kernels/kernels.h"
#include "nb_config.h"
#include "../avx2/vmath.h"   /* nb__tr8x8 (256-bit; the avx512 library is also built with -mavx2) */
#include "vmath512.h"   /* nb__w_tr16x16 */

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define NR 32
#define MC 192   /* A block MC x KC = 192 KiB: L2 (2 MiB) */
#define KC 256   /* B micro-panel KC x NR = 32 KiB: L1d (48 KiB) */
#define NC 1024  /* B block KC x NC = 1 MiB: L2 beside the A block */

/* A is read in place (its full 6-row panels, rows contiguous along K) when
 * a thread's C has at most ADIRECT_N columns: packing A costs a pass
 * over A that only ncmax / NR micro-panels of B then reuse. Measured (1
 * thread, call by call, packed vs in place, GFLOP/s ratio): N 32 1.26x,
 * N 64 1.11-1.17x (K 64-2048, M 64-2048, row strides multiples of 4 KiB
 * included), N 128 1.07x, N 256 0.99-1.09x (mostly 1.01-1.04), N 384
 * 1.03x, N 512 0.95-1.00x, N 1024 0.95x. */
#define ADIRECT_N 256
#define GEMM_NAME "avx512"
#include "kernels/x86/gemm_driver.h"

typedef struct gemm_buf {
    float *a, *b;    /* packed A block, packed B block (64-byte aligned) */
    size_t na, nb;   /* floats held */
} gemm_buf;
static _Thread_local gemm_buf tls_buf;

/* A thread's pack buffers are freed when it exits, through a pthread key
 * whose value is the thread's own tls_buf (as in the AVX2 file). */
static pthread_key_t buf_key;
static pthread_once_t buf_key_once = PTHREAD_ONCE_INIT;
static void buf_free(void *v) {
    gemm_buf *b = v;
    free(b->a);
    free(b->b);
    *b = (gemm_buf){0};
}
static void buf_key_make(void) { (void)pthread_key_create(&buf_key, buf_free); }

/* Grows *p to hold n floats (64-byte aligned); false when out of memory. */
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

/* Lanes i < n set (n in 0..16; n < 0 counts as 0). */
static inline __mmask16 lanes(int64_t n) {
    return (__mmask16)(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1u);
}

/* ---- packing ---- */

/* B (kc x nc at b, strides s0 along k, s1 along n) -> panels of NR columns:
 * dst[p*kc*NR + k*NR + j] = B[k][p*NR + j], zero beyond nc. */
static void pack_b(const float *b, int64_t s0, int64_t s1, int64_t kc, int64_t nc, float *dst) {
    if (s1 == 1 && nc >= NR) {   /* rows contiguous: read B row by row (one stream) */
        int64_t nf = nc / NR * NR;
        for (int64_t k = 0; k < kc; k++) {
            const float *src = b + k * s0;
            float *d = dst + k * NR;
            for (int64_t j0 = 0; j0 < nf; j0 += NR, d += kc * NR) {
                _mm512_store_ps(d, _mm512_loadu_ps(src + j0));
                _mm512_store_ps(d + 16, _mm512_loadu_ps(src + j0 + 16));
            }
        }
        if (nf == nc) return;
        b += nf, dst += nf * kc, nc -= nf;
    }
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += kc * NR) {
        int64_t nn = nc - j0 < NR ? nc - j0 : NR;
        const float *src = b + j0 * s1;
        if (s1 == 1) {   /* a cut panel of contiguous rows: masked loads, zeros beyond nn */
            __mmask16 m0 = lanes(nn), m1 = lanes(nn - 16);
            for (int64_t k = 0; k < kc; k++) {
                _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src + k * s0));
                _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + k * s0 + 16));
            }
        } else if (s0 == 1 && nn == NR) {   /* columns contiguous along k: 8x8 transposes */
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8)
                for (int h = 0; h < NR / 8; h++) {
                    __m256 r[8];
                    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (h * 8 + i) * s1 + k);
                    nb__tr8x8(r);
                    for (int i = 0; i < 8; i++) _mm256_store_ps(dst + (k + i) * NR + h * 8, r[i]);
                }
            for (; k < kc; k++)
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
 * dst[p*kc*MR + k*MR + i] = A[p*MR + i][k], zero beyond mc. (The AVX2
 * file's pack_a: MR is 6 in both.) */
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
        } else {
            for (int64_t k = 0; k < kc; k++) {
                int64_t i = 0;
                for (; i < mm; i++) dst[k * MR + i] = src[i * s0 + k * s1];
                for (; i < MR; i++) dst[k * MR + i] = 0.0f;
            }
        }
    }
}

/* ---- microkernel ----
 * k loop of R rows (6, 4 or 2): acc[2i], acc[2i+1] = sum over k in order of
 * A[i][k] * B[k][0..15], B[k][16..31], one FMA per k starting from zero
 * (the other accumulators stay zero). a: packed (MR floats per k), or with
 * lda > 0 six whole rows of A read in place (unit stride along k, lda
 * floats apart; R is 6 then): the same FMAs in the same order, so the same
 * bits. b: 32 floats per k, ldb apart. Inline assembly (see the top of the
 * file); the same template as avx2_gemm.c's with zmm operands and 64-byte
 * B halves. One k step: two loads of B, R broadcasts of A, 2 R FMAs. */
#define NB_GEMM_ZERO(r0, r1)                                                                      \
    "vpxord %[" #r0 "], %[" #r0 "], %[" #r0 "]\n\t" "vpxord %[" #r1 "], %[" #r1 "], %[" #r1 "]\n\t"
/* one row of A: a broadcast from addr, two FMAs */
#define NB_GEMM_ROWD(addr, r0, r1)                                                                \
    "vbroadcastss " addr ", %[x]\n\t"                                                             \
    "vfmadd231ps %[b0], %[x], %[" #r0 "]\n\t"                                                     \
    "vfmadd231ps %[b1], %[x], %[" #r1 "]\n\t"
#define NB_GEMM_ROW(i, r0, r1) NB_GEMM_ROWD("(" #i ")*4(%[a])", r0, r1)   /* packed A: 6 floats a k */
#define NB_GEMM_LOADB "vmovups (%[b]), %[b0]\n\t" "vmovups 64(%[b]), %[b1]\n\t"
#define NB_GEMM_STEP2(u)                                                                          \
    NB_GEMM_LOADB NB_GEMM_ROW(u * 6 + 0, c00, c01) NB_GEMM_ROW(u * 6 + 1, c10, c11) "add %[ldb], %[b]\n\t"
#define NB_GEMM_STEP4(u)                                                                          \
    NB_GEMM_LOADB NB_GEMM_ROW(u * 6 + 0, c00, c01) NB_GEMM_ROW(u * 6 + 1, c10, c11)               \
    NB_GEMM_ROW(u * 6 + 2, c20, c21) NB_GEMM_ROW(u * 6 + 3, c30, c31) "add %[ldb], %[b]\n\t"
#define NB_GEMM_STEP6(u)                                                                          \
    NB_GEMM_LOADB NB_GEMM_ROW(u * 6 + 0, c00, c01) NB_GEMM_ROW(u * 6 + 1, c10, c11)               \
    NB_GEMM_ROW(u * 6 + 2, c20, c21) NB_GEMM_ROW(u * 6 + 3, c30, c31)                             \
    NB_GEMM_ROW(u * 6 + 4, c40, c41) NB_GEMM_ROW(u * 6 + 5, c50, c51) "add %[ldb], %[b]\n\t"
/* A in place: row i's k-th value at a + i lda + k, addressed from a and
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
            : [a] "+r"(a), [a3] "+r"(a3), [b] "+r"(b), [n4] "+r"(n4), [n1] "+r"(n1), [b0] "=&v"(b0),   \
              [b1] "=&v"(b1), [x] "=&v"(x), [c00] "=&v"(c00), [c01] "=&v"(c01), [c10] "=&v"(c10),       \
              [c11] "=&v"(c11), [c20] "=&v"(c20), [c21] "=&v"(c21), [c30] "=&v"(c30), [c31] "=&v"(c31), \
              [c40] "=&v"(c40), [c41] "=&v"(c41), [c50] "=&v"(c50), [c51] "=&v"(c51)                    \
            : [ldb] "r"(ldb_bytes), [la] "r"(la)                                                  \
            : "cc", "memory")
#define NB_GEMM_PACKED(STEP) NB_GEMM_ASM(STEP, "prefetcht0 256(%[a])\n\t", "add $96, %[a]\n\t", "add $24, %[a]\n\t")
static inline void kloop(int rows, int64_t kc, const float *a, int64_t lda, const float *b, int64_t ldb,
                         __m512 acc[12]) {
    int64_t n4 = kc / 4, n1 = kc % 4, ldb_bytes = ldb * (int64_t)sizeof(float);
    int64_t la = lda > 0 ? lda * (int64_t)sizeof(float) : 0;
    const float *a3 = lda > 0 ? a + 3 * lda : a;
    __m512 b0, b1, x, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (lda > 0)
        NB_GEMM_ASM(NB_GEMM_STEPD, "", "add $16, %[a]\n\t" "add $16, %[a3]\n\t", "add $4, %[a]\n\t" "add $4, %[a3]\n\t");
    else if (rows > 4) NB_GEMM_PACKED(NB_GEMM_STEP6);
    else if (rows > 2) NB_GEMM_PACKED(NB_GEMM_STEP4);
    else NB_GEMM_PACKED(NB_GEMM_STEP2);
    acc[0] = c00, acc[1] = c01, acc[2] = c10, acc[3] = c11, acc[4] = c20, acc[5] = c21;
    acc[6] = c30, acc[7] = c31, acc[8] = c40, acc[9] = c41, acc[10] = c50, acc[11] = c51;
}
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

/* c (rows x cols of a 6 x 32 tile, row stride ldc, unit column stride):
 * first: c = acc (+ bias[0..cols-1] when bias), else c += acc. rows (1..6):
 * the rows of A that are not zero padding; the k loop computes ceil(rows /
 * 2) * 2 of them, and only rows x cols elements of c are read or written
 * (masked lanes: nothing beyond them is touched). Each element's
 * operations are the same whatever rows and cols are. */
static inline void ukr(int64_t kc, const float *restrict a, const float *restrict b, int64_t ldb, float *restrict c,
                       int64_t ldc, bool first, const float *bias, int rows, int64_t cols, int64_t lda) {
    for (int i = 0; i < rows; i++) {   /* C's lines arrive while the k loop runs */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    __m512 acc[12];
    kloop(rows, kc, a, lda, b, ldb, acc);
    __mmask16 m0 = lanes(cols), m1 = lanes(cols - 16);
    if (first && bias) {
        __m512 q0 = _mm512_maskz_loadu_ps(m0, bias), q1 = _mm512_maskz_loadu_ps(m1, bias + 16);
        for (int i = 0; i < MR; i++) {
            acc[2 * i] = _mm512_add_ps(acc[2 * i], q0);
            acc[2 * i + 1] = _mm512_add_ps(acc[2 * i + 1], q1);
        }
    }
    for (int i = 0; i < rows; i++) {
        float *ci = c + i * ldc;
        __m512 v0 = acc[2 * i], v1 = acc[2 * i + 1];
        if (!first) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), v1);
        }
        _mm512_mask_storeu_ps(ci, m0, v0);
        _mm512_mask_storeu_ps(ci + 16, m1, v1);
    }
}

/* ---- the transposed tile ("vm": vectors along M) ----
 * For B stored with unit stride along K (B = W^T of a row-major W: the
 * input gradient gY W^T of x W, and LINEAR's forward x w^T), the 6x32 path
 * spends about a quarter of a 64 x 256 x 256 call packing B (256 KB of
 * transposes, with W often cold). This path turns the tile around: C tile
 * 32 rows x 12 columns in 24 zmm accumulators (acc[h][j]: rows 16h..16h+15
 * of column j); per k two 16-float loads of A, packed into 32-row k-major
 * panels (vm_pack_a: for such calls A is the small operand, gY), twelve
 * broadcasts of B[k][j] read in place from B (twelve column pointers, each
 * stepping bs0 a k), 24 FMAs. The tile reaches C through 8x8 register
 * transposes (nb__w_tr16x16). Loops: pc over K blocks (the 6x32 path's, kcb) ->
 * pack A -> j0 over 12-column groups (their 12 x kc B values stay in L1)
 * -> 32-row panels of A (from L2).
 * Bits: each element of C is acc = fma(a_ik, b_kj, acc) over k in order
 * from zero per K block (+ bias after the first block, C + acc after later
 * ones): the 6x32 kernel's operations exactly (fma(b, a, acc) is the same
 * rounding of the same product), so a call gives the same bits on either
 * path, and on the AVX2 GEMM (tests/kernels/test_avx512_gemm.c asserts it).
 * Measured (1 thread, call-by-call against the 6x32 path, see vm_takes). */
#define VM_MR 32
#define VM_NR 12

/* A (mc x kc at a, strides s0 along m, s1 along k) -> panels of 32 rows:
 * dst[p*kc*32 + k*32 + i] = A[p*32 + i][k], zero beyond mc. */
static void vm_pack_a(const float *a, int64_t s0, int64_t s1, int64_t mc, int64_t kc, float *dst) {
    for (int64_t i0 = 0; i0 < mc; i0 += VM_MR, dst += kc * VM_MR) {
        int64_t mm = mc - i0 < VM_MR ? mc - i0 : VM_MR;
        const float *src = a + i0 * s0;
        if (s1 == 1) {   /* rows contiguous along k: 8 rows x 8 k at a time, 8x8 transposes */
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8)
                for (int g8 = 0; g8 < VM_MR / 8; g8++) {
                    __m256 r[8];
                    for (int i = 0; i < 8; i++)
                        r[i] = g8 * 8 + i < mm ? _mm256_loadu_ps(src + (g8 * 8 + i) * s0 + k) : _mm256_setzero_ps();
                    nb__tr8x8(r);
                    for (int i = 0; i < 8; i++) _mm256_store_ps(dst + (k + i) * VM_MR + g8 * 8, r[i]);
                }
            for (; k < kc; k++)
                for (int64_t i = 0; i < VM_MR; i++) dst[k * VM_MR + i] = i < mm ? src[i * s0 + k] : 0.0f;
        } else if (s0 == 1) {   /* the rows of a k are adjacent */
            __mmask16 m0 = lanes(mm), m1 = lanes(mm - 16);
            for (int64_t k = 0; k < kc; k++) {
                _mm512_store_ps(dst + k * VM_MR, _mm512_maskz_loadu_ps(m0, src + k * s1));
                _mm512_store_ps(dst + k * VM_MR + 16, _mm512_maskz_loadu_ps(m1, src + k * s1 + 16));
            }
        } else {
            for (int64_t k = 0; k < kc; k++)
                for (int64_t i = 0; i < VM_MR; i++) dst[k * VM_MR + i] = i < mm ? src[i * s0 + k * s1] : 0.0f;
        }
    }
}

/* One step of the k loop: column j's broadcast B value v into its two accumulators. */
#define VM_FMA(j, v)                                                                               \
    do {                                                                                           \
        __m512 b_ = _mm512_set1_ps(v);                                                             \
        c0[j] = _mm512_fmadd_ps(a0, b_, c0[j]);                                                    \
        c1[j] = _mm512_fmadd_ps(a1, b_, c1[j]);                                                    \
    } while (0)

/* The 32 x 12 tile at c (rows x cols of it real, row stride ldc, unit
 * column stride): the k loop over kc (a: the packed panel; B[k][j] at
 * b[k bk + j bl], all 12 columns in bounds), then c = acc (+ bias[j]) when
 * first, else c += acc. Only rows x cols elements of c are read or written.
 * The column addresses are four bases (columns 0, 3, 6, 9) plus bl or 2 bl,
 * so the loop keeps them in registers (twelve pointers did not fit: gcc
 * reloaded them from the stack every k, 10 more uops per 24 FMAs). */
static inline void vm_tile(int64_t kc, const float *restrict a, const float *b, int64_t bk, int64_t bl,
                           float *restrict c, int64_t ldc, int rows, int cols, bool first, const float *bias) {
    __m512 c0[VM_NR], c1[VM_NR];
    for (int j = 0; j < VM_NR; j++) c0[j] = c1[j] = _mm512_setzero_ps();
    if (bl == 1) {   /* B's columns adjacent (row-major B) */
        for (int64_t k = 0; k < kc; k++, b += bk) {
            __m512 a0 = _mm512_load_ps(a + k * VM_MR), a1 = _mm512_load_ps(a + k * VM_MR + 16);
            VM_FMA(0, b[0]); VM_FMA(1, b[1]); VM_FMA(2, b[2]); VM_FMA(3, b[3]); VM_FMA(4, b[4]); VM_FMA(5, b[5]);
            VM_FMA(6, b[6]); VM_FMA(7, b[7]); VM_FMA(8, b[8]); VM_FMA(9, b[9]); VM_FMA(10, b[10]); VM_FMA(11, b[11]);
        }
    } else {
        const float *p0 = b, *p3 = b + 3 * bl, *p6 = b + 6 * bl, *p9 = b + 9 * bl;
        for (int64_t k = 0; k < kc; k++, p0 += bk, p3 += bk, p6 += bk, p9 += bk) {
            __m512 a0 = _mm512_load_ps(a + k * VM_MR), a1 = _mm512_load_ps(a + k * VM_MR + 16);
            VM_FMA(0, p0[0]); VM_FMA(1, p0[bl]); VM_FMA(2, p0[2 * bl]); VM_FMA(3, p3[0]); VM_FMA(4, p3[bl]);
            VM_FMA(5, p3[2 * bl]); VM_FMA(6, p6[0]); VM_FMA(7, p6[bl]); VM_FMA(8, p6[2 * bl]); VM_FMA(9, p9[0]);
            VM_FMA(10, p9[bl]); VM_FMA(11, p9[2 * bl]);
        }
    }
    if (first && bias)
        for (int j = 0; j < cols; j++) {
            __m512 q = _mm512_set1_ps(bias[j]);
            c0[j] = _mm512_add_ps(c0[j], q);
            c1[j] = _mm512_add_ps(c1[j], q);
        }
    /* each 16-row half: columns in, rows out (nb__w_tr16x16), rows stored masked to cols */
    __mmask16 m = lanes(cols);
    for (int h = 0; h < 2 && h * 16 < rows; h++) {
        __m512 t[16];
        for (int j = 0; j < 16; j++) t[j] = j < VM_NR ? (h ? c1[j] : c0[j]) : _mm512_setzero_ps();
        nb__w_tr16x16(t);
        for (int i = 0; i < 16 && h * 16 + i < rows; i++) {
            float *d = c + (h * 16 + i) * ldc;
            __m512 v = t[i];
            if (!first) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v);
            _mm512_mask_storeu_ps(d, m, v);
        }
    }
}
#undef VM_FMA

/* Tests: 0 keeps every call on the 6x32 path, 2 sends every call it can
 * take (unit column stride of C) to the transposed tile, 1 (default) the
 * rule of vm_takes. nb__avx512_gemm_vm_calls counts the calls it served. */
int nb__avx512_gemm_vm = 1;
long nb__avx512_gemm_vm_calls = 0;

/* The rule: B with unit stride along K (B^T of a row-major matrix), C rows
 * contiguous, K and N >= 128, M <= 96 with at most 1/8 of the 32-row panels
 * padding. Measured call by call against the 6x32 path (1 thread, AVX-512
 * Xeon; ratios of time, >1 this path faster): M x K x N 64x256x256 1.10-1.16
 * (1.08 with W cold), 32x256x256 1.19-1.34, 64x784x100 1.18-1.26,
 * 64x1024x1024 1.41, 96x256x256 1.03; it loses at 128 rows and more
 * (1.00, 0.95 at 192: A's panels re-read from L2 for each 12 columns), with
 * padded panels (48 rows 0.92), short K or N (64x64x256 0.84, 64x256x64
 * 0.93: the transposes and the cut group weigh more), and where B is
 * row-major (0.56-0.84: B's rows are read 12 floats at a time). */
static bool vm_takes(const gemm_op *g) {
    if (nb__avx512_gemm_vm == 0 || g->cs1 != 1) return false;
    if (nb__avx512_gemm_vm == 2) return true;
    int64_t padded = (g->M + VM_MR - 1) / VM_MR * VM_MR;
    return g->bs0 == 1 && g->bs1 != 1 && g->K >= 128 && g->N >= 128 && g->M <= 96 && 8 * g->M >= 7 * padded;
}

/* The transposed-tile GEMM of g (K > 0, M, N > 0). 0 or NB_ENOMEM. */
static int vm_serial(const gemm_op *g, int64_t kcb) {
    int64_t M = g->M, N = g->N, K = g->K, np = (M + VM_MR - 1) / VM_MR;
    gemm_buf *bf = &tls_buf;
    if (!buf_reserve(&bf->a, &bf->na, (size_t)(np * VM_MR * kcb))) return NB_ENOMEM;
    __atomic_fetch_add(&nb__avx512_gemm_vm_calls, 1, __ATOMIC_RELAXED);
    float *Ap = bf->a;
    float tb[VM_NR * KC] __attribute__((aligned(64)));   /* a cut group of B's columns */
    for (int64_t pc = 0; pc < K; pc += kcb) {
        int64_t kc = K - pc < kcb ? K - pc : kcb;
        bool first = pc == 0;
        vm_pack_a(g->a + pc * g->as1, g->as0, g->as1, M, kc, Ap);
        for (int64_t j0 = 0; j0 < N; j0 += VM_NR) {
            int nn = (int)(N - j0 < VM_NR ? N - j0 : VM_NR);
            const float *b = g->b + pc * g->bs0 + j0 * g->bs1;
            int64_t bk = g->bs0, bl = g->bs1;
            /* the last columns, copied with zeros after them (the loop reads all 12) */
            if (nn < VM_NR) {
                for (int j = 0; j < VM_NR; j++) {
                    float *d = tb + j * kc;
                    if (j >= nn) memset(d, 0, (size_t)kc * sizeof(float));
                    else if (bk == 1) memcpy(d, b + j * bl, (size_t)kc * sizeof(float));
                    else
                        for (int64_t k = 0; k < kc; k++) d[k] = b[k * bk + j * bl];
                }
                b = tb, bk = 1, bl = kc;
            }
            const float *bias = first && g->bias ? g->bias + j0 : NULL;
            for (int64_t p = 0; p < np; p++) {
                int rows = (int)(M - p * VM_MR < VM_MR ? M - p * VM_MR : VM_MR);
                vm_tile(kc, Ap + p * VM_MR * kc, b, bk, bl, g->c + p * VM_MR * g->cs0 + j0, g->cs0, rows, nn, first,
                        bias);
            }
        }
    }
    return 0;
}

/* One thread's serial GEMM on the sub-problem g. Returns 0 or NB_ENOMEM. */
static int gemm_serial(const gemm_op *g) {
    int64_t M = g->M, N = g->N, K = g->K;
    if (M <= 0 || N <= 0) return 0;
    if (K == 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) g->c[i * g->cs0 + j * g->cs1] = g->bias ? g->bias[j] : 0.0f;
        return 0;
    }
    /* K in equal blocks of at most KC (784 -> 4 x 196); depends on K only */
    int64_t kcb = (K + (K + KC - 1) / KC - 1) / ((K + KC - 1) / KC);
    if (vm_takes(g)) return vm_serial(g, kcb);
    int64_t ncmax = N < NC ? (N + NR - 1) / NR * NR : NC, kcmax = kcb;
    int64_t mcmax = M < MC ? (M + MR - 1) / MR * MR : MC;
    gemm_buf *bf = &tls_buf;
    if (!buf_reserve(&bf->b, &bf->nb, (size_t)(ncmax * kcmax)) ||
        !buf_reserve(&bf->a, &bf->na, (size_t)(mcmax * kcmax + 8)))   /* + slack for pack_a's wide stores */
        return NB_ENOMEM;
    float *Ap = bf->a, *Bp = bf->b;
    bool direct = g->cs1 == 1;
    /* one M block and rows of B contiguous: full panels are read in place (packing would cost a
       pass over B used once), unless the row stride would crowd them into a few L1 sets */
    bool bdirect = g->bs1 == 1 && M <= MC && g->bs0 % 32 != 0;
    bool adirect = g->as1 == 1 && g->as0 != 0 && ncmax <= ADIRECT_N;
    float tile[MR * NR] __attribute__((aligned(64)));
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = N - jc < NC ? N - jc : NC;
        for (int64_t pc = 0; pc < K; pc += kcb) {
            int64_t kc = K - pc < kcb ? K - pc : kcb;
            bool first = pc == 0;
            int64_t jp = bdirect ? nc / NR * NR : 0;
            if (jp < nc) pack_b(g->b + pc * g->bs0 + (jc + jp) * g->bs1, g->bs0, g->bs1, kc, nc - jp, Bp + jp * kc);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = M - ic < MC ? M - ic : MC;
                int64_t mp = adirect ? mc / MR * MR : 0;   /* full panels read in place */
                if (mp < mc) pack_a(g->a + (ic + mp) * g->as0 + pc * g->as1, g->as0, g->as1, mc - mp, kc, Ap + mp * kc);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int64_t nn = nc - jr < NR ? nc - jr : NR;
                    bool bd = jr < jp;
                    const float *bp = bd ? g->b + pc * g->bs0 + jc + jr : Bp + jr * kc;
                    int64_t ldb = bd ? g->bs0 : NR;
                    const float *bias = first && g->bias ? g->bias + jc + jr : NULL;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mm = (int)(mc - ir < MR ? mc - ir : MR);
                        float *c = g->c + (ic + ir) * g->cs0 + (jc + jr) * g->cs1;
                        bool ad = ir < mp;
                        const float *ap = ad ? g->a + (ic + ir) * g->as0 + pc : Ap + ir * kc;
                        int64_t lda = ad ? g->as0 : 0;
                        if (direct) {
                            ukr(kc, ap, bp, ldb, c, g->cs0, first, bias, mm, nn, lda);
                        } else {   /* strided columns of C: a scratch tile, then element by element */
                            ukr(kc, ap, bp, ldb, tile, NR, true, bias, mm, NR, lda);
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

/* Tests set this to 1 to serve every F32 call (the declines off);
 * benchmarks set it to -1 to pass every call oneDNN takes on to oneDNN
 * (the same hook as nb__avx2_gemm_serve_all). */
int nb__avx512_gemm_serve_all = 0;

/* The calls this kernel passes on: outside a backward, exactly those the
 * AVX2 GEMM gives to oneDNN on an AVX-512 CPU (gemm_onednn_takes with
 * avx512, this kernel only runs then), so forward calls keep going where
 * they went before it existed; inside a backward every call is served. */
static bool gemm_declines(const gemm_op *g) { return gemm_onednn_takes(g, nb__avx512_gemm_serve_all, true); }

/* One thread's C (M, N) = A (M, K) @ B (K, N) (kernels.h): the AVX2 file's
 * nb__avx2_gemm_block with 16-lane tiles, the same bits. For kernels that
 * run GEMMs inside their own tasks (attention). */
int nb__avx512_gemm_block(int64_t M, int64_t N, int64_t K, const float *a, int64_t as0, int64_t as1, const float *b,
                          int64_t bs0, int64_t bs1, float *c, int64_t cs0, int64_t cs1) {
    gemm_op g = {.M = M, .N = N, .K = K, .a = a, .b = b, .c = c, .as0 = as0, .as1 = as1, .bs0 = bs0, .bs1 = bs1,
                 .cs0 = cs0, .cs1 = cs1};
    return gemm_serial(&g);
}

/* Priority 30: above the AVX2 GEMM (20, registered earlier: at equal
 * priority it would stay first) and oneDNN (10); calls declined here go on
 * to the AVX2 GEMM, whose own rule then passes them on to oneDNN. */
void nb__avx512_gemm_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_MATMUL, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_gemm_matmul", 30, gemm_matmul},
        {NB_OP_LINEAR, NB_DTYPE_F32, NB_ISA_AVX512, "avx512_gemm_linear", 30, gemm_linear},
    };
    NB__REGISTER_ALL(ks);
}
