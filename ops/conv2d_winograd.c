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
 *       forward kernel with U' = G rot180(W)^T G^T, accumulated into dx. U' is stored
 *       in W's channel order, (36, C_out, C_in), and its GEMMs read it transposed.
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
 * packs the 36 U panels again). The transforms (ops/conv2d_winograd_transform.c) work on
 * runs of tiles along a tile row, vectorised across the tiles, parallel over channels and
 * runs; the 36 GEMMs are spread over the threads, each a single-threaded SGEMM.
 */
#include "conv2d.h"
#include "conv2d_winograd.h"

#include "../core/core.h"

#include <stdbool.h>

#define WL 16 /* tiles per block come in multiples of 16 */
#define WINO_BLOCK_BYTES ((int64_t)32 << 20) /* V and M of one block together */

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

int64_t conv2d_winograd_block_tiles(const conv2d_geom *g, int64_t tile_block) {
    return forward_plan(g, tile_block).Tb;
}

bool conv2d_winograd_supported(const conv2d_geom *g) {
    return g->groups == 1 && g->KH == 3 && g->KW == 3 && g->stride_h == 1 &&
           g->stride_w == 1 && g->dil_h == 1 && g->dil_w == 1 && g->pad_h <= 2 &&
           g->pad_w <= 2;
}

/* Floats for U, V, M and the run table of one plan's convolution. */
static size_t plan_floats(const wino_plan *p) {
    size_t tiles = (size_t)p->Tb * sizeof(wino_run) / sizeof(float) + 1;
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

/* ---------------------------------------------------------------- the passes */

static float *align64(float *p) {
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Carves U, V, M (or P, V, Z) and the run table out of the workspace. */
static void carve(float *ws, const wino_plan *p, float **U, float **V, float **M,
                  wino_run **runs) {
    *U = align64(ws);
    *V = align64(*U + 36 * p->K * p->C);
    *M = align64(*V + 36 * p->C * p->Tb);
    *runs = (wino_run *)(void *)align64(*M + 36 * p->K * p->Tb);
}

/* The 36 products of one block, one per chunk of tg_parallel_range (a product is the same
 * serial SGEMM whichever thread makes it: tg_sgemm makes one call inside a chunk):
 *   forward / dx pass   M[xi] (K x nt) = U[xi] (K x C, or its transpose) . V[xi] (C x nt)
 *   dW pass             P[xi] (K x C) (+)= Z[xi] (K x nt) . V[xi]^T (nt x C) */
typedef struct wino_gemms {
    const float *A, *V;
    float *out;
    int64_t K, C, nt, Tb;
    bool dx_pass, dw_pass;
    float beta;
} wino_gemms;

static void wino_gemm_range(void *arg, int64_t x0, int64_t x1) {
    const wino_gemms *g = arg;
    const int64_t K = g->K, C = g->C, Tb = g->Tb;
    for (int64_t xi = x0; xi < x1; xi++) {
        if (g->dw_pass)
            tg_sgemm(false, true, K, C, g->nt, 1.0f, g->A + xi * K * Tb, Tb, g->V + xi * C * Tb,
                     Tb, g->beta, g->out + xi * K * C, C);
        else
            tg_sgemm(g->dx_pass, false, K, g->nt, C, 1.0f, g->A + xi * K * C,
                     g->dx_pass ? K : C, g->V + xi * C * Tb, Tb, 0.0f, g->out + xi * K * Tb, Tb);
    }
}

/* out = conv(in) with the transformed filters U (36, K, C), block by block; or for the dx
 * pass (dx_pass), U (36, C, K) holds their transposes and the result is added to out. */
static void wino_conv(float *out, const float *in, const float *U, const float *bias,
                      bool dx_pass, bool add, const wino_plan *p, float *V, float *M,
                      wino_run *runs) {
    const int64_t C = p->C, K = p->K, Tb = p->Tb;
    for (int64_t t0 = 0; t0 < p->T; t0 += Tb) {
        int64_t nt = p->T - t0 < Tb ? p->T - t0 : Tb;
        int64_t nruns = wino_runs(runs, p, t0, nt);
        wino_input_transform(V, in, p, runs, nruns);
        /* M[xi] (K x nt) = U[xi] (K x C) . V[xi] (C x nt): 36 single-threaded SGEMMs. */
        wino_gemms gm = {.A = U, .V = V, .out = M, .K = K, .C = C, .nt = nt, .Tb = Tb,
                         .dx_pass = dx_pass};
        tg_parallel_range(36, 1, wino_gemm_range, &gm);
        wino_output_transform(out, M, bias, add, p, runs, nruns);
    }
}

void conv2d_winograd_forward_cpu(float *out, const float *inp, const float *weight,
                                 const float *bias, const conv2d_geom *g, float *workspace,
                                 int64_t tile_block) {
    wino_plan p = forward_plan(g, tile_block);
    float *U, *V, *M;
    wino_run *runs;
    carve(workspace, &p, &U, &V, &M, &runs);
    wino_weight_transform(U, weight, p.K, p.C, false);
    wino_conv(out, inp, U, bias, false, false, &p, V, M, runs);
}

void conv2d_winograd_backward_cpu(float *dinp, float *dweight, const float *dout,
                                  const float *inp, const float *weight,
                                  const conv2d_geom *g, float *workspace,
                                  int64_t tile_block, bool dinp_fresh) {
    float *U, *V, *M;
    wino_run *runs;
    if (dinp) {
        /* dx += conv(dy) with rot180(W), channels swapped, padding 2 - pad. The output
         * tiles cover dx once each, so a fresh dx is simply written. */
        wino_plan p = dinp_plan(g, tile_block);
        carve(workspace, &p, &U, &V, &M, &runs);
        wino_weight_transform(U, weight, p.C, p.K, true); /* w is (C_out = p.C, p.K) */
        wino_conv(dinp, dout, U, NULL, true, !dinp_fresh, &p, V, M, runs);
    }
    if (dweight) {
        /* P[xi] (K x C) = sum over blocks Z[xi] (K x nt) . V[xi]^T (nt x C). */
        wino_plan p = forward_plan(g, tile_block);
        float *P, *Z;
        carve(workspace, &p, &P, &V, &Z, &runs);
        const int64_t C = p.C, K = p.K, Tb = p.Tb;
        for (int64_t t0 = 0; t0 < p.T; t0 += Tb) {
            int64_t nt = p.T - t0 < Tb ? p.T - t0 : Tb;
            int64_t nruns = wino_runs(runs, &p, t0, nt);
            wino_input_transform(V, inp, &p, runs, nruns);
            wino_dout_transform(Z, dout, &p, runs, nruns);
            wino_gemms gm = {.A = Z, .V = V, .out = P, .K = K, .C = C, .nt = nt, .Tb = Tb,
                             .dw_pass = true, .beta = t0 == 0 ? 0.0f : 1.0f};
            tg_parallel_range(36, 1, wino_gemm_range, &gm);
        }
        wino_weight_grad_transform(dweight, P, K, C);
    }
}
