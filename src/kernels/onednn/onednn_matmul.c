/* onednn_matmul.c — MATMUL through oneDNN's matmul primitive.
 *
 * out (..., M, N) = in[0] (..., M, K) @ in[1] (..., K, N), F32 and F64? —
 * oneDNN computes f32 (and low precision); F64 is declined to ref.
 * Transposed operands arrive as strides and are described to oneDNN as
 * strides (no copies). A batch dim broadcast with stride 0 becomes size 1
 * in that operand's descriptor, oneDNN's broadcast form. Primitives are
 * cached by (dims, strides, threads), and their memory objects kept per
 * thread (nb__dnnl_exec_mem): a call re-points them at its buffers. Made per
 * call, they cost 1.6-2.3 us of each call (medians of 300, alternated in one
 * process, a 2-core Xeon VM): a 16x16x16 matmul took 4.7 us, 3.1 kept;
 * 64x256x256 67.8 -> 65.9 us; 256^3 264 -> 262 us.
 * The threads: one when the FLOPs are under our GEMM's grain (avx2_gemm.c,
 * 2 MFLOP a thread), else the whole OpenMP team. A team smaller than the
 * last one makes libgomp end threads and create them again for the next
 * kernel (kernels.h, nb__par_team): with 4 threads for a 64x256x256 matmul
 * among kernels at 16, it took 97 us in the branches forward on a 16-core
 * Xeon VM, against 32 us at the whole team and 64 us on one thread.
 */
#include "kernels/onednn/onednn.h"
#include "nb_config.h"

#if NB_HAVE_OPENMP
#include <omp.h>
#endif
#include <string.h>

/* Threads for a matmul of `flops`: as avx2_gemm.c's gemm_run. */
static int mm_threads(int64_t flops) {
    int nt = nb__par_threads(flops / 4, 1 << 19);
#if NB_HAVE_OPENMP
    if (nt > 1 && (nb__omp_team & 2)) return omp_get_max_threads();   /* the whole team (kernels.h, nb__par_team) */
#endif
    return nt;
}

/* Runs (cached) matmul dst = src @ wei (+ bias) on the given plain strided
 * 2..8-dim descriptions; NB_KERNEL_DECLINE when oneDNN has no fast
 * implementation for them. */
static int run_matmul(const nb__dnnl_key *key, int nd, const int64_t *const *dims, const int64_t *const *strides,
                      void *const *ptrs, bool bias, const int64_t *bias_dims, const int64_t *bias_strides, void *bias_ptr) {
    dnnl_engine_t eng = nb__dnnl_engine();
    if (!eng) return NB_KERNEL_DECLINE;
    static const int arg_ids[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    void *const bufs[4] = {ptrs[0], ptrs[1], ptrs[2], bias_ptr};
    int nargs = bias ? 4 : 3;
    dnnl_primitive_t prim = nb__dnnl_cache_get(key);
    if (prim) {   /* the steady state: this thread's memory objects for prim, no descriptions made */
        int r = nb__dnnl_exec_mem(prim, false, nargs, arg_ids, NULL, bufs);
        if (r <= 0) return r ? nb__err(NB_EINVAL, "oneDNN matmul failed to execute") : 0;
    }
    dnnl_memory_desc_t md[4];
    for (int t = 0; t < 3; t++)
        if (dnnl_memory_desc_init_by_strides(&md[t], nd, dims[t], dnnl_f32, strides[t]) != dnnl_success)
            return NB_KERNEL_DECLINE;
    if (bias && dnnl_memory_desc_init_by_strides(&md[3], nd, bias_dims, dnnl_f32, bias_strides) != dnnl_success)
        return NB_KERNEL_DECLINE;
    bool caller_owns = false;
    if (!prim) {
        dnnl_matmul_desc_t mmd;
        dnnl_primitive_desc_t pd = NULL;
        if (dnnl_matmul_desc_init(&mmd, &md[0], &md[1], bias ? &md[3] : NULL, &md[2]) != dnnl_success ||
            dnnl_primitive_desc_create(&pd, &mmd, nb__dnnl_attr(), eng, NULL) != dnnl_success)
            return NB_KERNEL_DECLINE;
        const char *impl = NULL;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl ||
            !strncmp(impl, "ref", 3)) {   /* oneDNN's own reference code is no faster than ours */
            dnnl_primitive_desc_destroy(pd);
            return NB_KERNEL_DECLINE;
        }
        dnnl_status_t st = dnnl_primitive_create(&prim, pd);
        dnnl_primitive_desc_destroy(pd);
        if (st != dnnl_success) return NB_KERNEL_DECLINE;
        prim = nb__dnnl_cache_put(key, prim, &caller_owns);
    }
    int rc = 0;
    if (nb__dnnl_exec_mem(prim, caller_owns, nargs, arg_ids, md, bufs))
        rc = nb__err(NB_EINVAL, "oneDNN matmul failed to execute");
    if (caller_owns) dnnl_primitive_destroy(prim);
    return rc;
}

