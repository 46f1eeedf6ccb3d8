/*
 * ops/conv2d.c — the conv2d and conv1d ops (tg_conv2d, tg_conv1d): argument checks, which
 * kernel a record runs, its cost model, profile names and explain text, and
 * TG_CONV_ALGO_AUTO's timing. The math and the CPU kernels, with the derivation of the
 * forward and backward, are in ops/conv2d_gemm.c (im2col + SGEMM, pointwise, bias),
 * ops/conv2d_depthwise.c and ops/conv2d_winograd.c; CUDA in cuda/conv2d*.cu.
 *
 * WHICH KERNEL. conv2d_choose_path (ops/conv2d_gemm.c) picks dense, grouped, pointwise or
 * depthwise from the geometry; on the CPU a 3x3 stride-1 dense conv may instead run
 * Winograd F(4x4, 3x3), by the context's setting (tg_ctx_set_conv_algo) or, under
 * TG_CONV_ALGO_AUTO, by timing both forwards once per geometry. The choice is stored in
 * the record's params when the op is recorded, so the backward always runs the same
 * algorithm as its forward.
 */
#include "conv2d.h"

#include "../autograd/tape.h"
#include "../cuda/tg_cuda.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- the op */

typedef struct conv2d_params {
    conv2d_geom geom;
    bool is1d;
    bool winograd; /* TG_CONV_ALGO_WINOGRAD on a supported geometry, CPU */
    bool autochosen; /* TG_CONV_ALGO_AUTO timed the two paths and chose `winograd` */
} conv2d_params;

/* The Winograd path (ops/conv2d_winograd.c), for records that chose it. */
static tg_status winograd_forward(tg_ctx *ctx, tg_record *rec) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    float *ws = tg_ctx_scratch(ctx, conv2d_winograd_workspace_floats(g, false, 0) * sizeof(float));
    if (!ws) return tg_error();
    const tg_tensor *bias = rec->inputs[2];
    conv2d_winograd_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                                bias ? bias->data : NULL, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

static tg_status winograd_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                   const float *dout) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    if (dinputs[2]) conv2d_bias_backward_cpu(dinputs[2], dout, g->N, g->C_out, g->OH * g->OW);
    if (!dinputs[0] && !dinputs[1]) return TG_OK;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    float *ws = tg_ctx_scratch(ctx, conv2d_winograd_workspace_floats(g, true, 0) * sizeof(float));
    if (!ws) return tg_error();
    conv2d_winograd_backward_cpu(dinputs[0], dinputs[1], dout, rec->inputs[0]->data,
                                 rec->inputs[1]->data, g, ws, 0, tg_grad_fresh(rec, 0));
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

/* The column tile is dead when the kernel returns, so the arena is rewound past it:
 * a 50-layer net holds one tile at a time, not one per layer. */
static tg_status conv2d_forward(tg_ctx *ctx, tg_record *rec) {
    if (TG_PARAMS(rec, conv2d_params)->winograd) return winograd_forward(ctx, rec);
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    size_t ws_floats = conv2d_workspace_floats(g, 0);
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    const tg_tensor *bias = rec->inputs[2];
    conv2d_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                       bias ? bias->data : NULL, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

static tg_status conv2d_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                 const float *dout) {
    if (TG_PARAMS(rec, conv2d_params)->winograd) return winograd_backward(ctx, rec, dinputs, dout);
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    bool need_ws = dinputs[0] || dinputs[1];
    size_t ws_floats = need_ws ? conv2d_workspace_floats(g, 0) : 0;
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    conv2d_backward_cpu(dinputs[0], dinputs[1], dinputs[2], dout, rec->inputs[0]->data,
                        rec->inputs[1]->data, g, ws, 0, tg_grad_fresh(rec, 0));
    tg_arena_rewind(&ctx->arena, mark);
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
/* As on the CPU, the workspace (im2col tile, depthwise dW partials) is rewound when the
 * kernels are queued: later work on the one stream runs after them. */
static tg_status cuda_conv2d_forward(tg_ctx *ctx, tg_record *rec) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    size_t ws_floats = conv2d_workspace_floats_cuda(g, 0, false);
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    const tg_tensor *bias = rec->inputs[2];
    tg_status st = conv2d_forward_cuda(rec->out->data, rec->inputs[0]->data,
                                       rec->inputs[1]->data, bias ? bias->data : NULL, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return st;
}

static tg_status cuda_conv2d_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    size_t ws_floats = conv2d_workspace_floats_cuda(g, 0, true);
    float *ws = ws_floats ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (ws_floats && !ws) return tg_error();
    tg_status st = conv2d_backward_cuda(dinputs[0], dinputs[1], dinputs[2], dout,
                                        rec->inputs[0]->data, rec->inputs[1]->data, g, ws, 0);
    tg_arena_rewind(&ctx->arena, mark);
    return st;
}
#endif

