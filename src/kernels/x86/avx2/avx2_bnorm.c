/* avx2_bnorm.c — AVX2+FMA kernels of batch_norm (F32): BATCH_NORM_STATS,
 * BATCH_NORM, BATCH_NORM_BACKWARD and BATCH_NORM_PARAM_BACKWARD, with
 * ref_norm.c's arguments (the ref kernels gather each channel into a double
 * buffer: ~5 ns an element).
 *
 * Layout: x, y, dy, dx contiguous (N, C, *), F32; S = the product of the
 * dims after C (1 for (N, C)). stats (2, C) or (4, C), w and b (C) any
 * strides (read into float vectors first); anything else is declined.
 * Two loops:
 *   S >= 2: a channel's values are N rows of S contiguous floats; sums run
 *           along the rows (avx2_rows.h's F32 blocks into a double per row,
 *           relative error ~1e-6), one channel per thread at a time;
 *   S == 1: rows of C channels; 8 channels per vector, summed in double
 *           lanes, a range of channels per thread.
 * Each channel's sums are made by one thread in one fixed order, so every
 * result is bitwise the same at any thread count (the parallel backward
 * executor's rule, kernels.h).
 * Numerics: the variance is summed around the F32 mean and corrected by the
 * mean's rounding (sum (x - m)^2 = sum (x - mean)^2 + M (mean - m)^2), as
 * ref's two passes; y = (x - mean) * (w rstd) + b and the dx below are F32
 * expressions of x - mean, so values far from 0 with a small spread do not
 * cancel. Training backward, per channel (M values, sums from
 * BATCH_NORM_PARAM_BACKWARD: dw = sum dy x̂, db = sum dy):
 *     dx = w rstd (dy - db / M - x̂ dw / M)
 *        = A dy + B (x - mean) + D,  A = w rstd, B = -A rstd dw / M, D = -A db / M
 * (when stats carries the sums as rows 2 and 3 they are used, else summed
 * here first).
 */
#include "avx2_rows.h"

#include <string.h>

typedef struct bn_geo {
    int64_t N, C, S;
} bn_geo;

/* x: F32, >= 2-D, contiguous. */
static bool bn_geo_of(const nb_tensor *x, bn_geo *g) {
    if (!x || x->dtype != NB_DTYPE_F32 || x->ndim < 2 || !nb_is_contiguous(x)) return false;
    g->N = x->shape[0];
    g->C = x->shape[1];
    g->S = g->N && g->C ? x->numel / (g->N * g->C) : 0;
    return true;
}

/* t: F32, contiguous, x's shape. */
static bool bn_like(const nb_tensor *t, const nb_tensor *x) {
    if (!t || t->dtype != NB_DTYPE_F32 || t->ndim != x->ndim || !nb_is_contiguous(t)) return false;
    for (int d = 0; d < x->ndim; d++)
        if (t->shape[d] != x->shape[d]) return false;
    return true;
}

/* Scratch of k vectors of C floats (one allocation). */
typedef struct bn_vecs {
    float *v;
    size_t bytes;
} bn_vecs;
static float *bn_vecs_get(bn_vecs *s, int k, int64_t C) {
    s->bytes = (size_t)(k * (C ? C : 1)) * sizeof(float);
    s->v = nb__alloc(s->bytes);
    return s->v;
}
static void bn_vecs_free(bn_vecs *s) {
    if (s->v) nb__free(s->v, s->bytes);
}

static int bn_threads(const bn_geo *g) { return nb__par_threads(g->N * g->C * g->S, NB_GRAIN_ELEMENTWISE); }

/* ---- per-channel sums ----
 * S >= 2 (by channel): sum of x; sum of (x - m)^2; sum of dy and of
 * dy (x - m). */
