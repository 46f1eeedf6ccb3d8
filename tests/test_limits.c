/*
 * tests/test_limits.c — issue 11's reproducers: sizes that cannot overflow, NaN that
 * cannot hide, files that cannot hang. Each case once crashed, hung or gave a silent wrong
 * result; each must now give a clear error (status + message naming what) or the right
 * result, under ASan+UBSan too.
 */
#include "testutil.h"

#include "../core/core.h"
#include "../optim/optim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define BIG62 ((int64_t)1 << 62)
#define BIG40 ((int64_t)1 << 40)
#define BIG32 ((int64_t)1 << 32)

/* ---------------------------------------------------------------- checked sizes */

START_TEST(checked_arithmetic) {
    int64_t r;
    size_t z;
    ck_assert(tg_mul_i64(3, 4, &r) && r == 12);
    ck_assert(!tg_mul_i64(BIG62, 4, &r));
    ck_assert(!tg_mul_i64(INT64_MIN, -1, &r));
    ck_assert(tg_add_i64(INT64_MAX - 1, 1, &r) && r == INT64_MAX);
    ck_assert(!tg_add_i64(INT64_MAX, 1, &r));
    ck_assert(!tg_mul_size(SIZE_MAX / 2 + 1, 2, &z));
    ck_assert(!tg_add_size(SIZE_MAX, 1, &z));
    ck_assert_int_eq(tg_shape_numel(tg_shape2(BIG40, BIG40)), -1);
    ck_assert_int_eq(tg_shape_numel(tg_shape4(1 << 16, 1 << 16, 1 << 16, 1 << 16)), -1);
    ck_assert_int_eq(tg_shape_numel(tg_shape1(-3)), -1);
    ck_assert_int_eq(tg_shape_numel(tg_shape2(BIG40, 1)), BIG40);
    ck_assert_int_eq(tg_shape_numel(tg_shape3(2, 3, 4)), 24);
}
END_TEST

START_TEST(huge_step_tensors) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    /* 2^62 floats: bytes wrapped to 0 and the tensor sat over a 64-byte block. */
    ck_assert_ptr_null(tg_tensor_zeros(ctx, tg_shape1(BIG62)));
    tg_expect_error("zeros 2^62", TG_ERR_SHAPE, "tg_tensor_zeros", "TG_MAX_NUMEL");
    /* (2^40, 2^40): numel wrapped to 0. */
    ck_assert_ptr_null(tg_tensor_new(ctx, tg_shape2(BIG40, BIG40)));
    tg_expect_error("new 2^80", TG_ERR_SHAPE, "tg_tensor_new", "(1099511627776, 1099511627776)");
    float one = 1;
    ck_assert_ptr_null(tg_tensor_from(ctx, tg_shape4(1 << 16, 1 << 16, 1 << 16, 1 << 16), &one));
    tg_expect_error("from 2^64", TG_ERR_SHAPE, "tg_tensor_from", "TG_MAX_NUMEL");
    ck_assert_ptr_null(tg_tensor_new(ctx, tg_shape2(3, -2)));
    tg_expect_error("negative dim", TG_ERR_SHAPE, "tg_tensor_new", "dim 1 = -2");
    /* The context still works. */
    tg_tensor *t = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->numel, 6);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(huge_params) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(3, 4));
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_null(tg_params_add(ps, "huge", tg_shape1(BIG62)));
    tg_expect_error("params 2^62", TG_ERR_SHAPE, "tg_params_add", "'huge'");
    ck_assert_ptr_null(tg_params_add(ps, "wrap", tg_shape2(BIG40, BIG40)));
    tg_expect_error("params 2^80", TG_ERR_SHAPE, "'wrap'", "TG_MAX_NUMEL");
    ck_assert_int_eq(tg_params_count(ps), 1);
    ck_assert_int_eq(tg_params_numel(ps), 12);
    /* An optimizer step over the store stays inside it (it overflowed the heap). */
    tg_optim *opt = tg_sgd_new(ps, (tg_sgd_opts){.lr = 0.1f});
    ck_assert_ptr_nonnull(opt);
    for (int i = 0; i < 12; i++) w->grad[i] = 1.0f;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert(w->data[11] == -0.1f);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

