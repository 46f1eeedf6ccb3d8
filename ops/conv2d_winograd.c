/*
 * ops/conv2d_winograd.c — Winograd F(4x4, 3x3) kernels for dense 3x3 stride-1 convolutions
 * (groups 1, dilation 1, padding 0..2 each way). Opt-in: tg_ctx_set_conv_algo(ctx,
 * TG_CONV_ALGO_WINOGRAD); the op is ops/conv2d.c, the other paths ops/conv2d_gemm.c.
 *
 * THE IDEA (Lavin & Gray 2015). A 1-D correlation producing m = 4 outputs of a 3-tap
 * filter from alpha = 6 inputs, y_i = sum_j d_{i+j} g_j, is a polynomial product evaluated
 * at 6 points (0, 1, -1, 2, -2 and infinity) and interpolated back:
 *     y = A^T [ (G g) .* (B^T d) ]          B^T 6x6, G 6x3, A^T 4x6 (constants below)
 * In 2-D, for a 6x6 input tile d and a 3x3 filter g, the 4x4 output tile is
 *     Y = A^T [ (G g G^T) .* (B^T d B) ] A.
 * The elementwise product is where the channels meet: with U = G g G^T per (out, in)
 * channel pair and V = B^T d B per (in channel, tile), each of the 36 positions xi of the
 * 6x6 grid is one matrix product over the input channels,
 *     M[xi] (C_out x tiles) = U[xi] (C_out x C_in) . V[xi] (C_in x tiles),
 * and Y = A^T M A per (out channel, tile). Direct 3x3: 9 multiply-adds per output and
 * input channel; here 36 per 16 outputs = 2.25: 4x fewer, in 36 SGEMMs, plus transforms
 * that cost O(channels x tiles), not O(channels^2).
 *
 * BACKWARD. Everything is linear, so both gradients are Winograd convolutions again:
 *   dx  the transposed convolution of dy with W is a stride-1 correlation of dy with the
 *       kernel rotated 180 degrees and in/out channels swapped, padding 2 - pad: the same
 *       forward kernel with U' = G rot180(W)^T G^T, accumulated into dx.
 *   dW  differentiating sum(dy .* Y) through the formula above gives, per tile,
 *           dg = G^T [ (A dY A^T) .* (B^T d B) ] G      (A dY A^T: 6x6 from a 4x4 dy tile)
 *       so P[xi] (C_out x C_in) = sum over tiles Z[xi] V[xi]^T with Z = A dY A^T: 36 SGEMMs
 *       over the tiles, then dW += G^T P G per channel pair. The algebra is the forward's
 *       read backwards, so the same 6 points serve; no new constants.
 *   db  the plain sum of dy (ops/conv2d_gemm.c).
 *
 * ACCURACY. The transforms multiply values by up to 8 (A) and 1/24 (G) and subtract
 * them, so fp32 rounding error grows: against a double-precision convolution the worst
 * error is about 5e-6 of the largest output on a 64-channel layer, 10-30x the im2col +
 * SGEMM path's (tests/test_winograd.c keeps it below 2e-5 and 50x). That is why it is
 * opt-in. Tiles at the bottom/right edge read zeros past the input; their outputs past
 * OH, OW are dropped.
 *
 * LAYOUT AND BLOCKING. Tiles are numbered over all images (n, tile row, tile column), so a
 * batch of small images fills a block as well as one large image. A block of Tb tiles is
 * transformed, multiplied and written back before the next: V (36, C_in, Tb), M (36,
 * C_out, Tb), U (36, C_out, C_in). V and M together take about 32 MiB: on the 2-core VM
 * that ran C=256 layers 15-20% faster than 8 MiB blocks at 64x64 and 256x256 (each block
 * packs the 36 U panels again). Transforms run over 16 tiles at once (one AVX-512 vector;
 * plain C that GCC vectorises), parallel over channels; the 36 GEMMs are spread over the
 * threads, each a single-threaded SGEMM.
 */
#include "conv2d.h"

#include <cblas.h>
#include <stdbool.h>
#include <string.h>