static double bn_dev_dot(const float *dy, const float *x, int64_t n, float m) {
    __m256 mv = V1(m);
    double s;
#define F_(o) _mm256_mul_ps(LD(dy + (o)), _mm256_sub_ps(LD(x + (o)), mv))
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

/* sum of (x - K) over a row (F32 blocks). */
static double bn_sum_shift(const float *x, int64_t n, float K) {
    __m256 kv = V1(K);
    double s;
#define F_(o) _mm256_sub_ps(LD(x + (o)), kv)
    ROWSUM(n, F_, s);
#undef F_
    return s;
}

/* S == 1 (by rows of channels): for channels [c0, c1) (c0 a multiple of 8),
 * acc[c - c0] += f(row values) over the N rows, in double lanes. kind 0:
 * x; 1: (x - m[c])^2; 2: dy (acc) and dy (x - m[c]) (acc2). */
static void bn_cols(const float *x, const float *dy, const float *m, int64_t N, int64_t C, int64_t c0, int64_t c1,
                    int kind, double *acc, double *acc2) {
    for (int64_t c = c0; c < c1; c += 8) {
        int64_t k = c1 - c < 8 ? c1 - c : 8;
        __m256i mask = nb__tail_mask((int)k);
        __m256 mv = kind ? _mm256_maskload_ps(m + c, mask) : _mm256_setzero_ps();
        __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + n * C + c;
            __m256 v = k == 8 ? _mm256_loadu_ps(xr) : _mm256_maskload_ps(xr, mask), f;
            if (kind == 0) {
                f = v;
            } else if (kind == 1) {
                __m256 d = _mm256_sub_ps(v, mv);
                f = _mm256_mul_ps(d, d);
            } else {
                const float *gr = dy + n * C + c;
                __m256 g = k == 8 ? _mm256_loadu_ps(gr) : _mm256_maskload_ps(gr, mask);
                f = _mm256_mul_ps(g, _mm256_sub_ps(v, mv));
                b0 = _mm256_add_pd(b0, _mm256_cvtps_pd(_mm256_castps256_ps128(g)));
                b1 = _mm256_add_pd(b1, _mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)));
            }
            a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
            a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
        }
        double t[8], u[8];
        _mm256_storeu_pd(t, a0);
        _mm256_storeu_pd(t + 4, a1);
        _mm256_storeu_pd(u, b0);
        _mm256_storeu_pd(u + 4, b1);
        for (int64_t j = 0; j < k; j++) {
            acc[c - c0 + j] = t[j];
            if (acc2) acc2[c - c0 + j] = u[j];
        }
    }
}

/* Channel ranges of the S == 1 loop: multiples of 8 channels, per thread. */
static inline void bn_cols_range(int64_t C, int nt, int t, int64_t *c0, int64_t *c1) {
    int64_t blocks = (C + 7) / 8;
    *c0 = blocks * t / nt * 8;
    *c1 = blocks * (t + 1) / nt * 8;
    if (*c1 > C) *c1 = C;
}

/* Sums for the gradients: sdy[c] = sum dy, sdx[c] = sum dy (x - m[c]). */
static int bn_grad_sums(const bn_geo *g, const float *x, const float *dy, const float *m, double *sdy, double *sdx) {
    int nt = bn_threads(g);
    if (g->S == 1) {
        if (nt > (g->C + 7) / 8) nt = (int)((g->C + 7) / 8);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int t = 0; t < nt; t++) {
            int64_t c0, c1;
            bn_cols_range(g->C, nt, t, &c0, &c1);
            if (c0 < c1) bn_cols(x, dy, m, g->N, g->C, c0, c1, 2, sdx + c0, sdy + c0);
        }
        return 0;
    }
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t c = 0; c < g->C; c++) {
        double a = 0, b = 0;
        for (int64_t n = 0; n < g->N; n++) {
            const float *xr = x + (n * g->C + c) * g->S, *gr = dy + (n * g->C + c) * g->S;
            a += sum_span(gr, g->S);
            b += bn_dev_dot(gr, xr, g->S, m[c]);
        }
        sdy[c] = a;
        sdx[c] = b;
    }
    return 0;
}

