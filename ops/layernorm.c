/*
 * ops/layernorm.c — layer normalisation over the last k dims (nn.LayerNorm).
 *
 * FORWARD. x is viewed as rows of M values (M = product of the normalised dims). Per row:
 *   mu = (1/M) sum_j x_j        var = (1/M) sum_j (x_j - mu)^2   (biased, as PyTorch)
 *   r  = 1 / sqrt(var + eps)    xhat_j = (x_j - mu) r
 *   y_j = xhat_j w_j + b_j      (w, b of the normalised dims' shape; without them w = 1,
 *                                b = 0)
 * mu and r (one float each per row) are saved; x is the op's input and stays alive.
 *
 * BACKWARD. Let g_j = dL/dy_j w_j (the gradient reaching xhat). Then
 *   dL/db_j += sum over rows of dL/dy_j         dL/dw_j += sum over rows of dL/dy_j xhat_j
 * and for x, by the chain rule through mu and r (d mu/dx_k = 1/M,
 * dr/dx_k = -r^3 (x_k - mu) / M, the sum of (x_j - mu) being 0):
 *   d xhat_j / dx_k = r ([j = k] - 1/M) - (x_j - mu) r^3 (x_k - mu) / M
 *                   = (r / M) (M [j = k] - 1 - xhat_j xhat_k)
 *   dL/dx_k = sum_j g_j d xhat_j/dx_k = r (g_k - mean_j(g_j) - xhat_k mean_j(g_j xhat_j))
 * Two row sums, then one fused multiply-add pass: the same shape of work as the forward.
 *
 * Kernels. Rows are the parallel work (a row of a transformer, a few hundred floats,
 * stays in L1 over its sweeps). dweight and dbias sum over rows: each of LN_CHUNKS fixed
 * row ranges accumulates its own partial sums in the same sweep that writes its rows' dx
 * (dy and x are read from memory once), and the partials are added in a fixed order at
 * the end — the result does not depend on the thread count.
 */
#include "layernorm.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Row ranges for the dweight/dbias partial sums. */
#define LN_CHUNKS 64

static void ln_row_stats(const float *x, int64_t M, float eps, float *mean, float *rstd) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < M; j++) s += x[j];
    float mu = s / (float)M, v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < M; j++) v += (x[j] - mu) * (x[j] - mu);
    *mean = mu;
    *rstd = 1.0f / sqrtf(v / (float)M + eps);
}

/* Both passes run on tg_parallel_range (core/pool.c): a row, or a fixed range of rows with
 * its own partial sums, is computed the same whoever runs it. */
#define LN_SERIAL 32768
#define LN_CHUNK 8192 /* elements per forward chunk, about */

typedef struct ln_job {
    float *y, *mean, *rstd, *dx, *dweight, *dbias, *partial;
    const float *x, *dy, *weight, *bias, *cmean, *crstd;
    int64_t rows, M, chunks;
    float eps;
} ln_job;

static void ln_forward_rows(void *arg, int64_t r0, int64_t r1) {
    const ln_job *j = arg;
    const int64_t M = j->M;
    const float *weight = j->weight, *bias = j->bias;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = j->x + r * M;
        float *yr = j->y + r * M;
        float mu, rs;
        ln_row_stats(xr, M, j->eps, &mu, &rs);
        j->mean[r] = mu;
        j->rstd[r] = rs;
        if (weight && bias) {
#pragma omp simd
            for (int64_t c = 0; c < M; c++) yr[c] = (xr[c] - mu) * rs * weight[c] + bias[c];
        } else if (weight) {
#pragma omp simd
            for (int64_t c = 0; c < M; c++) yr[c] = (xr[c] - mu) * rs * weight[c];
        } else if (bias) {
#pragma omp simd
            for (int64_t c = 0; c < M; c++) yr[c] = (xr[c] - mu) * rs + bias[c];
        } else {
#pragma omp simd
            for (int64_t c = 0; c < M; c++) yr[c] = (xr[c] - mu) * rs;
        }
    }
}

void layernorm_forward_cpu(float *y, float *mean, float *rstd, const float *x,
                           const float *weight, const float *bias, int64_t rows, int64_t M,
                           float eps) {
    ln_job j = {.y = y, .mean = mean, .rstd = rstd, .x = x, .weight = weight, .bias = bias,
                .rows = rows, .M = M, .eps = eps};
    tg_parallel_items(rows, (double)M, LN_SERIAL, LN_CHUNK, ln_forward_rows, &j);
}

static int64_t ln_chunks(int64_t rows) { return rows < LN_CHUNKS ? rows : LN_CHUNKS; }

int64_t layernorm_partials(int64_t rows, int64_t M) { return 2 * ln_chunks(rows) * M; }

/* One row's backward: dx (when wanted) and, into pw/pb (when not NULL), this row's
 * dweight/dbias terms. Two sweeps over a row that stays in L1: the row sums, then
 * everything else. */
