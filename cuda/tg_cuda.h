/*
 * cuda/tg_cuda.h — the C-callable surface of the CUDA backend. Everything that touches
 * the CUDA runtime or cuBLAS lives in the cuda/ .cu files behind these extern "C"
 * functions; every CUDA and cuBLAS call and every kernel launch is checked and turned
 * into a tapegrad status with a message (tg_fail).
 *
 * The kernels mirror the CPU kernels of ops/<op>.h and optim/kernels.h: same names with
 * _cuda for _cpu, same argument shapes, same contract (backward ADDS into every gradient
 * it is given; NULL skips it). Every pointer below is DEVICE memory unless it says host.
 * They queue work on the library's one stream (cuda/blas.cu) and return without waiting;
 * errors a kernel hits while running surface at the next synchronising call.
 *
 * Without TG_HAVE_CUDA this header only declares; the op files include it for
 * TG_CUDA_ENTRY, which then expands to nothing.
 */
#ifndef TG_CUDA_H
#define TG_CUDA_H

#include "../include/tapegrad.h"
#include "../ops/broadcast.h"
#include "../ops/elementwise.h"
#include "../ops/unary.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "../ops/conv2d.h"
#include "../ops/pool.h"
#include "../optim/kernels.h"
#include "../ops/layout.h"
#include "../ops/matmul.h"

/* A descriptor's CUDA table entry:  .forward = {[TG_DEVICE_CPU] = f, TG_CUDA_ENTRY(g)}. */
#ifdef TG_HAVE_CUDA
#define TG_CUDA_ENTRY(fn) [TG_DEVICE_CUDA] = fn
#else
#define TG_CUDA_ENTRY(fn)
#endif

/* ---------------------------------------------------------------- memory (memory.cu) */

/* TG_OK when a device is present and usable; else TG_ERR_DEVICE and a message
 * "no CUDA device available: ...". Cached after the first call. */
tg_status tg_cuda_probe(void);
void *tg_cuda_alloc(size_t bytes);
void tg_cuda_free(void *ptr);
/* Queued on the library's stream; src may be reused when it returns. To the host: waits
 * for the data. From the host: staged through page-locked slots, never waits for the GPU
 * (cuda/memory.cu), so an op that uploads (the cross entropy's targets) does not block. */
tg_status tg_cuda_copy(void *dst, bool dst_on_device, const void *src, bool src_on_device,
                       size_t bytes);
tg_status tg_cuda_zero(void *ptr, size_t bytes);
/* Every byte of ptr[0 .. bytes) set to `byte` (0xFF: every float a NaN; the arena's
 * poison mode). Queued on the library's stream. */
tg_status tg_cuda_fill_bytes(void *ptr, int byte, size_t bytes);
tg_status tg_cuda_sync(void);
/* The clock of a profiled op (tg_ctx_set_sync_timing): start records an event on the
 * library's stream; stop records a second one, waits for it and returns the GPU time
 * between them in seconds. Pairs nest (at most 8 deep). */
tg_status tg_cuda_timer_start(void);
tg_status tg_cuda_timer_stop(double *seconds);

/* ---------------------------------------------------------------- GEMM (blas.cu) */

/* Row-major C (M x N) = alpha op(A) op(B) + beta C, op(A) (M x K), op(B) (K x N); lda,
 * ldb, ldc are row strides of A, B, C as stored. The one place that maps our row-major
 * GEMMs onto column-major cublasSgemm. TF32 is off unless built with -Dtf32=true. */
tg_status tg_cuda_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta,
                        float *C, int ldc);
/* The same for `batch` independent products; matrix i of A, B, C starts stride_a * i,
 * stride_b * i, stride_c * i floats after the first (stride 0 reuses one matrix). The
 * C matrices must not overlap. */
tg_status tg_cuda_sgemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                const float *A, int lda, int64_t stride_a, const float *B,
                                int ldb, int64_t stride_b, float beta, float *C, int ldc,
                                int64_t stride_c, int batch);

