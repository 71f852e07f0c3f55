/* fmnist.c — the Fashion-MNIST examples' shared training loop: data from the
 * IDX files (normalized with the dataset's mean 0.2860 and std 0.3530), a
 * shuffling loader with one prefetch worker, SGD + Nesterov momentum with a
 * cosine schedule, a progress bar, test accuracy, checkpoints and --resume.
 */
#include "fmnist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double fail(const fm_args *a, const char *what) {
    fprintf(stderr, "%s: %s: %s\n", a->prog, what, nb_last_error());
    return -1;
}

/* Images (N, 28, 28) in [0, 1] -> normalized (N, 784) or (N, 1, 28, 28). */
static nb_tensor *load_images(const fm_args *a, const char *name, int64_t limit) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", a->data, name);
    nb_tensor *x = nb_load_idx(path, NULL);
    if (!x) return NULL;
    int64_t n = nb_shape(x)[0];
    if (limit > 0 && limit < n) x = nb_slice(x, 0, 0, limit, 1), n = limit;
    x = nb_reshape(x, a->flat ? NB_SHAPE(n, 784) : NB_SHAPE(n, 1, 28, 28));
    return nb_contiguous(nb_mul_scalar(nb_add_scalar(x, -0.2860), 1 / 0.3530));
}

static nb_tensor *load_labels(const fm_args *a, const char *name, int64_t limit) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", a->data, name);
    nb_tensor *y = nb_load_idx(path, NULL);
    if (y && limit > 0 && limit < nb_shape(y)[0]) y = nb_contiguous(nb_slice(y, 0, 0, limit, 1));
    return y;
}

static void progress(int epoch, int epochs, int64_t i, int64_t n, double loss, double rate, double eta) {
    int width = 30, done = (int)(width * i / (n ? n : 1));
    char bar[64];
    for (int k = 0; k < width; k++) bar[k] = k < done ? '=' : k == done ? '>' : ' ';
    bar[width] = 0;
    printf("\repoch %d/%d [%s] %4lld/%lld  loss %.4f  %6.0f samples/s  ETA %3.0fs ", epoch, epochs, bar,
           (long long)i, (long long)n, loss, rate, eta);
    fflush(stdout);
}

/* Accuracy in eval mode, without building a graph, 500 samples at a time. */
static double accuracy(nb_module *model, nb_tensor *x, nb_tensor *y) {
    nb_module_eval(model);
    bool prev = nb_set_grad_enabled(false);
    int64_t n = nb_shape(x)[0], correct = 0;
    for (int64_t s = 0; s < n; s += 500) {
        nb_scope_begin();
        int64_t e = s + 500 < n ? s + 500 : n;
        nb_tensor *pred = nb_argmax(nb_module_forward(model, nb_slice(x, 0, s, e, 1)), 1, false);
        const int64_t *lab = (const int64_t *)nb_data(y) + s;
        for (int64_t i = 0; pred && i < e - s; i++) correct += ((int64_t *)nb_data(pred))[i] == lab[i];
        nb_scope_end();
    }
    nb_set_grad_enabled(prev);
    nb_module_train(model, true);
    return (double)correct / (double)n;
}

/* One file: "model.<name>", "optim.<name>" and "epoch". */
static int save_checkpoint(const char *path, nb_module *model, nb_optimizer *opt, int epoch) {
    nb_state_dict *m = nb_state_dict_new(), *o = nb_state_dict_new(), *all = nb_state_dict_new();
    int rc = nb_module_state_dict(model, m);
    if (!rc) rc = nb_optimizer_state_dict(opt, o);
    char name[256];
    for (int i = 0; !rc && i < nb_state_dict_size(m); i++) {
        snprintf(name, sizeof name, "model.%s", nb_state_dict_name(m, i));
        rc = nb_state_dict_set(all, name, nb_state_dict_tensor(m, i));
    }
    for (int i = 0; !rc && i < nb_state_dict_size(o); i++) {
        snprintf(name, sizeof name, "optim.%s", nb_state_dict_name(o, i));
        rc = nb_state_dict_set(all, name, nb_state_dict_tensor(o, i));
    }
    nb_scope_begin();
    if (!rc) rc = nb_state_dict_set(all, "epoch", nb_scalar_dtype(epoch, NB_I64));
    nb_scope_end();
    if (!rc) rc = nb_save_safetensors(path, all, NULL);
    nb_state_dict_free(m);
    nb_state_dict_free(o);
    nb_state_dict_free(all);
    return rc;
}

