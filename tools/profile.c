/*
 * tools/profile.c — see profile.h.
 *
 * Timing rules (DESIGN §6, §9): warm-up steps are excluded; the device is synchronised
 * before every clock read (tg_ctx_sync, a no-op on the CPU), so a GPU time is the time
 * the work took and not the time it took to queue it; the ceilings are measured in the
 * same process, and a rate above them is reported as an error, not printed as a result.
 */
#include "profile.h"

#include "../core/core.h"

#ifdef TG_HAVE_CUDA
#include "../cuda/tg_cuda.h"
#endif

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- peaks */

int peaks_forum_shapes(peak_gemm *shapes, int64_t size, int64_t channels, int64_t batch,
                       int64_t max_n) {
    int64_t n = size * size * batch;
    if (n > max_n) n = max_n;
    shapes[0] = (peak_gemm){.M = channels, .N = n, .K = 9 * channels};
    snprintf(shapes[0].what, sizeof shapes[0].what, "dense 3x3 (M=C, K=9C, N=HW)");
    shapes[1] = (peak_gemm){.M = channels, .N = n, .K = channels};
    snprintf(shapes[1].what, sizeof shapes[1].what, "pointwise (M=C, K=C, N=HW)");
    shapes[2] = (peak_gemm){.M = 1024, .N = 1024, .K = 1024};
    snprintf(shapes[2].what, sizeof shapes[2].what, "square");
    return 3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of the rates of repeated calls of run(): at least 3 calls after one warm-up,
 * more until budget_s has passed (at most 64). */
typedef tg_status (*timed_fn)(void *user, double *seconds);

static tg_status median_rate(timed_fn run, void *user, double work, double budget_s,
                             double *rate) {
    double rates[64], t = 0;
    tg_status st = run(user, &t); /* warm-up: first touch, thread start, caches */
    if (st) return st;
    int n = 0;
    double start = tg_now();
    while (n < 64 && (n < 3 || tg_now() - start < budget_s)) {
        if ((st = run(user, &t))) return st;
        rates[n++] = work / (t > 1e-9 ? t : 1e-9);
    }
    qsort(rates, (size_t)n, sizeof rates[0], cmp_double);
    *rate = n % 2 ? rates[n / 2] : 0.5 * (rates[n / 2 - 1] + rates[n / 2]);
    return TG_OK;
}

typedef struct gemm_job {
    int64_t M, N, K;
    float *a, *b, *c;
} gemm_job;

static tg_status gemm_cpu(void *user, double *seconds) {
    gemm_job *j = user;
    double t0 = tg_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->M, (int)j->N, (int)j->K,
                1.0f, j->a, (int)j->K, j->b, (int)j->N, 0.0f, j->c, (int)j->N);
    *seconds = tg_now() - t0;
    return TG_OK;
}

#ifdef TG_HAVE_CUDA
/* Repetitions per event-timed batch so that a batch lasts about 2 ms (launch gaps then
 * vanish in the average), and batches to fill the budget (at least 5, at most 64). */
static void cuda_batches(double one_call_s, double budget_s, int *reps, int *samples) {
    double t = one_call_s > 1e-7 ? one_call_s : 1e-7;
    double r = 2e-3 / t;
    *reps = r < 1 ? 1 : r > 1000 ? 1000 : (int)r;
    double n = budget_s / (t * *reps);
    *samples = n < 5 ? 5 : n > 64 ? 64 : (int)n;
}
#endif

static tg_status measure_gemm(tg_device device, peak_gemm *g, double budget_s) {
    gemm_job j = {.M = g->M, .N = g->N, .K = g->K};
    double work = 2.0 * (double)g->M * (double)g->N * (double)g->K;
    tg_status st;
    if (device == TG_DEVICE_CPU) {
        j.a = tg_device_alloc(device, (size_t)(g->M * g->K) * sizeof(float));
        j.b = tg_device_alloc(device, (size_t)(g->K * g->N) * sizeof(float));
        j.c = tg_device_alloc(device, (size_t)(g->M * g->N) * sizeof(float));
        if (!j.a || !j.b || !j.c) {
            st = tg_error();
        } else {
            tg_rng rng;
            tg_rng_seed(&rng, 1);
            tg_rng_fill_uniform(&rng, j.a, g->M * g->K, -1, 1);
            tg_rng_fill_uniform(&rng, j.b, g->K * g->N, -1, 1);
            memset(j.c, 0, (size_t)(g->M * g->N) * sizeof(float));
            st = median_rate(gemm_cpu, &j, work, budget_s, &g->gflops);
        }
        tg_device_free(device, j.a);
        tg_device_free(device, j.b);
        tg_device_free(device, j.c);
    } else {
#ifdef TG_HAVE_CUDA
        /* cuBLAS itself, event-timed, on random operands allocated outside the timing. */
        double t1 = 0, t = 0;
        int reps, samples;
        st = tg_cuda_bench_sgemm((int)g->M, (int)g->N, (int)g->K, 1, 1, &t1);
        cuda_batches(t1, budget_s, &reps, &samples);
        if (!st) st = tg_cuda_bench_sgemm((int)g->M, (int)g->N, (int)g->K, reps, samples, &t);
        g->gflops = st ? 0 : work / (t > 1e-12 ? t : 1e-12);
#else
        st = tg_cuda_check();
#endif
    }
    g->gflops *= 1e-9;
    return st;
}

