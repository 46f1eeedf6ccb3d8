/*
 * tests/test_dist.c — data-parallel training (core/dist.c), run by meson as
 *   mpirun --oversubscribe --allow-run-as-root -np 2 (and -np 3) test_dist
 * and once without mpirun (a world of 1). Every rank runs the same tests in the same
 * order (Check in no-fork mode: collectives need the ranks in lockstep).
 *
 *   - equivalence: N ranks with global batch B against one process with batch B (each
 *     rank also computes that reference itself): first loss to 1e-6 relative, parameters
 *     after k steps to fp32 rounding; SGD with momentum and Adam; with batchnorm (sync BN)
 *     and without; B a multiple of N and not. In a world of 1 the two runs must be
 *     bit-identical (the dist calls are no-ops).
 *   - parameters bit-identical across ranks after every step, and optimizer state at the
 *     end (the checkpoint bytes of every rank are equal);
 *   - loader sharding: the ranks' slices of each global batch are the unsharded batch;
 *   - checkpoints: the world size is recorded and a resume with another one is refused;
 *   - tests/test_dist_attach.c (same executable): lifetimes and re-attach, and
 *     TG_CONV_ALGO_AUTO's choices agreed across ranks.
 */
#include "test_dist.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

tg_dist *g_dist;

int rank_(void) { return tg_dist_world(g_dist) > 1 ? tg_dist_rank(g_dist) : 0; }
int world_(void) { return tg_dist_world(g_dist); }

/* rank 0's n bytes equal this rank's? (true in a world of 1) */
bool same_as_rank0(const void *p, size_t n) {
    if (world_() == 1) return true;
    unsigned char *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, p, n);
    ck_assert_int_eq(MPI_Bcast(copy, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD), MPI_SUCCESS);
    bool same = memcmp(copy, p, n) == 0;
    free(copy);
    int all = same, all_same = 0;
    MPI_Allreduce(&all, &all_same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all_same != 0;
}

typedef struct setup {
    bool bn, adam;
    int batch, steps;
    size_t bucket_bytes; /* 0: the default (one bucket for these small models) */
    bool no_overlap;
    bool mpi_only; /* opts.shared_memory off: buckets through MPI_Iallreduce */
} setup;


tg_model *make_model(bool bn) {
    if (bn)
        return tg_forum50_new((tg_forum50_opts){.channels = 4, .layers = 4, .bn = true,
                                                .relu = true, .loss = TG_LOSS_CE},
                              TG_DEVICE_CPU, 7);
    return tg_cnn_new((tg_cnn_opts){.height = CNN_HW, .width = CNN_HW, .channels1 = 4,
                                    .channels2 = 4, .hidden = 8},
                      TG_DEVICE_CPU, 7);
}

tg_optim *make_optim(tg_model *m, bool adam) {
    tg_adam_opts o = tg_adam_opts_default();
    o.lr = 1e-2;
    return adam ? tg_adam_new(tg_model_params(m), o)
                : tg_sgd_new(tg_model_params(m), (tg_sgd_opts){.lr = 0.1f, .momentum = 0.9f});
}

