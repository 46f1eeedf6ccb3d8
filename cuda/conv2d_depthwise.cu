/*
 * cuda/conv2d_depthwise.cu — the depthwise path of cuda/conv2d.cu (groups = C_in,
 * C_out = m C_in), the GPU side of ops/conv2d_depthwise.c. Output channel o reads only
 * input channel c = o / m (ops/conv2d.c has the formula and the derivation):
 *   y[oh,ow]   = b + sum_{kh,kw} w[kh,kw] x[sh oh - ph + kh dh, sw ow - pw + kw dw]
 *   dx[ih,iw] += sum over the (oh,ow,kh,kw) that read x[ih,iw] of w[kh,kw] dy[oh,ow]
 *   dw[kh,kw] += sum_{oh,ow} dy[oh,ow] x[ih,iw],      db += sum_{oh,ow} dy[oh,ow]
 * Memory-bound (2.25 FLOP/byte for 3x3), so the kernels are built around moving each
 * byte once.
 *
 * TILES THAT FIT THE PLANE. A tile is tw columns x th rows of one plane, worked by tpp
 * threads (whole warps): thread (tx, ty) takes column tx and rows ty, ty + TY, ... (rpt
 * rows; TY = tpp / tw thread rows, th = TY rpt). tw is the plane's width rounded up to
 * 8, 16 or 32; tpp is the fewest threads of 32, 64, 128, 256 whose TY rows cover the
 * plane (else 256 threads and rpt = 1, 2 or 4); a block works 256 / tpp tiles (of
 * different planes or of one plane). Lanes holding an output: 7x7 planes are 8x8 tiles
 * of 64 threads, 4 per block: 77% (32x8 tiles of 8 warps kept 19%); 14x14 one 16x16
 * tile: 77%; 3x3 one 8x4 warp: 28% (was 4%); a conv1d row of 100: 32x1 warps: 78%.
 *   forward  each tile stages its input window (with halo) and the plane's weights in
 *            shared memory; every output reads its KH x KW taps from there.
 *   dx       the transpose, as a gather over an INPUT tile: the tile stages the dy
 *            window that reaches it and each input pixel sums w * dy over the taps that
 *            land on it (and over the m output channels of its input channel).
 *   dW, db   two-stage reduction: each tile stages its dy tile and its x window once and
 *            reduces dy * x for every tap (and dy for db) to one partial per tile (warp
 *            shuffles, then the tile's warps in order); a second kernel, one warp per
 *            (channel, tap), adds the partials in a fixed order. No atomics, x read once.
 * Index math inside the tiles is 32-bit (the op checks that H W and OH OW fit an int);
 * window rows and stride tests divide by magic numbers (tg_fastdiv).
 * Shapes whose windows would not fit in shared memory (very large kernels or dilations)
 * run simple one-thread-per-element versions of the same sums (64-bit indices).
 */
#include "conv2d.cuh"

#define DW_THREADS 256            /* threads per block at most */
#define DW_SMEM_LIMIT (48 * 1024) /* default dynamic shared memory per block */