#define WL 16                       /* tiles transformed together: one 512-bit vector */
#define WINO_BLOCK_BYTES ((int64_t)32 << 20) /* V and M of one block together */

/* One Winograd convolution: `in` (N, C, H, W) -> `out` (N, K, OH, OW), zero padding ph,
 * pw, OH = H + 2 ph - 2, OW = W + 2 pw - 2. */
typedef struct wino_plan {
    int64_t N, C, K, H, W, OH, OW;
    int64_t ph, pw;
    int64_t th, tw, T; /* tiles per column, per row, in all (N th tw) */
    int64_t Tb;        /* tiles per block, a multiple of WL */
} wino_plan;

/* Where a tile sits: image n, first input row/column iy, ix (may be negative), first
 * output row/column oy, ox. */
typedef struct wino_tile {
    int64_t n;
    int32_t iy, ix, oy, ox;
} wino_tile;

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* tile_block: tiles per block, 0 for the default (V and M within WINO_BLOCK_BYTES). */
static wino_plan make_plan(int64_t N, int64_t C, int64_t K, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, int64_t ph, int64_t pw,
                           int64_t tile_block) {
    wino_plan p = {.N = N, .C = C, .K = K, .H = H, .W = W, .OH = OH, .OW = OW, .ph = ph,
                   .pw = pw};
    p.th = (OH + 3) / 4;
    p.tw = (OW + 3) / 4;
    p.T = N * p.th * p.tw;
    int64_t per_tile = 36 * (C + K) * (int64_t)sizeof(float);
    int64_t tb = tile_block > 0 ? round_up(tile_block, WL) : WINO_BLOCK_BYTES / per_tile;
    tb -= tb % WL;
    if (tb < WL) tb = WL;
    if (tb > round_up(p.T, WL)) tb = round_up(p.T, WL);
    p.Tb = tb;
    return p;
}

/* The forward's plan for g, and the plan of its dx pass (dy -> dx). */
static wino_plan forward_plan(const conv2d_geom *g, int64_t tile_block) {
    return make_plan(g->N, g->C_in, g->C_out, g->H, g->W, g->OH, g->OW, g->pad_h, g->pad_w,
                     tile_block);
}

static wino_plan dinp_plan(const conv2d_geom *g, int64_t tile_block) {
    return make_plan(g->N, g->C_out, g->C_in, g->OH, g->OW, g->H, g->W, 2 - g->pad_h,
                     2 - g->pad_w, tile_block);
}

bool conv2d_winograd_supported(const conv2d_geom *g) {
    return g->groups == 1 && g->KH == 3 && g->KW == 3 && g->stride_h == 1 &&
           g->stride_w == 1 && g->dil_h == 1 && g->dil_w == 1 && g->pad_h <= 2 &&
           g->pad_w <= 2;
}

/* Floats for U, V, M and the tile table of one plan's convolution. */
static size_t plan_floats(const wino_plan *p) {
    size_t tiles = (size_t)p->Tb * sizeof(wino_tile) / sizeof(float) + 1;
    return (size_t)(36 * p->K * p->C) + (size_t)(36 * (p->C + p->K) * p->Tb) + tiles;
}

size_t conv2d_winograd_workspace_floats(const conv2d_geom *g, bool backward,
                                         int64_t tile_block) {
    wino_plan f = forward_plan(g, tile_block);
    size_t n = plan_floats(&f); /* forward, and the dW pass (P, V, Z have U, V, M's sizes) */
    if (backward) {
        wino_plan b = dinp_plan(g, tile_block);
        size_t nb = plan_floats(&b);
        if (nb > n) n = nb;
    }
    return n + 64; /* room to align each of the four parts to 64 bytes */
}

/* dst[0..n) = src[0..n), n <= WL: a whole vector when n == WL (a variable-length memcpy
 * would be a library call per row). */
