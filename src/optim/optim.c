/* optim.c — SGD, Adam, AdamW and RMSprop: construction, parameter groups,
 * the update step, zero_grad, and state save/load.
 *
 * Updates run with grad mode off. SGD and Adam/AdamW go through registry
 * kernels (SGD_STEP, ADAM_STEP: the kernels issue vectorizes them); RMSprop
 * is written with in-place ops. State tensors are contiguous, of the
 * parameter's dtype, created on the first step as torch does.
 */
#include "optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int add_params(nb_optimizer *o, nb_tensor *const *params, int n, int group) {
    if (n < 0 || (n > 0 && !params)) return nb__err(NB_ENULLARG, "%s: params is NULL", o->name);
    for (int i = 0; i < n; i++) {
        nb_tensor *p = params[i];
        if (!p) return nb__err(NB_ENULLARG, "%s: parameter %d is NULL", o->name, i);
        if (!nb_requires_grad(p) || !nb_is_leaf(p))
            return nb__err(NB_EINVAL, "%s: parameter %d (shape %s) must be a leaf that requires grad", o->name, i,
                           nb__shape_str(p));
        if (!nb_is_contiguous(p))
            return nb__err(NB_EINVAL, "%s: parameter %d (shape %s) must be contiguous", o->name, i, nb__shape_str(p));
        for (int k = 0; k < o->n; k++)
            if (o->ps[k].p == p)
                return nb__err(NB_EINVAL, "%s: parameter %d appears in more than one place", o->name, i);
        if (o->n == o->cap) {
            int nc = o->cap ? o->cap * 2 : 16;
            nb__param_state *ns = realloc(o->ps, sizeof *ns * (size_t)nc);
            if (!ns) return nb__err(NB_ENOMEM, "%s: out of memory", o->name);
            o->ps = ns;
            o->cap = nc;
        }
        o->ps[o->n++] = (nb__param_state){.p = p, .group = group};
    }
    return 0;
}

NB_API int nb_optimizer_add_group(nb_optimizer *o, nb_tensor *const *params, int n, double lr, double wd) {
    if (!o) return nb__err(NB_ENULLARG, "nb_optimizer_add_group: optimizer is NULL");
    double def_lr = o->kind == NB__SGD ? o->sgd.lr : o->kind == NB__RMSPROP ? o->rms.lr : o->adam.lr;
    double def_wd = o->kind == NB__SGD ? o->sgd.weight_decay
                                       : o->kind == NB__RMSPROP ? o->rms.weight_decay : o->adam.weight_decay;
    if (isnan(lr)) lr = def_lr;
    if (isnan(wd)) wd = def_wd;
    if (!(lr >= 0) || !(wd >= 0))
        return nb__err(NB_EINVAL, "%s: invalid lr %g or weight_decay %g for a group", o->name, lr, wd);
    nb__group *ng = realloc(o->groups, sizeof *ng * (size_t)(o->ngroups + 1));
    if (!ng) return nb__err(NB_ENOMEM, "%s: out of memory", o->name);
    o->groups = ng;
    int before = o->n;
    int rc = add_params(o, params, n, o->ngroups);
    if (rc) {
        o->n = before;
        return rc;
    }
    o->groups[o->ngroups] = (nb__group){lr, wd, lr};
    return o->ngroups++;
}

