/* registry.c — the op registry: kernels per (op, dtype), ordered by
 * priority, filtered by the ISA cap, with declines passing down the line.
 *
 * The table is built on first use and re-sorted when a kernel is added.
 * When nb_init changes the ISA cap (nb__cfg.generation), the chosen kernel
 * per slot is recomputed. Registration is expected from one thread before
 * ops run on others (said in registry.h).
 */
#include "kernels/kernels.h"
#include "runtime/profile.h"
#include "nb_config.h"

#if NB_HAVE_OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[NB_OP_COUNT] = {
#define NB__OP_NAME(e, name, nin) name,
    NB_OP_LIST(NB__OP_NAME)
#undef NB__OP_NAME
};
_Static_assert(sizeof op_names / sizeof op_names[0] == NB_OP_COUNT, "op table out of step");

typedef struct slot {
    nb_kernel_desc *k;   /* kernels, highest priority first */
    int n, cap;          /* used, allocated */
    int first;           /* index of the first kernel within the ISA cap, or -1 */
} slot;

static slot table[NB_OP_COUNT][NB_DTYPE_COUNT];
static atomic_bool built;                       /* the built-in kernels are registered */
static atomic_uint built_gen = ~0u;             /* nb__cfg.generation the choice was made for */
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;   /* first build and re-choosing */
static _Thread_local const char *last_kernel;
_Thread_local int nb__thread_invariant;

NB_API bool nb_kernel_thread_invariant(void) { return nb__thread_invariant != 0; }

NB_API const char *nb_op_name(nb_op op) { return (unsigned)op < NB_OP_COUNT ? op_names[op] : "?"; }

static void choose(void) {
    for (int o = 0; o < NB_OP_COUNT; o++)
        for (int d = 0; d < NB_DTYPE_COUNT; d++) {
            slot *s = &table[o][d];
            s->first = -1;
            for (int i = 0; i < s->n && s->first < 0; i++)
                if (s->k[i].isa <= nb__cfg.isa_cap) s->first = i;
        }
    built_gen = nb__cfg.generation;
}

void nb__registry_add_all(const nb_kernel_desc *ks, size_t n) {
    for (size_t i = 0; i < n; i++) nb__registry_add(&ks[i]);
}

int nb__registry_add(const nb_kernel_desc *k) {
    slot *s = &table[k->op][k->dtype];
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 4;
        nb_kernel_desc *nk = realloc(s->k, sizeof *nk * (size_t)nc);
        if (!nk) return nb__err(NB_ENOMEM, "nb_register_kernel: out of memory");
        s->k = nk;
        s->cap = nc;
    }
    int at = s->n;   /* stable: equal priority keeps registration order */
    while (at > 0 && s->k[at - 1].priority < k->priority) at--;
    memmove(s->k + at + 1, s->k + at, sizeof *s->k * (size_t)(s->n - at));
    s->k[at] = *k;
    s->n++;
    built_gen = ~0u;
    return 0;
}

/* Registers the built-in kernels once and (re)chooses under the lock, so
 * ops started on several threads at once see one complete table. */
