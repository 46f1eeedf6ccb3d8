/*
 * ops/batchnorm.c — 2-D batch normalisation (PyTorch's F.batch_norm on (N, C, H, W)).
 *
 * Per channel c, over its n = N * H * W values x_i:
 *   training:  mean = (1/n) sum_i x_i,   var = (1/n) sum_i (x_i - mean)^2   (biased)
 *   eval:      mean = running_mean[c],   var = running_var[c]
 *   rstd = 1 / sqrt(var + eps),   xhat_i = (x_i - mean) rstd,   y_i = w xhat_i + b
 * w, b are weight[c], bias[c] (1 and 0 when absent: affine = False).
 *
 * Running statistics (buffers, not trainable) are updated by a training forward only,
 * exactly as PyTorch does, with the UNBIASED variance:
 *   running_mean = (1 - momentum) running_mean + momentum mean
 *   running_var  = (1 - momentum) running_var  + momentum var n / (n - 1)
 * so a training forward needs n > 1. They may be NULL in training (PyTorch's
 * track_running_stats = False); eval mode needs them. Every argument is validated before
 * anything runs, so a refused call leaves the running statistics untouched.
 *
 * Layouts: x and y (N, C, H, W) contiguous; weight, bias, running_mean, running_var (C).
 * Saved for backward: mean and rstd (C each; in eval, the running ones). x is an input
 * and stays alive until the step ends, so xhat is recomputed rather than stored.
 *
 * BACKWARD, training mode (the batch statistics depend on every x_j of the channel).
 * Let g_i = dL/dxhat_i = dy_i w. Then dL/dx_j = sum_i g_i dxhat_i/dx_j, with
 *   dxhat_i/dx_j = rstd (delta_ij - dmean/dx_j) + (x_i - mean) drstd/dx_j
 *   dmean/dx_j   = 1/n
 *   dvar/dx_j    = (2/n) sum_i (x_i - mean)(delta_ij - 1/n) = (2/n)(x_j - mean)
 *                  (the 1/n term vanishes because sum_i (x_i - mean) = 0)
 *   drstd/dx_j   = -(1/2)(var + eps)^(-3/2) dvar/dx_j = -rstd^3 (x_j - mean) / n
 *                = -rstd^2 xhat_j / n
 * so (x_i - mean) drstd/dx_j = (xhat_i / rstd)(-rstd^2 xhat_j / n) = -rstd xhat_i xhat_j / n
 * and
 *   dL/dx_j = rstd [ g_j - (1/n) sum_i g_i - xhat_j (1/n) sum_i g_i xhat_i ]
 *           = rstd/n [ n g_j - sum(g) - xhat_j sum(g xhat) ]
 * Since w is constant per channel, sum(g) = w sum(dy) and sum(g xhat) = w sum(dy xhat):
 * one pass over (dy, x) gives both sums (which are also db and dw), a second pass writes
 *   dx_j += w rstd (dy_j - sum(dy)/n - xhat_j sum(dy xhat)/n).
 * Parameters: y = w xhat + b gives dw = sum_i dy_i xhat_i and db = sum_i dy_i.
 *
 * BACKWARD, eval mode: mean and rstd are constants, so dx = dy w rstd; dw and db as above.
 * The running statistics are not differentiated (they are buffers).
 */
#include "batchnorm.h"

#include "../autograd/tape.h"
#include "../core/dist.h"
#include "../cuda/tg_cuda.h"
#include "../core/core.h"

#include <math.h>

/* The three kernels run channel by channel on tg_parallel_items (core/pool.c): a channel's
 * sums and outputs are the same whoever runs it, so the bits do not depend on the thread
 * count, and a busy machine's absent thread is not waited for. */
#define BN_SERIAL 65536 /* elements at or below which one thread does it all */
#define BN_GRAIN 32768  /* about this many elements per chunk */

typedef struct bn_stats_job {
    float *mean, *var;
    const float *x;
    int64_t N, C, HW;
} bn_stats_job;

static void batchnorm_stats_channels(void *arg, int64_t c0, int64_t c1) {
    const bn_stats_job *j = arg;
    float *mean = j->mean, *var = j->var;
    const float *x = j->x;
    int64_t N = j->N, C = j->C, HW = j->HW;
    double n = (double)(N * HW);
    for (int64_t c = c0; c < c1; c++) {
        double sum = 0;
        for (int64_t b = 0; b < N; b++) {
            const float *p = x + (b * C + c) * HW;
#pragma omp simd reduction(+ : sum)
            for (int64_t i = 0; i < HW; i++) sum += p[i];
        }
        double m = sum / n;
        /* Second pass on the deviations: no cancellation, unlike E[x^2] - E[x]^2. */
        double ss = 0;
        for (int64_t b = 0; b < N; b++) {
            const float *p = x + (b * C + c) * HW;
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < HW; i++) {
                double d = p[i] - m;
                ss += d * d;
            }
        }
        mean[c] = (float)m;
        var[c] = (float)(ss / n);
    }
}

