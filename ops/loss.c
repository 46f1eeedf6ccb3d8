/*
 * ops/loss.c — cross entropy with integer class targets, and mean squared error. Both
 * reduce by mean (PyTorch's default) and return a scalar; the 1/count lives in backward.
 *
 * CROSS ENTROPY (fused log-softmax + negative log-likelihood)
 *   logits x (N, C) with target t[N], (N, C, L) with t[N*L] laid out (N, L), or per
 *   pixel (N, C, H, W) with t[N*H*W] laid out (N, H, W): one class axis, the rest are
 *   positions. For one position with class scores x_c and target class t:
 *     m   = max_c x_c
 *     s   = log sum_c exp(x_c - m)            (the log-sum, relative to the max)
 *     l   = -log softmax(x)_t = (m - x_t) + s
 *     L   = (1 / count) sum of l over the positions whose target is not ignore_index
 *   Targets equal to ignore_index (PyTorch's default -100) contribute nothing, neither to
 *   the sum nor to count; with every target ignored L = 0/0 = NaN, as in PyTorch.
 *
 *   Numerical stability: every exp argument x_c - m is <= 0 and one term is exactly 1,
 *   so no overflow and no log(0). Accuracy: m and s are kept apart, never added into one
 *   rounded float log-sum-exp. At logits near 1e5 a float holds m + s only to 2^-7
 *   (0.008): the loss is off by up to 0.004 and every softmax recomputed from it by up
 *   to 0.4%. Kept apart, m - x_t is exact (two floats within a factor 2 of each other
 *   subtract exactly; the loss takes it in double anyway) and s, a small number, keeps its
 *   full relative precision, so loss and gradient are as accurate at logits 1e5 as at 1.
 *
 *   Backward. With p_c = softmax(x)_c = exp((x_c - m) - s),
 *     d(m + s) / d x_c = exp(x_c) / sum_k exp(x_k) = p_c        d x_t / d x_c = [c = t]
 *   so dl/dx_c = p_c - [c = t], and with the mean and the incoming dL (a scalar):
 *     dx_c += (p_c - onehot(t)_c) * dL / count         (nothing at ignored positions)
 *   The gradient of a position's scores sums to zero (softmax sums to one).
 *
 *   What is saved: m and s per position (2 N*H*W floats) and a copy of the targets. The
 *   alternative, the softmax itself, is C/2 times larger (N*C*H*W floats: 2.6 MB instead
 *   of 512 KB for the 10-class 256x256 forum workload); backward recomputes p_c from the
 *   logits, which are the op's input and stay alive until the step ends — one exp per
 *   logit, the same work the forward did.
 *
 *   Layout: class c of position p (of inner = L or H*W) in image n is
 *   x[(n C + c) inner + p], so the class axis is strided by inner. Every loop below runs
 *   over classes outside and over a tile of contiguous positions inside (running max,
 *   running sum, gradient), so the inner loops are unit-stride and vectorisable; tiles of
 *   (image, positions) are the unit of parallel work. (N, C) logits are the same code
 *   with inner = 1.
 *
 * MEAN SQUARED ERROR
 *   L = (1 / n) sum_i (pred_i - target_i)^2 over all n elements (same shapes required).
 *   dL/dpred_i = 2 (pred_i - target_i) / n * dL,  dL/dtarget_i = -(the same).
 *   Nothing is saved: pred and target are the inputs.
 *
 * Both forwards sum in double, in fixed chunks summed in a fixed order, so the loss is
 * the same whatever the thread count.
 */
#include "loss.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <math.h>

/* Positions per cross-entropy tile: the running max and sum of a tile (2 KB) stay in L1. */
#define CE_TILE 256
/* Elements per MSE partial sum. */
#define MSE_CHUNK 4096

static int64_t ce_blocks(int64_t inner) { return (inner + CE_TILE - 1) / CE_TILE; }

int64_t cross_entropy_partials(int64_t N, int64_t inner) { return N * ce_blocks(inner); }