__host__ __device__ inline int64_t floor_div(int64_t a, int64_t b) {
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* ---------------------------------------------------------------- the tiling plan */

typedef enum dw_kind { DW_FORWARD, DW_DINP, DW_DWEIGHT } dw_kind;

/* How one kernel launch tiles its planes (built on the host, passed by value). */
typedef struct dw_plan {
    int tw, tw_log2;        /* tile width: 8, 16 or 32 columns */
    int tpp, tpp_log2;      /* threads per tile: 32 .. 256 (whole warps) */
    int ty;                 /* thread rows: tpp / tw */
    int rpt, th;            /* rows per thread (1, 2, 4) and tile height ty rpt */
    int tiles_h, tiles_w;   /* tiles per plane */
    int per_block;          /* tiles per block: blockDim.x = per_block tpp */
    int64_t tiles;          /* tiles of the launch: planes tiles_h tiles_w */
    int win_rows, win_cols; /* the window each tile stages */
    int slot_floats;        /* shared floats per tile (window + weights or dy tile) */
    size_t smem;            /* bytes per block; 0: too large, the simple kernels run */
    tg_fastdiv win_div, tw_div, sh_div, sw_div; /* win_cols, tw, stride_h, stride_w */
} dw_plan;

static int log2_of(int v) {
    int l = 0;
    while ((1 << l) < v) l++;
    return l;
}

static dw_plan dw_plan_make(const conv2d_geom *g, dw_kind kind) {
    dw_plan p;
    memset(&p, 0, sizeof p);
    const int64_t rows = kind == DW_DINP ? g->H : g->OH, cols = kind == DW_DINP ? g->W : g->OW;
    const int64_t planes = g->N * (kind == DW_DINP ? g->C_in : g->C_out), KK = g->KH * g->KW;
    p.tw = cols <= 8 ? 8 : cols <= 16 ? 16 : 32;
    p.tpp = 32;
    while (p.tpp < DW_THREADS && p.tpp / p.tw < rows) p.tpp *= 2;
    p.ty = p.tpp / p.tw;
    p.rpt = rows >= 4 * p.ty ? 4 : rows >= 2 * p.ty ? 2 : 1;
    p.th = p.ty * p.rpt;
    p.tw_log2 = log2_of(p.tw);
    p.tpp_log2 = log2_of(p.tpp);
    p.tiles_h = (int)tg_cuda_ceil_div(rows, p.th);
    p.tiles_w = (int)tg_cuda_ceil_div(cols, p.tw);
    p.tiles = planes * p.tiles_h * p.tiles_w;
    int64_t wr, wc;
    if (kind == DW_DINP) { /* the dy rows/columns whose windows reach an input tile */
        wr = (p.th - 1 + (g->KH - 1) * g->dil_h) / g->stride_h + 2;
        wc = (p.tw - 1 + (g->KW - 1) * g->dil_w) / g->stride_w + 2;
    } else { /* the input rows/columns an output tile reads */
        wr = (int64_t)(p.th - 1) * g->stride_h + (g->KH - 1) * g->dil_h + 1;
        wc = (int64_t)(p.tw - 1) * g->stride_w + (g->KW - 1) * g->dil_w + 1;
    }
    int64_t slot = wr * wc + (kind == DW_DWEIGHT ? (int64_t)p.th * p.tw : KK);
    /* dW also keeps one partial per warp and tap (and bias) for the block's reduction. */
    int64_t red = kind == DW_DWEIGHT ? (KK + 1) * (p.tpp / 32) : 0;
    p.per_block = DW_THREADS / p.tpp;
    int64_t bytes = (int64_t)p.per_block * (slot + red) * (int64_t)sizeof(float);
    while (bytes > DW_SMEM_LIMIT && p.per_block > 1) {
        p.per_block /= 2;
        bytes = (int64_t)p.per_block * (slot + red) * (int64_t)sizeof(float);
    }
    if (bytes > DW_SMEM_LIMIT) return p; /* smem 0: not tiled */
    p.win_rows = (int)wr;
    p.win_cols = (int)wc;
    p.slot_floats = (int)slot;
    p.smem = (size_t)bytes;
    p.win_div = tg_fastdiv_make(wc);
    p.tw_div = tg_fastdiv_make(p.tw);
    p.sh_div = tg_fastdiv_make(g->stride_h);
    p.sw_div = tg_fastdiv_make(g->stride_w);
    return p;
}

static unsigned dw_blocks(const dw_plan *p) {
    return (unsigned)tg_cuda_ceil_div(p->tiles, p->per_block);
}

/* Partial sums of the tiled dW/db reduction: (C_out, N, tiles per plane, KH KW + 1). */
static int64_t dw_partial_floats(const conv2d_geom *g, const dw_plan *p) {
    return g->C_out * g->N * p->tiles_h * p->tiles_w * (g->KH * g->KW + 1);
}

size_t conv2d_depthwise_workspace_floats_cuda(const conv2d_geom *g, bool backward) {
    if (!backward) return 0;
    dw_plan p = dw_plan_make(g, DW_DWEIGHT);
    return p.smem ? (size_t)dw_partial_floats(g, &p) : 0;
}

/* ---------------------------------------------------------------- device helpers */

/* Where a thread stands: its tile's slot in the block, its (tx, ty) in the tile, and the
 * tile (plane, first row r0, first column c0; `at` = its index within the plane). A
 * thread of a slot past the last tile is inactive but still reaches every barrier. */
typedef struct dw_thread {
    int slot, gt, tx, ty;
    bool active;
    int64_t plane, r0, c0, at;
} dw_thread;

__device__ inline dw_thread dw_thread_of(const dw_plan &p) {
    dw_thread t;
    t.slot = threadIdx.x >> p.tpp_log2;
    t.gt = threadIdx.x & (p.tpp - 1);
    t.tx = t.gt & (p.tw - 1);
    t.ty = t.gt >> p.tw_log2;
    int64_t tile = (int64_t)blockIdx.x * p.per_block + t.slot;
    t.active = tile < p.tiles;
    if (!t.active) tile = 0;
    int64_t per_plane = (int64_t)p.tiles_h * p.tiles_w;
    t.plane = tile / per_plane;
    t.at = tile - t.plane * per_plane;
    t.r0 = t.at / p.tiles_w * p.th;
    t.c0 = t.at % p.tiles_w * p.tw;
    return t;
}

/* The tile's tpp threads (gt = 0 .. tpp - 1) stage rows r0 .. r0 + rows - 1, columns
 * c0 .. c0 + cols - 1 (cols = cdiv.d) of a (H x W) plane into dst (rows x cols), zeros
 * outside the plane. */
__device__ inline void stage_window(float *dst, const float *plane, int64_t H, int64_t W,
                                    int64_t r0, int64_t c0, int rows, tg_fastdiv cdiv, int gt,
                                    int tpp) {
    const int cols = (int)cdiv.d;
    for (int i = gt; i < rows * cols; i += tpp) {
        int r = (int)tg_div((uint32_t)i, cdiv), c = i - r * cols;
        int64_t rr = r0 + r, cc = c0 + c;
        dst[i] = rr >= 0 && rr < H && cc >= 0 && cc < W ? plane[rr * W + cc] : 0.0f;
    }
}

/* ---------------------------------------------------------------- tiled kernels */

/* out (N, C_out, OH, OW) = the taps of inp (N, C_in, H, W) with weight (C_out, 1, KH, KW)
 * plus bias (C_out) or nothing; tiles over the output planes. */
__global__ void dw_forward_kernel(float *out, const float *inp, const float *weight,
                                  const float *bias, conv2d_geom g, dw_plan p) {
    extern __shared__ float smem[];
    const dw_thread t = dw_thread_of(p);
    const int KK = (int)(g.KH * g.KW), KW = (int)g.KW;
    float *win = smem + t.slot * p.slot_floats, *w = win + p.win_rows * p.win_cols;
    const int64_t n = t.plane / g.C_out, o = t.plane % g.C_out, c = o / (g.C_out / g.C_in);
    if (t.active) {
        stage_window(win, inp + (n * g.C_in + c) * g.H * g.W, g.H, g.W,
                     t.r0 * g.stride_h - g.pad_h, t.c0 * g.stride_w - g.pad_w, p.win_rows,
                     p.win_div, t.gt, p.tpp);
        for (int k = t.gt; k < KK; k += p.tpp) w[k] = weight[o * KK + k];
    }
    __syncthreads();
    if (!t.active) return; /* no barrier follows */
    const float b = bias ? bias[o] : 0.0f;
    for (int r = 0; r < p.rpt; r++) {
        int row = t.ty + p.ty * r;
        int64_t oh = t.r0 + row, ow = t.c0 + t.tx;
        if (oh >= g.OH || ow >= g.OW) continue;
        float s = b;
        for (int kh = 0; kh < (int)g.KH; kh++) {
            const float *wr = win + (row * g.stride_h + kh * g.dil_h) * p.win_cols +
                              t.tx * g.stride_w;
            for (int kw = 0; kw < KW; kw++) s += w[kh * KW + kw] * wr[kw * g.dil_w];
        }
        out[(t.plane * g.OH + oh) * g.OW + ow] = s;
    }
}

/* dinp (N, C_in, H, W) += the gather of dout (N, C_out, OH, OW) through weight; tiles
 * over the input planes, m output channels per input channel. */
__global__ void dw_dinp_kernel(float *dinp, const float *dout, const float *weight,
                               conv2d_geom g, dw_plan p) {
    extern __shared__ float smem[];
    const dw_thread t = dw_thread_of(p); /* plane = n C_in + c */
    const int KK = (int)(g.KH * g.KW), KW = (int)g.KW, m = (int)(g.C_out / g.C_in);
    const int64_t n = t.plane / g.C_in, c = t.plane % g.C_in;
    /* The first output row/column whose window reaches the tile. */
    const int oh_base = (int)floor_div(t.r0 + g.pad_h - (g.KH - 1) * g.dil_h, g.stride_h);
    const int ow_base = (int)floor_div(t.c0 + g.pad_w - (g.KW - 1) * g.dil_w, g.stride_w);
    float *win = smem + t.slot * p.slot_floats, *w = win + p.win_rows * p.win_cols;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; j < m; j++) {
        const int64_t o = c * m + j;
        __syncthreads(); /* the previous channel's window is no longer read */
        if (t.active) {
            stage_window(win, dout + (n * g.C_out + o) * g.OH * g.OW, g.OH, g.OW, oh_base,
                         ow_base, p.win_rows, p.win_div, t.gt, p.tpp);
            for (int k = t.gt; k < KK; k += p.tpp) w[k] = weight[o * KK + k];
        }
        __syncthreads();
        if (!t.active) continue;
#pragma unroll
        for (int r = 0; r < 4; r++) {
            if (r >= p.rpt) break;
            const int ih = (int)t.r0 + t.ty + p.ty * r, iw = (int)t.c0 + t.tx;
            float s = 0.0f;
            for (int kh = 0; kh < (int)g.KH; kh++) {
                const int hh = ih + g.pad_h - kh * g.dil_h; /* = oh stride_h */
                if (hh < 0) continue;
                const int oh = (int)tg_div((uint32_t)hh, p.sh_div);
                if (oh * g.stride_h != hh) continue;
                const float *dr = win + (oh - oh_base) * p.win_cols;
                for (int kw = 0; kw < KW; kw++) {
                    const int ww = iw + g.pad_w - kw * g.dil_w;
                    if (ww < 0) continue;
                    const int ow = (int)tg_div((uint32_t)ww, p.sw_div);
                    if (ow * g.stride_w != ww) continue;
                    s += w[kh * KW + kw] * dr[ow - ow_base];
                }
            }
            acc[r] += s;
        }
    }
    if (!t.active) return;
#pragma unroll
    for (int r = 0; r < 4; r++) {
        if (r >= p.rpt) break;
        int64_t ih = t.r0 + t.ty + p.ty * r, iw = t.c0 + t.tx;
        if (ih < g.H && iw < g.W) dinp[(t.plane * g.H + ih) * g.W + iw] += acc[r];
    }
}

