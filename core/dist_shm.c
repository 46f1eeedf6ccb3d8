/*
 * core/dist_shm.c — the gradient all-reduce of ranks that share one host's memory
 * (core/dist.c uses it when every rank of the job is on this host; otherwise MPI).
 *
 * WHY NOT MPI_Allreduce. Open MPI's shared-memory all-reduce copies every buffer into
 * its own segments and back (a ring or recursive doubling over point-to-point messages):
 * for 2 ranks on this project's VM it reached a quarter of memcpy's bandwidth. The data
 * never has to move that much: when the gradient stores themselves live in one shared
 * mapping, every rank can read every other rank's gradients where they are.
 *
 * THE SCHEME. Each rank's gradient store is its segment of an MPI-3 shared window
 * (MPI_Win_allocate_shared; tg_params_place_grads moves the store there). A bucket
 * [begin, end) of the store is cut into P chunks (64-byte aligned), chunk c owned by rank
 * c. When rank q's backward pass has finished bucket b it publishes ready_q[b] = round
 * (release store; round counts tg_dist_sync_grads calls). Rank c, once every ready_q[b]
 * shows the round (acquire loads), computes for its chunk
 *     s[i] = sum_q share_q g_q[i]            (q in rank order: the same bits everywhere)
 * and writes s into every rank's store, then publishes done_c[b] = round. A rank's
 * tg_dist_sync_grads returns when done_c[b] shows the round for every c and b: its store
 * then holds the weighted sum of all ranks' gradients, bit-identical to every other
 * rank's. Each rank moves its chunk once in and out per rank: for 2 ranks, reading
 * n floats and writing n, the traffic of one memcpy of the bucket, split over both cores.
 *
 * WHY IT IS SAFE. A rank writes its bucket b only in backward, before publishing it, and
 * zeroes its store only after its tg_dist_sync_grads returned, i.e. after every reducer
 * finished the round; a reducer touches bucket b of round k only after every rank
 * published it for round k. So no two writers ever overlap and no reader sees a half
 * written gradient. Flags are C11 atomics in the shared mapping (lock-free 64-bit
 * integers work across processes).
 *
 * OVERLAP. Ready buckets are reduced from the backward hook between ops (dist_shm_progress),
 * so the reduction of the last layers' gradients runs while the other rank may still be
 * in its backward pass; what is left waits in tg_dist_sync_grads.
 */
#include "core.h"
#include "dist.h"

#ifdef TG_HAVE_MPI
#include <mpi.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SHM_ALIGN 16 /* floats: chunk boundaries on 64-byte lines (no false sharing) */
#define SHM_TIMEOUT_DEFAULT 600.0 /* seconds a rank waits for another before failing */

typedef struct shm_ctrl {
    _Atomic uint64_t *ready; /* [nbuckets] round in which this rank's bucket is final */
    _Atomic uint64_t *done;  /* [nbuckets] round in which this rank reduced its chunk */
    _Atomic double *share;   /* this round's weight of this rank's gradients */
    float *grads;            /* the rank's gradient store */
} shm_ctrl;

struct dist_shm {
    MPI_Win win;
    int rank, world, nbuckets;
    int64_t nfloats;
    shm_ctrl *ranks; /* [world] views of every rank's segment */
    uint64_t round;  /* the round in progress (1 after attach) */
    bool *published, *reduced; /* [nbuckets] this rank, this round */
    bool share_set;  /* this round's share written */
    bool broken;     /* a wait timed out: the ranks are out of step for good */
    double timeout;
};

static size_t ctrl_bytes(int nbuckets) {
    /* ready, done (one cache line apart), share, then the gradients on a page. */
    size_t flags = (size_t)nbuckets * sizeof(uint64_t);
    size_t b = 2 * ((flags + 63) / 64 * 64) + 64;
    return (b + 4095) / 4096 * 4096;
}

static void view(shm_ctrl *c, char *base, int nbuckets) {
    size_t flags = ((size_t)nbuckets * sizeof(uint64_t) + 63) / 64 * 64;
    c->ready = (_Atomic uint64_t *)base;
    c->done = (_Atomic uint64_t *)(base + flags);
    c->share = (_Atomic double *)(base + 2 * flags);
    c->grads = (float *)(base + ctrl_bytes(nbuckets));
}

