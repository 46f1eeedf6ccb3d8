/*
 * ops/layout.c — transpose, permute, concat and slice. Each materialises a contiguous
 * copy (DESIGN §11): simple, and its cost is visible in the profile.
 *
 *   permute:   out[i_0, .., i_{d-1}] = x[j],  j_{perm[k]} = i_k   (out.dim[k] = x.dim[perm[k]])
 *   transpose: permute with dims dim0 and dim1 swapped
 *   concat:    out along `dim` = x_0, then x_1, ... (other dims equal)
 *   slice:     out = x[.., start:end, ..] along `dim`
 *
 * Backward. Each op only moves elements: every output element is exactly one input
 * element (y = x[f(i)]), so dL/dx[f(i)] = dL/dy[i] and the backward moves the gradient
 * back along the same map, adding:
 *   permute:  dx += permute(dy, inverse perm)      (inv[perm[k]] = k)
 *   concat:   dx_i += the block of dy that x_i filled
 *   slice:    dx[.., start:end, ..] += dy; the rest of dx gets nothing (its gradient is 0)
 * No op saves anything: the geometry lives in the inline params.
 *
 * Kernels. permute: rows of the output are copied whole when the output's last dim is
 * the input's last dim; otherwise in 32x32 tiles so that both the reads and the writes
 * of a tile stay in cache (a transpose of the last two dims, attention's K^T). concat
 * and slice are one strided row copy (copy_rows_cpu): `rows` = the product of the dims
 * before `dim`, each row a contiguous run.
 */
#include "layout.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <stdio.h>
#include <string.h>

#define TILE 32
#define PAR_MIN 32768 /* elements below which loops stay serial */
#define ROW_BLOCK 16384

/* ---------------------------------------------------------------- kernels */

permute_geom permute_inverse(const permute_geom *g) {
    permute_geom inv;
    for (int k = 0; k < 4; k++) {
        inv.in_shape[k] = g->in_shape[g->perm[k]];
        inv.perm[g->perm[k]] = k;
    }
    return inv;
}

/* The loops below run on tg_parallel_items (core/pool.c): each row, tile or block is
 * copied (or added) the same whoever runs it. */
typedef struct layout_job {
    float *out;
    const float *x;
    int64_t od[4], st[4], row_tiles;     /* permute */
    int64_t dst_stride, src_stride, len, nblk; /* copy_rows */
    bool accumulate;
} layout_job;

/* Output rows [r0, r1) when the last dim stays last: whole rows of od[3] floats. */
static void permute_rows(void *arg, int64_t r0, int64_t r1) {
    const layout_job *j = arg;
    const int64_t *od = j->od, *st = j->st;
    for (int64_t r = r0; r < r1; r++) {
        int64_t i2 = r % od[2], i1 = (r / od[2]) % od[1], i0 = r / (od[2] * od[1]);
        const float *src = j->x + i0 * st[0] + i1 * st[1] + i2 * st[2];
        float *dst = j->out + r * od[3];
        if (j->accumulate) {
#pragma omp simd
            for (int64_t i3 = 0; i3 < od[3]; i3++) dst[i3] += src[i3];
        } else {
            memcpy(dst, src, (size_t)od[3] * sizeof *dst);
        }
    }
}

/* Tasks [t0, t1): TILE rows (dim 2) by every TILE columns (dim 3) of one output plane. */
static void permute_tiles(void *arg, int64_t t0, int64_t t1) {
    const layout_job *j = arg;
    const int64_t *od = j->od, *st = j->st;
    for (int64_t t = t0; t < t1; t++) {
        int64_t rt = t % j->row_tiles, plane = t / j->row_tiles;
        int64_t i1 = plane % od[1], i0 = plane / od[1];
        const float *src = j->x + i0 * st[0] + i1 * st[1];
        float *dst = j->out + plane * od[2] * od[3];
        int64_t r0 = rt * TILE, r1 = r0 + TILE < od[2] ? r0 + TILE : od[2];
        for (int64_t c0 = 0; c0 < od[3]; c0 += TILE) {
            int64_t c1 = c0 + TILE < od[3] ? c0 + TILE : od[3];
            for (int64_t i2 = r0; i2 < r1; i2++) {
                float *d = dst + i2 * od[3];
                const float *s = src + i2 * st[2];
                if (j->accumulate)
                    for (int64_t i3 = c0; i3 < c1; i3++) d[i3] += s[i3 * st[3]];
                else
                    for (int64_t i3 = c0; i3 < c1; i3++) d[i3] = s[i3 * st[3]];
            }
        }
    }
}

