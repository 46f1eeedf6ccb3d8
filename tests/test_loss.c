/*
 * tests/test_loss.c — tg_cross_entropy ((N, C), (N, C, L) and per-pixel (N, C, H, W),
 * ignore_index) and tg_mse_loss: PyTorch golden values (loss and every gradient, seeded
 * with dloss != 1, logits at +-1e3 and +-1e5 included), finite differences over shapes and batches, a double-precision
 * reference on tensors big enough for the threaded paths, target copying, accumulation,
 * the header's worked example, and bad inputs that change nothing.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- helpers */

/* Double-precision cross entropy: loss and dloss/dlogits (times dloss); targets equal to
 * ignore_index are left out (gradient 0 there), NaN loss when all are. */
static double ref_cross_entropy_ign(const float *x, const int32_t *t, int64_t N, int64_t C,
                                    int64_t inner, int32_t ignore_index, double dloss,
                                    double *grad) {
    double total = 0, count = 0;
    for (int64_t i = 0; i < N * inner; i++) count += t[i] != ignore_index;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t p = 0; p < inner; p++) {
            const float *xp = x + n * C * inner + p;
            int32_t tp = t[n * inner + p];
            if (tp == ignore_index) {
                for (int64_t c = 0; grad && c < C; c++) grad[(n * C + c) * inner + p] = 0;
                continue;
            }
            double m = xp[0], s = 0;
            for (int64_t c = 1; c < C; c++) m = fmax(m, xp[c * inner]);
            for (int64_t c = 0; c < C; c++) s += exp(xp[c * inner] - m);
            total += (m - xp[tp * inner]) + log(s);
            if (!grad) continue;
            for (int64_t c = 0; c < C; c++) {
                double soft = exp((xp[c * inner] - m) - log(s));
                grad[(n * C + c) * inner + p] = (soft - (c == tp)) * dloss / count;
            }
        }
    }
    return count > 0 ? total / count : NAN;
}

static double ref_cross_entropy(const float *x, const int32_t *t, int64_t N, int64_t C,
                                int64_t inner, double dloss, double *grad) {
    return ref_cross_entropy_ign(x, t, N, C, inner, -100, dloss, grad);
}

static void fill_targets(tg_rng *rng, int32_t *t, int64_t n, int64_t C) {
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)tg_rng_below(rng, C);
}

/* The pending error has `status` and a message containing every needle; then cleared. */
static void expect_error_all(const char *what, tg_status status, const char *const *needles,
                             int n) {
    const char *msg = tg_error_message();
    for (int i = 0; i < n; i++)
        ck_assert_msg(strstr(msg, needles[i]), "%s: message lacks '%s': %s", what, needles[i],
                      msg);
    tg_expect_error(what, status, NULL, NULL);
}

typedef struct ce_case {
    const int32_t *target;
} ce_case;

static tg_tensor *ce_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    return tg_cross_entropy(ctx, in[0], ((ce_case *)user)->target);
}

static tg_tensor *mse_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_mse_loss(ctx, in[0], in[1]);
}

/* ---------------------------------------------------------------- cross entropy: golden */

/* Compares loss (relative tolerance loss_rtol) and gradient (|got - want| <= atol +
 * rtol |want|, with atol = grad_atol_rel * max |want|: relative to the gradient's scale)
 * with the fixture `name`; its ignore_index when the fixture has one, else the default. */
