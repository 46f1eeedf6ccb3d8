/*
 * tests/test_same_bits.c — the kernels on tg_parallel_range (core/pool.c) give the same
 * bits whichever thread runs a chunk: a training step through every op that runs on it,
 * at 1, 2 and 3 threads on both executors, and the convolutions' per-thread parts on the
 * pool and on OpenMP. The loop itself is tested in tests/test_parallel_range.c.
 */
#include "testutil.h"

#include "../core/core.h"

#include <stdlib.h>
#include <string.h>

static void use_executor(int i) { tg_parallel_range_use(i ? TG_RANGE_OPENMP : TG_RANGE_POOL); }

/* The ops moved onto tg_parallel_range, through the public API, at 1, 2 and 3 threads:
 * forward and backward of tanh, a broadcast add, relu, the causal mask, softmax over rows
 * and over tiles of inner dims, layer norm with weight and bias (its partial-sum chunks),
 * both permute paths, slice and concat, dropout, the 2x2 and the generic max pool, and an
 * embedding whose rows repeat (the scatter-add order matters), a batched matmul of 64
 * small products, a Winograd convolution with bias (transforms, 36 products, the bias
 * gradient), depthwise convolutions (3x3 and the generic path), batch norm (its running
 * statistics too), average and global average pooling, sum, mean, max and var along a
 * dim and max over all, cross entropy (ignored targets too), MSE and BCE (targets with
 * gradients) on 131,072 elements, then the gradients clipped by their global norm
 * and an Adam step, give the same bits (the parameters after two steps, the last norm
 * and the loss' value) at every thread count. Every tensor is above the ops'
 * thresholds for running in parallel. */
enum { EMB_V = 512, EMB_D = 128, EMB_N = 1024 };
#define W_NUMEL (8 * 16 * 64 * 64)
#define B_NUMEL (16 * 64)
#define ALL_NUMEL                                                                           \
    (W_NUMEL + B_NUMEL + EMB_V * EMB_D + 2 * 64 + 64 * 32 * 32 + 16 * 16 * 9 + 16 + 16 * 9 + \
     16 * 25 + 4 * 16 + 2) /* + the norm and the loss' value */

/* The first index at which a and b differ bit for bit, or n. */
static int64_t first_difference(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    while (i < n && !memcmp(&a[i], &b[i], sizeof(float))) i++;
    return i;
}

