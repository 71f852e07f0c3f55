/* kernels.h — the kernel layer's internal interface: dispatch through the
 * registry, the ref kernels' registration, and a strided iterator that the
 * ref kernels share.
 *
 * The iterator walks up to three operands of one shape (out and up to two
 * inputs, inputs broadcast with stride 0) after merging dims that are
 * contiguous in all of them, so most calls become one flat inner loop.
 */
#ifndef NB_KERNELS_INTERNAL_H
#define NB_KERNELS_INTERNAL_H

#include "runtime/runtime.h"

/* Runs the best kernel for a->op on the dtype of in[0] (out for FILL);
 * declines pass to the next kernel. `who` names the public op for errors.
 * Returns 0 or NB_E* with the message set. */
int nb__dispatch(nb_kernel_args *a, const char *who);
/* nb__dispatch for an optional fused op whose caller can run its parts
 * instead: the ref kernels are left out (unless NB_ISA=ref caps the run, so
 * the suites at that cap test them), and when no other kernel serves it
 * returns NB_KERNEL_DECLINE with no error set. */
int nb__dispatch_fast(nb_kernel_args *a, const char *who);
/* The name of the kernel that served the last dispatch on this thread. */
const char *nb__last_kernel(void);
/* Nonzero on a thread while it runs a backward node (both executors set
 * it): kernels whose bits depend on the thread count they run on decline
 * then, so that the parallel executor, whose concurrent nodes run their
 * kernels on fewer threads, gives the serial executor's bits. oneDNN's
 * matmul is one (measured here: a 64x256x256 product at 3 threads differs
 * from 1 thread's in its last rows); our GEMM splits only whole tiles and
 * is not. */
extern _Thread_local int nb__thread_invariant;

/* Adds the portable kernels (called once by the registry). */
void nb__ref_elementwise_register(void);
void nb__ref_reduce_register(void);
void nb__ref_matmul_register(void);
void nb__ref_optim_register(void);
void nb__onednn_matmul_register(void);   /* only when built with oneDNN */
void nb__onednn_conv_register(void);     /* only when built with oneDNN */
void nb__ref_math_register(void);
void nb__ref_compare_register(void);
/* Element-wise ref kernels' driver (ref_elementwise.c): f runs on each inner row of (out, in[0], in[1]);
 * n elements, byte strides so/sa/sb, s = a->scalar. */
typedef void (*nb__row_fn)(char *o, const char *a, const char *b, int64_t n, int64_t so, int64_t sa, int64_t sb,
                           const double *s);
int nb__ref_run_rows(const nb_kernel_args *a, nb__row_fn f);
/* @@DECLARE_ELEMENTWISE@@ */
void nb__ref_reduce_full_register(void);
/* @@DECLARE_REDUCE@@ */
void nb__ref_index_register(void);
/* @@DECLARE_INDEX@@ */
void nb__ref_loss_register(void);      /* also registers ref_softmax.c's kernels */
void nb__ref_softmax_register(void);
/* Element offset of row r of t, rows being the positions of every dim but
 * `skip` (-1: none) in C order; the loss and softmax kernels walk rows with it. */
int64_t nb__row_offset(const nb_tensor *t, int skip, int64_t r);
/* @@DECLARE_LOSS@@ */
void nb__ref_conv_register(void);
void nb__ref_pool_register(void);
void nb__ref_interpolate_register(void);
/* @@DECLARE_CONV@@ */
void nb__ref_norm_register(void);
void nb__ref_attention_register(void);
/* @@DECLARE_NORM@@ */
/* x86/avx2 (only called when the CPU has AVX2+FMA) */
/* @@DECLARE_AVX2_ELEMENTWISE@@ */
void nb__avx2_elementwise_register(void);
/* @@DECLARE_AVX2_REDUCE@@ */
void nb__avx2_reduce_register(void);   /* avx2_reduce.c: sum, amax/amin, argmax/argmin, var/std */
/* @@DECLARE_AVX2_ROWS@@ */
void nb__avx2_rows_register(void);     /* avx2_rows.c, avx2_norm.c: softmax family, cross entropy, layer_norm */
/* @@DECLARE_AVX2_OPTIM@@ */
void nb__avx2_winograd_register(void); /* avx2_winograd.c: stride-1 3x3/5x5 CONV2D, CONV_BWD_DATA, CONV_TRANSPOSE2D */
void nb__avx2_conv_small_register(void); /* avx2_conv_small.c: CONV2D, CONV_BWD_WEIGHT with 1-4 input channels */
void nb__avx2_bnorm_register(void);      /* avx2_bnorm.c: batch_norm stats, forward, backward, param backward */
/* ref_attention.c: element offset of batch index b, in C order over t's dims [0, nb) (stride 0: broadcast) */
int64_t nb__batch_offset(const nb_tensor *t, int nb, int64_t b);
void nb__avx2_attention_register(void);  /* avx2_attention.c: SDPA and SDPA_WEIGHTS */
void nb__avx2_index_register(void);      /* avx2_index.c: cat, stack, index_select, embedding, index_add */
void nb__avx2_pool_register(void);       /* avx2_pool.c: adaptive_avg_pool2d and its backward */
void nb__avx2_interpolate_register(void); /* avx2_interpolate.c: interpolate and its backward, by planes */
/* ref_interpolate.c: one output coordinate's source taps along a dim,
 * value = l0 * in[i0] + l1 * in[i1] (PyTorch's UpSample.h coordinate map) */
