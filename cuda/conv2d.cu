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
 * DEPTHWISE (groups = C_in, C_out = m C_in): memory-bound (2.25 FLOP/byte for 3x3), so
 * the kernels are built around moving each byte once. A block of 256 threads (8 warps)
 * owns a tile of 32 columns x 8 rpt rows of one plane (rpt = 1, 2 or 4 rows per thread,
 * fewer for small planes); the warp runs along W, so global loads are coalesced.
 *   forward  the block stages its input window (with halo) and the plane's weights in
 *            shared memory, then every output reads its KH x KW taps from there.
 *   dx       the transpose, as a gather over an INPUT tile: the block stages the dy
 *            window that reaches it and each input pixel sums w * dy over the taps that
 *            land on it (and over the m output channels of its input channel).
 *   dW, db   two-stage reduction: each block stages its dy tile and its x window once
 *            and reduces dy * x for every tap (and dy for db) to one partial per block
 *            (warp shuffles, then the 8 warps); a second kernel adds each channel's
 *            partials in a fixed order. No per-pixel atomics, x read once per tile.
 * Shapes whose windows would not fit in shared memory (very large kernels or dilations)
 * run simple one-thread-per-element versions of the same sums.
 */
#include "common.cuh"

#define CONV_TILE_BYTES ((int64_t)64 << 20) /* im2col tile: big GEMMs, bounded memory */
#define CONV_MIN_TILE 128                   /* columns per tile at least */
#define DW_THREADS 256                      /* depthwise blocks: 8 warps */
#define DW_TILE_W 32                        /* tile width: one warp along W */
#define DW_SMEM_LIMIT (48 * 1024)           /* default dynamic shared memory per block */

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

/* Rows per thread of a depthwise tile over `rows` rows. */
static int dw_rpt(int64_t rows) { return rows >= 32 ? 4 : rows >= 16 ? 2 : 1; }

__host__ __device__ inline int64_t floor_div(int64_t a, int64_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* The depthwise tiling of a plane of rows x cols: rows per thread and tile counts. */
typedef struct dw_tiling {
    int rpt, tiles_h, tiles_w;
} dw_tiling;

static dw_tiling dw_tiles(int64_t rows, int64_t cols) {
    dw_tiling t;
    t.rpt = dw_rpt(rows);
    t.tiles_h = (int)tg_cuda_ceil_div(rows, 8 * t.rpt);
    t.tiles_w = (int)tg_cuda_ceil_div(cols, DW_TILE_W);
    return t;
}

/* Input window of an output tile of th rows (forward and dW): rows x cols floats. */
static int64_t dw_in_rows(const conv2d_geom *g, int th) {
    return (int64_t)(th - 1) * g->stride_h + (g->KH - 1) * g->dil_h + 1;
}
static int64_t dw_in_cols(const conv2d_geom *g) {
    return (int64_t)(DW_TILE_W - 1) * g->stride_w + (g->KW - 1) * g->dil_w + 1;
}
/* dy window of an input tile of th rows (dx): at most rows x cols floats. */
static int64_t dw_dy_rows(const conv2d_geom *g, int th) {
    return (th - 1 + (g->KH - 1) * g->dil_h) / g->stride_h + 2;
}
static int64_t dw_dy_cols(const conv2d_geom *g) {
    return (DW_TILE_W - 1 + (g->KW - 1) * g->dil_w) / g->stride_w + 2;
}

static size_t dw_forward_smem(const conv2d_geom *g, int th) {
    return (size_t)(dw_in_rows(g, th) * dw_in_cols(g) + g->KH * g->KW) * sizeof(float);
}
static size_t dw_dinp_smem(const conv2d_geom *g, int th) {
    return (size_t)(dw_dy_rows(g, th) * dw_dy_cols(g) + g->KH * g->KW) * sizeof(float);
}
static size_t dw_dweight_smem(const conv2d_geom *g, int th) {
    return (size_t)(th * DW_TILE_W + dw_in_rows(g, th) * dw_in_cols(g) +
                    (DW_THREADS / 32) * (g->KH * g->KW + 1)) *
           sizeof(float);
}

/* Partial sums of the tiled depthwise dW/db reduction: (C_out, N, tiles, KH KW + 1). */
static int64_t dw_partial_floats(const conv2d_geom *g) {
    dw_tiling t = dw_tiles(g->OH, g->OW);
    return g->C_out * g->N * t.tiles_h * t.tiles_w * (g->KH * g->KW + 1);
}

extern "C" size_t conv2d_workspace_floats_cuda(const conv2d_geom *g, int64_t tile_cols,
                                               bool backward) {
    switch (conv2d_choose_path(g)) {
    case CONV2D_POINTWISE: {
        int64_t nb = backward ? pointwise_fold_images(g) : 0;
        return (size_t)(nb * (g->C_in + g->C_out) * g->H * g->W);
    }
    case CONV2D_DEPTHWISE: {
        dw_tiling t = dw_tiles(g->OH, g->OW);
        bool tiled = dw_dweight_smem(g, 8 * t.rpt) <= DW_SMEM_LIMIT;
        return backward && tiled ? (size_t)dw_partial_floats(g) : 0;
    }
    default: {
        int64_t nb = gemm_batch_images(g, tile_cols, backward);
        if (nb > 0) return (size_t)(nb * gemm_batch_per_image(g, backward));
        return (size_t)(g->C_in / g->groups * g->KH * g->KW) * (size_t)tile_cols_for(g, tile_cols);
    }
    }
}

/* ---------------------------------------------------------------- bias */

/* out[n, o, :] = bias[o]. */
__global__ void conv_fill_bias_kernel(float *out, const float *bias, int64_t total, int64_t C,
                                      int64_t plane) {
    TG_GRID_STRIDE(i, total) out[i] = bias[i / plane % C];
}

/* dbias[o] += sum over n and the plane of dout[n, o]; one block per channel. */
__global__ void conv_bias_backward_kernel(float *dbias, const float *dout, int64_t N,
                                          int64_t C, int64_t plane) {
    __shared__ float scratch[32];
    int64_t o = blockIdx.x;
    float s = 0.0f;
    for (int64_t n = 0; n < N; n++) {
        const float *dy = dout + (n * C + o) * plane;
        for (int64_t i = threadIdx.x; i < plane; i += blockDim.x) s += dy[i];
    }
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) dbias[o] += s;
}

