/*
 * tests/test_bad_input.c — every public entry point called with bad input: mismatched
 * shapes, wrong ranks, groups that don't divide the channels, targets out of range, bad
 * options, NULL. Each row must return NULL (or a non-OK status), record the expected
 * status, name the op and the argument in its message, and leave everything the caller
 * owns (parameters, buffers, gradients, optimizer state) bit-for-bit unchanged.
 */
#include "testutil.h"

#include "../core/core.h"

#include <string.h>
#include <zlib.h>

typedef struct world {
    tg_ctx *ctx;
    tg_params *ps;
    tg_tensor *x;          /* (2, 4, 6, 6) step tensor */
    tg_tensor *w, *b;      /* conv weight (8, 4, 3, 3), bias (8) */
    tg_tensor *bn_w, *bn_b, *rm, *rv; /* batchnorm over 4 channels */
    tg_tensor *fc_w, *fc_b;           /* linear 10 -> 3 */
    tg_tensor *x2;         /* (5, 10) */
} world;

/* Each case returns the result pointer (or NULL) and a status (TG_OK when a pointer). */
typedef struct outcome {
    const void *ptr;
    tg_status status;
} outcome;

typedef outcome (*case_fn)(world *w);

#define PTR(expr) ((outcome){.ptr = (expr), .status = TG_OK})
#define STATUS(expr) ((outcome){.ptr = NULL, .status = (expr)})

static int32_t targets_bad[2 * 6 * 6];

