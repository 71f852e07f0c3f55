/* state_dict.c — an ordered name -> tensor map, the currency of
 * checkpoints (module state, optimizer state). Linear lookup: state dicts
 * hold hundreds of entries, not millions. */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *name;          /* owned copy */
    nb_tensor *t;        /* retained */
} entry;

struct nb_state_dict {
    entry *e;            /* in insertion order */
    int n, cap;
};

NB_API nb_state_dict *nb_state_dict_new(void) {
    nb_state_dict *sd = calloc(1, sizeof *sd);
    if (!sd) nb__err(NB_ENOMEM, "nb_state_dict_new: out of memory");
    return sd;
}

NB_API void nb_state_dict_free(nb_state_dict *sd) {
    if (!sd) return;
    for (int i = 0; i < sd->n; i++) {
        free(sd->e[i].name);
        nb_release(sd->e[i].t);
    }
    free(sd->e);
    free(sd);
}

static int find(const nb_state_dict *sd, const char *name) {
    for (int i = 0; i < sd->n; i++)
        if (!strcmp(sd->e[i].name, name)) return i;
    return -1;
}

NB_API int nb_state_dict_set(nb_state_dict *sd, const char *name, nb_tensor *t) {
    if (!sd || !name || !t)
        return nb__err(NB_ENULLARG, "nb_state_dict_set: %s is NULL", !sd ? "state dict" : !name ? "name" : "tensor");
    if (!*name) return nb__err(NB_EINVAL, "nb_state_dict_set: empty name");
    int i = find(sd, name);
    if (i >= 0) {
        nb_retain(t);
        nb_release(sd->e[i].t);
        sd->e[i].t = t;
        return 0;
    }
    if (sd->n == sd->cap) {
        int nc = sd->cap ? sd->cap * 2 : 16;
        entry *ne = realloc(sd->e, sizeof *ne * (size_t)nc);
        if (!ne) return nb__err(NB_ENOMEM, "nb_state_dict_set: out of memory");
        sd->e = ne;
        sd->cap = nc;
    }
    char *copy = strdup(name);
    if (!copy) return nb__err(NB_ENOMEM, "nb_state_dict_set: out of memory");
    sd->e[sd->n++] = (entry){copy, nb_retain(t)};
    return 0;
}

NB_API nb_tensor *nb_state_dict_get(const nb_state_dict *sd, const char *name) {
    if (!sd || !name) return NULL;
    int i = find(sd, name);
    return i >= 0 ? sd->e[i].t : NULL;
}

NB_API int nb_state_dict_size(const nb_state_dict *sd) { return sd ? sd->n : 0; }
NB_API const char *nb_state_dict_name(const nb_state_dict *sd, int i) {
    return sd && i >= 0 && i < sd->n ? sd->e[i].name : NULL;
}
NB_API nb_tensor *nb_state_dict_tensor(const nb_state_dict *sd, int i) {
    return sd && i >= 0 && i < sd->n ? sd->e[i].t : NULL;
}
