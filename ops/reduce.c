/*
 * ops/reduce.c — reductions along one dim (sum, mean, max, var; keepdim or not) and over
 * every element (sum_all, mean_all, max_all -> a scalar of shape ()).
 *
 * Layout. Reducing dim d of a contiguous x views it as (outer, n, inner): n = x.shape[d],
 * outer = the product of the dims before d, inner = of the dims after. The result is
 * (outer, inner) in memory; its shape keeps d as 1 (keepdim) or drops it. Over everything:
 * outer = inner = 1, n = numel.
 *
 *   sum   y[o, i] = sum_j x[o, j, i]
 *   mean  y[o, i] = (1/n) sum_j x[o, j, i]
 *   max   y[o, i] = max_j x[o, j, i]                  (a NaN is the maximum, as PyTorch)
 *   var   y[o, i] = 1/(n - c) sum_j (x[o, j, i] - mu[o, i])^2,  mu = mean, c = 1 unbiased
 *
 * Backward (dy = dL/dy, broadcast back along j):
 *   sum:  dy/dx[o, j, i] = 1             ->  dx[o, j, i] += dy[o, i]
 *   mean: dy/dx = 1/n                    ->  dx += dy / n
 *   max:  y is one of its inputs; only that one moves it. With ties the derivative is not
 *         defined and frameworks pick a convention. PyTorch 1.13 uses two (measured):
 *         torch.max(x, dim) sends the whole gradient to the index it returns, the FIRST
 *         arg-max; torch.max(x) over everything (and amax) shares it EVENLY between all
 *         tied maxima. We match both: tg_max  -> dx[o, argmax, i] += dy[o, i];
 *         tg_max_all -> dx[e] += dy / count where x[e] == y (count = the ties).
 *   var:  dv/dx_k = 1/(n - c) sum_j 2 (x_j - mu) (delta_jk - dmu/dx_k), dmu/dx_k = 1/n.
 *         The second part is -(2/n)/(n - c) sum_j (x_j - mu) = 0, since deviations from
 *         the mean sum to zero. So  dx[o, k, i] += dy[o, i] 2 (x[o, k, i] - mu[o, i]) / (n - c).
 *         The forward saves mu. (n = 1 unbiased divides by 0: NaN, as PyTorch.)
 *
 * Kernels: ops/reduce_kernels.c (rows summed in float runs of 1024 added into a double,
 * in fixed chunks, so results do not depend on the thread count).
 */
#include "reduce.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdio.h>

/* ---------------------------------------------------------------- the ops */

typedef enum reduce_kind { RED_SUM, RED_MEAN, RED_MAX, RED_VAR, RED_MAX_ALL } reduce_kind;

typedef struct reduce_params {
    reduce_kind kind;
    int dim;        /* normalised; -1 for the *_all reductions */
    bool keepdim;
    int correction; /* var: 1 unbiased, 0 biased */
    int64_t outer, n, inner;
} reduce_params;

static float sum_scale(const reduce_params *p) {
    return p->kind == RED_MEAN ? 1.0f / (float)p->n : 1.0f;
}

static tg_status reduce_forward(tg_ctx *ctx, tg_record *rec) {
    const reduce_params *p = TG_PARAMS(rec, reduce_params);
    const float *x = rec->inputs[0]->data;
    float *y = rec->out->data;
    bool recording = rec->index >= 0;
    switch (p->kind) {
    case RED_SUM:
    case RED_MEAN: sum_forward_cpu(y, x, p->outer, p->n, p->inner, sum_scale(p)); break;
    case RED_MAX: {
        int64_t *argmax = NULL;
        if (recording) {
            argmax = tg_record_save_bytes(ctx, rec, (size_t)(p->outer * p->inner) * sizeof *argmax);
            if (!argmax) return TG_ERR_NOMEM;
            rec->aux = argmax;
        }
        max_forward_cpu(y, argmax, x, p->outer, p->n, p->inner);
        break;
    }
    case RED_MAX_ALL: max_forward_cpu(y, NULL, x, 1, p->n, 1); break;
    case RED_VAR: {
        tg_tensor *mean = tg_record_save(ctx, rec, 0, tg_shape1(p->outer * p->inner));
        if (!mean) return TG_ERR_NOMEM;
        var_forward_cpu(y, mean->data, x, p->outer, p->n, p->inner, p->correction);
        break;
    }
    }
    return TG_OK;
}

