/* layers.c — the built-in layers: Linear, Conv2d, MaxPool2d, AvgPool2d,
 * BatchNorm2d, LayerNorm, Embedding, Dropout, Flatten, the activations and
 * Sequential. Each is a module with PyTorch's parameter names, shapes and
 * default initialization, whose forward calls the matching function of
 * nabla/functional.h.
 */
#include "nn/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Two independent seeds from one (weight and bias inits must differ). */
static uint64_t sub_seed(uint64_t seed, uint64_t k) { return seed * 0x9E3779B97F4A7C15ULL + k * 0xD1B54A32D192ED03ULL + 1; }

/* Builds a new parameter tensor (caller releases its reference). */
static nb_tensor *param(nb_dims shape) {
    bool prev = nb_set_grad_enabled(false);
    nb_tensor *t = nb_zeros(shape, NB_F32);
    nb_set_grad_enabled(prev);
    return t;
}

/* Adds a fresh parameter or buffer; on failure frees m and returns NULL. */
static nb_tensor *add_tensor(nb_module **m, const char *name, nb_tensor *t, bool is_param) {
    if (!*m) return NULL;
    int rc = !t ? NB_ENOMEM : is_param ? nb_module_add_parameter(*m, name, t) : nb_module_add_buffer(*m, name, t);
    if (nb_scope_depth() == 0) nb_release(t);   /* the module holds its own reference */
    if (rc) {
        nb_module_free(*m);
        *m = NULL;
        return NULL;
    }
    return t;
}

/* torch's default for Linear and Conv: kaiming_uniform(a=sqrt(5)) for the
 * weight, uniform(±1/sqrt(fan_in)) for the bias. */
static int default_init(nb_tensor *w, nb_tensor *b, double fan_in, uint64_t seed) {
    int rc = nb_init_kaiming_uniform(w, sqrt(5.0), sub_seed(seed, 1));
    double bound = fan_in > 0 ? 1 / sqrt(fan_in) : 0;
    if (!rc && b) rc = nb_init_uniform(b, -bound, bound, sub_seed(seed, 2));
    return rc;
}

/* ---- Linear ---- */
typedef struct { int64_t in, out; } linear_state;
static nb_tensor *linear_forward(nb_module *m, nb_tensor *x) {
    return nb_linear(x, nb_module_param(m, "weight"), nb_module_param(m, "bias"));
}
static void linear_repr(const nb_module *m, char *b, size_t cap) {
    const linear_state *s = nb_module_state((nb_module *)m);
    snprintf(b, cap, "in_features=%lld, out_features=%lld, bias=%s", (long long)s->in, (long long)s->out,
             nb_module_param(m, "bias") ? "True" : "False");
}
NB_API nb_module *nb_linear_module(int64_t in, int64_t out, bool bias, uint64_t seed) {
    if (in <= 0 || out <= 0) {
        nb__err(NB_EINVAL, "nb_linear_module: in_features %lld and out_features %lld must be positive", (long long)in,
                (long long)out);
        return NULL;
    }
    nb_scope_begin();
    nb_module *m = nb_module_new("Linear", linear_forward, sizeof(linear_state));
    if (m) *(linear_state *)nb_module_state(m) = (linear_state){in, out};
    nb__module_set_repr(m, linear_repr);
    nb_tensor *w = add_tensor(&m, "weight", param(NB_SHAPE(out, in)), true);
    nb_tensor *b = bias ? add_tensor(&m, "bias", param(NB_SHAPE(out)), true) : NULL;
    if (m && default_init(w, b, (double)in, seed)) {
        nb_module_free(m);
        m = NULL;
    }
    nb_scope_end();
    return m;
}

