/*
 * tests/test_softmax.c — softmax, log_softmax and the causal mask: PyTorch golden values
 * along every dim (forward and dx), large logits, finite differences over shapes and
 * every dim (negative dims included), properties (rows sum to 1, masked entries), and
 * bad input.
 */
#include "testutil.h"

#include "../ops/softmax.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sm_case {
    bool log, causal;
    int dim;
} sm_case;

static tg_tensor *sm_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    const sm_case *c = user;
    tg_tensor *x = c->causal ? tg_causal_mask(ctx, in[0]) : in[0];
    return c->log ? tg_log_softmax(ctx, x, c->dim) : tg_softmax(ctx, x, c->dim);
}

static void check_golden(tg_fixture *fx, const char *xname, const char *dname,
                         const char *prefix, sm_case c) {
    char key[64];
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, xname, true);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, dname, false);
    tg_tensor *y = sm_graph(ctx, &x, &c);
    tg_expect_ok(prefix);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    snprintf(key, sizeof key, "%s.y", prefix);
    if (c.causal) snprintf(key, sizeof key, "%s.p", prefix);
    tg_expect_close(key, y->data, tg_fixture_get(fx, key, NULL), y->numel, 1e-6, 1e-5);
    snprintf(key, sizeof key, "%s.dx", prefix);
    tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 1e-6, 1e-5);
    tg_ctx_free(ctx);
}

START_TEST(softmax_golden_every_dim) {
    tg_fixture *fx = tg_fixture_load("softmax.bin");
    char prefix[64];
    for (int log = 0; log <= 1; log++) {
        for (int dim = 0; dim < 4; dim++) {
            snprintf(prefix, sizeof prefix, "%s.%d", log ? "log_softmax" : "softmax", dim);
            /* dim given both ways: 0..3 and -4..-1 name the same dims */
            check_golden(fx, "x", "dout", prefix, (sm_case){.log = log, .dim = dim});
            check_golden(fx, "x", "dout", prefix, (sm_case){.log = log, .dim = dim - 4});
        }
        snprintf(prefix, sizeof prefix, "%s.big", log ? "log_softmax" : "softmax");
        check_golden(fx, "big", "dbig", prefix, (sm_case){.log = log, .dim = -1});
    }
    tg_fixture_free(fx);
}
END_TEST

START_TEST(causal_softmax_golden) {
    tg_fixture *fx = tg_fixture_load("softmax.bin");
    check_golden(fx, "scores", "dscores", "causal", (sm_case){.causal = true, .dim = -1});
    tg_fixture_free(fx);
}
END_TEST

/* Finite differences on every dim of shapes of every rank (odd sizes; inner > SM_TILE
 * once so a slice tile is partial). */
START_TEST(softmax_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape1(7), tg_shape2(3, 5), tg_shape3(2, 3, 4),
                         tg_shape4(2, 3, 2, 5), tg_shape3(2, 3, 131)};
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int dim = 0; dim < shapes[s].ndim; dim++) {
            for (int log = 0; log <= 1; log++) {
                tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
                tg_tensor *x = tg_tensor_new(ctx, shapes[s]);
                tg_rng_fill_uniform(&rng, x->data, x->numel, -3, 3);
                tg_tensor_set_requires_grad(x, true);
                sm_case c = {.log = log, .dim = dim};
                char what[64];
                snprintf(what, sizeof what, "%s dim %d of shape %zu", log ? "log_softmax"
                         : "softmax", dim, s);
                tg_expect_gradcheck_tol(what, ctx, sm_graph, &c, &x, 1, 1e-2, 2e-3, 1e-2, 300);
                tg_ctx_free(ctx);
            }
        }
    }
}
END_TEST

START_TEST(causal_mask_gradcheck) {
    tg_shape shapes[] = {tg_shape2(4, 4), tg_shape3(2, 5, 5), tg_shape4(2, 2, 3, 3)};
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    /* softmax only: log_softmax is -inf at the masked entries, no finite difference */
    for (size_t s = 0; s < 3; s++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_tensor_new(ctx, shapes[s]);
        tg_rng_fill_uniform(&rng, x->data, x->numel, -2, 2);
        tg_tensor_set_requires_grad(x, true);
        sm_case c = {.causal = true, .dim = -1};
        tg_expect_gradcheck("causal softmax", ctx, sm_graph, &c, &x, 1);
        tg_ctx_free(ctx);
    }
}
END_TEST

/* Rows sum to 1, exp(log_softmax) = softmax, masked entries are exactly 0 / -inf and get
 * no gradient; logits of 1e4 do not overflow. */
