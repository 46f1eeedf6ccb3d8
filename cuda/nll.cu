/*
 * cuda/nll.cu — NLL on log-probabilities and BCE with logits on the GPU (ops/nll.c has the
 * formulas). Reductions: each block sums its share in double into partial[block]; one more
 * block adds the partials in a fixed order. The incoming dL stays on the device.
 */
#include "common.cuh"

#define NLL_BLOCKS 1024

/* loss[0] = (sum of partial[0..count)) / denom; one block. */
__global__ static void nll_finish_kernel(float *loss, const double *partial, int64_t count,
                                         double denom) {
    __shared__ double scratch[32];
    double s = 0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) loss[0] = (float)(s / denom);
}

/* One block (fixed shape): the whole sum, in a fixed order, then the mean. */
__global__ static void nll_forward_kernel(float *loss, const float *log_probs,
                                          const int32_t *target, int64_t N, int64_t C,
                                          int64_t inner, int64_t count) {
    __shared__ double scratch[32];
    double s = 0;
    for (int64_t q = threadIdx.x; q < N * inner; q += blockDim.x) {
        int32_t t = target[q];
        if (t != TG_IGNORE_INDEX) s -= (double)log_probs[(q / inner * C + t) * inner + q % inner];
    }
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) loss[0] = (float)(s / (double)count);
}

__global__ static void nll_backward_kernel(float *dlog_probs, const int32_t *target,
                                           const float *dloss, int64_t N, int64_t C,
                                           int64_t inner, int64_t count) {
    float scale = (float)((double)dloss[0] / (double)count);
    TG_GRID_STRIDE(q, N * inner) {
        int32_t t = target[q];
        if (t != TG_IGNORE_INDEX) dlog_probs[(q / inner * C + t) * inner + q % inner] -= scale;
    }
}

__global__ static void bce_forward_kernel(double *partial, const float *x, const float *t,
                                          int64_t n) {
    __shared__ double scratch[32];
    double s = 0;
    TG_GRID_STRIDE(i, n) {
        float xi = x[i];
        s += (double)(fmaxf(xi, 0.0f) - xi * t[i] + log1pf(expf(-fabsf(xi))));
    }
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ static void bce_backward_kernel(float *dx, float *dt, const float *x, const float *t,
                                           const float *dloss, int64_t n) {
    float scale = (float)((double)dloss[0] / (double)n);
    TG_GRID_STRIDE(i, n) {
        if (dx) dx[i] += (1.0f / (1.0f + expf(-x[i])) - t[i]) * scale;
        if (dt) dt[i] -= x[i] * scale;
    }
}

extern "C" tg_status nll_forward_cuda(float *loss, const float *log_probs, const int32_t *target,
                                      int64_t N, int64_t C, int64_t inner, int64_t count) {
    nll_forward_kernel<<<1, 1024, 0, tg_cuda_stream()>>>(loss, log_probs, target, N, C, inner,
                                                         count);
    TG_CUDA_LAUNCHED("nll_forward_cuda");
    return TG_OK;
}

extern "C" tg_status nll_backward_cuda(float *dlog_probs, const int32_t *target,
                                       const float *dloss, int64_t N, int64_t C, int64_t inner,
                                       int64_t count) {
    if (N * inner <= 0) return TG_OK;
    nll_backward_kernel<<<tg_cuda_blocks(N * inner), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dlog_probs, target, dloss, N, C, inner, count);
    TG_CUDA_LAUNCHED("nll_backward_cuda");
    return TG_OK;
}

extern "C" int64_t bce_partials_cuda(int64_t n) {
    int64_t b = tg_cuda_ceil_div(n, TG_CUDA_THREADS);
    return b < NLL_BLOCKS ? b : NLL_BLOCKS;
}

extern "C" tg_status bce_forward_cuda(float *loss, double *partial, const float *x,
                                      const float *t, int64_t n) {
    int64_t blocks = bce_partials_cuda(n);
    if (blocks <= 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    bce_forward_kernel<<<(unsigned)blocks, TG_CUDA_THREADS, 0, s>>>(partial, x, t, n);
    TG_CUDA_LAUNCHED("bce_forward_cuda");
    nll_finish_kernel<<<1, 1024, 0, s>>>(loss, partial, blocks, (double)n);
    TG_CUDA_LAUNCHED("bce_forward_cuda");
    return TG_OK;
}

extern "C" tg_status bce_backward_cuda(float *dx, float *dt, const float *x, const float *t,
                                       const float *dloss, int64_t n) {
    if (n <= 0 || (!dx && !dt)) return TG_OK;
    bce_backward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dx, dt, x, t, dloss, n);
    TG_CUDA_LAUNCHED("bce_backward_cuda");
    return TG_OK;
}
