/*
 * autograd/tape.c — recording ops, replaying them backward, and showing the tape
 * (table, Graphviz DOT, explain mode). The contract is in tape.h.
 */
#include "tape.h"

#include "../core/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool tg_check_tensor(const char *op, const char *arg, const tg_tensor *t, int ndim) {
    if (!t) {
        /* An earlier failure already explains this NULL; otherwise say which argument. */
        tg_fail(TG_ERR_ARG, "%s: argument '%s' is NULL", op, arg);
        return false;
    }
    if (ndim >= 0 && t->shape.ndim != ndim) {
        char s[80];
        tg_fail(TG_ERR_SHAPE, "%s: argument '%s' has shape %s (%d dims); expected %d dims",
                op, arg, tg_shape_str(t->shape, s, sizeof s), t->shape.ndim, ndim);
        return false;
    }
    return true;
}

bool tg_check_same_device(const char *op, tg_ctx *ctx, tg_tensor *const *ts, int n) {
    for (int i = 0; i < n; i++) {
        if (ts[i] && ts[i]->device != ctx->device) {
            tg_fail(TG_ERR_ARG, "%s: input %d is on %s but the context is on %s; copy it "
                    "explicitly", op, i, tg_device_name(ts[i]->device),
                    tg_device_name(ctx->device));
            return false;
        }
    }
    return true;
}

static tg_record *tape_push(tg_tape *tape) {
    if (tape->len == tape->cap) {
        int cap = tape->cap ? 2 * tape->cap : 64;
        tg_record *records = realloc(tape->records, (size_t)cap * sizeof *records);
        if (!records) {
            tg_fail(TG_ERR_NOMEM, "tape: out of memory for %d records", cap);
            return NULL;
        }
        tape->records = records;
        tape->cap = cap;
    }
    return &tape->records[tape->len++];
}

tg_tensor *tg_op_apply(tg_ctx *ctx, const tg_op *op, tg_tensor *const *inputs, int ninputs,
                       tg_shape out_shape, const void *params, size_t size,
                       float *share_data) {
    TG_ASSERT(op && ninputs <= TG_MAX_INPUTS && size <= TG_OP_PARAMS_BYTES);
    if (!ctx) {
        tg_fail(TG_ERR_ARG, "%s: ctx is NULL", op->name);
        return NULL;
    }
    if (!tg_check_same_device(op->name, ctx, inputs, ninputs)) return NULL;
    tg_forward_fn forward = op->forward[ctx->device];
    if (!forward) {
        tg_fail(TG_ERR_UNSUPPORTED, "%s has no %s forward", op->name,
                tg_device_name(ctx->device));
        return NULL;
    }
    bool needs_grad = false;
    for (int i = 0; i < ninputs; i++) needs_grad |= inputs[i] && inputs[i]->requires_grad;
    needs_grad &= ctx->grad_enabled;
    if (needs_grad && ctx->tape.consumed) {
        tg_fail(TG_ERR_STATE, "%s: this step's tape was already replayed by tg_backward; "
                "call tg_step_end(ctx) before recording the next step", op->name);
        return NULL;
    }
    if (needs_grad && !op->backward[ctx->device]) {
        tg_fail(TG_ERR_UNSUPPORTED, "%s has no %s backward (call it under "
                "tg_set_grad_enabled(ctx, false) for inference)", op->name,
                tg_device_name(ctx->device));
        return NULL;
    }
    tg_tensor *out = share_data ? tg_ctx_tensor_view(ctx, out_shape, share_data)
                                : tg_ctx_tensor(ctx, out_shape);
    if (!out) return NULL;
    out->requires_grad = needs_grad;

    tg_record local, *rec = needs_grad ? tape_push(&ctx->tape) : &local;
    if (!rec) return NULL;
    memset(rec, 0, sizeof *rec);
    rec->op = op;
    rec->ninputs = ninputs;
    for (int i = 0; i < ninputs; i++) rec->inputs[i] = inputs[i];
    rec->out = out;
    if (params) memcpy(rec->params, params, size);

    if (ctx->sync_timing) tg_device_sync(ctx->device);
    double t0 = tg_now();
    tg_status st = forward(ctx, rec);
    if (ctx->sync_timing && st == TG_OK) st = tg_device_sync(ctx->device);
    rec->fwd_seconds = tg_now() - t0;
    if (st != TG_OK) {
        if (needs_grad) ctx->tape.len--;
        tg_fail(st, "%s: forward failed", op->name);
        return NULL;
    }
    return out;
}

