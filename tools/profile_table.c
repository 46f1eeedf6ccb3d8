/*
 * tools/profile_table.c — what the timed runs print (see profile.h): the per-op profile
 * table (identical layers grouped), the summary lines and the JSON fields.
 */
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    json_bool(w, "threads_adaptive", tg_threads_adaptive());
    json_int(w, "thread_adaptations", tg_threads_adaptations()); /* process-wide so far */
    json_int(w, "arena_peak_bytes", (int64_t)res->arena_peak);
    json_int(w, "store_bytes", res->store_bytes);
    json_int(w, "peak_bytes", (int64_t)peak_bytes_of(res));
    json_int(w, "rss_bytes", res->rss_bytes);
}
