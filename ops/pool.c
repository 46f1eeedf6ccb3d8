/*
 * ops/pool.c — pooling: global average pool, 2-D max pool, 2-D average pool
 * (PyTorch's adaptive_avg_pool2d(x, 1), F.max_pool2d and F.avg_pool2d with their
 * defaults: dilation 1, ceil_mode = False, count_include_pad = True).
 *
 * Layouts: x (N, C, H, W) contiguous; each (n, c) plane is pooled on its own.
 *
 * Global average pool: y[n, c] = (1 / HW) sum_{h, w} x[n, c, h, w], shape (N, C, 1, 1).
 *   Backward: every input of the plane contributed with weight 1/HW, so
 *   dx[n, c, h, w] += dy[n, c] / HW.
 *
 * 2-D pooling windows: output (oh, ow) covers rows oh sh - ph .. oh sh - ph + kh - 1 and
 * columns ow sw - pw .. + kw - 1 of the zero-padded (avg) or -inf-padded (max) image;
 *   OH = floor((H + 2 ph - kh) / sh) + 1,  OW likewise,
 * with PyTorch's rules: ph <= kh / 2 (so every window holds at least one real pixel) and
 * OH, OW >= 1. Stride 0 in the options means stride = kernel, PyTorch's default.
 *
 * Max pool: y = max over the window's real pixels (padding is -inf, never chosen).
 *   Backward: y depends on the argmax pixel only (locally y = x[argmax], a selection),
 *   so dx[argmax] += dy and every other pixel gets nothing. Ties go to the first
 *   maximum in row-major order, as PyTorch's CPU kernel (it replaces the running max
 *   only on a strictly larger value, or on NaN). The forward saves the argmax of every
 *   output (int32, its offset h W + w in the plane), so the backward is one scatter and
 *   x need not be searched again. Overlapping windows (stride < kernel) may pick the
 *   same pixel: the scatter adds, as the chain rule sums over outputs.
 *   The common 2 x 2 stride-2 unpadded window has its own loop, the same rule written
 *   branch-free so that it vectorises along the row.
 *
 * Average pool: y = (1 / (kh kw)) sum of the window's real pixels; padded pixels count as
 * zeros in the divisor (count_include_pad = True). PyTorch divides by the window's size
 * clipped to the PADDED image; in floor mode the last window ends at most at H + ph
 * (oh sh - ph + kh <= H + 2 ph - kh - ph + kh), so the clip never bites and the divisor
 * is always kh kw.
 *   Backward: y is linear in x, so dx[pixel] += dy / (kh kw) for every window covering it.
 */
#include "pool.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* Every pooling kernel runs plane by plane on tg_parallel_range (core/pool.c): a plane is
 * the same work whoever runs it, and a short pooling pass does not wait for a thread that
 * a busy machine has not scheduled yet. A chunk holds at least POOL_CHUNK_MIN elements. */
#define POOL_SERIAL 65536
#define POOL_CHUNK_MIN 16384

/* The average poolings' arguments (tg_parallel_items). */
typedef struct avg_job {
    float *y, *dx;
    const float *x, *dy;
    const pool2d_geom *g;
    int64_t planes, HW;
    bool fresh;
} avg_job;

static void global_avg_pool_forward_planes(void *arg, int64_t p0, int64_t p1) {
    const avg_job *j = arg;
    float *y = j->y;
    const float *x = j->x;
    int64_t HW = j->HW;

    for (int64_t p = p0; p < p1; p++) {
        const float *q = x + p * HW;
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < HW; i++) sum += q[i];
        y[p] = (float)(sum / (double)HW);
    }
}

void global_avg_pool_forward_cpu(float *y, const float *x, int64_t planes, int64_t HW) {
    avg_job j = {.y = y, .x = x, .HW = HW};
    tg_parallel_items(planes, (double)HW,
                      POOL_SERIAL, POOL_CHUNK_MIN, global_avg_pool_forward_planes, &j);
}

static void global_avg_pool_backward_planes(void *arg, int64_t p0, int64_t p1) {
    const avg_job *j = arg;
    float *dx = j->dx;
    const float *dy = j->dy;
    int64_t HW = j->HW;
    bool fresh = j->fresh;

    for (int64_t p = p0; p < p1; p++) {
        float g = dy[p] / (float)HW;
        float *d = dx + p * HW;
        if (fresh) {
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) d[i] = g;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) d[i] += g;
        }
    }
}

