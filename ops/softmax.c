/*
 * ops/softmax.c — softmax and log-softmax along any dim, and the causal mask of attention.
 *
 * SOFTMAX  y_i = exp(x_i) / S,  S = sum_j exp(x_j)   (i, j along the dim; one slice)
 *   Stability: with m = max_j x_j, y_i = exp(x_i - m) / sum_j exp(x_j - m) — the same
 *   value, but every exponent is <= 0 (no overflow) and one term is exactly 1 (S >= 1, no
 *   division by 0 or log of 0).
 *   Backward. dy_i/dx_k = y_i [i = k] - y_i y_k (quotient rule), so with g = dL/dy
 *     dL/dx_k = sum_i g_i (y_i [i = k] - y_i y_k) = y_k (g_k - sum_i g_i y_i)
 *   One dot product per slice, then one multiply-add per element; only y is saved (the
 *   output itself, no extra memory).
 *
 * LOG-SOFTMAX  z_i = x_i - m - log sum_j exp(x_j - m)  (= log y_i, without computing y)
 *   Backward. dz_i/dx_k = [i = k] - y_k, so
 *     dL/dx_k = g_k - y_k sum_i g_i,   y_k = exp(z_k)   (z, the output, is saved)
 *
 * CAUSAL MASK  x (..., T, T): y[i, j] = x[i, j] for j <= i, -inf for j > i (a query i sees
 *   keys up to i). softmax then gives the masked keys weight exp(-inf) = 0. dy/dx is 1 on
 *   and below the diagonal and 0 above it: dx += dy where j <= i.
 *
 * Kernels (see softmax.h for the (outer, D, inner) view). Along the last dim (inner = 1)
 * a slice is one contiguous row: max, exp-and-sum, scale, each a unit-stride vector loop
 * over a row that stays in L1. Along an earlier dim a slice is strided by inner; a tile of
 * SM_TILE neighbouring slices is processed together, so every loop runs along inner
 * (unit-stride) with a running max and sum per slice. Rows or tiles are the parallel work.
 * The exponential is exp_nonpos below: a polynomial that vectorises (libm's expf is a
 * call), about 1 ulp on the arguments softmax produces (x - m <= 0).
 */
#include "softmax.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define SM_TILE 128

/* ---------------------------------------------------------------- dim helpers */

int tg_dim_normalize(const char *op, const char *arg, int dim, tg_shape shape) {
    int nd = shape.ndim;
    if (nd >= 1 && dim >= -nd && dim < nd) return dim < 0 ? dim + nd : dim;
    char s[80];
    if (nd == 0)
        tg_fail(TG_ERR_SHAPE, "%s: argument '%s' = %d but x is a scalar (shape ()); hint: "
                "reshape it to (1) first", op, arg, dim);
    else
        tg_fail(TG_ERR_ARG, "%s: argument '%s' = %d is out of range for x of shape %s (%d "
                "dims); hint: use 0..%d, or -%d..-1 counting from the end", op, arg, dim,
                tg_shape_str(shape, s, sizeof s), nd, nd - 1, nd);
    return -1;
}

void tg_dim_split(tg_shape shape, int dim, int64_t *outer, int64_t *D, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int k = 0; k < dim; k++) *outer *= shape.dim[k];
    for (int k = dim + 1; k < shape.ndim; k++) *inner *= shape.dim[k];
    *D = shape.dim[dim];
}

/* ---------------------------------------------------------------- the exponential */

/* exp(x) for x <= 0 (also -inf), vectorisable. x = n ln2 + r with n = round(x / ln2)
 * (rounded by adding and subtracting 1.5 * 2^23, which vectorises where floorf may not),
 * |r| <= ln2 / 2 (ln2 split in two parts so n ln2 is exact), exp(r) by Cephes' expf
 * polynomial, times 2^n built in the exponent bits (memcpy: the portable bit cast, which
 * the compiler turns into a register move). Below -87 (exp < 2^-125) it returns 0: a
 * softmax term that small is below float resolution next to the largest term (1). */
