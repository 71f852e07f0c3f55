/* testutil.h — helpers shared by the test executables. */
#ifndef NB_TESTUTIL_H
#define NB_TESTUTIL_H

#include <nabla.h>

#include <stdint.h>

/* xorshift64*: the next value in [0, 1) (53 bits), *state advanced (any
 * nonzero seed); a test's own state keeps its sequence. */
double tu_u01(uint64_t *state);
/* Distance in representable floats between got and want: 0 when both are
 * NaN (or equal, +0 and -0 included), 1e30 when only one is NaN. */
double tu_ulps_f32(float got, float want);

/* Max |a-b| over elements of two tensors of the same shape (any dtypes),
 * or INFINITY when shapes differ or either is NULL. */
double tu_max_abs_diff(const nb_tensor *a, const nb_tensor *b);
/* True when every element satisfies |a-b| <= atol + rtol*|b|. */
bool tu_allclose(const nb_tensor *a, const nb_tensor *b, double rtol, double atol);
/* A tensor of `shape` and dtype from the given doubles (C order). */
nb_tensor *tu_tensor(nb_dims shape, nb_dtype dt, const double *vals);

/* ---- PyTorch reference cases (tests/data/reference.txt) ----
 * The file is written by tests/data/gen_reference.py, which documents the
 * format: per case the op, its arguments, the inputs (values in logical C
 * order plus a memory layout), a weight W, the forward result and the
 * gradients of (out * W).sum() with respect to each input. */
#define TU_REF_MAX_IN 4
#define TU_REF_MAX_ARGS 8

typedef struct tu_ref_tensor {
    char layout;       /* inputs: 'c' contiguous, 't' last two dims transposed
                          in memory, 's' every 2nd element of the last dim */
    nb_dims shape;     /* logical shape */
    int64_t numel;     /* elements in vals */
    double *vals;      /* logical C order; owned by the case */
} tu_ref_tensor;

typedef struct tu_ref_arg {
    char key[16];             /* "dims", "keepdim", "s", "shape", ... */
    int n;                    /* numbers in v (0 when the value is a word) */
    double v[NB_MAX_DIMS];    /* numeric values */
    char word[16];            /* the value when it is not a number ("f32") */
} tu_ref_arg;

typedef struct tu_ref_case {
    char name[64];                     /* unique case name */
    char op[48];                       /* nabla op without nb_, e.g. "sum_all" */
    int n_in;                          /* tensor inputs */
    int n_args;                        /* entries of args */
    tu_ref_arg args[TU_REF_MAX_ARGS];  /* op arguments */
    tu_ref_tensor in[TU_REF_MAX_IN];   /* inputs */
    tu_ref_tensor w;                   /* weight of the loss, out's shape */
    tu_ref_tensor out;                 /* forward result */
    tu_ref_tensor grad[TU_REF_MAX_IN]; /* d(sum(out*W))/d(in[i]) */
} tu_ref_case;

typedef struct tu_ref_set {
    int n;                 /* cases */
    tu_ref_case *cases;    /* in file order */
} tu_ref_set;

/* Loads every case of NB_TEST_DATA_DIR "/reference.txt"; NULL (with a message
 * on stderr) when the file is missing or malformed. Free with tu_ref_free_set. */
tu_ref_set *tu_ref_load_all(void);
/* The same for another data file of that format under NB_TEST_DATA_DIR
 * (e.g. "ref_loss.txt"). Inputs that take no gradient (integer targets,
 * indices) still get a `grad` line: write zeros there. */
tu_ref_set *tu_ref_load_all_from(const char *file);
tu_ref_case *tu_ref_load_from(const char *file, const char *name);
void tu_ref_free_set(tu_ref_set *s);
/* One case by name (a copy: free with tu_ref_free), or NULL. */
tu_ref_case *tu_ref_load(const char *name);
void tu_ref_free(tu_ref_case *c);
/* The argument `key` of c, or NULL. */
const tu_ref_arg *tu_ref_arg_get(const tu_ref_case *c, const char *key);

/* A tensor of t's logical shape and values in dtype dt, laid out in memory as
 * `layout` says ('c', 't' or 's'; see tu_ref_tensor), and detached, so it is a
 * leaf that may be given requires_grad. The strided layout fills the skipped
 * elements with NaN, so a kernel that ignores strides shows up. Belongs to
 * the open scope (like any op result); NULL on failure. */
nb_tensor *tu_make_layout(nb_dims shape, nb_dtype dt, const double *vals, char layout);
nb_tensor *tu_ref_make(const tu_ref_tensor *t, nb_dtype dt);

/* Compares got with the expected values exp (shape and elements):
 * |got-exp| <= atol + rtol*|exp| everywhere. On failure writes a message
 * (worst element, its index, got vs expected, or the shapes) to msg. */
bool tu_check_close(const nb_tensor *got, nb_dims shape, const double *exp,
                    double rtol, double atol, char *msg, size_t cap);

#endif
