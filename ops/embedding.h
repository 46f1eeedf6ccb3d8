/*
 * ops/embedding.h — CPU kernels of ops/embedding.c.
 */
#ifndef TG_OPS_EMBEDDING_H
#define TG_OPS_EMBEDDING_H

#include <stdint.h>

/* out (n, D) row i = weight (V, D) row idx[i]; idx (n) each in [0, V). */
void embedding_forward_cpu(float *out, const float *weight, const int32_t *idx, int64_t n,
                           int64_t D);
/* dweight (V, D) row idx[i] += dout (n, D) row i, for every i (repeated indices add). */
void embedding_backward_cpu(float *dweight, const float *dout, const int32_t *idx, int64_t n,
                            int64_t D);

#endif
