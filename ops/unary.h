/*
 * ops/unary.h — kernels of ops/unary.c, and the per-element math they share with
 * cuda/unary.cu (the same inline functions compile for the host and the device, so the
 * two backends differ only in the rounding of expf/tanhf/erff).
 */
#ifndef TG_OPS_UNARY_H
#define TG_OPS_UNARY_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define TG_HD __host__ __device__ static inline
#else
#define TG_HD static inline
#endif

typedef enum unary_kind {
    UNARY_ADD_SCALAR = 0, /* x + c */
    UNARY_SCALE,          /* c * x */
    UNARY_NEG,            /* -x */
    UNARY_EXP,            /* e^x */
    UNARY_LOG,            /* ln x */
    UNARY_SQRT,           /* sqrt x */
    UNARY_POW,            /* x^c */
    UNARY_TANH,           /* tanh x */
    UNARY_SIGMOID,        /* 1 / (1 + e^-x) */
    UNARY_GELU,           /* x Phi(x), Phi the standard normal CDF (erf form) */
    UNARY_GELU_TANH,      /* x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    UNARY_SILU,           /* x sigmoid(x) */
    UNARY_LEAKY_RELU,     /* x > 0 ? x : c x */
    UNARY_CLAMP,          /* min(max(x, lo), hi) */
    UNARY_KIND_COUNT
} unary_kind;

/* The constants of an op: c (add_scalar, scale, pow's exponent, leaky_relu's slope),
 * lo and hi (clamp). */
typedef struct unary_args {
    float c, lo, hi;
} unary_args;

#define TG_GELU_TANH_BETA 0.7978845608028654f /* sqrt(2 / pi) */
#define TG_GELU_TANH_KAPPA 0.044715f
#define TG_INV_SQRT2 0.7071067811865476f       /* 1 / sqrt 2 */
#define TG_INV_SQRT_2PI 0.3989422804014327f    /* 1 / sqrt(2 pi) */

/* Stable for both signs: never exp of a large positive number. */
TG_HD float tg_sigmoidf(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

TG_HD float tg_unary_value(unary_kind kind, float x, unary_args a) {
    switch (kind) {
    case UNARY_ADD_SCALAR: return x + a.c;
    case UNARY_SCALE: return a.c * x;
    case UNARY_NEG: return -x;
    case UNARY_EXP: return expf(x);
    case UNARY_LOG: return logf(x);
    case UNARY_SQRT: return sqrtf(x);
    case UNARY_POW: return powf(x, a.c);
    case UNARY_TANH: return tanhf(x);
    case UNARY_SIGMOID: return tg_sigmoidf(x);
    case UNARY_GELU: return 0.5f * x * (1.0f + erff(x * TG_INV_SQRT2));
    case UNARY_GELU_TANH: {
        float inner = TG_GELU_TANH_BETA * (x + TG_GELU_TANH_KAPPA * x * x * x);
        return 0.5f * x * (1.0f + tanhf(inner));
    }
    case UNARY_SILU: return x * tg_sigmoidf(x);
    case UNARY_LEAKY_RELU: return x > 0.0f ? x : a.c * x;
    case UNARY_CLAMP: return x < a.lo ? a.lo : x > a.hi ? a.hi : x; /* NaN stays NaN */
    default: return NAN;
    }
}

/* dy/dx at x (y = the forward's output there), the derivations in ops/unary.c. */
TG_HD float tg_unary_derivative(unary_kind kind, float x, float y, unary_args a) {
    switch (kind) {
    case UNARY_ADD_SCALAR: return 1.0f;
    case UNARY_SCALE: return a.c;
    case UNARY_NEG: return -1.0f;
    case UNARY_EXP: return y;
    case UNARY_LOG: return 1.0f / x;
    case UNARY_SQRT: return 0.5f / y;
    case UNARY_POW: return a.c == 0.0f ? 0.0f : a.c * powf(x, a.c - 1.0f);
    case UNARY_TANH: return 1.0f - y * y;
    case UNARY_SIGMOID: return y * (1.0f - y);
    case UNARY_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * TG_INV_SQRT2));
        return cdf + x * TG_INV_SQRT_2PI * expf(-0.5f * x * x);
    }
    case UNARY_GELU_TANH: {
        float x2 = x * x;
        float t = tanhf(TG_GELU_TANH_BETA * (x + TG_GELU_TANH_KAPPA * x2 * x));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * TG_GELU_TANH_BETA *
                                       (1.0f + 3.0f * TG_GELU_TANH_KAPPA * x2);
    }
    case UNARY_SILU: {
        float s = tg_sigmoidf(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case UNARY_LEAKY_RELU: return x > 0.0f ? 1.0f : a.c;
    case UNARY_CLAMP: return x >= a.lo && x <= a.hi ? 1.0f : 0.0f;
    default: return NAN;
    }
}

#ifdef __cplusplus
extern "C" {
#endif

/* out[n] = f(x[n]). x read; out written (may equal x). */
void unary_forward_cpu(float *out, const float *x, int64_t n, unary_kind kind, unary_args a);
/* dx[n] += dout[n] * f'(x[n]). x (the input) and y (the output) read: each kind reads
 * only what its derivative needs (see tg_unary_derivative); dx accumulated. */
void unary_backward_cpu(float *dx, const float *dout, const float *x, const float *y,
                        int64_t n, unary_kind kind, unary_args a);

#ifdef __cplusplus
}
#endif

#endif