/* run_matmul on nt OpenMP threads (oneDNN sizes its split from this
 * thread's OpenMP setting, when it makes the primitive and when it runs). */
static int run_matmul_nt(const nb__dnnl_key *key, int nd, const int64_t *const *dims, const int64_t *const *strides,
                         void *const *ptrs, bool bias, const int64_t *bias_dims, const int64_t *bias_strides,
                         void *bias_ptr, int nt) {
#if NB_HAVE_OPENMP
    int was = omp_get_max_threads();
    if (nt != was) omp_set_num_threads(nt);
    int rc = run_matmul(key, nd, dims, strides, ptrs, bias, bias_dims, bias_strides, bias_ptr);
    if (nt != was) omp_set_num_threads(was);
    return rc;
#else
    (void)nt;
    return run_matmul(key, nd, dims, strides, ptrs, bias, bias_dims, bias_strides, bias_ptr);
#endif
}

static int onednn_matmul(const nb_kernel_args *a) {
    const nb_tensor *A = a->in[0], *B = a->in[1];
    nb_tensor *C = a->out;
    int nd = nb_ndim(C);
    if (nb_dtype_of(C) != NB_DTYPE_F32 || nd < 2 || nd > 12 || nb_numel(C) == 0 || nb_shape(A)[nd - 1] == 0 ||
        nb__thread_invariant)   /* its bits follow the thread count (kernels.h) */
        return NB_KERNEL_DECLINE;
    dnnl_engine_t eng = nb__dnnl_engine();
    if (!eng) return NB_KERNEL_DECLINE;
    dnnl_dims_t ad, bd, cd, as, bs, cs;
    const nb_tensor *ts[3] = {A, B, C};
    int64_t *dims[3] = {ad, bd, cd}, *strides[3] = {as, bs, cs};
    nb__dnnl_key key;
    memset(&key, 0, sizeof key);
    int kw = 0;
    key.w[kw++] = NB_OP_MATMUL;
    key.w[kw++] = nd;
    for (int t = 0; t < 3; t++) {
        const int64_t *sh = nb_shape(ts[t]), *st = nb_strides(ts[t]);
        for (int d = 0; d < nd; d++) {
            bool bcast = d < nd - 2 && st[d] == 0 && sh[d] > 1;
            if (bcast && t == 2) return NB_KERNEL_DECLINE;
            dims[t][d] = bcast ? 1 : sh[d];
            strides[t][d] = bcast || sh[d] == 1 ? 0 : st[d];
            if (strides[t][d] < 0) return NB_KERNEL_DECLINE;
            key.w[kw++] = dims[t][d];
            key.w[kw++] = strides[t][d];
        }
    }
    int64_t flops = 2 * nb_shape(A)[nd - 1];
    for (int d = 0; d < nd; d++) flops *= nb_shape(C)[d];
    int nt = mm_threads(flops);
    key.w[kw++] = nt;   /* oneDNN splits the work when it creates the primitive */
    /* oneDNN needs a usable stride even on size-1 dims: give them the product
     * of the inner extent, which it ignores for indexing */
    for (int t = 0; t < 3; t++)
        for (int d = nd - 1; d >= 0; d--)
            if (strides[t][d] == 0) strides[t][d] = d + 1 < nd ? strides[t][d + 1] * dims[t][d + 1] : 1;
    const int64_t *dp[3] = {ad, bd, cd}, *sp[3] = {as, bs, cs};
    void *ptrs[3] = {nb_data(A), nb_data(B), nb_data(C)};
    return run_matmul_nt(&key, nd, dp, sp, ptrs, false, NULL, NULL, NULL, nt);
}

