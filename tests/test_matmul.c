/*
 * tests/test_matmul.c — tg_matmul: PyTorch golden values (out, da, db) for 2-D, batched,
 * folded (b without batch dims) and broadcast-both-ways operands; finite differences over
 * a grid of shape pairs with size-1 dims and broadcasting; both CPU strategies (parallel
 * over matrices, threaded SGEMM per matrix) against a double reference; accumulation into
 * pre-filled gradients and a @ a; the profile's variant text; bad inputs that change
 * nothing.
 */
#include "testutil.h"

#include "../ops/matmul.h"

#include <stdlib.h>
#include <string.h>

static tg_tensor *matmul_graph(tg_ctx *ctx, tg_tensor *const *in, void *user) {
    (void)user;
    return tg_matmul(ctx, in[0], in[1]);
}

/* ---------------------------------------------------------------- golden */

static void check_golden(const char *name) {
    tg_fixture *fx = tg_fixture_load("matmul.bin");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    char key[64];
    snprintf(key, sizeof key, "%s.a", name);
    tg_tensor *a = tg_fixture_tensor(ctx, fx, key, true);
    snprintf(key, sizeof key, "%s.b", name);
    tg_tensor *b = tg_fixture_tensor(ctx, fx, key, true);
    snprintf(key, sizeof key, "%s.dout", name);
    tg_tensor *dout = tg_fixture_tensor(ctx, fx, key, false);
    tg_tensor *out = tg_matmul(ctx, a, b);
    tg_expect_ok(name);
    ck_assert_msg(tg_shape_equal(out->shape, dout->shape), "%s: output shape", name);
    ck_assert_int_eq(tg_backward_with(ctx, out, dout->data), TG_OK);
    snprintf(key, sizeof key, "%s.out", name);
    tg_expect_close(key, out->data, tg_fixture_get(fx, key, NULL), out->numel, 1e-5, 1e-5);
    snprintf(key, sizeof key, "%s.da", name);
    tg_expect_close(key, a->grad, tg_fixture_get(fx, key, NULL), a->numel, 1e-5, 1e-5);
    snprintf(key, sizeof key, "%s.db", name);
    tg_expect_close(key, b->grad, tg_fixture_get(fx, key, NULL), b->numel, 1e-5, 1e-5);
    tg_ctx_free(ctx);
    tg_fixture_free(fx);
}

START_TEST(matmul_golden) {
    const char *names[] = {"plain", "batched", "b2d", "a2d", "mixed", "rank34", "unit",
                           "bcast_b"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_golden(names[i]);
}
END_TEST

/* ---------------------------------------------------------------- finite differences */

START_TEST(matmul_gradcheck_grid) {
    const tg_shape pairs[][2] = {
        {tg_shape2(1, 1), tg_shape2(1, 1)},
        {tg_shape2(3, 4), tg_shape2(4, 2)},
        {tg_shape3(2, 3, 4), tg_shape3(2, 4, 5)},
        {tg_shape3(2, 3, 4), tg_shape2(4, 5)},        /* folded */
        {tg_shape2(3, 4), tg_shape3(2, 4, 5)},        /* a broadcast */
        {tg_shape4(2, 1, 3, 2), tg_shape4(1, 3, 2, 4)},
        {tg_shape4(2, 3, 1, 2), tg_shape3(3, 2, 1)},  /* M = 1, N = 1 */
        {tg_shape4(1, 1, 2, 3), tg_shape4(2, 2, 3, 2)},
        {tg_shape4(2, 2, 3, 2), tg_shape4(2, 1, 2, 3)},
    };
    tg_rng rng;
    tg_rng_seed(&rng, 21);
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        for (int which = 0; which < 3; which++) { /* grads on a, b, or both */
            tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
            tg_tensor *t[2] = {tg_tensor_new(ctx, pairs[i][0]), tg_tensor_new(ctx, pairs[i][1])};
            for (int k = 0; k < 2; k++) {
                tg_rng_fill_uniform(&rng, t[k]->data, t[k]->numel, -1, 1);
                tg_tensor_set_requires_grad(t[k], which == 2 || which == k);
            }
            char what[96], s0[40], s1[40];
            snprintf(what, sizeof what, "matmul %s @ %s grads %d",
                     tg_shape_str(pairs[i][0], s0, sizeof s0),
                     tg_shape_str(pairs[i][1], s1, sizeof s1), which);
            tg_expect_gradcheck(what, ctx, matmul_graph, NULL, t, 2);
            tg_ctx_free(ctx);
        }
    }
}
END_TEST

