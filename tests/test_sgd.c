/*
 * tests/test_sgd.c — SGD and the shared optimizer machinery: PyTorch golden trajectories
 * (plain, momentum + dampening, nesterov, weight decay, lr = 0; every one of 10 steps), padding
 * and buffers untouched, the parallel kernel against a serial reference, zero_grad, bad
 * options, the refusal to step while an error is pending, two optimizers on one store,
 * and the accessors.
 */
#include "optim_golden.h"

#include "../core/core.h"
#include "../optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *golden_configs[] = {"sgd_plain",        "sgd_momentum",
                                       "sgd_nesterov",     "sgd_weight_decay",
                                       "sgd_weight_decay_plain", "sgd_lr_0"};

/* 10 steps of each configuration against torch, compared after every step. */
START_TEST(sgd_golden) {
    tg_fixture *fx = tg_fixture_load("optim.bin");
    for (size_t c = 0; c < sizeof golden_configs / sizeof golden_configs[0]; c++) {
        const char *name = golden_configs[c];
        golden_store g;
        golden_store_init(&g, fx);
        const double *h = golden_hyper(fx, name);
        tg_sgd_opts opts = {.lr = (float)h[0], .momentum = (float)h[1],
                            .dampening = (float)h[2], .weight_decay = (float)h[3],
                            .nesterov = h[4] != 0};
        tg_optim *opt = tg_sgd_new(g.ps, opts);
        tg_expect_ok(name);
        ck_assert_ptr_nonnull(opt);
        ck_assert_int_eq(tg_params_state_slots(g.ps), opts.momentum > 0 ? 1 : 0);
        golden_run(name, fx, &g, opt);
        golden_expect_padding_zero(name, &g);
        tg_optim_free(opt);
        tg_params_free(g.ps);
    }
    tg_fixture_free(fx);
}
END_TEST

/* The OpenMP path (n above the threshold, odd length) gives exactly what a serial loop of
 * the same formula gives, for every variant. */
START_TEST(sgd_kernel_parallel_matches_serial) {
    const int64_t n = 200003;
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g), *buf = malloc(n * sizeof *buf);
    float *ref_p = malloc(n * sizeof *p), *ref_buf = malloc(n * sizeof *buf);
    ck_assert(p && g && buf && ref_p && ref_buf);
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_rng_fill_normal(&rng, p, n, 0, 1);
    tg_rng_fill_normal(&rng, g, n, 0, 1);
    tg_rng_fill_normal(&rng, buf, n, 0, 1);
    memcpy(ref_p, p, n * sizeof *p);
    memcpy(ref_buf, buf, n * sizeof *buf);
    sgd_step_args variants[] = {
        {.lr = 0.1f},
        {.lr = 0.1f, .weight_decay = 0.01f},
        {.lr = 0.1f, .momentum = 0.9f, .one_minus_dampening = 0.75f, .first_step = true},
        {.lr = 0.1f, .momentum = 0.9f, .one_minus_dampening = 0.75f, .weight_decay = 0.01f},
        {.lr = 0.05f, .momentum = 0.8f, .one_minus_dampening = 1.0f, .nesterov = true},
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const sgd_step_args *a = &variants[v];
        sgd_step_cpu(p, g, a->momentum != 0 ? buf : NULL, n, a);
        for (int64_t i = 0; i < n; i++) {
            float d = g[i];
            if (a->weight_decay != 0) d = d + a->weight_decay * ref_p[i];
            if (a->momentum != 0) {
                ref_buf[i] = a->first_step ? d
                                           : ref_buf[i] * a->momentum + a->one_minus_dampening * d;
                d = a->nesterov ? d + a->momentum * ref_buf[i] : ref_buf[i];
            }
            ref_p[i] = ref_p[i] + (-a->lr) * d;
        }
        tg_expect_close_f("sgd kernel param", p, ref_p, n, 0, 0);
        tg_expect_close_f("sgd kernel momentum buffer", buf, ref_buf, n, 0, 0);
    }
    free(p);
    free(g);
    free(buf);
    free(ref_p);
    free(ref_buf);
}
END_TEST

/* zero_grad clears every gradient and nothing else. */
START_TEST(sgd_zero_grad_only_grads) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(3, 4));
    tg_tensor *buffer = tg_params_add_buffer(ps, "running_var", tg_shape1(3), 2.0f);
    tg_tensor *b = tg_params_add(ps, "b", tg_shape1(5));
    tg_optim *opt = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
    ck_assert_ptr_nonnull(opt);
    for (int64_t i = 0; i < w->numel; i++) w->data[i] = w->grad[i] = (float)i + 1;
    for (int64_t i = 0; i < b->numel; i++) b->data[i] = b->grad[i] = -(float)i - 1;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK); /* fills the momentum buffer */
    int64_t n = tg_params_flat_numel(ps);
    float *before = malloc(2 * n * sizeof *before);
    ck_assert_ptr_nonnull(before);
    memcpy(before, tg_params_data(ps), n * sizeof *before);
    memcpy(before + n, tg_params_state(ps, 1), n * sizeof *before);
    tg_optim_zero_grad(opt);
    for (int64_t i = 0; i < n; i++) ck_assert_float_eq(tg_params_grad(ps)[i], 0.0f);
    tg_expect_close_f("values after zero_grad", tg_params_data(ps), before, n, 0, 0);
    tg_expect_close_f("state after zero_grad", tg_params_state(ps, 1), before + n, n, 0, 0);
    for (int64_t i = 0; i < buffer->numel; i++) ck_assert_float_eq(buffer->data[i], 2.0f);
    tg_optim_zero_grad(NULL); /* accepted, does nothing */
    tg_expect_ok("zero_grad");
    free(before);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