/* ---------------------------------------------------------------- peaks (bench.cu) */

/* For `tapegrad peaks --device cuda` and the GPU benchmarks: seconds per call, the
 * median over `samples` batches of `reps` back-to-back calls each timed with CUDA events
 * on the library's stream, after one untimed batch; operands random, allocated before
 * the first event and freed after the last (reps, samples >= 1; samples at most 64). */
/* cuBLAS SGEMM, row-major (M x K)(K x N) -> (M x N), beta 0; FLOPs = 2 M N K. */
tg_status tg_cuda_bench_sgemm(int M, int N, int K, int reps, int samples, double *seconds);
/* A device-to-device copy of `bytes` (cudaMemcpyAsync); it moves 2 * bytes. */
tg_status tg_cuda_bench_copy(size_t bytes, int reps, int samples, double *seconds);
/* x[0 .. n) = hash values in [-1, 1) (a kernel on the library's stream). */
tg_status tg_cuda_fill_random(float *x, int64_t n, uint32_t seed);

/* What reports print about the device (clocks are the device's maximum ratings in kHz,
 * not the current clocks: those need NVML; bench/gpu_check.sh records nvidia-smi's). */
typedef struct tg_cuda_info {
    char name[256];
    int cc_major, cc_minor, sms;
    int64_t l2_bytes, smem_per_block_optin, global_bytes;
    int sm_clock_khz, mem_clock_khz, bus_width_bits;
    int driver_version, runtime_version;
} tg_cuda_info;
tg_status tg_cuda_device_info(tg_cuda_info *info);
/* The device's name, for reports ("NVIDIA H100 80GB HBM3"); "" (and the probe's error
 * recorded) when no device is available. */
const char *tg_cuda_device_name(void);

/* ---------------------------------------------------------------- activation.cu */

/* out[n] = clamp(inp[n], 0, cap) (cap = INFINITY for relu). */
tg_status relu_forward_cuda(float *out, const float *inp, int64_t n, float cap);
/* dinp[n] += dout[n] where 0 < out < cap. */
tg_status relu_backward_cuda(float *dinp, const float *dout, const float *out, int64_t n,
                             float cap);

/* ---------------------------------------------------------------- elementwise.cu */

/* out[n] = a[n] + b[n]. */
tg_status add_forward_cuda(float *out, const float *a, const float *b, int64_t n);
/* dst[n] += src[n] (add's backward, reshape's backward). */
tg_status accumulate_cuda(float *dst, const float *src, int64_t n);
/* out (plan's output) = a op b through the plan's strides (ops/broadcast.h). */
tg_status binary_forward_cuda(float *out, const float *a, const float *b, const tg_bcast *p,
                              binary_kind kind);
/* dst (plan's output) = or += term(g, y, o); p = tg_bcast_plan(out, out, o's shape). */
tg_status binary_term_cuda(float *dst, bool accumulate, const float *g, const float *y,
                           const float *o, const tg_bcast *p, binary_term term);
/* dinp (k0, k1, k2) += scale * g (k0, r0, k1, r1, k2) summed over r0, r1 (a thread per
 * kept element, or a block per kept element when few are kept; deterministic). */
tg_status broadcast_reduce_cuda(float *dinp, const float *g, float scale,
                                const tg_bcast_reduce *p);

/* ---------------------------------------------------------------- unary.cu */

/* out[n] = f(x[n]) (ops/unary.h's tg_unary_value). */
tg_status unary_forward_cuda(float *out, const float *x, int64_t n, unary_kind kind,
                             unary_args a);
/* dx[n] += dout[n] * f'(x[n]) (tg_unary_derivative; x the input, y the output). */
tg_status unary_backward_cuda(float *dx, const float *dout, const float *x, const float *y,
                              int64_t n, unary_kind kind, unary_args a);

/* ---------------------------------------------------------------- linear.cu */

