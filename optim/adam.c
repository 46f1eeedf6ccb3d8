/*
 * optim/adam.c — Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019): PyTorch
 * 1.13's torch.optim.Adam / AdamW (amsgrad off), step for step.
 *
 * For every element, with g the gradient, p the parameter, m and v the first and second
 * moments (state, starting at 0) and t the step number (1-based):
 *
 *   p = p * (1 - lr * weight_decay)            AdamW only: decoupled weight decay
 *   g = g + weight_decay * p                   Adam only: L2 added to the gradient
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   m_hat = m / (1 - beta1^t)                  bias corrections
 *   v_hat = v / (1 - beta2^t)
 *   p = p - lr * m_hat / (sqrt(v_hat) + eps)   eps is added AFTER the square root
 *
 * As torch computes it: the scalars (1 - beta^t, lr / (1 - beta1^t), sqrt(1 - beta2^t),
 * 1 - lr * wd) in double on the host, rounded to float when they meet the float32 state;
 * then per element
 *   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
 *   p     = p + (-lr / (1 - beta1^t)) * m / denom
 * The kernel keeps that order so float32 runs agree with torch to rounding.
 *
 * Options (tg_adam_opts): a zero field means PyTorch's default — lr 1e-3, beta1 0.9,
 * beta2 0.999, eps 1e-8 (kept in double, exactly as torch's Python floats).
 * weight_decay is taken as given for both, 0 meaning none: note that torch's AdamW
 * defaults to 1e-2, tg_adamw_new does not.
 *
 * State: two flat arrays (m, then v) in the parameter store. On padding (p = g = m = v
 * = 0) the update gives m = v = 0, denom = eps and p = 0, with or without either weight
 * decay, so the fused loop keeps it 0.
 */
#include "optim.h"

#include "../cuda/tg_cuda.h"

#include <math.h>

/* PyTorch's defaults (torch.optim.Adam), used for zero fields of tg_adam_opts. */
#define ADAM_DEFAULT_LR 1e-3
#define ADAM_DEFAULT_BETA1 0.9
#define ADAM_DEFAULT_BETA2 0.999
#define ADAM_DEFAULT_EPS 1e-8

adam_step_args adam_step_args_make(double lr, double beta1, double beta2, double eps,
                                   double weight_decay, bool decoupled, int64_t t) {
    double bias_correction1 = 1.0 - pow(beta1, (double)t);
    double bias_correction2 = 1.0 - pow(beta2, (double)t);
    adam_step_args args = {
        .beta1 = (float)beta1,
        .one_minus_beta1 = (float)(1.0 - beta1),
        .beta2 = (float)beta2,
        .one_minus_beta2 = (float)(1.0 - beta2),
        .eps = (float)eps,
        .l2 = decoupled ? 0.0f : (float)weight_decay,
        .decay = decoupled ? (float)(1.0 - lr * weight_decay) : 1.0f,
        .decoupled = decoupled,
        .neg_step_size = (float)(-(lr / bias_correction1)),
        .bias_correction2_sqrt = (float)sqrt(bias_correction2),
    };
    return args;
}

void adam_step_cpu(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                   int64_t n, const adam_step_args *args) {
    const float beta1 = args->beta1, one_minus_beta1 = args->one_minus_beta1;
    const float beta2 = args->beta2, one_minus_beta2 = args->one_minus_beta2;
    const float eps = args->eps, l2 = args->l2, decay = args->decay;
    const float neg_step_size = args->neg_step_size;
    const float bias_correction2_sqrt = args->bias_correction2_sqrt;
    const bool decoupled = args->decoupled;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float p = param[i];
        if (decoupled) p = p * decay;
        float g = grad[i];
        if (l2 != 0.0f) g = g + l2 * p;
        float m = exp_avg[i] * beta1 + one_minus_beta1 * g;
        float v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = sqrtf(v) / bias_correction2_sqrt + eps;
        param[i] = p + neg_step_size * m / denom;
    }
}

