/*
 * tests/test_cuda_edge.c — CPU vs CUDA on issue 15's gaps: the depthwise fallback kernels,
 * asymmetric geometries, reductions over many blocks, NaN/Inf inputs, multi-step training
 * with arena reuse, run-twice determinism, a poisoned arena, then small planes, chunked
 * bias gradients, staged copies and the 64-bit index path (tests/cuda_parity.h).
 */
#include "cuda_parity.h"

/* ---------------------------------------------------------------- issue 15's gaps */

/* A conv with per-axis options: x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW). */
typedef struct conv_any {
    int N, C_in, C_out, H, W, KH, KW;
    tg_conv2d_opts o;
    bool bias;
} conv_any;

static tg_tensor *run_conv_any(tg_ctx *ctx, tg_tensor **in, const void *user) {
    const conv_any *k = user;
    return tg_conv2d(ctx, in[0], in[1], in[2], k->o);
}

static void check_conv_any(tg_ctx *cpu, tg_ctx *gpu, const char *name, const conv_any *k,
                           uint64_t seed) {
    char what[224];
    snprintf(what, sizeof what, "%s: N%d Cin%d Cout%d %dx%d k%dx%d s%d,%d p%d,%d d%d,%d g%d",
             name, k->N, k->C_in, k->C_out, k->H, k->W, k->KH, k->KW, k->o.stride_h,
             k->o.stride_w, k->o.pad_h, k->o.pad_w, k->o.dilation_h, k->o.dilation_w,
             k->o.groups);
    op_case c = {.ninputs = 3,
                 .shape = {tg_shape4(k->N, k->C_in, k->H, k->W),
                           tg_shape4(k->C_out, k->C_in / k->o.groups, k->KH, k->KW),
                           k->bias ? tg_shape1(k->C_out) : ABSENT},
                 .grad = {true, true, k->bias},
                 .lo = -1.0f,
                 .hi = 1.0f,
                 .run = run_conv_any,
                 .user = k,
                 .tol = TOL_SUM};
    check_case(cpu, gpu, what, &c, seed);
}

static tg_conv2d_opts opts2(int sh, int sw, int ph, int pw, int dh, int dw, int groups) {
    return (tg_conv2d_opts){.stride_h = sh, .stride_w = sw, .pad_h = ph, .pad_w = pw,
                            .dilation_h = dh, .dilation_w = dw, .groups = groups};
}

/* Depthwise windows too large for 48 KB of shared memory run the one-thread-per-element
 * kernels: 7x7 at dilation 20 (forward, dX and dW all fall back) and 15x15 at stride 2,
 * dilation 4 (forward and dW fall back, dX stays tiled). */
