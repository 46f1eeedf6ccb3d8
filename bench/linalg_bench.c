/*
 * bench/linalg_bench.c — the CPU kernels of ops/matmul.c, ops/reduce.c and ops/layout.c
 * against this machine's own ceilings, measured in the same run (DESIGN §9):
 *
 *   linalg_bench [threads] [repeats]        (defaults: 2 threads, 7 repeats)
 *
 * matmul is judged in GFLOP/s against
 *   - "sgemm": ONE cblas_sgemm of the same total size (batch x M rows when the batch
 *     folds; else the same M, N, K as one matrix of the batch, scaled to the batch's
 *     FLOPs) — the machine's GEMM speed at that shape;
 *   - "loop": what a user would write without tg_matmul: one threaded cblas_sgemm per
 *     batch matrix, one after the other.
 * Both strategies of the batch executor are shown (par: matrices spread over the threads,
 * each a single-threaded SGEMM; thr: one threaded SGEMM per matrix); "auto" is what
 * tg_matmul picks. Targets (issue 12): large >= 85% of sgemm, batched small >= 50%.
 *
 * Reductions and layout ops are memory-bound: judged in GB/s against a memcpy of 64 MiB
 * (read + write counted), with each kernel's compulsory traffic counted (reads of x, writes
 * of y; backward: read dy, read + write dx). Target: >= 50% of copy.
 *
 * Every figure is the median of the repeats. The machine may be shared (other builds):
 * run it more than once.
 */
#include "tapegrad.h"

#include "../ops/layout.h"
#include "../ops/matmul.h"
#include "../ops/reduce.h"

#include "benchutil.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- matmul */

typedef struct mm_job {
    matmul_geom g;
    gemm_batch plan;
    gemm_batch_mode mode;
    float *a, *b, *c, *dc, *da, *db;
    int64_t sgemm_M; /* the reference SGEMM's rows */
} mm_job;

static void run_plan(void *user) {
    mm_job *j = user;
    gemm_batch_cpu(&j->plan, j->a, j->b, j->c, j->mode);
}

static void run_sgemm(void *user) {
    mm_job *j = user;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->sgemm_M, (int)j->g.N,
                (int)j->g.K, 1.0f, j->a, (int)j->g.K, j->b, (int)j->g.N, 0.0f, j->c, (int)j->g.N);
}

static void run_loop(void *user) {
    mm_job *j = user;
    int64_t batch = j->g.D[0] * j->g.D[1];
    for (int64_t i = 0; i < batch; i++) {
        const float *A = j->a + (j->g.A[0] * j->g.A[1] > 1 ? i * j->g.M * j->g.K : 0);
        const float *B = j->b + (j->g.B[0] * j->g.B[1] > 1 ? i * j->g.K * j->g.N : 0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->g.M, (int)j->g.N,
                    (int)j->g.K, 1.0f, A, (int)j->g.K, B, (int)j->g.N, 0.0f,
                    j->c + i * j->g.M * j->g.N, (int)j->g.N);
    }
}

static void run_backward(void *user) {
    mm_job *j = user;
    matmul_backward_cpu(j->da, j->db, j->dc, j->a, j->b, &j->g);
}

/* The backward's reference: two SGEMMs of the forward's size (dA = dC B^T, dB = A^T dC)
 * as one matrix of sgemm_M rows. */
static void run_sgemm_backward(void *user) {
    mm_job *j = user;
    int M = (int)j->sgemm_M, N = (int)j->g.N, K = (int)j->g.K;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, N, 1.0f, j->dc, N, j->b, N, 1.0f,
                j->da, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, M, 1.0f, j->a, K, j->dc, N, 1.0f,
                j->db, N);
}

static double gflops(double flops, bench_fn fn, void *user) {
    double med, best;
    bench_time(fn, user, &med, &best);
    return flops / med * 1e-9;
}

