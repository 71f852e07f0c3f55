/* criterion/criterion.h — tests/dataload/tsan's stand-in for Criterion (see
 * there for why TSan needs one), plus the assertions tests/autograd and
 * tests/profiler use that it lacks. */
#ifndef NB_AUTOGRAD_CRITERION_SHIM_H
#define NB_AUTOGRAD_CRITERION_SHIM_H

#include <string.h>

#include "../../../dataload/tsan/criterion/criterion.h"

#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_fail(...) shim_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
/* Criterion's cr_expect* go on after a failure; here they end the test like
 * cr_assert* (a failure is still a failure) */
#define cr_expect(c, ...) cr_assert(c, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_assert_eq(a, b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) cr_assert_str_eq(a, b, __VA_ARGS__)

#endif
