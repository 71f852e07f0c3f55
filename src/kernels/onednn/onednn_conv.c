/* onednn_conv.c — convolution through oneDNN's convolution primitives:
 * CONV2D and CONV1D forward (with or without bias), CONV_BWD_DATA (and
 * CONV_TRANSPOSE2D without bias, the same adjoint) and CONV_BWD_WEIGHT;
 * and CONV_BWD_BIAS as a direct reduction (at the end of the file).
 *
 * Each kernel receives what ref_conv.c's header states: tensors NC[H]W in
 * any strides, w (Co, Ci/groups, [kH,] kW), scalar = {stride_h, stride_w,
 * pad_h, pad_w, dil_h, dil_w, groups}. A 3-D tensor becomes NCHW with H = 1.
 * With groups > 1 the weight is seen as (G, Co/G, Ci/G, kH, kW) by strides.
 *
 * Sizes come from the tensors, not the formula: the right padding given to
 * oneDNN is whatever makes the output size exact, (O-1)*s + (k-1)*d + 1 -
 * I - pad_l, negative when the last input rows are never read (oneDNN
 * accepts down to 1 - s; below that, e.g. output_padding >= stride, the
 * call is declined).
 *
 * Layouts. The primitive is made with format `any` for every operand, so
 * oneDNN picks its blocked layout (nChw8c on AVX2), except backward-weights
 * with input channels per group not a multiple of 8 (a first layer: 1 or 3
 * channels): there the blocked kernel pads the channels to 8 and does 8x
 * the work (11 ms instead of 1.3 ms for LeNet's conv1 here), so the images
 * are given as NHWC, which oneDNN's jit kernel takes unpadded (for C = 1
 * NHWC and NCHW are the same bytes: no reorder at all).
 *
 * Why the API boundary stays plain NCHW (strided) and not blocked: every
 * tensor a kernel receives or writes is an ordinary strided nabla tensor,
 * read by ref and AVX2 kernels, views and the user. Keeping a blocked copy
 * between ops would need a layout tag on tensors and every consumer to
 * understand it; measured on LeNet's step, the activation reorders at the
 * boundary cost ~6% of the conv time (about 4-6 ms of a 100 ms step on one
 * thread; a reorder of 64x32x28x28 is ~0.9 ms), less than a relu or a pool
 * pass over the same tensor, so the boundary stays plain and reorders are
 * done per call into a scratch buffer (inputs) or out of one (the output).
 * Channels-last tensors (nb_to_channels_last, PyTorch's channels_last) are
 * the exception a user chooses: when both images of a call are NHWC
 * (cv_is_nhwc) the primitive is made for NHWC and runs on them in place,
 * with no reorder (the conv op gives a channels-last input a channels-last
 * output and input gradient, see src/ops/conv.c). Measured on the AVX-512
 * Xeon at 1 thread, fwd+bwd against oneDNN called in its blocked layouts:
 * the 3x3 conv 0.85 plain, 0.98-1.02 channels-last; LeNet's conv2 0.86
 * plain, 0.90 channels-last (oneDNN's NHWC kernels are as fast as its
 * blocked ones there; the reorders were the difference).
 * Weights are the exception that pays without any layout change: a conv
 * weight is read by the forward and the backward-data primitive and changes
 * only at optimizer steps, so its blocked copy lives in the weight cache
 * (onednn.c), keyed by storage and remade when the storage version moves.
 *
 * The primitive and its reorders are cached under one key (op, part, dims,
 * strides, geometry, layout choice, OpenMP threads), so after the first step
 * of a training loop no primitive is created; the scratchpad is the
 * calling thread's (nb__dnnl_exec), reused across calls. F32 only; F64, zero-size
 * tensors, stride-0 (broadcast) operands and shapes where oneDNN would use
 * its reference code are declined to ref.
 */
#include "kernels/onednn/onednn.h"
#include "nb_config.h"

#if NB_HAVE_OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>

/* Operand roles, in forward terms: the input image, the weight, the output
 * image and the bias. Backward data writes SRC, backward weight writes WEI. */
enum { CV_SRC, CV_WEI, CV_DST, CV_BIA, CV_ROLES };

