/*
 * tests/test_nll.c — NLL on log-probabilities and BCE with logits: PyTorch golden values
 * (loss and every gradient, with an incoming dL other than 1, ignore_index -100, large
 * logits), finite differences, log_softmax + nll = cross_entropy, and bad input.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

static void nll_golden(const char *key) {
    char k[64];
    tg_fixture *fx = tg_fixture_load("nll.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    snprintf(k, sizeof k, "%s.lp", key);
    tg_tensor *lp = tg_fixture_tensor(ctx, fx, k, true);
    snprintf(k, sizeof k, "%s.t", key);
    tg_shape ts;
    const double *td = tg_fixture_get(fx, k, &ts);
    int32_t t[64];
    for (int64_t i = 0; i < tg_shape_numel(ts); i++) t[i] = (int32_t)td[i];
    tg_tensor *loss = tg_nll_loss(ctx, lp, t);
    tg_expect_ok("nll");
    float dl = 1.5f;
    ck_assert_int_eq(tg_backward_with(ctx, loss, &dl), TG_OK);
    snprintf(k, sizeof k, "%s.loss", key);
    tg_expect_close(k, loss->data, tg_fixture_get(fx, k, NULL), 1, 1e-6, 1e-6);
    snprintf(k, sizeof k, "%s.dlp", key);
    tg_expect_close(k, lp->grad, tg_fixture_get(fx, k, NULL), lp->numel, 1e-7, 1e-6);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}

START_TEST(nll_golden_2d_ignore) { nll_golden("nll2"); }
END_TEST

START_TEST(nll_golden_3d) { nll_golden("nll3"); }
END_TEST

START_TEST(bce_golden) {
    tg_fixture *fx = tg_fixture_load("nll.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, "bce.x", true);
    tg_tensor *t = tg_fixture_tensor(ctx, fx, "bce.t", true);
    tg_tensor *loss = tg_bce_with_logits(ctx, x, t);
    tg_expect_ok("bce");
    float dl = 0.75f;
    ck_assert_int_eq(tg_backward_with(ctx, loss, &dl), TG_OK);
    tg_expect_close("bce.loss", loss->data, tg_fixture_get(fx, "bce.loss", NULL), 1, 1e-6, 1e-6);
    tg_expect_close("bce.dx", x->grad, tg_fixture_get(fx, "bce.dx", NULL), x->numel, 1e-7, 1e-5);
    tg_expect_close("bce.dt", t->grad, tg_fixture_get(fx, "bce.dt", NULL), t->numel, 1e-7, 1e-5);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}
END_TEST

typedef struct nll_case {
    const int32_t *t;
    bool bce;
} nll_case;

/* nll through log_softmax (dim 1), so the input is free logits; or bce on (x, t). */
static tg_tensor *loss_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    const nll_case *c = user;
    if (c->bce) return tg_bce_with_logits(ctx, in[0], in[1]);
    return tg_nll_loss(ctx, tg_log_softmax(ctx, in[0], 1), c->t);
}

START_TEST(nll_bce_gradcheck) {
    tg_shape shapes[] = {tg_shape2(5, 4), tg_shape3(2, 3, 5), tg_shape4(2, 3, 2, 2)};
    tg_rng rng;
    tg_rng_seed(&rng, 51);
    for (int s = 0; s < 3; s++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_shape sh = shapes[s];
        tg_tensor *x = tg_tensor_new(ctx, sh), *t = tg_tensor_new(ctx, sh);
        tg_rng_fill_uniform(&rng, x->data, x->numel, -3, 3);
        tg_rng_fill_uniform(&rng, t->data, t->numel, 0, 1);
        tg_tensor_set_requires_grad(x, true);
        tg_tensor_set_requires_grad(t, true);
        int64_t positions = x->numel / sh.dim[1];
        int32_t tg[64];
        for (int64_t i = 0; i < positions; i++)
            tg[i] = i % 4 == 1 ? TG_IGNORE_INDEX : (int32_t)tg_rng_below(&rng, sh.dim[1]);
        nll_case c = {tg, false};
        tg_expect_gradcheck("nll", ctx, loss_graph, &c, &x, 1);
        c.bce = true;
        tg_tensor *in[2] = {x, t};
        tg_expect_gradcheck("bce", ctx, loss_graph, &c, in, 2);
        tg_ctx_free(ctx);
    }
}
END_TEST

/* log_softmax + nll_loss = cross_entropy (values and gradients), per pixel too. */
START_TEST(nll_matches_cross_entropy) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 52);
    tg_shape sh = tg_shape4(2, 5, 3, 4);
    tg_tensor *a = tg_tensor_new(ctx, sh);
    tg_rng_fill_uniform(&rng, a->data, a->numel, -4, 4);
    tg_tensor *b = tg_tensor_from(ctx, sh, a->data);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor_set_requires_grad(b, true);
    int32_t t[24];
    for (int i = 0; i < 24; i++) t[i] = (int32_t)tg_rng_below(&rng, 5);
    tg_tensor *l1 = tg_nll_loss(ctx, tg_log_softmax(ctx, a, 1), t);
    tg_tensor *l2 = tg_cross_entropy(ctx, b, t);
    tg_tensor *sum = tg_add(ctx, l1, l2);
    ck_assert_int_eq(tg_backward(ctx, sum), TG_OK);
    ck_assert_msg(fabsf(l1->data[0] - l2->data[0]) < 1e-6f, "%g vs %g", l1->data[0], l2->data[0]);
    tg_expect_close_f("grad", a->grad, b->grad, a->numel, 1e-7, 1e-5);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(nll_all_ignored_is_nan) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *lp = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    int32_t t[2] = {TG_IGNORE_INDEX, TG_IGNORE_INDEX};
    tg_tensor *loss = tg_nll_loss(ctx, lp, t);
    ck_assert(loss && isnan(loss->data[0]));
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(nll_bce_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *lp = tg_tensor_zeros(ctx, tg_shape2(3, 4));
    int32_t t[3] = {0, 4, 1};
    ck_assert_ptr_null(tg_nll_loss(ctx, lp, t));
    tg_expect_error("class", TG_ERR_ARG, "value 4 at position 1", "C = 4");
    ck_assert_ptr_null(tg_nll_loss(ctx, lp, NULL));
    tg_expect_error("NULL", TG_ERR_ARG, "argument 'target' is NULL", NULL);
    ck_assert_ptr_null(tg_nll_loss(ctx, tg_tensor_zeros(ctx, tg_shape1(4)), t));
    tg_expect_error("1-D", TG_ERR_SHAPE, "tg_nll_loss: argument 'log_probs' has shape (4)",
                    "hint");
    ck_assert_ptr_null(tg_bce_with_logits(ctx, lp, tg_tensor_zeros(ctx, tg_shape2(4, 3))));
    tg_expect_error("shape", TG_ERR_SHAPE, "tg_bce_with_logits: argument 'target' has shape "
                    "(4, 3)", "(3, 4)");
    tg_ctx_free(ctx);
}
END_TEST

Suite *nll_suite(void) {
    Suite *s = suite_create("nll");
    TCase *tc = tg_test_case("nll");
    tcase_add_test(tc, nll_golden_2d_ignore);
    tcase_add_test(tc, nll_golden_3d);
    tcase_add_test(tc, bce_golden);
    tcase_add_test(tc, nll_bce_gradcheck);
    tcase_add_test(tc, nll_matches_cross_entropy);
    tcase_add_test(tc, nll_all_ignored_is_nan);
    tcase_add_test(tc, nll_bce_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
