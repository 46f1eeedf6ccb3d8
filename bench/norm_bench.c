/*
 * bench/norm_bench.c — the CPU softmax / log-softmax and layer-norm kernels (ops/softmax.c,
 * ops/layernorm.c), forward and backward, against this machine's copy bandwidth measured
 * in the same run. These ops are memory-bound: the issue-12 target is >= 50% of the copy
 * bandwidth on large tensors, forward and backward.
 *
 *   norm_bench [threads] [repeats]   (defaults: 2 threads, 15 repeats)
 *
 * Copy bandwidth: memcpy of 64 MiB in 1 MiB chunks over the threads, read + write bytes
 * (as `tapegrad peaks`). Bytes counted per kernel are the compulsory traffic:
 *   softmax forward      reads x, writes y                     8 n
 *   softmax backward     reads dy and y, read-modify-writes dx 16 n
 *   layer norm forward   reads x, writes y (+ weight, bias)    8 n
 *   layer norm backward  reads dy and x, read-modify-writes dx 16 n (dweight, dbias in the
 *                        same sweep)
 * Every figure is the median of the repeats (best in brackets); the copy ceiling is the
 * highest of three medians. The machine may be shared: run it more than once.
 */
#include "tapegrad.h"

#include "../ops/layernorm.h"
#include "../ops/softmax.h"

#include "benchutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct job {
    int64_t outer, D, inner; /* softmax view; layer norm: rows = outer, M = D */
    bool log;
    float *x, *y, *dy, *dx, *w, *b, *dw, *db, *mean, *rstd, *partial;
} job;

static void sm_fwd(void *u) {
    job *j = u;
    softmax_forward_cpu(j->y, j->x, j->outer, j->D, j->inner, j->log);
}
static void sm_bwd(void *u) {
    job *j = u;
    softmax_backward_cpu(j->dx, j->dy, j->y, j->outer, j->D, j->inner, j->log);
}
static void ln_fwd(void *u) {
    job *j = u;
    layernorm_forward_cpu(j->y, j->mean, j->rstd, j->x, j->w, j->b, j->outer, j->D, 1e-5f);
}
static void ln_bwd(void *u) {
    job *j = u;
    layernorm_backward_cpu(j->dx, j->dw, j->db, j->partial, j->dy, j->x, j->mean, j->rstd, j->w,
                           j->outer, j->D);
}

static void report(const char *shape, const char *what, double bytes, bench_fn fn, job *j,
                   double copy_gbps) {
    double med, best;
    bench_time(fn, j, &med, &best);
    double gbps = bytes / med * 1e-9;
    printf("%-30s %-9s %9.3f ms %8.1f GB/s (%5.1f) %6.0f%%\n", shape, what, med * 1e3, gbps,
           bytes / best * 1e-9, 100.0 * gbps / copy_gbps);
}

static job make(int64_t outer, int64_t D, int64_t inner) {
    int64_t n = outer * D * inner;
    job j = {.outer = outer, .D = D, .inner = inner};
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    j.x = bench_floats(n, 0), j.y = bench_floats(n, 0), j.dy = bench_floats(n, 0);
    j.dx = bench_floats(n, 0);
    tg_rng_fill_uniform(&rng, j.x, n, -4, 4);
    tg_rng_fill_uniform(&rng, j.dy, n, -1, 1);
    return j;
}

static void release(job *j) {
    free(j->x), free(j->y), free(j->dy), free(j->dx);
    free(j->w), free(j->b), free(j->dw), free(j->db), free(j->mean), free(j->rstd);
    free(j->partial);
}

static void bench_softmax(int64_t outer, int64_t D, int64_t inner, bool log, double copy) {
    job j = make(outer, D, inner);
    j.log = log;
    double n = (double)(outer * D * inner);
    char shape[64];
    snprintf(shape, sizeof shape, "%s (%lld,%lld,%lld) dim %d", log ? "log_softmax" : "softmax",
             (long long)outer, (long long)D, (long long)inner, inner == 1 ? -1 : 1);
    report(shape, "forward", 8 * n, sm_fwd, &j, copy);
    report(shape, "backward", 16 * n, sm_bwd, &j, copy);
    release(&j);
}

static void bench_layernorm(int64_t rows, int64_t M, double copy) {
    job j = make(rows, M, 1);
    j.w = bench_floats(M, 1.1f), j.b = bench_floats(M, 0.1f);
    j.dw = bench_floats(M, 0), j.db = bench_floats(M, 0);
    j.mean = bench_floats(rows, 0), j.rstd = bench_floats(rows, 0);
    j.partial = bench_floats(layernorm_partials(rows, M), 0);
    double n = (double)(rows * M);
    char shape[64];
    snprintf(shape, sizeof shape, "layer_norm (%lld, %lld) affine", (long long)rows, (long long)M);
    report(shape, "forward", 8 * n, ln_fwd, &j, copy);
    report(shape, "backward", 16 * n, ln_bwd, &j, copy);
    release(&j);
}

int main(int argc, char **argv) {
    int threads = bench_start(argc, argv, "norm_bench", 15, "");
    if (!threads) return 2;
    double copy = bench_copy_gbps(NULL);
    printf("norm_bench: %d threads, %d repeats; copy bandwidth %.1f GB/s (64 MiB, read + "
           "write)\n", threads, bench_repeats, copy);
    printf("%-30s %-9s %12s %13s %7s %7s\n", "op (outer, D, inner)", "pass", "median",
           "GB/s", "(best)", "of copy");
    bench_softmax(8192, 1024, 1, false, copy);      /* 32 MiB rows of 1024 */
    bench_softmax(8192, 1024, 1, true, copy);
    bench_softmax(32, 128, 2048, false, copy);      /* 32 MiB, softmax along dim 1 */
    bench_softmax(4096, 64, 1, false, copy);        /* attention rows of 64 */
    bench_layernorm(16384, 768, copy);              /* 48 MiB, GPT-2 small rows */
    bench_layernorm(65536, 128, copy);              /* 32 MiB, short rows */
    return 0;
}