typedef struct nb__interp_tap {
    int64_t i0, i1;   /* source indices */
    double l0, l1;    /* their weights */
} nb__interp_tap;
nb__interp_tap nb__interp_tap_of(int mode, bool align, double user_scale, int64_t o, int64_t in, int64_t out);
/* One thread's C (M, N) = A (M, K) @ B (K, N), strides in elements; 0 or NB_ENOMEM */
typedef int (*nb__gemm_block_fn)(int64_t M, int64_t N, int64_t K, const float *a, int64_t as0, int64_t as1,
                                 const float *b, int64_t bs0, int64_t bs1, float *c, int64_t cs0, int64_t cs1);
/* avx2_gemm.c: one thread's C (M, N) = A (M, K) @ B (K, N), strides in elements; 0 or NB_ENOMEM */
int nb__avx2_gemm_block(int64_t M, int64_t N, int64_t K, const float *a, int64_t as0, int64_t as1, const float *b,
                        int64_t bs0, int64_t bs1, float *c, int64_t cs0, int64_t cs1);
void nb__avx2_gemm_register(void);    /* avx2_gemm.c: MATMUL, LINEAR (F32 GEMM) */
/* avx512_gemm.c: nb__avx2_gemm_block's twin with 16-lane tiles (the same bits); AVX-512 CPUs only */
int nb__avx512_gemm_block(int64_t M, int64_t N, int64_t K, const float *a, int64_t as0, int64_t as1, const float *b,
                          int64_t bs0, int64_t bs1, float *c, int64_t cs0, int64_t cs1);
/* avx2_attention.c: SDPA and SDPA_WEIGHTS with their GEMMs on nb__avx512_gemm_block; AVX-512 CPUs only */
void nb__avx2_attention_register512(void);
void nb__avx512_elementwise_register(void);   /* x86/avx512 (only called when the CPU has AVX-512 F/BW/DQ/VL) */
void nb__avx512_gemm_register(void);   /* avx512_gemm.c: MATMUL, LINEAR (F32 GEMM, 6x32 tiles) */
void nb__avx512_rows_register(void);     /* avx512_rows.c: softmax family, cross entropy, nll backward */
void nb__avx512_norm_register(void);     /* avx512_norm.c: layer/rms/group norm fwd and bwd */
void nb__avx512_reduce_register(void);   /* avx512_reduce.c: sum, amax/amin, argmax/argmin, var/std, logsumexp, vector_norm */
void nb__avx512_optim_register(void);    /* avx512_optim.c: SGD/Adam steps, dropout */
void nb__avx512_winograd_register(void); /* avx512_winograd.c: stride-1 3x3/5x5 convs and their backward */
void nb__avx512_conv_small_register(void); /* avx512_conv_small.c: CONV2D, CONV_BWD_WEIGHT with 1-4 input channels */
/* AVX-512 kernels go first only where benchmarks/kernels shows them faster
 * than the AVX2 twin on an AVX-512 CPU (NB__PRIO_AVX512_WINS, above AVX2's
 * 10); the others stay registered below AVX2 (NB__PRIO_AVX512_LOSES) and
 * serve only what AVX2 declines, or when nb__isa_prefer asks for them. */
#define NB__PRIO_AVX512_WINS 20
#define NB__PRIO_AVX512_LOSES 5
/* Tests and benchmarks: -1 (default) the registry's order; an nb_isa: that
 * ISA's kernels (within the cap) are tried before all others. */
