/*
 * bench/depthwise_bench.c — the CPU depthwise 3x3 kernels (ops/conv2d_depthwise.c) against
 * this machine's copy bandwidth, measured in the same run (DESIGN §6: depthwise is
 * memory-bound, so it is judged in GB/s).
 *
 *   depthwise_bench [threads] [repeats] [forum]   (defaults: 2 threads, 15 repeats; "forum":
 *                                                  only the C=256 shapes, not MobileNet's)
 *
 * Copy bandwidth: memcpy of 64 MiB in 1 MiB chunks spread over the threads, read + write
 * bytes counted (as `tapegrad peaks`). Bytes counted per kernel (the compulsory traffic):
 *   forward  reads x, writes y                       |x| + |y|
 *   dX       reads dy, read-modify-writes dx          |dy| + 2 |dx|      (w is 36 bytes)
 *   dW+db    reads dy and x once                      |dy| + |x|
 *   fused    dX + dW + db in one pass                 |dy| + |x| + 2 |dx|
 * Every figure is the median of the repeats (best in brackets); the copy ceiling is the
 * highest of three medians. The machine may be shared, so run it more than once. At 64x64 (4 MiB per tensor) the data fits the last-level cache
 * and a kernel may beat the copy figure.
 */
#include "tapegrad.h"

#include "../ops/conv2d.h"

#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dw_job {
    conv2d_geom g;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
} dw_job;

static void run_forward(void *user) {
    dw_job *j = user;
    conv2d_depthwise_forward_cpu(j->y, j->x, j->w, j->b, &j->g);
}

static void run_dx(void *user) {
    dw_job *j = user;
    conv2d_depthwise_backward_cpu(j->dx, NULL, NULL, j->dy, j->x, j->w, &j->g, true);
}

static void run_dw(void *user) {
    dw_job *j = user;
    conv2d_depthwise_backward_cpu(NULL, j->dw, j->db, j->dy, j->x, j->w, &j->g, false);
}

static void run_fused(void *user) {
    dw_job *j = user;
    conv2d_depthwise_backward_cpu(j->dx, j->dw, j->db, j->dy, j->x, j->w, &j->g, true);
}

static void report(const char *shape, const char *what, double bytes, bench_fn fn, dw_job *j,
                   double copy_gbps) {
    double med, best;
    bench_time(fn, j, &med, &best);
    double gbps = bytes / med * 1e-9;
    printf("%-22s %-8s %9.3f ms %8.1f GB/s (%5.1f) %6.0f%%\n", shape, what, med * 1e3, gbps,
           bytes / best * 1e-9, 100.0 * gbps / copy_gbps);
}

static void bench_shape(int64_t C, int64_t H, int stride, bool all, double copy_gbps) {
    dw_job j = {.g = {.N = 1, .C_in = C, .H = H, .W = H, .C_out = C, .KH = 3, .KW = 3,
                      .stride_h = stride, .stride_w = stride, .pad_h = 1, .pad_w = 1,
                      .dil_h = 1, .dil_w = 1, .groups = (int)C}};
    j.g.OH = (H + 2 - 2 - 1) / stride + 1;
    j.g.OW = j.g.OH;
    int64_t nx = C * H * H, ny = C * j.g.OH * j.g.OW;
    j.x = bench_floats(nx, 0.5f);
    j.dx = bench_floats(nx, 0.0f);
    j.y = bench_floats(ny, 0.0f);
    j.dy = bench_floats(ny, 0.25f);
    j.w = bench_floats(C * 9, 0.125f);
    j.dw = bench_floats(C * 9, 0.0f);
    j.b = bench_floats(C, 0.0f);
    j.db = bench_floats(C, 0.0f);
    char shape[64];
    snprintf(shape, sizeof shape, "C%lld %lldx%lld s%d", (long long)C, (long long)H,
             (long long)H, stride);
    double bx = 4.0 * (double)nx, by = 4.0 * (double)ny;
    report(shape, "forward", bx + by, run_forward, &j, copy_gbps);
    report(shape, "dX", by + 2 * bx, run_dx, &j, copy_gbps);
    report(shape, "dW+db", by + bx, run_dw, &j, copy_gbps);
    if (all) report(shape, "fused", by + 3 * bx, run_fused, &j, copy_gbps);
    free(j.x);
    free(j.dx);
    free(j.y);
    free(j.dy);
    free(j.w);
    free(j.dw);
    free(j.b);
    free(j.db);
}

int main(int argc, char **argv) {
    int threads = bench_start(argc, argv, "depthwise_bench", 15, "[forum]");
    if (!threads) return 2;

    /* The copy ceiling is measured three times (the machine may be shared) and the
     * highest median is used: the ratios below are the conservative ones. */
    double copy_best, copy_gbps = bench_copy_gbps(&copy_best);
    printf("depthwise 3x3 pad 1, batch 1, %d threads, median of %d repeats (best in "
           "brackets)\ncopy bandwidth: %.1f GB/s (highest of 3 medians; best %.1f; 64 MiB, "
           "read + write)\n\n",
           threads, bench_repeats, copy_gbps, copy_best);

    printf("%-22s %-8s %12s %18s %7s\n", "shape", "kernel", "time", "GB/s (best)", "copy");
    printf("forum experiment (C=256):\n");
    const int64_t forum[] = {64, 128, 256};
    for (int i = 0; i < 3; i++) bench_shape(256, forum[i], 1, true, copy_gbps);
    if (argc > 3 && strcmp(argv[3], "forum") == 0) return 0;
    printf("MobileNet v1 depthwise layers (batch 1):\n");
    const struct { int64_t C, H; int s; } mobilenet[] = {
        {32, 112, 1}, {64, 112, 2}, {128, 56, 1}, {128, 56, 2}, {256, 28, 1},
        {256, 28, 2}, {512, 14, 1}, {512, 14, 2}, {1024, 7, 1}};
    for (size_t i = 0; i < sizeof mobilenet / sizeof mobilenet[0]; i++)
        bench_shape(mobilenet[i].C, mobilenet[i].H, mobilenet[i].s, false, copy_gbps);
    return 0;
}
