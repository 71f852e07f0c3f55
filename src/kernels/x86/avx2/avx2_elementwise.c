/* avx2_elementwise.c — AVX2+FMA kernels for the F32 element-wise ops:
 * add sub mul div (any broadcast), add_scalar mul_scalar, neg exp log tanh
 * sigmoid relu gelu silu erf sqrt abs square, maximum minimum, fill, copy.
 *
 * They are variants of src/kernels/ref/ref_elementwise.c and ref_math.c
 * with the same arguments (see the top of ref_math.c): out and inputs of
 * out's shape, inputs broadcast with stride 0, scalar[0] the scalar of
 * *_SCALAR/FILL and GELU's form (0 erf, else tanh).
 *  - Exact ops (add ... square, relu, abs, neg, maximum, minimum, fill, copy)
 *    do ref's one IEEE operation per element and agree with ref bitwise
 *    (NaN payloads aside). Maximum/minimum propagate NaN like ref (x + y).
 *  - exp log tanh sigmoid gelu silu erf use vmath.h, within a few ULP of the
 *    double-precision result (often closer than ref's float libm path:
 *    sigmoid and gelu keep their relative accuracy in the negative tail).
 * Every operand is walked with the registry's iterator (dims merged where
 * all operands are contiguous across them). A row whose operands have
 * element stride 1 or 0 (broadcast) runs 8 lanes at a time with a masked
 * tail: this covers same-shape contiguous, scalar, row ([M,N]+[N]) and column
 * ([M,N]+[M,1]) broadcast; any other row is gathered 8 elements at a time
 * into registers, so a result never depends on the layout. A 2-D walk with
 * a transposed input goes in 16x64 tiles, the input packed by 8x8 register
 * transposes (a transposed output is gathered/scattered tile by tile). Work is split
 * over OpenMP threads (nb__par_threads) by rows, or by chunks of 16-element
 * multiples within long rows; elements are independent, so the split cannot
 * change a result. Non-F32 operands are declined (F64 stays on ref).
 */
#include "kernels/kernels.h"
#include "nb_config.h"
#include "vmath.h"

#include <stdint.h>
#include <string.h>

typedef struct ew_par {
    __m256 s;      /* scalar[0] as float, in every lane (*_SCALAR, FILL) */
    bool stream;   /* non-temporal stores: the output is far larger than the caches */
} ew_par;

/* Outputs of at least this many elements (16 MiB, with the inputs more than
 * the L3 of a Zen 4 CCD) are written with non-temporal stores: they would
 * only evict the inputs, and skipping out's read-for-ownership made add and
 * relu 1.2-1.5x faster at 4M-16M elements here (exp: no change). Smaller
 * outputs stay in cache for the next op. */
#define EW_STREAM_MIN (4 << 20)

/* The op bodies on 8 lanes: x from in[0], y from in[1]. */
static inline __m256 op_add(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_add_ps(x, y); }
static inline __m256 op_sub(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_sub_ps(x, y); }
static inline __m256 op_mul(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_mul_ps(x, y); }
static inline __m256 op_div(__m256 x, __m256 y, const ew_par *p) { (void)p; return _mm256_div_ps(x, y); }
/* max_ps(x, y) is x > y ? x : y, as ref; unordered lanes take x + y (a NaN) */
static inline __m256 op_maximum(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    return _mm256_blendv_ps(_mm256_max_ps(x, y), _mm256_add_ps(x, y), _mm256_cmp_ps(x, y, _CMP_UNORD_Q));
}
static inline __m256 op_minimum(__m256 x, __m256 y, const ew_par *p) {
    (void)p;
    return _mm256_blendv_ps(_mm256_min_ps(x, y), _mm256_add_ps(x, y), _mm256_cmp_ps(x, y, _CMP_UNORD_Q));
}
static inline __m256 op_adds(__m256 x, __m256 y, const ew_par *p) { (void)y; return _mm256_add_ps(x, p->s); }
static inline __m256 op_muls(__m256 x, __m256 y, const ew_par *p) { (void)y; return _mm256_mul_ps(x, p->s); }
static inline __m256 op_fill(__m256 x, __m256 y, const ew_par *p) { (void)x, (void)y; return p->s; }
static inline __m256 op_copy(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return x; }
static inline __m256 op_neg(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm256_xor_ps(x, _mm256_set1_ps(-0.0f));
}
static inline __m256 op_abs(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_abs(x); }
static inline __m256 op_square(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return _mm256_mul_ps(x, x); }
static inline __m256 op_sqrt(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return _mm256_sqrt_ps(x); }
/* ref: x < 0 ? 0 : x, so relu(-0) = -0 and relu(NaN) = NaN */
static inline __m256 op_relu(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ), x);
}
static inline __m256 op_exp(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_exp(x); }
static inline __m256 op_log(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_log(x); }
static inline __m256 op_tanh(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_tanh(x); }
static inline __m256 op_sigmoid(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_sigmoid(x); }
static inline __m256 op_erf(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_erf(x); }
static inline __m256 op_silu(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_silu(x); }
static inline __m256 op_gelu(__m256 x, __m256 y, const ew_par *p) { (void)y, (void)p; return nb__v_gelu_erf(x); }
static inline __m256 op_gelu_tanh(__m256 x, __m256 y, const ew_par *p) {
    (void)y, (void)p;
    return nb__v_gelu_tanh(x);
}

