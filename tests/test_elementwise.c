/*
 * tests/test_elementwise.c — add, sub, mul, div with broadcasting: PyTorch golden values
 * (forward and both gradients) over broadcasting edges (rank differences, size-1 dims on
 * either side, scalars, an outer product, one tensor as both operands), finite
 * differences over a grid of shape pairs, the broadcast helpers (shapes, plans, the
 * gradient reduction against a plain double loop, on both of its paths), add's fan-out
 * and aliasing, and shape errors that show both shapes.
 */
#include "testutil.h"

#include "../autograd/tape.h"
#include "../core/core.h"
#include "../ops/broadcast.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static tg_tensor *add_fanout_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_add(ctx, tg_add(ctx, in[0], in[1]), in[0]);
}

START_TEST(add_golden) {
    tg_fixture *fx = tg_fixture_load("elementwise.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *in[2] = {tg_fixture_tensor(ctx, fx, "a", true),
                        tg_fixture_tensor(ctx, fx, "b", true)};
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, "dout", false);
    tg_tensor *y = add_fanout_graph(ctx, in, NULL);
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    tg_expect_close("add.y", y->data, tg_fixture_get(fx, "add.y", NULL), y->numel, 1e-6, 1e-6);
    tg_expect_close("add.da", in[0]->grad, tg_fixture_get(fx, "add.da", NULL), y->numel, 1e-6,
                    1e-6);
    tg_expect_close("add.db", in[1]->grad, tg_fixture_get(fx, "add.db", NULL), y->numel, 1e-6,
                    1e-6);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}
END_TEST

START_TEST(add_gradcheck_grid) {
    tg_shape shapes[] = {tg_shape0(), tg_shape1(5), tg_shape2(3, 7), tg_shape4(3, 2, 5, 3)};
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *in[2] = {tg_tensor_new(ctx, shapes[s]), tg_tensor_new(ctx, shapes[s])};
        for (int k = 0; k < 2; k++) {
            tg_rng_fill_normal(&rng, in[k]->data, in[k]->numel, 0, 1);
            tg_tensor_set_requires_grad(in[k], true);
        }
        tg_expect_gradcheck("add", ctx, add_fanout_graph, NULL, in, 2);
        tg_ctx_free(ctx);
    }
}
END_TEST

START_TEST(add_self_alias) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[3] = {1, -2, 3}, seed[3] = {1, 10, 100};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape1(3), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_add(ctx, x, x);
    ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
    float want_y[3] = {2, -4, 6}, want_dx[3] = {2, 20, 200};
    tg_expect_close_f("y", y->data, want_y, 3, 0, 0);
    tg_expect_close_f("dx", x->grad, want_dx, 3, 0, 0);
    tg_ctx_free(ctx);
}
END_TEST

/* Only the operand that requires grad receives one; the other stays without a buffer. */
START_TEST(add_null_grad_skipped) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[2] = {1, 2}, seed[2] = {1, 1};
    tg_tensor *a = tg_tensor_from(ctx, tg_shape1(2), v);
    tg_tensor *b = tg_tensor_from(ctx, tg_shape1(2), v);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor *y = tg_add(ctx, a, b);
    ck_assert_int_eq(tg_backward_with(ctx, y, seed), TG_OK);
    ck_assert_ptr_nonnull(a->grad);
    ck_assert_ptr_null(b->grad);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(add_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    tg_tensor *b = tg_tensor_zeros(ctx, tg_shape2(3, 2));
    ck_assert_ptr_null(tg_add(ctx, a, b));
    tg_expect_error("add shape", TG_ERR_SHAPE, "tg_add", "(2, 3)");
    ck_assert_ptr_null(tg_add(ctx, a, NULL));
    tg_expect_error("add NULL", TG_ERR_ARG, "tg_add", "'b'");
    ck_assert_ptr_null(tg_add(NULL, a, a));
    tg_expect_error("add NULL ctx", TG_ERR_ARG, "add", "ctx");
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- broadcasting */

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, NOPS } op_id;
static const char *const op_names[NOPS] = {"add", "sub", "mul", "div"};