static void check_ce_golden_tol(const char *name, double loss_rtol, double grad_atol_rel,
                                double grad_rtol) {
    char key[64];
    tg_fixture *fx = tg_fixture_load("loss.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    snprintf(key, sizeof key, "%s.logits", name);
    tg_tensor *logits = tg_fixture_tensor(ctx, fx, key, true);
    snprintf(key, sizeof key, "%s.target", name);
    tg_shape tshape;
    const double *td = tg_fixture_get(fx, key, &tshape);
    int64_t count = tg_shape_numel(tshape);
    ck_assert_int_eq(count * logits->shape.dim[1], logits->numel);
    int32_t *target = malloc((size_t)count * sizeof *target);
    for (int64_t i = 0; i < count; i++) target[i] = (int32_t)td[i];
    snprintf(key, sizeof key, "%s.dloss", name);
    float dloss = (float)tg_fixture_get(fx, key, NULL)[0];
    tg_cross_entropy_opts opts = tg_cross_entropy_opts_default();
    snprintf(key, sizeof key, "%s.ignore_index", name);
    if (tg_fixture_has(fx, key)) opts.ignore_index = (int32_t)tg_fixture_get(fx, key, NULL)[0];

    tg_tensor *loss = tg_cross_entropy_with(ctx, logits, target, opts);
    tg_expect_ok(name);
    ck_assert_int_eq(loss->shape.ndim, 0);
    ck_assert_int_eq(tg_backward_with(ctx, loss, &dloss), TG_OK);
    snprintf(key, sizeof key, "%s.loss", name);
    const double *want_loss = tg_fixture_get(fx, key, NULL);
    if (isnan(want_loss[0]))
        ck_assert_msg(isnan(loss->data[0]), "%s: loss %g, want NaN", key, loss->data[0]);
    else
        tg_expect_close(key, loss->data, want_loss, 1, 0, loss_rtol);
    snprintf(key, sizeof key, "%s.dlogits", name);
    const double *want = tg_fixture_get(fx, key, NULL);
    double scale = 0;
    for (int64_t i = 0; i < logits->numel; i++) scale = fmax(scale, fabs(want[i]));
    tg_expect_close(key, logits->grad, want, logits->numel, grad_atol_rel * scale, grad_rtol);
    free(target);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}

static void check_ce_golden(const char *name, double atol) {
    char key[64];
    tg_fixture *fx = tg_fixture_load("loss.bin");
    snprintf(key, sizeof key, "%s.dlogits", name);
    tg_shape shape;
    const double *want = tg_fixture_get(fx, key, &shape);
    double scale = 0;
    for (int64_t i = 0; i < tg_shape_numel(shape); i++) scale = fmax(scale, fabs(want[i]));
    tg_fixture_free(fx);
    check_ce_golden_tol(name, 1e-6, atol / scale, 1e-5);
}

START_TEST(ce_golden_2d) { check_ce_golden("ce2d", 1e-7); }
END_TEST

START_TEST(ce_golden_4d) { check_ce_golden("ce4d", 1e-7); }
END_TEST

START_TEST(ce_golden_4d_batch1) { check_ce_golden("ce4d_b1", 1e-7); }
END_TEST

/* Logits near 1000 with spread 40 and class 0 at 850: exp overflows unless the max is
 * subtracted. */
START_TEST(ce_golden_large_logits) { check_ce_golden("ce_big", 1e-7); }
END_TEST

/* Logits at +-1e3 and +-1e5 (spread 3, some targets at -100), against float64 PyTorch:
 * relative error <= 1e-6 on the loss, and on every gradient element relative to the
 * gradient's largest (PyTorch's own float32 kernels stay near 1e-7 by both measures). A
 * float log-sum-exp (max + log-sum rounded into one float) is off by 1e-3 at 1e5. */
START_TEST(ce_golden_scale_1e3) {
    check_ce_golden_tol("ce_1e3", 1e-6, 1e-6, 1e-6);
    check_ce_golden_tol("ce_1e3_4d", 1e-6, 1e-6, 1e-6);
}
END_TEST

START_TEST(ce_golden_scale_1e5) {
    check_ce_golden_tol("ce_1e5", 1e-6, 1e-6, 1e-6);
    check_ce_golden_tol("ce_1e5_4d", 1e-6, 1e-6, 1e-6);
    check_ce_golden_tol("ce_1e5_3d", 1e-6, 1e-6, 1e-6);
}
END_TEST

/* ignore_index: the default -100 on (N, C, L) logits, ignore_index 2 (a real class) on
 * per-pixel logits, every target ignored (NaN loss, zero gradient: PyTorch's 0/0). */
START_TEST(ce_golden_ignore_index) {
    check_ce_golden_tol("ce_ign_3d", 1e-6, 1e-6, 1e-5);
    check_ce_golden_tol("ce_ign2_4d", 1e-6, 1e-6, 1e-5);
    check_ce_golden_tol("ce_ign_all", 0, 0, 0);
}
END_TEST

/* ---------------------------------------------------------------- cross entropy: grids */

START_TEST(ce_gradcheck_grid) {
    /* (N, C, H, W); H = 0 means (N, C) logits. Odd sizes, batch 1 and 3, C = 1 too. */
    /* W = 0 (and H != 0) means (N, C, L = H) logits. */
    const int64_t shapes[][4] = {{1, 3, 0, 0}, {3, 7, 0, 0}, {3, 1, 0, 0}, {1, 5, 3, 3},
                                 {3, 3, 3, 5}, {3, 4, 1, 7}, {1, 2, 5, 1}, {2, 4, 5, 0},
                                 {1, 3, 7, 0}};
    tg_rng rng;
    tg_rng_seed(&rng, 21);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *d = shapes[s];
        tg_shape shape = d[3]   ? tg_shape4(d[0], d[1], d[2], d[3])
                         : d[2] ? tg_shape3(d[0], d[1], d[2])
                                : tg_shape2(d[0], d[1]);
        int64_t count = d[0] * (d[3] ? d[2] * d[3] : d[2] ? d[2] : 1);
        int32_t target[64];
        ck_assert_int_le(count, 64);
        fill_targets(&rng, target, count, d[1]);
        if (count > 2) target[count / 2] = -100; /* one ignored position */
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_tensor_new(ctx, shape);
        tg_rng_fill_normal(&rng, x->data, x->numel, 0, 2);
        tg_tensor_set_requires_grad(x, true);
        ce_case c = {target};
        char what[80], sbuf[64];
        snprintf(what, sizeof what, "cross_entropy %s", tg_shape_str(shape, sbuf, sizeof sbuf));
        tg_expect_gradcheck(what, ctx, ce_graph, &c, &x, 1);
        tg_ctx_free(ctx);
    }
}
END_TEST

