/*
 * ops/linear.c — the fully connected layer (PyTorch's F.linear).
 *
 *   y[n, o] = sum_i x[n, i] W[o, i] + b[o]        i.e.  y = x W^T + b
 *
 * Layouts (row-major, contiguous): x (..., in), W (out, in) as nn.Linear stores it,
 * b (out) or none, y (..., out). x may have 2 to 4 dims; the leading dims are folded
 * into one row count N (they are contiguous), so x (B, T, in) is ONE SGEMM with
 * N = B T rows, exactly as (B T, in) would be. A conv activation (N, C, H, W) is
 * flattened first (tg_flatten): its last dim is W, not the features.
 *
 * Backward. With dy = dL/dy (N, out), the chain rule on y[n, o] gives
 *   dL/dx[n, i] = sum_o dy[n, o] W[o, i]   ->  dx = dy W          (N, out)(out, in)
 *   dL/dW[o, i] = sum_n dy[n, o] x[n, i]   ->  dW = dy^T x        (out, N)(N, in)
 *   dL/db[o]    = sum_n dy[n, o]           ->  the column sums of dy
 * All three are one SGEMM or one pass over dy; the GEMMs use beta = 1 so they ADD into
 * the gradients (the tape's contract), and a NULL gradient skips its GEMM. A fresh dx
 * (tg_grad_fresh: the tape's new, uninitialised buffer) is written with beta = 0 instead.
 * Nothing is saved: x and W are the op's inputs and stay alive until the step ends.
 * The SGEMMs run on our threads (tg_sgemm, core/gemm.c), not OpenBLAS's.
 */
#include "linear.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <limits.h>

typedef struct bias_rows_job {
    float *y;
    const float *bias;
    int64_t out;
} bias_rows_job;

/* Rows [n0, n1) of y set to the bias (tg_parallel_items: each row the same whoever). */
static void bias_rows(void *arg, int64_t n0, int64_t n1) {
    const bias_rows_job *j = arg;
    for (int64_t n = n0; n < n1; n++) {
        float *row = j->y + n * j->out;
#pragma omp simd
        for (int64_t o = 0; o < j->out; o++) row[o] = j->bias[o];
    }
}

void linear_forward_cpu(float *y, const float *x, const float *weight, const float *bias,
                        int64_t N, int64_t in, int64_t out) {
    /* With a bias, start y at b in every row and let the GEMM add x W^T (beta = 1). */
    float beta = 0.0f;
    if (bias) {
        bias_rows_job j = {.y = y, .bias = bias, .out = out};
        tg_parallel_items(N, (double)out, 65536, 16384, bias_rows, &j);
        beta = 1.0f;
    }
    tg_sgemm(false, true, N, out, in, 1.0f, x, in, weight, in, beta, y, out);
}

void linear_backward_cpu(float *dx, float *dweight, float *dbias, const float *dy,
                         const float *x, const float *weight, int64_t N, int64_t in,
                         int64_t out, bool dx_fresh) {
    if (dx) {
        /* dx (N, in) += dy (N, out) · W (out, in); a fresh dx is written (beta = 0) */
        tg_sgemm(false, false, N, in, out, 1.0f, dy, out, weight, in, dx_fresh ? 0.0f : 1.0f,
                 dx, in);
    }
    if (dweight) {
        /* dW (out, in) += dy^T (out, N) · x (N, in) */
        tg_sgemm(true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dweight, in);
    }
    if (dbias) {
        /* Column sums of dy, row by row so the inner loop is contiguous. */
        for (int64_t n = 0; n < N; n++) {
            const float *row = dy + n * out;
#pragma omp simd
            for (int64_t o = 0; o < out; o++) dbias[o] += row[o];
        }
    }
}

typedef struct linear_params {
    int64_t N, in, out;
} linear_params;

static tg_status linear_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const linear_params *p = TG_PARAMS(rec, linear_params);
    const tg_tensor *bias = rec->inputs[2];
    linear_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                       bias ? bias->data : NULL, p->N, p->in, p->out);
    return TG_OK;
}

static tg_status linear_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    (void)ctx;
    const linear_params *p = TG_PARAMS(rec, linear_params);
    linear_backward_cpu(dinputs[0], dinputs[1], dinputs[2], dout, rec->inputs[0]->data,
                        rec->inputs[1]->data, p->N, p->in, p->out, tg_grad_fresh(rec, 0));
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_linear_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const linear_params *p = TG_PARAMS(rec, linear_params);
    const tg_tensor *bias = rec->inputs[2];
    return linear_forward_cuda(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                               bias ? bias->data : NULL, p->N, p->in, p->out);
}

