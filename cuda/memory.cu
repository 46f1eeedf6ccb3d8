/*
 * cuda/memory.cu — device discovery, device memory (plain cudaMalloc; the arenas in
 * core/arena.c sit on top, so nothing is allocated in a training step), copies and
 * memsets queued on the library's one stream, and the event clocks of profiled ops.
 * Every CUDA call is checked.
 */
#include "common.cuh"

#include <string.h>

static int probed = 0; /* 0 unknown, 1 ok, -1 unavailable */
static char probe_reason[256];

extern "C" tg_status tg_cuda_probe(void) {
    if (probed == 0) {
        int count = 0;
        cudaError_t err = cudaGetDeviceCount(&count);
        if (err != cudaSuccess) {
            snprintf(probe_reason, sizeof probe_reason, "cudaGetDeviceCount: %s",
                     cudaGetErrorString(err));
            probed = -1;
        } else if (count == 0) {
            snprintf(probe_reason, sizeof probe_reason, "the driver reports no GPU");
            probed = -1;
        } else if ((err = cudaSetDevice(0)) != cudaSuccess) {
            snprintf(probe_reason, sizeof probe_reason, "cudaSetDevice(0): %s",
                     cudaGetErrorString(err));
            probed = -1;
        } else {
            probed = 1;
        }
        if (probed == 1 && (err = tg_cuda_stream_init()) != cudaSuccess) {
            snprintf(probe_reason, sizeof probe_reason, "cudaStreamCreate: %s",
                     cudaGetErrorString(err));
            probed = -1;
        }
    }
    if (probed < 0)
        return tg_fail(TG_ERR_DEVICE, "no CUDA device available: %s", probe_reason);
    return TG_OK;
}

extern "C" void *tg_cuda_alloc(size_t bytes) {
    if (tg_cuda_probe() != TG_OK) return NULL;
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        /* A failed cudaMalloc leaves the runtime's last error set; clear it, or the next
         * launch check (cudaGetLastError) would blame an unrelated kernel. */
        (void)cudaGetLastError();
        tg_fail(TG_ERR_NOMEM, "cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(err));
        return NULL;
    }
    return p;
}

extern "C" void tg_cuda_free(void *ptr) {
    if (!ptr) return;
    /* Freeing cannot be refused, but a failure here reports an earlier asynchronous
     * fault: record it so it is not lost (the caller cannot act on it). */
    cudaError_t err = cudaFree(ptr);
    if (err != cudaSuccess)
        tg_fail(TG_ERR_DEVICE, "cudaFree: %s (%s)", cudaGetErrorString(err),
                cudaGetErrorName(err));
}

/* Copies are queued on the library's stream, so they are ordered with the kernels and a
 * CUDA graph can capture them. A copy to the host waits for its data (the caller reads
 * it next). From pageable host memory the runtime stages the source before returning;
 * from page-locked memory it would read the source later, so then we wait too: either
 * way the source may be reused when this returns. */
extern "C" tg_status tg_cuda_copy(void *dst, bool dst_on_device, const void *src,
                                  bool src_on_device, size_t bytes) {
    if (bytes == 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    if (!dst_on_device && !src_on_device) {
        memmove(dst, src, bytes);
        return TG_OK;
    }
    cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice
                                                         : cudaMemcpyHostToDevice)
                                        : cudaMemcpyDeviceToHost;
    TG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s), "cudaMemcpyAsync");
    bool wait = !dst_on_device;
    if (kind == cudaMemcpyHostToDevice) {
        cudaPointerAttributes attr;
        TG_CUDA_CHECK(cudaPointerGetAttributes(&attr, src), "cudaPointerGetAttributes");
        wait = attr.type == cudaMemoryTypeHost; /* page-locked: read asynchronously */
    }
    if (wait) TG_CUDA_CHECK(cudaStreamSynchronize(s), "cudaStreamSynchronize (copy)");
    return TG_OK;
}

extern "C" tg_status tg_cuda_zero(void *ptr, size_t bytes) {
    return tg_cuda_fill_bytes(ptr, 0, bytes);
}

extern "C" tg_status tg_cuda_fill_bytes(void *ptr, int byte, size_t bytes) {
    if (bytes == 0) return TG_OK;
    TG_CUDA_CHECK(cudaMemsetAsync(ptr, byte, bytes, tg_cuda_stream()), "cudaMemsetAsync");
    return TG_OK;
}

extern "C" tg_status tg_cuda_sync(void) {
    TG_CUDA_CHECK(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return TG_OK;
}

/* ---------------------------------------------------------------- op timers */

/* Nested op clocks (an op may apply another): one pair of events per level. */
#define TIMER_DEPTH 8
static cudaEvent_t timer_ev[TIMER_DEPTH][2];
static int timer_depth;

extern "C" tg_status tg_cuda_timer_start(void) {
    if (timer_depth >= TIMER_DEPTH)
        return tg_fail(TG_ERR_STATE, "tg_cuda_timer_start: more than %d nested op clocks",
                       TIMER_DEPTH);
    cudaEvent_t *ev = timer_ev[timer_depth];
    for (int i = 0; i < 2; i++)
        if (!ev[i]) TG_CUDA_CHECK(cudaEventCreate(&ev[i]), "cudaEventCreate (op clock)");
    TG_CUDA_CHECK(cudaEventRecord(ev[0], tg_cuda_stream()), "cudaEventRecord (op clock)");
    timer_depth++;
    return TG_OK;
}

extern "C" tg_status tg_cuda_timer_stop(double *seconds) {
    *seconds = 0;
    if (timer_depth <= 0)
        return tg_fail(TG_ERR_STATE, "tg_cuda_timer_stop: no op clock is running");
    cudaEvent_t *ev = timer_ev[--timer_depth];
    TG_CUDA_CHECK(cudaEventRecord(ev[1], tg_cuda_stream()), "cudaEventRecord (op clock)");
    TG_CUDA_CHECK(cudaEventSynchronize(ev[1]), "cudaEventSynchronize (op clock)");
    float ms = 0.0f;
    TG_CUDA_CHECK(cudaEventElapsedTime(&ms, ev[0], ev[1]), "cudaEventElapsedTime (op clock)");
    *seconds = (double)ms * 1e-3;
    return TG_OK;
}
