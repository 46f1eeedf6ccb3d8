/*
 * tests/test_batchnorm.c — batchnorm2d: PyTorch golden values (training and eval, affine
 * and not, with and without running statistics; forward, dx, dweight, dbias and the
 * running statistics over two training steps in a row), finite differences over modes
 * and shapes, a double-precision reference on a tensor large enough to run threaded,
 * accumulation, NULL-gradient skipping, and bad input that must leave the running
 * statistics untouched.
 */
#include "testutil.h"

#include "../ops/batchnorm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- golden */

typedef struct golden_case {
    const char *name;
    bool training, affine, track;
    int steps;
    float momentum[2], eps[2];
} golden_case;

static void check_golden(const golden_case *gc) {
    char key[96];
    tg_fixture *fx = tg_fixture_load("batchnorm.bin");
    snprintf(key, sizeof key, "%s.0.x", gc->name);
    tg_shape xs;
    tg_fixture_get(fx, key, &xs);
    int64_t C = xs.dim[1];
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = NULL, *b = NULL, *rm = NULL, *rv = NULL;
    if (gc->affine) {
        w = tg_params_add(ps, "bn.weight", tg_shape1(C));
        b = tg_params_add(ps, "bn.bias", tg_shape1(C));
        snprintf(key, sizeof key, "%s.w", gc->name);
        tg_fixture_copy_into(fx, key, w);
        snprintf(key, sizeof key, "%s.b", gc->name);
        tg_fixture_copy_into(fx, key, b);
    }
    if (gc->track) {
        rm = tg_params_add_buffer(ps, "bn.running_mean", tg_shape1(C), 0.0f);
        rv = tg_params_add_buffer(ps, "bn.running_var", tg_shape1(C), 1.0f);
        snprintf(key, sizeof key, "%s.rm0", gc->name);
        tg_fixture_copy_into(fx, key, rm);
        snprintf(key, sizeof key, "%s.rv0", gc->name);
        tg_fixture_copy_into(fx, key, rv);
    }
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    for (int s = 0; s < gc->steps; s++) {
        tg_params_zero_grad(ps);
        snprintf(key, sizeof key, "%s.%d.x", gc->name, s);
        tg_tensor *x = tg_fixture_tensor(ctx, fx, key, true);
        snprintf(key, sizeof key, "%s.%d.dout", gc->name, s);
        tg_tensor *dout = tg_fixture_tensor(ctx, fx, key, false);
        tg_tensor *y = tg_batchnorm2d(ctx, x, w, b, rm, rv, gc->training, gc->momentum[s],
                                      gc->eps[s]);
        tg_expect_ok(gc->name);
        ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
        snprintf(key, sizeof key, "%s.%d.y", gc->name, s);
        tg_expect_close(key, y->data, tg_fixture_get(fx, key, NULL), y->numel, 1e-5, 1e-5);
        snprintf(key, sizeof key, "%s.%d.dx", gc->name, s);
        tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 1e-5, 1e-4);
        if (gc->affine) {
            snprintf(key, sizeof key, "%s.%d.dw", gc->name, s);
            tg_expect_close(key, w->grad, tg_fixture_get(fx, key, NULL), C, 1e-4, 1e-5);
            snprintf(key, sizeof key, "%s.%d.db", gc->name, s);
            tg_expect_close(key, b->grad, tg_fixture_get(fx, key, NULL), C, 1e-4, 1e-5);
        }
        if (gc->track) {
            /* Updated after a training step (accumulating over steps), unchanged in eval. */
            snprintf(key, sizeof key, "%s.%d.rm", gc->name, s);
            tg_expect_close(key, rm->data, tg_fixture_get(fx, key, NULL), C, 1e-6, 1e-6);
            snprintf(key, sizeof key, "%s.%d.rv", gc->name, s);
            tg_expect_close(key, rv->data, tg_fixture_get(fx, key, NULL), C, 1e-6, 1e-6);
        }
        tg_step_end(ctx);
    }
    tg_ctx_free(ctx);
    tg_params_free(ps);
    tg_fixture_free(fx);
}