static tg_status reduce_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    (void)ctx;
    const reduce_params *p = TG_PARAMS(rec, reduce_params);
    const float *x = rec->inputs[0]->data;
    float *dx = dinputs[0];
    if (!dx) return TG_OK;
    switch (p->kind) {
    case RED_SUM:
    case RED_MEAN: sum_backward_cpu(dx, dout, p->outer, p->n, p->inner, sum_scale(p)); break;
    case RED_MAX: max_backward_cpu(dx, dout, rec->aux, p->outer, p->n, p->inner); break;
    case RED_MAX_ALL: {
        float m = rec->out->data[0];
        max_all_backward_cpu(dx, dout, x, p->n, m, max_count_cpu(x, p->n, m));
        break;
    }
    case RED_VAR:
        var_backward_cpu(dx, dout, x, rec->saved[0]->data, p->outer, p->n, p->inner,
                         p->correction);
        break;
    }
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_reduce_forward(tg_ctx *ctx, tg_record *rec) {
    const reduce_params *p = TG_PARAMS(rec, reduce_params);
    const float *x = rec->inputs[0]->data;
    float *y = rec->out->data;
    float *work = tg_ctx_scratch(ctx, (size_t)reduce_workspace_floats_cuda(p->outer, p->n,
                                                                            p->inner) * 4);
    if (!work) return TG_ERR_NOMEM;
    switch (p->kind) {
    case RED_SUM:
    case RED_MEAN: return sum_forward_cuda(y, x, p->outer, p->n, p->inner, sum_scale(p), work);
    case RED_MAX: {
        int64_t *argmax = NULL;
        if (rec->index >= 0) {
            argmax = tg_record_save_bytes(ctx, rec, (size_t)(p->outer * p->inner) * sizeof *argmax);
            if (!argmax) return TG_ERR_NOMEM;
            rec->aux = argmax;
        }
        return max_forward_cuda(y, argmax, x, p->outer, p->n, p->inner, work);
    }
    case RED_MAX_ALL: return max_forward_cuda(y, NULL, x, 1, p->n, 1, work);
    case RED_VAR: {
        tg_tensor *mean = tg_record_save(ctx, rec, 0, tg_shape1(p->outer * p->inner));
        if (!mean) return TG_ERR_NOMEM;
        return var_forward_cuda(y, mean->data, x, p->outer, p->n, p->inner, p->correction, work);
    }
    }
    return TG_OK;
}

static tg_status cuda_reduce_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    const reduce_params *p = TG_PARAMS(rec, reduce_params);
    const float *x = rec->inputs[0]->data;
    float *dx = dinputs[0];
    if (!dx) return TG_OK;
    switch (p->kind) {
    case RED_SUM:
    case RED_MEAN: return sum_backward_cuda(dx, dout, p->outer, p->n, p->inner, sum_scale(p));
    case RED_MAX: return max_backward_cuda(dx, dout, rec->aux, p->outer, p->n, p->inner);
    case RED_MAX_ALL: {
        float *work = tg_ctx_scratch(ctx, (size_t)reduce_workspace_floats_cuda(1, p->n, 1) * 4);
        if (!work) return TG_ERR_NOMEM;
        return max_all_backward_cuda(dx, dout, x, rec->out->data, p->n, work);
    }
    case RED_VAR:
        return var_backward_cuda(dx, dout, x, rec->saved[0]->data, p->outer, p->n, p->inner,
                                 p->correction);
    }
    return TG_OK;
}
#endif

static void reduce_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                        double *bwd_flops, double *bwd_bytes) {
    const reduce_params *p = TG_PARAMS(rec, reduce_params);
    double nx = (double)(p->outer * p->n * p->inner), ny = (double)(p->outer * p->inner);
    bool var = p->kind == RED_VAR, all = p->kind == RED_MAX_ALL;
    *fwd_flops = var ? 4 * nx : nx;
    *fwd_bytes = 4 * ((var ? 2 : 1) * nx + (var ? 2 : 1) * ny); /* var reads x twice */
    /* dx read + written; dy read; var and max_all also read x (max_all twice). */
    *bwd_flops = var ? 3 * nx : nx;
    *bwd_bytes = 4 * (2 * nx + ny + (var ? nx + ny : 0) + (all ? 2 * nx : 0)) +
                 (p->kind == RED_MAX ? 8 * ny : 0);
}

static const char *const kind_name[] = {"sum", "mean", "max", "var", "max_all"};

static void reduce_describe(const tg_record *rec, char *buf, size_t size) {
    const reduce_params *p = TG_PARAMS(rec, reduce_params);
    if (p->dim < 0) snprintf(buf, size, "%s over all", kind_name[p->kind]);
    else
        snprintf(buf, size, "%s dim %d%s%s", kind_name[p->kind], p->dim,
                 p->keepdim ? " keepdim" : "",
                 p->kind == RED_VAR ? (p->correction ? " unbiased" : " biased") : "");
}