extern int nb__isa_prefer;
/* Whether a kernel whose name starts with prefix is registered for (op, dt)
 * within the ISA cap, chosen or not (tests). */
bool nb__registry_has(nb_op op, nb_dtype dt, const char *prefix);
extern int nb__avx2_conv_small_off;   /* avx2_conv_small.c: 1 decline every call (oneDNN's tests) */
extern int nb__avx512_conv_small_off; /* avx512_conv_small.c: the same hook */
extern int nb__avx2_bnorm_fwd_off;     /* avx2_bnorm.c: 1 its BATCH_NORM declines every call (oneDNN's tests) */
extern size_t nb__wg_sall_max;        /* avx2_winograd.c: bytes for all chunks' S in bwd_weight (tests: 0) */
extern int nb__avx2_conv_on_avx512;   /* avx2_conv_small.c: 1 the AVX2 convs serve under the avx512 cap too (measurement) */
extern int nb__avx2_winograd_off;     /* avx2_winograd.c: 1 decline every call (oneDNN's tests) */
extern int nb__avx2_gemm_serve_all;   /* avx2_gemm.c: 1 serve every call, -1 pass all oneDNN takes to it (tests) */
extern int nb__gemm_adirect, nb__gemm_dyn;   /* avx2_gemm.c: in-place A, dynamic N split (1 on; see there) */
extern int nb__avx512_gemm_serve_all;   /* avx512_gemm.c: the same hook */
extern int nb__gemm_grid;         /* gemm_driver.h: the 2-D thread grid from 4 threads (1), or off (0: tests, A/B) */
extern long nb__gemm_grid_calls;  /* gemm_driver.h: calls the grid served (tests) */
extern int nb__ln_late;   /* layer_norm forward rows written one row late where they can (norm_common.h): 1, or 0 (tests, A/B) */
extern int nb__avx512_gemm_vm;          /* avx512_gemm.c: the transposed tile: 0 off, 1 its rule, 2 every call it can take */
extern long nb__avx512_gemm_vm_calls;   /* avx512_gemm.c: calls the transposed tile served */
void nb__avx2_optim_register(void);   /* SGD/Adam steps, dropout */
/* One (n, c) plane of a 2x2, stride-2 MAX_POOL2D with unit inner strides
 * (avx2_pool.c; onednn_pool.c's direct kernel calls it): values and I64
 * plane offsets of the max, ref_max_pool2d's comparisons. */
void nb__avx2_max_pool_2x2_plane(const float *x, float *y, int64_t *idx, int64_t W, int64_t xsh, int64_t OH,
                                 int64_t OW, int64_t ysh, int64_t ish);
/* @@DECLARE_ONEDNN_MORE@@ */
void nb__onednn_norm_register(void);     /* only when built with oneDNN (onednn_norm.c) */
void nb__onednn_pool_register(void);     /* only when built with oneDNN (onednn_pool.c) */
int nb__registry_add(const nb_kernel_desc *k);
/* Adds ks[0..n) (each file's table of its kernels). */
void nb__registry_add_all(const nb_kernel_desc *ks, size_t n);
#define NB__REGISTER_ALL(ks) nb__registry_add_all((ks), sizeof(ks) / sizeof((ks)[0]))

/* OpenMP grain size: how many threads a kernel should use for `work` units
 * of cost (roughly: elements touched, or FLOPs/4 for compute-bound loops)
 * when one thread should get at least `grain` of them. Small tensors stay on
 * the calling thread: a 1-element add wakes no one. Never more than
 * omp_get_max_threads(), which the parallel backward executor lowers per
 * worker so that concurrent nodes never oversubscribe the pool. */
#define NB_GRAIN_ELEMENTWISE 32768   /* elements per thread, streaming ops */
#define NB_GRAIN_TRANSCENDENTAL 8192 /* exp/log/tanh-class ops */
int nb__par_threads(int64_t work, int64_t grain);
/* The OpenMP team to open for nt useful threads: 1 when nt <= 1, else the
 * whole team (omp_get_max_threads()), the threads past nt idle through the
 * region. Why: libgomp ends the threads of its pool that a smaller team
 * leaves out and creates them anew for the next bigger team, so regions of
 * 4 and 16 threads in turn cost 12 thread creations each time (counted with
 * strace: 12003 clone3 calls for 2000 such regions). With every region at
 * the full team, or on the caller alone, the pool's threads stay. Measured
 * on a 16-core Xeon VM (benchmarks/branches, forward + backward, one run):
 * 4.4 -> 3.2 ms a step at 16 threads, 4.6 -> 2.1 at 8, 4.5 -> 2.9 at 4; the
 * forward's 64x256x256 oneDNN matmul 97 -> 32 us.
 * nb__omp_team (NB_OMP_TEAM): bit 1 our kernels' regions follow the rule,
 * bit 2 oneDNN's matmul threads too (onednn_matmul.c); 3 the default, 0 the
 * per-op team sizes of before (for comparison). Only 1 is worse than 0:
 * then our kernels' 16 and oneDNN's 4 alternate (29 ms a step at 16). */
