/*
 * cuda/reduce.cu — sum/mean/var/max along a dim and over everything, on the GPU
 * (ops/reduce.c has the formulas, the derivation and the tie rules). x is seen as
 * (outer, n, inner), the result as (outer, inner).
 *
 * inner = 1 (rows; also the *_all reductions): two stages, no atomics, so results are
 * the same run to run. Stage 1 cuts each row into at most MAX_CHUNKS chunks and reduces
 * each chunk with one block into the workspace; stage 2 reduces a row's chunk results
 * with one block. A long single row (sum_all) so spreads over the whole GPU.
 * inner > 1: one thread per output element walks j; neighbouring threads read
 * neighbouring columns (coalesced).
 * max keeps (value, index) pairs and prefers, in order: a NaN, a larger value, a smaller
 * index — so the result is the first arg-max, as on the CPU.
 */
#include "common.cuh"

#include <math.h>

#define CHUNK_MIN 8192   /* elements per chunk at least */
#define MAX_CHUNKS 1024  /* chunks per row at most */
#define BLOCK 256

static int64_t row_chunks(int64_t n) {
    int64_t c = tg_cuda_ceil_div(n, CHUNK_MIN);
    return c < MAX_CHUNKS ? c : MAX_CHUNKS;
}

extern "C" int64_t reduce_workspace_floats_cuda(int64_t outer, int64_t n, int64_t inner) {
    /* Per chunk: an int64 index (2 floats) and a value; plus a 64-bit counter. */
    return (inner == 1 ? 3 * outer * row_chunks(n) : 0) + 2;
}

/* ---------------------------------------------------------------- sums */

enum { OP_SUM = 0, OP_SQDEV = 1 };

/* partial[o nch + c] = sum over chunk c of row o of x (OP_SUM) or (x - mean[o])^2. */
template <int OP>
__global__ void row_partial_kernel(float *partial, const float *x, const float *mean, int64_t n,
                                   int64_t nch, int64_t chunk) {
    __shared__ float scratch[32];
    int64_t b = blockIdx.x, o = b / nch, j0 = (b % nch) * chunk;
    int64_t j1 = j0 + chunk < n ? j0 + chunk : n;
    const float *row = x + o * n;
    float mu = OP == OP_SQDEV ? mean[o] : 0.0f, s = 0.0f;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        float v = row[j];
        if (OP == OP_SQDEV) v = (v - mu) * (v - mu);
        s += v;
    }
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) partial[b] = s;
}

/* out[o] = scale * sum_c partial[o nch + c]; one block per row. */
__global__ void row_final_kernel(float *out, const float *partial, int64_t nch, float scale) {
    __shared__ float scratch[32];
    int64_t o = blockIdx.x;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < nch; c += blockDim.x) s += partial[o * nch + c];
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) out[o] = s * scale;
}

/* out[o, i] = scale * sum_j f(x[o, j, i]); one thread per output. */
template <int OP>
__global__ void cols_sum_kernel(float *out, const float *x, const float *mean, int64_t outer,
                                int64_t n, int64_t inner, float scale) {
    TG_GRID_STRIDE(t, outer * inner) {
        int64_t o = t / inner, i = t % inner;
        const float *col = x + o * n * inner + i;
        float mu = OP == OP_SQDEV ? mean[t] : 0.0f, s = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            float v = col[j * inner];
            if (OP == OP_SQDEV) v = (v - mu) * (v - mu);
            s += v;
        }
        out[t] = s * scale;
    }
}

template <int OP>
static tg_status reduce_sum(float *out, const float *x, const float *mean, int64_t outer,
                            int64_t n, int64_t inner, float scale, float *work) {
    if (outer * inner <= 0) return TG_OK;
    if (inner > 1) {
        cols_sum_kernel<OP><<<tg_cuda_blocks(outer * inner), TG_CUDA_THREADS, 0,
                              tg_cuda_stream()>>>(out, x, mean, outer, n, inner, scale);
        TG_CUDA_LAUNCHED("reduce (columns)");
        return TG_OK;
    }
    int64_t nch = row_chunks(n), chunk = tg_cuda_ceil_div(n, nch);
    float *partial = work + 2 * outer * nch; /* after the index area max uses */
    row_partial_kernel<OP><<<(unsigned)(outer * nch), n < 1024 ? 32 : BLOCK, 0,
                             tg_cuda_stream()>>>(partial, x, mean, n, nch, chunk);
    TG_CUDA_LAUNCHED("reduce (row chunks)");
    row_final_kernel<<<(unsigned)outer, nch <= 32 ? 32 : BLOCK, 0, tg_cuda_stream()>>>(
        out, partial, nch, scale);
    TG_CUDA_LAUNCHED("reduce (rows)");
    return TG_OK;
}

