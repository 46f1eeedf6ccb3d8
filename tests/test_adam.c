/*
 * tests/test_adam.c — Adam and AdamW: PyTorch golden trajectories (defaults, chosen
 * options, L2 weight decay, decoupled weight decay, beta1 = 0, eps = 0, lr = 0; every one
 * of 10 steps), padding and
 * buffers untouched (weight decay included), the parallel kernel against a serial
 * reference, defaults, bad options, the refusal to step while an error is pending, state
 * sharing rules and the accessors.
 */
#include "optim_golden.h"

#include "../core/core.h"
#include "../optim/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct adam_config {
    const char *name;
    bool decoupled;
    bool defaults; /* the constructor's options unchanged: torch's defaults */
} adam_config;

/* 10 steps of each configuration against torch, compared after every step; afterwards
 * the padding of values, grads and both moments is still 0 and the buffer untouched.
 * beta1 = 0 (Adam and AdamW), eps = 0 and lr = 0 are taken as given (zero means zero);
 * with eps = 0 the padding is 0/0 inside the kernel and must still end up 0. */
START_TEST(adam_golden) {
    const adam_config configs[] = {{"adam_defaults", false, true},
                                   {"adamw_defaults", true, true},
                                   {"adam", false, false},
                                   {"adam_weight_decay", false, false},
                                   {"adamw", true, false},
                                   {"adam_beta1_0", false, false},
                                   {"adamw_beta1_0", true, false},
                                   {"adam_eps_0", false, false},
                                   {"adam_lr_0", false, false}};
    tg_fixture *fx = tg_fixture_load("optim.bin");
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        const char *name = configs[c].name;
        golden_store g;
        golden_store_init(&g, fx);
        const double *h = golden_hyper(fx, name);
        tg_adam_opts opts = configs[c].decoupled ? tg_adamw_opts_default() : tg_adam_opts_default();
        if (!configs[c].defaults) {
            opts.lr = h[0];
            opts.beta1 = h[1];
            opts.beta2 = h[2];
            opts.eps = h[3];
            opts.weight_decay = h[4];
        } else {
            /* The constructors fill exactly torch's (double) defaults. */
            ck_assert(opts.lr == h[0] && opts.beta1 == h[1] && opts.beta2 == h[2] &&
                      opts.eps == h[3] && opts.weight_decay == h[4]);
        }
        tg_optim *opt = configs[c].decoupled ? tg_adamw_new(g.ps, opts) : tg_adam_new(g.ps, opts);
        tg_expect_ok(name);
        ck_assert_ptr_nonnull(opt);
        ck_assert_str_eq(tg_optim_name(opt), configs[c].decoupled ? "adamw" : "adam");
        ck_assert_float_eq(tg_optim_lr(opt), (float)h[0]);
        golden_run(name, fx, &g, opt);
        ck_assert_int_eq(tg_params_state_slots(g.ps), 2);
        golden_expect_padding_zero(name, &g);
        tg_optim_free(opt);
        tg_params_free(g.ps);
    }
    tg_fixture_free(fx);
}
END_TEST

/* The OpenMP path (n above the threshold, odd length) gives exactly what a serial loop of
 * the same formula gives, for Adam with L2 decay and for AdamW. */