tg_status dist_shm_new(void *comm_p, int rank, int world, int64_t nfloats, int nbuckets,
                       dist_shm **out) {
    MPI_Comm comm = *(MPI_Comm *)comm_p;
    *out = NULL;
    /* Every rank must see every other's memory: the shared-memory communicator has to be
     * the whole job. Every step below is agreed on by all ranks (a collective that one
     * rank skips would hang the others), and the ranks must hold the same store. */
    MPI_Comm local;
    int local_size = -1;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local) ==
        MPI_SUCCESS) {
        MPI_Comm_size(local, &local_size);
        MPI_Comm_free(&local);
    }
    dist_shm *s = calloc(1, sizeof *s);
    shm_ctrl *ranks = calloc((size_t)world, sizeof *ranks);
    bool *flags = calloc((size_t)(2 * (nbuckets ? nbuckets : 1)), sizeof *flags);
    /* min and max (as min of the negation) of: usable here, store length, bucket count */
    int64_t v[5] = {s && ranks && flags && local_size == world, nfloats, -nfloats, nbuckets,
                    -(int64_t)nbuckets}, r[5];
    if (MPI_Allreduce(v, r, 5, MPI_INT64_T, MPI_MIN, comm) != MPI_SUCCESS) r[0] = 0;
    tg_status st = TG_OK;
    if (r[1] != -r[2] || r[3] != -r[4]) {
        st = tg_fail(TG_ERR_ARG, "tg_dist_attach: the ranks hold different parameter stores "
                     "(%lld to %lld floats, %lld to %lld buckets); build the same model with "
                     "the same options on every rank", (long long)r[1], (long long)-r[2],
                     (long long)r[3], (long long)-r[4]);
        goto fail;
    }
    if (!r[0]) goto fail; /* some rank elsewhere, or out of memory: MPI carries the buckets */
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true"); /* each segment on its own pages */
    size_t bytes = ctrl_bytes(nbuckets) + (size_t)nfloats * sizeof(float);
    char *base = NULL;
    int rc = MPI_Win_allocate_shared((MPI_Aint)bytes, 1, info, comm, &base, &s->win);
    MPI_Info_free(&info);
    int ok = rc == MPI_SUCCESS, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok) goto fail; /* a window made on some ranks only is left, not freed:
                             * MPI_Win_free is collective and would hang */
    memset(base, 0, bytes); /* first touch by the owner: its pages on its node */
    for (int q = 0; q < world; q++) {
        MPI_Aint size;
        int disp;
        char *p = NULL;
        MPI_Win_shared_query(s->win, q, &size, &disp, &p);
        view(&ranks[q], p, nbuckets);
    }
    MPI_Barrier(comm); /* every segment zeroed before anyone reads a flag */
    s->rank = rank;
    s->world = world;
    s->nbuckets = nbuckets;
    s->nfloats = nfloats;
    s->ranks = ranks;
    s->round = 1;
    s->published = flags;
    s->reduced = flags + (nbuckets ? nbuckets : 1);
    const char *t = getenv("TG_DIST_TIMEOUT");
    s->timeout = t && atof(t) > 0 ? atof(t) : SHM_TIMEOUT_DEFAULT;
    *out = s;
    return TG_OK;
fail:
    free(flags);
    free(ranks);
    free(s);
    return st;
}

void dist_shm_free(dist_shm *s) {
    if (!s) return;
    MPI_Win_free(&s->win); /* collective */
    free(s->published);
    free(s->ranks);
    free(s);
}

float *dist_shm_grads(dist_shm *s) { return s->ranks[s->rank].grads; }

/* Chunk c of [begin, end): equal shares on SHM_ALIGN boundaries. */
static void chunk(const dist_shm *s, int64_t begin, int64_t end, int c, int64_t *lo,
                  int64_t *hi) {
    int64_t n = end - begin, per = (n + s->world - 1) / s->world;
    per = (per + SHM_ALIGN - 1) / SHM_ALIGN * SHM_ALIGN;
    *lo = begin + per * c < end ? begin + per * c : end;
    *hi = *lo + per < end ? *lo + per : end;
}

void dist_shm_publish(dist_shm *s, int b, double share) {
    shm_ctrl *me = &s->ranks[s->rank];
    if (!s->share_set) { /* once per round, before the first release below */
        atomic_store_explicit(me->share, share, memory_order_relaxed);
        s->share_set = true;
    }
    s->published[b] = true;
    atomic_store_explicit(&me->ready[b], s->round, memory_order_release);
}

/* The ranks' weighted sum of blocks [b0, b1) of 4096 gradients of a chunk, written into
 * every rank's store; a block is the same work whoever runs it (tg_parallel_items). */
typedef struct shm_job {
    float *g[DIST_SHM_MAX_WORLD];
    float w[DIST_SHM_MAX_WORLD];
    int P;
    int64_t lo, n;
} shm_job;