/* A row: n elements, byte strides so/sa/sb (the iterator's). */
typedef void (*ew_row_fn)(char *o, const char *a, const char *b, int64_t n, int64_t so, int64_t sa, int64_t sb,
                          const ew_par *p);

static const float ew_zero[8];   /* stands in for a missing input (stride 0) */

/* Loads of a contiguous (V) or broadcast (S) operand at element i, whole
 * vector or the masked tail. */
#define LDV(P, i) _mm256_loadu_ps((P) + (i))
#define LDS(P, i) _mm256_broadcast_ss(P)
#define LDVM(P, i, m) _mm256_maskload_ps((P) + (i), m)
#define LDSM(P, i, m) _mm256_broadcast_ss(P)

#define ROW_LOOP(NAME, LA, LAM, LB, LBM)                                                 \
    do {                                                                                 \
        int64_t i = 0;                                                                   \
        if (p->stream) {                                                                 \
            /* masked head up to a 32-byte boundary of o, then aligned streams */         \
            int64_t h = (int64_t)(((32 - ((uintptr_t)o & 31)) & 31) / 4);                 \
            h = h < n ? h : n;                                                           \
            if (h) {                                                                     \
                __m256i m = nb__tail_mask((int)h);                                        \
                _mm256_maskstore_ps(o, m, op_##NAME(LAM(A, 0, m), LBM(B, 0, m), p));      \
            }                                                                            \
            for (i = h; i + 8 <= n; i += 8) _mm256_stream_ps(o + i, op_##NAME(LA(A, i), LB(B, i), p)); \
        }                                                                                \
        for (; i + 16 <= n; i += 16) {                                                   \
            __m256 r0 = op_##NAME(LA(A, i), LB(B, i), p);                                \
            __m256 r1 = op_##NAME(LA(A, i + 8), LB(B, i + 8), p);                        \
            _mm256_storeu_ps(o + i, r0);                                                 \
            _mm256_storeu_ps(o + i + 8, r1);                                             \
        }                                                                                \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, op_##NAME(LA(A, i), LB(B, i), p)); \
        if (i < n) {                                                                     \
            __m256i m = nb__tail_mask((int)(n - i));                                      \
            _mm256_maskstore_ps(o + i, m, op_##NAME(LAM(A, i, m), LBM(B, i, m), p));      \
        }                                                                                \
    } while (0)

/* Gathers 8 elements of each strided operand, runs the op, scatters. */
#define ROW_STRIDED(NAME)                                                                \
    do {                                                                                 \
        float xa[8], xb[8], xo[8];                                                       \
        for (int64_t i = 0; i < n; i += 8) {                                             \
            int k = n - i < 8 ? (int)(n - i) : 8;                                         \
            for (int j = 0; j < k; j++) {                                                \
                xa[j] = A[(i + j) * sa];                                                 \
                xb[j] = B[(i + j) * sb];                                                 \
            }                                                                            \
            for (int j = k; j < 8; j++) xa[j] = xb[j] = 0.0f;                            \
            _mm256_storeu_ps(xo, op_##NAME(_mm256_loadu_ps(xa), _mm256_loadu_ps(xb), p)); \
            for (int j = 0; j < k; j++) o[(i + j) * so] = xo[j];                         \
        }                                                                                \
    } while (0)

/* row_NAME: the vector loops for every mix of contiguous and broadcast
 * inputs (out contiguous), else the gathering loop. */
#define EW_ROW(NAME)                                                                                 \
    static void row_##NAME(char *po, const char *pa, const char *pb, int64_t n, int64_t so, int64_t sa, \
                           int64_t sb, const ew_par *p) {                                           \
        float *o = (float *)po;                                                                      \
        const float *A = pa ? (const float *)pa : ew_zero, *B = pb ? (const float *)pb : ew_zero;    \
        so /= 4, sa = pa ? sa / 4 : 0, sb = pb ? sb / 4 : 0;                                         \
        if (so == 1 && (sa | 1) == 1 && (sb | 1) == 1) {                                             \
            if (sa && sb) ROW_LOOP(NAME, LDV, LDVM, LDV, LDVM);                                      \
            else if (sa) ROW_LOOP(NAME, LDV, LDVM, LDS, LDSM);                                       \
            else if (sb) ROW_LOOP(NAME, LDS, LDSM, LDV, LDVM);                                       \
            else ROW_LOOP(NAME, LDS, LDSM, LDS, LDSM);                                               \
        } else {                                                                                     \
            ROW_STRIDED(NAME);                                                                       \
        }                                                                                            \
    }

EW_ROW(add) EW_ROW(sub) EW_ROW(mul) EW_ROW(div) EW_ROW(maximum) EW_ROW(minimum)
EW_ROW(adds) EW_ROW(muls) EW_ROW(fill) EW_ROW(copy) EW_ROW(neg) EW_ROW(abs) EW_ROW(square)
EW_ROW(sqrt) EW_ROW(relu) EW_ROW(exp) EW_ROW(log) EW_ROW(tanh) EW_ROW(sigmoid) EW_ROW(silu)
EW_ROW(gelu) EW_ROW(gelu_tanh) EW_ROW(erf)

/* ---- the driver: rows of the merged iteration, split over threads ---- */

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

/* 2-D iterations where some operand runs across rows (a transposed view):
 * walking whole rows would touch a new cache line per element of it (and
 * with a power-of-two leading dimension, all in one L1 set). Rows go in
 * blocks of EW_TILE_R, columns in pieces of EW_TILE_C; an input that runs across
 * rows is packed per block with 8x8 register transposes into a small
 * row-major buffer, which the row function then reads contiguously. */
#define EW_TILE_R 16   /* rows per block: 64 bytes, a whole cache line of a transposed input */
#define EW_TILE_C 64   /* columns per tile */

static bool ew_across(const nb__iter *it, int o) {
    return it->base[o] && it->stride[o][0] == 4 && it->stride[o][1] != 4 && it->stride[o][1] != 0;
}

static bool ew_wants_tiles(const nb__iter *it) {
    if (it->ndim != 2) return false;
    for (int o = 0; o < it->n; o++)
        if (ew_across(it, o)) return true;
    return false;
}

/* v[k] (8 lanes) becomes column k of the 8x8 matrix whose rows were v[0..7]. */
static inline void ew_tr8x8(__m256 v[8]) {
    __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    /* s_k: column k (low 128 bits) and k+4 (high), of rows 0-3 or 4-7 */
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20), v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20), v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20), v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20), v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* buf[rr][c] = element (rr, c) of an 8-row block whose rows are adjacent
 * floats and whose columns are ld bytes apart, c < n <= EW_TILE_C. */
