/* topology.c — the machine as hwloc sees it (packages, NUMA nodes, cores,
 * caches) restricted to the process's affinity mask, and the binding of
 * pool workers to cores.
 *
 * NB_PIN=compact: worker i on the i-th core of the mask (logical order, so
 * neighbours share caches and the package); scatter: hwloc_distrib spreads
 * the workers over packages and NUMA nodes first (more memory bandwidth,
 * more L3); none: workers float. Slot 0 is the thread that calls nabla and
 * is never bound (it is the user's thread). A worker is bound to a whole
 * core (all its hardware threads).
 *
 * OpenMP threads inherit the binding of the thread that creates them; a
 * pinned worker never starts a team (its kernels run on it alone), and the
 * caller's thread, whose team the kernels share, is never bound.
 *
 * Memory: on a machine with several NUMA nodes a bound worker also binds its
 * memory policy to its node (hwloc_set_membind, per thread), so the pages it
 * touches first (its kernels' outputs, the gradients it makes) come from its
 * own node. Linux places pages at first touch anyway; the binding keeps that
 * true for a worker that migrates. Blocks recycled by the allocator's
 * size-class cache are not moved: on a multi-socket server a gradient made
 * on socket 0 and summed on socket 1 is read across the interconnect once.
 * Without hwloc, nothing is bound and the topology is just the core count.
 */
#include "runtime/pool.h"
#include "nb_config.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#if NB_HAVE_HWLOC
#include <hwloc.h>
#endif

static nb_topology_info info;        /* what nb_topology() returns */
static bool loaded;                   /* nb__topo_init ran */
#if NB_HAVE_HWLOC
static hwloc_topology_t topo;         /* NULL when hwloc failed */
static hwloc_bitmap_t mask;           /* the process's affinity mask at init */
static hwloc_obj_t *cores;            /* cores intersecting the mask, logical order */
static int ncores;
#endif

static int mask_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    return 1;
}

#if NB_HAVE_HWLOC
static int count_in_mask(hwloc_obj_type_t type) {
    int n = 0, all = hwloc_get_nbobjs_by_type(topo, type);
    for (int i = 0; i < all; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, type, i);
        if (o->cpuset && hwloc_bitmap_intersects(o->cpuset, mask)) n++;
    }
    return n;
}

static size_t cache_size(hwloc_obj_type_t type, int *count) {
    size_t sz = 0;
    int n = 0, all = hwloc_get_nbobjs_by_type(topo, type);
    for (int i = 0; i < all; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, type, i);
        if (!o->cpuset || !hwloc_bitmap_intersects(o->cpuset, mask)) continue;
        if (o->attr) sz = (size_t)o->attr->cache.size;
        n++;
    }
    if (count) *count = n;
    return sz;
}

static void load_hwloc(void) {
    if (hwloc_topology_init(&topo) || hwloc_topology_load(topo)) {
        if (topo) hwloc_topology_destroy(topo);
        topo = NULL;
        return;
    }
    mask = hwloc_bitmap_alloc();
    if (!mask || hwloc_get_cpubind(topo, mask, HWLOC_CPUBIND_THREAD) || hwloc_bitmap_iszero(mask))
        hwloc_bitmap_copy(mask, hwloc_topology_get_allowed_cpuset(topo));
    int all = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    cores = calloc(all > 0 ? (size_t)all : 1, sizeof *cores);
    for (int i = 0; cores && i < all; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, i);
        if (hwloc_bitmap_intersects(o->cpuset, mask)) cores[ncores++] = o;
    }
    info.packages = count_in_mask(HWLOC_OBJ_PACKAGE);
    info.numa_nodes = count_in_mask(HWLOC_OBJ_NUMANODE);
    if (!info.numa_nodes) {   /* NUMA nodes hang off the tree in hwloc 2: count by nodeset */
        hwloc_nodeset_t ns = hwloc_bitmap_alloc();
        hwloc_cpuset_to_nodeset(topo, mask, ns);
        info.numa_nodes = hwloc_bitmap_weight(ns);
        hwloc_bitmap_free(ns);
    }
    info.cores = ncores;
    info.pus = hwloc_bitmap_weight(mask);
    info.l1d_bytes = cache_size(HWLOC_OBJ_L1CACHE, NULL);
    info.l2_bytes = cache_size(HWLOC_OBJ_L2CACHE, NULL);
    info.l3_bytes = cache_size(HWLOC_OBJ_L3CACHE, &info.l3_count);
}
#endif

