/*
 * ops/unary.h — kernels of ops/unary.c, and the per-element math they share with
 * cuda/unary.cu (the same inline functions compile for the host and the device: exp,
 * tanh and the normal CDF are our own vectorisable ones on both, so the backends differ
 * only in logf/powf, the libm calls left, and in FMA contraction on the device).
 */
#ifndef TG_OPS_UNARY_H
#define TG_OPS_UNARY_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define TG_UNARY_FN __host__ __device__ static inline
#else
#define TG_UNARY_FN static inline
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

/* e^x within 1 ulp (measured over [-87, 88.7] against double exp), written without
 * calls or branches so the CPU loops vectorise (glibc's expf is a scalar call).
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, with ln2 split in a part exact in
 * float and a correction; e^r by a degree-7 polynomial (Taylor-like coefficients fitted
 * for float, the classic Cephes set); then 2^n built in the exponent bits. n is rounded
 * by adding and subtracting 1.5 * 2^23 (floorf would block vectorisation). Results
 * below 2^-126 (x < -87.34) flush to 0; x > 88.72 gives inf; NaN stays NaN. */
TG_UNARY_FN float tg_expf(float x) {
    const float lo = -87.33654f, hi = 88.72283f;
    float xc = x < lo ? lo : x > hi ? hi : x;
    xc = xc == xc ? xc : 0.0f; /* NaN: compute anything finite, replaced below */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    float twice = n > 127.0f ? 2.0f : 1.0f; /* 2^128 is not a float: 2 * 2^127 */
    n = n > 127.0f ? 127.0f : n;
    int32_t bits = ((int32_t)n + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale * twice;
    y = x < lo ? 0.0f : y;
    y = x > hi ? INFINITY : y;
    return x != x ? x : y;
}

/* tanh x within 2 ulp: for |x| < 0.4 its odd Taylor series to x^11 (the next term is
 * below 1e-7 relative there); beyond, 1 - 2/(e^2|x| + 1) with the sign of x, where the
 * subtraction no longer cancels badly. */
TG_UNARY_FN float tg_tanhf(float x) {
    float ax = fabsf(x), x2 = x * x;
    float s = -1382.0f / 155925.0f;
    s = s * x2 + 62.0f / 2835.0f;
    s = s * x2 - 17.0f / 315.0f;
    s = s * x2 + 2.0f / 15.0f;
    s = s * x2 - 1.0f / 3.0f;
    s = x + x * x2 * s;
    float big = 1.0f - 2.0f / (tg_expf(2.0f * ax) + 1.0f);
    return ax < 0.4f ? s : copysignf(big, x);
}

/* Phi(x) = (1 + erf(x/sqrt2))/2, the standard normal CDF, within about 8 ulp relative
 * (measured over [-14, 10] against double erfc; tails included), branch-free so the
 * GELU loops vectorise (glibc's erff is a scalar call). With z = |x|/sqrt2:
 *   z < 0.5:  erf(z) = 2/sqrt(pi) sum_k (-1)^k z^(2k+1) / (k! (2k+1)), 8 terms
 *   z >= 0.5: erfc(z) = e^(-z^2) g(u), u = 1/(1 + z/2), g a degree-8 polynomial fitted
 *             to erfc(z) e^(z^2) on [0.5, 10] (tools/fit_erfc.py; 4.5e-8 relative), and
 *             Phi = erfc(z)/2 for x < 0 (no cancellation in the left tail),
 *             1 - erfc(z)/2 for x > 0.
 * e^(-x^2/2) is taken as e^(-xh^2/2) e^(-(x-xh)(x+xh)/2) with xh = x rounded to 7
 * fraction bits, so xh^2 is exact: rounding x^2 would cost x^2 * 6e-8 relative. */
TG_UNARY_FN float tg_normal_cdff(float x) {
    float ax = fabsf(x), z = ax * TG_INV_SQRT2, z2 = z * z;
    float s = 1.0f / 75600.0f;
    s = s * z2 - 1.0f / 9360.0f;
    s = s * z2 + 1.0f / 1320.0f;
    s = s * z2 - 1.0f / 216.0f;
    s = s * z2 + 1.0f / 42.0f;
    s = s * z2 - 1.0f / 10.0f;
    s = s * z2 + 1.0f / 3.0f;
    s = s * z2 - 1.0f;
    float erf_small = -1.1283791670955126f * z * s; /* 2/sqrt(pi) z (1 - z^2/3 + ...) */
    float small = 0.5f + 0.5f * copysignf(erf_small, x);
    float u = 1.0f / (1.0f + 0.5f * z);
    float g = 4.101753411e-02f;
    g = g * u - 5.304229754e-02f;
    g = g * u - 1.604779280e-01f;
    g = g * u + 2.496551492e-01f;
    g = g * u + 9.024337822e-02f;
    g = g * u + 2.726344400e-01f;
    g = g * u + 2.775546733e-01f;
    g = g * u + 2.825298217e-01f;
    g = g * u - 1.749533735e-05f;
    float xh = (ax + 65536.0f) - 65536.0f; /* 7 fraction bits for ax < 32 */
    float e = tg_expf(-0.5f * xh * xh) * tg_expf(-0.5f * (ax - xh) * (ax + xh));
    float half_erfc = z > 10.0f ? 0.0f : 0.5f * e * g; /* erfc(10) < 1e-44 */
    float big = x < 0.0f ? half_erfc : 1.0f - half_erfc;
    return z < 0.5f ? small : big;
}

/* Stable for both signs: e^-x overflows to inf for very negative x, giving 0. */
TG_UNARY_FN float tg_sigmoidf(float x) { return 1.0f / (1.0f + tg_expf(-x)); }

TG_UNARY_FN float tg_unary_value(unary_kind kind, float x, unary_args a) {
    switch (kind) {
    case UNARY_ADD_SCALAR: return x + a.c;
    case UNARY_SCALE: return a.c * x;
    case UNARY_NEG: return -x;
    case UNARY_EXP: return tg_expf(x);
    case UNARY_LOG: return logf(x);
    case UNARY_SQRT: return sqrtf(x);
    case UNARY_POW: return powf(x, a.c);
    case UNARY_TANH: return tg_tanhf(x);
    case UNARY_SIGMOID: return tg_sigmoidf(x);
    case UNARY_GELU: return x * tg_normal_cdff(x);
    case UNARY_GELU_TANH: {
        float inner = TG_GELU_TANH_BETA * (x + TG_GELU_TANH_KAPPA * x * x * x);
        return 0.5f * x * (1.0f + tg_tanhf(inner));
    }
    case UNARY_SILU: return x * tg_sigmoidf(x);
    case UNARY_LEAKY_RELU: return x > 0.0f ? x : a.c * x;
    case UNARY_CLAMP: return x < a.lo ? a.lo : x > a.hi ? a.hi : x; /* NaN stays NaN */
    default: return NAN;
    }
}

/* dy/dx at x (y = the forward's output there), the derivations in ops/unary.c. */
TG_UNARY_FN float tg_unary_derivative(unary_kind kind, float x, float y, unary_args a) {
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
        return tg_normal_cdff(x) + x * TG_INV_SQRT_2PI * tg_expf(-0.5f * x * x);
    }
    case UNARY_GELU_TANH: {
        float x2 = x * x;
        float t = tg_tanhf(TG_GELU_TANH_BETA * (x + TG_GELU_TANH_KAPPA * x2 * x));
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