START_TEST(failed_add_stops_constructor) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    ck_assert_ptr_null(tg_params_add(ps, "bad", tg_shape1(-1)));
    /* While the error is pending, later adds allocate nothing. */
    ck_assert_ptr_null(tg_params_add(ps, "next", tg_shape1(1 << 20)));
    ck_assert_int_eq(tg_params_count(ps), 0);
    tg_expect_error("stop", TG_ERR_SHAPE, "'bad'", NULL);
    tg_params_free(ps);
}
END_TEST

START_TEST(mlp_int_max) {
    /* in_features = hidden = INT_MAX overflowed the heap in the initialisation. */
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = INT_MAX, .hidden = {INT_MAX}}, TG_DEVICE_CPU, 1);
    ck_assert_ptr_null(m);
    tg_expect_error("mlp INT_MAX", TG_ERR_SHAPE, "model 'mlp-2147483647", "fc1.weight");
    /* A width that fits the size limit but not the memory: refused before it is
     * touched, naming the model, the parameter, the size and the available memory. */
    m = tg_mlp_new((tg_mlp_opts){.in_features = 784, .hidden = {1 << 29}}, TG_DEVICE_CPU, 1);
    ck_assert_ptr_null(m);
    tg_expect_error("mlp wide", TG_ERR_NOMEM, "fc1.weight", "available");
}
END_TEST

START_TEST(reshape_overflow) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape2(2, 8));
    /* (2^32, 2^32, -1): the product wrapped to 0, then a division by it (SIGFPE). */
    ck_assert_ptr_null(tg_reshape(ctx, x, tg_shape3(BIG32, BIG32, -1)));
    tg_expect_error("reshape -1", TG_ERR_SHAPE, "tg_reshape", "TG_MAX_NUMEL");
    /* (2^62 + 1, 4): 2^64 + 4 wrapped to 4 and was accepted. */
    ck_assert_ptr_null(tg_reshape(ctx, x, tg_shape2(BIG62 + 1, 4)));
    tg_expect_error("reshape wrap", TG_ERR_SHAPE, "tg_reshape", NULL);
    tg_tensor *y = tg_reshape(ctx, x, tg_shape3(4, -1, 2));
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->shape.dim[1], 2);
    /* tg_flatten(NULL, x) said "reshape: ctx is NULL". */
    ck_assert_ptr_null(tg_flatten(NULL, x));
    tg_expect_error("flatten ctx", TG_ERR_ARG, "tg_flatten", "'ctx'");
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(conv_padding_int_max) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape4(1, 1, 4, 4));
    tg_tensor *w = tg_tensor_zeros(ctx, tg_shape4(1, 1, 3, 3));
    /* Gave shape (1, 1, 2^32, 2^32) with numel 0. */
    ck_assert_ptr_null(tg_conv2d(ctx, x, w, NULL, tg_conv2d_opts_make(1, INT_MAX, 1, 1)));
    tg_expect_error("conv pad", TG_ERR_SHAPE, "tg_conv2d", "output");
    ck_assert_ptr_null(tg_conv2d(ctx, x, w, NULL, tg_conv2d_opts_make(1, 1, INT_MAX, 1)));
    ck_assert(tg_error() != TG_OK);
    tg_error_clear();
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(avg_pool_kernel_int_max) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float ones[16];
    for (int i = 0; i < 16; i++) ones[i] = 1.0f;
    tg_tensor *x = tg_tensor_from(ctx, tg_shape4(1, 1, 4, 4), ones);
    /* kernel INT_MAX with the most padding allowed: one window holding the 16 ones;
     * kh * kw wrapped and the result was 16 instead of 16 / (2^31 - 1)^2. */
    tg_pool2d_opts o = tg_pool2d_opts_make(INT_MAX, 0, INT_MAX / 2);
    tg_tensor *y = tg_avg_pool2d(ctx, x, o);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->numel, 1);
    double want = 16.0 / ((double)INT_MAX * (double)INT_MAX);
    ck_assert_msg(fabs(y->data[0] - want) <= 1e-6 * want, "avg pool gave %g, want %g",
                  (double)y->data[0], want);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- tape ownership */