/* One tile: `len` contiguous positions of one image. x points at class 0 of the tile's
 * first position (classes strided by inner); max, logsum and target at that position.
 * Returns the tile's summed negative log-likelihood over its non-ignored positions. */
static double ce_forward_tile(float *max, float *logsum, const float *x, const int32_t *target,
                              int32_t ignore_index, int64_t C, int64_t inner, int64_t len) {
    float m[CE_TILE], s[CE_TILE];
    for (int64_t p = 0; p < len; p++) {
        m[p] = x[p];
        s[p] = 0.0f;
    }
    for (int64_t c = 1; c < C; c++) {
        const float *xc = x + c * inner;
#pragma omp simd
        for (int64_t p = 0; p < len; p++) m[p] = xc[p] > m[p] ? xc[p] : m[p];
    }
    for (int64_t c = 0; c < C; c++) {
        const float *xc = x + c * inner;
#pragma omp simd
        for (int64_t p = 0; p < len; p++) s[p] += expf(xc[p] - m[p]);
    }
    double nll = 0;
    for (int64_t p = 0; p < len; p++) {
        max[p] = m[p];
        logsum[p] = logf(s[p]);
        if (target[p] == ignore_index) continue;
        nll += ((double)m[p] - (double)x[(int64_t)target[p] * inner + p]) + (double)logsum[p];
    }
    return nll;
}

/* The loops below run on tg_parallel_items (core/pool.c): each tile or chunk is computed
 * the same whoever runs it, and partial sums are added in order afterwards, so the loss
 * and the gradients are the same bits at every thread count. */
#define LOSS_SERIAL 32768 /* elements at or below which one thread does it all */
#define LOSS_GRAIN 32768  /* elements per chunk of the parallel loops */

typedef struct ce_job {
    float *max, *logsum, *dlogits;
    double *partial;
    const float *logits;
    const int32_t *target;
    int32_t ignore_index;
    float scale;
    int64_t C, inner, blocks;
    bool fresh;
} ce_job;

/* The tile k's image n, first position p0 and length. */
static int64_t ce_tile(const ce_job *j, int64_t k, int64_t *n, int64_t *p0) {
    *n = k / j->blocks;
    *p0 = (k % j->blocks) * CE_TILE;
    return j->inner - *p0 < CE_TILE ? j->inner - *p0 : CE_TILE;
}

static void ce_forward_tiles(void *arg, int64_t k0, int64_t k1) {
    const ce_job *j = arg;
    for (int64_t k = k0; k < k1; k++) {
        int64_t n, p0, len = ce_tile(j, k, &n, &p0), q = n * j->inner + p0;
        j->partial[k] = ce_forward_tile(j->max + q, j->logsum + q,
                                        j->logits + n * j->C * j->inner + p0, j->target + q,
                                        j->ignore_index, j->C, j->inner, len);
    }
}

void cross_entropy_forward_cpu(float *loss, float *max, float *logsum, double *partial,
                               const float *logits, const int32_t *target, int32_t ignore_index,
                               int64_t count, int64_t N, int64_t C, int64_t inner) {
    ce_job j = {.max = max, .logsum = logsum, .partial = partial, .logits = logits,
                .target = target, .ignore_index = ignore_index, .C = C, .inner = inner,
                .blocks = ce_blocks(inner)};
    int64_t ntiles = N * j.blocks;
    tg_parallel_items(ntiles, (double)C * (double)inner / (double)j.blocks, LOSS_SERIAL,
                      LOSS_GRAIN, ce_forward_tiles, &j);
    double sum = 0;
    for (int64_t k = 0; k < ntiles; k++) sum += partial[k];
    /* Every target ignored: 0/0, NaN, as PyTorch (written out: no division by zero). */
    loss[0] = count > 0 ? (float)(sum / (double)count) : NAN;
}