static void bench_matmul(const char *label, matmul_geom g) {
    mm_job j = {.g = g};
    int64_t batch = g.D[0] * g.D[1];
    int64_t na = g.A[0] * g.A[1] * g.M * g.K, nb = g.B[0] * g.B[1] * g.K * g.N;
    int64_t nc = batch * g.M * g.N;
    bool folds = g.B[0] * g.B[1] == 1 && g.A[0] == g.D[0] && g.A[1] == g.D[1];
    j.sgemm_M = folds ? batch * g.M : g.M;
    int64_t ref_a = j.sgemm_M * g.K, ref_c = j.sgemm_M * g.N;
    j.a = bench_floats(na > ref_a ? na : ref_a, 0.5f);
    j.b = bench_floats(nb, 0.25f);
    j.c = bench_floats(nc > ref_c ? nc : ref_c, 0.0f);
    j.dc = bench_floats(nc > ref_c ? nc : ref_c, 0.125f);
    j.da = bench_floats(na > ref_a ? na : ref_a, 0.0f);
    j.db = bench_floats(nb, 0.0f);
    double flops = 2.0 * (double)batch * g.M * g.N * g.K;
    /* The reference SGEMM: one matrix of sgemm_M rows, scaled to the batch's FLOPs. */
    double ref_flops = 2.0 * (double)j.sgemm_M * g.N * g.K;
    double sgemm = gflops(ref_flops, run_sgemm, &j);
    double loop = gflops(flops, run_loop, &j);
    j.plan = matmul_plan_forward(&g);
    j.mode = GEMM_BATCH_PARALLEL;
    double par = gflops(flops, run_plan, &j);
    j.mode = GEMM_BATCH_THREADED_GEMM;
    double thr = gflops(flops, run_plan, &j);
    j.mode = GEMM_BATCH_AUTO;
    double aut = gflops(flops, run_plan, &j);
    double bwd = gflops(2 * flops, run_backward, &j);
    double sgemm_bwd = gflops(2 * ref_flops, run_sgemm_backward, &j);
    printf("%-34s fwd %7.1f GFLOP/s (par %6.1f thr %6.1f) sgemm %6.1f loop %6.1f  %4.0f%% of "
           "sgemm | bwd %7.1f vs sgemm %6.1f  %4.0f%%\n",
           label, aut, par, thr, sgemm, loop, 100 * aut / sgemm, bwd, sgemm_bwd,
           100 * bwd / sgemm_bwd);
    free(j.a), free(j.b), free(j.c), free(j.dc), free(j.da), free(j.db);
}

/* ---------------------------------------------------------------- memory-bound ops */

typedef struct mem_job {
    float *x, *y, *dx, *dy, *mean;
    int64_t *argmax;
    int64_t outer, n, inner;
    permute_geom pg;
    int which;
} mem_job;

enum { SUM_F, SUM_B, MAX_F, MAX_B, VAR_F, VAR_B, PERM_F, PERM_B, CAT_F, CAT_B, SLICE_F, SLICE_B };

