/*
 * tests/test_dist_attach.c — data parallel (core/dist.c) attach and lifetimes, and
 * TG_CONV_ALGO_AUTO's choices across ranks (core/dist_conv.c); part of test_dist.
 *
 *   - lifetimes: the store, the context and the tg_dist freed in every order, on the
 *     shared-memory and the MPI path (meant for ASan: nothing freed is touched);
 *   - a re-attach to another context detaches the first; a re-attach mid-step and a
 *     store another tg_dist holds are refused;
 *   - conv choices: ranks seeded with different ones hold rank 0's (and the geometries
 *     only others met) after tg_dist_sync_grads; a conv net's timed tables agree too.
 */
#include "test_dist.h"

/* ---------------------------------------------------------------- lifetimes */

/* A store with one parameter w (n floats of 0.5, 0.5 + 1/n, ...), several buckets. */
static tg_params *small_store(int n, tg_tensor **w) {
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    ck_assert_ptr_nonnull(ps);
    *w = tg_params_add(ps, "w", tg_shape1(n));
    ck_assert_ptr_nonnull(*w);
    for (int i = 0; i < n; i++) (*w)->data[i] = 0.5f + (float)i / (float)n;
    return ps;
}

/* loss = sum(w * w) on ctx, backward: grad 2w (with or without a dist: every rank holds
 * the same w, and the shares sum to 1). */
static void grad_step(tg_ctx *ctx, tg_params *ps, tg_tensor *w, tg_dist *d) {
    ck_assert_int_eq(tg_params_zero_grad(ps), TG_OK);
    ck_assert_int_eq(tg_dist_set_batch(d, 1, world_()), TG_OK);
    tg_tensor *loss = tg_sum_all(ctx, tg_mul(ctx, w, w));
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
    if (d) ck_assert_int_eq(tg_dist_sync_grads(d), TG_OK);
    for (int64_t i = 0; i < w->numel; i++)
        ck_assert_msg(fabsf(w->grad[i] - 2 * w->data[i]) <= 1e-6f * (1 + fabsf(w->data[i])),
                      "grad[%lld] = %g, want %g", (long long)i, (double)w->grad[i],
                      (double)(2 * w->data[i]));
    tg_step_end(ctx);
}

enum { OBJ_STORE, OBJ_CTX, OBJ_DIST };

/* Attaches a fresh tg_dist (MPI is up already: its free does not finalise) to a context
 * and a store, trains a step, then frees the three in `order`, using what is left after
 * every free: a freed store makes sync an error (no crash), a freed dist leaves the
 * context training alone, a freed context leaves the dist syncing. */
static void free_in_order(const int order[3], bool mpi_only) {
    tg_dist *d = tg_dist_init(TG_DEVICE_CPU);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_tensor *w;
    tg_params *ps = small_store(64, &w);
    ck_assert(d && ctx);
    tg_dist_opts o = tg_dist_opts_default();
    o.bucket_bytes = 64;
    o.shared_memory = !mpi_only;
    ck_assert_int_eq(tg_dist_attach(d, ctx, ps, o), TG_OK);
    if (world_() > 1) {
        ck_assert_int_eq(tg_dist_get_stats(d).shared_memory, !mpi_only);
        ck_assert_ptr_eq(ctx->dist, d);
    }
    grad_step(ctx, ps, w, d);
    for (int k = 0; k < 3; k++) {
        if (order[k] == OBJ_STORE) {
            tg_params_free(ps);
            ps = NULL;
        } else if (order[k] == OBJ_CTX) {
            tg_ctx_free(ctx);
            ctx = NULL;
        } else {
            tg_dist_free(d);
            d = NULL;
            if (ctx) ck_assert_ptr_null(ctx->dist);
            if (ctx) ck_assert_ptr_null(ctx->sync_bn);
        }
        if (d && ps) { /* the context gone: sync still reduces the store */
            ck_assert_int_eq(tg_dist_sync_grads(d), TG_OK);
        } else if (d && world_() > 1) { /* the store gone: refused, on every rank */
            ck_assert_int_ne(tg_dist_sync_grads(d), TG_OK);
            tg_expect_error("sync after the store was freed", TG_ERR_STATE,
                            "no parameter store", NULL);
        }
        if (ctx && ps) {
            grad_step(ctx, ps, w, d); /* with d: reduced; without: alone */
        } else if (ctx) { /* another store on the context d (if alive) still points at */
            tg_tensor *w2;
            tg_params *ps2 = small_store(32, &w2);
            grad_step(ctx, ps2, w2, NULL);
            tg_params_free(ps2);
        }
    }
}

