/*
 * autograd/gradcheck.c — finite-difference gradient checks.
 *
 * tg_gradcheck: L = sum_i out_i * R_i with a fixed random R, so one scalar probes every
 * output. The analytic gradient comes from the tape (tg_backward_with seeded by R); the
 * numeric one from central differences (L(x + eps) - L(x - eps)) / 2 eps, with L summed
 * in double so the only float32 rounding is in the op itself.
 *
 * tg_gradcheck_direction: the whole-model check of kann — one random direction d over
 * the flat parameter store: (L(p + eps d) - L(p - eps d)) / 2 eps vs grad . d.
 */
#include "tape.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Run fn once without recording; return sum(out * R) in double (R made on first call). */
static tg_status eval_projected(tg_ctx *ctx, tg_graph_fn fn, void *user,
                                tg_tensor *const *inputs, double **R, int64_t *rn,
                                uint64_t seed, double *value) {
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    int next_id = ctx->next_id;
    bool was = tg_set_grad_enabled(ctx, false);
    tg_tensor *out = fn(ctx, inputs, user);
    tg_set_grad_enabled(ctx, was);
    if (!out) return tg_error() ? tg_error() : tg_fail(TG_ERR_STATE, "gradcheck: fn gave NULL");
    if (!*R) {
        *rn = out->numel;
        *R = malloc((size_t)out->numel * sizeof **R);
        if (!*R) return tg_fail(TG_ERR_NOMEM, "gradcheck: out of memory");
        tg_rng rng;
        tg_rng_seed(&rng, seed);
        for (int64_t i = 0; i < out->numel; i++) (*R)[i] = 2.0 * tg_rng_uniform(&rng) - 1.0;
    }
    if (out->numel != *rn) return tg_fail(TG_ERR_STATE, "gradcheck: output size changed");
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++) s += (double)out->data[i] * (*R)[i];
    *value = s;
    tg_arena_rewind(&ctx->arena, mark); /* the evaluation's tensors are dead now */
    ctx->next_id = next_id;
    return TG_OK;
}

/* The inputs may be step tensors of the caller's current step: gradcheck never calls
 * tg_step_end. It records its analytic pass on top of the caller's tape and afterwards
 * truncates the tape back and restores its consumed flag, so the caller's step is left
 * as it was; numeric evaluations are rewound out of the arena one by one. */
tg_status tg_gradcheck(tg_ctx *ctx, tg_graph_fn fn, void *user, tg_tensor *const *inputs,
                       int ninputs, double eps, double atol, double rtol,
                       int64_t max_per_input, uint64_t seed, tg_gradcheck_result *result) {
    const char *missing = !ctx ? "ctx" : !fn ? "fn" : !inputs ? "inputs" : !result ? "result"
                                                                               : NULL;
    if (missing)
        return tg_fail(TG_ERR_ARG, "tg_gradcheck: argument '%s' is NULL", missing);
    if (ninputs < 0 || ninputs > 1024)
        return tg_fail(TG_ERR_ARG, "tg_gradcheck: argument 'ninputs' is %d; valid range: 0 to "
                       "1024 (the length of 'inputs')", ninputs);
    if (!(eps > 0) || !isfinite(eps))
        return tg_fail(TG_ERR_ARG, "tg_gradcheck: argument 'eps' is %g; it must be finite and "
                       "> 0 (a step of 0 compares nothing); hint: 1e-3 for float32", eps);
    if (!(atol >= 0) || !(rtol >= 0) || !isfinite(atol) || !isfinite(rtol))
        return tg_fail(TG_ERR_ARG, "tg_gradcheck: tolerances atol %g and rtol %g must be finite "
                       "and >= 0", atol, rtol);
    if (ctx->device != TG_DEVICE_CPU)
        return tg_fail(TG_ERR_UNSUPPORTED, "tg_gradcheck: runs on CPU contexts only");
    memset(result, 0, sizeof *result);
    double *R = NULL;
    int64_t rn = 0;
    tg_status st;
    double base;
    if ((st = eval_projected(ctx, fn, user, inputs, &R, &rn, seed, &base))) goto done;

    /* Analytic: one recorded forward, backward seeded with R. Step inputs' grads are
     * cleared first; parameter grads are saved and restored around the check. */
    float **saved_grads = calloc((size_t)ninputs, sizeof *saved_grads);
    if (!saved_grads) {
        st = tg_fail(TG_ERR_NOMEM, "gradcheck: out of memory");
        goto done;
    }
    bool *had_grad = calloc((size_t)ninputs, sizeof *had_grad);
    if (!had_grad) {
        free(saved_grads);
        st = tg_fail(TG_ERR_NOMEM, "gradcheck: out of memory");
        goto done;
    }
    for (int k = 0; k < ninputs; k++) {
        tg_tensor *t = inputs[k];
        if (!t || !t->requires_grad) continue;
        had_grad[k] = t->grad != NULL;
        if (t->grad) {
            saved_grads[k] = malloc((size_t)t->numel * sizeof(float));
            if (saved_grads[k]) memcpy(saved_grads[k], t->grad, (size_t)t->numel * sizeof(float));
            memset(t->grad, 0, (size_t)t->numel * sizeof(float));
        }
    }
    int tape_len = ctx->tape.len;
    bool tape_consumed = ctx->tape.consumed;
    ctx->tape.consumed = false;
    tg_tensor *out = fn(ctx, inputs, user);
    float *seedf = out ? tg_ctx_scratch(ctx, (size_t)out->numel * sizeof(float)) : NULL;
    if (!out || !seedf) {
        st = tg_error() ? tg_error() : tg_fail(TG_ERR_STATE, "gradcheck: fn gave NULL");
        goto restore;
    }
    for (int64_t i = 0; i < rn; i++) seedf[i] = (float)R[i];
    if ((st = tg_backward_with(ctx, out, seedf))) goto restore;

    double worst = -1;
    for (int k = 0; k < ninputs; k++) {
        tg_tensor *t = inputs[k];
        if (!t || !t->requires_grad) continue;
        int64_t n = t->numel;
        int64_t count = max_per_input > 0 && max_per_input < n ? max_per_input : n;
        for (int64_t c = 0; c < count; c++) {
            int64_t i = count == n ? c : (c * n) / count;
            float orig = t->data[i];
            double plus, minus;
            t->data[i] = (float)(orig + eps);
            double hp = (double)t->data[i] - orig;
            st = eval_projected(ctx, fn, user, inputs, &R, &rn, seed, &plus);
            t->data[i] = (float)(orig - eps);
            double hm = orig - (double)t->data[i];
            if (!st) st = eval_projected(ctx, fn, user, inputs, &R, &rn, seed, &minus);
            t->data[i] = orig;
            if (st) goto restore;
            double numeric = (plus - minus) / (hp + hm); /* the step actually taken */
            double analytic = t->grad ? t->grad[i] : 0.0;
            double abs_err = fabs(analytic - numeric);
            double denom = fmax(fmax(fabs(analytic), fabs(numeric)), 1e-3);
            result->checked++;
            /* A NaN error is kept once seen (it is the worst there is). */
            if (!isnan(result->max_abs_err) && !(abs_err <= result->max_abs_err))
                result->max_abs_err = abs_err;
            if (!isnan(result->max_rel_err) && !(abs_err / denom <= result->max_rel_err))
                result->max_rel_err = abs_err / denom;
            /* Written so that a NaN anywhere (analytic, numeric) FAILS the element. */
            bool bad = !(abs_err <= atol + rtol * fabs(numeric));
            if (bad) result->failed++;
            double score = abs_err / (atol + rtol * fabs(numeric));
            if (isnan(score) || (bad && !(score > 1))) score = INFINITY;
            if (score > worst) {
                worst = score;
                snprintf(result->worst, sizeof result->worst,
                         "input %d (%s) element %lld: analytic %.6g numeric %.6g", k,
                         t->name ? t->name : "step tensor", (long long)i, analytic, numeric);
            }
        }
    }
restore:
    ctx->tape.len = tape_len;
    ctx->tape.consumed = tape_consumed;
    for (int k = 0; k < ninputs; k++) {
        if (saved_grads[k]) {
            memcpy(inputs[k]->grad, saved_grads[k], (size_t)inputs[k]->numel * sizeof(float));
            free(saved_grads[k]);
        } else if (inputs[k] && !had_grad[k] && !inputs[k]->is_param) {
            inputs[k]->grad = NULL; /* as before the check */
        }
    }
    free(saved_grads);
    free(had_grad);
done:
    free(R);
    return st;
}