/* What the Winograd path really computes (so rates stay comparable with the SGEMM peak):
 * per pass, 36 GEMMs of 2 C_out C_in flops per tile, about 288 flops per 6x6 input-tile
 * transform and 140 per output tile (counted from the 1-D transforms), and the filter
 * transforms. Bytes: the activations and weights as for the direct path, plus the
 * transformed filters (36/9 of the weights) written and read. */
static void winograd_cost(const conv2d_geom *g, bool has_bias, double *fwd_flops,
                          double *fwd_bytes, double *bwd_flops, double *bwd_bytes) {
    double tiles = (double)(g->N * ((g->OH + 3) / 4) * ((g->OW + 3) / 4));
    double xs = (double)(g->N * g->C_in * g->H * g->W);
    double ys = (double)(g->N * g->C_out * g->OH * g->OW);
    double pairs = (double)(g->C_out * g->C_in), ws = 9 * pairs;
    double dx_tiles = (double)(g->N * ((g->H + 3) / 4) * ((g->W + 3) / 4));
    double gemm = 2 * 36 * pairs;
    *fwd_flops = gemm * tiles + tiles * (288.0 * (double)g->C_in + 140.0 * (double)g->C_out) +
                 300 * pairs + (has_bias ? ys : 0);
    *fwd_bytes = 4 * (xs + ws + ys + 2 * 36 * pairs);
    /* dx: the same on dy; dW: input and dy transforms, 36 GEMMs, the 6x6 -> 3x3 transform. */
    *bwd_flops = gemm * dx_tiles +
                 dx_tiles * (288.0 * (double)g->C_out + 140.0 * (double)g->C_in) +
                 gemm * tiles + tiles * (288.0 * (double)g->C_in + 200.0 * (double)g->C_out) +
                 600 * pairs + (has_bias ? ys : 0);
    *bwd_bytes = 4 * (ys + xs + ws + 2 * xs + 2 * ws + 4 * 36 * pairs);
}

static void conv2d_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                        double *bwd_flops, double *bwd_bytes) {
    const conv2d_geom *g = &TG_PARAMS(rec, conv2d_params)->geom;
    bool has_bias = rec->inputs[2] != NULL;
    double xs = (double)(g->N * g->C_in * g->H * g->W);
    double ws = (double)(g->C_out * (g->C_in / g->groups) * g->KH * g->KW);
    double ys = (double)(g->N * g->C_out * g->OH * g->OW), bs = has_bias ? (double)g->C_out : 0;
    double macs = ys * (double)(g->C_in / g->groups * g->KH * g->KW);
    if (TG_PARAMS(rec, conv2d_params)->winograd) {
        winograd_cost(g, has_bias, fwd_flops, fwd_bytes, bwd_flops, bwd_bytes);
        return;
    }
    *fwd_flops = 2 * macs + (has_bias ? ys : 0);
    *fwd_bytes = 4 * (xs + ws + bs + ys); /* read x, w (b); write y */
    /* dx and dW are each a forward's worth of multiply-adds; db sums dy. */
    *bwd_flops = 4 * macs + (has_bias ? ys : 0);
    /* Read dy, x, w; read and write dx, dW (db). */
    *bwd_bytes = 4 * (ys + xs + ws + 2 * xs + 2 * ws + 2 * bs);
}