typedef struct cv_call {
    nb_op op;                      /* the registry op being served */
    dnnl_prop_kind_t prop;         /* forward_training, backward_data or backward_weights */
    int out;                       /* the role written */
    int nd[CV_ROLES];              /* dims per role: 4, 4 or 5, 4, 1 */
    dnnl_dims_t dims[CV_ROLES];    /* oneDNN dims per role (first nd used) */
    dnnl_dims_t strides[CV_ROLES]; /* per role, in elements (size-1 dims normalized) */
    void *ptr[CV_ROLES];           /* data per role; ptr[CV_BIA] NULL: no bias */
    dnnl_dims_t stride, dil;       /* per (H, W); dil as oneDNN counts it, d - 1 */
    dnnl_dims_t pad_l, pad_r;      /* per (H, W); pad_r makes the sizes exact, may be negative */
    dnnl_format_tag_t act;         /* layout asked for SRC and DST: any, or NHWC (see the top) */
    const nb_tensor *wt;           /* the weight when it is an input (the weight cache's key), or NULL */
    bool out_in_prim_layout;       /* ptr[out] is already in the primitive's layout (no reorder) */
} cv_call;

/* t (N, C, [H,] W) as 4-D dims and strides; -1 when not 3-D or 4-D. */
static int cv_nchw(const nb_tensor *t, int64_t *d, int64_t *s) {
    int nd = nb_ndim(t);
    if (nd != 3 && nd != 4) return -1;
    const int64_t *sh = nb_shape(t), *st = nb_strides(t);
    d[0] = sh[0], s[0] = st[0];
    d[1] = sh[1], s[1] = st[1];
    d[2] = nd == 4 ? sh[2] : 1, s[2] = nd == 4 ? st[2] : 0;
    d[3] = sh[nd - 1], s[3] = st[nd - 1];
    return 0;
}

/* d, s (NCHW order, size-1 strides normalized) laid out NHWC, channels
 * innermost, with more than one channel (one channel: NCHW as well, and
 * oneDNN's own choice serves it). */
static bool cv_is_nhwc(const int64_t *d, const int64_t *s) {
    return d[1] > 1 && s[1] == 1 && s[3] == d[1] && s[2] == d[3] * d[1] && s[0] == d[2] * d[3] * d[1];
}

/* Fills c from the kernel arguments; NB_KERNEL_DECLINE for what oneDNN
 * cannot be given. */
static int cv_describe(const nb_kernel_args *a, cv_call *c) {
    memset(c, 0, sizeof *c);
    c->op = a->op;
    const nb_tensor *t[CV_ROLES] = {NULL, NULL, NULL, NULL};
    switch (a->op) {
    case NB_OP_CONV1D:
    case NB_OP_CONV2D:
        t[CV_SRC] = a->in[0], t[CV_WEI] = a->in[1], t[CV_DST] = a->out;
        t[CV_BIA] = a->nin > 2 ? a->in[2] : NULL;
        c->prop = dnnl_forward_training, c->out = CV_DST;
        break;
    case NB_OP_CONV_TRANSPOSE2D:
    case NB_OP_CONV_BWD_DATA:
        if (a->nin > 2 && a->in[2]) return NB_KERNEL_DECLINE;   /* backward data has no bias */
        t[CV_DST] = a->in[0], t[CV_WEI] = a->in[1], t[CV_SRC] = a->out;
        c->prop = dnnl_backward_data, c->out = CV_SRC;
        break;
    case NB_OP_CONV_BWD_WEIGHT:
        t[CV_SRC] = a->in[0], t[CV_DST] = a->in[1], t[CV_WEI] = a->out;
        c->prop = dnnl_backward_weights, c->out = CV_WEI;
        break;
    default:
        return NB_KERNEL_DECLINE;
    }
    int nd = nb_ndim(t[CV_SRC]);
    for (int r = 0; r < CV_ROLES; r++) {
        if (!t[r]) continue;
        if (nb_dtype_of(t[r]) != NB_DTYPE_F32 || nb_numel(t[r]) == 0) return NB_KERNEL_DECLINE;
        if (r != CV_BIA && nb_ndim(t[r]) != nd) return NB_KERNEL_DECLINE;
        c->ptr[r] = nb_data(t[r]);
    }
    int64_t wd[4], ws[4];
    if (cv_nchw(t[CV_SRC], c->dims[CV_SRC], c->strides[CV_SRC]) ||
        cv_nchw(t[CV_DST], c->dims[CV_DST], c->strides[CV_DST]) || cv_nchw(t[CV_WEI], wd, ws))
        return NB_KERNEL_DECLINE;
    c->nd[CV_SRC] = c->nd[CV_DST] = 4;
    int64_t g = (int64_t)a->scalar[6];
    const int64_t *x = c->dims[CV_SRC], *y = c->dims[CV_DST];
    if (g < 1 || x[0] != y[0] || wd[0] != y[1] || y[1] % g || wd[1] * g != x[1]) return NB_KERNEL_DECLINE;
    if (g == 1) {
        c->nd[CV_WEI] = 4;
        memcpy(c->dims[CV_WEI], wd, sizeof wd);
        memcpy(c->strides[CV_WEI], ws, sizeof ws);
    } else {   /* (G, Co/G, Ci/G, kH, kW) */
        int64_t gd[5] = {g, wd[0] / g, wd[1], wd[2], wd[3]}, gs[5] = {ws[0] * (wd[0] / g), ws[0], ws[1], ws[2], ws[3]};
        c->nd[CV_WEI] = 5;
        memcpy(c->dims[CV_WEI], gd, sizeof gd);
        memcpy(c->strides[CV_WEI], gs, sizeof gs);
    }
    if (t[CV_BIA]) {
        if (nb_ndim(t[CV_BIA]) != 1 || nb_shape(t[CV_BIA])[0] != y[1]) return NB_KERNEL_DECLINE;
        c->nd[CV_BIA] = 1;
        c->dims[CV_BIA][0] = y[1];
        c->strides[CV_BIA][0] = nb_strides(t[CV_BIA])[0];
    }
    /* size-1 dims: any positive stride, the inner extent (what a dense layout has) */
    for (int r = 0; r < CV_ROLES; r++)
        for (int d = c->nd[r] - 1; d >= 0; d--) {
            if (c->dims[r][d] == 1) c->strides[r][d] = d + 1 < c->nd[r] ? c->strides[r][d + 1] * c->dims[r][d + 1] : 1;
            if (c->strides[r][d] <= 0) return NB_KERNEL_DECLINE;   /* broadcast or flipped */
        }
    for (int i = 0; i < 2; i++) {
        int64_t s = (int64_t)a->scalar[i], p = (int64_t)a->scalar[2 + i], dl = (int64_t)a->scalar[4 + i];
        int64_t k = wd[2 + i], in = x[2 + i], o = y[2 + i];
        if (s < 1 || p < 0 || dl < 1) return NB_KERNEL_DECLINE;
        c->stride[i] = s;
        c->dil[i] = dl - 1;
        c->pad_l[i] = p;
        c->pad_r[i] = (o - 1) * s + (k - 1) * dl + 1 - in - p;
        if (c->pad_r[i] + s <= 0) return NB_KERNEL_DECLINE;
    }
    /* images already channels-last (nb_to_channels_last): oneDNN's NHWC kernels on them, no reorder */
    bool nhwc = cv_is_nhwc(c->dims[CV_SRC], c->strides[CV_SRC]) && cv_is_nhwc(c->dims[CV_DST], c->strides[CV_DST]);
    c->act = nhwc || (c->prop == dnnl_backward_weights && wd[1] % 8) ? dnnl_acdb : dnnl_format_tag_any;
    c->wt = c->prop == dnnl_backward_weights ? NULL : t[CV_WEI];
    return 0;
}

