/* ref_reduce_full.c — portable kernels of the full reduction set: prod,
 * amax/amin, argmax/argmin, var/std, logsumexp, vector norm, and the
 * backward helpers of prod, amax/amin, max_dim and norm.
 *
 * Every kernel sees its problem as slices: the input's dims split into kept
 * dims (one slice per kept index, in C order) and reduced dims (the slice's
 * elements, in C order of the reduced dims, so a slice index is the flat
 * index PyTorch's argmax returns). A forward kernel writes one value per slice
 * into out, which has in[0]'s rank with size 1 on reduced dims (reduced dims
 * are those where out's size differs from in[0]'s, or in[0]'s is 1); a
 * backward kernel writes a whole slice into an out of in[0]'s shape, with the
 * reduced dims given as a bit mask in scalar[0].
 *
 * Slices are gathered into a double buffer (int64 for I64 inputs, so large
 * integers compare exactly) and reduced in double: F32 and F64 share the code
 * and F32 results are rounded once. Clarity over speed: these are the oracle
 * for faster variants.
 */
#include "kernels/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- slices of a strided tensor ---- */

typedef struct slices {
    int nk;                          /* kept dims */
    int64_t kshape[NB_MAX_DIMS];     /* kept dims' sizes, in order */
    int64_t kstride[NB_MAX_DIMS];    /* kept dims' strides in the tensor */
    int nr;                          /* reduced dims */
    int64_t rshape[NB_MAX_DIMS];     /* reduced dims' sizes, in order */
    int64_t rstride[NB_MAX_DIMS];    /* reduced dims' strides in the tensor */
    int64_t count;                   /* slices: product of kshape */
    int64_t len;                     /* elements per slice: product of rshape */
} slices;

static void slices_init(slices *s, const nb_tensor *t, unsigned mask) {
    memset(s, 0, sizeof *s);
    s->count = s->len = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (mask & (1u << d)) {
            s->rshape[s->nr] = t->shape[d];
            s->rstride[s->nr++] = t->stride[d];
            s->len *= t->shape[d];
        } else {
            s->kshape[s->nk] = t->shape[d];
            s->kstride[s->nk++] = t->stride[d];
            s->count *= t->shape[d];
        }
    }
}

/* Offset (in elements, from nb_data) of slice k's first element. */
static int64_t slice_base(const slices *s, int64_t k) {
    int64_t off = 0;
    for (int d = s->nk - 1; d >= 0; d--) {
        off += (k % s->kshape[d]) * s->kstride[d];
        k /= s->kshape[d];
    }
    return off;
}

/* Offsets of slice k's len elements, in C order of the reduced dims. */
static void slice_offsets(const slices *s, int64_t k, int64_t *off) {
    int64_t idx[NB_MAX_DIMS] = {0}, o = slice_base(s, k);
    for (int64_t j = 0; j < s->len; j++) {
        off[j] = o;
        for (int d = s->nr - 1; d >= 0; d--) {
            if (++idx[d] < s->rshape[d]) {
                o += s->rstride[d];
                break;
            }
            o -= s->rstride[d] * (s->rshape[d] - 1);
            idx[d] = 0;
        }
    }
}

static void gather_f(const nb_tensor *t, const int64_t *off, int64_t n, double *x) {
    const char *b = nb_data(t);
    if (t->dtype == NB_DTYPE_F32)
        for (int64_t j = 0; j < n; j++) x[j] = ((const float *)b)[off[j]];
    else if (t->dtype == NB_DTYPE_F64)
        for (int64_t j = 0; j < n; j++) x[j] = ((const double *)b)[off[j]];
    else
        for (int64_t j = 0; j < n; j++) x[j] = nb__load(b + off[j] * (int64_t)nb_dtype_size(t->dtype), t->dtype);
}

static void gather_i(const nb_tensor *t, const int64_t *off, int64_t n, int64_t *x) {
    const int64_t *b = nb_data(t);
    for (int64_t j = 0; j < n; j++) x[j] = b[off[j]];
}

static void scatter_f(nb_tensor *t, const int64_t *off, int64_t n, const double *y) {
    char *b = nb_data(t);
    size_t es = nb_dtype_size(t->dtype);
    for (int64_t j = 0; j < n; j++) nb__store(b + off[j] * (int64_t)es, t->dtype, y[j]);
}

