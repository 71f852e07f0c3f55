/* hello_grad.c — the first nabla program: the gradient of y = x^2 + 2x at
 * x = 1, which is 2x + 2 = 4. Prints `tensor(4.)`, as PyTorch would for
 *
 *     x = torch.tensor(1.0, requires_grad=True)
 *     y = x ** 2 + x * 2
 *     y.backward()
 *     print(x.grad)
 *
 * Build against an installed nabla: cc hello_grad.c $(pkg-config --cflags --libs nabla)
 */
#include <nabla.h>

int main(void) {
    if (nb_init(NULL) != 0) {
        fprintf(stderr, "nb_init: %s\n", nb_last_error());
        return 1;
    }
    nb_scope_begin();                       /* tensors made below die at scope end */
    nb_tensor *x = nb_scalar(1.0);
    nb_set_requires_grad(x, true);
    /* Each op records its backward node as it runs (define-by-run). */
    nb_tensor *y = nb_add(nb_pow_scalar(x, 2), nb_mul_scalar(x, 2));
    /* A NULL anywhere in the chain comes out as y == NULL: one check. */
    if (!y || nb_backward(y, NULL) != 0) {
        fprintf(stderr, "%s\n", nb_last_error());
        nb_scope_end();
        nb_shutdown();
        return 1;
    }
    nb_print(nb_grad(x));                   /* tensor(4.) */
    nb_scope_end();
    nb_shutdown();
    return 0;
}
