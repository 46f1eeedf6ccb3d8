/*
 * ops/matmul.c — matrix product of 2-D to 4-D tensors with broadcast batch dims
 * (torch.matmul for operands of 2 or more dims).
 *
 *   out[..., m, n] = sum_k a[..., m, k] b[..., k, n]
 *
 * Layouts (row-major, contiguous): a (..., M, K), b (..., K, N) -> out (..., M, N). The
 * dims before the last two are batch dims; they are aligned from the right and broadcast
 * as in NumPy: each pair must be equal or contain a 1, and the output takes the larger.
 * So (B, H, T, D) @ (B, H, D, T) is attention's scores, (B, T, C) @ (C, C) applies one
 * matrix to every row block, (B, 1, T, T) @ (1, H, T, D) broadcasts both ways.
 *
 * Backward. For one batch index i, C_i = A_i B_i, and the chain rule per element gives
 *   dL/dA_i[m, k] = sum_n dC_i[m, n] B_i[k, n]  ->  dA_i = dC_i B_i^T     (M,N)(N,K)
 *   dL/dB_i[k, n] = sum_m A_i[m, k] dC_i[m, n]  ->  dB_i = A_i^T dC_i     (K,M)(M,N)
 * When a batch dim of a was broadcast (size 1 against D > 1), the SAME matrix A_j was
 * used by all D products along that dim; its gradient is the sum of their contributions
 * (a fan-out, like any reused tensor): dA_j = sum over those i of dC_i B_i^T. Likewise
 * for b. Both backward GEMMs use beta = 1, which both adds into the tape's gradient
 * (the contract) and performs that sum when the products are run one after the other
 * into the same matrix. Nothing is saved: a and b are the op's inputs.
 *
 * Folding. When b has no batch dims (or all are 1) and a has all of them, the batch
 * products share B and a's matrices are contiguous, so the forward is ONE GEMM with
 * M' = batch M rows (a linear layer on (B, T, C) inputs), dA likewise, and dB is one
 * GEMM with inner dim K' = batch M: dB = sum_i A_i^T dC_i = [A_0; A_1; ...]^T [dC_0; ...].
 *
 * Execution (CPU). A plan (matmul.h, gemm_batch) runs as one cblas_sgemm per matrix.
 * Many small matrices are spread over the OpenMP threads, each a single-threaded SGEMM
 * (the OpenMP build of OpenBLAS runs single-threaded inside a parallel region); few
 * large ones run one after the other, each sliced over the threads (tg_sgemm,
 * core/gemm.c: never OpenBLAS's own threads, which spin-wait). bench/linalg_bench.c
 * measures both against one SGEMM of the same total size. Products summed into one
 * gradient matrix always run serially, in order, so results are deterministic.
 */
#include "matmul.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <limits.h>
#include <stdio.h>

/* ---------------------------------------------------------------- plans */

static bool a_full(const matmul_geom *g) { return g->A[0] == g->D[0] && g->A[1] == g->D[1]; }
static bool b_none(const matmul_geom *g) { return g->B[0] == 1 && g->B[1] == 1; }
static int64_t batch_of(const matmul_geom *g) { return g->D[0] * g->D[1]; }

/* Strides between consecutive matrices of an operand with batch dims X and matrices of
 * `size` floats, along output batch dims: 0 where X broadcasts. */
static void batch_strides(const int64_t X[2], int64_t size, int64_t s[2]) {
    s[1] = X[1] > 1 ? size : 0;
    s[0] = X[0] > 1 ? X[1] * size : 0;
}

static bool can_fold(const matmul_geom *g) {
    return b_none(g) && a_full(g) && batch_of(g) > 1 && batch_of(g) * g->M <= INT_MAX;
}

static gemm_batch plan_base(const matmul_geom *g) {
    gemm_batch p = {.count = {g->D[0], g->D[1]}};
    return p;
}

gemm_batch matmul_plan_forward(const matmul_geom *g) {
    gemm_batch p = plan_base(g);
    p.M = g->M, p.N = g->N, p.K = g->K;
    p.lda = g->K, p.ldb = g->N, p.ldc = g->N;
    p.beta = 0.0f;
    if (can_fold(g)) {
        p.M *= batch_of(g);
        p.count[0] = p.count[1] = 1;
        return p;
    }
    batch_strides(g->A, g->M * g->K, p.sa);
    batch_strides(g->B, g->K * g->N, p.sb);
    batch_strides(g->D, g->M * g->N, p.sc);
    return p;
}