static void conv2d_describe(const tg_record *rec, char *buf, size_t size) {
    const conv2d_params *p = TG_PARAMS(rec, conv2d_params);
    const conv2d_geom *g = &p->geom;
    conv2d_path path = conv2d_choose_path(g);
    char kernel[48], extra[32] = "";
    int s = g->stride_h > g->stride_w ? g->stride_h : g->stride_w;
    if (p->is1d) snprintf(kernel, sizeof kernel, "k%lld", (long long)g->KW);
    else snprintf(kernel, sizeof kernel, "%lldx%lld", (long long)g->KH, (long long)g->KW);
    if (s > 1) snprintf(extra, sizeof extra, " s%d", s);
    const char *by = p->autochosen ? "auto: " : "";
    if (p->winograd) {
        snprintf(buf, size, "%swinograd %s", by, kernel);
        return;
    }
    if (path == CONV2D_GROUPED)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " g%d", g->groups);
    snprintf(buf, size, "%s%s %s%s", by, conv2d_path_name(path), kernel, extra);
}

/* Explain mode: what this record's backward computes, for the path it took. */
static void conv2d_explain(const tg_record *rec, char *buf, size_t size) {
    const conv2d_params *p = TG_PARAMS(rec, conv2d_params);
    const char *db = rec->inputs[2] ? "; db += sums of dy over N, OH, OW" : "";
    if (p->winograd) {
        snprintf(buf, size, "Winograd F(4x4,3x3): dx = the same transform with rot180(W)^T, "
                 "dW = G^T[(A dy A^T) .* (B^T x B)]G, 36 GEMMs each (beta = 1)%s", db);
        return;
    }
    switch (conv2d_choose_path(&p->geom)) {
    case CONV2D_POINTWISE:
        snprintf(buf, size, "pointwise 1x1: dx += W^T dy and dW += dy x^T per image, straight "
                 "SGEMMs on NCHW (beta = 1)%s", db);
        break;
    case CONV2D_DEPTHWISE:
        snprintf(buf, size, "depthwise: one direct pass per channel reads dy and x once and "
                 "adds into dx and dW%s", db);
        break;
    case CONV2D_GROUPED:
        snprintf(buf, size, "grouped (%d groups): per group and im2col tile, dW += dy col^T "
                 "and dx += col2im(W^T dy) (GEMMs, beta = 1)%s", p->geom.groups, db);
        break;
    default:
        snprintf(buf, size, "dense: per im2col tile, dW += dy col^T and dx += col2im(W^T dy) "
                 "(GEMMs, beta = 1; the columns are recomputed, not stored)%s", db);
    }
}

static const tg_op conv2d_op = {
    .name = "conv2d",
    .forward = {[TG_DEVICE_CPU] = conv2d_forward, TG_CUDA_ENTRY(cuda_conv2d_forward)},
    .backward = {[TG_DEVICE_CPU] = conv2d_backward, TG_CUDA_ENTRY(cuda_conv2d_backward)},
    .cost = conv2d_cost,
    .describe = conv2d_describe,
    .explain = conv2d_explain,
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: every CPU path writes a fresh dx */
};

static const tg_op conv1d_op = {
    .name = "conv1d",
    .forward = {[TG_DEVICE_CPU] = conv2d_forward, TG_CUDA_ENTRY(cuda_conv2d_forward)},
    .backward = {[TG_DEVICE_CPU] = conv2d_backward, TG_CUDA_ENTRY(cuda_conv2d_backward)},
    .cost = conv2d_cost,
    .describe = conv2d_describe,
    .explain = conv2d_explain,
    .writes_fresh_grads = {[TG_DEVICE_CPU] = 1u}, /* x: every CPU path writes a fresh dx */
};

