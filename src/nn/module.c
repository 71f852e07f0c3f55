/* module.c — the module object: named parameters, buffers and children, a
 * forward function, a train/eval flag; traversal in registration order
 * (depth first, as torch), state dicts, printing.
 *
 * Ownership: a module owns its parameter and buffer references, its children
 * and its user state; nb_module_free releases the whole tree. Names are
 * checked (non-empty, no '.', unique within the module) so dotted names are
 * unambiguous.
 */
#include "nn/nn.h"

#include <stdlib.h>
#include <string.h>

typedef struct member {
    char *name;           /* owned */
    nb_tensor *t;         /* retained */
} member;

typedef struct child {
    char *name;           /* owned */
    nb_module *m;         /* owned */
} child;

struct nb_module {
    char *type;                     /* "Linear" (owned) */
    nb_forward_module_fn forward;   /* may be NULL for pure containers */
    member *params, *bufs;          /* registration order */
    int np, nbuf, capp, capb;
    child *kids;
    int nk, capk;
    bool training;                  /* train (default) or eval */
    nb__repr_fn repr;               /* fields for printing, or NULL */
    void *state;                    /* user state (owned, zeroed) */
};

NB_API nb_module *nb_module_new(const char *type, nb_forward_module_fn forward, size_t state_bytes) {
    nb_module *m = calloc(1, sizeof *m);
    if (m) {
        m->type = strdup(type && *type ? type : "Module");
        m->state = state_bytes ? calloc(1, state_bytes) : NULL;
    }
    if (!m || !m->type || (state_bytes && !m->state)) {
        if (m) {
            free(m->type);
            free(m->state);
            free(m);
        }
        nb__err(NB_ENOMEM, "nb_module_new: out of memory");
        return NULL;
    }
    m->forward = forward;
    m->training = true;
    return m;
}

void nb__module_set_repr(nb_module *m, nb__repr_fn fn) {
    if (m) m->repr = fn;
}
NB_API void *nb_module_state(nb_module *m) { return m ? m->state : NULL; }
NB_API const char *nb_module_type(const nb_module *m) { return m ? m->type : NULL; }

static int find_member(const member *v, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v[i].name, name)) return i;
    return -1;
}
static int find_child(const nb_module *m, const char *name) {
    for (int i = 0; i < m->nk; i++)
        if (!strcmp(m->kids[i].name, name)) return i;
    return -1;
}

static int check_name(const char *who, const nb_module *m, const char *name) {
    if (!m || !name) return nb__err(NB_ENULLARG, "%s: %s is NULL", who, m ? "name" : "module");
    if (!*name || strchr(name, '.'))
        return nb__err(NB_EINVAL, "%s: name '%s' must be non-empty and contain no '.'", who, name);
    if (find_member(m->params, m->np, name) >= 0 || find_member(m->bufs, m->nbuf, name) >= 0 || find_child(m, name) >= 0)
        return nb__err(NB_EINVAL, "%s: %s already has a member named '%s'", who, m->type, name);
    return 0;
}

static int add_member(const char *who, member **v, int *n, int *cap, const char *name, nb_tensor *t) {
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 4;
        member *nv = realloc(*v, sizeof *nv * (size_t)nc);
        if (!nv) return nb__err(NB_ENOMEM, "%s: out of memory", who);
        *v = nv;
        *cap = nc;
    }
    char *copy = strdup(name);
    if (!copy) return nb__err(NB_ENOMEM, "%s: out of memory", who);
    (*v)[(*n)++] = (member){copy, nb_retain(t)};
    return 0;
}

NB_API int nb_module_add_parameter(nb_module *m, const char *name, nb_tensor *t) {
    const char *who = "nb_module_add_parameter";
    int rc = check_name(who, m, name);
    if (rc) return rc;
    if (!t) return nb__err(NB_ENULLARG, "%s: tensor for '%s' is NULL", who, name);
    if (!nb_is_leaf(t)) return nb__err(NB_EINVAL, "%s: '%s' must be a leaf tensor (use nb_detach)", who, name);
    if ((rc = nb_set_requires_grad(t, true))) return rc;
    return add_member(who, &m->params, &m->np, &m->capp, name, t);
}

NB_API int nb_module_add_buffer(nb_module *m, const char *name, nb_tensor *t) {
    const char *who = "nb_module_add_buffer";
    int rc = check_name(who, m, name);
    if (rc) return rc;
    if (!t) return nb__err(NB_ENULLARG, "%s: tensor for '%s' is NULL", who, name);
    return add_member(who, &m->bufs, &m->nbuf, &m->capb, name, t);
}

