/* avx512_norm.c — (being written) */
#include "kernels/kernels.h"

void nb__avx512_norm_register(void) {}
