/*
 * core/context.c — the context: a device, a step arena, a tape and the grad mode.
 * Step tensors (struct and data) come from the arena and die at tg_step_end.
 */
#include "../autograd/tape.h"
#include "dist.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tg_ctx *tg_ctx_new(tg_device device) {
    if (device != TG_DEVICE_CPU && device != TG_DEVICE_CUDA) {
        tg_fail(TG_ERR_ARG, "tg_ctx_new: unknown device %d", (int)device);
        return NULL;
    }
    if (device == TG_DEVICE_CUDA && tg_cuda_check() != TG_OK) return NULL;
    tg_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        tg_fail(TG_ERR_NOMEM, "tg_ctx_new: out of memory");
        return NULL;
    }
    static _Atomic uint32_t next_serial = 0;
    ctx->device = device;
    ctx->grad_enabled = true;
    ctx->conv_algo = TG_CONV_ALGO_AUTO; /* tg_ctx_set_conv_algo pins another */
    tg_rng_seed(&ctx->rng, 0); /* tg_ctx_seed changes it */
    ctx->serial = ++next_serial; /* wraps after 2^32 contexts: the check is best effort */
    if (ctx->serial == 0) ctx->serial = ++next_serial;
    tg_arena_init(&ctx->arena, device);
    return ctx;
}

void tg_ctx_free(tg_ctx *ctx) {
    if (!ctx) return;
    if (ctx->dist) tg_dist_ctx_gone(ctx->dist, ctx); /* the dist forgets this context */
    tg_arena_release(&ctx->arena);
    free(ctx->tape.records);
    free(ctx);
}

tg_device tg_ctx_device(const tg_ctx *ctx) { return ctx ? ctx->device : TG_DEVICE_CPU; }

/* Tensor structs live on the host even for CUDA contexts; a CPU context keeps struct
 * and data in one arena, a CUDA one keeps structs in a small host arena. */
static tg_tensor *alloc_struct(tg_ctx *ctx) {
    tg_tensor *t;
    if (ctx->device == TG_DEVICE_CPU) {
        t = tg_arena_alloc(&ctx->arena, sizeof *t);
    } else {
        if (!ctx->host_arena_ready) {
            tg_arena_init(&ctx->host_arena, TG_DEVICE_CPU);
            ctx->host_arena_ready = true;
        }
        t = tg_arena_alloc(&ctx->host_arena, sizeof *t);
    }
    if (t) memset(t, 0, sizeof *t);
    return t;
}

static uint64_t ctx_stamp(const tg_ctx *ctx);

static bool valid_shape(const char *fn, tg_shape shape) {
    return tg_shape_check(fn, "argument 'shape'", shape, NULL, NULL);
}

tg_tensor *tg_ctx_tensor_view(tg_ctx *ctx, tg_shape shape, float *data) {
    int64_t n;
    if (!tg_shape_check("step tensor", "the", shape, &n, NULL)) return NULL;
    tg_tensor *t = alloc_struct(ctx);
    if (!t) return NULL;
    t->shape = shape;
    t->numel = n;
    t->device = ctx->device;
    t->id = ctx->next_id++;
    t->data = data;
    t->stamp = ctx_stamp(ctx);
    return t;
}

tg_tensor *tg_ctx_tensor(tg_ctx *ctx, tg_shape shape) {
    size_t bytes;
    if (!tg_shape_check("step tensor", "the", shape, NULL, &bytes)) return NULL;
    float *data = tg_arena_alloc(&ctx->arena, bytes);
    if (!data) return NULL;
    return tg_ctx_tensor_view(ctx, shape, data);
}

/* ---------------------------------------------------------------- tape ownership */

/* A step tensor's stamp: the context's serial number (high 32 bits) and its step
 * generation (low 32 bits, advanced by tg_step_end). Parameters have stamp 0. */
static uint64_t ctx_stamp(const tg_ctx *ctx) {
    return ((uint64_t)ctx->serial << 32) | ctx->generation;
}

