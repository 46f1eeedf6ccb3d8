/*
 * tests/test_cuda.c — the CUDA backend against the CPU backend (DESIGN §9): every op's
 * forward and every gradient on the same random inputs, over a shape grid like the CPU
 * suites'; the conv2d kernels directly with small im2col tiles; the fused optimizers;
 * one training step of the forum50 and MobileNet models.
 *
 * Without a usable GPU (or in a build without CUDA) it prints one SKIP line and exits 77,
 * which meson reports as SKIP. It is its own meson test (suite 'cuda'), not part of
 * run_all. Check runs it without fork(): a CUDA context does not survive a fork.
 *
 * TOLERANCES. A GPU value g passes against the CPU value c when
 *     |g - c| <= tol (|c| + max |c| over the tensor)
 * (relative to the value and to the tensor's scale, so sums that cancel to ~0 compare
 * at the scale of their terms):
 *   TOL_EXACT 1e-6  ops whose result is one rounding of the same inputs (ReLU, add,
 *                   reshape, max pool, global average pool's gradient, SGD/Adam steps
 *                   (rounded step by step as on the CPU))
 *   TOL_SUM   1e-4  reductions summed in another order (conv, linear, batchnorm,
 *                   losses, average pools); 2e-2 in a TF32 build (-Dtf32=true)
 *   TOL_MODEL 2e-3  whole models, in relative L2 norm per tensor (||g - c|| <= tol ||c||)
 *                   after one step through every layer.
 */
#include "testutil.h"

#include "../core/core.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_EXACT 1e-6
#ifdef TG_ALLOW_TF32
#define TOL_SUM 2e-2
#else
#define TOL_SUM 1e-4
#endif
#define TOL_MODEL 2e-3
#define MAX_IN 6

static void expect_match(const char *what, const float *gpu, const float *cpu, int64_t n,
                         double tol) {
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(cpu[i]));
    tg_expect_close_f(what, gpu, cpu, n, tol * scale + 1e-30, tol);
}

static float *host_copy(const tg_tensor *t, bool grad) {
    float *h = malloc((size_t)t->numel * sizeof(float));
    ck_assert(h);
    ck_assert_msg(tg_tensor_to_host(t, h, grad) == TG_OK, "%s", tg_error_message());
    return h;
}

static float *random_host(int64_t n, float lo, float hi, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    float *h = malloc((size_t)n * sizeof(float));
    ck_assert(h);
    tg_rng_fill_uniform(&rng, h, n, lo, hi);
    return h;
}

/* ---------------------------------------------------------------- one op, both devices */

typedef tg_tensor *(*op_run)(tg_ctx *ctx, tg_tensor **in, const void *user);

typedef struct op_case {
    int ninputs;
    tg_shape shape[MAX_IN]; /* ndim -1: the input is absent (NULL) */
    bool grad[MAX_IN];      /* requires grad */
    float lo, hi;           /* inputs uniform in [lo, hi) */
    op_run run;
    const void *user;
    double tol;
} op_case;

/* What one device computed: the output, every input after the step (in-place updates
 * such as running statistics) and every input gradient, on the host. */
typedef struct op_result {
    float *out, *in[MAX_IN], *grad[MAX_IN];
    int64_t out_n;
} op_result;

static void run_on(tg_ctx *ctx, const char *what, const op_case *c, float *const *host_in,
                   op_result *r) {
    tg_tensor *in[MAX_IN] = {0};
    for (int i = 0; i < c->ninputs; i++) {
        if (c->shape[i].ndim < 0) continue;
        in[i] = tg_tensor_from(ctx, c->shape[i], host_in[i]);
        tg_tensor_set_requires_grad(in[i], c->grad[i]);
    }
    tg_tensor *out = c->run(ctx, in, c->user);
    ck_assert_msg(out != NULL, "%s on %s: %s", what, tg_device_name(tg_ctx_device(ctx)),
                  tg_error_message());
    r->out = host_copy(out, false);
    r->out_n = out->numel;
    if (out->requires_grad) {
        float *dout_host = random_host(out->numel, -1.0f, 1.0f, 99);
        tg_tensor *dout = tg_tensor_from(ctx, out->shape, dout_host);
        free(dout_host);
        ck_assert_msg(dout && tg_backward_with(ctx, out, dout->data) == TG_OK, "%s: %s", what,
                      tg_error_message());
    }
    for (int i = 0; i < c->ninputs; i++) {
        if (!in[i]) continue;
        r->in[i] = host_copy(in[i], false);
        if (c->grad[i] && out->requires_grad) r->grad[i] = host_copy(in[i], true);
    }
    tg_step_end(ctx);
}

static void result_free(op_result *r) {
    free(r->out);
    for (int i = 0; i < MAX_IN; i++) {
        free(r->in[i]);
        free(r->grad[i]);
    }
}