START_TEST(backward_other_context) {
    tg_ctx *a = tg_ctx_new(TG_DEVICE_CPU), *b = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(1, 2));
    w->data[0] = 1;
    w->data[1] = 2;
    float xs[2] = {3, 4};
    tg_tensor *x = tg_tensor_from(a, tg_shape2(1, 2), xs);
    tg_tensor *loss = tg_mse_loss(a, tg_linear(a, x, w, NULL), tg_tensor_zeros(a, tg_shape2(1, 1)));
    ck_assert_ptr_nonnull(loss);
    /* Returned OK and left every gradient 0. */
    ck_assert_int_ne(tg_backward(b, loss), TG_OK);
    tg_expect_error("other ctx", TG_ERR_ARG, "tg_backward", "another context");
    ck_assert_int_eq(tg_backward(a, loss), TG_OK);
    ck_assert(w->grad[0] != 0.0f);
    /* An op input from an earlier step of the same context. */
    tg_tensor *old = tg_tensor_from(a, tg_shape2(1, 2), xs);
    tg_step_end(a);
    ck_assert_ptr_null(tg_linear(a, old, w, NULL));
    tg_expect_error("stale", TG_ERR_STATE, "earlier step", "tg_step_end");
    /* A constant from another context is fine as an input (a data context). */
    tg_tensor *c = tg_tensor_from(b, tg_shape2(1, 2), xs);
    ck_assert_ptr_nonnull(tg_linear(a, c, w, NULL));
    tg_ctx_free(a);
    tg_ctx_free(b);
    tg_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- anomaly mode */

START_TEST(anomaly_forward) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "fc.weight", tg_shape2(1, 2));
    w->data[0] = 1e30f;
    w->data[1] = 1e30f;
    float xs[2] = {1e30f, 1e30f};
    /* Off (the default): the overflow travels silently to the loss. */
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(1, 2), xs);
    tg_tensor *y = tg_linear(ctx, x, w, NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert(!isfinite(y->data[0]));
    tg_step_end(ctx);
    tg_ctx_set_anomaly(ctx, true);
    ck_assert(tg_ctx_anomaly(ctx));
    x = tg_tensor_from(ctx, tg_shape2(1, 2), xs);
    tg_tensor *h = tg_relu(ctx, x); /* finite; not recorded (nothing needs a gradient) */
    ck_assert_ptr_nonnull(h);
    ck_assert_ptr_null(tg_linear(ctx, h, w, NULL));
    tg_expect_error("anomaly fwd", TG_ERR_NONFINITE, "linear (tape #0) produced a non-finite",
                    "fc.weight (1, 2) finite");
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

START_TEST(anomaly_backward) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "fc.weight", tg_shape2(1, 2));
    w->data[0] = 1e-20f;
    w->data[1] = 1e-20f;
    tg_ctx_set_anomaly(ctx, true);
    float xs[2] = {1e20f, 1e20f};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(1, 2), xs);
    tg_tensor *y = tg_linear(ctx, x, w, NULL); /* finite: 2 */
    ck_assert_ptr_nonnull(y);
    float seed = 1e30f; /* dW = seed * x = 1e50: not a float */
    ck_assert_int_eq(tg_backward_with(ctx, y, &seed), TG_ERR_NONFINITE);
    tg_expect_error("anomaly bwd", TG_ERR_NONFINITE, "backward of linear (tape #0)",
                    "fc.weight");
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

