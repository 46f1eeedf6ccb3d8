/*
 * tests/test_core.c — shapes, the step arena (reuse, high-water mark), the parameter
 * store (flat buffers, stable views, buffers vs parameters), the RNG, PyTorch's default
 * initialisation bounds, the error model and the thread knob.
 */
#include "testutil.h"

#include "../core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

START_TEST(shape_basics) {
    char buf[64];
    ck_assert_int_eq(tg_shape_numel(tg_shape4(2, 3, 4, 5)), 120);
    ck_assert_int_eq(tg_shape_numel(tg_shape0()), 1);
    ck_assert(tg_shape_equal(tg_shape2(2, 3), tg_shape2(2, 3)));
    ck_assert(!tg_shape_equal(tg_shape2(2, 3), tg_shape2(3, 2)));
    ck_assert(!tg_shape_equal(tg_shape1(6), tg_shape2(1, 6)));
    ck_assert_str_eq(tg_shape_str(tg_shape4(1, 3, 32, 32), buf, sizeof buf), "(1, 3, 32, 32)");
    ck_assert_str_eq(tg_shape_str(tg_shape0(), buf, sizeof buf), "()");
    /* Truncation never overflows. */
    char small[5];
    tg_shape_str(tg_shape4(1000, 1000, 1000, 1000), small, sizeof small);
    ck_assert_int_eq((int)strlen(small), 4);
}
END_TEST

START_TEST(arena_reuses_memory) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float *first = NULL;
    for (int step = 0; step < 3; step++) {
        tg_tensor *a = tg_tensor_new(ctx, tg_shape2(256, 1024)); /* 1 MiB */
        tg_tensor *b = tg_tensor_new(ctx, tg_shape2(512, 1024)); /* 2 MiB: spills */
        ck_assert_ptr_nonnull(a);
        ck_assert_ptr_nonnull(b);
        ck_assert_int_eq((int)((uintptr_t)a->data % 64), 0);
        ck_assert(tg_ctx_arena_used(ctx) >= 3u << 20);
        if (step == 1) first = a->data;
        if (step == 2) ck_assert_ptr_eq(a->data, first); /* consolidated, then stable */
        tg_step_end(ctx);
        ck_assert_int_eq((int)tg_ctx_arena_used(ctx), 0);
    }
    size_t peak = tg_ctx_arena_peak(ctx);
    ck_assert(peak >= 3u << 20 && peak < 4u << 20);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(tensor_constructors) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[6] = {1, 2, 3, 4, 5, 6}, back[6];
    tg_tensor *t = tg_tensor_from(ctx, tg_shape2(2, 3), v);
    ck_assert_int_eq(t->numel, 6);
    ck_assert_int_eq(t->device, TG_DEVICE_CPU);
    ck_assert(!t->requires_grad && !t->is_param && t->grad == NULL);
    ck_assert_int_eq(tg_tensor_to_host(t, back, false), TG_OK);
    tg_expect_close_f("roundtrip", back, v, 6, 0, 0);
    tg_tensor *z = tg_tensor_zeros(ctx, tg_shape3(2, 2, 2));
    for (int i = 0; i < 8; i++) ck_assert(z->data[i] == 0.0f);
    ck_assert_int_eq(tg_tensor_to_host(t, back, true), TG_ERR_STATE);
    tg_expect_error("no grad yet", TG_ERR_STATE, "no gradient", NULL);
    ck_assert_ptr_null(tg_tensor_new(ctx, tg_shape2(3, 0)));
    tg_expect_error("zero dim", TG_ERR_SHAPE, "tg_tensor_new", "(3, 0)");
    ck_assert_ptr_null(tg_tensor_from(ctx, tg_shape1(3), NULL));
    tg_expect_error("NULL host", TG_ERR_ARG, "tg_tensor_from", "host");
    tg_ctx_free(ctx);
    tg_ctx_free(NULL);
}
END_TEST

