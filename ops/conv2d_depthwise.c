/*
 * ops/conv2d_depthwise.c — the CPU depthwise kernels of conv2d (groups = C_in, C_out =
 * m C_in, m the channel multiplier). The op, its descriptor and the other paths live in
 * ops/conv2d.c; the formula and the backward derivation are at the top of ops/conv2d_gemm.c.
 *
 * Output channel o reads only input channel c = o / m, so per channel:
 *   y[oh,ow]   = b + sum_{kh,kw} w[kh,kw] x[ih,iw],   ih = sh oh - ph + kh dh,
 *                                                     iw = sw ow - pw + kw dw
 *   dx[ih,iw] += sum over the (oh,ow,kh,kw) that read x[ih,iw] of w[kh,kw] dy[oh,ow]
 *   dw[kh,kw] += sum_{oh,ow} dy[oh,ow] x[ih,iw],      db += sum_{oh,ow} dy[oh,ow]
 *
 * WHY A DIRECT KERNEL (DESIGN §6). Each output costs 9 multiply-adds and the layer moves
 * one read of x and one write of y: 2.25 FLOP/byte, memory-bound. The only goal is to
 * stream each tensor once at close to copy bandwidth.
 *
 * THE FAST PATH: 3x3, pad 1, dilation 1, stride 1 or 2 (the forum net and MobileNet).
 * Row-vectorised NCHW as XNNPACK's f32-dwconv2d-chw: an output row is computed from three
 * input rows with the 9 weights in registers; the loop over the interior columns has no
 * bounds checks and vectorises along W (plain C: GCC -O3 turns each tap into an unaligned
 * vector load and an FMA); the one or two border columns whose taps touch the padding are
 * done one at a time. A missing row (above the top or below the bottom) is given a zero
 * weight row and any valid row pointer, so the interior loop never branches on rows.
 *   forward   y row oh = b + taps of x rows sh oh - 1 .. sh oh + 1.
 *   dX        a correlation too: input row ih gathers from each dy row oh with
 *             sh oh - 1 + kh = ih, and column iw from dy column ow with sw ow - 1 + kw = iw.
 *             Stride 1: dx[iw] += sum_kw w[kh,kw] dy[iw + 1 - kw], the forward row kernel
 *             with the kernel flipped left-right. Stride 2: even columns get one tap
 *             (kw = 1), odd ones two (kw = 2 from ow = j, kw = 0 from ow = j + 1).
 *   dW, db    for output row oh, ten running sums over ow (9 taps and dy itself), reduced
 *             once per row into double accumulators of the channel.
 * Stride 1 goes further: the middle rows of a plane (those with all three input rows) run
 * as FLAT blocks, one loop over q = row W + col where tap (kh, kw) reads x[q + (kh - 1) W
 * + kw - 1]; only the wrapped first and last columns are fixed up. Small MobileNet planes
 * (7x7, 14x14) then vectorise as one loop instead of many short rows, and dW pays one
 * horizontal reduction per block instead of one per row.
 * Backward gives each thread whole input channels (dx[c] and dW, db of its m output
 * channels: no atomics) and walks the rows once, interleaving the dW rows (or block) with
 * the dX rows next to them, so dy and x are read from memory once and dx
 * read-modify-written once. A fresh dx (tg_grad_fresh: the tape left it uninitialised)
 * is zeroed one plane at a time just before its rows are accumulated, while the plane is
 * in cache, so memory sees dx written once instead of zeroed, read and written.
 * Every other geometry takes the generic direct kernel below (slower, any size).
 */
#include "conv2d.h"

#include "../core/core.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* Multiply-add: fused where the hardware has it (ISO C mode leaves fp-contract off). */
#if defined(__FMA__)
#define DW_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define DW_FMA(a, b, c) ((a) * (b) + (c))
#endif

static bool depthwise_fast(const conv2d_geom *g) {
    return g->KH == 3 && g->KW == 3 && g->pad_h == 1 && g->pad_w == 1 && g->dil_h == 1 &&
           g->dil_w == 1 && (g->stride_h == 1 || g->stride_h == 2) &&
           (g->stride_w == 1 || g->stride_w == 2);
}

