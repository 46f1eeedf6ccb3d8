/*
 * bench/winograd_bench.c — where the time of a Winograd F(4x4, 3x3) layer goes
 * (ops/conv2d_winograd.c): each pass (forward, dX only, dW only) against its own parts,
 * timed alone in the same run, interleaved call by call:
 *     GEMM part       its 36 SGEMMs per block, the same shapes, blocks and threading;
 *     transform part  its transforms (ops/conv2d_winograd_transform.c: weight, input,
 *                     output or dout transform), on the same data and blocks.
 * Printed: the layer time, each part's, the transforms' share of the layer (transform part
 * / layer), the layer as a ratio to its GEMM part, and SGEMM-equivalent (the direct
 * convolution's FLOPs over the layer time against a dense im2col-shaped SGEMM, M = C,
 * N = HW, K = 9C, measured in the same run; may pass 100%).
 *
 *   winograd_bench [threads] [repeats] [sizes...]   (defaults: 2, 7, 64 128 256; C = 256,
 *                                                    batch 1, padding 1)
 *
 * Every figure is a median of the repeats (best in brackets). The machine may be shared:
 * run it more than once and interleave builds when comparing two. BENCH_CLOCK=cpu times
 * with the process's CPU time instead of the wall clock: with 1 thread that leaves out
 * the time other processes held the core (not their effect on the caches).
 */
#include "tapegrad.h"

#include "../ops/conv2d.h"
#include "../ops/conv2d_winograd.h"
#include "benchutil.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool cpu_clock; /* BENCH_CLOCK=cpu */

static double now(void) {
    if (!cpu_clock) return bench_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median and best of bench_repeats timed calls of each of fns[0..n), after one
 * warm-up call each, the calls interleaved (one of each per round) so that a busy spell
 * of the machine falls on all of them alike. */
static void time_interleaved(bench_fn *fns, int n, void *user, double *median, double *best) {
    enum { MAX_REPEATS = 64 };
    double t[4][MAX_REPEATS];
    int reps = bench_repeats < MAX_REPEATS ? bench_repeats : MAX_REPEATS;
    for (int f = 0; f < n; f++) fns[f](user);
    for (int r = 0; r < reps; r++) {
        for (int f = 0; f < n; f++) {
            double t0 = now();
            fns[f](user);
            t[f][r] = now() - t0;
        }
    }
    for (int f = 0; f < n; f++) {
        qsort(t[f], (size_t)reps, sizeof t[f][0], cmp_double);
        median[f] = t[f][reps / 2];
        best[f] = t[f][0];
    }
}

static void time_it(bench_fn fn, void *user, double *median, double *best) {
    time_interleaved(&fn, 1, user, median, best);
}

typedef enum { PASS_FWD, PASS_DX, PASS_DW } pass;

typedef struct wjob {
    conv2d_geom g;
    pass p;
    int64_t T, Tb; /* tiles in all, per block */
    float *x, *w, *y, *dy, *dx, *dw, *ws;
    float *U, *V, *M;   /* the parts' operands: (36, C, C), (36, C, Tb), (36, C, Tb) */
    wino_run *runs;     /* Tb */
} wjob;

static void layer_run(void *user) {
    wjob *j = user;
    if (j->p == PASS_FWD)
        conv2d_winograd_forward_cpu(j->y, j->x, j->w, NULL, &j->g, j->ws, 0);
    else
        conv2d_winograd_backward_cpu(j->p == PASS_DX ? j->dx : NULL,
                                     j->p == PASS_DW ? j->dw : NULL, j->dy, j->x, j->w,
                                     &j->g, j->ws, 0, true);
}

/* The kernel's GEMMs: per block, 36 single-threaded SGEMMs spread over the threads;
 * forward and dX M[xi] (C x nt) = U[xi] (C x C) V[xi] (C x nt), dW P[xi] (C x C) +=
 * Z[xi] (C x nt) V[xi]^T. */
static void gemm_run(void *user) {
    wjob *j = user;
    const int C = (int)j->g.C_in, Tb = (int)j->Tb;
    for (int64_t t0 = 0; t0 < j->T; t0 += Tb) {
        int nt = (int)(j->T - t0 < Tb ? j->T - t0 : Tb);
        float beta = t0 == 0 ? 0.0f : 1.0f;
#pragma omp parallel for schedule(static)
        for (int xi = 0; xi < 36; xi++) {
            float *U = j->U + (int64_t)xi * C * C, *V = j->V + (int64_t)xi * C * Tb;
            float *M = j->M + (int64_t)xi * C * Tb;
            if (j->p == PASS_DW)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, C, nt, 1.0f, M, Tb,
                            V, Tb, beta, U, C);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, nt, C, 1.0f, U, C,
                            V, Tb, 0.0f, M, Tb);
        }
    }
}

/* The kernel's transforms: forward and dX the weight transform (dX flipped), then per
 * block the input and output transforms; dW per block the input and dout transforms,
 * then the weight-gradient transform. */
