/*
 * cuda/conv2d.cu — 2-D (and 1-D) convolution on the GPU. ops/conv2d.c has the formula,
 * the im2col/GEMM view and the backward derivation; the path choice (dense, grouped,
 * pointwise, depthwise) is the CPU's conv2d_choose_path.
 *
 * DENSE AND GROUPED, IMAGE-BATCHED (the default whenever one image's im2col matrix fits
 * CONV_TILE_BYTES): im2col of nb images at once into one (C_in KH KW) x (nb OH OW)
 * matrix, then ONE strided-batched SGEMM per group over the nb images (or per image over
 * the groups, whichever count is smaller) writing straight into y. Backward packs dy of
 * the nb images as (C_out) x (nb OH OW), so dW += dy col^T is one GEMM per group whose
 * inner dimension is the whole batch (all groups in one batched call), dcol = W^T dy is
 * one batched call over the groups, and a GATHER (one thread per input pixel adds the
 * dcol entries that are copies of it; no atomics) turns dcol into dx. Small planes at
 * large batch (MobileNet's 7x7 at batch 32) so become a few big GEMMs instead of
 * hundreds of tiny ones.
 * DENSE AND GROUPED, COLUMN-TILED (one image's matrix is larger than the budget, or a
 * caller asks for tiles): im2col in tiles of output columns per image and group, SGEMM
 * into the tile's slice of y; backward recomputes each tile.
 *
 * POINTWISE (1x1, stride 1, pad 0): the NCHW tensor of an image is already the
 * (C_in x HW) matrix, so forward and dx are strided-batched GEMMs over the batch. dW
 * folds the batch: x and dy of nb images are packed as (C) x (nb HW) and dW += dy x^T is
 * one GEMM per group (one batched call) with inner dimension nb HW; at batch 1 (or when
 * two images do not fit the budget) one GEMM per image (beta = 1 accumulates).
 *
 * DEPTHWISE (groups = C_in, C_out = m C_in): direct shared-memory kernels with tiles
 * sized to the plane, in cuda/conv2d_depthwise.cu.
 *
 * BIAS: the forward fills y with the bias and the GEMMs add onto it (beta = 1); the
 * gradient db = sum of dy over images and pixels is tg_cuda_channel_sum (cuda/channel_reduce.cu):
 * chunked partials added in a fixed order, so it fills the GPU at any channel count.
 *
 * INDEX MATH: the element-wise kernels (bias fill, packing, im2col, the col2im gather)
 * split flat indices with divisors precomputed on the host (tg_fastdiv). im2col/col2im
 * are 32-bit throughout (the op checks that OH OW, H W and K fit an int; a batched
 * matrix is bounded by CONV_TILE_BYTES); the fill and the packing choose the 32-bit
 * path when the whole tensor fits and a 64-bit one otherwise.
 */
#include "conv2d.cuh"

#define CONV_TILE_BYTES ((int64_t)64 << 20) /* im2col tile: big GEMMs, bounded memory */
#define CONV_MIN_TILE 128                   /* columns per tile at least */

/* ---------------------------------------------------------------- geometry helpers */

static int64_t default_tile_cols(const conv2d_geom *g) {
    int64_t K = g->C_in / g->groups * g->KH * g->KW, ncols = g->OH * g->OW;
    int64_t t = CONV_TILE_BYTES / (int64_t)sizeof(float) / K;
    if (t >= ncols) return ncols;
    t -= t % CONV_MIN_TILE;
    return t < CONV_MIN_TILE ? CONV_MIN_TILE : t;
}

/* Images per batch of a batched path with per_image workspace floats each: as many as
 * fit CONV_TILE_BYTES, at most N; 0 when not even one fits. */
static int64_t images_per_batch(int64_t N, int64_t per_image) {
    int64_t nb = CONV_TILE_BYTES / (int64_t)sizeof(float) / (per_image > 0 ? per_image : 1);
    return nb < N ? nb : N;
}

/* Workspace floats per image of the image-batched dense/grouped path: the im2col matrix
 * (C_in KH KW rows), and in backward the packed dy (C_out rows), OH OW columns each. */