static outcome conv_rank(world *w) { return PTR(tg_conv2d(w->ctx, w->x2, w->w, w->b, tg_conv2d_opts_make(1, 1, 1, 1))); }
static outcome conv_cin(world *w) {
    tg_tensor *x = tg_tensor_zeros(w->ctx, tg_shape4(2, 5, 6, 6));
    return PTR(tg_conv2d(w->ctx, x, w->w, w->b, tg_conv2d_opts_make(1, 1, 1, 1)));
}
static outcome conv_groups(world *w) { return PTR(tg_conv2d(w->ctx, w->x, w->w, w->b, tg_conv2d_opts_make(1, 1, 1, 3))); }
static outcome conv_bias(world *w) { return PTR(tg_conv2d(w->ctx, w->x, w->w, w->bn_w, tg_conv2d_opts_make(1, 1, 1, 1))); }
static outcome conv_null_w(world *w) { return PTR(tg_conv2d(w->ctx, w->x, NULL, w->b, tg_conv2d_opts_make(1, 1, 1, 1))); }
static outcome conv_too_small(world *w) {
    tg_tensor *x = tg_tensor_zeros(w->ctx, tg_shape4(1, 4, 2, 2));
    return PTR(tg_conv2d(w->ctx, x, w->w, w->b, tg_conv2d_opts_make(1, 0, 1, 1)));
}
static outcome conv_neg_pad(world *w) { return PTR(tg_conv2d(w->ctx, w->x, w->w, w->b, tg_conv2d_opts_make(1, -1, 1, 1))); }
static outcome conv1d_rank(world *w) { return PTR(tg_conv1d(w->ctx, w->x, w->w, w->b, tg_conv2d_opts_make(1, 0, 1, 1))); }
static outcome bn_weight(world *w) { return PTR(tg_batchnorm2d(w->ctx, w->x, w->b, w->bn_b, w->rm, w->rv, true, 0.1f, 1e-5f)); }
static outcome bn_rank(world *w) { return PTR(tg_batchnorm2d(w->ctx, w->x2, w->bn_w, w->bn_b, w->rm, w->rv, true, 0.1f, 1e-5f)); }
static outcome bn_eval_no_stats(world *w) { return PTR(tg_batchnorm2d(w->ctx, w->x, w->bn_w, w->bn_b, NULL, NULL, false, 0.1f, 1e-5f)); }
static outcome relu_null(world *w) { return PTR(tg_relu(w->ctx, NULL)); }
static outcome add_shape(world *w) { return PTR(tg_add(w->ctx, w->x, w->x2)); }
static outcome reshape_numel(world *w) { return PTR(tg_reshape(w->ctx, w->x, tg_shape2(7, 7))); }
static outcome linear_in(world *w) {
    tg_tensor *x = tg_tensor_zeros(w->ctx, tg_shape2(5, 9));
    return PTR(tg_linear(w->ctx, x, w->fc_w, w->fc_b));
}
static outcome linear_rank(world *w) { return PTR(tg_linear(w->ctx, w->x, w->fc_w, w->fc_b)); }
static outcome linear_bias(world *w) { return PTR(tg_linear(w->ctx, w->x2, w->fc_w, w->b)); }
static outcome gap_rank(world *w) { return PTR(tg_global_avg_pool(w->ctx, w->x2)); }
static outcome maxpool_kernel(world *w) { return PTR(tg_max_pool2d(w->ctx, w->x, tg_pool2d_opts_make(0, 1, 0))); }
static outcome maxpool_pad(world *w) { return PTR(tg_max_pool2d(w->ctx, w->x, tg_pool2d_opts_make(2, 2, 2))); }
static outcome avgpool_big(world *w) { return PTR(tg_avg_pool2d(w->ctx, w->x, tg_pool2d_opts_make(7, 1, 0))); }
static outcome ce_range(world *w) {
    tg_tensor *logits = tg_tensor_zeros(w->ctx, tg_shape4(2, 3, 6, 6));
    for (int i = 0; i < 72; i++) targets_bad[i] = i % 3;
    targets_bad[40] = 3;
    return PTR(tg_cross_entropy(w->ctx, logits, targets_bad));
}
static outcome ce_negative(world *w) {
    tg_tensor *logits = tg_tensor_zeros(w->ctx, tg_shape2(2, 3));
    int32_t t[2] = {0, -1};
    return PTR(tg_cross_entropy(w->ctx, logits, t));
}
static outcome ce_null_target(world *w) { return PTR(tg_cross_entropy(w->ctx, w->x2, NULL)); }
static outcome ce_rank(world *w) {
    tg_tensor *logits = tg_tensor_zeros(w->ctx, tg_shape1(4)); /* (N, C, ...) needs 2 dims */
    int32_t t[8] = {0};
    return PTR(tg_cross_entropy(w->ctx, logits, t));
}
static outcome mse_shape(world *w) { return PTR(tg_mse_loss(w->ctx, w->x2, w->x)); }
static outcome sgd_lr(world *w) { return PTR(tg_sgd_new(w->ps, (tg_sgd_opts){.lr = -0.1f})); }
static outcome sgd_nesterov(world *w) { return PTR(tg_sgd_new(w->ps, (tg_sgd_opts){.lr = 0.1f, .nesterov = true})); }
static outcome adam_beta(world *w) {
    tg_adam_opts o = tg_adam_opts_default();
    o.beta1 = 1.0;
    return PTR(tg_adam_new(w->ps, o));
}
static outcome adamw_eps(world *w) {
    tg_adam_opts o = tg_adamw_opts_default();
    o.eps = -1.0;
    return PTR(tg_adamw_new(w->ps, o));
}
static outcome adam_zeroed(world *w) { return PTR(tg_adam_new(w->ps, (tg_adam_opts){.lr = 0.1})); }
static outcome tensor_shape(world *w) { return PTR(tg_tensor_new(w->ctx, tg_shape3(2, 0, 2))); }
static outcome tensor_rank(world *w) { return PTR(tg_tensor_new(w->ctx, (tg_shape){.ndim = 5})); }
static outcome params_dup(world *w) { return PTR(tg_params_add(w->ps, "conv.weight", tg_shape1(3))); }
static outcome ctx_device(world *w) { (void)w; return PTR(tg_ctx_new((tg_device)9)); }
static outcome backward_null(world *w) { return STATUS(tg_backward(w->ctx, NULL)); }

typedef struct bad_case {
    const char *name;
    case_fn fn;
    tg_status status;
    const char *op;  /* must appear in the message */
    const char *arg; /* must appear too (argument, option or shape) */
} bad_case;

