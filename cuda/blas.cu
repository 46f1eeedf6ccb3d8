/*
 * cuda/blas.cu — the library's stream and cuBLAS handle, and the ONE place that maps
 * our row-major GEMMs onto column-major cuBLAS.
 *
 * THE MAPPING. cuBLAS reads a matrix stored row-major with row stride ld as the
 * column-major matrix of its transpose (same ld). So row-major C = op(A) op(B) is, read
 * column-major, C^T = op(B)^T op(A)^T: call cublasSgemm with the operands swapped (B
 * first), the transpose flags kept, and the sizes (N, M, K). No data moves.
 *
 * Precision: cuBLAS's default math mode computes SGEMM in full fp32. TF32 tensor-core
 * math (10-bit mantissa products, about 8x faster on Ampere and Hopper) is switched on
 * only in builds configured with -Dtf32=true (TG_ALLOW_TF32): gradients checked against
 * the CPU need fp32.
 */
#include "common.cuh"

#include <cublas_v2.h>

static cudaStream_t stream;
static cublasHandle_t handle;
static bool ready;

static const char *cublas_status_name(cublasStatus_t st) {
    switch (st) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "unknown cuBLAS status";
    }
}

#define CUBLAS_CHECK(call, what)                                                          \
    do {                                                                                  \
        cublasStatus_t st_ = (call);                                                      \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                 \
            return tg_fail(TG_ERR_DEVICE, "%s: %s", what, cublas_status_name(st_));        \
    } while (0)

cudaError_t tg_cuda_stream_init(void) {
    return stream ? cudaSuccess : cudaStreamCreate(&stream);
}

cudaStream_t tg_cuda_stream(void) { return stream; }

/* Creates the handle on first use, bound to the stream. */
static tg_status blas_init(void) {
    if (ready) return TG_OK;
    tg_status st = tg_cuda_probe(); /* creates the stream */
    if (st != TG_OK) return st;
    CUBLAS_CHECK(cublasCreate(&handle), "cublasCreate");
    CUBLAS_CHECK(cublasSetStream(handle, stream), "cublasSetStream");
#ifdef TG_ALLOW_TF32
    CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_TF32_TENSOR_OP_MATH), "cublasSetMathMode");
#else
    CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
#endif
    ready = true;
    return TG_OK;
}

extern "C" tg_status tg_cuda_sgemm(bool trans_a, bool trans_b, int M, int N, int K,
                                   float alpha, const float *A, int lda, const float *B,
                                   int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return TG_OK;
    tg_status st = blas_init();
    if (st != TG_OK) return st;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* Column-major C^T (N x M) = op(B)^T (N x K) op(A)^T (K x M). */
    CUBLAS_CHECK(cublasSgemm(handle, op_b, op_a, N, M, K, &alpha, B, ldb, A, lda, &beta, C,
                             ldc),
                 "cublasSgemm");
    return TG_OK;
}

extern "C" tg_status tg_cuda_sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K,
                                           float alpha, const float *A, int lda,
                                           int64_t stride_a, const float *B, int ldb,
                                           int64_t stride_b, float beta, float *C, int ldc,
                                           int64_t stride_c, int batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return TG_OK;
    if (batch == 1)
        return tg_cuda_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    tg_status st = blas_init();
    if (st != TG_OK) return st;
    cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasSgemmStridedBatched(handle, op_b, op_a, N, M, K, &alpha, B, ldb,
                                           stride_b, A, lda, stride_a, &beta, C, ldc,
                                           stride_c, batch),
                 "cublasSgemmStridedBatched");
    return TG_OK;
}
