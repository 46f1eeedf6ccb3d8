/*
 * ops/broadcast.c — broadcast shapes, element-walk plans and the gradient reduction
 * (see broadcast.h for the rules and why the backward sums).
 *
 * Reduction kernel. With the output viewed as (k0, r0, k1, r1, k2) and the input as
 * (k0, k1, k2):
 *   dinp[k0, k1, k2] += scale * sum_{r0, r1} g[k0, r0, k1, r1, k2]
 * The innermost kept dim k2 is contiguous in both, so the sum runs over whole rows of
 * k2 (vectorised) into a block of accumulators; when k2 = 1 the innermost summed dim r1
 * is contiguous instead and is summed as one vector reduction. Work is split over the
 * kept elements; when they are few (a bias gradient, a scalar) the summed positions are
 * split into a fixed number of chunks instead (deterministic, see the header).
 */
#include "broadcast.h"

#include "../core/core.h"
#include "../cuda/tg_cuda.h"

#include <stdio.h>
#include <string.h>

#define REDUCE_BLOCK 256       /* k2 accumulators per task (1 KiB on the stack) */
#define REDUCE_CHUNKS 64       /* chunks of the summed positions when few are kept */
#define REDUCE_FEW_TASKS 16    /* below this many tasks, split the summed dims instead */
#define REDUCE_MAX_KEPT 4096   /* ... provided the kept elements are this few */
#define PARALLEL_MIN 65536     /* elements below which threads cost more than they save */
#define BCAST_GRAIN 32768      /* about this many elements per chunk of the parallel loops */

/* The shape padded with leading 1s to ndim dims. */
static void pad_dims(tg_shape s, int ndim, int64_t *dim) {
    for (int d = 0; d < ndim; d++) {
        int src = d - (ndim - s.ndim);
        dim[d] = src >= 0 ? s.dim[src] : 1;
    }
}

bool tg_broadcast_shape(const char *op, const char *name_a, tg_shape a, const char *name_b,
                        tg_shape b, tg_shape *out) {
    int ndim = a.ndim > b.ndim ? a.ndim : b.ndim;
    int64_t da[TG_MAX_DIMS] = {1, 1, 1, 1}, db[TG_MAX_DIMS] = {1, 1, 1, 1};
    pad_dims(a, ndim, da);
    pad_dims(b, ndim, db);
    tg_shape r = {.ndim = ndim};
    for (int d = 0; d < ndim; d++) {
        if (da[d] != db[d] && da[d] != 1 && db[d] != 1) {
            char sa[80], sb[80];
            tg_fail(TG_ERR_SHAPE,
                    "%s: cannot broadcast '%s' %s with '%s' %s: dim %d is %lld in '%s' and "
                    "%lld in '%s' (aligned from the last dim, each pair must be equal or one "
                    "of them 1; hint: tg_reshape the smaller argument to put a size-1 dim "
                    "where it should repeat)",
                    op, name_a, tg_shape_str(a, sa, sizeof sa), name_b,
                    tg_shape_str(b, sb, sizeof sb), d - ndim, (long long)da[d], name_a,
                    (long long)db[d], name_b);
            return false;
        }
        r.dim[d] = da[d] == 1 ? db[d] : da[d];
    }
    *out = r;
    return true;
}

tg_bcast tg_bcast_plan(tg_shape out, tg_shape a, tg_shape b) {
    int64_t da[TG_MAX_DIMS] = {1, 1, 1, 1}, db[TG_MAX_DIMS] = {1, 1, 1, 1};
    pad_dims(a, out.ndim, da);
    pad_dims(b, out.ndim, db);
    /* Merge: a dim joins the previous one when both inputs read it the same way. */
    tg_bcast p = {0};
    int64_t ea[TG_MAX_DIMS], eb[TG_MAX_DIMS]; /* merged extents of a and b (1: broadcast) */
    int prev_a = -1, prev_b = -1;
    for (int d = 0; d < out.ndim; d++) {
        if (out.dim[d] == 1) continue;
        int ra = da[d] != 1, rb = db[d] != 1;
        if (p.ndim > 0 && ra == prev_a && rb == prev_b) {
            p.dim[p.ndim - 1] *= out.dim[d];
        } else {
            p.dim[p.ndim++] = out.dim[d];
        }
        prev_a = ra;
        prev_b = rb;
        ea[p.ndim - 1] = ra ? p.dim[p.ndim - 1] : 1;
        eb[p.ndim - 1] = rb ? p.dim[p.ndim - 1] : 1;
    }
    int64_t sa = 1, sb = 1;
    for (int d = p.ndim - 1; d >= 0; d--) {
        p.stride_a[d] = ea[d] == 1 ? 0 : sa;
        p.stride_b[d] = eb[d] == 1 ? 0 : sb;
        sa *= ea[d];
        sb *= eb[d];
    }
    return p;
}

