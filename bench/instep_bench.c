/*
 * bench/instep_bench.c — the forum net's big convolutions inside a training step against
 * the same kernels alone and against same-shape SGEMM, PAIRED round by round (issue 14:
 * "dense layers inside the step >= 95% of their rate alone", "pointwise backward >= 90%
 * of SGEMM in the step").
 *
 * This VM's speed drifts by 20-40% over tens of seconds (the hypervisor; /proc/stat's
 * steal does not show it), so an in-step rate from one run and an alone rate from another
 * compare two machines. Here every round measures, back to back within a few seconds:
 *   step    one forward + backward of the forum net (batch 1, 256 channels, 50 layers,
 *           im2col + SGEMM, biases as in the net), the per-op times from the tape's
 *           profile summed over the 48 middle layers of the kind measured (dense 3x3, or
 *           the pointwise 1x1 of the separable net);
 *   alone   the same kernel on its own buffers of the same shape, forward then backward
 *           (dx fresh, as the tape hands it, dW and db), as many times as the step has
 *           layers of that kind, after one untimed call;
 *   sgemm   cblas_sgemm of the layer's GEMM shape (M = C, N = H W, K = 9 C or C) with
 *           OpenBLAS's threads, the better of two means of five calls.
 * and prints per round the GFLOP/s of each and the ratios step/alone and step/sgemm, then
 * the median ratio over the rounds (a ratio of two measurements seconds apart survives a
 * drift that moves both).
 *
 *   instep_bench [dense|separable] [size] [rounds] [threads]   (defaults: dense 64 7 2)
 */
#include "tapegrad.h"

#include "../ops/conv2d.h"
#include "benchutil.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ROUNDS = 64, MAX_ROWS = 256 };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One forward + backward of the net in ctx (one context for every round: its arena's
 * pages are touched once, as in a training loop); the summed forward and backward seconds
 * of the conv2d rows whose detail starts with `kind` and whose input has C channels. */
static int step_times(tg_ctx *ctx, tg_model *m, int size, const char *kind, int C,
                      double *fwd, double *bwd) {
    static tg_op_profile rows[MAX_ROWS];
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    int64_t nx = 3 * (int64_t)size * size;
    float *x = malloc((size_t)nx * sizeof(float));
    if (!x) return -1;
    tg_rng_fill_uniform(&rng, x, nx, -1, 1);
    tg_tensor *in = tg_tensor_from(ctx, tg_shape4(1, 3, size, size), x);
    tg_tensor *out = tg_model_forward(ctx, m, in, true);
    float *seed = out ? malloc((size_t)out->numel * sizeof(float)) : NULL;
    if (!seed) return -1;
    tg_rng_fill_uniform(&rng, seed, out->numel, -1e-3f, 1e-3f);
    if (tg_backward_with(ctx, out, seed) != TG_OK) return -1;
    int n = tg_tape_profile(ctx, rows, MAX_ROWS), found = 0;
    *fwd = *bwd = 0;
    for (int i = 0; i < n && i < MAX_ROWS; i++) {
        if (strcmp(rows[i].op, "conv2d") || strncmp(rows[i].detail, kind, strlen(kind)) ||
            rows[i].in_shape[0].dim[1] != C || rows[i].out_shape.dim[1] != C)
            continue;
        *fwd += rows[i].fwd_seconds;
        *bwd += rows[i].bwd_seconds;
        found++;
    }
    free(seed);
    free(x);
    tg_step_end(ctx);
    return found;
}

typedef struct alone_job {
    conv2d_geom g;
    float *x, *w, *b, *y, *dy, *dx, *dw, *db, *ws;
} alone_job;

/* count forwards then count backwards of the kernel alone (one untimed call of each
 * first); the mean seconds of each. */
static void alone_times(alone_job *j, int count, double *fwd, double *bwd) {
    conv2d_forward_cpu(j->y, j->x, j->w, j->b, &j->g, j->ws, 0);
    double t0 = bench_now();
    for (int i = 0; i < count; i++) conv2d_forward_cpu(j->y, j->x, j->w, j->b, &j->g, j->ws, 0);
    double t1 = bench_now();
    conv2d_backward_cpu(j->dx, j->dw, j->db, j->dy, j->x, j->w, &j->g, j->ws, 0, true);
    double t2 = bench_now();
    for (int i = 0; i < count; i++)
        conv2d_backward_cpu(j->dx, j->dw, j->db, j->dy, j->x, j->w, &j->g, j->ws, 0, true);
    double t3 = bench_now();
    *fwd = (t1 - t0) / count;
    *bwd = (t3 - t2) / count;
}

/* Seconds of one threaded SGEMM M x N x K: the better of two means of five calls, after
 * one untimed (a round's reference must not be one slow moment). */
