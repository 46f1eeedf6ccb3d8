/*
 * cuda/pool.cu — global average, max and average 2-D pooling on the GPU. ops/pool.c
 * has the formulas; the geometry struct (pool2d_geom) is ops/pool.h's.
 *
 * Forwards: one thread per output. Backwards are GATHERS, one thread per input pixel
 * visiting the outputs whose windows cover it (in the order the CPU scatters them), so
 * overlapping windows need no atomics and the sums match the CPU's order.
 * The per-element kernels are templates over the index type (common.cuh): flat indices
 * split by precomputed divisors (pool_divs), 32-bit whenever the tensor allows.
 */
#include "common.cuh"

/* One warp per plane; the warp's lanes stride over the plane and sum in double. */
__global__ void global_avg_pool_forward_kernel(float *y, const float *x, int64_t planes,
                                               int64_t HW) {
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    int lane = threadIdx.x & 31;
    for (int64_t p = warp; p < planes; p += nwarps) { /* uniform across the warp */
        const float *q = x + p * HW;
        double s = 0;
        for (int64_t i = lane; i < HW; i += 32) s += q[i];
        s = tg_warp_sum(s);
        if (lane == 0) y[p] = (float)(s / (double)HW);
    }
}

template <typename I>
__global__ void global_avg_pool_backward_kernel(float *dx, const float *dy, I total,
                                                tg_fastdiv HW) {
    TG_GRID_STRIDE_I(I, i, total) dx[i] += dy[tg_div(i, HW)] / (float)HW.d;
}

/* Divisors splitting a flat index of a (planes, rows, cols) tensor. */
typedef struct pool_divs {
    tg_fastdiv cols, rows;
} pool_divs;

/* i = (p rows + r) cols + c. */
template <typename I>
__device__ inline void pool_split(I i, const pool_divs &d, int64_t *p, int64_t *r, int64_t *c) {
    I pr = tg_div(i, d.cols), pp = tg_div(pr, d.rows);
    *c = (int64_t)(i - pr * (I)d.cols.d);
    *r = (int64_t)(pr - pp * (I)d.rows.d);
    *p = (int64_t)pp;
}

/* The in-image index range [*lo, *hi) of output o's window along one axis. */
__device__ inline void window_range(int64_t o, int stride, int pad, int kernel, int64_t size,
                                    int64_t *lo, int64_t *hi) {
    int64_t start = o * stride - pad, end = start + kernel;
    *lo = start > 0 ? start : 0;
    *hi = end < size ? end : size;
}

/* The outputs [*lo, *hi) whose windows cover input index i along one axis. */
__device__ inline void covering_range(int64_t i, int stride, int pad, int kernel,
                                      int64_t n_out, int64_t *lo, int64_t *hi) {
    int64_t first = i + pad - kernel + 1; /* o stride >= first */
    *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
    int64_t last = (i + pad) / stride + 1;
    *hi = last < n_out ? last : n_out;
}

template <typename I>
__global__ void max_pool2d_forward_kernel(float *y, int32_t *argmax, const float *x,
                                          pool2d_geom g, I total, pool_divs d) {
    TG_GRID_STRIDE_I(I, i, total) {
        int64_t p, oh, ow;
        pool_split(i, d, &p, &oh, &ow);
        const float *in = x + p * g.H * g.W;
        int64_t h0, h1, w0, w1;
        window_range(oh, g.stride_h, g.pad_h, g.kernel_h, g.H, &h0, &h1);
        window_range(ow, g.stride_w, g.pad_w, g.kernel_w, g.W, &w0, &w1);
        float best = -INFINITY;
        int64_t best_i = h0 * g.W + w0;
        for (int64_t h = h0; h < h1; h++) {
            for (int64_t w = w0; w < w1; w++) {
                float v = in[h * g.W + w];
                if (v > best || isnan(v)) {
                    best = v;
                    best_i = h * g.W + w;
                }
            }
        }
        y[i] = best;
        argmax[i] = (int32_t)best_i;
    }
}

template <typename I>
__global__ void max_pool2d_backward_kernel(float *dx, const float *dy, const int32_t *argmax,
                                           pool2d_geom g, I total, pool_divs d) {
    TG_GRID_STRIDE_I(I, i, total) {
        int64_t p, h, w;
        pool_split(i, d, &p, &h, &w);
        int64_t oh0, oh1, ow0, ow1;
        covering_range(h, g.stride_h, g.pad_h, g.kernel_h, g.OH, &oh0, &oh1);
        covering_range(w, g.stride_w, g.pad_w, g.kernel_w, g.OW, &ow0, &ow1);
        const float *gy = dy + p * g.OH * g.OW;
        const int32_t *idx = argmax + p * g.OH * g.OW;
        int32_t self = (int32_t)(h * g.W + w);
        float v = dx[i];
        for (int64_t oh = oh0; oh < oh1; oh++)
            for (int64_t ow = ow0; ow < ow1; ow++)
                if (idx[oh * g.OW + ow] == self) v += gy[oh * g.OW + ow];
        dx[i] = v;
    }
}

