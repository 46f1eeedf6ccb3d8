/*
 * cuda/batchnorm.cu — 2-D batch normalisation on the GPU. ops/batchnorm.c has the
 * formulas, the running-statistics rule and the backward derivation.
 *
 * Per-channel reductions, two shapes of launch:
 *   MANY CHANNELS (C blocks already fill the GPU): one block per channel walks the
 *   channel's N planes of HW values (consecutive threads on consecutive addresses) and
 *   sums in double, two passes as on the CPU (mean, then squared deviations: no
 *   cancellation). The backward block computes sum(dy) and sum(dy (x - mean)), adds
 *   dbias and dweight, then writes dx in a second pass.
 *   FEW CHANNELS (C = 32 .. 256 on a GPU of 132 SMs would leave most of it idle): each
 *   channel's N HW values are split into `chunks` contiguous ranges, one block each.
 *   Statistics: a block writes its range's (count, mean, M2) (two passes over the range,
 *   no cancellation) and a finishing kernel merges a channel's ranges in a fixed order
 *   with Chan's parallel formula, in double. Backward: blocks write the ranges' sums,
 *   the finishing kernel adds dbias/dweight and the two means, and dx is an element-wise
 *   pass over the whole tensor. The partials live in a small static device array (one
 *   stream, so ops never overlap): nothing is allocated.
 * No atomics anywhere, and every sum has a fixed order for a given GPU (the chunk count
 * depends on its multiprocessor count), so results are reproducible run to run.
 */
#include "batchnorm.cuh"
#include "common.cuh"

#define BN_THREADS 512
#define BN_SPLIT_THREADS 256
#define BN_MAX_PARTIALS 8192 /* C chunks of the split path at most */
#define BN_MIN_CHUNK 2048    /* values per chunk at least: a block's worth of loads */

static __device__ double bn_partial[3 * BN_MAX_PARTIALS];
static __device__ float bn_coef[2 * BN_MAX_PARTIALS]; /* backward: mean(dy), mean(dy xhat) */

/* Chunks per channel for the split path; 1 means one block per channel. */
static int64_t bn_chunks(int64_t C, int64_t count) {
    int64_t sms = tg_cuda_sm_count();
    int64_t want = tg_cuda_ceil_div(4 * sms, C); /* about 4 blocks per SM */
    int64_t most = tg_cuda_ceil_div(count, BN_MIN_CHUNK);
    int64_t chunks = want < most ? want : most;
    if (chunks < 2 || C * chunks > BN_MAX_PARTIALS) return 1;
    return chunks;
}

/* Calls body(b, lo, hi) for the pieces of values [j0, j1) of channel c in plane b of
 * (N, C, HW): the chunk walks whole planes without a division per element. */
#define BN_FOR_RANGE(j0, j1, HW, body)                                                     \
    for (int64_t b_ = (j0) / (HW); b_ * (HW) < (j1); b_++) {                               \
        int64_t lo_ = (j0) > b_ * (HW) ? (j0) - b_ * (HW) : 0;                               \
        int64_t hi_ = (j1) < (b_ + 1) * (HW) ? (j1) - b_ * (HW) : (HW);                      \
        body(b_, lo_, hi_);                                                                \
    }

/* Statistics of chunk blockIdx.x % chunks of channel blockIdx.x / chunks: its count,
 * mean and sum of squared deviations about that mean. */
__global__ void batchnorm_split_stats_kernel(const float *x, int64_t N, int64_t C, int64_t HW,
                                             int64_t chunks) {
    __shared__ double scratch[32];
    int64_t c = blockIdx.x / chunks, k = blockIdx.x % chunks, count = N * HW;
    int64_t len = tg_cuda_ceil_div(count, chunks), j0 = k * len;
    int64_t j1 = j0 + len < count ? j0 + len : count;
    double sum = 0, ss = 0;
#define BN_SUM(b, lo, hi)                                                                  \
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) sum += x[(b * C + c) * HW + i];
    if (j0 < j1) BN_FOR_RANGE(j0, j1, HW, BN_SUM)
    double n = (double)(j1 > j0 ? j1 - j0 : 0);
    double total = tg_block_sum(sum, scratch); /* every thread calls it: n is uniform */
    double m = n > 0 ? total / n : 0.0;
