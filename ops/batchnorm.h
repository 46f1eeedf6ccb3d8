/*
 * ops/batchnorm.h — CPU kernels of ops/batchnorm.c (callable from tests/benchmarks).
 * Layout NCHW, contiguous; every kernel sees x as (N, C, HW) with HW = H * W, and the
 * per-channel statistics as C floats. The op derives them; the kernels only compute.
 */
#ifndef TG_OPS_BATCHNORM_H
#define TG_OPS_BATCHNORM_H

#include <stdbool.h>
#include <stdint.h>

/* Batch statistics per channel over (N, HW), accumulated in double, two passes.
 * x (N, C, HW) read; mean (C) written; var (C) written with the BIASED variance
 * (divided by N * HW). */
void batchnorm_stats_cpu(float *mean, float *var, const float *x, int64_t N, int64_t C,
                         int64_t HW);

/* y = (x - mean[c]) * rstd[c] * weight[c] + bias[c].
 * y (N, C, HW) written; x (N, C, HW) read; mean, rstd (C) read (batch statistics in
 * training, running ones in eval); weight, bias (C) read, each may be NULL (1 and 0). */
void batchnorm_forward_cpu(float *y, const float *x, const float *mean, const float *rstd,
                           const float *weight, const float *bias, int64_t N, int64_t C,
                           int64_t HW);

/* Backward of batchnorm_forward_cpu; with xhat = (x - mean) rstd and w = weight[c] (1 when
 * weight is NULL), per channel over its n = N * HW values:
 *   training: dx += w rstd (dy - sum(dy) / n - xhat sum(dy xhat) / n)
 *   eval:     dx += w rstd dy            (mean and rstd are constants)
 *   dweight += sum(dy xhat),  dbias += sum(dy)
 * dx (N, C, HW), dweight, dbias (C) accumulated, each skipped when NULL; dy, x
 * (N, C, HW) read; mean, rstd (C) read (the ones the forward used); weight (C) read or
 * NULL. */
void batchnorm_backward_cpu(float *dx, float *dweight, float *dbias, const float *dy,
                            const float *x, const float *mean, const float *rstd,
                            const float *weight, int64_t N, int64_t C, int64_t HW,
                            bool training);

#endif