static tg_tensor *apply_op(tg_ctx *ctx, op_id op, tg_tensor *a, tg_tensor *b) {
    switch (op) {
    case OP_ADD: return tg_add(ctx, a, b);
    case OP_SUB: return tg_sub(ctx, a, b);
    case OP_MUL: return tg_mul(ctx, a, b);
    default: return tg_div(ctx, a, b);
    }
}

static tg_tensor *binary_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    return apply_op(ctx, *(op_id *)user, in[0], in[1]);
}

static tg_tensor *self_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    return apply_op(ctx, *(op_id *)user, in[0], in[0]);
}

#define NCASES 8 /* tests/golden/gen_broadcast.py's CASES */

START_TEST(broadcast_golden) {
    tg_fixture *fx = tg_fixture_load("broadcast.bin");
    char key[64];
    for (int k = 0; k < NCASES; k++) {
        for (int op = 0; op < NOPS; op++) {
            tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
            snprintf(key, sizeof key, "c%d.a", k);
            tg_tensor *a = tg_fixture_tensor(ctx, fx, key, true);
            snprintf(key, sizeof key, "c%d.b", k);
            tg_tensor *b = tg_fixture_tensor(ctx, fx, key, true);
            snprintf(key, sizeof key, "c%d.dout", k);
            tg_tensor *dout = tg_fixture_tensor(ctx, fx, key, false);
            tg_tensor *y = apply_op(ctx, (op_id)op, a, b);
            snprintf(key, sizeof key, "%s case %d", op_names[op], k);
            tg_expect_ok(key);
            ck_assert_msg(tg_shape_equal(y->shape, dout->shape), "%s: output shape", key);
            ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
            const char *what[3] = {"y", "da", "db"};
            const float *got[3] = {y->data, a->grad, b->grad};
            const int64_t n[3] = {y->numel, a->numel, b->numel};
            for (int w = 0; w < 3; w++) {
                snprintf(key, sizeof key, "%s.c%d.%s", op_names[op], k, what[w]);
                tg_expect_close(key, got[w], tg_fixture_get(fx, key, NULL), n[w], 1e-6, 2e-6);
            }
            tg_ctx_free(ctx);
        }
    }
    tg_fixture_free(fx);
}
END_TEST

/* x op x: both gradients go to one buffer (mul: 2 x dy; sub and div: 0). */
START_TEST(broadcast_self_golden) {
    tg_fixture *fx = tg_fixture_load("broadcast.bin");
    char key[64];
    for (int op = 0; op < NOPS; op++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_fixture_tensor(ctx, fx, "self.x", true);
        tg_tensor *dout = tg_fixture_tensor(ctx, fx, "self.dout", false);
        tg_tensor *y = apply_op(ctx, (op_id)op, x, x);
        ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
        snprintf(key, sizeof key, "%s.self.y", op_names[op]);
        tg_expect_close(key, y->data, tg_fixture_get(fx, key, NULL), y->numel, 1e-6, 2e-6);
        snprintf(key, sizeof key, "%s.self.dx", op_names[op]);
        tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, 1e-6, 2e-6);
        tg_ctx_free(ctx);
    }
    tg_fixture_free(fx);
}
END_TEST

/* Random values; for div's b (in[1]) kept in +-[0.5, 1.5]. */
static void fill_operand(tg_rng *rng, tg_tensor *t, bool divisor) {
    for (int64_t i = 0; i < t->numel; i++) {
        float v = (float)(tg_rng_uniform(rng) * 2 - 1);
        t->data[i] = divisor ? (v < 0 ? v - 0.5f : v + 0.5f) : 2 * v;
    }
}

