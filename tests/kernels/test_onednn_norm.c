/* test_onednn_norm.c — oneDNN batch normalization (onednn_norm.c: the
 * BATCH_NORM kernel; STATS and BACKWARD stay with ref) against the ref
 * kernels: nb_batch_norm's y and its gradients (dx, dweight, dbias, which
 * use BATCH_NORM too) and running stats, in training and eval mode, with and without weight/bias,
 * on random inputs, computed once with the default ISA and once capped to
 * ref. Tolerance: 1e-5 relative to the largest |ref| value (ref works in
 * double, oneDNN in float). A non-contiguous input is declined by the
 * oneDNN kernel (no primitive is created) and the result is still ref's. */
#include <criterion/criterion.h>

#include "kernels/kernels.h"
#include "nb_config.h"
#include "onednn_testutil.h"
#include "testutil.h"

#if NB_HAVE_ONEDNN
#include "kernels/onednn/onednn.h"
#endif

TestSuite(onednn_norm, .init = ot_setup, .fini = ot_teardown);

#define ON_TOL 1e-5

typedef struct on_case {
    int64_t n, c, h, w;
    bool training, has_w, has_b;
    char layout;   /* 'c' contiguous, 't' x is an H/W transpose */
} on_case;

/* y = batch_norm(x); loss = sum(y * g): y, dx, dw, db, running mean, running var into r. */
static void on_once(const on_case *k, nb_tensor **r) {
    nb_tensor *base = k->layout == 't' ? nb_randn(NB_SHAPE(k->n, k->c, k->w, k->h), NB_F32, 31)
                                       : nb_randn(NB_SHAPE(k->n, k->c, k->h, k->w), NB_F32, 31);
    base = nb_add_scalar(nb_mul_scalar(base, 3.0), 1.5);
    nb_set_requires_grad(base, true);
    nb_tensor *x = k->layout == 't' ? nb_transpose(base, 2, 3) : base;
    nb_tensor *rm = nb_mul_scalar(nb_randn(NB_SHAPE(k->c), NB_F32, 32), 0.5);
    nb_tensor *rv = nb_add_scalar(nb_rand(NB_SHAPE(k->c), NB_F32, 33), 0.5);
    nb_tensor *w = k->has_w ? nb_randn(NB_SHAPE(k->c), NB_F32, 34) : NULL;
    nb_tensor *b = k->has_b ? nb_randn(NB_SHAPE(k->c), NB_F32, 35) : NULL;
    if (w) nb_set_requires_grad(w, true);
    if (b) nb_set_requires_grad(b, true);
    nb_tensor *y = nb_batch_norm(x, rm, rv, w, b, &(nb_batch_norm_opts){.training = k->training});
    cr_assert(y, "%s", nb_last_error());
    nb_tensor *g = nb_randn(nb_dims_get(y), NB_F32, 36);
    cr_assert_eq(nb_backward(nb_sum_all(nb_mul(y, g)), NULL), 0, "%s", nb_last_error());
    r[0] = y, r[1] = nb_grad(base), r[2] = w ? nb_grad(w) : NULL, r[3] = b ? nb_grad(b) : NULL;
    r[4] = rm, r[5] = rv;
}

static uint64_t on_misses(void) {
#if NB_HAVE_ONEDNN
    return nb__dnnl_cache_misses();
#else
    return 0;
#endif
}

/* expect_onednn: 1 a primitive must be made for the case (first use of its
 * shape), 0 none (declined), -1 either. */
static void on_check(on_case k, int expect_onednn) {
    static const char *what[6] = {"y", "dx", "dw", "db", "running_mean", "running_var"};
    nb_scope_begin();
    nb_tensor *got[6], *ref[6];
    uint64_t m0 = on_misses();
    on_once(&k, got);
    uint64_t made = on_misses() - m0;
    if (expect_onednn == 1) cr_assert(made > 0, "oneDNN kernel did not run for %ldx%ldx%ldx%ld", (long)k.n,
                                      (long)k.c, (long)k.h, (long)k.w);
    if (expect_onednn == 0) cr_assert_eq(made, 0, "oneDNN kernel ran on a declined input");
    ot_cap_ref();
    on_once(&k, ref);
    nb_init(NULL);
    for (int i = 0; i < 6; i++) {
        if (!ref[i]) continue;
        double e = ot_rel_err(got[i], ref[i], false);
        cr_assert(e <= ON_TOL, "%s: rel err %g (%ldx%ldx%ldx%ld training %d)", what[i], e, (long)k.n, (long)k.c,
                  (long)k.h, (long)k.w, k.training);
    }
    nb_scope_end();
}

Test(onednn_norm, training_shapes) {
    ot_need(NB_OP_BATCH_NORM, "onednn");
    on_check((on_case){4, 8, 14, 14, true, true, true, 'c'}, 1);
    on_check((on_case){1, 3, 7, 9, true, true, true, 'c'}, 1);
    on_check((on_case){5, 1, 5, 3, true, true, true, 'c'}, 1);
    on_check((on_case){3, 6, 1, 1, true, true, true, 'c'}, 1);
    on_check((on_case){2, 5, 13, 11, true, false, false, 'c'}, 1);
    on_check((on_case){2, 5, 9, 7, true, true, false, 'c'}, 1);
}

Test(onednn_norm, eval_shapes) {
    ot_need(NB_OP_BATCH_NORM, "onednn");
    on_check((on_case){4, 8, 14, 15, false, true, true, 'c'}, 1);
    on_check((on_case){1, 1, 1, 1, false, true, true, 'c'}, 1);
    on_check((on_case){1, 3, 7, 9, false, false, true, 'c'}, 1);
    on_check((on_case){2, 1, 5, 3, false, false, false, 'c'}, 1);
}

Test(onednn_norm, small_cnn_shape) {
    ot_need(NB_OP_BATCH_NORM, "onednn");
    on_check((on_case){64, 32, 14, 14, true, true, true, 'c'}, -1);
    on_check((on_case){64, 32, 14, 14, false, true, true, 'c'}, -1);
}

Test(onednn_norm, non_contiguous_declined_still_correct) {
    ot_need(NB_OP_BATCH_NORM, "onednn");
    on_check((on_case){2, 3, 7, 5, false, true, true, 't'}, 0);
    on_check((on_case){3, 4, 6, 9, true, true, true, 't'}, 0);
}

Test(onednn_norm, only_f32_forward_registered) {
    ot_need(NB_OP_BATCH_NORM, "onednn");
    cr_assert(!strncmp(nb_kernel_chosen(NB_OP_BATCH_NORM, NB_F64), "ref", 3));
    cr_assert(strncmp(nb_kernel_chosen(NB_OP_BATCH_NORM_STATS, NB_F32), "onednn", 6));
    cr_assert(strncmp(nb_kernel_chosen(NB_OP_BATCH_NORM_BACKWARD, NB_F32), "onednn", 6));
}
