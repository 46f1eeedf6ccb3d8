/*
 * autograd/tape.c — recording ops, replaying them backward, and showing the tape
 * (table, Graphviz DOT, explain mode). The contract is in tape.h.
 */
#include "tape.h"
#include "anomaly.h"

#include "../core/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef TG_HAVE_CUDA
#include "../cuda/tg_cuda.h"
#endif

/* The clock around one op's forward or backward. Without sync timing it is the host
 * clock (on a GPU: how long the launches took to queue). With it (tg_ctx_set_sync_timing,
 * on whenever a tool profiles): the device is drained first, then on CUDA the op's time
 * is the GPU time between two events on the library's stream around its work (what the
 * GPU spent on it, launch gaps included), on the CPU the host clock. */
static tg_status op_clock_start(tg_ctx *ctx, double *t0) {
    tg_status st = TG_OK;
    if (ctx->sync_timing) st = tg_device_sync(ctx->device);
#ifdef TG_HAVE_CUDA
    if (ctx->sync_timing && st == TG_OK && ctx->device == TG_DEVICE_CUDA)
        st = tg_cuda_timer_start();
#endif
    *t0 = tg_now();
    return st;
}

/* Called once after every op_clock_start that succeeded, whether or not the op did
 * (on CUDA it pops the clock). */
static tg_status op_clock_stop(tg_ctx *ctx, double t0, double *seconds) {
#ifdef TG_HAVE_CUDA
    if (ctx->sync_timing && ctx->device == TG_DEVICE_CUDA) return tg_cuda_timer_stop(seconds);
#endif
    tg_status st = ctx->sync_timing ? tg_device_sync(ctx->device) : TG_OK;
    *seconds = tg_now() - t0;
    return st;
}

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
    if (!op || !op->name) {
        tg_fail(TG_ERR_ARG, "tg_op_apply: the op descriptor%s is NULL", op ? "'s name" : "");
        return NULL;
    }
    if (ninputs < 0 || ninputs > TG_MAX_INPUTS || (ninputs > 0 && !inputs)) {
        tg_fail(TG_ERR_ARG, "%s: tg_op_apply got %d inputs%s; an op takes 0 to %d "
                "(TG_MAX_INPUTS)", op->name, ninputs, ninputs > 0 && !inputs ? " but a NULL "
                "input array" : "", TG_MAX_INPUTS);
        return NULL;
    }
    if (size > TG_OP_PARAMS_BYTES || (size > 0 && !params)) {
        tg_fail(TG_ERR_ARG, "%s: tg_op_apply got %zu bytes of params%s; at most %d "
                "(TG_OP_PARAMS_BYTES) are kept inline — keep larger data with "
                "tg_record_save_bytes", op->name, size, size > 0 && !params ? " from NULL" : "",
                TG_OP_PARAMS_BYTES);
        return NULL;
    }
    if (!op->forward[TG_DEVICE_CPU]) {
        tg_fail(TG_ERR_ARG, "%s: the op descriptor has no CPU forward (every op needs one)",
                op->name);
        return NULL;
    }
    if (!ctx) {
        tg_fail(TG_ERR_ARG, "%s: ctx is NULL", op->name);
        return NULL;
    }
    if (!tg_check_same_device(op->name, ctx, inputs, ninputs)) return NULL;
    tg_threads_apply();
    if (!tg_ctx_check_inputs(ctx, op->name, inputs, ninputs)) return NULL;
    if (!tg_shape_check(op->name, "output", out_shape, NULL, NULL)) return NULL;
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
    rec->index = needs_grad ? ctx->tape.len - 1 : -1;
    rec->ninputs = ninputs;
    for (int i = 0; i < ninputs; i++) rec->inputs[i] = inputs[i];
    rec->out = out;
    if (params && size) memcpy(rec->params, params, size);

    double t0, t1 = 0;
    tg_status st = op_clock_start(ctx, &t0);
    if (st == TG_OK) {
        st = forward(ctx, rec);
        tg_status cs = op_clock_stop(ctx, t0, &t1); /* also pops the clock on failure */
        if (st == TG_OK) st = cs;
        rec->fwd_seconds = t1;
    }
    if (st != TG_OK) {
        if (needs_grad) ctx->tape.len--;
        tg_fail(st, "%s: forward failed", op->name);
        return NULL;
    }
    if (ctx->anomaly && tg_anomaly_forward(ctx, rec, needs_grad ? ctx->tape.len - 1 : -1))
        return NULL;
    return out;
}