static tg_status cuda_linear_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    (void)ctx;
    const linear_params *p = TG_PARAMS(rec, linear_params);
    return linear_backward_cuda(dinputs[0], dinputs[1], dinputs[2], dout, rec->inputs[0]->data,
                                rec->inputs[1]->data, p->N, p->in, p->out);
}
#endif

static void linear_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                        double *bwd_flops, double *bwd_bytes) {
    const linear_params *p = TG_PARAMS(rec, linear_params);
    double N = (double)p->N, in = (double)p->in, out = (double)p->out;
    bool has_bias = rec->inputs[2] != NULL;
    double xs = N * in, ws = out * in, ys = N * out, bs = has_bias ? out : 0;
    *fwd_flops = 2 * N * in * out + (has_bias ? ys : 0);
    *fwd_bytes = 4 * (xs + ws + bs + ys);
    /* Two GEMMs of the forward's size, plus the column sums of dy for the bias. */
    *bwd_flops = 4 * N * in * out + (has_bias ? ys : 0);
    /* Read dy, x, W; read and write dx and dW (and db). */
    *bwd_bytes = 4 * (ys + xs + ws + 2 * xs + 2 * ws + 2 * bs);
}

static const tg_op linear_op = {
    .name = "linear",
    .forward = {[TG_DEVICE_CPU] = linear_forward, TG_CUDA_ENTRY(cuda_linear_forward)},
    .backward = {[TG_DEVICE_CPU] = linear_backward, TG_CUDA_ENTRY(cuda_linear_backward)},
    .cost = linear_cost,
    .backward_doc = "dx += dy W, dW += dy^T x (two SGEMMs, beta = 1), db += column sums of dy",
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: a fresh dx is written (beta = 0) */
};

tg_tensor *tg_linear(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias) {
    char s1[80], s2[80];
    if (tg_check_not_null("tg_linear", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_linear", "x", x, -1)) return NULL;
    if (!tg_check_tensor("tg_linear", "weight", weight, 2)) return NULL;
    int64_t out = weight->shape.dim[0], in = weight->shape.dim[1];
    int nd = x->shape.ndim;
    if (nd < 2) {
        tg_fail(TG_ERR_SHAPE, "tg_linear: argument 'x' has shape %s (%d dims); expected "
                "(..., in) = (..., %lld) with 2 to 4 dims; hint: make one sample a row with "
                "tg_reshape(ctx, x, tg_shape2(1, -1)), and flatten a conv output with "
                "tg_flatten", tg_shape_str(x->shape, s1, sizeof s1), nd, (long long)in);
        return NULL;
    }
    if (x->shape.dim[nd - 1] != in) {
        tg_fail(TG_ERR_SHAPE, "tg_linear: argument 'x' has shape %s but 'weight' has shape "
                "%s: x's last dim must be the %lld input features; hint: flatten a conv "
                "output (N, C, H, W) first with tg_flatten, and check the layer's in_features",
                tg_shape_str(x->shape, s1, sizeof s1),
                tg_shape_str(weight->shape, s2, sizeof s2), (long long)in);
        return NULL;
    }
    int64_t N = x->numel / in; /* the leading dims, folded */
    if (bias && (bias->shape.ndim != 1 || bias->shape.dim[0] != out)) {
        tg_fail(TG_ERR_SHAPE, "tg_linear: argument 'bias' has shape %s; expected (%lld), "
                "one value per output feature of 'weight' %s",
                tg_shape_str(bias->shape, s1, sizeof s1), (long long)out,
                tg_shape_str(weight->shape, s2, sizeof s2));
        return NULL;
    }
    if (N > INT_MAX || in > INT_MAX || out > INT_MAX) {
        tg_fail(TG_ERR_ARG, "tg_linear: argument 'x' %s with 'weight' %s has a dimension "
                "above 2^31 - 1 (rows: %lld), more than a BLAS call takes",
                tg_shape_str(x->shape, s1, sizeof s1), tg_shape_str(weight->shape, s2, sizeof s2),
                (long long)N);
        return NULL;
    }
    linear_params p = {.N = N, .in = in, .out = out};
    tg_tensor *inputs[3] = {x, weight, bias};
    tg_shape y_shape = x->shape;
    y_shape.dim[nd - 1] = out;
    return tg_op_apply(ctx, &linear_op, inputs, 3, y_shape, &p, sizeof p, NULL);
}
