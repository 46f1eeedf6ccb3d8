/*
 * cuda/elementwise.cu — the binary ops of ops/elementwise.c on the GPU: same-shape add
 * and accumulation (add's and reshape's backward), the broadcasting forward, the
 * gradient terms of mul and div, and the broadcast gradient reduction (ops/broadcast.h).
 * Each broadcasting kernel recovers its input offsets from the output index through the
 * plan's merged dims and strides, exactly as the CPU walk does.
 */
#include "common.cuh"

__global__ void add_forward_kernel(float *out, const float *a, const float *b, int64_t n) {
    TG_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

__global__ void accumulate_kernel(float *dst, const float *src, int64_t n) {
    TG_GRID_STRIDE(i, n) dst[i] += src[i];
}

extern "C" tg_status add_forward_cuda(float *out, const float *a, const float *b, int64_t n) {
    if (n <= 0) return TG_OK;
    add_forward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(out, a, b,
                                                                                   n);
    TG_CUDA_LAUNCHED("add_forward_cuda");
    return TG_OK;
}

extern "C" tg_status accumulate_cuda(float *dst, const float *src, int64_t n) {
    if (n <= 0) return TG_OK;
    accumulate_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(dst, src,
                                                                                  n);
    TG_CUDA_LAUNCHED("accumulate_cuda");
    return TG_OK;
}

/* ---------------------------------------------------------------- broadcasting ops */

/* Offsets into a and b of output element i under the plan (ops/broadcast.h). */
__device__ inline void bcast_offsets(const tg_bcast &p, int64_t i, int64_t *oa, int64_t *ob) {
    if (p.ndim == 1) { /* same shapes, or one operand a single element: no division */
        *oa = i * p.stride_a[0];
        *ob = i * p.stride_b[0];
        return;
    }
    int64_t a = 0, b = 0;
    for (int d = p.ndim - 1; d >= 0; d--) {
        int64_t idx = i % p.dim[d];
        i /= p.dim[d];
        a += idx * p.stride_a[d];
        b += idx * p.stride_b[d];
    }
    *oa = a;
    *ob = b;
}

/* out (n = the plan's numel) = a op b. */
__global__ void binary_forward_kernel(float *out, const float *a, const float *b, tg_bcast p,
                                      int64_t n, binary_kind kind) {
    TG_GRID_STRIDE(i, n) {
        int64_t oa, ob;
        bcast_offsets(p, i, &oa, &ob);
        float u = a[oa], v = b[ob];
        float r;
        switch (kind) {
        case BINARY_ADD: r = u + v; break;
        case BINARY_SUB: r = u - v; break;
        case BINARY_MUL: r = u * v; break;
        default: r = u / v; break;
        }
        out[i] = r;
    }
}

/* dst (n) = or += term(g[i], y[i], o[plan's b offset]). */
__global__ void binary_term_kernel(float *dst, bool accumulate, const float *g, const float *y,
                                   const float *o, tg_bcast p, int64_t n, binary_term term) {
    TG_GRID_STRIDE(i, n) {
        int64_t oa, ob;
        bcast_offsets(p, i, &oa, &ob);
        float gi = g[i], oi = o[ob];
        float t;
        switch (term) {
        case BINARY_TERM_MUL: t = gi * oi; break;
        case BINARY_TERM_DIV_A: t = gi / oi; break;
        default: t = -gi * y[i] / oi; break;
        }
        dst[i] = accumulate ? dst[i] + t : t;
    }
}

extern "C" tg_status binary_forward_cuda(float *out, const float *a, const float *b,
                                         const tg_bcast *p, binary_kind kind) {
    int64_t n = tg_bcast_numel(p);
    if (n <= 0) return TG_OK;
    binary_forward_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        out, a, b, *p, n, kind);
    TG_CUDA_LAUNCHED("binary_forward_cuda");
    return TG_OK;
}

extern "C" tg_status binary_term_cuda(float *dst, bool accumulate, const float *g,
                                      const float *y, const float *o, const tg_bcast *p,
                                      binary_term term) {
    int64_t n = tg_bcast_numel(p);
    if (n <= 0) return TG_OK;
    binary_term_kernel<<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dst, accumulate, g, y, o, *p, n, term);
    TG_CUDA_LAUNCHED("binary_term_cuda");
    return TG_OK;
}

/* Index of g at (k0, r0, k1, r1, k2). */
__device__ inline int64_t reduce_index(const tg_bcast_reduce &p, int64_t k0, int64_t r0,
                                       int64_t k1, int64_t r1, int64_t k2) {
    return (((k0 * p.r0 + r0) * p.k1 + k1) * p.r1 + r1) * p.k2 + k2;
}

/* One thread per kept element k (kept = k0 k1 k2): neighbouring threads read
 * neighbouring k2, so the loads coalesce. */
__global__ void reduce_thread_kernel(float *dinp, const float *g, float scale,
                                     tg_bcast_reduce p, int64_t kept) {
    TG_GRID_STRIDE(k, kept) {
        int64_t k2 = k % p.k2, k1 = (k / p.k2) % p.k1, k0 = k / (p.k2 * p.k1);
        float s = 0.0f;
        for (int64_t r0 = 0; r0 < p.r0; r0++)
            for (int64_t r1 = 0; r1 < p.r1; r1++) s += g[reduce_index(p, k0, r0, k1, r1, k2)];
        dinp[k] += scale * s;
    }
}

/* One block per kept element (few kept, many summed): the block's threads share the
 * summed positions and combine with a block reduction (fixed order). */
__global__ void reduce_block_kernel(float *dinp, const float *g, float scale,
                                    tg_bcast_reduce p, int64_t kept) {
    __shared__ float scratch[32];
    int64_t summed = p.r0 * p.r1;
    for (int64_t k = blockIdx.x; k < kept; k += gridDim.x) {
        int64_t k2 = k % p.k2, k1 = (k / p.k2) % p.k1, k0 = k / (p.k2 * p.k1);
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < summed; j += blockDim.x)
            s += g[reduce_index(p, k0, j / p.r1, k1, j % p.r1, k2)];
        s = tg_block_sum(s, scratch);
        if (threadIdx.x == 0) dinp[k] += scale * s;
    }
}

__global__ void axpy_kernel(float *dst, const float *src, float scale, int64_t n) {
    TG_GRID_STRIDE(i, n) dst[i] += scale * src[i];
}

extern "C" tg_status broadcast_reduce_cuda(float *dinp, const float *g, float scale,
                                           const tg_bcast_reduce *p) {
    int64_t kept = p->k0 * p->k1 * p->k2, summed = p->r0 * p->r1;
    if (kept <= 0) return TG_OK;
    if (summed == 1) {
        axpy_kernel<<<tg_cuda_blocks(kept), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(dinp, g,
                                                                                 scale, kept);
        TG_CUDA_LAUNCHED("broadcast_reduce_cuda (axpy)");
    } else if (summed >= 1024 && kept < 65536) {
        unsigned blocks = (unsigned)(kept < 65535 ? kept : 65535);
        reduce_block_kernel<<<blocks, TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(dinp, g, scale,
                                                                            *p, kept);
        TG_CUDA_LAUNCHED("broadcast_reduce_cuda (block per element)");
    } else {
        reduce_thread_kernel<<<tg_cuda_blocks(kept), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
            dinp, g, scale, *p, kept);
        TG_CUDA_LAUNCHED("broadcast_reduce_cuda (thread per element)");
    }
    return TG_OK;
}