static void ce_backward_tiles(void *arg, int64_t k0, int64_t k1) {
    const ce_job *j = arg;
    const int64_t C = j->C, inner = j->inner;
    const float scale = j->scale;
    for (int64_t k = k0; k < k1; k++) {
        int64_t n, p0, len = ce_tile(j, k, &n, &p0), q = n * inner + p0;
        const float *x = j->logits + n * C * inner + p0, *mx = j->max + q, *ls = j->logsum + q;
        const int32_t *t = j->target + q;
        float *dx = j->dlogits + n * C * inner + p0;
        /* Ignored positions get weight 0 (keeping the inner loop branch-free) ... */
        float w[CE_TILE];
        for (int64_t p = 0; p < len; p++) w[p] = t[p] == j->ignore_index ? 0.0f : scale;
        /* ... the softmax part, class by class along contiguous positions ... */
        for (int64_t c = 0; c < C; c++) {
            const float *xc = x + c * inner;
            float *dxc = dx + c * inner;
            if (j->fresh) { /* the tape's buffer is uninitialised: write it (tg_grad_fresh) */
#pragma omp simd
                for (int64_t p = 0; p < len; p++) dxc[p] = expf((xc[p] - mx[p]) - ls[p]) * w[p];
            } else {
#pragma omp simd
                for (int64_t p = 0; p < len; p++) dxc[p] += expf((xc[p] - mx[p]) - ls[p]) * w[p];
            }
        }
        /* ... then the one-hot part, one element per position. */
        for (int64_t p = 0; p < len; p++)
            if (t[p] != j->ignore_index) dx[(int64_t)t[p] * inner + p] -= scale;
    }
}

void cross_entropy_backward_cpu(float *dlogits, const float *logits, const float *max,
                                const float *logsum, const int32_t *target,
                                int32_t ignore_index, float scale, int64_t N, int64_t C,
                                int64_t inner, bool fresh) {
    ce_job j = {.max = (float *)max, .logsum = (float *)logsum, .dlogits = dlogits,
                .logits = logits, .target = target, .ignore_index = ignore_index,
                .scale = scale, .C = C, .inner = inner, .blocks = ce_blocks(inner),
                .fresh = fresh};
    tg_parallel_items(N * j.blocks, (double)C * (double)inner / (double)j.blocks, LOSS_SERIAL,
                      LOSS_GRAIN, ce_backward_tiles, &j);
}

int64_t mse_partials(int64_t n) { return (n + MSE_CHUNK - 1) / MSE_CHUNK; }

typedef struct mse_job {
    double *partial;
    float *dpred, *dtarget;
    const float *pred, *target;
    float scale;
    int64_t n;
} mse_job;

static void mse_forward_chunks(void *arg, int64_t k0, int64_t k1) {
    const mse_job *j = arg;
    for (int64_t k = k0; k < k1; k++) {
        int64_t end = (k + 1) * MSE_CHUNK < j->n ? (k + 1) * MSE_CHUNK : j->n;
        double s = 0;
        for (int64_t i = k * MSE_CHUNK; i < end; i++) {
            double d = (double)j->pred[i] - (double)j->target[i];
            s += d * d;
        }
        j->partial[k] = s;
    }
}

void mse_forward_cpu(float *loss, double *partial, const float *pred, const float *target,
                     int64_t n) {
    mse_job j = {.partial = partial, .pred = pred, .target = target, .n = n};
    int64_t nchunks = mse_partials(n);
    tg_parallel_items(nchunks, MSE_CHUNK, 2 * LOSS_SERIAL, LOSS_GRAIN, mse_forward_chunks, &j);
    double sum = 0;
    for (int64_t k = 0; k < nchunks; k++) sum += partial[k];
    loss[0] = (float)(sum / (double)n);
}

static void mse_backward_range(void *arg, int64_t i0, int64_t i1) {
    const mse_job *j = arg;
    const float *pred = j->pred, *target = j->target, scale = j->scale;
    if (j->dpred) {
        float *d = j->dpred;
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) d[i] += scale * (pred[i] - target[i]);
    }
    if (j->dtarget) {
        float *d = j->dtarget;
#pragma omp simd
        for (int64_t i = i0; i < i1; i++) d[i] -= scale * (pred[i] - target[i]);
    }
}