/* Big enough for the threaded path, with H*W not a multiple of the 256-position tile. */
START_TEST(ce_matches_reference_large) {
    enum { N = 2, C = 10, H = 67, W = 67, COUNT = N * H * W, NUMEL = COUNT * C };
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    int32_t *target = malloc(COUNT * sizeof *target);
    double *want = malloc(NUMEL * sizeof *want);
    fill_targets(&rng, target, COUNT, C);
    for (int i = 0; i < COUNT; i += 7) target[i] = -100; /* ignored, across tiles */
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape4(N, C, H, W));
    tg_rng_fill_normal(&rng, x->data, x->numel, 0, 3);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *loss = tg_cross_entropy(ctx, x, target);
    tg_expect_ok("large");
    float dloss = 1.5f;
    ck_assert_int_eq(tg_backward_with(ctx, loss, &dloss), TG_OK);
    double ref = ref_cross_entropy(x->data, target, N, C, H * W, dloss, want);
    tg_expect_close("loss", loss->data, &ref, 1, 1e-6, 1e-6);
    tg_expect_close("dlogits", x->grad, want, NUMEL, 1e-9, 1e-4);
    free(want);
    free(target);
    tg_ctx_free(ctx);
}
END_TEST

/* The caller may free the target array right after the call. */
START_TEST(ce_target_is_copied) {
    enum { N = 3, C = 4 };
    tg_rng rng;
    tg_rng_seed(&rng, 8);
    int32_t kept[N];
    fill_targets(&rng, kept, N, C);
    int32_t *target = malloc(sizeof kept);
    memcpy(target, kept, sizeof kept);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_new(ctx, tg_shape2(N, C));
    tg_rng_fill_normal(&rng, x->data, x->numel, 0, 1);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *loss = tg_cross_entropy(ctx, x, target);
    free(target); /* ASan would flag a later read */
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    double want[N * C];
    double ref = ref_cross_entropy(x->data, kept, N, C, 1, 1.0, want);
    tg_expect_close("loss", loss->data, &ref, 1, 1e-6, 1e-6);
    tg_expect_close("dlogits", x->grad, want, N * C, 1e-7, 1e-5);
    tg_ctx_free(ctx);
}
END_TEST