/* The cache key of c's primitive (part 0) or of its reorder for a role
 * (part 1 + role): everything that shapes them. */
static void cv_key(const cv_call *c, int part, nb__dnnl_key *k) {
    memset(k, 0, sizeof *k);
    int n = 0;
    k->w[n++] = c->op;
    k->w[n++] = part;
    for (int r = 0; r < CV_ROLES; r++) {
        k->w[n++] = c->nd[r];
        for (int d = 0; d < c->nd[r]; d++) {
            k->w[n++] = c->dims[r][d];
            k->w[n++] = c->strides[r][d];
        }
    }
    for (int i = 0; i < 2; i++) {
        k->w[n++] = c->stride[i];
        k->w[n++] = c->dil[i];
        k->w[n++] = c->pad_l[i];
        k->w[n++] = c->pad_r[i];
    }
    k->w[n++] = c->act;
    k->w[n++] = nb__dnnl_threads();
    NB_ASSERT(n <= NB__DNNL_KEY_WORDS);
}

/* The oneDNN argument id of each role for c's propagation kind. */
static int cv_arg(const cv_call *c, int role) {
    static const int fwd[CV_ROLES] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    static const int bwd_d[CV_ROLES] = {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST, 0};
    static const int bwd_w[CV_ROLES] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_BIAS};
    return c->prop == dnnl_forward_training ? fwd[role] : c->prop == dnnl_backward_data ? bwd_d[role] : bwd_w[role];
}

/* A new primitive descriptor for c with layouts `any` (SRC and DST: c->act),
 * or NULL. The backward ones get the forward one as their hint, as oneDNN
 * asks. */
