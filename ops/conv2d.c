/*
 * ops/conv2d.c — 2-D (and 1-D) convolution: PyTorch's F.conv2d / F.conv1d with stride,
 * zero padding, dilation, groups and an optional bias.
 *
 * FORMULA. With Cg = C_in/groups input and Cog = C_out/groups output channels per group,
 * output channel o belongs to group g = o / Cog and sees input channels g Cg .. g Cg+Cg-1:
 *
 *   y[n,o,oh,ow] = b[o] + sum_{c<Cg, kh<KH, kw<KW} W[o,c,kh,kw] x[n, g Cg + c, ih, iw]
 *       ih = oh stride_h - pad_h + kh dil_h,   iw = ow stride_w - pad_w + kw dil_w
 *   (x is 0 outside 0 <= ih < H, 0 <= iw < W: the zero padding), and
 *   OH = (H + 2 pad_h - dil_h (KH - 1) - 1) / stride_h + 1, likewise OW.
 *
 * LAYOUTS. x (N, C_in, H, W), W (C_out, Cg, KH, KW), b (C_out), y (N, C_out, OH, OW), all
 * contiguous row-major. conv1d is this with H = KH = OH = 1 (its weight (C_out, Cg, K) is
 * the same memory as (C_out, Cg, 1, K)).
 *
 * THE im2col/GEMM VIEW. For one image n and group g, put every receptive field in a
 * column: col[(c,kh,kw), (oh,ow)] = x[n, g Cg + c, ih, iw] (0 in the padding), a
 * (K = Cg KH KW) x (OH OW) matrix. Then the convolution is one matrix product
 *     Y[n,g] (Cog x OH OW) = W[g] (Cog x K) . col (K x OH OW)
 * and runs at SGEMM speed. The full col is KH KW times the activation (604 MB for a 3x3
 * layer at 256x256x256), so we build it in TILES of output columns (a ~8 MiB buffer) and
 * let the GEMM write each tile straight into its slice of y (ldc = OH OW).
 *
 * BACKWARD. y is linear in W, in x and in b, so with dy = dL/dy:
 *   dW[g] += dy[n,g] . col^T      (Cog x tile)(tile x K): the same col tile, recomputed
 *                                 in backward instead of stored (beta = 1 accumulates)
 *   dcol   = W[g]^T . dy[n,g]     (K x Cog)(Cog x tile)
 *   dx    += col2im(dcol)         every col entry is a copy of one x element (or of the
 *                                 padding), so its gradient is ADDED back to that element;
 *                                 padding entries are dropped. This scatter-add is a
 *                                 transposed convolution of dy with the same W.
 *   db[o] += sum_{n,oh,ow} dy[n,o,oh,ow]
 *
 * THE FOUR PATHS (DESIGN §6), picked by conv2d_choose_path:
 *   dense      groups 1: tiled im2col + SGEMM as above.
 *   grouped    1 < groups < C_in: the same per group (each group has >= 2 input channels,
 *              so each GEMM still has a reduction of length >= 2 KH KW).
 *   pointwise  1x1, stride 1, pad 0: col IS the input (Cg x H W, contiguous in NCHW), so
 *              forward and both backward GEMMs run on the tensors directly.
 *   depthwise  groups = C_in (C_out = m C_in, m the channel multiplier): a direct kernel.
 *              Each output element costs KH KW multiply-adds (18 FLOPs for 3x3) and the
 *              layer moves one read of x and one write of y (8 bytes per element): 2.25
 *              FLOP/byte, memory-bound. As a GEMM it would be a (1 x 9)(9 x OH OW)
 *              matrix-vector product per channel after writing and re-reading a 9x larger
 *              im2col buffer: all the traffic, none of the reuse. The direct kernel walks
 *              each channel row by row (vectorised along W, parallel over N C_out); its
 *              backward gives each thread whole input channels and computes dx, dW and db
 *              in one pass that reads dy and x once, so no two threads write one gradient.
 *              Those kernels live in ops/conv2d_depthwise.c (row-vectorised fast path for
 *              3x3, pad 1, stride 1/2; a generic path for every other geometry).
 */
#include "conv2d.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

/* im2col tile budget. Wide tiles keep the GEMMs efficient (N = tile columns); measured on
 * the 2-core AVX-512 VM, dense 3x3 at C=256: 2 MiB tiles (227 columns) reached 65% of
 * same-shape SGEMM at 32x32, 8 MiB (910 columns) 84% at 32x32 and 95% at 64x64, 16 MiB
 * 83% at 64x64. The tile stays inside the last-level cache (32 MiB). */
#define CONV2D_TILE_BYTES ((int64_t)8 << 20)
#define CONV2D_MIN_TILE 16                   /* columns; a multiple of the SIMD width */

conv2d_path conv2d_choose_path(const conv2d_geom *g) {
    if (g->groups == g->C_in && g->C_in > 1) return CONV2D_DEPTHWISE;
    if (g->KH == 1 && g->KW == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_h == 0 &&
        g->pad_w == 0)
        return CONV2D_POINTWISE;
    return g->groups == 1 ? CONV2D_DENSE : CONV2D_GROUPED;
}