/* Logits that are a parameter with grad already 0.5, used by two losses (tg_add): the
 * gradient is 0.5 plus both contributions. */
START_TEST(ce_accumulates) {
    enum { N = 2, C = 3, H = 2, W = 3, COUNT = N * H * W, NUMEL = COUNT * C };
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_params_add(ps, "logits", tg_shape4(N, C, H, W));
    tg_rng_fill_normal(&rng, x->data, x->numel, 0, 1);
    for (int64_t i = 0; i < x->numel; i++) x->grad[i] = 0.5f;
    int32_t t1[COUNT], t2[COUNT];
    fill_targets(&rng, t1, COUNT, C);
    fill_targets(&rng, t2, COUNT, C);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *loss = tg_add(ctx, tg_cross_entropy(ctx, x, t1), tg_cross_entropy(ctx, x, t2));
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    double g1[NUMEL], g2[NUMEL], want[NUMEL];
    double l1 = ref_cross_entropy(x->data, t1, N, C, H * W, 1.0, g1);
    double l2 = ref_cross_entropy(x->data, t2, N, C, H * W, 1.0, g2);
    for (int i = 0; i < NUMEL; i++) want[i] = 0.5 + g1[i] + g2[i];
    double lsum = l1 + l2;
    tg_expect_close("loss", loss->data, &lsum, 1, 1e-6, 1e-6);
    tg_expect_close("dlogits", x->grad, want, NUMEL, 1e-6, 1e-6);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

/* ---------------------------------------------------------------- cross entropy: bad input */

typedef struct ce_bad {
    tg_ctx *ctx;
    tg_tensor *x2, *x4;
    float x2_first, x4_last;
    int tape;
    size_t used;
} ce_bad;

static ce_bad ce_bad_begin(void) {
    ce_bad s;
    s.ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[2 * 7 * 3 * 3];
    for (int i = 0; i < 2 * 7 * 3 * 3; i++) v[i] = 0.1f * (float)i;
    s.x2 = tg_tensor_from(s.ctx, tg_shape2(3, 7), v);
    s.x4 = tg_tensor_from(s.ctx, tg_shape4(2, 7, 3, 3), v);
    tg_tensor_set_requires_grad(s.x2, true);
    tg_tensor_set_requires_grad(s.x4, true);
    s.x2_first = s.x2->data[0];
    s.x4_last = s.x4->data[s.x4->numel - 1];
    s.tape = tg_tape_length(s.ctx);
    s.used = tg_ctx_arena_used(s.ctx);
    return s;
}

static void ce_bad_end(ce_bad *s, const char *what) {
    ck_assert_msg(tg_tape_length(s->ctx) == s->tape, "%s: tape grew", what);
    ck_assert_msg(tg_ctx_arena_used(s->ctx) == s->used, "%s: arena grew", what);
    ck_assert_msg(s->x2->data[0] == s->x2_first && s->x4->data[s->x4->numel - 1] == s->x4_last,
                  "%s: logits changed", what);
    ck_assert_msg(!s->x2->grad && !s->x4->grad, "%s: a gradient appeared", what);
    tg_ctx_free(s->ctx);
}

START_TEST(ce_bad_target_range) {
    ce_bad s = ce_bad_begin();
    int32_t neg[3] = {0, 6, -1};
    ck_assert_ptr_null(tg_cross_entropy(s.ctx, s.x2, neg));
    const char *n1[] = {"tg_cross_entropy", "'target'", "index 2", "value -1", "C = 7",
                        "ignore_index (-100)"};
    expect_error_all("negative target", TG_ERR_ARG, n1, 6);
    /* With another ignore_index, -100 is an ordinary (bad) class index. */
    int32_t hundred[3] = {0, -100, 3};
    tg_cross_entropy_opts opts = tg_cross_entropy_opts_default();
    opts.ignore_index = 3;
    ck_assert_ptr_null(tg_cross_entropy_with(s.ctx, s.x2, hundred, opts));
    const char *n4[] = {"tg_cross_entropy", "index 1", "value -100", "ignore_index (3)"};
    expect_error_all("-100 not ignored", TG_ERR_ARG, n4, 4);
    /* A zeroed options struct would ignore class 0: refused. */
    int32_t fine[3] = {0, 1, 2};
    ck_assert_ptr_null(tg_cross_entropy_with(s.ctx, s.x2, fine, (tg_cross_entropy_opts){0}));
    const char *n5[] = {"tg_cross_entropy", "'opts'", "tg_cross_entropy_opts_default()"};
    expect_error_all("zeroed opts", TG_ERR_ARG, n5, 3);

    int32_t big[2 * 3 * 3] = {0};
    big[17] = 7;
    ck_assert_ptr_null(tg_cross_entropy(s.ctx, s.x4, big));
    const char *n2[] = {"tg_cross_entropy", "'target'", "index 17", "value 7", "C = 7"};
    expect_error_all("target == C", TG_ERR_ARG, n2, 5);
    big[17] = 1000;
    ck_assert_ptr_null(tg_cross_entropy(s.ctx, s.x4, big));
    const char *n3[] = {"tg_cross_entropy", "'target'", "index 17", "value 1000"};
    expect_error_all("target > C", TG_ERR_ARG, n3, 4);
    ce_bad_end(&s, "target range");
}
END_TEST

START_TEST(ce_bad_logits_and_null) {
    ce_bad s = ce_bad_begin();
    tg_tensor *x0 = tg_tensor_zeros(s.ctx, tg_shape0());
    tg_tensor *x1 = tg_tensor_zeros(s.ctx, tg_shape1(7));
    s.used = tg_ctx_arena_used(s.ctx);
    int32_t target[2 * 3 * 3] = {0};
    ck_assert_ptr_null(tg_cross_entropy(s.ctx, x1, target));
    const char *n1[] = {"tg_cross_entropy", "'logits'", "(7)", "(N, C)", "(N, C, L)",
                        "(N, C, H, W)"};
    expect_error_all("logits rank 1", TG_ERR_SHAPE, n1, 6);
    ck_assert_ptr_null(tg_cross_entropy(s.ctx, x0, target));
    const char *n2[] = {"tg_cross_entropy", "'logits'", "0 dims"};
    expect_error_all("logits rank 0", TG_ERR_SHAPE, n2, 3);
    ck_assert_ptr_null(tg_cross_entropy(s.ctx, s.x4, NULL));
    const char *n3[] = {"tg_cross_entropy", "'target' is NULL", "18"};
    expect_error_all("NULL target", TG_ERR_ARG, n3, 3);
    ck_assert_ptr_null(tg_cross_entropy(s.ctx, NULL, target));
    tg_expect_error("NULL logits", TG_ERR_ARG, "tg_cross_entropy", "'logits' is NULL");
    ck_assert_ptr_null(tg_cross_entropy(NULL, s.x2, target));
    tg_expect_error("NULL ctx", TG_ERR_ARG, "tg_cross_entropy", "'ctx' is NULL");
    ce_bad_end(&s, "logits");
}
END_TEST

/* ---------------------------------------------------------------- mse */

START_TEST(mse_golden) {
    tg_fixture *fx = tg_fixture_load("loss.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *pred = tg_fixture_tensor(ctx, fx, "mse.pred", true);
    tg_tensor *target = tg_fixture_tensor(ctx, fx, "mse.target", true);
    float dloss = (float)tg_fixture_get(fx, "mse.dloss", NULL)[0];
    tg_tensor *loss = tg_mse_loss(ctx, pred, target);
    tg_expect_ok("mse");
    ck_assert_int_eq(loss->shape.ndim, 0);
    ck_assert_int_eq(tg_backward_with(ctx, loss, &dloss), TG_OK);
    tg_expect_close("mse.loss", loss->data, tg_fixture_get(fx, "mse.loss", NULL), 1, 1e-6,
                    1e-6);
    tg_expect_close("mse.dpred", pred->grad, tg_fixture_get(fx, "mse.dpred", NULL),
                    pred->numel, 1e-7, 1e-5);
    tg_expect_close("mse.dtarget", target->grad, tg_fixture_get(fx, "mse.dtarget", NULL),
                    target->numel, 1e-7, 1e-5);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}
END_TEST

START_TEST(mse_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape0(), tg_shape1(7), tg_shape2(3, 5), tg_shape3(2, 3, 4),
                         tg_shape4(1, 2, 3, 5), tg_shape4(3, 1, 5, 2)};
    tg_rng rng;
    tg_rng_seed(&rng, 17);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int target_grad = 0; target_grad <= 1; target_grad++) {
            tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
            tg_tensor *in[2] = {tg_tensor_new(ctx, shapes[s]), tg_tensor_new(ctx, shapes[s])};
            tg_rng_fill_normal(&rng, in[0]->data, in[0]->numel, 0, 1);
            tg_rng_fill_normal(&rng, in[1]->data, in[1]->numel, 0, 1);
            tg_tensor_set_requires_grad(in[0], true);
            tg_tensor_set_requires_grad(in[1], target_grad == 1);
            char what[80], sbuf[64];
            snprintf(what, sizeof what, "mse %s target_grad=%d",
                     tg_shape_str(shapes[s], sbuf, sizeof sbuf), target_grad);
            tg_expect_gradcheck(what, ctx, mse_graph, NULL, in, 2);
            if (!target_grad) ck_assert_ptr_null(in[1]->grad);
            tg_ctx_free(ctx);
        }
    }
}
END_TEST