static int64_t gemm_batch_per_image(const conv2d_geom *g, bool backward) {
    return (g->C_in * g->KH * g->KW + (backward ? g->C_out : 0)) * g->OH * g->OW;
}

/* Images per batch of the image-batched dense/grouped path; 0: the column-tiled path
 * runs (an explicit tile_cols asks for it too). */
static int64_t gemm_batch_images(const conv2d_geom *g, int64_t tile_cols, bool backward) {
    if (tile_cols > 0) return 0;
    return images_per_batch(g->N, gemm_batch_per_image(g, backward));
}

/* Images per fold of the pointwise dW (x and dy packed, C_in + C_out rows of HW); 0:
 * one GEMM per image instead (batch 1, or two images do not fit). */
static int64_t pointwise_fold_images(const conv2d_geom *g) {
    if (g->N < 2) return 0;
    int64_t nb = images_per_batch(g->N, (g->C_in + g->C_out) * g->H * g->W);
    return nb >= 2 ? nb : 0;
}

static int64_t tile_cols_for(const conv2d_geom *g, int64_t tile_cols) {
    int64_t ncols = g->OH * g->OW;
    if (tile_cols <= 0) tile_cols = default_tile_cols(g);
    return tile_cols < ncols ? tile_cols : ncols;
}

extern "C" size_t conv2d_workspace_floats_cuda(const conv2d_geom *g, int64_t tile_cols,
                                               bool backward) {
    switch (conv2d_choose_path(g)) {
    case CONV2D_POINTWISE: {
        int64_t nb = backward ? pointwise_fold_images(g) : 0;
        return (size_t)(nb * (g->C_in + g->C_out) * g->H * g->W);
    }
    case CONV2D_DEPTHWISE: return conv2d_depthwise_workspace_floats_cuda(g, backward);
    default: {
        int64_t nb = gemm_batch_images(g, tile_cols, backward);
        if (nb > 0) return (size_t)(nb * gemm_batch_per_image(g, backward));
        return (size_t)(g->C_in / g->groups * g->KH * g->KW) * (size_t)tile_cols_for(g, tile_cols);
    }
    }
}

/* ---------------------------------------------------------------- bias */

/* out (N, C, plane)[n, o, :] = bias[o]; total = N C plane. */
template <typename I>
__global__ void conv_fill_bias_kernel(float *out, const float *bias, I total, tg_fastdiv C,
                                      tg_fastdiv plane) {
    TG_GRID_STRIDE_I(I, i, total) out[i] = bias[tg_mod(tg_div(i, plane), C)];
}

static tg_status fill_bias(float *out, const float *bias, int64_t N, int64_t C, int64_t plane) {
    int64_t total = N * C * plane;
    TG_LAUNCH_INDEXED(total, conv_fill_bias_kernel, tg_cuda_blocks(total), TG_CUDA_THREADS, 0,
                      tg_cuda_stream(), out, bias, total, tg_fastdiv_make(C),
                      tg_fastdiv_make(plane));
    TG_CUDA_LAUNCHED("conv2d_forward_cuda (bias)");
    return TG_OK;
}

static tg_status bias_backward(float *dbias, const float *dout, int64_t N, int64_t C,
                               int64_t plane) {
    return tg_cuda_channel_sum(dbias, dout, N, C, plane, "conv2d_backward_cuda (bias)");
}

/* ---------------------------------------------------------------- im2col / col2im tiles */

/* Launch shape of the tile kernels: blockIdx.y strides over rows (im2col) or channels
 * (col2im), blockIdx.x over the columns or pixels of one, so per-element index math is
 * 32-bit (the op checks that OH OW, H W and K fit in an int). */
static dim3 tile_grid(int64_t per_row, int64_t rows) {
    int64_t bx = tg_cuda_ceil_div(per_row, TG_CUDA_THREADS);
    return dim3((unsigned)(bx < 65535 ? bx : 65535), (unsigned)(rows < 65535 ? rows : 65535));
}

