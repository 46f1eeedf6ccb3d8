/*
 * examples/custom_op.c — write your own op, check its gradient, train with it.
 *
 * The op is a learnable PReLU (He et al. 2015): a ReLU whose negative side has a slope
 * `a` that is learnt, one per channel.
 *
 *   y[n, c, i] = x[n, c, i]            if x > 0
 *              = a[c] * x[n, c, i]     otherwise
 *
 * The backward, by the chain rule, given dL/dy:
 *   dL/dx[n, c, i] = dL/dy[n, c, i] * (x > 0 ? 1 : a[c])
 *   dL/da[c]       = sum over n, i of dL/dy[n, c, i] * (x > 0 ? 0 : x[n, c, i])
 * (at exactly x = 0 we take the "otherwise" side, as PyTorch's prelu does).
 *
 * Everything here uses only the installed header: a descriptor (tg_op), a call that
 * records it (tg_op_apply), then the same tools every built-in op gets — tg_gradcheck,
 * the tape table, the DOT graph, the profile with our cost model and the explain log —
 * and a user-defined model (tg_model_new) that trains and checkpoints like a built-in one.
 *
 * Run: ./build/examples/custom_op [checkpoint-path]
 */
#include <tapegrad.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- the op */

/* x is (N, C) or (N, C, ...): `inner` elements per (n, c) after the channel dim. */
typedef struct prelu_params {
    int64_t batch, channels, inner;
} prelu_params;

/* Kernels: plain loops over raw pointers.
 *   out, inp (batch, channels, inner); slope (channels). out written. */
static void prelu_forward_cpu(float *out, const float *inp, const float *slope,
                              const prelu_params *p) {
    for (int64_t n = 0; n < p->batch; n++)
        for (int64_t c = 0; c < p->channels; c++) {
            const float *x = inp + (n * p->channels + c) * p->inner;
            float *y = out + (n * p->channels + c) * p->inner;
            for (int64_t i = 0; i < p->inner; i++) y[i] = x[i] > 0 ? x[i] : slope[c] * x[i];
        }
}

/* dinp (batch, channels, inner) and dslope (channels) are ACCUMULATED (+=), each skipped
 * when NULL; dout, inp, slope read. */
static void prelu_backward_cpu(float *dinp, float *dslope, const float *dout,
                               const float *inp, const float *slope, const prelu_params *p) {
    for (int64_t n = 0; n < p->batch; n++)
        for (int64_t c = 0; c < p->channels; c++) {
            const int64_t base = (n * p->channels + c) * p->inner;
            double ds = 0;
            for (int64_t i = 0; i < p->inner; i++) {
                float x = inp[base + i], dy = dout[base + i];
                if (dinp) dinp[base + i] += x > 0 ? dy : slope[c] * dy;
                if (x <= 0) ds += (double)dy * x;
            }
            if (dslope) dslope[c] += (float)ds;
        }
}

/* The op's two functions read their sizes from the inline params. */
static tg_status prelu_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    prelu_forward_cpu(rec->out->data, rec->inputs[0]->data, rec->inputs[1]->data,
                      TG_OP_PARAMS(rec, prelu_params));
    return TG_OK; /* nothing saved: the backward reads x and a, alive until step end */
}

static tg_status prelu_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                const float *dout) {
    (void)ctx;
    prelu_backward_cpu(dinputs[0], dinputs[1], dout, rec->inputs[0]->data,
                       rec->inputs[1]->data, TG_OP_PARAMS(rec, prelu_params));
    return TG_OK;
}

/* For the profile: one compare and one multiply per element forward; backward reads
 * dy, x, a and updates dx (about three FLOPs per element). */
static void prelu_cost(const tg_record *rec, double *fwd_flops, double *fwd_bytes,
                       double *bwd_flops, double *bwd_bytes) {
    double n = (double)rec->out->numel, c = (double)rec->inputs[1]->numel;
    *fwd_flops = 2 * n;
    *fwd_bytes = 4 * (2 * n + c);
    *bwd_flops = 4 * n;
    *bwd_bytes = 4 * (4 * n + 2 * c);
}

static void prelu_explain(const tg_record *rec, char *buf, size_t size) {
    snprintf(buf, size, "prelu: dx += dy (x > 0) or a[c] dy (x <= 0); da[c] += sum of dy x "
             "where x <= 0, over %lld values per channel",
             (long long)(TG_OP_PARAMS(rec, prelu_params)->batch *
                         TG_OP_PARAMS(rec, prelu_params)->inner));
}