START_TEST(adam_kernel_parallel_matches_serial) {
    const int64_t n = 200003;
    float *buf = malloc(8 * n * sizeof *buf);
    ck_assert_ptr_nonnull(buf);
    float *p = buf, *g = buf + n, *m = buf + 2 * n, *v = buf + 3 * n;
    float *ref_p = buf + 4 * n, *ref_m = buf + 5 * n, *ref_v = buf + 6 * n;
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_rng_fill_normal(&rng, p, n, 0, 1);
    tg_rng_fill_normal(&rng, g, n, 0, 1);
    memset(m, 0, 2 * n * sizeof *m);
    memcpy(ref_p, p, n * sizeof *p);
    memset(ref_m, 0, 2 * n * sizeof *m);
    for (int t = 1; t <= 3; t++) {
        bool decoupled = t == 2;
        adam_step_args a = adam_step_args_make(0.01, 0.9, 0.999, 1e-8, 0.05, decoupled, t);
        adam_step_cpu(p, g, m, v, n, &a);
        for (int64_t i = 0; i < n; i++) {
            float pi = decoupled ? ref_p[i] * a.decay : ref_p[i];
            float gi = decoupled ? g[i] : g[i] + a.l2 * pi;
            ref_m[i] = ref_m[i] * a.beta1 + a.one_minus_beta1 * gi;
            ref_v[i] = ref_v[i] * a.beta2 + a.one_minus_beta2 * gi * gi;
            float denom = sqrtf(ref_v[i]) / a.bias_correction2_sqrt + a.eps;
            ref_p[i] = pi + a.neg_step_size * ref_m[i] / denom;
        }
        tg_expect_close_f("adam kernel param", p, ref_p, n, 0, 0);
        tg_expect_close_f("adam kernel exp_avg", m, ref_m, n, 0, 0);
        tg_expect_close_f("adam kernel exp_avg_sq", v, ref_v, n, 0, 0);
    }
    free(buf);
}
END_TEST

/* The step scalars are torch's: bias corrections in double, rounded to float. */
START_TEST(adam_step_args_values) {
    adam_step_args a = adam_step_args_make(1e-3, 0.9, 0.999, 1e-8, 0.0, false, 2);
    ck_assert_float_eq(a.neg_step_size, (float)(-1e-3 / (1.0 - 0.9 * 0.9)));
    ck_assert_float_eq(a.bias_correction2_sqrt, (float)sqrt(1.0 - 0.999 * 0.999));
    ck_assert_float_eq(a.one_minus_beta1, (float)(1.0 - 0.9));
    ck_assert_float_eq(a.decay, 1.0f);
    ck_assert_float_eq(a.l2, 0.0f);
    adam_step_args w = adam_step_args_make(0.1, 0.9, 0.999, 1e-8, 0.01, true, 1);
    ck_assert_float_eq(w.decay, (float)(1.0 - 0.1 * 0.01));
    ck_assert_float_eq(w.l2, 0.0f);
    ck_assert(w.decoupled);
}
END_TEST

typedef struct bad_adam {
    tg_adam_opts opts;
    const char *option; /* "option '<name>'" */
    const char *detail; /* the value or the range, as printed */
} bad_adam;

/* Every bad option gives NULL, TG_ERR_ARG and a message naming the constructor, option
 * and value, for Adam and AdamW alike; the store gets no state. */