/* k steps; d NULL: one process on the whole batch. losses[s]: the global batch's loss. */
static void train(const setup *su, tg_model *m, tg_optim *opt, tg_dist *d, double *losses,
                  bool check_ranks) {
    /* GEMM: under AUTO each rank, and the reference run, would time its own choices */
    tg_ctx *ctx = tg_test_ctx_gemm(TG_DEVICE_CPU);
    ck_assert_ptr_nonnull(ctx);
    tg_params *ps = tg_model_params(m);
    ck_assert_int_eq(tg_dist_broadcast_params(d, ps), TG_OK);
    tg_dist_opts opts = tg_dist_opts_default();
    if (su->bucket_bytes) opts.bucket_bytes = su->bucket_bytes;
    opts.overlap = !su->no_overlap;
    opts.shared_memory = !su->mpi_only;
    ck_assert_int_eq(tg_dist_attach(d, ctx, ps, opts), TG_OK);
    /* All ranks of these tests share one host: the shared-memory path unless told not to. */
    if (d && tg_dist_world(d) > 1)
        ck_assert_int_eq(tg_dist_get_stats(d).shared_memory, !su->mpi_only);
    if (d && tg_dist_world(d) > 1 && su->bucket_bytes)
        ck_assert_int_gt(tg_dist_get_stats(d).buckets, 3); /* really several buckets */
    tg_dist_reset_stats(d);
    int B = su->batch, N = d ? tg_dist_world(d) : 1, r = d ? tg_dist_rank(d) : 0;
    int64_t per = su->bn ? 3 * SIZE * SIZE : CNN_HW * CNN_HW;
    int64_t tpe = su->bn ? SIZE * SIZE : 1; /* targets per example */
    float *x = malloc((size_t)(B * per) * sizeof *x);
    int32_t *y = malloc((size_t)(B * tpe) * sizeof *y);
    ck_assert(x && y);
    for (int s = 0; s < su->steps; s++) {
        tg_rng rng;
        tg_rng_seed(&rng, 100 + (uint64_t)s);
        tg_rng_fill_normal(&rng, x, B * per, 0, 1);
        for (int64_t i = 0; i < B * tpe; i++) y[i] = (int32_t)tg_rng_below(&rng, 10);
        int first = B * r / N, b = B * (r + 1) / N - first;
        tg_shape shape = su->bn ? tg_shape4(b, 3, SIZE, SIZE) : tg_shape4(b, 1, CNN_HW, CNN_HW);
        tg_tensor *xt = tg_tensor_from(ctx, shape, x + first * per);
        tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, xt, true),
                                           y + first * tpe);
        tg_optim_zero_grad(opt);
        ck_assert_int_eq(tg_dist_set_batch(d, b, B), TG_OK);
        ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
        ck_assert_int_eq(tg_dist_sync_grads(d), TG_OK);
        ck_assert_int_eq(tg_optim_step(opt), TG_OK);
        tg_expect_ok("train step");
        double l = (double)loss->data[0] * b / B;
        ck_assert_int_eq(tg_dist_allreduce_sum(d, &l, 1), TG_OK);
        losses[s] = l;
        tg_step_end(ctx);
        if (check_ranks)
            ck_assert_msg(same_as_rank0(tg_params_data(ps),
                                        (size_t)tg_params_numel(ps) * sizeof(float)),
                          "parameters differ across ranks after step %d", s);
    }
    free(x);
    free(y);
    if (d && tg_dist_world(d) > 1 && su->bucket_bytes) {
        /* With overlap, buckets start inside the backward walk; without, none does. */
        tg_dist_stats st = tg_dist_get_stats(d);
        if (su->no_overlap) ck_assert_int_eq(st.early_buckets, 0);
        else ck_assert_int_gt(st.early_buckets, su->steps);
        ck_assert_int_eq(st.steps, su->steps);
    }
    tg_ctx_free(ctx);
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    ck_assert(p && fread(p, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return p;
}

static void check_equivalence(setup su) {
    enum { MAX_STEPS = 4 };
    ck_assert_int_le(su.steps, MAX_STEPS);
    double ref_losses[MAX_STEPS], dist_losses[MAX_STEPS];
    tg_model *ref = make_model(su.bn), *m = make_model(su.bn);
    tg_optim *ref_opt = make_optim(ref, su.adam), *opt = make_optim(m, su.adam);
    ck_assert(ref && m && ref_opt && opt);
    train(&su, ref, ref_opt, NULL, ref_losses, false);
    train(&su, m, opt, g_dist, dist_losses, true);
    tg_params *ps = tg_model_params(m), *rps = tg_model_params(ref);
    int64_t n = tg_params_numel(ps);
    if (world_() == 1) {
        /* The dist calls are no-ops: bit for bit the single-process run. */
        ck_assert_int_eq(memcmp(tg_params_data(ps), tg_params_data(rps), (size_t)n * 4), 0);
        ck_assert(ref_losses[0] == dist_losses[0]);
    } else {
        double rel = fabs(dist_losses[0] - ref_losses[0]) / fabs(ref_losses[0]);
        ck_assert_msg(rel <= 1e-6, "first loss %.9g vs one process %.9g (rel %.2g)",
                      dist_losses[0], ref_losses[0], rel);
        for (int i = 0; i < tg_params_count(ps); i++) {
            tg_tensor *t = tg_params_at(ps, i), *u = tg_params_at(rps, i);
            /* A conv bias followed by batchnorm has a true gradient of exactly 0 (the
             * normalisation removes any per-channel shift): both runs see rounding noise
             * of about 1e-9, which Adam's g / sqrt(v) turns into steps of +-lr. Nothing to
             * compare there (nor in the running mean, which carries that bias); SGD
             * moves it by lr * noise and is compared. */
            bool noise = su.adam && su.bn && strncmp(t->name, "layer4", 6) != 0 &&
                         (strstr(t->name, ".bias") || strstr(t->name, "running_mean"));
            if (noise) continue;
            tg_expect_close_f(t->name, t->data, u->data, t->numel, 2e-6, 1e-4);
        }
    }
    /* Optimizer state and buffers bit-identical across ranks: compare checkpoint bytes. */
    char path[64];
    snprintf(path, sizeof path, "/tmp/tg_test_dist_%d_%d.ckpt", (int)getpid(), rank_());
    ck_assert_int_eq(tg_checkpoint_save(path, m, opt, NULL), TG_OK);
    size_t size;
    unsigned char *bytes = slurp(path, &size);
    unlink(path);
    ck_assert_msg(same_as_rank0(bytes, size), "checkpoints (optimizer state) differ across ranks");
    free(bytes);
    tg_optim_free(opt);
    tg_optim_free(ref_opt);
    tg_model_free(m);
    tg_model_free(ref);
}

START_TEST(test_sgd_plain) { check_equivalence((setup){.batch = 6, .steps = 3}); }
END_TEST
START_TEST(test_adam_plain) { check_equivalence((setup){.adam = true, .batch = 6, .steps = 3}); }
END_TEST
START_TEST(test_sgd_bn) { check_equivalence((setup){.bn = true, .batch = 6, .steps = 3}); }
END_TEST
START_TEST(test_adam_bn) {
    check_equivalence((setup){.bn = true, .adam = true, .batch = 6, .steps = 3});
}
END_TEST
/* 7 examples: shares 3/4 (2 ranks), 2/2/3 (3 ranks): the weighting must be exact. */
START_TEST(test_uneven_bn) {
    check_equivalence((setup){.bn = true, .adam = true, .batch = 7, .steps = 2});
}
END_TEST
START_TEST(test_uneven_plain) { check_equivalence((setup){.batch = 7, .steps = 2}); }
END_TEST
/* Many small buckets, started from the backward walk as they complete (and in a second
 * run all after it): the order of completion must not matter. */
START_TEST(test_buckets_overlap) {
    check_equivalence((setup){.bn = true, .batch = 6, .steps = 2, .bucket_bytes = 64});
    check_equivalence((setup){.adam = true, .batch = 7, .steps = 2, .bucket_bytes = 256});
}
END_TEST
START_TEST(test_buckets_no_overlap) {
    check_equivalence((setup){.batch = 6, .steps = 2, .bucket_bytes = 64, .no_overlap = true});
}
END_TEST

/* The same through Open MPI's all-reduce (what ranks on several hosts use). */
START_TEST(test_mpi_path) {
    check_equivalence((setup){.batch = 7, .steps = 2, .mpi_only = true});
    check_equivalence((setup){.bn = true, .adam = true, .batch = 6, .steps = 2,
                              .bucket_bytes = 64, .mpi_only = true});
}
END_TEST

/* The gradient store moves into the shared window at attach and back at a second attach;
 * training goes on across both, and an attached store refuses new trainable parameters. */
START_TEST(test_reattach) {
    setup su = {.batch = 6, .steps = 2, .bucket_bytes = 64};
    double ref_losses[2], losses[2];
    tg_model *ref = make_model(false), *m = make_model(false);
    tg_optim *ref_opt = make_optim(ref, false), *opt = make_optim(m, false);
    ck_assert(ref && m && ref_opt && opt);
    train(&su, ref, ref_opt, NULL, ref_losses, false);
    train(&su, ref, ref_opt, NULL, ref_losses, false);
    tg_params *ps = tg_model_params(m);
    float *before = tg_params_grad(ps);
    train(&su, m, opt, g_dist, losses, true); /* attach 1 */
    if (world_() > 1) {
        ck_assert_ptr_ne(tg_params_grad(ps), before); /* now in the shared window */
        ck_assert_ptr_null(tg_params_add(ps, "late.weight", tg_shape1(4)));
        tg_expect_error("add to an attached store", TG_ERR_STATE, "tg_dist_attach", NULL);
    }
    train(&su, m, opt, g_dist, losses, true); /* attach 2: out and into a new window */
    tg_params *rps = tg_model_params(ref);
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i), *u = tg_params_at(rps, i);
        tg_expect_close_f(t->name, t->data, u->data, t->numel, 2e-6, 1e-4);
    }
    tg_optim_free(opt);
    tg_optim_free(ref_opt);
    tg_model_free(m);
    tg_model_free(ref);
}
END_TEST

