/*
 * cuda/optim.cu — the fused optimizer steps on the GPU: ONE launch over the whole flat
 * parameter store each (DESIGN §2), the update rules of optim/sgd.c and optim/adam.c
 * line by line. The arithmetic uses the round-to-nearest intrinsics (__fmul_rn,
 * __fadd_rn, ...), which the compiler never contracts into fused multiply-adds, so every
 * operation rounds exactly as the CPU loop's (built without FMA contraction) and the
 * results agree with the CPU kernels; sqrtf and '/' are IEEE-rounded by default in CUDA.
 */
#include "common.cuh"

__global__ void sgd_step_kernel(float *param, const float *grad, float *momentum_buf,
                                int64_t n, sgd_step_args a) {
    TG_GRID_STRIDE(i, n) {
        float p = param[i];
        float d = grad[i];
        if (a.weight_decay != 0.0f) d = __fadd_rn(d, __fmul_rn(a.weight_decay, p));
        if (a.momentum != 0.0f) {
            float b = a.first_step ? d
                                   : __fadd_rn(__fmul_rn(momentum_buf[i], a.momentum),
                                               __fmul_rn(a.one_minus_dampening, d));
            momentum_buf[i] = b;
            d = a.nesterov ? __fadd_rn(d, __fmul_rn(a.momentum, b)) : b;
        }
        param[i] = __fadd_rn(p, __fmul_rn(-a.lr, d));
    }
}

__global__ void adam_step_kernel(float *param, const float *grad, float *exp_avg,
                                 float *exp_avg_sq, int64_t n, adam_step_args a) {
    TG_GRID_STRIDE(i, n) {
        float p = param[i];
        if (a.decoupled) p = __fmul_rn(p, a.decay);
        float g = grad[i];
        if (a.l2 != 0.0f) g = __fadd_rn(g, __fmul_rn(a.l2, p));
        float m = __fadd_rn(__fmul_rn(exp_avg[i], a.beta1), __fmul_rn(a.one_minus_beta1, g));
        float v = __fadd_rn(__fmul_rn(exp_avg_sq[i], a.beta2),
                            __fmul_rn(__fmul_rn(a.one_minus_beta2, g), g));
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), a.bias_correction2_sqrt), a.eps);
        param[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(a.neg_step_size, m), denom));
    }
}

extern "C" tg_status sgd_step_cuda(float *param, const float *grad, float *momentum_buf,
                                   int64_t n, const sgd_step_args *args) {
    if (n <= 0) return TG_OK;
    sgd_step_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        param, grad, momentum_buf, n, *args);
    TG_CUDA_LAUNCHED("sgd_step_cuda");
    return TG_OK;
}

extern "C" tg_status adam_step_cuda(float *param, const float *grad, float *exp_avg,
                                    float *exp_avg_sq, int64_t n, const adam_step_args *args) {
    if (n <= 0) return TG_OK;
    adam_step_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        param, grad, exp_avg, exp_avg_sq, n, *args);
    TG_CUDA_LAUNCHED("adam_step_cuda");
    return TG_OK;
}
