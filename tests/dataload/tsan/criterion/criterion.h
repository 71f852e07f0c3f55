/* criterion/criterion.h — a stand-in for Criterion's main header, just big
 * enough to run tests/dataload under ThreadSanitizer.
 *
 * Criterion itself aborts at start-up under TSan ("Could not initialize
 * inheritable arena", Snaipe/Criterion#274), so the TSan run compiles the
 * same test files against this header (put its folder first on the include
 * path) and tests/dataload/tsan/driver.c, which runs every test in-process,
 * one after the other. The command is in driver.c.
 */
#ifndef NB_CRITERION_SHIM_H
#define NB_CRITERION_SHIM_H

#include <math.h>
#include <stdio.h>

typedef struct shim_opts {
    int unused_;             /* lets Test(s, n) take no options */
    void (*init)(void);      /* .init: runs before the test */
    void (*fini)(void);      /* .fini: runs after it */
} shim_opts;

void shim_register(const char *suite, const char *name, void (*fn)(void), shim_opts o);
_Noreturn void shim_fail(const char *file, int line, const char *cond, const char *fmt, ...);
_Noreturn void shim_skip(const char *fmt, ...);

#define Test(suite, name, ...)                                                                \
    static void suite##_##name##_impl(void);                                                  \
    __attribute__((constructor)) static void suite##_##name##_reg(void) {                     \
        shim_register(#suite, #name, suite##_##name##_impl, (shim_opts){.unused_ = 0, __VA_ARGS__}); \
    }                                                                                         \
    static void suite##_##name##_impl(void)

#define cr_assert(c, ...)                                                   \
    do {                                                                    \
        if (!(c)) shim_fail(__FILE__, __LINE__, #c, "" __VA_ARGS__);        \
    } while (0)
#define cr_assert_not(c, ...) cr_assert(!(c), __VA_ARGS__)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...) cr_assert(fabs((double)(a) - (double)(b)) <= (eps), __VA_ARGS__)
#define cr_skip_test(...) shim_skip("" __VA_ARGS__)

#endif
