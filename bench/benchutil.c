/*
 * bench/benchutil.c — see benchutil.h.
 */
#include "benchutil.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tapegrad.h>

int bench_repeats = 15;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bench_start(int argc, char **argv, const char *name, int default_repeats,
                const char *rest) {
    bench_blas_fix(argv);
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    bench_repeats = argc > 2 ? atoi(argv[2]) : default_repeats;
    if (threads < 1 || bench_repeats < 1) {
        fprintf(stderr, "usage: %s [threads >= 1] [repeats >= 1]%s%s\n", name,
                rest && *rest ? " " : "", rest ? rest : "");
        return 0;
    }
    tg_set_num_threads(threads);
    return threads;
}

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bench_time(bench_fn fn, void *user, double *median, double *best) {
    double *t = malloc((size_t)bench_repeats * sizeof *t);
    if (!t) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    fn(user);
    for (int r = 0; r < bench_repeats; r++) {
        double t0 = bench_now();
        fn(user);
        t[r] = bench_now() - t0;
    }
    qsort(t, (size_t)bench_repeats, sizeof *t, cmp_double);
    *median = t[bench_repeats / 2];
    *best = t[0];
    free(t);
}

float *bench_floats(int64_t n, float value) {
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    if (!p) {
        fprintf(stderr, "bench: out of memory for %lld floats\n", (long long)n);
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) p[i] = value;
    return p;
}

typedef struct copy_job {
    char *src, *dst;
} copy_job;

static void copy_run(void *user) {
    copy_job *j = user;
    const int64_t chunk = 1 << 20, nchunks = BENCH_COPY_BYTES / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; c++) memcpy(j->dst + c * chunk, j->src + c * chunk, (size_t)chunk);
}

double bench_copy_gbps(double *best) {
    copy_job cj = {.src = (char *)bench_floats(BENCH_COPY_BYTES / 4, 1.0f),
                   .dst = (char *)bench_floats(BENCH_COPY_BYTES / 4, 0.0f)};
    double gbps = 0.0, top = 0.0;
    for (int i = 0; i < 3; i++) {
        double med, b;
        bench_time(copy_run, &cj, &med, &b);
        double g = 2.0 * (double)BENCH_COPY_BYTES / med * 1e-9;
        double gb = 2.0 * (double)BENCH_COPY_BYTES / b * 1e-9;
        if (g > gbps) gbps = g;
        if (gb > top) top = gb;
    }
    free(cj.src);
    free(cj.dst);
    if (best) *best = top;
    return gbps;
}

void bench_blas_fix(char **argv) {
    const char *core = getenv("OPENBLAS_CORETYPE") ? NULL : tg_blas_core_better();
    if (!core || getenv("TAPEGRAD_BLAS_FIXED")) return;
    if (setenv("OPENBLAS_CORETYPE", core, 1) || setenv("TAPEGRAD_BLAS_FIXED", "1", 1)) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* no /proc: go on with the kernels loaded */
}

typedef struct gemm_job {
    int M, N, K;
    float *a, *b, *c;
} gemm_job;

static void gemm_run(void *user) {
    gemm_job *j = user;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->M, j->N, j->K, 1.0f, j->a, j->K,
                j->b, j->N, 0.0f, j->c, j->N);
}

double bench_sgemm_ceiling(int M, int N, int K, bench_timer timer) {
    gemm_job j = {M, N, K, bench_floats((int64_t)M * K, 0.5f),
                  bench_floats((int64_t)K * N, 0.25f), bench_floats((int64_t)M * N, 0.0f)};
    double best_rate = 0;
    for (int i = 0; i < 2; i++) {
        double med, best;
        timer(gemm_run, &j, &med, &best);
        double rate = 2.0 * M * N * (double)K / med * 1e-9;
        if (rate > best_rate) best_rate = rate;
    }
    free(j.a);
    free(j.b);
    free(j.c);
    return best_rate;
}
