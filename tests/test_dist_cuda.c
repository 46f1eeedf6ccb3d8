/*
 * tests/test_dist_cuda.c — data-parallel training on CUDA (core/dist.c, cuda/dist.cu,
 * cuda/batchnorm_sync.cu). Needs a build with CUDA and MPI (hence NCCL); without one, or
 * without a GPU, it prints SKIP and exits 77. Check runs in no-fork mode (collectives
 * need the ranks in lockstep; CUDA contexts do not survive fork()). Two modes:
 *
 * WITHOUT MPIRUN (meson: dist_cuda_world1), one GPU: the NCCL layer on a communicator of
 * one rank, built by hand (tg_nccl_init):
 *   - the synchronised batchnorm kernels against the ordinary CUDA ones (with one rank
 *     the all-reduces are identities), shares 1 and 3/8, 3 chunks per channel;
 *   - the stream fences: a bucket written by a kernel on the library stream, scaled and
 *     reduced on NCCL's stream, read by the next library kernel after tg_nccl_wait, three
 *     times over (the two events are reused).
 *
 * UNDER MPIRUN (meson: dist_cuda_np2, mpirun --oversubscribe --allow-run-as-root -np 2),
 * one GPU per rank on the host (NCCL refuses two ranks on one GPU; fewer GPUs: SKIP):
 *
 *   - equivalence: a small conv + batchnorm + ReLU net (forum50 shrunk) trained with SGD
 *     (momentum) on N ranks with synchronised batchnorm against one CUDA process with the
 *     whole global batch (each rank computes that reference itself, with the ordinary
 *     CUDA batchnorm): first loss to 1e-5 relative, every parameter and running statistic
 *     after the steps to 2e-4 of its tensor's largest value (+ 1e-6). Batches 6 (3 + 3)
 *     and 7 (3 + 4: the shares weight the gradients and the batchnorm sums).
 *   - buckets: many small ones started from inside the backward walk on NCCL's stream
 *     (overlap), and the same with every bucket started by tg_dist_sync_grads.
 *   - parameters, buffers and optimizer state bit-identical across ranks after every step
 *     (rank 0's bytes broadcast and compared; at the end the checkpoint files).
 */
#include "testutil.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef TG_HAVE_NCCL
#include "../core/core.h"
#include "../core/dist.h"
#include "../cuda/tg_cuda.h"

#include <cuda_runtime.h>
#endif

#ifdef TG_ALLOW_TF32
#define TOL_PARAM 2e-2
#define TOL_LOSS 1e-3
#else
#define TOL_PARAM 2e-4
#define TOL_LOSS 1e-5
#endif

static tg_dist *g_dist;

enum { SIZE = 32, CLASSES = 10, MAX_STEPS = 3 };

typedef struct setup {
    int batch, steps;
    size_t bucket_bytes; /* 0: the default (one bucket for this small net) */
    bool no_overlap;
} setup;

/* rank 0's n bytes equal this rank's, on every rank? */
static bool same_as_rank0(const void *p, size_t n) {
    if (tg_dist_world(g_dist) == 1) return true;
    unsigned char *copy = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, p, n);
    ck_assert_int_eq(MPI_Bcast(copy, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD), MPI_SUCCESS);
    int same = memcmp(copy, p, n) == 0, all_same = 0;
    free(copy);
    MPI_Allreduce(&same, &all_same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all_same != 0;
}

static tg_model *make_model(void) {
    return tg_forum50_new((tg_forum50_opts){.channels = 8, .layers = 4, .bn = true,
                                            .relu = true, .loss = TG_LOSS_CE},
                          TG_DEVICE_CUDA, 7);
}

/* Every parameter and buffer of ps on the host, in store order (malloc'ed). */
static float *host_values(tg_params *ps, int64_t *n) {
    *n = 0;
    for (int i = 0; i < tg_params_count(ps); i++) *n += tg_params_at(ps, i)->numel;
    float *v = malloc((size_t)*n * sizeof *v), *p = v;
    ck_assert_ptr_nonnull(v);
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i);
        ck_assert_msg(tg_tensor_to_host(t, p, false) == TG_OK, "%s", tg_error_message());
        p += t->numel;
    }
    return v;
}

/* su->steps SGD steps on CUDA; d NULL: one process on the whole batch. losses[s]: the
 * global batch's loss. */
