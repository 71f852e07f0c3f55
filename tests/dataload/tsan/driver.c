/* driver.c — runs tests/dataload's tests without Criterion, for
 * ThreadSanitizer (see criterion/criterion.h here for why). Every test runs
 * in this process, in registration order; a failed assertion prints its
 * place and message and ends that test. Exit status: the failure count.
 *
 * Build and run (from the repository root, after building build-data-tsan,
 * configured with -Db_sanitize=thread -Dopenmp=disabled):
 *
 *   cc -std=gnu11 -g -O1 -fsanitize=thread -Itests/dataload/tsan -Itests/common -Iinclude -I. -Isrc \
 *      -Ibuild-data-tsan -DNB_TEST_DATA_DIR=\"$PWD/tests/data\" tests/dataload/tsan/driver.c \
 *      tests/dataload/test_loader.c tests/dataload/test_transforms.c tests/common/testutil.c \
 *      build-data-tsan/libnabla.a -lz -lhwloc -ldnnl -lm -lpthread -o build-data-tsan/tsan_dataload
 *   build-data-tsan/tsan_dataload [substring of suite::name]
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "criterion/criterion.h"

typedef struct shim_test {
    const char *suite, *name;   /* as written in Test() */
    void (*fn)(void);           /* the body */
    shim_opts o;                /* .init / .fini */
} shim_test;

static shim_test tests[256];
static int n_tests;
static jmp_buf escape;          /* where a failed assertion or a skip returns */

void shim_register(const char *suite, const char *name, void (*fn)(void), shim_opts o) {
    if (n_tests < 256) tests[n_tests++] = (shim_test){suite, name, fn, o};
}

_Noreturn void shim_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "  %s:%d: assertion failed: %s\n  ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    longjmp(escape, 1);
}

_Noreturn void shim_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  skipped: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    longjmp(escape, 2);
}

int main(int argc, char **argv) {
    volatile int failed = 0, ran = 0;   /* live across longjmp */
    for (volatile int i = 0; i < n_tests; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s::%s", tests[i].suite, tests[i].name);
        if (argc > 1 && !strstr(full, argv[1])) continue;
        ran++;
        int r = setjmp(escape);
        if (r == 0) {
            if (tests[i].o.init) tests[i].o.init();
            tests[i].fn();
        }
        if (tests[i].o.fini) tests[i].o.fini();
        fprintf(stderr, "[%s] %s\n", r == 1 ? "FAIL" : r == 2 ? "SKIP" : "PASS", full);
        failed += r == 1;
    }
    fprintf(stderr, "%d passed, %d failed\n", ran - failed, failed);
    return failed;
}
