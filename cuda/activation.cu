/*
 * cuda/activation.cu — ReLU and ReLU6 on the GPU (ops/activation.c has the formulas).
 * One grid-stride loop each; the backward reads the mask from the saved output. NaN
 * propagates (forward) and passes the gradient (backward) exactly as on the CPU.
 */
#include "common.cuh"

__global__ void relu_forward_kernel(float *out, const float *inp, int64_t n, float cap) {
    TG_GRID_STRIDE(i, n) {
        float v = inp[i] < 0.0f ? 0.0f : inp[i]; /* NaN fails the test and stays */
        out[i] = v > cap ? cap : v;
    }
}

__global__ void relu_backward_kernel(float *dinp, const float *dout, const float *out,
                                     int64_t n, float cap) {
    const bool capped = cap < INFINITY; /* relu6; relu has no upper cut */
    TG_GRID_STRIDE(i, n) {
        /* Zero where y <= 0 (or y >= cap): at NaN both fail and dy passes, as PyTorch. */
        if (!(out[i] <= 0.0f || (capped && out[i] >= cap))) dinp[i] += dout[i];
    }
}

extern "C" tg_status relu_forward_cuda(float *out, const float *inp, int64_t n, float cap) {
    if (n <= 0) return TG_OK;
    relu_forward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(out, inp,
                                                                                    n, cap);
    TG_CUDA_LAUNCHED("relu_forward_cuda");
    return TG_OK;
}

extern "C" tg_status relu_backward_cuda(float *dinp, const float *dout, const float *out,
                                        int64_t n, float cap) {
    if (n <= 0) return TG_OK;
    relu_backward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dinp, dout, out, n, cap);
    TG_CUDA_LAUNCHED("relu_backward_cuda");
    return TG_OK;
}
