/*
 * bench/dist_bench.c — data-parallel training figures (core/dist.c, docs/SCALING.md).
 * Run it under mpirun for the communication figures and once alone for the
 * single-process reference (bench/run_dist.sh does both):
 *
 *   mpirun -np 2 dist_bench [--threads 1] [--steps N]   all-reduce vs copy bandwidth;
 *                                                      step times, isolated all-reduce
 *                                                      time and the share the overlap hid
 *   dist_bench --threads 2 [--steps N]                  the same steps in one process
 *
 * 1. All-reduce bandwidth: the all-reduce of a gradient store of n floats (one bucket,
 *    tg_dist_sync_grads: the shared-memory path when all ranks are on this host) and
 *    MPI_Allreduce (sum, in place) of the same size, each after a barrier, medians of
 *    repeats; algorithm bandwidth = bytes / time, bus bandwidth = 2 (N-1)/N of it (what a
 *    ring moves per rank), next to a memcpy of the same bytes (copy bandwidth, counted as
 *    read + write like the rest of the project).
 * 2. Overlap: the same training steps with buckets started from the backward walk and
 *    with everything reduced after it. Per step: the step time, the time blocked in
 *    tg_dist_sync_grads (exposed communication), and the all-reduce of all buckets alone
 *    after a barrier (the communication to hide). hidden = 1 - exposed / alone, clipped to
 *    [0, 1]; load imbalance between ranks also shows up as exposed wait, so the share is
 *    a lower bound.
 * 3. Step time of the same global batch here (N ranks x T threads) and in the run alone.
 * Models: the MNIST CNN (global batch 64) and the forum's separable stack at 64x64 with
 * 256 channels and 50 layers (global batch 2), both with SGD, synthetic inputs.
 */
#include <tapegrad.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef TG_HAVE_MPI
#include <mpi.h>
#endif

#include "benchutil.h"

static tg_dist *g_dist;
static int g_rank, g_world = 1;

static void barrier(void) { tg_dist_barrier(g_dist); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what) {
    fprintf(stderr, "dist_bench: %s: %s\n", what, tg_error_message());
    exit(1);
}

/* ------------------------------------------------------------ 1. all-reduce vs copy */

static void bandwidth(void) {
    if (g_rank == 0)
        printf("\n== all-reduce of a gradient store (tg_dist_sync_grads, one bucket; %d ranks) "
               "and MPI_Allreduce\n   vs memcpy on this host (copy counted as read + write)\n"
               "%10s %12s %10s %8s %12s %10s %8s %10s\n", g_world, "bytes", "tg_dist s",
               "busbw GB/s", "bus/copy", "MPI s", "busbw GB/s", "bus/copy", "copy GB/s");
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    if (!ctx) die("ctx");
    for (int64_t n = 1024; n <= (int64_t)16 << 20; n *= 4) {
        tg_params *ps = tg_params_new(TG_DEVICE_CPU);
        if (!ps || !tg_params_add(ps, "g", tg_shape1(n))) die("store");
        tg_dist_opts o = tg_dist_opts_default();
        o.bucket_bytes = (size_t)n * sizeof(float); /* one bucket: the whole store */
        if (tg_dist_attach(g_dist, ctx, ps, o)) die("attach");
        /* Each rank's share 1/N: the weighted sum of equal stores is the store again. */
        if (tg_dist_set_batch(g_dist, 1, g_world)) die("share");
        float *grad = tg_params_grad(ps);
        for (int64_t i = 0; i < n; i++) grad[i] = (float)(i % 7);
        float *buf = bench_floats(n, 1.0f), *dst = bench_floats(n, 0.0f);
        enum { REPS = 9 };
        double t_tg[REPS], t_ar[REPS], t_cp[REPS];
        for (int r = -1; r < REPS; r++) {
            barrier();
            double t0 = bench_now();
            if (tg_dist_sync_grads(g_dist)) die("sync");
            double t1 = bench_now();
            barrier();
            double t2 = bench_now();
#ifdef TG_HAVE_MPI
            if (g_world > 1) MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM,
                                           MPI_COMM_WORLD);
#endif
            double t3 = bench_now();
            memcpy(dst, buf, (size_t)n * sizeof(float));
            double t4 = bench_now();
            if (r >= 0) {
                t_tg[r] = t1 - t0;
                t_ar[r] = t3 - t2;
                t_cp[r] = t4 - t3;
            }
            for (int64_t i = 0; i < n; i += 1024) buf[i] = 1.0f; /* keep values finite */
        }
        double bytes = (double)n * sizeof(float), ring = 2.0 * (g_world - 1) / g_world;
        double copy_gbps = 2 * bytes / median(t_cp, REPS) * 1e-9;
        double tg = median(t_tg, REPS), ar = median(t_ar, REPS);
        double bus_tg = bytes / tg * 1e-9 * ring, bus_ar = bytes / ar * 1e-9 * ring;
        if (g_rank == 0)
            printf("%10.0f %12.6f %10.2f %7.0f%% %12.6f %10.2f %7.0f%% %10.2f\n", bytes, tg,
                   bus_tg, 100 * bus_tg / copy_gbps, ar, bus_ar, 100 * bus_ar / copy_gbps,
                   copy_gbps);
        if (g_rank == 0 && n == 1024)
            printf("%10s (tg_dist path: %s)\n", "",
                   tg_dist_get_stats(g_dist).shared_memory ? "shared memory" : "MPI");
        free(buf);
        free(dst);
        tg_params_free(ps);
    }
    tg_ctx_free(ctx);
}