/* Misuse under data parallel: ranks with different stores are refused at attach; a
 * second backward before tg_dist_sync_grads is an error at sync, on every rank alike. */
START_TEST(test_misuse) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    tg_params *ps = tg_params_new(TG_DEVICE_CPU);
    ck_assert(ctx && ps);
    ck_assert_ptr_nonnull(tg_params_add(ps, "w", tg_shape1(rank_() == 0 ? 64 : 80)));
    tg_dist_opts o = tg_dist_opts_default();
    if (world_() > 1) {
        ck_assert_int_ne(tg_dist_attach(g_dist, ctx, ps, o), TG_OK);
        tg_expect_error("ranks with different stores", TG_ERR_ARG, "different parameter stores",
                        NULL);
    }
    tg_params_free(ps);
    ps = tg_params_new(TG_DEVICE_CPU);
    tg_tensor *w = tg_params_add(ps, "w", tg_shape1(64));
    ck_assert_ptr_nonnull(w);
    o.bucket_bytes = 64; /* several buckets, started from inside the walk */
    ck_assert_int_eq(tg_dist_attach(g_dist, ctx, ps, o), TG_OK);
    for (int pass = 0; pass < 2; pass++) {
        tg_tensor *loss = tg_sum_all(ctx, tg_mul(ctx, w, w));
        ck_assert_int_eq(tg_backward(ctx, loss), TG_OK);
        tg_step_end(ctx);
    }
    if (world_() > 1) {
        ck_assert_int_ne(tg_dist_sync_grads(g_dist), TG_OK);
        tg_expect_error("two backwards, one sync", TG_ERR_STATE, "second backward", NULL);
    }
    ck_assert_int_eq(tg_dist_sync_grads(g_dist), TG_OK); /* the next step is fine again */
    tg_ctx_free(ctx);
    tg_params_free(ps);
}
END_TEST

