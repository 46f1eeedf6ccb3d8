/*
 * cuda/dist.cu — NCCL for data-parallel training (core/dist.c) and synchronised
 * batchnorm (cuda/batchnorm_sync.cu). Device buffers only, no host copies, no host
 * synchronisation on the training path. Every CUDA and NCCL call is checked.
 *
 * TWO STREAMS. The kernels run on the library's stream (tg_cuda_stream(), cuda/blas.cu).
 * Every collective of the job runs on the communicator's own stream, created with it on
 * the rank's GPU: non-blocking (not ordered with the legacy default stream) and at the
 * device's highest priority, so a collective's kernel is scheduled ahead of the backward
 * kernels it shares the GPU with. The two streams meet only at events:
 *
 *   fence in   record `ready` on the library stream after the kernels that produced a
 *              buffer; the comm stream waits for it before touching the buffer.
 *   fence out  record `done` on the comm stream after the last collective queued; the
 *              library stream waits for it, so kernels queued afterwards see the result.
 *
 * A gradient bucket (tg_nccl_allreduce, started by the backward hook as soon as its
 * gradients are final) is fence in, the share-scale kernel and ncclAllReduce, all on the
 * comm stream, and returns at once: the backward kernels queued next on the library
 * stream run while the bucket is reduced. That is the overlap. tg_nccl_wait (from
 * tg_dist_sync_grads, and at the end of the backward walk) is the fence out: the
 * optimizer kernels queued after it read reduced gradients, and nothing the library
 * stream does later (the next step's zero_grad and backward) can write a bucket that is
 * still being reduced. Neither side waits on the host. Synchronised batchnorm and the
 * parameter broadcast need the result in the very next kernel, so they do fence in,
 * collective, fence out in one call (tg_nccl_allreduce_f64, tg_nccl_broadcast).
 *
 * ORDER. Every collective of a communicator goes on its one stream, so the GPU runs them
 * in the order they were issued, which is the same on every rank (every rank records the
 * same tape): no cross-stream ordering question inside NCCL. A batchnorm all-reduce in
 * the backward therefore queues behind the gradient buckets already in flight.
 *
 * EVENTS. Two, made once and reused for every fence: cudaStreamWaitEvent waits for the
 * event's most recent record at the time of the call, and the event may be recorded
 * again right after (CUDA runtime API, cudaStreamWaitEvent), so one event per direction
 * serves any number of buckets: the pool never grows and nothing is created per step.
 */
#include "common.cuh"

#include "../core/dist.h"

#include <nccl.h>
#include <stdlib.h>
#include <string.h>

/* NCCL's status string and its last message ("Duplicate GPU detected ...") together. */
#define NCCL_CHECK(call, what)                                                            \
    do {                                                                                  \
        ncclResult_t r_ = (call);                                                         \
        if (r_ != ncclSuccess)                                                            \
            return tg_fail(TG_ERR_DEVICE, "%s failed: %s (%s)", what,                     \
                           ncclGetErrorString(r_), ncclGetLastError(NULL));               \
    } while (0)

/* What core/dist.c holds as its opaque `nccl` pointer. */
typedef struct tg_nccl {
    ncclComm_t comm;
    cudaStream_t stream;   /* the comm stream: every collective of comm */
    cudaEvent_t ready;     /* fence in: recorded on the library stream */
    cudaEvent_t done;      /* fence out: recorded on the comm stream */
    bool outstanding;      /* collectives queued since the last fence out */
} tg_nccl;

extern "C" size_t tg_nccl_id_bytes(void) { return sizeof(ncclUniqueId); }

extern "C" tg_status tg_nccl_get_id(void *id) {
    NCCL_CHECK(ncclGetUniqueId((ncclUniqueId *)id), "ncclGetUniqueId");
    return TG_OK;
}

/* One GPU per local rank (round robin when there are more ranks than GPUs; NCCL then
 * refuses two ranks on one device, and says so). */
extern "C" tg_status tg_nccl_select_device(int local_rank, int *device) {
    int count = 0;
    TG_CUDA_CHECK(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (count <= 0) return tg_fail(TG_ERR_DEVICE, "tg_dist_init: no CUDA device");
    *device = local_rank % count;
    TG_CUDA_CHECK(cudaSetDevice(*device), "cudaSetDevice");
    return tg_cuda_probe(); /* creates the library's stream on this device */
}

/* Releases what c holds (any part may be missing: a half-made one). Errors are recorded
 * (tg_fail), not returned: there is nothing left to do about them. */
static void nccl_release(tg_nccl *c) {
    if (c->stream) {
        cudaError_t e = cudaStreamSynchronize(c->stream); /* no collective left running */
        if (e != cudaSuccess)
            tg_fail(TG_ERR_DEVICE, "tg_nccl_free: cudaStreamSynchronize: %s",
                    cudaGetErrorString(e));
    }
    if (c->comm) {
        ncclResult_t r = ncclCommDestroy(c->comm);
        if (r != ncclSuccess)
            tg_fail(TG_ERR_DEVICE, "tg_nccl_free: ncclCommDestroy: %s", ncclGetErrorString(r));
    }
    cudaEvent_t events[2] = {c->ready, c->done};
    for (int i = 0; i < 2; i++) {
        if (!events[i]) continue;
        cudaError_t e = cudaEventDestroy(events[i]);
        if (e != cudaSuccess)
            tg_fail(TG_ERR_DEVICE, "tg_nccl_free: cudaEventDestroy: %s", cudaGetErrorString(e));
    }
    if (c->stream) {
        cudaError_t e = cudaStreamDestroy(c->stream);
        if (e != cudaSuccess)
            tg_fail(TG_ERR_DEVICE, "tg_nccl_free: cudaStreamDestroy: %s", cudaGetErrorString(e));
    }
    free(c);
}

/* The communicator, its stream and its two events, on the current device (the one
 * tg_nccl_select_device chose). */
static tg_status nccl_make(tg_nccl *c, int world, int rank, const void *id) {
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    NCCL_CHECK(ncclCommInitRank(&c->comm, world, uid, rank), "ncclCommInitRank");
    int least = 0, greatest = 0; /* numerically: greatest priority is the lowest number */
    TG_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest),
                  "cudaDeviceGetStreamPriorityRange");
    TG_CUDA_CHECK(cudaStreamCreateWithPriority(&c->stream, cudaStreamNonBlocking, greatest),
                  "cudaStreamCreateWithPriority (NCCL stream)");
    TG_CUDA_CHECK(cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming),
                  "cudaEventCreateWithFlags (NCCL fence)");
    TG_CUDA_CHECK(cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming),
                  "cudaEventCreateWithFlags (NCCL fence)");
    return TG_OK;
}