/* ---------------------------------------------------------------- CPU strategies */

/* Reference: out = a @ b with broadcast batch dims, in double. */
static void reference(double *out, const float *a, const float *b, const matmul_geom *g) {
    for (int64_t d0 = 0; d0 < g->D[0]; d0++)
        for (int64_t d1 = 0; d1 < g->D[1]; d1++) {
            const float *A = a + ((g->A[0] > 1 ? d0 : 0) * g->A[1] + (g->A[1] > 1 ? d1 : 0)) *
                                     g->M * g->K;
            const float *B = b + ((g->B[0] > 1 ? d0 : 0) * g->B[1] + (g->B[1] > 1 ? d1 : 0)) *
                                     g->K * g->N;
            double *C = out + (d0 * g->D[1] + d1) * g->M * g->N;
            for (int64_t m = 0; m < g->M; m++)
                for (int64_t n = 0; n < g->N; n++) {
                    double s = 0;
                    for (int64_t k = 0; k < g->K; k++) s += (double)A[m * g->K + k] * B[k * g->N + n];
                    C[m * g->N + n] = s;
                }
        }
}

/* Both execution strategies give the reference, for every plan (forward, dA, dB) and
 * with broadcasting on either side, at 1 and 2 threads. */
START_TEST(matmul_strategies_agree) {
    const matmul_geom geoms[] = {
        {.M = 7, .N = 5, .K = 9, .D = {3, 4}, .A = {3, 4}, .B = {3, 4}},
        {.M = 7, .N = 5, .K = 9, .D = {3, 4}, .A = {3, 1}, .B = {1, 4}},
        {.M = 7, .N = 5, .K = 9, .D = {3, 4}, .A = {1, 1}, .B = {3, 4}},
        {.M = 7, .N = 5, .K = 9, .D = {3, 4}, .A = {3, 4}, .B = {1, 1}},
        {.M = 1, .N = 1, .K = 1, .D = {1, 6}, .A = {1, 6}, .B = {1, 1}},
    };
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    int old_threads = tg_get_num_threads();
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const matmul_geom *g = &geoms[gi];
        int64_t na = g->A[0] * g->A[1] * g->M * g->K, nb = g->B[0] * g->B[1] * g->K * g->N;
        int64_t nc = g->D[0] * g->D[1] * g->M * g->N;
        float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
        float *c = malloc(nc * sizeof *c), *dc = malloc(nc * sizeof *dc);
        float *da = malloc(na * sizeof *da), *db = malloc(nb * sizeof *db);
        double *want = malloc(nc * sizeof *want), *want_da = calloc(na, sizeof *want_da),
               *want_db = calloc(nb, sizeof *want_db);
        tg_rng_fill_uniform(&rng, a, na, -1, 1);
        tg_rng_fill_uniform(&rng, b, nb, -1, 1);
        tg_rng_fill_uniform(&rng, dc, nc, -1, 1);
        reference(want, a, b, g);
        /* dA, dB by definition: sum over the output batch of dC B^T and A^T dC. */
        for (int64_t d0 = 0; d0 < g->D[0]; d0++)
            for (int64_t d1 = 0; d1 < g->D[1]; d1++) {
                int64_t ia = (g->A[0] > 1 ? d0 : 0) * g->A[1] + (g->A[1] > 1 ? d1 : 0);
                int64_t ib = (g->B[0] > 1 ? d0 : 0) * g->B[1] + (g->B[1] > 1 ? d1 : 0);
                const float *A = a + ia * g->M * g->K, *B = b + ib * g->K * g->N;
                const float *C = dc + (d0 * g->D[1] + d1) * g->M * g->N;
                for (int64_t m = 0; m < g->M; m++)
                    for (int64_t n = 0; n < g->N; n++)
                        for (int64_t k = 0; k < g->K; k++) {
                            want_da[ia * g->M * g->K + m * g->K + k] +=
                                (double)C[m * g->N + n] * B[k * g->N + n];
                            want_db[ib * g->K * g->N + k * g->N + n] +=
                                (double)A[m * g->K + k] * C[m * g->N + n];
                        }
            }
        for (int threads = 1; threads <= 2; threads++) {
            tg_set_num_threads(threads);
            for (int mode = GEMM_BATCH_AUTO; mode <= GEMM_BATCH_PARALLEL; mode++) {
                gemm_batch pf = matmul_plan_forward(g), pa = matmul_plan_da(g),
                           pb = matmul_plan_db(g);
                for (int64_t i = 0; i < na; i++) da[i] = 0;
                for (int64_t i = 0; i < nb; i++) db[i] = 0;
                gemm_batch_cpu(&pf, a, b, c, (gemm_batch_mode)mode);
                gemm_batch_cpu(&pa, dc, b, da, (gemm_batch_mode)mode);
                gemm_batch_cpu(&pb, a, dc, db, (gemm_batch_mode)mode);
                tg_expect_close("forward", c, want, nc, 1e-5, 1e-5);
                tg_expect_close("da", da, want_da, na, 1e-5, 1e-5);
                tg_expect_close("db", db, want_db, nb, 1e-5, 1e-5);
            }
        }
        free(a), free(b), free(c), free(dc), free(da), free(db);
        free(want), free(want_da), free(want_db);
    }
    tg_set_num_threads(old_threads);
}
END_TEST