typedef struct copy_job {
    tg_device device;
    char *src, *dst;
    int64_t bytes;
} copy_job;

/* The CPU copy (the CUDA one is cuda/bench.cu's, event-timed). */
static tg_status copy_run(void *user, double *seconds) {
    copy_job *j = user;
    double t0 = tg_now();
    /* 1 MiB chunks spread over the threads: one memcpy stream per core */
    const int64_t chunk = 1 << 20, nchunks = (j->bytes + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nchunks; c++) {
        int64_t off = c * chunk, len = j->bytes - off < chunk ? j->bytes - off : chunk;
        memcpy(j->dst + off, j->src + off, (size_t)len);
    }
    *seconds = tg_now() - t0;
    return TG_OK;
}

tg_status peaks_measure(tg_device device, const peak_gemm *shapes, int nshapes,
                        double budget_s, peaks *out) {
    memset(out, 0, sizeof *out);
    out->device = device;
    double start = tg_now();
    tg_status st = TG_OK;
    for (int i = 0; i < nshapes && i < PEAKS_MAX_SHAPES && !st; i++) {
        out->gemm[i] = shapes[i];
        st = measure_gemm(device, &out->gemm[i], budget_s);
        out->ngemm = i + 1;
        if (out->gemm[i].gflops > out->sgemm_gflops) out->sgemm_gflops = out->gemm[i].gflops;
    }
    if (st) return st;
    if (device == TG_DEVICE_CUDA) {
#ifdef TG_HAVE_CUDA
        /* At least 8x the L2 (and 256 MiB) each way, so the copy measures device memory. */
        tg_cuda_info info;
        if ((st = tg_cuda_device_info(&info))) return st;
        snprintf(out->device_name, sizeof out->device_name, "%.160s (sm_%d%d, %d SMs, L2 %lld MiB, "
                 "max clocks SM %d MHz / memory %d MHz, %d-bit bus)", info.name, info.cc_major,
                 info.cc_minor, info.sms, (long long)(info.l2_bytes >> 20),
                 info.sm_clock_khz / 1000, info.mem_clock_khz / 1000, info.bus_width_bits);
        int64_t bytes = 8 * info.l2_bytes;
        if (bytes < ((int64_t)256 << 20)) bytes = (int64_t)256 << 20;
        double t1 = 0, t = 0;
        int reps, samples;
        st = tg_cuda_bench_copy((size_t)bytes, 1, 1, &t1);
        cuda_batches(t1, budget_s, &reps, &samples);
        if (!st) st = tg_cuda_bench_copy((size_t)bytes, reps, samples, &t);
        out->copy_gbps = st ? 0 : 2.0 * (double)bytes / (t > 1e-12 ? t : 1e-12) * 1e-9;
        out->copy_bytes = bytes;
#else
        st = tg_cuda_check();
#endif
        out->seconds = tg_now() - start;
        return st;
    }
    /* 64 MiB each way: far beyond any last-level cache */
    copy_job j = {.device = device, .bytes = (int64_t)64 << 20};
    j.src = tg_device_alloc(device, (size_t)j.bytes);
    j.dst = tg_device_alloc(device, (size_t)j.bytes);
    if (j.src && j.dst) {
        memset(j.src, 1, (size_t)j.bytes);
        memset(j.dst, 0, (size_t)j.bytes); /* first touch now */
        st = median_rate(copy_run, &j, 2.0 * (double)j.bytes, budget_s, &out->copy_gbps);
    } else {
        st = tg_error();
    }
    tg_device_free(device, j.src);
    tg_device_free(device, j.dst);
    out->copy_gbps *= 1e-9;
    out->copy_bytes = j.bytes;
    out->seconds = tg_now() - start;
    return st;
}