void nb__topo_init(void) {
    if (loaded) return;
    loaded = true;
#if NB_HAVE_HWLOC
    load_hwloc();
#endif
    if (info.pus <= 0) info.pus = mask_cpus();
    if (info.cores <= 0) info.cores = info.pus;
    if (info.packages <= 0) info.packages = 1;
    if (info.numa_nodes <= 0) info.numa_nodes = 1;
}

void nb__topo_free(void) {
#if NB_HAVE_HWLOC
    if (topo) hwloc_topology_destroy(topo);
    hwloc_bitmap_free(mask);
    free(cores);
    topo = NULL;
    mask = NULL;
    cores = NULL;
    ncores = 0;
#endif
    memset(&info, 0, sizeof info);
    loaded = false;
}

int nb__topo_cores(void) {
    nb__topo_init();
    return info.cores;
}

NB_API nb_topology_info nb_topology(void) {
    nb__ensure_init();
    nb__topo_init();
    return info;
}

void nb__topo_print(FILE *f) {
    nb__topo_init();
    fprintf(f, "topology: %d package(s), %d NUMA node(s), %d core(s), %d hardware thread(s) in the affinity mask\n",
            info.packages, info.numa_nodes, info.cores, info.pus);
    if (info.l1d_bytes || info.l2_bytes || info.l3_bytes)
        fprintf(f, "caches: L1d %zu KiB, L2 %zu KiB, L3 %zu KiB x %d\n", info.l1d_bytes >> 10, info.l2_bytes >> 10,
                info.l3_bytes >> 10, info.l3_count);
}

#if NB_HAVE_HWLOC
/* The cpuset slot `slot` of `nslots` gets (borrowed or into `out`). */
static hwloc_const_bitmap_t slot_set(nb__pin mode, int slot, int nslots, hwloc_bitmap_t out) {
    if (!topo || ncores == 0 || mode == NB__PIN_NONE) return NULL;
    if (mode == NB__PIN_COMPACT) return cores[slot % ncores]->cpuset;
    /* scatter: distribute nslots over the cores of the mask, spread at the top levels first */
    hwloc_bitmap_t *sets = calloc((size_t)nslots, sizeof *sets);
    if (!sets) return NULL;
    for (int i = 0; i < nslots; i++) sets[i] = hwloc_bitmap_alloc();
    hwloc_obj_t root = hwloc_get_root_obj(topo);
    hwloc_distrib(topo, &root, 1, sets, (unsigned)nslots, INT_MAX, 0);
    hwloc_bitmap_and(out, sets[slot], mask);
    for (int i = 0; i < nslots; i++) hwloc_bitmap_free(sets[i]);
    free(sets);
    if (hwloc_bitmap_iszero(out)) return NULL;
    /* a whole core: widen the distributed PU to its core */
    hwloc_obj_t c = hwloc_get_next_obj_covering_cpuset_by_type(topo, out, HWLOC_OBJ_CORE, NULL);
    if (c) hwloc_bitmap_copy(out, c->cpuset);
    return out;
}
#endif

int nb__topo_bind(nb__pin mode, int slot, int nslots) {
    nb__topo_init();
#if NB_HAVE_HWLOC
    if (slot <= 0) return -1;
    if (mode == NB__PIN_NONE) {   /* unpinned: free a thread bound before (OpenMP team threads outlive re-inits) */
        if (topo && mask) {
            (void)hwloc_set_cpubind(topo, mask, HWLOC_CPUBIND_THREAD);
            if (info.numa_nodes > 1)   /* and its memory policy: back to the default (first touch) */
                (void)hwloc_set_membind(topo, mask, HWLOC_MEMBIND_DEFAULT, HWLOC_MEMBIND_THREAD);
        }
        return -1;
    }
    hwloc_bitmap_t tmp = hwloc_bitmap_alloc();
    hwloc_const_bitmap_t set = tmp ? slot_set(mode, slot, nslots, tmp) : NULL;
    int core = -1;
    if (set && hwloc_set_cpubind(topo, set, HWLOC_CPUBIND_THREAD) == 0) {
        core = hwloc_bitmap_first(set);
        if (info.numa_nodes > 1)   /* see the top of the file: memory from this core's node */
            hwloc_set_membind(topo, set, HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_THREAD);
    }
    hwloc_bitmap_free(tmp);
    return core;
#else
    (void)mode;
    (void)slot;
    (void)nslots;
    return -1;
#endif
}
