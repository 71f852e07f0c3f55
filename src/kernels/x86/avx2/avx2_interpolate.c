/* avx2_interpolate.c — INTERPOLATE and INTERPOLATE_BWD (F32, x / dx and
 * y / gy contiguous NCHW) with ref_interpolate.c's arguments and
 * arithmetic, in a cache-friendly order.
 *
 * ref walks the output coordinates outermost and every (n, c) plane inside
 * them, so each output element jumps a whole plane (~100x slower than
 * PyTorch on (8, 64, 56, 56) x2). Here a plane is one thread's task and its
 * outputs go row by row; the taps of every output row and column are
 * computed once per call (nb__interp_tap_of, ref's own map). Each output is
 * the same double sum of the same taps in the same order as ref (zero
 * weights skipped, as ref), and the backward adds into dx in ref's (oh, ow)
 * order per element: results are bitwise ref's, at any thread count.
 * Other layouts and F64 are declined to ref.
 */
#include "kernels/kernels.h"

#include <stdlib.h>
#include <string.h>

static bool ip_ok(const nb_tensor *t) { return t && t->dtype == NB_DTYPE_F32 && t->ndim == 4 && nb_is_contiguous(t); }

static int ip_run(const nb_kernel_args *a, bool adjoint) {
    const nb_tensor *sm = adjoint ? a->out : a->in[0], *bg = adjoint ? a->in[0] : a->out;
    if (!ip_ok(sm) || !ip_ok(bg) || sm->shape[0] != bg->shape[0] || sm->shape[1] != bg->shape[1])
        return NB_KERNEL_DECLINE;
    int64_t P = sm->shape[0] * sm->shape[1], H = sm->shape[2], W = sm->shape[3], OH = bg->shape[2], OW = bg->shape[3];
    if (P == 0 || H * W == 0) return 0;
    if (OH * OW == 0) {
        if (adjoint) memset(nb_data(a->out), 0, (size_t)sm->numel * sizeof(float));
        return 0;
    }
    int mode = (int)a->scalar[0];
    bool align = a->scalar[1] != 0;
    nb__interp_tap *th = malloc(sizeof *th * (size_t)(OH + OW));
    if (!th) return nb__err(NB_ENOMEM, "interpolate: out of memory for %lld taps", (long long)(OH + OW));
    nb__interp_tap *tw = th + OH;
    for (int64_t o = 0; o < OH; o++) th[o] = nb__interp_tap_of(mode, align, a->scalar[2], o, H, OH);
    for (int64_t o = 0; o < OW; o++) tw[o] = nb__interp_tap_of(mode, align, a->scalar[3], o, W, OW);
    float *sp = nb_data(sm), *bp = nb_data(bg);
    /* nearest modes: every weight is 1 or 0, so y = x at the one tap and the
       backward adds g (a float add of two floats equals ref's double add
       rounded once to float) */
    bool nearest = mode == NB_INTERP_NEAREST || mode == NB_INTERP_NEAREST_EXACT;
    int nt = nb__par_threads(bg->numel * 2, NB_GRAIN_ELEMENTWISE);
    if (nearest) {
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int64_t pl = 0; pl < P; pl++) {
            float *s = sp + pl * H * W, *b = bp + pl * OH * OW;
            if (adjoint) memset(s, 0, (size_t)(H * W) * sizeof(float));
            for (int64_t oh = 0; oh < OH; oh++) {
                float *srow = s + th[oh].i0 * W, *brow = b + oh * OW;
                if (adjoint)
                    for (int64_t ow = 0; ow < OW; ow++) srow[tw[ow].i0] += brow[ow];
                else
                    for (int64_t ow = 0; ow < OW; ow++) brow[ow] = srow[tw[ow].i0] + 0.0f;   /* ref: 0 + x, so -0 -> +0 */
            }
        }
        free(th);
        return 0;
    }
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t pl = 0; pl < P; pl++) {
        float *s = sp + pl * H * W, *b = bp + pl * OH * OW;
        if (adjoint) memset(s, 0, (size_t)(H * W) * sizeof(float));
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hh[2] = {th[oh].i0, th[oh].i1};
            double lh[2] = {th[oh].l0, th[oh].l1};
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ww[2] = {tw[ow].i0, tw[ow].i1};
                double lw[2] = {tw[ow].l0, tw[ow].l1}, acc = 0.0, g = adjoint ? (double)b[oh * OW + ow] : 0.0;
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) {
                        double wt = lh[i] * lw[j];
                        if (wt == 0.0) continue;
                        float *at = s + hh[i] * W + ww[j];
                        if (adjoint) *at = (float)((double)*at + wt * g);
                        else acc += wt * (double)*at;
                    }
                if (!adjoint) b[oh * OW + ow] = (float)acc;
            }
        }
    }
    free(th);
    return 0;
}

static int avx2_interpolate(const nb_kernel_args *a) { return ip_run(a, false); }
static int avx2_interpolate_bwd(const nb_kernel_args *a) { return ip_run(a, true); }

void nb__avx2_interpolate_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_INTERPOLATE, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_interpolate", 10, avx2_interpolate},
        {NB_OP_INTERPOLATE_BWD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_interpolate_bwd", 10, avx2_interpolate_bwd},
    };
    NB__REGISTER_ALL(ks);
}