static const tg_op prelu_op = {
    .name = "prelu",
    .forward = {[TG_DEVICE_CPU] = prelu_forward},   /* no CUDA entry: a CUDA context */
    .backward = {[TG_DEVICE_CPU] = prelu_backward}, /* gets "prelu has no cuda forward" */
    .cost = prelu_cost,
    .explain = prelu_explain,
};

/* The entry point: check the arguments, fill the params, record. */
static tg_tensor *prelu(tg_ctx *ctx, tg_tensor *x, tg_tensor *slope) {
    if (!tg_check_tensor("prelu", "x", x, -1) || !tg_check_tensor("prelu", "slope", slope, 1))
        return NULL;
    if (x->shape.ndim < 2 || x->shape.dim[1] != slope->shape.dim[0]) {
        tg_fail(TG_ERR_SHAPE, "prelu: x has %d dims and %lld channels but slope has %lld "
                "entries; hint: x is (N, C, ...) with one slope per channel", x->shape.ndim,
                x->shape.ndim >= 2 ? (long long)x->shape.dim[1] : 0LL,
                (long long)slope->shape.dim[0]);
        return NULL;
    }
    prelu_params p = {.batch = x->shape.dim[0], .channels = x->shape.dim[1]};
    p.inner = p.batch > 0 && p.channels > 0 ? x->numel / (p.batch * p.channels) : 0;
    tg_tensor *inputs[2] = {x, slope};
    return tg_op_apply(ctx, &prelu_op, inputs, 2, x->shape, &p, sizeof p, NULL);
}

/* ---------------------------------------------------------------- 1. gradcheck */

static tg_tensor *prelu_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return prelu(ctx, in[0], in[1]);
}

static int check_gradient(void) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    float xs[2 * 3 * 5], as[3] = {0.25f, -0.5f, 1.5f};
    tg_rng_fill_normal(&rng, xs, 30, 0, 1);
    tg_tensor *x = tg_tensor_from(ctx, tg_shape3(2, 3, 5), xs);
    tg_tensor *a = tg_tensor_from(ctx, tg_shape1(3), as);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor *inputs[2] = {x, a};
    tg_gradcheck_result r;
    tg_status st = tg_gradcheck(ctx, prelu_graph, NULL, inputs, 2, 1e-3, 1e-3, 1e-2, 0, 9, &r);
    printf("gradcheck prelu: %lld elements, max abs error %.2e, %lld failed\n",
           (long long)r.checked, r.max_abs_err, (long long)r.failed);
    tg_ctx_free(ctx);
    return st == TG_OK && r.failed == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- 2. a model using it */

/* 2 -> 16 -> PReLU -> 16 -> PReLU -> 2, built with tg_model_new. */
typedef struct prelu_net {
    tg_tensor *w[3], *b[3], *slope[2];
} prelu_net;

static tg_tensor *prelu_net_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
    (void)training;
    prelu_net *net = tg_model_user(m);
    tg_tensor *h = x;
    for (int l = 0; l < 3; l++) {
        h = tg_linear(ctx, h, net->w[l], net->b[l]);
        if (l < 2) h = prelu(ctx, h, net->slope[l]);
    }
    return h;
}

static tg_model *prelu_net_new(uint64_t seed) {
    prelu_net *net = calloc(1, sizeof *net);
    if (!net) return NULL;
    tg_model *m = tg_model_new("prelu-net", TG_DEVICE_CPU, prelu_net_forward, net, free);
    if (!m) return NULL;
    tg_params *ps = tg_model_params(m);
    const int sizes[4] = {2, 16, 16, 2};
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    for (int l = 0; l < 3; l++) {
        char name[32];
        snprintf(name, sizeof name, "fc%d.weight", l + 1);
        net->w[l] = tg_params_add(ps, name, tg_shape2(sizes[l + 1], sizes[l]));
        snprintf(name, sizeof name, "fc%d.bias", l + 1);
        net->b[l] = tg_params_add(ps, name, tg_shape1(sizes[l + 1]));
        if (tg_init_linear(&rng, net->w[l], net->b[l]) != TG_OK) goto fail;
    }
    for (int l = 0; l < 2; l++) {
        char name[32];
        snprintf(name, sizeof name, "act%d.slope", l + 1);
        net->slope[l] = tg_params_add(ps, name, tg_shape1(16));
        if (tg_init_constant(net->slope[l], 0.25f) != TG_OK) goto fail; /* nn.PReLU's start */
    }
    return m;
fail:
    tg_model_free(m);
    return NULL;
}

