/*
 * cuda/layout.cu — permute/transpose and the strided row copy of concat and slice on the
 * GPU (ops/layout.c has the formulas and the derivation). Same contract as the CPU
 * kernels: write (accumulate false) or add into (accumulate true) the destination.
 *
 * permute: when the last dim stays last, one thread per output element reading the
 * matching input row (coalesced on both sides). Otherwise a 32x32 tile of the output's
 * last two dims is staged through shared memory so that the reads follow the INPUT's
 * fastest dim and the writes the output's (the classic tiled transpose; the +1 column
 * avoids shared-memory bank conflicts).
 */
#include "common.cuh"

#define TILE 32

struct permute_dev {
    int64_t od[4]; /* output dims */
    int64_t st[4]; /* input stride of each output dim */
};

static permute_dev permute_setup(const permute_geom *g) {
    permute_dev p;
    int64_t in_stride[4];
    in_stride[3] = 1;
    for (int k = 2; k >= 0; k--) in_stride[k] = in_stride[k + 1] * g->in_shape[k + 1];
    for (int k = 0; k < 4; k++) {
        p.od[k] = g->in_shape[g->perm[k]];
        p.st[k] = in_stride[g->perm[k]];
    }
    return p;
}

/* out[e] (+)= x[...]: the last dim is contiguous in both (st[3] == 1). */
__global__ void permute_rows_kernel(float *out, const float *x, permute_dev p, int64_t total,
                                    bool accumulate) {
    TG_GRID_STRIDE(e, total) {
        int64_t i3 = e % p.od[3], r = e / p.od[3];
        int64_t i2 = r % p.od[2], i1 = (r / p.od[2]) % p.od[1], i0 = r / (p.od[2] * p.od[1]);
        float v = x[i0 * p.st[0] + i1 * p.st[1] + i2 * p.st[2] + i3];
        out[e] = accumulate ? out[e] + v : v;
    }
}

/* One block per 32x32 tile of an output plane (dims 2, 3); blockDim (32, 8).
 * grid.x: tiles along dim 3, grid.y: tiles along dim 2, grid.z: planes (od[0] od[1]). */
__global__ void permute_tile_kernel(float *out, const float *x, permute_dev p,
                                    bool accumulate) {
    __shared__ float tile[TILE][TILE + 1];
    int64_t plane = blockIdx.z, i1 = plane % p.od[1], i0 = plane / p.od[1];
    const float *src = x + i0 * p.st[0] + i1 * p.st[1];
    float *dst = out + plane * p.od[2] * p.od[3];
    int64_t r0 = (int64_t)blockIdx.y * TILE, c0 = (int64_t)blockIdx.x * TILE;
    /* Read: consecutive threads walk output dim 2 (usually the input's fastest dim). */
    for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
        int64_t c = c0 + k, r = r0 + threadIdx.x;
        if (r < p.od[2] && c < p.od[3]) tile[threadIdx.x][k] = src[r * p.st[2] + c * p.st[3]];
    }
    __syncthreads();
    /* Write: consecutive threads walk output dim 3 (contiguous in out). */
    for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
        int64_t r = r0 + k, c = c0 + threadIdx.x;
        if (r < p.od[2] && c < p.od[3]) {
            float v = tile[k][threadIdx.x];
            float *d = dst + r * p.od[3] + c;
            *d = accumulate ? *d + v : v;
        }
    }
}

extern "C" tg_status permute_cuda(float *out, const float *x, const permute_geom *g,
                                  bool accumulate) {
    permute_dev p = permute_setup(g);
    int64_t total = p.od[0] * p.od[1] * p.od[2] * p.od[3];
    if (total <= 0) return TG_OK;
    if (p.st[3] == 1) {
        permute_rows_kernel<<<tg_cuda_blocks(total), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
            out, x, p, total, accumulate);
        TG_CUDA_LAUNCHED("permute_cuda");
        return TG_OK;
    }
    int64_t planes = p.od[0] * p.od[1];
    dim3 grid((unsigned)tg_cuda_ceil_div(p.od[3], TILE), (unsigned)tg_cuda_ceil_div(p.od[2], TILE),
              (unsigned)planes);
    if (grid.y > 65535 || planes > 65535)
        return tg_fail(TG_ERR_UNSUPPORTED, "permute_cuda: %lld planes of %lld rows exceed the "
                       "grid's y/z limit (65535)", (long long)planes, (long long)p.od[2]);
    permute_tile_kernel<<<grid, dim3(TILE, 8), 0, tg_cuda_stream()>>>(out, x, p, accumulate);
    TG_CUDA_LAUNCHED("permute_cuda");
    return TG_OK;
}

__global__ void copy_rows_kernel(float *dst, int64_t dst_stride, const float *src,
                                 int64_t src_stride, int64_t rows, int64_t len,
                                 bool accumulate) {
    TG_GRID_STRIDE(e, rows * len) {
        int64_t r = e / len, k = e % len;
        float v = src[r * src_stride + k];
        float *d = dst + r * dst_stride + k;
        *d = accumulate ? *d + v : v;
    }
}

extern "C" tg_status copy_rows_cuda(float *dst, int64_t dst_stride, const float *src,
                                    int64_t src_stride, int64_t rows, int64_t len,
                                    bool accumulate) {
    if (rows <= 0 || len <= 0) return TG_OK;
    copy_rows_kernel<<<tg_cuda_blocks(rows * len), TG_CUDA_THREADS, 0, tg_cuda_stream()>>>(
        dst, dst_stride, src, src_stride, rows, len, accumulate);
    TG_CUDA_LAUNCHED("copy_rows_cuda");
    return TG_OK;
}
