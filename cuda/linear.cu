/*
 * cuda/linear.cu — the fully connected layer on the GPU (ops/linear.c has the formulas
 * and the derivation): y = x W^T + b as one cuBLAS SGEMM onto rows pre-filled with b;
 * backward dx += dy W and dW += dy^T x as SGEMMs with beta = 1, db += the column sums
 * of dy (one thread per column, reading rows in order: coalesced across the warp).
 */
#include "common.cuh"

/* y[n, o] = bias[o] for every row n (total = N out; the index type as common.cuh). */
template <typename I>
__global__ void linear_fill_bias_kernel(float *y, const float *bias, I total, tg_fastdiv out) {
    TG_GRID_STRIDE_I(I, i, total) y[i] = bias[tg_mod(i, out)];
}

/* dbias[o] += sum_n dy[n, o]. */
__global__ void linear_bias_backward_kernel(float *dbias, const float *dy, int64_t N,
                                            int64_t out) {
    TG_GRID_STRIDE(o, out) {
        float s = 0.0f;
        for (int64_t n = 0; n < N; n++) s += dy[n * out + o];
        dbias[o] += s;
    }
}

extern "C" tg_status linear_forward_cuda(float *y, const float *x, const float *weight,
                                         const float *bias, int64_t N, int64_t in,
                                         int64_t out) {
    if (N <= 0 || out <= 0) return TG_OK;
    float beta = 0.0f;
    if (bias) {
        TG_LAUNCH_INDEXED(N * out, linear_fill_bias_kernel, tg_cuda_blocks(N * out),
                          TG_CUDA_THREADS, 0, tg_cuda_stream(), y, bias, N * out,
                          tg_fastdiv_make(out));
        TG_CUDA_LAUNCHED("linear_forward_cuda");
        beta = 1.0f;
    }
    /* y (N, out) = x (N, in) . W^T (in, out) */
    return tg_cuda_sgemm(false, true, (int)N, (int)out, (int)in, 1.0f, x, (int)in, weight,
                         (int)in, beta, y, (int)out);
}

extern "C" tg_status linear_backward_cuda(float *dx, float *dweight, float *dbias,
                                          const float *dy, const float *x, const float *weight,
                                          int64_t N, int64_t in, int64_t out) {
    tg_status st;
    if (dx) {
        /* dx (N, in) += dy (N, out) . W (out, in) */
        st = tg_cuda_sgemm(false, false, (int)N, (int)in, (int)out, 1.0f, dy, (int)out, weight,
                           (int)in, 1.0f, dx, (int)in);
        if (st != TG_OK) return st;
    }
    if (dweight) {
        /* dW (out, in) += dy^T (out, N) . x (N, in) */
        st = tg_cuda_sgemm(true, false, (int)out, (int)in, (int)N, 1.0f, dy, (int)out, x,
                           (int)in, 1.0f, dweight, (int)in);
        if (st != TG_OK) return st;
    }
    if (dbias && out > 0) {
        linear_bias_backward_kernel<<<tg_cuda_blocks(out), TG_CUDA_THREADS, 0,
                                      tg_cuda_stream()>>>(dbias, dy, N, out);
        TG_CUDA_LAUNCHED("linear_backward_cuda");
    }
    return TG_OK;
}
