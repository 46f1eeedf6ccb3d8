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
 * Kernels: rows (inner = 1) are summed in float runs of 1024 added into a double, in
 * fixed chunks, so results do not depend on the thread count; inner > 1 adds whole rows
 * of inner floats (vectorised), tiled over (outer, blocks of inner) for the threads.
 */
#include "reduce.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdio.h>

#define RUN 1024          /* floats summed in float before going into a double */
#define CHUNK 16384       /* a row's fixed chunk (partial sums combined in order) */
#define MAX_CHUNKS 4096   /* partials kept on the stack by the few-long-rows path */
#define INNER_BLOCK 512   /* columns per task when inner > 1 */
#define PAR_MIN 32768     /* elements below which loops stay serial */

/* ---------------------------------------------------------------- sum / mean */

static double run_sum(const float *x, int64_t n) {
    double acc = 0.0;
    for (int64_t j0 = 0; j0 < n; j0 += RUN) {
        int64_t j1 = j0 + RUN < n ? j0 + RUN : n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t j = j0; j < j1; j++) s += x[j];
        acc += s;
    }
    return acc;
}

/* One row of n floats, summed chunk by chunk in order (what every path computes). */
static double row_sum(const float *x, int64_t n) {
    double acc = 0.0;
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) acc += run_sum(x + c0, c0 + CHUNK < n ? CHUNK : n - c0);
    return acc;
}

void sum_forward_cpu(float *out, const float *x, int64_t outer, int64_t n, int64_t inner,
                     float scale) {
    int64_t total = outer * n * inner;
    if (inner == 1) {
        int64_t nchunks = (n + CHUNK - 1) / CHUNK;
        if (outer < tg_threads() && nchunks > 1 && outer * nchunks <= MAX_CHUNKS) {
            /* Few long rows: the chunks of all rows in parallel, then each row's in order. */
            double partial[MAX_CHUNKS];
#pragma omp parallel for schedule(static)
            for (int64_t t = 0; t < outer * nchunks; t++) {
                int64_t o = t / nchunks, c0 = (t % nchunks) * CHUNK;
                partial[t] = run_sum(x + o * n + c0, c0 + CHUNK < n ? CHUNK : n - c0);
            }
            for (int64_t o = 0; o < outer; o++) {
                double acc = 0.0;
                for (int64_t c = 0; c < nchunks; c++) acc += partial[o * nchunks + c];
                out[o] = (float)(acc * scale);
            }
            return;
        }
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
        for (int64_t o = 0; o < outer; o++) out[o] = (float)(row_sum(x + o * n, n) * scale);
        return;
    }
    int64_t nblk = (inner + INNER_BLOCK - 1) / INNER_BLOCK;
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
    for (int64_t t = 0; t < outer * nblk; t++) {
        int64_t o = t / nblk, i0 = (t % nblk) * INNER_BLOCK;
        int64_t len = i0 + INNER_BLOCK < inner ? INNER_BLOCK : inner - i0;
        float *y = out + o * inner + i0;
        const float *xo = x + o * n * inner + i0;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) y[i] = xo[i];
        for (int64_t j = 1; j < n; j++) {
            const float *row = xo + j * inner;
#pragma omp simd
            for (int64_t i = 0; i < len; i++) y[i] += row[i];
        }
#pragma omp simd
        for (int64_t i = 0; i < len; i++) y[i] *= scale;
    }
}

