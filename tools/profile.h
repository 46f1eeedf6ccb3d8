/*
 * tools/profile.h — honest timing for the benchmark subcommands (forum, mobilenet,
 * peaks): this machine's ceilings measured in the same run, a timed training or
 * inference loop that synchronises the device before every clock read, the roofline
 * lower bound from the ops' own cost models, and the per-op profile table.
 */
#ifndef TG_TOOLS_PROFILE_H
#define TG_TOOLS_PROFILE_H

#include "busy.h"
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
    char device_name[320]; /* CUDA: name, SMs, L2, clocks; "" on the CPU */
    double seconds;       /* how long measuring took */
} peaks;

/* The GEMM shapes of the forum layers at (size, channels, batch): the dense 3x3 im2col
 * GEMM (M = C, K = 9C, N = batch*H*W), the pointwise one (M = C, K = C, N = batch*H*W),
 * and a square 1024^3 one. N is capped at `max_n` to bound the measuring time (the
 * rate barely depends on N once it is large). */
int peaks_forum_shapes(peak_gemm *shapes, int64_t size, int64_t channels, int64_t batch,
                       int64_t max_n);
/* Measures each shape (about `budget_s` seconds each, at least 3 repeats) and the copy
 * bandwidth. CPU: cblas_sgemm and a threaded memcpy (64 MiB), host-clocked medians.
 * CUDA: cublasSgemm and a device-to-device copy of at least 8x the L2 (and 256 MiB),
 * timed with CUDA events over batches of back-to-back calls on random operands
 * allocated outside the timing (cuda/bench.cu), medians of the batches. Returns TG_OK or
 * a status with the message recorded. */
tg_status peaks_measure(tg_device device, const peak_gemm *shapes, int nshapes,
                        double budget_s, peaks *out);
void peaks_print(const peaks *pk, FILE *f);
/* Keeps, shape by shape and for the copy, the higher of two measurements of the same
 * ceilings: a measurement taken while the machine was busier reads low, and a ceiling
 * that reads low would make honest rates look impossible. */
void peaks_merge_max(peaks *into, const peaks *other);
/* The CPU's arithmetic limit in GFLOP/s for `threads` cores: clock x fp32 lanes x 2
 * (FMA) x 2 FMA units, from /proc/cpuinfo's flags (avx512f: 16 lanes, avx2/fma: 8, else
 * 4) and the highest clock the kernel reports (cpufreq's maximum, else 1.5x the current
 * "cpu MHz" to allow for turbo). 0 when unknown. No rate can exceed it. */
double cpu_fma_peak_gflops(int threads);

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
    bool check_finite;      /* anomaly mode on the step context (--check-finite) */
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
    bool above_ceiling;                        /* faster than the measured SGEMM ceiling */
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
    int above_ceiling;            /* rows (and the step) above the SGEMM ceiling: flagged */
    busy_report busy;             /* other processes' CPU use during the timed steps */
    tg_dist_stats dist;           /* data parallel: the timed steps' communication */
} bench_result;

/* Runs warm-up and timed steps; on failure prints nothing and returns the status with
 * its message recorded. */
tg_status bench_run(const bench_spec *spec, bench_result *res);
/* Fills the roofline fields from the ceilings (measured after the runs, so that the
 * measuring buffers do not count in the runs' peak RSS). */
void bench_bound(bench_result *res, const peaks *pk);
void bench_result_free(bench_result *res);

/* Flags every rate above the measured SGEMM ceiling (5% allowance): the step's GFLOP/s
 * and each op's that ran for at least a millisecond. Sets row->above_ceiling and
 * res->above_ceiling (the count) and returns it. A flag is not fatal: on a busy machine
 * the ceiling itself may have been measured low (re-measure and call again). */
int bench_flag_rates(bench_result *res, const peaks *pk);
/* Prints one line per flagged row on f. */
void bench_print_flags(const bench_result *res, const peaks *pk, const char *label, FILE *f);
/* False (and a line on f) when a rate exceeds what the hardware can do at all (fma_peak
 * GFLOP/s, 0 = unknown: skip): then the timing or a FLOP count is broken, and no result
 * may be reported. */
bool bench_rates_possible(const bench_result *res, double fma_peak, const char *label,
                          FILE *f);

/* Honest ceilings on a machine that may be busy. `pk` holds ceilings measured BEFORE the
 * runs; they are measured again after them and the higher of each kept; if a rate is
 * still above them, they are measured once more. What remains above is flagged (table
 * '!', JSON above_ceiling) with a warning on f, never fatal. Then every rate is checked
 * against the CPU's arithmetic limit (false: a broken timing, report nothing), and the
 * roofline bounds are filled. Returns false on an impossible rate or a failed
 * measurement (message printed). */
bool bench_settle_ceilings(bench_result **res, const char *const *labels, int n, peaks *pk,
                           const peak_gemm *shapes, int nshapes, FILE *f);

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
