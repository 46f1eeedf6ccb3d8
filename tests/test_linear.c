/*
 * tests/test_linear.c — tg_linear: PyTorch golden values (y, dx, dweight, dbias; with and
 * without a bias), finite differences over batch 1 and 3 with odd feature counts,
 * accumulation into pre-filled gradients, NULL-gradient skipping in the kernel and on the
 * tape, and bad inputs (rank, feature mismatch, bias size, NULL) that change nothing.
 */
#include "testutil.h"

#include "../ops/linear.h"

#include <stdlib.h>

static tg_tensor *linear_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_linear(ctx, in[0], in[1], in[2]);
}

/* Fills t with uniform values in [lo, hi). */
static void fill(tg_rng *rng, tg_tensor *t, float lo, float hi) {
    tg_rng_fill_uniform(rng, t->data, t->numel, lo, hi);
}

/* ---------------------------------------------------------------- golden */

/* Compares t's values (or grad) with the fixture array "<name>.<field>". */
static void expect_fixture(const tg_fixture *fx, const char *name, const char *field,
                           const float *got, int64_t n) {
    char key[64];
    snprintf(key, sizeof key, "%s.%s", name, field);
    tg_shape shape;
    const double *want = tg_fixture_get(fx, key, &shape);
    ck_assert_int_eq(tg_shape_numel(shape), n);
    tg_expect_close(key, got, want, n, 1e-5, 1e-5);
}

static tg_tensor *fixture_input(tg_ctx *ctx, const tg_fixture *fx, const char *name,
                                const char *field, bool requires_grad) {
    char key[64];
    snprintf(key, sizeof key, "%s.%s", name, field);
    return tg_fixture_tensor(ctx, fx, key, requires_grad);
}