/* The divisors of the per-element index math, precomputed on the host (tg_fastdiv). */
typedef struct conv_divs {
    tg_fastdiv OW, W, ncols, sh, sw; /* OW, W, OH OW, stride_h, stride_w */
} conv_divs;

static conv_divs conv_divs_make(const conv2d_geom *g) {
    conv_divs d = {tg_fastdiv_make(g->OW), tg_fastdiv_make(g->W), tg_fastdiv_make(g->OH * g->OW),
                   tg_fastdiv_make(g->stride_h), tg_fastdiv_make(g->stride_w)};
    return d;
}

/* Where output (oh, ow) sits among dcol's columns: in a column tile c0 .. c0 + tc - 1
 * (-1 outside it), or in image n's columns of the batched matrix. */
struct col_at_tile {
    int OW, c0, tc;
    __device__ int64_t operator()(int oh, int ow) const {
        int q = oh * OW + ow - c0;
        return q >= 0 && q < tc ? q : -1;
    }
};
struct col_at_batch {
    int64_t first; /* n OH OW */
    int OW;
    __device__ int64_t operator()(int oh, int ow) const { return first + oh * OW + ow; }
};

/* v + the dcol entries that are copies of input pixel (ih, iw): the gather of both
 * col2im kernels. dcol points at tap 0 of the pixel's channel (the other taps' rows
 * follow ld apart); at(oh, ow) gives the column (-1: not in this matrix). */
template <typename At>
__device__ inline float col2im_gather(float v, const float *dcol, int64_t ld, int ih, int iw,
                                      const conv2d_geom &g, const conv_divs &d, At at) {
    const int KH = (int)g.KH, KW = (int)g.KW, OH = (int)g.OH, OW = (int)g.OW;
    for (int kh = 0; kh < KH; kh++) {
        int th = ih + g.pad_h - kh * g.dil_h; /* = oh stride_h */
        if (th < 0) continue;
        int oh = (int)tg_div((uint32_t)th, d.sh);
        if (oh * g.stride_h != th || oh >= OH) continue;
        for (int kw = 0; kw < KW; kw++) {
            int tw = iw + g.pad_w - kw * g.dil_w;
            if (tw < 0) continue;
            int ow = (int)tg_div((uint32_t)tw, d.sw);
            if (ow * g.stride_w != tw || ow >= OW) continue;
            int64_t q = at(oh, ow);
            if (q >= 0) v += dcol[(int64_t)(kh * KW + kw) * ld + q];
        }
    }
    return v;
}

/* col (K x tc), K = Cg KH KW: columns c0 .. c0+tc-1 of the im2col matrix of x (Cg, H, W). */
__global__ void im2col_tile_kernel(float *col, const float *x, int K, conv2d_geom g, int c0,
                                   int tc, conv_divs d) {
    const int KH = (int)g.KH, KW = (int)g.KW, H = (int)g.H, W = (int)g.W, OW = (int)g.OW;
    for (int k = blockIdx.y; k < K; k += gridDim.y) { /* per row: plain division */
        int c = k / (KH * KW), kh = k % (KH * KW) / KW, kw = k % KW;
        const float *xc = x + (int64_t)c * H * W;
        float *row = col + (int64_t)k * tc;
        /* 64-bit loop counter: j + stride must not overflow near INT_MAX columns. */
        for (int64_t jj = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; jj < tc;
             jj += (int64_t)gridDim.x * blockDim.x) {
            int j = (int)jj, q = c0 + j, oh = (int)tg_div((uint32_t)q, d.OW), ow = q - oh * OW;
            int ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
            int iw = ow * g.stride_w - g.pad_w + kw * g.dil_w;
            bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            row[j] = inside ? xc[(int64_t)ih * W + iw] : 0.0f;
        }
    }
}

/* dx (Cg, H, W) += the entries of dcol (K x tc, columns c0 ..) that are copies of each
 * pixel; rows ih0 .. ih0 + nrows - 1 are the only ones the tile reaches. */
