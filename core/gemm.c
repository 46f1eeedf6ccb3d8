/*
 * core/gemm.c — one SGEMM on this process's threads: C = alpha op(A) op(B) + beta C,
 * row-major, cut into slices of C's rows or columns, one per thread, each a serial SGEMM
 * run by tg_parallel_range (core/pool.c): whichever thread is awake takes the next slice,
 * so on a busy machine the caller does not wait for a thread that is not scheduled.
 *
 * Why not let OpenBLAS thread the call itself: its threads hand packed panels to each
 * other and wait for each other with spin loops inside every SGEMM. On an idle machine
 * that is as fast as our slices, but when other processes hold the cores a waiting
 * thread spins through its time slice while the one it waits for is descheduled: the
 * small CNN's fully connected layer (64 x 1568 x 128) took 8.6 ms per SGEMM with one busy
 * loop per core against 0.16 ms idle, 44% of the loaded epoch (bench/RESULTS.md, session
 * 6). Slices need no waiting at all, and a slice is the same call whoever makes it.
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
    if (omp_in_parallel() || tg_parallel_range_nested() || !tg_blas_nests())
        return 1; /* no nesting */
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

typedef struct sgemm_job {
    bool ta, tb, by_rows;
    int64_t M, N, K, len, tiles, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int nt;
} sgemm_job;

/* Slices [s0, s1) of nt: whole tiles of 16 dealt out as evenly as they go; the last
 * slice takes the ragged end. A slice is the same call whichever thread makes it. */
static void sgemm_slice(void *arg, int64_t s0, int64_t s1) {
    const sgemm_job *j = arg;
    for (int64_t t = s0; t < s1; t++) {
        int64_t a = j->tiles * t / j->nt * SGEMM_SLICE_ALIGN;
        int64_t b = t == j->nt - 1 ? j->len : j->tiles * (t + 1) / j->nt * SGEMM_SLICE_ALIGN;
        if (b > j->len) b = j->len;
        if (a >= b) continue;
#ifdef _OPENMP
        /* OpenBLAS's OpenMP build threads a call by the calling thread's
         * omp_get_max_threads(): one here, whichever thread runs the slice. */
        const int team = omp_get_max_threads();
        if (team > 1) omp_set_num_threads(1);
#endif
        if (j->by_rows)
            sgemm_call(j->ta, j->tb, b - a, j->N, j->K, j->alpha,
                       j->ta ? j->A + a : j->A + a * j->lda, j->lda, j->B, j->ldb, j->beta,
                       j->C + a * j->ldc, j->ldc);
        else
            sgemm_call(j->ta, j->tb, j->M, b - a, j->K, j->alpha, j->A, j->lda,
                       j->tb ? j->B + a * j->ldb : j->B + a, j->ldb, j->beta, j->C + a,
                       j->ldc);
#ifdef _OPENMP
        if (team > 1) omp_set_num_threads(team);
#endif
    }
}

void tg_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    const int nt = sgemm_slices(M, N, K);
    if (nt == 1) {
#ifdef _OPENMP
        /* OpenBLAS's OpenMP build threads a call by omp_get_max_threads(): one thread here,
         * or a small product would be split OpenBLAS's way (other bits, and its spinning
         * waits). Inside a parallel region it runs serially anyway. Inside a chunk of
         * tg_parallel_range the calling thread may be the job's caller, whose count is
         * the process's: held to one as well (a pool thread's is one already). */
        const int team = omp_in_parallel() || !tg_blas_nests() ? 1 : omp_get_max_threads();
        if (team > 1) omp_set_num_threads(1);
        sgemm_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        if (team > 1) omp_set_num_threads(team);
#else
        sgemm_call(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
        return;
    }
    sgemm_job j = {.ta = ta, .tb = tb, .by_rows = M >= N, .M = M, .N = N, .K = K,
                   .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C, .lda = lda,
                   .ldb = ldb, .ldc = ldc, .nt = nt};
    j.len = j.by_rows ? M : N;
    j.tiles = j.len / SGEMM_SLICE_ALIGN;
    tg_parallel_range(nt, 1, sgemm_slice, &j);
}
