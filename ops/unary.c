/*
 * ops/unary.c — element-wise functions of one tensor: scalar add and scale, neg, exp,
 * log, sqrt, pow by a constant, tanh, sigmoid, GELU (erf form and tanh approximation),
 * SiLU, leaky ReLU, clamp. Any shape; y has x's shape.
 *
 * Every backward is  dx += dy * f'(x)  element by element; the derivatives, written in
 * terms of whatever is cheapest to read (the input x or the saved output y):
 *   y = x + c           f' = 1
 *   y = c x             f' = c
 *   y = -x              f' = -1
 *   y = e^x             f' = e^x = y
 *   y = ln x            f' = 1/x
 *   y = sqrt x          f' = 1/(2 sqrt x) = 1/(2y)
 *   y = x^p             f' = p x^(p-1)     (0 when p = 0, as PyTorch: d x^0 = 0 even at 0)
 *   y = tanh x          f' = 1 - tanh^2 x = 1 - y^2
 *   y = s(x) = 1/(1+e^-x)
 *                       f' = e^-x/(1+e^-x)^2 = s (1 - s) = y (1 - y)
 *   y = x Phi(x)        (GELU, Phi the normal CDF = (1 + erf(x/sqrt2))/2)
 *                       f' = Phi(x) + x phi(x),  phi(x) = e^(-x^2/2)/sqrt(2 pi)
 *   y = x/2 (1 + tanh u),  u = b (x + k x^3),  b = sqrt(2/pi), k = 0.044715  (tanh GELU)
 *                       f' = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) b (1 + 3 k x^2)
 *   y = x s(x)          (SiLU)  f' = s + x s (1 - s) = s (1 + x (1 - s))
 *   y = x > 0 ? x : a x f' = 1 where x > 0, a elsewhere (at exactly 0: a, as PyTorch)
 *   y = clamp(x, lo, hi)
 *                       f' = 1 where lo <= x <= hi (inclusive, as PyTorch), 0 outside
 * The math is in ops/unary.h, shared with cuda/unary.cu. Kernels switch on the kind
 * outside the loop, so each loop is one inlined expression, vectorised: exp, tanh and
 * the normal CDF (hence sigmoid, SiLU and both GELUs) are our own branch-free versions
 * (within 1, 2 and about 8 ulp). Left scalar: log and pow (logf, powf), libm calls.
 */
#include "unary.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <stdio.h>

#define PARALLEL_MIN 32768 /* elements below which threads cost more than they save */

/* One loop per kind, with the kind a constant inside: the switch in the inline math
 * folds away. */
#define UNARY_EACH_KIND(X)                                                                  \
    X(UNARY_ADD_SCALAR) X(UNARY_SCALE) X(UNARY_NEG) X(UNARY_EXP) X(UNARY_LOG) X(UNARY_SQRT) \
    X(UNARY_POW) X(UNARY_TANH) X(UNARY_SIGMOID) X(UNARY_GELU) X(UNARY_GELU_TANH)           \
    X(UNARY_SILU) X(UNARY_LEAKY_RELU) X(UNARY_CLAMP)

/* Each element on its own: chunks run on tg_parallel_range (core/pool.c), the same bits
 * at any thread count. */
#define UNARY_GRAIN 16384

typedef struct unary_job {
    float *dst;
    const float *x, *dout, *y;
    unary_kind kind;
    unary_args a;
} unary_job;

static void unary_forward_range(void *arg, int64_t begin, int64_t end) {
    const unary_job *j = arg;
    float *restrict out = j->dst;
    const float *restrict x = j->x;
    const unary_args a = j->a;
    switch (j->kind) {
#define FORWARD_CASE(K)                                                                     \
    case K:                                                                                 \
        _Pragma("omp simd")                                                                 \
        for (int64_t i = begin; i < end; i++) out[i] = tg_unary_value(K, x[i], a);         \
        break;
        UNARY_EACH_KIND(FORWARD_CASE)
#undef FORWARD_CASE
    default: break;
    }
}

static void unary_backward_range(void *arg, int64_t begin, int64_t end) {
    const unary_job *j = arg;
    float *restrict dx = j->dst;
    const float *restrict dout = j->dout, *restrict x = j->x, *restrict y = j->y;
    const unary_args a = j->a;
    switch (j->kind) {
#define BACKWARD_CASE(K)                                                                    \
    case K:                                                                                 \
        _Pragma("omp simd")                                                                 \
        for (int64_t i = begin; i < end; i++)                                               \
            dx[i] += dout[i] * tg_unary_derivative(K, x[i], y[i], a);                       \
        break;
        UNARY_EACH_KIND(BACKWARD_CASE)
#undef BACKWARD_CASE
    default: break;
    }
}

