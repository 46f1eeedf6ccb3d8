/*
 * cuda/common.cuh — what every .cu file of the backend shares: the checking macros that
 * turn a CUDA or cuBLAS failure into a tapegrad status with a message, the library's
 * stream (owned by blas.cu), launch-size helpers and block reductions.
 *
 * Conventions: 1-D element-wise kernels are grid-stride loops of TG_CUDA_THREADS threads
 * per block; every launch is followed by TG_CUDA_LAUNCHED("<function>").
 *
 * INDEX MATH. Hot element-wise kernels are templates over their index type I: the host
 * launches the uint32_t instance when every index fits in an int32 (TG_FITS_32) and the
 * int64_t one otherwise (tensors over 2^31 elements stay correct). The flat index is
 * split into coordinates with tg_div / tg_mod by divisors precomputed on the host
 * (tg_fastdiv, cuda/fastdiv.h): a multiply-high and a shift on the 32-bit path, a plain
 * division only on the 64-bit one.
 */
#ifndef TG_CUDA_COMMON_CUH
#define TG_CUDA_COMMON_CUH

#include "fastdiv.h"
#include "tg_cuda.h"

#include <cuda_runtime.h>

extern "C" tg_status tg_fail(tg_status status, const char *fmt, ...);

/* The stream every kernel and cuBLAS call of the library is queued on (blas.cu). It is a
 * blocking stream (ordered with the legacy default stream too); memory.cu queues its
 * copies and memsets on it as well. tg_cuda_probe creates it (tg_cuda_stream_init) when it
 * finds a device, so every context and parameter store on CUDA has it. */
cudaError_t tg_cuda_stream_init(void);
cudaStream_t tg_cuda_stream(void);

#define TG_CUDA_THREADS 256

/* Returns a TG_ERR_DEVICE status from the enclosing function when `call` fails. */
#define TG_CUDA_CHECK(call, what)                                                          \
    do {                                                                                   \
        cudaError_t err_ = (call);                                                         \
        if (err_ != cudaSuccess)                                                           \
            return tg_fail(TG_ERR_DEVICE, "%s: %s (%s)", what, cudaGetErrorString(err_),    \
                           cudaGetErrorName(err_));                                        \
    } while (0)

/* After a kernel launch: a bad launch configuration (or an earlier asynchronous fault)
 * becomes a status naming the launching function. */
#define TG_CUDA_LAUNCHED(what) TG_CUDA_CHECK(cudaGetLastError(), what " (kernel launch)")

/* Blocks for a grid-stride loop over n elements (n > 0). */
static inline unsigned tg_cuda_blocks(int64_t n) {
    int64_t b = (n + TG_CUDA_THREADS - 1) / TG_CUDA_THREADS;
    const int64_t cap = (int64_t)1 << 20; /* plenty of blocks to fill any GPU */
    return (unsigned)(b < cap ? b : cap);
}

__host__ __device__ static inline int64_t tg_cuda_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

#define TG_GRID_STRIDE(i, n)                                                              \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);             \
         i += (int64_t)gridDim.x * blockDim.x)

/* Whether a launch over n elements may use the 32-bit index path. */
#define TG_FITS_32(n) ((int64_t)(n) <= (int64_t)INT32_MAX)

/* Grid-stride loop with index type I (uint32_t: n <= INT32_MAX, and i + the grid's
 * stride, at most 2^28 with tg_cuda_blocks, cannot wrap). */
#define TG_GRID_STRIDE_I(I, i, n)                                                         \
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)(n);                      \
         i += (I)gridDim.x * blockDim.x)

/* n / f.d and n % f.d: the magic-number form for 32-bit indices, plain division for
 * 64-bit ones (see cuda/fastdiv.h). */
__device__ inline uint32_t tg_div(uint32_t n, const tg_fastdiv &f) {
    return (__umulhi(n, f.mul) + n) >> f.shift;
}
__device__ inline int64_t tg_div(int64_t n, const tg_fastdiv &f) { return n / f.d; }
template <typename I> __device__ inline I tg_mod(I n, const tg_fastdiv &f) {
    return n - tg_div(n, f) * (I)f.d;
}

/* Launches kernel<uint32_t> when n fits the 32-bit index path, kernel<int64_t> otherwise;
 * the arguments are converted to the instance's parameter types. */
#define TG_LAUNCH_INDEXED(n, kernel, grid, block, smem, stream, ...)                      \
    do {                                                                                  \
        if (TG_FITS_32(n))                                                                \
            kernel<uint32_t><<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__);         \
        else                                                                              \
            kernel<int64_t><<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__);          \
    } while (0)

/* The device's multiprocessor count (132 assumed if it cannot be read), cached. */
int tg_cuda_sm_count(void);

/* dst[c] += the sum over n < N and p < P of src[(n C + c) P + p] (a conv bias gradient:
 * src (N, C, P), dst (C)). Fills the GPU however few channels there are: each channel's
 * N P values are cut into chunks, one block each, summed in double, and the chunks are
 * added in a fixed order (cuda/channel_reduce.cu): deterministic, no atomics. `who` names the
 * calling op in launch errors. */
tg_status tg_cuda_channel_sum(float *dst, const float *src, int64_t N, int64_t C, int64_t P,
                              const char *who);

/* Sum of v over a warp (every lane gets it). */
template <typename T> __device__ inline T tg_warp_sum(T v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024 threads); every
 * thread gets the result. scratch: 32 T of shared memory; the function synchronises, so
 * it may be called repeatedly with the same scratch. The order of the additions is fixed
 * by the launch shape, so results are reproducible run to run. */
template <typename T> __device__ inline T tg_block_sum(T v, T *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = tg_warp_sum(v);
    __syncthreads(); /* scratch may still be read by a previous call */
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : T(0);
    return tg_warp_sum(v);
}

#endif /* TG_CUDA_COMMON_CUH */
