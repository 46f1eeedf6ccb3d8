/*
 * cuda/memory.cu — device discovery, device memory (plain cudaMalloc; the arenas in
 * core/arena.c sit on top, so nothing is allocated in a training step), copies (host
 * sources staged through page-locked slots, so they never block) and memsets queued on
 * the library's one stream, and the event clocks of profiled ops.
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

/* ---------------------------------------------------------------- copies */

/* HOST-TO-DEVICE COPIES NEVER WAIT FOR THE GPU. From pageable memory cudaMemcpyAsync may
 * first wait for the stream's earlier work (the runtime stages the bytes itself), so a
 * copy queued mid-forward (the cross entropy's targets) would block the host until the
 * GPU caught up, and that op's clock would absorb the whole forward. So host sources go
 * through our own page-locked staging slots: the bytes are memcpy'd into a slot on the
 * host and the DMA from the slot is queued on the library's stream; the caller's array
 * may be reused as soon as this returns. Each slot has an event recorded after its DMA;
 * a slot is reused only once that event has passed (a wait only if STAGE_SLOTS copies
 * are still queued behind the GPU). Copies larger than STAGE_MAX_BYTES go in pieces
 * through the ring. The slots live as long as the process (like the stream and the
 * cuBLAS handle); like them they serve one host thread at a time. If page-locked memory
 * cannot be had, the copy falls back to cudaMemcpyAsync from the caller's memory (the
 * runtime then stages it; correct, possibly blocking). */
#define STAGE_SLOTS 4
#define STAGE_MAX_BYTES ((size_t)16 << 20) /* a slot's size at most */
#define STAGE_MIN_BYTES ((size_t)64 << 10) /* and at least (small copies share one size) */

typedef struct stage_slot {
    void *buf;         /* page-locked host memory, cap bytes */
    size_t cap;
    cudaEvent_t done;  /* recorded after the slot's last DMA */
    bool pending;      /* done was recorded and not yet waited for */
} stage_slot;

static stage_slot stage_ring[STAGE_SLOTS];
static int stage_next;

/* A slot of at least `bytes` whose previous DMA has finished; NULL (and nothing recorded)
 * when page-locked memory cannot be allocated. */
static tg_status stage_slot_get(size_t bytes, stage_slot **out) {
    stage_slot *sl = &stage_ring[stage_next];
    stage_next = (stage_next + 1) % STAGE_SLOTS;
    *out = NULL;
    if (!sl->done)
        TG_CUDA_CHECK(cudaEventCreateWithFlags(&sl->done, cudaEventDisableTiming),
                      "cudaEventCreate (copy staging)");
    if (sl->pending) { /* its previous DMA must have read the slot before we overwrite it */
        TG_CUDA_CHECK(cudaEventSynchronize(sl->done), "cudaEventSynchronize (copy staging)");
        sl->pending = false;
    }
    if (sl->cap < bytes) {
        if (sl->buf) TG_CUDA_CHECK(cudaFreeHost(sl->buf), "cudaFreeHost (copy staging)");
        sl->buf = NULL;
        sl->cap = 0;
        size_t cap = bytes < STAGE_MIN_BYTES ? STAGE_MIN_BYTES : bytes;
        if (cudaMallocHost(&sl->buf, cap) != cudaSuccess) {
            (void)cudaGetLastError(); /* handled: do not let a later launch check see it */
            sl->buf = NULL;
            return TG_OK;
        }
        sl->cap = cap;
    }
    *out = sl;
    return TG_OK;
}

static tg_status copy_from_host(void *dst, const void *src, size_t bytes, cudaStream_t s) {
    for (size_t off = 0; off < bytes;) {
        size_t n = bytes - off < STAGE_MAX_BYTES ? bytes - off : STAGE_MAX_BYTES;
        stage_slot *sl;
        tg_status st = stage_slot_get(n, &sl);
        if (st != TG_OK) return st;
        char *d = (char *)dst + off;
        const char *h = (const char *)src + off;
        if (!sl) { /* no page-locked memory: the runtime stages the rest itself */
            TG_CUDA_CHECK(cudaMemcpyAsync(d, h, bytes - off, cudaMemcpyHostToDevice, s),
                          "cudaMemcpyAsync (host to device)");
            return TG_OK;
        }
        memcpy(sl->buf, h, n);
        TG_CUDA_CHECK(cudaMemcpyAsync(d, sl->buf, n, cudaMemcpyHostToDevice, s),
                      "cudaMemcpyAsync (host to device, staged)");
        TG_CUDA_CHECK(cudaEventRecord(sl->done, s), "cudaEventRecord (copy staging)");
        sl->pending = true;
        off += n;
    }
    return TG_OK;
}

/* Copies are queued on the library's stream, so they are ordered with the kernels and a
 * CUDA graph can capture them. A copy to the host waits for its data (the caller reads
 * it next); a copy from the host is staged (above) and does not wait; either way the
 * source may be reused when this returns. */
extern "C" tg_status tg_cuda_copy(void *dst, bool dst_on_device, const void *src,
                                  bool src_on_device, size_t bytes) {
    if (bytes == 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    if (!dst_on_device && !src_on_device) {
        memmove(dst, src, bytes);
        return TG_OK;
    }
    if (!src_on_device) return copy_from_host(dst, src, bytes, s);
    cudaMemcpyKind kind = dst_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost;
    TG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s), "cudaMemcpyAsync");
    if (!dst_on_device)
        TG_CUDA_CHECK(cudaStreamSynchronize(s), "cudaStreamSynchronize (copy to host)");
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