void permute_cpu(float *out, const float *x, const permute_geom *g, bool accumulate) {
    layout_job j = {.out = out, .x = x, .accumulate = accumulate};
    int64_t in_stride[4];
    in_stride[3] = 1;
    for (int k = 2; k >= 0; k--) in_stride[k] = in_stride[k + 1] * g->in_shape[k + 1];
    for (int k = 0; k < 4; k++) {
        j.od[k] = g->in_shape[g->perm[k]];
        j.st[k] = in_stride[g->perm[k]]; /* input stride of output dim k */
    }
    const int64_t *od = j.od;
    if (j.st[3] == 1) {
        tg_parallel_items(od[0] * od[1] * od[2], (double)od[3], PAR_MIN, ROW_BLOCK,
                          permute_rows, &j);
        return;
    }
    j.row_tiles = (od[2] + TILE - 1) / TILE;
    int64_t tiles = od[0] * od[1] * j.row_tiles; /* the last row tile may be short */
    tg_parallel_items(tiles, (double)od[0] * od[1] * od[2] * od[3] / (double)tiles, PAR_MIN,
                      ROW_BLOCK, permute_tiles, &j);
}

/* Tasks [t0, t1) of (row, block of ROW_BLOCK floats), so one long row also spreads out. */
static void copy_row_blocks(void *arg, int64_t t0, int64_t t1) {
    const layout_job *j = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t r = t / j->nblk, k0 = (t % j->nblk) * ROW_BLOCK;
        int64_t n = k0 + ROW_BLOCK < j->len ? ROW_BLOCK : j->len - k0;
        float *d = j->out + r * j->dst_stride + k0;
        const float *s = j->x + r * j->src_stride + k0;
        if (j->accumulate) {
#pragma omp simd
            for (int64_t k = 0; k < n; k++) d[k] += s[k];
        } else {
            memcpy(d, s, (size_t)n * sizeof *d);
        }
    }
}

void copy_rows_cpu(float *dst, int64_t dst_stride, const float *src, int64_t src_stride,
                   int64_t rows, int64_t len, bool accumulate) {
    layout_job j = {.out = dst, .x = src, .dst_stride = dst_stride, .src_stride = src_stride,
                    .len = len, .nblk = (len + ROW_BLOCK - 1) / ROW_BLOCK,
                    .accumulate = accumulate};
    tg_parallel_items(rows * j.nblk, (double)len / (double)j.nblk, PAR_MIN, ROW_BLOCK,
                      copy_row_blocks, &j);
}

/* ---------------------------------------------------------------- permute / transpose */

static tg_status permute_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    permute_cpu(rec->out->data, rec->inputs[0]->data, TG_PARAMS(rec, permute_geom), false);
    return TG_OK;
}

static tg_status permute_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                  const float *dout) {
    (void)ctx;
    if (!dinputs[0]) return TG_OK;
    permute_geom inv = permute_inverse(TG_PARAMS(rec, permute_geom));
    permute_cpu(dinputs[0], dout, &inv, true);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_permute_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    return permute_cuda(rec->out->data, rec->inputs[0]->data, TG_PARAMS(rec, permute_geom),
                        false);
}

static tg_status cuda_permute_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                       const float *dout) {
    (void)ctx;
    if (!dinputs[0]) return TG_OK;
    permute_geom inv = permute_inverse(TG_PARAMS(rec, permute_geom));
    return permute_cuda(dinputs[0], dout, &inv, true);
}
#endif

/* A copy: read + write forward; read dy, read + write dx backward. */
static void move_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                      double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel;
    *fwd_flops = 0;
    *fwd_bytes = 8 * n;
    *bwd_flops = n;
    *bwd_bytes = 12 * n;
}