const char *conv2d_path_name(conv2d_path path) {
    static const char *names[] = {"dense", "grouped", "pointwise", "depthwise"};
    return names[path];
}

int64_t conv2d_default_tile_cols(const conv2d_geom *g) {
    int64_t K = g->C_in / g->groups * g->KH * g->KW, ncols = g->OH * g->OW;
    int64_t t = CONV2D_TILE_BYTES / (int64_t)sizeof(float) / K;
    if (t >= ncols) return ncols;
    t -= t % CONV2D_MIN_TILE;
    return t < CONV2D_MIN_TILE ? CONV2D_MIN_TILE : t;
}

size_t conv2d_workspace_floats(const conv2d_geom *g, int64_t tile_cols) {
    conv2d_path path = conv2d_choose_path(g);
    if (path != CONV2D_DENSE && path != CONV2D_GROUPED) return 0;
    if (tile_cols <= 0) tile_cols = conv2d_default_tile_cols(g);
    if (tile_cols > g->OH * g->OW) tile_cols = g->OH * g->OW;
    return (size_t)(g->C_in / g->groups * g->KH * g->KW) * (size_t)tile_cols;
}

/* The output positions o in [0, n_out) whose input index o s + off lies in [0, len):
 * [*lo, *hi), empty when *lo == *hi. */
static inline void valid_range(int64_t off, int64_t s, int64_t len, int64_t n_out,
                               int64_t *lo, int64_t *hi) {
    int64_t a, b;
    if (s == 1) { /* the common case, without the divisions (they sit in per-row loops) */
        a = off >= 0 ? 0 : -off;
        b = len - off;
    } else {
        a = off >= 0 ? 0 : (-off + s - 1) / s;
        b = len - off <= 0 ? 0 : (len - off + s - 1) / s;
    }
    if (b < 0) b = 0;
    if (b > n_out) b = n_out;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* ---------------------------------------------------------------- bias helpers */

/* y[n, o, :, :] = b[o]. */
static void fill_bias(float *out, const float *bias, int64_t N, int64_t C, int64_t plane) {
#pragma omp parallel for schedule(static) if (N * C * plane > 65536)
    for (int64_t p = 0; p < N * C; p++) {
        float v = bias[p % C], *y = out + p * plane;
#pragma omp simd
        for (int64_t i = 0; i < plane; i++) y[i] = v;
    }
}

/* db[o] += sum over n and the plane of dy[n, o]. Each thread owns whole channels. */
static void bias_backward(float *dbias, const float *dout, int64_t N, int64_t C,
                          int64_t plane) {
#pragma omp parallel for schedule(static) if (N * C * plane > 65536)
    for (int64_t o = 0; o < C; o++) {
        float s = 0.0f;
        for (int64_t n = 0; n < N; n++) {
            const float *dy = dout + (n * C + o) * plane;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < plane; i++) s += dy[i];
        }
        dbias[o] += s;
    }
}

/* ---------------------------------------------------------------- im2col / col2im tiles */

/* col (K x tc, K = Cg KH KW) written: output columns c0 .. c0+tc-1 (flattened oh OW + ow)
 * of the im2col matrix of x (Cg, H, W), the group's channels of one image. */
static void im2col_tile(float *col, const float *x, int64_t Cg, const conv2d_geom *g,
                        int64_t c0, int64_t tc) {
    const int64_t KK = g->KH * g->KW, K = Cg * KK, H = g->H, W = g->W, OW = g->OW;
    const int64_t sw = g->stride_w;
#pragma omp parallel for schedule(static) if (K * tc > 32768)
    for (int64_t k = 0; k < K; k++) {
        int64_t c = k / KK, kh = k % KK / g->KW, kw = k % g->KW;
        int64_t off = kw * g->dil_w - g->pad_w, lo, hi;
        valid_range(off, sw, W, OW, &lo, &hi);
        const float *xc = x + c * H * W;
        float *row = col + k * tc;
        int64_t j = 0, oh = c0 / OW, ow = c0 % OW;
        while (j < tc) {
            /* One output row's segment [ow, end): zeros, a strided copy, zeros. */
            int64_t len = OW - ow < tc - j ? OW - ow : tc - j, end = ow + len;
            int64_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
            float *dst = row + j - ow; /* dst[o] is the column of output position o */
            if (ih < 0 || ih >= H) {
                memset(row + j, 0, (size_t)len * sizeof(float));
            } else {
                const float *xr = xc + ih * W + off;
                int64_t a = lo > ow ? (lo < end ? lo : end) : ow;
                int64_t b = hi < end ? (hi > a ? hi : a) : end;
                for (int64_t o = ow; o < a; o++) dst[o] = 0.0f;
                if (sw == 1) {
                    memcpy(dst + a, xr + a, (size_t)(b - a) * sizeof(float));
                } else {
                    for (int64_t o = a; o < b; o++) dst[o] = xr[o * sw];
                }
                for (int64_t o = b; o < end; o++) dst[o] = 0.0f;
            }
            j += len;
            oh++;
            ow = 0;
        }
    }
}

/* dx (Cg, H, W) accumulated: the scatter-add of dcol (K x tc), the transpose of
 * im2col_tile. Each thread owns whole input channels, so no two write one element. */