static void ew_pack(float *buf, const char *p, int64_t ld, int64_t n) {
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 v[8];
        for (int k = 0; k < 8; k++) v[k] = _mm256_loadu_ps((const float *)(p + (c + k) * ld));
        ew_tr8x8(v);
        for (int k = 0; k < 8; k++) _mm256_store_ps(buf + k * EW_TILE_C + c, v[k]);
    }
    for (; c < n; c++)
        for (int k = 0; k < 8; k++) buf[k * EW_TILE_C + c] = ((const float *)(p + c * ld))[k];
}

/* Row blocks [b0, b1) (EW_TILE_R rows each) of a 2-D iteration, tile by
 * tile; the block's full groups of 8 rows read packed copies of the inputs
 * that run across rows, the rest of its rows read them in place. */
static void ew_tiles(const ew_job *j, int64_t b0, int64_t b1) {
    const nb__iter *it = &j->it;
    int64_t rows = it->shape[0], len = it->shape[1];
    _Alignas(32) float buf[2][EW_TILE_R * EW_TILE_C];
    /* groups of 8 blocks share each column tile, so the pages of a tile's
     * columns (one per column of a transposed operand) stay in the TLB */
    for (int64_t g0 = b0; g0 < b1; g0 += 8) {
        int64_t g1 = g0 + 8 < b1 ? g0 + 8 : b1;
        for (int64_t c0 = 0; c0 < len; c0 += EW_TILE_C) {
            int64_t n = len - c0 < EW_TILE_C ? len - c0 : EW_TILE_C;
            for (int64_t b = g0; b < g1; b++) {
                int64_t r0 = b * EW_TILE_R, r1 = r0 + EW_TILE_R < rows ? r0 + EW_TILE_R : rows;
                int64_t rp = (r1 - r0) / 8 * 8;   /* rows served from the packed copies */
                bool packed[3] = {false, false, false};
                for (int o = 1; o < 3 && rp > 0; o++)
                    if (ew_across(it, o)) {
                        for (int64_t g = 0; g < rp; g += 8)
                            ew_pack(buf[o - 1] + g * EW_TILE_C, it->base[o] + (r0 + g) * 4 + c0 * it->stride[o][1],
                                    it->stride[o][1], n);
                        packed[o] = true;
                    }
                for (int64_t r = r0; r < r1; r++) {
                    char *q[3];
                    int64_t st[3];
                    for (int o = 0; o < 3; o++) {
                        bool pk = packed[o] && r - r0 < rp;
                        st[o] = pk ? 4 : it->stride[o][1];
                        q[o] = pk ? (char *)(buf[o - 1] + (r - r0) * EW_TILE_C)
                               : it->base[o] ? it->base[o] + r * it->stride[o][0] + c0 * it->stride[o][1]
                                             : NULL;
                    }
                    j->f(q[0], q[1], q[2], n, st[0], st[1], st[2], &j->par);
                }
            }
        }
    }
}

