/*
 * ops/conv2d_gemm.c — the CPU kernels of 2-D (and 1-D) convolution, PyTorch's F.conv2d /
 * F.conv1d with stride, zero padding, dilation, groups and an optional bias: the path
 * choice, tiled im2col + SGEMM (dense, grouped), SGEMM on NCHW (pointwise) and the bias.
 * The op itself (records, cost model, TG_CONV_ALGO_AUTO, argument checks) is
 * ops/conv2d.c; depthwise and Winograd kernels are ops/conv2d_depthwise.c and
 * ops/conv2d_winograd.c.
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

#include <cblas.h>
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
void conv2d_bias_backward_cpu(float *dbias, const float *dout, int64_t N, int64_t C,
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
    if (dbias) conv2d_bias_backward_cpu(dbias, dout, g->N, g->C_out, ncols);
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
    if (dbias) conv2d_bias_backward_cpu(dbias, dout, g->N, g->C_out, HW);
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
