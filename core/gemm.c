/*
 * core/gemm.c — one SGEMM on this process's threads: C = alpha op(A) op(B) + beta C,
 * row-major, cut into slices of C's rows or columns, one serial SGEMM per OpenMP thread.
 *
 * Why not let OpenBLAS thread the call itself: its threads hand packed panels to each
 * other and wait for each other with spin loops inside every SGEMM. On an idle machine
 * that is as fast as our slices, but when other processes hold the cores a waiting
 * thread spins through its time slice while the one it waits for is descheduled: the
 * small CNN's fully connected layer (64 x 1568 x 128) took 8.6 ms per SGEMM with one busy
 * loop per core against 0.16 ms idle, 44% of the loaded epoch (bench/RESULTS.md, session
 * 6). Slices need no waiting until the region's end, where our threads sleep
 * (OMP_WAIT_POLICY=passive, tools/tapegrad.c) instead of spinning.
 *
 * Which dimension: a row slice of C needs all of B, a column slice all of A; OpenBLAS
 * packs what a slice needs, so the copy duplicated across threads is the operand of the
 * dimension NOT split. Splitting the larger of M and N duplicates the smaller operand.
 * Slice edges fall on multiples of 16 (the SGEMM micro-kernels' tile edges), every slice
 * holds at least one whole tile and SGEMM_SLICE_MIN_MACS multiply-adds (a smaller product
 * runs as one call: at ~10 us on one core a fork would not pay for itself).
 *
 * Bits: the same run to run for a given thread count. Not across thread counts: where a
 * slice starts decides which of OpenBLAS's kernel variants computes an element, and the
 * variants round differently (with the Haswell/Zen kernels 11 of tests/test_gemm.c's 17
 * shapes differ in the last bits between 1 and 2 threads; with this VM's SkylakeX ones,
 * none of those). Making the slicing depend on the shape alone would fix that at the price
 * of repacking an operand per slice on one thread; not done.
 */
#include "core.h"

#include <cblas.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define SGEMM_SLICE_MIN_MACS (128.0 * 128.0 * 128.0)
#define SGEMM_SLICE_ALIGN 16

static void sgemm_call(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* How many slices: at most one per thread, each at least one whole 16-wide tile of the
 * split dimension (the ragged end goes to the last slice) and SGEMM_SLICE_MIN_MACS. */
static int sgemm_slices(int64_t M, int64_t N, int64_t K) {
#ifdef _OPENMP
    if (omp_in_parallel() || !tg_blas_nests()) return 1; /* no nesting */
    const int64_t len = M >= N ? M : N, other = M >= N ? N : M;
    const int64_t full_tiles = len / SGEMM_SLICE_ALIGN;
    int64_t nt = tg_get_num_threads();
    if (nt > full_tiles) nt = full_tiles;
    /* the smallest slice: full_tiles / nt tiles */
    while (nt > 1 && (double)(full_tiles / nt * SGEMM_SLICE_ALIGN) * (double)other *
                             (double)K < SGEMM_SLICE_MIN_MACS)
        nt--;
    return nt < 1 ? 1 : (int)nt;
#else
    (void)M, (void)N, (void)K;
    return 1;
#endif
}

void tg_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    const int nt = sgemm_slices(M, N, K);
    if (nt == 1) {
#ifdef _OPENMP
        /* OpenBLAS's OpenMP build threads a call by omp_get_max_threads(): one thread here,
         * or a small product would be split OpenBLAS's way (other bits, and its spinning
         * waits). Inside a parallel region it runs serially anyway. */
        const int team = omp_in_parallel() || !tg_blas_nests() ? 1 : omp_get_max_threads();
        if (team > 1) omp_set_num_threads(1);
        sgemm_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        if (team > 1) omp_set_num_threads(team);
#else
        sgemm_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
        return;
    }
    const bool by_rows = M >= N;
    const int64_t len = by_rows ? M : N;
    /* whole tiles of 16 dealt out as evenly as they go; the last slice takes the ragged end */
    const int64_t tiles = len / SGEMM_SLICE_ALIGN;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) {
        int64_t a = tiles * t / nt * SGEMM_SLICE_ALIGN;
        int64_t b = t == nt - 1 ? len : tiles * (t + 1) / nt * SGEMM_SLICE_ALIGN;
        if (b > len) b = len;
        if (a >= b) continue;
        if (by_rows)
            sgemm_call(ta, tb, b - a, N, K, alpha, ta ? A + a : A + a * lda, lda, B, ldb, beta,
                       C + a * ldc, ldc);
        else
            sgemm_call(ta, tb, M, b - a, K, alpha, A, lda, tb ? B + a * ldb : B + a, ldb, beta,
                       C + a, ldc);
    }
}