typedef struct bad_sgd {
    tg_sgd_opts opts;
    const char *option; /* "tg_sgd_new: option '<name>'" */
    const char *detail; /* the value or the rule, as printed */
} bad_sgd;

/* Every bad option gives NULL, TG_ERR_ARG and a message naming the option and its value;
 * the store is left as it was (no state acquired, values unchanged). */
START_TEST(sgd_bad_options) {
    const bad_sgd cases[] = {
        {{.lr = -0.1f}, "tg_sgd_new: option 'lr'", "is -0.1; valid range: finite and >= 0"},
        {{.lr = NAN}, "tg_sgd_new: option 'lr'", "is nan;"},
        {{.lr = INFINITY}, "tg_sgd_new: option 'lr'", "is inf;"},
        {{.lr = 0.1f, .momentum = -0.5f}, "tg_sgd_new: option 'momentum'", "is -0.5; valid range"},
        {{.lr = 0.1f, .momentum = NAN}, "tg_sgd_new: option 'momentum'", "is nan;"},
        {{.lr = 0.1f, .dampening = NAN}, "tg_sgd_new: option 'dampening'", "is nan;"},
        {{.lr = 0.1f, .dampening = INFINITY}, "tg_sgd_new: option 'dampening'", "is inf;"},
        {{.lr = 0.1f, .weight_decay = -1}, "tg_sgd_new: option 'weight_decay'", "is -1;"},
        {{.lr = 0.1f, .nesterov = true}, "tg_sgd_new: option 'nesterov'", "momentum 0,"},
        {{.lr = 0.1f, .momentum = 0.9f, .dampening = 0.1f, .nesterov = true},
         "tg_sgd_new: option 'nesterov'", "dampening 0.1"},
    };
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(6));
    for (int64_t i = 0; i < w->numel; i++) w->data[i] = (float)i;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tg_optim *opt = tg_sgd_new(ps, cases[c].opts);
        ck_assert_msg(opt == NULL, "case %zu (%s) was accepted", c, cases[c].option);
        tg_expect_error(cases[c].option, TG_ERR_ARG, cases[c].option, cases[c].detail);
        ck_assert_int_eq(tg_params_state_slots(ps), 0);
        for (int64_t i = 0; i < w->numel; i++) ck_assert_float_eq(w->data[i], (float)i);
    }
    tg_params_free(ps);
}
END_TEST

/* NULL stores, stores without a trainable parameter, and (on CUDA builds with a GPU) a
 * store on a device the step has no kernel for. */
START_TEST(sgd_bad_store) {
    tg_sgd_opts opts = {.lr = 0.1f};
    ck_assert_ptr_null(tg_sgd_new(NULL, opts));
    tg_expect_error("NULL store", TG_ERR_ARG, "tg_sgd_new", "store is NULL");
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    ck_assert_ptr_null(tg_sgd_new(ps, opts));
    tg_expect_error("empty store", TG_ERR_ARG, "tg_sgd_new", "no trainable parameter");
    tg_params_add_buffer(ps, "running_mean", tg_shape1(4), 0.0f);
    ck_assert_ptr_null(tg_sgd_new(ps, opts));
    tg_expect_error("buffers only", TG_ERR_ARG, "tg_sgd_new", "no trainable parameter");
    tg_params_free(ps);

    tg_params *gpu = tg_params_new(TG_DEVICE_CUDA);
    if (!gpu) {
        ck_assert_int_ne(tg_error(), TG_OK); /* no CUDA here: the store itself is refused */
        tg_error_clear();
        return;
    }
    tg_params_add(gpu, "w", tg_shape1(4));
    tg_optim *opt = tg_sgd_new(gpu, opts);
    if (opt) {
        ck_assert_int_eq(tg_optim_step(opt), TG_OK); /* a CUDA kernel has been added */
    } else {
        tg_expect_error("cuda store", TG_ERR_UNSUPPORTED, "tg_sgd_new", "no cuda step kernel");
    }
    tg_optim_free(opt);
    tg_params_free(gpu);
}
END_TEST

/* While an error is pending, step returns it and changes no value, gradient, state or
 * step count; once cleared, stepping works again. */