static void train(const setup *su, tg_model *m, tg_optim *opt, tg_dist *d, double *losses) {
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CUDA);
    ck_assert_msg(ctx != NULL, "%s", tg_error_message());
    tg_params *ps = tg_model_params(m);
    ck_assert_int_eq(tg_dist_broadcast_params(d, ps), TG_OK);
    tg_dist_opts opts = tg_dist_opts_default();
    if (su->bucket_bytes) opts.bucket_bytes = su->bucket_bytes;
    opts.overlap = !su->no_overlap;
    ck_assert_msg(tg_dist_attach(d, ctx, ps, opts) == TG_OK, "%s", tg_error_message());
    bool several = d && tg_dist_world(d) > 1;
    if (several && su->bucket_bytes) ck_assert_int_gt(tg_dist_get_stats(d).buckets, 3);
    tg_dist_reset_stats(d);
    int B = su->batch, N = d ? tg_dist_world(d) : 1, r = d ? tg_dist_rank(d) : 0;
    const int64_t per = 3 * SIZE * SIZE, tpe = SIZE * SIZE; /* inputs, targets per example */
    float *x = malloc((size_t)(B * per) * sizeof *x);
    int32_t *y = malloc((size_t)(B * tpe) * sizeof *y);
    ck_assert(x && y);
    for (int s = 0; s < su->steps; s++) {
        tg_rng rng;
        tg_rng_seed(&rng, 300 + (uint64_t)s);
        tg_rng_fill_normal(&rng, x, B * per, 0, 1);
        for (int64_t i = 0; i < B * tpe; i++) y[i] = (int32_t)tg_rng_below(&rng, CLASSES);
        int first = B * r / N, b = B * (r + 1) / N - first;
        tg_tensor *xt = tg_tensor_from(ctx, tg_shape4(b, 3, SIZE, SIZE), x + first * per);
        tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, xt, true),
                                           y + first * tpe);
        ck_assert_msg(loss != NULL, "%s", tg_error_message());
        ck_assert_int_eq(tg_optim_zero_grad(opt), TG_OK);
        ck_assert_int_eq(tg_dist_set_batch(d, b, B), TG_OK);
        ck_assert_msg(tg_backward(ctx, loss) == TG_OK, "%s", tg_error_message());
        ck_assert_msg(tg_dist_sync_grads(d) == TG_OK, "%s", tg_error_message());
        ck_assert_msg(tg_optim_step(opt) == TG_OK, "%s", tg_error_message());
        float lf;
        ck_assert_msg(tg_tensor_to_host(loss, &lf, false) == TG_OK, "%s", tg_error_message());
        double l = (double)lf * b / B;
        ck_assert_int_eq(tg_dist_allreduce_sum(d, &l, 1), TG_OK);
        losses[s] = l;
        tg_step_end(ctx);
        if (several) {
            int64_t n;
            float *v = host_values(ps, &n);
            ck_assert_msg(same_as_rank0(v, (size_t)n * sizeof *v),
                          "parameters or buffers differ across ranks after step %d", s);
            free(v);
        }
    }
    free(x);
    free(y);
    if (several) {
        tg_dist_stats st = tg_dist_get_stats(d);
        ck_assert_int_eq(st.steps, su->steps);
        if (su->no_overlap) ck_assert_int_eq(st.early_buckets, 0);
        else if (su->bucket_bytes) ck_assert_int_gt(st.early_buckets, su->steps);
    }
    ck_assert_msg(tg_ctx_sync(ctx) == TG_OK, "%s", tg_error_message());
    tg_expect_ok("CUDA data-parallel training");
    tg_ctx_free(ctx);
}