/* Stride 1 runs the middle rows of a plane (those with all three input rows) as flat
 * blocks of whole rows: ~64 KiB of one tensor per block, at most DW_BLOCK_ROWS rows. */
#define DW_BLOCK_FLOATS 16384
#define DW_BLOCK_ROWS 128

static inline int64_t block_rows(int64_t W) {
    int64_t r = DW_BLOCK_FLOATS / W;
    return r < 1 ? 1 : r > DW_BLOCK_ROWS ? DW_BLOCK_ROWS : r;
}

/* ---------------------------------------------------------------- fast path: rows */

/* The three rows a row kernel reads and their weights: rows[k] is a valid row of the
 * plane, w[3 k .. 3 k + 2] its weights (zeros for a missing row). */
typedef struct dw_rows {
    const float *rows[3];
    float w[9];
} dw_rows;

/* y[ow] (= or +=) sum_{k,kw} w[k,kw] rows[k][S ow - 1 + kw] for one column ow, the taps
 * outside [0, W) dropped: the border columns. */
static inline float tap_point(const dw_rows *r, int64_t iw0, int64_t W, float v) {
    for (int k = 0; k < 3; k++)
        for (int kw = 0; kw < 3; kw++) {
            int64_t iw = iw0 + kw;
            if (iw >= 0 && iw < W) v = DW_FMA(r->w[3 * k + kw], r->rows[k][iw], v);
        }
    return v;
}

/* One row, stride 1 along W (OW = W): y[ow] = init + sum_{k,kw} w[k,kw] rows[k][ow-1+kw]
 * with init = b (forward) or y[ow] (accumulate: dX with the flipped kernel). */
static inline void tap_row_s1(float *restrict y, const dw_rows *r, float b, int64_t W,
                              bool accumulate) {
    const float *restrict r0 = r->rows[0], *restrict r1 = r->rows[1], *restrict r2 = r->rows[2];
    const float w0 = r->w[0], w1 = r->w[1], w2 = r->w[2], w3 = r->w[3], w4 = r->w[4];
    const float w5 = r->w[5], w6 = r->w[6], w7 = r->w[7], w8 = r->w[8];
    y[0] = tap_point(r, -1, W, accumulate ? y[0] : b);
    for (int64_t i = 1; i < W - 1; i++) {
        float v = accumulate ? y[i] : b;
        v = DW_FMA(w0, r0[i - 1], v);
        v = DW_FMA(w1, r0[i], v);
        v = DW_FMA(w2, r0[i + 1], v);
        v = DW_FMA(w3, r1[i - 1], v);
        v = DW_FMA(w4, r1[i], v);
        v = DW_FMA(w5, r1[i + 1], v);
        v = DW_FMA(w6, r2[i - 1], v);
        v = DW_FMA(w7, r2[i], v);
        v = DW_FMA(w8, r2[i + 1], v);
        y[i] = v;
    }
    if (W > 1) y[W - 1] = tap_point(r, W - 2, W, accumulate ? y[W - 1] : b);
}

/* One forward row, stride 2 along W (OW = (W + 1) / 2): y[ow] = b + taps at 2 ow - 1 + kw.
 * Interior: 1 <= ow and 2 ow + 1 < W, i.e. ow < W / 2. */
static inline void tap_row_s2(float *restrict y, const dw_rows *r, float b, int64_t W,
                              int64_t OW) {
    const float *restrict r0 = r->rows[0], *restrict r1 = r->rows[1], *restrict r2 = r->rows[2];
    const float w0 = r->w[0], w1 = r->w[1], w2 = r->w[2], w3 = r->w[3], w4 = r->w[4];
    const float w5 = r->w[5], w6 = r->w[6], w7 = r->w[7], w8 = r->w[8];
    y[0] = tap_point(r, -1, W, b);
    for (int64_t o = 1; o < W / 2; o++) {
        const int64_t i = 2 * o;
        float v = b;
        v = DW_FMA(w0, r0[i - 1], v);
        v = DW_FMA(w1, r0[i], v);
        v = DW_FMA(w2, r0[i + 1], v);
        v = DW_FMA(w3, r1[i - 1], v);
        v = DW_FMA(w4, r1[i], v);
        v = DW_FMA(w5, r1[i + 1], v);
        v = DW_FMA(w6, r2[i - 1], v);
        v = DW_FMA(w7, r2[i], v);
        v = DW_FMA(w8, r2[i + 1], v);
        y[o] = v;
    }
    for (int64_t o = W / 2 > 1 ? W / 2 : 1; o < OW; o++) y[o] = tap_point(r, 2 * o - 1, W, b);
}