/* Loads what save_checkpoint wrote; returns the epochs done, or < 0. */
static int load_checkpoint(const char *path, nb_module *model, nb_optimizer *opt) {
    nb_state_dict *all = nb_load_safetensors(path);
    if (!all) return nb_last_error_code();
    nb_state_dict *m = nb_state_dict_new(), *o = nb_state_dict_new();
    int rc = 0, epoch = -1;
    for (int i = 0; i < nb_state_dict_size(all); i++) {
        const char *name = nb_state_dict_name(all, i);
        nb_tensor *t = nb_state_dict_tensor(all, i);
        if (!strncmp(name, "model.", 6)) rc = rc ? rc : nb_state_dict_set(m, name + 6, t);
        else if (!strncmp(name, "optim.", 6)) rc = rc ? rc : nb_state_dict_set(o, name + 6, t);
        else if (!strcmp(name, "epoch")) epoch = (int)nb_item(t);
    }
    if (!rc) rc = nb_module_load_state_dict(model, m, true);
    if (!rc) rc = nb_optimizer_load_state_dict(opt, o);
    nb_state_dict_free(m);
    nb_state_dict_free(o);
    nb_state_dict_free(all);
    return rc ? rc : epoch;
}

int fm_parse(int argc, char **argv, fm_args *a) {
    a->prog = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "--resume")) a->resume = true;
        else if (!strcmp(s, "--epochs") && v) a->epochs = atoi(v), i++;
        else if (!strcmp(s, "--batch") && v) a->batch = atoll(v), i++;
        else if (!strcmp(s, "--lr") && v) a->lr = atof(v), i++;
        else if (!strcmp(s, "--data") && v) a->data = v, i++;
        else if (!strcmp(s, "--checkpoint") && v) a->ckpt = v, i++;
        else if (!strcmp(s, "--limit") && v) a->limit = atoll(v), i++;
        else {
            fprintf(stderr, "usage: %s [--epochs N] [--batch B] [--lr LR] [--data DIR] [--checkpoint PATH] "
                            "[--resume] [--limit N]\n", argv[0]);
            return 2;
        }
    }
    if (a->epochs < 1 || a->batch < 1 || !(a->lr > 0)) {
        fprintf(stderr, "%s: epochs, batch and lr must be positive\n", a->prog);
        return 2;
    }
    return 0;
}

/* One epoch over the loader; returns the smoothed loss or NAN on error. */
static double run_epoch(nb_module *model, nb_optimizer *opt, nb_loader *loader, int epoch, int epochs) {
    int64_t nb = nb_loader_num_batches(loader), i = 0, seen = 0;
    double t0 = now(), loss_avg = 0;
    nb_tensor *batch[2];
    int rc;
    for (;;) {
        nb_scope_begin();   /* the batch and everything one step makes die at its end */
        if ((rc = nb_loader_next(loader, batch)) != 1) {
            nb_scope_end();
            break;
        }
        nb_optimizer_zero_grad(opt);
        nb_tensor *loss = nb_cross_entropy(nb_module_forward(model, batch[0]), batch[1]);
        if (!loss || nb_backward(loss, NULL) || nb_optimizer_step(opt)) {
            nb_scope_end();
            return NAN;
        }
        double l = nb_item(loss);
        loss_avg = i ? 0.98 * loss_avg + 0.02 * l : l;
        seen += nb_shape(batch[0])[0];
        nb_scope_end();
        nb_profiler_step();   /* NB_PROFILE=...,skip=N,steps=M counts training steps */
        i++;
        double dt = now() - t0;
        if (i % 10 == 0 || i == nb) progress(epoch + 1, epochs, i, nb, loss_avg, seen / dt, dt / i * (nb - i));
    }
    return rc < 0 ? NAN : loss_avg;
}

