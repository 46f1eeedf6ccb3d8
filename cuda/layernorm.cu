/*
 * cuda/layernorm.cu — layer normalisation on the GPU (ops/layernorm.c has the formulas).
 * Forward and dx: one block per row (two block sums each). dweight and dbias: one thread
 * per column summing over the rows in order (neighbouring threads read neighbouring
 * columns: coalesced; deterministic, no atomics).
 */
#include "common.cuh"

#define LN_THREADS 256
#define LN_MAX_GRID ((int64_t)1 << 30)

__global__ void layernorm_forward_kernel(float *y, float *mean, float *rstd, const float *x,
                                         const float *weight, const float *bias, int64_t M,
                                         float eps) {
    __shared__ float scratch[32];
    int64_t r = blockIdx.x;
    const float *xr = x + r * M;
    float *yr = y + r * M;
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) s += xr[j];
    float mu = tg_block_sum(s, scratch) / (float)M;
    float v = 0.0f;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) v += (xr[j] - mu) * (xr[j] - mu);
    float rs = rsqrtf(tg_block_sum(v, scratch) / (float)M + eps);
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
        float h = (xr[j] - mu) * rs;
        if (weight) h *= weight[j];
        if (bias) h += bias[j];
        yr[j] = h;
    }
}

__global__ void layernorm_dx_kernel(float *dx, const float *dy, const float *x,
                                    const float *mean, const float *rstd, const float *weight,
                                    int64_t M) {
    __shared__ float scratch[32];
    int64_t r = blockIdx.x, off = r * M;
    float mu = mean[r], rs = rstd[r], sg = 0.0f, sgx = 0.0f;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
        float g = weight ? dy[off + j] * weight[j] : dy[off + j];
        sg += g;
        sgx += g * (x[off + j] - mu) * rs;
    }
    float a = tg_block_sum(sg, scratch) / (float)M;
    float b = tg_block_sum(sgx, scratch) / (float)M;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
        float g = weight ? dy[off + j] * weight[j] : dy[off + j];
        dx[off + j] += rs * (g - a - (x[off + j] - mu) * rs * b);
    }
}

__global__ void layernorm_dparams_kernel(float *dweight, float *dbias, const float *dy,
                                         const float *x, const float *mean, const float *rstd,
                                         int64_t rows, int64_t M) {
    TG_GRID_STRIDE(j, M) {
        float sw = 0.0f, sb = 0.0f;
        for (int64_t r = 0; r < rows; r++) {
            float g = dy[r * M + j];
            sw += g * (x[r * M + j] - mean[r]) * rstd[r];
            sb += g;
        }
        if (dweight) dweight[j] += sw;
        if (dbias) dbias[j] += sb;
    }
}

extern "C" tg_status layernorm_forward_cuda(float *y, float *mean, float *rstd, const float *x,
                                            const float *weight, const float *bias,
                                            int64_t rows, int64_t M, float eps) {
    cudaStream_t s = tg_cuda_stream();
    for (int64_t r = 0; r < rows; r += LN_MAX_GRID) {
        int64_t n = rows - r < LN_MAX_GRID ? rows - r : LN_MAX_GRID;
        layernorm_forward_kernel<<<(unsigned)n, LN_THREADS, 0, s>>>(
            y + r * M, mean + r, rstd + r, x + r * M, weight, bias, M, eps);
        TG_CUDA_LAUNCHED("layernorm_forward_cuda");
    }
    return TG_OK;
}

extern "C" tg_status layernorm_backward_cuda(float *dx, float *dweight, float *dbias,
                                             const float *dy, const float *x,
                                             const float *mean, const float *rstd,
                                             const float *weight, int64_t rows, int64_t M) {
    cudaStream_t s = tg_cuda_stream();
    if (dx) {
        for (int64_t r = 0; r < rows; r += LN_MAX_GRID) {
            int64_t n = rows - r < LN_MAX_GRID ? rows - r : LN_MAX_GRID;
            layernorm_dx_kernel<<<(unsigned)n, LN_THREADS, 0, s>>>(
                dx + r * M, dy + r * M, x + r * M, mean + r, rstd + r, weight, M);
            TG_CUDA_LAUNCHED("layernorm_backward_cuda");
        }
    }
    if ((dweight || dbias) && M > 0) {
        layernorm_dparams_kernel<<<tg_cuda_blocks(M), TG_CUDA_THREADS, 0, s>>>(
            dweight, dbias, dy, x, mean, rstd, rows, M);
        TG_CUDA_LAUNCHED("layernorm_backward_cuda");
    }
    return TG_OK;
}