/* ---- Conv2d ---- */
typedef struct { int64_t cin, cout, kh, kw; nb_conv_opts o; } conv_state;
static nb_tensor *conv_forward(nb_module *m, nb_tensor *x) {
    conv_state *s = nb_module_state(m);
    return nb_conv2d(x, nb_module_param(m, "weight"), nb_module_param(m, "bias"), &s->o);
}
static void conv_repr(const nb_module *m, char *b, size_t cap) {
    const conv_state *s = nb_module_state((nb_module *)m);
    snprintf(b, cap, "%lld, %lld, kernel_size=(%lld, %lld), stride=(%lld, %lld), padding=(%lld, %lld)%s",
             (long long)s->cin, (long long)s->cout, (long long)s->kh, (long long)s->kw,
             (long long)(s->o.stride[0] ? s->o.stride[0] : 1), (long long)(s->o.stride[1] ? s->o.stride[1] : 1),
             (long long)s->o.padding[0], (long long)s->o.padding[1], nb_module_param(m, "bias") ? "" : ", bias=False");
}
NB_API nb_module *nb_conv2d_module(int64_t cin, int64_t cout, int64_t kh, int64_t kw, const nb_conv_opts *opts,
                                   bool bias, uint64_t seed) {
    nb_conv_opts o = opts ? *opts : (nb_conv_opts){0};
    int64_t groups = o.groups ? o.groups : 1;
    if (cin <= 0 || cout <= 0 || kh <= 0 || kw <= 0 || groups <= 0 || cin % groups || cout % groups) {
        nb__err(NB_EINVAL, "nb_conv2d_module: channels %lld -> %lld, kernel %lldx%lld and groups %lld must be "
                           "positive, channels divisible by groups",
                (long long)cin, (long long)cout, (long long)kh, (long long)kw, (long long)groups);
        return NULL;
    }
    nb_scope_begin();
    nb_module *m = nb_module_new("Conv2d", conv_forward, sizeof(conv_state));
    if (m) *(conv_state *)nb_module_state(m) = (conv_state){cin, cout, kh, kw, o};
    nb__module_set_repr(m, conv_repr);
    nb_tensor *w = add_tensor(&m, "weight", param(NB_SHAPE(cout, cin / groups, kh, kw)), true);
    nb_tensor *b = bias ? add_tensor(&m, "bias", param(NB_SHAPE(cout)), true) : NULL;
    if (m && default_init(w, b, (double)(cin / groups * kh * kw), seed)) {
        nb_module_free(m);
        m = NULL;
    }
    nb_scope_end();
    return m;
}

/* ---- pooling ---- */
typedef struct { int64_t kh, kw; nb_pool2d_opts o; } pool_state;
static nb_tensor *maxpool_forward(nb_module *m, nb_tensor *x) {
    pool_state *s = nb_module_state(m);
    return nb_max_pool2d(x, s->kh, s->kw, &s->o);
}
static nb_tensor *avgpool_forward(nb_module *m, nb_tensor *x) {
    pool_state *s = nb_module_state(m);
    return nb_avg_pool2d(x, s->kh, s->kw, &s->o);
}
static void pool_repr(const nb_module *m, char *b, size_t cap) {
    const pool_state *s = nb_module_state((nb_module *)m);
    snprintf(b, cap, "kernel_size=(%lld, %lld), stride=(%lld, %lld), padding=(%lld, %lld)", (long long)s->kh,
             (long long)s->kw, (long long)(s->o.stride[0] ? s->o.stride[0] : s->kh),
             (long long)(s->o.stride[1] ? s->o.stride[1] : s->kw), (long long)s->o.padding[0], (long long)s->o.padding[1]);
}
static nb_module *pool(const char *type, nb_forward_module_fn f, int64_t kh, int64_t kw, const nb_pool2d_opts *o) {
    if (kh <= 0 || kw <= 0) {
        nb__err(NB_EINVAL, "nb_%s: kernel %lldx%lld must be positive", type, (long long)kh, (long long)kw);
        return NULL;
    }
    nb_module *m = nb_module_new(type, f, sizeof(pool_state));
    if (m) {
        pool_state *s = nb_module_state(m);   /* zeroed: default options */
        s->kh = kh, s->kw = kw;
        if (o) s->o = *o;
    }
    nb__module_set_repr(m, pool_repr);
    return m;
}
NB_API nb_module *nb_maxpool2d_module(int64_t kh, int64_t kw, const nb_pool2d_opts *o) {
    return pool("MaxPool2d", maxpool_forward, kh, kw, o);
}
NB_API nb_module *nb_avgpool2d_module(int64_t kh, int64_t kw, const nb_pool2d_opts *o) {
    return pool("AvgPool2d", avgpool_forward, kh, kw, o);
}

/* ---- BatchNorm2d ---- */
static nb_tensor *bn_forward(nb_module *m, nb_tensor *x) {
    bool train = nb_module_is_training(m);
    nb_batch_norm_opts o = {.training = train, .momentum = 0.1, .eps = 1e-5};
    nb_tensor *y = nb_batch_norm(x, nb_module_buffer(m, "running_mean"), nb_module_buffer(m, "running_var"),
                                 nb_module_param(m, "weight"), nb_module_param(m, "bias"), &o);
    nb_tensor *nbt = nb_module_buffer(m, "num_batches_tracked");
    if (y && train && nbt) {
        ((int64_t *)nb_data(nbt))[0]++;
        nb_bump_version(nbt);
    }
    return y;
}
static void bn_repr(const nb_module *m, char *b, size_t cap) {
    snprintf(b, cap, "%lld, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True",
             (long long)nb_shape(nb_module_param(m, "weight"))[0]);
}
NB_API nb_module *nb_batchnorm2d_module(int64_t c) {
    if (c <= 0) {
        nb__err(NB_EINVAL, "nb_batchnorm2d_module: num_features %lld must be positive", (long long)c);
        return NULL;
    }
    nb_scope_begin();
    nb_module *m = nb_module_new("BatchNorm2d", bn_forward, 0);
    nb__module_set_repr(m, bn_repr);
    nb_tensor *w = add_tensor(&m, "weight", param(NB_SHAPE(c)), true);
    add_tensor(&m, "bias", param(NB_SHAPE(c)), true);
    add_tensor(&m, "running_mean", nb_zeros(NB_SHAPE(c), NB_F32), false);
    add_tensor(&m, "running_var", nb_ones(NB_SHAPE(c), NB_F32), false);
    add_tensor(&m, "num_batches_tracked", nb_scalar_dtype(0, NB_I64), false);
    if (m) nb_init_ones(w);
    nb_scope_end();
    return m;
}

