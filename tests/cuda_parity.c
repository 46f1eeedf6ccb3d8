/*
 * tests/cuda_parity.c — the CPU-vs-CUDA harness (tests/cuda_parity.h): one op case run on
 * both devices with the same random inputs, its output, inputs after the step and input
 * gradients compared.
 */
#include "cuda_parity.h"

void expect_match(const char *what, const float *gpu, const float *cpu, int64_t n,
                  double tol) {
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(cpu[i]));
    tg_expect_close_f(what, gpu, cpu, n, tol * scale + 1e-30, tol);
}

/* expect_match where NaN must meet NaN and an infinity the same infinity; finite values
 * as expect_match (over the finite reference values). */
void expect_match_special(const char *what, const float *gpu, const float *cpu,
                          int64_t n, double tol) {
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(cpu[i])) scale = fmax(scale, fabs(cpu[i]));
    for (int64_t i = 0; i < n; i++) {
        if (isnan(cpu[i]) || isinf(cpu[i])) {
            ck_assert_msg(isnan(cpu[i]) ? isnan(gpu[i]) : gpu[i] == cpu[i],
                          "%s: element %lld is %g on the GPU, %g on the CPU", what, (long long)i,
                          (double)gpu[i], (double)cpu[i]);
            continue;
        }
        ck_assert_msg(fabs((double)gpu[i] - cpu[i]) <= tol * (fabs(cpu[i]) + scale) + 1e-30,
                      "%s: element %lld is %.9g on the GPU, %.9g on the CPU", what,
                      (long long)i, (double)gpu[i], (double)cpu[i]);
    }
}

float *host_copy(const tg_tensor *t, bool grad) {
    float *h = malloc((size_t)t->numel * sizeof(float));
    ck_assert(h);
    ck_assert_msg(tg_tensor_to_host(t, h, grad) == TG_OK, "%s", tg_error_message());
    return h;
}

float *random_host(int64_t n, float lo, float hi, uint64_t seed) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    float *h = malloc((size_t)n * sizeof(float));
    ck_assert(h);
    tg_rng_fill_uniform(&rng, h, n, lo, hi);
    return h;
}

/* ---------------------------------------------------------------- one op, both devices */

/* What one device computed: the output, every input after the step (in-place updates
 * such as running statistics) and every input gradient, on the host. */
typedef struct op_result {
    float *out, *in[MAX_IN], *grad[MAX_IN];
    int64_t out_n;
} op_result;

static void run_on(tg_ctx *ctx, const char *what, const op_case *c, float *const *host_in,
                   op_result *r) {
    tg_tensor *in[MAX_IN] = {0};
    for (int i = 0; i < c->ninputs; i++) {
        if (c->shape[i].ndim < 0) continue;
        in[i] = tg_tensor_from(ctx, c->shape[i], host_in[i]);
        tg_tensor_set_requires_grad(in[i], c->grad[i]);
    }
    tg_tensor *out = c->run(ctx, in, c->user);
    ck_assert_msg(out != NULL, "%s on %s: %s", what, tg_device_name(tg_ctx_device(ctx)),
                  tg_error_message());
    r->out = host_copy(out, false);
    r->out_n = out->numel;
    if (out->requires_grad) {
        float *dout_host = random_host(out->numel, -1.0f, 1.0f, 99);
        tg_tensor *dout = tg_tensor_from(ctx, out->shape, dout_host);
        free(dout_host);
        ck_assert_msg(dout && tg_backward_with(ctx, out, dout->data) == TG_OK, "%s: %s", what,
                      tg_error_message());
    }
    for (int i = 0; i < c->ninputs; i++) {
        if (!in[i]) continue;
        r->in[i] = host_copy(in[i], false);
        if (c->grad[i] && out->requires_grad) r->grad[i] = host_copy(in[i], true);
    }
    tg_step_end(ctx);
}

static void result_free(op_result *r) {
    free(r->out);
    for (int i = 0; i < MAX_IN; i++) {
        free(r->in[i]);
        free(r->grad[i]);
    }
}

/* Runs c on both devices with the same inputs and compares everything. */
void check_case(tg_ctx *cpu, tg_ctx *gpu, const char *what, const op_case *c,
                uint64_t seed) {
    float *host_in[MAX_IN] = {0};
    for (int i = 0; i < c->ninputs; i++)
        if (c->shape[i].ndim >= 0) {
            int64_t n = tg_shape_numel(c->shape[i]);
            host_in[i] = random_host(n, c->lo, c->hi, seed + i);
            static const float special[3] = {NAN, INFINITY, -INFINITY};
            for (int64_t j = 3; c->specials && i == 0 && j < n; j += 5)
                host_in[i][j] = special[(j / 5) % 3];
        }
    op_result rc = {0}, rg = {0};
    run_on(cpu, what, c, host_in, &rc);
    run_on(gpu, what, c, host_in, &rg);
    char label[256];
    ck_assert_int_eq(rc.out_n, rg.out_n);
    void (*match)(const char *, const float *, const float *, int64_t, double) =
        c->specials ? expect_match_special : expect_match;
    snprintf(label, sizeof label, "%s: output", what);
    match(label, rg.out, rc.out, rc.out_n, c->tol);
    for (int i = 0; i < c->ninputs; i++) {
        if (!host_in[i]) continue;
        int64_t n = tg_shape_numel(c->shape[i]);
        snprintf(label, sizeof label, "%s: input %d after the step", what, i);
        match(label, rg.in[i], rc.in[i], n, c->tol);
        ck_assert_msg(!rc.grad[i] == !rg.grad[i], "%s: gradient %d on one device only", what, i);
        if (!rc.grad[i]) continue;
        snprintf(label, sizeof label, "%s: gradient of input %d", what, i);
        match(label, rg.grad[i], rc.grad[i], n, c->tol);
    }
    result_free(&rc);
    result_free(&rg);
    for (int i = 0; i < MAX_IN; i++)
        free(host_in[i]);
    tg_expect_ok(what);
}

tg_ctx *new_ctx(tg_device device) {
    tg_error_clear();
    tg_ctx *ctx = tg_test_ctx_gemm(device); /* the CPU side: no timing picks Winograd */
    ck_assert_msg(ctx != NULL, "%s", tg_error_message());
    return ctx;
}
