/*
 * cuda/bench.cu — the device's own ceilings for `tapegrad peaks --device cuda` and the
 * GPU benchmarks' ratios (DESIGN §9): same-shape cuBLAS SGEMM and device-to-device copy
 * bandwidth, and the device's description (name, multiprocessors, L2, clocks).
 *
 * Timing rules (the ones a GPU figure needs to mean anything):
 *   - CUDA events on the library's stream around `reps` back-to-back calls, so neither
 *     launch latency nor a host clock enters a sample; `samples` such batches, median;
 *   - one untimed warm-up batch first (cuBLAS picks its kernel, clocks ramp up);
 *   - operands filled with random values (zeros run faster on some GPUs), written by a
 *     kernel on the device, never timed;
 *   - every buffer allocated before the first event and freed after the last: no
 *     cudaMalloc inside a timed region.
 * The copy size is the caller's; `tapegrad peaks` uses at least 8x the L2 so the copy
 * measures device memory and not the cache.
 */
#include "common.cuh"

#include <stdlib.h>
#include <string.h>

/* Device buffers and events, released by bench_end whatever happened. */
typedef struct bench {
    void *a, *b, *c;
    cudaEvent_t start, stop;
} bench;

static void bench_end(bench *b) {
    /* Release errors would only repeat an earlier failure; it has been reported. */
    if (b->a) (void)cudaFree(b->a);
    if (b->b) (void)cudaFree(b->b);
    if (b->c) (void)cudaFree(b->c);
    if (b->start) (void)cudaEventDestroy(b->start);
    if (b->stop) (void)cudaEventDestroy(b->stop);
    (void)cudaGetLastError();
}

static tg_status bench_events(bench *b) {
    TG_CUDA_CHECK(cudaEventCreate(&b->start), "cudaEventCreate");
    TG_CUDA_CHECK(cudaEventCreate(&b->stop), "cudaEventCreate");
    return TG_OK;
}

