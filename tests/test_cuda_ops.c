/*
 * tests/test_cuda_ops.c — CPU vs CUDA, op by op: relu/relu6, add, flatten, linear, matmul,
 * layout, reductions, batchnorm, pools, losses, broadcasting binaries and the unary
 * functions (tests/cuda_parity.h; tolerances in tests/test_cuda.c's opening comment).
 */
#include "cuda_parity.h"

/* ---------------------------------------------------------------- the other ops */

tg_tensor *run_relu(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_relu(ctx, in[0]);
}
tg_tensor *run_relu6(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_relu6(ctx, in[0]);
}
static tg_tensor *run_add(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_add(ctx, in[0], in[1]);
}
tg_tensor *run_add_self(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_add(ctx, in[0], in[0]);
}
static tg_tensor *run_flatten_relu(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_relu(ctx, tg_reshape(ctx, tg_flatten(ctx, in[0]), tg_shape1(-1)));
}
tg_tensor *run_linear(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_linear(ctx, in[0], in[1], in[2]);
}
tg_tensor *run_gap(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_global_avg_pool(ctx, in[0]);
}
tg_tensor *run_max_pool(tg_ctx *ctx, tg_tensor **in, const void *u) {
    return tg_max_pool2d(ctx, in[0], *(const tg_pool2d_opts *)u);
}
tg_tensor *run_avg_pool(tg_ctx *ctx, tg_tensor **in, const void *u) {
    return tg_avg_pool2d(ctx, in[0], *(const tg_pool2d_opts *)u);
}
tg_tensor *run_mse(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_mse_loss(ctx, in[0], in[1]);
}
tg_tensor *run_ce(tg_ctx *ctx, tg_tensor **in, const void *u) {
    return tg_cross_entropy(ctx, in[0], u);
}