void mse_backward_cpu(float *dpred, float *dtarget, const float *pred, const float *target,
                      float scale, int64_t n) {
    mse_job j = {.dpred = dpred, .dtarget = dtarget, .pred = pred, .target = target,
                 .scale = scale, .n = n};
    tg_parallel_items(n, 1, 2 * LOSS_SERIAL, LOSS_GRAIN, mse_backward_range, &j);
}

/* ---------------------------------------------------------------- cross entropy op */

typedef struct cross_entropy_params {
    int64_t N, C, inner;
    int64_t count;        /* positions whose target is not ignore_index: the mean's divisor */
    int32_t ignore_index;
    /* The caller's host array, borrowed for the forward only (it is copied into the
     * record's aux there, and this pointer cleared). */
    const int32_t *target;
} cross_entropy_params;

/* The forward's memory on ctx's device: the saved max (saved[0]) and log-sum (saved[1]),
 * the targets copied from the caller's host array (rec->aux) and `partials` doubles of
 * scratch. */
static tg_status cross_entropy_prepare(tg_ctx *ctx, tg_record *rec, int64_t partials,
                                       double **partial) {
    cross_entropy_params *p = TG_PARAMS(rec, cross_entropy_params);
    int64_t positions = p->N * p->inner;
    size_t target_bytes = (size_t)positions * sizeof(int32_t);
    tg_tensor *max = tg_record_save(ctx, rec, 0, tg_shape2(p->N, p->inner));
    tg_tensor *logsum = tg_record_save(ctx, rec, 1, tg_shape2(p->N, p->inner));
    int32_t *target = tg_record_save_bytes(ctx, rec, target_bytes);
    *partial = tg_ctx_scratch(ctx, (size_t)partials * sizeof(double));
    if (!max || !logsum || !target || !*partial) return tg_error();
    tg_status st = tg_device_copy(ctx->device, target, TG_DEVICE_CPU, p->target, target_bytes);
    if (st) return st;
    rec->aux = target;
    p->target = NULL;
    return TG_OK;
}

static tg_status cross_entropy_forward(tg_ctx *ctx, tg_record *rec) {
    const cross_entropy_params *p = TG_PARAMS(rec, cross_entropy_params);
    double *partial;
    tg_status st = cross_entropy_prepare(ctx, rec, cross_entropy_partials(p->N, p->inner),
                                         &partial);
    if (st) return st;
    cross_entropy_forward_cpu(rec->out->data, rec->saved[0]->data, rec->saved[1]->data, partial,
                              rec->inputs[0]->data, rec->aux, p->ignore_index, p->count, p->N,
                              p->C, p->inner);
    return TG_OK;
}

static tg_status cross_entropy_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                        const float *dout) {
    (void)ctx;
    const cross_entropy_params *p = TG_PARAMS(rec, cross_entropy_params);
    /* No target counted (all ignored): every position has weight 0 anyway. */
    float scale = p->count > 0 ? (float)((double)dout[0] / (double)p->count) : 0.0f;
    cross_entropy_backward_cpu(dinputs[0], rec->inputs[0]->data, rec->saved[0]->data,
                               rec->saved[1]->data, rec->aux, p->ignore_index, scale, p->N,
                               p->C, p->inner, tg_grad_fresh(rec, 0));
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_cross_entropy_forward(tg_ctx *ctx, tg_record *rec) {
    const cross_entropy_params *p = TG_PARAMS(rec, cross_entropy_params);
    double *partial;
    tg_status st = cross_entropy_prepare(ctx, rec, cross_entropy_partials_cuda(p->N, p->inner),
                                         &partial);
    if (st) return st;
    return cross_entropy_forward_cuda(rec->out->data, rec->saved[0]->data, rec->saved[1]->data,
                                      partial, rec->inputs[0]->data, rec->aux, p->ignore_index,
                                      p->count, p->N, p->C, p->inner);
}

/* dout stays on the device: the kernel reads dL itself. */
static tg_status cuda_cross_entropy_backward(tg_ctx *ctx, tg_record *rec,
                                             float *const *dinputs, const float *dout) {
    (void)ctx;
    const cross_entropy_params *p = TG_PARAMS(rec, cross_entropy_params);
    return cross_entropy_backward_cuda(dinputs[0], rec->inputs[0]->data, rec->saved[0]->data,
                                       rec->saved[1]->data, rec->aux, p->ignore_index, dout,
                                       p->count, p->N, p->C, p->inner);
}
#endif

static void cross_entropy_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                               double *bwd_flops, double *bwd_bytes) {
    const cross_entropy_params *p = TG_PARAMS(rec, cross_entropy_params);
    double positions = (double)(p->N * p->inner), n = positions * (double)p->C;
    /* Per logit: max, subtract, exp, add (an exp counted as one FLOP). */
    *fwd_flops = 4 * n + 3 * positions;
    *fwd_bytes = 4 * n + 12 * positions; /* logits read (twice from cache); targets, max, log-sum */
    /* Per logit: two subtractions, exp, multiply, add. */
    *bwd_flops = 5 * n + positions;
    *bwd_bytes = 12 * n + 12 * positions; /* logits read, dlogits read+written; max, log-sum, targets */
}

