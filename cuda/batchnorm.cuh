/*
 * cuda/batchnorm.cuh — what the batchnorm kernels of one process (cuda/batchnorm.cu) and
 * of a data-parallel job (cuda/batchnorm_sync.cu) share.
 */
#ifndef TG_CUDA_BATCHNORM_CUH
#define TG_CUDA_BATCHNORM_CUH

#include <stdint.h>

/* Channel c's batch statistics from its mean and biased variance over n values: mean and
 * 1/sqrt(var + eps) for the normalisation, and, when running_mean is given, the running
 * averages updated with momentum (the variance unbiased by n / (n - 1), as PyTorch). */
__device__ __forceinline__ void bn_store_stats(float *mean, float *rstd, float *running_mean,
                                               float *running_var, int64_t c, float mean_f,
                                               float var_f, double n, float momentum,
                                               float eps) {
    mean[c] = mean_f;
    rstd[c] = (float)(1.0 / sqrt((double)var_f + eps));
    if (running_mean) {
        double mo = momentum;
        running_mean[c] = (float)(mo * mean_f + (1 - mo) * running_mean[c]);
        double unbiased = (double)var_f * n / (n - 1);
        running_var[c] = (float)(mo * unbiased + (1 - mo) * running_var[c]);
    }
}

#endif