static void ln_backward_row(float *dx, float *pw, float *pb, const float *dy, const float *x,
                            float mu, float rs, const float *weight, int64_t M) {
    float a = 0.0f, b = 0.0f;
    if (dx) {
        float sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t j = 0; j < M; j++) {
            float g = weight ? dy[j] * weight[j] : dy[j];
            sg += g;
            sgx += g * (x[j] - mu) * rs;
        }
        a = sg / (float)M;
        b = sgx / (float)M;
    }
#pragma omp simd
    for (int64_t j = 0; j < M; j++) {
        float xhat = (x[j] - mu) * rs;
        if (dx) {
            float g = weight ? dy[j] * weight[j] : dy[j];
            dx[j] += rs * (g - a - xhat * b);
        }
        if (pw) pw[j] += dy[j] * xhat;
        if (pb) pb[j] += dy[j];
    }
}

/* Chunks [c0, c1) of the backward: each its rows' dx and its own partial sums. */
static void ln_backward_chunks(void *arg, int64_t c0, int64_t c1) {
    const ln_job *j = arg;
    const int64_t M = j->M, rows = j->rows, chunks = j->chunks;
    const bool params = j->dweight || j->dbias;
    for (int64_t c = c0; c < c1; c++) {
        float *pw = NULL, *pb = NULL;
        if (params) {
            pw = j->dweight ? j->partial + 2 * c * M : NULL;
            pb = j->dbias ? j->partial + (2 * c + 1) * M : NULL;
            memset(j->partial + 2 * c * M, 0, 2 * (size_t)M * sizeof(float));
        }
        for (int64_t r = c * rows / chunks; r < (c + 1) * rows / chunks; r++)
            ln_backward_row(j->dx ? j->dx + r * M : NULL, pw, pb, j->dy + r * M, j->x + r * M,
                            j->cmean[r], j->crstd[r], j->weight, M);
    }
}

/* Rows are cut into `chunks` fixed ranges; each range accumulates its own dweight/dbias
 * partial sums (while computing its rows' dx in the same sweep), added in range order at
 * the end: one pass over dy and x, and a result independent of the thread count. */
void layernorm_backward_cpu(float *dx, float *dweight, float *dbias, float *partial,
                            const float *dy, const float *x, const float *mean,
                            const float *rstd, const float *weight, int64_t rows, int64_t M) {
    bool params = dweight || dbias;
    int64_t chunks = params ? ln_chunks(rows) : rows;
    ln_job j = {.dx = dx, .dweight = dweight, .dbias = dbias, .partial = partial, .dy = dy,
                .x = x, .cmean = mean, .crstd = rstd, .weight = weight, .rows = rows, .M = M,
                .chunks = chunks};
    tg_parallel_items(chunks, (double)rows / (double)chunks * (double)M, LN_SERIAL, LN_CHUNK,
                      ln_backward_chunks, &j);
    if (!params) return;
    for (int64_t c = 0; c < chunks; c++) {
        const float *pw = partial + 2 * c * M, *pb = pw + M;
        if (dweight) {
#pragma omp simd
            for (int64_t k = 0; k < M; k++) dweight[k] += pw[k];
        }
        if (dbias) {
#pragma omp simd
            for (int64_t k = 0; k < M; k++) dbias[k] += pb[k];
        }
    }
}

/* ---------------------------------------------------------------- the op */

typedef struct layernorm_params {
    int64_t rows, M;
    float eps;
    int normalized_ndim;
} layernorm_params;

/* inputs: x, weight or NULL, bias or NULL; saved: mean, rstd (rows). */
static tg_status layernorm_forward(tg_ctx *ctx, tg_record *rec) {
    const layernorm_params *p = TG_PARAMS(rec, layernorm_params);
    tg_tensor *mean = tg_record_save(ctx, rec, 0, tg_shape1(p->rows));
    tg_tensor *rstd = tg_record_save(ctx, rec, 1, tg_shape1(p->rows));
    if (!mean || !rstd) return tg_error();
    const tg_tensor *w = rec->inputs[1], *b = rec->inputs[2];
#ifdef TG_HAVE_CUDA
    if (ctx->device == TG_DEVICE_CUDA)
        return layernorm_forward_cuda(rec->out->data, mean->data, rstd->data,
                                      rec->inputs[0]->data, w ? w->data : NULL,
                                      b ? b->data : NULL, p->rows, p->M, p->eps);
#endif
    layernorm_forward_cpu(rec->out->data, mean->data, rstd->data, rec->inputs[0]->data,
                          w ? w->data : NULL, b ? b->data : NULL, p->rows, p->M, p->eps);
    return TG_OK;
}