static tg_status fill_bias(float *out, const float *bias, int64_t N, int64_t C, int64_t plane) {
    int64_t total = N * C * plane;
    conv_fill_bias_kernel<<<tg_cuda_blocks(total), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        out, bias, total, C, plane);
    TG_CUDA_LAUNCHED("conv2d_forward_cuda (bias)");
    return TG_OK;
}

static tg_status bias_backward(float *dbias, const float *dout, int64_t N, int64_t C,
                               int64_t plane) {
    conv_bias_backward_kernel<<<(unsigned)C, TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dbias, dout, N, C, plane);
    TG_CUDA_LAUNCHED("conv2d_backward_cuda (bias)");
    return TG_OK;
}

/* ---------------------------------------------------------------- im2col / col2im tiles */

/* Launch shape of the tile kernels: blockIdx.y strides over rows (im2col) or channels
 * (col2im), blockIdx.x over the columns or pixels of one, so per-element index math is
 * 32-bit (the op checks that OH OW, H W and K fit in an int). */
static dim3 tile_grid(int64_t per_row, int64_t rows) {
    int64_t bx = tg_cuda_ceil_div(per_row, TG_CUDA_THREADS);
    return dim3((unsigned)(bx < 65535 ? bx : 65535), (unsigned)(rows < 65535 ? rows : 65535));
}

