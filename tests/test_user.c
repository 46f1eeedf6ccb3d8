/*
 * tests/test_user.c — what a user builds on the public header alone: an op of their own
 * (recorded, replayed, shown in the tape table, DOT, profile and explain log, checked by
 * tg_gradcheck, refused with clear errors when its descriptor or call is wrong), a model
 * of their own (tg_model_new) that checkpoints and resumes byte-identically, and the
 * parameter setters and initialisers.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- a user op: y = x^3 + c x
 * dy/dx = 3 x^2 + c. It saves x^2 (to exercise tg_record_save); c is an inline param. */

typedef struct cubic_params {
    float c;
} cubic_params;

static tg_status cubic_forward(tg_ctx *ctx, tg_record *rec) {
    const tg_tensor *x = rec->inputs[0];
    tg_tensor *sq = tg_record_save(ctx, rec, 0, x->shape);
    if (!sq) return tg_error();
    float c = TG_OP_PARAMS(rec, cubic_params)->c;
    for (int64_t i = 0; i < x->numel; i++) {
        sq->data[i] = x->data[i] * x->data[i];
        rec->out->data[i] = sq->data[i] * x->data[i] + c * x->data[i];
    }
    return TG_OK;
}

/* The backward's kernel on the public tg_parallel_range, in chunks of 2 elements (the
 * tensors here are small: several chunks, run by whichever threads wake). */
typedef struct cubic_job {
    float *dx;
    const float *dout, *sq;
    float c;
} cubic_job;

static void cubic_backward_range(void *arg, int64_t i0, int64_t i1) {
    const cubic_job *j = arg;
    for (int64_t i = i0; i < i1; i++) j->dx[i] += j->dout[i] * (3 * j->sq[i] + j->c);
}

static tg_status cubic_backward(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                const float *dout) {
    (void)ctx;
    cubic_job j = {.dx = dinputs[0], .dout = dout, .sq = rec->saved[0]->data,
                   .c = TG_OP_PARAMS(rec, cubic_params)->c};
    tg_parallel_range(rec->out->numel, 2, cubic_backward_range, &j);
    return TG_OK;
}

/* The same op with a wrong derivative (2x^2 instead of 3x^2): gradcheck must catch it. */
static tg_status cubic_backward_wrong(tg_ctx *ctx, tg_record *rec, float *const *dinputs,
                                      const float *dout) {
    (void)ctx;
    const float *sq = rec->saved[0]->data;
    float c = TG_OP_PARAMS(rec, cubic_params)->c;
    for (int64_t i = 0; i < rec->out->numel; i++) dinputs[0][i] += dout[i] * (2 * sq[i] + c);
    return TG_OK;
}

static void cubic_cost(const tg_record *rec, double *ff, double *fb, double *bf, double *bb) {
    double n = (double)rec->out->numel;
    *ff = 4 * n;
    *fb = 12 * n;
    *bf = 4 * n;
    *bb = 16 * n;
}

static void cubic_describe(const tg_record *rec, char *buf, size_t size) {
    snprintf(buf, size, "c=%g", (double)TG_OP_PARAMS(rec, cubic_params)->c);
}

static void cubic_explain(const tg_record *rec, char *buf, size_t size) {
    snprintf(buf, size, "cubic: dx += dy (3 x^2 + %g) from the saved x^2",
             (double)TG_OP_PARAMS(rec, cubic_params)->c);
}

static const tg_op cubic_op = {
    .name = "cubic",
    .forward = {[TG_DEVICE_CPU] = cubic_forward},
    .backward = {[TG_DEVICE_CPU] = cubic_backward},
    .cost = cubic_cost,
    .describe = cubic_describe,
    .explain = cubic_explain,
};

static const tg_op cubic_wrong_op = {
    .name = "cubic_wrong",
    .forward = {[TG_DEVICE_CPU] = cubic_forward},
    .backward = {[TG_DEVICE_CPU] = cubic_backward_wrong},
};

static tg_tensor *cubic_with(tg_ctx *ctx, const tg_op *op, tg_tensor *x, float c) {
    if (!tg_check_tensor("cubic", "x", x, -1)) return NULL;
    cubic_params p = {.c = c};
    return tg_op_apply(ctx, op, &x, 1, x->shape, &p, sizeof p, NULL);
}