/* ------------------------------------------------------------ 2, 3. training steps */

typedef struct result {
    double step_s, exposed_s, alone_s, bytes, in_backward_s;
    int buckets;
    double early;
} result;

/* steps timed SGD steps of model m at global batch B (this rank's slice); local: the same
 * steps without any gradient exchange (the compute alone). */
static result train(tg_model *m, bool forum, int B, int steps, bool overlap, bool local) {
    tg_dist *dist = local ? NULL : g_dist;
    tg_params *ps = tg_model_params(m);
    tg_optim *opt = tg_sgd_new(ps, (tg_sgd_opts){.lr = 1e-3f, .momentum = 0.9f});
    tg_ctx *ctx = tg_ctx_new(TG_DEVICE_CPU);
    if (!opt || !ctx) die("setup");
    tg_dist_opts o = tg_dist_opts_default();
    o.overlap = overlap;
    if (tg_dist_broadcast_params(g_dist, ps) || tg_dist_attach(dist, ctx, ps, o))
        die("attach");
    int first = B * g_rank / g_world, b = B * (g_rank + 1) / g_world - first;
    int64_t per = forum ? 3 * 64 * 64 : 28 * 28, tpe = forum ? 64 * 64 : 1;
    float *x = bench_floats(b * per, 0.0f);
    int32_t *y = malloc((size_t)(b * tpe) * sizeof *y);
    tg_rng rng;
    tg_rng_seed(&rng, 1 + (uint64_t)g_rank);
    tg_rng_fill_normal(&rng, x, b * per, 0, 1);
    for (int64_t i = 0; i < b * tpe; i++) y[i] = (int32_t)tg_rng_below(&rng, 10);
    double *t_step = calloc((size_t)steps, sizeof *t_step);
    double *t_wait = calloc((size_t)steps, sizeof *t_wait);
    double *t_alone = calloc((size_t)steps, sizeof *t_alone);
    result res = {0};
    for (int s = -1; s < steps; s++) { /* s = -1: warm-up */
        barrier();
        double t0 = bench_now();
        tg_tensor *xt = tg_tensor_from(ctx, forum ? tg_shape4(b, 3, 64, 64)
                                                  : tg_shape4(b, 1, 28, 28), x);
        tg_tensor *loss = tg_cross_entropy(ctx, tg_model_forward(ctx, m, xt, true), y);
        tg_optim_zero_grad(opt);
        if (tg_dist_set_batch(dist, b, B) || tg_backward(ctx, loss)) die("backward");
        double tb = bench_now();
        if (tg_dist_sync_grads(dist)) die("sync");
        double tw = bench_now();
        if (tg_optim_step(opt)) die("step");
        double t1 = bench_now();
        tg_step_end(ctx);
        /* The same all-reduce alone, after a barrier: the communication to hide. */
        barrier();
        double ta = bench_now();
        if (tg_dist_sync_grads(dist)) die("sync alone");
        double tz = bench_now();
        if (s >= 0) {
            t_step[s] = t1 - t0;
            t_wait[s] = tw - tb;
            t_alone[s] = tz - ta;
        }
        if (s == -1) tg_dist_reset_stats(g_dist);
    }
    tg_dist_stats st = tg_dist_get_stats(g_dist);
    res.step_s = median(t_step, steps);
    res.exposed_s = median(t_wait, steps);
    res.alone_s = median(t_alone, steps);
    res.buckets = st.buckets;
    res.bytes = st.steps ? st.bytes / (double)st.steps : 0;
    res.early = st.steps ? 2.0 * (double)st.early_buckets / (double)st.steps : 0;
    res.in_backward_s = st.steps ? st.launch_seconds / (double)st.steps : 0;
    free(t_step);
    free(t_wait);
    free(t_alone);
    free(x);
    free(y);
    tg_ctx_free(ctx);
    tg_optim_free(opt);
    return res;
}

