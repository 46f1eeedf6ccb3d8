/*
 * tests/test_schedule.c — learning-rate schedules against PyTorch's schedulers (StepLR,
 * CosineAnnealingLR, and LambdaLR with linear warm-up + cosine), driving a real optimizer
 * the way a training loop does, and bad input.
 */
#include "testutil.h"

#include <math.h>

static void check(const char *key, tg_lr_schedule s) {
    tg_expect_ok(key);
    tg_fixture *fx = tg_fixture_load("clip.bin");
    tg_shape sh;
    const double *want = tg_fixture_get(fx, key, &sh);
    for (int64_t i = 0; i < sh.dim[0]; i++) {
        float lr = tg_lr_at(&s, i);
        ck_assert_msg(fabs(lr - want[i]) <= 1e-6 * fabs(want[i]) + 1e-9,
                      "%s step %lld: %.9g, torch %.9g", key, (long long)i, lr, want[i]);
    }
    tg_fixture_free(fx);
}

START_TEST(step_lr_golden) { check("steplr", tg_lr_step(0.5f, 7, 0.3f)); }
END_TEST

START_TEST(cosine_golden) { check("cosine", tg_lr_cosine(0.5f, 0.01f, 0, 20)); }
END_TEST

START_TEST(warmup_cosine_golden) { check("warmcos", tg_lr_cosine(0.5f, 0.01f, 5, 25)); }
END_TEST

/* A loop sets the optimizer's rate from the schedule each step. */
START_TEST(schedule_drives_optimizer) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_params_add(ps, "w", tg_shape1(3));
    tg_adam_opts o = tg_adamw_opts_default();
    tg_optim *opt = tg_adamw_new(ps, o);
    tg_lr_schedule s = tg_lr_cosine(1e-3f, 1e-4f, 10, 100);
    for (int64_t step = 0; step < 120; step++) {
        tg_optim_set_lr(opt, tg_lr_at(&s, step));
        ck_assert(tg_optim_lr(opt) == tg_lr_at(&s, step));
    }
    ck_assert(tg_lr_at(&s, 9) == 1e-3f);      /* end of warm-up: the base rate */
    ck_assert(tg_lr_at(&s, 100) == 1e-4f);    /* the end: the minimum */
    ck_assert(tg_lr_at(&s, 1000) == 1e-4f);
    ck_assert(fabsf(tg_lr_at(&s, 55) - 0.55e-3f) < 1e-9f); /* half-way: the mid-point */
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

START_TEST(schedule_bad_input) {
    tg_lr_schedule s = tg_lr_step(0.1f, 0, 0.5f);
    tg_expect_error("step_size", TG_ERR_ARG, "tg_lr_step: argument 'step_size' = 0", "hint");
    ck_assert(isnan(tg_lr_at(&s, 3)));
    tg_expect_error("invalid", TG_ERR_ARG, "tg_lr_at", "invalid");
    tg_lr_cosine(0.1f, 0.0f, 10, 10);
    tg_expect_error("total", TG_ERR_ARG, "'warmup_steps' = 10 and 'total_steps' = 10", NULL);
    tg_lr_cosine(-0.1f, 0.0f, 0, 10);
    tg_expect_error("base", TG_ERR_ARG, "argument 'base_lr' = -0.1", NULL);
    s = tg_lr_step(0.1f, 3, 0.5f);
    ck_assert(isnan(tg_lr_at(&s, -1)));
    tg_expect_error("step", TG_ERR_ARG, "argument 'step' = -1", NULL);
}
END_TEST

Suite *schedule_suite(void) {
    Suite *s = suite_create("schedule");
    TCase *tc = tg_test_case("schedule");
    tcase_add_test(tc, step_lr_golden);
    tcase_add_test(tc, cosine_golden);
    tcase_add_test(tc, warmup_cosine_golden);
    tcase_add_test(tc, schedule_drives_optimizer);
    tcase_add_test(tc, schedule_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
