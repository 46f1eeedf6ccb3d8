/*
 * tests/test_embedding.c — embedding: PyTorch golden values with repeated indices
 * (output and the scatter-added weight gradient), finite differences with repeated
 * indices over index shapes of 1 to 3 dims, a larger table (parallel backward path), and
 * bad input (the bad index names its position, value and the vocabulary size).
 */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

START_TEST(embedding_golden) {
    tg_fixture *fx = tg_fixture_load("embedding.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "wte", tg_shape2(11, 6));
    tg_fixture_copy_into(fx, "w", w);
    tg_shape is;
    const double *di = tg_fixture_get(fx, "idx", &is);
    int32_t idx[12];
    for (int i = 0; i < 12; i++) idx[i] = (int32_t)di[i];
    tg_tensor *y = tg_embedding(ctx, w, idx, is);
    tg_expect_ok("embedding");
    ck_assert_int_eq(y->shape.ndim, 3);
    ck_assert_int_eq(y->shape.dim[2], 6);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "dout", false);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    tg_expect_close("y", y->data, tg_fixture_get(fx, "y", NULL), y->numel, 0, 0);
    tg_expect_close("dw", w->grad, tg_fixture_get(fx, "dw", NULL), w->numel, 1e-6, 1e-6);
    tg_ctx_free(ctx);
    tg_params_free(ps);
    tg_fixture_free(fx);
}
END_TEST

typedef struct emb_case {
    const int32_t *idx;
    tg_shape shape;
} emb_case;

static tg_tensor *emb_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    const emb_case *c = user;
    return tg_embedding(ctx, in[0], c->idx, c->shape);
}

START_TEST(embedding_gradcheck_repeated) {
    tg_shape shapes[] = {tg_shape1(9), tg_shape2(3, 5), tg_shape3(2, 2, 4)};
    tg_rng rng;
    tg_rng_seed(&rng, 41);
    for (int s = 0; s < 3; s++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_params *ps = tg_params_new(TG_DEVICE_CPU);
        tg_tensor *w = tg_params_add(ps, "w", tg_shape2(5, 3)); /* 5 rows: many repeats */
        tg_init_uniform(&rng, w, -1, 1);
        int64_t n = tg_shape_numel(shapes[s]);
        int32_t idx[32];
        for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)tg_rng_below(&rng, 4); /* row 4 unused */
        emb_case c = {idx, shapes[s]};
        tg_expect_gradcheck("embedding", ctx, emb_graph, &c, &w, 1);
        /* the unused row gets exactly zero */
        tg_tensor *y = emb_graph(ctx, &w, &c);
        float *dy = malloc((size_t)y->numel * sizeof(float));
        for (int64_t i = 0; i < y->numel; i++) dy[i] = 1.0f;
        tg_params_zero_grad(ps);
        ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
        for (int d = 0; d < 3; d++) ck_assert(w->grad[4 * 3 + d] == 0.0f);
        /* row v's gradient is its count: repeated indices add up */
        for (int v = 0; v < 4; v++) {
            int count = 0;
            for (int64_t i = 0; i < n; i++) count += idx[i] == v;
            ck_assert(w->grad[v * 3] == (float)count);
        }
        free(dy);
        tg_ctx_free(ctx);
        tg_params_free(ps);
    }
}
END_TEST

/* A GPT-sized table: (65, 384) rows looked up by (16, 64) tokens; against a plain loop. */
START_TEST(embedding_large_matches_loop) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    int64_t V = 65, D = 384, n = 16 * 64;
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(V, D));
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    tg_init_uniform(&rng, w, -1, 1);
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    for (int64_t i = 0; i < n; i++) idx[i] = (int32_t)tg_rng_below(&rng, V);
    tg_tensor *y = tg_embedding(ctx, w, idx, tg_shape2(16, 64));
    ck_assert(y);
    float *dy = malloc((size_t)(n * D) * sizeof(float));
    tg_rng_fill_uniform(&rng, dy, n * D, -1, 1);
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
    double *want = calloc((size_t)(V * D), sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        for (int64_t d = 0; d < D; d++) {
            ck_assert(y->data[i * D + d] == w->data[idx[i] * D + d]);
            want[idx[i] * D + d] += dy[i * D + d];
        }
    }
    tg_expect_close("dw", w->grad, want, V * D, 1e-5, 1e-5);
    free(want), free(dy), free(idx);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

START_TEST(embedding_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_tensor_zeros(ctx, tg_shape2(10, 4));
    int32_t idx[6] = {1, 2, 3, 4, 12, 0};
    ck_assert_ptr_null(tg_embedding(ctx, w, idx, tg_shape2(2, 3)));
    tg_expect_error("index", TG_ERR_ARG, "value 12 at position 4", "[0, 10)");
    idx[4] = -1;
    ck_assert_ptr_null(tg_embedding(ctx, w, idx, tg_shape1(6)));
    tg_expect_error("negative", TG_ERR_ARG, "value -1 at position 4", "vocabulary size");
    idx[4] = 0;
    ck_assert_ptr_null(tg_embedding(ctx, w, NULL, tg_shape1(6)));
    tg_expect_error("NULL", TG_ERR_ARG, "argument 'indices' is NULL", NULL);
    ck_assert_ptr_null(tg_embedding(ctx, w, idx, tg_shape4(1, 1, 2, 3)));
    tg_expect_error("4-D", TG_ERR_SHAPE, "index_shape", "1 to 3");
    ck_assert_ptr_null(tg_embedding(ctx, tg_tensor_zeros(ctx, tg_shape1(4)), idx, tg_shape1(6)));
    tg_expect_error("1-D weight", TG_ERR_SHAPE, "argument 'weight'", "expected 2 dims");
    tg_ctx_free(ctx);
}
END_TEST

Suite *embedding_suite(void) {
    Suite *s = suite_create("embedding");
    TCase *tc = tg_test_case("embedding");
    tcase_add_test(tc, embedding_golden);
    tcase_add_test(tc, embedding_gradcheck_repeated);
    tcase_add_test(tc, embedding_large_matches_loop);
    tcase_add_test(tc, embedding_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