int64_t tg_bcast_numel(const tg_bcast *p) {
    int64_t n = 1;
    for (int d = 0; d < p->ndim; d++) n *= p->dim[d];
    return n;
}

tg_bcast_reduce tg_bcast_reduce_plan(tg_shape out, tg_shape in) {
    int64_t din[TG_MAX_DIMS] = {1, 1, 1, 1};
    pad_dims(in, out.ndim, din);
    /* Alternating groups of kept (input has the dim) and summed (broadcast) dims. */
    int64_t size[TG_MAX_DIMS];
    int kept[TG_MAX_DIMS], ngroups = 0;
    for (int d = 0; d < out.ndim; d++) {
        if (out.dim[d] == 1) continue;
        int k = din[d] != 1;
        if (ngroups > 0 && kept[ngroups - 1] == k) {
            size[ngroups - 1] *= out.dim[d];
        } else {
            size[ngroups] = out.dim[d];
            kept[ngroups++] = k;
        }
    }
    /* Fill the slots (k0, r0, k1, r1, k2) from the right: the last group lands on k2 if
     * kept, r1 if summed; at most 4 alternating groups always fit. */
    int64_t slot[5] = {1, 1, 1, 1, 1};
    int s = ngroups > 0 && !kept[ngroups - 1] ? 3 : 4;
    for (int g = ngroups - 1; g >= 0; g--) slot[s--] = size[g];
    return (tg_bcast_reduce){slot[0], slot[1], slot[2], slot[3], slot[4]};
}

/* How many chunks the summed positions are split into (1: split the kept ones). */
static int64_t reduce_chunks(const tg_bcast_reduce *p) {
    int64_t kept = p->k0 * p->k1 * p->k2, summed = p->r0 * p->r1;
    int64_t tasks = p->k0 * p->k1 * ((p->k2 + REDUCE_BLOCK - 1) / REDUCE_BLOCK);
    if (summed == 1 || kept > REDUCE_MAX_KEPT || tasks >= REDUCE_FEW_TASKS ||
        kept * summed < PARALLEL_MIN)
        return 1;
    int64_t split = p->r1 > p->r0 ? p->r1 : p->r0;
    return split < REDUCE_CHUNKS ? split : REDUCE_CHUNKS;
}

int64_t broadcast_reduce_scratch_floats(const tg_bcast_reduce *p) {
    int64_t c = reduce_chunks(p);
    return c > 1 ? c * p->k0 * p->k1 * p->k2 : 0;
}

/* acc[0 .. nk2) = sum over r0 in [r0lo, r0hi), r1 in [r1lo, r1hi) of
 * g[k0, r0, k1, r1, k2lo .. k2lo + nk2). */
static void reduce_range(float *acc, const float *g, const tg_bcast_reduce *p, int64_t k0,
                         int64_t k1, int64_t k2lo, int64_t nk2, int64_t r0lo, int64_t r0hi,
                         int64_t r1lo, int64_t r1hi) {
    for (int64_t j = 0; j < nk2; j++) acc[j] = 0.0f;
    for (int64_t r0 = r0lo; r0 < r0hi; r0++) {
        const float *base = g + ((k0 * p->r0 + r0) * p->k1 + k1) * p->r1 * p->k2 + k2lo;
        if (p->k2 == 1) { /* r1 is the contiguous dim */
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t r1 = r1lo; r1 < r1hi; r1++) s += base[r1];
            acc[0] += s;
            continue;
        }
        for (int64_t r1 = r1lo; r1 < r1hi; r1++) {
            const float *row = base + r1 * p->k2;
#pragma omp simd
            for (int64_t j = 0; j < nk2; j++) acc[j] += row[j];
        }
    }
}

/* The three loops below run on tg_parallel_items (core/pool.c). Each item (an element of
 * the axpy, a block of kept elements, a chunk of the summed dim with its own scratch row)
 * is computed the same whoever runs it, and the chunks are added in order afterwards:
 * the bits do not depend on the thread count. */
typedef struct br_job {
    float *dinp, *scratch;
    const float *g;
    const tg_bcast_reduce *p;
    float scale;
    int64_t nblk, tasks, chunks, kept, extent;
    bool split_r1;
} br_job;

static void axpy_range(void *arg, int64_t i0, int64_t i1) {
    const br_job *j = arg;
    float *dinp = j->dinp, scale = j->scale;
    const float *g = j->g;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) dinp[i] += scale * g[i];
}

