/*
 * ops/conv2d_winograd_transform.c — the transforms of the Winograd F(4x4, 3x3) path
 * (ops/conv2d_winograd.c has the algorithm, its derivation and the passes):
 *     input   V = B^T d B   6x6 input patch -> 6x6          (forward, dx and dW passes)
 *     output  Y = A^T M A   6x6 -> 4x4 output block          (forward, dx passes)
 *     dout    Z = A dY A^T  4x4 dy block -> 6x6              (dW pass)
 *     weight  U = G g G^T   3x3 filter -> 6x6, and its transpose dW += G^T P G.
 * Each 2-D transform is the 1-D one applied down the columns, then along the rows.
 *
 * LAYOUT: WHY RUNS OF TILES. V, M and Z hold one tile per column (36 positions x channels
 * x tiles), so SIMD lanes are tiles: a vector of V's row is 16 (AVX-512) or 8 (AVX2)
 * consecutive tiles of one channel. The tiles of one tile row sit 4 columns apart in the
 * image, and column j of a tile (j = 0..5) is image column 4 tx - pw + j, so lane l of
 * "column j" is at 4 l + j: a stride-4 gather. Gathering every value of every 6x6 patch
 * lane by lane (36 scalar loads per tile and channel, the patches overlapping by 2) was
 * about a third of a layer's time. Instead, per channel and run of tiles along one tile
 * row (wino_run), each of the 6 input rows is split once into its 4 phases
 *     P[q][l] = row[4 (tx0 + l) - pw + q]    q = 0..3, l = 0..len
 * (one pass of stride-4 loads the compiler turns into vector shuffles; zeros outside the
 * plane), after which column j of tile l is P[j mod 4][l + j / 4]: contiguous in l. The
 * column transform then runs on the phases (vectors of tiles), the row transform reads
 * its 6 inputs as 6 contiguous vectors (4 phases, 2 of them shifted by one tile) and
 * writes 6 contiguous vectors of V. The output transform is the mirror: contiguous
 * vectors of M in, A^T applied, the 4 phases interleaved back into each output row with
 * the bias (or added to dx). Runs are processed RUN_CHUNK tiles at a time in stack
 * scratch, so any plane width works; lanes are plain C loops under `omp simd` that GCC
 * vectorises for whatever -march the build has (SSE2 without -march=native).
 *
 * The weight transforms cost O(C_in C_out), not O(channels x tiles); they run 16 channels
 * at a time.
 */
#include "conv2d_winograd.h"

#include "../core/core.h"

#include <stdalign.h>
#include <stddef.h>
#include <string.h>

enum {
    WB = 64,           /* channels per weight transform step */
    RUN_CHUNK = 32,    /* tiles of a run transformed together */
    LS = RUN_CHUNK + 16, /* floats per phase row of the scratch (room for len + 1, aligned) */
};

/* Every loop below is a list of independent jobs (a block of channel pairs, or a channel
 * and a run of tiles) on tg_parallel_items (core/pool.c): each job writes its own outputs
 * the same way whoever runs it, so the results are the same bits at every thread count,
 * and a thread that a busy machine has not scheduled is not waited for. */
#define WINO_SERIAL 16384 /* floats written at or below which one thread does it all */
#define WINO_GRAIN 32768  /* about this many floats written per chunk */

typedef struct wino_job {
    float *dst;
    const float *src, *bias;
    const wino_plan *p;
    const wino_run *runs;
    int64_t nruns, A, B;
    bool flag; /* flip (weight transform) or accumulate (output transform) */
} wino_job;

/* ---------------------------------------------------------------- 1-D transforms */
/* Each works on lanes l < n at once (tiles or channels): inputs at in + k s + l, outputs
 * at out + k os + l. */

/* B^T d: 6 inputs -> 6 (points 0, 1, -1, 2, -2, infinity). The inputs are 6 pointers:
 * the row transform reads phases shifted by one tile. */
static inline void bt6(const float *restrict d0, const float *restrict d1,
                       const float *restrict d2, const float *restrict d3,
                       const float *restrict d4, const float *restrict d5,
                       float *restrict t, ptrdiff_t ts, int n) {
#pragma omp simd
    for (int l = 0; l < n; l++) {
        float a0 = d0[l], a1 = d1[l], a2 = d2[l], a3 = d3[l], a4 = d4[l], a5 = d5[l];
        t[l] = 4 * a0 - 5 * a2 + a4;
        t[ts + l] = -4 * (a1 + a2) + a3 + a4;
        t[2 * ts + l] = 4 * (a1 - a2) - a3 + a4;
        t[3 * ts + l] = 2 * (a3 - a1) - a2 + a4;
        t[4 * ts + l] = 2 * (a1 - a3) - a2 + a4;
        t[5 * ts + l] = 4 * a1 - 5 * a3 + a5;
    }
}

