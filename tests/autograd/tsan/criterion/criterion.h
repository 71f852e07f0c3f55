/* criterion/criterion.h — tests/dataload/tsan's stand-in for Criterion (see
 * there for why TSan needs one), plus the two assertions tests/autograd uses
 * that it lacks. */
#ifndef NB_AUTOGRAD_CRITERION_SHIM_H
#define NB_AUTOGRAD_CRITERION_SHIM_H

#include <string.h>

#include "../../../dataload/tsan/criterion/criterion.h"

#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_fail(...) shim_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)

#endif