NB_API nb_module *nb_module_add_child(nb_module *m, const char *name, nb_module *c) {
    const char *who = "nb_module_add_child";
    if (!c) {
        if (!nb_last_error_code()) nb__err(NB_ENULLARG, "%s: child '%s' is NULL", who, name ? name : "?");
        return NULL;
    }
    if (check_name(who, m, name) || c == m) {
        if (c == m) nb__err(NB_EINVAL, "%s: a module cannot be its own child", who);
        if (c != m) nb_module_free(c);
        return NULL;
    }
    if (m->nk == m->capk) {
        int nc = m->capk ? m->capk * 2 : 4;
        child *nk = realloc(m->kids, sizeof *nk * (size_t)nc);
        if (!nk) {
            nb_module_free(c);
            nb__err(NB_ENOMEM, "%s: out of memory", who);
            return NULL;
        }
        m->kids = nk;
        m->capk = nc;
    }
    char *copy = strdup(name);
    if (!copy) {
        nb_module_free(c);
        nb__err(NB_ENOMEM, "%s: out of memory", who);
        return NULL;
    }
    c->training = m->training;
    m->kids[m->nk++] = (child){copy, c};
    return c;
}

NB_API nb_tensor *nb_module_param(const nb_module *m, const char *name) {
    int i = m && name ? find_member(m->params, m->np, name) : -1;
    return i >= 0 ? m->params[i].t : NULL;
}
NB_API nb_tensor *nb_module_buffer(const nb_module *m, const char *name) {
    int i = m && name ? find_member(m->bufs, m->nbuf, name) : -1;
    return i >= 0 ? m->bufs[i].t : NULL;
}
NB_API nb_module *nb_module_child(const nb_module *m, const char *name) {
    int i = m && name ? find_child(m, name) : -1;
    return i >= 0 ? m->kids[i].m : NULL;
}
NB_API int nb_module_num_children(const nb_module *m) { return m ? m->nk : 0; }
NB_API nb_module *nb_module_child_at(const nb_module *m, int i) {
    return m && i >= 0 && i < m->nk ? m->kids[i].m : NULL;
}

NB_API void nb_module_free(nb_module *m) {
    if (!m) return;
    for (int i = 0; i < m->np; i++) free(m->params[i].name), nb_release(m->params[i].t);
    for (int i = 0; i < m->nbuf; i++) free(m->bufs[i].name), nb_release(m->bufs[i].t);
    for (int i = 0; i < m->nk; i++) free(m->kids[i].name), nb_module_free(m->kids[i].m);
    free(m->params);
    free(m->bufs);
    free(m->kids);
    free(m->state);
    free(m->type);
    free(m);
}

NB_API nb_tensor *nb_module_forward(nb_module *m, nb_tensor *x) {
    if (!m) {
        nb__err(NB_ENULLARG, "nb_module_forward: module is NULL");
        return NULL;
    }
    if (!x) {
        if (!nb_last_error_code()) nb__err(NB_ENULLARG, "nb_module_forward(%s): input is NULL", m->type);
        return NULL;
    }
    if (!m->forward) {
        nb__err(NB_EINVAL, "nb_module_forward: %s has no forward function", m->type);
        return NULL;
    }
    return m->forward(m, x);
}

/* ---- traversal ---- */
static int count_params(const nb_module *m, nb_tensor **out, int cap, int at) {
    for (int i = 0; i < m->np; i++, at++)
        if (at < cap) out[at] = m->params[i].t;
    for (int i = 0; i < m->nk; i++) at = count_params(m->kids[i].m, out, cap, at);
    return at;
}

NB_API int nb_module_parameters(const nb_module *m, nb_tensor **out, int cap) {
    if (!m) return nb__err(NB_ENULLARG, "nb_module_parameters: module is NULL");
    if (cap > 0 && !out) return nb__err(NB_ENULLARG, "nb_module_parameters: out is NULL");
    return count_params(m, out, cap, 0);
}

static int walk(const nb_module *m, const char *prefix, nb_state_dict *sd, bool buffers) {
    char name[512];
    for (int i = 0; i < m->np; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, m->params[i].name);
        int rc = nb_state_dict_set(sd, name, m->params[i].t);
        if (rc) return rc;
    }
    for (int i = 0; buffers && i < m->nbuf; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, m->bufs[i].name);
        int rc = nb_state_dict_set(sd, name, m->bufs[i].t);
        if (rc) return rc;
    }
    for (int i = 0; i < m->nk; i++) {
        snprintf(name, sizeof name, "%s%s.", prefix, m->kids[i].name);
        int rc = walk(m->kids[i].m, name, sd, buffers);
        if (rc) return rc;
    }
    return 0;
}

NB_API int nb_module_named_parameters(const nb_module *m, nb_state_dict *sd) {
    if (!m || !sd) return nb__err(NB_ENULLARG, "nb_module_named_parameters: %s is NULL", m ? "sd" : "module");
    return walk(m, "", sd, false);
}

NB_API int nb_module_state_dict(const nb_module *m, nb_state_dict *sd) {
    if (!m || !sd) return nb__err(NB_ENULLARG, "nb_module_state_dict: %s is NULL", m ? "sd" : "module");
    return walk(m, "", sd, true);
}

