/*
 * cuda/batchnorm.cu — 2-D batch normalisation on the GPU. ops/batchnorm.c has the
 * formulas, the running-statistics rule and the backward derivation.
 *
 * Per-channel reductions: one block per channel walks the channel's N planes of HW
 * values (consecutive threads on consecutive addresses) and sums in double, two passes
 * as on the CPU (mean, then squared deviations: no cancellation). The backward block of
 * a channel computes sum(dy) and sum(dy (x - mean)), adds dbias and dweight, then writes
 * dx in a second pass: no atomics, and every sum has a fixed order.
 */
#include "common.cuh"

#define BN_THREADS 512

/* Training statistics of channel blockIdx.x; the running update when running_mean. */
__global__ void batchnorm_train_stats_kernel(float *mean, float *rstd, float *running_mean,
                                             float *running_var, const float *x, int64_t N,
                                             int64_t C, int64_t HW, float momentum,
                                             float eps) {
    __shared__ double scratch[32];
    int64_t c = blockIdx.x;
    double n = (double)(N * HW);
    double sum = 0;
    for (int64_t b = 0; b < N; b++) {
        const float *p = x + (b * C + c) * HW;
        for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) sum += p[i];
    }
    double m = tg_block_sum(sum, scratch) / n;
    double ss = 0;
    for (int64_t b = 0; b < N; b++) {
        const float *p = x + (b * C + c) * HW;
        for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
            double d = p[i] - m;
            ss += d * d;
        }
    }
    ss = tg_block_sum(ss, scratch);
    if (threadIdx.x == 0) {
        /* The same roundings as the CPU op: mean and var to float, rstd from the float
         * var in double. */
        float mean_f = (float)m, var_f = (float)(ss / n);
        mean[c] = mean_f;
        rstd[c] = (float)(1.0 / sqrt((double)var_f + eps));
        if (running_mean) {
            double mo = momentum;
            running_mean[c] = (float)(mo * mean_f + (1 - mo) * running_mean[c]);
            double unbiased = (double)var_f * n / (n - 1);
            running_var[c] = (float)(mo * unbiased + (1 - mo) * running_var[c]);
        }
    }
}

__global__ void batchnorm_eval_stats_kernel(float *mean, float *rstd, const float *running_mean,
                                            const float *running_var, int64_t C, float eps) {
    TG_GRID_STRIDE(c, C) {
        mean[c] = running_mean[c];
        rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + eps));
    }
}

__global__ void batchnorm_forward_kernel(float *y, const float *x, const float *mean,
                                         const float *rstd, const float *weight,
                                         const float *bias, int64_t N, int64_t C, int64_t HW) {
    TG_GRID_STRIDE(i, N * C * HW) {
        int64_t c = i / HW % C;
        float scale = rstd[c] * (weight ? weight[c] : 1.0f);
        float shift = (bias ? bias[c] : 0.0f) - mean[c] * scale;
        y[i] = x[i] * scale + shift;
    }
}

__global__ void batchnorm_backward_kernel(float *dx, float *dweight, float *dbias,
                                          const float *dy, const float *x, const float *mean,
                                          const float *rstd, const float *weight, int64_t N,
                                          int64_t C, int64_t HW, bool training) {
    __shared__ double scratch[32];
    int64_t c = blockIdx.x;
    double n = (double)(N * HW);
    float m = mean[c], r = rstd[c];
    /* Pass 1: sum(dy) and sum(dy xhat) = rstd sum(dy (x - mean)). */
    double sum_dy = 0, sum_dy_xc = 0;
    for (int64_t b = 0; b < N; b++) {
        const float *g = dy + (b * C + c) * HW, *p = x + (b * C + c) * HW;
        for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
            sum_dy += g[i];
            sum_dy_xc += (double)g[i] * (p[i] - m);
        }
    }
    sum_dy = tg_block_sum(sum_dy, scratch);
    sum_dy_xc = tg_block_sum(sum_dy_xc, scratch);
    double sum_dy_xhat = sum_dy_xc * r;
    if (threadIdx.x == 0) {
        if (dbias) dbias[c] += (float)sum_dy;
        if (dweight) dweight[c] += (float)sum_dy_xhat;
    }
    if (!dx) return;
    /* Pass 2: dx += w rstd (dy - mean(dy) - xhat mean(dy xhat)); eval: the first term. */
    float wr = (weight ? weight[c] : 1.0f) * r;
    float mean_dy = training ? (float)(sum_dy / n) : 0.0f;
    float mean_dy_xhat = training ? (float)(sum_dy_xhat / n) : 0.0f;
    for (int64_t b = 0; b < N; b++) {
        const float *g = dy + (b * C + c) * HW, *p = x + (b * C + c) * HW;
        float *d = dx + (b * C + c) * HW;
        for (int64_t i = threadIdx.x; i < HW; i += blockDim.x) {
            float xhat = (p[i] - m) * r;
            d[i] += wr * (g[i] - mean_dy - xhat * mean_dy_xhat);
        }
    }
}

extern "C" tg_status batchnorm_stats_cuda(float *mean, float *rstd, float *running_mean,
                                          float *running_var, const float *x, int64_t N,
                                          int64_t C, int64_t HW, bool training, float momentum,
                                          float eps) {
    if (C <= 0) return TG_OK;
    if (training) {
        batchnorm_train_stats_kernel<<<(unsigned)C, BN_THREADS, 0, tg_cuda_stream()>>>(
            mean, rstd, running_mean, running_var, x, N, C, HW, momentum, eps);
    } else {
        batchnorm_eval_stats_kernel<<<tg_cuda_blocks(C), TG_CUDA_THREADS, 0,
                                      tg_cuda_stream()>>>(mean, rstd, running_mean,
                                                          running_var, C, eps);
    }
    TG_CUDA_LAUNCHED("batchnorm_stats_cuda");
    return TG_OK;
}

extern "C" tg_status batchnorm_forward_cuda(float *y, const float *x, const float *mean,
                                            const float *rstd, const float *weight,
                                            const float *bias, int64_t N, int64_t C,
                                            int64_t HW) {
    int64_t total = N * C * HW;
    if (total <= 0) return TG_OK;
    batchnorm_forward_kernel<<<tg_cuda_blocks(total), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        y, x, mean, rstd, weight, bias, N, C, HW);
    TG_CUDA_LAUNCHED("batchnorm_forward_cuda");
    return TG_OK;
}

extern "C" tg_status batchnorm_backward_cuda(float *dx, float *dweight, float *dbias,
                                             const float *dy, const float *x, const float *mean,
                                             const float *rstd, const float *weight, int64_t N,
                                             int64_t C, int64_t HW, bool training) {
    if (C <= 0 || (!dx && !dweight && !dbias)) return TG_OK;
    batchnorm_backward_kernel<<<(unsigned)C, BN_THREADS, 0, tg_cuda_stream()>>>(
        dx, dweight, dbias, dy, x, mean, rstd, weight, N, C, HW, training);
    TG_CUDA_LAUNCHED("batchnorm_backward_cuda");
    return TG_OK;
}