gemm_batch matmul_plan_da(const matmul_geom *g) {
    /* dA (M, K) += dC (M, N) . B^T (N, K) */
    gemm_batch p = plan_base(g);
    p.trans_b = true;
    p.M = g->M, p.N = g->K, p.K = g->N;
    p.lda = g->N, p.ldb = g->N, p.ldc = g->K;
    p.beta = 1.0f;
    if (can_fold(g)) {
        p.M *= batch_of(g);
        p.count[0] = p.count[1] = 1;
        return p;
    }
    batch_strides(g->D, g->M * g->N, p.sa);
    batch_strides(g->B, g->K * g->N, p.sb);
    batch_strides(g->A, g->M * g->K, p.sc);
    return p;
}

gemm_batch matmul_plan_db(const matmul_geom *g) {
    /* dB (K, N) += A^T (K, M) . dC (M, N) */
    gemm_batch p = plan_base(g);
    p.trans_a = true;
    p.M = g->K, p.N = g->N, p.K = g->M;
    p.lda = g->K, p.ldb = g->N, p.ldc = g->N;
    p.beta = 1.0f;
    if (can_fold(g)) {
        p.K *= batch_of(g);
        p.count[0] = p.count[1] = 1;
        return p;
    }
    batch_strides(g->A, g->M * g->K, p.sa);
    batch_strides(g->D, g->M * g->N, p.sb);
    batch_strides(g->B, g->K * g->N, p.sc);
    return p;
}

/* ---------------------------------------------------------------- CPU execution */


/* Matrices per thread and size below which spreading matrices over threads beats
 * threading each SGEMM; measured with bench/linalg_bench.c (bench/RESULTS.md). */
#define GEMM_SMALL_FLOPS (2.0 * 256 * 256 * 256)

static gemm_batch_mode choose_mode(const gemm_batch *g, int64_t npar) {
    int threads = tg_get_num_threads();
    if (threads < 2 || npar < threads) return GEMM_BATCH_THREADED_GEMM;
    double flops = 2.0 * (double)g->M * (double)g->N * (double)g->K;
    if (flops < GEMM_SMALL_FLOPS || npar >= 4 * (int64_t)threads || npar % threads == 0)
        return GEMM_BATCH_PARALLEL;
    return GEMM_BATCH_THREADED_GEMM;
}

/* One product: sliced over our threads in the threaded mode (core/gemm.c), a plain serial
 * SGEMM inside the parallel mode's loop. */
static void gemm_one(const gemm_batch *g, const float *A, const float *B, float *C) {
    tg_sgemm(g->trans_a, g->trans_b, g->M, g->N, g->K, 1.0f, A, g->lda, B, g->ldb, g->beta, C,
             g->ldc);
}

typedef struct batch_job {
    const gemm_batch *g;
    const float *A, *B;
    float *C;
    int par[2], ser[2], npd, nsd;
    int64_t nser;
} batch_job;

/* Products [p0, p1) of the parallel dims, each with its serial dims in order (those sum
 * into one C): one serial SGEMM each, the same whoever runs it (tg_parallel_range). */
static void batch_products(void *arg, int64_t p0, int64_t p1) {
    const batch_job *j = arg;
    const gemm_batch *g = j->g;
    for (int64_t p = p0; p < p1; p++) {
        for (int64_t s = 0; s < j->nser; s++) {
            int64_t idx[2] = {0, 0}, rest = p;
            for (int d = j->npd - 1; d >= 0; d--) {
                idx[j->par[d]] = rest % g->count[j->par[d]];
                rest /= g->count[j->par[d]];
            }
            rest = s;
            for (int d = j->nsd - 1; d >= 0; d--) {
                idx[j->ser[d]] = rest % g->count[j->ser[d]];
                rest /= g->count[j->ser[d]];
            }
            gemm_one(g, j->A + idx[0] * g->sa[0] + idx[1] * g->sa[1],
                     j->B + idx[0] * g->sb[0] + idx[1] * g->sb[1],
                     j->C + idx[0] * g->sc[0] + idx[1] * g->sc[1]);
        }
    }
}

