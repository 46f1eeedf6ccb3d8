/*
 * tools/profile.h — honest timing for the benchmark subcommands (forum, mobilenet,
 * peaks): this machine's ceilings measured in the same run, a timed training or
 * inference loop that synchronises the device before every clock read, the roofline
 * lower bound from the ops' own cost models, and the per-op profile table.
 */
#ifndef TG_TOOLS_PROFILE_H
#define TG_TOOLS_PROFILE_H

#include "common.h"

#include <tapegrad.h>

/* ---------------------------------------------------------------- peaks */

#define PEAKS_MAX_SHAPES 4

/* One SGEMM shape C (M x N) = A (M x K) B (K x N), as a conv layer runs it. */
typedef struct peak_gemm {
    char what[40];   /* "dense 3x3 (M=C, K=9C, N=HW)" */
    int64_t M, N, K;
    double gflops;   /* median over repeats */
} peak_gemm;

typedef struct peaks {
    tg_device device;
    int ngemm;
    peak_gemm gemm[PEAKS_MAX_SHAPES];
    double sgemm_gflops;  /* the best shape: the compute ceiling used for bounds */
    double copy_gbps;     /* read + write bytes per second, large buffers, median */
    int64_t copy_bytes;   /* size of each copy buffer */
    double seconds;       /* how long measuring took */
} peaks;

/* The GEMM shapes of the forum layers at (size, channels, batch): the dense 3x3 im2col
 * GEMM (M = C, K = 9C, N = batch*H*W), the pointwise one (M = C, K = C, N = batch*H*W),
 * and a square 1024^3 one. N is capped at `max_n` to bound the measuring time (the
 * rate barely depends on N once it is large). */
int peaks_forum_shapes(peak_gemm *shapes, int64_t size, int64_t channels, int64_t batch,
                       int64_t max_n);
/* Measures each shape (about `budget_s` seconds each, at least 3 repeats) and the copy
 * bandwidth. CPU: cblas_sgemm and a threaded memcpy. CUDA: the shapes run as 1x1 convs
 * through tg_conv2d (a GEMM) and the copy as a device-to-device copy. Returns TG_OK or
 * a status with the message recorded. */
tg_status peaks_measure(tg_device device, const peak_gemm *shapes, int nshapes,
                        double budget_s, peaks *out);
void peaks_print(const peaks *pk, FILE *f);

/* ---------------------------------------------------------------- timed runs */

typedef struct bench_spec {
    const char *label;      /* progress lines: "dense/sgd" */
    tg_model *model;
    tg_device device;
    tg_optim *opt;          /* train: the optimizer; NULL for a forward-only run */
    bool train;             /* full steps; otherwise forward under no-grad, eval mode */
    tg_shape in_shape;
    const float *input;     /* host, in_shape */
    tg_loss_kind loss;      /* train only */
    const int32_t *labels;  /* CE targets (host) */
    const float *target;    /* MSE target (host), of target_shape (the output's) */
    tg_shape target_shape;
    int steps, warmup;
    bool profile;           /* keep per-op times (sync timing on) */
    tg_conv_algo conv_algo; /* of the step context (tg_ctx_set_conv_algo) */
    tg_dist *dist;          /* data parallel (NULL: one process): in_shape is this rank's
                               slice of global_batch; gradients all-reduced after backward */
    int global_batch;
    bool no_sync_bn;        /* data parallel: batchnorm with each rank's own statistics */
} bench_spec;

/* One row of the profile: the records of one tape index averaged over the steps, or
 * (after grouping) several identical layers summed. */
typedef struct prof_row {
    const char *op;
    char detail[48];
    tg_shape in_shape, out_shape;
    int count;
    double fwd_s, bwd_s;                       /* per step */
    double fwd_flops, fwd_bytes, bwd_flops, bwd_bytes;
} prof_row;

typedef struct bench_result {
    tg_stats fwd, fwdbwd, step;   /* seconds; fwdbwd/step zero for forward-only runs */
    double mean_step_s;           /* mean of the timed steps (what the profile sums to) */
    double mean_fwd_s, mean_bwd_s; /* mean forward (+ loss) and backward wall times */
    double flops, bytes;          /* per step: tape records (+ optimizer and zero_grad) */
    double roofline_s;            /* sum over ops of max(flops / peak, bytes / bw) */
    double compute_bound_s;       /* flops / peak alone */
    size_t arena_peak;            /* step arena high-water mark (+ the input's context) */
    int64_t store_bytes;          /* parameters, gradients, optimizer state, buffers */
    int64_t rss_bytes;
    int tape_len;
    prof_row *rows;               /* tape_len + 2 rows: the records, zero_grad, optimizer */
    int nrows;
    tg_dist_stats dist;           /* data parallel: the timed steps' communication */
} bench_result;

/* Runs warm-up and timed steps; on failure prints nothing and returns the status with
 * its message recorded. */
tg_status bench_run(const bench_spec *spec, bench_result *res);
/* Fills the roofline fields from the ceilings (measured after the runs, so that the
 * measuring buffers do not count in the runs' peak RSS). */
void bench_bound(bench_result *res, const peaks *pk);
void bench_result_free(bench_result *res);

/* Checks every rate against the ceilings (5% allowance): the step's GFLOP/s against the
 * SGEMM peak, and each op's that ran for at least a millisecond. Prints what exceeded
 * and returns false when something did. */
bool bench_rates_plausible(const bench_result *res, const peaks *pk, const char *label,
                           FILE *f);

/* The per-op table: identical layers grouped, then per layer type, then the total, and
 * the comparison of the per-op sum with the measured step. Returns the relative gap
 * |sum - step| / step. */
double bench_print_profile(const bench_result *res, const peaks *pk, FILE *f);

/* The result in the forum's format ("Trainable Parameters: N", "Time cost: X s") and
 * then the medians/min/max, work, achieved rate, roofline bound and memory. */
void bench_print_summary(const bench_result *res, const peaks *pk, int64_t params, bool train,
                         FILE *f);
/* The measured fields every JSON result carries (fwd_s ... peak_bytes, roofline). */
void bench_json_fields(json_writer *w, const bench_result *res, const peaks *pk,
                       int64_t params, bool train);

#endif