static bool is_f32(const nb_tensor *t) { return nb_dtype_of(t) == NB_DTYPE_F32; }

/* Checks the operands (all F32, as many inputs as the op has) and runs f
 * over them; declines anything else. */
static int ew_run(const nb_kernel_args *a, int nin, ew_row_fn f, int64_t grain) {
    if (a->nin < nin || !is_f32(a->out)) return NB_KERNEL_DECLINE;
    for (int i = 0; i < nin; i++)
        if (!is_f32(a->in[i])) return NB_KERNEL_DECLINE;
    int64_t total = nb_numel(a->out);
    if (total <= 0) return 0;
    ew_job j;
    const nb_tensor *ops[3] = {a->out, nin > 0 ? a->in[0] : NULL, nin > 1 ? a->in[1] : NULL};
    nb__iter_init(&j.it, nin + 1, ops);
    j.f = f;
    j.par.s = _mm256_set1_ps((float)a->scalar[0]);
    j.par.stream = total >= EW_STREAM_MIN;
    j.len = j.it.shape[j.it.ndim - 1];
    int64_t rows = total / j.len;
    j.cpr = 1;
    j.chunk = j.len;
    int nt = nb__par_threads(total, grain);
    if (ew_wants_tiles(&j.it)) {
        j.par.stream = false;   /* rows are revisited piecewise: keep out in cache */
        int64_t blocks = (rows + EW_TILE_R - 1) / EW_TILE_R;
        if (nt > blocks) nt = (int)blocks;
        if (nt <= 1) {
            ew_tiles(&j, 0, blocks);
            return 0;
        }
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1)
#endif
        for (int t = 0; t < nt; t++) ew_tiles(&j, blocks * t / nt, blocks * (t + 1) / nt);
        return 0;
    }
    if (nt <= 1) {
        ew_tasks(&j, 0, rows);
        return 0;
    }
    /* few long rows: cut them into chunks so every thread gets ~8 pieces */
    if (rows < 8 * (int64_t)nt) {
        int64_t want = (8 * (int64_t)nt + rows - 1) / rows;
        j.chunk = ((j.len + want - 1) / want + 15) / 16 * 16;
        j.cpr = (j.len + j.chunk - 1) / j.chunk;
    }
    int64_t tasks = rows * j.cpr;
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) ew_tasks(&j, tasks * t / nt, tasks * (t + 1) / nt);
    return 0;
}

