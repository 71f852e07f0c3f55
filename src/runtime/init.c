/* init.c — nb_init / nb_shutdown, settings from the environment, and
 * nb_runtime_info.
 *
 * Settings: NB_NUM_THREADS (default: cores in the process's affinity mask),
 * NB_ISA=ref|avx2|avx512 (caps the kernels; never above what the CPU and OS
 * support), NB_ISA_PREFER=avx2|avx512 (testing: that ISA's kernels are
 * tried before all others, even where the registry ranks them lower, so
 * the suite can run every AVX-512 kernel; see kernels.h), NB_ABORT_ON_ERROR=1. The registry notices a new ISA cap through
 * nb__cfg.generation and rebuilds its choice on the next dispatch.
 */
#include "runtime/runtime.h"
#include "runtime/pool.h"   /* nb__topo_cores */
#include "nb_config.h"

#if NB_HAVE_OPENMP
#include <omp.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <strings.h>

nb__settings nb__cfg;
static nb_cpu_features cpu;
static const char *const isa_names[NB_ISA_COUNT] = {"ref", "avx2", "avx512"};

NB_API const char *nb_isa_name(nb_isa isa) { return (unsigned)isa < NB_ISA_COUNT ? isa_names[isa] : "?"; }

/* The nb_isa named s (any case), or -1. */
static int isa_of_name(const char *s) {
    for (int i = 0; s && i < NB_ISA_COUNT; i++)
        if (!strcasecmp(s, isa_names[i])) return i;
    return -1;
}

static nb_isa best_isa(const nb_cpu_features *f) {
    if (f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl) return NB_ISA_AVX512;
    if (f->avx2_fma) return NB_ISA_AVX2;
    return NB_ISA_REF;
}

/* The default thread count: the physical cores in the process's affinity
 * mask (hwloc; a core counts when any of its hardware threads is in the
 * mask), as PyTorch's default. Hardware threads of one core share its FMA
 * units, so a second thread per core adds no FLOPs to our kernels, and the
 * pool pins threads to whole cores only while there are no more threads
 * than cores (pool.c, read_pin). Without hwloc: the CPUs in the mask. */
static int affinity_cores(void) {
    int n = nb__topo_cores();
    return n > 0 ? n : 1;
}

/* The pool's variables (read in runtime/pool.c): the values each takes,
 * for nb_init's message; the first is the default. */
static const struct env_choice {
    const char *name, *expected;
    const char *const choices[4];
} pool_env[] = {
    {"NB_BACKWARD", "serial, parallel or force; parallel used", {"parallel", "serial", "force", NULL}},
    {"NB_PIN", "compact, scatter or none; compact used", {"compact", "scatter", "none", NULL}},
    {"NB_POOL", "team or threads; team used", {"team", "threads", NULL}},
};

/* The first of pool_env set to a value it does not take, or NULL. */
static const struct env_choice *pool_env_unknown(void) {
    for (size_t v = 0; v < sizeof pool_env / sizeof pool_env[0]; v++) {
        const char *e = getenv(pool_env[v].name);
        if (!e || !*e) continue;
        const char *const *c = pool_env[v].choices;
        while (*c && strcasecmp(e, *c)) c++;
        if (!*c) return &pool_env[v];
    }
    return NULL;
}