void peaks_merge_max(peaks *into, const peaks *other) {
    for (int i = 0; i < into->ngemm && i < other->ngemm; i++)
        if (other->gemm[i].gflops > into->gemm[i].gflops) into->gemm[i] = other->gemm[i];
    if (other->sgemm_gflops > into->sgemm_gflops) into->sgemm_gflops = other->sgemm_gflops;
    if (other->copy_gbps > into->copy_gbps) into->copy_gbps = other->copy_gbps;
    into->seconds += other->seconds;
}

double cpu_fma_peak_gflops(int threads) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return 0;
    char line[4096];
    double mhz = 0;
    int lanes = 0;
    while (fgets(line, sizeof line, f)) {
        double v;
        if (sscanf(line, "cpu MHz : %lf", &v) == 1 && v > mhz) mhz = v;
        if (!lanes && !strncmp(line, "flags", 5))
            lanes = strstr(line, " avx512f") ? 16 : strstr(line, " avx2") ? 8 : 4;
    }
    fclose(f);
    double max_khz = 0;
    FILE *c = fopen("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "r");
    if (c) {
        if (fscanf(c, "%lf", &max_khz) != 1) max_khz = 0;
        fclose(c);
    }
    double ghz = max_khz > 0 ? max_khz * 1e-6 : 1.5 * mhz * 1e-3;
    if (ghz <= 0 || !lanes || threads < 1) return 0;
    return (double)threads * ghz * lanes * 2 /* FMA */ * 2 /* units */;
}

void peaks_print(const peaks *pk, FILE *f) {
    if (pk->device == TG_DEVICE_CPU)
        fprintf(f, "ceilings of this machine (cpu, %d threads), measured now in %.1f s:\n",
                tg_get_num_threads(), pk->seconds);
    else
        fprintf(f, "ceilings of this GPU, measured now in %.1f s (CUDA events, median of "
                "batches, random operands):\n  %s\n", pk->seconds, pk->device_name);
    for (int i = 0; i < pk->ngemm; i++) {
        const peak_gemm *g = &pk->gemm[i];
        fprintf(f, "  SGEMM %-30s M=%-5lld N=%-6lld K=%-5lld %8.1f GFLOP/s\n", g->what,
                (long long)g->M, (long long)g->N, (long long)g->K, g->gflops);
    }
    char b[32];
    fprintf(f, "  copy bandwidth (%s buffers, read + write)          %8.1f GB/s\n",
            fmt_bytes((double)pk->copy_bytes, b, sizeof b), pk->copy_gbps);
}

/* ---------------------------------------------------------------- timed runs */

/* FLOPs and bytes per parameter of one optimizer update over the flat store. */
static void optim_cost(const tg_optim *opt, int slots, double *flops, double *bytes) {
    bool adam = !strncmp(tg_optim_name(opt), "adam", 4);
    *flops = adam ? 12.0 : 2.0 + 2.0 * slots;
    *bytes = 4.0 * (3 + 2 * slots); /* read p, g and the slots; write p and the slots */
}

static tg_tensor *step_loss(tg_ctx *ctx, const bench_spec *s, tg_tensor *out,
                            tg_tensor *target) {
    if (s->loss == TG_LOSS_CE) return tg_cross_entropy(ctx, out, s->labels);
    return tg_mse_loss(ctx, out, target);
}

/* Adds this step's per-record times into res->rows (creating them, with the costs, on
 * the first call). */
static tg_status collect_rows(tg_ctx *ctx, bench_result *res, bool with_bwd) {
    int n = tg_tape_length(ctx);
    if (!res->rows) {
        res->tape_len = n;
        res->nrows = n + 2;
        res->rows = calloc((size_t)res->nrows, sizeof *res->rows);
        if (!res->rows) return tg_fail(TG_ERR_NOMEM, "profile: out of memory");
    } else if (n != res->tape_len) {
        return tg_fail(TG_ERR_STATE, "profile: the tape changed length between steps "
                       "(%d, then %d records)", res->tape_len, n);
    }
    tg_op_profile *prof = malloc((size_t)(n ? n : 1) * sizeof *prof);
    if (!prof) return tg_fail(TG_ERR_NOMEM, "profile: out of memory");
    tg_tape_profile(ctx, prof, n);
    for (int r = 0; r < n; r++) {
        prof_row *row = &res->rows[r];
        if (!row->op) {
            row->op = prof[r].op;
            memcpy(row->detail, prof[r].detail, sizeof row->detail);
            row->in_shape = prof[r].in_shape[0];
            row->out_shape = prof[r].out_shape;
            row->count = 1;
            row->fwd_flops = prof[r].fwd_flops;
            row->fwd_bytes = prof[r].fwd_bytes;
            row->bwd_flops = with_bwd ? prof[r].bwd_flops : 0;
            row->bwd_bytes = with_bwd ? prof[r].bwd_bytes : 0;
        }
        row->fwd_s += prof[r].fwd_seconds;
        row->bwd_s += with_bwd ? prof[r].bwd_seconds : 0;
    }
    free(prof);
    return TG_OK;
}

