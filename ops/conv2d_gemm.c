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

#include "../core/core.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

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

/* ---------------------------------------------------------------- threads */

/* Below this many multiply-adds an op runs on one thread: a parallel region costs a few
 * microseconds, about what one core does in 64 K multiply-adds. */
#define CONV2D_PARALLEL_MIN_MACS ((double)(1 << 16))


/* The team size for macs multiply-adds split into at most units pieces. With a BLAS that
 * does not nest, one thread, and the GEMMs thread themselves. */
static int team_for(double macs, int64_t units) {
#ifdef _OPENMP
    int64_t nt = macs < CONV2D_PARALLEL_MIN_MACS ? 1 : tg_get_num_threads();
    if (omp_in_parallel() || !tg_blas_nests()) nt = 1; /* no nesting */
    if (nt > units) nt = units;
    return nt < 1 ? 1 : (int)nt;
#else
    (void)macs;
    (void)units;
    return 1;
#endif
}

/* PARTS. Each kernel below cuts its work into nt parts, part t being what thread t of an
 * OpenMP team of nt did before (its own columns or rows, its own part of the workspace),
 * and runs them on tg_parallel_range (core/pool.c): on a busy machine the calling thread
 * starts at once and takes a part no other thread has claimed, instead of waiting at a
 * barrier for a thread that has not been scheduled. A part is the same calls whoever runs
 * it, so the bits are as with a team. Inside a part, tg_sgemm makes one serial call. */
typedef void (*part_fn)(void *arg, int t, int T);
typedef struct parts_job {
    part_fn fn;
    void *arg;
    int T;
} parts_job;

static void parts_range(void *arg, int64_t t0, int64_t t1) {
    const parts_job *p = arg;
    for (int64_t t = t0; t < t1; t++) p->fn(p->arg, (int)t, p->T);
}

static void run_parts(int nt, part_fn fn, void *arg) {
    if (nt <= 1) {
        fn(arg, 0, 1);
        return;
    }
    parts_job p = {.fn = fn, .arg = arg, .T = nt};
    tg_parallel_range(nt, 1, parts_range, &p);
}

/* Column chunks per (image, group) item in the forwards: whole items when they share out
 * evenly (or there are so many that the imbalance is small), else nt pieces each. */
static int64_t chunks_per_item(int64_t items, int64_t ncols, int nt) {
    int64_t chunks = items % nt == 0 || items >= 4 * nt ? 1 : nt;
    return chunks > ncols ? ncols : chunks;
}

/* y[o, a:b] = bias[o] for the Cog rows of one (image, group) block (ld ncols). */
static void fill_bias_cols(float *y, const float *bias, int64_t Cog, int64_t ncols, int64_t a,
                           int64_t b) {
    for (int64_t o = 0; o < Cog; o++) {
        float v = bias[o], *row = y + o * ncols;
#pragma omp simd
        for (int64_t i = a; i < b; i++) row[i] = v;
    }
}

/* db[o] += sum over n and the plane of dy[n, o], for channels o0 .. o1-1. Serial. */
static void bias_sums(float *dbias, const float *dout, int64_t N, int64_t C, int64_t plane,
                      int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o++) {
        float s = 0.0f;
        for (int64_t n = 0; n < N; n++) {
            const float *dy = dout + (n * C + o) * plane;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < plane; i++) s += dy[i];
        }
        dbias[o] += s;
    }
}

typedef struct bias_job {
    float *dbias;
    const float *dout;
    int64_t N, C, plane;
} bias_job;

static void bias_channels(void *arg, int64_t o0, int64_t o1) {
    const bias_job *j = arg;
    bias_sums(j->dbias, j->dout, j->N, j->C, j->plane, o0, o1);
}

/* db[o] += sum over n and the plane of dy[n, o], whole channels per chunk of
 * tg_parallel_items. The GEMM backwards below do the same inside their own parallel
 * region (one fork, not two: each costs a time slice on a loaded machine); a channel's
 * sum is the same either way. */
void conv2d_bias_backward_cpu(float *dbias, const float *dout, int64_t N, int64_t C,
                              int64_t plane) {
    bias_job j = {.dbias = dbias, .dout = dout, .N = N, .C = C, .plane = plane};
    tg_parallel_items(C, (double)N * (double)plane, 65536, 32768, bias_channels, &j);
}

/* ---------------------------------------------------------------- im2col / col2im tiles */

/* col ((k1 - k0) x tc) written: rows k0 .. k1-1 (k = (c, kh, kw), K = Cg KH KW) and
 * output columns c0 .. c0+tc-1 (flattened oh OW + ow) of the im2col matrix of x
 * (Cg, H, W), the group's channels of one image. Serial: the callers split the work. */
