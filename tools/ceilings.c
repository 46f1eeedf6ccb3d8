/*
 * tools/ceilings.c — this machine's ceilings and the rules that judge rates against them
 * (see profile.h): the SGEMM shapes of the forum layers and the copy bandwidth measured in
 * the same process, the CPU's arithmetic limit from its clock and vector width, and
 * "flag, don't fail": a rate above a measured ceiling is re-measured, then flagged; only a
 * rate above the arithmetic limit is refused.
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
#ifdef _OPENMP
#include <omp.h>
#endif

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
    bool split; /* one serial SGEMM per thread on its slice of C's columns */
} gemm_job;

/* One SGEMM C (M x N) = A (M x K) B (K x N), either as BLAS threads it or, split, the way
 * tapegrad's kernels run GEMMs: each OpenMP thread a serial SGEMM on its own columns
 * (64-byte aligned slices). The ceiling is the better of the two: on the 2-core VM
 * OpenBLAS's own threading reached 30 GFLOP/s where two serial halves reached 40, and a
 * ceiling below what the kernels do flags every row. */
static tg_status gemm_cpu(void *user, double *seconds) {
    gemm_job *j = user;
    double t0 = tg_now();
    if (!j->split) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->M, (int)j->N,
                    (int)j->K, 1.0f, j->a, (int)j->K, j->b, (int)j->N, 0.0f, j->c, (int)j->N);
    } else {
#pragma omp parallel
        {
            int t = 0, nt = 1;
#ifdef _OPENMP
            t = omp_get_thread_num();
            nt = omp_get_num_threads();
#endif
            int64_t c0 = j->N * t / nt / 16 * 16;
            int64_t c1 = t + 1 == nt ? j->N : j->N * (t + 1) / nt / 16 * 16;
            if (c1 > c0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)j->M,
                            (int)(c1 - c0), (int)j->K, 1.0f, j->a, (int)j->K, j->b + c0,
                            (int)j->N, 0.0f, j->c + c0, (int)j->N);
        }
    }
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
            st = median_rate(gemm_cpu, &j, work, budget_s / 2, &g->gflops);
            if (!st && tg_blas_nests() && tg_get_num_threads() > 1) {
                double split = 0;
                j.split = true;
                st = median_rate(gemm_cpu, &j, work, budget_s / 2, &split);
                if (split > g->gflops) g->gflops = split;
            }
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
    if (pk->device == TG_DEVICE_CPU) {
        const char *better = tg_blas_core_better();
        fprintf(f, "ceilings of this machine (cpu, %d threads, BLAS kernels %s), measured now "
                "in %.1f s:\n", tg_get_num_threads(), tg_blas_core(), pk->seconds);
        if (better)
            fprintf(f, "  note: these BLAS kernels are older than this CPU; set "
                    "OPENBLAS_CORETYPE=%s before starting the program (SGEMM runs several "
                    "times faster)\n", better);
    } else
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

/* ---------------------------------------------------------------- judging rates */

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
