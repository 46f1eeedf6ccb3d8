/*
 * optim/optim.c — what every optimizer shares: construction checks, the step entry point
 * and the small accessors. The update rules live in sgd.c and adam.c.
 *
 * An optimizer is a kind (a constant descriptor with a device-indexed step table), the
 * store it updates, its hyperparameters and a step count. Its state (momentum buffer,
 * Adam moments) is not in the object: it is `slots` flat arrays inside the parameter
 * store (tg_params_state), laid out exactly like the flat parameter buffer, so one step is
 * one fused loop over param, grad and state (DESIGN §2, §6).
 *
 * Errors (DESIGN §8): bad options give NULL and one message naming the constructor, the
 * option, its value and the valid range. tg_optim_step changes nothing — parameters,
 * state, step count — while an error is pending, and returns that pending status (as
 * tg_backward does), so a failed forward/backward never damages the parameters.
 */
#include "optim.h"

#include <math.h>
#include <stdlib.h>

bool tg_optim_check_option(const char *ctor, const char *option, double value, bool ok,
                           const char *range) {
    if (ok) return true;
    tg_fail(TG_ERR_ARG, "%s: option '%s' is %g; valid range: %s", ctor, option, value, range);
    return false;
}

static int grads_finite(tg_params *ps);

tg_optim *tg_optim_create(const tg_optim_kind *kind, tg_params *ps, double lr,
                          tg_optim_hyper hyper, int slots) {
    const char *ctor = kind->ctor;
    if (!ps) {
        tg_fail(TG_ERR_ARG, "%s: the parameter store is NULL (an earlier call failed, or it "
                "was never created)", ctor);
        return NULL;
    }
    if (tg_params_numel(ps) == 0) {
        tg_fail(TG_ERR_ARG, "%s: the parameter store has no trainable parameter (buffers are "
                "never optimized); hint: add every parameter with tg_params_add before "
                "creating the optimizer", ctor);
        return NULL;
    }
    tg_device device = tg_params_device(ps);
    if (!kind->step[device]) {
        tg_fail(TG_ERR_UNSUPPORTED, "%s: %s has no %s step kernel (the parameter store is on "
                "%s)", ctor, kind->name, tg_device_name(device), tg_device_name(device));
        return NULL;
    }
    int held = tg_params_state_slots(ps);
    if (slots > 0 && held != 0 && held != slots) {
        tg_fail(TG_ERR_STATE, "%s: the parameter store already holds the state of another "
                "optimizer (%d state array%s; %s needs %d); one optimizer with state per "
                "store", ctor, held, held == 1 ? "" : "s", kind->name, slots);
        return NULL;
    }
    tg_optim *opt = calloc(1, sizeof *opt);
    if (!opt) {
        tg_fail(TG_ERR_NOMEM, "%s: out of memory", ctor);
        return NULL;
    }
    opt->kind = kind;
    opt->ps = ps;
    opt->lr = lr;
    opt->hyper = hyper;
    opt->slots = slots;
    if (slots > 0) {
        opt->state = tg_params_state(ps, slots);
        /* A new optimizer starts from zero state, as torch does, even when an earlier one
         * (since freed) left its state in the store. */
        size_t bytes = (size_t)slots * (size_t)tg_params_flat_numel(ps) * sizeof(float);
        if (!opt->state || (held && tg_device_zero(device, opt->state, bytes) != TG_OK)) {
            free(opt);
            return NULL;
        }
    }
    return opt;
}

void tg_optim_free(tg_optim *opt) { free(opt); }

tg_status tg_optim_zero_grad(tg_optim *opt) {
    return opt ? tg_params_zero_grad(opt->ps) : TG_OK;
}

tg_status tg_optim_step(tg_optim *opt) {
    if (tg_error() != TG_OK) return tg_error(); /* an earlier call failed: change nothing */
    if (!opt) {
        return tg_fail(TG_ERR_ARG, "tg_optim_step: the optimizer is NULL (its constructor "
                       "failed, or it was never created)");
    }
    tg_device device = tg_params_device(opt->ps);
    tg_optim_step_fn step = opt->kind->step[device];
    if (!step) {
        return tg_fail(TG_ERR_UNSUPPORTED, "tg_optim_step: %s has no %s step kernel",
                       opt->kind->name, tg_device_name(device));
    }
    if (opt->steps >= TG_OPTIM_MAX_STEPS) {
        return tg_fail(TG_ERR_STATE, "tg_optim_step: %s has taken %lld steps, the most a step "
                       "count may reach (2^53); start a new optimizer", opt->kind->name,
                       (long long)opt->steps);
    }
    tg_threads_apply();
    opt->last_skipped = false;
    if (opt->skip_nonfinite) {
        int bad = grads_finite(opt->ps);
        if (bad < 0) return tg_error();
        if (bad == 0) {
            opt->last_skipped = true;
            opt->skipped++;
            return TG_OK;
        }
    }
    int64_t t = opt->steps + 1;
    tg_status st = step(opt, t);
    if (st == TG_OK) opt->steps = t;
    return st;
}

/* 1 when every gradient in the store is finite, 0 when one is not, -1 on a read error. */
static int grads_finite(tg_params *ps) {
    int64_t n = tg_params_flat_numel(ps);
    const float *g = tg_params_grad(ps);
    float *copy = NULL;
    if (tg_params_device(ps) != TG_DEVICE_CPU) {
        size_t bytes;
        if (!tg_size_bytes("tg_optim_step", "gradient copy", n, sizeof(float), &bytes) ||
            !(copy = malloc(bytes ? bytes : 1))) {
            tg_fail(TG_ERR_NOMEM, "tg_optim_step: out of memory checking the gradients");
            return -1;
        }
        if (tg_device_copy(TG_DEVICE_CPU, copy, tg_params_device(ps), g, bytes)) {
            free(copy);
            return -1;
        }
        g = copy;
    }
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(g[i])) {
            ok = 0;
            break;
        }
    }
    free(copy);
    return ok;
}

void tg_optim_set_skip_nonfinite(tg_optim *opt, bool on) {
    if (opt) opt->skip_nonfinite = on;
}

int64_t tg_optim_skipped_steps(const tg_optim *opt) { return opt ? opt->skipped : 0; }

bool tg_optim_last_step_skipped(const tg_optim *opt) { return opt && opt->last_skipped; }

void tg_optim_set_lr(tg_optim *opt, float lr) {
    if (!opt) {
        tg_check_not_null("tg_optim_set_lr", "opt", opt);
        return;
    }
    if (!tg_optim_check_option("tg_optim_set_lr", "lr", lr, lr >= 0 && isfinite(lr),
                               "finite and >= 0 (the learning rate is left unchanged)"))
        return;
    opt->lr = lr;
}

float tg_optim_lr(const tg_optim *opt) { return opt ? (float)opt->lr : 0.0f; }

int64_t tg_optim_steps(const tg_optim *opt) { return opt ? opt->steps : 0; }

const char *tg_optim_name(const tg_optim *opt) { return opt ? opt->kind->name : "none"; }
