/*
 * cuda/batchnorm_sync.cu — synchronised batchnorm on the GPU: batch statistics and the
 * backward's two sums over every rank's examples, all-reduced with NCCL on device
 * doubles, no host copy and no host wait. ops/batchnorm_sync.c is the CPU version and
 * has the derivation; the math here is the same, step for step:
 *
 *   forward   sum_c (local), n_r          -> all-reduce C + 1 doubles -> mean = sum / n
 *             ss_c = sum (x - mean)^2     -> all-reduce C doubles     -> var = ss / n
 *             mean, var to float; rstd = 1 / sqrt(var + eps); the running update with
 *             the unbiased var over all n values (as ops/batchnorm.c)
 *   backward  S1 = s_r sum dy, S2 = s_r sum dy (x - mean), n_r
 *                                         -> all-reduce 2C + 1 doubles
 *             dbias += sum dy, dweight += rstd sum dy (x - mean)   (local sums)
 *             dx += w rstd (dy - S1 / s_r / n - xhat rstd S2 / s_r / n)
 * where s_r is this rank's share of the global batch (tg_dist_set_batch). dx is the
 * gradient of this rank's own loss (hence / s_r), as on the CPU. The backward all-reduces
 * the count again rather than carry it from the forward (it would need a host copy).
 *
 * Reductions: each channel's N HW values are cut into `chunks` ranges, one block each,
 * summed in double (tg_block_sum); a gather kernel adds a channel's ranges in a fixed
 * order. No atomics: the same inputs give the same bits on every run. The collectives run
 * on NCCL's stream between fences (cuda/dist.cu, tg_nccl_allreduce_f64), so they queue
 * behind any gradient bucket already in flight and the next kernel sees their result.
 *
 * Work memory (batchnorm_sync_work_bytes_cuda, from the step arena): per-chunk partials
 * (2 C chunks doubles), the all-reduced sums (2 C + 1 doubles) and the dx coefficients
 * (2 C floats).
 */
#include "batchnorm.cuh"
#include "common.cuh"

#include "../core/dist.h"

#define BN_SYNC_THREADS 256
#define BN_SYNC_MIN_CHUNK 2048 /* values per chunk at least: a block's worth of loads */

/* Chunks per channel: about 4 blocks per multiprocessor, none under BN_SYNC_MIN_CHUNK
 * values (1: one block per channel). */
static int64_t sync_chunks(int64_t C, int64_t count) {
    int64_t want = tg_cuda_ceil_div(4 * (int64_t)tg_cuda_sm_count(), C);
    int64_t most = tg_cuda_ceil_div(count, BN_SYNC_MIN_CHUNK);
    int64_t chunks = want < most ? want : most;
    return chunks < 1 ? 1 : chunks;
}

/* The work area's parts, in doubles from its start (64-byte aligned by the arena). */
typedef struct sync_work {
    double *partial; /* 2 C chunks */
    double *sums;    /* 2 C + 1 */
    float *coef;     /* 2 C */
} sync_work;

static sync_work sync_work_split(void *work, int64_t C, int64_t chunks) {
    double *w = (double *)work;
    sync_work parts;
    parts.partial = w;
    parts.sums = w + 2 * C * chunks;
    parts.coef = (float *)(w + 2 * C * chunks + 2 * C + 1);
    return parts;
}

extern "C" size_t batchnorm_sync_work_bytes_cuda(int64_t N, int64_t C, int64_t HW) {
    int64_t chunks = sync_chunks(C, N * HW);
    return (size_t)(2 * C * chunks + 2 * C + 1) * sizeof(double) + (size_t)(2 * C) * sizeof(float);
}

/* Calls f(b, i) for this thread's share of values [j0, j1) of a channel, value j being
 * element i = j mod HW of plane b = j / HW (whole planes without a division per value). */
template <typename F>
__device__ inline void for_range(int64_t j0, int64_t j1, int64_t HW, F f) {
    for (int64_t b = j0 / HW; b * HW < j1; b++) {
        int64_t lo = j0 > b * HW ? j0 - b * HW : 0;
        int64_t hi = j1 < (b + 1) * HW ? j1 - b * HW : HW;
        for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) f(b, i);
    }
}

/* Block blockIdx.x = c chunks + k covers values [j0, j1) of channel c's count = N HW. */
__device__ inline void chunk_range(int64_t count, int64_t chunks, int64_t *j0, int64_t *j1) {
    int64_t k = blockIdx.x % chunks, len = tg_cuda_ceil_div(count, chunks);
    *j0 = k * len < count ? k * len : count;
    *j1 = *j0 + len < count ? *j0 + len : count;
}

/* partial[c chunks + k] = the sum of x over chunk k of channel c.
 * x (N, C, HW); partial (C chunks). */
