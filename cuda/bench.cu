/*
 * cuda/bench.cu — the device's own peaks for `tapegrad peaks --device cuda` and the
 * benchmarks' ratios (DESIGN §9): same-shape cuBLAS SGEMM and device-to-device copy
 * bandwidth, timed with CUDA events on the library's stream after a warm-up call.
 * These allocate their buffers with cudaMalloc: they measure, they are not a step.
 */
#include "common.cuh"

/* A device buffer and a pair of events, released by bench_end whatever happened. */
typedef struct bench {
    void *a, *b, *c;
    cudaEvent_t start, stop;
} bench;

static void bench_end(bench *b) {
    cudaFree(b->a);
    cudaFree(b->b);
    cudaFree(b->c);
    if (b->start) cudaEventDestroy(b->start);
    if (b->stop) cudaEventDestroy(b->stop);
}

static tg_status bench_events(bench *b) {
    TG_CUDA_CHECK(cudaEventCreate(&b->start), "cudaEventCreate");
    TG_CUDA_CHECK(cudaEventCreate(&b->stop), "cudaEventCreate");
    return TG_OK;
}

/* Seconds per repetition between the two recorded events. */
static tg_status bench_elapsed(bench *b, int reps, double *seconds) {
    TG_CUDA_CHECK(cudaEventSynchronize(b->stop), "cudaEventSynchronize");
    float ms = 0.0f;
    TG_CUDA_CHECK(cudaEventElapsedTime(&ms, b->start, b->stop), "cudaEventElapsedTime");
    *seconds = (double)ms * 1e-3 / reps;
    return TG_OK;
}

static tg_status sgemm_run(const bench *b, int M, int N, int K, int reps) {
    for (int r = 0; r < reps; r++) {
        tg_status st = tg_cuda_sgemm(false, false, M, N, K, 1.0f, (const float *)b->a, K,
                                     (const float *)b->b, N, 0.0f, (float *)b->c, N);
        if (st != TG_OK) return st;
    }
    return TG_OK;
}

static tg_status bench_sgemm(bench *b, int M, int N, int K, int reps, double *seconds) {
    TG_CUDA_CHECK(cudaMalloc(&b->a, (size_t)M * K * sizeof(float)), "cudaMalloc (bench A)");
    TG_CUDA_CHECK(cudaMalloc(&b->b, (size_t)K * N * sizeof(float)), "cudaMalloc (bench B)");
    TG_CUDA_CHECK(cudaMalloc(&b->c, (size_t)M * N * sizeof(float)), "cudaMalloc (bench C)");
    /* Zeros: the timing of fp32 FMAs does not depend on the values. */
    TG_CUDA_CHECK(cudaMemset(b->a, 0, (size_t)M * K * sizeof(float)), "cudaMemset");
    TG_CUDA_CHECK(cudaMemset(b->b, 0, (size_t)K * N * sizeof(float)), "cudaMemset");
    tg_status st = bench_events(b);
    if (st == TG_OK) st = sgemm_run(b, M, N, K, 1); /* warm-up: cuBLAS picks its kernel */
    if (st != TG_OK) return st;
    cudaStream_t s = tg_cuda_stream();
    TG_CUDA_CHECK(cudaEventRecord(b->start, s), "cudaEventRecord");
    if ((st = sgemm_run(b, M, N, K, reps)) != TG_OK) return st;
    TG_CUDA_CHECK(cudaEventRecord(b->stop, s), "cudaEventRecord");
    return bench_elapsed(b, reps, seconds);
}

static tg_status bench_copy(bench *b, size_t bytes, int reps, double *seconds) {
    TG_CUDA_CHECK(cudaMalloc(&b->a, bytes), "cudaMalloc (bench source)");
    TG_CUDA_CHECK(cudaMalloc(&b->b, bytes), "cudaMalloc (bench destination)");
    TG_CUDA_CHECK(cudaMemset(b->a, 0, bytes), "cudaMemset");
    tg_status st = bench_events(b);
    if (st != TG_OK) return st;
    cudaStream_t s = tg_cuda_stream();
    TG_CUDA_CHECK(cudaMemcpyAsync(b->b, b->a, bytes, cudaMemcpyDeviceToDevice, s),
                  "cudaMemcpyAsync (warm-up)");
    TG_CUDA_CHECK(cudaEventRecord(b->start, s), "cudaEventRecord");
    for (int r = 0; r < reps; r++)
        TG_CUDA_CHECK(cudaMemcpyAsync(b->b, b->a, bytes, cudaMemcpyDeviceToDevice, s),
                      "cudaMemcpyAsync");
    TG_CUDA_CHECK(cudaEventRecord(b->stop, s), "cudaEventRecord");
    return bench_elapsed(b, reps, seconds);
}

extern "C" tg_status tg_cuda_bench_sgemm(int M, int N, int K, int reps, double *seconds) {
    if (M <= 0 || N <= 0 || K <= 0 || reps < 1 || !seconds)
        return tg_fail(TG_ERR_ARG, "tg_cuda_bench_sgemm: M, N, K and reps must be >= 1 (got "
                       "%d, %d, %d, %d) and seconds non-NULL", M, N, K, reps);
    tg_status st = tg_cuda_probe();
    if (st != TG_OK) return st;
    bench b = {};
    st = bench_sgemm(&b, M, N, K, reps, seconds);
    bench_end(&b);
    return st;
}

extern "C" tg_status tg_cuda_bench_copy(size_t bytes, int reps, double *seconds) {
    if (bytes == 0 || reps < 1 || !seconds)
        return tg_fail(TG_ERR_ARG, "tg_cuda_bench_copy: bytes and reps must be >= 1 (got "
                       "%zu, %d) and seconds non-NULL", bytes, reps);
    tg_status st = tg_cuda_probe();
    if (st != TG_OK) return st;
    bench b = {};
    st = bench_copy(&b, bytes, reps, seconds);
    bench_end(&b);
    return st;
}

extern "C" const char *tg_cuda_device_name(void) {
    static char name[256];
    cudaDeviceProp prop;
    if (name[0] == '\0' && tg_cuda_probe() == TG_OK &&
        cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        snprintf(name, sizeof name, "%s", prop.name);
    return name;
}