/* y (N, out) = x (N, in) W^T + b; weight (out, in); bias (out) or NULL. */
tg_status linear_forward_cuda(float *y, const float *x, const float *weight, const float *bias,
                              int64_t N, int64_t in, int64_t out);
/* dx (N, in) += dy W, dweight (out, in) += dy^T x, dbias (out) += column sums of dy;
 * each skipped when NULL. dy (N, out), x (N, in), weight (out, in) read. */
tg_status linear_backward_cuda(float *dx, float *dweight, float *dbias, const float *dy,
                               const float *x, const float *weight, int64_t N, int64_t in,
                               int64_t out);

/* ---------------------------------------------------------------- loss.cu */

/* Doubles of the `partial` workspace cross_entropy_forward_cuda needs. */
int64_t cross_entropy_partials_cuda(int64_t N, int64_t inner);
/* loss[0] (1 float, device) = mean over the positions whose target is not ignore_index
 * of (max - logits[target]) + logsum (count of them; NaN when count is 0); max and logsum
 * (N, inner) written; partial: scratch; logits (N, C, inner) read; target (N, inner)
 * int32 on the device, each in [0, C) or equal to ignore_index. */
tg_status cross_entropy_forward_cuda(float *loss, float *max, float *logsum, double *partial,
                                     const float *logits, const int32_t *target,
                                     int32_t ignore_index, int64_t count, int64_t N, int64_t C,
                                     int64_t inner);
/* dlogits (N, C, inner) += (exp((logits - max) - logsum) - onehot(target)) dloss[0] / count
 * at positions whose target is not ignore_index. dloss: the incoming gradient of the
 * loss, 1 float ON THE DEVICE (where the tape keeps it), so the backward never waits for
 * the GPU. */
tg_status cross_entropy_backward_cuda(float *dlogits, const float *logits, const float *max,
                                      const float *logsum, const int32_t *target,
                                      int32_t ignore_index, const float *dloss, int64_t count,
                                      int64_t N, int64_t C, int64_t inner);
/* Doubles of the `partial` workspace mse_forward_cuda needs. */
int64_t mse_partials_cuda(int64_t n);
/* loss[0] (device) = mean((pred - target)^2) over n, summed in double in a fixed order. */
tg_status mse_forward_cuda(float *loss, double *partial, const float *pred,
                           const float *target, int64_t n);
/* dpred += s (pred - target), dtarget -= s (pred - target), s = 2 dloss[0] / n; dloss on
 * the device; either gradient may be NULL. */
tg_status mse_backward_cuda(float *dpred, float *dtarget, const float *pred,
                            const float *target, const float *dloss, int64_t n);

/* ---------------------------------------------------------------- batchnorm.cu */

/* The statistics step of the forward, per channel. training: mean (C) and the biased var
 * of x (N, C, HW) (double accumulation, two passes), rstd (C) = 1 / sqrt(var + eps), and
 * when running_mean is not NULL the running update with momentum and the unbiased var
 * (n / (n - 1)). eval: mean = running_mean, rstd = 1 / sqrt(running_var + eps).
 * mean, rstd written; running_mean, running_var read (and written in training). */
tg_status batchnorm_stats_cuda(float *mean, float *rstd, float *running_mean,
                               float *running_var, const float *x, int64_t N, int64_t C,
                               int64_t HW, bool training, float momentum, float eps);
/* y = (x - mean[c]) rstd[c] weight[c] + bias[c]; weight, bias (C) may be NULL. */
tg_status batchnorm_forward_cuda(float *y, const float *x, const float *mean,
                                 const float *rstd, const float *weight, const float *bias,
                                 int64_t N, int64_t C, int64_t HW);
/* As batchnorm_backward_cpu: dx (N, C, HW), dweight, dbias (C) accumulated (NULL skips);
 * dy, x (N, C, HW), mean, rstd (C), weight (C) or NULL read. One block per channel. */
