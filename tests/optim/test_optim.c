/* test_optim.c — optimizers, schedules and clipping against PyTorch.
 *
 * tests/data/ref_optim.txt (from tests/data/gen_ref_optim.py) holds, per
 * optimizer configuration, a float32 parameter, ten gradients and the
 * parameter after each of ten steps as torch.optim computed them; per
 * schedule the lr over 25 steps; per clipping case the norm and the clipped
 * gradients. nabla must agree to a relative 1e-6 (float rounding).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define OPT_N 64

typedef struct opt_case {
    char name[32], kind[16];
    char keys[16][16];
    double vals[16];
    int nkv;
    int n;
    float param[OPT_N], grad[10][OPT_N], after[10][OPT_N];
} opt_case;

static char *opt_read_all(void) {
    FILE *f = fopen(NB_TEST_DATA_DIR "/ref_optim.txt", "rb");
    cr_assert(f, "cannot open ref_optim.txt");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert(s);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

/* Finds the line starting with `head` and returns the text after it. */
static const char *opt_find(const char *text, const char *head) {
    size_t hn = strlen(head);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, head, hn) && (p[hn] == ' ' || p[hn] == '\n')) return p + hn;
    return NULL;
}

static int opt_floats(const char *p, float *out, int max) {
    int n = 0;
    char *end;
    while (n < max) {
        double v = strtod(p, &end);
        if (end == p) break;
        out[n++] = (float)v;
        p = end;
        if (*p == '\n') break;
    }
    return n;
}

static void opt_load(const char *name, opt_case *c) {
    char *text = opt_read_all();
    char head[64];
    snprintf(head, sizeof head, "opt %s", name);
    const char *p = opt_find(text, head);
    cr_assert(p, "no case %s", name);
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    char line[512];
    const char *nl = strchr(p, '\n');
    snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
    char *tok = strtok(line, " ");
    snprintf(c->kind, sizeof c->kind, "%s", tok);
    while ((tok = strtok(NULL, " ")) && c->nkv < 16) {
        snprintf(c->keys[c->nkv], 16, "%s", tok);
        tok = strtok(NULL, " ");
        c->vals[c->nkv++] = tok ? strtod(tok, NULL) : 0;
    }
    const char *q = nl + 1;
    cr_assert(!strncmp(q, "param ", 6));
    c->n = atoi(q + 6);
    cr_assert(c->n > 0 && c->n <= OPT_N);
    opt_floats(strchr(q + 6, ' '), c->param, c->n);
    for (int k = 0; k < 10; k++) {
        q = strchr(q, '\n') + 1;
        cr_assert(!strncmp(q, "grad ", 5));
        opt_floats(strchr(q + 5, ' '), c->grad[k], c->n);
        q = strchr(q, '\n') + 1;
        cr_assert(!strncmp(q, "after ", 6));
        opt_floats(strchr(q + 6, ' '), c->after[k], c->n);
    }
    free(text);
}

static double opt_kv(const opt_case *c, const char *key, double def) {
    for (int i = 0; i < c->nkv; i++)
        if (!strcmp(c->keys[i], key)) return c->vals[i];
    return def;
}

static nb_optimizer *opt_make(const opt_case *c, nb_tensor *p) {
    if (!strcmp(c->kind, "sgd")) {
        nb_sgd_opts o = {.lr = opt_kv(c, "lr", 0), .momentum = opt_kv(c, "momentum", 0),
                         .dampening = opt_kv(c, "dampening", 0), .weight_decay = opt_kv(c, "weight_decay", 0),
                         .nesterov = opt_kv(c, "nesterov", 0) != 0, .maximize = opt_kv(c, "maximize", 0) != 0};
        return nb_sgd(&p, 1, &o);
    }
    if (!strcmp(c->kind, "rmsprop")) {
        nb_rmsprop_opts o = {.lr = opt_kv(c, "lr", 0), .alpha = opt_kv(c, "alpha", 0), .eps = opt_kv(c, "eps", 0),
                             .weight_decay = opt_kv(c, "weight_decay", 0), .momentum = opt_kv(c, "momentum", 0),
                             .centered = opt_kv(c, "centered", 0) != 0};
        return nb_rmsprop(&p, 1, &o);
    }
    bool w = !strcmp(c->kind, "adamw");
    nb_adam_opts o = {.lr = opt_kv(c, "lr", 0), .beta1 = opt_kv(c, "beta1", 0), .beta2 = opt_kv(c, "beta2", 0),
                      .eps = opt_kv(c, "eps", 0), .weight_decay = opt_kv(c, "weight_decay", 0),
                      .amsgrad = opt_kv(c, "amsgrad", 0) != 0, .maximize = opt_kv(c, "maximize", 0) != 0};
    return w ? nb_adamw(&p, 1, &o) : nb_adam(&p, 1, &o);
}