static void check_golden(const char *name, bool has_bias) {
    tg_fixture *fx = tg_fixture_load("linear.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = fixture_input(ctx, fx, name, "x", true);
    tg_tensor *w = fixture_input(ctx, fx, name, "weight", true);
    tg_tensor *b = has_bias ? fixture_input(ctx, fx, name, "bias", true) : NULL;
    tg_tensor *dout = fixture_input(ctx, fx, name, "dout", false);
    tg_tensor *y = tg_linear(ctx, x, w, b);
    tg_expect_ok(name);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    expect_fixture(fx, name, "y", y->data, y->numel);
    expect_fixture(fx, name, "dx", x->grad, x->numel);
    expect_fixture(fx, name, "dweight", w->grad, w->numel);
    if (has_bias) expect_fixture(fx, name, "dbias", b->grad, b->numel);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}

START_TEST(linear_golden_bias) { check_golden("bias", true); }
END_TEST

START_TEST(linear_golden_nobias) { check_golden("nobias", false); }
END_TEST

START_TEST(linear_golden_wide) { check_golden("wide", true); }
END_TEST

/* ---------------------------------------------------------------- finite differences */

START_TEST(linear_gradcheck_grid) {
    const int64_t batches[] = {1, 3};
    const int64_t feats[][2] = {{1, 1}, {3, 5}, {7, 3}, {5, 9}}; /* (in, out) */
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    for (int bi = 0; bi < 2; bi++) {
        for (int fi = 0; fi < 4; fi++) {
            for (int with_bias = 0; with_bias <= 1; with_bias++) {
                int64_t N = batches[bi], in = feats[fi][0], out = feats[fi][1];
                tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
                tg_tensor *t[3] = {tg_tensor_new(ctx, tg_shape2(N, in)),
                                   tg_tensor_new(ctx, tg_shape2(out, in)),
                                   with_bias ? tg_tensor_new(ctx, tg_shape1(out)) : NULL};
                for (int k = 0; k < 3; k++) {
                    if (!t[k]) continue;
                    fill(&rng, t[k], -1, 1);
                    tg_tensor_set_requires_grad(t[k], true);
                }
                char what[64];
                snprintf(what, sizeof what, "linear N=%lld in=%lld out=%lld bias=%d",
                         (long long)N, (long long)in, (long long)out, with_bias);
                tg_expect_gradcheck(what, ctx, linear_graph, NULL, t, 3);
                tg_ctx_free(ctx);
            }
        }
    }
}
END_TEST

/* x (..., in): 3-D and 4-D inputs give exactly what the same rows give as (N, in), forward
 * and backward (the leading dims are folded into one GEMM), and pass finite differences. */
START_TEST(linear_leading_dims) {
    const tg_shape shapes[] = {tg_shape3(2, 3, 5), tg_shape4(2, 1, 3, 5), tg_shape3(1, 1, 5)};
    tg_rng rng;
    tg_rng_seed(&rng, 17);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        tg_params *ps = tg_params_new(TG_DEVICE_CPU); /* outlive tg_step_end */
        tg_tensor *w = tg_params_add(ps, "w", tg_shape2(4, 5));
        tg_tensor *b = tg_params_add(ps, "b", tg_shape1(4));
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_tensor_new(ctx, shapes[si]);
        tg_tensor *t[3] = {x, w, b};
        for (int k = 0; k < 3; k++) fill(&rng, t[k], -1, 1);
        tg_tensor_set_requires_grad(x, true);
        int64_t rows = x->numel / 5;
        tg_tensor *x2 = tg_tensor_from(ctx, tg_shape2(rows, 5), x->data);
        tg_tensor_set_requires_grad(x2, true);
        tg_tensor *y = tg_linear(ctx, x, w, b), *y2 = tg_linear(ctx, x2, w, b);
        tg_expect_ok("linear (..., in)");
        ck_assert_int_eq(y->shape.ndim, shapes[si].ndim);
        for (int k = 0; k + 1 < y->shape.ndim; k++) ck_assert_int_eq(y->shape.dim[k], shapes[si].dim[k]);
        ck_assert_int_eq(y->shape.dim[y->shape.ndim - 1], 4);
        tg_expect_close_f("y", y->data, y2->data, y->numel, 0, 0);
        float *dy = malloc((size_t)y->numel * sizeof *dy);
        tg_rng_fill_uniform(&rng, dy, y->numel, -1, 1);
        ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
        float *dx = malloc((size_t)x->numel * sizeof *dx);
        for (int64_t i = 0; i < x->numel; i++) dx[i] = x->grad[i];
        float *xv = malloc((size_t)x->numel * sizeof *xv);
        for (int64_t i = 0; i < x->numel; i++) xv[i] = x->data[i];
        tg_step_end(ctx);
        x2 = tg_tensor_from(ctx, tg_shape2(rows, 5), xv);
        free(xv);
        tg_tensor_set_requires_grad(x2, true);
        y2 = tg_linear(ctx, x2, w, NULL);
        ck_assert_int_eq(tg_backward_with(ctx, y2, dy), TG_OK);
        tg_expect_close_f("dx", dx, x2->grad, x2->numel, 0, 0);
        free(dy);
        free(dx);
        tg_step_end(ctx);
        x = tg_tensor_new(ctx, shapes[si]);
        fill(&rng, x, -1, 1);
        tg_tensor_set_requires_grad(x, true);
        t[0] = x;
        tg_expect_gradcheck("linear (..., in)", ctx, linear_graph, NULL, t, 3);
        tg_ctx_free(ctx);
        tg_params_free(ps);
    }
}
END_TEST

/* ---------------------------------------------------------------- accumulation */

/* Parameters whose gradients already hold 0.5, and x used by two linears (tg_add): every
 * gradient must be the old value plus the true one. Reference in double. */
