/* optim.h — the optimizer layer's internal interface: the optimizer object
 * shared by optim.c (updates, state) and sched.c (schedules). */
#ifndef NB_OPTIM_INTERNAL_H
#define NB_OPTIM_INTERNAL_H

#include "autograd/autograd.h"
#include "kernels/kernels.h"

typedef enum nb__optim_kind { NB__SGD, NB__ADAM, NB__ADAMW, NB__RMSPROP } nb__optim_kind;

typedef struct nb__param_state {
    nb_tensor *p;          /* the parameter (borrowed) */
    nb_tensor *buf[3];     /* per kind: SGD {momentum}; Adam {exp_avg, exp_avg_sq, max_exp_avg_sq};
                              RMSprop {square_avg, momentum_buffer, grad_avg} (owned, lazily made) */
    int64_t step;          /* updates done */
    int group;             /* which group it belongs to */
} nb__param_state;

typedef struct nb__group {
    double lr;             /* current learning rate */
    double weight_decay;   /* this group's */
    double initial_lr;     /* lr when the first scheduler attached (its base) */
} nb__group;

struct nb_optimizer {
    nb__optim_kind kind;   /* which update */
    const char *name;      /* "SGD", ... for messages */
    nb_sgd_opts sgd;       /* hyper-parameters (only the kind's one used) */
    nb_adam_opts adam;
    nb_rmsprop_opts rms;
    nb__param_state *ps;   /* every parameter, groups in order */
    int n, cap;
    nb__group *groups;
    int ngroups;
};

#endif