static void col2im_tile(float *dx, const float *dcol, int64_t Cg, const conv2d_geom *g,
                        int64_t c0, int64_t tc) {
    const int64_t KK = g->KH * g->KW, H = g->H, W = g->W, OW = g->OW;
    const int64_t sw = g->stride_w;
#pragma omp parallel for schedule(static) if (Cg * KK * tc > 32768)
    for (int64_t c = 0; c < Cg; c++) {
        float *dxc = dx + c * H * W;
        for (int64_t kk = 0; kk < KK; kk++) {
            int64_t kh = kk / g->KW, kw = kk % g->KW;
            int64_t off = kw * g->dil_w - g->pad_w, lo, hi;
            valid_range(off, sw, W, OW, &lo, &hi);
            const float *row = dcol + (c * KK + kk) * tc;
            int64_t j = 0, oh = c0 / OW, ow = c0 % OW;
            while (j < tc) {
                int64_t len = OW - ow < tc - j ? OW - ow : tc - j, end = ow + len;
                int64_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
                if (ih >= 0 && ih < H) {
                    const float *src = row + j - ow;
                    float *xr = dxc + ih * W + off;
                    int64_t a = lo > ow ? lo : ow, b = hi < end ? hi : end;
                    if (sw == 1) {
#pragma omp simd
                        for (int64_t o = a; o < b; o++) xr[o] += src[o];
                    } else {
                        for (int64_t o = a; o < b; o++) xr[o * sw] += src[o];
                    }
                }
                j += len;
                oh++;
                ow = 0;
            }
        }
    }
}

/* ---------------------------------------------------------------- dense and grouped */

void conv2d_gemm_forward_cpu(float *out, const float *inp, const float *weight,
                             const float *bias, const conv2d_geom *g, float *workspace,
                             int64_t tile_cols) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW, HW = g->H * g->W;
    float beta = 0.0f;
    if (bias) {
        fill_bias(out, bias, g->N, g->C_out, ncols);
        beta = 1.0f; /* the GEMMs add onto the bias */
    }
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *x = inp + (n * g->C_in + grp * Cg) * HW;
            float *y = out + (n * g->C_out + grp * Cog) * ncols;
            for (int64_t c0 = 0; c0 < ncols; c0 += tile_cols) {
                int64_t tc = ncols - c0 < tile_cols ? ncols - c0 : tile_cols;
                im2col_tile(workspace, x, Cg, g, c0, tc);
                /* y[:, c0 : c0+tc] (Cog x tc, ldc OH OW) = W[grp] (Cog x K) . col (K x tc) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cog, (int)tc,
                            (int)K, 1.0f, weight + grp * Cog * K, (int)K, workspace, (int)tc,
                            beta, y + c0, (int)ncols);
            }
        }
    }
}

void conv2d_gemm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const conv2d_geom *g,
                              float *workspace, int64_t tile_cols) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW, HW = g->H * g->W;
    if (dbias) bias_backward(dbias, dout, g->N, g->C_out, ncols);
    if (!dinp && !dweight) return;
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *x = inp + (n * g->C_in + grp * Cg) * HW;
            const float *dy = dout + (n * g->C_out + grp * Cog) * ncols;
            const float *w = weight + grp * Cog * K;
            for (int64_t c0 = 0; c0 < ncols; c0 += tile_cols) {
                int64_t tc = ncols - c0 < tile_cols ? ncols - c0 : tile_cols;
                if (dweight) {
                    /* dW[grp] (Cog x K) += dy tile (Cog x tc) . col^T (tc x K) */
                    im2col_tile(workspace, x, Cg, g, c0, tc);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Cog, (int)K,
                                (int)tc, 1.0f, dy + c0, (int)ncols, workspace, (int)tc, 1.0f,
                                dweight + grp * Cog * K, (int)K);
                }
                if (dinp) {
                    /* dcol (K x tc) = W[grp]^T (K x Cog) . dy tile (Cog x tc), reusing the
                     * buffer, then scatter-added into dx. */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)tc,
                                (int)Cog, 1.0f, w, (int)K, dy + c0, (int)ncols, 0.0f,
                                workspace, (int)tc);
                    col2im_tile(dinp + (n * g->C_in + grp * Cg) * HW, workspace, Cg, g, c0,
                                tc);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- pointwise */

