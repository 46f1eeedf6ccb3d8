/*
 * tests/test_unary.c — the element-wise functions of ops/unary.c: PyTorch golden values
 * (forward and dx, float64 reference; the kinks of leaky_relu and clamp and the tails
 * of sigmoid/tanh/GELU included), finite differences over shapes of every rank with each
 * op's domain, accumulation, the explain and variant lines, and bad constants.
 */
#include "testutil.h"

#include "../autograd/tape.h"
#include "../core/core.h"
#include "../ops/unary.h"

#include <math.h>
#include <string.h>

typedef enum {
    U_ADD_SCALAR, U_SCALE, U_NEG, U_EXP, U_LOG, U_SQRT, U_POW, U_TANH, U_SIGMOID, U_GELU,
    U_GELU_TANH, U_SILU, U_LEAKY, U_CLAMP
} ufn;

/* One op with its constant; dom: the inputs it is checked on (0: any sign, 1: x > 0). */
typedef struct ucase {
    const char *name; /* as in tests/golden/gen_unary.py */
    ufn fn;
    float c;
    int positive;
} ucase;

static const ucase cases[] = {
    {"add_scalar", U_ADD_SCALAR, 0.75f, 0}, {"scale", U_SCALE, -1.5f, 0},
    {"neg", U_NEG, 0, 0},                   {"exp", U_EXP, 0, 0},
    {"log", U_LOG, 0, 1},                   {"sqrt", U_SQRT, 0, 1},
    {"pow2", U_POW, 2.0f, 0},               {"pow3", U_POW, 3.0f, 0},
    {"pow0.5", U_POW, 0.5f, 1},             {"pow-1.5", U_POW, -1.5f, 1},
    {"pow0", U_POW, 0.0f, 0},               {"tanh", U_TANH, 0, 0},
    {"sigmoid", U_SIGMOID, 0, 0},           {"gelu", U_GELU, 0, 0},
    {"gelu_tanh", U_GELU_TANH, 0, 0},       {"silu", U_SILU, 0, 0},
    {"leaky_relu", U_LEAKY, 0.01f, 0},      {"leaky_relu0.2", U_LEAKY, 0.2f, 0},
    {"clamp", U_CLAMP, 0, 0},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static tg_tensor *apply(tg_ctx *ctx, const ucase *u, tg_tensor *x) {
    switch (u->fn) {
    case U_ADD_SCALAR: return tg_add_scalar(ctx, x, u->c);
    case U_SCALE: return tg_scale(ctx, x, u->c);
    case U_NEG: return tg_neg(ctx, x);
    case U_EXP: return tg_exp(ctx, x);
    case U_LOG: return tg_log(ctx, x);
    case U_SQRT: return tg_sqrt(ctx, x);
    case U_POW: return tg_pow(ctx, x, u->c);
    case U_TANH: return tg_tanh(ctx, x);
    case U_SIGMOID: return tg_sigmoid(ctx, x);
    case U_GELU: return tg_gelu(ctx, x, false);
    case U_GELU_TANH: return tg_gelu(ctx, x, true);
    case U_SILU: return tg_silu(ctx, x);
    case U_LEAKY: return tg_leaky_relu(ctx, x, u->c);
    default: return tg_clamp(ctx, x, -0.5f, 1.0f);
    }
}

static tg_tensor *unary_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    return apply(ctx, user, in[0]);
}

START_TEST(unary_golden) {
    tg_fixture *fx = tg_fixture_load("unary.bin");
    char key[64];
    for (int k = 0; k < NCASES; k++) {
        const ucase *u = &cases[k];
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        snprintf(key, sizeof key, "%s.x", u->name);
        tg_tensor *x = tg_fixture_tensor(ctx, fx, key, true);
        snprintf(key, sizeof key, "%s.dout", u->name);
        tg_tensor *dout = tg_fixture_tensor(ctx, fx, key, false);
        tg_tensor *y = apply(ctx, u, x);
        tg_expect_ok(u->name);
        ck_assert_msg(tg_shape_equal(y->shape, x->shape), "%s: shape", u->name);
        ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
        /* float32 libm against float64: a few ulps, relative */
        snprintf(key, sizeof key, "%s.y", u->name);
        tg_expect_close(key, y->data, tg_fixture_get(fx, key, NULL), y->numel, 1e-6, 4e-6);
        snprintf(key, sizeof key, "%s.dx", u->name);
        tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 1e-6, 1e-5);
        tg_ctx_free(ctx);
    }
    tg_fixture_free(fx);
}
END_TEST