NB_API int nb_init(const nb_init_opts *opts) {
    nb__cpu_detect(&cpu);
    nb_isa cap = best_isa(&cpu);
    const char *isa = opts && opts->isa ? opts->isa : getenv("NB_ISA");
    int rc = 0;
    if (isa && *isa) {
        int want = isa_of_name(isa);
        if (want < 0) rc = NB_EINVAL;
        else if ((nb_isa)want < cap) cap = (nb_isa)want;
    }
    int thr = opts && opts->num_threads > 0 ? opts->num_threads : 0;
    const char *e = getenv("NB_NUM_THREADS");
    if (!thr && e && atoi(e) > 0) thr = atoi(e);
    if (!thr) thr = affinity_cores();
    int ab = opts && opts->abort_on_error >= 0 ? opts->abort_on_error : -1;
    if (ab < 0) {
        e = getenv("NB_ABORT_ON_ERROR");
        ab = e && *e && strcmp(e, "0") != 0;
    }
    nb__cfg.num_threads = thr;
#if NB_HAVE_OPENMP
    omp_set_num_threads(thr);   /* kernels' parallel regions, oneDNN's included */
#endif
    nb__cfg.isa_cap = cap;
    extern int nb__isa_prefer;   /* kernels/kernels.h */
    nb__isa_prefer = isa_of_name(getenv("NB_ISA_PREFER"));
    extern int nb__omp_team;   /* kernels/kernels.h */
    e = getenv("NB_OMP_TEAM");
    nb__omp_team = e && *e ? atoi(e) : 3;
    extern int nb__gemm_grid;   /* kernels/kernels.h; NB_GEMM_GRID=0: A/B on many-core machines */
    e = getenv("NB_GEMM_GRID");
    nb__gemm_grid = e && *e ? atoi(e) : 1;
    nb__cfg.abort_on_error = ab;
    nb__cfg.generation++;
    nb__cfg.initialised = true;
    /* @@INIT_POOL@@ */
    void nb__pool_settings(void);   /* runtime/pool.h */
    int nb__pool_init(int threads);
    nb__pool_settings();   /* NB_BACKWARD */
    nb__pool_init(thr);    /* NB_PIN; a thread that fails to start leaves a smaller pool (error recorded) */
    /* @@INIT_PROFILE@@ */
    void nb__profiler_env_init(void);   /* runtime/profile.h */
    nb__profiler_env_init();            /* NB_PROFILE=table,trace:PATH */
    if (rc) return nb__err(rc, "nb_init: unknown ISA '%s' (expected ref, avx2 or avx512)", isa);
    /* the pool's settings: an unknown value is reported, and the default used
     * (as for NB_ISA: the runtime still starts) */
    const struct env_choice *bad = pool_env_unknown();
    if (bad) return nb__err(NB_EINVAL, "nb_init: %s='%s' (expected %s)", bad->name, getenv(bad->name), bad->expected);
    return 0;
}

NB_API void nb_shutdown(void) {
    /* the pool first: its workers record events (an idle wait) into the
     * profiler's per-thread buffers until they exit, so those may only be
     * freed after (ThreadSanitizer caught the reverse order: a worker's
     * event written into a buffer nb__profiler_shutdown had freed) */
    /* @@SHUTDOWN_POOL@@ */
    void nb__pool_shutdown(void);   /* runtime/pool.h */
    nb__pool_shutdown();
    /* @@SHUTDOWN_PROFILE@@ */
    void nb__profiler_shutdown(void);   /* runtime/profile.h */
    nb__profiler_shutdown();            /* NB_PROFILE report; frees the event buffers */
    nb__alloc_trim();
    nb__cfg.initialised = false;
}

NB_API const nb_cpu_features *nb_cpu(void) {
    nb__ensure_init();
    return &cpu;
}
NB_API nb_isa nb_isa_active(void) {
    nb__ensure_init();
    return nb__cfg.isa_cap;
}
NB_API int nb_num_threads(void) {
    nb__ensure_init();
    return nb__cfg.num_threads;
}

NB_API void nb_runtime_info(FILE *f) {
    nb__ensure_init();
    if (!f) f = stdout;
    fprintf(f, "nabla %s\n", NB_VERSION);
    fprintf(f, "cpu: %s (%s)\n", cpu.brand[0] ? cpu.brand : "unknown", cpu.vendor);
    fprintf(f, "features: avx2+fma=%d avx512f=%d avx512bw=%d avx512dq=%d avx512vl=%d avx512_bf16=%d vnni=%d\n",
            cpu.avx2_fma, cpu.avx512f, cpu.avx512bw, cpu.avx512dq, cpu.avx512vl, cpu.avx512_bf16,
            cpu.avx512_vnni);
    fprintf(f, "threads: %d\n", nb__cfg.num_threads);
    fprintf(f, "isa: %s (cpu best: %s)\n", isa_names[nb__cfg.isa_cap], isa_names[best_isa(&cpu)]);
    fprintf(f, "openmp: %s, hwloc: %s, onednn: %s\n", NB_HAVE_OPENMP ? "yes" : "no", NB_HAVE_HWLOC ? "yes" : "no",
            NB_HAVE_ONEDNN ? "yes" : "no");
    /* @@INFO_POOL@@ */
    void nb__pool_info(FILE *);   /* runtime/pool.h */
    nb__pool_info(f);
}