static const tg_op cross_entropy_op = {
    .name = "cross_entropy",
    .forward = {[TG_DEVICE_CPU] = cross_entropy_forward,
                TG_CUDA_ENTRY(cuda_cross_entropy_forward)},
    .backward = {[TG_DEVICE_CPU] = cross_entropy_backward,
                 TG_CUDA_ENTRY(cuda_cross_entropy_backward)},
    .cost = cross_entropy_cost,
    .backward_doc = "dlogits += (softmax - onehot(target)) * dL / count, softmax recomputed "
                    "as exp((logits - saved max) - saved log-sum); ignored targets get 0",
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* logits: every element is written */
};

tg_cross_entropy_opts tg_cross_entropy_opts_default(void) {
    return (tg_cross_entropy_opts){.ignore_index = -100, .tag = TG_OPTS_TAG};
}

tg_tensor *tg_cross_entropy_with(tg_ctx *ctx, tg_tensor *logits, const int32_t *target,
                                 tg_cross_entropy_opts opts) {
    if (tg_check_not_null("tg_cross_entropy", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_cross_entropy", "logits", logits, -1)) return NULL;
    if (opts.tag != TG_OPTS_TAG) {
        tg_fail(TG_ERR_ARG, "tg_cross_entropy: argument 'opts' was not made by "
                "tg_cross_entropy_opts_default(); hint: start from "
                "tg_cross_entropy_opts o = tg_cross_entropy_opts_default(); then set "
                "o.ignore_index (a zeroed struct would ignore class 0)");
        return NULL;
    }
    const tg_shape *sh = &logits->shape;
    if (sh->ndim < 2) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "tg_cross_entropy: argument 'logits' has shape %s (%d dims); "
                "expected (N, C) class scores, (N, C, L) per-position scores or (N, C, H, W) "
                "per-pixel scores", tg_shape_str(*sh, s, sizeof s), sh->ndim);
        return NULL;
    }
    int64_t N = sh->dim[0], C = sh->dim[1], inner = 1;
    for (int d = 2; d < sh->ndim; d++) inner *= sh->dim[d];
    int64_t positions = N * inner;
    const char *layout = sh->ndim == 4 ? "N*H*W" : sh->ndim == 3 ? "N*L" : "N";
    if (!target) {
        tg_fail(TG_ERR_ARG, "tg_cross_entropy: argument 'target' is NULL; expected %lld "
                "class indices (%s)", (long long)positions, layout);
        return NULL;
    }
    int64_t count = 0;
    for (int64_t i = 0; i < positions; i++) {
        if (target[i] == opts.ignore_index) continue;
        if (target[i] < 0 || target[i] >= C) {
            tg_fail(TG_ERR_ARG, "tg_cross_entropy: argument 'target' has value %d at index "
                    "%lld; class indices must lie in [0, C) with C = %lld, or equal "
                    "ignore_index (%d)", (int)target[i], (long long)i, (long long)C,
                    (int)opts.ignore_index);
            return NULL;
        }
        count++;
    }
    cross_entropy_params p = {.N = N, .C = C, .inner = inner, .count = count,
                              .ignore_index = opts.ignore_index, .target = target};
    tg_tensor *inputs[1] = {logits};
    return tg_op_apply(ctx, &cross_entropy_op, inputs, 1, tg_shape0(), &p, sizeof p, NULL);
}

