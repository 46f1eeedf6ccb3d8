/*
 * tests/test_layout.c — tg_transpose, tg_permute, tg_concat, tg_slice: PyTorch golden
 * values (forward and every input's gradient) with negative and size-1 dims; finite
 * differences; the tiled permute path on shapes larger than a tile; concat of one tensor
 * twice (its gradient doubles); bad inputs (dims out of range or repeated, mismatched
 * shapes, too many inputs, empty slices) that change nothing.
 */
#include "testutil.h"

#include "../ops/layout.h"

#include <stdlib.h>

typedef struct layout_case {
    const char *name;
    int kind; /* 0 transpose, 1 permute, 2 concat, 3 slice */
    int nin;
    int a, b;           /* transpose dims; concat/slice: dim */
    int perm[4];
    int64_t start, end; /* slice */
} layout_case;

static tg_tensor *layout_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    const layout_case *c = user;
    switch (c->kind) {
    case 0: return tg_transpose(ctx, in[0], c->a, c->b);
    case 1: return tg_permute(ctx, in[0], c->perm);
    case 2: return tg_concat(ctx, in, c->nin, c->a);
    default: return tg_slice(ctx, in[0], c->a, c->start, c->end);
    }
}

static const layout_case cases[] = {
    {"t2d", 0, 1, 0, 1, {0}, 0, 0},
    {"t_last2", 0, 1, -1, -2, {0}, 0, 0},
    {"t_13", 0, 1, 1, 3, {0}, 0, 0},
    {"t_same", 0, 1, 1, 1, {0}, 0, 0},
    {"t_unit", 0, 1, 0, 2, {0}, 0, 0},
    {"p_0213", 1, 1, 0, 0, {0, 2, 1, 3}, 0, 0},
    {"p_3102", 1, 1, 0, 0, {3, 1, 0, 2}, 0, 0},
    {"p_201", 1, 1, 0, 0, {2, 0, 1}, 0, 0},
    {"p_neg", 1, 1, 0, 0, {-1, -3, -2}, 0, 0},
    {"c_dim1", 2, 3, 1, 0, {0}, 0, 0},
    {"c_last", 2, 2, -1, 0, {0}, 0, 0},
    {"c_dim0", 2, 4, 0, 0, {0}, 0, 0},
    {"c_one", 2, 1, 0, 0, {0}, 0, 0},
    {"s_mid", 3, 1, 1, 0, {0}, 2, 5},
    {"s_neg", 3, 1, -1, 0, {0}, -3, 100},
    {"s_first", 3, 1, 0, 0, {0}, 0, 1},
    {"s_negend", 3, 1, 2, 0, {0}, 1, -2},
};
#define NCASES (sizeof cases / sizeof cases[0])

START_TEST(layout_golden) {
    tg_fixture *fx = tg_fixture_load("layout.bin");
    for (size_t ci = 0; ci < NCASES; ci++) {
        const layout_case *c = &cases[ci];
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        char key[64];
        tg_tensor *in[4];
        for (int i = 0; i < c->nin; i++) {
            snprintf(key, sizeof key, "%s.x%d", c->name, i);
            in[i] = tg_fixture_tensor(ctx, fx, key, true);
        }
        snprintf(key, sizeof key, "%s.dout", c->name);
        tg_tensor *dout = tg_fixture_tensor(ctx, fx, key, false);
        tg_tensor *out = layout_graph(ctx, in, (void *)c);
        tg_expect_ok(c->name);
        ck_assert_msg(tg_shape_equal(out->shape, dout->shape), "%s: output shape", c->name);
        ck_assert_int_eq(tg_backward_with(ctx, out, dout->data), TG_OK);
        snprintf(key, sizeof key, "%s.out", c->name);
        tg_expect_close(key, out->data, tg_fixture_get(fx, key, NULL), out->numel, 0, 0);
        for (int i = 0; i < c->nin; i++) {
            snprintf(key, sizeof key, "%s.dx%d", c->name, i);
            tg_expect_close(key, in[i]->grad, tg_fixture_get(fx, key, NULL), in[i]->numel, 0, 0);
        }
        tg_ctx_free(ctx);
    }
    tg_fixture_free(fx);
}
END_TEST