__global__ void col2im_tile_kernel(float *dx, const float *dcol, int Cg, conv2d_geom g, int c0,
                                   int tc, int ih0, int nrows, conv_divs d) {
    const int H = (int)g.H, W = (int)g.W, OW = (int)g.OW, KK = (int)(g.KH * g.KW);
    const col_at_tile at = {OW, c0, tc};
    for (int c = blockIdx.y; c < Cg; c += gridDim.y) {
        for (int64_t ii = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
             ii < (int64_t)nrows * W; ii += (int64_t)gridDim.x * blockDim.x) {
            int i = (int)ii, r = (int)tg_div((uint32_t)i, d.W), ih = ih0 + r, iw = i - r * W;
            float *px = dx + ((int64_t)c * H + ih) * W + iw;
            *px = col2im_gather(*px, dcol + (int64_t)c * KK * tc, tc, ih, iw, g, d, at);
        }
    }
}

static tg_status im2col_tile(float *col, const float *x, int64_t Cg, const conv2d_geom *g,
                             int64_t c0, int64_t tc) {
    int64_t K = Cg * g->KH * g->KW;
    im2col_tile_kernel<<<tile_grid(tc, K), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        col, x, (int)K, *g, (int)c0, (int)tc, conv_divs_make(g));
    TG_CUDA_LAUNCHED("conv2d im2col");
    return TG_OK;
}

static tg_status col2im_tile(float *dx, const float *dcol, int64_t Cg, const conv2d_geom *g,
                             int64_t c0, int64_t tc) {
    int64_t oh_first = c0 / g->OW, oh_last = (c0 + tc - 1) / g->OW;
    int64_t lo = oh_first * g->stride_h - g->pad_h;
    int64_t hi = oh_last * g->stride_h - g->pad_h + (g->KH - 1) * g->dil_h + 1;
    if (lo < 0) lo = 0;
    if (hi > g->H) hi = g->H;
    if (lo >= hi) return TG_OK;
    col2im_tile_kernel<<<tile_grid((hi - lo) * g->W, Cg), TG_CUDA_THREADS, 0,
                         tg_cuda_stream()>>>(dx, dcol, (int)Cg, *g, (int)c0, (int)tc, (int)lo,
                                             (int)(hi - lo), conv_divs_make(g));
    TG_CUDA_LAUNCHED("conv2d col2im");
    return TG_OK;
}


/* ---------------------------------------------------------------- image-batched im2col */

/* THE BATCHED LAYOUT: col is (C_in KH KW) x ld, ld = nb OH OW. Row (c KH + kh) KW + kw,
 * column n OH OW + q holds x[n, c] at output position q's tap (kh, kw), 0 in the padding;
 * group grp's rows are grp K .. grp K + K - 1 (K = Cg KH KW). x: the nb images
 * (nb, C_in, H, W). Index math is 32-bit: ld and the rows fit an int (the workspace is
 * bounded by CONV_TILE_BYTES), and the op checks that H W fits. */
__global__ void im2col_batch_kernel(float *col, const float *x, conv2d_geom g, int rows, int ld,
                                    conv_divs d) {
    const int KH = (int)g.KH, KW = (int)g.KW, H = (int)g.H, W = (int)g.W;
    const int OW = (int)g.OW, ncols = (int)(g.OH * g.OW), C_in = (int)g.C_in;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) { /* per row: plain division */
        int c = r / (KH * KW), kh = r % (KH * KW) / KW, kw = r % KW;
        float *row = col + (int64_t)r * ld;
        for (int64_t jj = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; jj < ld;
             jj += (int64_t)gridDim.x * blockDim.x) {
            int j = (int)jj, n = (int)tg_div((uint32_t)j, d.ncols), q = j - n * ncols;
            int oh = (int)tg_div((uint32_t)q, d.OW), ow = q - oh * OW;
            int ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
            int iw = ow * g.stride_w - g.pad_w + kw * g.dil_w;
            bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            row[j] = inside ? x[(((int64_t)n * C_in + c) * H + ih) * W + iw] : 0.0f;
        }
    }
}

/* dx (nb, C_in, H, W) += the entries of the batched dcol ((C_in KH KW) x ld) that are
 * copies of each pixel: one thread per input pixel (a gather; no atomics). */