void batchnorm_stats_cpu(float *mean, float *var, const float *x, int64_t N, int64_t C,
                         int64_t HW) {
    bn_stats_job j = {.mean = mean, .var = var, .x = x, .N = N, .C = C, .HW = HW};
    tg_parallel_items(C, (double)N * HW, BN_SERIAL, BN_GRAIN, batchnorm_stats_channels, &j);
}

typedef struct bn_job {
    float *y, *dx, *dweight, *dbias;
    const float *x, *dy, *mean, *rstd, *weight, *bias;
    int64_t N, C, HW;
    bool training;
} bn_job;

static void batchnorm_forward_channels(void *arg, int64_t c0, int64_t c1) {
    const bn_job *j = arg;
    float *y = j->y;
    const float *x = j->x, *mean = j->mean, *rstd = j->rstd, *weight = j->weight;
    const float *bias = j->bias;
    int64_t N = j->N, C = j->C, HW = j->HW;

    for (int64_t c = c0; c < c1; c++) {
        /* y = x scale + shift with scale = w rstd, shift = b - mean scale. */
        float scale = rstd[c] * (weight ? weight[c] : 1.0f);
        float shift = (bias ? bias[c] : 0.0f) - mean[c] * scale;
        for (int64_t b = 0; b < N; b++) {
            const float *p = x + (b * C + c) * HW;
            float *q = y + (b * C + c) * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) q[i] = p[i] * scale + shift;
        }
    }
}

void batchnorm_forward_cpu(float *y, const float *x, const float *mean, const float *rstd,
                           const float *weight, const float *bias, int64_t N, int64_t C,
                           int64_t HW) {
    bn_job j = {.y = y, .x = x, .mean = mean, .rstd = rstd, .weight = weight, .bias = bias,
                .N = N, .C = C, .HW = HW};
    tg_parallel_items(C, (double)N * HW, BN_SERIAL, BN_GRAIN, batchnorm_forward_channels, &j);
}

static void batchnorm_backward_channels(void *arg, int64_t c0, int64_t c1) {
    const bn_job *j = arg;
    float *dx = j->dx, *dweight = j->dweight, *dbias = j->dbias;
    const float *dy = j->dy, *x = j->x, *mean = j->mean, *rstd = j->rstd, *weight = j->weight;
    int64_t N = j->N, C = j->C, HW = j->HW;
    bool training = j->training;
    double n = (double)(N * HW);
    for (int64_t c = c0; c < c1; c++) {
        float m = mean[c], r = rstd[c];
        /* Pass 1: sum(dy) and sum(dy xhat) = rstd sum(dy (x - mean)). */
        double sum_dy = 0, sum_dy_xc = 0;
        for (int64_t b = 0; b < N; b++) {
            const float *g = dy + (b * C + c) * HW, *p = x + (b * C + c) * HW;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xc)
            for (int64_t i = 0; i < HW; i++) {
                sum_dy += g[i];
                sum_dy_xc += (double)g[i] * (p[i] - m);
            }
        }
        double sum_dy_xhat = sum_dy_xc * r;
        if (dbias) dbias[c] += (float)sum_dy;
        if (dweight) dweight[c] += (float)sum_dy_xhat;
        if (!dx) continue;
        float wr = (weight ? weight[c] : 1.0f) * r;
        /* Pass 2: dx += w rstd (dy - sum(dy)/n - xhat sum(dy xhat)/n); in eval only the
         * first term (the statistics are constants). */
        float mean_dy = training ? (float)(sum_dy / n) : 0.0f;
        float mean_dy_xhat = training ? (float)(sum_dy_xhat / n) : 0.0f;
        for (int64_t b = 0; b < N; b++) {
            const float *g = dy + (b * C + c) * HW, *p = x + (b * C + c) * HW;
            float *d = dx + (b * C + c) * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) {
                float xhat = (p[i] - m) * r;
                d[i] += wr * (g[i] - mean_dy - xhat * mean_dy_xhat);
            }
        }
    }
}