void global_avg_pool_backward_cpu(float *dx, const float *dy, int64_t planes, int64_t HW,
                                  bool fresh) {
    avg_job j = {.dx = dx, .dy = dy, .HW = HW, .fresh = fresh};
    tg_parallel_items(planes, (double)HW,
                      POOL_SERIAL, POOL_CHUNK_MIN, global_avg_pool_backward_planes, &j);
}

/* The real (in-image) index range [*lo, *hi) of the window of output o along one axis. */
static inline void window_range(int64_t o, int stride, int pad, int kernel, int64_t size,
                                int64_t *lo, int64_t *hi) {
    int64_t start = o * stride - pad, end = start + kernel;
    *lo = start > 0 ? start : 0;
    *hi = end < size ? end : size;
}

/* The common 2 x 2, stride 2, unpadded window, one plane: the same rule as the general loop
 * below (start from the window's first pixel, take a later one that is larger or NaN),
 * written branch-free so the compiler vectorises along the row. */
static void max_pool2x2_plane(float *out, int32_t *idx, const float *in, int64_t W,
                              int64_t OH, int64_t OW) {
    for (int64_t oh = 0; oh < OH; oh++) {
        const float *r0 = in + 2 * oh * W, *r1 = r0 + W;
        const int32_t base = (int32_t)(2 * oh * W);
#pragma omp simd
        for (int64_t ow = 0; ow < OW; ow++) {
            float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
            float m = a;
            int32_t k = base + (int32_t)(2 * ow);
            bool t = b > m || isnan(b);
            m = t ? b : m;
            k = t ? base + (int32_t)(2 * ow + 1) : k;
            t = c > m || isnan(c);
            m = t ? c : m;
            k = t ? base + (int32_t)(W + 2 * ow) : k;
            t = d > m || isnan(d);
            m = t ? d : m;
            k = t ? base + (int32_t)(W + 2 * ow + 1) : k;
            out[oh * OW + ow] = m;
            idx[oh * OW + ow] = k;
        }
    }
}

typedef struct max_pool_args {
    float *y, *dx;
    int32_t *argmax_out;
    const float *x, *dy;
    const int32_t *argmax;
    const pool2d_geom *g;
    bool fresh;
} max_pool_args;

static void max_pool2x2_planes(void *arg, int64_t p0, int64_t p1) {
    const max_pool_args *a = arg;
    int64_t H = a->g->H, W = a->g->W, OH = a->g->OH, OW = a->g->OW;
    for (int64_t p = p0; p < p1; p++)
        max_pool2x2_plane(a->y + p * OH * OW, a->argmax_out + p * OH * OW, a->x + p * H * W, W,
                          OH, OW);
}

static void max_pool_planes(void *arg, int64_t p0, int64_t p1) {
    const max_pool_args *a = arg;
    const pool2d_geom *g = a->g;
    int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    for (int64_t p = p0; p < p1; p++) {
        const float *in = a->x + p * H * W;
        float *out = a->y + p * OH * OW;
        int32_t *idx = a->argmax_out + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1;
            window_range(oh, g->stride_h, g->pad_h, g->kernel_h, H, &h0, &h1);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1;
                window_range(ow, g->stride_w, g->pad_w, g->kernel_w, W, &w0, &w1);
                float best = -INFINITY;
                int64_t best_i = h0 * W + w0;
                for (int64_t h = h0; h < h1; h++) {
                    for (int64_t w = w0; w < w1; w++) {
                        float v = in[h * W + w];
                        if (v > best || isnan(v)) {
                            best = v;
                            best_i = h * W + w;
                        }
                    }
                }
                out[oh * OW + ow] = best;
                idx[oh * OW + ow] = (int32_t)best_i;
            }
        }
    }
}

/* Parallel over planes: a plane's outputs scatter into that plane only. A fresh dx
 * (tg_grad_fresh) is zeroed plane by plane just before its scatter, while it is in cache,
 * instead of by the tape in a pass of its own. */