__global__ void col2im_batch_kernel(float *dx, const float *dcol, conv2d_geom g, int nb, int ld,
                                    conv_divs d) {
    const int H = (int)g.H, W = (int)g.W, OW = (int)g.OW, ncols = (int)(g.OH * g.OW);
    const int C_in = (int)g.C_in, KK = (int)(g.KH * g.KW), planes = nb * C_in;
    for (int p = blockIdx.y; p < planes; p += gridDim.y) {
        const int n = p / C_in, c = p - n * C_in; /* per plane: plain division */
        const col_at_batch at = {(int64_t)n * ncols, OW};
        for (int64_t ii = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ii < (int64_t)H * W;
             ii += (int64_t)gridDim.x * blockDim.x) {
            int i = (int)ii, ih = (int)tg_div((uint32_t)i, d.W), iw = i - ih * W;
            float *px = dx + (int64_t)p * H * W + i;
            *px = col2im_gather(*px, dcol + (int64_t)c * KK * ld, ld, ih, iw, g, d, at);
        }
    }
}

/* dst (C x nb P): dst[c, n P + q] = src[n, c, q] for src (nb, C, P), total = nb C P;
 * reads and writes run along q, so both are coalesced. */
template <typename I>
__global__ void pack_planes_kernel(float *dst, const float *src, I total, tg_fastdiv C,
                                   tg_fastdiv P, I nb) {
    TG_GRID_STRIDE_I(I, i, total) {
        I cp = tg_div(i, P), q = i - cp * (I)P.d; /* cp = n C + c */
        I n = tg_div(cp, C), c = cp - n * (I)C.d;
        dst[((int64_t)c * nb + n) * P.d + q] = src[i];
    }
}

static tg_status im2col_batch(float *col, const float *x, const conv2d_geom *g, int64_t nb) {
    int64_t rows = g->C_in * g->KH * g->KW, ld = nb * g->OH * g->OW;
    im2col_batch_kernel<<<tile_grid(ld, rows), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        col, x, *g, (int)rows, (int)ld, conv_divs_make(g));
    TG_CUDA_LAUNCHED("conv2d im2col (batched)");
    return TG_OK;
}

static tg_status col2im_batch(float *dx, const float *dcol, const conv2d_geom *g, int64_t nb) {
    int64_t ld = nb * g->OH * g->OW;
    col2im_batch_kernel<<<tile_grid(g->H * g->W, nb * g->C_in), TG_CUDA_THREADS, 0,
                          tg_cuda_stream()>>>(dx, dcol, *g, (int)nb, (int)ld, conv_divs_make(g));
    TG_CUDA_LAUNCHED("conv2d col2im (batched)");
    return TG_OK;
}

static tg_status pack_planes(float *dst, const float *src, int64_t C, int64_t P, int64_t nb) {
    int64_t total = nb * C * P;
    TG_LAUNCH_INDEXED(total, pack_planes_kernel, tg_cuda_blocks(total), TG_CUDA_THREADS, 0,
                      tg_cuda_stream(), dst, src, total, tg_fastdiv_make(C), tg_fastdiv_make(P),
                      nb);
    TG_CUDA_LAUNCHED("conv2d pack");
    return TG_OK;
}

/* ---------------------------------------------------------------- dense and grouped */

#define TRY(call)                                                                         \
    do {                                                                                  \
        tg_status st_ = (call);                                                           \
        if (st_ != TG_OK) return st_;                                                     \
    } while (0)

static tg_status gemm_forward(float *out, const float *inp, const float *weight,
                              const float *bias, const conv2d_geom *g, float *ws, int64_t tcols) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW, HW = g->H * g->W;
    float beta = 0.0f;
    if (bias) {
        TRY(fill_bias(out, bias, g->N, g->C_out, ncols));
        beta = 1.0f;
    }
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *x = inp + (n * g->C_in + grp * Cg) * HW;
            float *y = out + (n * g->C_out + grp * Cog) * ncols;
            for (int64_t c0 = 0; c0 < ncols; c0 += tcols) {
                int64_t tc = ncols - c0 < tcols ? ncols - c0 : tcols;
                TRY(im2col_tile(ws, x, Cg, g, c0, tc));
                /* y[:, c0 : c0+tc] (Cog x tc, ld OH OW) = W[grp] (Cog x K) . col (K x tc) */
                TRY(tg_cuda_sgemm(false, false, (int)Cog, (int)tc, (int)K, 1.0f,
                                  weight + grp * Cog * K, (int)K, ws, (int)tc, beta, y + c0,
                                  (int)ncols));
            }
        }
    }
    return TG_OK;
}

