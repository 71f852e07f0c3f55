/* scope.c — scopes (autorelease pools), one stack per thread.
 *
 * Every tensor a public function returns is pushed on the calling thread's
 * stack; nb_scope_end releases everything pushed since the matching
 * nb_scope_begin. With no scope open, nothing is pushed and the caller owns
 * the reference. The stack is one growable array of tensor pointers plus an
 * array of frame starts, so a push is a store and an increment.
 */
#include "runtime/runtime.h"

#include <stdlib.h>

typedef struct scope_stack {
    nb_tensor **items;   /* owned references, oldest first */
    size_t n, cap;       /* used and allocated slots */
    size_t *frames;      /* items index where each open scope starts */
    int depth, fcap;     /* open scopes, allocated frames */
} scope_stack;

static _Thread_local scope_stack st;

NB_API void nb_scope_begin(void) {
    if (st.depth == st.fcap) {
        int nc = st.fcap ? st.fcap * 2 : 16;
        size_t *f = realloc(st.frames, sizeof *f * (size_t)nc);
        if (!f) {  /* cannot open: tensors then go to the enclosing scope */
            nb__err(NB_ENOMEM, "nb_scope_begin: out of memory");
            return;
        }
        st.frames = f;
        st.fcap = nc;
    }
    st.frames[st.depth++] = st.n;
}

static void release_to(size_t start) {
    while (st.n > start) nb_release(st.items[--st.n]);
}

NB_API void nb_scope_end(void) {
    if (st.depth == 0) return;
    size_t start = st.frames[--st.depth];
    release_to(start);
    if (st.depth == 0) {  /* the thread's outermost scope closed: give memory back */
        free(st.items);
        free(st.frames);
        st = (scope_stack){0};
    }
}

NB_API int nb_scope_depth(void) { return st.depth; }

static bool push(nb_tensor *t) {
    if (st.n == st.cap) {
        size_t nc = st.cap ? st.cap * 2 : 256;
        nb_tensor **it = realloc(st.items, sizeof *it * nc);
        if (!it) return false;
        st.items = it;
        st.cap = nc;
    }
    st.items[st.n++] = t;
    return true;
}

nb_tensor *nb__scoped(nb_tensor *t) {
    if (!t || st.depth == 0) return t;
    if (!push(t)) {
        nb__err(NB_ENOMEM, "out of memory recording a tensor in its scope");
        nb_release(t);
        return NULL;
    }
    return t;
}

NB_API nb_tensor *nb_keep(nb_tensor *t) {
    if (!t || st.depth == 0) return t;
    nb_retain(t);
    if (st.depth == 1) return t;   /* outermost: the caller now owns one reference */
    /* insert the new reference just below the innermost frame */
    if (!push(NULL)) {
        nb_release(t);
        nb__err(NB_ENOMEM, "nb_keep: out of memory");
        return NULL;
    }
    size_t at = st.frames[st.depth - 1];
    for (size_t i = st.n - 1; i > at; i--) st.items[i] = st.items[i - 1];
    st.items[at] = t;
    st.frames[st.depth - 1]++;
    return t;
}