START_TEST(depthwise_fallback) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    conv_any a = {2, 3, 3, 40, 37, 7, 7, opts2(1, 1, 60, 60, 20, 20, 3), true};
    check_conv_any(cpu, gpu, "depthwise fallback", &a, 200);
    conv_any b = {1, 2, 4, 64, 64, 15, 15, opts2(2, 2, 28, 28, 4, 4, 2), true};
    check_conv_any(cpu, gpu, "depthwise fallback (dX tiled)", &b, 201);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* KH != KW and every option differing per axis, so a swapped h/w fails; 40 channels
 * (more than the grid's 24) with a channel multiplier; planes over several tiles. */
START_TEST(depthwise_asymmetric) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const conv_any cfgs[] = {
        {2, 40, 80, 29, 45, 3, 5, opts2(2, 1, 1, 2, 1, 2, 40), true},
        {1, 40, 40, 50, 70, 5, 3, opts2(1, 2, 2, 0, 2, 1, 40), false},
        {3, 32, 32, 7, 7, 3, 3, opts2(1, 1, 1, 1, 1, 1, 32), true},   /* MobileNet's last planes */
        {2, 48, 48, 9, 33, 1, 3, opts2(1, 2, 0, 1, 1, 1, 48), true},  /* 1x3 */
        {2, 64, 64, 35, 12, 3, 1, opts2(2, 1, 1, 0, 3, 1, 16), true}, /* grouped, 3x1 */
        {2, 30, 60, 17, 23, 2, 4, opts2(1, 1, 0, 1, 1, 1, 1), true},  /* dense, even kernel */
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        check_conv_any(cpu, gpu, "asymmetric conv", &cfgs[i], 210 + i);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

START_TEST(pool_asymmetric) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    tg_shape s = tg_shape4(2, 30, 13, 10);
    const tg_pool2d_opts opts[] = {
        {.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 1, .pad_h = 1, .pad_w = 0},
        {.kernel_h = 2, .kernel_w = 4, .stride_h = 1, .stride_w = 3, .pad_h = 1, .pad_w = 2},
        {.kernel_h = 1, .kernel_w = 3, .stride_h = 1, .stride_w = 2, .pad_h = 0, .pad_w = 1},
    };
    for (int i = 0; i < 3; i++) {
        char what[96];
        snprintf(what, sizeof what, "max_pool2d k%dx%d s%d,%d p%d,%d", opts[i].kernel_h,
                 opts[i].kernel_w, opts[i].stride_h, opts[i].stride_w, opts[i].pad_h, opts[i].pad_w);
        op_case c = unary(s, run_max_pool, &opts[i], -1, 1, TOL_EXACT);
        check_case(cpu, gpu, what, &c, 230 + i);
        what[0] = 'a', what[1] = 'v', what[2] = 'g';
        c = unary(s, run_avg_pool, &opts[i], -1, 1, TOL_SUM);
        check_case(cpu, gpu, what, &c, 240 + i);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* Reductions over many blocks: batchnorm planes of 4096 pixels at few channels (the
 * chunked path) and at 300 channels (one block per channel, many threads each), cross
 * entropy over 2400 positions, MSE over 600k values, a large global average pool, the
 * linear bias over 300 columns. */
START_TEST(reductions_many_blocks) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const tg_shape bn_shapes[] = {tg_shape4(4, 8, 64, 64), tg_shape4(8, 64, 32, 32),
                                  tg_shape4(2, 300, 9, 9), tg_shape4(3, 2, 200, 150)};
    for (int i = 0; i < 4; i++)
        for (int train = 0; train <= 1; train++) {
            bn_cfg b = {.training = train, .momentum = 0.1f, .eps = 1e-5f};
            tg_shape cs = tg_shape1(bn_shapes[i].dim[1]);
            op_case c = {.ninputs = 5,
                         .shape = {bn_shapes[i], cs, cs, cs, cs},
                         .grad = {true, true, true},
                         .lo = 0.5f,
                         .hi = 2.0f,
                         .run = run_bn,
                         .user = &b,
                         .tol = TOL_SUM};
            char what[96], sh[64];
            snprintf(what, sizeof what, "batchnorm %s %s",
                     tg_shape_str(bn_shapes[i], sh, sizeof sh), train ? "train" : "eval");
            check_case(cpu, gpu, what, &c, 250 + 2 * i + train);
        }
    tg_shape ls = tg_shape4(2, 10, 30, 40);
    int32_t *target = malloc(2 * 30 * 40 * sizeof *target);
    tg_rng rng;
    tg_rng_seed(&rng, 260);
    for (int j = 0; j < 2 * 30 * 40; j++) target[j] = (int32_t)tg_rng_below(&rng, 10);
    op_case c = unary(ls, run_ce, target, -4, 4, TOL_SUM);
    check_case(cpu, gpu, "cross_entropy over 2400 positions", &c, 261);
    free(target);
    tg_shape ms = tg_shape4(6, 10, 100, 100);
    c = unary(ms, run_mse, NULL, -2, 2, TOL_SUM);
    c.ninputs = 2;
    c.shape[1] = ms;
    c.grad[1] = true;
    check_case(cpu, gpu, "mse_loss over 600000 values", &c, 262);
    c = unary(tg_shape4(1, 2, 100, 120), run_gap, NULL, -1, 1, TOL_SUM);
    check_case(cpu, gpu, "global_avg_pool over 12000 pixels", &c, 263);
    c = (op_case){.ninputs = 3,
                  .shape = {tg_shape2(70, 33), tg_shape2(300, 33), tg_shape1(300)},
                  .grad = {true, true, true},
                  .lo = -1,
                  .hi = 1,
                  .run = run_linear,
                  .tol = TOL_SUM};
    check_case(cpu, gpu, "linear 300 outputs", &c, 264);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

static tg_tensor *run_dw_conv(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_conv2d(ctx, in[0], in[1], NULL, tg_conv2d_opts_make(1, 1, 1, 5));
}

/* NaN and infinities in the input: every op must propagate them as the CPU does. */
START_TEST(nan_inf) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    tg_shape s = tg_shape4(2, 5, 9, 11);
    op_case c = unary(s, run_relu, NULL, -8, 8, TOL_EXACT);
    c.specials = true;
    check_case(cpu, gpu, "relu with NaN/Inf", &c, 270);
    c.run = run_relu6;
    check_case(cpu, gpu, "relu6 with NaN/Inf", &c, 271);
    c.run = run_add_self;
    check_case(cpu, gpu, "add with NaN/Inf", &c, 272);
    const tg_pool2d_opts po = tg_pool2d_opts_make(3, 2, 1);
    c = unary(s, run_max_pool, &po, -1, 1, TOL_EXACT);
    c.specials = true;
    check_case(cpu, gpu, "max_pool2d with NaN/Inf", &c, 273);
    c = unary(s, run_avg_pool, &po, -1, 1, TOL_SUM);
    c.specials = true;
    check_case(cpu, gpu, "avg_pool2d with NaN/Inf", &c, 274);
    c = unary(s, run_gap, NULL, -1, 1, TOL_SUM);
    c.specials = true;
    check_case(cpu, gpu, "global_avg_pool with NaN/Inf", &c, 275);
    c = (op_case){.ninputs = 2,
                  .shape = {s, tg_shape4(5, 1, 3, 3)},
                  .grad = {true, true},
                  .lo = -1,
                  .hi = 1,
                  .run = run_dw_conv,
                  .tol = TOL_SUM,
                  .specials = true};
    check_case(cpu, gpu, "depthwise conv with NaN/Inf", &c, 276);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* Three SGD steps in one context per device (tg_step_end between them: the arena's
 * blocks are reused), parameters compared after every step. */
START_TEST(multi_step_training) {
    tg_error_clear();
    tg_forum50_opts o = {.separable = true, .loss = TG_LOSS_CE, .channels = 8, .layers = 5,
                         .relu = true, .bn = true};
    tg_model *m[2] = {tg_forum50_new(o, TG_DEVICE_CPU, 7), tg_forum50_new(o, TG_DEVICE_CUDA, 7)};
    if (!model_pair("forum50 multi-step", m[0], m[1])) return;
    const tg_device dev[2] = {TG_DEVICE_CPU, TG_DEVICE_CUDA};
    tg_ctx *ctx[2];
    tg_optim *opt[2];
    for (int d = 0; d < 2; d++) {
        ctx[d] = new_ctx(dev[d]);
        opt[d] = tg_sgd_new(tg_model_params(m[d]), (tg_sgd_opts){.lr = 0.05f, .momentum = 0.9f});
        ck_assert(opt[d]);
    }
    int32_t targets[2 * 16 * 16];
    tg_rng rng;
    tg_rng_seed(&rng, 280);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 2 * 16 * 16; i++) targets[i] = (int32_t)tg_rng_below(&rng, 10);
        float *x = random_host(2 * 3 * 16 * 16, -1, 1, 281 + (uint64_t)step);
        float loss[2];
        for (int d = 0; d < 2; d++) {
            ck_assert(tg_optim_zero_grad(opt[d]) == TG_OK);
            tg_tensor *out = tg_model_forward(ctx[d], m[d],
                                              tg_tensor_from(ctx[d], tg_shape4(2, 3, 16, 16), x), true);
            tg_tensor *l = tg_cross_entropy(ctx[d], out, targets);
            ck_assert_msg(l && tg_backward(ctx[d], l) == TG_OK, "%s", tg_error_message());
            ck_assert(tg_tensor_to_host(l, &loss[d], false) == TG_OK);
            ck_assert_msg(tg_optim_step(opt[d]) == TG_OK, "%s", tg_error_message());
            tg_step_end(ctx[d]);
        }
        char what[128];
        snprintf(what, sizeof what, "multi-step: loss of step %d (cpu %.7g, cuda %.7g)", step + 1,
                 loss[0], loss[1]);
        expect_norm_match(what, &loss[1], &loss[0], 1);
        tg_params *pc = tg_model_params(m[0]), *pg = tg_model_params(m[1]);
        for (int i = 0; i < tg_params_count(pc); i++) {
            float *c = host_copy(tg_params_at(pc, i), false), *g = host_copy(tg_params_at(pg, i), false);
            snprintf(what, sizeof what, "multi-step: %s after step %d", tg_params_at(pc, i)->name,
                     step + 1);
            expect_norm_match(what, g, c, tg_params_at(pc, i)->numel);
            free(c);
            free(g);
        }
        free(x);
    }
    for (int d = 0; d < 2; d++) {
        tg_optim_free(opt[d]);
        tg_ctx_free(ctx[d]);
        tg_model_free(m[d]);
    }
    tg_expect_ok("multi-step training");
}
END_TEST

static bool same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* The same training step twice on the GPU (fresh models from one seed): the loss, every
 * gradient and every parameter bit for bit (no atomics, fixed reduction orders). */
START_TEST(determinism) {
    tg_error_clear();
    const int32_t targets[2] = {3, 7};
    for (int k = 0; k < 2; k++) {
        tg_mobilenet_opts o = {.groups = k ? 4 : 0, .width = 0.25f, .num_classes = 10};
        float *x = random_host(2 * 3 * 64 * 64, -1, 1, 290);
        model_result r[2] = {{0}};
        tg_model *m[2];
        for (int run = 0; run < 2; run++) {
            m[run] = tg_mobilenet_new(o, TG_DEVICE_CUDA, 42);
            ck_assert_msg(m[run], "%s", tg_error_message());
            model_run(m[run], TG_DEVICE_CUDA, tg_shape4(2, 3, 64, 64), x, targets, NULL, &r[run]);
        }
        ck_assert_msg(same_bits(&r[0].loss, &r[1].loss, 1), "determinism: loss %.9g then %.9g",
                      r[0].loss, r[1].loss);
        tg_params *ps = tg_model_params(m[0]);
        for (int i = 0; i < r[0].count; i++) {
            const tg_tensor *t = tg_params_at(ps, i);
            if (r[0].grad[i])
                ck_assert_msg(same_bits(r[0].grad[i], r[1].grad[i], t->numel),
                              "determinism (groups %d): gradient of %s differs between runs",
                              o.groups, t->name);
            ck_assert_msg(same_bits(r[0].value[i], r[1].value[i], t->numel),
                          "determinism (groups %d): %s differs between runs", o.groups, t->name);
            for (int run = 0; run < 2; run++) free(r[run].grad[i]), free(r[run].value[i]);
        }
        tg_model_free(m[0]);
        tg_model_free(m[1]);
        free(x);
    }
    tg_expect_ok("determinism");
}
END_TEST

/* TG_ARENA_POISON: first that it works (a fresh uninitialised tensor is all NaN), then
 * the conv grid, batchnorm, pools and a model step with every arena allocation poisoned:
 * a kernel that reads memory nothing wrote this step now reads NaN and fails. */
START_TEST(poisoned_arena) {
    setenv("TG_ARENA_POISON", "1", 1);
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    tg_tensor *t = tg_tensor_new(gpu, tg_shape1(1000));
    ck_assert(t);
    float *h = host_copy(t, false);
    for (int i = 0; i < 1000; i++) ck_assert_msg(isnan(h[i]), "poison: element %d is %g", i, h[i]);
    free(h);
    tg_step_end(gpu);
    uint64_t seed = 300;
    for (int gi = 0; gi < 4; gi++)
        for (int s = 1; s <= 2; s++)
            for (int k = 1; k <= 3; k += 2) {
                const int groups[] = {1, 2, 4, 4}, couts[] = {4, 4, 4, 8};
                conv_cfg cfg = {.N = 3, .C_in = 4, .C_out = couts[gi], .H = 7, .W = 9, .K = k,
                                .stride = s, .pad = k / 2, .dil = 1, .groups = groups[gi],
                                .bias = true};
                check_conv(cpu, gpu, &cfg, seed++);
            }
    conv_any a = {2, 40, 80, 29, 45, 3, 5, opts2(2, 1, 1, 2, 1, 2, 40), true};
    check_conv_any(cpu, gpu, "poisoned", &a, seed++);
    bn_cfg b = {.training = true, .momentum = 0.1f, .eps = 1e-5f};
    tg_shape cs = tg_shape1(8);
    op_case c = {.ninputs = 5,
                 .shape = {tg_shape4(4, 8, 64, 64), cs, cs, cs, cs},
                 .grad = {true, true, true},
                 .lo = 0.5f,
                 .hi = 2.0f,
                 .run = run_bn,
                 .user = &b,
                 .tol = TOL_SUM};
    check_case(cpu, gpu, "poisoned batchnorm", &c, seed++);
    const tg_pool2d_opts po = tg_pool2d_opts_make(3, 2, 1);
    c = unary(tg_shape4(2, 3, 9, 11), run_max_pool, &po, -1, 1, TOL_EXACT);
    check_case(cpu, gpu, "poisoned max_pool2d", &c, seed++);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
    const int32_t targets[2] = {3, 7};
    tg_mobilenet_opts o = {.groups = 4, .width = 0.25f, .num_classes = 10};
    tg_model *mc = tg_mobilenet_new(o, TG_DEVICE_CPU, 42), *mg = tg_mobilenet_new(o, TG_DEVICE_CUDA, 42);
    if (model_pair("poisoned mobilenet", mc, mg))
        model_compare("poisoned mobilenet groups 4", mc, mg, tg_shape4(2, 3, 64, 64), targets, NULL);
    tg_model_free(mc);
    tg_model_free(mg);
    unsetenv("TG_ARENA_POISON");
    tg_expect_ok("poisoned arena");
}
END_TEST

/* ---------------------------------------------------------------- issue 15, second round:
 * depthwise tiles sized to small planes, the chunked conv bias reduction, staged
 * host-to-device copies, and the 64-bit index path of the element-wise kernels. */

/* Depthwise planes of every tiling: 7x7 (8x8 tiles, 4 per block), 14x14 (one 16x16),
 * 3x3 (one warp), odd sizes (tiles cut by the plane's edge), plane counts that leave a
 * block's last tile slots empty, strides, dilation, channel multipliers; conv1d rows
 * (32x1 tiles). */
START_TEST(depthwise_small_planes) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const conv_any cfgs[] = {
        {3, 64, 64, 7, 7, 3, 3, opts2(1, 1, 1, 1, 1, 1, 64), true},   /* 192 planes: full blocks */
        {1, 37, 37, 7, 7, 3, 3, opts2(1, 1, 1, 1, 1, 1, 37), true},   /* last block 1 of 4 tiles */
        {2, 19, 57, 7, 7, 3, 3, opts2(1, 1, 1, 1, 1, 1, 19), false},  /* multiplier 3 */
        {2, 24, 24, 14, 14, 3, 3, opts2(1, 1, 1, 1, 1, 1, 24), true}, /* 16x16 tiles */
        {2, 24, 24, 14, 14, 3, 3, opts2(2, 2, 1, 1, 1, 1, 24), true}, /* 14 -> 7 */
        {4, 10, 10, 3, 3, 3, 3, opts2(1, 1, 1, 1, 1, 1, 10), true},   /* 3x3: one warp */
        {3, 9, 9, 3, 3, 3, 3, opts2(1, 1, 0, 0, 1, 1, 9), true},      /* 1x1 output */
        {2, 13, 26, 5, 11, 3, 3, opts2(1, 2, 1, 1, 1, 1, 13), true},  /* odd, s 1,2 */
        {1, 6, 6, 9, 1, 3, 1, opts2(1, 1, 1, 0, 1, 1, 6), true},      /* one column */
        {2, 7, 7, 13, 17, 3, 3, opts2(2, 2, 2, 2, 2, 2, 7), true},    /* dilation 2 */
        {2, 5, 10, 17, 9, 5, 5, opts2(1, 1, 2, 2, 1, 1, 5), true},    /* 5x5 */
        {1, 8, 8, 33, 33, 3, 3, opts2(1, 1, 1, 1, 1, 1, 8), true},    /* 32-wide + 1 */
        {2, 16, 16, 28, 28, 3, 3, opts2(1, 1, 1, 1, 1, 1, 16), true}, /* rpt 2 */
        {1, 4, 4, 140, 6, 3, 3, opts2(1, 1, 1, 1, 1, 1, 4), true},    /* tall: 8 wide, rpt 4 */
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        check_conv_any(cpu, gpu, "depthwise small planes", &cfgs[i], 400 + i);
    /* conv1d rows: H = 1, 32x1 tiles, several per block. */
    const conv_cfg rows[] = {
        {.N = 2, .C_in = 12, .C_out = 12, .W = 100, .K = 3, .stride = 1, .pad = 1, .dil = 1,
         .groups = 12, .bias = true, .is1d = true},
        {.N = 3, .C_in = 5, .C_out = 10, .W = 7, .K = 5, .stride = 2, .pad = 2, .dil = 1,
         .groups = 5, .bias = true, .is1d = true},
    };
    for (size_t i = 0; i < 2; i++) check_conv(cpu, gpu, &rows[i], 420 + i);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* The conv bias gradient as chunked partials: planes of 1, 49, 256, 300 and 16384
 * pixels (smaller and larger than a block, so the (n, p) stepping wraps both ways), over
 * enough values per channel that each channel is cut into several chunks. */
START_TEST(conv_bias_chunked) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const conv_any cfgs[] = {
        {5000, 3, 2, 1, 1, 1, 1, opts2(1, 1, 0, 0, 1, 1, 1), true},    /* P = 1 */
        {100, 6, 4, 7, 7, 1, 1, opts2(1, 1, 0, 0, 1, 1, 1), true},     /* P = 49, pointwise */
        {16, 2, 2, 16, 16, 3, 3, opts2(1, 1, 1, 1, 1, 1, 1), true},    /* P = 256 */
        {10, 3, 3, 15, 20, 3, 3, opts2(1, 1, 1, 1, 1, 1, 1), true},    /* P = 300 */
        {1, 2, 4, 128, 128, 3, 3, opts2(1, 1, 1, 1, 1, 1, 1), true},   /* P = 16384 */
        {40, 8, 8, 10, 10, 3, 3, opts2(1, 1, 1, 1, 1, 1, 2), true},    /* grouped */
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        check_conv_any(cpu, gpu, "conv bias (chunked)", &cfgs[i], 440 + i);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* Host-to-device copies are staged and do not wait: the caller's target array is
 * overwritten right after each tg_cross_entropy call, six times in one step (more uses
 * than staging slots, so a slot is reused while earlier copies may still be queued), and
 * every loss must still be the CPU's on the original targets. Then an upload larger than
 * a staging slot (it goes in pieces) and a run of small ones, read back bit for bit. */
START_TEST(staged_copies) {
    enum { N = 4, C = 7, HW = 300, COUNT = N * HW, CALLS = 6 };
    float *x = random_host(N * C * HW, -3, 3, 460);
    int32_t *orig = malloc(CALLS * COUNT * sizeof *orig), *host = malloc(COUNT * sizeof *host);
    ck_assert(orig && host);
    tg_rng rng;
    tg_rng_seed(&rng, 461);
    for (int i = 0; i < CALLS * COUNT; i++) orig[i] = (int32_t)tg_rng_below(&rng, C);
    float loss[2][CALLS];
    const tg_device dev[2] = {TG_DEVICE_CPU, TG_DEVICE_CUDA};
    for (int d = 0; d < 2; d++) {
        tg_ctx *ctx = new_ctx(dev[d]);
        tg_tensor *logits = tg_tensor_from(ctx, tg_shape4(N, C, 15, 20), x);
        tg_tensor *l[CALLS];
        for (int k = 0; k < CALLS; k++) {
            memcpy(host, orig + k * COUNT, COUNT * sizeof *host);
            l[k] = tg_cross_entropy(ctx, logits, host);
            ck_assert_msg(l[k], "%s", tg_error_message());
            for (int i = 0; i < COUNT; i++) host[i] = (host[i] + 1) % C; /* reuse at once */
        }
        for (int k = 0; k < CALLS; k++)
            ck_assert(tg_tensor_to_host(l[k], &loss[d][k], false) == TG_OK);
        tg_ctx_free(ctx);
    }
    for (int k = 0; k < CALLS; k++)
        ck_assert_msg(fabs((double)loss[1][k] - loss[0][k]) <= TOL_SUM * fabs((double)loss[0][k]),
                      "staged copies: loss %d is %.9g on the GPU, %.9g on the CPU", k,
                      (double)loss[1][k], (double)loss[0][k]);
    free(orig);
    free(host);
    free(x);
    /* 5M floats (20 MB: two pieces through the 16 MiB slots), then 9 small uploads from
     * one host buffer rewritten between them. */
    tg_ctx *gpu = new_ctx(TG_DEVICE_CUDA);
    const int64_t big = 5 << 20;
    float *h = random_host(big, -1, 1, 462);
    tg_tensor *t = tg_tensor_from(gpu, tg_shape1(big), h);
    ck_assert_msg(t, "%s", tg_error_message());
    float *back = host_copy(t, false);
    ck_assert_msg(same_bits(back, h, big), "staged copies: a 20 MB upload came back different");
    free(back);
    tg_tensor *small[9];
    for (int k = 0; k < 9; k++) {
        for (int i = 0; i < 1000; i++) h[i] = (float)(k * 1000 + i);
        small[k] = tg_tensor_from(gpu, tg_shape1(1000), h);
        ck_assert(small[k]);
    }
    for (int k = 0; k < 9; k++) {
        back = host_copy(small[k], false);
        for (int i = 0; i < 1000; i++)
            ck_assert_msg(back[i] == (float)(k * 1000 + i),
                          "staged copies: upload %d element %d is %g", k, i, (double)back[i]);
        free(back);
    }
    free(h);
    tg_ctx_free(gpu);
    tg_expect_ok("staged copies");
}
END_TEST

#ifdef TG_HAVE_CUDA
/* The 64-bit index path: tensors of more than INT32_MAX elements (8.6 GB each) through
 * the batchnorm forward and the global average pool's backward, checked at the channel
 * boundary and around index 2^31 against the same arithmetic on the host. Skipped (with
 * a note) on GPUs with under 40 GB. */
static float dev_at(const float *p, int64_t i) {
    float v = 0;
    ck_assert(tg_cuda_copy(&v, false, p + i, true, sizeof v) == TG_OK);
    return v;
}

START_TEST(index_paths_64bit) {
    tg_cuda_info info;
    ck_assert(tg_cuda_device_info(&info) == TG_OK);
    if (info.global_bytes < ((int64_t)40 << 30)) {
        printf("test_cuda: index_paths_64bit skipped: %.1f GB on the GPU, 40 needed\n",
               (double)info.global_bytes / 1e9);
        return;
    }
    const int64_t C = 2, HW = ((int64_t)1 << 30) + 7, total = C * HW; /* > INT32_MAX */
    float *x = tg_device_alloc(TG_DEVICE_CUDA, (size_t)total * sizeof(float));
    float *y = tg_device_alloc(TG_DEVICE_CUDA, (size_t)total * sizeof(float));
    float *small = tg_device_alloc(TG_DEVICE_CUDA, 8 * sizeof(float));
    ck_assert_msg(x && y && small, "%s", tg_error_message());
    ck_assert(tg_cuda_fill_random(x, total, 470) == TG_OK);
    const float stats[8] = {0.25f, -0.5f, 2.0f, 0.5f, 1.5f, -1.0f, 0.125f, 3.0f};
    ck_assert(tg_cuda_copy(small, true, stats, false, sizeof stats) == TG_OK);
    /* mean = small[0..1], rstd = [2..3], weight = [4..5], bias = [6..7] */
    ck_assert(batchnorm_forward_cuda(y, x, small, small + 2, small + 4, small + 6, 1, C, HW) ==
              TG_OK);
    const int64_t at[] = {0, HW - 1, HW, HW + 1, INT32_MAX - 1, INT32_MAX,
                          (int64_t)INT32_MAX + 1, total - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        int64_t i = at[k], c = i / HW;
        float scale = stats[2 + c] * stats[4 + c], shift = stats[6 + c] - stats[c] * scale;
        double want = (double)dev_at(x, i) * scale + shift, got = dev_at(y, i);
        ck_assert_msg(fabs(got - want) <= 1e-6 * (fabs(want) + 1),
                      "64-bit batchnorm: y[%lld] (channel %lld) is %.9g, want %.9g",
                      (long long)i, (long long)c, got, want);
    }
    /* dx (zeroed) += dy[p] / HW for the 2 planes: 1.5 / HW, then -1 / HW. */
    ck_assert(tg_cuda_zero(y, (size_t)total * sizeof(float)) == TG_OK);
    ck_assert(global_avg_pool_backward_cuda(y, small + 4, C, HW) == TG_OK);
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        int64_t i = at[k], c = i / HW;
        float want = stats[4 + c] / (float)HW, got = dev_at(y, i);
        ck_assert_msg(got == want, "64-bit global_avg_pool backward: dx[%lld] is %.9g, want %.9g",
                      (long long)i, (double)got, (double)want);
    }
    tg_device_free(TG_DEVICE_CUDA, x);
    tg_device_free(TG_DEVICE_CUDA, y);
    tg_device_free(TG_DEVICE_CUDA, small);
    tg_expect_ok("64-bit index paths");
}
END_TEST
#endif

/* Two cases so that bench/gpu_check.sh can run the first under compute-sanitizer
 * (CK_RUN_CASE=cuda_small_planes) without the 17 GB of the second. */
TCase *issue15b_tcase(void) {
    TCase *tc = tg_test_case("cuda_small_planes");
    tcase_add_test(tc, depthwise_small_planes);
    tcase_add_test(tc, conv_bias_chunked);
    tcase_add_test(tc, staged_copies);
    return tc;
}

TCase *issue15b_huge_tcase(void) {
    TCase *tc = tg_test_case("cuda_huge");
#ifdef TG_HAVE_CUDA
    tcase_add_test(tc, index_paths_64bit);
#endif
    return tc;
}

void cuda_edge_tests(TCase *tc) {
    tcase_add_test(tc, depthwise_fallback);
    tcase_add_test(tc, depthwise_asymmetric);
    tcase_add_test(tc, pool_asymmetric);
    tcase_add_test(tc, reductions_many_blocks);
    tcase_add_test(tc, nan_inf);
    tcase_add_test(tc, multi_step_training);
    tcase_add_test(tc, determinism);
    tcase_add_test(tc, poisoned_arena);
}