bool tg_ctx_check_owned(tg_ctx *ctx, const char *op, const char *arg, const tg_tensor *t,
                        bool strict) {
    if (!t || t->stamp == 0 || t->stamp == ctx_stamp(ctx)) return true;
    char s[80];
    bool foreign = (uint32_t)(t->stamp >> 32) != ctx->serial;
    /* Another context's tensor that needs no gradient is a constant here (a dataset
     * batch kept in its own context): allowed as an op input. */
    if (foreign && !strict && !t->requires_grad) return true;
    if (foreign) {
        tg_fail(TG_ERR_ARG, "%s: %s %s was recorded on another context; its gradient "
                "belongs to that context's tape (tg_backward would leave every gradient 0); "
                "hint: use one tg_ctx per training loop, or copy the values with "
                "tg_tensor_to_host + tg_tensor_from", op, arg,
                tg_shape_str(t->shape, s, sizeof s));
    } else {
        tg_fail(TG_ERR_STATE, "%s: %s %s is from an earlier step (step tensors die at "
                "tg_step_end, %u step%s ago); hint: recompute it in this step", op, arg,
                tg_shape_str(t->shape, s, sizeof s),
                (unsigned)(ctx->generation - (uint32_t)t->stamp),
                ctx->generation - (uint32_t)t->stamp == 1 ? "" : "s");
    }
    return false;
}

bool tg_ctx_check_inputs(tg_ctx *ctx, const char *op, tg_tensor *const *ts, int n) {
    for (int i = 0; i < n; i++) {
        char arg[32];
        snprintf(arg, sizeof arg, "input %d", i);
        if (ts[i] && !tg_ctx_check_owned(ctx, op, arg, ts[i], false)) return false;
    }
    return true;
}

void *tg_ctx_scratch(tg_ctx *ctx, size_t bytes) { return tg_arena_alloc(&ctx->arena, bytes); }

void tg_ctx_release_grad(tg_ctx *ctx, tg_tensor *t) {
    if (!t->grad || t->is_param) return;
    if (ctx->nfree_grads < TG_FREE_GRADS) { /* else it stays in the arena until step end */
        ctx->free_grad[ctx->nfree_grads] = t->grad;
        ctx->free_grad_numel[ctx->nfree_grads] = t->numel;
        ctx->nfree_grads++;
    }
    t->grad = NULL;
}

tg_status tg_ctx_ensure_grad(tg_ctx *ctx, tg_tensor *t) {
    if (t->grad) return TG_OK;
    return tg_ctx_new_grad(ctx, t, true);
}

/* Floats [begin, end) of a gradient buffer set to zero (tg_parallel_items). */
static void zero_range(void *arg, int64_t begin, int64_t end) {
    memset((float *)arg + begin, 0, (size_t)(end - begin) * sizeof(float));
}

tg_status tg_ctx_new_grad(tg_ctx *ctx, tg_tensor *t, bool zero) {
    for (int i = 0; i < ctx->nfree_grads; i++) {
        if (ctx->free_grad_numel[i] == t->numel) {
            t->grad = ctx->free_grad[i];
            ctx->nfree_grads--;
            ctx->free_grad[i] = ctx->free_grad[ctx->nfree_grads];
            ctx->free_grad_numel[i] = ctx->free_grad_numel[ctx->nfree_grads];
            break;
        }
    }
    if (!t->grad) t->grad = tg_arena_alloc(&ctx->arena, (size_t)t->numel * sizeof(float));
    /* (numel <= TG_MAX_NUMEL was checked when t was made, so the product cannot wrap.) */
    if (!t->grad) return tg_error();
    if (!zero) return TG_OK;
    if (t->device != TG_DEVICE_CPU)
        return tg_device_zero(t->device, t->grad, (size_t)t->numel * sizeof(float));
    /* Activation gradients are large (a 256x256x256 layer is 64 MiB): zero them with all
     * threads, in 64 KiB chunks. */
    tg_parallel_items(t->numel, 1, 1 << 18, 1 << 14, zero_range, t->grad);
    return TG_OK;
}

tg_tensor *tg_tensor_new(tg_ctx *ctx, tg_shape shape) {
    if (tg_check_not_null("tg_tensor_new", "ctx", ctx)) return NULL;
    if (!valid_shape("tg_tensor_new", shape)) return NULL;
    return tg_ctx_tensor(ctx, shape);
}

tg_tensor *tg_tensor_zeros(tg_ctx *ctx, tg_shape shape) {
    if (tg_check_not_null("tg_tensor_zeros", "ctx", ctx)) return NULL;
    if (!valid_shape("tg_tensor_zeros", shape)) return NULL;
    tg_tensor *t = tg_ctx_tensor(ctx, shape);
    if (t && tg_device_zero(t->device, t->data, (size_t)t->numel * sizeof(float))) return NULL;
    return t;
}

