/*
 * ops/elementwise.c — add, sub, mul, div with NumPy/PyTorch broadcasting (up to 4-D).
 *
 *   y = a op b      shape(y) = broadcast(shape(a), shape(b))   (ops/broadcast.h)
 *
 * Backward. Per output element the partial derivatives are
 *   y = a + b:   dy/da = 1        dy/db = 1
 *   y = a - b:   dy/da = 1        dy/db = -1
 *   y = a * b:   dy/da = b        dy/db = a
 *   y = a / b:   dy/da = 1/b      dy/db = -a/b^2 = -y/b      (y saves recomputing a/b)
 * so, over the output's elements, the chain rule gives the terms
 *   add: dy        sub: dy, -dy      mul: dy*b, dy*a      div: dy/b, -dy*y/b
 * (the other operand read through its broadcast strides). An input that was broadcast
 * fed several outputs from one element, so its gradient is each term SUMMED over the
 * dims it was broadcast along (tg_grad_reduce_to). An input of the output's shape
 * receives its term directly (+=), without a scratch buffer. When a and b are the same
 * tensor (x * x) both gradients land in one buffer: dy*x + dy*x = 2 x dy, as it should.
 *
 * Walk. tg_bcast_plan merges dims so the innermost is read with stride 1 or 0 by each
 * input; the output is cut into rows of that dim (long rows into chunks) and the rows
 * are shared among the threads. Each row is one vectorisable loop per stride pattern.
 * Same-shape add keeps its own plain loop (residual connections, the common case).
 */
#include "elementwise.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <stdio.h>

#define ROW_CHUNK 16384     /* elements of one task along a long innermost dim */
#define PARALLEL_MIN 65536  /* elements below which threads cost more than they save */

/* The element-wise loops and the broadcast walk run on tg_parallel_range (core/pool.c):
 * every element is computed on its own, so the bits do not depend on who runs a chunk. */
typedef struct flat_job {
    float *dst;
    const float *a, *b;
} flat_job;

static void add_range(void *arg, int64_t begin, int64_t end) {
    const flat_job *j = arg;
    float *restrict out = j->dst;
    const float *restrict a = j->a, *restrict b = j->b;
#pragma omp simd
    for (int64_t i = begin; i < end; i++) out[i] = a[i] + b[i];
}

static void accumulate_range(void *arg, int64_t begin, int64_t end) {
    const flat_job *j = arg;
    float *restrict dst = j->dst;
    const float *restrict src = j->a;
#pragma omp simd
    for (int64_t i = begin; i < end; i++) dst[i] += src[i];
}

void add_forward_cpu(float *out, const float *a, const float *b, int64_t n) {
    flat_job j = {.dst = out, .a = a, .b = b};
    tg_parallel_items(n, 1, PARALLEL_MIN, ROW_CHUNK, add_range, &j);
}

void accumulate_cpu(float *dst, const float *src, int64_t n) {
    flat_job j = {.dst = dst, .a = src};
    tg_parallel_items(n, 1, PARALLEL_MIN, ROW_CHUNK, accumulate_range, &j);
}

/* ---------------------------------------------------------------- the broadcast walk */

typedef struct walk_job {
    int kind;        /* binary_kind (forward) or binary_term (terms) */
    bool accumulate; /* terms: += instead of = */
    float *dst;      /* out-shaped */
    const float *a;  /* forward: a; terms: g (out-shaped) */
    const float *b;  /* forward: b; terms: the other operand */
    const float *y;  /* terms: the output (DIV_B) */
} walk_job;

/* One row: n elements from dst offset o; a and b from offsets oa, ob with strides
 * sa, sb in {0, 1}. */
typedef void (*row_fn)(const walk_job *j, int64_t o, int64_t oa, int64_t ob, int64_t sa,
                       int64_t sb, int64_t n);

typedef struct walk_task {
    tg_bcast p;
    const walk_job *j;
    row_fn fn;
    int64_t inner, per_row;
} walk_task;

