/* init.c — parameter initialization, as torch.nn.init, seeded.
 *
 * Values come from nb_rand/nb_randn (Philox keyed by the seed), so the same
 * seed gives the same weights whatever the thread count. The tensor is
 * written in place with grad mode off; its version is bumped.
 */
#include "nn/nn.h"

#include <math.h>

static int fans(const char *who, const nb_tensor *t, double *fan_in, double *fan_out) {
    if (t->ndim < 2)
        return nb__err(NB_EINVAL, "%s: fan in and fan out need a tensor of at least 2 dims, got %s", who,
                       nb__shape_str(t));
    double rf = 1;
    for (int d = 2; d < t->ndim; d++) rf *= (double)t->shape[d];
    *fan_in = (double)t->shape[1] * rf;
    *fan_out = (double)t->shape[0] * rf;
    return 0;
}

/* t <- a + (b - a) * u  or  mean + std * n, through a random tensor of t's shape */
static int fill_random(const char *who, nb_tensor *t, bool normal, double p0, double p1, uint64_t seed) {
    if (!t) return nb__err(NB_ENULLARG, "%s: tensor is NULL", who);
    if (t->dtype != NB_DTYPE_F32 && t->dtype != NB_DTYPE_F64)
        return nb__err(NB_EDTYPE, "%s: needs a floating point tensor, got %s", who, nb_dtype_name(t->dtype));
    nb_scope_begin();
    bool prev = nb_set_grad_enabled(false);
    nb_dims shape = nb_dims_get(t);
    nb_tensor *r = normal ? nb_randn(shape, t->dtype, seed) : nb_rand(shape, t->dtype, seed);
    r = normal ? nb_add_scalar(nb_mul_scalar(r, p1), p0) : nb_add_scalar(nb_mul_scalar(r, p1 - p0), p0);
    int rc = r && nb_copy_(t, r) ? 0 : nb_last_error_code();
    nb_set_grad_enabled(prev);
    nb_scope_end();
    return rc;
}

NB_API int nb_init_uniform(nb_tensor *t, double a, double b, uint64_t seed) {
    return fill_random("nb_init_uniform", t, false, a, b, seed);
}
NB_API int nb_init_normal(nb_tensor *t, double mean, double std, uint64_t seed) {
    return fill_random("nb_init_normal", t, true, mean, std, seed);
}

static int fill_const(const char *who, nb_tensor *t, double v) {
    if (!t) return nb__err(NB_ENULLARG, "%s: tensor is NULL", who);
    bool prev = nb_set_grad_enabled(false);
    int rc = nb_fill_(t, v) ? 0 : nb_last_error_code();
    nb_set_grad_enabled(prev);
    return rc;
}
NB_API int nb_init_zeros(nb_tensor *t) { return fill_const("nb_init_zeros", t, 0); }
NB_API int nb_init_ones(nb_tensor *t) { return fill_const("nb_init_ones", t, 1); }

NB_API int nb_init_xavier_uniform(nb_tensor *t, double gain, uint64_t seed) {
    double fi = 0, fo = 0;
    if (!t) return nb__err(NB_ENULLARG, "nb_init_xavier_uniform: tensor is NULL");
    int rc = fans("nb_init_xavier_uniform", t, &fi, &fo);
    double a = gain * sqrt(6.0 / (fi + fo));
    return rc ? rc : fill_random("nb_init_xavier_uniform", t, false, -a, a, seed);
}

NB_API int nb_init_xavier_normal(nb_tensor *t, double gain, uint64_t seed) {
    double fi = 0, fo = 0;
    if (!t) return nb__err(NB_ENULLARG, "nb_init_xavier_normal: tensor is NULL");
    int rc = fans("nb_init_xavier_normal", t, &fi, &fo);
    return rc ? rc : fill_random("nb_init_xavier_normal", t, true, 0, gain * sqrt(2.0 / (fi + fo)), seed);
}

/* gain of leaky_relu with slope a: sqrt(2 / (1 + a²)) */
NB_API int nb_init_kaiming_uniform(nb_tensor *t, double a, uint64_t seed) {
    double fi = 0, fo = 0;
    if (!t) return nb__err(NB_ENULLARG, "nb_init_kaiming_uniform: tensor is NULL");
    int rc = fans("nb_init_kaiming_uniform", t, &fi, &fo);
    double bound = sqrt(2.0 / (1 + a * a)) * sqrt(3.0 / fi);
    return rc ? rc : fill_random("nb_init_kaiming_uniform", t, false, -bound, bound, seed);
}

NB_API int nb_init_kaiming_normal(nb_tensor *t, double a, uint64_t seed) {
    double fi = 0, fo = 0;
    if (!t) return nb__err(NB_ENULLARG, "nb_init_kaiming_normal: tensor is NULL");
    int rc = fans("nb_init_kaiming_normal", t, &fi, &fo);
    return rc ? rc : fill_random("nb_init_kaiming_normal", t, true, 0, sqrt(2.0 / (1 + a * a)) / sqrt(fi), seed);
}
