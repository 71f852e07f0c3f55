/* ref_optim.c — portable optimizer updates (SGD with momentum, Adam/AdamW),
 * in place on the parameter and its state.
 *
 * The arithmetic follows torch.optim's single-tensor code of PyTorch 1.13
 * operation by operation, in the parameter's own dtype, so 10 steps agree
 * with PyTorch to float rounding. All tensors are contiguous and of the
 * parameter's dtype (the optimizer makes its state that way).
 */
#include "kernels/kernels.h"

#include <math.h>

/* scalar = {lr, momentum, dampening, weight_decay, nesterov, maximize, first_step} */
#define DEF_SGD(T, SUFFIX)                                                                   \
    static int ref_sgd_step_##SUFFIX(const nb_kernel_args *a) {                              \
        T *p = nb_data(a->out), *buf = a->nin > 1 && a->in[1] ? nb_data(a->in[1]) : NULL;    \
        const T *g = nb_data(a->in[0]);                                                      \
        T lr = (T)a->scalar[0], mom = (T)a->scalar[1], damp1 = (T)(1 - a->scalar[2]);        \
        T wd = (T)a->scalar[3];                                                              \
        bool nesterov = a->scalar[4] != 0, maximize = a->scalar[5] != 0, first = a->scalar[6] != 0; \
        for (int64_t i = 0; i < nb_numel(a->out); i++) {                                    \
            T d = maximize ? -g[i] : g[i];                                                   \
            if (wd != 0) d = d + wd * p[i];                                                  \
            if (mom != 0 && buf) {                                                           \
                buf[i] = first ? d : buf[i] * mom + damp1 * d;                               \
                d = nesterov ? d + mom * buf[i] : buf[i];                                    \
            }                                                                                \
            p[i] = p[i] + (-lr) * d;                                                         \
        }                                                                                    \
        return 0;                                                                            \
    }

/* scalar = {lr, beta1, beta2, eps, weight_decay, step, decoupled, maximize} */
#define DEF_ADAM(T, SUFFIX, SQRT)                                                            \
    static int ref_adam_step_##SUFFIX(const nb_kernel_args *a) {                             \
        T *p = nb_data(a->out), *m1 = nb_data(a->in[1]), *m2 = nb_data(a->in[2]);            \
        T *mx = a->nin > 3 && a->in[3] ? nb_data(a->in[3]) : NULL;                           \
        const T *gp = nb_data(a->in[0]);                                                     \
        double lr = a->scalar[0], b1 = a->scalar[1], b2 = a->scalar[2], step = a->scalar[5]; \
        T eps = (T)a->scalar[3], wd = (T)a->scalar[4];                                       \
        bool decoupled = a->scalar[6] != 0, maximize = a->scalar[7] != 0;                    \
        /* torch computes these as Python floats (double) */                                 \
        double bc1 = 1 - pow(b1, step), bc2s = sqrt(1 - pow(b2, step));                      \
        T step_size = (T)(lr / bc1), bc2_sqrt = (T)bc2s, decay = (T)(1 - lr * a->scalar[4]); \
        T c1 = (T)(1 - b1), c2 = (T)(1 - b2), tb1 = (T)b1, tb2 = (T)b2;                      \
        for (int64_t i = 0; i < nb_numel(a->out); i++) {                                    \
            T g = maximize ? -gp[i] : gp[i];                                                 \
            if (decoupled) p[i] = p[i] * decay;                                              \
            else if (wd != 0) g = g + wd * p[i];                                             \
            m1[i] = m1[i] * tb1 + c1 * g;                                                    \
            m2[i] = m2[i] * tb2 + c2 * (g * g);                                              \
            T v = m2[i];                                                                     \
            if (mx) {                                                                        \
                if (v > mx[i] || v != v) mx[i] = v;                                          \
                v = mx[i];                                                                   \
            }                                                                                \
            T denom = SQRT(v) / bc2_sqrt + eps;                                              \
            p[i] = p[i] + (-step_size) * (m1[i] / denom);                                    \
        }                                                                                    \
        return 0;                                                                            \
    }

DEF_SGD(float, f32)
DEF_SGD(double, f64)
DEF_ADAM(float, f32, sqrtf)
DEF_ADAM(double, f64, sqrt)

void nb__ref_optim_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SGD_STEP, NB_DTYPE_F32, NB_ISA_REF, "ref_sgd_step_f32", 0, ref_sgd_step_f32},
        {NB_OP_SGD_STEP, NB_DTYPE_F64, NB_ISA_REF, "ref_sgd_step_f64", 0, ref_sgd_step_f64},
        {NB_OP_ADAM_STEP, NB_DTYPE_F32, NB_ISA_REF, "ref_adam_step_f32", 0, ref_adam_step_f32},
        {NB_OP_ADAM_STEP, NB_DTYPE_F64, NB_ISA_REF, "ref_adam_step_f64", 0, ref_adam_step_f64},
    };
    NB__REGISTER_ALL(ks);
}
