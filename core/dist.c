/*
 * core/dist.c — data-parallel training over MPI (CPU gradients) and NCCL (CUDA gradients).
 *
 * THE IDEA. Every rank holds the whole model, computes the gradient of the mean loss over
 * its share of the global batch, and the ranks sum their gradients, each weighted by its
 * share s_r = b_r / B (b_r of the B examples):
 *     g = sum_r s_r g_r,   g_r = (1/b_r) sum_{i in r} dl_i/dp   =>   g = (1/B) sum_i dl_i/dp
 * which is exactly the one-process gradient of batch B, for any split. Every rank then
 * holds the same g and applies the same optimizer step, so parameters and optimizer state
 * stay identical without ever being sent again (only the initial broadcast).
 *
 * BUCKETS AND OVERLAP. The flat gradient store (core/params.c) is cut into buckets of at
 * least bucket_bytes, at parameter boundaries, starting from its end: parameters are added
 * in forward order, so the backward pass finishes them roughly from the end. At the start
 * of a backward pass the tape tells us, for every bucket, the smallest record index that
 * touches one of its parameters: the tape is replayed in reverse, so once the walk has
 * run that record the bucket's gradients are final (backward only ever adds into them).
 * The hook in tg_backward (autograd/tape.c) then starts the bucket's all-reduce while
 * the walk goes on: on CPUs of one host through the shared gradient stores of
 * core/dist_shm.c (publish the bucket, reduce this rank's chunk of every bucket all ranks
 * have published, after every op); across hosts with MPI_Iallreduce, polled (MPI_Test)
 * after every op because Open MPI's non-blocking collectives advance only inside MPI
 * calls; on CUDA with ncclAllReduce on NCCL's own stream (cuda/dist.cu). tg_dist_sync_grads waits for
 * the rest; the time it blocks is the communication the backward pass did not hide (on
 * CUDA the wait is on the device, not the host: wait_seconds is host time only there).
 *
 * Every rank records the same tape, so buckets start in the same order everywhere, as MPI
 * requires of collectives.
 *
 * tg_dist_sync_grads also agrees TG_CONV_ALGO_AUTO's choices across CPU ranks
 * (core/dist_conv.c), so every rank computes every layer with the same algorithm.
 *
 * WORLD OF 1. Without mpirun (or without MPI in the build) rank 0 of 1 does no
 * communication at all: attach changes nothing and every call returns at once.
 */
#include "core.h"
#include "dist.h"

#include "../autograd/tape.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_HAVE_MPI
#include <mpi.h>
#endif

typedef struct dist_bucket {
    int64_t begin, end;   /* range of the flat gradient store (floats, padding included) */
    int first_use;        /* smallest tape record touching it this step; -1: none */
    bool started;
#ifdef TG_HAVE_MPI
    MPI_Request req;
#endif
} dist_bucket;

struct tg_dist {
    int rank, world, local_rank;
    tg_device device;
    bool mpi_initialized;  /* we called MPI_Init, so we finalise */
#ifdef TG_HAVE_MPI
    MPI_Comm comm;
#endif
    void *nccl;            /* CUDA: the NCCL communicator */
    /* Gradient synchronisation (tg_dist_attach). */
    tg_ctx *ctx;
    tg_params *ps;
    tg_dist_opts opts;
    dist_bucket *buckets;
    int nbuckets;
#ifdef TG_HAVE_MPI
    dist_shm *shm;         /* ranks on one host: shared gradient stores (core/dist_shm.c) */
    int64_t *bbegin, *bend; /* the buckets' ranges, for dist_shm */
#endif
    uint64_t conv_agreed;  /* ctx->conv_choices_version at the last agreement */
    double share;          /* this step's local / global examples */
    tg_status pending;     /* first error hit inside the backward hook */
    tg_dist_stats stats;
};

bool tg_dist_available(void) {
#ifdef TG_HAVE_MPI
    return true;
#else
    return false;
#endif
}

bool tg_dist_launched(void) {
    /* Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; PMIx and PMI launchers theirs. */
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

#ifdef TG_HAVE_MPI
static tg_status mpi_fail(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return tg_fail(TG_ERR_DEVICE, "%s failed: %s", what, msg);
}
#define MPI_CHECK(call, what)                                                              \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, what);                                \
    } while (0)
#endif

