/*
 * tests/test_fresh_grads.c — fresh gradient buffers (tg_grad_fresh, include/tapegrad.h
 * THE CONTRACT): which inputs the tape hands over uninitialised, and that every CPU
 * convolution path writes such a dx whole, bit for bit what it adds onto zeros, with any
 * thread count.
 */
#include "testutil.h"

#include "../ops/activation.h"
#include "../ops/conv2d.h"
#include "../ops/linear.h"
#include "../ops/loss.h"
#include "../ops/pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the tape's rules */

/* y = a * b element-wise. Declares input 0 (a) as written when fresh, not b. Its backward
 * logs what it was handed. */
static struct {
    int calls;
    bool fresh[8][2];
    bool b_zero[8]; /* dinputs[1], when given, arrived all zero */
} probe_log;

static tg_status probe_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const float *a = rec->inputs[0]->data, *b = rec->inputs[1]->data;
    for (int64_t i = 0; i < rec->out->numel; i++) rec->out->data[i] = a[i] * b[i];
    return TG_OK;
}

static tg_status probe_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                const float *dout) {
    (void)ctx;
    int k = probe_log.calls++;
    ck_assert_int_lt(k, 8);
    const float *a = rec->inputs[0]->data, *b = rec->inputs[1]->data;
    const int64_t n = rec->out->numel;
    probe_log.fresh[k][0] = tg_grad_fresh(rec, 0);
    probe_log.fresh[k][1] = tg_grad_fresh(rec, 1);
    probe_log.b_zero[k] = true;
    for (int64_t i = 0; dinputs[1] && i < n; i++) probe_log.b_zero[k] &= dinputs[1][i] == 0.0f;
    /* Only the declared input may be fresh; it is then written, never added to. When the
     * same tensor is both inputs, the two contributions go to one buffer and add. */
    if (dinputs[0] && tg_grad_fresh(rec, 0))
        for (int64_t i = 0; i < n; i++) dinputs[0][i] = dout[i] * b[i];
    else if (dinputs[0])
        for (int64_t i = 0; i < n; i++) dinputs[0][i] += dout[i] * b[i];
    for (int64_t i = 0; dinputs[1] && i < n; i++) dinputs[1][i] += dout[i] * a[i];
    return TG_OK;
}

static const tg_op probe_op = {
    .name = "probe_mul",
    .forward = {[TG_DEVICE_CPU] = probe_forward},
    .backward = {[TG_DEVICE_CPU] = probe_backward},
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* a only */
};

static tg_tensor *probe(tg_ctx *ctx, tg_tensor *a, tg_tensor *b) {
    tg_tensor *in[2] = {a, b};
    return tg_op_apply(ctx, &probe_op, in, 2, a->shape, NULL, 0, NULL);
}

static tg_tensor *leaf(tg_ctx *ctx, const float *v) {
    tg_tensor *t = tg_tensor_from(ctx, tg_shape1(4), v);
    tg_tensor_set_requires_grad(t, true);
    return t;
}

static const float XV[4] = {0.5f, -1.25f, 2, 3}, WV[4] = {-2, 0.75f, 1.5f, -0.5f},
                   UV[4] = {1, 2, -3, 0.25f}, ONES[4] = {1, 1, 1, 1};

START_TEST(fresh_first_gradient_only) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    /* One consumer: x's buffer is fresh (written), w's is zeroed (not declared). */
    memset(&probe_log, 0, sizeof probe_log);
    tg_tensor *x = leaf(ctx, XV), *w = leaf(ctx, WV);
    ck_assert_int_eq(tg_backward_with(ctx, probe(ctx, x, w), ONES), TG_OK);
    ck_assert_int_eq(probe_log.calls, 1);
    ck_assert(probe_log.fresh[0][0]);
    ck_assert(!probe_log.fresh[0][1]);
    ck_assert(probe_log.b_zero[0]);
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq(x->grad[i], WV[i]);
        ck_assert_float_eq(w->grad[i], XV[i]);
    }
    tg_step_end(ctx);

    /* Fan-out: x feeds two probes. The backward meets the later one first (fresh, it
     * writes) and the earlier one second (not fresh, it adds). */
    memset(&probe_log, 0, sizeof probe_log);
    x = leaf(ctx, XV);
    w = tg_tensor_from(ctx, tg_shape1(4), WV);
    tg_tensor *u = tg_tensor_from(ctx, tg_shape1(4), UV);
    tg_tensor *z = tg_add(ctx, probe(ctx, x, w), probe(ctx, x, u));
    ck_assert_int_eq(tg_backward_with(ctx, z, ONES), TG_OK);
    ck_assert_int_eq(probe_log.calls, 2);
    ck_assert(probe_log.fresh[0][0]);
    ck_assert(!probe_log.fresh[1][0]);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(x->grad[i], WV[i] + UV[i]);
    tg_step_end(ctx);

    /* The same tensor as both inputs: never fresh (its two contributions share a buffer). */
    memset(&probe_log, 0, sizeof probe_log);
    x = leaf(ctx, XV);
    ck_assert_int_eq(tg_backward_with(ctx, probe(ctx, x, x), ONES), TG_OK);
    ck_assert(!probe_log.fresh[0][0] && !probe_log.fresh[0][1]);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(x->grad[i], 2 * XV[i]);
    tg_step_end(ctx);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(fresh_never_for_parameters) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *p = tg_params_add(ps, "p", tg_shape1(4));
    ck_assert_ptr_nonnull(p);
    memcpy(p->data, XV, sizeof XV);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_tensor_from(ctx, tg_shape1(4), WV);
    /* A gradient from before (accumulation over two backward passes) must survive. */
    for (int i = 0; i < 4; i++) p->grad[i] = 10;
    memset(&probe_log, 0, sizeof probe_log);
    ck_assert_int_eq(tg_backward_with(ctx, probe(ctx, p, w), ONES), TG_OK);
    ck_assert(!probe_log.fresh[0][0]);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(p->grad[i], 10 + WV[i]);
    tg_step_end(ctx);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- the conv kernels */

