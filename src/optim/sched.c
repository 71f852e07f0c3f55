/* sched.c — learning-rate schedules (torch.optim.lr_scheduler's closed
 * forms) and gradient clipping.
 *
 * A schedule remembers each group's base lr when it is made and, at every
 * nb_scheduler_step, sets lr = f(base, epoch) for epoch = steps so far.
 * The closed forms equal torch's recursive ones for a schedule used alone.
 */
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum kind { K_STEP, K_MULTISTEP, K_EXP, K_COSINE, K_LINEAR, K_ONECYCLE } kind;

struct nb_scheduler {
    nb_optimizer *opt;     /* borrowed */
    kind k;
    int epoch;             /* steps taken (torch's last_epoch) */
    double *base;          /* base lr per group (owned) */
    int ngroups;
    double gamma, eta_min, start, end, pct, div, final_div, max_lr;
    int step_size, t_max, total;
    int *milestones;       /* owned */
    int nmilestones;
};

static double lr_at(const nb_scheduler *s, int g, int e) {
    double b = s->base[g];
    switch (s->k) {
    case K_STEP: return b * pow(s->gamma, e / s->step_size);
    case K_MULTISTEP: {
        int passed = 0;
        for (int i = 0; i < s->nmilestones; i++) passed += e >= s->milestones[i];
        return b * pow(s->gamma, passed);
    }
    case K_EXP: return b * pow(s->gamma, e);
    case K_COSINE: return s->eta_min + (b - s->eta_min) * (1 + cos(M_PI * e / s->t_max)) / 2;
    case K_LINEAR: {
        int t = e < s->total ? e : s->total;
        return b * (s->start + (s->end - s->start) * t / s->total);
    }
    case K_ONECYCLE: {
        double init = s->max_lr / s->div, fin = init / s->final_div;
        double up = s->pct * s->total - 1, down = s->total - 1;
        double lo, hi, pct;
        if (e <= up) {
            lo = init, hi = s->max_lr, pct = up > 0 ? e / up : 1;
        } else {
            lo = s->max_lr, hi = fin, pct = (e - up) / (down - up);
        }
        return hi + (lo - hi) / 2 * (1 + cos(M_PI * pct));   /* cosine annealing from lo to hi */
    }
    }
    return b;
}

static void apply(nb_scheduler *s) {
    for (int g = 0; g < s->ngroups; g++) s->opt->groups[g].lr = lr_at(s, g, s->epoch);
}

static nb_scheduler *make(nb_optimizer *opt, kind k, const char *who) {
    if (!opt) {
        nb__err(NB_ENULLARG, "%s: optimizer is NULL", who);
        return NULL;
    }
    nb_scheduler *s = calloc(1, sizeof *s);
    double *base = calloc((size_t)opt->ngroups + 1, sizeof *base);
    if (!s || !base) {
        free(s);
        free(base);
        nb__err(NB_ENOMEM, "%s: out of memory", who);
        return NULL;
    }
    s->opt = opt;
    s->k = k;
    s->base = base;
    s->ngroups = opt->ngroups;
    for (int g = 0; g < opt->ngroups; g++) base[g] = opt->groups[g].lr;   /* torch: initial_lr at construction */
    return s;
}

static nb_scheduler *start(nb_scheduler *s) {
    if (s) apply(s);   /* epoch 0: torch sets the initial lr at construction */
    return s;
}

static nb_scheduler *bad(nb_scheduler *s, const char *who, const char *what) {
    nb_scheduler_free(s);
    nb__err(NB_EINVAL, "%s: %s", who, what);
    return NULL;
}