/* ---------------------------------------------------------------- accumulation */

/* b is a parameter whose gradient holds 0.5 and a is used twice (a @ a): da must be
 * dC a^T + a^T dC, db the old value plus the true gradient. */
START_TEST(matmul_accumulates) {
    enum { N = 4 };
    tg_rng rng;
    tg_rng_seed(&rng, 8);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape2(N, N));
    tg_rng_fill_uniform(&rng, w->data, w->numel, -1, 1);
    for (int64_t i = 0; i < w->numel; i++) w->grad[i] = 0.5f;
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_new(ctx, tg_shape2(N, N));
    tg_rng_fill_uniform(&rng, a->data, a->numel, -1, 1);
    tg_tensor_set_requires_grad(a, true);
    tg_tensor *y = tg_matmul(ctx, tg_matmul(ctx, a, a), w);
    float dy[N * N];
    tg_rng_fill_uniform(&rng, dy, N * N, -1, 1);
    ck_assert_int_eq(tg_backward_with(ctx, y, dy), TG_OK);
    double aa[N * N] = {0}, dw[N * N], daa[N * N] = {0}, da[N * N] = {0};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            for (int k = 0; k < N; k++) aa[i * N + j] += (double)a->data[i * N + k] * a->data[k * N + j];
    for (int i = 0; i < N * N; i++) dw[i] = 0.5;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            for (int k = 0; k < N; k++) {
                dw[k * N + j] += aa[i * N + k] * dy[i * N + j];   /* (aa)^T dy */
                daa[i * N + k] += dy[i * N + j] * w->data[k * N + j]; /* dy w^T */
            }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            for (int k = 0; k < N; k++) {
                da[i * N + k] += daa[i * N + j] * a->data[k * N + j]; /* daa a^T */
                da[k * N + j] += a->data[i * N + k] * daa[i * N + j]; /* a^T daa */
            }
    tg_expect_close("dw", w->grad, dw, N * N, 1e-5, 1e-5);
    tg_expect_close("da", a->grad, da, N * N, 1e-5, 1e-5);
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

