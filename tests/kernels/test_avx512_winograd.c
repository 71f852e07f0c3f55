/* test_avx512_winograd.c — the AVX-512 Winograd convolutions
 * (avx512_winograd.c) against the ref kernels: the cases of
 * winograd_tests.h under the avx512 cap, and the same bits as the AVX2
 * twin (both keep one FMA chain per output, in the same order).
 * Skipped when the CPU (or NB_ISA) has no AVX-512.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "onednn_testutil.h"
#include "testutil.h"

#define WGT_SUITE avx512_winograd
#define WGT_ISA "avx512"
#define WGT_PREFIX "avx512_winograd"
#include "winograd_tests.h"

/* op of case c under the ISA cap isa, served by the kernel named prefix. */
static nb_tensor *wg_under(const wg_case *c, nb_op op, const char *isa, const char *prefix) {
    cr_assert_eq(nb_init(&(nb_init_opts){.isa = isa, .abort_on_error = -1}), 0);
    nb_tensor *a, *b, *bias;
    nb_dims os;
    wg_operands(c, op, &a, &b, &bias, &os);
    const char *k;
    nb_tensor *y = wg_run(op, os, 'c', a, b, bias, c->pad, 1, 1, 1, &k);
    cr_assert(!strncmp(k, prefix, strlen(prefix)), "%s under %s served by %s", nb_op_name(op), isa, k);
    return y;
}

Test(avx512_winograd, same_bits_as_avx2) {
    wg_need();
    static const wg_case cs[] = {{5, 32, 14, 14, 64, 5, 2, true, 'c'}, {3, 20, 11, 9, 24, 3, 1, true, 'c'}};
    static const nb_op ops[] = {NB_OP_CONV2D, NB_OP_CONV_BWD_DATA, NB_OP_CONV_TRANSPOSE2D, NB_OP_CONV_BWD_WEIGHT};
    nb_scope_begin();
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
            nb_tensor *z = wg_under(&cs[i], ops[o], "avx512", "avx512_winograd");
            nb_tensor *y = wg_under(&cs[i], ops[o], "avx2", "avx2_winograd");
            cr_assert(!memcmp(nb_data(z), nb_data(y), (size_t)nb_numel(y) * sizeof(float)),
                      "%s case %zu: AVX-512 and AVX2 bits differ", nb_op_name(ops[o]), i);
        }
    wg_default();
    nb_scope_end();
}