static void check_equivalence(setup su) {
    ck_assert_int_le(su.steps, MAX_STEPS);
    double ref_losses[MAX_STEPS], dist_losses[MAX_STEPS];
    tg_model *ref = make_model(), *m = make_model();
    ck_assert_msg(ref && m, "%s", tg_error_message());
    tg_sgd_opts so = {.lr = 0.1f, .momentum = 0.9f};
    tg_optim *ref_opt = tg_sgd_new(tg_model_params(ref), so);
    tg_optim *opt = tg_sgd_new(tg_model_params(m), so);
    ck_assert(ref_opt && opt);
    train(&su, ref, ref_opt, NULL, ref_losses);
    train(&su, m, opt, g_dist, dist_losses);
    for (int s = 0; s < su.steps; s++) ck_assert(isfinite(dist_losses[s]));
    double rel = fabs(dist_losses[0] - ref_losses[0]) / fabs(ref_losses[0]);
    ck_assert_msg(rel <= TOL_LOSS, "first loss %.9g vs one process %.9g (rel %.2g)",
                  dist_losses[0], ref_losses[0], rel);
    tg_params *ps = tg_model_params(m), *rps = tg_model_params(ref);
    for (int i = 0; i < tg_params_count(ps); i++) {
        tg_tensor *t = tg_params_at(ps, i), *u = tg_params_at(rps, i);
        float *got = malloc((size_t)t->numel * sizeof *got);
        float *want = malloc((size_t)u->numel * sizeof *want);
        ck_assert(got && want && t->numel == u->numel);
        ck_assert_int_eq(tg_tensor_to_host(t, got, false), TG_OK);
        ck_assert_int_eq(tg_tensor_to_host(u, want, false), TG_OK);
        double scale = 0;
        for (int64_t j = 0; j < u->numel; j++) scale = fmax(scale, fabs(want[j]));
        /* The floor: a conv bias before batchnorm has a true gradient of 0, and both runs
         * move it by lr times rounding noise (about 1e-9). */
        tg_expect_close_f(t->name, got, want, t->numel, TOL_PARAM * scale + 1e-6, TOL_PARAM);
        free(got);
        free(want);
    }
    /* Momentum buffers too: the checkpoint bytes (optimizer state included) of every rank
     * are equal. */
    char path[96];
    snprintf(path, sizeof path, "/tmp/tg_test_dist_cuda_%d_%d.ckpt", (int)getpid(),
             tg_dist_rank(g_dist));
    ck_assert_msg(tg_checkpoint_save(path, m, opt, NULL) == TG_OK, "%s", tg_error_message());
    size_t size;
    uint8_t *bytes = tg_test_read_bytes(path, &size);
    unlink(path);
    ck_assert_msg(same_as_rank0(bytes, size), "checkpoints (optimizer state) differ across ranks");
    free(bytes);
    tg_optim_free(opt);
    tg_optim_free(ref_opt);
    tg_model_free(m);
    tg_model_free(ref);
}

START_TEST(test_sgd_sync_bn) { check_equivalence((setup){.batch = 6, .steps = 3}); }
END_TEST
/* 7 examples on 2 ranks: shares 3/7 and 4/7. */
START_TEST(test_sgd_sync_bn_uneven) { check_equivalence((setup){.batch = 7, .steps = 3}); }
END_TEST
/* Many small buckets started on NCCL's stream during the walk, and then all at the sync. */
START_TEST(test_buckets_overlap) {
    check_equivalence((setup){.batch = 7, .steps = 2, .bucket_bytes = 256});
}
END_TEST
START_TEST(test_buckets_no_overlap) {
    check_equivalence((setup){.batch = 6, .steps = 2, .bucket_bytes = 256, .no_overlap = true});
}
END_TEST

static Suite *dist_cuda_suite(void) {
    Suite *s = suite_create("dist_cuda");
    TCase *tc = tg_test_case("dist_cuda");
    tcase_add_test(tc, test_sgd_sync_bn);
    tcase_add_test(tc, test_sgd_sync_bn_uneven);
    tcase_add_test(tc, test_buckets_overlap);
    tcase_add_test(tc, test_buckets_no_overlap);
    suite_add_tcase(s, tc);
    return s;
}

#ifdef TG_HAVE_NCCL
/* ---------------------------------------------------------------- one rank, one GPU */

static void *one_rank_comm(void) {
    unsigned char id[256];
    ck_assert_uint_le(tg_nccl_id_bytes(), sizeof id);
    void *comm = NULL;
    ck_assert_msg(tg_nccl_get_id(id) == TG_OK, "%s", tg_error_message());
    ck_assert_msg(tg_nccl_init(&comm, 1, 0, id) == TG_OK, "%s", tg_error_message());
    return comm;
}

/* n floats of host on the device (a step tensor of ctx). */
static float *upload(tg_ctx *ctx, const float *host, int64_t n) {
    tg_tensor *t = tg_tensor_from(ctx, tg_shape1(n), host);
    ck_assert_msg(t != NULL, "%s", tg_error_message());
    return t->data;
}

static float *download(const float *dev, int64_t n) {
    float *host = malloc((size_t)n * sizeof *host);
    ck_assert_ptr_nonnull(host);
    ck_assert_msg(tg_cuda_copy(host, false, dev, true, (size_t)n * sizeof *host) == TG_OK, "%s",
                  tg_error_message());
    return host;
}