/* Two training steps in a row (momentum 0.1 then 0.25, eps 1e-5 then 1e-3). */
START_TEST(bn_golden_train_two_steps) {
    golden_case gc = {"train", true, true, true, 2, {0.1f, 0.25f}, {1e-5f, 1e-3f}};
    check_golden(&gc);
}
END_TEST

START_TEST(bn_golden_eval) {
    golden_case gc = {"eval", false, true, true, 1, {0.1f, 0}, {1e-5f, 0}};
    check_golden(&gc);
}
END_TEST

/* affine = False, batch 1 (H * W = 20 values per channel), two steps. */
START_TEST(bn_golden_noaffine_batch1) {
    golden_case gc = {"noaffine", true, false, true, 2, {0.1f, 0.1f}, {1e-5f, 1e-5f}};
    check_golden(&gc);
}
END_TEST

START_TEST(bn_golden_eval_noaffine) {
    golden_case gc = {"eval_noaffine", false, false, true, 1, {0.1f, 0}, {1e-5f, 0}};
    check_golden(&gc);
}
END_TEST

/* track_running_stats = False: running statistics NULL in training. */
START_TEST(bn_golden_no_running_stats) {
    golden_case gc = {"notrack", true, true, false, 1, {0.1f, 0}, {1e-5f, 0}};
    check_golden(&gc);
}
END_TEST

/* ---------------------------------------------------------------- finite differences */

typedef struct bn_case {
    bool training;
    tg_tensor *rm, *rv;
} bn_case;

static tg_tensor *bn_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    bn_case *c = user;
    return tg_batchnorm2d(ctx, in[0], in[1], in[2], c->rm, c->rv, c->training, 0.1f, 1e-5f);
}

static tg_tensor *random_tensor(tg_ctx *ctx, tg_rng *rng, tg_shape shape, float lo, float hi,
                                bool requires_grad) {
    tg_tensor *t = tg_tensor_new(ctx, shape);
    tg_rng_fill_uniform(rng, t->data, t->numel, lo, hi);
    tg_tensor_set_requires_grad(t, requires_grad);
    return t;
}

/* Training and eval, affine and not; batch 1 with H * W > 1, batch > 1 with H * W = 1,
 * odd and non-square planes. */
START_TEST(bn_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape4(1, 2, 3, 5), tg_shape4(3, 2, 5, 3), tg_shape4(4, 3, 1, 1),
                         tg_shape4(2, 1, 2, 7)};
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    char what[96];
    for (int training = 0; training <= 1; training++) {
        for (int affine = 0; affine <= 1; affine++) {
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
                int64_t C = shapes[s].dim[1];
                tg_tensor *in[3] = {random_tensor(ctx, &rng, shapes[s], -3, 3, true), NULL,
                                    NULL};
                if (affine) {
                    in[1] = random_tensor(ctx, &rng, tg_shape1(C), 0.5f, 1.5f, true);
                    in[2] = random_tensor(ctx, &rng, tg_shape1(C), -1, 1, true);
                }
                bn_case c = {training == 1, random_tensor(ctx, &rng, tg_shape1(C), -1, 1, false),
                             random_tensor(ctx, &rng, tg_shape1(C), 0.5f, 2, false)};
                char sh[64];
                snprintf(what, sizeof what, "batchnorm %s %s %s", training ? "train" : "eval",
                         affine ? "affine" : "no-affine", tg_shape_str(shapes[s], sh, sizeof sh));
                tg_expect_gradcheck(what, ctx, bn_graph, &c, in, 3);
                tg_ctx_free(ctx);
            }
        }
    }
}
END_TEST

/* ---------------------------------------------------------------- double reference */

