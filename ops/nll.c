/*
 * ops/nll.c — negative log-likelihood on log-probabilities, and binary cross entropy with
 * logits. Both reduce by mean and return a scalar; the 1/count lives in the backward.
 *
 * NLL. log_probs z (N, C) with targets t[N], or (N, C, d...) with t[N * d...] (a
 * sequence or an image of positions, classes along dim 1 as PyTorch). Positions whose
 * target is -100 (ignore_index) are skipped; `count` is the number of the others:
 *   L = -(1 / count) sum over kept positions q of z[q, t_q]
 *   dL/dz[q, c] = -[c = t_q] / count
 * so the backward subtracts dL / count at one element per kept position (z need not be
 * saved: the gradient does not depend on it). tg_log_softmax + tg_nll_loss equals
 * tg_cross_entropy. count is known when the op is called (the targets are host memory),
 * so it is an inline parameter. count = 0 gives 0/0 = NaN, as PyTorch does.
 *
 * BCE WITH LOGITS. For a logit x and a target t in [0, 1], with s = sigmoid(x):
 *   l = -(t log s + (1 - t) log(1 - s)) = max(x, 0) - x t + log(1 + exp(-|x|))
 *   (log s = -log(1 + e^-x), log(1 - s) = -x - log(1 + e^-x); the right-hand form never
 *   exponentiates a positive number, so it neither overflows nor takes log(0)).
 *   L = (1/n) sum_i l_i
 *   dl/dx = s - t          (d/dx of -t log s - (1-t) log(1-s) = -t (1-s) + (1-t) s)
 *   dl/dt = -x             (log(1 - s) - log s = -x)
 * Nothing is saved: x and t are the inputs. The sums run in double over fixed chunks
 * added in a fixed order: the loss does not depend on the thread count.
 */
#include "nll.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdio.h>

#define BCE_CHUNK 4096

void nll_forward_cpu(float *loss, const float *log_probs, const int32_t *target, int64_t N,
                     int64_t C, int64_t inner, int64_t count) {
    double sum = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < inner; p++) {
            int32_t t = target[n * inner + p];
            if (t != TG_IGNORE_INDEX) sum -= (double)log_probs[(n * C + t) * inner + p];
        }
    loss[0] = (float)(sum / (double)count);
}

void nll_backward_cpu(float *dlog_probs, const int32_t *target, float scale, int64_t N,
                      int64_t C, int64_t inner) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < inner; p++) {
            int32_t t = target[n * inner + p];
            if (t != TG_IGNORE_INDEX) dlog_probs[(n * C + t) * inner + p] -= scale;
        }
}

int64_t bce_partials(int64_t n) { return (n + BCE_CHUNK - 1) / BCE_CHUNK; }

/* Both BCE loops run on tg_parallel_items (core/pool.c): the same bits whoever runs a
 * chunk; the partial sums are added in order here. */
#define BCE_SERIAL 65536 /* elements at or below which one thread does it all */
#define BCE_GRAIN 32768  /* elements per chunk of the parallel loops */

typedef struct bce_job {
    double *partial;
    float *dx, *dt;
    const float *x, *t;
    float scale;
    int64_t n;
} bce_job;

static void bce_forward_chunks(void *arg, int64_t k0, int64_t k1) {
    const bce_job *j = arg;
    const float *x = j->x, *t = j->t;
    for (int64_t k = k0; k < k1; k++) {
        int64_t end = (k + 1) * BCE_CHUNK < j->n ? (k + 1) * BCE_CHUNK : j->n;
        double s = 0;
        for (int64_t i = k * BCE_CHUNK; i < end; i++) {
            float xi = x[i];
            s += (double)((xi > 0 ? xi : 0.0f) - xi * t[i] + log1pf(expf(-fabsf(xi))));
        }
        j->partial[k] = s;
    }
}

void bce_forward_cpu(float *loss, double *partial, const float *x, const float *t, int64_t n) {
    bce_job j = {.partial = partial, .x = x, .t = t, .n = n};
    int64_t chunks = bce_partials(n);
    tg_parallel_items(chunks, BCE_CHUNK, BCE_SERIAL, BCE_GRAIN, bce_forward_chunks, &j);
    double sum = 0;
    for (int64_t k = 0; k < chunks; k++) sum += partial[k];
    loss[0] = (float)(sum / (double)n);
}