/* An op of one input that requires grad, inputs uniform in [lo, hi). */
op_case unary(tg_shape s, op_run run, const void *user, float lo, float hi, double tol) {
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

/* ---------------------------------------------------------------- part B (issue 12):
 * matmul, layout, reductions */

static tg_tensor *run_matmul(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_matmul(ctx, in[0], in[1]);
}

/* Batched, folded and broadcast-both-ways operands, with grads on both: every path of the
 * cuBLAS plan executor (one strided-batched call, a call per outer index, serial sums). */
START_TEST(matmul_op) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const tg_shape pairs[][2] = {
        {tg_shape2(33, 17), tg_shape2(17, 9)},
        {tg_shape4(2, 3, 7, 5), tg_shape4(2, 3, 5, 6)},
        {tg_shape3(4, 7, 5), tg_shape2(5, 6)},
        {tg_shape2(7, 5), tg_shape3(4, 5, 6)},
        {tg_shape4(2, 1, 7, 5), tg_shape4(1, 3, 5, 6)},
        {tg_shape4(2, 3, 7, 5), tg_shape4(2, 1, 5, 6)},
        {tg_shape4(1, 3, 7, 5), tg_shape4(2, 3, 5, 6)},
        {tg_shape3(3, 1, 5), tg_shape4(2, 1, 5, 1)},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        op_case c = {.ninputs = 2, .shape = {pairs[i][0], pairs[i][1]}, .grad = {true, true},
                     .lo = -1, .hi = 1, .run = run_matmul, .tol = TOL_SUM};
        char what[96], s0[40], s1[40];
        snprintf(what, sizeof what, "matmul %s @ %s", tg_shape_str(pairs[i][0], s0, sizeof s0),
                 tg_shape_str(pairs[i][1], s1, sizeof s1));
        check_case(cpu, gpu, what, &c, 300 + i);
    }
    /* tg_linear on (B, T, in). */
    op_case c = {.ninputs = 3, .shape = {tg_shape3(3, 5, 37), tg_shape2(11, 37), tg_shape1(11)},
                 .grad = {true, true, true}, .lo = -1, .hi = 1, .run = run_linear,
                 .tol = TOL_SUM};
    check_case(cpu, gpu, "linear (3, 5, 37)", &c, 320);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

typedef struct layout_cfg {
    int kind; /* 0 transpose, 1 permute, 2 concat of 3, 3 slice */
    int a, b;
    int perm[4];
} layout_cfg;

static tg_tensor *run_layout(tg_ctx *ctx, tg_tensor **in, const void *u) {
    const layout_cfg *k = u;
    switch (k->kind) {
    case 0: return tg_transpose(ctx, in[0], k->a, k->b);
    case 1: return tg_permute(ctx, in[0], k->perm);
    case 2: return tg_concat(ctx, in, 3, k->a);
    default: return tg_slice(ctx, in[0], k->a, k->b, -1);
    }
}

START_TEST(layout_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    tg_shape s = tg_shape4(3, 5, 37, 41);
    const layout_cfg cfgs[] = {
        {0, -1, -2, {0}}, {0, 0, 2, {0}}, {0, 1, 1, {0}},
        {1, 0, 0, {0, 2, 1, 3}}, {1, 0, 0, {3, 1, 0, 2}}, {1, 0, 0, {2, 3, 0, 1}},
        {3, 2, 3, {0}}, {3, -1, -30, {0}}, {3, 0, 1, {0}},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        op_case c = unary(s, run_layout, &cfgs[i], -1, 1, TOL_EXACT);
        char what[64];
        snprintf(what, sizeof what, "layout kind %d (%d, %d) #%zu", cfgs[i].kind, cfgs[i].a,
                 cfgs[i].b, i);
        check_case(cpu, gpu, what, &c, 400 + i);
    }
    for (int dim = -4; dim < 4; dim++) { /* concat of three along every dim */
        layout_cfg k = {2, dim, 0, {0}};
        op_case c = unary(s, run_layout, &k, -1, 1, TOL_EXACT);
        c.ninputs = 3;
        int d = dim < 0 ? dim + 4 : dim;
        for (int i = 1; i < 3; i++) {
            c.shape[i] = s;
            c.shape[i].dim[d] = i;
            c.grad[i] = i == 1;
        }
        char what[64];
        snprintf(what, sizeof what, "concat dim %d", dim);
        check_case(cpu, gpu, what, &c, 420 + d);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

typedef struct red_cfg {
    int kind; /* 0 sum, 1 mean, 2 max, 3 var, 4 var biased, 5 sum_all, 6 mean_all, 7 max_all */
    int dim;
    bool keepdim;
} red_cfg;

static tg_tensor *run_reduce(tg_ctx *ctx, tg_tensor **in, const void *u) {
    const red_cfg *k = u;
    switch (k->kind) {
    case 0: return tg_sum(ctx, in[0], k->dim, k->keepdim);
    case 1: return tg_mean(ctx, in[0], k->dim, k->keepdim);
    case 2: return tg_max(ctx, in[0], k->dim, k->keepdim);
    case 3: return tg_var(ctx, in[0], k->dim, k->keepdim, true);
    case 4: return tg_var(ctx, in[0], k->dim, k->keepdim, false);
    case 5: return tg_sum_all(ctx, in[0]);
    case 6: return tg_mean_all(ctx, in[0]);
    default: return tg_max_all(ctx, in[0]);
    }
}

/* Every reduction along every dim (rows: the two-stage path; columns: the per-thread
 * path), a long row (many chunks), and inputs that are all equal (ties: max goes to the
 * first index, max_all spreads evenly, on both devices). */
START_TEST(reduce_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    const tg_shape shapes[] = {tg_shape4(3, 5, 7, 9), tg_shape2(3, 70001)};
    uint64_t seed = 500;
    for (int si = 0; si < 2; si++)
        for (int k = 0; k < 8; k++)
            for (int dim = -1; dim < shapes[si].ndim; dim++) {
                if (k >= 5 && dim != -1) continue;
                red_cfg cfg = {k, dim, dim == 1};
                bool sums = k != 2 && k != 7;
                op_case c = unary(shapes[si], run_reduce, &cfg, -1, 1,
                                  sums ? TOL_SUM : TOL_EXACT);
                char what[64];
                snprintf(what, sizeof what, "reduce kind %d dim %d shape %d", k, dim, si);
                check_case(cpu, gpu, what, &c, seed++);
            }
    for (int k = 2; k <= 7; k += 5) { /* ties */
        red_cfg cfg = {k, 1, false};
        op_case c = unary(tg_shape3(4, 3000, 3), run_reduce, &cfg, 0.5f, 0.5f, TOL_EXACT);
        check_case(cpu, gpu, k == 2 ? "max ties" : "max_all ties", &c, seed++);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

tg_tensor *run_bn(tg_ctx *ctx, tg_tensor **in, const void *u) {
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
    /* (N, C), (N, C, L) and per-pixel (N, C, H, W) logits with integer targets; the last
     * three again with every 5th target ignored (-100) and with logits near 1e5. */
    const tg_shape shapes[] = {tg_shape2(5, 7),        tg_shape2(1, 3), tg_shape4(2, 4, 5, 6),
                               tg_shape4(1, 10, 16, 16), tg_shape3(3, 5, 40)};
    for (int i = 0; i < 5 * 3; i++) {
        tg_shape ls = shapes[i % 5];
        int variant = i / 5; /* 0 plain, 1 ignored targets, 2 logits near 1e5 */
        if (variant > 0 && i % 5 < 2) continue;
        int64_t count = ls.dim[0];
        for (int d = 2; d < ls.ndim; d++) count *= ls.dim[d];
        int32_t *target = malloc((size_t)count * sizeof *target);
        tg_rng rng;
        tg_rng_seed(&rng, 60 + i);
        for (int64_t j = 0; j < count; j++)
            target[j] = variant == 1 && j % 5 == 0 ? -100 : (int32_t)tg_rng_below(&rng, ls.dim[1]);
        float lo = variant == 2 ? 1e5f - 4 : -4, hi = variant == 2 ? 1e5f + 4 : 4;
        c = unary(ls, run_ce, target, lo, hi, TOL_SUM);
        char what[96], sh[64];
        snprintf(what, sizeof what, "cross_entropy %s%s", tg_shape_str(ls, sh, sizeof sh),
                 variant == 1 ? " ignore_index" : variant == 2 ? " near 1e5" : "");
        check_case(cpu, gpu, what, &c, 70 + i);
        free(target);
    }
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* ---------------------------------------------------------------- issue 12 part A:
 * broadcasting binary ops and the unary functions (ops/elementwise.c, ops/unary.c).
 * Broadcast gradients are sums (TOL_SUM); the unary functions share ops/unary.h's math
 * with the CPU but the device contracts multiply-adds into FMAs and has its own
 * logf/powf, a few ulps apart (TOL_SUM too). */

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

void cuda_ops_tests(TCase *tc) {
    tcase_add_test(tc, elementwise_ops);
    tcase_add_test(tc, broadcast_ops);
    tcase_add_test(tc, unary_ops);
    tcase_add_test(tc, linear_op);
    tcase_add_test(tc, matmul_op);
    tcase_add_test(tc, layout_ops);
    tcase_add_test(tc, reduce_ops);
    tcase_add_test(tc, batchnorm_op);
    tcase_add_test(tc, pool_ops);
    tcase_add_test(tc, loss_ops);
}