/* ---------------------------------------------------------------- TG_CONV_ALGO_AUTO */

/* Each forward runs once untimed before the two timed runs: a first run pays one-off costs
 * (page faults of fresh scratch, about 1.5 us per 4 KiB page on the project's VM, and
 * cold caches) that are not the algorithm's. Timing first runs above 2 GFLOP made the
 * choice flip between runs of the same net (forum dense 64x64: Winograd 3x faster alone,
 * yet im2col + SGEMM chosen for 49 of 50 layers once the SGEMM kernels were fast). */

/* The geometry but for the batch size. */
static bool choice_like(const tg_conv_choice *c, const conv2d_geom *g, bool bias) {
    return c->c_in == g->C_in && c->h == g->H && c->w == g->W && c->c_out == g->C_out &&
           c->pad_h == g->pad_h && c->pad_w == g->pad_w && c->bias == bias;
}

static bool choice_is(const tg_conv_choice *c, const conv2d_geom *g, bool bias) {
    return c->n == g->N && choice_like(c, g, bias);
}

static int64_t batch_gap(int64_t a, int64_t b) { return a > b ? a - b : b - a; }

/* Records a choice for g in ctx's table (replacing the oldest when full). */
static int record_choice(tg_ctx *ctx, const conv2d_geom *g, bool bias, bool winograd,
                         double gemm_seconds, double winograd_seconds) {
    tg_conv_choice *c = &ctx->conv_choices[ctx->next_conv_choice];
    *c = (tg_conv_choice){.n = g->N, .c_in = g->C_in, .h = g->H, .w = g->W, .c_out = g->C_out,
                          .pad_h = g->pad_h, .pad_w = g->pad_w, .bias = bias,
                          .winograd = winograd, .gemm_seconds = gemm_seconds,
                          .winograd_seconds = winograd_seconds};
    ctx->next_conv_choice = (ctx->next_conv_choice + 1) % TG_CTX_CONV_CHOICES;
    if (ctx->nconv_choices < TG_CTX_CONV_CHOICES) ctx->nconv_choices++;
    ctx->conv_choices_version++; /* data parallel: agreed across ranks at the next sync */
    return winograd ? 1 : 0;
}

/* For a geometry Winograd supports (3x3, stride 1, dilation 1, groups 1, so the key below
 * is the whole geometry): 1 for Winograd, 0 for im2col + SGEMM, -1 on failure (message
 * recorded). The first call per geometry times both forwards on the live operands
 * x (N, C_in, H, W), w (C_out, C_in, 3, 3), b (C_out) or NULL into arena scratch that is
 * rewound afterwards, and records the faster in the context's table.
 * A geometry that differs from a recorded one only in its batch size takes that one's
 * choice (the closest batch size's), recorded untimed: both algorithms' cost is per image,
 * and a training run's last, shorter batch and its evaluation batches would otherwise be
 * timed again (the MNIST CNN's first epoch: 46% longer under AUTO than pinned to GEMM,
 * most of it timing batches of 64, 40 and 200 images). */
