/*
 * cuda/loss.cu — cross entropy (fused log-softmax + NLL) and mean squared error on the
 * GPU. ops/loss.c has the formulas and the backward derivations.
 *
 * Cross entropy: one thread per position (n, p) runs over the C classes (max, then the
 * sum of exponentials: the CPU's two passes) and writes the max and the log-sum, kept
 * apart as on the CPU; along p the threads of a
 * warp read consecutive addresses of each class plane. Each block sums its positions'
 * negative log-likelihoods in double into partial[block]; one more block adds the
 * partials in a fixed order and writes the mean. The backward is one thread per logit.
 *
 * The incoming gradient dL (a scalar) stays on the device, where the tape keeps it: the
 * backward kernels read it themselves, so nothing waits for the GPU.
 */
#include "common.cuh"

/* loss[0] = (sum of partial[0..count)) / denom, in double, in a fixed order. One block. */
__global__ void loss_finish_kernel(float *loss, const double *partial, int64_t count,
                                   double denom) {
    __shared__ double scratch[32];
    double s = 0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) loss[0] = (float)(s / denom);
}

__global__ void cross_entropy_forward_kernel(float *max, float *logsum, double *partial,
                                             const float *logits, const int32_t *target,
                                             int32_t ignore_index, int64_t N, int64_t C,
                                             int64_t inner) {
    __shared__ double scratch[32];
    int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; /* position n inner + p */
    double nll = 0;
    if (q < N * inner) {
        int64_t n = q / inner, p = q % inner;
        const float *x = logits + n * C * inner + p;
        float m = x[0];
        for (int64_t c = 1; c < C; c++) m = x[c * inner] > m ? x[c * inner] : m;
        float s = 0.0f;
        for (int64_t c = 0; c < C; c++) s += expf(x[c * inner] - m);
        float ls = logf(s);
        max[q] = m;
        logsum[q] = ls;
        /* m and the log-sum kept apart (ops/loss.c: accurate at any logit scale). */
        int32_t t = target[q];
        if (t != ignore_index) nll = ((double)m - (double)x[(int64_t)t * inner]) + (double)ls;
    }
    nll = tg_block_sum(nll, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = nll;
}

/* One thread per logit i = (n C + c) inner + p (total = N C inner; positions = N inner);
 * i is split by precomputed divisors (common.cuh), 32-bit when the tensor allows. A
 * target equal to ignore_index contributes nothing; count is the targets that count. */
template <typename I>
__global__ void cross_entropy_backward_kernel(float *dlogits, const float *logits,
                                              const float *max, const float *logsum,
                                              const int32_t *target, int32_t ignore_index,
                                              const float *dloss, int64_t count, I total,
                                              tg_fastdiv C, tg_fastdiv inner) {
    float scale = count > 0 ? (float)((double)dloss[0] / (double)count) : 0.0f;
    TG_GRID_STRIDE_I(I, i, total) {
        I nc = tg_div(i, inner), p = i - nc * (I)inner.d; /* nc = n C + c */
        I n = tg_div(nc, C), c = nc - n * (I)C.d;
        I q = n * (I)inner.d + p;
        int32_t t = target[q];
        float w = t == ignore_index ? 0.0f : scale; /* ignored positions: weight 0 */
        float g = expf((logits[i] - max[q]) - logsum[q]) * w;
        if ((I)t == c) g -= w;
        dlogits[i] += g;
    }
}

__global__ void mse_forward_kernel(double *partial, const float *pred, const float *target,
                                   int64_t n) {
    __shared__ double scratch[32];
    double s = 0;
    /* Fixed-size grid, fixed stride: each thread's share, and so the sum, is reproducible. */
    TG_GRID_STRIDE(i, n) {
        double d = (double)pred[i] - (double)target[i];
        s += d * d;
    }
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void mse_backward_kernel(float *dpred, float *dtarget, const float *pred,
                                    const float *target, const float *dloss, int64_t n) {
    float scale = (float)(2.0 * (double)dloss[0] / (double)n);
    TG_GRID_STRIDE(i, n) {
        float g = scale * (pred[i] - target[i]);
        if (dpred) dpred[i] += g;
        if (dtarget) dtarget[i] -= g;
    }
}

/* Blocks of the MSE reduction: enough to fill a large GPU, few enough for one block to
 * add up. */
#define MSE_BLOCKS 1024

extern "C" int64_t cross_entropy_partials_cuda(int64_t N, int64_t inner) {
    return tg_cuda_ceil_div(N * inner, TG_CUDA_THREADS);
}

extern "C" tg_status cross_entropy_forward_cuda(float *loss, float *max, float *logsum,
                                                double *partial, const float *logits,
                                                const int32_t *target, int32_t ignore_index,
                                                int64_t count, int64_t N, int64_t C,
                                                int64_t inner) {
    int64_t blocks = cross_entropy_partials_cuda(N, inner);
    if (blocks <= 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    cross_entropy_forward_kernel<<<(unsigned)blocks, TG_CUDA_THREADS, 0, s>>>(
        max, logsum, partial, logits, target, ignore_index, N, C, inner);
    TG_CUDA_LAUNCHED("cross_entropy_forward_cuda");
    /* Every target ignored: the sum (0) over a NaN divisor gives PyTorch's NaN. */
    double denom = count > 0 ? (double)count : (double)NAN;
    loss_finish_kernel<<<1, 1024, 0, s>>>(loss, partial, blocks, denom);
    TG_CUDA_LAUNCHED("cross_entropy_forward_cuda");
    return TG_OK;
}

extern "C" tg_status cross_entropy_backward_cuda(float *dlogits, const float *logits,
                                                 const float *max, const float *logsum,
                                                 const int32_t *target, int32_t ignore_index,
                                                 const float *dloss, int64_t count, int64_t N,
                                                 int64_t C, int64_t inner) {
    int64_t total = N * C * inner;
    if (total <= 0) return TG_OK;
    TG_LAUNCH_INDEXED(total, cross_entropy_backward_kernel, tg_cuda_blocks(total),
                      TG_CUDA_THREADS, 0, tg_cuda_stream(), dlogits, logits, max, logsum,
                      target, ignore_index, dloss, count, total, tg_fastdiv_make(C),
                      tg_fastdiv_make(inner));
    TG_CUDA_LAUNCHED("cross_entropy_backward_cuda");
    return TG_OK;
}

extern "C" int64_t mse_partials_cuda(int64_t n) {
    int64_t b = tg_cuda_ceil_div(n, TG_CUDA_THREADS);
    return b < MSE_BLOCKS ? b : MSE_BLOCKS;
}

extern "C" tg_status mse_forward_cuda(float *loss, double *partial, const float *pred,
                                      const float *target, int64_t n) {
    int64_t blocks = mse_partials_cuda(n);
    if (blocks <= 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    mse_forward_kernel<<<(unsigned)blocks, TG_CUDA_THREADS, 0, s>>>(partial, pred, target, n);
    TG_CUDA_LAUNCHED("mse_forward_cuda");
    loss_finish_kernel<<<1, 1024, 0, s>>>(loss, partial, blocks, (double)n);
    TG_CUDA_LAUNCHED("mse_forward_cuda");
    return TG_OK;
}

extern "C" tg_status mse_backward_cuda(float *dpred, float *dtarget, const float *pred,
                                       const float *target, const float *dloss, int64_t n) {
    if (n <= 0 || (!dpred && !dtarget)) return TG_OK;
    mse_backward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dpred, dtarget, pred, target, dloss, n);
    TG_CUDA_LAUNCHED("mse_backward_cuda");
    return TG_OK;
}