static nb_optimizer *make(nb__optim_kind kind, const char *name) {
    nb_optimizer *o = calloc(1, sizeof *o);
    if (!o) {
        nb__err(NB_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    o->kind = kind;
    o->name = name;
    return o;
}

static nb_optimizer *finish(nb_optimizer *o, nb_tensor *const *params, int n) {
    if (nb_optimizer_add_group(o, params, n, NAN, NAN) < 0) {
        nb_optimizer_free(o);
        return NULL;
    }
    return o;
}

NB_API nb_optimizer *nb_sgd(nb_tensor *const *params, int n, const nb_sgd_opts *opts) {
    nb_sgd_opts s = opts ? *opts : (nb_sgd_opts){0};
    if (!(s.lr > 0) || s.momentum < 0 || s.weight_decay < 0 || (s.nesterov && (s.momentum <= 0 || s.dampening != 0))) {
        nb__err(NB_EINVAL, "nb_sgd: invalid options (lr %g must be > 0, momentum %g and weight_decay %g >= 0; "
                           "nesterov needs momentum > 0 and zero dampening)",
                s.lr, s.momentum, s.weight_decay);
        return NULL;
    }
    nb_optimizer *o = make(NB__SGD, "nb_sgd");
    if (o) o->sgd = s;
    return o ? finish(o, params, n) : NULL;
}

static nb_optimizer *adam_like(nb__optim_kind kind, const char *name, nb_tensor *const *params, int n,
                               const nb_adam_opts *opts) {
    nb_adam_opts a = opts ? *opts : (nb_adam_opts){0};
    if (a.lr == 0) a.lr = 1e-3;
    if (a.beta1 == 0) a.beta1 = 0.9;
    if (a.beta2 == 0) a.beta2 = 0.999;
    if (a.eps == 0) a.eps = 1e-8;
    if (kind == NB__ADAMW) a.weight_decay = a.weight_decay < 0 ? 0 : a.weight_decay == 0 ? 1e-2 : a.weight_decay;
    if (!(a.lr > 0) || !(a.beta1 >= 0 && a.beta1 < 1) || !(a.beta2 >= 0 && a.beta2 < 1) || !(a.eps > 0) ||
        a.weight_decay < 0) {
        nb__err(NB_EINVAL, "%s: invalid options (lr %g, betas (%g, %g), eps %g, weight_decay %g)", name, a.lr,
                a.beta1, a.beta2, a.eps, a.weight_decay);
        return NULL;
    }
    nb_optimizer *o = make(kind, name);
    if (o) o->adam = a;
    return o ? finish(o, params, n) : NULL;
}

NB_API nb_optimizer *nb_adam(nb_tensor *const *params, int n, const nb_adam_opts *opts) {
    return adam_like(NB__ADAM, "nb_adam", params, n, opts);
}
NB_API nb_optimizer *nb_adamw(nb_tensor *const *params, int n, const nb_adam_opts *opts) {
    return adam_like(NB__ADAMW, "nb_adamw", params, n, opts);
}

NB_API nb_optimizer *nb_rmsprop(nb_tensor *const *params, int n, const nb_rmsprop_opts *opts) {
    nb_rmsprop_opts r = opts ? *opts : (nb_rmsprop_opts){0};
    if (r.lr == 0) r.lr = 1e-2;
    if (r.alpha == 0) r.alpha = 0.99;
    if (r.eps == 0) r.eps = 1e-8;
    if (!(r.lr > 0) || !(r.alpha >= 0) || r.momentum < 0 || r.weight_decay < 0 || !(r.eps > 0)) {
        nb__err(NB_EINVAL, "nb_rmsprop: invalid options (lr %g, alpha %g, eps %g, momentum %g, weight_decay %g)",
                r.lr, r.alpha, r.eps, r.momentum, r.weight_decay);
        return NULL;
    }
    nb_optimizer *o = make(NB__RMSPROP, "nb_rmsprop");
    if (o) o->rms = r;
    return o ? finish(o, params, n) : NULL;
}

NB_API void nb_optimizer_free(nb_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < 3; k++) nb_release(o->ps[i].buf[k]);
    free(o->ps);
    free(o->groups);
    free(o);
}

NB_API int nb_optimizer_num_groups(const nb_optimizer *o) { return o ? o->ngroups : NB_ENULLARG; }

NB_API double nb_optimizer_lr(const nb_optimizer *o, int g) {
    if (!o || g < 0 || g >= o->ngroups) {
        nb__err(o ? NB_ERANGE : NB_ENULLARG, "nb_optimizer_lr: no group %d", g);
        return NAN;
    }
    return o->groups[g].lr;
}

NB_API int nb_optimizer_set_lr(nb_optimizer *o, int g, double lr) {
    if (!o) return nb__err(NB_ENULLARG, "nb_optimizer_set_lr: optimizer is NULL");
    if (g < 0 || g >= o->ngroups) return nb__err(NB_ERANGE, "nb_optimizer_set_lr: no group %d (%d groups)", g, o->ngroups);
    if (!(lr >= 0)) return nb__err(NB_EINVAL, "nb_optimizer_set_lr: invalid lr %g", lr);
    o->groups[g].lr = lr;
    return 0;
}

NB_API void nb_optimizer_zero_grad(nb_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) nb_zero_grad(o->ps[i].p);
}

/* A zero state tensor like p (owned). */
static int state_buf(nb__param_state *s, int k) {
    if (s->buf[k]) return 0;
    nb_tensor *t = nb__new("optimizer state", s->p->dtype, s->p->ndim, s->p->shape);
    if (!t) return NB_ENOMEM;
    nb_kernel_args a = {.op = NB_OP_FILL, .out = t};
    int rc = nb__dispatch(&a, "optimizer state");
    if (rc) {
        nb_release(t);
        return rc;
    }
    s->buf[k] = t;
    return 0;
}