__global__ void bn_sync_sum_kernel(double *partial, const float *x, int64_t N, int64_t C,
                                   int64_t HW, int64_t chunks) {
    __shared__ double scratch[32];
    int64_t c = blockIdx.x / chunks, j0, j1;
    chunk_range(N * HW, chunks, &j0, &j1);
    double sum = 0;
    for_range(j0, j1, HW, [&](int64_t b, int64_t i) { sum += x[(b * C + c) * HW + i]; });
    sum = tg_block_sum(sum, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

/* partial[c chunks + k] = sum over chunk k of (x - mean_c)^2, mean_c = sums[c] / sums[C]
 * (the global mean, in double). x (N, C, HW); sums (C + 1); partial (C chunks). */
__global__ void bn_sync_sqdev_kernel(double *partial, const float *x, const double *sums,
                                     int64_t N, int64_t C, int64_t HW, int64_t chunks) {
    __shared__ double scratch[32];
    int64_t c = blockIdx.x / chunks, j0, j1;
    chunk_range(N * HW, chunks, &j0, &j1);
    double m = sums[c] / sums[C], ss = 0;
    for_range(j0, j1, HW, [&](int64_t b, int64_t i) {
        double d = x[(b * C + c) * HW + i] - m;
        ss += d * d;
    });
    ss = tg_block_sum(ss, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = ss;
}

/* partial[2 (c chunks + k)], [.. + 1] = sum dy and sum dy (x - mean[c]) over chunk k.
 * dy, x (N, C, HW); mean (C, float: the mean the forward used); partial (2 C chunks). */
__global__ void bn_sync_grad_kernel(double *partial, const float *dy, const float *x,
                                    const float *mean, int64_t N, int64_t C, int64_t HW,
                                    int64_t chunks) {
    __shared__ double scratch[32];
    int64_t c = blockIdx.x / chunks, j0, j1;
    chunk_range(N * HW, chunks, &j0, &j1);
    float mc = mean[c];
    double sdy = 0, sdyx = 0;
    for_range(j0, j1, HW, [&](int64_t b, int64_t i) {
        int64_t at = (b * C + c) * HW + i;
        sdy += dy[at];
        sdyx += (double)dy[at] * (x[at] - mc);
    });
    sdy = tg_block_sum(sdy, scratch);
    sdyx = tg_block_sum(sdyx, scratch);
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = sdy;
        partial[2 * blockIdx.x + 1] = sdyx;
    }
}

/* dst[c] = sum over k of partial[c chunks + k], in order; dst[C] = count when count > 0
 * (the local number of values per channel, to be all-reduced with the sums). */
__global__ void bn_sync_gather_kernel(double *dst, const double *partial, int64_t C,
                                      int64_t chunks, double count) {
    TG_GRID_STRIDE(c, C) {
        double s = 0;
        for (int64_t k = 0; k < chunks; k++) s += partial[c * chunks + k];
        dst[c] = s;
        if (c == 0 && count > 0) dst[C] = count;
    }
}

/* From the all-reduced sums (C), count (at sums[C]) and squared deviations (C, at
 * sums + C + 1): mean, rstd, and the running update, with the roundings of the CPU op. */
__global__ void bn_sync_stats_finish_kernel(float *mean, float *rstd, float *running_mean,
                                            float *running_var, const double *sums, int64_t C,
                                            float momentum, float eps) {
    TG_GRID_STRIDE(c, C) {
        double n = sums[C];
        bn_store_stats(mean, rstd, running_mean, running_var, c, (float)(sums[c] / n),
                       (float)(sums[C + 1 + c] / n), n, momentum, eps);
    }
}

/* Backward, per channel: the local sums in chunk order; dbias and dweight (accumulated,
 * NULL skips); sums[c] = share sum dy, sums[C + c] = share sum dy (x - mean), sums[2C] =
 * the local count, ready for the all-reduce. */
__global__ void bn_sync_grad_gather_kernel(double *sums, float *dweight, float *dbias,
                                           const double *partial, const float *rstd,
                                           int64_t C, int64_t chunks, double share,
                                           double count) {
    TG_GRID_STRIDE(c, C) {
        double sdy = 0, sdyx = 0;
        for (int64_t k = 0; k < chunks; k++) {
            sdy += partial[2 * (c * chunks + k)];
            sdyx += partial[2 * (c * chunks + k) + 1];
        }
        if (dbias) dbias[c] += (float)sdy;
        if (dweight) dweight[c] += (float)(sdyx * rstd[c]);
        sums[c] = share * sdy;
        sums[C + c] = share * sdyx;
        if (c == 0) sums[2 * C] = count;
    }
}

/* coef[2c], [2c + 1] = the global means of dL_r/dy and dL_r/dy xhat in this rank's
 * scale: S1 / share / n and S2 rstd / share / n (share > 0). */
__global__ void bn_sync_coef_kernel(float *coef, const double *sums, const float *rstd,
                                    int64_t C, double share) {
    TG_GRID_STRIDE(c, C) {
        double n = sums[2 * C];
        coef[2 * c] = (float)(sums[c] / share / n);
        coef[2 * c + 1] = (float)(sums[C + c] * rstd[c] / share / n);
    }
}

/* dx += w rstd (dy - coef0 - xhat coef1), element-wise over total = N C HW values.
 * dx, dy, x (N, C, HW); mean, rstd, weight (C; weight may be NULL); coef (2 C). */
template <typename I>
__global__ void bn_sync_dx_kernel(float *dx, const float *dy, const float *x, const float *mean,
                                  const float *rstd, const float *weight, const float *coef,
                                  I total, tg_fastdiv C, tg_fastdiv HW) {
    TG_GRID_STRIDE_I(I, i, total) {
        I c = tg_mod(tg_div(i, HW), C);
        float r = rstd[c], wr = (weight ? weight[c] : 1.0f) * r;
        float xhat = (x[i] - mean[c]) * r;
        dx[i] += wr * (dy[i] - coef[2 * c] - xhat * coef[2 * c + 1]);
    }
}

extern "C" tg_status batchnorm_sync_stats_cuda(void *nccl, float *mean, float *rstd,
                                               float *running_mean, float *running_var,
                                               const float *x, int64_t N, int64_t C,
                                               int64_t HW, float momentum, float eps,
                                               void *work) {
    if (C <= 0) return TG_OK;
    int64_t chunks = sync_chunks(C, N * HW);
    sync_work w = sync_work_split(work, C, chunks);
    cudaStream_t s = tg_cuda_stream();
    unsigned blocks = (unsigned)(C * chunks), cblocks = tg_cuda_blocks(C);
    bn_sync_sum_kernel<<<blocks, BN_SYNC_THREADS, 0, s>>>(w.partial, x, N, C, HW, chunks);
    TG_CUDA_LAUNCHED("batchnorm2d (sync): sums");
    bn_sync_gather_kernel<<<cblocks, TG_CUDA_THREADS, 0, s>>>(w.sums, w.partial, C, chunks,
                                                              (double)(N * HW));
    TG_CUDA_LAUNCHED("batchnorm2d (sync): gather sums");
    tg_status st = tg_nccl_allreduce_f64(nccl, w.sums, C + 1);
    if (st != TG_OK) return st;
    bn_sync_sqdev_kernel<<<blocks, BN_SYNC_THREADS, 0, s>>>(w.partial, x, w.sums, N, C, HW,
                                                            chunks);
    TG_CUDA_LAUNCHED("batchnorm2d (sync): squared deviations");
    bn_sync_gather_kernel<<<cblocks, TG_CUDA_THREADS, 0, s>>>(w.sums + C + 1, w.partial, C,
                                                              chunks, 0.0);
    TG_CUDA_LAUNCHED("batchnorm2d (sync): gather squared deviations");
    if ((st = tg_nccl_allreduce_f64(nccl, w.sums + C + 1, C)) != TG_OK) return st;
    bn_sync_stats_finish_kernel<<<cblocks, TG_CUDA_THREADS, 0, s>>>(
        mean, rstd, running_mean, running_var, w.sums, C, momentum, eps);
    TG_CUDA_LAUNCHED("batchnorm2d (sync): statistics");
    return TG_OK;
}

extern "C" tg_status batchnorm_sync_backward_cuda(void *nccl, float *dx, float *dweight,
                                                  float *dbias, const float *dy, const float *x,
                                                  const float *mean, const float *rstd,
                                                  const float *weight, int64_t N, int64_t C,
                                                  int64_t HW, double share, void *work) {
    if (C <= 0) return TG_OK;
    int64_t chunks = sync_chunks(C, N * HW);
    sync_work w = sync_work_split(work, C, chunks);
    cudaStream_t s = tg_cuda_stream();
    unsigned cblocks = tg_cuda_blocks(C);
    bn_sync_grad_kernel<<<(unsigned)(C * chunks), BN_SYNC_THREADS, 0, s>>>(w.partial, dy, x,
                                                                           mean, N, C, HW,
                                                                           chunks);
    TG_CUDA_LAUNCHED("batchnorm2d (sync): gradient sums");
    bn_sync_grad_gather_kernel<<<cblocks, TG_CUDA_THREADS, 0, s>>>(
        w.sums, dweight, dbias, w.partial, rstd, C, chunks, share, (double)(N * HW));
    TG_CUDA_LAUNCHED("batchnorm2d (sync): gather gradient sums");
    /* Every rank takes part, also one with no dx to write. */
    tg_status st = tg_nccl_allreduce_f64(nccl, w.sums, 2 * C + 1);
    if (st != TG_OK || !dx || share == 0) return st;
    bn_sync_coef_kernel<<<cblocks, TG_CUDA_THREADS, 0, s>>>(w.coef, w.sums, rstd, C, share);
    TG_CUDA_LAUNCHED("batchnorm2d (sync): dx coefficients");
    int64_t total = N * C * HW;
    TG_LAUNCH_INDEXED(total, bn_sync_dx_kernel, tg_cuda_blocks(total), TG_CUDA_THREADS, 0, s, dx,
                      dy, x, mean, rstd, weight, w.coef, total, tg_fastdiv_make(C),
                      tg_fastdiv_make(HW));
    TG_CUDA_LAUNCHED("batchnorm2d (sync): dx");
    return TG_OK;
}