static void reduce_explain(const tg_record *rec, char *buf, size_t size) {
    const reduce_params *p = TG_PARAMS(rec, reduce_params);
    const char *along = p->dim < 0 ? "every element" : "the reduced dim";
    switch (p->kind) {
    case RED_SUM: snprintf(buf, size, "sum: dx += dy copied along %s", along); break;
    case RED_MEAN:
        snprintf(buf, size, "mean: dx += dy / %lld copied along %s", (long long)p->n, along);
        break;
    case RED_MAX:
        snprintf(buf, size, "max: dx += dy at the first arg-max along dim %d (saved), 0 "
                 "elsewhere", p->dim);
        break;
    case RED_MAX_ALL:
        snprintf(buf, size, "max_all: dx += dy / (number of ties) where x equals the max, 0 "
                 "elsewhere");
        break;
    case RED_VAR:
        snprintf(buf, size, "var: dx += dy 2 (x - mean) / (n - %d), n = %lld (mean saved)",
                 p->correction, (long long)p->n);
        break;
    }
}

/* One descriptor per public name so tables and profiles say which reduction ran. */
#define REDUCE_OP(var, op_name)                                                           \
    static const tg_op var = {                                                            \
        .name = op_name,                                                                  \
        .forward = {[TG_DEVICE_CPU] = reduce_forward, TG_CUDA_ENTRY(cuda_reduce_forward)},   \
        .backward = {[TG_DEVICE_CPU] = reduce_backward, TG_CUDA_ENTRY(cuda_reduce_backward)}, \
        .cost = reduce_cost,                                                              \
        .describe = reduce_describe,                                                      \
        .explain = reduce_explain,                                                        \
    }
REDUCE_OP(sum_op, "sum");
REDUCE_OP(mean_op, "mean");
REDUCE_OP(max_op, "max");
REDUCE_OP(var_op, "var");

static const tg_op *op_for(reduce_kind kind) {
    switch (kind) {
    case RED_SUM: return &sum_op;
    case RED_MEAN: return &mean_op;
    case RED_VAR: return &var_op;
    case RED_MAX:
    case RED_MAX_ALL: break;
    }
    return &max_op;
}

/* Validates dim (Python style, -ndim .. ndim-1; a scalar takes -1 and 0) and applies. */
static tg_tensor *reduce_dim(const char *fn, tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim,
                             reduce_kind kind, int correction) {
    char sx[80];
    if (tg_check_not_null(fn, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(fn, "x", x, -1)) return NULL;
    int nd = x->shape.ndim, span = nd > 0 ? nd : 1;
    if (dim < -span || dim >= span) {
        tg_fail(TG_ERR_ARG, "%s: argument 'dim' = %d is out of range for 'x' %s (%d dims); "
                "expected %d .. %d (negative dims count from the end: -1 is the last)", fn,
                dim, tg_shape_str(x->shape, sx, sizeof sx), nd, -span, span - 1);
        return NULL;
    }
    int d = dim < 0 ? dim + span : dim;
    reduce_params p = {.kind = kind, .dim = d, .keepdim = keepdim, .correction = correction,
                       .outer = 1, .n = nd > 0 ? x->shape.dim[d] : 1, .inner = 1};
    for (int k = 0; k < d && k < nd; k++) p.outer *= x->shape.dim[k];
    for (int k = d + 1; k < nd; k++) p.inner *= x->shape.dim[k];
    tg_shape out = {.ndim = 0};
    for (int k = 0; k < nd; k++) {
        if (k != d) out.dim[out.ndim++] = x->shape.dim[k];
        else if (keepdim) out.dim[out.ndim++] = 1;
    }
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, op_for(kind), inputs, 1, out, &p, sizeof p, NULL);
}

static tg_tensor *reduce_all(const char *fn, tg_ctx *ctx, tg_tensor *x, reduce_kind kind) {
    if (tg_check_not_null(fn, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(fn, "x", x, -1)) return NULL;
    reduce_params p = {.kind = kind, .dim = -1, .outer = 1, .n = x->numel, .inner = 1};
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, op_for(kind), inputs, 1, tg_shape0(), &p, sizeof p, NULL);
}

tg_tensor *tg_sum(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim) {
    return reduce_dim("tg_sum", ctx, x, dim, keepdim, RED_SUM, 0);
}

tg_tensor *tg_mean(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim) {
    return reduce_dim("tg_mean", ctx, x, dim, keepdim, RED_MEAN, 0);
}

tg_tensor *tg_max(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim) {
    return reduce_dim("tg_max", ctx, x, dim, keepdim, RED_MAX, 0);
}

tg_tensor *tg_var(tg_ctx *ctx, tg_tensor *x, int dim, bool keepdim, bool unbiased) {
    return reduce_dim("tg_var", ctx, x, dim, keepdim, RED_VAR, unbiased ? 1 : 0);
}

tg_tensor *tg_sum_all(tg_ctx *ctx, tg_tensor *x) { return reduce_all("tg_sum_all", ctx, x, RED_SUM); }

tg_tensor *tg_mean_all(tg_ctx *ctx, tg_tensor *x) {
    return reduce_all("tg_mean_all", ctx, x, RED_MEAN);
}

tg_tensor *tg_max_all(tg_ctx *ctx, tg_tensor *x) {
    return reduce_all("tg_max_all", ctx, x, RED_MAX_ALL);
}
