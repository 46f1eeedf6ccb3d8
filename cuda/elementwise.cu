/*
 * cuda/elementwise.cu — addition and accumulation on the GPU (ops/elementwise.c). The
 * accumulation is the backward of add (for each operand) and of reshape.
 */
#include "common.cuh"

__global__ void add_forward_kernel(float *out, const float *a, const float *b, int64_t n) {
    TG_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

__global__ void accumulate_kernel(float *dst, const float *src, int64_t n) {
    TG_GRID_STRIDE(i, n) dst[i] += src[i];
}

extern "C" tg_status add_forward_cuda(float *out, const float *a, const float *b, int64_t n) {
    if (n <= 0) return TG_OK;
    add_forward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(out, a, b,
                                                                                   n);
    TG_CUDA_LAUNCHED("add_forward_cuda");
    return TG_OK;
}

extern "C" tg_status accumulate_cuda(float *dst, const float *src, int64_t n) {
    if (n <= 0) return TG_OK;
    accumulate_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(dst, src,
                                                                                  n);
    TG_CUDA_LAUNCHED("accumulate_cuda");
    return TG_OK;
}
