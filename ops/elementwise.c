/*
 * ops/elementwise.c — element-wise addition (residual connections).
 *
 *   y = a + b             (same shapes; no broadcasting)
 *
 * Backward: dy/da = dy/db = 1, so  da += dy  and  db += dy.  When a and b are the same
 * tensor (y = x + x) both gradients point at one buffer and it receives 2 dy, which is
 * exactly right: accumulation makes fan-out work without special cases.
 */
#include "elementwise.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

void add_forward_cpu(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void accumulate_cpu(float *dst, const float *src, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

static tg_status add_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    add_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                    rec->out->numel);
    return TG_OK;
}

static tg_status add_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                              const float *dout) {
    (void)ctx;
    for (int i = 0; i < 2; i++)
        if (dinputs[i]) accumulate_cpu(dinputs[i], dout, rec->out->numel);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_add_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    return add_forward_cuda(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                            rec->out->numel);
}

static tg_status cuda_add_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    (void)ctx;
    for (int i = 0; i < 2; i++) {
        tg_status st = dinputs[i] ? accumulate_cuda(dinputs[i], dout, rec->out->numel) : TG_OK;
        if (st != TG_OK) return st;
    }
    return TG_OK;
}
#endif

static void add_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                     double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel;
    *fwd_flops = n;
    *fwd_bytes = 12 * n;   /* read a, b; write y */
    *bwd_flops = 2 * n;
    *bwd_bytes = 24 * n;   /* read dy twice, read+write da and db */
}

static const tg_op add_op = {
    .name = "add",
    .forward = {[TG_DEVICE_CPU] = add_forward, TG_CUDA_ENTRY(cuda_add_forward)},
    .backward = {[TG_DEVICE_CPU] = add_backward, TG_CUDA_ENTRY(cuda_add_backward)},
    .cost = add_cost,
    .backward_doc = "da += dy and db += dy (the sum passes the gradient through unchanged)",
};

tg_tensor *tg_add(tg_ctx *ctx, tg_tensor *a, tg_tensor *b) {
    if (!tg_check_tensor("tg_add", "a", a, -1) || !tg_check_tensor("tg_add", "b", b, -1))
        return NULL;
    if (!tg_shape_equal(a->shape, b->shape)) {
        char sa[80], sb[80];
        tg_fail(TG_ERR_SHAPE, "tg_add: arguments 'a' %s and 'b' %s differ in shape; tg_add "
                "does not broadcast (hint: reshape one of them first)",
                tg_shape_str(a->shape, sa, sizeof sa), tg_shape_str(b->shape, sb, sizeof sb));
        return NULL;
    }
    tg_tensor *inputs[2] = {a, b};
    return tg_op_apply(ctx, &add_op, inputs, 2, a->shape, NULL, 0, NULL);
}