/* col (K x tc), K = Cg KH KW: columns c0 .. c0+tc-1 of the im2col matrix of x (Cg, H, W). */
__global__ void im2col_tile_kernel(float *col, const float *x, int K, conv2d_geom g, int c0,
                                   int tc) {
    const int KH = (int)g.KH, KW = (int)g.KW, H = (int)g.H, W = (int)g.W, OW = (int)g.OW;
    for (int k = blockIdx.y; k < K; k += gridDim.y) {
        int c = k / (KH * KW), kh = k % (KH * KW) / KW, kw = k % KW;
        const float *xc = x + (int64_t)c * H * W;
        float *row = col + (int64_t)k * tc;
        /* 64-bit loop counter: j + stride must not overflow near INT_MAX columns. */
        for (int64_t jj = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; jj < tc;
             jj += (int64_t)gridDim.x * blockDim.x) {
            int j = (int)jj, q = c0 + j, oh = q / OW, ow = q - oh * OW;
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
                                   int tc, int ih0, int nrows) {
    const int KH = (int)g.KH, KW = (int)g.KW, H = (int)g.H, W = (int)g.W;
    const int OH = (int)g.OH, OW = (int)g.OW;
    for (int c = blockIdx.y; c < Cg; c += gridDim.y) {
        for (int64_t ii = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
             ii < (int64_t)nrows * W; ii += (int64_t)gridDim.x * blockDim.x) {
            int i = (int)ii, ih = ih0 + i / W, iw = i % W;
            float *d = dx + ((int64_t)c * H + ih) * W + iw;
            float v = *d;
            for (int kh = 0; kh < KH; kh++) {
                int th = ih + g.pad_h - kh * g.dil_h; /* = oh stride_h */
                if (th < 0 || th % g.stride_h) continue;
                int oh = th / g.stride_h;
                if (oh >= OH) continue;
                for (int kw = 0; kw < KW; kw++) {
                    int tw = iw + g.pad_w - kw * g.dil_w;
                    if (tw < 0 || tw % g.stride_w) continue;
                    int ow = tw / g.stride_w, q = oh * OW + ow - c0;
                    if (ow >= OW || q < 0 || q >= tc) continue;
                    v += dcol[((int64_t)c * KH * KW + kh * KW + kw) * tc + q];
                }
            }
            *d = v;
        }
    }
}

static tg_status im2col_tile(float *col, const float *x, int64_t Cg, const conv2d_geom *g,
                             int64_t c0, int64_t tc) {
    int64_t K = Cg * g->KH * g->KW;
    im2col_tile_kernel<<<tile_grid(tc, K), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        col, x, (int)K, *g, (int)c0, (int)tc);
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
                                             (int)(hi - lo));
    TG_CUDA_LAUNCHED("conv2d col2im");
    return TG_OK;
}


/* ---------------------------------------------------------------- image-batched im2col */

/* THE BATCHED LAYOUT: col is (C_in KH KW) x ld, ld = nb OH OW. Row (c KH + kh) KW + kw,
 * column n OH OW + q holds x[n, c] at output position q's tap (kh, kw), 0 in the padding;
 * group grp's rows are grp K .. grp K + K - 1 (K = Cg KH KW). x: the nb images
 * (nb, C_in, H, W). Index math is 32-bit: ld and the rows fit an int (the workspace is
 * bounded by CONV_TILE_BYTES), and the op checks that H W fits. */
__global__ void im2col_batch_kernel(float *col, const float *x, conv2d_geom g, int rows, int ld) {
    const int KH = (int)g.KH, KW = (int)g.KW, H = (int)g.H, W = (int)g.W;
    const int OW = (int)g.OW, ncols = (int)(g.OH * g.OW), C_in = (int)g.C_in;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        int c = r / (KH * KW), kh = r % (KH * KW) / KW, kw = r % KW;
        float *row = col + (int64_t)r * ld;
        for (int64_t jj = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; jj < ld;
             jj += (int64_t)gridDim.x * blockDim.x) {
            int j = (int)jj, n = j / ncols, q = j - n * ncols, oh = q / OW, ow = q - oh * OW;
            int ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
            int iw = ow * g.stride_w - g.pad_w + kw * g.dil_w;
            bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
            row[j] = inside ? x[(((int64_t)n * C_in + c) * H + ih) * W + iw] : 0.0f;
        }
    }
}

/* dx (nb, C_in, H, W) += the entries of the batched dcol ((C_in KH KW) x ld) that are
 * copies of each pixel: one thread per input pixel (a gather; no atomics). */