START_TEST(broadcast_gradcheck_grid) {
    const tg_shape pairs[][2] = {
        {tg_shape2(3, 4), tg_shape2(3, 4)},
        {tg_shape3(2, 3, 4), tg_shape1(4)},
        {tg_shape1(4), tg_shape3(2, 3, 4)},
        {tg_shape3(3, 1, 5), tg_shape3(1, 4, 1)},
        {tg_shape2(3, 4), tg_shape0()},
        {tg_shape0(), tg_shape2(3, 4)},
        {tg_shape0(), tg_shape0()},
        {tg_shape4(2, 1, 3, 1), tg_shape3(4, 1, 5)},
        {tg_shape4(2, 3, 4, 5), tg_shape4(1, 3, 1, 5)},
        {tg_shape4(2, 3, 4, 5), tg_shape4(2, 1, 4, 1)},
        {tg_shape2(1, 1), tg_shape1(1)},
        {tg_shape2(5, 1), tg_shape1(6)},
    };
    tg_rng rng;
    tg_rng_seed(&rng, 21);
    char what[96], sa[40], sb[40];
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        for (int op = 0; op < NOPS; op++) {
            for (int grads = 1; grads <= 3; grads++) { /* a only, b only, both */
                tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
                tg_tensor *in[2];
                for (int i = 0; i < 2; i++) {
                    in[i] = tg_tensor_new(ctx, pairs[k][i]);
                    fill_operand(&rng, in[i], op == OP_DIV && i == 1);
                    tg_tensor_set_requires_grad(in[i], (grads >> i) & 1);
                }
                op_id id = (op_id)op;
                snprintf(what, sizeof what, "%s %s %s grads %d", op_names[op],
                         tg_shape_str(pairs[k][0], sa, sizeof sa),
                         tg_shape_str(pairs[k][1], sb, sizeof sb), grads);
                tg_expect_gradcheck(what, ctx, binary_graph, &id, in, 2);
                tg_ctx_free(ctx);
            }
        }
    }
}
END_TEST

START_TEST(broadcast_self_gradcheck) {
    tg_rng rng;
    tg_rng_seed(&rng, 22);
    for (int op = 0; op < NOPS; op++) {
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *x = tg_tensor_new(ctx, tg_shape3(2, 3, 4));
        fill_operand(&rng, x, true);
        tg_tensor_set_requires_grad(x, true);
        op_id id = (op_id)op;
        tg_expect_gradcheck(op_names[op], ctx, self_graph, &id, &x, 1);
        tg_ctx_free(ctx);
    }
}
END_TEST

/* The composed use the GPT example makes: (x - mean) * w + bias with broadcasting. */
static tg_tensor *affine_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_add(ctx, tg_mul(ctx, tg_sub(ctx, in[0], in[1]), in[2]), in[3]);
}

START_TEST(broadcast_composed_gradcheck) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_rng rng;
    tg_rng_seed(&rng, 23);
    tg_shape s[4] = {tg_shape3(2, 3, 4), tg_shape3(2, 3, 1), tg_shape1(4), tg_shape1(4)};
    tg_tensor *in[4];
    for (int i = 0; i < 4; i++) {
        in[i] = tg_tensor_new(ctx, s[i]);
        fill_operand(&rng, in[i], false);
        tg_tensor_set_requires_grad(in[i], true);
    }
    tg_expect_gradcheck("(x - m) * w + b", ctx, affine_graph, NULL, in, 4);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(broadcast_shapes_and_plans) {
    tg_shape out;
    ck_assert(tg_broadcast_shape("t", "a", tg_shape4(2, 1, 4, 1), "b", tg_shape3(3, 1, 5), &out));
    ck_assert(tg_shape_equal(out, tg_shape4(2, 3, 4, 5)));
    ck_assert(tg_broadcast_shape("t", "a", tg_shape0(), "b", tg_shape0(), &out));
    ck_assert_int_eq(out.ndim, 0);
    ck_assert(!tg_broadcast_shape("t", "a", tg_shape2(2, 3), "b", tg_shape1(4), &out));
    tg_expect_error("mismatch", TG_ERR_SHAPE, "'a' (2, 3)", "'b' (4)");
    /* Same shapes: one dim, stride 1 for both. */
    tg_bcast p = tg_bcast_plan(tg_shape3(2, 3, 4), tg_shape3(2, 3, 4), tg_shape3(2, 3, 4));
    ck_assert_int_eq(p.ndim, 1);
    ck_assert_int_eq(p.dim[0], 24);
    ck_assert_int_eq(p.stride_a[0], 1);
    ck_assert_int_eq(p.stride_b[0], 1);
    /* A bias: rows of 4, b read with stride 0 across rows. */
    p = tg_bcast_plan(tg_shape3(2, 3, 4), tg_shape3(2, 3, 4), tg_shape1(4));
    ck_assert_int_eq(p.ndim, 2);
    ck_assert_int_eq(p.dim[0], 6);
    ck_assert_int_eq(p.stride_b[0], 0);
    ck_assert_int_eq(p.stride_b[1], 1);
    /* Reductions: (k0, r0, k1, r1, k2). */
    tg_bcast_reduce r = tg_bcast_reduce_plan(tg_shape3(2, 3, 4), tg_shape1(4));
    ck_assert(r.k0 == 1 && r.r0 == 1 && r.k1 == 1 && r.r1 == 6 && r.k2 == 4);
    r = tg_bcast_reduce_plan(tg_shape4(2, 3, 4, 5), tg_shape4(2, 1, 4, 1));
    ck_assert(r.k0 == 2 && r.r0 == 3 && r.k1 == 4 && r.r1 == 5 && r.k2 == 1);
    r = tg_bcast_reduce_plan(tg_shape4(2, 3, 4, 5), tg_shape4(1, 3, 1, 5));
    ck_assert(r.k0 == 1 && r.r0 == 2 && r.k1 == 3 && r.r1 == 4 && r.k2 == 5);
    r = tg_bcast_reduce_plan(tg_shape2(3, 4), tg_shape0());
    ck_assert(r.k0 * r.k1 * r.k2 == 1 && r.r0 * r.r1 == 12);
}
END_TEST