void conv2d_pointwise_forward_cpu(float *out, const float *inp, const float *weight,
                                  const float *bias, const conv2d_geom *g) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, HW = g->H * g->W;
    float beta = 0.0f;
    if (bias) {
        fill_bias(out, bias, g->N, g->C_out, HW);
        beta = 1.0f;
    }
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            /* y[n, grp] (Cog x HW) = W[grp] (Cog x Cg) . x[n, grp] (Cg x HW) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cog, (int)HW, (int)Cg,
                        1.0f, weight + grp * Cog * Cg, (int)Cg,
                        inp + (n * g->C_in + grp * Cg) * HW, (int)HW, beta,
                        out + (n * g->C_out + grp * Cog) * HW, (int)HW);
        }
    }
}

void conv2d_pointwise_backward_cpu(float *dinp, float *dweight, float *dbias,
                                   const float *dout, const float *inp, const float *weight,
                                   const conv2d_geom *g) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, HW = g->H * g->W;
    if (dbias) bias_backward(dbias, dout, g->N, g->C_out, HW);
    for (int64_t n = 0; n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *x = inp + (n * g->C_in + grp * Cg) * HW;
            const float *dy = dout + (n * g->C_out + grp * Cog) * HW;
            if (dinp) {
                /* dx[n, grp] (Cg x HW) += W[grp]^T (Cg x Cog) . dy[n, grp] (Cog x HW) */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Cg, (int)HW,
                            (int)Cog, 1.0f, weight + grp * Cog * Cg, (int)Cg, dy, (int)HW,
                            1.0f, dinp + (n * g->C_in + grp * Cg) * HW, (int)HW);
            }
            if (dweight) {
                /* dW[grp] (Cog x Cg) += dy[n, grp] (Cog x HW) . x[n, grp]^T (HW x Cg) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Cog, (int)Cg,
                            (int)HW, 1.0f, dy, (int)HW, x, (int)HW, 1.0f,
                            dweight + grp * Cog * Cg, (int)Cg);
            }
        }
    }
}

/* ---------------------------------------------------------------- dispatch */

void conv2d_forward_cpu(float *out, const float *inp, const float *weight, const float *bias,
                        const conv2d_geom *g, float *workspace, int64_t tile_cols) {
    switch (conv2d_choose_path(g)) {
    case CONV2D_POINTWISE: conv2d_pointwise_forward_cpu(out, inp, weight, bias, g); break;
    case CONV2D_DEPTHWISE: conv2d_depthwise_forward_cpu(out, inp, weight, bias, g); break;
    default:
        conv2d_gemm_forward_cpu(out, inp, weight, bias, g, workspace,
                                tile_cols > 0 ? tile_cols : conv2d_default_tile_cols(g));
    }
}

void conv2d_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, const conv2d_geom *g,
                         float *workspace, int64_t tile_cols) {
    switch (conv2d_choose_path(g)) {
    case CONV2D_POINTWISE:
        conv2d_pointwise_backward_cpu(dinp, dweight, dbias, dout, inp, weight, g);
        break;
    case CONV2D_DEPTHWISE:
        conv2d_depthwise_backward_cpu(dinp, dweight, dbias, dout, inp, weight, g);
        break;
    default:
        conv2d_gemm_backward_cpu(dinp, dweight, dbias, dout, inp, weight, g, workspace,
                                 tile_cols > 0 ? tile_cols : conv2d_default_tile_cols(g));
    }
}

/* ---------------------------------------------------------------- the op */

typedef struct conv2d_params {
    conv2d_geom geom;
    bool is1d;
    bool winograd; /* TG_CONV_ALGO_WINOGRAD on a supported geometry, CPU */
    bool autochosen; /* TG_CONV_ALGO_AUTO timed the two paths and chose `winograd` */
} conv2d_params;

/* The Winograd path (ops/conv2d_winograd.c), for records that chose it. */
static tg_status winograd_forward(tg_ctx *ctx, tg_record *rec) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    float *ws = tg_ctx_scratch(ctx, conv2d_winograd_workspace_floats(g, false, 0) * sizeof(float));
    if (!ws) return tg_error();
    const tg_tensor *bias = rec->inputs[2];
    conv2d_winograd_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                                bias ? bias->data : NULL, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

