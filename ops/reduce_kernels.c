/*
 * ops/reduce_kernels.c — the CPU kernels of ops/reduce.c (the reductions along one dim
 * and over everything; the formulas and the gradients' derivation are there).
 *
 * Rows (inner = 1) are summed in float runs of 1024 added into a double, in fixed chunks
 * of 16,384 combined in order, so results do not depend on the thread count; inner > 1
 * adds whole rows of inner floats (vectorised), tiled over (outer, blocks of inner).
 *
 * THREADS. Every loop runs on tg_parallel_items (core/pool.c): its items (a row, a block
 * of columns, a fixed chunk with its own partial) are computed the same whoever runs
 * them, the partials are combined in order afterwards, and a thread that a busy machine
 * has not scheduled is never waited for.
 */
#include "reduce.h"

#include "../core/core.h"

#include <stdatomic.h>

#define RUN 1024          /* floats summed in float before going into a double */
#define CHUNK 16384       /* a row's fixed chunk (partial sums combined in order) */
#define MAX_CHUNKS 4096   /* partials kept on the stack by the few-long-rows path */
#define INNER_BLOCK 512   /* columns per task when inner > 1 */
#define PAR_MIN 32768     /* elements below which loops stay serial */
#define GRAIN 32768       /* about this many elements per chunk of a parallel loop */

/* Every kernel's arguments (each uses its own). */
typedef struct red_job {
    float *out, *dx, *mean;
    int64_t *argmax_out;
    const float *x, *dout, *mu;
    const int64_t *argmax;
    double *partial;
    float *best_v;
    int64_t *best_j;
    _Atomic int64_t count;
    int64_t outer, n, inner, nchunks, nblk, total;
    float scale, m, g;
    int correction;
} red_job;

/* The common split of the reductions along a dim: whole rows (inner = 1), or tasks of
 * INNER_BLOCK columns of one outer index (inner > 1). */
static void rows_or_blocks(red_job *j, tg_range_fn rows, tg_range_fn blocks) {
    if (j->inner == 1) {
        tg_parallel_items(j->outer, (double)j->n, PAR_MIN, GRAIN, rows, j);
        return;
    }
    j->nblk = (j->inner + INNER_BLOCK - 1) / INNER_BLOCK;
    tg_parallel_items(j->outer * j->nblk, (double)j->n * (double)j->inner / (double)j->nblk,
                      PAR_MIN, GRAIN, blocks, j);
}

/* ---------------------------------------------------------------- sum / mean */

static double run_sum(const float *x, int64_t n) {
    double acc = 0.0;
    for (int64_t j0 = 0; j0 < n; j0 += RUN) {
        int64_t j1 = j0 + RUN < n ? j0 + RUN : n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t j = j0; j < j1; j++) s += x[j];
        acc += s;
    }
    return acc;
}

/* One row of n floats, summed chunk by chunk in order (what every path computes). */
static double row_sum(const float *x, int64_t n) {
    double acc = 0.0;
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK)
        acc += run_sum(x + c0, c0 + CHUNK < n ? CHUNK : n - c0);
    return acc;
}

/* Chunk t of row t / nchunks: its sum into partial[t]. */
static void sum_chunks(void *arg, int64_t t0, int64_t t1) {
    const red_job *j = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / j->nchunks, c0 = (t % j->nchunks) * CHUNK;
        j->partial[t] = run_sum(j->x + o * j->n + c0, c0 + CHUNK < j->n ? CHUNK : j->n - c0);
    }
}

static void sum_rows(void *arg, int64_t o0, int64_t o1) {
    const red_job *j = arg;
    for (int64_t o = o0; o < o1; o++)
        j->out[o] = (float)(row_sum(j->x + o * j->n, j->n) * j->scale);
}

