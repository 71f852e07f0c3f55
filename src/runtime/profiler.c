/* profiler.c — the per-op profiler: event recording per thread, the schedule,
 * the table (key averages) and the Chrome trace.
 *
 * Recording: each thread owns a buffer (chunks of events, a stack of open
 * frames, interned strings). An event is written once, when it ends, with
 * its self time (its time minus the time of the frames that closed inside
 * it), then published by a release store of the thread's event count, so a
 * report reads each buffer up to its count without a lock. Buffers live on
 * one global list until nb_shutdown; a new profile (session) makes each
 * thread reset its own buffer on its next event, so nothing writes into
 * another thread's buffer. Reports are meant for when no op runs on another
 * thread (after nb_profiler_stop, or between steps).
 *
 * Links: a forward op records its backward node right after its kernel ran;
 * NB_PROF_RECORD stamps the node's sequence number on that kernel event (or,
 * for an op without a kernel of its own, e.g. a view, on a zero-length
 * "mark" event), and the trace draws a flow arrow from it to the node.
 */
#include "runtime/runtime.h"
#include "runtime/profile.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 4096                       /* events per chunk */
#define MAX_DEPTH 64                     /* open frames per thread */
#define MAX_EVENTS ((size_t)4 << 20)     /* per thread and profile; beyond: dropped */

typedef struct pev {
    uint64_t t0, t1;       /* ns, CLOCK_MONOTONIC (MEM: t1 = t0) */
    uint64_t self;         /* ns: t1 - t0 minus nested events */
    const char *name;      /* op, node, range name; MARK: the forward op */
    const char *kernel;    /* KERNEL: the kernel that served it */
    const char *fwd;       /* KERNEL: the public function that dispatched it; NODE: its forward op */
    const char *shapes;    /* KERNEL: interned "dtype [shape], ..." or NULL */
    double flops, bytes;   /* KERNEL: cost; MEM: bytes = signed size */
    uint64_t seq;          /* NODE/MARK: node seq; KERNEL: seq of the node its op recorded (0: none) */
    uint8_t kind;          /* nb__prof_kind */
    uint8_t depth;         /* open frames around it on its thread */
} pev;

typedef struct chunk {
    struct chunk *next;    /* next chunk (kept across profiles for reuse) */
    pev ev[CHUNK];         /* events */
} chunk;

typedef struct frame {
    uint64_t t0;           /* begin */
    uint64_t child;        /* ns spent in frames closed inside this one */
    const char *name;      /* name given at begin */
    const char *fwd;       /* NODE: forward op */
    uint64_t seq;          /* NODE: node seq; STEP: step number */
    uint8_t kind;          /* nb__prof_kind */
} frame;

typedef struct tbuf {
    struct tbuf *next;        /* all buffers (global list) */
    unsigned session;         /* profile its events belong to */
    int lane;                 /* tid in the trace (1, 2, ...) */
    long os_tid;              /* kernel thread id */
    char tname[32];           /* pthread name */
    chunk *head, *cur;        /* first chunk, chunk being filled */
    size_t cur_n;             /* events in cur */
    atomic_size_t count;      /* events published */
    uint64_t dropped;         /* events lost to MAX_EVENTS */
    frame stack[MAX_DEPTH];   /* open frames */
    int depth;                /* frames in stack */
    int lost;                 /* begins beyond MAX_DEPTH not yet ended */
    pev *last_kernel;         /* last kernel event not yet linked to a node */
    char **strs;              /* interned strings (open addressing) */
    size_t nstr, capstr;      /* used, slots */
} tbuf;

atomic_bool nb__prof_on;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   /* the buffer list and the session state */
static tbuf *bufs;                 /* all thread buffers, newest first */
static int nlanes;                 /* lanes handed out */
static atomic_uint session;        /* bumped by each start */
/* ready-queue latency of the parallel executor's nodes (reset by start) */
static atomic_uint_least64_t q_nodes, q_ns, q_max;

void nb__prof_queued(uint64_t ns) {
    atomic_fetch_add_explicit(&q_nodes, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&q_ns, ns, memory_order_relaxed);
    uint64_t m = atomic_load_explicit(&q_max, memory_order_relaxed);
    while (ns > m && !atomic_compare_exchange_weak_explicit(&q_max, &m, ns, memory_order_relaxed,
                                                            memory_order_relaxed)) {
    }
}
static atomic_uint buf_gen;        /* bumped when buffers are freed (shutdown) */
static _Thread_local tbuf *my;     /* this thread's buffer */
static _Thread_local unsigned my_gen;   /* buf_gen when `my` was made */

static struct {
    bool started;              /* between start and stop */
    nb_profiler_opts opts;     /* as given */
    uint64_t origin;           /* ns at start: time zero of the trace */
    uint64_t win0, win1;       /* recording window (win1 0 while open) */
    int seen;                  /* nb_profiler_step calls since start */
    int recorded;              /* steps recorded */
    bool step_open;            /* a STEP frame is open on the stepping thread */
    int64_t start_bytes;       /* live bytes when recording began */
} P;

static struct {
    bool active;               /* NB_PROFILE started the profile */
    bool table, shapes;        /* print the table (grouped by shape) at shutdown */
    char *trace;               /* write the trace here at shutdown */
} env;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- thread buffers ---- */
static void tbuf_free(tbuf *t) {
    for (chunk *c = t->head; c;) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    for (size_t i = 0; i < t->capstr; i++) free(t->strs[i]);
    free(t->strs);
    free(t);
}

