/*
 * tests/test_dropout.c — dropout: statistics of the mask (drop rate, scale, mean), the
 * backward reusing the forward's mask, a gradcheck with a fixed mask, masks replayed after
 * restoring the context's generator (directly and through a checkpoint's train state: the
 * resume scenario), independence of the thread count, eval/p = 0/p = 1, and bad input.
 * PyTorch's generator is not reproduced (ours is xoshiro + a hash), so there is no golden
 * mask: the rule's properties are tested instead.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static float *ones(int64_t n) {
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = 1.0f + (float)(i % 5); /* never 0 */
    return v;
}

START_TEST(dropout_statistics) {
    const float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    int64_t n = 200000;
    float *h = ones(n);
    for (int k = 0; k < 4; k++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_ctx_seed(ctx, 100 + (uint64_t)k);
        tg_tensor *x = tg_tensor_from(ctx, tg_shape2(400, 500), h);
        tg_tensor *y = tg_dropout(ctx, x, ps[k], true);
        tg_expect_ok("dropout");
        int64_t dropped = 0;
        double sum_x = 0, sum_y = 0;
        float scale = 1.0f / (1.0f - ps[k]);
        for (int64_t i = 0; i < n; i++) {
            if (y->data[i] == 0.0f) dropped++;
            else ck_assert_msg(fabsf(y->data[i] - h[i] * scale) <= 1e-6f * y->data[i],
                               "kept value %g, want %g", y->data[i], h[i] * scale);
            sum_x += h[i];
            sum_y += y->data[i];
        }
        /* binomial: within 5 standard deviations */
        double p = ps[k], sd = sqrt(n * p * (1 - p));
        ck_assert_msg(fabs((double)dropped - n * p) < 5 * sd, "p %g: dropped %lld of %lld", p,
                      (long long)dropped, (long long)n);
        ck_assert_msg(fabs(sum_y / sum_x - 1) < 5 * sqrt(p / (1 - p) / n) * 2,
                      "p %g: mean ratio %g", p, sum_y / sum_x);
        tg_ctx_free(ctx);
    }
    free(h);
}
END_TEST

/* dx = dy / (1 - p) exactly where the forward kept the element, 0 where it dropped it;
 * and successive calls draw different masks. */
START_TEST(dropout_backward_reuses_mask) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    int64_t n = 5000;
    float *h = ones(n);
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(n), h);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_dropout(ctx, x, 0.4f, true);
    tg_tensor *y2 = tg_dropout(ctx, x, 0.4f, false);
    ck_assert_ptr_eq(y2, x); /* eval: x itself */
    tg_tensor *y3 = tg_dropout(ctx, x, 0.4f, true);
    int64_t differ = 0;
    for (int64_t i = 0; i < n; i++) differ += (y->data[i] == 0) != (y3->data[i] == 0);
    ck_assert_msg(differ > n / 10, "two calls drew nearly the same mask (%lld differ)",
                  (long long)differ);
    float *dy = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) dy[i] = (float)(i % 11) - 5.0f;
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
    float scale = (float)(1.0 / (1.0 - (double)0.4f));
    for (int64_t i = 0; i < n; i++) {
        float want = y->data[i] != 0.0f ? dy[i] * scale : 0.0f;
        ck_assert_msg(x->grad[i] == want, "dx[%lld] = %g, want %g", (long long)i, x->grad[i],
                      want);
    }
    free(dy);
    free(h);
    tg_ctx_free(ctx);
}
END_TEST

/* The graph reseeds the generator, so every evaluation uses the same mask. */
static tg_tensor *drop_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    tg_ctx_seed(ctx, 77);
    return tg_dropout(ctx, in[0], 0.3f, true);
}

START_TEST(dropout_gradcheck_fixed_mask) {
    tg_shape shapes[] = {tg_shape1(50), tg_shape3(2, 3, 7), tg_shape4(2, 2, 3, 4)};
    tg_rng rng;
    tg_rng_seed(&rng, 31);
    for (int s = 0; s < 3; s++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_tensor_new(ctx, shapes[s]);
        tg_rng_fill_uniform(&rng, x->data, x->numel, -2, 2);
        tg_tensor_set_requires_grad(x, true);
        tg_expect_gradcheck("dropout", ctx, drop_graph, NULL, &x, 1);
        tg_ctx_free(ctx);
    }
}
END_TEST

/* Three "steps" of dropout; returns the masks (kept = 1) concatenated. */
static void run_steps(tg_ctx *ctx, int steps, int64_t n, unsigned char *mask) {
    float *h = ones(n);
    for (int s = 0; s < steps; s++) {
        tg_tensor *x = tg_tensor_from(ctx, tg_shape1(n), h);
        tg_tensor *y = tg_dropout(ctx, x, 0.5f, true);
        ck_assert_msg(y != NULL, "%s", tg_error_message());
        for (int64_t i = 0; i < n; i++) mask[s * n + i] = y->data[i] != 0.0f;
        tg_step_end(ctx);
    }
    free(h);
}

/* A run saves the generator after 2 steps; a fresh context given that state replays steps
 * 3..5 exactly, directly and through tg_checkpoint_save/load's train state. */