static void max_pool_backward_planes(void *arg, int64_t p0, int64_t p1) {
    const max_pool_args *a = arg;
    int64_t HW = a->g->H * a->g->W, OHW = a->g->OH * a->g->OW;
    for (int64_t p = p0; p < p1; p++) {
        float *d = a->dx + p * HW;
        if (a->fresh) memset(d, 0, (size_t)HW * sizeof(float));
        const float *gy = a->dy + p * OHW;
        const int32_t *idx = a->argmax + p * OHW;
        for (int64_t o = 0; o < OHW; o++) d[idx[o]] += gy[o];
    }
}

/* fn over every plane, `per_plane` elements touched in each: chunks of whole planes. */
static void over_planes(tg_range_fn fn, max_pool_args *a, double per_plane) {
    tg_parallel_items(a->g->planes, per_plane, POOL_SERIAL, POOL_CHUNK_MIN, fn, a);
}

void max_pool2d_forward_cpu(float *y, int32_t *argmax, const float *x, const pool2d_geom *g) {
    max_pool_args a = {.y = y, .argmax_out = argmax, .x = x, .g = g};
    int64_t window = (int64_t)g->kernel_h * g->kernel_w, OHW = g->OH * g->OW;
    if (g->kernel_h == 2 && g->kernel_w == 2 && g->stride_h == 2 && g->stride_w == 2 &&
        g->pad_h == 0 && g->pad_w == 0) {
        over_planes(max_pool2x2_planes, &a, (double)OHW);
        return;
    }
    over_planes(max_pool_planes, &a, (double)OHW * (double)window);
}

void max_pool2d_backward_cpu(float *dx, const float *dy, const int32_t *argmax,
                             const pool2d_geom *g, bool fresh) {
    max_pool_args a = {.dx = dx, .dy = dy, .argmax = argmax, .g = g, .fresh = fresh};
    over_planes(max_pool_backward_planes, &a, (double)(g->H * g->W));
}

static void avg_pool2d_forward_planes(void *arg, int64_t p0, int64_t p1) {
    const avg_job *j = arg;
    float *y = j->y;
    const float *x = j->x;
    const pool2d_geom *g = j->g;
    int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    float inv_area = 1.0f / ((float)g->kernel_h * (float)g->kernel_w); /* no int wrap */
    for (int64_t p = p0; p < p1; p++) {
        const float *in = x + p * H * W;
        float *out = y + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1;
            window_range(oh, g->stride_h, g->pad_h, g->kernel_h, H, &h0, &h1);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1;
                window_range(ow, g->stride_w, g->pad_w, g->kernel_w, W, &w0, &w1);
                float sum = 0.0f;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) sum += in[h * W + w];
                out[oh * OW + ow] = sum * inv_area;
            }
        }
    }
}

void avg_pool2d_forward_cpu(float *y, const float *x, const pool2d_geom *g) {
    avg_job j = {.y = y, .x = x, .g = g};
    tg_parallel_items(g->planes, (double)g->OH * g->OW * g->kernel_h * g->kernel_w,
                      POOL_SERIAL, POOL_CHUNK_MIN, avg_pool2d_forward_planes, &j);
}

static void avg_pool2d_backward_planes(void *arg, int64_t p0, int64_t p1) {
    const avg_job *j = arg;
    float *dx = j->dx;
    const float *dy = j->dy;
    const pool2d_geom *g = j->g;
    bool fresh = j->fresh;
    int64_t H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    float inv_area = 1.0f / ((float)g->kernel_h * (float)g->kernel_w); /* no int wrap */
    for (int64_t p = p0; p < p1; p++) {
        float *d = dx + p * H * W;
        if (fresh) memset(d, 0, (size_t)(H * W) * sizeof(float)); /* as max pool's */
        const float *gy = dy + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0, h1;
            window_range(oh, g->stride_h, g->pad_h, g->kernel_h, H, &h0, &h1);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0, w1;
                window_range(ow, g->stride_w, g->pad_w, g->kernel_w, W, &w0, &w1);
                float share = gy[oh * OW + ow] * inv_area;
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) d[h * W + w] += share;
            }
        }
    }
}

void avg_pool2d_backward_cpu(float *dx, const float *dy, const pool2d_geom *g, bool fresh) {
    avg_job j = {.dx = dx, .dy = dy, .g = g, .fresh = fresh};
    tg_parallel_items(g->planes, (double)g->OH * g->OW * g->kernel_h * g->kernel_w,
                      POOL_SERIAL, POOL_CHUNK_MIN, avg_pool2d_backward_planes, &j);
}