NB_API nb_scheduler *nb_step_lr(nb_optimizer *opt, int step_size, double gamma) {
    nb_scheduler *s = make(opt, K_STEP, "nb_step_lr");
    if (!s) return NULL;
    if (step_size <= 0) return bad(s, "nb_step_lr", "step_size must be positive");
    s->step_size = step_size;
    s->gamma = gamma;
    return start(s);
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

NB_API nb_scheduler *nb_multistep_lr(nb_optimizer *opt, const int *milestones, int n, double gamma) {
    nb_scheduler *s = make(opt, K_MULTISTEP, "nb_multistep_lr");
    if (!s) return NULL;
    if (n < 0 || (n > 0 && !milestones)) return bad(s, "nb_multistep_lr", "milestones is NULL");
    s->milestones = malloc(sizeof(int) * (size_t)(n + 1));
    if (!s->milestones) return bad(s, "nb_multistep_lr", "out of memory");
    memcpy(s->milestones, milestones, sizeof(int) * (size_t)n);
    qsort(s->milestones, (size_t)n, sizeof(int), cmp_int);
    s->nmilestones = n;
    s->gamma = gamma;
    return start(s);
}

NB_API nb_scheduler *nb_exponential_lr(nb_optimizer *opt, double gamma) {
    nb_scheduler *s = make(opt, K_EXP, "nb_exponential_lr");
    if (s) s->gamma = gamma;
    return start(s);
}

NB_API nb_scheduler *nb_cosine_annealing_lr(nb_optimizer *opt, int t_max, double eta_min) {
    nb_scheduler *s = make(opt, K_COSINE, "nb_cosine_annealing_lr");
    if (!s) return NULL;
    if (t_max <= 0) return bad(s, "nb_cosine_annealing_lr", "t_max must be positive");
    s->t_max = t_max;
    s->eta_min = eta_min;
    return start(s);
}

NB_API nb_scheduler *nb_linear_lr(nb_optimizer *opt, double start_factor, double end_factor, int total_iters) {
    nb_scheduler *s = make(opt, K_LINEAR, "nb_linear_lr");
    if (!s) return NULL;
    if (!(start_factor > 0 && start_factor <= 1) || !(end_factor >= 0 && end_factor <= 1) || total_iters <= 0)
        return bad(s, "nb_linear_lr", "need 0 < start_factor <= 1, 0 <= end_factor <= 1, total_iters > 0");
    s->start = start_factor;
    s->end = end_factor;
    s->total = total_iters;
    return start(s);
}

NB_API nb_scheduler *nb_onecycle_lr(nb_optimizer *opt, double max_lr, int total_steps, double pct_start,
                                    double div_factor, double final_div_factor) {
    nb_scheduler *s = make(opt, K_ONECYCLE, "nb_onecycle_lr");
    if (!s) return NULL;
    s->pct = pct_start > 0 ? pct_start : 0.3;
    s->div = div_factor > 0 ? div_factor : 25;
    s->final_div = final_div_factor > 0 ? final_div_factor : 1e4;
    if (!(max_lr > 0) || total_steps <= 1 || s->pct >= 1)
        return bad(s, "nb_onecycle_lr", "need max_lr > 0, total_steps > 1 and 0 < pct_start < 1");
    s->max_lr = max_lr;
    s->total = total_steps;
    return start(s);
}

NB_API int nb_scheduler_step(nb_scheduler *s) {
    if (!s) return nb__err(NB_ENULLARG, "nb_scheduler_step: scheduler is NULL");
    if (s->k == K_ONECYCLE && s->epoch + 1 >= s->total)
        return nb__err(NB_ESTATE, "nb_scheduler_step: one-cycle schedule stepped past its %d total steps", s->total);
    s->epoch++;
    apply(s);
    return 0;
}

NB_API int nb_scheduler_last_epoch(const nb_scheduler *s) { return s ? s->epoch : NB_ENULLARG; }

NB_API void nb_scheduler_free(nb_scheduler *s) {
    if (!s) return;
    free(s->base);
    free(s->milestones);
    free(s);
}

/* ---- gradient clipping ---- */
NB_API double nb_clip_grad_norm(nb_tensor *const *params, int n, double max_norm, double norm_type) {
    if (n < 0 || (n > 0 && !params)) {
        nb__err(NB_ENULLARG, "nb_clip_grad_norm: params is NULL");
        return NAN;
    }
    if (!(norm_type > 0)) {
        nb__err(NB_EINVAL, "nb_clip_grad_norm: norm_type must be positive (got %g)", norm_type);
        return NAN;
    }
    double acc = 0;
    bool kern = norm_type == 1 || norm_type == 2 || isinf(norm_type);
    if (kern) {   /* torch's way: each gradient's norm (the registry's vector_norm kernel), then their norm */
        bool prev = nb_set_grad_enabled(false);
        nb_scope_begin();
        int rc = 0;
        for (int i = 0; i < n; i++) {
            nb_tensor *g = params[i] ? nb_grad(params[i]) : NULL;
            if (!g || g->numel == 0) continue;
            nb_tensor *t = nb_norm(g, norm_type, NULL, 0, false);
            if (!t) {
                rc = nb_last_error_code();
                break;
            }
            double v = nb_item(t);
            if (isinf(norm_type)) acc = v > acc || isnan(v) ? v : acc;
            else acc += norm_type == 2 ? v * v : v;
        }
        nb_scope_end();
        nb_set_grad_enabled(prev);
        if (rc) return NAN;
    } else {   /* other orders: |g|^p element by element */
        for (int i = 0; i < n; i++) {
            nb_tensor *g = params[i] ? nb_grad(params[i]) : NULL;
            if (!g) continue;
            int64_t idx[NB_MAX_DIMS] = {0};
            for (int64_t k = 0; k < g->numel; k++) {
                acc += pow(fabs(nb_get(g, idx)), norm_type);
                for (int d = g->ndim - 1; d >= 0; d--) {
                    if (++idx[d] < g->shape[d]) break;
                    idx[d] = 0;
                }
            }
        }
    }
    double total = isinf(norm_type) ? acc : pow(acc, 1.0 / norm_type);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1) {
        bool prev = nb_set_grad_enabled(false);
        for (int i = 0; i < n; i++) {
            nb_tensor *g = params[i] ? nb_grad(params[i]) : NULL;
            if (g) nb_mul_scalar_(g, coef);
        }
        nb_set_grad_enabled(prev);
    }
    return total;
}

NB_API int nb_clip_grad_value(nb_tensor *const *params, int n, double v) {
    if (n < 0 || (n > 0 && !params)) return nb__err(NB_ENULLARG, "nb_clip_grad_value: params is NULL");
    if (!(v >= 0)) return nb__err(NB_EINVAL, "nb_clip_grad_value: clip_value must be >= 0 (got %g)", v);
    for (int i = 0; i < n; i++) {
        nb_tensor *g = params[i] ? nb_grad(params[i]) : NULL;
        if (!g) continue;
        int64_t idx[NB_MAX_DIMS] = {0};
        for (int64_t k = 0; k < g->numel; k++) {
            int64_t off = 0;
            for (int d = 0; d < g->ndim; d++) off += idx[d] * g->stride[d];
            char *p = (char *)nb_data(g) + off * (int64_t)nb_dtype_size(g->dtype);
            double x = nb__load(p, g->dtype);
            nb__store(p, g->dtype, x > v ? v : x < -v ? -v : x);
            for (int d = g->ndim - 1; d >= 0; d--) {
                if (++idx[d] < g->shape[d]) break;
                idx[d] = 0;
            }
        }
        nb_bump_version(g);
    }
    return 0;
}
