/* digits_csv.c — scikit-learn's handwritten digits (1797 8x8 images, 10
 * classes) read through nabla's CSV reader, split 1500/297, and classified
 * by a small MLP trained with Adam. Shows the CSV reader, index-based
 * splitting, a tensor dataset with a shuffling loader, and eval.
 *
 *   digits_csv [path to digits.csv.gz]
 * The file comes with Debian's python3-sklearn:
 *   /usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
 * Each row: 64 pixel values (0..16), then the label.
 */
#include <nabla.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *x = NULL, *y = NULL;
    nb_csv_opts co = NB_CSV_OPTS_DEFAULT;   /* no header, label in the last column */
    if (nb_load_csv(path, &co, &x, &y)) {
        fprintf(stderr, "digits_csv: %s (apt-get install python3-sklearn)\n", nb_last_error());
        return 1;
    }
    int64_t n = nb_shape(x)[0], ntrain = 1500;
    printf("read %lld samples of %lld features from %s\n", (long long)n, (long long)nb_shape(x)[1], path);
    x = nb_mul_scalar(x, 1.0 / 16);   /* pixels 0..16 -> [0, 1] */
    nb_tensor *xtr = nb_contiguous(nb_slice(x, 0, 0, ntrain, 1)), *ytr = nb_contiguous(nb_slice(y, 0, 0, ntrain, 1));
    nb_tensor *xte = nb_slice(x, 0, ntrain, n, 1), *yte = nb_slice(y, 0, ntrain, n, 1);

    nb_module *layers[3] = {nb_linear_module(64, 64, true, 1), nb_relu_module(), nb_linear_module(64, 10, true, 2)};
    nb_module *model = nb_sequential(3, layers);
    nb_tensor *params[4];
    int np = nb_module_parameters(model, params, 4);
    nb_adam_opts ao = {.lr = 1e-2};
    nb_optimizer *opt = nb_adam(params, np, &ao);
    nb_dataset *ds = nb_tensor_dataset((nb_tensor *[]){xtr, ytr}, 2);
    nb_loader_opts lo = {.batch_size = 50, .shuffle = true, .seed = 7};
    nb_loader *loader = nb_loader_new(ds, &lo);
    if (!model || !opt || !loader) {
        fprintf(stderr, "digits_csv: %s\n", nb_last_error());
        return 1;
    }
    for (int epoch = 0; epoch < 30; epoch++) {
        nb_loader_begin_epoch(loader, epoch);
        double total = 0;
        int batches = 0;
        nb_tensor *b[2];
        for (;;) {
            nb_scope_begin();
            if (nb_loader_next(loader, b) != 1) {
                nb_scope_end();
                break;
            }
            nb_optimizer_zero_grad(opt);
            nb_tensor *loss = nb_cross_entropy(nb_module_forward(model, b[0]), b[1]);
            if (!loss || nb_backward(loss, NULL) || nb_optimizer_step(opt)) {
                fprintf(stderr, "digits_csv: %s\n", nb_last_error());
                return 1;
            }
            total += nb_item(loss);
            batches++;
            nb_scope_end();
        }
        if (epoch % 5 == 4) {
            nb_scope_begin();
            nb_module_eval(model);
            bool prev = nb_set_grad_enabled(false);
            nb_tensor *pred = nb_argmax(nb_module_forward(model, xte), 1, false);
            double acc = nb_item(nb_mean_all(nb_to_dtype(nb_eq(pred, yte), NB_F32)));
            nb_set_grad_enabled(prev);
            nb_module_train(model, true);
            printf("epoch %2d  train loss %.4f  test accuracy %.2f%%\n", epoch + 1, total / batches, 100 * acc);
            nb_scope_end();
        }
    }
    nb_loader_free(loader);
    nb_dataset_free(ds);
    nb_optimizer_free(opt);
    nb_module_free(model);
    nb_scope_end();
    nb_shutdown();
    return 0;
}