void batchnorm_backward_cpu(float *dx, float *dweight, float *dbias, const float *dy,
                            const float *x, const float *mean, const float *rstd,
                            const float *weight, int64_t N, int64_t C, int64_t HW,
                            bool training) {
    bn_job j = {.dx = dx, .dweight = dweight, .dbias = dbias, .dy = dy, .x = x, .mean = mean,
                .rstd = rstd, .weight = weight, .N = N, .C = C, .HW = HW, .training = training};
    tg_parallel_items(C, (double)N * HW, BN_SERIAL, BN_GRAIN, batchnorm_backward_channels, &j);
}

typedef struct batchnorm_params {
    tg_tensor *running_mean, *running_var; /* buffers updated by a training forward */
    int64_t N, C, HW;
    float momentum, eps;
    bool training;
    tg_dist *sync;    /* training under sync batchnorm: statistics over all ranks */
    int64_t n_total;  /* with sync: values per channel over all ranks (set by forward) */
} batchnorm_params;

/* Inputs: 0 x, 1 weight, 2 bias. Saved: 0 mean, 1 rstd. */
static tg_status batchnorm_forward(tg_ctx *ctx, tg_record *rec) {
    const batchnorm_params *p = TG_PARAMS(rec, batchnorm_params);
    tg_tensor *x = rec->inputs[0], *weight = rec->inputs[1], *bias = rec->inputs[2];
    tg_tensor *mean = tg_record_save(ctx, rec, 0, tg_shape1(p->C));
    tg_tensor *rstd = tg_record_save(ctx, rec, 1, tg_shape1(p->C));
    float *var = tg_ctx_scratch(ctx, (size_t)(p->C ? p->C : 1) * sizeof(float));
    if (!mean || !rstd || !var) return tg_error();
    if (p->training) {
        if (p->sync) {
            tg_status st = batchnorm_sync_stats_cpu(p->sync, mean->data, var,
                                                    &TG_PARAMS(rec, batchnorm_params)->n_total,
                                                    x->data, p->N, p->C, p->HW);
            if (st) return st;
        } else {
            batchnorm_stats_cpu(mean->data, var, x->data, p->N, p->C, p->HW);
        }
        for (int64_t c = 0; c < p->C; c++)
            rstd->data[c] = (float)(1.0 / sqrt((double)var[c] + p->eps));
        if (p->running_mean) {
            /* PyTorch's update: momentum * new + (1 - momentum) * old, unbiased var. */
            double n = (double)(p->sync ? p->n_total : p->N * p->HW), m = p->momentum;
            float *rm = p->running_mean->data, *rv = p->running_var->data;
            for (int64_t c = 0; c < p->C; c++) {
                rm[c] = (float)(m * mean->data[c] + (1 - m) * rm[c]);
                rv[c] = (float)(m * ((double)var[c] * n / (n - 1)) + (1 - m) * rv[c]);
            }
        }
    } else {
        const float *rm = p->running_mean->data, *rv = p->running_var->data;
        for (int64_t c = 0; c < p->C; c++) {
            mean->data[c] = rm[c];
            rstd->data[c] = (float)(1.0 / sqrt((double)rv[c] + p->eps));
        }
    }
    batchnorm_forward_cpu(rec->out->data, x->data, mean->data, rstd->data,
                          weight ? weight->data : NULL, bias ? bias->data : NULL, p->N, p->C,
                          p->HW);
    return TG_OK;
}