#define GE NB_GRAIN_ELEMENTWISE
#define GT NB_GRAIN_TRANSCENDENTAL
#define EW_KERNEL(NAME, NIN, GRAIN) \
    static int k_##NAME(const nb_kernel_args *a) { return ew_run(a, NIN, row_##NAME, GRAIN); }

EW_KERNEL(add, 2, GE) EW_KERNEL(sub, 2, GE) EW_KERNEL(mul, 2, GE) EW_KERNEL(div, 2, GE)
EW_KERNEL(maximum, 2, GE) EW_KERNEL(minimum, 2, GE) EW_KERNEL(adds, 1, GE) EW_KERNEL(muls, 1, GE)
EW_KERNEL(neg, 1, GE) EW_KERNEL(abs, 1, GE) EW_KERNEL(square, 1, GE) EW_KERNEL(sqrt, 1, GE)
EW_KERNEL(relu, 1, GE) EW_KERNEL(exp, 1, GT) EW_KERNEL(log, 1, GT) EW_KERNEL(tanh, 1, GT)
EW_KERNEL(sigmoid, 1, GT) EW_KERNEL(silu, 1, GT) EW_KERNEL(erf, 1, GT) EW_KERNEL(fill, 0, GE)

/* GELU: scalar[0] = 0 the exact erf form, else the tanh approximation. */
static int k_gelu(const nb_kernel_args *a) {
    return ew_run(a, 1, a->scalar[0] != 0 ? row_gelu_tanh : row_gelu, GT);
}

/* COPY F32 -> F32 (other out dtypes convert on ref). Contiguous both sides
 * is a (threaded) memcpy; otherwise the rows run through row_copy. */
static int k_copy(const nb_kernel_args *a) {
    if (a->nin < 1 || !is_f32(a->out) || !is_f32(a->in[0])) return NB_KERNEL_DECLINE;
    int64_t n = nb_numel(a->out);
    if (n > 0 && nb_is_contiguous(a->out) && nb_is_contiguous(a->in[0]) && nb_numel(a->in[0]) == n) {
        char *o = nb_data(a->out);
        const char *x = nb_data(a->in[0]);
        if (o == x) return 0;
        /* overlapping ranges (an in-place copy between views): one memmove */
        bool overlap = o < x + n * 4 && x < o + n * 4;
        int nt = overlap ? 1 : nb__par_threads(n, 4 * NB_GRAIN_ELEMENTWISE);
#if NB_HAVE_OPENMP
#pragma omp parallel for num_threads(nt) if (nt > 1)
#endif
        for (int t = 0; t < nt; t++) {
            int64_t lo = n * t / nt / 16 * 16, hi = t + 1 == nt ? n : n * (t + 1) / nt / 16 * 16;
            memmove(o + lo * 4, x + lo * 4, (size_t)(hi - lo) * 4);
        }
        return 0;
    }
    return ew_run(a, 1, row_copy, GE);
}

#define REG(OP, FN) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_" #FN, 10, k_##FN}
#define REG_AS(OP, FN, NAME) {NB_OP_##OP, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_" NAME, 10, k_##FN}

void nb__avx2_elementwise_register(void) {
    static const nb_kernel_desc ks[] = {
        REG(ADD, add),         REG(SUB, sub),         REG(MUL, mul),         REG(DIV, div),
        REG(MAXIMUM, maximum), REG(MINIMUM, minimum), REG_AS(ADD_SCALAR, adds, "add_scalar"),
        REG_AS(MUL_SCALAR, muls, "mul_scalar"),
        REG(NEG, neg),         REG(ABS, abs),         REG(SQUARE, square),   REG(SQRT, sqrt),
        REG(RELU, relu),       REG(EXP, exp),         REG(LOG, log),         REG(TANH, tanh),
        REG(SIGMOID, sigmoid), REG(SILU, silu),       REG(GELU, gelu),       REG(FILL, fill),
        REG(COPY, copy),       REG(ERF, erf),
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) nb__registry_add(&ks[i]);
}
