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

static nb_module *make_model(void) {
    nb_module *layers[5] = {nb_linear_module(784, 512, true, 1), nb_relu_module(), nb_linear_module(512, 256, true, 2),
                            nb_relu_module(), nb_linear_module(256, 10, true, 3)};
    return nb_sequential(5, layers);
}

int main(int argc, char **argv) {
    return fm_main(argc, argv, (fm_args){.epochs = 5, .batch = 128, .lr = 0.05, .data = "/usr/share/datasets/fashion-mnist",
                 .ckpt = "fashion_mnist_mlp.safetensors", .flat = true}, make_model);
}
