/* fashion_mnist_cnn.c — train a LeNet-like CNN on Fashion-MNIST:
 * conv 5x5 32 pad 2, ReLU, max-pool 2, conv 5x5 64 pad 2, ReLU, max-pool 2,
 * linear 3136 -> 128, ReLU, linear 128 -> 10. Same flags, loop and
 * checkpoints as fashion_mnist_mlp (common/fmnist.c).
 *
 *   fashion_mnist_cnn [--epochs 5] [--batch 64] [--lr 0.05] [--data DIR]
 *                     [--checkpoint fashion_mnist_cnn.safetensors] [--resume] [--limit N]
 */
#include "common/fmnist.h"

static nb_module *make_model(void) {
    nb_conv_opts pad2 = {.padding = {2, 2}};
    nb_module *layers[10] = {
        nb_conv2d_module(1, 32, 5, 5, &pad2, true, 1), nb_relu_module(), nb_maxpool2d_module(2, 2, NULL),
        nb_conv2d_module(32, 64, 5, 5, &pad2, true, 2), nb_relu_module(), nb_maxpool2d_module(2, 2, NULL),
        nb_flatten_module(1, -1),
        nb_linear_module(3136, 128, true, 3), nb_relu_module(), nb_linear_module(128, 10, true, 4)};
    return nb_sequential(10, layers);
}

int main(int argc, char **argv) {
    return fm_main(argc, argv, (fm_args){.epochs = 5, .batch = 64, .lr = 0.05, .data = "/usr/share/datasets/fashion-mnist",
                 .ckpt = "fashion_mnist_cnn.safetensors", .flat = false}, make_model);
}