tg_status tg_gradcheck_direction(tg_ctx *ctx, tg_params *ps, tg_graph_fn fn, void *user,
                                 double eps, uint64_t seed, double *analytic,
                                 double *numeric) {
    const char *missing = !ctx ? "ctx" : !ps ? "ps" : !fn ? "fn" : !analytic ? "analytic"
                          : !numeric ? "numeric" : NULL;
    if (missing)
        return tg_fail(TG_ERR_ARG, "tg_gradcheck_direction: argument '%s' is NULL", missing);
    if (!(eps > 0) || !isfinite(eps))
        return tg_fail(TG_ERR_ARG, "tg_gradcheck_direction: argument 'eps' is %g; it must be "
                       "finite and > 0", eps);
    if (ctx->device != TG_DEVICE_CPU || tg_params_device(ps) != TG_DEVICE_CPU)
        return tg_fail(TG_ERR_UNSUPPORTED, "tg_gradcheck_direction: runs on the CPU only");
    int64_t n = tg_params_flat_numel(ps);
    float *p = tg_params_data(ps), *g = tg_params_grad(ps);
    float *orig = malloc((size_t)n * sizeof *orig);
    double *d = malloc((size_t)n * sizeof *d);
    tg_status st = TG_OK;
    if (!orig || !d) {
        st = tg_fail(TG_ERR_NOMEM, "tg_gradcheck_direction: out of memory");
        goto done;
    }
    memcpy(orig, p, (size_t)n * sizeof *orig);
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    double norm = 0;
    for (int64_t i = 0; i < n; i++) {
        d[i] = tg_rng_normal(&rng);
        norm += d[i] * d[i];
    }
    norm = sqrt(norm);
    for (int64_t i = 0; i < n; i++) d[i] /= norm;

    if ((st = tg_params_zero_grad(ps))) goto done;
    tg_tensor *loss = fn(ctx, NULL, user);
    if (!loss || (st = tg_backward(ctx, loss))) {
        st = st ? st : tg_error();
        goto done;
    }
    double a = 0;
    for (int64_t i = 0; i < n; i++) a += (double)g[i] * d[i];
    tg_step_end(ctx);

    double lp = 0, lm = 0;
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (int64_t i = 0; i < n; i++) p[i] = (float)(orig[i] + sign * eps * d[i]);
        bool was = tg_set_grad_enabled(ctx, false);
        tg_tensor *l = fn(ctx, NULL, user);
        tg_set_grad_enabled(ctx, was);
        if (!l) {
            st = tg_error();
            goto done;
        }
        if (sign > 0) lp = l->data[0];
        else lm = l->data[0];
        tg_step_end(ctx);
    }
    *analytic = a;
    *numeric = (lp - lm) / (2 * eps);
done:
    if (orig) memcpy(p, orig, (size_t)n * sizeof *orig);
    free(orig);
    free(d);
    return st;
}