/* Runs c on both devices with the same inputs and compares everything. */
static void check_case(tg_ctx *cpu, tg_ctx *gpu, const char *what, const op_case *c,
                       uint64_t seed) {
    float *host_in[MAX_IN] = {0};
    for (int i = 0; i < c->ninputs; i++)
        if (c->shape[i].ndim >= 0)
            host_in[i] = random_host(tg_shape_numel(c->shape[i]), c->lo, c->hi, seed + i);
    op_result rc = {0}, rg = {0};
    run_on(cpu, what, c, host_in, &rc);
    run_on(gpu, what, c, host_in, &rg);
    char label[256];
    ck_assert_int_eq(rc.out_n, rg.out_n);
    snprintf(label, sizeof label, "%s: output", what);
    expect_match(label, rg.out, rc.out, rc.out_n, c->tol);
    for (int i = 0; i < c->ninputs; i++) {
        if (!host_in[i]) continue;
        int64_t n = tg_shape_numel(c->shape[i]);
        snprintf(label, sizeof label, "%s: input %d after the step", what, i);
        expect_match(label, rg.in[i], rc.in[i], n, c->tol);
        ck_assert_msg(!rc.grad[i] == !rg.grad[i], "%s: gradient %d on one device only", what, i);
        if (!rc.grad[i]) continue;
        snprintf(label, sizeof label, "%s: gradient of input %d", what, i);
        expect_match(label, rg.grad[i], rc.grad[i], n, c->tol);
    }
    result_free(&rc);
    result_free(&rg);
    for (int i = 0; i < MAX_IN; i++)
        free(host_in[i]);
    tg_expect_ok(what);
}

static tg_ctx *new_ctx(tg_device device) {
    tg_error_clear();
    tg_ctx *ctx = tg_ctx_new(device);
    ck_assert_msg(ctx != NULL, "%s", tg_error_message());
    return ctx;
}

#define ABSENT ((tg_shape){.ndim = -1})

/* ---------------------------------------------------------------- conv2d / conv1d grid */

typedef struct conv_cfg {
    int N, C_in, C_out, H, W, K, stride, pad, dil, groups;
    bool bias, is1d;
} conv_cfg;

static tg_tensor *run_conv(tg_ctx *ctx, tg_tensor **in, const void *user) {
    const conv_cfg *k = user;
    tg_conv2d_opts o = tg_conv2d_opts_make(k->stride, k->pad, k->dil, k->groups);
    return k->is1d ? tg_conv1d(ctx, in[0], in[1], in[2], o)
                   : tg_conv2d(ctx, in[0], in[1], in[2], o);
}

static void check_conv(tg_ctx *cpu, tg_ctx *gpu, const conv_cfg *k, uint64_t seed) {
    char what[160];
    snprintf(what, sizeof what, "conv%s N%d Cin%d Cout%d %dx%d k%d s%d p%d d%d g%d%s",
             k->is1d ? "1d" : "2d", k->N, k->C_in, k->C_out, k->H, k->W, k->K, k->stride, k->pad,
             k->dil, k->groups, k->bias ? " bias" : "");
    int cg = k->C_in / k->groups;
    op_case c = {
        .ninputs = 3,
        .shape = {k->is1d ? tg_shape3(k->N, k->C_in, k->W) : tg_shape4(k->N, k->C_in, k->H, k->W),
                  k->is1d ? tg_shape3(k->C_out, cg, k->K) : tg_shape4(k->C_out, cg, k->K, k->K),
                  k->bias ? tg_shape1(k->C_out) : ABSENT},
        .grad = {true, true, k->bias},
        .lo = -1.0f,
        .hi = 1.0f,
        .run = run_conv,
        .user = k,
        .tol = TOL_SUM,
    };
    check_case(cpu, gpu, what, &c, seed);
}

/* groups 1/2/C (and C with a channel multiplier), stride 1/2, pad 0/1, dilation 1/2,
 * 1x1 and 3x3, batch 1 and 3, on an odd 7x9 image: every path and its edges. */
START_TEST(conv2d_grid) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const int groups[] = {1, 2, 4, 4}, couts[] = {4, 4, 4, 8};
    uint64_t seed = 1;
    for (int gi = 0; gi < 4; gi++)
        for (int s = 1; s <= 2; s++)
            for (int p = 0; p <= 1; p++)
                for (int d = 1; d <= 2; d++)
                    for (int k = 1; k <= 3; k += 2)
                        for (int n = 1; n <= 3; n += 2) {
                            conv_cfg cfg = {.N = n,
                                            .C_in = 4,
                                            .C_out = couts[gi],
                                            .H = 7,
                                            .W = 9,
                                            .K = k,
                                            .stride = s,
                                            .pad = p,
                                            .dil = d,
                                            .groups = groups[gi],
                                            .bias = (seed % 2) == 1};
                            check_conv(cpu, gpu, &cfg, seed++);
                        }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* Shapes with several depthwise tiles (partial at the edges), a dense layer with more
 * channels, batched pointwise, conv1d, and 5x5 / strided-dilated depthwise. */