/* Tasks [t0, t1): task t is ROW_CHUNK elements (or a row's rest) of row t / per_row. */
static void walk_range(void *arg, int64_t t0, int64_t t1) {
    const walk_task *w = arg;
    const tg_bcast *p = &w->p;
    int last = p->ndim - 1;
    for (int64_t t = t0; t < t1; t++) {
        int64_t row = t / w->per_row, lo = (t % w->per_row) * ROW_CHUNK;
        int64_t n = w->inner - lo < ROW_CHUNK ? w->inner - lo : ROW_CHUNK;
        int64_t oa = 0, ob = 0, r = row;
        for (int d = last - 1; d >= 0; d--) {
            int64_t idx = r % p->dim[d];
            r /= p->dim[d];
            oa += idx * p->stride_a[d];
            ob += idx * p->stride_b[d];
        }
        int64_t sa = p->stride_a[last], sb = p->stride_b[last];
        w->fn(w->j, row * w->inner + lo, oa + lo * sa, ob + lo * sb, sa, sb, n);
    }
}

static void walk(const tg_bcast *plan, const walk_job *j, row_fn fn) {
    walk_task w = {.p = *plan, .j = j, .fn = fn};
    if (w.p.ndim == 0)
        w.p = (tg_bcast){.ndim = 1, .dim = {1}, .stride_a = {1}, .stride_b = {1}};
    w.inner = w.p.dim[w.p.ndim - 1];
    int64_t numel = tg_bcast_numel(&w.p);
    if (numel == 0) return; /* an empty dim */
    int64_t rows = numel / w.inner;
    w.per_row = (w.inner + ROW_CHUNK - 1) / ROW_CHUNK;
    int64_t tasks = rows * w.per_row;
    /* a task is ROW_CHUNK elements or a whole shorter row */
    tg_parallel_items(tasks, (double)numel / (double)tasks, PARALLEL_MIN, ROW_CHUNK, walk_range,
                      &w);
}

/* One loop per stride pattern (u from a, v from b); both 0 only for a single element. */
#define BINARY_ROW(EXPR)                                                                    \
    do {                                                                                    \
        if (sa && sb) {                                                                     \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                           \
                float u = a[i], v = b[i];                                                   \
                out[i] = (EXPR);                                                            \
            }                                                                               \
        } else if (sa) {                                                                    \
            float v = b[0];                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                           \
                float u = a[i];                                                             \
                out[i] = (EXPR);                                                            \
            }                                                                               \
        } else if (sb) {                                                                    \
            float u = a[0];                                                                 \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                           \
                float v = b[i];                                                             \
                out[i] = (EXPR);                                                            \
            }                                                                               \
        } else {                                                                            \
            float u = a[0], v = b[0];                                                       \
            for (int64_t i = 0; i < n; i++) out[i] = (EXPR);                                \
        }                                                                                   \
    } while (0)

static void forward_row(const walk_job *j, int64_t o, int64_t oa, int64_t ob, int64_t sa,
                        int64_t sb, int64_t n) {
    float *restrict out = j->dst + o;
    const float *restrict a = j->a + oa, *restrict b = j->b + ob;
    switch ((binary_kind)j->kind) {
    case BINARY_ADD: BINARY_ROW(u + v); break;
    case BINARY_SUB: BINARY_ROW(u - v); break;
    case BINARY_MUL: BINARY_ROW(u * v); break;
    case BINARY_DIV: BINARY_ROW(u / v); break;
    }
}

void binary_forward_cpu(float *out, const float *a, const float *b, const tg_bcast *p,
                        binary_kind kind) {
    walk_job j = {.kind = kind, .dst = out, .a = a, .b = b};
    walk(p, &j, forward_row);
}

/* Gradient terms: g and y out-shaped (stride sa, 1 except for a single element), o the
 * other operand (stride sb). */
#define TERM_ROW(OI, EXPR)                                                                  \
    do {                                                                                    \
        if (j->accumulate) {                                                                \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                           \
                float gi = g[i], oi = (OI);                                                 \
                dst[i] += (EXPR);                                                           \
            }                                                                               \
        } else {                                                                            \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                           \
                float gi = g[i], oi = (OI);                                                 \
                dst[i] = (EXPR);                                                            \
            }                                                                               \
        }                                                                                   \
    } while (0)

static void term_row(const walk_job *j, int64_t off, int64_t oa, int64_t ob, int64_t sa,
                     int64_t sb, int64_t n) {
    (void)oa; /* g and y are out-shaped: their offset is the output's */
    (void)sa;
    float *restrict dst = j->dst + off;
    const float *restrict g = j->a + off, *restrict o = j->b + ob;
    const float o0 = o[0];
    switch ((binary_term)j->kind) {
    case BINARY_TERM_MUL:
        if (sb) TERM_ROW(o[i], gi * oi); else TERM_ROW(o0, gi * oi);
        break;
    case BINARY_TERM_DIV_A:
        if (sb) TERM_ROW(o[i], gi / oi); else TERM_ROW(o0, gi / oi);
        break;
    case BINARY_TERM_DIV_B: {
        const float *restrict y = j->y + off;
        if (sb) TERM_ROW(o[i], -gi * y[i] / oi); else TERM_ROW(o0, -gi * y[i] / oi);
        break;
    }
    }
}