static void expect_same(const char *what, const float *dev_got, const float *dev_want,
                        int64_t n, double tol) {
    float *got = download(dev_got, n), *want = download(dev_want, n);
    double scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    tg_expect_close_f(what, got, want, n, tol * scale + 1e-30, tol);
    free(got);
    free(want);
}

/* With one rank the sums over ranks are the local sums: the synchronised kernels must
 * give what batchnorm.cu's give, for any share (it cancels: dx uses S / share). */
START_TEST(test_sync_bn_kernels_one_rank) {
    enum { N = 3, C = 5, HW = 40 * 40, NX = N * C * HW };
    void *nccl = one_rank_comm();
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CUDA);
    ck_assert_ptr_nonnull(ctx);
    float *x = malloc(NX * sizeof *x), *dy = malloc(NX * sizeof *dy);
    float *dx0 = malloc(NX * sizeof *dx0);
    ck_assert(x && dy && dx0);
    float w[C], rm0[C], rv0[C], dw0[C], db0[C];
    tg_rng rng;
    tg_rng_seed(&rng, 41);
    tg_rng_fill_normal(&rng, x, NX, 0.5f, 2.0f);
    tg_rng_fill_normal(&rng, dy, NX, 0, 1);
    tg_rng_fill_normal(&rng, dx0, NX, 0, 1);
    tg_rng_fill_normal(&rng, w, C, 1, 0.5f);
    tg_rng_fill_normal(&rng, rm0, C, 0, 1);
    tg_rng_fill_normal(&rng, dw0, C, 0, 1);
    tg_rng_fill_normal(&rng, db0, C, 0, 1);
    for (int c = 0; c < C; c++) rv0[c] = 0.5f + (float)c;
    const double shares[2] = {1.0, 0.375};
    for (int k = 0; k < 2; k++) {
        float *xd = upload(ctx, x, NX), *dyd = upload(ctx, dy, NX), *wd = upload(ctx, w, C);
        float *mean[2], *rstd[2], *rm[2], *rv[2], *dx[2], *dw[2], *db[2];
        for (int v = 0; v < 2; v++) { /* 0: batchnorm.cu, 1: batchnorm_sync.cu */
            mean[v] = upload(ctx, rm0, C); /* overwritten */
            rstd[v] = upload(ctx, rv0, C); /* overwritten */
            rm[v] = upload(ctx, rm0, C);
            rv[v] = upload(ctx, rv0, C);
            dx[v] = upload(ctx, dx0, NX);
            dw[v] = upload(ctx, dw0, C);
            db[v] = upload(ctx, db0, C);
        }
        ck_assert_int_eq(batchnorm_stats_cuda(mean[0], rstd[0], rm[0], rv[0], xd, N, C, HW, true,
                                              0.1f, 1e-5f), TG_OK);
        ck_assert_int_eq(batchnorm_backward_cuda(dx[0], dw[0], db[0], dyd, xd, mean[0], rstd[0],
                                                 wd, N, C, HW, true), TG_OK);
        void *work = tg_ctx_scratch(ctx, batchnorm_sync_work_bytes_cuda(N, C, HW));
        ck_assert_ptr_nonnull(work);
        ck_assert_msg(batchnorm_sync_stats_cuda(nccl, mean[1], rstd[1], rm[1], rv[1], xd, N, C,
                                                HW, 0.1f, 1e-5f, work) == TG_OK,
                      "%s", tg_error_message());
        ck_assert_msg(batchnorm_sync_backward_cuda(nccl, dx[1], dw[1], db[1], dyd, xd, mean[1],
                                                   rstd[1], wd, N, C, HW, shares[k],
                                                   work) == TG_OK,
                      "%s", tg_error_message());
        expect_same("sync bn: mean", mean[1], mean[0], C, 1e-5);
        expect_same("sync bn: rstd", rstd[1], rstd[0], C, 1e-5);
        expect_same("sync bn: running_mean", rm[1], rm[0], C, 1e-5);
        expect_same("sync bn: running_var", rv[1], rv[0], C, 1e-5);
        expect_same("sync bn: dx", dx[1], dx[0], NX, 1e-5);
        expect_same("sync bn: dweight", dw[1], dw[0], C, 1e-5);
        expect_same("sync bn: dbias", db[1], db[0], C, 1e-5);
        tg_step_end(ctx);
    }
    free(x);
    free(dy);
    free(dx0);
    tg_ctx_free(ctx);
    tg_nccl_free(nccl);
    tg_nccl_free(NULL);
    tg_expect_ok("sync bn kernels");
}
END_TEST