/* x[i] = a value in [-1, 1) from a hash of (i, seed): random enough for timing. */
__global__ void bench_fill_kernel(float *x, int64_t n, uint32_t seed) {
    TG_GRID_STRIDE(i, n) {
        uint32_t h = (uint32_t)i * 2654435761u ^ (uint32_t)(i >> 32) ^ seed;
        h ^= h >> 16;
        h *= 0x7feb352du;
        h ^= h >> 15;
        h *= 0x846ca68bu;
        h ^= h >> 16;
        x[i] = (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
}

static tg_status fill_random(void *p, size_t bytes, uint32_t seed) {
    int64_t n = (int64_t)(bytes / sizeof(float));
    if (n <= 0) return TG_OK;
    bench_fill_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        (float *)p, n, seed);
    TG_CUDA_LAUNCHED("bench fill");
    return TG_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef tg_status (*bench_body)(const bench *b, const void *user);

/* Median over `samples` event-timed batches of `reps` calls of body (after one untimed
 * batch), in seconds per call. */
static tg_status bench_time(bench *b, bench_body body, const void *user, int reps,
                            int samples, double *seconds) {
    tg_status st = bench_events(b);
    if (st != TG_OK) return st;
    cudaStream_t s = tg_cuda_stream();
    for (int r = 0; r < reps; r++)
        if ((st = body(b, user)) != TG_OK) return st;
    double t[64];
    if (samples > 64) samples = 64;
    for (int k = 0; k < samples; k++) {
        TG_CUDA_CHECK(cudaEventRecord(b->start, s), "cudaEventRecord");
        for (int r = 0; r < reps; r++)
            if ((st = body(b, user)) != TG_OK) return st;
        TG_CUDA_CHECK(cudaEventRecord(b->stop, s), "cudaEventRecord");
        TG_CUDA_CHECK(cudaEventSynchronize(b->stop), "cudaEventSynchronize");
        float ms = 0.0f;
        TG_CUDA_CHECK(cudaEventElapsedTime(&ms, b->start, b->stop), "cudaEventElapsedTime");
        t[k] = (double)ms * 1e-3 / reps;
    }
    qsort(t, (size_t)samples, sizeof t[0], cmp_double);
    *seconds = samples % 2 ? t[samples / 2] : 0.5 * (t[samples / 2 - 1] + t[samples / 2]);
    return TG_OK;
}

typedef struct gemm_shape {
    int M, N, K;
} gemm_shape;

static tg_status sgemm_body(const bench *b, const void *user) {
    const gemm_shape *g = (const gemm_shape *)user;
    return tg_cuda_sgemm(false, false, g->M, g->N, g->K, 1.0f, (const float *)b->a, g->K,
                         (const float *)b->b, g->N, 0.0f, (float *)b->c, g->N);
}

static tg_status copy_body(const bench *b, const void *user) {
    size_t bytes = *(const size_t *)user;
    TG_CUDA_CHECK(cudaMemcpyAsync(b->b, b->a, bytes, cudaMemcpyDeviceToDevice,
                                  tg_cuda_stream()),
                  "cudaMemcpyAsync");
    return TG_OK;
}

static tg_status bench_sgemm(bench *b, const gemm_shape *g, int reps, int samples,
                             double *seconds) {
    size_t sa = (size_t)g->M * g->K * sizeof(float), sb = (size_t)g->K * g->N * sizeof(float);
    TG_CUDA_CHECK(cudaMalloc(&b->a, sa), "cudaMalloc (bench A)");
    TG_CUDA_CHECK(cudaMalloc(&b->b, sb), "cudaMalloc (bench B)");
    TG_CUDA_CHECK(cudaMalloc(&b->c, (size_t)g->M * g->N * sizeof(float)), "cudaMalloc (bench C)");
    tg_status st = fill_random(b->a, sa, 1);
    if (st == TG_OK) st = fill_random(b->b, sb, 2);
    if (st == TG_OK) st = bench_time(b, sgemm_body, g, reps, samples, seconds);
    return st;
}

static tg_status bench_copy(bench *b, size_t bytes, int reps, int samples, double *seconds) {
    TG_CUDA_CHECK(cudaMalloc(&b->a, bytes), "cudaMalloc (bench source)");
    TG_CUDA_CHECK(cudaMalloc(&b->b, bytes), "cudaMalloc (bench destination)");
    tg_status st = fill_random(b->a, bytes, 3);
    if (st == TG_OK) st = fill_random(b->b, bytes, 4); /* first touch outside the timing */
    if (st == TG_OK) st = bench_time(b, copy_body, &bytes, reps, samples, seconds);
    return st;
}

static tg_status bench_args(const char *fn, int reps, int samples, const double *seconds) {
    if (reps < 1 || samples < 1 || !seconds)
        return tg_fail(TG_ERR_ARG, "%s: reps and samples must be >= 1 (got %d, %d) and "
                       "seconds non-NULL", fn, reps, samples);
    return tg_cuda_probe();
}

extern "C" tg_status tg_cuda_bench_sgemm(int M, int N, int K, int reps, int samples,
                                         double *seconds) {
    if (M <= 0 || N <= 0 || K <= 0)
        return tg_fail(TG_ERR_ARG, "tg_cuda_bench_sgemm: M, N, K must be >= 1 (got %d, %d, "
                       "%d)", M, N, K);
    tg_status st = bench_args("tg_cuda_bench_sgemm", reps, samples, seconds);
    if (st != TG_OK) return st;
    bench b = {};
    gemm_shape g = {M, N, K};
    st = bench_sgemm(&b, &g, reps, samples, seconds);
    bench_end(&b);
    return st;
}

extern "C" tg_status tg_cuda_bench_copy(size_t bytes, int reps, int samples, double *seconds) {
    if (bytes < sizeof(float))
        return tg_fail(TG_ERR_ARG, "tg_cuda_bench_copy: bytes must be >= 4 (got %zu)", bytes);
    tg_status st = bench_args("tg_cuda_bench_copy", reps, samples, seconds);
    if (st != TG_OK) return st;
    bench b = {};
    st = bench_copy(&b, bytes, reps, samples, seconds);
    bench_end(&b);
    return st;
}

extern "C" tg_status tg_cuda_fill_random(float *x, int64_t n, uint32_t seed) {
    return fill_random(x, (size_t)n * sizeof(float), seed);
}

extern "C" tg_status tg_cuda_device_info(tg_cuda_info *info) {
    memset(info, 0, sizeof *info);
    tg_status st = tg_cuda_probe();
    if (st != TG_OK) return st;
    int dev = 0;
    TG_CUDA_CHECK(cudaGetDevice(&dev), "cudaGetDevice");
    cudaDeviceProp prop;
    TG_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
    info->sms = prop.multiProcessorCount;
    info->l2_bytes = prop.l2CacheSize;
    info->smem_per_block_optin = (int64_t)prop.sharedMemPerBlockOptin;
    info->global_bytes = (int64_t)prop.totalGlobalMem;
    int v = 0;
    TG_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, dev), "cudaDeviceGetAttribute");
    info->sm_clock_khz = v;
    TG_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, dev),
                  "cudaDeviceGetAttribute");
    info->mem_clock_khz = v;
    TG_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, dev),
                  "cudaDeviceGetAttribute");
    info->bus_width_bits = v;
    int drv = 0, rt = 0;
    TG_CUDA_CHECK(cudaDriverGetVersion(&drv), "cudaDriverGetVersion");
    TG_CUDA_CHECK(cudaRuntimeGetVersion(&rt), "cudaRuntimeGetVersion");
    info->driver_version = drv;
    info->runtime_version = rt;
    return TG_OK;
}

extern "C" const char *tg_cuda_device_name(void) {
    static tg_cuda_info info;
    if (info.name[0] == '\0' && tg_cuda_device_info(&info) != TG_OK) info.name[0] = '\0';
    return info.name;
}