START_TEST(optim_skip_nonfinite) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(3));
    tg_adam_opts o = tg_adam_opts_default();
    o.lr = 0.1;
    tg_optim *opt = tg_adam_new(ps, o);
    tg_optim_set_skip_nonfinite(opt, true);
    w->grad[0] = 1;
    w->grad[1] = NAN;
    w->grad[2] = 1;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert(tg_optim_last_step_skipped(opt));
    ck_assert_int_eq(tg_optim_skipped_steps(opt), 1);
    ck_assert_int_eq(tg_optim_steps(opt), 0);
    ck_assert(w->data[0] == 0 && w->data[1] == 0 && w->data[2] == 0);
    w->grad[1] = INFINITY;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert_int_eq(tg_optim_skipped_steps(opt), 2);
    w->grad[1] = 1;
    ck_assert_int_eq(tg_optim_step(opt), TG_OK);
    ck_assert(!tg_optim_last_step_skipped(opt));
    ck_assert_int_eq(tg_optim_steps(opt), 1);
    ck_assert(isfinite(w->data[1]) && w->data[1] < 0);
    /* The step count cannot overflow. */
    opt->steps = TG_OPTIM_MAX_STEPS;
    ck_assert_int_eq(tg_optim_step(opt), TG_ERR_STATE);
    tg_expect_error("steps", TG_ERR_STATE, "tg_optim_step", NULL);
    tg_optim_free(opt);
    tg_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- gradcheck */

static tg_tensor *mse_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_mse_loss(ctx, in[0], in[1]);
}

START_TEST(gradcheck_eps_nan) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float a[3] = {1, 2, 3}, b[3] = {0, 0, 0};
    tg_tensor *in[2] = {tg_tensor_from(ctx, tg_shape1(3), a), tg_tensor_from(ctx, tg_shape1(3), b)};
    tg_tensor_set_requires_grad(in[0], true);
    tg_gradcheck_result r;
    /* eps = 0 "passed". */
    ck_assert_int_eq(tg_gradcheck(ctx, mse_graph, NULL, in, 2, 0.0, 1e-3, 1e-3, 0, 1, &r), TG_ERR_ARG);
    tg_expect_error("eps 0", TG_ERR_ARG, "'eps'", NULL);
    ck_assert_int_eq(tg_gradcheck(ctx, mse_graph, NULL, in, 2, -1e-3, 1e-3, 1e-3, 0, 1, &r), TG_ERR_ARG);
    tg_error_clear();
    ck_assert_int_eq(tg_gradcheck(ctx, mse_graph, NULL, in, -1, 1e-3, 1e-3, 1e-3, 0, 1, &r), TG_ERR_ARG);
    tg_expect_error("ninputs", TG_ERR_ARG, "'ninputs' is -1", NULL);
    ck_assert_int_eq(tg_gradcheck(ctx, NULL, NULL, in, 2, 1e-3, 1e-3, 1e-3, 0, 1, &r), TG_ERR_ARG);
    tg_expect_error("fn", TG_ERR_ARG, "argument 'fn'", NULL);
    /* A NaN gradient was a pass (NaN > tol is false). */
    in[0]->data[1] = NAN;
    ck_assert_int_eq(tg_gradcheck(ctx, mse_graph, NULL, in, 2, 1e-2, 1e-3, 1e-3, 0, 1, &r), TG_OK);
    ck_assert_int_eq(r.checked, 3);
    ck_assert_int_eq(r.failed, 3);
    ck_assert(isnan(r.max_abs_err));
    in[0]->data[1] = 2;
    ck_assert_int_eq(tg_gradcheck(ctx, mse_graph, NULL, in, 2, 1e-2, 1e-3, 1e-2, 0, 1, &r), TG_OK);
    ck_assert_int_eq(r.failed, 0);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(rng_null) {
    tg_rng_seed(NULL, 1); /* segfaulted */
    tg_expect_error("rng", TG_ERR_ARG, "tg_rng_seed", "'rng'");
    ck_assert(tg_rng_next(NULL) == 0);
    tg_error_clear();
}
END_TEST

/* ---------------------------------------------------------------- threads */

#ifdef _OPENMP
static void *thread_body(void *arg) {
    int *seen = arg;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape1(8));
    tg_relu(ctx, x); /* enters the library: applies the process-wide count */
    *seen = omp_get_max_threads();
    tg_ctx_free(ctx);
    return NULL;
}
#endif

START_TEST(threads_process_wide) {
#ifdef _OPENMP
    int before = tg_get_num_threads();
    tg_set_num_threads(1);
    int seen = -1;
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, thread_body, &seen), 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(seen, 1);
    ck_assert_int_eq(tg_get_num_threads(), 1);
    tg_set_num_threads(before);