tg_status batchnorm_backward_cuda(float *dx, float *dweight, float *dbias, const float *dy,
                                  const float *x, const float *mean, const float *rstd,
                                  const float *weight, int64_t N, int64_t C, int64_t HW,
                                  bool training);

#ifdef TG_HAVE_NCCL
/* ---------------------------------------------------------------- batchnorm_sync.cu */

/* Synchronised batchnorm (a CUDA job of more than one rank): batchnorm_stats_cuda in
 * training and batchnorm_backward_cuda in training with the sums over every rank, as
 * ops/batchnorm_sync.c. nccl: tg_dist_nccl(d); share: tg_dist_share(d); work: device
 * memory of batchnorm_sync_work_bytes_cuda(N, C, HW) bytes (8-byte aligned), overwritten.
 * Collective: every rank must call with the same C, in the same order. */
size_t batchnorm_sync_work_bytes_cuda(int64_t N, int64_t C, int64_t HW);
tg_status batchnorm_sync_stats_cuda(void *nccl, float *mean, float *rstd, float *running_mean,
                                    float *running_var, const float *x, int64_t N, int64_t C,
                                    int64_t HW, float momentum, float eps, void *work);
tg_status batchnorm_sync_backward_cuda(void *nccl, float *dx, float *dweight, float *dbias,
                                       const float *dy, const float *x, const float *mean,
                                       const float *rstd, const float *weight, int64_t N,
                                       int64_t C, int64_t HW, double share, void *work);
#endif

/* ---------------------------------------------------------------- pool.cu */

/* y (planes) = mean of x (planes, HW). */
tg_status global_avg_pool_forward_cuda(float *y, const float *x, int64_t planes, int64_t HW);
/* dx (planes, HW) += dy (planes) / HW. */
tg_status global_avg_pool_backward_cuda(float *dx, const float *dy, int64_t planes,
                                        int64_t HW);
/* y, argmax (planes, OH, OW) written (argmax: h W + w of the first maximum, NaN wins);
 * x (planes, H, W) read. g: host struct. */
tg_status max_pool2d_forward_cuda(float *y, int32_t *argmax, const float *x,
                                  const pool2d_geom *g);
/* dx (planes, H, W) += dy at argmax, as a gather per input pixel (no atomics). */
tg_status max_pool2d_backward_cuda(float *dx, const float *dy, const int32_t *argmax,
                                   const pool2d_geom *g);
/* Average pool, count_include_pad (divisor kernel_h kernel_w). */
tg_status avg_pool2d_forward_cuda(float *y, const float *x, const pool2d_geom *g);
tg_status avg_pool2d_backward_cuda(float *dx, const float *dy, const pool2d_geom *g);

/* ---------------------------------------------------------------- conv2d.cu */

/* Floats of workspace conv2d_forward_cuda (backward false) or conv2d_backward_cuda
 * (backward true) needs with a tile of tile_cols output columns (0: the default, sized
 * for GEMM efficiency): the im2col matrix of the dense and grouped paths, the packed
 * operands of the pointwise dW, the per-tile partial sums of the depthwise weight
 * gradient. (cuda/conv2d.cu; the depthwise kernels are in cuda/conv2d_depthwise.cu.) */
size_t conv2d_workspace_floats_cuda(const conv2d_geom *g, int64_t tile_cols, bool backward);
/* Shapes as ops/conv2d.h; g is a host struct; dispatch on conv2d_choose_path(g):
 * dense/grouped: tiled im2col + cuBLAS (im2col recomputed in backward); pointwise: cuBLAS
 * on the NCHW tensors; depthwise: direct shared-memory tiled kernels, a gather for dx
 * and a two-stage reduction for dweight and dbias (no atomics). workspace:
 * conv2d_workspace_floats_cuda(g, tile_cols, ...) floats (may be NULL when that is 0). */
tg_status conv2d_forward_cuda(float *out, const float *inp, const float *weight,
                              const float *bias, const conv2d_geom *g, float *workspace,
                              int64_t tile_cols);