static dnnl_primitive_desc_t cv_make_pd(const cv_call *c, dnnl_engine_t eng) {
    dnnl_memory_desc_t md[CV_ROLES];
    for (int r = 0; r < CV_ROLES; r++) {
        dnnl_format_tag_t tag = (r == CV_SRC || r == CV_DST) && c->nd[CV_WEI] == 4 ? c->act : dnnl_format_tag_any;
        if (c->nd[r] && dnnl_memory_desc_init_by_tag(&md[r], c->nd[r], c->dims[r], dnnl_f32, tag) != dnnl_success)
            return NULL;
    }
    const dnnl_memory_desc_t *bias = c->ptr[CV_BIA] ? &md[CV_BIA] : NULL;
    dnnl_convolution_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    if (dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &md[CV_SRC],
                                                   &md[CV_WEI], bias, &md[CV_DST], c->stride, c->dil, c->pad_l,
                                                   c->pad_r) != dnnl_success ||
        dnnl_primitive_desc_create(&fpd, &fd, nb__dnnl_attr(), eng, NULL) != dnnl_success)
        return NULL;
    if (c->prop == dnnl_forward_training) return fpd;
    dnnl_status_t st =
        c->prop == dnnl_backward_data
            ? dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &md[CV_SRC], &md[CV_WEI],
                                                               &md[CV_DST], c->stride, c->dil, c->pad_l, c->pad_r)
            : dnnl_dilated_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &md[CV_SRC],
                                                                  &md[CV_WEI], NULL, &md[CV_DST], c->stride, c->dil,
                                                                  c->pad_l, c->pad_r);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bd, nb__dnnl_attr(), eng, fpd);
    dnnl_primitive_desc_destroy(fpd);
    return st == dnnl_success ? pd : NULL;
}

/* Creates the primitive of pd (NULL when oneDNN would run its reference
 * code, no faster than ours) and caches it under k; *owns as cache_put. */
static dnnl_primitive_t cv_create(const nb__dnnl_key *k, dnnl_primitive_desc_t pd, bool check_impl, bool *owns) {
    const char *impl = NULL;
    dnnl_primitive_t p = NULL;
    if (check_impl && (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl ||
                       !strncmp(impl, "ref", 3))) {
        dnnl_primitive_desc_destroy(pd);
        return NULL;
    }
    dnnl_status_t st = dnnl_primitive_create(&p, pd);
    dnnl_primitive_desc_destroy(pd);
    return st == dnnl_success ? nb__dnnl_cache_put(k, p, owns) : NULL;
}

/* The cached reorder from -> to for (c, role), made on first use; NULL when
 * oneDNN cannot make it. */
static dnnl_primitive_t cv_reorder(const cv_call *c, int role, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, dnnl_engine_t eng, bool *owns) {
    nb__dnnl_key k;
    cv_key(c, 1 + role, &k);
    *owns = false;
    dnnl_primitive_t p = nb__dnnl_cache_get(&k);
    if (p) return p;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, nb__dnnl_attr()) != dnnl_success) return NULL;
    return cv_create(&k, pd, false, owns);
}

/* Per-call state of one operand. */
typedef struct cv_mem {
    dnnl_memory_t user, prim;    /* the caller's memory; the primitive's (user itself, or scratch) */
    void *scratch;               /* the blocked copy's buffer (nb__alloc), or NULL */
    size_t bytes;                /* its size */
    dnnl_primitive_t reorder;    /* user -> prim (inputs), prim -> user (output), or NULL */
    bool owns_reorder;           /* not cached: destroy after use */
    int pin;                     /* weight cache entry read (nb__dnnl_weight_unpin), or -1 */
} cv_mem;

/* The (cached) primitive for c, or NULL: oneDNN has no fast one. *owns as
 * nb__dnnl_cache_put. An NHWC request oneDNN cannot serve fast gets the
 * `any` primitive, cached under the NHWC key so the lookup stays a hit. */
static dnnl_primitive_t cv_prim(const cv_call *c, dnnl_engine_t eng, bool *owns) {
    nb__dnnl_key key;
    cv_key(c, 0, &key);
    *owns = false;
    dnnl_primitive_t prim = nb__dnnl_cache_get(&key);
    if (prim) return prim;
    dnnl_primitive_desc_t pd = cv_make_pd(c, eng);
    if (pd && (prim = cv_create(&key, pd, true, owns))) return prim;
    if (c->act == dnnl_format_tag_any) return NULL;
    cv_call any = *c;
    any.act = dnnl_format_tag_any;
    pd = cv_make_pd(&any, eng);
    return pd ? cv_create(&key, pd, true, owns) : NULL;
}

/* Sets up m for role r: the user memory, and where its layout differs from
 * pmd (the primitive's), the primitive's memory: the weight cache's copy for
 * an input weight, else a scratch buffer with its reorder. 0 or decline. */