static void run_mem(void *user) {
    mem_job *j = user;
    int64_t total = j->outer * j->n * j->inner;
    switch (j->which) {
    case SUM_F: sum_forward_cpu(j->y, j->x, j->outer, j->n, j->inner, 1.0f); break;
    case SUM_B: sum_backward_cpu(j->dx, j->dy, j->outer, j->n, j->inner, 1.0f); break;
    case MAX_F: max_forward_cpu(j->y, j->argmax, j->x, j->outer, j->n, j->inner); break;
    case MAX_B: max_backward_cpu(j->dx, j->dy, j->argmax, j->outer, j->n, j->inner); break;
    case VAR_F: var_forward_cpu(j->y, j->mean, j->x, j->outer, j->n, j->inner, 1); break;
    case VAR_B: var_backward_cpu(j->dx, j->dy, j->x, j->mean, j->outer, j->n, j->inner, 1); break;
    case PERM_F: permute_cpu(j->y, j->x, &j->pg, false); break;
    case PERM_B: {
        permute_geom inv = permute_inverse(&j->pg);
        permute_cpu(j->dx, j->y, &inv, true);
        break;
    }
    /* concat of two halves along the last dim: two strided row copies. */
    case CAT_F:
        copy_rows_cpu(j->y, j->n, j->x, j->n / 2, j->outer, j->n / 2, false);
        copy_rows_cpu(j->y + j->n / 2, j->n, j->x + total / 2, j->n / 2, j->outer, j->n / 2, false);
        break;
    case CAT_B:
        copy_rows_cpu(j->dx, j->n / 2, j->y, j->n, j->outer, j->n / 2, true);
        copy_rows_cpu(j->dx + total / 2, j->n / 2, j->y + j->n / 2, j->n, j->outer, j->n / 2, true);
        break;
    case SLICE_F: copy_rows_cpu(j->y, j->n / 2, j->x + j->n / 4, j->n, j->outer, j->n / 2, false); break;
    case SLICE_B: copy_rows_cpu(j->dx + j->n / 4, j->n, j->y, j->n / 2, j->outer, j->n / 2, true); break;
    }
}

static void report_mem(const char *label, const char *dir, mem_job *j, int which, double bytes,
                       double copy_gbps) {
    j->which = which;
    double med, best;
    bench_time(run_mem, j, &med, &best);
    double gbps = bytes / med * 1e-9;
    printf("%-34s %-4s %8.3f ms %7.1f GB/s %5.0f%% of copy\n", label, dir, med * 1e3, gbps,
           100 * gbps / copy_gbps);
}