/* Only the target requires grad: pred gets none, target gets -2 (pred - target) / n. */
START_TEST(mse_target_only) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float p[4] = {1, 2, 3, 4}, t[4] = {0, 2, 5, 3};
    tg_tensor *pred = tg_tensor_from(ctx, tg_shape2(2, 2), p);
    tg_tensor *target = tg_tensor_from(ctx, tg_shape2(2, 2), t);
    tg_tensor_set_requires_grad(target, true);
    tg_tensor *loss = tg_mse_loss(ctx, pred, target);
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    ck_assert_float_eq(loss->data[0], 1.5f); /* (1 + 0 + 4 + 1) / 4 */
    ck_assert_ptr_null(pred->grad);
    float want[4] = {-0.5f, 0, 1, -0.5f};
    tg_expect_close_f("dtarget", target->grad, want, 4, 1e-7, 0);
    tg_ctx_free(ctx);
}
END_TEST

/* pred is a parameter with grad 0.5, used by two losses: 0.5 + both contributions. */
START_TEST(mse_accumulates) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *pred = tg_params_add(ps, "pred", tg_shape1(3));
    float p[3] = {1, -2, 0.5f}, t1[3] = {0, 0, 0}, t2[3] = {1, 1, 1};
    memcpy(pred->data, p, sizeof p);
    for (int i = 0; i < 3; i++) pred->grad[i] = 0.5f;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *loss = tg_add(ctx, tg_mse_loss(ctx, pred, tg_tensor_from(ctx, tg_shape1(3), t1)),
                             tg_mse_loss(ctx, pred, tg_tensor_from(ctx, tg_shape1(3), t2)));
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    float want[3];
    for (int i = 0; i < 3; i++) want[i] = 0.5f + 2 * (p[i] - t1[i]) / 3 + 2 * (p[i] - t2[i]) / 3;
    tg_expect_close_f("dpred", pred->grad, want, 3, 1e-6, 1e-6);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