/* The reduction kernel against a plain double loop, on shapes that take each path:
 * tasks over kept elements, the chunked split for few kept elements (bias, scalar,
 * per-channel), and no reduction at all. */
START_TEST(broadcast_reduce_paths) {
    const tg_shape cases[][2] = {
        {tg_shape2(3000, 64), tg_shape1(64)},               /* chunked along r1 */
        {tg_shape1(300000), tg_shape0()},                   /* chunked, k2 = 1 */
        {tg_shape3(64, 8, 512), tg_shape3(1, 8, 1)},        /* chunked along r0 */
        {tg_shape3(40, 700, 9), tg_shape3(40, 1, 9)},       /* tasks, k2 = 9 */
        {tg_shape3(5, 30000, 3), tg_shape3(5, 1, 1)},       /* few kept, k0 tasks */
        {tg_shape2(700, 1000), tg_shape2(700, 1)},          /* tasks, k2 = 1 rows */
        {tg_shape2(70, 1000), tg_shape2(70, 1000)},         /* no reduction */
    };
    tg_rng rng;
    tg_rng_seed(&rng, 24);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tg_shape out = cases[k][0], in = cases[k][1];
        int64_t n = tg_shape_numel(out), m = tg_shape_numel(in);
        float *g = malloc((size_t)n * sizeof(float)), *d = malloc((size_t)m * sizeof(float));
        double *want = calloc((size_t)m, sizeof(double));
        ck_assert(g && d && want);
        tg_rng_fill_uniform(&rng, g, n, -1, 1);
        for (int64_t j = 0; j < m; j++) d[j] = 0.25f;
        /* Reference: each output index mapped to its input index. */
        int64_t od[4] = {1, 1, 1, 1}, id[4] = {1, 1, 1, 1};
        for (int i = 0; i < out.ndim; i++) od[4 - out.ndim + i] = out.dim[i];
        for (int i = 0; i < in.ndim; i++) id[4 - in.ndim + i] = in.dim[i];
        for (int64_t i = 0; i < n; i++) {
            int64_t rem = i, idx = 0, stride = 1;
            for (int dd = 3; dd >= 0; dd--) {
                int64_t c = rem % od[dd];
                rem /= od[dd];
                idx += (id[dd] == 1 ? 0 : c) * stride;
                stride *= id[dd];
            }
            want[idx] += g[i];
        }
        for (int64_t j = 0; j < m; j++) want[j] = 0.25 + 2.0 * want[j];
        tg_bcast_reduce p = tg_bcast_reduce_plan(out, in);
        int64_t ns = broadcast_reduce_scratch_floats(&p);
        float *scratch = ns ? malloc((size_t)ns * sizeof(float)) : NULL;
        broadcast_reduce_cpu(d, g, 2.0f, &p, scratch);
        char what[32];
        snprintf(what, sizeof what, "reduce case %zu", k);
        /* float sums of up to 3e5 terms of size 1: allow a few units of 1e-7 * sqrt(n) */
        tg_expect_close(what, d, want, m, 1e-3, 1e-5);
        free(scratch);
        free(g);
        free(d);
        free(want);
    }
}
END_TEST