static tg_tensor *cubic_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    return cubic_with(ctx, user, in[0], 0.5f);
}

/* relu(cubic(x)) summed through a linear layer: a user op between built-in ones. */
static tg_tensor *mixed_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_linear(ctx, tg_relu(ctx, cubic_with(ctx, &cubic_op, in[0], 0.7f)), in[1], NULL);
}

START_TEST(user_op_forward_backward_and_gradcheck) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[6] = {-1.5f, -0.5f, 0.25f, 1, 2, 0.75f}, w[6] = {0.3f, -0.2f, 0.5f, 1, -1, 0.1f};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(2, 3), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = cubic_with(ctx, &cubic_op, x, 0.5f);
    ck_assert_ptr_nonnull(y);
    ck_assert(y->requires_grad);
    ck_assert_int_eq(tg_tape_length(ctx), 1);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq_tol(y->data[i], v[i] * v[i] * v[i] + 0.5f * v[i], 1e-6);
    float seed[6] = {1, 1, 1, 1, 1, 1};
    ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq_tol(x->grad[i], 3 * v[i] * v[i] + 0.5f, 1e-5);
    tg_step_end(ctx);

    x = tg_tensor_from(ctx, tg_shape2(2, 3), v);
    tg_tensor *wt = tg_tensor_from(ctx, tg_shape2(1, 3), w);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor_set_requires_grad(wt, true);
    tg_tensor *in2[2] = {x, wt};
    tg_expect_gradcheck_tol("cubic", ctx, cubic_graph, (void *)&cubic_op, in2, 1, 1e-3, 1e-4,
                            1e-3, 0);
    tg_expect_gradcheck_tol("linear(relu(cubic))", ctx, mixed_graph, NULL, in2, 2, 1e-3,
                            1e-4, 1e-3, 0);
    /* A wrong backward fails the same check: gradcheck really looks at user ops. */
    tg_gradcheck_result r;
    ck_assert_int_eq(tg_gradcheck(ctx, cubic_graph, (void *)&cubic_wrong_op, in2, 1, 1e-3,
                                  1e-4, 1e-3, 0, 1, &r), TG_OK);
    ck_assert_int_eq(r.checked, 6);
    ck_assert_int_gt(r.failed, 0);
    tg_error_clear();
    tg_ctx_free(ctx);
}
END_TEST

/* Reads everything written to f so far as a NUL-terminated string (caller frees). */
static char *slurp(FILE *f) {
    long n = ftell(f);
    ck_assert_int_ge(n, 0);
    char *buf = calloc((size_t)n + 1, 1);
    rewind(f);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    return buf;
}