/* RMSprop with in-place ops, following torch 1.13's _single_tensor_rmsprop. */
static int rmsprop_update(nb_optimizer *o, nb__param_state *s, nb_tensor *g, double lr, double wd) {
    const nb_rmsprop_opts *r = &o->rms;
    int rc = state_buf(s, 0);
    if (!rc && r->momentum > 0) rc = state_buf(s, 1);
    if (!rc && r->centered) rc = state_buf(s, 2);
    if (rc) return rc;
    nb_scope_begin();
    if (r->maximize) g = nb_neg(g);
    if (wd != 0) g = nb_add(g, nb_mul_scalar(s->p, wd));
    nb_tensor *sq = s->buf[0];
    nb_mul_scalar_(sq, r->alpha);
    nb_add_(sq, nb_mul_scalar(nb_mul(g, g), 1 - r->alpha));
    nb_tensor *avg;
    if (r->centered) {
        nb_tensor *ga = s->buf[2];
        nb_mul_scalar_(ga, r->alpha);
        nb_add_(ga, nb_mul_scalar(g, 1 - r->alpha));
        avg = nb_add_scalar(nb_pow_scalar(nb_sub(sq, nb_mul(ga, ga)), 0.5), r->eps);
    } else {
        avg = nb_add_scalar(nb_pow_scalar(sq, 0.5), r->eps);
    }
    nb_tensor *upd = nb_div(g, avg);
    if (r->momentum > 0) {
        nb_tensor *buf = s->buf[1];
        nb_mul_scalar_(buf, r->momentum);
        nb_add_(buf, upd);
        upd = buf;
    }
    nb_tensor *res = nb_add_(s->p, nb_mul_scalar(upd, -lr));
    rc = res ? 0 : nb_last_error_code();
    nb_scope_end();
    return rc;
}

NB_API int nb_optimizer_step(nb_optimizer *o) {
    if (!o) return nb__err(NB_ENULLARG, "nb_optimizer_step: optimizer is NULL");
    bool prev = nb_set_grad_enabled(false);
    int rc = 0;
    for (int i = 0; i < o->n && !rc; i++) {
        nb__param_state *s = &o->ps[i];
        nb_tensor *g = nb_grad(s->p);
        if (!g) continue;
        if (!nb__same_shape(g, s->p) || g->dtype != s->p->dtype) {
            rc = nb__err(NB_ESHAPE, "%s: gradient of parameter %d is %s (%s); the parameter is %s (%s)", o->name, i,
                         nb__shape_str(g), nb_dtype_name(g->dtype), nb__shape_str(s->p), nb_dtype_name(s->p->dtype));
            break;
        }
        nb_tensor *gc = nb_is_contiguous(g) ? nb_retain(g) : nb__new(o->name, g->dtype, g->ndim, g->shape);
        if (gc && gc != g) {
            nb_kernel_args cp = {.op = NB_OP_COPY, .out = gc, .in = {g}, .nin = 1};
            if ((rc = nb__dispatch(&cp, o->name))) {
                nb_release(gc);
                break;
            }
        }
        if (!gc) {
            rc = nb_last_error_code();
            break;
        }
        const nb__group *grp = &o->groups[s->group];
        s->step++;
        if (o->kind == NB__SGD) {
            const nb_sgd_opts *p = &o->sgd;
            bool first = p->momentum != 0 && !s->buf[0];
            if (p->momentum != 0) rc = state_buf(s, 0);
            nb_kernel_args a = {.op = NB_OP_SGD_STEP, .out = s->p, .in = {gc, s->buf[0]}, .nin = 2,
                                .scalar = {grp->lr, p->momentum, p->dampening, grp->weight_decay, p->nesterov,
                                           p->maximize, first}};
            if (!rc) rc = nb__dispatch(&a, o->name);
        } else if (o->kind == NB__RMSPROP) {
            rc = rmsprop_update(o, s, gc, grp->lr, grp->weight_decay);
        } else {
            const nb_adam_opts *p = &o->adam;
            rc = state_buf(s, 0);
            if (!rc) rc = state_buf(s, 1);
            if (!rc && p->amsgrad) rc = state_buf(s, 2);
            nb_kernel_args a = {.op = NB_OP_ADAM_STEP, .out = s->p, .in = {gc, s->buf[0], s->buf[1], s->buf[2]},
                                .nin = 4,
                                .scalar = {grp->lr, p->beta1, p->beta2, p->eps, grp->weight_decay, (double)s->step,
                                           o->kind == NB__ADAMW, p->maximize}};
            if (!rc) rc = nb__dispatch(&a, o->name);
        }
        nb_release(gc);
        nb_bump_version(s->p);
    }
    nb_set_grad_enabled(prev);
    return rc;
}

/* ---- state dict ---- */
static const char *buf_name(nb__optim_kind k, int i) {
    static const char *const sgd[3] = {"momentum_buffer", NULL, NULL};
    static const char *const adam[3] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    static const char *const rms[3] = {"square_avg", "momentum_buffer", "grad_avg"};
    return k == NB__SGD ? sgd[i] : k == NB__RMSPROP ? rms[i] : adam[i];
}

