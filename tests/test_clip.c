/*
 * tests/test_clip.c — tg_clip_grad_norm against torch.nn.utils.clip_grad_norm_ (clipping
 * and not), the norm over the whole store, non-finite gradients left alone, bad input.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static tg_params *store(tg_fixture *fx) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *t[3] = {tg_params_add(ps, "a", tg_shape1(37)),
                       tg_params_add(ps, "b", tg_shape2(5, 13)),
                       tg_params_add(ps, "c", tg_shape4(3, 2, 3, 3))};
    tg_params_add_buffer(ps, "running", tg_shape1(4), 100.0f); /* not a gradient */
    for (int i = 0; i < 3; i++) {
        char k[8];
        snprintf(k, sizeof k, "g%d", i);
        const double *g = tg_fixture_get(fx, k, NULL);
        for (int64_t j = 0; j < t[i]->numel; j++) t[i]->grad[j] = (float)g[j];
    }
    return ps;
}

static void check(const char *key) {
    tg_fixture *fx = tg_fixture_load("clip.bin");
    tg_params *ps = store(fx);
    char k[32];
    snprintf(k, sizeof k, "%s.norm", key);
    float norm = -1;
    float max_norm = key[0] == 'c' ? 2.0f : 1000.0f;
    ck_assert_int_eq(tg_clip_grad_norm(ps, max_norm, &norm), TG_OK);
    tg_expect_close(k, &norm, tg_fixture_get(fx, k, NULL), 1, 0, 1e-6);
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "%s.g%d", key, i);
        tg_tensor *t = tg_params_at(ps, i);
        tg_expect_close(k, t->grad, tg_fixture_get(fx, k, NULL), t->numel, 1e-7, 1e-6);
    }
    tg_params_free(ps);
    tg_fixture_free(fx);
}

START_TEST(clip_golden) { check("clip"); }
END_TEST

START_TEST(noclip_golden) { check("noclip"); }
END_TEST

/* A store above the threshold for threads (90,300 elements: 12 partial sums, the last one
 * short): the norm matches a float64 sum, every gradient is scaled by the same c, and
 * after clipping the global norm is max_norm (up to the 1e-6 and rounding). */
START_TEST(clip_norm_after) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_params_add(ps, "a", tg_shape2(300, 301));
    tg_rng rng;
    tg_rng_seed(&rng, 61);
    tg_rng_fill_normal(&rng, a->grad, a->numel, 0, 1);
    float *g = malloc((size_t)a->numel * sizeof(float));
    ck_assert_ptr_nonnull(g);
    memcpy(g, a->grad, (size_t)a->numel * sizeof(float));
    double ref = 0;
    for (int64_t i = 0; i < a->numel; i++) ref += (double)g[i] * g[i];
    ref = sqrt(ref);
    float before, after;
    ck_assert_int_eq(tg_clip_grad_norm(ps, 5.0f, &before), TG_OK);
    ck_assert_msg(fabs(before - ref) <= 1e-6 * ref, "norm %.9g, float64 reference %.9g",
                  (double)before, ref);
    float c = (float)(5.0 / ((double)before + 1e-6));
    int64_t i = 0;
    while (i < a->numel && a->grad[i] == g[i] * c) i++;
    ck_assert_msg(i == a->numel, "gradient %lld is %.9g, want %.9g", (long long)i,
                  (double)a->grad[i < a->numel ? i : 0], (double)(g[i < a->numel ? i : 0] * c));
    ck_assert_int_eq(tg_clip_grad_norm(ps, 1e9f, &after), TG_OK);
    ck_assert_msg(fabsf(after - 5.0f) < 1e-4f, "norm after clipping %g", after);
    free(g);
    tg_params_free(ps);
}
END_TEST

START_TEST(clip_nonfinite_and_bad_input) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_params_add(ps, "a", tg_shape1(4));
    float g[4] = {1, INFINITY, 2, 3};
    for (int i = 0; i < 4; i++) a->grad[i] = g[i];
    float norm = 0;
    ck_assert_int_eq(tg_clip_grad_norm(ps, 1.0f, &norm), TG_OK);
    ck_assert(isinf(norm));
    for (int i = 0; i < 4; i++) ck_assert(a->grad[i] == g[i]); /* untouched */
    ck_assert_int_eq(tg_clip_grad_norm(ps, 0.0f, &norm), TG_ERR_ARG);
    tg_expect_error("max_norm", TG_ERR_ARG, "tg_clip_grad_norm: argument 'max_norm' = 0", NULL);
    ck_assert_int_eq(tg_clip_grad_norm(NULL, 1.0f, &norm), TG_ERR_ARG);
    tg_expect_error("NULL", TG_ERR_ARG, "ps", NULL);
    tg_params_free(ps);
    /* an empty store has norm 0 */
    ps = tg_params_new(TG_DEVICE_CPU);
    ck_assert_int_eq(tg_clip_grad_norm(ps, 1.0f, &norm), TG_OK);
    ck_assert(norm == 0.0f);
    tg_params_free(ps);
}
END_TEST

Suite *clip_suite(void) {
    Suite *s = suite_create("clip");
    TCase *tc = tg_test_case("clip");
    tcase_add_test(tc, clip_golden);
    tcase_add_test(tc, noclip_golden);
    tcase_add_test(tc, clip_norm_after);
    tcase_add_test(tc, clip_nonfinite_and_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