tg_tensor *tg_record_save(tg_ctx *ctx, tg_record *rec, int slot, tg_shape shape) {
    if (!ctx || !rec) {
        tg_fail(TG_ERR_ARG, "tg_record_save: %s is NULL", ctx ? "rec" : "ctx");
        return NULL;
    }
    if (slot < 0 || slot >= TG_MAX_SAVED) {
        tg_fail(TG_ERR_ARG, "%s: tg_record_save slot %d is outside 0..%d (TG_MAX_SAVED - 1)",
                rec->op ? rec->op->name : "tg_record_save", slot, TG_MAX_SAVED - 1);
        return NULL;
    }
    tg_tensor *t = tg_ctx_tensor(ctx, shape);
    if (t) {
        rec->saved[slot] = t;
        rec->saved_bytes += (size_t)t->numel * sizeof(float);
    }
    return t;
}

void *tg_record_save_bytes(tg_ctx *ctx, tg_record *rec, size_t bytes) {
    if (!ctx || !rec) {
        tg_fail(TG_ERR_ARG, "tg_record_save_bytes: %s is NULL", ctx ? "rec" : "ctx");
        return NULL;
    }
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

const char *tg_record_explain(const tg_record *rec, char *buf, size_t size) {
    if (!buf || size == 0) return "";
    buf[0] = '\0';
    if (rec->op->explain) rec->op->explain(rec, buf, size);
    else if (rec->op->backward_doc) snprintf(buf, size, "%s", rec->op->backward_doc);
    return buf;
}

/* Explain mode, after the walk: every parameter the tape reached, in first-use order,
 * with its gradient's L2 norm (what the optimizer is about to apply). */
static void explain_param_grads(const tg_ctx *ctx, FILE *ex) {
    fprintf(ex, "parameter gradients (L2 norm):\n");
    for (int r = 0; r < ctx->tape.len; r++) {
        const tg_record *rec = &ctx->tape.records[r];
        for (int i = 0; i < rec->ninputs; i++) {
            const tg_tensor *p = rec->inputs[i];
            if (!p || !p->is_param || !p->grad) continue;
            bool seen = false; /* first use only (shared weights appear once) */
            for (int q = 0; q < r && !seen; q++)
                for (int j = 0; j < ctx->tape.records[q].ninputs; j++)
                    seen |= ctx->tape.records[q].inputs[j] == p;
            for (int j = 0; j < i; j++) seen |= rec->inputs[j] == p;
            if (seen) continue;
            char s[80], l[64];
            fprintf(ex, "    %-28s %-20s |grad|=%.6g\n", tensor_label(p, l, sizeof l),
                    tg_shape_str(p->shape, s, sizeof s), grad_norm(p, p->grad));
        }
    }
}

/* Whether input i of rec may get an uninitialised gradient buffer: the op writes fresh
 * gradients on this device and the tensor is not also another of its inputs (the second
 * contribution would overwrite the first). */
static bool fresh_ok(const tg_record *rec, int i, tg_device dev) {
    if (!(rec->op->writes_fresh_grads[dev] >> i & 1u)) return false;
    for (int j = 0; j < rec->ninputs; j++)
        if (j != i && rec->inputs[j] == rec->inputs[i]) return false;
    return true;
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
    if (!tg_ctx_check_owned(ctx, "tg_backward", "the loss", out, true)) return tg_error();
    tg_threads_apply();
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
#ifdef TG_HAVE_CUDA
        /* Adds, as on the CPU: a loss that already holds a gradient keeps it. */
        if ((st = accumulate_cuda(out->grad, seed, out->numel))) return st;
#else
        return tg_cuda_check();
#endif
    }
    ctx->tape.consumed = true;
    FILE *ex = ctx->tape.explain;
    if (ctx->dist) tg_dist_backward_hook(ctx->dist, TG_DIST_BACKWARD_BEGIN);
    for (int r = ctx->tape.len - 1; r >= 0; r--) {
        tg_record *rec = &ctx->tape.records[r];
        if (!rec->out->grad) continue; /* no gradient reached this op's output */
        /* The clock includes zeroing the inputs' fresh gradient buffers: that is part of
         * what this op's backward costs (profiles must add up to the step). */
        double t0;
        if ((st = op_clock_start(ctx, &t0))) return tg_fail(st, "%s: backward clock", rec->op->name);
        float *dinputs[TG_MAX_INPUTS] = {0};
        bool any = false;
        rec->fresh_grads = 0;
        for (int i = 0; i < rec->ninputs; i++) {
            tg_tensor *in = rec->inputs[i];
            if (!in || !in->requires_grad) continue;
            if (!in->grad && fresh_ok(rec, i, ctx->device)) {
                /* the op's backward writes it whole: no zeroing pass (tg_grad_fresh) */
                if ((st = tg_ctx_new_grad(ctx, in, false))) break;
                rec->fresh_grads |= 1u << i;
            } else if ((st = tg_ctx_ensure_grad(ctx, in))) {
                break;
            }
            dinputs[i] = in->grad;
            any = true;
        }
        if (st || !any) {
            double unused;
            tg_status cs = op_clock_stop(ctx, t0, &unused); /* pop the clock */
            if (st) return st;
            if (cs) return cs;
            continue;
        }
        if (ex) {
            char s[80], l[64], doc[256];
            fprintf(ex, "backward #%d %-14s dL/d%s %s |g|=%.6g\n    %s\n", r, rec->op->name,
                    tensor_label(rec->out, l, sizeof l),
                    tg_shape_str(rec->out->shape, s, sizeof s),
                    grad_norm(rec->out, rec->out->grad), tg_record_explain(rec, doc, sizeof doc));
        }
        st = rec->op->backward[ctx->device](ctx, rec, dinputs, rec->out->grad);
        rec->fresh_grads = 0;
        double t1 = 0;
        tg_status cs = op_clock_stop(ctx, t0, &t1); /* also pops the clock on failure */
        rec->bwd_seconds = t1;
        if (st == TG_OK) st = cs;
        if (st != TG_OK) return tg_fail(st, "%s: backward failed", rec->op->name);
        if (ctx->anomaly && (st = tg_anomaly_backward(ctx, rec, r, dinputs))) return st;
        /* Every consumer of rec->out was recorded after rec and has run: its gradient
         * is complete and no longer needed. Only leaves keep theirs (as in PyTorch). */
        tg_ctx_release_grad(ctx, rec->out);
        /* Parameters whose last contribution this was are final: start their bucket. */
        if (ctx->dist) tg_dist_backward_hook(ctx->dist, r);
    }
    if (ex) explain_param_grads(ctx, ex);
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

/* "t7 (1, 16, 8, 8)" or "conv1.weight (16, 1, 3, 3)": the label the table, the DOT graph
 * and the explain log share. */
static const char *tensor_desc(const tg_tensor *t, char *buf, size_t size) {
    char s[80], l[64];
    snprintf(buf, size, "%s %s", tensor_label(t, l, sizeof l),
             tg_shape_str(t->shape, s, sizeof s));
    return buf;
}

void tg_tape_print(const tg_ctx *ctx, FILE *f) {
    if (!ctx || !f) return;
    fprintf(f, "%4s  %-14s %-64s %-24s %11s %10s %10s\n", "#", "op", "inputs", "output",
            "saved", "fwd ms", "bwd ms");
    size_t total_saved = 0;
    double total_fwd = 0, total_bwd = 0;
    bool zero_saved = false;
    for (int r = 0; r < ctx->tape.len; r++) {
        const tg_record *rec = &ctx->tape.records[r];
        char ins[512] = "", d[160];
        size_t pos = 0;
        for (int i = 0; i < rec->ninputs && pos < sizeof ins; i++) {
            if (!rec->inputs[i]) continue;
            int n = snprintf(ins + pos, sizeof ins - pos, "%s%s", pos ? ", " : "",
                             tensor_desc(rec->inputs[i], d, sizeof d));
            if (n > 0) pos += (size_t)n;
        }
        fprintf(f, "%4d  %-14s %-64s %-24s %11zu %10.3f %10.3f\n", r, rec->op->name, ins,
                tensor_desc(rec->out, d, sizeof d), rec->saved_bytes,
                1e3 * rec->fwd_seconds, 1e3 * rec->bwd_seconds);
        total_saved += rec->saved_bytes;
        total_fwd += rec->fwd_seconds;
        total_bwd += rec->bwd_seconds;
        zero_saved |= rec->saved_bytes == 0;
    }
    fprintf(f, "%4s  %-14s %-64s %-24s %11zu %10.3f %10.3f\n", "", "total", "", "",
            total_saved, 1e3 * total_fwd, 1e3 * total_bwd);
    if (zero_saved)
        fprintf(f, "saved 0: the op's backward needs only its inputs (conv, linear, add), and "
                "those stay alive in the step arena until tg_step_end, so nothing is copied.\n");
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
        char detail[64] = "";
        if (rec->op->describe) rec->op->describe(rec, detail, sizeof detail);
        fprintf(f, "  \"op%d\" [shape=ellipse, label=\"#%d %s%s%s\"];\n", r, r, rec->op->name,
                detail[0] ? "\\n" : "", detail);
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