static int cv_bind(const cv_call *c, int r, const dnnl_memory_desc_t *pmd, dnnl_engine_t eng, cv_mem *m) {
    if (r == c->out && c->out_in_prim_layout) {
        if (dnnl_memory_create(&m->user, pmd, eng, c->ptr[r])) return NB_KERNEL_DECLINE;
        m->prim = m->user;
        return 0;
    }
    dnnl_memory_desc_t umd;
    if (dnnl_memory_desc_init_by_strides(&umd, c->nd[r], c->dims[r], dnnl_f32, c->strides[r]) ||
        dnnl_memory_create(&m->user, &umd, eng, c->ptr[r]))
        return NB_KERNEL_DECLINE;
    m->prim = m->user;
    if (dnnl_memory_desc_equal(&umd, pmd)) return 0;
    bool in = r != c->out;
    m->reorder = cv_reorder(c, r, in ? &umd : pmd, in ? pmd : &umd, eng, &m->owns_reorder);
    if (!m->reorder) return NB_KERNEL_DECLINE;
    if (r == CV_WEI && c->wt) {
        void *buf = nb__dnnl_weight_get(c->wt, &umd, pmd, m->reorder, &m->pin);
        if (buf) {
            if (m->owns_reorder) dnnl_primitive_destroy(m->reorder);
            m->reorder = NULL;   /* the copy is current: nothing to run per call */
            m->owns_reorder = false;
            return dnnl_memory_create(&m->prim, pmd, eng, buf) ? NB_KERNEL_DECLINE : 0;
        }
    }
    m->bytes = dnnl_memory_desc_get_size(pmd);
    if (!(m->scratch = nb__alloc(m->bytes)) || dnnl_memory_create(&m->prim, pmd, eng, m->scratch))
        return NB_KERNEL_DECLINE;
    return 0;
}

/* Runs c on its (cached) primitive, reordering where the layouts differ. */
static int cv_run(const cv_call *c) {
    dnnl_engine_t eng = nb__dnnl_engine();
    dnnl_stream_t s = nb__dnnl_stream();
    if (!eng || !s) return NB_KERNEL_DECLINE;
    bool owns = false;
    dnnl_primitive_t prim = cv_prim(c, eng, &owns);
    if (!prim) return NB_KERNEL_DECLINE;
    const_dnnl_primitive_desc_t pd = NULL;
    cv_mem m[CV_ROLES];
    memset(m, 0, sizeof m);
    for (int r = 0; r < CV_ROLES; r++) m[r].pin = -1;
    dnnl_exec_arg_t args[CV_ROLES];
    int nargs = 0, rc = 0;
    if (dnnl_primitive_get_primitive_desc(prim, &pd) != dnnl_success) {
        rc = NB_KERNEL_DECLINE;
        goto release;
    }
    for (int r = 0; r < CV_ROLES && !rc; r++) {
        int arg = cv_arg(c, r);
        if (!c->ptr[r] || !arg) continue;
        const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
        rc = pmd ? cv_bind(c, r, pmd, eng, &m[r]) : NB_KERNEL_DECLINE;
        args[nargs++] = (dnnl_exec_arg_t){arg, m[r].prim};
    }
    if (rc) goto release;
    for (int r = 0; r < CV_ROLES && !rc; r++) {   /* inputs into the primitive's layout */
        if (!m[r].reorder || r == c->out) continue;
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, m[r].user}, {DNNL_ARG_TO, m[r].prim}};
        if (nb__dnnl_exec(m[r].reorder, 2, ra)) rc = -1;
    }
    if (!rc && nb__dnnl_exec(prim, nargs, args)) rc = -1;
    if (!rc && m[c->out].reorder) {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, m[c->out].prim}, {DNNL_ARG_TO, m[c->out].user}};
        if (nb__dnnl_exec(m[c->out].reorder, 2, ra)) rc = -1;
    }
    if (rc) rc = nb__err(NB_EINVAL, "oneDNN %s failed to execute", nb_op_name(c->op));
release:
    for (int r = CV_ROLES - 1; r >= 0; r--) {
        if (m[r].prim != m[r].user) dnnl_memory_destroy(m[r].prim);
        dnnl_memory_destroy(m[r].user);
        if (m[r].scratch) nb__free(m[r].scratch, m[r].bytes);
        if (m[r].owns_reorder) dnnl_primitive_destroy(m[r].reorder);
        if (m[r].pin >= 0) nb__dnnl_weight_unpin(m[r].pin);
    }
    if (owns) dnnl_primitive_destroy(prim);
    return rc;
}

