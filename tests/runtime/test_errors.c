/* test_errors.c — error codes, names and messages; NULL propagation through
 * a chain of ops keeps the first failure; the last error is per thread.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "testutil.h"

/* ---- codes, names, messages: one row per NB_ERRNO_MAP entry ---- */

typedef struct err_row {
    int code;            /* NB_E* */
    int num;             /* its positive number */
    const char *name;    /* "NB_E..." */
    const char *msg;     /* the message */
} err_row;

static const err_row err_rows[] = {
#define ERR_ROW(n, num, m) {NB_E##n, num, "NB_E" #n, m},
    NB_ERRNO_MAP(ERR_ROW)
#undef ERR_ROW
};
#define ERR_NROWS ((int)(sizeof err_rows / sizeof *err_rows))

Test(errors, strerror_and_name_for_every_code) {
    nb_init(NULL);
    cr_assert_eq(ERR_NROWS, 13);
    for (int i = 0; i < ERR_NROWS; i++) {
        const err_row *r = &err_rows[i];
        cr_assert_eq(r->code, -r->num, "%s is the negative of its number", r->name);
        cr_assert_lt(r->code, 0);
        cr_assert_not_null(nb_strerror(r->code));
        cr_assert_str_eq(nb_strerror(r->code), r->msg, "%s", r->name);
        cr_assert_not_null(nb_error_name(r->code));
        cr_assert_str_eq(nb_error_name(r->code), r->name);
    }
    cr_assert_str_eq(nb_strerror(NB_ESHAPE), "shape mismatch");
    cr_assert_str_eq(nb_error_name(NB_EAUTOGRAD), "NB_EAUTOGRAD");
    cr_assert_eq(NB_OK, 0);
}

Test(errors, codes_are_distinct) {
    for (int i = 0; i < ERR_NROWS; i++)
        for (int j = i + 1; j < ERR_NROWS; j++) {
            cr_assert_neq(err_rows[i].code, err_rows[j].code);
            cr_assert_str_neq(err_rows[i].msg, err_rows[j].msg);
        }
}

Test(errors, unknown_and_zero_codes_give_strings) {
    nb_init(NULL);
    /* never NULL, so they can go straight to printf */
    cr_assert_not_null(nb_strerror(0));
    cr_assert_not_null(nb_error_name(0));
    cr_assert_not_null(nb_strerror(-999));
    cr_assert_not_null(nb_error_name(-999));
    cr_assert_not_null(nb_strerror(12345));
}

/* ---- last error ---- */

Test(errors, no_error_at_start_and_clear) {
    nb_init(NULL);
    nb_clear_error();
    cr_assert_str_eq(nb_last_error(), "");
    cr_assert_eq(nb_last_error_code(), 0);
    nb_scope_begin();
    cr_assert_null(nb_add(nb_ones(NB_SHAPE(2), NB_F32), nb_ones(NB_SHAPE(3), NB_F32)));
    cr_assert_gt(strlen(nb_last_error()), 0);
    cr_assert_neq(nb_last_error_code(), 0);
    nb_clear_error();
    cr_assert_str_eq(nb_last_error(), "");
    cr_assert_eq(nb_last_error_code(), 0);
    nb_scope_end();
}

Test(errors, messages_name_the_op_and_the_code_fits) {
    nb_init(NULL);
    nb_scope_begin();
    nb_tensor *a = nb_ones(NB_SHAPE(2, 3), NB_F32), *b = nb_ones(NB_SHAPE(4, 5), NB_F32);
    cr_assert_null(nb_matmul(a, b));
    cr_assert_not_null(strstr(nb_last_error(), "nb_matmul"), "%s", nb_last_error());
    cr_assert_eq(nb_last_error_code(), NB_ESHAPE, "%s", nb_error_name(nb_last_error_code()));

    cr_assert_null(nb_add(a, nb_ones(NB_SHAPE(4), NB_F32)));
    cr_assert_not_null(strstr(nb_last_error(), "nb_add"), "%s", nb_last_error());
    cr_assert_eq(nb_last_error_code(), NB_ESHAPE);

    /* f32 + f64 promotes as PyTorch does; matmul still needs one dtype */
    cr_assert_null(nb_matmul(a, nb_ones(NB_SHAPE(3, 2), NB_F64)));
    cr_assert_eq(nb_last_error_code(), NB_EDTYPE, "%s", nb_last_error());

    cr_assert_null(nb_transpose(a, 0, 5));
    cr_assert_eq(nb_last_error_code(), NB_ERANGE, "%s", nb_last_error());

    cr_assert_lt(nb_set_requires_grad(nb_ones(NB_SHAPE(2), NB_I64), true), 0);
    nb_scope_end();
}

