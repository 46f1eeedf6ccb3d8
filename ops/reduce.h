/*
 * ops/reduce.h — CPU kernels of ops/reduce.c (callable from tests and benchmarks).
 *
 * A reduction along one dim sees x as (outer, n, inner): n is the reduced dim, outer the
 * product of the dims before it, inner of the dims after it; the result is (outer, inner).
 * A reduction over everything is outer = inner = 1, n = numel.
 */
#ifndef TG_OPS_REDUCE_H
#define TG_OPS_REDUCE_H

#include <stdint.h>

/* out (outer, inner) written = scale * sum_j x[o, j, i]; x (outer, n, inner) read. */
void sum_forward_cpu(float *out, const float *x, int64_t outer, int64_t n, int64_t inner,
                     float scale);
/* dx (outer, n, inner) += scale * dout[o, i]; dout (outer, inner) read. */
void sum_backward_cpu(float *dx, const float *dout, int64_t outer, int64_t n, int64_t inner,
                      float scale);

/* out (outer, inner) written = max_j x[o, j, i]; argmax (outer, inner) written (the FIRST
 * j holding the maximum; a NaN is the maximum, as in PyTorch) or NULL. */
void max_forward_cpu(float *out, int64_t *argmax, const float *x, int64_t outer, int64_t n,
                     int64_t inner);
/* dx (outer, n, inner) += dout[o, i] at j = argmax[o, i]; dout, argmax (outer, inner). */
void max_backward_cpu(float *dx, const float *dout, const int64_t *argmax, int64_t outer,
                      int64_t n, int64_t inner);
/* The number of elements of x (n) equal to m (or NaN when m is NaN): how max_all's
 * gradient is shared between ties. */
int64_t max_count_cpu(const float *x, int64_t n, float m);
/* dx (n) += dout[0] / count where x == m (NaN-aware); x (n) read. */
void max_all_backward_cpu(float *dx, const float *dout, const float *x, int64_t n, float m,
                          int64_t count);

/* out (outer, inner) written = sum_j (x - mean)^2 / (n - correction), mean (outer, inner)
 * written; x (outer, n, inner) read. correction 1: unbiased, 0: biased. */
void var_forward_cpu(float *out, float *mean, const float *x, int64_t outer, int64_t n,
                     int64_t inner, int correction);
/* dx (outer, n, inner) += dout[o, i] * 2 (x - mean[o, i]) / (n - correction). */
void var_backward_cpu(float *dx, const float *dout, const float *x, const float *mean,
                      int64_t outer, int64_t n, int64_t inner, int correction);

#endif
