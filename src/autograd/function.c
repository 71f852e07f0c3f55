/* function.c — custom functions: user forward and backward callbacks with a
 * context to save tensors in; they join the graph like built-in ops.
 *
 * The context lives in the node (node->ctx). Forward runs with grad mode off
 * inside its own scope; tensors saved during forward move into the node's
 * saved list (with their versions), and a saved output becomes a detached
 * alias so the node does not own its own output (no cycle).
 */
#include "autograd/autograd.h"

#include <stdlib.h>
#include <string.h>

#define NB__CTX_MAX_INPUTS 64

struct nb_ctx {
    const nb_function *fn;         /* the user's callbacks */
    nb__node *node;                /* the node once recorded, else NULL */
    nb_tensor **pending;           /* saved during forward (owned until moved to the node) */
    int npending;
    int nin;                       /* inputs */
    nb_tensor *const *inputs;      /* during forward only (borrowed) */
    nb_dims *in_shapes;            /* nin input shapes, for checking gradients */
    nb_dtype *in_dtypes;           /* nin input dtypes */
    _Alignas(16) unsigned char data[NB_CTX_DATA_BYTES];   /* user area */
};

static void ctx_free(void *p) {
    nb_ctx *c = p;
    for (int i = 0; i < c->npending; i++) nb_release(c->pending[i]);
    free(c->pending);
    free(c->in_shapes);
    free(c->in_dtypes);
    free(c);
}

NB_API int nb_ctx_save(nb_ctx *ctx, nb_tensor *t) {
    if (!ctx || !t) return nb__err(NB_ENULLARG, "nb_ctx_save: %s is NULL", ctx ? "tensor" : "ctx");
    if (ctx->node) return nb__err(NB_ESTATE, "nb_ctx_save: tensors can be saved during forward only");
    nb_tensor **s = realloc(ctx->pending, sizeof *s * (size_t)(ctx->npending + 1));
    if (!s) return nb__err(NB_ENOMEM, "nb_ctx_save: out of memory");
    ctx->pending = s;
    s[ctx->npending++] = nb_retain(t);
    return 0;
}

NB_API nb_tensor *nb_ctx_saved(nb_ctx *ctx, int i) {
    if (!ctx) {
        nb__err(NB_ENULLARG, "nb_ctx_saved: ctx is NULL");
        return NULL;
    }
    if (!ctx->node) return i >= 0 && i < ctx->npending ? ctx->pending[i] : NULL;
    if (i < 0 || i >= ctx->node->nsaved) {
        nb__err(NB_ERANGE, "nb_ctx_saved: index %d out of range (%d saved)", i, ctx->node->nsaved);
        return NULL;
    }
    return nb__saved_get(ctx->node, i);
}

NB_API bool nb_ctx_needs_grad(const nb_ctx *ctx, int i) {
    if (!ctx || i < 0 || i >= ctx->nin) return false;
    if (ctx->node) return nb__needs_input_grad(ctx->node, i);
    return nb__requires_grad(ctx->inputs[i]);
}

NB_API void *nb_ctx_data(nb_ctx *ctx) { return ctx ? ctx->data : NULL; }

static int custom_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_ctx *c = n->ctx;
    int rc = c->fn->backward(c, g, gin);
    if (rc) {
        if (nb_last_error_code() != rc || rc > 0) rc = nb__err(rc < 0 ? rc : NB_EAUTOGRAD, "%s: the custom backward "
                                                               "failed (returned %d)", n->name, rc);
        return rc;
    }
    for (int i = 0; i < n->nin; i++) {
        if (!nb__needs_input_grad(n, i)) {
            gin[i] = NULL;   /* that input needs none: ignore what was given */
            continue;
        }
        if (!gin[i]) continue;
        const nb_dims *w = &c->in_shapes[i];
        nb_tensor *x = gin[i];
        bool ok = x->ndim == w->ndim && x->dtype == c->in_dtypes[i];
        for (int d = 0; ok && d < w->ndim; d++) ok = x->shape[d] == w->d[d];
        if (!ok)
            return nb__err(NB_ESHAPE, "%s: function returned a gradient of shape %s (%s) for input %d, which has "
                                      "shape %s (%s)",
                           n->name, nb__shape_str(x), nb_dtype_name(x->dtype), i, nb__dims_str(w->ndim, w->d),
                           nb_dtype_name(c->in_dtypes[i]));
    }
    return 0;
}

NB_API nb_tensor *nb_function_apply(const nb_function *fn, nb_tensor *const *inputs, int n) {
    if (!fn || !fn->forward || !fn->backward) {
        nb__err(NB_ENULLARG, "nb_function_apply: function or its forward/backward is NULL");
        return NULL;
    }
    const char *name = fn->name ? fn->name : "CustomFunctionBackward";
    if (n < 0 || n > NB__CTX_MAX_INPUTS || (n > 0 && !inputs)) {
        nb__err(NB_EINVAL, "nb_function_apply(%s): %d inputs (0 to %d)", name, n, NB__CTX_MAX_INPUTS);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!inputs[i]) {
            if (!nb_last_error_code()) nb__err(NB_ENULLARG, "nb_function_apply(%s): input %d is NULL", name, i);
            return NULL;
        }
    nb_ctx *c = calloc(1, sizeof *c);
    if (c) {
        c->in_shapes = calloc((size_t)(n ? n : 1), sizeof *c->in_shapes);
        c->in_dtypes = calloc((size_t)(n ? n : 1), sizeof *c->in_dtypes);
    }
    if (!c || !c->in_shapes || !c->in_dtypes) {
        if (c) ctx_free(c);
        nb__err(NB_ENOMEM, "nb_function_apply(%s): out of memory", name);
        return NULL;
    }
    c->fn = fn;
    c->nin = n;
    c->inputs = inputs;
    for (int i = 0; i < n; i++) {
        c->in_shapes[i] = nb_dims_get(inputs[i]);
        c->in_dtypes[i] = inputs[i]->dtype;
    }
    bool record = nb__should_record(inputs, n);
    bool prev = nb_set_grad_enabled(false);
    nb_scope_begin();
    nb_tensor *out = fn->forward(c, inputs, n);
    /* the output is the caller's: a tensor made in the scope is kept past it */
    nb_retain(out);
    nb_scope_end();
    nb_set_grad_enabled(prev);
    c->inputs = NULL;
    if (!out) {
        if (!nb_last_error_code()) nb__err(NB_EINVAL, "nb_function_apply(%s): forward returned NULL", name);
        ctx_free(c);
        return NULL;
    }
    if (out->ag && out->ag->grad_fn) {   /* defensive: forward ran in no-grad mode */
        nb_tensor *o2 = nb__alias(out, out->ndim, out->shape, out->stride, out->offset);
        nb_release(out);
        out = o2;
    }
    if (!record) {
        ctx_free(c);
        return nb__scoped(out);
    }
    nb__node *node = nb__record(out, name, name, custom_backward, inputs, n);
    int rc = node ? 0 : NB_ENOMEM;
    for (int i = 0; i < c->npending && !rc; i++) {
        nb_tensor *s = c->pending[i];
        bool is_out = s == out || (s->storage == out->storage && s->offset == out->offset && nb__same_shape(s, out));
        rc = is_out ? nb__save_output(node, out) : nb__save(node, s);
    }
    for (int i = 0; i < c->npending; i++) nb_release(c->pending[i]);
    c->npending = 0;
    if (rc) {
        ctx_free(c);
        nb_release(out);
        return NULL;
    }
    c->node = node;
    node->ctx = c;
    node->ctx_free = ctx_free;
    return nb__scoped(out);
}