tg_tensor *tg_tensor_from(tg_ctx *ctx, tg_shape shape, const float *host) {
    if (tg_check_not_null("tg_tensor_from", "ctx", ctx)) return NULL;
    if (tg_check_not_null("tg_tensor_from", "host", host)) return NULL;
    if (!valid_shape("tg_tensor_from", shape)) return NULL;
    tg_tensor *t = tg_ctx_tensor(ctx, shape);
    if (t && tg_device_copy(t->device, t->data, TG_DEVICE_CPU, host,
                            (size_t)t->numel * sizeof(float)))
        return NULL;
    return t;
}

tg_status tg_tensor_to_host(const tg_tensor *t, float *host, bool grad) {
    if (!t || !host) return tg_fail(TG_ERR_ARG, "tg_tensor_to_host: %s is NULL",
                                    t ? "host" : "tensor");
    const float *src = grad ? t->grad : t->data;
    if (!src) return tg_fail(TG_ERR_STATE, "tg_tensor_to_host: the tensor has no gradient "
                             "(run tg_backward first, or it does not require grad)");
    return tg_device_copy(TG_DEVICE_CPU, host, t->device, src, (size_t)t->numel * sizeof(float));
}

tg_status tg_tensor_copy_from_host(tg_tensor *t, const float *host) {
    if (!t || !host) return tg_fail(TG_ERR_ARG, "tg_tensor_copy_from_host: argument '%s' is "
                                    "NULL", t ? "host" : "t");
    if (!t->data) return tg_fail(TG_ERR_ARG, "tg_tensor_copy_from_host: the tensor has no data");
    return tg_device_copy(t->device, t->data, TG_DEVICE_CPU, host,
                          (size_t)t->numel * sizeof(float));
}

void tg_tensor_set_requires_grad(tg_tensor *t, bool requires_grad) {
    if (t && !t->is_param) t->requires_grad = requires_grad;
}

void tg_step_end(tg_ctx *ctx) {
    if (!ctx) return;
    tg_arena_reset(&ctx->arena);
    if (ctx->host_arena_ready) tg_arena_reset(&ctx->host_arena);
    ctx->tape.len = 0;
    ctx->tape.consumed = false;
    ctx->next_id = 0;
    ctx->nfree_grads = 0;
    ctx->generation++;
    tg_threads_adapt(); /* adaptive thread count: at most every 0.25 s (core/threads.c) */
}

size_t tg_ctx_arena_used(const tg_ctx *ctx) { return ctx ? ctx->arena.used : 0; }
size_t tg_ctx_arena_peak(const tg_ctx *ctx) { return ctx ? ctx->arena.peak : 0; }

bool tg_set_grad_enabled(tg_ctx *ctx, bool enabled) {
    if (!ctx) return false;
    bool was = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return was;
}

bool tg_is_grad_enabled(const tg_ctx *ctx) { return ctx && ctx->grad_enabled; }

tg_status tg_ctx_set_conv_algo(tg_ctx *ctx, tg_conv_algo algo) {
    if (tg_check_not_null("tg_ctx_set_conv_algo", "ctx", ctx)) return tg_error();
    if (algo != TG_CONV_ALGO_GEMM && algo != TG_CONV_ALGO_WINOGRAD &&
        algo != TG_CONV_ALGO_AUTO) {
        tg_fail(TG_ERR_ARG, "tg_ctx_set_conv_algo: argument 'algo' = %d is not a "
                "tg_conv_algo; hint: TG_CONV_ALGO_GEMM (0), TG_CONV_ALGO_WINOGRAD (1) or "
                "TG_CONV_ALGO_AUTO (2)", (int)algo);
        return tg_error();
    }
    ctx->conv_algo = algo;
    return TG_OK;
}

tg_conv_algo tg_ctx_conv_algo(const tg_ctx *ctx) {
    return ctx ? ctx->conv_algo : TG_CONV_ALGO_AUTO;
}

/* The table is a ring once full: rows [next, n) are older than [0, next). */
int tg_ctx_conv_choices(const tg_ctx *ctx, tg_conv_choice *rows, int max_rows) {
    if (!ctx) return 0;
    int n = ctx->nconv_choices, first = n == TG_CTX_CONV_CHOICES ? ctx->next_conv_choice : 0;
    for (int i = 0; rows && i < n && i < max_rows; i++)
        rows[i] = ctx->conv_choices[(first + i) % TG_CTX_CONV_CHOICES];
    return n;
}