static void build(void) {
    nb__ensure_init();
    pthread_mutex_lock(&build_lock);
    if (atomic_load(&built) && atomic_load(&built_gen) == nb__cfg.generation) {
        pthread_mutex_unlock(&build_lock);
        return;
    }
    if (!atomic_load(&built)) {
        nb__ref_elementwise_register();
        nb__ref_reduce_register();
        nb__ref_matmul_register();
        nb__ref_optim_register();
#if NB_HAVE_ONEDNN
        nb__onednn_matmul_register();
        nb__onednn_conv_register();
#endif
        nb__ref_math_register();
        nb__ref_compare_register();
        /* @@REGISTER_ELEMENTWISE@@ */
        nb__ref_reduce_full_register();
        /* @@REGISTER_REDUCE@@ */
        nb__ref_index_register();
        /* @@REGISTER_INDEX@@ */
        nb__ref_loss_register();
        /* @@REGISTER_LOSS@@ */
        nb__ref_conv_register();
        nb__ref_pool_register();
        nb__ref_interpolate_register();
        /* @@REGISTER_CONV@@ */
        nb__ref_norm_register();
        nb__ref_attention_register();
        /* @@REGISTER_NORM@@ */
        /* The x86/avx2 kernels, compiled with -mavx2 -mfma: even their
         * register functions may use those instructions, so they are only
         * called on a CPU that has them. NB_ISA caps them per call. */
        if (nb_cpu()->avx2_fma) {
            /* @@REGISTER_AVX2_ELEMENTWISE@@ */
            nb__avx2_elementwise_register();
            /* @@REGISTER_AVX2_REDUCE@@ */
            nb__avx2_reduce_register();
            /* @@REGISTER_AVX2_ROWS@@ */
            nb__avx2_rows_register();
            /* @@REGISTER_AVX2_OPTIM@@ */
            nb__avx2_optim_register();
            nb__avx2_gemm_register();
            nb__avx2_winograd_register();
            nb__avx2_conv_small_register();
            nb__avx2_bnorm_register();
            nb__avx2_attention_register();
            nb__avx2_index_register();
            nb__avx2_pool_register();
            nb__avx2_interpolate_register();
        }
        if (nb_cpu()->avx512f && nb_cpu()->avx512bw && nb_cpu()->avx512dq && nb_cpu()->avx512vl) {
            nb__avx512_elementwise_register();   /* init.c's NB_ISA_AVX512 test; x86/avx512 only */
            nb__avx512_gemm_register();
            nb__avx512_rows_register();
            nb__avx512_norm_register();
            nb__avx512_reduce_register();
            nb__avx512_optim_register();
            nb__avx512_winograd_register();
            nb__avx512_conv_small_register();
            nb__avx2_attention_register512();   /* x86/avx2 code calling the AVX-512 GEMM */
        }
        /* @@REGISTER_ONEDNN_MORE@@ */
#if NB_HAVE_ONEDNN
        nb__onednn_pool_register();
        nb__onednn_norm_register();
#endif
    }
    choose();
    atomic_store(&built, true);
    pthread_mutex_unlock(&build_lock);
}

static inline void ready(void) {
    if (__builtin_expect(!atomic_load_explicit(&built, memory_order_acquire) ||
                             atomic_load_explicit(&built_gen, memory_order_acquire) != nb__cfg.generation,
                         0))
        build();
}

NB_API int nb_register_kernel(const nb_kernel_desc *k) {
    if (!k || !k->fn || !k->name)
        return nb__err(NB_ENULLARG, "nb_register_kernel: %s is NULL", !k ? "descriptor" : !k->fn ? "fn" : "name");
    if ((unsigned)k->op >= NB_OP_COUNT || (unsigned)k->dtype >= NB_DTYPE_COUNT || (unsigned)k->isa >= NB_ISA_COUNT)
        return nb__err(NB_EINVAL, "nb_register_kernel: op %d, dtype %d or isa %d out of range", (int)k->op,
                       (int)k->dtype, (int)k->isa);
    ready();
    int rc = nb__registry_add(k);
    if (!rc) choose();
    return rc;
}

int nb__isa_prefer = -1;

/* skip_ref: nb__dispatch_fast's rule (the ref kernels left out, and a
 * silent decline when nothing else serves). */