static tg_status batchnorm_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                    const float *dout) {
    (void)ctx;
    const batchnorm_params *p = TG_PARAMS(rec, batchnorm_params);
    tg_tensor *weight = rec->inputs[1];
    if (p->sync)
        return batchnorm_sync_backward_cpu(p->sync, dinputs[0], dinputs[1], dinputs[2], dout,
                                           rec->inputs[0]->data, rec->saved[0]->data,
                                           rec->saved[1]->data, weight ? weight->data : NULL,
                                           p->N, p->C, p->HW, p->n_total);
    batchnorm_backward_cpu(dinputs[0], dinputs[1], dinputs[2], dout, rec->inputs[0]->data,
                           rec->saved[0]->data, rec->saved[1]->data,
                           weight ? weight->data : NULL, p->N, p->C, p->HW, p->training);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
/* The statistics (and the running update) stay on the device: one kernel, no copy. */
static tg_status cuda_batchnorm_forward(tg_ctx *ctx, tg_record *rec) {
    const batchnorm_params *p = TG_PARAMS(rec, batchnorm_params);
    tg_tensor *x = rec->inputs[0], *weight = rec->inputs[1], *bias = rec->inputs[2];
    tg_tensor *mean = tg_record_save(ctx, rec, 0, tg_shape1(p->C));
    tg_tensor *rstd = tg_record_save(ctx, rec, 1, tg_shape1(p->C));
    if (!mean || !rstd) return tg_error();
    float *rm = p->running_mean ? p->running_mean->data : NULL;
    float *rv = p->running_var ? p->running_var->data : NULL;
    tg_status st;
    if (p->sync) {
#ifdef TG_HAVE_NCCL
        /* Statistics over every rank (cuda/batchnorm_sync.cu): NCCL on device doubles. */
        void *work = tg_ctx_scratch(ctx, batchnorm_sync_work_bytes_cuda(p->N, p->C, p->HW));
        if (!work) return tg_error();
        st = batchnorm_sync_stats_cuda(tg_dist_nccl(p->sync), mean->data, rstd->data, rm, rv,
                                       x->data, p->N, p->C, p->HW, p->momentum, p->eps, work);
#else
        /* A CUDA job of several ranks needs NCCL (tg_dist_init): not reached. */
        st = tg_fail(TG_ERR_UNSUPPORTED, "batchnorm2d: synchronised batchnorm on CUDA needs "
                     "NCCL (build with CUDA and MPI)");
#endif
    } else {
        st = batchnorm_stats_cuda(mean->data, rstd->data, rm, rv, x->data, p->N, p->C, p->HW,
                                  p->training, p->momentum, p->eps);
    }
    if (st) return st;
    return batchnorm_forward_cuda(rec->out->data, x->data, mean->data, rstd->data,
                                  weight ? weight->data : NULL, bias ? bias->data : NULL, p->N,
                                  p->C, p->HW);
}

static tg_status cuda_batchnorm_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                         const float *dout) {
    const batchnorm_params *p = TG_PARAMS(rec, batchnorm_params);
    tg_tensor *weight = rec->inputs[1];
#ifdef TG_HAVE_NCCL
    if (p->sync) {
        void *work = tg_ctx_scratch(ctx, batchnorm_sync_work_bytes_cuda(p->N, p->C, p->HW));
        if (!work) return tg_error();
        return batchnorm_sync_backward_cuda(
            tg_dist_nccl(p->sync), dinputs[0], dinputs[1], dinputs[2], dout,
            rec->inputs[0]->data, rec->saved[0]->data, rec->saved[1]->data,
            weight ? weight->data : NULL, p->N, p->C, p->HW, tg_dist_share(p->sync), work);
    }
#else
    (void)ctx;
#endif
    return batchnorm_backward_cuda(dinputs[0], dinputs[1], dinputs[2], dout,
                                   rec->inputs[0]->data, rec->saved[0]->data,
                                   rec->saved[1]->data, weight ? weight->data : NULL, p->N,
                                   p->C, p->HW, p->training);
}
#endif

static void batchnorm_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                           double *bwd_flops, double *bwd_bytes) {
    const batchnorm_params *p = TG_PARAMS(rec, batchnorm_params);
    double n = (double)rec->out->numel;
    /* Training reads x three times (two statistics passes, then normalise). */
    *fwd_flops = p->training ? 6 * n : 2 * n;
    *fwd_bytes = p->training ? 16 * n : 8 * n;
    /* Two passes: sums over (dy, x), then read dy, x, dx and write dx. */
    *bwd_flops = p->training ? 10 * n : 6 * n;
    *bwd_bytes = 24 * n;
}

static void batchnorm_describe(const tg_record *rec, char *buf, size_t size) {
    const batchnorm_params *p = TG_PARAMS(rec, batchnorm_params);
    snprintf(buf, size, "%s%s", p->training ? "train" : "eval",
             rec->inputs[1] || rec->inputs[2] ? "" : ", no affine");
}

static const tg_op batchnorm_op = {
    .name = "batchnorm2d",
    .forward = {[TG_DEVICE_CPU] = batchnorm_forward, TG_CUDA_ENTRY(cuda_batchnorm_forward)},
    .backward = {[TG_DEVICE_CPU] = batchnorm_backward, TG_CUDA_ENTRY(cuda_batchnorm_backward)},
    .cost = batchnorm_cost,
    .describe = batchnorm_describe,
    .backward_doc = "dx += w rstd (dy - mean(dy) - xhat mean(dy xhat)) (eval: w rstd dy), "
                    "dw += sum(dy xhat), db += sum(dy)",
};

#define BN "tg_batchnorm2d"