START_TEST(test_loader_shard) {
    enum { N_EX = 23, BATCH = 7 };
    float xs[N_EX];
    int32_t ys[N_EX];
    for (int i = 0; i < N_EX; i++) {
        xs[i] = (float)i;
        ys[i] = i % 3;
    }
    tg_dataset *ds = tg_dataset_new(N_EX, tg_shape1(1), xs, ys, 3);
    tg_loader *whole = tg_loader_new(ds, BATCH, true, 5), *mine = tg_loader_new(ds, BATCH, true, 5);
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    ck_assert(ds && whole && mine && ctx);
    int N = world_(), r = rank_();
    ck_assert_int_eq(tg_loader_shard(mine, r, N), TG_OK);
    for (int epoch = 0; epoch < 2; epoch++) {
        tg_tensor *x, *xw;
        const int32_t *y, *yw;
        bool skipped = false;
        while (tg_loader_next(whole, ctx, &xw, &yw)) {
            int64_t g = xw->shape.dim[0];
            if (N > 1 && g < N) { /* a tail smaller than the world is skipped */
                ck_assert(!tg_loader_next(mine, ctx, &x, &y));
                ck_assert(!tg_loader_next(whole, ctx, &xw, &yw));
                skipped = true;
                break;
            }
            ck_assert(tg_loader_next(mine, ctx, &x, &y));
            int64_t local, global;
            tg_loader_last_batch(mine, &local, &global);
            ck_assert_int_eq(global, g);
            ck_assert_int_eq(local, x->shape.dim[0]);
            double gathered[BATCH] = {0};
            int64_t first = g * r / N;
            for (int64_t i = 0; i < local; i++) gathered[first + i] = x->data[i] + 1;
            ck_assert_int_eq(tg_dist_allreduce_sum(g_dist, gathered, BATCH), TG_OK);
            for (int64_t i = 0; i < g; i++)
                ck_assert_msg(gathered[i] == xw->data[i] + 1, "example %lld of a global batch",
                              (long long)i);
            ck_assert_int_eq(tg_loader_position(mine).cursor, tg_loader_position(whole).cursor);
            tg_step_end(ctx);
        }
        if (!skipped) ck_assert(!tg_loader_next(mine, ctx, &x, &y));
        ck_assert_int_eq(tg_loader_position(mine).epoch, epoch + 1);
    }
    ck_assert_int_ne(tg_loader_shard(mine, N, N), TG_OK);
    tg_expect_error("shard rank out of range", TG_ERR_ARG, "rank", NULL);
    tg_ctx_free(ctx);
    tg_loader_free(mine);
    tg_loader_free(whole);
    tg_dataset_free(ds);
}
END_TEST