static inline void copy_lanes(float *restrict dst, const float *restrict src, int64_t n) {
    if (n == WL) {
#pragma omp simd
        for (int l = 0; l < WL; l++) dst[l] = src[l];
    } else {
        memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

/* ---------------------------------------------------------------- 1-D transforms */
/* Each works on WL lanes (tiles or channels) at once; `s` strides between the values. */

/* B^T d: 6 inputs -> 6 (points 0, 1, -1, 2, -2, infinity). */
static inline void bt6(const float *d, int64_t s, float *t, int64_t ts) {
#pragma omp simd
    for (int l = 0; l < WL; l++) {
        float d0 = d[l], d1 = d[s + l], d2 = d[2 * s + l], d3 = d[3 * s + l];
        float d4 = d[4 * s + l], d5 = d[5 * s + l];
        t[l] = 4 * d0 - 5 * d2 + d4;
        t[ts + l] = -4 * (d1 + d2) + d3 + d4;
        t[2 * ts + l] = 4 * (d1 - d2) - d3 + d4;
        t[3 * ts + l] = 2 * (d3 - d1) - d2 + d4;
        t[4 * ts + l] = 2 * (d1 - d3) - d2 + d4;
        t[5 * ts + l] = 4 * d1 - 5 * d3 + d5;
    }
}

/* A^T m: 6 -> 4 outputs. */
static inline void at4(const float *m, int64_t s, float *o, int64_t os) {
#pragma omp simd
    for (int l = 0; l < WL; l++) {
        float m0 = m[l], m1 = m[s + l], m2 = m[2 * s + l], m3 = m[3 * s + l];
        float m4 = m[4 * s + l], m5 = m[5 * s + l];
        float a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4;
        o[l] = m0 + a + c;
        o[os + l] = b + 2 * d;
        o[2 * os + l] = a + 4 * c;
        o[3 * os + l] = b + 8 * d + m5;
    }
}

/* A y: 4 inputs (a dy tile row or column) -> 6. */
static inline void a6(const float *y, int64_t s, float *z, int64_t zs) {
#pragma omp simd
    for (int l = 0; l < WL; l++) {
        float y0 = y[l], y1 = y[s + l], y2 = y[2 * s + l], y3 = y[3 * s + l];
        float e = y0 + y2, f = y1 + y3, g = y0 + 4 * y2, h = 2 * y1 + 8 * y3;
        z[l] = y0;
        z[zs + l] = e + f;
        z[2 * zs + l] = e - f;
        z[3 * zs + l] = g + h;
        z[4 * zs + l] = g - h;
        z[5 * zs + l] = y3;
    }
}

/* G g: 3 filter taps -> 6. */
static inline void g6(const float *g, int64_t s, float *u, int64_t us) {
#pragma omp simd
    for (int l = 0; l < WL; l++) {
        float g0 = g[l], g1 = g[s + l], g2 = g[2 * s + l];
        float e = g0 + g2, f = g0 + 4 * g2;
        u[l] = g0 / 4;
        u[us + l] = -(e + g1) / 6;
        u[2 * us + l] = -(e - g1) / 6;
        u[3 * us + l] = (f + 2 * g1) / 24;
        u[4 * us + l] = (f - 2 * g1) / 24;
        u[5 * us + l] = g2;
    }
}

/* G^T p: 6 -> 3 (the transpose of g6). */
static inline void gt3(const float *p, int64_t s, float *r, int64_t rs) {
#pragma omp simd
    for (int l = 0; l < WL; l++) {
        float p0 = p[l], p1 = p[s + l], p2 = p[2 * s + l], p3 = p[3 * s + l];
        float p4 = p[4 * s + l], p5 = p[5 * s + l];
        r[l] = p0 / 4 - (p1 + p2) / 6 + (p3 + p4) / 24;
        r[rs + l] = (p2 - p1) / 6 + (p3 - p4) / 12;
        r[2 * rs + l] = (p3 + p4 - p1 - p2) / 6 + p5;
    }
}

/* ---------------------------------------------------------------- weight transforms */

/* U (36, NO, NI): U[xi][o][i] = (G g G^T)[xi] with g = w[o][i] (w (NO, NI, 3, 3)), or
 * with flip, g = rot180(w[i][o]) (w (NI, NO, 3, 3)): the filters of the dx pass. */
static void weight_transform(float *U, const float *w, int64_t NO, int64_t NI, bool flip) {
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < NO; o++) {
        float g[9][WL], t[18][WL], u[36][WL];
        for (int64_t i0 = 0; i0 < NI; i0 += WL) {
            int64_t n = NI - i0 < WL ? NI - i0 : WL;
            for (int l = 0; l < WL; l++) {
                int64_t i = i0 + (l < n ? l : 0); /* pad lanes repeat a valid channel */
                const float *src = flip ? w + (i * NO + o) * 9 : w + (o * NI + i) * 9;
                for (int k = 0; k < 9; k++) g[k][l] = src[flip ? 8 - k : k];
            }
            for (int c = 0; c < 3; c++) g6(g[c], 3 * WL, t[c], 3 * WL); /* columns: G g */
            for (int r = 0; r < 6; r++) g6(t[3 * r], WL, u[6 * r], WL);  /* rows: . G^T */
            for (int xi = 0; xi < 36; xi++)
                copy_lanes(U + (xi * NO + o) * NI + i0, u[xi], n);
        }
    }
}

/* dW (K, C, 3, 3) += G^T P[.][k][c] G, P (36, K, C). */
static void weight_grad_transform(float *dweight, const float *P, int64_t K, int64_t C) {
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < K; k++) {
        float p[36][WL], t[18][WL], r[9][WL];
        for (int64_t c0 = 0; c0 < C; c0 += WL) {
            int64_t n = C - c0 < WL ? C - c0 : WL;
            for (int xi = 0; xi < 36; xi++) {
                copy_lanes(p[xi], P + (xi * K + k) * C + c0, n);
                for (int64_t l = n; l < WL; l++) p[xi][l] = 0;
            }
            for (int c = 0; c < 6; c++) gt3(p[c], 6 * WL, t[c], 6 * WL); /* columns */
            for (int a = 0; a < 3; a++) gt3(t[6 * a], WL, r[3 * a], WL);  /* rows */
            for (int64_t l = 0; l < n; l++) {
                float *dw = dweight + (k * C + c0 + l) * 9;
                for (int q = 0; q < 9; q++) dw[q] += r[q][l];
            }
        }
    }
}