__global__ void col2im_batch_kernel(float *dx, const float *dcol, conv2d_geom g, int nb, int ld) {
    const int KH = (int)g.KH, KW = (int)g.KW, H = (int)g.H, W = (int)g.W;
    const int OH = (int)g.OH, OW = (int)g.OW, ncols = OH * OW, C_in = (int)g.C_in;
    const int planes = nb * C_in;
    for (int p = blockIdx.y; p < planes; p += gridDim.y) {
        int n = p / C_in, c = p - n * C_in;
        for (int64_t ii = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ii < (int64_t)H * W;
             ii += (int64_t)gridDim.x * blockDim.x) {
            int i = (int)ii, ih = i / W, iw = i - ih * W;
            float *d = dx + (int64_t)p * H * W + i;
            float v = *d;
            for (int kh = 0; kh < KH; kh++) {
                int th = ih + g.pad_h - kh * g.dil_h; /* = oh stride_h */
                if (th < 0 || th % g.stride_h) continue;
                int oh = th / g.stride_h;
                if (oh >= OH) continue;
                for (int kw = 0; kw < KW; kw++) {
                    int tw = iw + g.pad_w - kw * g.dil_w;
                    if (tw < 0 || tw % g.stride_w) continue;
                    int ow = tw / g.stride_w;
                    if (ow >= OW) continue;
                    v += dcol[((int64_t)(c * KH + kh) * KW + kw) * ld + n * ncols + oh * OW + ow];
                }
            }
            *d = v;
        }
    }
}

/* dst (C x nb P): dst[c, n P + q] = src[n, c, q] for src (nb, C, P); reads and writes
 * run along q, so both are coalesced. */
__global__ void pack_planes_kernel(float *dst, const float *src, int64_t C, int64_t P, int64_t nb) {
    TG_GRID_STRIDE(i, nb * C * P) {
        int64_t q = i % P, c = i / P % C, n = i / (P * C);
        dst[(c * nb + n) * P + q] = src[i];
    }
}

static tg_status im2col_batch(float *col, const float *x, const conv2d_geom *g, int64_t nb) {
    int64_t rows = g->C_in * g->KH * g->KW, ld = nb * g->OH * g->OW;
    im2col_batch_kernel<<<tile_grid(ld, rows), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        col, x, *g, (int)rows, (int)ld);
    TG_CUDA_LAUNCHED("conv2d im2col (batched)");
    return TG_OK;
}

static tg_status col2im_batch(float *dx, const float *dcol, const conv2d_geom *g, int64_t nb) {
    int64_t ld = nb * g->OH * g->OW;
    col2im_batch_kernel<<<tile_grid(g->H * g->W, nb * g->C_in), TG_CUDA_THREADS, 0,
                          tg_cuda_stream()>>>(dx, dcol, *g, (int)nb, (int)ld);
    TG_CUDA_LAUNCHED("conv2d col2im (batched)");
    return TG_OK;
}

static tg_status pack_planes(float *dst, const float *src, int64_t C, int64_t P, int64_t nb) {
    pack_planes_kernel<<<tg_cuda_blocks(nb * C * P), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dst, src, C, P, nb);
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

/* ---------------------------------------------------------------- depthwise */

/* Stages rows r0 .. r0+rows-1, columns c0 .. c0+cols-1 of a (H x W) plane into dst
 * (rows x cols), zeros outside the plane. */
__device__ inline void stage_window(float *dst, const float *plane, int64_t H, int64_t W,
                                    int64_t r0, int64_t c0, int rows, int cols) {
    for (int i = threadIdx.x; i < rows * cols; i += blockDim.x) {
        int64_t r = r0 + i / cols, c = c0 + i % cols;
        dst[i] = r >= 0 && r < H && c >= 0 && c < W ? plane[r * W + c] : 0.0f;
    }
}

/* Decodes blockIdx.x into (plane, tile row, tile column). */
__device__ inline void dw_block(int tiles_h, int tiles_w, int64_t *plane, int *th, int *tw) {
    int64_t b = blockIdx.x;
    *tw = (int)(b % tiles_w);
    b /= tiles_w;
    *th = (int)(b % tiles_h);
    *plane = b / tiles_h;
}

