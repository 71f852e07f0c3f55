/* mlp_parity.c — the nabla half of examples/parity/mlp_parity.py: trains
 * the 784-512-256-10 MLP from given initial weights on given batches with
 * SGD (lr 0.01, momentum 0.9) and prints one loss per step, so the script
 * can compare them with PyTorch's.
 *
 *   mlp_parity WEIGHTS.safetensors DATA.safetensors STEPS BATCH
 * WEIGHTS holds 0.weight, 0.bias, 2.weight, ... as torch's nn.Sequential
 * names them; DATA holds x (N, 784) f32 and y (N) i64.
 */
#include <nabla.h>

#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s WEIGHTS.safetensors DATA.safetensors STEPS BATCH\n", argv[0]);
        return 2;
    }
    nb_init(NULL);
    int steps = atoi(argv[3]);
    int64_t batch = atoll(argv[4]);
    nb_module *layers[5] = {nb_linear_module(784, 512, true, 0), nb_relu_module(), nb_linear_module(512, 256, true, 0),
                            nb_relu_module(), nb_linear_module(256, 10, true, 0)};
    nb_module *model = nb_sequential(5, layers);
    nb_state_dict *data = nb_load_safetensors(argv[2]);
    if (!model || nb_module_load(model, argv[1]) || !data) {
        fprintf(stderr, "mlp_parity: %s\n", nb_last_error());
        return 1;
    }
    nb_tensor *x = nb_state_dict_get(data, "x"), *y = nb_state_dict_get(data, "y");
    nb_tensor *params[8];
    int np = nb_module_parameters(model, params, 8);
    nb_sgd_opts so = {.lr = 0.01, .momentum = 0.9};
    nb_optimizer *opt = nb_sgd(params, np, &so);
    for (int s = 0; s < steps; s++) {
        nb_scope_begin();
        nb_optimizer_zero_grad(opt);
        nb_tensor *xb = nb_slice(x, 0, s * batch, (s + 1) * batch, 1), *yb = nb_slice(y, 0, s * batch, (s + 1) * batch, 1);
        nb_tensor *loss = nb_cross_entropy(nb_module_forward(model, xb), yb);
        if (!loss || nb_backward(loss, NULL) || nb_optimizer_step(opt)) {
            fprintf(stderr, "mlp_parity: step %d: %s\n", s, nb_last_error());
            return 1;
        }
        printf("%d %.9g\n", s, nb_item(loss));
        nb_scope_end();
    }
    nb_optimizer_free(opt);
    nb_state_dict_free(data);
    nb_module_free(model);
    return 0;
}