START_TEST(layout_gradcheck) {
    tg_fixture *fx = tg_fixture_load("layout.bin"); /* for the input shapes */
    for (size_t ci = 0; ci < NCASES; ci++) {
        const layout_case *c = &cases[ci];
        tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *in[4];
        for (int i = 0; i < c->nin; i++) {
            char key[64];
            snprintf(key, sizeof key, "%s.x%d", c->name, i);
            in[i] = tg_fixture_tensor(ctx, fx, key, true);
        }
        tg_expect_gradcheck(c->name, ctx, layout_graph, (void *)c, in, c->nin);
        tg_ctx_free(ctx);
    }
    tg_fixture_free(fx);
}
END_TEST

/* Shapes past one 32x32 tile with ragged edges: every permutation of 4 dims against the
 * definition, forward and backward (accumulating onto a pre-filled gradient). */
START_TEST(layout_permute_all) {
    const int64_t shape[4] = {2, 3, 37, 41};
    int64_t n = 2 * 3 * 37 * 41;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx);
    for (int64_t i = 0; i < n; i++) x[i] = (float)i;
    int perms = 0;
    for (int p0 = 0; p0 < 4; p0++)
        for (int p1 = 0; p1 < 4; p1++)
            for (int p2 = 0; p2 < 4; p2++)
                for (int p3 = 0; p3 < 4; p3++) {
                    if (p0 == p1 || p0 == p2 || p0 == p3 || p1 == p2 || p1 == p3 || p2 == p3)
                        continue;
                    permute_geom g = {.in_shape = {shape[0], shape[1], shape[2], shape[3]},
                                      .perm = {p0, p1, p2, p3}};
                    permute_cpu(y, x, &g, false);
                    int64_t od[4] = {shape[p0], shape[p1], shape[p2], shape[p3]}, idx[4];
                    for (int64_t e = 0; e < n; e++) {
                        int64_t r = e;
                        for (int k = 3; k >= 0; k--) idx[k] = r % od[k], r /= od[k];
                        int64_t src[4];
                        src[p0] = idx[0], src[p1] = idx[1], src[p2] = idx[2], src[p3] = idx[3];
                        int64_t s = ((src[0] * shape[1] + src[1]) * shape[2] + src[2]) * shape[3] + src[3];
                        ck_assert_msg(y[e] == x[s], "perm %d%d%d%d at %lld", p0, p1, p2, p3, (long long)e);
                    }
                    for (int64_t i = 0; i < n; i++) dx[i] = 1.0f;
                    permute_geom inv = permute_inverse(&g);
                    permute_cpu(dx, y, &inv, true);
                    for (int64_t i = 0; i < n; i++)
                        ck_assert_msg(dx[i] == x[i] + 1.0f, "inverse perm %d%d%d%d at %lld", p0,
                                      p1, p2, p3, (long long)i);
                    perms++;
                }
    ck_assert_int_eq(perms, 24);
    free(x), free(y), free(dx);
}
END_TEST