static void opt_run(const char *name) {
    nb_init(NULL);
    opt_case *c = malloc(sizeof *c);
    cr_assert(c);
    opt_load(name, c);
    nb_scope_begin();
    nb_tensor *p = nb_from_data(NB_SHAPE(c->n), NB_F32, c->param);
    cr_assert_eq(nb_set_requires_grad(p, true), 0);
    nb_optimizer *opt = opt_make(c, p);
    cr_assert(opt, "%s: %s", name, nb_last_error());
    for (int k = 0; k < 10; k++) {
        nb_optimizer_zero_grad(opt);
        cr_assert_null(nb_grad(p));
        cr_assert_eq(nb_set_grad(p, nb_from_data(NB_SHAPE(c->n), NB_F32, c->grad[k])), 0);
        cr_assert_eq(nb_optimizer_step(opt), 0, "%s: %s", name, nb_last_error());
        /* relative error of the whole parameter: max |got - torch| / max |torch|
           (element-wise ratios are meaningless where a value crosses zero) */
        const float *got = nb_data(p);
        double maxerr = 0, maxref = 0;
        int worst = 0;
        for (int i = 0; i < c->n; i++) {
            double err = fabs(got[i] - c->after[k][i]);
            if (err > maxerr) maxerr = err, worst = i;
            maxref = fmax(maxref, fabs(c->after[k][i]));
        }
        cr_assert(maxerr <= 1e-6 * maxref, "%s step %d: relative error %.3g (element %d: got %.9g, torch %.9g)", name,
                  k, maxerr / maxref, worst, got[worst], c->after[k][worst]);
    }
    nb_optimizer_free(opt);
    nb_scope_end();
    free(c);
}

Test(optim, sgd_plain) { opt_run("sgd_plain"); }
Test(optim, sgd_momentum) { opt_run("sgd_momentum"); }
Test(optim, sgd_dampening_weight_decay) { opt_run("sgd_damp_wd"); }
Test(optim, sgd_nesterov) { opt_run("sgd_nesterov"); }
Test(optim, sgd_maximize) { opt_run("sgd_maximize"); }
Test(optim, adam_default) { opt_run("adam_default"); }
Test(optim, adam_weight_decay) { opt_run("adam_wd"); }
Test(optim, adam_amsgrad) { opt_run("adam_amsgrad"); }
Test(optim, adamw_default) { opt_run("adamw_default"); }
Test(optim, adamw_amsgrad_maximize) { opt_run("adamw_amsgrad"); }
Test(optim, rmsprop_default) { opt_run("rmsprop_default"); }
Test(optim, rmsprop_centered_momentum) { opt_run("rmsprop_full"); }

