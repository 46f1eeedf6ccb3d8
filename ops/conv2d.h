/*
 * ops/conv2d.h — CPU kernels of the conv2d op (ops/conv2d_gemm.c, conv2d_depthwise.c,
 * conv2d_winograd.c; the op is ops/conv2d.c), callable from tests and benchmarks.
 *
 * Shapes (NCHW, contiguous, row-major):
 *   inp    (N, C_in, H, W)              read
 *   weight (C_out, C_in/groups, KH, KW) read
 *   bias   (C_out) or NULL              read
 *   out    (N, C_out, OH, OW)           written
 *   dout   (N, C_out, OH, OW)           read
 *   dinp, dweight, dbias                same shapes as inp, weight, bias; ACCUMULATED
 *                                       (+=); NULL skips that gradient.
 * Kernels know nothing of tensors or tapes; sizes come in a conv2d_geom.
 */
#ifndef TG_OPS_CONV2D_H
#define TG_OPS_CONV2D_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The full geometry of one convolution. OH = (H + 2 pad_h - dil_h (KH - 1) - 1) / stride_h
 * + 1, likewise OW. stride, dil, groups >= 1; pad >= 0. conv1d is H = KH = OH = 1. */
typedef struct conv2d_geom {
    int64_t N, C_in, H, W;
    int64_t C_out, KH, KW;
    int64_t OH, OW;
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} conv2d_geom;

/* The kernel a geometry runs on (DESIGN §6). */
typedef enum conv2d_path {
    CONV2D_DENSE,     /* groups 1: tiled im2col + SGEMM */
    CONV2D_GROUPED,   /* 1 < groups < C_in: per group tiled im2col + SGEMM */
    CONV2D_POINTWISE, /* 1x1, stride 1, pad 0 (any groups but depthwise): SGEMM on NCHW */
    CONV2D_DEPTHWISE, /* groups = C_in > 1 (C_out = m C_in): direct kernel */
} conv2d_path;

conv2d_path conv2d_choose_path(const conv2d_geom *g);
const char *conv2d_path_name(conv2d_path path);

/* Columns per im2col tile when tile_cols is 0: the column buffer
 * (C_in/groups * KH * KW rows x tile columns) stays within ~8 MiB. */
int64_t conv2d_default_tile_cols(const conv2d_geom *g);
/* Floats of workspace the dense/grouped kernels need for a tile of tile_cols columns
 * (0: the default tile); 0 for the pointwise and depthwise paths. */
size_t conv2d_workspace_floats(const conv2d_geom *g, int64_t tile_cols);

/* Dispatch on conv2d_choose_path. workspace: conv2d_workspace_floats(g, tile_cols) floats
 * (scratch, overwritten; may be NULL when that is 0). tile_cols 0 picks the default. */
void conv2d_forward_cpu(float *out, const float *inp, const float *weight, const float *bias,
                        const conv2d_geom *g, float *workspace, int64_t tile_cols);
/* dinp_fresh: dinp is uninitialised and is WRITTEN (tg_grad_fresh), else added to; the
 * same for every backward below. */
void conv2d_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, const conv2d_geom *g,
                         float *workspace, int64_t tile_cols, bool dinp_fresh);

/* The paths themselves (the dispatchers above call these). */
/* Dense and grouped: workspace (C_in/groups * KH * KW) * tile_cols floats, tile_cols >= 1. */
void conv2d_gemm_forward_cpu(float *out, const float *inp, const float *weight,
                             const float *bias, const conv2d_geom *g, float *workspace,
                             int64_t tile_cols);
void conv2d_gemm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const conv2d_geom *g,
                              float *workspace, int64_t tile_cols, bool dinp_fresh);
/* Pointwise: KH = KW = 1, stride 1, pad 0; no workspace. */
void conv2d_pointwise_forward_cpu(float *out, const float *inp, const float *weight,
                                  const float *bias, const conv2d_geom *g);
void conv2d_pointwise_backward_cpu(float *dinp, float *dweight, float *dbias,
                                   const float *dout, const float *inp, const float *weight,
                                   const conv2d_geom *g, bool dinp_fresh);
/* db (C) += the sums of dout (N, C, plane) over N and the plane. */
void conv2d_bias_backward_cpu(float *dbias, const float *dout, int64_t N, int64_t C,
                              int64_t plane);
/* Depthwise: groups = C_in, C_out a multiple of C_in; no workspace. */
void conv2d_depthwise_forward_cpu(float *out, const float *inp, const float *weight,
                                  const float *bias, const conv2d_geom *g);
void conv2d_depthwise_backward_cpu(float *dinp, float *dweight, float *dbias,
                                   const float *dout, const float *inp, const float *weight,
                                   const conv2d_geom *g, bool dinp_fresh);

/* Winograd F(4x4, 3x3) (ops/conv2d_winograd.c): 3x3, stride 1, dilation 1, groups 1,
 * padding 0..2 each way. Tiles of 4x4 outputs are processed tile_block at a time (rounded
 * up to 16; 0 picks the default, ~32 MiB of transformed data). workspace:
 * conv2d_winograd_workspace_floats(g, backward, tile_block) floats (scratch). The forward
 * writes out (with bias, or none); the backward ADDS into dinp (writes it when
 * dinp_fresh) and dweight (NULL skips one); the bias gradient is the caller's (a sum of
 * dout). */
bool conv2d_winograd_supported(const conv2d_geom *g);
size_t conv2d_winograd_workspace_floats(const conv2d_geom *g, bool backward,
                                         int64_t tile_block);
/* Tiles per block the forward (and dW) pass of g uses for tile_block (0: the default);
 * bench/winograd_bench.c times the 36 SGEMMs of those blocks alone. */
int64_t conv2d_winograd_block_tiles(const conv2d_geom *g, int64_t tile_block);
void conv2d_winograd_forward_cpu(float *out, const float *inp, const float *weight,
                                 const float *bias, const conv2d_geom *g, float *workspace,
                                 int64_t tile_block);
void conv2d_winograd_backward_cpu(float *dinp, float *dweight, const float *dout,
                                  const float *inp, const float *weight,
                                  const conv2d_geom *g, float *workspace, int64_t tile_block,
                                  bool dinp_fresh);

#endif