START_TEST(dropout_replay_after_restore) {
    int64_t n = 3000;
    unsigned char *a = malloc(5 * n), *b = malloc(3 * n), *c = malloc(3 * n);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_ctx_seed(ctx, 2024);
    run_steps(ctx, 2, n, a);
    tg_train_state st = {.step = 2, .rng = *tg_ctx_rng(ctx)};
    /* checkpoint the train state with a one-parameter model */
    tg_model *m = tg_model_new("dropout-resume", TG_DEVICE_CPU, NULL, NULL, NULL);
    ck_assert(m && tg_params_add(tg_model_params(m), "w", tg_shape1(3)));
    char path[] = "/tmp/tg_dropout_resumeXXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_int_eq(tg_checkpoint_save(path, m, NULL, &st), TG_OK);
    run_steps(ctx, 3, n, a + 2 * n);
    tg_ctx_free(ctx);

    tg_ctx *direct = tg_ctx_new(TG_DEVICE_CPU); /* its own seed differs */
    *tg_ctx_rng(direct) = st.rng;
    run_steps(direct, 3, n, b);
    tg_ctx_free(direct);

    tg_train_state loaded;
    memset(&loaded, 0, sizeof loaded);
    ck_assert_int_eq(tg_checkpoint_load(path, m, NULL, &loaded), TG_OK);
    tg_ctx *resumed = tg_ctx_new(TG_DEVICE_CPU);
    *tg_ctx_rng(resumed) = loaded.rng;
    run_steps(resumed, 3, n, c);
    tg_ctx_free(resumed);
    ck_assert_msg(memcmp(a + 2 * n, b, 3 * n) == 0, "restored generator: masks differ");
    ck_assert_msg(memcmp(a + 2 * n, c, 3 * n) == 0, "checkpointed generator: masks differ");
    ck_assert_msg(memcmp(a, a + n, n) != 0, "steps 1 and 2 drew the same mask");
    unlink(path);
    tg_model_free(m);
    free(a), free(b), free(c);
}
END_TEST

START_TEST(dropout_thread_independent) {
    int64_t n = 300000;
    float *h = ones(n);
    float *out[2];
    int saved = tg_get_num_threads();
    for (int t = 0; t < 2; t++) {
        tg_set_num_threads(t + 1);
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_ctx_seed(ctx, 5);
        tg_tensor *y = tg_dropout(ctx, tg_tensor_from(ctx, tg_shape1(n), h), 0.25f, true);
        ck_assert(y);
        out[t] = malloc((size_t)n * sizeof(float));
        memcpy(out[t], y->data, (size_t)n * sizeof(float));
        tg_ctx_free(ctx);
    }
    tg_set_num_threads(saved);
    ck_assert(memcmp(out[0], out[1], (size_t)n * sizeof(float)) == 0);
    free(out[0]), free(out[1]), free(h);
}
END_TEST

START_TEST(dropout_edges_and_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float h[6] = {1, 2, 3, 4, 5, 6}, dy[6] = {1, 1, 1, 1, 1, 1};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(2, 3), h);
    tg_tensor_set_requires_grad(x, true);
    tg_rng before = *tg_ctx_rng(ctx);
    ck_assert_ptr_eq(tg_dropout(ctx, x, 0.0f, true), x);
    ck_assert_ptr_eq(tg_dropout(ctx, x, 0.5f, false), x);
    ck_assert(memcmp(&before, tg_ctx_rng(ctx), sizeof before) == 0); /* nothing drawn */
    tg_tensor *y = tg_dropout(ctx, x, 1.0f, true);
    ck_assert(y);
    for (int i = 0; i < 6; i++) ck_assert(y->data[i] == 0.0f);
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
    for (int i = 0; i < 6; i++) ck_assert(x->grad[i] == 0.0f);
    tg_step_end(ctx);
    x = tg_tensor_from(ctx, tg_shape2(2, 3), h);
    ck_assert_ptr_null(tg_dropout(ctx, x, 1.5f, true));
    tg_expect_error("p", TG_ERR_ARG, "tg_dropout: argument 'p' = 1.5", "(2, 3)");
    ck_assert_ptr_null(tg_dropout(ctx, x, NAN, true));
    tg_expect_error("nan", TG_ERR_ARG, "[0, 1]", NULL);
    ck_assert_ptr_null(tg_dropout(ctx, NULL, 0.1f, true));
    tg_expect_error("NULL", TG_ERR_ARG, "argument 'x' is NULL", NULL);
    tg_ctx_free(ctx);
}
END_TEST

Suite *dropout_suite(void) {
    Suite *s = suite_create("dropout");
    TCase *tc = tg_test_case("dropout");
    tcase_add_test(tc, dropout_statistics);
    tcase_add_test(tc, dropout_backward_reuses_mask);
    tcase_add_test(tc, dropout_gradcheck_fixed_mask);
    tcase_add_test(tc, dropout_replay_after_restore);
    tcase_add_test(tc, dropout_thread_independent);
    tcase_add_test(tc, dropout_edges_and_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