__global__ void dw_forward_kernel(float *out, const float *inp, const float *weight,
                                  const float *bias, conv2d_geom g, dw_tiling t) {
    extern __shared__ float smem[];
    int64_t plane;
    int th, tw;
    dw_block(t.tiles_h, t.tiles_w, &plane, &th, &tw);
    const int TH = 8 * t.rpt, KK = (int)(g.KH * g.KW);
    const int in_rows = (int)((TH - 1) * g.stride_h + (g.KH - 1) * g.dil_h + 1);
    const int in_cols = (int)((DW_TILE_W - 1) * g.stride_w + (g.KW - 1) * g.dil_w + 1);
    int64_t n = plane / g.C_out, o = plane % g.C_out, c = o / (g.C_out / g.C_in);
    int64_t oh0 = (int64_t)th * TH, ow0 = (int64_t)tw * DW_TILE_W;
    float *win = smem, *w = smem + in_rows * in_cols;
    stage_window(win, inp + (n * g.C_in + c) * g.H * g.W, g.H, g.W, oh0 * g.stride_h - g.pad_h,
                 ow0 * g.stride_w - g.pad_w, in_rows, in_cols);
    for (int k = threadIdx.x; k < KK; k += blockDim.x) w[k] = weight[o * KK + k];
    __syncthreads();
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    const float b = bias ? bias[o] : 0.0f;
    for (int r = 0; r < t.rpt; r++) {
        int row = ty + 8 * r;
        int64_t oh = oh0 + row, ow = ow0 + tx;
        if (oh >= g.OH || ow >= g.OW) continue;
        float s = b;
        for (int kh = 0; kh < g.KH; kh++) {
            const float *wr = win + (row * g.stride_h + kh * g.dil_h) * in_cols + tx * g.stride_w;
            for (int kw = 0; kw < g.KW; kw++) s += w[kh * g.KW + kw] * wr[kw * g.dil_w];
        }
        out[(plane * g.OH + oh) * g.OW + ow] = s;
    }
}

__global__ void dw_dinp_kernel(float *dinp, const float *dout, const float *weight,
                               conv2d_geom g, dw_tiling t) {
    extern __shared__ float smem[];
    int64_t plane; /* n C_in + c */
    int th, tw;
    dw_block(t.tiles_h, t.tiles_w, &plane, &th, &tw);
    const int TH = 8 * t.rpt, KK = (int)(g.KH * g.KW), m = (int)(g.C_out / g.C_in);
    const int dy_rows = (int)((TH - 1 + (g.KH - 1) * g.dil_h) / g.stride_h + 2);
    const int dy_cols = (int)((DW_TILE_W - 1 + (g.KW - 1) * g.dil_w) / g.stride_w + 2);
    int64_t n = plane / g.C_in, c = plane % g.C_in;
    int64_t ih0 = (int64_t)th * TH, iw0 = (int64_t)tw * DW_TILE_W;
    /* The first output row/column whose window reaches the tile. */
    int64_t oh_base = floor_div(ih0 + g.pad_h - (g.KH - 1) * g.dil_h, g.stride_h);
    int64_t ow_base = floor_div(iw0 + g.pad_w - (g.KW - 1) * g.dil_w, g.stride_w);
    float *win = smem, *w = smem + dy_rows * dy_cols;
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < m; j++) {
        int64_t o = c * m + j;
        __syncthreads(); /* the previous channel's window is no longer read */
        stage_window(win, dout + (n * g.C_out + o) * g.OH * g.OW, g.OH, g.OW, oh_base, ow_base,
                     dy_rows, dy_cols);
        for (int k = threadIdx.x; k < KK; k += blockDim.x) w[k] = weight[o * KK + k];
        __syncthreads();
        /* 32-bit index arithmetic: plane sizes are below 2^31 (checked by the op). */
#pragma unroll
        for (int r = 0; r < 4; r++) {
            if (r >= t.rpt) break;
            int ih = (int)ih0 + ty + 8 * r, iw = (int)iw0 + tx;
            float s = 0.0f;
            for (int kh = 0; kh < (int)g.KH; kh++) {
                int hh = ih + g.pad_h - kh * g.dil_h; /* = oh stride_h */
                if (hh < 0 || hh % g.stride_h) continue;
                const float *dr = win + (hh / g.stride_h - (int)oh_base) * dy_cols;
                for (int kw = 0; kw < (int)g.KW; kw++) {
                    int ww = iw + g.pad_w - kw * g.dil_w;
                    if (ww < 0 || ww % g.stride_w) continue;
                    s += w[kh * (int)g.KW + kw] * dr[ww / g.stride_w - (int)ow_base];
                }
            }
            acc[r] += s;
        }
    }