START_TEST(user_op_in_table_dot_profile_explain) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "head.weight", tg_shape2(1, 4));
    ck_assert_int_eq(tg_init_constant(w, 0.5f), TG_OK);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[8] = {1, -2, 3, -4, 0.5f, 0.25f, -1, 2};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(2, 4), v);
    tg_tensor *y = tg_linear(ctx, cubic_with(ctx, &cubic_op, x, 2.0f), w, NULL);
    tg_tensor *loss = tg_mse_loss(ctx, y, tg_tensor_zeros(ctx, tg_shape2(2, 1)));
    ck_assert_ptr_nonnull(loss);
    /* x does not require grad, so cubic is not recorded; give it one that does. */
    tg_step_end(ctx);
    x = tg_tensor_from(ctx, tg_shape2(2, 4), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *c = cubic_with(ctx, &cubic_op, x, 2.0f);
    y = tg_linear(ctx, c, w, NULL);
    loss = tg_mse_loss(ctx, y, tg_tensor_zeros(ctx, tg_shape2(2, 1)));
    ck_assert_ptr_nonnull(loss);

    FILE *ex = tmpfile();
    tg_tape_set_explain(ctx, ex);
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    tg_tape_set_explain(ctx, NULL);
    char *log = slurp(ex);
    fclose(ex);
    ck_assert_msg(strstr(log, "backward #0 cubic"), "explain log lacks the op:\n%s", log);
    ck_assert_msg(strstr(log, "dx += dy (3 x^2 + 2)"), "explain line missing:\n%s", log);
    ck_assert_msg(strstr(log, "head.weight"), "parameter grad norm missing:\n%s", log);
    char label[16];
    snprintf(label, sizeof label, "dL/dt%d ", c->id);
    ck_assert_msg(strstr(log, label), "explain uses another tensor id than %s:\n%s", label, log);
    free(log);

    FILE *tab = tmpfile();
    tg_tape_print(ctx, tab);
    char *table = slurp(tab);
    fclose(tab);
    ck_assert_msg(strstr(table, "cubic"), "table lacks the op:\n%s", table);
    char saved[32];
    snprintf(saved, sizeof saved, " %d ", 8 * 4); /* x^2 saved: 8 floats */
    ck_assert_msg(strstr(table, saved), "saved bytes of the user op missing:\n%s", table);
    snprintf(label, sizeof label, "t%d (2, 4)", c->id);
    ck_assert_msg(strstr(table, label), "table lacks tensor label %s:\n%s", label, table);
    free(table);

    FILE *dot = tmpfile();
    ck_assert_int_eq(tg_tape_write_dot(ctx, dot), TG_OK);
    char *graph = slurp(dot);
    fclose(dot);
    ck_assert_msg(strstr(graph, "#0 cubic\\nc=2"), "DOT lacks the op:\n%s", graph);
    snprintf(label, sizeof label, "t%d\\n(2, 4)", c->id);
    ck_assert_msg(strstr(graph, label), "DOT lacks tensor label %s:\n%s", label, graph);
    free(graph);

    tg_op_profile rows[4];
    ck_assert_int_eq(tg_tape_profile(ctx, rows, 4), 3);
    ck_assert_str_eq(rows[0].op, "cubic");
    ck_assert_str_eq(rows[0].detail, "c=2");
    ck_assert_double_eq(rows[0].fwd_flops, 32);
    ck_assert_double_eq(rows[0].bwd_bytes, 128);
    ck_assert_uint_eq(rows[0].saved_bytes, 32);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

static tg_status failing_forward(tg_ctx *ctx, tg_record *rec) {
    (void)ctx;
    return tg_fail(TG_ERR_ARG, "%s: refused by its forward", rec->op->name);
}

START_TEST(user_op_misuse_is_a_clear_error) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[2] = {1, 2};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(2), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *ins[5] = {x, x, x, x, x};
    ck_assert_ptr_null(tg_op_apply(ctx, NULL, ins, 1, x->shape, NULL, 0, NULL));
    tg_expect_error("NULL op", TG_ERR_ARG, "descriptor", NULL);
    ck_assert_ptr_null(tg_op_apply(ctx, &cubic_op, ins, 5, x->shape, NULL, 0, NULL));
    tg_expect_error("5 inputs", TG_ERR_ARG, "cubic", "TG_MAX_INPUTS");
    char big[TG_OP_PARAMS_BYTES + 1] = {0};
    ck_assert_ptr_null(tg_op_apply(ctx, &cubic_op, ins, 1, x->shape, big, sizeof big, NULL));
    tg_expect_error("params too big", TG_ERR_ARG, "TG_OP_PARAMS_BYTES", "tg_record_save_bytes");
    static const tg_op no_cpu = {.name = "gpu_only"};
    ck_assert_ptr_null(tg_op_apply(ctx, &no_cpu, ins, 1, x->shape, NULL, 0, NULL));
    tg_expect_error("no CPU forward", TG_ERR_ARG, "gpu_only", "CPU forward");
    static const tg_op no_backward = {.name = "forward_only",
                                      .forward = {[TG_DEVICE_CPU] = cubic_forward}};
    ck_assert_ptr_null(tg_op_apply(ctx, &no_backward, ins, 1, x->shape, NULL, 0, NULL));
    tg_expect_error("no backward", TG_ERR_UNSUPPORTED, "forward_only has no cpu backward",
                    "tg_set_grad_enabled");
    /* Without grad mode the same op runs (inference). */
    bool was = tg_set_grad_enabled(ctx, false);
    ck_assert_ptr_nonnull(tg_op_apply(ctx, &no_backward, ins, 1, x->shape, NULL, 0, NULL));
    tg_set_grad_enabled(ctx, was);
    int len = tg_tape_length(ctx);
    static const tg_op failing = {.name = "failing",
                                  .forward = {[TG_DEVICE_CPU] = failing_forward},
                                  .backward = {[TG_DEVICE_CPU] = cubic_backward}};
    ck_assert_ptr_null(tg_op_apply(ctx, &failing, ins, 1, x->shape, NULL, 0, NULL));
    tg_expect_error("failing forward", TG_ERR_ARG, "failing: refused by its forward", NULL);
    ck_assert_int_eq(tg_tape_length(ctx), len); /* nothing half-recorded */
    ck_assert_ptr_null(cubic_with(ctx, &cubic_op, NULL, 1));
    tg_expect_error("NULL input", TG_ERR_ARG, "cubic: argument 'x' is NULL", NULL);
    if (tg_cuda_check() == TG_OK) { /* a descriptor without a CUDA entry on a CUDA ctx */
        tg_ctx *gpu = tg_ctx_new(TG_DEVICE_CUDA);
        tg_tensor *g = tg_tensor_from(gpu, tg_shape1(2), v);
        ck_assert_ptr_null(tg_op_apply(gpu, &cubic_op, &g, 1, g->shape, NULL, 0, NULL));
        tg_expect_error("no CUDA entry", TG_ERR_UNSUPPORTED, "cubic has no cuda forward", NULL);
        tg_ctx_free(gpu);
    }
    tg_error_clear();
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- a user model */

typedef struct tiny_net {
    tg_tensor *w1, *b1, *w2, *b2;
} tiny_net;

static int tiny_frees;

static void tiny_free(void *p) {
    tiny_frees++;
    free(p);
}

static tg_tensor *tiny_forward(tg_ctx *ctx, tg_model *m, tg_tensor *x, bool training) {
    (void)training;
    tiny_net *n = tg_model_user(m);
    tg_tensor *h = cubic_with(ctx, &cubic_op, tg_linear(ctx, x, n->w1, n->b1), 1.0f);
    return tg_linear(ctx, tg_relu(ctx, h), n->w2, n->b2);
}

static tg_model *tiny_new(uint64_t seed) {
    tiny_net *n = calloc(1, sizeof *n);
    tg_model *m = tg_model_new("tiny-user-net", TG_DEVICE_CPU, tiny_forward, n, tiny_free);
    ck_assert_ptr_nonnull(m);
    tg_params *ps = tg_model_params(m);
    n->w1 = tg_params_add(ps, "l1.weight", tg_shape2(8, 3));
    n->b1 = tg_params_add(ps, "l1.bias", tg_shape1(8));
    n->w2 = tg_params_add(ps, "l2.weight", tg_shape2(2, 8));
    n->b2 = tg_params_add(ps, "l2.bias", tg_shape1(2));
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    ck_assert_int_eq(tg_init_linear(&rng, n->w1, n->b1), TG_OK);
    ck_assert_int_eq(tg_init_normal(&rng, n->w2, 0, 0.3f), TG_OK);
    ck_assert_int_eq(tg_init_constant(n->b2, 0.1f), TG_OK);
    return m;
}

/* Trains steps [from, to) on a fixed synthetic batch sequence drawn from (seed, step). */
static void tiny_train(tg_model *m, tg_optim *opt, int from, int to) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    for (int step = from; step < to; step++) {
        tg_rng rng;
        tg_rng_seed(&rng, 1000 + (uint64_t)step);
        float xs[16 * 3];
        int32_t ys[16];
        tg_rng_fill_normal(&rng, xs, 48, 0, 1);
        for (int i = 0; i < 16; i++) ys[i] = xs[3 * i] + xs[3 * i + 1] > 0;
        tg_tensor *loss = tg_cross_entropy(
            ctx, tg_model_forward(ctx, m, tg_tensor_from(ctx, tg_shape2(16, 3), xs), true), ys);
        tg_optim_zero_grad(opt);
        ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        tg_step_end(ctx);
    }
    tg_ctx_free(ctx);
}