/* Task t: row o = t / nblk, columns i0 .. i0 + len of every j, added whole rows at a time. */
static void sum_blocks(void *arg, int64_t t0, int64_t t1) {
    const red_job *j = arg;
    const int64_t n = j->n, inner = j->inner;
    const float scale = j->scale;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / j->nblk, i0 = (t % j->nblk) * INNER_BLOCK;
        int64_t len = i0 + INNER_BLOCK < inner ? INNER_BLOCK : inner - i0;
        float *y = j->out + o * inner + i0;
        const float *xo = j->x + o * n * inner + i0;
#pragma omp simd
        for (int64_t i = 0; i < len; i++) y[i] = xo[i];
        for (int64_t r = 1; r < n; r++) {
            const float *row = xo + r * inner;
#pragma omp simd
            for (int64_t i = 0; i < len; i++) y[i] += row[i];
        }
#pragma omp simd
        for (int64_t i = 0; i < len; i++) y[i] *= scale;
    }
}

void sum_forward_cpu(float *out, const float *x, int64_t outer, int64_t n, int64_t inner,
                     float scale) {
    red_job j = {.out = out, .x = x, .outer = outer, .n = n, .inner = inner, .scale = scale};
    if (inner == 1) {
        int64_t nchunks = (n + CHUNK - 1) / CHUNK;
        if (outer < tg_threads() && nchunks > 1 && outer * nchunks <= MAX_CHUNKS) {
            /* Few long rows: the chunks of all rows in parallel, then each row's in order. */
            double partial[MAX_CHUNKS];
            j.partial = partial;
            j.nchunks = nchunks;
            tg_parallel_items(outer * nchunks, CHUNK, 0, CHUNK, sum_chunks, &j);
            for (int64_t o = 0; o < outer; o++) {
                double acc = 0.0;
                for (int64_t c = 0; c < nchunks; c++) acc += partial[o * nchunks + c];
                out[o] = (float)(acc * scale);
            }
            return;
        }
    }
    rows_or_blocks(&j, sum_rows, sum_blocks);
}

/* Blocks b0 .. b1-1 of CHUNK elements of the flat dx (rows of n), crossing rows. */
static void sum_back_flat(void *arg, int64_t b0, int64_t b1) {
    const red_job *j = arg;
    for (int64_t b = b0; b < b1; b++) {
        int64_t e = b * CHUNK, e1 = e + CHUNK < j->total ? e + CHUNK : j->total;
        for (int64_t o = e / j->n; e < e1; o++) {
            int64_t row_end = (o + 1) * j->n < e1 ? (o + 1) * j->n : e1;
            float g = j->scale * j->dout[o];
            float *dx = j->dx;
#pragma omp simd
            for (int64_t k = e; k < row_end; k++) dx[k] += g;
            e = row_end;
        }
    }
}

/* Rows r0 .. r1-1 of dx seen as (outer n, inner). */
static void sum_back_rows(void *arg, int64_t r0, int64_t r1) {
    const red_job *j = arg;
    const int64_t inner = j->inner;
    const float scale = j->scale;
    for (int64_t r = r0; r < r1; r++) {
        float *d = j->dx + r * inner;
        const float *g = j->dout + (r / j->n) * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) d[i] += scale * g[i];
    }
}

void sum_backward_cpu(float *dx, const float *dout, int64_t outer, int64_t n, int64_t inner,
                      float scale) {
    red_job j = {.dx = dx, .dout = dout, .outer = outer, .n = n, .inner = inner,
                 .scale = scale, .total = outer * n * inner};
    if (inner == 1) /* dx is outer rows of n; blocks of the flat index */
        tg_parallel_items((j.total + CHUNK - 1) / CHUNK, CHUNK, PAR_MIN, GRAIN, sum_back_flat, &j);
    else
        tg_parallel_items(outer * n, (double)inner, PAR_MIN, GRAIN, sum_back_rows, &j);
}

/* ---------------------------------------------------------------- max */

/* v beats the best so far: greater, or the first NaN (which then stays). */
static inline int beats(float v, float best) { return v > best || (v != v && best == best); }