double fm_train(nb_module *model, const fm_args *a) {
    double acc = -1;
    nb_scope_begin();   /* the data lives here, for the whole run */
    nb_tensor *xtr = load_images(a, "train-images-idx3-ubyte.gz", a->limit);
    nb_tensor *ytr = load_labels(a, "train-labels-idx1-ubyte.gz", a->limit);
    nb_tensor *xte = load_images(a, "t10k-images-idx3-ubyte.gz", 0);
    nb_tensor *yte = load_labels(a, "t10k-labels-idx1-ubyte.gz", 0);
    nb_dataset *ds = NULL;
    nb_loader *loader = NULL;
    nb_optimizer *opt = NULL;
    nb_scheduler *sched = NULL;
    nb_tensor **params = NULL;
    if (!xtr || !ytr || !xte || !yte) {
        fprintf(stderr, "%s: cannot read Fashion-MNIST from %s (apt-get install dataset-fashion-mnist): %s\n",
                a->prog, a->data, nb_last_error());
        goto out;
    }
    ds = nb_tensor_dataset((nb_tensor *[]){xtr, ytr}, 2);
    nb_loader_opts lo = {.batch_size = a->batch, .shuffle = true, .seed = 1234, .num_workers = 1};
    loader = ds ? nb_loader_new(ds, &lo) : NULL;
    int np = nb_module_parameters(model, NULL, 0);
    params = calloc((size_t)np + 1, sizeof *params);
    if (!loader || !params) {
        fail(a, "setup");
        goto out;
    }
    nb_module_parameters(model, params, np);
    nb_sgd_opts so = {.lr = a->lr, .momentum = 0.9, .weight_decay = 5e-4, .nesterov = true};
    opt = nb_sgd(params, np, &so);
    sched = opt ? nb_cosine_annealing_lr(opt, a->epochs, 0) : NULL;
    if (!sched) {
        fail(a, "optimizer");
        goto out;
    }
    int start = 0;
    if (a->resume) {
        start = load_checkpoint(a->ckpt, model, opt);
        if (start < 0) {
            fail(a, a->ckpt);
            goto out;
        }
        for (int e = 0; e < start; e++) nb_scheduler_step(sched);
        printf("resumed from %s after epoch %d (test accuracy %.2f%%)\n", a->ckpt, start,
               100 * accuracy(model, xte, yte));
    }
    nb_module_print(model, stdout);
    printf("%lld training samples, batch %lld, %d epochs, SGD lr %g (cosine), %d threads\n",
           (long long)nb_shape(xtr)[0], (long long)a->batch, a->epochs, a->lr, nb_num_threads());
    acc = start ? accuracy(model, xte, yte) : 0;
    for (int epoch = start; epoch < a->epochs; epoch++) {
        double t0 = now();
        nb_loader_begin_epoch(loader, epoch);
        double loss = run_epoch(model, opt, loader, epoch, a->epochs);
        if (isnan(loss)) {
            printf("\n");
            acc = fail(a, "training step");
            goto out;
        }
        nb_scheduler_step(sched);
        acc = accuracy(model, xte, yte);
        printf("\nepoch %d/%d: %.1fs, train loss %.4f, test accuracy %.2f%%\n", epoch + 1, a->epochs, now() - t0,
               loss, 100 * acc);
        if (save_checkpoint(a->ckpt, model, opt, epoch + 1)) {
            acc = fail(a, "saving the checkpoint");
            goto out;
        }
    }
    printf("checkpoint: %s (continue with --resume --epochs N)\n", a->ckpt);
out:
    nb_scheduler_free(sched);
    nb_optimizer_free(opt);
    free(params);
    nb_loader_free(loader);
    nb_dataset_free(ds);
    nb_scope_end();
    return acc;
}

int fm_main(int argc, char **argv, fm_args a, nb_module *(*make_model)(void)) {
    int rc = fm_parse(argc, argv, &a);
    if (rc) return rc;
    if (nb_init(NULL)) {
        fprintf(stderr, "%s: %s\n", a.prog, nb_last_error());
        return 1;
    }
    nb_module *model = make_model();
    if (!model) {
        fprintf(stderr, "%s: %s\n", a.prog, nb_last_error());
        return 1;
    }
    double acc = fm_train(model, &a);
    nb_module_free(model);
    nb_shutdown();
    return acc < 0 ? 1 : 0;
}
