/*
 * tests/test_elementwise.c — add: PyTorch golden values (with fan-out), finite
 * differences over ranks, aliasing (x + x) and shape errors.
 */
#include "testutil.h"

#include <string.h>

static tg_tensor *add_fanout_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_add(ctx, tg_add(ctx, in[0], in[1]), in[0]);
}

START_TEST(add_golden) {
    tg_fixture *fx = tg_fixture_load("elementwise.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *in[2] = {tg_fixture_tensor(ctx, fx, "a", true),
                        tg_fixture_tensor(ctx, fx, "b", true)};
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "dout", false);
    tg_tensor *y = add_fanout_graph(ctx, in, NULL);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    tg_expect_close("add.y", y->data, tg_fixture_get(fx, "add.y", NULL), y->numel, 1e-6, 1e-6);
    tg_expect_close("add.da", in[0]->grad, tg_fixture_get(fx, "add.da", NULL), y->numel, 1e-6,
                    1e-6);
    tg_expect_close("add.db", in[1]->grad, tg_fixture_get(fx, "add.db", NULL), y->numel, 1e-6,
                    1e-6);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}
END_TEST

START_TEST(add_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape0(), tg_shape1(5), tg_shape2(3, 7), tg_shape4(3, 2, 5, 3)};
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *in[2] = {tg_tensor_new(ctx, shapes[s]), tg_tensor_new(ctx, shapes[s])};
        for (int k = 0; k < 2; k++) {
            tg_rng_fill_normal(&rng, in[k]->data, in[k]->numel, 0, 1);
            tg_tensor_set_requires_grad(in[k], true);
        }
        tg_expect_gradcheck("add", ctx, add_fanout_graph, NULL, in, 2);
        tg_ctx_free(ctx);
    }
}
END_TEST

START_TEST(add_self_alias) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[3] = {1, -2, 3}, seed[3] = {1, 10, 100};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(3), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_add(ctx, x, x);
    ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
    float want_y[3] = {2, -4, 6}, want_dx[3] = {2, 20, 200};
    tg_expect_close_f("y", y->data, want_y, 3, 0, 0);
    tg_expect_close_f("dx", x->grad, want_dx, 3, 0, 0);
    tg_ctx_free(ctx);
}
END_TEST

/* Only the operand that requires grad receives one; the other stays without a buffer. */
START_TEST(add_null_grad_skipped) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[2] = {1, 2}, seed[2] = {1, 1};
    tg_tensor *a = tg_tensor_from(ctx, tg_shape1(2), v);
    tg_tensor *b = tg_tensor_from(ctx, tg_shape1(2), v);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor *y = tg_add(ctx, a, b);
    ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
    ck_assert_ptr_nonnull(a->grad);
    ck_assert_ptr_null(b->grad);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(add_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    tg_tensor *b = tg_tensor_zeros(ctx, tg_shape2(3, 2));
    ck_assert_ptr_null(tg_add(ctx, a, b));
    tg_expect_error("add shape", TG_ERR_SHAPE, "tg_add", "(2, 3)");
    ck_assert_ptr_null(tg_add(ctx, a, NULL));
    tg_expect_error("add NULL", TG_ERR_ARG, "tg_add", "'b'");
    ck_assert_ptr_null(tg_add(NULL, a, a));
    tg_expect_error("add NULL ctx", TG_ERR_ARG, "add", "ctx");
    tg_ctx_free(ctx);
}
END_TEST

Suite *elementwise_suite(void) {
    Suite *s = suite_create("elementwise");
    TCase *tc = tg_test_case("add");
    tcase_add_test(tc, add_golden);
    tcase_add_test(tc, add_gradcheck_grid);
    tcase_add_test(tc, add_self_alias);
    tcase_add_test(tc, add_null_grad_skipped);
    tcase_add_test(tc, add_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