tg_tensor *tg_record_save(tg_ctx *ctx, tg_record *rec, int slot, tg_shape shape) {
    TG_ASSERT(slot >= 0 && slot < TG_MAX_SAVED);
    tg_tensor *t = tg_ctx_tensor(ctx, shape);
    if (t) {
        rec->saved[slot] = t;
        rec->saved_bytes += (size_t)t->numel * sizeof(float);
    }
    return t;
}

void *tg_record_save_bytes(tg_ctx *ctx, tg_record *rec, size_t bytes) {
    void *p = tg_ctx_scratch(ctx, bytes);
    if (p) rec->saved_bytes += bytes;
    return p;
}

/* L2 norm of a gradient, read on the host (explain mode only). */
static double grad_norm(const tg_tensor *t, const float *g) {
    float *host = t->device == TG_DEVICE_CPU ? (float *)g : malloc((size_t)t->numel * 4);
    if (!host) return NAN;
    if (host != g && tg_device_copy(TG_DEVICE_CPU, host, t->device, g, (size_t)t->numel * 4)) {
        free(host);
        return NAN;
    }
    double s = 0;
    for (int64_t i = 0; i < t->numel; i++) s += (double)host[i] * host[i];
    if (host != g) free(host);
    return sqrt(s);
}

static const char *tensor_label(const tg_tensor *t, char *buf, size_t size) {
    if (t->name) snprintf(buf, size, "%s", t->name);
    else snprintf(buf, size, "t%d", t->id);
    return buf;
}

