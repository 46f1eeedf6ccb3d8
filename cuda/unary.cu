/*
 * cuda/unary.cu — the element-wise functions of ops/unary.c on the GPU. The per-element
 * math is ops/unary.h's (compiled here for the device), so the kernels are grid-stride
 * loops around it; the kind is the same for every thread, so the switch never diverges.
 */
#include "common.cuh"

__global__ void unary_forward_kernel(float *out, const float *x, int64_t n, unary_kind kind,
                                     unary_args a) {
    TG_GRID_STRIDE(i, n) out[i] = tg_unary_value(kind, x[i], a);
}

__global__ void unary_backward_kernel(float *dx, const float *dout, const float *x,
                                      const float *y, int64_t n, unary_kind kind,
                                      unary_args a) {
    TG_GRID_STRIDE(i, n) dx[i] += dout[i] * tg_unary_derivative(kind, x[i], y[i], a);
}

extern "C" tg_status unary_forward_cuda(float *out, const float *x, int64_t n, unary_kind kind,
                                        unary_args a) {
    if (n <= 0) return TG_OK;
    unary_forward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        out, x, n, kind, a);
    TG_CUDA_LAUNCHED("unary_forward_cuda");
    return TG_OK;
}

extern "C" tg_status unary_backward_cuda(float *dx, const float *dout, const float *x,
                                         const float *y, int64_t n, unary_kind kind,
                                         unary_args a) {
    if (n <= 0) return TG_OK;
    unary_backward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dx, dout, x, y, n, kind, a);
    TG_CUDA_LAUNCHED("unary_backward_cuda");
    return TG_OK;
}