/* ---- LayerNorm ---- */
typedef struct { nb_dims shape; } ln_state;
static nb_tensor *ln_forward(nb_module *m, nb_tensor *x) {
    ln_state *s = nb_module_state(m);
    return nb_layer_norm(x, s->shape, nb_module_param(m, "weight"), nb_module_param(m, "bias"), NULL);
}
static void ln_repr(const nb_module *m, char *b, size_t cap) {
    const ln_state *s = nb_module_state((nb_module *)m);
    size_t n = (size_t)snprintf(b, cap, "(");
    for (int i = 0; i < s->shape.ndim && n < cap; i++)
        n += (size_t)snprintf(b + n, cap - n, "%lld,%s", (long long)s->shape.d[i], i + 1 < s->shape.ndim ? " " : "");
    if (n < cap) snprintf(b + n, cap - n, "), eps=1e-05, elementwise_affine=%s", nb_module_param(m, "weight") ? "True" : "False");
}
NB_API nb_module *nb_layernorm_module(nb_dims shape, bool affine) {
    if (shape.ndim < 1 || shape.ndim > NB_MAX_DIMS) {
        nb__err(NB_EINVAL, "nb_layernorm_module: normalized_shape needs 1 to %d dims", NB_MAX_DIMS);
        return NULL;
    }
    nb_scope_begin();
    nb_module *m = nb_module_new("LayerNorm", ln_forward, sizeof(ln_state));
    if (m) ((ln_state *)nb_module_state(m))->shape = shape;
    nb__module_set_repr(m, ln_repr);
    if (affine) {
        nb_tensor *w = add_tensor(&m, "weight", param(shape), true);
        add_tensor(&m, "bias", param(shape), true);
        if (m) nb_init_ones(w);
    }
    nb_scope_end();
    return m;
}

/* ---- Embedding ---- */
typedef struct { int64_t padding_idx; } emb_state;
static nb_tensor *emb_forward(nb_module *m, nb_tensor *x) {
    emb_state *s = nb_module_state(m);
    return nb_embedding(x, nb_module_param(m, "weight"), s->padding_idx);
}
static void emb_repr(const nb_module *m, char *b, size_t cap) {
    const int64_t *sh = nb_shape(nb_module_param(m, "weight"));
    snprintf(b, cap, "%lld, %lld", (long long)sh[0], (long long)sh[1]);
}
NB_API nb_module *nb_embedding_module(int64_t num, int64_t dim, int64_t padding_idx, uint64_t seed) {
    if (num <= 0 || dim <= 0) {
        nb__err(NB_EINVAL, "nb_embedding_module: num_embeddings %lld and embedding_dim %lld must be positive",
                (long long)num, (long long)dim);
        return NULL;
    }
    if (padding_idx != NB_NO_PADDING && padding_idx < 0) padding_idx += num;
    if (padding_idx != NB_NO_PADDING && (padding_idx < 0 || padding_idx >= num)) {
        nb__err(NB_ERANGE, "nb_embedding_module: padding_idx must be within num_embeddings (%lld)", (long long)num);
        return NULL;
    }
    nb_scope_begin();
    nb_module *m = nb_module_new("Embedding", emb_forward, sizeof(emb_state));
    if (m) ((emb_state *)nb_module_state(m))->padding_idx = padding_idx;
    nb__module_set_repr(m, emb_repr);
    nb_tensor *w = add_tensor(&m, "weight", param(NB_SHAPE(num, dim)), true);
    if (m && nb_init_normal(w, 0, 1, sub_seed(seed, 1)) == 0 && padding_idx != NB_NO_PADDING) {
        bool prev = nb_set_grad_enabled(false);
        nb_fill_(nb_slice(w, 0, padding_idx, padding_idx + 1, 1), 0.0);   /* torch zeroes the padding row */
        nb_set_grad_enabled(prev);
    }
    nb_scope_end();
    return m;
}