tg_dist *tg_dist_init(tg_device device) {
    if (device != TG_DEVICE_CPU && device != TG_DEVICE_CUDA) {
        tg_fail(TG_ERR_ARG, "tg_dist_init: unknown device %d", (int)device);
        return NULL;
    }
    tg_dist *d = calloc(1, sizeof *d);
    if (!d) {
        tg_fail(TG_ERR_NOMEM, "tg_dist_init: out of memory");
        return NULL;
    }
    d->world = 1;
    d->device = device;
    d->share = 1.0;
#ifdef TG_HAVE_MPI
    if (tg_dist_launched()) {
        int initialized = 0, provided = 0;
        MPI_Initialized(&initialized);
        /* Only the main thread calls MPI; OpenMP threads only compute. */
        if (!initialized && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) {
            tg_fail(TG_ERR_DEVICE, "tg_dist_init: MPI_Init_thread failed");
            free(d);
            return NULL;
        }
        d->mpi_initialized = !initialized;
        MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
        MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
        MPI_Comm_rank(d->comm, &d->rank);
        MPI_Comm_size(d->comm, &d->world);
        /* The local rank: our index among the ranks that share this host's memory. */
        MPI_Comm local;
        MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local);
        MPI_Comm_rank(local, &d->local_rank);
        MPI_Comm_free(&local);
    }
#endif
#ifdef TG_HAVE_NCCL
    if (device == TG_DEVICE_CUDA && d->world > 1) {
        int gpu;
        unsigned char id[256];
        size_t idb = tg_nccl_id_bytes();
        TG_ASSERT(idb <= sizeof id);
        tg_status st = tg_nccl_select_device(d->local_rank, &gpu);
        if (st == TG_OK && d->rank == 0) st = tg_nccl_get_id(id);
        /* Every rank takes part in the broadcast, so no rank waits on a failed one. */
        int ok = st == TG_OK, all_ok = 0;
        MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, d->comm);
        if (all_ok && MPI_Bcast(id, (int)idb, MPI_BYTE, 0, d->comm) == MPI_SUCCESS)
            st = tg_nccl_init(&d->nccl, d->world, d->rank, id);
        else if (st == TG_OK)
            st = tg_fail(TG_ERR_DEVICE, "tg_dist_init: another rank failed to set up its GPU");
        if (st != TG_OK) {
            tg_dist_free(d);
            return NULL;
        }
    }
#endif
    return d;
}

/* LIFETIMES. attach links d both ways with its context (ctx->dist, d->ctx) and its store
 * (d->ps, the store's watcher): tg_ctx_free and tg_params_free tell d, which forgets them;
 * tg_dist_free and a new attach unlink them. So the three can be freed in any order. */
static void store_gone(void *arg) { ((tg_dist *)arg)->ps = NULL; }

void tg_dist_ctx_gone(tg_dist *d, tg_ctx *ctx) {
    if (d && d->ctx == ctx) d->ctx = NULL;
}

#ifdef TG_HAVE_MPI
/* Moves the store's gradients back into its own memory and frees the window (collective). */
static void shm_detach(tg_dist *d) {
    if (!d->shm) return;
    if (d->ps && tg_params_place_grads(d->ps, NULL) != TG_OK) {
        /* No memory to move the gradients back: the store keeps the shared segment (the
         * window is left allocated, not freed under it). */
    } else {
        dist_shm_free(d->shm);
    }
    d->shm = NULL;
    free(d->bbegin);
    d->bbegin = d->bend = NULL;
}

/* Collective: puts ps's gradient store into a shared window when every rank is on this
 * host. Without one (other hosts, no memory) the buckets go through MPI. */
static tg_status shm_attach(tg_dist *d, tg_params *ps) {
    if (d->device != TG_DEVICE_CPU || !d->opts.shared_memory || !d->nbuckets ||
        d->world > DIST_SHM_MAX_WORLD)
        return TG_OK;
    d->bbegin = malloc(2 * (size_t)d->nbuckets * sizeof *d->bbegin);
    if (d->bbegin) {
        d->bend = d->bbegin + d->nbuckets;
        for (int b = 0; b < d->nbuckets; b++) {
            d->bbegin[b] = d->buckets[b].begin;
            d->bend[b] = d->buckets[b].end;
        }
    }
    int ok = d->bbegin != NULL, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, d->comm);
    tg_status st = TG_OK;
    if (all_ok)
        st = dist_shm_new(&d->comm, d->rank, d->world, tg_params_flat_numel(ps), d->nbuckets,
                          &d->shm);
    if (!d->shm) {
        free(d->bbegin);
        d->bbegin = d->bend = NULL;
        return st;
    }
    /* Cannot fail for a CPU store (no allocation), so no rank detaches alone. */
    return tg_params_place_grads(ps, dist_shm_grads(d->shm));
}
#endif