#pragma unroll
    for (int r = 0; r < 4; r++) {
        if (r >= t.rpt) break;
        int64_t ih = ih0 + ty + 8 * r, iw = iw0 + tx;
        if (ih < g.H && iw < g.W) dinp[(plane * g.H + ih) * g.W + iw] += acc[r];
    }
}

/* Stage 1 of dW/db: partial[((o N + n) tiles + tile) (KK+1) + k] = the tile's sum of
 * dy x over tap k (k < KK) and of dy (k = KK, when with_bias). */
__global__ void dw_dweight_partial_kernel(float *partial, const float *dout, const float *inp,
                                          conv2d_geom g, dw_tiling t, bool with_bias) {
    extern __shared__ float smem[];
    int64_t plane; /* n C_out + o */
    int th, tw;
    dw_block(t.tiles_h, t.tiles_w, &plane, &th, &tw);
    const int TH = 8 * t.rpt, KK = (int)(g.KH * g.KW), nk = KK + 1;
    const int in_rows = (int)((TH - 1) * g.stride_h + (g.KH - 1) * g.dil_h + 1);
    const int in_cols = (int)((DW_TILE_W - 1) * g.stride_w + (g.KW - 1) * g.dil_w + 1);
    int64_t n = plane / g.C_out, o = plane % g.C_out, c = o / (g.C_out / g.C_in);
    int64_t oh0 = (int64_t)th * TH, ow0 = (int64_t)tw * DW_TILE_W;
    float *dyt = smem, *win = smem + TH * DW_TILE_W, *red = win + in_rows * in_cols;
    stage_window(dyt, dout + plane * g.OH * g.OW, g.OH, g.OW, oh0, ow0, TH, DW_TILE_W);
    stage_window(win, inp + (n * g.C_in + c) * g.H * g.W, g.H, g.W, oh0 * g.stride_h - g.pad_h,
                 ow0 * g.stride_w - g.pad_w, in_rows, in_cols);
    __syncthreads();
    const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
    /* dy is 0 outside the plane (staged so), so out-of-range outputs add nothing. */
    for (int k = 0; k < KK; k++) {
        int kh = k / (int)g.KW, kw = k % (int)g.KW;
        float s = 0.0f;
        for (int r = 0; r < t.rpt; r++) {
            int row = ty + 8 * r;
            s += dyt[row * DW_TILE_W + tx] *
                 win[(row * g.stride_h + kh * g.dil_h) * in_cols + tx * g.stride_w + kw * g.dil_w];
        }
        s = tg_warp_sum(s);
        if (tx == 0) red[ty * nk + k] = s;
    }
    if (with_bias) {
        float s = 0.0f;
        for (int r = 0; r < t.rpt; r++) s += dyt[(ty + 8 * r) * DW_TILE_W + tx];
        s = tg_warp_sum(s);
        if (tx == 0) red[ty * nk + KK] = s;
    }
    __syncthreads();
    int64_t tiles = (int64_t)t.tiles_h * t.tiles_w, tile = (int64_t)th * t.tiles_w + tw;
    float *dst = partial + ((o * g.N + n) * tiles + tile) * nk;
    for (int k = threadIdx.x; k < (with_bias ? nk : KK); k += blockDim.x) {
        float s = 0.0f;
        for (int wp = 0; wp < DW_THREADS / 32; wp++) s += red[wp * nk + k];
        dst[k] = s;
    }
}

/* Stage 2: one block per output channel adds its N tiles partials in a fixed order. */
__global__ void dw_dweight_finish_kernel(float *dweight, float *dbias, const float *partial,
                                         int64_t slots, int KK) {
    __shared__ float scratch[32];
    int64_t o = blockIdx.x;
    const int nk = KK + 1;
    const float *p = partial + o * slots * nk;
    for (int k = 0; k <= KK; k++) {
        float *dst = k < KK ? (dweight ? dweight + o * KK + k : NULL) : (dbias ? dbias + o : NULL);
        if (!dst) continue; /* uniform across the block */
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < slots; i += blockDim.x) s += p[i * nk + k];
        s = tg_block_sum(s, scratch);
        if (threadIdx.x == 0) *dst += s;
    }
}