static void *file_bytes(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    rewind(f);
    void *buf = malloc((size_t)*size);
    ck_assert_uint_eq(fread(buf, 1, (size_t)*size, f), (size_t)*size);
    fclose(f);
    return buf;
}

START_TEST(user_model_checkpoint_resume_byte_identical) {
    char dir[] = "/tmp/tg_user_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char full[64], half[64], resumed[64];
    snprintf(full, sizeof full, "%s/full.ckpt", dir);
    snprintf(half, sizeof half, "%s/half.ckpt", dir);
    snprintf(resumed, sizeof resumed, "%s/resumed.ckpt", dir);
    tiny_frees = 0;
    tg_adam_opts adam = tg_adam_opts_default();
    adam.lr = 0.01;

    /* Uninterrupted: 20 steps. */
    tg_model *a = tiny_new(5);
    tg_optim *oa = tg_adam_new(tg_model_params(a), adam);
    tiny_train(a, oa, 0, 20);
    tg_train_state sa = {.step = 20};
    ck_assert_int_eq(tg_checkpoint_save(full, a, oa, &sa), TG_OK);

    /* Interrupted: 10 steps, save, free everything, a new process-like start from another
     * seed, load, 10 more steps. */
    tg_model *b = tiny_new(5);
    tg_optim *ob = tg_adam_new(tg_model_params(b), adam);
    tiny_train(b, ob, 0, 10);
    tg_train_state sb = {.step = 10};
    ck_assert_int_eq(tg_checkpoint_save(half, b, ob, &sb), TG_OK);
    tg_optim_free(ob);
    tg_model_free(b);
    tg_model *c = tiny_new(99);
    tg_optim *oc = tg_adam_new(tg_model_params(c), adam);
    tg_train_state sc = {0};
    ck_assert_int_eq(tg_checkpoint_load(half, c, oc, &sc), TG_OK);
    ck_assert_int_eq(sc.step, 10);
    tiny_train(c, oc, (int)sc.step, 20);
    sc.step = 20;
    ck_assert_int_eq(tg_checkpoint_save(resumed, c, oc, &sc), TG_OK);

    long n1, n2;
    void *f1 = file_bytes(full, &n1), *f2 = file_bytes(resumed, &n2);
    ck_assert_int_eq(n1, n2);
    ck_assert_msg(memcmp(f1, f2, (size_t)n1) == 0, "resumed checkpoint differs from the "
                  "uninterrupted one");
    free(f1);
    free(f2);

    /* A model of another name refuses the file, and nothing changes. */
    tg_model *other = tg_model_new("another-net", TG_DEVICE_CPU, NULL, NULL, NULL);
    tg_params_add(tg_model_params(other), "l1.weight", tg_shape2(8, 3));
    ck_assert_int_ne(tg_checkpoint_load(full, other, NULL, NULL), TG_OK);
    tg_error_clear();
    tg_model_free(other);

    tg_optim_free(oa);
    tg_optim_free(oc);
    tg_model_free(a);
    tg_model_free(c);
    ck_assert_int_eq(tiny_frees, 3); /* free_user ran once per model */
    remove(full);
    remove(half);
    remove(resumed);
    rmdir(dir);
}
END_TEST

