/* error.c — per-thread last error, the NB_E* names and messages.
 *
 * Every failure in nabla ends in nb__err(), which formats the message into a
 * thread-local buffer and returns the code, so callers write
 * `return nb__err(NB_ESHAPE, "...")`. With NB_ABORT_ON_ERROR=1 the first
 * error prints and aborts (a debugging aid the user asks for).
 */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local char last_msg[1024];  /* message of the last failure */
static _Thread_local int last_code;        /* its code */

int nb__err(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof last_msg, fmt, ap);
    va_end(ap);
    last_code = code;
    if (nb__cfg.abort_on_error) {
        fprintf(stderr, "nabla: %s (%s)\n", last_msg, nb_error_name(code));
        abort();
    }
    return code;
}

NB_API const char *nb_last_error(void) { return last_msg; }
NB_API int nb_last_error_code(void) { return last_code; }
NB_API void nb_clear_error(void) {
    last_msg[0] = 0;
    last_code = 0;
}

NB_API const char *nb_strerror(int code) {
    switch (code) {
    case 0: return "success";
#define NB__MSG(name, num, msg) case -(num): return msg;
        NB_ERRNO_MAP(NB__MSG)
#undef NB__MSG
    }
    return "unknown error";
}

NB_API const char *nb_error_name(int code) {
    switch (code) {
    case 0: return "NB_OK";
#define NB__NAME(name, num, msg) case -(num): return "NB_E" #name;
        NB_ERRNO_MAP(NB__NAME)
#undef NB__NAME
    }
    return "NB_E?";
}

const char *nb__dims_str(int ndim, const int64_t *d) {
    static _Thread_local char bufs[4][160];
    static _Thread_local int next;
    char *b = bufs[next++ & 3];
    size_t n = 0, cap = sizeof bufs[0];
    n += (size_t)snprintf(b + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(b + n, cap - n, i ? ", %lld" : "%lld", (long long)d[i]);
    if (n < cap) snprintf(b + n, cap - n, "]");
    return b;
}

const char *nb__shape_str(const nb_tensor *t) {
    if (!t) return "NULL";
    return nb__dims_str(t->ndim, t->shape);
}

_Noreturn void nb__assert_fail(const char *file, int line, const char *cond) {
    fprintf(stderr, "nabla: internal error at %s:%d: assertion `%s' failed\n", file, line, cond);
    abort();
}