static conv2d_geom geom(int64_t N, int64_t C_in, int64_t H, int64_t W, int64_t C_out, int k,
                        int stride, int pad, int groups) {
    conv2d_geom g = {.N = N, .C_in = C_in, .H = H, .W = W, .C_out = C_out, .KH = k, .KW = k,
                     .stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad,
                     .dil_h = 1, .dil_w = 1, .groups = groups};
    g.OH = (H + 2 * pad - k) / stride + 1;
    g.OW = (W + 2 * pad - k) / stride + 1;
    return g;
}

/* dx from the backward of g: onto zeros (fresh false) or into a buffer of NaNs (fresh
 * true), with `threads` threads; dW and db are computed alongside (winograd: no db). */
static float *backward_dx(const conv2d_geom *g, bool winograd, bool fresh, int threads) {
    int64_t nx = g->N * g->C_in * g->H * g->W;
    int64_t nw = g->C_out * (g->C_in / g->groups) * g->KH * g->KW;
    int64_t ny = g->N * g->C_out * g->OH * g->OW;
    tg_rng rng;
    tg_rng_seed(&rng, 123);
    float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
    float *dy = malloc((size_t)ny * sizeof(float)), *dx = malloc((size_t)nx * sizeof(float));
    float *dw = calloc((size_t)nw, sizeof(float)), *db = calloc((size_t)g->C_out, sizeof(float));
    size_t nws = winograd ? conv2d_winograd_workspace_floats(g, true, 0)
                          : conv2d_workspace_floats(g, 16);
    float *ws = malloc((nws ? nws : 1) * sizeof(float));
    ck_assert(x && w && dy && dx && dw && db && ws);
    tg_rng_fill_uniform(&rng, x, nx, -1, 1);
    tg_rng_fill_uniform(&rng, w, nw, -1, 1);
    tg_rng_fill_uniform(&rng, dy, ny, -1, 1);
    for (int64_t i = 0; i < nx; i++) dx[i] = fresh ? NAN : 0.0f;
    int saved = tg_get_num_threads();
    tg_set_num_threads(threads);
    if (winograd)
        conv2d_winograd_backward_cpu(dx, dw, dy, x, w, g, ws, 0, fresh);
    else
        conv2d_backward_cpu(dx, dw, db, dy, x, w, g, ws, 16, fresh);
    tg_set_num_threads(saved);
    free(x), free(w), free(dy), free(dw), free(db), free(ws);
    return dx;
}

static const struct {
    const char *name;
    conv2d_geom g;
    bool winograd;
} CASES[] = {
    {"pointwise 5x5", {0}, false},
    {"pointwise 65x65 grouped (dx by column chunks, a short last one)", {0}, false},
    {"depthwise 3x3 s1", {0}, false},
    {"depthwise 3x3 s2 m2", {0}, false},
    {"depthwise 5x5 s2 (generic)", {0}, false},
    {"dense 3x3 s2 p0 (unread last row and column)", {0}, false},
    {"grouped 3x3 p1", {0}, false},
    {"dense 1x1 s2", {0}, false},
    {"winograd 3x3 p1", {0}, true},
};

