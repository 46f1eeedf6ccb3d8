/*
 * bench/thread_bench.c — where a second OpenMP thread is lost (issue 13's "2 ranks x 1
 * thread vs 1 process x 2 threads"). Two ranks with one thread each run half the global
 * batch each, so one process with 2 threads should take about the time of 1 thread on
 * half the batch. Per op of one SGD training step this measures, interleaved step by step
 * so that a busy machine hurts every configuration alike:
 *
 *   t1h  1 thread,  batch B/2   (what one rank of two computes)
 *   t2   2 threads, batch B     (the one-process run)
 *   t1   1 thread,  batch B     (the serial reference)
 *
 * and prints median forward + backward milliseconds per op, t2 / t1h (1.00 is perfect
 * scaling, 2.00 no gain from the second thread) and the speedup t1 / t2, plus the
 * non-tape parts of the step (zero_grad, optimizer, step end).
 *
 *   thread_bench [cnn|sep] [steps]      cnn: MNIST CNN, B = 64; sep: forum separable
 *                                       64x64, 256 channels, 50 layers, B = 2
 *
 * Tapes of 40 ops or more print only their sums by kind of op unless THREAD_BENCH_ALL is
 * set. The machine's wait policy applies (OMP_WAIT_POLICY / GOMP_SPINCOUNT as set).
 */
#include <tapegrad.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "benchutil.h"

enum { NCFG = 3, MAXOPS = 512, MAXSTEPS = 64, NEXTRA = 6, MAXTHREADS = 2 };
static const char *extra_names[NEXTRA] = {"(zero_grad)", "(optim step)", "(step end)",
                                           "(whole step)", "(cpu busiest)", "(cpu total)"};

/* CPU clocks of the OpenMP pool's threads (libgomp keeps them for every later team). On a
 * busy machine the wall times above are unreliable; with OMP_WAIT_POLICY=passive a thread's
 * CPU time is the work it did, so the busiest thread's CPU time over a step estimates the
 * step's time on an idle machine (it misses wake-up latencies, counts cache misses caused
 * by other processes). */
static clockid_t g_clock[MAXTHREADS];
static int g_nclock;

static void capture_threads(void) {
#ifdef _OPENMP
#pragma omp parallel num_threads(MAXTHREADS)
    {
        clockid_t c;
        if (pthread_getcpuclockid(pthread_self(), &c) == 0) {
#pragma omp critical
            {
                if (omp_get_thread_num() < MAXTHREADS) g_clock[omp_get_thread_num()] = c;
                g_nclock = omp_get_num_threads();
            }
        }
    }
#else
    pthread_getcpuclockid(pthread_self(), &g_clock[0]);
    g_nclock = 1;
#endif
}