static int dispatch(nb_kernel_args *a, const char *who, bool skip_ref) {
    ready();
    nb_dtype dt = a->nin > 0 ? a->in[0]->dtype : a->out->dtype;
    slot *s = &table[a->op][dt];
    NB_PROF_KERNEL_BEGIN();
    if (s->first >= 0) {
        int prefer = nb__isa_prefer;
        /* pass 0: the preferred ISA's kernels (tests and benchmarks); pass 1: all others */
        for (int pass = prefer >= 0 ? 0 : 1; pass < 2; pass++) {
            for (int i = s->first; i < s->n; i++) {
                const nb_kernel_desc *k = &s->k[i];
                if (k->isa > nb__cfg.isa_cap || (prefer >= 0 && (k->isa == (nb_isa)prefer) != (pass == 0))) continue;
                if (skip_ref && k->isa == NB_ISA_REF) continue;
                int rc = k->fn(a);
                if (rc == NB_KERNEL_DECLINE) continue;
                last_kernel = k->name;
                NB_PROF_KERNEL_END(a, last_kernel, who);
                if (rc < 0 && nb_last_error_code() != rc)
                    nb__err(rc, "%s: kernel %s failed: %s", who, k->name, nb_strerror(rc));
                return rc < 0 ? rc : 0;
            }
        }
    }
    NB_PROF_KERNEL_END(a, NULL, who);
    if (skip_ref) return NB_KERNEL_DECLINE;
    return nb__err(NB_ENOKERNEL, "%s: no kernel for op %s and dtype %s", who, op_names[a->op], nb_dtype_name(dt));
}

int nb__dispatch(nb_kernel_args *a, const char *who) { return dispatch(a, who, false); }

int nb__dispatch_fast(nb_kernel_args *a, const char *who) { return dispatch(a, who, nb__cfg.isa_cap != NB_ISA_REF); }

const char *nb__last_kernel(void) { return last_kernel; }

int nb__omp_team = 3;
int nb__ln_late = 1;
int nb__gemm_grid = 1;
long nb__gemm_grid_calls;

int nb__par_team(int nt) {
#if NB_HAVE_OPENMP
    if (nt <= 1 || !(nb__omp_team & 1)) return nt < 1 ? 1 : nt;
    int max = omp_get_max_threads();
    return max > nt ? max : nt;
#else
    (void)nt;
    return 1;
#endif
}

int nb__par_threads(int64_t work, int64_t grain) {
#if NB_HAVE_OPENMP
    if (work < 2 * grain) return 1;
    int max = omp_get_max_threads();
    int64_t n = work / (grain > 0 ? grain : 1);
    return n < max ? (int)n : max;
#else
    (void)work;
    (void)grain;
    return 1;
#endif
}

NB_API const char *nb_kernel_chosen(nb_op op, nb_dtype dt) {
    if ((unsigned)op >= NB_OP_COUNT || (unsigned)dt >= NB_DTYPE_COUNT) return NULL;
    ready();
    slot *s = &table[op][dt];
    return s->first >= 0 ? s->k[s->first].name : NULL;
}

bool nb__registry_has(nb_op op, nb_dtype dt, const char *prefix) {
    if ((unsigned)op >= NB_OP_COUNT || (unsigned)dt >= NB_DTYPE_COUNT || !prefix) return false;
    ready();
    const slot *s = &table[op][dt];
    for (int i = 0; i < s->n; i++)
        if (s->k[i].isa <= nb__cfg.isa_cap && !strncmp(s->k[i].name, prefix, strlen(prefix))) return true;
    return false;
}

NB_API void nb_registry_dump(FILE *f) {
    ready();
    if (!f) f = stdout;
    fprintf(f, "op registry (isa cap: %s)\n", nb_isa_name(nb__cfg.isa_cap));
    /* views change only shape, strides and offset: they run no kernel */
    fprintf(f, "  views (no kernel): reshape view flatten squeeze unsqueeze transpose permute slice narrow "
               "expand split chunk detach\n");
    for (int o = 0; o < NB_OP_COUNT; o++)
        for (int d = 0; d < NB_DTYPE_COUNT; d++) {
            slot *s = &table[o][d];
            if (!s->n) continue;
            fprintf(f, "  %-12s %-5s -> %-20s", op_names[o], nb_dtype_name((nb_dtype)d),
                    s->first >= 0 ? s->k[s->first].name : "(none)");
            if (s->n > 1) {
                fprintf(f, "  [");
                for (int i = 0; i < s->n; i++)
                    fprintf(f, "%s%s:%s:p%d%s", i ? ", " : "", s->k[i].name, nb_isa_name(s->k[i].isa),
                            s->k[i].priority, s->k[i].isa > nb__cfg.isa_cap ? "(over cap)" : "");
                fprintf(f, "]");
            }
            fprintf(f, "\n");
        }
}