/* ---- BATCH_NORM_STATS: out (2, C) = (mean; biased var) <- {x} ---- */
static int avx2_bn_stats(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0], *o = a->out;
    bn_geo g;
    if (!bn_geo_of(x, &g) || !o || o->dtype != NB_DTYPE_F32 || o->ndim != 2 || o->shape[0] != 2 ||
        o->shape[1] != g.C || g.N * g.S == 0)   /* an empty batch: ref's NaN statistics */
        return NB_KERNEL_DECLINE;
    size_t db = (size_t)(2 * g.C) * sizeof(double);
    double *s = nb__alloc(db);
    if (!s) return nb__err(NB_ENOMEM, "batch_norm_stats: out of memory");
    double *q = s + g.C, M = (double)(g.N * g.S);
    const float *xp = nb_data(x);
    float *op = nb_data(o);
    int64_t os0 = o->stride[0], os1 = o->stride[1];
    int nt = bn_threads(&g);
    if (g.S == 1) {
        bn_vecs mv = {0};
        if (!bn_vecs_get(&mv, 1, g.C)) {
            nb__free(s, db);
            return nb__err(NB_ENOMEM, "batch_norm_stats: out of memory");
        }
        if (nt > (g.C + 7) / 8) nt = (int)((g.C + 7) / 8);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int t = 0; t < nt; t++) {
            int64_t c0, c1;
            bn_cols_range(g.C, nt, t, &c0, &c1);
            if (c0 < c1) {
                bn_cols(xp, NULL, NULL, g.N, g.C, c0, c1, 0, s + c0, NULL);
                for (int64_t c = c0; c < c1; c++) mv.v[c] = (float)(s[c] / M);
                bn_cols(xp, NULL, mv.v, g.N, g.C, c0, c1, 1, q + c0, NULL);
            }
        }
        for (int64_t c = 0; c < g.C; c++) {
            double mean = s[c] / M, d = mean - (double)mv.v[c], var = q[c] / M - d * d;
            op[c * os1] = (float)mean;
            op[os0 + c * os1] = (float)(var < 0 ? 0 : var);   /* NaN passes (ref's NaN for inf/NaN x) */
        }
        bn_vecs_free(&mv);
    } else {
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int64_t c = 0; c < g.C; c++) {
            /* one read of x from memory: each row's own two passes (the second
               from L1), the rows combined in double (Chan et al.):
               M2 = sum_r M2_r + sum_r S mu_r^2 - M mu^2, with every value
               shifted by the channel's first, K, so that the row means' F32
               sums stay exact enough for the spread between rows when
               |mean| >> std (1000 + 0.01 randn: 2e-4 off without) */
            float K = isfinite(xp[c * g.S]) ? xp[c * g.S] : 0.0f;   /* an inf K would make every value NaN */
            double sum = 0, m2 = 0, sq = 0, S = (double)g.S;
            for (int64_t n = 0; n < g.N; n++) {
                const float *row = xp + (n * g.C + c) * g.S;
                double s = bn_sum_shift(row, g.S, K), mu = s / S;
                float mr = (float)mu + K;   /* the row's mean, unshifted, in F32 */
                double d = mu + (double)K - (double)mr;
                m2 += ss_span(row, g.S, mr, NULL) - S * d * d;
                sum += s;
                sq += s * mu;
            }
            double mean = sum / M, var = (m2 + sq - sum * mean) / M;
            op[c * os1] = (float)(mean + K);
            op[os0 + c * os1] = (float)(var < 0 ? 0 : var);   /* NaN passes (ref's NaN for inf/NaN x) */
        }
    }
    nb__free(s, db);
    return 0;
}

/* The element-wise pass BATCH_NORM and BATCH_NORM_BACKWARD end with, per
 * channel, from 4 vectors of C floats v = (m, k1, k2, k3):
 *   x and dy given: out = k1 dy + k2 (x - m) + k3   (training dx)
 *   x only:         out = (x - m) k2 + k3           (y: k2 = w rstd, k3 = b)
 *   dy only:        out = k1 dy                     (eval dx: x is not read) */
static void bn_apply(const bn_geo *g, const float *x, const float *dy, float *out, const float *v) {
    if (!x) {   /* k1 dy: the S == 1 loop with m = k2 = k3 = 0 would read x; flat instead */
        const float *k1 = v + g->C;
        int64_t rows = g->N * (g->S == 1 ? 1 : g->C), len = g->S == 1 ? g->C : g->S;
        int nt = bn_threads(g);
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *gr = dy + r * len;
            float *orow = out + r * len;
            if (g->S == 1) {
                ROWS8(len, i, { ST(orow + i, _mm256_mul_ps(LD(k1 + i), LD(gr + i))); });
            } else {
                __m256 a = V1(k1[r % g->C]);
                ROWS8(len, i, { ST(orow + i, _mm256_mul_ps(a, LD(gr + i))); });
            }
        }
        return;
    }
    const float *m = v, *k1 = v + g->C, *k2 = v + 2 * g->C, *k3 = v + 3 * g->C;
    int nt = bn_threads(g);
    if (g->S == 1) {
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
        for (int64_t n = 0; n < g->N; n++) {
            const float *xr = x + n * g->C, *gr = dy ? dy + n * g->C : NULL;
            float *orow = out + n * g->C;
            ROWS8(g->C, i, {
                __m256 t = _mm256_fmadd_ps(_mm256_sub_ps(LD(xr + i), LD(m + i)), LD(k2 + i), LD(k3 + i));
                if (gr) t = _mm256_fmadd_ps(LD(k1 + i), LD(gr + i), t);
                ST(orow + i, t);
            });
        }
        return;
    }
    /* an output larger than the caches goes out with streaming stores, row
       by row where the row starts on a 32-byte boundary and S % 8 == 0 */
    bool big = g->N * g->C * g->S >= NT_MINTOTAL && ROWS_NT;