template <typename I>
__global__ void avg_pool2d_forward_kernel(float *y, const float *x, pool2d_geom g, I total,
                                          pool_divs d) {
    float inv_area = 1.0f / ((float)g.kernel_h * (float)g.kernel_w); /* no int wrap */
    TG_GRID_STRIDE_I(I, i, total) {
        int64_t p, oh, ow;
        pool_split(i, d, &p, &oh, &ow);
        const float *in = x + p * g.H * g.W;
        int64_t h0, h1, w0, w1;
        window_range(oh, g.stride_h, g.pad_h, g.kernel_h, g.H, &h0, &h1);
        window_range(ow, g.stride_w, g.pad_w, g.kernel_w, g.W, &w0, &w1);
        float sum = 0.0f;
        for (int64_t h = h0; h < h1; h++)
            for (int64_t w = w0; w < w1; w++) sum += in[h * g.W + w];
        y[i] = sum * inv_area;
    }
}

template <typename I>
__global__ void avg_pool2d_backward_kernel(float *dx, const float *dy, pool2d_geom g, I total,
                                           pool_divs d) {
    float inv_area = 1.0f / ((float)g.kernel_h * (float)g.kernel_w); /* no int wrap */
    TG_GRID_STRIDE_I(I, i, total) {
        int64_t p, h, w;
        pool_split(i, d, &p, &h, &w);
        int64_t oh0, oh1, ow0, ow1;
        covering_range(h, g.stride_h, g.pad_h, g.kernel_h, g.OH, &oh0, &oh1);
        covering_range(w, g.stride_w, g.pad_w, g.kernel_w, g.OW, &ow0, &ow1);
        const float *gy = dy + p * g.OH * g.OW;
        float v = dx[i];
        for (int64_t oh = oh0; oh < oh1; oh++)
            for (int64_t ow = ow0; ow < ow1; ow++) v += gy[oh * g.OW + ow] * inv_area;
        dx[i] = v;
    }
}

extern "C" tg_status global_avg_pool_forward_cuda(float *y, const float *x, int64_t planes,
                                                  int64_t HW) {
    if (planes <= 0) return TG_OK;
    global_avg_pool_forward_kernel<<<tg_cuda_blocks(planes * 32), TG_CUDA_THREADS, 0,
                                     tg_cuda_stream()>>>(y, x, planes, HW);
    TG_CUDA_LAUNCHED("global_avg_pool_forward_cuda");
    return TG_OK;
}

extern "C" tg_status global_avg_pool_backward_cuda(float *dx, const float *dy, int64_t planes,
                                                   int64_t HW) {
    if (planes * HW <= 0) return TG_OK;
    TG_LAUNCH_INDEXED(planes * HW, global_avg_pool_backward_kernel, tg_cuda_blocks(planes * HW),
                      TG_CUDA_THREADS, 0, tg_cuda_stream(), dx, dy, planes * HW,
                      tg_fastdiv_make(HW));
    TG_CUDA_LAUNCHED("global_avg_pool_backward_cuda");
    return TG_OK;
}

extern "C" tg_status max_pool2d_forward_cuda(float *y, int32_t *argmax, const float *x,
                                             const pool2d_geom *g) {
    int64_t n = g->planes * g->OH * g->OW;
    if (n <= 0) return TG_OK;
    pool_divs d = {tg_fastdiv_make(g->OW), tg_fastdiv_make(g->OH)};
    TG_LAUNCH_INDEXED(n, max_pool2d_forward_kernel, tg_cuda_blocks(n), TG_CUDA_THREADS, 0,
                      tg_cuda_stream(), y, argmax, x, *g, n, d);
    TG_CUDA_LAUNCHED("max_pool2d_forward_cuda");
    return TG_OK;
}

extern "C" tg_status max_pool2d_backward_cuda(float *dx, const float *dy,
                                              const int32_t *argmax, const pool2d_geom *g) {
    int64_t n = g->planes * g->H * g->W;
    if (n <= 0) return TG_OK;
    pool_divs d = {tg_fastdiv_make(g->W), tg_fastdiv_make(g->H)};
    TG_LAUNCH_INDEXED(n, max_pool2d_backward_kernel, tg_cuda_blocks(n), TG_CUDA_THREADS, 0,
                      tg_cuda_stream(), dx, dy, argmax, *g, n, d);
    TG_CUDA_LAUNCHED("max_pool2d_backward_cuda");
    return TG_OK;
}

extern "C" tg_status avg_pool2d_forward_cuda(float *y, const float *x, const pool2d_geom *g) {
    int64_t n = g->planes * g->OH * g->OW;
    if (n <= 0) return TG_OK;
    pool_divs d = {tg_fastdiv_make(g->OW), tg_fastdiv_make(g->OH)};
    TG_LAUNCH_INDEXED(n, avg_pool2d_forward_kernel, tg_cuda_blocks(n), TG_CUDA_THREADS, 0,
                      tg_cuda_stream(), y, x, *g, n, d);
    TG_CUDA_LAUNCHED("avg_pool2d_forward_cuda");
    return TG_OK;
}

extern "C" tg_status avg_pool2d_backward_cuda(float *dx, const float *dy,
                                              const pool2d_geom *g) {
    int64_t n = g->planes * g->H * g->W;
    if (n <= 0) return TG_OK;
    pool_divs d = {tg_fastdiv_make(g->W), tg_fastdiv_make(g->H)};
    TG_LAUNCH_INDEXED(n, avg_pool2d_backward_kernel, tg_cuda_blocks(n), TG_CUDA_THREADS, 0,
                      tg_cuda_stream(), dx, dy, *g, n, d);
    TG_CUDA_LAUNCHED("avg_pool2d_backward_cuda");
    return TG_OK;
}
