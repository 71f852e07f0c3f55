/* onednn_conv.c — convolution through oneDNN's convolution primitives:
 * CONV2D and CONV1D forward (with or without bias), CONV_BWD_DATA (and
 * CONV_TRANSPOSE2D without bias, the same adjoint) and CONV_BWD_WEIGHT.
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
 * The primitive is made with format `any`, so oneDNN picks its blocked
 * layout; each operand whose user layout (its strides) differs is reordered
 * into a scratch buffer (inputs) or out of one (the output). The primitive
 * and its reorders are cached under one key (op, part, dims, strides,
 * geometry), so after the first step of a training loop no primitive is
 * created. F32 only; F64, zero-size tensors, stride-0 (broadcast) operands
 * and shapes where oneDNN would use its reference code are declined to ref.
 */
#include "kernels/onednn/onednn.h"

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
    NB_ASSERT(n <= NB__DNNL_KEY_WORDS);
}

/* The oneDNN argument id of each role for c's propagation kind. */
static int cv_arg(const cv_call *c, int role) {
    static const int fwd[CV_ROLES] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    static const int bwd_d[CV_ROLES] = {DNNL_ARG_DIFF_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_DST, 0};
    static const int bwd_w[CV_ROLES] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_BIAS};
    return c->prop == dnnl_forward_training ? fwd[role] : c->prop == dnnl_backward_data ? bwd_d[role] : bwd_w[role];
}

/* A new primitive descriptor for c with every layout `any`, or NULL. The
 * backward ones get the forward one as their hint, as oneDNN asks. */
static dnnl_primitive_desc_t cv_make_pd(const cv_call *c, dnnl_engine_t eng) {
    dnnl_memory_desc_t md[CV_ROLES];
    for (int r = 0; r < CV_ROLES; r++)
        if (c->nd[r] &&
            dnnl_memory_desc_init_by_tag(&md[r], c->nd[r], c->dims[r], dnnl_f32, dnnl_format_tag_any) != dnnl_success)
            return NULL;
    const dnnl_memory_desc_t *bias = c->ptr[CV_BIA] ? &md[CV_BIA] : NULL;
    dnnl_convolution_desc_t fd, bd;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    if (dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &md[CV_SRC],
                                                   &md[CV_WEI], bias, &md[CV_DST], c->stride, c->dil, c->pad_l,
                                                   c->pad_r) != dnnl_success ||
        dnnl_primitive_desc_create(&fpd, &fd, NULL, eng, NULL) != dnnl_success)
        return NULL;
    if (c->prop == dnnl_forward_training) return fpd;
    dnnl_status_t st =
        c->prop == dnnl_backward_data
            ? dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &md[CV_SRC], &md[CV_WEI],
                                                               &md[CV_DST], c->stride, c->dil, c->pad_l, c->pad_r)
            : dnnl_dilated_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &md[CV_SRC],
                                                                  &md[CV_WEI], NULL, &md[CV_DST], c->stride, c->dil,
                                                                  c->pad_l, c->pad_r);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bd, NULL, eng, fpd);
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
    if (dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, NULL) != dnnl_success) return NULL;
    return cv_create(&k, pd, false, owns);
}

/* Per-call state of one operand. */
typedef struct cv_mem {
    dnnl_memory_t user, prim;    /* the caller's memory; the primitive's (user itself, or scratch) */
    void *scratch;               /* the blocked copy's buffer (nb__alloc), or NULL */
    size_t bytes;                /* its size */
    dnnl_primitive_t reorder;    /* user -> prim (inputs), prim -> user (output), or NULL */
    bool owns_reorder;           /* not cached: destroy after use */
} cv_mem;