/* Kernels on (2, 8, 64, 65) (threaded path) against a double-precision reference. */
START_TEST(bn_kernels_match_double_reference) {
    const int64_t N = 2, C = 8, HW = 64 * 65, n = N * HW, total = N * C * HW;
    float *x = malloc((size_t)total * sizeof *x), *dy = malloc((size_t)total * sizeof *dy);
    float *y = malloc((size_t)total * sizeof *y), *dx = calloc((size_t)total, sizeof *dx);
    double *want_y = malloc((size_t)total * sizeof *want_y);
    double *want_dx = malloc((size_t)total * sizeof *want_dx);
    float w[8], bias[8], mean[8], var[8], rstd[8], dw[8] = {0}, db[8] = {0};
    double want_dw[8], want_db[8];
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_rng_fill_normal(&rng, x, total, 3.0f, 2.0f);
    tg_rng_fill_normal(&rng, dy, total, 0.0f, 1.0f);
    tg_rng_fill_uniform(&rng, w, C, 0.5f, 1.5f);
    tg_rng_fill_uniform(&rng, bias, C, -1, 1);
    batchnorm_stats_cpu(mean, var, x, N, C, HW);
    for (int64_t c = 0; c < C; c++) rstd[c] = 1.0f / sqrtf(var[c] + 1e-5f);
    batchnorm_forward_cpu(y, x, mean, rstd, w, bias, N, C, HW);
    batchnorm_backward_cpu(dx, dw, db, dy, x, mean, rstd, w, N, C, HW, true);
    for (int64_t c = 0; c < C; c++) {
        double m = 0, v = 0, sdy = 0, sdyx = 0;
        for (int64_t b = 0; b < N; b++)
            for (int64_t i = 0; i < HW; i++) m += x[(b * C + c) * HW + i];
        m /= (double)n;
        for (int64_t b = 0; b < N; b++)
            for (int64_t i = 0; i < HW; i++) v += pow(x[(b * C + c) * HW + i] - m, 2);
        v /= (double)n;
        double r = 1 / sqrt(v + 1e-5);
        ck_assert_msg(fabs(mean[c] - m) < 1e-5 && fabs(var[c] - v) < 1e-5 * v,
                      "channel %lld stats: got %g %g want %g %g", (long long)c, mean[c],
                      var[c], m, v);
        for (int64_t b = 0; b < N; b++) {
            for (int64_t i = 0; i < HW; i++) {
                int64_t k = (b * C + c) * HW + i;
                double xhat = (x[k] - m) * r;
                want_y[k] = xhat * w[c] + bias[c];
                sdy += dy[k];
                sdyx += dy[k] * xhat;
            }
        }
        want_dw[c] = sdyx;
        want_db[c] = sdy;
        for (int64_t b = 0; b < N; b++) {
            for (int64_t i = 0; i < HW; i++) {
                int64_t k = (b * C + c) * HW + i;
                double xhat = (x[k] - m) * r;
                want_dx[k] = w[c] * r * (dy[k] - sdy / (double)n - xhat * sdyx / (double)n);
            }
        }
    }
    tg_expect_close("y", y, want_y, total, 1e-5, 1e-5);
    tg_expect_close("dx", dx, want_dx, total, 1e-6, 1e-4);
    tg_expect_close("dweight", dw, want_dw, C, 1e-3, 1e-5);
    tg_expect_close("dbias", db, want_db, C, 1e-3, 1e-5);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(want_y);
    free(want_dx);
}
END_TEST

/* ---------------------------------------------------------------- accumulation, NULL */

/* Backward adds: x, weight and bias are parameters whose gradients start at 0.25 (and at
 * -1 for dx); after backward each holds that value plus PyTorch's gradient. */