static tg_status winograd_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    if (dinputs[2]) bias_backward(dinputs[2], dout, g->N, g->C_out, g->OH * g->OW);
    if (!dinputs[0] && !dinputs[1]) return TG_OK;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    float *ws = tg_ctx_scratch(ctx, conv2d_winograd_workspace_floats(g, true, 0) * sizeof(float));
    if (!ws) return tg_error();
    conv2d_winograd_backward_cpu(dinputs[0], dinputs[1], dout, rec->inputs[0]->data,
                                 rec->inputs[1]->data, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

/* The column tile is dead when the kernel returns, so the arena is rewound past it:
 * a 50-layer net holds one tile at a time, not one per layer. */
static tg_status conv2d_forward(tg_ctx *ctx, tg_record *rec) {
    if (TG_PARAMS(rec, conv2d_params)->winograd) return winograd_forward(ctx, rec);
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    size_t ws_floats = conv2d_workspace_floats(g, 0);
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    const tg_tensor *bias = rec->inputs[2];
    conv2d_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                       bias ? bias->data : NULL, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

static tg_status conv2d_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    if (TG_PARAMS(rec, conv2d_params)->winograd) return winograd_backward(ctx, rec, dinputs, dout);
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    bool need_ws = dinputs[0] || dinputs[1];
    size_t ws_floats = need_ws ? conv2d_workspace_floats(g, 0) : 0;
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    conv2d_backward_cpu(dinputs[0], dinputs[1], dinputs[2], dout, rec->inputs[0]->data,
                        rec->inputs[1]->data, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
/* As on the CPU, the workspace (im2col tile, depthwise dW partials) is rewound when the
 * kernels are queued: later work on the one stream runs after them. */
static tg_status cuda_conv2d_forward(tg_ctx *ctx, tg_record *rec) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    size_t ws_floats = conv2d_workspace_floats_cuda(g, 0, false);
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    const tg_tensor *bias = rec->inputs[2];
    tg_status st = conv2d_forward_cuda(rec->out->data, rec->inputs[0]->data,
                                       rec->inputs[1]->data, bias ? bias->data : NULL, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return st;
}

static tg_status cuda_conv2d_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    size_t ws_floats = conv2d_workspace_floats_cuda(g, 0, true);
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    tg_status st = conv2d_backward_cuda(dinputs[0], dinputs[1], dinputs[2], dout,
                                        rec->inputs[0]->data, rec->inputs[1]->data, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return st;
}
#endif

/* What the Winograd path really computes (so rates stay comparable with the SGEMM peak):
 * per pass, 36 GEMMs of 2 C_out C_in flops per tile, about 288 flops per 6x6 input-tile
 * transform and 140 per output tile (counted from the 1-D transforms), and the filter
 * transforms. Bytes: the activations and weights as for the direct path, plus the
 * transformed filters (36/9 of the weights) written and read. */
static void winograd_cost(const conv2d_geom *g, bool has_bias, double *fwd_flops,
                          double *fwd_bytes, double *bwd_flops, double *bwd_bytes) {
    double tiles = (double)(g->N * ((g->OH + 3) / 4) * ((g->OW + 3) / 4));
    double xs = (double)(g->N * g->C_in * g->H * g->W);
    double ys = (double)(g->N * g->C_out * g->OH * g->OW);
    double pairs = (double)(g->C_out * g->C_in), ws = 9 * pairs;
    double dx_tiles = (double)(g->N * ((g->H + 3) / 4) * ((g->W + 3) / 4));
    double gemm = 2 * 36 * pairs;
    *fwd_flops = gemm * tiles + tiles * (288.0 * (double)g->C_in + 140.0 * (double)g->C_out) +
                 300 * pairs + (has_bias ? ys : 0);
    *fwd_bytes = 4 * (xs + ws + ys + 2 * 36 * pairs);
    /* dx: the same on dy; dW: input and dy transforms, 36 GEMMs, the 6x6 -> 3x3 transform. */
    *bwd_flops = gemm * dx_tiles +
                 dx_tiles * (288.0 * (double)g->C_out + 140.0 * (double)g->C_in) +
                 gemm * tiles + tiles * (288.0 * (double)g->C_in + 200.0 * (double)g->C_out) +
                 600 * pairs + (has_bias ? ys : 0);
    *bwd_bytes = 4 * (ys + xs + ws + 2 * xs + 2 * ws + 4 * 36 * pairs);
}

static void conv2d_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                        double *bwd_flops, double *bwd_bytes) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    bool has_bias = rec->inputs[2] != NULL;
    double xs = (double)(g->N * g->C_in * g->H * g->W);
    double ws = (double)(g->C_out * (g->C_in / g->groups) * g->KH * g->KW);
    double ys = (double)(g->N * g->C_out * g->OH * g->OW), bs = has_bias ? (double)g->C_out : 0;
    double macs = ys * (double)(g->C_in / g->groups * g->KH * g->KW);
    if (TG_PARAMS(rec, conv2d_params)->winograd) {
        winograd_cost(g, has_bias, fwd_flops, fwd_bytes, bwd_flops, bwd_bytes);
        return;
    }
    *fwd_flops = 2 * macs + (has_bias ? ys : 0);
    *fwd_bytes = 4 * (xs + ws + bs + ys); /* read x, w (b); write y */
    /* dx and dW are each a forward's worth of multiply-adds; db sums dy. */
    *bwd_flops = 4 * macs + (has_bias ? ys : 0);
    /* Read dy, x, w; read and write dx, dW (db). */
    *bwd_bytes = 4 * (ys + xs + ws + 2 * xs + 2 * ws + 2 * bs);
}

static void conv2d_describe(const tg_record *rec, char *buf, size_t size) {
    const conv2d_params *p = TG_PARAMS(rec, conv2d_params);
    const conv2d_geom *g = &p->geom;
    conv2d_path path = conv2d_choose_path(g);
    char kernel[48], extra[32] = "";
    int s = g->stride_h > g->stride_w ? g->stride_h : g->stride_w;
    if (p->is1d) snprintf(kernel, sizeof kernel, "k%lld", (long long)g->KW);
    else snprintf(kernel, sizeof kernel, "%lldx%lld", (long long)g->KH, (long long)g->KW);
    if (s > 1) snprintf(extra, sizeof extra, " s%d", s);
    const char *by = p->autochosen ? "auto: " : "";
    if (p->winograd) {
        snprintf(buf, size, "%swinograd %s", by, kernel);
        return;
    }
    if (path == CONV2D_GROUPED)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " g%d", g->groups);
    snprintf(buf, size, "%s%s %s%s", by, conv2d_path_name(path), kernel, extra);
}