/* ---- schedules ---- */
static void sched_run(const char *name) {
    nb_init(NULL);
    char *text = opt_read_all();
    char head[64];
    snprintf(head, sizeof head, "sched %s", name);
    const char *p = opt_find(text, head);
    cr_assert(p, "no schedule %s", name);
    const char *l = opt_find(strchr(p, '\n') + 1, "lrs");
    float lrs[25];
    cr_assert_eq(opt_floats(l, lrs, 25), 25);
    nb_scope_begin();
    nb_tensor *w = nb_zeros(NB_SHAPE(1), NB_F32);
    nb_set_requires_grad(w, true);
    nb_sgd_opts o = {.lr = 0.1};
    nb_optimizer *opt = nb_sgd(&w, 1, &o);
    nb_scheduler *s = NULL;
    static const int ms[3] = {11, 2, 5};
    if (!strcmp(name, "step")) s = nb_step_lr(opt, 3, 0.5);
    else if (!strcmp(name, "multistep")) s = nb_multistep_lr(opt, ms, 3, 0.3);
    else if (!strcmp(name, "exponential")) s = nb_exponential_lr(opt, 0.9);
    else if (!strcmp(name, "cosine")) s = nb_cosine_annealing_lr(opt, 10, 0.001);
    else if (!strcmp(name, "linear")) s = nb_linear_lr(opt, 0.25, 1.0, 5);
    else if (!strcmp(name, "onecycle")) s = nb_onecycle_lr(opt, 1.0, 26, 0, 0, 0);
    cr_assert(s, "%s", nb_last_error());
    for (int e = 0; e < 25; e++) {
        if (e) cr_assert_eq(nb_scheduler_step(s), 0, "%s", nb_last_error());
        double got = nb_optimizer_lr(opt, 0);
        cr_assert(fabs(got - lrs[e]) <= 1e-6 * fmax(1e-3, fabs(lrs[e])), "%s epoch %d: lr %.9g, torch %.9g", name, e,
                  got, (double)lrs[e]);
    }
    nb_scheduler_free(s);
    nb_optimizer_free(opt);
    nb_scope_end();
    free(text);
}

Test(sched, step) { sched_run("step"); }
Test(sched, multistep) { sched_run("multistep"); }
Test(sched, exponential) { sched_run("exponential"); }
Test(sched, cosine) { sched_run("cosine"); }
Test(sched, linear_warmup) { sched_run("linear"); }
Test(sched, onecycle) { sched_run("onecycle"); }

/* ---- clipping ---- */
Test(clip, grad_norm_matches_torch) {
    nb_init(NULL);
    char *text = opt_read_all();
    for (int ci = 0; ci < 4; ci++) {
        char head[16];
        snprintf(head, sizeof head, "clip c%d", ci);
        const char *p = opt_find(text, head);
        cr_assert(p);
        double max_norm = strtod(p, (char **)&p), norm_type = strtod(p, NULL);
        float g0[5] = {0}, g1[6] = {0}, c0[5] = {0}, c1[6] = {0}, total = 0;
        opt_floats(opt_find(p, "g0"), g0, 5);
        opt_floats(opt_find(p, "g1"), g1, 6);
        opt_floats(opt_find(p, "total"), &total, 1);
        opt_floats(opt_find(p, "c0"), c0, 5);
        opt_floats(opt_find(p, "c1"), c1, 6);
        nb_scope_begin();
        nb_tensor *ps[2] = {nb_zeros(NB_SHAPE(5), NB_F32), nb_zeros(NB_SHAPE(3, 2), NB_F32)};
        nb_set_requires_grad(ps[0], true);
        nb_set_requires_grad(ps[1], true);
        nb_set_grad(ps[0], nb_from_data(NB_SHAPE(5), NB_F32, g0));
        nb_set_grad(ps[1], nb_from_data(NB_SHAPE(3, 2), NB_F32, g1));
        double t = nb_clip_grad_norm(ps, 2, max_norm, norm_type);
        cr_assert(fabs(t - total) <= 1e-5 * fabs(total), "case %d: norm %g, torch %g", ci, t, (double)total);
        const float *a = nb_data(nb_grad(ps[0])), *b = nb_data(nb_grad(ps[1]));
        for (int i = 0; i < 5; i++) cr_assert(fabs(a[i] - c0[i]) <= 1e-6 + 1e-5 * fabs(c0[i]), "case %d c0[%d]", ci, i);
        for (int i = 0; i < 6; i++) cr_assert(fabs(b[i] - c1[i]) <= 1e-6 + 1e-5 * fabs(c1[i]), "case %d c1[%d]", ci, i);
        nb_scope_end();
    }
    free(text);
}

/* Large gradients (the vector_norm kernels' blocks and threads): the total
 * against the norm computed here in double, for p = 2, 1 and INFINITY; the
 * gradients scaled by max_norm / total; a NaN gradient gives a NaN total. */
