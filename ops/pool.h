/*
 * ops/pool.h — CPU kernels of ops/pool.c (callable from tests/benchmarks).
 * Layout NCHW, contiguous; a "plane" is one (n, c) image of H x W values, and the kernels
 * treat x as (planes, H, W) with planes = N * C.
 */
#ifndef TG_OPS_POOL_H
#define TG_OPS_POOL_H

#include <stdbool.h>
#include <stdint.h>

/* The geometry of a 2-D pooling window sweep (also the op's saved params). Output
 * OH = (H + 2 pad_h - kernel_h) / stride_h + 1 (floor), OW likewise; the window of output
 * (oh, ow) covers rows oh stride_h - pad_h .. + kernel_h - 1 (and columns likewise), of
 * which only those inside the image are read. */
typedef struct pool2d_geom {
    int64_t planes, H, W, OH, OW;
    int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
} pool2d_geom;

/* y[p] = mean of x[p] over H x W.  y (planes) written; x (planes, H, W) read. */
void global_avg_pool_forward_cpu(float *y, const float *x, int64_t planes, int64_t HW);
/* dx[p, i] += dy[p] / HW.  dx (planes, H, W) accumulated, or written when fresh (the
 * tape's tg_grad_fresh: the buffer is uninitialised); dy (planes) read. */
void global_avg_pool_backward_cpu(float *dx, const float *dy, int64_t planes, int64_t HW,
                                  bool fresh);

/* y = the max over each window (padding counts as -inf); argmax = its position
 * h * W + w within the plane, the first maximum in row-major order on ties (PyTorch).
 * y, argmax (planes, OH, OW) written; x (planes, H, W) read. */
void max_pool2d_forward_cpu(float *y, int32_t *argmax, const float *x, const pool2d_geom *g);
/* dx[p, argmax[p, o]] += dy[p, o].
 * dx (planes, H, W) accumulated, or zeroed first when fresh; dy, argmax (planes, OH, OW)
 * read. */
void max_pool2d_backward_cpu(float *dx, const float *dy, const int32_t *argmax,
                             const pool2d_geom *g, bool fresh);

/* y = the sum over each window's in-image values / (kernel_h kernel_w): padding counts as
 * zeros (count_include_pad = True). y (planes, OH, OW) written; x (planes, H, W) read. */
void avg_pool2d_forward_cpu(float *y, const float *x, const pool2d_geom *g);
/* dx[window's in-image values] += dy / (kernel_h kernel_w).
 * dx (planes, H, W) accumulated, or zeroed first when fresh; dy (planes, OH, OW) read. */
void avg_pool2d_backward_cpu(float *dx, const float *dy, const pool2d_geom *g, bool fresh);

#endif
