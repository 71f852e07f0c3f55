/* test_nn.c — modules: trees and dotted names, state dicts (round trip and
 * every mismatch reported), train/eval, the built-in layers against their
 * functional forms, initialization bounds, and a module written by hand. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static nb_module *nn_mlp(uint64_t seed) {
    nb_module *l[5] = {nb_linear_module(6, 5, true, seed), nb_relu_module(), nb_linear_module(5, 4, true, seed + 1),
                       nb_tanh_module(), nb_linear_module(4, 3, false, seed + 2)};
    return nb_sequential(5, l);
}

Test(nn, dotted_names_in_registration_order) {
    nb_init(NULL);
    nb_module *root = nb_module_new("Net", NULL, 0);
    nb_module_add_child(root, "features", nn_mlp(1));
    nb_module_add_child(root, "head", nb_linear_module(3, 2, true, 9));
    nb_state_dict *sd = nb_state_dict_new();
    cr_assert_eq(nb_module_named_parameters(root, sd), 0, "%s", nb_last_error());
    const char *want[] = {"features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
                          "features.4.weight", "head.weight", "head.bias"};
    cr_assert_eq(nb_state_dict_size(sd), 7);
    for (int i = 0; i < 7; i++) cr_assert_str_eq(nb_state_dict_name(sd, i), want[i]);
    nb_tensor *ps[8];
    cr_assert_eq(nb_module_parameters(root, ps, 8), 7);
    cr_assert_eq(ps[0], nb_state_dict_tensor(sd, 0));
    cr_assert(nb_requires_grad(ps[6]) && nb_is_leaf(ps[6]));
    cr_assert_eq(nb_shape(ps[0])[0], 5);
    cr_assert_eq(nb_shape(ps[0])[1], 6);
    nb_state_dict_free(sd);
    /* names are checked */
    nb_tensor *t = nb_zeros(NB_SHAPE(2), NB_F32);
    cr_assert_eq(nb_module_add_parameter(root, "a.b", t), NB_EINVAL);
    cr_assert_eq(nb_module_add_parameter(root, "head", t), NB_EINVAL);
    cr_assert(strstr(nb_last_error(), "already has a member named 'head'"));
    nb_release(t);
    nb_module_free(root);
}

Test(nn, sequential_equals_the_functional_composition) {
    nb_init(NULL);
    nb_scope_begin();
    nb_module *m = nn_mlp(3);
    nb_tensor *x = nb_randn(NB_SHAPE(7, 6), NB_F32, 5);
    nb_tensor *y = nb_module_forward(m, x);
    nb_module *l0 = nb_module_child_at(m, 0), *l2 = nb_module_child_at(m, 2), *l4 = nb_module_child_at(m, 4);
    nb_tensor *h = nb_relu(nb_linear(x, nb_module_param(l0, "weight"), nb_module_param(l0, "bias")));
    h = nb_tanh(nb_linear(h, nb_module_param(l2, "weight"), nb_module_param(l2, "bias")));
    nb_tensor *ref = nb_linear(h, nb_module_param(l4, "weight"), NULL);
    cr_assert(tu_allclose(y, ref, 1e-6, 1e-6));
    cr_assert_null(nb_module_param(l4, "bias"));
    /* gradients reach every parameter */
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0, "%s", nb_last_error());
    nb_tensor *ps[5];
    nb_module_parameters(m, ps, 5);
    for (int i = 0; i < 5; i++) cr_assert(nb_grad(ps[i]), "parameter %d has no gradient", i);
    nb_module_zero_grad(m);
    for (int i = 0; i < 5; i++) cr_assert_null(nb_grad(ps[i]));
    nb_module_free(m);
    nb_scope_end();
}

Test(nn, linear_init_matches_torch_bounds_and_seed) {
    nb_init(NULL);
    nb_module *a = nb_linear_module(400, 300, true, 7), *b = nb_linear_module(400, 300, true, 7);
    nb_module *c = nb_linear_module(400, 300, true, 8);
    nb_tensor *w = nb_module_param(a, "weight"), *bias = nb_module_param(a, "bias");
    double bound = 1 / sqrt(400.0), mx = 0, sum = 0, sq = 0;
    const float *p = nb_data(w);
    for (int64_t i = 0; i < nb_numel(w); i++) {
        mx = fmax(mx, fabs(p[i]));
        sum += p[i];
        sq += p[i] * (double)p[i];
    }
    double n = (double)nb_numel(w), var = sq / n - (sum / n) * (sum / n);
    cr_assert_leq(mx, bound, "kaiming_uniform(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in))");
    cr_assert_gt(mx, 0.99 * bound);
    cr_assert(fabs(var - bound * bound / 3) < 0.03 * bound * bound / 3, "variance %g vs %g", var, bound * bound / 3);
    const float *pb = nb_data(bias);
    for (int i = 0; i < 300; i++) cr_assert_leq(fabs(pb[i]), bound);
    cr_assert_eq(memcmp(nb_data(w), nb_data(nb_module_param(b, "weight")), sizeof(float) * 120000), 0, "same seed");
    cr_assert_neq(memcmp(nb_data(w), nb_data(nb_module_param(c, "weight")), sizeof(float) * 120000), 0);
    cr_assert_neq(memcmp(nb_data(w), nb_data(bias), sizeof(float) * 300), 0, "weight and bias streams differ");
    nb_module_free(a);
    nb_module_free(b);
    nb_module_free(c);
}