void binary_term_cpu(float *dst, bool accumulate, const float *g, const float *y,
                     const float *o, const tg_bcast *p, binary_term term) {
    walk_job j = {.kind = term, .accumulate = accumulate, .dst = dst, .a = g, .b = o, .y = y};
    walk(p, &j, term_row);
}

/* ---------------------------------------------------------------- the ops */

typedef struct binary_params {
    binary_kind kind;
} binary_params;

static tg_status binary_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const tg_tensor *a = rec->inputs[0], *b = rec->inputs[1];
    binary_kind kind = TG_PARAMS(rec, binary_params)->kind;
    if (kind == BINARY_ADD && tg_shape_equal(a->shape, b->shape)) {
        add_forward_cpu(rec->out->data, a->data, b->data, rec->out->numel);
        return TG_OK;
    }
    tg_bcast p = tg_bcast_plan(rec->out->shape, a->shape, b->shape);
    binary_forward_cpu(rec->out->data, a->data, b->data, &p, kind);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_binary_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const tg_tensor *a = rec->inputs[0], *b = rec->inputs[1];
    binary_kind kind = TG_PARAMS(rec, binary_params)->kind;
    if (kind == BINARY_ADD && tg_shape_equal(a->shape, b->shape))
        return add_forward_cuda(rec->out->data, a->data, b->data, rec->out->numel);
    tg_bcast p = tg_bcast_plan(rec->out->shape, a->shape, b->shape);
    return binary_forward_cuda(rec->out->data, a->data, b->data, &p, kind);
}
#endif

/* dst = or += term over the output's elements, on ctx's device. */
static tg_status term_dev(tg_ctx *ctx, float *dst, bool accumulate, const float *g,
                          const float *y, const tg_tensor *other, tg_shape out,
                          binary_term term) {
    tg_bcast p = tg_bcast_plan(out, out, other->shape);
#ifdef TG_HAVE_CUDA
    if (tg_ctx_device(ctx) == TG_DEVICE_CUDA)
        return binary_term_cuda(dst, accumulate, g, y, other->data, &p, term);
#endif
    (void)ctx;
    binary_term_cpu(dst, accumulate, g, y, other->data, &p, term);
    return TG_OK;
}

/* Runs on either device: the kernels it calls dispatch on ctx's device. */
static tg_status binary_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    binary_kind kind = TG_PARAMS(rec, binary_params)->kind;
    tg_shape out = rec->out->shape;
    for (int i = 0; i < 2; i++) {
        if (!dinputs[i]) continue;
        tg_shape in = rec->inputs[i]->shape;
        tg_status st;
        if (kind == BINARY_ADD || kind == BINARY_SUB) {
            float sign = kind == BINARY_SUB && i == 1 ? -1.0f : 1.0f;
            st = tg_grad_reduce_to(ctx, dinputs[i], in, dout, out, sign);
        } else {
            const tg_tensor *other = kind == BINARY_MUL ? rec->inputs[1 - i] : rec->inputs[1];
            binary_term term = kind == BINARY_MUL ? BINARY_TERM_MUL
                               : i == 0           ? BINARY_TERM_DIV_A
                                                  : BINARY_TERM_DIV_B;
            if (tg_shape_numel(in) == rec->out->numel) { /* not broadcast: add in place */
                st = term_dev(ctx, dinputs[i], true, dout, rec->out->data, other, out, term);
            } else {
                float *t = tg_ctx_scratch(ctx, (size_t)rec->out->numel * sizeof(float));
                if (!t) return tg_error();
                st = term_dev(ctx, t, false, dout, rec->out->data, other, out, term);
                if (st == TG_OK) st = tg_grad_reduce_to(ctx, dinputs[i], in, t, out, 1.0f);
            }
        }
        if (st != TG_OK) return st;
    }
    return TG_OK;
}

