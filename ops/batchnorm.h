/*
 * ops/batchnorm.h — CPU kernels of ops/batchnorm.c (callable from tests/benchmarks).
 * Layout NCHW, contiguous; every kernel sees x as (N, C, HW) with HW = H * W, and the
 * per-channel statistics as C floats. The op derives them; the kernels only compute.
 */
#ifndef TG_OPS_BATCHNORM_H
#define TG_OPS_BATCHNORM_H

#include <stdbool.h>
#include <stdint.h>

#include "tapegrad.h"

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

/* Synchronised batchnorm (ops/batchnorm_sync.c): the same statistics and backward with
 * the sums taken over every rank of d (blocking MPI all-reduces of per-channel doubles).
 * n_total: values per channel over all ranks (written by stats, read by backward). */
tg_status batchnorm_sync_stats_cpu(tg_dist *d, float *mean, float *var, int64_t *n_total,
                                   const float *x, int64_t N, int64_t C, int64_t HW);
tg_status batchnorm_sync_backward_cpu(tg_dist *d, float *dx, float *dweight, float *dbias,
                                      const float *dy, const float *x, const float *mean,
                                      const float *rstd, const float *weight, int64_t N,
                                      int64_t C, int64_t HW, int64_t n_total);

#endif