static int conv2d_auto_choose(tg_ctx *ctx, const conv2d_geom *g, const float *x,
                              const float *w, const float *b) {
    const tg_conv_choice *like = NULL;
    for (int i = 0; i < ctx->nconv_choices; i++) {
        const tg_conv_choice *c = &ctx->conv_choices[i];
        if (choice_is(c, g, b != NULL)) return c->winograd ? 1 : 0;
        if (choice_like(c, g, b != NULL) &&
            (!like || batch_gap(c->n, g->N) < batch_gap(like->n, g->N)))
            like = c;
    }
    if (like) return record_choice(ctx, g, b != NULL, like->winograd, 0, 0);
    tg_threads_apply(); /* time with the thread count the op will run with */
    size_t out_floats = (size_t)(g->N * g->C_out * g->OH * g->OW);
    size_t ws_gemm = conv2d_workspace_floats(g, 0);
    size_t ws_wino = conv2d_winograd_workspace_floats(g, false, 0);
    size_t ws_floats = ws_gemm > ws_wino ? ws_gemm : ws_wino;
    tg_arena_mark mark = tg_arena_get_mark(&ctx->arena);
    float *out = tg_ctx_scratch(ctx, out_floats * sizeof(float));
    float *ws = out ? tg_ctx_scratch(ctx, ws_floats * sizeof(float)) : NULL;
    if (!ws) {
        tg_arena_rewind(&ctx->arena, mark);
        return -1;
    }
    /* pass 0 warms up; each algorithm keeps the better of passes 1 and 2, alternating, so
     * one time slice lost to another process (a busy machine) does not decide */
    double secs[2] = {INFINITY, INFINITY};
    for (int pass = 0; pass < 3; pass++) {
        for (int a = 0; a < 2; a++) {
            double t0 = tg_now();
            if (a) conv2d_winograd_forward_cpu(out, x, w, b, g, ws, 0);
            else conv2d_gemm_forward_cpu(out, x, w, b, g, ws, conv2d_default_tile_cols(g));
            double t = tg_now() - t0;
            if (pass > 0 && t < secs[a]) secs[a] = t;
        }
    }
    tg_arena_rewind(&ctx->arena, mark);
    return record_choice(ctx, g, b != NULL, secs[1] < secs[0], secs[0], secs[1]);
}

/* ---------------------------------------------------------------- entry points */

/* Validates x, weight, bias and opts for tg_conv2d (is1d false) or tg_conv1d, and fills g.
 * Messages name the op, the argument and the shapes. */
