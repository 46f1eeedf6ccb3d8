/*
 * core/dist.h — internals of data-parallel training shared by core/dist.c, the tape
 * (autograd/tape.c starts gradient buckets from its backward walk), sync batchnorm
 * (ops/batchnorm_sync.c, cuda/batchnorm_sync.cu) and the NCCL glue (cuda/dist.cu). Not
 * installed.
 */
#ifndef TG_DIST_H
#define TG_DIST_H

#include "tapegrad.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called by tg_backward on a context attached to d (ctx->dist): `record` is
 * TG_DIST_BACKWARD_BEGIN before the walk, the index of each record whose backward has
 * just run, and TG_DIST_BACKWARD_END after the walk. Starts every bucket whose gradients
 * are final and lets outstanding all-reduces progress. Errors are recorded and reported
 * by tg_dist_sync_grads. */
#define TG_DIST_BACKWARD_BEGIN (-2)
#define TG_DIST_BACKWARD_END (-1)
void tg_dist_backward_hook(tg_dist *d, int record);

/* tg_ctx_free of a context attached to d (ctx->dist): d forgets it. */
void tg_dist_ctx_gone(tg_dist *d, tg_ctx *ctx);

/* This rank's share of the current global batch (local / global), 1 for a world of 1. */
double tg_dist_share(const tg_dist *d);

#ifdef TG_HAVE_MPI
/* core/dist_shm.c: the all-reduce of ranks that share one host (its header comment has the
 * scheme). All calls but progress/finish are collective. */
#define DIST_SHM_MAX_WORLD 64
typedef struct dist_shm dist_shm;
/* *out NULL with TG_OK when the ranks of *comm (an MPI_Comm) are not all on this host or
 * the shared window cannot be made: the caller keeps using MPI. An error when the ranks'
 * stores differ. nfloats: the gradient store's length; nbuckets: its bucket count. */
tg_status dist_shm_new(void *comm, int rank, int world, int64_t nfloats, int nbuckets,
                       dist_shm **out);
/* Whether this rank published a bucket of the round not finished yet. */
bool dist_shm_round_open(const dist_shm *s);
void dist_shm_free(dist_shm *s);
/* This rank's segment: nfloats floats, 64-byte aligned, zeroed, for the gradient store. */
float *dist_shm_grads(dist_shm *s);
/* Bucket b of this rank is final for this round; share weights its gradients. */
void dist_shm_publish(dist_shm *s, int b, double share);
/* Reduces this rank's chunk of every bucket all ranks have published; returns how many
 * buckets this rank has not reduced yet. begin/end: the buckets' ranges (floats). */
int dist_shm_progress(dist_shm *s, const int64_t *begin, const int64_t *end);
/* Reduces what is left and waits until every rank reduced every bucket (every bucket must
 * be published), then starts the next round. */
tg_status dist_shm_finish(dist_shm *s, const int64_t *begin, const int64_t *end);
#endif

#ifdef TG_HAVE_MPI
/* core/dist_conv.c: TG_CONV_ALGO_AUTO's choices agreed across the ranks of *comm (an
 * MPI_Comm); collective. ctx: this rank's attached context (NULL: it has none). *agreed:
 * the ctx's conv_choices_version at the last agreement (updated). */
tg_status dist_conv_agree(void *comm, int world, tg_ctx *ctx, uint64_t *agreed);
#endif

/* The NCCL communicator of a CUDA job of more than one rank (cuda/dist.cu's opaque
 * handle, what the tg_nccl_* functions take); NULL otherwise. */
void *tg_dist_nccl(const tg_dist *d);

#ifdef TG_HAVE_NCCL
/* cuda/dist.cu: NCCL on its own stream, met by the library's stream at events (the file
 * explains the fences). `comm` is the handle tg_nccl_init makes. */
size_t tg_nccl_id_bytes(void);
tg_status tg_nccl_get_id(void *id);  /* rank 0 makes it; MPI broadcasts it */
tg_status tg_nccl_select_device(int local_rank, int *device);
/* The communicator, its stream (non-blocking, highest priority) and its fence events. */
tg_status tg_nccl_init(void **comm, int world, int rank, const void *id);
void tg_nccl_free(void *comm);       /* waits for its stream first; accepts NULL */
/* Starts a gradient bucket: buf (n floats, device) *= scale (skipped when 1), then summed
 * over ranks in place, on the comm stream after the library stream's work so far.
 * Returns without waiting; the library stream does not see the result until
 * tg_nccl_wait. */
tg_status tg_nccl_allreduce(void *comm, float *buf, int64_t n, float scale);
/* The library stream waits (on the device, not the host) for every collective started
 * so far; then reports any error NCCL hit asynchronously. */
tg_status tg_nccl_wait(void *comm);
/* Blocking in stream order: buf (n doubles, device) summed over ranks; kernels queued
 * next on the library stream see the sums (synchronised batchnorm). */
tg_status tg_nccl_allreduce_f64(void *comm, double *buf, int64_t n);
tg_status tg_nccl_broadcast(void *comm, float *buf, int64_t n); /* rank 0's, in stream order */
#endif

#ifdef __cplusplus
}
#endif
#endif /* TG_DIST_H */
