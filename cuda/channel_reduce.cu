/*
 * cuda/channel_reduce.cu — per-channel sums that fill the GPU: dst[c] += sum over n, p of
 * src[(n C + c) P + p] for src (N, C, P). The conv bias gradient is this sum of dout.
 *
 * One block per channel leaves a 132-SM GPU mostly idle at C = 32 .. 256, and a block
 * walking 7x7 planes keeps only 49 of its threads busy. Instead each channel's N P values
 * (in (n, p) order) are cut into `chunks` contiguous ranges, one block each, so the grid
 * has about 4 blocks per SM whatever C is:
 *   stage 1  block (c, k) sums range k of channel c in double: thread t takes values
 *            t, t + B, t + 2B, ... of the range (B threads), stepping (n, p) by
 *            (B / P, B % P) with a carry, so there is no division per element; warp
 *            shuffles then the block's warps give one partial per block;
 *   stage 2  one warp per channel adds its chunks' partials in a fixed order and adds
 *            the total to dst[c].
 * With one chunk (C alone fills the GPU, or too few values to split) stage 1 adds into
 * dst itself. The partials live in a static device array (one stream: two reductions
 * never overlap), so nothing is allocated. Every sum has a fixed order for a given GPU
 * (the chunk count depends on its SM count): results are reproducible run to run.
 */
#include "common.cuh"

#define RED_THREADS 256
#define RED_MAX_PARTIALS 16384 /* C chunks at most */
#define RED_MIN_CHUNK 2048     /* values per chunk at least: 8 per thread */

static __device__ double red_partial[RED_MAX_PARTIALS];

int tg_cuda_sm_count(void) {
    static int sms;
    if (!sms) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
            v > 0) {
            sms = v;
        } else {
            (void)cudaGetLastError(); /* not a launch's error: do not leave it set */
            sms = 132;
        }
    }
    return sms;
}

/* Chunks per channel: about 4 blocks per SM in all, at least RED_MIN_CHUNK values each. */
static int64_t channel_chunks(int64_t C, int64_t count) {
    int64_t want = tg_cuda_ceil_div(4 * (int64_t)tg_cuda_sm_count(), C);
    int64_t most = tg_cuda_ceil_div(count, RED_MIN_CHUNK);
    int64_t chunks = want < most ? want : most;
    if (chunks < 2 || C * chunks > RED_MAX_PARTIALS) return 1;
    return chunks;
}

/* Stage 1: block b sums chunk b % chunks of channel b / chunks (src (N, C, P)); with one
 * chunk it adds the sum into dst[c], else it writes red_partial[b]. */
__global__ void channel_sum_partial_kernel(float *dst, const float *src, int64_t N, int64_t C,
                                           int64_t P, int64_t chunks) {
    __shared__ double scratch[32];
    const int64_t c = blockIdx.x / chunks, k = blockIdx.x % chunks, count = N * P;
    const int64_t len = tg_cuda_ceil_div(count, chunks), j0 = k * len;
    const int64_t j1 = j0 + len < count ? j0 + len : count;
    /* This thread's first value j = j0 + t as (n, p), and the step B as (dn, dp): the
     * offset (n C + c) P + p advances by dn C P + dp, plus (C - 1) P when p wraps. */
    const int64_t B = blockDim.x, dn = B / P, dp = B % P, wrap = (C - 1) * P;
    int64_t j = j0 + threadIdx.x, p = j % P;
    int64_t off = (j / P * C + c) * P + p;
    const int64_t step = dn * C * P + dp;
    double s = 0;
    for (; j < j1; j += B) {
        s += src[off];
        off += step;
        p += dp;
        if (p >= P) {
            p -= P;
            off += wrap;
        }
    }
    s = tg_block_sum(s, scratch);
    if (threadIdx.x == 0) {
        if (chunks == 1)
            dst[c] += (float)s;
        else
            red_partial[blockIdx.x] = s;
    }
}

/* Stage 2: warp c adds channel c's `chunks` partials (lane-strided, then the warp's
 * shuffle: a fixed order) into dst[c]. */
__global__ void channel_sum_finish_kernel(float *dst, int64_t C, int64_t chunks) {
    int64_t c = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (c >= C) return; /* uniform across the warp */
    double s = 0;
    for (int64_t k = lane; k < chunks; k += 32) s += red_partial[c * chunks + k];
    s = tg_warp_sum(s);
    if (lane == 0) dst[c] += (float)s;
}

tg_status tg_cuda_channel_sum(float *dst, const float *src, int64_t N, int64_t C,
                                           int64_t P, const char *who) {
    if (C <= 0 || N * P <= 0) return TG_OK;
    int64_t chunks = channel_chunks(C, N * P);
    cudaStream_t s = tg_cuda_stream();
    channel_sum_partial_kernel<<<(unsigned)(C * chunks), RED_THREADS, 0, s>>>(dst, src, N, C,
                                                                            P, chunks);
    TG_CUDA_CHECK(cudaGetLastError(), who);
    if (chunks > 1) {
        channel_sum_finish_kernel<<<(unsigned)tg_cuda_ceil_div(C * 32, RED_THREADS),
                                    RED_THREADS, 0, s>>>(dst, C, chunks);
        TG_CUDA_CHECK(cudaGetLastError(), who);
    }
    return TG_OK;
}