static void bce_backward_range(void *arg, int64_t i0, int64_t i1) {
    const bce_job *j = arg;
    const float *x = j->x, *t = j->t, scale = j->scale;
    if (j->dx)
        for (int64_t i = i0; i < i1; i++) j->dx[i] += (1.0f / (1.0f + expf(-x[i])) - t[i]) * scale;
    if (j->dt) {
        float *dt = j->dt;
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) dt[i] -= x[i] * scale;
    }
}

void bce_backward_cpu(float *dx, float *dt, const float *x, const float *t, float scale,
                      int64_t n) {
    bce_job j = {.dx = dx, .dt = dt, .x = x, .t = t, .scale = scale, .n = n};
    tg_parallel_items(n, 1, BCE_SERIAL, BCE_GRAIN, bce_backward_range, &j);
}

/* ---------------------------------------------------------------- nll op */

typedef struct nll_params {
    int64_t N, C, inner, count;
    const int32_t *target; /* the caller's host array, borrowed for the forward only */
} nll_params;

static tg_status nll_forward(tg_ctx *ctx, tg_record *rec) {
    nll_params *p = TG_PARAMS(rec, nll_params);
    size_t bytes = (size_t)(p->N * p->inner) * sizeof(int32_t);
    int32_t *target = tg_record_save_bytes(ctx, rec, bytes);
    if (!target) return tg_error();
    tg_status st = tg_device_copy(ctx->device, target, TG_DEVICE_CPU, p->target, bytes);
    if (st) return st;
    rec->aux = target;
    p->target = NULL;
#ifdef TG_HAVE_CUDA
    if (ctx->device == TG_DEVICE_CUDA)
        return nll_forward_cuda(rec->out->data, rec->inputs[0]->data, target, p->N, p->C,
                                p->inner, p->count);
#endif
    nll_forward_cpu(rec->out->data, rec->inputs[0]->data, target, p->N, p->C, p->inner,
                    p->count);
    return TG_OK;
}

static tg_status nll_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                              const float *dout) {
    (void)ctx;
    const nll_params *p = TG_PARAMS(rec, nll_params);
    float scale = (float)((double)dout[0] / (double)p->count);
    nll_backward_cpu(dinputs[0], rec->aux, scale, p->N, p->C, p->inner);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_nll_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    (void)ctx;
    const nll_params *p = TG_PARAMS(rec, nll_params);
    return nll_backward_cuda(dinputs[0], rec->aux, dout, p->N, p->C, p->inner, p->count);
}
#endif

static void nll_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                     double *bwd_flops, double *bwd_bytes) {
    const nll_params *p = TG_PARAMS(rec, nll_params);
    double q = (double)(p->N * p->inner);
    *fwd_flops = q;
    *fwd_bytes = 8 * q; /* a target and one log-probability per position */
    *bwd_flops = q;
    *bwd_bytes = 12 * q; /* a target, read + write one gradient element per position */
}

static void nll_explain(const tg_record *rec, char *buf, size_t size) {
    const nll_params *p = TG_PARAMS(rec, nll_params);
    snprintf(buf, size, "nll_loss over %lld of %lld positions (the rest ignore_index -100): "
             "dlog_probs[target] -= dL / %lld", (long long)p->count,
             (long long)(p->N * p->inner), (long long)p->count);
}

static const tg_op nll_op = {
    .name = "nll_loss",
    .forward = {[TG_DEVICE_CPU] = nll_forward, TG_CUDA_ENTRY(nll_forward)},
    .backward = {[TG_DEVICE_CPU] = nll_backward, TG_CUDA_ENTRY(cuda_nll_backward)},
    .cost = nll_cost,
    .explain = nll_explain,
};