/* Chunk t of row t / nchunks: its first arg-max into best_v[t], best_j[t]. */
static void max_chunks(void *arg, int64_t t0, int64_t t1) {
    const red_job *j = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / j->nchunks, c0 = (t % j->nchunks) * CHUNK;
        int64_t c1 = c0 + CHUNK < j->n ? c0 + CHUNK : j->n;
        const float *row = j->x + o * j->n;
        float b = row[c0];
        int64_t bj = c0;
        for (int64_t q = c0 + 1; q < c1; q++)
            if (beats(row[q], b)) b = row[q], bj = q;
        j->best_v[t] = b;
        j->best_j[t] = bj;
    }
}

static void max_rows(void *arg, int64_t o0, int64_t o1) {
    const red_job *j = arg;
    for (int64_t o = o0; o < o1; o++) {
        const float *row = j->x + o * j->n;
        float b = row[0];
        int64_t bj = 0;
        for (int64_t q = 1; q < j->n; q++)
            if (beats(row[q], b)) b = row[q], bj = q;
        j->out[o] = b;
        if (j->argmax_out) j->argmax_out[o] = bj;
    }
}

static void max_blocks(void *arg, int64_t t0, int64_t t1) {
    const red_job *j = arg;
    const int64_t n = j->n, inner = j->inner;
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / j->nblk, i0 = (t % j->nblk) * INNER_BLOCK;
        int64_t len = i0 + INNER_BLOCK < inner ? INNER_BLOCK : inner - i0;
        float *y = j->out + o * inner + i0;
        int64_t *am = j->argmax_out ? j->argmax_out + o * inner + i0 : NULL;
        const float *xo = j->x + o * n * inner + i0;
        for (int64_t i = 0; i < len; i++) y[i] = xo[i];
        if (am)
            for (int64_t i = 0; i < len; i++) am[i] = 0;
        for (int64_t r = 1; r < n; r++) {
            const float *row = xo + r * inner;
            if (am) {
                for (int64_t i = 0; i < len; i++)
                    if (beats(row[i], y[i])) y[i] = row[i], am[i] = r;
            } else {
                for (int64_t i = 0; i < len; i++)
                    if (beats(row[i], y[i])) y[i] = row[i];
            }
        }
    }
}

void max_forward_cpu(float *out, int64_t *argmax, const float *x, int64_t outer, int64_t n,
                     int64_t inner) {
    red_job j = {.out = out, .argmax_out = argmax, .x = x, .outer = outer, .n = n,
                 .inner = inner};
    if (inner == 1) {
        int64_t nchunks = (n + CHUNK - 1) / CHUNK;
        if (outer < tg_threads() && nchunks > 1 && outer * nchunks <= MAX_CHUNKS) {
            float best_v[MAX_CHUNKS];
            int64_t best_j[MAX_CHUNKS];
            j.best_v = best_v;
            j.best_j = best_j;
            j.nchunks = nchunks;
            tg_parallel_items(outer * nchunks, CHUNK, 0, CHUNK, max_chunks, &j);
            for (int64_t o = 0; o < outer; o++) {
                /* Chunks in order, strictly better only: the first arg-max wins. */
                float b = best_v[o * nchunks];
                int64_t bj = best_j[o * nchunks];
                for (int64_t c = 1; c < nchunks; c++)
                    if (beats(best_v[o * nchunks + c], b))
                        b = best_v[o * nchunks + c], bj = best_j[o * nchunks + c];
                out[o] = b;
                if (argmax) argmax[o] = bj;
            }
            return;
        }
    }
    rows_or_blocks(&j, max_rows, max_blocks);
}

static void max_back_rows(void *arg, int64_t o0, int64_t o1) {
    const red_job *j = arg;
    const int64_t n = j->n, inner = j->inner;
    for (int64_t o = o0; o < o1; o++)
        for (int64_t i = 0; i < inner; i++)
            j->dx[(o * n + j->argmax[o * inner + i]) * inner + i] += j->dout[o * inner + i];
}