Test(nn, init_functions) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *t = nb_zeros(NB_SHAPE(256, 128, 3, 3), NB_F32);
    double fan_in = 128 * 9, fan_out = 256 * 9;
    cr_assert_eq(nb_init_xavier_uniform(t, 1.0, 1), 0);
    cr_assert_leq(nb_item(nb_max(nb_abs(t), NULL, 0, false)), sqrt(6 / (fan_in + fan_out)) + 1e-7);
    cr_assert_eq(nb_init_kaiming_normal(t, 0, 2), 0);
    double sd = nb_item(nb_std(t, NULL, 0, 1, false));
    cr_assert(fabs(sd - sqrt(2 / fan_in)) < 0.01 * sqrt(2 / fan_in), "kaiming normal std %g", sd);
    cr_assert_eq(nb_init_normal(t, 3, 0.5, 3), 0);
    cr_assert(fabs(nb_item(nb_mean_all(t)) - 3) < 0.01);
    cr_assert_eq(nb_init_zeros(t), 0);
    cr_assert_eq(nb_item(nb_sum_all(nb_abs(t))), 0);
    cr_assert_eq(nb_init_kaiming_uniform(nb_zeros(NB_SHAPE(5), NB_F32), 0, 1), NB_EINVAL);
    cr_assert(strstr(nb_last_error(), "at least 2 dims"));
    cr_assert_eq(nb_init_uniform(nb_zeros(NB_SHAPE(2), NB_I64), 0, 1, 1), NB_EDTYPE);
    cr_assert_eq(nb_init_ones(NULL), NB_ENULLARG);
    nb_scope_end();
}

Test(nn, state_dict_round_trip_through_a_file) {
    nb_init(NULL);
    nb_scope_begin();
    nb_module *a = nn_mlp(11), *b = nn_mlp(99);
    char path[] = "/tmp/nb_nn_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(nb_module_save(a, path), 0, "%s", nb_last_error());
    cr_assert_eq(nb_module_load(b, path), 0, "%s", nb_last_error());
    nb_tensor *x = nb_randn(NB_SHAPE(3, 6), NB_F32, 1);
    cr_assert_eq(tu_max_abs_diff(nb_module_forward(a, x), nb_module_forward(b, x)), 0.0);
    unlink(path);
    nb_module_free(a);
    nb_module_free(b);
    nb_scope_end();
}

Test(nn, load_reports_every_mismatch_and_changes_nothing) {
    nb_init(NULL);
    nb_scope_begin();
    nb_module *m = nn_mlp(1);
    nb_state_dict *sd = nb_state_dict_new();
    nb_module_state_dict(m, sd);
    nb_tensor *before = nb_clone(nb_state_dict_get(sd, "0.weight"));
    nb_state_dict *bad = nb_state_dict_new();
    for (int i = 0; i < nb_state_dict_size(sd); i++) {
        const char *n = nb_state_dict_name(sd, i);
        if (!strcmp(n, "2.bias")) continue;                                                  /* missing */
        if (!strcmp(n, "0.bias")) nb_state_dict_set(bad, n, nb_zeros(NB_SHAPE(7), NB_F32));    /* shape */
        else if (!strcmp(n, "4.weight")) nb_state_dict_set(bad, n, nb_zeros(NB_SHAPE(3, 4), NB_F64)); /* dtype */
        else nb_state_dict_set(bad, n, nb_full(nb_dims_get(nb_state_dict_tensor(sd, i)), NB_F32, 5));
    }
    nb_state_dict_set(bad, "extra.weight", nb_zeros(NB_SHAPE(1), NB_F32));               /* unexpected */
    cr_assert_lt(nb_module_load_state_dict(m, bad, true), 0);
    const char *msg = nb_last_error();
    cr_assert(strstr(msg, "4 problems"), "%s", msg);
    cr_assert(strstr(msg, "missing key '2.bias'"), "%s", msg);
    cr_assert(strstr(msg, "'0.bias': shape [7] in the checkpoint, [5] in the module"), "%s", msg);
    cr_assert(strstr(msg, "'4.weight': dtype f64"), "%s", msg);
    cr_assert(strstr(msg, "unexpected key 'extra.weight'"), "%s", msg);
    cr_assert_eq(tu_max_abs_diff(before, nb_module_param(nb_module_child_at(m, 0), "weight")), 0.0, "nothing changed");
    nb_state_dict_free(bad);
    nb_state_dict_free(sd);
    nb_module_free(m);
    nb_scope_end();
}

