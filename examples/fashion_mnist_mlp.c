/* fashion_mnist_mlp.c — train a 784-512-256-10 MLP on Fashion-MNIST.
 *
 * The README's main job. Reads the IDX files of Debian's
 * dataset-fashion-mnist package, trains with SGD + Nesterov momentum and a
 * cosine schedule, shows a progress bar per epoch (batch i/N, loss,
 * samples/s, ETA), prints the test accuracy after each epoch and saves a
 * checkpoint (model and optimizer, safetensors) that --resume continues
 * from. The loop itself is in common/fmnist.c, shared with the CNN example.
 *
 *   fashion_mnist_mlp [--epochs 5] [--batch 128] [--lr 0.05] [--data DIR]
 *                     [--checkpoint fashion_mnist_mlp.safetensors] [--resume] [--limit N]
 */
#include "common/fmnist.h"

int main(int argc, char **argv) {
    fm_args a = {.epochs = 5, .batch = 128, .lr = 0.05, .data = "/usr/share/datasets/fashion-mnist",
                 .ckpt = "fashion_mnist_mlp.safetensors", .flat = true};
    int rc = fm_parse(argc, argv, &a);
    if (rc) return rc;
    if (nb_init(NULL)) {
        fprintf(stderr, "%s\n", nb_last_error());
        return 1;
    }
    nb_module *layers[5] = {nb_linear_module(784, 512, true, 1), nb_relu_module(), nb_linear_module(512, 256, true, 2),
                            nb_relu_module(), nb_linear_module(256, 10, true, 3)};
    nb_module *model = nb_sequential(5, layers);
    if (!model) {
        fprintf(stderr, "%s\n", nb_last_error());
        return 1;
    }
    double acc = fm_train(model, &a);
    nb_module_free(model);
    nb_shutdown();
    return acc < 0 ? 1 : 0;
}