static tbuf *get_tb(void) {
    tbuf *t = my;
    if (!t || my_gen != atomic_load_explicit(&buf_gen, memory_order_acquire)) {
        t = calloc(1, sizeof *t);
        if (!t) return NULL;
        t->os_tid = (long)syscall(SYS_gettid);
        if (t->os_tid == (long)getpid()) snprintf(t->tname, sizeof t->tname, "main");
        else if (pthread_getname_np(pthread_self(), t->tname, sizeof t->tname)) t->tname[0] = 0;
        t->session = ~0u;
        pthread_mutex_lock(&lock);
        t->lane = ++nlanes;
        t->next = bufs;
        bufs = t;
        pthread_mutex_unlock(&lock);
        my = t;
        my_gen = atomic_load(&buf_gen);
    }
    unsigned s = atomic_load_explicit(&session, memory_order_acquire);
    if (t->session != s) {   /* a new profile: start this buffer over */
        t->session = s;
        t->cur = t->head;
        t->cur_n = 0;
        atomic_store_explicit(&t->count, 0, memory_order_release);
        t->dropped = 0;
        t->depth = t->lost = 0;
        t->last_kernel = NULL;
    }
    return t;
}

/* A slot for the next event; the caller fills it and calls publish(). */
static pev *slot(tbuf *t) {
    size_t n = atomic_load_explicit(&t->count, memory_order_relaxed);
    if (n >= MAX_EVENTS) {
        t->dropped++;
        return NULL;
    }
    if (!t->cur || t->cur_n == CHUNK) {
        chunk *c = t->cur ? t->cur->next : t->head;
        if (!c) {
            c = malloc(sizeof *c);
            if (!c) {
                t->dropped++;
                return NULL;
            }
            c->next = NULL;
            if (t->cur) t->cur->next = c;
            else t->head = c;
        }
        t->cur = c;
        t->cur_n = 0;
    }
    pev *e = &t->cur->ev[t->cur_n];
    memset(e, 0, sizeof *e);
    return e;
}

static void publish(tbuf *t) {
    t->cur_n++;
    atomic_store_explicit(&t->count, atomic_load_explicit(&t->count, memory_order_relaxed) + 1,
                          memory_order_release);
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* One copy per distinct string per thread, kept until nb_shutdown. */
static const char *intern(tbuf *t, const char *s) {
    if (2 * (t->nstr + 1) > t->capstr) {
        size_t nc = t->capstr ? 2 * t->capstr : 64;
        char **ns = calloc(nc, sizeof *ns);
        if (!ns) return NULL;
        for (size_t i = 0; i < t->capstr; i++) {
            if (!t->strs[i]) continue;
            size_t j = hash_str(t->strs[i]) & (nc - 1);
            while (ns[j]) j = (j + 1) & (nc - 1);
            ns[j] = t->strs[i];
        }
        free(t->strs);
        t->strs = ns;
        t->capstr = nc;
    }
    size_t j = hash_str(s) & (t->capstr - 1);
    for (; t->strs[j]; j = (j + 1) & (t->capstr - 1))
        if (!strcmp(t->strs[j], s)) return t->strs[j];
    t->strs[j] = strdup(s);
    if (t->strs[j]) t->nstr++;
    return t->strs[j];
}

/* ---- begin / end ---- */
static void begin_on(tbuf *t, nb__prof_kind kind, const char *name, const char *fwd, uint64_t seq) {
    if (t->depth >= MAX_DEPTH) {
        t->lost++;
        return;
    }
    frame *f = &t->stack[t->depth++];
    f->kind = (uint8_t)kind;
    f->name = name;
    f->fwd = fwd;
    f->seq = seq;
    f->child = 0;
    f->t0 = now_ns();
}

void nb__prof_begin(nb__prof_kind kind, const char *name, uint64_t seq) {
    tbuf *t = get_tb();
    if (t) begin_on(t, kind, name, NULL, seq);
}

void nb__prof_node_begin(const char *name, const char *fwd_op, uint64_t seq) {
    tbuf *t = get_tb();
    if (t) begin_on(t, NB__PROF_NODE, name, fwd_op, seq);
}

/* Closes the top frame if it is of this kind (and node); returns its event
 * slot, filled but not published, or NULL (unmatched, or dropped). */
static pev *end_on(tbuf *t, nb__prof_kind kind, uint64_t seq, bool keep) {
    uint64_t t1 = now_ns();
    if (t->lost) {
        t->lost--;
        return NULL;
    }
    if (!t->depth) return NULL;
    frame *f = &t->stack[t->depth - 1];
    if (f->kind != kind || (kind == NB__PROF_NODE && f->seq != seq)) return NULL;
    t->depth--;
    uint64_t dur = t1 - f->t0;
    if (!keep) return NULL;
    if (t->depth) t->stack[t->depth - 1].child += dur;
    pev *e = slot(t);
    if (!e) return NULL;
    e->t0 = f->t0;
    e->t1 = t1;
    e->self = dur > f->child ? dur - f->child : 0;
    e->name = f->name;
    e->fwd = f->fwd;
    e->seq = f->seq;
    e->kind = (uint8_t)kind;
    e->depth = (uint8_t)t->depth;
    return e;
}

void nb__prof_end(nb__prof_kind kind, uint64_t seq) {
    tbuf *t = get_tb();
    if (t && end_on(t, kind, seq, true)) publish(t);
}

/* Distinct elements of t (broadcast dims count once) and their bytes. */
static double distinct(const nb_tensor *t) {
    double n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->stride[i] != 0) n *= (double)t->shape[i];
    return n;
}

/* FLOPs per the conventions in docs/profiler.md; bytes: every input's and
 * the output's distinct elements, read or written once. */
