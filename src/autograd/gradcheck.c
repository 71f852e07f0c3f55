/* gradcheck.c — gradient checks: the analytic Jacobian from backward
 * against central finite differences, in float64 (PyTorch's defaults: eps
 * 1e-6, atol 1e-5, rtol 1e-3), and the same for the gradient of the
 * gradient.
 *
 * Analytic: one nb_autograd_grad per output element with a one-hot
 * grad_output (retain_graph). Numeric: each input element is nudged by ±eps
 * in place (and restored exactly), the function re-run in no-grad mode.
 * Cost: numel(out) backwards + 2·numel(inputs) forwards: meant for small
 * tensors.
 */
#include "autograd/autograd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *elem_ptr(nb_tensor *t, int64_t flat) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (flat % t->shape[d]) * t->stride[d];
        flat /= t->shape[d];
    }
    return (double *)nb_data(t) + off;
}

static int out_values(nb_tensor *out, double *v) {
    nb_tensor *d = nb_to_dtype(out, NB_DTYPE_F64);
    return d ? nb_copy_to(d, v, sizeof(double) * (size_t)out->numel) : nb_last_error_code();
}

typedef struct check {
    nb_gradcheck_fn fn;
    void *user;
    nb_tensor *const *inputs;
    int n;
} check;

static int run_check(const check *ck, const nb_gradcheck_opts *opts, nb_gradcheck_report *rep, const char *who) {
    double eps = opts && opts->eps > 0 ? opts->eps : 1e-6;
    double atol = opts && opts->atol > 0 ? opts->atol : 1e-5;
    double rtol = opts && opts->rtol > 0 ? opts->rtol : 1e-3;
    int n = ck->n, rc = 0, nreq = 0;
    nb_tensor *req[64];
    int reqi[64];
    double *ja[64] = {0};
    if (n > 64) return nb__err(NB_EINVAL, "%s: at most 64 inputs (got %d)", who, n);
    for (int i = 0; i < n; i++) {
        if (!ck->inputs[i]) return nb__err(NB_ENULLARG, "%s: input %d is NULL", who, i);
        if (!nb__requires_grad(ck->inputs[i])) continue;
        if (ck->inputs[i]->dtype != NB_DTYPE_F64)
            return nb__err(NB_EDTYPE, "%s: input %d is %s; gradcheck needs f64 inputs for precision", who, i,
                           nb_dtype_name(ck->inputs[i]->dtype));
        if (nb__grad_fn(ck->inputs[i]))
            return nb__err(NB_EINVAL, "%s: input %d is not a leaf", who, i);
        req[nreq] = ck->inputs[i];
        reqi[nreq++] = i;
    }
    if (!nreq) return nb__err(NB_EINVAL, "%s: no input requires grad", who);
    nb_gradcheck_report worst = {.input = -1};
    double worst_excess = 0;
    nb_scope_begin();
    nb_tensor *out = ck->fn(ck->inputs, n, ck->user);
    if (!out) {
        rc = nb_last_error_code() ? nb_last_error_code() : nb__err(NB_EINVAL, "%s: the function returned NULL", who);
        goto done;
    }
    int64_t m = out->numel;
    double *fp = malloc(sizeof(double) * (size_t)(m ? m : 1) * 2), *fm = fp + m;
    bool ok = fp != NULL;
    for (int r = 0; r < nreq; r++) {
        ja[r] = calloc((size_t)(req[r]->numel * m + 1), sizeof(double));
        ok = ok && ja[r];
    }
    if (!ok) {
        rc = nb__err(NB_ENOMEM, "%s: out of memory", who);
        goto free_j;
    }
    /* analytic: column i of the Jacobian from a one-hot grad_output */
    if (nb__requires_grad(out)) {
        for (int64_t i = 0; i < m && !rc; i++) {
            nb_scope_begin();
            nb_tensor *go = nb_zeros(nb_dims_get(out), out->dtype), *gr[64];
            nb__store((char *)nb_data(go) + i * (int64_t)nb_dtype_size(out->dtype), out->dtype, 1.0);
            nb_grad_opts go_opts = {.retain_graph = true, .allow_unused = true};
            rc = go ? nb_autograd_grad(&out, 1, req, nreq, &go, &go_opts, gr) : nb_last_error_code();
            for (int r = 0; r < nreq && !rc; r++) {
                if (!gr[r]) continue;
                nb_tensor *g64 = nb_contiguous(nb_to_dtype(gr[r], NB_DTYPE_F64));
                if (!g64) rc = nb_last_error_code();
                else
                    for (int64_t j = 0; j < req[r]->numel; j++) ja[r][j * m + i] = ((double *)nb_data(g64))[j];
            }
            nb_scope_end();
        }
    }
    /* numeric, column by column of each input, compared as we go */
    bool prev = nb_set_grad_enabled(false);
    for (int r = 0; r < nreq && !rc; r++) {
        for (int64_t j = 0; j < req[r]->numel && !rc; j++) {
            double *p = elem_ptr(req[r], j), orig = *p;
            nb_scope_begin();
            *p = orig + eps;
            rc = out_values(ck->fn(ck->inputs, n, ck->user), fp);
            *p = orig - eps;
            if (!rc) rc = out_values(ck->fn(ck->inputs, n, ck->user), fm);
            *p = orig;
            nb_scope_end();
            for (int64_t i = 0; i < m && !rc; i++) {
                double num = (fp[i] - fm[i]) / (2 * eps), ana = ja[r][j * m + i];
                double err = fabs(num - ana), excess = err - (atol + rtol * fabs(num));
                double key = isnan(err) ? INFINITY : excess;
                if (worst.input < 0 || key > worst_excess) {
                    worst = (nb_gradcheck_report){reqi[r], i, j, ana, num, err};
                    worst_excess = key;
                }
            }
        }
    }
    nb_set_grad_enabled(prev);
    if (!rc && worst_excess > 0)
        rc = nb__err(NB_ENUMERIC,
                     "%s: Jacobian mismatch for output %lld with respect to input %d, element %lld: analytic %.10g, "
                     "numerical %.10g (abs error %.3g > atol %.1g + rtol %.1g * |numerical|)",
                     who, (long long)worst.out_index, worst.input, (long long)worst.in_index, worst.analytic,
                     worst.numeric, worst.max_abs_err, atol, rtol);
    if (rep) *rep = worst;
free_j:
    for (int r = 0; r < nreq; r++) free(ja[r]);
    free(fp);
done:
    nb_scope_end();
    return rc;
}

