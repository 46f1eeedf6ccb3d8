/*
 * tests/optim_golden.c — see optim_golden.h.
 */
#include "optim_golden.h"

#include "../core/core.h"

#include <stdio.h>

void golden_store_init(golden_store *g, const tg_fixture *fx) {
    g->ps = tg_params_new(TG_DEVICE_CPU);
    g->w = tg_params_add(g->ps, "w", tg_shape2(3, 4));
    g->buffer = tg_params_add_buffer(g->ps, "bn.running_mean", tg_shape1(4), 0.5f);
    g->b = tg_params_add(g->ps, "b", tg_shape1(5));
    tg_expect_ok("golden store");
    tg_fixture_copy_into(fx, "w0", g->w);
    tg_fixture_copy_into(fx, "b0", g->b);
    g->cw1 = tg_fixture_get(fx, "cw1", NULL);
    g->cw2 = tg_fixture_get(fx, "cw2", NULL);
    g->cb1 = tg_fixture_get(fx, "cb1", NULL);
    g->cb2 = tg_fixture_get(fx, "cb2", NULL);
}

const double *golden_hyper(const tg_fixture *fx, const char *name) {
    char key[96];
    snprintf(key, sizeof key, "%s.hyper", name);
    return tg_fixture_get(fx, key, NULL);
}

/* dL/dp of L = sum(c1 p^2) + sum(c2 p), as torch autograd computes it in float32. */
static void add_grad(tg_tensor *t, const double *c1, const double *c2) {
    for (int64_t i = 0; i < t->numel; i++)
        t->grad[i] += (float)c1[i] * (2.0f * t->data[i]) + (float)c2[i];
}

void golden_run(const char *name, const tg_fixture *fx, golden_store *g, tg_optim *opt) {
    char key[96];
    snprintf(key, sizeof key, "%s.w", name);
    const double *want_w = tg_fixture_get(fx, key, NULL);
    snprintf(key, sizeof key, "%s.b", name);
    const double *want_b = tg_fixture_get(fx, key, NULL);
    for (int step = 0; step < GOLDEN_STEPS; step++) {
        tg_optim_zero_grad(opt);
        add_grad(g->w, g->cw1, g->cw2);
        add_grad(g->b, g->cb1, g->cb2);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        snprintf(key, sizeof key, "%s: w after step %d", name, step + 1);
        tg_expect_close(key, g->w->data, want_w + step * 12, 12, GOLDEN_ATOL, GOLDEN_RTOL);
        snprintf(key, sizeof key, "%s: b after step %d", name, step + 1);
        tg_expect_close(key, g->b->data, want_b + step * 5, 5, GOLDEN_ATOL, GOLDEN_RTOL);
    }
    ck_assert_int_eq(tg_optim_steps(opt), GOLDEN_STEPS);
}

void golden_expect_padding_zero(const char *what, golden_store *g) {
    tg_params *ps = g->ps;
    int64_t n = tg_params_flat_numel(ps);
    int slots = tg_params_state_slots(ps);
    float *state = slots ? tg_params_state(ps, slots) : NULL;
    int64_t w0 = g->w->data - tg_params_data(ps), b0 = g->b->data - tg_params_data(ps);
    for (int64_t i = 0; i < n; i++) {
        bool inside = (i >= w0 && i < w0 + g->w->numel) || (i >= b0 && i < b0 + g->b->numel);
        if (inside) continue;
        ck_assert_msg(tg_params_data(ps)[i] == 0 && tg_params_grad(ps)[i] == 0,
                      "%s: padding element %lld of values/grads is not 0", what, (long long)i);
        for (int s = 0; s < slots; s++)
            ck_assert_msg(state[s * n + i] == 0, "%s: padding element %lld of state %d is not 0",
                          what, (long long)i, s);
    }
    for (int64_t i = 0; i < g->buffer->numel; i++)
        ck_assert_msg(g->buffer->data[i] == 0.5f, "%s: the buffer was touched", what);
}