#define BN_SS(b, lo, hi)                                                                   \
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {                          \
        double d = x[(b * C + c) * HW + i] - m;                                            \
        ss += d * d;                                                                       \
    }
    if (j0 < j1) BN_FOR_RANGE(j0, j1, HW, BN_SS)
    ss = tg_block_sum(ss, scratch);
    if (threadIdx.x == 0) {
        double *p = bn_partial + 3 * blockIdx.x;
        p[0] = n;
        p[1] = m;
        p[2] = ss;
    }
}

/* One thread per channel merges its chunks in order (Chan et al.) and writes what
 * batchnorm_train_stats_kernel writes. */
__global__ void batchnorm_split_finish_kernel(float *mean, float *rstd, float *running_mean,
                                              float *running_var, int64_t C, int64_t chunks,
                                              float momentum, float eps) {
    TG_GRID_STRIDE(c, C) {
        const double *p = bn_partial + 3 * c * chunks;
        double n = p[0], m = p[1], M2 = p[2];
        for (int64_t k = 1; k < chunks; k++) {
            double nb = p[3 * k], mb = p[3 * k + 1], M2b = p[3 * k + 2];
            if (nb == 0) continue;
            double tot = n + nb, delta = mb - m;
            m += delta * nb / tot;
            M2 += M2b + delta * delta * n * nb / tot;
            n = tot;
        }
        bn_store_stats(mean, rstd, running_mean, running_var, c, (float)m, (float)(M2 / n), n,
                       momentum, eps);
    }
}

/* Backward stage 1: chunk sums of dy and dy (x - mean). */
__global__ void batchnorm_split_grad_kernel(const float *dy, const float *x, const float *mean,
                                            int64_t N, int64_t C, int64_t HW, int64_t chunks) {
    __shared__ double scratch[32];
    int64_t c = blockIdx.x / chunks, k = blockIdx.x % chunks, count = N * HW;
    int64_t len = tg_cuda_ceil_div(count, chunks), j0 = k * len;
    int64_t j1 = j0 + len < count ? j0 + len : count;
    float mc = mean[c];
    double sdy = 0, sdyx = 0;
#define BN_GRAD(b, lo, hi)                                                                 \
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {                          \
        int64_t at = (b * C + c) * HW + i;                                                 \
        sdy += dy[at];                                                                     \
        sdyx += (double)dy[at] * (x[at] - mc);                                             \
    }
    if (j0 < j1) BN_FOR_RANGE(j0, j1, HW, BN_GRAD)
    sdy = tg_block_sum(sdy, scratch);
    sdyx = tg_block_sum(sdyx, scratch);
    if (threadIdx.x == 0) {
        bn_partial[2 * blockIdx.x] = sdy;
        bn_partial[2 * blockIdx.x + 1] = sdyx;
    }
}

/* Backward stage 2, one thread per channel: the sums in chunk order, dbias and dweight,
 * and the two means the dx pass needs (zero in eval). */
__global__ void batchnorm_split_grad_finish_kernel(float *dweight, float *dbias,
                                                   const float *rstd, int64_t N, int64_t C,
                                                   int64_t HW, int64_t chunks, bool training) {
    TG_GRID_STRIDE(c, C) {
        double sdy = 0, sdyx = 0;
        for (int64_t k = 0; k < chunks; k++) {
            sdy += bn_partial[2 * (c * chunks + k)];
            sdyx += bn_partial[2 * (c * chunks + k) + 1];
        }
        double n = (double)(N * HW), sum_dy_xhat = sdyx * rstd[c];
        if (dbias) dbias[c] += (float)sdy;
        if (dweight) dweight[c] += (float)sum_dy_xhat;
        bn_coef[2 * c] = training ? (float)(sdy / n) : 0.0f;
        bn_coef[2 * c + 1] = training ? (float)(sum_dy_xhat / n) : 0.0f;
    }
}

/* Backward stage 3: dx += w rstd (dy - mean(dy) - xhat mean(dy xhat)), element-wise over
 * total = N C HW values (the channel of i: i / HW % C, by precomputed divisors). */
