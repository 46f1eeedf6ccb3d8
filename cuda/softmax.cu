/*
 * cuda/softmax.cu — softmax / log-softmax along any dim and the causal mask on the GPU
 * (ops/softmax.c has the formulas and the backward derivations).
 *
 * Along the last dim (inner = 1) one block of SM_THREADS threads handles one row: a block
 * max, a block sum of exponentials, then the writes — the row is read from global memory
 * three times but stays in L2/L1 for the usual row sizes. Along an earlier dim one
 * thread handles one slice (o, i) and walks its D values inner apart; neighbouring
 * threads read neighbouring addresses (coalesced), the CPU tile loop's layout.
 */
#include "common.cuh"

#include <math.h>

#define SM_THREADS 256

/* Max of v over the block (as tg_block_sum); every thread gets it. */
__device__ inline float block_max(float v, float *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : -INFINITY;
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

__global__ void softmax_row_kernel(float *y, const float *x, int64_t D, bool log) {
    __shared__ float scratch[32];
    const float *xr = x + (int64_t)blockIdx.x * D;
    float *yr = y + (int64_t)blockIdx.x * D;
    float m = -INFINITY;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) m = fmaxf(m, xr[d]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) s += expf(xr[d] - m);
    s = tg_block_sum(s, scratch);
    if (log) {
        float c = m + logf(s);
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) yr[d] = xr[d] - c;
    } else {
        float r = 1.0f / s;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) yr[d] = expf(xr[d] - m) * r;
    }
}

__global__ void softmax_strided_kernel(float *y, const float *x, int64_t outer, int64_t D,
                                       int64_t inner, bool log) {
    TG_GRID_STRIDE(q, outer * inner) {
        int64_t o = q / inner, i = q % inner;
        const float *xs = x + o * D * inner + i;
        float *ys = y + o * D * inner + i;
        float m = xs[0];
        for (int64_t d = 1; d < D; d++) m = fmaxf(m, xs[d * inner]);
        float s = 0.0f;
        for (int64_t d = 0; d < D; d++) s += expf(xs[d * inner] - m);
        if (log) {
            float c = m + logf(s);
            for (int64_t d = 0; d < D; d++) ys[d * inner] = xs[d * inner] - c;
        } else {
            float r = 1.0f / s;
            for (int64_t d = 0; d < D; d++) ys[d * inner] = expf(xs[d * inner] - m) * r;
        }
    }
}

__global__ void softmax_backward_row_kernel(float *dx, const float *dy, const float *y,
                                            int64_t D, bool log) {
    __shared__ float scratch[32];
    int64_t off = (int64_t)blockIdx.x * D;
    float s = 0.0f;
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
        s += log ? dy[off + d] : dy[off + d] * y[off + d];
    s = tg_block_sum(s, scratch);
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        int64_t k = off + d;
        dx[k] += log ? dy[k] - expf(y[k]) * s : y[k] * (dy[k] - s);
    }
}

__global__ void softmax_backward_strided_kernel(float *dx, const float *dy, const float *y,
                                                int64_t outer, int64_t D, int64_t inner,
                                                bool log) {
    TG_GRID_STRIDE(q, outer * inner) {
        int64_t base = (q / inner) * D * inner + q % inner;
        float s = 0.0f;
        for (int64_t d = 0; d < D; d++) {
            int64_t k = base + d * inner;
            s += log ? dy[k] : dy[k] * y[k];
        }
        for (int64_t d = 0; d < D; d++) {
            int64_t k = base + d * inner;
            dx[k] += log ? dy[k] - expf(y[k]) * s : y[k] * (dy[k] - s);
        }
    }
}

__global__ void causal_mask_forward_kernel(float *y, const float *x, int64_t B, int64_t T) {
    TG_GRID_STRIDE(k, B * T * T) {
        int64_t j = k % T, i = k / T % T;
        y[k] = j <= i ? x[k] : -INFINITY;
    }
}

__global__ void causal_mask_backward_kernel(float *dx, const float *dy, int64_t B, int64_t T) {
    TG_GRID_STRIDE(k, B * T * T) {
        int64_t j = k % T, i = k / T % T;
        if (j <= i) dx[k] += dy[k];
    }
}

/* Rows per launch: gridDim.x is limited to 2^31 - 1. */
#define SM_MAX_GRID ((int64_t)1 << 30)

extern "C" tg_status softmax_forward_cuda(float *y, const float *x, int64_t outer, int64_t D,
                                          int64_t inner, bool log) {
    if (outer * D * inner <= 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    if (inner == 1) {
        for (int64_t o = 0; o < outer; o += SM_MAX_GRID) {
            int64_t rows = outer - o < SM_MAX_GRID ? outer - o : SM_MAX_GRID;
            softmax_row_kernel<<<(unsigned)rows, SM_THREADS, 0, s>>>(y + o * D, x + o * D, D,
                                                                     log);
            TG_CUDA_LAUNCHED("softmax_forward_cuda");
        }
        return TG_OK;
    }
    softmax_strided_kernel<<<tg_cuda_blocks(outer * inner), TG_CUDA_THREADS, 0, s>>>(
        y, x, outer, D, inner, log);
    TG_CUDA_LAUNCHED("softmax_forward_cuda");
    return TG_OK;
}

extern "C" tg_status softmax_backward_cuda(float *dx, const float *dy, const float *y,
                                           int64_t outer, int64_t D, int64_t inner, bool log) {
    if (outer * D * inner <= 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    if (inner == 1) {
        for (int64_t o = 0; o < outer; o += SM_MAX_GRID) {
            int64_t rows = outer - o < SM_MAX_GRID ? outer - o : SM_MAX_GRID;
            softmax_backward_row_kernel<<<(unsigned)rows, SM_THREADS, 0, s>>>(
                dx + o * D, dy + o * D, y + o * D, D, log);
            TG_CUDA_LAUNCHED("softmax_backward_cuda");
        }
        return TG_OK;
    }
    softmax_backward_strided_kernel<<<tg_cuda_blocks(outer * inner), TG_CUDA_THREADS, 0, s>>>(
        dx, dy, y, outer, D, inner, log);
    TG_CUDA_LAUNCHED("softmax_backward_cuda");
    return TG_OK;
}

extern "C" tg_status causal_mask_forward_cuda(float *y, const float *x, int64_t B, int64_t T) {
    int64_t n = B * T * T;
    if (n <= 0) return TG_OK;
    causal_mask_forward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        y, x, B, T);
    TG_CUDA_LAUNCHED("causal_mask_forward_cuda");
    return TG_OK;
}

extern "C" tg_status causal_mask_backward_cuda(float *dx, const float *dy, int64_t B,
                                               int64_t T) {
    int64_t n = B * T * T;
    if (n <= 0) return TG_OK;
    causal_mask_backward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dx, dy, B, T);
    TG_CUDA_LAUNCHED("causal_mask_backward_cuda");
    return TG_OK;
}