static bool conv_check(const char *op, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                       tg_conv2d_opts opts, bool is1d, conv2d_geom *g) {
    char s1[80], s2[80];
    const int nd = is1d ? 3 : 4;
    const char *xlay = is1d ? "(N, C_in, L)" : "(N, C_in, H, W)";
    const char *wlay = is1d ? "(C_out, C_in/groups, K)" : "(C_out, C_in/groups, KH, KW)";
    if (!tg_check_tensor(op, "x", x, -1) || !tg_check_tensor(op, "weight", weight, -1))
        return false;
    if (opts.stride_h < 0 || opts.stride_w < 0 || opts.dilation_h < 0 ||
        opts.dilation_w < 0 || opts.pad_h < 0 || opts.pad_w < 0 || opts.groups < 0) {
        const char *arg = opts.groups < 0 ? "groups"
                          : opts.pad_h < 0 || opts.pad_w < 0 ? "padding"
                          : opts.stride_h < 0 || opts.stride_w < 0 ? "stride" : "dilation";
        tg_fail(TG_ERR_ARG, "%s: argument 'opts.%s' is negative (stride %d,%d pad %d,%d "
                "dilation %d,%d groups %d); hint: stride, dilation and groups are >= 1 (0 "
                "means 1), padding >= 0", op, arg, opts.stride_h, opts.stride_w, opts.pad_h,
                opts.pad_w, opts.dilation_h, opts.dilation_w, opts.groups);
        return false;
    }
    if (x->shape.ndim != nd) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'x' has shape %s (%d dims); expected %d dims %s%s",
                op, tg_shape_str(x->shape, s1, sizeof s1), x->shape.ndim, nd, xlay,
                is1d ? "; hint: for images use tg_conv2d" : "; hint: for sequences use tg_conv1d");
        return false;
    }
    const int64_t *xd = x->shape.dim, *wd = weight->shape.dim;
    int64_t C_in = xd[1], G = opts.groups ? opts.groups : 1;
    if (weight->shape.ndim != nd) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' has shape %s (%d dims); weight must be "
                "%s with %d dims", op, tg_shape_str(weight->shape, s1, sizeof s1),
                weight->shape.ndim, wlay, nd);
        return false;
    }
    int64_t C_out = wd[0], KH = is1d ? 1 : wd[2], KW = wd[nd - 1];
    if (C_in % G != 0) {
        tg_fail(TG_ERR_ARG, "%s: argument 'opts.groups' = %lld does not divide C_in = %lld of "
                "'x' %s; hint: groups must divide both C_in and C_out", op, (long long)G,
                (long long)C_in, tg_shape_str(x->shape, s1, sizeof s1));
        return false;
    }
    if (C_out % G != 0) {
        tg_fail(TG_ERR_ARG, "%s: argument 'opts.groups' = %lld does not divide C_out = %lld of "
                "'weight' %s; hint: groups must divide both C_in and C_out", op, (long long)G,
                (long long)C_out, tg_shape_str(weight->shape, s1, sizeof s1));
        return false;
    }
    if (wd[1] != C_in / G) {
        char want[80];
        tg_shape ws = weight->shape;
        ws.dim[1] = C_in / G;
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' has shape %s but 'x' has shape %s with "
                "groups %lld; hint: weight must be %s = %s", op,
                tg_shape_str(weight->shape, s1, sizeof s1), tg_shape_str(x->shape, s2, sizeof s2),
                (long long)G, wlay, tg_shape_str(ws, want, sizeof want));
        return false;
    }
    if (bias && (bias->shape.ndim != 1 || bias->shape.dim[0] != C_out)) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'bias' has shape %s; expected (%lld), one value "
                "per output channel of 'weight' %s", op, tg_shape_str(bias->shape, s1, sizeof s1),
                (long long)C_out, tg_shape_str(weight->shape, s2, sizeof s2));
        return false;
    }
    *g = (conv2d_geom){
        .N = xd[0], .C_in = C_in, .H = is1d ? 1 : xd[2], .W = xd[nd - 1], .C_out = C_out,
        .KH = KH, .KW = KW, .groups = (int)G,
        .stride_h = is1d ? 1 : (opts.stride_h ? opts.stride_h : 1),
        .stride_w = opts.stride_w ? opts.stride_w : 1,
        .pad_h = is1d ? 0 : opts.pad_h, .pad_w = opts.pad_w,
        .dil_h = is1d ? 1 : (opts.dilation_h ? opts.dilation_h : 1),
        .dil_w = opts.dilation_w ? opts.dilation_w : 1,
    };
    /* Dims are <= TG_MAX_NUMEL = 2^40 and options < 2^31, so the spans fit an int64
     * unless a kernel dim times the dilation is absurd: checked like every size. */
    int64_t eh, ew, kspan_h, kspan_w;
    if (!tg_mul_i64(g->dil_h, KH - 1, &kspan_h) || !tg_mul_i64(g->dil_w, KW - 1, &kspan_w) ||
        kspan_h > TG_MAX_NUMEL || kspan_w > TG_MAX_NUMEL) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' %s with dilation %d,%d spans more than "
                "TG_MAX_NUMEL pixels", op, tg_shape_str(weight->shape, s1, sizeof s1),
                g->dil_h, g->dil_w);
        return false;
    }
    eh = g->H + 2 * (int64_t)g->pad_h - kspan_h - 1;
    ew = g->W + 2 * (int64_t)g->pad_w - kspan_w - 1;
    if (eh < 0 || ew < 0) {
        tg_fail(TG_ERR_SHAPE, "%s: argument 'weight' %s with dilation %d,%d is larger than "
                "the padded input 'x' %s (padding %d,%d): the output would be empty; hint: "
                "pad more or use a smaller kernel", op,
                tg_shape_str(weight->shape, s1, sizeof s1), g->dil_h, g->dil_w,
                tg_shape_str(x->shape, s2, sizeof s2), g->pad_h, g->pad_w);
        return false;
    }
    g->OH = eh / g->stride_h + 1;
    g->OW = ew / g->stride_w + 1;
    int64_t K, plane_out, plane_in, wg, numel_out;
    tg_shape out = is1d ? tg_shape3(g->N, C_out, g->OW) : tg_shape4(g->N, C_out, g->OH, g->OW);
    if (!tg_shape_check(op, "output", out, &numel_out, NULL)) return false;
    if (!tg_mul_i64(C_in / G, KH, &K) || !tg_mul_i64(K, KW, &K) ||
        !tg_mul_i64(g->OH, g->OW, &plane_out) || !tg_mul_i64(g->H, g->W, &plane_in) ||
        !tg_mul_i64(K, C_out / G, &wg) || C_out > INT_MAX || K > INT_MAX ||
        plane_out > INT_MAX || plane_in > INT_MAX || wg > INT_MAX) {
        tg_fail(TG_ERR_ARG, "%s: argument 'x' %s with 'weight' %s has a dimension above "
                "2^31 - 1, more than a BLAS call takes", op,
                tg_shape_str(x->shape, s1, sizeof s1),
                tg_shape_str(weight->shape, s2, sizeof s2));
        return false;
    }
    return true;
}