static void train_once(int threads, float *out, int64_t nout) {
    tg_set_num_threads(threads);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_ptr_nonnull(ctx);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 5);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape4(8, 16, 64, 64));
    tg_tensor *b = tg_params_add(ps, "b", tg_shape4(1, 16, 1, 64));
    tg_tensor *e = tg_params_add(ps, "e", tg_shape2(EMB_V, EMB_D));
    tg_tensor *lw = tg_params_add(ps, "lw", tg_shape1(64));
    tg_tensor *lb = tg_params_add(ps, "lb", tg_shape1(64));
    tg_tensor *mm = tg_params_add(ps, "mm", tg_shape3(64, 32, 32));
    tg_tensor *cw = tg_params_add(ps, "cw", tg_shape4(16, 16, 3, 3));
    tg_tensor *cb = tg_params_add(ps, "cb", tg_shape1(16));
    tg_tensor *dwc = tg_params_add(ps, "dwc", tg_shape4(16, 1, 3, 3));
    tg_tensor *dwc5 = tg_params_add(ps, "dwc5", tg_shape4(16, 1, 5, 5));
    tg_tensor *bnw = tg_params_add(ps, "bnw", tg_shape1(16));
    tg_tensor *bnb = tg_params_add(ps, "bnb", tg_shape1(16));
    tg_tensor *rm = tg_params_add_buffer(ps, "rm", tg_shape1(16), 0.0f);
    tg_tensor *rv = tg_params_add_buffer(ps, "rv", tg_shape1(16), 1.0f);
    ck_assert(w && b && e && lw && lb && mm && cw && cb && dwc && dwc5 && bnw && bnb && rm && rv);
    tg_rng_fill_uniform(&rng, dwc->data, dwc->numel, -0.5f, 0.5f);
    tg_rng_fill_uniform(&rng, dwc5->data, dwc5->numel, -0.2f, 0.2f);
    ck_assert_int_eq(tg_init_batchnorm(bnw, bnb), TG_OK);
    tg_rng_fill_uniform(&rng, cw->data, cw->numel, -0.2f, 0.2f);
    tg_rng_fill_uniform(&rng, cb->data, cb->numel, -0.5f, 0.5f);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_WINOGRAD), TG_OK);
    tg_rng_fill_uniform(&rng, mm->data, mm->numel, -0.5f, 0.5f);
    tg_rng_fill_uniform(&rng, lw->data, 64, 0.5f, 1.5f);
    tg_rng_fill_uniform(&rng, lb->data, 64, -0.5f, 0.5f);
    tg_rng_fill_uniform(&rng, w->data, w->numel, -2, 2);
    tg_rng_fill_uniform(&rng, b->data, b->numel, -1, 1);
    tg_rng_fill_uniform(&rng, e->data, e->numel, -1, 1);
    static int32_t idx[EMB_N];
    /* every used row at 4 positions: the scatter-add order matters */
    for (int i = 0; i < EMB_N; i++) idx[i] = (int32_t)((i * 37) % (EMB_V / 2));
    static int32_t class_target[8 * 32 * 8]; /* 64 classes along dim 1 */
    for (int i = 0; i < 8 * 32 * 8; i++) class_target[i] = i % 7 == 3 ? -100 : i * 5 % 64;
    tg_adam_opts o = tg_adam_opts_default();
    o.lr = 0.01;
    tg_optim *opt = tg_adam_new(ps, o);
    ck_assert_ptr_nonnull(opt);
    float norm = 0, loss_value = 0;
    for (int step = 0; step < 2; step++) {
        /* b (1, 16, 1, 64): blocks of kept elements; lb (64) over everything else: few
         * kept elements, the summed dims in chunks (the two reduction paths) */
        tg_tensor *h = tg_relu(ctx, tg_add(ctx, tg_add(ctx, tg_tanh(ctx, w), b), lb));
        /* softmax over the last dim (rows) and over dim 1 (tiles of the inner dims) */
        tg_tensor *sm = tg_softmax(ctx, tg_softmax(ctx, tg_causal_mask(ctx, h), -1), 1);
        tg_tensor *ln = tg_layer_norm(ctx, sm, 1, lw, lb, 1e-5f); /* partial-sum chunks */
        static const int rows_perm[4] = {0, 2, 1, 3}, tiles_perm[4] = {0, 1, 3, 2};
        tg_tensor *pr = tg_permute(ctx, tg_permute(ctx, ln, rows_perm), tiles_perm);
        tg_tensor *halves[2] = {tg_slice(ctx, pr, 2, 0, 32), tg_slice(ctx, pr, 2, 32, 64)};
        tg_tensor *cat = tg_concat(ctx, halves, 2, 2);
        tg_tensor *p = tg_max_pool2d(ctx, tg_dropout(ctx, cat, 0.1f, true),
                                     tg_pool2d_opts_make(2, 2, 0));
        p = tg_max_pool2d(ctx, p, tg_pool2d_opts_make(3, 1, 1)); /* the generic path */
        tg_tensor *em = tg_embedding(ctx, e, idx, tg_shape1(EMB_N));
        tg_tensor *prod = tg_matmul(ctx, mm, mm); /* 64 small products: the batched path */
        /* Winograd: its transforms and 36 products, and the bias gradient's channels */
        tg_tensor *cv = tg_conv2d(ctx, tg_tanh(ctx, w), cw, cb, tg_conv2d_opts_make(1, 1, 1, 1));
        /* depthwise, batch norm (training: its running statistics too), average pooling */
        tg_tensor *dwv =
            tg_conv2d(ctx, tg_tanh(ctx, w), dwc, NULL, tg_conv2d_opts_make(1, 1, 1, 16));
        tg_tensor *bn = tg_batchnorm2d(ctx, dwv, bnw, bnb, rm, rv, true, 0.1f, 1e-5f);
        tg_tensor *ap = tg_avg_pool2d(ctx, bn, tg_pool2d_opts_make(2, 2, 0));
        tg_tensor *gp = tg_global_avg_pool(ctx, ap);
        /* a 5x5 depthwise kernel: the generic path */
        tg_tensor *dw5 =
            tg_conv2d(ctx, tg_tanh(ctx, w), dwc5, NULL, tg_conv2d_opts_make(1, 2, 1, 16));
        /* the losses' tiles and partial sums: p is (8, 64, 32, 8), 131,072 elements */
        /* targets that need gradients too: MSE's dtarget and BCE's dt paths */
        tg_tensor *losses = tg_add(ctx, tg_cross_entropy(ctx, p, class_target),
                                   tg_add(ctx, tg_mse_loss(ctx, p, tg_tanh(ctx, p)),
                                          tg_bce_with_logits(ctx, p, tg_sigmoid(ctx, p))));
        tg_tensor *loss = tg_add(ctx, tg_sum_all(ctx, tg_mul(ctx, p, p)),
                                 tg_sum_all(ctx, tg_mul(ctx, em, em)));
        loss = tg_add(ctx, loss, losses);
        loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, prod, prod)));
        loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, cv, cv)));
        loss = tg_add(ctx, loss, tg_add(ctx, tg_sum_all(ctx, tg_mul(ctx, ap, ap)),
                                        tg_sum_all(ctx, tg_mul(ctx, gp, gp))));
        /* the reductions' paths on cv (8, 16, 64, 64): rows (dim 3), blocks of inner
         * columns (dims 1, 2), few long rows in chunks and the ties' count (max_all) */
        tg_tensor *reds[] = {tg_sum(ctx, cv, 3, false), tg_mean(ctx, cv, 1, false),
                             tg_max(ctx, cv, 2, false), tg_max(ctx, cv, 3, true),
                             tg_var(ctx, cv, 0, false, true), tg_max_all(ctx, cv)};
        loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, dw5, dw5)));
        for (int r = 0; r < 6; r++)
            loss = tg_add(ctx, loss, tg_sum_all(ctx, tg_mul(ctx, reds[r], reds[r])));
        ck_assert_msg(loss != NULL, "%s", tg_error_message());
        ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
        ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
        loss_value = loss->data[0]; /* every forward's value: sums, losses */
        ck_assert_int_eq(tg_clip_grad_norm(ps, 1.0f, &norm), TG_OK);
        ck_assert(norm > 1.0f); /* the scaling ran too */
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        tg_step_end(ctx);
    }
    tg_tensor *all[] = {w, b, e, lw, lb, mm, cw, cb, dwc, dwc5, bnw, bnb, rm, rv};
    int64_t at = 0;
    for (int k = 0; k < 14; k++) {
        ck_assert_int_le(at + all[k]->numel, nout);
        memcpy(out + at, all[k]->data, (size_t)all[k]->numel * sizeof(float));
        at += all[k]->numel;
    }
    ck_assert_int_eq(at + 2, nout);
    out[at] = norm;
    out[at + 1] = loss_value;
    tg_optim_free(opt);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