START_TEST(test_free_orders) {
    static const int orders[6][3] = {
        {OBJ_STORE, OBJ_CTX, OBJ_DIST}, {OBJ_STORE, OBJ_DIST, OBJ_CTX},
        {OBJ_CTX, OBJ_STORE, OBJ_DIST}, {OBJ_CTX, OBJ_DIST, OBJ_STORE},
        {OBJ_DIST, OBJ_STORE, OBJ_CTX}, {OBJ_DIST, OBJ_CTX, OBJ_STORE}};
    for (int path = 0; path < 2; path++)
        for (int i = 0; i < 6; i++) free_in_order(orders[i], path == 1);
}
END_TEST

/* A second attach to another context detaches the first: its backward passes are its own
 * again (before, the old context still called the hook, and its backward counted as a
 * second backward of d's step). */
START_TEST(test_attach_new_ctx) {
    for (int path = 0; path < 2; path++) {
        tg_ctx *ctx1 = tg_ctx_new(TG_DEVICE_CPU), *ctx2 = tg_ctx_new(TG_DEVICE_CPU);
        tg_tensor *w;
        tg_params *ps = small_store(64, &w);
        ck_assert(ctx1 && ctx2);
        tg_dist_opts o = tg_dist_opts_default();
        o.bucket_bytes = 64;
        o.shared_memory = path == 0;
        ck_assert_int_eq(tg_dist_attach(g_dist, ctx1, ps, o), TG_OK);
        grad_step(ctx1, ps, w, g_dist);
        ck_assert_int_eq(tg_dist_attach(g_dist, ctx2, ps, o), TG_OK);
        ck_assert_ptr_null(ctx1->dist);
        ck_assert_ptr_null(ctx1->sync_bn);
        if (world_() > 1) ck_assert_ptr_eq(ctx2->dist, g_dist);
        /* A step on ctx2 whose buckets are on their way, then a backward on ctx1: not a
         * second backward of g_dist's step. */
        ck_assert_int_eq(tg_params_zero_grad(ps), TG_OK);
        ck_assert_int_eq(tg_dist_set_batch(g_dist, 1, world_()), TG_OK);
        ck_assert_int_eq(tg_backward(ctx2, tg_sum_all(ctx2, tg_mul(ctx2, w, w))), TG_OK);
        tg_tensor *w2;
        tg_params *ps2 = small_store(32, &w2);
        grad_step(ctx1, ps2, w2, NULL);
        tg_params_free(ps2);
        /* A re-attach while ctx2's buckets are on their way is refused on every rank. */
        if (world_() > 1) {
            ck_assert_int_ne(tg_dist_attach(g_dist, ctx1, ps, o), TG_OK);
            tg_expect_error("re-attach before sync", TG_ERR_STATE, "tg_dist_sync_grads", NULL);
            ck_assert_ptr_eq(ctx2->dist, g_dist); /* the attachment stands */
        }
        ck_assert_int_eq(tg_dist_sync_grads(g_dist), TG_OK);
        for (int64_t i = 0; i < w->numel; i++)
            ck_assert(fabsf(w->grad[i] - 2 * w->data[i]) <= 1e-6f * (1 + w->data[i]));
        tg_step_end(ctx2);
        grad_step(ctx2, ps, w, g_dist);
        /* The store is held by g_dist: another tg_dist may not take it. */
        tg_dist *d2 = tg_dist_init(TG_DEVICE_CPU);
        ck_assert_ptr_nonnull(d2);
        if (world_() > 1) {
            ck_assert_int_ne(tg_dist_attach(d2, ctx1, ps, o), TG_OK);
            tg_expect_error("a store held by another tg_dist", TG_ERR_STATE, "another tg_dist",
                            NULL);
        }
        tg_dist_free(d2);
        tg_ctx_free(ctx1); /* not g_dist's context any more: nothing changes */
        if (world_() > 1) ck_assert_ptr_eq(ctx2->dist, g_dist);
        grad_step(ctx2, ps, w, g_dist);
        tg_ctx_free(ctx2);
        tg_params_free(ps);
    }
}
END_TEST

/* ---------------------------------------------------------------- conv choices */

static tg_conv_choice geometry(int64_t h, bool winograd) {
    return (tg_conv_choice){.n = 2, .c_in = 3, .h = h, .w = h, .c_out = 4, .pad_h = 1,
                            .pad_w = 1, .bias = true, .winograd = winograd};
}

