/*
 * cuda/conv2d.cuh — what cuda/conv2d.cu (dispatch, dense, grouped, pointwise) and
 * cuda/conv2d_depthwise.cu (the depthwise path) share. Shapes as ops/conv2d.h; g is a
 * host struct; every function queues work on the library's stream.
 */
#ifndef TG_CUDA_CONV2D_CUH
#define TG_CUDA_CONV2D_CUH

#include "common.cuh"

#include <string.h>

/* Floats of workspace the depthwise path needs: the per-tile dW/db partial sums in
 * backward (0 when the shapes run the simple kernels), nothing in forward. */
size_t conv2d_depthwise_workspace_floats_cuda(const conv2d_geom *g, bool backward);
tg_status conv2d_depthwise_forward_cuda(float *out, const float *inp, const float *weight,
                                        const float *bias, const conv2d_geom *g);
/* workspace: conv2d_depthwise_workspace_floats_cuda(g, true) floats. */
tg_status conv2d_depthwise_backward_cuda(float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp,
                                         const float *weight, const conv2d_geom *g,
                                         float *workspace);

#endif /* TG_CUDA_CONV2D_CUH */