static void permute_describe(const tg_record *rec, char *buf, size_t size) {
    const permute_geom *g = TG_PARAMS(rec, permute_geom);
    int nd = rec->inputs[0]->shape.ndim, off = 4 - nd, pos = 0;
    pos += snprintf(buf, size, "dims (");
    for (int k = 0; k < nd && pos < (int)size; k++)
        pos += snprintf(buf + pos, size - (size_t)pos, k ? ", %d" : "%d", g->perm[off + k] - off);
    if (pos < (int)size) snprintf(buf + pos, size - (size_t)pos, ")");
}

static const tg_op permute_op = {
    .name = "permute",
    .forward = {[TG_DEVICE_CPU] = permute_forward, TG_CUDA_ENTRY(cuda_permute_forward)},
    .backward = {[TG_DEVICE_CPU] = permute_backward, TG_CUDA_ENTRY(cuda_permute_backward)},
    .cost = move_cost,
    .describe = permute_describe,
    .backward_doc = "permute: dx += dy permuted back by the inverse permutation",
};

static const tg_op transpose_op = {
    .name = "transpose",
    .forward = {[TG_DEVICE_CPU] = permute_forward, TG_CUDA_ENTRY(cuda_permute_forward)},
    .backward = {[TG_DEVICE_CPU] = permute_backward, TG_CUDA_ENTRY(cuda_permute_backward)},
    .cost = move_cost,
    .describe = permute_describe,
    .backward_doc = "transpose: dx += dy with the same two dims swapped back",
};

/* dim in -ndim .. ndim-1 -> 0 .. ndim-1, or -1 after a message. */
static int norm_dim(const char *fn, const char *arg, int dim, const tg_tensor *x) {
    int nd = x->shape.ndim;
    if (dim < -nd || dim >= nd) {
        char sx[80];
        tg_fail(TG_ERR_ARG, "%s: argument '%s' = %d is out of range for 'x' %s (%d dims); "
                "expected %d .. %d (negative dims count from the end: -1 is the last)", fn,
                arg, dim, tg_shape_str(x->shape, sx, sizeof sx), nd, -nd, nd - 1);
        return -1;
    }
    return dim < 0 ? dim + nd : dim;
}

static tg_tensor *permute_apply(tg_ctx *ctx, const tg_op *op, tg_tensor *x, const int *perm) {
    int nd = x->shape.ndim, off = 4 - nd;
    permute_geom g;
    tg_shape out = {.ndim = nd};
    for (int k = 0; k < 4; k++) {
        g.in_shape[k] = k < off ? 1 : x->shape.dim[k - off];
        g.perm[k] = k < off ? k : perm[k - off] + off;
    }
    for (int k = 0; k < nd; k++) out.dim[k] = x->shape.dim[perm[k]];
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, op, inputs, 1, out, &g, sizeof g, NULL);
}