static const bad_case cases[] = {
    {"conv2d rank", conv_rank, TG_ERR_SHAPE, "tg_conv2d", "x"},
    {"conv2d in-channels", conv_cin, TG_ERR_SHAPE, "tg_conv2d", "(8, 4, 3, 3)"},
    {"conv2d groups", conv_groups, TG_ERR_ARG, "tg_conv2d", "groups"},
    {"conv2d bias", conv_bias, TG_ERR_SHAPE, "tg_conv2d", "bias"},
    {"conv2d NULL weight", conv_null_w, TG_ERR_ARG, "tg_conv2d", "weight"},
    {"conv2d too small", conv_too_small, TG_ERR_SHAPE, "tg_conv2d", "(1, 4, 2, 2)"},
    {"conv2d negative padding", conv_neg_pad, TG_ERR_ARG, "tg_conv2d", "pad"},
    {"conv1d rank", conv1d_rank, TG_ERR_SHAPE, "tg_conv1d", "x"},
    {"batchnorm weight", bn_weight, TG_ERR_SHAPE, "tg_batchnorm2d", "weight"},
    {"batchnorm rank", bn_rank, TG_ERR_SHAPE, "tg_batchnorm2d", "x"},
    {"batchnorm eval without stats", bn_eval_no_stats, TG_ERR_ARG, "tg_batchnorm2d", "running"},
    {"relu NULL", relu_null, TG_ERR_ARG, "tg_relu", "x"},
    {"add shapes", add_shape, TG_ERR_SHAPE, "tg_add", "(5, 10)"},
    {"reshape numel", reshape_numel, TG_ERR_SHAPE, "tg_reshape", "(7, 7)"},
    {"linear in-features", linear_in, TG_ERR_SHAPE, "tg_linear", "(5, 9)"},
    {"linear rank", linear_rank, TG_ERR_SHAPE, "tg_linear", "x"},
    {"linear bias", linear_bias, TG_ERR_SHAPE, "tg_linear", "bias"},
    {"global avg pool rank", gap_rank, TG_ERR_SHAPE, "tg_global_avg_pool", "x"},
    {"max pool kernel", maxpool_kernel, TG_ERR_ARG, "tg_max_pool2d", "kernel"},
    {"max pool padding", maxpool_pad, TG_ERR_ARG, "tg_max_pool2d", "pad"},
    {"avg pool too big", avgpool_big, TG_ERR_SHAPE, "tg_avg_pool2d", "(2, 4, 6, 6)"},
    {"cross entropy target >= C", ce_range, TG_ERR_ARG, "tg_cross_entropy", "target"},
    {"cross entropy target < 0", ce_negative, TG_ERR_ARG, "tg_cross_entropy", "-1"},
    {"cross entropy NULL target", ce_null_target, TG_ERR_ARG, "tg_cross_entropy", "target"},
    {"cross entropy rank", ce_rank, TG_ERR_SHAPE, "tg_cross_entropy", "logits"},
    {"mse shapes", mse_shape, TG_ERR_SHAPE, "tg_mse_loss", "(5, 10)"},
    {"sgd lr", sgd_lr, TG_ERR_ARG, "tg_sgd_new", "lr"},
    {"sgd nesterov", sgd_nesterov, TG_ERR_ARG, "tg_sgd_new", "nesterov"},
    {"adam beta1", adam_beta, TG_ERR_ARG, "tg_adam_new", "beta1"},
    {"adamw eps", adamw_eps, TG_ERR_ARG, "tg_adamw_new", "eps"},
    {"adam opts not from tg_adam_opts_default", adam_zeroed, TG_ERR_ARG, "tg_adam_new",
     "tg_adam_opts_default()"},
    {"tensor zero dim", tensor_shape, TG_ERR_SHAPE, "tg_tensor_new", "(2, 0, 2)"},
    {"tensor rank", tensor_rank, TG_ERR_SHAPE, "tg_tensor_new", "5 dims"},
    {"params duplicate", params_dup, TG_ERR_ARG, "tg_params_add", "conv.weight"},
    {"ctx device", ctx_device, TG_ERR_ARG, "tg_ctx_new", "device"},
    {"backward NULL", backward_null, TG_ERR_ARG, "tg_backward", "loss"},
};

/* CRC of everything the caller owns: parameter values, gradients and buffers. */
static uLong owned_crc(tg_params *ps) {
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t n = (size_t)tg_params_flat_numel(ps) * sizeof(float);
    crc = crc32(crc, (const Bytef *)tg_params_data(ps), (uInt)n);
    crc = crc32(crc, (const Bytef *)tg_params_grad(ps), (uInt)n);
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i);
        if (!t->requires_grad)
            crc = crc32(crc, (const Bytef *)t->data, (uInt)((size_t)t->numel * sizeof(float)));
    }
    return crc;
}