/* concat(x, x): x's gradient receives both blocks. */
START_TEST(layout_concat_same_twice) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float xs[6] = {1, 2, 3, 4, 5, 6}, dy[12];
    for (int i = 0; i < 12; i++) dy[i] = (float)(i + 1);
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(2, 3), xs);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *in[2] = {x, x};
    tg_tensor *y = tg_concat(ctx, in, 2, 1); /* (2, 6): rows 1 2 3 1 2 3 / 4 5 6 4 5 6 */
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
    const float want_y[12] = {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6};
    const float want_dx[6] = {1 + 4, 2 + 5, 3 + 6, 7 + 10, 8 + 11, 9 + 12};
    tg_expect_close_f("y", y->data, want_y, 12, 0, 0);
    tg_expect_close_f("dx", x->grad, want_dx, 6, 0, 0);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(layout_bad_inputs) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape3(2, 3, 4));
    tg_tensor *y = tg_tensor_zeros(ctx, tg_shape3(2, 5, 3));
    tg_tensor *s = tg_tensor_zeros(ctx, tg_shape0());
    tg_tensor_set_requires_grad(x, true);
    ck_assert_ptr_nonnull(tg_transpose(ctx, x, 0, 1));
    int tape = tg_tape_length(ctx);
    size_t used = tg_ctx_arena_used(ctx);

    ck_assert_ptr_null(tg_transpose(ctx, x, 0, 3));
    tg_expect_error("transpose", TG_ERR_ARG, "tg_transpose: argument 'dim1' = 3", "-3 .. 2");
    ck_assert_ptr_null(tg_transpose(ctx, x, -4, 0));
    tg_expect_error("transpose neg", TG_ERR_ARG, "'dim0' = -4", "(2, 3, 4)");
    const int twice[3] = {0, 1, -2};
    ck_assert_ptr_null(tg_permute(ctx, x, twice));
    tg_expect_error("permute twice", TG_ERR_ARG, "tg_permute: argument 'dims' names dim 1 twice",
                    "exactly once");
    ck_assert_ptr_null(tg_permute(ctx, x, NULL));
    tg_expect_error("permute NULL", TG_ERR_ARG, "tg_permute", "'dims' is NULL");
    tg_tensor *pair[2] = {x, y};
    ck_assert_ptr_null(tg_concat(ctx, pair, 2, 1));
    tg_expect_error("concat", TG_ERR_SHAPE, "tg_concat: argument 'xs[1]' has shape (2, 5, 3)",
                    "along dim 1");
    tg_tensor *five[5] = {x, x, x, x, x};
    ck_assert_ptr_null(tg_concat(ctx, five, 5, 0));
    tg_expect_error("concat n", TG_ERR_ARG, "tg_concat: argument 'n' = 5", "TG_MAX_INPUTS");
    ck_assert_ptr_null(tg_concat(ctx, pair, 0, 0));
    tg_expect_error("concat 0", TG_ERR_ARG, "'n' = 0", NULL);
    tg_tensor *scalars[1] = {s};
    ck_assert_ptr_null(tg_concat(ctx, scalars, 1, 0));
    tg_expect_error("concat scalar", TG_ERR_SHAPE, "scalar", NULL);
    ck_assert_ptr_null(tg_slice(ctx, x, 1, 2, 2));
    tg_expect_error("slice empty", TG_ERR_ARG, "tg_slice: [start, end) = [2, 2) of dim 1", "empty");
    ck_assert_ptr_null(tg_slice(ctx, x, 2, -1, -3));
    tg_expect_error("slice reversed", TG_ERR_ARG, "[-1, -3)", NULL);
    ck_assert_ptr_null(tg_slice(ctx, x, 5, 0, 1));
    tg_expect_error("slice dim", TG_ERR_ARG, "tg_slice: argument 'dim' = 5", NULL);
    ck_assert_ptr_null(tg_slice(ctx, NULL, 0, 0, 1));
    tg_expect_error("slice NULL", TG_ERR_ARG, "tg_slice", "'x' is NULL");
    ck_assert_int_eq(tg_tape_length(ctx), tape);
    ck_assert_uint_eq(tg_ctx_arena_used(ctx), used);
    tg_ctx_free(ctx);
}
END_TEST

Suite *layout_suite(void) {
    Suite *s = suite_create("layout");
    TCase *tc = tg_test_case("layout");
    tcase_add_test(tc, layout_golden);
    tcase_add_test(tc, layout_gradcheck);
    tcase_add_test(tc, layout_permute_all);
    tcase_add_test(tc, layout_concat_same_twice);
    tcase_add_test(tc, layout_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}