NB_API int nb_module_load_state_dict(nb_module *m, const nb_state_dict *sd, bool strict) {
    const char *who = "nb_module_load_state_dict";
    if (!m || !sd) return nb__err(NB_ENULLARG, "%s: %s is NULL", who, m ? "sd" : "module");
    nb_state_dict *mine = nb_state_dict_new();
    if (!mine || nb_module_state_dict(m, mine)) {
        nb_state_dict_free(mine);
        return nb_last_error_code();
    }
    /* every problem goes into one message */
    char msg[2048];
    size_t n = 0;
    int problems = 0, code = 0;
#define NB__NOTE(c, ...)                                                                \
    do {                                                                                \
        problems++;                                                                     \
        if (!code) code = (c);                                                          \
        if (n < sizeof msg) n += (size_t)snprintf(msg + n, sizeof msg - n, __VA_ARGS__); \
    } while (0)
    for (int i = 0; i < nb_state_dict_size(mine); i++) {
        const char *name = nb_state_dict_name(mine, i);
        nb_tensor *want = nb_state_dict_tensor(mine, i), *got = nb_state_dict_get(sd, name);
        if (!got) {
            if (strict) NB__NOTE(NB_EINVAL, "; missing key '%s'", name);
            continue;
        }
        if (!nb__same_shape(want, got))
            NB__NOTE(NB_ESHAPE, "; '%s': shape %s in the checkpoint, %s in the module", name, nb__shape_str(got),
                     nb__shape_str(want));
        else if (nb_dtype(want) != nb_dtype(got))
            NB__NOTE(NB_EDTYPE, "; '%s': dtype %s in the checkpoint, %s in the module", name,
                     nb_dtype_name(nb_dtype(got)), nb_dtype_name(nb_dtype(want)));
    }
    for (int i = 0; strict && i < nb_state_dict_size(sd); i++)
        if (!nb_state_dict_get(mine, nb_state_dict_name(sd, i)))
            NB__NOTE(NB_EINVAL, "; unexpected key '%s'", nb_state_dict_name(sd, i));
#undef NB__NOTE
    if (problems) {
        nb_state_dict_free(mine);
        return nb__err(code, "%s: %d problem%s loading into %s (nothing was changed)%s", who, problems,
                       problems > 1 ? "s" : "", m->type, msg);
    }
    bool prev = nb_set_grad_enabled(false);
    int rc = 0;
    for (int i = 0; i < nb_state_dict_size(mine) && !rc; i++) {
        nb_tensor *got = nb_state_dict_get(sd, nb_state_dict_name(mine, i));
        if (got && !nb_copy_(nb_state_dict_tensor(mine, i), got)) rc = nb_last_error_code();
    }
    nb_set_grad_enabled(prev);
    nb_state_dict_free(mine);
    return rc;
}

NB_API int nb_module_save(const nb_module *m, const char *path) {
    nb_state_dict *sd = nb_state_dict_new();
    int rc = sd ? nb_module_state_dict(m, sd) : NB_ENOMEM;
    const char *meta[] = {"format", "pt", "producer", "nabla " NB_VERSION_STRING, NULL};
    if (!rc) rc = nb_save_safetensors(path, sd, meta);
    nb_state_dict_free(sd);
    return rc;
}

NB_API int nb_module_load(nb_module *m, const char *path) {
    if (!m) return nb__err(NB_ENULLARG, "nb_module_load: module is NULL");
    nb_state_dict *sd = nb_load_safetensors(path);
    if (!sd) return nb_last_error_code();
    int rc = nb_module_load_state_dict(m, sd, true);
    nb_state_dict_free(sd);
    return rc;
}

NB_API void nb_module_train(nb_module *m, bool train) {
    if (!m) return;
    m->training = train;
    for (int i = 0; i < m->nk; i++) nb_module_train(m->kids[i].m, train);
}
NB_API void nb_module_eval(nb_module *m) { nb_module_train(m, false); }
NB_API bool nb_module_is_training(const nb_module *m) { return m && m->training; }

NB_API void nb_module_zero_grad(nb_module *m) {
    if (!m) return;
    for (int i = 0; i < m->np; i++) nb_zero_grad(m->params[i].t);
    for (int i = 0; i < m->nk; i++) nb_module_zero_grad(m->kids[i].m);
}

static void print_tree(const nb_module *m, FILE *f, int indent) {
    char fields[256] = "";
    if (m->repr) m->repr(m, fields, sizeof fields);
    fprintf(f, "%s(%s", m->type, fields);
    if (m->nk) {
        fprintf(f, "\n");
        for (int i = 0; i < m->nk; i++) {
            fprintf(f, "%*s(%s): ", indent + 2, "", m->kids[i].name);
            print_tree(m->kids[i].m, f, indent + 2);
            fprintf(f, "\n");
        }
        fprintf(f, "%*s", indent, "");
    }
    fprintf(f, ")");
}

NB_API void nb_module_print(const nb_module *m, FILE *f) {
    if (!f) f = stdout;
    if (!m) {
        fprintf(f, "NULL\n");
        return;
    }
    print_tree(m, f, 0);
    fprintf(f, "\n");
}
