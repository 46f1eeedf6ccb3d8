/*
 * fuzz/fuzz_api.c — fuzz target for the public API's SHAPE and OPTIONS arguments (issue
 * 11): tensors, parameters, reshape/flatten, conv2d/conv1d, max/avg pool, linear and the
 * model constructors, driven by sizes drawn from the input bytes — small, zero, negative,
 * powers of two up to 2^62, INT_MAX, INT64_MAX. Any input must give either a valid result
 * (numel = the product of the dims, <= TG_MAX_NUMEL, no error pending) or NULL with a
 * recorded error and a message; never a crash, a wrapped size, a leak or an out-of-bounds
 * access (ASan + UBSan watch).
 *
 * Calls whose output would be valid but large (2^22 .. 2^41 elements by a double-precision
 * estimate) are skipped: they are legal and only cost memory. Everything below is run,
 * and everything above must be refused.
 *
 * Built two ways: as a libFuzzer target by fuzz/run.sh (clang), and with
 * fuzz/replay_main.c as a plain program (meson test `fuzz_api`, any compiler) that
 * replays tests/corpus/api/ and then feeds random inputs for a bounded time.
 */
#include <tapegrad.h>

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant: say which, then abort (the fuzzer keeps the input). */
#define FAIL(what)                                                                        \
    do {                                                                                  \
        fprintf(stderr, "fuzz_api: %s:%d: %s (pending: %s)\n", __FILE__, __LINE__, what,   \
                tg_error_message());                                                      \
        abort();                                                                          \
    } while (0)

typedef struct reader {
    const uint8_t *p;
    size_t n, off;
} reader;

static uint8_t u8(reader *r) { return r->off < r->n ? r->p[r->off++] : 0; }

/* A dimension: mostly small, sometimes 0/negative, a power of two, near a power of
 * two, INT_MAX or INT64_MAX. */
static int64_t pick_dim(reader *r) {
    uint8_t k = u8(r), v = u8(r);
    switch (k % 10) {
    case 4: return -(int64_t)(v % 3);
    case 5: return (int64_t)1 << (v % 63);
    case 6: return ((int64_t)1 << (20 + v % 43)) + (int64_t)(u8(r) % 3) - 1;
    case 7: return v % 2 ? INT_MAX : INT64_MAX;
    default: return 1 + v % 6;
    }
}

/* An int option (stride, padding, kernel, groups): small, 0, negative or huge. */
static int pick_opt(reader *r) {
    uint8_t k = u8(r), v = u8(r);
    switch (k % 8) {
    case 5: return -(int)(v % 3) - 1;
    case 6: return v % 2 ? INT_MAX : INT_MAX / 2;
    case 7: return 1 << (v % 31);
    default: return v % 5;
    }
}

static tg_shape pick_shape(reader *r, int ndim) {
    tg_shape s = {.ndim = ndim};
    for (int i = 0; i < ndim && i < TG_MAX_DIMS; i++) s.dim[i] = pick_dim(r);
    return s;
}

/* numel of a shape in double (no wrap), 0 when a dim is <= 0 or ndim is out of range. */
static double numel_d(tg_shape s) {
    if (s.ndim < 0 || s.ndim > TG_MAX_DIMS) return 0;
    double n = 1;
    for (int i = 0; i < s.ndim; i++) {
        if (s.dim[i] <= 0) return 0;
        n *= (double)s.dim[i];
    }
    return n;
}

/* Legal but too large to allocate while fuzzing. */
static bool too_big_to_run(double n) { return n > (1 << 22) && n < 0x1p41; }

static void check_tensor(const tg_tensor *t) {
    if (!t) {
        if (tg_error() == TG_OK || !tg_error_message()[0]) FAIL("NULL without an error");
        return;
    }
    if (tg_error() != TG_OK) FAIL("a result and an error");
    double n = numel_d(t->shape);
    if (t->numel <= 0 || t->numel > TG_MAX_NUMEL || (double)t->numel != n ||
        tg_shape_numel(t->shape) != t->numel)
        FAIL("numel does not match the shape");
    if (!t->data) FAIL("no data");
    volatile float sink = t->data[0] + t->data[t->numel - 1]; /* both ends are memory */
    (void)sink;
}

