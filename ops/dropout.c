/*
 * ops/dropout.c — inverted dropout drawn from the context's seeded generator.
 *
 * FORWARD (training, 0 < p <= 1). Each element is dropped with probability p:
 *   y_i = x_i m_i / (1 - p),   m_i in {0, 1},  P(m_i = 0) = p
 * so E[y_i] = x_i: evaluation needs no rescaling and is the identity (we return x itself).
 * p = 1 drops everything (y = 0, and the scale is taken as 0, not 1/0).
 *
 * BACKWARD. y is linear in x with a fixed mask: dy_i/dx_i = m_i / (1 - p), so
 *   dx_i += dy_i m_i / (1 - p)
 * The backward must use the SAME mask as the forward.
 *
 * Where the mask comes from. One 64-bit key is drawn from the context's generator
 * (tg_ctx_rng) per call; m_i is a hash of (key, i) (dropout_keep in dropout.h,
 * splitmix64's mixer). So:
 *   - nothing is stored: the backward recomputes m from the key kept in the record (8
 *     bytes instead of a mask of n bytes), bit for bit the same mask;
 *   - the mask does not depend on the thread count, and CUDA computes the same mask from
 *     the same key (the parity test compares them exactly);
 *   - the generator advances by one draw per dropout call, so restoring a saved generator
 *     (tg_train_state.rng on resume) replays exactly the same masks.
 */
#include "dropout.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdio.h>

/* Element i's mask depends on (key, i) alone, so chunks on tg_parallel_range (core/pool.c)
 * give the same bits whoever runs them. */
#define DROPOUT_SERIAL 65536
#define DROPOUT_GRAIN 16384

typedef struct dropout_job {
    float *dst;
    const float *src;
    uint64_t key, threshold;
    float scale;
} dropout_job;

static void dropout_forward_range(void *arg, int64_t begin, int64_t end) {
    const dropout_job *j = arg;
    float *restrict y = j->dst;
    const float *restrict x = j->src;
    const uint64_t key = j->key, threshold = j->threshold;
    const float scale = j->scale;
#pragma omp simd
    for (int64_t i = begin; i < end; i++)
        y[i] = dropout_keep(key, i, threshold) ? x[i] * scale : 0.0f;
}

static void dropout_backward_range(void *arg, int64_t begin, int64_t end) {
    const dropout_job *j = arg;
    float *restrict dx = j->dst;
    const float *restrict dy = j->src;
    const uint64_t key = j->key, threshold = j->threshold;
    const float scale = j->scale;
#pragma omp simd
    for (int64_t i = begin; i < end; i++)
        dx[i] += dropout_keep(key, i, threshold) ? dy[i] * scale : 0.0f;
}

void dropout_forward_cpu(float *y, const float *x, int64_t n, uint64_t key, uint64_t threshold,
                         float scale) {
    dropout_job j = {.dst = y, .src = x, .key = key, .threshold = threshold, .scale = scale};
    tg_parallel_items(n, 1, DROPOUT_SERIAL, DROPOUT_GRAIN, dropout_forward_range, &j);
}

void dropout_backward_cpu(float *dx, const float *dy, int64_t n, uint64_t key,
                          uint64_t threshold, float scale) {
    dropout_job j = {.dst = dx, .src = dy, .key = key, .threshold = threshold, .scale = scale};
    tg_parallel_items(n, 1, DROPOUT_SERIAL, DROPOUT_GRAIN, dropout_backward_range, &j);
}

typedef struct dropout_params {
    uint64_t key, threshold;
    float scale, p;
} dropout_params;

static tg_status dropout_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const dropout_params *p = TG_PARAMS(rec, dropout_params);
    dropout_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->out->numel, p->key,
                        p->threshold, p->scale);
    return TG_OK;
}

static tg_status dropout_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                  const float *dout) {
    (void)ctx;
    const dropout_params *p = TG_PARAMS(rec, dropout_params);
    dropout_backward_cpu(dinputs[0], dout, rec->out->numel, p->key, p->threshold, p->scale);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_dropout_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const dropout_params *p = TG_PARAMS(rec, dropout_params);
    return dropout_forward_cuda(rec->out->data, rec->inputs[0]->data, rec->out->numel, p->key,
                                p->threshold, p->scale);
}

static tg_status cuda_dropout_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                       const float *dout) {
    (void)ctx;
    const dropout_params *p = TG_PARAMS(rec, dropout_params);
    return dropout_backward_cuda(dinputs[0], dout, rec->out->numel, p->key, p->threshold,
                                 p->scale);
}
#endif

static void dropout_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                         double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel;
    *fwd_flops = 10 * n; /* the hash (about 9 integer ops) and the scale */
    *fwd_bytes = 8 * n;  /* read x, write y */
    *bwd_flops = 11 * n;
    *bwd_bytes = 12 * n; /* read dy, dx; write dx */
}

static void dropout_explain(const tg_record *rec, char *buf, size_t size) {
    const dropout_params *p = TG_PARAMS(rec, dropout_params);
    snprintf(buf, size, "dropout p = %g: dx += dy * mask / (1 - p), the forward's mask "
             "recomputed from its key %016llx", (double)p->p, (unsigned long long)p->key);
}

static const tg_op dropout_op = {
    .name = "dropout",
    .forward = {[TG_DEVICE_CPU] = dropout_forward, TG_CUDA_ENTRY(cuda_dropout_forward)},
    .backward = {[TG_DEVICE_CPU] = dropout_backward, TG_CUDA_ENTRY(cuda_dropout_backward)},
    .cost = dropout_cost,
    .explain = dropout_explain,
};

tg_tensor *tg_dropout(tg_ctx *ctx, tg_tensor *x, float p, bool training) {
    if (tg_check_not_null("tg_dropout", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_dropout", "x", x, -1)) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) {
        char s[80];
        tg_fail(TG_ERR_ARG, "tg_dropout: argument 'p' = %g for x of shape %s; a drop "
                "probability lies in [0, 1]; hint: 0.1 is usual for a small transformer",
                (double)p, tg_shape_str(x->shape, s, sizeof s));
        return NULL;
    }
    if (!training || p == 0.0f) return x;
    dropout_params prm = {.p = p};
    /* round(p 2^32) in double: exact for every float p. */
    prm.threshold = (uint64_t)llround((double)p * 4294967296.0);
    prm.scale = p == 1.0f ? 0.0f : (float)(1.0 / (1.0 - (double)p));
    prm.key = tg_rng_next(&ctx->rng);
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, &dropout_op, inputs, 1, x->shape, &prm, sizeof prm, NULL);
}