/* Rows [r0, r1) of a stride-1 correlation, 1 <= r0 < r1 <= H - 1 (every row has the rows
 * above and below it), as ONE flat loop over q = row W + col:
 *   y[q] (= b or +=) sum_{k,kw} w[k,kw] x[q + (k - 1) W + kw - 1].
 * Small planes then vectorise as one long loop instead of many short rows. At col 0 and
 * col W - 1 the flat index wraps into the neighbouring row instead of the zero padding, so
 * those two columns are computed beforehand with tap_point and stored after the loop (the
 * loop reads y only where it writes). The two q whose wrapped taps would leave the plane
 * are border columns and stay out of the loop. */
static inline void tap_block_s1(float *restrict y, const float *restrict x, const float *w,
                                float b, int64_t r0, int64_t r1, int64_t H, int64_t W,
                                bool accumulate) {
    float border[2 * DW_BLOCK_ROWS];
    dw_rows r;
    memcpy(r.w, w, sizeof r.w);
    for (int64_t row = r0; row < r1; row++) {
        for (int k = 0; k < 3; k++) r.rows[k] = x + (row - 1 + k) * W;
        float *yr = y + row * W, *bd = border + 2 * (row - r0);
        bd[0] = tap_point(&r, -1, W, accumulate ? yr[0] : b);
        bd[1] = tap_point(&r, W - 2, W, accumulate ? yr[W - 1] : b);
    }
    int64_t q0 = r0 * W, q1 = r1 * W;
    if (q0 < W + 1) q0 = W + 1;
    if (q1 > (H - 1) * W - 1) q1 = (H - 1) * W - 1;
    const float *restrict xa = x - W - 1, *restrict xb = x - 1, *restrict xc = x + W - 1;
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5];
    const float w6 = w[6], w7 = w[7], w8 = w[8];
    for (int64_t q = q0; q < q1; q++) {
        float v = accumulate ? y[q] : b;
        v = DW_FMA(w0, xa[q], v);
        v = DW_FMA(w1, xa[q + 1], v);
        v = DW_FMA(w2, xa[q + 2], v);
        v = DW_FMA(w3, xb[q], v);
        v = DW_FMA(w4, xb[q + 1], v);
        v = DW_FMA(w5, xb[q + 2], v);
        v = DW_FMA(w6, xc[q], v);
        v = DW_FMA(w7, xc[q + 1], v);
        v = DW_FMA(w8, xc[q + 2], v);
        y[q] = v;
    }
    for (int64_t row = r0; row < r1; row++) {
        y[row * W + W - 1] = border[2 * (row - r0) + 1];
        y[row * W] = border[2 * (row - r0)]; /* last: for W = 1 it is the same element */
    }
}

/* One dX row, stride 2 along W: rows are dy rows (OW columns), w the unflipped weights.
 * dx[2j] += sum_k w[k,1] d_k[j];  dx[2j+1] += sum_k w[k,2] d_k[j] + w[k,0] d_k[j+1]. */