NB_API int nb_gradcheck(nb_gradcheck_fn fn, nb_tensor *const *inputs, int n, const nb_gradcheck_opts *opts,
                        nb_gradcheck_report *report) {
    if (!fn || !inputs || n <= 0) return nb__err(NB_ENULLARG, "nb_gradcheck: fn or inputs is NULL or empty");
    check ck = {fn, opts ? opts->user : NULL, inputs, n};
    return run_check(&ck, opts, report, "nb_gradcheck");
}

/* gradgradcheck: for each input k that requires grad, check the function
 * x -> d<f(x), v>/dx_k with v a fixed random grad_output. */
typedef struct gg {
    check inner;      /* the user's function */
    int k;            /* which input's gradient to return */
    uint64_t seed;    /* for v */
} gg;

static nb_tensor *grad_of(nb_tensor *const *inputs, int n, void *user) {
    gg *g = user;
    bool outer = nb_set_grad_enabled(true);   /* the first derivative always needs a graph */
    nb_tensor *out = g->inner.fn(inputs, n, g->inner.user), *x = inputs[g->k], *r = NULL;
    int rc = out ? 0 : NB_EINVAL;
    if (!rc && nb__requires_grad(out)) {
        nb_tensor *v = nb_randn(nb_dims_get(out), out->dtype, g->seed);
        nb_grad_opts o = {.create_graph = outer, .retain_graph = true, .allow_unused = true};
        rc = v ? nb_autograd_grad(&out, 1, &x, 1, &v, &o, &r) : NB_ENOMEM;
    }
    nb_set_grad_enabled(outer);
    if (rc) return NULL;
    return r ? r : nb_zeros(nb_dims_get(x), x->dtype);
}

NB_API int nb_gradgradcheck(nb_gradcheck_fn fn, nb_tensor *const *inputs, int n, const nb_gradcheck_opts *opts,
                            nb_gradcheck_report *report) {
    if (!fn || !inputs || n <= 0) return nb__err(NB_ENULLARG, "nb_gradgradcheck: fn or inputs is NULL or empty");
    for (int k = 0; k < n; k++) {
        if (!nb__requires_grad(inputs[k])) continue;
        gg g = {{fn, opts ? opts->user : NULL, inputs, n}, k, 0x5eedULL + (uint64_t)k};
        check ck = {grad_of, &g, inputs, n};
        int rc = run_check(&ck, opts, report, "nb_gradgradcheck");
        if (rc) return rc;
    }
    return 0;
}