static void im2col_tile(float *col, const float *x, const conv2d_geom *g, int64_t k0,
                        int64_t k1, int64_t c0, int64_t tc) {
    const int64_t KK = g->KH * g->KW, H = g->H, W = g->W, OW = g->OW;
    const int64_t sw = g->stride_w;
    for (int64_t k = k0; k < k1; k++) {
        int64_t c = k / KK, kh = k % KK / g->KW, kw = k % g->KW;
        int64_t off = kw * g->dil_w - g->pad_w, lo, hi;
        valid_range(off, sw, W, OW, &lo, &hi);
        const float *xc = x + c * H * W;
        float *row = col + (k - k0) * tc;
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

/* dx (Cg, H, W) accumulated for input channels ch0 .. ch1-1: the scatter-add of dcol
 * ((ch1 - ch0) KH KW x tc, its rows those channels' rows of the im2col matrix), the
 * transpose of im2col_tile. Serial: the callers give each thread whole channels. */
static void col2im_tile(float *dx, const float *dcol, const conv2d_geom *g, int64_t ch0,
                        int64_t ch1, int64_t c0, int64_t tc) {
    const int64_t KK = g->KH * g->KW, H = g->H, W = g->W, OW = g->OW;
    const int64_t sw = g->stride_w;
    for (int64_t c = ch0; c < ch1; c++) {
        float *dxc = dx + c * H * W;
        for (int64_t kk = 0; kk < KK; kk++) {
            int64_t kh = kk / g->KW, kw = kk % g->KW;
            int64_t off = kw * g->dil_w - g->pad_w, lo, hi;
            valid_range(off, sw, W, OW, &lo, &hi);
            const float *row = dcol + ((c - ch0) * KK + kk) * tc;
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

/* THREADS. One tg_parallel_range of nt parts per call (run_parts above), every GEMM a
 * single serial call inside its part: with one image of MNIST's 14x14 the GEMMs are too
 * small for OpenBLAS to split well, and a fork per im2col tile and per GEMM cost more
 * than the work. The forward gives each part whole (image, group) items, or a slice of
 * every item's output columns when the items do not share out evenly; each part builds
 * its own columns' im2col in its own part of the workspace (tile_cols / nt columns). The
 * backward gives each part a slice of the K rows of the im2col matrix, whole input
 * channels when dx is wanted: its rows of col, its columns of dW, its rows of dcol and
 * its channels of dx; it walks every image and tile in order.
 * Either way each output element is computed by the same sequence of operations as with
 * one thread (a column or row slice of a GEMM computes those elements exactly as the
 * whole GEMM does), so results do not depend on the thread count
 * (tests/test_conv2d.c checks 1, 2 and 3 threads bit for bit). */

typedef struct gemm_fwd_job {
    float *out, *workspace;
    const float *inp, *weight, *bias;
    const conv2d_geom *g;
    int64_t chunks, items, sub;
} gemm_fwd_job;

/* Part t of the forward: items t/T of the (image, group, column chunk) list, tile by tile,
 * its im2col in part t of the workspace. */
static void gemm_forward_part(void *arg, int t, int T) {
    const gemm_fwd_job *j = arg;
    const conv2d_geom *g = j->g;
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW, HW = g->H * g->W;
    const int64_t chunks = j->chunks, items = j->items, sub = j->sub;
    float *col = j->workspace + t * K * sub; /* this part's K x sub columns */
    for (int64_t it = items * t / T; it < items * (t + 1) / T; it++) {
        const int64_t n = it / (G * chunks), grp = it / chunks % G, c = it % chunks;
        const int64_t a = ncols * c / chunks, b = ncols * (c + 1) / chunks;
        const float *x = j->inp + (n * g->C_in + grp * Cg) * HW;
        float *y = j->out + (n * g->C_out + grp * Cog) * ncols;
        for (int64_t c0 = a; c0 < b; c0 += sub) {
            int64_t tc = b - c0 < sub ? b - c0 : sub;
            /* the bias goes into this tile's columns just before the GEMM adds onto them,
             * so they are still in cache */
            if (j->bias) fill_bias_cols(y, j->bias + grp * Cog, Cog, ncols, c0, c0 + tc);
            im2col_tile(col, x, g, 0, K, c0, tc);
            /* y[:, c0 : c0+tc] (Cog x tc, ldc OH OW) = W[grp] (Cog x K) . col (K x tc) */
            tg_sgemm(false, false, Cog, tc, K, 1.0f, j->weight + grp * Cog * K, K, col, tc,
                     j->bias ? 1.0f : 0.0f, y + c0, ncols);
        }
    }
}

void conv2d_gemm_forward_cpu(float *out, const float *inp, const float *weight,
                             const float *bias, const conv2d_geom *g, float *workspace,
                             int64_t tile_cols) {
    const int64_t G = g->groups, Cg = g->C_in / G;
    const int64_t K = Cg * g->KH * g->KW, ncols = g->OH * g->OW;
    if (tile_cols > ncols) tile_cols = ncols; /* the workspace holds no more */
    const int nt = team_for((double)g->N * g->C_out * K * ncols, tile_cols);
    const int64_t chunks = chunks_per_item(g->N * G, ncols, nt);
    gemm_fwd_job j = {.out = out, .workspace = workspace, .inp = inp, .weight = weight,
                      .bias = bias, .g = g, .chunks = chunks, .items = g->N * G * chunks,
                      .sub = tile_cols / nt};
    run_parts(nt, gemm_forward_part, &j);
}

typedef struct gemm_bwd_job {
    float *dinp, *dweight, *dbias, *workspace;
    const float *dout, *inp, *weight;
    const conv2d_geom *g;
    int64_t tile_cols, unit, units;
    bool dinp_fresh;
} gemm_bwd_job;

/* Part t of the backward: rows k0 .. k1-1 of the im2col matrix (whole input channels when
 * dx is wanted), every image and tile in order, and its share of the bias channels. */
static void gemm_backward_part(void *arg, int t, int T) {
    const gemm_bwd_job *j = arg;
    const conv2d_geom *g = j->g;
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, KK = g->KH * g->KW;
    const int64_t K = Cg * KK, ncols = g->OH * g->OW, HW = g->H * g->W;
    const int64_t tile_cols = j->tile_cols, unit = j->unit, units = j->units;
    const int64_t k0 = units * t / T * unit, k1 = units * (t + 1) / T * unit, kt = k1 - k0;
    float *dinp = j->dinp, *dweight = j->dweight;
    if (j->dbias) /* this part's share of the bias channels */
        bias_sums(j->dbias, j->dout, g->N, g->C_out, ncols, g->C_out * t / T,
                  g->C_out * (t + 1) / T);
    float *col = j->workspace + k0 * tile_cols; /* rows k0 .. k1-1 of the tile */
    for (int64_t n = 0; kt > 0 && n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            const float *x = j->inp + (n * g->C_in + grp * Cg) * HW;
            const float *dy = j->dout + (n * g->C_out + grp * Cog) * ncols;
            const float *w = j->weight + grp * Cog * K;
            float *dxc = dinp ? dinp + (n * g->C_in + grp * Cg + k0 / KK) * HW : NULL;
            /* col2im adds: a fresh dx gets this part's channels of this image zeroed here,
             * just before they are accumulated (cache-warm) */
            if (dxc && j->dinp_fresh) memset(dxc, 0, (size_t)(kt / KK * HW) * sizeof(float));
            for (int64_t c0 = 0; c0 < ncols; c0 += tile_cols) {
                int64_t tc = ncols - c0 < tile_cols ? ncols - c0 : tile_cols;
                if (dweight) {
                    /* dW[grp][:, k0:k1] (Cog x kt) += dy tile (Cog x tc) . col^T */
                    im2col_tile(col, x, g, k0, k1, c0, tc);
                    tg_sgemm(false, true, Cog, kt, tc, 1.0f, dy + c0, ncols, col, tc, 1.0f,
                             dweight + grp * Cog * K + k0, K);
                }
                if (dinp) {
                    /* dcol rows k0:k1 (kt x tc) = W[grp][:, k0:k1]^T (kt x Cog) . dy tile
                     * (Cog x tc), reusing the rows, then scatter-added into dx. */
                    tg_sgemm(true, false, kt, tc, Cog, 1.0f, w + k0, K, dy + c0, ncols, 0.0f,
                             col, tc);
                    col2im_tile(dinp + (n * g->C_in + grp * Cg) * HW, col, g, k0 / KK, k1 / KK,
                                c0, tc);
                }
            }
        }
    }
}

void conv2d_gemm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const conv2d_geom *g,
                              float *workspace, int64_t tile_cols, bool dinp_fresh) {
    const int64_t KK = g->KH * g->KW, K = g->C_in / g->groups * KK, ncols = g->OH * g->OW;
    if (!dinp && !dweight) {
        if (dbias) conv2d_bias_backward_cpu(dbias, dout, g->N, g->C_out, ncols);
        return;
    }
    if (tile_cols > ncols) tile_cols = ncols; /* the workspace holds no more */
    /* Parts own whole input channels when dx is wanted (col2im of a channel's rows
     * writes that channel only), single rows of col otherwise. */
    const int64_t unit = dinp ? KK : 1, units = K / unit;
    gemm_bwd_job j = {.dinp = dinp, .dweight = dweight, .dbias = dbias,
                      .workspace = workspace, .dout = dout, .inp = inp, .weight = weight,
                      .g = g, .tile_cols = tile_cols, .unit = unit, .units = units,
                      .dinp_fresh = dinp_fresh};
    run_parts(team_for((double)g->N * g->C_out * K * ncols, units), gemm_backward_part, &j);
}

/* ---------------------------------------------------------------- pointwise */

/* Threads as in the dense path: the forward splits (image, group) items or their columns.
 * The backward gives each thread input channels c0 .. c1-1 of dW (its columns, over every
 * image in order) and, for planes of PW_DX_MIN_PLANE or more, chunks of a quarter plane
 * (1024 .. 8192 columns) of dx: dx[:, a:b] = W^T dy[:, a:b], one (Cg x Cog)(Cog x cols)
 * GEMM per chunk with every input channel, beta = 0 for a fresh dx. Against the channel
 * split after the tape's zeroing pass, bench-measured at 128x128 on 2 threads (OpenBLAS
 * SkylakeX kernels, medians of 15): 162-167 GFLOP/s before, 165-167 with chunks of 1024,
 * 173-177 with 4096, 176-179 with 8192 (fewer, longer GEMMs; the zeroing gone). The chunks
 * depend on the shape, not on the thread count, so each dx element is computed by the
 * same call whatever the team. Small planes keep the channel split (a plane of 7x7 is one
 * chunk: it would leave the other threads idle). */
#define PW_DX_MIN_PLANE 4096 /* plane size from which dx is split by column chunks */

/* Columns per dx chunk: a quarter of the plane (4 chunks per image), 1024 .. 8192. */
static int64_t pw_dx_cols(int64_t HW) {
    int64_t c = (HW / 4 + 15) / 16 * 16;
    return c < 1024 ? 1024 : c > 8192 ? 8192 : c;
}

typedef struct pw_job {
    float *out, *dinp, *dweight, *dbias;
    const float *inp, *dout, *weight, *bias;
    const conv2d_geom *g;
    int64_t chunks, items, cols, per;
    bool by_cols, dinp_fresh;
} pw_job;

/* Part t of the forward: items t/T of the (image, group, column chunk) list. */
static void pointwise_forward_part(void *arg, int t, int T) {
    const pw_job *j = arg;
    const conv2d_geom *g = j->g;
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, HW = g->H * g->W;
    const int64_t chunks = j->chunks, items = j->items;
    for (int64_t it = items * t / T; it < items * (t + 1) / T; it++) {
        const int64_t n = it / (G * chunks), grp = it / chunks % G, c = it % chunks;
        const int64_t a = HW * c / chunks, b = HW * (c + 1) / chunks;
        float *y = j->out + (n * g->C_out + grp * Cog) * HW;
        if (j->bias) fill_bias_cols(y, j->bias + grp * Cog, Cog, HW, a, b);
        /* y[n, grp][:, a:b] (Cog x (b-a)) = W[grp] (Cog x Cg) . x[n, grp][:, a:b] */
        tg_sgemm(false, false, Cog, b - a, Cg, 1.0f, j->weight + grp * Cog * Cg, Cg,
                 j->inp + (n * g->C_in + grp * Cg) * HW + a, HW, j->bias ? 1.0f : 0.0f, y + a,
                 HW);
    }
}

void conv2d_pointwise_forward_cpu(float *out, const float *inp, const float *weight,
                                  const float *bias, const conv2d_geom *g) {
    const int64_t G = g->groups, Cg = g->C_in / G, HW = g->H * g->W;
    const int nt = team_for((double)g->N * g->C_out * Cg * HW, g->N * G * HW);
    const int64_t chunks = chunks_per_item(g->N * G, HW, nt);
    pw_job j = {.out = out, .inp = inp, .weight = weight, .bias = bias, .g = g,
                .chunks = chunks, .items = g->N * G * chunks};
    run_parts(nt, pointwise_forward_part, &j);
}

/* dx[n, grp][r0:r1, a:b] (+)= W[grp][:, r0:r1]^T . dy[n, grp][:, a:b]: rows r0 .. r1-1 and
 * columns a .. b-1 of one (image, group) block of dx. */
static void pointwise_dx(float *dinp, const float *dout, const float *weight,
                         const conv2d_geom *g, int64_t n, int64_t grp, int64_t r0, int64_t r1,
                         int64_t a, int64_t b, bool fresh) {
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, HW = g->H * g->W;
    tg_sgemm(true, false, r1 - r0, b - a, Cog, 1.0f, weight + grp * Cog * Cg + r0, Cg,
             dout + (n * g->C_out + grp * Cog) * HW + a, HW, fresh ? 0.0f : 1.0f,
             dinp + (n * g->C_in + grp * Cg + r0) * HW + a, HW);
}

/* Part t of the backward: its share of the bias channels, chunks t/T of dx's column
 * chunks (large planes), and input channels c0 .. c1-1 of dW (and of dx, small planes). */
static void pointwise_backward_part(void *arg, int t, int T) {
    const pw_job *j = arg;
    const conv2d_geom *g = j->g;
    const int64_t G = g->groups, Cg = g->C_in / G, Cog = g->C_out / G, HW = g->H * g->W;
    const int64_t c0 = Cg * t / T, c1 = Cg * (t + 1) / T, ct = c1 - c0;
    const int64_t chunks = j->chunks, per = j->per, cols = j->cols;
    float *dinp = j->dinp;
    if (j->dbias) /* this part's share of the bias channels */
        bias_sums(j->dbias, j->dout, g->N, g->C_out, HW, g->C_out * t / T,
                  g->C_out * (t + 1) / T);
    for (int64_t it = chunks * t / T; dinp && j->by_cols && it < chunks * (t + 1) / T; it++) {
        const int64_t n = it / (G * per), grp = it / per % G, c = it % per;
        const int64_t a = c * cols, b = a + cols < HW ? a + cols : HW;
        pointwise_dx(dinp, j->dout, j->weight, g, n, grp, 0, Cg, a, b, j->dinp_fresh);
    }
    for (int64_t n = 0; ct > 0 && n < g->N; n++) {
        for (int64_t grp = 0; grp < G; grp++) {
            if (dinp && !j->by_cols)
                pointwise_dx(dinp, j->dout, j->weight, g, n, grp, c0, c1, 0, HW, j->dinp_fresh);
            if (j->dweight) /* dW[grp][:, c0:c1] (Cog x ct) += dy (Cog x HW) . x[c0:c1]^T */
                tg_sgemm(false, true, Cog, ct, HW, 1.0f, j->dout + (n * g->C_out + grp * Cog) * HW,
                         HW, j->inp + (n * g->C_in + grp * Cg + c0) * HW, HW, 1.0f,
                         j->dweight + grp * Cog * Cg + c0, Cg);
        }
    }
}

void conv2d_pointwise_backward_cpu(float *dinp, float *dweight, float *dbias,
                                   const float *dout, const float *inp, const float *weight,
                                   const conv2d_geom *g, bool dinp_fresh) {
    const int64_t G = g->groups, Cg = g->C_in / G, HW = g->H * g->W;
    if (!dinp && !dweight) {
        if (dbias) conv2d_bias_backward_cpu(dbias, dout, g->N, g->C_out, HW);
        return;
    }
    const int64_t cols = pw_dx_cols(HW), per = (HW + cols - 1) / cols;
    pw_job j = {.dinp = dinp, .dweight = dweight, .dbias = dbias, .inp = inp, .dout = dout,
                .weight = weight, .g = g, .chunks = g->N * G * per, .cols = cols, .per = per,
                .by_cols = HW >= PW_DX_MIN_PLANE, .dinp_fresh = dinp_fresh};
    run_parts(team_for((double)g->N * g->C_out * Cg * HW, Cg), pointwise_backward_part, &j);
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
                         float *workspace, int64_t tile_cols, bool dinp_fresh) {
    switch (conv2d_choose_path(g)) {
    case CONV2D_POINTWISE:
        conv2d_pointwise_backward_cpu(dinp, dweight, dbias, dout, inp, weight, g, dinp_fresh);
        break;
    case CONV2D_DEPTHWISE:
        conv2d_depthwise_backward_cpu(dinp, dweight, dbias, dout, inp, weight, g, dinp_fresh);
        break;
    default:
        conv2d_gemm_backward_cpu(dinp, dweight, dbias, dout, inp, weight, g, workspace,
                                 tile_cols > 0 ? tile_cols : conv2d_default_tile_cols(g),
                                 dinp_fresh);
    }
}
