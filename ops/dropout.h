/*
 * ops/dropout.h — CPU kernels of ops/dropout.c and the mask rule both devices share.
 */
#ifndef TG_OPS_DROPOUT_H
#define TG_OPS_DROPOUT_H

#include <stdbool.h>
#include <stdint.h>

/* Element i of a dropout with key `key` is kept when the high 32 bits of
 * splitmix64(key + (i + 1) * golden) are >= threshold (threshold = round(p * 2^32), so
 * P(drop) = p; threshold 2^32 drops everything). cuda/dropout.cu uses the same rule. */
#ifdef __CUDACC__
#define TG_HD __host__ __device__
#else
#define TG_HD
#endif
static inline TG_HD bool dropout_keep(uint64_t key, int64_t i, uint64_t threshold) {
    uint64_t z = key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (z >> 32) >= threshold;
}
#undef TG_HD

/* y[n] = x[n] * scale where kept, 0 where dropped. x read. */
void dropout_forward_cpu(float *y, const float *x, int64_t n, uint64_t key, uint64_t threshold,
                         float scale);
/* dx[n] += dy[n] * scale where kept (the same mask, recomputed from key). */
void dropout_backward_cpu(float *dx, const float *dy, int64_t n, uint64_t key,
                          uint64_t threshold, float scale);

#endif