/* Undoes tg_dist_attach (collective with a shared window): the gradients leave it, the
 * context stops calling d, the store stops telling d. */
static void detach(tg_dist *d) {
#ifdef TG_HAVE_MPI
    shm_detach(d);
#endif
    if (d->ps && tg_params_watcher(d->ps) == d) tg_params_watch(d->ps, NULL, NULL);
    if (d->ctx && d->ctx->dist == d) d->ctx->dist = NULL;
    if (d->ctx && d->ctx->sync_bn == d) d->ctx->sync_bn = NULL;
    d->ps = NULL;
    d->ctx = NULL;
    d->nbuckets = 0;
}

void tg_dist_free(tg_dist *d) {
    if (!d) return;
#ifdef TG_HAVE_NCCL
    if (d->nccl) tg_nccl_free(d->nccl);
#endif
    detach(d);
    free(d->buckets);
#ifdef TG_HAVE_MPI
    if (d->world > 1 || d->mpi_initialized) {
        MPI_Comm_free(&d->comm);
        if (d->mpi_initialized) MPI_Finalize();
    }
#endif
    free(d);
}

int tg_dist_rank(const tg_dist *d) { return d ? d->rank : 0; }
int tg_dist_world(const tg_dist *d) { return d ? d->world : 1; }
int tg_dist_local_rank(const tg_dist *d) { return d ? d->local_rank : 0; }
double tg_dist_share(const tg_dist *d) { return d ? d->share : 1.0; }

tg_dist_opts tg_dist_opts_default(void) {
    return (tg_dist_opts){.bucket_bytes = 512 * 1024, .overlap = true, .sync_batchnorm = true,
                          .shared_memory = true};
}

tg_status tg_dist_barrier(tg_dist *d) {
    if (!d || d->world == 1) return TG_OK;
#ifdef TG_HAVE_MPI
    MPI_CHECK(MPI_Barrier(d->comm), "tg_dist_barrier: MPI_Barrier");
#endif
    return TG_OK;
}

tg_status tg_dist_allreduce_sum(tg_dist *d, double *values, int n) {
    if (!d || d->world == 1 || n == 0) return TG_OK;
    if (!values || n < 0) return tg_fail(TG_ERR_ARG, "tg_dist_allreduce_sum: bad arguments");
#ifdef TG_HAVE_MPI
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, d->comm),
              "tg_dist_allreduce_sum: MPI_Allreduce");
#endif
    return TG_OK;
}

#ifdef TG_HAVE_MPI
/* MPI counts are int: long buffers go in pieces of at most 2^30 floats. */
static tg_status bcast_floats(tg_dist *d, float *p, int64_t n) {
    if (d->nccl) {
#ifdef TG_HAVE_NCCL
        return tg_nccl_broadcast(d->nccl, p, n);
#endif
    }
    for (int64_t off = 0; off < n;) {
        int part = n - off > (1 << 30) ? 1 << 30 : (int)(n - off);
        MPI_CHECK(MPI_Bcast(p + off, part, MPI_FLOAT, 0, d->comm),
                  "tg_dist_broadcast_params: MPI_Bcast");
        off += part;
    }
    return TG_OK;
}
#endif

tg_status tg_dist_broadcast_params(tg_dist *d, tg_params *ps) {
    if (!ps) return tg_fail(TG_ERR_ARG, "tg_dist_broadcast_params: argument 'ps' is NULL");
    if (!d || d->world == 1) return TG_OK;
    if (tg_params_device(ps) != d->device)
        return tg_fail(TG_ERR_ARG, "tg_dist_broadcast_params: the store is on %s but the "
                       "job was set up for %s", tg_device_name(tg_params_device(ps)),
                       tg_device_name(d->device));
#ifdef TG_HAVE_MPI
    if (d->device == TG_DEVICE_CUDA && !d->nccl)
        return tg_fail(TG_ERR_UNSUPPORTED, "tg_dist_broadcast_params: CUDA parameters need "
                       "NCCL (build with CUDA and MPI)");
    tg_status st = bcast_floats(d, tg_params_data(ps), tg_params_flat_numel(ps));
    /* Buffers: a flat area too; its length is the end of its last view. */
    int64_t nbuf = 0;
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i);
        if (!t->requires_grad) {
            int64_t end = (t->data - tg_params_buffers(ps)) + t->numel;
            if (end > nbuf) nbuf = end;
        }
    }
    if (st == TG_OK && nbuf) st = bcast_floats(d, tg_params_buffers(ps), nbuf);
    if (st == TG_OK && d->device == TG_DEVICE_CUDA) st = tg_device_sync(d->device);
    return st;