START_TEST(conv2d_larger) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    /* clang-format off */
    const conv_cfg cfgs[] = {
        /* N  C_in C_out  H   W   K  stride pad dil groups bias   is1d */
        {2,   3,   3,   70, 45, 3, 1,     1,  1,  3,     true,  false},
        {1,   3,   6,   70, 45, 3, 2,     1,  1,  3,     true,  false},
        {1,   2,   2,   37, 66, 5, 2,     2,  2,  2,     false, false},
        {3,   5,   5,   19, 17, 5, 1,     2,  1,  5,     true,  false},
        {1,   16,  24,  33, 40, 3, 1,     1,  1,  1,     true,  false},
        {2,   16,  8,   21, 23, 3, 2,     1,  1,  4,     false, false},
        {3,   24,  16,  17, 19, 1, 1,     0,  1,  1,     true,  false},
        {2,   8,   12,  9,  13, 1, 1,     0,  1,  4,     false, false},
        {2,   4,   6,   1,  37, 5, 1,     2,  1,  2,     true,  true},
        {3,   4,   4,   1,  41, 3, 2,     1,  2,  4,     false, true},
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        check_conv(cpu, gpu, &cfgs[i], 100 + i);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

#ifdef TG_HAVE_CUDA
/* The kernels themselves with 16-column im2col tiles (the op picks large tiles, so the
 * tile edges are only reached this way): dense and grouped, forward and backward. */
START_TEST(conv2d_cuda_small_tiles) {
    tg_ctx *gpu = new_ctx(TG_DEVICE_CUDA);
    /* clang-format off */
    const conv2d_geom geoms[] = {
        {.N = 2, .C_in = 4, .H = 11, .W = 13, .C_out = 6, .KH = 3, .KW = 3,
         .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1, .dil_h = 1, .dil_w = 1,
         .groups = 1},
        {.N = 1, .C_in = 6, .H = 12, .W = 9, .C_out = 4, .KH = 3, .KW = 2,
         .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 0, .dil_h = 2, .dil_w = 1,
         .groups = 2},
    };
    /* clang-format on */
    for (size_t gi = 0; gi < 2; gi++) {
        conv2d_geom g = geoms[gi];
        g.OH = (g.H + 2 * g.pad_h - g.dil_h * (g.KH - 1) - 1) / g.stride_h + 1;
        g.OW = (g.W + 2 * g.pad_w - g.dil_w * (g.KW - 1) - 1) / g.stride_w + 1;
        int64_t nx = g.N * g.C_in * g.H * g.W, nw = g.C_out * g.C_in / g.groups * g.KH * g.KW;
        int64_t ny = g.N * g.C_out * g.OH * g.OW;
        float *x = random_host(nx, -1, 1, 1), *w = random_host(nw, -1, 1, 2);
        float *b = random_host(g.C_out, -1, 1, 3), *dy = random_host(ny, -1, 1, 4);
        float *y = calloc((size_t)ny, 4), *dx = calloc((size_t)nx, 4), *dw = calloc((size_t)nw, 4);
        float *db = calloc((size_t)g.C_out, 4);
        float *ws = malloc(conv2d_workspace_floats(&g, 16) * 4);
        conv2d_forward_cpu(y, x, w, b, &g, ws, 16);
        conv2d_backward_cpu(dx, dw, db, dy, x, w, &g, ws, 16);
        tg_tensor *tx = tg_tensor_from(gpu, tg_shape1(nx), x),
                  *tw = tg_tensor_from(gpu, tg_shape1(nw), w);
        tg_tensor *tb = tg_tensor_from(gpu, tg_shape1(g.C_out), b),
                  *tdy = tg_tensor_from(gpu, tg_shape1(ny), dy);
        tg_tensor *ty = tg_tensor_zeros(gpu, tg_shape1(ny)),
                  *tdx = tg_tensor_zeros(gpu, tg_shape1(nx));
        tg_tensor *tdw = tg_tensor_zeros(gpu, tg_shape1(nw)),
                  *tdb = tg_tensor_zeros(gpu, tg_shape1(g.C_out));
        tg_tensor *tws =
            tg_tensor_new(gpu, tg_shape1((int64_t)conv2d_workspace_floats_cuda(&g, 16, true)));
        ck_assert(tws);
        ck_assert(conv2d_forward_cuda(ty->data, tx->data, tw->data, tb->data, &g, tws->data, 16) ==
                  TG_OK);
        ck_assert(conv2d_backward_cuda(tdx->data, tdw->data, tdb->data, tdy->data, tx->data,
                                       tw->data, &g, tws->data, 16) == TG_OK);
        float *gy = host_copy(ty, false), *gdx = host_copy(tdx, false);
        float *gdw = host_copy(tdw, false), *gdb = host_copy(tdb, false);
        expect_match("small tiles: y", gy, y, ny, TOL_SUM);
        expect_match("small tiles: dx", gdx, dx, nx, TOL_SUM);
        expect_match("small tiles: dw", gdw, dw, nw, TOL_SUM);
        expect_match("small tiles: db", gdb, db, g.C_out, TOL_SUM);
        free(x), free(w), free(b), free(dy), free(y), free(dx), free(dw), free(db), free(ws);
        free(gy), free(gdx), free(gdw), free(gdb);
        tg_step_end(gpu);
    }
    tg_expect_ok("small tiles");
    tg_ctx_free(gpu);
}
END_TEST
#endif

/* ---------------------------------------------------------------- the other ops */

static tg_tensor *run_relu(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_relu(ctx, in[0]);
}
static tg_tensor *run_relu6(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_relu6(ctx, in[0]);
}
static tg_tensor *run_add(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_add(ctx, in[0], in[1]);
}
static tg_tensor *run_add_self(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_add(ctx, in[0], in[0]);
}
static tg_tensor *run_flatten_relu(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_relu(ctx, tg_reshape(ctx, tg_flatten(ctx, in[0]), tg_shape1(-1)));
}
static tg_tensor *run_linear(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_linear(ctx, in[0], in[1], in[2]);
}
static tg_tensor *run_gap(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_global_avg_pool(ctx, in[0]);
}
static tg_tensor *run_max_pool(tg_ctx *ctx, tg_tensor **in, const void *u) {
    return tg_max_pool2d(ctx, in[0], *(const tg_pool2d_opts *)u);
}
static tg_tensor *run_avg_pool(tg_ctx *ctx, tg_tensor **in, const void *u) {
    return tg_avg_pool2d(ctx, in[0], *(const tg_pool2d_opts *)u);
}
static tg_tensor *run_mse(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_mse_loss(ctx, in[0], in[1]);
}
static tg_tensor *run_ce(tg_ctx *ctx, tg_tensor **in, const void *u) {
    return tg_cross_entropy(ctx, in[0], u);
}

/* An op of one input that requires grad, inputs uniform in [lo, hi). */
static op_case unary(tg_shape s, op_run run, const void *user, float lo, float hi, double tol) {
    return (op_case){.ninputs = 1,
                     .shape = {s},
                     .grad = {true},
                     .lo = lo,
                     .hi = hi,
                     .run = run,
                     .user = user,
                     .tol = tol};
}

START_TEST(elementwise_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    tg_shape s = tg_shape4(3, 5, 7, 9);
    op_case c = unary(s, run_relu, NULL, -8, 8, TOL_EXACT);
    check_case(cpu, gpu, "relu", &c, 1);
    c = unary(s, run_relu6, NULL, -8, 8, TOL_EXACT);
    check_case(cpu, gpu, "relu6", &c, 2);
    c = unary(s, run_add_self, NULL, -1, 1, TOL_EXACT);
    check_case(cpu, gpu, "add(x, x)", &c, 3);
    c = unary(s, run_flatten_relu, NULL, -1, 1, TOL_EXACT);
    check_case(cpu, gpu, "flatten + reshape + relu", &c, 4);
    c = unary(s, run_add, NULL, -1, 1, TOL_EXACT);
    c.ninputs = 2;
    c.shape[1] = s;
    c.grad[1] = true;
    check_case(cpu, gpu, "add", &c, 5);
    c.grad[1] = false;
    check_case(cpu, gpu, "add, b without grad", &c, 6);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

START_TEST(linear_op) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const int ns[] = {1, 5, 64};
    for (int i = 0; i < 3; i++)
        for (int bias = 0; bias <= 1; bias++) {
            op_case c = {
                .ninputs = 3,
                .shape = {tg_shape2(ns[i], 37), tg_shape2(11, 37), bias ? tg_shape1(11) : ABSENT},
                .grad = {true, true, bias},
                .lo = -1,
                .hi = 1,
                .run = run_linear,
                .tol = TOL_SUM};
            char what[64];
            snprintf(what, sizeof what, "linear N%d%s", ns[i], bias ? " bias" : "");
            check_case(cpu, gpu, what, &c, 10 + i);
        }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

typedef struct bn_cfg {
    bool training;
    float momentum, eps;
} bn_cfg;

static tg_tensor *run_bn(tg_ctx *ctx, tg_tensor **in, const void *u) {
    const bn_cfg *b = u;
    return tg_batchnorm2d(ctx, in[0], in[1], in[2], in[3], in[4], b->training, b->momentum, b->eps);
}

/* Train and eval, affine or not, with and without running statistics, batch 1 and 3.
 * The running statistics are inputs without grad: their values after the step (the
 * training update) are compared too. */
START_TEST(batchnorm_op) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    uint64_t seed = 20;
    for (int n = 1; n <= 3; n += 2)
        for (int train = 0; train <= 1; train++)
            for (int affine = 0; affine <= 1; affine++)
                for (int running = 0; running <= 1; running++) {
                    if (!train && !running) continue; /* eval needs running statistics */
                    bn_cfg b = {.training = train, .momentum = 0.1f, .eps = 1e-5f};
                    tg_shape cs = tg_shape1(4);
                    op_case c = {.ninputs = 5,
                                 .shape = {tg_shape4(n, 4, 5, 7), affine ? cs : ABSENT,
                                           affine ? cs : ABSENT, running ? cs : ABSENT,
                                           running ? cs : ABSENT},
                                 .grad = {true, affine, affine},
                                 .lo = 0.5f,
                                 .hi = 2.0f,
                                 .run = run_bn,
                                 .user = &b,
                                 .tol = TOL_SUM};
                    char what[96];
                    snprintf(what, sizeof what, "batchnorm N%d %s%s%s", n, train ? "train" : "eval",
                             affine ? " affine" : "", running ? " running" : "");
                    check_case(cpu, gpu, what, &c, seed++);
                }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

START_TEST(pool_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    tg_shape s = tg_shape4(2, 3, 9, 11);
    op_case c = unary(s, run_gap, NULL, -1, 1, TOL_SUM);
    check_case(cpu, gpu, "global_avg_pool", &c, 30);
    const tg_pool2d_opts opts[] = {tg_pool2d_opts_make(2, 2, 0), tg_pool2d_opts_make(3, 2, 1),
                                   tg_pool2d_opts_make(3, 1, 1), tg_pool2d_opts_make(2, 1, 0)};
    for (int i = 0; i < 4; i++) {
        char what[64];
        int k = opts[i].kernel_h, st = opts[i].stride_h, pad = opts[i].pad_h;
        c = unary(s, run_max_pool, &opts[i], -1, 1, TOL_EXACT);
        snprintf(what, sizeof what, "max_pool2d k%d s%d p%d", k, st, pad);
        check_case(cpu, gpu, what, &c, 31 + i);
        c = unary(s, run_avg_pool, &opts[i], -1, 1, TOL_SUM);
        snprintf(what, sizeof what, "avg_pool2d k%d s%d p%d", k, st, pad);
        check_case(cpu, gpu, what, &c, 41 + i);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

START_TEST(loss_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    tg_shape s = tg_shape4(3, 4, 5, 6);
    op_case c = unary(s, run_mse, NULL, -2, 2, TOL_SUM);
    c.ninputs = 2;
    c.shape[1] = s;
    c.grad[1] = true;
    check_case(cpu, gpu, "mse_loss", &c, 50);
    c.grad[1] = false;
    check_case(cpu, gpu, "mse_loss, target without grad", &c, 51);
    /* (N, C) logits and per-pixel (N, C, H, W) logits with integer targets. */
    const tg_shape shapes[] = {tg_shape2(5, 7), tg_shape2(1, 3), tg_shape4(2, 4, 5, 6),
                               tg_shape4(1, 10, 16, 16)};
    for (int i = 0; i < 4; i++) {
        tg_shape ls = shapes[i];
        int64_t count = ls.dim[0] * (ls.ndim == 4 ? ls.dim[2] * ls.dim[3] : 1);
        int32_t *target = malloc((size_t)count * sizeof *target);
        tg_rng rng;
        tg_rng_seed(&rng, 60 + i);
        for (int64_t j = 0; j < count; j++)
            target[j] = (int32_t)tg_rng_below(&rng, ls.dim[1]);
        c = unary(ls, run_ce, target, -4, 4, TOL_SUM);
        char what[64], sh[64];
        snprintf(what, sizeof what, "cross_entropy %s", tg_shape_str(ls, sh, sizeof sh));
        check_case(cpu, gpu, what, &c, 70 + i);
        free(target);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* ---------------------------------------------------------------- optimizers */

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;

typedef struct opt_cfg {
    opt_kind kind;
    tg_sgd_opts sgd;
    tg_adam_opts adam;
    const char *name;
} opt_cfg;

static tg_params *opt_store(tg_device device) {
    tg_params *ps = tg_params_new(device);
    ck_assert_msg(ps != NULL, "%s", tg_error_message());
    tg_params_add(ps, "a", tg_shape1(37));
    tg_params_add(ps, "b", tg_shape2(5, 13));
    tg_params_add(ps, "c", tg_shape4(3, 2, 3, 3));
    return ps;
}

/* Sets every parameter's values (what = false) or gradient (true) from a seed. */
static void opt_fill(tg_params *ps, bool grad, uint64_t seed) {
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i);
        float *h = random_host(t->numel, -1, 1, seed + (uint64_t)i);
        ck_assert(tg_device_copy(t->device, grad ? t->grad : t->data, TG_DEVICE_CPU, h,
                                 (size_t)t->numel * sizeof(float)) == TG_OK);
        free(h);
    }
}

static tg_optim *opt_new(tg_params *ps, const opt_cfg *c) {
    tg_optim *o = c->kind == OPT_SGD    ? tg_sgd_new(ps, c->sgd)
                  : c->kind == OPT_ADAM ? tg_adam_new(ps, c->adam)
                                        : tg_adamw_new(ps, c->adam);
    ck_assert_msg(o != NULL, "%s: %s", c->name, tg_error_message());
    return o;
}

/* Three steps with fresh gradients; the parameters (which carry the state's effect)
 * compared after each. */
START_TEST(optimizers) {
    tg_error_clear();
    const opt_cfg cfgs[] = {
        {.kind = OPT_SGD, .sgd = {.lr = 0.1f}, .name = "sgd"},
        {.kind = OPT_SGD,
         .sgd = {.lr = 0.05f, .momentum = 0.9f, .dampening = 0.1f, .weight_decay = 0.01f},
         .name = "sgd momentum"},
        {.kind = OPT_SGD,
         .sgd = {.lr = 0.05f, .momentum = 0.9f, .nesterov = true},
         .name = "sgd nesterov"},
        {.kind = OPT_ADAM, .adam = {.lr = 0.01f}, .name = "adam"},
        {.kind = OPT_ADAM, .adam = {.lr = 0.01f, .weight_decay = 0.1f}, .name = "adam l2"},
        {.kind = OPT_ADAMW, .adam = {.lr = 0.01f, .weight_decay = 0.1f}, .name = "adamw"},
    };
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        tg_params *pc = opt_store(TG_DEVICE_CPU), *pg = opt_store(TG_DEVICE_CUDA);
        opt_fill(pc, false, 1);
        opt_fill(pg, false, 1);
        tg_optim *oc = opt_new(pc, &cfgs[k]), *og = opt_new(pg, &cfgs[k]);
        for (int step = 0; step < 3; step++) {
            opt_fill(pc, true, 10 + step);
            opt_fill(pg, true, 10 + step);
            ck_assert(tg_optim_step(oc) == TG_OK && tg_optim_step(og) == TG_OK);
            for (int i = 0; i < tg_params_count(pc); i++) {
                float *c = host_copy(tg_params_at(pc, i), false),
                      *g = host_copy(tg_params_at(pg, i), false);
                char what[96];
                snprintf(what, sizeof what, "%s step %d param %d", cfgs[k].name, step + 1, i);
                expect_match(what, g, c, tg_params_at(pc, i)->numel, TOL_EXACT);
                free(c);
                free(g);
            }
        }
        tg_optim_free(oc);
        tg_optim_free(og);
        tg_params_free(pc);
        tg_params_free(pg);
    }
    tg_expect_ok("optimizers");
}
END_TEST

/* ---------------------------------------------------------------- models */

/* ||g - c||_2 <= tol ||c||_2 (and a tiny absolute floor for all-zero tensors). */
static void expect_norm_match(const char *what, const float *g, const float *c, int64_t n) {
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        diff += ((double)g[i] - c[i]) * ((double)g[i] - c[i]);
        ref += (double)c[i] * c[i];
    }
    ck_assert_msg(sqrt(diff) <= TOL_MODEL * sqrt(ref) + 1e-12,
                  "%s: relative L2 error %.3g > %.3g (|cpu| = %.6g)", what,
                  sqrt(diff) / (sqrt(ref) + 1e-30), TOL_MODEL, sqrt(ref));
}

typedef struct model_result {
    float loss;
    int count;
    float *grad[256], *value[256]; /* per store entry; grad NULL for buffers */
} model_result;

/* One training step on `device`: forward (training mode), a CE (targets) or MSE loss,
 * backward, then one SGD step (momentum 0.9). Keeps the loss, every gradient (before the
 * step) and every parameter and buffer (after it) on the host. */
static void model_run(tg_model *m, tg_device device, tg_shape xs, const float *x,
                      const int32_t *targets, const float *mse_target, model_result *r) {
    tg_ctx *ctx = new_ctx(device);
    tg_params *ps = tg_model_params(m);
    tg_optim *opt = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.01f, .momentum = 0.9f});
    ck_assert_msg(opt != NULL, "%s", tg_error_message());
    tg_tensor *out = tg_model_forward(ctx, m, tg_tensor_from(ctx, xs, x), true);
    ck_assert_msg(out != NULL, "%s", tg_error_message());
    tg_tensor *loss = targets ? tg_cross_entropy(ctx, out, targets)
                              : tg_mse_loss(ctx, out, tg_tensor_from(ctx, out->shape, mse_target));
    tg_optim_zero_grad(opt);
    ck_assert_msg(tg_backward(ctx, loss) == TG_OK, "%s", tg_error_message());
    ck_assert(tg_tensor_to_host(loss, &r->loss, false) == TG_OK);
    r->count = tg_params_count(ps);
    ck_assert(r->count <= 256);
    for (int i = 0; i < r->count; i++) {
        tg_tensor *t = tg_params_at(ps, i);
        r->grad[i] = t->requires_grad ? host_copy(t, true) : NULL;
    }
    ck_assert_msg(tg_optim_step(opt) == TG_OK, "%s", tg_error_message());
    for (int i = 0; i < r->count; i++)
        r->value[i] = host_copy(tg_params_at(ps, i), false);
    tg_optim_free(opt);
    tg_ctx_free(ctx);
}