tg_status tg_backward_with(tg_ctx *ctx, tg_tensor *out, const float *dout) {
    if (!ctx) return tg_fail(TG_ERR_ARG, "tg_backward: ctx is NULL");
    if (tg_error() != TG_OK) return tg_error(); /* an op failed: replay nothing */
    if (!out) return tg_fail(TG_ERR_ARG, "tg_backward: loss is NULL");
    if (!dout) return tg_fail(TG_ERR_ARG, "tg_backward: the seed gradient is NULL");
    if (ctx->tape.consumed) {
        return tg_fail(TG_ERR_STATE, "tg_backward: this tape was already replayed; a tape "
                       "is replayed once — call tg_step_end(ctx) and run the forward again");
    }
    if (!out->requires_grad) {
        return tg_fail(TG_ERR_STATE, "tg_backward: the loss does not require grad (no "
                       "parameter or input with requires_grad reaches it, or grad mode was "
                       "off when it was computed)");
    }
    if (out->device != ctx->device)
        return tg_fail(TG_ERR_ARG, "tg_backward: the loss is on another device than ctx");
    tg_status st = tg_ctx_ensure_grad(ctx, out);
    if (st) return st;
    /* Seed: dL/dout += dout. The seed is on the host for scalars, device otherwise. */
    float *seed = tg_ctx_scratch(ctx, (size_t)out->numel * sizeof(float));
    if (!seed) return tg_error();
    if ((st = tg_device_copy(ctx->device, seed, ctx->device, dout,
                             (size_t)out->numel * sizeof(float))))
        return st;
    if (ctx->device == TG_DEVICE_CPU) {
        for (int64_t i = 0; i < out->numel; i++) out->grad[i] += seed[i];
    } else {
        if ((st = tg_device_copy(ctx->device, out->grad, ctx->device, seed,
                                 (size_t)out->numel * sizeof(float))))
            return st;
    }
    ctx->tape.consumed = true;
    FILE *ex = ctx->tape.explain;
    if (ctx->dist) tg_dist_backward_hook(ctx->dist, TG_DIST_BACKWARD_BEGIN);
    for (int r = ctx->tape.len - 1; r >= 0; r--) {
        tg_record *rec = &ctx->tape.records[r];
        if (!rec->out->grad) continue; /* no gradient reached this op's output */
        /* The clock includes zeroing the inputs' fresh gradient buffers: that is part of
         * what this op's backward costs (profiles must add up to the step). */
        if (ctx->sync_timing) tg_device_sync(ctx->device);
        double t0 = tg_now();
        float *dinputs[TG_MAX_INPUTS] = {0};
        bool any = false;
        for (int i = 0; i < rec->ninputs; i++) {
            tg_tensor *in = rec->inputs[i];
            if (!in || !in->requires_grad) continue;
            if ((st = tg_ctx_ensure_grad(ctx, in))) return st;
            dinputs[i] = in->grad;
            any = true;
        }
        if (!any) continue;
        if (ex) {
            char s[80], l[64];
            fprintf(ex, "backward #%d %-14s dL/d%s %s |g|=%.6g\n    %s\n", r, rec->op->name,
                    tensor_label(rec->out, l, sizeof l),
                    tg_shape_str(rec->out->shape, s, sizeof s),
                    grad_norm(rec->out, rec->out->grad),
                    rec->op->backward_doc ? rec->op->backward_doc : "");
        }
        st = rec->op->backward[ctx->device](ctx, rec, dinputs, rec->out->grad);
        if (ctx->sync_timing && st == TG_OK) st = tg_device_sync(ctx->device);
        rec->bwd_seconds = tg_now() - t0;
        if (st != TG_OK) return tg_fail(st, "%s: backward failed", rec->op->name);
        /* Every consumer of rec->out was recorded after rec and has run: its gradient
         * is complete and no longer needed. Only leaves keep theirs (as in PyTorch). */
        tg_ctx_release_grad(ctx, rec->out);
        /* Parameters whose last contribution this was are final: start their bucket. */
        if (ctx->dist) tg_dist_backward_hook(ctx->dist, r);
    }
    if (ctx->dist) tg_dist_backward_hook(ctx->dist, TG_DIST_BACKWARD_END);
    return TG_OK;
}

tg_status tg_backward(tg_ctx *ctx, tg_tensor *loss) {
    if (!ctx) return tg_fail(TG_ERR_ARG, "tg_backward: ctx is NULL");
    if (tg_error() != TG_OK) return tg_error();
    if (!loss) return tg_fail(TG_ERR_ARG, "tg_backward: loss is NULL");
    if (loss->numel != 1) {
        char s[80];
        return tg_fail(TG_ERR_SHAPE, "tg_backward: the loss has shape %s; it must have one "
                       "element (use tg_backward_with to seed a non-scalar output)",
                       tg_shape_str(loss->shape, s, sizeof s));
    }
    float *one = tg_ctx_scratch(ctx, sizeof(float));
    if (!one) return tg_error();
    float host_one = 1.0f;
    tg_status st = tg_device_copy(ctx->device, one, TG_DEVICE_CPU, &host_one, sizeof host_one);
    if (st) return st;
    return tg_backward_with(ctx, loss, one);
}

int tg_tape_length(const tg_ctx *ctx) { return ctx ? ctx->tape.len : 0; }

void tg_tape_set_explain(tg_ctx *ctx, FILE *f) {
    if (ctx) ctx->tape.explain = f;
}