START_TEST(bn_backward_accumulates) {
    tg_fixture *fx = tg_fixture_load("batchnorm.bin");
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_params_add(ps, "x", tg_shape4(3, 4, 5, 7));
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(4));
    tg_tensor *b = tg_params_add(ps, "b", tg_shape1(4));
    tg_tensor *rm = tg_params_add_buffer(ps, "rm", tg_shape1(4), 0);
    tg_tensor *rv = tg_params_add_buffer(ps, "rv", tg_shape1(4), 1);
    tg_fixture_copy_into(fx, "train.0.x", x);
    tg_fixture_copy_into(fx, "train.w", w);
    tg_fixture_copy_into(fx, "train.b", b);
    tg_fixture_copy_into(fx, "train.rm0", rm);
    tg_fixture_copy_into(fx, "train.rv0", rv);
    for (int64_t i = 0; i < x->numel; i++) x->grad[i] = -1.0f;
    for (int c = 0; c < 4; c++) w->grad[c] = b->grad[c] = 0.25f;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "train.0.dout", false);
    tg_tensor *y = tg_batchnorm2d(ctx, x, w, b, rm, rv, true, 0.1f, 1e-5f);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    const double *gdx = tg_fixture_get(fx, "train.0.dx", NULL);
    const double *gdw = tg_fixture_get(fx, "train.0.dw", NULL);
    const double *gdb = tg_fixture_get(fx, "train.0.db", NULL);
    double want_dx[420], want_dw[4], want_db[4];
    for (int i = 0; i < 420; i++) want_dx[i] = gdx[i] - 1.0;
    for (int c = 0; c < 4; c++) {
        want_dw[c] = gdw[c] + 0.25;
        want_db[c] = gdb[c] + 0.25;
    }
    tg_expect_close("dx", x->grad, want_dx, 420, 1e-5, 1e-4);
    tg_expect_close("dweight", w->grad, want_dw, 4, 1e-4, 1e-5);
    tg_expect_close("dbias", b->grad, want_db, 4, 1e-4, 1e-5);
    tg_expect_close("running_mean", rm->data, tg_fixture_get(fx, "train.0.rm", NULL), 4, 1e-6,
                    1e-6);
    tg_ctx_free(ctx);
    tg_params_free(ps);
    tg_fixture_free(fx);
}
END_TEST

/* x does not require grad: only dweight and dbias are computed, x gets no gradient. The
 * kernel itself skips every NULL gradient. */
START_TEST(bn_null_grads_skipped) {
    tg_fixture *fx = tg_fixture_load("batchnorm.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, "eval.0.x", false);
    tg_tensor *w = tg_fixture_tensor(ctx, fx, "eval.w", true);
    tg_tensor *b = tg_fixture_tensor(ctx, fx, "eval.b", false);
    tg_tensor *rm = tg_fixture_tensor(ctx, fx, "eval.rm0", false);
    tg_tensor *rv = tg_fixture_tensor(ctx, fx, "eval.rv0", false);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "eval.0.dout", false);
    tg_tensor *y = tg_batchnorm2d(ctx, x, w, b, rm, rv, false, 0.1f, 1e-5f);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    ck_assert_ptr_null(x->grad);
    ck_assert_ptr_null(b->grad);
    tg_expect_close("dweight", w->grad, tg_fixture_get(fx, "eval.0.dw", NULL), 4, 1e-4, 1e-5);

    float mean[4], rstd[4], db[4] = {0};
    for (int c = 0; c < 4; c++) {
        mean[c] = rm->data[c];
        rstd[c] = 1.0f / sqrtf(rv->data[c] + 1e-5f);
    }
    batchnorm_backward_cpu(NULL, NULL, db, dout->data, x->data, mean, rstd, w->data, 3, 4, 35,
                           false);
    tg_expect_close("dbias (kernel)", db, tg_fixture_get(fx, "eval.0.db", NULL), 4, 1e-4, 1e-5);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}
END_TEST

/* ---------------------------------------------------------------- bad input */

typedef struct bad_env {
    tg_ctx *ctx;
    tg_params *ps;
    tg_tensor *x, *w, *b, *rm, *rv;
    float rm0[4], rv0[4];
} bad_env;

