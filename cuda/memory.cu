/*
 * cuda/memory.cu — device discovery, device memory (plain cudaMalloc; the arenas in
 * core/arena.c sit on top, so nothing is allocated in a training step), copies and the
 * library's one stream. Every CUDA call is checked.
 */
#include "common.cuh"

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
        tg_fail(TG_ERR_NOMEM, "cudaMalloc(%zu bytes): %s", bytes, cudaGetErrorString(err));
        return NULL;
    }
    return p;
}

extern "C" void tg_cuda_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}

extern "C" tg_status tg_cuda_copy(void *dst, bool dst_on_device, const void *src,
                                  bool src_on_device, size_t bytes) {
    cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice
                                                         : cudaMemcpyHostToDevice)
                                        : (src_on_device ? cudaMemcpyDeviceToHost
                                                         : cudaMemcpyHostToHost);
    TG_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
    return TG_OK;
}

extern "C" tg_status tg_cuda_zero(void *ptr, size_t bytes) {
    TG_CUDA_CHECK(cudaMemset(ptr, 0, bytes), "cudaMemset");
    return TG_OK;
}

extern "C" tg_status tg_cuda_sync(void) {
    TG_CUDA_CHECK(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return TG_OK;
}
