/*
 * optim/schedule.c — learning-rate schedules as plain values: a loop asks for the rate of
 * step s and hands it to its optimizer (tg_optim_set_lr). Nothing is stateful, so a resumed
 * run gets the same rates from the step count alone.
 *
 * STEP (torch StepLR): lr(s) = base gamma^floor(s / step_size).
 * COSINE WITH LINEAR WARM-UP (the GPT recipe), W = warmup_steps, T = total_steps:
 *   s < W:       lr = base (s + 1) / W          (rises linearly, reaching base at s = W - 1)
 *   W <= s <= T: lr = min + (base - min) (1 + cos(pi (s - W) / (T - W))) / 2
 *   s > T:       lr = min
 * With W = 0 this is torch's CosineAnnealingLR(T_max = T, eta_min = min) in closed form.
 * Rates are computed in double and rounded once to float.
 */
#include "../core/core.h"

#include <math.h>

static tg_lr_schedule invalid(void) { return (tg_lr_schedule){.kind = TG_LR_INVALID}; }

static bool lr_ok(const char *fn, const char *arg, float v) {
    if (v >= 0.0f && isfinite(v)) return true;
    tg_fail(TG_ERR_ARG, "%s: argument '%s' = %g must be finite and >= 0", fn, arg, (double)v);
    return false;
}

tg_lr_schedule tg_lr_step(float base_lr, int64_t step_size, float gamma) {
    if (!lr_ok("tg_lr_step", "base_lr", base_lr) || !lr_ok("tg_lr_step", "gamma", gamma))
        return invalid();
    if (step_size <= 0) {
        tg_fail(TG_ERR_ARG, "tg_lr_step: argument 'step_size' = %lld must be > 0 (steps "
                "between decays); hint: tg_lr_step(0.1f, 30, 0.1f) decays tenfold every 30",
                (long long)step_size);
        return invalid();
    }
    return (tg_lr_schedule){.kind = TG_LR_STEP, .base_lr = base_lr, .gamma = gamma,
                            .step_size = step_size};
}

tg_lr_schedule tg_lr_cosine(float base_lr, float min_lr, int64_t warmup_steps,
                            int64_t total_steps) {
    if (!lr_ok("tg_lr_cosine", "base_lr", base_lr) || !lr_ok("tg_lr_cosine", "min_lr", min_lr))
        return invalid();
    if (warmup_steps < 0 || total_steps <= warmup_steps) {
        tg_fail(TG_ERR_ARG, "tg_lr_cosine: arguments 'warmup_steps' = %lld and 'total_steps' "
                "= %lld; need 0 <= warmup_steps < total_steps (the cosine runs from the end "
                "of the warm-up to total_steps)", (long long)warmup_steps,
                (long long)total_steps);
        return invalid();
    }
    return (tg_lr_schedule){.kind = TG_LR_COSINE, .base_lr = base_lr, .min_lr = min_lr,
                            .warmup_steps = warmup_steps, .total_steps = total_steps};
}

float tg_lr_at(const tg_lr_schedule *s, int64_t step) {
    if (!s || s->kind == TG_LR_INVALID) {
        tg_fail(TG_ERR_ARG, "tg_lr_at: %s; hint: build it with tg_lr_step or tg_lr_cosine "
                "and check tg_error()", s ? "the schedule is invalid (its constructor failed)"
                                          : "argument 's' is NULL");
        return NAN;
    }
    if (step < 0) {
        tg_fail(TG_ERR_ARG, "tg_lr_at: argument 'step' = %lld must be >= 0", (long long)step);
        return NAN;
    }
    double base = s->base_lr;
    if (s->kind == TG_LR_STEP)
        return (float)(base * pow((double)s->gamma, (double)(step / s->step_size)));
    if (step < s->warmup_steps) return (float)(base * (double)(step + 1) / (double)s->warmup_steps);
    if (step >= s->total_steps) return s->min_lr;
    double t = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    double lo = s->min_lr;
    return (float)(lo + (base - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * t)));
}