/* Backward-weights in fixed chunks of images. oneDNN's primitive sums over
 * the images with a split that follows its thread count, so its bits change
 * with the thread count (measured: 526 of 576 elements of a 8x8x3x3
 * gradient differ between 1 and 4 threads), and the parallel backward
 * executor, whose concurrent nodes run their kernels on fewer threads than
 * a node alone, would not give the serial executor's gradients. Here the
 * images are cut into at most CV_CHUNKS chunks whose size depends on the
 * batch alone; each chunk is a single-thread primitive call into its own
 * partial gradient, chunks run in parallel, and the partials are summed in
 * chunk order: the same bits at any thread count. The partials stay in the
 * primitive's (blocked) layout and are summed there, so one reorder brings
 * the sum to the caller's layout (per-chunk reorders cost ~5% of the call). */
#define CV_CHUNKS 16

/* The chunk k of c: images [k * per, min(n, (k + 1) * per)), its partial
 * gradient written to out (in the primitive's layout). */
static cv_call cv_chunk(const cv_call *c, int64_t per, int k, void *out) {
    cv_call ck = *c;
    int64_t n = c->dims[CV_SRC][0], i0 = k * per, cnt = n - i0 < per ? n - i0 : per;
    ck.dims[CV_SRC][0] = ck.dims[CV_DST][0] = cnt;
    ck.ptr[CV_SRC] = (float *)c->ptr[CV_SRC] + i0 * c->strides[CV_SRC][0];
    ck.ptr[CV_DST] = (float *)c->ptr[CV_DST] + i0 * c->strides[CV_DST][0];
    ck.ptr[CV_WEI] = out;
    ck.out_in_prim_layout = true;
    return ck;
}

/* The layout of the gradient the single-thread primitive for ck writes, or
 * NULL (no fast primitive). Call with OpenMP's thread count set to 1. */
static const dnnl_memory_desc_t *cv_wei_md(const cv_call *ck, dnnl_engine_t eng) {
    bool owns = false;
    dnnl_primitive_t p = cv_prim(ck, eng, &owns);
    const_dnnl_primitive_desc_t pd = NULL;
    const dnnl_memory_desc_t *md = NULL;
    if (p && !dnnl_primitive_get_primitive_desc(p, &pd))
        md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, DNNL_ARG_DIFF_WEIGHTS);
    if (owns) dnnl_primitive_destroy(p), md = NULL;   /* the cache was full: no md to keep */
    return md;
}

static int cv_bwd_weight(const cv_call *c) {
    dnnl_engine_t eng = nb__dnnl_engine();
    if (!eng) return NB_KERNEL_DECLINE;
    int64_t n = c->dims[CV_SRC][0], per = (n + CV_CHUNKS - 1) / CV_CHUNKS;
    int chunks = (int)((n + per - 1) / per), nt = nb__dnnl_threads() < chunks ? nb__dnnl_threads() : chunks;
#if NB_HAVE_OPENMP
    int was = omp_get_max_threads();
    omp_set_num_threads(1);   /* the chunks' primitives are single-thread ones */
#endif
    /* every chunk's primitive must write the same layout (the last, shorter, one could differ) */
    cv_call c0 = cv_chunk(c, per, 0, NULL), cl = cv_chunk(c, per, chunks - 1, NULL);
    const dnnl_memory_desc_t *md = cv_wei_md(&c0, eng), *mdl = cv_wei_md(&cl, eng);
#if NB_HAVE_OPENMP
    omp_set_num_threads(was);
#endif
    if (!md || !mdl || !dnnl_memory_desc_equal(md, mdl)) return NB_KERNEL_DECLINE;
    dnnl_memory_desc_t pmd = *md;
    size_t wbytes = dnnl_memory_desc_get_size(&pmd), bytes = (size_t)chunks * wbytes;
    int64_t wn = (int64_t)(wbytes / sizeof(float));
    float *part = nb__alloc(bytes);
    if (!part) return NB_KERNEL_DECLINE;
    int rc = 0;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static, 1) reduction(min : rc)
    for (int k = 0; k < chunks; k++) {
#if NB_HAVE_OPENMP
        int was_k = omp_get_max_threads();
        omp_set_num_threads(1);
#endif
        cv_call ck = cv_chunk(c, per, k, part + (int64_t)k * wn);
        int r = cv_run(&ck);
        if (r < rc) rc = r;
#if NB_HAVE_OPENMP
        omp_set_num_threads(was_k);
#endif
    }
    if (!rc) {   /* the partials' sum, in chunk order, into the first one (padding: zeros + zeros) */
        int ntw = nb__par_threads(wn * chunks, NB_GRAIN_ELEMENTWISE);
#pragma omp parallel for num_threads(nb__par_team(ntw)) if (ntw > 1)
        for (int64_t i = 0; i < wn; i++) {
            float acc = part[i];
            for (int k = 1; k < chunks; k++) acc += part[(int64_t)k * wn + i];
            part[i] = acc;
        }
        dnnl_memory_desc_t umd;
        dnnl_memory_t from = NULL, to = NULL;
        bool owns = false;
        dnnl_primitive_t re = NULL;
        if (dnnl_memory_desc_init_by_strides(&umd, c->nd[CV_WEI], c->dims[CV_WEI], dnnl_f32, c->strides[CV_WEI]) ||
            dnnl_memory_create(&from, &pmd, eng, part) || dnnl_memory_create(&to, &umd, eng, c->ptr[CV_WEI]) ||
            !(re = cv_reorder(c, CV_WEI, &pmd, &umd, eng, &owns))) {
            rc = NB_KERNEL_DECLINE;
        } else {
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
            if (nb__dnnl_exec(re, 2, ra)) rc = nb__err(NB_EINVAL, "oneDNN conv_bwd_weight failed to execute");
        }
        if (owns) dnnl_primitive_destroy(re);
        dnnl_memory_destroy(to);
        dnnl_memory_destroy(from);
    }
    nb__free(part, bytes);
    return rc;
}

