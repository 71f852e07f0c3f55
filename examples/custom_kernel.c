/* custom_kernel.c — a kernel of your own for an op nabla already has.
 *
 * custom_function.c adds a new op with its own backward. This example keeps
 * the op (sigmoid) and replaces the code that computes it: a kernel is a
 * function that fills a preallocated output from its inputs, registered for
 * (op, dtype, ISA) with a priority. Every call of nb_sigmoid on F32 data,
 * the ones autograd and nn make included, then goes to the highest-priority
 * kernel the CPU allows; a kernel may decline a call (here: strided
 * operands), and the next one in line serves it.
 *
 * Rules a kernel follows (include/nabla/registry.h):
 *   - read a->in[], write a->out (its shape and dtype are already set);
 *   - return 0, NB_KERNEL_DECLINE, or a negative NB_E* error;
 *   - use OpenMP if it likes (omp_get_max_threads() is its share of the
 *     pool), but inside a backward node (nb_kernel_thread_invariant()) give
 *     the same bits at any thread count. An element-wise kernel does so by
 *     nature; a reduction would have to split its sum by fixed blocks.
 *
 * The example registers the kernel, checks that the registry chose it,
 * runs sigmoid forward and backward, compares the result with the formula
 * in double precision, shows the kernel in the profiler's table, and shows
 * a strided input declined to the built-in kernel. It exits non-zero if a
 * check fails.
 */
#include <nabla.h>

#include <math.h>
#include <stdio.h>

static int my_calls, my_declines;

/* sigmoid(x) = 1 / (1 + e^-x), written so that e^-x never overflows:
 * for x < 0 it is e^x / (1 + e^x). */
static int my_sigmoid(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0];
    if (!nb_is_contiguous(x) || !nb_is_contiguous(a->out)) {
        my_declines++;
        return NB_KERNEL_DECLINE;   /* the built-in kernel takes strided views */
    }
    const float *in = nb_data(x);
    float *out = nb_data(a->out);
    int64_t n = nb_numel(x);
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float v = in[i];
        float e = expf(-fabsf(v));
        out[i] = v >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
    my_calls++;
    return 0;
}

/* Largest |got - sigmoid(x)| over the elements, the formula in double. */
static double max_error(nb_tensor *x, nb_tensor *got) {
    nb_tensor *xc = nb_contiguous(x), *gc = nb_contiguous(got);
    const float *xv = nb_data(xc), *gv = nb_data(gc);
    double worst = 0;
    for (int64_t i = 0; i < nb_numel(xc); i++) {
        double want = 1.0 / (1.0 + exp(-(double)xv[i]));
        double err = fabs((double)gv[i] - want);
        worst = err > worst ? err : worst;
    }
    return worst;
}

int main(void) {
    if (nb_init(NULL)) return 1;
    nb_kernel_desc k = {NB_OP_SIGMOID, NB_F32, NB_ISA_REF, "my_sigmoid", 1000, my_sigmoid};
    if (nb_register_kernel(&k)) {
        fprintf(stderr, "register: %s\n", nb_last_error());
        return 1;
    }
    printf("sigmoid on f32 is now served by: %s\n", nb_kernel_chosen(NB_OP_SIGMOID, NB_F32));

    int bad = 0;
    nb_scope_begin();
    nb_tensor *x = nb_mul_scalar(nb_randn(NB_SHAPE(256, 300), NB_F32, 7), 8.0);   /* tails: |x| up to ~40 */
    nb_set_requires_grad(x, true);

    nb_profiler_start(NULL);
    nb_tensor *y = nb_sigmoid(x);
    nb_tensor *loss = nb_sum_all(y);
    int rc = y && loss ? nb_backward(loss, NULL) : -1;
    nb_profiler_stop();
    if (rc) {
        fprintf(stderr, "forward/backward: %s\n", nb_last_error());
        return 1;
    }
    double err = max_error(x, y);
    printf("forward: %d call(s) of my_sigmoid, max |error| vs the formula in double: %.2e\n", my_calls, err);
    bad |= my_calls != 1 || err > 1e-6;

    /* d/dx sum(sigmoid(x)) = y (1 - y): the built-in backward used our output */
    nb_tensor *g = nb_grad(x), *want = nb_mul(y, nb_add_scalar(nb_mul_scalar(y, -1.0), 1.0));
    nb_tensor *diff = g && want ? nb_max(nb_abs(nb_sub(g, want)), (const int[]){0, 1}, 2, false) : NULL;
    double gerr = diff ? nb_item(diff) : INFINITY;
    printf("backward: max |grad - y (1 - y)| = %.2e\n", gerr);
    bad |= !(gerr <= 1e-7);

    printf("\nthe profiler names the kernel that ran:\n");
    nb_profiler_table(stdout, NB_PROFILER_SORT_SELF_TIME, 5);

    /* a transposed view: declined, served by the next kernel in line */
    int before = my_calls;
    nb_tensor *yt = nb_sigmoid(nb_transpose(x, 0, 1));
    double errt = yt ? max_error(nb_transpose(x, 0, 1), yt) : INFINITY;
    printf("\ntransposed input: my_sigmoid declined %d time(s), served by the built-in kernel; max |error| %.2e\n",
           my_declines, errt);
    bad |= my_calls != before || my_declines != 1 || errt > 1e-6;
    nb_scope_end();
    nb_shutdown();
    printf("%s\n", bad ? "FAILED" : "ok");
    return bad;
}
