/*
 * cuda/embedding.cu — the lookup table on the GPU (ops/embedding.c has the formulas). The
 * forward is one thread per output element; the backward scatter-adds with atomicAdd, so
 * repeated indices are summed in an unspecified order (float rounding may differ from the
 * CPU's fixed order by a few ulp).
 */
#include "common.cuh"

__global__ void embedding_forward_kernel(float *out, const float *weight, const int32_t *idx,
                                         int64_t n, int64_t D) {
    TG_GRID_STRIDE(k, n * D) { out[k] = weight[(int64_t)idx[k / D] * D + k % D]; }
}

__global__ void embedding_backward_kernel(float *dweight, const float *dout, const int32_t *idx,
                                          int64_t n, int64_t D) {
    TG_GRID_STRIDE(k, n * D) { atomicAdd(&dweight[(int64_t)idx[k / D] * D + k % D], dout[k]); }
}

extern "C" tg_status embedding_forward_cuda(float *out, const float *weight,
                                            const int32_t *idx, int64_t n, int64_t D) {
    if (n * D <= 0) return TG_OK;
    embedding_forward_kernel<<<tg_cuda_blocks(n * D), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        out, weight, idx, n, D);
    TG_CUDA_LAUNCHED("embedding_forward_cuda");
    return TG_OK;
}

extern "C" tg_status embedding_backward_cuda(float *dweight, const float *dout,
                                             const int32_t *idx, int64_t n, int64_t D) {
    if (n * D <= 0) return TG_OK;
    embedding_backward_kernel<<<tg_cuda_blocks(n * D), TG_CUDA_THREADS, 0,
                                tg_cuda_stream()>>>(dweight, dout, idx, n, D);
    TG_CUDA_LAUNCHED("embedding_backward_cuda");
    return TG_OK;
}