static tg_status gemm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const conv2d_geom *g,
                               float *ws, int64_t tcols) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW, HW = g->H * g->W;
    if (dbias) TRY(bias_backward(dbias, dout, g->N, g->C_out, ncols));
    if (!dinp && !dweight) return TG_OK;
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *x = inp + (n * g->C_in + grp * Cg) * HW;
            const float *dy = dout + (n * g->C_out + grp * Cog) * ncols;
            const float *w = weight + grp * Cog * K;
            for (int64_t c0 = 0; c0 < ncols; c0 += tcols) {
                int64_t tc = ncols - c0 < tcols ? ncols - c0 : tcols;
                if (dweight) {
                    /* dW[grp] (Cog x K) += dy tile (Cog x tc) . col^T (tc x K) */
                    TRY(im2col_tile(ws, x, Cg, g, c0, tc));
                    TRY(tg_cuda_sgemm(false, true, (int)Cog, (int)K, (int)tc, 1.0f, dy + c0,
                                      (int)ncols, ws, (int)tc, 1.0f, dweight + grp * Cog * K,
                                      (int)K));
                }
                if (dinp) {
                    /* dcol (K x tc) = W[grp]^T (K x Cog) . dy tile (Cog x tc), then the
                     * gather into dx (same stream: the buffer is reused in order). */
                    TRY(tg_cuda_sgemm(true, false, (int)K, (int)tc, (int)Cog, 1.0f, w, (int)K,
                                      dy + c0, (int)ncols, 0.0f, ws, (int)tc));
                    TRY(col2im_tile(dinp + (n * g->C_in + grp * Cg) * HW, ws, Cg, g, c0, tc));
                }
            }
        }
    }
    return TG_OK;
}


/* The image-batched forward: nb_max images per im2col matrix (workspace
 * gemm_batch_per_image(g, false) nb_max floats). */
static tg_status gemm_forward_batched(float *out, const float *inp, const float *weight,
                                      const float *bias, const conv2d_geom *g, float *ws,
                                      int64_t nb_max) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW, HW = g->H * g->W;
    float beta = 0.0f;
    if (bias) {
        TRY(fill_bias(out, bias, g->N, g->C_out, ncols));
        beta = 1.0f;
    }
    for (int64_t n0 = 0; n0 < g->N; n0 += nb_max) {
        int64_t nb = g->N - n0 < nb_max ? g->N - n0 : nb_max, ld = nb * ncols;
        TRY(im2col_batch(ws, inp + n0 * g->C_in * HW, g, nb));
        float *y = out + n0 * g->C_out * ncols;
        if (G >= nb) {
            /* per image n, all groups: y[n, grp] (Cog x ncols, ld ncols) =
             * W[grp] (Cog x K) . col[grp rows, image n columns] (K x ncols, ld ld) */
            for (int64_t n = 0; n < nb; n++)
                TRY(tg_cuda_sgemm_batched(false, false, (int)Cog, (int)ncols, (int)K, 1.0f, weight,
                                          (int)K, Cog * K, ws + n * ncols, (int)ld, K * ld, beta,
                                          y + n * g->C_out * ncols, (int)ncols, Cog * ncols,
                                          (int)G));
        } else {
            /* per group, all nb images: the same products batched over n */
            for (int64_t grp = 0; grp < G; grp++)
                TRY(tg_cuda_sgemm_batched(false, false, (int)Cog, (int)ncols, (int)K, 1.0f,
                                          weight + grp * Cog * K, (int)K, 0, ws + grp * K * ld,
                                          (int)ld, ncols, beta, y + grp * Cog * ncols, (int)ncols,
                                          g->C_out * ncols, (int)nb));
        }
    }
    return TG_OK;
}