static inline void dx_row_s2(float *restrict dx, const dw_rows *r, int64_t W, int64_t OW) {
    const float *restrict d0 = r->rows[0], *restrict d1 = r->rows[1], *restrict d2 = r->rows[2];
    const float w0 = r->w[0], w1 = r->w[1], w2 = r->w[2], w3 = r->w[3], w4 = r->w[4];
    const float w5 = r->w[5], w6 = r->w[6], w7 = r->w[7], w8 = r->w[8];
    /* full pairs: 2j + 1 < W and j + 1 < OW */
    const int64_t J = W / 2 < OW - 1 ? W / 2 : OW - 1;
    for (int64_t j = 0; j < J; j++) {
        float e = dx[2 * j], o = dx[2 * j + 1];
        e = DW_FMA(w1, d0[j], e);
        e = DW_FMA(w4, d1[j], e);
        e = DW_FMA(w7, d2[j], e);
        o = DW_FMA(w2, d0[j], o);
        o = DW_FMA(w0, d0[j + 1], o);
        o = DW_FMA(w5, d1[j], o);
        o = DW_FMA(w3, d1[j + 1], o);
        o = DW_FMA(w8, d2[j], o);
        o = DW_FMA(w6, d2[j + 1], o);
        dx[2 * j] = e;
        dx[2 * j + 1] = o;
    }
    for (int64_t iw = 2 * J; iw < W; iw++) {
        float v = dx[iw];
        for (int kw = 0; kw < 3; kw++) {
            int64_t t = iw + 1 - kw; /* = 2 ow */
            if (t < 0 || t % 2 || t / 2 >= OW) continue;
            for (int k = 0; k < 3; k++) v = DW_FMA(r->w[3 * k + kw], r->rows[k][t / 2], v);
        }
        dx[iw] = v;
    }
}

/* dW and db of one output row: acc[3 k + kw] += sum_ow dy[ow] rows[k][S ow - 1 + kw] for
 * the valid rows k (rows[k] != NULL), acc[9] += sum_ow dy[ow]. */
static inline void dw_row(double *acc, const float *restrict dy, const float *const rows[3],
                          const float *valid_row, int64_t W, int64_t OW, int S) {
    const float *restrict r0 = rows[0] ? rows[0] : valid_row;
    const float *restrict r1 = rows[1] ? rows[1] : valid_row;
    const float *restrict r2 = rows[2] ? rows[2] : valid_row;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, s8 = 0, sb = 0;
    /* interior: S ow - 1 >= 0 and S ow + 1 < W */
    const int64_t lo = 1, hi = S == 1 ? W - 1 : W / 2;
    if (S == 1) {
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7, s8, sb)
        for (int64_t o = lo; o < hi; o++) {
            const float d = dy[o];
            s0 += d * r0[o - 1];
            s1 += d * r0[o];
            s2 += d * r0[o + 1];
            s3 += d * r1[o - 1];
            s4 += d * r1[o];
            s5 += d * r1[o + 1];
            s6 += d * r2[o - 1];
            s7 += d * r2[o];
            s8 += d * r2[o + 1];
            sb += d;
        }
    } else {
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7, s8, sb)
        for (int64_t o = lo; o < hi; o++) {
            const float d = dy[o];
            const int64_t i = 2 * o;
            s0 += d * r0[i - 1];
            s1 += d * r0[i];
            s2 += d * r0[i + 1];
            s3 += d * r1[i - 1];
            s4 += d * r1[i];
            s5 += d * r1[i + 1];
            s6 += d * r2[i - 1];
            s7 += d * r2[i];
            s8 += d * r2[i + 1];
            sb += d;
        }
    }
    float s[10] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, sb};
    const float *rr[3] = {r0, r1, r2};
    /* border columns: ow = 0 and ow >= hi (at most two), taps outside [0, W) dropped */
    for (int64_t o = 0; o < OW; o = o == 0 && hi > lo ? hi : o + 1) {
        for (int k = 0; k < 3; k++)
            for (int kw = 0; kw < 3; kw++) {
                int64_t iw = S * o - 1 + kw;
                if (iw >= 0 && iw < W) s[3 * k + kw] = DW_FMA(dy[o], rr[k][iw], s[3 * k + kw]);
            }
        s[9] += dy[o];
    }
    for (int k = 0; k < 3; k++)
        if (rows[k])
            for (int kw = 0; kw < 3; kw++) acc[3 * k + kw] += s[3 * k + kw];
    acc[9] += s[9];
}

/* The input rows output row oh reads: r->rows and r->w (w: the 9 weights; missing rows
 * get zero weights and plane row 0). */
