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
 * (the other accumulators stay zero). a: packed (MR floats per k), b: 32
 * floats per k, ldb apart. Inline assembly (see the top of the file); the
 * same template as avx2_gemm.c's with zmm operands and 64-byte B halves.
 * One k step: two loads of B, R broadcasts of A, 2 R FMAs. */
#define NB_GEMM_ZERO(r0, r1)                                                                      \
    "vpxord %[" #r0 "], %[" #r0 "], %[" #r0 "]\n\t" "vpxord %[" #r1 "], %[" #r1 "], %[" #r1 "]\n\t"
#define NB_GEMM_ROW(i, r0, r1)                                                                    \
    "vbroadcastss (" #i ")*4(%[a]), %[x]\n\t"                                                     \
    "vfmadd231ps %[b0], %[x], %[" #r0 "]\n\t"                                                     \
    "vfmadd231ps %[b1], %[x], %[" #r1 "]\n\t"
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
#define NB_GEMM_ASM(STEP)                                                                         \
    __asm__(NB_GEMM_ZERO(c00, c01) NB_GEMM_ZERO(c10, c11) NB_GEMM_ZERO(c20, c21)                  \
            NB_GEMM_ZERO(c30, c31) NB_GEMM_ZERO(c40, c41) NB_GEMM_ZERO(c50, c51)                  \
            "test %[n4], %[n4]\n\t"                                                               \
            "jz 2f\n\t"                                                                           \
            "1:\n\t"                                                                              \
            "prefetcht0 256(%[a])\n\t"                                                            \
            STEP(0) STEP(1) STEP(2) STEP(3)                                                       \
            "add $96, %[a]\n\t"                                                                   \
            "dec %[n4]\n\t"                                                                       \
            "jnz 1b\n\t"                                                                          \
            "2:\n\t"                                                                              \
            "test %[n1], %[n1]\n\t"                                                               \
            "jz 4f\n\t"                                                                           \
            "3:\n\t"                                                                              \
            STEP(0)                                                                               \
            "add $24, %[a]\n\t"                                                                   \
            "dec %[n1]\n\t"                                                                       \
            "jnz 3b\n\t"                                                                          \
            "4:\n\t"                                                                              \
            : [a] "+r"(a), [b] "+r"(b), [n4] "+r"(n4), [n1] "+r"(n1), [b0] "=&v"(b0), [b1] "=&v"(b1),   \
              [x] "=&v"(x), [c00] "=&v"(c00), [c01] "=&v"(c01), [c10] "=&v"(c10), [c11] "=&v"(c11),     \
              [c20] "=&v"(c20), [c21] "=&v"(c21), [c30] "=&v"(c30), [c31] "=&v"(c31), [c40] "=&v"(c40), \
              [c41] "=&v"(c41), [c50] "=&v"(c50), [c51] "=&v"(c51)                                  \
            : [ldb] "r"(ldb_bytes)                                                                \
            : "cc", "memory")
static inline void kloop(int rows, int64_t kc, const float *a, const float *b, int64_t ldb, __m512 acc[12]) {
    int64_t n4 = kc / 4, n1 = kc % 4, ldb_bytes = ldb * (int64_t)sizeof(float);
    __m512 b0, b1, x, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (rows > 4) NB_GEMM_ASM(NB_GEMM_STEP6);
    else if (rows > 2) NB_GEMM_ASM(NB_GEMM_STEP4);
    else NB_GEMM_ASM(NB_GEMM_STEP2);
    acc[0] = c00, acc[1] = c01, acc[2] = c10, acc[3] = c11, acc[4] = c20, acc[5] = c21;
    acc[6] = c30, acc[7] = c31, acc[8] = c40, acc[9] = c41, acc[10] = c50, acc[11] = c51;
}
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
                       int64_t ldc, bool first, const float *bias, int rows, int64_t cols) {
    for (int i = 0; i < rows; i++) {   /* C's lines arrive while the k loop runs */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
    __m512 acc[12];
    kloop(rows, kc, a, b, ldb, acc);
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
                pack_a(g->a + ic * g->as0 + pc * g->as1, g->as0, g->as1, mc, kc, Ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int64_t nn = nc - jr < NR ? nc - jr : NR;
                    bool bd = jr < jp;
                    const float *bp = bd ? g->b + pc * g->bs0 + jc + jr : Bp + jr * kc;
                    int64_t ldb = bd ? g->bs0 : NR;
                    const float *bias = first && g->bias ? g->bias + jc + jr : NULL;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mm = (int)(mc - ir < MR ? mc - ir : MR);
                        float *c = g->c + (ic + ir) * g->cs0 + (jc + jr) * g->cs1;
                        if (direct) {
                            ukr(kc, Ap + ir * kc, bp, ldb, c, g->cs0, first, bias, mm, nn);
                        } else {   /* strided columns of C: a scratch tile, then element by element */
                            ukr(kc, Ap + ir * kc, bp, ldb, tile, NR, true, bias, mm, NR);
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
