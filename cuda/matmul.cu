/*
 * cuda/matmul.cu — batched matmul on the GPU (ops/matmul.c has the formulas, the
 * derivation and the plans). The plans are the CPU's (matmul_plan_forward/_da/_db); this
 * file only executes one with cuBLAS through tg_cuda_sgemm_batched (cuda/blas.cu, the one
 * place that maps row-major onto column-major):
 *   - a run of matrices whose outputs are distinct and whose strides are constant is ONE
 *     strided-batched call (both batch dims at once when they are contiguous in all three
 *     operands, e.g. (B, H, T, D) @ (B, H, D, T));
 *   - products SUMMED into one gradient matrix (a broadcast batch dim of a or b) are not
 *     batched together (cuBLAS forbids overlapping outputs): they are queued one after
 *     the other on the library's stream with beta = 1, which orders the additions.
 */
#include "common.cuh"

/* One call over `batch` matrices, starting at A, B, C, stepping sa, sb, sc floats. */
static tg_status run(const gemm_batch *g, const float *A, const float *B, float *C,
                     int64_t sa, int64_t sb, int64_t sc, int64_t batch) {
    return tg_cuda_sgemm_batched(g->trans_a, g->trans_b, (int)g->M, (int)g->N, (int)g->K, 1.0f,
                                 A, (int)g->lda, sa, B, (int)g->ldb, sb, g->beta, C, (int)g->ldc,
                                 sc, (int)batch);
}

extern "C" tg_status gemm_batch_cuda(const gemm_batch *g, const float *A, const float *B,
                                     float *C) {
    if (g->M <= 0 || g->N <= 0) return TG_OK;
    const int64_t c0 = g->count[0], c1 = g->count[1];
    tg_status st = TG_OK;
    if (c1 > 1 && g->sc[1] != 0) {
        /* Batch along dim 1; dim 0 too when it simply continues dim 1 in every operand. */
        bool contiguous = c0 == 1 || (g->sa[0] == g->sa[1] * c1 && g->sb[0] == g->sb[1] * c1 &&
                                      g->sc[0] == g->sc[1] * c1);
        if (contiguous) return run(g, A, B, C, g->sa[1], g->sb[1], g->sc[1], c0 * c1);
        for (int64_t i0 = 0; i0 < c0 && st == TG_OK; i0++)
            st = run(g, A + i0 * g->sa[0], B + i0 * g->sb[0], C + i0 * g->sc[0], g->sa[1],
                     g->sb[1], g->sc[1], c1);
        return st;
    }
    if (c0 > 1 && g->sc[0] != 0) {
        /* Batch along dim 0; dim 1 (if any) sums into the same outputs: one call per i1. */
        for (int64_t i1 = 0; i1 < c1 && st == TG_OK; i1++)
            st = run(g, A + i1 * g->sa[1], B + i1 * g->sb[1], C + i1 * g->sc[1], g->sa[0],
                     g->sb[0], g->sc[0], c0);
        return st;
    }
    /* Every product adds into the same matrix (or there is only one): in order. */
    for (int64_t i0 = 0; i0 < c0 && st == TG_OK; i0++)
        for (int64_t i1 = 0; i1 < c1 && st == TG_OK; i1++)
            st = run(g, A + i0 * g->sa[0] + i1 * g->sa[1], B + i0 * g->sb[0] + i1 * g->sb[1],
                     C + i0 * g->sc[0] + i1 * g->sc[1], 0, 0, 0, 1);
    return st;
}

extern "C" tg_status matmul_forward_cuda(float *out, const float *a, const float *b,
                                         const matmul_geom *g) {
    gemm_batch p = matmul_plan_forward(g);
    return gemm_batch_cuda(&p, a, b, out);
}

extern "C" tg_status matmul_backward_cuda(float *da, float *db, const float *dout,
                                          const float *a, const float *b,
                                          const matmul_geom *g) {
    if (da) {
        gemm_batch p = matmul_plan_da(g);
        tg_status st = gemm_batch_cuda(&p, dout, b, da);
        if (st != TG_OK) return st;
    }
    if (db) {
        gemm_batch p = matmul_plan_db(g);
        return gemm_batch_cuda(&p, a, dout, db);
    }
    return TG_OK;
}
