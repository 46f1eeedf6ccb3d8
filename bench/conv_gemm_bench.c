/*
 * bench/conv_gemm_bench.c — the compute-bound conv kernels against this machine's SGEMM of
 * the same shape, measured in the same run (DESIGN §6):
 *   pointwise 1x1 (ops/conv2d_gemm.c, SGEMM on NCHW)   vs SGEMM M=C, N=HW, K=C
 *   dense 3x3 im2col + SGEMM (ops/conv2d_gemm.c)       vs SGEMM M=C, N=HW, K=9C
 *   dense 3x3 Winograd F(4x4, 3x3) (conv2d_winograd.c) vs the same, as "SGEMM-equivalent":
 *       the direct convolution's FLOPs over the Winograd time, which may pass 100%
 *       (it does 4x fewer multiplies); its own GEMMs are judged by the dense ceiling.
 * Each kernel is timed forward, dX only and dW only (backward with the other gradient
 * NULL; the bias is left out: its sum is a separate memory-bound pass).
 *
 *   conv_gemm_bench [threads] [repeats] [sizes...]   (defaults: 2, 7, 32 64 128 256)
 *
 * Ceilings: cblas_sgemm with the shapes above on pre-touched buffers, the median of the
 * repeats (the highest of two measurements, so the ratios are conservative). Every figure
 * is a median (best in brackets).
 */
#include "tapegrad.h"

#include "../ops/conv2d.h"
#include "benchutil.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum { PASS_FWD, PASS_DX, PASS_DW } pass;
typedef enum { KERNEL_GEMM, KERNEL_WINOGRAD } kernel;

typedef struct conv_job {
    conv2d_geom g;
    kernel k;
    pass p;
    float *x, *w, *y, *dy, *dx, *dw, *ws;
} conv_job;

static void conv_run(void *user) {
    conv_job *j = user;
    float *dx = j->p == PASS_DX ? j->dx : NULL, *dw = j->p == PASS_DW ? j->dw : NULL;
    if (j->k == KERNEL_WINOGRAD) {
        if (j->p == PASS_FWD) conv2d_winograd_forward_cpu(j->y, j->x, j->w, NULL, &j->g, j->ws, 0);
        else conv2d_winograd_backward_cpu(dx, dw, j->dy, j->x, j->w, &j->g, j->ws, 0, true);
    } else {
        if (j->p == PASS_FWD) conv2d_forward_cpu(j->y, j->x, j->w, NULL, &j->g, j->ws, 0);
        else conv2d_backward_cpu(dx, dw, NULL, j->dy, j->x, j->w, &j->g, j->ws, 0, true);
    }
}

static void bench_conv(int64_t C, int64_t HW, int KS, kernel k, double ceiling) {
    conv_job j = {.g = {.N = 1, .C_in = C, .H = HW, .W = HW, .C_out = C, .KH = KS, .KW = KS,
                        .OH = HW, .OW = HW, .stride_h = 1, .stride_w = 1, .pad_h = KS / 2,
                        .pad_w = KS / 2, .dil_h = 1, .dil_w = 1, .groups = 1},
                  .k = k};
    int64_t n = C * HW * HW, nw = C * C * KS * KS;
    size_t nws = k == KERNEL_WINOGRAD ? conv2d_winograd_workspace_floats(&j.g, true, 0)
                                      : conv2d_workspace_floats(&j.g, 0);
    j.x = bench_floats(n, 0.5f);
    j.y = bench_floats(n, 0.0f);
    j.dy = bench_floats(n, 0.25f);
    j.dx = bench_floats(n, 0.0f);
    j.w = bench_floats(nw, 0.01f);
    j.dw = bench_floats(nw, 0.0f);
    j.ws = bench_floats((int64_t)nws + 1, 0.0f);
    static const char *kname[] = {"im2col+SGEMM", "winograd"}, *pname[] = {"forward", "dX", "dW"};
    const char *label = KS == 1 ? "pointwise" : kname[k];
    double flops = 2.0 * (double)n * (double)(C * KS * KS); /* the direct convolution's */
    for (int p = 0; p < 3; p++) {
        j.p = (pass)p;
        double med, best;
        bench_time(conv_run, &j, &med, &best);
        double rate = flops / med * 1e-9;
        printf("C%-4lld %4lldx%-4lld %-13s %-8s %9.3f ms %8.1f GFLOP/s (%6.1f) %5.0f%%%s\n",
               (long long)C, (long long)HW, (long long)HW, label, pname[p], med * 1e3, rate,
               flops / best * 1e-9, 100.0 * rate / ceiling,
               k == KERNEL_WINOGRAD ? " SGEMM-equivalent" : "");
    }
    free(j.x);
    free(j.y);
    free(j.dy);
    free(j.dx);
    free(j.w);
    free(j.dw);
    free(j.ws);
}

int main(int argc, char **argv) {
    int threads = bench_start(argc, argv, "conv_gemm_bench", 7, "[sizes...]");
    if (!threads) return 2;
    int64_t sizes[16] = {32, 64, 128, 256};
    int nsizes = 4;
    if (argc > 3) {
        nsizes = 0;
        for (int i = 3; i < argc && nsizes < 16; i++) {
            sizes[nsizes] = atoi(argv[i]);
            if (sizes[nsizes] < 4) {
                fprintf(stderr, "conv_gemm_bench: size '%s' is not an integer >= 4\n", argv[i]);
                return 2;
            }
            nsizes++;
        }
    }
    const int64_t C = 256;
    printf("conv kernels vs same-shape SGEMM, C = %lld, batch 1, %d threads, median of %d "
           "repeats (best in brackets)\n", (long long)C, threads, bench_repeats);
    for (int s = 0; s < nsizes; s++) {
        int64_t HW = sizes[s];
        double pw = bench_sgemm_ceiling((int)C, (int)(HW * HW), (int)C, bench_time);
        double dense = bench_sgemm_ceiling((int)C, (int)(HW * HW), (int)(9 * C), bench_time);
        printf("\n%lldx%lld: SGEMM ceilings %.1f GFLOP/s (M=%lld N=%lld K=%lld), %.1f GFLOP/s "
               "(K=%lld)\n", (long long)HW, (long long)HW, pw, (long long)C,
               (long long)(HW * HW), (long long)C, dense, (long long)(9 * C));
        bench_conv(C, HW, 1, KERNEL_GEMM, pw);
        bench_conv(C, HW, 3, KERNEL_GEMM, dense);
        bench_conv(C, HW, 3, KERNEL_WINOGRAD, dense);
    }
    return 0;
}
