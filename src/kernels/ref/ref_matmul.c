/* ref_matmul.c — portable batched matrix product.
 *
 * out (..., M, N) = in[0] (..., M, K) @ in[1] (..., K, N); batch dims are
 * equal in all three (inputs broadcast with stride 0). Any strides. The loop
 * order i-k-j keeps the inner loop on out's and b's rows.
 */
#include "kernels/kernels.h"

#define DEF_MATMUL(T)                                                                            \
    static int ref_matmul_##T(const nb_kernel_args *args) {                                      \
        const nb_tensor *A = args->in[0], *B = args->in[1];                                      \
        nb_tensor *C = args->out;                                                                \
        int nd = C->ndim, nb = nd - 2;                                                           \
        int64_t M = C->shape[nd - 2], N = C->shape[nd - 1], K = A->shape[nd - 1];                \
        int64_t batches = 1;                                                                     \
        for (int d = 0; d < nb; d++) batches *= C->shape[d];                                     \
        int64_t idx[NB_MAX_DIMS] = {0};                                                          \
        const T *a0 = nb_data(A), *b0 = nb_data(B);                                              \
        T *c0 = nb_data(C);                                                                      \
        int64_t as0 = A->stride[nd - 2], as1 = A->stride[nd - 1];                                \
        int64_t bs0 = B->stride[nd - 2], bs1 = B->stride[nd - 1];                                \
        int64_t cs0 = C->stride[nd - 2], cs1 = C->stride[nd - 1];                                \
        for (int64_t bt = 0; bt < batches; bt++) {                                               \
            int64_t ao = 0, bo = 0, co = 0;                                                      \
            for (int d = 0; d < nb; d++) {                                                       \
                ao += idx[d] * A->stride[d];                                                     \
                bo += idx[d] * B->stride[d];                                                     \
                co += idx[d] * C->stride[d];                                                     \
            }                                                                                    \
            const T *a = a0 + ao, *b = b0 + bo;                                                  \
            T *c = c0 + co;                                                                      \
            for (int64_t i = 0; i < M; i++) {                                                    \
                for (int64_t j = 0; j < N; j++) c[i * cs0 + j * cs1] = 0;                        \
                for (int64_t k = 0; k < K; k++) {                                                \
                    T av = a[i * as0 + k * as1];                                                 \
                    for (int64_t j = 0; j < N; j++) c[i * cs0 + j * cs1] += av * b[k * bs0 + j * bs1]; \
                }                                                                                \
            }                                                                                    \
            for (int d = nb - 1; d >= 0; d--) {                                                  \
                if (++idx[d] < C->shape[d]) break;                                               \
                idx[d] = 0;                                                                      \
            }                                                                                    \
        }                                                                                        \
        return 0;                                                                                \
    }

DEF_MATMUL(float)
DEF_MATMUL(double)

void nb__ref_matmul_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_MATMUL, NB_DTYPE_F32, NB_ISA_REF, "ref_matmul_f32", 0, ref_matmul_float},
        {NB_OP_MATMUL, NB_DTYPE_F64, NB_ISA_REF, "ref_matmul_f64", 0, ref_matmul_double},
    };
    NB__REGISTER_ALL(ks);
}