START_TEST(user_model_bad_input) {
    tiny_frees = 0;
    void *user = malloc(8);
    ck_assert_ptr_null(tg_model_new("", TG_DEVICE_CPU, tiny_forward, user, tiny_free));
    tg_expect_error("empty name", TG_ERR_ARG, "'name' is empty", NULL);
    ck_assert_int_eq(tiny_frees, 1); /* the user data is freed on failure too */
    char longname[80];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_ptr_null(tg_model_new(longname, TG_DEVICE_CPU, tiny_forward, NULL, NULL));
    tg_expect_error("long name", TG_ERR_ARG, "too long", "63");
    tg_model *m = tg_model_new("no-forward", TG_DEVICE_CPU, NULL, NULL, NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_null(tg_model_user(m));
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_ptr_null(tg_model_forward(ctx, m, tg_tensor_zeros(ctx, tg_shape1(1)), true));
    tg_expect_error("no forward", TG_ERR_STATE, "no-forward", "no forward function");
    tg_ctx_free(ctx);
    tg_model_free(m);
}
END_TEST

/* ---------------------------------------------------------------- setters, initialisers */

START_TEST(setters_and_initialisers) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(100, 100));
    tg_tensor *g = tg_params_add(ps, "g", tg_shape1(5)), *b = tg_params_add(ps, "b", tg_shape1(5));
    float host[5] = {1, -2, 3.5f, 0, 7}, back[5];
    ck_assert_int_eq(tg_tensor_copy_from_host(g, host), TG_OK);
    ck_assert_int_eq(tg_tensor_to_host(g, back, false), TG_OK);
    ck_assert_mem_eq(host, back, sizeof host);

    tg_rng r1, r2;
    tg_rng_seed(&r1, 11);
    tg_rng_seed(&r2, 11);
    ck_assert_int_eq(tg_init_uniform(&r1, w, -0.5f, 0.25f), TG_OK);
    double lo = 1, hi = -1, sum = 0;
    for (int i = 0; i < 10000; i++) {
        lo = fmin(lo, w->data[i]);
        hi = fmax(hi, w->data[i]);
        sum += w->data[i];
    }
    ck_assert(lo >= -0.5 && hi < 0.25 && lo < -0.49 && hi > 0.24);
    ck_assert_double_eq_tol(sum / 10000, -0.125, 0.01);
    float first = w->data[17];
    ck_assert_int_eq(tg_init_uniform(&r2, w, -0.5f, 0.25f), TG_OK); /* same seed, same values */
    ck_assert_float_eq(w->data[17], first);

    ck_assert_int_eq(tg_init_normal(&r1, w, 2.0f, 0.5f), TG_OK);
    double m = 0, v = 0;
    for (int i = 0; i < 10000; i++) m += w->data[i];
    m /= 10000;
    for (int i = 0; i < 10000; i++) v += (w->data[i] - m) * (w->data[i] - m);
    ck_assert_double_eq_tol(m, 2.0, 0.02);
    ck_assert_double_eq_tol(sqrt(v / 9999), 0.5, 0.02);

    ck_assert_int_eq(tg_init_batchnorm(g, b), TG_OK);
    for (int i = 0; i < 5; i++) {
        ck_assert_float_eq(g->data[i], 1);
        ck_assert_float_eq(b->data[i], 0);
    }
    ck_assert_int_eq(tg_init_constant(b, -3), TG_OK);
    ck_assert_float_eq(b->data[4], -3);

    ck_assert_int_ne(tg_init_uniform(&r1, w, 1, 0), TG_OK);
    tg_expect_error("lo > hi", TG_ERR_ARG, "tg_init_uniform", "lo <= hi");
    ck_assert_int_ne(tg_init_normal(&r1, w, 0, -1), TG_OK);
    tg_expect_error("std < 0", TG_ERR_ARG, "tg_init_normal", "std >= 0");
    ck_assert_int_ne(tg_init_normal(NULL, w, 0, 1), TG_OK);
    tg_expect_error("NULL rng", TG_ERR_ARG, "'rng' is NULL", NULL);
    ck_assert_int_ne(tg_tensor_copy_from_host(g, NULL), TG_OK);
    tg_expect_error("NULL host", TG_ERR_ARG, "tg_tensor_copy_from_host", "'host'");
    ck_assert_int_ne(tg_init_batchnorm(w, b), TG_OK);
    tg_expect_error("bn sizes", TG_ERR_SHAPE, "tg_init_batchnorm", "differ");
    tg_params_free(ps);
}
END_TEST

Suite *user_suite(void) {
    Suite *s = suite_create("user");
    TCase *tc = tg_test_case("user");
    tcase_add_test(tc, user_op_forward_backward_and_gradcheck);
    tcase_add_test(tc, user_op_in_table_dot_profile_explain);
    tcase_add_test(tc, user_op_misuse_is_a_clear_error);
    tcase_add_test(tc, user_model_checkpoint_resume_byte_identical);
    tcase_add_test(tc, user_model_bad_input);
    tcase_add_test(tc, setters_and_initialisers);
    suite_add_tcase(s, tc);
    return s;
}