void tg_tape_print(const tg_ctx *ctx, FILE *f) {
    if (!ctx || !f) return;
    fprintf(f, "%4s  %-14s %-52s %-20s %11s %10s %10s\n", "#", "op", "inputs", "output",
            "saved", "fwd ms", "bwd ms");
    size_t total_saved = 0;
    double total_fwd = 0, total_bwd = 0;
    for (int r = 0; r < ctx->tape.len; r++) {
        const tg_record *rec = &ctx->tape.records[r];
        char ins[256] = "", s[80];
        size_t pos = 0;
        for (int i = 0; i < rec->ninputs && pos < sizeof ins; i++) {
            if (!rec->inputs[i]) continue;
            int n = snprintf(ins + pos, sizeof ins - pos, "%s%s", pos ? " " : "",
                             tg_shape_str(rec->inputs[i]->shape, s, sizeof s));
            if (n > 0) pos += (size_t)n;
        }
        fprintf(f, "%4d  %-14s %-52s %-20s %11zu %10.3f %10.3f\n", r, rec->op->name, ins,
                tg_shape_str(rec->out->shape, s, sizeof s), rec->saved_bytes,
                1e3 * rec->fwd_seconds, 1e3 * rec->bwd_seconds);
        total_saved += rec->saved_bytes;
        total_fwd += rec->fwd_seconds;
        total_bwd += rec->bwd_seconds;
    }
    fprintf(f, "%4s  %-14s %-52s %-20s %11zu %10.3f %10.3f\n", "", "total", "", "", total_saved,
            1e3 * total_fwd, 1e3 * total_bwd);
}

static void dot_tensor(FILE *f, const tg_tensor *t) {
    char s[80], l[64];
    fprintf(f, "  \"t%p\" [shape=box, style=filled, fillcolor=\"%s\", label=\"%s\\n%s\"];\n",
            (const void *)t, t->is_param ? "#ffe9b3" : "#e8f0ff", tensor_label(t, l, sizeof l),
            tg_shape_str(t->shape, s, sizeof s));
}

tg_status tg_tape_write_dot(const tg_ctx *ctx, FILE *f) {
    if (!ctx || !f) return tg_fail(TG_ERR_ARG, "tg_tape_write_dot: %s is NULL",
                                   ctx ? "file" : "ctx");
    fprintf(f, "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (int r = 0; r < ctx->tape.len; r++) {
        const tg_record *rec = &ctx->tape.records[r];
        fprintf(f, "  \"op%d\" [shape=ellipse, label=\"#%d %s\"];\n", r, r, rec->op->name);
        for (int i = 0; i < rec->ninputs; i++) {
            if (!rec->inputs[i]) continue;
            dot_tensor(f, rec->inputs[i]);
            fprintf(f, "  \"t%p\" -> \"op%d\";\n", (const void *)rec->inputs[i], r);
        }
        dot_tensor(f, rec->out);
        fprintf(f, "  \"op%d\" -> \"t%p\";\n", r, (const void *)rec->out);
    }
    fprintf(f, "}\n");
    return ferror(f) ? tg_fail(TG_ERR_IO, "tg_tape_write_dot: write failed") : TG_OK;
}

int tg_tape_profile(const tg_ctx *ctx, tg_op_profile *rows, int max_rows) {
    if (!ctx) return 0;
    for (int r = 0; r < ctx->tape.len && r < max_rows && rows; r++) {
        const tg_record *rec = &ctx->tape.records[r];
        tg_op_profile *row = &rows[r];
        memset(row, 0, sizeof *row);
        row->op = rec->op->name;
        if (rec->op->describe) rec->op->describe(rec, row->detail, sizeof row->detail);
        row->ninputs = rec->ninputs;
        for (int i = 0; i < rec->ninputs && i < 4; i++)
            row->in_shape[i] = rec->inputs[i] ? rec->inputs[i]->shape : (tg_shape){.ndim = -1};
        row->out_shape = rec->out->shape;
        row->fwd_seconds = rec->fwd_seconds;
        row->bwd_seconds = rec->bwd_seconds;
        row->saved_bytes = rec->saved_bytes;
        if (rec->op->cost)
            rec->op->cost(rec, &row->fwd_flops, &row->fwd_bytes, &row->bwd_flops,
                          &row->bwd_bytes);
    }
    return ctx->tape.len;
}
