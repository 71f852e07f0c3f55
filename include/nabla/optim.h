/* nabla/optim.h — optimizers, learning-rate schedules, gradient clipping.
 *
 * As torch.optim: an optimizer holds parameter groups (tensors that require
 * grad, borrowed: they must outlive the optimizer) with their own learning
 * rate and weight decay, and per-parameter state (momentum buffers, Adam
 * moments) that it owns. nb_optimizer_step reads each parameter's .grad
 * (parameters without one are skipped) and updates the parameter in place
 * with grad mode off. Options structs zero-initialised take PyTorch's
 * defaults (lr has none in torch.optim.SGD: lr 0 is an error there).
 *
 *     nb_sgd_opts o = {.lr = 0.01, .momentum = 0.9};
 *     nb_optimizer *opt = nb_sgd(params, n, &o);
 *     for (...) { nb_optimizer_zero_grad(opt); ...; nb_backward(loss, NULL); nb_optimizer_step(opt); }
 *     nb_optimizer_free(opt);
 */
#ifndef NABLA_OPTIM_H
#define NABLA_OPTIM_H

#include "io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nb_optimizer nb_optimizer;

typedef struct nb_sgd_opts {
    double lr;            /* required, > 0 */
    double momentum;      /* 0 */
    double dampening;     /* 0 */
    double weight_decay;  /* 0 (L2, added to the gradient) */
    bool nesterov;        /* needs momentum > 0 and dampening 0 */
    bool maximize;        /* ascend instead */
} nb_sgd_opts;

typedef struct nb_adam_opts {
    double lr;            /* 0 means 1e-3 */
    double beta1, beta2;  /* 0 means 0.9, 0.999 */
    double eps;           /* 0 means 1e-8 */
    double weight_decay;  /* Adam: 0 (L2); AdamW: a negative value means 0, 0 means 1e-2 */
    bool amsgrad;
    bool maximize;
} nb_adam_opts;

typedef struct nb_rmsprop_opts {
    double lr;            /* 0 means 1e-2 */
    double alpha;         /* 0 means 0.99 */
    double eps;           /* 0 means 1e-8 */
    double weight_decay;  /* 0 */
    double momentum;      /* 0 */
    bool centered;
    bool maximize;
} nb_rmsprop_opts;

/* Each makes an optimizer over params[0..n) as its first group, or NULL on
 * bad options (the message says which). Free with nb_optimizer_free. */
NB_API nb_optimizer *nb_sgd(nb_tensor *const *params, int n, const nb_sgd_opts *opts);
NB_API nb_optimizer *nb_adam(nb_tensor *const *params, int n, const nb_adam_opts *opts);
NB_API nb_optimizer *nb_adamw(nb_tensor *const *params, int n, const nb_adam_opts *opts);
NB_API nb_optimizer *nb_rmsprop(nb_tensor *const *params, int n, const nb_rmsprop_opts *opts);
NB_API void nb_optimizer_free(nb_optimizer *opt);   /* NULL ok */

/* Adds a parameter group with its own lr and weight decay (NAN: the
 * optimizer's). Returns the group index or NB_E*. */
NB_API int nb_optimizer_add_group(nb_optimizer *opt, nb_tensor *const *params, int n, double lr,
                                  double weight_decay);
NB_API int nb_optimizer_num_groups(const nb_optimizer *opt);
NB_API double nb_optimizer_lr(const nb_optimizer *opt, int group);         /* NAN on error */
NB_API int nb_optimizer_set_lr(nb_optimizer *opt, int group, double lr);
/* One update of every parameter that has a gradient. Returns 0 or NB_E*. */
NB_API int nb_optimizer_step(nb_optimizer *opt);
/* Drops every parameter's gradient (set_to_none, PyTorch 2's default). */
NB_API void nb_optimizer_zero_grad(nb_optimizer *opt);

/* State for checkpoints: adds "state.<i>.<name>" tensors (i is the
 * parameter's index over all groups in order; names as torch: momentum_buffer,
 * exp_avg, exp_avg_sq, max_exp_avg_sq, square_avg, grad_avg, step) and
 * "param_groups.<g>.lr" to sd. Loading checks names and shapes and copies. */
NB_API int nb_optimizer_state_dict(const nb_optimizer *opt, nb_state_dict *sd);
NB_API int nb_optimizer_load_state_dict(nb_optimizer *opt, const nb_state_dict *sd);

/* ---- learning-rate schedules (torch.optim.lr_scheduler), stepped once per
 * epoch (or per batch for one-cycle) after the optimizer's step. Each sets
 * every group's lr from its base lr (the lr when the schedule was made). ---- */
typedef struct nb_scheduler nb_scheduler;
NB_API nb_scheduler *nb_step_lr(nb_optimizer *opt, int step_size, double gamma);
NB_API nb_scheduler *nb_multistep_lr(nb_optimizer *opt, const int *milestones, int n, double gamma);
NB_API nb_scheduler *nb_exponential_lr(nb_optimizer *opt, double gamma);
NB_API nb_scheduler *nb_cosine_annealing_lr(nb_optimizer *opt, int t_max, double eta_min);
/* LinearLR: factor goes from start_factor to end_factor over total_iters steps. */
NB_API nb_scheduler *nb_linear_lr(nb_optimizer *opt, double start_factor, double end_factor, int total_iters);
/* OneCycleLR (cosine annealing, no momentum cycling): max_lr per group
 * becomes lr_max; initial lr = max_lr/div_factor (25), final = initial/final_div_factor (1e4),
 * pct_start 0.3 (0 means defaults). */
NB_API nb_scheduler *nb_onecycle_lr(nb_optimizer *opt, double max_lr, int total_steps, double pct_start,
                                    double div_factor, double final_div_factor);
NB_API int nb_scheduler_step(nb_scheduler *s);
NB_API int nb_scheduler_last_epoch(const nb_scheduler *s);
NB_API void nb_scheduler_free(nb_scheduler *s);

/* ---- gradient clipping, as torch.nn.utils ----
 * clip_grad_norm scales all gradients so their joint p-norm (2, 1 or
 * INFINITY) is at most max_norm; returns the norm before clipping (NAN and an
 * error on failure). As torch does, it takes each gradient's norm (the
 * vector_norm kernel) and then the norm of those; other p > 0 are summed
 * element by element in double (slow). clip_grad_value clamps each gradient
 * into [-v, v]. */
NB_API double nb_clip_grad_norm(nb_tensor *const *params, int n, double max_norm, double norm_type);
NB_API int nb_clip_grad_value(nb_tensor *const *params, int n, double clip_value);

#ifdef __cplusplus
}
#endif
#endif