/* Stage 1 of dW/db: partial[((o N + n) tiles + at) (KK + 1) + k] = the tile's sum of
 * dy x over tap k (k < KK) and of dy (k = KK, when with_bias); tiles over dout's planes. */
__global__ void dw_dweight_partial_kernel(float *partial, const float *dout, const float *inp,
                                          conv2d_geom g, dw_plan p, bool with_bias) {
    extern __shared__ float smem[];
    const dw_thread t = dw_thread_of(p); /* plane = n C_out + o */
    const int KK = (int)(g.KH * g.KW), KW = (int)g.KW, nk = KK + 1;
    const int64_t n = t.plane / g.C_out, o = t.plane % g.C_out, c = o / (g.C_out / g.C_in);
    float *dyt = smem + t.slot * p.slot_floats, *win = dyt + p.th * p.tw;
    float *red = smem + p.per_block * p.slot_floats; /* (warps of the block) x nk */
    if (t.active) {
        stage_window(dyt, dout + t.plane * g.OH * g.OW, g.OH, g.OW, t.r0, t.c0, p.th, p.tw_div,
                     t.gt, p.tpp);
        stage_window(win, inp + (n * g.C_in + c) * g.H * g.W, g.H, g.W,
                     t.r0 * g.stride_h - g.pad_h, t.c0 * g.stride_w - g.pad_w, p.win_rows,
                     p.win_div, t.gt, p.tpp);
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (t.active) { /* uniform across each warp: tiles are whole warps */
        /* dy is 0 outside the plane (staged so), so out-of-range outputs add nothing. */
        for (int kh = 0; kh < (int)g.KH; kh++) {
            for (int kw = 0; kw < KW; kw++) {
                float s = 0.0f;
                for (int r = 0; r < p.rpt; r++) {
                    int row = t.ty + p.ty * r;
                    s += dyt[row * p.tw + t.tx] *
                         win[(row * g.stride_h + kh * g.dil_h) * p.win_cols + t.tx * g.stride_w +
                             kw * g.dil_w];
                }
                s = tg_warp_sum(s);
                if (lane == 0) red[warp * nk + kh * KW + kw] = s;
            }
        }
        if (with_bias) {
            float s = 0.0f;
            for (int r = 0; r < p.rpt; r++) s += dyt[(t.ty + p.ty * r) * p.tw + t.tx];
            s = tg_warp_sum(s);
            if (lane == 0) red[warp * nk + KK] = s;
        }
    }
    __syncthreads();
    if (!t.active) return;
    const int wpt = p.tpp >> 5, first = t.slot * wpt; /* the tile's warps */
    const int64_t per_plane = (int64_t)p.tiles_h * p.tiles_w;
    float *dst = partial + ((o * g.N + n) * per_plane + t.at) * nk;
    for (int k = t.gt; k < (with_bias ? nk : KK); k += p.tpp) {
        float s = 0.0f;
        for (int wi = 0; wi < wpt; wi++) s += red[(first + wi) * nk + k];
        dst[k] = s;
    }
}

/* Stage 2: one warp per (output channel o, tap k): dweight[o, k] (k < KK) or dbias[o]
 * (k = KK) += the sum of its `slots` (N tiles) partials, lane-strided then shuffled. */
__global__ void dw_dweight_finish_kernel(float *dweight, float *dbias, const float *partial,
                                         int64_t C_out, int64_t slots, int KK) {
    const int64_t wid = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31, nk = KK + 1;
    if (wid >= C_out * nk) return; /* uniform across the warp */
    const int64_t o = wid / nk;
    const int k = (int)(wid % nk);
    float *dst = k < KK ? (dweight ? dweight + o * KK + k : NULL) : (dbias ? dbias + o : NULL);
    if (!dst) return;
    const float *pp = partial + o * slots * nk + k;
    float s = 0.0f;
    for (int64_t i = lane; i < slots; i += 32) s += pp[i * nk];
    s = tg_warp_sum(s);
    if (lane == 0) *dst += s;
}

/* ---------------------------------------------------------------- simple fallbacks */

/* Windows too large for shared memory: one thread per element (64-bit indices). */
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

/* ---------------------------------------------------------------- launches */

tg_status conv2d_depthwise_forward_cuda(float *out, const float *inp, const float *weight,
                                        const float *bias, const conv2d_geom *g) {
    dw_plan p = dw_plan_make(g, DW_FORWARD);
    cudaStream_t stream = tg_cuda_stream();
    if (p.smem) {
        dw_forward_kernel<<<dw_blocks(&p), p.per_block * p.tpp, p.smem, stream>>>(
            out, inp, weight, bias, *g, p);
    } else {
        dw_forward_simple_kernel<<<tg_cuda_blocks(g->N * g->C_out * g->OH * g->OW),
                                   TG_CUDA_THREADS, 0, stream>>>(out, inp, weight, bias, *g);
    }
    TG_CUDA_LAUNCHED("conv2d_forward_cuda (depthwise)");
    return TG_OK;
}

tg_status conv2d_depthwise_backward_cuda(float *dinp, float *dweight, float *dbias,
                                         const float *dout, const float *inp,
                                         const float *weight, const conv2d_geom *g, float *ws) {
    cudaStream_t stream = tg_cuda_stream();
    if (dinp) {
        dw_plan p = dw_plan_make(g, DW_DINP);
        if (p.smem) {
            dw_dinp_kernel<<<dw_blocks(&p), p.per_block * p.tpp, p.smem, stream>>>(
                dinp, dout, weight, *g, p);
        } else {
            dw_dinp_simple_kernel<<<tg_cuda_blocks(g->N * g->C_in * g->H * g->W),
                                    TG_CUDA_THREADS, 0, stream>>>(dinp, dout, weight, *g);
        }
        TG_CUDA_LAUNCHED("conv2d_backward_cuda (depthwise dx)");
    }
    if (!dweight && !dbias) return TG_OK;
    dw_plan p = dw_plan_make(g, DW_DWEIGHT);
    const int KK = (int)(g->KH * g->KW);
    if (p.smem) {
        dw_dweight_partial_kernel<<<dw_blocks(&p), p.per_block * p.tpp, p.smem, stream>>>(
            ws, dout, inp, *g, p, dbias != NULL);
        TG_CUDA_LAUNCHED("conv2d_backward_cuda (depthwise dW partials)");
        const int64_t warps = g->C_out * (KK + 1);
        dw_dweight_finish_kernel<<<(unsigned)tg_cuda_ceil_div(warps * 32, TG_CUDA_THREADS),
                                   TG_CUDA_THREADS, 0, stream>>>(
            dweight, dbias, ws, g->C_out, g->N * p.tiles_h * p.tiles_w, KK);
    } else {
        dw_dweight_simple_kernel<<<tg_cuda_blocks(g->C_out * (KK + 1)), TG_CUDA_THREADS, 0,
                                   stream>>>(dweight, dbias, dout, inp, *g);
    }
    TG_CUDA_LAUNCHED("conv2d_backward_cuda (depthwise dW)");
    return TG_OK;
}
