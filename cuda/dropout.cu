/*
 * cuda/dropout.cu — inverted dropout on the GPU with the CPU's mask rule (dropout_keep in
 * ops/dropout.h, a hash of the call's key and the element index): the same key gives the
 * same mask on both devices, and the backward recomputes it.
 */
#include "common.cuh"

#include "../ops/dropout.h"

__global__ void dropout_forward_kernel(float *y, const float *x, int64_t n, uint64_t key,
                                       uint64_t threshold, float scale) {
    TG_GRID_STRIDE(i, n) { y[i] = dropout_keep(key, i, threshold) ? x[i] * scale : 0.0f; }
}

__global__ void dropout_backward_kernel(float *dx, const float *dy, int64_t n, uint64_t key,
                                        uint64_t threshold, float scale) {
    TG_GRID_STRIDE(i, n) {
        if (dropout_keep(key, i, threshold)) dx[i] += dy[i] * scale;
    }
}

extern "C" tg_status dropout_forward_cuda(float *y, const float *x, int64_t n, uint64_t key,
                                          uint64_t threshold, float scale) {
    if (n <= 0) return TG_OK;
    dropout_forward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        y, x, n, key, threshold, scale);
    TG_CUDA_LAUNCHED("dropout_forward_cuda");
    return TG_OK;
}

extern "C" tg_status dropout_backward_cuda(float *dx, const float *dy, int64_t n, uint64_t key,
                                           uint64_t threshold, float scale) {
    if (n <= 0) return TG_OK;
    dropout_backward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dx, dy, n, key, threshold, scale);
    TG_CUDA_LAUNCHED("dropout_backward_cuda");
    return TG_OK;
}
