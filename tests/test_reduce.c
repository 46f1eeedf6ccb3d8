/*
 * tests/test_reduce.c — tg_sum, tg_mean, tg_max, tg_var (dims 0, 1, -1, keepdim both
 * ways, biased and unbiased) and tg_sum_all, tg_mean_all, tg_max_all: PyTorch golden
 * values (forward and dx), including exact ties (tg_max: the first arg-max gets the
 * gradient; tg_max_all: shared evenly, as PyTorch 1.13); finite differences over shapes
 * with size-1 dims and a scalar; long rows (the chunked parallel path) against a double
 * reference and bit-identical at 1 and 2 threads; NaN; bad dims that change nothing.
 */
#include "testutil.h"

#include "../ops/reduce.h"

#include <math.h>
#include <stdlib.h>

typedef struct red_case {
    int kind; /* 0 sum, 1 mean, 2 max, 3 var unbiased, 4 var biased, 5 sum_all, 6 mean_all,
                 7 max_all */
    int dim;
    bool keepdim;
} red_case;

static tg_tensor *red_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    const red_case *c = user;
    switch (c->kind) {
    case 0: return tg_sum(ctx, in[0], c->dim, c->keepdim);
    case 1: return tg_mean(ctx, in[0], c->dim, c->keepdim);
    case 2: return tg_max(ctx, in[0], c->dim, c->keepdim);
    case 3: return tg_var(ctx, in[0], c->dim, c->keepdim, true);
    case 4: return tg_var(ctx, in[0], c->dim, c->keepdim, false);
    case 5: return tg_sum_all(ctx, in[0]);
    case 6: return tg_mean_all(ctx, in[0]);
    default: return tg_max_all(ctx, in[0]);
    }
}

static const char *const kind_names[] = {"sum", "mean", "max", "var", "varb", "sum_all",
                                         "mean_all", "max_all"};

static void check_golden(const tg_fixture *fx, const char *input, const char *name,
                         red_case c, double tol) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    char key[64];
    tg_tensor *x = tg_fixture_tensor(ctx, fx, input, true);
    snprintf(key, sizeof key, "%s.dout", name);
    tg_shape want_shape;
    tg_fixture_get(fx, key, &want_shape);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, key, false);
    tg_tensor *y = red_graph(ctx, &x, &c);
    tg_expect_ok(name);
    char s1[40], s2[40];
    ck_assert_msg(tg_shape_equal(y->shape, want_shape), "%s: shape %s, want %s", name,
                  tg_shape_str(y->shape, s1, sizeof s1), tg_shape_str(want_shape, s2, sizeof s2));
    ck_assert_int_eq(tg_backward_with(ctx, y, dout->data), TG_OK);
    snprintf(key, sizeof key, "%s.out", name);
    tg_expect_close(key, y->data, tg_fixture_get(fx, key, NULL), y->numel, tol, tol);
    snprintf(key, sizeof key, "%s.dx", name);
    tg_expect_close(key, x->grad, tg_fixture_get(fx, key, NULL), x->numel, tol, tol);
    tg_ctx_free(ctx);
}

START_TEST(reduce_golden) {
    tg_fixture *fx = tg_fixture_load("reduce.bin");
    const int dims[] = {0, 1, -1};
    for (int k = 0; k < 5; k++)
        for (int d = 0; d < 3; d++)
            for (int keep = 0; keep <= 1; keep++) {
                char name[48];
                snprintf(name, sizeof name, "%s.d%d.k%d", kind_names[k], dims[d], keep);
                check_golden(fx, "x", name, (red_case){k, dims[d], keep}, 1e-5);
            }
    for (int k = 5; k < 8; k++) check_golden(fx, "x", kind_names[k], (red_case){k, 0, false}, 1e-5);
    /* Exact ties: max(dim) -> the first arg-max, max_all -> shared evenly. */
    check_golden(fx, "ties", "ties.max.d1", (red_case){2, 1, false}, 0);
    check_golden(fx, "ties", "ties.max.d0", (red_case){2, 0, false}, 0);
    check_golden(fx, "ties", "ties.max_all", (red_case){7, 0, false}, 0);
    tg_fixture_free(fx);
}
END_TEST