START_TEST(params_flat_store) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(3, 5));
    tg_tensor *rm = tg_params_add_buffer(ps, "running_var", tg_shape1(4), 1.0f);
    tg_tensor *b = tg_params_add(ps, "b", tg_shape1(3));
    ck_assert(w->is_param && w->requires_grad && !rm->requires_grad);
    ck_assert_int_eq(tg_params_numel(ps), 18);
    ck_assert_int_eq(tg_params_buffer_numel(ps), 4);
    ck_assert_int_eq(tg_params_count(ps), 3);
    for (int i = 0; i < 4; i++) ck_assert(rm->data[i] == 1.0f);
    ck_assert_ptr_eq(tg_params_find(ps, "b"), b);
    ck_assert_ptr_null(tg_params_find(ps, "nope"));
    /* Views into the flat buffers. */
    ck_assert_ptr_eq(w->data, tg_params_data(ps));
    ck_assert(b->data > w->data && b->data < tg_params_data(ps) + tg_params_flat_numel(ps));
    ck_assert_ptr_eq(w->grad, tg_params_grad(ps));
    ck_assert_ptr_null(rm->grad);
    w->data[0] = 7;
    /* Growing the store keeps user pointers valid and values intact. */
    char name[32];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "p%d", i);
        ck_assert_ptr_nonnull(tg_params_add(ps, name, tg_shape2(8, 9)));
    }
    ck_assert(w->data[0] == 7.0f);
    ck_assert_ptr_eq(w->data, tg_params_data(ps));
    ck_assert_int_eq(tg_params_numel(ps), 18 + 200 * 72);
    /* zero_grad is one memset over the flat grads. */
    for (int64_t i = 0; i < tg_params_flat_numel(ps); i++) tg_params_grad(ps)[i] = 1;
    tg_params_zero_grad(ps);
    for (int64_t i = 0; i < tg_params_flat_numel(ps); i++) ck_assert(tg_params_grad(ps)[i] == 0);
    /* Errors: duplicate names, bad shapes; nothing added. */
    ck_assert_ptr_null(tg_params_add(ps, "w", tg_shape1(2)));
    tg_expect_error("dup", TG_ERR_ARG, "tg_params_add", "'w'");
    ck_assert_ptr_null(tg_params_add(ps, "z", tg_shape2(2, -1)));
    tg_expect_error("shape", TG_ERR_SHAPE, "tg_params_add", "(2, -1)");
    ck_assert_ptr_null(tg_params_add(ps, NULL, tg_shape1(2)));
    tg_expect_error("name", TG_ERR_ARG, "name", NULL);
    ck_assert_int_eq(tg_params_count(ps), 203);
    /* Once optimizer state exists the store is frozen. */
    ck_assert_ptr_nonnull(tg_params_state(ps, 2));
    ck_assert_ptr_null(tg_params_add(ps, "late", tg_shape1(2)));
    tg_expect_error("frozen", TG_ERR_STATE, "optimizer", "late");
    ck_assert_ptr_null(tg_params_state(ps, 1));
    tg_expect_error("slots", TG_ERR_STATE, "another optimizer", NULL);
    tg_params_free(ps);
    tg_params_free(NULL);
}
END_TEST

START_TEST(rng_deterministic_and_distributed) {
    tg_rng a, b;
    tg_rng_seed(&a, 99);
    tg_rng_seed(&b, 99);
    for (int i = 0; i < 100; i++) ck_assert(tg_rng_next(&a) == tg_rng_next(&b));
    tg_rng_seed(&b, 100);
    ck_assert(tg_rng_next(&a) != tg_rng_next(&b));
    double sum = 0, sq = 0, usum = 0;
    int counts[5] = {0};
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double z = tg_rng_normal(&a);
        sum += z;
        sq += z * z;
        double u = tg_rng_uniform(&a);
        ck_assert(u >= 0 && u < 1);
        usum += u;
        counts[tg_rng_below(&a, 5)]++;
    }
    ck_assert(fabs(sum / n) < 0.01 && fabs(sq / n - 1) < 0.02);
    ck_assert(fabs(usum / n - 0.5) < 0.005);
    for (int k = 0; k < 5; k++) ck_assert(abs(counts[k] - n / 5) < n / 50);
}
END_TEST