/* Tasks t0 .. t1-1: a block of up to REDUCE_BLOCK kept elements each, summed whole. */
static void block_range(void *arg, int64_t t0, int64_t t1) {
    const br_job *j = arg;
    const tg_bcast_reduce *p = j->p;
    for (int64_t t = t0; t < t1; t++) {
        float acc[REDUCE_BLOCK];
        int64_t k01 = t / j->nblk, k2lo = (t % j->nblk) * REDUCE_BLOCK;
        int64_t k0 = k01 / p->k1, k1 = k01 % p->k1;
        int64_t nk2 = p->k2 - k2lo < REDUCE_BLOCK ? p->k2 - k2lo : REDUCE_BLOCK;
        reduce_range(acc, j->g, p, k0, k1, k2lo, nk2, 0, p->r0, 0, p->r1);
        float *dst = j->dinp + k01 * p->k2 + k2lo;
        for (int64_t q = 0; q < nk2; q++) dst[q] += j->scale * acc[q];
    }
}

/* Chunks c0 .. c1-1 of the larger summed dim, every kept element, into scratch[c]. */
static void chunk_range(void *arg, int64_t c0, int64_t c1) {
    const br_job *j = arg;
    const tg_bcast_reduce *p = j->p;
    for (int64_t c = c0; c < c1; c++) {
        int64_t lo = j->extent * c / j->chunks, hi = j->extent * (c + 1) / j->chunks;
        for (int64_t t = 0; t < j->tasks; t++) {
            int64_t k01 = t / j->nblk, k2lo = (t % j->nblk) * REDUCE_BLOCK;
            int64_t nk2 = p->k2 - k2lo < REDUCE_BLOCK ? p->k2 - k2lo : REDUCE_BLOCK;
            float *acc = j->scratch + c * j->kept + k01 * p->k2 + k2lo;
            if (j->split_r1)
                reduce_range(acc, j->g, p, k01 / p->k1, k01 % p->k1, k2lo, nk2, 0, p->r0, lo, hi);
            else
                reduce_range(acc, j->g, p, k01 / p->k1, k01 % p->k1, k2lo, nk2, lo, hi, 0, p->r1);
        }
    }
}

void broadcast_reduce_cpu(float *dinp, const float *g, float scale, const tg_bcast_reduce *p,
                          float *scratch) {
    int64_t kept = p->k0 * p->k1 * p->k2;
    br_job j = {.dinp = dinp, .scratch = scratch, .g = g, .p = p, .scale = scale,
                .kept = kept};
    if (p->r0 == 1 && p->r1 == 1) { /* nothing broadcast: an axpy */
        tg_parallel_items(kept, 1, PARALLEL_MIN, BCAST_GRAIN, axpy_range, &j);
        return;
    }
    j.nblk = (p->k2 + REDUCE_BLOCK - 1) / REDUCE_BLOCK;
    j.tasks = p->k0 * p->k1 * j.nblk;
    j.chunks = reduce_chunks(p);
    const double summed = (double)p->r0 * (double)p->r1;
    if (j.chunks == 1) {
        tg_parallel_items(j.tasks, summed * (double)kept / (double)j.tasks, PARALLEL_MIN,
                          BCAST_GRAIN, block_range, &j);
        return;
    }
    /* Few kept elements: chunk c sums its slice of the larger summed dim for all of
     * them into scratch[c][kept]; the chunks are then added in order. */
    j.split_r1 = p->r1 >= p->r0;
    j.extent = j.split_r1 ? p->r1 : p->r0;
    tg_parallel_items(j.chunks, summed * (double)kept / (double)j.chunks, 0, 1, chunk_range,
                      &j);
    for (int64_t i = 0; i < kept; i++) {
        float s = 0.0f;
        for (int64_t c = 0; c < j.chunks; c++) s += scratch[c * kept + i];
        dinp[i] += scale * s;
    }
}

tg_status tg_grad_reduce_to(tg_ctx *ctx, float *dinp, tg_shape in, const float *g,
                            tg_shape out, float scale) {
    tg_bcast_reduce p = tg_bcast_reduce_plan(out, in);
#ifdef TG_HAVE_CUDA
    if (tg_ctx_device(ctx) == TG_DEVICE_CUDA) return broadcast_reduce_cuda(dinp, g, scale, &p);
#endif
    int64_t n = broadcast_reduce_scratch_floats(&p);
    float *scratch = n ? tg_ctx_scratch(ctx, (size_t)n * sizeof(float)) : NULL;
    if (n && !scratch) return tg_error();
    broadcast_reduce_cpu(dinp, g, scale, &p, scratch);
    return TG_OK;
}