/* The two rows after the tape's: zero_grad and the optimizer update. */
static void add_update_rows(bench_result *res, const bench_spec *s, tg_params *ps) {
    int64_t flat = tg_params_flat_numel(ps);
    prof_row *z = &res->rows[res->tape_len], *u = &res->rows[res->tape_len + 1];
    int slots = tg_params_state_slots(ps);
    double flops, bytes;
    optim_cost(s->opt, slots, &flops, &bytes);
    *z = (prof_row){.op = "zero_grad", .count = 1, .in_shape = tg_shape1(flat),
                    .out_shape = tg_shape1(flat), .fwd_bytes = 4.0 * (double)flat};
    snprintf(z->detail, sizeof z->detail, "memset");
    *u = (prof_row){.op = tg_optim_name(s->opt), .count = 1, .in_shape = tg_shape1(flat),
                    .out_shape = tg_shape1(flat), .fwd_flops = flops * (double)flat,
                    .fwd_bytes = bytes * (double)flat};
    snprintf(u->detail, sizeof u->detail, "fused update");
}

static void sum_costs(bench_result *res) {
    res->flops = res->bytes = 0;
    for (int r = 0; r < res->nrows; r++) {
        const prof_row *row = &res->rows[r];
        res->flops += row->fwd_flops + row->bwd_flops;
        res->bytes += row->fwd_bytes + row->bwd_bytes;
    }
}