START_TEST(test_checkpoint_world) {
    tg_model *m = make_model(false);
    tg_optim *opt = make_optim(m, false);
    ck_assert(m && opt);
    int N = world_();
    char path[64];
    snprintf(path, sizeof path, "/tmp/tg_test_dist_world_%d_%d.ckpt", (int)getpid(), rank_());
    tg_train_state st = {.epoch = 1, .world_size = N, .batch = 8};
    ck_assert_int_eq(tg_checkpoint_save(path, m, opt, &st), TG_OK);
    size_t size;
    unsigned char *bytes = slurp(path, &size);
    /* flags: optimizer | train, plus the distributed section only when N > 1 (a world of
     * 1 writes exactly the format of before). */
    ck_assert_int_eq(bytes[12], N > 1 ? 7 : 3);
    free(bytes);
    tg_train_state want = {.world_size = N + 1, .batch = 8};
    ck_assert_int_ne(tg_checkpoint_load(path, m, opt, &want), TG_OK);
    tg_expect_error("resume with another world size", TG_ERR_FORMAT, "this run has", "-np");
    want = (tg_train_state){.world_size = N, .batch = 8};
    ck_assert_int_eq(tg_checkpoint_load(path, m, opt, &want), TG_OK);
    ck_assert_int_eq(want.world_size, N > 1 ? N : 0); /* 0: a one-process file */
    ck_assert_int_eq(want.epoch, 1);
    if (N > 1) {
        want = (tg_train_state){.world_size = N, .batch = 16};
        ck_assert_int_ne(tg_checkpoint_load(path, m, opt, &want), TG_OK);
        tg_expect_error("resume with another global batch", TG_ERR_FORMAT, "global batch",
                        NULL);
    }
    unlink(path);
    tg_optim_free(opt);
    tg_model_free(m);
}
END_TEST

START_TEST(test_world) {
    ck_assert_int_ge(world_(), 1);
    ck_assert_int_lt(tg_dist_rank(g_dist), world_());
    ck_assert_int_eq(world_() > 1, tg_dist_launched() && world_() > 1);
    ck_assert_int_eq(tg_dist_barrier(g_dist), TG_OK);
    double v[2] = {1, (double)rank_()};
    ck_assert_int_eq(tg_dist_allreduce_sum(g_dist, v, 2), TG_OK);
    ck_assert(v[0] == world_());
    ck_assert(v[1] == world_() * (world_() - 1) / 2.0);
    /* NULL is a world of 1 */
    ck_assert_int_eq(tg_dist_world(NULL), 1);
    ck_assert_int_eq(tg_dist_sync_grads(NULL), TG_OK);
}
END_TEST

static Suite *dist_suite(void) {
    Suite *s = suite_create("dist");
    TCase *tc = tg_test_case("dist");
    tcase_add_test(tc, test_world);
    tcase_add_test(tc, test_sgd_plain);
    tcase_add_test(tc, test_adam_plain);
    tcase_add_test(tc, test_sgd_bn);
    tcase_add_test(tc, test_adam_bn);
    tcase_add_test(tc, test_uneven_bn);
    tcase_add_test(tc, test_uneven_plain);
    tcase_add_test(tc, test_buckets_overlap);
    tcase_add_test(tc, test_buckets_no_overlap);
    tcase_add_test(tc, test_mpi_path);
    tcase_add_test(tc, test_reattach);
    tcase_add_test(tc, test_misuse);
    tcase_add_test(tc, test_loader_shard);
    tcase_add_test(tc, test_checkpoint_world);
    dist_attach_tests(tc);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    g_dist = tg_dist_init(TG_DEVICE_CPU);
    if (!g_dist) {
        fprintf(stderr, "test_dist: %s\n", tg_error_message());
        return 1;
    }
    tg_set_num_threads(1);
    SRunner *sr = srunner_create(dist_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* ranks stay in lockstep */
    srunner_run_all(sr, rank_() == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tg_dist_free(g_dist);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