extern int nb__omp_team;
int nb__par_team(int nt);
/* The width of column tasks over groups x n columns for nt threads: width
 * (the kernel's usual one), or narrower when groups * ceil(n / width) tasks
 * would leave threads without one: n cut into ceil(nt / groups) ranges,
 * rounded up to a multiple of q, at least 32, at most width. For kernels
 * whose every column is computed whole by one task (so the width never
 * changes the bits): the outer-layout reductions (reduce_driver.h), index_add
 * (avx2_index.c). */
static inline int64_t nb__col_width(int64_t groups, int64_t n, int nt, int64_t width, int64_t q) {
    if (nt <= 1 || groups * ((n + width - 1) / width) >= nt) return width;
    int64_t need = (nt + groups - 1) / groups;   /* ranges of one group's columns */
    int64_t w = ((n + need - 1) / need + q - 1) / q * q;
    return w < 32 ? 32 : w > width ? width : w;
}

typedef struct nb__iter {
    int ndim;                        /* dims after merging (>= 1) */
    int64_t shape[NB_MAX_DIMS];      /* merged sizes; shape[ndim-1] is the inner loop */
    int64_t stride[3][NB_MAX_DIMS];  /* per operand, in elements */
    char *base[3];                   /* per operand, element [0..0] */
    int n;                           /* operands */
} nb__iter;
void nb__iter_init(nb__iter *it, int n, const nb_tensor *const *ops);

/* Calls BODY(p0, p1, p2, len, s0, s1, s2) for each inner row: p* are char
 * pointers to the row's first element, s* strides in elements. */
#define NB_ITER_ROWS(it, BODY)                                                       \
    do {                                                                             \
        int64_t idx_[NB_MAX_DIMS] = {0};                                             \
        int last_ = (it).ndim - 1;                                                   \
        int64_t rows_ = 1;                                                           \
        for (int d_ = 0; d_ < last_; d_++) rows_ *= (it).shape[d_];                  \
        if ((it).shape[last_] == 0) rows_ = 0;                                       \
        char *q_[3] = {(it).base[0], (it).base[1], (it).base[2]};                    \
        for (int64_t r_ = 0; r_ < rows_; r_++) {                                     \
            BODY(q_[0], q_[1], q_[2], (it).shape[last_], (it).stride[0][last_],      \
                 (it).stride[1][last_], (it).stride[2][last_]);                      \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                \
                if (++idx_[d_] < (it).shape[d_]) {                                   \
                    for (int o_ = 0; o_ < (it).n; o_++) q_[o_] += (it).stride[o_][d_]; \
                    break;                                                           \
                }                                                                    \
                idx_[d_] = 0;                                                        \
                for (int o_ = 0; o_ < (it).n; o_++)                                  \
                    q_[o_] -= (it).stride[o_][d_] * ((it).shape[d_] - 1);            \
            }                                                                        \
        }                                                                            \
    } while (0)

/* Element i (in elements from nb_data) of an F32 or F64 operand as double,
 * and the store: the ref kernels' loads in double precision. */
static inline double nb__ldf(const nb_tensor *t, int64_t i) {
    return nb_dtype_of(t) == NB_DTYPE_F32 ? (double)((const float *)nb_data(t))[i] : ((const double *)nb_data(t))[i];
}
static inline void nb__stf(nb_tensor *t, int64_t i, double v) {
    if (nb_dtype_of(t) == NB_DTYPE_F32) ((float *)nb_data(t))[i] = (float)v;
    else ((double *)nb_data(t))[i] = v;
}
/* Weight of class c from an optional 1-D weight tensor (1 without one). */
static inline double nb__class_weight(const nb_tensor *w, int64_t c) {
    return w ? nb__ldf(w, c * nb_strides(w)[0]) : 1.0;
}

#endif