#pragma omp parallel for num_threads(nb__par_team(nt)) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < g->N * g->C; r++) {
        int64_t c = r % g->C;
        const float *xr = x + r * g->S, *gr = dy ? dy + r * g->S : NULL;
        float *orow = out + r * g->S;
        __m256 mv = V1(m[c]), a = V1(k1[c]), b = V1(k2[c]), d = V1(k3[c]);
        if (big && g->S % 8 == 0 && ((uintptr_t)orow & 31) == 0) {
            for (int64_t i = 0; i < g->S; i += 8) {
                __m256 t = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mv), b, d);
                if (gr) t = _mm256_fmadd_ps(a, _mm256_loadu_ps(gr + i), t);
                _mm256_stream_ps(orow + i, t);
            }
        } else if (gr) {
            ROWS8(g->S, i, {
                __m256 t = _mm256_fmadd_ps(_mm256_sub_ps(LD(xr + i), mv), b, d);
                ST(orow + i, _mm256_fmadd_ps(a, LD(gr + i), t));
            });
        } else {
            ROWS8(g->S, i, { ST(orow + i, _mm256_fmadd_ps(_mm256_sub_ps(LD(xr + i), mv), b, d)); });
        }
    }
    if (big) _mm_sfence();   /* the streamed rows ordered before any later read */
}

/* mean and rstd of each channel from stats rows 0 and 1: m[c], r[c]. */
static bool bn_mean_rstd(const nb_tensor *stats, int64_t C, double eps, float *m, float *r) {
    if (!vec_row(stats, 0, C, 0, m) || !vec_row(stats, 1, C, 0, r)) return false;
    for (int64_t c = 0; c < C; c++) r[c] = (float)(1.0 / sqrt((double)r[c] + eps));
    return true;
}

/* ---- BATCH_NORM: y <- {x, stats, w, b}; scalar {eps} ---- */
int nb__avx2_bnorm_fwd_off = 0;   /* tests of the oneDNN kernel below it set it */
static int avx2_bn_forward(const nb_kernel_args *a) {
    const nb_tensor *x = a->in[0];
    bn_geo g;
    if (nb__avx2_bnorm_fwd_off || !bn_geo_of(x, &g) || !bn_like(a->out, x)) return NB_KERNEL_DECLINE;
    if (g.N * g.C * g.S == 0) return 0;
    bn_vecs v = {0};
    if (!bn_vecs_get(&v, 5, g.C)) return nb__err(NB_ENOMEM, "batch_norm: out of memory");
    float *m = v.v, *k2 = v.v + 2 * g.C, *k3 = v.v + 3 * g.C, *w = v.v + 4 * g.C;
    if (!bn_mean_rstd(a->in[1], g.C, a->scalar[0], m, k2) || !vec_row(a->in[2], 0, g.C, 1.0f, w) ||
        !vec_row(a->in[3], 0, g.C, 0.0f, k3)) {
        bn_vecs_free(&v);
        return NB_KERNEL_DECLINE;
    }
    for (int64_t c = 0; c < g.C; c++) {
        k2[c] *= w[c];          /* scale w rstd; k3 is b */
        v.v[g.C + c] = 0.0f;    /* k1 (dy's factor) is not used here: set, not left unread-uninitialized */
    }
    bn_apply(&g, nb_data(x), NULL, nb_data(a->out), v.v);
    bn_vecs_free(&v);
    return 0;
}

