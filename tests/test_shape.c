/*
 * tests/test_shape.c — reshape and flatten: views share storage, gradients pass through,
 * -1 inference, PyTorch golden values, finite differences and shape errors.
 */
#include "testutil.h"

typedef struct shape_case {
    tg_shape shape; /* tg_reshape target, or ndim = -1 for tg_flatten */
    const float *w; /* weights of the projection after the view (NULL: none) */
} shape_case;

static tg_tensor *view_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    shape_case *c = user;
    tg_tensor *v = c->shape.ndim < 0 ? tg_flatten(ctx, in[0]) : tg_reshape(ctx, in[0], c->shape);
    /* A following op that mixes elements: v + v, so the view must route dy correctly. */
    return tg_add(ctx, v, v);
}

static void golden_view(const char *prefix, tg_shape target, const char *wname) {
    char key[64];
    tg_fixture *fx = tg_fixture_load("elementwise.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, "x", true);
    tg_tensor *w = tg_fixture_tensor(ctx, fx, wname, false);
    tg_tensor *v = target.ndim < 0 ? tg_flatten(ctx, x) : tg_reshape(ctx, x, target);
    tg_expect_ok(prefix);
    ck_assert_ptr_eq(v->data, x->data); /* a view: no copy */
    snprintf(key, sizeof key, "%s.y", prefix);
    tg_shape want;
    tg_fixture_get(fx, key, &want);
    ck_assert(tg_shape_equal(v->shape, want));
    /* L = sum(w * v): dL/dv = w. */
    ck_assert_int_eq(tg_backward_with(ctx, v, w->data), TG_OK);
    snprintf(key, sizeof key, "%s.dx", prefix);
    tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 0, 0);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}

START_TEST(reshape_golden) { golden_view("reshape", tg_shape2(6, -1), "w"); }
END_TEST

START_TEST(flatten_golden) {
    tg_shape flat = {.ndim = -1};
    golden_view("flatten", flat, "wf");
}
END_TEST

START_TEST(view_gradcheck_grid) {
    shape_case cases[] = {{tg_shape1(-1), NULL}, {tg_shape2(5, 6), NULL},
                          {tg_shape4(1, 3, 1, 10), NULL}, {{.ndim = -1}, NULL}};
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_tensor_new(ctx, tg_shape4(3, 2, 1, 5));
        tg_rng_fill_normal(&rng, x->data, x->numel, 0, 1);
        tg_tensor_set_requires_grad(x, true);
        tg_expect_gradcheck("view", ctx, view_graph, &cases[c], &x, 1);
        tg_ctx_free(ctx);
    }
}
END_TEST

START_TEST(reshape_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape2(4, 6));
    ck_assert_ptr_null(tg_reshape(ctx, x, tg_shape2(5, 5)));
    tg_expect_error("numel", TG_ERR_SHAPE, "tg_reshape", "(4, 6)");
    ck_assert_ptr_null(tg_reshape(ctx, x, tg_shape2(-1, 7)));
    tg_expect_error("infer", TG_ERR_SHAPE, "tg_reshape", "-1");
    ck_assert_ptr_null(tg_reshape(ctx, x, tg_shape2(-1, -1)));
    tg_expect_error("two -1", TG_ERR_SHAPE, "tg_reshape", "'shape'");
    ck_assert_ptr_null(tg_reshape(ctx, x, tg_shape2(0, 24)));
    tg_expect_error("zero dim", TG_ERR_SHAPE, "tg_reshape", "'shape'");
    ck_assert_ptr_null(tg_reshape(ctx, NULL, tg_shape1(3)));
    tg_expect_error("NULL", TG_ERR_ARG, "tg_reshape", "'x'");
    ck_assert_ptr_null(tg_flatten(ctx, tg_tensor_zeros(ctx, tg_shape0())));
    tg_expect_error("flatten scalar", TG_ERR_SHAPE, "tg_flatten", "scalar");
    tg_ctx_free(ctx);
}
END_TEST

Suite *shape_suite(void) {
    Suite *s = suite_create("shape");
    TCase *tc = tg_test_case("reshape");
    tcase_add_test(tc, reshape_golden);
    tcase_add_test(tc, flatten_golden);
    tcase_add_test(tc, view_gradcheck_grid);
    tcase_add_test(tc, reshape_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