static void cpu_times(double *t) {
    for (int i = 0; i < g_nclock; i++) {
        struct timespec ts;
        clock_gettime(g_clock[i], &ts);
        t[i] = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
}

typedef struct cfg {
    int threads, batch;
    tg_ctx *ctx;
    tg_optim *opt;
    float *x;
    int32_t *y;
    int nops;
    tg_op_profile rows[MAXOPS];
    double t[MAXOPS + NEXTRA][MAXSTEPS];
} cfg;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) {
    double s[MAXSTEPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static void die(const char *what) {
    fprintf(stderr, "thread_bench: %s: %s\n", what, tg_error_message());
    exit(1);
}

static void step(cfg *c, tg_model *m, bool sep, int s) {
    tg_set_num_threads(c->threads);
    int64_t side = sep ? 64 : 28;
    double c0[MAXTHREADS], c1[MAXTHREADS];
    cpu_times(c0);
    double t0 = bench_now();
    tg_tensor *xt = tg_tensor_from(c->ctx, tg_shape4(c->batch, sep ? 3 : 1, side, side), c->x);
    tg_tensor *loss = tg_cross_entropy(c->ctx, tg_model_forward(c->ctx, m, xt, true), c->y);
    double tz = bench_now();
    if (tg_optim_zero_grad(c->opt)) die("zero_grad");
    double tb = bench_now();
    if (tg_backward(c->ctx, loss)) die("backward");
    double to = bench_now();
    if (tg_optim_step(c->opt)) die("step");
    double te = bench_now();
    c->nops = tg_tape_profile(c->ctx, c->rows, MAXOPS);
    if (c->nops > MAXOPS) c->nops = MAXOPS;
    tg_step_end(c->ctx);
    double t1 = bench_now();
    cpu_times(c1);
    if (s < 0) return;
    double busiest = 0, total = 0;
    for (int i = 0; i < g_nclock; i++) {
        double d = c1[i] - c0[i];
        busiest = d > busiest ? d : busiest;
        total += d;
    }
    c->t[MAXOPS + 4][s] = busiest; /* (includes the profile read-out, a few microseconds) */
    c->t[MAXOPS + 5][s] = total;
    for (int i = 0; i < c->nops; i++)
        c->t[i][s] = c->rows[i].fwd_seconds + c->rows[i].bwd_seconds;
    c->t[MAXOPS + 0][s] = tb - tz;
    c->t[MAXOPS + 1][s] = te - to;
    c->t[MAXOPS + 2][s] = t1 - te;
    c->t[MAXOPS + 3][s] = (t1 - t0) - (t1 - te); /* without the profile read-out */
    (void)tz;
}

int main(int argc, char **argv) {
    bench_blas_fix(argv);
    bool sep = argc > 1 && !strcmp(argv[1], "sep");
    bool verbose = getenv("THREAD_BENCH_ALL") != NULL; /* every op, not only the kinds */
    int steps = argc > 2 ? atoi(argv[2]) : 7;
    if (steps < 1) steps = 1;
    if (steps > MAXSTEPS) steps = MAXSTEPS;
    int B = sep ? 2 : 64;
    tg_model *m = sep ? tg_forum50_new((tg_forum50_opts){.separable = true}, TG_DEVICE_CPU, 1)
                      : tg_cnn_new((tg_cnn_opts){0}, TG_DEVICE_CPU, 1);
    if (!m) die("model");
    capture_threads();
    static cfg cs[NCFG];
    const int threads[NCFG] = {1, 2, 1}, batch[NCFG] = {B / 2, B, B};
    int64_t per = sep ? 3 * 64 * 64 : 28 * 28, tpe = sep ? 64 * 64 : 1;
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    for (int k = 0; k < NCFG; k++) {
        cfg *c = &cs[k];
        c->threads = threads[k];
        c->batch = batch[k];
        c->ctx = tg_ctx_new(TG_DEVICE_CPU);
        c->opt = tg_sgd_new(tg_model_params(m), (tg_sgd_opts){.lr = 1e-4f, .momentum = 0.9f});
        if (!c->ctx || !c->opt) die("setup");
        c->x = bench_floats(c->batch * per, 0.0f);
        tg_rng_fill_normal(&rng, c->x, c->batch * per, 0, 1);
        c->y = malloc((size_t)(c->batch * tpe) * sizeof *c->y);
        for (int64_t i = 0; i < c->batch * tpe; i++) c->y[i] = (int32_t)tg_rng_below(&rng, 10);
    }
    for (int s = -1; s < steps; s++)
        for (int k = 0; k < NCFG; k++) step(&cs[k], m, sep, s);
    printf("%s, global batch %d, %d interleaved steps (median ms, fwd + bwd per op)\n",
           sep ? "forum separable 64x64" : "mnist cnn", B, steps);
    printf("%4s %-12s %-22s %9s %9s %9s %7s %7s\n", "#", "op", "detail", "1t B/2", "2t B",
           "1t B", "2t/1tB2", "speedup");
    double sum[NCFG] = {0};
    for (int i = 0; i < cs[1].nops + NEXTRA; i++) {
        int r = i < cs[1].nops ? i : MAXOPS + i - cs[1].nops;
        double v[NCFG];
        for (int k = 0; k < NCFG; k++) v[k] = 1e3 * median(cs[k].t[r], steps);
        if (i < cs[1].nops)
            for (int k = 0; k < NCFG; k++) sum[k] += v[k];
        const char *op = i < cs[1].nops ? cs[1].rows[i].op : extra_names[i - cs[1].nops];
        const char *det = i < cs[1].nops ? cs[1].rows[i].detail : "";
        if (i == cs[1].nops)
            printf("%4s %-12s %-22s %9.3f %9.3f %9.3f %7.2f %7.2f\n", "", "(tape sum)", "",
                   sum[0], sum[1], sum[2], sum[1] / sum[0], sum[2] / sum[1]);
        if (verbose || i >= cs[1].nops || cs[1].nops < 40)
            printf("%4d %-12s %-22.22s %9.3f %9.3f %9.3f %7.2f %7.2f\n", i, op, det, v[0], v[1],
               v[2], v[0] > 0 ? v[1] / v[0] : 0, v[1] > 0 ? v[2] / v[1] : 0);
    }
    /* The same by kind of op (op and detail), summed over the tape. */
    printf("\nby kind of op (sum of the per-op medians, ms)\n");
    bool *done = calloc((size_t)cs[1].nops, sizeof *done);
    for (int i = 0; i < cs[1].nops; i++) {
        if (done[i]) continue;
        double v[NCFG] = {0};
        int count = 0;
        for (int j = i; j < cs[1].nops; j++) {
            if (strcmp(cs[1].rows[j].op, cs[1].rows[i].op) ||
                strcmp(cs[1].rows[j].detail, cs[1].rows[i].detail))
                continue;
            done[j] = true;
            count++;
            for (int k = 0; k < NCFG; k++) v[k] += 1e3 * median(cs[k].t[j], steps);
        }
        printf("%3dx %-12s %-22.22s %9.3f %9.3f %9.3f %7.2f %7.2f\n", count, cs[1].rows[i].op,
               cs[1].rows[i].detail, v[0], v[1], v[2], v[0] > 0 ? v[1] / v[0] : 0,
               v[1] > 0 ? v[2] / v[1] : 0);
    }
    free(done);
    for (int k = 0; k < NCFG; k++) {
        tg_optim_free(cs[k].opt);
        tg_ctx_free(cs[k].ctx);
        free(cs[k].x);
        free(cs[k].y);
    }
    tg_model_free(m);
    return 0;
}
