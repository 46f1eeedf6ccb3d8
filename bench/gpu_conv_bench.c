/*
 * bench/gpu_conv_bench.c — the CUDA conv kernels (cuda/conv2d.cu) against this GPU's own
 * ceilings, measured in the same run (DESIGN §6, §9): depthwise in GB/s against the
 * device-to-device copy bandwidth, pointwise and dense in GFLOP/s against cublasSgemm at
 * the same GEMM shape.
 *
 *   gpu_conv_bench [samples]      (default 15; exits 77 without a usable GPU)
 *
 * Timing: CUDA events on the library's stream around a batch of back-to-back calls
 * (enough for about 2 ms), one untimed batch first, the median of `samples` batches
 * (tg_cuda_timer_start/stop). Operands are random (a hash kernel), allocated before any
 * timing; the copy buffers are at least 8x the L2. Bytes counted per kernel (the
 * compulsory traffic): forward |x| + |y|; dX |dy| + 2 |dx| (dx is accumulated);
 * dW+db |dy| + |x|; the bias gradient alone |dy|. The targets of issue 15 are printed
 * with each row's verdict.
 */
#include "tapegrad.h"

#include "../core/core.h"
#include "../cuda/tg_cuda.h"
#include "../ops/conv2d.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int samples = 15;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what) {
    fprintf(stderr, "gpu_conv_bench: %s: %s\n", what, tg_error_message());
    exit(1);
}

static float *dev_random(int64_t n, uint32_t seed) {
    float *p = tg_device_alloc(TG_DEVICE_CUDA, (size_t)n * sizeof(float));
    if (!p || tg_cuda_fill_random(p, n, seed) != TG_OK) die("allocating operands");
    return p;
}

typedef struct job {
    conv2d_geom g;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db, *ws;
    int which; /* 0 forward, 1 dX, 2 dW + db, 3 db alone */
} job;

static tg_status job_run(const job *j) {
    switch (j->which) {
    case 0: return conv2d_forward_cuda(j->y, j->x, j->w, j->b, &j->g, j->ws, 0);
    case 1: return conv2d_backward_cuda(j->dx, NULL, NULL, j->dy, j->x, j->w, &j->g, j->ws, 0);
    case 2: return conv2d_backward_cuda(NULL, j->dw, j->db, j->dy, j->x, j->w, &j->g, j->ws, 0);
    default: return conv2d_backward_cuda(NULL, NULL, j->db, j->dy, j->x, j->w, &j->g, j->ws, 0);
    }
}

