/*
 * cuda/clip.cu — the two halves of tg_clip_grad_norm (optim/clip.c) on a CUDA store: the
 * sum of squares of the flat gradient buffer (double, CLIP_BLOCKS fixed partials added in
 * a fixed order, so reproducible), read back to the host, and the scaling.
 */
#include "common.cuh"

#define CLIP_BLOCKS 1024

__global__ static void clip_sumsq_kernel(double *partial, const float *g, int64_t n) {
    __shared__ double scratch[32];
    double s = 0;
    TG_GRID_STRIDE(i, n) { s += (double)g[i] * (double)g[i]; }
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ static void clip_finish_kernel(double *out, const double *partial, int64_t count) {
    __shared__ double scratch[32];
    double s = 0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) out[0] = s;
}

__global__ static void clip_scale_kernel(float *g, int64_t n, float c) {
    TG_GRID_STRIDE(i, n) { g[i] *= c; }
}

extern "C" tg_status clip_sumsq_cuda(const float *g, int64_t n, double *sumsq) {
    *sumsq = 0;
    if (n <= 0) return TG_OK;
    int64_t blocks = tg_cuda_ceil_div(n, TG_CUDA_THREADS);
    if (blocks > CLIP_BLOCKS) blocks = CLIP_BLOCKS;
    double *partial = NULL;
    TG_CUDA_CHECK(cudaMalloc(&partial, (size_t)(blocks + 1) * sizeof(double)),
                  "clip_sumsq_cuda: cudaMalloc");
    cudaStream_t s = tg_cuda_stream();
    clip_sumsq_kernel<<<(unsigned)blocks, TG_CUDA_THREADS, 0, s>>>(partial + 1, g, n);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) {
        clip_finish_kernel<<<1, 1024, 0, s>>>(partial, partial + 1, blocks);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess)
        err = cudaMemcpyAsync(sumsq, partial, sizeof(double), cudaMemcpyDeviceToHost, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    cudaError_t ferr = cudaFree(partial);
    TG_CUDA_CHECK(err, "clip_sumsq_cuda");
    TG_CUDA_CHECK(ferr, "clip_sumsq_cuda: cudaFree");
    return TG_OK;
}

extern "C" tg_status clip_scale_cuda(float *g, int64_t n, float c) {
    if (n <= 0) return TG_OK;
    clip_scale_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(g, n, c);
    TG_CUDA_LAUNCHED("clip_scale_cuda");
    return TG_OK;
}