/* ---------------------------------------------------------------- tile transforms */

static void tile_table(wino_tile *tiles, const wino_plan *p, int64_t t0, int64_t nt) {
    for (int64_t i = 0; i < nt; i++) {
        int64_t t = t0 + i, per_image = p->th * p->tw;
        int64_t n = t / per_image, r = t % per_image, ty = r / p->tw, tx = r % p->tw;
        tiles[i] = (wino_tile){.n = n, .iy = (int32_t)(4 * ty - p->ph),
                               .ix = (int32_t)(4 * tx - p->pw), .oy = (int32_t)(4 * ty),
                               .ox = (int32_t)(4 * tx)};
    }
}

/* V (36, C, Tb) columns 0..nt-1 = B^T d B of each tile's 6x6 input patch (zeros outside
 * the H x W plane). */
static void input_transform(float *V, const float *in, const wino_plan *p,
                            const wino_tile *tiles, int64_t nt) {
    const int64_t C = p->C, H = p->H, W = p->W, Tb = p->Tb;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        float d[36][WL], t[36][WL], v[36][WL];
        for (int64_t t0 = 0; t0 < nt; t0 += WL) {
            int64_t n = nt - t0 < WL ? nt - t0 : WL;
            for (int64_t l = 0; l < WL; l++) {
                const wino_tile *tl = &tiles[t0 + (l < n ? l : 0)];
                const float *x = in + (tl->n * C + c) * H * W;
                if (tl->iy >= 0 && tl->ix >= 0 && tl->iy + 6 <= H && tl->ix + 6 <= W) {
                    const float *row = x + tl->iy * W + tl->ix;
                    for (int i = 0; i < 6; i++, row += W)
                        for (int j = 0; j < 6; j++) d[6 * i + j][l] = row[j];
                } else {
                    for (int i = 0; i < 6; i++) {
                        int64_t iy = tl->iy + i;
                        for (int j = 0; j < 6; j++) {
                            int64_t ix = tl->ix + j;
                            bool in_plane = iy >= 0 && iy < H && ix >= 0 && ix < W;
                            d[6 * i + j][l] = in_plane ? x[iy * W + ix] : 0.0f;
                        }
                    }
                }
            }
            for (int j = 0; j < 6; j++) bt6(d[j], 6 * WL, t[j], 6 * WL); /* columns */
            for (int i = 0; i < 6; i++) bt6(t[6 * i], WL, v[6 * i], WL);  /* rows */
            for (int xi = 0; xi < 36; xi++)
                copy_lanes(V + (xi * C + c) * Tb + t0, v[xi], n);
        }
    }
}