template <typename I>
__global__ void batchnorm_split_dx_kernel(float *dx, const float *dy, const float *x,
                                          const float *mean, const float *rstd,
                                          const float *weight, I total, tg_fastdiv C,
                                          tg_fastdiv HW) {
    TG_GRID_STRIDE_I(I, i, total) {
        I c = tg_mod(tg_div(i, HW), C);
        float r = rstd[c], wr = (weight ? weight[c] : 1.0f) * r;
        float xhat = (x[i] - mean[c]) * r;
        dx[i] += wr * (dy[i] - bn_coef[2 * c] - xhat * bn_coef[2 * c + 1]);
    }
}

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
        bn_store_stats(mean, rstd, running_mean, running_var, c, (float)m, (float)(ss / n), n,
                       momentum, eps);
    }
}

__global__ void batchnorm_eval_stats_kernel(float *mean, float *rstd, const float *running_mean,
                                            const float *running_var, int64_t C, float eps) {
    TG_GRID_STRIDE(c, C) {
        mean[c] = running_mean[c];
        rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + eps));
    }
}

template <typename I>
__global__ void batchnorm_forward_kernel(float *y, const float *x, const float *mean,
                                         const float *rstd, const float *weight,
                                         const float *bias, I total, tg_fastdiv C,
                                         tg_fastdiv HW) {
    TG_GRID_STRIDE_I(I, i, total) {
        I c = tg_mod(tg_div(i, HW), C);
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
    int64_t chunks = training ? bn_chunks(C, N * HW) : 1;
    if (chunks > 1) {
        cudaStream_t s = tg_cuda_stream();
        batchnorm_split_stats_kernel<<<(unsigned)(C * chunks), BN_SPLIT_THREADS, 0, s>>>(
            x, N, C, HW, chunks);
        TG_CUDA_LAUNCHED("batchnorm_stats_cuda (chunks)");
        batchnorm_split_finish_kernel<<<tg_cuda_blocks(C), TG_CUDA_THREADS, 0, s>>>(
            mean, rstd, running_mean, running_var, C, chunks, momentum, eps);
    } else if (training) {
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
    TG_LAUNCH_INDEXED(total, batchnorm_forward_kernel, tg_cuda_blocks(total), TG_CUDA_THREADS, 0,
                      tg_cuda_stream(), y, x, mean, rstd, weight, bias, total, tg_fastdiv_make(C),
                      tg_fastdiv_make(HW));
    TG_CUDA_LAUNCHED("batchnorm_forward_cuda");
    return TG_OK;
}

extern "C" tg_status batchnorm_backward_cuda(float *dx, float *dweight, float *dbias,
                                             const float *dy, const float *x, const float *mean,
                                             const float *rstd, const float *weight, int64_t N,
                                             int64_t C, int64_t HW, bool training) {
    if (C <= 0 || (!dx && !dweight && !dbias)) return TG_OK;
    int64_t chunks = bn_chunks(C, N * HW);
    if (chunks > 1) {
        cudaStream_t s = tg_cuda_stream();
        batchnorm_split_grad_kernel<<<(unsigned)(C * chunks), BN_SPLIT_THREADS, 0, s>>>(
            dy, x, mean, N, C, HW, chunks);
        TG_CUDA_LAUNCHED("batchnorm_backward_cuda (chunks)");
        batchnorm_split_grad_finish_kernel<<<tg_cuda_blocks(C), TG_CUDA_THREADS, 0, s>>>(
            dweight, dbias, rstd, N, C, HW, chunks, training);
        TG_CUDA_LAUNCHED("batchnorm_backward_cuda (finish)");
        if (dx) {
            int64_t total = N * C * HW;
            TG_LAUNCH_INDEXED(total, batchnorm_split_dx_kernel, tg_cuda_blocks(total),
                              TG_CUDA_THREADS, 0, s, dx, dy, x, mean, rstd, weight, total,
                              tg_fastdiv_make(C), tg_fastdiv_make(HW));
            TG_CUDA_LAUNCHED("batchnorm_backward_cuda (dx)");
        }
        return TG_OK;
    }
    batchnorm_backward_kernel<<<(unsigned)C, BN_THREADS, 0, tg_cuda_stream()>>>(
        dx, dweight, dbias, dy, x, mean, rstd, weight, N, C, HW, training);
    TG_CUDA_LAUNCHED("batchnorm_backward_cuda");
    return TG_OK;
}