/* The image-batched backward (workspace gemm_batch_per_image(g, true) nb_max floats: the
 * im2col / dcol matrix, then dy packed as (C_out) x (nb OH OW)). */
static tg_status gemm_backward_batched(float *dinp, float *dweight, float *dbias,
                                       const float *dout, const float *inp, const float *weight,
                                       const conv2d_geom *g, float *ws, int64_t nb_max) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW, HW = g->H * g->W;
    if (dbias) TRY(bias_backward(dbias, dout, g->N, g->C_out, ncols));
    if (!dinp && !dweight) return TG_OK;
    float *col = ws, *dyp = ws + g->C_in * g->KH * g->KW * nb_max * ncols;
    for (int64_t n0 = 0; n0 < g->N; n0 += nb_max) {
        int64_t nb = g->N - n0 < nb_max ? g->N - n0 : nb_max, ld = nb * ncols;
        TRY(pack_planes(dyp, dout + n0 * g->C_out * ncols, g->C_out, ncols, nb));
        if (dweight) {
            /* dW[grp] (Cog x K) += dy[grp] (Cog x ld) . col[grp]^T (ld x K): the nb images
             * are the GEMM's inner dimension; all groups in one batched call. */
            TRY(im2col_batch(col, inp + n0 * g->C_in * HW, g, nb));
            TRY(tg_cuda_sgemm_batched(false, true, (int)Cog, (int)K, (int)ld, 1.0f, dyp, (int)ld,
                                      Cog * ld, col, (int)ld, K * ld, 1.0f, dweight, (int)K,
                                      Cog * K, (int)G));
        }
        if (dinp) {
            /* dcol[grp] (K x ld) = W[grp]^T (K x Cog) . dy[grp] (Cog x ld), over the groups
             * (it overwrites col after the dW products, in stream order), then the gather. */
            TRY(tg_cuda_sgemm_batched(true, false, (int)K, (int)ld, (int)Cog, 1.0f, weight, (int)K,
                                      Cog * K, dyp, (int)ld, Cog * ld, 0.0f, col, (int)ld, K * ld,
                                      (int)G));
            TRY(col2im_batch(dinp + n0 * g->C_in * HW, col, g, nb));
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------- pointwise */

static tg_status pointwise_forward(float *out, const float *inp, const float *weight,
                                   const float *bias, const conv2d_geom *g) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, HW = g->H * g->W;
    float beta = 0.0f;
    if (bias) {
        TRY(fill_bias(out, bias, g->N, g->C_out, HW));
        beta = 1.0f;
    }
    for (int64_t grp = 0; grp < G; grp++) {
        /* for every image n: y[n, grp] (Cog x HW) = W[grp] (Cog x Cg) . x[n, grp] (Cg x HW) */
        TRY(tg_cuda_sgemm_batched(false, false, (int)Cog, (int)HW, (int)Cg, 1.0f,
                                  weight + grp * Cog * Cg, (int)Cg, 0, inp + grp * Cg * HW,
                                  (int)HW, g->C_in * HW, beta, out + grp * Cog * HW, (int)HW,
                                  g->C_out * HW, (int)g->N));
    }
    return TG_OK;
}

static tg_status pointwise_backward(float *dinp, float *dweight, float *dbias,
                                    const float *dout, const float *inp, const float *weight,
                                    const conv2d_geom *g, float *ws) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, HW = g->H * g->W;
    if (dbias) TRY(bias_backward(dbias, dout, g->N, g->C_out, HW));
    int64_t nb_max = dweight ? pointwise_fold_images(g) : 0;
    if (nb_max > 0) {
        /* dW[grp] (Cog x Cg) += dy[grp] (Cog x nb HW) . x[grp]^T (nb HW x Cg): the batch
         * folded into the inner dimension, all groups in one batched call. */
        float *xp = ws, *dyp = ws + g->C_in * nb_max * HW;
        for (int64_t n0 = 0; n0 < g->N; n0 += nb_max) {
            int64_t nb = g->N - n0 < nb_max ? g->N - n0 : nb_max, ld = nb * HW;
            TRY(pack_planes(xp, inp + n0 * g->C_in * HW, g->C_in, HW, nb));
            TRY(pack_planes(dyp, dout + n0 * g->C_out * HW, g->C_out, HW, nb));
            TRY(tg_cuda_sgemm_batched(false, true, (int)Cog, (int)Cg, (int)ld, 1.0f, dyp, (int)ld,
                                      Cog * ld, xp, (int)ld, Cg * ld, 1.0f, dweight, (int)Cg,
                                      Cog * Cg, (int)G));
        }
        dweight = NULL; /* done */
    }
    for (int64_t grp = 0; grp < G; grp++) {
        if (dinp) {
            /* for every n: dx[n, grp] (Cg x HW) += W[grp]^T (Cg x Cog) . dy[n, grp] */
            TRY(tg_cuda_sgemm_batched(true, false, (int)Cg, (int)HW, (int)Cog, 1.0f,
                                      weight + grp * Cog * Cg, (int)Cg, 0, dout + grp * Cog * HW,
                                      (int)HW, g->C_out * HW, 1.0f, dinp + grp * Cg * HW,
                                      (int)HW, g->C_in * HW, (int)g->N));
        }
        if (dweight) {
            /* dW[grp] (Cog x Cg) += dy[n, grp] (Cog x HW) . x[n, grp]^T, image by image
             * (every image adds into the same dW, so they cannot run as one batch). */
            for (int64_t n = 0; n < g->N; n++) {
                TRY(tg_cuda_sgemm(false, true, (int)Cog, (int)Cg, (int)HW, 1.0f,
                                  dout + (n * g->C_out + grp * Cog) * HW, (int)HW,
                                  inp + (n * g->C_in + grp * Cg) * HW, (int)HW, 1.0f,
                                  dweight + grp * Cog * Cg, (int)Cg));
            }
        }
    }
    return TG_OK;
}