static void cost(const nb_kernel_args *a, double *flops, double *bytes) {
    const nb_tensor *o = a->out, *x = a->nin > 0 ? a->in[0] : NULL, *w = a->nin > 1 ? a->in[1] : NULL;
    double b = o ? distinct(o) * (double)nb_dtype_size(o->dtype) : 0;
    for (int i = 0; i < a->nin && i < NB_KERNEL_MAX_INPUTS; i++)
        if (a->in[i]) b += distinct(a->in[i]) * (double)nb_dtype_size(a->in[i]->dtype);
    *bytes = b;
    double no = o ? (double)o->numel : 0, nx = x ? (double)x->numel : 0, f = 0;
    switch (a->op) {
    case NB_OP_MATMUL:   /* (..., M, K) @ (..., K, N): 2·M·N·K per batch */
        if (x && x->ndim) f = 2 * no * (double)x->shape[x->ndim - 1];
        break;
    case NB_OP_LINEAR:   /* x (*, K), w (N, K), b (N) */
        if (w && w->ndim == 2) f = 2 * no * (double)w->shape[1] + (a->nin > 2 && a->in[2] ? no : 0);
        break;
    case NB_OP_CONV1D:
    case NB_OP_CONV2D:   /* each output sums Ci/groups·kH·kW products */
        if (w && w->ndim && w->shape[0]) f = 2 * no * (double)w->numel / (double)w->shape[0];
        if (a->nin > 2 && a->in[2]) f += no;
        break;
    case NB_OP_CONV_TRANSPOSE2D:
    case NB_OP_CONV_BWD_DATA:   /* each input element scatters to numel(w)/w[0] outputs */
        if (w && w->ndim && w->shape[0]) f = 2 * nx * (double)w->numel / (double)w->shape[0];
        break;
    case NB_OP_CONV_BWD_WEIGHT:   /* dw (Co, ...) <- x, gy */
        if (w && o && o->ndim && o->shape[0]) f = 2 * (double)w->numel * no / (double)o->shape[0];
        break;
    case NB_OP_CONV_BWD_WEIGHT_BIAS:   /* (Co, Ci/g kH kW + 1) <- x, gy: the weight gradient's, + the bias sums */
        if (w && o && o->ndim == 2) f = 2 * (double)w->numel * (double)(o->shape[1] - 1) + (double)w->numel;
        break;
    case NB_OP_SDPA:   /* q (..., L, E), k (..., S, E) -> out (..., L, Ev) */
        if (x && w && w->ndim >= 2) f = 2 * (nx + no) * (double)w->shape[w->ndim - 2];
        break;
#define NB__CASE(e, name, nin) case NB_OP_##e:
    case NB_OP_ADD: case NB_OP_SUB: case NB_OP_MUL: case NB_OP_DIV: case NB_OP_POW: case NB_OP_NEG:
    case NB_OP_EXP: case NB_OP_LOG: case NB_OP_TANH: case NB_OP_ADD_SCALAR: case NB_OP_MUL_SCALAR:
    case NB_OP_POW_SCALAR: case NB_OP_DROPOUT: case NB_OP_CONV_BWD_BIAS: case NB_OP_NLL_LOSS:
    NB_OP_LIST_ELEMENTWISE(NB__CASE)
        f = no > nx ? no : nx;
        break;
    case NB_OP_SUM: NB_OP_LIST_REDUCE(NB__CASE)
        f = no > nx ? no : nx;
        break;
#undef NB__CASE
    case NB_OP_SOFTMAX: case NB_OP_LOG_SOFTMAX: case NB_OP_CROSS_ENTROPY: case NB_OP_BCE_WITH_LOGITS:
        f = 5 * nx;   /* max, subtract, exp, sum, divide/log */
        break;
    case NB_OP_SOFTMAX_BACKWARD: case NB_OP_LOG_SOFTMAX_BACKWARD: case NB_OP_CROSS_ENTROPY_BACKWARD:
    case NB_OP_BCE_WITH_LOGITS_BACKWARD: case NB_OP_MSE_LOSS: case NB_OP_L1_LOSS: case NB_OP_SMOOTH_L1_LOSS:
        f = 3 * (no > nx ? no : nx);
        break;
    case NB_OP_L1_LOSS_BACKWARD: case NB_OP_SMOOTH_L1_LOSS_BACKWARD: case NB_OP_NLL_LOSS_BACKWARD:
        f = 2 * no;
        break;
    case NB_OP_BATCH_NORM_STATS:
        f = 3 * nx;
        break;
    case NB_OP_BATCH_NORM: case NB_OP_LAYER_NORM: case NB_OP_GROUP_NORM: case NB_OP_RMS_NORM:
        f = 7 * nx;   /* mean, centred square, normalize (2), affine (2), ~1 for the sums */
        break;
    case NB_OP_BATCH_NORM_BACKWARD: case NB_OP_LAYER_NORM_BACKWARD: case NB_OP_GROUP_NORM_BACKWARD:
    case NB_OP_RMS_NORM_BACKWARD:
        f = 14 * no;
        break;
    case NB_OP_SGD_STEP:
        f = 6 * no;   /* weight decay, momentum, dampening, nesterov, lr */
        break;
    case NB_OP_ADAM_STEP:
        f = 14 * no;
        break;
    default:   /* copies, fills, indexing, pooling, interpolation: bytes only */
        break;
    }
    *flops = f;
}

