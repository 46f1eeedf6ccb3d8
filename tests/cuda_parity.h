/*
 * tests/cuda_parity.h — the CPU-vs-CUDA parity harness shared by the test_cuda
 * program's files (tests/test_cuda.c opens with what the suite covers and why its
 * tolerances are what they are):
 *   cuda_parity.c      run one op on both devices and compare (check_case), helpers
 *   test_cuda.c        conv2d / conv1d grid, the suite, main
 *   test_cuda_ops.c    the other ops, broadcasting binaries, unary functions
 *   test_cuda_train.c  fused optimizers, the issue 12 part C ops, whole-model steps
 *   test_cuda_edge.c   issue 15's gaps (fallback kernels, asymmetric geometries, NaN/Inf,
 *                      determinism, poisoned arena, 64-bit indices)
 */
#ifndef TG_TESTS_CUDA_PARITY_H
#define TG_TESTS_CUDA_PARITY_H

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

/* ---------------------------------------------------------------- cuda_parity.c */

typedef tg_tensor *(*op_run)(tg_ctx *ctx, tg_tensor **in, const void *user);

typedef struct op_case {
    int ninputs;
    tg_shape shape[MAX_IN]; /* ndim -1: the input is absent (NULL) */
    bool grad[MAX_IN];      /* requires grad */
    float lo, hi;           /* inputs uniform in [lo, hi) */
    op_run run;
    const void *user;
    double tol;
    bool specials; /* every 5th input NaN, +Inf or -Inf; NaN/Inf must match */
} op_case;

#define ABSENT ((tg_shape){.ndim = -1})

/* |gpu - cpu| <= tol (|cpu| + max |cpu|) elementwise; _special: NaN must meet NaN and an
 * infinity the same infinity. */
void expect_match(const char *what, const float *gpu, const float *cpu, int64_t n, double tol);
void expect_match_special(const char *what, const float *gpu, const float *cpu, int64_t n,
                          double tol);
/* A tensor's values (or gradient) copied to fresh host memory; n uniform values. */
float *host_copy(const tg_tensor *t, bool grad);
float *random_host(int64_t n, float lo, float hi, uint64_t seed);
/* Runs c on both devices with the same inputs and compares everything. */
void check_case(tg_ctx *cpu, tg_ctx *gpu, const char *what, const op_case *c, uint64_t seed);
/* A context of the device whose convolutions use im2col + SGEMM (no timing). */
tg_ctx *new_ctx(tg_device device);

/* ---------------------------------------------------------------- test_cuda.c */

typedef struct conv_cfg {
    int N, C_in, C_out, H, W, K, stride, pad, dil, groups;
    bool bias, is1d;
} conv_cfg;

void check_conv(tg_ctx *cpu, tg_ctx *gpu, const conv_cfg *k, uint64_t seed);

/* ---------------------------------------------------------------- test_cuda_ops.c */

typedef struct bn_cfg {
    bool training;
    float momentum, eps;
} bn_cfg;

/* An op of one input that requires grad, inputs uniform in [lo, hi). */
op_case unary(tg_shape s, op_run run, const void *user, float lo, float hi, double tol);
/* One-op graphs (u: the op's options where it has any). */
tg_tensor *run_relu(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_relu6(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_add_self(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_linear(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_gap(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_max_pool(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_avg_pool(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_mse(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_ce(tg_ctx *ctx, tg_tensor **in, const void *u);
tg_tensor *run_bn(tg_ctx *ctx, tg_tensor **in, const void *u);
/* Adds the file's tests to tc, in the suite's order. */
void cuda_ops_tests(TCase *tc);

/* ---------------------------------------------------------------- test_cuda_train.c */

typedef struct model_result {
    float loss;
    int count;
    float *grad[256], *value[256]; /* per store entry; grad NULL for buffers */
} model_result;

void expect_norm_match(const char *what, const float *g, const float *c, int64_t n);
void model_run(tg_model *m, tg_device device, tg_shape xs, const float *x, const int32_t *targets,
               const float *mse_target, model_result *r);
void model_compare(const char *name, tg_model *mc, tg_model *mg, tg_shape xs,
                   const int32_t *targets, const float *mse_target);
bool model_pair(const char *name, tg_model *mc, tg_model *mg);
void cuda_train_tests(TCase *tc);

/* ---------------------------------------------------------------- test_cuda_edge.c */

void cuda_edge_tests(TCase *tc);
TCase *issue15b_tcase(void);
TCase *issue15b_huge_tcase(void);

#endif