/* out (N, K, OH, OW), each tile's 4x4 block = A^T M A (+ bias[k], or added to what is
 * there when accumulate); rows and columns past OH, OW are dropped. */
static void output_transform(float *out, const float *M, const float *bias, bool accumulate,
                             const wino_plan *p, const wino_tile *tiles, int64_t nt) {
    const int64_t K = p->K, OH = p->OH, OW = p->OW, Tb = p->Tb;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < K; k++) {
        float m[36][WL], t[24][WL], o[16][WL];
        float b = bias ? bias[k] : 0.0f;
        for (int64_t t0 = 0; t0 < nt; t0 += WL) {
            int64_t n = nt - t0 < WL ? nt - t0 : WL;
            for (int xi = 0; xi < 36; xi++) {
                copy_lanes(m[xi], M + (xi * K + k) * Tb + t0, n);
                for (int64_t l = n; l < WL; l++) m[xi][l] = 0.0f;
            }
            for (int j = 0; j < 6; j++) at4(m[j], 6 * WL, t[j], 6 * WL); /* columns */
            for (int i = 0; i < 4; i++) at4(t[6 * i], WL, o[4 * i], WL);  /* rows */
            for (int64_t l = 0; l < n; l++) {
                const wino_tile *tl = &tiles[t0 + l];
                float *y = out + ((tl->n * K + k) * OH + tl->oy) * OW + tl->ox;
                int64_t rows = OH - tl->oy < 4 ? OH - tl->oy : 4;
                int64_t cols = OW - tl->ox < 4 ? OW - tl->ox : 4;
                for (int64_t i = 0; i < rows; i++, y += OW)
                    for (int64_t j = 0; j < cols; j++)
                        y[j] = accumulate ? y[j] + o[4 * i + j][l] : o[4 * i + j][l] + b;
            }
        }
    }
}

/* Z (36, K, Tb) columns 0..nt-1 = A dY A^T of each tile's 4x4 block of dout (zeros past
 * OH, OW: those outputs do not exist). */
static void dout_transform(float *Z, const float *dout, const wino_plan *p,
                           const wino_tile *tiles, int64_t nt) {
    const int64_t K = p->K, OH = p->OH, OW = p->OW, Tb = p->Tb;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < K; k++) {
        float y[16][WL], t[24][WL], z[36][WL];
        for (int64_t t0 = 0; t0 < nt; t0 += WL) {
            int64_t n = nt - t0 < WL ? nt - t0 : WL;
            for (int64_t l = 0; l < WL; l++) {
                const wino_tile *tl = &tiles[t0 + (l < n ? l : 0)];
                const float *dy = dout + ((tl->n * K + k) * OH + tl->oy) * OW + tl->ox;
                int64_t rows = OH - tl->oy < 4 ? OH - tl->oy : 4;
                int64_t cols = OW - tl->ox < 4 ? OW - tl->ox : 4;
                for (int64_t i = 0; i < 4; i++)
                    for (int64_t j = 0; j < 4; j++)
                        y[4 * i + j][l] = i < rows && j < cols ? dy[i * OW + j] : 0.0f;
            }
            for (int j = 0; j < 4; j++) a6(y[j], 4 * WL, t[j], 4 * WL); /* columns */
            for (int i = 0; i < 6; i++) a6(t[4 * i], WL, z[6 * i], WL); /* rows */
            for (int xi = 0; xi < 36; xi++)
                copy_lanes(Z + (xi * K + k) * Tb + t0, z[xi], n);
        }
    }
}

