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
 * Options (tg_adam_opts, doubles as torch's Python floats) come from the constructors
 * tg_adam_opts_default / tg_adamw_opts_default, which fill PyTorch's defaults — lr 1e-3,
 * beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0 (Adam) or 1e-2 (AdamW) — and every
 * field is then taken as given: zero means zero. beta1 = 0 gives m = g and 1 - beta1^t =
 * 1 (no momentum, no first-moment correction); eps = 0 is legal too, and as in torch an
 * element whose gradient has been exactly 0 at every step then gets 0/0 = NaN.
 *
 * State: two flat arrays (m, then v) in the parameter store. On padding (p = g = m = v
 * = 0) the update gives m = v = 0, denom = eps and p = 0, with or without either weight
 * decay, so the fused loop keeps it 0 — except with eps = 0, where denom = 0 and the
 * padding's p becomes 0/0 = NaN; that step then writes the padding of the values back
 * to 0 (a few bytes per parameter), so the store stays clean.
 */
#include "optim.h"

#include "../cuda/tg_cuda.h"

#include <math.h>

tg_adam_opts tg_adam_opts_default(void) {
    return (tg_adam_opts){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = 0.0, .tag = TG_OPTS_TAG};
}

tg_adam_opts tg_adamw_opts_default(void) {
    tg_adam_opts o = tg_adam_opts_default();
    o.weight_decay = 1e-2;
    return o;
}

/* With eps = 0 the padding between parameters (p = g = m = v = 0) becomes 0/0 = NaN in
 * the values; write it back to 0. The padding of parameter i runs from its end to the
 * start of the next trainable one (or the end of the flat store). */
static tg_status adam_rezero_padding(tg_optim *opt) {
    tg_params *ps = opt->ps;
    float *base = tg_params_data(ps);
    tg_device device = tg_params_device(ps);
    int64_t flat = tg_params_flat_numel(ps);
    tg_tensor *prev = NULL;
    for (int i = 0; i <= tg_params_count(ps); i++) {
        tg_tensor *t = i < tg_params_count(ps) ? tg_params_at(ps, i) : NULL;
        if (t && !t->requires_grad) continue; /* buffers live elsewhere */
        if (prev) {
            int64_t end = (prev->data - base) + prev->numel;
            int64_t next = t ? t->data - base : flat;
            tg_status st = tg_device_zero(device, base + end, (size_t)(next - end) * sizeof(float));
            if (st) return st;
        }
        prev = t;
    }
    return TG_OK;
}

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

typedef struct adam_range_args {
    float *param, *exp_avg, *exp_avg_sq;
    const float *grad;
    const adam_step_args *args;
} adam_range_args;

/* Elements [begin, end): each on its own, so the update is the same bits whichever
 * thread runs a chunk (tg_parallel_range). */
static void adam_range(void *arg, int64_t begin, int64_t end) {
    const adam_range_args *r = arg;
    float *restrict param = r->param, *restrict exp_avg = r->exp_avg;
    float *restrict exp_avg_sq = r->exp_avg_sq;
    const float *restrict grad = r->grad;
    const adam_step_args *args = r->args;
    const float beta1 = args->beta1, one_minus_beta1 = args->one_minus_beta1;
    const float beta2 = args->beta2, one_minus_beta2 = args->one_minus_beta2;
    const float eps = args->eps, l2 = args->l2, decay = args->decay;
    const float neg_step_size = args->neg_step_size;
    const float bias_correction2_sqrt = args->bias_correction2_sqrt;
    const bool decoupled = args->decoupled;
#pragma omp simd
    for (int64_t i = begin; i < end; i++) {
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

void adam_step_cpu(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                   int64_t n, const adam_step_args *args) {
    adam_range_args r = {.param = param, .exp_avg = exp_avg, .exp_avg_sq = exp_avg_sq,
                         .grad = grad, .args = args};
    tg_parallel_items(n, 1, OPTIM_SERIAL, OPTIM_GRAIN, adam_range, &r);
}

static tg_status adam_step(tg_optim *opt, int64_t t) {
    const tg_optim_hyper *h = &opt->hyper;
    int64_t n = tg_params_flat_numel(opt->ps);
    adam_step_args args = adam_step_args_make(opt->lr, h->beta1, h->beta2, h->eps,
                                              h->weight_decay, false, t);
    adam_step_cpu(tg_params_data(opt->ps), tg_params_grad(opt->ps), opt->state,
                  opt->state + n, n, &args);
    return h->eps == 0 ? adam_rezero_padding(opt) : TG_OK;
}

static tg_status adamw_step(tg_optim *opt, int64_t t) {
    const tg_optim_hyper *h = &opt->hyper;
    int64_t n = tg_params_flat_numel(opt->ps);
    adam_step_args args = adam_step_args_make(opt->lr, h->beta1, h->beta2, h->eps,
                                              h->weight_decay, true, t);
    adam_step_cpu(tg_params_data(opt->ps), tg_params_grad(opt->ps), opt->state,
                  opt->state + n, n, &args);
    return h->eps == 0 ? adam_rezero_padding(opt) : TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_adam_step_common(tg_optim *opt, int64_t t, bool decoupled) {
    const tg_optim_hyper *h = &opt->hyper;
    int64_t n = tg_params_flat_numel(opt->ps);
    adam_step_args args = adam_step_args_make(opt->lr, h->beta1, h->beta2, h->eps,
                                              h->weight_decay, decoupled, t);
    tg_status st = adam_step_cuda(tg_params_data(opt->ps), tg_params_grad(opt->ps),
                                  opt->state, opt->state + n, n, &args);
    if (st) return st;
    return h->eps == 0 ? adam_rezero_padding(opt) : TG_OK;
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

/* Every field taken as given, checked against PyTorch's ranges (and finite). */
static tg_optim *adam_create(const tg_optim_kind *kind, tg_params *ps, tg_adam_opts opts) {
    const char *ctor = kind->ctor;
    if (opts.tag != TG_OPTS_TAG) {
        tg_fail(TG_ERR_ARG, "%s: the options were not made by %s(); hint: start from "
                "tg_adam_opts o = %s(); then set fields (a zero beta1, beta2 or eps is taken "
                "as zero, not as the default)", ctor,
                kind == &adamw_kind ? "tg_adamw_opts_default" : "tg_adam_opts_default",
                kind == &adamw_kind ? "tg_adamw_opts_default" : "tg_adam_opts_default");
        return NULL;
    }
    if (!tg_optim_check_option(ctor, "lr", opts.lr, opts.lr >= 0 && isfinite(opts.lr),
                               "finite and >= 0") ||
        !tg_optim_check_option(ctor, "beta1", opts.beta1, opts.beta1 >= 0 && opts.beta1 < 1,
                               "[0, 1)") ||
        !tg_optim_check_option(ctor, "beta2", opts.beta2, opts.beta2 >= 0 && opts.beta2 < 1,
                               "[0, 1)") ||
        !tg_optim_check_option(ctor, "eps", opts.eps, opts.eps >= 0 && isfinite(opts.eps),
                               "finite and >= 0") ||
        !tg_optim_check_option(ctor, "weight_decay", opts.weight_decay,
                               opts.weight_decay >= 0 && isfinite(opts.weight_decay),
                               "finite and >= 0 (0 turns it off)"))
        return NULL;
    tg_optim_hyper hyper = {
        .beta1 = opts.beta1,
        .beta2 = opts.beta2,
        .eps = opts.eps,
        .weight_decay = opts.weight_decay,
    };
    return tg_optim_create(kind, ps, opts.lr, hyper, 2);
}

tg_optim *tg_adam_new(tg_params *ps, tg_adam_opts opts) {
    return adam_create(&adam_kind, ps, opts);
}

tg_optim *tg_adamw_new(tg_params *ps, tg_adam_opts opts) {
    return adam_create(&adamw_kind, ps, opts);
}