/* Runs c on its (cached) primitive, reordering where the layouts differ. */
static int cv_run(const cv_call *c) {
    dnnl_engine_t eng = nb__dnnl_engine();
    if (!eng) return NB_KERNEL_DECLINE;
    nb__dnnl_key key;
    cv_key(c, 0, &key);
    bool owns = false;
    dnnl_primitive_t prim = nb__dnnl_cache_get(&key);
    if (!prim) {
        dnnl_primitive_desc_t pd = cv_make_pd(c, eng);
        if (!pd || !(prim = cv_create(&key, pd, true, &owns))) return NB_KERNEL_DECLINE;
    }
    const_dnnl_primitive_desc_t pd = NULL;
    cv_mem m[CV_ROLES];
    memset(m, 0, sizeof m);
    dnnl_exec_arg_t args[CV_ROLES];
    dnnl_stream_t s = nb__dnnl_stream();
    int nargs = 0, rc = 0;
    if (dnnl_primitive_get_primitive_desc(prim, &pd) != dnnl_success) {
        rc = NB_KERNEL_DECLINE;
        goto release;
    }
    for (int r = 0; r < CV_ROLES && !rc; r++) {
        int arg = cv_arg(c, r);
        if (!c->ptr[r] || !arg) continue;
        dnnl_memory_desc_t umd;
        const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
        if (!pmd || dnnl_memory_desc_init_by_strides(&umd, c->nd[r], c->dims[r], dnnl_f32, c->strides[r]) ||
            dnnl_memory_create(&m[r].user, &umd, eng, c->ptr[r])) {
            rc = NB_KERNEL_DECLINE;
            break;
        }
        m[r].prim = m[r].user;
        if (!dnnl_memory_desc_equal(&umd, pmd)) {
            bool in = r != c->out;
            m[r].bytes = dnnl_memory_desc_get_size(pmd);
            m[r].reorder = cv_reorder(c, r, in ? &umd : pmd, in ? pmd : &umd, eng, &m[r].owns_reorder);
            if (!m[r].reorder || !(m[r].scratch = nb__alloc(m[r].bytes)) ||
                dnnl_memory_create(&m[r].prim, pmd, eng, m[r].scratch))
                rc = NB_KERNEL_DECLINE;
        }
        args[nargs++] = (dnnl_exec_arg_t){arg, m[r].prim};
    }
    if (rc) goto release;
    for (int r = 0; r < CV_ROLES && !rc; r++) {   /* inputs into the primitive's layout */
        if (!m[r].reorder || r == c->out) continue;
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, m[r].user}, {DNNL_ARG_TO, m[r].prim}};
        if (dnnl_primitive_execute(m[r].reorder, s, 2, ra)) rc = -1;
    }
    if (!rc && dnnl_primitive_execute(prim, s, nargs, args)) rc = -1;
    if (!rc && m[c->out].reorder) {
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, m[c->out].prim}, {DNNL_ARG_TO, m[c->out].user}};
        if (dnnl_primitive_execute(m[c->out].reorder, s, 2, ra)) rc = -1;
    }
    if (dnnl_stream_wait(s)) rc = -1;
    if (rc) rc = nb__err(NB_EINVAL, "oneDNN %s failed to execute", nb_op_name(c->op));
release:
    for (int r = CV_ROLES - 1; r >= 0; r--) {
        if (m[r].prim != m[r].user) dnnl_memory_destroy(m[r].prim);
        dnnl_memory_destroy(m[r].user);
        if (m[r].scratch) nb__free(m[r].scratch, m[r].bytes);
        if (m[r].owns_reorder) dnnl_primitive_destroy(m[r].reorder);
    }
    if (owns) dnnl_primitive_destroy(prim);
    return rc;
}

/* CONV1D, CONV2D, CONV_BWD_DATA, CONV_TRANSPOSE2D (no bias), CONV_BWD_WEIGHT. */
static int onednn_conv(const nb_kernel_args *a) {
    cv_call c;
    if (nb_dtype_of(a->out) != NB_DTYPE_F32 || cv_describe(a, &c)) return NB_KERNEL_DECLINE;
    return cv_run(&c);
}

void nb__onednn_conv_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_CONV1D, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv1d", 10, onednn_conv},
        {NB_OP_CONV2D, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv2d", 10, onednn_conv},
        {NB_OP_CONV_BWD_DATA, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv_bwd_data", 10, onednn_conv},
        {NB_OP_CONV_TRANSPOSE2D, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv_transpose2d", 10, onednn_conv},
        {NB_OP_CONV_BWD_WEIGHT, NB_DTYPE_F32, NB_ISA_AVX2, "onednn_conv_bwd_weight", 10, onednn_conv},
    };
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) nb__registry_add(&ks[i]);
}