void unary_forward_cpu(float *out, const float *x, int64_t n, unary_kind kind, unary_args a) {
    unary_job j = {.dst = out, .x = x, .kind = kind, .a = a};
    tg_parallel_items(n, 1, PARALLEL_MIN, UNARY_GRAIN, unary_forward_range, &j);
}

void unary_backward_cpu(float *dx, const float *dout, const float *x, const float *y,
                        int64_t n, unary_kind kind, unary_args a) {
    unary_job j = {.dst = dx, .dout = dout, .x = x, .y = y, .kind = kind, .a = a};
    tg_parallel_items(n, 1, PARALLEL_MIN, UNARY_GRAIN, unary_backward_range, &j);
}

typedef struct unary_params {
    unary_kind kind;
    unary_args args;
} unary_params;

static tg_status unary_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const unary_params *p = TG_PARAMS(rec, unary_params);
    unary_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->out->numel, p->kind, p->args);
    return TG_OK;
}

static tg_status unary_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                const float *dout) {
    (void)ctx;
    const unary_params *p = TG_PARAMS(rec, unary_params);
    unary_backward_cpu(dinputs[0], dout, rec->inputs[0]->data, rec->out->data,
                       rec->out->numel, p->kind, p->args);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
static tg_status cuda_unary_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    const unary_params *p = TG_PARAMS(rec, unary_params);
    return unary_forward_cuda(rec->out->data, rec->inputs[0]->data, rec->out->numel, p->kind,
                              p->args);
}

static tg_status cuda_unary_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                     const float *dout) {
    (void)ctx;
    const unary_params *p = TG_PARAMS(rec, unary_params);
    return unary_backward_cuda(dinputs[0], dout, rec->inputs[0]->data, rec->out->data,
                               rec->out->numel, p->kind, p->args);
}
#endif

/* Rough FLOPs per element of f and of f' (a libm exp/tanh/erf counted as 10). */
static const double unary_flops[UNARY_KIND_COUNT][2] = {
    [UNARY_ADD_SCALAR] = {1, 1}, [UNARY_SCALE] = {1, 2},   [UNARY_NEG] = {1, 1},
    [UNARY_EXP] = {10, 2},       [UNARY_LOG] = {10, 3},    [UNARY_SQRT] = {4, 3},
    [UNARY_POW] = {20, 23},      [UNARY_TANH] = {10, 4},   [UNARY_SIGMOID] = {13, 4},
    [UNARY_GELU] = {13, 27},     [UNARY_GELU_TANH] = {16, 24}, [UNARY_SILU] = {14, 19},
    [UNARY_LEAKY_RELU] = {2, 2}, [UNARY_CLAMP] = {2, 3},
};

static void unary_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                       double *bwd_flops, double *bwd_bytes) {
    unary_kind kind = TG_PARAMS(rec, unary_params)->kind;
    double n = (double)rec->out->numel;
    bool reads_nothing = kind == UNARY_ADD_SCALAR || kind == UNARY_SCALE || kind == UNARY_NEG;
    *fwd_flops = unary_flops[kind][0] * n;
    *fwd_bytes = 8 * n;                          /* read x, write y */
    *bwd_flops = unary_flops[kind][1] * n;
    *bwd_bytes = (reads_nothing ? 12 : 16) * n;  /* read dy (and x or y), read+write dx */
}

