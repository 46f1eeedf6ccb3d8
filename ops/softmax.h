/*
 * ops/softmax.h — CPU kernels of ops/softmax.c (callable from tests and benchmarks), and
 * the dim helpers the part-C ops share.
 *
 * A tensor reduced along one dim is viewed as (outer, D, inner): D the size of the dim,
 * outer the product of the dims before it, inner of those after it. Element (o, d, i) is
 * at (o D + d) inner + i, so the softmax of position (o, i) runs over D values inner
 * apart (contiguous when inner = 1, the last dim).
 */
#ifndef TG_OPS_SOFTMAX_H
#define TG_OPS_SOFTMAX_H

#include <stdbool.h>
#include <stdint.h>

#include "../include/tapegrad.h"

/* A Python-style dim (-ndim .. ndim-1) as 0 .. ndim-1; -1 and an error naming op, the
 * argument, x's shape and the valid range when out of range. */
int tg_dim_normalize(const char *op, const char *arg, int dim, tg_shape shape);
/* outer, D, inner of `shape` around dim (0 .. ndim-1). */
void tg_dim_split(tg_shape shape, int dim, int64_t *outer, int64_t *D, int64_t *inner);

/* y (outer, D, inner) = softmax (log_softmax when log) of x along D. x read, y written. */
void softmax_forward_cpu(float *y, const float *x, int64_t outer, int64_t D, int64_t inner,
                         bool log);
/* dx (outer, D, inner) += the input gradient given dy and the forward output y:
 *   softmax:      dx += y (dy - sum_D dy y)
 *   log_softmax:  dx += dy - exp(y) sum_D dy
 * dy, y read. */
void softmax_backward_cpu(float *dx, const float *dy, const float *y, int64_t outer, int64_t D,
                          int64_t inner, bool log);

/* y (B, T, T) = x with y[b, i, j] = -inf where j > i. */
void causal_mask_forward_cpu(float *y, const float *x, int64_t B, int64_t T);
/* dx (B, T, T) += dy where j <= i. */
void causal_mask_backward_cpu(float *dx, const float *dy, int64_t B, int64_t T);

#endif