/* ---- BATCH_NORM_PARAM_BACKWARD: out (2, C) = (sum dy x̂; sum dy) <- {dy, x, stats}; scalar {eps} ---- */
static int avx2_bn_param_backward(const nb_kernel_args *a) {
    const nb_tensor *dy = a->in[0], *x = a->in[1], *o = a->out;
    bn_geo g;
    if (!bn_geo_of(x, &g) || !bn_like(dy, x) || !o || o->dtype != NB_DTYPE_F32 || o->ndim != 2 ||
        o->shape[0] != 2 || o->shape[1] != g.C)
        return NB_KERNEL_DECLINE;
    if (g.C == 0) return 0;
    bn_vecs v = {0};
    size_t db = (size_t)(2 * g.C) * sizeof(double);
    double *s = nb__alloc(db);
    if (!s || !bn_vecs_get(&v, 2, g.C)) {
        if (s) nb__free(s, db);
        return nb__err(NB_ENOMEM, "batch_norm_param_backward: out of memory");
    }
    int rc = 0;
    float *m = v.v, *r = v.v + g.C, *op = nb_data(o);
    if (!bn_mean_rstd(a->in[2], g.C, a->scalar[0], m, r)) {
        rc = NB_KERNEL_DECLINE;
    } else {
        if (g.N * g.S > 0) bn_grad_sums(&g, nb_data(x), nb_data(dy), m, s, s + g.C);
        else memset(s, 0, db);
        for (int64_t c = 0; c < g.C; c++) {
            op[c * o->stride[1]] = (float)(s[g.C + c] * r[c]);
            op[o->stride[0] + c * o->stride[1]] = (float)s[c];
        }
    }
    nb__free(s, db);
    bn_vecs_free(&v);
    return rc;
}

/* ---- BATCH_NORM_BACKWARD: dx <- {dy, x, stats (2 or 4, C), w}; scalar {eps, training} ---- */
static int avx2_bn_backward(const nb_kernel_args *a) {
    const nb_tensor *dy = a->in[0], *x = a->in[1], *st = a->in[2];
    bn_geo g;
    if (!bn_geo_of(x, &g) || !bn_like(dy, x) || !bn_like(a->out, x) || !st) return NB_KERNEL_DECLINE;
    if (g.N * g.C * g.S == 0) return 0;
    bool training = a->scalar[1] != 0;
    bn_vecs v = {0};
    if (!bn_vecs_get(&v, 7, g.C)) return nb__err(NB_ENOMEM, "batch_norm_backward: out of memory");
    float *m = v.v, *k1 = v.v + g.C, *k2 = v.v + 2 * g.C, *k3 = v.v + 3 * g.C;
    float *r = v.v + 4 * g.C, *dw = v.v + 5 * g.C, *dbias = v.v + 6 * g.C;
    int rc = 0;
    if (!bn_mean_rstd(st, g.C, a->scalar[0], m, r) || !vec_row(a->in[3], 0, g.C, 1.0f, k1)) rc = NB_KERNEL_DECLINE;
    bool sums = training && !rc && st->ndim == 2 && st->shape[0] == 4;
    if (sums && (!vec_row(st, 2, g.C, 0, dw) || !vec_row(st, 3, g.C, 0, dbias))) rc = NB_KERNEL_DECLINE;
    if (!rc && training && !sums) {   /* the sums, here */
        size_t db = (size_t)(2 * g.C) * sizeof(double);
        double *s = nb__alloc(db);
        if (!s) {
            rc = nb__err(NB_ENOMEM, "batch_norm_backward: out of memory");
        } else {
            bn_grad_sums(&g, nb_data(x), nb_data(dy), m, s, s + g.C);
            for (int64_t c = 0; c < g.C; c++) {
                dw[c] = (float)(s[g.C + c] * r[c]);
                dbias[c] = (float)s[c];
            }
            nb__free(s, db);
        }
    }
    if (!rc) {
        float inv = (float)(1.0 / (double)(g.N * g.S));
        for (int64_t c = 0; c < g.C; c++) {
            float A = k1[c] * r[c];   /* w rstd */
            k1[c] = A;
            k2[c] = training ? -A * r[c] * (dw[c] * inv) : 0.0f;
            k3[c] = training ? -A * (dbias[c] * inv) : 0.0f;
        }
        bn_apply(&g, training ? nb_data(x) : NULL, nb_data(dy), nb_data(a->out), v.v);
    }
    bn_vecs_free(&v);
    return rc;
}

void nb__avx2_bnorm_register(void) {
    static const nb_kernel_desc ks[] = {
        {NB_OP_BATCH_NORM_STATS, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_batch_norm_stats", 10, avx2_bn_stats},
        {NB_OP_BATCH_NORM, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_batch_norm", 20, avx2_bn_forward},
        {NB_OP_BATCH_NORM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_batch_norm_backward", 10, avx2_bn_backward},
        {NB_OP_BATCH_NORM_PARAM_BACKWARD, NB_DTYPE_F32, NB_ISA_AVX2, "avx2_batch_norm_param_backward", 10,
         avx2_bn_param_backward},
    };
    NB__REGISTER_ALL(ks);
}