START_TEST(linear_accumulates) {
    enum { N = 3, IN = 5, OUT = 4 };
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "fc.weight", tg_shape2(OUT, IN));
    tg_tensor *b = tg_params_add(ps, "fc.bias", tg_shape1(OUT));
    fill(&rng, w, -1, 1);
    fill(&rng, b, -1, 1);
    for (int64_t i = 0; i < w->numel; i++) w->grad[i] = 0.5f;
    for (int64_t i = 0; i < b->numel; i++) b->grad[i] = 0.5f;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape2(N, IN));
    fill(&rng, x, -1, 1);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_add(ctx, tg_linear(ctx, x, w, b), tg_linear(ctx, x, w, b));
    tg_expect_ok("linear twice");
    float dy[N * OUT];
    tg_rng_fill_uniform(&rng, dy, N * OUT, -1, 1);
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);

    double dx[N * IN] = {0}, dw[OUT * IN], db[OUT];
    for (int i = 0; i < OUT * IN; i++) dw[i] = 0.5;
    for (int o = 0; o < OUT; o++) db[o] = 0.5;
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OUT; o++) {
            double g = 2.0 * dy[n * OUT + o]; /* two uses */
            db[o] += g;
            for (int i = 0; i < IN; i++) {
                dx[n * IN + i] += g * w->data[o * IN + i];
                dw[o * IN + i] += g * x->data[n * IN + i];
            }
        }
    }
    tg_expect_close("dx", x->grad, dx, N * IN, 1e-5, 1e-5);
    tg_expect_close("dweight", w->grad, dw, OUT * IN, 1e-5, 1e-5);
    tg_expect_close("dbias", b->grad, db, OUT, 1e-5, 1e-5);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- NULL gradients */

/* The kernel skips each NULL gradient and still fills (adds into) the others. */
START_TEST(linear_kernel_skips_null_grads) {
    const float x[2 * 3] = {1, 2, 3, -1, 0.5f, 2};
    const float w[2 * 3] = {0.5f, -1, 2, 1, 1, -0.5f};
    const float dy[2 * 2] = {1, -2, 0.5f, 3};
    /* dx = dy W, dW = dy^T x, db = column sums of dy, worked by hand. */
    const float want_dx[6] = {-1.5f, -3, 3, 3.25f, 2.5f, -0.5f};
    const float want_dw[6] = {0.5f, 2.25f, 4, -5, -2.5f, 0};
    const float want_db[2] = {1.5f, 1};
    for (int mask = 0; mask < 8; mask++) {
        float dx[6] = {0}, dw[6] = {0}, db[2] = {0};
        linear_backward_cpu(mask & 1 ? dx : NULL, mask & 2 ? dw : NULL, mask & 4 ? db : NULL,
                            dy, x, w, 2, 3, 2, false);
        const float zero[6] = {0};
        tg_expect_close_f("dx", dx, mask & 1 ? want_dx : zero, 6, 1e-6, 0);
        tg_expect_close_f("dweight", dw, mask & 2 ? want_dw : zero, 6, 1e-6, 0);
        tg_expect_close_f("dbias", db, mask & 4 ? want_db : zero, 2, 1e-6, 0);
    }
    float y[4];
    const float b[2] = {0.25f, -1};
    linear_forward_cpu(y, x, w, b, 2, 3, 2);
    const float want_y[4] = {4.75f, 0.5f, 3.25f, -2.5f};
    tg_expect_close_f("y", y, want_y, 4, 1e-6, 0);
}
END_TEST

