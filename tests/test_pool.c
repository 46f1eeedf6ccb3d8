/*
 * tests/test_pool.c — global average pool, max pool 2d and avg pool 2d: PyTorch golden
 * values (forward and dx; square and non-square kernels, strides and paddings; max pool
 * on heavily tied input, where the first maximum must win as in PyTorch, and with NaN
 * and +-inf, which propagate as in PyTorch), finite
 * differences over kernel 2/3, stride 1/2, pad 0/1, odd and non-square sizes, batch 1
 * and 3, the threaded path against a scalar reference, accumulation, and bad input.
 */
#include "testutil.h"

#include "../ops/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct pool_case {
    int kind; /* 0 max, 1 avg, 2 global avg */
    tg_pool2d_opts opts;
} pool_case;

static tg_tensor *pool_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    pool_case *c = user;
    if (c->kind == 0) return tg_max_pool2d(ctx, in[0], c->opts);
    if (c->kind == 1) return tg_avg_pool2d(ctx, in[0], c->opts);
    return tg_global_avg_pool(ctx, in[0]);
}

static tg_pool2d_opts opts6(int kh, int kw, int sh, int sw, int ph, int pw) {
    return (tg_pool2d_opts){.kernel_h = kh, .kernel_w = kw, .stride_h = sh, .stride_w = sw,
                            .pad_h = ph, .pad_w = pw};
}

/* ---------------------------------------------------------------- golden */

static const struct {
    const char *name;
    int kh, kw, sh, sw, ph, pw;
} golden_configs[] = {
    {"k2s2p0", 2, 2, 2, 2, 0, 0},          {"k3s2p1", 3, 3, 2, 2, 1, 1},
    {"k3s1p1", 3, 3, 1, 1, 1, 1},          {"k2x3s1x2p1x0", 2, 3, 1, 2, 1, 0},
    {"k3x2s2x1p0x1", 3, 2, 2, 1, 0, 1},
};

/* kind 0 max / 1 avg on fixture input `src`, results under "<tag>.<config>.{y,dx}". */
static void check_golden(int kind, const char *src, const char *tag) {
    char key[96];
    tg_fixture *fx = tg_fixture_load("pool.bin");
    for (size_t i = 0; i < sizeof golden_configs / sizeof golden_configs[0]; i++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_fixture_tensor(ctx, fx, src, true);
        pool_case c = {kind, opts6(golden_configs[i].kh, golden_configs[i].kw,
                                   golden_configs[i].sh, golden_configs[i].sw,
                                   golden_configs[i].ph, golden_configs[i].pw)};
        tg_tensor *y = pool_graph(ctx, &x, &c);
        tg_expect_ok(golden_configs[i].name);
        snprintf(key, sizeof key, "%s.dout", golden_configs[i].name);
        tg_tensor *dout = tg_fixture_tensor(ctx, fx, key, false);
        ck_assert_int_eq(y->numel, dout->numel);
        ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
        /* Max pool selects and scatters: exact. Avg pool sums: float rounding. */
        double tol = kind == 0 ? 0 : 1e-6;
        snprintf(key, sizeof key, "%s.%s.y", tag, golden_configs[i].name);
        tg_shape ys;
        const double *want_y = tg_fixture_get(fx, key, &ys);
        ck_assert_msg(tg_shape_equal(ys, y->shape), "%s: output shape differs", key);
        tg_expect_close(key, y->data, want_y, y->numel, tol, tol);
        snprintf(key, sizeof key, "%s.%s.dx", tag, golden_configs[i].name);
        /* dx sums overlapping windows in float32 (PyTorch: float64 here). */
        tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 1e-6, 1e-6);
        tg_ctx_free(ctx);
    }
    tg_fixture_free(fx);
}

START_TEST(max_pool_golden) { check_golden(0, "x", "max"); }
END_TEST