void max_backward_cpu(float *dx, const float *dout, const int64_t *argmax, int64_t outer,
                      int64_t n, int64_t inner) {
    red_job j = {.dx = dx, .dout = dout, .argmax = argmax, .outer = outer, .n = n,
                 .inner = inner};
    tg_parallel_items(outer, (double)inner, PAR_MIN, GRAIN, max_back_rows, &j);
}

static inline int is_max(float v, float m) { return v == m || (v != v && m != m); }

/* Counts are integers: added in any order, the same total. */
static void count_range(void *arg, int64_t e0, int64_t e1) {
    red_job *j = arg;
    const float *x = j->x, m = j->m;
    int64_t count = 0;
#pragma omp simd reduction(+ : count)
    for (int64_t e = e0; e < e1; e++) count += is_max(x[e], m);
    atomic_fetch_add_explicit(&j->count, count, memory_order_relaxed);
}

int64_t max_count_cpu(const float *x, int64_t n, float m) {
    red_job j = {.x = x, .m = m};
    atomic_init(&j.count, 0);
    tg_parallel_items(n, 1, PAR_MIN, GRAIN, count_range, &j);
    return atomic_load_explicit(&j.count, memory_order_relaxed);
}

static void max_all_back_range(void *arg, int64_t e0, int64_t e1) {
    const red_job *j = arg;
    const float *x = j->x, m = j->m, g = j->g;
    float *dx = j->dx;
#pragma omp simd
    for (int64_t e = e0; e < e1; e++) dx[e] += is_max(x[e], m) ? g : 0.0f;
}

void max_all_backward_cpu(float *dx, const float *dout, const float *x, int64_t n, float m,
                          int64_t count) {
    red_job j = {.dx = dx, .x = x, .m = m, .g = dout[0] / (float)count};
    tg_parallel_items(n, 1, PAR_MIN, GRAIN, max_all_back_range, &j);
}

/* ---------------------------------------------------------------- var */

static void var_items(void *arg, int64_t t0, int64_t t1) {
    const red_job *j = arg;
    const int64_t n = j->n, inner = j->inner;
    const float denom = (float)(n - j->correction);
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / inner, i = t % inner;
        const float *xo = j->x + o * n * inner + i;
        float mu = j->mean[t];
        double acc = 0.0;
        for (int64_t q = 0; q < n; q++) {
            double d = (double)xo[q * inner] - mu;
            acc += d * d;
        }
        j->out[t] = (float)(acc / denom);
    }
}

void var_forward_cpu(float *out, float *mean, const float *x, int64_t outer, int64_t n,
                     int64_t inner, int correction) {
    sum_forward_cpu(mean, x, outer, n, inner, 1.0f / (float)n);
    red_job j = {.out = out, .mean = mean, .x = x, .outer = outer, .n = n, .inner = inner,
                 .correction = correction};
    tg_parallel_items(outer * inner, (double)n, PAR_MIN, GRAIN, var_items, &j);
}

static void var_back_rows(void *arg, int64_t r0, int64_t r1) {
    const red_job *j = arg;
    const int64_t n = j->n, inner = j->inner;
    const float two_over = 2.0f / (float)(n - j->correction);
    for (int64_t r = r0; r < r1; r++) {
        int64_t o = r / n;
        float *d = j->dx + r * inner;
        const float *xr = j->x + r * inner, *g = j->dout + o * inner, *mu = j->mu + o * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) d[i] += g[i] * two_over * (xr[i] - mu[i]);
    }
}

void var_backward_cpu(float *dx, const float *dout, const float *x, const float *mean,
                      int64_t outer, int64_t n, int64_t inner, int correction) {
    red_job j = {.dx = dx, .dout = dout, .x = x, .mu = mean, .outer = outer, .n = n,
                 .inner = inner, .correction = correction};
    tg_parallel_items(outer * n, (double)inner, PAR_MIN, GRAIN, var_back_rows, &j);
}