tg_status conv2d_backward_cuda(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const conv2d_geom *g,
                               float *workspace, int64_t tile_cols);

/* ---------------------------------------------------------------- optim.cu */

/* One fused launch over the flat store each; arguments as sgd_step_cpu / adam_step_cpu
 * (args: host structs). The arithmetic is rounded step by step as on the CPU (no fused
 * multiply-adds), so results match the CPU kernels. */
tg_status sgd_step_cuda(float *param, const float *grad, float *momentum_buf, int64_t n,
                        const sgd_step_args *args);
tg_status adam_step_cuda(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                         int64_t n, const adam_step_args *args);

/* ---------------------------------------------------------------- part B: matmul.cu,
 * layout.cu, reduce.cu (issue 12). Shapes and contracts as ops/matmul.h, layout.h, reduce.h. */

/* Runs a plan (ops/matmul.h) with cuBLAS: one strided-batched call per run of matrices
 * with distinct outputs; products summed into one matrix are queued one after the other. */
tg_status gemm_batch_cuda(const gemm_batch *g, const float *A, const float *B, float *C);
tg_status matmul_forward_cuda(float *out, const float *a, const float *b, const matmul_geom *g);
tg_status matmul_backward_cuda(float *da, float *db, const float *dout, const float *a,
                               const float *b, const matmul_geom *g);
/* out = or += x permuted (g: host struct). */
tg_status permute_cuda(float *out, const float *x, const permute_geom *g, bool accumulate);
/* dst[r dst_stride + k] = or += src[r src_stride + k], r < rows, k < len. */
tg_status copy_rows_cuda(float *dst, int64_t dst_stride, const float *src, int64_t src_stride,
                         int64_t rows, int64_t len, bool accumulate);
/* Floats of device workspace the reductions below need for x (outer, n, inner). */
int64_t reduce_workspace_floats_cuda(int64_t outer, int64_t n, int64_t inner);
/* out (outer, inner) = scale * sum_j x (outer, n, inner); work: the workspace. */
tg_status sum_forward_cuda(float *out, const float *x, int64_t outer, int64_t n, int64_t inner,
                           float scale, float *work);
/* dx (outer, n, inner) += scale * dout (outer, inner). */
tg_status sum_backward_cuda(float *dx, const float *dout, int64_t outer, int64_t n,
                            int64_t inner, float scale);
/* out, argmax (outer, inner) (argmax may be NULL): the first maximum, NaN wins. */
tg_status max_forward_cuda(float *out, int64_t *argmax, const float *x, int64_t outer,
                           int64_t n, int64_t inner, float *work);
tg_status max_backward_cuda(float *dx, const float *dout, const int64_t *argmax, int64_t outer,
                            int64_t n, int64_t inner);
/* dx (n) += dout[0] / count where x == max[0] (count: the ties, counted here; max and dout
 * are 1 float each on the device); work: reduce_workspace_floats_cuda(1, n, 1) floats. */
tg_status max_all_backward_cuda(float *dx, const float *dout, const float *x, const float *max,
                                int64_t n, float *work);
/* out, mean (outer, inner); correction 1 unbiased, 0 biased. */
tg_status var_forward_cuda(float *out, float *mean, const float *x, int64_t outer, int64_t n,
                           int64_t inner, int correction, float *work);
tg_status var_backward_cuda(float *dx, const float *dout, const float *x, const float *mean,
                            int64_t outer, int64_t n, int64_t inner, int correction);
/* ---------------------------------------------------------------- end of part B */

/* ================================================================ issue 12, part C */

/* ---------------------------------------------------------------- softmax.cu */
/* y (outer, D, inner) = softmax (log_softmax when log) of x along D (ops/softmax.h). */
tg_status softmax_forward_cuda(float *y, const float *x, int64_t outer, int64_t D,
                               int64_t inner, bool log);