#endif
}
END_TEST

/* ---------------------------------------------------------------- loaders */

START_TEST(loader_huge_batch) {
    float x[5 * 2];
    int32_t y[5] = {0, 1, 0, 1, 0};
    for (int i = 0; i < 10; i++) x[i] = (float)i;
    tg_dataset *ds = tg_dataset_new(5, tg_shape1(2), x, y, 2);
    /* Said "out of memory": a batch above the dataset is one batch of all of it. */
    tg_loader *ld = tg_loader_new(ds, INT_MAX, false, 0);
    ck_assert_ptr_nonnull(ld);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *bx;
    const int32_t *by;
    ck_assert(tg_loader_next(ld, ctx, &bx, &by));
    ck_assert_int_eq(bx->shape.dim[0], 5);
    ck_assert(bx->data[9] == 9.0f);
    ck_assert(!tg_loader_next(ld, ctx, &bx, &by));
    ck_assert_int_eq(tg_loader_batches(ld), 1);
    /* A dataset whose size overflows is a clear error. */
    ck_assert_ptr_null(tg_dataset_new(1, tg_shape3(BIG40, BIG40, 2), x, y, 2));
    tg_expect_error("dataset", TG_ERR_SHAPE, "tg_dataset_new", NULL);
    tg_ctx_free(ctx);
    tg_loader_free(ld);
    tg_dataset_free(ds);
}
END_TEST

/* ---------------------------------------------------------------- files */

static void tmp_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/tg_limits_%ld_%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid(), name);
}

START_TEST(fifo_does_not_hang) {
    char path[256];
    tmp_path(path, sizeof path, "fifo");
    unlink(path);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    alarm(20); /* a hang fails the test instead of blocking the suite */
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = 4, .hidden = {3}, .num_classes = 2}, TG_DEVICE_CPU, 1);
    ck_assert_int_eq(tg_checkpoint_load(path, m, NULL, NULL), TG_ERR_IO);
    tg_expect_error("fifo ckpt", TG_ERR_IO, "not a regular file", "FIFO");
    ck_assert_ptr_null(tg_idx_load(path));
    tg_expect_error("fifo idx", TG_ERR_IO, "not a regular file", NULL);
    alarm(0);
    unlink(path);
    tg_model_free(m);
}
END_TEST

START_TEST(sparse_file_refused_before_read) {
    char path[256];
    tmp_path(path, sizeof path, "sparse.ckpt");
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)3 << 30), 0); /* 3 GiB of holes */
    close(fd);
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = 4, .hidden = {3}, .num_classes = 2}, TG_DEVICE_CPU, 1);
    double t0 = tg_now();
    ck_assert_int_ne(tg_checkpoint_load(path, m, NULL, NULL), TG_OK);
    ck_assert_msg(tg_now() - t0 < 2.0, "a 3 GiB file was read before being refused");
    tg_expect_error("sparse", TG_ERR_IO, "at most", NULL);
    /* A header whose length does not match the file: refused from the header alone. */
    fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    static const uint8_t head[24] = {0x89, 'T', 'G', 'C', 'K', 'P', 'T', '\n', 1, 0, 0, 0,
                                     0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_int_eq(write(fd, head, sizeof head), (ssize_t)sizeof head);
    ck_assert_int_eq(ftruncate(fd, 4096), 0);
    close(fd);
    ck_assert_int_ne(tg_checkpoint_load(path, m, NULL, NULL), TG_OK);
    tg_expect_error("header", TG_ERR_FORMAT, "header promises", "followed by extra bytes");
    unlink(path);
    tg_model_free(m);
}
END_TEST