#else
    return TG_OK;
#endif
}

tg_status tg_dist_attach(tg_dist *d, tg_ctx *ctx, tg_params *ps, tg_dist_opts opts) {
    if (!ctx || !ps)
        return tg_fail(TG_ERR_ARG, "tg_dist_attach: argument '%s' is NULL", !ctx ? "ctx" : "ps");
    if (!d) return TG_OK; /* a world of 1 */
    if (tg_ctx_device(ctx) != d->device || tg_params_device(ps) != d->device)
        return tg_fail(TG_ERR_ARG, "tg_dist_attach: the context and the store must be on %s, "
                       "the device the job was set up for", tg_device_name(d->device));
    if (opts.bucket_bytes < 4)
        return tg_fail(TG_ERR_ARG, "tg_dist_attach: bucket_bytes is %zu; it must be >= 4",
                       opts.bucket_bytes);
    if (d->world == 1) return TG_OK;
    /* A second attach starts over: refused while a step's buckets are on their way, and
     * for a store another tg_dist holds. */
    bool open = false;
    for (int b = 0; b < d->nbuckets; b++) open = open || d->buckets[b].started;
    void *holder = tg_params_watcher(ps);
    int count = tg_params_count(ps), nparams = 0;
    dist_bucket *buckets = calloc((size_t)(count ? count : 1), sizeof *buckets);
    /* Every rank goes on only if every rank can (what follows is collective). */
    int ok[3] = {buckets != NULL, !open, !holder || holder == d}, all_ok[3];
    memcpy(all_ok, ok, sizeof ok);
#ifdef TG_HAVE_MPI
    MPI_Allreduce(ok, all_ok, 3, MPI_INT, MPI_MIN, d->comm);
#endif
    const char *why = !all_ok[0] ? "out of memory" : !all_ok[1]
        ? "a step's gradients are still being reduced; call tg_dist_sync_grads first"
        : !all_ok[2] ? "the store is attached to another tg_dist (one per process)" : NULL;
    if (why) {
        free(buckets);
        return tg_fail(all_ok[0] ? TG_ERR_STATE : TG_ERR_NOMEM, "tg_dist_attach: %s (on this "
                       "rank or another); the earlier attachment stands", why);
    }
    detach(d); /* the old context stops calling d, the old store leaves the window */
    /* Buckets from the end of the store: parameter i's range is [offset_i, offset_{i+1})
     * (its view plus alignment padding, which stays zero). */
    int64_t flat = tg_params_flat_numel(ps);
    float *base = tg_params_grad(ps);
    int nb = 0;
    int64_t end = flat, limit = (int64_t)(opts.bucket_bytes / sizeof(float));
    for (int i = count - 1; i >= 0; i--) {
        tg_tensor *t = tg_params_at(ps, i);
        if (!t->requires_grad) continue;
        nparams++;
        int64_t begin = t->grad - base;
        if (end - begin >= limit || i == 0) {
            buckets[nb++] = (dist_bucket){.begin = begin, .end = end};
            end = begin;
        }
    }
    if (end > 0) { /* the first parameters, when the loop ended before a cut */
        if (nb) buckets[nb - 1].begin = 0;
        else buckets[nb++] = (dist_bucket){.begin = 0, .end = end};
    }
    free(d->buckets);
    d->buckets = buckets;
    d->nbuckets = nparams ? nb : 0;
    d->opts = opts;
    d->pending = TG_OK;
    d->conv_agreed = UINT64_MAX; /* the first sync agrees the new context's choices */
    d->stats.buckets = d->nbuckets;
#ifdef TG_HAVE_MPI
    tg_status st = shm_attach(d, ps);
    d->stats.shared_memory = d->shm != NULL;
    if (st != TG_OK) {
        d->nbuckets = d->stats.buckets = 0; /* left detached */
        return st;
    }
#endif
    /* A context attached to another tg_dist leaves it. */
    if (ctx->dist && ctx->dist != d) tg_dist_ctx_gone(ctx->dist, ctx);
    d->ctx = ctx;
    d->ps = ps;
    tg_params_watch(ps, store_gone, d);
    ctx->dist = d;
    ctx->sync_bn = opts.sync_batchnorm ? d : NULL;
    return TG_OK;
}

