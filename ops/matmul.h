/*
 * ops/matmul.h — kernels and plans of ops/matmul.c (callable from tests, benchmarks and
 * cuda/matmul.cu). Row-major, contiguous.
 *
 * A batched matmul is planned ONCE, device-independently, as a `gemm_batch`: one GEMM
 * shape and a loop of up to two batch dims with a stride per operand along each dim
 * (stride 0: every step of that dim reuses the same matrix — broadcasting). The CPU
 * executes a plan with cblas_sgemm (parallel over batches or one threaded SGEMM per
 * matrix), the GPU with cuBLAS strided-batched calls (cuda/matmul.cu).
 */
#ifndef TG_OPS_MATMUL_H
#define TG_OPS_MATMUL_H

#include <stdbool.h>
#include <stdint.h>

/* The shapes of one tg_matmul: a (A0, A1, M, K) @ b (B0, B1, K, N) -> (D0, D1, M, N), batch
 * dims padded on the left with 1s; A_k and B_k are each 1 (broadcast) or D_k. */
typedef struct matmul_geom {
    int64_t M, N, K;
    int64_t D[2];       /* output batch dims */
    int64_t A[2], B[2]; /* a's and b's batch dims (1 or D[k]) */
} matmul_geom;

/* C_i = alpha op(A_i) op(B_i) + beta C_i for every batch index i = (i0, i1),
 * op(A) (M x K), op(B) (K x N), C (M x N), row strides lda, ldb, ldc. Matrix (i0, i1) of X
 * starts at X + i0 sx[0] + i1 sx[1]. A C stride of 0 along a dim with count > 1 means the
 * products along that dim are SUMMED into one matrix (beta must then be 1): executors run
 * those serially, in order. */
typedef struct gemm_batch {
    bool trans_a, trans_b;
    int64_t M, N, K;
    int64_t lda, ldb, ldc;
    float beta;
    int64_t count[2];
    int64_t sa[2], sb[2], sc[2];
} gemm_batch;

/* The three products of a matmul (forward C = A B; backward dA += dC B^T, dB += A^T dC),
 * with the broadcast batch dims folded into one large GEMM where the layout allows it
 * (b without batch dims: M' = batch M; its gradient: K' = batch M). */
gemm_batch matmul_plan_forward(const matmul_geom *g);
gemm_batch matmul_plan_da(const matmul_geom *g);
gemm_batch matmul_plan_db(const matmul_geom *g);

/* How the CPU executes a plan with several matrices. AUTO picks by size (ops/matmul.c);
 * the other two force a strategy (benchmarks). */
typedef enum gemm_batch_mode {
    GEMM_BATCH_AUTO = 0,
    GEMM_BATCH_THREADED_GEMM, /* one matrix after the other, each a threaded SGEMM */
    GEMM_BATCH_PARALLEL,      /* matrices spread over threads, single-threaded SGEMMs */
} gemm_batch_mode;

/* Runs plan g: A, B read; C written (beta 0) or accumulated (beta 1). */
void gemm_batch_cpu(const gemm_batch *g, const float *A, const float *B, float *C,
                    gemm_batch_mode mode);

/* out (D0, D1, M, N) = a (A0, A1, M, K) @ b (B0, B1, K, N). */
void matmul_forward_cpu(float *out, const float *a, const float *b, const matmul_geom *g);
/* da (A0, A1, M, K) += dout b^T summed over a's broadcast dims; db (B0, B1, K, N) +=
 * a^T dout summed over b's broadcast dims; either may be NULL (skipped). dout
 * (D0, D1, M, N), a, b read. */
void matmul_backward_cpu(float *da, float *db, const float *dout, const float *a,
                         const float *b, const matmul_geom *g);

#endif
