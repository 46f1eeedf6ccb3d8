/*
 * tests/test_cuda_train.c — CPU vs CUDA for training: the fused optimizers, the issue 12
 * part C ops (softmax, layernorm, dropout, embedding, nll, bce), clipping and schedules,
 * and one training step of the forum50 and MobileNet models (tests/cuda_parity.h).
 */
#include "cuda_parity.h"

/* ---------------------------------------------------------------- optimizers */

typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;

typedef struct opt_cfg {
    opt_kind kind;
    tg_sgd_opts sgd;
    struct {
        double lr, weight_decay;
        bool beta1_zero, eps_zero; /* else PyTorch's 0.9 and 1e-8 */
    } adam;
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
    tg_adam_opts ao = tg_adam_opts_default();
    ao.lr = c->adam.lr;
    ao.weight_decay = c->adam.weight_decay;
    if (c->adam.beta1_zero) ao.beta1 = 0;
    if (c->adam.eps_zero) ao.eps = 0;
    tg_optim *o = c->kind == OPT_SGD    ? tg_sgd_new(ps, c->sgd)
                  : c->kind == OPT_ADAM ? tg_adam_new(ps, ao)
                                        : tg_adamw_new(ps, ao);
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
        {.kind = OPT_ADAM, .adam = {.lr = 0.01f, .beta1_zero = true}, .name = "adam beta1 0"},
        {.kind = OPT_ADAMW,
         .adam = {.lr = 0.01f, .weight_decay = 0.1f, .beta1_zero = true, .eps_zero = true},
         .name = "adamw beta1 0 eps 0"},
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

/* ---------------------------------------------------------------- issue 12, part C */

typedef struct partc_cfg {
    int dim, k;
    bool log, causal, affine;
    const int32_t *idx;
    tg_shape idx_shape;
} partc_cfg;

static tg_tensor *run_softmax(tg_ctx *ctx, tg_tensor **in, const void *u) {
    const partc_cfg *c = u;
    tg_tensor *x = c->causal ? tg_causal_mask(ctx, in[0]) : in[0];
    return c->log ? tg_log_softmax(ctx, x, c->dim) : tg_softmax(ctx, x, c->dim);
}
static tg_tensor *run_layernorm(tg_ctx *ctx, tg_tensor **in, const void *u) {
    const partc_cfg *c = u;
    return tg_layer_norm(ctx, in[0], c->k, in[1], in[2], 1e-5f);
}
static tg_tensor *run_dropout(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    tg_ctx_seed(ctx, 4242); /* the same key on both devices: the same mask */
    return tg_dropout(ctx, tg_dropout(ctx, in[0], 0.3f, true), 0.5f, true);
}
static tg_tensor *run_embedding(tg_ctx *ctx, tg_tensor **in, const void *u) {
    const partc_cfg *c = u;
    return tg_embedding(ctx, in[0], c->idx, c->idx_shape);
}
static tg_tensor *run_nll(tg_ctx *ctx, tg_tensor **in, const void *u) {
    return tg_nll_loss(ctx, in[0], ((const partc_cfg *)u)->idx);
}
static tg_tensor *run_bce(tg_ctx *ctx, tg_tensor **in, const void *u) {
    (void)u;
    return tg_bce_with_logits(ctx, in[0], in[1]);
}

/* softmax / log_softmax along every dim (strided and row kernels, a long row), the causal
 * mask, layer norm over 1 and 2 dims with and without affine, dropout (identical masks),
 * embedding with repeated indices, NLL with ignored targets, BCE. */
START_TEST(partc_ops) {
    tg_ctx *cpu = new_ctx(TG_DEVICE_CPU), *gpu = new_ctx(TG_DEVICE_CUDA);
    char what[96];
    uint64_t seed = 200;
    tg_shape s4 = tg_shape4(3, 4, 5, 6);
    for (int log = 0; log <= 1; log++) {
        for (int dim = -1; dim < 4; dim++) {
            partc_cfg cfg = {.dim = dim, .log = log};
            op_case c = unary(dim < 0 ? tg_shape2(7, 1500) : s4, run_softmax, &cfg, -6, 6,
                              TOL_SUM);
            snprintf(what, sizeof what, "%s dim %d", log ? "log_softmax" : "softmax", dim);
            check_case(cpu, gpu, what, &c, seed++);
        }
    }
    partc_cfg causal = {.dim = -1, .causal = true};
    op_case c = unary(tg_shape4(2, 3, 9, 9), run_softmax, &causal, -3, 3, TOL_SUM);
    check_case(cpu, gpu, "causal mask + softmax", &c, seed++);
    const tg_shape lns[] = {tg_shape3(4, 5, 24), tg_shape2(3, 700)};
    for (int si = 0; si < 2; si++) {
        for (int k = 1; k <= 2; k++) {
            for (int affine = 0; affine <= 1; affine++) {
                partc_cfg cfg = {.k = k};
                tg_shape xs = lns[si], ws = {.ndim = k};
                for (int j = 0; j < k; j++) ws.dim[j] = xs.dim[xs.ndim - k + j];
                c = unary(xs, run_layernorm, &cfg, -2, 2, TOL_SUM);
                c.ninputs = 3;
                c.shape[1] = affine ? ws : ABSENT;
                c.shape[2] = affine ? ws : ABSENT;
                c.grad[1] = c.grad[2] = affine;
                snprintf(what, sizeof what, "layer_norm shape %d k %d affine %d", si, k, affine);
                check_case(cpu, gpu, what, &c, seed++);
            }
        }
    }
    c = unary(tg_shape3(5, 7, 300), run_dropout, NULL, -2, 2, TOL_EXACT);
    check_case(cpu, gpu, "dropout", &c, seed++);
    int32_t idx[200], tgt[200];
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    for (int i = 0; i < 200; i++) idx[i] = (int32_t)tg_rng_below(&rng, 13);
    partc_cfg emb = {.idx = idx, .idx_shape = tg_shape2(8, 25)};
    c = unary(tg_shape2(13, 40), run_embedding, &emb, -1, 1, TOL_SUM);
    check_case(cpu, gpu, "embedding", &c, seed++);
    const tg_shape nls[] = {tg_shape2(40, 9), tg_shape3(4, 6, 10), tg_shape4(2, 5, 4, 3)};
    for (int si = 0; si < 3; si++) {
        int64_t C = nls[si].dim[1], positions = tg_shape_numel(nls[si]) / C;
        for (int64_t i = 0; i < positions; i++)
            tgt[i] = i % 5 == 2 ? TG_IGNORE_INDEX : (int32_t)tg_rng_below(&rng, C);
        partc_cfg nc = {.idx = tgt};
        c = unary(nls[si], run_nll, &nc, -4, 0, TOL_SUM);
        snprintf(what, sizeof what, "nll_loss shape %d", si);
        check_case(cpu, gpu, what, &c, seed++);
    }
    c = unary(tg_shape3(6, 7, 50), run_bce, NULL, -5, 5, TOL_SUM);
    c.ninputs = 2;
    c.shape[1] = c.shape[0];
    c.grad[1] = true;
    check_case(cpu, gpu, "bce_with_logits", &c, seed++);
    tg_ctx_free(cpu);
    tg_ctx_free(gpu);
}
END_TEST

/* Clipping on a CUDA store: the same norm and gradients as on the CPU (clipping and not),
 * then AdamW steps at the rates of a warm-up + cosine schedule. */
START_TEST(partc_clip_schedule) {
    tg_error_clear();
    tg_params *pc = opt_store(TG_DEVICE_CPU), *pg = opt_store(TG_DEVICE_CUDA);
    opt_fill(pc, false, 1);
    opt_fill(pg, false, 1);
    opt_cfg cfg = {.kind = OPT_ADAMW, .adam = {.lr = 0.01f, .weight_decay = 0.1f}, .name = "adamw"};
    tg_optim *oc = opt_new(pc, &cfg), *og = opt_new(pg, &cfg);
    tg_lr_schedule sched = tg_lr_cosine(0.01f, 0.001f, 2, 6);
    const float max_norms[] = {1.0f, 100.0f, 0.5f, 3.0f};
    for (int step = 0; step < 4; step++) {
        opt_fill(pc, true, 30 + step);
        opt_fill(pg, true, 30 + step);
        float nc = -1, ng = -2;
        ck_assert(tg_clip_grad_norm(pc, max_norms[step], &nc) == TG_OK);
        ck_assert_msg(tg_clip_grad_norm(pg, max_norms[step], &ng) == TG_OK, "%s",
                      tg_error_message());
        ck_assert_msg(fabsf(nc - ng) <= 1e-6f * nc, "norm cpu %g cuda %g", nc, ng);
        tg_optim_set_lr(oc, tg_lr_at(&sched, step));
        tg_optim_set_lr(og, tg_lr_at(&sched, step));
        for (int i = 0; i < tg_params_count(pc); i++) {
            float *c = host_copy(tg_params_at(pc, i), true), *g = host_copy(tg_params_at(pg, i), true);
            char what[64];
            snprintf(what, sizeof what, "clipped gradient %d step %d", i, step);
            expect_match(what, g, c, tg_params_at(pc, i)->numel, TOL_EXACT);
            free(c), free(g);
        }
        ck_assert(tg_optim_step(oc) == TG_OK && tg_optim_step(og) == TG_OK);
        for (int i = 0; i < tg_params_count(pc); i++) {
            float *c = host_copy(tg_params_at(pc, i), false), *g = host_copy(tg_params_at(pg, i), false);
            char what[64];
            snprintf(what, sizeof what, "param %d after step %d", i, step);
            expect_match(what, g, c, tg_params_at(pc, i)->numel, TOL_EXACT);
            free(c), free(g);
        }
    }
    tg_optim_free(oc);
    tg_optim_free(og);
    tg_params_free(pc);
    tg_params_free(pg);
    tg_expect_ok("clip + schedule");
}
END_TEST

/* ---------------------------------------------------------------- models */

/* ||g - c||_2 <= tol ||c||_2 (and a tiny absolute floor for all-zero tensors). */
void expect_norm_match(const char *what, const float *g, const float *c, int64_t n) {
    double diff = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        diff += ((double)g[i] - c[i]) * ((double)g[i] - c[i]);
        ref += (double)c[i] * c[i];
    }
    ck_assert_msg(sqrt(diff) <= TOL_MODEL * sqrt(ref) + 1e-12,
                  "%s: relative L2 error %.3g > %.3g (|cpu| = %.6g)", what,
                  sqrt(diff) / (sqrt(ref) + 1e-30), TOL_MODEL, sqrt(ref));
}

/* One training step on `device`: forward (training mode), a CE (targets) or MSE loss,
 * backward, then one SGD step (momentum 0.9). Keeps the loss, every gradient (before the
 * step) and every parameter and buffer (after it) on the host. */
void model_run(tg_model *m, tg_device device, tg_shape xs, const float *x,
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

void model_compare(const char *name, tg_model *mc, tg_model *mg, tg_shape xs,
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
bool model_pair(const char *name, tg_model *mc, tg_model *mg) {
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

void cuda_train_tests(TCase *tc) {
    tcase_add_test(tc, optimizers);
    tcase_add_test(tc, partc_ops);
    tcase_add_test(tc, partc_clip_schedule);
    tcase_add_test(tc, forum50_step);
    tcase_add_test(tc, mobilenet_step);
}