/* The reduced dims of a forward call: where out's size differs from in's or
 * in's is 1 (a size-1 dim gives the same slices either way). */
static unsigned forward_mask(const nb_tensor *in, const nb_tensor *out) {
    unsigned m = 0;
    for (int d = 0; d < in->ndim; d++)
        if (out->shape[d] != in->shape[d] || in->shape[d] == 1) m |= 1u << d;
    return m;
}

/* ---- forward driver: one value per slice ---- */

/* x: the slice (n elements); s: the call's scalars. Returns the result. */
typedef double (*slice_fn_f)(const double *x, int64_t n, const double *s);
typedef int64_t (*slice_fn_i)(const int64_t *x, int64_t n);

static int run_forward(const nb_kernel_args *a, slice_fn_f ff, slice_fn_i fi) {
    const nb_tensor *in = a->in[0];
    nb_tensor *out = a->out;
    unsigned mask = forward_mask(in, out);
    slices si, so;
    slices_init(&si, in, mask);
    slices_init(&so, out, mask);
    size_t cap = (size_t)(si.len ? si.len : 1);
    int64_t *off = malloc(cap * sizeof *off);
    void *buf = malloc(cap * 8);   /* doubles or int64s */
    if (!off || !buf) {
        free(off);
        free(buf);
        return nb__err(NB_ENOMEM, "%s: out of memory for a slice of %lld elements", nb_op_name(a->op),
                       (long long)si.len);
    }
    char *ob = nb_data(out);
    size_t oes = nb_dtype_size(out->dtype);
    bool isint = in->dtype == NB_DTYPE_I64;
    for (int64_t k = 0; k < si.count; k++) {
        slice_offsets(&si, k, off);
        char *p = ob + slice_base(&so, k) * (int64_t)oes;
        if (isint) {
            gather_i(in, off, si.len, buf);
            *(int64_t *)p = fi(buf, si.len);
        } else {
            gather_f(in, off, si.len, buf);
            nb__store(p, out->dtype, ff(buf, si.len, a->scalar));
        }
    }
    free(off);
    free(buf);
    return 0;
}

/* ---- prod: empty product 1; int64 wraps around as PyTorch ---- */
static double prod_f(const double *x, int64_t n, const double *s) {
    (void)s;
    double p = 1.0;
    for (int64_t j = 0; j < n; j++) p *= x[j];
    return p;
}
static int64_t prod_i(const int64_t *x, int64_t n) {
    uint64_t p = 1;   /* unsigned: overflow wraps instead of being undefined */
    for (int64_t j = 0; j < n; j++) p *= (uint64_t)x[j];
    return (int64_t)p;
}