static inline void select_rows(dw_rows *r, const float *plane, const float *w, int64_t oh,
                               int sh, int64_t H, int64_t W) {
    for (int k = 0; k < 3; k++) {
        int64_t ih = sh * oh - 1 + k;
        bool ok = ih >= 0 && ih < H;
        r->rows[k] = plane + (ok ? ih : 0) * W;
        for (int kw = 0; kw < 3; kw++) r->w[3 * k + kw] = ok ? w[3 * k + kw] : 0.0f;
    }
}

/* The four kernels below run on tg_parallel_items (core/pool.c): the forwards over output
 * planes, the backwards over input channels (each owns dx of its channel and dW, db of
 * its m output channels), each item computed the same whoever runs it. */
#define DW_SERIAL 32768 /* multiply-adds at or below which one thread does it all */
#define DW_GRAIN 65536  /* about this many multiply-adds per chunk */

typedef struct dw_job {
    float *out, *dinp, *dweight, *dbias;
    const float *inp, *dout, *weight, *bias;
    const conv2d_geom *g;
    bool dinp_fresh;
} dw_job;

static void forward_fast_items(void *arg, int64_t p0, int64_t p1) {
    const dw_job *j = arg;
    float *out = j->out;
    const float *inp = j->inp, *weight = j->weight, *bias = j->bias;
    const conv2d_geom *g = j->g;
    const int64_t m = g->C_out / g->C_in, H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const int sh = g->stride_h, sw = g->stride_w;
    const int64_t block = block_rows(W);
    for (int64_t p = p0; p < p1; p++) {
        const int64_t n = p / g->C_out, o = p % g->C_out;
        const float *x = inp + (n * g->C_in + o / m) * H * W, *w = weight + o * 9;
        float *y = out + p * OH * OW, b = bias ? bias[o] : 0.0f;
        dw_rows r;
        for (int64_t oh = 0, next; oh < OH; oh = next) {
            if (sh == 1 && sw == 1 && oh > 0 && oh < H - 1) {
                next = oh + block < H - 1 ? oh + block : H - 1;
                tap_block_s1(y, x, w, b, oh, next, H, W, false);
                continue;
            }
            next = oh + 1;
            select_rows(&r, x, w, oh, sh, H, W);
            if (sw == 1)
                tap_row_s1(y + oh * OW, &r, b, W, false);
            else
                tap_row_s2(y + oh * OW, &r, b, W, OW);
        }
    }
}

static void forward_fast(float *out, const float *inp, const float *weight, const float *bias,
                         const conv2d_geom *g) {
    dw_job j = {.out = out, .inp = inp, .weight = weight, .bias = bias, .g = g};
    tg_parallel_items(g->N * g->C_out, (double)g->OH * g->OW * 9,
                      DW_SERIAL, DW_GRAIN, forward_fast_items, &j);
}

/* dX of input row ih of one channel: gathers dy rows oh with sh oh - 1 + kh = ih. */
static inline void dx_row(float *dxr, const float *dy, const float *w, int64_t ih,
                          const conv2d_geom *g) {
    const int64_t OH = g->OH, OW = g->OW, W = g->W;
    dw_rows r;
    for (int k = 0; k < 3; k++) {
        int64_t t = ih + 1 - k; /* = sh oh */
        bool ok = t >= 0 && t % g->stride_h == 0 && t / g->stride_h < OH;
        r.rows[k] = dy + (ok ? t / g->stride_h : 0) * OW;
        for (int kw = 0; kw < 3; kw++) {
            /* stride 1 reuses the forward row kernel: flip the kernel left-right */
            float wv = w[3 * k + (g->stride_w == 1 ? 2 - kw : kw)];
            r.w[3 * k + kw] = ok ? wv : 0.0f;
        }
    }
    if (g->stride_w == 1)
        tap_row_s1(dxr, &r, 0.0f, W, true);
    else
        dx_row_s2(dxr, &r, W, OW);
}