/* ---------------------------------------------------------------- dispatch */

extern "C" tg_status conv2d_forward_cuda(float *out, const float *inp, const float *weight,
                                         const float *bias, const conv2d_geom *g,
                                         float *workspace, int64_t tile_cols) {
    if (g->N * g->C_out * g->OH * g->OW == 0) return TG_OK;
    switch (conv2d_choose_path(g)) {
    case CONV2D_POINTWISE: return pointwise_forward(out, inp, weight, bias, g);
    case CONV2D_DEPTHWISE: return conv2d_depthwise_forward_cuda(out, inp, weight, bias, g);
    default: {
        int64_t nb = gemm_batch_images(g, tile_cols, false);
        if (nb > 0) return gemm_forward_batched(out, inp, weight, bias, g, workspace, nb);
        return gemm_forward(out, inp, weight, bias, g, workspace, tile_cols_for(g, tile_cols));
    }
    }
}

extern "C" tg_status conv2d_backward_cuda(float *dinp, float *dweight, float *dbias,
                                          const float *dout, const float *inp,
                                          const float *weight, const conv2d_geom *g,
                                          float *workspace, int64_t tile_cols) {
    if (g->N * g->C_out * g->OH * g->OW == 0) return TG_OK;
    switch (conv2d_choose_path(g)) {
    case CONV2D_POINTWISE:
        return pointwise_backward(dinp, dweight, dbias, dout, inp, weight, g, workspace);
    case CONV2D_DEPTHWISE:
        return conv2d_depthwise_backward_cuda(dinp, dweight, dbias, dout, inp, weight, g,
                                              workspace);
    default: {
        int64_t nb = gemm_batch_images(g, tile_cols, true);
        if (nb > 0)
            return gemm_backward_batched(dinp, dweight, dbias, dout, inp, weight, g, workspace, nb);
        return gemm_backward(dinp, dweight, dbias, dout, inp, weight, g, workspace,
                             tile_cols_for(g, tile_cols));
    }
    }
}