/* Fallbacks for windows too large for shared memory: one thread per element. */
__global__ void dw_forward_simple_kernel(float *out, const float *inp, const float *weight,
                                         const float *bias, conv2d_geom g) {
    TG_GRID_STRIDE(i, g.N * g.C_out * g.OH * g.OW) {
        int64_t ow = i % g.OW, oh = i / g.OW % g.OH, plane = i / (g.OW * g.OH);
        int64_t n = plane / g.C_out, o = plane % g.C_out, c = o / (g.C_out / g.C_in);
        const float *x = inp + (n * g.C_in + c) * g.H * g.W;
        float s = bias ? bias[o] : 0.0f;
        for (int64_t kh = 0; kh < g.KH; kh++) {
            int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
            if (ih < 0 || ih >= g.H) continue;
            for (int64_t kw = 0; kw < g.KW; kw++) {
                int64_t iw = ow * g.stride_w - g.pad_w + kw * g.dil_w;
                if (iw < 0 || iw >= g.W) continue;
                s += weight[(o * g.KH + kh) * g.KW + kw] * x[ih * g.W + iw];
            }
        }
        out[i] = s;
    }
}

__global__ void dw_dinp_simple_kernel(float *dinp, const float *dout, const float *weight,
                                      conv2d_geom g) {
    const int64_t m = g.C_out / g.C_in;
    TG_GRID_STRIDE(i, g.N * g.C_in * g.H * g.W) {
        int64_t iw = i % g.W, ih = i / g.W % g.H, plane = i / (g.W * g.H);
        int64_t n = plane / g.C_in, c = plane % g.C_in;
        float s = 0.0f;
        for (int64_t o = c * m; o < (c + 1) * m; o++) {
            const float *dy = dout + (n * g.C_out + o) * g.OH * g.OW;
            for (int64_t kh = 0; kh < g.KH; kh++) {
                int64_t hh = ih + g.pad_h - kh * g.dil_h;
                if (hh < 0 || hh % g.stride_h || hh / g.stride_h >= g.OH) continue;
                for (int64_t kw = 0; kw < g.KW; kw++) {
                    int64_t ww = iw + g.pad_w - kw * g.dil_w;
                    if (ww < 0 || ww % g.stride_w || ww / g.stride_w >= g.OW) continue;
                    s += weight[(o * g.KH + kh) * g.KW + kw] *
                         dy[hh / g.stride_h * g.OW + ww / g.stride_w];
                }
            }
        }
        dinp[i] += s;
    }
}

/* One thread per (o, tap) or (o, bias): sums over every image and output position. */
__global__ void dw_dweight_simple_kernel(float *dweight, float *dbias, const float *dout,
                                         const float *inp, conv2d_geom g) {
    const int64_t KK = g.KH * g.KW, m = g.C_out / g.C_in;
    TG_GRID_STRIDE(i, g.C_out * (KK + 1)) {
        int64_t o = i / (KK + 1), k = i % (KK + 1), kh = k / g.KW, kw = k % g.KW;
        float *dst = k < KK ? (dweight ? dweight + o * KK + k : NULL) : (dbias ? dbias + o : NULL);
        if (!dst) continue;
        float s = 0.0f;
        for (int64_t n = 0; n < g.N; n++) {
            const float *dy = dout + (n * g.C_out + o) * g.OH * g.OW;
            const float *x = inp + (n * g.C_in + o / m) * g.H * g.W;
            for (int64_t oh = 0; oh < g.OH; oh++) {
                int64_t ih = oh * g.stride_h - g.pad_h + kh * g.dil_h;
                if (k < KK && (ih < 0 || ih >= g.H)) continue;
                for (int64_t ow = 0; ow < g.OW; ow++) {
                    if (k == KK) {
                        s += dy[oh * g.OW + ow];
                        continue;
                    }
                    int64_t iw = ow * g.stride_w - g.pad_w + kw * g.dil_w;
                    if (iw >= 0 && iw < g.W) s += dy[oh * g.OW + ow] * x[ih * g.W + iw];
                }
            }
        }
        *dst += s;
    }
}