bool tg_conv_choice_same_geometry(const tg_conv_choice *a, const tg_conv_choice *b) {
    return a->n == b->n && a->c_in == b->c_in && a->h == b->h && a->w == b->w &&
           a->c_out == b->c_out && a->pad_h == b->pad_h && a->pad_w == b->pad_w &&
           a->bias == b->bias;
}

bool tg_conv_choices_invalid(const tg_conv_choice *rows, int n, char *why, size_t size) {
    if (n < 0 || n > TG_CONV_CHOICES_MAX) {
        snprintf(why, size, "%d rows, outside 0..%d", n, TG_CONV_CHOICES_MAX);
        return true;
    }
    for (int i = 0; i < n; i++) {
        const tg_conv_choice *c = &rows[i];
        const int64_t dims[5] = {c->n, c->c_in, c->h, c->w, c->c_out};
        for (int d = 0; d < 5; d++) {
            if (dims[d] < 1 || dims[d] > INT32_MAX) {
                snprintf(why, size, "row %d has %s = %lld, outside 1..2^31-1", i,
                         (const char *[]){"n", "c_in", "h", "w", "c_out"}[d],
                         (long long)dims[d]);
                return true;
            }
        }
        if (c->pad_h < 0 || c->pad_w < 0) {
            snprintf(why, size, "row %d has padding (%d, %d); it cannot be negative", i,
                     c->pad_h, c->pad_w);
            return true;
        }
        for (int j = 0; j < i; j++) {
            if (tg_conv_choice_same_geometry(&rows[j], c)) {
                snprintf(why, size, "rows %d and %d have the same geometry (n %lld, c_in %lld, "
                         "%lldx%lld, c_out %lld, padding %d, %d, %s bias)", j, i,
                         (long long)c->n, (long long)c->c_in, (long long)c->h,
                         (long long)c->w, (long long)c->c_out, c->pad_h, c->pad_w,
                         c->bias ? "with" : "without");
                return true;
            }
        }
    }
    return false;
}

/* Seeded rows become the table as it would stand after nrows first uses: oldest first,
 * the next replacement (once full) at the oldest. */
tg_status tg_ctx_set_conv_choices(tg_ctx *ctx, const tg_conv_choice *rows, int nrows) {
    const char *op = "tg_ctx_set_conv_choices";
    if (tg_check_not_null(op, "ctx", ctx)) return tg_error();
    if (!rows && nrows > 0)
        return tg_fail(TG_ERR_ARG, "%s: argument 'rows' is NULL with 'nrows' = %d", op, nrows);
    char why[200];
    if (tg_conv_choices_invalid(rows, nrows, why, sizeof why))
        return tg_fail(TG_ERR_ARG, "%s: argument 'rows': %s; the table is unchanged; hint: "
                       "pass rows as tg_ctx_conv_choices lists them (at most "
                       "TG_CONV_CHOICES_MAX)", op, why);
    for (int i = 0; i < nrows; i++) {
        tg_conv_choice c = rows[i];
        c.gemm_seconds = c.winograd_seconds = 0; /* not timed here */
        ctx->conv_choices[i] = c;
    }
    ctx->nconv_choices = nrows;
    ctx->next_conv_choice = nrows % TG_CTX_CONV_CHOICES;
    ctx->conv_choices_version++;
    return TG_OK;
}

/* The generator ops draw from (dropout). A training loop saves *tg_ctx_rng(ctx) in its
 * tg_train_state and writes it back on resume: the ops then draw the same numbers again. */
tg_rng *tg_ctx_rng(tg_ctx *ctx) { return ctx ? &ctx->rng : NULL; }

void tg_ctx_seed(tg_ctx *ctx, uint64_t seed) {
    if (ctx) tg_rng_seed(&ctx->rng, seed);
}

void tg_ctx_set_sync_timing(tg_ctx *ctx, bool on) {
    if (ctx) ctx->sync_timing = on;
}

tg_status tg_ctx_sync(tg_ctx *ctx) {
    if (!ctx) return tg_fail(TG_ERR_ARG, "tg_ctx_sync: ctx is NULL");
    return tg_device_sync(ctx->device);
}
