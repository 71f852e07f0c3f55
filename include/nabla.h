/* nabla.h — a neural-network framework in C with PyTorch's mindset.
 *
 * The one include a user program needs. nabla gives tensors (F32, F64, I64,
 * BOOL; up to 8 dims; views that share storage), define-by-run autograd
 * (ordinary C control flow builds the graph as ops run), and an op registry
 * that maps every op to the best kernel this CPU can run, with a portable
 * reference kernel always present.
 *
 * A first program (examples/hello_grad.c):
 *
 *     #include <nabla.h>
 *     int main(void) {
 *         nb_init(NULL);
 *         nb_scope_begin();                       // tensors made below die at scope end
 *         nb_tensor *x = nb_scalar(1.0);
 *         nb_set_requires_grad(x, true);
 *         nb_tensor *y = nb_add(nb_pow_scalar(x, 2), nb_mul_scalar(x, 2));
 *         if (!y || nb_backward(y, NULL) != 0) {  // one check for the whole chain
 *             fprintf(stderr, "%s\n", nb_last_error());
 *             return 1;
 *         }
 *         nb_print(nb_grad(x));                   // tensor(4.)
 *         nb_scope_end();
 *         nb_shutdown();
 *     }
 *
 * Build against an installed nabla: cc prog.c $(pkg-config --cflags --libs nabla)
 *
 * The areas, one header each:
 *   nabla/runtime.h   init, errors (NB_E* codes, nb_last_error), CPU, memory stats
 *   nabla/tensor.h    dtypes, shapes, creation, views, printing, ownership and scopes
 *   nabla/autograd.h  requires_grad, backward, hooks, custom functions, gradcheck
 *   nabla/ops.h       the ops: element-wise, reductions, shape and indexing
 *   nabla/functional.h  neural-network functions: linear, losses, conv, pooling, norms, attention
 *   nabla/io.h        state dicts and safetensors checkpoints
 *   nabla/nn.h        modules: layers, Sequential, your own modules, initialization
 *   nabla/optim.h     optimizers, learning-rate schedules, gradient clipping
 *   nabla/registry.h  the op list and kernels, for plugging in your own
 *   nabla/profiler.h  per-op profiler: table, Chrome trace, ranges, schedule
 *   nabla/data.h      datasets, the data loader, transforms; IDX, CSV and .npy files
 */
#ifndef NABLA_H
#define NABLA_H

#include "nabla/runtime.h"
#include "nabla/tensor.h"
#include "nabla/autograd.h"
#include "nabla/ops.h"
#include "nabla/functional.h"
#include "nabla/io.h"
#include "nabla/optim.h"
#include "nabla/nn.h"
#include "nabla/registry.h"
#include "nabla/data.h"
#include "nabla/profiler.h"

#endif
