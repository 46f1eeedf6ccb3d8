/*
 * ops/layernorm.h — CPU kernels of ops/layernorm.c (callable from tests and benchmarks).
 * x is viewed as (rows, M): M the product of the normalised (trailing) dims.
 */
#ifndef TG_OPS_LAYERNORM_H
#define TG_OPS_LAYERNORM_H

#include <stdint.h>

/* y (rows, M) = (x - mean) rstd weight + bias per row; mean, rstd (rows) written;
 * weight, bias (M) or NULL. x read. */
void layernorm_forward_cpu(float *y, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias, int64_t rows, int64_t M,
                           float eps);
/* Floats of the `partial` workspace layernorm_backward_cpu needs. */
int64_t layernorm_partials(int64_t rows, int64_t M);
/* dx (rows, M), dweight, dbias (M) accumulated, each skipped when NULL; dy, x (rows, M),
 * mean, rstd (rows), weight (M) or NULL read; partial: scratch. */
void layernorm_backward_cpu(float *dx, float *dweight, float *dbias, float *partial,
                            const float *dy, const float *x, const float *mean,
                            const float *rstd, const float *weight, int64_t rows, int64_t M);

#endif