static conv2d_geom case_geom(int i) {
    switch (i) {
    case 0: return geom(2, 6, 5, 5, 4, 1, 1, 0, 1);
    case 1: return geom(2, 4, 65, 65, 6, 1, 1, 0, 2);
    case 2: return geom(2, 3, 9, 11, 3, 3, 1, 1, 3);
    case 3: return geom(2, 3, 10, 9, 6, 3, 2, 1, 3);
    case 4: return geom(1, 4, 11, 10, 4, 5, 2, 1, 4);
    case 5: return geom(2, 3, 10, 10, 5, 3, 2, 0, 1);
    case 6: return geom(1, 4, 7, 9, 6, 3, 1, 1, 2);
    case 7: return geom(1, 3, 9, 8, 4, 1, 2, 0, 1);
    default: return geom(2, 4, 10, 10, 5, 3, 1, 1, 1);
    }
}

START_TEST(conv_paths_write_fresh_dx) {
    for (int i = 0; i < (int)(sizeof CASES / sizeof CASES[0]); i++) {
        conv2d_geom g = case_geom(i);
        int64_t nx = g.N * g.C_in * g.H * g.W;
        if (CASES[i].winograd) ck_assert(conv2d_winograd_supported(&g));
        float *want = backward_dx(&g, CASES[i].winograd, false, 1);
        for (int threads = 1; threads <= 3; threads++) {
            float *got = backward_dx(&g, CASES[i].winograd, true, threads);
            for (int64_t k = 0; k < nx; k++) {
                /* bits, not a tolerance: writing must equal adding onto zeros */
                ck_assert_msg(memcmp(&got[k], &want[k], sizeof(float)) == 0,
                              "%s, %d threads: dx[%lld] = %.9g written, %.9g added onto 0",
                              CASES[i].name, threads, (long long)k, (double)got[k],
                              (double)want[k]);
            }
            free(got);
        }
        free(want);
    }
}
END_TEST

/* Through the tape: a conv whose input also feeds another op (so one of the two
 * contributions arrives fresh and the other adds) gives the gradient of the sum. */
START_TEST(conv_fresh_through_tape_with_fanout) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    float xv[2 * 4 * 6 * 6], wv[4 * 1 * 3 * 3];
    tg_rng_fill_uniform(&rng, xv, 2 * 4 * 6 * 6, -1, 1);
    tg_rng_fill_uniform(&rng, wv, 4 * 9, -1, 1);
    tg_tensor *x = tg_tensor_from(ctx, tg_shape4(2, 4, 6, 6), xv);
    tg_tensor *w = tg_tensor_from(ctx, tg_shape4(4, 1, 3, 3), wv);
    tg_tensor_set_requires_grad(x, true);
    tg_conv2d_opts o = tg_conv2d_opts_make(1, 1, 1, 4);
    tg_tensor *y = tg_add(ctx, tg_conv2d(ctx, x, w, NULL, o), x); /* a residual */
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(tg_backward(ctx, tg_sum_all(ctx, y)), TG_OK);
    /* d/dx sum(dwconv(x) + x) = 1 + the sum of the taps that read x */
    for (int c = 0; c < 4; c++)
        for (int h = 0; h < 6; h++)
            for (int v = 0; v < 6; v++) {
                double want = 1;
                for (int kh = 0; kh < 3; kh++)
                    for (int kw = 0; kw < 3; kw++) {
                        int oh = h + 1 - kh, ow = v + 1 - kw;
                        if (oh >= 0 && oh < 6 && ow >= 0 && ow < 6) want += wv[c * 9 + kh * 3 + kw];
                    }
                for (int n = 0; n < 2; n++)
                    ck_assert_double_eq_tol(x->grad[((n * 4 + c) * 6 + h) * 6 + v], want, 1e-5);
            }
    tg_step_end(ctx);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- the other CPU kernels */

/* The inputs the kernels below read, filled once per test. */
static struct {
    float x[80000], dy[80000], w[64];
    int32_t argmax[80000], target[64];
    float max[64], logsum[64];
} kin;

/* One backward kernel: fresh = false adds into dx, fresh = true must write it whole.
 * Returns how many elements dx has. */
typedef int64_t (*fresh_kernel)(float *dx, bool fresh, int variant);

static int64_t relu_kernel(float *dx, bool fresh, int v) {
    relu_backward_cpu(dx, kin.dy, kin.x, v ? 70000 : 1000, v ? 6.0f : INFINITY, fresh);
    return v ? 70000 : 1000;
}

static pool2d_geom pool_geom(int v) {
    switch (v) {
    case 0: return (pool2d_geom){6, 7, 9, 3, 4, 2, 2, 2, 2, 0, 0};   /* 2x2: unread edges */
    case 1: return (pool2d_geom){6, 9, 8, 5, 4, 3, 3, 2, 2, 1, 1};   /* overlapping */
    default: return (pool2d_geom){700, 10, 10, 5, 5, 2, 2, 2, 2, 0, 0}; /* parallel */
    }
}

static float pool_y[80000];

