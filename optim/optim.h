/*
 * optim/optim.h — internals of the optimizers: the tg_optim struct, the per-kind
 * descriptor with its device-indexed step table, and the CPU kernels (plain functions of
 * raw pointers, callable from tests and benchmarks).
 *
 * Every kernel runs ONE fused loop over the whole flat parameter store (DESIGN §2):
 * param/grad/state are tg_params_flat_numel floats, alignment padding included. The
 * padding holds 0 in param, grad and state, and every update rule maps (p, g, state) =
 * (0, 0, 0) to (0, 0, 0), so looping over it is harmless (tests check it stays 0).
 */
#ifndef TG_OPTIM_H
#define TG_OPTIM_H

#include "../core/core.h"

/* ---------------------------------------------------------------- SGD kernel */

/* Hyperparameters of one SGD step, already in the float form PyTorch's kernels use. */
typedef struct sgd_step_args {
    float lr;                  /* > 0 */
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

/* ---------------------------------------------------------------- the optimizer object */

typedef struct tg_optim tg_optim;

/* Runs one step of `opt` on its store's device; t is the 1-based step number. */
typedef tg_status (*tg_optim_step_fn)(tg_optim *opt, int64_t t);

/* One constant per optimizer kind (sgd.c, adam.c), like an op's tg_op. */
typedef struct tg_optim_kind {
    const char *name;                       /* "sgd", "adam", "adamw" */
    const char *ctor;                       /* "tg_sgd_new", ... (for messages) */
    tg_optim_step_fn step[TG_DEVICE_COUNT]; /* a missing entry is a clear error */
} tg_optim_kind;

typedef struct tg_optim_hyper {
    double momentum, dampening; /* SGD */
    bool nesterov;
    double beta1, beta2, eps;   /* Adam / AdamW */
    double weight_decay;
} tg_optim_hyper;

struct tg_optim {
    const tg_optim_kind *kind;
    tg_params *ps;
    double lr;            /* tg_optim_set_lr changes it between steps */
    tg_optim_hyper hyper; /* validated, defaults applied */
    int64_t steps;        /* completed steps */
    int slots;            /* state arrays held in the store (0: stateless) */
    float *state;         /* slots x tg_params_flat_numel floats, or NULL */
};

/* Shared part of the constructors (optim.c): checks the store (NULL, no trainable
 * parameter, no step kernel for its device, state of another optimizer), acquires `slots`
 * state arrays and returns the object, or NULL with a message naming kind->ctor. */
tg_optim *tg_optim_create(const tg_optim_kind *kind, tg_params *ps, double lr,
                          tg_optim_hyper hyper, int slots);

/* Option validation: when !ok, records TG_ERR_ARG "<ctor>: option '<option>' is <value>;
 * valid range: <range>" and returns false. */
bool tg_optim_check_option(const char *ctor, const char *option, double value, bool ok,
                           const char *range);

#endif /* TG_OPTIM_H */
