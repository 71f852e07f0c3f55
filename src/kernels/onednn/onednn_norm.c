/* onednn_norm.c — BATCH_NORM (y from x and given (mean; var) stats, in
 * training and eval alike) through oneDNN's batch normalization forward
 * with global stats.
 *
 * Arguments are ref_norm.c's. Only F32, x and y 4-D NCHW contiguous; stats
 * (2, C), w and b (C) may have any strides (they are copied into dense
 * float vectors, C values each). Anything else is declined to ref.
 *
 * Not registered, by measurement or mapping: BATCH_NORM_STATS (oneDNN
 * computes a batch's statistics only inside a training forward that also
 * writes the normalized output: an extra pass and buffer over x);
 * BATCH_NORM_BACKWARD (oneDNN's backward_data on NCHW, ncsp_bnorm, was no
 * faster than ref on [64,32,14,14]: ~2.4 ms against ~2.2 ms on this 2-core
 * machine, so the op stays with ref).
 *
 * ref works in double; oneDNN in float (eps as float): results agree to
 * about 1e-5 relative. Primitives are cached in onednn.c's cache by (op,
 * flags, dims, eps, threads). The ~2x over ref holds at the median; on this
 * oversubscribed 2-core machine its 2-thread runs had a heavier tail than
 * single-threaded ref (p90 8-15 ms against ref's 1-5 ms).
 */
#include "kernels/onednn/onednn.h"

#include <stdlib.h>
#include <string.h>

/* True when t is F32, 4-D, contiguous. */
static bool bn_ok4(const nb_tensor *t) {
    return t && nb_ndim(t) == 4 && nb_dtype_of(t) == NB_DTYPE_F32 && nb_is_contiguous(t);
}

/* Copies row r of a (rows, C) tensor, or a (C) tensor when rows == 0, into dst. */
static bool bn_vec(const nb_tensor *t, int rows, int r, int64_t C, float *dst) {
    if (!t || nb_dtype_of(t) != NB_DTYPE_F32 || nb_ndim(t) != (rows ? 2 : 1)) return false;
    if (nb_shape(t)[rows ? 1 : 0] != C || (rows && nb_shape(t)[0] != rows)) return false;
    const float *p = nb_data(t);
    int64_t s = nb_strides(t)[rows ? 1 : 0];
    if (rows) p += r * nb_strides(t)[0];
    for (int64_t c = 0; c < C; c++) dst[c] = p[c * s];
    return true;
}

static int onednn_batch_norm(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *stats = a->in[1], *w = a->in[2], *b = a->in[3];
    if (!bn_ok4(x) || !bn_ok4(a->out) || !nb_numel(x)) return NB_KERNEL_DECLINE;
    for (int i = 0; i < 4; i++)
        if (nb_shape(a->out)[i] != nb_shape(x)[i]) return NB_KERNEL_DECLINE;
    dnnl_engine_t eng = nb__dnnl_engine();
    dnnl_stream_t st = nb__dnnl_stream();
    if (!eng || !st) return NB_KERNEL_DECLINE;
    int64_t C = nb_shape(x)[1];
    float *vec = malloc(sizeof *vec * (size_t)(4 * C));   /* mean, var, scale, shift */
    if (!vec) return NB_KERNEL_DECLINE;
    float *mean = vec, *var = vec + C, *scale = vec + 2 * C, *shift = vec + 3 * C;
    if (!bn_vec(stats, 2, 0, C, mean) || !bn_vec(stats, 2, 1, C, var) || (w && !bn_vec(w, 0, 0, C, scale)) ||
        (b && !bn_vec(b, 0, 0, C, shift))) {
        free(vec);
        return NB_KERNEL_DECLINE;
    }
    unsigned flags = (unsigned)dnnl_use_global_stats | (w ? (unsigned)dnnl_use_scale : 0u) |
                     (b ? (unsigned)dnnl_use_shift : 0u);
    float eps = (float)a->scalar[0];
    dnnl_dims_t xd;
    for (int i = 0; i < 4; i++) xd[i] = nb_shape(x)[i];
    dnnl_dims_t cd = {C};
    dnnl_memory_desc_t xmd, cmd;
    if (dnnl_memory_desc_init_by_tag(&xmd, 4, xd, dnnl_f32, dnnl_nchw) ||
        dnnl_memory_desc_init_by_tag(&cmd, 1, cd, dnnl_f32, dnnl_a)) {
        free(vec);
        return NB_KERNEL_DECLINE;
    }
    nb__dnnl_key key;
    memset(&key, 0, sizeof key);
    int n = 0;
    key.w[n++] = 0x626e;   /* "bn": not a pooling / conv key */
    key.w[n++] = a->op;
    key.w[n++] = flags;
    for (int i = 0; i < 4; i++) key.w[n++] = xd[i];
    int64_t eb;
    memcpy(&eb, &(double){(double)eps}, sizeof eb);
    key.w[n++] = eb;
    key.w[n++] = nb__dnnl_threads();
    bool owns = false;
    dnnl_primitive_t prim = nb__dnnl_cache_get(&key);
    if (!prim) {
        dnnl_batch_normalization_desc_t fd;
        dnnl_primitive_desc_t pd = NULL;
        dnnl_status_t s = dnnl_batch_normalization_forward_desc_init(&fd, dnnl_forward_inference, &xmd, eps, flags);
        if (!s) s = dnnl_primitive_desc_create(&pd, &fd, nb__dnnl_attr(), eng, NULL);
        const char *impl = NULL;
        if (!s) s = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (!s && (!impl || !strncmp(impl, "ref", 3))) s = dnnl_unimplemented;   /* oneDNN's reference code */
        if (!s) s = dnnl_primitive_create(&prim, pd);
        if (pd) dnnl_primitive_desc_destroy(pd);
        if (s) {
            free(vec);
            return NB_KERNEL_DECLINE;
        }
        prim = nb__dnnl_cache_put(&key, prim, &owns);
    }
    dnnl_memory_t m[6] = {0};
    dnnl_exec_arg_t args[6];
    int na = 0, rc = 0;
    struct {
        int arg;
        const dnnl_memory_desc_t *md;
        void *p;
    } use[6] = {{DNNL_ARG_SRC, &xmd, nb_data(x)},
                {DNNL_ARG_DST, &xmd, nb_data(a->out)},
                {DNNL_ARG_MEAN, &cmd, mean},
                {DNNL_ARG_VARIANCE, &cmd, var},
                {w ? DNNL_ARG_SCALE : 0, &cmd, scale},
                {b ? DNNL_ARG_SHIFT : 0, &cmd, shift}};
    for (int i = 0; i < 6 && !rc; i++) {
        if (!use[i].arg) continue;
        if (dnnl_memory_create(&m[na], use[i].md, eng, use[i].p)) rc = NB_KERNEL_DECLINE;
        else args[na] = (dnnl_exec_arg_t){use[i].arg, m[na]}, na++;
    }
    if (!rc && nb__dnnl_exec(prim, na, args))
        rc = nb__err(NB_EINVAL, "oneDNN %s failed to execute", nb_op_name(a->op));
    for (int i = 0; i < na; i++) dnnl_memory_destroy(m[i]);
    if (owns) dnnl_primitive_destroy(prim);
    free(vec);
    return rc;
}

void nb__onednn_norm_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_BATCH_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_batch_norm", 10, onednn_batch_norm},
    };
    NB__REGISTER_ALL(ks);
}