/* LINEAR: y (..., N) = x (..., K) @ w (N, K)^T + b (N). The leading dims of x
 * and y must merge into one row dim (true for contiguous tensors); w^T is
 * described by swapped strides, no copy. */
static int merge_rows(const nb_tensor *t, int64_t *rows, int64_t *rs) {
    int nd = nb_ndim(t);
    const int64_t *sh = nb_shape(t), *st = nb_strides(t);
    *rows = 1;
    *rs = nd >= 2 ? st[nd - 2] : 0;
    for (int d = nd - 2; d >= 0; d--) {
        if (sh[d] != 1 && d < nd - 2 && st[d] != st[d + 1] * sh[d + 1]) return -1;
        *rows *= sh[d];
    }
    if (*rows == 1) *rs = sh[nd - 1];
    return 0;
}

static int onednn_linear(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *w = a->in[1], *b = a->nin > 2 ? a->in[2] : NULL;
    nb_tensor *y = a->out;
    if (nb_dtype_of(y) != NB_DTYPE_F32 || nb_numel(y) == 0 || nb_ndim(x) < 1 || nb__thread_invariant)
        return NB_KERNEL_DECLINE;
    int64_t R, xr, R2, yr;
    if (merge_rows(x, &R, &xr) || merge_rows(y, &R2, &yr) || R != R2) return NB_KERNEL_DECLINE;
    int64_t K = nb_shape(x)[nb_ndim(x) - 1], N = nb_shape(y)[nb_ndim(y) - 1];
    if (K == 0) return NB_KERNEL_DECLINE;
    if (b && N > 1 && nb_strides(b)[0] != 1) return NB_KERNEL_DECLINE;   /* oneDNN reads the bias densely */
    int64_t xd[2] = {R, K}, xs[2] = {xr, nb_strides(x)[nb_ndim(x) - 1]};
    int64_t wd[2] = {K, N}, ws[2] = {nb_strides(w)[1], nb_strides(w)[0]};
    int64_t yd[2] = {R, N}, ys[2] = {yr, nb_strides(y)[nb_ndim(y) - 1]};
    int64_t bd[2] = {1, N}, bs[2] = {N, b ? nb_strides(b)[0] : 1};
    for (int i = 0; i < 2; i++) {   /* size-1 dims: any positive stride */
        if (xd[i] == 1 || xs[i] <= 0) xs[i] = i ? 1 : K;
        if (wd[i] == 1 || ws[i] <= 0) ws[i] = i ? 1 : N;
        if (yd[i] == 1 || ys[i] <= 0) ys[i] = i ? 1 : N;
        if (bs[i] <= 0) bs[i] = i ? 1 : N;
    }
    nb__dnnl_key key;
    memset(&key, 0, sizeof key);
    int nt = mm_threads(2 * R * K * N);
    int64_t vals[] = {NB_OP_LINEAR, b != NULL, R, K, N, xs[0], xs[1], ws[0], ws[1], ys[0], ys[1], bs[1], nt};
    memcpy(key.w, vals, sizeof vals);
    const int64_t *dp[3] = {xd, wd, yd}, *sp[3] = {xs, ws, ys};
    void *ptrs[3] = {nb_data(x), nb_data(w), nb_data(y)};
    return run_matmul_nt(&key, 2, dp, sp, ptrs, b != NULL, bd, bs, b ? nb_data(b) : NULL, nt);
}

void nb__onednn_matmul_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_MATMUL, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_matmul", 10, onednn_matmul},
        {NB_OP_LINEAR, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_linear", 10, onednn_linear},
    };
    NB__REGISTER_ALL(ks);
}