tg_tensor *tg_permute(tg_ctx *ctx, tg_tensor *x, const int *dims) {
    if (tg_check_not_null("tg_permute", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_permute", "x", x, -1)) return NULL;
    if (tg_check_not_null("tg_permute", "dims", dims)) return NULL;
    int nd = x->shape.ndim, perm[TG_MAX_DIMS];
    bool seen[TG_MAX_DIMS] = {false};
    for (int k = 0; k < nd; k++) {
        int d = norm_dim("tg_permute", "dims", dims[k], x);
        if (d < 0) return NULL;
        if (seen[d]) {
            char sx[80];
            tg_fail(TG_ERR_ARG, "tg_permute: argument 'dims' names dim %d twice (entry %d = "
                    "%d) for 'x' %s; hint: dims must list each of the %d dims exactly once",
                    d, k, dims[k], tg_shape_str(x->shape, sx, sizeof sx), nd);
            return NULL;
        }
        seen[d] = true;
        perm[k] = d;
    }
    return permute_apply(ctx, &permute_op, x, perm);
}

tg_tensor *tg_transpose(tg_ctx *ctx, tg_tensor *x, int dim0, int dim1) {
    if (tg_check_not_null("tg_transpose", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_transpose", "x", x, -1)) return NULL;
    int d0 = norm_dim("tg_transpose", "dim0", dim0, x);
    if (d0 < 0) return NULL;
    int d1 = norm_dim("tg_transpose", "dim1", dim1, x);
    if (d1 < 0) return NULL;
    int perm[TG_MAX_DIMS];
    for (int k = 0; k < x->shape.ndim; k++) perm[k] = k;
    perm[d0] = d1;
    perm[d1] = d0;
    return permute_apply(ctx, &transpose_op, x, perm);
}

/* ---------------------------------------------------------------- concat */

typedef struct concat_params {
    int n;
    int64_t outer;              /* product of the dims before dim */
    int64_t row;                /* floats per output row: the sum of len[] */
    int64_t len[TG_MAX_INPUTS]; /* floats per row of input i: its dim size * inner */
    int64_t off[TG_MAX_INPUTS]; /* where input i starts within an output row */
} concat_params;

static tg_status concat_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const concat_params *p = TG_PARAMS(rec, concat_params);
    for (int i = 0; i < p->n; i++)
        copy_rows_cpu(rec->out->data + p->off[i], p->row, rec->inputs[i]->data, p->len[i],
                      p->outer, p->len[i], false);
    return TG_OK;
}

static tg_status concat_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    (void)ctx;
    const concat_params *p = TG_PARAMS(rec, concat_params);
    for (int i = 0; i < p->n; i++) /* one input after the other: x may appear twice */
        if (dinputs[i])
            copy_rows_cpu(dinputs[i], p->len[i], dout + p->off[i], p->row, p->outer, p->len[i],
                          true);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_concat_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const concat_params *p = TG_PARAMS(rec, concat_params);
    for (int i = 0; i < p->n; i++) {
        tg_status st = copy_rows_cuda(rec->out->data + p->off[i], p->row, rec->inputs[i]->data,
                                      p->len[i], p->outer, p->len[i], false);
        if (st != TG_OK) return st;
    }
    return TG_OK;
}

static tg_status cuda_concat_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    (void)ctx;
    const concat_params *p = TG_PARAMS(rec, concat_params);
    for (int i = 0; i < p->n; i++) {
        if (!dinputs[i]) continue;
        tg_status st = copy_rows_cuda(dinputs[i], p->len[i], dout + p->off[i], p->row, p->outer,
                                      p->len[i], true);
        if (st != TG_OK) return st;
    }
    return TG_OK;
}
#endif

static const tg_op concat_op = {
    .name = "concat",
    .forward = {[TG_DEVICE_CPU] = concat_forward, TG_CUDA_ENTRY(cuda_concat_forward)},
    .backward = {[TG_DEVICE_CPU] = concat_backward, TG_CUDA_ENTRY(cuda_concat_backward)},
    .cost = move_cost,
    .backward_doc = "concat: each dx_i += the block of dy that x_i filled",
};

tg_tensor *tg_concat(tg_ctx *ctx, tg_tensor *const *xs, int n, int dim) {
    char s0[80], si[80];
    if (tg_check_not_null("tg_concat", "ctx", ctx)) return NULL;
    if (tg_check_not_null("tg_concat", "xs", xs)) return NULL;
    if (n < 1 || n > TG_MAX_INPUTS) {
        tg_fail(TG_ERR_ARG, "tg_concat: argument 'n' = %d; expected 1 to %d tensors "
                "(TG_MAX_INPUTS); hint: concatenate in stages for more", n, TG_MAX_INPUTS);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        char arg[16];
        snprintf(arg, sizeof arg, "xs[%d]", i);
        if (!tg_check_tensor("tg_concat", arg, xs[i], -1)) return NULL;
    }
    const tg_tensor *x0 = xs[0];
    int nd = x0->shape.ndim;
    if (nd == 0) {
        tg_fail(TG_ERR_SHAPE, "tg_concat: argument 'xs[0]' is a scalar; concat needs at least "
                "one dim (hint: tg_reshape(ctx, x, tg_shape1(1)))");
        return NULL;
    }
    int d = norm_dim("tg_concat", "dim", dim, x0);
    if (d < 0) return NULL;
    concat_params p = {.n = n, .outer = 1};
    for (int k = 0; k < d; k++) p.outer *= x0->shape.dim[k];
    int64_t inner = 1;
    for (int k = d + 1; k < nd; k++) inner *= x0->shape.dim[k];
    tg_shape out = x0->shape;
    out.dim[d] = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *x = xs[i];
        bool fits = x->shape.ndim == nd;
        for (int k = 0; fits && k < nd; k++) fits = k == d || x->shape.dim[k] == x0->shape.dim[k];
        if (!fits) {
            tg_fail(TG_ERR_SHAPE, "tg_concat: argument 'xs[%d]' has shape %s but 'xs[0]' has "
                    "%s; along dim %d they may differ, every other dim (and the rank) must "
                    "match", i, tg_shape_str(x->shape, si, sizeof si),
                    tg_shape_str(x0->shape, s0, sizeof s0), d);
            return NULL;
        }
        p.len[i] = x->shape.dim[d] * inner;
        p.off[i] = p.row;
        p.row += p.len[i];
        out.dim[d] += x->shape.dim[d];
    }
    return tg_op_apply(ctx, &concat_op, xs, n, out, &p, sizeof p, NULL);
}

