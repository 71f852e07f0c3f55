/* interpolate.c — nb_interpolate: nearest, nearest-exact and bilinear
 * resampling of NCHW tensors, as torch.nn.functional.interpolate.
 *
 * Resampling is linear in x, so the op and its backward (the adjoint,
 * INTERPOLATE_BWD) are each other's derivative: gradients of any order work.
 * The coordinate map (which source pixels and weights feed an output pixel)
 * lives in the kernels (src/kernels/ref/ref_interpolate.c); the op passes the
 * mode, align_corners and the user's scale factors (0 when a size was given),
 * exactly what PyTorch's upsample kernels receive.
 */
#include "ops/ops.h"

#include <math.h>
#include <string.h>

/* Kernel scalars {mode, align_corners, scale_h, scale_w}, kept in node->p.d. */
static nb_tensor *interp_op(nb_op op, nb_tensor *a, const double sc[4], nb_dims shape);

static int interp_backward(nb__node *n, nb_tensor *g, nb_tensor **gin) {
    nb_op adj = n->p.i[4] == NB_OP_INTERPOLATE ? NB_OP_INTERPOLATE_BWD : NB_OP_INTERPOLATE;
    double sc[4];
    memcpy(sc, n->p.d, sizeof sc);
    gin[0] = interp_op(adj, g, sc, n->shape[0]);
    return nb__grads_ok(n, gin);
}

/* Runs INTERPOLATE (shape = y's) or INTERPOLATE_BWD (shape = x's) on a and
 * records a node whose backward is the other one. */
static nb_tensor *interp_op(nb_op op, nb_tensor *a, const double sc[4], nb_dims shape) {
    const char *who = op == NB_OP_INTERPOLATE ? "nb_interpolate" : "interpolate_bwd";
    NB_CHECK_ARG(who, a);
    nb_tensor *out = nb__new(who, a->dtype, shape.ndim, shape.d);
    if (!out) return NULL;
    nb_kernel_args args = {.op = op, .out = out, .in = {a}, .nin = 1};
    memcpy(args.scalar, sc, 4 * sizeof(double));
    if (nb__dispatch(&args, who)) {
        nb_release(out);
        return NULL;
    }
    static const char *const names[2][NB_INTERP_COUNT] = {
        {"UpsampleNearest2DBackward", "UpsampleBilinear2DBackward", "UpsampleNearestExact2DBackward"},
        {"UpsampleNearest2DBackwardBackward", "UpsampleBilinear2DBackwardBackward",
         "UpsampleNearestExact2DBackwardBackward"},
    };
    nb__node *node;
    nb_tensor *in[1] = {a};
    out = nb__finish(out, names[op != NB_OP_INTERPOLATE][(int)sc[0]], who, interp_backward, in, 1, 0, &node);
    if (node) {
        memcpy(node->p.d, sc, 4 * sizeof(double));   /* p.d[0..3] overlay p.i[0..3] */
        node->p.i[4] = op;
        node->shape[0] = nb_dims_get(a);
    }
    return out;
}

NB_API nb_tensor *nb_interpolate(nb_tensor *x, const nb_interpolate_opts *o) {
    const char *who = "nb_interpolate";
    NB_CHECK_ARG(who, x);
    if (!o) return nb__null_arg(who, "opts (size or scale_factor is needed)");
    if (nb__check_float(who, x)) return NULL;
    if (x->ndim != 4) {
        nb__err(NB_ESHAPE, "%s: expected a 4D (N, C, H, W) input, got input of shape %s", who, nb__shape_str(x));
        return NULL;
    }
    if ((unsigned)o->mode >= NB_INTERP_COUNT) {
        nb__err(NB_EINVAL, "%s: unknown mode %d", who, (int)o->mode);
        return NULL;
    }
    if (o->align_corners && o->mode != NB_INTERP_BILINEAR) {
        nb__err(NB_EINVAL, "%s: align_corners can only be set with the interpolating mode bilinear", who);
        return NULL;
    }
    bool has_size = o->size[0] || o->size[1], has_scale = o->scale_factor[0] != 0 || o->scale_factor[1] != 0;
    if (has_size == has_scale) {
        nb__err(NB_EINVAL, "%s: give exactly one of size and scale_factor (got %s)", who, has_size ? "both" : "neither");
        return NULL;
    }
    int64_t ys[4] = {x->shape[0], x->shape[1], 0, 0};
    double sc[4] = {(double)o->mode, o->align_corners ? 1.0 : 0.0, 0.0, 0.0};
    for (int i = 0; i < 2; i++) {
        double f = o->scale_factor[i];
        if (has_scale && !(f > 0 && isfinite(f))) {
            nb__err(NB_EINVAL, "%s: scale_factor (%g, %g) must be positive", who, o->scale_factor[0],
                    o->scale_factor[1]);
            return NULL;
        }
        ys[2 + i] = has_size ? o->size[i] : (int64_t)floor((double)x->shape[2 + i] * f);
        if (has_scale && !o->recompute_scale_factor) sc[2 + i] = f;
    }
    if (x->shape[2] < 1 || x->shape[3] < 1 || ys[2] < 1 || ys[3] < 1) {
        nb__err(NB_ESHAPE, "%s: input and output sizes should be greater than 0, got input %s and output size %s", who,
                nb__shape_str(x), nb__dims_str(2, ys + 2));
        return NULL;
    }
    return interp_op(NB_OP_INTERPOLATE, x, sc, nb_dims_of(4, ys));
}