static void world_init(world *w) {
    tg_rng rng;
    tg_rng_seed(&rng, 11);
    w->ctx = tg_ctx_new(TG_DEVICE_CPU);
    w->ps = tg_params_new(TG_DEVICE_CPU);
    w->w = tg_params_add(w->ps, "conv.weight", tg_shape4(8, 4, 3, 3));
    w->b = tg_params_add(w->ps, "conv.bias", tg_shape1(8));
    w->bn_w = tg_params_add(w->ps, "bn.weight", tg_shape1(4));
    w->bn_b = tg_params_add(w->ps, "bn.bias", tg_shape1(4));
    w->rm = tg_params_add_buffer(w->ps, "bn.running_mean", tg_shape1(4), 0.5f);
    w->rv = tg_params_add_buffer(w->ps, "bn.running_var", tg_shape1(4), 2.0f);
    w->fc_w = tg_params_add(w->ps, "fc.weight", tg_shape2(3, 10));
    w->fc_b = tg_params_add(w->ps, "fc.bias", tg_shape1(3));
    tg_rng_fill_normal(&rng, tg_params_data(w->ps), tg_params_flat_numel(w->ps), 0, 1);
    tg_rng_fill_normal(&rng, tg_params_grad(w->ps), tg_params_flat_numel(w->ps), 0, 1);
    w->x = tg_tensor_zeros(w->ctx, tg_shape4(2, 4, 6, 6));
    w->x2 = tg_tensor_zeros(w->ctx, tg_shape2(5, 10));
    tg_tensor_set_requires_grad(w->x, true);
    tg_expect_ok("world");
}

START_TEST(bad_input_table) {
    world w;
    world_init(&w);
    const bad_case *c = &cases[_i];
    uLong before = owned_crc(w.ps);
    outcome o = c->fn(&w);
    ck_assert_msg(o.ptr == NULL, "%s: returned a result for bad input", c->name);
    ck_assert_msg(tg_error() == c->status, "%s: status '%s', expected '%s' (message: %s)",
                  c->name, tg_status_name(tg_error()), tg_status_name(c->status),
                  tg_error_message());
    ck_assert_msg(o.status == TG_OK || o.status == c->status, "%s: returned status %d",
                  c->name, (int)o.status);
    const char *msg = tg_error_message();
    ck_assert_msg(strstr(msg, c->op), "%s: message does not name %s: %s", c->name, c->op, msg);
    ck_assert_msg(strstr(msg, c->arg), "%s: message does not mention '%s': %s", c->name,
                  c->arg, msg);
    ck_assert_msg(owned_crc(w.ps) == before, "%s: the call changed the caller's parameters",
                  c->name);
    tg_error_clear();
    /* The context still works after the failure. */
    ck_assert_ptr_nonnull(tg_relu(w.ctx, w.x));
    tg_ctx_free(w.ctx);
    tg_params_free(w.ps);
}
END_TEST

/* A pending error blocks the optimizer: nothing changes, state included. */
START_TEST(optimizer_refuses_while_error_pending) {
    world w;
    world_init(&w);
    tg_adam_opts ao = tg_adam_opts_default();
    ao.lr = 0.1f;
    tg_optim *opt = tg_adam_new(w.ps, ao);
    ck_assert_ptr_nonnull(opt);
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    uLong before = owned_crc(w.ps);
    ck_assert_ptr_null(tg_add(w.ctx, w.x, w.x2));
    ck_assert(tg_optim_step(opt) != TG_OK);
    ck_assert_int_eq(tg_optim_steps(opt), 1);
    ck_assert(owned_crc(w.ps) == before);
    tg_expect_error("pending", TG_ERR_SHAPE, "tg_add", NULL);
    tg_optim_free(opt);
    tg_ctx_free(w.ctx);
    tg_params_free(w.ps);
}
END_TEST

Suite *bad_input_suite(void) {
    Suite *s = suite_create("bad_input");
    TCase *tc = tg_test_case("bad_input");
    tcase_add_loop_test(tc, bad_input_table, 0, (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, optimizer_refuses_while_error_pending);
    suite_add_tcase(s, tc);
    return s;
}
