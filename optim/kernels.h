/*
 * optim/kernels.h — the optimizers' step kernels and their argument structs: plain
 * functions of raw pointers over the flat parameter store (see optim.h). Kept apart from
 * optim.h, which needs core/core.h, so that the CUDA step kernels (cuda/optim.cu) share
 * these exact structs.
 */
#ifndef TG_OPTIM_KERNELS_H
#define TG_OPTIM_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* ---------------------------------------------------------------- SGD kernel */

/* Hyperparameters of one SGD step, already in the float form PyTorch's kernels use. */
typedef struct sgd_step_args {
    float lr;                  /* >= 0 */
    float momentum;            /* 0: no momentum buffer (momentum_buf may be NULL) */
    float one_minus_dampening; /* the alpha of buf.add_(d, alpha = 1 - dampening) */
    float weight_decay;        /* L2: d = g + weight_decay * p */
    bool nesterov;             /* d = d + momentum * buf instead of d = buf */
    bool first_step;           /* buf = d (no dampening), as torch on its first step */
} sgd_step_args;

/* param[n]: updated in place. grad[n]: read. momentum_buf[n]: read and written (NULL when
 * args->momentum == 0). n: floats in each (the flat store, padding included). */
void sgd_step_cpu(float *param, const float *grad, float *momentum_buf, int64_t n,
                  const sgd_step_args *args);

/* ---------------------------------------------------------------- Adam / AdamW kernel */

/* Hyperparameters of one Adam step. Scalars PyTorch computes in double on the host (bias
 * corrections, step size) arrive here already computed and rounded to float, as torch
 * rounds a Python scalar when it meets a float32 tensor. Filled by adam_step_args_make. */
typedef struct adam_step_args {
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float eps;
    float l2;                    /* Adam: g = g + l2 * p (0 for AdamW) */
    float decay;                 /* AdamW: p = p * decay first, decay = 1 - lr * wd (1 for Adam) */
    bool decoupled;              /* AdamW */
    float neg_step_size;         /* -lr / (1 - beta1^t) */
    float bias_correction2_sqrt; /* sqrt(1 - beta2^t) */
} adam_step_args;

/* Coefficients for step number t (1-based) computed in double as torch 1.13 does. */
adam_step_args adam_step_args_make(double lr, double beta1, double beta2, double eps,
                                   double weight_decay, bool decoupled, int64_t t);

/* param[n]: updated in place. grad[n]: read. exp_avg[n], exp_avg_sq[n] (first and second
 * moments): read and written. n: floats in each (the flat store, padding included). */
void adam_step_cpu(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                   int64_t n, const adam_step_args *args);

#endif /* TG_OPTIM_KERNELS_H */
