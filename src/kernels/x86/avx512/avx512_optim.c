/* avx512_optim.c — (being written) */
#include "kernels/kernels.h"

void nb__avx512_optim_register(void) {}