static tg_status layernorm_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                    const float *dout) {
    const layernorm_params *p = TG_PARAMS(rec, layernorm_params);
    const tg_tensor *w = rec->inputs[1];
    float *partial = NULL;
    if (dinputs[1] || dinputs[2]) {
        partial = tg_ctx_scratch(ctx, (size_t)layernorm_partials(p->rows, p->M) * sizeof(float));
        if (!partial) return tg_error();
    }
    layernorm_backward_cpu(dinputs[0], dinputs[1], dinputs[2], partial, dout,
                           rec->inputs[0]->data, rec->saved[0]->data, rec->saved[1]->data,
                           w ? w->data : NULL, p->rows, p->M);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_layernorm_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                         const float *dout) {
    (void)ctx;
    const layernorm_params *p = TG_PARAMS(rec, layernorm_params);
    const tg_tensor *w = rec->inputs[1];
    return layernorm_backward_cuda(dinputs[0], dinputs[1], dinputs[2], dout,
                                   rec->inputs[0]->data, rec->saved[0]->data,
                                   rec->saved[1]->data, w ? w->data : NULL, p->rows, p->M);
}
#endif

static void layernorm_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                           double *bwd_flops, double *bwd_bytes) {
    const layernorm_params *p = TG_PARAMS(rec, layernorm_params);
    double n = (double)rec->out->numel, m = (double)p->M;
    bool affine = rec->inputs[1] || rec->inputs[2];
    *fwd_flops = 7 * n;                        /* sum; centre, square, sum; normalise, affine */
    *fwd_bytes = 8 * n + (affine ? 8 * m : 0); /* read x, write y (+ weight, bias) */
    *bwd_flops = 12 * n;                       /* row sums, dx pass, dweight/dbias sums */
    *bwd_bytes = 16 * n + (affine ? 16 * m : 0); /* read dy, x, dx; write dx */
}

static void layernorm_explain(const tg_record *rec, char *buf, size_t size) {
    const layernorm_params *p = TG_PARAMS(rec, layernorm_params);
    snprintf(buf, size, "layer_norm over the last %d dim(s) (%lld values per row, %lld rows): "
             "dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy%s%s%s",
             p->normalized_ndim, (long long)p->M, (long long)p->rows,
             rec->inputs[1] ? " * weight" : "", rec->inputs[1] ? "; dweight += sum_rows dy * xhat"
                                                               : "",
             rec->inputs[2] ? "; dbias += sum_rows dy" : "");
}

static const tg_op layernorm_op = {
    .name = "layer_norm",
    .forward = {[TG_DEVICE_CPU] = layernorm_forward, TG_CUDA_ENTRY(layernorm_forward)},
    .backward = {[TG_DEVICE_CPU] = layernorm_backward, TG_CUDA_ENTRY(cuda_layernorm_backward)},
    .cost = layernorm_cost,
    .explain = layernorm_explain,
};

static bool check_affine(const char *arg, const tg_tensor *t, tg_shape want, tg_shape xs) {
    if (!t || tg_shape_equal(t->shape, want)) return true;
    char s1[80], s2[80], s3[80];
    tg_fail(TG_ERR_SHAPE, "tg_layer_norm: argument '%s' has shape %s; expected %s, the last "
            "normalized_ndim dims of x %s; hint: pass NULL for no affine transform", arg,
            tg_shape_str(t->shape, s1, sizeof s1), tg_shape_str(want, s2, sizeof s2),
            tg_shape_str(xs, s3, sizeof s3));
    return false;
}

tg_tensor *tg_layer_norm(tg_ctx *ctx, tg_tensor *x, int normalized_ndim, tg_tensor *weight,
                         tg_tensor *bias, float eps) {
    const char *op = "tg_layer_norm";
    if (tg_check_not_null(op, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(op, "x", x, -1)) return NULL;
    char s[80];
    int nd = x->shape.ndim;
    if (normalized_ndim < 1 || normalized_ndim > nd) {
        tg_fail(TG_ERR_ARG, "%s: argument 'normalized_ndim' = %d but x has shape %s (%d "
                "dims); hint: 1 normalises the last dim (a transformer's features), up to %d",
                op, normalized_ndim, tg_shape_str(x->shape, s, sizeof s), nd, nd);
        return NULL;
    }
    if (!(eps >= 0.0f) || isinf(eps)) {
        tg_fail(TG_ERR_ARG, "%s: argument 'eps' = %g must be finite and >= 0; hint: "
                "PyTorch's default is 1e-5", op, (double)eps);
        return NULL;
    }
    tg_shape want = {.ndim = normalized_ndim};
    for (int k = 0; k < normalized_ndim; k++) want.dim[k] = x->shape.dim[nd - normalized_ndim + k];
    if (!check_affine("weight", weight, want, x->shape) ||
        !check_affine("bias", bias, want, x->shape))
        return NULL;
    layernorm_params p = {.M = tg_shape_numel(want), .eps = eps,
                          .normalized_ndim = normalized_ndim};
    p.rows = x->numel / p.M;
    tg_tensor *inputs[3] = {x, weight, bias};
    return tg_op_apply(ctx, &layernorm_op, inputs, 3, x->shape, &p, sizeof p, NULL);
}