/* ---- Dropout ---- */
typedef struct { double p; uint64_t seed, calls; } drop_state;
static nb_tensor *drop_forward(nb_module *m, nb_tensor *x) {
    drop_state *s = nb_module_state(m);
    bool train = nb_module_is_training(m);
    return nb_dropout(x, s->p, train, train ? sub_seed(s->seed, ++s->calls) : 0);
}
static void drop_repr(const nb_module *m, char *b, size_t cap) {
    snprintf(b, cap, "p=%g, inplace=False", ((drop_state *)nb_module_state((nb_module *)m))->p);
}
NB_API nb_module *nb_dropout_module(double p, uint64_t seed) {
    if (!(p >= 0 && p <= 1)) {
        nb__err(NB_EINVAL, "nb_dropout_module: dropout probability has to be between 0 and 1, but got %g", p);
        return NULL;
    }
    nb_module *m = nb_module_new("Dropout", drop_forward, sizeof(drop_state));
    if (m) *(drop_state *)nb_module_state(m) = (drop_state){p, seed, 0};
    nb__module_set_repr(m, drop_repr);
    return m;
}

/* ---- Flatten and the activations ---- */
typedef struct { int start, end; } flat_state;
static nb_tensor *flat_forward(nb_module *m, nb_tensor *x) {
    flat_state *s = nb_module_state(m);
    return nb_flatten(x, s->start, s->end);
}
static void flat_repr(const nb_module *m, char *b, size_t cap) {
    const flat_state *s = nb_module_state((nb_module *)m);
    snprintf(b, cap, "start_dim=%d, end_dim=%d", s->start, s->end);
}
NB_API nb_module *nb_flatten_module(int start, int end) {
    nb_module *m = nb_module_new("Flatten", flat_forward, sizeof(flat_state));
    if (m) *(flat_state *)nb_module_state(m) = (flat_state){start, end};
    nb__module_set_repr(m, flat_repr);
    return m;
}

static nb_tensor *relu_fwd(nb_module *m, nb_tensor *x) { (void)m; return nb_relu(x); }
static nb_tensor *gelu_fwd(nb_module *m, nb_tensor *x) { (void)m; return nb_gelu(x, false); }
static nb_tensor *silu_fwd(nb_module *m, nb_tensor *x) { (void)m; return nb_silu(x); }
static nb_tensor *tanh_fwd(nb_module *m, nb_tensor *x) { (void)m; return nb_tanh(x); }
static nb_tensor *sigmoid_fwd(nb_module *m, nb_tensor *x) { (void)m; return nb_sigmoid(x); }
NB_API nb_module *nb_relu_module(void) { return nb_module_new("ReLU", relu_fwd, 0); }
NB_API nb_module *nb_gelu_module(void) { return nb_module_new("GELU", gelu_fwd, 0); }
NB_API nb_module *nb_silu_module(void) { return nb_module_new("SiLU", silu_fwd, 0); }
NB_API nb_module *nb_tanh_module(void) { return nb_module_new("Tanh", tanh_fwd, 0); }
NB_API nb_module *nb_sigmoid_module(void) { return nb_module_new("Sigmoid", sigmoid_fwd, 0); }

/* ---- Sequential ---- */
static nb_tensor *seq_forward(nb_module *m, nb_tensor *x) {
    int n = nb_module_num_children(m);
    if (n == 0) return nb_detach(x);   /* an empty Sequential is the identity */
    nb_scope_begin();   /* intermediate activations die here; the graph keeps what backward needs */
    for (int i = 0; i < n && x; i++) x = nb_module_forward(nb_module_child_at(m, i), x);
    x = nb_keep(x);
    nb_scope_end();
    return x;
}

NB_API nb_module *nb_sequential_append(nb_module *seq, nb_module *m) {
    if (!seq) {
        nb_module_free(m);
        nb__err(NB_ENULLARG, "nb_sequential_append: sequential is NULL");
        return NULL;
    }
    char name[24];
    snprintf(name, sizeof name, "%d", nb_module_num_children(seq));
    return nb_module_add_child(seq, name, m) ? seq : NULL;
}

NB_API nb_module *nb_sequential(int n, nb_module *const *mods) {
    nb_module *s = n >= 0 && (n == 0 || mods) ? nb_module_new("Sequential", seq_forward, 0) : NULL;
    bool ok = s != NULL;
    if (!ok && n >= 0 && (n == 0 || mods)) {
        /* out of memory: still free what we were given */
    } else if (!ok) {
        nb__err(NB_ENULLARG, "nb_sequential: modules is NULL");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!mods[i]) {
            if (ok && !nb_last_error_code()) nb__err(NB_ENULLARG, "nb_sequential: module %d is NULL", i);
            ok = false;
            continue;
        }
        if (!ok) nb_module_free(mods[i]);
        else if (!nb_sequential_append(s, mods[i])) ok = false;
    }
    if (!ok) {
        nb_module_free(s);
        return NULL;
    }
    return s;
}