extern "C" tg_status sum_forward_cuda(float *out, const float *x, int64_t outer, int64_t n,
                                      int64_t inner, float scale, float *work) {
    return reduce_sum<OP_SUM>(out, x, NULL, outer, n, inner, scale, work);
}

__global__ void sum_backward_kernel(float *dx, const float *dout, int64_t n, int64_t inner,
                                    int64_t total, float scale) {
    TG_GRID_STRIDE(e, total) dx[e] += scale * dout[(e / (n * inner)) * inner + e % inner];
}

extern "C" tg_status sum_backward_cuda(float *dx, const float *dout, int64_t outer, int64_t n,
                                       int64_t inner, float scale) {
    int64_t total = outer * n * inner;
    if (total <= 0) return TG_OK;
    sum_backward_kernel<<<tg_cuda_blocks(total), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dx, dout, n, inner, total, scale);
    TG_CUDA_LAUNCHED("sum_backward_cuda");
    return TG_OK;
}

/* ---------------------------------------------------------------- var */

extern "C" tg_status var_forward_cuda(float *out, float *mean, const float *x, int64_t outer,
                                      int64_t n, int64_t inner, int correction, float *work) {
    tg_status st = reduce_sum<OP_SUM>(mean, x, NULL, outer, n, inner, 1.0f / (float)n, work);
    if (st != TG_OK) return st;
    return reduce_sum<OP_SQDEV>(out, x, mean, outer, n, inner, 1.0f / (float)(n - correction),
                                work);
}

__global__ void var_backward_kernel(float *dx, const float *dout, const float *x,
                                    const float *mean, int64_t n, int64_t inner, int64_t total,
                                    float two_over) {
    TG_GRID_STRIDE(e, total) {
        int64_t t = (e / (n * inner)) * inner + e % inner;
        dx[e] += dout[t] * two_over * (x[e] - mean[t]);
    }
}

extern "C" tg_status var_backward_cuda(float *dx, const float *dout, const float *x,
                                       const float *mean, int64_t outer, int64_t n,
                                       int64_t inner, int correction) {
    int64_t total = outer * n * inner;
    if (total <= 0) return TG_OK;
    var_backward_kernel<<<tg_cuda_blocks(total), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dx, dout, x, mean, n, inner, total, 2.0f / (float)(n - correction));
    TG_CUDA_LAUNCHED("var_backward_cuda");
    return TG_OK;
}

/* ---------------------------------------------------------------- max */

/* (v, j) is preferred to (bv, bj): a NaN first, then the larger value, then the smaller
 * index (the first arg-max). */
__device__ inline bool pair_better(float v, int64_t j, float bv, int64_t bj) {
    bool vn = v != v, bn = bv != bv;
    if (vn != bn) return vn;
    if (!vn && v != bv) return v > bv;
    return j < bj;
}

/* Reduces (v, j) over the block; thread 0 gets the result. scratch: 32 of each. */
__device__ void block_best(float &v, int64_t &j, float *sv, int64_t *sj) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, off);
        long long oj = __shfl_xor_sync(0xffffffffu, (long long)j, off);
        if (pair_better(ov, oj, v, j)) v = ov, j = oj;
    }
    if (lane == 0) sv[warp] = v, sj[warp] = j;
    __syncthreads();
    if (warp == 0) {
        v = lane < nwarps ? sv[lane] : -INFINITY;
        j = lane < nwarps ? sj[lane] : INT64_MAX;
        for (int off = 16; off > 0; off >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, v, off);
            long long oj = __shfl_xor_sync(0xffffffffu, (long long)j, off);
            if (pair_better(ov, oj, v, j)) v = ov, j = oj;
        }
    }
}

__global__ void max_partial_kernel(float *pv, int64_t *pj, const float *x, int64_t n,
                                   int64_t nch, int64_t chunk) {
    __shared__ float sv[32];
    __shared__ int64_t sj[32];
    int64_t b = blockIdx.x, o = b / nch, j0 = (b % nch) * chunk;
    int64_t j1 = j0 + chunk < n ? j0 + chunk : n;
    const float *row = x + o * n;
    float v = -INFINITY;
    int64_t bj = INT64_MAX;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x)
        if (pair_better(row[j], j, v, bj)) v = row[j], bj = j;
    block_best(v, bj, sv, sj);
    if (threadIdx.x == 0) pv[b] = v, pj[b] = bj;
}

__global__ void max_final_kernel(float *out, int64_t *argmax, const float *pv,
                                 const int64_t *pj, int64_t nch) {
    __shared__ float sv[32];
    __shared__ int64_t sj[32];
    int64_t o = blockIdx.x;
    float v = -INFINITY;
    int64_t bj = INT64_MAX;
    for (int64_t c = threadIdx.x; c < nch; c += blockDim.x)
        if (pair_better(pv[o * nch + c], pj[o * nch + c], v, bj))
            v = pv[o * nch + c], bj = pj[o * nch + c];
    block_best(v, bj, sv, sj);
    if (threadIdx.x == 0) {
        out[o] = v;
        if (argmax) argmax[o] = bj;
    }
}