tg_status tg_dist_set_batch(tg_dist *d, int64_t local, int64_t global) {
    if (!d) return TG_OK;
    if (local < 0 || global <= 0 || local > global)
        return tg_fail(TG_ERR_ARG, "tg_dist_set_batch: local %lld of global %lld examples",
                       (long long)local, (long long)global);
    d->share = (double)local / (double)global;
    return TG_OK;
}

static bool dist_uses_shm(const tg_dist *d) {
#ifdef TG_HAVE_MPI
    return d->shm != NULL;
#else
    (void)d;
    return false;
#endif
}

/* Starts bucket b: scale by this rank's share, then a non-blocking sum over ranks. */
static tg_status bucket_start(tg_dist *d, dist_bucket *b) {
    b->started = true;
    float *p = tg_params_grad(d->ps) + b->begin;
    int64_t n = b->end - b->begin;
    d->stats.bytes += (double)n * sizeof(float);
#ifdef TG_HAVE_MPI
    if (d->shm) { /* the share weights the sum itself: no scaling pass */
        dist_shm_publish(d->shm, (int)(b - d->buckets), d->share);
        return TG_OK;
    }
#endif
#ifdef TG_HAVE_NCCL
    if (d->nccl) return tg_nccl_allreduce(d->nccl, p, n, (float)d->share);
#endif
#ifdef TG_HAVE_MPI
    if (d->device == TG_DEVICE_CUDA)
        return tg_fail(TG_ERR_UNSUPPORTED, "tg_dist: CUDA gradients need NCCL");
    if (n > INT_MAX)
        return tg_fail(TG_ERR_ARG, "tg_dist: a bucket of %lld floats exceeds MPI's int count; "
                       "use smaller bucket_bytes", (long long)n);
    float s = (float)d->share;
    if (s != 1.0f)
        for (int64_t i = 0; i < n; i++) p[i] *= s;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p, (int)n, MPI_FLOAT, MPI_SUM, d->comm, &b->req),
              "tg_dist: MPI_Iallreduce");
#else
    (void)p;
#endif
    return TG_OK;
}

/* Smallest record index touching each bucket, from the tape about to be replayed. */
static void plan_buckets(tg_dist *d) {
    float *base = tg_params_grad(d->ps);
    for (int b = 0; b < d->nbuckets; b++) {
        d->buckets[b].first_use = -1;
        d->buckets[b].started = false;
    }
    const tg_tape *tape = &d->ctx->tape;
    for (int r = tape->len - 1; r >= 0; r--) {
        const tg_record *rec = &tape->records[r];
        for (int i = 0; i < rec->ninputs; i++) {
            const tg_tensor *t = rec->inputs[i];
            if (!t || !t->is_param || !t->requires_grad || !t->grad) continue;
            int64_t off = t->grad - base;
            for (int b = 0; b < d->nbuckets; b++)
                if (off >= d->buckets[b].begin && off < d->buckets[b].end)
                    d->buckets[b].first_use = r; /* r decreases: ends as the minimum */
        }
    }
}

void tg_dist_backward_hook(tg_dist *d, int record) {
    if (!d || d->world == 1 || !d->nbuckets || d->pending || !d->ps || !d->ctx) return;
    double t0 = tg_now();
    if (record == TG_DIST_BACKWARD_BEGIN) {
        /* A second backward before tg_dist_sync_grads would add into buckets already on
         * their way (gradient accumulation is not supported across ranks): refused, and
         * this step's buckets are still finished at sync, so no rank is left waiting. */
        bool open = false;
        for (int b = 0; b < d->nbuckets; b++) open = open || d->buckets[b].started;
        if (open) {
            d->pending = tg_fail(TG_ERR_STATE, "tg_backward: a second backward pass before "
                                 "tg_dist_sync_grads; call tg_dist_sync_grads after every "
                                 "backward of a data-parallel step");
            d->stats.launch_seconds += tg_now() - t0;
            return;
        }
        plan_buckets(d);
    } else if (d->opts.overlap) {
        /* After record r has run, every bucket first used at r or later is final. Buckets
         * no op touched wait for the end (their gradients are zero but every rank sends
         * them, so all ranks make the same calls). */
        for (int b = 0; b < d->nbuckets && !d->pending; b++) {
            dist_bucket *bk = &d->buckets[b];
            if (!bk->started && bk->first_use >= 0 && bk->first_use >= record &&
                record != TG_DIST_BACKWARD_END) {
                d->pending = bucket_start(d, bk);
                d->stats.early_buckets++;
            }
        }
#ifdef TG_HAVE_MPI
        /* Reduce this rank's chunk of every bucket all ranks have finished, or let the
         * running all-reduces advance (Open MPI progresses them only inside calls). */
        if (d->shm) {
            dist_shm_progress(d->shm, d->bbegin, d->bend);
        } else if (!d->nccl) {
            for (int b = 0; b < d->nbuckets; b++) {
                int done;
                if (d->buckets[b].started && d->buckets[b].req != MPI_REQUEST_NULL)
                    MPI_Test(&d->buckets[b].req, &done, MPI_STATUS_IGNORE);
            }
        }
#endif
    }
#ifdef TG_HAVE_NCCL
    /* CUDA: the library stream waits, on the device, for the buckets started during the
     * walk, so nothing queued after backward (the optimizer, or the next step's zero_grad
     * when tg_dist_sync_grads is skipped) can touch a bucket under reduction. It costs
     * nothing: the comm stream runs its collectives in order, so the buckets
     * tg_dist_sync_grads starts could not begin earlier anyway. */
    if (d->nccl && record == TG_DIST_BACKWARD_END && !d->pending)
        d->pending = tg_nccl_wait(d->nccl);
#endif
    d->stats.launch_seconds += tg_now() - t0;
}

