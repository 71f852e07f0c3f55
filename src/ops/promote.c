/* promote.c — type promotion between F32, F64, I64, BOOL and Python-style
 * scalars, as PyTorch's torch.result_type.
 *
 * Dtypes fall in three categories, bool < integer < floating. Operands come
 * in three priorities: tensors with at least one dim, 0-dim tensors, and
 * scalars ("wrapped numbers"). Within one priority the dtypes promote along
 * the lattice bool < i64 < f32 < f64. A lower-priority operand changes the
 * result only when its category is higher than every higher-priority one:
 * torch.tensor(1., dtype=float64) + torch.ones(3) is f32, but
 * torch.tensor(1.) + torch.ones(3, dtype=int64) is f32 and
 * torch.tensor(1., dtype=float64) + torch.ones(3, dtype=int64) is f64.
 *
 * A scalar has no dtype of its own, only a kind: a Python float counts as the
 * default dtype (f32), a Python int as i64, a Python bool as bool. nabla's
 * scalars are doubles, so an integral value (that fits in an i64) counts as a
 * Python int and any other value (2.5, NaN, inf) as a Python float.
 */
#include "ops/ops.h"

#include <math.h>

#define UNDEF (-1)   /* no operand of that priority */

/* Position in the promotion lattice bool < i64 < f32 < f64. */
static int rank(nb_dtype d) {
    switch (d) {
    case NB_DTYPE_BOOL: return 0;
    case NB_DTYPE_I64: return 1;
    case NB_DTYPE_F32: return 2;
    default: return 3;
    }
}

static bool is_float(int d) { return d == NB_DTYPE_F32 || d == NB_DTYPE_F64; }

static int promote(int a, int b) {
    if (a == UNDEF) return b;
    if (b == UNDEF) return a;
    return rank((nb_dtype)a) >= rank((nb_dtype)b) ? a : b;
}

/* PyTorch's combine_categories: `higher` is the higher-priority state. */
static int combine(int higher, int lower) {
    if (is_float(higher)) return higher;
    if (higher == NB_DTYPE_BOOL || is_float(lower)) return promote(higher, lower);
    return higher != UNDEF ? higher : lower;
}

typedef struct state {
    int dim, zero, wrapped;   /* promoted dtype per priority, or UNDEF */
} state;

static void add_tensor(state *s, const nb_tensor *t) {
    if (t->ndim > 0) s->dim = promote(s->dim, t->dtype);
    else s->zero = promote(s->zero, t->dtype);
}

static int finish(const state *s) { return combine(s->dim, combine(s->zero, s->wrapped)); }

nb_dtype nb__scalar_kind(double s) {
    bool integral = isfinite(s) && s == trunc(s) && fabs(s) < 9223372036854775808.0;
    return integral ? NB_DTYPE_I64 : NB_DTYPE_F32;
}

NB_API nb_dtype nb_promote_types(nb_dtype a, nb_dtype b) {
    if ((unsigned)a >= NB_DTYPE_COUNT || (unsigned)b >= NB_DTYPE_COUNT) return NB_DTYPE_COUNT;
    return (nb_dtype)promote(a, b);
}

nb_dtype nb__result_type(const nb_tensor *a, const nb_tensor *b) {
    state s = {UNDEF, UNDEF, UNDEF};
    add_tensor(&s, a);
    add_tensor(&s, b);
    return (nb_dtype)finish(&s);
}

NB_API nb_dtype nb_result_type(const nb_tensor *a, const nb_tensor *b) {
    if (!a || !b) return NB_DTYPE_COUNT;
    return nb__result_type(a, b);
}

nb_dtype nb__result_type_scalar(const nb_tensor *a, double s) {
    state st = {UNDEF, UNDEF, nb__scalar_kind(s)};
    add_tensor(&st, a);
    return (nb_dtype)finish(&st);
}

nb_dtype nb__clamp_type(const nb_tensor *a, double min, double max) {
    state st = {UNDEF, UNDEF, UNDEF};
    if (!isnan(min)) st.wrapped = promote(st.wrapped, nb__scalar_kind(min));
    if (!isnan(max)) st.wrapped = promote(st.wrapped, nb__scalar_kind(max));
    add_tensor(&st, a);
    return (nb_dtype)finish(&st);
}

nb_dtype nb__result_type3(const nb_tensor *a, const nb_tensor *b, const nb_tensor *c) {
    state s = {UNDEF, UNDEF, UNDEF};
    add_tensor(&s, a);
    add_tensor(&s, b);
    if (c) add_tensor(&s, c);
    return (nb_dtype)finish(&s);
}

nb_dtype nb__float_of(nb_dtype d) { return is_float(d) ? d : NB_DTYPE_F32; }

bool nb__can_cast(nb_dtype from, nb_dtype to) {
    if (is_float(from) && !is_float(to)) return false;
    if (from == NB_DTYPE_I64 && to == NB_DTYPE_BOOL) return false;
    return true;
}

int nb__check_cast(const char *who, nb_dtype result, const nb_tensor *self) {
    if (nb__can_cast(result, self->dtype)) return 0;
    return nb__err(NB_EDTYPE, "%s: result type %s can't be cast to the desired output type %s (self of shape %s)",
                   who, nb_dtype_name(result), nb_dtype_name(self->dtype), nb__shape_str(self));
}