START_TEST(adam_bad_options) {
    /* Each case changes one field of the default options: index 0 lr, 1 beta1, 2 beta2,
     * 3 eps, 4 weight_decay. */
    const struct {
        int field;
        double value;
        const char *option, *detail;
    } cases[] = {
        {0, -1e-3, "option 'lr'", "is -0.001; valid range: finite and >= 0"},
        {0, NAN, "option 'lr'", "is nan;"},
        {0, INFINITY, "option 'lr'", "is inf;"},
        {1, -0.1, "option 'beta1'", "valid range: [0, 1)"},
        {1, 1.0, "option 'beta1'", "is 1;"},
        {1, NAN, "option 'beta1'", "is nan;"},
        {2, 1.0, "option 'beta2'", "is 1;"},
        {2, -0.5, "option 'beta2'", "is -0.5;"},
        {3, -1e-8, "option 'eps'", "valid range: finite and >= 0"},
        {3, INFINITY, "option 'eps'", "is inf;"},
        {4, -0.01, "option 'weight_decay'", "is -0.01;"},
        {4, NAN, "option 'weight_decay'", "is nan;"},
    };
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(6));
    for (int64_t i = 0; i < w->numel; i++) w->data[i] = (float)i;
    for (int k = 0; k < 2; k++) {
        const char *ctor = k ? "tg_adamw_new" : "tg_adam_new";
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            tg_adam_opts o = k ? tg_adamw_opts_default() : tg_adam_opts_default();
            double *field[5] = {&o.lr, &o.beta1, &o.beta2, &o.eps, &o.weight_decay};
            *field[cases[c].field] = cases[c].value;
            tg_optim *opt = k ? tg_adamw_new(ps, o) : tg_adam_new(ps, o);
            ck_assert_msg(opt == NULL, "%s case %zu (%s) was accepted", ctor, c, cases[c].option);
            char needle[96];
            snprintf(needle, sizeof needle, "%s: %s", ctor, cases[c].option);
            tg_expect_error(needle, TG_ERR_ARG, needle, cases[c].detail);
            ck_assert_int_eq(tg_params_state_slots(ps), 0);
        }
    }
    /* Options not made by a constructor (zeroed, or a compound literal whose betas and
     * eps would silently be 0) are refused, naming the constructor to use. */
    ck_assert_ptr_null(tg_adam_new(ps, (tg_adam_opts){.lr = 0.01}));
    tg_expect_error("compound literal", TG_ERR_ARG, "tg_adam_new: the options were not made",
                    "tg_adam_opts o = tg_adam_opts_default();");
    ck_assert_ptr_null(tg_adamw_new(ps, (tg_adam_opts){0}));
    tg_expect_error("zeroed", TG_ERR_ARG, "tg_adamw_new", "tg_adamw_opts_default()");
    ck_assert_int_eq(tg_params_state_slots(ps), 0);
    for (int64_t i = 0; i < w->numel; i++) ck_assert_float_eq(w->data[i], (float)i);
    ck_assert_ptr_null(tg_adamw_new(NULL, tg_adamw_opts_default()));
    tg_expect_error("NULL store", TG_ERR_ARG, "tg_adamw_new", "store is NULL");
    tg_params *empty = tg_params_new(TG_DEVICE_CPU);
    tg_params_add_buffer(empty, "running_var", tg_shape1(3), 1.0f);
    ck_assert_ptr_null(tg_adam_new(empty, tg_adam_opts_default()));
    tg_expect_error("buffers only", TG_ERR_ARG, "tg_adam_new", "no trainable parameter");
    tg_params_free(empty);
    tg_params_free(ps);
}
END_TEST

/* The constructors fill torch's defaults (AdamW's weight decay 1e-2); a zero field is
 * then taken as zero: AdamW with weight_decay 0 leaves zero-gradient parameters alone. */
START_TEST(adam_defaults) {
    tg_adam_opts a = tg_adam_opts_default(), aw = tg_adamw_opts_default();
    ck_assert(a.lr == 1e-3 && a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8 &&
              a.weight_decay == 0.0);
    ck_assert(aw.lr == 1e-3 && aw.beta1 == 0.9 && aw.beta2 == 0.999 && aw.eps == 1e-8 &&
              aw.weight_decay == 1e-2);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(2));
    aw.weight_decay = 0;
    aw.beta1 = 0;
    tg_optim *opt = tg_adamw_new(ps, aw);
    ck_assert_ptr_nonnull(opt);
    ck_assert_float_eq(tg_optim_lr(opt), 1e-3f);
    ck_assert(opt->hyper.beta1 == 0.0 && opt->hyper.beta2 == 0.999 && opt->hyper.eps == 1e-8);
    ck_assert(opt->hyper.weight_decay == 0.0);
    /* With a zero gradient and no decay, AdamW leaves the parameters alone. */
    w->data[0] = 2.0f;
    w->data[1] = -3.0f;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_float_eq(w->data[0], 2.0f);
    ck_assert_float_eq(w->data[1], -3.0f);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

/* While an error is pending, step returns it and changes no value, moment or step count. */
START_TEST(adam_step_refused_while_error_pending) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(2, 3));
    tg_adam_opts o = tg_adamw_opts_default();
    o.lr = 0.1;
    o.weight_decay = 0.1;
    tg_optim *opt = tg_adamw_new(ps, o);
    for (int64_t i = 0; i < w->numel; i++) {
        w->data[i] = (float)i - 2;
        w->grad[i] = 0.5f * (float)i - 1;
    }
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    int64_t n = tg_params_flat_numel(ps);
    float *before = malloc(3 * n * sizeof *before);
    ck_assert_ptr_nonnull(before);
    memcpy(before, tg_params_data(ps), n * sizeof *before);
    memcpy(before + n, tg_params_state(ps, 2), 2 * n * sizeof *before);

    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_ptr_null(tg_relu(ctx, NULL)); /* a failed op */
    tg_status pending = tg_error();
    ck_assert_int_ne(pending, TG_OK);
    ck_assert_int_eq(tg_optim_step(opt), pending);
    tg_expect_close_f("values", tg_params_data(ps), before, n, 0, 0);
    tg_expect_close_f("moments", tg_params_state(ps, 2), before + n, 2 * n, 0, 0);
    ck_assert_int_eq(tg_optim_steps(opt), 1);
    tg_expect_error("pending error kept", pending, "tg_relu", NULL);

    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_int_eq(tg_optim_steps(opt), 2);
    ck_assert_float_ne(w->data[0], before[0]);
    free(before);
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

