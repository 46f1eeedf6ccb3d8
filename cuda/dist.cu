/*
 * cuda/dist.cu — NCCL for data-parallel training (core/dist.c). Collectives run on the
 * library's stream, on device buffers, in stream order with the backward kernels that
 * produce the gradients and the optimizer kernel that consumes them: no host copy and no
 * synchronisation in between. Every CUDA and NCCL call is checked.
 */
#include "common.cuh"

#include "../core/dist.h"

#include <nccl.h>
#include <string.h>

#define NCCL_CHECK(call, what)                                                            \
    do {                                                                                  \
        ncclResult_t r_ = (call);                                                         \
        if (r_ != ncclSuccess)                                                            \
            return tg_fail(TG_ERR_DEVICE, "%s failed: %s", what, ncclGetErrorString(r_)); \
    } while (0)

extern "C" size_t tg_nccl_id_bytes(void) { return sizeof(ncclUniqueId); }

extern "C" tg_status tg_nccl_get_id(void *id) {
    NCCL_CHECK(ncclGetUniqueId((ncclUniqueId *)id), "ncclGetUniqueId");
    return TG_OK;
}

/* One GPU per local rank (round robin when there are more ranks than GPUs). */
extern "C" tg_status tg_nccl_select_device(int local_rank, int *device) {
    int count = 0;
    TG_CUDA_CHECK(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (count <= 0) return tg_fail(TG_ERR_DEVICE, "tg_dist_init: no CUDA device");
    *device = local_rank % count;
    TG_CUDA_CHECK(cudaSetDevice(*device), "cudaSetDevice");
    return tg_cuda_probe(); /* creates the library's stream on this device */
}

extern "C" tg_status tg_nccl_init(void **comm, int world, int rank, const void *id) {
    ncclComm_t c;
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    NCCL_CHECK(ncclCommInitRank(&c, world, uid, rank), "ncclCommInitRank");
    *comm = c;
    return TG_OK;
}

extern "C" void tg_nccl_free(void *comm) {
    if (comm) ncclCommDestroy((ncclComm_t)comm);
}

/* buf (n) *= scale: this rank's share of the global batch. */
__global__ static void scale_kernel(float *buf, int64_t n, float scale) {
    TG_GRID_STRIDE(i, n) buf[i] *= scale;
}

extern "C" tg_status tg_nccl_allreduce(void *comm, float *buf, int64_t n, float scale) {
    if (n <= 0) return TG_OK;
    cudaStream_t s = tg_cuda_stream();
    if (scale != 1.0f) {
        scale_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(buf, n, scale);
        TG_CUDA_LAUNCHED("tg_nccl_allreduce: scale_kernel");
    }
    NCCL_CHECK(ncclAllReduce(buf, buf, (size_t)n, ncclFloat, ncclSum, (ncclComm_t)comm, s),
               "ncclAllReduce");
    return TG_OK;
}

extern "C" tg_status tg_nccl_broadcast(void *comm, float *buf, int64_t n) {
    if (n <= 0) return TG_OK;
    NCCL_CHECK(ncclBroadcast(buf, buf, (size_t)n, ncclFloat, 0, (ncclComm_t)comm,
                             tg_cuda_stream()),
               "ncclBroadcast");
    return TG_OK;
}