Test(errors, null_propagates_and_first_failure_is_kept) {
    nb_init(NULL);
    nb_scope_begin();
    nb_clear_error();
    nb_tensor *x = nb_ones(NB_SHAPE(2, 3), NB_F32);
    nb_tensor *a = nb_reshape(x, NB_SHAPE(4, 5));   /* 6 elements cannot be 20 */
    cr_assert_null(a);
    char first[1024];
    strncpy(first, nb_last_error(), sizeof first - 1);
    first[sizeof first - 1] = 0;
    int code = nb_last_error_code();
    cr_assert_gt(strlen(first), 0);
    cr_assert_neq(code, 0);
    cr_assert_not_null(strstr(first, "reshape"), "%s", first);

    nb_tensor *b = nb_exp(a);
    nb_tensor *c = nb_add(b, x);
    nb_tensor *d = nb_matmul(x, c);
    nb_tensor *e = nb_sum_all(nb_transpose(d, 0, 1));
    cr_assert_null(b);
    cr_assert_null(c);
    cr_assert_null(d);
    cr_assert_null(e);
    cr_assert_str_eq(nb_last_error(), first, "the first failure's message is kept");
    cr_assert_eq(nb_last_error_code(), code);
    cr_assert(isnan(nb_item(e)));
    cr_assert_lt(nb_backward(e, NULL), 0);
    nb_scope_end();
}

/* ---- per thread ---- */

typedef struct err_thread_result {
    char initial[256];   /* nb_last_error() when the thread started */
    int initial_code;
    char after[256];     /* after its own failure */
    int after_code;
} err_thread_result;

static void *err_thread_main(void *arg) {
    err_thread_result *r = arg;
    strncpy(r->initial, nb_last_error(), sizeof r->initial - 1);
    r->initial_code = nb_last_error_code();
    nb_scope_begin();
    nb_tensor *t = nb_ones(NB_SHAPE(2, 2), NB_F32);
    (void)nb_matmul(t, nb_ones(NB_SHAPE(3, 3), NB_F32));
    strncpy(r->after, nb_last_error(), sizeof r->after - 1);
    r->after_code = nb_last_error_code();
    nb_scope_end();
    return NULL;
}

Test(errors, last_error_is_per_thread) {
    nb_init(NULL);
    nb_scope_begin();
    cr_assert_null(nb_reshape(nb_ones(NB_SHAPE(6), NB_F32), NB_SHAPE(4)));
    char mine[1024];
    strncpy(mine, nb_last_error(), sizeof mine - 1);
    mine[sizeof mine - 1] = 0;
    int my_code = nb_last_error_code();

    err_thread_result r;
    memset(&r, 0, sizeof r);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, err_thread_main, &r), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);

    cr_assert_str_eq(r.initial, "", "a new thread has no error: '%s'", r.initial);
    cr_assert_eq(r.initial_code, 0);
    cr_assert_not_null(strstr(r.after, "nb_matmul"), "thread saw: %s", r.after);
    cr_assert_eq(r.after_code, NB_ESHAPE);
    cr_assert_str_eq(nb_last_error(), mine, "this thread's error is untouched");
    cr_assert_eq(nb_last_error_code(), my_code);
    nb_scope_end();
}

/* ---- NB_ABORT_ON_ERROR ---- */

Test(errors, abort_on_error_aborts, .signal = SIGABRT) {
    nb_init_opts o = {.num_threads = 0, .isa = NULL, .abort_on_error = 1};
    cr_assert_eq(nb_init(&o), 0);
    nb_scope_begin();
    (void)nb_matmul(nb_ones(NB_SHAPE(2, 3), NB_F32), nb_ones(NB_SHAPE(4, 5), NB_F32));
    nb_scope_end();
}

Test(errors, init_rejects_unknown_isa) {
    nb_init_opts o = {.num_threads = 0, .isa = "sparc", .abort_on_error = 0};
    cr_assert_eq(nb_init(&o), NB_EINVAL);
    cr_assert_gt(strlen(nb_last_error()), 0);
}

/* Unknown values of the pool's variables: nb_init says which and starts
 * with the default (the runtime works afterwards). */
Test(errors, init_rejects_unknown_pool_settings) {
    const char *vars[3] = {"NB_BACKWARD", "NB_PIN", "NB_POOL"};
    for (int i = 0; i < 3; i++) {
        const char *had = getenv(vars[i]);
        char saved[64] = {0};
        if (had) snprintf(saved, sizeof saved, "%s", had);
        setenv(vars[i], "sideways", 1);
        nb_shutdown();
        cr_assert_eq(nb_init(NULL), NB_EINVAL, "%s=sideways", vars[i]);
        cr_assert(strstr(nb_last_error(), vars[i]) && strstr(nb_last_error(), "sideways"), "%s", nb_last_error());
        nb_scope_begin();
        nb_tensor *x = nb_ones(NB_SHAPE(3), NB_F32);
        cr_assert_eq(nb_set_requires_grad(x, true), 0);
        cr_assert_eq(nb_backward(nb_sum_all(nb_mul(x, x)), NULL), 0, "%s", nb_last_error());
        nb_scope_end();
        if (saved[0]) setenv(vars[i], saved, 1);
        else unsetenv(vars[i]);
        nb_shutdown();
        cr_assert_eq(nb_init(NULL), 0, "%s restored: %s", vars[i], nb_last_error());
        nb_shutdown();
    }
}