START_TEST(sgd_step_refused_while_error_pending) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(2, 3));
    tg_optim *opt = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
    for (int64_t i = 0; i < w->numel; i++) {
        w->data[i] = (float)i;
        w->grad[i] = 1.0f - (float)i;
    }
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    int64_t n = tg_params_flat_numel(ps);
    float *before = malloc(3 * n * sizeof *before);
    ck_assert_ptr_nonnull(before);
    memcpy(before, tg_params_data(ps), n * sizeof *before);
    memcpy(before + n, tg_params_grad(ps), n * sizeof *before);
    memcpy(before + 2 * n, tg_params_state(ps, 1), n * sizeof *before);

    ck_assert_ptr_null(tg_params_add(NULL, "x", tg_shape1(1))); /* an unrelated failure */
    ck_assert_int_eq(tg_optim_step(opt), TG_ERR_ARG);
    ck_assert_int_eq(tg_optim_step(opt), TG_ERR_ARG);
    tg_expect_close_f("values", tg_params_data(ps), before, n, 0, 0);
    tg_expect_close_f("grads", tg_params_grad(ps), before + n, n, 0, 0);
    tg_expect_close_f("momentum", tg_params_state(ps, 1), before + 2 * n, n, 0, 0);
    ck_assert_int_eq(tg_optim_steps(opt), 1);
    tg_expect_error("pending error kept", TG_ERR_ARG, "tg_params_add", "store is NULL");

    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_int_eq(tg_optim_steps(opt), 2);
    /* lr = 0 is legal, as in torch: the next step moves nothing. */
    float kept[3];
    memcpy(kept, w->data, sizeof kept);
    tg_optim_set_lr(opt, 0.0f);
    tg_expect_ok("set_lr 0");
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    tg_expect_close_f("step with lr 0", w->data, kept, 3, 0, 0);
    ck_assert_float_ne(w->data[0], before[0]);
    free(before);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

/* One optimizer with state per store: a second one with another number of state arrays
 * is refused with a clear message; a stateless SGD may share. */
START_TEST(sgd_two_optimizers_one_store) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_params_add(ps, "w", tg_shape1(8));
    tg_optim *adam = tg_adam_new(ps, tg_adam_opts_default());
    ck_assert_ptr_nonnull(adam);
    ck_assert_ptr_null(tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f}));
    tg_expect_error("sgd after adam", TG_ERR_STATE, "tg_sgd_new",
                    "already holds the state of another optimizer (2 state arrays; sgd needs 1)");
    tg_optim *plain = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.1f});
    tg_expect_ok("stateless sgd");
    ck_assert_ptr_nonnull(plain);
    tg_optim_free(plain);
    tg_optim_free(adam);
    tg_params_free(ps);
}
END_TEST

/* name, lr, set_lr (validated; used by the next step), steps, and NULL handling. */
START_TEST(sgd_accessors) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(3));
    tg_optim *opt = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.1f});
    ck_assert_str_eq(tg_optim_name(opt), "sgd");
    ck_assert_float_eq(tg_optim_lr(opt), 0.1f);
    ck_assert_int_eq(tg_optim_steps(opt), 0);

    tg_optim_set_lr(opt, 0.5f);
    ck_assert_float_eq(tg_optim_lr(opt), 0.5f);
    tg_optim_set_lr(opt, -1.0f);
    tg_expect_error("set_lr", TG_ERR_ARG, "tg_optim_set_lr: option 'lr'", "is -1;");
    tg_optim_set_lr(opt, NAN);
    tg_expect_error("set_lr nan", TG_ERR_ARG, "tg_optim_set_lr: option 'lr'", "is nan;");
    ck_assert_float_eq(tg_optim_lr(opt), 0.5f);

    float p0[3] = {1.0f, -2.0f, 3.0f}, g0[3] = {0.25f, 0.5f, -1.0f};
    memcpy(w->data, p0, sizeof p0);
    memcpy(w->grad, g0, sizeof g0);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    for (int i = 0; i < 3; i++) ck_assert_float_eq(w->data[i], p0[i] + (-0.5f) * g0[i]);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_int_eq(tg_optim_steps(opt), 2);

    ck_assert_str_eq(tg_optim_name(NULL), "none");
    ck_assert_float_eq(tg_optim_lr(NULL), 0.0f);
    ck_assert_int_eq(tg_optim_steps(NULL), 0);
    tg_optim_set_lr(NULL, 0.1f);
    tg_expect_error("set_lr NULL", TG_ERR_ARG, "tg_optim_set_lr", "'opt'");
    ck_assert_int_eq(tg_optim_step(NULL), TG_ERR_ARG);
    tg_expect_error("step NULL", TG_ERR_ARG, "tg_optim_step", "NULL");
    tg_optim_free(NULL);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

Suite *sgd_suite(void) {
    Suite *s = suite_create("sgd");
    TCase *tc = tg_test_case("sgd");
    tcase_add_test(tc, sgd_golden);
    tcase_add_test(tc, sgd_kernel_parallel_matches_serial);
    tcase_add_test(tc, sgd_zero_grad_only_grads);
    tcase_add_test(tc, sgd_bad_options);
    tcase_add_test(tc, sgd_bad_store);
    tcase_add_test(tc, sgd_step_refused_while_error_pending);
    tcase_add_test(tc, sgd_two_optimizers_one_store);
    tcase_add_test(tc, sgd_accessors);
    suite_add_tcase(s, tc);
    return s;
}