tg_status bench_run(const bench_spec *s, bench_result *res) {
    memset(res, 0, sizeof *res);
    tg_status st = TG_OK;
    tg_ctx *ctx = tg_ctx_new(s->device), *data = tg_ctx_new(s->device);
    int total = s->warmup + s->steps;
    double *times = calloc((size_t)(3 * s->steps + 3), sizeof *times);
    double *t_fwd = times, *t_fb = times + s->steps + 1, *t_step = times + 2 * s->steps + 2;
    double zero_sum = 0, optim_sum = 0, wall_sum = 0;
    if (!ctx || !data || !times) {
        st = tg_error() ? tg_error() : tg_fail(TG_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    if ((st = tg_ctx_set_conv_algo(ctx, s->conv_algo)) != TG_OK) goto done;
    /* Per-op times are only true with the device drained around each op (on CUDA:
     * event-timed); a profile turns that on, a plain timed run leaves ops asynchronous. */
    tg_ctx_set_sync_timing(ctx, s->profile);
    tg_ctx_set_anomaly(ctx, s->check_finite);
    /* The input and target live in their own context: made once, like the peer's. */
    tg_tensor *x = tg_tensor_from(data, s->in_shape, s->input);
    tg_tensor *target = s->train && s->loss == TG_LOSS_MSE
                            ? tg_tensor_from(data, s->target_shape, s->target) : NULL;
    if (!x || (s->train && s->loss == TG_LOSS_MSE && !target)) {
        st = tg_error();
        goto done;
    }
    progress pg;
    progress_start(&pg, 3.0);
    busy_probe probe;
    for (int i = 0; i < total; i++) {
        bool timed = i >= s->warmup;
        int k = i - s->warmup;
        double t0, ta, tb, tc, td;
        if (i == s->warmup) busy_begin(&probe);
        tg_ctx_sync(ctx);
        t0 = tg_now();
        if (s->train) {
            if ((st = tg_optim_zero_grad(s->opt)) || (st = tg_ctx_sync(ctx))) goto done;
            ta = tg_now();
            tg_tensor *out = tg_model_forward(ctx, s->model, x, true);
            tg_tensor *loss = step_loss(ctx, s, out, target);
            if (!loss) {
                st = tg_error();
                goto done;
            }
            if ((st = tg_ctx_sync(ctx))) goto done;
            tb = tg_now();
            if ((st = tg_backward(ctx, loss)) || (st = tg_ctx_sync(ctx))) goto done;
            tc = tg_now();
            if ((st = tg_optim_step(s->opt)) || (st = tg_ctx_sync(ctx))) goto done;
            td = tg_now();
        } else {
            bool was = tg_set_grad_enabled(ctx, false);
            ta = t0;
            tg_tensor *out = tg_model_forward(ctx, s->model, x, false);
            tg_set_grad_enabled(ctx, was);
            if (!out) {
                st = tg_error();
                goto done;
            }
            if ((st = tg_ctx_sync(ctx))) goto done;
            tb = tc = td = tg_now();
        }
        if (timed) {
            t_fwd[k] = tb - ta;
            t_fb[k] = tc - ta;
            t_step[k] = td - t0;
            wall_sum += td - t0;
            res->mean_fwd_s += (tb - ta) / s->steps;
            res->mean_bwd_s += (tc - tb) / s->steps;
            zero_sum += ta - t0;
            optim_sum += td - tc;
            /* costs from the first timed step; per-op times from every one if asked */
            if (s->train && (k == 0 || s->profile) && (st = collect_rows(ctx, res, true)))
                goto done;
        }
        tg_step_end(ctx);
        progress_line(&pg, "  %s: %s %d/%d  %.3f s", s->label, timed ? "step" : "warm-up",
                      timed ? k + 1 : i + 1, timed ? s->steps : s->warmup, td - t0);
    }
    if (s->steps > 0) busy_end(&probe, &res->busy);
    if (!s->train) {
        /* Forward-only: the timed passes recorded nothing, so costs (and per-op times)
         * come from recorded eval-mode forwards, and the profile compares with them. */
        int n = s->profile ? s->steps : 1;
        wall_sum = 0;
        for (int i = 0; i < n; i++) {
            tg_ctx_sync(ctx);
            double t0 = tg_now();
            tg_tensor *out = tg_model_forward(ctx, s->model, x, false);
            if (!out || (st = tg_ctx_sync(ctx))) {
                st = st ? st : tg_error();
                goto done;
            }
            wall_sum += tg_now() - t0;
            if ((st = collect_rows(ctx, res, false))) goto done;
            tg_step_end(ctx);
        }
        res->mean_step_s = wall_sum / n;
        for (int r = 0; r < res->tape_len; r++) res->rows[r].fwd_s /= n;
        res->nrows = res->tape_len; /* no zero_grad or optimizer rows */
    } else {
        res->mean_step_s = wall_sum / s->steps;
        int n = s->profile ? s->steps : 1;
        for (int r = 0; r < res->tape_len; r++) {
            res->rows[r].fwd_s /= n;
            res->rows[r].bwd_s /= n;
        }
        add_update_rows(res, s, tg_model_params(s->model));
        res->rows[res->tape_len].fwd_s = zero_sum / s->steps;
        res->rows[res->tape_len + 1].fwd_s = optim_sum / s->steps;
    }
    progress_done(&pg);
    sum_costs(res);
    res->fwd = stats_of(t_fwd, s->steps);
    if (s->train) {
        res->fwdbwd = stats_of(t_fb, s->steps);
        res->step = stats_of(t_step, s->steps);
    } else {
        res->step = res->fwd;
    }
    tg_params *ps = tg_model_params(s->model);
    int slots = tg_params_state_slots(ps);
    res->store_bytes = 4 * (tg_params_flat_numel(ps) * (2 + slots) + tg_params_buffer_numel(ps));
    res->arena_peak = tg_ctx_arena_peak(ctx) + tg_ctx_arena_peak(data);
    res->rss_bytes = peak_rss_bytes();
done:
    free(times);
    tg_ctx_free(ctx);
    tg_ctx_free(data);
    return st;
}

void bench_bound(bench_result *res, const peaks *pk) {
    double P = pk->sgemm_gflops * 1e9, B = pk->copy_gbps * 1e9;
    res->roofline_s = res->compute_bound_s = 0;
    for (int r = 0; r < res->nrows; r++) {
        const prof_row *row = &res->rows[r];
        res->roofline_s += fmax(row->fwd_flops / P, row->fwd_bytes / B) +
                           fmax(row->bwd_flops / P, row->bwd_bytes / B);
        res->compute_bound_s += (row->fwd_flops + row->bwd_flops) / P;
    }
}

void bench_result_free(bench_result *res) {
    if (!res) return;
    free(res->rows);
    res->rows = NULL;
}

/* ---------------------------------------------------------------- checks and tables */

bool bench_settle_ceilings(bench_result **res, const char *const *labels, int n, peaks *pk,
                           const peak_gemm *shapes, int nshapes, FILE *f) {
    for (int pass = 0; pass < 2; pass++) {
        peaks again;
        if (peaks_measure(pk->device, shapes, nshapes, 0.25, &again) != TG_OK) {
            fprintf(f, "error: measuring the ceilings: %s\n", tg_error_message());
            return false;
        }
        peaks_merge_max(pk, &again);
        int flagged = 0;
        for (int i = 0; i < n; i++) flagged += bench_flag_rates(res[i], pk);
        if (!flagged) break;
    }
    double fma = pk->device == TG_DEVICE_CPU ? cpu_fma_peak_gflops(tg_get_num_threads()) : 0;
    bool possible = true;
    for (int i = 0; i < n; i++) {
        bench_print_flags(res[i], pk, labels[i], f);
        possible &= bench_rates_possible(res[i], fma, labels[i], f);
        bench_bound(res[i], pk);
    }
    return possible;
}

/* Rows timed for less than this are not judged: one clock reading means little. */
#define MIN_JUDGED_S 1e-3
#define RATE_ALLOWANCE 1.05

static double row_gflops(const prof_row *row) {
    double t = row->fwd_s + row->bwd_s;
    return t >= MIN_JUDGED_S ? (row->fwd_flops + row->bwd_flops) / t * 1e-9 : 0;
}

static double step_gflops(const bench_result *res) {
    return res->step.median > 0 ? res->flops / res->step.median * 1e-9 : 0;
}

int bench_flag_rates(bench_result *res, const peaks *pk) {
    double limit = RATE_ALLOWANCE * pk->sgemm_gflops;
    res->above_ceiling = step_gflops(res) > limit;
    for (int r = 0; r < res->nrows; r++) {
        prof_row *row = &res->rows[r];
        row->above_ceiling = row_gflops(row) > limit;
        res->above_ceiling += row->above_ceiling;
    }
    return res->above_ceiling;
}

void bench_print_flags(const bench_result *res, const peaks *pk, const char *label, FILE *f) {
    if (step_gflops(res) > RATE_ALLOWANCE * pk->sgemm_gflops)
        fprintf(f, "warning: %s: the step ran at %.1f GFLOP/s, above the SGEMM ceiling of %.1f "
                "measured in this run (flagged '!'; the ceiling may have been measured while "
                "the machine was busier)\n", label, step_gflops(res), pk->sgemm_gflops);
    for (int r = 0; r < res->nrows; r++) {
        const prof_row *row = &res->rows[r];
        if (!row->above_ceiling) continue;
        char s[64];
        fprintf(f, "warning: %s: op #%d %s %s %s ran at %.1f GFLOP/s, above the SGEMM ceiling "
                "of %.1f measured in this run (flagged '!')\n", label, r, row->op, row->detail,
                tg_shape_str(row->in_shape, s, sizeof s), row_gflops(row), pk->sgemm_gflops);
    }
}

bool bench_rates_possible(const bench_result *res, double fma_peak, const char *label,
                          FILE *f) {
    if (fma_peak <= 0) return true;
    bool ok = true;
    if (step_gflops(res) > fma_peak) {
        fprintf(f, "error: %s: the step would run at %.1f GFLOP/s, above this CPU's arithmetic "
                "limit of %.1f GFLOP/s (clock x vector lanes x FMA units); the timing or the "
                "FLOP count is wrong, so no result is reported\n", label, step_gflops(res),
                fma_peak);
        ok = false;
    }
    for (int r = 0; r < res->nrows; r++) {
        const prof_row *row = &res->rows[r];
        if (row_gflops(row) <= fma_peak) continue;
        fprintf(f, "error: %s: op #%d %s %s would run at %.1f GFLOP/s, above this CPU's "
                "arithmetic limit of %.1f GFLOP/s\n", label, r, row->op, row->detail,
                row_gflops(row), fma_peak);
        ok = false;
    }
    return ok;
}

static bool same_group(const prof_row *a, const prof_row *b, bool by_shape) {
    if (strcmp(a->op, b->op) || strcmp(a->detail, b->detail)) return false;
    return !by_shape ||
           (tg_shape_equal(a->in_shape, b->in_shape) && tg_shape_equal(a->out_shape, b->out_shape));
}

/* Rows merged by (op, detail[, shapes]) in order of first appearance; returns the count. */
static int group_rows(const bench_result *res, bool by_shape, prof_row *out) {
    int n = 0;
    for (int r = 0; r < res->nrows; r++) {
        const prof_row *row = &res->rows[r];
        int g = 0;
        while (g < n && !same_group(&out[g], row, by_shape)) g++;
        if (g == n) {
            out[n] = *row;
            out[n++].count = row->count;
            continue;
        }
        out[g].count += row->count;
        out[g].fwd_s += row->fwd_s;
        out[g].bwd_s += row->bwd_s;
        out[g].fwd_flops += row->fwd_flops;
        out[g].fwd_bytes += row->fwd_bytes;
        out[g].bwd_flops += row->bwd_flops;
        out[g].bwd_bytes += row->bwd_bytes;
        out[g].above_ceiling |= row->above_ceiling;
    }
    return n;
}

static void print_row(FILE *f, const prof_row *row, bool shapes, const peaks *pk,
                      double step_s) {
    char a[48] = "", b[48] = "", io[100] = "";
    if (shapes) {
        snprintf(io, sizeof io, "%s -> %s", tg_shape_str(row->in_shape, a, sizeof a),
                 tg_shape_str(row->out_shape, b, sizeof b));
    }
    double t = row->fwd_s + row->bwd_s;
    double flops = row->fwd_flops + row->bwd_flops, bytes = row->fwd_bytes + row->bwd_bytes;
    double gflops = t > 0 ? flops / t * 1e-9 : 0, gbps = t > 0 ? bytes / t * 1e-9 : 0;
    bool compute = flops / pk->sgemm_gflops >= bytes / pk->copy_gbps;
    double share = compute ? gflops / pk->sgemm_gflops : gbps / pk->copy_gbps;
    fprintf(f, "%-13.13s %-17.17s %4d %-40.40s %9.3f %9.3f %5.1f%% %9.2f %9.1f %8.1f%s %7.1f%s "
            "%-7s %5.0f%%\n", row->op, row->detail, row->count, io, 1e3 * row->fwd_s,
            1e3 * row->bwd_s, step_s > 0 ? 100 * t / step_s : 0, flops * 1e-9, bytes * 1e-6,
            gflops, row->above_ceiling ? "!" : " ", gbps, gbps > pk->copy_gbps * 1.05 ? "*" : " ",
            compute ? "compute" : "memory", 100 * share);
}

static void print_header(FILE *f) {
    fprintf(f, "%-13s %-17s %4s %-40s %9s %9s %6s %9s %9s %8s %8s %-7s %6s\n", "op", "detail",
            "n", "input -> output", "fwd ms", "bwd ms", "share", "GFLOP", "MB moved",
            "GFLOP/s", "GB/s", "bound", "ceil");
}

double bench_print_profile(const bench_result *res, const peaks *pk, FILE *f) {
    prof_row *g = calloc((size_t)(res->nrows ? res->nrows : 1), sizeof *g);
    if (!g) return NAN;
    double step_s = res->mean_step_s, sum = 0;
    fprintf(f, "\nper-op profile (per step, averaged over the timed steps; identical layers "
            "merged, n = how many)\n");
    print_header(f);
    int n = group_rows(res, true, g);
    for (int i = 0; i < n; i++) print_row(f, &g[i], true, pk, step_s);
    fprintf(f, "\nby layer type\n");
    print_header(f);
    n = group_rows(res, false, g);
    prof_row total = {.op = "total", .count = 0};
    for (int i = 0; i < n; i++) {
        print_row(f, &g[i], false, pk, step_s);
        total.count += g[i].count;
        total.fwd_s += g[i].fwd_s;
        total.bwd_s += g[i].bwd_s;
        total.fwd_flops += g[i].fwd_flops;
        total.fwd_bytes += g[i].fwd_bytes;
        total.bwd_flops += g[i].bwd_flops;
        total.bwd_bytes += g[i].bwd_bytes;
    }
    print_row(f, &total, false, pk, step_s);
    sum = total.fwd_s + total.bwd_s;
    double ops_fwd = 0, ops_bwd = 0;
    for (int r = 0; r < res->tape_len; r++) {
        ops_fwd += res->rows[r].fwd_s;
        ops_bwd += res->rows[r].bwd_s;
    }
    if (res->mean_bwd_s > 0)
        fprintf(f, "\nforward + loss: ops %.4f s of %.4f s measured; backward: ops %.4f s of "
                "%.4f s measured", ops_fwd, res->mean_fwd_s, ops_bwd, res->mean_bwd_s);
    double gap = fabs(step_s - sum) / step_s;
    fprintf(f, "\nsum of per-op times %.4f s, measured step (mean) %.4f s: framework overhead "
            "%.4f s (%.1f%%)%s\n", sum, step_s, step_s - sum, 100 * (step_s - sum) / step_s,
            gap <= 0.05 ? "" : "  -- more than 5%: the per-op times miss part of the step");
    fprintf(f, "bound: which ceiling limits the op on this machine (SGEMM %.1f GFLOP/s or copy "
            "%.1f GB/s); ceil: the share of it reached. * = above the DRAM copy bandwidth: "
            "the op's data is cache-resident at this size.%s\n", pk->sgemm_gflops, pk->copy_gbps,
            res->above_ceiling ? " ! = above the SGEMM ceiling measured in this run (not "
            "fatal: the ceiling may have been measured while the machine was busier)" : "");
    free(g);
    return gap;
}

/* ---------------------------------------------------------------- summaries */

static double peak_bytes_of(const bench_result *res) {
    return (double)res->arena_peak + (double)res->store_bytes;
}

void bench_print_summary(const bench_result *res, const peaks *pk, int64_t params, bool train,
                         FILE *f) {
    char b1[32], b2[32], b3[32], b4[32];
    fprintf(f, "Trainable Parameters: %lld\n", (long long)params);
    fprintf(f, "Time cost: %.4f s\n", res->step.median);
    fprintf(f, "  %-18s %10s %10s %10s\n", "(seconds)", "median", "min", "max");
    fprintf(f, "  %-18s %10.4f %10.4f %10.4f\n", "forward", res->fwd.median, res->fwd.min,
            res->fwd.max);
    if (train) {
        fprintf(f, "  %-18s %10.4f %10.4f %10.4f\n", "forward+backward", res->fwdbwd.median,
                res->fwdbwd.min, res->fwdbwd.max);
        fprintf(f, "  %-18s %10.4f %10.4f %10.4f   (zero_grad + forward + loss + backward + "
                "optimizer step)\n", "full step", res->step.median, res->step.min,
                res->step.max);
    }
    double gflops = res->flops / res->step.median * 1e-9;
    fprintf(f, "  work per %s: %.4g GFLOP, %.4g GB moved (the ops' cost models)\n",
            train ? "step" : "forward", res->flops * 1e-9, res->bytes * 1e-9);
    fprintf(f, "  achieved: %.1f GFLOP/s = %.0f%% of the measured SGEMM peak (%.1f GFLOP/s)\n",
            gflops, 100 * gflops / pk->sgemm_gflops, pk->sgemm_gflops);
    fprintf(f, "  roofline lower bound on this machine: %.4f s (compute alone %.4f s); "
            "measured / bound = %.2fx\n", res->roofline_s, res->compute_bound_s,
            res->step.median / res->roofline_s);
    if (res->step.median * 1.05 < res->roofline_s)
        fprintf(f, "  note: faster than the bound, which charges every byte at the DRAM copy "
                "bandwidth: at this size the working set stays in cache\n");
    fprintf(f, "  memory: step arena peak %s + parameters/gradients/optimizer %s = %s; "
            "process peak RSS %s\n", fmt_bytes((double)res->arena_peak, b1, sizeof b1),
            fmt_bytes((double)res->store_bytes, b2, sizeof b2),
            fmt_bytes(peak_bytes_of(res), b3, sizeof b3),
            fmt_bytes((double)res->rss_bytes, b4, sizeof b4));
}

void bench_json_fields(json_writer *w, const bench_result *res, const peaks *pk,
                       int64_t params, bool train) {
    json_int(w, "params", params);
    json_num(w, "fwd_s", res->fwd.median);
    json_num(w, "fwd_min_s", res->fwd.min);
    json_num(w, "fwd_max_s", res->fwd.max);
    if (train) {
        json_num(w, "fwdbwd_s", res->fwdbwd.median);
        json_num(w, "fwdbwd_min_s", res->fwdbwd.min);
        json_num(w, "fwdbwd_max_s", res->fwdbwd.max);
        json_num(w, "step_s", res->step.median);
        json_num(w, "step_min_s", res->step.min);
        json_num(w, "step_max_s", res->step.max);
    } else {
        json_null(w, "fwdbwd_s");
        json_null(w, "step_s");
        json_null(w, "step_min_s");
        json_null(w, "step_max_s");
    }
    json_num(w, "flops", res->flops);
    json_num(w, "bytes_moved", res->bytes);
    json_num(w, "gflops", res->flops / res->step.median * 1e-9);
    json_num(w, "roofline_s", res->roofline_s);
    json_num(w, "roofline_ratio", res->step.median / res->roofline_s);
    json_num(w, "sgemm_peak_gflops", pk->sgemm_gflops);
    json_num(w, "copy_gbps", pk->copy_gbps);
    json_int(w, "above_ceiling", res->above_ceiling);
    if (res->busy.known) {
        json_num(w, "busy_others_share", res->busy.others_share);
        json_num(w, "busy_steal_share", res->busy.steal_share);
    } else {
        json_null(w, "busy_others_share");
        json_null(w, "busy_steal_share");
    }
    json_bool(w, "machine_busy", busy_is_material(&res->busy));
    json_int(w, "arena_peak_bytes", (int64_t)res->arena_peak);
    json_int(w, "store_bytes", res->store_bytes);
    json_int(w, "peak_bytes", (int64_t)peak_bytes_of(res));
    json_int(w, "rss_bytes", res->rss_bytes);
}
