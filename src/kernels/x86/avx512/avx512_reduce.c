/* avx512_reduce.c — (being written) */
#include "kernels/kernels.h"

void nb__avx512_reduce_register(void) {}