static void bad_env_init(bad_env *e) {
    e->ctx = tg_ctx_new(TG_DEVICE_CPU);
    e->ps = tg_params_new(TG_DEVICE_CPU);
    e->w = tg_params_add(e->ps, "bn.weight", tg_shape1(4));
    e->b = tg_params_add(e->ps, "bn.bias", tg_shape1(4));
    e->rm = tg_params_add_buffer(e->ps, "bn.running_mean", tg_shape1(4), 0.5f);
    e->rv = tg_params_add_buffer(e->ps, "bn.running_var", tg_shape1(4), 2.0f);
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    e->x = random_tensor(e->ctx, &rng, tg_shape4(2, 4, 3, 3), -1, 1, true);
    memcpy(e->rm0, e->rm->data, sizeof e->rm0);
    memcpy(e->rv0, e->rv->data, sizeof e->rv0);
}

/* The call failed with `status` and a message naming the op and the needle; the running
 * statistics and the tape are as before. */
static void expect_refused(bad_env *e, tg_tensor *y, const char *what, tg_status status,
                           const char *needle1, const char *needle2) {
    ck_assert_msg(y == NULL, "%s: expected NULL", what);
    ck_assert_msg(strstr(tg_error_message(), "tg_batchnorm2d") != NULL,
                  "%s: message lacks the op name: %s", what, tg_error_message());
    tg_expect_error(what, status, needle1, needle2);
    ck_assert_msg(memcmp(e->rm->data, e->rm0, sizeof e->rm0) == 0 &&
                      memcmp(e->rv->data, e->rv0, sizeof e->rv0) == 0,
                  "%s: running statistics changed", what);
    ck_assert_int_eq(tg_tape_length(e->ctx), 0);
}

static void bad_env_free(bad_env *e) {
    tg_ctx_free(e->ctx);
    tg_params_free(e->ps);
}

START_TEST(bn_bad_input) {
    bad_env e;
    bad_env_init(&e);
    tg_ctx *ctx = e.ctx;
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    tg_tensor *x3 = random_tensor(ctx, &rng, tg_shape3(2, 4, 9), -1, 1, true);
    tg_tensor *v5 = random_tensor(ctx, &rng, tg_shape1(5), 0, 1, false);
    tg_tensor *one = random_tensor(ctx, &rng, tg_shape4(1, 4, 1, 1), -1, 1, true);
    tg_tensor *trainable = tg_params_add(e.ps, "oops", tg_shape1(4));

    expect_refused(&e, tg_batchnorm2d(NULL, e.x, e.w, e.b, e.rm, e.rv, true, 0.1f, 1e-5f),
                   "NULL ctx", TG_ERR_ARG, "'ctx'", NULL);
    expect_refused(&e, tg_batchnorm2d(ctx, NULL, e.w, e.b, e.rm, e.rv, true, 0.1f, 1e-5f),
                   "NULL x", TG_ERR_ARG, "'x'", NULL);
    expect_refused(&e, tg_batchnorm2d(ctx, x3, e.w, e.b, e.rm, e.rv, true, 0.1f, 1e-5f),
                   "3-D x", TG_ERR_SHAPE, "'x'", "(2, 4, 9)");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, v5, e.b, e.rm, e.rv, true, 0.1f, 1e-5f),
                   "weight (5)", TG_ERR_SHAPE, "'weight' has shape (5)", "(2, 4, 3, 3)");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, v5, e.rm, e.rv, true, 0.1f, 1e-5f),
                   "bias (5)", TG_ERR_SHAPE, "'bias' has shape (5)", "(2, 4, 3, 3)");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, v5, e.rv, true, 0.1f, 1e-5f),
                   "running_mean (5)", TG_ERR_SHAPE, "'running_mean' has shape (5)", "(4)");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, e.rm, v5, true, 0.1f, 1e-5f),
                   "running_var (5)", TG_ERR_SHAPE, "'running_var' has shape (5)", "(4)");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, e.rm, NULL, true, 0.1f, 1e-5f),
                   "running_var NULL only", TG_ERR_ARG, "'running_var' is NULL", NULL);
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, trainable, e.rv, true, 0.1f, 1e-5f),
                   "trainable running_mean", TG_ERR_ARG, "'running_mean' requires grad",
                   "tg_params_add_buffer");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, e.rm, e.rm, true, 0.1f, 1e-5f),
                   "aliased running stats", TG_ERR_ARG, "distinct", NULL);
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, NULL, NULL, false, 0.1f, 1e-5f),
                   "eval without running stats", TG_ERR_ARG, "'running_mean'", "eval");
    expect_refused(&e, tg_batchnorm2d(ctx, one, e.w, e.b, e.rm, e.rv, true, 0.1f, 1e-5f),
                   "one value per channel", TG_ERR_SHAPE, "more than 1 value per channel",
                   "(1, 4, 1, 1)");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, e.rm, e.rv, true, 1.5f, 1e-5f),
                   "momentum 1.5", TG_ERR_ARG, "'momentum'", "1.5");
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, e.rm, e.rv, true, NAN, 1e-5f),
                   "momentum NaN", TG_ERR_ARG, "'momentum'", NULL);
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, e.rm, e.rv, true, 0.1f, -1.0f),
                   "eps -1", TG_ERR_ARG, "'eps'", NULL);
    expect_refused(&e, tg_batchnorm2d(ctx, e.x, e.w, e.b, e.rm, e.rv, true, 0.1f, INFINITY),
                   "eps inf", TG_ERR_ARG, "'eps'", NULL);

    /* Eval with one value per channel is fine (only training needs a batch). */
    tg_tensor *y = tg_batchnorm2d(ctx, one, e.w, e.b, e.rm, e.rv, false, 0.1f, 1e-5f);
    tg_expect_ok("eval with one value per channel");
    ck_assert_ptr_nonnull(y);
    bad_env_free(&e);
}
END_TEST