static int64_t max_pool_kernel(float *dx, bool fresh, int v) {
    pool2d_geom g = pool_geom(v);
    max_pool2d_forward_cpu(pool_y, kin.argmax, kin.x, &g);
    max_pool2d_backward_cpu(dx, kin.dy, kin.argmax, &g, fresh);
    return g.planes * g.H * g.W;
}

static int64_t avg_pool_kernel(float *dx, bool fresh, int v) {
    pool2d_geom g = pool_geom(v);
    avg_pool2d_backward_cpu(dx, kin.dy, &g, fresh);
    return g.planes * g.H * g.W;
}

static int64_t gap_kernel(float *dx, bool fresh, int v) {
    global_avg_pool_backward_cpu(dx, kin.dy, v ? 700 : 6, 100, fresh);
    return (v ? 700 : 6) * 100;
}

static int64_t linear_kernel(float *dx, bool fresh, int v) {
    (void)v; /* dx (5, 7) = dy (5, 3) W (3, 7) */
    linear_backward_cpu(dx, NULL, NULL, kin.dy, kin.x, kin.w, 5, 7, 3, fresh);
    return 35;
}

/* logits (N 4, C 5, inner 3) with target 2 ignored where it appears */
static int64_t cross_entropy_kernel(float *dx, bool fresh, int v) {
    (void)v;
    cross_entropy_backward_cpu(dx, kin.x, kin.max, kin.logsum, kin.target, 2, 0.25f, 4, 5, 3,
                               fresh);
    return 60;
}

static const struct {
    const char *name;
    fresh_kernel run;
    int variants;
} KERNELS[] = {
    {"relu / relu6", relu_kernel, 2},   {"max_pool2d", max_pool_kernel, 3},
    {"avg_pool2d", avg_pool_kernel, 3}, {"global_avg_pool", gap_kernel, 2},
    {"linear dx", linear_kernel, 1},    {"cross_entropy", cross_entropy_kernel, 1},
};

/* Handed a NaN-filled dx and fresh = true, each kernel writes exactly what it adds onto
 * zeros: every element written (the NaN would survive an add), bit for bit. */
START_TEST(kernels_write_fresh_dx) {
    tg_rng rng;
    tg_rng_seed(&rng, 17);
    tg_rng_fill_normal(&rng, kin.x, 80000, 0, 3);
    tg_rng_fill_normal(&rng, kin.dy, 80000, 0, 1);
    tg_rng_fill_normal(&rng, kin.w, 64, 0, 1);
    for (int i = 0; i < 80000; i += 7) kin.x[i] = 0.0f; /* relu's kink */
    for (int i = 0; i < 12; i++) {                       /* cross entropy: (N 4, inner 3) */
        kin.target[i] = i % 5;
        int n = i / 3, p = i % 3;
        float m = -INFINITY;
        for (int c = 0; c < 5; c++) m = fmaxf(m, kin.x[(n * 5 + c) * 3 + p]);
        double sum = 0;
        for (int c = 0; c < 5; c++) sum += exp((double)kin.x[(n * 5 + c) * 3 + p] - m);
        kin.max[i] = m;
        kin.logsum[i] = (float)log(sum);
    }
    float *want = malloc(80000 * sizeof(float)), *got = malloc(80000 * sizeof(float));
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(got);
    for (size_t k = 0; k < sizeof KERNELS / sizeof KERNELS[0]; k++) {
        for (int v = 0; v < KERNELS[k].variants; v++) {
            for (int64_t i = 0; i < 80000; i++) {
                want[i] = 0.0f;
                got[i] = NAN;
            }
            int64_t n = KERNELS[k].run(want, false, v);
            ck_assert_int_eq(KERNELS[k].run(got, true, v), n);
            ck_assert_int_le(n, 80000);
            int64_t bad = -1;
            for (int64_t i = 0; i < n && bad < 0; i++)
                if (memcmp(&want[i], &got[i], sizeof(float))) bad = i;
            ck_assert_msg(bad < 0, "%s (variant %d): fresh dx[%lld] = %g, added onto zeros %g",
                          KERNELS[k].name, v, (long long)bad, bad < 0 ? 0.0 : (double)got[bad],
                          bad < 0 ? 0.0 : (double)want[bad]);
        }
    }
    free(want);
    free(got);
}
END_TEST

Suite *fresh_grads_suite(void) {
    Suite *s = suite_create("fresh_grads");
    TCase *tc = tcase_create("fresh_grads");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fresh_first_gradient_only);
    tcase_add_test(tc, fresh_never_for_parameters);
    tcase_add_test(tc, conv_paths_write_fresh_dx);
    tcase_add_test(tc, kernels_write_fresh_dx);
    tcase_add_test(tc, conv_fresh_through_tape_with_fanout);
    suite_add_tcase(s, tc);
    return s;
}