/* ---- amax / amin: NaN propagates; the op refuses empty slices ---- */
static double amax_f(const double *x, int64_t n, const double *s) {
    (void)s;
    double m = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        if (isnan(x[j])) return x[j];
        if (x[j] > m) m = x[j];
    }
    return m;
}
static double amin_f(const double *x, int64_t n, const double *s) {
    (void)s;
    double m = INFINITY;
    for (int64_t j = 0; j < n; j++) {
        if (isnan(x[j])) return x[j];
        if (x[j] < m) m = x[j];
    }
    return m;
}
static int64_t amax_i(const int64_t *x, int64_t n) {
    int64_t m = INT64_MIN;
    for (int64_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}
static int64_t amin_i(const int64_t *x, int64_t n) {
    int64_t m = INT64_MAX;
    for (int64_t j = 0; j < n; j++) m = x[j] < m ? x[j] : m;
    return m;
}

/* ---- argmax / argmin: first occurrence; a NaN counts as the extreme (the
 * first NaN wins), as PyTorch ---- */
static double argmax_f(const double *x, int64_t n, const double *s) {
    (void)s;
    int64_t b = 0;
    for (int64_t j = 1; j < n && !isnan(x[b]); j++)
        if (isnan(x[j]) || x[j] > x[b]) b = j;
    return (double)b;
}
static double argmin_f(const double *x, int64_t n, const double *s) {
    (void)s;
    int64_t b = 0;
    for (int64_t j = 1; j < n && !isnan(x[b]); j++)
        if (isnan(x[j]) || x[j] < x[b]) b = j;
    return (double)b;
}
static int64_t argmax_i(const int64_t *x, int64_t n) {
    int64_t b = 0;
    for (int64_t j = 1; j < n; j++)
        if (x[j] > x[b]) b = j;
    return b;
}
static int64_t argmin_i(const int64_t *x, int64_t n) {
    int64_t b = 0;
    for (int64_t j = 1; j < n; j++)
        if (x[j] < x[b]) b = j;
    return b;
}

/* ---- var / std: two passes (mean, then squared deviations); divisor
 * max(0, n - correction) with correction in s[0], as PyTorch ---- */
static double var_f(const double *x, int64_t n, const double *s) {
    double mean = 0, ss = 0;
    for (int64_t j = 0; j < n; j++) mean += x[j];
    mean /= (double)n;   /* n 0 gives NaN, as PyTorch */
    for (int64_t j = 0; j < n; j++) ss += (x[j] - mean) * (x[j] - mean);
    double div = (double)n - s[0];
    return ss / (div > 0 ? div : 0.0);
}
static double std_f(const double *x, int64_t n, const double *s) { return sqrt(var_f(x, n, s)); }

/* ---- logsumexp: shift by the max so exp never overflows; an infinite max
 * shifts by 0 instead (all -inf gives -inf, any +inf gives +inf) ---- */
static double logsumexp_f(const double *x, int64_t n, const double *s) {
    double m = amax_f(x, n, s), sum = 0;
    if (isinf(m)) m = 0;
    for (int64_t j = 0; j < n; j++) sum += exp(x[j] - m);
    return log(sum) + m;
}

/* ---- vector norm, p in s[0]: 1, 2 or inf (the op refuses others). The
 * 2-norm scales by the largest |x| so the squares cannot overflow. ---- */
static double norm_f(const double *x, int64_t n, const double *s) {
    double p = s[0], big = 0, acc = 0;
    for (int64_t j = 0; j < n; j++) {
        if (isnan(x[j])) return x[j];
        if (fabs(x[j]) > big) big = fabs(x[j]);
    }
    if (isinf(p)) return big;
    if (p == 1) {
        for (int64_t j = 0; j < n; j++) acc += fabs(x[j]);
        return acc;
    }
    if (big == 0 || isinf(big)) return big;
    for (int64_t j = 0; j < n; j++) acc += (x[j] / big) * (x[j] / big);
    return big * sqrt(acc);
}

/* ---- backward driver: a whole slice per slice of in[0] ----
 * y: out's slice; x: in[0]'s; x2: in[1]'s when it has in[0]'s shape, else
 * NULL; r: in[1]'s value for the slice when it has out's reduced shape;
 * tmp: n doubles of scratch; s: the call's scalars. */
typedef void (*slice_bw_fn)(double *y, const double *x, const double *x2, double r, int64_t n, double *tmp,
                            const double *s);

enum { BW_NONE, BW_FULL, BW_REDUCED };   /* what in[1] is */

static int run_backward(const nb_kernel_args *a, int second, slice_bw_fn fn) {
    const nb_tensor *in = a->in[0], *in2 = a->nin > 1 ? a->in[1] : NULL;
    nb_tensor *out = a->out;
    unsigned mask = (unsigned)a->scalar[0];
    slices si, so, s2;
    slices_init(&si, in, mask);
    slices_init(&so, out, mask);
    if (in2) slices_init(&s2, in2, mask);
    size_t cap = (size_t)(si.len ? si.len : 1);
    int64_t *off = malloc(cap * sizeof *off);
    double *buf = malloc(4 * cap * sizeof *buf);
    if (!off || !buf) {
        free(off);
        free(buf);
        return nb__err(NB_ENOMEM, "%s: out of memory for a slice of %lld elements", nb_op_name(a->op),
                       (long long)si.len);
    }
    double *x = buf, *x2 = buf + cap, *y = buf + 2 * cap, *tmp = buf + 3 * cap;
    for (int64_t k = 0; k < si.count; k++) {
        double r = 0;
        if (second == BW_FULL) {
            slice_offsets(&s2, k, off);
            gather_f(in2, off, s2.len, x2);
        } else if (second == BW_REDUCED) {
            int64_t o = slice_base(&s2, k);
            gather_f(in2, &o, 1, &r);
        }
        slice_offsets(&si, k, off);
        gather_f(in, off, si.len, x);
        fn(y, x, second == BW_FULL ? x2 : NULL, r, si.len, tmp, a->scalar + 1);
        slice_offsets(&so, k, off);
        scatter_f(out, off, so.len, y);
    }
    free(off);
    free(buf);
    return 0;
}

/* PROD_BACKWARD: y_j = prod_{k != j} x_k, from prefix and suffix products
 * (no division, so zeros in x need no special case). */
static void prod_bw(double *y, const double *x, const double *x2, double r, int64_t n, double *tmp,
                    const double *s) {
    (void)x2, (void)r, (void)tmp, (void)s;
    double acc = 1;
    for (int64_t j = 0; j < n; j++) {
        y[j] = acc;
        acc *= x[j];
    }
    acc = 1;
    for (int64_t j = n - 1; j >= 0; j--) {
        y[j] *= acc;
        acc *= x[j];
    }
}

/* PROD_DOUBLE_BACKWARD: y_j = sum_{i != j} h_i prod_{k != i,j} x_k (h = x2),
 * the vector-Jacobian product of prod_bw. With L_j, R_j the products left and
 * right of j: y_j = A_j R_j + L_j B_j, where A_{j+1} = A_j x_j + h_j L_j and
 * B_{j-1} = B_j x_j + h_j R_j, both starting at 0. */
static void prod_bw2(double *y, const double *x, const double *h, double r, int64_t n, double *L,
                     const double *s) {
    (void)r, (void)s;
    double A = 0, l = 1;
    for (int64_t j = 0; j < n; j++) {   /* y_j = A_j for now, L_j kept */
        y[j] = A;
        L[j] = l;
        A = A * x[j] + h[j] * l;
        l *= x[j];
    }
    double B = 0, R = 1;
    for (int64_t j = n - 1; j >= 0; j--) {
        y[j] = y[j] * R + L[j] * B;
        B = B * x[j] + h[j] * R;
        R *= x[j];
    }
}

/* AMAX_BACKWARD: 1/count where x equals the slice's extreme r, else 0: the
 * gradient is split evenly among ties. A NaN r equals nothing, so the whole
 * slice gets NaN (0/0), as PyTorch's amax backward. */
static void amax_bw(double *y, const double *x, const double *x2, double r, int64_t n, double *tmp,
                    const double *s) {
    (void)x2, (void)tmp, (void)s;
    int64_t c = 0;
    for (int64_t j = 0; j < n; j++) {
        y[j] = x[j] == r;
        c += x[j] == r;
    }
    for (int64_t j = 0; j < n; j++) y[j] = c ? y[j] / (double)c : NAN;
}

/* sgn: 1, -1, 0 at 0, NaN at NaN (the subgradient PyTorch uses at 0). */
static void sgn_into(double *y, const double *x, int64_t n) {
    for (int64_t j = 0; j < n; j++) y[j] = x[j] > 0 ? 1.0 : x[j] < 0 ? -1.0 : x[j];
}

/* VECTOR_NORM_BACKWARD for p = 1 (sgn x) and p = inf (sgn x split evenly
 * among the |x| equal to the norm r, or NaN), p in s[0]: the gradients of
 * these piecewise linear norms, as PyTorch's norm_backward. */
static void norm_bw(double *y, const double *x, const double *x2, double r, int64_t n, double *tmp,
                    const double *s) {
    (void)x2;
    sgn_into(y, x, n);
    if (!isinf(s[0])) return;
    int64_t c = 0;
    for (int64_t j = 0; j < n; j++) {
        bool hit = fabs(x[j]) == r || isnan(x[j]);
        tmp[j] = hit;
        c += hit;
    }
    for (int64_t j = 0; j < n; j++) y[j] = tmp[j] != 0 ? y[j] / (double)c : 0.0;
}

/* MAX_DIM_BACKWARD: out (the input's shape) = in[0] (one value per slice)
 * put at the position in[1] (I64, one index per slice) of its slice, zeros
 * elsewhere. scalar[0] holds the reduced dim's mask bit. */
static int max_dim_bw_kernel(const nb_kernel_args *a) {
    const nb_tensor *val = a->in[0], *idx = a->in[1];
    nb_tensor *out = a->out;
    unsigned mask = (unsigned)a->scalar[0];
    slices so, sv, sx;
    slices_init(&so, out, mask);
    slices_init(&sv, val, mask);
    slices_init(&sx, idx, mask);
    size_t cap = (size_t)(so.len ? so.len : 1);
    int64_t *off = malloc(cap * sizeof *off);
    double *y = calloc(cap, sizeof *y);
    if (!off || !y) {
        free(off);
        free(y);
        return nb__err(NB_ENOMEM, "%s: out of memory for a slice of %lld elements", nb_op_name(a->op),
                       (long long)so.len);
    }
    for (int64_t k = 0; k < so.count; k++) {
        int64_t ov = slice_base(&sv, k), ox = slice_base(&sx, k), i;
        double v;
        gather_f(val, &ov, 1, &v);
        gather_i(idx, &ox, 1, &i);
        if (i < 0 || i >= so.len) {
            free(off);
            free(y);
            return nb__err(NB_ERANGE, "%s: index %lld out of range for a slice of %lld", nb_op_name(a->op),
                           (long long)i, (long long)so.len);
        }
        y[i] = v;
        slice_offsets(&so, k, off);
        scatter_f(out, off, so.len, y);
        y[i] = 0;
    }
    free(off);
    free(y);
    return 0;
}

/* ---- the kernels ---- */
static int k_prod(const nb_kernel_args *a) { return run_forward(a, prod_f, prod_i); }
static int k_amax(const nb_kernel_args *a) { return run_forward(a, amax_f, amax_i); }
static int k_amin(const nb_kernel_args *a) { return run_forward(a, amin_f, amin_i); }
static int k_argmax(const nb_kernel_args *a) { return run_forward(a, argmax_f, argmax_i); }
static int k_argmin(const nb_kernel_args *a) { return run_forward(a, argmin_f, argmin_i); }
static int k_var(const nb_kernel_args *a) { return run_forward(a, var_f, NULL); }
static int k_std(const nb_kernel_args *a) { return run_forward(a, std_f, NULL); }
static int k_logsumexp(const nb_kernel_args *a) { return run_forward(a, logsumexp_f, NULL); }
static int k_norm(const nb_kernel_args *a) { return run_forward(a, norm_f, NULL); }
static int k_prod_bw(const nb_kernel_args *a) { return run_backward(a, BW_NONE, prod_bw); }
static int k_prod_bw2(const nb_kernel_args *a) { return run_backward(a, BW_FULL, prod_bw2); }
static int k_amax_bw(const nb_kernel_args *a) { return run_backward(a, BW_REDUCED, amax_bw); }
static int k_norm_bw(const nb_kernel_args *a) { return run_backward(a, BW_REDUCED, norm_bw); }

void nb__ref_reduce_full_register(void) {
#define RK(OP, DT, NAME, FN) {NB_OP_##OP, NB_DTYPE_##DT, NB_ISA_REF, NAME, 0, FN}
#define RK_F(OP, NAME, FN) RK(OP, F32, NAME, FN), RK(OP, F64, NAME, FN)
#define RK_FI(OP, NAME, FN) RK_F(OP, NAME, FN), RK(OP, I64, NAME, FN)
    static const nb_kernel_desc ks[] = {
        RK_FI(PROD, "ref_prod", k_prod),
        RK_FI(AMAX, "ref_amax", k_amax),
        RK_FI(AMIN, "ref_amin", k_amin),
        RK_FI(ARGMAX, "ref_argmax", k_argmax),
        RK_FI(ARGMIN, "ref_argmin", k_argmin),
        RK_F(VAR, "ref_var", k_var),
        RK_F(STD, "ref_std", k_std),
        RK_F(LOGSUMEXP, "ref_logsumexp", k_logsumexp),
        RK_F(VECTOR_NORM, "ref_vector_norm", k_norm),
        RK_F(PROD_BACKWARD, "ref_prod_backward", k_prod_bw),
        RK_F(PROD_DOUBLE_BACKWARD, "ref_prod_double_backward", k_prod_bw2),
        RK_F(AMAX_BACKWARD, "ref_amax_backward", k_amax_bw),
        RK_F(MAX_DIM_BACKWARD, "ref_max_dim_backward", max_dim_bw_kernel),
        RK_F(VECTOR_NORM_BACKWARD, "ref_vector_norm_backward", k_norm_bw),
    };
#undef RK_FI
#undef RK_F
#undef RK
    NB__REGISTER_ALL(ks);
}