/* CONV1D, CONV2D, CONV_BWD_DATA, CONV_TRANSPOSE2D (no bias), CONV_BWD_WEIGHT. */
static int onednn_conv(const nb_kernel_args *a) {
    cv_call c;
    if (nb_dtype_of(a->out) != NB_DTYPE_F32 || cv_describe(a, &c)) return NB_KERNEL_DECLINE;
    return c.prop == dnnl_backward_weights ? cv_bwd_weight(&c) : cv_run(&c);
}

/* CONV_BWD_BIAS: db (Co) = sum over n and space of gy (N, Co, [H,] W).
 * Not a oneDNN primitive (its bias gradient comes fused into
 * backward-weights, which the op set keeps separate): a direct reduction,
 * channels split over threads. A contiguous plane is summed 32 floats at a
 * time into eight 4-float partial sums (SSE2, the x86-64 baseline this
 * file is built for: two loads a cycle outrun any cache level the gradient
 * comes from), then a tail, then the 32 lanes into a double per channel
 * in lane order; planes add in image order. Each thread walks its
 * channels image by image, in memory order (channel by channel, each plane
 * began with a cache miss the prefetcher had not seen coming: 4 GB/s on
 * conv2's gradient). The split is by channel, so the bits do not depend on
 * the thread count. The earlier loop (8 scalar sums)
 * ran at 8-10 GB/s on LeNet's conv1 gradient (64 x 32 x 28 x 28), 0.6-0.76
 * ms, 12% of that conv's fwd+bwd. */
typedef float bb_v4 __attribute__((vector_size(16)));

/* Loads 4 floats at p (any alignment). */
static inline bb_v4 bb_load(const float *p) {
    bb_v4 x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* Adds the n floats at p (contiguous) into the 32 lanes of part. Eight
 * named sums, not an array: gcc -O2 kept an array's sums in memory (21 GB/s
 * from L2 instead of 70). */
static void bb_plane(const float *p, int64_t n, float part[32]) {
    bb_v4 v0 = bb_load(part), v1 = bb_load(part + 4), v2 = bb_load(part + 8), v3 = bb_load(part + 12);
    bb_v4 v4 = bb_load(part + 16), v5 = bb_load(part + 20), v6 = bb_load(part + 24), v7 = bb_load(part + 28);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        v0 += bb_load(p + i), v1 += bb_load(p + i + 4), v2 += bb_load(p + i + 8), v3 += bb_load(p + i + 12);
        v4 += bb_load(p + i + 16), v5 += bb_load(p + i + 20), v6 += bb_load(p + i + 24), v7 += bb_load(p + i + 28);
    }
    const bb_v4 v[8] = {v0, v1, v2, v3, v4, v5, v6, v7};
    memcpy(part, v, sizeof v);
    for (int j = 0; i < n; i++, j++) part[j] += p[i];
}

/* This thread's channels [*c0, *c1) of C, in whole units of `unit`
 * channels: a split by channel, so no sum depends on the thread count. */
static void bias_span(int64_t C, int64_t unit, int64_t *c0, int64_t *c1) {
    int t = 0, T = 1;
#if NB_HAVE_OPENMP
    t = omp_get_thread_num(), T = omp_get_num_threads();
#endif
    int64_t blocks = (C + unit - 1) / unit;
    *c0 = unit * (blocks * t / T);
    *c1 = unit * (blocks * (t + 1) / T) < C ? unit * (blocks * (t + 1) / T) : C;
}

/* The channels-last gradient (cv_is_nhwc): per image, each channel's sum
 * over the positions in order (4 channels a vector), into a double per
 * channel; threads split the channels (multiples of 16: whole cache lines),
 * so again the bits do not depend on the thread count. */