START_TEST(moved_ops_same_bits_every_thread_count) {
    use_executor(_i);
    const int saved = tg_get_num_threads();
    const int64_t n = ALL_NUMEL;
    float *one = malloc((size_t)n * sizeof(float)), *many = malloc((size_t)n * sizeof(float));
    ck_assert(one && many);
    train_once(1, one, n);
    for (int threads = 2; threads <= 3; threads++) {
        train_once(threads, many, n);
        int64_t i = first_difference(one, many, n);
        ck_assert_msg(i == n, "%d threads: parameter %lld is %.9g, with 1 thread %.9g",
                      threads, (long long)i, i < n ? many[i] : 0.0, i < n ? one[i] : 0.0);
    }
    free(one);
    free(many);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

/* The im2col + SGEMM and pointwise convolutions run in one part per thread, so their bits
 * may depend on the thread count (where a column chunk starts), but not on the executor:
 * at 2 and 3 threads the pool and a static OpenMP loop give the same gradients. */
enum { PC_N = 2, PC_C = 32, PC_H = 64 }; /* a plane of 4096: dx in column chunks */
#define PC_X (PC_N * PC_C * PC_H * PC_H)
#define PC_ALL (PC_X + 2 * PC_C * PC_C * 9 + PC_C * PC_C + 2 * PC_C + 1)

static void conv_parts_once(int threads, tg_range_exec e, float *out) {
    tg_set_num_threads(threads);
    tg_parallel_range_use(e);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    ck_assert(ctx && ps);
    ck_assert_int_eq(tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_GEMM), TG_OK);
    tg_tensor *x = tg_params_add(ps, "x", tg_shape4(PC_N, PC_C, PC_H, PC_H));
    tg_tensor *w3 = tg_params_add(ps, "w3", tg_shape4(PC_C, PC_C, 3, 3));
    tg_tensor *w3b = tg_params_add(ps, "w3b", tg_shape4(PC_C, PC_C, 3, 3)); /* no bias */
    tg_tensor *w1 = tg_params_add(ps, "w1", tg_shape4(PC_C, PC_C, 1, 1));
    tg_tensor *b3 = tg_params_add(ps, "b3", tg_shape1(PC_C));
    tg_tensor *b1 = tg_params_add(ps, "b1", tg_shape1(PC_C));
    ck_assert(x && w3 && w3b && w1 && b3 && b1);
    tg_rng rng;
    tg_rng_seed(&rng, 9);
    tg_tensor *all[] = {x, w3, w3b, w1, b3, b1};
    for (int k = 0; k < 6; k++) tg_rng_fill_uniform(&rng, all[k]->data, all[k]->numel, -0.3f, 0.3f);
    tg_conv2d_opts same = tg_conv2d_opts_make(1, 1, 1, 1), one = tg_conv2d_opts_make(1, 0, 1, 1);
    tg_tensor *y = tg_conv2d(ctx, tg_conv2d(ctx, x, w3, b3, same), w1, b1, one);
    y = tg_conv2d(ctx, y, w3b, NULL, tg_conv2d_opts_make(2, 1, 1, 1)); /* strided too */
    tg_tensor *loss = tg_sum_all(ctx, tg_mul(ctx, y, y));
    ck_assert_msg(loss != NULL, "%s", tg_error_message());
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    int64_t at = 0;
    for (int k = 0; k < 6; k++) {
        memcpy(out + at, all[k]->grad, (size_t)all[k]->numel * sizeof(float));
        at += all[k]->numel;
    }
    out[at++] = loss->data[0];
    ck_assert_int_eq(at, PC_ALL);
    tg_params_free(ps);
    tg_ctx_free(ctx);
}