START_TEST(checkpoint_nonfinite_and_temps) {
    char path[256], stale[300], keep[300];
    tmp_path(path, sizeof path, "nf.ckpt");
    snprintf(stale, sizeof stale, "%s.tmp.AbC123", path);
    snprintf(keep, sizeof keep, "%s.tmp.AbC1234", path);
    tg_model *m = tg_mlp_new((tg_mlp_opts){.in_features = 4, .hidden = {3}, .num_classes = 2}, TG_DEVICE_CPU, 1);
    tg_optim *opt = tg_sgd_new(tg_model_params(m), (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
    FILE *f = fopen(stale, "w");
    fputs("left by kill -9", f);
    fclose(f);
    f = fopen(keep, "w");
    fclose(f);
    unlink(path);
    tg_tensor *w = tg_params_find(tg_model_params(m), "fc1.weight");
    w->data[5] = NAN;
    ck_assert_int_eq(tg_checkpoint_save(path, m, opt, NULL), TG_ERR_NONFINITE);
    tg_expect_error("nan save", TG_ERR_NONFINITE, "fc1.weight", "allow_nonfinite");
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_int_eq(tg_checkpoint_save_opts(path, m, opt, NULL,
                                             (tg_checkpoint_opts){.allow_nonfinite = true}), TG_OK);
    ck_assert_int_eq(access(path, F_OK), 0);
    ck_assert_int_ne(access(stale, F_OK), 0); /* cleaned */
    ck_assert_int_eq(access(keep, F_OK), 0);  /* not of the mkstemp form: kept */
    /* Counters: steps = INT64_MAX with a valid CRC was accepted. */
    w->data[5] = 0;
    opt->steps = INT64_MAX;
    ck_assert_int_eq(tg_checkpoint_save(path, m, opt, NULL), TG_OK);
    opt->steps = 0;
    ck_assert_int_eq(tg_checkpoint_load(path, m, opt, NULL), TG_ERR_FORMAT);
    tg_expect_error("steps", TG_ERR_FORMAT, "optimizer section", NULL);
    ck_assert_int_eq(tg_optim_steps(opt), 0);
    /* The checkpoint directory is checked before training. */
    ck_assert_int_eq(tg_checkpoint_check_writable(path), TG_OK);
    ck_assert_int_eq(tg_checkpoint_check_writable("/nonexistent-dir/x.ckpt"), TG_ERR_IO);
    tg_expect_error("dir", TG_ERR_IO, "'/nonexistent-dir' is not writable", NULL);
    unlink(path);
    unlink(keep);
    tg_optim_free(opt);
    tg_model_free(m);
}
END_TEST

START_TEST(idx_raw_size_vs_header) {
    char path[256];
    tmp_path(path, sizeof path, "short.idx");
    /* Declares 1000 x 1000 bytes, holds 10. */
    static const uint8_t b[] = {0, 0, 8, 2, 0, 0, 3, 0xe8, 0, 0, 3, 0xe8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, sizeof b, f);
    fclose(f);
    ck_assert_ptr_null(tg_idx_load(path));
    tg_expect_error("idx short", TG_ERR_FORMAT, "declares 1000012 bytes", "truncated");
    unlink(path);
}
END_TEST

Suite *limits_suite(void) {
    Suite *s = suite_create("limits");
    TCase *tc = tg_test_case("limits");
    tcase_add_test(tc, checked_arithmetic);
    tcase_add_test(tc, huge_step_tensors);
    tcase_add_test(tc, huge_params);
    tcase_add_test(tc, failed_add_stops_constructor);
    tcase_add_test(tc, mlp_int_max);
    tcase_add_test(tc, reshape_overflow);
    tcase_add_test(tc, conv_padding_int_max);
    tcase_add_test(tc, avg_pool_kernel_int_max);
    tcase_add_test(tc, backward_other_context);
    tcase_add_test(tc, anomaly_forward);
    tcase_add_test(tc, anomaly_backward);
    tcase_add_test(tc, optim_skip_nonfinite);
    tcase_add_test(tc, gradcheck_eps_nan);
    tcase_add_test(tc, rng_null);
    tcase_add_test(tc, threads_process_wide);
    tcase_add_test(tc, loader_huge_batch);
    tcase_add_test(tc, fifo_does_not_hang);
    tcase_add_test(tc, sparse_file_refused_before_read);
    tcase_add_test(tc, checkpoint_nonfinite_and_temps);
    tcase_add_test(tc, idx_raw_size_vs_header);
    suite_add_tcase(s, tc);
    return s;
}