/* dx += y (dy - sum_D dy y)  (log: dx += dy - exp(y) sum_D dy); dy, y read. */
tg_status softmax_backward_cuda(float *dx, const float *dy, const float *y, int64_t outer,
                                int64_t D, int64_t inner, bool log);
/* y (B, T, T) = x with -inf where j > i; backward: dx += dy where j <= i. */
tg_status causal_mask_forward_cuda(float *y, const float *x, int64_t B, int64_t T);
tg_status causal_mask_backward_cuda(float *dx, const float *dy, int64_t B, int64_t T);

/* ---------------------------------------------------------------- layernorm.cu */
/* As layernorm_forward_cpu: y (rows, M), mean, rstd (rows) written; weight, bias (M) or
 * NULL. One block per row. */
tg_status layernorm_forward_cuda(float *y, float *mean, float *rstd, const float *x,
                                 const float *weight, const float *bias, int64_t rows,
                                 int64_t M, float eps);
/* As layernorm_backward_cpu (dx, dweight, dbias accumulated, NULL skips); dweight and
 * dbias are column sums over the rows, one thread per column (fixed order). */
tg_status layernorm_backward_cuda(float *dx, float *dweight, float *dbias, const float *dy,
                                  const float *x, const float *mean, const float *rstd,
                                  const float *weight, int64_t rows, int64_t M);

/* ---------------------------------------------------------------- dropout.cu */
/* The mask rule of ops/dropout.h (dropout_keep), the same bits as on the CPU. */
tg_status dropout_forward_cuda(float *y, const float *x, int64_t n, uint64_t key,
                               uint64_t threshold, float scale);
tg_status dropout_backward_cuda(float *dx, const float *dy, int64_t n, uint64_t key,
                                uint64_t threshold, float scale);

/* ---------------------------------------------------------------- embedding.cu */
/* out (n, D) row i = weight row idx[i]; idx (n) int32 on the device. */
tg_status embedding_forward_cuda(float *out, const float *weight, const int32_t *idx,
                                 int64_t n, int64_t D);
/* dweight row idx[i] += dout row i (atomicAdd: repeated indices in any order). */
tg_status embedding_backward_cuda(float *dweight, const float *dout, const int32_t *idx,
                                  int64_t n, int64_t D);

/* ---------------------------------------------------------------- nll.cu */
/* loss[0] (device) = -(1/count) sum of log_probs at the non-ignored targets (-100 skips);
 * log_probs (N, C, inner), target (N, inner) int32 on the device. */
tg_status nll_forward_cuda(float *loss, const float *log_probs, const int32_t *target,
                           int64_t N, int64_t C, int64_t inner, int64_t count);
/* dlog_probs[target] -= dloss[0] / count; dloss on the device. */
tg_status nll_backward_cuda(float *dlog_probs, const int32_t *target, const float *dloss,
                            int64_t N, int64_t C, int64_t inner, int64_t count);
/* Doubles of the `partial` workspace bce_forward_cuda needs. */
int64_t bce_partials_cuda(int64_t n);
/* loss[0] (device) = mean of max(x, 0) - x t + log(1 + exp(-|x|)) over n. */
tg_status bce_forward_cuda(float *loss, double *partial, const float *x, const float *t,
                           int64_t n);
/* dx += (sigmoid(x) - t) s, dt -= x s, s = dloss[0] / n (dloss on the device); NULL skips. */
tg_status bce_backward_cuda(float *dx, float *dt, const float *x, const float *t,
                            const float *dloss, int64_t n);

/* ---------------------------------------------------------------- clip.cu */
/* *sumsq (host) = sum of g[i]^2 over n (double, fixed order); waits for the device. */
tg_status clip_sumsq_cuda(const float *g, int64_t n, double *sumsq);
/* g[n] *= c. */
tg_status clip_scale_cuda(float *g, int64_t n, float c);
/* ================================================================ end of part C */

#ifdef __cplusplus
}
#endif
#endif