/* The profile names the variant; a frozen operand gets no gradient buffer. */
START_TEST(matmul_profile_and_frozen) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *a = tg_tensor_zeros(ctx, tg_shape3(4, 3, 5));
    tg_tensor *b = tg_tensor_zeros(ctx, tg_shape2(5, 2));
    tg_tensor *c = tg_tensor_zeros(ctx, tg_shape4(2, 1, 5, 2));
    tg_tensor_set_requires_grad(a, true);
    tg_tensor *y1 = tg_matmul(ctx, a, b);
    tg_tensor *y2 = tg_matmul(ctx, a, c);
    tg_expect_ok("matmuls");
    ck_assert_int_eq(y2->shape.ndim, 4);
    ck_assert_int_eq(y2->shape.dim[0], 2);
    ck_assert_int_eq(y2->shape.dim[1], 4);
    tg_op_profile rows[2];
    ck_assert_int_eq(tg_tape_profile(ctx, rows, 2), 2);
    ck_assert_str_eq(rows[0].op, "matmul");
    ck_assert_msg(strstr(rows[0].detail, "folded"), "detail: %s", rows[0].detail);
    ck_assert_msg(strstr(rows[1].detail, "bcast"), "detail: %s", rows[1].detail);
    ck_assert_double_eq(rows[0].fwd_flops, 2.0 * 4 * 3 * 5 * 2);
    float dy[24];
    for (int i = 0; i < 24; i++) dy[i] = 1;
    ck_assert_int_eq(tg_backward_with(ctx, y1, dy), TG_OK);
    ck_assert_ptr_null(b->grad);
    ck_assert_ptr_nonnull(a->grad);
    tg_ctx_free(ctx);
}
END_TEST

/* ---------------------------------------------------------------- bad inputs */

START_TEST(matmul_bad_inputs) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *warm = tg_tensor_zeros(ctx, tg_shape2(2, 3));
    tg_tensor_set_requires_grad(warm, true);
    ck_assert_ptr_nonnull(tg_matmul(ctx, warm, tg_tensor_zeros(ctx, tg_shape2(3, 2))));
    tg_tensor *v = tg_tensor_zeros(ctx, tg_shape1(3));
    tg_tensor *m34 = tg_tensor_zeros(ctx, tg_shape2(3, 4));
    tg_tensor *m35 = tg_tensor_zeros(ctx, tg_shape2(3, 5));
    tg_tensor *b2 = tg_tensor_zeros(ctx, tg_shape3(2, 4, 5));
    tg_tensor *b3 = tg_tensor_zeros(ctx, tg_shape3(3, 3, 4));
    int tape = tg_tape_length(ctx);
    size_t used = tg_ctx_arena_used(ctx);

    ck_assert_ptr_null(tg_matmul(ctx, v, m34));
    tg_expect_error("rank 1", TG_ERR_SHAPE, "tg_matmul: argument 'a' has shape (3)", "tg_reshape");
    ck_assert_ptr_null(tg_matmul(ctx, m34, m35));
    tg_expect_error("K", TG_ERR_SHAPE, "'a' (3, 4) and 'b' (3, 5) do not fit", "tg_transpose");
    ck_assert_ptr_null(tg_matmul(ctx, b3, b2));
    tg_expect_error("batch", TG_ERR_SHAPE, "batch dims of 'a' (3, 3, 4) and 'b' (2, 4, 5)",
                    "3 against 2");
    ck_assert_ptr_null(tg_matmul(ctx, NULL, m34));
    tg_expect_error("NULL", TG_ERR_ARG, "tg_matmul", "'a' is NULL");
    ck_assert_ptr_null(tg_matmul(NULL, m34, m34));
    tg_expect_error("ctx", TG_ERR_ARG, "tg_matmul", "'ctx' is NULL");
    ck_assert_int_eq(tg_tape_length(ctx), tape);
    ck_assert_uint_eq(tg_ctx_arena_used(ctx), used);
    tg_ctx_free(ctx);
}
END_TEST

Suite *matmul_suite(void) {
    Suite *s = suite_create("matmul");
    TCase *tc = tg_test_case("matmul");
    tcase_add_test(tc, matmul_golden);
    tcase_add_test(tc, matmul_gradcheck_grid);
    tcase_add_test(tc, matmul_strategies_agree);
    tcase_add_test(tc, matmul_accumulates);
    tcase_add_test(tc, matmul_profile_and_frozen);
    tcase_add_test(tc, matmul_bad_inputs);
    suite_add_tcase(s, tc);
    return s;
}