Test(clip, grad_norm_large) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *ps[2] = {nb_zeros(NB_SHAPE(300, 1000), NB_F32), nb_zeros(NB_SHAPE(1001), NB_F32)};
    static const double ords[3] = {2, 1, INFINITY};
    for (int o = 0; o < 3; o++) {
        double want = 0;
        for (int i = 0; i < 2; i++) {
            nb_set_requires_grad(ps[i], true);
            nb_tensor *g = nb_randn(i ? NB_SHAPE(1001) : NB_SHAPE(300, 1000), NB_F32, 40 + (uint64_t)(o * 2 + i));
            cr_assert_eq(nb_set_grad(ps[i], g), 0);
            const float *d = nb_data(g);
            for (int64_t k = 0; k < nb_numel(g); k++) {
                double v = fabs(d[k]);
                want = o == 0 ? want + v * v : o == 1 ? want + v : (v > want ? v : want);
            }
        }
        if (o == 0) want = sqrt(want);
        double first = ((const float *)nb_data(nb_grad(ps[0])))[0];
        double t = nb_clip_grad_norm(ps, 2, 1.0, ords[o]);
        cr_assert(fabs(t - want) <= 1e-6 * want, "p %g: total %.9g, expected %.9g", ords[o], t, want);
        double now = ((const float *)nb_data(nb_grad(ps[0])))[0];
        cr_assert(fabs(now - first / (want + 1e-6)) <= 1e-6 * fabs(first / want) + 1e-12, "p %g: %g scaled to %g",
                  ords[o], first, now);
    }
    ((float *)nb_data(nb_grad(ps[1])))[500] = NAN;
    cr_assert(isnan(nb_clip_grad_norm(ps, 2, 1.0, 2.0)), "a NaN gradient: the total is NaN");
    cr_assert(isnan(nb_clip_grad_norm(ps, 2, 1.0, INFINITY)), "a NaN gradient: the inf-norm is NaN");
    nb_scope_end();
}

Test(clip, grad_value) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *p = nb_zeros(NB_SHAPE(4), NB_F32);
    nb_set_requires_grad(p, true);
    const float g[4] = {-3, -0.5f, 0.25f, 9};
    nb_set_grad(p, nb_from_data(NB_SHAPE(4), NB_F32, g));
    cr_assert_eq(nb_clip_grad_value(&p, 1, 1.0), 0);
    const float *r = nb_data(nb_grad(p));
    cr_assert(r[0] == -1 && r[1] == -0.5f && r[2] == 0.25f && r[3] == 1);
    cr_assert_eq(nb_clip_grad_value(&p, 1, -1), NB_EINVAL);
    nb_scope_end();
}

/* ---- groups, state, bad input ---- */
Test(optim, param_groups_have_their_own_lr) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *a = nb_ones(NB_SHAPE(3), NB_F32), *b = nb_ones(NB_SHAPE(2), NB_F32);
    nb_set_requires_grad(a, true);
    nb_set_requires_grad(b, true);
    nb_sgd_opts o = {.lr = 0.1};
    nb_optimizer *opt = nb_sgd(&a, 1, &o);
    cr_assert_eq(nb_optimizer_add_group(opt, &b, 1, 0.5, NAN), 1, "%s", nb_last_error());
    cr_assert_eq(nb_optimizer_num_groups(opt), 2);
    nb_set_grad(a, nb_ones(NB_SHAPE(3), NB_F32));
    nb_set_grad(b, nb_ones(NB_SHAPE(2), NB_F32));
    cr_assert_eq(nb_optimizer_step(opt), 0);
    cr_assert_float_eq(((float *)nb_data(a))[0], 0.9f, 1e-7);
    cr_assert_float_eq(((float *)nb_data(b))[1], 0.5f, 1e-7);
    /* a parameter cannot be in two groups */
    cr_assert_lt(nb_optimizer_add_group(opt, &a, 1, NAN, NAN), 0);
    cr_assert(strstr(nb_last_error(), "more than one"));
    nb_optimizer_free(opt);
    nb_scope_end();
}