/* ---------------------------------------------------------------- global average pool */

static tg_status gap_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const tg_tensor *x = rec->inputs[0];
    global_avg_pool_forward_cpu(rec->out->data, x->data, rec->out->numel,
                                x->shape.dim[2] * x->shape.dim[3]);
    return TG_OK;
}

static tg_status gap_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                              const float *dout) {
    (void)ctx;
    const tg_tensor *x = rec->inputs[0];
    global_avg_pool_backward_cpu(dinputs[0], dout, rec->out->numel,
                                 x->shape.dim[2] * x->shape.dim[3], tg_grad_fresh(rec, 0));
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_gap_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const tg_tensor *x = rec->inputs[0];
    return global_avg_pool_forward_cuda(rec->out->data, x->data, rec->out->numel,
                                        x->shape.dim[2] * x->shape.dim[3]);
}

static tg_status cuda_gap_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    (void)ctx;
    const tg_tensor *x = rec->inputs[0];
    return global_avg_pool_backward_cuda(dinputs[0], dout, rec->out->numel,
                                         x->shape.dim[2] * x->shape.dim[3]);
}
#endif

static void gap_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                     double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->inputs[0]->numel;
    *fwd_flops = n;
    *fwd_bytes = 4 * n;  /* read x */
    *bwd_flops = n;
    *bwd_bytes = 8 * n;  /* read and write dx */
}

static const tg_op global_avg_pool_op = {
    .name = "global_avg_pool",
    .forward = {[TG_DEVICE_CPU] = gap_forward, TG_CUDA_ENTRY(cuda_gap_forward)},
    .backward = {[TG_DEVICE_CPU] = gap_backward, TG_CUDA_ENTRY(cuda_gap_backward)},
    .cost = gap_cost,
    .backward_doc = "dx[n, c, :, :] += dy[n, c] / (H W)",
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: a fresh dx is written whole */
};

tg_tensor *tg_global_avg_pool(tg_ctx *ctx, tg_tensor *x) {
    char s[80];
    if (tg_check_not_null("tg_global_avg_pool", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_global_avg_pool", "x", x, -1)) return NULL;
    if (x->shape.ndim != 4) {
        tg_fail(TG_ERR_SHAPE, "tg_global_avg_pool: argument 'x' has shape %s (%d dims); "
                "expected 4 dims (N, C, H, W)", tg_shape_str(x->shape, s, sizeof s),
                x->shape.ndim);
        return NULL;
    }
    if (x->shape.dim[2] < 1 || x->shape.dim[3] < 1) {
        tg_fail(TG_ERR_SHAPE, "tg_global_avg_pool: argument 'x' has shape %s: H and W must "
                "be at least 1 to average over", tg_shape_str(x->shape, s, sizeof s));
        return NULL;
    }
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, &global_avg_pool_op, inputs, 1,
                       tg_shape4(x->shape.dim[0], x->shape.dim[1], 1, 1), NULL, 0, NULL);
}

/* ---------------------------------------------------------------- max and avg pool 2d */

tg_pool2d_opts tg_pool2d_opts_make(int kernel, int stride, int padding) {
    return (tg_pool2d_opts){.kernel_h = kernel, .kernel_w = kernel, .stride_h = stride,
                            .stride_w = stride, .pad_h = padding, .pad_w = padding};
}

/* Max pool: saved argmax indices (int32, one per output) in rec->aux. */
static tg_status max_pool_forward(tg_ctx *ctx, tg_record *rec) {
    const pool2d_geom *g = TG_PARAMS(rec, pool2d_geom);
    size_t n = (size_t)(rec->out->numel ? rec->out->numel : 1);
    int32_t *argmax = tg_record_save_bytes(ctx, rec, n * sizeof(int32_t));
    if (!argmax) return tg_error();
    rec->aux = argmax;
    max_pool2d_forward_cpu(rec->out->data, argmax, rec->inputs[0]->data, g);
    return TG_OK;
}

static tg_status max_pool_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    (void)ctx;
    max_pool2d_backward_cpu(dinputs[0], dout, rec->aux, TG_PARAMS(rec, pool2d_geom),
                            tg_grad_fresh(rec, 0));
    return TG_OK;
}

