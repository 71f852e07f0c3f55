/* driver.c — runs tests/autograd (the engine's, the custom functions' and
 * the parallel executor's tests) without Criterion, for ThreadSanitizer:
 * every test in this one process, one after the other, with the parallel
 * executor for every graph on a pool of 4 threads unless NB_BACKWARD /
 * NB_NUM_THREADS say otherwise. The runner itself is tests/dataload/tsan/driver.c (included
 * here, not copied); criterion/criterion.h here adds what tests/autograd
 * needs to its stand-in header. Built by tests/meson.build when configured
 * with -Db_sanitize=thread -Dopenmp=disabled:
 *
 *   meson setup build-tsan -Db_sanitize=thread -Dopenmp=disabled -Dbenchmarks=false
 *   ninja -C build-tsan && TSAN_OPTIONS=halt_on_error=1 meson test -C build-tsan autograd_tsan
 *   build-tsan/tests/tsan_autograd [substring of suite::name]
 */
#include <stdlib.h>

/* Before any test's nb_init reads them. */
__attribute__((constructor)) static void tsan_autograd_env(void) {
    setenv("NB_BACKWARD", "force", 0);   /* the parallel executor even on chains */
    setenv("NB_NUM_THREADS", "4", 0);
}

#include "../../dataload/tsan/driver.c"