/* More elements than one partial-sum chunk and the threading threshold. */
START_TEST(mse_matches_reference_large) {
    enum { N = 100003 };
    tg_rng rng;
    tg_rng_seed(&rng, 12);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *pred = tg_tensor_new(ctx, tg_shape1(N));
    tg_tensor *target = tg_tensor_new(ctx, tg_shape1(N));
    tg_rng_fill_normal(&rng, pred->data, N, 0, 1);
    tg_rng_fill_normal(&rng, target->data, N, 0.5f, 2);
    tg_tensor_set_requires_grad(pred, true);
    tg_tensor_set_requires_grad(target, true);
    tg_tensor *loss = tg_mse_loss(ctx, pred, target);
    float dloss = 0.25f;
    ck_assert_int_eq(tg_backward_with(ctx, loss, &dloss), TG_OK);
    double sum = 0;
    double *dp = malloc(N * sizeof *dp), *dt = malloc(N * sizeof *dt);
    for (int i = 0; i < N; i++) {
        double d = (double)pred->data[i] - target->data[i];
        sum += d * d;
        dp[i] = 2 * d / N * dloss;
        dt[i] = -dp[i];
    }
    double ref = sum / N;
    tg_expect_close("loss", loss->data, &ref, 1, 0, 1e-6);
    tg_expect_close("dpred", pred->grad, dp, N, 1e-10, 1e-5);
    tg_expect_close("dtarget", target->grad, dt, N, 1e-10, 1e-5);
    free(dp);
    free(dt);
    tg_ctx_free(ctx);
}
END_TEST