static tg_status avg_pool_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    avg_pool2d_forward_cpu(rec->out->data, rec->inputs[0]->data, TG_PARAMS(rec, pool2d_geom));
    return TG_OK;
}

static tg_status avg_pool_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    (void)ctx;
    avg_pool2d_backward_cpu(dinputs[0], dout, TG_PARAMS(rec, pool2d_geom), tg_grad_fresh(rec, 0));
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_max_pool_forward(tg_ctx *ctx, tg_record *rec) {
    size_t n = (size_t)(rec->out->numel ? rec->out->numel : 1);
    int32_t *argmax = tg_record_save_bytes(ctx, rec, n * sizeof(int32_t));
    if (!argmax) return tg_error();
    rec->aux = argmax;
    return max_pool2d_forward_cuda(rec->out->data, argmax, rec->inputs[0]->data,
                                   TG_PARAMS(rec, pool2d_geom));
}

static tg_status cuda_max_pool_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                        const float *dout) {
    (void)ctx;
    return max_pool2d_backward_cuda(dinputs[0], dout, rec->aux, TG_PARAMS(rec, pool2d_geom));
}

static tg_status cuda_avg_pool_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    return avg_pool2d_forward_cuda(rec->out->data, rec->inputs[0]->data,
                                   TG_PARAMS(rec, pool2d_geom));
}

static tg_status cuda_avg_pool_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                        const float *dout) {
    (void)ctx;
    return avg_pool2d_backward_cuda(dinputs[0], dout, TG_PARAMS(rec, pool2d_geom));
}
#endif

static void pool_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                      double *bwd_flops, double *bwd_bytes) {
    const pool2d_geom *g = TG_PARAMS(rec, pool2d_geom);
    bool is_max = rec->op->forward[TG_DEVICE_CPU] == max_pool_forward;
    double out = (double)rec->out->numel, in = (double)rec->inputs[0]->numel;
    double win = (double)g->kernel_h * g->kernel_w;
    *fwd_flops = out * win;
    /* Read x (once when windows do not overlap), write y (and the int32 argmax). */
    *fwd_bytes = 4 * in + (is_max ? 8 : 4) * out;
    *bwd_flops = is_max ? out : out * win;
    *bwd_bytes = 8 * in + (is_max ? 8 : 4) * out;
}

static void pool_describe(const tg_record *rec, char *buf, size_t size) {
    const pool2d_geom *g = TG_PARAMS(rec, pool2d_geom);
    snprintf(buf, size, "%dx%d s%dx%d p%dx%d", g->kernel_h, g->kernel_w, g->stride_h,
             g->stride_w, g->pad_h, g->pad_w);
}

static const tg_op max_pool2d_op = {
    .name = "max_pool2d",
    .forward = {[TG_DEVICE_CPU] = max_pool_forward, TG_CUDA_ENTRY(cuda_max_pool_forward)},
    .backward = {[TG_DEVICE_CPU] = max_pool_backward, TG_CUDA_ENTRY(cuda_max_pool_backward)},
    .cost = pool_cost,
    .describe = pool_describe,
    .backward_doc = "dx[argmax of each window] += dy (the saved int32 argmax)",
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: a fresh dx is zeroed plane by plane */
};

static const tg_op avg_pool2d_op = {
    .name = "avg_pool2d",
    .forward = {[TG_DEVICE_CPU] = avg_pool_forward, TG_CUDA_ENTRY(cuda_avg_pool_forward)},
    .backward = {[TG_DEVICE_CPU] = avg_pool_backward, TG_CUDA_ENTRY(cuda_avg_pool_backward)},
    .cost = pool_cost,
    .describe = pool_describe,
    .backward_doc = "dx[every pixel of each window] += dy / (kernel_h kernel_w)",
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: a fresh dx is zeroed plane by plane */
};