/* The table's geometries and choices equal rank 0's (fields, not padding bytes). */
static bool table_same_as_rank0(const tg_conv_choice *rows, int n) {
    if (world_() == 1) return true;
    int64_t *flat = calloc((size_t)n * 9 + 1, sizeof *flat);
    ck_assert_ptr_nonnull(flat);
    flat[0] = n;
    for (int i = 0; i < n; i++) {
        const tg_conv_choice *c = &rows[i];
        int64_t v[9] = {c->n, c->c_in, c->h, c->w, c->c_out, c->pad_h, c->pad_w, c->bias,
                        c->winograd};
        memcpy(flat + 1 + 9 * i, v, sizeof v);
    }
    int count = n, all_count = 0, max_count = 0;
    MPI_Allreduce(&count, &all_count, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&count, &max_count, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    bool same = all_count == max_count &&
                same_as_rank0(flat, ((size_t)n * 9 + 1) * sizeof *flat);
    free(flat);
    return same;
}

/* Ranks seeded with different choices (tg_ctx_set_conv_choices: rank 0 Winograd for
 * geometry 8x8, the others im2col; rank 1 alone met 12x12) hold, after a sync, rank 0's
 * choice for 8x8 and rank 1's row for 12x12, in that order. Then a conv net under AUTO:
 * whatever each rank timed, the tables agree after the step's sync. */
START_TEST(test_conv_choices_agree) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(tg_ctx_conv_algo(ctx), TG_CONV_ALGO_AUTO);
    tg_model *m = make_model(false);
    tg_optim *opt = make_optim(m, false);
    ck_assert(m && opt);
    tg_params *ps = tg_model_params(m);
    ck_assert_int_eq(tg_dist_broadcast_params(g_dist, ps), TG_OK);
    ck_assert_int_eq(tg_dist_attach(g_dist, ctx, ps, tg_dist_opts_default()), TG_OK);
    int r = rank_();
    tg_conv_choice seed[3] = {geometry(8, r == 0), geometry(r == 1 ? 12 : 16, r != 2)};
    int nseed = r == 1 ? 2 : 1;
    ck_assert_int_eq(tg_ctx_set_conv_choices(ctx, seed, nseed), TG_OK);
    ck_assert_int_eq(tg_dist_sync_grads(g_dist), TG_OK);
    tg_conv_choice rows[TG_CONV_CHOICES_MAX];
    int n = tg_ctx_conv_choices(ctx, rows, TG_CONV_CHOICES_MAX);
    if (world_() == 1) {
        ck_assert_int_eq(n, 1);
        ck_assert(rows[0].winograd);
    } else {
        ck_assert_int_eq(n, 2);
        ck_assert(tg_conv_choice_same_geometry(&rows[0], &seed[0]) && rows[0].winograd);
        ck_assert_int_eq(rows[1].h, 12); /* rank 1's: Winograd */
        ck_assert(rows[1].winograd);
    }
    ck_assert_msg(table_same_as_rank0(rows, n), "seeded conv choices differ across ranks");
    /* A step of a conv net: each rank times the net's 3x3 geometries on its own. */
    enum { B = 4 };
    float x[B * CNN_HW * CNN_HW];
    int32_t y[B];
    tg_rng rng;
    tg_rng_seed(&rng, 3);
    tg_rng_fill_normal(&rng, x, B * CNN_HW * CNN_HW, 0, 1);
    for (int i = 0; i < B; i++) y[i] = (int32_t)tg_rng_below(&rng, 10);
    int N = world_(), first = B * r / N, b = B * (r + 1) / N - first;
    for (int step = 0; step < 2; step++) {
        tg_tensor *xt = tg_tensor_from(ctx, tg_shape4(b, 1, CNN_HW, CNN_HW),
                                       x + first * CNN_HW * CNN_HW);
        tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, xt, true), y + first);
        tg_optim_zero_grad(opt);
        ck_assert_int_eq(tg_dist_set_batch(g_dist, b, B), TG_OK);
        ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
        ck_assert_int_eq(tg_dist_sync_grads(g_dist), TG_OK);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        tg_step_end(ctx);
        n = tg_ctx_conv_choices(ctx, rows, TG_CONV_CHOICES_MAX);
        ck_assert_int_gt(n, world_() == 1 ? 1 : 2); /* the net's geometries were added */
        ck_assert_msg(table_same_as_rank0(rows, n), "conv choices differ across ranks after "
                      "step %d", step);
    }
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    tg_model_free(m);
}
END_TEST

void dist_attach_tests(TCase *tc) {
    tcase_add_test(tc, test_free_orders);
    tcase_add_test(tc, test_attach_new_ctx);
    tcase_add_test(tc, test_conv_choices_agree);
}
