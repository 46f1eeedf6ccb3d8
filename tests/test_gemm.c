/*
 * tests/test_gemm.c — tg_sgemm (core/gemm.c): one SGEMM sliced over our threads. Every
 * transpose pair, alpha and beta, row and column slices with ragged edges and leading
 * dimensions wider than the matrix: with 1, 2 and 3 threads the result agrees with a
 * double-precision reference, is the same bits when run again, and leaves everything
 * outside C's M x N window untouched. (Bits across thread counts are not compared: with
 * some OpenBLAS kernels they differ in the last place, core/gemm.c says why.)
 */
#include "testutil.h"

#include "../core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct gemm_case {
    int64_t M, N, K;
    bool ta, tb;
    float alpha, beta;
} gemm_case;

/* Shapes around the slicing rules: under the size where one call runs, row slices
 * (M >= N), column slices (N > M), sizes off the 16-wide tiles, and the small CNN's
 * fully connected layer (64 x 1568 x 128) in its three forms. */
static const gemm_case cases[] = {
    {20, 30, 40, false, false, 1.0f, 0.0f},    /* under the slicing size: one call */
    {300, 200, 100, false, false, 1.0f, 0.0f}, /* row slices */
    {256, 288, 128, false, false, 1.0f, 0.0f}, /* alpha 1, beta 0: OpenBLAS's direct path */
    {133, 517, 61, false, true, 0.5f, 1.0f},   /* column slices, ragged */
    {517, 133, 61, true, false, 1.0f, 1.0f},
    {257, 255, 96, true, true, -2.0f, 0.25f},
    {64, 128, 1568, false, true, 1.0f, 1.0f},  /* fc1 forward: y = x W^T onto the bias */
    {64, 1568, 128, false, false, 1.0f, 1.0f}, /* fc1 dx = dy W */
    {128, 1568, 64, true, false, 1.0f, 1.0f},  /* fc1 dW = dy^T x */
    {64, 128, 784, false, true, 1.0f, 1.0f},   /* the MLP's first layer */
    {128, 784, 64, true, false, 1.0f, 1.0f},
    {1000, 128, 784, false, true, 1.0f, 1.0f}, /* a batch of 1000 */
    {128, 784, 1000, true, false, 1.0f, 1.0f},
    {1000, 10, 128, false, true, 1.0f, 1.0f},
    {1000, 128, 10, false, false, 1.0f, 1.0f},
    {10, 128, 1000, true, false, 1.0f, 1.0f},
    {17, 16, 16000, false, false, 1.0f, 0.0f}, /* one whole tile and a 1-row end */
};

/* op(X)[i][j] of a row-major X with leading dim ld, stored transposed when t. */
static double at(const float *X, int64_t ld, bool t, int64_t i, int64_t j) {
    return t ? X[j * ld + i] : X[i * ld + j];
}

static void fill(float *p, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(seed >> 40) / (double)(1ull << 24) - 0.5);
    }
}

START_TEST(sgemm_slices_match_reference_every_thread_count) {
    const gemm_case *c = &cases[_i];
    const int64_t M = c->M, N = c->N, K = c->K, pad = 3;
    /* stored shapes: A M x K (or K x M), B K x N (or N x K), each row padded by pad */
    const int64_t arows = c->ta ? K : M, acols = c->ta ? M : K;
    const int64_t brows = c->tb ? N : K, bcols = c->tb ? K : N;
    const int64_t lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
    const size_t cbytes = sizeof(float) * (size_t)(M * ldc);
    float *A = malloc(sizeof(float) * (size_t)(arows * lda));
    float *B = malloc(sizeof(float) * (size_t)(brows * ldb));
    float *C0 = malloc(cbytes), *C = malloc(cbytes), *again = malloc(cbytes);
    ck_assert_ptr_nonnull(A);
    ck_assert_ptr_nonnull(B);
    ck_assert_ptr_nonnull(C0);
    ck_assert_ptr_nonnull(C);
    ck_assert_ptr_nonnull(again);
    fill(A, arows * lda, 1 + (uint64_t)_i);
    fill(B, brows * ldb, 100 + (uint64_t)_i);
    fill(C0, M * ldc, 200 + (uint64_t)_i);
    const int saved = tg_get_num_threads();
    for (int threads = 1; threads <= 3; threads++) {
        tg_set_num_threads(threads);
        memcpy(C, C0, cbytes);
        tg_sgemm(c->ta, c->tb, M, N, K, c->alpha, A, lda, B, ldb, c->beta, C, ldc);
        memcpy(again, C0, cbytes);
        tg_sgemm(c->ta, c->tb, M, N, K, c->alpha, A, lda, B, ldb, c->beta, again, ldc);
        ck_assert_msg(!memcmp(C, again, cbytes), "case %d, %d threads: a second run differs",
                      _i, threads);
        for (int64_t i = 0; i < M; i++) {
            for (int64_t j = 0; j < N; j++) {
                double want = c->beta * (double)C0[i * ldc + j];
                for (int64_t k = 0; k < K; k++)
                    want += c->alpha * at(A, lda, c->ta, i, k) * at(B, ldb, c->tb, k, j);
                double got = C[i * ldc + j];
                ck_assert_msg(fabs(got - want) <= 1e-5 * (double)K * (1 + fabs(want)),
                              "case %d, %d threads: C[%lld][%lld] = %.7g, want %.7g", _i,
                              threads, (long long)i, (long long)j, got, want);
            }
            for (int64_t j = N; j < ldc; j++) /* the padding past N is not C's */
                ck_assert_float_eq(C[i * ldc + j], C0[i * ldc + j]);
        }
    }
    tg_set_num_threads(saved);
    free(A);
    free(B);
    free(C0);
    free(C);
    free(again);
}
END_TEST

/* An empty product leaves C alone (M or N zero) or scales it by beta (K zero), as BLAS. */
START_TEST(sgemm_empty_dims) {
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 1, 1, 1}, C[4] = {1, 2, 3, 4};
    tg_sgemm(false, false, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    tg_sgemm(false, false, 2, 0, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    ck_assert_float_eq(C[0], 1.0f);
    ck_assert_float_eq(C[3], 4.0f);
    tg_sgemm(false, false, 2, 2, 0, 1.0f, A, 2, B, 2, 0.5f, C, 2);
    ck_assert_float_eq(C[0], 0.5f);
    ck_assert_float_eq(C[3], 2.0f);
}
END_TEST

Suite *gemm_suite(void) {
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, sgemm_slices_match_reference_every_thread_count, 0,
                        (int)(sizeof cases / sizeof cases[0]));
    tcase_add_test(tc, sgemm_empty_dims);
    suite_add_tcase(s, tc);
    return s;
}