/* On the tape: inputs that do not require grad get no gradient buffer. */
START_TEST(linear_tape_skips_frozen_inputs) {
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape2(3, 4));
    tg_tensor *w = tg_tensor_new(ctx, tg_shape2(2, 4));
    tg_tensor *b = tg_tensor_new(ctx, tg_shape1(2));
    fill(&rng, x, -1, 1);
    fill(&rng, w, -1, 1);
    fill(&rng, b, -1, 1);
    tg_tensor_set_requires_grad(w, true);
    tg_tensor *y = tg_linear(ctx, x, w, b);
    float dy[6] = {1, 1, 1, 1, 1, 1};
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
    ck_assert_ptr_null(x->grad);
    ck_assert_ptr_null(b->grad);
    ck_assert_ptr_nonnull(w->grad);
    double dw[8] = {0};
    for (int n = 0; n < 3; n++)
        for (int o = 0; o < 2; o++)
            for (int i = 0; i < 4; i++) dw[o * 4 + i] += x->data[n * 4 + i];
    tg_expect_close("dweight", w->grad, dw, 8, 1e-6, 1e-6);
    tg_ctx_free(ctx);

    /* No input requires grad: nothing is recorded. */
    ctx = tg_ctx_new(TG_DEVICE_CPU);
    x = tg_tensor_zeros(ctx, tg_shape2(1, 2));
    w = tg_tensor_zeros(ctx, tg_shape2(3, 2));
    ck_assert_ptr_nonnull(tg_linear(ctx, x, w, NULL));
    ck_assert_int_eq(tg_tape_length(ctx), 0);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- bad inputs */

typedef struct bad_setup {
    tg_ctx *ctx;
    tg_params *ps;
    tg_tensor *w, *b;
    int tape;
    size_t used;
    float w0, g0;
} bad_setup;

static bad_setup bad_begin(void) {
    bad_setup s;
    s.ps = tg_params_new(TG_DEVICE_CPU);
    s.w = tg_params_add(s.ps, "fc.weight", tg_shape2(4, 6));
    s.b = tg_params_add(s.ps, "fc.bias", tg_shape1(4));
    s.w->data[0] = 1.25f;
    s.w->grad[0] = 0.75f;
    s.w0 = s.w->data[0];
    s.g0 = s.w->grad[0];
    s.ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *warm = tg_tensor_zeros(s.ctx, tg_shape2(2, 6)); /* a recorded op first */
    tg_tensor_set_requires_grad(warm, true);
    ck_assert_ptr_nonnull(tg_linear(s.ctx, warm, s.w, s.b));
    s.tape = tg_tape_length(s.ctx);
    s.used = tg_ctx_arena_used(s.ctx);
    return s;
}

/* The failed call recorded nothing, allocated nothing and touched no parameter. */
static void bad_end(bad_setup *s, const char *what) {
    ck_assert_msg(tg_tape_length(s->ctx) == s->tape, "%s: tape grew", what);
    ck_assert_msg(tg_ctx_arena_used(s->ctx) == s->used, "%s: arena grew", what);
    ck_assert_msg(s->w->data[0] == s->w0 && s->w->grad[0] == s->g0, "%s: weight changed",
                  what);
    tg_ctx_free(s->ctx);
    tg_params_free(s->ps);
}

START_TEST(linear_bad_rank) {
    bad_setup s = bad_begin();
    tg_tensor *x4 = tg_tensor_zeros(s.ctx, tg_shape4(2, 6, 1, 1));
    s.used = tg_ctx_arena_used(s.ctx);
    ck_assert_ptr_null(tg_linear(s.ctx, x4, s.w, s.b));
    tg_expect_error("x rank 4", TG_ERR_SHAPE, "tg_linear: argument 'x'", "tg_flatten");
    tg_tensor *x1 = tg_tensor_zeros(s.ctx, tg_shape1(6));
    s.used = tg_ctx_arena_used(s.ctx);
    ck_assert_ptr_null(tg_linear(s.ctx, x1, s.w, s.b));
    tg_expect_error("x rank 1", TG_ERR_SHAPE, "tg_linear: argument 'x' has shape (6) (1 dims)",
                    "tg_reshape");
    tg_tensor *w1 = tg_tensor_zeros(s.ctx, tg_shape1(6));
    tg_tensor *x = tg_tensor_zeros(s.ctx, tg_shape2(2, 6));
    s.used = tg_ctx_arena_used(s.ctx);
    ck_assert_ptr_null(tg_linear(s.ctx, x, w1, NULL));
    tg_expect_error("weight rank 1", TG_ERR_SHAPE, "tg_linear: argument 'weight'", "(6)");
    bad_end(&s, "rank");
}
END_TEST