/* The backward line of each kind, for --explain. */
static const char *const unary_doc[UNARY_KIND_COUNT] = {
    [UNARY_ADD_SCALAR] = "dx += dy",
    [UNARY_SCALE] = "dx += c * dy",
    [UNARY_NEG] = "dx -= dy",
    [UNARY_EXP] = "dx += dy * y (d e^x = e^x, read from the output)",
    [UNARY_LOG] = "dx += dy / x",
    [UNARY_SQRT] = "dx += dy / (2 y)",
    [UNARY_POW] = "dx += dy * p x^(p-1) (0 when p = 0)",
    [UNARY_TANH] = "dx += dy * (1 - y^2)",
    [UNARY_SIGMOID] = "dx += dy * y (1 - y)",
    [UNARY_GELU] = "dx += dy * (Phi(x) + x phi(x)), Phi/phi the normal CDF/density",
    [UNARY_GELU_TANH] = "dx += dy * ((1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) "
                        "(1 + 3 0.044715 x^2)), u = sqrt(2/pi) (x + 0.044715 x^3)",
    [UNARY_SILU] = "dx += dy * s (1 + x (1 - s)), s = sigmoid(x)",
    [UNARY_LEAKY_RELU] = "dx += dy where x > 0, dy * slope elsewhere (also at exactly 0)",
    [UNARY_CLAMP] = "dx += dy where lo <= x <= hi (bounds inclusive), 0 outside",
};

static void unary_explain(const tg_record *rec, char *buf, size_t size) {
    const unary_params *p = TG_PARAMS(rec, unary_params);
    switch (p->kind) {
    case UNARY_SCALE: snprintf(buf, size, "dx += %g * dy", (double)p->args.c); break;
    case UNARY_POW:
        snprintf(buf, size, "dx += dy * %g x^%g%s", (double)p->args.c, (double)(p->args.c - 1),
                 p->args.c == 0.0f ? " (p = 0: no gradient)" : "");
        break;
    case UNARY_LEAKY_RELU:
        snprintf(buf, size, "dx += dy where x > 0, %g dy elsewhere (also at exactly 0)",
                 (double)p->args.c);
        break;
    case UNARY_CLAMP:
        snprintf(buf, size, "dx += dy where %g <= x <= %g (bounds inclusive), 0 outside",
                 (double)p->args.lo, (double)p->args.hi);
        break;
    default: snprintf(buf, size, "%s", unary_doc[p->kind]); break;
    }
}

/* The variant column: the constants, and which GELU. */
static void unary_describe(const tg_record *rec, char *buf, size_t size) {
    const unary_params *p = TG_PARAMS(rec, unary_params);
    switch (p->kind) {
    case UNARY_ADD_SCALAR: snprintf(buf, size, "+ %g", (double)p->args.c); break;
    case UNARY_SCALE: snprintf(buf, size, "* %g", (double)p->args.c); break;
    case UNARY_POW: snprintf(buf, size, "^ %g", (double)p->args.c); break;
    case UNARY_GELU: snprintf(buf, size, "erf"); break;
    case UNARY_GELU_TANH: snprintf(buf, size, "tanh approx"); break;
    case UNARY_LEAKY_RELU: snprintf(buf, size, "slope %g", (double)p->args.c); break;
    case UNARY_CLAMP:
        snprintf(buf, size, "[%g, %g]", (double)p->args.lo, (double)p->args.hi);
        break;
    default: snprintf(buf, size, "-"); break;
    }
}

#define UNARY_OP(label)                                                                     \
    {                                                                                       \
        .name = label,                                                                      \
        .forward = {[TG_DEVICE_CPU] = unary_forward, TG_CUDA_ENTRY(cuda_unary_forward)},    \
        .backward = {[TG_DEVICE_CPU] = unary_backward, TG_CUDA_ENTRY(cuda_unary_backward)}, \
        .cost = unary_cost, .describe = unary_describe, .explain = unary_explain,           \
    }

static const tg_op unary_ops[UNARY_KIND_COUNT] = {
    [UNARY_ADD_SCALAR] = UNARY_OP("add_scalar"),
    [UNARY_SCALE] = UNARY_OP("scale"),
    [UNARY_NEG] = UNARY_OP("neg"),
    [UNARY_EXP] = UNARY_OP("exp"),
    [UNARY_LOG] = UNARY_OP("log"),
    [UNARY_SQRT] = UNARY_OP("sqrt"),
    [UNARY_POW] = UNARY_OP("pow"),
    [UNARY_TANH] = UNARY_OP("tanh"),
    [UNARY_SIGMOID] = UNARY_OP("sigmoid"),
    [UNARY_GELU] = UNARY_OP("gelu"),
    [UNARY_GELU_TANH] = UNARY_OP("gelu"),
    [UNARY_SILU] = UNARY_OP("silu"),
    [UNARY_LEAKY_RELU] = UNARY_OP("leaky_relu"),
    [UNARY_CLAMP] = UNARY_OP("clamp"),
};