/* Small integers, many ties per window: the gradient must go to the FIRST maximum. */
START_TEST(max_pool_golden_ties) { check_golden(0, "xt", "max_ties"); }
END_TEST

/* NaN and +-inf among ties: a window holding NaN gives NaN and sends its gradient to its
 * last NaN, as PyTorch; an all -inf window gives -inf (gradient to its first pixel). */
START_TEST(max_pool_golden_nan) { check_golden(0, "xn", "max_nan"); }
END_TEST

START_TEST(avg_pool_golden) { check_golden(1, "x", "avg"); }
END_TEST

START_TEST(global_avg_pool_golden) {
    tg_fixture *fx = tg_fixture_load("pool.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, "x", true);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "gap.dout", false);
    tg_tensor *y = tg_global_avg_pool(ctx, x);
    tg_expect_ok("global_avg_pool");
    ck_assert(tg_shape_equal(y->shape, tg_shape4(2, 3, 1, 1)));
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    tg_expect_close("gap.y", y->data, tg_fixture_get(fx, "gap.y", NULL), y->numel, 1e-6, 1e-6);
    tg_expect_close("gap.dx", x->grad, tg_fixture_get(fx, "gap.dx", NULL), x->numel, 1e-7,
                    1e-6);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}
END_TEST

/* Stride 0 means stride = kernel (PyTorch's default), and tg_pool2d_opts_make fills both
 * axes: max_pool2d(x, 2) is the k2s2p0 fixture. */
START_TEST(pool_opts_default_stride) {
    tg_pool2d_opts o = tg_pool2d_opts_make(3, 2, 1);
    ck_assert(o.kernel_h == 3 && o.kernel_w == 3 && o.stride_h == 2 && o.stride_w == 2 &&
              o.pad_h == 1 && o.pad_w == 1);
    tg_fixture *fx = tg_fixture_load("pool.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_fixture_tensor(ctx, fx, "x", false);
    tg_tensor *y = tg_max_pool2d(ctx, x, tg_pool2d_opts_make(2, 0, 0));
    tg_expect_ok("max_pool2d stride 0");
    ck_assert(tg_shape_equal(y->shape, tg_shape4(2, 3, 3, 3)));
    tg_expect_close("max.k2s2p0.y", y->data, tg_fixture_get(fx, "max.k2s2p0.y", NULL),
                    y->numel, 0, 0);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}
END_TEST

/* ---------------------------------------------------------------- finite differences */

/* Distinct values 0.05 apart (a shuffled ramp): the central differences (eps 1e-2) never
 * move a window's maximum. */
static tg_tensor *tie_free_tensor(tg_ctx *ctx, tg_rng *rng, tg_shape shape) {
    tg_tensor *t = tg_tensor_new(ctx, shape);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = 0.05f * (float)(i - t->numel / 2);
    for (int64_t i = t->numel - 1; i > 0; i--) {
        int64_t j = tg_rng_below(rng, i + 1);
        float v = t->data[i];
        t->data[i] = t->data[j];
        t->data[j] = v;
    }
    tg_tensor_set_requires_grad(t, true);
    return t;
}

START_TEST(pool_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape4(1, 2, 5, 7), tg_shape4(3, 1, 6, 5)};
    tg_rng rng;
    tg_rng_seed(&rng, 21);
    char what[128], sh[64];
    for (int kind = 0; kind <= 1; kind++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            for (int k = 2; k <= 3; k++) {
                for (int stride = 1; stride <= 2; stride++) {
                    for (int pad = 0; pad <= 1; pad++) {
                        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
                        tg_tensor *x = tie_free_tensor(ctx, &rng, shapes[s]);
                        pool_case c = {kind, tg_pool2d_opts_make(k, stride, pad)};
                        snprintf(what, sizeof what, "%s k%d s%d p%d %s", kind ? "avg" : "max",
                                 k, stride, pad, tg_shape_str(shapes[s], sh, sizeof sh));
                        tg_expect_gradcheck(what, ctx, pool_graph, &c, &x, 1);
                        tg_ctx_free(ctx);
                    }
                }
            }
        }
        /* Non-square kernel, stride and padding on a non-square image. */
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tie_free_tensor(ctx, &rng, tg_shape4(2, 2, 7, 4));
        pool_case c = {kind, opts6(3, 2, 1, 2, 1, 1)};
        tg_expect_gradcheck(kind ? "avg 3x2 s1x2 p1" : "max 3x2 s1x2 p1", ctx, pool_graph, &c,
                            &x, 1);
        tg_ctx_free(ctx);
    }
    tg_shape gshapes[] = {tg_shape4(1, 2, 3, 5), tg_shape4(3, 2, 1, 1), tg_shape4(2, 1, 4, 4)};
    for (size_t s = 0; s < sizeof gshapes / sizeof gshapes[0]; s++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tie_free_tensor(ctx, &rng, gshapes[s]);
        pool_case c = {2, {0}};
        snprintf(what, sizeof what, "global_avg_pool %s", tg_shape_str(gshapes[s], sh, sizeof sh));
        tg_expect_gradcheck(what, ctx, pool_graph, &c, &x, 1);
        tg_ctx_free(ctx);
    }
}
END_TEST

