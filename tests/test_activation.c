/*
 * tests/test_activation.c — relu and relu6: PyTorch golden values (forward and dx,
 * including the kinks at exactly 0 and 6, NaN, +-inf and -0.0), finite differences, and
 * accumulation.
 */
#include "testutil.h"

#include <math.h>
#include <string.h>

typedef struct act_case {
    bool six;
} act_case;

static tg_tensor *act_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    act_case *c = user;
    return c->six ? tg_relu6(ctx, in[0]) : tg_relu(ctx, in[0]);
}

static void check_golden(bool six) {
    const char *name = six ? "relu6" : "relu";
    char key[64];
    tg_fixture *fx = tg_fixture_load("activation.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, "x", true);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "dout", false);
    act_case c = {six};
    tg_tensor *y = act_graph(ctx, &x, &c);
    tg_expect_ok(name);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    snprintf(key, sizeof key, "%s.y", name);
    tg_expect_close(key, y->data, tg_fixture_get(fx, key, NULL), y->numel, 0, 0);
    snprintf(key, sizeof key, "%s.dx", name);
    tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 0, 0);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}

START_TEST(relu_golden) { check_golden(false); }
END_TEST

START_TEST(relu6_golden) { check_golden(true); }
END_TEST

/* NaN, +-inf and -0.0 (PyTorch's values): NaN propagates and its gradient is dy; relu
 * passes dy at +inf, relu6 zeroes it at and above 6; relu(-0.0) keeps its sign. */
static void check_golden_nan(bool six) {
    const char *name = six ? "relu6_nan" : "relu_nan";
    char key[64];
    tg_fixture *fx = tg_fixture_load("activation.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, "xn", true);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "doutn", false);
    act_case c = {six};
    tg_tensor *y = act_graph(ctx, &x, &c);
    tg_expect_ok(name);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    snprintf(key, sizeof key, "%s.y", name);
    const double *want_y = tg_fixture_get(fx, key, NULL);
    tg_expect_close(key, y->data, want_y, y->numel, 0, 0);
    for (int64_t i = 0; i < y->numel; i++)
        ck_assert_msg(!!signbit(y->data[i]) == !!signbit(want_y[i]) || isnan(want_y[i]),
                      "%s[%lld]: sign of %g differs from PyTorch's %g", key, (long long)i,
                      y->data[i], want_y[i]);
    int nans = 0;
    for (int64_t i = 0; i < y->numel; i++) nans += isnan(y->data[i]);
    ck_assert_int_ge(nans, 2);
    snprintf(key, sizeof key, "%s.dx", name);
    tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 0, 0);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}

START_TEST(relu_golden_nan) { check_golden_nan(false); }
END_TEST

START_TEST(relu6_golden_nan) { check_golden_nan(true); }
END_TEST

/* Finite differences over shapes of every rank; inputs kept away from the kinks. */
START_TEST(activation_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape1(7), tg_shape2(3, 5), tg_shape3(2, 3, 4),
                         tg_shape4(1, 2, 3, 5), tg_shape4(3, 1, 5, 2)};
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    for (int six = 0; six <= 1; six++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
            tg_tensor *x = tg_tensor_new(ctx, shapes[s]);
            for (int64_t i = 0; i < x->numel; i++) {
                float v = (float)(tg_rng_uniform(&rng) * 16 - 8);
                if (fabsf(v) < 0.1f) v = 0.5f;
                if (fabsf(v - 6) < 0.1f) v = 5.0f;
                x->data[i] = v;
            }
            tg_tensor_set_requires_grad(x, true);
            act_case c = {six == 1};
            tg_expect_gradcheck(six ? "relu6" : "relu", ctx, act_graph, &c, &x, 1);
            tg_ctx_free(ctx);
        }
    }
}
END_TEST

/* Backward adds: x used twice gets both contributions. */
START_TEST(relu_accumulates) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[4] = {-1, 2, 0, 3};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(4), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_add(ctx, tg_relu(ctx, x), tg_relu(ctx, x));
    float ones[4] = {1, 1, 1, 1};
    ck_assert_int_eq(tg_backward_with(ctx, y, ones), TG_OK);
    float want[4] = {0, 2, 0, 2};
    tg_expect_close_f("dx", x->grad, want, 4, 0, 0);
    tg_ctx_free(ctx);
}
END_TEST

Suite *activation_suite(void) {
    Suite *s = suite_create("activation");
    TCase *tc = tg_test_case("activation");
    tcase_add_test(tc, relu_golden);
    tcase_add_test(tc, relu6_golden);
    tcase_add_test(tc, relu_golden_nan);
    tcase_add_test(tc, relu6_golden_nan);
    tcase_add_test(tc, activation_gradcheck_grid);
    tcase_add_test(tc, relu_accumulates);
    suite_add_tcase(s, tc);
    return s;
}