/* A store's state belongs to one optimizer: another kind with other state is refused,
 * parameters cannot be added once state exists, and a new optimizer created after the
 * old one is freed starts from zero moments (as a fresh torch optimizer). */
START_TEST(adam_state_rules) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(4));
    tg_optim *sgd = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
    ck_assert_ptr_nonnull(sgd);
    ck_assert_ptr_null(tg_adam_new(ps, tg_adam_opts_default()));
    tg_expect_error("adam after sgd", TG_ERR_STATE, "tg_adam_new",
                    "another optimizer (1 state array; adam needs 2)");
    tg_optim_free(sgd);
    tg_params_free(ps);

    ps = tg_params_new(TG_DEVICE_CPU);
    w = tg_params_add(ps, "w", tg_shape1(4));
    tg_adam_opts o = tg_adam_opts_default();
    o.lr = 0.1;
    tg_optim *first = tg_adam_new(ps, o);
    ck_assert_ptr_null(tg_params_add(ps, "late", tg_shape1(2)));
    tg_expect_error("add after optimizer", TG_ERR_STATE, "late", "optimizer");
    for (int i = 0; i < 4; i++) w->grad[i] = (float)i + 1;
    ck_assert_int_eq(tg_optim_step(first), TG_OK);
    tg_optim_free(first);
    tg_optim *second = tg_adam_new(ps, o);
    ck_assert_ptr_nonnull(second);
    const float *state = tg_params_state(ps, 2);
    for (int64_t i = 0; i < 2 * tg_params_flat_numel(ps); i++) ck_assert_float_eq(state[i], 0);
    ck_assert_int_eq(tg_optim_steps(second), 0);
    tg_optim_free(second);
    tg_params_free(ps);
}
END_TEST

/* set_lr takes effect on the next step: the first Adam step moves every element with a
 * non-zero gradient by lr (m_hat / sqrt(v_hat) = sign(g) when eps is negligible). */
START_TEST(adam_set_lr) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(3));
    tg_adam_opts o = tg_adam_opts_default();
    o.lr = 0.1;
    tg_optim *opt = tg_adam_new(ps, o);
    tg_optim_set_lr(opt, 0.25f);
    ck_assert_float_eq(tg_optim_lr(opt), 0.25f);
    float g0[3] = {2.0f, -0.5f, 4.0f};
    memcpy(w->grad, g0, sizeof g0);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    float want[3] = {-0.25f, 0.25f, -0.25f};
    tg_expect_close_f("first adam step", w->data, want, 3, 1e-6, 1e-6);
    /* lr = 0 is legal (as torch): the next step moves nothing, the moments still update. */
    float before[3];
    memcpy(before, w->data, sizeof before);
    tg_optim_set_lr(opt, 0.0f);
    tg_expect_ok("set_lr 0");
    ck_assert_float_eq(tg_optim_lr(opt), 0.0f);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    tg_expect_close_f("step with lr 0", w->data, before, 3, 0, 0);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

Suite *adam_suite(void) {
    Suite *s = suite_create("adam");
    TCase *tc = tg_test_case("adam");
    tcase_add_test(tc, adam_golden);
    tcase_add_test(tc, adam_kernel_parallel_matches_serial);
    tcase_add_test(tc, adam_step_args_values);
    tcase_add_test(tc, adam_bad_options);
    tcase_add_test(tc, adam_defaults);
    tcase_add_test(tc, adam_step_refused_while_error_pending);
    tcase_add_test(tc, adam_state_rules);
    tcase_add_test(tc, adam_set_lr);
    suite_add_tcase(s, tc);
    return s;
}