tg_tensor *tg_nll_loss(tg_ctx *ctx, tg_tensor *log_probs, const int32_t *target) {
    const char *op = "tg_nll_loss";
    char s[80];
    if (tg_check_not_null(op, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(op, "log_probs", log_probs, -1)) return NULL;
    const tg_shape *sh = &log_probs->shape;
    if (sh->ndim < 2) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'log_probs' has shape %s (%d dims); expected "
                "(N, C), (N, C, L) or (N, C, H, W) with classes along dim 1; hint: "
                "tg_log_softmax(ctx, logits, 1) makes them", op,
                tg_shape_str(*sh, s, sizeof s), sh->ndim);
        return NULL;
    }
    int64_t N = sh->dim[0], C = sh->dim[1], inner = log_probs->numel / (N * C);
    int64_t positions = N * inner, count = 0;
    if (!target) {
        tg_fail(TG_ERR_ARG, "%s: argument 'target' is NULL; expected %lld class indices "
                "(one per position of log_probs %s, dim 1 excluded)", op, (long long)positions,
                tg_shape_str(*sh, s, sizeof s));
        return NULL;
    }
    for (int64_t i = 0; i < positions; i++) {
        if (target[i] == TG_IGNORE_INDEX) continue;
        if (target[i] < 0 || target[i] >= C) {
            tg_fail(TG_ERR_ARG, "%s: argument 'target' has value %d at position %lld; class "
                    "indices must lie in [0, C) with C = %lld (log_probs %s), or be -100 "
                    "(ignored)", op, (int)target[i], (long long)i, (long long)C,
                    tg_shape_str(*sh, s, sizeof s));
            return NULL;
        }
        count++;
    }
    nll_params p = {.N = N, .C = C, .inner = inner, .count = count, .target = target};
    tg_tensor *inputs[1] = {log_probs};
    return tg_op_apply(ctx, &nll_op, inputs, 1, tg_shape0(), &p, sizeof p, NULL);
}

/* ---------------------------------------------------------------- bce op */

static tg_status bce_forward(tg_ctx *ctx, tg_record *rec) {
    int64_t n = rec->inputs[0]->numel;
#ifdef TG_HAVE_CUDA
    if (ctx->device == TG_DEVICE_CUDA) {
        double *partial = tg_ctx_scratch(ctx, (size_t)bce_partials_cuda(n) * sizeof(double));
        if (!partial) return tg_error();
        return bce_forward_cuda(rec->out->data, partial, rec->inputs[0]->data,
                                rec->inputs[1]->data, n);
    }
#endif
    double *partial = tg_ctx_scratch(ctx, (size_t)bce_partials(n) * sizeof(double));
    if (!partial) return tg_error();
    bce_forward_cpu(rec->out->data, partial, rec->inputs[0]->data, rec->inputs[1]->data, n);
    return TG_OK;
}

static tg_status bce_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                              const float *dout) {
    (void)ctx;
    int64_t n = rec->inputs[0]->numel;
    float scale = (float)((double)dout[0] / (double)n);
    bce_backward_cpu(dinputs[0], dinputs[1], rec->inputs[0]->data, rec->inputs[1]->data, scale,
                     n);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_bce_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    (void)ctx;
    return bce_backward_cuda(dinputs[0], dinputs[1], rec->inputs[0]->data,
                             rec->inputs[1]->data, dout, rec->inputs[0]->numel);
}
#endif

static void bce_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                     double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->inputs[0]->numel;
    bool dt = rec->inputs[1]->requires_grad;
    *fwd_flops = 8 * n; /* max, multiply, subtract, abs, exp, log1p, adds */
    *fwd_bytes = 8 * n;
    *bwd_flops = (dt ? 7 : 5) * n;
    *bwd_bytes = (dt ? 24 : 16) * n;
}

static const tg_op bce_op = {
    .name = "bce_with_logits",
    .forward = {[TG_DEVICE_CPU] = bce_forward, TG_CUDA_ENTRY(bce_forward)},
    .backward = {[TG_DEVICE_CPU] = bce_backward, TG_CUDA_ENTRY(cuda_bce_backward)},
    .cost = bce_cost,
    .backward_doc = "bce_with_logits: dlogits += (sigmoid(x) - t) * dL / n; dtarget -= x * "
                    "dL / n",
};

tg_tensor *tg_bce_with_logits(tg_ctx *ctx, tg_tensor *logits, tg_tensor *target) {
    const char *op = "tg_bce_with_logits";
    if (tg_check_not_null(op, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(op, "logits", logits, -1) || !tg_check_tensor(op, "target", target, -1))
        return NULL;
    if (!tg_shape_equal(logits->shape, target->shape)) {
        char s1[80], s2[80];
        tg_fail(TG_ERR_SHAPE, "%s: argument 'target' has shape %s but 'logits' has shape %s; "
                "they must match (no broadcasting); hint: one target in [0, 1] per logit", op,
                tg_shape_str(target->shape, s1, sizeof s1),
                tg_shape_str(logits->shape, s2, sizeof s2));
        return NULL;
    }
    tg_tensor *inputs[2] = {logits, target};
    return tg_op_apply(ctx, &bce_op, inputs, 2, tg_shape0(), NULL, 0, NULL);
}
