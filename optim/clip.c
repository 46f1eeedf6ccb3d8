/*
 * optim/clip.c — clip gradients by their global L2 norm (torch.nn.utils.clip_grad_norm_).
 *
 *   norm = sqrt(sum over every trainable gradient element g of g^2)
 *   c    = max_norm / (norm + 1e-6)
 *   when c < 1: g <- c g for every element
 * so the whole gradient vector keeps its direction and its length becomes (just under)
 * max_norm; PyTorch adds the 1e-6 and compares c < 1, and so do we. The store keeps all
 * gradients in one flat buffer (padding between parameters is kept zero), so this is one
 * reduction and one scaling loop, on the CPU or with two kernels on CUDA.
 *
 * The sum of squares runs in double over fixed chunks added in a fixed order: the norm
 * does not depend on the thread count. A non-finite norm (an inf or NaN gradient) is
 * returned as it is and the gradients are left untouched: scaling by c = 0 or NaN would
 * destroy them, and the caller should skip the step (PyTorch would multiply by NaN).
 */
#include "../core/core.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdlib.h>

#define CLIP_CHUNK 8192       /* elements per partial sum: the order of the additions */
#define CLIP_SERIAL (1 << 16) /* elements at or below which one thread does it all */

typedef struct sumsq_args {
    const float *g;
    int64_t n;
    double *part; /* part[k]: the sum of squares of chunk k (written) */
} sumsq_args;

/* The sum of squares of chunk k: g[k CLIP_CHUNK .. min((k+1) CLIP_CHUNK, n)) */
static double chunk_sumsq(const float *g, int64_t n, int64_t k) {
    int64_t end = (k + 1) * CLIP_CHUNK < n ? (k + 1) * CLIP_CHUNK : n;
    double s = 0;
    for (int64_t i = k * CLIP_CHUNK; i < end; i++) s += (double)g[i] * (double)g[i];
    return s;
}

static void sumsq_chunks(void *arg, int64_t k0, int64_t k1) {
    const sumsq_args *a = arg;
    for (int64_t k = k0; k < k1; k++) a->part[k] = chunk_sumsq(a->g, a->n, k);
}

/* The chunks' sums on tg_parallel_range (a reduction region would wait at its barrier for
 * every thread: 1.3 ms a call instead of 0.16 with one busy loop per core, 11% of the
 * tiny GPT's loaded step), then added in chunk order, so the norm is the same bits at
 * every thread count. Small stores, or no memory for the partial sums: the same additions
 * on this thread. */
static double sumsq_cpu(const float *g, int64_t n) {
    int64_t chunks = (n + CLIP_CHUNK - 1) / CLIP_CHUNK;
    double *part = n > CLIP_SERIAL ? malloc((size_t)chunks * sizeof *part) : NULL;
    if (part) {
        sumsq_args a = {.g = g, .n = n, .part = part};
        tg_parallel_items(chunks, CLIP_CHUNK, CLIP_SERIAL, 4 * CLIP_CHUNK, sumsq_chunks, &a);
    }
    double total = 0;
    for (int64_t k = 0; k < chunks; k++) total += part ? part[k] : chunk_sumsq(g, n, k);
    free(part);
    return total;
}

typedef struct scale_args {
    float *g;
    float c;
} scale_args;

static void scale_range(void *arg, int64_t i0, int64_t i1) {
    const scale_args *a = arg;
    float *g = a->g, c = a->c;
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) g[i] *= c;
}

static void scale_cpu(float *g, int64_t n, float c) {
    scale_args a = {.g = g, .c = c};
    tg_parallel_items(n, 1, CLIP_SERIAL, CLIP_CHUNK * 4, scale_range, &a);
}

tg_status tg_clip_grad_norm(tg_params *ps, float max_norm, float *total_norm) {
    if (tg_check_not_null("tg_clip_grad_norm", "ps", ps)) return tg_error();
    if (!(max_norm > 0.0f) || isinf(max_norm))
        return tg_fail(TG_ERR_ARG, "tg_clip_grad_norm: argument 'max_norm' = %g must be finite "
                       "and > 0; hint: 1.0 is usual for transformers", (double)max_norm);
    if (tg_error() != TG_OK) return tg_error(); /* gradients an error may have touched */
    float *g = tg_params_grad(ps);
    int64_t n = tg_params_flat_numel(ps);
    double sumsq = 0;
    if (n > 0 && g) {
        if (tg_params_device(ps) == TG_DEVICE_CPU) {
            sumsq = sumsq_cpu(g, n);
        } else {
#ifdef TG_HAVE_CUDA
            tg_status st = clip_sumsq_cuda(g, n, &sumsq);
            if (st) return st;
#else
            return tg_fail(TG_ERR_DEVICE, "tg_clip_grad_norm: the store is on %s but this "
                           "build has no CUDA backend", tg_device_name(tg_params_device(ps)));
#endif
        }
    }
    float norm = (float)sqrt(sumsq);
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm)) return TG_OK;
    float c = (float)((double)max_norm / ((double)norm + 1e-6));
    if (c >= 1.0f || n == 0 || !g) return TG_OK;
    if (tg_params_device(ps) == TG_DEVICE_CPU) {
        scale_cpu(g, n, c);
        return TG_OK;
    }
#ifdef TG_HAVE_CUDA
    return clip_scale_cuda(g, n, c);
#else
    return TG_OK;
#endif
}