Test(optim, state_dict_round_trip_continues_identically) {
    nb_init(NULL);
    nb_scope_begin();
    float init[6] = {1, -2, 3, -4, 5, -6};
    nb_tensor *p1 = nb_from_data(NB_SHAPE(2, 3), NB_F32, init), *p2 = nb_from_data(NB_SHAPE(2, 3), NB_F32, init);
    nb_set_requires_grad(p1, true);
    nb_set_requires_grad(p2, true);
    nb_adam_opts o = {.lr = 0.05, .amsgrad = true};
    nb_optimizer *a = nb_adam(&p1, 1, &o), *b = nb_adam(&p2, 1, &o);
    for (int k = 0; k < 3; k++) {
        nb_set_grad(p1, nb_full(NB_SHAPE(2, 3), NB_F32, 0.3 * (k + 1)));
        nb_optimizer_step(a);
    }
    nb_state_dict *sd = nb_state_dict_new();
    cr_assert_eq(nb_optimizer_state_dict(a, sd), 0, "%s", nb_last_error());
    cr_assert(nb_state_dict_get(sd, "state.0.exp_avg") && nb_state_dict_get(sd, "state.0.max_exp_avg_sq"));
    cr_assert_float_eq(nb_item(nb_state_dict_get(sd, "state.0.step")), 3.0, 0);
    cr_assert_eq(nb_optimizer_load_state_dict(b, sd), 0, "%s", nb_last_error());
    bool prev = nb_set_grad_enabled(false);
    cr_assert(nb_copy_(p2, p1), "%s", nb_last_error());
    nb_set_grad_enabled(prev);
    nb_set_grad(p1, nb_full(NB_SHAPE(2, 3), NB_F32, -0.7));
    nb_set_grad(p2, nb_full(NB_SHAPE(2, 3), NB_F32, -0.7));
    nb_optimizer_step(a);
    nb_optimizer_step(b);
    cr_assert_eq(memcmp(nb_data(p1), nb_data(p2), 6 * sizeof(float)), 0, "resumed optimizer diverged");
    /* a mismatched state is refused and changes nothing */
    nb_state_dict *bad = nb_state_dict_new();
    nb_state_dict_set(bad, "state.0.exp_avg", nb_zeros(NB_SHAPE(3, 2), NB_F32));
    cr_assert_eq(nb_optimizer_load_state_dict(b, bad), NB_ESHAPE);
    cr_assert(strstr(nb_last_error(), "state.0.exp_avg"));
    nb_state_dict_free(bad);
    nb_state_dict_free(sd);
    nb_optimizer_free(a);
    nb_optimizer_free(b);
    nb_scope_end();
}

Test(optim, bad_options_and_params) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *p = nb_ones(NB_SHAPE(2), NB_F32), *q = nb_ones(NB_SHAPE(2), NB_F32);
    nb_set_requires_grad(p, true);
    nb_sgd_opts o = {.lr = 0};
    cr_assert_null(nb_sgd(&p, 1, &o));
    cr_assert_eq(nb_last_error_code(), NB_EINVAL);
    o.lr = 0.1;
    cr_assert_null(nb_sgd(&q, 1, &o));   /* q does not require grad */
    cr_assert(strstr(nb_last_error(), "requires grad"));
    nb_tensor *ps[2] = {p, NULL};
    cr_assert_null(nb_sgd(ps, 2, &o));
    cr_assert_eq(nb_last_error_code(), NB_ENULLARG);
    nb_adam_opts ao = {.beta1 = 1.5};
    cr_assert_null(nb_adam(&p, 1, &ao));
    cr_assert_eq(nb_optimizer_step(NULL), NB_ENULLARG);
    nb_optimizer *opt = nb_sgd(&p, 1, &o);
    nb_set_grad(p, NULL);
    cr_assert_eq(nb_optimizer_step(opt), 0, "a parameter without a gradient is skipped");
    cr_assert_float_eq(((float *)nb_data(p))[0], 1.0f, 0);
    cr_assert(isnan(nb_optimizer_lr(opt, 3)));
    cr_assert_eq(nb_optimizer_set_lr(opt, 3, 0.1), NB_ERANGE);
    nb_optimizer_free(opt);
    nb_optimizer_free(NULL);
    nb_scope_end();
}