void gemm_batch_cpu(const gemm_batch *g, const float *A, const float *B, float *C,
                    gemm_batch_mode mode) {
    if (g->M <= 0 || g->N <= 0) return;
    /* Dims along which every product writes its own C can run in parallel ("par");
     * dims along which C repeats (stride 0) sum into one matrix and run serially. */
    int par[2] = {0, 0}, ser[2] = {0, 0}, npd = 0, nsd = 0;
    int64_t npar = 1, nser = 1;
    for (int k = 0; k < 2; k++) {
        if (g->sc[k] != 0 || g->count[k] == 1) {
            par[npd++] = k;
            npar *= g->count[k];
        } else {
            ser[nsd++] = k;
            nser *= g->count[k];
        }
    }
    if (mode == GEMM_BATCH_AUTO) mode = choose_mode(g, npar);
    if (mode == GEMM_BATCH_PARALLEL && (npar < 2 || !tg_blas_nests()))
        mode = GEMM_BATCH_THREADED_GEMM;
    if (mode == GEMM_BATCH_THREADED_GEMM) {
        for (int64_t i0 = 0; i0 < g->count[0]; i0++)
            for (int64_t i1 = 0; i1 < g->count[1]; i1++)
                gemm_one(g, A + i0 * g->sa[0] + i1 * g->sa[1], B + i0 * g->sb[0] + i1 * g->sb[1],
                         C + i0 * g->sc[0] + i1 * g->sc[1]);
        return;
    }
    batch_job j = {.g = g, .A = A, .B = B, .C = C, .npd = npd, .nsd = nsd, .nser = nser,
                   .par = {par[0], par[1]}, .ser = {ser[0], ser[1]}};
    tg_parallel_range(npar, 1, batch_products, &j);
}

void matmul_forward_cpu(float *out, const float *a, const float *b, const matmul_geom *g) {
    gemm_batch p = matmul_plan_forward(g);
    gemm_batch_cpu(&p, a, b, out, GEMM_BATCH_AUTO);
}

void matmul_backward_cpu(float *da, float *db, const float *dout, const float *a,
                         const float *b, const matmul_geom *g) {
    if (da) {
        gemm_batch p = matmul_plan_da(g);
        gemm_batch_cpu(&p, dout, b, da, GEMM_BATCH_AUTO);
    }
    if (db) {
        gemm_batch p = matmul_plan_db(g);
        gemm_batch_cpu(&p, a, dout, db, GEMM_BATCH_AUTO);
    }
}

/* ---------------------------------------------------------------- the op */

static tg_status matmul_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    matmul_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                       TG_PARAMS(rec, matmul_geom));
    return TG_OK;
}

static tg_status matmul_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    (void)ctx;
    matmul_backward_cpu(dinputs[0], dinputs[1], dout, rec->inputs[0]->data,
                        rec->inputs[1]->data, TG_PARAMS(rec, matmul_geom));
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_matmul_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    return matmul_forward_cuda(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                               TG_PARAMS(rec, matmul_geom));
}

static tg_status cuda_matmul_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    (void)ctx;
    return matmul_backward_cuda(dinputs[0], dinputs[1], dout, rec->inputs[0]->data,
                                rec->inputs[1]->data, TG_PARAMS(rec, matmul_geom));
}
#endif

static void matmul_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                        double *bwd_flops, double *bwd_bytes) {
    const matmul_geom *g = TG_PARAMS(rec, matmul_geom);
    double batch = (double)batch_of(g), M = (double)g->M, N = (double)g->N, K = (double)g->K;
    double as = (double)(g->A[0] * g->A[1]) * M * K, bs = (double)(g->B[0] * g->B[1]) * K * N;
    double cs = batch * M * N;
    *fwd_flops = 2 * batch * M * N * K;
    *fwd_bytes = 4 * (as + bs + cs);
    /* Two GEMMs of the forward's size; read dC twice, a and b once; read+write da, db. */
    *bwd_flops = 4 * batch * M * N * K;
    *bwd_bytes = 4 * (2 * cs + 3 * as + 3 * bs);
}

static void matmul_describe(const tg_record *rec, char *buf, size_t size) {
    const matmul_geom *g = TG_PARAMS(rec, matmul_geom);
    int64_t batch = batch_of(g);
    if (batch == 1)
        snprintf(buf, size, "%lldx%lldx%lld", (long long)g->M, (long long)g->K, (long long)g->N);
    else
        snprintf(buf, size, "%lld x %lldx%lldx%lld%s", (long long)batch, (long long)g->M,
                 (long long)g->K, (long long)g->N, can_fold(g) ? " folded" :
                 (a_full(g) && g->B[0] == g->D[0] && g->B[1] == g->D[1]) ? "" : " bcast");
}