NB_API int nb_optimizer_state_dict(const nb_optimizer *o, nb_state_dict *sd) {
    if (!o || !sd) return nb__err(NB_ENULLARG, "nb_optimizer_state_dict: %s is NULL", o ? "sd" : "optimizer");
    char name[96];
    int rc = 0;
    nb_scope_begin();
    for (int i = 0; i < o->n && !rc; i++) {
        const nb__param_state *s = &o->ps[i];
        for (int k = 0; k < 3 && !rc; k++) {
            if (!s->buf[k]) continue;
            snprintf(name, sizeof name, "state.%d.%s", i, buf_name(o->kind, k));
            rc = nb_state_dict_set(sd, name, s->buf[k]);
        }
        if (s->step && !rc) {
            snprintf(name, sizeof name, "state.%d.step", i);
            rc = nb_state_dict_set(sd, name, nb_scalar_dtype((double)s->step, NB_DTYPE_F32));
        }
    }
    for (int g = 0; g < o->ngroups && !rc; g++) {
        snprintf(name, sizeof name, "param_groups.%d.lr", g);
        rc = nb_state_dict_set(sd, name, nb_scalar_dtype(o->groups[g].lr, NB_DTYPE_F64));
    }
    nb_scope_end();
    return rc;
}

NB_API int nb_optimizer_load_state_dict(nb_optimizer *o, const nb_state_dict *sd) {
    if (!o || !sd) return nb__err(NB_ENULLARG, "nb_optimizer_load_state_dict: %s is NULL", o ? "sd" : "optimizer");
    char name[96];
    /* check everything first, so a mismatch changes nothing */
    for (int i = 0; i < nb_state_dict_size(sd); i++) {
        const char *nm = nb_state_dict_name(sd, i);
        int idx, g;
        char rest[64];
        if (sscanf(nm, "param_groups.%d.%63s", &g, rest) == 2) {
            if (g < 0 || g >= o->ngroups || strcmp(rest, "lr"))
                return nb__err(NB_EINVAL, "nb_optimizer_load_state_dict: unexpected entry '%s' (%d groups)", nm, o->ngroups);
            continue;
        }
        if (sscanf(nm, "state.%d.%63s", &idx, rest) != 2 || idx < 0 || idx >= o->n)
            return nb__err(NB_EINVAL, "nb_optimizer_load_state_dict: unexpected entry '%s' (%d parameters)", nm, o->n);
        nb_tensor *t = nb_state_dict_tensor(sd, i);
        if (!strcmp(rest, "step")) {
            if (t->numel != 1) return nb__err(NB_ESHAPE, "nb_optimizer_load_state_dict: '%s' must be a scalar", nm);
            continue;
        }
        int k = -1;
        for (int j = 0; j < 3; j++)
            if (buf_name(o->kind, j) && !strcmp(rest, buf_name(o->kind, j))) k = j;
        if (k < 0) return nb__err(NB_EINVAL, "nb_optimizer_load_state_dict: '%s' is not state of %s", nm, o->name);
        if (!nb__same_shape(t, o->ps[idx].p))
            return nb__err(NB_ESHAPE, "nb_optimizer_load_state_dict: '%s' has shape %s; parameter %d has %s", nm,
                           nb__shape_str(t), idx, nb__shape_str(o->ps[idx].p));
    }
    for (int i = 0; i < o->n; i++) {
        nb__param_state *s = &o->ps[i];
        snprintf(name, sizeof name, "state.%d.step", i);
        nb_tensor *st = nb_state_dict_get(sd, name);
        s->step = st ? (int64_t)nb_item(st) : 0;
        for (int k = 0; k < 3; k++) {
            nb_release(s->buf[k]);
            s->buf[k] = NULL;
            if (!buf_name(o->kind, k)) continue;
            snprintf(name, sizeof name, "state.%d.%s", i, buf_name(o->kind, k));
            nb_tensor *t = nb_state_dict_get(sd, name);
            if (!t) continue;
            int rc = state_buf(s, k);
            nb_kernel_args cp = {.op = NB_OP_COPY, .out = s->buf[k], .in = {t}, .nin = 1};
            if (!rc) rc = nb__dispatch(&cp, "nb_optimizer_load_state_dict");
            if (rc) return rc;
        }
    }
    for (int g = 0; g < o->ngroups; g++) {
        snprintf(name, sizeof name, "param_groups.%d.lr", g);
        nb_tensor *t = nb_state_dict_get(sd, name);
        if (t) o->groups[g].lr = nb_item(t);
    }
    return 0;
}