/* Inputs for finite differences: the op's domain, and 0.05 away from every kink (the
 * step is 1e-2). Positive domains start at 0.3, where log's and x^-1.5's third
 * derivatives keep the central difference's error well inside the tolerance. */
static float draw(tg_rng *rng, const ucase *u) {
    if (u->positive) return (float)(0.3 + 2.7 * tg_rng_uniform(rng));
    float v = (float)(tg_rng_uniform(rng) * 8 - 4);
    const float kinks[] = {0.0f, -0.5f, 1.0f};
    for (int i = 0; i < 3; i++)
        if (fabsf(v - kinks[i]) < 0.05f) v = kinks[i] + 0.25f;
    return v;
}

START_TEST(unary_gradcheck_grid) {
    const tg_shape shapes[] = {tg_shape0(), tg_shape1(7), tg_shape2(3, 5), tg_shape3(2, 3, 4),
                               tg_shape4(2, 1, 3, 4)};
    tg_rng rng;
    tg_rng_seed(&rng, 31);
    char what[64];
    for (int k = 0; k < NCASES; k++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
            tg_tensor *x = tg_tensor_new(ctx, shapes[s]);
            for (int64_t i = 0; i < x->numel; i++) x->data[i] = draw(&rng, &cases[k]);
            tg_tensor_set_requires_grad(x, true);
            snprintf(what, sizeof what, "%s rank %d", cases[k].name, shapes[s].ndim);
            tg_expect_gradcheck(what, ctx, unary_graph, (void *)&cases[k], &x, 1);
            tg_ctx_free(ctx);
        }
    }
}
END_TEST

/* Backward adds: x feeding two ops gets both contributions, y = tanh(x) + sigmoid(x). */
START_TEST(unary_accumulates) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[3] = {-1.0f, 0.5f, 2.0f}, ones[3] = {1, 1, 1};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(3), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_add(ctx, tg_tanh(ctx, x), tg_sigmoid(ctx, x));
    ck_assert_int_eq(tg_backward_with(ctx, y, ones), TG_OK);
    for (int i = 0; i < 3; i++) {
        double t = tanh(v[i]), s = 1 / (1 + exp(-v[i]));
        double want = (1 - t * t) + s * (1 - s);
        ck_assert_msg(fabs(x->grad[i] - want) < 1e-6, "dx[%d] = %g, want %g", i, x->grad[i], want);
    }
    tg_ctx_free(ctx);
}
END_TEST