int main(int argc, char **argv) {
    int threads = bench_start(argc, argv, "linalg_bench", 7, "");
    if (!threads) return 2;
    double copy_gbps = bench_copy_gbps(NULL);
    printf("linalg_bench: %d threads, median of %d repeats; copy bandwidth %.1f GB/s "
           "(highest of 3 medians, 64 MiB read + write)\n\n", threads, bench_repeats, copy_gbps);

    printf("matmul (GFLOP/s; sgemm = one cblas_sgemm of the same shape, loop = one threaded "
           "sgemm per batch matrix)\n");
    bench_matmul("large 1024x1024x1024", (matmul_geom){.M = 1024, .N = 1024, .K = 1024,
                 .D = {1, 1}, .A = {1, 1}, .B = {1, 1}});
    bench_matmul("batched large 4 x 512x512x512", (matmul_geom){.M = 512, .N = 512, .K = 512,
                 .D = {1, 4}, .A = {1, 4}, .B = {1, 4}});
    bench_matmul("folded (8,256,256)@(256,1024)", (matmul_geom){.M = 256, .N = 1024, .K = 256,
                 .D = {1, 8}, .A = {1, 8}, .B = {1, 1}});
    bench_matmul("attn QK^T 8x4 x 64x16x64", (matmul_geom){.M = 64, .N = 64, .K = 16,
                 .D = {8, 4}, .A = {8, 4}, .B = {8, 4}});
    bench_matmul("attn PV 8x4 x 64x64x16", (matmul_geom){.M = 64, .N = 16, .K = 64,
                 .D = {8, 4}, .A = {8, 4}, .B = {8, 4}});
    bench_matmul("batched small 256 x 32x32x32", (matmul_geom){.M = 32, .N = 32, .K = 32,
                 .D = {1, 256}, .A = {1, 256}, .B = {1, 256}});
    bench_matmul("batched mid 64 x 128x128x128", (matmul_geom){.M = 128, .N = 128, .K = 128,
                 .D = {1, 64}, .A = {1, 64}, .B = {1, 64}});
    bench_matmul("bcast a (256,256)@(16,256,256)", (matmul_geom){.M = 256, .N = 256, .K = 256,
                 .D = {1, 16}, .A = {1, 1}, .B = {1, 16}});

    const int64_t R = 4096, C = 2048; /* 8M floats = 32 MiB per tensor */
    mem_job j = {.x = bench_floats(R * C, 0.5f), .y = bench_floats(R * C, 0.0f),
                 .dx = bench_floats(R * C, 0.0f), .dy = bench_floats(R * C, 0.25f),
                 .mean = bench_floats(R * C, 0.0f)};
    j.argmax = calloc((size_t)(R * C), sizeof *j.argmax);
    double X = 4.0 * (double)(R * C);
    printf("\nreductions and layout (32 MiB tensors; GB/s of compulsory traffic vs copy)\n");
    j.outer = R, j.n = C, j.inner = 1;
    double Y = 4.0 * (double)R;
    report_mem("sum (4096, 2048) dim -1", "fwd", &j, SUM_F, X + Y, copy_gbps);
    report_mem("sum (4096, 2048) dim -1", "bwd", &j, SUM_B, 2 * X + Y, copy_gbps);
    report_mem("max (4096, 2048) dim -1", "fwd", &j, MAX_F, X + 3 * Y, copy_gbps);
    report_mem("var (4096, 2048) dim -1", "fwd", &j, VAR_F, X + 2 * Y, copy_gbps);
    report_mem("var (4096, 2048) dim -1", "bwd", &j, VAR_B, 3 * X + 2 * Y, copy_gbps);
    j.outer = 1, j.n = R, j.inner = C;
    Y = 4.0 * (double)C;
    report_mem("sum (4096, 2048) dim 0", "fwd", &j, SUM_F, X + Y, copy_gbps);
    report_mem("sum (4096, 2048) dim 0", "bwd", &j, SUM_B, 2 * X + Y, copy_gbps);
    report_mem("max (4096, 2048) dim 0", "fwd", &j, MAX_F, X + 3 * Y, copy_gbps);
    report_mem("max (4096, 2048) dim 0", "bwd", &j, MAX_B, 3 * Y, copy_gbps);
    j.outer = 1, j.n = R * C, j.inner = 1;
    report_mem("sum_all (8M)", "fwd", &j, SUM_F, X, copy_gbps);
    report_mem("sum_all (8M)", "bwd", &j, SUM_B, 2 * X, copy_gbps);
    j.pg = (permute_geom){.in_shape = {1, 1, R, C}, .perm = {0, 1, 3, 2}};
    report_mem("transpose (4096, 2048)", "fwd", &j, PERM_F, 2 * X, copy_gbps);
    report_mem("transpose (4096, 2048)", "bwd", &j, PERM_B, 3 * X, copy_gbps);
    j.pg = (permute_geom){.in_shape = {8, 256, 16, 256}, .perm = {0, 2, 1, 3}};
    report_mem("permute (8,256,16,256) 0213", "fwd", &j, PERM_F, 2 * X, copy_gbps);
    report_mem("permute (8,256,16,256) 0213", "bwd", &j, PERM_B, 3 * X, copy_gbps);
    j.pg = (permute_geom){.in_shape = {8, 4, 512, 512}, .perm = {0, 1, 3, 2}};
    report_mem("transpose (8,4,512,512) -1,-2", "fwd", &j, PERM_F, 2 * X, copy_gbps);
    j.outer = R, j.n = C, j.inner = 1;
    report_mem("concat 2 x (4096, 1024) dim -1", "fwd", &j, CAT_F, 2 * X, copy_gbps);
    report_mem("concat 2 x (4096, 1024) dim -1", "bwd", &j, CAT_B, 3 * X, copy_gbps);
    report_mem("slice (4096, 2048) [512:1536]", "fwd", &j, SLICE_F, X, copy_gbps);
    report_mem("slice (4096, 2048) [512:1536]", "bwd", &j, SLICE_B, 1.5 * X, copy_gbps);
    free(j.x), free(j.y), free(j.dx), free(j.dy), free(j.mean), free(j.argmax);
    return 0;
}