static void matmul_explain(const tg_record *rec, char *buf, size_t size) {
    const matmul_geom *g = TG_PARAMS(rec, matmul_geom);
    bool a_b = !a_full(g), b_b = !(g->B[0] == g->D[0] && g->B[1] == g->D[1]);
    snprintf(buf, size, "matmul: da += dout b^T%s, db += a^T dout%s (SGEMMs, beta = 1)",
             a_b ? " summed over a's broadcast batch dims" : "",
             b_b ? " summed over b's broadcast batch dims" : "");
}

static const tg_op matmul_op = {
    .name = "matmul",
    .forward = {[TG_DEVICE_CPU] = matmul_forward, TG_CUDA_ENTRY(cuda_matmul_forward)},
    .backward = {[TG_DEVICE_CPU] = matmul_backward, TG_CUDA_ENTRY(cuda_matmul_backward)},
    .cost = matmul_cost,
    .describe = matmul_describe,
    .explain = matmul_explain,
};

tg_tensor *tg_matmul(tg_ctx *ctx, tg_tensor *a, tg_tensor *b) {
    char sa[80], sb[80];
    if (tg_check_not_null("tg_matmul", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_matmul", "a", a, -1) || !tg_check_tensor("tg_matmul", "b", b, -1))
        return NULL;
    tg_tensor *ab[2] = {a, b};
    const char *names[2] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        if (ab[i]->shape.ndim < 2) {
            tg_fail(TG_ERR_SHAPE, "tg_matmul: argument '%s' has shape %s (%d dims); expected 2 "
                    "to 4 dims (..., rows, cols); hint: make a vector a matrix with "
                    "tg_reshape(ctx, %s, tg_shape2(1, -1)) or tg_shape2(-1, 1)", names[i],
                    tg_shape_str(ab[i]->shape, sa, sizeof sa), ab[i]->shape.ndim, names[i]);
            return NULL;
        }
    }
    tg_shape as = a->shape, bs = b->shape;
    tg_shape_str(as, sa, sizeof sa);
    tg_shape_str(bs, sb, sizeof sb);
    matmul_geom g = {.M = as.dim[as.ndim - 2], .K = as.dim[as.ndim - 1],
                     .N = bs.dim[bs.ndim - 1]};
    if (bs.dim[bs.ndim - 2] != g.K) {
        tg_fail(TG_ERR_SHAPE, "tg_matmul: arguments 'a' %s and 'b' %s do not fit: a's last "
                "dim (K = %lld) must equal b's second-to-last dim (%lld); hint: to multiply "
                "by b's transpose, pass tg_transpose(ctx, b, -1, -2)", sa, sb, (long long)g.K,
                (long long)bs.dim[bs.ndim - 2]);
        return NULL;
    }
    /* Batch dims, right-aligned and padded to two with leading 1s. */
    for (int k = 0; k < 2; k++) {
        int ia = as.ndim - 4 + k, ib = bs.ndim - 4 + k;
        g.A[k] = ia >= 0 ? as.dim[ia] : 1;
        g.B[k] = ib >= 0 ? bs.dim[ib] : 1;
        if (g.A[k] != g.B[k] && g.A[k] != 1 && g.B[k] != 1) {
            tg_fail(TG_ERR_SHAPE, "tg_matmul: the batch dims of 'a' %s and 'b' %s do not "
                    "broadcast: %lld against %lld (%d dims before the matrix dims); each pair "
                    "must be equal or contain a 1", sa, sb, (long long)g.A[k],
                    (long long)g.B[k], 2 - k);
            return NULL;
        }
        g.D[k] = g.A[k] > g.B[k] ? g.A[k] : g.B[k];
    }
    if (g.M > INT_MAX || g.N > INT_MAX || g.K > INT_MAX) {
        tg_fail(TG_ERR_ARG, "tg_matmul: arguments 'a' %s and 'b' %s have a matrix dim above "
                "2^31 - 1, more than a BLAS call takes", sa, sb);
        return NULL;
    }
    int ndim = as.ndim > bs.ndim ? as.ndim : bs.ndim;
    tg_shape out = {.ndim = ndim};
    if (ndim == 4) out.dim[0] = g.D[0];
    if (ndim >= 3) out.dim[ndim - 3] = g.D[1];
    out.dim[ndim - 2] = g.M;
    out.dim[ndim - 1] = g.N;
    return tg_op_apply(ctx, &matmul_op, ab, 2, out, &g, sizeof g, NULL);
}
