/*
 * tests/test_tape.c — the tape contract: records in order, reverse replay, fan-out
 * accumulation, parameter grads accumulating across steps until zeroed, no-grad mode,
 * per-step reset, misuse (second backward, non-scalar loss, pending error, loss without
 * grad), and the teaching outputs (table, DOT, explain).
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

/* y = relu(x) + relu(x) + x, all element-wise: dy/dx = 2[x>0] + 1. */
static tg_tensor *fan_graph(tg_ctx *ctx, tg_tensor *x) {
    tg_tensor *r = tg_relu(ctx, x);
    return tg_add(ctx, tg_add(ctx, r, r), x);
}

START_TEST(records_in_order_and_fanout) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[4] = {-1, 2, -3, 4}, seed[4] = {1, 1, 1, 1};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(4), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = fan_graph(ctx, x);
    ck_assert_int_eq(tg_tape_length(ctx), 3);
    ck_assert(y->requires_grad);
    ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
    float want[4] = {1, 3, 1, 3};
    tg_expect_close_f("dx", x->grad, want, 4, 0, 0);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(param_grads_accumulate_until_zeroed) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(3));
    for (int i = 0; i < 3; i++) w->data[i] = (float)i - 1; /* -1 0 1 */
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float seed[3] = {1, 1, 1};
    for (int step = 1; step <= 2; step++) {
        tg_tensor *y = tg_relu(ctx, w);
        ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
        float want[3] = {0, 0, (float)step}; /* relu'(0) = 0, as PyTorch */
        tg_expect_close_f("dw", w->grad, want, 3, 0, 0);
        tg_step_end(ctx);
    }
    tg_params_zero_grad(ps);
    ck_assert(w->grad[2] == 0.0f);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

START_TEST(no_grad_records_nothing) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[2] = {1, 2};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(2), v);
    tg_tensor_set_requires_grad(x, true);
    bool was = tg_set_grad_enabled(ctx, false);
    ck_assert(was);
    ck_assert(!tg_is_grad_enabled(ctx));
    tg_tensor *y = tg_relu(ctx, x);
    ck_assert_ptr_nonnull(y);
    ck_assert(!y->requires_grad);
    ck_assert_int_eq(tg_tape_length(ctx), 0);
    /* Nested scopes restore the outer mode. */
    bool inner = tg_set_grad_enabled(ctx, false);
    tg_set_grad_enabled(ctx, inner);
    ck_assert(!tg_is_grad_enabled(ctx));
    tg_set_grad_enabled(ctx, was);
    ck_assert(tg_is_grad_enabled(ctx));
    /* A loss computed without grad cannot be replayed. */
    ck_assert_int_eq(tg_backward(ctx, tg_reshape(ctx, tg_relu(ctx, tg_tensor_zeros(ctx, tg_shape1(1))), tg_shape0())),
                     TG_ERR_STATE);
    tg_expect_error("no grad loss", TG_ERR_STATE, "does not require grad", NULL);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(reset_and_misuse) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[1] = {2}, seed[1] = {1};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(1), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_relu(ctx, x);
    ck_assert_int_eq(tg_backward(ctx, y), TG_OK);
    /* Second backward on a consumed tape: a clear error, grads untouched. */
    ck_assert_int_eq(tg_backward(ctx, y), TG_ERR_STATE);
    tg_expect_error("twice", TG_ERR_STATE, "already replayed", "tg_step_end");
    ck_assert(x->grad[0] == 1.0f);
    /* Recording more ops before tg_step_end is refused too. */
    ck_assert_ptr_null(tg_relu(ctx, x));
    tg_expect_error("record after backward", TG_ERR_STATE, "tg_step_end", NULL);
    tg_step_end(ctx);
    ck_assert_int_eq(tg_tape_length(ctx), 0);
    /* Non-scalar loss. */
    x = tg_tensor_from(ctx, tg_shape2(1, 2), (float[]){1, 2});
    tg_tensor_set_requires_grad(x, true);
    ck_assert_int_eq(tg_backward(ctx, tg_relu(ctx, x)), TG_ERR_SHAPE);
    tg_expect_error("non-scalar", TG_ERR_SHAPE, "(1, 2)", "tg_backward_with");
    /* A pending error blocks backward and leaves grads alone. */
    tg_step_end(ctx);
    x = tg_tensor_from(ctx, tg_shape1(1), v);
    tg_tensor_set_requires_grad(x, true);
    y = tg_relu(ctx, x);
    /* (3) and (2) do not broadcast (tg_add broadcasts: (1) + (2) would be fine) */
    ck_assert_ptr_null(tg_add(ctx, tg_tensor_zeros(ctx, tg_shape1(3)), tg_tensor_zeros(ctx, tg_shape1(2))));
    ck_assert_int_eq(tg_backward(ctx, y), TG_ERR_SHAPE);
    ck_assert_ptr_null(x->grad);
    tg_expect_error("pending", TG_ERR_SHAPE, "tg_add", NULL);
    ck_assert_int_eq(tg_backward(ctx, NULL), TG_ERR_ARG);
    tg_expect_error("NULL loss", TG_ERR_ARG, "tg_backward", NULL);
    ck_assert_int_eq(tg_backward(NULL, y), TG_ERR_ARG);
    tg_error_clear();
    ck_assert_int_eq(tg_backward_with(ctx, y, NULL), TG_ERR_ARG);
    tg_error_clear();
    (void)seed;
    tg_ctx_free(ctx);
}
END_TEST

/* The teaching outputs mention every op and shape. */
START_TEST(print_dot_explain) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[6] = {1, -2, 3, -4, 5, -6};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(2, 3), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_reshape(ctx, tg_add(ctx, tg_relu(ctx, x), x), tg_shape1(6));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_tape_print(ctx, f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "relu"));
    ck_assert_ptr_nonnull(strstr(buf, "add"));
    ck_assert_ptr_nonnull(strstr(buf, "reshape"));
    ck_assert_ptr_nonnull(strstr(buf, "(2, 3)"));
    ck_assert_ptr_nonnull(strstr(buf, "total"));
    free(buf);
    f = open_memstream(&buf, &len);
    ck_assert_int_eq(tg_tape_write_dot(ctx, f), TG_OK);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "digraph tape"));
    ck_assert_ptr_nonnull(strstr(buf, "#0 relu"));
    ck_assert_ptr_nonnull(strstr(buf, "->"));
    free(buf);
    f = open_memstream(&buf, &len);
    tg_tape_set_explain(ctx, f);
    float seed[6] = {1, 1, 1, 1, 1, 1};
    ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
    fclose(f);
    /* Three backward steps, newest first, with the incoming gradient's norm. */
    char *r = strstr(buf, "reshape"), *a = strstr(buf, "add"), *re = strstr(buf, "relu");
    ck_assert(r && a && re && r < a && a < re);
    ck_assert_ptr_nonnull(strstr(buf, "|g|=2.44949")); /* sqrt(6) */
    free(buf);
    tg_ctx_free(ctx);
}
END_TEST

Suite *tape_suite(void) {
    Suite *s = suite_create("tape");
    TCase *tc = tg_test_case("tape");
    tcase_add_test(tc, records_in_order_and_fanout);
    tcase_add_test(tc, param_grads_accumulate_until_zeroed);
    tcase_add_test(tc, no_grad_records_nothing);
    tcase_add_test(tc, reset_and_misuse);
    tcase_add_test(tc, print_dot_explain);
    suite_add_tcase(s, tc);
    return s;
}