/* dW and db of the output rows [oh0, oh1) of a stride-1 plane, 1 <= oh0 < oh1 <= H - 1 (all
 * three x rows exist), as ONE flat loop over q = oh W + ow: tap (kh, kw) reads x[q + (kh - 1)
 * W + kw - 1], so the block is a single long vectorised reduction (one horizontal sum per
 * block, not per row: small planes are no longer dominated by per-row overhead). The flat
 * index wraps at the row ends: at ow = 0 tap kw = 0 reads the previous row's last x instead
 * of the zero padding, at ow = W - 1 tap kw = 2 the next row's first; those few products
 * are subtracted afterwards. The two q whose wrapped taps would leave the plane are left
 * out of the loop and added column by column. */
static void dw_block_s1(double *acc, const float *dy, const float *x, int64_t oh0, int64_t oh1,
                        int64_t H, int64_t W) {
    int64_t q0 = oh0 * W, q1 = oh1 * W;
    if (q0 < W + 1) q0 = W + 1;
    if (q1 > (H - 1) * W - 1) q1 = (H - 1) * W - 1;
    const float *restrict xa = x - W - 1, *restrict xb = x - 1, *restrict xc = x + W - 1;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0, s8 = 0, sb = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7, s8, sb)
    for (int64_t q = q0; q < q1; q++) {
        const float d = dy[q];
        s0 += d * xa[q];
        s1 += d * xa[q + 1];
        s2 += d * xa[q + 2];
        s3 += d * xb[q];
        s4 += d * xb[q + 1];
        s5 += d * xb[q + 2];
        s6 += d * xc[q];
        s7 += d * xc[q + 1];
        s8 += d * xc[q + 2];
        sb += d;
    }
    float s[10] = {s0, s1, s2, s3, s4, s5, s6, s7, s8, sb};
    for (int64_t oh = oh0; oh < oh1; oh++)
        for (int64_t ow = 0; ow < W; ow = ow == 0 && W > 1 ? W - 1 : W) {
            const int64_t q = oh * W + ow;
            const bool looped = q >= q0 && q < q1;
            for (int kw = 0; kw < 3; kw++) {
                const bool pad = ow - 1 + kw < 0 || ow - 1 + kw >= W;
                if (looped != pad) continue; /* looped: undo the pads; else: add the rest */
                for (int k = 0; k < 3; k++) {
                    const float v = dy[q] * x[q + (k - 1) * W + kw - 1];
                    s[3 * k + kw] += looped ? -v : v;
                }
            }
            if (!looped) s[9] += dy[q];
        }
    for (int k = 0; k < 10; k++) acc[k] += s[k];
}

static void backward_fast_items(void *arg, int64_t c0, int64_t c1) {
    const dw_job *j = arg;
    float *dinp = j->dinp, *dweight = j->dweight, *dbias = j->dbias;
    const float *dout = j->dout, *inp = j->inp, *weight = j->weight;
    const conv2d_geom *g = j->g;
    bool dinp_fresh = j->dinp_fresh;
    const int64_t m = g->C_out / g->C_in, H = g->H, W = g->W, OH = g->OH, OW = g->OW;
    const int sh = g->stride_h;
    const bool want_w = dweight || dbias, flat = sh == 1 && g->stride_w == 1;
    const int64_t block = block_rows(W);
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t o = c * m; o < (c + 1) * m; o++) {
            double acc[10] = {0};
            const float *w = weight + o * 9;
            float wflip[9]; /* dX of stride 1: the correlation with the kernel rotated 180 */
            for (int k = 0; k < 9; k++) wflip[k] = w[8 - k];
            for (int64_t n = 0; n < g->N; n++) {
                const float *x = inp + (n * g->C_in + c) * H * W;
                const float *dy = dout + (n * g->C_out + o) * OH * OW;
                float *dx = dinp ? dinp + (n * g->C_in + c) * H * W : NULL;
                if (dx && dinp_fresh && o == c * m) memset(dx, 0, (size_t)(H * W) * sizeof(float));
                int64_t ih_done = 0; /* dX rows below this one are finished */
                for (int64_t oh = 0, next; oh < OH; oh = next) {
                    if (flat && oh > 0 && oh < H - 1) {
                        /* a block of middle rows: dW and dX as flat loops */
                        next = oh + block < H - 1 ? oh + block : H - 1;
                        if (want_w) dw_block_s1(acc, dy, x, oh, next, H, W);
                        if (dx) tap_block_s1(dx, dy, wflip, 0.0f, oh, next, H, W, true);
                        ih_done = next;
                        continue;
                    }
                    next = oh + 1;
                    if (want_w) {
                        const float *rows[3];
                        for (int k = 0; k < 3; k++) {
                            int64_t ih = sh * oh - 1 + k;
                            rows[k] = ih >= 0 && ih < H ? x + ih * W : NULL;
                        }
                        dw_row(acc, dy + oh * OW, rows, x, W, OW, g->stride_w);
                    }
                    /* the dX rows through sh oh read dy rows up to oh + 1 only: do them
                     * while those rows are in cache */
                    int64_t ih_end = sh * oh + 1 < H ? sh * oh + 1 : H;
                    for (; dx && ih_done < ih_end; ih_done++)
                        dx_row(dx + ih_done * W, dy, w, ih_done, g);
                }
                for (; dx && ih_done < H; ih_done++) dx_row(dx + ih_done * W, dy, w, ih_done, g);
            }
            if (dweight)
                for (int k = 0; k < 9; k++) dweight[o * 9 + k] += (float)acc[k];
            if (dbias) dbias[o] += (float)acc[9];
        }
    }
}

