/*
 * autograd/anomaly.c — anomaly mode: find the first op whose output or gradient is not
 * finite (PyTorch's torch.autograd.detect_anomaly).
 *
 * A NaN travels: one 0/0 in a loss makes every gradient NaN, then every parameter, and
 * the message a user finally sees ("loss nan at step 812") names nothing. With anomaly
 * mode on, tg_op_apply checks each op's output right after its forward, and tg_backward
 * checks every gradient an op's backward has just written into, so the error names the
 * first op where a non-finite value appeared, its index on the tape, its inputs' shapes
 * and whether those inputs were themselves finite (if they were, the op created the
 * NaN/Inf: log of 0, overflow, division by 0; if not, it came in from outside the tape,
 * e.g. a NaN in the data or the parameters).
 *
 * Cost: one read of every output and written gradient (and a device-to-host copy on
 * CUDA), so it is opt-in per context.
 */
#include "anomaly.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void tg_ctx_set_anomaly(tg_ctx *ctx, bool on) {
    if (ctx) ctx->anomaly = on;
}

bool tg_ctx_anomaly(const tg_ctx *ctx) { return ctx && ctx->anomaly; }

/* Index of the first non-finite value of x[n] (on `device`), -1 when all are finite,
 * -2 when it could not be read (error recorded). */
static int64_t first_nonfinite(tg_device device, const float *x, int64_t n) {
    if (!x || n <= 0) return -1;
    const float *host = x;
    float *copy = NULL;
    if (device != TG_DEVICE_CPU) {
        copy = malloc((size_t)n * sizeof *copy);
        if (!copy) {
            tg_fail(TG_ERR_NOMEM, "anomaly check: out of memory copying %lld values to the host",
                    (long long)n);
            return -2;
        }
        if (tg_device_copy(TG_DEVICE_CPU, copy, device, x, (size_t)n * sizeof *copy)) {
            free(copy);
            return -2;
        }
        host = copy;
    }
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(host[i])) {
            bad = i;
            break;
        }
    }
    free(copy);
    return bad;
}

/* The value at index i of x (on device), for messages. */
static float value_at(tg_device device, const float *x, int64_t i) {
    float v = NAN;
    if (device == TG_DEVICE_CPU) return x[i];
    tg_device_copy(TG_DEVICE_CPU, &v, device, x + i, sizeof v);
    return v;
}

tg_status tg_tensor_check_finite(const tg_tensor *t, bool grad, const char *what) {
    if (!what) what = "tensor";
    if (!t) return tg_fail(TG_ERR_ARG, "tg_tensor_check_finite: %s is NULL", what);
    const float *x = grad ? t->grad : t->data;
    int64_t bad = first_nonfinite(t->device, x, t->numel);
    if (bad == -2) return tg_error();
    if (bad < 0) return TG_OK;
    char s[80];
    return tg_fail(TG_ERR_NONFINITE, "%s%s %s has a non-finite value (%g at flat index %lld)",
                   what, grad ? "'s gradient" : "", tg_shape_str(t->shape, s, sizeof s),
                   (double)value_at(t->device, x, bad), (long long)bad);
}

/* "x (2, 3) finite, weight (4, 3) NaN/Inf, bias -" into buf. */
static void describe_inputs(const tg_record *rec, bool grads, char *buf, size_t size) {
    size_t pos = 0;
    buf[0] = '\0';
    for (int i = 0; i < rec->ninputs && pos < size; i++) {
        const tg_tensor *in = rec->inputs[i];
        char s[80];
        int n;
        if (!in) {
            n = snprintf(buf + pos, size - pos, "%sinput %d absent", i ? ", " : "", i);
        } else {
            const float *x = grads ? in->grad : in->data;
            const char *state = "";
            if (!grads) {
                int64_t bad = first_nonfinite(in->device, x, in->numel);
                state = bad == -1 ? " finite" : bad >= 0 ? " NOT finite" : "";
            }
            n = snprintf(buf + pos, size - pos, "%sinput %d %s%s%s%s", i ? ", " : "", i,
                         in->name ? in->name : "", in->name ? " " : "",
                         tg_shape_str(in->shape, s, sizeof s), state);
        }
        if (n > 0) pos += (size_t)n;
    }
}

tg_status tg_anomaly_forward(tg_ctx *ctx, const tg_record *rec, int index) {
    (void)ctx;
    const tg_tensor *out = rec->out;
    int64_t bad = first_nonfinite(out->device, out->data, out->numel);
    if (bad == -2) return tg_error();
    if (bad < 0) return TG_OK;
    char s[80], ins[400], where[48];
    if (index >= 0) snprintf(where, sizeof where, "tape #%d", index);
    else snprintf(where, sizeof where, "not recorded");
    describe_inputs(rec, false, ins, sizeof ins);
    return tg_fail(TG_ERR_NONFINITE, "anomaly: %s (%s) produced a non-finite output %s "
                   "(%g at flat index %lld); inputs: %s", rec->op->name, where,
                   tg_shape_str(out->shape, s, sizeof s),
                   (double)value_at(out->device, out->data, bad), (long long)bad, ins);
}

tg_status tg_anomaly_backward(tg_ctx *ctx, const tg_record *rec, int index,
                              float *const *dinputs) {
    (void)ctx;
    for (int i = 0; i < rec->ninputs; i++) {
        const tg_tensor *in = rec->inputs[i];
        if (!dinputs[i] || !in) continue;
        int64_t bad = first_nonfinite(in->device, dinputs[i], in->numel);
        if (bad == -2) return tg_error();
        if (bad < 0) continue;
        char s[80], ins[400];
        describe_inputs(rec, true, ins, sizeof ins);
        int64_t gbad = first_nonfinite(rec->out->device, rec->out->grad, rec->out->numel);
        return tg_fail(TG_ERR_NONFINITE, "anomaly: backward of %s (tape #%d) wrote a "
                       "non-finite gradient into input %d %s%s%s (%g at flat index %lld); "
                       "its incoming gradient dL/dout %s was %s; inputs: %s", rec->op->name,
                       index, i, in->name ? in->name : "", in->name ? " " : "",
                       tg_shape_str(in->shape, s, sizeof s),
                       (double)value_at(in->device, dinputs[i], bad), (long long)bad,
                       tg_shape_str(rec->out->shape, s, sizeof s),
                       gbad == -1 ? "finite" : "NOT finite", ins);
    }
    return TG_OK;
}