static void model_compare(const char *name, tg_model *mc, tg_model *mg, tg_shape xs,
                          const int32_t *targets, const float *mse_target) {
    float *x = random_host(tg_shape_numel(xs), -1, 1, 5);
    model_result rc = {0}, rg = {0};
    model_run(mc, TG_DEVICE_CPU, xs, x, targets, mse_target, &rc);
    model_run(mg, TG_DEVICE_CUDA, xs, x, targets, mse_target, &rg);
    char what[160];
    snprintf(what, sizeof what, "%s: loss (cpu %.7g, cuda %.7g)", name, rc.loss, rg.loss);
    expect_norm_match(what, &rg.loss, &rc.loss, 1);
    ck_assert_int_eq(rc.count, rg.count);
    tg_params *ps = tg_model_params(mc);
    for (int i = 0; i < rc.count; i++) {
        const tg_tensor *t = tg_params_at(ps, i);
        if (rc.grad[i]) {
            snprintf(what, sizeof what, "%s: gradient of %s", name, t->name);
            expect_norm_match(what, rg.grad[i], rc.grad[i], t->numel);
        }
        snprintf(what, sizeof what, "%s: %s after the step", name, t->name);
        expect_norm_match(what, rg.value[i], rc.value[i], t->numel);
        free(rc.grad[i]), free(rg.grad[i]), free(rc.value[i]), free(rg.value[i]);
    }
    free(x);
}