static inline float exp_nonpos(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

/* ---------------------------------------------------------------- kernels */

/* One contiguous row of D values. */
static void softmax_row(float *y, const float *x, int64_t D, bool log) {
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int64_t d = 0; d < D; d++) m = x[d] > m ? x[d] : m;
    float s = 0.0f;
    if (log) {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) s += exp_nonpos(x[d] - m);
        float c = m + logf(s);
#pragma omp simd
        for (int64_t d = 0; d < D; d++) y[d] = x[d] - c;
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) {
            float e = exp_nonpos(x[d] - m);
            y[d] = e;
            s += e;
        }
        float r = 1.0f / s;
#pragma omp simd
        for (int64_t d = 0; d < D; d++) y[d] *= r;
    }
}

/* len (<= SM_TILE) neighbouring slices; x, y point at (o, d = 0, i0); slice p's values are
 * x[d inner + p]. */
static void softmax_tile(float *y, const float *x, int64_t D, int64_t inner, int64_t len,
                         bool log) {
    float m[SM_TILE], s[SM_TILE];
    memcpy(m, x, (size_t)len * sizeof(float));
    for (int64_t d = 1; d < D; d++) {
        const float *xd = x + d * inner;
#pragma omp simd
        for (int64_t p = 0; p < len; p++) m[p] = xd[p] > m[p] ? xd[p] : m[p];
    }
    memset(s, 0, sizeof s);
    for (int64_t d = 0; d < D; d++) {
        const float *xd = x + d * inner;
        float *yd = y + d * inner;
#pragma omp simd
        for (int64_t p = 0; p < len; p++) {
            float e = exp_nonpos(xd[p] - m[p]);
            if (!log) yd[p] = e;
            s[p] += e;
        }
    }
    for (int64_t p = 0; p < len; p++) s[p] = log ? m[p] + logf(s[p]) : 1.0f / s[p];
    for (int64_t d = 0; d < D; d++) {
        const float *xd = x + d * inner;
        float *yd = y + d * inner;
        if (log) {
#pragma omp simd
            for (int64_t p = 0; p < len; p++) yd[p] = xd[p] - s[p];
        } else {
#pragma omp simd
            for (int64_t p = 0; p < len; p++) yd[p] *= s[p];
        }
    }
}

/* The loops below run on tg_parallel_range (core/pool.c): a row or tile is computed the
 * same whoever runs it, so the bits do not depend on the thread count. A chunk holds
 * about SM_CHUNK elements. */
#define SM_CHUNK 8192
#define SM_SERIAL 32768

typedef struct softmax_job {
    float *out;             /* y (forward) or dx (backward) */
    const float *a, *b;     /* forward: x; backward: dy, y */
    int64_t D, inner, blocks;
    bool log;
} softmax_job;

static void softmax_rows(void *arg, int64_t o0, int64_t o1) {
    const softmax_job *j = arg;
    const int64_t D = j->D;
    for (int64_t o = o0; o < o1; o++) softmax_row(j->out + o * D, j->a + o * D, D, j->log);
}

static void softmax_tiles(void *arg, int64_t k0, int64_t k1) {
    const softmax_job *j = arg;
    for (int64_t k = k0; k < k1; k++) {
        int64_t o = k / j->blocks, i0 = (k % j->blocks) * SM_TILE;
        int64_t len = j->inner - i0 < SM_TILE ? j->inner - i0 : SM_TILE;
        int64_t off = o * j->D * j->inner + i0;
        softmax_tile(j->out + off, j->a + off, j->D, j->inner, len, j->log);
    }
}

/* fn over `tasks` items holding `total` elements in all (tg_parallel_items). */
static void softmax_run(tg_range_fn fn, softmax_job *j, int64_t tasks, double total) {
    tg_parallel_items(tasks, tasks > 0 ? total / (double)tasks : 1, SM_SERIAL, SM_CHUNK, fn, j);
}