enum { N = 256 };

int main(int argc, char **argv) {
    tg_runtime_defaults(argv); /* sleeping OpenMP waits, fitting BLAS kernels: may re-exec */
    const char *ckpt = argc > 1 ? argv[1] : "custom_op.ckpt";
    if (check_gradient() != 0) {
        fprintf(stderr, "custom_op: gradcheck failed: %s\n", tg_error_message());
        return 1;
    }
    /* Two moons, as examples/moons.c. */
    static float xs[N * 2];
    static int32_t ys[N];
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    for (int i = 0; i < N; i++) {
        double t = 3.14159265358979 * tg_rng_uniform(&rng);
        ys[i] = i % 2;
        xs[2 * i] = (float)(ys[i] ? 1 - cos(t) : cos(t)) + 0.1f * (float)tg_rng_normal(&rng);
        xs[2 * i + 1] = (float)(ys[i] ? 0.5 - sin(t) : sin(t)) + 0.1f * (float)tg_rng_normal(&rng);
    }
    tg_model *m = prelu_net_new(42);
    tg_optim *opt = m ? tg_sgd_new(tg_model_params(m), (tg_sgd_opts){.lr = 0.1f,
                                                                      .momentum = 0.9f})
                      : NULL;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    if (!m || !opt || !ctx) goto fail;
    float first = 0, last = 0;
    for (int step = 0; step < 300; step++) {
        tg_tensor *x = tg_tensor_from(ctx, tg_shape2(N, 2), xs);
        tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, x, true), ys);
        tg_optim_zero_grad(opt);
        if (step == 299) tg_tape_set_explain(ctx, stdout); /* 3. the last step, explained */
        if (tg_backward(ctx, loss) != TG_OK || tg_optim_step(opt) != TG_OK) goto fail;
        tg_tape_set_explain(ctx, NULL);
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        if (step % 100 == 0) printf("step %3d  loss %.4f\n", step, loss->data[0]);
        if (step == 299) {
            /* 4. The tape as a table, its profile with our cost model, and DOT. */
            tg_tape_print(ctx, stdout);
            tg_op_profile rows[16];
            int n = tg_tape_profile(ctx, rows, 16);
            for (int r = 0; r < n && r < 16; r++)
                if (rows[r].fwd_flops > 0)
                    printf("profile #%d %-8s fwd %.0f FLOP %.0f B  bwd %.0f FLOP %.0f B\n", r,
                           rows[r].op, rows[r].fwd_flops, rows[r].fwd_bytes,
                           rows[r].bwd_flops, rows[r].bwd_bytes);
            if (tg_tape_write_dot(ctx, stdout) != TG_OK) goto fail;
        }
        tg_step_end(ctx);
    }
    printf("loss %.4f -> %.4f\n", first, last);
    /* 5. The user model checkpoints like a built-in one. */
    tg_train_state state = {.step = tg_optim_steps(opt)};
    if (tg_checkpoint_save(ckpt, m, opt, &state) != TG_OK) goto fail;
    tg_model *copy = prelu_net_new(7);
    if (!copy || tg_checkpoint_load(ckpt, copy, NULL, NULL) != TG_OK) goto fail;
    tg_set_grad_enabled(ctx, false);
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(N, 2), xs);
    tg_tensor *a = tg_model_forward(ctx, m, x, false), *b = tg_model_forward(ctx, copy, x, false);
    if (!a || !b) goto fail;
    int correct = 0, same = 1;
    for (int i = 0; i < N; i++) {
        correct += (a->data[2 * i + 1] > a->data[2 * i]) == ys[i];
        same &= a->data[2 * i] == b->data[2 * i] && a->data[2 * i + 1] == b->data[2 * i + 1];
    }
    printf("accuracy %.1f%%, reloaded model %s\n", 100.0 * correct / N,
           same ? "gives identical logits" : "DIFFERS");
    tg_model_free(copy);
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    tg_model_free(m);
    remove(ckpt);
    return last < 0.5f * first && correct > 0.9 * N && same ? 0 : 1;
fail:
    fprintf(stderr, "custom_op: %s\n", tg_error_message());
    return 1;
}