/* Sigmoid and SiLU stay finite far into both tails (no exp overflow). */
START_TEST(unary_tails) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[4] = {-200.0f, -90.0f, 90.0f, 200.0f};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(4), v);
    tg_tensor *s = tg_sigmoid(ctx, x), *z = tg_silu(ctx, x), *g = tg_gelu(ctx, x, true);
    float want_s[4] = {0, 0, 1, 1}, want_z[4] = {-0.0f, -0.0f, 90.0f, 200.0f};
    tg_expect_close_f("sigmoid tails", s->data, want_s, 4, 1e-30, 0);
    tg_expect_close_f("silu tails", z->data, want_z, 4, 1e-30, 0);
    tg_expect_close_f("gelu tanh tails", g->data, want_z, 4, 1e-30, 0);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(unary_explain_lines) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape1(3));
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_clamp(ctx, tg_gelu(ctx, tg_leaky_relu(ctx, x, 0.2f), true), -1, 2);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(ctx->tape.len, 3);
    char buf[256];
    const tg_record *rec = &ctx->tape.records[2];
    ck_assert_str_eq(rec->op->name, "clamp");
    ck_assert_ptr_nonnull(strstr(tg_record_explain(rec, buf, sizeof buf), "-1 <= x <= 2"));
    rec = &ctx->tape.records[1];
    rec->op->describe(rec, buf, sizeof buf);
    ck_assert_str_eq(buf, "tanh approx");
    rec = &ctx->tape.records[0];
    ck_assert_ptr_nonnull(strstr(tg_record_explain(rec, buf, sizeof buf), "0.2 dy"));
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(unary_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    ck_assert_ptr_null(tg_clamp(ctx, x, 2.0f, 1.0f));
    tg_expect_error("clamp bounds", TG_ERR_ARG, "tg_clamp: bounds lo = 2 > hi = 1", "hint");
    ck_assert_ptr_null(tg_clamp(ctx, x, NAN, 1.0f));
    tg_expect_error("clamp NaN", TG_ERR_ARG, "tg_clamp: argument 'lo' is NaN", "INFINITY");
    ck_assert_ptr_null(tg_pow(ctx, x, NAN));
    tg_expect_error("pow NaN", TG_ERR_ARG, "tg_pow: argument 'p'", NULL);
    ck_assert_ptr_null(tg_leaky_relu(ctx, x, NAN));
    tg_expect_error("leaky NaN", TG_ERR_ARG, "'negative_slope'", "0.01");
    ck_assert_ptr_null(tg_scale(ctx, x, NAN));
    tg_expect_error("scale NaN", TG_ERR_ARG, "tg_scale", "'c'");
    ck_assert_ptr_null(tg_exp(ctx, NULL));
    tg_expect_error("exp NULL", TG_ERR_ARG, "tg_exp", "'x'");
    ck_assert_ptr_null(tg_gelu(NULL, x, false));
    tg_expect_error("gelu NULL ctx", TG_ERR_ARG, "gelu", "ctx");
    /* A NULL from a failed op keeps the first message. */
    ck_assert_ptr_null(tg_sigmoid(ctx, tg_clamp(ctx, x, 3.0f, 1.0f)));
    tg_expect_error("pending", TG_ERR_ARG, "tg_clamp", NULL);
    tg_ctx_free(ctx);
}
END_TEST

/* Our own exp, tanh and normal CDF (ops/unary.h) against double libm over dense sweeps,
 * as relative errors (float's unit roundoff is 6e-8). */
START_TEST(unary_math_accuracy) {
    double worst_exp = 0, worst_tanh = 0, worst_cdf = 0;
    for (float x = -87.0f; x < 88.7f; x += 1.7e-3f) {
        double want = exp((double)x);
        worst_exp = fmax(worst_exp, fabs(tg_expf(x) - want) / want);
    }
    for (float x = -12.0f; x < 12.0f; x += 1.1e-4f) {
        double want = tanh((double)x);
        if (want != 0) worst_tanh = fmax(worst_tanh, fabs(tg_tanhf(x) - want) / fabs(want));
    }
    for (float x = -14.0f; x < 10.0f; x += 1.3e-4f) {
        double want = 0.5 * erfc(-(double)x / sqrt(2.0));
        if (want < 1e-30) continue; /* e^(-x^2/2) below 2^-126 flushes to 0 */
        worst_cdf = fmax(worst_cdf, fabs(tg_normal_cdff(x) - want) / want);
    }
    ck_assert_msg(worst_exp < 1.3e-7, "exp: %.3g", worst_exp);
    ck_assert_msg(worst_tanh < 2.4e-7, "tanh: %.3g", worst_tanh);
    ck_assert_msg(worst_cdf < 1e-6, "normal cdf: %.3g", worst_cdf);
    /* The edges: overflow, underflow, infinities and NaN. */
    ck_assert(isinf(tg_expf(89.0f)) && tg_expf(-104.0f) == 0.0f && tg_expf(-INFINITY) == 0.0f);
    ck_assert(isnan(tg_expf(NAN)) && isnan(tg_tanhf(NAN)) && isnan(tg_normal_cdff(NAN)));
    ck_assert(tg_tanhf(INFINITY) == 1.0f && tg_tanhf(-INFINITY) == -1.0f);
    ck_assert(tg_normal_cdff(INFINITY) == 1.0f && tg_normal_cdff(-INFINITY) == 0.0f);
}
END_TEST

Suite *unary_suite(void) {
    Suite *s = suite_create("unary");
    TCase *tc = tg_test_case("unary");
    tcase_add_test(tc, unary_golden);
    tcase_add_test(tc, unary_math_accuracy);
    tcase_add_test(tc, unary_gradcheck_grid);
    tcase_add_test(tc, unary_accumulates);
    tcase_add_test(tc, unary_tails);
    tcase_add_test(tc, unary_explain_lines);
    tcase_add_test(tc, unary_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