static tg_status depthwise_forward(float *out, const float *inp, const float *weight,
                                   const float *bias, const conv2d_geom *g) {
    dw_tiling t = dw_tiles(g->OH, g->OW);
    size_t smem = dw_forward_smem(g, 8 * t.rpt);
    if (smem <= DW_SMEM_LIMIT) {
        int64_t blocks = g->N * g->C_out * t.tiles_h * t.tiles_w;
        dw_forward_kernel<<<(unsigned)blocks, DW_THREADS, smem, tg_cuda_stream()>>>(
            out, inp, weight, bias, *g, t);
    } else {
        dw_forward_simple_kernel<<<tg_cuda_blocks(g->N * g->C_out * g->OH * g->OW),
                                   TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(out, inp, weight,
                                                                           bias, *g);
    }
    TG_CUDA_LAUNCHED("conv2d_forward_cuda (depthwise)");
    return TG_OK;
}

static tg_status depthwise_backward(float *dinp, float *dweight, float *dbias,
                                    const float *dout, const float *inp, const float *weight,
                                    const conv2d_geom *g, float *ws) {
    cudaStream_t stream = tg_cuda_stream();
    if (dinp) {
        dw_tiling t = dw_tiles(g->H, g->W);
        size_t smem = dw_dinp_smem(g, 8 * t.rpt);
        if (smem <= DW_SMEM_LIMIT) {
            int64_t blocks = g->N * g->C_in * t.tiles_h * t.tiles_w;
            dw_dinp_kernel<<<(unsigned)blocks, DW_THREADS, smem, stream>>>(dinp, dout, weight,
                                                                          *g, t);
        } else {
            dw_dinp_simple_kernel<<<tg_cuda_blocks(g->N * g->C_in * g->H * g->W),
                                    TG_CUDA_THREADS, 0, stream>>>(dinp, dout, weight, *g);
        }
        TG_CUDA_LAUNCHED("conv2d_backward_cuda (depthwise dx)");
    }
    if (!dweight && !dbias) return TG_OK;
    dw_tiling t = dw_tiles(g->OH, g->OW);
    size_t smem = dw_dweight_smem(g, 8 * t.rpt);
    int KK = (int)(g->KH * g->KW);
    if (smem <= DW_SMEM_LIMIT) {
        int64_t tiles = (int64_t)t.tiles_h * t.tiles_w;
        dw_dweight_partial_kernel<<<(unsigned)(g->N * g->C_out * tiles), DW_THREADS, smem,
                                    stream>>>(ws, dout, inp, *g, t, dbias != NULL);
        TG_CUDA_LAUNCHED("conv2d_backward_cuda (depthwise dW partials)");
        dw_dweight_finish_kernel<<<(unsigned)g->C_out, TG_CUDA_THREADS, 0, stream>>>(
            dweight, dbias, ws, g->N * tiles, KK);
        TG_CUDA_LAUNCHED("conv2d_backward_cuda (depthwise dW)");
    } else {
        dw_dweight_simple_kernel<<<tg_cuda_blocks(g->C_out * (KK + 1)), TG_CUDA_THREADS, 0,
                                   stream>>>(dweight, dbias, dout, inp, *g);
        TG_CUDA_LAUNCHED("conv2d_backward_cuda (depthwise dW)");
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
    case CONV2D_DEPTHWISE: return depthwise_forward(out, inp, weight, bias, g);
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
        return depthwise_backward(dinp, dweight, dbias, dout, inp, weight, g, workspace);
    default: {
        int64_t nb = gemm_batch_images(g, tile_cols, true);
        if (nb > 0)
            return gemm_backward_batched(dinp, dweight, dbias, dout, inp, weight, g, workspace, nb);
        return gemm_backward(dinp, dweight, dbias, dout, inp, weight, g, workspace,
                             tile_cols_for(g, tile_cols));
    }
    }
}
