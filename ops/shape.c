/*
 * ops/shape.c — reshape and flatten: views that share storage with their input.
 *
 * The data are contiguous NCHW, so any shape with the same number of elements is the
 * same bytes read differently: forward copies nothing (the output's data pointer IS the
 * input's). The output still gets its own gradient buffer, and the backward is the
 * identity on the flat buffer:  dx[i] += dy[i].
 */
#include "elementwise.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <string.h>

static tg_status reshape_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    (void)rec; /* the output is a view; nothing to compute */
    return TG_OK;
}

static tg_status reshape_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                  const float *dout) {
    (void)ctx;
    if (tg_grad_fresh(rec, 0)) /* the tape's buffer is uninitialised: the gradient is dy */
        memcpy(dinputs[0], dout, (size_t)rec->out->numel * sizeof(float));
    else
        accumulate_cpu(dinputs[0], dout, rec->out->numel);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_reshape_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                       const float *dout) {
    (void)ctx;
    return accumulate_cuda(dinputs[0], dout, rec->out->numel);
}
#endif

static void reshape_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                         double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel;
    *fwd_flops = 0;
    *fwd_bytes = 0; /* a view */
    *bwd_flops = n;
    *bwd_bytes = 12 * n;
}

static const tg_op reshape_op = {
    .name = "reshape",
    .forward = {[TG_DEVICE_CPU] = reshape_forward, TG_CUDA_ENTRY(reshape_forward)},
    .backward = {[TG_DEVICE_CPU] = reshape_backward, TG_CUDA_ENTRY(cuda_reshape_backward)},
    .cost = reshape_cost,
    .backward_doc = "dx += dy read in x's shape (same elements, same order)",
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: a fresh dx is a copy of dy */
};

static tg_tensor *reshape_apply(const char *fn, tg_ctx *ctx, tg_tensor *x, tg_shape shape) {
    char sx[80], ss[80];
    if (shape.ndim < 0 || shape.ndim > TG_MAX_DIMS) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'shape' has %d dims; tensors have 0 to %d", fn,
                shape.ndim, TG_MAX_DIMS);
        return NULL;
    }
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < shape.ndim; i++) {
        if (shape.dim[i] == -1 && infer < 0) {
            infer = i;
        } else if (shape.dim[i] <= 0) {
            tg_fail(TG_ERR_SHAPE, "%s: argument 'shape' %s has dim %d = %lld; dims must be "
                    "positive, with at most one -1 to infer", fn,
                    tg_shape_str(shape, ss, sizeof ss), i, (long long)shape.dim[i]);
            return NULL;
        } else if (!tg_mul_i64(known, shape.dim[i], &known) || known > TG_MAX_NUMEL) {
            tg_fail(TG_ERR_SHAPE, "%s: argument 'shape' %s has more than TG_MAX_NUMEL = 2^40 "
                    "elements; input %s has %lld", fn, tg_shape_str(shape, ss, sizeof ss),
                    tg_shape_str(x->shape, sx, sizeof sx), (long long)x->numel);
            return NULL;
        }
    }
    if (infer >= 0) {
        if (x->numel % known != 0) {
            tg_fail(TG_ERR_SHAPE, "%s: cannot infer the -1 in %s for input %s (%lld elements "
                    "are not a multiple of %lld)", fn, tg_shape_str(shape, ss, sizeof ss),
                    tg_shape_str(x->shape, sx, sizeof sx), (long long)x->numel,
                    (long long)known);
            return NULL;
        }
        shape.dim[infer] = x->numel / known;
    }
    if (tg_shape_numel(shape) != x->numel) { /* -1 (over the limit) never matches */
        tg_fail(TG_ERR_SHAPE, "%s: input %s has %lld elements but shape %s has %lld", fn,
                tg_shape_str(x->shape, sx, sizeof sx), (long long)x->numel,
                tg_shape_str(shape, ss, sizeof ss), (long long)tg_shape_numel(shape));
        return NULL;
    }
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, &reshape_op, inputs, 1, shape, NULL, 0, x->data);
}

tg_tensor *tg_reshape(tg_ctx *ctx, tg_tensor *x, tg_shape shape) {
    if (tg_check_not_null("tg_reshape", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_reshape", "x", x, -1)) return NULL;
    return reshape_apply("tg_reshape", ctx, x, shape);
}

tg_tensor *tg_flatten(tg_ctx *ctx, tg_tensor *x) {
    if (tg_check_not_null("tg_flatten", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_flatten", "x", x, -1)) return NULL;
    if (x->shape.ndim < 1) {
        tg_fail(TG_ERR_SHAPE, "tg_flatten: argument 'x' is a scalar; flatten keeps dim 0 "
                "(N) and needs at least one dim");
        return NULL;
    }
    return reshape_apply("tg_flatten", ctx, x,
                         tg_shape2(x->shape.dim[0], x->numel / x->shape.dim[0]));
}
