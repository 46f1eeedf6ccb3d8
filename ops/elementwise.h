/*
 * ops/elementwise.h — CPU kernels of ops/elementwise.c (binary ops with broadcasting).
 */
#ifndef TG_OPS_ELEMENTWISE_H
#define TG_OPS_ELEMENTWISE_H

#include "broadcast.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum binary_kind {
    BINARY_ADD = 0, /* a + b */
    BINARY_SUB = 1, /* a - b */
    BINARY_MUL = 2, /* a * b */
    BINARY_DIV = 3, /* a / b */
} binary_kind;

/* The elementwise factor of a gradient term, evaluated over the output's elements:
 * g = dL/dy and y (both out-shaped), o = the OTHER operand (broadcast, plan's b). */
typedef enum binary_term {
    BINARY_TERM_MUL = 0,   /* g * o          (d(a*b)/da with o = b; /db with o = a) */
    BINARY_TERM_DIV_A = 1, /* g / o          (d(a/b)/da, o = b) */
    BINARY_TERM_DIV_B = 2, /* -g * y / o     (d(a/b)/db = -a/b^2 = -y/b, o = b) */
} binary_term;

#ifdef __cplusplus
extern "C" {
#endif

/* out[n] = a[n] + b[n], same shapes. a, b read; out written (may alias neither). */
void add_forward_cpu(float *out, const float *a, const float *b, int64_t n);
/* dst[n] += src[n]: the backward of add for each operand, and of reshape. */
void accumulate_cpu(float *dst, const float *src, int64_t n);

/* out (plan's output) = a op b, a and b read through the plan's strides (broadcast).
 * out written; it may alias neither input. */
void binary_forward_cpu(float *out, const float *a, const float *b, const tg_bcast *p,
                        binary_kind kind);
/* dst (plan's output) = term(g, y, o), or += when accumulate. p = tg_bcast_plan(out,
 * out, other's shape): g and y are out-shaped (plan's a strides), o is the other
 * operand (plan's b strides). y may be NULL unless term is BINARY_TERM_DIV_B. */
void binary_term_cpu(float *dst, bool accumulate, const float *g, const float *y,
                     const float *o, const tg_bcast *p, binary_term term);

#ifdef __cplusplus
}
#endif

#endif