static void binary_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                        double *bwd_flops, double *bwd_bytes) {
    binary_kind kind = TG_PARAMS(rec, binary_params)->kind;
    double n = (double)rec->out->numel;
    double na = (double)rec->inputs[0]->numel, nb = (double)rec->inputs[1]->numel;
    *fwd_flops = n;
    *fwd_bytes = 4 * (na + nb + n); /* read a, b; write y */
    /* per input: read dy (and the other operand, y for div's b), read+write its grad;
     * a broadcast input also writes and re-reads an out-sized term (mul, div). */
    double per = kind == BINARY_ADD || kind == BINARY_SUB ? 1 : kind == BINARY_MUL ? 2 : 3;
    *bwd_flops = 2 * per * n;
    *bwd_bytes = 0;
    for (int i = 0; i < 2; i++) {
        double ni = i == 0 ? na : nb;
        *bwd_bytes += 4 * (per * n + 2 * ni);
        if (per > 1 && ni < n) *bwd_bytes += 8 * n;
    }
}

static const char *const binary_formula[] = {
    [BINARY_ADD] = "da += dy, db += dy",
    [BINARY_SUB] = "da += dy, db -= dy",
    [BINARY_MUL] = "da += dy * b, db += dy * a",
    [BINARY_DIV] = "da += dy / b, db -= dy * y / b",
};

static void binary_explain(const tg_record *rec, char *buf, size_t size) {
    binary_kind kind = TG_PARAMS(rec, binary_params)->kind;
    int len = snprintf(buf, size, "%s", binary_formula[kind]);
    static const char *const names[2] = {"a", "b"};
    char si[80], so[80];
    for (int i = 0; i < 2 && len >= 0 && (size_t)len < size; i++) {
        const tg_tensor *t = rec->inputs[i];
        if (t->numel == rec->out->numel) continue;
        len += snprintf(buf + len, size - (size_t)len,
                        "; %s %s was broadcast to %s, so d%s is summed over %lld outputs "
                        "per element",
                        names[i], tg_shape_str(t->shape, si, sizeof si),
                        tg_shape_str(rec->out->shape, so, sizeof so), names[i],
                        (long long)(rec->out->numel / t->numel));
    }
}

/* The variant column: which operand was broadcast. */
static void binary_describe(const tg_record *rec, char *buf, size_t size) {
    bool ba = rec->inputs[0]->numel != rec->out->numel;
    bool bb = rec->inputs[1]->numel != rec->out->numel;
    snprintf(buf, size, "%s", ba && bb ? "broadcast a, b" : ba ? "broadcast a"
                              : bb     ? "broadcast b"
                                       : "same shapes");
}

#define BINARY_OP(label)                                                                    \
    {                                                                                       \
        .name = label,                                                                      \
        .forward = {[TG_DEVICE_CPU] = binary_forward, TG_CUDA_ENTRY(cuda_binary_forward)},  \
        .backward = {[TG_DEVICE_CPU] = binary_backward, TG_CUDA_ENTRY(binary_backward)},    \
        .cost = binary_cost, .describe = binary_describe, .explain = binary_explain, \
    }

static const tg_op binary_ops[] = {
    [BINARY_ADD] = BINARY_OP("add"),
    [BINARY_SUB] = BINARY_OP("sub"),
    [BINARY_MUL] = BINARY_OP("mul"),
    [BINARY_DIV] = BINARY_OP("div"),
};

static tg_tensor *binary_apply(const char *name, tg_ctx *ctx, tg_tensor *a, tg_tensor *b,
                               binary_kind kind) {
    if (!tg_check_tensor(name, "a", a, -1) || !tg_check_tensor(name, "b", b, -1)) return NULL;
    tg_shape out;
    if (!tg_broadcast_shape(name, "a", a->shape, "b", b->shape, &out)) return NULL;
    binary_params p = {.kind = kind};
    tg_tensor *inputs[2] = {a, b};
    return tg_op_apply(ctx, &binary_ops[kind], inputs, 2, out, &p, sizeof p, NULL);
}

tg_tensor *tg_add(tg_ctx *ctx, tg_tensor *a, tg_tensor *b) {
    return binary_apply("tg_add", ctx, a, b, BINARY_ADD);
}

tg_tensor *tg_sub(tg_ctx *ctx, tg_tensor *a, tg_tensor *b) {
    return binary_apply("tg_sub", ctx, a, b, BINARY_SUB);
}

tg_tensor *tg_mul(tg_ctx *ctx, tg_tensor *a, tg_tensor *b) {
    return binary_apply("tg_mul", ctx, a, b, BINARY_MUL);
}

tg_tensor *tg_div(tg_ctx *ctx, tg_tensor *a, tg_tensor *b) {
    return binary_apply("tg_div", ctx, a, b, BINARY_DIV);
}