static void reduce_blocks(void *arg, int64_t b0, int64_t b1) {
    const shm_job *j = arg;
    const int P = j->P;
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t i0 = blk * 4096, i1 = i0 + 4096 < j->n ? i0 + 4096 : j->n;
        if (P == 2) { /* the common case, one pass */
            float *a = j->g[0] + j->lo, *bq = j->g[1] + j->lo, wa = j->w[0], wb = j->w[1];
#pragma omp simd
            for (int64_t i = i0; i < i1; i++) {
                float v = wa * a[i] + wb * bq[i];
                a[i] = v;
                bq[i] = v;
            }
            continue;
        }
        float acc[4096];
        const float *g0 = j->g[0] + j->lo;
        const float w0 = j->w[0];
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) acc[i - i0] = w0 * g0[i];
        for (int q = 1; q < P; q++) {
            const float *gq = j->g[q] + j->lo;
            float wq = j->w[q];
#pragma omp simd
            for (int64_t i = i0; i < i1; i++) acc[i - i0] += wq * gq[i];
        }
        for (int q = 0; q < P; q++)
            memcpy(j->g[q] + j->lo + i0, acc, (size_t)(i1 - i0) * sizeof(float));
    }
}

/* Sums chunk [lo, hi) over the ranks, weighted, into every rank's store. */
static void reduce_chunk(dist_shm *s, int64_t lo, int64_t hi) {
    shm_job j = {.P = s->world, .lo = lo, .n = hi - lo};
    for (int q = 0; q < j.P; q++) {
        j.w[q] = (float)atomic_load_explicit(s->ranks[q].share, memory_order_relaxed);
        j.g[q] = s->ranks[q].grads;
    }
    tg_parallel_items((j.n + 4095) / 4096, 4096, 262144, 32768, reduce_blocks, &j);
}

bool dist_shm_round_open(const dist_shm *s) {
    for (int b = 0; b < s->nbuckets; b++)
        if (s->published[b]) return true;
    return false;
}

int dist_shm_progress(dist_shm *s, const int64_t *begin, const int64_t *end) {
    int left = 0;
    if (s->broken) return s->nbuckets;
    for (int b = 0; b < s->nbuckets; b++) {
        if (!s->published[b] || s->reduced[b]) {
            left += !s->reduced[b];
            continue;
        }
        bool all = true;
        for (int q = 0; q < s->world && all; q++)
            all = atomic_load_explicit(&s->ranks[q].ready[b], memory_order_acquire) >= s->round;
        if (!all) {
            left++;
            continue;
        }
        int64_t lo, hi;
        chunk(s, begin[b], end[b], s->rank, &lo, &hi);
        if (hi > lo) reduce_chunk(s, lo, hi);
        s->reduced[b] = true;
        atomic_store_explicit(&s->ranks[s->rank].done[b], s->round, memory_order_release);
    }
    return left;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Spins briefly, then yields the core: on a busy machine the rank we wait for may need
 * this core to make progress. */
static void pause_a_little(long spins) {
    if (spins < 2000) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else if (spins < 20000) {
        sched_yield();
    } else {
        struct timespec ts = {0, 20000}; /* 20 us */
        nanosleep(&ts, NULL);
    }
}

tg_status dist_shm_finish(dist_shm *s, const int64_t *begin, const int64_t *end) {
    if (s->broken)
        return tg_fail(TG_ERR_STATE, "tg_dist_sync_grads: an earlier wait for another rank "
                       "timed out; the ranks are out of step (restart the job from its last "
                       "checkpoint)");
    double t0 = 0;
    long spins = 0;
    for (;;) {
        int left = dist_shm_progress(s, begin, end);
        int missing = -1, bucket = -1;
        if (!left) {
            for (int q = 0; q < s->world && missing < 0; q++)
                for (int b = 0; b < s->nbuckets; b++)
                    if (atomic_load_explicit(&s->ranks[q].done[b], memory_order_acquire) <
                        s->round) {
                        missing = q;
                        bucket = b;
                        break;
                    }
            if (missing < 0) break;
        }
        if (spins == 0) t0 = now();
        if (++spins % 4096 == 0 && now() - t0 > s->timeout) {
            /* Name one rank that has not got there (a flag it has not raised). */
            for (int b = 0; b < s->nbuckets && missing < 0; b++)
                for (int q = 0; q < s->world; q++)
                    if (atomic_load_explicit(&s->ranks[q].ready[b], memory_order_acquire) <
                        s->round) {
                        missing = q;
                        bucket = b;
                        break;
                    }
            s->broken = true; /* for good: the other rank may still write this round */
            return tg_fail(TG_ERR_DEVICE, "tg_dist_sync_grads: rank %d has not finished "
                           "bucket %d of round %llu after %.0f s (TG_DIST_TIMEOUT); did it "
                           "stop or skip tg_dist_sync_grads?", missing, bucket,
                           (unsigned long long)s->round, s->timeout);
        }
        pause_a_little(spins);
    }
    for (int b = 0; b < s->nbuckets; b++) s->published[b] = s->reduced[b] = false;
    s->share_set = false;
    s->round++;
    return TG_OK;
}
#endif /* TG_HAVE_MPI */