/* Finite differences: every kind over shapes with size-1 dims, every dim (negative too),
 * keepdim both ways; a scalar input; max on distinct values (no ties). */
START_TEST(reduce_gradcheck_grid) {
    const tg_shape shapes[] = {tg_shape1(5), tg_shape2(3, 4), tg_shape3(2, 1, 5),
                               tg_shape4(2, 3, 1, 4), tg_shape0()};
    tg_rng rng;
    tg_rng_seed(&rng, 31);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int nd = shapes[s].ndim > 0 ? shapes[s].ndim : 1;
        for (int k = 0; k < 8; k++) {
            for (int dim = -nd; dim < nd; dim++) {
                for (int keep = 0; keep <= 1; keep++) {
                    if (k >= 5 && (dim != 0 || keep)) continue; /* *_all: once */
                    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
                    tg_tensor *x = tg_tensor_new(ctx, shapes[s]);
                    /* Distinct values at least 0.05 apart: max has no ties and no kink
                     * within eps. */
                    for (int64_t i = 0; i < x->numel; i++)
                        x->data[i] = (float)(0.05 * (double)((i * 7 + 3) % x->numel)) +
                                     (float)(0.01 * tg_rng_uniform(&rng));
                    tg_tensor_set_requires_grad(x, true);
                    red_case c = {k, dim, keep};
                    int64_t n = shapes[s].ndim ? shapes[s].dim[dim < 0 ? dim + nd : dim] : 1;
                    if (k == 3 && n == 1) { /* unbiased var of one value: NaN (below) */
                        tg_ctx_free(ctx);
                        continue;
                    }
                    char what[96], sx[40];
                    snprintf(what, sizeof what, "%s %s dim %d keep %d", kind_names[k],
                             tg_shape_str(shapes[s], sx, sizeof sx), dim, keep);
                    tg_expect_gradcheck_tol(what, ctx, red_graph, &c, &x, 1, 1e-3, 2e-3, 1e-2, 0);
                    tg_ctx_free(ctx);
                }
            }
        }
    }
}
END_TEST

/* Long rows take the chunked parallel path: sums against a double reference, results
 * identical at 1 and 2 threads, and a maximum in a later chunk found with its index. */
START_TEST(reduce_long_rows) {
    enum { ROWS = 2, N = 100003 };
    float *x = malloc((size_t)ROWS * N * sizeof *x);
    tg_rng rng;
    tg_rng_seed(&rng, 4);
    tg_rng_fill_uniform(&rng, x, (int64_t)ROWS * N, -1, 1);
    x[N + 77777] = 5.0f;  /* row 1: the maximum, twice: the first one wins */
    x[N + 88888] = 5.0f;
    x[12] = 3.0f;
    int old = tg_get_num_threads();
    float out[2][ROWS], mx[2][ROWS];
    int64_t am[2][ROWS];
    for (int t = 0; t < 2; t++) {
        tg_set_num_threads(t + 1);
        sum_forward_cpu(out[t], x, ROWS, N, 1, 1.0f);
        max_forward_cpu(mx[t], am[t], x, ROWS, N, 1);
    }
    tg_set_num_threads(old);
    for (int r = 0; r < ROWS; r++) {
        double s = 0;
        for (int j = 0; j < N; j++) s += x[(int64_t)r * N + j];
        ck_assert_msg(fabs(out[0][r] - s) <= 1e-3, "row %d: %g vs %g", r, out[0][r], s);
        ck_assert_msg(out[0][r] == out[1][r], "row %d differs between 1 and 2 threads", r);
    }
    ck_assert_float_eq(mx[0][0], 3.0f);
    ck_assert_int_eq(am[0][0], 12);
    ck_assert_float_eq(mx[1][1], 5.0f);
    ck_assert_int_eq(am[1][1], 77777);
    /* Everything at once (outer 1): the tied maxima share the gradient. */
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *xt = tg_tensor_from(ctx, tg_shape2(ROWS, N), x);
    tg_tensor_set_requires_grad(xt, true);
    tg_tensor *m = tg_max_all(ctx, xt);
    ck_assert_int_eq(m->shape.ndim, 0);
    ck_assert_int_eq(tg_backward(ctx, m), TG_OK);
    ck_assert_float_eq(xt->grad[N + 77777], 0.5f);
    ck_assert_float_eq(xt->grad[N + 88888], 0.5f);
    ck_assert_float_eq(xt->grad[12], 0.0f);
    tg_ctx_free(ctx);
    free(x);
}
END_TEST