static tg_status adam_step(tg_optim *opt, int64_t t) {
    const tg_optim_hyper *h = &opt->hyper;
    int64_t n = tg_params_flat_numel(opt->ps);
    adam_step_args args = adam_step_args_make(opt->lr, h->beta1, h->beta2, h->eps,
                                              h->weight_decay, false, t);
    adam_step_cpu(tg_params_data(opt->ps), tg_params_grad(opt->ps), opt->state,
                  opt->state + n, n, &args);
    return TG_OK;
}

static tg_status adamw_step(tg_optim *opt, int64_t t) {
    const tg_optim_hyper *h = &opt->hyper;
    int64_t n = tg_params_flat_numel(opt->ps);
    adam_step_args args = adam_step_args_make(opt->lr, h->beta1, h->beta2, h->eps,
                                              h->weight_decay, true, t);
    adam_step_cpu(tg_params_data(opt->ps), tg_params_grad(opt->ps), opt->state,
                  opt->state + n, n, &args);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_adam_step_common(tg_optim *opt, int64_t t, bool decoupled) {
    const tg_optim_hyper *h = &opt->hyper;
    int64_t n = tg_params_flat_numel(opt->ps);
    adam_step_args args = adam_step_args_make(opt->lr, h->beta1, h->beta2, h->eps,
                                              h->weight_decay, decoupled, t);
    return adam_step_cuda(tg_params_data(opt->ps), tg_params_grad(opt->ps), opt->state,
                          opt->state + n, n, &args);
}

static tg_status cuda_adam_step(tg_optim *opt, int64_t t) {
    return cuda_adam_step_common(opt, t, false);
}

static tg_status cuda_adamw_step(tg_optim *opt, int64_t t) {
    return cuda_adam_step_common(opt, t, true);
}
#endif

static const tg_optim_kind adam_kind = {
    .name = "adam",
    .ctor = "tg_adam_new",
    .step = {[TG_DEVICE_CPU] = adam_step, TG_CUDA_ENTRY(cuda_adam_step)},
};

static const tg_optim_kind adamw_kind = {
    .name = "adamw",
    .ctor = "tg_adamw_new",
    .step = {[TG_DEVICE_CPU] = adamw_step, TG_CUDA_ENTRY(cuda_adamw_step)},
};

/* A zero field takes its default; anything else is checked against its range. */
static tg_optim *adam_create(const tg_optim_kind *kind, tg_params *ps, tg_adam_opts opts) {
    const char *ctor = kind->ctor;
    if (!tg_optim_check_option(ctor, "lr", opts.lr, opts.lr >= 0 && isfinite(opts.lr),
                               "finite and > 0 (0 means the default 1e-3)") ||
        !tg_optim_check_option(ctor, "beta1", opts.beta1, opts.beta1 >= 0 && opts.beta1 < 1,
                               "[0, 1) (0 means the default 0.9)") ||
        !tg_optim_check_option(ctor, "beta2", opts.beta2, opts.beta2 >= 0 && opts.beta2 < 1,
                               "[0, 1) (0 means the default 0.999)") ||
        !tg_optim_check_option(ctor, "eps", opts.eps, opts.eps >= 0 && isfinite(opts.eps),
                               "finite and > 0 (0 means the default 1e-8)") ||
        !tg_optim_check_option(ctor, "weight_decay", opts.weight_decay,
                               opts.weight_decay >= 0 && isfinite(opts.weight_decay),
                               "finite and >= 0 (0 turns it off)"))
        return NULL;
    tg_optim_hyper hyper = {
        .beta1 = opts.beta1 != 0 ? opts.beta1 : ADAM_DEFAULT_BETA1,
        .beta2 = opts.beta2 != 0 ? opts.beta2 : ADAM_DEFAULT_BETA2,
        .eps = opts.eps != 0 ? opts.eps : ADAM_DEFAULT_EPS,
        .weight_decay = opts.weight_decay,
    };
    double lr = opts.lr != 0 ? opts.lr : ADAM_DEFAULT_LR;
    return tg_optim_create(kind, ps, lr, hyper, 2);
}

tg_optim *tg_adam_new(tg_params *ps, tg_adam_opts opts) {
    return adam_create(&adam_kind, ps, opts);
}

tg_optim *tg_adamw_new(tg_params *ps, tg_adam_opts opts) {
    return adam_create(&adamw_kind, ps, opts);
}
