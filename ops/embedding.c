/*
 * ops/embedding.c — a lookup table: rows of weight (V, D) picked by integer indices.
 *
 * FORWARD. out[i, :] = W[idx_i, :] for every position i (of any index shape, flattened).
 * It is a matrix product with one-hot rows, out = onehot(idx) W, done without the
 * O(V) one-hot: one row copy of D floats per position.
 *
 * BACKWARD. d out[i, d] / d W[v, d] = [idx_i = v], so
 *   dW[v, :] += sum over positions i with idx_i = v of dout[i, :]
 * a scatter-add: a token that appears k times gets k contributions. The indices are not
 * differentiable (integers).
 *
 * Kernels. The forward copies rows in parallel over positions. The backward must not let
 * two threads add into the same row at once (repeated indices): it splits D into chunks of
 * EMB_COLS columns, and one thread handles one column chunk for every position, in order,
 * so the additions happen in a fixed order (deterministic) without atomics.
 */
#include "embedding.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <stdio.h>
#include <string.h>

#define EMB_COLS 16

/* Both loops run on tg_parallel_range (core/pool.c): a row copy, or a column chunk over
 * every position in order, is the same whoever runs it. */
#define EMB_SERIAL 65536
#define EMB_CHUNK 8192 /* elements per forward chunk, about */

typedef struct emb_job {
    float *dst;
    const float *src;
    const int32_t *idx;
    int64_t n, D;
} emb_job;

static void embedding_rows(void *arg, int64_t i0, int64_t i1) {
    const emb_job *j = arg;
    const int64_t D = j->D;
    for (int64_t i = i0; i < i1; i++)
        memcpy(j->dst + i * D, j->src + (int64_t)j->idx[i] * D, (size_t)D * sizeof(float));
}

static void embedding_col_chunks(void *arg, int64_t c0, int64_t c1) {
    const emb_job *j = arg;
    const int64_t D = j->D;
    for (int64_t c = c0; c < c1; c++) {
        int64_t d0 = c * EMB_COLS, len = D - d0 < EMB_COLS ? D - d0 : EMB_COLS;
        for (int64_t i = 0; i < j->n; i++) {
            float *dw = j->dst + (int64_t)j->idx[i] * D + d0;
            const float *g = j->src + i * D + d0;
#pragma omp simd
            for (int64_t d = 0; d < len; d++) dw[d] += g[d];
        }
    }
}

void embedding_forward_cpu(float *out, const float *weight, const int32_t *idx, int64_t n,
                           int64_t D) {
    emb_job j = {.dst = out, .src = weight, .idx = idx, .n = n, .D = D};
    tg_parallel_items(n, (double)D, EMB_SERIAL, EMB_CHUNK, embedding_rows, &j);
}

void embedding_backward_cpu(float *dweight, const float *dout, const int32_t *idx, int64_t n,
                            int64_t D) {
    emb_job j = {.dst = dweight, .src = dout, .idx = idx, .n = n, .D = D};
    int64_t chunks = (D + EMB_COLS - 1) / EMB_COLS;
    /* a column chunk walks every position: one per tg_parallel_range chunk */
    tg_parallel_items(chunks, (double)n * (double)D / (double)chunks, EMB_SERIAL, 1,
                      embedding_col_chunks, &j);
}

typedef struct embedding_params {
    int64_t n, V, D;
    /* The caller's host indices, borrowed for the forward only (copied into rec->aux on
     * the context's device there, and this pointer cleared). */
    const int32_t *indices;
} embedding_params;

static tg_status embedding_forward(tg_ctx *ctx, tg_record *rec) {
    embedding_params *p = TG_PARAMS(rec, embedding_params);
    size_t bytes = (size_t)p->n * sizeof(int32_t);
    int32_t *idx = tg_record_save_bytes(ctx, rec, bytes);
    if (!idx) return tg_error();
    tg_status st = tg_device_copy(ctx->device, idx, TG_DEVICE_CPU, p->indices, bytes);
    if (st) return st;
    rec->aux = idx;
    p->indices = NULL;
#ifdef TG_HAVE_CUDA
    if (ctx->device == TG_DEVICE_CUDA)
        return embedding_forward_cuda(rec->out->data, rec->inputs[0]->data, idx, p->n, p->D);
#endif
    embedding_forward_cpu(rec->out->data, rec->inputs[0]->data, idx, p->n, p->D);
    return TG_OK;
}