/* A per-channel vector argument: NULL allowed, otherwise shape (C) on ctx's device. */
static bool check_channel_vector(tg_ctx *ctx, const char *arg, const tg_tensor *t,
                                 const tg_tensor *x) {
    if (!t) return true;
    char s1[80], s2[80];
    int64_t C = x->shape.dim[1];
    if (t->shape.ndim != 1 || t->shape.dim[0] != C) {
        tg_fail(TG_ERR_SHAPE, BN ": argument '%s' has shape %s but 'x' has shape %s; "
                "expected (%lld), one value per channel", arg,
                tg_shape_str(t->shape, s1, sizeof s1), tg_shape_str(x->shape, s2, sizeof s2),
                (long long)C);
        return false;
    }
    if (t->device != ctx->device) {
        tg_fail(TG_ERR_ARG, BN ": argument '%s' is on %s but the context is on %s; copy it "
                "explicitly", arg, tg_device_name(t->device), tg_device_name(ctx->device));
        return false;
    }
    return true;
}

tg_tensor *tg_batchnorm2d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                          tg_tensor *running_mean, tg_tensor *running_var, bool training,
                          float momentum, float eps) {
    char s[80];
    if (tg_check_not_null(BN, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(BN, "x", x, -1)) return NULL;
    if (x->shape.ndim != 4) {
        tg_fail(TG_ERR_SHAPE, BN ": argument 'x' has shape %s (%d dims); expected 4 dims "
                "(N, C, H, W)", tg_shape_str(x->shape, s, sizeof s), x->shape.ndim);
        return NULL;
    }
    if (!check_channel_vector(ctx, "weight", weight, x) ||
        !check_channel_vector(ctx, "bias", bias, x) ||
        !check_channel_vector(ctx, "running_mean", running_mean, x) ||
        !check_channel_vector(ctx, "running_var", running_var, x))
        return NULL;
    if (!running_mean != !running_var) {
        tg_fail(TG_ERR_ARG, BN ": argument '%s' is NULL but '%s' is not; pass both running "
                "statistics or neither", running_mean ? "running_var" : "running_mean",
                running_mean ? "running_mean" : "running_var");
        return NULL;
    }
    if ((running_mean && running_mean->requires_grad) ||
        (running_var && running_var->requires_grad)) {
        tg_fail(TG_ERR_ARG, BN ": argument '%s' requires grad; running statistics are "
                "buffers the forward overwrites; hint: create them with "
                "tg_params_add_buffer, not tg_params_add",
                running_mean->requires_grad ? "running_mean" : "running_var");
        return NULL;
    }
    if (running_mean && (running_mean == running_var || running_mean == weight ||
                         running_mean == bias || running_var == weight || running_var == bias ||
                         running_mean == x || running_var == x)) {
        tg_fail(TG_ERR_ARG, BN ": arguments 'running_mean' and 'running_var' must be two "
                "distinct buffers, not also 'x', 'weight' or 'bias'");
        return NULL;
    }
    if (!(eps >= 0.0f) || isinf(eps)) {
        tg_fail(TG_ERR_ARG, BN ": argument 'eps' is %g; expected a finite value >= 0 "
                "(PyTorch's default is 1e-5)", (double)eps);
        return NULL;
    }
    int64_t N = x->shape.dim[0], C = x->shape.dim[1], HW = x->shape.dim[2] * x->shape.dim[3];
    if (training) {
        if (!(momentum >= 0.0f && momentum <= 1.0f)) {
            tg_fail(TG_ERR_ARG, BN ": argument 'momentum' is %g; expected a value in [0, 1] "
                    "(PyTorch's default is 0.1)", (double)momentum);
            return NULL;
        }
        if (N * HW <= 1) {
            tg_fail(TG_ERR_SHAPE, BN ": argument 'x' has shape %s: expected more than 1 "
                    "value per channel when training (N * H * W = %lld); hint: use a batch "
                    "larger than 1, or eval mode", tg_shape_str(x->shape, s, sizeof s),
                    (long long)(N * HW));
            return NULL;
        }
    } else if (!running_mean) {
        tg_fail(TG_ERR_ARG, BN ": arguments 'running_mean' and 'running_var' are NULL but "
                "eval mode (training = false) normalises with them; hint: create them with "
                "tg_params_add_buffer, or call in training mode (track_running_stats = False)");
        return NULL;
    }
    batchnorm_params p = {.running_mean = running_mean, .running_var = running_var,
                          .N = N, .C = C, .HW = HW, .momentum = momentum, .eps = eps,
                          .training = training,
                          .sync = training && ctx->sync_bn && tg_dist_world(ctx->sync_bn) > 1
                                      ? ctx->sync_bn : NULL};
    tg_tensor *inputs[3] = {x, weight, bias};
    return tg_op_apply(ctx, &batchnorm_op, inputs, 3, x->shape, &p, sizeof p, NULL);
}