/* Both devices' models from one seed; NULL (and a note) when the model is not built. */
static bool model_pair(const char *name, tg_model *mc, tg_model *mg) {
    if (!mc || !mg) {
        printf("test_cuda: %s not compared: %s\n", name, tg_error_message());
        tg_model_free(mc);
        tg_model_free(mg);
        tg_error_clear();
        return false;
    }
    return true;
}

/* The forum stack, shrunk (8 channels, 5 convs, 20x20) so the CPU side is quick:
 * dense and separable, CE and MSE heads, plain and with batchnorm + ReLU. */
START_TEST(forum50_step) {
    tg_error_clear();
    const int H = 20, W = 20;
    int32_t targets[20 * 20 * 2];
    tg_rng rng;
    tg_rng_seed(&rng, 8);
    for (int i = 0; i < 2 * H * W; i++)
        targets[i] = (int32_t)tg_rng_below(&rng, 10);
    float *mse_target = random_host(2 * 3 * H * W, -1, 1, 9);
    int compared = 0;
    for (int k = 0; k < 8; k++) {
        tg_forum50_opts o = {.separable = k & 1,
                             .loss = k & 2 ? TG_LOSS_MSE : TG_LOSS_CE,
                             .channels = 8,
                             .layers = 5,
                             .relu = k & 4,
                             .bn = k & 4};
        int batch = o.bn ? 2 : 1;
        char name[96];
        snprintf(name, sizeof name, "forum50 %s %s%s", o.separable ? "separable" : "dense",
                 o.loss == TG_LOSS_MSE ? "mse" : "ce", o.bn ? " bn relu" : "");
        tg_model *mc = tg_forum50_new(o, TG_DEVICE_CPU, 42),
                 *mg = tg_forum50_new(o, TG_DEVICE_CUDA, 42);
        if (!model_pair(name, mc, mg)) continue;
        model_compare(name, mc, mg, tg_shape4(batch, 3, H, W),
                      o.loss == TG_LOSS_CE ? targets : NULL, mse_target);
        tg_model_free(mc);
        tg_model_free(mg);
        compared++;
    }
    free(mse_target);
    ck_assert_msg(compared == 8 || compared == 0, "only %d of 8 forum50 variants compared",
                  compared);
    tg_expect_ok("forum50");
}
END_TEST