/* PyTorch's nn.Conv2d / nn.Linear defaults: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
START_TEST(default_init_bounds) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "conv.weight", tg_shape4(64, 16, 3, 3));
    tg_tensor *b = tg_params_add(ps, "conv.bias", tg_shape1(64));
    tg_tensor *lw = tg_params_add(ps, "fc.weight", tg_shape2(10, 400));
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    ck_assert_int_eq(tg_init_conv2d(&rng, w, b), TG_OK);
    ck_assert_int_eq(tg_init_linear(&rng, lw, NULL), TG_OK);
    double bound = 1 / sqrt(16 * 9.0), maxabs = 0, mean = 0;
    for (int64_t i = 0; i < w->numel; i++) {
        maxabs = fmax(maxabs, fabs(w->data[i]));
        mean += w->data[i];
    }
    ck_assert(maxabs <= bound && maxabs > 0.95 * bound);
    ck_assert(fabs(mean / w->numel) < 0.05 * bound);
    for (int64_t i = 0; i < b->numel; i++) ck_assert(fabs(b->data[i]) <= bound);
    for (int64_t i = 0; i < lw->numel; i++) ck_assert(fabs(lw->data[i]) <= 1 / sqrt(400.0));
    ck_assert_int_eq(tg_init_linear(&rng, w, NULL), TG_ERR_SHAPE);
    tg_expect_error("linear on 4-D", TG_ERR_SHAPE, "tg_init_linear", "(64, 16, 3, 3)");
    ck_assert_int_eq(tg_init_conv2d(&rng, w, lw), TG_ERR_SHAPE);
    tg_expect_error("bias size", TG_ERR_SHAPE, "bias", NULL);
    tg_params_free(ps);
}
END_TEST

START_TEST(errors_are_sticky_first_wins) {
    tg_error_clear();
    ck_assert_int_eq(tg_error(), TG_OK);
    ck_assert_str_eq(tg_error_message(), "");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_zeros(ctx, tg_shape1(3)), *b = tg_tensor_zeros(ctx, tg_shape1(4));
    /* The first failure is kept; later ops given NULL return NULL without overwriting. */
    tg_tensor *y = tg_relu(ctx, tg_add(ctx, a, b));
    ck_assert_ptr_null(y);
    ck_assert_ptr_null(tg_relu(ctx, y));
    tg_expect_error("first wins", TG_ERR_SHAPE, "tg_add", NULL);
    for (int s = TG_OK; s <= TG_ERR_UNSUPPORTED; s++)
        ck_assert(strlen(tg_status_name((tg_status)s)) > 0);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(threads_and_devices) {
    tg_set_num_threads(1);
    ck_assert_int_eq(tg_get_num_threads(), 1);
    tg_set_num_threads(0);
    ck_assert(tg_get_num_threads() >= 1);
    ck_assert_str_eq(tg_device_name(TG_DEVICE_CPU), "cpu");
    ck_assert_str_eq(tg_device_name(TG_DEVICE_CUDA), "cuda");
    ck_assert_ptr_null(tg_ctx_new((tg_device)7));
    tg_expect_error("bad device", TG_ERR_ARG, "tg_ctx_new", NULL);
    /* Without a usable GPU, asking for one is a clear device error, not a crash. */
    if (tg_cuda_check() != TG_OK) {
        tg_expect_error("no cuda", TG_ERR_DEVICE, "no CUDA device available", NULL);
        ck_assert_ptr_null(tg_ctx_new(TG_DEVICE_CUDA));
        tg_expect_error("no cuda ctx", TG_ERR_DEVICE, "no CUDA device available", NULL);
        ck_assert_ptr_null(tg_params_new(TG_DEVICE_CUDA));
        tg_expect_error("no cuda params", TG_ERR_DEVICE, "no CUDA device available", NULL);
    }
}
END_TEST

Suite *core_suite(void) {
    Suite *s = suite_create("core");
    TCase *tc = tg_test_case("core");
    tcase_add_test(tc, shape_basics);
    tcase_add_test(tc, arena_reuses_memory);
    tcase_add_test(tc, tensor_constructors);
    tcase_add_test(tc, params_flat_store);
    tcase_add_test(tc, rng_deterministic_and_distributed);
    tcase_add_test(tc, default_init_bounds);
    tcase_add_test(tc, errors_are_sticky_first_wins);
    tcase_add_test(tc, threads_and_devices);
    suite_add_tcase(s, tc);
    return s;
}