static tg_tensor *conv_apply(const char *name, const tg_op *op, tg_ctx *ctx, tg_tensor *x,
                             tg_tensor *weight, tg_tensor *bias, tg_conv2d_opts opts,
                             bool is1d) {
    if (tg_check_not_null(name, "ctx", ctx)) return NULL;
    conv2d_params p = {.is1d = is1d};
    if (!conv_check(name, x, weight, bias, opts, is1d, &p.geom)) return NULL;
    const conv2d_geom *g = &p.geom;
    if (ctx->device == TG_DEVICE_CPU && !is1d && conv2d_winograd_supported(g)) {
        if (ctx->conv_algo == TG_CONV_ALGO_WINOGRAD) {
            p.winograd = true;
        } else if (ctx->conv_algo == TG_CONV_ALGO_AUTO) {
            /* The timing reads the operands: the checks tg_op_apply makes, made first. */
            tg_tensor *inputs[3] = {x, weight, bias};
            if (!tg_check_same_device(name, ctx, inputs, 3) ||
                !tg_ctx_check_inputs(ctx, name, inputs, 3))
                return NULL;
            int c = conv2d_auto_choose(ctx, g, x->data, weight->data, bias ? bias->data : NULL);
            if (c < 0) return NULL;
            p.winograd = c == 1;
            p.autochosen = true;
        }
    }
    tg_shape out = is1d ? tg_shape3(g->N, g->C_out, g->OW)
                        : tg_shape4(g->N, g->C_out, g->OH, g->OW);
    tg_tensor *inputs[3] = {x, weight, bias};
    return tg_op_apply(ctx, op, inputs, 3, out, &p, sizeof p, NULL);
}

tg_conv2d_opts tg_conv2d_opts_make(int stride, int padding, int dilation, int groups) {
    return (tg_conv2d_opts){.stride_h = stride, .stride_w = stride, .pad_h = padding,
                            .pad_w = padding, .dilation_h = dilation, .dilation_w = dilation,
                            .groups = groups};
}

tg_tensor *tg_conv2d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     tg_conv2d_opts opts) {
    return conv_apply("tg_conv2d", &conv2d_op, ctx, x, weight, bias, opts, false);
}

tg_tensor *tg_conv1d(tg_ctx *ctx, tg_tensor *x, tg_tensor *weight, tg_tensor *bias,
                     tg_conv2d_opts opts) {
    return conv_apply("tg_conv1d", &conv1d_op, ctx, x, weight, bias, opts, true);
}