/* A small step tensor of random values with `ndim` small dims (1..4 each). */
static tg_tensor *small_tensor(tg_ctx *ctx, reader *r, int ndim) {
    tg_shape s = {.ndim = ndim};
    for (int i = 0; i < ndim; i++) s.dim[i] = 1 + u8(r) % 4;
    tg_tensor *t = tg_tensor_zeros(ctx, s);
    if (t)
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)(u8(r) % 7) - 3.0f;
    return t;
}

static void one_call(tg_ctx *ctx, tg_params *ps, reader *r, int *nparams) {
    uint8_t op = u8(r) % 12;
    tg_tensor *out = NULL;
    tg_error_clear(); /* each call is judged on its own */
    switch (op) {
    case 0:
    case 1: { /* tensor constructors with any shape */
        tg_shape s = pick_shape(r, u8(r) % 6 - 1); /* ndim -1 .. 4: -1 is out of range */
        if (too_big_to_run(numel_d(s))) return;
        out = op ? tg_tensor_zeros(ctx, s) : tg_tensor_new(ctx, s);
        if (out && op) /* zeros really are zeros, at both ends */
            if (out->data[0] != 0.0f || out->data[out->numel - 1] != 0.0f) FAIL("zeros not 0");
        break;
    }
    case 2: { /* parameters */
        tg_shape s = pick_shape(r, 1 + u8(r) % 4);
        if (too_big_to_run(numel_d(s))) return;
        char name[16];
        snprintf(name, sizeof name, "p%d", (*nparams)++);
        out = tg_params_add(ps, name, s);
        if (out && out->grad[out->numel - 1] != 0.0f) FAIL("parameter grad not 0");
        break;
    }
    case 3:
    case 4: { /* reshape / flatten of a small tensor */
        tg_tensor *x = small_tensor(ctx, r, 1 + u8(r) % 4);
        if (op == 3) {
            tg_shape s = pick_shape(r, u8(r) % 5);
            if (u8(r) % 2 && s.ndim > 0) s.dim[u8(r) % s.ndim] = -1;
            out = tg_reshape(ctx, x, s);
            if (out && out->numel != x->numel) FAIL("reshape changed numel");
        } else {
            out = tg_flatten(u8(r) % 8 ? ctx : NULL, x);
        }
        break;
    }
    case 5:
    case 6: { /* conv2d / conv1d with any options */
        bool is1d = op == 6;
        int nd = is1d ? 3 : 4;
        tg_tensor *x = small_tensor(ctx, r, nd);
        tg_shape ws = {.ndim = nd};
        for (int i = 0; i < nd; i++) ws.dim[i] = 1 + u8(r) % 3;
        if (u8(r) % 4 == 0) ws.dim[nd - 1] = pick_dim(r); /* a huge kernel */
        tg_conv2d_opts o = {.stride_h = pick_opt(r), .stride_w = pick_opt(r),
                            .pad_h = pick_opt(r), .pad_w = pick_opt(r),
                            .dilation_h = pick_opt(r), .dilation_w = pick_opt(r),
                            .groups = pick_opt(r)};
        if (u8(r) % 2) ws.dim[1] = x->shape.dim[1]; /* often a matching weight */
        if (numel_d(ws) > 4096) return;
        tg_tensor *w = tg_tensor_zeros(ctx, ws);
        tg_tensor *b = u8(r) % 2 ? tg_tensor_zeros(ctx, tg_shape1(ws.dim[0])) : NULL;
        if (tg_error() != TG_OK) { /* a weight of a bad shape: refused, as it must be */
            tg_error_clear();
            return;
        }
        /* The output geometry the op will compute, in double. */
        double sh = o.stride_h > 0 ? o.stride_h : 1, sw = o.stride_w > 0 ? o.stride_w : 1;
        double dh = o.dilation_h > 0 ? o.dilation_h : 1, dw = o.dilation_w > 0 ? o.dilation_w : 1;
        double H = is1d ? 1 : (double)x->shape.dim[2], W = (double)x->shape.dim[nd - 1];
        double KH = is1d ? 1 : (double)ws.dim[2], KW = (double)ws.dim[nd - 1];
        double ph = is1d ? 0 : fmax(o.pad_h, 0), pw = fmax(o.pad_w, 0);
        double oh = floor((H + 2 * ph - (is1d ? 1 : dh) * (KH - 1) - 1) / (is1d ? 1 : sh)) + 1;
        double ow = floor((W + 2 * pw - dw * (KW - 1) - 1) / sw) + 1;
        double n_out = (double)x->shape.dim[0] * (double)ws.dim[0] * fmax(oh, 0) * fmax(ow, 0);
        /* A legal output of up to 2^22 elements still costs its kernel's work per element. */
        if (too_big_to_run(n_out) || (n_out > (1 << 16) && n_out < 0x1p41)) return;
        out = is1d ? tg_conv1d(ctx, x, w, b, o) : tg_conv2d(ctx, x, w, b, o);
        break;
    }
    case 7:
    case 8: { /* max / avg pool with any options */
        tg_tensor *x = small_tensor(ctx, r, 4);
        tg_pool2d_opts o = {.kernel_h = pick_opt(r), .kernel_w = pick_opt(r),
                            .stride_h = pick_opt(r), .stride_w = pick_opt(r),
                            .pad_h = pick_opt(r), .pad_w = pick_opt(r)};
        out = op == 7 ? tg_max_pool2d(ctx, x, o) : tg_avg_pool2d(ctx, x, o);
        if (out && op == 8) /* inputs are in [-3, 3]: so is every mean */
            for (int64_t i = 0; i < out->numel; i++)
                if (!(fabsf(out->data[i]) <= 3.0f)) FAIL("avg pool out of range");
        break;
    }
    case 9: { /* linear with mismatched or matching shapes */
        tg_tensor *x = small_tensor(ctx, r, 1 + u8(r) % 3);
        tg_tensor *w = small_tensor(ctx, r, 1 + u8(r) % 3);
        out = tg_linear(ctx, x, w, NULL);
        break;
    }
    case 10: { /* global average pool */
        out = tg_global_avg_pool(ctx, small_tensor(ctx, r, 1 + u8(r) % 4));
        break;
    }
    case 11: { /* model constructors with any widths */
        tg_model *m = NULL;
        int k = u8(r) % 2;
        if (k == 0) {
            tg_mlp_opts mo = {.in_features = pick_opt(r), .hidden = {pick_opt(r)},
                              .num_classes = pick_opt(r)};
            double in = mo.in_features > 0 ? mo.in_features : 784;
            double h = mo.hidden[0] > 0 ? mo.hidden[0] : 128;
            double c = mo.num_classes > 0 ? mo.num_classes : 10;
            /* Each weight is built in turn: skip when one is legal but large. */
            double w1 = in * h, w2 = h * c;
            if ((w1 > (1 << 20) && w1 < 0x1p41) || (w2 > (1 << 20) && w2 < 0x1p41)) return;
            m = tg_mlp_new(mo, TG_DEVICE_CPU, 1);
        } else {
            tg_cnn_opts co = {.in_channels = pick_opt(r) % 4, .height = 4 * (pick_opt(r) % 4),
                              .width = 4 * (pick_opt(r) % 4), .channels1 = pick_opt(r) % 8,
                              .channels2 = pick_opt(r) % 8, .hidden = pick_opt(r) % 16,
                              .num_classes = pick_opt(r) % 16};
            m = tg_cnn_new(co, TG_DEVICE_CPU, 1);
        }
        if (!m && (tg_error() == TG_OK || !tg_error_message()[0])) FAIL("model NULL, no error");
        if (m && tg_error() != TG_OK) FAIL("model and an error");
        tg_model_free(m);
        tg_error_clear();
        return;
    }
    }
    check_tensor(out);
    tg_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {.p = data, .n = size};
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    if (!ctx || !ps) FAIL("no context");
    int nparams = 0;
    /* A few calls per input, each on the same context (errors must not leak across). */
    for (int call = 0; call < 4 && r.off < r.n; call++) one_call(ctx, ps, &r, &nparams);
    tg_error_clear();
    tg_ctx_free(ctx);
    tg_params_free(ps);
    return 0;
}