/* ---------------------------------------------------------------- slice */

typedef struct slice_params {
    int64_t outer, row, start, len; /* x rows of `row` floats; out takes [start, start+len) */
} slice_params;

static tg_status slice_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const slice_params *p = TG_PARAMS(rec, slice_params);
    copy_rows_cpu(rec->out->data, p->len, rec->inputs[0]->data + p->start, p->row, p->outer,
                  p->len, false);
    return TG_OK;
}

static tg_status slice_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                const float *dout) {
    (void)ctx;
    const slice_params *p = TG_PARAMS(rec, slice_params);
    if (dinputs[0])
        copy_rows_cpu(dinputs[0] + p->start, p->row, dout, p->len, p->outer, p->len, true);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_slice_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const slice_params *p = TG_PARAMS(rec, slice_params);
    return copy_rows_cuda(rec->out->data, p->len, rec->inputs[0]->data + p->start, p->row,
                          p->outer, p->len, false);
}

static tg_status cuda_slice_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                     const float *dout) {
    (void)ctx;
    const slice_params *p = TG_PARAMS(rec, slice_params);
    if (!dinputs[0]) return TG_OK;
    return copy_rows_cuda(dinputs[0] + p->start, p->row, dout, p->len, p->outer, p->len, true);
}
#endif

static const tg_op slice_op = {
    .name = "slice",
    .forward = {[TG_DEVICE_CPU] = slice_forward, TG_CUDA_ENTRY(cuda_slice_forward)},
    .backward = {[TG_DEVICE_CPU] = slice_backward, TG_CUDA_ENTRY(cuda_slice_backward)},
    .cost = move_cost,
    .backward_doc = "slice: dx[.., start:end, ..] += dy (0 elsewhere)",
};

tg_tensor *tg_slice(tg_ctx *ctx, tg_tensor *x, int dim, int64_t start, int64_t end) {
    if (tg_check_not_null("tg_slice", "ctx", ctx)) return NULL;
    if (!tg_check_tensor("tg_slice", "x", x, -1)) return NULL;
    char sx[80];
    if (x->shape.ndim == 0) {
        tg_fail(TG_ERR_SHAPE, "tg_slice: argument 'x' is a scalar; there is no dim to slice");
        return NULL;
    }
    int d = norm_dim("tg_slice", "dim", dim, x);
    if (d < 0) return NULL;
    int64_t size = x->shape.dim[d];
    /* Python slicing: negative positions count from the end, then clamp to [0, size]. */
    int64_t s = start < 0 ? start + size : start, e = end < 0 ? end + size : end;
    s = s < 0 ? 0 : s > size ? size : s;
    e = e < 0 ? 0 : e > size ? size : e;
    if (e <= s) {
        tg_fail(TG_ERR_ARG, "tg_slice: [start, end) = [%lld, %lld) of dim %d (size %lld) of "
                "'x' %s is empty; tensors cannot have a 0-sized dim (hint: negative positions "
                "count from the end, and end is exclusive)", (long long)start, (long long)end,
                d, (long long)size, tg_shape_str(x->shape, sx, sizeof sx));
        return NULL;
    }
    slice_params p = {.outer = 1};
    int64_t inner = 1;
    for (int k = 0; k < d; k++) p.outer *= x->shape.dim[k];
    for (int k = d + 1; k < x->shape.ndim; k++) inner *= x->shape.dim[k];
    p.row = size * inner;
    p.start = s * inner;
    p.len = (e - s) * inner;
    tg_shape out = x->shape;
    out.dim[d] = e - s;
    tg_tensor *inputs[1] = {x};
    return tg_op_apply(ctx, &slice_op, inputs, 1, out, &p, sizeof p, NULL);
}