void softmax_forward_cpu(float *y, const float *x, int64_t outer, int64_t D, int64_t inner,
                         bool log) {
    softmax_job j = {.out = y, .a = x, .D = D, .inner = inner, .log = log};
    if (inner == 1) {
        softmax_run(softmax_rows, &j, outer, (double)outer * (double)D);
        return;
    }
    j.blocks = (inner + SM_TILE - 1) / SM_TILE;
    softmax_run(softmax_tiles, &j, outer * j.blocks, (double)outer * (double)D * (double)inner);
}

static void softmax_backward_row(float *dx, const float *dy, const float *y, int64_t D,
                                 bool log) {
    float s = 0.0f;
    if (log) {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) s += dy[d];
#pragma omp simd
        for (int64_t d = 0; d < D; d++) dx[d] += dy[d] - exp_nonpos(y[d]) * s;
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t d = 0; d < D; d++) s += dy[d] * y[d];
#pragma omp simd
        for (int64_t d = 0; d < D; d++) dx[d] += y[d] * (dy[d] - s);
    }
}

static void softmax_backward_tile(float *dx, const float *dy, const float *y, int64_t D,
                                  int64_t inner, int64_t len, bool log) {
    float s[SM_TILE];
    memset(s, 0, sizeof s);
    for (int64_t d = 0; d < D; d++) {
        const float *dyd = dy + d * inner, *yd = y + d * inner;
#pragma omp simd
        for (int64_t p = 0; p < len; p++) s[p] += log ? dyd[p] : dyd[p] * yd[p];
    }
    for (int64_t d = 0; d < D; d++) {
        const float *dyd = dy + d * inner, *yd = y + d * inner;
        float *dxd = dx + d * inner;
        if (log) {
#pragma omp simd
            for (int64_t p = 0; p < len; p++) dxd[p] += dyd[p] - exp_nonpos(yd[p]) * s[p];
        } else {
#pragma omp simd
            for (int64_t p = 0; p < len; p++) dxd[p] += yd[p] * (dyd[p] - s[p]);
        }
    }
}

static void softmax_backward_rows(void *arg, int64_t o0, int64_t o1) {
    const softmax_job *j = arg;
    const int64_t D = j->D;
    for (int64_t o = o0; o < o1; o++)
        softmax_backward_row(j->out + o * D, j->a + o * D, j->b + o * D, D, j->log);
}

static void softmax_backward_tiles(void *arg, int64_t k0, int64_t k1) {
    const softmax_job *j = arg;
    for (int64_t k = k0; k < k1; k++) {
        int64_t o = k / j->blocks, i0 = (k % j->blocks) * SM_TILE;
        int64_t len = j->inner - i0 < SM_TILE ? j->inner - i0 : SM_TILE;
        int64_t off = o * j->D * j->inner + i0;
        softmax_backward_tile(j->out + off, j->a + off, j->b + off, j->D, j->inner, len,
                              j->log);
    }
}

void softmax_backward_cpu(float *dx, const float *dy, const float *y, int64_t outer, int64_t D,
                          int64_t inner, bool log) {
    softmax_job j = {.out = dx, .a = dy, .b = y, .D = D, .inner = inner, .log = log};
    if (inner == 1) {
        softmax_run(softmax_backward_rows, &j, outer, (double)outer * (double)D);
        return;
    }
    j.blocks = (inner + SM_TILE - 1) / SM_TILE;
    softmax_run(softmax_backward_tiles, &j, outer * j.blocks,
                (double)outer * (double)D * (double)inner);
}

typedef struct mask_job {
    float *out;
    const float *in;
    int64_t T;
} mask_job;

static void causal_mask_rows(void *arg, int64_t r0, int64_t r1) {
    const mask_job *m = arg;
    const int64_t T = m->T;
    for (int64_t r = r0; r < r1; r++) {
        int64_t i = r % T;
        const float *xr = m->in + r * T;
        float *yr = m->out + r * T;
#pragma omp simd
        for (int64_t j = 0; j < T; j++) yr[j] = j <= i ? xr[j] : -INFINITY;
    }
}