Test(nn, train_eval_dropout_and_batchnorm) {
    nb_init(NULL);
    nb_scope_begin();
    nb_module *l[3] = {nb_conv2d_module(2, 3, 3, 3, &(nb_conv_opts){.padding = {1, 1}}, true, 1),
                       nb_batchnorm2d_module(3), nb_dropout_module(0.5, 7)};
    nb_module *m = nb_sequential(3, l);
    cr_assert(m, "%s", nb_last_error());
    nb_tensor *x = nb_randn(NB_SHAPE(4, 2, 5, 5), NB_F32, 3);
    nb_module *bn = nb_module_child_at(m, 1);
    nb_tensor *rm = nb_module_buffer(bn, "running_mean");
    cr_assert(nb_module_is_training(m) && nb_module_is_training(bn));
    nb_tensor *y1 = nb_module_forward(m, x), *y2 = nb_module_forward(m, x);
    cr_assert(nb_item(nb_sum_all(nb_abs(rm))) > 0, "running_mean updated in training");
    cr_assert_eq(nb_item(nb_module_buffer(bn, "num_batches_tracked")), 2);
    cr_assert_gt(tu_max_abs_diff(y1, y2), 0, "a new dropout mask each call");
    nb_module_eval(m);
    cr_assert(!nb_module_is_training(bn));
    nb_tensor *rm_before = nb_clone(rm);
    nb_tensor *e1 = nb_module_forward(m, x), *e2 = nb_module_forward(m, x);
    cr_assert_eq(tu_max_abs_diff(e1, e2), 0.0, "eval is deterministic");
    cr_assert_eq(tu_max_abs_diff(rm, rm_before), 0.0, "eval leaves running stats");
    nb_state_dict *sd = nb_state_dict_new();
    nb_module_state_dict(m, sd);
    cr_assert(nb_state_dict_get(sd, "1.running_var") && nb_state_dict_get(sd, "1.num_batches_tracked"));
    cr_assert(nb_state_dict_get(sd, "0.weight") && nb_state_dict_get(sd, "1.weight"));
    nb_state_dict_free(sd);
    nb_module_free(m);
    nb_scope_end();
}

/* A module written by hand, as examples/custom_module.c shows. */
typedef struct { double scale; } nn_scaled_state;
static nb_tensor *nn_scaled_forward(nb_module *m, nb_tensor *x) {
    nn_scaled_state *s = nb_module_state(m);
    nb_tensor *h = nb_module_forward(nb_module_child(m, "fc"), x);
    return nb_add(nb_mul_scalar(nb_relu(h), s->scale), nb_module_param(m, "offset"));
}

Test(nn, custom_module) {
    nb_init(NULL);
    nb_scope_begin();
    nb_module *m = nb_module_new("Scaled", nn_scaled_forward, sizeof(nn_scaled_state));
    ((nn_scaled_state *)nb_module_state(m))->scale = 0.5;
    cr_assert(nb_module_add_child(m, "fc", nb_linear_module(3, 2, true, 4)));
    cr_assert_eq(nb_module_add_parameter(m, "offset", nb_ones(NB_SHAPE(2), NB_F32)), 0);
    nb_tensor *y = nb_module_forward(m, nb_ones(NB_SHAPE(5, 3), NB_F32));
    cr_assert_eq(nb_shape(y)[1], 2);
    cr_assert_eq(nb_backward(nb_sum_all(y), NULL), 0);
    cr_assert_eq(nb_item(nb_sum_all(nb_grad(nb_module_param(m, "offset")))), 10.0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nb_module_print(m, f);
    fclose(f);
    cr_assert_str_eq(buf, "Scaled(\n  (fc): Linear(in_features=3, out_features=2, bias=True)\n)\n");
    free(buf);
    cr_assert_null(nb_module_forward(m, NULL));
    cr_assert_null(nb_module_forward(NULL, y));
    cr_assert_eq(nb_last_error_code(), NB_ENULLARG);
    nb_module_free(m);
    nb_scope_end();
}

Test(nn, bad_constructor_arguments) {
    nb_init(NULL);
    cr_assert_null(nb_linear_module(0, 3, true, 1));
    cr_assert(strstr(nb_last_error(), "in_features 0"));
    cr_assert_null(nb_conv2d_module(3, 4, 3, 3, &(nb_conv_opts){.groups = 2}, true, 1));
    cr_assert(strstr(nb_last_error(), "divisible by groups"));
    cr_assert_null(nb_dropout_module(1.5, 0));
    cr_assert_null(nb_embedding_module(10, 4, 10, 0));
    cr_assert_eq(nb_last_error_code(), NB_ERANGE);
    nb_module *l[2] = {nb_relu_module(), NULL};
    cr_assert_null(nb_sequential(2, l));   /* frees the ReLU it was given */
}