/* A training forward refused by the tape (already replayed) must not touch the running
 * statistics either: the update happens only when the op really runs. */
START_TEST(bn_refused_by_tape_keeps_running_stats) {
    bad_env e;
    bad_env_init(&e);
    tg_tensor *y = tg_batchnorm2d(e.ctx, e.x, e.w, e.b, e.rm, e.rv, true, 0.1f, 1e-5f);
    tg_expect_ok("first forward");
    float dout[72];
    for (int i = 0; i < 72; i++) dout[i] = 1.0f;
    ck_assert_int_eq(tg_backward_with(e.ctx, y, dout), TG_OK);
    memcpy(e.rm0, e.rm->data, sizeof e.rm0);
    memcpy(e.rv0, e.rv->data, sizeof e.rv0);
    ck_assert_msg(e.rm0[0] != 0.5f, "the first training forward updated nothing");
    y = tg_batchnorm2d(e.ctx, e.x, e.w, e.b, e.rm, e.rv, true, 0.1f, 1e-5f);
    ck_assert_ptr_null(y);
    tg_expect_error("tape consumed", TG_ERR_STATE, "batchnorm2d", "tg_step_end");
    ck_assert_msg(memcmp(e.rm->data, e.rm0, sizeof e.rm0) == 0 &&
                      memcmp(e.rv->data, e.rv0, sizeof e.rv0) == 0,
                  "running statistics changed by a refused call");
    bad_env_free(&e);
}
END_TEST

Suite *batchnorm_suite(void) {
    Suite *s = suite_create("batchnorm");
    TCase *tc = tg_test_case("batchnorm");
    tcase_add_test(tc, bn_golden_train_two_steps);
    tcase_add_test(tc, bn_golden_eval);
    tcase_add_test(tc, bn_golden_noaffine_batch1);
    tcase_add_test(tc, bn_golden_eval_noaffine);
    tcase_add_test(tc, bn_golden_no_running_stats);
    tcase_add_test(tc, bn_gradcheck_grid);
    tcase_add_test(tc, bn_kernels_match_double_reference);
    tcase_add_test(tc, bn_backward_accumulates);
    tcase_add_test(tc, bn_null_grads_skipped);
    tcase_add_test(tc, bn_bad_input);
    tcase_add_test(tc, bn_refused_by_tape_keeps_running_stats);
    suite_add_tcase(s, tc);
    return s;
}