START_TEST(broadcast_bad_input) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_zeros(ctx, tg_shape3(2, 3, 4));
    tg_tensor *b = tg_tensor_zeros(ctx, tg_shape2(5, 4));
    ck_assert_ptr_null(tg_mul(ctx, a, b));
    tg_expect_error("mul mismatch", TG_ERR_SHAPE, "tg_mul: cannot broadcast 'a' (2, 3, 4) "
                    "with 'b' (5, 4): dim -2 is 3 in 'a' and 5 in 'b'", "hint");
    ck_assert_ptr_null(tg_sub(ctx, NULL, b));
    tg_expect_error("sub NULL", TG_ERR_ARG, "tg_sub", "'a'");
    ck_assert_ptr_null(tg_div(ctx, a, NULL));
    tg_expect_error("div NULL", TG_ERR_ARG, "tg_div", "'b'");
    /* Nothing recorded, a later op given the NULL keeps the first message. */
    ck_assert_ptr_null(tg_div(ctx, a, b));
    ck_assert_ptr_null(tg_add(ctx, tg_div(ctx, a, b), a));
    tg_expect_error("pending", TG_ERR_SHAPE, "tg_div", NULL);
    tg_ctx_free(ctx);
}
END_TEST

/* The explain line says which operand was broadcast and over how many outputs its
 * gradient sums; the variant column names it. */
START_TEST(broadcast_explain) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_zeros(ctx, tg_shape3(2, 3, 4)), *b = tg_tensor_zeros(ctx, tg_shape1(4));
    tg_tensor_set_requires_grad(a, true);
    ck_assert_ptr_nonnull(tg_div(ctx, a, b));
    ck_assert_int_eq(ctx->tape.len, 1);
    char buf[256];
    const tg_record *rec = &ctx->tape.records[0];
    ck_assert_str_eq(rec->op->name, "div");
    const char *line = tg_record_explain(rec, buf, sizeof buf);
    ck_assert_msg(strstr(line, "da += dy / b, db -= dy * y / b") &&
                      strstr(line, "b (4) was broadcast to (2, 3, 4), so db is summed over 6"),
                  "%s", line);
    rec->op->describe(rec, buf, sizeof buf);
    ck_assert_str_eq(buf, "broadcast b");
    tg_ctx_free(ctx);
}
END_TEST

Suite *elementwise_suite(void) {
    Suite *s = suite_create("elementwise");
    TCase *tc = tg_test_case("add");
    tcase_add_test(tc, add_golden);
    tcase_add_test(tc, add_gradcheck_grid);
    tcase_add_test(tc, add_self_alias);
    tcase_add_test(tc, add_null_grad_skipped);
    tcase_add_test(tc, add_bad_input);
    suite_add_tcase(s, tc);
    tc = tg_test_case("broadcast");
    tcase_add_test(tc, broadcast_golden);
    tcase_add_test(tc, broadcast_self_golden);
    tcase_add_test(tc, broadcast_gradcheck_grid);
    tcase_add_test(tc, broadcast_self_gradcheck);
    tcase_add_test(tc, broadcast_composed_gradcheck);
    tcase_add_test(tc, broadcast_shapes_and_plans);
    tcase_add_test(tc, broadcast_reduce_paths);
    tcase_add_test(tc, broadcast_bad_input);
    tcase_add_test(tc, broadcast_explain);
    suite_add_tcase(s, tc);
    return s;
}
