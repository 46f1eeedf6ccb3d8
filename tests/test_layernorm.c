/*
 * tests/test_layernorm.c — layer norm over 1 and 2 trailing dims, with and without
 * weight/bias: PyTorch golden values (y, dx, dweight, dbias), finite differences over
 * shapes, normalised statistics, accumulation, and bad input.
 */
#include "testutil.h"

#include <math.h>
#include <string.h>

typedef struct ln_case {
    int k;
    int affine; /* bit 0: weight, bit 1: bias */
} ln_case;

/* inputs: x, weight, bias (each ignored when its affine bit is clear). */
static tg_tensor *ln_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    const ln_case *c = user;
    return tg_layer_norm(ctx, in[0], c->k, (c->affine & 1) ? in[1] : NULL,
                         (c->affine & 2) ? in[2] : NULL, 1e-5f);
}

START_TEST(layernorm_golden) {
    tg_fixture *fx = tg_fixture_load("layernorm.bin");
    char key[64];
    for (int k = 1; k <= 2; k++) {
        for (int affine = 0; affine <= 1; affine++) {
            tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
            snprintf(key, sizeof key, "w%d", k);
            tg_tensor *w = tg_fixture_tensor(ctx, fx, key, affine);
            snprintf(key, sizeof key, "b%d", k);
            tg_tensor *b = tg_fixture_tensor(ctx, fx, key, affine);
            tg_tensor *in[3] = {tg_fixture_tensor(ctx, fx, "x", true), w, b};
            tg_tensor *dout = tg_fixture_tensor(ctx, fx, "dout", false);
            ln_case c = {k, affine ? 3 : 0};
            tg_tensor *y = ln_graph(ctx, in, &c);
            tg_expect_ok("layer_norm");
            ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
            char p[32];
            snprintf(p, sizeof p, "ln%d.%d", k, affine);
            snprintf(key, sizeof key, "%s.y", p);
            tg_expect_close(key, y->data, tg_fixture_get(fx, key, NULL), y->numel, 1e-5, 1e-5);
            snprintf(key, sizeof key, "%s.dx", p);
            tg_expect_close(key, in[0]->grad, tg_fixture_get(fx, key, NULL), y->numel, 1e-5,
                            1e-4);
            if (affine) {
                snprintf(key, sizeof key, "%s.dw", p);
                tg_expect_close(key, w->grad, tg_fixture_get(fx, key, NULL), w->numel, 1e-5,
                                1e-4);
                snprintf(key, sizeof key, "%s.db", p);
                tg_expect_close(key, b->grad, tg_fixture_get(fx, key, NULL), b->numel, 1e-5,
                                1e-4);
            }
            tg_ctx_free(ctx);
        }
    }
    tg_fixture_free(fx);
}
END_TEST

/* Finite differences: 1 and 2 normalised dims; no affine, weight only, bias only, both
 * (every forward branch); the last shape
 * has more rows than the dweight partial-sum chunks. Weight and bias are parameters. */
START_TEST(layernorm_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape2(3, 5), tg_shape3(2, 3, 4), tg_shape4(2, 2, 3, 5),
                         tg_shape2(40, 3)};
    tg_rng rng;
    tg_rng_seed(&rng, 21);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int k = 1; k <= 2; k++) {
            for (int affine = 0; affine <= 3; affine++) {
                tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
                tg_params *ps = tg_params_new(TG_DEVICE_CPU);
                tg_shape ws = {.ndim = k};
                for (int j = 0; j < k; j++) ws.dim[j] = shapes[s].dim[shapes[s].ndim - k + j];
                tg_tensor *w = tg_params_add(ps, "w", ws), *b = tg_params_add(ps, "b", ws);
                tg_init_uniform(&rng, w, 0.5f, 1.5f);
                tg_init_uniform(&rng, b, -1, 1);
                tg_tensor *x = tg_tensor_new(ctx, shapes[s]);
                tg_rng_fill_uniform(&rng, x->data, x->numel, -2, 2);
                tg_tensor_set_requires_grad(x, true);
                tg_tensor *in[3] = {x, w, b};
                /* an unused weight or bias checks as a zero gradient */
                ln_case c = {k, affine};
                char what[64];
                snprintf(what, sizeof what, "layer_norm shape %zu k %d affine %d", s, k, affine);
                tg_expect_gradcheck_tol(what, ctx, ln_graph, &c, in, 3, 1e-2, 3e-3, 2e-2, 200);
                tg_ctx_free(ctx);
                tg_params_free(ps);
            }
        }
    }
}
END_TEST

/* Without affine every row has mean 0 and biased variance 1/(1 + eps/var); a constant row
 * normalises to 0 (var = 0: rstd = 1/sqrt(eps), no NaN). */
START_TEST(layernorm_statistics) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 22);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape2(5, 300));
    tg_rng_fill_normal(&rng, x->data, x->numel, 3, 2);
    for (int j = 0; j < 300; j++) x->data[4 * 300 + j] = 7.0f;
    tg_tensor *y = tg_layer_norm(ctx, x, 1, NULL, NULL, 1e-5f);
    tg_expect_ok("layer_norm");
    for (int r = 0; r < 5; r++) {
        double m = 0, v = 0;
        for (int j = 0; j < 300; j++) m += y->data[r * 300 + j];
        m /= 300;
        for (int j = 0; j < 300; j++) v += (y->data[r * 300 + j] - m) * (y->data[r * 300 + j] - m);
        v /= 300;
        ck_assert_msg(fabs(m) < 1e-5, "row %d mean %g", r, m);
        if (r < 4)
            ck_assert_msg(fabs(v - 1) < 1e-3, "row %d var %g", r, v);
        else
            ck_assert_msg(v == 0, "constant row: var %g", v);
    }
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(layernorm_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape3(2, 3, 4));
    tg_tensor *w = tg_tensor_zeros(ctx, tg_shape1(3));
    ck_assert_ptr_null(tg_layer_norm(ctx, x, 1, w, NULL, 1e-5f));
    tg_expect_error("weight", TG_ERR_SHAPE, "tg_layer_norm: argument 'weight' has shape (3)",
                    "expected (4)");
    ck_assert_ptr_null(tg_layer_norm(ctx, x, 2, NULL, w, 1e-5f));
    tg_expect_error("bias", TG_ERR_SHAPE, "argument 'bias'", "expected (3, 4)");
    ck_assert_ptr_null(tg_layer_norm(ctx, x, 4, NULL, NULL, 1e-5f));
    tg_expect_error("ndim", TG_ERR_ARG, "argument 'normalized_ndim' = 4", "(2, 3, 4)");
    ck_assert_ptr_null(tg_layer_norm(ctx, x, 0, NULL, NULL, 1e-5f));
    tg_expect_error("ndim 0", TG_ERR_ARG, "normalized_ndim", "hint");
    ck_assert_ptr_null(tg_layer_norm(ctx, x, 1, NULL, NULL, -1.0f));
    tg_expect_error("eps", TG_ERR_ARG, "argument 'eps'", NULL);
    tg_ctx_free(ctx);
}
END_TEST

Suite *layernorm_suite(void) {
    Suite *s = suite_create("layernorm");
    TCase *tc = tg_test_case("layernorm");
    tcase_add_test(tc, layernorm_golden);
    tcase_add_test(tc, layernorm_gradcheck_grid);
    tcase_add_test(tc, layernorm_statistics);
    tcase_add_test(tc, layernorm_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