/* MobileNet v1 at width 0.25, 10 classes, 2 x 3 x 64 x 64: true depthwise and 4 groups. */
START_TEST(mobilenet_step) {
    tg_error_clear();
    const int32_t targets[2] = {3, 7};
    const int groups[] = {0, 4};
    for (int k = 0; k < 2; k++) {
        tg_mobilenet_opts o = {.groups = groups[k], .width = 0.25f, .num_classes = 10};
        char name[64];
        snprintf(name, sizeof name, "mobilenet groups %d", groups[k]);
        tg_model *mc = tg_mobilenet_new(o, TG_DEVICE_CPU, 42),
                 *mg = tg_mobilenet_new(o, TG_DEVICE_CUDA, 42);
        if (!model_pair(name, mc, mg)) continue;
        model_compare(name, mc, mg, tg_shape4(2, 3, 64, 64), targets, NULL);
        tg_model_free(mc);
        tg_model_free(mg);
    }
    tg_expect_ok("mobilenet");
}
END_TEST

/* ---------------------------------------------------------------- issue 12 part A:
 * broadcasting binary ops and the unary functions (ops/elementwise.c, ops/unary.c).
 * Broadcast gradients are sums (TOL_SUM); the unary functions go through the device's
 * expf/tanhf/erff/powf, a few ulps from glibc's (TOL_SUM too). */