/* Errors of 4096 (squared 2^24) every 64 elements, 1 elsewhere: a float sum drops every
 * 1 that follows a 2^24 (below half an ulp), 63 per 2^24 + 63, a 4e-6 relative error. */
START_TEST(mse_sums_in_double) {
    enum { N = 50001 };
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *pred = tg_tensor_zeros(ctx, tg_shape1(N));
    tg_tensor *target = tg_tensor_zeros(ctx, tg_shape1(N));
    for (int i = 0; i < N; i++) pred->data[i] = i % 64 ? 1.0f : 4096.0f;
    tg_tensor *loss = tg_mse_loss(ctx, pred, target);
    tg_expect_ok("mse");
    double sum = 0;
    for (int i = 0; i < N; i++) sum += (double)pred->data[i] * pred->data[i];
    double ref = sum / N;
    tg_expect_close("loss", loss->data, &ref, 1, 0, 1e-6);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(mse_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    tg_tensor *b = tg_tensor_zeros(ctx, tg_shape2(3, 2));
    tg_tensor *c = tg_tensor_zeros(ctx, tg_shape1(6));
    tg_tensor_set_requires_grad(a, true);
    int tape = tg_tape_length(ctx);
    size_t used = tg_ctx_arena_used(ctx);
    ck_assert_ptr_null(tg_mse_loss(ctx, a, b));
    const char *n1[] = {"tg_mse_loss", "'target'", "(3, 2)", "(2, 3)"};
    expect_error_all("transposed", TG_ERR_SHAPE, n1, 4);
    ck_assert_ptr_null(tg_mse_loss(ctx, a, c));
    const char *n2[] = {"tg_mse_loss", "(6)", "(2, 3)"};
    expect_error_all("same numel, other rank", TG_ERR_SHAPE, n2, 3);
    ck_assert_ptr_null(tg_mse_loss(ctx, NULL, b));
    tg_expect_error("NULL pred", TG_ERR_ARG, "tg_mse_loss", "'pred' is NULL");
    ck_assert_ptr_null(tg_mse_loss(ctx, a, NULL));
    tg_expect_error("NULL target", TG_ERR_ARG, "tg_mse_loss", "'target' is NULL");
    ck_assert_ptr_null(tg_mse_loss(NULL, a, b));
    tg_expect_error("NULL ctx", TG_ERR_ARG, "tg_mse_loss", "'ctx' is NULL");
    ck_assert_int_eq(tg_tape_length(ctx), tape);
    ck_assert_uint_eq(tg_ctx_arena_used(ctx), used);
    ck_assert_ptr_null(a->grad);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- the header's example */

/* include/tapegrad.h's worked example (fit y = 3x - 1 with a 1->16->1 MLP: tg_linear,
 * tg_relu, tg_mse_loss), with plain SGD written out here so only these ops are tested. */
START_TEST(header_example_trains) {
    tg_rng rng;
    tg_rng_seed(&rng, 42);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w1 = tg_params_add(ps, "fc1.weight", tg_shape2(16, 1));
    tg_tensor *b1 = tg_params_add(ps, "fc1.bias", tg_shape1(16));
    tg_tensor *w2 = tg_params_add(ps, "fc2.weight", tg_shape2(1, 16));
    tg_tensor *b2 = tg_params_add(ps, "fc2.bias", tg_shape1(1));
    ck_assert_int_eq(tg_init_linear(&rng, w1, b1), TG_OK);
    ck_assert_int_eq(tg_init_linear(&rng, w2, b2), TG_OK);
    tg_tensor *params[4] = {w1, b1, w2, b2};
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float xs[32], ys[32], first = 0, last = 0;
    for (int i = 0; i < 32; i++) {
        xs[i] = i / 16.0f - 1;
        ys[i] = 3 * xs[i] - 1;
    }
    for (int step = 0; step < 300; step++) {
        tg_tensor *x = tg_tensor_from(ctx, tg_shape2(32, 1), xs);
        tg_tensor *y = tg_tensor_from(ctx, tg_shape2(32, 1), ys);
        tg_tensor *h = tg_relu(ctx, tg_linear(ctx, x, w1, b1));
        tg_tensor *loss = tg_mse_loss(ctx, tg_linear(ctx, h, w2, b2), y);
        tg_params_zero_grad(ps);
        ck_assert_msg(tg_backward(ctx, loss) == TG_OK, "%s", tg_error_message());
        for (int k = 0; k < 4; k++)
            for (int64_t i = 0; i < params[k]->numel; i++)
                params[k]->data[i] -= 0.05f * params[k]->grad[i];
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        tg_step_end(ctx);
    }
    ck_assert_msg(first > 1.0f && last < 0.02f * first, "loss %g -> %g", first, last);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

Suite *loss_suite(void) {
    Suite *s = suite_create("loss");
    TCase *tc = tg_test_case("loss");
    tcase_add_test(tc, ce_golden_2d);
    tcase_add_test(tc, ce_golden_4d);
    tcase_add_test(tc, ce_golden_4d_batch1);
    tcase_add_test(tc, ce_golden_large_logits);
    tcase_add_test(tc, ce_golden_scale_1e3);
    tcase_add_test(tc, ce_golden_scale_1e5);
    tcase_add_test(tc, ce_golden_ignore_index);
    tcase_add_test(tc, ce_gradcheck_grid);
    tcase_add_test(tc, ce_matches_reference_large);
    tcase_add_test(tc, ce_target_is_copied);
    tcase_add_test(tc, ce_accumulates);
    tcase_add_test(tc, ce_bad_target_range);
    tcase_add_test(tc, ce_bad_logits_and_null);
    tcase_add_test(tc, mse_golden);
    tcase_add_test(tc, mse_gradcheck_grid);
    tcase_add_test(tc, mse_target_only);
    tcase_add_test(tc, mse_accumulates);
    tcase_add_test(tc, mse_matches_reference_large);
    tcase_add_test(tc, mse_sums_in_double);
    tcase_add_test(tc, mse_bad_input);
    tcase_add_test(tc, header_example_trains);
    suite_add_tcase(s, tc);
    return s;
}
