/* io.h — the io layer's internal interface: a small JSON reader for
 * safetensors headers. */
#ifndef NB_IO_INTERNAL_H
#define NB_IO_INTERNAL_H

#include "runtime/runtime.h"

/* A parsed JSON value. Objects keep their members in file order. */
typedef enum nb__json_kind { NB__J_NULL, NB__J_BOOL, NB__J_NUM, NB__J_STR, NB__J_ARR, NB__J_OBJ } nb__json_kind;
typedef struct nb__json {
    nb__json_kind kind;
    double num;                 /* NUM, BOOL (0/1) */
    char *str;                  /* STR (owned, NUL-terminated, escapes decoded) */
    int n;                      /* ARR/OBJ: items */
    struct nb__json *items;     /* ARR/OBJ: values (owned) */
    char **keys;                /* OBJ: member names (owned) */
    bool num_is_int;            /* NUM written without fraction/exponent */
    int64_t inum;               /* NUM as integer when num_is_int (exact up to 2^63) */
} nb__json;

/* Parses text[0..len) (not necessarily NUL-terminated). Returns 0 or NB_EIO
 * with a message naming `what` and the byte offset. Depth limited to 16. */
int nb__json_parse(const char *text, size_t len, nb__json *out, const char *what);
void nb__json_free(nb__json *j);
const nb__json *nb__json_get(const nb__json *obj, const char *key);

#endif