/* A^T m: 6 -> 4 outputs. */
static inline void at4(const float *restrict m, ptrdiff_t s, float *restrict o, ptrdiff_t os,
                       int n) {
#pragma omp simd
    for (int l = 0; l < n; l++) {
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
static inline void a6(const float *restrict y, ptrdiff_t s, float *restrict z, ptrdiff_t zs,
                      int n) {
#pragma omp simd
    for (int l = 0; l < n; l++) {
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

/* ---------------------------------------------------------------- weight transforms */
/* g6 and gt3 by hand on 3-float rows: lanes are filter rows (3 consecutive floats) or
 * channels (9 apart), so the loads and stores are stride-3 groups, which GCC turns into
 * vector shuffles. A block of WB channels at a time, through T (6, 3 WB) on the stack.
 * The constants 1/6, 1/12, 1/24 are multiplied, not divided by (a vector division costs
 * about ten multiplications; the results differ by an ulp). */
#define R6 (1.0f / 6)
#define R12 (1.0f / 12)
#define R24 (1.0f / 24)

static void weight_jobs(void *arg, int64_t j0, int64_t j1) {
    const wino_job *jb = arg;
    float *U = jb->dst;
    const float *w = jb->src;
    const int64_t A = jb->A, B = jb->B;
    const bool flip = jb->flag;
    const ptrdiff_t us = (ptrdiff_t)(A * B); /* between U's 36 positions */
    for (int64_t job = j0; job < j1; job++) {
        int64_t a = job / ((B + WB - 1) / WB), b0 = job % ((B + WB - 1) / WB) * WB;
        int n = B - b0 < WB ? (int)(B - b0) : WB;
        const float *restrict g = w + (a * B + b0) * 9;
        alignas(64) float t[6][3 * WB]; /* t[s][3 l + r]: filter row r of channel l, . G^T */
        float *restrict t0 = t[0], *restrict t1 = t[1], *restrict t2 = t[2];
        float *restrict t3 = t[3], *restrict t4 = t[4], *restrict t5 = t[5];
        int lo = flip ? 2 : 0, hi = 2 - lo; /* rot180: every row and column reversed */
#pragma omp simd
        for (int R = 0; R < 3 * n; R++) { /* rows: . G^T */
            float g0 = g[3 * R + lo], g1 = g[3 * R + 1], g2 = g[3 * R + hi];
            float e = g0 + g2, f = g0 + 4 * g2;
            t0[R] = g0 * 0.25f;
            t1[R] = -(e + g1) * R6;
            t2[R] = -(e - g1) * R6;
            t3[R] = (f + 2 * g1) * R24;
            t4[R] = (f - 2 * g1) * R24;
            t5[R] = g2;
        }
        float *u = U + a * B + b0;
        for (int c = 0; c < 6; c++) { /* columns: G . */
            const float *restrict tc = t[c];
            float *restrict u0 = u + c * us, *restrict u1 = u0 + 6 * us, *restrict u2 = u1 + 6 * us;
            float *restrict u3 = u2 + 6 * us, *restrict u4 = u3 + 6 * us, *restrict u5 = u4 + 6 * us;
#pragma omp simd
            for (int l = 0; l < n; l++) {
                float g0 = tc[3 * l + lo], g1 = tc[3 * l + 1], g2 = tc[3 * l + hi];
                float e = g0 + g2, f = g0 + 4 * g2;
                u0[l] = g0 * 0.25f;
                u1[l] = -(e + g1) * R6;
                u2[l] = -(e - g1) * R6;
                u3[l] = (f + 2 * g1) * R24;
                u4[l] = (f - 2 * g1) * R24;
                u5[l] = g2;
            }
        }
    }
}

void wino_weight_transform(float *U, const float *w, int64_t A, int64_t B, bool flip) {
    wino_job jb = {.dst = U, .src = w, .A = A, .B = B, .flag = flip};
    tg_parallel_items(A * ((B + WB - 1) / WB), 36.0 * WB, WINO_SERIAL, WINO_GRAIN, weight_jobs,
                      &jb);
}

static void weight_grad_jobs(void *arg, int64_t j0, int64_t j1) {
    const wino_job *jb = arg;
    float *dweight = jb->dst;
    const float *P = jb->src;
    const int64_t K = jb->A, C = jb->B;
    const ptrdiff_t ps = (ptrdiff_t)(K * C); /* between P's 36 positions */
    for (int64_t job = j0; job < j1; job++) {
        int64_t k = job / ((C + WB - 1) / WB), c0 = job % ((C + WB - 1) / WB) * WB;
        int n = C - c0 < WB ? (int)(C - c0) : WB;
        alignas(64) float t[6][3 * WB]; /* t[s][3 l + a]: (G^T P)[a][s] of channel l */
        const float *p = P + k * C + c0;
        for (int c = 0; c < 6; c++) { /* columns: G^T . */
            const float *restrict p0 = p + c * ps, *restrict p1 = p0 + 6 * ps;
            const float *restrict p2 = p1 + 6 * ps, *restrict p3 = p2 + 6 * ps;
            const float *restrict p4 = p3 + 6 * ps, *restrict p5 = p4 + 6 * ps;
            float *restrict tc = t[c];
#pragma omp simd
            for (int l = 0; l < n; l++) {
                float q0 = p0[l], q1 = p1[l], q2 = p2[l], q3 = p3[l], q4 = p4[l], q5 = p5[l];
                tc[3 * l] = q0 * 0.25f - (q1 + q2) * R6 + (q3 + q4) * R24;
                tc[3 * l + 1] = (q2 - q1) * R6 + (q3 - q4) * R12;
                tc[3 * l + 2] = (q3 + q4 - q1 - q2) * R6 + q5;
            }
        }
        float *restrict dw = dweight + (k * C + c0) * 9;
        const float *restrict t0 = t[0], *restrict t1 = t[1], *restrict t2 = t[2];
        const float *restrict t3 = t[3], *restrict t4 = t[4], *restrict t5 = t[5];
#pragma omp simd
        for (int R = 0; R < 3 * n; R++) { /* rows: . G, added to dW's row R */
            float q0 = t0[R], q1 = t1[R], q2 = t2[R], q3 = t3[R], q4 = t4[R], q5 = t5[R];
            dw[3 * R] += q0 * 0.25f - (q1 + q2) * R6 + (q3 + q4) * R24;
            dw[3 * R + 1] += (q2 - q1) * R6 + (q3 - q4) * R12;
            dw[3 * R + 2] += (q3 + q4 - q1 - q2) * R6 + q5;
        }
    }
}

void wino_weight_grad_transform(float *dweight, const float *P, int64_t K, int64_t C) {
    wino_job jb = {.dst = dweight, .src = P, .A = K, .B = C};
    tg_parallel_items(K * ((C + WB - 1) / WB), 36.0 * WB, WINO_SERIAL, WINO_GRAIN,
                      weight_grad_jobs, &jb);
}

/* ---------------------------------------------------------------- tile transforms */

int64_t wino_runs(wino_run *runs, const wino_plan *p, int64_t t0, int64_t nt) {
    int64_t per_image = p->th * p->tw, count = 0;
    for (int64_t t = t0; t < t0 + nt;) {
        int64_t r = t % per_image, tx = r % p->tw;
        int64_t len = p->tw - tx < t0 + nt - t ? p->tw - tx : t0 + nt - t;
        runs[count++] = (wino_run){.n = t / per_image, .ty = (int32_t)(r / p->tw),
                                   .tx0 = (int32_t)tx, .len = (int32_t)len,
                                   .col = (int32_t)(t - t0)};
        t += len;
    }
    return count;
}

/* The 4 phases of a row: P[q LS + l] = row[ix0 + 4 l + q] for q < 4, l < n (n <= RUN_CHUNK
 * + 1), zero where the column is outside [0, W) or row is NULL (a row outside the plane).
 * A run that touches an edge of the plane is first copied into a zero-padded buffer with
 * masked loads, 16 floats per store, so that the split's vector loads find whole stores
 * to forward from (a copy by memcpy and scalar edge lanes each cost a store-forwarding
 * stall per load: half the input transform's time). */
static void split_row(float *restrict P, const float *restrict row, int64_t ix0, int64_t W,
                      int n) {
    if (!row) {
        for (int q = 0; q < 4; q++) memset(P + q * LS, 0, (size_t)n * sizeof(float));
        return;
    }
    alignas(64) float padded[4 * RUN_CHUNK + 16];
    const float *restrict r = padded;
    if (ix0 >= 0 && ix0 + 4 * (int64_t)n <= W) {
        r = row + ix0;
    } else {
        for (int jb = 0; jb < 4 * n; jb += 16) {
#pragma omp simd
            for (int j = 0; j < 16; j++) {
                int64_t ix = ix0 + jb + j;
                padded[jb + j] = ix >= 0 && ix < W ? row[ix] : 0.0f;
            }
        }
    }
    float *restrict p0 = P, *restrict p1 = P + LS, *restrict p2 = P + 2 * LS;
    float *restrict p3 = P + 3 * LS;
#pragma omp simd
    for (int l = 0; l < n; l++) {
        p0[l] = r[4 * l];
        p1[l] = r[4 * l + 1];
        p2[l] = r[4 * l + 2];
        p3[l] = r[4 * l + 3];
    }
}

static void input_jobs(void *arg, int64_t j0, int64_t j1) {
    const wino_job *jb = arg;
    float *V = jb->dst;
    const float *in = jb->src;
    const wino_plan *p = jb->p;
    const wino_run *runs = jb->runs;
    const int64_t nruns = jb->nruns;
    const int64_t C = p->C, H = p->H, W = p->W, Tb = p->Tb;
    const ptrdiff_t vs = (ptrdiff_t)(C * Tb); /* between V's 36 positions */
    for (int64_t job = j0; job < j1; job++) {
        int64_t c = job / nruns;
        const wino_run *run = &runs[job % nruns];
        const float *x = in + (run->n * C + c) * H * W;
        alignas(64) float d[6][4 * LS], t[6][4 * LS]; /* [row][phase][tile] */
        for (int a = 0; a < run->len; a += RUN_CHUNK) {
            int m = run->len - a < RUN_CHUNK ? run->len - a : RUN_CHUNK;
            int64_t iy = 4 * (int64_t)run->ty - p->ph, ix = 4 * (int64_t)(run->tx0 + a) - p->pw;
            /* Ask for the rows the next tile row adds (the hardware prefetcher does not
             * follow 6 rows at a time closely enough). */
            for (int64_t y = iy + 6; y < iy + 10 && y < H; y++)
                for (int64_t j = ix < 0 ? 0 : ix; j < ix + 4 * m + 2 && j < W; j += 16)
                    __builtin_prefetch(x + y * W + j);
            for (int i = 0; i < 6; i++) /* m + 1 tiles: columns 4, 5 are the next's 0, 1 */
                split_row(d[i], iy + i >= 0 && iy + i < H ? x + (iy + i) * W : NULL, ix, W,
                          m + 1);
            for (int q = 0; q < 4; q++) /* columns: B^T d, one phase at a time */
                bt6(d[0] + q * LS, d[1] + q * LS, d[2] + q * LS, d[3] + q * LS, d[4] + q * LS,
                    d[5] + q * LS, t[0] + q * LS, 4 * LS, m + 1);
            float *v = V + c * Tb + run->col + a;
            for (int r = 0; r < 6; r++) { /* rows: . B, columns 0..5 of tile l */
                const float *s = t[r];
                bt6(s, s + LS, s + 2 * LS, s + 3 * LS, s + 1, s + LS + 1, v + 6 * r * vs, vs, m);
            }
        }
    }
}

/* Floats one job of a block writes on average: 36 per tile. */
static double per_job(const wino_run *runs, int64_t nruns) {
    int64_t tiles = 0;
    for (int64_t r = 0; r < nruns; r++) tiles += runs[r].len;
    return nruns > 0 ? 36.0 * (double)tiles / (double)nruns : 1;
}

void wino_input_transform(float *V, const float *in, const wino_plan *p, const wino_run *runs,
                          int64_t nruns) {
    wino_job jb = {.dst = V, .src = in, .p = p, .runs = runs, .nruns = nruns};
    tg_parallel_items(p->C * nruns, per_job(runs, nruns), WINO_SERIAL, WINO_GRAIN,
                      input_jobs, &jb);
}

/* Output row y (cols columns from the run's first tile) from its 4 phases O[q LS + l],
 * l < m: y[4 l + q] = O + b, or += O when accumulate. */
static void merge_row(float *restrict y, const float *restrict O, int64_t cols, int m,
                      float b, bool accumulate) {
    int full = cols / 4 < m ? (int)(cols / 4) : m; /* tiles with 4 columns inside */
    const float *restrict o0 = O, *restrict o1 = O + LS, *restrict o2 = O + 2 * LS;
    const float *restrict o3 = O + 3 * LS;
    if (accumulate) {
#pragma omp simd
        for (int l = 0; l < full; l++) {
            y[4 * l] += o0[l];
            y[4 * l + 1] += o1[l];
            y[4 * l + 2] += o2[l];
            y[4 * l + 3] += o3[l];
        }
    } else {
#pragma omp simd
        for (int l = 0; l < full; l++) {
            y[4 * l] = o0[l] + b;
            y[4 * l + 1] = o1[l] + b;
            y[4 * l + 2] = o2[l] + b;
            y[4 * l + 3] = o3[l] + b;
        }
    }
    for (int64_t j = 4 * (int64_t)full; j < cols && j < 4 * (int64_t)m; j++) {
        float v = O[(j % 4) * LS + j / 4];
        y[j] = accumulate ? y[j] + v : v + b;
    }
}

static void output_jobs(void *arg, int64_t j0, int64_t j1) {
    const wino_job *jb = arg;
    float *out = jb->dst;
    const float *M = jb->src, *bias = jb->bias;
    const bool accumulate = jb->flag;
    const wino_plan *p = jb->p;
    const wino_run *runs = jb->runs;
    const int64_t nruns = jb->nruns;
    const int64_t K = p->K, OH = p->OH, OW = p->OW, Tb = p->Tb;
    const ptrdiff_t ms = (ptrdiff_t)(K * Tb); /* between M's 36 positions */
    for (int64_t job = j0; job < j1; job++) {
        int64_t k = job / nruns;
        const wino_run *run = &runs[job % nruns];
        float b = bias ? bias[k] : 0.0f;
        alignas(64) float s[6][4 * LS], o[4][4 * LS]; /* [row][phase][tile] */
        for (int a = 0; a < run->len; a += RUN_CHUNK) {
            int m = run->len - a < RUN_CHUNK ? run->len - a : RUN_CHUNK;
            const float *mk = M + k * Tb + run->col + a;
            for (int r = 0; r < 6; r++) at4(mk + 6 * r * ms, ms, s[r], LS, m); /* rows: . A */
            for (int q = 0; q < 4; q++) /* columns: A^T . */
                at4(s[0] + q * LS, 4 * LS, o[0] + q * LS, 4 * LS, m);
            int64_t oy = 4 * (int64_t)run->ty, ox = 4 * (int64_t)(run->tx0 + a);
            float *y = out + ((run->n * K + k) * OH + oy) * OW + ox;
            for (int i = 0; i < 4 && oy + i < OH; i++, y += OW)
                merge_row(y, o[i], OW - ox, m, b, accumulate);
        }
    }
}

void wino_output_transform(float *out, const float *M, const float *bias, bool accumulate,
                           const wino_plan *p, const wino_run *runs, int64_t nruns) {
    wino_job jb = {.dst = out, .src = M, .bias = bias, .flag = accumulate, .p = p,
                   .runs = runs, .nruns = nruns};
    tg_parallel_items(p->K * nruns, per_job(runs, nruns) * 16 / 36, WINO_SERIAL, WINO_GRAIN,
                      output_jobs, &jb);
}

static void dout_jobs(void *arg, int64_t j0, int64_t j1) {
    const wino_job *jb = arg;
    float *Z = jb->dst;
    const float *dout = jb->src;
    const wino_plan *p = jb->p;
    const wino_run *runs = jb->runs;
    const int64_t nruns = jb->nruns;
    const int64_t K = p->K, OH = p->OH, OW = p->OW, Tb = p->Tb;
    const ptrdiff_t zs = (ptrdiff_t)(K * Tb); /* between Z's 36 positions */
    for (int64_t job = j0; job < j1; job++) {
        int64_t k = job / nruns;
        const wino_run *run = &runs[job % nruns];
        const float *dy = dout + (run->n * K + k) * OH * OW;
        alignas(64) float d[4][4 * LS], e[6][4 * LS]; /* [row][phase][tile] */
        for (int a = 0; a < run->len; a += RUN_CHUNK) {
            int m = run->len - a < RUN_CHUNK ? run->len - a : RUN_CHUNK;
            int64_t oy = 4 * (int64_t)run->ty, ox = 4 * (int64_t)(run->tx0 + a);
            for (int i = 0; i < 4; i++)
                split_row(d[i], oy + i < OH ? dy + (oy + i) * OW : NULL, ox, OW, m);
            for (int q = 0; q < 4; q++) /* columns: A dY */
                a6(d[0] + q * LS, 4 * LS, e[0] + q * LS, 4 * LS, m);
            float *z = Z + k * Tb + run->col + a;
            for (int r = 0; r < 6; r++) a6(e[r], LS, z + 6 * r * zs, zs, m); /* rows: . A^T */
        }
    }
}

void wino_dout_transform(float *Z, const float *dout, const wino_plan *p, const wino_run *runs,
                         int64_t nruns) {
    wino_job jb = {.dst = Z, .src = dout, .p = p, .runs = runs, .nruns = nruns};
    tg_parallel_items(p->K * nruns, per_job(runs, nruns), WINO_SERIAL, WINO_GRAIN,
                      dout_jobs, &jb);
}