/* Validates x and opts for op `name`; fills g. False (message recorded) when invalid. */
static bool pool_setup(const char *name, tg_ctx *ctx, tg_tensor *x, tg_pool2d_opts o,
                       pool2d_geom *g) {
    char s[80];
    if (tg_check_not_null(name, "ctx", ctx)) return false;
    if (!tg_check_tensor(name, "x", x, -1)) return false;
    if (x->shape.ndim != 4) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'x' has shape %s (%d dims); expected 4 dims "
                "(N, C, H, W)", name, tg_shape_str(x->shape, s, sizeof s), x->shape.ndim);
        return false;
    }
    if (o.kernel_h < 1 || o.kernel_w < 1) {
        tg_fail(TG_ERR_ARG, "%s: argument 'opts' has kernel %dx%d; kernel sizes must be at "
                "least 1", name, o.kernel_h, o.kernel_w);
        return false;
    }
    if (o.stride_h < 0 || o.stride_w < 0) {
        tg_fail(TG_ERR_ARG, "%s: argument 'opts' has stride %dx%d; strides must be >= 1 "
                "(0 means the kernel size)", name, o.stride_h, o.stride_w);
        return false;
    }
    if (o.stride_h == 0) o.stride_h = o.kernel_h;
    if (o.stride_w == 0) o.stride_w = o.kernel_w;
    if (o.pad_h < 0 || o.pad_w < 0 || o.pad_h > o.kernel_h / 2 || o.pad_w > o.kernel_w / 2) {
        tg_fail(TG_ERR_ARG, "%s: argument 'opts' has padding %dx%d with kernel %dx%d; "
                "padding must be >= 0 and at most half the kernel size (PyTorch's rule)",
                name, o.pad_h, o.pad_w, o.kernel_h, o.kernel_w);
        return false;
    }
    int64_t H = x->shape.dim[2], W = x->shape.dim[3];
    int64_t span_h = H + 2 * (int64_t)o.pad_h, span_w = W + 2 * (int64_t)o.pad_w;
    if (H < 1 || W < 1 || span_h < o.kernel_h || span_w < o.kernel_w) {
        int64_t oh = span_h < o.kernel_h ? 0 : (span_h - o.kernel_h) / o.stride_h + 1;
        int64_t ow = span_w < o.kernel_w ? 0 : (span_w - o.kernel_w) / o.stride_w + 1;
        tg_fail(TG_ERR_SHAPE, "%s: argument 'x' has shape %s, too small for kernel %dx%d "
                "with padding %dx%d: the output would be %lldx%lld; hint: use a larger input "
                "or a smaller kernel", name, tg_shape_str(x->shape, s, sizeof s), o.kernel_h,
                o.kernel_w, o.pad_h, o.pad_w, (long long)(H < 1 ? 0 : oh),
                (long long)(W < 1 ? 0 : ow));
        return false;
    }
    if (H * W > INT32_MAX) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'x' has shape %s: a plane of more than 2^31 - 1 "
                "pixels does not fit the int32 argmax", name,
                tg_shape_str(x->shape, s, sizeof s));
        return false;
    }
    *g = (pool2d_geom){.planes = x->shape.dim[0] * x->shape.dim[1], .H = H, .W = W,
                       .OH = (span_h - o.kernel_h) / o.stride_h + 1,
                       .OW = (span_w - o.kernel_w) / o.stride_w + 1,
                       .kernel_h = o.kernel_h, .kernel_w = o.kernel_w,
                       .stride_h = o.stride_h, .stride_w = o.stride_w,
                       .pad_h = o.pad_h, .pad_w = o.pad_w};
    return true;
}

static tg_tensor *pool_apply(const char *name, const tg_op *op, tg_ctx *ctx, tg_tensor *x,
                             tg_pool2d_opts opts) {
    pool2d_geom g;
    if (!pool_setup(name, ctx, x, opts, &g)) return NULL;
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, op, inputs, 1,
                       tg_shape4(x->shape.dim[0], x->shape.dim[1], g.OH, g.OW), &g, sizeof g,
                       NULL);
}

tg_tensor *tg_max_pool2d(tg_ctx *ctx, tg_tensor *x, tg_pool2d_opts opts) {
    return pool_apply("tg_max_pool2d", &max_pool2d_op, ctx, x, opts);
}

tg_tensor *tg_avg_pool2d(tg_ctx *ctx, tg_tensor *x, tg_pool2d_opts opts) {
    return pool_apply("tg_avg_pool2d", &avg_pool2d_op, ctx, x, opts);
}