__global__ void max_cols_kernel(float *out, int64_t *argmax, const float *x, int64_t outer,
                                int64_t n, int64_t inner) {
    TG_GRID_STRIDE(t, outer * inner) {
        int64_t o = t / inner, i = t % inner;
        const float *col = x + o * n * inner + i;
        float v = col[0];
        int64_t bj = 0;
        for (int64_t j = 1; j < n; j++) {
            float c = col[j * inner];
            if (c > v || (c != c && v == v)) v = c, bj = j;
        }
        out[t] = v;
        if (argmax) argmax[t] = bj;
    }
}

extern "C" tg_status max_forward_cuda(float *out, int64_t *argmax, const float *x,
                                      int64_t outer, int64_t n, int64_t inner, float *work) {
    if (outer * inner <= 0) return TG_OK;
    if (inner > 1) {
        max_cols_kernel<<<tg_cuda_blocks(outer * inner), TG_CUDA_THREADS, 0,
                          tg_cuda_stream()>>>(out, argmax, x, outer, n, inner);
        TG_CUDA_LAUNCHED("max_forward_cuda (columns)");
        return TG_OK;
    }
    int64_t nch = row_chunks(n), chunk = tg_cuda_ceil_div(n, nch);
    int64_t *pj = (int64_t *)(void *)work; /* 2 outer nch floats, 8-byte aligned (arena) */
    float *pv = work + 2 * outer * nch;
    max_partial_kernel<<<(unsigned)(outer * nch), n < 1024 ? 32 : BLOCK, 0,
                         tg_cuda_stream()>>>(pv, pj, x, n, nch, chunk);
    TG_CUDA_LAUNCHED("max_forward_cuda (row chunks)");
    max_final_kernel<<<(unsigned)outer, nch <= 32 ? 32 : BLOCK, 0, tg_cuda_stream()>>>(
        out, argmax, pv, pj, nch);
    TG_CUDA_LAUNCHED("max_forward_cuda (rows)");
    return TG_OK;
}

__global__ void max_backward_kernel(float *dx, const float *dout, const int64_t *argmax,
                                    int64_t outer, int64_t n, int64_t inner) {
    TG_GRID_STRIDE(t, outer * inner) {
        int64_t o = t / inner, i = t % inner;
        dx[(o * n + argmax[t]) * inner + i] += dout[t];
    }
}

extern "C" tg_status max_backward_cuda(float *dx, const float *dout, const int64_t *argmax,
                                       int64_t outer, int64_t n, int64_t inner) {
    if (outer * inner <= 0) return TG_OK;
    max_backward_kernel<<<tg_cuda_blocks(outer * inner), TG_CUDA_THREADS, 0,
                          tg_cuda_stream()>>>(dx, dout, argmax, outer, n, inner);
    TG_CUDA_LAUNCHED("max_backward_cuda");
    return TG_OK;
}

__device__ inline bool is_max(float v, float m) { return v == m || (v != v && m != m); }

/* count[0] += the elements of x equal to m[0]; integer atomics (exact, order-free). */
__global__ void count_max_kernel(unsigned long long *count, const float *x, const float *m,
                                 int64_t n) {
    float mv = m[0];
    unsigned long long c = 0;
    TG_GRID_STRIDE(e, n) c += is_max(x[e], mv) ? 1 : 0;
    c = tg_warp_sum(c);
    if ((threadIdx.x & 31) == 0 && c) atomicAdd(count, c);
}

__global__ void max_all_backward_kernel(float *dx, const float *dout, const float *x,
                                        const float *m, const unsigned long long *count,
                                        int64_t n) {
    float mv = m[0], g = dout[0] / (float)count[0];
    TG_GRID_STRIDE(e, n) if (is_max(x[e], mv)) dx[e] += g;
}

extern "C" tg_status max_all_backward_cuda(float *dx, const float *dout, const float *x,
                                           const float *max, int64_t n, float *work) {
    if (n <= 0) return TG_OK;
    unsigned long long *count = (unsigned long long *)(void *)work;
    TG_CUDA_CHECK(cudaMemsetAsync(count, 0, sizeof *count, tg_cuda_stream()),
                  "max_all_backward_cuda: cudaMemsetAsync");
    count_max_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(count, x,
                                                                                  max, n);
    TG_CUDA_LAUNCHED("max_all_backward_cuda (count)");
    max_all_backward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dx, dout, x, max, count, n);
    TG_CUDA_LAUNCHED("max_all_backward_cuda");
    return TG_OK;
}
