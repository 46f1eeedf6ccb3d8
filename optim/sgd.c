/*
 * optim/sgd.c — stochastic gradient descent with momentum, dampening, Nesterov momentum
 * and L2 weight decay: PyTorch 1.13's torch.optim.SGD, step for step.
 *
 * For every element, with g the gradient, p the parameter, b the momentum buffer and
 * t the step number (1-based):
 *
 *   d = g + weight_decay * p                       (only when weight_decay != 0)
 *   if momentum != 0:
 *       b = d                                      (t = 1: no dampening on the first step)
 *       b = momentum * b + (1 - dampening) * d     (t > 1)
 *       d = d + momentum * b                       (nesterov)
 *       d = b                                      (otherwise)
 *   p = p - lr * d
 *
 * The arithmetic follows torch's order (buf.mul_(momentum).add_(d, alpha=1-dampening),
 * param.add_(d, alpha=-lr)), with `1 - dampening` computed in double and rounded to float
 * as torch does with a Python scalar, so float32 runs agree with torch to rounding.
 *
 * Options are taken as given (zero means zero: torch's SGD defaults are all zero, and lr
 * = 0 is legal), checked as torch checks them: lr, momentum, weight_decay >= 0 (and every
 * value finite); dampening has no range in torch, so none here.
 *
 * State: one flat array (the momentum buffer) in the parameter store when momentum > 0;
 * plain SGD holds none. Nesterov needs momentum > 0 and dampening = 0 (as torch).
 * On padding (p = g = b = 0) every line above gives 0, so the fused loop keeps it 0.
 */
#include "optim.h"

#include "../cuda/tg_cuda.h"

#include <math.h>

typedef struct sgd_range_args {
    float *param, *momentum_buf;
    const float *grad;
    const sgd_step_args *args;
} sgd_range_args;

/* Elements [begin, end): each on its own (tg_parallel_range). */
static void sgd_range(void *arg, int64_t begin, int64_t end) {
    const sgd_range_args *r = arg;
    float *restrict param = r->param, *restrict momentum_buf = r->momentum_buf;
    const float *restrict grad = r->grad;
    const sgd_step_args *args = r->args;
    const float lr = args->lr, momentum = args->momentum, weight_decay = args->weight_decay;
    const float one_minus_dampening = args->one_minus_dampening;
    const bool nesterov = args->nesterov, first_step = args->first_step;
    if (momentum == 0.0f) {
        /* Plain SGD: no buffer (momentum_buf may be NULL, so it gets a loop of its own). */
#pragma omp simd
        for (int64_t i = begin; i < end; i++) {
            float d = grad[i];
            if (weight_decay != 0.0f) d = d + weight_decay * param[i];
            param[i] = param[i] + (-lr) * d;
        }
        return;
    }
#pragma omp simd
    for (int64_t i = begin; i < end; i++) {
        float d = grad[i];
        if (weight_decay != 0.0f) d = d + weight_decay * param[i];
        float b = first_step ? d : momentum_buf[i] * momentum + one_minus_dampening * d;
        momentum_buf[i] = b;
        d = nesterov ? d + momentum * b : b;
        param[i] = param[i] + (-lr) * d;
    }
}

void sgd_step_cpu(float *param, const float *grad, float *momentum_buf, int64_t n,
                  const sgd_step_args *args) {
    sgd_range_args r = {.param = param, .momentum_buf = momentum_buf, .grad = grad,
                        .args = args};
    tg_parallel_items(n, 1, OPTIM_SERIAL, OPTIM_GRAIN, sgd_range, &r);
}

static sgd_step_args sgd_args(const tg_optim *opt, int64_t t) {
    const tg_optim_hyper *h = &opt->hyper;
    return (sgd_step_args){
        .lr = (float)opt->lr,
        .momentum = (float)h->momentum,
        .one_minus_dampening = (float)(1.0 - h->dampening),
        .weight_decay = (float)h->weight_decay,
        .nesterov = h->nesterov,
        .first_step = t == 1,
    };
}

static tg_status sgd_step(tg_optim *opt, int64_t t) {
    sgd_step_args args = sgd_args(opt, t);
    sgd_step_cpu(tg_params_data(opt->ps), tg_params_grad(opt->ps), opt->state,
                 tg_params_flat_numel(opt->ps), &args);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_sgd_step(tg_optim *opt, int64_t t) {
    sgd_step_args args = sgd_args(opt, t);
    return sgd_step_cuda(tg_params_data(opt->ps), tg_params_grad(opt->ps), opt->state,
                         tg_params_flat_numel(opt->ps), &args);
}
#endif

static const tg_optim_kind sgd_kind = {
    .name = "sgd",
    .ctor = "tg_sgd_new",
    .step = {[TG_DEVICE_CPU] = sgd_step, TG_CUDA_ENTRY(cuda_sgd_step)},
};

tg_optim *tg_sgd_new(tg_params *ps, tg_sgd_opts opts) {
    const char *ctor = sgd_kind.ctor;
    if (!tg_optim_check_option(ctor, "lr", opts.lr, opts.lr >= 0 && isfinite(opts.lr),
                               "finite and >= 0") ||
        !tg_optim_check_option(ctor, "momentum", opts.momentum,
                               opts.momentum >= 0 && isfinite(opts.momentum),
                               "finite and >= 0 (0 turns momentum off)") ||
        !tg_optim_check_option(ctor, "dampening", opts.dampening, isfinite(opts.dampening),
                               "finite (torch.optim.SGD checks no range; 0 to 1 is usual)") ||
        !tg_optim_check_option(ctor, "weight_decay", opts.weight_decay,
                               opts.weight_decay >= 0 && isfinite(opts.weight_decay),
                               "finite and >= 0 (0 turns it off)"))
        return NULL;
    if (opts.nesterov && (opts.momentum <= 0 || opts.dampening != 0)) {
        tg_fail(TG_ERR_ARG, "%s: option 'nesterov' needs momentum > 0 and dampening = 0 (got "
                "momentum %g, dampening %g)", ctor, opts.momentum, opts.dampening);
        return NULL;
    }
    tg_optim_hyper hyper = {
        .momentum = opts.momentum,
        .dampening = opts.dampening,
        .nesterov = opts.nesterov,
        .weight_decay = opts.weight_decay,
    };
    return tg_optim_create(&sgd_kind, ps, opts.lr, hyper, opts.momentum > 0 ? 1 : 0);
}