/* ---------------------------------------------------------------- scalar reference */

/* Kernels on (4, 16, 33, 35) (threaded path) against a plain scalar loop with the window
 * written out from its definition (padded coordinates, bounds test per tap). */
START_TEST(pool_kernels_match_reference) {
    pool2d_geom g = {.planes = 64, .H = 33, .W = 35, .kernel_h = 3, .kernel_w = 3,
                     .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    g.OH = (g.H + 2 - 3) / 2 + 1;
    g.OW = (g.W + 2 - 3) / 2 + 1;
    int64_t nin = g.planes * g.H * g.W, nout = g.planes * g.OH * g.OW;
    float *x = malloc((size_t)nin * sizeof *x), *y = malloc((size_t)nout * sizeof *y);
    float *dy = malloc((size_t)nout * sizeof *dy), *dx = calloc((size_t)nin, sizeof *dx);
    float *ref_y = malloc((size_t)nout * sizeof *ref_y);
    float *ref_dx = calloc((size_t)nin, sizeof *ref_dx);
    int32_t *argmax = malloc((size_t)nout * sizeof *argmax);
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    tg_rng_fill_normal(&rng, x, nin, 0, 1);
    tg_rng_fill_normal(&rng, dy, nout, 0, 1);
    for (int avg = 0; avg <= 1; avg++) {
        memset(dx, 0, (size_t)nin * sizeof *dx);
        memset(ref_dx, 0, (size_t)nin * sizeof *ref_dx);
        if (avg) {
            avg_pool2d_forward_cpu(y, x, &g);
            avg_pool2d_backward_cpu(dx, dy, &g, false);
        } else {
            max_pool2d_forward_cpu(y, argmax, x, &g);
            max_pool2d_backward_cpu(dx, dy, argmax, &g, false);
        }
        for (int64_t p = 0; p < g.planes; p++) {
            for (int64_t oh = 0; oh < g.OH; oh++) {
                for (int64_t ow = 0; ow < g.OW; ow++) {
                    float best = -INFINITY, sum = 0;
                    int64_t best_i = -1;
                    for (int i = 0; i < 9; i++) {
                        int64_t h = oh * 2 - 1 + i / 3, w = ow * 2 - 1 + i % 3;
                        if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
                        float v = x[(p * g.H + h) * g.W + w];
                        sum += v;
                        if (v > best) {
                            best = v;
                            best_i = (p * g.H + h) * g.W + w;
                        }
                    }
                    int64_t o = (p * g.OH + oh) * g.OW + ow;
                    ref_y[o] = avg ? sum / 9 : best;
                    for (int i = 0; i < 9 && avg; i++) {
                        int64_t h = oh * 2 - 1 + i / 3, w = ow * 2 - 1 + i % 3;
                        if (h < 0 || h >= g.H || w < 0 || w >= g.W) continue;
                        ref_dx[(p * g.H + h) * g.W + w] += dy[o] / 9;
                    }
                    if (!avg) ref_dx[best_i] += dy[o];
                }
            }
        }
        tg_expect_close_f(avg ? "avg y" : "max y", y, ref_y, nout, 1e-6, 1e-5);
        tg_expect_close_f(avg ? "avg dx" : "max dx", dx, ref_dx, nin, 1e-6, 1e-5);
    }
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(ref_y);
    free(ref_dx);
    free(argmax);
}
END_TEST

/* ---------------------------------------------------------------- accumulation */

/* x is a parameter whose gradient starts at 0.5: after backward it holds 0.5 plus
 * PyTorch's gradient, for each of the three ops. */
START_TEST(pool_backward_accumulates) {
    tg_fixture *fx = tg_fixture_load("pool.bin");
    const char *tags[3] = {"max.k3s2p1", "avg.k3s2p1", "gap"};
    for (int kind = 0; kind < 3; kind++) {
        char key[64];
        tg_params *ps = tg_params_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_params_add(ps, "x", tg_shape4(2, 3, 7, 6));
        tg_fixture_copy_into(fx, "x", x);
        for (int64_t i = 0; i < x->numel; i++) x->grad[i] = 0.5f;
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        pool_case c = {kind, tg_pool2d_opts_make(3, 2, 1)};
        tg_tensor *y = pool_graph(ctx, &x, &c);
        tg_tensor *dout = tg_fixture_tensor(ctx, fx, kind == 2 ? "gap.dout" : "k3s2p1.dout",
                                            false);
        ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
        snprintf(key, sizeof key, "%s.dx", tags[kind]);
        const double *g = tg_fixture_get(fx, key, NULL);
        double want[252];
        for (int i = 0; i < 252; i++) want[i] = g[i] + 0.5;
        tg_expect_close(key, x->grad, want, 252, 1e-6, 1e-6);
        tg_ctx_free(ctx);
        tg_params_free(ps);
    }
    tg_fixture_free(fx);
}
END_TEST

/* ---------------------------------------------------------------- bad input */

/* Refused with `status`, a message naming op and needles, x unchanged, nothing recorded. */
static void expect_refused(tg_ctx *ctx, tg_tensor *y, tg_tensor *x, const float *x0,
                           const char *what, tg_status status, const char *op,
                           const char *needle) {
    ck_assert_msg(y == NULL, "%s: expected NULL", what);
    tg_expect_error(what, status, op, needle);
    if (x) ck_assert_msg(memcmp(x->data, x0, (size_t)x->numel * sizeof *x0) == 0,
                         "%s: x changed", what);
    ck_assert_int_eq(tg_tape_length(ctx), 0);
}

START_TEST(pool_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 2);
    tg_tensor *x = tie_free_tensor(ctx, &rng, tg_shape4(1, 2, 4, 5));
    tg_tensor *x3 = tie_free_tensor(ctx, &rng, tg_shape3(2, 4, 5));
    tg_tensor *tiny = tie_free_tensor(ctx, &rng, tg_shape4(1, 1, 2, 2));
    float x0[40];
    memcpy(x0, x->data, sizeof x0);
    const char *ops[2] = {"tg_max_pool2d", "tg_avg_pool2d"};
    for (int kind = 0; kind <= 1; kind++) {
        const char *op = ops[kind];
        pool_case c = {kind, tg_pool2d_opts_make(2, 2, 0)};
        expect_refused(ctx, pool_graph(ctx, (tg_tensor *[]){NULL}, &c), NULL, NULL, "NULL x",
                       TG_ERR_ARG, op, "'x'");
        expect_refused(ctx, kind ? tg_avg_pool2d(NULL, x, c.opts) : tg_max_pool2d(NULL, x, c.opts),
                       x, x0, "NULL ctx", TG_ERR_ARG, op, "'ctx'");
        expect_refused(ctx, pool_graph(ctx, &x3, &c), NULL, NULL, "3-D x", TG_ERR_SHAPE, op,
                       "'x' has shape (2, 4, 5)");
        c.opts = opts6(0, 2, 1, 1, 0, 0);
        expect_refused(ctx, pool_graph(ctx, &x, &c), x, x0, "kernel 0", TG_ERR_ARG, op,
                       "kernel 0x2");
        c.opts = opts6(2, 2, -1, 1, 0, 0);
        expect_refused(ctx, pool_graph(ctx, &x, &c), x, x0, "stride -1", TG_ERR_ARG, op,
                       "stride -1x1");
        c.opts = opts6(3, 3, 1, 1, 2, 1);
        expect_refused(ctx, pool_graph(ctx, &x, &c), x, x0, "pad 2 > 3/2", TG_ERR_ARG, op,
                       "at most half the kernel");
        c.opts = opts6(2, 2, 1, 1, 0, -1);
        expect_refused(ctx, pool_graph(ctx, &x, &c), x, x0, "pad -1", TG_ERR_ARG, op,
                       "padding 0x-1");
        c.opts = tg_pool2d_opts_make(3, 1, 0);
        expect_refused(ctx, pool_graph(ctx, &tiny, &c), tiny, tiny->data, "output 0x0",
                       TG_ERR_SHAPE, op, "(1, 1, 2, 2), too small for kernel 3x3");
        /* The same kernel with padding 1 fits: a 2x2 output. */
        c.opts = tg_pool2d_opts_make(3, 1, 1);
        tg_tensor *y = pool_graph(ctx, &tiny, &c);
        tg_expect_ok("2x2 with kernel 3 pad 1");
        ck_assert(tg_shape_equal(y->shape, tg_shape4(1, 1, 2, 2)));
        tg_step_end(ctx);
        x = tie_free_tensor(ctx, &rng, tg_shape4(1, 2, 4, 5));
        x3 = tie_free_tensor(ctx, &rng, tg_shape3(2, 4, 5));
        tiny = tie_free_tensor(ctx, &rng, tg_shape4(1, 1, 2, 2));
        memcpy(x0, x->data, sizeof x0);
    }
    pool_case g = {2, {0}};
    expect_refused(ctx, pool_graph(ctx, &x3, &g), x3, x3->data, "gap 3-D x", TG_ERR_SHAPE,
                   "tg_global_avg_pool", "'x' has shape (2, 4, 5)");
    expect_refused(ctx, tg_global_avg_pool(ctx, NULL), NULL, NULL, "gap NULL x", TG_ERR_ARG,
                   "tg_global_avg_pool", "'x'");
    expect_refused(ctx, tg_global_avg_pool(NULL, x), x, x0, "gap NULL ctx", TG_ERR_ARG,
                   "tg_global_avg_pool", "'ctx'");
    tg_ctx_free(ctx);
}
END_TEST

Suite *pool_suite(void) {
    Suite *s = suite_create("pool");
    TCase *tc = tg_test_case("pool");
    tcase_add_test(tc, max_pool_golden);
    tcase_add_test(tc, max_pool_golden_ties);
    tcase_add_test(tc, max_pool_golden_nan);
    tcase_add_test(tc, avg_pool_golden);
    tcase_add_test(tc, global_avg_pool_golden);
    tcase_add_test(tc, pool_opts_default_stride);
    tcase_add_test(tc, pool_gradcheck_grid);
    tcase_add_test(tc, pool_kernels_match_reference);
    tcase_add_test(tc, pool_backward_accumulates);
    tcase_add_test(tc, pool_bad_input);
    suite_add_tcase(s, tc);
    return s;
}