tg_tensor *tg_cross_entropy(tg_ctx *ctx, tg_tensor *logits, const int32_t *target) {
    return tg_cross_entropy_with(ctx, logits, target, tg_cross_entropy_opts_default());
}

/* ---------------------------------------------------------------- mse op */

static tg_status mse_forward(tg_ctx *ctx, tg_record *rec) {
    int64_t n = rec->inputs[0]->numel;
    double *partial = tg_ctx_scratch(ctx, (size_t)mse_partials(n) * sizeof(double));
    if (!partial) return tg_error();
    mse_forward_cpu(rec->out->data, partial, rec->inputs[0]->data, rec->inputs[1]->data, n);
    return TG_OK;
}

static tg_status mse_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                              const float *dout) {
    (void)ctx;
    int64_t n = rec->inputs[0]->numel;
    float scale = (float)(2.0 * (double)dout[0] / (double)n);
    mse_backward_cpu(dinputs[0], dinputs[1], rec->inputs[0]->data, rec->inputs[1]->data, scale,
                     n);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_mse_forward(tg_ctx *ctx, tg_record *rec) {
    int64_t n = rec->inputs[0]->numel;
    double *partial = tg_ctx_scratch(ctx, (size_t)mse_partials_cuda(n) * sizeof(double));
    if (!partial) return tg_error();
    return mse_forward_cuda(rec->out->data, partial, rec->inputs[0]->data,
                            rec->inputs[1]->data, n);
}

static tg_status cuda_mse_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    (void)ctx;
    return mse_backward_cuda(dinputs[0], dinputs[1], rec->inputs[0]->data,
                             rec->inputs[1]->data, dout, rec->inputs[0]->numel);
}
#endif

static void mse_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                     double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->inputs[0]->numel;
    bool dtarget = rec->inputs[1]->requires_grad;
    *fwd_flops = 3 * n;  /* subtract, square, add */
    *fwd_bytes = 8 * n;  /* read pred, target */
    *bwd_flops = (dtarget ? 6 : 3) * n;
    *bwd_bytes = (dtarget ? 24 : 16) * n; /* read pred, target; read+write each gradient */
}

static const tg_op mse_op = {
    .name = "mse_loss",
    .forward = {[TG_DEVICE_CPU] = mse_forward, TG_CUDA_ENTRY(cuda_mse_forward)},
    .backward = {[TG_DEVICE_CPU] = mse_backward, TG_CUDA_ENTRY(cuda_mse_backward)},
    .cost = mse_cost,
    .backward_doc = "dpred += 2 (pred - target) / n * dL; dtarget -= the same",
};

tg_tensor *tg_mse_loss(tg_ctx *ctx, tg_tensor *pred, tg_tensor *target) {
    if (tg_check_not_null("tg_mse_loss", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_mse_loss", "pred", pred, -1) ||
        !tg_check_tensor("tg_mse_loss", "target", target, -1))
        return NULL;
    if (!tg_shape_equal(pred->shape, target->shape)) {
        char s1[80], s2[80];
        tg_fail(TG_ERR_SHAPE, "tg_mse_loss: argument 'target' has shape %s but 'pred' has "
                "shape %s; they must match (no broadcasting)",
                tg_shape_str(target->shape, s1, sizeof s1),
                tg_shape_str(pred->shape, s2, sizeof s2));
        return NULL;
    }
    tg_tensor *inputs[2] = {pred, target};
    return tg_op_apply(ctx, &mse_op, inputs, 2, tg_shape0(), NULL, 0, NULL);
}