/* A bucket's life: written on the library stream, scaled and reduced on NCCL's stream
 * while other library work is queued, then read on the library stream after the wait.
 * With one rank the reduction is the identity, so buf = 0.5 a, then += a: 1.5 a exactly
 * (a holds small integers). Three rounds reuse the fence events. */
START_TEST(test_comm_stream_fences) {
    enum { NB = 1 << 20 };
    void *nccl = one_rank_comm();
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CUDA);
    ck_assert_ptr_nonnull(ctx);
    float *a = malloc(NB * sizeof *a), *zero = calloc(NB, sizeof *zero);
    ck_assert(a && zero);
    for (int round = 0; round < 3; round++) {
        for (int64_t i = 0; i < NB; i++) a[i] = (float)((i + round) % 7);
        float *ad = upload(ctx, a, NB), *buf = upload(ctx, zero, NB);
        float *other = upload(ctx, zero, NB);
        ck_assert_int_eq(accumulate_cuda(buf, ad, NB), TG_OK);         /* the "backward" */
        ck_assert_msg(tg_nccl_allreduce(nccl, buf, NB, 0.5f) == TG_OK, "%s", tg_error_message());
        ck_assert_int_eq(accumulate_cuda(other, ad, NB), TG_OK);       /* overlapped work */
        ck_assert_msg(tg_nccl_wait(nccl) == TG_OK, "%s", tg_error_message());
        ck_assert_int_eq(accumulate_cuda(buf, ad, NB), TG_OK);         /* the "optimizer" */
        float *got = download(buf, NB);
        for (int64_t i = 0; i < NB; i++)
            ck_assert_msg(got[i] == 1.5f * a[i], "round %d: buf[%lld] = %g, want %g", round,
                          (long long)i, (double)got[i], 1.5 * a[i]);
        free(got);
        tg_step_end(ctx);
    }
    ck_assert_msg(tg_nccl_wait(nccl) == TG_OK, "%s", tg_error_message()); /* nothing left */
    free(a);
    free(zero);
    tg_ctx_free(ctx);
    tg_nccl_free(nccl);
}
END_TEST

static int run_one_process(void) {
    if (tg_cuda_check() != TG_OK) {
        printf("test_dist_cuda: SKIP: %s\n", tg_error_message());
        return 77;
    }
    Suite *s = suite_create("dist_cuda_one_rank");
    TCase *tc = tg_test_case("dist_cuda_one_rank");
    tcase_add_test(tc, test_sync_bn_kernels_one_rank);
    tcase_add_test(tc, test_comm_stream_fences);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
#endif

/* Whether this rank can take part: a build with NCCL and one GPU per rank of this host
 * (counted without touching a device: tg_dist_init picks the GPU). *why when not. */
static bool can_run(const char **why) {
#ifdef TG_HAVE_NCCL
    MPI_Comm local;
    int here = 1, count = 0;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &here);
    MPI_Comm_free(&local);
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        *why = "no CUDA device";
        return false;
    }
    if (count < here) {
        *why = "fewer GPUs than ranks on this host (NCCL needs one GPU per rank)";
        return false;
    }
    return true;
#else
    *why = "built without NCCL (needs -Dcuda=enabled with MPI)";
    return false;
#endif
}

int main(void) {
    if (!tg_dist_launched()) {
#ifdef TG_HAVE_NCCL
        return run_one_process();
#else
        printf("test_dist_cuda: SKIP: built without NCCL (needs -Dcuda=enabled with MPI)\n");
        return 77;
#endif
    }
    int provided = 0, rank = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "test_dist_cuda: MPI_Init_thread failed\n");
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const char *why = "";
    int ok = can_run(&why), all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        if (!ok) printf("test_dist_cuda: SKIP (rank %d): %s\n", rank, why);
        MPI_Finalize();
        return 77; /* meson: skipped */
    }
    g_dist = tg_dist_init(TG_DEVICE_CUDA);
    if (!g_dist) {
        fprintf(stderr, "test_dist_cuda (rank %d): tg_dist_init: %s\n", rank, tg_error_message());
        MPI_Finalize();
        return 1;
    }
    SRunner *sr = srunner_create(dist_cuda_suite());
    srunner_set_fork_status(sr, CK_NOFORK); /* lockstep ranks; CUDA does not survive fork */
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tg_dist_free(g_dist);
    MPI_Finalize();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
