/*
 * ops/elementwise.h — CPU kernels of ops/elementwise.c.
 */
#ifndef TG_OPS_ELEMENTWISE_H
#define TG_OPS_ELEMENTWISE_H

#include <stdint.h>

/* out[n] = a[n] + b[n]. a, b read; out written (may alias neither). */
void add_forward_cpu(float *out, const float *a, const float *b, int64_t n);
/* dst[n] += src[n]: the backward of add for each operand, and of reshape. */
void accumulate_cpu(float *dst, const float *src, int64_t n);

#endif