static void transform_run(void *user) {
    wjob *j = user;
    const conv2d_geom *g = &j->g;
    wino_plan p = {.N = g->N, .C = g->C_in, .K = g->C_out, .H = g->H, .W = g->W,
                   .OH = g->OH, .OW = g->OW, .ph = g->pad_h, .pw = g->pad_w,
                   .th = (g->OH + 3) / 4, .tw = (g->OW + 3) / 4, .T = j->T, .Tb = j->Tb};
    if (j->p != PASS_DW) wino_weight_transform(j->U, j->w, p.K, p.C, j->p == PASS_DX);
    for (int64_t t0 = 0; t0 < p.T; t0 += p.Tb) {
        int64_t nt = p.T - t0 < p.Tb ? p.T - t0 : p.Tb;
        int64_t nruns = wino_runs(j->runs, &p, t0, nt);
        wino_input_transform(j->V, j->p == PASS_DX ? j->dy : j->x, &p, j->runs, nruns);
        if (j->p == PASS_DW)
            wino_dout_transform(j->M, j->dy, &p, j->runs, nruns);
        else
            wino_output_transform(j->p == PASS_DX ? j->dx : j->y, j->M, NULL, j->p == PASS_DX,
                                  &p, j->runs, nruns);
    }
    if (j->p == PASS_DW) wino_weight_grad_transform(j->dw, j->U, p.K, p.C);
}

static void bench_size(int64_t C, int64_t HW) {
    wjob j = {.g = {.N = 1, .C_in = C, .H = HW, .W = HW, .C_out = C, .KH = 3, .KW = 3,
                    .OH = HW, .OW = HW, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                    .dil_h = 1, .dil_w = 1, .groups = 1}};
    j.T = ((HW + 3) / 4) * ((HW + 3) / 4);
    j.Tb = conv2d_winograd_block_tiles(&j.g, 0);
    int64_t n = C * HW * HW, nw = C * C * 9;
    size_t nws = conv2d_winograd_workspace_floats(&j.g, true, 0);
    j.x = bench_floats(n, 0.5f);
    j.y = bench_floats(n, 0.0f);
    j.dy = bench_floats(n, 0.25f);
    j.dx = bench_floats(n, 0.0f);
    j.w = bench_floats(nw, 0.01f);
    j.dw = bench_floats(nw, 0.0f);
    j.ws = bench_floats((int64_t)nws + 1, 0.0f);
    j.U = bench_floats(36 * C * C, 0.01f);
    j.V = bench_floats(36 * C * j.Tb, 0.5f);
    j.M = bench_floats(36 * C * j.Tb, 0.0f);
    j.runs = malloc((size_t)j.Tb * sizeof(wino_run));
    if (!j.runs) {
        fprintf(stderr, "winograd_bench: out of memory\n");
        exit(1);
    }
    double ceiling = bench_sgemm_ceiling((int)C, (int)(HW * HW), (int)(9 * C), time_it);
    printf("\n%lldx%lld, %lld tiles in blocks of %lld; dense SGEMM ceiling %.1f GFLOP/s "
           "(M=%lld N=%lld K=%lld)\n", (long long)HW, (long long)HW, (long long)j.T,
           (long long)j.Tb, ceiling, (long long)C, (long long)(HW * HW), (long long)(9 * C));
    static const char *pname[] = {"forward", "dX", "dW"};
    double flops = 2.0 * (double)n * (double)(C * 9);
    for (int p = 0; p < 3; p++) {
        j.p = (pass)p;
        bench_fn fns[3] = {layer_run, gemm_run, transform_run};
        double med[3], best[3]; /* layer, GEMM part, transform part */
        time_interleaved(fns, 3, &j, med, best);
        printf("  %-8s layer %8.3f ms (%8.3f)  GEMM %8.3f (%8.3f)  transforms %7.3f (%7.3f)"
               "  share %3.0f%% (%3.0f%%)  layer/GEMM %4.2f (%4.2f)  SGEMM-equivalent %4.0f%%\n",
               pname[p], med[0] * 1e3, best[0] * 1e3, med[1] * 1e3, best[1] * 1e3,
               med[2] * 1e3, best[2] * 1e3, 100.0 * med[2] / med[0], 100.0 * best[2] / best[0],
               med[0] / med[1], best[0] / best[1], 100.0 * flops / med[0] * 1e-9 / ceiling);
    }
    free(j.x);
    free(j.y);
    free(j.dy);
    free(j.dx);
    free(j.w);
    free(j.dw);
    free(j.ws);
    free(j.U);
    free(j.V);
    free(j.M);
    free(j.runs);
}

int main(int argc, char **argv) {
    int threads = bench_start(argc, argv, "winograd_bench", 7, "[sizes...]");
    if (!threads) return 2;
    const char *clock_env = getenv("BENCH_CLOCK");
    cpu_clock = clock_env && !strcmp(clock_env, "cpu");
    int64_t sizes[16] = {64, 128, 256};
    int nsizes = 3;
    if (argc > 3) {
        nsizes = 0;
        for (int i = 3; i < argc && nsizes < 16; i++) {
            sizes[nsizes] = atoi(argv[i]);
            if (sizes[nsizes] < 4) {
                fprintf(stderr, "winograd_bench: size '%s' is not an integer >= 4\n", argv[i]);
                return 2;
            }
            nsizes++;
        }
    }
    const int64_t C = 256;
    printf("Winograd F(4x4, 3x3) layers vs their own 36 SGEMMs, C = %lld, batch 1, %d "
           "threads, median of %d repeats (best in brackets), %s time\n", (long long)C,
           threads, bench_repeats, cpu_clock ? "CPU" : "wall");
    for (int s = 0; s < nsizes; s++) bench_size(C, sizes[s]);
    return 0;
}
