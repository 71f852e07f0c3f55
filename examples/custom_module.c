/* custom_module.c — writing your own module in a few lines of C.
 *
 * A residual block y = x + fc2(gelu(fc1(layer_norm(x)))) * scale, built from
 * nabla's layers, used inside a Sequential and trained for a few steps of
 * AdamW on a toy regression. Shows: module state, child modules,
 * parameters of your own, dotted names, train/eval, and saving the result.
 */
#include <nabla.h>

typedef struct block_state {
    double scale;   /* residual branch scale */
} block_state;

/* forward: plain C calling nabla ops; autograd records it as it runs */
static nb_tensor *block_forward(nb_module *m, nb_tensor *x) {
    block_state *s = nb_module_state(m);
    nb_tensor *h = nb_module_forward(nb_module_child(m, "norm"), x);
    h = nb_gelu(nb_module_forward(nb_module_child(m, "fc1"), h), false);
    h = nb_module_forward(nb_module_child(m, "fc2"), h);
    h = nb_mul(nb_mul_scalar(h, s->scale), nb_module_param(m, "gate"));   /* a parameter of our own */
    return nb_add(x, h);
}

static nb_module *residual_block(int64_t dim, int64_t hidden, uint64_t seed) {
    nb_module *m = nb_module_new("ResidualBlock", block_forward, sizeof(block_state));
    if (!m) return NULL;
    ((block_state *)nb_module_state(m))->scale = 0.5;
    nb_module_add_child(m, "norm", nb_layernorm_module(NB_SHAPE(dim), true));
    nb_module_add_child(m, "fc1", nb_linear_module(dim, hidden, true, seed));
    nb_module_add_child(m, "fc2", nb_linear_module(hidden, dim, true, seed + 1));
    nb_tensor *gate = nb_ones(NB_SHAPE(dim), NB_F32);
    nb_module_add_parameter(m, "gate", gate);   /* the module keeps its own reference */
    nb_release(gate);
    return m;
}

int main(void) {
    nb_init(NULL);
    nb_module *layers[3] = {residual_block(16, 64, 1), residual_block(16, 64, 3), nb_linear_module(16, 1, true, 5)};
    nb_module *model = nb_sequential(3, layers);
    if (!model) {
        fprintf(stderr, "%s\n", nb_last_error());
        return 1;
    }
    nb_module_print(model, stdout);

    nb_state_dict *names = nb_state_dict_new();
    nb_module_named_parameters(model, names);
    printf("%d parameter tensors, e.g. '%s' and '%s'\n", nb_state_dict_size(names), nb_state_dict_name(names, 0),
           nb_state_dict_name(names, 4));
    nb_state_dict_free(names);

    nb_tensor *params[64];
    int np = nb_module_parameters(model, params, 64);
    nb_adam_opts ao = {.lr = 3e-3};
    nb_optimizer *opt = nb_adamw(params, np, &ao);

    nb_scope_begin();
    nb_tensor *x = nb_randn(NB_SHAPE(256, 16), NB_F32, 42);
    nb_tensor *target = nb_sum(nb_tanh(x), (int[]){1}, 1, true);   /* y = sum(tanh(x)) */
    for (int step = 0; step <= 200; step++) {
        nb_scope_begin();
        nb_optimizer_zero_grad(opt);
        nb_tensor *loss = nb_mse_loss(nb_module_forward(model, x), target);
        if (!loss || nb_backward(loss, NULL) || nb_optimizer_step(opt)) {
            fprintf(stderr, "step %d: %s\n", step, nb_last_error());
            return 1;
        }
        if (step % 50 == 0) printf("step %3d  mse %.5f\n", step, nb_item(loss));
        nb_scope_end();
    }
    nb_module_eval(model);
    nb_scope_end();

    if (nb_module_save(model, "custom_module.safetensors") == 0) printf("saved custom_module.safetensors\n");
    nb_optimizer_free(opt);
    nb_module_free(model);
    nb_shutdown();
    return 0;
}