/* Explain mode: what this record's backward computes, for the path it took. */
static void conv2d_explain(const tg_record *rec, char *buf, size_t size) {
    const conv2d_params *p = TG_PARAMS(rec, conv2d_params);
    const char *db = rec->inputs[2] ? "; db += sums of dy over N, OH, OW" : "";
    if (p->winograd) {
        snprintf(buf, size, "Winograd F(4x4,3x3): dx = the same transform with rot180(W)^T, "
                 "dW = G^T[(A dy A^T) .* (B^T x B)]G, 36 GEMMs each (beta = 1)%s", db);
        return;
    }
    switch (conv2d_choose_path(&p->geom)) {
    case CONV2D_POINTWISE:
        snprintf(buf, size, "pointwise 1x1: dx += W^T dy and dW += dy x^T per image, straight "
                 "SGEMMs on NCHW (beta = 1)%s", db);
        break;
    case CONV2D_DEPTHWISE:
        snprintf(buf, size, "depthwise: one direct pass per channel reads dy and x once and "
                 "adds into dx and dW%s", db);
        break;
    case CONV2D_GROUPED:
        snprintf(buf, size, "grouped (%d groups): per group and im2col tile, dW += dy col^T "
                 "and dx += col2im(W^T dy) (GEMMs, beta = 1)%s", p->geom.groups, db);
        break;
    default:
        snprintf(buf, size, "dense: per im2col tile, dW += dy col^T and dx += col2im(W^T dy) "
                 "(GEMMs, beta = 1; the columns are recomputed, not stored)%s", db);
    }
}

static const tg_op conv2d_op = {
    .name = "conv2d",
    .forward = {[TG_DEVICE_CPU] = conv2d_forward, TG_CUDA_ENTRY(cuda_conv2d_forward)},
    .backward = {[TG_DEVICE_CPU] = conv2d_backward, TG_CUDA_ENTRY(cuda_conv2d_backward)},
    .cost = conv2d_cost,
    .describe = conv2d_describe,
    .explain = conv2d_explain,
};

static const tg_op conv1d_op = {
    .name = "conv1d",
    .forward = {[TG_DEVICE_CPU] = conv2d_forward, TG_CUDA_ENTRY(cuda_conv2d_forward)},
    .backward = {[TG_DEVICE_CPU] = conv2d_backward, TG_CUDA_ENTRY(cuda_conv2d_backward)},
    .cost = conv2d_cost,
    .describe = conv2d_describe,
    .explain = conv2d_explain,
};

/* ---------------------------------------------------------------- TG_CONV_ALGO_AUTO */

/* Forwards cheaper than this many FLOPs get one untimed warm-up run each before the timed
 * one (caches, page faults of the scratch); dearer ones are timed on their first run, where
 * the one-off costs are small beside the arithmetic. */
#define CONV2D_AUTO_WARMUP_FLOPS 2e9

static bool choice_is(const tg_conv_choice *c, const conv2d_geom *g, bool bias) {
    return c->n == g->N && c->c_in == g->C_in && c->h == g->H && c->w == g->W &&
           c->c_out == g->C_out && c->pad_h == g->pad_h && c->pad_w == g->pad_w &&
           c->bias == bias;
}

/* For a geometry Winograd supports (3x3, stride 1, dilation 1, groups 1, so the key below
 * is the whole geometry): 1 for Winograd, 0 for im2col + SGEMM, -1 on failure (message
 * recorded). The first call per geometry times both forwards on the live operands
 * x (N, C_in, H, W), w (C_out, C_in, 3, 3), b (C_out) or NULL into arena scratch that is
 * rewound afterwards, and records the faster in the context's table. */
static int conv2d_auto_choose(tg_ctx *ctx, const conv2d_geom *g, const float *x,
                              const float *w, const float *b) {
    for (int i = 0; i < ctx->nconv_choices; i++)
        if (choice_is(&ctx->conv_choices[i], g, b != NULL))
            return ctx->conv_choices[i].winograd ? 1 : 0;
    tg_threads_apply(); /* time with the thread count the op will run with */
    size_t out_floats = (size_t)(g->N * g->C_out * g->OH * g->OW);
    size_t ws_gemm = conv2d_workspace_floats(g, 0);
    size_t ws_wino = conv2d_winograd_workspace_floats(g, false, 0);
    size_t ws_floats = ws_gemm > ws_wino ? ws_gemm : ws_wino;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    float *out = tg_ctx_scratch(ctx, out_floats * sizeof(float));
    float *ws = out ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (!ws) {
        tg_arena_rewind(&ctx->arena, mark);
        return -1;
    }
    double flops = 2.0 * (double)out_floats * (double)(g->C_in * 9);
    double secs[2] = {0, 0};
    for (int pass = flops < CONV2D_AUTO_WARMUP_FLOPS ? 0 : 1; pass < 2; pass++) {
        for (int a = 0; a < 2; a++) {
            double t0 = tg_now();
            if (a) conv2d_winograd_forward_cpu(out, x, w, b, g, ws, 0);
            else conv2d_gemm_forward_cpu(out, x, w, b, g, ws, conv2d_default_tile_cols(g));
            secs[a] = tg_now() - t0;
        }
    }
    tg_arena_rewind(&ctx->arena, mark);
    tg_conv_choice *c = &ctx->conv_choices[ctx->next_conv_choice];
    *c = (tg_conv_choice){.n = g->N, .c_in = g->C_in, .h = g->H, .w = g->W, .c_out = g->C_out,
                          .pad_h = g->pad_h, .pad_w = g->pad_w, .bias = b != NULL,
                          .winograd = secs[1] < secs[0], .gemm_seconds = secs[0],
                          .winograd_seconds = secs[1]};
    ctx->next_conv_choice = (ctx->next_conv_choice + 1) % TG_CTX_CONV_CHOICES;
    if (ctx->nconv_choices < TG_CTX_CONV_CHOICES) ctx->nconv_choices++;
    return c->winograd ? 1 : 0;
}