static void causal_mask_backward_rows(void *arg, int64_t r0, int64_t r1) {
    const mask_job *m = arg;
    const int64_t T = m->T;
    for (int64_t r = r0; r < r1; r++) {
        int64_t i = r % T;
        const float *dyr = m->in + r * T;
        float *dxr = m->out + r * T;
#pragma omp simd
        for (int64_t j = 0; j <= i; j++) dxr[j] += dyr[j];
    }
}

void causal_mask_forward_cpu(float *y, const float *x, int64_t B, int64_t T) {
    mask_job m = {.out = y, .in = x, .T = T};
    tg_parallel_items(B * T, (double)T, 65536, SM_CHUNK, causal_mask_rows, &m);
}

void causal_mask_backward_cpu(float *dx, const float *dy, int64_t B, int64_t T) {
    mask_job m = {.out = dx, .in = dy, .T = T};
    tg_parallel_items(B * T, (double)T, 65536, SM_CHUNK, causal_mask_backward_rows, &m);
}

/* ---------------------------------------------------------------- softmax op */

typedef struct softmax_params {
    int64_t outer, D, inner;
    int dim;
    bool log;
} softmax_params;

static tg_status softmax_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const softmax_params *p = TG_PARAMS(rec, softmax_params);
    softmax_forward_cpu(rec->out->data, rec->inputs[0]->data, p->outer, p->D, p->inner, p->log);
    return TG_OK;
}

/* The output y is the record's out: it stays alive until the step ends. */
static tg_status softmax_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                  const float *dout) {
    (void)ctx;
    const softmax_params *p = TG_PARAMS(rec, softmax_params);
    softmax_backward_cpu(dinputs[0], dout, rec->out->data, p->outer, p->D, p->inner, p->log);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_softmax_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const softmax_params *p = TG_PARAMS(rec, softmax_params);
    return softmax_forward_cuda(rec->out->data, rec->inputs[0]->data, p->outer, p->D, p->inner,
                                p->log);
}

static tg_status cuda_softmax_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                       const float *dout) {
    (void)ctx;
    const softmax_params *p = TG_PARAMS(rec, softmax_params);
    return softmax_backward_cuda(dinputs[0], dout, rec->out->data, p->outer, p->D, p->inner,
                                 p->log);
}
#endif

static void softmax_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                         double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel;
    *fwd_flops = 5 * n;  /* max, subtract, exp, add, scale (an exp counted as one) */
    *fwd_bytes = 8 * n;  /* read x, write y */
    *bwd_flops = 4 * n;  /* product, add; subtract, multiply-add */
    *bwd_bytes = 16 * n; /* read y, dy, dx; write dx */
}

static void softmax_describe(const tg_record *rec, char *buf, size_t size) {
    snprintf(buf, size, "dim %d", TG_PARAMS(rec, softmax_params)->dim);
}

static void softmax_explain(const tg_record *rec, char *buf, size_t size) {
    const softmax_params *p = TG_PARAMS(rec, softmax_params);
    if (p->log)
        snprintf(buf, size, "log_softmax along dim %d (%lld values): dx += dy - exp(y) * "
                 "sum_dim(dy)", p->dim, (long long)p->D);
    else
        snprintf(buf, size, "softmax along dim %d (%lld values): dx += y * (dy - sum_dim(dy "
                 "* y))", p->dim, (long long)p->D);
}

static const tg_op softmax_op = {
    .name = "softmax",
    .forward = {[TG_DEVICE_CPU] = softmax_forward, TG_CUDA_ENTRY(cuda_softmax_forward)},
    .backward = {[TG_DEVICE_CPU] = softmax_backward, TG_CUDA_ENTRY(cuda_softmax_backward)},
    .cost = softmax_cost,
    .describe = softmax_describe,
    .explain = softmax_explain,
};

