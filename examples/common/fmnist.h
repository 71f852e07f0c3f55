/* fmnist.h — what the Fashion-MNIST examples share: reading the data,
 * the training loop with its progress bar, test accuracy and checkpoints.
 * Each example only builds its model. */
#ifndef NB_EXAMPLES_FMNIST_H
#define NB_EXAMPLES_FMNIST_H

#include <nabla.h>

typedef struct fm_args {
    const char *prog;      /* the example's name, for messages */
    int epochs;            /* epochs to train in all (a resumed run continues to this) */
    int64_t batch;         /* batch size */
    double lr;             /* peak learning rate (cosine schedule to 0) */
    const char *data;      /* folder with the four IDX files */
    const char *ckpt;      /* checkpoint path */
    bool resume;           /* continue from ckpt */
    int64_t limit;         /* use only the first N training samples (0: all) */
    bool flat;             /* images as (N, 784) (MLP) or (N, 1, 28, 28) (CNN) */
} fm_args;

/* Parses the common flags into a (defaults already set by the caller);
 * returns 0, or 2 after printing the usage. */
int fm_parse(int argc, char **argv, fm_args *a);
/* Trains model on Fashion-MNIST as a describes (SGD with Nesterov momentum
 * 0.9, weight decay 5e-4, cosine schedule), printing progress and test
 * accuracy per epoch and saving a checkpoint after each. Returns the final
 * test accuracy in [0, 1], or a negative value on error (message printed). */
double fm_train(nb_module *model, const fm_args *a);
/* The whole program: parses argv over the defaults in a, starts nabla,
 * builds the model with make_model, trains it, frees it. Returns the exit
 * status (0 ok, 1 failure, 2 usage). */
int fm_main(int argc, char **argv, fm_args a, nb_module *(*make_model)(void));

#endif