tg_status tg_dist_sync_grads(tg_dist *d) {
    if (!d || d->world == 1 || !d->nbuckets) return TG_OK;
    if (!d->ps)
        return tg_fail(TG_ERR_STATE, "tg_dist_sync_grads: no parameter store attached (call "
                       "tg_dist_attach first; a freed store detaches itself)");
    double t0 = tg_now();
    tg_status st = d->pending;
    bool comm_ok = true; /* false: a rank may be gone, no further collective */
    for (int b = 0; b < d->nbuckets; b++) {
        if (d->buckets[b].started || (st != TG_OK && !dist_uses_shm(d))) continue;
        tg_status sb = bucket_start(d, &d->buckets[b]);
        if (st == TG_OK) st = sb;
    }
#ifdef TG_HAVE_MPI
    if (d->shm) {
        /* Every bucket is published (bucket_start cannot fail here): finish the round
         * even after an earlier error, so the other ranks are not left waiting. */
        tg_status fin = dist_shm_finish(d->shm, d->bbegin, d->bend);
        comm_ok = fin == TG_OK;
        if (st == TG_OK) st = fin;
    } else if (!d->nccl) {
        for (int b = 0; b < d->nbuckets; b++) {
            if (!d->buckets[b].started) continue;
            int rc = MPI_Wait(&d->buckets[b].req, MPI_STATUS_IGNORE);
            comm_ok = comm_ok && rc == MPI_SUCCESS;
            if (rc != MPI_SUCCESS && st == TG_OK) st = mpi_fail(rc, "tg_dist: MPI_Wait");
        }
    }
    /* CPU: every rank holds the same TG_CONV_ALGO_AUTO choices from the next step on
     * (core/dist_conv.c; one small all-reduce per step, a gather when a table changed). */
    if (comm_ok && d->device == TG_DEVICE_CPU) {
        tg_status agree = dist_conv_agree(&d->comm, d->world, d->ctx, &d->conv_agreed);
        if (st == TG_OK) st = agree;
    }
#endif
#ifdef TG_HAVE_NCCL
    /* The optimizer's kernels, queued next on the library stream, wait for the reduced
     * gradients on the device: the host does not block here (wait_seconds is host time). */
    if (d->nccl) {
        tg_status w = tg_nccl_wait(d->nccl);
        if (st == TG_OK) st = w;
    }
#endif
    (void)comm_ok;
    for (int b = 0; b < d->nbuckets; b++) d->buckets[b].started = false;
    d->pending = TG_OK;
    d->stats.wait_seconds += tg_now() - t0;
    d->stats.steps++;
    return st ? tg_fail(st, "tg_dist_sync_grads: the gradient all-reduce failed") : TG_OK;
}

tg_dist_stats tg_dist_get_stats(const tg_dist *d) {
    return d ? d->stats : (tg_dist_stats){0};
}

void tg_dist_reset_stats(tg_dist *d) {
    if (d) d->stats = (tg_dist_stats){.buckets = d->nbuckets, .shared_memory = dist_uses_shm(d)};
}

void *tg_dist_nccl(const tg_dist *d) { return d ? d->nccl : NULL; }