/* ---------------------------------------------------------------- entry points */

/* Validates x, weight, bias and opts for tg_conv2d (is1d false) or tg_conv1d, and fills g.
 * Messages name the op, the argument and the shapes. */
static bool conv_check(const char *op, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                       tg_conv2d_opts opts, bool is1d, conv2d_geom *g) {
    char s1[80], s2[80];
    const int nd = is1d ? 3 : 4;
    const char *xlay = is1d ? "(N, C_in, L)" : "(N, C_in, H, W)";
    const char *wlay = is1d ? "(C_out, C_in/groups, K)" : "(C_out, C_in/groups, KH, KW)";
    if (!tg_check_tensor(op, "x", x, -1) || !tg_check_tensor(op, "weight", weight, -1))
        return false;
    if (opts.stride_h < 0 || opts.stride_w < 0 || opts.dilation_h < 0 ||
        opts.dilation_w < 0 || opts.pad_h < 0 || opts.pad_w < 0 || opts.groups < 0) {
        const char *arg = opts.groups < 0 ? "groups"
                          : opts.pad_h < 0 || opts.pad_w < 0 ? "padding"
                          : opts.stride_h < 0 || opts.stride_w < 0 ? "stride" : "dilation";
        tg_fail(TG_ERR_ARG, "%s: argument 'opts.%s' is negative (stride %d,%d pad %d,%d "
                "dilation %d,%d groups %d); hint: stride, dilation and groups are >= 1 (0 "
                "means 1), padding >= 0", op, arg, opts.stride_h, opts.stride_w, opts.pad_h,
                opts.pad_w, opts.dilation_h, opts.dilation_w, opts.groups);
        return false;
    }
    if (x->shape.ndim != nd) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'x' has shape %s (%d dims); expected %d dims %s%s",
                op, tg_shape_str(x->shape, s1, sizeof s1), x->shape.ndim, nd, xlay,
                is1d ? "; hint: for images use tg_conv2d" : "; hint: for sequences use tg_conv1d");
        return false;
    }
    const int64_t *xd = x->shape.dim, *wd = weight->shape.dim;
    int64_t C_in = xd[1], G = opts.groups ? opts.groups : 1;
    if (weight->shape.ndim != nd) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' has shape %s (%d dims); weight must be "
                "%s with %d dims", op, tg_shape_str(weight->shape, s1, sizeof s1),
                weight->shape.ndim, wlay, nd);
        return false;
    }
    int64_t C_out = wd[0], KH = is1d ? 1 : wd[2], KW = wd[nd - 1];
    if (C_in % G != 0) {
        tg_fail(TG_ERR_ARG, "%s: argument 'opts.groups' = %lld does not divide C_in = %lld of "
                "'x' %s; hint: groups must divide both C_in and C_out", op, (long long)G,
                (long long)C_in, tg_shape_str(x->shape, s1, sizeof s1));
        return false;
    }
    if (C_out % G != 0) {
        tg_fail(TG_ERR_ARG, "%s: argument 'opts.groups' = %lld does not divide C_out = %lld of "
                "'weight' %s; hint: groups must divide both C_in and C_out", op, (long long)G,
                (long long)C_out, tg_shape_str(weight->shape, s1, sizeof s1));
        return false;
    }
    if (wd[1] != C_in / G) {
        char want[80];
        tg_shape ws = weight->shape;
        ws.dim[1] = C_in / G;
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' has shape %s but 'x' has shape %s with "
                "groups %lld; hint: weight must be %s = %s", op,
                tg_shape_str(weight->shape, s1, sizeof s1), tg_shape_str(x->shape, s2, sizeof s2),
                (long long)G, wlay, tg_shape_str(ws, want, sizeof want));
        return false;
    }
    if (bias && (bias->shape.ndim != 1 || bias->shape.dim[0] != C_out)) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'bias' has shape %s; expected (%lld), one value "
                "per output channel of 'weight' %s", op, tg_shape_str(bias->shape, s1, sizeof s1),
                (long long)C_out, tg_shape_str(weight->shape, s2, sizeof s2));
        return false;
    }
    *g = (conv2d_geom){
        .N = xd[0], .C_in = C_in, .H = is1d ? 1 : xd[2], .W = xd[nd - 1], .C_out = C_out,
        .KH = KH, .KW = KW, .groups = (int)G,
        .stride_h = is1d ? 1 : (opts.stride_h ? opts.stride_h : 1),
        .stride_w = opts.stride_w ? opts.stride_w : 1,
        .pad_h = is1d ? 0 : opts.pad_h, .pad_w = opts.pad_w,
        .dil_h = is1d ? 1 : (opts.dilation_h ? opts.dilation_h : 1),
        .dil_w = opts.dilation_w ? opts.dilation_w : 1,
    };
    /* Dims are <= TG_MAX_NUMEL = 2^40 and options < 2^31, so the spans fit an int64
     * unless a kernel dim times the dilation is absurd: checked like every size. */
    int64_t eh, ew, kspan_h, kspan_w;
    if (!tg_mul_i64(g->dil_h, KH - 1, &kspan_h) || !tg_mul_i64(g->dil_w, KW - 1, &kspan_w) ||
        kspan_h > TG_MAX_NUMEL || kspan_w > TG_MAX_NUMEL) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' %s with dilation %d,%d spans more than "
                "TG_MAX_NUMEL pixels", op, tg_shape_str(weight->shape, s1, sizeof s1),
                g->dil_h, g->dil_w);
        return false;
    }
    eh = g->H + 2 * (int64_t)g->pad_h - kspan_h - 1;
    ew = g->W + 2 * (int64_t)g->pad_w - kspan_w - 1;
    if (eh < 0 || ew < 0) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' %s with dilation %d,%d is larger than "
                "the padded input 'x' %s (padding %d,%d): the output would be empty; hint: "
                "pad more or use a smaller kernel", op,
                tg_shape_str(weight->shape, s1, sizeof s1), g->dil_h, g->dil_w,
                tg_shape_str(x->shape, s2, sizeof s2), g->pad_h, g->pad_w);
        return false;
    }
    g->OH = eh / g->stride_h + 1;
    g->OW = ew / g->stride_w + 1;
    int64_t K, plane_out, plane_in, wg, numel_out;
    tg_shape out = is1d ? tg_shape3(g->N, C_out, g->OW) : tg_shape4(g->N, C_out, g->OH, g->OW);
    if (!tg_shape_check(op, "output", out, &numel_out, NULL)) return false;
    if (!tg_mul_i64(C_in / G, KH, &K) || !tg_mul_i64(K, KW, &K) ||
        !tg_mul_i64(g->OH, g->OW, &plane_out) || !tg_mul_i64(g->H, g->W, &plane_in) ||
        !tg_mul_i64(K, C_out / G, &wg) || C_out > INT_MAX || K > INT_MAX ||
        plane_out > INT_MAX || plane_in > INT_MAX || wg > INT_MAX) {
        tg_fail(TG_ERR_ARG, "%s: argument 'x' %s with 'weight' %s has a dimension above "
                "2^31 - 1, more than a BLAS call takes", op,
                tg_shape_str(x->shape, s1, sizeof s1),
                tg_shape_str(weight->shape, s2, sizeof s2));
        return false;
    }
    return true;
}

