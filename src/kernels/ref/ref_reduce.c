/* ref_reduce.c — portable sum over any set of dims.
 *
 * in[0] (d0..dn) -> out of the same rank with size 1 on reduced dims
 * (contiguous, as the op allocates it). Accumulates in double (f32, f64) or
 * int64 (i64, bool) per output element, walking the input once in C order.
 */
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

static int ref_sum(const nb_kernel_args *a) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    int64_t on = nb_numel(out), n = nb_numel(in);
    const int64_t *shape = nb_shape(in), *istr = nb_strides(in), *ostr_full = nb_strides(out);
    int nd = nb_ndim(in);
    int64_t ostr[NB_MAX_DIMS];   /* C-order strides of out's shape, 0 on reduced dims */
    nb__contig_strides(nd, nb_shape(out), ostr);
    for (int d = 0; d < nd; d++)
        if (nb_shape(out)[d] == 1) ostr[d] = 0;
    bool isint = in->dtype == NB_DTYPE_I64 || in->dtype == NB_DTYPE_BOOL;
    double *accd = NULL;
    int64_t *acci = NULL;
    if (isint) acci = calloc((size_t)(on ? on : 1), sizeof *acci);
    else accd = calloc((size_t)(on ? on : 1), sizeof *accd);
    if (!accd && !acci) return nb__err(NB_ENOMEM, "nb_sum: out of memory for the accumulator");
    const char *ib = nb_data(in);
    size_t ies = nb_dtype_size(in->dtype);
    int64_t idx[NB_MAX_DIMS] = {0}, ioff = 0, ooff = 0;
    for (int64_t k = 0; k < n; k++) {
        const char *p = ib + ioff * (int64_t)ies;
        switch (in->dtype) {
        case NB_DTYPE_F32: accd[ooff] += *(const float *)p; break;
        case NB_DTYPE_F64: accd[ooff] += *(const double *)p; break;
        case NB_DTYPE_I64: acci[ooff] += *(const int64_t *)p; break;
        default: acci[ooff] += *(const bool *)p; break;
        }
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) {
                ioff += istr[d];
                ooff += ostr[d];
                break;
            }
            ioff -= istr[d] * (shape[d] - 1);
            ooff -= ostr[d] * (shape[d] - 1);
            idx[d] = 0;
        }
    }
    char *ob = nb_data(out);
    size_t oes = nb_dtype_size(out->dtype);
    int64_t oidx[NB_MAX_DIMS] = {0};
    const int64_t *oshape = nb_shape(out);
    /* write back in C order of out's (possibly strided) layout */
    for (int64_t k = 0; k < on; k++) {   /* k is the C-order index of out */
        int64_t off = 0;
        for (int d = 0; d < nd; d++) off += oidx[d] * ostr_full[d];
        char *p = ob + off * (int64_t)oes;
        if (isint && out->dtype == NB_DTYPE_I64) *(int64_t *)p = acci[k];
        else nb__store(p, out->dtype, isint ? (double)acci[k] : accd[k]);
        for (int d = nd - 1; d >= 0; d--) {
            if (++oidx[d] < oshape[d]) break;
            oidx[d] = 0;
        }
    }
    free(accd);
    free(acci);
    return 0;
}

void nb__ref_reduce_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_SUM, NB_DTYPE_F32, NB_ISA_REF, "ref_sum", 0, ref_sum},
        {NB_OP_SUM, NB_DTYPE_F64, NB_ISA_REF, "ref_sum", 0, ref_sum},
        {NB_OP_SUM, NB_DTYPE_I64, NB_ISA_REF, "ref_sum", 0, ref_sum},
        {NB_OP_SUM, NB_DTYPE_BOOL, NB_ISA_REF, "ref_sum", 0, ref_sum},
    };
    NB__REGISTER_ALL(ks);
}