static void backward_fast(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, const conv2d_geom *g,
                          bool dinp_fresh) {
    dw_job j = {.dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout,
                .inp = inp,
                .weight = weight, .g = g, .dinp_fresh = dinp_fresh};
    tg_parallel_items(g->C_in, (double)g->N * (g->C_out / g->C_in) * g->OH * g->OW * 9,
                      DW_SERIAL, DW_GRAIN, backward_fast_items, &j);
}

/* ---------------------------------------------------------------- generic path */

/* The output positions o in [0, n_out) whose input index o s + off lies in [0, len):
 * [*lo, *hi), empty when *lo == *hi (as in ops/conv2d_gemm.c's im2col). */
static inline void valid_range(int64_t off, int64_t s, int64_t len, int64_t n_out,
                               int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = len - off <= 0 ? 0 : (len - off + s - 1) / s;
    if (b < 0) b = 0;
    if (b > n_out) b = n_out;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* Any kernel size, stride, padding and dilation: each output row accumulates one shifted
 * input row per tap. */
static void forward_generic_items(void *arg, int64_t p0, int64_t p1) {
    const dw_job *j = arg;
    float *out = j->out;
    const float *inp = j->inp, *weight = j->weight, *bias = j->bias;
    const conv2d_geom *g = j->g;
    const int64_t m = g->C_out / g->C_in, KH = g->KH, KW = g->KW, H = g->H, W = g->W;
    const int64_t OH = g->OH, OW = g->OW, sw = g->stride_w;
    for (int64_t p = p0; p < p1; p++) {
        int64_t n = p / g->C_out, o = p % g->C_out;
        const float *x = inp + (n * g->C_in + o / m) * H * W;
        const float *w = weight + o * KH * KW;
        float *y = out + p * OH * OW, b = bias ? bias[o] : 0.0f;
        for (int64_t oh = 0; oh < OH; oh++) {
            float *yr = y + oh * OW;
            for (int64_t ow = 0; ow < OW; ow++) yr[ow] = b;
            for (int64_t kh = 0; kh < KH; kh++) {
                int64_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
                if (ih < 0 || ih >= H) continue;
                for (int64_t kw = 0; kw < KW; kw++) {
                    int64_t off = kw * g->dil_w - g->pad_w, lo, hi;
                    valid_range(off, sw, W, OW, &lo, &hi);
                    const float *xr = x + ih * W + off;
                    float wv = w[kh * KW + kw];
                    for (int64_t ow = lo; ow < hi; ow++) yr[ow] += wv * xr[ow * sw];
                }
            }
        }
    }
}

static void forward_generic(float *out, const float *inp, const float *weight,
                            const float *bias, const conv2d_geom *g) {
    dw_job j = {.out = out, .inp = inp, .weight = weight, .bias = bias, .g = g};
    tg_parallel_items(g->N * g->C_out, (double)g->OH * g->OW * g->KH * g->KW,
                      DW_SERIAL, DW_GRAIN, forward_generic_items, &j);
}

static void backward_generic_items(void *arg, int64_t c0, int64_t c1) {
    const dw_job *j = arg;
    float *dinp = j->dinp, *dweight = j->dweight, *dbias = j->dbias;
    const float *dout = j->dout, *inp = j->inp, *weight = j->weight;
    const conv2d_geom *g = j->g;
    bool dinp_fresh = j->dinp_fresh;
    const int64_t m = g->C_out / g->C_in, KH = g->KH, KW = g->KW, H = g->H, W = g->W;
    const int64_t OH = g->OH, OW = g->OW, sw = g->stride_w;
    /* A thread owns input channel c: dx[:, c] and dW, db of its m output channels. */
    for (int64_t c = c0; c < c1; c++) {
        for (int64_t n = 0; n < g->N; n++) {
            const float *x = inp + (n * g->C_in + c) * H * W;
            float *dx = dinp ? dinp + (n * g->C_in + c) * H * W : NULL;
            if (dx && dinp_fresh) memset(dx, 0, (size_t)(H * W) * sizeof(float));
            for (int64_t o = c * m; o < (c + 1) * m; o++) {
                const float *dy = dout + (n * g->C_out + o) * OH * OW;
                const float *w = weight + o * KH * KW;
                float *dw = dweight ? dweight + o * KH * KW : NULL;
                float db = 0.0f;
                for (int64_t oh = 0; oh < OH; oh++) {
                    const float *dyr = dy + oh * OW;
                    for (int64_t ow = 0; dbias && ow < OW; ow++) db += dyr[ow];
                    for (int64_t kh = 0; kh < KH; kh++) {
                        int64_t ih = oh * g->stride_h - g->pad_h + kh * g->dil_h;
                        if (ih < 0 || ih >= H) continue;
                        for (int64_t kw = 0; kw < KW; kw++) {
                            int64_t off = kw * g->dil_w - g->pad_w, lo, hi;
                            valid_range(off, sw, W, OW, &lo, &hi);
                            const float *xr = x + ih * W + off;
                            if (dw) {
                                float s = 0.0f;
                                for (int64_t ow = lo; ow < hi; ow++) s += dyr[ow] * xr[ow * sw];
                                dw[kh * KW + kw] += s;
                            }
                            if (dx) {
                                float *dxr = dx + ih * W + off, wv = w[kh * KW + kw];
                                for (int64_t ow = lo; ow < hi; ow++) dxr[ow * sw] += wv * dyr[ow];
                            }
                        }
                    }
                }
                if (dbias) dbias[o] += db;
            }
        }
    }
}

static void backward_generic(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const conv2d_geom *g,
                             bool dinp_fresh) {
    dw_job j = {.dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout,
                .inp = inp,
                .weight = weight, .g = g, .dinp_fresh = dinp_fresh};
    tg_parallel_items(g->C_in,
                      (double)g->N * (g->C_out / g->C_in) * g->OH * g->OW * g->KH * g->KW,
                      DW_SERIAL, DW_GRAIN, backward_generic_items, &j);
}

/* ---------------------------------------------------------------- entry points */

void conv2d_depthwise_forward_cpu(float *out, const float *inp, const float *weight,
                                  const float *bias, const conv2d_geom *g) {
    if (depthwise_fast(g))
        forward_fast(out, inp, weight, bias, g);
    else
        forward_generic(out, inp, weight, bias, g);
}

void conv2d_depthwise_backward_cpu(float *dinp, float *dweight, float *dbias,
                                   const float *dout, const float *inp, const float *weight,
                                   const conv2d_geom *g, bool dinp_fresh) {
    if (!dinp && !dweight && !dbias) return;
    if (depthwise_fast(g))
        backward_fast(dinp, dweight, dbias, dout, inp, weight, g, dinp_fresh);
    else
        backward_generic(dinp, dweight, dbias, dout, inp, weight, g, dinp_fresh);
}