void sum_backward_cpu(float *dx, const float *dout, int64_t outer, int64_t n, int64_t inner,
                      float scale) {
    int64_t total = outer * n * inner;
    if (inner == 1) {
        /* dx is outer rows of n; blocks of the flat index, each crossing rows as needed. */
        int64_t nblk = (total + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
        for (int64_t b = 0; b < nblk; b++) {
            int64_t e = b * CHUNK, e1 = e + CHUNK < total ? e + CHUNK : total;
            for (int64_t o = e / n; e < e1; o++) {
                int64_t row_end = (o + 1) * n < e1 ? (o + 1) * n : e1;
                float g = scale * dout[o];
#pragma omp simd
                for (int64_t k = e; k < row_end; k++) dx[k] += g;
                e = row_end;
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
    for (int64_t r = 0; r < outer * n; r++) {
        float *d = dx + r * inner;
        const float *g = dout + (r / n) * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) d[i] += scale * g[i];
    }
}

/* ---------------------------------------------------------------- max */

/* v beats the best so far: greater, or the first NaN (which then stays). */
static inline int beats(float v, float best) { return v > best || (v != v && best == best); }

void max_forward_cpu(float *out, int64_t *argmax, const float *x, int64_t outer, int64_t n,
                     int64_t inner) {
    int64_t total = outer * n * inner;
    if (inner == 1) {
        int64_t nchunks = (n + CHUNK - 1) / CHUNK;
        if (outer < tg_threads() && nchunks > 1 && outer * nchunks <= MAX_CHUNKS) {
            float best_v[MAX_CHUNKS];
            int64_t best_j[MAX_CHUNKS];
#pragma omp parallel for schedule(static)
            for (int64_t t = 0; t < outer * nchunks; t++) {
                int64_t o = t / nchunks, c0 = (t % nchunks) * CHUNK;
                int64_t c1 = c0 + CHUNK < n ? c0 + CHUNK : n;
                const float *row = x + o * n;
                float b = row[c0];
                int64_t bj = c0;
                for (int64_t j = c0 + 1; j < c1; j++)
                    if (beats(row[j], b)) b = row[j], bj = j;
                best_v[t] = b;
                best_j[t] = bj;
            }
            for (int64_t o = 0; o < outer; o++) {
                /* Chunks in order, strictly better only: the first arg-max wins. */
                float b = best_v[o * nchunks];
                int64_t bj = best_j[o * nchunks];
                for (int64_t c = 1; c < nchunks; c++)
                    if (beats(best_v[o * nchunks + c], b))
                        b = best_v[o * nchunks + c], bj = best_j[o * nchunks + c];
                out[o] = b;
                if (argmax) argmax[o] = bj;
            }
            return;
        }
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
        for (int64_t o = 0; o < outer; o++) {
            const float *row = x + o * n;
            float b = row[0];
            int64_t bj = 0;
            for (int64_t j = 1; j < n; j++)
                if (beats(row[j], b)) b = row[j], bj = j;
            out[o] = b;
            if (argmax) argmax[o] = bj;
        }
        return;
    }
    int64_t nblk = (inner + INNER_BLOCK - 1) / INNER_BLOCK;
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
    for (int64_t t = 0; t < outer * nblk; t++) {
        int64_t o = t / nblk, i0 = (t % nblk) * INNER_BLOCK;
        int64_t len = i0 + INNER_BLOCK < inner ? INNER_BLOCK : inner - i0;
        float *y = out + o * inner + i0;
        int64_t *am = argmax ? argmax + o * inner + i0 : NULL;
        const float *xo = x + o * n * inner + i0;
        for (int64_t i = 0; i < len; i++) y[i] = xo[i];
        if (am)
            for (int64_t i = 0; i < len; i++) am[i] = 0;
        for (int64_t j = 1; j < n; j++) {
            const float *row = xo + j * inner;
            if (am) {
                for (int64_t i = 0; i < len; i++)
                    if (beats(row[i], y[i])) y[i] = row[i], am[i] = j;
            } else {
                for (int64_t i = 0; i < len; i++)
                    if (beats(row[i], y[i])) y[i] = row[i];
            }
        }
    }
}

void max_backward_cpu(float *dx, const float *dout, const int64_t *argmax, int64_t outer,
                      int64_t n, int64_t inner) {
#pragma omp parallel for schedule(static) if (outer * inner > PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            dx[(o * n + argmax[o * inner + i]) * inner + i] += dout[o * inner + i];
}

static inline int is_max(float v, float m) { return v == m || (v != v && m != m); }

int64_t max_count_cpu(const float *x, int64_t n, float m) {
    int64_t count = 0;
#pragma omp parallel for simd reduction(+ : count) schedule(static) if (n > PAR_MIN)
    for (int64_t e = 0; e < n; e++) count += is_max(x[e], m);
    return count;
}

void max_all_backward_cpu(float *dx, const float *dout, const float *x, int64_t n, float m,
                          int64_t count) {
    float g = dout[0] / (float)count;
#pragma omp parallel for simd schedule(static) if (n > PAR_MIN)
    for (int64_t e = 0; e < n; e++) dx[e] += is_max(x[e], m) ? g : 0.0f;
}

/* ---------------------------------------------------------------- var */

void var_forward_cpu(float *out, float *mean, const float *x, int64_t outer, int64_t n,
                     int64_t inner, int correction) {
    sum_forward_cpu(mean, x, outer, n, inner, 1.0f / (float)n);
    float denom = (float)(n - correction);
    int64_t total = outer * n * inner;
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
    for (int64_t t = 0; t < outer * inner; t++) {
        int64_t o = t / inner, i = t % inner;
        const float *xo = x + o * n * inner + i;
        float mu = mean[t];
        double acc = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double d = (double)xo[j * inner] - mu;
            acc += d * d;
        }
        out[t] = (float)(acc / denom);
    }
}

void var_backward_cpu(float *dx, const float *dout, const float *x, const float *mean,
                      int64_t outer, int64_t n, int64_t inner, int correction) {
    float two_over = 2.0f / (float)(n - correction);
    int64_t total = outer * n * inner;
#pragma omp parallel for schedule(static) if (total > PAR_MIN)
    for (int64_t r = 0; r < outer * n; r++) {
        int64_t o = r / n;
        float *d = dx + r * inner;
        const float *xr = x + r * inner, *g = dout + o * inner, *mu = mean + o * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) d[i] += g[i] * two_over * (xr[i] - mu[i]);
    }
}

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