/* A NaN is the maximum (the first one gets the gradient); unbiased var of one element
 * is NaN, as PyTorch. */
START_TEST(reduce_nan) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    float v[6] = {1, NAN, 7, NAN, 2, 3};
    tg_tensor *x = tg_tensor_from(ctx, tg_shape2(2, 3), v);
    tg_tensor_set_requires_grad(x, true);
    tg_tensor *y = tg_max(ctx, x, -1, false);
    ck_assert(isnan(y->data[0]) && isnan(y->data[1]));
    float dy[2] = {1, 2};
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
    const float want[6] = {0, 1, 0, 2, 0, 0};
    tg_expect_close_f("dx", x->grad, want, 6, 0, 0);
    tg_step_end(ctx);
    float one = 4.0f;
    tg_tensor *s = tg_tensor_from(ctx, tg_shape1(1), &one);
    ck_assert(isnan(tg_var(ctx, s, 0, false, true)->data[0]));
    ck_assert_float_eq(tg_var(ctx, s, 0, false, false)->data[0], 0.0f);
    tg_ctx_free(ctx);
}
END_TEST

START_TEST(reduce_bad_inputs) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *x = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    tg_tensor_set_requires_grad(x, true);
    ck_assert_ptr_nonnull(tg_sum(ctx, x, 0, false));
    int tape = tg_tape_length(ctx);
    size_t used = tg_ctx_arena_used(ctx);
    ck_assert_ptr_null(tg_sum(ctx, x, 2, false));
    tg_expect_error("sum dim", TG_ERR_ARG, "tg_sum: argument 'dim' = 2 is out of range for 'x' (2, 3)",
                    "-2 .. 1");
    ck_assert_ptr_null(tg_var(ctx, x, -3, true, true));
    tg_expect_error("var dim", TG_ERR_ARG, "tg_var: argument 'dim' = -3", NULL);
    ck_assert_ptr_null(tg_max(ctx, NULL, 0, false));
    tg_expect_error("max NULL", TG_ERR_ARG, "tg_max", "'x' is NULL");
    ck_assert_ptr_null(tg_mean_all(NULL, x));
    tg_expect_error("ctx NULL", TG_ERR_ARG, "tg_mean_all", "'ctx' is NULL");
    ck_assert_int_eq(tg_tape_length(ctx), tape);
    ck_assert_uint_eq(tg_ctx_arena_used(ctx), used);
    /* The explain line and profile name say which reduction it is. */
    tg_op_profile row;
    ck_assert_int_eq(tg_tape_profile(ctx, &row, 1), 1);
    ck_assert_str_eq(row.op, "sum");
    ck_assert_str_eq(row.detail, "sum dim 0");
    tg_ctx_free(ctx);
}
END_TEST

Suite *reduce_suite(void) {
    Suite *s = suite_create("reduce");
    TCase *tc = tg_test_case("reduce");
    tcase_add_test(tc, reduce_golden);
    tcase_add_test(tc, reduce_gradcheck_grid);
    tcase_add_test(tc, reduce_long_rows);
    tcase_add_test(tc, reduce_nan);
    tcase_add_test(tc, reduce_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}