/* Median seconds per call. */
static double time_job(const job *j) {
    if (job_run(j) != TG_OK || tg_cuda_sync() != TG_OK) die("warm-up");
    double t1 = 0;
    if (tg_cuda_timer_start() || job_run(j) || tg_cuda_timer_stop(&t1)) die("timing");
    int reps = t1 > 0 ? (int)(2e-3 / t1) : 1;
    reps = reps < 1 ? 1 : reps > 500 ? 500 : reps;
    double t[64];
    int n = samples > 64 ? 64 : samples;
    for (int k = 0; k < n; k++) {
        if (tg_cuda_timer_start()) die("timing");
        for (int r = 0; r < reps; r++)
            if (job_run(j)) die("run");
        if (tg_cuda_timer_stop(&t[k])) die("timing");
        t[k] /= reps;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static conv2d_geom geom(int64_t N, int64_t C_in, int64_t C_out, int64_t H, int64_t K,
                        int stride, int groups) {
    int pad = (int)(K / 2);
    conv2d_geom g = {.N = N, .C_in = C_in, .H = H, .W = H, .C_out = C_out, .KH = K, .KW = K,
                     .stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad,
                     .dil_h = 1, .dil_w = 1, .groups = groups};
    g.OH = (H + 2 * pad - K) / stride + 1;
    g.OW = g.OH;
    return g;
}

static void job_alloc(job *j) {
    const conv2d_geom *g = &j->g;
    int64_t nx = g->N * g->C_in * g->H * g->W, ny = g->N * g->C_out * g->OH * g->OW;
    int64_t nw = g->C_out * (g->C_in / g->groups) * g->KH * g->KW;
    size_t ws = conv2d_workspace_floats_cuda(g, 0, true);
    size_t wf = conv2d_workspace_floats_cuda(g, 0, false);
    j->x = dev_random(nx, 1), j->w = dev_random(nw, 2), j->b = dev_random(g->C_out, 3);
    j->y = dev_random(ny, 4), j->dy = dev_random(ny, 5), j->dx = dev_random(nx, 6);
    j->dw = dev_random(nw, 7), j->db = dev_random(g->C_out, 8);
    j->ws = dev_random((int64_t)(ws > wf ? ws : wf) + 1, 9);
}

static void job_free(job *j) {
    float *ps[] = {j->x, j->w, j->b, j->y, j->dy, j->dx, j->dw, j->db, j->ws};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) tg_device_free(TG_DEVICE_CUDA, ps[i]);
}

static double copy_gbps;

static void depthwise_row(const char *label, conv2d_geom g) {
    job j = {.g = g};
    job_alloc(&j);
    double x = 4.0 * (double)(g.N * g.C_in * g.H * g.W), y = 4.0 * (double)(g.N * g.C_out * g.OH * g.OW);
    double bytes[3] = {x + y, y + 2 * x, x + y}, t[3];
    for (j.which = 0; j.which < 3; j.which++) t[j.which] = time_job(&j);
    double gb[3];
    for (int k = 0; k < 3; k++) gb[k] = bytes[k] / t[k] * 1e-9;
    printf("  %-34s fwd %8.1f us %7.1f GB/s %4.0f%%  dX %8.1f us %4.0f%%  dW %8.1f us %4.0f%%"
           "  dW/fwd %.2f  %s\n", label, t[0] * 1e6, gb[0], 100 * gb[0] / copy_gbps, t[1] * 1e6,
           100 * gb[1] / copy_gbps, t[2] * 1e6, 100 * gb[2] / copy_gbps, t[2] / t[0],
           gb[0] >= 0.6 * copy_gbps && gb[1] >= 0.6 * copy_gbps && gb[2] >= 0.4 * copy_gbps &&
                   t[2] <= 2 * t[0] ? "target met" : "BELOW target");
    job_free(&j);
}

/* The conv bias gradient alone (tg_cuda_channel_sum over dy): it reads dy once. */
static void bias_row(const char *label, conv2d_geom g) {
    job j = {.g = g, .which = 3};
    job_alloc(&j);
    double t = time_job(&j), gb = 4.0 * (double)(g.N * g.C_out * g.OH * g.OW) / t * 1e-9;
    printf("  %-34s db %8.1f us %7.1f GB/s %4.0f%% of copy\n", label, t * 1e6, gb,
           100 * gb / copy_gbps);
    job_free(&j);
}

/* Forward against cublasSgemm at the op's whole GEMM (M = C_out/groups, K = C_in/groups
 * KH KW, N = batch OH OW, times groups). */
static void gemm_row(const char *label, conv2d_geom g, double target) {
    job j = {.g = g};
    job_alloc(&j);
    double t[3];
    for (j.which = 0; j.which < 3; j.which++) t[j.which] = time_job(&j);
    int64_t M = g.C_out / g.groups, K = g.C_in / g.groups * g.KH * g.KW, N = g.N * g.OH * g.OW;
    double flops = 2.0 * (double)M * (double)K * (double)N * (double)g.groups, ts = 0;
    if (tg_cuda_bench_sgemm((int)M, (int)N, (int)K, 10, samples, &ts)) die("sgemm");
    ts *= (double)g.groups;
    printf("  %-34s fwd %8.1f us %8.1f GFLOP/s = %4.0f%% of SGEMM (%8.1f GFLOP/s)  dX %8.1f us"
           "  dW %8.1f us  %s\n", label, t[0] * 1e6, flops / t[0] * 1e-9, 100 * ts / t[0],
           flops / ts * 1e-9, t[1] * 1e6, t[2] * 1e6,
           ts / t[0] >= target ? "target met" : "BELOW target");
    job_free(&j);
}

int main(int argc, char **argv) {
    if (argc > 1) samples = atoi(argv[1]) > 0 ? atoi(argv[1]) : samples;
    tg_cuda_info info;
    if (tg_cuda_check() != TG_OK || tg_cuda_device_info(&info) != TG_OK) {
        printf("gpu_conv_bench: SKIP: %s\n", tg_error_message());
        return 77;
    }
    printf("%s: sm_%d%d, %d SMs, L2 %lld MiB, max clocks SM %d MHz / memory %d MHz\n",
           info.name, info.cc_major, info.cc_minor, info.sms, (long long)(info.l2_bytes >> 20),
           info.sm_clock_khz / 1000, info.mem_clock_khz / 1000);
    size_t cb = (size_t)(8 * info.l2_bytes) > ((size_t)256 << 20) ? (size_t)(8 * info.l2_bytes)
                                                                  : (size_t)256 << 20;
    double tc = 0;
    if (tg_cuda_bench_copy(cb, 10, samples, &tc)) die("copy");
    copy_gbps = 2.0 * (double)cb / tc * 1e-9;
    printf("copy bandwidth (%zu MiB buffers, read + write): %.1f GB/s\n\n", cb >> 20, copy_gbps);

    printf("depthwise 3x3 (targets: fwd and dX >= 60%%, dW >= 40%% of copy, dW <= 2x fwd)\n");
    depthwise_row("forum 1x256x64x64", geom(1, 256, 256, 64, 3, 1, 256));
    depthwise_row("forum 1x256x128x128", geom(1, 256, 256, 128, 3, 1, 256));
    depthwise_row("forum 1x256x256x256", geom(1, 256, 256, 256, 3, 1, 256));
    depthwise_row("mobilenet 32x64x112x112", geom(32, 64, 64, 112, 3, 1, 64));
    depthwise_row("mobilenet 32x128x56x56 s2", geom(32, 128, 128, 56, 3, 2, 128));
    depthwise_row("mobilenet 32x256x28x28", geom(32, 256, 256, 28, 3, 1, 256));
    depthwise_row("mobilenet 32x512x14x14", geom(32, 512, 512, 14, 3, 1, 512));
    depthwise_row("mobilenet 32x1024x7x7", geom(32, 1024, 1024, 7, 3, 1, 1024));
    depthwise_row("mobilenet 1x512x14x14", geom(1, 512, 512, 14, 3, 1, 512));
    depthwise_row("mobilenet 1x1024x7x7", geom(1, 1024, 1024, 7, 3, 1, 1024));
    depthwise_row("3x3 planes 32x1024x3x3", geom(32, 1024, 1024, 3, 3, 1, 1024));

    printf("\nconv bias gradient (chunked per-channel sums; no target, a read of dy)\n");
    bias_row("32x64x112x112 (pointwise)", geom(32, 64, 64, 112, 1, 1, 1));
    bias_row("1x32x256x256 (pointwise)", geom(1, 32, 32, 256, 1, 1, 1));
    bias_row("32x1024x7x7 (pointwise)", geom(32, 1024, 1024, 7, 1, 1, 1));

    printf("\npointwise 1x1 (target: forward >= 85%% of same-shape cublasSgemm)\n");
    gemm_row("forum 1x256x64x64", geom(1, 256, 256, 64, 1, 1, 1), 0.85);
    gemm_row("forum 1x256x256x256", geom(1, 256, 256, 256, 1, 1, 1), 0.85);
    gemm_row("mobilenet 32x512x14x14", geom(32, 512, 512, 14, 1, 1, 1), 0.85);
    gemm_row("mobilenet 32x1024x7x7", geom(32, 1024, 1024, 7, 1, 1, 1), 0.85);
    gemm_row("mobilenet g4 32x1024x7x7", geom(32, 1024, 1024, 7, 1, 1, 4), 0.85);

    printf("\ndense and grouped 3x3 (target: forward >= 70%% of same-shape cublasSgemm)\n");
    gemm_row("forum 1x256x64x64", geom(1, 256, 256, 64, 3, 1, 1), 0.70);
    gemm_row("forum 1x256x256x256", geom(1, 256, 256, 256, 3, 1, 1), 0.70);
    gemm_row("mobilenet dense 32x1024x7x7", geom(32, 1024, 1024, 7, 3, 1, 1), 0.70);
    gemm_row("mobilenet g4 32x1024x7x7", geom(32, 1024, 1024, 7, 3, 1, 4), 0.70);
    gemm_row("mobilenet g4 32x128x56x56", geom(32, 128, 128, 56, 3, 1, 4), 0.70);
    return 0;
}