static tg_tensor *conv_apply(const char *name, const tg_op *op, tg_ctx *ctx, tg_tensor *x,
                             tg_tensor *weight, tg_tensor *bias, tg_conv2d_opts opts,
                             bool is1d) {
    if (tg_check_not_null(name, "ctx", ctx)) return NULL;
    conv2d_params p = {.is1d = is1d};
    if (!conv_check(name, x, weight, bias, opts, is1d, &p.geom)) return NULL;
    const conv2d_geom *g = &p.geom;
    if (ctx->device == TG_DEVICE_CPU && !is1d && conv2d_winograd_supported(g)) {
        if (ctx->conv_algo == TG_CONV_ALGO_WINOGRAD) {
            p.winograd = true;
        } else if (ctx->conv_algo == TG_CONV_ALGO_AUTO) {
            /* The timing reads the operands: the checks tg_op_apply makes, made first. */
            tg_tensor *inputs[3] = {x, weight, bias};
            if (!tg_check_same_device(name, ctx, inputs, 3) ||
                !tg_ctx_check_inputs(ctx, name, inputs, 3))
                return NULL;
            int c = conv2d_auto_choose(ctx, g, x->data, weight->data, bias ? bias->data : NULL);
            if (c < 0) return NULL;
            p.winograd = c == 1;
            p.autochosen = true;
        }
    }
    tg_shape out = is1d ? tg_shape3(g->N, g->C_out, g->OW)
                        : tg_shape4(g->N, g->C_out, g->OH, g->OW);
    tg_tensor *inputs[3] = {x, weight, bias};
    return tg_op_apply(ctx, op, inputs, 3, out, &p, sizeof p, NULL);
}

tg_conv2d_opts tg_conv2d_opts_make(int stride, int padding, int dilation, int groups) {
    return (tg_conv2d_opts){.stride_h = stride, .stride_w = stride, .pad_h = padding,
                            .pad_w = padding, .dilation_h = dilation, .dilation_w = dilation,
                            .groups = groups};
}

tg_tensor *tg_conv2d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     tg_conv2d_opts opts) {
    return conv_apply("tg_conv2d", &conv2d_op, ctx, x, weight, bias, opts, false);
}

tg_tensor *tg_conv1d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     tg_conv2d_opts opts) {
    return conv_apply("tg_conv1d", &conv1d_op, ctx, x, weight, bias, opts, true);
}
