/* nn.h — the module layer's internal interface. */
#ifndef NB_NN_INTERNAL_H
#define NB_NN_INTERNAL_H

#include "runtime/runtime.h"

/* Writes the part inside the parentheses of a module's repr
 * ("in_features=784, out_features=512, bias=True"). */
typedef void (*nb__repr_fn)(const nb_module *m, char *buf, size_t cap);
void nb__module_set_repr(nb_module *m, nb__repr_fn fn);

#endif