static tg_status embedding_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                    const float *dout) {
    (void)ctx;
    const embedding_params *p = TG_PARAMS(rec, embedding_params);
    embedding_backward_cpu(dinputs[0], dout, rec->aux, p->n, p->D);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_embedding_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                         const float *dout) {
    (void)ctx;
    const embedding_params *p = TG_PARAMS(rec, embedding_params);
    return embedding_backward_cuda(dinputs[0], dout, rec->aux, p->n, p->D);
}
#endif

static void embedding_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                           double *bwd_flops, double *bwd_bytes) {
    const embedding_params *p = TG_PARAMS(rec, embedding_params);
    double n = (double)(p->n * p->D);
    *fwd_flops = 0;
    *fwd_bytes = 8 * n + 4 * (double)p->n; /* read rows, write out; indices */
    *bwd_flops = n;
    *bwd_bytes = 12 * n + 4 * (double)p->n; /* read dout and dweight rows, write them */
}

static void embedding_explain(const tg_record *rec, char *buf, size_t size) {
    const embedding_params *p = TG_PARAMS(rec, embedding_params);
    snprintf(buf, size, "embedding of %lld positions into (%lld, %lld): dweight[idx[i]] += "
             "dout[i] (scatter-add; repeated indices accumulate)", (long long)p->n,
             (long long)p->V, (long long)p->D);
}

static const tg_op embedding_op = {
    .name = "embedding",
    .forward = {[TG_DEVICE_CPU] = embedding_forward, TG_CUDA_ENTRY(embedding_forward)},
    .backward = {[TG_DEVICE_CPU] = embedding_backward, TG_CUDA_ENTRY(cuda_embedding_backward)},
    .cost = embedding_cost,
    .explain = embedding_explain,
};

tg_tensor *tg_embedding(tg_ctx *ctx, tg_tensor *weight, const int32_t *indices,
                        tg_shape index_shape) {
    const char *op = "tg_embedding";
    char s[80], s2[80];
    if (tg_check_not_null(op, "ctx", ctx)) return NULL;
    if (!tg_check_tensor(op, "weight", weight, 2)) return NULL;
    if (index_shape.ndim < 1 || index_shape.ndim > TG_MAX_DIMS - 1) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'index_shape' has %d dims; expected 1 to %d "
                "(the output adds the embedding dim); hint: (T) or (B, T)", op,
                index_shape.ndim, TG_MAX_DIMS - 1);
        return NULL;
    }
    for (int k = 0; k < index_shape.ndim; k++) {
        if (index_shape.dim[k] <= 0) {
            tg_fail(TG_ERR_SHAPE, "%s: argument 'index_shape' %s has a dim <= 0", op,
                    tg_shape_str(index_shape, s, sizeof s));
            return NULL;
        }
    }
    int64_t n = tg_shape_numel(index_shape), V = weight->shape.dim[0], D = weight->shape.dim[1];
    if (!indices) {
        tg_fail(TG_ERR_ARG, "%s: argument 'indices' is NULL; expected %lld int32 indices "
                "(index_shape %s) in host memory", op, (long long)n,
                tg_shape_str(index_shape, s, sizeof s));
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= V) {
            tg_fail(TG_ERR_ARG, "%s: argument 'indices' has value %d at position %lld (of "
                    "index_shape %s); indices must lie in [0, %lld), the vocabulary size of "
                    "weight %s; hint: check the tokenizer's vocabulary against the table", op,
                    (int)indices[i], (long long)i, tg_shape_str(index_shape, s, sizeof s),
                    (long long)V, tg_shape_str(weight->shape, s2, sizeof s2));
            return NULL;
        }
    }
    tg_shape out = index_shape;
    out.dim[out.ndim++] = D;
    embedding_params p = {.n = n, .V = V, .D = D, .indices = indices};
    tg_tensor *inputs[1] = {weight};
    return tg_op_apply(ctx, &embedding_op, inputs, 1, out, &p, sizeof p, NULL);
}