START_TEST(linear_bad_in_features) {
    bad_setup s = bad_begin();
    tg_tensor *x = tg_tensor_zeros(s.ctx, tg_shape2(2, 5));
    s.used = tg_ctx_arena_used(s.ctx);
    ck_assert_ptr_null(tg_linear(s.ctx, x, s.w, s.b));
    tg_expect_error("in mismatch", TG_ERR_SHAPE, "tg_linear: argument 'x' has shape (2, 5)",
                    "first with tg_flatten");
    bad_end(&s, "in mismatch");
}
END_TEST

START_TEST(linear_bad_bias) {
    bad_setup s = bad_begin();
    tg_tensor *x = tg_tensor_zeros(s.ctx, tg_shape2(2, 6));
    tg_tensor *b5 = tg_tensor_zeros(s.ctx, tg_shape1(5));
    tg_tensor *b2d = tg_tensor_zeros(s.ctx, tg_shape2(1, 4));
    s.used = tg_ctx_arena_used(s.ctx);
    ck_assert_ptr_null(tg_linear(s.ctx, x, s.w, b5));
    tg_expect_error("bias size", TG_ERR_SHAPE, "tg_linear: argument 'bias' has shape (5)",
                    "(4)");
    ck_assert_ptr_null(tg_linear(s.ctx, x, s.w, b2d));
    tg_expect_error("bias rank", TG_ERR_SHAPE, "tg_linear: argument 'bias' has shape (1, 4)",
                    NULL);
    bad_end(&s, "bias");
}
END_TEST

START_TEST(linear_bad_null) {
    bad_setup s = bad_begin();
    tg_tensor *x = tg_tensor_zeros(s.ctx, tg_shape2(2, 6));
    s.used = tg_ctx_arena_used(s.ctx);
    ck_assert_ptr_null(tg_linear(s.ctx, NULL, s.w, s.b));
    tg_expect_error("x NULL", TG_ERR_ARG, "tg_linear", "'x' is NULL");
    ck_assert_ptr_null(tg_linear(s.ctx, x, NULL, s.b));
    tg_expect_error("weight NULL", TG_ERR_ARG, "tg_linear", "'weight' is NULL");
    ck_assert_ptr_null(tg_linear(NULL, x, s.w, s.b));
    tg_expect_error("ctx NULL", TG_ERR_ARG, "tg_linear", "'ctx' is NULL");
    /* A NULL from an earlier failure keeps the first message. */
    ck_assert_ptr_null(tg_linear(s.ctx, tg_flatten(s.ctx, NULL), s.w, s.b));
    tg_expect_error("chained NULL", TG_ERR_ARG, "tg_flatten", NULL);
    bad_end(&s, "NULL");
}
END_TEST

Suite *linear_suite(void) {
    Suite *s = suite_create("linear");
    TCase *tc = tg_test_case("linear");
    tcase_add_test(tc, linear_golden_bias);
    tcase_add_test(tc, linear_golden_nobias);
    tcase_add_test(tc, linear_golden_wide);
    tcase_add_test(tc, linear_gradcheck_grid);
    tcase_add_test(tc, linear_leading_dims);
    tcase_add_test(tc, linear_accumulates);
    tcase_add_test(tc, linear_kernel_skips_null_grads);
    tcase_add_test(tc, linear_tape_skips_frozen_inputs);
    tcase_add_test(tc, linear_bad_rank);
    tcase_add_test(tc, linear_bad_in_features);
    tcase_add_test(tc, linear_bad_bias);
    tcase_add_test(tc, linear_bad_null);
    suite_add_tcase(s, tc);
    return s;
}