extern "C" tg_status tg_nccl_init(void **comm, int world, int rank, const void *id) {
    tg_nccl *c = (tg_nccl *)calloc(1, sizeof *c);
    if (!c) return tg_fail(TG_ERR_NOMEM, "tg_nccl_init: out of memory");
    tg_status st = nccl_make(c, world, rank, id);
    if (st != TG_OK) {
        nccl_release(c);
        return st;
    }
    *comm = c;
    return TG_OK;
}

extern "C" void tg_nccl_free(void *comm) {
    if (comm) nccl_release((tg_nccl *)comm);
}

/* The comm stream waits for everything queued on the library stream so far. */
static tg_status fence_in(tg_nccl *c) {
    TG_CUDA_CHECK(cudaEventRecord(c->ready, tg_cuda_stream()),
                  "cudaEventRecord (NCCL fence in)");
    TG_CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->ready, 0),
                  "cudaStreamWaitEvent (NCCL fence in)");
    return TG_OK;
}

/* The library stream waits for everything queued on the comm stream so far. */
static tg_status fence_out(tg_nccl *c) {
    TG_CUDA_CHECK(cudaEventRecord(c->done, c->stream), "cudaEventRecord (NCCL fence out)");
    TG_CUDA_CHECK(cudaStreamWaitEvent(tg_cuda_stream(), c->done, 0),
                  "cudaStreamWaitEvent (NCCL fence out)");
    c->outstanding = false;
    return TG_OK;
}

/* A failure NCCL noticed while running (a peer gone, a network error): reported at the
 * next wait instead of hanging silently in the next step. */
static tg_status async_error(tg_nccl *c) {
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(c->comm, &async), "ncclCommGetAsyncError");
    if (async != ncclSuccess)
        return tg_fail(TG_ERR_DEVICE, "NCCL collective failed: %s (%s)",
                       ncclGetErrorString(async), ncclGetLastError(c->comm));
    return TG_OK;
}

/* buf (n) *= scale: this rank's share of the global batch. */
__global__ static void scale_kernel(float *buf, int64_t n, float scale) {
    TG_GRID_STRIDE(i, n) buf[i] *= scale;
}

extern "C" tg_status tg_nccl_allreduce(void *comm, float *buf, int64_t n, float scale) {
    if (n <= 0) return TG_OK;
    tg_nccl *c = (tg_nccl *)comm;
    tg_status st = fence_in(c);
    if (st != TG_OK) return st;
    c->outstanding = true; /* from here on the comm stream may touch buf */
    if (scale != 1.0f) {
        scale_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, c->stream>>>(buf, n, scale);
        TG_CUDA_LAUNCHED("tg_nccl_allreduce: scale_kernel");
    }
    NCCL_CHECK(ncclAllReduce(buf, buf, (size_t)n, ncclFloat, ncclSum, c->comm, c->stream),
               "ncclAllReduce");
    return TG_OK;
}

extern "C" tg_status tg_nccl_wait(void *comm) {
    tg_nccl *c = (tg_nccl *)comm;
    if (c->outstanding) {
        tg_status st = fence_out(c);
        if (st != TG_OK) return st;
    }
    return async_error(c);
}

extern "C" tg_status tg_nccl_allreduce_f64(void *comm, double *buf, int64_t n) {
    if (!comm)
        return tg_fail(TG_ERR_STATE, "tg_nccl_allreduce_f64: no NCCL communicator (a CUDA "
                       "job of more than one rank has one: tg_dist_init(TG_DEVICE_CUDA))");
    if (n <= 0) return TG_OK;
    tg_nccl *c = (tg_nccl *)comm;
    tg_status st = fence_in(c);
    if (st != TG_OK) return st;
    c->outstanding = true;
    NCCL_CHECK(ncclAllReduce(buf, buf, (size_t)n, ncclDouble, ncclSum, c->comm, c->stream),
               "ncclAllReduce (doubles)");
    return fence_out(c);
}

extern "C" tg_status tg_nccl_broadcast(void *comm, float *buf, int64_t n) {
    if (n <= 0) return TG_OK;
    tg_nccl *c = (tg_nccl *)comm;
    tg_status st = fence_in(c);
    if (st != TG_OK) return st;
    c->outstanding = true;
    NCCL_CHECK(ncclBroadcast(buf, buf, (size_t)n, ncclFloat, 0, c->comm, c->stream),
               "ncclBroadcast");
    return fence_out(c);
}