/* ---------------------------------------------------------------- the passes */

static float *align64(float *p) {
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Carves U, V, M (or P, V, Z) and the tile table out of the workspace. */
static void carve(float *ws, const wino_plan *p, float **U, float **V, float **M,
                  wino_tile **tiles) {
    *U = align64(ws);
    *V = align64(*U + 36 * p->K * p->C);
    *M = align64(*V + 36 * p->C * p->Tb);
    *tiles = (wino_tile *)(void *)align64(*M + 36 * p->K * p->Tb);
}

/* out = conv(in) with the transformed filters U (36, K, C), block by block. */
static void wino_conv(float *out, const float *in, const float *U, const float *bias,
                      bool accumulate, const wino_plan *p, float *V, float *M,
                      wino_tile *tiles) {
    const int64_t C = p->C, K = p->K, Tb = p->Tb;
    for (int64_t t0 = 0; t0 < p->T; t0 += Tb) {
        int64_t nt = p->T - t0 < Tb ? p->T - t0 : Tb;
        tile_table(tiles, p, t0, nt);
        input_transform(V, in, p, tiles, nt);
        /* M[xi] (K x nt) = U[xi] (K x C) . V[xi] (C x nt): 36 single-threaded SGEMMs. */
#pragma omp parallel for schedule(static)
        for (int xi = 0; xi < 36; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)K, (int)nt, (int)C,
                        1.0f, U + xi * K * C, (int)C, V + xi * C * Tb, (int)Tb, 0.0f,
                        M + xi * K * Tb, (int)Tb);
        output_transform(out, M, bias, accumulate, p, tiles, nt);
    }
}

void conv2d_winograd_forward_cpu(float *out, const float *inp, const float *weight,
                                 const float *bias, const conv2d_geom *g, float *workspace,
                                 int64_t tile_block) {
    wino_plan p = forward_plan(g, tile_block);
    float *U, *V, *M;
    wino_tile *tiles;
    carve(workspace, &p, &U, &V, &M, &tiles);
    weight_transform(U, weight, p.K, p.C, false);
    wino_conv(out, inp, U, bias, false, &p, V, M, tiles);
}

void conv2d_winograd_backward_cpu(float *dinp, float *dweight, const float *dout,
                                  const float *inp, const float *weight,
                                  const conv2d_geom *g, float *workspace,
                                  int64_t tile_block) {
    float *U, *V, *M;
    wino_tile *tiles;
    if (dinp) {
        /* dx += conv(dy) with rot180(W), channels swapped, padding 2 - pad. */
        wino_plan p = dinp_plan(g, tile_block);
        carve(workspace, &p, &U, &V, &M, &tiles);
        weight_transform(U, weight, p.K, p.C, true);
        wino_conv(dinp, dout, U, NULL, true, &p, V, M, tiles);
    }
    if (dweight) {
        /* P[xi] (K x C) = sum over blocks Z[xi] (K x nt) . V[xi]^T (nt x C). */
        wino_plan p = forward_plan(g, tile_block);
        float *P, *Z;
        carve(workspace, &p, &P, &V, &Z, &tiles);
        const int64_t C = p.C, K = p.K, Tb = p.Tb;
        for (int64_t t0 = 0; t0 < p.T; t0 += Tb) {
            int64_t nt = p.T - t0 < Tb ? p.T - t0 : Tb;
            tile_table(tiles, &p, t0, nt);
            input_transform(V, inp, &p, tiles, nt);
            dout_transform(Z, dout, &p, tiles, nt);
            float beta = t0 == 0 ? 0.0f : 1.0f;
#pragma omp parallel for schedule(static)
            for (int xi = 0; xi < 36; xi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)K, (int)C, (int)nt,
                            1.0f, Z + xi * K * Tb, (int)Tb, V + xi * C * Tb, (int)Tb, beta,
                            P + xi * K * C, (int)C);
        }
        weight_grad_transform(dweight, P, K, C);
    }
}