/* Appends s, or the decimal v, to p (< end); returns the new end. */
static char *put_str(char *p, char *end, const char *s) {
    while (*s && p < end) *p++ = *s++;
    return p;
}
static char *put_int(char *p, char *end, int64_t v) {
    char d[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do d[n++] = (char)('0' + u % 10); while (u /= 10);
    if (v < 0 && p < end) *p++ = '-';
    while (n && p < end) *p++ = d[--n];
    return p;
}
static char *put_dims(char *p, char *end, const nb_tensor *t) {
    p = put_str(p, end, "[");
    for (int i = 0; i < t->ndim; i++) {
        if (i) p = put_str(p, end, ",");
        p = put_int(p, end, t->shape[i]);
    }
    return put_str(p, end, "]");
}

/* "f32 [64,784], [512,784], [512]" (inputs; "-> [out]" when there are none). */
static const char *shapes_of(tbuf *t, const nb_kernel_args *a) {
    char buf[512], *p = buf, *end = buf + sizeof buf - 1;
    const nb_tensor *d = a->nin > 0 && a->in[0] ? a->in[0] : a->out;
    if (!d) return NULL;
    p = put_str(put_str(p, end, nb_dtype_name(d->dtype)), end, " ");
    if (a->nin == 0 && a->out) p = put_dims(put_str(p, end, "-> "), end, a->out);
    for (int i = 0; i < a->nin && i < NB_KERNEL_MAX_INPUTS; i++) {
        if (i) p = put_str(p, end, ", ");
        p = a->in[i] ? put_dims(p, end, a->in[i]) : put_str(p, end, "None");
    }
    *p = 0;
    return intern(t, buf);
}

void nb__prof_kernel_end(const nb_kernel_args *a, const char *kernel, const char *who) {
    tbuf *t = get_tb();
    if (!t) return;
    pev *e = end_on(t, NB__PROF_KERNEL, 0, kernel != NULL);
    if (!e) return;
    e->name = nb_op_name(a->op);
    e->kernel = kernel;
    e->fwd = who;
    cost(a, &e->flops, &e->bytes);
    if (P.opts.record_shapes) e->shapes = shapes_of(t, a);
    publish(t);
    t->last_kernel = e;
}

/* A forward op recorded node `seq`: the link goes on the op's own kernel,
 * the last one this thread ran at this depth when it was dispatched by the
 * same public function, else on a zero-length mark. */
void nb__prof_record(const char *fwd_op, uint64_t seq) {
    tbuf *t = get_tb();
    if (!t) return;
    pev *k = t->last_kernel;
    t->last_kernel = NULL;
    if (k && !k->seq && k->depth == t->depth && k->fwd && fwd_op && !strcmp(k->fwd, fwd_op)) {
        k->seq = seq;
        k->fwd = fwd_op;
        return;
    }
    pev *e = slot(t);   /* an op without a kernel of its own (a view): a zero-length mark */
    if (!e) return;
    e->t0 = e->t1 = now_ns();
    e->name = e->fwd = fwd_op;
    e->seq = seq;
    e->kind = NB__PROF_MARK;
    e->depth = (uint8_t)t->depth;
    publish(t);
}

void nb__prof_mem(int64_t delta) {
    if (!P.opts.profile_memory) return;
    tbuf *t = get_tb();
    pev *e = t ? slot(t) : NULL;
    if (!e) return;
    e->t0 = e->t1 = now_ns();
    e->bytes = (double)delta;
    e->kind = NB__PROF_MEM;
    e->depth = (uint8_t)t->depth;
    publish(t);
}

/* ---- public control ---- */
static void window_open(void) {
    P.win0 = now_ns();
    P.win1 = 0;
    P.start_bytes = (int64_t)nb_memory_stats().live_bytes;
    atomic_store(&nb__prof_on, true);
}

static void window_close(void) {
    if (!atomic_load(&nb__prof_on)) return;
    tbuf *t = get_tb();
    /* the calling thread's open steps and ranges end here */
    while (t && !t->lost && t->depth && (t->stack[t->depth - 1].kind == NB__PROF_STEP ||
                                         t->stack[t->depth - 1].kind == NB__PROF_RANGE)) {
        bool step = t->stack[t->depth - 1].kind == NB__PROF_STEP;   /* a step cut short is dropped */
        pev *e = end_on(t, (nb__prof_kind)t->stack[t->depth - 1].kind, 0, !step);
        if (e) publish(t);
    }
    P.step_open = false;
    atomic_store(&nb__prof_on, false);
    P.win1 = now_ns();
}

NB_API int nb_profiler_start(const nb_profiler_opts *opts) {
    nb__ensure_init();
    if (P.started)
        return nb__err(NB_ESTATE, "nb_profiler_start: the profiler is already running%s",
                       env.active ? " (started by NB_PROFILE)" : "");
    nb_profiler_opts o = opts ? *opts : (nb_profiler_opts){.record_shapes = true, .profile_memory = true};
    if (o.skip_steps < 0 || o.record_steps < 0)
        return nb__err(NB_EINVAL, "nb_profiler_start: skip_steps (%d) and record_steps (%d) must be >= 0",
                       o.skip_steps, o.record_steps);
    pthread_mutex_lock(&lock);
    memset(&P, 0, sizeof P);
    atomic_store(&q_nodes, 0);
    atomic_store(&q_ns, 0);
    atomic_store(&q_max, 0);
    P.opts = o;
    P.started = true;
    P.origin = now_ns();
    atomic_fetch_add_explicit(&session, 1, memory_order_acq_rel);
    pthread_mutex_unlock(&lock);
    if (o.skip_steps == 0) {
        window_open();
        if (o.record_steps > 0) {   /* a schedule: steps are events from the first one */
            nb__prof_begin(NB__PROF_STEP, "step", 0);
            P.step_open = true;
        }
    }
    return 0;
}

NB_API int nb_profiler_stop(void) {
    if (!P.started) return nb__err(NB_ESTATE, "nb_profiler_stop: the profiler is not running");
    window_close();
    P.started = false;
    return 0;
}

NB_API bool nb_profiler_enabled(void) { return atomic_load(&nb__prof_on); }

NB_API void nb_profiler_step(void) {
    if (!P.started) return;
    P.seen++;
    bool on = atomic_load(&nb__prof_on);
    if (on && P.step_open) {
        nb__prof_end(NB__PROF_STEP, 0);
        P.step_open = false;
        P.recorded++;
    }
    if (on && P.opts.record_steps > 0 && P.seen >= P.opts.skip_steps + P.opts.record_steps) {
        window_close();
        return;
    }
    if (!on && !P.win1 && P.seen == P.opts.skip_steps) window_open(), on = true;
    if (on) {
        nb__prof_begin(NB__PROF_STEP, "step", (uint64_t)P.seen);
        P.step_open = true;
    }
}

static _Thread_local int user_ranges;   /* open nb_profile_range_begin calls, recorded or not */

NB_API void nb_profile_range_begin(const char *name) {
    user_ranges++;
    if (!NB__PROF_ON()) return;
    tbuf *t = get_tb();
    if (!t) return;
    const char *n = intern(t, name ? name : "(null)");
    begin_on(t, NB__PROF_RANGE, n ? n : "range", NULL, 0);
}

NB_API int nb_profile_range_end(void) {
    if (!user_ranges) return nb__err(NB_ESTATE, "nb_profile_range_end: no range of this thread is open");
    user_ranges--;
    if (NB__PROF_ON()) nb__prof_end(NB__PROF_RANGE, 0);   /* ignored when its begin was not recorded */
    return 0;
}

/* ---- the environment: NB_PROFILE=table,trace:path.json,shapes,skip=N,steps=M ---- */
void nb__profiler_env_init(void) {
    const char *v = getenv("NB_PROFILE");
    if (!v || !*v || env.active || P.started) return;
    nb_profiler_opts o = {.record_shapes = true, .profile_memory = true};
    char *s = strdup(v), *save = NULL;
    if (!s) return;
    bool any = false;
    for (char *it = strtok_r(s, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        if (!strcmp(it, "table")) env.table = any = true;
        else if (!strcmp(it, "shapes")) env.shapes = env.table = any = true;
        else if (!strncmp(it, "trace:", 6) && it[6]) {
            free(env.trace);
            env.trace = strdup(it + 6);
            any = env.trace != NULL;
        } else if (!strncmp(it, "skip=", 5)) o.skip_steps = atoi(it + 5);
        else if (!strncmp(it, "steps=", 6)) o.record_steps = atoi(it + 6);
        else
            fprintf(stderr, "nabla: NB_PROFILE: unknown item '%s' (expected table, trace:PATH, shapes, "
                            "skip=N, steps=N)\n", it);
    }
    free(s);
    if (any && !nb_profiler_start(&o)) env.active = true;
}

int nb__profiler_report_env(void);   /* in the report part below */

void nb__profiler_shutdown(void) {
    if (env.active) {
        if (P.started) nb_profiler_stop();
        nb__profiler_report_env();
        env.active = env.table = env.shapes = false;
        free(env.trace);
        env.trace = NULL;
    }
    if (P.started) nb_profiler_stop();
    /* free every buffer; threads that still hold one see buf_gen move on */
    pthread_mutex_lock(&lock);
    atomic_fetch_add_explicit(&buf_gen, 1, memory_order_acq_rel);
    for (tbuf *t = bufs; t;) {
        tbuf *n = t->next;
        tbuf_free(t);
        t = n;
    }
    bufs = NULL;
    nlanes = 0;
    pthread_mutex_unlock(&lock);
    memset(&P, 0, sizeof P);
}


/* ---- reports: rows (key averages), summary, table, trace ---- */
/* Calls fn on every published event of the current profile. */
#define EACH_EVENT(t, e, ...)                                                                      \
    for (tbuf *t = bufs; t; t = t->next) {                                                        \
        if (t->session != atomic_load(&session)) continue;                                        \
        size_t n_ = atomic_load_explicit(&t->count, memory_order_acquire), i_ = 0;                \
        for (chunk *c_ = t->head; c_ && i_ < n_; c_ = c_->next)                                   \
            for (size_t k_ = 0; k_ < CHUNK && i_ < n_; k_++, i_++) {                              \
                const pev *e = &c_->ev[k_];                                                       \
                __VA_ARGS__                                                                       \
            }                                                                                     \
    }

static bool timed(int kind) { return kind != NB__PROF_MEM && kind != NB__PROF_MARK; }

static const char *kind_col(const pev *e) {
    static const char *const cols[NB__PROF_KIND_COUNT] = {"?", "backward", "range", "step", "executor",
                                                          "executor", "mark", "memory"};
    return e->kind == NB__PROF_KERNEL ? (e->kernel ? e->kernel : "?") : cols[e->kind];
}

static bool same(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

typedef struct rowset {
    nb_profiler_stat *r;   /* rows */
    size_t n, cap;         /* used, allocated */
    int *slots;            /* hash slots: row index + 1, 0 empty */
    size_t nslots;         /* power of two */
} rowset;

static nb_profiler_stat *row_for(rowset *s, const pev *e, bool by_shape) {
    const char *kernel = kind_col(e), *shapes = by_shape ? e->shapes : NULL;
    uint64_t h = hash_str(e->name ? e->name : "") * 31 + hash_str(kernel) + (shapes ? hash_str(shapes) : 7);
    if (2 * (s->n + 1) > s->nslots) {
        size_t ns = s->nslots ? 2 * s->nslots : 256;
        int *sl = calloc(ns, sizeof *sl);
        if (!sl) return NULL;
        free(s->slots);
        s->slots = sl;
        s->nslots = ns;
        for (size_t i = 0; i < s->n; i++) {   /* re-insert */
            const nb_profiler_stat *r = &s->r[i];
            uint64_t hh = hash_str(r->name) * 31 + hash_str(r->kernel) + (r->shapes ? hash_str(r->shapes) : 7);
            size_t j = hh & (ns - 1);
            while (sl[j]) j = (j + 1) & (ns - 1);
            sl[j] = (int)i + 1;
        }
    }
    size_t j = h & (s->nslots - 1);
    for (; s->slots[j]; j = (j + 1) & (s->nslots - 1)) {
        nb_profiler_stat *r = &s->r[s->slots[j] - 1];
        if (same(r->name, e->name) && same(r->kernel, kernel) && same(r->shapes, shapes)) return r;
    }
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        nb_profiler_stat *nr = realloc(s->r, nc * sizeof *nr);
        if (!nr) return NULL;
        s->r = nr;
        s->cap = nc;
    }
    nb_profiler_stat *r = &s->r[s->n++];
    memset(r, 0, sizeof *r);
    r->name = e->name ? e->name : "?";
    r->kernel = kernel;
    r->shapes = shapes;
    s->slots[j] = (int)s->n;
    return r;
}

static int by_self(const void *a, const void *b) {
    const nb_profiler_stat *x = a, *y = b;
    return x->self_ns < y->self_ns ? 1 : x->self_ns > y->self_ns ? -1 : strcmp(x->name, y->name);
}
static int by_total(const void *a, const void *b) {
    const nb_profiler_stat *x = a, *y = b;
    return x->total_ns < y->total_ns ? 1 : x->total_ns > y->total_ns ? -1 : by_self(a, b);
}
static int by_calls(const void *a, const void *b) {
    const nb_profiler_stat *x = a, *y = b;
    return x->calls < y->calls ? 1 : x->calls > y->calls ? -1 : by_self(a, b);
}
static int by_flops(const void *a, const void *b) {
    const nb_profiler_stat *x = a, *y = b;
    return x->flops < y->flops ? 1 : x->flops > y->flops ? -1 : by_self(a, b);
}
static int by_name(const void *a, const void *b) {
    const nb_profiler_stat *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->kernel, y->kernel);
}

/* The rows, sorted; *n set. Caller frees. Under the lock. */
static nb_profiler_stat *collect(bool by_shape, nb_profiler_sort sort, size_t *n, int *rc) {
    static int (*const cmp[NB_PROFILER_SORT_COUNT])(const void *, const void *) = {by_self, by_total, by_calls,
                                                                                   by_flops, by_name};
    rowset s = {0};
    *rc = 0;
    EACH_EVENT(t, e, {
        if (!timed(e->kind)) continue;
        nb_profiler_stat *r = row_for(&s, e, by_shape);
        if (!r) {
            *rc = NB_ENOMEM;
            continue;
        }
        r->calls++;
        r->self_ns += e->self;
        r->total_ns += e->t1 - e->t0;
        r->flops += e->flops;
        r->bytes += e->bytes;
    })
    free(s.slots);
    if (s.n) qsort(s.r, s.n, sizeof *s.r, cmp[sort]);
    *n = s.n;
    return s.r;
}

typedef struct memev {
    uint64_t t;      /* ns */
    int64_t d;       /* signed bytes */
} memev;

static int by_time(const void *a, const void *b) {
    const memev *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t;
}

/* The allocator's events of all threads in time order (caller frees). */
static memev *mem_events(size_t *n) {
    size_t cnt = 0, k = 0;
    EACH_EVENT(t, e, { cnt += e->kind == NB__PROF_MEM; })
    memev *m = cnt ? malloc(cnt * sizeof *m) : NULL;
    *n = 0;
    if (!m) return NULL;
    EACH_EVENT(t, e, {
        if (e->kind == NB__PROF_MEM && k < cnt) m[k++] = (memev){e->t0, (int64_t)e->bytes};
    })
    qsort(m, k, sizeof *m, by_time);
    *n = k;
    return m;
}

static void summarize(nb_profiler_summary *s) {
    memset(s, 0, sizeof *s);
    int lane = 0;
    for (tbuf *t = bufs; t; t = t->next)
        if (t->session == atomic_load(&session)) s->dropped += t->dropped;
    EACH_EVENT(t, e, {
        if (!timed(e->kind)) continue;
        if (t->lane != lane) s->threads++, lane = t->lane;   /* threads with timed events */
        s->events++;
        s->self_ns += e->self;
    })
    uint64_t end = P.win1 ? P.win1 : P.win0 ? now_ns() : 0;
    s->wall_ns = end - P.win0;
    s->steps = P.recorded;
    s->queued_nodes = atomic_load(&q_nodes);
    s->queue_ns = atomic_load(&q_ns);
    s->queue_max_ns = atomic_load(&q_max);
    s->start_bytes = s->peak_bytes = P.start_bytes;
    size_t n;
    memev *m = mem_events(&n);
    int64_t live = P.start_bytes;
    for (size_t i = 0; i < n; i++) {
        live += m[i].d;
        if (live > s->peak_bytes) s->peak_bytes = live;
        if (m[i].d >= 0) s->allocs++, s->alloc_bytes += (uint64_t)m[i].d;
        else s->frees++;
    }
    free(m);
}

NB_API int nb_profiler_summary_get(nb_profiler_summary *out) {
    if (!out) return nb__err(NB_ENULLARG, "nb_profiler_summary_get: argument 'out' is NULL");
    pthread_mutex_lock(&lock);
    summarize(out);
    pthread_mutex_unlock(&lock);
    return 0;
}

NB_API int nb_profiler_stats(const char *name, nb_profiler_stat *out) {
    if (!name || !out) return nb__err(NB_ENULLARG, "nb_profiler_stats: argument '%s' is NULL", name ? "out" : "name");
    memset(out, 0, sizeof *out);
    out->name = name;
    pthread_mutex_lock(&lock);
    EACH_EVENT(t, e, {
        if (!timed(e->kind) || !e->name || strcmp(e->name, name)) continue;
        out->kernel = kind_col(e);
        out->calls++;
        out->self_ns += e->self;
        out->total_ns += e->t1 - e->t0;
        out->flops += e->flops;
        out->bytes += e->bytes;
    })
    pthread_mutex_unlock(&lock);
    return 0;
}

NB_API int nb_profiler_rows(nb_profiler_stat *rows, int cap, bool by_shape) {
    if (cap > 0 && !rows) return nb__err(NB_ENULLARG, "nb_profiler_rows: argument 'rows' is NULL");
    size_t n;
    int rc;
    pthread_mutex_lock(&lock);
    nb_profiler_stat *r = collect(by_shape, NB_PROFILER_SORT_SELF_TIME, &n, &rc);
    pthread_mutex_unlock(&lock);
    if (rc) {
        free(r);
        return nb__err(rc, "nb_profiler_rows: out of memory");
    }
    for (size_t i = 0; i < n && (int)i < cap; i++) rows[i] = r[i];
    free(r);
    return (int)n;
}

static void fit(char *dst, size_t w, const char *s) {   /* s cut to w chars with "..." */
    size_t n = strlen(s);
    if (n <= w) memcpy(dst, s, n + 1);
    else snprintf(dst, w + 1, "%.*s...", (int)(w - 3), s);
}

static int table(FILE *f, nb_profiler_sort sort, int limit, bool by_shape, const char *who) {
    if ((unsigned)sort >= NB_PROFILER_SORT_COUNT)
        return nb__err(NB_EINVAL, "%s: unknown sort key %d (expected an nb_profiler_sort)", who, (int)sort);
    if (!f) f = stdout;
    size_t n;
    int rc;
    nb_profiler_summary s;
    pthread_mutex_lock(&lock);
    nb_profiler_stat *r = collect(by_shape, sort, &n, &rc);
    summarize(&s);
    pthread_mutex_unlock(&lock);
    if (rc) {
        free(r);
        return nb__err(rc, "%s: out of memory", who);
    }
    double busy = s.self_ns ? (double)s.self_ns : 1;
    static const char line[] = "------------------------------------------------------------------------------"
                               "-------------------------------------";
    fprintf(f, "%-28s %-22s %7s %10s %7s %10s %10s %8s %8s%s\n", "Name", "Kernel", "Calls", "Self ms", "Self %",
            "Total ms", "Avg us", "GFLOP/s", "GB/s", by_shape ? "  Input shapes" : "");
    fprintf(f, "%s\n", line);
    for (size_t i = 0; i < n && (limit <= 0 || (int)i < limit); i++) {
        const nb_profiler_stat *x = &r[i];
        char name[29], kern[23], gf[16] = "-", gb[16] = "-";
        fit(name, 28, x->name);
        fit(kern, 22, x->kernel);
        double tot = x->total_ns ? (double)x->total_ns : 1;
        if (x->flops > 0) snprintf(gf, sizeof gf, "%.2f", x->flops / tot);
        if (x->bytes > 0) snprintf(gb, sizeof gb, "%.2f", x->bytes / tot);
        fprintf(f, "%-28s %-22s %7llu %10.3f %6.1f%% %10.3f %10.1f %8s %8s%s%s\n", name, kern,
                (unsigned long long)x->calls, (double)x->self_ns * 1e-6, 100.0 * (double)x->self_ns / busy,
                (double)x->total_ns * 1e-6, (double)x->total_ns * 1e-3 / (double)x->calls, gf, gb,
                by_shape ? "  " : "", by_shape && x->shapes ? x->shapes : "");
    }
    if (limit > 0 && n > (size_t)limit) fprintf(f, "... %zu more rows\n", n - (size_t)limit);
    fprintf(f, "%s\n", line);
    fprintf(f, "Self time total: %.3f ms on %d thread%s; wall %.3f ms; %llu events; %d step%s recorded\n",
            (double)s.self_ns * 1e-6, s.threads, s.threads == 1 ? "" : "s", (double)s.wall_ns * 1e-6,
            (unsigned long long)s.events, s.steps, s.steps == 1 ? "" : "s");
    if (P.opts.profile_memory)
        fprintf(f, "Memory: %llu allocations (%.1f MB), %llu frees; live %.1f MB at start, peak %.1f MB\n",
                (unsigned long long)s.allocs, (double)s.alloc_bytes / 1e6, (unsigned long long)s.frees,
                (double)s.start_bytes / 1e6, (double)s.peak_bytes / 1e6);
    if (s.queued_nodes)
        fprintf(f, "Ready queue: %llu nodes waited %.3f ms in all between ready and started (mean %.1f us, max %.1f us)\n",
                (unsigned long long)s.queued_nodes, (double)s.queue_ns * 1e-6,
                (double)s.queue_ns * 1e-3 / (double)s.queued_nodes, (double)s.queue_max_ns * 1e-3);
    if (s.dropped) fprintf(f, "Dropped: %llu events (per-thread cap reached)\n", (unsigned long long)s.dropped);
    free(r);
    return 0;
}

NB_API int nb_profiler_table(FILE *stream, nb_profiler_sort sort_key, int limit) {
    return table(stream, sort_key, limit, false, "nb_profiler_table");
}
NB_API int nb_profiler_table_by_shape(FILE *stream, nb_profiler_sort sort_key, int limit) {
    return table(stream, sort_key, limit, true, "nb_profiler_table_by_shape");
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

typedef struct flowsrc {
    uint64_t seq;    /* node sequence number (0: empty slot) */
    uint64_t ts;     /* ns inside the forward event */
    int lane;        /* its thread */
} flowsrc;

/* Forward events that recorded a node, hashed by seq. */
static flowsrc *flow_sources(size_t *nslots) {
    size_t cnt = 0;
    EACH_EVENT(t, e, { cnt += (e->kind == NB__PROF_KERNEL || e->kind == NB__PROF_MARK) && e->seq; })
    size_t ns = 16;
    while (ns < 2 * cnt) ns *= 2;
    flowsrc *h = calloc(ns, sizeof *h);
    *nslots = h ? ns : 0;
    if (!h) return NULL;
    EACH_EVENT(t, e, {
        if (!((e->kind == NB__PROF_KERNEL || e->kind == NB__PROF_MARK) && e->seq)) continue;
        size_t j = (e->seq * 0x9e3779b97f4a7c15ull) & (ns - 1);
        while (h[j].seq && h[j].seq != e->seq) j = (j + 1) & (ns - 1);
        h[j] = (flowsrc){e->seq, e->t0 + (e->t1 - e->t0) / 2, t->lane};
    })
    return h;
}

static void trace_events(FILE *f, uint64_t origin, int pid) {
    size_t ns;
    flowsrc *h = flow_sources(&ns);
    uint64_t flow_id = 0;
    const char *sep = ",\n";   /* the process name came first */
    for (tbuf *t = bufs; t; t = t->next) {   /* lane names */
        if (t->session != atomic_load(&session) || !atomic_load(&t->count)) continue;
        char nm[64];
        snprintf(nm, sizeof nm, "%s (tid %ld)", t->tname[0] ? t->tname : "thread", t->os_tid);
        fprintf(f, "%s{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":%d,\"tid\":%d,\"args\":{\"name\":", sep, pid,
                t->lane);
        json_str(f, nm);
        fprintf(f, "}},\n{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":%d,\"tid\":%d,\"args\":{"
                   "\"sort_index\":%d}}", pid, t->lane, t->lane);
        sep = ",\n";
    }
    static const char *const cats[NB__PROF_KIND_COUNT] = {"kernel", "backward", "range", "step", "executor",
                                                          "executor", "forward", "memory"};
    EACH_EVENT(t, e, {
        if (e->kind == NB__PROF_MEM) continue;
        fprintf(f, "%s{\"ph\":\"X\",\"name\":", sep);
        json_str(f, e->name ? e->name : "?");
        fprintf(f, ",\"cat\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{", cats[e->kind], pid,
                t->lane, (double)(e->t0 - origin) * 1e-3, (double)(e->t1 - e->t0) * 1e-3);
        fprintf(f, "\"self_us\":%.3f", (double)e->self * 1e-3);
        if (e->kernel) fprintf(f, ",\"kernel\":"), json_str(f, e->kernel);
        if (e->fwd) fprintf(f, ",\"op\":"), json_str(f, e->fwd);
        if (e->shapes) fprintf(f, ",\"shapes\":"), json_str(f, e->shapes);
        if (e->flops > 0) fprintf(f, ",\"flops\":%.0f", e->flops);
        if (e->bytes > 0) fprintf(f, ",\"bytes\":%.0f", e->bytes);
        if (e->seq) fprintf(f, ",\"%s\":%llu", e->kind == NB__PROF_STEP ? "step" : "seq", (unsigned long long)e->seq);
        fprintf(f, "}}");
        sep = ",\n";
        if (e->kind != NB__PROF_NODE || !h) continue;
        size_t j = (e->seq * 0x9e3779b97f4a7c15ull) & (ns - 1);
        while (h[j].seq && h[j].seq != e->seq) j = (j + 1) & (ns - 1);
        if (!h[j].seq) continue;   /* its forward op ran before the profile */
        flow_id++;
        fprintf(f, ",\n{\"ph\":\"s\",\"name\":\"forward->backward\",\"cat\":\"autograd\",\"id\":%llu,\"pid\":%d,"
                   "\"tid\":%d,\"ts\":%.3f}", (unsigned long long)flow_id, pid, h[j].lane,
                (double)(h[j].ts - origin) * 1e-3);
        fprintf(f, ",\n{\"ph\":\"f\",\"bp\":\"e\",\"name\":\"forward->backward\",\"cat\":\"autograd\",\"id\":%llu,"
                   "\"pid\":%d,\"tid\":%d,\"ts\":%.3f}", (unsigned long long)flow_id, pid, t->lane,
                (double)(e->t0 - origin) * 1e-3);
    })
    free(h);
    size_t n;
    memev *m = mem_events(&n);
    int64_t live = P.start_bytes;
    uint64_t last = 0;
    for (size_t i = 0; i < n; i++) {   /* one counter sample per microsecond at most */
        live += m[i].d;
        uint64_t us = (m[i].t - origin) / 1000;
        if (i + 1 < n && (m[i + 1].t - origin) / 1000 == us) continue;
        if (i && us == last) continue;
        last = us;
        fprintf(f, "%s{\"ph\":\"C\",\"name\":\"live bytes\",\"pid\":%d,\"ts\":%llu,\"args\":{\"live\":%lld}}", sep, pid,
                (unsigned long long)us, (long long)live);
        sep = ",\n";
    }
    free(m);
}

NB_API int nb_profiler_export_chrome_trace(const char *path) {
    if (!path) return nb__err(NB_ENULLARG, "nb_profiler_export_chrome_trace: argument 'path' is NULL");
    FILE *f = fopen(path, "w");
    if (!f) return nb__err(NB_EIO, "nb_profiler_export_chrome_trace: cannot open '%s' for writing", path);
    int pid = (int)getpid();
    fprintf(f, "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"producer\":\"nabla %s\"},\"traceEvents\":[", NB_VERSION_STRING);
    fprintf(f, "\n{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"args\":{\"name\":\"nabla\"}}", pid);
    pthread_mutex_lock(&lock);
    trace_events(f, P.origin, pid);
    pthread_mutex_unlock(&lock);
    fprintf(f, "\n]}\n");
    bool bad = ferror(f) != 0;
    if (fclose(f) || bad) return nb__err(NB_EIO, "nb_profiler_export_chrome_trace: cannot write '%s'", path);
    return 0;
}

int nb__profiler_report_env(void) {
    int rc = 0;
    fflush(stdout);   /* the program's own output first */
    if (env.table) rc = table(stderr, NB_PROFILER_SORT_SELF_TIME, 40, env.shapes, "NB_PROFILE");
    if (env.trace) {
        int r2 = nb_profiler_export_chrome_trace(env.trace);
        if (r2) fprintf(stderr, "nabla: NB_PROFILE: %s\n", nb_last_error());
        else fprintf(stderr, "nabla: NB_PROFILE: trace written to %s\n", env.trace);
        rc = rc ? rc : r2;
    }
    return rc;
}