static void steps_for(const char *name, bool forum, int B, int steps) {
    tg_model *m = forum ? tg_forum50_new((tg_forum50_opts){.separable = true}, TG_DEVICE_CPU, 1)
                        : tg_cnn_new((tg_cnn_opts){0}, TG_DEVICE_CPU, 1);
    if (!m) die("model");
    result on = train(m, forum, B, steps, true, false);
    if (g_world == 1) {
        if (g_rank == 0)
            printf("%-26s 1 process x %d threads, batch %d: step %.4f s\n", name,
                   tg_get_num_threads(), B, on.step_s);
        tg_model_free(m);
        return;
    }
    result off = train(m, forum, B, steps, false, false);
    result alone = train(m, forum, B, steps, false, true);
    /* Two readings of "hidden": (a) the wait after backward against the all-reduce alone
     * (what MPI-style overlap hides: 1 - exposed / alone); (b) from step times: the
     * communication's cost in the step, (step with overlap - compute alone), against the
     * all-reduce alone. On a CPU the shared-memory reductions run on the compute cores
     * between ops, so (b) is the honest one there. */
    double hidden = on.alone_s > 0 ? 1 - on.exposed_s / on.alone_s : 0;
    hidden = hidden < 0 ? 0 : hidden > 1 ? 1 : hidden;
    double cost = on.step_s - alone.step_s;
    double hidden_step = on.alone_s > 0 ? 1 - cost / on.alone_s : 0;
    hidden_step = hidden_step < 0 ? 0 : hidden_step > 1 ? 1 : hidden_step;
    if (g_rank == 0) {
        printf("%-26s %d ranks x %d threads, global batch %d, %.2f MB in %d buckets (%s)\n",
               name, g_world, tg_get_num_threads(), B, on.bytes * 1e-6, on.buckets,
               tg_dist_get_stats(g_dist).shared_memory ? "shared memory" : "MPI");
        printf("  overlap on : step %.4f s, exposed wait %.4f s, in backward %.4f s, "
               "all-reduce alone %.4f s, %.1f buckets started in backward\n", on.step_s,
               on.exposed_s, on.in_backward_s, on.alone_s, on.early / 2);
        printf("  overlap off: step %.4f s, exposed wait %.4f s, all-reduce alone %.4f s\n",
               off.step_s, off.exposed_s, off.alone_s);
        printf("  no exchange: step %.4f s (each rank's compute alone)\n", alone.step_s);
        printf("  hidden: (a) 1 - exposed/alone = %.0f%%; (b) 1 - (step on - no exchange)/"
               "alone = %.0f%% (communication cost in the step %.4f s)\n", 100 * hidden,
               100 * hidden_step, cost);
    }
    tg_model_free(m);
}

int main(int argc, char **argv) {
    bench_blas_fix(argv);
    int steps = 5, threads = 0;
    bool only_cnn = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cnn-only")) only_cnn = true;
        else {
            fprintf(stderr, "usage: [mpirun -np N] dist_bench [--steps N] [--threads T] "
                    "[--cnn-only]\n");
            return 2;
        }
    }
    if (steps < 1) steps = 1;
    g_dist = tg_dist_init(TG_DEVICE_CPU);
    if (!g_dist) die("init");
    g_rank = tg_dist_rank(g_dist);
    g_world = tg_dist_world(g_dist);
    if (threads > 0) tg_set_num_threads(threads);
    if (g_rank == 0)
        printf("dist_bench: %d rank%s x %d thread%s (MPI %s)\n", g_world, g_world > 1 ? "s" : "",
               tg_get_num_threads(), tg_get_num_threads() > 1 ? "s" : "",
               tg_dist_available() ? "built" : "not built");
    if (g_world > 1) bandwidth();
    if (g_rank == 0) printf("\n== training steps (SGD, synthetic data)\n");
    steps_for("mnist cnn", false, 64, steps);
    if (!only_cnn) steps_for("forum separable 64x64", true, 2, steps > 3 ? 3 : steps);
    tg_dist_free(g_dist);
    return 0;
}