START_TEST(softmax_properties) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape3(3, 6, 6));
    tg_rng_fill_uniform(&rng, x->data, x->numel, -1e4f, 1e4f);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *m = tg_causal_mask(ctx, x);
    tg_tensor *p = tg_softmax(ctx, m, -1), *lp = tg_log_softmax(ctx, m, 2);
    tg_expect_ok("softmax");
    for (int64_t r = 0; r < 18; r++) {
        double s = 0;
        int64_t i = r % 6;
        for (int64_t j = 0; j < 6; j++) {
            float v = p->data[r * 6 + j];
            ck_assert(isfinite(v));
            if (j > i) {
                ck_assert(v == 0.0f);
                ck_assert(isinf(m->data[r * 6 + j]) && m->data[r * 6 + j] < 0);
                ck_assert(isinf(lp->data[r * 6 + j]));
            } else {
                ck_assert_msg(fabs(expf(lp->data[r * 6 + j]) - v) < 1e-6, "exp(log_softmax)");
            }
            s += v;
        }
        ck_assert_msg(fabs(s - 1) < 1e-6, "row %lld sums to %g", (long long)r, s);
    }
    float *dout = calloc((size_t)p->numel, sizeof(float));
    for (int64_t k = 0; k < p->numel; k++) dout[k] = (float)(k % 7) - 3;
    ck_assert_int_eq(tg_backward_with(ctx, p, dout), TG_OK);
    for (int64_t r = 0; r < 18; r++)
        for (int64_t j = r % 6 + 1; j < 6; j++) ck_assert(x->grad[r * 6 + j] == 0.0f);
    free(dout);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(softmax_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape2(3, 4));
    ck_assert_ptr_null(tg_softmax(ctx, x, 2));
    tg_expect_error("dim 2", TG_ERR_ARG, "tg_softmax: argument 'dim' = 2", "(3, 4)");
    ck_assert_ptr_null(tg_log_softmax(ctx, x, -3));
    tg_expect_error("dim -3", TG_ERR_ARG, "tg_log_softmax", "hint");
    ck_assert_ptr_null(tg_softmax(ctx, tg_tensor_zeros(ctx, tg_shape0()), 0));
    tg_expect_error("scalar", TG_ERR_SHAPE, "scalar", NULL);
    ck_assert_ptr_null(tg_causal_mask(ctx, x));
    tg_expect_error("not square", TG_ERR_SHAPE, "tg_causal_mask: argument 'x' has shape (3, 4)",
                    "(..., T, T)");
    ck_assert_ptr_null(tg_causal_mask(ctx, tg_tensor_zeros(ctx, tg_shape1(4))));
    tg_expect_error("1-D", TG_ERR_SHAPE, "tg_causal_mask", NULL);
    ck_assert_ptr_null(tg_softmax(ctx, NULL, 0));
    tg_expect_error("NULL", TG_ERR_ARG, "tg_softmax: argument 'x' is NULL", NULL);
    tg_ctx_free(ctx);
}
END_TEST

/* A small attention-shaped graph through every part-C op: each shows in the tape table and
 * the profile (with its cost model) and prints its own explain line during backward. */
START_TEST(partc_explain_and_profile) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *wte = tg_params_add(ps, "wte", tg_shape2(7, 4));
    tg_tensor *lw = tg_params_add(ps, "ln.weight", tg_shape1(4));
    tg_tensor *lb = tg_params_add(ps, "ln.bias", tg_shape1(4));
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    tg_init_uniform(&rng, wte, -1, 1);
    tg_init_batchnorm(lw, lb);
    int32_t idx[4] = {1, 5, 5, 2}, tgt[4] = {0, 3, TG_IGNORE_INDEX, 2};
    tg_tensor *h = tg_embedding(ctx, wte, idx, tg_shape1(4));           /* (4, 4) */
    h = tg_layer_norm(ctx, h, 1, lw, lb, 1e-5f);
    h = tg_dropout(ctx, h, 0.2f, true);
    h = tg_softmax(ctx, tg_causal_mask(ctx, h), -1);
    tg_tensor *loss = tg_nll_loss(ctx, tg_log_softmax(ctx, h, 1), tgt);
    tg_tensor *t = tg_tensor_zeros(ctx, tg_shape2(4, 4));
    loss = tg_add(ctx, loss, tg_bce_with_logits(ctx, h, t));
    tg_expect_ok("graph");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    tg_tape_set_explain(ctx, f);
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    tg_tape_set_explain(ctx, NULL);
    tg_tape_print(ctx, f);
    fclose(f);
    const char *needles[] = {"dweight[idx[i]] += dout[i]", "layer_norm over the last 1 dim",
                             "dx += dy * mask / (1 - p)", "causal_mask: dx += dy on and below",
                             "softmax along dim 1", "log_softmax along dim 1",
                             "nll_loss over 3 of 4 positions", "dlogits += (sigmoid(x) - t)"};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        ck_assert_msg(strstr(text, needles[i]), "explain/table lacks '%s':\n%s", needles[i], text);
    free(text);
    tg_op_profile rows[16];
    int n = tg_tape_profile(ctx, rows, 16);
    ck_assert_int_eq(n, 9);
    for (int i = 0; i < n; i++)
        ck_assert_msg(rows[i].fwd_bytes > 0 && rows[i].bwd_bytes > 0, "%s: no cost model",
                      rows[i].op);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

Suite *softmax_suite(void) {
    Suite *s = suite_create("softmax");
    TCase *tc = tg_test_case("softmax");
    tcase_add_test(tc, softmax_golden_every_dim);
    tcase_add_test(tc, causal_softmax_golden);
    tcase_add_test(tc, softmax_gradcheck_grid);
    tcase_add_test(tc, causal_mask_gradcheck);
    tcase_add_test(tc, softmax_properties);
    tcase_add_test(tc, softmax_bad_input);
    tcase_add_test(tc, partc_explain_and_profile);
    suite_add_tcase(s, tc);
    return s;
}