typedef struct binary_cfg {
    int op; /* 0 add, 1 sub, 2 mul, 3 div */
} binary_cfg;

static tg_tensor *run_binary(tg_ctx *ctx, tg_tensor **in, const void *u) {
    tg_tensor *a = in[0], *b = in[1] ? in[1] : in[0]; /* absent b: x op x */
    switch (((const binary_cfg *)u)->op) {
    case 0: return tg_add(ctx, a, b);
    case 1: return tg_sub(ctx, a, b);
    case 2: return tg_mul(ctx, a, b);
    default: return tg_div(ctx, a, b);
    }
}

START_TEST(broadcast_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const tg_shape pairs[][2] = {
        {tg_shape4(3, 5, 7, 9), tg_shape4(3, 5, 7, 9)},
        {tg_shape3(64, 33, 48), tg_shape1(48)},        /* bias along the last dim */
        {tg_shape4(2, 1, 7, 1), tg_shape3(5, 1, 9)},   /* both broadcast, rank difference */
        {tg_shape2(300, 700), tg_shape0()},            /* scalar: block-per-element reduce */
        {tg_shape0(), tg_shape2(30, 7)},
        {tg_shape4(4, 16, 32, 32), tg_shape4(1, 16, 1, 1)}, /* per channel */
    };
    static const binary_cfg ops[4] = {{0}, {1}, {2}, {3}};
    static const char *const names[4] = {"add", "sub", "mul", "div"};
    char what[96], sa[40], sb[40];
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
        for (int op = 0; op < 4; op++) {
            op_case c = {.ninputs = 2,
                         .shape = {pairs[k][0], pairs[k][1]},
                         .grad = {true, true},
                         .lo = op == 3 ? 0.5f : -1.0f,
                         .hi = op == 3 ? 1.5f : 1.0f,
                         .run = run_binary,
                         .user = &ops[op],
                         .tol = TOL_SUM};
            snprintf(what, sizeof what, "%s %s %s", names[op],
                     tg_shape_str(pairs[k][0], sa, sizeof sa),
                     tg_shape_str(pairs[k][1], sb, sizeof sb));
            check_case(cpu, gpu, what, &c, 200 + 10 * k + (uint64_t)op);
            c.grad[0] = false; /* only the broadcast operand needs a gradient */
            check_case(cpu, gpu, what, &c, 300 + 10 * k + (uint64_t)op);
        }
    for (int op = 0; op < 4; op++) { /* one tensor as both operands */
        op_case c = {.ninputs = 2, .shape = {tg_shape3(5, 7, 9), ABSENT}, .grad = {true, false},
                     .lo = 0.5f, .hi = 1.5f, .run = run_binary, .user = &ops[op],
                     .tol = TOL_EXACT};
        snprintf(what, sizeof what, "%s(x, x)", names[op]);
        check_case(cpu, gpu, what, &c, 400 + (uint64_t)op);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

typedef struct unary_cfg {
    const char *name;
    int fn;
    float c, lo, hi; /* constant; input range */
} unary_cfg;

static tg_tensor *run_unary(tg_ctx *ctx, tg_tensor **in, const void *u) {
    const unary_cfg *c = u;
    switch (c->fn) {
    case 0: return tg_add_scalar(ctx, in[0], c->c);
    case 1: return tg_scale(ctx, in[0], c->c);
    case 2: return tg_neg(ctx, in[0]);
    case 3: return tg_exp(ctx, in[0]);
    case 4: return tg_log(ctx, in[0]);
    case 5: return tg_sqrt(ctx, in[0]);
    case 6: return tg_pow(ctx, in[0], c->c);
    case 7: return tg_tanh(ctx, in[0]);
    case 8: return tg_sigmoid(ctx, in[0]);
    case 9: return tg_gelu(ctx, in[0], false);
    case 10: return tg_gelu(ctx, in[0], true);
    case 11: return tg_silu(ctx, in[0]);
    case 12: return tg_leaky_relu(ctx, in[0], c->c);
    default: return tg_clamp(ctx, in[0], -0.5f, 1.0f);
    }
}

START_TEST(unary_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    static const unary_cfg cfgs[] = {
        {"add_scalar", 0, 0.75f, -4, 4}, {"scale", 1, -1.5f, -4, 4},  {"neg", 2, 0, -4, 4},
        {"exp", 3, 0, -6, 6},            {"log", 4, 0, 0.05f, 5},     {"sqrt", 5, 0, 0.05f, 5},
        {"pow 2", 6, 2, -3, 3},          {"pow -1.5", 6, -1.5f, 0.3f, 3}, {"pow 0", 6, 0, -3, 3},
        {"tanh", 7, 0, -6, 6},           {"sigmoid", 8, 0, -30, 30},  {"gelu", 9, 0, -6, 6},
        {"gelu tanh", 10, 0, -6, 6},     {"silu", 11, 0, -8, 8},      {"leaky_relu", 12, 0.01f, -4, 4},
        {"clamp", 13, 0, -2, 2},
    };
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        op_case c = unary(tg_shape4(3, 5, 7, 9), run_unary, &cfgs[k], cfgs[k].lo, cfgs[k].hi,
                          TOL_SUM);
        check_case(cpu, gpu, cfgs[k].name, &c, 500 + k);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST
/* ---------------------------------------------------------------- end of part A */

static Suite *cuda_suite(void) {
    Suite *s = suite_create("cuda");
    TCase *tc = tg_test_case("cpu_vs_cuda");
    tcase_add_test(tc, conv2d_grid);
    tcase_add_test(tc, conv2d_larger);
#ifdef TG_HAVE_CUDA
    tcase_add_test(tc, conv2d_cuda_small_tiles);
#endif
    tcase_add_test(tc, elementwise_ops);
    tcase_add_test(tc, broadcast_ops); /* issue 12 part A */
    tcase_add_test(tc, unary_ops);     /* issue 12 part A */
    tcase_add_test(tc, linear_op);
    tcase_add_test(tc, batchnorm_op);
    tcase_add_test(tc, pool_ops);
    tcase_add_test(tc, loss_ops);
    tcase_add_test(tc, optimizers);
    tcase_add_test(tc, forum50_step);
    tcase_add_test(tc, mobilenet_step);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    if (tg_cuda_check() != TG_OK) {
        printf("test_cuda: SKIP: %s\n", tg_error_message());
        return 77; /* meson: skipped */
    }
    SRunner *sr = srunner_create(cuda_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* CUDA contexts do not survive fork() */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