static tg_tensor *unary_apply(const char *name, tg_ctx *ctx, tg_tensor *x, unary_kind kind,
                              unary_args args) {
    if (!tg_check_tensor(name, "x", x, -1)) return NULL;
    unary_params p = {.kind = kind, .args = args};
    return tg_op_apply(ctx, &unary_ops[kind], &x, 1, x->shape, &p, sizeof p, NULL);
}

/* A NaN constant would turn every output (or gradient) into NaN: refused. */
static bool check_constant(const char *op, const char *arg, float v, const char *hint) {
    if (!isnan(v)) return true;
    tg_fail(TG_ERR_ARG, "%s: argument '%s' is NaN (%s)", op, arg, hint);
    return false;
}

tg_tensor *tg_add_scalar(tg_ctx *ctx, tg_tensor *x, float c) {
    if (!check_constant("tg_add_scalar", "c", c, "hint: every output would be NaN"))
        return NULL;
    return unary_apply("tg_add_scalar", ctx, x, UNARY_ADD_SCALAR, (unary_args){.c = c});
}

tg_tensor *tg_scale(tg_ctx *ctx, tg_tensor *x, float c) {
    if (!check_constant("tg_scale", "c", c, "hint: every output would be NaN")) return NULL;
    return unary_apply("tg_scale", ctx, x, UNARY_SCALE, (unary_args){.c = c});
}

tg_tensor *tg_neg(tg_ctx *ctx, tg_tensor *x) {
    return unary_apply("tg_neg", ctx, x, UNARY_NEG, (unary_args){0});
}

tg_tensor *tg_exp(tg_ctx *ctx, tg_tensor *x) {
    return unary_apply("tg_exp", ctx, x, UNARY_EXP, (unary_args){0});
}

tg_tensor *tg_log(tg_ctx *ctx, tg_tensor *x) {
    return unary_apply("tg_log", ctx, x, UNARY_LOG, (unary_args){0});
}

tg_tensor *tg_sqrt(tg_ctx *ctx, tg_tensor *x) {
    return unary_apply("tg_sqrt", ctx, x, UNARY_SQRT, (unary_args){0});
}

tg_tensor *tg_pow(tg_ctx *ctx, tg_tensor *x, float p) {
    if (!check_constant("tg_pow", "p", p, "hint: pass a finite exponent such as 2 or 0.5"))
        return NULL;
    return unary_apply("tg_pow", ctx, x, UNARY_POW, (unary_args){.c = p});
}

tg_tensor *tg_tanh(tg_ctx *ctx, tg_tensor *x) {
    return unary_apply("tg_tanh", ctx, x, UNARY_TANH, (unary_args){0});
}

tg_tensor *tg_sigmoid(tg_ctx *ctx, tg_tensor *x) {
    return unary_apply("tg_sigmoid", ctx, x, UNARY_SIGMOID, (unary_args){0});
}

tg_tensor *tg_gelu(tg_ctx *ctx, tg_tensor *x, bool tanh_approx) {
    return unary_apply("tg_gelu", ctx, x, tanh_approx ? UNARY_GELU_TANH : UNARY_GELU,
                       (unary_args){0});
}

tg_tensor *tg_silu(tg_ctx *ctx, tg_tensor *x) {
    return unary_apply("tg_silu", ctx, x, UNARY_SILU, (unary_args){0});
}

tg_tensor *tg_leaky_relu(tg_ctx *ctx, tg_tensor *x, float negative_slope) {
    if (!check_constant("tg_leaky_relu", "negative_slope", negative_slope,
                        "hint: PyTorch's default is 0.01"))
        return NULL;
    return unary_apply("tg_leaky_relu", ctx, x, UNARY_LEAKY_RELU,
                       (unary_args){.c = negative_slope});
}

tg_tensor *tg_clamp(tg_ctx *ctx, tg_tensor *x, float lo, float hi) {
    if (!check_constant("tg_clamp", "lo", lo, "hint: use -INFINITY for no lower bound") ||
        !check_constant("tg_clamp", "hi", hi, "hint: use INFINITY for no upper bound"))
        return NULL;
    if (lo > hi) {
        tg_fail(TG_ERR_ARG, "tg_clamp: bounds lo = %g > hi = %g (hint: swap them; the range "
                "must not be empty)", (double)lo, (double)hi);
        return NULL;
    }
    return unary_apply("tg_clamp", ctx, x, UNARY_CLAMP, (unary_args){.lo = lo, .hi = hi});
}
