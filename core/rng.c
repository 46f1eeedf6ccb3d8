/*
 * core/rng.c — xoshiro256** seeded through splitmix64, Box-Muller normals, and
 * PyTorch's default initialisation for conv and linear layers.
 */
#include "core.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tg_rng_seed(tg_rng *rng, uint64_t seed) {
    if (!rng) {
        tg_fail(TG_ERR_ARG, "tg_rng_seed: argument 'rng' is NULL; hint: declare a tg_rng "
                "and pass its address (tg_rng rng; tg_rng_seed(&rng, 42))");
        return;
    }
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tg_rng_next(tg_rng *rng) {
    if (!rng) {
        tg_fail(TG_ERR_ARG, "tg_rng: argument 'rng' is NULL");
        return 0;
    }
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* 53 random bits -> [0, 1). */
double tg_rng_uniform(tg_rng *rng) { return (double)(tg_rng_next(rng) >> 11) * 0x1.0p-53; }

double tg_rng_normal(tg_rng *rng) {
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - tg_rng_uniform(rng), u2 = tg_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

int64_t tg_rng_below(tg_rng *rng, int64_t n) {
    if (n <= 1) return 0;
    /* Rejection sampling: no modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % (uint64_t)n;
    uint64_t r;
    do r = tg_rng_next(rng);
    while (r >= limit);
    return (int64_t)(r % (uint64_t)n);
}

void tg_rng_fill_uniform(tg_rng *rng, float *x, int64_t n, float lo, float hi) {
    if (!rng || (!x && n > 0)) {
        tg_fail(TG_ERR_ARG, "tg_rng_fill_uniform: argument '%s' is NULL", rng ? "x" : "rng");
        return;
    }
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)tg_rng_uniform(rng);
}

void tg_rng_fill_normal(tg_rng *rng, float *x, int64_t n, float mean, float std) {
    if (!rng || (!x && n > 0)) {
        tg_fail(TG_ERR_ARG, "tg_rng_fill_normal: argument '%s' is NULL", rng ? "x" : "rng");
        return;
    }
    for (int64_t i = 0; i < n; i++) x[i] = mean + std * (float)tg_rng_normal(rng);
}

/* How a tensor is filled on the host before it goes to its device. */
typedef enum fill_kind { FILL_CONSTANT, FILL_UNIFORM, FILL_NORMAL } fill_kind;

/* Fill t (either device) with a constant, U(a, b) or N(a, b^2) drawn on the host: in
 * place on the CPU, through a host buffer and one copy on CUDA. */
static tg_status fill_tensor(const char *what, tg_rng *rng, tg_tensor *t, fill_kind kind,
                             float a, float b) {
    if (!t) return tg_fail(TG_ERR_ARG, "%s: argument 't' is NULL", what);
    if (!rng && kind != FILL_CONSTANT) return tg_fail(TG_ERR_ARG, "%s: argument 'rng' is NULL", what);
    if (!t->data) return tg_fail(TG_ERR_ARG, "%s: the tensor has no data", what);
    float *host = t->device == TG_DEVICE_CPU ? t->data : malloc((size_t)t->numel * sizeof *host);
    if (!host) return tg_fail(TG_ERR_NOMEM, "%s: out of memory for %lld values", what,
                              (long long)t->numel);
    switch (kind) {
    case FILL_CONSTANT:
        for (int64_t i = 0; i < t->numel; i++) host[i] = a;
        break;
    case FILL_UNIFORM: tg_rng_fill_uniform(rng, host, t->numel, a, b); break;
    case FILL_NORMAL: tg_rng_fill_normal(rng, host, t->numel, a, b); break;
    }
    tg_status st = TG_OK;
    if (host != t->data) {
        st = tg_device_copy(t->device, t->data, TG_DEVICE_CPU, host,
                            (size_t)t->numel * sizeof *host);
        free(host);
    }
    return st;
}

static tg_status fill_param_uniform(tg_rng *rng, tg_tensor *t, float bound) {
    return fill_tensor("init", rng, t, FILL_UNIFORM, -bound, bound);
}

tg_status tg_init_constant(tg_tensor *t, float value) {
    return fill_tensor("tg_init_constant", NULL, t, FILL_CONSTANT, value, 0);
}

tg_status tg_init_uniform(tg_rng *rng, tg_tensor *t, float lo, float hi) {
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi))
        return tg_fail(TG_ERR_ARG, "tg_init_uniform: the range [%g, %g) is not a finite "
                       "interval with lo <= hi", lo, hi);
    return fill_tensor("tg_init_uniform", rng, t, FILL_UNIFORM, lo, hi);
}

tg_status tg_init_normal(tg_rng *rng, tg_tensor *t, float mean, float std) {
    if (!(std >= 0) || !isfinite(mean) || !isfinite(std))
        return tg_fail(TG_ERR_ARG, "tg_init_normal: mean %g and std %g must be finite, std "
                       ">= 0", mean, std);
    return fill_tensor("tg_init_normal", rng, t, FILL_NORMAL, mean, std);
}

tg_status tg_init_batchnorm(tg_tensor *weight, tg_tensor *bias) {
    if (weight && bias && weight->numel != bias->numel) {
        char s1[64], s2[64];
        return tg_fail(TG_ERR_SHAPE, "tg_init_batchnorm: weight %s and bias %s differ in size",
                       tg_shape_str(weight->shape, s1, sizeof s1),
                       tg_shape_str(bias->shape, s2, sizeof s2));
    }
    tg_status st = weight ? fill_tensor("tg_init_batchnorm", NULL, weight, FILL_CONSTANT, 1, 0)
                          : TG_OK;
    if (st == TG_OK && bias) st = fill_tensor("tg_init_batchnorm", NULL, bias, FILL_CONSTANT, 0, 0);
    return st;
}

/* kaiming_uniform_(w, a=sqrt(5)): gain = sqrt(2 / (1 + 5)), bound = gain * sqrt(3 / fan_in)
 * = 1 / sqrt(fan_in). The bias uses the same bound. fan_in = numel / out_features. */
static tg_status init_default(const char *what, tg_rng *rng, tg_tensor *weight,
                              tg_tensor *bias, int min_dims, int max_dims) {
    if (!rng || !weight) {
        return tg_fail(TG_ERR_ARG, "%s: %s is NULL", what, rng ? "weight" : "rng");
    }
    if (weight->shape.ndim < min_dims || weight->shape.ndim > max_dims ||
        weight->shape.dim[0] <= 0) {
        char s[64];
        return tg_fail(TG_ERR_SHAPE, "%s: weight has shape %s; expected %d to %d dims with "
                       "out_features first", what, tg_shape_str(weight->shape, s, sizeof s),
                       min_dims, max_dims);
    }
    int64_t fan_in = weight->numel / weight->shape.dim[0];
    if (bias && bias->numel != weight->shape.dim[0]) {
        char s1[64], s2[64];
        return tg_fail(TG_ERR_SHAPE, "%s: bias has shape %s but weight %s has %lld outputs",
                       what, tg_shape_str(bias->shape, s1, sizeof s1),
                       tg_shape_str(weight->shape, s2, sizeof s2),
                       (long long)weight->shape.dim[0]);
    }
    float bound = fan_in > 0 ? (float)(1.0 / sqrt((double)fan_in)) : 0.0f;
    tg_status st = fill_param_uniform(rng, weight, bound);
    if (st == TG_OK && bias) st = fill_param_uniform(rng, bias, bound);
    return st;
}

tg_status tg_init_conv2d(tg_rng *rng, tg_tensor *weight, tg_tensor *bias) {
    return init_default("tg_init_conv2d", rng, weight, bias, 3, 4);
}

tg_status tg_init_linear(tg_rng *rng, tg_tensor *weight, tg_tensor *bias) {
    return init_default("tg_init_linear", rng, weight, bias, 2, 2);
}