static int bias_nhwc(const nb_tensor *g, const int64_t *d, const int64_t *st, nb_tensor *db) {
    int64_t C = d[1], hw = d[2] * d[3];
    double *acc = calloc((size_t)C, sizeof *acc);
    float *part = malloc((size_t)C * sizeof *part);
    if (!acc || !part) {
        free(acc), free(part);
        return nb__err(NB_ENOMEM, "conv_bwd_bias: out of memory for %lld channel sums", (long long)C);
    }
    const float *gp = nb_data(g);
    int nt = nb__par_threads(nb_numel(g), NB_GRAIN_ELEMENTWISE);
    if (nt > (C + 15) / 16) nt = (int)((C + 15) / 16);
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1)
    {
        int64_t c0, c1;
        bias_span(C, 16, &c0, &c1);
        for (int64_t n = 0; n < d[0]; n++) {
            for (int64_t c = c0; c < c1; c++) part[c] = 0.0f;
            for (int64_t i = 0; i < hw; i++) {
                const float *row = gp + n * st[0] + i * C;
                int64_t c = c0;
                for (; c + 4 <= c1; c += 4) {
                    bb_v4 v = bb_load(part + c) + bb_load(row + c);
                    memcpy(part + c, &v, sizeof v);
                }
                for (; c < c1; c++) part[c] += row[c];
            }
            for (int64_t c = c0; c < c1; c++) acc[c] += part[c];
        }
    }
    float *out = nb_data(db);
    int64_t sdb = nb_strides(db)[0];
    for (int64_t c = 0; c < C; c++) out[c * sdb] = (float)acc[c];
    free(acc), free(part);
    return 0;
}

static int direct_conv_bwd_bias(const nb_kernel_args *a) {
    const nb_tensor *g = a->in[0];
    nb_tensor *db = a->out;
    int nd = nb_ndim(g);
    if (nb_dtype_of(g) != NB_DTYPE_F32 || nb_dtype_of(db) != NB_DTYPE_F32 || (nd != 3 && nd != 4) ||
        nb_ndim(db) != 1 || nb_shape(db)[0] != nb_shape(g)[1])
        return NB_KERNEL_DECLINE;
    int64_t d[4], st[4];
    if (cv_nchw(g, d, st)) return NB_KERNEL_DECLINE;
    if (cv_is_nhwc(d, st)) return bias_nhwc(g, d, st, db);
    if (d[3] == 1) st[3] = d[2] > 1 ? st[2] : 1;
    if (d[2] > 1 && st[2] != d[3] * st[3]) return NB_KERNEL_DECLINE;   /* a plane must be one run */
    int64_t hw = d[2] * d[3], sw = st[3], sdb = nb_strides(db)[0];
    const float *gp = nb_data(g);
    float *out = nb_data(db);
    double *acc = calloc((size_t)d[1], sizeof *acc);
    if (!acc) return nb__err(NB_ENOMEM, "conv_bwd_bias: out of memory for %lld channel sums", (long long)d[1]);
    int nt = nb__par_threads(nb_numel(g), NB_GRAIN_ELEMENTWISE);
#pragma omp parallel num_threads(nb__par_team(nt)) if (nt > 1)
    {
        int64_t c0, c1;
        bias_span(d[1], 1, &c0, &c1);
        for (int64_t n = 0; n < d[0]; n++)   /* memory order: the planes stream */
            for (int64_t c = c0; c < c1; c++) {
                const float *p = gp + n * st[0] + c * st[1];
                float part[32] = {0};
                if (sw == 1)
                    bb_plane(p, hw, part);
                else
                    for (int64_t i = 0; i < hw; i++) part[i % 32] += p[i * sw];
                for (int j = 0; j < 32; j++) acc[c] += part[j];
            }
    }
    for (int64_t c = 0; c < d[1]; c++) out[c * sdb] = (float)acc[c];
    free(acc);
    return 0;
}

void nb__onednn_conv_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_CONV1D, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv1d", 10, onednn_conv},
        {NB_OP_CONV2D, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv2d", 10, onednn_conv},
        {NB_OP_CONV_BWD_DATA, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv_bwd_data", 10, onednn_conv},
        {NB_OP_CONV_TRANSPOSE2D, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv_transpose2d", 10, onednn_conv},
        {NB_OP_CONV_BWD_WEIGHT, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv_bwd_weight", 10, onednn_conv},
        {NB_OP_CONV_BWD_BIAS, NB_DTYPE_F32, NB_ISA_AVX2, "direct_conv_bwd_bias", 10, direct_conv_bwd_bias},
    };
    NB__REGISTER_ALL(ks);
}
