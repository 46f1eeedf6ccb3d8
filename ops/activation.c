/*
 * ops/activation.c — ReLU and ReLU6.
 *
 *   relu(x)  = max(x, 0)            relu6(x) = min(max(x, 0), 6)
 *
 * Backward: d relu / dx is 1 where 0 < x (< 6 for relu6) and 0 elsewhere. At exactly 0
 * (and exactly 6) PyTorch uses 0, and so do we. The mask is read from the saved OUTPUT
 * (out > 0 <=> x > 0, and out < 6 <=> x < 6), so the input need not be kept alive:
 *   dx += dy * [0 < y < cap]
 */
#include "activation.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdio.h>

void relu_forward_cpu(float *out, const float *inp, int64_t n, float cap) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float v = inp[i] > 0.0f ? inp[i] : 0.0f;
        out[i] = v < cap ? v : cap;
    }
}

void relu_backward_cpu(float *dinp, const float *dout, const float *out, int64_t n, float cap) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dinp[i] += (out[i] > 0.0f && out[i] < cap) ? dout[i] : 0.0f;
}

typedef struct relu_params {
    float cap;
} relu_params;

static tg_status relu_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    relu_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->out->numel,
                     TG_PARAMS(rec, relu_params)->cap);
    return TG_OK;
}

static tg_status relu_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                               const float *dout) {
    (void)ctx;
    relu_backward_cpu(dinputs[0], dout, rec->out->data, rec->out->numel,
                      TG_PARAMS(rec, relu_params)->cap);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_relu_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    return relu_forward_cuda(rec->out->data, rec->inputs[0]->data, rec->out->numel,
                             TG_PARAMS(rec, relu_params)->cap);
}

static tg_status cuda_relu_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                    const float *dout) {
    (void)ctx;
    return relu_backward_cuda(dinputs[0], dout, rec->out->data, rec->out->numel,
                              TG_PARAMS(rec, relu_params)->cap);
}
#endif

static void relu_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                      double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel;
    *fwd_flops = n;
    *fwd_bytes = 8 * n;  /* read x, write y */
    *bwd_flops = 2 * n;
    *bwd_bytes = 16 * n; /* read y, dy, dx; write dx */
}

static void relu_explain(const tg_record *rec, char *buf, size_t size) {
    if (isinf(TG_PARAMS(rec, relu_params)->cap))
        snprintf(buf, size, "relu: dx += dy where y > 0; the gradient at exactly 0 is 0");
    else
        snprintf(buf, size, "relu6: dx += dy where 0 < y < 6; the gradient at exactly 0 and "
                 "6 is 0");
}

static const tg_op relu_op = {
    .name = "relu",
    .forward = {[TG_DEVICE_CPU] = relu_forward, TG_CUDA_ENTRY(cuda_relu_forward)},
    .backward = {[TG_DEVICE_CPU] = relu_backward, TG_CUDA_ENTRY(cuda_relu_backward)},
    .cost = relu_cost,
    .explain = relu_explain,
};

static tg_tensor *relu_apply(const char *name, tg_ctx *ctx, tg_tensor *x, float cap) {
    if (!tg_check_tensor(name, "x", x, -1)) return NULL;
    relu_params p = {.cap = cap};
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, &relu_op, inputs, 1, x->shape, &p, sizeof p, NULL);
}

tg_tensor *tg_relu(tg_ctx *ctx, tg_tensor *x) { return relu_apply("tg_relu", ctx, x, INFINITY); }

tg_tensor *tg_relu6(tg_ctx *ctx, tg_tensor *x) { return relu_apply("tg_relu6", ctx, x, 6.0f); }