static double sgemm_time(int M, int N, int K, const float *A, const float *B, float *Cm) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, K, B, N, 0, Cm, N);
    double best = 0;
    for (int rep = 0; rep < 2; rep++) {
        double t0 = bench_now();
        for (int i = 0; i < 5; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, A, K, B, N, 0,
                        Cm, N);
        double t = (bench_now() - t0) / 5;
        if (rep == 0 || t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    bench_blas_fix(argv);
    const char *model = argc > 1 ? argv[1] : "dense";
    int size = argc > 2 ? atoi(argv[2]) : 64, rounds = argc > 3 ? atoi(argv[3]) : 7;
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    bool sep = !strcmp(model, "separable");
    if ((!sep && strcmp(model, "dense")) || size < 8 || rounds < 1 || rounds > MAX_ROUNDS ||
        threads < 1) {
        fprintf(stderr, "usage: instep_bench [dense|separable] [size >= 8] [rounds 1..%d] "
                        "[threads]\n", MAX_ROUNDS);
        return 2;
    }
    tg_set_num_threads(threads);
    const int C = 256, k = sep ? 1 : 3;
    const char *kind = sep ? "pointwise" : "dense 3x3";
    tg_forum50_opts mo = {.separable = sep, .loss = TG_LOSS_CE};
    tg_model *m = tg_forum50_new(mo, TG_DEVICE_CPU, 0);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    if (!m || !ctx || tg_ctx_set_conv_algo(ctx, TG_CONV_ALGO_GEMM) != TG_OK) {
        fprintf(stderr, "instep_bench: %s\n", tg_error_message());
        return 1;
    }
    alone_job j = {.g = {.N = 1, .C_in = C, .H = size, .W = size, .C_out = C, .KH = k, .KW = k,
                         .OH = size, .OW = size, .stride_h = 1, .stride_w = 1,
                         .pad_h = k / 2, .pad_w = k / 2, .dil_h = 1, .dil_w = 1, .groups = 1}};
    const int64_t hw = (int64_t)size * size, nw = (int64_t)C * C * k * k, K = (int64_t)C * k * k;
    size_t nws = conv2d_workspace_floats(&j.g, 0);
    j.x = bench_floats(C * hw, 0.5f), j.y = bench_floats(C * hw, 0);
    j.dy = bench_floats(C * hw, 1e-3f), j.dx = bench_floats(C * hw, 0);
    j.w = bench_floats(nw, 0.01f), j.dw = bench_floats(nw, 0);
    j.b = bench_floats(C, 0.1f), j.db = bench_floats(C, 0);
    j.ws = nws ? bench_floats((int64_t)nws, 0) : NULL;
    float *A = bench_floats(C * K, 0.01f), *B = bench_floats(K * hw, 0.5f);
    float *Cm = bench_floats(C * hw, 0);
    const double flops = 2.0 * C * K * hw; /* one pass; a backward is two (dX, dW) */

    printf("instep_bench: forum %s %dx%d, %d channels, %d threads, BLAS kernels %s; the %s "
           "layers, paired per round\n", model, size, size, C, tg_get_num_threads(),
           tg_blas_core(), kind);
    printf("%5s %4s | %8s %8s | %8s %8s | %8s | %10s %10s %10s\n", "round", "n", "step fw",
           "step bw", "alone fw", "alone bw", "sgemm", "step/alone", "fw/sgemm", "bw/sgemm");
    double r_alone[MAX_ROUNDS], r_fw[MAX_ROUNDS], r_bw[MAX_ROUNDS];
    double sf_warm, sb_warm;
    if (step_times(ctx, m, size, kind, C, &sf_warm, &sb_warm) <= 0) { /* warm-up step */
        fprintf(stderr, "instep_bench: the step failed or has no %s layers: %s\n", kind,
                tg_error_message());
        return 1;
    }
    for (int r = 0; r < rounds; r++) {
        double sf, sb, af, ab;
        int n = step_times(ctx, m, size, kind, C, &sf, &sb);
        if (n <= 0) {
            fprintf(stderr, "instep_bench: step failed: %s\n", tg_error_message());
            return 1;
        }
        alone_times(&j, n, &af, &ab);
        double sg = sgemm_time(C, (int)hw, (int)K, A, B, Cm);
        sf /= n, sb /= n;
        double gsf = flops / sf * 1e-9, gsb = 2 * flops / sb * 1e-9;
        double gaf = flops / af * 1e-9, gab = 2 * flops / ab * 1e-9, gsg = flops / sg * 1e-9;
        r_alone[r] = (af + ab) / (sf + sb);
        r_fw[r] = gsf / gsg;
        r_bw[r] = gsb / gsg;
        printf("%5d %4d | %8.1f %8.1f | %8.1f %8.1f | %8.1f | %9.0f%% %9.0f%% %9.0f%%\n", r + 1,
               n, gsf, gsb, gaf, gab, gsg, 100 * r_alone[r], 100 * r_fw[r], 100 * r_bw[r]);
        fflush(stdout);
    }
    printf("median over %d rounds (GFLOP/s above; FLOPs of the GEMMs, bias excluded): step / "
           "alone %.0f%%, step forward / SGEMM %.0f%%, step backward / SGEMM %.0f%%\n",
           rounds, 100 * median(r_alone, rounds), 100 * median(r_fw, rounds),
           100 * median(r_bw, rounds));
    tg_ctx_free(ctx);
    tg_model_free(m);
    return 0;
}