static const tg_op log_softmax_op = {
    .name = "log_softmax",
    .forward = {[TG_DEVICE_CPU] = softmax_forward, TG_CUDA_ENTRY(cuda_softmax_forward)},
    .backward = {[TG_DEVICE_CPU] = softmax_backward, TG_CUDA_ENTRY(cuda_softmax_backward)},
    .cost = softmax_cost,
    .describe = softmax_describe,
    .explain = softmax_explain,
};

static tg_tensor *softmax_apply(const char *name, tg_ctx *ctx, tg_tensor *x, int dim, bool log) {
    if (tg_check_not_null(name, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(name, "x", x, -1)) return NULL;
    int d = tg_dim_normalize(name, "dim", dim, x->shape);
    if (d < 0) return NULL;
    softmax_params p = {.dim = d, .log = log};
    tg_dim_split(x->shape, d, &p.outer, &p.D, &p.inner);
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, log ? &log_softmax_op : &softmax_op, inputs, 1, x->shape, &p,
                       sizeof p, NULL);
}

tg_tensor *tg_softmax(tg_ctx *ctx, tg_tensor *x, int dim) {
    return softmax_apply("tg_softmax", ctx, x, dim, false);
}

tg_tensor *tg_log_softmax(tg_ctx *ctx, tg_tensor *x, int dim) {
    return softmax_apply("tg_log_softmax", ctx, x, dim, true);
}

/* ---------------------------------------------------------------- causal mask op */

typedef struct causal_params {
    int64_t B, T;
} causal_params;

static tg_status causal_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const causal_params *p = TG_PARAMS(rec, causal_params);
    causal_mask_forward_cpu(rec->out->data, rec->inputs[0]->data, p->B, p->T);
    return TG_OK;
}

static tg_status causal_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    (void)ctx;
    const causal_params *p = TG_PARAMS(rec, causal_params);
    causal_mask_backward_cpu(dinputs[0], dout, p->B, p->T);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_causal_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const causal_params *p = TG_PARAMS(rec, causal_params);
    return causal_mask_forward_cuda(rec->out->data, rec->inputs[0]->data, p->B, p->T);
}

static tg_status cuda_causal_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    (void)ctx;
    const causal_params *p = TG_PARAMS(rec, causal_params);
    return causal_mask_backward_cuda(dinputs[0], dout, p->B, p->T);
}
#endif

static void causal_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                        double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel;
    *fwd_flops = 0;
    *fwd_bytes = 8 * n;           /* read x, write y */
    *bwd_flops = n / 2;           /* the lower triangle's adds */
    *bwd_bytes = 12 * n / 2;      /* read dy, dx, write dx on the lower triangle */
}

static const tg_op causal_mask_op = {
    .name = "causal_mask",
    .forward = {[TG_DEVICE_CPU] = causal_forward, TG_CUDA_ENTRY(cuda_causal_forward)},
    .backward = {[TG_DEVICE_CPU] = causal_backward, TG_CUDA_ENTRY(cuda_causal_backward)},
    .cost = causal_cost,
    .backward_doc = "causal_mask: dx += dy on and below the diagonal (j <= i); 0 above, "
                    "where the output is the constant -inf",
};

tg_tensor *tg_causal_mask(tg_ctx *ctx, tg_tensor *x) {
    if (tg_check_not_null("tg_causal_mask", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_causal_mask", "x", x, -1)) return NULL;
    int nd = x->shape.ndim;
    if (nd < 2 || x->shape.dim[nd - 1] != x->shape.dim[nd - 2]) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "tg_causal_mask: argument 'x' has shape %s; expected (..., T, "
                "T) square attention scores (2 to 4 dims); hint: scores = q @ k^T with q, k "
                "(..., T, head_dim)", tg_shape_str(x->shape, s, sizeof s));
        return NULL;
    }
    causal_params p = {.T = x->shape.dim[nd - 1]};
    p.B = x->numel / (p.T * p.T);
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, &causal_mask_op, inputs, 1, x->shape, &p, sizeof p, NULL);
}
