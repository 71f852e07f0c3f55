/* custom_function.c — your own op, with your own backward, in nabla's graph.
 *
 * The op is softplus(x) = log(1 + e^x), a smooth relu. Written as it reads it
 * breaks: e^x overflows float for x > 88, and log(1 + inf) = inf, while the
 * true value is just x. The stable form splits off the large part:
 *
 *     softplus(x) = max(x, 0) + log1p(e^-|x|)        (e^-|x| is in (0, 1])
 *
 * Its derivative is the logistic sigmoid: d softplus / dx = 1 / (1 + e^-x).
 *
 * This is PyTorch's torch.autograd.Function, in C:
 *   - an nb_function names a forward and a backward callback;
 *   - forward gets the inputs and a context (nb_ctx) in which it saves what
 *     backward will need (nb_ctx_save); it runs with grad mode off, so the
 *     ops inside it are not recorded;
 *   - nb_function_apply runs forward and records one node in the graph, so
 *     the op mixes freely with built-in ops before and after it;
 *   - backward gets the gradient of the output and fills one gradient per
 *     input.
 * Then nb_gradcheck compares that backward with finite differences.
 */
#include <nabla.h>

#include <math.h>

/* ---- forward: raw loops over the elements, like a kernel ---- */
static nb_tensor *softplus_forward(nb_ctx *ctx, nb_tensor *const *inputs, int n) {
    if (n != 1) return NULL;
    /* Inputs may be views with any strides: a contiguous copy (or the input
     * itself, when it already is one) lets us walk the data as an array. */
    nb_tensor *x = nb_contiguous(inputs[0]);
    nb_tensor *y = nb_empty(nb_dims_get(inputs[0]), nb_dtype(inputs[0]));
    if (!x || !y) return NULL;
    int64_t count = nb_numel(x);
    if (nb_dtype(x) == NB_F32) {
        const float *xs = nb_data(x);
        float *ys = nb_data(y);
        for (int64_t i = 0; i < count; i++)
            ys[i] = fmaxf(xs[i], 0.0f) + log1pf(expf(-fabsf(xs[i])));
    } else if (nb_dtype(x) == NB_F64) {
        const double *xs = nb_data(x);
        double *ys = nb_data(y);
        for (int64_t i = 0; i < count; i++)
            ys[i] = fmax(xs[i], 0.0) + log1p(exp(-fabs(xs[i])));
    } else {
        return NULL;   /* integers and bools have no softplus */
    }
    /* Save the input, not the copy: nabla then checks at backward time that
     * nobody changed x in place since (its version counter). */
    if (nb_ctx_save(ctx, inputs[0]) != 0) return NULL;
    /* Like every op's result, y belongs to the current scope; nabla takes its
     * own reference when it records the node. */
    return y;
}

/* ---- backward: built from nabla ops, so it is differentiable too ----
 * grad_x = grad_y * sigmoid(x), sigmoid(x) = (1 + e^-x)^-1. For very
 * negative x, e^-x overflows to inf and (1 + inf)^-1 is exactly 0: the right
 * limit, no NaN. Writing it with ops instead of a loop means that with
 * create_graph the backward is itself recorded, so second derivatives work
 * (nb_gradgradcheck below). */
static int softplus_backward(nb_ctx *ctx, nb_tensor *grad_y, nb_tensor **grads) {
    if (!nb_ctx_needs_grad(ctx, 0)) return 0;   /* grads[0] stays NULL */
    nb_tensor *x = nb_ctx_saved(ctx, 0);        /* NULL if freed or changed in place */
    nb_tensor *sig = nb_pow_scalar(nb_add_scalar(nb_exp(nb_neg(x)), 1.0), -1.0);
    grads[0] = nb_mul(grad_y, sig);
    /* NULL anywhere above comes out here; the message is already recorded. */
    return grads[0] ? 0 : nb_last_error_code();
}

static const nb_function softplus_fn = {
    .name = "SoftplusBackward",   /* what nb_grad_fn_name() reports for its outputs */
    .forward = softplus_forward,
    .backward = softplus_backward,
};

static nb_tensor *softplus(nb_tensor *x) { return nb_function_apply(&softplus_fn, &x, 1); }

/* What nb_gradcheck differentiates: softplus(x) * tanh(x), custom and
 * built-in together. */
static nb_tensor *checked_fn(nb_tensor *const *inputs, int n, void *user) {
    (void)n;
    (void)user;
    return nb_mul(softplus(inputs[0]), nb_tanh(inputs[0]));
}

int main(void) {
    if (nb_init(NULL) != 0) return 1;
    int status = 1;
    nb_scope_begin();

    /* 1. In a small graph: loss = mean(softplus(2x)), so
     *    d loss / dx = 2 * sigmoid(2x) / 5. At x = ±100 the naive formula
     *    would give inf; the stable one gives 200 and 0. */
    const float xv[5] = {-100.0f, -1.0f, 0.0f, 1.0f, 100.0f};
    nb_tensor *x = nb_from_data(NB_SHAPE(5), NB_F32, xv);
    if (!x || nb_set_requires_grad(x, true) != 0) goto fail;
    nb_tensor *y = softplus(nb_mul_scalar(x, 2.0));
    nb_tensor *loss = nb_mean_all(y);
    if (!loss || nb_backward(loss, NULL) != 0) goto fail;
    printf("x              = ");
    nb_print(x);
    printf("softplus(2x)   = ");
    nb_print(y);                        /* grad_fn: SoftplusBackward */
    printf("d mean / dx    = ");
    nb_print(nb_grad(x));               /* [0, 0.0477, 0.2, 0.3523, 0.4] */

    /* 2. Check the backward against central differences, in float64 (the
     *    check needs F64 leaves that require grad). */
    nb_tensor *xc = nb_randn(NB_SHAPE(3, 4), NB_F64, 42);
    if (!xc || nb_set_requires_grad(xc, true) != 0) goto fail;
    /* On a mismatch the message names the worst element; a report struct
     * (last argument) would receive its indices and both values. */
    if (nb_gradcheck(checked_fn, &xc, 1, NULL, NULL) != 0) goto fail;
    printf("gradcheck      : ok\n");
    if (nb_gradgradcheck(checked_fn, &xc, 1, NULL, NULL) != 0) goto fail;
    printf("gradgradcheck  : ok\n");

    status = 0;
    goto done;
fail:
    fprintf(stderr, "custom_function: %s\n", nb_last_error());
done:
    nb_scope_end();
    nb_shutdown();
    return status;
}
