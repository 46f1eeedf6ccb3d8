/*
 * ops/linear.h — CPU kernels of ops/linear.c (callable from tests/benchmarks).
 * Row-major, contiguous. N: batch, in: input features, out: output features.
 */
#ifndef TG_OPS_LINEAR_H
#define TG_OPS_LINEAR_H

#include <stdbool.h>
#include <stdint.h>

/* y = x W^T + b.
 * y (N, out) written; x (N, in) read; weight (out, in) read; bias (out) read or NULL. */
void linear_forward_cpu(float *y, const float *x, const float *weight, const float *bias,
                        int64_t N, int64_t in, int64_t out);

/* dx += dy W, dweight += dy^T x, dbias += sum_n dy (each skipped when NULL).
 * dx (N, in), dweight (out, in), dbias (out) accumulated (dx written when dx_fresh: the
 * tape's tg_grad_fresh); dy (N, out), x (N, in), weight (out, in) read. */
void linear_backward_cpu(float *dx, float *dweight, float *dbias, const float *dy,
                         const float *x, const float *weight, int64_t N, int64_t in,
                         int64_t out, bool dx_fresh);

#endif