START_TEST(conv_parts_same_bits_on_both_executors) {
    const int saved = tg_get_num_threads();
    float *pool = malloc(PC_ALL * sizeof(float)), *omp = malloc(PC_ALL * sizeof(float));
    ck_assert(pool && omp);
    for (int threads = 2; threads <= 3; threads++) {
        conv_parts_once(threads, TG_RANGE_POOL, pool);
        conv_parts_once(threads, TG_RANGE_OPENMP, omp);
        int64_t i = first_difference(pool, omp, PC_ALL);
        ck_assert_msg(i == PC_ALL, "%d threads: gradient %lld is %.9g on the pool, %.9g on OpenMP",
                      threads, (long long)i, i < PC_ALL ? pool[i] : 0.0, i < PC_ALL ? omp[i] : 0.0);
    }
    free(pool);
    free(omp);
    tg_set_num_threads(saved);
    tg_parallel_range_use(TG_RANGE_AUTO);
}
END_TEST

Suite *same_bits_suite(void) {
    Suite *s = suite_create("same_bits");
    TCase *tc = tg_test_case("same_bits");
    tcase_add_loop_test(tc, moved_ops_same_bits_every_thread_count, 0, 2);
    tcase_add_test(tc, conv_parts_same_bits_on_both_executors);
    suite_add_tcase(s, tc);
    return s;
}
