/*
 * ops/activation.c — ReLU and ReLU6.
 *
 *   relu(x)  = max(x, 0)            relu6(x) = min(max(x, 0), 6)
 *
 * NaN propagates, as in PyTorch: relu(NaN) = relu6(NaN) = NaN, so a diverging run shows
 * NaN in its loss instead of silently training on zeros. The comparisons are written so
 * that a NaN input fails both of them and passes through ("x < 0 ? 0 : x" rather than
 * "x > 0 ? x : 0"), which also keeps PyTorch's sign of zero: relu(-0.0) = -0.0.
 *
 * Backward: d relu / dx is 1 where 0 < x (< 6 for relu6) and 0 elsewhere. At exactly 0
 * (and exactly 6) PyTorch uses 0, and so do we. The mask is read from the saved OUTPUT
 * (y <= 0 <=> x <= 0, and y >= 6 <=> x >= 6), so the input need not be kept alive:
 *   dx += dy * [not (y <= 0 or y >= cap)]
 * written as "zero where y <= 0 or y >= cap", as PyTorch's threshold_backward and
 * hardtanh_backward do: at a NaN both tests fail and dy passes through (PyTorch 1.13's
 * gradient at NaN is dy, not 0). relu has no upper cut: at x = +inf it passes dy too.
 * (PyTorch 1.13's CPU relu6 backward is not consistent here: its vectorised main loop
 * tests 0 < x < 6 and gives 0 at NaN, its scalar tail and CUDA kernel give dy. We follow
 * the formula, on both devices; tests/golden/gen_activation.py has the details.)
 */
#include "activation.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdio.h>

/* Element-wise loops below this many elements run on the calling thread alone; above,
 * tg_parallel_range cuts them into chunks of at least ELEMENTWISE_GRAIN. */
#define ELEMENTWISE_SERIAL 65536
#define ELEMENTWISE_GRAIN 16384

typedef struct relu_args {
    float *dst;
    const float *a, *b; /* forward: a = x; backward: a = dy, b = y */
    float cap, hi;
    bool fresh;
} relu_args;

static void relu_forward_range(void *arg, int64_t begin, int64_t end) {
    const relu_args *r = arg;
    float *restrict out = r->dst;
    const float *restrict inp = r->a;
    const float cap = r->cap;
#pragma omp simd
    for (int64_t i = begin; i < end; i++) {
        float v = inp[i] < 0.0f ? 0.0f : inp[i]; /* NaN fails the test and stays */
        out[i] = v > cap ? cap : v;
    }
}

/* The upper cut as a comparison that is false for relu, even at y = +inf: y >= NaN never
 * holds. Both loads and both tests are unconditional (a bitwise |, not ||), so the
 * compiler can vectorise the select; with || and a load behind it, GCC kept a branch per
 * element, mispredicted half the time at MNIST's activations: 4x slower. */
static void relu_backward_range(void *arg, int64_t begin, int64_t end) {
    const relu_args *r = arg;
    float *restrict dinp = r->dst;
    const float *restrict dout = r->a, *restrict out = r->b;
    const float hi = r->hi;
    if (r->fresh) { /* the tape's buffer is uninitialised: write it (tg_grad_fresh) */
#pragma omp simd
        for (int64_t i = begin; i < end; i++) {
            float y = out[i], g = dout[i];
            dinp[i] = (y <= 0.0f) | (y >= hi) ? 0.0f : g;
        }
        return;
    }
#pragma omp simd
    for (int64_t i = begin; i < end; i++) {
        float y = out[i], g = dout[i];
        dinp[i] += (y <= 0.0f) | (y >= hi) ? 0.0f : g;
    }
}

void relu_forward_cpu(float *out, const float *inp, int64_t n, float cap) {
    relu_args r = {.dst = out, .a = inp, .cap = cap};
    tg_parallel_items(n, 1, ELEMENTWISE_SERIAL, ELEMENTWISE_GRAIN, relu_forward_range, &r);
}

void relu_backward_cpu(float *dinp, const float *dout, const float *out, int64_t n, float cap,
                       bool fresh) {
    relu_args r = {.dst = dinp, .a = dout, .b = out, .hi = cap < INFINITY ? cap : NAN,
                   .fresh = fresh};
    tg_parallel_items(n, 1, ELEMENTWISE_SERIAL, ELEMENTWISE_GRAIN, relu_backward_range, &r);
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
                      TG_PARAMS(rec, relu_params)->cap, tg_grad_fresh(rec, 0));
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
        snprintf(buf, size, "relu: dx += dy except where y <= 0; the gradient at exactly 0 "
                 "is 0, at NaN it is dy (as PyTorch)");
    else
        snprintf(buf, size, "relu6: dx += dy except where y <= 0 or y >= 6; the gradient at "
                 "exactly 0 and 6 is 0, at NaN it is dy (as PyTorch)");
}

static const tg_op relu_op = {
    .name = "relu",
    .forward = {[TG_DEVICE_CPU] = relu_forward, TG_CUDA_ENTRY(cuda_relu_forward)},
    .backward = {[TG_DEVICE_CPU] = relu_backward, TG_CUDA_ENTRY(cuda_relu_backward)},
    .cost = relu_cost,
    .explain = relu_explain,
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: a fresh dx is written, not added to */
};

static tg_tensor *relu_apply(const char *name, tg_ctx *ctx, tg_tensor *x, float cap) {
    if (!tg_check_tensor(name, "x", x, -1)) return NULL;
    relu_params p = {.cap = cap};
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, &relu_op, inputs, 1, x->shape, &p, sizeof p, NULL);
}

tg_tensor *tg_relu(tg_ctx *ctx, tg_tensor *x) { return relu_apply("tg_relu", ctx, x, INFINITY); }

tg_tensor *tg_relu6(tg_ctx *ctx, tg_tensor *x) { return relu_apply("tg_relu6", ctx, x, 6.0f); }
